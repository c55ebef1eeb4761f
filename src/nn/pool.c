/* Max pooling (with the argmax kept for the backward pass) and global
 * average pooling, over each channel plane of each sample. */
#include <math.h> /* INFINITY */
#include <string.h>

#include "net_internal.h"
#include "vec.h"

/* The common 2x2 window of stride 2 without padding, eight windows at a
 * time in vector lanes: no bounds checks and no branches (on real data the
 * comparisons are coin flips, and mispredicted branches cost more than the
 * rest of the layer). A row's last windows (fewer than eight; all of them
 * for rows of 7) go through the same code on a padded copy. "v > best ||
 * v != v" is PyTorch's rule: the first maximum in row order wins, a NaN
 * wins and stays. */
static void max8(const float *r0, const float *r1, td_v8i i, int iw,
                 td_v8 *best, td_v8i *bi) {
  td_v8 a, b, c, d;
  td_v8_deinterleave(td_v8_load(r0), td_v8_load(r0 + 8), &a, &b);
  td_v8_deinterleave(td_v8_load(r1), td_v8_load(r1 + 8), &c, &d);
  td_v8i one = i - i + 1, t;
  *best = a, *bi = i;
  t = (b > *best) | (b != b);
  *best = td_v8_select(t, b, *best), *bi = td_v8i_select(t, i + one, *bi);
  t = (c > *best) | (c != c);
  *best = td_v8_select(t, c, *best), *bi = td_v8i_select(t, i + iw, *bi);
  t = (d > *best) | (d != d);
  *best = td_v8_select(t, d, *best), *bi = td_v8i_select(t, i + iw + 1, *bi);
}

static void maxpool_2x2(const float *restrict in, int iw, int oh, int ow,
                        float *restrict y, int32_t *restrict arg) {
  const td_v8i lane2 = {0, 2, 4, 6, 8, 10, 12, 14};
  for (int oy = 0; oy < oh; oy++) {
    const float *r0 = in + (size_t)(2 * oy) * iw, *r1 = r0 + iw;
    td_v8 best;
    td_v8i bi;
    int ox = 0;
    for (; ox + TD_V <= ow; ox += TD_V) {
      max8(r0 + 2 * ox, r1 + 2 * ox, lane2 + (2 * oy * iw + 2 * ox), iw, &best,
           &bi);
      td_v8_store(y + oy * ow + ox, best);
      memcpy(arg + oy * ow + ox, &bi, sizeof bi);
    }
    if (ox < ow) {
      float p0[16] = {0}, p1[16] = {0};
      size_t n = (size_t)(ow - ox);
      memcpy(p0, r0 + 2 * ox, 2 * n * sizeof(float));
      memcpy(p1, r1 + 2 * ox, 2 * n * sizeof(float));
      max8(p0, p1, lane2 + (2 * oy * iw + 2 * ox), iw, &best, &bi);
      memcpy(y + oy * ow + ox, &best, n * sizeof(float));
      memcpy(arg + oy * ow + ox, &bi, n * sizeof(int32_t));
    }
  }
}

/* The gradient of eight windows, interleaved back into the two input rows
 * (16 floats each). */
static void back8(td_v8 g, td_v8i a, td_v8i i, int iw, float *q0, float *q1) {
  const td_v8 zero = td_v8_set1(0.0f);
  td_v8i one = i - i + 1;
  td_v8 lo, hi;
  td_v8_interleave(td_v8_select(a == i, g, zero),
                   td_v8_select(a == i + one, g, zero), &lo, &hi);
  td_v8_store(q0, lo);
  td_v8_store(q0 + 8, hi);
  td_v8_interleave(td_v8_select(a == i + iw, g, zero),
                   td_v8_select(a == i + iw + 1, g, zero), &lo, &hi);
  td_v8_store(q1, lo);
  td_v8_store(q1 + 8, hi);
}

/* Its backward writes every input of a window (the gradient or 0), so dx
 * needs no clearing pass; rows and columns no window covers are zeroed. */
