/* Boundary samples by mixup: of representations judged by the head (the
 * default, for runs of any framework), or of raw inputs judged by the full
 * model (DVI's original, for runs of the tardis trainer).
 *
 * Work proceeds in rounds. Each round splits what is left of the budget
 * evenly over the class pairs still alive, schedules for every pair enough
 * attempts to meet its share at the success rate seen so far, runs all
 * attempts in parallel, and keeps the first successes of each pair in
 * attempt order. Attempt j of the whole run draws from its own stream
 * td_rng_split(seed, j), so the result does not depend on how attempts are
 * spread over threads. */
#include "tardis/boundary.h"

#include "tardis/nn.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tardis/parallel.h"
#include "tardis/rng.h"

/* A round never asks for more than this many samples, which bounds the
 * attempt arrays of one round. */
#define BND_ROUND_MAX ((int64_t)1 << 18)
#define BND_MAX_ROUNDS 256
/* Rejection-sampling tries when drawing a sample with a small logit gap. */
#define BND_DRAW_TRIES 32

void td_boundary_params_default(td_boundary_params *p, int64_t n, int C) {
  p->budget = C > 0 ? n / C : n;
  if (p->budget > TD_BOUNDARY_BUDGET_MAX)
    p->budget = TD_BOUNDARY_BUDGET_MAX;
  if (p->budget < 1)
    p->budget = 1;
  p->max_steps = 8;
  p->tol = 0.1f;
  p->seed = 0;
}

float td_logit_gap(const float *z, int C, int *top1, int *top2) {
  int i1 = 0, i2 = -1;
  float zmin = z[0];
  for (int c = 1; c < C; c++) {
    if (z[c] > z[i1]) {
      i2 = i1;
      i1 = c;
    } else if (i2 < 0 || z[c] > z[i2]) {
      i2 = c;
    }
    if (z[c] < zmin)
      zmin = z[c];
  }
  if (top1)
    *top1 = i1;
  if (top2)
    *top2 = i2 < 0 ? i1 : i2;
  if (C < 2)
    return 1.0f;
  float d = z[i1] - z[i2];
  if (C == 2)
    return tanhf(0.5f * d);
  float den = z[i1] - zmin;
  return den > 0 ? d / den : 0.0f;
}

static int argmax_row(const float *z, int C) {
  int best = 0;
  for (int c = 1; c < C; c++)
    if (z[c] > z[best])
      best = c;
  return best;
}

/* The one place a mix is formed: the bisection and the final output both
 * call it, so an output row is bit-identical to the one that was judged. */
static void mix_row(const float *a, const float *b, float lam, int D,
                    float *out) {
  float mu = 1.0f - lam;
  for (int d = 0; d < D; d++)
    out[d] = lam * a[d] + mu * b[d];
}

