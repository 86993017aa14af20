#include <config.h>
/* check_ops_misc.c: batch norm, activations, pooling, dropout, squeeze-excite,
 * bilinear resize and the losses. Every op is compared with a plain double
 * precision reference written out below, and every backward with central
 * finite differences of L = sum(out * r) (tests/testutil.h). */

#include "ops.h"
#include "rng.h"
#include "testutil.h"
#include "util.h"

#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* Thresholds. Outputs are float32 and the references double, so a correct
 * forward has a normalised MSE of about (1e-7)^2 = 1e-14: REF_TOL = 1e-10
 * leaves room for float accumulation and still catches any wrong term. A
 * finite-difference gradient of float outputs carries a rounding error of
 * about 1e-7 * |L terms| / h plus an O(h^2) truncation error; at the steps
 * used here that is an NMSE of 1e-7 or less, while a missing or wrong term
 * gives an NMSE of order 1e-2..1, so FD_TOL = 1e-4 separates the two. */
#define REF_TOL 1e-10
#define FD_TOL 1e-4

#define SEED 20240611UL

static float *rnd(long n, float a, unsigned long tag)
{
    return tu_rand(n, a, SEED, tag);
}

/* x[i] = base + x[i] (shift a tu_rand array). */
static void add_const(float *x, long n, float base)
{
    for (long i = 0; i < n; i++)
        x[i] += base;
}

static int all_zero(const float *x, long n)
{
    for (long i = 0; i < n; i++)
        if (x[i] != 0.0f)
            return 0;
    return 1;
}

/* ======================= batch normalisation =========================== */

/* out [M,C] = (x - mean) / sqrt(var + eps) * gamma + beta. */
static void ref_bn_apply(double *out, const float *inp, const double *mean, const double *var,
                         const float *gamma, const float *beta, long M, int C, double eps)
{
    for (long m = 0; m < M; m++)
        for (int c = 0; c < C; c++)
            out[m * C + c] = (inp[m * C + c] - mean[c]) / sqrt(var[c] + eps) * gamma[c] + beta[c];
}

/* The backward written out from the chain rule: for each channel,
 * dxhat = dout * gamma, dvar = sum dxhat (x - mu) (-1/2) (var+eps)^-3/2,
 * dmu = -sum dxhat / sqrt(var+eps) + dvar * (-2/M) sum (x - mu),
 * dx = dxhat / sqrt(var+eps) + dvar 2 (x - mu) / M + dmu / M. */
static void ref_bn_backward(double *dinp, double *dgamma, double *dbeta, const float *dout,
                            const float *inp, const float *gamma, long M, int C, double eps)
{
    double *mean = malloc(sizeof(double) * C), *var = malloc(sizeof(double) * C);
    tu_col_stats(mean, var, inp, M, C);
    for (int c = 0; c < C; c++) {
        double is = 1.0 / sqrt(var[c] + eps);
        double dvar = 0, dmu = 0, sxm = 0, dg = 0, db = 0;
        for (long m = 0; m < M; m++) {
            double xm = inp[m * C + c] - mean[c];
            double dxh = (double)dout[m * C + c] * gamma[c];
            dvar += dxh * xm * -0.5 * is * is * is;
            dmu += -dxh * is;
            sxm += xm;
            dg += (double)dout[m * C + c] * xm * is;
            db += dout[m * C + c];
        }
        dmu += dvar * -2.0 * sxm / (double)M;
        for (long m = 0; m < M; m++) {
            double xm = inp[m * C + c] - mean[c];
            double dxh = (double)dout[m * C + c] * gamma[c];
            dinp[m * C + c] = dxh * is + dvar * 2.0 * xm / (double)M + dmu / (double)M;
        }
        dgamma[c] = dg;
        dbeta[c] = db;
    }
    free(mean);
    free(var);
}

static double nmse_fd(const float *a, const double *b, long n)
{
    double num = 0, den = 0;
    for (long i = 0; i < n; i++) {
        double d = a[i] - b[i];
        num += d * d;
        den += b[i] * b[i];
    }
    return num / (den > 1e-30 ? den : 1e-30);
}

START_TEST(test_bn_train_forward_matches_reference)
{
    tu_threads(2);
    /* M, C, Cmax: one row, odd sizes, C not a multiple of 8, several channel
     * blocks and row chunks, elastic C < Cmax. */
    static const struct { long M; int C, Cmax; } sh[] = {
        {1, 3, 8}, {7, 5, 8}, {300, 13, 16}, {5000, 70, 96}, {2 * 7 * 7, 130, 130},
        {1568, 960, 1152}, {40, 2100, 2110},
    };
    const float eps = 1e-5f, momentum = 0.1f;
    for (size_t s = 0; s < sizeof sh / sizeof sh[0]; s++) {
        long M = sh[s].M;
        int C = sh[s].C, Cmax = sh[s].Cmax;
        float *inp = rnd(M * C, 2.0f, 1);
        add_const(inp, M * C, 0.7f);
        float *gamma = rnd(Cmax, 0.5f, 2), *beta = rnd(Cmax, 0.5f, 3);
        add_const(gamma, Cmax, 1.0f);
        float *out = tu_zeros(M * C), *mean = tu_zeros(Cmax), *rstd = tu_zeros(Cmax);
        float *rm = rnd(Cmax, 1.0f, 4), *rv = rnd(Cmax, 0.5f, 5);
        add_const(rv, Cmax, 1.0f);
        float *rm0 = tu_copy(rm, Cmax), *rv0 = tu_copy(rv, Cmax);
        double *dm = malloc(sizeof(double) * C), *dv = malloc(sizeof(double) * C);
        double *dout = malloc(sizeof(double) * M * C);
        tu_col_stats(dm, dv, inp, M, C);
        ref_bn_apply(dout, inp, dm, dv, gamma, beta, M, C, eps);

        ofa_bn_forward_train(out, mean, rstd, M > 1 ? rm : NULL, M > 1 ? rv : NULL, inp,
                             gamma, beta, M, C, momentum, eps);
        ck_assert_msg(nmse_fd(out, dout, M * C) < REF_TOL, "out, shape %zu", s);
        for (int c = 0; c < C; c++) {
            ck_assert(fabs(mean[c] - dm[c]) <= 1e-6 * (1 + fabs(dm[c])));
            double r = 1.0 / sqrt(dv[c] + eps);
            ck_assert(fabs(rstd[c] - r) <= 1e-6 * r);
            if (M > 1) {
                double erm = (1 - momentum) * rm0[c] + momentum * dm[c];
                double erv = (1 - momentum) * rv0[c] + momentum * dv[c] * M / (M - 1);
                ck_assert(fabs(rm[c] - erm) <= 1e-6 * (1 + fabs(erm)));
                ck_assert(fabs(rv[c] - erv) <= 1e-6 * (1 + fabs(erv)));
            }
        }
        /* Entries beyond the active width are not touched. */
        ck_assert(all_zero(mean + C, Cmax - C) && all_zero(rstd + C, Cmax - C));
        ck_assert(memcmp(rm + C, rm0 + C, sizeof(float) * (Cmax - C)) == 0);
        ck_assert(memcmp(rv + C, rv0 + C, sizeof(float) * (Cmax - C)) == 0);
        free(inp); free(gamma); free(beta); free(out); free(mean); free(rstd);
        free(rm); free(rv); free(rm0); free(rv0); free(dm); free(dv); free(dout);
    }
}
END_TEST

START_TEST(test_bn_running_stats_follow_pytorch_momentum)
{
    tu_threads(2);
    /* One active channel of three, rows 1, 2, 3, 6: mean 3, biased var 3.5,
     * unbiased var 14/3. r = 0.9 r + 0.1 batch: mean 0.9*0.5 + 0.1*3 = 0.75,
     * var 0.9*2 + 0.1*14/3 = 2.2666667. */
    float inp[4] = {1, 2, 3, 6};
    float gamma[3] = {1, 1, 1}, beta[3] = {0, 0, 0};
    float rm[3] = {0.5f, 7, 7}, rv[3] = {2, 7, 7};
    float out[4], mean[3] = {0}, rstd[3] = {0};
    ofa_bn_forward_train(out, mean, rstd, rm, rv, inp, gamma, beta, 4, 1, 0.1f, 0.0f);
    ck_assert_float_eq_tol(mean[0], 3.0f, 1e-6f);
    ck_assert_float_eq_tol(rstd[0], (float)(1.0 / sqrt(3.5)), 1e-6f);
    ck_assert_float_eq_tol(rm[0], 0.75f, 1e-6f);
    ck_assert_float_eq_tol(rv[0], 2.2666667f, 1e-6f);
    ck_assert(rm[1] == 7 && rm[2] == 7 && rv[1] == 7 && rv[2] == 7);
    ck_assert_float_eq_tol(out[3], (float)(3.0 / sqrt(3.5)), 1e-6f);
}
END_TEST

