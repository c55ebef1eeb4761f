/* The tile pipeline of winograd4.c for one vector width, included there
 * once per width: eight floats (AVX2, every target) and, where the target
 * has AVX-512, sixteen. The includer defines
 *
 *   WV          the vector width (channels per vector)
 *   VF, VI      the float and int vector types of WV lanes
 *   V_(name)    the vector function td_v8_name or td_v16_name
 *   BT, BO      the block of tiles and of output channels (BO = 2 WV)
 *   SFX(name)   the name of this width's variant of a function
 *
 * (this file undefines them at its end) and the widths share the layouts (with
 * WV channels per vector) and the arithmetic: both run the same sums in the
 * same order per output, so they differ from each other only where the compiler
 * contracts differently (tests/test_infer.c compares both with a convolution in
 * double and with each other). */

/* B^T d of six vectors. */
static inline void SFX(bt6)(const VF d[6], VF r[6]) {
  VF four = V_(set1)(4.0f), five = V_(set1)(5.0f), two = V_(set1)(2.0f);
  VF a = d[4] - d[2], b = d[3] - d[1];
  r[0] = V_(fma)(four, d[0], d[4]) - five * d[2];
  r[1] = d[4] + d[3] - four * (d[1] + d[2]);
  r[2] = d[4] - d[3] + four * (d[1] - d[2]);
  r[3] = a + two * b;
  r[4] = a - two * b;
  r[5] = V_(fma)(four, d[1], d[5]) - five * d[3];
}

/* Tiles g[0 .. nt-1] of a group (tile g is tile g % T of sample g / T): P
 * holds the samples' padded planes [ic/WV][pad_h][pad_w][WV]; the WV
 * channels from WV cb of tile g[r] go to V[36][ic/WV][BT][WV] at [.][cb][r],
 * so that the products find a channel of all the block's tiles at fixed
 * offsets. */
static void SFX(input_tiles)(const td__layer *L, const float *P, const int *g,
                             int nt, float *V) {
  int tx_n = tiles_x(L), T = tiles_y(L) * tx_n, pw = pad_w(L);
  size_t plane = (size_t)pad_h(L) * pw * WV, vs = (size_t)BT * L->ic;
  for (int r = 0; r < nt; r++) {
    int n = g[r] / T, ty = g[r] % T / tx_n, tx = g[r] % tx_n;
    const float *ps = P + (size_t)n * (L->ic / WV) * plane;
    for (int cb = 0; cb < L->ic / WV; cb++) {
      const float *p = ps + cb * plane + ((size_t)4 * ty * pw + 4 * tx) * WV;
      VF t[6][6], d[6], q[6];
#pragma GCC unroll 6
      for (int j = 0; j < 6; j++) { /* columns: B^T d */
#pragma GCC unroll 6
        for (int i = 0; i < 6; i++)
          d[i] = V_(load)(p + ((size_t)i * pw + j) * WV);
        SFX(bt6)(d, q);
#pragma GCC unroll 6
        for (int i = 0; i < 6; i++)
          t[i][j] = q[i];
      }
      float *v = V + ((size_t)cb * BT + r) * WV;
#pragma GCC unroll 6
      for (int i = 0; i < 6; i++) { /* rows: (B^T d) B */
        SFX(bt6)(t[i], q);
#pragma GCC unroll 6
        for (int j = 0; j < 6; j++)
          V_(store)(v + (size_t)(i * 6 + j) * vs, q[j]);
      }
    }
  }
}

/* A^T m of six vectors. */
static inline void SFX(at6)(const VF m[6], VF r[4]) {
  VF two = V_(set1)(2.0f), four = V_(set1)(4.0f), eight = V_(set1)(8.0f);
  VF s = m[1] + m[2], d = m[1] - m[2], s2 = m[3] + m[4], d2 = m[3] - m[4];
  r[0] = m[0] + s + s2;
  r[1] = V_(fma)(two, d2, d);
  r[2] = V_(fma)(four, s2, s);
  r[3] = V_(fma)(eight, d2, d) + m[5];
}

/* The larger of a and b in PyTorch's pooling order (b wins if greater or
 * NaN). */
static inline VF SFX(pool_max)(VF a, VF b) {
  return V_(select)((b > a) | (b != b), b, a);
}

