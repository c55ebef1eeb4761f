/* The IDX reader (td_idx_load, plain or gzip) on a file of arbitrary
 * bytes. */
#include "fuzz_common.h"
#include "tardis/idx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char path[512];
  snprintf(path, sizeof path, "%s/images-idx", fz_dir());
  fz_write(path, data, size);
  td_array a;
  td_err err;
  if (td_idx_load(path, &a, &err) == TD_OK)
    td_array_close(&a);
  return 0;
}
