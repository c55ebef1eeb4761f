/* The fuzzy simplicial complex of UMAP (DESIGN §3.3), DVI's two complexes
 * over training points and boundary samples (§3.4), and Walker's alias
 * sampler for drawing edges in proportion to their weight. */
#include "tardis/complex.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tardis/parallel.h"

#define SMOOTH_STEPS 64
#define SMOOTH_TOL 1e-5
#define MIN_SIGMA_SCALE 1e-3

void td_graph_free(td_graph *g) {
  if (!g)
    return;
  free(g->head);
  free(g->tail);
  free(g->weight);
  memset(g, 0, sizeof *g);
}

static int graph_alloc(td_graph *g, int64_t n_vertices, int64_t n_edges) {
  memset(g, 0, sizeof *g);
  size_t m = n_edges > 0 ? (size_t)n_edges : 1;
  g->head = malloc(m * sizeof(int32_t));
  g->tail = malloc(m * sizeof(int32_t));
  g->weight = malloc(m * sizeof(float));
  if (!g->head || !g->tail || !g->weight) {
    td_graph_free(g);
    return TD_ENOMEM;
  }
  g->n_vertices = n_vertices;
  g->n_edges = n_edges;
  return TD_OK;
}

/* ---- smoothing: rho and sigma per row --------------------------------- */

typedef struct {
  const td_knn *knn;
  float *rho, *sigma;
  double mean_all; /* mean of all distances: the floor for rows with rho 0 */
} smooth_ctx;

/* Solves sum_j exp(-max(0, d_j - rho)/sigma) = log2(k) for sigma. The sum
 * grows with sigma, so bisection on [0, inf) with doubling while the upper
 * end is unknown finds it. */
static double solve_sigma(const float *d, int k, double rho) {
  double target = log2((double)k);
  double lo = 0.0, hi = INFINITY, mid = 1.0;
  for (int it = 0; it < SMOOTH_STEPS; it++) {
    double s = 0.0;
    for (int j = 0; j < k; j++) {
      double t = (double)d[j] - rho;
      s += t > 0.0 ? exp(-t / mid) : 1.0;
    }
    if (fabs(s - target) < SMOOTH_TOL)
      break;
    if (s > target) {
      hi = mid;
      mid = 0.5 * (lo + hi);
    } else {
      lo = mid;
      mid = isinf(hi) ? 2.0 * mid : 0.5 * (lo + hi);
    }
  }
  return mid;
}

static void smooth_rows(void *vctx, int64_t begin, int64_t end, int tid) {
  (void)tid;
  smooth_ctx *c = vctx;
  int k = c->knn->k;
  for (int64_t i = begin; i < end; i++) {
    const float *d = c->knn->dist + i * k;
    double rho = 0.0, mean = 0.0;
    for (int j = 0; j < k; j++) {
      mean += (double)d[j];
      if (rho == 0.0 && d[j] > 0.0f)
        rho = (double)d[j];
    }
    mean /= k;
    double sigma = solve_sigma(d, k, rho);
    /* UMAP's floor: a row whose neighbours all sit at rho would otherwise
     * get sigma -> 0 and infinitely sharp memberships. */
    double floor_ = MIN_SIGMA_SCALE * (rho > 0.0 ? mean : c->mean_all);
    if (sigma < floor_)
      sigma = floor_;
    c->rho[i] = (float)rho;
    c->sigma[i] = (float)sigma;
  }
}

void td_complex_smooth(const td_knn *knn, float *rho, float *sigma) {
  TD_ASSERT(knn && knn->k >= 1 && rho && sigma);
  double total = 0.0;
  int64_t cnt = knn->n * knn->k;
  for (int64_t i = 0; i < cnt; i++)
    total += (double)knn->dist[i];
  smooth_ctx c = {knn, rho, sigma, cnt > 0 ? total / (double)cnt : 0.0};
  td_parallel_for(knn->n, 1024, smooth_rows, &c);
}

/* ---- fuzzy union -------------------------------------------------------- */

typedef struct {
  const td_knn *knn;
  const float *rho, *sigma;
  float *w;       /* [n, k] directed memberships */
  int64_t *count; /* [n + 1] edges emitted by row i, then offsets */
  td_graph *g;    /* filled in the second pass */
} union_ctx;

static void member_rows(void *vctx, int64_t begin, int64_t end, int tid) {
  (void)tid;
  union_ctx *c = vctx;
  int k = c->knn->k;
  for (int64_t i = begin; i < end; i++) {
    double rho = c->rho[i], sigma = c->sigma[i];
    for (int j = 0; j < k; j++) {
      double t = (double)c->knn->dist[i * k + j] - rho;
      c->w[i * k + j] = t > 0.0 ? (float)exp(-t / sigma) : 1.0f;
    }
  }
}

