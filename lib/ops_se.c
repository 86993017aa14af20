#include <config.h>
/* ops_se.c: squeeze-excite with elastic width: the first C columns of w1
 * [R][ld1] and the first R columns of w2 [C][ld2]. The two small matrix
 * products go through ofa_gemm (outside any parallel region); the passes over
 * the [N,HW,C] activations are parallel over (image, channel block) tasks,
 * or rows in ofa_se_scale. */

#include "ops.h"
#include "ops_vec.h"
#include "util.h"

#include <math.h>

#define PAR_MIN 32768L

/* Channel block of the (image, channel block) tasks; pixels summed in float
 * in groups of SUM_GROUP, the groups' sums in double (as BN's sums). */
enum { CB = 256, SUM_GROUP = 16 };

/* x [rows,cols] (leading dimension ld) = b broadcast over the rows. */
static void set_rows(float *x, int ld, const float *b, int rows, int cols)
{
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
            x[(long)i * ld + j] = b[j];
}

/* inp [N,HW,C] -> out [N,HW,C]; caches pooled [N,C], hidden [N,R], gate [N,C].
 * out holds relu(hidden) [N,R] for a while, so it must not alias inp. */
void ofa_se_forward(float *out, float *pooled, float *hidden, float *gate,
                    const float *inp, const float *w1, int ld1, const float *b1,
                    const float *w2, int ld2, const float *b2,
                    int N, int HW, int C, int R)
{
    OFA_ASSERT(N >= 1 && HW >= 1 && C >= 1 && R >= 1);
    OFA_ASSERT(ld1 >= C && ld2 >= R);
    OFA_ASSERT((long)HW * C >= R && out != inp);
    ofa_avgpool_forward(pooled, inp, N, HW, C);
    /* hidden = pooled w1^T + b1 */
    set_rows(hidden, R, b1, N, R);
    ofa_gemm(0, 1, N, R, C, 1.0f, pooled, C, w1, ld1, 1.0f, hidden, R);
    /* gate = relu(hidden) w2^T + b2, relu(hidden) parked in out */
    float *hr = out;
    for (long i = 0; i < (long)N * R; i++)
        hr[i] = hidden[i] > 0.0f ? hidden[i] : 0.0f;
    set_rows(gate, C, b2, N, C);
    ofa_gemm(0, 1, N, C, R, 1.0f, hr, R, w2, ld2, 1.0f, gate, C);
    int nb = (C + CB - 1) / CB;
    long ntask = (long)N * nb;
#pragma omp parallel for schedule(static) if ((long)N * HW * C >= PAR_MIN)
    for (long t = 0; t < ntask; t++) {
        int n = (int)(t / nb), c0 = (int)(t % nb) * CB;
        int cn = C - c0 < CB ? C - c0 : CB;
        float hs[CB];
#pragma omp simd /* else scalar, a branch a gate */
        for (int j = 0; j < cn; j++)
            hs[j] = ofa_act_value(OFA_ACT_HSIGMOID, gate[(long)n * C + c0 + j]);
        for (int p = 0; p < HW; p++) {
            long off = ((long)n * HW + p) * C + c0;
            prefetch_ahead(inp + off, cn, C);
#pragma omp simd
            for (int j = 0; j < cn; j++)
                out[off + j] = inp[off + j] * hs[j];
        }
    }
}

void ofa_se_scale(float *out, const float *inp, const float *g, int N, int HW, int C)
{
    OFA_ASSERT(N >= 1 && HW >= 1 && C >= 1);
#pragma omp parallel for schedule(static) if ((long)N * HW * C >= PAR_MIN)
    for (long r = 0; r < (long)N * HW; r++) {
        const float *gr = g + r / HW * C;
#pragma omp simd
        for (int c = 0; c < C; c++)
            out[r * C + c] = inp[r * C + c] * gr[c];
    }
}

size_t ofa_se_scratch_size(int N, int C, int R)
{
    return 2 * (size_t)N * (size_t)C + 2 * (size_t)N * (size_t)R;
}

/* dout, inp [N,HW,C]; caches pooled [N,C], hidden [N,R], gate [N,C] ->
 * dinp [N,HW,C] (+= when accumulate, else overwritten), dw1 [R][ld1], db1
 * [R], dw2 [C][ld2], db2 [C] (+=). scratch: ofa_se_scratch_size(N, C, R)
 * floats. */
