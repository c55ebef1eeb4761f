/* xoshiro256** seeded through splitmix64 (public-domain algorithms by
 * Blackman and Vigna; re-implemented from their description). */
#include "tardis/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void td_rng_seed(td_rng *r, uint64_t seed) {
  uint64_t x = seed;
  for (int i = 0; i < 4; i++)
    r->s[i] = splitmix64(&x);
}

void td_rng_split(td_rng *out, uint64_t seed, uint64_t stream) {
  uint64_t x = seed ^ (stream * 0xd1b54a32d192ed03ULL + 0x8cb92ba72f3d8dd7ULL);
  td_rng_seed(out, splitmix64(&x));
}

static inline uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

uint64_t td_rng_next(td_rng *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

uint64_t td_rng_below(td_rng *r, uint64_t n) {
  /* Rejection sampling keeps the result exactly uniform. */
  uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t v;
  do
    v = td_rng_next(r);
  while (v >= limit);
  return v % n;
}

float td_rng_uniform(td_rng *r) {
  return (float)(td_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

double td_rng_uniform_d(td_rng *r) {
  return (double)(td_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

float td_rng_normal(td_rng *r) {
  double u1 = td_rng_uniform_d(r), u2 = td_rng_uniform_d(r);
  if (u1 < 1e-300)
    u1 = 1e-300;
  return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void td_rng_shuffle_i32(td_rng *r, int32_t *v, int64_t n) {
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)td_rng_below(r, (uint64_t)i + 1);
    int32_t t = v[i];
    v[i] = v[j];
    v[j] = t;
  }
}
