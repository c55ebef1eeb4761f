/* Decision territories: decode a grid of canvas points, let the head judge
 * them, colour the result, and store it next to the embedding. */
#include "tardis/territory.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_file.h"
#include "tardis/array.h"
#include "tardis/boundary.h"
#include "tardis/fsutil.h"

const uint8_t td_tab10[10][3] = {
    {31, 119, 180},  {255, 127, 14}, {44, 160, 44},   {214, 39, 40},
    {148, 103, 189}, {140, 86, 75},  {227, 119, 194}, {127, 127, 127},
    {188, 189, 34},  {23, 190, 207}};

/* Cells per decode call: large enough to amortise the decoder's and head's
 * per-call costs, small enough to keep the scratch in cache-sized MBs. */
#define TERR_BLOCK_CELLS 16384

void td_territory_extent(const float *y, int64_t n, float ext[4]) {
  float lo[2] = {y[0], y[1]}, hi[2] = {y[0], y[1]};
  for (int64_t i = 1; i < n; i++)
    for (int d = 0; d < 2; d++) {
      float v = y[2 * i + d];
      if (v < lo[d])
        lo[d] = v;
      if (v > hi[d])
        hi[d] = v;
    }
  float side = 0;
  for (int d = 0; d < 2; d++) {
    float pad = 0.1f * (hi[d] - lo[d]);
    lo[d] -= pad;
    hi[d] += pad;
    if (hi[d] - lo[d] > side)
      side = hi[d] - lo[d];
  }
  if (!(side > 0))
    side = 1.0f;
  for (int d = 0; d < 2; d++) {
    float mid = 0.5f * (lo[d] + hi[d]);
    ext[d] = mid - 0.5f * side;
    ext[d + 2] = mid + 0.5f * side;
  }
}

void td_territory_free(td_territory *t) {
  if (!t)
    return;
  free(t->cls);
  free(t->conf);
  free(t->near);
  memset(t, 0, sizeof *t);
}

int td_territory_compute(td_decode_fn decode, void *ctx, int D,
                         const td_head *head, const float ext[4], int res,
                         td_territory *out, td_err *err) {
  memset(out, 0, sizeof *out);
  int C = head ? td_head_out_dim(head) : 0;
  if (!decode || !head || res < 1 || res > 65535 || D < 1 ||
      td_head_in_dim(head) != D || C < 1 || C > 256)
    return td_err_set(err, TD_EARG,
                      "territory: bad arguments (res %d, D %d, head %d -> %d)",
                      res, D, head ? td_head_in_dim(head) : 0, C);
  if (!(ext[2] > ext[0]) || !(ext[3] > ext[1]))
    return td_err_set(err, TD_EARG, "territory: empty extent [%g, %g]×[%g, %g]",
                      (double)ext[0], (double)ext[2], (double)ext[1],
                      (double)ext[3]);
  size_t cells = (size_t)res * (size_t)res;
  int rows_blk = TERR_BLOCK_CELLS / res > 0 ? TERR_BLOCK_CELLS / res : 1;
  size_t blk = (size_t)rows_blk * (size_t)res;
  td_territory t = {
      .res = res, .x0 = ext[0], .y0 = ext[1], .x1 = ext[2], .y1 = ext[3]};
  t.cls = malloc(cells);
  t.conf = malloc(cells * sizeof *t.conf);
  float *pts = malloc(blk * 2 * sizeof *pts);
  float *xs = malloc(blk * (size_t)D * sizeof *xs);
  float *z = malloc(blk * (size_t)C * sizeof *z);
  int rc = TD_OK;
  if (!t.cls || !t.conf || !pts || !xs || !z) {
    rc = td_err_set(err, TD_ENOMEM, "territory: out of memory");
    goto done;
  }
  double X0 = t.x0, X1 = t.x1, Y0 = t.y0, Y1 = t.y1;
  double w = (X1 - X0) / res, h = (Y1 - Y0) / res;
  for (int r0 = 0; r0 < res; r0 += rows_blk) {
    int nr = res - r0 < rows_blk ? res - r0 : rows_blk;
    size_t m = (size_t)nr * (size_t)res;
    for (int r = 0; r < nr; r++)
      for (int c = 0; c < res; c++) {
        float *pt = pts + 2 * ((size_t)r * res + c);
        pt[0] = (float)(X0 + (c + 0.5) * w);
        pt[1] = (float)(Y1 - (r0 + r + 0.5) * h);
      }
    if (decode(ctx, pts, (int64_t)m, xs) != 0) {
      rc = td_err_set(err, TD_EVALUE, "territory: the decoder failed");
      goto done;
    }
    td_head_forward(head, xs, (int64_t)m, z);
    size_t base = (size_t)r0 * res;
    for (size_t i = 0; i < m; i++) {
      int top1;
      float g = td_logit_gap(z + i * C, C, &top1, NULL);
      t.cls[base + i] = (uint8_t)top1;
      /* NaN logits (a diverged decoder) count as undecided. */
      t.conf[base + i] = g == g ? g : 0.0f;
    }
  }
done:
  free(pts), free(xs), free(z);
  if (rc) {
    td_territory_free(&t);
    return rc;
  }
  *out = t;
  return TD_OK;
}

