/* bench_latency: how well the `measured` (per-block table) and `opwise`
 * (per-op regressors) latency predictors match real end-to-end timings of
 * random subnets of the reference space on this host (fp32, batch 1), and
 * the `measured` predictor of the int8 runtime (host-int8) likewise.
 * Reports profiling times, the share of subnets predicted within +-10%, the
 * mean absolute relative error, and which predictor is more accurate.
 *
 * usage: bench_latency [-j THREADS] [-n SUBNETS] [-r REPS] [--write-lut FILE]
 *                      [--int8-layers SUBNET]
 *   --write-lut writes the measured table as a lut file (docs/devices.md);
 *   recipes/devices/example-lut.tsv was made this way.
 *   --int8-layers prints the int8 runtime's time per layer of SUBNET (each
 *   layer timed alone, ofa_qrun_time_layers; random weights, calibrated on
 *   random inputs), with its GMAC/s and the sums per kind, and exits.
 */
#include <config.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "cli.h"
#include "device.h"
#include "model.h"
#include "quant.h"
#include "rng.h"
#include "space.h"
#include "supernet.h"
#include "util.h"

static void usage(const char *prog)
{
    fprintf(stderr, "usage: %s [-j THREADS] [-n SUBNETS] [-r REPS] [--write-lut FILE] "
                    "[--int8-layers SUBNET]\n", prog);
    exit(2);
}

/* --int8-layers: the int8 runtime's per-layer times of one subnet. */
static int int8_layers(const char *text, int reps)
{
    static const char *const kinds[] = {"conv", "dw", "se", "add", "pool", "fc"};
    struct ofa_space sp;
    ofa_space_default(&sp);
    struct ofa_supernet net;
    ofa_supernet_init(&net, &sp, 1);
    struct ofa_subnet s;
    struct ofa_error err;
    if (ofa_subnet_parse(&sp, text, &s, &err)) {
        ofa_error_print(&err, "bench_latency");
        return 1;
    }
    struct ofa_model m;
    ofa_model_materialise(&m, &net, &s);
    const long n = 2L * s.res * s.res * sp.in_channels;
    float *x = ofa_xmalloc(sizeof(float) * (size_t)n, "input");
    struct ofa_rng r;
    ofa_rng_seed(&r, 3);
    ofa_rng_fill_normal(&r, x, n, 1.0f);
    const struct ofa_quant_opts qo = {OFA_CALIB_MINMAX, 0};
    ofa_quant_calibrate(&m, x, 2, &qo);
    ofa_threads_set(1);
    struct ofa_qrun *q = ofa_qrun_create(&m);
    double *ms = ofa_xmalloc(sizeof(double) * (size_t)m.n_layers, "timings");
    ofa_qrun_time_layers(q, x, reps, ms);
    double total = 0, by_kind[6] = {0};
    for (int i = 0; i < m.n_layers; i++)
        total += ms[i];
    printf("int8 runtime (%s), %s: median thread CPU time of %d runs per layer\n",
           ofa_qrun_isa(), text, reps);
    printf("%3s %-4s %-13s %-13s %2s %2s %9s %6s %7s\n", "#", "kind", "in HxWxC", "out HxWxC", "K",
           "S", "ms", "%", "GMAC/s");
    for (int i = 0; i < m.n_layers; i++) {
        const struct ofa_layer *L = &m.layers[i];
        double macs = (double)L->Ho * L->Wo * L->Cout;
        macs *= L->kind == OFA_LAYER_CONV ? (double)L->K * L->K * L->Cin
                : L->kind == OFA_LAYER_DW ? (double)L->K * L->K
                : L->kind == OFA_LAYER_FC ? (double)L->Cin
                                          : 0.0;
        char in[32], out[32];
        snprintf(in, sizeof in, "%dx%dx%d", L->H, L->W, L->Cin);
        snprintf(out, sizeof out, "%dx%dx%d", L->Ho, L->Wo, L->Cout);
        by_kind[L->kind] += ms[i];
        printf("%3d %-4s %-13s %-13s %2d %2d %9.4f %5.1f%%", i, kinds[L->kind], in, out, L->K,
               L->stride, ms[i], 100.0 * ms[i] / total);
        if (macs > 0)
            printf(" %7.2f\n", macs / ms[i] * 1e-6);
        else
            printf(" %7s\n", "-");
    }
    printf("sum %.4f ms:", total);
    for (int k = 0; k < 6; k++)
        printf(" %s %.4f (%.1f%%)", kinds[k], by_kind[k], 100.0 * by_kind[k] / total);
    printf("\n");
    free(ms);
    free(x);
    ofa_qrun_free(q);
    ofa_model_free(&m);
    ofa_supernet_free(&net);
    return 0;
}

