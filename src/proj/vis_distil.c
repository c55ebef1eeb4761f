/* The default start of a fit (docs/projection.md): the complex laid out in
 * 2-D (vis_layout.c) from PCA, the previous model or given positions, then
 * distilled into the encoder (layout regression) and the decoder (layout
 * position -> representation, with the head-consistency term). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tardis/parallel.h"
#include "vismodel_internal.h"

/* The first two principal components of the normalised points, scaled so
 * the largest coordinate is 10 (UMAP's initial extent). Power iteration on
 * the covariance of at most 10,000 rows. */
static void pca_init(const td_vismodel *m, const float *x, int64_t n,
                     float *y) {
  int d = m->dim;
  int64_t step = n > 10000 ? n / 10000 : 1;
  double *cov = calloc((size_t)d * d, sizeof(double));
  float *row = malloc((size_t)d * sizeof(float));
  double v[2][1024];
  TD_ASSERT(cov && row && d <= 1024);
  int64_t cnt = 0;
  for (int64_t i = 0; i < n; i += step, cnt++) {
    for (int j = 0; j < d; j++)
      row[j] = (x[i * d + j] - m->mean[j]) * m->scale;
    for (int j = 0; j < d; j++)
      for (int k = 0; k <= j; k++)
        cov[j * d + k] += (double)row[j] * (double)row[k];
  }
  for (int j = 0; j < d; j++)
    for (int k = 0; k < j; k++)
      cov[k * d + j] = cov[j * d + k];
  td_rng rng;
  td_rng_seed(&rng, 5);
  for (int c = 0; c < 2; c++) {
    for (int j = 0; j < d; j++)
      v[c][j] = (double)td_rng_normal(&rng);
    for (int it = 0; it < 100; it++) {
      double w[1024], norm = 0.0;
      for (int j = 0; j < d; j++) {
        double acc = 0.0;
        for (int k = 0; k < d; k++)
          acc += cov[j * d + k] * v[c][k];
        w[j] = acc;
      }
      if (c == 1) { /* deflate: stay orthogonal to the first component */
        double dot = 0.0;
        for (int j = 0; j < d; j++)
          dot += w[j] * v[0][j];
        for (int j = 0; j < d; j++)
          w[j] -= dot * v[0][j];
      }
      for (int j = 0; j < d; j++)
        norm += w[j] * w[j];
      norm = sqrt(norm);
      if (!(norm > 0.0))
        break;
      for (int j = 0; j < d; j++)
        v[c][j] = w[j] / norm;
    }
  }
  float amax = 0.0f;
  for (int64_t i = 0; i < n; i++) {
    for (int c = 0; c < 2; c++) {
      double acc = 0.0;
      for (int j = 0; j < d; j++)
        acc += ((double)x[i * d + j] - (double)m->mean[j]) * v[c][j];
      y[2 * i + c] = (float)acc;
      if (fabsf(y[2 * i + c]) > amax)
        amax = fabsf(y[2 * i + c]);
    }
  }
  float s = amax > 0.0f ? 10.0f / amax : 1.0f;
  for (int64_t i = 0; i < 2 * n; i++)
    y[i] *= s;
  (void)cnt;
  free(cov);
  free(row);
}

/* Logit gap the decoding must keep between the classifier's predicted class
 * and any other (a hinge of weight HEAD_MARGIN_W x lambda_head): on a 6k run
 * whose classifier is unsure of a third of its samples, ppr went from
 * 0.83-0.95 to 0.966-0.996 (docs/projection.md, "ppr on small runs"). */
#define HEAD_MARGIN 0.3
#define HEAD_MARGIN_W 2.0

/* The head-consistency term on a batch's decoding r [P, D] (normalised
 * units): soft cross-entropy of softmax(head(r)) against softmax(head(x)) of
 * the batch's points. Adds lambda_head x its gradient to dr; returns the
 * weighted loss. The head is linear, so d(logits)/dr = W' (folded). */
