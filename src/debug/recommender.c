/* The feedback-driven recommender of suspicious samples and its simulated
 * user (DESIGN §3.8). Every feature is standardised and oriented (high =
 * suspicious) once, so a round is one small fit plus one pass over N. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tardis/parallel.h"
#include "tardis/rng.h"
#include "tardis/suspects.h"

#define NF TD_SUS_FEATURE_COUNT

struct td_recommender {
  int64_t n;
  int m;               /* features used */
  int col[NF];         /* their ids */
  float *z;            /* [n, m] oriented z-scores */
  float *sorted;       /* [m, n] z-scores per feature, ascending (why) */
  double cov[NF * NF]; /* covariance of z */
  double prior[NF];    /* prior weights on z, unit variance */
  td_rec_opts o;
  int32_t *pair; /* [n] label·C + early class; NULL: no pair term */
  int n_pairs, C;
  double *pair_acc; /* [2 · n_pairs] scratch: accepts, judged */
  uint8_t *offd;    /* [n] 1: label ≠ early class */
  int32_t *pacc;    /* [n_pairs] scratch: this round's accepts per pair */
  /* [n_pairs] scratch of exploration: each pair's best unjudged sample,
   * its score and the pair's unjudged count */
  int32_t *xarg;
  float *xbest;
  int64_t *xsize;
  int32_t *rows;      /* [n] scratch: the judged samples */
  float *yv;          /* [n] scratch: their answers */
  const int32_t *lab; /* [n] labels of the neighbour term (f's) */
  int32_t *nbr;       /* [n, nbr_k] copy of f's neighbours; NULL: no term */
  int nbr_k;
  float *nb_acc;     /* [2n] scratch: accepts, judged among neighbours */
  int32_t *lab_copy; /* [n] owned copy of the labels */
  /* which arm recommended each sample (0 none, 1 prior, 2 model) */
  uint8_t *src;
  /* scratch of one round */
  float *score, *hs[1];
  int32_t *hi[1];
};

void td_rec_opts_default(td_rec_opts *o) {
  o->features = 0;
  o->prior = 0;
  o->model = TD_REC_RIDGE;
  o->blend = 1.0;
  o->adaptive = 1;
  o->lambda = 1.0;
  o->pairs = 1;
  o->pair_prior = 5.0;
  o->prop = 0;
  o->prop_prior = 2.0;
  o->explore = 2;
  o->pair_within = 0;
  o->pair_spread = 1;
}

void td_rec_free(td_recommender *r) {
  if (!r)
    return;
  free(r->z);
  free(r->sorted);
  free(r->score);
  free(r->src);
  free(r->pair);
  free(r->pair_acc);
  free(r->offd);
  free(r->pacc);
  free(r->xarg);
  free(r->xbest);
  free(r->xsize);
  free(r->rows);
  free(r->yv);
  free(r->nbr);
  free(r->nb_acc);
  free(r->lab_copy);
  free(r->hs[0]);
  free(r->hi[0]);
  free(r);
}

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* w' Σ w: the variance of the score w·z over all samples. */
static double quad(const td_recommender *r, const double *w) {
  double s = 0;
  for (int a = 0; a < r->m; a++)
    for (int b = 0; b < r->m; b++)
      s += w[a] * r->cov[a * r->m + b] * w[b];
  return s;
}

/* The (label, early class) pair of every sample, when labels are given. */
static int make_pairs(td_recommender *r, const td_sus_features *f) {
  int C = f->n_classes;
  if (!r->o.pairs || !f->labels || C < 2)
    return 0;
  r->C = C;
  r->n_pairs = C * C;
  r->pair = malloc(sizeof *r->pair * (size_t)(r->n ? r->n : 1));
  r->pair_acc = malloc(sizeof *r->pair_acc * 2 * (size_t)r->n_pairs);
  r->offd = malloc((size_t)(r->n ? r->n : 1));
  r->pacc = malloc(sizeof *r->pacc * (size_t)r->n_pairs);
  r->xarg = malloc(sizeof *r->xarg * (size_t)r->n_pairs);
  r->xbest = malloc(sizeof *r->xbest * (size_t)r->n_pairs);
  r->xsize = malloc(sizeof *r->xsize * (size_t)r->n_pairs);
  if (!r->pair || !r->pair_acc || !r->offd || !r->pacc || !r->xarg ||
      !r->xbest || !r->xsize)
    return -1;
  for (int64_t i = 0; i < r->n; i++) {
    int y = f->labels[i], e = (int)f->x[i * NF + TD_SUS_EARLY_CLASS];
    y = y < 0 || y >= C ? 0 : y;
    e = e < 0 || e >= C ? y : e;
    r->pair[i] = y * C + e;
    r->offd[i] = y != e;
  }
  return 0;
}