void ofa_se_backward(float *dinp, int accumulate, float *dw1, float *db1, float *dw2, float *db2,
                     float *scratch, const float *dout, const float *inp,
                     const float *pooled, const float *hidden, const float *gate,
                     const float *w1, int ld1, const float *w2, int ld2,
                     int N, int HW, int C, int R)
{
    OFA_ASSERT(N >= 1 && HW >= 1 && C >= 1 && R >= 1);
    OFA_ASSERT(ld1 >= C && ld2 >= R);
    float *dgate = scratch;                 /* [N,C] */
    float *dpool = dgate + (long)N * C;     /* [N,C] */
    float *hr = dpool + (long)N * C;        /* [N,R] relu(hidden) */
    float *dh = hr + (long)N * R;           /* [N,R] */

    /* dgate = hsigmoid'(gate) * sum_hw dout * inp */
    int nb = (C + CB - 1) / CB;
    long ntask = (long)N * nb;
#pragma omp parallel for schedule(static) if ((long)N * HW * C >= PAR_MIN)
    for (long t = 0; t < ntask; t++) {
        int n = (int)(t / nb), c0 = (int)(t % nb) * CB;
        int cn = C - c0 < CB ? C - c0 : CB;
        double s[CB] = {0};
        float f[CB];
        for (int p0 = 0; p0 < HW; p0 += SUM_GROUP) { /* groups of pixels in float */
            const int p1 = HW - p0 < SUM_GROUP ? HW : p0 + SUM_GROUP;
            for (int j = 0; j < cn; j++)
                f[j] = 0.0f;
            for (int p = p0; p < p1; p++) {
                long off = ((long)n * HW + p) * C + c0;
                prefetch_ahead(dout + off, cn, C);
                prefetch_ahead(inp + off, cn, C);
#pragma omp simd
                for (int j = 0; j < cn; j++)
                    f[j] += dout[off + j] * inp[off + j];
            }
#pragma omp simd
            for (int j = 0; j < cn; j++)
                s[j] += f[j];
        }
#pragma omp simd
        for (int j = 0; j < cn; j++) { /* hsigmoid' = 1/6 on (-3, 3); no && (a branch) */
            long i = (long)n * C + c0 + j;
            dgate[i] = fabsf(gate[i]) < 3.0f ? (float)(s[j] / 6.0) : 0.0f;
        }
    }

    for (long i = 0; i < (long)N * R; i++)
        hr[i] = hidden[i] > 0.0f ? hidden[i] : 0.0f;
    /* dw2 += dgate^T relu(hidden), db2 += sum_n dgate */
    ofa_gemm(1, 0, C, R, N, 1.0f, dgate, C, hr, R, 1.0f, dw2, ld2);
    for (int c = 0; c < C; c++) {
        float s = 0.0f;
        for (int n = 0; n < N; n++)
            s += dgate[(long)n * C + c];
        db2[c] += s;
    }
    /* dh = (dgate w2) * relu'(hidden); dh and dpool are zeroed first so that
     * stale NaNs in the scratch cannot leak through a beta = 0 product. */
    for (long i = 0; i < (long)N * R; i++)
        dh[i] = 0.0f;
    for (long i = 0; i < (long)N * C; i++)
        dpool[i] = 0.0f;
    ofa_gemm(0, 0, N, R, C, 1.0f, dgate, C, w2, ld2, 0.0f, dh, R);
#pragma omp simd
    for (long i = 0; i < (long)N * R; i++)
        dh[i] = hidden[i] > 0.0f ? dh[i] : 0.0f;
    /* dw1 += dh^T pooled, db1 += sum_n dh, dpool = dh w1 */
    ofa_gemm(1, 0, R, C, N, 1.0f, dh, R, pooled, C, 1.0f, dw1, ld1);
    for (int r = 0; r < R; r++) {
        float s = 0.0f;
        for (int n = 0; n < N; n++)
            s += dh[(long)n * R + r];
        db1[r] += s;
    }
    ofa_gemm(0, 0, N, C, R, 1.0f, dh, R, w1, ld1, 0.0f, dpool, C);

    /* dinp (+)= dout * hsigmoid(gate) + dpool / HW */
    float inv = 1.0f / (float)HW;
#pragma omp parallel for schedule(static) if ((long)N * HW * C >= PAR_MIN)
    for (long t = 0; t < ntask; t++) {
        int n = (int)(t / nb), c0 = (int)(t % nb) * CB;
        int cn = C - c0 < CB ? C - c0 : CB;
        float hs[CB], dp[CB];
#pragma omp simd
        for (int j = 0; j < cn; j++) {
            hs[j] = ofa_act_value(OFA_ACT_HSIGMOID, gate[(long)n * C + c0 + j]);
            dp[j] = dpool[(long)n * C + c0 + j] * inv;
        }
        for (int p = 0; p < HW; p++) {
            long off = ((long)n * HW + p) * C + c0;
            prefetch_ahead(dout + off, cn, C);
#pragma omp simd
            for (int j = 0; j < cn; j++) {
                const float v = dout[off + j] * hs[j] + dp[j];
                dinp[off + j] = accumulate ? dinp[off + j] + v : v;
            }
        }
    }
}
