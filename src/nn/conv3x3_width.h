/* The direct kernel of conv3x3.c for one vector width, included there once
 * per width: eight floats (every target) and, where the target has
 * AVX-512, sixteen (one block of 32 columns covers a 28-column row). The
 * includer defines WV (the width), VF and VI (the float and int vector
 * types), V_(name) (td_v8_name or td_v16_name) and SFX(name) (this width's
 * name of a function), which this file undefines at its end. Both widths
 * sum in the same order per output. */

/* Blocks of WV column pairs per output row. */
static int SFX(blocks)(const td__layer *L) {
  return (L->ow + 2 * WV - 1) / (2 * WV);
}
/* A padded row: 2 WV columns per block, plus the 2 read past the last. */
static int SFX(pad_len)(const td__layer *L) {
  return 2 * WV * SFX(blocks)(L) + 2;
}

static size_t SFX(scratch)(const td__layer *L) {
  return (size_t)L->ic * pad_rows(L) * SFX(blocks)(L) * 4 * WV +
         (size_t)SFX(pad_len)(L) + WV;
}

/* D[(c * rows + r) * nb + b][0..3] = E0, O0, E1, O1 of padded row r of
 * channel c, block b; row is scratch for one padded row. */
static void SFX(split_rows)(const td__layer *L, const float *x, VF *D,
                            float *row) {
  int p = L->s.pad, rows = pad_rows(L), nb = SFX(blocks)(L),
      len = SFX(pad_len)(L);
  memset(row, 0, sizeof(float) * (size_t)len);
  for (int c = 0; c < L->ic; c++)
    for (int r = 0; r < rows; r++) {
      int iy = r - p;
      if (iy >= 0 && iy < L->ih) /* the padding columns stay zero */
        memcpy(row + p, x + ((size_t)c * L->ih + iy) * L->iw,
               sizeof(float) * (size_t)L->iw);
      else
        memset(row + p, 0, sizeof(float) * (size_t)L->iw);
      VF *d = D + ((size_t)c * rows + r) * nb * 4;
      for (int b = 0; b < nb; b++) {
        const float *q = row + 2 * WV * b;
        V_(deinterleave)
        (V_(load)(q), V_(load)(q + WV), &d[4 * b], &d[4 * b + 1]);
        V_(deinterleave)
        (V_(load)(q + 2), V_(load)(q + 2 + WV), &d[4 * b + 2], &d[4 * b + 3]);
      }
    }
}

/* One output row's three products with the kernel row wk on padded row q:
 * the even columns from offset 0 (E0, O0, E1), the odd from 1 (O0, E1,
 * O1). */
#define TAP3(wk, q, o)                                                         \
  V_(fma)                                                                      \
  ((wk)[2], (q)[(o) + 2], V_(fma)((wk)[1], (q)[(o) + 1], (wk)[0] * (q)[o]))

/* Four conv values of one block: the even and odd columns of output rows
 * 2py and 2py + 1. */
typedef struct {
  VF e0, o0, e1, o1;
} SFX(quad);

static inline VF SFX(act_bias)(VF v, VF bias, int relu) {
  v += bias; /* after the sum, as the GEMM path adds it */
  return relu ? V_(where_pos)(v, v) : v;
}

/* act(bias + conv) of output rows 2py and 2py + 1, block b. Written out
 * (GCC -O2 does not unroll the small loops, and arrays would live in
 * memory); each kernel row's three products are summed apart before they
 * join the accumulator, so the chains are short. Inlined with ic a
 * constant where it can be (ic == 1). */
static inline __attribute__((always_inline)) SFX(quad)
    SFX(conv_rows)(const VF *D, int rows, int nb, int ic, const VF *w, VF bias,
                   int relu, int py, int b) {
  VF e0 = V_(set1)(0.0f), o0 = e0, e1 = e0, o1 = e0;
  size_t rs = (size_t)nb * 4; /* vectors from one padded row to the next */
  for (int c = 0; c < ic; c++) {
    const VF *q0 = D + (((size_t)c * rows + 2 * py) * nb + b) * 4;
    const VF *q1 = q0 + rs, *q2 = q1 + rs, *q3 = q2 + rs;
    const VF *wc = w + c * 9;
    e0 += TAP3(wc, q0, 0) + TAP3(wc + 3, q1, 0) + TAP3(wc + 6, q2, 0);
    o0 += TAP3(wc, q0, 1) + TAP3(wc + 3, q1, 1) + TAP3(wc + 6, q2, 1);
    e1 += TAP3(wc, q1, 0) + TAP3(wc + 3, q2, 0) + TAP3(wc + 6, q3, 0);
    o1 += TAP3(wc, q1, 1) + TAP3(wc + 3, q2, 1) + TAP3(wc + 6, q3, 1);
  }
  SFX(quad)
  r = {SFX(act_bias)(e0, bias, relu), SFX(act_bias)(o0, bias, relu),
       SFX(act_bias)(e1, bias, relu), SFX(act_bias)(o1, bias, relu)};
  return r;
}