/* r[i][j] (rows < 4, cols < 4 of them) to y [h][w][oc] at (y0, x0) and
 * channel o0: whole vectors, the channels being innermost. */
static void SFX(store_hwc)(VF r[4][4], int rows, int cols, int w, int oc,
                           int y0, int x0, int o0, float *y) {
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < cols; j++)
      V_(store)(y + ((size_t)(y0 + i) * w + x0 + j) * oc + o0, r[i][j]);
}

/* One tile of WV output channels: r[4][4] (bias and activation applied)
 * to y, the sample's [oc][oh][ow] output (or [oc][oh/2][ow/2] pooled), or
 * with hwc set [oh][ow][oc] (or [oh/2][ow/2][oc]). */
static void SFX(store_tile)(const td__layer *L, VF r[4][4], int pool, int hwc,
                            int ty, int tx, int o0, float *y) {
  float lane[4][4][WV];
  int oh = L->oh, ow = L->ow, rows = 4, cols = 4, h = oh, w = ow, y0 = 4 * ty,
      x0 = 4 * tx;
  if (pool) {
    for (int a = 0; a < 2; a++)
      for (int b = 0; b < 2; b++) {
        VF m = r[2 * a][2 * b];
        m = SFX(pool_max)(m, r[2 * a][2 * b + 1]);
        m = SFX(pool_max)(m, r[2 * a + 1][2 * b]);
        m = SFX(pool_max)(m, r[2 * a + 1][2 * b + 1]);
        r[a][b] =
            m; /* (r[a][b] is read before, by this window or one before) */
      }
    rows = cols = 2;
    h = oh / 2, w = ow / 2, y0 = 2 * ty, x0 = 2 * tx;
  }
  if (hwc) {
    SFX(store_hwc)
    (r, y0 + rows > h ? h - y0 : rows, x0 + cols > w ? w - x0 : cols, w, L->oc,
     y0, x0, o0, y);
    return;
  }
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < cols; j++)
      V_(store)(lane[i][j], r[i][j]);
  size_t hw = (size_t)h * w;
  if (pool && y0 + 2 <= h && x0 + 2 <= w) { /* a whole pooled 2x2 block */
    for (int q = 0; q < WV; q++) {
      float *o = y + (size_t)(o0 + q) * hw + (size_t)y0 * w + x0;
      o[0] = lane[0][0][q], o[1] = lane[0][1][q];
      o[w] = lane[1][0][q], o[w + 1] = lane[1][1][q];
    }
    return;
  }
  if (y0 + rows > h)
    rows = h - y0;
  if (x0 + cols > w)
    cols = w - x0;
  for (int q = 0; q < WV; q++) {
    float *o = y + (size_t)(o0 + q) * hw + (size_t)y0 * w + x0;
    for (int i = 0; i < rows; i++)
      for (int j = 0; j < cols; j++)
        o[(size_t)i * w + j] = lane[i][j][q];
  }
}

/* y = act(A^T m A + bias) for tiles g[0 .. nt-1] of a group and the no
 * output channels from o0: M[36][BT][BO], row r of each holding tile g[r];
 * y [batch][out] the group's outputs. */
static void SFX(output_tiles)(const td__layer *L, const float *M, const int *g,
                              int nt, int o0, int no, const float *bias,
                              int pool, int hwc, size_t out, float *y) {
  int tx_n = tiles_x(L), T = tiles_y(L) * tx_n, relu = L->s.act == TD_ACT_RELU;
  size_t ms = (size_t)BT * BO;
  for (int r = 0; r < nt; r++) {
    int n = g[r] / T, ty = g[r] % T / tx_n, tx = g[r] % tx_n;
    for (int ob = 0; ob < no; ob += WV) {
      const float *m = M + (size_t)r * BO + ob;
      VF t[4][6], c[6], q[4][4], bv = V_(load)(bias + o0 + ob);
#pragma GCC unroll 6
      for (int j = 0; j < 6; j++) { /* columns: A^T m */
        VF s[4];
#pragma GCC unroll 6
        for (int i = 0; i < 6; i++)
          c[i] = V_(load)(m + (size_t)(i * 6 + j) * ms);
        SFX(at6)(c, s);
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++)
          t[i][j] = s[i];
      }
#pragma GCC unroll 6
      for (int i = 0; i < 4; i++) { /* rows: (A^T m) A */
        SFX(at6)(t[i], q[i]);
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
          q[i][j] += bv;
          if (relu)
            q[i][j] = V_(where_pos)(q[i][j], q[i][j]);
        }
      }
      SFX(store_tile)(L, q, pool, hwc, ty, tx, o0 + ob, y + n * out);
    }
  }
}

