#include <config.h>
/* check_ops_conv.c: GEMM, dense/pointwise/linear convolutions, the elastic
 * depthwise kernel and the depthwise convolution. Each optimised op is compared
 * with a naive reference written here, every backward with central finite
 * differences, and the depthwise op is checked for thread-count determinism.
 */

#include "ops.h"
#include "testutil.h"
#include "util.h"

#include <check.h>
#include <float.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* All ops here are linear in each of their inputs taken separately (the
 * kernel transformation is linear in w7, m75 and m53 one at a time), so
 * central differences have no truncation error: what remains is the float
 * rounding of the forward (~1e-7 relative per output) divided by the step,
 * an nmse of 1e-10..1e-9 in practice. 1e-6 leaves a 1000x margin and still
 * catches a 1% error on a single channel; a wrong index or a missing tap
 * scores 1e-2..1. */
#define FD_STEP 1e-2f
#define FD_TOL 1e-6
/* Optimised vs reference forward: float vs double accumulation only. */
#define REF_TOL 1e-10

static const unsigned long SEED = 20240611UL;

/* Every activation, for the tests of fused activations. */
static const enum ofa_act acts[] = {OFA_ACT_NONE, OFA_ACT_RELU, OFA_ACT_HSWISH,
                                    OFA_ACT_HSIGMOID};

static double *dzeros(long n)
{
    return ofa_xcalloc((size_t)n, sizeof(double), "test data");
}

static float *to_float(const double *x, long n)
{
    float *y = ofa_xmalloc((size_t)n * sizeof *y, "test data");
    for (long i = 0; i < n; i++)
        y[i] = (float)x[i];
    return y;
}

/* n NaNs: a gradient buffer that an overwriting backward must not read. */
static float *nans(long n)
{
    float *y = ofa_xmalloc((size_t)n * sizeof *y, "test data");
    for (long i = 0; i < n; i++)
        y[i] = NAN;
    return y;
}

static int is_zero(const float *x, long n)
{
    for (long i = 0; i < n; i++)
        if (x[i] != 0.0f)
            return 0;
    return 1;
}

/* Numerical gradient of f w.r.t. x [n], compared with analytic [n]. */
static void check_fd(const char *what, tu_loss_fn f, void *ctx, float *x, long n,
                     const float *analytic)
{
    float *num = tu_zeros(n);
    tu_numgrad(f, ctx, x, n, FD_STEP, num);
    double e = tu_nmse(analytic, num, n);
    ck_assert_msg(e < FD_TOL, "%s: finite-difference nmse %g", what, e);
    free(num);
}

/* ---- References (naive loops, double accumulation) ----------------------- */

static float at4(const float *x, int H, int W, int C, int n, int y, int xx, int c)
{
    return x[(((long)n * H + y) * W + xx) * C + c];
}

/* C [M x N] = alpha op(A) op(B) + beta C. */
static void ref_gemm(int tA, int tB, int M, int N, int K, float alpha, const float *A,
                     int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int p = 0; p < K; p++) {
                double a = tA ? A[(long)p * lda + i] : A[(long)i * lda + p];
                double b = tB ? B[(long)j * ldb + p] : B[(long)p * ldb + j];
                s += a * b;
            }
            C[(long)i * ldc + j] = (float)(alpha * s + beta * C[(long)i * ldc + j]);
        }
}

/* inp [N,H,W,Cin], w [Cout][K][K][Cin] -> out [N,Ho,Wo,Cout]. */
static void ref_conv2d(float *out, const float *inp, const float *w, int N, int H, int W,
                       int Cin, int Cout, int K, int s, int p)
{
    int Ho = (H + 2 * p - K) / s + 1, Wo = (W + 2 * p - K) / s + 1;
    for (int n = 0; n < N; n++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Wo; ox++)
                for (int co = 0; co < Cout; co++) {
                    double acc = 0;
                    for (int ky = 0; ky < K; ky++)
                        for (int kx = 0; kx < K; kx++)
                            for (int ci = 0; ci < Cin; ci++) {
                                int y = oy * s - p + ky, x = ox * s - p + kx;
                                if (y < 0 || y >= H || x < 0 || x >= W)
                                    continue;
                                acc += (double)at4(inp, H, W, Cin, n, y, x, ci) *
                                       w[(((long)co * K + ky) * K + kx) * Cin + ci];
                            }
                    out[(((long)n * Ho + oy) * Wo + ox) * Cout + co] = (float)acc;
                }
}

/* Gradients of ref_conv2d: dinp [N,H,W,Cin], dw [Cout][K][K][Cin] (double, +=). */
static void ref_conv2d_backward(double *dinp, double *dw, const float *dout,
                                const float *inp, const float *w, int N, int H, int W,
                                int Cin, int Cout, int K, int s, int p)
{
    int Ho = (H + 2 * p - K) / s + 1, Wo = (W + 2 * p - K) / s + 1;
    for (int n = 0; n < N; n++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Wo; ox++)
                for (int co = 0; co < Cout; co++) {
                    double g = dout[(((long)n * Ho + oy) * Wo + ox) * Cout + co];
                    for (int ky = 0; ky < K; ky++)
                        for (int kx = 0; kx < K; kx++)
                            for (int ci = 0; ci < Cin; ci++) {
                                int y = oy * s - p + ky, x = ox * s - p + kx;
                                if (y < 0 || y >= H || x < 0 || x >= W)
                                    continue;
                                long iw = (((long)co * K + ky) * K + kx) * Cin + ci;
                                long ii = (((long)n * H + y) * W + x) * Cin + ci;
                                dinp[ii] += g * w[iw];
                                dw[iw] += g * inp[ii];
                            }
                }
}

/* inp [M,Cin], w [Cout][ldw], b [Cout] or NULL -> out [M,Cout]. */
static void ref_dense(float *out, const float *inp, const float *w, int ldw, const float *b,
                      long M, int Cin, int Cout)
{
    for (long m = 0; m < M; m++)
        for (int o = 0; o < Cout; o++) {
            double acc = b ? b[o] : 0.0;
            for (int i = 0; i < Cin; i++)
                acc += (double)inp[m * Cin + i] * w[(long)o * ldw + i];
            out[m * Cout + o] = (float)acc;
        }
}

/* w7 [7][7][Cmax] -> k [K][K][C], straight from the definition in ops.h. */
static void ref_dwkernel(float *k, const float *w7, const float *m75, const float *m53,
                         int K, int C, int Cmax, int transform)
{
    for (int c = 0; c < C; c++) {
        double k5[25];
        for (int i = 0; i < 25; i++) {
            double acc = 0;
            for (int j = 0; j < 25; j++)
                acc += (double)m75[i * 25 + j] * w7[((j / 5 + 1) * 7 + j % 5 + 1) * Cmax + c];
            k5[i] = (float)acc; /* the op stores k5 in float */
        }
        for (int i = 0; i < K * K; i++) {
            int ky = i / K, kx = i % K, o = (7 - K) / 2;
            double v;
            if (K == 7 || !transform) {
                v = w7[((ky + o) * 7 + kx + o) * Cmax + c];
            } else if (K == 5) {
                v = k5[i];
            } else {
                v = 0;
                for (int j = 0; j < 9; j++)
                    v += (double)m53[i * 9 + j] * k5[(j / 3 + 1) * 5 + j % 3 + 1];
            }
            k[(long)i * C + c] = (float)v;
        }
    }
}

/* inp [N,H,W,C], k [K][K][C] -> out [N,Ho,Wo,C], padding K/2. */
static void ref_dwconv(float *out, const float *inp, const float *k, int N, int H, int W,
                       int C, int K, int s)
{
    int p = K / 2, Ho = (H - 1) / s + 1, Wo = (W - 1) / s + 1;
    for (int n = 0; n < N; n++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Wo; ox++)
                for (int c = 0; c < C; c++) {
                    double acc = 0;
                    for (int ky = 0; ky < K; ky++)
                        for (int kx = 0; kx < K; kx++) {
                            int y = oy * s - p + ky, x = ox * s - p + kx;
                            if (y < 0 || y >= H || x < 0 || x >= W)
                                continue;
                            acc += (double)at4(inp, H, W, C, n, y, x, c) *
                                   k[((long)ky * K + kx) * C + c];
                        }
                    out[(((long)n * Ho + oy) * Wo + ox) * C + c] = (float)acc;
                }
}

/* Gradients of ref_dwconv: dinp [N,H,W,C], dk [K][K][C] (double, +=). */
static void ref_dwconv_backward(double *dinp, double *dk, const float *dout,
                                const float *inp, const float *k, int N, int H, int W,
                                int C, int K, int s)
{
    int p = K / 2, Ho = (H - 1) / s + 1, Wo = (W - 1) / s + 1;
    for (int n = 0; n < N; n++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Wo; ox++)
                for (int c = 0; c < C; c++) {
                    double g = dout[(((long)n * Ho + oy) * Wo + ox) * C + c];
                    for (int ky = 0; ky < K; ky++)
                        for (int kx = 0; kx < K; kx++) {
                            int y = oy * s - p + ky, x = ox * s - p + kx;
                            if (y < 0 || y >= H || x < 0 || x >= W)
                                continue;
                            long ik = ((long)ky * K + kx) * C + c;
                            long ii = (((long)n * H + y) * W + x) * C + c;
                            dinp[ii] += g * k[ik];
                            dk[ik] += g * inp[ii];
                        }
                }
}

/* ---- Loss closures for the finite-difference checks ----------------------- */

struct conv_ctx {
    int N, H, W, Cin, Cout, K, s, p;
    float *inp, *w, *out, *col;
    const float *r;
    long nout;
};

static double conv_loss(void *ctx)
{
    struct conv_ctx *c = ctx;
    ofa_conv2d_forward(c->out, c->col, c->inp, c->w, c->N, c->H, c->W, c->Cin, c->Cout,
                       c->K, c->s, c->p);
    return tu_dot(c->out, c->r, c->nout);
}

struct dense_ctx {
    long M;
    int Cin, Cout, ldw;
    float *inp, *w, *b, *out; /* b == NULL: pointwise conv, else linear */
    const float *r;
};

static double dense_loss(void *ctx)
{
    struct dense_ctx *c = ctx;
    if (c->b)
        ofa_linear_forward(c->out, c->inp, c->w, c->ldw, c->b, (int)c->M, c->Cin, c->Cout);
    else
        ofa_pwconv_forward(c->out, c->inp, c->w, c->ldw, c->M, c->Cin, c->Cout);
    return tu_dot(c->out, c->r, c->M * c->Cout);
}

