/* 2-D convolution as im2col + GEMM, one sample at a time: the sample's
 * receptive fields are unrolled into col [in_c*k*k, out_h*out_w], and
 * Y [out_c, out_h*out_w] = W [out_c, in_c*k*k] * col is one BLAS call whose
 * output is already the sample's [C, H, W] activation. One sample keeps col
 * small (cache-resident for the documented CNN) and needs no transpose
 * afterwards; the backward pass rebuilds col instead of storing it per
 * sample. A 1x1 convolution with stride 1 and no padding skips im2col. */
#include <string.h>

#include "net_internal.h"
#include "vec.h"

/* col[(c*k + ki)*k + kj][oy*ow + ox] = x[c][oy*s - p + ki][ox*s - p + kj],
 * 0 outside the input. */
static void im2col(const td__layer *L, const float *restrict x,
                   float *restrict col) {
  int k = L->s.kernel, s = L->s.stride, p = L->s.pad;
  int ih = L->ih, iw = L->iw, oh = L->oh, ow = L->ow;
  for (int c = 0; c < L->ic; c++) {
    const float *plane = x + (size_t)c * ih * iw;
    for (int ki = 0; ki < k; ki++)
      for (int kj = 0; kj < k; kj++) {
        float *row = col + ((size_t)(c * k + ki) * k + kj) * oh * ow;
        /* valid ox: 0 <= ox*s - p + kj < iw */
        int lo = p - kj > 0 ? (p - kj + s - 1) / s : 0;
        int hi = (iw - 1 + p - kj) / s + 1;
        if (iw - 1 + p - kj < 0)
          hi = 0;
        if (hi > ow)
          hi = ow;
        if (lo > hi)
          lo = hi;
        for (int oy = 0; oy < oh; oy++) {
          float *r = row + (size_t)oy * ow;
          int iy = oy * s - p + ki;
          if (iy < 0 || iy >= ih) {
            memset(r, 0, sizeof(float) * (size_t)ow);
            continue;
          }
          const float *src = plane + (size_t)iy * iw;
          int base = kj - p; /* input column of ox = 0 */
          for (int ox = 0; ox < lo; ox++)
            r[ox] = 0.0f;
          if (s == 1)
            memcpy(r + lo, src + lo + base, sizeof(float) * (size_t)(hi - lo));
          else
            for (int ox = lo; ox < hi; ox++)
              r[ox] = src[ox * s + base];
          for (int ox = hi; ox < ow; ox++)
            r[ox] = 0.0f;
        }
      }
  }
}

/* The adjoint of im2col: dx[c][iy][ix] = sum of the col entries that read
 * it. dx is overwritten. */
static void col2im(const td__layer *L, const float *restrict col,
                   float *restrict dx) {
  int k = L->s.kernel, s = L->s.stride, p = L->s.pad;
  int ih = L->ih, iw = L->iw, oh = L->oh, ow = L->ow;
  memset(dx, 0, sizeof(float) * (size_t)L->in);
  for (int c = 0; c < L->ic; c++) {
    float *plane = dx + (size_t)c * ih * iw;
    for (int ki = 0; ki < k; ki++)
      for (int kj = 0; kj < k; kj++) {
        const float *row = col + ((size_t)(c * k + ki) * k + kj) * oh * ow;
        int lo = p - kj > 0 ? (p - kj + s - 1) / s : 0;
        int hi = (iw - 1 + p - kj) / s + 1;
        if (iw - 1 + p - kj < 0)
          hi = 0;
        if (hi > ow)
          hi = ow;
        for (int oy = 0; oy < oh; oy++) {
          int iy = oy * s - p + ki;
          if (iy < 0 || iy >= ih)
            continue;
          const float *r = row + (size_t)oy * ow;
          float *dst = plane + (size_t)iy * iw;
          int base = kj - p, ox = lo;
          if (s == 1) /* vectorised by hand: -O2 does not */
            for (; ox + TD_V <= hi; ox += TD_V)
              td_v8_store(dst + ox + base,
                          td_v8_load(dst + ox + base) + td_v8_load(r + ox));
          for (; ox < hi; ox++)
            dst[ox * s + base] += r[ox];
        }
      }
  }
}