/* Copies sample x [ic][ih][iw] into the padded plane P [ic/WV][ph][pw][WV]
 * (whose border stays zero): eight columns of eight channels at a time
 * through a transpose, the last eight of a row overlapping the previous
 * ones where iw is not a multiple of 8; with sixteen channels per vector,
 * the two halves of a vector from two transposes. */
static void SFX(pad_sample)(const td__layer *L, const float *x, float *P) {
  int pw = pad_w(L), p = L->s.pad, iw = L->iw;
  size_t plane = (size_t)pad_h(L) * pw * WV, hw = (size_t)L->ih * iw;
  for (int c0 = 0; c0 < L->ic; c0 += WV) {
    float *d = P + (size_t)(c0 / WV) * plane;
    for (int r = 0; r < L->ih; r++) {
      float *dr = d + ((size_t)(r + p) * pw + p) * WV;
      for (int h = 0; h < WV; h += TD_V) {
        const float *sr = x + (size_t)(c0 + h) * hw + (size_t)r * iw;
        for (int k = 0; iw >= TD_V && k < iw; k += TD_V) {
          int k0 = k + TD_V <= iw ? k : iw - TD_V;
          td_v8 v[8];
          for (int q = 0; q < TD_V; q++)
            v[q] = td_v8_load(sr + q * hw + k0);
          transpose8(v);
          for (int j = 0; j < TD_V; j++)
            td_v8_store(dr + (size_t)(k0 + j) * WV + h, v[j]);
        }
        for (int k = 0; iw < TD_V && k < iw; k++)
          for (int q = 0; q < TD_V; q++)
            dr[(size_t)k * WV + h + q] = sr[q * hw + k];
      }
    }
  }
}

/* M = V u for one position of a full block: V [ic/WV][BT][WV] (see
 * input_tiles), u the [ic, BO] columns of U[k] from o0 (row stride oc), M
 * [BT, BO]. 2 BT accumulators (BT tiles by two vectors of output channels)
 * stay in registers over ic, written out one by one: GCC keeps an array of
 * them in memory. */
#define ROW(n, r)                                                              \
  a = V_(set1)(p[(r)*WV + j]);                                                 \
  c##n##0 = V_(fma)(a, b0, c##n##0), c##n##1 = V_(fma)(a, b1, c##n##1)