/* The neighbour lists and labels of the neighbour term, when asked for. */
static int make_nbrs(td_recommender *r, const td_sus_features *f) {
  if (!r->o.prop || !f->nbr || f->nbr_k < 1 || !f->labels)
    return 0;
  size_t nn = (size_t)(r->n ? r->n : 1);
  r->nbr_k = f->nbr_k;
  r->nbr = malloc(sizeof *r->nbr * nn * (size_t)f->nbr_k);
  r->lab_copy = malloc(sizeof *r->lab_copy * nn);
  r->nb_acc = malloc(sizeof *r->nb_acc * 2 * nn);
  if (!r->nbr || !r->lab_copy || !r->nb_acc)
    return -1;
  memcpy(r->nbr, f->nbr, sizeof *r->nbr * (size_t)r->n * (size_t)f->nbr_k);
  memcpy(r->lab_copy, f->labels, sizeof *r->lab_copy * (size_t)r->n);
  r->lab = r->lab_copy;
  return 0;
}

/* The neighbour term: for every sample, the accepts and judged among its
 * same-label neighbours in both directions (its own list, and the judged
 * samples that list it), as log-odds relative to the overall accept rate,
 * shrunk with prop_prior pseudo-counts; into nb_acc[0..n). */
static void nbr_scores(td_recommender *r, const int8_t *verdict) {
  int64_t n = r->n;
  int K = r->nbr_k;
  float *acc = r->nb_acc, *tot = r->nb_acc + n;
  double A = 0, J = 0;
  memset(acc, 0, sizeof *acc * 2 * (size_t)n);
  for (int64_t j = 0; j < n; j++) {
    const int32_t *nb = r->nbr + j * K;
    if (verdict[j] >= 0) { /* j lends its verdict to those it lists */
      A += verdict[j] == 1;
      J++;
      for (int t = 0; t < K; t++)
        if (nb[t] >= 0 && r->lab[nb[t]] == r->lab[j]) {
          acc[nb[t]] += verdict[j] == 1;
          tot[nb[t]]++;
        }
    }
    for (int t = 0; t < K; t++) /* and j learns from those it lists */
      if (nb[t] >= 0 && verdict[nb[t]] >= 0 && r->lab[nb[t]] == r->lab[j]) {
        acc[j] += verdict[nb[t]] == 1;
        tot[j]++;
      }
  }
  double base = (A + 1) / (J + 2), a0 = r->o.prop_prior;
  double lb = log(base / (1 - base));
  for (int64_t i = 0; i < n; i++) {
    if (tot[i] == 0) {
      acc[i] = 0;
      continue;
    }
    double q = ((double)acc[i] + a0 * base) / ((double)tot[i] + a0);
    acc[i] = (float)(log(q / (1 - q)) - lb);
  }
}

/* Log-odds of an accept per pair from the feedback, relative to the
 * overall accept rate and shrunk towards it (pair_prior pseudo-counts):
 * into pair_acc[p] (the first n_pairs entries) for the ranking. */
static void pair_scores(td_recommender *r, const int8_t *verdict) {
  double *acc = r->pair_acc, *tot = r->pair_acc + r->n_pairs, A = 0, J = 0;
  memset(acc, 0, sizeof *acc * 2 * (size_t)r->n_pairs);
  for (int64_t i = 0; i < r->n; i++)
    if (verdict[i] >= 0) {
      acc[r->pair[i]] += verdict[i] == 1;
      tot[r->pair[i]]++;
      A += verdict[i] == 1;
      J++;
    }
  double base = (A + 1) / (J + 2), a0 = r->o.pair_prior;
  for (int p = 0; p < r->n_pairs; p++) {
    double q = (acc[p] + a0 * base) / (tot[p] + a0);
    acc[p] = log(q / (1 - q)) - log(base / (1 - base));
  }
}

