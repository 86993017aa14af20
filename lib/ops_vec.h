/* ops_vec.h: the float vectors of the hand-blocked kernels (ops_dwconv.c,
 * ops_conv.c), as GCC/Clang vector extensions: VL floats, 16 where the build
 * targets AVX-512 (one register), else 8 (one AVX register, two SSE ones);
 * loads and stores of nc <= VL lanes; bias and activation lane by lane; the
 * software prefetch of the row-by-row sweeps (ops_norm.c, ops_se.c,
 * ops_act.c).
 * Private to lib/ (static inline functions only).
 */
#ifndef OFA_OPS_VEC_H
#define OFA_OPS_VEC_H

#include <stdint.h>
#include <string.h>
#if defined(__SSE__)
#include <immintrin.h>
#endif

#include "ops.h"

#ifdef __AVX512F__
enum { VL = 16 };
#else
enum { VL = 8 };
#endif
typedef float vf __attribute__((vector_size(VL * sizeof(float))));
typedef float vfu __attribute__((vector_size(VL * sizeof(float)), aligned(sizeof(float))));

/* Loads and stores of the first nc lanes (the rest loaded as zeros): a
 * channel tail (C % VL). Masked instructions where the build has them, which
 * touch no memory past the nc floats; a variable-length memcpy call each
 * took the smallest reference subnet's depthwise layers of 72 and 120
 * channels 1.1-1.6x the time (its batch-128 inference 7-11% longer, the
 * medium subnet's 5%). */
#if defined(__AVX512F__)
static inline __mmask16 lanes_mask(int nc)
{
    return (__mmask16)((1u << nc) - 1);
}
#elif defined(__AVX2__)
static inline __m256i lanes_mask(int nc)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(nc), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#endif

static inline vf ld(const float *p, int nc)
{
    if (nc == VL)
        return *(const vfu *)p;
#if defined(__AVX512F__)
    return (vf)_mm512_maskz_loadu_ps(lanes_mask(nc), p);
#elif defined(__AVX2__)
    return (vf)_mm256_maskload_ps(p, lanes_mask(nc));
#else
    vf r = {0};
    memcpy(&r, p, (size_t)nc * sizeof(float));
    return r;
#endif
}

static inline void st(float *p, vf v, int nc)
{
    if (nc == VL)
        *(vfu *)p = v;
    else
#if defined(__AVX512F__)
        _mm512_mask_storeu_ps(p, lanes_mask(nc), (__m512)v);
#elif defined(__AVX2__)
        _mm256_maskstore_ps(p, lanes_mask(nc), (__m256)v);
#else
        memcpy(p, &v, (size_t)nc * sizeof(float));
#endif
}

/* A whole vector stored past the caches (non-temporal), p aligned to a vf;
 * a plain store where the build has no such instruction. The stores are
 * weakly ordered: a thread calls st_stream_fence() before another may read
 * them. */
static inline void st_stream(float *p, vf v)
{
#if defined(__AVX512F__)
    _mm512_stream_ps(p, (__m512)v);
#elif defined(__AVX__)
    _mm256_stream_ps(p, (__m256)v);
#else
    *(vf *)p = v;
#endif
}

/* Whether rows of n floats from p (each row start too) can be stored with
 * st_stream alone: n whole vectors, p aligned to a vf. */
static inline int can_stream(const float *p, long n)
{
    return n % VL == 0 && (uintptr_t)p % sizeof(vf) == 0;
}

static inline void st_stream_fence(void)
{
#if defined(__SSE__)
    _mm_sfence();
#endif
}

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* The sweeps over tensors larger than the caches that go row by row (BN's
 * statistics, normalisation and backward, SE, pooling): each row prefetches
 * for reading the row at least PF_AHEAD bytes further on (rows ld floats
 * apart; the same n floats of it). The hardware prefetchers alone kept one
 * core's read stream on Emerald Rapids (2 vCPUs) at 11.4 GB/s, 15.8 with
 * these (a sum over 256 MiB, one thread); in the largest subnet's training
 * step, one thread, BN backward 60-61 -> 50-52 ms a step, BN forward 31.5 ->
 * 29.5-31, SE forward 11.7 -> 11. The address is made as an integer: it may
 * lie past the tensor's end, which a prefetch may touch but a pointer may not
 * point to. */
enum { PF_AHEAD = 4096 };

