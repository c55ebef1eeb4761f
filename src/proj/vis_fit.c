/* Training of the projection model (tardis/vismodel.h): argument checks,
 * allocation, DVI's passes over sampled edges with UMAP's cross-entropy, the
 * reconstruction loss and the temporal anchors of DVI and SentryCam; the
 * layout-then-distil start is vis_distil.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tardis/parallel.h"
#include "vismodel_internal.h"

#define Q_CLAMP 1e-4f

/* ---- the UMAP loss ----------------------------------------------------------
 */

/* Adds gscale x the gradient of one pair's loss to de and returns the loss.
 * With s = |e_u - e_v|^2 and q = 1/(1 + a s^b):
 *   positive: L = log(1 + a s^b),            dL/ds = a b s^(b-1) / (1 + a s^b)
 *   negative: L = log(1 + a s^b) - log(a s^b), dL/ds = -b / (s (1 + a s^b))
 * and zero gradient where the clamp of q (or 1 - q) at 1e-4 is active. */
static float pair_loss(const float *e, int32_t u, int32_t v, int negative,
                       float a, float b, float gscale, float *de) {
  float dx = e[2 * u] - e[2 * v], dy = e[2 * u + 1] - e[2 * v + 1];
  float s = dx * dx + dy * dy;
  float sc = s > 1e-12f ? s : 1e-12f;
  float asb = a * powf(sc, b);
  float q = 1.0f / (1.0f + asb);
  float loss, g;
  if (!negative) {
    if (q < Q_CLAMP)
      return -logf(Q_CLAMP);
    loss = log1pf(asb);
    g = asb * b / (sc * (1.0f + asb));
  } else {
    if (1.0f - q < Q_CLAMP)
      return -logf(Q_CLAMP);
    loss = log1pf(asb) - logf(asb);
    g = -b / (sc * (1.0f + asb));
  }
  if (de) {
    /* ds/de_u = 2 (e_u - e_v) = -ds/de_v */
    float gx = 2.0f * gscale * g * dx, gy = 2.0f * gscale * g * dy;
    de[2 * u] += gx;
    de[2 * u + 1] += gy;
    de[2 * v] -= gx;
    de[2 * v + 1] -= gy;
  }
  return loss;
}

double td_vis_umap_loss(const float *e, const int32_t *pu, const int32_t *pv,
                        int64_t n_pos, const int32_t *nu, const int32_t *nv,
                        int64_t n_neg, float a, float b, float *de) {
  int64_t total = n_pos + n_neg;
  if (total <= 0)
    return 0.0;
  float inv = 1.0f / (float)total; /* the loss is a mean over pairs */
  double loss = 0.0;
  for (int64_t i = 0; i < n_pos; i++)
    loss += (double)pair_loss(e, pu[i], pv[i], 0, a, b, inv, de);
  for (int64_t i = 0; i < n_neg; i++)
    loss += (double)pair_loss(e, nu[i], nv[i], 1, a, b, inv, de);
  return loss / (double)total;
}

/* ---- training ---------------------------------------------------------------
 */

static void fit_buf_free(fit_buf *f) {
  td_alias_free(&f->alias);
  td_net_ws_free(f->ws_enc);
  td_net_ws_free(f->ws_dec);
  td_net_ws_free(f->ws_mem);
  td_optim_free(f->opt_enc);
  td_optim_free(f->opt_dec);
  free(f->xb);
  free(f->vid);
  free(f->de);
  free(f->de_rec);
  free(f->dr);
  free(f->pu);
  free(f->pv);
  free(f->nu);
  free(f->nv);
  free(f->prev_enc);
  free(f->prev_dec);
  free(f->xm);
  free(f->dm);
  free(f->mid);
  free(f->target);
  free(f->perm);
  free(f->yb);
  free(f->xb2);
  free(f->perm2);
  free(f->probs);
  free(f->hw);
  free(f->hb);
  free(f->hz);
}

static void set_normalisation(td_vismodel *m, const float *x, int64_t n) {
  int d = m->dim;
  double *acc = calloc((size_t)d, sizeof(double));
  TD_ASSERT(acc);
  for (int64_t i = 0; i < n; i++)
    for (int j = 0; j < d; j++)
      acc[j] += (double)x[i * d + j];
  for (int j = 0; j < d; j++)
    m->mean[j] = (float)(acc[j] / (double)n);
  double ss = 0.0;
  for (int64_t i = 0; i < n; i++)
    for (int j = 0; j < d; j++) {
      double t = (double)x[i * d + j] - (double)m->mean[j];
      ss += t * t;
    }
  double rms = sqrt(ss / (double)n);
  m->scale = rms > 0.0 ? (float)(1.0 / rms) : 1.0f;
  free(acc);
}

