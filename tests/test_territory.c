/* Territories on a hand-made linear head and an identity-like decoder:
 * known classes at known points, the boundary where it must be, the extent,
 * colours, and a save/load round trip. */
#include "harness.h"
#include "tardis/array.h"
#include "tardis/boundary.h"
#include "tardis/run.h"
#include "tardis/territory.h"
#include "test_util.h"

/* (u, v) -> (u, v, 1): the third coordinate carries the head's constants,
 * so the decoder is not the identity but the geometry is. */
static int decode3(void *ctx, const float *y, int64_t m, float *x) {
  int *calls = ctx;
  (*calls)++;
  for (int64_t i = 0; i < m; i++) {
    x[3 * i] = y[2 * i];
    x[3 * i + 1] = y[2 * i + 1];
    x[3 * i + 2] = 1;
  }
  return 0;
}

static int decode_fail(void *ctx, const float *y, int64_t m, float *x) {
  (void)ctx, (void)y, (void)m, (void)x;
  return -1;
}

/* z0 = u, z1 = −u, z2 = v − 4: class 0 right, class 1 left, class 2 on top
 * (v > 4 + |u|). */
static td_head *the_head(const char *name, td_err *err) {
  float w[9] = {1, 0, 0, -1, 0, 0, 0, 1, -4}, b[3] = {0, 0, 0};
  td_head *h = NULL;
  if (td_t_make_head(td_t_tmpdir(name), w, b, 3, 3, &h, err))
    return NULL;
  return h;
}

static int cell_of(const td_territory *t, float x, float y) {
  int c = (int)((x - t->x0) / (t->x1 - t->x0) * (float)t->res);
  int r = (int)((t->y1 - y) / (t->y1 - t->y0) * (float)t->res);
  return r * t->res + c;
}

static void test_extent(void) {
  float y[6] = {-4, -4, 4, 6, 0, 0};
  float e[4];
  td_territory_extent(y, 3, e);
  /* box 8 × 10, padded by 0.8 and 1.0 per side to 9.6 × 12, squared to 12 */
  CHECK_NEAR(e[0], -6, 1e-5);
  CHECK_NEAR(e[2], 6, 1e-5);
  CHECK_NEAR(e[1], -5, 1e-5);
  CHECK_NEAR(e[3], 7, 1e-5);
  float one[2] = {3, 2};
  td_territory_extent(one, 1, e);
  CHECK_NEAR(e[0], 2.5, 1e-6);
  CHECK_NEAR(e[2], 3.5, 1e-6);
  CHECK_NEAR(e[1], 1.5, 1e-6);
  CHECK_NEAR(e[3], 2.5, 1e-6);
}

static void test_compute(void) {
  td_err err;
  td_head *h = the_head("terr_compute", &err);
  CHECK(h);
  float ext[4] = {-6, -5, 6, 7};
  td_territory t;
  int calls = 0;
  CHECK_OK(td_territory_compute(decode3, &calls, 3, h, ext, 60, &t, &err),
           &err);
  CHECK_INT(t.res, ==, 60);
  CHECK(calls >= 1);
  CHECK_INT(t.cls[cell_of(&t, 3, 0)], ==, 0);
  CHECK_INT(t.cls[cell_of(&t, -3, 0)], ==, 1);
  CHECK_INT(t.cls[cell_of(&t, 0.5f, 6)], ==, 2);
  /* row 0 is the top: its centre is at v = 7 − 0.1 */
  CHECK_INT(t.cls[30], ==, 2);
  CHECK_INT(t.cls[59 * 60 + 30], ==, 0); /* (0.1, −4.9) */
  /* every cell against the formula at its centre */
  for (int r = 0; r < 60; r++)
    for (int c = 0; c < 60; c++) {
      double u = -6 + (c + 0.5) * 0.2, v = 7 - (r + 0.5) * 0.2;
      double z[3] = {u, -u, v - 4}, s[3] = {u, -u, v - 4};
      for (int i = 0; i < 3; i++)
        for (int j = i + 1; j < 3; j++)
          if (s[j] > s[i]) {
            double tmp = s[i];
            s[i] = s[j];
            s[j] = tmp;
          }
      int best = 0;
      for (int i = 1; i < 3; i++)
        if (z[i] > z[best])
          best = i;
      double conf = (s[0] - s[1]) / (s[0] - s[2]);
      CHECK_NEAR(t.conf[r * 60 + c], conf, 1e-5);
      if (conf > 1e-4)
        CHECK_INT(t.cls[r * 60 + c], ==, best);
    }
  /* At v ≈ 0 the boundary is where 2|u| / (|u| + 4) < 0.15, |u| < 0.324:
   * the four cells with centres ±0.1, ±0.3. */
  int row = (int)((7 - 0.1) / 0.2);
  int nb = 0;
  for (int c = 0; c < 60; c++) {
    int isb = t.conf[row * 60 + c] < TD_TERRITORY_BOUNDARY_CONF;
    nb += isb;
    if (isb)
      CHECK(c >= 28 && c <= 31);
  }
  CHECK_INT(nb, ==, 4);
  CHECK_INT(td_territory_is_boundary(&t, 0.05f, 0.1f), ==, 1);
  CHECK_INT(td_territory_is_boundary(&t, 2.0f, 0.1f), ==, 0);
  CHECK_INT(td_territory_is_boundary(&t, 100.0f, 0.1f), ==, 0);
  CHECK_INT(td_territory_is_boundary(&t, 6.0f, 7.0f), ==, 0);
  /* the upper boundary v − 4 = |u| passes through (1, 5) */
  CHECK_INT(td_territory_is_boundary(&t, 1.05f, 5.05f), ==, 1);
  td_territory_free(&t);
  CHECK(t.cls == NULL && t.conf == NULL);
  td_head_free(h);
}