START_TEST(test_bn_eval_matches_reference_and_allows_in_place)
{
    tu_threads(2);
    static const struct { long M; int C, Cmax; } sh[] = {{1, 5, 8}, {9 * 9, 13, 16}, {3000, 70, 72}};
    const float eps = 1e-3f;
    for (size_t s = 0; s < sizeof sh / sizeof sh[0]; s++) {
        long M = sh[s].M;
        int C = sh[s].C, Cmax = sh[s].Cmax;
        float *inp = rnd(M * C, 3.0f, 11);
        float *gamma = rnd(Cmax, 1.0f, 12), *beta = rnd(Cmax, 1.0f, 13);
        float *rm = rnd(Cmax, 1.0f, 14), *rv = rnd(Cmax, 0.9f, 15);
        add_const(rv, Cmax, 1.0f);
        double *dm = malloc(sizeof(double) * C), *dv = malloc(sizeof(double) * C);
        for (int c = 0; c < C; c++) {
            dm[c] = rm[c];
            dv[c] = rv[c];
        }
        double *ref = malloc(sizeof(double) * M * C);
        ref_bn_apply(ref, inp, dm, dv, gamma, beta, M, C, eps);
        float *out = tu_zeros(M * C);
        ofa_bn_forward_eval(out, inp, gamma, beta, rm, rv, M, C, eps);
        ck_assert_msg(nmse_fd(out, ref, M * C) < REF_TOL, "shape %zu", s);
        float *io = tu_copy(inp, M * C);
        ofa_bn_forward_eval(io, io, gamma, beta, rm, rv, M, C, eps);
        ck_assert(memcmp(io, out, sizeof(float) * M * C) == 0);
        free(inp); free(gamma); free(beta); free(rm); free(rv); free(dm); free(dv);
        free(ref); free(out); free(io);
    }
}
END_TEST

START_TEST(test_bn_batch_stats_accurate_for_large_mean_and_many_rows)
{
    tu_threads(2);
    /* 128 x 28 x 28 rows around 1000 with std ~0.58: a float sum of squares
     * would lose every digit of the variance. */
    long M = 128L * 28 * 28;
    int C = 3;
    float *inp = rnd(M * C, 1.0f, 21);
    add_const(inp, M * C, 1000.0f);
    float mean[3], var[3];
    double dm[3], dv[3];
    ofa_bn_batch_stats(mean, var, inp, M, C);
    tu_col_stats(dm, dv, inp, M, C);
    for (int c = 0; c < C; c++) {
        ck_assert(fabs(mean[c] - dm[c]) <= 1e-6 * dm[c]);
        ck_assert_msg(fabs(var[c] - dv[c]) <= 1e-6 * dv[c], "var %g vs %g", var[c], dv[c]);
    }
    free(inp);
    /* Several channel blocks (more than 2048 channels). */
    M = 301;
    C = 2100;
    inp = rnd(M * C, 2.0f, 22);
    float *fm = tu_zeros(C), *fv = tu_zeros(C);
    double *rm = malloc(sizeof(double) * C), *rv = malloc(sizeof(double) * C);
    ofa_bn_batch_stats(fm, fv, inp, M, C);
    tu_col_stats(rm, rv, inp, M, C);
    ck_assert(nmse_fd(fm, rm, C) < REF_TOL && nmse_fd(fv, rv, C) < REF_TOL);
    free(inp); free(fm); free(fv); free(rm); free(rv);
}
END_TEST

struct bn_ctx {
    float *out, *mean, *rstd, *inp, *gamma, *beta;
    const float *r;
    long M;
    int C;
};

static double bn_loss(void *p)
{
    struct bn_ctx *b = p;
    ofa_bn_forward_train(b->out, b->mean, b->rstd, NULL, NULL, b->inp, b->gamma, b->beta,
                         b->M, b->C, 0.1f, 1e-5f);
    return tu_dot(b->out, b->r, b->M * b->C);
}

START_TEST(test_bn_train_backward_matches_fd)
{
    tu_threads(2);
    static const struct { long M; int C, Cmax; } sh[] = {{12, 5, 8}, {2 * 3 * 3, 11, 11}};
    for (size_t s = 0; s < sizeof sh / sizeof sh[0]; s++) {
        long M = sh[s].M;
        int C = sh[s].C, Cmax = sh[s].Cmax;
        struct bn_ctx b = {
            .out = tu_zeros(M * C), .mean = tu_zeros(Cmax), .rstd = tu_zeros(Cmax),
            .inp = rnd(M * C, 1.0f, 31), .gamma = rnd(Cmax, 0.5f, 32),
            .beta = rnd(Cmax, 0.5f, 33), .r = rnd(M * C, 1.0f, 34), .M = M, .C = C,
        };
        add_const(b.gamma, Cmax, 1.0f);
        float *dinp = tu_zeros(M * C), *dg = tu_zeros(Cmax), *db = tu_zeros(Cmax);
        bn_loss(&b);
        ofa_bn_backward(dinp, dg, db, b.r, b.inp, b.mean, b.rstd, b.gamma, M, C);
        /* BN is smooth; h = 1e-3 keeps the O(h^2) error ~1e-6 relative. */
        float *ng = tu_zeros(M * C), *ngg = tu_zeros(Cmax), *ngb = tu_zeros(Cmax);
        tu_numgrad(bn_loss, &b, b.inp, M * C, 1e-3f, ng);
        tu_numgrad(bn_loss, &b, b.gamma, C, 1e-3f, ngg);
        tu_numgrad(bn_loss, &b, b.beta, C, 1e-3f, ngb);
        ck_assert_msg(tu_nmse(dinp, ng, M * C) < FD_TOL, "dinp %g", tu_nmse(dinp, ng, M * C));
        ck_assert_msg(tu_nmse(dg, ngg, C) < FD_TOL, "dgamma %g", tu_nmse(dg, ngg, C));
        ck_assert_msg(tu_nmse(db, ngb, C) < FD_TOL, "dbeta %g", tu_nmse(db, ngb, C));
        ck_assert(all_zero(dg + C, Cmax - C) && all_zero(db + C, Cmax - C));
        free(b.out); free(b.mean); free(b.rstd); free(b.inp); free(b.gamma); free(b.beta);
        free((float *)b.r); free(dinp); free(dg); free(db); free(ng); free(ngg); free(ngb);
    }
}
END_TEST

START_TEST(test_bn_backward_matches_reference_on_large_shapes)
{
    tu_threads(2);
    static const struct { long M; int C; } sh[] = {
        {5000, 70}, {1, 4}, {257, 9}, {1568, 960}, {30, 2100},
    };
    for (size_t s = 0; s < sizeof sh / sizeof sh[0]; s++) {
        long M = sh[s].M;
        int C = sh[s].C;
        float *inp = rnd(M * C, 1.5f, 41), *dout = rnd(M * C, 1.0f, 42);
        float *gamma = rnd(C, 1.0f, 43), *beta = rnd(C, 1.0f, 44);
        float *out = tu_zeros(M * C), *mean = tu_zeros(C), *rstd = tu_zeros(C);
        float *dinp = tu_zeros(M * C), *dg = tu_zeros(C), *db = tu_zeros(C);
        double *rdi = malloc(sizeof(double) * M * C);
        double *rdg = malloc(sizeof(double) * C), *rdb = malloc(sizeof(double) * C);
        ofa_bn_forward_train(out, mean, rstd, NULL, NULL, inp, gamma, beta, M, C, 0.1f, 1e-5f);
        ofa_bn_backward(dinp, dg, db, dout, inp, mean, rstd, gamma, M, C);
        ref_bn_backward(rdi, rdg, rdb, dout, inp, gamma, M, C, 1e-5);
        /* With M = 1 the true dinp is 0 and both sides are rounding noise. */
        if (M > 1)
            ck_assert_msg(nmse_fd(dinp, rdi, M * C) < 1e-9, "dinp %g", nmse_fd(dinp, rdi, M * C));
        else
            for (long i = 0; i < M * C; i++)
                ck_assert(fabs(dinp[i]) < 1e-4);
        ck_assert(nmse_fd(dg, rdg, C) < REF_TOL && nmse_fd(db, rdb, C) < REF_TOL);
        free(inp); free(dout); free(gamma); free(beta); free(out); free(mean); free(rstd);
        free(dinp); free(dg); free(db); free(rdi); free(rdg); free(rdb);
    }
}
END_TEST

START_TEST(test_bn_backward_accumulates)
{
    tu_threads(2);
    long M = 600;
    int C = 19, Cmax = 24;
    float *inp = rnd(M * C, 1.0f, 51), *dout = rnd(M * C, 1.0f, 52);
    float *gamma = rnd(Cmax, 1.0f, 53), *beta = rnd(Cmax, 1.0f, 54);
    float *out = tu_zeros(M * C), *mean = tu_zeros(Cmax), *rstd = tu_zeros(Cmax);
    ofa_bn_forward_train(out, mean, rstd, NULL, NULL, inp, gamma, beta, M, C, 0.1f, 1e-5f);
    float *d1 = tu_zeros(M * C), *g1 = tu_zeros(Cmax), *b1 = tu_zeros(Cmax);
    float *d2 = tu_zeros(M * C), *g2 = tu_zeros(Cmax), *b2 = tu_zeros(Cmax);
    ofa_bn_backward(d1, g1, b1, dout, inp, mean, rstd, gamma, M, C);
    ofa_bn_backward(d2, g2, b2, dout, inp, mean, rstd, gamma, M, C);
    ofa_bn_backward(d2, g2, b2, dout, inp, mean, rstd, gamma, M, C);
    for (long i = 0; i < M * C; i++)
        d1[i] *= 2;
    for (int c = 0; c < Cmax; c++) {
        g1[c] *= 2;
        b1[c] *= 2;
    }
    ck_assert(tu_nmse(d2, d1, M * C) < 1e-12);
    ck_assert(tu_nmse(g2, g1, Cmax) < 1e-12 && tu_nmse(b2, b1, Cmax) < 1e-12);
    free(inp); free(dout); free(gamma); free(beta); free(out); free(mean); free(rstd);
    free(d1); free(g1); free(b1); free(d2); free(g2); free(b2);
}
END_TEST