void td_territory_rgb(const td_territory *t, uint8_t *rgb) {
  size_t cells = (size_t)t->res * (size_t)t->res;
  for (size_t i = 0; i < cells; i++) {
    uint8_t *px = rgb + 3 * i;
    float conf = t->conf[i];
    if (!(conf >= TD_TERRITORY_BOUNDARY_CONF)) {
      px[0] = px[1] = px[2] = 255;
      continue;
    }
    float s = 0.9f * (conf < 1.0f ? conf : 1.0f);
    const uint8_t *pal = td_tab10[t->cls[i] % 10];
    for (int ch = 0; ch < 3; ch++) {
      float v = 0.5f * s * (float)pal[ch] + (1.0f - s) * 255.0f;
      px[ch] = (uint8_t)lrintf(v);
    }
  }
}

int64_t td_territory_cell(const td_territory *t, float x, float y) {
  if (t->res < 1 || !(x >= t->x0 && x <= t->x1 && y >= t->y0 && y <= t->y1))
    return -1;
  double X0 = t->x0, X1 = t->x1, Y0 = t->y0, Y1 = t->y1;
  double fc = ((double)x - X0) / (X1 - X0) * t->res;
  double fr = (Y1 - (double)y) / (Y1 - Y0) * t->res;
  int c = (int)fc, r = (int)fr;
  /* The far edges of the extent belong to the last cell. */
  if (c >= t->res)
    c = t->res - 1;
  if (r >= t->res)
    r = t->res - 1;
  return (int64_t)r * t->res + c;
}

int td_territory_is_boundary(const td_territory *t, float x, float y) {
  int64_t cell = td_territory_cell(t, x, y);
  /* Written as in td_territory_rgb, so a NaN read from a file is white in
   * both. */
  return cell >= 0 && !(t->conf[cell] >= TD_TERRITORY_BOUNDARY_CONF);
}

/* An extent the grid arithmetic can use: finite corners within
 * ±TD_TERRITORY_MAX_COORD, ordered. A corner at ±1e308 (±inf as float)
 * made every cell index NaN. Writer and reader share it. */
static int extent_ok(const float e[4]) {
  for (int i = 0; i < 4; i++)
    if (!(fabsf(e[i]) <= TD_TERRITORY_MAX_COORD))
      return 0;
  return e[2] > e[0] && e[3] > e[1];
}

