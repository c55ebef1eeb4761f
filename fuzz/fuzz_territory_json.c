/* territory.json through td_territory_load, beside valid 8×8 grids, then
 * the boundary test at the corners and centre of the extent it gives. */
#include "fuzz_common.h"
#include "tardis/territory.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *grids(void) {
  static char dir[600];
  if (!dir[0]) {
    snprintf(dir, sizeof dir, "%s/territory", fz_dir());
    td_err err;
    uint8_t cls[64];
    float conf[64];
    for (int i = 0; i < 64; i++) {
      cls[i] = (uint8_t)(i % 3);
      conf[i] = 0.5f;
    }
    int64_t shape[2] = {8, 8};
    char p[700];
    int rc = td_mkdirs(dir, &err);
    snprintf(p, sizeof p, "%s/territory_class.npy", dir);
    if (!rc)
      rc = td_npy_save_raw(p, TD_U8, 2, shape, cls, &err);
    snprintf(p, sizeof p, "%s/territory_conf.npy", dir);
    if (!rc)
      rc = td_npy_save_raw(p, TD_F32, 2, shape, conf, &err);
    if (rc) {
      fprintf(stderr, "fuzz fixture: %s\n", err.msg);
      abort();
    }
  }
  return dir;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char path[700];
  snprintf(path, sizeof path, "%s/territory.json", grids());
  fz_write(path, data, size);
  td_territory t;
  td_err err;
  if (td_territory_load(grids(), &t, &err) == TD_OK) {
    float xs[3] = {t.x0, (t.x0 + t.x1) / 2, t.x1};
    float ys[3] = {t.y0, (t.y0 + t.y1) / 2, t.y1};
    for (int i = 0; i < 3; i++)
      for (int j = 0; j < 3; j++)
        fz_sink += (uint64_t)td_territory_is_boundary(&t, xs[i], ys[j]);
    td_territory_free(&t);
  }
  return 0;
}