ALWAYS_INLINE void prefetch_ahead(const float *row, int n, long ld)
{
    const long rows = (PF_AHEAD / (long)sizeof(float) + ld - 1) / ld;
    const char *c = (const char *)((uintptr_t)row + (uintptr_t)(rows * ld) * sizeof(float));
    for (int o = 0; o < n * (int)sizeof(float); o += 64)
        __builtin_prefetch(c + o, 0, 3);
}

/* v + b, then act: ofa_act_value's floats, NaN included. Where the build
 * has AVX, its clamps are vmaxps / vminps with the constant first (either
 * returns its second operand, x, when x is NaN: x < 0 ? 0 : x exactly); GCC
 * made the lane-by-lane form's into compares and blends, and a 3x3 grey stem
 * storing hswish ran 1.2x faster this way. The product is a value of its
 * own, as in the lane-by-lane form: a caller's add is not contracted with it
 * (a residual is added after the activation,
 * test_pwconv_packed_matches_reference_and_threads). Else lane by lane (each
 * case a loop of its own, so that it vectorises). */
ALWAYS_INLINE vf bias_act_v(vf v, vf b, enum ofa_act act)
{
    v += b;
#if defined(__AVX512F__) || defined(__AVX__)
#if defined(__AVX512F__)
#define VMAX(c, x) ((vf)_mm512_max_ps(_mm512_set1_ps(c), (__m512)(x)))
#define VMIN(c, x) ((vf)_mm512_min_ps(_mm512_set1_ps(c), (__m512)(x)))
#else
#define VMAX(c, x) ((vf)_mm256_max_ps(_mm256_set1_ps(c), (__m256)(x)))
#define VMIN(c, x) ((vf)_mm256_min_ps(_mm256_set1_ps(c), (__m256)(x)))
#endif
    switch (act) {
    case OFA_ACT_RELU:
        return VMAX(0.0f, v);
    case OFA_ACT_HSWISH:
    case OFA_ACT_HSIGMOID: {
        const vf h = VMIN(6.0f, VMAX(0.0f, v + 3.0f)) * (1.0f / 6.0f);
        vf y = act == OFA_ACT_HSWISH ? v * h : h;
        __asm__("" : "+v"(y)); /* no caller's add contracted with the product */
        return y;
    }
    default:
        return v;
    }
#undef VMAX
#undef VMIN
#else
    float t[VL];
    memcpy(t, &v, sizeof t);
    switch (act) {
#define ACT_CASE(A)                                                                       \
    case A:                                                                               \
        for (int i = 0; i < VL; i++)                                                      \
            t[i] = ofa_act_value(A, t[i]);                                                \
        break;
    ACT_CASE(OFA_ACT_RELU) ACT_CASE(OFA_ACT_HSWISH) ACT_CASE(OFA_ACT_HSIGMOID)
#undef ACT_CASE
    default:
        break;
    }
    memcpy(&v, t, sizeof t);
    return v;
#endif
}

/* The stores of a run of n outputs `stride` floats apart: out (= or +=) acc[j],
 * then act(out + b) when b is not NULL, the activation chosen once a run:
 * a switch at each store had cost the stem's and the depthwise direct path's
 * runs (ops_conv.c, ops_dwconv.c) their speed. */
ALWAYS_INLINE void st_run_bias_act(float *o, size_t stride, const vf *acc, int n, int nc,
                                   int accumulate, const float *b, vf bv, enum ofa_act act)
{
#define ST_RUN(Y)                                                                         \
    _Pragma("GCC unroll 8") for (int j = 0; j < n; j++) {                                 \
        float *q = o + (size_t)j * stride;                                                \
        const vf v = accumulate ? ld(q, nc) + acc[j] : acc[j];                            \
        st(q, (Y), nc);                                                                   \
    }                                                                                     \
    return;
    if (!b) {
        ST_RUN(v)
    }
    switch (act) {
    case OFA_ACT_RELU: ST_RUN(bias_act_v(v, bv, OFA_ACT_RELU))
    case OFA_ACT_HSWISH: ST_RUN(bias_act_v(v, bv, OFA_ACT_HSWISH))
    case OFA_ACT_HSIGMOID: ST_RUN(bias_act_v(v, bv, OFA_ACT_HSIGMOID))
    default: ST_RUN(bias_act_v(v, bv, OFA_ACT_NONE))
    }
#undef ST_RUN
}

#endif
