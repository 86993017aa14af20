/* bench_train_step: images/s of the supernet's training step (forward, loss,
 * backward, SGD update), of a full sandwich step (largest + smallest + 2
 * random with distillation) and of fp32 inference (batch N and batch 1: the
 * subnet materialised with BN folded, as ofa-export writes it and ofa-run
 * runs it), for the reference largest, medium and smallest subnets of mbv3-28, at 1..T
 * threads, with the model's GFLOP/s against sgemm measured in the same run,
 * and the int8 runtime's batch-1 latency (one thread). Random weights and
 * inputs; medians of several timed repeats after one warm-up.
 *
 * usage: bench_train_step [--batch N] [--threads T] [--only-threads T]
 *                         [--repeats K] [--only largest|medium|smallest|sandwich]
 *                         [--tsv] [--list-sandwich] [--profile]
 *   --threads T       run at 1, 2, .., T threads (default 2)
 *   --only-threads T  run at T threads only
 *   --only NAME       one reference subnet, or the sandwich step only
 *   --tsv             machine-readable output (bench/compare.py reads it):
 *                     '#' comment lines, a header row, one row per subnet and
 *                     thread count, '-' where a figure does not apply
 *   --list-sandwich   print the random subnets of the sandwich steps that the
 *                     timing runs (warm-up first; one line "step TEXT TEXT")
 *                     and exit, so that a peer can time the same work
 *   --profile         after the figures, for every subnet (and the sandwich
 *                     step) and thread count, the per-op profile (prof.h) of
 *                     K more training steps: op kind, direction, calls, ms and
 *                     % of the step, means per step, largest first, with the
 *                     untimed rest as "other"; with --tsv as '#profile' lines
 *                     (subnet "NAME-infer": the same of K batch-N fp32
 *                     inference passes, at one thread only: at more, other
 *                     threads run sub-batches whose layers it cannot see;
 *                     "NAME-b1": the same of 16 K single images, a step a
 *                     pass; "NAME-int8": the int8 runtime's batch-1 pass, each
 *                     layer run alone 16 K + 1 times (ofa_qrun_time_layers:
 *                     medians of groups' mean thread CPU time) summed by op,
 *                     against the median whole pass)
 *
 * The training step of a subnet at resolution r < 28 reads the first
 * N*r*r floats of the 28x28 input buffer as its batch (random values either
 * way); the sandwich step resizes the 28x28 batch to each subnet's r.
 */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "cli.h"
#include "device.h"
#include "ops.h"
#include "optim.h"
#include "model.h"
#include "prof.h"
#include "rng.h"
#include "space.h"
#include "supernet.h"
#include "util.h"

