#include <config.h>
/* ops_norm.c: batch normalisation over the M rows of [M,C] activations with
 * elastic width (the first C entries of full-size parameter vectors). Channel
 * sums are accumulated in double over row chunks fixed by (M, C), then reduced
 * in chunk order: results do not depend on the thread count. (Both the
 * statistics and the backward's sums add groups of 16 rows in float first:
 * block_stats, SUM_ROWS.) Partial sums use ~200 KB of the calling thread's
 * stack instead of scratch. */

#include "ops.h"
#include "ops_vec.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>


/* Row chunk k of nk holds rows [M k / nk, M (k+1) / nk). Per-chunk partial
 * sums of a block of cw channels live in fixed stack arrays of PART doubles
 * (no scratch): cw <= MAXCW and nk * cw <= PART. The plan depends on M and C
 * only, so one parallel region per block (usually one block in all) and a
 * chunk-order reduction give thread-count independent results. */
enum { PART = 8192, MAXCW = 2048, MAXCHUNK = 64, CHUNK_ROWS = 256, STAT_GROUP = 16 };

/* Channel block width and chunk count for [M,C]. */
static void plan(long M, int C, int *cw, int *nk)
{
    int w = C < MAXCW ? C : MAXCW;
    long k = M / CHUNK_ROWS;
    if (k > MAXCHUNK)
        k = MAXCHUNK;
    if (k > PART / w)
        k = PART / w;
    *cw = w;
    *nk = k < 1 ? 1 : (int)k;
}

/* inp [M,C], channels [c0, c0+cn), cn <= MAXCW -> mean [cn], biased var [cn].
 * Sums of x - x[0,c] (a shift by a sample) keep E[d^2] - E[d]^2 accurate
 * when |mean| >> std. Groups of STAT_GROUP rows are summed in float (16-wide
 * vectors, against 8-wide ones and conversions in double), their sums then
 * added in double: a group's rounding error is that of 16 terms. The
 * statistics of the largest subnet's training step, one thread: 41 -> 31
 * ms (Zen 4). */
static void block_stats(double *mean, double *var, const float *inp, long M, int C,
                        int c0, int cn, int nk)
{
    double ps[PART], pq[PART];
    float shift[MAXCW];
    for (int j = 0; j < cn; j++)
        shift[j] = inp[c0 + j];
#pragma omp parallel for schedule(static) if (M >= 2 * CHUNK_ROWS)
    for (int k = 0; k < nk; k++) {
        long r0 = M * k / nk, r1 = M * (k + 1) / nk;
        double *s = ps + (long)k * cn, *q = pq + (long)k * cn;
        for (int j = 0; j < cn; j++)
            s[j] = q[j] = 0;
        float fs[MAXCW], fq[MAXCW];
        for (long g = r0; g < r1; g += STAT_GROUP) {
            const long g1 = r1 - g < STAT_GROUP ? r1 : g + STAT_GROUP;
            for (int j = 0; j < cn; j++)
                fs[j] = fq[j] = 0;
            for (long m = g; m < g1; m++) {
                const float *x = inp + m * C + c0;
                prefetch_ahead(x, cn, C);
#pragma omp simd
                for (int j = 0; j < cn; j++) {
                    const float d = x[j] - shift[j];
                    fs[j] += d;
                    fq[j] += d * d;
                }
            }
#pragma omp simd
            for (int j = 0; j < cn; j++) {
                s[j] += fs[j];
                q[j] += fq[j];
            }
        }
    }
    for (int j = 0; j < cn; j++) {
        double s = 0, q = 0;
        for (int k = 0; k < nk; k++) {
            s += ps[(long)k * cn + j];
            q += pq[(long)k * cn + j];
        }
        double dm = s / (double)M;
        double v = q / (double)M - dm * dm;
        mean[j] = (double)shift[j] + dm;
        var[j] = v > 0 ? v : 0;
    }
}

