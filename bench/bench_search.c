#include <config.h>
/* bench_search.c: time of a full search (OFA defaults: 500 generations,
 * population 100) per device for evolution, NSGA-II and random search, and
 * the hypervolumes they reach at equal evaluations.
 *
 * Usage: bench_search [generations]. Objectives are synthetic on the default
 * space (acc saturating in capacity, latency from MACs plus per-block costs,
 * int8 flash from parameters, SRAM from the largest block's activations),
 * evaluated two ways: the bare synthetic function, and with the cost of
 * OFA's accuracy predictor added (one-hot encoding through an MLP 3x400 ReLU
 * with fixed random weights, one candidate per call, as the search calls it).
 * The search is serial; the figures do not depend on the thread count.
 */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "search.h"
#include "space.h"

#define HIDDEN 400

struct bench_obj {
    struct ofa_space sp;
    int mlp;
    int dim;
    float *w[4], *b[4]; /* w[l] is [in][out] */
    float *x, *h0, *h1;
    long calls;
};

static double kernel_factor(int k)
{
    return k == 3 ? 1.0 : k == 5 ? 1.35 : 1.6;
}

/* out[o] = relu?(b[o] + sum_i x[i] w[i][o]); zero inputs (one-hot) skipped. */
static void dense(float *out, const float *x, const float *w, const float *b, int in, int nout,
                  int relu)
{
    memcpy(out, b, (size_t)nout * sizeof *out);
    for (int i = 0; i < in; i++) {
        float xi = x[i];
        if (xi == 0.0f)
            continue;
        const float *wi = w + (size_t)i * (size_t)nout;
        for (int o = 0; o < nout; o++)
            out[o] += xi * wi[o];
    }
    if (relu)
        for (int o = 0; o < nout; o++)
            out[o] = out[o] > 0.0f ? out[o] : 0.0f;
}

static float mlp_eval(struct bench_obj *bo, const struct ofa_subnet *s)
{
    ofa_subnet_onehot(&bo->sp, s, bo->x);
    dense(bo->h0, bo->x, bo->w[0], bo->b[0], bo->dim, HIDDEN, 1);
    dense(bo->h1, bo->h0, bo->w[1], bo->b[1], HIDDEN, HIDDEN, 1);
    dense(bo->h0, bo->h1, bo->w[2], bo->b[2], HIDDEN, HIDDEN, 1);
    float y;
    dense(&y, bo->h0, bo->w[3], bo->b[3], HIDDEN, 1, 0);
    return y;
}

static void objective(void *ctx, const struct ofa_subnet *s, struct ofa_objectives *o)
{
    struct bench_obj *bo = ctx;
    const struct ofa_space *sp = &bo->sp;
    bo->calls++;
    double cap = 0.0, blocks_ms = 0.0, sram = 0.0;
    int h = (s->res + sp->stem_stride - 1) / sp->stem_stride;
    int cin = sp->first_width;
    for (int st = 0; st < sp->n_stages; st++) {
        double w = 1.0 + 0.35 * st;
        for (int b = 0; b < s->depth[st]; b++) {
            int k = s->kernel[st][b], e = s->expand[st][b];
            int stride = b == 0 ? sp->stages[st].stride : 1;
            double blk = w * (e / 3.0) * kernel_factor(k) * (b == 0 ? 1.0 : 0.75);
            if (b > 0 && s->kernel[st][b - 1] == k)
                blk += 0.15;
            if (st == 0 && k == 7 && e == 6)
                blk -= 0.6;
            cap += blk;
            double act = (double)h * h * (cin + (double)cin * e) / 1024.0;
            if (act > sram)
                sram = act;
            h = (h + stride - 1) / stride;
            blocks_ms += 0.04 + 0.004 * k * e;
            cin = sp->stages[st].width;
        }
    }
    cap *= 0.6 + 0.4 * (s->res - 16) / 12.0;
    o->acc = 0.95 - 0.55 * exp(-cap / 14.0);
    if (bo->mlp) /* the predictor's cost; its output barely moves acc */
        o->acc += 1e-9 * mlp_eval(bo, s);
    o->mmacs = ofa_subnet_macs(sp, s) / 1e6;
    o->latency_ms = 0.3 + 0.25 * o->mmacs + blocks_ms;
    o->flash_kb = ofa_subnet_params(sp, s) / 1024.0;
    o->sram_kb = sram;
}

static void bench_obj_init(struct bench_obj *bo, int mlp)
{
    memset(bo, 0, sizeof *bo);
    ofa_space_default(&bo->sp);
    bo->mlp = mlp;
    bo->dim = ofa_subnet_onehot_size(&bo->sp);
    int in[4] = {bo->dim, HIDDEN, HIDDEN, HIDDEN}, out[4] = {HIDDEN, HIDDEN, HIDDEN, 1};
    struct ofa_rng r;
    ofa_rng_seed(&r, 5);
    for (int l = 0; l < 4; l++) {
        bo->w[l] = ofa_xmalloc((size_t)in[l] * (size_t)out[l] * sizeof(float), "mlp");
        bo->b[l] = ofa_xmalloc((size_t)out[l] * sizeof(float), "mlp");
        ofa_rng_fill_uniform(&r, bo->w[l], (long)in[l] * out[l], 1.0f / sqrtf((float)in[l]));
        ofa_rng_fill_uniform(&r, bo->b[l], out[l], 0.05f);
    }
    bo->x = ofa_xmalloc((size_t)bo->dim * sizeof(float), "mlp");
    bo->h0 = ofa_xmalloc(HIDDEN * sizeof(float), "mlp");
    bo->h1 = ofa_xmalloc(HIDDEN * sizeof(float), "mlp");
}

static void bench_obj_free(struct bench_obj *bo)
{
    for (int l = 0; l < 4; l++)
        free(bo->w[l]), free(bo->b[l]);
    free(bo->x), free(bo->h0), free(bo->h1);
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
           d->name, bo->mlp ? "+mlp" : "synth", t_evo, evo.evaluations, t_nsga,
           nsga.evaluations, t_rnd);
    printf("%-12s %-6s best acc: evolve %.5f, random %.5f (same evals)\n", d->name,
           bo->mlp ? "+mlp" : "synth", evo.obj[0].acc, rnd_evo.obj[0].acc);
    printf("%-12s %-6s hypervolume (ref acc %.4f, latency %.3f ms): evolve-population %.5f, "
           "nsga2-front %.5f (%d points), random %.5f / %.5f (evolve's / nsga2's evals)\n",
           d->name, bo->mlp ? "+mlp" : "synth", ref_acc, ref_lat,
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
