/* The "no new bug" guard of tardis repair (--max-label-loss D): a post-hoc
 * calibration of the output layer's bias. A repair that gives a starved
 * label back its recall takes recall from the labels the bug inflated (a
 * shirt-starved model calls every shirt a coat or a pullover); per-label
 * offsets on the logits, fitted on held-out pool samples, move the decision
 * boundaries back until no label's held-out accuracy is more than D below
 * the parent's, and among the offsets that achieve it (or come closest)
 * the one with the best balanced accuracy. docs/repair.md describes it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "repair/guard.h"
#include "train/record.h"

#define GUARD_SWEEPS 8
#define GUARD_EPS 1e-12  /* objective values closer than this are equal */
#define GUARD_CHUNK 4096 /* held-out rows converted to float at a time */

typedef struct objv {
  double shortfall, balanced;
} objv;

static int better(objv a, objv b) {
  if (a.shortfall < b.shortfall - GUARD_EPS)
    return 1;
  return a.shortfall <= b.shortfall + GUARD_EPS &&
         a.balanced > b.balanced + GUARD_EPS;
}

static int same(objv a, objv b) { return !better(a, b) && !better(b, a); }

/* The objective from correct counts per label (labels with nl 0 left out). */
static objv from_counts(const int64_t *cnt, const int64_t *nl, int C,
                        const double *base, double D) {
  objv v = {0, 0};
  int present = 0;
  for (int l = 0; l < C; l++) {
    if (nl[l] == 0)
      continue;
    double acc = (double)cnt[l] / (double)nl[l];
    double gap = base[l] - D - acc;
    v.shortfall += gap > 0 ? gap : 0;
    v.balanced += acc;
    present++;
  }
  v.balanced = present ? v.balanced / present : 0;
  return v;
}

static int predict_row(const float *z, int C, const double *delta) {
  int best = 0;
  double bv = (double)z[0] + delta[0];
  for (int k = 1; k < C; k++)
    if ((double)z[k] + delta[k] > bv) {
      bv = (double)z[k] + delta[k];
      best = k;
    }
  return best;
}

static void label_counts(const int32_t *y, int64_t n, int C, int64_t *nl) {
  memset(nl, 0, (size_t)C * sizeof *nl);
  for (int64_t i = 0; i < n; i++)
    nl[y[i]]++;
}

static objv objective(const float *z, const int32_t *y, int64_t n, int C,
                      const int64_t *nl, const double *base, double D,
                      const double *delta, int64_t *cnt) {
  memset(cnt, 0, (size_t)C * sizeof *cnt);
  for (int64_t i = 0; i < n; i++)
    cnt[y[i]] += predict_row(z + i * C, C, delta) == y[i];
  return from_counts(cnt, nl, C, base, D);
}

void td__guard_objective(const float *z, const int32_t *y, int64_t n, int C,
                         const double *base, double D, const double *delta,
                         double *shortfall, double *balanced, double *acc) {
  int64_t *nl = calloc((size_t)C, sizeof *nl);
  int64_t *cnt = calloc((size_t)C, sizeof *cnt);
  if (!nl || !cnt) {
    free(nl);
    free(cnt);
    *shortfall = *balanced = NAN;
    return;
  }
  label_counts(y, n, C, nl);
  objv v = objective(z, y, n, C, nl, base, D, delta, cnt);
  *shortfall = v.shortfall;
  *balanced = v.balanced;
  for (int l = 0; acc && l < C; l++)
    acc[l] = nl[l] ? (double)cnt[l] / (double)nl[l] : (double)NAN;
  free(nl);
  free(cnt);
}

/* One sample's breakpoint for the label being swept: it is predicted l iff
 * delta_l > t; below, it takes its best other label a. */
typedef struct brk {
  double t;
  int64_t i;
  int a;
} brk;

static int brk_cmp(const void *pa, const void *pb) {
  const brk *a = pa, *b = pb;
  if (a->t != b->t)
    return a->t < b->t ? -1 : 1;
  return a->i < b->i ? -1 : a->i > b->i;
}