int td_rec_new(const td_sus_features *f, const td_rec_opts *o,
               td_recommender **out, td_err *err) {
  *out = NULL;
  td_recommender *r = calloc(1, sizeof *r);
  if (!r)
    return td_err_set(err, TD_ENOMEM, "recommender: out of memory");
  if (o)
    r->o = *o;
  else
    td_rec_opts_default(&r->o);
  unsigned avail = 0;
  for (int j = 0; j < NF; j++)
    if ((f->has_trajectory || j > TD_SUS_RARITY_ACC) &&
        td_sus_feature_is_score(j))
      avail |= 1u << j;
  unsigned use = r->o.features ? r->o.features & avail : avail;
  for (int j = 0; j < NF; j++)
    if (use & (1u << j))
      r->col[r->m++] = j;
  if (r->m == 0) {
    free(r);
    return td_err_set(err, TD_EARG, "recommender: no usable feature");
  }
  int64_t n = f->n, m = r->m;
  r->n = n;
  r->z = malloc((size_t)(n * m) * sizeof *r->z);
  r->sorted = malloc((size_t)(n * m) * sizeof *r->sorted);
  r->score = malloc((size_t)(n ? n : 1) * sizeof *r->score);
  r->src = calloc((size_t)(n ? n : 1), 1);
  r->hs[0] = malloc((size_t)(n ? n : 1) * sizeof(float));
  r->hi[0] = malloc((size_t)(n ? n : 1) * sizeof(int32_t));
  r->rows = malloc((size_t)(n ? n : 1) * sizeof *r->rows);
  r->yv = malloc((size_t)(n ? n : 1) * sizeof *r->yv);
  if (!r->z || !r->sorted || !r->score || !r->src || !r->hs[0] || !r->hi[0] ||
      !r->rows || !r->yv) {
    td_rec_free(r);
    return td_err_set(err, TD_ENOMEM, "recommender: out of memory");
  }
  for (int a = 0; a < m; a++) {
    int j = r->col[a];
    double sign = td_sus_feature_sign(j), s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) {
      double v = sign * (double)f->x[i * NF + j];
      s += v;
      s2 += v * v;
    }
    double mean = n ? s / (double)n : 0,
           var = n ? s2 / (double)n - mean * mean : 0;
    double inv = var > 1e-12 ? 1.0 / sqrt(var) : 0.0;
    for (int64_t i = 0; i < n; i++) {
      r->z[i * m + a] = (float)((sign * (double)f->x[i * NF + j] - mean) * inv);
      r->sorted[a * n + i] = r->z[i * m + a];
    }
    qsort(r->sorted + a * n, (size_t)n, sizeof(float), cmp_float);
  }
  if (make_pairs(r, f) || make_nbrs(r, f)) {
    td_rec_free(r);
    return td_err_set(err, TD_ENOMEM, "recommender: out of memory");
  }
  for (int a = 0; a < m; a++)
    for (int b = 0; b <= a; b++) {
      double s = 0;
      for (int64_t i = 0; i < n; i++)
        s += (double)r->z[i * m + a] * (double)r->z[i * m + b];
      r->cov[a * m + b] = r->cov[b * m + a] = n ? s / (double)n : 0;
    }
  /* AUM and confidence by default. The mean loss, which the prior held
   * too until issue 12's fifth pass, put 4-5 more clean samples into the
   * top 500 of the 10k symmetric runs than AUM alone; AUM alone is the
   * worse on late-memorised asymmetric noise, where confidence leads
   * (docs/suspects.md). */
  unsigned pr =
      r->o.prior ? r->o.prior : (1u << TD_SUS_AUM) | (1u << TD_SUS_CONFIDENCE);
  int any = 0;
  for (int a = 0; a < m; a++)
    any |= (pr >> r->col[a]) & 1u;
  for (int a = 0; a < m; a++)
    r->prior[a] = !any || ((pr >> r->col[a]) & 1u) ? 1.0 : 0.0;
  double v = quad(r, r->prior);
  for (int a = 0; a < m && v > 0; a++)
    r->prior[a] /= sqrt(v);
  *out = r;
  return TD_OK;
}

/* Solves A x = b (A symmetric positive definite, d × d) by Cholesky;
 * returns -1 when A is not positive definite. */
static int solve_spd(double *A, double *b, int d) {
  for (int j = 0; j < d; j++) {
    double s = A[j * d + j];
    for (int k = 0; k < j; k++)
      s -= A[j * d + k] * A[j * d + k];
    if (!(s > 1e-12))
      return -1;
    A[j * d + j] = sqrt(s);
    for (int i = j + 1; i < d; i++) {
      double t = A[i * d + j];
      for (int k = 0; k < j; k++)
        t -= A[i * d + k] * A[j * d + k];
      A[i * d + j] = t / A[j * d + j];
    }
  }
  for (int i = 0; i < d; i++) {
    double t = b[i];
    for (int k = 0; k < i; k++)
      t -= A[i * d + k] * b[k];
    b[i] = t / A[i * d + i];
  }
  for (int i = d - 1; i >= 0; i--) {
    double t = b[i];
    for (int k = i + 1; k < d; k++)
      t -= A[k * d + i] * b[k];
    b[i] = t / A[i * d + i];
  }
  return 0;
}

/* Fits w (m weights, then the intercept) on the judged rows. Ridge:
 * min Σ(y − b − w·z)² + λ‖w‖²; logistic: Newton steps on the L2-penalised
 * log-likelihood. The intercept is never penalised. */
