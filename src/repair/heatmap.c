/* Heat maps (DESIGN §3.10 (3)): HM_l(S) = mean over x in S of
 * f(x) ⊙ W_probe[l] at the diagnosis layer, for the sets that tell a
 * label's correct inputs from its missed ones and from the inputs wrongly
 * taken for it, and the differential maps between them. */
#include <cairo.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "repair/repair_internal.h"
#include "train/bigbuf.h"

void td_heatmap(const float *f, int64_t n, int dim, const float *w, int C,
                const int32_t *member, float *out) {
  double *sum = calloc((size_t)C * dim, sizeof *sum);
  int64_t *cnt = calloc((size_t)C, sizeof *cnt);
  if (!sum || !cnt) { /* the map is small: never expected; leave zeros */
    memset(out, 0, (size_t)C * dim * sizeof *out);
    free(sum);
    free(cnt);
    return;
  }
  for (int64_t i = 0; i < n; i++) {
    int32_t l = member[i];
    if (l < 0 || l >= C)
      continue;
    cnt[l]++;
    for (int j = 0; j < dim; j++)
      sum[(int64_t)l * dim + j] += (double)f[i * dim + j];
  }
  for (int l = 0; l < C; l++)
    for (int j = 0; j < dim; j++) {
      int64_t k = (int64_t)l * dim + j;
      out[k] = cnt[l] ? (float)(sum[k] / (double)cnt[l] * (double)w[k]) : 0.0f;
    }
  free(sum);
  free(cnt);
}

/* The member arrays of the four sets over the trained-on samples. */
static void members(const td__diag_data *d, const td_diagnosis *diag,
                    int32_t *m[4]) {
  for (int64_t k = 0; k < d->n_trained; k++) {
    int32_t i = d->trained[k], y = d->y_train[i], p = d->pred_train[i];
    m[0][k] = p == y ? y : -1;                                  /* correct */
    m[1][k] = p != y ? y : -1;                                  /* missed */
    m[2][k] = p != y ? p : -1;                                  /* wrong */
    m[3][k] = p != y && p == diag->labels[y].confused ? y : -1; /* confused */
  }
}

int td__diag_heatmaps(const td__diag_data *d, td_diagnosis *diag, td_err *err) {
  int C = d->C, dim = diag->dim;
  int64_t n = d->n_trained;
  size_t sz = (size_t)C * dim * sizeof(float);
  float **maps[6] = {&diag->hm_correct,  &diag->hm_missed, &diag->hm_wrong,
                     &diag->hm_confused, &diag->dhm_under, &diag->dhm_over};
  int ok = 1;
  for (int k = 0; k < 6; k++)
    ok &= (*maps[k] = malloc(sz)) != NULL;
  float *f = td__big_floats(n * dim); /* few page faults */
  int32_t *m[4];
  for (int k = 0; k < 4; k++)
    ok &= (m[k] = malloc((size_t)(n ? n : 1) * sizeof(int32_t))) != NULL;
  int rc = ok && f ? TD_OK
                   : td_err_set(err, TD_ENOMEM, "out of memory for heat maps");
  if (!rc)
    rc = td__features(d, 0, diag->layer, d->trained, n, f, err);
  if (!rc) {
    members(d, diag, m);
    for (int k = 0; k < 4; k++)
      td_heatmap(f, n, dim, diag->probe_w, C, m[k], *maps[k]);
    for (int i = 0; i < C * dim; i++) {
      diag->dhm_under[i] = diag->hm_correct[i] - diag->hm_missed[i];
      diag->dhm_over[i] = diag->hm_correct[i] - diag->hm_wrong[i];
    }
  }
  free(f);
  for (int k = 0; k < 4; k++)
    free(m[k]);
  return rc;
}

#define CELL_W 6
#define CELL_H 24

/* Blue (negative) to white (0) to red (positive). */
static uint32_t diverging(float v) {
  float a = fabsf(v) > 1 ? 1 : fabsf(v);
  uint32_t fade = (uint32_t)lroundf(255.0f * (1.0f - a));
  return v >= 0 ? 0xff000000u | 0xff0000u | fade << 8 | fade
                : 0xff000000u | fade << 16 | fade << 8 | 0xffu;
}

int td__heatmap_png(const float *m, int rows, int cols, const char *path,
                    td_err *err) {
  float mx = 0;
  for (int i = 0; i < rows * cols; i++)
    mx = fabsf(m[i]) > mx ? fabsf(m[i]) : mx;
  int W = cols * CELL_W, H = rows * CELL_H;
  cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, W, H);
  if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) {
    cairo_surface_destroy(s);
    return td_err_set(err, TD_ENOMEM, "%s: out of memory", path);
  }
  cairo_surface_flush(s);
  unsigned char *px = cairo_image_surface_get_data(s);
  int stride = cairo_image_surface_get_stride(s);
  for (int y = 0; y < H; y++) {
    uint32_t *row = (uint32_t *)(px + (size_t)y * stride);
    for (int x = 0; x < W; x++)
      row[x] = diverging(mx > 0 ? m[(y / CELL_H) * cols + x / CELL_W] / mx : 0);
  }
  cairo_surface_mark_dirty(s);
  cairo_status_t st = cairo_surface_write_to_png(s, path);
  cairo_surface_destroy(s);
  return st == CAIRO_STATUS_SUCCESS
             ? TD_OK
             : td_err_set(err, TD_EIO, "%s: cannot write the PNG (%s)", path,
                          cairo_status_to_string(st));
}
