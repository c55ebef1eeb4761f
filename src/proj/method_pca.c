/* The linear baseline as a projection method: the top two principal axes of
 * each epoch, their signs kept from the previous epoch's so an animation
 * does not flip. */
#include <stdlib.h>
#include <string.h>

#include "proj/proj_method.h"
#include "tardis/parallel.h"
#include "tardis/projection.h"

typedef struct pca_state {
  float *comps; /* [3, D]: axis 1, axis 2, mean (the sign reference first) */
  int D;
} pca_state;

static void *pca_new(void) { return calloc(1, sizeof(pca_state)); }

static void pca_free(void *st) {
  pca_state *s = st;
  if (s)
    free(s->comps);
  free(s);
}

static int pca_fit(void *st, const td_project_opts *o, const td__proj_epoch *e,
                   double *knn_s, double *fit_s, td_err *err) {
  (void)o;
  (void)knn_s;
  pca_state *s = st;
  double t0 = td_now();
  float *next = malloc((size_t)3 * e->D * sizeof *next);
  if (!next)
    return td_err_set(err, TD_ENOMEM, "out of memory");
  const float *prev = s->comps && s->D == e->D ? s->comps : NULL;
  int rc =
      td_pca_fit(e->train.data, e->n, e->D, prev, next + 2 * e->D, next, err);
  if (rc == TD_OK) {
    free(s->comps);
    s->comps = next;
    s->D = e->D;
  } else {
    free(next);
  }
  *fit_s = td_now() - t0;
  return rc;
}

static void pca_encode(const pca_state *s, const float *x, int64_t n,
                       float *y) {
  const float *mean = s->comps + 2 * s->D, *c = s->comps;
  for (int64_t i = 0; i < n; i++) {
    double a = 0, b = 0;
    for (int j = 0; j < s->D; j++) {
      double v = (double)x[i * s->D + j] - (double)mean[j];
      a += v * (double)c[j];
      b += v * (double)c[s->D + j];
    }
    y[2 * i] = (float)a;
    y[2 * i + 1] = (float)b;
  }
}

static int pca_place(const void *st, const td__proj_epoch *e, float *const y[4],
                     td_err *err) {
  (void)err;
  const float *X[4] = {e->train.data, e->test.data, e->bnd, e->ood.data};
  int64_t N[4] = {e->n, e->m, e->nb, e->mo};
  for (int s = 0; s < 4; s++)
    if (N[s])
      pca_encode(st, X[s], N[s], y[s]);
  return TD_OK;
}

static int pca_decode(void *ctx, const float *y, int64_t m, float *x) {
  const pca_state *s = ctx;
  int D = s->D;
  const float *mean = s->comps + 2 * D, *c = s->comps;
  for (int64_t i = 0; i < m; i++)
    for (int j = 0; j < D; j++)
      x[i * D + j] = mean[j] + y[2 * i] * c[j] + y[2 * i + 1] * c[D + j];
  return 0;
}

static int pca_save(const void *st, const char *dir, td_err *err) {
  const pca_state *s = st;
  return td_pca_save(dir, s->D, s->comps + 2 * s->D, s->comps, err);
}

const td__proj_method td__proj_pca = {
    "pca",     0,          0,        pca_new, pca_free, NULL, pca_fit,
    pca_place, pca_decode, pca_save, NULL,    NULL,     NULL, NULL,
};