/* k-th smallest of v[0..n) (partially reorders v). */
static float select_kth(float *v, int64_t n, int64_t k) {
  int64_t lo = 0, hi = n - 1;
  while (lo < hi) {
    float piv = v[lo + (hi - lo) / 2];
    int64_t i = lo, j = hi;
    while (i <= j) {
      while (v[i] < piv)
        i++;
      while (v[j] > piv)
        j--;
      if (i <= j) {
        float t = v[i];
        v[i] = v[j];
        v[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j)
      hi = j;
    else if (k >= i)
      lo = i;
    else
      break;
  }
  return v[k];
}

typedef struct {
  const td_head *head;     /* representation mode */
  const td_net *net;       /* input mode: the full model ... */
  td_net_ws **ws;          /* ... with one batch-1 workspace per thread */
  const float *x, *logits; /* x: what is mixed, [n, D] */
  int D, C, max_steps;
  float tol;
  uint64_t seed;
  const int32_t *members; /* sample ids grouped by predicted class */
  const int64_t *moff;    /* [C + 1] group offsets into members */
  const float *med;       /* [C, C] median gap z_a − z_b over class a */
  const int32_t *pa, *pb; /* [P] the classes of each pair, pa < pb */
  float *scratch;         /* [threads, D + C] */
  /* the current round */
  const int32_t *att_pair; /* [n_att] pair of each attempt */
  const uint8_t *att_dir;  /* [n_att] 1: start from pb's side */
  uint64_t att_base;       /* global number of the round's first attempt */
  int32_t *res_a, *res_b;  /* [n_att] the two samples */
  float *res_lam;          /* [n_att] λ of a success */
  uint8_t *res_ok;         /* [n_att] */
} bnd_ctx;

/* Draws a sample predicted as class a, preferring those whose gap toward
 * class b is small: a uniform member is accepted with probability
 * med / (med + gap), which halves at the median gap and stays bounded, so
 * no single near-tie sample can dominate the draws. */
static int32_t draw_member(const bnd_ctx *c, td_rng *r, int a, int b) {
  const int32_t *m = c->members + c->moff[a];
  uint64_t na = (uint64_t)(c->moff[a + 1] - c->moff[a]);
  float med = c->med[(size_t)a * c->C + b];
  int32_t i = m[td_rng_below(r, na)];
  for (int t = 0; t < BND_DRAW_TRIES; t++) {
    const float *z = c->logits + (size_t)i * c->C;
    float gap = z[a] - z[b];
    if (td_rng_uniform(r) * (med + gap) < med)
      break;
    i = m[td_rng_below(r, na)];
  }
  return i;
}

static void attempt_cb(void *vctx, int64_t begin, int64_t end, int tid) {
  bnd_ctx *c = vctx;
  int D = c->D, C = c->C;
  float *mix = c->scratch + (size_t)tid * (size_t)(D + C);
  float *z = mix + D;
  for (int64_t j = begin; j < end; j++) {
    int p = c->att_pair[j];
    int ca = c->pa[p], cb = c->pb[p];
    if (c->att_dir[j]) {
      int t = ca;
      ca = cb;
      cb = t;
    }
    td_rng r;
    td_rng_split(&r, c->seed, c->att_base + (uint64_t)j);
    int32_t ia = draw_member(c, &r, ca, cb);
    int32_t ib = draw_member(c, &r, cb, ca);
    const float *xa = c->x + (size_t)ia * D, *xb = c->x + (size_t)ib * D;
    /* λ = 1 is x_a itself (class ca); the boundary with cb lies toward
     * x_b when the mix still favours ca. */
    float lo = 0.5f, hi = 1.0f, lam = 0;
    uint8_t ok = 0;
    for (int s = 0; s < c->max_steps; s++) {
      float l = 0.5f * (lo + hi);
      mix_row(xa, xb, l, D, mix);
      if (c->net)
        memcpy(z, td_net_forward(c->net, c->ws[tid], mix, 1),
               (size_t)C * sizeof *z);
      else
        td_head_forward(c->head, mix, 1, z);
      int t1, t2;
      float g = td_logit_gap(z, C, &t1, &t2);
      if (g < c->tol && ((t1 == ca && t2 == cb) || (t1 == cb && t2 == ca))) {
        ok = 1;
        lam = l;
        break;
      }
      if (z[ca] > z[cb])
        hi = l;
      else
        lo = l;
    }
    c->res_a[j] = ia;
    c->res_b[j] = ib;
    c->res_lam[j] = lam;
    c->res_ok[j] = ok;
  }
}

/* Groups samples by predicted class and computes the median gaps. */
static int prepare_classes(const float *logits, int64_t n, int C,
                           int32_t **members_out, int64_t **moff_out,
                           float **med_out) {
  int32_t *members = malloc((size_t)n * sizeof *members);
  int64_t *moff = calloc((size_t)C + 1, sizeof *moff);
  int64_t *fill = malloc((size_t)C * sizeof *fill);
  float *med = calloc((size_t)C * (size_t)C, sizeof *med);
  int32_t *pred = malloc((size_t)n * sizeof *pred);
  float *buf = malloc((size_t)n * sizeof *buf);
  if (!members || !moff || !fill || !med || !pred || !buf) {
    free(members), free(moff), free(fill), free(med), free(pred), free(buf);
    return TD_ENOMEM;
  }
  for (int64_t i = 0; i < n; i++) {
    pred[i] = argmax_row(logits + (size_t)i * C, C);
    moff[pred[i] + 1]++;
  }
  for (int c = 0; c < C; c++)
    moff[c + 1] += moff[c];
  memcpy(fill, moff, (size_t)C * sizeof *fill);
  for (int64_t i = 0; i < n; i++)
    members[fill[pred[i]]++] = (int32_t)i;
  for (int a = 0; a < C; a++) {
    int64_t na = moff[a + 1] - moff[a];
    if (na == 0)
      continue;
    for (int b = 0; b < C; b++) {
      if (b == a)
        continue;
      for (int64_t t = 0; t < na; t++) {
        const float *z = logits + (size_t)members[moff[a] + t] * C;
        buf[t] = z[a] - z[b];
      }
      float m = select_kth(buf, na, na / 2);
      /* A zero median would make every non-tied sample undrawable. */
      med[(size_t)a * C + b] = m > 1e-6f ? m : 1e-6f;
    }
  }
  free(fill), free(pred), free(buf);
  *members_out = members;
  *moff_out = moff;
  *med_out = med;
  return TD_OK;
}

typedef struct {
  int32_t *a, *b;
  float *lam;
  int64_t n;
} bnd_found;

/* Per-pair bookkeeping across rounds. */
typedef struct {
  int64_t count, tries, succ, want, n_att;
  int alive;
} bnd_pair;

/* Plans one round: shares of the remaining budget and attempt counts.
 * The budget is water-filled: pairs with the fewest samples so far are
 * topped up first, so a pair that fell short in an earlier round is not
 * overtaken by the others. Returns the number of attempts. */
static int64_t plan_round(bnd_pair *pr, int P, int64_t remaining, uint64_t seed,
                          int round, int32_t *order, uint32_t *key) {
  int m = 0;
  for (int p = 0; p < P; p++) {
    pr[p].want = pr[p].n_att = 0;
    if (pr[p].alive)
      order[m++] = p;
  }
  if (m == 0)
    return 0;
  if (remaining > BND_ROUND_MAX)
    remaining = BND_ROUND_MAX;
  /* Random keys break ties between equal counts, so that with more pairs
   * than budget no class index is favoured. */
  td_rng r;
  td_rng_split(&r, seed ^ 0x626e64ULL, (uint64_t)round);
  for (int p = 0; p < P; p++)
    key[p] = (uint32_t)td_rng_next(&r);
  /* insertion sort: P is small next to the work of a round */
  for (int i = 1; i < m; i++) {
    int32_t v = order[i];
    int j = i;
    while (j > 0 && (pr[order[j - 1]].count > pr[v].count ||
                     (pr[order[j - 1]].count == pr[v].count &&
                      key[order[j - 1]] > key[v]))) {
      order[j] = order[j - 1];
      j--;
    }
    order[j] = v;
  }
  /* The level L and the number j of pairs below it: the largest group of
   * lowest pairs that the remaining budget lifts to a common level. */
  int64_t sum = 0, level = 0;
  int j = 0;
  while (j < m) {
    int64_t s2 = sum + pr[order[j]].count;
    int64_t lv = (remaining + s2) / (j + 1);
    if (lv < pr[order[j]].count)
      break;
    sum = s2;
    level = lv;
    j++;
  }
  int64_t given = 0;
  for (int t = 0; t < j; t++) {
    pr[order[t]].want = level - pr[order[t]].count;
    given += pr[order[t]].want;
  }
  for (int t = 0; t < j && given < remaining; t++, given++)
    pr[order[t]].want++;
  int64_t total = 0;
  for (int t = 0; t < j; t++) {
    bnd_pair *q = &pr[order[t]];
    if (q->want == 0)
      continue;
    double rate = (double)(q->succ + 1) / (double)(q->tries + 2);
    double a = 1.25 * (double)q->want / rate + 1.0;
    double cap = 16.0 * (double)q->want + 64.0;
    q->n_att = (int64_t)(a < cap ? a : cap);
    total += q->n_att;
  }
  return total;
}

static int run_round(bnd_ctx *c, bnd_pair *pr, int P, int64_t n_att,
                     bnd_found *f) {
  int32_t *att_pair = malloc((size_t)n_att * sizeof *att_pair);
  uint8_t *att_dir = malloc((size_t)n_att);
  c->res_a = malloc((size_t)n_att * sizeof *c->res_a);
  c->res_b = malloc((size_t)n_att * sizeof *c->res_b);
  c->res_lam = malloc((size_t)n_att * sizeof *c->res_lam);
  c->res_ok = malloc((size_t)n_att);
  int rc = TD_OK;
  if (!att_pair || !att_dir || !c->res_a || !c->res_b || !c->res_lam ||
      !c->res_ok) {
    rc = TD_ENOMEM;
    goto done;
  }
  int64_t j = 0;
  for (int p = 0; p < P; p++)
    for (int64_t t = 0; t < pr[p].n_att; t++, j++) {
      att_pair[j] = p;
      /* Alternate sides so both classes' samples get to be x1. */
      att_dir[j] = (uint8_t)((pr[p].tries + t) & 1);
    }
  c->att_pair = att_pair;
  c->att_dir = att_dir;
  td_parallel_for(n_att, 16, attempt_cb, c);
  j = 0;
  for (int p = 0; p < P; p++) {
    int64_t ok = 0, taken = 0;
    for (int64_t t = 0; t < pr[p].n_att; t++, j++) {
      if (!c->res_ok[j])
        continue;
      ok++;
      if (taken < pr[p].want) {
        f->a[f->n] = c->res_a[j];
        f->b[f->n] = c->res_b[j];
        f->lam[f->n] = c->res_lam[j];
        f->n++;
        taken++;
      }
    }
    pr[p].count += taken;
    pr[p].succ += ok;
    pr[p].tries += pr[p].n_att;
    if (pr[p].n_att > 0 && ok == 0 && pr[p].tries >= 64)
      pr[p].alive = 0;
  }
  c->att_base += (uint64_t)n_att;
done:
  free(att_pair), free(att_dir), free(c->res_a), free(c->res_b);
  free(c->res_lam), free(c->res_ok);
  c->res_a = c->res_b = NULL;
  c->res_lam = NULL;
  c->res_ok = NULL;
  return rc;
}

static int generate(bnd_ctx proto, const float *x, const float *logits,
                    int64_t n, int D, int C, const td_boundary_params *p,
                    float **out, int64_t *n_out, int32_t **pair, td_err *err) {
  td_boundary_params prm;
  td_boundary_params_default(&prm, n, C);
  if (p) {
    prm.seed = p->seed;
    if (p->budget > 0)
      prm.budget = p->budget;
    if (p->max_steps > 0)
      prm.max_steps = p->max_steps;
    if (p->tol > 0)
      prm.tol = p->tol;
  }

  int32_t *members = NULL;
  int64_t *moff = NULL;
  float *med = NULL;
  if (prepare_classes(logits, n, C, &members, &moff, &med))
    return td_err_set(err, TD_ENOMEM, "boundary: out of memory");

  int K = 0;
  for (int c = 0; c < C; c++)
    K += moff[c + 1] > moff[c];
  int P = K * (K - 1) / 2;
  int nth = td_threads();
  int32_t *pa = malloc(((size_t)P + 1) * sizeof *pa);
  int32_t *pb = malloc(((size_t)P + 1) * sizeof *pb);
  int32_t *order = malloc(((size_t)P + 1) * sizeof *order);
  uint32_t *key = malloc(((size_t)P + 1) * sizeof *key);
  bnd_pair *pr = calloc((size_t)P + 1, sizeof *pr);
  float *scratch = malloc((size_t)nth * (size_t)(D + C) * sizeof *scratch);
  bnd_found f = {0};
  int64_t cap = prm.budget;
  if (P > 0) {
    f.a = malloc((size_t)cap * sizeof *f.a);
    f.b = malloc((size_t)cap * sizeof *f.b);
    f.lam = malloc((size_t)cap * sizeof *f.lam);
  }
  int rc = TD_OK;
  if (!pa || !pb || !order || !key || !pr || !scratch ||
      (P > 0 && (!f.a || !f.b || !f.lam))) {
    rc = TD_ENOMEM;
    goto done;
  }
  int q = 0;
  for (int a = 0; a < C; a++)
    for (int b = a + 1; b < C; b++)
      if (moff[a + 1] > moff[a] && moff[b + 1] > moff[b]) {
        pa[q] = a;
        pb[q] = b;
        pr[q].alive = 1;
        q++;
      }

  bnd_ctx c = proto;
  c.x = x;
  c.logits = logits;
  c.D = D;
  c.C = C;
  c.max_steps = prm.max_steps;
  c.tol = prm.tol;
  c.seed = prm.seed;
  c.members = members;
  c.moff = moff;
  c.med = med;
  c.pa = pa;
  c.pb = pb;
  c.scratch = scratch;
  td_blas_single_begin();
  for (int round = 0; round < BND_MAX_ROUNDS && f.n < prm.budget; round++) {
    int64_t n_att =
        plan_round(pr, P, prm.budget - f.n, prm.seed, round, order, key);
    if (n_att == 0)
      break;
    rc = run_round(&c, pr, P, n_att, &f);
    if (rc)
      break;
  }
  td_blas_single_end();
  if (rc)
    goto done;

  float *bx = NULL;
  int32_t *bp = NULL;
  if (f.n > 0) {
    bx = malloc((size_t)f.n * (size_t)D * sizeof *bx);
    bp = malloc((size_t)f.n * 2 * sizeof *bp);
    if (!bx || !bp) {
      free(bx), free(bp);
      rc = TD_ENOMEM;
      goto done;
    }
  }
  for (int64_t i = 0; i < f.n; i++) {
    const float *za = logits + (size_t)f.a[i] * C;
    const float *zb = logits + (size_t)f.b[i] * C;
    mix_row(x + (size_t)f.a[i] * D, x + (size_t)f.b[i] * D, f.lam[i], D,
            bx + (size_t)i * D);
    bp[2 * i] = argmax_row(za, C);
    bp[2 * i + 1] = argmax_row(zb, C);
  }
  *out = bx;
  *pair = bp;
  *n_out = f.n;

done:
  if (rc == TD_ENOMEM)
    td_err_set(err, TD_ENOMEM, "boundary: out of memory");
  free(members), free(moff), free(med), free(pa), free(pb), free(order);
  free(key);
  free(pr), free(scratch), free(f.a), free(f.b), free(f.lam);
  return rc;
}

int td_boundary_generate(const td_head *head, const float *x,
                         const float *logits, int64_t n, int D, int C,
                         const td_boundary_params *p, float **out,
                         int32_t **pair, int64_t *n_out, td_err *err) {
  if (!head || !x || !logits || !out || !pair || !n_out || n < 1 ||
      n > INT32_MAX || D < 1 || C < 2)
    return td_err_set(err, TD_EARG,
                      "boundary: bad arguments (n = %lld, D = %d, C = %d)",
                      (long long)n, D, C);
  if (td_head_in_dim(head) != D || td_head_out_dim(head) != C)
    return td_err_set(err, TD_EARG,
                      "boundary: the head maps %d -> %d, expected %d -> %d",
                      td_head_in_dim(head), td_head_out_dim(head), D, C);
  bnd_ctx proto = {.head = head};
  return generate(proto, x, logits, n, D, C, p, out, n_out, pair, err);
}

int td_boundary_generate_input(const td_net *net, int repr_layer,
                               const float *inputs, const float *logits,
                               int64_t n, const td_boundary_params *p,
                               float **out, int32_t **pair, int64_t *n_out,
                               td_err *err) {
  int L = net ? td_net_n_layers(net) : 0;
  if (!net || !inputs || !logits || !out || !pair || !n_out || n < 1 ||
      n > INT32_MAX || repr_layer < 0 || repr_layer >= L - 1 ||
      td_net_out_dim(net) < 2)
    return td_err_set(err, TD_EARG,
                      "boundary: bad arguments (n = %lld, representation "
                      "layer %d of %d)",
                      (long long)n, repr_layer, L);
  int in = td_net_in_dim(net), C = td_net_out_dim(net);
  int D = td_net_dim(net, repr_layer + 1), nth = td_threads();
  td_net_ws **ws = calloc((size_t)nth, sizeof *ws);
  int rc = ws ? TD_OK : TD_ENOMEM;
  for (int t = 0; t < nth && rc == TD_OK; t++)
    if (!(ws[t] = td_net_ws_new(net, 1)))
      rc = TD_ENOMEM;
  float *mixes = NULL;
  int64_t m = 0;
  if (rc == TD_OK) {
    bnd_ctx proto = {.net = net, .ws = ws};
    rc = generate(proto, inputs, logits, n, in, C, p, &mixes, &m, pair, err);
  } else {
    td_err_set(err, TD_ENOMEM, "boundary: out of memory");
  }
  for (int t = 0; ws && t < nth; t++)
    td_net_ws_free(ws[t]);
  free(ws);
  if (rc != TD_OK)
    return rc;
  /* The boundary samples live in representation space: the model's
   * activation of the mixed inputs at the representation layer. */
  float *repr = m ? malloc((size_t)m * (size_t)D * sizeof *repr) : NULL;
  if (m && (!repr || td_net_predict(net, mixes, m, NULL, repr_layer, repr))) {
    free(repr);
    free(mixes);
    free(*pair);
    *pair = NULL;
    return td_err_set(err, TD_ENOMEM, "boundary: out of memory");
  }
  free(mixes);
  *out = repr;
  *n_out = m;
  return TD_OK;
}