/* Keeps cand as the best so far when it beats *best, or ties it nearer
 * to cur. */
static void consider(objv v, double cand, double cur, objv *best,
                     double *best_at, int *have) {
  if (!*have || better(v, *best) ||
      (same(v, *best) && fabs(cand - cur) < fabs(*best_at - cur))) {
    *best = v;
    *best_at = cand;
    *have = 1;
  }
}

/* The exact one-dimensional maximisation over delta[l]: returns 1 when it
 * moved delta[l] to a strictly better value (*now: the objective there). */
static int sweep_label(const float *z, const int32_t *y, int64_t n, int C,
                       const int64_t *nl, const double *base, double D,
                       double *delta, int l, brk *b, int64_t *cnt, objv *now) {
  memset(cnt, 0, (size_t)C * sizeof *cnt);
  for (int64_t i = 0; i < n; i++) {
    const float *r = z + i * C;
    int a = -1;
    double m = 0;
    for (int k = 0; k < C; k++)
      if (k != l && (a < 0 || (double)r[k] + delta[k] > m)) {
        m = (double)r[k] + delta[k];
        a = k;
      }
    b[i] = (brk){m - (double)r[l], i, a};
    cnt[a] += y[i] == a; /* below every breakpoint nobody is predicted l */
  }
  qsort(b, (size_t)n, sizeof *b, brk_cmp);
  double cur = delta[l], best_at = 0;
  objv best = {0, 0};
  int have = 0;
  consider(from_counts(cnt, nl, C, base, D), b[0].t - 1, cur, &best, &best_at,
           &have);
  for (int64_t j = 0; j < n;) {
    int64_t e = j;
    for (; e < n && b[e].t == b[j].t; e++) { /* crossing t: predicted l */
      int32_t yi = y[b[e].i];
      cnt[b[e].a] -= yi == b[e].a;
      cnt[l] += yi == l;
    }
    double cand = e < n ? 0.5 * (b[j].t + b[e].t) : b[j].t + 1;
    consider(from_counts(cnt, nl, C, base, D), cand, cur, &best, &best_at,
             &have);
    j = e;
  }
  if (!better(best, *now))
    return 0;
  delta[l] = best_at;
  *now = best;
  return 1;
}

int td__guard_fit(const float *z, const int32_t *y, int64_t n, int C,
                  const double *base, double D, double *delta,
                  td__guard_fit_info *info) {
  memset(info, 0, sizeof *info);
  for (int l = 0; l < C; l++)
    delta[l] = 0;
  int64_t *nl = calloc((size_t)C, sizeof *nl);
  int64_t *cnt = calloc((size_t)C, sizeof *cnt);
  brk *b = malloc((size_t)(n > 0 ? n : 1) * sizeof *b);
  if (!nl || !cnt || !b) {
    free(nl);
    free(cnt);
    free(b);
    return TD_ENOMEM;
  }
  label_counts(y, n, C, nl);
  objv now = objective(z, y, n, C, nl, base, D, delta, cnt);
  while (n > 0 && info->sweeps < GUARD_SWEEPS && !info->converged) {
    int changed = 0;
    for (int l = 0; l < C; l++)
      changed |= sweep_label(z, y, n, C, nl, base, D, delta, l, b, cnt, &now);
    info->sweeps++;
    info->converged = !changed;
  }
  info->converged |= n == 0;
  /* the value at the offsets themselves (a midpoint is never a tie) */
  now = objective(z, y, n, C, nl, base, D, delta, cnt);
  info->shortfall = now.shortfall;
  info->balanced = now.balanced;
  free(nl);
  free(cnt);
  free(b);
  return TD_OK;
}

void td__guard_round_free(td_repair_guard *g) {
  free(g->offsets);
  free(g->acc_parent);
  free(g->acc_before);
  free(g->acc_after);
  memset(g, 0, sizeof *g);
}