/* The BN output y = (x - mean) * a + b with a = rstd * gamma and b = beta:
 * the forward computes it with this function and the backward recomputes it
 * from x with the same one, so that training stores act(y) but not y. One
 * expression, inlined, gets the same bits in both (an FMA in both or in
 * neither); check_ops_misc compares the backward with one that reads the
 * forward's y, bit for bit. */
ALWAYS_INLINE float bn_value(float x, float mu, float a, float b)
{
    return (x - mu) * a + b;
}

/* The gradient at the BN output of row x: dout itself, or act'(y) dout
 * (ofa_act_grad) when an activation follows, y recomputed with bn_value. */
ALWAYS_INLINE float bn_out_grad(enum ofa_act act, const float *g, const float *x,
                                const float *mu, const float *ya, const float *yb, int j)
{
    return act == OFA_ACT_NONE ? g[j]
                               : ofa_act_grad(act, bn_value(x[j], mu[j], ya[j], yb[j]), g[j]);
}

/* The per-channel a and b of bn_value for channels [c0, c0+cn): a = rstd *
 * gamma, rstd = 1 / sqrt(var + eps) when rstd is NULL; b = beta. The forward
 * and the backward both take them from here. */
static void value_coefs(float *ya, float *yb, const float *rstd, const float *var, float eps,
                        const float *gamma, const float *beta, int c0, int cn)
{
    for (int j = 0; j < cn; j++) {
        const int c = c0 + j;
        const float r = rstd ? rstd[c] : 1.0f / sqrtf(var[c] + eps);
        ya[j] = r * gamma[c];
        yb[j] = beta[c];
    }
}

/* Rows [r0, r1) of block_grad_sums for the constant activation A, in groups
 * of STAT_GROUP rows summed in float (as block_stats), the groups' sums
 * added in double. */
#define SUM_ROWS(A)                                                                    \
    for (long g0 = r0; g0 < r1; g0 += STAT_GROUP) {                                    \
        const long g1 = r1 - g0 < STAT_GROUP ? r1 : g0 + STAT_GROUP;                   \
        for (int j = 0; j < cn; j++)                                                   \
            fs[j] = fq[j] = 0;                                                         \
        for (long m = g0; m < g1; m++) {                                               \
            const float *x = inp + m * C + c0;                                         \
            const float *g = dout + m * C + c0;                                        \
            prefetch_ahead(x, cn, C);                                                  \
            prefetch_ahead(g, cn, C);                                                  \
            _Pragma("omp simd")                                                        \
            for (int j = 0; j < cn; j++) {                                             \
                const float d = bn_out_grad((A), g, x, mu, ya, yb, j);                 \
                fs[j] += d;                                                            \
                fq[j] += d * (x[j] - mu[j]);                                           \
            }                                                                          \
        }                                                                              \
        _Pragma("omp simd")                                                            \
        for (int j = 0; j < cn; j++) {                                                 \
            s[j] += fs[j];                                                             \
            q[j] += fq[j];                                                             \
        }                                                                              \
    }

/* dout, inp [M,C], channels [c0, c0+cn) -> s1 = sum_m d, s2 = sum_m d * (x - mean),
 * d = bn_out_grad with the block's coefficients ya, yb [cn]. */