/* Row j's membership of i, or -1 when j does not list i. */
static float find_member(const union_ctx *c, int32_t j, int64_t i) {
  int k = c->knn->k;
  const int32_t *r = c->knn->idx + (int64_t)j * k;
  for (int s = 0; s < k; s++)
    if (r[s] == i)
      return c->w[(int64_t)j * k + s];
  return -1.0f;
}

/* Each undirected pair is emitted by exactly one of its rows: the smaller
 * index when both list each other, otherwise the only one that lists the
 * other. Both passes apply the same rule, so counts match fills. */
static void union_rows(void *vctx, int64_t begin, int64_t end, int tid) {
  (void)tid;
  union_ctx *c = vctx;
  int k = c->knn->k;
  for (int64_t i = begin; i < end; i++) {
    int64_t cnt = 0, at = c->g ? c->count[i] : 0;
    for (int s = 0; s < k; s++) {
      int32_t j = c->knn->idx[i * k + s];
      if (j == i)
        continue;
      float a = c->w[i * k + s];
      float b = find_member(c, j, i);
      if (b >= 0.0f && j < i)
        continue; /* row j emits it */
      if (b < 0.0f)
        b = 0.0f;
      float u = a + b - a * b;
      if (!(u > 0.0f))
        continue;
      if (c->g) {
        c->g->head[at + cnt] = (int32_t)(i < j ? i : j);
        c->g->tail[at + cnt] = (int32_t)(i < j ? j : i);
        c->g->weight[at + cnt] = u;
      }
      cnt++;
    }
    if (!c->g)
      c->count[i] = cnt;
  }
}

int td_complex_build(const td_knn *knn, td_graph *out, td_err *err) {
  memset(out, 0, sizeof *out);
  if (!knn || knn->n < 1 || knn->k < 1 || !knn->idx || !knn->dist)
    return td_err_set(err, TD_EARG, "complex: empty kNN graph");
  int64_t n = knn->n;
  int k = knn->k;
  for (int64_t i = 0; i < n * k; i++)
    if (knn->idx[i] < 0 || knn->idx[i] >= n)
      return td_err_set(err, TD_EVALUE,
                        "complex: neighbour %d of row %lld out of range",
                        (int)knn->idx[i], (long long)(i / k));
  float *rho = malloc((size_t)n * sizeof(float));
  float *sigma = malloc((size_t)n * sizeof(float));
  float *w = malloc((size_t)(n * k) * sizeof(float));
  int64_t *count = malloc((size_t)(n + 1) * sizeof(int64_t));
  int rc = TD_OK;
  if (!rho || !sigma || !w || !count) {
    rc = td_err_set(err, TD_ENOMEM, "complex: out of memory");
    goto done;
  }
  td_complex_smooth(knn, rho, sigma);
  union_ctx c = {knn, rho, sigma, w, count, NULL};
  td_parallel_for(n, 1024, member_rows, &c);
  td_parallel_for(n, 1024, union_rows, &c);
  int64_t total = 0;
  for (int64_t i = 0; i < n; i++) {
    int64_t v = count[i];
    count[i] = total;
    total += v;
  }
  count[n] = total;
  if (graph_alloc(out, n, total) != TD_OK) {
    rc = td_err_set(err, TD_ENOMEM, "complex: out of memory");
    goto done;
  }
  c.g = out;
  td_parallel_for(n, 1024, union_rows, &c);
done:
  free(rho);
  free(sigma);
  free(w);
  free(count);
  return rc;
}

/* ---- joining, pruning --------------------------------------------------- */

int td_graph_join(const td_graph *const *graphs, const int64_t *offsets,
                  int n_graphs, int64_t n_vertices, td_graph *out,
                  td_err *err) {
  memset(out, 0, sizeof *out);
  int64_t total = 0;
  for (int i = 0; i < n_graphs; i++) {
    int64_t off = offsets ? offsets[i] : 0;
    if (off < 0 || off + graphs[i]->n_vertices > n_vertices)
      return td_err_set(err, TD_EARG,
                        "graph join: graph %d (%lld vertices at offset %lld) "
                        "exceeds %lld vertices",
                        i, (long long)graphs[i]->n_vertices, (long long)off,
                        (long long)n_vertices);
    total += graphs[i]->n_edges;
  }
  if (n_vertices >= INT32_MAX)
    return td_err_set(err, TD_EARG, "graph join: too many vertices");
  if (graph_alloc(out, n_vertices, total) != TD_OK)
    return td_err_set(err, TD_ENOMEM, "graph join: out of memory");
  int64_t at = 0;
  for (int i = 0; i < n_graphs; i++) {
    const td_graph *g = graphs[i];
    int32_t off = (int32_t)(offsets ? offsets[i] : 0);
    for (int64_t e = 0; e < g->n_edges; e++) {
      out->head[at + e] = g->head[e] + off;
      out->tail[at + e] = g->tail[e] + off;
    }
    memcpy(out->weight + at, g->weight, (size_t)g->n_edges * sizeof(float));
    at += g->n_edges;
  }
  return TD_OK;
}