int64_t td__guard_reserve_count(int64_t P) {
  int64_t k = (P * TD__HELDOUT_PCT + 99) / 100; /* the share, rounded up */
  k = k > TD__HELDOUT_MAX ? TD__HELDOUT_MAX : k;
  k = k < TD__HELDOUT_MIN ? TD__HELDOUT_MIN : k;
  return k < P ? k : P;
}

/* Marks td__guard_reserve_count(m) of the m pool positions pos[] drawn at
 * random (partial Fisher-Yates; pos is shuffled in part). */
static void reserve_label(td_rng *rng, int64_t *pos, int64_t m, char *mark) {
  int64_t k = td__guard_reserve_count(m);
  for (int64_t i = 0; i < k; i++) {
    int64_t j = i + (int64_t)td_rng_below(rng, (uint64_t)(m - i));
    int64_t v = pos[i];
    pos[i] = pos[j];
    pos[j] = v;
    mark[pos[i]] = 1;
  }
}

int64_t td__guard_reserve(const int32_t *pool, int64_t n, const int32_t *y,
                          int C, uint64_t seed, int32_t *held) {
  int64_t *pos = malloc((size_t)(n ? n : 1) * sizeof *pos), m = 0;
  char *mark = calloc((size_t)(n ? n : 1), 1);
  if (!pos || !mark) {
    free(pos);
    free(mark);
    return -1;
  }
  td_rng rng; /* "heldout": not the picks' stream nor the replay's */
  td_rng_split(&rng, seed, 0x68656c646f7574ULL);
  for (int l = 0; l < C; l++) {
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
      if (y[pool[i]] == l)
        pos[k++] = i;
    reserve_label(&rng, pos, k, mark);
  }
  for (int64_t i = 0; i < n; i++)
    if (mark[i])
      held[m++] = pool[i];
  free(pos);
  free(mark);
  return m;
}

int td__guard_check_net(const td_net *net, td_err *err) {
  int L = td_net_n_layers(net);
  const td_layer_spec *s = td_net_layer_spec(net, L - 1);
  if (s->kind != TD_LAYER_DENSE || s->act != TD_ACT_NONE)
    return td_err_set(err, TD_EARG,
                      "--max-label-loss adds offsets to the bias of the "
                      "output layer, which must be a dense layer without an "
                      "activation; this model's last layer is %s%s%s",
                      td_layer_kind_name(s->kind),
                      s->act != TD_ACT_NONE ? " with " : "",
                      s->act != TD_ACT_NONE ? td_act_name(s->act) : "");
  return TD_OK;
}

/* The logits of net on the held-out samples, z [n_held, C], a chunk of
 * rows converted to float at a time. */
static int held_logits(const td__guard *g, const td_net *net, float *z) {
  int in = td_net_in_dim(net);
  int64_t rows = g->n_held < GUARD_CHUNK ? g->n_held : GUARD_CHUNK;
  float *xb = malloc((size_t)(rows > 0 ? rows : 1) * in * sizeof *xb);
  if (!xb)
    return TD_ENOMEM;
  int rc = TD_OK;
  for (int64_t b = 0; !rc && b < g->n_held; b += GUARD_CHUNK) {
    int64_t m = g->n_held - b < GUARD_CHUNK ? g->n_held - b : GUARD_CHUNK;
    for (int64_t k = 0; k < m; k++) {
      int64_t row = g->held[b + k];
      float *o = xb + k * in;
      if (g->x->dtype == TD_U8) {
        const uint8_t *p = (const uint8_t *)g->x->data + row * in;
        for (int j = 0; j < in; j++)
          o[j] = td__u8_unit(p[j]);
      } else {
        memcpy(o, (const float *)g->x->data + row * in, (size_t)in * sizeof *o);
      }
    }
    rc = td_net_predict(net, xb, m, z + b * g->C, -1, NULL);
  }
  free(xb);
  return rc;
}

