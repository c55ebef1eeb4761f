/* The projection's vismodel.json through td_vismodel_load (the model of
 * vis/dvi/epoch_N/ that eval and project read back). */
#include "fuzz_common.h"
#include "tardis/vismodel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char dir[600], path[700];
  snprintf(dir, sizeof dir, "%s/vismodel", fz_dir());
  td_err err;
  if (td_mkdirs(dir, &err))
    abort();
  snprintf(path, sizeof path, "%s/vismodel.json", dir);
  fz_write(path, data, size);
  td_vismodel *m;
  if (td_vismodel_load(dir, &m, &err) == TD_OK)
    td_vismodel_free(m);
  return 0;
}