/* The fused forward of act(BN(x)) equals BN then the activation, bit for bit:
 * training mode with the BN output kept and without it (running statistics
 * updated alike), inference mode, in place too; and BN plus a residual.
 * Training mode with the batch statistics given, up to their rounding, and
 * without an output, only the statistics. */
START_TEST(test_bn_act_forward_equals_bn_then_act)
{
    tu_threads(2);
    long M = 3000;
    int C = 37, Cmax = 40;
    const long n = M * C;
    float *inp = rnd(n, 3.0f, 81), *gamma = rnd(Cmax, 2.0f, 82), *beta = rnd(Cmax, 2.0f, 83);
    float *rm = rnd(Cmax, 1.0f, 84), *rv = tu_zeros(Cmax);
    for (int c = 0; c < Cmax; c++)
        rv[c] = 0.5f + (float)c / Cmax;
    const enum ofa_act acts[] = {OFA_ACT_RELU, OFA_ACT_HSWISH, OFA_ACT_HSIGMOID};
    for (int a = 0; a < 3; a++) {
        float *y1 = tu_zeros(n), *z1 = tu_zeros(n), *y2 = tu_zeros(n), *z2 = tu_zeros(n);
        float *z3 = tu_zeros(n), *m1 = tu_zeros(Cmax), *r1 = tu_zeros(Cmax);
        float *m2 = tu_zeros(Cmax), *r2 = tu_zeros(Cmax), *m3 = tu_zeros(Cmax), *r3 = tu_zeros(Cmax);
        float rm1[40], rv1[40], rm2[40], rv2[40];
        memcpy(rm1, rm, sizeof rm1), memcpy(rv1, rv, sizeof rv1);
        memcpy(rm2, rm, sizeof rm2), memcpy(rv2, rv, sizeof rv2);
        ofa_bn_forward_train(y1, m1, r1, rm1, rv1, inp, gamma, beta, M, C, 0.1f, 1e-5f);
        ofa_act_forward(z1, y1, n, acts[a]);
        ofa_bn_act_forward_train(y2, z2, m2, r2, rm2, rv2, inp, gamma, beta, M, C, 0.1f, 1e-5f,
                                 acts[a], NULL);
        ck_assert(memcmp(y1, y2, n * sizeof *y1) == 0 && memcmp(z1, z2, n * sizeof *z1) == 0);
        ck_assert(memcmp(m1, m2, C * sizeof *m1) == 0 && memcmp(r1, r2, C * sizeof *r1) == 0);
        ck_assert(memcmp(rm1, rm2, sizeof rm1) == 0 && memcmp(rv1, rv2, sizeof rv1) == 0);
        ofa_bn_act_forward_train(NULL, z3, m3, r3, NULL, NULL, inp, gamma, beta, M, C, 0.1f,
                                 1e-5f, acts[a], NULL);
        ck_assert(memcmp(z1, z3, n * sizeof *z1) == 0);
        /* inference mode, out of place and in place */
        ofa_bn_forward_eval(y1, inp, gamma, beta, rm, rv, M, C, 1e-5f);
        ofa_act_forward(z1, y1, n, acts[a]);
        ofa_bn_act_forward_eval(z2, inp, gamma, beta, rm, rv, M, C, 1e-5f, acts[a], NULL);
        ck_assert(memcmp(z1, z2, n * sizeof *z1) == 0);
        memcpy(z3, inp, n * sizeof *z3);
        ofa_bn_act_forward_eval(z3, z3, gamma, beta, rm, rv, M, C, 1e-5f, acts[a], NULL);
        ck_assert(memcmp(z1, z3, n * sizeof *z1) == 0);
        free(y1); free(z1); free(y2); free(z2); free(z3);
        free(m1); free(r1); free(m2); free(r2); free(m3); free(r3);
    }
    /* The batch statistics given (ofa_bn_act_forward_train_given: mean and
     * biased variance as floats) normalise as the ones it computes, up to the
     * rounding of the variance to float before rstd. */
    for (int a = 0; a < 3; a++) {
        float *z1 = tu_zeros(n), *z2 = tu_zeros(n), *m1 = tu_zeros(Cmax), *r1 = tu_zeros(Cmax);
        float *m2 = tu_zeros(Cmax), *r2 = tu_zeros(Cmax);
        float rm1[40], rv1[40], rm2[40], rv2[40];
        memcpy(rm1, rm, sizeof rm1), memcpy(rv1, rv, sizeof rv1);
        memcpy(rm2, rm, sizeof rm2), memcpy(rv2, rv, sizeof rv2);
        ofa_bn_act_forward_train(NULL, z1, m1, r1, rm1, rv1, inp, gamma, beta, M, C, 0.1f,
                                 1e-5f, acts[a], NULL);
        ofa_bn_batch_stats(m2, r2, inp, M, C);
        ofa_bn_act_forward_train_given(NULL, z2, m2, r2, rm2, rv2, inp, gamma, beta, M, C,
                                       0.1f, 1e-5f, acts[a], NULL);
        ck_assert(memcmp(m1, m2, C * sizeof *m1) == 0);
        for (int c = 0; c < C; c++) {
            ck_assert_msg(fabsf(r2[c] - r1[c]) <= 1e-6f * r1[c], "rstd %g vs %g", r2[c], r1[c]);
            ck_assert(rm2[c] == rm1[c] && fabsf(rv2[c] - rv1[c]) <= 1e-6f * rv1[c]);
        }
        ck_assert(memcmp(rm1 + C, rm2 + C, (Cmax - C) * sizeof *rm1) == 0);
        ck_assert(memcmp(rv1 + C, rv2 + C, (Cmax - C) * sizeof *rv1) == 0);
        ck_assert_msg(tu_nmse(z2, z1, n) < 1e-12, "act %d: nmse %g", a, tu_nmse(z2, z1, n));
        /* no output at all (ofa_dwconv_forward_bn normalises): the same
         * statistics, nothing written */
        float *m3 = tu_zeros(Cmax), *r3 = tu_zeros(Cmax), rm3[40], rv3[40];
        memcpy(rm3, rm, sizeof rm3), memcpy(rv3, rv, sizeof rv3);
        ofa_bn_batch_stats(m3, r3, inp, M, C);
        ofa_bn_act_forward_train_given(NULL, NULL, m3, r3, rm3, rv3, inp, gamma, beta, M, C,
                                       0.1f, 1e-5f, acts[a], NULL);
        ck_assert(memcmp(m2, m3, C * sizeof *m2) == 0 && memcmp(r2, r3, C * sizeof *r2) == 0);
        ck_assert(memcmp(rm2, rm3, sizeof rm2) == 0 && memcmp(rv2, rv3, sizeof rv2) == 0);
        free(z1); free(z2); free(m1); free(r1); free(m2); free(r2); free(m3); free(r3);
    }
    /* A residual added in the sweep: the bits of adding it after, in training
     * and inference mode, the output being the residual too. */
    float *res = rnd(n, 1.0f, 85), *y1 = tu_zeros(n), *y2 = tu_zeros(n);
    float *m = tu_zeros(Cmax), *r = tu_zeros(Cmax);
    ofa_bn_forward_train(y1, m, r, NULL, NULL, inp, gamma, beta, M, C, 0.1f, 1e-5f);
    ofa_bn_act_forward_train(y2, NULL, m, r, NULL, NULL, inp, gamma, beta, M, C, 0.1f, 1e-5f,
                             OFA_ACT_NONE, res);
    for (long i = 0; i < n; i++)
        ck_assert(y2[i] == y1[i] + res[i]);
    ofa_bn_forward_eval(y1, inp, gamma, beta, rm, rv, M, C, 1e-5f);
    memcpy(y2, res, n * sizeof *y2);
    ofa_bn_act_forward_eval(y2, inp, gamma, beta, rm, rv, M, C, 1e-5f, OFA_ACT_NONE, y2);
    for (long i = 0; i < n; i++)
        ck_assert(y2[i] == y1[i] + res[i]);
    free(res); free(y1); free(y2); free(m); free(r);
    free(inp); free(gamma); free(beta); free(rm); free(rv);
}
END_TEST

/* The fused backward of act(BN(x)) equals the composition it replaces: the
 * activation's backward (on the BN output the forward wrote) into a zeroed
 * buffer, then BN's into another, for every activation, at a parallel size
 * and an odd channel count, and it overwrites dinp instead of adding to it.
 * The fused one recomputes the BN output: equal bits are what make it
 * right, at the kinks too (channels 0-2 are constant, so their BN output is
 * beta exactly: 0, -3 and 3). */