static int guard_alloc(td_repair_guard *r, int C) {
  r->offsets = calloc((size_t)C, sizeof *r->offsets);
  r->acc_parent = calloc((size_t)C, sizeof *r->acc_parent);
  r->acc_before = calloc((size_t)C, sizeof *r->acc_before);
  r->acc_after = calloc((size_t)C, sizeof *r->acc_after);
  return r->offsets && r->acc_parent && r->acc_before && r->acc_after
             ? TD_OK
             : TD_ENOMEM;
}

/* The parent's per-label accuracy on the held-out samples (NAN: none). */
static void parent_acc(const td__guard *g, double *acc) {
  int64_t *nl = calloc((size_t)g->C, sizeof *nl);
  int64_t *ok = calloc((size_t)g->C, sizeof *ok);
  for (int64_t i = 0; nl && ok && i < g->n_held; i++) {
    int32_t s = g->held[i];
    nl[g->y[s]]++;
    ok[g->y[s]] += g->parent_pred[s] == g->y[s];
  }
  for (int l = 0; l < g->C; l++)
    acc[l] = nl && ok && nl[l] ? (double)ok[l] / (double)nl[l] : (double)NAN;
  free(nl);
  free(ok);
}

static int fit_and_apply(td__guard *g, td_net *net, float *z, int32_t *yv) {
  td_repair_guard *r = g->out;
  int C = g->C, rc = held_logits(g, net, z);
  if (rc)
    return rc;
  for (int64_t i = 0; i < g->n_held; i++)
    yv[i] = g->y[g->held[i]];
  parent_acc(g, r->acc_parent);
  double *base = r->acc_parent, sf, bal;
  td__guard_objective(z, yv, g->n_held, C, base, g->D, r->offsets, &sf, &bal,
                      r->acc_before); /* offsets are 0 here */
  td__guard_fit_info info;
  if ((rc = td__guard_fit(z, yv, g->n_held, C, base, g->D, r->offsets, &info)))
    return rc;
  r->sweeps = info.sweeps;
  r->converged = info.converged;
  float *bias = td_net_bias(net, td_net_n_layers(net) - 1);
  for (int l = 0; l < C; l++)
    bias[l] += (float)r->offsets[l];
  return TD_OK;
}

void td__guard_finish(const td__guard *g, const int32_t *pred) {
  td_repair_guard *r = g->out;
  int64_t *nl = calloc((size_t)g->C, sizeof *nl);
  int64_t *ok = calloc((size_t)g->C, sizeof *ok);
  for (int64_t i = 0; nl && ok && i < g->n_held; i++) {
    int32_t s = g->held[i];
    nl[g->y[s]]++;
    ok[g->y[s]] += pred[s] == g->y[s];
  }
  r->met = nl && ok;
  for (int l = 0; l < g->C; l++) {
    r->acc_after[l] =
        nl && ok && nl[l] ? (double)ok[l] / (double)nl[l] : (double)NAN;
    if (!isnan(r->acc_parent[l]) &&
        !(r->acc_after[l] >= r->acc_parent[l] - g->D - GUARD_EPS))
      r->met = 0;
  }
  free(nl);
  free(ok);
}

int td__guard_hook(void *ctx, td_net *net, int epoch, td_err *err) {
  (void)epoch;
  td__guard *g = ctx;
  double c0 = td__cpu_now();
  int rc = td__guard_check_net(net, err);
  if (rc)
    return rc;
  td__guard_round_free(g->out);
  g->out->n_held = g->n_held;
  float *z = malloc((size_t)(g->n_held ? g->n_held : 1) * g->C * sizeof *z);
  int32_t *yv = malloc((size_t)(g->n_held ? g->n_held : 1) * sizeof *yv);
  rc = z && yv ? guard_alloc(g->out, g->C) : TD_ENOMEM;
  if (!rc)
    rc = fit_and_apply(g, net, z, yv);
  free(z);
  free(yv);
  g->out->cpu_seconds = td__cpu_now() - c0;
  if (rc)
    return td_err_set(err, rc, "out of memory fitting the repair's guard");
  return TD_OK;
}
