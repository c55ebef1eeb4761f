/* head.json through td_head_load_dir, in a valid epoch of the fixture run
 * (its weight files are there for the layers a valid head.json names). */
#include "fuzz_common.h"
#include "tardis/run.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char dir[600], path[700];
  snprintf(dir, sizeof dir, "%s/epochs/0001", fz_run());
  snprintf(path, sizeof path, "%s/head.json", dir);
  fz_write(path, data, size);
  td_head *h;
  td_err err;
  if (td_head_load_dir(dir, SF_D, SF_C, &h, &err) == TD_OK)
    td_head_free(h);
  return 0;
}