static int fit(const td_recommender *r, const int32_t *rows, const float *y,
               int64_t J, double *w) {
  int m = r->m, d = m + 1;
  double A[(NF + 1) * (NF + 1)], b[NF + 1];
  memset(w, 0, sizeof(double) * (size_t)d);
  int iters = r->o.model == TD_REC_LOGISTIC ? 25 : 1;
  for (int it = 0; it < iters; it++) {
    memset(A, 0, sizeof A);
    memset(b, 0, sizeof b);
    for (int64_t j = 0; j < J; j++) {
      const float *zi = r->z + (int64_t)rows[j] * m;
      double x[NF + 1], wt = 1, t = y[j];
      for (int a = 0; a < m; a++)
        x[a] = zi[a];
      x[m] = 1;
      if (r->o.model == TD_REC_LOGISTIC) {
        double eta = 0;
        for (int a = 0; a < d; a++)
          eta += w[a] * x[a];
        double p = 1 / (1 + exp(-eta));
        wt = p * (1 - p) + 1e-9;
        t = eta + ((double)y[j] - p) / wt; /* IRLS working response */
      }
      for (int a = 0; a < d; a++) {
        b[a] += wt * x[a] * t;
        for (int c = 0; c <= a; c++)
          A[a * d + c] += wt * x[a] * x[c];
      }
    }
    for (int a = 0; a < d; a++)
      for (int c = 0; c < a; c++)
        A[c * d + a] = A[a * d + c];
    for (int a = 0; a < m; a++)
      A[a * d + a] += r->o.lambda;
    A[m * d + m] += 1e-9;
    double prev[NF + 1];
    memcpy(prev, w, sizeof(double) * (size_t)d);
    if (solve_spd(A, b, d))
      return -1;
    double delta = 0;
    for (int a = 0; a < d; a++) {
      delta += fabs(b[a] - prev[a]);
      w[a] = b[a];
    }
    if (delta < 1e-8)
      break;
  }
  return 0;
}

/* The ridge model with one effect per class pair ("labelled a, behaves
 * like b"), by backfitting: the features' weights are fitted to the answers
 * less their pair's effect, and each effect is the mean residual of its
 * pair's answers, shrunk towards 0 with pair_prior pseudo-counts. So the
 * weights describe the order within pairs, the effects which pairs the user
 * wants. Effects into pair_acc[0..n_pairs), judged counts after them. */
static int fit_pair_effects(td_recommender *r, const int32_t *rows,
                            const float *y, int64_t J, double *w) {
  int m = r->m, P = r->n_pairs;
  double *beta = r->pair_acc, *cnt = r->pair_acc + P;
  double kw = r->o.pair_within >= 0 ? r->o.pair_within : r->o.pair_prior;
  float *yy = malloc(sizeof *yy * (size_t)J);
  double *sum = calloc((size_t)P, sizeof *sum);
  double *bw = calloc((size_t)P, sizeof *bw);
  int rc = yy && sum && bw ? 0 : -1;
  memset(r->pair_acc, 0, sizeof *r->pair_acc * 2 * (size_t)P);
  /* The pairs first (their raw accept rates about the mean), so that the
   * features explain only what the pairs leave. */
  double ybar = 0;
  for (int64_t j = 0; j < J; j++) {
    cnt[r->pair[rows[j]]]++;
    ybar += (double)y[j];
  }
  ybar /= (double)(J ? J : 1);
  for (int64_t j = 0; rc == 0 && j < J; j++)
    bw[r->pair[rows[j]]] += (double)y[j] - ybar;
  for (int p = 0; rc == 0 && p < P; p++)
    bw[p] /= cnt[p] + kw;
  for (int it = 0; it < 5 && rc == 0; it++) {
    for (int64_t j = 0; j < J; j++)
      yy[j] = y[j] - (float)bw[r->pair[rows[j]]];
    if ((rc = fit(r, rows, yy, J, w)) != 0)
      break;
    memset(sum, 0, sizeof *sum * (size_t)P);
    for (int64_t j = 0; j < J; j++) {
      const float *zi = r->z + (int64_t)rows[j] * m;
      double e = (double)y[j] - w[m];
      for (int a = 0; a < m; a++)
        e -= w[a] * (double)zi[a];
      sum[r->pair[rows[j]]] += e;
    }
    for (int p = 0; p < P; p++)
      bw[p] = sum[p] / (cnt[p] + kw);
  }
  /* The effects that rank, shrunk towards 0. A pair nobody judged yet gets
   * the least effect of a judged one: the model exploits what the user
   * answered, and exploration (not an extrapolated linear score) reaches
   * the new pairs. */
  double lo = 0;
  for (int p = 0; rc == 0 && p < P; p++) {
    beta[p] = sum[p] / (cnt[p] + r->o.pair_prior);
    lo = cnt[p] > 0 && beta[p] < lo ? beta[p] : lo;
  }
  for (int p = 0; rc == 0 && p < P; p++)
    beta[p] = cnt[p] > 0 ? beta[p] : lo;
  free(yy);
  free(sum);
  free(bw);
  return rc;
}

/* A min-heap of (score, index) holding the best k so far. */
typedef struct top_k {
  float *s;
  int32_t *i;
  int n, k;
} top_k;

