/* Choosing pool samples (DESIGN §3.10 (4)): MODE's selection by similarity
 * of each sample's heat map to its label's differential map, and the two
 * controls with the same budget: uniform random, and label-matched random
 * (MODE's count per label, drawn at random within each label). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "repair/select.h"

const char *td_select_name(td_select_strategy s) {
  static const char *const names[] = {"mode", "random", "label-random"};
  return s >= 0 && s < TD_SELECT_COUNT ? names[s] : NULL;
}

/* How bad a buggy label is: the distance past its threshold. */
static double severity(const td_label_diag *L, double theta, double gamma) {
  if (L->verdict == TD_VERDICT_UNDERFIT)
    return isnan(L->train_acc) ? theta : theta - L->train_acc;
  if (L->verdict == TD_VERDICT_OVERFIT)
    return L->train_acc - L->test_acc - gamma;
  return 0;
}

/* How starved of data a buggy label is: 1 - its trained-on samples over the
 * best-supplied label's, when it has less than half as many (0 otherwise,
 * so that labels trained on about as much data split by severity alone). A
 * label the model underfits for want of data needs about as many samples
 * as the others had, far more than its severity alone gives it. */
static double starvation(const td_diagnosis *g, int l) {
  int64_t most = 0;
  for (int k = 0; k < g->n_classes; k++)
    most = g->labels[k].n_train > most ? g->labels[k].n_train : most;
  double s = most > 0 ? 1 - (double)g->labels[l].n_train / (double)most : 0;
  return s > 0.5 ? s : 0;
}

/* n split over the C labels in proportion to want[] (>= 0; largest
 * remainders, lowest label first on a tie) into q[]; want is changed. */
static void split(int64_t n, double *want, int C, int64_t *q) {
  double tot = 0;
  int64_t used = 0;
  for (int l = 0; l < C; l++)
    tot += want[l];
  for (int l = 0; l < C; l++) {
    q[l] = tot > 0 ? (int64_t)floor((double)n * want[l] / tot) : 0;
    used += q[l];
  }
  while (tot > 0 && used < n) {
    int best = -1;
    double br = -1;
    for (int l = 0; l < C; l++) {
      double r = (double)n * want[l] / tot - (double)q[l];
      if (want[l] > 0 && r > br)
        br = r, best = l;
    }
    q[best]++;
    used++;
    want[best] = want[best] * 0.999999; /* next round another remainder */
  }
}

/* n split as split() does, but no label l over room[l]: a label the split
 * would put over its room gets room[l] and the rest is split again among the
 * others. Each pass fixes a label, so at most C passes; where no label is
 * over its room this is split()'s result. On failure q is all zero. */
static void split_capped(int64_t n, const double *want, const int64_t *room,
                         int C, int64_t *q) {
  int64_t *t = malloc((size_t)C * sizeof *t);
  double *w = malloc((size_t)C * sizeof *w);
  char *fixed = calloc((size_t)C, 1);
  memset(q, 0, (size_t)C * sizeof *q);
  for (int pass = 0; t && w && fixed && pass < C; pass++) {
    int over = 0;
    for (int l = 0; l < C; l++)
      w[l] = fixed[l] ? 0 : want[l];
    split(n, w, C, t);
    for (int l = 0; l < C; l++)
      if (!fixed[l] && t[l] > room[l])
        q[l] = room[l], fixed[l] = 1, n -= room[l], over = 1;
    if (!over) {
      for (int l = 0; l < C; l++)
        q[l] = fixed[l] ? q[l] : t[l];
      break;
    }
  }
  free(t);
  free(w);
  free(fixed);
}

/* How many more fine-tuning samples each label may get this round: up to
 * the best-supplied label's count plus an even share of the round (k / C).
 * A label flooded with picks takes recall from its look-alikes: on the
 * small-data CNN of docs/repair.md a pullover given 288 of 600 picks cost
 * the coat 23 points, and the cap lifted MODE by 2 points on 6 seeds of 6.
 * A starved label is far under it. */
static void rooms(const td__select_ctx *c, int64_t *room) {
  int C = c->g->n_classes;
  int64_t most = 0, even = (c->k + C - 1) / C;
  for (int l = 0; l < C; l++)
    most = c->g->labels[l].n_train > most ? c->g->labels[l].n_train : most;
  for (int l = 0; l < C; l++) {
    room[l] = most + even - c->g->labels[l].n_train;
    room[l] = room[l] > 0 ? room[l] : 0;
  }
}

/* MODE's quota per buggy label: (1 - other_share) k split in proportion to
 * severity plus starvation within each label's room, capped by what the
 * pool holds. */
