#include <config.h>
/* bench_search.c: time of a full search (OFA defaults: 500 generations,
 * population 100) per device for evolution, NSGA-II and random search, and
 * the hypervolumes they reach at equal evaluations.
 *
 * Usage: bench_search [generations]. Objectives are synthetic on the default
 * space (acc saturating in capacity, latency from MACs plus per-block costs,
 * int8 flash from parameters, SRAM from the largest block's activations),
 * evaluated two ways: the bare synthetic function (tests/synthetic.c), and
 * with the cost of the real accuracy predictor added (OFA's MLP 3x400 ReLU,
 * one candidate per call, as ofa-extract calls it).
 * The search is serial; the figures do not depend on the thread count.
 */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "predictor.h"
#include "rng.h"
#include "search.h"
#include "space.h"
#include "synthetic.h"

struct bench_obj {
    struct ofa_space sp;
    struct ofa_predictor *pred; /* NULL: the bare synthetic function */
    float *x;
    long calls;
};

/* The synthetic objective, plus (with a predictor) the cost of the real
 * accuracy predictor on the candidate; its output barely moves acc. */
static void objective(void *ctx, const struct ofa_subnet *s, struct ofa_objectives *o)
{
    struct bench_obj *bo = ctx;
    bo->calls++;
    synth_objectives(&bo->sp, s, o);
    if (bo->pred) {
        ofa_subnet_onehot(&bo->sp, s, bo->x);
        o->acc += 1e-9 * ofa_predictor_eval(bo->pred, bo->x);
    }
}

/* with_mlp: fit OFA's predictor (3x400 ReLU) on 200 synthetic pairs. */
static void bench_obj_init(struct bench_obj *bo, int with_mlp)
{
    memset(bo, 0, sizeof *bo);
    ofa_space_default(&bo->sp);
    int dim = ofa_subnet_onehot_size(&bo->sp);
    bo->x = ofa_xmalloc((size_t)dim * sizeof(float), "encoding");
    if (!with_mlp)
        return;
    enum { PAIRS = 200 };
    float *xs = ofa_xmalloc((size_t)PAIRS * dim * sizeof(float), "pairs");
    float ys[PAIRS];
    struct ofa_rng r;
    ofa_rng_seed(&r, 5);
    for (int i = 0; i < PAIRS; i++) {
        struct ofa_subnet s;
        struct ofa_objectives o;
        ofa_subnet_sample(&bo->sp, &r, &s);
        synth_objectives(&bo->sp, &s, &o);
        ofa_subnet_onehot(&bo->sp, &s, xs + (size_t)i * dim);
        ys[i] = (float)o.acc;
    }
    struct ofa_mlp_cfg c;
    ofa_mlp_cfg_default(&c);
    bo->pred = ofa_predictor_fit(xs, ys, PAIRS, dim, &c);
    free(xs);
}

static void bench_obj_free(struct bench_obj *bo)
{
    if (bo->pred)
        ofa_predictor_free(bo->pred);
    free(bo->x);
}

struct device {
    const char *name;
    struct ofa_constraints c;
};

