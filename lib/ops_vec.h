/* ops_vec.h: the float vectors of the hand-blocked kernels (ops_dwconv.c,
 * ops_conv.c), as GCC/Clang vector extensions: VL floats, 16 where the build
 * targets AVX-512 (one register), else 8 (one AVX register, two SSE ones);
 * loads and stores of nc <= VL lanes; bias and activation lane by lane.
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

static inline vf ld(const float *p, int nc)
{
    if (nc == VL)
        return *(const vfu *)p;
    vf r = {0};
    memcpy(&r, p, (size_t)nc * sizeof(float));
    return r;
}

static inline void st(float *p, vf v, int nc)
{
    if (nc == VL)
        *(vfu *)p = v;
    else
        memcpy(p, &v, (size_t)nc * sizeof(float));
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

/* v + b, then act, lane by lane (ofa_act_value; each case a loop of its own
 * so that it vectorises). */
ALWAYS_INLINE vf bias_act_v(vf v, vf b, enum ofa_act act)
{
    float t[VL];
    v += b;
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
}

#endif