struct dwk_ctx {
    int K, C, Cmax, transform;
    float *w7, *m75, *m53, *k, *k5;
    const float *r;
};

static double dwk_loss(void *ctx)
{
    struct dwk_ctx *c = ctx;
    ofa_dwkernel_forward(c->k, c->k5, c->w7, c->m75, c->m53, c->K, c->C, c->Cmax,
                         c->transform);
    return tu_dot(c->k, c->r, (long)c->K * c->K * c->C);
}

struct dw_ctx {
    int N, H, W, C, K, s;
    float *inp, *k, *out;
    const float *r;
    long nout;
    struct dwk_ctx *kernel; /* when not NULL, k is first made from it */
};

static double dw_loss(void *ctx)
{
    struct dw_ctx *c = ctx;
    if (c->kernel) {
        struct dwk_ctx *q = c->kernel;
        ofa_dwkernel_forward(q->k, q->k5, q->w7, q->m75, q->m53, q->K, q->C, q->Cmax,
                             q->transform);
    }
    ofa_dwconv_forward(c->out, c->inp, c->k, c->N, c->H, c->W, c->C, c->K, c->s);
    return tu_dot(c->out, c->r, c->nout);
}

/* ---- GEMM ------------------------------------------------------------------ */

START_TEST(test_gemm_matches_reference_all_transposes)
{
    tu_threads(2);
    const int M = 13, N = 7, K = 9, pad = 3;
    for (int tA = 0; tA < 2; tA++)
        for (int tB = 0; tB < 2; tB++) {
            int lda = (tA ? M : K) + pad, ldb = (tB ? K : N) + pad, ldc = N + pad;
            float *A = tu_rand((long)(tA ? K : M) * lda, 1, SEED, 1);
            float *B = tu_rand((long)(tB ? N : K) * ldb, 1, SEED, 2);
            float *C = tu_rand((long)M * ldc, 1, SEED, 3);
            float *Cref = tu_copy(C, (long)M * ldc);
            ofa_gemm(tA, tB, M, N, K, 0.5f, A, lda, B, ldb, 2.0f, C, ldc);
            ref_gemm(tA, tB, M, N, K, 0.5f, A, lda, B, ldb, 2.0f, Cref, ldc);
            double e = tu_nmse(C, Cref, (long)M * ldc);
            ck_assert_msg(e < REF_TOL, "gemm tA=%d tB=%d nmse %g", tA, tB, e);
            free(A);
            free(B);
            free(C);
            free(Cref);
        }
}
END_TEST

/* Tall GEMMs are split over the threads: by rows of C (A not transposed,
 * M > 256 a thread), or by slices of the sum (A transposed, K > 256 a
 * thread, the weight gradients). Still right at 1 and 2 threads, with
 * strides and beta, and the same bits from one call to the next. */
START_TEST(test_gemm_split_matches_reference)
{
    const int tall = 1031, pad = 5;
    for (int threads = 1; threads <= 2; threads++)
        for (int tA = 0; tA < 2; tA++)
            for (int tB = 0; tB < 2; tB++) {
                const int M = tA ? 37 : tall, N = 23, K = tA ? tall : 29;
                int lda = (tA ? M : K) + pad, ldb = (tB ? K : N) + pad, ldc = N + pad;
                float *A = tu_rand((long)(tA ? K : M) * lda, 1, SEED, 4);
                float *B = tu_rand((long)(tB ? N : K) * ldb, 1, SEED, 5);
                float *C1 = tu_rand((long)M * ldc, 1, SEED, 6);
                float *C2 = tu_copy(C1, (long)M * ldc), *Cref = tu_copy(C1, (long)M * ldc);
                tu_threads(threads);
                ofa_gemm(tA, tB, M, N, K, 0.5f, A, lda, B, ldb, 2.0f, C1, ldc);
                ofa_gemm(tA, tB, M, N, K, 0.5f, A, lda, B, ldb, 2.0f, C2, ldc);
                ref_gemm(tA, tB, M, N, K, 0.5f, A, lda, B, ldb, 2.0f, Cref, ldc);
                double e = tu_nmse(C1, Cref, (long)M * ldc);
                ck_assert_msg(e < REF_TOL, "tall gemm, %d threads, tA=%d tB=%d: nmse %g",
                              threads, tA, tB, e);
                ck_assert_msg(memcmp(C1, C2, (size_t)M * ldc * sizeof *C1) == 0,
                              "tall gemm, %d threads, tA=%d tB=%d: two calls differ", threads,
                              tA, tB);
                free(A);
                free(B);
                free(C1);
                free(C2);
                free(Cref);
            }
}
END_TEST

/* ---- Dense KxK convolution -------------------------------------------------- */

struct conv_shape {
    int N, H, W, Cin, Cout, K, s, p;
};

static const struct conv_shape conv_shapes[] = {
    {1, 9, 7, 3, 5, 3, 2, 1},  {3, 13, 13, 4, 8, 3, 1, 1}, {2, 7, 9, 3, 6, 5, 2, 2},
    {1, 8, 8, 3, 16, 3, 2, 1}, {2, 7, 7, 2, 3, 3, 1, 0},   {1, 5, 6, 3, 4, 7, 1, 3},
};

START_TEST(test_conv2d_forward_matches_reference)
{
    tu_threads(2);
    for (size_t t = 0; t < sizeof conv_shapes / sizeof *conv_shapes; t++) {
        struct conv_shape z = conv_shapes[t];
        int Ho = ofa_conv_out_size(z.H, z.K, z.s, z.p), Wo = ofa_conv_out_size(z.W, z.K, z.s, z.p);
        long nin = (long)z.N * z.H * z.W * z.Cin, nw = (long)z.Cout * z.K * z.K * z.Cin;
        long nout = (long)z.N * Ho * Wo * z.Cout;
        size_t ncol = ofa_conv2d_col_size(z.N, z.H, z.W, z.Cin, z.K, z.s, z.p);
        ck_assert_uint_eq(ncol, (size_t)z.N * Ho * Wo * z.K * z.K * z.Cin);
        float *inp = tu_rand(nin, 1, SEED, 10 + t), *w = tu_rand(nw, 1, SEED, 20 + t);
        float *out = tu_zeros(nout), *ref = tu_zeros(nout), *col = tu_zeros((long)ncol);
        ofa_conv2d_forward(out, col, inp, w, z.N, z.H, z.W, z.Cin, z.Cout, z.K, z.s, z.p);
        ref_conv2d(ref, inp, w, z.N, z.H, z.W, z.Cin, z.Cout, z.K, z.s, z.p);
        double e = tu_nmse(out, ref, nout);
        ck_assert_msg(e < REF_TOL, "conv2d shape %zu nmse %g", t, e);
        free(inp);
        free(w);
        free(out);
        free(ref);
        free(col);
    }
}
END_TEST

/* ofa_conv2d_forward_packed (inference) where it goes without im2col
 * (ofa_conv2d_direct: grey and RGB stems, stride 1 and 2, rows longer than
 * its pixel blocks, partial panels, the valid window of pad 0) gives the
 * same floats as im2col + ofa_pwconv_forward_packed, at 1 and 2 threads, and
 * the bias may be NULL; conv_shapes' reductions over 32 take im2col. */
START_TEST(test_conv2d_packed_direct_equals_im2col)
{
    static const struct conv_shape direct[] = {
        {3, 20, 20, 1, 16, 3, 1, 1}, {2, 23, 19, 1, 9, 3, 2, 1}, {2, 11, 17, 3, 33, 3, 1, 1},
        {1, 12, 10, 1, 20, 5, 2, 2}, {2, 9, 14, 3, 7, 3, 1, 0},
    };
    const size_t nd = sizeof direct / sizeof *direct, nc = sizeof conv_shapes / sizeof *conv_shapes;
    for (size_t t = 0; t < nd + nc; t++) {
        const struct conv_shape z = t < nd ? direct[t] : conv_shapes[t - nd];
        const int kkc = z.K * z.K * z.Cin;
        ck_assert_int_eq(ofa_conv2d_direct(z.Cin, z.K), kkc <= 32);
        if (t < nd)
            ck_assert(ofa_conv2d_direct(z.Cin, z.K));
        const int Ho = ofa_conv_out_size(z.H, z.K, z.s, z.p);
        const int Wo = ofa_conv_out_size(z.W, z.K, z.s, z.p);
        const long nin = (long)z.N * z.H * z.W * z.Cin, M = (long)z.N * Ho * Wo;
        const long nout = M * z.Cout;
        float *inp = tu_rand(nin, 1, SEED, 200 + t), *w = tu_rand((long)z.Cout * kkc, 1, SEED,
                                                                    210 + t);
        float *b = tu_rand(z.Cout, 1, SEED, 220 + t);
        float *wp = nans((long)ofa_pw_packed_size(kkc, z.Cout));
        ofa_pw_pack(wp, w, kkc, kkc, z.Cout);
        float *col = tu_zeros((long)ofa_conv2d_col_size(z.N, z.H, z.W, z.Cin, z.K, z.s, z.p));
        float *tmp = tu_zeros(nout), *want = tu_zeros(nout), *got = nans(nout);
        ofa_conv2d_forward(tmp, col, inp, w, z.N, z.H, z.W, z.Cin, z.Cout, z.K, z.s, z.p);
        /* each activation (chosen once a run inside the row), then no bias at all */
        static const enum ofa_act acts_direct[] = {OFA_ACT_HSWISH, OFA_ACT_RELU, OFA_ACT_HSIGMOID,
                                                   OFA_ACT_NONE, OFA_ACT_NONE};
        for (int a = 0; a < 5; a++) {
            const enum ofa_act act = acts_direct[a];
            const float *bb = a < 4 ? b : NULL;
            tu_threads(1);
            ofa_pwconv_forward_packed(want, col, wp, bb, act, M, kkc, z.Cout);
            for (int th = 1; th <= 2; th++) {
                tu_threads(th);
                ofa_conv2d_forward_packed(got, t < nd ? NULL : col, inp, wp, bb, act, z.N, z.H,
                                          z.W, z.Cin, z.Cout, z.K, z.s, z.p);
                for (long i = 0; i < nout; i++)
                    ck_assert_msg(got[i] == want[i], "shape %zu case %d, %d threads: output %ld "
                                  "is %a, im2col's %a", t, a, th, i, (double)got[i],
                                  (double)want[i]);
            }
        }
        free(inp), free(w), free(b), free(wp), free(col), free(tmp), free(want), free(got);
    }
}
END_TEST

