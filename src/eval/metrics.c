/* Quality metrics of a projection: neighbour preservation, inverse
 * fidelity, temporal correlation, boundary preservation. Reductions are
 * summed per fixed block and then in block order, so results do not depend
 * on the thread count. */
#include "tardis/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tardis/boundary.h"
#include "tardis/parallel.h"

/* |a ∩ b| for two lists of distinct indices; k is small (≤ ~50) so the
 * quadratic scan beats sorting. */
static int list_overlap(const int32_t *a, const int32_t *b, int k) {
  int hit = 0;
  for (int i = 0; i < k; i++)
    for (int j = 0; j < k; j++)
      if (a[i] == b[j]) {
        hit++;
        break;
      }
  return hit;
}

double td_metric_knn_overlap(const td_knn *a, const td_knn *b, int k) {
  TD_ASSERT(a->n == b->n && k >= 1 && k <= a->k && k <= b->k);
  if (a->n == 0)
    return 0.0;
  int64_t hit = 0;
  for (int64_t i = 0; i < a->n; i++)
    hit += list_overlap(a->idx + i * a->k, b->idx + i * b->k, k);
  return (double)hit / ((double)a->n * k);
}

int td_metric_nn_preservation_knn(const td_knn *high, const float *y,
                                  const int *ks, int n_k, double *out,
                                  td_err *err) {
  int kmax = 0;
  for (int i = 0; i < n_k; i++) {
    if (ks[i] < 1 || ks[i] > high->k)
      return td_err_set(err, TD_EARG,
                        "nn@k: k = %d, but the high-dimensional graph has "
                        "%d neighbours per point",
                        ks[i], high->k);
    if (ks[i] > kmax)
      kmax = ks[i];
  }
  if (n_k < 1 || high->n < 2)
    return td_err_set(err, TD_EARG, "nn@k: nothing to measure");
  td_knn low;
  int rc = td_knn_2d(y, high->n, kmax, &low, err);
  if (rc)
    return rc;
  for (int i = 0; i < n_k; i++)
    out[i] = td_metric_knn_overlap(high, &low, ks[i]);
  td_knn_free(&low);
  return TD_OK;
}

int td_metric_nn_preservation(const float *x, int64_t n, int D, const float *y,
                              int k, double *out, td_err *err) {
  td_knn high;
  int rc = td_knn_exact(x, n, D, k, &high, err);
  if (rc)
    return rc;
  rc = td_metric_nn_preservation_knn(&high, y, &k, 1, out, err);
  td_knn_free(&high);
  return rc;
}

int td_metric_boundary_nn(const float *xb, const float *yb, int64_t nb,
                          const float *xq, const float *yq, int64_t nq, int D,
                          int k, double *out, td_err *err) {
  if (!xq)
    return td_metric_nn_preservation(xb, nb, D, yb, k, out, err);
  td_knn hi, lo;
  int rc = td_knn_query_exact(xb, nb, xq, nq, D, k, &hi, err);
  if (rc)
    return rc;
  rc = td_knn_2d_query(yb, nb, yq, nq, k, &lo, err);
  if (!rc) {
    *out = td_metric_knn_overlap(&hi, &lo, k);
    td_knn_free(&lo);
  }
  td_knn_free(&hi);
  return rc;
}

/* ---- ppr and inv_conf_diff ----------------------------------------------- */

#define PPR_BLOCK 1024

typedef struct {
  const td_head *head;
  const float *x, *xr;
  int64_t n;
  int D, C;
  float *scratch; /* [threads, 2 * PPR_BLOCK * C] */
  int64_t *agree; /* [blocks] */
  double *dconf;  /* [blocks] */
} ppr_ctx;

static int argmax_row(const float *z, int C) {
  int best = 0;
  for (int c = 1; c < C; c++)
    if (z[c] > z[best])
      best = c;
  return best;
}

/* softmax(z)_c, computed stably. */
static double softmax_at(const float *z, int C, int c) {
  float m = z[0];
  for (int j = 1; j < C; j++)
    if (z[j] > m)
      m = z[j];
  double s = 0;
  for (int j = 0; j < C; j++)
    s += exp((double)z[j] - (double)m);
  return exp((double)z[c] - (double)m) / s;
}