int main(int argc, char **argv)
{
    ofa_blas_select_kernels(argv); /* before anything else: it may exec */
    int threads = ofa_default_threads(), n = 50, reps = 9;
    const char *lut_out = NULL, *layers_of = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-j") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-n") && i + 1 < argc)
            n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--write-lut") && i + 1 < argc)
            lut_out = argv[++i];
        else if (!strcmp(argv[i], "--int8-layers") && i + 1 < argc)
            layers_of = argv[++i];
        else
            usage(argv[0]);
    }
    if (threads < 1 || n < 1 || reps < 1)
        usage(argv[0]);
    if (layers_of)
        return int8_layers(layers_of, reps);
    ofa_threads_set(threads);
    char blas[256];
    ofa_blas_describe(blas, sizeof blas);
    printf("bench_latency: %d subnets, medians of %d runs, %d threads; %s\n", n, reps,
           ofa_threads_get(), blas);

    struct ofa_space sp;
    ofa_space_default(&sp);
    struct ofa_supernet net;
    ofa_supernet_init(&net, &sp, 1);

    struct ofa_subnet small, big;
    ofa_subnet_smallest(&sp, &small);
    ofa_subnet_largest(&sp, &big);
    double t_small = ofa_latency_measure(&net, &small, OFA_ARITH_FP32, 21);
    double t_big = ofa_latency_measure(&net, &big, OFA_ARITH_FP32, 21);
    printf("latency: one thread, median thread CPU time (docs/devices.md)\n");
    printf("smallest: %.3f ms, %.2f M MACs, flash %lld B, SRAM %lld B\n", t_small,
           ofa_subnet_macs(&sp, &small) / 1e6, ofa_subnet_flash_bytes(&sp, &small),
           ofa_subnet_sram_bytes(&sp, &small));
    printf("largest:  %.3f ms, %.2f M MACs, flash %lld B, SRAM %lld B (60%%: %.3f ms)\n", t_big,
           ofa_subnet_macs(&sp, &big) / 1e6, ofa_subnet_flash_bytes(&sp, &big),
           ofa_subnet_sram_bytes(&sp, &big), 0.6 * t_big);

    struct ofa_device dm, dw;
    memset(&dm, 0, sizeof dm);
    memset(&dw, 0, sizeof dw);
    snprintf(dm.name, sizeof dm.name, "host-measured");
    dm.model = OFA_LAT_MEASURED;
    snprintf(dw.name, sizeof dw.name, "host-opwise");
    dw.model = OFA_LAT_OPWISE;
    struct ofa_latency *lm, *lw;
    struct ofa_error err;
    double t0 = ofa_now();
    if (ofa_latency_init(&lm, &dm, &net, NULL, &err))
        ofa_fatal("%s", err.msg);
    double t_m = ofa_now() - t0;
    t0 = ofa_now();
    if (ofa_latency_init(&lw, &dw, &net, NULL, &err))
        ofa_fatal("%s", err.msg);
    double t_w = ofa_now() - t0;
    printf("profiling: measured %.1f s, opwise %.1f s\n", t_m, t_w);
    ofa_latency_describe(lw, stdout);

    if (lut_out) {
        FILE *f = fopen(lut_out, "w");
        if (!f)
            ofa_fatal("cannot write %s", lut_out);
        char c[512];
        snprintf(c, sizeof c,
                 "Example latency table (docs/devices.md) for the reference space mbv3-28:\n"
                 "made by `bench_latency --write-lut` from the `measured` predictor, i.e. this\n"
                 "project's fp32 runtime profiled at batch 1 on one thread, on the machine that\n"
                 "built it (a 2-core host shared with a training run, so timings are noisy).\n"
                 "An illustration of the format, not a target device. Milliseconds.");
        if (ofa_latency_write_lut(lm, f, c) || fclose(f))
            ofa_fatal("error writing %s", lut_out);
        printf("wrote %s\n", lut_out);
    }

    double *pm = ofa_xmalloc((size_t)n * sizeof *pm, "predictions");
    double *meas = ofa_xmalloc((size_t)n * sizeof *meas, "measurements");
    const uint64_t seed = 2024;
    t0 = ofa_now();
    double share_m = ofa_latency_validate(lm, &net, n, seed, reps, 0.10, pm, meas);
    double t_v = ofa_now() - t0;
    struct ofa_rng r;
    ofa_rng_seed(&r, seed);
    int ok_w = 0, ok_rep = 0;
    double mare_m = 0, mare_w = 0, lo = 1e30, hi = 0;
    for (int i = 0; i < n; i++) {
        struct ofa_subnet s;
        ofa_subnet_sample(&sp, &r, &s); /* the same draws as the validation */
        double pw = ofa_latency_predict(lw, &s);
        ok_w += fabs(pw - meas[i]) <= 0.10 * meas[i];
        /* the noise floor: the same subnet measured again */
        double again = ofa_latency_measure(&net, &s, OFA_ARITH_FP32, reps);
        ok_rep += fabs(again - meas[i]) <= 0.10 * meas[i];
        mare_m += fabs(pm[i] - meas[i]) / meas[i];
        mare_w += fabs(pw - meas[i]) / meas[i];
        lo = meas[i] < lo ? meas[i] : lo;
        hi = meas[i] > hi ? meas[i] : hi;
    }
    double share_w = (double)ok_w / n;
    mare_m /= n;
    mare_w /= n;
    printf("validation: %d random subnets (measured %.2f to %.2f ms), %.1f s\n", n, lo, hi, t_v);
    printf("  measured: %5.1f%% within +-10%%, mean |error| %.1f%%\n", 100 * share_m,
           100 * mare_m);
    printf("  opwise:   %5.1f%% within +-10%%, mean |error| %.1f%%\n", 100 * share_w,
           100 * mare_w);
    printf("  noise floor: %.1f%% of the subnets measured again are within +-10%% of the first "
           "measurement\n", 100.0 * ok_rep / n);
    printf("  more accurate here: %s\n",
           share_m > share_w || (share_m == share_w && mare_m <= mare_w) ? "measured"
                                                                         : "opwise");

    /* host-int8: the measured table of the int8 runtime, on the same draws */
    struct ofa_device d8 = dm;
    snprintf(d8.name, sizeof d8.name, "host-int8");
    d8.arith = OFA_ARITH_INT8;
    struct ofa_latency *l8;
    t0 = ofa_now();
    if (ofa_latency_init(&l8, &d8, &net, NULL, &err))
        ofa_fatal("%s", err.msg);
    double t_8 = ofa_now() - t0;
    double *meas8 = ofa_xmalloc((size_t)n * sizeof *meas8, "measurements");
    double share_8 = ofa_latency_validate(l8, &net, n, seed, reps, 0.10, pm, meas8);
    double mare_8 = 0, ratio = 0;
    for (int i = 0; i < n; i++) {
        mare_8 += fabs(pm[i] - meas8[i]) / meas8[i] / n;
        ratio += meas8[i] / meas[i] / n;
    }
    printf("int8 runtime (%s): smallest %.3f ms, largest %.3f ms; profiling %.1f s\n",
           ofa_qrun_isa(), ofa_latency_measure(&net, &small, OFA_ARITH_INT8, 21),
           ofa_latency_measure(&net, &big, OFA_ARITH_INT8, 21), t_8);
    printf("  measured int8: %5.1f%% within +-10%%, mean |error| %.1f%%; int8 / fp32 latency "
           "%.2f (mean over the subnets)\n", 100 * share_8, 100 * mare_8, ratio);
    free(meas8);
    ofa_latency_free(l8);
    free(pm);
    free(meas);
    ofa_latency_free(lm);
    ofa_latency_free(lw);
    ofa_supernet_free(&net);
    return 0;
}