START_TEST(test_bn_act_backward_equals_act_then_bn)
{
    tu_threads(2);
    long M = 3000;
    int C = 37, Cmax = 40;
    float *inp = rnd(M * C, 2.0f, 71), *dout = rnd(M * C, 1.0f, 72);
    float *gamma = rnd(Cmax, 3.0f, 73), *beta = rnd(Cmax, 2.0f, 74);
    float *y = tu_zeros(M * C), *mean = tu_zeros(Cmax), *rstd = tu_zeros(Cmax);
    for (long m = 0; m < M; m++)
        for (int c = 0; c < 3; c++)
            inp[m * C + c] = 0.25f * (float)(c + 1);
    beta[0] = 0.0f; /* the kinks: relu at 0, hardswish at -3 and 3 */
    beta[1] = -3.0f;
    beta[2] = 3.0f;
    ofa_bn_forward_train(y, mean, rstd, NULL, NULL, inp, gamma, beta, M, C, 0.1f, 1e-5f);
    ck_assert(y[(M - 1) * C] == 0.0f && y[(M - 1) * C + 1] == -3.0f && y[(M - 1) * C + 2] == 3.0f);
    const enum ofa_act acts[] = {OFA_ACT_NONE, OFA_ACT_RELU, OFA_ACT_HSWISH, OFA_ACT_HSIGMOID};
    for (int a = 0; a < 4; a++) {
        float *dy = tu_zeros(M * C), *d1 = tu_zeros(M * C), *d2 = tu_zeros(M * C);
        float *g1 = tu_zeros(Cmax), *b1 = tu_zeros(Cmax), *g2 = tu_zeros(Cmax), *b2 = tu_zeros(Cmax);
        ofa_act_backward(dy, dout, y, M * C, acts[a]);
        ofa_bn_backward(d1, g1, b1, dy, inp, mean, rstd, gamma, M, C);
        for (long i = 0; i < M * C; i++)
            d2[i] = 1e30f; /* overwritten, not added to */
        for (int c = 0; c < Cmax; c++)
            g2[c] = b2[c] = 0.0f;
        ofa_bn_act_backward(d2, g2, b2, dout, inp, mean, rstd, gamma,
                            acts[a] == OFA_ACT_NONE ? NULL : beta, M, C, acts[a]);
        for (long i = 0; i < M * C; i++)
            ck_assert_msg(d1[i] == d2[i], "act %d, dinp[%ld]: %g vs %g", a, i, d1[i], d2[i]);
        for (int c = 0; c < Cmax; c++)
            ck_assert(g1[c] == g2[c] && b1[c] == b2[c]);
        free(dy); free(d1); free(d2); free(g1); free(b1); free(g2); free(b2);
    }
    free(inp); free(dout); free(gamma); free(beta); free(y); free(mean); free(rstd);
}
END_TEST

/* Forward + backward of BN on [M,C] into freshly zeroed buffers; returns them
 * concatenated (out, mean, rstd, running stats, dinp, dgamma, dbeta). */
static float *bn_run(long M, int C)
{
    long n = 2 * M * C + 7L * C;
    float *res = tu_zeros(n);
    float *out = res, *dinp = res + M * C, *mean = dinp + M * C, *rstd = mean + C;
    float *rm = rstd + C, *rv = rm + C, *dg = rv + C, *db = dg + C;
    float *inp = rnd(M * C, 1.0f, 61), *dout = rnd(M * C, 1.0f, 62);
    float *gamma = rnd(C, 1.0f, 63), *beta = rnd(C, 1.0f, 64);
    add_const(inp, M * C, 3.0f);
    for (int c = 0; c < C; c++)
        rv[c] = 1.0f;
    ofa_bn_forward_train(out, mean, rstd, rm, rv, inp, gamma, beta, M, C, 0.1f, 1e-5f);
    ofa_bn_backward(dinp, dg, db, dout, inp, mean, rstd, gamma, M, C);
    free(inp); free(dout); free(gamma); free(beta);
    return res;
}

START_TEST(test_bn_is_bitwise_deterministic_with_2_threads)
{
    tu_threads(2);
    long M = 50000;
    int C = 37;
    long n = 2 * M * C + 7L * C;
    float *a = bn_run(M, C), *b = bn_run(M, C);
    ck_assert(memcmp(a, b, sizeof(float) * n) == 0);
    /* The row chunks depend on M only, so one thread gives the same bits. */
    tu_threads(1);
    float *c1 = bn_run(M, C);
    ck_assert(memcmp(a, c1, sizeof(float) * n) == 0);
    free(a); free(b); free(c1);
}
END_TEST

/* ============================ activations ============================== */

static double ref_act(double x, enum ofa_act act)
{
    double r6 = fmin(fmax(x + 3.0, 0.0), 6.0);
    switch (act) {
    case OFA_ACT_RELU:
        return x > 0 ? x : 0;
    case OFA_ACT_HSWISH:
        return x * r6 / 6.0;
    case OFA_ACT_HSIGMOID:
        return r6 / 6.0;
    default:
        return x;
    }
}

static const enum ofa_act all_acts[] = {OFA_ACT_NONE, OFA_ACT_RELU, OFA_ACT_HSWISH,
                                        OFA_ACT_HSIGMOID};

START_TEST(test_act_forward_matches_reference_and_allows_in_place)
{
    tu_threads(2);
    long n = 100003; /* above the parallel threshold, odd */
    float *inp = rnd(n, 5.0f, 71);
    inp[0] = -3.0f;
    inp[1] = 0.0f;
    inp[2] = 3.0f;
    inp[3] = -2.9999f;
    for (size_t a = 0; a < 4; a++) {
        float *out = tu_zeros(n), *io = tu_copy(inp, n);
        ofa_act_forward(out, inp, n, all_acts[a]);
        ofa_act_forward(io, io, n, all_acts[a]);
        long bad = 0;
        for (long i = 0; i < n; i++)
            bad += !(fabs(out[i] - ref_act(inp[i], all_acts[a])) <= 1e-6);
        ck_assert_msg(bad == 0, "act %d: %ld wrong values", (int)all_acts[a], bad);
        ck_assert(memcmp(io, out, sizeof(float) * n) == 0);
        free(out);
        free(io);
    }
    free(inp);
}
END_TEST

struct act_ctx {
    float *out, *inp;
    const float *r;
    long n;
    enum ofa_act act;
};

static double act_loss(void *p)
{
    struct act_ctx *a = p;
    ofa_act_forward(a->out, a->inp, a->n, a->act);
    return tu_dot(a->out, a->r, a->n);
}

START_TEST(test_act_backward_matches_fd)
{
    tu_threads(2);
    const float h = 1e-3f;
    long n = 257;
    for (size_t a = 0; a < 4; a++) {
        struct act_ctx c = {.out = tu_zeros(n), .inp = rnd(n, 5.0f, 81),
                            .r = rnd(n, 1.0f, 82), .n = n, .act = all_acts[a]};
        /* Keep every point at least 3h from the kinks at -3, 0 and 3. */
        static const float kinks[] = {-3.0f, 0.0f, 3.0f};
        for (long i = 0; i < n; i++)
            for (int k = 0; k < 3; k++)
                if (fabsf(c.inp[i] - kinks[k]) < 3 * h)
                    c.inp[i] = kinks[k] + (c.inp[i] < kinks[k] ? -0.1f : 0.1f);
        float *d = tu_zeros(n), *ng = tu_zeros(n);
        ofa_act_backward(d, c.r, c.inp, n, c.act);
        tu_numgrad(act_loss, &c, c.inp, n, h, ng);
        ck_assert_msg(tu_nmse(d, ng, n) < FD_TOL, "act %d: %g", (int)c.act, tu_nmse(d, ng, n));
        free(c.out); free(c.inp); free((float *)c.r); free(d); free(ng);
    }
}
END_TEST

START_TEST(test_act_backward_uses_pytorch_kink_conventions)
{
    tu_threads(2);
    float x[3] = {-3.0f, 0.0f, 3.0f}, g[3] = {1, 1, 1};
    float d[3] = {0};
    ofa_act_backward(d, g, x, 3, OFA_ACT_RELU);
    ck_assert(d[0] == 0 && d[1] == 0 && d[2] == 1);
    memset(d, 0, sizeof d);
    ofa_act_backward(d, g, x, 3, OFA_ACT_HSWISH); /* x/3 + 1/2 on [-3, 3] */
    ck_assert(d[0] == -0.5f && d[1] == 0.5f && d[2] == 1.5f);
    memset(d, 0, sizeof d);
    ofa_act_backward(d, g, x, 3, OFA_ACT_HSIGMOID); /* 1/6 on (-3, 3) */
    ck_assert(d[0] == 0 && d[1] == 1.0f / 6.0f && d[2] == 0);
}
END_TEST

START_TEST(test_act_backward_accumulates)
{
    tu_threads(2);
    long n = 70001;
    float *inp = rnd(n, 5.0f, 91), *dout = rnd(n, 1.0f, 92);
    for (size_t a = 0; a < 4; a++) {
        float *d1 = tu_zeros(n), *d2 = tu_zeros(n);
        ofa_act_backward(d1, dout, inp, n, all_acts[a]);
        ofa_act_backward(d2, dout, inp, n, all_acts[a]);
        ofa_act_backward(d2, dout, inp, n, all_acts[a]);
        long bad = 0;
        for (long i = 0; i < n; i++)
            bad += d2[i] != 2 * d1[i];
        ck_assert_int_eq(bad, 0);
        free(d1);
        free(d2);
    }
    free(inp);
    free(dout);
}
END_TEST

/* =========================== average pooling =========================== */

START_TEST(test_avgpool_forward_matches_reference)
{
    tu_threads(2);
    static const int sh[][3] = {{1, 49, 13}, {3, 9, 70}, {2, 1, 5}, {4, 196, 130}, {3, 49, 600}};
    for (size_t s = 0; s < sizeof sh / sizeof sh[0]; s++) {
        int N = sh[s][0], HW = sh[s][1], C = sh[s][2];
        float *inp = rnd((long)N * HW * C, 1.0f, 101), *out = tu_zeros((long)N * C);
        double *ref = calloc((size_t)N * C, sizeof(double));
        for (int n = 0; n < N; n++)
            for (int p = 0; p < HW; p++)
                for (int c = 0; c < C; c++)
                    ref[n * C + c] += inp[((long)n * HW + p) * C + c] / (double)HW;
        ofa_avgpool_forward(out, inp, N, HW, C);
        ck_assert_msg(nmse_fd(out, ref, (long)N * C) < REF_TOL, "shape %zu", s);
        free(inp); free(out); free(ref);
    }
}
END_TEST