static double head_term(fit_state *s, const int32_t *ids, int P, const float *r,
                        float *dr) {
  fit_buf *f = s->f;
  int C = s->n_classes, d = s->m->dim;
  float lam = s->p->lambda_head;
  for (int i = 0; i < P; i++)
    memcpy(f->hz + (size_t)i * C, f->hb, (size_t)C * sizeof(float));
  td_gemm(0, 1, P, C, d, 1.0f, r, d, f->hw, d, 1.0f, f->hz, C);
  double loss = 0.0;
  for (int i = 0; i < P; i++) {
    float *z = f->hz + (size_t)i * C;
    const float *t = f->probs + (size_t)ids[i] * C;
    float zmax = z[0];
    for (int c = 1; c < C; c++)
      zmax = z[c] > zmax ? z[c] : zmax;
    double sum = 0.0;
    for (int c = 0; c < C; c++)
      sum += exp((double)(z[c] - zmax));
    double lse = (double)zmax + log(sum);
    /* The argmax of the target and the strongest rival of the decoding,
     * before z is overwritten with the gradient. */
    int k = 0, rv = -1;
    for (int c = 1; c < C; c++)
      k = t[c] > t[k] ? c : k;
    for (int c = 0; c < C; c++)
      if (c != k && (rv < 0 || z[c] > z[rv]))
        rv = c;
    double gap = rv >= 0 ? (double)z[k] - (double)z[rv] : HEAD_MARGIN;
    for (int c = 0; c < C; c++) {
      double q = exp((double)z[c] - lse);
      loss -= (double)t[c] * ((double)z[c] - lse);
      z[c] = lam * (float)(q - (double)t[c]) / (float)P;
    }
    /* Soft cross-entropy alone lets a sample the classifier is unsure of
     * (targets 0.40 / 0.35) decode with the two swapped at almost no cost;
     * a hinge on the decoded logit gap keeps the prediction itself. */
    if (gap < HEAD_MARGIN) {
      loss += HEAD_MARGIN_W * (HEAD_MARGIN - gap);
      z[k] -= (float)HEAD_MARGIN_W * lam / (float)P;
      z[rv] += (float)HEAD_MARGIN_W * lam / (float)P;
    }
  }
  td_gemm(0, 0, P, d, C, 1.0f, f->hz, C, f->hw, d, 1.0f, dr, d);
  return (double)lam * loss / (double)P;
}

/* One distillation step on points ids[0..P): the encoder regresses the
 * layout (MSE per point, summed over the two coordinates) and the decoder
 * reconstructs the points, from their layout positions (dec_on_layout) or
 * from the encoder's output, plus the head-consistency term. The
 * reconstruction is not propagated into the encoder here: the layout alone
 * decides where a point goes. */
static double distil_step(fit_state *s, const int32_t *ids, int P) {
  td_vismodel *m = s->m;
  fit_buf *f = s->f;
  int d = m->dim;
  td__vis_gather_rows(m, s->x, ids, P, f->xb);
  td_net_zero_grad(m->enc);
  td_net_zero_grad(m->dec);
  const float *e = td_net_forward(m->enc, f->ws_enc, f->xb, P);
  double loss = 0.0;
  for (int i = 0; i < P; i++)
    for (int c = 0; c < 2; c++) {
      float t = e[2 * i + c] - f->target[2 * (int64_t)ids[i] + c];
      loss += (double)t * (double)t;
      f->de[2 * i + c] = 2.0f * t / (float)P;
      f->yb[2 * i + c] = f->target[2 * (int64_t)ids[i] + c];
    }
  loss /= P;
  if (s->p->lambda_rec > 0.0f || s->n_classes > 0) {
    const float *r =
        td_net_forward(m->dec, f->ws_dec, s->p->dec_on_layout ? f->yb : e, P);
    double ss = 0.0;
    float c = 2.0f * s->p->lambda_rec / ((float)P * (float)d);
    for (int64_t i = 0; i < (int64_t)P * d; i++) {
      float t = r[i] - f->xb[i];
      ss += (double)t * (double)t;
      f->dr[i] = c * t;
    }
    loss += (double)s->p->lambda_rec * ss / ((double)P * d);
    if (s->n_classes > 0)
      loss += head_term(s, ids, P, r, f->dr);
    td_net_backward(m->dec, f->ws_dec, f->dr, P, NULL);
  }
  td_net_backward(m->enc, f->ws_enc, f->de, P, NULL);
  loss += td__vis_temporal_terms(s, ids, P);
  td_optim_step(f->opt_enc, td_net_params(m->enc), td_net_grads(m->enc));
  td_optim_step(f->opt_dec, td_net_params(m->dec), td_net_grads(m->dec));
  return loss;
}

/* Distillation with the decoder on the layout: the encoder's and the
 * decoder's steps are independent, so they run on two threads (each with
 * single-threaded BLAS: at these widths a GEMM is too small to split). */