START_TEST(test_conv2d_backward_matches_reference_and_fd)
{
    tu_threads(2);
    for (size_t t = 0; t < sizeof conv_shapes / sizeof *conv_shapes; t++) {
        struct conv_shape z = conv_shapes[t];
        int Ho = ofa_conv_out_size(z.H, z.K, z.s, z.p), Wo = ofa_conv_out_size(z.W, z.K, z.s, z.p);
        long nin = (long)z.N * z.H * z.W * z.Cin, nw = (long)z.Cout * z.K * z.K * z.Cin;
        long nout = (long)z.N * Ho * Wo * z.Cout;
        long ncol = (long)ofa_conv2d_col_size(z.N, z.H, z.W, z.Cin, z.K, z.s, z.p);
        float *inp = tu_rand(nin, 1, SEED, 30 + t), *w = tu_rand(nw, 1, SEED, 40 + t);
        float *r = tu_rand(nout, 1, SEED, 50 + t);
        float *out = tu_zeros(nout), *col = tu_zeros(ncol), *dcol = tu_zeros(ncol);
        float *dinp = tu_zeros(nin), *dw = tu_zeros(nw), *dw2 = tu_zeros(nw);
        ofa_conv2d_forward(out, col, inp, w, z.N, z.H, z.W, z.Cin, z.Cout, z.K, z.s, z.p);
        ofa_conv2d_backward(dinp, dw, dcol, r, col, w, z.N, z.H, z.W, z.Cin, z.Cout, z.K,
                            z.s, z.p);
        /* Without an input gradient the weight gradient is unchanged. */
        ofa_conv2d_backward(NULL, dw2, NULL, r, col, w, z.N, z.H, z.W, z.Cin, z.Cout, z.K,
                            z.s, z.p);
        ck_assert_msg(tu_nmse(dw2, dw, nw) < 1e-12, "conv2d dinp=NULL changes dw");

        double *rdi = dzeros(nin), *rdw = dzeros(nw);
        ref_conv2d_backward(rdi, rdw, r, inp, w, z.N, z.H, z.W, z.Cin, z.Cout, z.K, z.s, z.p);
        float *fdi = to_float(rdi, nin), *fdw = to_float(rdw, nw);
        ck_assert_msg(tu_nmse(dinp, fdi, nin) < REF_TOL, "conv2d shape %zu dinp vs ref", t);
        ck_assert_msg(tu_nmse(dw, fdw, nw) < REF_TOL, "conv2d shape %zu dw vs ref", t);

        struct conv_ctx c = {z.N, z.H, z.W, z.Cin, z.Cout, z.K, z.s, z.p,
                             inp, w, out, col, r, nout};
        check_fd("conv2d dinp", conv_loss, &c, inp, nin, dinp);
        check_fd("conv2d dw", conv_loss, &c, w, nw, dw);
        free(inp);
        free(w);
        free(r);
        free(out);
        free(col);
        free(dcol);
        free(dinp);
        free(dw);
        free(dw2);
        free(rdi);
        free(rdw);
        free(fdi);
        free(fdw);
    }
}
END_TEST

/* ---- Pointwise convolution and linear layer ------------------------------- */

struct dense_shape {
    long M;
    int Cin, Cout, ldw, Coutmax;
};

/* Elastic slices (Cin < ldw, Cout < Coutmax) and full-size ones. */
static const struct dense_shape dense_shapes[] = {
    {37, 7, 5, 12, 9}, {1, 12, 9, 12, 9}, {3, 5, 11, 16, 16}, {64, 16, 24, 24, 40},
    {600, 8, 12, 16, 16}, /* rows enough for ofa_gemm to split them over 2 threads */
};

START_TEST(test_pwconv_elastic_slice_matches_reference)
{
    tu_threads(2);
    for (size_t t = 0; t < sizeof dense_shapes / sizeof *dense_shapes; t++) {
        struct dense_shape z = dense_shapes[t];
        long nw = (long)z.Coutmax * z.ldw;
        float *inp = tu_rand(z.M * z.Cin, 1, SEED, 60 + t), *w = tu_rand(nw, 1, SEED, 70 + t);
        float *b = tu_rand(z.Coutmax, 1, SEED, 80 + t);
        float *out = tu_zeros(z.M * z.Cout), *ref = tu_zeros(z.M * z.Cout);
        ofa_pwconv_forward(out, inp, w, z.ldw, z.M, z.Cin, z.Cout);
        ref_dense(ref, inp, w, z.ldw, NULL, z.M, z.Cin, z.Cout);
        ck_assert_msg(tu_nmse(out, ref, z.M * z.Cout) < REF_TOL, "pwconv shape %zu", t);
        ofa_linear_forward(out, inp, w, z.ldw, b, (int)z.M, z.Cin, z.Cout);
        ref_dense(ref, inp, w, z.ldw, b, z.M, z.Cin, z.Cout);
        ck_assert_msg(tu_nmse(out, ref, z.M * z.Cout) < REF_TOL, "linear shape %zu", t);
        free(inp);
        free(w);
        free(b);
        free(out);
        free(ref);
    }
}
END_TEST

/* ofa_pwconv_forward_packed (inference): act(inp w^T + b) from weights
 * packed out of a wider [Cout][ldw] table. Shapes cover 1 to many row
 * blocks with each row tail, one or two panels of a pair, partial last
 * panels, row chunks, and layers large enough to share among threads. */
static const struct dense_shape packed_shapes[] = {
    {1, 1, 1, 1, 1},       {1, 40, 10, 40, 10},    {3, 7, 17, 9, 17},
    {4, 96, 40, 96, 40},   {13, 24, 33, 30, 40},   {25, 16, 48, 16, 48},
    {49, 120, 40, 120, 40}, {196, 40, 240, 44, 240}, {700, 24, 72, 24, 72},
};

/* One packed forward of shape z with act, on nthreads threads, or (inside)
 * from within a parallel region of nthreads threads, each computing the
 * whole output into its own buffer; returns thread 0's. The region may get
 * fewer threads than asked for (OMP_DYNAMIC, OMP_THREAD_LIMIT): only the
 * buffers of the threads that ran are compared. */
static float *packed_run(const struct dense_shape *z, const float *inp, const float *wp,
                         const float *b, enum ofa_act act, int nthreads, int inside)
{
    tu_threads(nthreads);
    const long n = z->M * z->Cout;
    float *out = nans(n * nthreads);
    if (inside) {
        int ran = 1;
#pragma omp parallel num_threads(nthreads)
        {
            int t = 0;
#ifdef _OPENMP
            t = omp_get_thread_num();
#pragma omp single
            ran = omp_get_num_threads();
#endif
            ofa_pwconv_forward_packed(out + t * n, inp, wp, b, act, z->M, z->Cin, z->Cout);
        }
        for (int t = 1; t < ran; t++)
            for (long i = 0; i < n; i++)
                ck_assert_msg(memcmp(out + i, out + t * n + i, sizeof *out) == 0,
                              "inside a region of %d threads: thread %d's output %ld is %a, "
                              "thread 0's %a", ran, t, i, (double)out[t * n + i],
                              (double)out[i]);
    } else {
        ofa_pwconv_forward_packed(out, inp, wp, b, act, z->M, z->Cin, z->Cout);
    }
    return out;
}

START_TEST(test_pwconv_packed_matches_reference_and_threads)
{
    const int P = ofa_pw_panel();
    ck_assert(P >= 1);
    for (size_t t = 0; t < sizeof packed_shapes / sizeof *packed_shapes; t++) {
        const struct dense_shape z = packed_shapes[t];
        const long n = z.M * z.Cout;
        float *inp = tu_rand(z.M * z.Cin, 1, SEED, 90 + t);
        float *w = tu_rand((long)z.Coutmax * z.ldw, 1, SEED, 100 + t);
        float *b = tu_rand(z.Cout, 1, SEED, 110 + t);
        const size_t np = ofa_pw_packed_size(z.Cin, z.Cout);
        ck_assert_uint_eq(np, (size_t)((z.Cout + P - 1) / P) * P * z.Cin);
        float *wp = nans((long)np);
        ofa_pw_pack(wp, w, z.ldw, z.Cin, z.Cout);
        float *ref = tu_zeros(n);
        ref_dense(ref, inp, w, z.ldw, b, z.M, z.Cin, z.Cout);
        for (size_t a = 0; a < sizeof acts / sizeof *acts; a++) {
            float *want = tu_zeros(n);
            for (long i = 0; i < n; i++)
                want[i] = ofa_act_value(acts[a], ref[i]);
            float *one = packed_run(&z, inp, wp, b, acts[a], 1, 0);
            ck_assert_msg(tu_nmse(one, want, n) < REF_TOL, "shape %zu act %d", t, (int)acts[a]);
            float *two = packed_run(&z, inp, wp, b, acts[a], 2, 0);
            float *in2 = packed_run(&z, inp, wp, b, acts[a], 2, 1);
            ck_assert_msg(memcmp(one, two, (size_t)n * sizeof *one) == 0,
                          "shape %zu: 1 and 2 threads differ", t);
            ck_assert_msg(memcmp(one, in2, (size_t)n * sizeof *one) == 0,
                          "shape %zu: inside a parallel region differs", t);
            /* with a residual: the same floats as adding it after */
            float *res = tu_rand(n, 1, SEED, 120 + t), *sum = nans(n);
            tu_threads(2);
            ofa_pwconv_forward_packed_res(sum, inp, wp, b, acts[a], res, z.M, z.Cin, z.Cout);
            for (long i = 0; i < n; i++)
                ck_assert_msg(sum[i] == one[i] + res[i], "shape %zu act %d: output %ld with "
                              "the residual is %a, %a after", t, (int)acts[a], i,
                              (double)sum[i], (double)(one[i] + res[i]));
            free(res);
            free(sum);
            free(want);
            free(one);
            free(two);
            free(in2);
        }
        free(inp);
        free(w);
        free(b);
        free(wp);
        free(ref);
    }
}
END_TEST

