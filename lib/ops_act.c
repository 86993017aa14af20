#include <config.h>
/* ops_act.c: elementwise activations (PyTorch's relu, hardswish, hardsigmoid,
 * including their choices of derivative at the kinks), global average pooling
 * over NHWC rows and inverted dropout. The dropout mask is drawn serially, so
 * it is a function of the rng state only; everything else is parallel. */

#include "ops.h"
#include "ops_vec.h"
#include "rng.h"
#include "util.h"


/* Below this many elements a parallel region costs more than it saves. */
#define PAR_MIN 32768L

/* Channel block of the pooling accumulators. */
enum { CB = 256 };

/* inp, out [n] (out == inp allowed), act as ofa_act_value; the switch sits
 * outside the loops so that each vectorises with its constant act. */
#define ACT_FWD_CASE(A)                                                                \
    case A:                                                                            \
        _Pragma("omp parallel for simd schedule(static) if (n >= PAR_MIN)")            \
        for (long i = 0; i < n; i++)                                                   \
            out[i] = ofa_act_value(A, inp[i]);                                         \
        break;
void ofa_act_forward(float *out, const float *inp, long n, enum ofa_act act)
{
    if (act == OFA_ACT_NONE && out == inp)
        return;
    switch (act) {
        ACT_FWD_CASE(OFA_ACT_NONE)
        ACT_FWD_CASE(OFA_ACT_RELU)
        ACT_FWD_CASE(OFA_ACT_HSWISH)
        ACT_FWD_CASE(OFA_ACT_HSIGMOID)
    default:
        OFA_ASSERT(!"unknown activation");
    }
}
#undef ACT_FWD_CASE

/* dout, inp [n] -> dinp [n] (+=), act' as ofa_act_grad. The switch sits
 * outside the loops so that each vectorises with its constant act. */
#define ACT_BWD_CASE(A)                                                                \
    case A:                                                                            \
        _Pragma("omp parallel for simd schedule(static) if (n >= PAR_MIN)")            \
        for (long i = 0; i < n; i++)                                                   \
            dinp[i] += ofa_act_grad(A, inp[i], dout[i]);                               \
        break;
void ofa_act_backward(float *dinp, const float *dout, const float *inp, long n,
                      enum ofa_act act)
{
    switch (act) {
        ACT_BWD_CASE(OFA_ACT_NONE)
        ACT_BWD_CASE(OFA_ACT_RELU)
        ACT_BWD_CASE(OFA_ACT_HSWISH)
        ACT_BWD_CASE(OFA_ACT_HSIGMOID)
    default:
        OFA_ASSERT(!"unknown activation");
    }
}
#undef ACT_BWD_CASE

/* inp [N,HW,C] -> out [N,C]; sums in double over (image, channel block) tasks. */
void ofa_avgpool_forward(float *out, const float *inp, int N, int HW, int C)
{
    OFA_ASSERT(N >= 1 && HW >= 1 && C >= 1);
    int nb = (C + CB - 1) / CB;
    long ntask = (long)N * nb;
#pragma omp parallel for schedule(static) if ((long)N * HW * C >= PAR_MIN)
    for (long t = 0; t < ntask; t++) {
        int n = (int)(t / nb), c0 = (int)(t % nb) * CB;
        int cn = C - c0 < CB ? C - c0 : CB;
        double s[CB] = {0};
        for (int p = 0; p < HW; p++) {
            const float *x = inp + ((long)n * HW + p) * C + c0;
            prefetch_ahead(x, cn, C);
#pragma omp simd
            for (int j = 0; j < cn; j++)
                s[j] += x[j];
        }
        for (int j = 0; j < cn; j++)
            out[(long)n * C + c0 + j] = (float)(s[j] / HW);
    }
}

/* dout [N,C] -> dinp [N,HW,C] (+=). */
void ofa_avgpool_backward(float *dinp, const float *dout, int N, int HW, int C)
{
    OFA_ASSERT(N >= 1 && HW >= 1 && C >= 1);
    long rows = (long)N * HW;
    float inv = 1.0f / (float)HW;
#pragma omp parallel for schedule(static) if (rows * C >= PAR_MIN)
    for (long m = 0; m < rows; m++) {
        const float *g = dout + (m / HW) * C;
        float *d = dinp + m * C;
#pragma omp simd
        for (int c = 0; c < C; c++)
            d[c] += g[c] * inv;
    }
}

/* inp [n] -> out [n] (out == inp allowed), mask [n]. One uniform is drawn per
 * element whatever p is, so the rng advances by n draws. */
void ofa_dropout_forward(float *out, float *mask, const float *inp, long n, float p,
                         struct ofa_rng *rng)
{
    OFA_ASSERT(p >= 0.0f && p < 1.0f);
    float keep = 1.0f / (1.0f - p);
    for (long i = 0; i < n; i++)
        mask[i] = ofa_rng_uniform(rng) < p ? 0.0f : keep;
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (long i = 0; i < n; i++)
        out[i] = inp[i] * mask[i];
}

/* dout, mask [n] -> dinp [n] (+=). */
void ofa_dropout_backward(float *dinp, const float *dout, const float *mask, long n)
{
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (long i = 0; i < n; i++)
        dinp[i] += dout[i] * mask[i];
}