static double enc_step(fit_state *s, const int32_t *ids, int P) {
  td_vismodel *m = s->m;
  fit_buf *f = s->f;
  td__vis_gather_rows(m, s->x, ids, P, f->xb);
  td_net_zero_grad(m->enc);
  const float *e = td_net_forward(m->enc, f->ws_enc, f->xb, P);
  double loss = 0.0;
  for (int i = 0; i < P; i++)
    for (int c = 0; c < 2; c++) {
      float t = e[2 * i + c] - f->target[2 * (int64_t)ids[i] + c];
      loss += (double)t * (double)t;
      f->de[2 * i + c] = 2.0f * t / (float)P;
    }
  loss /= P;
  td_net_backward(m->enc, f->ws_enc, f->de, P, NULL);
  loss += td__vis_temporal_net(s, ids, P, 0);
  td_optim_step(f->opt_enc, td_net_params(m->enc), td_net_grads(m->enc));
  return loss;
}

static double dec_step(fit_state *s, const int32_t *ids, int P) {
  td_vismodel *m = s->m;
  fit_buf *f = s->f;
  int d = m->dim;
  td__vis_gather_rows(m, s->x, ids, P, f->xb2);
  td_net_zero_grad(m->dec);
  for (int i = 0; i < P; i++) {
    f->yb[2 * i] = f->target[2 * (int64_t)ids[i]];
    f->yb[2 * i + 1] = f->target[2 * (int64_t)ids[i] + 1];
  }
  const float *r = td_net_forward(m->dec, f->ws_dec, f->yb, P);
  double ss = 0.0;
  float c = 2.0f * s->p->lambda_rec / ((float)P * (float)d);
  for (int64_t i = 0; i < (int64_t)P * d; i++) {
    float t = r[i] - f->xb2[i];
    ss += (double)t * (double)t;
    f->dr[i] = c * t;
  }
  double loss = (double)s->p->lambda_rec * ss / ((double)P * d);
  if (s->n_classes > 0)
    loss += head_term(s, ids, P, r, f->dr);
  td_net_backward(m->dec, f->ws_dec, f->dr, P, NULL);
  loss += td__vis_temporal_net(s, ids, P, 1);
  td_optim_step(f->opt_dec, td_net_params(m->dec), td_net_grads(m->dec));
  return loss;
}

typedef struct {
  fit_state *s;
  int64_t n, per;
  int epochs;
  uint64_t stream; /* the first net's random stream; the second's is +1 */
  double loss[2];
} split_ctx;

/* `epochs` sweeps of `per` rows of one net (0: encoder, 1: decoder), in a
 * shuffled order of all points drawn from its own stream; returns the
 * mean step loss. */
static double net_sweeps(split_ctx *c, int which) {
  fit_state *s = c->s;
  int P = s->p->distil_batch;
  int32_t *perm = which == 0 ? s->f->perm : s->f->perm2;
  td_rng rng;
  td_rng_split(&rng, s->p->seed ^ 0x5bd1e995ull, c->stream + (uint64_t)which);
  td_rng_shuffle_i32(&rng, perm, c->n);
  int64_t at = 0;
  double tot = 0.0;
  int64_t steps = 0;
  for (int ep = 0; ep < c->epochs; ep++)
    for (int64_t done = 0; done < c->per; done += P) {
      if (at + P > c->n) {
        td_rng_shuffle_i32(&rng, perm, c->n);
        at = 0;
      }
      int cnt = (int)(c->n < P ? c->n : P);
      tot += which == 0 ? enc_step(s, perm + at, cnt)
                        : dec_step(s, perm + at, cnt);
      at += cnt;
      steps++;
    }
  return steps ? tot / (double)steps : 0.0;
}

static void split_cb(void *vctx, int64_t begin, int64_t end, int tid) {
  (void)tid;
  split_ctx *c = vctx;
  for (int64_t which = begin; which < end; which++)
    c->loss[which] = net_sweeps(c, (int)which);
}

/* The polish checks at most this many vertices (every k-th): enough for the
 * share to the third digit, and a 60k epoch's check costs ~10k decodings. */
#define POLISH_CHECK_MAX 10000

/* Share of the vertices 0 .. nc-1 (every stride-th) whose decoded layout
 * position has the head's predicted class (ppr as `tardis eval` measures
 * it on the drawn positions). Serial, on the decoder's workspace. */