static void quotas(const td__select_ctx *c, const int64_t *avail_per,
                   const int64_t *room, int64_t *q) {
  int C = c->g->n_classes;
  double *want = calloc((size_t)C, sizeof *want);
  if (!want) { /* tiny; on failure pick nothing for the buggy labels */
    memset(q, 0, (size_t)C * sizeof *q);
    return;
  }
  for (int l = 0; l < C; l++) {
    want[l] = severity(&c->g->labels[l], c->theta, c->gamma);
    if (want[l] > 0)
      want[l] += starvation(c->g, l);
  }
  split_capped((int64_t)llround((1 - c->other_share) * (double)c->k), want,
               room, C, q);
  for (int l = 0; l < C; l++)
    q[l] = q[l] > avail_per[l] ? avail_per[l] : q[l];
  free(want);
}

typedef struct scored {
  double s;
  int32_t i;
} scored;

static int cmp_desc(const void *a, const void *b) {
  const scored *x = a, *y = b;
  if (x->s != y->s)
    return x->s < y->s ? 1 : -1;
  return (x->i > y->i) - (x->i < y->i);
}

/* Cosine of the sample's heat map f ⊙ w_l with the target map t. */
static double cosine(const float *f, const float *w, const float *t, int dim) {
  double dot = 0, nh = 0, nt = 0;
  for (int j = 0; j < dim; j++) {
    double h = (double)f[j] * (double)w[j];
    dot += h * (double)t[j];
    nh += h * h;
    nt += (double)t[j] * (double)t[j];
  }
  return nh > 0 && nt > 0 ? dot / sqrt(nh * nt) : 0;
}

/* Label l's q picks by similarity: the least similar to l's differential
 * map, i.e. the most similar to what the inputs the model gets wrong have
 * that its correct ones lack: hm_missed - hm_correct = -dhm_under for an
 * underfitting label (the inputs like those it still misses; MODE's
 * published direction, most similar to dhm_under, picked the inputs the
 * model already gets right and scored 0.4-1.3 points lower, docs/repair.md),
 * hm_wrong - hm_correct = -dhm_over for an overfitting one (the most
 * diverse inputs, MODE's choice). cand: the available pool samples of l. */
static int pick_by_map(const td__select_ctx *c, int l, const int32_t *cand,
                       int64_t m, int64_t q, int32_t *out, td_err *err) {
  const td_diagnosis *g = c->g;
  int dim = g->dim, over = g->labels[l].verdict == TD_VERDICT_OVERFIT;
  const float *t = (over ? g->dhm_over : g->dhm_under) + (int64_t)l * dim;
  const float *w = g->probe_w + (int64_t)l * dim;
  float *f = malloc((size_t)(m ? m : 1) * dim * sizeof *f);
  scored *s = malloc((size_t)(m ? m : 1) * sizeof *s);
  int rc =
      f && s ? TD_OK : td_err_set(err, TD_ENOMEM, "out of memory selecting");
  if (!rc)
    rc = td__features(c->d, 0, g->layer, cand, m, f, err);
  for (int64_t i = 0; !rc && i < m; i++) {
    double cs = cosine(f + i * dim, w, t, dim);
    s[i] = (scored){-cs, cand[i]};
  }
  if (!rc) {
    qsort(s, (size_t)m, sizeof *s, cmp_desc);
    for (int64_t i = 0; i < q; i++)
      out[i] = s[i].i;
  }
  free(f);
  free(s);
  return rc;
}

/* q of the m candidates at random (partial Fisher-Yates on a copy). */
static int pick_random(td_rng *rng, const int32_t *cand, int64_t m, int64_t q,
                       int32_t *out) {
  int32_t *v = malloc((size_t)(m ? m : 1) * sizeof *v);
  if (!v)
    return TD_ENOMEM;
  memcpy(v, cand, (size_t)m * sizeof *v);
  for (int64_t i = 0; i < q; i++) {
    int64_t j = i + (int64_t)td_rng_below(rng, (uint64_t)(m - i));
    int32_t t = v[i];
    v[i] = v[j];
    v[j] = t;
    out[i] = v[i];
  }
  free(v);
  return TD_OK;
}

/* The available samples of label l (-1: of the healthy labels; -2: all)
 * not picked this round (taken[i] != 0; taken may be NULL). */
static int64_t candidates(const td__select_ctx *c, int l, const char *taken,
                          int32_t *out) {
  int64_t m = 0;
  for (int64_t i = 0; i < c->n_avail; i++) {
    int32_t s = c->avail[i], y = c->y[s];
    if ((l == -2 ||
         (l >= 0 ? y == l : c->g->labels[y].verdict == TD_VERDICT_HEALTHY)) &&
        !(taken && taken[s]))
      out[m++] = s;
  }
  return m;
}

/* The look-alikes of the labels with a quota: how many of their trained-on
 * inputs the model takes for each other label, into cnt[C]. These are the
 * labels a repair takes recall from (the buggy model gives them the
 * starved label's inputs). Returns 0 when there are none (no predictions,
 * or every such input fitted). */
