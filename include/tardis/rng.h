/* tardis/rng.h — small, fast, seedable random numbers (xoshiro256**).
 *
 * Every random choice in tardis draws from an explicit td_rng so that runs are
 * reproducible from a seed. Parallel code gives each thread its own stream
 * with td_rng_split.
 */
#ifndef TARDIS_RNG_H
#define TARDIS_RNG_H

#include <stdint.h>

typedef struct td_rng {
  uint64_t s[4];
} td_rng;

void td_rng_seed(td_rng *r, uint64_t seed);
/* Independent stream number `stream` derived from a seed. */
void td_rng_split(td_rng *out, uint64_t seed, uint64_t stream);
uint64_t td_rng_next(td_rng *r);
/* Uniform integer in [0, n), unbiased. n > 0. */
uint64_t td_rng_below(td_rng *r, uint64_t n);
/* Uniform float in [0, 1). */
float td_rng_uniform(td_rng *r);
double td_rng_uniform_d(td_rng *r);
/* Standard normal (Box–Muller). */
float td_rng_normal(td_rng *r);
/* In-place Fisher–Yates shuffle of n int32 values. */
void td_rng_shuffle_i32(td_rng *r, int32_t *v, int64_t n);

#endif