static void sift_down(top_k *h, int c, float s, int32_t i) {
  for (;;) {
    int l = 2 * c + 1, rr = l + 1, m = c;
    float ms = s;
    if (l < h->n && h->s[l] < ms) {
      m = l;
      ms = h->s[l];
    }
    if (rr < h->n && h->s[rr] < ms)
      m = rr;
    if (m == c)
      break;
    h->s[c] = h->s[m];
    h->i[c] = h->i[m];
    c = m;
  }
  h->s[c] = s;
  h->i[c] = i;
}

static void heap_push(top_k *h, float s, int32_t i) {
  if (h->n < h->k) {
    int c = h->n++;
    while (c > 0) {
      int p = (c - 1) / 2;
      if (h->s[p] <= s)
        break;
      h->s[c] = h->s[p];
      h->i[c] = h->i[p];
      c = p;
    }
    h->s[c] = s;
    h->i[c] = i;
  } else if (s > h->s[0]) {
    sift_down(h, 0, s, i);
  }
}

/* Sorts the heap in place, best first; returns its size. */
static int heap_sort(top_k *h) {
  int cnt = h->n;
  for (int e = cnt - 1; e > 0; e--) {
    float ts = h->s[0];
    int32_t ti = h->i[0];
    h->n = e;
    sift_down(h, 0, h->s[e], h->i[e]);
    h->s[e] = ts;
    h->i[e] = ti;
  }
  h->n = cnt;
  return cnt;
}

/* Exploration, so that feedback reaches more than the fitted model's top:
 * the last ⌊k/10⌋ places of a model-ranked round go to the best-scored
 * unjudged sample of each class pair judged fewer than twice whose samples
 * are "labelled a, behave like b" (a ≠ b), largest pairs first (many
 * samples of one label behaving like one other class is what systematic
 * label noise looks like), one per pair. h holds the round's top cnt, best
 * first; returns the new count. */
static int explore(td_recommender *r, top_k *h, int cnt) {
  int ne = h->k / 10, C = r->C;
  const double *tot = r->pair_acc + r->n_pairs;
  if (r->o.explore == 2 && ne > 0) {
    /* as many places as exploration has paid: the share of the judged
     * off-diagonal pairs the user wanted (accept rate >= 1/2) */
    int good = 0, judged = 0;
    for (int p = 0; p < r->n_pairs; p++)
      if (p / C != p % C && tot[p] >= 2) {
        judged++;
        good += r->pacc[p] >= 0.5 * tot[p];
      }
    double rho = (good + 1.0) / (judged + 2.0);
    ne = (int)floor(ne * fmin(1.0, 2.0 * rho) + 0.5);
  }
  if (ne < 1 || cnt < h->k || r->o.explore == 0)
    return cnt;
  float *best = r->xbest;
  int32_t *arg = r->xarg;
  const int64_t *size = r->xsize;
  /* the ne largest pairs replace the round's last places (not already in) */
  for (int e = 0; e < ne; e++) {
    int bp = -1;
    for (int p = 0; p < r->n_pairs; p++)
      if (arg[p] >= 0 && (bp < 0 || size[p] > size[bp]))
        bp = p;
    if (bp < 0)
      break;
    int in = 0;
    for (int j = 0; j < cnt && !in; j++)
      in = h->i[j] == arg[bp];
    if (!in) {
      h->i[cnt - ne + e] = arg[bp];
      h->s[cnt - ne + e] = best[bp];
    }
    arg[bp] = -1;
  }
  return cnt;
}

/* Spreads a model-ranked round over the class pairs: a pair gets at most
 * max(⌊k/10⌋, 2 × its accepts so far) places, so a pair the user accepted
 * twice cannot take a whole round on a fitted model's say-so (it did: 39
 * places, 0 right, on the 60k asymmetric run), while pairs that keep being
 * accepted double their share each round. h holds the best cnt (more than
 * k), best first; the first k that fit the quotas move to the front, topped
 * up by the best of the rest when the quotas leave places. Returns the new
 * count. */
static int spread_pairs(td_recommender *r, top_k *h, int cnt, int k) {
  int P = r->n_pairs;
  const int32_t *acc = r->pacc;
  int32_t *in = calloc((size_t)P, sizeof *in);
  int32_t *ti = malloc(sizeof *ti * (size_t)(cnt ? cnt : 1));
  float *ts = malloc(sizeof *ts * (size_t)(cnt ? cnt : 1));
  uint8_t *took = calloc((size_t)(cnt ? cnt : 1), 1);
  int out = 0;
  if (!in || !ti || !ts || !took) { /* the spread is optional */
    out = cnt < k ? cnt : k;
    goto done;
  }
  for (int j = 0; j < cnt && out < k; j++) {
    int p = r->pair[h->i[j]], quota = 2 * acc[p];
    if (quota < k / 10)
      quota = k / 10;
    if (in[p] < quota) {
      in[p]++;
      took[j] = 1;
      ti[out] = h->i[j];
      ts[out++] = h->s[j];
    }
  }
  for (int j = 0; j < cnt && out < k; j++)
    if (!took[j]) {
      ti[out] = h->i[j];
      ts[out++] = h->s[j];
    }
  memcpy(h->i, ti, sizeof *ti * (size_t)out);
  memcpy(h->s, ts, sizeof *ts * (size_t)out);
done:
  free(in);
  free(ti);
  free(ts);
  free(took);
  h->k = k;
  h->n = out;
  return out;
}