static int lookalikes(const td__select_ctx *c, const int64_t *q, double *cnt) {
  const td__diag_data *d = c->d;
  int any = 0;
  for (int64_t k = 0; d->pred_train && k < d->n_trained; k++) {
    int32_t i = d->trained[k], y = c->y[i], p = d->pred_train[i];
    if (p != y && p >= 0 && p < c->g->n_classes && q[y] > 0)
      cnt[p] += 1, any = 1;
  }
  return any;
}

/* Up to want of the candidates of label l (-1, -2 as in candidates) at
 * random into out + *n, marked in taken. */
static int draw(const td__select_ctx *c, int l, int64_t want, char *taken,
                int32_t *cand, int32_t *out, int64_t *n) {
  int64_t m = candidates(c, l, taken, cand), take = want < m ? want : m;
  if (pick_random(c->rng, cand, m, take, out + *n))
    return TD_ENOMEM;
  for (int64_t i = 0; i < take; i++)
    taken[out[*n + i]] = 1;
  *n += take;
  return TD_OK;
}

/* The rest of the round after the buggy labels' picks out[0..*n): split
 * among their look-alikes in proportion to how often the model takes
 * their inputs for each, at random within each label, so that the labels
 * a repair takes recall from get fresh inputs of their own; what they
 * cannot fill at random from the healthy labels, then from all. */
static int pick_rest(const td__select_ctx *c, const int64_t *q, int32_t *out,
                     int64_t *n, int32_t *cand) {
  int C = c->g->n_classes;
  double *cnt = calloc((size_t)C, sizeof *cnt);
  int64_t *qr = calloc((size_t)C, sizeof *qr);
  char *taken = calloc((size_t)c->d->n_train + 1, 1);
  int rc = cnt && qr && taken ? TD_OK : TD_ENOMEM;
  for (int64_t i = 0; !rc && i < *n; i++)
    taken[out[i]] = 1;
  if (!rc && lookalikes(c, q, cnt))
    split(c->k - *n, cnt, C, qr);
  for (int l = 0; !rc && l < C; l++)
    if (qr[l])
      rc = draw(c, l, qr[l], taken, cand, out, n);
  if (!rc && *n < c->k)
    rc = draw(c, -1, c->k - *n, taken, cand, out, n);
  if (!rc && *n < c->k) /* every label buggy */
    rc = draw(c, -2, c->k - *n, taken, cand, out, n);
  free(cnt);
  free(qr);
  free(taken);
  return rc;
}

/* MODE: the buggy labels' quotas by heat map, the rest at random from
 * their look-alikes (pick_rest). */
static int select_mode(const td__select_ctx *c, int32_t *out, int64_t *n,
                       int32_t *cand, td_err *err) {
  int C = c->g->n_classes;
  int64_t *avail_per = calloc((size_t)C * 3, sizeof *avail_per);
  int64_t *q = avail_per + C, *room = avail_per + 2 * C;
  int rc = avail_per ? TD_OK : td_err_set(err, TD_ENOMEM, "out of memory");
  for (int64_t i = 0; !rc && i < c->n_avail; i++)
    avail_per[c->y[c->avail[i]]]++;
  if (!rc) {
    rooms(c, room);
    quotas(c, avail_per, room, q);
  }
  *n = 0;
  for (int l = 0; !rc && l < C; l++) {
    if (!q[l])
      continue;
    int64_t m = candidates(c, l, NULL, cand);
    rc = pick_by_map(c, l, cand, m, q[l], out + *n, err);
    *n += q[l];
  }
  if (!rc && pick_rest(c, q, out, n, cand))
    rc = td_err_set(err, TD_ENOMEM, "out of memory");
  free(avail_per);
  return rc;
}

int td__select(const td__select_ctx *c, int32_t *out, int64_t *n,
               int64_t *per_label, td_err *err) {
  int C = c->g->n_classes;
  int32_t *cand = malloc((size_t)(c->n_avail ? c->n_avail : 1) * sizeof *cand);
  if (!cand)
    return td_err_set(err, TD_ENOMEM, "out of memory selecting");
  int rc = TD_OK;
  if (c->strategy == TD_SELECT_RANDOM) {
    *n = c->k < c->n_avail ? c->k : c->n_avail;
    if (pick_random(c->rng, c->avail, c->n_avail, *n, out))
      rc = td_err_set(err, TD_ENOMEM, "out of memory selecting");
  } else {
    rc = select_mode(c, out, n, cand, err);
  }
  memset(per_label, 0, (size_t)C * sizeof *per_label);
  for (int64_t i = 0; !rc && i < *n; i++)
    per_label[c->y[out[i]]]++;
  if (!rc && c->strategy == TD_SELECT_LABEL_RANDOM) {
    /* MODE's count per label, redrawn at random within each label */
    int64_t at = 0;
    for (int l = 0; !rc && l < C; l++) {
      int64_t m = candidates(c, l, NULL, cand);
      if (pick_random(c->rng, cand, m, per_label[l], out + at))
        rc = td_err_set(err, TD_ENOMEM, "out of memory selecting");
      at += per_label[l];
    }
  }
  free(cand);
  return rc;
}