static const char *const ref_names[3] = {"largest", "medium", "smallest"};
static const char *const ref_text[3] = {
    "r28-d4444-k7777.7777.7777.7777-e6666.6666.6666.6666",
    "r24-d3333-k555.555.555.555-e444.444.444.444",
    "r20-d2222-k33.33.33.33-e33.33.33.33",
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

struct ctx {
    struct ofa_supernet net;
    struct ofa_exec ex;
    struct ofa_sgd sgd;
    float *x, *xr, *probs, *tprobs, *dlogits;
    int *y;
    int N;
    /* inference: the subnet materialised as ofa-export and ofa-run have it */
    struct ofa_model model;
    float *mscratch;
};

static void train_step(struct ctx *c, const struct ofa_subnet *s)
{
    const int K = c->net.sp.num_classes, N = c->N;
    ofa_params_zero_grad(&c->net.p);
    const float *logits = ofa_supernet_forward(&c->net, &c->ex, s, c->x, N, OFA_MODE_TRAIN, 0.0f,
                                               NULL);
    ofa_ce_forward(c->probs, logits, c->y, N, K, 0.1f);
    memset(c->dlogits, 0, (size_t)N * K * sizeof(float));
    ofa_ce_backward(c->dlogits, c->probs, c->y, N, K, 0.1f, 1.0f);
    ofa_supernet_backward(&c->net, &c->ex, c->dlogits);
    ofa_sgd_step(&c->sgd, &c->net.p, 0.01f);
}

/* Subnet k (0: smallest, 1 and 2: random) of the sandwich step `step`. */
static void sandwich_subnet(const struct ofa_space *sp, long step, int k, struct ofa_subnet *sub)
{
    if (k == 0) {
        ofa_subnet_smallest(sp, sub);
    } else {
        struct ofa_rng r;
        ofa_rng_derive(&r, 1, (uint64_t)step, (uint64_t)k);
        ofa_subnet_sample(sp, &r, sub);
    }
}

/* Largest on labels, smallest + 2 random on its soft outputs; one update. */
static void sandwich_step(struct ctx *c, long step)
{
    const struct ofa_space *sp = &c->net.sp;
    const int K = sp->num_classes, N = c->N;
    struct ofa_subnet big, sub;
    ofa_subnet_largest(sp, &big);
    ofa_params_zero_grad(&c->net.p);
    struct ofa_rng drop;
    ofa_rng_derive(&drop, 1, (uint64_t)step, 99);
    const float *logits = ofa_supernet_forward(&c->net, &c->ex, &big, c->x, N, OFA_MODE_TRAIN,
                                               0.1f, &drop);
    ofa_ce_forward(c->probs, logits, c->y, N, K, 0.1f);
    ofa_softmax_forward(c->tprobs, logits, N, K, 1.0f);
    memset(c->dlogits, 0, (size_t)N * K * sizeof(float));
    ofa_ce_backward(c->dlogits, c->probs, c->y, N, K, 0.1f, 1.0f);
    ofa_supernet_backward(&c->net, &c->ex, c->dlogits);
    for (int k = 0; k < 3; k++) {
        sandwich_subnet(sp, step, k, &sub);
        ofa_resize_bilinear_forward(c->xr, c->x, N, 28, 28, sub.res, sub.res, 1);
        logits = ofa_supernet_forward(&c->net, &c->ex, &sub, c->xr, N, OFA_MODE_TRAIN, 0.0f,
                                      NULL);
        ofa_kd_forward(c->probs, logits, c->tprobs, N, K, 1.0f);
        memset(c->dlogits, 0, (size_t)N * K * sizeof(float));
        ofa_kd_backward(c->dlogits, c->probs, c->tprobs, N, K, 1.0f, 1.0f);
        ofa_supernet_backward(&c->net, &c->ex, c->dlogits);
    }
    ofa_sgd_step(&c->sgd, &c->net.p, 0.01f);
}

enum what { TRAIN, SANDWICH, INFER, INFER1 };

/* The timed sandwich steps are SANDWICH_STEP0 + 0, 1, ..; the warm-up is
 * SANDWICH_STEP0 - 1 (--list-sandwich prints them). */
#define SANDWICH_STEP0 100

/* Repeat r (-1: the warm-up) of w. */
static void run(struct ctx *c, enum what w, const struct ofa_subnet *s, int r)
{
    switch (w) {
    case TRAIN: train_step(c, s); break;
    case SANDWICH: sandwich_step(c, SANDWICH_STEP0 + r); break;
    case INFER:
        ofa_model_forward(&c->model, c->probs, c->x, c->N, c->mscratch);
        break;
    case INFER1:
        for (int i = 0; i < 16; i++)
            ofa_model_forward(&c->model, c->probs, c->x, 1, c->mscratch);
        break;
    }
}

/* Median seconds of one call. */
static double timeit(struct ctx *c, enum what w, const struct ofa_subnet *s, int repeats)
{
    double *t = ofa_xmalloc((size_t)repeats * sizeof *t, "timings");
    for (int r = -1; r < repeats; r++) { /* r = -1: warm-up */
        double t0 = ofa_now();
        run(c, w, s, r);
        if (r >= 0)
            t[r] = (ofa_now() - t0) / (w == INFER1 ? 16 : 1);
    }
    qsort(t, (size_t)repeats, sizeof *t, cmp_double);
    double m = t[repeats / 2];
    free(t);
    return m;
}

struct prof_row {
    int kind, dir;
    int64_t ns;
};

/* Largest time first; ties in table order. */
static int cmp_prof_row(const void *a, const void *b)
{
    const struct prof_row *x = a, *y = b;
    if (x->ns != y->ns)
        return x->ns < y->ns ? 1 : -1;
    return x->kind != y->kind ? x->kind - y->kind : x->dir - y->dir;
}

/* The per-op profile of `repeats` steps of w (TRAIN, SANDWICH or INFER)
 * after one warm-up, as means per step: the timed ops, largest first, then
 * "other", the part of the steps' wall time that no timed op holds. */
static void profile(struct ctx *c, enum what w, const struct ofa_subnet *s, int repeats,
                    const char *name, const char *what, int threads, int tsv)
{
    run(c, w, s, -1);
    ofa_prof_reset();
    ofa_prof_enable(1);
    int64_t wall = 0;
    for (int r = 0; r < repeats; r++) {
        int64_t t0 = ofa_prof_now_ns();
        run(c, w, s, r);
        wall += ofa_prof_now_ns() - t0;
    }
    ofa_prof_enable(0);
    struct ofa_prof p;
    ofa_prof_read(&p);
    struct prof_row rows[OFA_PROF_NKINDS * OFA_PROF_NDIRS];
    int n = 0;
    for (int k = 0; k < OFA_PROF_NKINDS; k++)
        for (int d = 0; d < OFA_PROF_NDIRS; d++)
            if (p.calls[k][d] > 0)
                rows[n++] = (struct prof_row){k, d, p.ns[k][d]};
    qsort(rows, (size_t)n, sizeof *rows, cmp_prof_row);
    const int steps = repeats * (w == INFER1 ? 16 : 1); /* INFER1 runs 16 passes */
    const double ms = 1e-6 / steps, pct = 100.0 / (double)wall;
    const int64_t other = wall - ofa_prof_total_ns(&p);
    if (!tsv) {
        printf("\nprofile: %s, %d thread%s: %s\n", name, threads, threads > 1 ? "s" : "", what);
        printf("  mean of %d steps with the profile on: %.3f ms a step\n", steps, ms * wall);
        printf("  %-18s %-4s %10s %10s %7s\n", "op", "dir", "calls/step", "ms/step", "% step");
    }
    for (int i = 0; i < n; i++) {
        const struct prof_row *r = &rows[i];
        const char *kn = ofa_prof_kind_name(r->kind), *dn = ofa_prof_dir_name(r->dir);
        const double calls = (double)p.calls[r->kind][r->dir] / steps;
        if (tsv)
            printf("#profile\t%s\t%d\t%s\t%s\t%.2f\t%.3f\t%.1f\n", name, threads, kn, dn, calls,
                   ms * (double)r->ns, pct * (double)r->ns);
        else
            printf("  %-18s %-4s %10.2f %10.3f %6.1f%%\n", kn, dn, calls, ms * (double)r->ns,
                   pct * (double)r->ns);
    }
    if (tsv)
        printf("#profile\t%s\t%d\tother\t-\t-\t%.3f\t%.1f\n", name, threads,
               ms * (double)other, pct * (double)other);
    else
        printf("  %-18s %-4s %10s %10.3f %6.1f%%\n", "other", "-", "-", ms * (double)other,
               pct * (double)other);
    fflush(stdout);
}

/* The int8 runtime's batch-1 pass of s by op kind (ofa_latency_int8_profile,
 * reps passes of each layer alone, medians): ms and % of the median whole
 * pass, largest first, then "other", the whole pass less its layers' sum
 * (negative where the layers alone, their inputs in cache, took longer). */
static void profile_int8(struct ctx *c, const struct ofa_subnet *s, int reps, const char *name,
                         const char *what, int tsv)
{
    double ms[OFA_PROF_NKINDS];
    int calls[OFA_PROF_NKINDS];
    const double pass = ofa_latency_int8_profile(&c->net, s, reps, ms, calls);
    struct prof_row rows[OFA_PROF_NKINDS];
    int n = 0;
    double sum = 0.0;
    for (int k = 0; k < OFA_PROF_NKINDS; k++)
        if (calls[k] > 0) {
            rows[n++] = (struct prof_row){k, OFA_PROF_FWD, (int64_t)(ms[k] * 1e6)};
            sum += ms[k];
        }
    qsort(rows, (size_t)n, sizeof *rows, cmp_prof_row);
    const double pct = 100.0 / pass;
    if (!tsv) {
        printf("\nprofile: %s, 1 thread: %s\n", name, what);
        printf("  median of %d passes: %.4f ms; each layer alone, %d runs: %.4f ms in all\n",
               reps, pass, reps, sum);
        printf("  %-18s %-4s %10s %10s %7s\n", "op", "dir", "calls/pass", "ms/pass", "% pass");
    }
    for (int i = 0; i < n; i++) {
        const struct prof_row *r = &rows[i];
        const char *kn = ofa_prof_kind_name(r->kind), *dn = ofa_prof_dir_name(r->dir);
        const double t = ms[r->kind];
        if (tsv)
            printf("#profile\t%s\t1\t%s\t%s\t%d\t%.4f\t%.1f\n", name, kn, dn, calls[r->kind], t,
                   pct * t);
        else
            printf("  %-18s %-4s %10d %10.4f %6.1f%%\n", kn, dn, calls[r->kind], t, pct * t);
    }
    if (tsv)
        printf("#profile\t%s\t1\tother\t-\t-\t%.4f\t%.1f\n", name, pass - sum,
               pct * (pass - sum));
    else
        printf("  %-18s %-4s %10s %10.4f %6.1f%%\n", "other", "-", "-", pass - sum,
               pct * (pass - sum));
    fflush(stdout);
}

static double sgemm_gflops(int threads)
{
    const int n = 1024;
    float *a = ofa_xcalloc((size_t)n * n, sizeof(float), "sgemm");
    float *b = ofa_xcalloc((size_t)n * n, sizeof(float), "sgemm");
    float *cc = ofa_xcalloc((size_t)n * n, sizeof(float), "sgemm");
    ofa_threads_set(threads);
    double best = 1e30;
    for (int r = 0; r < 6; r++) {
        double t0 = ofa_now();
        ofa_gemm(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, cc, n);
        double dt = ofa_now() - t0;
        if (r > 0 && dt < best)
            best = dt;
    }
    free(a), free(b), free(cc);
    return 2.0 * n * n * n / best * 1e-9;
}

/* The usage line (the header comment explains the options); exits. */
static void usage(FILE *f, int status)
{
    fprintf(f, "usage: bench_train_step [--batch N] [--threads T] [--only-threads T] "
               "[--repeats K]\n"
               "                        [--only largest|medium|smallest|sandwich] [--tsv] "
               "[--list-sandwich] [--profile]\n");
    exit(status);
}

/* The figures of a --tsv row after its subnet, threads, batch, MACs and
 * params columns: train_ips, train_gflops, infer_ips, infer_gflops, b1_ms,
 * int8_b1_ms, sandwich_ips, sgemm_gflops; '-' where one does not apply
 * (v < 0). */
static void tsv_figures(const double v[8])
{
    for (int i = 0; i < 8; i++) {
        if (v[i] < 0)
            printf("\t-");
        else
            printf("\t%.*f", i == 4 || i == 5 ? 4 : 2, v[i]);
    }
    printf("\n");
}

int main(int argc, char **argv)
{
    ofa_blas_select_kernels(argv); /* before anything else: it may exec */
    int N = 128, maxthreads = 2, onlythreads = 0, repeats = 5, tsv = 0, list_sandwich = 0;
    int prof = 0;
    const char *only = NULL;
    struct ofa_error err;
    long v;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 < argc && (!strcmp(a, "--batch") || !strcmp(a, "--threads") ||
                             !strcmp(a, "--only-threads") || !strcmp(a, "--repeats"))) {
            if (ofa_parse_long(argv[++i], 1, 100000, a, &v, &err)) {
                ofa_error_print(&err, "bench_train_step");
                return 1;
            }
            *(!strcmp(a, "--batch")          ? &N
              : !strcmp(a, "--threads")      ? &maxthreads
              : !strcmp(a, "--only-threads") ? &onlythreads
                                             : &repeats) = (int)v;
        } else if (i + 1 < argc && !strcmp(a, "--only")) {
            only = argv[++i];
            if (strcmp(only, "sandwich") && strcmp(only, ref_names[0]) &&
                strcmp(only, ref_names[1]) && strcmp(only, ref_names[2])) {
                fprintf(stderr, "bench_train_step: --only: '%s' is not largest, medium, "
                                "smallest or sandwich\n", only);
                return 1;
            }
        } else if (!strcmp(a, "--tsv")) {
            tsv = 1;
        } else if (!strcmp(a, "--list-sandwich")) {
            list_sandwich = 1;
        } else if (!strcmp(a, "--profile")) {
            prof = 1;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout, 0);
        } else {
            usage(stderr, 1);
        }
    }
    struct ofa_space sp;
    ofa_space_default(&sp);
    if (list_sandwich) {
        for (long step = SANDWICH_STEP0 - 1; step < SANDWICH_STEP0 + repeats; step++) {
            printf("%ld", step);
            for (int k = 1; k < 3; k++) {
                struct ofa_subnet sub;
                char text[OFA_SUBNET_TEXT_MAX];
                sandwich_subnet(&sp, step, k, &sub);
                ofa_subnet_format(&sp, &sub, text, sizeof text);
                printf("\t%s", text);
            }
            printf("\n");
        }
        return 0;
    }
    const int t_first = onlythreads ? onlythreads : 1;
    const int t_last = onlythreads ? onlythreads : maxthreads;
    const int do_sandwich = !only || !strcmp(only, "sandwich");
    const int do_subnets = !only || strcmp(only, "sandwich");

    struct ctx c;
    memset(&c, 0, sizeof c);
    c.N = N;
    ofa_supernet_init(&c.net, &sp, 1);
    ofa_exec_init(&c.ex, &c.net, N);
    c.sgd = (struct ofa_sgd){.momentum = 0.9f, .nesterov = 1, .weight_decay = 5e-5f};
    struct ofa_rng r;
    ofa_rng_seed(&r, 2);
    c.x = ofa_xmalloc((size_t)N * 28 * 28 * sizeof(float), "input");
    c.xr = ofa_xmalloc((size_t)N * 28 * 28 * sizeof(float), "input");
    ofa_rng_fill_normal(&r, c.x, (long)N * 28 * 28, 1.0f);
    c.y = ofa_xmalloc((size_t)N * sizeof(int), "labels");
    for (int i = 0; i < N; i++)
        c.y[i] = (int)ofa_rng_below(&r, 10);
    c.probs = ofa_xmalloc((size_t)N * 10 * sizeof(float), "probs");
    c.tprobs = ofa_xmalloc((size_t)N * 10 * sizeof(float), "probs");
    c.dlogits = ofa_xmalloc((size_t)N * 10 * sizeof(float), "dlogits");

    char desc[512];
    ofa_threads_set(t_last);
    ofa_blas_describe(desc, sizeof desc);
    if (tsv) {
        printf("# bench_train_step: batch %d, %d repeats (median); %s\n", N, repeats, desc);
        printf("subnet\tthreads\tbatch\tmacs\tparams\ttrain_ips\ttrain_gflops\tinfer_ips"
               "\tinfer_gflops\tb1_ms\tint8_b1_ms\tsandwich_ips\tsgemm_gflops\n");
        if (prof)
            printf("#profile\tsubnet\tthreads\top\tdir\tcalls_per_step\tms_per_step"
                   "\tpct_step\n");
    } else {
        printf("bench_train_step: batch %d, %d repeats (median); %s\n", N, repeats, desc);
        printf("int8 b1 ms: the int8 runtime (ofa-run), one thread, thread CPU time\n");
        printf("\n%-9s %3s %11s %9s %11s %12s %10s %9s %11s\n", "subnet", "thr", "train img/s",
               "GFLOP/s", "%sgemm", "infer img/s", "b1 lat ms", "GFLOP/s", "int8 b1 ms");
    }
    for (int t = t_first; t <= t_last; t++) {
        double peak = do_subnets ? sgemm_gflops(t) : -1.0;
        ofa_threads_set(t);
        for (int k = 0; k < 3 && do_subnets; k++) {
            if (only && strcmp(only, ref_names[k]))
                continue;
            struct ofa_subnet s;
            if (ofa_subnet_parse(&sp, ref_text[k], &s, &err)) {
                ofa_error_print(&err, "bench_train_step");
                return 1;
            }
            long long macs = ofa_subnet_macs(&sp, &s), params = ofa_subnet_params(&sp, &s);
            double tt = timeit(&c, TRAIN, &s, repeats);
            ofa_model_materialise(&c.model, &c.net, &s);
            c.mscratch = ofa_model_scratch_alloc(&c.model, N);
            double ti = timeit(&c, INFER, &s, repeats);
            double t1 = timeit(&c, INFER1, &s, repeats);
            free(c.mscratch);
            ofa_model_free(&c.model);
            /* The int8 runtime runs one thread: measured in the 1-thread rows. */
            double q1 = t == 1 ? ofa_latency_measure(&c.net, &s, OFA_ARITH_INT8, 16 * repeats + 1)
                               : -1.0;
            ofa_threads_set(t);
            /* training = forward + backward ~ 3x the forward's 2*MACs FLOPs */
            double gf_train = 6.0 * (double)macs * N / tt * 1e-9;
            double gf_inf = 2.0 * (double)macs * N / ti * 1e-9;
            if (tsv) {
                const double fig[8] = {N / tt, gf_train, N / ti, gf_inf, 1e3 * t1, q1, -1, peak};
                printf("%s\t%d\t%d\t%lld\t%lld", ref_names[k], t, N, macs, params);
                tsv_figures(fig);
            } else {
                printf("%-9s %3d %11.0f %9.1f %10.1f%% %12.0f %10.2f %9.1f", ref_names[k], t,
                       N / tt, gf_train, 100.0 * gf_train / peak, N / ti, 1e3 * t1, gf_inf);
                if (q1 >= 0)
                    printf(" %11.3f\n", q1);
                else
                    printf(" %11s\n", "-");
            }
            fflush(stdout);
        }
        if (do_sandwich) {
            double ts = timeit(&c, SANDWICH, NULL, repeats);
            if (tsv) {
                const double fig[8] = {-1, -1, -1, -1, -1, -1, N / ts, peak};
                printf("sandwich\t%d\t%d\t-\t-", t, N);
                tsv_figures(fig);
            } else {
                printf("%-9s %3d %11.0f   (batches/s x %d; 4 subnets a step)\n", "sandwich", t,
                       N / ts, N);
            }
            fflush(stdout);
        }
        if (!tsv && peak > 0)
            printf("%-9s %3d sgemm 1024^3: %.1f GFLOP/s\n", "", t, peak);
    }
    /* The profiles after every figure, so that the table above stays whole. */
    for (int t = t_first; t <= t_last && prof; t++) {
        ofa_threads_set(t);
        for (int k = 0; k < 3 && do_subnets; k++) {
            if (only && strcmp(only, ref_names[k]))
                continue;
            struct ofa_subnet s;
            char what[OFA_SUBNET_TEXT_MAX + 32];
            if (ofa_subnet_parse(&sp, ref_text[k], &s, &err)) {
                ofa_error_print(&err, "bench_train_step");
                return 1;
            }
            snprintf(what, sizeof what, "training step of %s", ref_text[k]);
            profile(&c, TRAIN, &s, repeats, ref_names[k], what, t, tsv);
            if (t != 1)
                continue;
            char name[32];
            snprintf(name, sizeof name, "%s-infer", ref_names[k]);
            snprintf(what, sizeof what, "fp32 inference (BN folded), batch %d, of %s", N,
                     ref_text[k]);
            ofa_model_materialise(&c.model, &c.net, &s);
            c.mscratch = ofa_model_scratch_alloc(&c.model, N);
            profile(&c, INFER, &s, repeats, name, what, t, tsv);
            snprintf(name, sizeof name, "%s-b1", ref_names[k]);
            snprintf(what, sizeof what, "fp32 inference (BN folded), batch 1, of %s",
                     ref_text[k]);
            profile(&c, INFER1, &s, repeats, name, what, t, tsv);
            free(c.mscratch);
            ofa_model_free(&c.model);
            snprintf(name, sizeof name, "%s-int8", ref_names[k]);
            snprintf(what, sizeof what, "the int8 runtime's batch-1 pass of %s", ref_text[k]);
            profile_int8(&c, &s, 16 * repeats + 1, name, what, tsv);
        }
        if (do_sandwich)
            profile(&c, SANDWICH, NULL, repeats, "sandwich",
                    "sandwich step (largest + smallest + 2 random, one update)", t, tsv);
    }
    free(c.x), free(c.xr), free(c.y), free(c.probs), free(c.tprobs), free(c.dlogits);
    ofa_exec_free(&c.ex);
    ofa_supernet_free(&c.net);
    return 0;
}