int td_rec_next(td_recommender *r, const int8_t *verdict, int k, int32_t *idx,
                float *score, td_rec_info *info) {
  int m = r->m;
  int64_t n = r->n, na = 0, nr = 0;
  /* accepted / judged of what each arm recommended: [0] prior, [1] model */
  double hit[2] = {0, 0}, tot[2] = {0, 0};
  if (r->pair)
    memset(r->pacc, 0, sizeof *r->pacc * (size_t)r->n_pairs);
  int64_t J = 0; /* the judged samples and their answers */
  for (int64_t i = 0; i < n; i++) {
    if (verdict[i] == 0 || verdict[i] == 1) {
      r->rows[J] = (int32_t)i;
      r->yv[J++] = verdict[i];
    }
    if (r->pair && verdict[i] == 1)
      r->pacc[r->pair[i]]++;
    na += verdict[i] == 1;
    nr += verdict[i] == 0;
    if (verdict[i] >= 0 && r->src[i]) {
      tot[r->src[i] - 1]++;
      hit[r->src[i] - 1] += verdict[i] == 1;
    }
  }
  double v[NF];
  memcpy(v, r->prior, sizeof v);
  int used = 0;
  if (na > 0 && nr > 0) {
    double w[NF + 1];
    const int32_t *rows = r->rows;
    const float *y = r->yv;
    int ok =
        r->pair ? fit_pair_effects(r, rows, y, J, w) : fit(r, rows, y, J, w);
    double q = ok == 0 ? quad(r, w) : 0;
    if (r->pair && q > 1e-18)
      for (int p = 0; p < r->n_pairs; p++)
        r->pair_acc[p] /= sqrt(q);
    if (q > 1e-18) {
      used = 1;
      /* Standardised over all samples, so `blend` weighs the fitted
       * model against the prior in the same units. */
      for (int a = 0; a < m; a++)
        v[a] = r->o.adaptive || r->o.blend < 0
                   ? w[a] / sqrt(q)
                   : r->prior[a] + r->o.blend * w[a] / sqrt(q);
    }
  }
  /* Which score ranks this round. With `adaptive`, the prior keeps the
   * round while the user accepts more than 80 % of what it picked
   * (posterior mean, uniform prior) — about what a user with a few
   * mistaken answers reports for a perfect ranking — so mistaken answers
   * cannot pull the ranking off a good prior. Below that the prior is
   * failing (asymmetric noise: the loss-based scores miss memorised
   * flips) and the fitted model ranks. Measured in docs/suspects.md. */
  int arm = used && !r->o.adaptive;
  if (used && r->o.adaptive)
    arm = (hit[0] + 1) / (tot[0] + 2) < 0.8;
  /* A failing prior with nothing to fit yet (every pick rejected): the
   * pair term and exploration still act on the prior's ranking. */
  if (!used && r->o.adaptive && r->pair && tot[0] > 0 &&
      (hit[0] + 1) / (tot[0] + 2) < 0.8)
    arm = 1;
  const double *u = arm ? v : r->prior;
  float *sc = score ? score : r->score;
  int spread = arm && r->pair && used && r->o.pair_spread;
  int kh = spread ? (8 * (int64_t)k < n ? 8 * k : (int)n) : k;
  top_k h = {r->hs[0], r->hi[0], 0, kh > k ? kh : k};
  float uf[NF];
  for (int a = 0; a < m; a++)
    uf[a] = (float)u[a];
  int pairs = arm && r->pair, prop = arm && r->nbr;
  if (pairs && !used) /* nothing fitted: the answers' log-odds per pair */
    pair_scores(r, verdict);
  if (prop)
    nbr_scores(r, verdict);
  /* With pair effects the linear score does not extrapolate: it is capped
   * at the highest value among the judged samples, so samples far outside
   * what the user has seen cannot outrank the pairs the user accepted
   * (exploration reaches new pairs instead). */
  float cap = INFINITY;
  if (pairs && used) {
    cap = -INFINITY;
    for (int64_t j = 0; j < J; j++) {
      const float *zi = r->z + (int64_t)r->rows[j] * m;
      float s1 = 0;
      for (int a = 0; a < m; a++)
        s1 += uf[a] * zi[a];
      cap = s1 > cap ? s1 : cap;
    }
  }
  /* Exploration's candidates are gathered in the same pass: per
   * off-diagonal pair judged fewer than twice, its best unjudged sample by
   * the linear score and how many it has unjudged. */
  int ex = pairs && r->o.explore;
  const double *ptot = r->pair ? r->pair_acc + r->n_pairs : NULL;
  if (ex) {
    memset(r->xsize, 0, sizeof *r->xsize * (size_t)r->n_pairs);
    for (int p = 0; p < r->n_pairs; p++)
      r->xarg[p] = -1;
  }
  for (int64_t i = 0; i < n; i++) {
    if (verdict[i] >= 0)
      continue;
    const float *zi = r->z + i * m;
    float s1 = 0;
    for (int a = 0; a < m; a++)
      s1 += uf[a] * zi[a];
    if (ex && r->offd[i] && ptot[r->pair[i]] < 2) {
      int p = r->pair[i];
      r->xsize[p]++;
      if (r->xarg[p] < 0 || s1 > r->xbest[p]) {
        r->xbest[p] = s1;
        r->xarg[p] = (int32_t)i;
      }
    }
    if (s1 > cap)
      s1 = cap + 0.01f * (s1 - cap);
    if (pairs)
      s1 += (float)r->pair_acc[r->pair[i]];
    if (prop)
      s1 += r->nb_acc[i];
    heap_push(&h, s1, (int32_t)i);
  }
  int cnt = heap_sort(&h);
  if (spread)
    cnt = spread_pairs(r, &h, cnt, k);
  if (ex)
    cnt = explore(r, &h, cnt);
  for (int j = 0; j < cnt; j++) {
    idx[j] = h.i[j];
    sc[j] = h.s[j];
    r->src[idx[j]] = (uint8_t)(arm + 1);
  }
  if (info) {
    memset(info, 0, sizeof *info);
    info->used_model = used;
    info->model_ranked = arm;
    info->n_accept = na;
    info->n_reject = nr;
    for (int a = 0; a < m; a++)
      info->weights[r->col[a]] = u[a];
  }
  return cnt;
}

