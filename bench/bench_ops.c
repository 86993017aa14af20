/* bench_ops: speed of every op forward and backward at the shapes of the
 * reference supernet "mbv3-28" (largest subnet, batch 128 unless given), at 1
 * and 2 threads, against OpenBLAS sgemm measured in the same run.
 *
 * Compute-bound ops report GFLOP/s (multiply-add = 2 FLOPs; a backward counts
 * the input and the weight gradient). Memory-bound ops (BN, activations,
 * pooling, resize) report GB/s of tensor traffic (reads + writes of the
 * activation tensors, counted once each). Times are medians of 5 timed runs,
 * each repeated until it lasts at least 20 ms.
 *
 * usage: bench_ops [BATCH] [MAX_THREADS]
 */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "cli.h"
#include "ops.h"
#include "rng.h"
#include "util.h"

enum kind { PW, DW, CONV, BN, HSWISH, SE, POOL, RESIZE, LINEAR, CE };

struct bcase {
    const char *name;
    enum kind kind;
    int H, Cin, Cout, K, stride; /* H = W input size; Cout = SE R for SE */
};

/* Largest subnet of mbv3-28 (R28, D4, E6, K7); one row per distinct shape. */
static const struct bcase cases[] = {
    {"stem conv3x3 1->16", CONV, 28, 1, 16, 3, 1},
    {"first dw3x3 16", DW, 28, 16, 16, 3, 1},
    {"first pw 16->16", PW, 28, 16, 16, 1, 1},
    {"s1 expand 16->96", PW, 28, 16, 96, 1, 1},
    {"s1 dw7x7/2 96", DW, 28, 96, 96, 7, 2},
    {"s1 project 96->24", PW, 14, 96, 24, 1, 1},
    {"s1 expand 24->144", PW, 14, 24, 144, 1, 1},
    {"s1 dw7x7 144", DW, 14, 144, 144, 7, 1},
    {"s1 project 144->24", PW, 14, 144, 24, 1, 1},
    {"s2 dw7x7/2 144", DW, 14, 144, 144, 7, 2},
    {"s2 SE 144 (R40)", SE, 7, 144, 40, 1, 1},
    {"s2 project 144->40", PW, 7, 144, 40, 1, 1},
    {"s2 expand 40->240", PW, 7, 40, 240, 1, 1},
    {"s2 dw7x7 240", DW, 7, 240, 240, 7, 1},
    {"s3 dw7x7/2 240", DW, 7, 240, 240, 7, 2},
    {"s3 expand 64->384", PW, 4, 64, 384, 1, 1},
    {"s3 dw7x7 384", DW, 4, 384, 384, 7, 1},
    {"s4 expand 96->576", PW, 4, 96, 576, 1, 1},
    {"s4 dw7x7 576", DW, 4, 576, 576, 7, 1},
    {"s4 SE 576 (R144)", SE, 4, 576, 144, 1, 1},
    {"s4 project 576->96", PW, 4, 576, 96, 1, 1},
    {"head pw 96->384", PW, 4, 96, 384, 1, 1},
    {"classifier 384->10", LINEAR, 1, 384, 10, 1, 1},
    {"BN train 96ch @28", BN, 28, 96, 96, 1, 1},
    {"hswish 96ch @28", HSWISH, 28, 96, 96, 1, 1},
    {"avgpool 384 @4", POOL, 4, 384, 384, 1, 1},
    {"resize 28->20 1ch", RESIZE, 28, 1, 20, 1, 1},
    {"softmax CE 10", CE, 1, 10, 10, 1, 1},
};

struct bufs {
    float *a, *b, *c, *d, *e, *f, *g, *h, *w, *dw, *w2, *dw2, *b1, *db1, *b2, *db2, *scr;
    int *labels;
};

static const struct bcase *cur;
static int N;
static struct bufs B;

static int outsize(const struct bcase *c)
{
    if (c->kind == RESIZE)
        return c->Cout;
    if (c->kind == CONV)
        return ofa_conv_out_size(c->H, c->K, c->stride, c->K / 2);
    return (c->H - 1) / c->stride + 1;
}

