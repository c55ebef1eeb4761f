/* SGD with momentum and Adam over a flat parameter buffer, with PyTorch's
 * update rules so that runs compare one to one with torch.optim. */
#include "tardis/nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vec.h"

typedef enum { OPT_SGD, OPT_ADAM } opt_kind;

struct td_optim {
  opt_kind kind;
  size_t n;
  float lr;
  float momentum, weight_decay; /* SGD */
  float beta1, beta2, eps;      /* Adam */
  int64_t t;                    /* steps taken */
  float *s1;                    /* SGD: momentum buffer; Adam: first moment */
  float *s2;                    /* Adam: second moment */
};

static td_optim *optim_new(opt_kind kind, size_t n, int n_bufs) {
  td_optim *o = calloc(1, sizeof *o);
  if (!o)
    return NULL;
  o->kind = kind;
  o->n = n;
  size_t bytes = (n ? n : 1) * sizeof(float);
  if (n_bufs >= 1 && !(o->s1 = calloc(1, bytes)))
    goto oom;
  if (n_bufs >= 2 && !(o->s2 = calloc(1, bytes)))
    goto oom;
  return o;
oom:
  td_optim_free(o);
  return NULL;
}

td_optim *td_optim_sgd(size_t n, float lr, float momentum, float weight_decay) {
  TD_ASSERT(lr >= 0.0f && momentum >= 0.0f && weight_decay >= 0.0f);
  td_optim *o = optim_new(OPT_SGD, n, momentum != 0.0f ? 1 : 0);
  if (!o)
    return NULL;
  o->lr = lr;
  o->momentum = momentum;
  o->weight_decay = weight_decay;
  return o;
}

td_optim *td_optim_adam(size_t n, float lr, float beta1, float beta2,
                        float eps) {
  TD_ASSERT(lr >= 0.0f && beta1 >= 0.0f && beta1 < 1.0f && beta2 >= 0.0f &&
            beta2 < 1.0f && eps >= 0.0f);
  td_optim *o = optim_new(OPT_ADAM, n, 2);
  if (!o)
    return NULL;
  o->lr = lr;
  o->beta1 = beta1;
  o->beta2 = beta2;
  o->eps = eps;
  return o;
}

void td_optim_free(td_optim *o) {
  if (!o)
    return;
  free(o->s1);
  free(o->s2);
  free(o);
}

void td_optim_set_lr(td_optim *o, float lr) {
  TD_ASSERT(lr >= 0.0f);
  o->lr = lr;
}
float td_optim_lr(const td_optim *o) { return o->lr; }
int64_t td_optim_steps(const td_optim *o) { return o->t; }

void td_optim_reset(td_optim *o) {
  o->t = 0;
  if (o->s1)
    memset(o->s1, 0, o->n * sizeof(float));
  if (o->s2)
    memset(o->s2, 0, o->n * sizeof(float));
}

float *td_optim_state(td_optim *o, int i) {
  return i == 0 ? o->s1 : i == 1 ? o->s2 : NULL;
}

void td_optim_set_steps(td_optim *o, int64_t steps) {
  TD_ASSERT(steps >= 0);
  o->t = steps;
}

static void sgd_step(td_optim *o, float *restrict p, const float *restrict g) {
  size_t n = o->n;
  float lr = o->lr, mu = o->momentum, wd = o->weight_decay;
  if (!o->s1) {
    for (size_t i = 0; i < n; i++)
      p[i] -= lr * (g[i] + wd * p[i]);
    return;
  }
  float *restrict v = o->s1;
  /* PyTorch starts the buffer at g instead of mu*0 + g; the two are equal
   * since the buffer starts at zero, so one loop serves every step. Same
   * operations in the same order in the vector and the scalar tail. */
  td_v8 lr8 = td_v8_set1(lr), mu8 = td_v8_set1(mu), wd8 = td_v8_set1(wd);
  size_t i = 0;
  for (; i + TD_V <= n; i += TD_V) {
    td_v8 pi = td_v8_load(p + i);
    td_v8 vi = mu8 * td_v8_load(v + i) + (td_v8_load(g + i) + wd8 * pi);
    td_v8_store(v + i, vi);
    td_v8_store(p + i, pi - lr8 * vi);
  }
  for (; i < n; i++) {
    float gi = g[i] + wd * p[i];
    v[i] = mu * v[i] + gi;
    p[i] -= lr * v[i];
  }
}

static void adam_step(td_optim *o, float *restrict p, const float *restrict g) {
  size_t n = o->n;
  float b1 = o->beta1, b2 = o->beta2, eps = o->eps;
  /* Bias corrections in double: 1 - b2^t is tiny for small t with b2 close
   * to 1, and float pow would lose digits there. */
  double bc1 = 1.0 - pow((double)b1, (double)o->t);
  double bc2 = 1.0 - pow((double)b2, (double)o->t);
  float step = (float)((double)o->lr / bc1);
  float sqrt_bc2 = (float)sqrt(bc2);
  float *restrict m = o->s1, *restrict v = o->s2;
  /* Scalar: Adam trains the projection nets, where the GEMMs of a batch of
   * 1,000 dwarf this loop (and sqrt has no portable vector form here). */
  for (size_t i = 0; i < n; i++) {
    float gi = g[i];
    m[i] = b1 * m[i] + (1.0f - b1) * gi;
    v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
    /* Divisions, not reciprocals, to round exactly as torch.optim.Adam. */
    float denom = sqrtf(v[i]) / sqrt_bc2 + eps;
    p[i] -= step * m[i] / denom;
  }
}

void td_optim_step(td_optim *o, float *params, const float *grads) {
  o->t++;
  if (o->kind == OPT_SGD)
    sgd_step(o, params, grads);
  else
    adam_step(o, params, grads);
}