void td__vis_gather_rows(const td_vismodel *m, const float *x,
                         const int32_t *ids, int64_t cnt, float *out) {
  int d = m->dim;
  float s = m->scale;
  for (int64_t r = 0; r < cnt; r++) {
    const float *src = x + (int64_t)ids[r] * d;
    float *dst = out + r * d;
    for (int j = 0; j < d; j++)
      dst[j] = (src[j] - m->mean[j]) * s;
  }
}

/* Squared distance of a net's parameters to an anchor copy; adds
 * 2 coef (W - W_prev) to its gradients. */
static double drift_term(td_net *net, const float *prev, float coef) {
  size_t np = td_net_n_params(net);
  const float *w = td_net_params(net);
  float *g = td_net_grads(net);
  double ss = 0.0;
  for (size_t i = 0; i < np; i++) {
    float t = w[i] - prev[i];
    ss += (double)t * (double)t;
    g[i] += 2.0f * coef * t;
  }
  return ss;
}

/* The SentryCam hinge on a batch of remembered points; returns its loss
 * (already weighted) and adds its gradient to the encoder. */
static double memory_term(fit_state *s) {
  const td_vis_anchor *a = s->anc;
  fit_buf *f = s->f;
  int mb = s->mem_batch;
  for (int r = 0; r < mb; r++)
    f->mid[r] = (int32_t)td_rng_below(&s->rng, (uint64_t)a->n_memory);
  td__vis_gather_rows(s->m, a->mem_x, f->mid, mb, f->xm);
  const float *e = td_net_forward(s->m->enc, f->ws_mem, f->xm, mb);
  double loss = 0.0;
  float w = s->p->lambda_temporal / (float)mb;
  for (int r = 0; r < mb; r++) {
    int32_t id = f->mid[r];
    float dx = e[2 * r] - a->mem_y[2 * id];
    float dy = e[2 * r + 1] - a->mem_y[2 * id + 1];
    float dist = sqrtf(dx * dx + dy * dy);
    float delta = a->mem_delta ? a->mem_delta[id] : s->p->memory_delta;
    f->dm[2 * r] = f->dm[2 * r + 1] = 0.0f;
    if (dist > delta && dist > 0.0f) {
      loss += (double)(w * (dist - delta));
      f->dm[2 * r] = w * dx / dist;
      f->dm[2 * r + 1] = w * dy / dist;
    }
  }
  td_net_backward(s->m->enc, f->ws_mem, f->dm, mb, NULL);
  return loss;
}

/* One optimisation step on a fresh batch; returns its loss. */
static double fit_step(fit_state *s) {
  td_vismodel *m = s->m;
  fit_buf *f = s->f;
  const td_graph *g = s->g;
  const td_vis_params *p = s->p;
  int B = s->bsz, V = 2 * B, d = m->dim;
  /* Endpoints in random order within each edge, so that the decoded prefix
   * of the batch is not biased towards heads (lower vertex ids). */
  for (int i = 0; i < B; i++) {
    int64_t e = td_alias_draw(&f->alias, &s->rng);
    int flip = (int)(td_rng_next(&s->rng) >> 63);
    f->vid[2 * i + flip] = g->head[e];
    f->vid[2 * i + 1 - flip] = g->tail[e];
    f->pu[i] = 2 * i;
    f->pv[i] = 2 * i + 1;
  }
  int nneg = B * p->n_negatives;
  for (int i = 0; i < nneg; i++) {
    int32_t u = f->pu[i / p->n_negatives], w;
    do
      w = (int32_t)td_rng_below(&s->rng, (uint64_t)V);
    while ((w >> 1) == (u >> 1));
    f->nu[i] = u;
    f->nv[i] = w;
  }
  td__vis_gather_rows(m, s->x, f->vid, V, f->xb);
  td_net_zero_grad(m->enc);
  td_net_zero_grad(m->dec);
  const float *e = td_net_forward(m->enc, f->ws_enc, f->xb, V);
  memset(f->de, 0, (size_t)V * 2 * sizeof(float));
  double loss = td_vis_umap_loss(e, f->pu, f->pv, B, f->nu, f->nv, nneg, p->a,
                                 p->b, f->de);
  int R = s->nrec;
  if (R > 0 && p->lambda_rec > 0.0f) {
    /* The decoder reads e (the encoder's output) in place; it stays valid
     * until the encoder's backward below. */
    const float *r = td_net_forward(m->dec, f->ws_dec, e, R);
    double ss = 0.0;
    float c = 2.0f * p->lambda_rec / ((float)R * (float)d);
    for (int64_t i = 0; i < (int64_t)R * d; i++) {
      float t = r[i] - f->xb[i];
      ss += (double)t * (double)t;
      f->dr[i] = c * t;
    }
    loss += (double)p->lambda_rec * ss / ((double)R * d);
    td_net_backward(m->dec, f->ws_dec, f->dr, R, f->de_rec);
    for (int i = 0; i < 2 * R; i++)
      f->de[i] += f->de_rec[i];
  }
  td_net_backward(m->enc, f->ws_enc, f->de, V, NULL);
  /* DVI scales the drift by the overlap of the batch's tail vertices. */
  for (int i = 0; i < B; i++)
    f->pv[i] = f->vid[2 * i + 1];
  loss += td__vis_temporal_terms(s, f->pv, B);
  td_optim_step(f->opt_enc, td_net_params(m->enc), td_net_grads(m->enc));
  td_optim_step(f->opt_dec, td_net_params(m->dec), td_net_grads(m->dec));
  return loss;
}

