/* Eight-float vectors (GCC/Clang vector extensions) for the elementwise
 * loops of the engine. The build uses -O2, where GCC only vectorises loops
 * whose trip count is a known multiple of the vector width; these loops run
 * over layer widths known only at run time, so they are vectorised by hand.
 * Loads and stores go through memcpy, which compiles to unaligned moves. */
#ifndef TD_NN_VEC_H
#define TD_NN_VEC_H

#include <stdint.h>
#include <string.h>
#if defined(__AVX__)
#include <immintrin.h>
#endif

#define TD_V 8
typedef float td_v8 __attribute__((vector_size(32)));
typedef int32_t td_v8i __attribute__((vector_size(32)));

static inline td_v8 td_v8_load(const float *p) {
  td_v8 v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline void td_v8_store(float *p, td_v8 v) { memcpy(p, &v, sizeof v); }

static inline td_v8 td_v8_set1(float x) {
  td_v8 v = {x, x, x, x, x, x, x, x};
  return v;
}

/* a * b + c, fused where the target has FMA (the build is ISO C, where
 * GCC does not contract a * b + c by itself), rounded twice elsewhere. */
static inline td_v8 td_v8_fma(td_v8 a, td_v8 b, td_v8 c) {
#if defined(__FMA__)
  return (td_v8)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#else
  return a * b + c;
#endif
}

/* v where mask_src > 0, else 0 (a NaN in mask_src counts as not > 0). */
static inline td_v8 td_v8_where_pos(td_v8 mask_src, td_v8 v) {
  td_v8i m = mask_src > td_v8_set1(0.0f);
  return (td_v8)((td_v8i)v & m);
}

/* Lanes 0, 2, .., 14 (even) and 1, 3, .., 15 (odd) of the 16 floats lo:hi,
 * and the inverse: the interleaving of even and odd into lo:hi. */
#if defined(__clang__)
#define TD__SHUF(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define TD__SHUF(a, b, ...) __builtin_shuffle(a, b, (td_v8i){__VA_ARGS__})
#endif
static inline void td_v8_deinterleave(td_v8 lo, td_v8 hi, td_v8 *even,
                                      td_v8 *odd) {
  *even = TD__SHUF(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14);
  *odd = TD__SHUF(lo, hi, 1, 3, 5, 7, 9, 11, 13, 15);
}
static inline void td_v8_interleave(td_v8 even, td_v8 odd, td_v8 *lo,
                                    td_v8 *hi) {
  *lo = TD__SHUF(even, odd, 0, 8, 1, 9, 2, 10, 3, 11);
  *hi = TD__SHUF(even, odd, 4, 12, 5, 13, 6, 14, 7, 15);
}

/* The first n (0 <= n < 8) lanes of v to p: one masked store where the
 * target has AVX (a plane's last, partial block, where a lane-by-lane copy
 * through the stack took a tenth of the direct convolution). */
static inline void td_v8_store_first(float *p, td_v8 v, int n) {
#if defined(__AVX__)
  td_v8i lane = {0, 1, 2, 3, 4, 5, 6, 7};
  td_v8i mask = lane < (td_v8i){n, n, n, n, n, n, n, n};
  _mm256_maskstore_ps(p, (__m256i)mask, (__m256)v);
#else
  for (int q = 0; q < n; q++)
    p[q] = v[q];
#endif
}

/* Lane-wise a where mask (all ones) else b, for floats and ints. */
static inline td_v8 td_v8_select(td_v8i mask, td_v8 a, td_v8 b) {
  return (td_v8)((mask & (td_v8i)a) | (~mask & (td_v8i)b));
}
static inline td_v8i td_v8i_select(td_v8i mask, td_v8i a, td_v8i b) {
  return (mask & a) | (~mask & b);
}

/* Sixteen-float vectors, where the target has AVX-512 (the default build
 * is -march=native): the inference kernels' wider variants (winograd4.c),
 * beside the eight-float ones that every other target runs. */
#if defined(__AVX512F__)
#define TD_V16 16
typedef float td_v16 __attribute__((vector_size(64)));
typedef int32_t td_v16i __attribute__((vector_size(64)));

static inline td_v16 td_v16_load(const float *p) {
  td_v16 v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline void td_v16_store(float *p, td_v16 v) { memcpy(p, &v, sizeof v); }

static inline td_v16 td_v16_set1(float x) { return (td_v16)_mm512_set1_ps(x); }

static inline td_v16 td_v16_fma(td_v16 a, td_v16 b, td_v16 c) {
  return (td_v16)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
}

static inline td_v16 td_v16_where_pos(td_v16 mask_src, td_v16 v) {
  td_v16i m = mask_src > td_v16_set1(0.0f);
  return (td_v16)((td_v16i)v & m);
}

static inline td_v16 td_v16_select(td_v16i mask, td_v16 a, td_v16 b) {
  return (td_v16)((mask & (td_v16i)a) | (~mask & (td_v16i)b));
}

static inline void td_v16_store_first(float *p, td_v16 v, int n) {
  _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), (__m512)v);
}

#if defined(__clang__)
#define TD__SHUF16(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define TD__SHUF16(a, b, ...) __builtin_shuffle(a, b, (td_v16i){__VA_ARGS__})
#endif
static inline void td_v16_deinterleave(td_v16 lo, td_v16 hi, td_v16 *even,
                                       td_v16 *odd) {
  *even = TD__SHUF16(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                     28, 30);
  *odd = TD__SHUF16(lo, hi, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27,
                    29, 31);
}
static inline void td_v16_interleave(td_v16 even, td_v16 odd, td_v16 *lo,
                                     td_v16 *hi) {
  *lo = TD__SHUF16(even, odd, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22,
                   7, 23);
  *hi = TD__SHUF16(even, odd, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14,
                   30, 15, 31);
}
#endif

#endif