/* ofa_pwconv_forward_stats (training): inp w^T as the reference gives it,
 * and the columns' mean and biased variance of that output as a two-pass
 * sum in double gives them (tu_col_stats), to 1e-6 of the standard
 * deviation and of the variance, with inputs about 100 (outputs whose mean
 * is some hundred standard deviations: a one-pass variance without its shift
 * fails). The same bits at 1 and 2 threads, and into an output a float off
 * 64-byte alignment, where the largest shape (8 MiB of output, whole
 * vectors) otherwise stores past the caches. Shapes: one row, row tails,
 * one and two panels of a pair, partial panels, several chunks. */
static const struct dense_shape stats_shapes[] = {
    {1, 3, 5, 4, 8},       {2, 1, 1, 1, 1},        {13, 24, 33, 30, 40},
    {49, 120, 40, 120, 40}, {700, 24, 72, 24, 72}, {2051, 16, 96, 16, 96},
    {32771, 8, 64, 8, 64},
};

START_TEST(test_pwconv_forward_stats_matches_reference_and_threads)
{
    for (size_t t = 0; t < sizeof stats_shapes / sizeof *stats_shapes; t++) {
        const struct dense_shape z = stats_shapes[t];
        const long n = z.M * z.Cout;
        float *inp = tu_rand(z.M * z.Cin, 1, SEED, 130 + t);
        for (long i = 0; i < z.M * z.Cin; i++)
            inp[i] += 100.0f;
        float *w = tu_rand((long)z.Coutmax * z.ldw, 1, SEED, 140 + t);
        float *ref = tu_zeros(n);
        ref_dense(ref, inp, w, z.ldw, NULL, z.M, z.Cin, z.Cout);
        /* 64-byte aligned buffers with a float to spare: out and out + 1 */
        const size_t bytes = ((size_t)n + 1 + 15) / 16 * 64;
        float *al[3];
        for (int b = 0; b < 3; b++) {
            al[b] = aligned_alloc(64, bytes);
            ck_assert(al[b] != NULL);
        }
        float m1[128], v1[128], m2[128], v2[128], m3[128], v3[128];
        double dm[128], dv[128];
        ck_assert(z.Cout <= 128);
        tu_threads(1);
        ofa_pwconv_forward_stats(al[0], m1, v1, inp, w, z.ldw, z.M, z.Cin, z.Cout);
        ck_assert_msg(tu_nmse(al[0], ref, n) < REF_TOL, "shape %zu: output", t);
        tu_col_stats(dm, dv, al[0], z.M, z.Cout);
        for (int c = 0; c < z.Cout; c++) {
            const double sd = sqrt(dv[c]);
            /* the float mean's own rounding (6e-8 of it) allowed besides */
            ck_assert_msg(fabs(m1[c] - dm[c]) <= 1e-6 * sd + 1e-7 * fabs(dm[c]),
                          "shape %zu channel %d: mean %.9g, two-pass %.9g (sd %g)", t, c,
                          (double)m1[c], dm[c], sd);
            ck_assert_msg(fabs(v1[c] - dv[c]) <= 1e-6 * dv[c] + 1e-14 * dm[c] * dm[c],
                          "shape %zu channel %d: variance %.9g, two-pass %.9g", t, c,
                          (double)v1[c], dv[c]);
        }
        tu_threads(2);
        ofa_pwconv_forward_stats(al[1], m2, v2, inp, w, z.ldw, z.M, z.Cin, z.Cout);
        ofa_pwconv_forward_stats(al[2] + 1, m3, v3, inp, w, z.ldw, z.M, z.Cin, z.Cout);
        ck_assert_msg(memcmp(al[0], al[1], (size_t)n * sizeof *ref) == 0,
                      "shape %zu: 1 and 2 threads differ", t);
        ck_assert_msg(memcmp(al[0], al[2] + 1, (size_t)n * sizeof *ref) == 0,
                      "shape %zu: an unaligned output differs", t);
        ck_assert(memcmp(m1, m2, z.Cout * sizeof *m1) == 0);
        ck_assert(memcmp(v1, v2, z.Cout * sizeof *v1) == 0);
        ck_assert(memcmp(m1, m3, z.Cout * sizeof *m1) == 0);
        ck_assert(memcmp(v1, v3, z.Cout * sizeof *v1) == 0);
        for (int b = 0; b < 3; b++)
            free(al[b]);
        free(inp);
        free(w);
        free(ref);
    }
}
END_TEST

/* The dense backward FD check, pointwise (linear == 0) or linear. */
static void check_dense_backward(int linear)
{
    for (size_t t = 0; t < sizeof dense_shapes / sizeof *dense_shapes; t++) {
        struct dense_shape z = dense_shapes[t];
        long nw = (long)z.Coutmax * z.ldw, nin = z.M * z.Cin, nout = z.M * z.Cout;
        float *inp = tu_rand(nin, 1, SEED, 90 + t), *w = tu_rand(nw, 1, SEED, 100 + t);
        float *b = tu_rand(z.Coutmax, 1, SEED, 110 + t), *r = tu_rand(nout, 1, SEED, 120 + t);
        float *out = tu_zeros(nout), *dinp = tu_zeros(nin), *dw = tu_zeros(nw);
        float *db = tu_zeros(z.Coutmax), *dw2 = tu_zeros(nw), *db2 = tu_zeros(z.Coutmax);
        if (linear) {
            ofa_linear_backward(dinp, dw, db, r, inp, w, z.ldw, (int)z.M, z.Cin, z.Cout);
            ofa_linear_backward(NULL, dw2, db2, r, inp, w, z.ldw, (int)z.M, z.Cin, z.Cout);
            ck_assert_msg(tu_nmse(db2, db, z.Coutmax) < 1e-12, "linear dinp=NULL changes db");
        } else {
            ofa_pwconv_backward(dinp, 1, dw, r, inp, w, z.ldw, z.M, z.Cin, z.Cout);
            ofa_pwconv_backward(NULL, 1, dw2, r, inp, w, z.ldw, z.M, z.Cin, z.Cout);
            /* accumulate = 0 overwrites every element with what += adds to zeros */
            float *dset = nans(nin), *dw3 = tu_zeros(nw);
            ofa_pwconv_backward(dset, 0, dw3, r, inp, w, z.ldw, z.M, z.Cin, z.Cout);
            ck_assert_msg(memcmp(dinp, dset, (size_t)nin * sizeof *dinp) == 0,
                          "pwconv shape %zu: overwriting differs from adding to zeros", t);
            free(dset);
            free(dw3);
        }
        ck_assert_msg(tu_nmse(dw2, dw, nw) < 1e-12, "dinp=NULL changes dw");
        /* Rows >= Cout and columns >= Cin of the stored matrix get no gradient. */
        for (int o = 0; o < z.Coutmax; o++)
            for (int i = 0; i < z.ldw; i++)
                if (o >= z.Cout || i >= z.Cin)
                    ck_assert_msg(dw[(long)o * z.ldw + i] == 0.0f,
                                  "gradient outside the active slice at (%d,%d)", o, i);
        ck_assert(is_zero(db + z.Cout, z.Coutmax - z.Cout));

        struct dense_ctx c = {z.M, z.Cin, z.Cout, z.ldw, inp, w, linear ? b : NULL, out, r};
        check_fd(linear ? "linear dinp" : "pwconv dinp", dense_loss, &c, inp, nin, dinp);
        check_fd(linear ? "linear dw" : "pwconv dw", dense_loss, &c, w, nw, dw);
        if (linear)
            check_fd("linear db", dense_loss, &c, b, z.Coutmax, db);
        free(inp);
        free(w);
        free(b);
        free(r);
        free(out);
        free(dinp);
        free(dw);
        free(db);
        free(dw2);
        free(db2);
    }
}

START_TEST(test_pwconv_backward_matches_fd)
{
    tu_threads(2);
    check_dense_backward(0);
}
END_TEST

/* Enough rows for ofa_pwconv_backward to go in several row blocks: few
 * channels (12 -> 20), blocks of 1024 rows with a short last one, and at 2
 * threads a slice a thread; many (150 -> 230), blocks of 96 rows; 40 -> 37,
 * every block shape of the weight gradient's kernel (pairs of column vectors
 * and single ones, whole and partial, against 24, 12, 4, 2 and 1 rows). The
 * input gradient (overwritten and added to) and the weight gradient (added
 * to) against the double-precision reference; the same bits from one call
 * to the next and with or without the input gradient; no gradient outside
 * the active slice of the stored weights. */
START_TEST(test_pwconv_backward_blocked_matches_reference)
{
    static const struct {
        long M;
        int Cin, Cout;
    } shapes[] = {{4133, 12, 20}, {1001, 150, 230}, {777, 40, 39}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const long M = shapes[si].M;
        const int Cin = shapes[si].Cin, ldw = Cin + 2, Cout = shapes[si].Cout,
                  Coutmax = Cout + 2;
        const long nin = M * Cin, nout = M * Cout, nw = (long)Coutmax * ldw;
        float *inp = tu_rand(nin, 1, SEED, 130), *dout = tu_rand(nout, 1, SEED, 131);
        float *w = tu_rand(nw, 1, SEED, 132), *dw0 = tu_rand(nw, 1, SEED, 133);
        float *din0 = tu_rand(nin, 1, SEED, 134);
        float *dinref = tu_copy(din0, nin), *dwref = tu_copy(dw0, nw);
        ref_gemm(0, 0, (int)M, Cin, Cout, 1.0f, dout, Cout, w, ldw, 1.0f, dinref, Cin);
        ref_gemm(1, 0, Cout, Cin, (int)M, 1.0f, dout, Cout, inp, Cin, 1.0f, dwref, ldw);
        for (int threads = 1; threads <= 2; threads++)
            for (int accumulate = 0; accumulate < 2; accumulate++) {
                tu_threads(threads);
                float *din = accumulate ? tu_copy(din0, nin) : nans(nin);
                float *din2 = accumulate ? tu_copy(din0, nin) : nans(nin);
                float *dw = tu_copy(dw0, nw), *dw2 = tu_copy(dw0, nw), *dw3 = tu_copy(dw0, nw);
                ofa_pwconv_backward(din, accumulate, dw, dout, inp, w, ldw, M, Cin, Cout);
                ofa_pwconv_backward(din2, accumulate, dw2, dout, inp, w, ldw, M, Cin, Cout);
                ofa_pwconv_backward(NULL, accumulate, dw3, dout, inp, w, ldw, M, Cin, Cout);
                ck_assert_msg(memcmp(din, din2, (size_t)nin * sizeof *din) == 0,
                              "pwconv backward %ldx%d->%d, %d threads: dinp differs between "
                              "calls",
                              M, Cin, Cout, threads);
                if (!accumulate) /* the reference added to din0: take it off again */
                    for (long i = 0; i < nin; i++)
                        din[i] += din0[i];
                double ei = tu_nmse(din, dinref, nin), ew = tu_nmse(dw, dwref, nw);
                ck_assert_msg(ei < REF_TOL && ew < REF_TOL,
                              "pwconv backward %ldx%d->%d, %d threads, accumulate %d: nmse "
                              "dinp %g, dw %g",
                              M, Cin, Cout, threads, accumulate, ei, ew);
                ck_assert_msg(memcmp(dw, dw2, (size_t)nw * sizeof *dw) == 0 &&
                                  memcmp(dw, dw3, (size_t)nw * sizeof *dw) == 0,
                              "pwconv backward %ldx%d->%d, %d threads: dw differs between "
                              "calls or without dinp",
                              M, Cin, Cout, threads);
                for (int o = 0; o < Coutmax; o++)
                    for (int i = 0; i < ldw; i++)
                        if (o >= Cout || i >= Cin)
                            ck_assert_msg(dw[(long)o * ldw + i] == dw0[(long)o * ldw + i],
                                          "gradient outside the active slice at (%d,%d)", o,
                                          i);
                free(din);
                free(din2);
                free(dw);
                free(dw2);
                free(dw3);
            }
        free(inp);
        free(dout);
        free(w);
        free(dw0);
        free(din0);
        free(dinref);
        free(dwref);
    }
}
END_TEST