int td_territory_save(const td_territory *t, const char *dir, td_err *err) {
  char path[TD_PATH_MAX];
  const float e[4] = {t->x0, t->y0, t->x1, t->y1};
  if (!extent_ok(e) || t->res < 1 || t->res > 65535)
    return td_err_set(err, TD_EVALUE,
                      "%s: territory extent [%g, %g, %g, %g] or resolution %d "
                      "out of range",
                      dir, (double)e[0], (double)e[1], (double)e[2],
                      (double)e[3], t->res);
  int rc = td_mkdirs(dir, err);
  if (rc)
    return rc;
  int64_t shape[2] = {t->res, t->res};
  if (td_path_join(path, sizeof path, dir, "territory_class.npy"))
    return td_err_set(err, TD_ERANGE, "%s: path too long", dir);
  rc = td_npy_save_raw(path, TD_U8, 2, shape, t->cls, err);
  if (rc)
    return rc;
  if (td_path_join(path, sizeof path, dir, "territory_conf.npy"))
    return td_err_set(err, TD_ERANGE, "%s: path too long", dir);
  rc = td_npy_save_raw(path, TD_F32, 2, shape, t->conf, err);
  if (rc)
    return rc;
  json_t *root =
      json_pack("{s:[f,f,f,f], s:i}", "extent", (double)t->x0, (double)t->y0,
                (double)t->x1, (double)t->y1, "res", t->res);
  char *text = root ? json_dumps(root, JSON_REAL_PRECISION(9)) : NULL;
  json_decref(root);
  if (!text)
    return td_err_set(err, TD_ENOMEM, "territory: out of memory");
  if (td_path_join(path, sizeof path, dir, "territory.json"))
    rc = td_err_set(err, TD_ERANGE, "%s: path too long", dir);
  else
    rc = td_write_file_atomic(path, text, strlen(text), err);
  free(text);
  return rc;
}

/* Loads one [R, R] array of the given dtype into a malloc'd copy. */
static int load_grid(const char *dir, const char *name, td_dtype dt, int res,
                     void **data, td_err *err) {
  char path[TD_PATH_MAX];
  if (td_path_join(path, sizeof path, dir, name))
    return td_err_set(err, TD_ERANGE, "%s: path too long", dir);
  td_array a;
  int rc = td_npy_load(path, &a, err);
  if (rc)
    return rc;
  if (a.dtype != dt || a.ndim != 2 || a.shape[0] != res || a.shape[1] != res) {
    char sh[128];
    td_array_shape_str(&a, sh, sizeof sh);
    rc = td_err_set(err, TD_ESHAPE, "%s: expected %d×%d %s, found %s %s", path,
                    res, res, td_dtype_name(dt), sh, td_dtype_name(a.dtype));
    td_array_close(&a);
    return rc;
  }
  *data = malloc(a.nbytes ? a.nbytes : 1);
  if (!*data) {
    td_array_close(&a);
    return td_err_set(err, TD_ENOMEM, "%s: out of memory", path);
  }
  memcpy(*data, a.data, a.nbytes);
  td_array_close(&a);
  return TD_OK;
}

int td_territory_load(const char *dir, td_territory *out, td_err *err) {
  memset(out, 0, sizeof *out);
  char path[TD_PATH_MAX];
  if (td_path_join(path, sizeof path, dir, "territory.json"))
    return td_err_set(err, TD_ERANGE, "%s: path too long", dir);
  json_error_t jerr;
  json_t *root = td__json_load_file(path, 0, &jerr);
  if (!root)
    return td_err_set(err, td_path_exists(path) ? TD_EFORMAT : TD_ENOENT,
                      "%s: %s", path, jerr.text);
  json_t *ext = json_object_get(root, "extent");
  json_t *res = json_object_get(root, "res");
  td_territory t = {0};
  int ok = json_is_array(ext) && json_array_size(ext) == 4 &&
           json_is_integer(res) && json_integer_value(res) >= 1 &&
           json_integer_value(res) <= 65535;
  float e[4] = {0};
  for (size_t i = 0; ok && i < 4; i++) {
    json_t *v = json_array_get(ext, i);
    ok = json_is_number(v);
    if (ok)
      e[i] = (float)json_number_value(v);
  }
  if (ok)
    t.res = (int)json_integer_value(res);
  json_decref(root);
  if (!ok || !extent_ok(e))
    return td_err_set(err, TD_EFORMAT,
                      "%s: expected {\"extent\": [x0, y0, x1, y1] with x0 < "
                      "x1 and y0 < y1, finite and within ±%g, \"res\": R in "
                      "[1, 65535]}",
                      path, (double)TD_TERRITORY_MAX_COORD);
  t.x0 = e[0], t.y0 = e[1], t.x1 = e[2], t.y1 = e[3];
  void *cls = NULL, *conf = NULL;
  int rc = load_grid(dir, "territory_class.npy", TD_U8, t.res, &cls, err);
  if (!rc)
    rc = load_grid(dir, "territory_conf.npy", TD_F32, t.res, &conf, err);
  if (rc) {
    free(cls);
    return rc;
  }
  t.cls = cls;
  t.conf = conf;
  *out = t;
  return TD_OK;
}
