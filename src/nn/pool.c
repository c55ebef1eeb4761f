/* Max pooling (with the argmax kept for the backward pass) and global
 * average pooling, over each channel plane of each sample. */
#include <math.h>
#include <string.h>

#include "net_internal.h"

void td__maxpool_forward(const td__layer *L, td_net_ws *ws, int l,
                         const float *x, int batch) {
  int k = L->s.kernel, s = L->s.stride, p = L->s.pad;
  int ih = L->ih, iw = L->iw, oh = L->oh, ow = L->ow;
  size_t planes = (size_t)batch * L->ic;
  for (size_t pl = 0; pl < planes; pl++) {
    const float *in = x + pl * ih * iw;
    float *y = ws->act[l] + pl * oh * ow;
    int32_t *arg = ws->arg[l] + pl * oh * ow;
    for (int oy = 0; oy < oh; oy++)
      for (int ox = 0; ox < ow; ox++) {
        /* PyTorch's rule: the first maximum in row order wins, a NaN beats
         * everything. pad <= k/2 leaves every window a real input. */
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
            if (bi < 0 || v > best || (isnan(v) && !isnan(best))) {
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