/* ofa_pwconv_backward_bn against ofa_bn_act_backward then
 * ofa_pwconv_backward, bit for bit (dinp, dw, dgamma, dbeta): in row blocks
 * (4133 rows of 12 -> 20 channels) and whole (37 rows; 300 of 40 -> 400),
 * every activation, 1 and 2 threads, the input gradient added to, set or
 * not wanted. */
START_TEST(test_pwconv_backward_bn_equals_composition)
{
    static const struct {
        long M;
        int Cin, Cout;
    } shapes[] = {{4133, 12, 20}, {37, 5, 7}, {300, 40, 400}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const long M = shapes[si].M;
        const int Cin = shapes[si].Cin, Cout = shapes[si].Cout, ldw = Cin + 3;
        const long nin = M * Cin, nout = M * Cout, nw = (long)Cout * ldw;
        float *inp = tu_rand(nin, 1, SEED, 150 + si), *y = tu_rand(nout, 2, SEED, 151 + si);
        float *dz = tu_rand(nout, 1, SEED, 152 + si), *w = tu_rand(nw, 1, SEED, 153 + si);
        float *gamma = tu_rand(Cout, 1, SEED, 154 + si), *beta = tu_rand(Cout, 1, SEED, 155 + si);
        float *mean = tu_rand(Cout, 1, SEED, 156 + si), *rstd = tu_rand(Cout, 1, SEED, 157 + si);
        float *din0 = tu_rand(nin, 1, SEED, 158 + si), *scratch = tu_zeros(nout);
        float *dy = tu_zeros(nout);
        for (int c = 0; c < Cout; c++)
            rstd[c] = 0.5f + rstd[c] * rstd[c];
        for (int threads = 1; threads <= 2; threads++)
            for (size_t a = 0; a < sizeof acts / sizeof *acts; a++)
                for (int mode = 0; mode < 3; mode++) { /* dinp added to, set, NULL */
                    tu_threads(threads);
                    float *di1 = tu_copy(din0, nin), *di2 = tu_copy(din0, nin);
                    float *dw1 = tu_zeros(nw), *dw2 = tu_zeros(nw);
                    float *dg1 = tu_zeros(Cout), *db1 = tu_zeros(Cout);
                    float *dg2 = tu_zeros(Cout), *db2 = tu_zeros(Cout);
                    ofa_bn_act_backward(dy, dg1, db1, dz, y, mean, rstd, gamma, beta, M, Cout,
                                        acts[a]);
                    ofa_pwconv_backward(mode == 2 ? NULL : di1, mode == 0, dw1, dy, inp, w,
                                        ldw, M, Cin, Cout);
                    struct ofa_bn_grad bg;
                    ofa_bn_grad_prepare(&bg, dg2, db2, dz, y, mean, rstd, gamma, beta, M, Cout,
                                        acts[a]);
                    ofa_pwconv_backward_bn(mode == 2 ? NULL : di2, mode == 0, dw2, scratch, &bg,
                                           dz, y, inp, w, ldw, M, Cin, Cout);
                    ofa_bn_grad_free(&bg);
                    ck_assert_msg(memcmp(di1, di2, (size_t)nin * sizeof *di1) == 0 &&
                                      memcmp(dw1, dw2, (size_t)nw * sizeof *dw1) == 0 &&
                                      memcmp(dg1, dg2, (size_t)Cout * sizeof *dg1) == 0 &&
                                      memcmp(db1, db2, (size_t)Cout * sizeof *db1) == 0,
                                  "shape %zu, %d threads, act %d, mode %d: fused BN and "
                                  "pointwise backward differs",
                                  si, threads, (int)acts[a], mode);
                    float *ptrs[] = {di1, di2, dw1, dw2, dg1, db1, dg2, db2};
                    for (size_t i = 0; i < sizeof ptrs / sizeof *ptrs; i++)
                        free(ptrs[i]);
                }
        float *ptrs[] = {inp, y, dz, w, gamma, beta, mean, rstd, din0, scratch, dy};
        for (size_t i = 0; i < sizeof ptrs / sizeof *ptrs; i++)
            free(ptrs[i]);
    }
}
END_TEST

START_TEST(test_linear_backward_matches_fd)
{
    tu_threads(2);
    check_dense_backward(1);
}
END_TEST

/* ---- Elastic depthwise kernel ---------------------------------------------- */

START_TEST(test_dwkernel_forward_matches_reference)
{
    tu_threads(2);
    const int Cmax = 13;
    float *w7 = tu_rand(49L * Cmax, 1, SEED, 130), *m75 = tu_rand(625, 0.3f, SEED, 131);
    float *m53 = tu_rand(81, 0.4f, SEED, 132);
    for (int K = 3; K <= 7; K += 2)
        for (int transform = 0; transform < 2; transform++)
            for (int C = 5; C <= Cmax; C += Cmax - 5) {
                float *k = tu_zeros(49L * C), *ref = tu_zeros(49L * C), *k5 = tu_zeros(25L * C);
                ofa_dwkernel_forward(k, k5, w7, m75, m53, K, C, Cmax, transform);
                ref_dwkernel(ref, w7, m75, m53, K, C, Cmax, transform);
                double e = tu_nmse(k, ref, (long)K * K * C);
                ck_assert_msg(e < REF_TOL, "dwkernel K=%d transform=%d C=%d nmse %g", K,
                              transform, C, e);
                free(k);
                free(ref);
                free(k5);
            }
    free(w7);
    free(m75);
    free(m53);
}
END_TEST

START_TEST(test_dwkernel_backward_matches_fd)
{
    tu_threads(2);
    const int Cmax = 7, C = 5;
    for (int K = 3; K <= 7; K += 2)
        for (int transform = 0; transform < 2; transform++) {
            unsigned long tag = 140 + 10 * K + transform;
            float *w7 = tu_rand(49L * Cmax, 1, SEED, tag), *m75 = tu_rand(625, 0.3f, SEED, tag + 1);
            float *m53 = tu_rand(81, 0.4f, SEED, tag + 2);
            long nk = (long)K * K * C;
            float *r = tu_rand(nk, 1, SEED, tag + 3);
            float *k = tu_zeros(nk), *k5 = tu_zeros(25L * C), *dk5 = tu_zeros(25L * C);
            float *dw7 = tu_zeros(49L * Cmax), *dm75 = tu_zeros(625), *dm53 = tu_zeros(81);
            ofa_dwkernel_forward(k, k5, w7, m75, m53, K, C, Cmax, transform);
            /* The matrices' gradients may be NULL without the transformation. */
            ofa_dwkernel_backward(dw7, transform ? dm75 : NULL, transform ? dm53 : NULL, dk5,
                                  r, k5, w7, m75, m53, K, C, Cmax, transform);
            /* Channels >= C of the stored kernel are untouched by a narrower kernel. */
            for (int tap = 0; tap < 49; tap++)
                ck_assert_msg(is_zero(dw7 + (long)tap * Cmax + C, Cmax - C),
                              "K=%d transform=%d: gradient on inactive channels", K, transform);
            /* Taps outside the window that feeds k get none either (the 5x5
             * one when the 3x3 kernel is transformed from the 5x5). */
            int o = (7 - (transform && K == 3 ? 5 : K)) / 2;
            for (int tap = 0; tap < 49; tap++) {
                int y = tap / 7, x = tap % 7;
                if (y < o || y >= 7 - o || x < o || x >= 7 - o)
                    ck_assert(is_zero(dw7 + (long)tap * Cmax, Cmax));
            }
            /* Only the matrices actually used get a gradient. */
            if (!(transform && K < 7))
                ck_assert(is_zero(dm75, 625));
            if (!(transform && K == 3))
                ck_assert(is_zero(dm53, 81));

            struct dwk_ctx c = {K, C, Cmax, transform, w7, m75, m53, k, k5, r};
            check_fd("dwkernel dw7", dwk_loss, &c, w7, 49L * Cmax, dw7);
            if (transform && K < 7)
                check_fd("dwkernel dm75", dwk_loss, &c, m75, 625, dm75);
            if (transform && K == 3)
                check_fd("dwkernel dm53", dwk_loss, &c, m53, 81, dm53);
            free(w7);
            free(m75);
            free(m53);
            free(r);
            free(k);
            free(k5);
            free(dk5);
            free(dw7);
            free(dm75);
            free(dm53);
        }
}
END_TEST

/* ---- Depthwise convolution ------------------------------------------------ */

struct dw_shape {
    int N, H, W, C, K, s;
};