/* Temporal terms shared by both phases; returns their loss. */
double td__vis_temporal_terms(fit_state *s, const int32_t *ids, int cnt) {
  const td_vis_params *p = s->p;
  double loss = 0.0;
  if (s->have_prev && p->temporal == TD_TEMPORAL_DVI &&
      p->lambda_temporal > 0.0f) {
    double ov = 0.0;
    for (int i = 0; i < cnt; i++)
      ov += s->anc && s->anc->knn_overlap ? (double)s->anc->knn_overlap[ids[i]]
                                          : 1.0;
    float coef = p->lambda_temporal * (float)(ov / cnt);
    double ss = drift_term(s->m->enc, s->f->prev_enc, coef) +
                drift_term(s->m->dec, s->f->prev_dec, coef);
    loss += (double)coef * ss;
  }
  if (s->mem_batch > 0)
    loss += memory_term(s);
  return loss;
}

/* The temporal terms of one net (0: encoder, 1: decoder). */
double td__vis_temporal_net(fit_state *s, const int32_t *ids, int cnt,
                            int which) {
  const td_vis_params *p = s->p;
  double loss = 0.0;
  /* The weight drift anchors the encoder only: the drawn positions and the
   * encoder carry the temporal continuity, while the decoder must follow the
   * classifier's decisions wherever they changed. Anchored, it kept ppr at
   * 0.95-0.97 on the epoch of a 6k run whose predictions changed most
   * (0.975-0.979 without; docs/projection.md, "ppr on small runs"). */
  if (which == 0 && s->have_prev && p->temporal == TD_TEMPORAL_DVI &&
      p->lambda_temporal > 0.0f) {
    double ov = 0.0;
    for (int i = 0; i < cnt; i++)
      ov += s->anc && s->anc->knn_overlap ? (double)s->anc->knn_overlap[ids[i]]
                                          : 1.0;
    float coef = p->lambda_temporal * (float)(ov / cnt);
    double ss = drift_term(s->m->enc, s->f->prev_enc, coef);
    loss += (double)coef * ss;
  }
  if (which == 0 && s->mem_batch > 0)
    loss += memory_term(s);
  return loss;
}

static int fit_check(const td_vismodel *m, const float *x, int64_t n,
                     const td_graph *g, const td_vismodel *prev,
                     const td_vis_params *p, const td_vis_anchor *anc,
                     td_err *err) {
  if (!x || n < 2 || !g || g->n_vertices != n || g->n_edges < 1)
    return td_err_set(err, TD_EARG,
                      "vismodel: need >= 2 points and a graph over them "
                      "(%lld points, graph over %lld vertices, %lld edges)",
                      (long long)n, g ? (long long)g->n_vertices : 0LL,
                      g ? (long long)g->n_edges : 0LL);
  if (n >= INT32_MAX)
    return td_err_set(err, TD_EARG, "vismodel: too many points");
  if (p->batch_edges < 1 || p->n_negatives < 0 || p->max_epochs < 0 ||
      (p->distil_batch < 1 &&
       (p->distil_epochs > 0 || p->warm_distil_epochs > 0)) ||
      p->rec_fraction < 0.0f || p->rec_fraction > 1.0f || p->temporal < 0 ||
      p->temporal >= TD_TEMPORAL_COUNT)
    return td_err_set(err, TD_EARG, "vismodel: invalid parameters");
  if (prev && (prev->dim != m->dim || !td__vis_same_shape(prev->enc, m->enc) ||
               !td__vis_same_shape(prev->dec, m->dec)))
    return td_err_set(err, TD_EARG,
                      "vismodel: previous model has another shape");
  if (anc && anc->n_memory > 0 && (!anc->mem_x || !anc->mem_y))
    return td_err_set(err, TD_EARG, "vismodel: memory without points");
  return TD_OK;
}

