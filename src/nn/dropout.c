/* Inverted dropout: in training mode each value is kept with probability
 * 1-p and scaled by 1/(1-p), so eval mode is the identity. The mask comes
 * from a counter-based hash of (seed, forward count, layer, element) rather
 * than a sequential generator: it does not depend on threads or on the
 * order the elements are visited, and a resumed run can reproduce it. */
#include <string.h>

#include "net_internal.h"

/* SplitMix64's finaliser: a bijective mix with good avalanche. */
static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void td__dropout_forward(const td__layer *L, td_net_ws *ws, int l,
                         const float *x, int batch) {
  size_t n = (size_t)batch * L->out;
  float *y = ws->act[l];
  ws->stat_train[l] = ws->training && L->s.p > 0.0f;
  if (!ws->stat_train[l]) {
    memcpy(y, x, n * sizeof(float));
    return;
  }
  uint64_t key =
      mix64(ws->seed ^ mix64(ws->step * 0x9E3779B97F4A7C15ull + (uint64_t)l));
  float p = L->s.p, scale = 1.0f / (1.0f - p);
  uint8_t *mask = ws->mask[l];
  for (size_t i = 0; i < n; i++) {
    uint64_t h = mix64(key + i * 0xD1B54A32D192ED03ull);
    float u = (float)(h >> 40) * 0x1p-24f; /* uniform on [0, 1) */
    mask[i] = u >= p;
    y[i] = mask[i] ? x[i] * scale : 0.0f;
  }
}

void td__dropout_backward(const td__layer *L, const td_net_ws *ws, int l,
                          const float *dz, float *dx, int batch) {
  size_t n = (size_t)batch * L->out;
  if (!ws->stat_train[l]) {
    memcpy(dx, dz, n * sizeof(float));
    return;
  }
  float scale = 1.0f / (1.0f - L->s.p);
  const uint8_t *mask = ws->mask[l];
  for (size_t i = 0; i < n; i++)
    dx[i] = mask[i] ? dz[i] * scale : 0.0f;
}