/* Odd and even sizes, C not a multiple of 8, kernels wider than the image
 * (4x4 with K = 7: kernel rows outside the image are skipped); three are
 * wider than the image-block path takes (DWB_MAXW = 256): the row path at
 * strides 1 and 2, and the direct path (5x5 at stride 2); square images of
 * 1 to 4 pixels a side at stride 1 take the small-image path (DWS_MAXH); the
 * two before the last sum the kernel gradient of groups of images in float
 * (DK_FLOAT_TERMS: 16 images of 4x4, 5 of 7x7), the last group short; the
 * last has whole channel vectors at stride 2 (the input gradient streamed). */
static const struct dw_shape dw_ref_shapes[] = {
    {1, 7, 7, 5, 3, 1},   {3, 9, 9, 13, 5, 2},    {2, 13, 11, 10, 7, 2}, {1, 13, 13, 3, 7, 1},
    {2, 8, 8, 16, 3, 2},  {1, 2, 3, 9, 7, 1},     {1, 1, 1, 4, 3, 2},    {3, 7, 7, 150, 5, 1},
    {1, 5, 5, 600, 3, 2}, {2, 14, 14, 24, 7, 2},  {1, 9, 256, 11, 7, 1}, {1, 4, 300, 9, 7, 1},
    {1, 5, 301, 12, 5, 2}, {1, 5, 261, 12, 7, 2}, {2, 4, 4, 20, 7, 1}, {3, 3, 3, 37, 5, 1},
    {2, 2, 2, 16, 7, 1},  {2, 1, 1, 17, 3, 1},    {1, 4, 4, 48, 3, 1},   {2, 3, 3, 20, 7, 1},
    {2, 16, 16, 21, 7, 2},
    {1, 15, 15, 19, 3, 2},  {37, 4, 4, 20, 7, 1},   {12, 7, 7, 21, 7, 1},  {2, 12, 12, 32, 7, 2},
    {2, 12, 12, 19, 5, 1}, /* runs of 6 (dwb_run_length) */
};

START_TEST(test_dwconv_forward_matches_reference)
{
    tu_threads(2);
    for (size_t t = 0; t < sizeof dw_ref_shapes / sizeof *dw_ref_shapes; t++) {
        struct dw_shape z = dw_ref_shapes[t];
        int Ho = (z.H - 1) / z.s + 1, Wo = (z.W - 1) / z.s + 1;
        long nin = (long)z.N * z.H * z.W * z.C, nout = (long)z.N * Ho * Wo * z.C;
        float *inp = tu_rand(nin, 1, SEED, 200 + t);
        float *k = tu_rand((long)z.K * z.K * z.C, 1, SEED, 220 + t);
        float *out = tu_zeros(nout), *ref = tu_zeros(nout);
        ofa_dwconv_forward(out, inp, k, z.N, z.H, z.W, z.C, z.K, z.s);
        ref_dwconv(ref, inp, k, z.N, z.H, z.W, z.C, z.K, z.s);
        double e = tu_nmse(out, ref, nout);
        ck_assert_msg(e < REF_TOL, "dwconv shape %zu nmse %g", t, e);
        free(inp);
        free(k);
        free(out);
        free(ref);
    }
}
END_TEST

START_TEST(test_dwconv_backward_matches_reference)
{
    tu_threads(2);
    for (size_t t = 0; t < sizeof dw_ref_shapes / sizeof *dw_ref_shapes; t++) {
        struct dw_shape z = dw_ref_shapes[t];
        int Ho = (z.H - 1) / z.s + 1, Wo = (z.W - 1) / z.s + 1;
        long nin = (long)z.N * z.H * z.W * z.C, nout = (long)z.N * Ho * Wo * z.C;
        long nk = (long)z.K * z.K * z.C;
        float *inp = tu_rand(nin, 1, SEED, 240 + t), *k = tu_rand(nk, 1, SEED, 260 + t);
        float *dout = tu_rand(nout, 1, SEED, 280 + t);
        float *dinp = tu_zeros(nin), *dk = tu_zeros(nk), *dk2 = tu_zeros(nk);
        ofa_dwconv_backward(dinp, 1, dk, dout, inp, k, z.N, z.H, z.W, z.C, z.K, z.s);
        ofa_dwconv_backward(NULL, 1, dk2, dout, inp, k, z.N, z.H, z.W, z.C, z.K, z.s);
        ck_assert_msg(memcmp(dk, dk2, (size_t)nk * sizeof *dk) == 0, "dinp=NULL changes dk");
        /* accumulate = 0 overwrites every element with what += adds to zeros:
         * into a buffer aligned to 64 bytes (at stride 2 with whole channel
         * vectors, stored past the caches) and into one that is not */
        float *dmem = nans(nin + 32);
        float *dal = (float *)(((uintptr_t)dmem + 63) & ~(uintptr_t)63);
        for (int off = 0; off < 2; off++) {
            float *dset = dal + off;
            ofa_dwconv_backward(dset, 0, dk2, dout, inp, k, z.N, z.H, z.W, z.C, z.K, z.s);
            ck_assert_msg(memcmp(dinp, dset, (size_t)nin * sizeof *dinp) == 0,
                          "dwconv shape %zu: overwriting (offset %d) differs from adding to "
                          "zeros", t, off);
        }
        free(dmem);
        double *rdi = dzeros(nin), *rdk = dzeros(nk);
        ref_dwconv_backward(rdi, rdk, dout, inp, k, z.N, z.H, z.W, z.C, z.K, z.s);
        float *fdi = to_float(rdi, nin), *fdk = to_float(rdk, nk);
        double ei = tu_nmse(dinp, fdi, nin), ek = tu_nmse(dk, fdk, nk);
        ck_assert_msg(ei < REF_TOL && ek < REF_TOL, "dwconv shape %zu: dinp %g dk %g", t, ei,
                      ek);
        free(inp);
        free(k);
        free(dout);
        free(dinp);
        free(dk);
        free(dk2);
        free(rdi);
        free(rdk);
        free(fdi);
        free(fdk);
    }
}
END_TEST

START_TEST(test_dwconv_backward_matches_fd)
{
    tu_threads(2);
    static const struct dw_shape shapes[] = {
        {2, 7, 7, 5, 3, 1}, {1, 9, 9, 3, 5, 2}, {1, 7, 7, 4, 7, 2}, {3, 6, 5, 3, 7, 1},
        {1, 9, 9, 3, 3, 2}, {2, 4, 4, 3, 7, 1}, {2, 3, 3, 17, 5, 1},
    };
    for (size_t t = 0; t < sizeof shapes / sizeof *shapes; t++) {
        struct dw_shape z = shapes[t];
        int Ho = (z.H - 1) / z.s + 1, Wo = (z.W - 1) / z.s + 1;
        long nin = (long)z.N * z.H * z.W * z.C, nout = (long)z.N * Ho * Wo * z.C;
        long nk = (long)z.K * z.K * z.C;
        float *inp = tu_rand(nin, 1, SEED, 300 + t), *k = tu_rand(nk, 1, SEED, 320 + t);
        float *r = tu_rand(nout, 1, SEED, 340 + t), *out = tu_zeros(nout);
        float *dinp = tu_zeros(nin), *dk = tu_zeros(nk);
        ofa_dwconv_backward(dinp, 1, dk, r, inp, k, z.N, z.H, z.W, z.C, z.K, z.s);
        struct dw_ctx c = {z.N, z.H, z.W, z.C, z.K, z.s, inp, k, out, r, nout, NULL};
        check_fd("dwconv dinp", dw_loss, &c, inp, nin, dinp);
        check_fd("dwconv dk", dw_loss, &c, k, nk, dk);
        free(inp);
        free(k);
        free(r);
        free(out);
        free(dinp);
        free(dk);
    }
}
END_TEST

/* The fused bias + activation equals the forward, then the bias, then the
 * activation, bit for bit: every activation, on the reference test's shapes
 * (both paths: the image-block path and, for images wider than it takes, the
 * row path; partial channel blocks; strides 1 and 2; kernels 3, 5 and 7). */
START_TEST(test_dwconv_bias_act_equals_composition)
{
    tu_threads(2);
    for (size_t t = 0; t < sizeof dw_ref_shapes / sizeof *dw_ref_shapes; t++) {
        struct dw_shape z = dw_ref_shapes[t];
        int Ho = (z.H - 1) / z.s + 1, Wo = (z.W - 1) / z.s + 1;
        long nin = (long)z.N * z.H * z.W * z.C, nout = (long)z.N * Ho * Wo * z.C;
        float *inp = tu_rand(nin, 2, SEED, 700 + t);
        float *k = tu_rand((long)z.K * z.K * z.C, 1, SEED, 720 + t);
        float *b = tu_rand(z.C, 3, SEED, 740 + t);
        float *want = tu_zeros(nout), *got = tu_zeros(nout);
        for (size_t a = 0; a < sizeof acts / sizeof *acts; a++) {
            ofa_dwconv_forward(want, inp, k, z.N, z.H, z.W, z.C, z.K, z.s);
            for (long i = 0; i < nout; i++)
                want[i] = ofa_act_value(acts[a], want[i] + b[i % z.C]);
            ofa_dwconv_forward_bias_act(got, inp, k, b, acts[a], z.N, z.H, z.W, z.C, z.K, z.s);
            ck_assert_msg(memcmp(want, got, (size_t)nout * sizeof *got) == 0,
                          "shape %zu, act %d: fused bias + activation differs", t, (int)acts[a]);
        }
        free(inp);
        free(k);
        free(b);
        free(want);
        free(got);
    }
}
END_TEST

/* The activations in the kernels' stores (bias_act_v, lib/ops_vec.h) equal
 * ofa_act_value bit for bit on every kind of float, so that a faster form of
 * them (hswish's division by 6 as a product and fused multiply-adds, say)
 * has to keep the quotient's bits: a 1x1 convolution of one input channel
 * with weight 1 and bias 0 over every 4099th bit pattern (all exponents,
 * both signs, subnormals, inf and NaN) and values around 2^-100 and
 * FLT_MAX, around hswish's kinks at -3 and 3, and zeros of both signs, in
 * vectors that mix them with ordinary values and in vectors of nothing
 * else. (A product and two fused multiply-adds without a fallback for tiny
 * values failed it at 0x1.003p-137.) */