static void block_grad_sums(double *s1, double *s2, const float *dout, const float *inp,
                            const float *mean, const float *ya, const float *yb, long M, int C,
                            int c0, int cn, int nk, enum ofa_act act)
{
    double ps[PART], pq[PART];
#pragma omp parallel for schedule(static) if (M >= 2 * CHUNK_ROWS)
    for (int k = 0; k < nk; k++) {
        long r0 = M * k / nk, r1 = M * (k + 1) / nk;
        double *s = ps + (long)k * cn, *q = pq + (long)k * cn;
        const float *mu = mean + c0;
        float fs[MAXCW], fq[MAXCW];
        for (int j = 0; j < cn; j++)
            s[j] = q[j] = 0;
        switch (act) { /* outside the loops: OpenMP outlines this region */
        case OFA_ACT_NONE: SUM_ROWS(OFA_ACT_NONE); break;
        case OFA_ACT_RELU: SUM_ROWS(OFA_ACT_RELU); break;
        case OFA_ACT_HSWISH: SUM_ROWS(OFA_ACT_HSWISH); break;
        case OFA_ACT_HSIGMOID: SUM_ROWS(OFA_ACT_HSIGMOID); break;
        default: OFA_ASSERT(!"unknown activation");
        }
    }
    for (int j = 0; j < cn; j++) {
        double s = 0, q = 0;
        for (int k = 0; k < nk; k++) {
            s += ps[(long)k * cn + j];
            q += pq[(long)k * cn + j];
        }
        s1[j] = s;
        s2[j] = q;
    }
}

/* The rows of normalise, shared among the threads, for the constant
 * activation A: y = BN(x) stored when WY (plus res when ADD), z = act(y)
 * when WZ. */
#define NORM_ROWS(A, WY, WZ, ADD)                                                      \
    _Pragma("omp for schedule(static) nowait")                                         \
    for (long m = 0; m < M; m++) {                                                     \
        const float *x = inp + m * C + c0, *rr = (ADD) ? res + m * C + c0 : NULL;      \
        float *yr = (WY) ? y + m * C + c0 : NULL, *zr = (WZ) ? z + m * C + c0 : NULL;  \
        prefetch_ahead(x, cn, C);                                                      \
        if (ADD)                                                                       \
            prefetch_ahead(rr, cn, C);                                                 \
        _Pragma("omp simd")                                                            \
        for (int j = 0; j < cn; j++) {                                                 \
            const float v = (ADD) ? bn_value(x[j], mu[j], a[j], b[j]) + rr[j]          \
                                  : bn_value(x[j], mu[j], a[j], b[j]);                 \
            if (WY)                                                                    \
                yr[j] = v;                                                             \
            if (WZ)                                                                    \
                zr[j] = ofa_act_value((A), v);                                         \
        }                                                                              \
    }

/* inp [M,C] -> y = (x - mean) * rstd * gamma + beta (when y is not NULL) and
 * z = act(y) (when act is not OFA_ACT_NONE; z is then required), with rstd =
 * 1 / sqrt(var + eps) when rstd is NULL; y or z may be inp. With res [M,C]
 * (OFA_ACT_NONE only), y = that + res. Each thread keeps its own copy of the
 * per-channel coefficients so rows are swept contiguously. */
static void normalise(float *y, float *z, enum ofa_act act, const float *inp, const float *mean,
                      const float *rstd, const float *var, float eps, const float *gamma,
                      const float *beta, const float *res, long M, int C)
{
    OFA_ASSERT(act == OFA_ACT_NONE ? y != NULL : z != NULL);
    OFA_ASSERT(res == NULL || act == OFA_ACT_NONE);
    /* the case: the activation, and whether y is stored too (or res added) */
    const int k = act == OFA_ACT_NONE ? (res ? -1 : 0) : (int)act * 2 - (y != NULL);
#pragma omp parallel if (M * C >= 32768)
    {
        float mu[MAXCW], a[MAXCW], b[MAXCW];
        for (int c0 = 0; c0 < C; c0 += MAXCW) {
            int cn = C - c0 < MAXCW ? C - c0 : MAXCW;
            for (int j = 0; j < cn; j++)
                mu[j] = mean[c0 + j];
            value_coefs(a, b, rstd, var, eps, gamma, beta, c0, cn);
            switch (k) { /* inside: OpenMP outlines this region */
            case -1: NORM_ROWS(OFA_ACT_NONE, 1, 0, 1); break;
            case 0: NORM_ROWS(OFA_ACT_NONE, 1, 0, 0); break;
            case 2 * OFA_ACT_RELU - 1: NORM_ROWS(OFA_ACT_RELU, 1, 1, 0); break;
            case 2 * OFA_ACT_RELU: NORM_ROWS(OFA_ACT_RELU, 0, 1, 0); break;
            case 2 * OFA_ACT_HSWISH - 1: NORM_ROWS(OFA_ACT_HSWISH, 1, 1, 0); break;
            case 2 * OFA_ACT_HSWISH: NORM_ROWS(OFA_ACT_HSWISH, 0, 1, 0); break;
            case 2 * OFA_ACT_HSIGMOID - 1: NORM_ROWS(OFA_ACT_HSIGMOID, 1, 1, 0); break;
            case 2 * OFA_ACT_HSIGMOID: NORM_ROWS(OFA_ACT_HSIGMOID, 0, 1, 0); break;
            default: OFA_ASSERT(!"unknown activation");
            }
        }
    }
}