static void maxpool_2x2_back(const float *restrict d,
                             const int32_t *restrict arg, int ih, int iw,
                             int oh, int ow, float *restrict o) {
  const td_v8i lane2 = {0, 2, 4, 6, 8, 10, 12, 14};
  for (int oy = 0; oy < oh; oy++) {
    float *q0 = o + (size_t)(2 * oy) * iw, *q1 = q0 + iw;
    int ox = 0;
    td_v8i a;
    for (; ox + TD_V <= ow; ox += TD_V) {
      memcpy(&a, arg + oy * ow + ox, sizeof a);
      back8(td_v8_load(d + oy * ow + ox), a, lane2 + (2 * oy * iw + 2 * ox), iw,
            q0 + 2 * ox, q1 + 2 * ox);
    }
    if (ox < ow) {
      float g[8] = {0}, p0[16], p1[16];
      size_t n = (size_t)(ow - ox);
      a = lane2 - lane2 - 1; /* matches no window */
      memcpy(&a, arg + oy * ow + ox, n * sizeof(int32_t));
      memcpy(g, d + oy * ow + ox, n * sizeof(float));
      back8(td_v8_load(g), a, lane2 + (2 * oy * iw + 2 * ox), iw, p0, p1);
      memcpy(q0 + 2 * ox, p0, 2 * n * sizeof(float));
      memcpy(q1 + 2 * ox, p1, 2 * n * sizeof(float));
    }
    if (iw > 2 * ow)
      q0[iw - 1] = q1[iw - 1] = 0.0f;
  }
  if (ih > 2 * oh)
    memset(o + (size_t)(ih - 1) * iw, 0, sizeof(float) * (size_t)iw);
}

void td__maxpool_forward(const td__layer *L, td_net_ws *ws, int l,
                         const float *x, int batch) {
  int k = L->s.kernel, s = L->s.stride, p = L->s.pad;
  int ih = L->ih, iw = L->iw, oh = L->oh, ow = L->ow;
  size_t planes = (size_t)batch * L->ic;
  for (size_t pl = 0; pl < planes; pl++) {
    const float *in = x + pl * ih * iw;
    float *y = ws->act[l] + pl * oh * ow;
    int32_t *arg = ws->arg[l] + pl * oh * ow;
    if (k == 2 && s == 2 && p == 0) {
      maxpool_2x2(in, iw, oh, ow, y, arg);
      continue;
    }
    for (int oy = 0; oy < oh; oy++)
      for (int ox = 0; ox < ow; ox++) {
        /* PyTorch's rule: the first maximum in row order wins, a NaN wins
         * and stays. pad <= k/2 leaves every window a real input. */
        float best = -INFINITY;
        int bi = -1;
        for (int ki = 0; ki < k; ki++) {
          int iy = oy * s - p + ki;
          if (iy < 0 || iy >= ih)
            continue;
          for (int kj = 0; kj < k; kj++) {
            int ix = ox * s - p + kj;
            if (ix < 0 || ix >= iw)
              continue;
            float v = in[iy * iw + ix];
            if (bi < 0 || v > best || v != v) {
              best = v;
              bi = iy * iw + ix;
            }
          }
        }
        y[oy * ow + ox] = best;
        arg[oy * ow + ox] = bi;
      }
  }
}

void td__maxpool_backward(const td__layer *L, td_net_ws *ws, int l,
                          const float *dz, float *dx, int batch) {
  size_t in_plane = (size_t)L->ih * L->iw, out_plane = (size_t)L->oh * L->ow;
  size_t planes = (size_t)batch * L->ic;
  if (L->s.kernel == 2 && L->s.stride == 2 && L->s.pad == 0) {
    for (size_t pl = 0; pl < planes; pl++)
      maxpool_2x2_back(dz + pl * out_plane, ws->arg[l] + pl * out_plane, L->ih,
                       L->iw, L->oh, L->ow, dx + pl * in_plane);
    return;
  }
  memset(dx, 0, sizeof(float) * planes * in_plane);
  for (size_t pl = 0; pl < planes; pl++) {
    const int32_t *arg = ws->arg[l] + pl * out_plane;
    const float *d = dz + pl * out_plane;
    float *o = dx + pl * in_plane;
    for (size_t j = 0; j < out_plane; j++)
      o[arg[j]] += d[j];
  }
}

void td__avgpool_forward(const td__layer *L, float *y, const float *x,
                         int batch) {
  size_t hw = (size_t)L->ih * L->iw, planes = (size_t)batch * L->ic;
  for (size_t pl = 0; pl < planes; pl++) {
    const float *in = x + pl * hw;
    float s = 0.0f;
    for (size_t j = 0; j < hw; j++)
      s += in[j];
    y[pl] = s / (float)hw;
  }
}

void td__avgpool_backward(const td__layer *L, const float *dz, float *dx,
                          int batch) {
  size_t hw = (size_t)L->ih * L->iw, planes = (size_t)batch * L->ic;
  for (size_t pl = 0; pl < planes; pl++) {
    float g = dz[pl] / (float)hw;
    for (size_t j = 0; j < hw; j++)
      dx[pl * hw + j] = g;
  }
}