START_TEST(test_activation_stores_equal_act_value_bitwise)
{
    tu_threads(1);
    static const float special[] = {0.0f, -0.0f, 0x1p-100f, -0x1p-100f, 0x1.fffffep-101f,
                                    -0x1.fffffep-101f, 0x1p-126f, 0x1p-149f, -0x1p-149f,
                                    FLT_MAX, -FLT_MAX, 0x1.fffffcp127f, 3.0f, -3.0f,
                                    0x1.000002p1f, -0x1.fffffep1f, -0x1.000002p1f, 6.0f,
                                    1.0f / 3.0f, 1e-30f, -1e-30f};
    const long nspecial = (long)(sizeof special / sizeof *special);
    const long nstride = (long)(0x100000000LL / 4099) + 1;
    /* the specials alone (padded with their own copies to whole vectors), then
     * each next to ordinary values, then the stride */
    const long M = 64 + 16 * nspecial + nstride;
    float *x = tu_zeros(M);
    for (long i = 0; i < 64; i++)
        x[i] = special[i % nspecial];
    for (long i = 0; i < nspecial; i++)
        for (int j = 0; j < 16; j++)
            x[64 + 16 * i + j] = j == 7 ? special[i] : 0.25f * (float)(j - 8);
    for (long i = 0; i < nstride; i++) {
        const uint32_t bits = (uint32_t)((uint64_t)i * 4099u);
        memcpy(&x[64 + 16 * nspecial + i], &bits, sizeof bits);
    }
    const float one = 1.0f, zero = 0.0f;
    float *wp = tu_zeros((long)ofa_pw_packed_size(1, 1));
    ofa_pw_pack(wp, &one, 1, 1, 1);
    float *got = tu_zeros(M);
    for (size_t a = 0; a < sizeof acts / sizeof *acts; a++) {
        ofa_pwconv_forward_packed(got, x, wp, &zero, acts[a], M, 1, 1);
        for (long i = 0; i < M; i++) {
            const float want = ofa_act_value(acts[a], x[i] + 0.0f);
            ck_assert_msg(memcmp(&want, &got[i], sizeof want) == 0,
                          "act %d of %a: %a, ofa_act_value %a", (int)acts[a], (double)x[i],
                          (double)got[i], (double)want);
        }
    }
    free(x);
    free(wp);
    free(got);
}
END_TEST

/* The convolution of act(BN(x)) made as x is read (ofa_dwconv_forward_bn,
 * ofa_dwconv_backward_bn) equals the convolution of act(BN(x)) stored by
 * ofa_bn_act_forward_train_given, bit for bit: forward, input gradient and
 * kernel gradient, every activation, on the reference test's shapes (the
 * image-block, small-image and row paths, partial channel blocks, strides 1
 * and 2, kernels 3, 5 and 7; without BN, kernels of 3 and 5 at stride 2 go
 * the direct path, so the two paths' sums are compared there); BN outputs
 * across the activations' kinks. */
START_TEST(test_dwconv_bn_equals_composition)
{
    tu_threads(2);
    for (size_t t = 0; t < sizeof dw_ref_shapes / sizeof *dw_ref_shapes; t++) {
        struct dw_shape z = dw_ref_shapes[t];
        int Ho = (z.H - 1) / z.s + 1, Wo = (z.W - 1) / z.s + 1;
        const long M = (long)z.N * z.H * z.W, nin = M * z.C, nout = (long)z.N * Ho * Wo * z.C;
        const long nk = (long)z.K * z.K * z.C;
        float *inp = tu_rand(nin, 2, SEED, 760 + t), *k = tu_rand(nk, 1, SEED, 780 + t);
        float *dout = tu_rand(nout, 1, SEED, 800 + t);
        float *gamma = tu_rand(z.C, 3, SEED, 820 + t), *beta = tu_rand(z.C, 3, SEED, 840 + t);
        float *bnz = tu_zeros(nin), *mean = tu_zeros(z.C), *rstd = tu_zeros(z.C);
        float *want = tu_zeros(nout), *got = tu_zeros(nout);
        float *di1 = tu_zeros(nin), *di2 = tu_zeros(nin), *dk1 = tu_zeros(nk);
        float *dk2 = tu_zeros(nk);
        for (size_t a = 0; a < sizeof acts / sizeof *acts; a++) {
            ofa_bn_batch_stats(mean, rstd, inp, M, z.C);
            ofa_bn_act_forward_train_given(acts[a] == OFA_ACT_NONE ? bnz : NULL,
                                           acts[a] == OFA_ACT_NONE ? NULL : bnz, mean, rstd,
                                           NULL, NULL, inp, gamma, beta, M, z.C, 0.1f, 1e-5f,
                                           acts[a], NULL);
            const struct ofa_bn_act bn = {mean, rstd, gamma, beta, acts[a]};
            ofa_dwconv_forward(want, bnz, k, z.N, z.H, z.W, z.C, z.K, z.s);
            ofa_dwconv_forward_bn(got, inp, &bn, k, z.N, z.H, z.W, z.C, z.K, z.s);
            ck_assert_msg(memcmp(want, got, (size_t)nout * sizeof *got) == 0,
                          "shape %zu, act %d: forward through BN differs", t, (int)acts[a]);
            memset(dk1, 0, (size_t)nk * sizeof *dk1);
            memset(dk2, 0, (size_t)nk * sizeof *dk2);
            ofa_dwconv_backward(di1, 0, dk1, dout, bnz, k, z.N, z.H, z.W, z.C, z.K, z.s);
            ofa_dwconv_backward_bn(di2, 0, dk2, dout, inp, &bn, k, z.N, z.H, z.W, z.C, z.K,
                                   z.s);
            ck_assert_msg(memcmp(di1, di2, (size_t)nin * sizeof *di1) == 0 &&
                              memcmp(dk1, dk2, (size_t)nk * sizeof *dk1) == 0,
                          "shape %zu, act %d: backward through BN differs", t, (int)acts[a]);
        }
        float *ptrs[] = {inp, k, dout, gamma, beta, bnz, mean, rstd, want, got, di1, di2,
                         dk1, dk2};
        for (size_t i = 0; i < sizeof ptrs / sizeof *ptrs; i++)
            free(ptrs[i]);
    }
}
END_TEST

/* The kernel transformation chained into the convolution, as the supernet
 * uses it: gradients w.r.t. w7, m75 and m53 through both ops. */
START_TEST(test_dwkernel_dwconv_chain_matches_fd)
{
    tu_threads(2);
    const int N = 2, H = 7, W = 7, C = 3, Cmax = 6, s = 1;
    for (int K = 3; K <= 5; K += 2) {
        long nin = (long)N * H * W * C, nout = nin, nk = (long)K * K * C;
        float *inp = tu_rand(nin, 1, SEED, 400 + K), *w7 = tu_rand(49L * Cmax, 1, SEED, 401 + K);
        float *m75 = tu_rand(625, 0.3f, SEED, 402 + K), *m53 = tu_rand(81, 0.4f, SEED, 403 + K);
        float *r = tu_rand(nout, 1, SEED, 404 + K), *out = tu_zeros(nout);
        float *k = tu_zeros(nk), *k5 = tu_zeros(25L * C), *dk5 = tu_zeros(25L * C);
        float *dk = tu_zeros(nk), *dw7 = tu_zeros(49L * Cmax), *dm75 = tu_zeros(625);
        float *dm53 = tu_zeros(81);
        ofa_dwkernel_forward(k, k5, w7, m75, m53, K, C, Cmax, 1);
        ofa_dwconv_backward(NULL, 1, dk, r, inp, k, N, H, W, C, K, s);
        ofa_dwkernel_backward(dw7, dm75, dm53, dk5, dk, k5, w7, m75, m53, K, C, Cmax, 1);
        struct dwk_ctx kc = {K, C, Cmax, 1, w7, m75, m53, k, k5, NULL};
        struct dw_ctx c = {N, H, W, C, K, s, inp, k, out, r, nout, &kc};
        check_fd("chain dw7", dw_loss, &c, w7, 49L * Cmax, dw7);
        check_fd("chain dm75", dw_loss, &c, m75, 625, dm75);
        if (K == 3)
            check_fd("chain dm53", dw_loss, &c, m53, 81, dm53);
        free(inp);
        free(w7);
        free(m75);
        free(m53);
        free(r);
        free(out);
        free(k);
        free(k5);
        free(dk5);
        free(dk);
        free(dw7);
        free(dm75);
        free(dm53);
    }
}
END_TEST

/* ---- Accumulation and determinism ------------------------------------------ */

/* g2 (after two identical backward calls from zero) == 2 * g1 (after one). */
static void assert_doubled(const char *what, const float *g1, const float *g2, long n)
{
    float *twice = tu_copy(g1, n);
    for (long i = 0; i < n; i++)
        twice[i] *= 2.0f;
    double e = tu_nmse(g2, twice, n);
    ck_assert_msg(e < 1e-12, "%s does not accumulate: nmse %g", what, e);
    free(twice);
}

