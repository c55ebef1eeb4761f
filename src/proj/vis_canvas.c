/* Moving a projection's canvas by a similarity transform (blocks of epochs,
 * blocks.c): the transform's algebra, its least-squares fit between two
 * drawings of the same points, and the model folded onto the moved canvas
 * (the encoder's output layer and the decoder's input layer are linear). */
#include <math.h>
#include <stdlib.h>

#include "proj/blocks.h"
#include "vismodel_internal.h"

void td__affine_identity(double T[6]) {
  static const double id[6] = {1, 0, 0, 0, 1, 0};
  for (int i = 0; i < 6; i++)
    T[i] = id[i];
}

void td__affine_compose(const double T[6], const double A[6], double out[6]) {
  out[0] = T[0] * A[0] + T[1] * A[3];
  out[1] = T[0] * A[1] + T[1] * A[4];
  out[2] = T[0] * A[2] + T[1] * A[5] + T[2];
  out[3] = T[3] * A[0] + T[4] * A[3];
  out[4] = T[3] * A[1] + T[4] * A[4];
  out[5] = T[3] * A[2] + T[4] * A[5] + T[5];
}

void td__affine_apply(const double T[6], float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    double u = y[2 * i], v = y[2 * i + 1];
    y[2 * i] = (float)(T[0] * u + T[1] * v + T[2]);
    y[2 * i + 1] = (float)(T[3] * u + T[4] * v + T[5]);
  }
}

/* Umeyama's closed form in 2-D: with the centred cross-covariance M =
 * sum (y - ym)(x - xm)^T, the best rotation by theta scores c (M00 + M11) +
 * s (M10 - M01), the best reflection c (M00 - M11) + s (M01 + M10); the
 * larger maximum wins (a cold fit may be drawn mirrored), and the scale is
 * that maximum over sum |x - xm|^2. */
void td__affine_procrustes(const float *x, const float *y, int64_t n,
                           double T[6]) {
  double xm[2] = {0, 0}, ym[2] = {0, 0};
  for (int64_t i = 0; i < n; i++)
    for (int k = 0; k < 2; k++) {
      xm[k] += (double)x[2 * i + k];
      ym[k] += (double)y[2 * i + k];
    }
  for (int k = 0; k < 2 && n > 0; k++) {
    xm[k] /= (double)n;
    ym[k] /= (double)n;
  }
  double M[2][2] = {{0, 0}, {0, 0}}, var = 0;
  for (int64_t i = 0; i < n; i++) {
    double dx[2] = {(double)x[2 * i] - xm[0], (double)x[2 * i + 1] - xm[1]};
    double dy[2] = {(double)y[2 * i] - ym[0], (double)y[2 * i + 1] - ym[1]};
    for (int a = 0; a < 2; a++)
      for (int b = 0; b < 2; b++)
        M[a][b] += dy[a] * dx[b];
    var += dx[0] * dx[0] + dx[1] * dx[1];
  }
  double rp = M[0][0] + M[1][1], rq = M[1][0] - M[0][1];
  double fp = M[0][0] - M[1][1], fq = M[0][1] + M[1][0];
  double rs = hypot(rp, rq), fs = hypot(fp, fq);
  double s = var > 0 ? (rs >= fs ? rs : fs) / var : 1.0;
  if (rs >= fs) {
    double c = rs > 0 ? rp / rs : 1, sn = rs > 0 ? rq / rs : 0;
    T[0] = s * c, T[1] = -s * sn, T[3] = s * sn, T[4] = s * c;
  } else {
    double c = fp / fs, sn = fq / fs;
    T[0] = s * c, T[1] = s * sn, T[3] = s * sn, T[4] = -s * c;
  }
  T[2] = ym[0] - (T[0] * xm[0] + T[1] * xm[1]);
  T[5] = ym[1] - (T[3] * xm[0] + T[4] * xm[1]);
}

int td__vismodel_affine(td_vismodel *m, const double T[6]) {
  double det = T[0] * T[4] - T[1] * T[3];
  if (!(fabs(det) > 1e-12))
    return TD_EVALUE;
  /* encoder: the output layer W [2, h], b [2] becomes A W, A b + t */
  int top = td_net_n_layers(m->enc) - 1, h = td_net_dim(m->enc, top);
  float *w = td_net_weight(m->enc, top), *b = td_net_bias(m->enc, top);
  for (int i = 0; i < h; i++) {
    double u = w[i], v = w[h + i];
    w[i] = (float)(T[0] * u + T[1] * v);
    w[h + i] = (float)(T[3] * u + T[4] * v);
  }
  double b0 = b[0], b1 = b[1];
  b[0] = (float)(T[0] * b0 + T[1] * b1 + T[2]);
  b[1] = (float)(T[3] * b0 + T[4] * b1 + T[5]);
  /* decoder: the input layer W [h, 2] sees A^-1 (y - t): W A^-1, and b -
   * W A^-1 t */
  double inv[4] = {T[4] / det, -T[1] / det, -T[3] / det, T[0] / det};
  int hd = td_net_dim(m->dec, 1);
  float *wd = td_net_weight(m->dec, 0), *bd = td_net_bias(m->dec, 0);
  for (int o = 0; o < hd; o++) {
    double u = wd[2 * o], v = wd[2 * o + 1];
    double p = u * inv[0] + v * inv[2], q = u * inv[1] + v * inv[3];
    wd[2 * o] = (float)p;
    wd[2 * o + 1] = (float)q;
    bd[o] = (float)((double)bd[o] - p * T[2] - q * T[5]);
  }
  return TD_OK;
}