static void test_rgb(void) {
  td_err err;
  td_head *h = the_head("terr_rgb", &err);
  CHECK(h);
  float ext[4] = {-6, -5, 6, 7};
  td_territory t;
  int calls = 0;
  CHECK_OK(td_territory_compute(decode3, &calls, 3, h, ext, 40, &t, &err),
           &err);
  uint8_t *rgb = malloc(40 * 40 * 3);
  td_territory_rgb(&t, rgb);
  int n_white = 0;
  for (int i = 0; i < 40 * 40; i++) {
    const uint8_t *px = rgb + 3 * i;
    if (t.conf[i] < 0.15f) {
      CHECK(px[0] == 255 && px[1] == 255 && px[2] == 255);
      n_white++;
    } else {
      double s = 0.9 * (double)t.conf[i];
      for (int ch = 0; ch < 3; ch++) {
        double want = 0.5 * s * td_tab10[t.cls[i]][ch] + (1 - s) * 255;
        CHECK_NEAR(px[ch], want, 0.51);
      }
    }
  }
  CHECK(n_white > 0 && n_white < 40 * 40 / 4);
  CHECK_INT(td_tab10[0][0], ==, 31);
  CHECK_INT(td_tab10[9][2], ==, 207);
  free(rgb);
  td_territory_free(&t);
  td_head_free(h);
}

static void test_save_load(void) {
  td_err err;
  td_head *h = the_head("terr_sl_head", &err);
  CHECK(h);
  float ext[4] = {-6.25f, -5.125f, 6.5f, 7.0625f};
  td_territory t, u;
  int calls = 0;
  CHECK_OK(td_territory_compute(decode3, &calls, 3, h, ext, 33, &t, &err),
           &err);
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/a/b", td_t_tmpdir("terr_sl"));
  CHECK_OK(td_territory_save(&t, dir, &err), &err);
  CHECK_OK(td_territory_load(dir, &u, &err), &err);
  CHECK_INT(u.res, ==, 33);
  CHECK(u.x0 == t.x0 && u.y0 == t.y0 && u.x1 == t.x1 && u.y1 == t.y1);
  CHECK(!memcmp(u.cls, t.cls, 33 * 33));
  CHECK(!memcmp(u.conf, t.conf, 33 * 33 * sizeof(float)));
  td_territory_free(&u);
  /* numpy-readable shapes and dtypes */
  char path[4300];
  td_array a;
  snprintf(path, sizeof path, "%s/territory_class.npy", dir);
  CHECK_OK(td_npy_load(path, &a, &err), &err);
  CHECK(a.dtype == TD_U8 && a.ndim == 2 && a.shape[0] == 33);
  td_array_close(&a);
  /* a conf grid of the wrong size is refused, naming the file */
  int64_t sh[2] = {2, 2};
  float four[4] = {0};
  snprintf(path, sizeof path, "%s/territory_conf.npy", dir);
  CHECK_OK(td_npy_save_raw(path, TD_F32, 2, sh, four, &err), &err);
  CHECK_INT(td_territory_load(dir, &u, &err), ==, TD_ESHAPE);
  CHECK_STR_CONTAINS(err.msg, "territory_conf.npy");
  CHECK(u.cls == NULL && u.conf == NULL);
  /* a bad json and a missing directory */
  snprintf(path, sizeof path, "%s/territory.json", dir);
  FILE *f = fopen(path, "w");
  fputs("{\"extent\": [1, 0, 0, 1], \"res\": 33}", f);
  fclose(f);
  CHECK_INT(td_territory_load(dir, &u, &err), ==, TD_EFORMAT);
  snprintf(path, sizeof path, "%s/nope", dir);
  CHECK_INT(td_territory_load(path, &u, &err), ==, TD_ENOENT);
  td_territory_free(&t);
  td_head_free(h);
}