void td_graph_prune(td_graph *g, float min_weight) {
  int64_t m = 0;
  for (int64_t e = 0; e < g->n_edges; e++) {
    if (g->weight[e] < min_weight)
      continue;
    g->head[m] = g->head[e];
    g->tail[m] = g->tail[e];
    g->weight[m] = g->weight[e];
    m++;
  }
  g->n_edges = m;
}

int64_t td_graph_scale_mixed(td_graph *g, const int32_t *label,
                             int64_t n_labelled, float factor) {
  int64_t cnt = 0;
  for (int64_t e = 0; e < g->n_edges; e++) {
    int32_t u = g->head[e], v = g->tail[e];
    if (u < n_labelled && v < n_labelled && label[u] != label[v]) {
      g->weight[e] *= factor;
      cnt++;
    }
  }
  return cnt;
}

static float sqdist(const float *a, const float *b, int d) {
  float s = 0.0f;
  for (int j = 0; j < d; j++) {
    float t = a[j] - b[j];
    s += t * t;
  }
  return s;
}

typedef struct {
  const float *x;
  int64_t n;
  int d, links;
  const td_knn *knn;
  const int32_t *label;
  const int64_t *start;    /* [L + 1] label offsets into by_label */
  const int32_t *by_label; /* vertices sorted by label */
  uint64_t seed;
  int32_t *to;  /* [n, links] chosen partners, -1: none */
  int64_t *hop; /* [threads] vertices that needed the 2-hop search */
} links_ctx;

/* Partners of vertex i: its same-label kNN neighbours in order (the row is
 * sorted by distance: no distance to compute), then the nearest same-label
 * vertices two hops away, then random same-label vertices. */
static void links_rows(void *vctx, int64_t begin, int64_t end, int tid) {
  links_ctx *c = vctx;
  int k = c->knn->k, L = c->links, d = c->d;
  int64_t n = c->n;
  const int32_t *idx = c->knn->idx, *label = c->label;
  td_rng rng;
  td_rng_split(&rng, c->seed, (uint64_t)begin);
  for (int64_t i = begin; i < end; i++) {
    int32_t *best = c->to + i * L;
    float bd[64];
    int nb = 0;
    for (int a = 0; a < k && nb < L; a++) {
      int32_t v = idx[i * k + a];
      if (v < n && label[v] == label[i])
        best[nb++] = v;
    }
    int fixed = nb;
    if (nb < L) {
      c->hop[tid]++;
      for (int a = 0; a < k; a++) {
        int32_t u = idx[i * k + a];
        if (u >= n)
          continue;
        for (int b2 = 0; b2 < k; b2++) {
          int32_t v = idx[(int64_t)u * k + b2];
          if (v >= n || v == i || label[v] != label[i])
            continue;
          int dup = 0;
          for (int q = 0; q < nb && !dup; q++)
            dup = best[q] == v;
          if (dup)
            continue;
          float dv = sqdist(c->x + i * d, c->x + (int64_t)v * d, d);
          if (nb == L && dv >= bd[nb - 1])
            continue;
          int q = nb < L ? nb++ : L - 1;
          while (q > fixed && bd[q - 1] > dv) {
            bd[q] = bd[q - 1];
            best[q] = best[q - 1];
            q--;
          }
          bd[q] = dv;
          best[q] = v;
        }
      }
    }
    int64_t lo = c->start[label[i]], cnt = c->start[label[i] + 1] - lo;
    for (int tries = 0; nb < L && cnt > 1 && tries < 4 * L; tries++) {
      int32_t v = c->by_label[lo + (int64_t)td_rng_below(&rng, (uint64_t)cnt)];
      if (v != i)
        best[nb++] = v;
    }
    for (int q = nb; q < L; q++)
      best[q] = -1;
  }
}