static void ppr_cb(void *vctx, int64_t begin, int64_t end, int tid) {
  ppr_ctx *c = vctx;
  float *za = c->scratch + (size_t)tid * 2 * PPR_BLOCK * (size_t)c->C;
  float *zb = za + (size_t)PPR_BLOCK * c->C;
  for (int64_t blk = begin; blk < end; blk++) {
    int64_t r0 = blk * PPR_BLOCK;
    int64_t m = c->n - r0 < PPR_BLOCK ? c->n - r0 : PPR_BLOCK;
    td_head_forward(c->head, c->x + r0 * c->D, m, za);
    td_head_forward(c->head, c->xr + r0 * c->D, m, zb);
    int64_t agree = 0;
    double dsum = 0;
    for (int64_t i = 0; i < m; i++) {
      const float *a = za + i * c->C, *b = zb + i * c->C;
      int ca = argmax_row(a, c->C);
      agree += argmax_row(b, c->C) == ca;
      dsum += fabs(softmax_at(a, c->C, ca) - softmax_at(b, c->C, ca));
    }
    c->agree[blk] = agree;
    c->dconf[blk] = dsum;
  }
}

int td_metric_ppr(const td_head *head, const float *x, const float *x_rec,
                  int64_t n, double *ppr, double *inv_conf_diff) {
  if (!head || !x || !x_rec || n < 1)
    return TD_EARG;
  int64_t nblk = (n + PPR_BLOCK - 1) / PPR_BLOCK;
  int nth = td_threads();
  ppr_ctx c = {.head = head,
               .x = x,
               .xr = x_rec,
               .n = n,
               .D = td_head_in_dim(head),
               .C = td_head_out_dim(head)};
  c.scratch =
      malloc((size_t)nth * 2 * PPR_BLOCK * (size_t)c.C * sizeof *c.scratch);
  c.agree = malloc((size_t)nblk * sizeof *c.agree);
  c.dconf = malloc((size_t)nblk * sizeof *c.dconf);
  if (!c.scratch || !c.agree || !c.dconf) {
    free(c.scratch), free(c.agree), free(c.dconf);
    return TD_ENOMEM;
  }
  td_blas_single_begin();
  td_parallel_for(nblk, 1, ppr_cb, &c);
  td_blas_single_end();
  int64_t agree = 0;
  double dsum = 0;
  for (int64_t b = 0; b < nblk; b++) {
    agree += c.agree[b];
    dsum += c.dconf[b];
  }
  if (ppr)
    *ppr = (double)agree / (double)n;
  if (inv_conf_diff)
    *inv_conf_diff = dsum / (double)n;
  free(c.scratch), free(c.agree), free(c.dconf);
  return TD_OK;
}

/* ---- temporal_corr ---------------------------------------------------------
 */

/* Per sample, running means and co-moments of (r, m) in Welford's form,
 * which stays accurate where raw sums of squares would cancel. */
typedef struct {
  double mean_r, mean_m, m2_r, m2_m, c_rm;
} tc_stat;

struct td_temporal {
  int64_t n;
  int k, epochs;
  int32_t *prev_idx; /* [n, k] */
  float *prev_y;     /* [n, 2] */
  tc_stat *st;       /* [n] */
};

int td_temporal_new(int64_t n, int k, td_temporal **out, td_err *err) {
  if (n < 1 || k < 1)
    return td_err_set(err, TD_EARG, "temporal_corr: n = %lld, k = %d",
                      (long long)n, k);
  td_temporal *tc = calloc(1, sizeof *tc);
  if (tc) {
    tc->prev_idx = malloc((size_t)n * (size_t)k * sizeof *tc->prev_idx);
    tc->prev_y = malloc((size_t)n * 2 * sizeof *tc->prev_y);
    tc->st = calloc((size_t)n, sizeof *tc->st);
  }
  if (!tc || !tc->prev_idx || !tc->prev_y || !tc->st) {
    td_temporal_free(tc);
    return td_err_set(err, TD_ENOMEM, "temporal_corr: out of memory");
  }
  tc->n = n;
  tc->k = k;
  *out = tc;
  return TD_OK;
}

void td_temporal_free(td_temporal *tc) {
  if (!tc)
    return;
  free(tc->prev_idx);
  free(tc->prev_y);
  free(tc->st);
  free(tc);
}

int td_temporal_n_epochs(const td_temporal *tc) { return tc->epochs; }

typedef struct {
  td_temporal *tc;
  const td_knn *g;
  const float *y;
} tc_ctx;