static void test_errors(void) {
  td_err err;
  td_head *h = the_head("terr_err", &err);
  CHECK(h);
  float ext[4] = {-1, -1, 1, 1}, bad[4] = {1, -1, 1, 1};
  td_territory t;
  CHECK_INT(td_territory_compute(decode_fail, NULL, 3, h, ext, 8, &t, &err), ==,
            TD_EVALUE);
  CHECK(t.cls == NULL && t.res == 0);
  CHECK_INT(td_territory_compute(decode_fail, NULL, 2, h, ext, 8, &t, &err), ==,
            TD_EARG);
  CHECK_INT(td_territory_compute(decode_fail, NULL, 3, h, bad, 8, &t, &err), ==,
            TD_EARG);
  /* a resolution that is not a multiple of the block still covers all */
  int calls = 0;
  CHECK_OK(td_territory_compute(decode3, &calls, 3, h, ext, 301, &t, &err),
           &err);
  CHECK(calls >= 2);
  CHECK_INT(t.cls[300 * 301 + 300], ==, 0); /* bottom right: u > 0 */
  CHECK_INT(t.cls[300 * 301 + 0], ==, 1);   /* bottom left */
  td_territory_free(&t);
  td_head_free(h);
}

/* "No data here": 10 × 10 cells of side 1 over [0, 10]², one sample at the
 * centre of the top-left cell, radius 2. */
static void test_set_data(void) {
  uint8_t cls[100] = {0};
  float conf[100] = {0};
  td_territory t = {.res = 10,
                    .x0 = 0,
                    .y0 = 0,
                    .x1 = 10,
                    .y1 = 10,
                    .cls = cls,
                    .conf = conf};
  float y[2] = {0.5f, 9.5f};
  CHECK_OK(td_territory_set_data(&t, y, 1, 2.0f), NULL);
  CHECK(t.near != NULL);
  CHECK_NEAR(t.near[0], 1.0, 1e-6);          /* its own cell */
  CHECK_NEAR(t.near[2], 1.0, 1e-6);          /* 2 cells right: distance 2 */
  CHECK_NEAR(t.near[3], 0.5, 1e-6);          /* distance 3: half way */
  CHECK_NEAR(t.near[4], 0.0, 1e-6);          /* distance 4 = twice the radius */
  CHECK_NEAR(t.near[9 * 10 + 9], 0.0, 0);    /* the far corner */
  CHECK_NEAR(t.near[1 * 10 + 1], 1.0, 1e-6); /* diagonal, √2 */
  /* A sample just outside the grid (a zoomed-in view) still counts. */
  float out[2] = {-1.0f, 9.5f};
  CHECK_OK(td_territory_set_data(&t, out, 1, 2.0f), NULL);
  CHECK_NEAR(t.near[0], 1.0, 1e-6);  /* 1.5 from the cell's centre */
  CHECK_NEAR(t.near[2], 0.25, 1e-6); /* 1.5 + 2 = 3.5 */
  free(t.near);
  float ext[4];
  float ys[4] = {0, 0, 10, 5};
  td_territory_extent(ys, 2, ext);
  CHECK_NEAR(td_territory_data_radius(ys, 2), 0.04f * (ext[2] - ext[0]), 1e-6);
}

int main(void) {
  RUN(test_extent);
  RUN(test_compute);
  RUN(test_rgb);
  RUN(test_save_load);
  RUN(test_errors);
  RUN(test_set_data);
  return td_t_finish();
}