int td_rec_source(const td_recommender *r, int64_t i) {
  return i >= 0 && i < r->n ? r->src[i] : 0;
}

void td_rec_set_source(td_recommender *r, int64_t i, int src) {
  if (i >= 0 && i < r->n && src >= 0 && src <= 2)
    r->src[i] = (uint8_t)src;
}

void td_rec_prior(const td_recommender *r, float *score) {
  for (int64_t i = 0; i < r->n; i++) {
    double s = 0;
    for (int a = 0; a < r->m; a++)
      s += r->prior[a] * (double)r->z[i * r->m + a];
    score[i] = (float)s;
  }
}

int td_rec_why(const td_recommender *r, int64_t i, int *feat, double *pct,
               int max) {
  int cnt = 0;
  int fs[NF];
  double ps[NF];
  for (int a = 0; a < r->m; a++) {
    /* Sorted z-scores give the rank: samples strictly less suspicious. */
    const float *col = r->sorted + (int64_t)a * r->n;
    float zi = r->z[i * r->m + a];
    int64_t lo = 0, hi = r->n;
    while (lo < hi) {
      int64_t mid = lo + (hi - lo) / 2;
      if (col[mid] < zi)
        lo = mid + 1;
      else
        hi = mid;
    }
    double p = r->n ? (double)lo / (double)r->n : 0;
    if (p >= 0.9) {
      fs[cnt] = r->col[a];
      ps[cnt++] = p;
    }
  }
  /* most unusual first */
  for (int x = 1; x < cnt; x++)
    for (int y = x; y > 0 && ps[y] > ps[y - 1]; y--) {
      double tp = ps[y];
      ps[y] = ps[y - 1];
      ps[y - 1] = tp;
      int tf = fs[y];
      fs[y] = fs[y - 1];
      fs[y - 1] = tf;
    }
  if (cnt > max)
    cnt = max;
  for (int x = 0; x < cnt; x++) {
    feat[x] = fs[x];
    if (pct)
      pct[x] = ps[x];
  }
  return cnt;
}

/* ---- simulation ---------------------------------------------------------- */

void td_sim_opts_default(td_sim_opts *o) {
  o->rounds = 10;
  o->k = 50;
  o->mistakes = 0;
  o->seed = 1;
  td_rec_opts_default(&o->rec);
}