/* Sum of r[0..n) in eight lanes (vectorised; the order is fixed). */
static float sum_floats(const float *restrict r, int n) {
  td_v8 acc = td_v8_set1(0.0f);
  int j = 0;
  for (; j + TD_V <= n; j += TD_V)
    acc += td_v8_load(r + j);
  float s = 0.0f;
  for (int i = 0; i < TD_V; i++)
    s += acc[i];
  for (; j < n; j++)
    s += r[j];
  return s;
}

static int is_pointwise(const td__layer *L) {
  return L->s.kernel == 1 && L->s.stride == 1 && L->s.pad == 0;
}

/* y[c][*] = act(y[c][*] + b[c]) over one sample's planes. */
static void bias_act_planes(float *restrict y, const float *restrict b, int C,
                            int P, td_act act) {
  int relu = act == TD_ACT_RELU;
  for (int c = 0; c < C; c++) {
    float *restrict r = y + (size_t)c * P;
    td_v8 bv = td_v8_set1(b[c]);
    int j = 0;
    for (; j + TD_V <= P; j += TD_V) {
      td_v8 v = td_v8_load(r + j) + bv;
      td_v8_store(r + j, relu ? td_v8_where_pos(v, v) : v);
    }
    for (; j < P; j++) {
      float v = r[j] + b[c];
      r[j] = relu && !(v > 0.0f) ? 0.0f : v;
    }
  }
}

void td__conv_forward(const td_net *net, td_net_ws *ws, int l, const float *x,
                      int batch) {
  const td__layer *L = &net->layers[l];
  int K = L->ic * L->s.kernel * L->s.kernel, P = L->oh * L->ow;
  const float *w = net->params + L->off, *b = w + L->nw;
  for (int n = 0; n < batch; n++) {
    const float *xn = x + (size_t)n * L->in;
    float *yn = ws->act[l] + (size_t)n * L->out;
    const float *col = xn;
    if (!is_pointwise(L)) {
      im2col(L, xn, ws->col);
      col = ws->col;
    }
    td_gemm(0, 0, L->oc, P, K, 1.0f, w, K, col, P, 0.0f, yn, P);
    bias_act_planes(yn, b, L->oc, P, L->s.act);
  }
}

void td__conv_backward(td_net *net, td_net_ws *ws, int l, const float *x,
                       const float *dz, float *dx, int batch) {
  const td__layer *L = &net->layers[l];
  int K = L->ic * L->s.kernel * L->s.kernel, P = L->oh * L->ow;
  const float *w = net->params + L->off;
  float *gw = net->grads + L->off, *gb = gw + L->nw;
  for (int n = 0; n < batch; n++) {
    const float *xn = x + (size_t)n * L->in;
    const float *dzn = dz + (size_t)n * L->out;
    for (int c = 0; c < L->oc; c++)
      gb[c] += sum_floats(dzn + (size_t)c * P, P);
    const float *col = xn;
    if (!is_pointwise(L)) {
      im2col(L, xn, ws->col);
      col = ws->col;
    }
    /* dW[oc, K] += dZ[oc, P] * col[K, P]^T */
    td_gemm(0, 1, L->oc, K, P, 1.0f, dzn, P, col, P, 1.0f, gw, K);
    if (!dx)
      continue;
    float *dxn = dx + (size_t)n * L->in;
    /* dcol[K, P] = W[oc, K]^T * dZ[oc, P], then folded back onto x */
    if (is_pointwise(L)) {
      td_gemm(1, 0, K, P, L->oc, 1.0f, w, K, dzn, P, 0.0f, dxn, P);
    } else {
      td_gemm(1, 0, K, P, L->oc, 1.0f, w, K, dzn, P, 0.0f, ws->dcol, P);
      col2im(L, ws->dcol, dxn);
    }
  }
}