int td_complex_class_links(const float *x, int64_t n, int d, const td_knn *knn,
                           const int32_t *label, int links, float weight,
                           uint64_t seed, td_graph *out, int64_t *n_hop,
                           td_err *err) {
  memset(out, 0, sizeof *out);
  if (n_hop)
    *n_hop = 0;
  if (links < 1 || links > 64 || n < 2 || knn->n < n || d < 1)
    return td_err_set(err, TD_EARG, "class links: bad arguments");
  int32_t maxl = 0;
  for (int64_t i = 0; i < n; i++) {
    if (label[i] < 0)
      return td_err_set(err, TD_EARG, "class links: negative label");
    maxl = label[i] > maxl ? label[i] : maxl;
  }
  int nt = td_threads();
  int64_t *start = calloc((size_t)maxl + 2, sizeof(int64_t));
  int64_t *fill = malloc((size_t)(maxl + 1) * sizeof(int64_t));
  int32_t *by_label = malloc((size_t)n * sizeof(int32_t));
  int32_t *to = malloc((size_t)n * links * sizeof(int32_t));
  int64_t *hop = calloc((size_t)nt, sizeof(int64_t));
  int rc = TD_OK;
  if (!start || !fill || !by_label || !to || !hop) {
    rc = td_err_set(err, TD_ENOMEM, "class links: out of memory");
    goto done;
  }
  for (int64_t i = 0; i < n; i++)
    start[label[i] + 1]++;
  for (int32_t l = 0; l <= maxl; l++)
    start[l + 1] += start[l];
  memcpy(fill, start, (size_t)(maxl + 1) * sizeof(int64_t));
  for (int64_t i = 0; i < n; i++)
    by_label[fill[label[i]]++] = (int32_t)i;
  links_ctx c = {x, n, d, links, knn, label, start, by_label, seed, to, hop};
  td_parallel_for(n, 1024, links_rows, &c);
  int64_t m = 0;
  for (int64_t i = 0; i < n * links; i++)
    m += to[i] >= 0;
  if (graph_alloc(out, n, m) != TD_OK) {
    rc = td_err_set(err, TD_ENOMEM, "class links: out of memory");
    goto done;
  }
  m = 0;
  for (int64_t i = 0; i < n; i++)
    for (int q = 0; q < links; q++) {
      int32_t v = to[i * links + q];
      if (v < 0)
        continue;
      out->head[m] = (int32_t)i < v ? (int32_t)i : v;
      out->tail[m] = (int32_t)i < v ? v : (int32_t)i;
      out->weight[m] = weight;
      m++;
    }
  if (n_hop)
    for (int t = 0; t < nt; t++)
      *n_hop += hop[t];
done:
  free(start);
  free(fill);
  free(by_label);
  free(to);
  free(hop);
  return rc;
}

/* ---- DVI's complexes ------------------------------------------------------
 */

int td_complex_boundary(const float *x, int64_t n, const float *b, int64_t nb,
                        int d, int k, td_graph *out, td_err *err) {
  memset(out, 0, sizeof *out);
  if (k < 1 || nb < k + 1 || n < 0 || d < 1)
    return td_err_set(err, TD_EARG,
                      "boundary complex: need 1 <= k (%d) < boundary "
                      "samples (%lld)",
                      k, (long long)nb);
  td_knn qx = {0}, qb = {0}, all = {0};
  int rc = TD_OK;
  if (n > 0 && (rc = td_knn_query_exact(b, nb, x, n, d, k, &qx, err)))
    goto done;
  if ((rc = td_knn_exact(b, nb, d, k, &qb, err)))
    goto done;
  all.n = n + nb;
  all.k = k;
  all.idx = malloc((size_t)(all.n * k) * sizeof(int32_t));
  all.dist = malloc((size_t)(all.n * k) * sizeof(float));
  if (!all.idx || !all.dist) {
    rc = td_err_set(err, TD_ENOMEM, "boundary complex: out of memory");
    goto done;
  }
  /* Boundary sample j is vertex n + j in the joint numbering. */
  for (int64_t i = 0; i < n * k; i++) {
    all.idx[i] = qx.idx[i] + (int32_t)n;
    all.dist[i] = qx.dist[i];
  }
  for (int64_t i = 0; i < nb * k; i++) {
    all.idx[n * k + i] = qb.idx[i] + (int32_t)n;
    all.dist[n * k + i] = qb.dist[i];
  }
  rc = td_complex_build(&all, out, err);
done:
  td_knn_free(&qx);
  td_knn_free(&qb);
  td_knn_free(&all);
  return rc;
}