/* Channel c's batch mean m and biased variance v of M rows -> mean[c],
 * rstd[c] and the running averages (when run_mean). */
static void set_stats(float *mean, float *rstd, float *run_mean, float *run_var, int c, double m,
                      double v, long M, float momentum, float eps)
{
    mean[c] = (float)m;
    rstd[c] = (float)(1.0 / sqrt(v + (double)eps));
    if (run_mean) {
        float unbiased = (float)(v * (double)M / (double)(M - 1));
        run_mean[c] = (1.0f - momentum) * run_mean[c] + momentum * (float)m;
        run_var[c] = (1.0f - momentum) * run_var[c] + momentum * unbiased;
    }
}

static void check_train_args(const float *run_mean, const float *run_var, long M, int C)
{
    OFA_ASSERT(M >= 1 && C >= 1);
    OFA_ASSERT((run_mean == NULL) == (run_var == NULL));
    /* The unbiased variance needs two rows (PyTorch refuses one value per channel). */
    OFA_ASSERT(run_var == NULL || M >= 2);
}

void ofa_bn_act_forward_train(float *y, float *z, float *mean, float *rstd, float *run_mean,
                              float *run_var, const float *inp, const float *gamma,
                              const float *beta, long M, int C, float momentum, float eps,
                              enum ofa_act act, const float *res)
{
    check_train_args(run_mean, run_var, M, C);
    int cw, nk;
    plan(M, C, &cw, &nk);
    for (int c0 = 0; c0 < C; c0 += cw) {
        int cn = C - c0 < cw ? C - c0 : cw;
        double bm[MAXCW], bv[MAXCW];
        block_stats(bm, bv, inp, M, C, c0, cn, nk);
        for (int j = 0; j < cn; j++)
            set_stats(mean, rstd, run_mean, run_var, c0 + j, bm[j], bv[j], M, momentum, eps);
    }
    normalise(y, z, act, inp, mean, rstd, NULL, 0.0f, gamma, beta, res, M, C);
}

void ofa_bn_act_forward_train_given(float *y, float *z, float *mean, float *rstd,
                                    float *run_mean, float *run_var, const float *inp,
                                    const float *gamma, const float *beta, long M, int C,
                                    float momentum, float eps, enum ofa_act act,
                                    const float *res)
{
    check_train_args(run_mean, run_var, M, C);
    for (int c = 0; c < C; c++)
        set_stats(mean, rstd, run_mean, run_var, c, mean[c], rstd[c], M, momentum, eps);
    if (y || z)
        normalise(y, z, act, inp, mean, rstd, NULL, 0.0f, gamma, beta, res, M, C);
}

/* inp [M,C] -> out [M,C], mean [C], rstd [C]; gamma, beta, run_mean, run_var [>= C]. */
void ofa_bn_forward_train(float *out, float *mean, float *rstd, float *run_mean,
                          float *run_var, const float *inp, const float *gamma,
                          const float *beta, long M, int C, float momentum, float eps)
{
    ofa_bn_act_forward_train(out, NULL, mean, rstd, run_mean, run_var, inp, gamma, beta, M, C,
                             momentum, eps, OFA_ACT_NONE, NULL);
}