void td_sim_result_close(td_sim_result *r) {
  if (!r)
    return;
  free(r->indices);
  free(r->cum_precision);
  free(r->round_ms);
  memset(r, 0, sizeof *r);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int td_sim_run(const td_sus_features *f, const uint8_t *noisy,
               const td_sim_opts *o, td_sim_result *out, td_err *err) {
  memset(out, 0, sizeof *out);
  if (o->rounds <= 0 || o->k <= 0 || o->mistakes < 0 || o->mistakes > 1)
    return td_err_set(err, TD_EARG,
                      "simulation: need rounds > 0, k > 0, 0 <= mistakes <= 1");
  td_recommender *rec;
  int rc = td_rec_new(f, &o->rec, &rec, err);
  if (rc)
    return rc;
  int R = o->rounds, K = o->k;
  out->rounds = R;
  out->k = K;
  out->indices = malloc((size_t)R * (size_t)K * sizeof(int32_t));
  out->cum_precision = calloc((size_t)R, sizeof(double));
  out->round_ms = calloc((size_t)R, sizeof(double));
  int8_t *verdict = malloc((size_t)(f->n ? f->n : 1));
  int32_t *flip = malloc((size_t)K * sizeof *flip);
  if (!out->indices || !out->cum_precision || !out->round_ms || !verdict ||
      !flip) {
    td_rec_free(rec);
    free(verdict);
    free(flip);
    td_sim_result_close(out);
    return td_err_set(err, TD_ENOMEM, "simulation: out of memory");
  }
  memset(verdict, -1, (size_t)f->n);
  td_rng rng;
  td_rng_seed(&rng, o->seed);
  int64_t hits = 0, total = 0;
  for (int t = 0; t < R; t++) {
    int32_t *got = out->indices + (int64_t)t * K;
    double t0 = td_now();
    int g = td_rec_next(rec, verdict, K, got, NULL, NULL);
    out->round_ms[t] = (td_now() - t0) * 1e3;
    for (int j = g; j < K; j++)
      got[j] = -1;
    for (int j = 0; j < g; j++) {
      hits += noisy[got[j]] != 0;
      verdict[got[j]] = noisy[got[j]] ? 1 : 0;
      flip[j] = j;
    }
    total += g;
    /* An exact share of this round's answers is wrong. */
    int nf = (int)floor(o->mistakes * g + 0.5);
    td_rng_shuffle_i32(&rng, flip, g);
    for (int j = 0; j < nf; j++)
      verdict[got[flip[j]]] = (int8_t)(1 - verdict[got[flip[j]]]);
    out->cum_precision[t] = total ? (double)hits / (double)total : 0;
  }
  double *ms = malloc(sizeof(double) * (size_t)R);
  int nm = 0;
  for (int t = 1; ms && t < R; t++)
    ms[nm++] = out->round_ms[t];
  if (ms && nm == 0)
    ms[nm++] = out->round_ms[0];
  if (ms) {
    qsort(ms, (size_t)nm, sizeof *ms, cmp_double);
    out->feedback_ms_median =
        nm % 2 ? ms[nm / 2] : 0.5 * (ms[nm / 2 - 1] + ms[nm / 2]);
  }
  free(ms);
  free(verdict);
  free(flip);
  td_rec_free(rec);
  return TD_OK;
}

void td_sim_single(const td_sus_features *f, const uint8_t *noisy, int feat,
                   int rounds, int k, uint64_t seed, double *cum) {
  int64_t n = f->n, take = (int64_t)rounds * k;
  if (take > n)
    take = n;
  int32_t *order = malloc((size_t)(n ? n : 1) * sizeof *order);
  TD_ASSERT(order);
  for (int64_t i = 0; i < n; i++)
    order[i] = (int32_t)i;
  td_rng rng;
  td_rng_seed(&rng, seed);
  td_rng_shuffle_i32(&rng, order, n); /* random ties (and the random pick) */
  if (feat >= 0) {
    /* Partial selection sort would do; a full sort by score is simple and
     * runs once. Stable on the shuffled order, so ties stay random. */
    float *s = malloc((size_t)(n ? n : 1) * sizeof *s);
    int32_t *tmp = malloc((size_t)(n ? n : 1) * sizeof *tmp);
    TD_ASSERT(s && tmp);
    int sign = td_sus_feature_sign(feat);
    for (int64_t i = 0; i < n; i++)
      s[i] = (float)sign * f->x[i * NF + feat];
    /* merge sort, descending by s */
    for (int64_t w = 1; w < n; w *= 2) {
      for (int64_t lo = 0; lo < n; lo += 2 * w) {
        int64_t mid = lo + w < n ? lo + w : n,
                hi = lo + 2 * w < n ? lo + 2 * w : n;
        int64_t a = lo, b = mid, o = lo;
        while (a < mid && b < hi)
          tmp[o++] = s[order[b]] > s[order[a]] ? order[b++] : order[a++];
        while (a < mid)
          tmp[o++] = order[a++];
        while (b < hi)
          tmp[o++] = order[b++];
      }
      memcpy(order, tmp, (size_t)n * sizeof *order);
    }
    free(s);
    free(tmp);
  }
  int64_t hits = 0;
  for (int t = 0; t < rounds; t++) {
    int64_t end = (int64_t)(t + 1) * k < take ? (int64_t)(t + 1) * k : take;
    for (int64_t j = (int64_t)t * k; j < end; j++)
      hits += noisy[order[j]] != 0;
    cum[t] = end ? (double)hits / (double)end : 0;
  }
  free(order);
}
