/* Territories beyond the stored square: "no data here" (how far each cell
 * is from the samples) and the territory of any view of the canvas, decoded
 * on demand from the stored projection. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tardis/fsutil.h"
#include "tardis/projection.h"
#include "tardis/territory.h"
#include "tardis/vis.h"

float td_territory_data_radius(const float *y, int64_t n) {
  if (n < 1)
    return 1.0f;
  float ext[4];
  td_territory_extent(y, n, ext);
  return 0.04f * (ext[2] - ext[0]);
}

/* One chamfer pass relaxing d[i] from a neighbour at (dr, dc) with step
 * cost w; rows and columns visited in the pass's order. */
static void relax(float *d, int R, int r, int c, int dr, int dc, float w) {
  int rr = r + dr, cc = c + dc;
  if (rr < 0 || rr >= R || cc < 0 || cc >= R)
    return;
  float v = d[(size_t)rr * R + cc] + w;
  if (v < d[(size_t)r * R + c])
    d[(size_t)r * R + c] = v;
}

int td_territory_set_data(td_territory *t, const float *y, int64_t n,
                          float radius) {
  int R = t->res;
  size_t cells = (size_t)R * (size_t)R;
  float *d = malloc(cells * sizeof *d);
  if (!d)
    return TD_ENOMEM;
  for (size_t i = 0; i < cells; i++)
    d[i] = INFINITY;
  double X0 = t->x0, X1 = t->x1, Y0 = t->y0, Y1 = t->y1;
  double w = (X1 - X0) / R, h = (Y1 - Y0) / R;
  for (int64_t i = 0; i < n; i++) {
    /* A sample outside the grid (a view zoomed in) seeds the nearest edge
     * cell with its distance to that cell's centre. */
    double fc = ((double)y[2 * i] - X0) / w - 0.5;
    double fr = (Y1 - (double)y[2 * i + 1]) / h - 0.5;
    double cc = fc < 0 ? 0 : fc > R - 1 ? R - 1 : floor(fc + 0.5);
    double rr = fr < 0 ? 0 : fr > R - 1 ? R - 1 : floor(fr + 0.5);
    double dx = fc < 0 || fc > R - 1 ? (fc - cc) * w : 0;
    double dy = fr < 0 || fr > R - 1 ? (fr - rr) * h : 0;
    size_t cell = (size_t)rr * R + (size_t)cc;
    float dist = (float)sqrt(dx * dx + dy * dy);
    if (dist < d[cell])
      d[cell] = dist;
  }
  float wx = (float)w, wy = (float)h, wd = (float)sqrt(w * w + h * h);
  /* forward: from the left and the row above; backward: the mirror */
  for (int r = 0; r < R; r++)
    for (int c = 0; c < R; c++) {
      relax(d, R, r, c, 0, -1, wx), relax(d, R, r, c, -1, 0, wy);
      relax(d, R, r, c, -1, -1, wd), relax(d, R, r, c, -1, 1, wd);
    }
  for (int r = R - 1; r >= 0; r--)
    for (int c = R - 1; c >= 0; c--) {
      relax(d, R, r, c, 0, 1, wx), relax(d, R, r, c, 1, 0, wy);
      relax(d, R, r, c, 1, 1, wd), relax(d, R, r, c, 1, -1, wd);
    }
  float rad = radius > 0 ? radius : 1e-6f;
  for (size_t i = 0; i < cells; i++) {
    float v = 2.0f - d[i] / rad; /* 1 at radius, 0 at twice it */
    d[i] = v >= 1 ? 1 : v > 0 ? v : 0;
  }
  free(t->near);
  t->near = d;
  return TD_OK;
}

typedef struct {
  const td_projection *pj;
} view_ctx;

static int view_decode(void *vctx, const float *y, int64_t m, float *x) {
  const view_ctx *c = vctx;
  return td_projection_decode(c->pj, y, m, x);
}

int td_territory_of_view(const td_run *run, const char *method, int epoch,
                         const float ext[4], int res, td_territory *out,
                         td_err *err) {
  memset(out, 0, sizeof *out);
  char dir[TD_PATH_MAX];
  if (td_vis_epoch_dir(td_run_dir(run), method, epoch, dir, sizeof dir))
    return td_err_set(err, TD_ERANGE, "%s: path too long", td_run_dir(run));
  const td_run_meta *meta = td_run_get_meta(run);
  td_projection *pj = NULL;
  td_head *head = NULL;
  td_array y = {0};
  int rc = td_projection_load(dir, meta->repr_dim, &pj, err);
  if (!rc)
    rc = td_run_load_head(run, epoch, &head, err);
  if (!rc)
    rc = td_vis_load_embedding_in(dir, "train", meta->n_train, &y, err);
  view_ctx c = {pj};
  if (!rc)
    rc = td_territory_compute(view_decode, &c, td_projection_repr_dim(pj), head,
                              ext, res, out, err);
  if (!rc) {
    const float *yd = y.data;
    rc = td_territory_set_data(out, yd, y.shape[0],
                               td_territory_data_radius(yd, y.shape[0]));
    if (rc) {
      td_territory_free(out);
      td_err_set(err, rc, "territory: out of memory");
    }
  }
  td_array_close(&y);
  td_head_free(head);
  td_projection_free(pj);
  return rc;
}