struct pool_ctx {
    float *out, *inp;
    const float *r;
    int N, HW, C;
};

static double pool_loss(void *p)
{
    struct pool_ctx *q = p;
    ofa_avgpool_forward(q->out, q->inp, q->N, q->HW, q->C);
    return tu_dot(q->out, q->r, (long)q->N * q->C);
}

START_TEST(test_avgpool_backward_matches_fd_and_accumulates)
{
    tu_threads(2);
    int N = 2, HW = 5, C = 7;
    long n = (long)N * HW * C;
    struct pool_ctx q = {.out = tu_zeros(N * C), .inp = rnd(n, 1.0f, 111),
                         .r = rnd(N * C, 1.0f, 112), .N = N, .HW = HW, .C = C};
    float *d = tu_zeros(n), *ng = tu_zeros(n);
    ofa_avgpool_backward(d, q.r, N, HW, C);
    /* Linear op: central differences are exact up to rounding, so h = 1e-2. */
    tu_numgrad(pool_loss, &q, q.inp, n, 1e-2f, ng);
    ck_assert(tu_nmse(d, ng, n) < FD_TOL);
    float *d2 = tu_copy(d, n);
    ofa_avgpool_backward(d2, q.r, N, HW, C);
    long bad = 0;
    for (long i = 0; i < n; i++)
        bad += d2[i] != 2 * d[i];
    ck_assert_int_eq(bad, 0);
    free(q.out); free(q.inp); free((float *)q.r); free(d); free(ng); free(d2);
}
END_TEST

/* =============================== dropout =============================== */

START_TEST(test_dropout_mask_has_rate_and_scale)
{
    tu_threads(2);
    long n = 200000;
    const float p = 0.2f;
    float *inp = rnd(n, 1.0f, 121), *out = tu_zeros(n), *mask = tu_zeros(n);
    struct ofa_rng rng;
    ofa_rng_seed(&rng, 7);
    ofa_dropout_forward(out, mask, inp, n, p, &rng);
    long kept = 0, bad = 0;
    double msum = 0;
    for (long i = 0; i < n; i++) {
        bad += !(mask[i] == 0.0f || mask[i] == 1.0f / (1.0f - p));
        bad += out[i] != inp[i] * mask[i];
        kept += mask[i] != 0.0f;
        msum += mask[i];
    }
    /* Binomial: the kept fraction has std sqrt(0.16 / n) = 9e-4; 5.5 sigma. */
    ck_assert_msg(fabs((double)kept / n - 0.8) < 5e-3, "kept %g", (double)kept / n);
    ck_assert(fabs(msum / n - 1.0) < 7e-3);
    ck_assert_int_eq(bad, 0);
    /* p = 0 keeps everything unscaled. */
    ofa_dropout_forward(out, mask, inp, n, 0.0f, &rng);
    for (long i = 0; i < n; i++)
        bad += mask[i] != 1.0f || out[i] != inp[i];
    ck_assert_int_eq(bad, 0);
    free(inp); free(out); free(mask);
}
END_TEST

START_TEST(test_dropout_is_reproducible_from_rng_state)
{
    tu_threads(2);
    long n = 100001;
    float *inp = rnd(n, 1.0f, 131);
    float *o1 = tu_zeros(n), *m1 = tu_zeros(n), *o2 = tu_zeros(n), *m2 = tu_zeros(n);
    struct ofa_rng a, b;
    ofa_rng_seed(&a, 99);
    ofa_rng_seed(&b, 99);
    ofa_dropout_forward(o1, m1, inp, n, 0.3f, &a);
    float *io = tu_copy(inp, n); /* in place */
    ofa_dropout_forward(io, m2, io, n, 0.3f, &b);
    ck_assert(memcmp(m1, m2, sizeof(float) * n) == 0);
    ck_assert(memcmp(o1, io, sizeof(float) * n) == 0);
    ck_assert(memcmp(&a, &b, sizeof a) == 0);
    /* The advanced state gives a different mask. */
    ofa_dropout_forward(o2, m2, inp, n, 0.3f, &a);
    ck_assert(memcmp(m1, m2, sizeof(float) * n) != 0);
    free(inp); free(o1); free(m1); free(o2); free(m2); free(io);
}
END_TEST

struct drop_ctx {
    float *out, *mask, *inp;
    const float *r;
    long n;
};

static double drop_loss(void *p)
{
    struct drop_ctx *d = p;
    struct ofa_rng rng;
    ofa_rng_seed(&rng, 5); /* the same mask on every evaluation */
    ofa_dropout_forward(d->out, d->mask, d->inp, d->n, 0.4f, &rng);
    return tu_dot(d->out, d->r, d->n);
}

START_TEST(test_dropout_backward_matches_fd_and_accumulates)
{
    tu_threads(2);
    long n = 301;
    struct drop_ctx c = {.out = tu_zeros(n), .mask = tu_zeros(n), .inp = rnd(n, 1.0f, 141),
                         .r = rnd(n, 1.0f, 142), .n = n};
    drop_loss(&c);
    float *d = tu_zeros(n), *ng = tu_zeros(n);
    ofa_dropout_backward(d, c.r, c.mask, n);
    tu_numgrad(drop_loss, &c, c.inp, n, 1e-2f, ng); /* linear: h = 1e-2 */
    ck_assert(tu_nmse(d, ng, n) < FD_TOL);
    float *d2 = tu_copy(d, n);
    ofa_dropout_backward(d2, c.r, c.mask, n);
    long bad = 0;
    for (long i = 0; i < n; i++)
        bad += d2[i] != 2 * d[i];
    ck_assert_int_eq(bad, 0);
    free(c.out); free(c.mask); free(c.inp); free((float *)c.r); free(d); free(ng); free(d2);
}
END_TEST

/* ============================ squeeze-excite ============================ */

struct se_shape {
    int N, HW, C, R, ld1, ld2;
};

/* out [N,HW,C], caches pooled [N,C], hidden [N,R], gate [N,C], in double. */
static void ref_se(double *out, double *pooled, double *hidden, double *gate, const float *inp,
                   const float *w1, const float *b1, const float *w2, const float *b2,
                   struct se_shape s)
{
    for (int n = 0; n < s.N; n++) {
        for (int c = 0; c < s.C; c++) {
            double a = 0;
            for (int p = 0; p < s.HW; p++)
                a += inp[((long)n * s.HW + p) * s.C + c];
            pooled[n * s.C + c] = a / s.HW;
        }
        for (int r = 0; r < s.R; r++) {
            double a = b1[r];
            for (int c = 0; c < s.C; c++)
                a += (double)w1[r * s.ld1 + c] * pooled[n * s.C + c];
            hidden[n * s.R + r] = a;
        }
        for (int c = 0; c < s.C; c++) {
            double a = b2[c];
            for (int r = 0; r < s.R; r++)
                a += (double)w2[c * s.ld2 + r] * fmax(hidden[n * s.R + r], 0.0);
            gate[n * s.C + c] = a;
        }
        for (int p = 0; p < s.HW; p++)
            for (int c = 0; c < s.C; c++) {
                long i = ((long)n * s.HW + p) * s.C + c;
                out[i] = inp[i] * ref_act(gate[n * s.C + c], OFA_ACT_HSIGMOID);
            }
    }
}

struct se_data {
    struct se_shape s;
    float *inp, *w1, *b1, *w2, *b2, *out, *pooled, *hidden, *gate;
    const float *r;
};

static void se_alloc(struct se_data *d, struct se_shape s, unsigned long tag)
{
    long x = (long)s.N * s.HW * s.C;
    d->s = s;
    d->inp = rnd(x, 1.0f, tag);
    /* Per-channel offsets keep the pooled values away from zero. */
    for (long i = 0; i < x; i++)
        d->inp[i] += 0.5f * (float)((i % s.C) % 3) - 0.4f;
    d->w1 = rnd((long)s.R * s.ld1, 0.6f, tag + 1);
    d->b1 = rnd(s.R, 0.5f, tag + 2);
    d->w2 = rnd((long)s.C * s.ld2, 0.8f, tag + 3);
    d->b2 = rnd(s.C, 1.0f, tag + 4);
    d->r = rnd(x, 1.0f, tag + 5);
    d->out = tu_zeros(x);
    d->pooled = tu_zeros((long)s.N * s.C);
    d->hidden = tu_zeros((long)s.N * s.R);
    d->gate = tu_zeros((long)s.N * s.C);
}

static void se_free(struct se_data *d)
{
    free(d->inp); free(d->w1); free(d->b1); free(d->w2); free(d->b2); free((float *)d->r);
    free(d->out); free(d->pooled); free(d->hidden); free(d->gate);
}

static double se_loss(void *p)
{
    struct se_data *d = p;
    struct se_shape s = d->s;
    ofa_se_forward(d->out, d->pooled, d->hidden, d->gate, d->inp, d->w1, s.ld1, d->b1,
                   d->w2, s.ld2, d->b2, s.N, s.HW, s.C, s.R);
    return tu_dot(d->out, d->r, (long)s.N * s.HW * s.C);
}