/* inp [M,C] -> out [M,C] (out == inp allowed); parameters and statistics [>= C]. */
void ofa_bn_forward_eval(float *out, const float *inp, const float *gamma,
                         const float *beta, const float *run_mean, const float *run_var,
                         long M, int C, float eps)
{
    ofa_bn_act_forward_eval(out, inp, gamma, beta, run_mean, run_var, M, C, eps, OFA_ACT_NONE,
                            NULL);
}

void ofa_bn_act_forward_eval(float *out, const float *inp, const float *gamma,
                             const float *beta, const float *run_mean, const float *run_var,
                             long M, int C, float eps, enum ofa_act act, const float *res)
{
    OFA_ASSERT(M >= 0 && C >= 1);
    if (act == OFA_ACT_NONE)
        normalise(out, NULL, act, inp, run_mean, NULL, run_var, eps, gamma, beta, res, M, C);
    else
        normalise(NULL, out, act, inp, run_mean, NULL, run_var, eps, gamma, beta, res, M, C);
}

/* inp [M,C] -> mean [C], biased var [C]. */
void ofa_bn_batch_stats(float *mean, float *var, const float *inp, long M, int C)
{
    OFA_ASSERT(M >= 1 && C >= 1);
    int cw, nk;
    plan(M, C, &cw, &nk);
    for (int c0 = 0; c0 < C; c0 += cw) {
        int cn = C - c0 < cw ? C - c0 : cw;
        double bm[MAXCW], bv[MAXCW];
        block_stats(bm, bv, inp, M, C, c0, cn, nk);
        for (int j = 0; j < cn; j++) {
            mean[c0 + j] = (float)bm[j];
            var[c0 + j] = (float)bv[j];
        }
    }
}

/* Rows of the input gradient for the constant activation A. */
#define GRAD_ROWS(A)                                                                   \
    for (long m = 0; m < n; m++) {                                                     \
        const float *x = inp + m * C, *g = dout + m * C;                               \
        float *d = dinp + m * ldd;                                                     \
        prefetch_ahead(x, C, C);                                                       \
        prefetch_ahead(g, C, C);                                                       \
        _Pragma("omp simd")                                                            \
        for (int j = 0; j < C; j++) {                                                  \
            float v = a[j] * bn_out_grad((A), g, x, mu, ya, yb, j) + b[j] +             \
                      k[j] * (x[j] - mu[j]);                                           \
            d[j] = accumulate ? d[j] + v : v;                                          \
        }                                                                              \
    }

/* With xhat = (x - mean) * rstd and d the gradient at the BN output
 * (bn_out_grad):
 *   dinp = gamma * rstd * (d - mean(d) - xhat * mean(d * xhat)),
 * that is dinp = a d + b + k (x - mean) per channel once the two sums are
 * known. */