static double decoded_agreement(fit_state *s, int64_t nc) {
  fit_buf *f = s->f;
  int C = s->n_classes, d = s->m->dim, P = s->p->distil_batch;
  int64_t stride = (nc + POLISH_CHECK_MAX - 1) / POLISH_CHECK_MAX;
  int64_t seen = 0, kept = 0;
  for (int64_t i0 = 0; i0 < nc; i0 += (int64_t)P * stride) {
    int cnt = 0;
    for (int64_t i = i0; i < nc && cnt < P; i += stride, cnt++) {
      f->yb[2 * cnt] = f->target[2 * i];
      f->yb[2 * cnt + 1] = f->target[2 * i + 1];
    }
    const float *r = td_net_forward(s->m->dec, f->ws_dec, f->yb, cnt);
    for (int i = 0; i < cnt; i++)
      memcpy(f->hz + (size_t)i * C, f->hb, (size_t)C * sizeof(float));
    td_gemm(0, 1, cnt, C, d, 1.0f, r, d, f->hw, d, 1.0f, f->hz, C);
    for (int i = 0; i < cnt; i++) {
      const float *z = f->hz + (size_t)i * C;
      const float *t = f->probs + (size_t)(i0 + (int64_t)i * stride) * C;
      int kz = 0, kt = 0;
      for (int k = 1; k < C; k++) {
        kz = z[k] > z[kz] ? k : kz;
        kt = t[k] > t[kt] ? k : kt;
      }
      kept += kz == kt;
    }
    seen += cnt;
  }
  return seen ? (double)kept / (double)seen : 1.0;
}

/* Decoder polish: a small run (or an early epoch, where the classifier is
 * unsure of a third of its samples) gets min(n, distil_points) rows per
 * sweep, so few decoder steps, and a 1k run's decoder kept the predicted
 * class of only 0.95-0.98 of the points (docs/projection.md, "Decoder
 * polish"). While the measured share is below polish_ppr, the decoder alone
 * gets another half of its sweeps, up to polish_rounds times: the rule
 * follows measured quality, so an epoch already decoded well (a 60k run)
 * pays one check. Returns the rounds spent. */
static int polish_decoder(fit_state *s, int64_t n, int64_t per, int sweeps) {
  const td_vis_params *p = s->p;
  if (s->n_classes < 1 || p->polish_rounds < 1 || !(p->polish_ppr > 0.0f))
    return 0;
  int64_t nc =
      s->io && s->io->n_check > 0 && s->io->n_check < n ? s->io->n_check : n;
  split_ctx sc = {s, n, per, sweeps > 1 ? sweeps / 2 : 1, 0, {0.0, 0.0}};
  int r = 0;
  while (r < p->polish_rounds &&
         decoded_agreement(s, nc) < (double)p->polish_ppr) {
    sc.stream = 2 + 2 * (uint64_t)r++; /* the decoder's is stream + 1 */
    net_sweeps(&sc, 1);
  }
  return r;
}

/* Head targets softmax(W x + b) of every vertex, and the head folded onto
 * the model's normalised units: x = r / s + mean gives W' = W / s,
 * b' = b + W mean. */
static int head_setup(fit_state *s, int64_t n) {
  const td_vis_head *h = s->io ? s->io->head : NULL;
  if (!h || s->p->lambda_head <= 0.0f || h->n_classes < 1)
    return TD_OK;
  fit_buf *f = s->f;
  int C = h->n_classes, d = s->m->dim, P = s->p->distil_batch;
  f->probs = malloc((size_t)n * C * sizeof(float));
  f->hw = malloc((size_t)C * d * sizeof(float));
  f->hb = malloc((size_t)C * sizeof(float));
  f->hz = malloc((size_t)P * C * sizeof(float));
  if (!f->probs || !f->hw || !f->hb || !f->hz)
    return TD_ENOMEM;
  for (int c = 0; c < C; c++) {
    double acc = (double)h->b[c];
    for (int j = 0; j < d; j++) {
      f->hw[(size_t)c * d + j] = h->w[(size_t)c * d + j] / s->m->scale;
      acc += (double)h->w[(size_t)c * d + j] * (double)s->m->mean[j];
    }
    f->hb[c] = (float)acc;
  }
  for (int64_t i = 0; i < n; i++)
    memcpy(f->probs + i * C, h->b, (size_t)C * sizeof(float));
  td_gemm(0, 1, (int)n, C, d, 1.0f, s->x, d, h->w, d, 1.0f, f->probs, C);
  for (int64_t i = 0; i < n; i++) {
    float *z = f->probs + i * C, zmax = z[0];
    for (int c = 1; c < C; c++)
      zmax = z[c] > zmax ? z[c] : zmax;
    double sum = 0.0;
    for (int c = 0; c < C; c++)
      sum += exp((double)(z[c] - zmax));
    for (int c = 0; c < C; c++)
      z[c] = (float)(exp((double)(z[c] - zmax)) / sum);
  }
  s->n_classes = C;
  return TD_OK;
}