START_TEST(test_se_forward_matches_reference)
{
    tu_threads(2);
    static const struct se_shape sh[] = {
        {1, 9, 13, 5, 16, 7}, {3, 49, 70, 18, 80, 24}, {2, 1, 8, 8, 8, 8},
        {2, 196, 120, 32, 120, 40}, {3, 49, 600, 150, 640, 160},
    };
    for (size_t k = 0; k < sizeof sh / sizeof sh[0]; k++) {
        struct se_shape s = sh[k];
        struct se_data d;
        se_alloc(&d, s, 200);
        long x = (long)s.N * s.HW * s.C;
        double *out = malloc(sizeof(double) * x), *pooled = malloc(sizeof(double) * s.N * s.C);
        double *hidden = malloc(sizeof(double) * s.N * s.R), *gate = malloc(sizeof(double) * s.N * s.C);
        ref_se(out, pooled, hidden, gate, d.inp, d.w1, d.b1, d.w2, d.b2, s);
        se_loss(&d);
        ck_assert_msg(nmse_fd(d.out, out, x) < REF_TOL, "out, shape %zu", k);
        ck_assert(nmse_fd(d.pooled, pooled, (long)s.N * s.C) < REF_TOL);
        ck_assert(nmse_fd(d.hidden, hidden, (long)s.N * s.R) < REF_TOL);
        ck_assert(nmse_fd(d.gate, gate, (long)s.N * s.C) < REF_TOL);
        free(out); free(pooled); free(hidden); free(gate);
        se_free(&d);
    }
}
END_TEST

START_TEST(test_se_backward_matches_fd)
{
    tu_threads(2);
    /* ld1 > C and ld2 > R: the stored matrices are wider than the active ones. */
    static const struct se_shape sh[] = {{2, 9, 13, 5, 16, 7}, {1, 4, 6, 3, 6, 4}};
    /* With the relu and hardsigmoid in fixed linear pieces the output is at
     * most quadratic in any one input or parameter, so central differences are
     * exact up to rounding: a large h = 1e-2 keeps the rounding error small.
     * The test asserts that no step crosses a kink. */
    const float h = 1e-2f;
    for (size_t k = 0; k < sizeof sh / sizeof sh[0]; k++) {
        struct se_shape s = sh[k];
        struct se_data d;
        se_alloc(&d, s, 300 + 10 * k);
        long x = (long)s.N * s.HW * s.C;
        /* Choose b1 so that every hidden unit is at least 0.3 from the relu
         * kink, alternately on (alive) and off (dead). */
        memset(d.b1, 0, sizeof(float) * s.R);
        se_loss(&d);
        for (int r = 0; r < s.R; r++) {
            float m = 0;
            for (int n = 0; n < s.N; n++)
                m = fmaxf(m, fabsf(d.hidden[n * s.R + r]));
            d.b1[r] = (r % 2 ? -1.0f : 1.0f) * (0.3f + m);
        }
        se_loss(&d);
        for (long i = 0; i < (long)s.N * s.R; i++)
            ck_assert_msg(fabsf(d.hidden[i]) > 0.25f, "hidden %g too close to the relu kink",
                          d.hidden[i]);
        for (long i = 0; i < (long)s.N * s.C; i++)
            ck_assert_msg(fabsf(d.gate[i]) < 2.8f, "gate %g too close to a kink", d.gate[i]);
        float *dinp = tu_zeros(x), *dw1 = tu_zeros((long)s.R * s.ld1), *db1 = tu_zeros(s.R);
        float *dw2 = tu_zeros((long)s.C * s.ld2), *db2 = tu_zeros(s.C);
        float *scratch = tu_zeros((long)ofa_se_scratch_size(s.N, s.C, s.R));
        ofa_se_backward(dinp, 1, dw1, db1, dw2, db2, scratch, d.r, d.inp, d.pooled, d.hidden,
                        d.gate, d.w1, s.ld1, d.w2, s.ld2, s.N, s.HW, s.C, s.R);
        float *ng = tu_zeros(x);
        tu_numgrad(se_loss, &d, d.inp, x, h, ng);
        ck_assert_msg(tu_nmse(dinp, ng, x) < FD_TOL, "dinp %g", tu_nmse(dinp, ng, x));
        free(ng);
        /* The whole stored matrices: columns beyond the active width have a
         * zero numerical gradient, and the analytic one must stay zero. */
        struct { float *p, *g; long n; const char *name; } pr[] = {
            {d.w1, dw1, (long)s.R * s.ld1, "dw1"}, {d.b1, db1, s.R, "db1"},
            {d.w2, dw2, (long)s.C * s.ld2, "dw2"}, {d.b2, db2, s.C, "db2"},
        };
        for (int j = 0; j < 4; j++) {
            ng = tu_zeros(pr[j].n);
            tu_numgrad(se_loss, &d, pr[j].p, pr[j].n, h, ng);
            double e = tu_nmse(pr[j].g, ng, pr[j].n);
            ck_assert_msg(e < FD_TOL, "%s %g", pr[j].name, e);
            free(ng);
        }
        for (int r = 0; r < s.R; r++)
            ck_assert(all_zero(dw1 + (long)r * s.ld1 + s.C, s.ld1 - s.C));
        for (int c = 0; c < s.C; c++)
            ck_assert(all_zero(dw2 + (long)c * s.ld2 + s.R, s.ld2 - s.R));
        free(dinp); free(dw1); free(db1); free(dw2); free(db2); free(scratch);
        se_free(&d);
    }
}
END_TEST

START_TEST(test_se_backward_accumulates)
{
    tu_threads(2);
    struct se_shape s = {3, 49, 300, 18, 310, 24};
    struct se_data d;
    se_alloc(&d, s, 400);
    se_loss(&d);
    long x = (long)s.N * s.HW * s.C;
    long nw1 = (long)s.R * s.ld1, nw2 = (long)s.C * s.ld2;
    float *g1[5], *g2[5];
    long len[5] = {x, nw1, s.R, nw2, s.C};
    for (int j = 0; j < 5; j++) {
        g1[j] = tu_zeros(len[j]);
        g2[j] = tu_zeros(len[j]);
    }
    float *scratch = tu_zeros((long)ofa_se_scratch_size(s.N, s.C, s.R));
    /* Garbage in the scratch must not matter. */
    for (size_t i = 0; i < ofa_se_scratch_size(s.N, s.C, s.R); i++)
        scratch[i] = NAN;
    ofa_se_backward(g1[0], 1, g1[1], g1[2], g1[3], g1[4], scratch, d.r, d.inp, d.pooled,
                    d.hidden, d.gate, d.w1, s.ld1, d.w2, s.ld2, s.N, s.HW, s.C, s.R);
    for (int rep = 0; rep < 2; rep++)
        ofa_se_backward(g2[0], 1, g2[1], g2[2], g2[3], g2[4], scratch, d.r, d.inp, d.pooled,
                        d.hidden, d.gate, d.w1, s.ld1, d.w2, s.ld2, s.N, s.HW, s.C, s.R);
    /* accumulate = 0 overwrites every element with what += adds to zeros */
    float *dset = tu_zeros(x), *gw[4];
    for (long i = 0; i < x; i++)
        dset[i] = NAN;
    for (int j = 0; j < 4; j++)
        gw[j] = tu_zeros(len[j + 1]);
    ofa_se_backward(dset, 0, gw[0], gw[1], gw[2], gw[3], scratch, d.r, d.inp, d.pooled,
                    d.hidden, d.gate, d.w1, s.ld1, d.w2, s.ld2, s.N, s.HW, s.C, s.R);
    ck_assert_msg(memcmp(dset, g1[0], (size_t)x * sizeof *dset) == 0,
                  "SE: overwriting dinp differs from adding to zeros");
    free(dset);
    for (int j = 0; j < 4; j++)
        free(gw[j]);
    for (int j = 0; j < 5; j++) {
        for (long i = 0; i < len[j]; i++)
            g1[j][i] *= 2;
        ck_assert_msg(tu_nmse(g2[j], g1[j], len[j]) < 1e-12, "gradient %d", j);
        free(g1[j]);
        free(g2[j]);
    }
    free(scratch);
    se_free(&d);
}
END_TEST

/* ============================ bilinear resize =========================== */

/* PyTorch's align_corners=False formula, written out in double. */
static void ref_src(int dst, int in, int out, int *i0, int *i1, double *l1)
{
    double s = ((double)dst + 0.5) * in / out - 0.5;
    if (s < 0)
        s = 0;
    int i = (int)floor(s);
    if (i > in - 1)
        i = in - 1;
    *i0 = i;
    *i1 = i + 1 < in ? i + 1 : in - 1;
    *l1 = s - i;
}

static void ref_resize(double *out, const float *inp, int N, int H, int W, int Ho, int Wo, int C)
{
    for (int n = 0; n < N; n++)
        for (int y = 0; y < Ho; y++)
            for (int x = 0; x < Wo; x++) {
                int y0, y1, x0, x1;
                double ly, lx;
                ref_src(y, H, Ho, &y0, &y1, &ly);
                ref_src(x, W, Wo, &x0, &x1, &lx);
                for (int c = 0; c < C; c++) {
#define IN(yy, xx) (double)inp[(((long)n * H + (yy)) * W + (xx)) * C + c]
                    out[(((long)n * Ho + y) * Wo + x) * C + c] =
                        (1 - ly) * ((1 - lx) * IN(y0, x0) + lx * IN(y0, x1)) +
                        ly * ((1 - lx) * IN(y1, x0) + lx * IN(y1, x1));
#undef IN
                }
            }
}