static void tc_cb(void *vctx, int64_t begin, int64_t end, int tid) {
  (void)tid;
  tc_ctx *c = vctx;
  td_temporal *tc = c->tc;
  int k = tc->k;
  /* The pair about to be added is pair number `epochs` (1-based). */
  double cnt = (double)tc->epochs;
  for (int64_t i = begin; i < end; i++) {
    int32_t *prev = tc->prev_idx + i * k;
    const int32_t *cur = c->g->idx + i * c->g->k;
    double r = (double)list_overlap(prev, cur, k) / k;
    double dx = (double)c->y[2 * i] - (double)tc->prev_y[2 * i];
    double dy = (double)c->y[2 * i + 1] - (double)tc->prev_y[2 * i + 1];
    double m = sqrt(dx * dx + dy * dy);
    tc_stat *s = &tc->st[i];
    double dr = r - s->mean_r, dm = m - s->mean_m;
    s->mean_r += dr / cnt;
    s->mean_m += dm / cnt;
    s->m2_r += dr * (r - s->mean_r);
    s->m2_m += dm * (m - s->mean_m);
    s->c_rm += dr * (m - s->mean_m);
    memcpy(prev, cur, (size_t)k * sizeof *prev);
    tc->prev_y[2 * i] = c->y[2 * i];
    tc->prev_y[2 * i + 1] = c->y[2 * i + 1];
  }
}

int td_temporal_add(td_temporal *tc, const td_knn *high, const float *y,
                    td_err *err) {
  if (high->n != tc->n || high->k < tc->k)
    return td_err_set(err, TD_EARG,
                      "temporal_corr: graph of %lld points with %d "
                      "neighbours, expected %lld points with >= %d",
                      (long long)high->n, high->k, (long long)tc->n, tc->k);
  if (tc->epochs == 0) {
    for (int64_t i = 0; i < tc->n; i++)
      memcpy(tc->prev_idx + i * tc->k, high->idx + i * high->k,
             (size_t)tc->k * sizeof *tc->prev_idx);
    memcpy(tc->prev_y, y, (size_t)tc->n * 2 * sizeof *y);
    tc->epochs = 1;
    return TD_OK;
  }
  tc_ctx c = {tc, high, y};
  td_parallel_for(tc->n, 4096, tc_cb, &c);
  tc->epochs++;
  return TD_OK;
}

void td_temporal_result(const td_temporal *tc, double *mean,
                        double *per_sample) {
  double sum = 0;
  for (int64_t i = 0; i < tc->n; i++) {
    const tc_stat *s = &tc->st[i];
    double den = sqrt(s->m2_r * s->m2_m);
    double v = tc->epochs >= 3 && den > 0 ? s->c_rm / den : 0.0;
    if (!isfinite(v))
      v = 0.0;
    /* Rounding can push a perfect correlation a hair past ±1. */
    if (v > 1)
      v = 1;
    if (v < -1)
      v = -1;
    if (per_sample)
      per_sample[i] = v;
    sum += v;
  }
  if (mean)
    *mean = sum / (double)tc->n;
}

/* ---- boundary_kept ---------------------------------------------------------
 */

double td_metric_boundary_kept(const td_territory *t, const float *yb,
                               int64_t nb) {
  if (nb <= 0)
    return 0.0;
  int64_t kept = 0;
  for (int64_t i = 0; i < nb; i++)
    kept += td_territory_is_boundary(t, yb[2 * i], yb[2 * i + 1]);
  return (double)kept / (double)nb;
}

/* ---- territory fit ---------------------------------------------------------
 */

int td_metric_territory_fit(const td_territory *t, const td_head *head,
                            const float *x, const float *y, int64_t n,
                            td_territory_fit *out) {
  memset(out, 0, sizeof *out);
  if (!t || !head || !x || !y || n < 1)
    return TD_EARG;
  int D = td_head_in_dim(head), C = td_head_out_dim(head);
  float *z = malloc((size_t)PPR_BLOCK * (size_t)C * sizeof *z);
  if (!z)
    return TD_ENOMEM;
  int64_t white = 0, agree = 0, unsure = 0;
  for (int64_t r0 = 0; r0 < n; r0 += PPR_BLOCK) {
    int64_t m = n - r0 < PPR_BLOCK ? n - r0 : PPR_BLOCK;
    td_head_forward(head, x + r0 * D, m, z);
    for (int64_t i = 0; i < m; i++) {
      int top1;
      float g = td_logit_gap(z + i * C, C, &top1, NULL);
      unsure += !(g >= TD_TERRITORY_BOUNDARY_CONF);
      const float *p = y + 2 * (r0 + i);
      int64_t cell = td_territory_cell(t, p[0], p[1]);
      if (cell < 0)
        continue;
      white += !(t->conf[cell] >= TD_TERRITORY_BOUNDARY_CONF);
      agree += t->cls[cell] == top1;
    }
  }
  free(z);
  size_t cells = (size_t)t->res * (size_t)t->res, wc = 0;
  for (size_t c = 0; c < cells; c++)
    wc += !(t->conf[c] >= TD_TERRITORY_BOUNDARY_CONF);
  out->unsure_area = cells ? (double)wc / (double)cells : 0;
  out->on_boundary = (double)white / (double)n;
  out->agree = (double)agree / (double)n;
  out->unsure = (double)unsure / (double)n;
  return TD_OK;
}
