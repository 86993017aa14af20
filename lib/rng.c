/* rng.c: xoshiro256** (Blackman and Vigna) seeded by SplitMix64. */
#include <config.h>

#include "rng.h"
#include "util.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void ofa_rng_seed(struct ofa_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

void ofa_rng_derive(struct ofa_rng *r, uint64_t seed, uint64_t a, uint64_t b)
{
    uint64_t x = seed;
    uint64_t h = splitmix64(&x);
    x = h ^ a;
    h = splitmix64(&x);
    x = h ^ b;
    ofa_rng_seed(r, splitmix64(&x));
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t ofa_rng_u64(struct ofa_rng *r)
{
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

float ofa_rng_uniform(struct ofa_rng *r)
{
    return (float)(ofa_rng_u64(r) >> 40) * (1.0f / 16777216.0f);
}

uint32_t ofa_rng_below(struct ofa_rng *r, uint32_t n)
{
    OFA_ASSERT(n > 0);
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = ofa_rng_u64(r);
    while (x >= limit);
    return (uint32_t)(x % n);
}

float ofa_rng_normal(struct ofa_rng *r)
{
    double u1 = ((double)(ofa_rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (double)(ofa_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void ofa_rng_fill_normal(struct ofa_rng *r, float *x, long n, float std)
{
    for (long i = 0; i < n; i++)
        x[i] = std * ofa_rng_normal(r);
}

void ofa_rng_fill_uniform(struct ofa_rng *r, float *x, long n, float a)
{
    for (long i = 0; i < n; i++)
        x[i] = a * (2.0f * ofa_rng_uniform(r) - 1.0f);
}