static void run_device(struct bench_obj *bo, const struct device *d, int generations)
{
    struct ofa_subnet s;
    struct ofa_objectives lo, hi;
    ofa_subnet_smallest(&bo->sp, &s);
    objective(bo, &s, &lo);
    ofa_subnet_largest(&bo->sp, &s);
    objective(bo, &s, &hi);
    double ref_acc = lo.acc - 0.01;
    double ref_lat = d->c.latency_ms > 0.0 ? d->c.latency_ms : hi.latency_ms;

    struct ofa_search_cfg cfg;
    ofa_search_cfg_default(&cfg);
    cfg.generations = generations;
    struct ofa_search_result evo, nsga, rnd_evo, rnd_nsga;
    struct ofa_error err = {0};

    double t0 = ofa_now();
    if (ofa_search_evolve(&bo->sp, &cfg, &d->c, objective, bo, &evo, &err)) {
        printf("%-12s evolve: %s\n", d->name, err.msg);
        return;
    }
    double t_evo = ofa_now() - t0;
    t0 = ofa_now();
    if (ofa_search_nsga2(&bo->sp, &cfg, &d->c, objective, bo, &nsga, &err))
        ofa_fatal("nsga2: %s", err.msg);
    double t_nsga = ofa_now() - t0;
    t0 = ofa_now();
    if (ofa_search_random(&bo->sp, evo.evaluations, cfg.seed, &d->c, objective, bo, &rnd_evo,
                          &err))
        ofa_fatal("random: %s", err.msg);
    double t_rnd = ofa_now() - t0;
    if (ofa_search_random(&bo->sp, nsga.evaluations, cfg.seed, &d->c, objective, bo,
                          &rnd_nsga, &err))
        ofa_fatal("random: %s", err.msg);

    printf("%-12s %-6s time/search: evolve %.2f s (%ld evals), nsga2 %.2f s (%ld evals), "
           "random %.2f s\n",
           d->name, bo->pred ? "+mlp" : "synth", t_evo, evo.evaluations, t_nsga,
           nsga.evaluations, t_rnd);
    printf("%-12s %-6s best acc: evolve %.5f, random %.5f (same evals)\n", d->name,
           bo->pred ? "+mlp" : "synth", evo.obj[0].acc, rnd_evo.obj[0].acc);
    printf("%-12s %-6s hypervolume (ref acc %.4f, latency %.3f ms): evolve-population %.5f, "
           "nsga2-front %.5f (%d points), random %.5f / %.5f (evolve's / nsga2's evals)\n",
           d->name, bo->pred ? "+mlp" : "synth", ref_acc, ref_lat,
           ofa_hypervolume(evo.obj, evo.n, ref_acc, ref_lat),
           ofa_hypervolume(nsga.obj, nsga.n, ref_acc, ref_lat), nsga.n,
           ofa_hypervolume(rnd_evo.obj, rnd_evo.n, ref_acc, ref_lat),
           ofa_hypervolume(rnd_nsga.obj, rnd_nsga.n, ref_acc, ref_lat));
    ofa_search_result_free(&evo);
    ofa_search_result_free(&nsga);
    ofa_search_result_free(&rnd_evo);
    ofa_search_result_free(&rnd_nsga);
}

int main(int argc, char **argv)
{
    ofa_blas_select_kernels(argv); /* before anything else: it may exec */
    int generations = argc > 1 ? atoi(argv[1]) : 500;
    if (generations < 0)
        ofa_fatal("usage: bench_search [generations]");
    struct bench_obj bo;
    bench_obj_init(&bo, 0);
    struct ofa_subnet s;
    struct ofa_objectives lo, hi;
    ofa_subnet_smallest(&bo.sp, &s);
    objective(&bo, &s, &lo);
    ofa_subnet_largest(&bo.sp, &s);
    objective(&bo, &s, &hi);
    printf("default space: smallest latency %.3f ms flash %.1f KB sram %.1f KB %.2f MMACs; "
           "largest %.3f ms %.1f KB %.1f KB %.2f MMACs\n",
           lo.latency_ms, lo.flash_kb, lo.sram_kb, lo.mmacs, hi.latency_ms, hi.flash_kb,
           hi.sram_kb, hi.mmacs);
    /* Budgets placed within the synthetic objectives' range, as profiles do. */
    struct device dev[3] = {
        {"latency-30%", {lo.latency_ms + 0.3 * (hi.latency_ms - lo.latency_ms), 0, 0, 0}},
        {"mcu-memory", {0, lo.flash_kb + 0.4 * (hi.flash_kb - lo.flash_kb),
                        lo.sram_kb + 0.3 * (hi.sram_kb - lo.sram_kb), 0}},
        {"all-budgets", {lo.latency_ms + 0.5 * (hi.latency_ms - lo.latency_ms),
                         lo.flash_kb + 0.5 * (hi.flash_kb - lo.flash_kb),
                         lo.sram_kb + 0.6 * (hi.sram_kb - lo.sram_kb),
                         lo.mmacs + 0.4 * (hi.mmacs - lo.mmacs)}},
    };
    printf("search: %d generations, population 100, 25 parents, 50 mutants + 50 crossovers\n",
           generations);
    for (int mlp = 0; mlp < 2; mlp++) {
        bench_obj_free(&bo);
        bench_obj_init(&bo, mlp);
        double t0 = ofa_now();
        for (int i = 0; i < 2000; i++)
            objective(&bo, &s, &lo);
        printf("objective%s: %.2f us per call\n", mlp ? " + MLP 3x400" : "",
               (ofa_now() - t0) / 2000 * 1e6);
        for (int k = 0; k < 3; k++)
            run_device(&bo, &dev[k], generations);
    }
    bench_obj_free(&bo);
    return 0;
}