int td_complex_dvi(const float *x, int64_t n, const float *b, int64_t nb, int d,
                   int k, uint64_t seed, td_graph *out, td_knn *knn_out,
                   td_err *err) {
  return td_complex_dvi_ex(x, n, b, nb, d, k, TD_COMPLEX_BOUNDARY_WEIGHT, seed,
                           out, knn_out, err);
}

int td_complex_dvi_ex(const float *x, int64_t n, const float *b, int64_t nb,
                      int d, int k, float boundary_weight, uint64_t seed,
                      td_graph *out, td_knn *knn_out, td_err *err) {
  memset(out, 0, sizeof *out);
  if (knn_out)
    memset(knn_out, 0, sizeof *knn_out);
  if (nb > 0 && !b)
    return td_err_set(err, TD_EARG, "dvi complex: boundary samples missing");
  int64_t nv = n + nb;
  const float *f = x;
  float *joint = NULL;
  if (nb > 0) {
    joint = malloc((size_t)(nv * d) * sizeof(float));
    if (!joint)
      return td_err_set(err, TD_ENOMEM, "dvi complex: out of memory");
    memcpy(joint, x, (size_t)(n * d) * sizeof(float));
    memcpy(joint + n * d, b, (size_t)(nb * d) * sizeof(float));
    f = joint;
  }
  td_knn knn = {0};
  td_graph spatial = {0}, bw = {0};
  int rc = td_knn_auto(f, nv, d, k, seed, &knn, err);
  free(joint);
  if (rc)
    goto done;
  if ((rc = td_complex_build(&knn, &spatial, err)))
    goto done;
  if (nb > k) {
    if ((rc = td_complex_boundary(x, n, b, nb, d, k, &bw, err)))
      goto done;
    for (int64_t e = 0; e < bw.n_edges; e++)
      bw.weight[e] *= boundary_weight;
    td_graph_prune(&bw, 1e-6f);
    const td_graph *parts[2] = {&spatial, &bw};
    rc = td_graph_join(parts, NULL, 2, nv, out, err);
  } else {
    *out = spatial;
    memset(&spatial, 0, sizeof spatial);
  }
done:
  td_graph_free(&spatial);
  td_graph_free(&bw);
  if (rc == TD_OK && knn_out)
    *knn_out = knn;
  else
    td_knn_free(&knn);
  return rc;
}

/* ---- alias sampler --------------------------------------------------------
 */

int td_alias_build(const float *w, int64_t n, td_alias *out) {
  memset(out, 0, sizeof *out);
  TD_ASSERT(w && n >= 1 && n < INT32_MAX);
  double sum = 0.0;
  for (int64_t i = 0; i < n; i++) {
    TD_ASSERT(w[i] >= 0.0f);
    sum += (double)w[i];
  }
  if (!(sum > 0.0))
    return TD_EVALUE;
  out->prob = malloc((size_t)n * sizeof(float));
  out->alias = malloc((size_t)n * sizeof(int32_t));
  double *p = malloc((size_t)n * sizeof(double));
  int32_t *stack = malloc((size_t)n * sizeof(int32_t));
  if (!out->prob || !out->alias || !p || !stack) {
    free(p);
    free(stack);
    td_alias_free(out);
    return TD_ENOMEM;
  }
  out->n = n;
  /* Vose's variant: small slots are topped up from large ones; the small
   * ones fill the stack from the bottom and the large ones from the top. */
  int64_t ns = 0, nl = n;
  for (int64_t i = 0; i < n; i++) {
    p[i] = (double)w[i] * (double)n / sum;
    out->alias[i] = (int32_t)i;
    if (p[i] < 1.0)
      stack[ns++] = (int32_t)i;
    else
      stack[--nl] = (int32_t)i;
  }
  while (ns > 0 && nl < n) {
    int32_t s = stack[--ns], l = stack[nl];
    out->prob[s] = (float)p[s];
    out->alias[s] = l;
    p[l] -= 1.0 - p[s];
    if (p[l] < 1.0) {
      nl++;
      stack[ns++] = l;
    }
  }
  /* What remains is 1 up to rounding. */
  while (ns > 0)
    out->prob[stack[--ns]] = 1.0f;
  while (nl < n)
    out->prob[stack[nl++]] = 1.0f;
  free(p);
  free(stack);
  return TD_OK;
}

int64_t td_alias_draw(const td_alias *a, td_rng *rng) {
  int64_t i = (int64_t)td_rng_below(rng, (uint64_t)a->n);
  return td_rng_uniform(rng) < a->prob[i] ? i : a->alias[i];
}

void td_alias_free(td_alias *a) {
  if (!a)
    return;
  free(a->prob);
  free(a->alias);
  memset(a, 0, sizeof *a);
}
