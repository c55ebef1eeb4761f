/* The .npy loader (td_npy_load: header, size checks, mapping) on a file of
 * arbitrary bytes; every element of a loaded array is read once. */
#include "fuzz_common.h"
#include "tardis/array.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char path[512];
  snprintf(path, sizeof path, "%s/a.npy", fz_dir());
  fz_write(path, data, size);
  td_array a;
  td_err err;
  if (td_npy_load(path, &a, &err) == TD_OK) {
    int64_t bad;
    if (a.dtype == TD_F32 && td_array_check_finite(&a, &bad)) {
      /* a NaN in the data is data, not a failure */
    }
    size_t bytes = (size_t)td_array_count(&a) * td_dtype_size(a.dtype);
    for (size_t i = 0; i < bytes; i++)
      fz_sink += ((const uint8_t *)a.data)[i];
    td_array_close(&a);
  }
  return 0;
}