/* Lays the complex out (from io->init_y for its vertices, prev's encoding
 * or PCA for the rest), hands the layout to io->y_out, then distils it into
 * the encoder and decoder. */
int td__vis_layout_and_distil(fit_state *s, const td_vismodel *prev,
                              int64_t n) {
  const td_vis_params *p = s->p;
  const td_vis_fit_io *io = s->io;
  fit_buf *f = s->f;
  int lay = prev ? p->warm_layout_epochs : p->layout_epochs;
  int dis = prev ? p->warm_distil_epochs : p->distil_epochs;
  if (lay <= 0 && dis <= 0 && !(io && io->y_out))
    return TD_OK;
  int P = p->distil_batch > 0 ? p->distil_batch : 1;
  f->target = malloc((size_t)n * 2 * sizeof(float));
  f->perm = malloc((size_t)n * sizeof(int32_t));
  f->yb = malloc((size_t)P * 2 * sizeof(float));
  if (!f->target || !f->perm || !f->yb)
    return TD_ENOMEM;
  int rc = head_setup(s, n);
  if (rc)
    return rc;
  int64_t n_init = io && io->init_y ? io->n_init : 0;
  if (n_init > n)
    n_init = n;
  if (prev)
    rc = td_vismodel_encode(prev, s->x, n, f->target);
  else if (n_init < n)
    pca_init(s->m, s->x, n, f->target);
  if (rc)
    return rc;
  if (n_init > 0)
    memcpy(f->target, io->init_y, (size_t)n_init * 2 * sizeof(float));
  /* A warm layout starts from a good place: a smaller step keeps it there. */
  float alpha = prev || n_init > 0 ? p->warm_alpha : 1.0f;
  rc = (p->hogwild ? td_vis_layout_hogwild : td_vis_layout)(
      s->g, f->target, lay, alpha, p->n_negatives, p->a, p->b, p->seed);
  if (rc)
    return rc;
  if (io && io->y_out)
    memcpy(io->y_out, f->target, (size_t)n * 2 * sizeof(float));
  /* A distillation "epoch" is min(n, distil_points) rows, drawn by walking
   * a shuffled order of all points: the nets see every point over the fit
   * but the cost no longer grows with n. */
  int64_t per = p->distil_points > 0 && p->distil_points < n
                    ? (int64_t)p->distil_points
                    : n;
  for (int64_t i = 0; i < n; i++)
    f->perm[i] = (int32_t)i;
  if (p->dec_on_layout && dis > 0) {
    f->perm2 = malloc((size_t)n * sizeof(int32_t));
    f->xb2 = malloc((size_t)P * s->m->dim * sizeof(float));
    if (!f->perm2 || !f->xb2)
      return TD_ENOMEM;
    memcpy(f->perm2, f->perm, (size_t)n * sizeof(int32_t));
    split_ctx sc = {s, n, per, dis, 0, {0.0, 0.0}};
    td_blas_single_begin();
    td_parallel_for(2, 1, split_cb, &sc);
    polish_decoder(s, n, per, dis);
    td_blas_single_end();
    if (p->progress &&
        p->progress(p->progress_ctx, -dis, sc.loss[0] + sc.loss[1]))
      return TD_EINTERRUPTED;
    return TD_OK;
  }
  td_rng_shuffle_i32(&s->rng, f->perm, n);
  int64_t at = 0;
  for (int ep = 0; ep < dis; ep++) {
    double tot = 0.0;
    int64_t steps = 0;
    for (int64_t done = 0; done < per; done += P) {
      if (at + P > n) {
        td_rng_shuffle_i32(&s->rng, f->perm, n);
        at = 0;
      }
      int cnt = (int)(n < P ? n : P);
      tot += distil_step(s, f->perm + at, cnt);
      at += cnt;
      steps++;
    }
    if (p->progress &&
        p->progress(p->progress_ctx, -(ep + 1), tot / (double)steps))
      return TD_EINTERRUPTED;
  }
  return TD_OK;
}