static int fit_alloc(fit_state *s, const td_vismodel *prev, int64_t nmem) {
  fit_buf *f = s->f;
  td_vismodel *m = s->m;
  int V = 2 * s->bsz, d = m->dim;
  size_t nneg = (size_t)s->bsz * (size_t)s->p->n_negatives;
  /* only DVI's own passes sample edges by weight */
  if (s->p->max_epochs > 0 &&
      td_alias_build(s->g->weight, s->g->n_edges, &f->alias) != TD_OK)
    return TD_ENOMEM;
  int P = s->p->distil_batch > 0 ? s->p->distil_batch : 1;
  int rows = V > P ? V : P;
  f->ws_enc = td_net_ws_new(m->enc, rows);
  f->ws_dec = td_net_ws_new(m->dec, s->nrec > P ? s->nrec : P);
  f->opt_enc =
      td_optim_adam(td_net_n_params(m->enc), s->p->lr, 0.9f, 0.999f, 1e-7f);
  f->opt_dec =
      td_optim_adam(td_net_n_params(m->dec), s->p->lr, 0.9f, 0.999f, 1e-7f);
  f->xb = malloc((size_t)rows * d * sizeof(float));
  f->vid = malloc((size_t)rows * sizeof(int32_t));
  f->de = malloc((size_t)rows * 2 * sizeof(float));
  f->de_rec = malloc((size_t)rows * 2 * sizeof(float));
  f->dr = malloc((size_t)rows * d * sizeof(float));
  f->pu = malloc((size_t)s->bsz * sizeof(int32_t));
  f->pv = malloc((size_t)s->bsz * sizeof(int32_t));
  f->nu = malloc((nneg ? nneg : 1) * sizeof(int32_t));
  f->nv = malloc((nneg ? nneg : 1) * sizeof(int32_t));
  if (!f->ws_enc || !f->ws_dec || !f->opt_enc || !f->opt_dec || !f->xb ||
      !f->vid || !f->de || !f->de_rec || !f->dr || !f->pu || !f->pv || !f->nu ||
      !f->nv)
    return TD_ENOMEM;
  if (prev && s->p->temporal == TD_TEMPORAL_DVI) {
    size_t ne = td_net_n_params(m->enc), nd = td_net_n_params(m->dec);
    f->prev_enc = malloc(ne * sizeof(float));
    f->prev_dec = malloc(nd * sizeof(float));
    if (!f->prev_enc || !f->prev_dec)
      return TD_ENOMEM;
    memcpy(f->prev_enc, td_net_params_const(prev->enc), ne * sizeof(float));
    memcpy(f->prev_dec, td_net_params_const(prev->dec), nd * sizeof(float));
  }
  if (s->mem_batch > 0) {
    (void)nmem;
    f->ws_mem = td_net_ws_new(m->enc, s->mem_batch);
    f->xm = malloc((size_t)s->mem_batch * d * sizeof(float));
    f->dm = malloc((size_t)s->mem_batch * 2 * sizeof(float));
    f->mid = malloc((size_t)s->mem_batch * sizeof(int32_t));
    if (!f->ws_mem || !f->xm || !f->dm || !f->mid)
      return TD_ENOMEM;
  }
  return TD_OK;
}

int td_vismodel_fit(td_vismodel *m, const float *x, int64_t n,
                    const td_graph *g, const td_vismodel *prev,
                    const td_vis_params *p, const td_vis_anchor *anc,
                    td_err *err) {
  return td_vismodel_fit_ex(m, x, n, g, prev, p, anc, NULL, err);
}