/* N, H, W, Ho, Wo, C: down 28->20 and 28->24, up 20->28, non-square 7x5 <-> 5x7,
 * identity, and a large one above the parallel threshold. */
static const int rs_shapes[][6] = {
    {2, 28, 28, 20, 20, 3}, {1, 28, 28, 24, 24, 5}, {2, 20, 20, 28, 28, 3},
    {2, 7, 5, 5, 7, 9},     {1, 6, 9, 4, 13, 2},    {1, 8, 8, 8, 8, 4},
    {4, 32, 32, 24, 24, 17},
};

START_TEST(test_resize_forward_matches_pytorch_formula)
{
    tu_threads(2);
    for (size_t k = 0; k < sizeof rs_shapes / sizeof rs_shapes[0]; k++) {
        int N = rs_shapes[k][0], H = rs_shapes[k][1], W = rs_shapes[k][2];
        int Ho = rs_shapes[k][3], Wo = rs_shapes[k][4], C = rs_shapes[k][5];
        long ni = (long)N * H * W * C, no = (long)N * Ho * Wo * C;
        float *inp = rnd(ni, 1.0f, 500 + k), *out = tu_zeros(no);
        double *ref = malloc(sizeof(double) * no);
        ofa_resize_bilinear_forward(out, inp, N, H, W, Ho, Wo, C);
        ref_resize(ref, inp, N, H, W, Ho, Wo, C);
        double m = 0;
        for (long i = 0; i < no; i++)
            m = fmax(m, fabs(out[i] - ref[i]));
        /* float source coordinates as in PyTorch vs double here: ~1e-6. */
        ck_assert_msg(m < 1e-5, "shape %zu: max error %g", k, m);
        if (H == Ho && W == Wo)
            ck_assert(memcmp(out, inp, sizeof(float) * ni) == 0);
        free(inp); free(out); free(ref);
    }
}
END_TEST

START_TEST(test_resize_matches_hand_computed_values)
{
    tu_threads(2);
    /* F.interpolate([[0, 1]], size=4, mode='linear') = [0, 0.25, 0.75, 1]:
     * sources -0.25 (clamped to 0), 0.25, 0.75, 1.25 (edge). */
    float a[2] = {0, 1}, b[4];
    ofa_resize_bilinear_forward(b, a, 1, 1, 2, 1, 4, 1);
    ck_assert(b[0] == 0.0f && b[1] == 0.25f && b[2] == 0.75f && b[3] == 1.0f);
    /* 4 -> 2: sources 0.5 and 2.5, i.e. pair averages. */
    float c[4] = {0, 1, 2, 3}, e[2];
    ofa_resize_bilinear_forward(e, c, 1, 4, 1, 2, 1, 1);
    ck_assert(e[0] == 0.5f && e[1] == 2.5f);
}
END_TEST

struct rs_ctx {
    float *out, *inp;
    const float *r;
    int N, H, W, Ho, Wo, C;
};

static double rs_loss(void *p)
{
    struct rs_ctx *q = p;
    ofa_resize_bilinear_forward(q->out, q->inp, q->N, q->H, q->W, q->Ho, q->Wo, q->C);
    return tu_dot(q->out, q->r, (long)q->N * q->Ho * q->Wo * q->C);
}

START_TEST(test_resize_backward_matches_fd)
{
    tu_threads(2);
    static const int sh[][6] = {{2, 7, 5, 5, 7, 3}, {1, 6, 6, 4, 4, 2}, {1, 4, 5, 9, 7, 2}};
    for (size_t k = 0; k < sizeof sh / sizeof sh[0]; k++) {
        struct rs_ctx q = {.N = sh[k][0], .H = sh[k][1], .W = sh[k][2], .Ho = sh[k][3],
                           .Wo = sh[k][4], .C = sh[k][5]};
        long ni = (long)q.N * q.H * q.W * q.C, no = (long)q.N * q.Ho * q.Wo * q.C;
        q.inp = rnd(ni, 1.0f, 600 + k);
        q.out = tu_zeros(no);
        q.r = rnd(no, 1.0f, 610 + k);
        float *d = tu_zeros(ni), *ng = tu_zeros(ni);
        ofa_resize_bilinear_backward(d, q.r, q.N, q.H, q.W, q.Ho, q.Wo, q.C);
        tu_numgrad(rs_loss, &q, q.inp, ni, 1e-2f, ng); /* linear: h = 1e-2 */
        ck_assert_msg(tu_nmse(d, ng, ni) < FD_TOL, "shape %zu: %g", k, tu_nmse(d, ng, ni));
        free(q.inp); free(q.out); free((float *)q.r); free(d); free(ng);
    }
}
END_TEST

START_TEST(test_resize_backward_is_adjoint_and_accumulates)
{
    tu_threads(2);
    /* <resize(x), y> = <x, resize^T(y)> on every shape, large ones included. */
    for (size_t k = 0; k < sizeof rs_shapes / sizeof rs_shapes[0]; k++) {
        int N = rs_shapes[k][0], H = rs_shapes[k][1], W = rs_shapes[k][2];
        int Ho = rs_shapes[k][3], Wo = rs_shapes[k][4], C = rs_shapes[k][5];
        long ni = (long)N * H * W * C, no = (long)N * Ho * Wo * C;
        float *x = rnd(ni, 1.0f, 700 + k), *y = rnd(no, 1.0f, 710 + k);
        float *rx = tu_zeros(no), *ry = tu_zeros(ni);
        ofa_resize_bilinear_forward(rx, x, N, H, W, Ho, Wo, C);
        ofa_resize_bilinear_backward(ry, y, N, H, W, Ho, Wo, C);
        double a = tu_dot(rx, y, no), b = tu_dot(x, ry, ni);
        ck_assert_msg(fabs(a - b) <= 1e-5 * (fabs(a) + sqrt((double)no)), "shape %zu: %g vs %g",
                      k, a, b);
        float *ry2 = tu_copy(ry, ni);
        ofa_resize_bilinear_backward(ry2, y, N, H, W, Ho, Wo, C);
        for (long i = 0; i < ni; i++)
            ry[i] *= 2;
        ck_assert(tu_nmse(ry2, ry, ni) < 1e-12);
        free(x); free(y); free(rx); free(ry); free(ry2);
    }
}
END_TEST

/* ================================ losses ================================ */

/* log softmax(z / T) of one row, in double. */
static void ref_logsoftmax(double *lp, const float *z, int K, double T)
{
    double m = -INFINITY, s = 0;
    for (int k = 0; k < K; k++)
        m = fmax(m, z[k] / T);
    for (int k = 0; k < K; k++)
        s += exp(z[k] / T - m);
    for (int k = 0; k < K; k++)
        lp[k] = z[k] / T - m - log(s);
}

START_TEST(test_softmax_matches_reference_and_is_stable)
{
    tu_threads(2);
    static const struct { int N, K; float T, a; } sh[] = {
        {1, 10, 1.0f, 3.0f}, {5, 1000, 2.5f, 5.0f}, {3, 7, 1.0f, 1000.0f}, {2, 3, 0.5f, 100.0f},
    };
    for (size_t k = 0; k < sizeof sh / sizeof sh[0]; k++) {
        int N = sh[k].N, K = sh[k].K;
        float *z = rnd((long)N * K, sh[k].a, 800 + k), *p = tu_zeros((long)N * K);
        double *lp = malloc(sizeof(double) * K);
        ofa_softmax_forward(p, z, N, K, sh[k].T);
        for (int n = 0; n < N; n++) {
            ref_logsoftmax(lp, z + (long)n * K, K, sh[k].T);
            double s = 0;
            for (int j = 0; j < K; j++) {
                double e = exp(lp[j]);
                ck_assert_msg(isfinite(p[n * K + j]), "shape %zu", k);
                ck_assert(fabs(p[n * K + j] - e) <= 1e-6 * e + 1e-30);
                s += p[n * K + j];
            }
            ck_assert(fabs(s - 1) < 1e-5);
        }
        free(z); free(p); free(lp);
    }
}
END_TEST

START_TEST(test_ce_forward_matches_hand_computed_value)
{
    tu_threads(2);
    /* logits (1, 2, 3), label 0, smoothing 0.1 -> target (0.9333, 0.0333, 0.0333):
     * loss = lse - 0.9 * z_0 - 0.1 * mean(z) = 3 + ln(1 + e^-1 + e^-2) - 1.1
     *      = 2.3076059644. */
    float z[3] = {1, 2, 3}, p[3];
    int label = 0;
    float loss = ofa_ce_forward(p, z, &label, 1, 3, 0.1f);
    ck_assert_double_eq_tol(loss, 2.3076059644, 1e-6);
    ck_assert_double_eq_tol(p[2], exp(3 - 3.40760596444438), 1e-7);
    /* Without smoothing: -log p_0 = lse - 1. */
    loss = ofa_ce_forward(p, z, &label, 1, 3, 0.0f);
    ck_assert_double_eq_tol(loss, 2.40760596444438, 1e-6);
}
END_TEST

/* Mean label-smoothed CE of logits [N,K], in double. */
static double ref_ce(const float *z, const int *labels, int N, int K, double eps)
{
    double *lp = malloc(sizeof(double) * K), tot = 0;
    for (int n = 0; n < N; n++) {
        ref_logsoftmax(lp, z + (long)n * K, K, 1.0);
        for (int k = 0; k < K; k++)
            tot -= (eps / K + (k == labels[n] ? 1 - eps : 0)) * lp[k];
    }
    free(lp);
    return tot / N;
}

