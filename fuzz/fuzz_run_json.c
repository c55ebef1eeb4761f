/* run.json through td_run_open (the metadata reader and the checks of the
 * run against it) on a valid run whose run.json is the input. */
#include "fuzz_common.h"
#include "tardis/run.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char path[600];
  snprintf(path, sizeof path, "%s/run.json", fz_run());
  fz_write(path, data, size);
  td_run *run;
  td_err err;
  if (td_run_open(fz_run(), &run, &err) == TD_OK) {
    const td_run_meta *m = td_run_get_meta(run);
    for (int c = 0; c < m->n_classes; c++)
      fz_sink += strlen(m->classes[c]);
    td_run_close(run);
  }
  return 0;
}
