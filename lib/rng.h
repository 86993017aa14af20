/* rng.h: seeded random numbers with explicit state (never rand()).
 *
 * xoshiro256** seeded through SplitMix64. Streams that must be a pure function
 * of some coordinates (seed, step, k) are made with ofa_rng_derive(), so that
 * e.g. every MPI rank samples the same subnets at a given step.
 */
#ifndef OFA_RNG_H
#define OFA_RNG_H

#include <stdint.h>

struct ofa_rng {
    uint64_t s[4];
};

void ofa_rng_seed(struct ofa_rng *r, uint64_t seed);
/* A generator whose stream depends only on (seed, a, b). */
void ofa_rng_derive(struct ofa_rng *r, uint64_t seed, uint64_t a, uint64_t b);
uint64_t ofa_rng_u64(struct ofa_rng *r);
/* Uniform in [0, 1) with 24 random bits. */
float ofa_rng_uniform(struct ofa_rng *r);
/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint32_t ofa_rng_below(struct ofa_rng *r, uint32_t n);
/* Standard normal (Box-Muller, one value per call). */
float ofa_rng_normal(struct ofa_rng *r);
/* Fill with N(0, std^2) / U(-a, a). */
void ofa_rng_fill_normal(struct ofa_rng *r, float *x, long n, float std);
void ofa_rng_fill_uniform(struct ofa_rng *r, float *x, long n, float a);

#endif