#define OUT(n, r)                                                              \
  V_(store)(M + (r)*BO, c##n##0), V_(store)(M + (r)*BO + WV, c##n##1)
static void SFX(block_product)(const float *V, int ic, const float *u, int oc,
                               float *M) {
  VF z = V_(set1)(0.0f), c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z,
     c30 = z, c31 = z, c40 = z, c41 = z, c50 = z, c51 = z;
#if BT == 12
  VF c60 = z, c61 = z, c70 = z, c71 = z, c80 = z, c81 = z, c90 = z, c91 = z,
     cA0 = z, cA1 = z, cB0 = z, cB1 = z;
#endif
  for (const float *p = V; p < V + (size_t)BT * ic; p += BT * WV)
    for (int j = 0; j < WV; j++, u += oc) {
      VF b0 = V_(load)(u), b1 = V_(load)(u + WV), a;
      ROW(0, 0);
      ROW(1, 1);
      ROW(2, 2);
      ROW(3, 3);
      ROW(4, 4);
      ROW(5, 5);
#if BT == 12
      ROW(6, 6);
      ROW(7, 7);
      ROW(8, 8);
      ROW(9, 9);
      ROW(A, 10);
      ROW(B, 11);
#endif
    }
  OUT(0, 0);
  OUT(1, 1);
  OUT(2, 2);
  OUT(3, 3);
  OUT(4, 4);
  OUT(5, 5);
#if BT == 12
  OUT(6, 6);
  OUT(7, 7);
  OUT(8, 8);
  OUT(9, 9);
  OUT(A, 10);
  OUT(B, 11);
#endif
}
#undef ROW
#undef OUT

/* The general case: nt <= BT tiles, no <= BO output channels (a multiple
 * of WV), one tile and vector at a time (a group's last, partial block; an
 * output width not a multiple of BO). */
static void SFX(block_product_any)(const float *V, int nt, int ic,
                                   const float *u, int oc, int no, float *M) {
  for (int r = 0; r < nt; r++)
    for (int o = 0; o < no; o += WV) {
      VF acc = V_(set1)(0.0f);
      for (int c = 0; c < ic; c++)
        acc = V_(fma)(V_(set1)(V[((size_t)(c / WV) * BT + r) * WV + c % WV]),
                      V_(load)(u + (size_t)c * oc + o), acc);
      V_(store)(M + (size_t)r * BO + o, acc);
    }
}

/* Zeros in V's rows nt .. BT - 1, so that a group's last, partial block can
 * go through the full block's products (whose extra rows are not read). */
static void SFX(clear_rows)(int nt, int ic, float *V) {
  size_t vs = (size_t)BT * ic;
  for (int k = 0; k < 36; k++)
    for (int cb = 0; cb < ic / WV; cb++)
      memset(V + k * vs + ((size_t)cb * BT + nt) * WV, 0,
             sizeof(float) * WV * (BT - nt));
}

/* The group's output y from its padded planes P, block by block and class
 * by class: the input transform of BT tiles, then per BO output channels
 * the 36 products (fewer on the edges) and the output transform. */
static void SFX(group_forward)(const td__layer *L, const float *U,
                               const float *bias, const float *P, int batch,
                               int pool, int hwc, size_t out, float *V,
                               float *M, float *y) {
  int T = tiles_y(L) * tiles_x(L), tx_n = tiles_x(L), ic = L->ic, oc = L->oc;
  size_t vs = (size_t)BT * ic, ms = (size_t)BT * BO, us = (size_t)ic * oc;
  for (int c = 0; c < 4; c++) {
    tile_class k = class_of(L, c);
    int G = batch * k.ny * k.nx, g[BT];
    for (int i0 = 0; i0 < G; i0 += BT) {
      int nt = G - i0 < BT ? G - i0 : BT;
      for (int r = 0; r < nt; r++) {
        int i = i0 + r, a = i % (k.ny * k.nx);
        g[r] =
            i / (k.ny * k.nx) * T + (k.y0 + a / k.nx) * tx_n + k.x0 + a % k.nx;
      }
      SFX(input_tiles)(L, P, g, nt, V);
      if (nt < BT)
        SFX(clear_rows)(nt, ic, V);
      for (int o0 = 0; o0 < oc; o0 += BO) {
        int no = oc - o0 < BO ? oc - o0 : BO;
        for (int p = 0; p < 36; p++) {
          if (unread(c, p)) /* zeros, not stale values, in the cut-off rows */
            memset(M + p * ms, 0, sizeof(float) * ms);
          else if (no == BO) /* (a partial block's missing tiles are 0) */
            SFX(block_product)(V + p * vs, ic, U + p * us + o0, oc, M + p * ms);
          else
            SFX(block_product_any)
          (V + p * vs, nt, ic, U + p * us + o0, oc, no, M + p * ms);
        }
        SFX(output_tiles)(L, M, g, nt, o0, no, bias, pool, hwc, out, y);
      }
    }
  }
}

static void SFX(forward)(const td__layer *L, const float *U, const float *bias,
                         const float *x, int batch, int pool, int hwc,
                         float *scratch, float *y) {
  float *V = scratch, *M = V + 36 * (size_t)BT * L->ic,
        *P = M + 36 * (size_t)BT * BO;
  size_t out = pool ? (size_t)L->oc * (L->oh / 2) * (L->ow / 2)
                    : (size_t)L->oc * L->oh * L->ow,
         pn = (size_t)L->ic * pad_h(L) * pad_w(L);
  memset(P, 0, sizeof(float) * batch * pn);
  for (int n = 0; n < batch; n++)
    SFX(pad_sample)(L, x + (size_t)n * L->ic * L->ih * L->iw, P + n * pn);
  SFX(group_forward)(L, U, bias, P, batch, pool, hwc, out, V, M, y);
}

/* The includer's parameters end with this width. */
#undef WV
#undef VF
#undef VI
#undef V_
#undef BT
#undef BO
#undef SFX