START_TEST(test_backward_accumulates_into_gradients)
{
    tu_threads(2);
    /* Dense conv: N=2, 9x9x3 -> 5x5x4 (K=3, stride 2, pad 1). */
    {
        const int N = 2, H = 9, W = 9, Cin = 3, Cout = 4, K = 3, s = 2, p = 1, Ho = 5;
        long nin = (long)N * H * W * Cin, nw = (long)Cout * K * K * Cin,
             nout = (long)N * Ho * Ho * Cout;
        long ncol = (long)ofa_conv2d_col_size(N, H, W, Cin, K, s, p);
        float *inp = tu_rand(nin, 1, SEED, 500), *w = tu_rand(nw, 1, SEED, 501);
        float *dout = tu_rand(nout, 1, SEED, 502), *out = tu_zeros(nout);
        float *col = tu_zeros(ncol), *dcol = tu_zeros(ncol);
        float *di1 = tu_zeros(nin), *dw1 = tu_zeros(nw), *di2 = tu_zeros(nin), *dw2 = tu_zeros(nw);
        ofa_conv2d_forward(out, col, inp, w, N, H, W, Cin, Cout, K, s, p);
        ofa_conv2d_backward(di1, dw1, dcol, dout, col, w, N, H, W, Cin, Cout, K, s, p);
        for (int rep = 0; rep < 2; rep++)
            ofa_conv2d_backward(di2, dw2, dcol, dout, col, w, N, H, W, Cin, Cout, K, s, p);
        assert_doubled("conv2d dinp", di1, di2, nin);
        assert_doubled("conv2d dw", dw1, dw2, nw);
        free(inp);
        free(w);
        free(dout);
        free(out);
        free(col);
        free(dcol);
        free(di1);
        free(dw1);
        free(di2);
        free(dw2);
    }
    /* Pointwise conv and linear: M=10, Cin=6 of ldw=8, Cout=5. */
    {
        const int M = 10, Cin = 6, ldw = 8, Cout = 5;
        float *inp = tu_rand(M * Cin, 1, SEED, 510), *w = tu_rand(Cout * ldw, 1, SEED, 511);
        float *dout = tu_rand(M * Cout, 1, SEED, 512);
        float *di1 = tu_zeros(M * Cin), *dw1 = tu_zeros(Cout * ldw), *db1 = tu_zeros(Cout);
        float *di2 = tu_zeros(M * Cin), *dw2 = tu_zeros(Cout * ldw), *db2 = tu_zeros(Cout);
        ofa_pwconv_backward(di1, 1, dw1, dout, inp, w, ldw, M, Cin, Cout);
        for (int rep = 0; rep < 2; rep++)
            ofa_pwconv_backward(di2, 1, dw2, dout, inp, w, ldw, M, Cin, Cout);
        assert_doubled("pwconv dinp", di1, di2, M * Cin);
        assert_doubled("pwconv dw", dw1, dw2, Cout * ldw);
        memset(di1, 0, sizeof(float) * M * Cin);
        memset(dw1, 0, sizeof(float) * Cout * ldw);
        memset(di2, 0, sizeof(float) * M * Cin);
        memset(dw2, 0, sizeof(float) * Cout * ldw);
        ofa_linear_backward(di1, dw1, db1, dout, inp, w, ldw, M, Cin, Cout);
        for (int rep = 0; rep < 2; rep++)
            ofa_linear_backward(di2, dw2, db2, dout, inp, w, ldw, M, Cin, Cout);
        assert_doubled("linear dinp", di1, di2, M * Cin);
        assert_doubled("linear dw", dw1, dw2, Cout * ldw);
        assert_doubled("linear db", db1, db2, Cout);
        free(inp);
        free(w);
        free(dout);
        free(di1);
        free(dw1);
        free(db1);
        free(di2);
        free(dw2);
        free(db2);
    }
    /* Depthwise kernel, every (K, transform), and the convolution. */
    {
        const int C = 5, Cmax = 8;
        float *w7 = tu_rand(49 * Cmax, 1, SEED, 520), *m75 = tu_rand(625, 0.3f, SEED, 521);
        float *m53 = tu_rand(81, 0.4f, SEED, 522);
        for (int K = 3; K <= 7; K += 2)
            for (int transform = 0; transform < 2; transform++) {
                float *k = tu_zeros(K * K * C), *k5 = tu_zeros(25 * C), *dk5 = tu_zeros(25 * C);
                float *dk = tu_rand(K * K * C, 1, SEED, 523);
                float *g1[3] = {tu_zeros(49 * Cmax), tu_zeros(625), tu_zeros(81)};
                float *g2[3] = {tu_zeros(49 * Cmax), tu_zeros(625), tu_zeros(81)};
                ofa_dwkernel_forward(k, k5, w7, m75, m53, K, C, Cmax, transform);
                ofa_dwkernel_backward(g1[0], g1[1], g1[2], dk5, dk, k5, w7, m75, m53, K, C,
                                      Cmax, transform);
                for (int rep = 0; rep < 2; rep++)
                    ofa_dwkernel_backward(g2[0], g2[1], g2[2], dk5, dk, k5, w7, m75, m53, K,
                                          C, Cmax, transform);
                assert_doubled("dwkernel dw7", g1[0], g2[0], 49 * Cmax);
                assert_doubled("dwkernel dm75", g1[1], g2[1], 625);
                assert_doubled("dwkernel dm53", g1[2], g2[2], 81);
                for (int i = 0; i < 3; i++) {
                    free(g1[i]);
                    free(g2[i]);
                }
                free(k);
                free(k5);
                free(dk5);
                free(dk);
            }
        free(w7);
        free(m75);
        free(m53);

        const int N = 2, H = 9, W = 9, K = 5, s = 2, Ho = 5;
        long nin = (long)N * H * W * C, nout = (long)N * Ho * Ho * C, nk = K * K * C;
        float *inp = tu_rand(nin, 1, SEED, 530), *kk = tu_rand(nk, 1, SEED, 531);
        float *dout = tu_rand(nout, 1, SEED, 532);
        float *di1 = tu_zeros(nin), *dk1 = tu_zeros(nk), *di2 = tu_zeros(nin), *dk2 = tu_zeros(nk);
        ofa_dwconv_backward(di1, 1, dk1, dout, inp, kk, N, H, W, C, K, s);
        for (int rep = 0; rep < 2; rep++)
            ofa_dwconv_backward(di2, 1, dk2, dout, inp, kk, N, H, W, C, K, s);
        assert_doubled("dwconv dinp", di1, di2, nin);
        assert_doubled("dwconv dk", dk1, dk2, nk);
        free(inp);
        free(kk);
        free(dout);
        free(di1);
        free(dk1);
        free(di2);
        free(dk2);
    }
}
END_TEST

struct dw_run {
    float *out, *dinp, *dk;
};

/* One forward + backward of a fixed problem with n threads. */
static struct dw_run dw_run_threads(int nthreads, int N, int H, int W, int C, int K, int s)
{
    tu_threads(nthreads);
    int Ho = (H - 1) / s + 1, Wo = (W - 1) / s + 1;
    long nin = (long)N * H * W * C, nout = (long)N * Ho * Wo * C, nk = (long)K * K * C;
    float *inp = tu_rand(nin, 1, SEED, 600), *k = tu_rand(nk, 1, SEED, 601);
    float *dout = tu_rand(nout, 1, SEED, 602);
    struct dw_run r = {tu_zeros(nout), tu_zeros(nin), tu_zeros(nk)};
    ofa_dwconv_forward(r.out, inp, k, N, H, W, C, K, s);
    ofa_dwconv_backward(r.dinp, 1, r.dk, dout, inp, k, N, H, W, C, K, s);
    free(inp);
    free(k);
    free(dout);
    return r;
}

static void dw_run_free(struct dw_run *r)
{
    free(r->out);
    free(r->dinp);
    free(r->dk);
}

START_TEST(test_dwconv_deterministic_across_runs_and_threads)
{
    tu_threads(2);
    static const struct dw_shape shapes[] = {
        {2, 15, 15, 37, 5, 1}, {3, 16, 13, 70, 3, 2}, {5, 4, 4, 40, 7, 1}, {37, 4, 4, 40, 7, 1}};
    for (size_t t = 0; t < sizeof shapes / sizeof *shapes; t++) {
        struct dw_shape z = shapes[t];
        int Ho = (z.H - 1) / z.s + 1, Wo = (z.W - 1) / z.s + 1;
        size_t nin = (size_t)z.N * z.H * z.W * z.C, nout = (size_t)z.N * Ho * Wo * z.C;
        size_t nk = (size_t)z.K * z.K * z.C;
        struct dw_run a = dw_run_threads(1, z.N, z.H, z.W, z.C, z.K, z.s);
        struct dw_run b = dw_run_threads(2, z.N, z.H, z.W, z.C, z.K, z.s);
        struct dw_run c = dw_run_threads(2, z.N, z.H, z.W, z.C, z.K, z.s);
        /* Same thread count: bitwise identical, whatever the op's parallel split. */
        ck_assert(memcmp(b.out, c.out, nout * sizeof(float)) == 0);
        ck_assert(memcmp(b.dinp, c.dinp, nin * sizeof(float)) == 0);
        ck_assert(memcmp(b.dk, c.dk, nk * sizeof(float)) == 0);
        /* Across thread counts: out and dinp are per-element gathers, identical;
         * the contract allows dk to depend on the thread count (it does not today). */
        ck_assert(memcmp(a.out, b.out, nout * sizeof(float)) == 0);
        ck_assert(memcmp(a.dinp, b.dinp, nin * sizeof(float)) == 0);
        ck_assert_msg(tu_nmse(b.dk, a.dk, (long)nk) < 1e-12, "dk differs across thread counts");
        dw_run_free(&a);
        dw_run_free(&b);
        dw_run_free(&c);
    }
}
END_TEST

static Suite *ops_conv_suite(void)
{
    Suite *s = suite_create("ops_conv");
    TCase *tc = tcase_create("ops_conv");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_gemm_matches_reference_all_transposes);
    tcase_add_test(tc, test_gemm_split_matches_reference);
    tcase_add_test(tc, test_conv2d_forward_matches_reference);
    tcase_add_test(tc, test_conv2d_packed_direct_equals_im2col);
    tcase_add_test(tc, test_conv2d_backward_matches_reference_and_fd);
    tcase_add_test(tc, test_pwconv_elastic_slice_matches_reference);
    tcase_add_test(tc, test_pwconv_packed_matches_reference_and_threads);
    tcase_add_test(tc, test_pwconv_forward_stats_matches_reference_and_threads);
    tcase_add_test(tc, test_pwconv_backward_matches_fd);
    tcase_add_test(tc, test_pwconv_backward_blocked_matches_reference);
    tcase_add_test(tc, test_pwconv_backward_bn_equals_composition);
    tcase_add_test(tc, test_linear_backward_matches_fd);
    tcase_add_test(tc, test_dwkernel_forward_matches_reference);
    tcase_add_test(tc, test_dwkernel_backward_matches_fd);
    tcase_add_test(tc, test_dwconv_forward_matches_reference);
    tcase_add_test(tc, test_dwconv_backward_matches_reference);
    tcase_add_test(tc, test_dwconv_backward_matches_fd);
    tcase_add_test(tc, test_dwconv_bias_act_equals_composition);
    tcase_add_test(tc, test_activation_stores_equal_act_value_bitwise);
    tcase_add_test(tc, test_dwconv_bn_equals_composition);
    tcase_add_test(tc, test_dwkernel_dwconv_chain_matches_fd);
    tcase_add_test(tc, test_backward_accumulates_into_gradients);
    tcase_add_test(tc, test_dwconv_deterministic_across_runs_and_threads);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ops_conv_suite());
    srunner_run_all(sr, CK_NORMAL);
    int nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    return nf ? EXIT_FAILURE : EXIT_SUCCESS;
}
