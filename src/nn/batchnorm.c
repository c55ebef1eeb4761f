/* Batch normalisation (PyTorch's BatchNorm1d/2d): per channel over the
 * batch and the H*W positions of a spatial input, per feature of a flat
 * one. In a training-mode workspace the batch's own mean and biased variance
 * normalise it, and are kept in the workspace for td_net_update_state; in
 * eval mode the net's running statistics do. Sums are accumulated in double
 * so the statistics do not depend on the summation order's rounding much. */
#include <math.h>

#include "net_internal.h"

#define BN_EPS TD__BN_EPS
#define BN_MOMENTUM 0.1

/* stat[0..C) mean, [C..2C) 1/sqrt(var + eps), [2C..3C) biased batch var. */
static void batch_stats(const td__layer *L, const float *x, int batch,
                        float *stat) {
  int C = L->ic;
  size_t hw = (size_t)L->ih * L->iw;
  double m = (double)batch * (double)hw;
  for (int c = 0; c < C; c++) {
    double s = 0.0;
    for (int n = 0; n < batch; n++) {
      const float *pl = x + ((size_t)n * C + c) * hw;
      for (size_t j = 0; j < hw; j++)
        s += (double)pl[j];
    }
    double mean = s / m, ss = 0.0;
    for (int n = 0; n < batch; n++) {
      const float *pl = x + ((size_t)n * C + c) * hw;
      for (size_t j = 0; j < hw; j++) {
        double d = (double)pl[j] - mean;
        ss += d * d;
      }
    }
    double var = ss / m;
    stat[c] = (float)mean;
    stat[C + c] = (float)(1.0 / sqrt(var + BN_EPS));
    stat[2 * C + c] = (float)var;
  }
}

void td__bn_forward(const td_net *net, td_net_ws *ws, int l, const float *x,
                    int batch) {
  const td__layer *L = &net->layers[l];
  int C = L->ic;
  size_t hw = (size_t)L->ih * L->iw;
  float *stat = ws->stat[l];
  if (ws->training) {
    batch_stats(L, x, batch, stat);
    ws->stat_train[l] = 1;
  } else {
    const float *rm = net->state + L->soff, *rv = rm + C;
    for (int c = 0; c < C; c++) {
      stat[c] = rm[c];
      stat[C + c] = (float)(1.0 / sqrt((double)rv[c] + BN_EPS));
    }
    ws->stat_train[l] = 0;
  }
  const float *gamma = net->params + L->off, *beta = gamma + C;
  float *xhat = ws->xhat[l], *y = ws->act[l];
  for (int n = 0; n < batch; n++)
    for (int c = 0; c < C; c++) {
      size_t o = ((size_t)n * C + c) * hw;
      float mean = stat[c], inv = stat[C + c], g = gamma[c], b = beta[c];
      for (size_t j = 0; j < hw; j++) {
        float h = (x[o + j] - mean) * inv;
        xhat[o + j] = h;
        y[o + j] = g * h + b;
      }
    }
  td__act_forward(y, (size_t)batch * L->out, L->s.act);
}

/* With batch statistics the mean and variance depend on every input, so
 * dx = gamma*invstd/M * (M*dz - sum(dz) - xhat*sum(dz*xhat)); with running
 * statistics they are constants and dx = gamma*invstd*dz. */
void td__bn_backward(td_net *net, td_net_ws *ws, int l, const float *dz,
                     float *dx, int batch) {
  const td__layer *L = &net->layers[l];
  int C = L->ic;
  size_t hw = (size_t)L->ih * L->iw;
  double m = (double)batch * (double)hw;
  const float *gamma = net->params + L->off, *xhat = ws->xhat[l];
  const float *inv = ws->stat[l] + C;
  float *ggamma = net->grads + L->off, *gbeta = ggamma + C;
  for (int c = 0; c < C; c++) {
    double sd = 0.0, sdx = 0.0;
    for (int n = 0; n < batch; n++) {
      size_t o = ((size_t)n * C + c) * hw;
      for (size_t j = 0; j < hw; j++) {
        sd += (double)dz[o + j];
        sdx += (double)dz[o + j] * (double)xhat[o + j];
      }
    }
    gbeta[c] += (float)sd;
    ggamma[c] += (float)sdx;
    if (!dx)
      continue;
    float k = gamma[c] * inv[c];
    float md = (float)(sd / m), mdx = (float)(sdx / m);
    int train = ws->stat_train[l] != 0;
    for (int n = 0; n < batch; n++) {
      size_t o = ((size_t)n * C + c) * hw;
      for (size_t j = 0; j < hw; j++)
        dx[o + j] =
            train ? k * (dz[o + j] - md - xhat[o + j] * mdx) : k * dz[o + j];
    }
  }
}

/* Chan et al.'s pairwise update merges the slices' (count, mean, M2) in
 * slice order into the statistics of the whole batch. */
static void fold_layer(td_net *net, int l, td_net_ws *const *ws, int n_ws) {
  const td__layer *L = &net->layers[l];
  int C = L->ic;
  size_t hw = (size_t)L->ih * L->iw;
  float *rm = net->state + L->soff, *rv = rm + C;
  for (int c = 0; c < C; c++) {
    double cnt = 0.0, mean = 0.0, m2 = 0.0;
    for (int k = 0; k < n_ws; k++) {
      const td_net_ws *w = ws[k];
      if (w->stat_train[l] != 1 || w->batch == 0)
        continue;
      double nk = (double)w->batch * (double)hw;
      double mk = w->stat[l][c], m2k = (double)w->stat[l][2 * C + c] * nk;
      double d = mk - mean, tot = cnt + nk;
      mean += d * nk / tot;
      m2 += m2k + d * d * cnt * nk / tot;
      cnt = tot;
    }
    if (cnt < 2.0) /* no unbiased variance of one value: leave it */
      continue;
    rm[c] = (float)((1.0 - BN_MOMENTUM) * (double)rm[c] + BN_MOMENTUM * mean);
    rv[c] = (float)((1.0 - BN_MOMENTUM) * (double)rv[c] +
                    BN_MOMENTUM * m2 / (cnt - 1.0));
  }
}

void td_net_update_state(td_net *net, td_net_ws *const *ws, int n_ws) {
  TD_ASSERT(n_ws >= 0 && (n_ws == 0 || ws));
  for (int k = 0; k < n_ws; k++)
    TD_ASSERT(ws[k]->sig == net->sig);
  for (int l = 0; l < net->n_layers; l++) {
    if (net->layers[l].s.kind != TD_LAYER_BATCHNORM)
      continue;
    fold_layer(net, l, ws, n_ws);
    for (int k = 0; k < n_ws; k++)
      if (ws[k]->stat_train[l] == 1)
        ws[k]->stat_train[l] = 2; /* folded: a second call adds nothing */
  }
}