void ofa_bn_grad_prepare(struct ofa_bn_grad *bg, float *dgamma, float *dbeta, const float *dout,
                         const float *inp, const float *mean, const float *rstd,
                         const float *gamma, const float *beta, long M, int C, enum ofa_act act)
{
    OFA_ASSERT(M >= 1 && C >= 1);
    OFA_ASSERT(act == OFA_ACT_NONE || beta);
    float *coef = ofa_xmalloc(ofa_mul_size((size_t)C, 6 * sizeof *coef),
                              "BN backward coefficients");
    *bg = (struct ofa_bn_grad){C,           act,         coef,        coef + C,
                               coef + 2 * C, coef + 3 * C, coef + 4 * C, coef + 5 * C};
    int cw, nk;
    plan(M, C, &cw, &nk);
    for (int c0 = 0; c0 < C; c0 += cw) {
        int cn = C - c0 < cw ? C - c0 : cw;
        if (act != OFA_ACT_NONE)
            value_coefs(bg->ya + c0, bg->yb + c0, rstd, NULL, 0.0f, gamma, beta, c0, cn);
        double s1[MAXCW], s2[MAXCW];
        block_grad_sums(s1, s2, dout, inp, mean, bg->ya + c0, bg->yb + c0, M, C, c0, cn, nk,
                        act);
        for (int j = 0; j < cn; j++) {
            int c = c0 + j;
            double r = rstd[c];
            dbeta[c] += (float)s1[j];
            dgamma[c] += (float)(s2[j] * r);
            double ga = (double)gamma[c] * r;
            bg->mu[c] = mean[c];
            bg->a[c] = (float)ga;
            bg->b[c] = (float)(-ga * s1[j] / (double)M);
            bg->k[c] = (float)(-ga * r * r * s2[j] / (double)M);
        }
    }
}

void ofa_bn_grad_rows(const struct ofa_bn_grad *bg, float *dinp, long ldd, int accumulate,
                      const float *dout, const float *inp, long n)
{
    const int C = bg->C;
    const float *mu = bg->mu, *a = bg->a, *b = bg->b, *k = bg->k, *ya = bg->ya, *yb = bg->yb;
    switch (bg->act) {
    case OFA_ACT_NONE: GRAD_ROWS(OFA_ACT_NONE); break;
    case OFA_ACT_RELU: GRAD_ROWS(OFA_ACT_RELU); break;
    case OFA_ACT_HSWISH: GRAD_ROWS(OFA_ACT_HSWISH); break;
    case OFA_ACT_HSIGMOID: GRAD_ROWS(OFA_ACT_HSIGMOID); break;
    default: OFA_ASSERT(!"unknown activation");
    }
}

void ofa_bn_grad_free(struct ofa_bn_grad *bg)
{
    free(bg->mu);
    bg->mu = NULL;
}

void ofa_bn_grad_apply(const struct ofa_bn_grad *bg, float *dinp, int accumulate,
                       const float *dout, const float *inp, long M)
{
    enum { ROWS = 64 };
    const int C = bg->C;
#pragma omp parallel for schedule(static) if (M * C >= 32768)
    for (long r = 0; r < M; r += ROWS) {
        const size_t o = (size_t)r * C;
        ofa_bn_grad_rows(bg, dinp + o, C, accumulate, dout + o, inp + o,
                         M - r < ROWS ? M - r : ROWS);
    }
}

/* dout, inp [M,C]; mean, rstd [C]; gamma, beta [>= C] (beta read only with
 * an activation) -> dinp [M,C] (+= when accumulate, else =), dgamma, dbeta
 * [C] (+=). */
static void bn_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                        const float *inp, const float *mean, const float *rstd,
                        const float *gamma, const float *beta, long M, int C, enum ofa_act act,
                        int accumulate)
{
    struct ofa_bn_grad bg;
    ofa_bn_grad_prepare(&bg, dgamma, dbeta, dout, inp, mean, rstd, gamma, beta, M, C, act);
    ofa_bn_grad_apply(&bg, dinp, accumulate, dout, inp, M);
    ofa_bn_grad_free(&bg);
}

void ofa_bn_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                     const float *inp, const float *mean, const float *rstd,
                     const float *gamma, long M, int C)
{
    bn_backward(dinp, dgamma, dbeta, dout, inp, mean, rstd, gamma, NULL, M, C, OFA_ACT_NONE, 1);
}

void ofa_bn_act_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                         const float *inp, const float *mean, const float *rstd,
                         const float *gamma, const float *beta, long M, int C,
                         enum ofa_act act)
{
    bn_backward(dinp, dgamma, dbeta, dout, inp, mean, rstd, gamma, beta, M, C, act, 0);
}