/* best, or v where v is larger or a NaN: PyTorch's pooling rule (the first
 * maximum wins, a NaN wins). After ReLU there is no NaN (td_v8_where_pos
 * maps it to 0), and the test is the comparison alone. */
static inline VF SFX(max_rule)(VF best, VF v, int relu) {
  VI t = v > best;
  return V_(select)(relu ? t : t | (v != v), v, best);
}

/* The first n lanes of v to y (all of them where n >= WV): a plane's last,
 * partial block, e.g. 6 of the CNN's 14 pooled columns at eight floats,
 * through one masked store (vec.h). */
static inline void SFX(store_n)(float *y, VF v, int n) {
  if (n >= WV) {
    V_(store)(y, v);
    return;
  }
  V_(store_first)(y, v, n);
}

/* Output channel o of one sample, pooled: the window's maximum in
 * PyTorch's order (first maximum wins, a NaN wins). */
static inline __attribute__((always_inline)) void
SFX(channel_pooled)(const td__layer *L, const VF *D, int ic, const VF *w,
                    VF bias, int relu, float *y) {
  int nb = SFX(blocks)(L), rows = pad_rows(L), ph = L->oh / 2, pw = L->ow / 2;
  for (int py = 0; py < ph; py++)
    for (int b = 0; b < nb; b++) {
      SFX(quad) v = SFX(conv_rows)(D, rows, nb, ic, w, bias, relu, py, b);
      VF best = SFX(max_rule)(
          SFX(max_rule)(SFX(max_rule)(v.e0, v.o0, relu), v.e1, relu), v.o1,
          relu);
      SFX(store_n)(y + (size_t)py * pw + WV * b, best, pw - WV * b);
    }
}

static void SFX(channel_full)(const td__layer *L, const VF *D, const VF *w,
                              VF bias, int relu, float *y) {
  int nb = SFX(blocks)(L), rows = pad_rows(L), ow = L->ow;
  for (int oy = 0; oy < L->oh; oy += 2)
    for (int b = 0; b < nb; b++) {
      VF lo, hi;
      SFX(quad)
      v = SFX(conv_rows)(D, rows, nb, L->ic, w, bias, relu, oy / 2, b);
      for (int h = 0; h < 2 && oy + h < L->oh; h++) {
        V_(interleave)(h ? v.e1 : v.e0, h ? v.o1 : v.o0, &lo, &hi);
        float *r = y + (size_t)(oy + h) * ow + 2 * WV * b;
        SFX(store_n)(r, lo, ow - 2 * WV * b);
        if (ow - 2 * WV * b > WV)
          SFX(store_n)(r + WV, hi, ow - 2 * WV * b - WV);
      }
    }
}

static void SFX(channel)(const td__layer *L, const VF *D, const VF *w,
                         float bias, int pool, float *y) {
  int relu = L->s.act == TD_ACT_RELU;
  if (!pool)
    SFX(channel_full)(L, D, w, V_(set1)(bias), relu, y);
  else if (L->ic == 1 && relu) /* the grey-image CNN's case, unrolled */
    SFX(channel_pooled)(L, D, 1, w, V_(set1)(bias), 1, y);
  else
    SFX(channel_pooled)(L, D, L->ic, w, V_(set1)(bias), relu, y);
}

static void SFX(forward)(const td__layer *L, const float *w, const float *bias,
                         const float *x, int batch, int pool, float *scratch,
                         float *y) {
  size_t nd = (size_t)L->ic * pad_rows(L) * SFX(blocks)(L) * 4;
  VF *D = (VF *)(void *)scratch; /* 64-byte aligned (td__alloc_floats) */
  float *row = scratch + nd * WV;
  size_t out = pool ? (size_t)(L->oh / 2) * (L->ow / 2) : (size_t)L->oh * L->ow;
  VF wv[27]; /* the weights of one output channel, broadcast */
  for (int n = 0; n < batch; n++) {
    SFX(split_rows)(L, x + (size_t)n * L->in, D, row);
    for (int o = 0; o < L->oc; o++) {
      for (int k = 0; k < 9 * L->ic; k++)
        wv[k] = V_(set1)(w[(size_t)o * 9 * L->ic + k]);
      float *yo = y + ((size_t)n * L->oc + o) * out;
      SFX(channel)(L, D, wv, bias[o], pool, yo);
    }
  }
}
#undef TAP3

/* The includer's parameters end with this width. */
#undef WV
#undef VF
#undef VI
#undef V_
#undef SFX