static void run(int backward)
{
    const struct bcase *c = cur;
    long M = (long)N * c->H * c->H;
    int Ho = outsize(c);
    switch (c->kind) {
    case PW:
        if (!backward)
            ofa_pwconv_forward(B.b, B.a, B.w, c->Cin, M, c->Cin, c->Cout);
        else
            ofa_pwconv_backward(B.c, 0, B.dw, B.b, B.a, B.w, c->Cin, M, c->Cin, c->Cout);
        break;
    case DW:
        if (!backward)
            ofa_dwconv_forward(B.b, B.a, B.w, N, c->H, c->H, c->Cin, c->K, c->stride);
        else
            ofa_dwconv_backward(B.c, 0, B.dw, B.b, B.a, B.w, N, c->H, c->H, c->Cin, c->K,
                                c->stride);
        break;
    case CONV:
        if (!backward)
            ofa_conv2d_forward(B.b, B.d, B.a, B.w, N, c->H, c->H, c->Cin, c->Cout, c->K, c->stride,
                               c->K / 2);
        else
            ofa_conv2d_backward(NULL, B.dw, NULL, B.b, B.d, B.w, N, c->H, c->H, c->Cin, c->Cout,
                                c->K, c->stride, c->K / 2);
        break;
    case LINEAR:
        if (!backward)
            ofa_linear_forward(B.b, B.a, B.w, c->Cin, B.b1, N, c->Cin, c->Cout);
        else
            ofa_linear_backward(B.c, B.dw, B.db1, B.b, B.a, B.w, c->Cin, N, c->Cin, c->Cout);
        break;
    case BN:
        if (!backward)
            ofa_bn_forward_train(B.b, B.e, B.f, B.g, B.h, B.a, B.w, B.b1, M, c->Cin, 0.1f, 1e-5f);
        else
            ofa_bn_backward(B.c, B.dw, B.db1, B.b, B.a, B.e, B.f, B.w, M, c->Cin);
        break;
    case HSWISH:
        if (!backward)
            ofa_act_forward(B.b, B.a, M * c->Cin, OFA_ACT_HSWISH);
        else
            ofa_act_backward(B.c, B.b, B.a, M * c->Cin, OFA_ACT_HSWISH);
        break;
    case SE:
        if (!backward)
            ofa_se_forward(B.b, B.e, B.f, B.g, B.a, B.w, c->Cin, B.b1, B.w2, c->Cout, B.b2, N,
                           c->H * c->H, c->Cin, c->Cout);
        else
            ofa_se_backward(B.c, 0, B.dw, B.db1, B.dw2, B.db2, B.scr, B.b, B.a, B.e, B.f, B.g, B.w,
                            c->Cin, B.w2, c->Cout, N, c->H * c->H, c->Cin, c->Cout);
        break;
    case POOL:
        if (!backward)
            ofa_avgpool_forward(B.b, B.a, N, c->H * c->H, c->Cin);
        else
            ofa_avgpool_backward(B.c, B.b, N, c->H * c->H, c->Cin);
        break;
    case RESIZE:
        if (!backward)
            ofa_resize_bilinear_forward(B.b, B.a, N, c->H, c->H, Ho, Ho, c->Cin);
        else
            ofa_resize_bilinear_backward(B.c, B.b, N, c->H, c->H, Ho, Ho, c->Cin);
        break;
    case CE:
        if (!backward)
            ofa_ce_forward(B.b, B.a, B.labels, N, c->Cin, 0.1f);
        else
            ofa_ce_backward(B.c, B.b, B.labels, N, c->Cin, 0.1f, 1.0f);
        break;
    }
}

