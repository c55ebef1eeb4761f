/* Eight-float vectors (GCC/Clang vector extensions) for the elementwise
 * loops of the engine. The build uses -O2, where GCC only vectorises loops
 * whose trip count is a known multiple of the vector width; these loops run
 * over layer widths known only at run time, so they are vectorised by hand.
 * Loads and stores go through memcpy, which compiles to unaligned moves. */
#ifndef TD_NN_VEC_H
#define TD_NN_VEC_H

#include <stdint.h>
#include <string.h>

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

/* v where mask_src > 0, else 0 (a NaN in mask_src counts as not > 0). */
static inline td_v8 td_v8_where_pos(td_v8 mask_src, td_v8 v) {
  td_v8i m = mask_src > td_v8_set1(0.0f);
  return (td_v8)((td_v8i)v & m);
}

#endif