static int fit_run(td_vismodel *m, const float *x, int64_t n, const td_graph *g,
                   const td_vismodel *prev, const td_vis_params *p,
                   const td_vis_anchor *anc, const td_vis_fit_io *io,
                   td_err *err) {
  td_vis_params def;
  if (!p) {
    td_vis_params_default(&def, m->dim);
    p = &def;
  }
  int rc = fit_check(m, x, n, g, prev, p, anc, err);
  if (rc)
    return rc;
  if (io &&
      ((io->init_y && io->n_init < 0) ||
       (io->head && (io->head->n_classes < 1 || !io->head->w || !io->head->b))))
    return td_err_set(err, TD_EARG, "vismodel: invalid fit options");
  if (prev) {
    memcpy(td_net_params(m->enc), td_net_params_const(prev->enc),
           td_net_n_params(m->enc) * sizeof(float));
    memcpy(td_net_params(m->dec), td_net_params_const(prev->dec),
           td_net_n_params(m->dec) * sizeof(float));
    memcpy(m->mean, prev->mean, (size_t)m->dim * sizeof(float));
    m->scale = prev->scale;
  } else {
    set_normalisation(m, x, n);
  }
  fit_buf f;
  memset(&f, 0, sizeof f);
  fit_state s = {m, x, g, p, anc, prev != NULL, &f, {{0}}, 0, 0, 0, NULL, 0};
  td_rng_seed(&s.rng, p->seed ^ 0x9e3779b97f4a7c15ull);
  s.io = io;
  s.bsz = p->batch_edges;
  s.nrec = (int)lroundf(p->rec_fraction * (float)(2 * s.bsz));
  int64_t nmem = anc ? anc->n_memory : 0;
  if (prev && p->temporal == TD_TEMPORAL_MEMORY && nmem > 0 &&
      p->lambda_temporal > 0.0f)
    s.mem_batch = (int)(nmem < s.bsz / 4 ? nmem : s.bsz / 4 + 1);
  if (fit_alloc(&s, prev, nmem) != TD_OK) {
    fit_buf_free(&f);
    return td_err_set(err, TD_ENOMEM, "vismodel: out of memory");
  }
  rc = td__vis_layout_and_distil(&s, prev, n);
  if (rc) {
    fit_buf_free(&f);
    return rc == TD_EINTERRUPTED
               ? td_err_set(err, rc, "vismodel: stopped while distilling")
               : td_err_set(err, rc, "vismodel: out of memory");
  }
  int64_t pass_edges = p->pass_edges > 0 ? p->pass_edges : 20 * n;
  if (prev)
    pass_edges = (int64_t)((double)pass_edges * (double)p->warm_pass_scale);
  int64_t steps = (pass_edges + s.bsz - 1) / s.bsz;
  if (steps < 1)
    steps = 1;
  double best = INFINITY;
  int dropped = 0;
  for (int pass = 1; pass <= p->max_epochs; pass++) {
    double tot = 0.0;
    for (int64_t st = 0; st < steps; st++)
      tot += fit_step(&s);
    double mean = tot / (double)steps;
    if (p->progress && p->progress(p->progress_ctx, pass, mean)) {
      rc = td_err_set(err, TD_EINTERRUPTED, "vismodel: stopped at pass %d",
                      pass);
      break;
    }
    if (mean < best * (1.0 - (double)p->min_improvement)) {
      best = mean;
      continue;
    }
    if (mean < best)
      best = mean;
    if (dropped || p->lr_min >= p->lr)
      break;
    dropped = 1;
    td_optim_set_lr(f.opt_enc, p->lr_min);
    td_optim_set_lr(f.opt_dec, p->lr_min);
  }
  m->params = *p;
  m->params.progress = NULL;
  m->params.progress_ctx = NULL;
  fit_buf_free(&f);
  return rc;
}

int td_vismodel_fit_ex(td_vismodel *m, const float *x, int64_t n,
                       const td_graph *g, const td_vismodel *prev,
                       const td_vis_params *p, const td_vis_anchor *anc,
                       const td_vis_fit_io *io, td_err *err) {
  /* Serial BLAS for the whole fit: OpenBLAS's threaded GEMM blocks the
   * inner dimension differently from its serial one, so its sums (and the
   * model) would depend on the thread count. The layout and the
   * distillation run in parallel on their own; the GEMMs are small. */
  td_blas_single_begin();
  int rc = fit_run(m, x, n, g, prev, p, anc, io, err);
  td_blas_single_end();
  return rc;
}