START_TEST(test_ce_forward_matches_reference)
{
    tu_threads(2);
    int N = 6, K = 1000;
    float *z = rnd((long)N * K, 8.0f, 901), *p = tu_zeros((long)N * K);
    int labels[6] = {0, 999, 5, 500, 17, 3};
    double ref = ref_ce(z, labels, N, K, 0.1);
    float loss = ofa_ce_forward(p, z, labels, N, K, 0.1f);
    ck_assert_msg(fabs(loss - ref) <= 1e-6 * ref, "%g vs %g", loss, ref);
    free(z);
    free(p);
}
END_TEST

struct ce_ctx {
    float *probs, *logits;
    const float *tprobs;
    const int *labels;
    int N, K;
    float eps, T;
};

static double ce_loss(void *p)
{
    struct ce_ctx *c = p;
    return ofa_ce_forward(c->probs, c->logits, c->labels, c->N, c->K, c->eps);
}

static double kd_loss(void *p)
{
    struct ce_ctx *c = p;
    return ofa_kd_forward(c->probs, c->logits, c->tprobs, c->N, c->K, c->T);
}

START_TEST(test_ce_backward_matches_fd_and_accumulates)
{
    tu_threads(2);
    int N = 4, K = 11;
    long n = (long)N * K;
    int labels[4] = {0, 10, 3, 3};
    struct ce_ctx c = {.probs = tu_zeros(n), .logits = rnd(n, 3.0f, 1001), .labels = labels,
                       .N = N, .K = K, .eps = 0.1f};
    ce_loss(&c);
    float *d = tu_zeros(n), *ng = tu_zeros(n);
    ofa_ce_backward(d, c.probs, labels, N, K, c.eps, 1.0f);
    /* The loss is returned as a float (~2.4, rounding 1e-7); h = 1e-2 makes
     * the rounding part 1e-5 against gradients ~0.02 and truncation O(h^2). */
    tu_numgrad(ce_loss, &c, c.logits, n, 1e-2f, ng);
    ck_assert_msg(tu_nmse(d, ng, n) < FD_TOL, "%g", tu_nmse(d, ng, n));
    /* scale multiplies, calls accumulate: 0.5 + 1.5 = 2 times the gradient.
     * (tu_numgrad left probs at a perturbed point: recompute them.) */
    ce_loss(&c);
    float *d2 = tu_zeros(n);
    ofa_ce_backward(d2, c.probs, labels, N, K, c.eps, 0.5f);
    ofa_ce_backward(d2, c.probs, labels, N, K, c.eps, 1.5f);
    for (long i = 0; i < n; i++)
        d[i] *= 2;
    ck_assert(tu_nmse(d2, d, n) < 1e-12);
    free(c.probs); free(c.logits); free(d); free(ng); free(d2);
}
END_TEST

START_TEST(test_kd_equals_t2_times_soft_cross_entropy)
{
    tu_threads(2);
    int N = 5, K = 100;
    long n = (long)N * K;
    const float T = 4.0f;
    float *z = rnd(n, 6.0f, 1101), *tz = rnd(n, 6.0f, 1102);
    float *tp = tu_zeros(n), *p = tu_zeros(n);
    ofa_softmax_forward(tp, tz, N, K, T);
    double *lp = malloc(sizeof(double) * K), ref = 0;
    for (int i = 0; i < N; i++) {
        ref_logsoftmax(lp, z + (long)i * K, K, T);
        for (int k = 0; k < K; k++)
            ref -= tp[i * K + k] * lp[k];
    }
    ref = T * T * ref / N;
    float loss = ofa_kd_forward(p, z, tp, N, K, T);
    ck_assert_msg(fabs(loss - ref) <= 1e-6 * fabs(ref), "%g vs %g", loss, ref);
    /* One-hot soft targets: KD = T^2 * CE(logits / T) without smoothing. */
    int labels[5] = {1, 2, 3, 4, 99};
    memset(tp, 0, sizeof(float) * n);
    for (int i = 0; i < N; i++) {
        tp[i * K + labels[i]] = 1.0f;
        for (int k = 0; k < K; k++)
            z[i * K + k] /= T;
    }
    float ce = ofa_ce_forward(p, z, labels, N, K, 0.0f);
    for (long i = 0; i < n; i++)
        z[i] *= T;
    loss = ofa_kd_forward(p, z, tp, N, K, T);
    ck_assert_msg(fabs(loss - T * T * ce) <= 1e-5 * fabs(loss), "%g vs %g", loss, T * T * ce);
    free(z); free(tz); free(tp); free(p); free(lp);
}
END_TEST

START_TEST(test_kd_backward_matches_fd_and_accumulates)
{
    tu_threads(2);
    int N = 3, K = 9;
    long n = (long)N * K;
    float *tz = rnd(n, 3.0f, 1201), *tp = tu_zeros(n);
    struct ce_ctx c = {.probs = tu_zeros(n), .logits = rnd(n, 3.0f, 1202), .tprobs = tp,
                       .N = N, .K = K, .T = 2.0f};
    ofa_softmax_forward(tp, tz, N, K, c.T);
    kd_loss(&c);
    float *d = tu_zeros(n), *ng = tu_zeros(n);
    ofa_kd_backward(d, c.probs, tp, N, K, c.T, 1.0f);
    tu_numgrad(kd_loss, &c, c.logits, n, 1e-2f, ng); /* as for the CE test */
    ck_assert_msg(tu_nmse(d, ng, n) < FD_TOL, "%g", tu_nmse(d, ng, n));
    kd_loss(&c); /* tu_numgrad left probs at a perturbed point */
    float *d2 = tu_copy(d, n);
    ofa_kd_backward(d2, c.probs, tp, N, K, c.T, 1.0f);
    for (long i = 0; i < n; i++)
        d[i] *= 2;
    ck_assert(tu_nmse(d2, d, n) < 1e-12);
    free(tz); free(tp); free(c.probs); free(c.logits); free(d); free(ng); free(d2);
}
END_TEST

START_TEST(test_ce_aborts_on_out_of_range_label)
{
    tu_threads(2);
    float z[3] = {0, 0, 0}, p[3];
    int label = 3;
    ofa_ce_forward(p, z, &label, 1, 3, 0.0f);
}
END_TEST

static Suite *ops_misc_suite(void)
{
    Suite *s = suite_create("ops_misc");
    TCase *tc = tcase_create("bn");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_bn_train_forward_matches_reference);
    tcase_add_test(tc, test_bn_running_stats_follow_pytorch_momentum);
    tcase_add_test(tc, test_bn_eval_matches_reference_and_allows_in_place);
    tcase_add_test(tc, test_bn_batch_stats_accurate_for_large_mean_and_many_rows);
    tcase_add_test(tc, test_bn_train_backward_matches_fd);
    tcase_add_test(tc, test_bn_backward_matches_reference_on_large_shapes);
    tcase_add_test(tc, test_bn_backward_accumulates);
    tcase_add_test(tc, test_bn_act_backward_equals_act_then_bn);
    tcase_add_test(tc, test_bn_act_forward_equals_bn_then_act);
    tcase_add_test(tc, test_bn_is_bitwise_deterministic_with_2_threads);
    suite_add_tcase(s, tc);

    tc = tcase_create("act_pool_dropout");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_act_forward_matches_reference_and_allows_in_place);
    tcase_add_test(tc, test_act_backward_matches_fd);
    tcase_add_test(tc, test_act_backward_uses_pytorch_kink_conventions);
    tcase_add_test(tc, test_act_backward_accumulates);
    tcase_add_test(tc, test_avgpool_forward_matches_reference);
    tcase_add_test(tc, test_avgpool_backward_matches_fd_and_accumulates);
    tcase_add_test(tc, test_dropout_mask_has_rate_and_scale);
    tcase_add_test(tc, test_dropout_is_reproducible_from_rng_state);
    tcase_add_test(tc, test_dropout_backward_matches_fd_and_accumulates);
    suite_add_tcase(s, tc);

    tc = tcase_create("se");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_se_forward_matches_reference);
    tcase_add_test(tc, test_se_backward_matches_fd);
    tcase_add_test(tc, test_se_backward_accumulates);
    suite_add_tcase(s, tc);

    tc = tcase_create("resize");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_resize_forward_matches_pytorch_formula);
    tcase_add_test(tc, test_resize_matches_hand_computed_values);
    tcase_add_test(tc, test_resize_backward_matches_fd);
    tcase_add_test(tc, test_resize_backward_is_adjoint_and_accumulates);
    suite_add_tcase(s, tc);

    tc = tcase_create("loss");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_softmax_matches_reference_and_is_stable);
    tcase_add_test(tc, test_ce_forward_matches_hand_computed_value);
    tcase_add_test(tc, test_ce_forward_matches_reference);
    tcase_add_test(tc, test_ce_backward_matches_fd_and_accumulates);
    tcase_add_test(tc, test_kd_equals_t2_times_soft_cross_entropy);
    tcase_add_test(tc, test_kd_backward_matches_fd_and_accumulates);
    tcase_add_test_raise_signal(tc, test_ce_aborts_on_out_of_range_label, SIGABRT);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ops_misc_suite());
    srunner_run_all(sr, CK_NORMAL);
    int nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    return nf ? EXIT_FAILURE : EXIT_SUCCESS;
}