/* Work per call: FLOPs for compute-bound ops, bytes for memory-bound ones. */
static double work(const struct bcase *c, int backward, int *is_bytes)
{
    double M = (double)N * c->H * c->H;
    int Ho = outsize(c);
    double Mo = (double)N * Ho * Ho;
    double f = backward ? 2.0 : 1.0;
    *is_bytes = 0;
    switch (c->kind) {
    case PW: return f * 2.0 * M * c->Cin * c->Cout;
    case LINEAR: return f * 2.0 * N * c->Cin * c->Cout;
    /* The stem's backward computes the weight gradient only (no dinp). */
    case CONV: return 2.0 * Mo * c->Cin * c->Cout * c->K * c->K;
    case DW: return f * 2.0 * Mo * c->Cin * c->K * c->K;
    case SE: return f * (2.0 * M * c->Cin + 4.0 * N * c->Cin * c->Cout);
    default: break;
    }
    *is_bytes = 1;
    switch (c->kind) {
    case BN: return 4.0 * M * c->Cin * (backward ? 4 : 3);
    case HSWISH: return 4.0 * M * c->Cin * (backward ? 3 : 2);
    case POOL: return 4.0 * (M * c->Cin + N * c->Cin);
    case RESIZE: return 4.0 * (M * c->Cin + Mo * c->Cin);
    case CE: return 4.0 * N * c->Cin * 2;
    default: return 0;
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median seconds per call. */
static double time_it(void (*fn)(int), int arg)
{
    fn(arg); /* warm-up */
    double t[5];
    for (int r = 0; r < 5; r++) {
        int reps = 0;
        double t0 = ofa_now(), el;
        do {
            fn(arg);
            reps++;
            el = ofa_now() - t0;
        } while (el < 0.02);
        t[r] = el / reps;
    }
    qsort(t, 5, sizeof t[0], cmp_double);
    return t[2];
}

static int gemm_m, gemm_n, gemm_k;
static void run_gemm(int unused)
{
    (void)unused;
    ofa_gemm(0, 1, gemm_m, gemm_n, gemm_k, 1.0f, B.a, gemm_k, B.w, gemm_k, 0.0f, B.b, gemm_n);
}

static float *rnd(size_t n, struct ofa_rng *r)
{
    float *x = ofa_xmalloc(n * sizeof *x, "benchmark buffer");
    ofa_rng_fill_uniform(r, x, (long)n, 1.0f);
    return x;
}

int main(int argc, char **argv)
{
    ofa_blas_select_kernels(argv); /* before anything else: it may exec */
    struct ofa_error err;
    long v;
    N = 128;
    int maxthreads = 2;
    if (argc > 1) {
        if (ofa_parse_long(argv[1], 1, 4096, "BATCH", &v, &err)) {
            ofa_error_print(&err, "bench_ops");
            return 1;
        }
        N = (int)v;
    }
    if (argc > 2) {
        if (ofa_parse_long(argv[2], 1, 256, "MAX_THREADS", &v, &err)) {
            ofa_error_print(&err, "bench_ops");
            return 1;
        }
        maxthreads = (int)v;
    }
    /* Buffers big enough for every case: the largest tensor is 128x28x28x96
     * (or the stem's im2col, 128x784x9). */
    size_t big = (size_t)N * 28 * 28 * 96, wsz = 49 * 576 + 576 * 576;
    struct ofa_rng r;
    ofa_rng_seed(&r, 1);
    B.a = rnd(big, &r), B.b = rnd(big, &r), B.c = rnd(big, &r), B.d = rnd(big, &r);
    B.e = rnd(big, &r), B.f = rnd(big, &r), B.g = rnd(big, &r), B.h = rnd(big, &r);
    for (size_t i = 0; i < big; i++)
        B.h[i] = 1.0f + 0.5f * B.h[i]; /* a positive "variance" */
    B.w = rnd(wsz, &r), B.dw = rnd(wsz, &r), B.w2 = rnd(wsz, &r), B.dw2 = rnd(wsz, &r);
    B.b1 = rnd(1024, &r), B.db1 = rnd(1024, &r), B.b2 = rnd(1024, &r), B.db2 = rnd(1024, &r);
    B.scr = rnd(ofa_se_scratch_size(N, 576, 144), &r);
    B.labels = ofa_xmalloc((size_t)N * sizeof *B.labels, "labels");
    for (int i = 0; i < N; i++)
        B.labels[i] = i % 10;

    char desc[512];
    ofa_threads_set(maxthreads);
    ofa_blas_describe(desc, sizeof desc);
    printf("bench_ops: batch %d; %s\n", N, desc);

    /* The ceiling: sgemm on a large square and on the 1x1-conv shape
     * (M = N*14*14 rows, 24 -> 144). */
    printf("\n%-30s %8s %12s\n", "sgemm (ceiling)", "threads", "GFLOP/s");
    const int gshape[2][3] = {{1024, 1024, 1024}, {N * 14 * 14, 144, 24}};
    for (int g = 0; g < 2; g++)
        for (int t = 1; t <= maxthreads; t++) {
            ofa_threads_set(t);
            gemm_m = gshape[g][0], gemm_n = gshape[g][1], gemm_k = gshape[g][2];
            double s = time_it(run_gemm, 0);
            char name[64];
            snprintf(name, sizeof name, "%dx%dx%d", gemm_m, gemm_n, gemm_k);
            printf("%-30s %8d %12.1f\n", name, t, 2.0 * gemm_m * gemm_n * gemm_k / s * 1e-9);
        }

    printf("\n%-24s %3s %9s %9s %9s %9s  %s\n", "op (largest subnet)", "thr", "fwd ms", "fwd rate",
           "bwd ms", "bwd rate", "unit");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cur = &cases[i];
        for (int t = 1; t <= maxthreads; t++) {
            ofa_threads_set(t);
            int isb;
            double tf = time_it(run, 0), wf = work(cur, 0, &isb);
            double tb = time_it(run, 1), wb = work(cur, 1, &isb);
            printf("%-24s %3d %9.3f %9.1f %9.3f %9.1f  %s\n", cur->name, t, tf * 1e3,
                   wf / tf * 1e-9, tb * 1e3, wb / tb * 1e-9, isb ? "GB/s" : "GFLOP/s");
        }
    }
    free(B.a), free(B.b), free(B.c), free(B.d), free(B.e), free(B.f), free(B.g), free(B.h);
    free(B.w), free(B.dw), free(B.w2), free(B.dw2), free(B.b1), free(B.db1), free(B.b2);
    free(B.db2), free(B.scr), free(B.labels);
    return 0;
}
