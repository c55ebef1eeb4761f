/* An epoch's epoch.json (td__epoch_json_read: the epoch number and the
 * known metrics checked) on arbitrary bytes. */
#include "fuzz_common.h"
#include "run/run_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char path[600];
  snprintf(path, sizeof path, "%s/epoch.json", fz_dir());
  fz_write(path, data, size);
  json_t *j;
  td_err err;
  if (td__epoch_json_read(path, 7, &j, &err) == TD_OK)
    json_decref(j);
  return 0;
}
