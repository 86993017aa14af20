/* extract.c: ofa-extract, one device: accuracy measurements (cached),
 * accuracy predictor, latency predictor, constrained evolutionary search,
 * real re-measurement of the best candidates, subnet.h5 + summary, and the
 * NSGA-II Pareto front against random search. Deterministic for a recipe,
 * supernet and thread count (measured latency aside). */
#include <config.h>

#include "extract.h"

#include "blas.h"
#include "ckpt.h"
#include "cli.h"
#include "data.h"
#include "device.h"
#include "predictor.h"
#include "recipe.h"
#include "rng.h"
#include "search.h"
#include "supernet.h"
#include "train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct extractor {
    const struct ofa_extract_opts *o;
    struct ofa_recipe r;
    char *recipe_text;
    struct ofa_supernet net;
    struct ofa_train_state st;
    struct ofa_dataset ds;
    struct ofa_exec ex;
    struct ofa_evaluator ev;
    const struct ofa_device *dev;
    struct ofa_space dev_sp; /* the space the device's search runs in (ofa_device_space) */
    struct ofa_latency *lat;
    struct ofa_predictor *pred;
    struct ofa_measurements m;
    float *onehot;
    int dim;
    char cache[1024], dir[1024];
};

/* The predictors as the search's objective function. */
static void objectives(void *ctx, const struct ofa_subnet *s, struct ofa_objectives *out)
{
    struct extractor *E = ctx;
    const struct ofa_space *sp = &E->net.sp;
    ofa_subnet_onehot(sp, s, E->onehot);
    out->acc = ofa_predictor_eval(E->pred, E->onehot);
    out->latency_ms = ofa_latency_predict(E->lat, s);
    out->flash_kb = (double)ofa_subnet_flash_bytes(sp, s) / 1024.0;
    out->sram_kb = (double)ofa_subnet_sram_bytes(sp, s) / 1024.0;
    out->mmacs = (double)ofa_subnet_macs(sp, s) * 1e-6;
}

/* ofa_measure_fn: a candidate's BN-recalibrated validation accuracy, and
 * its latency on this host when the device's model times this host. */
static void measure_candidate(void *ctx, const struct ofa_subnet *s, double *acc,
                              double *latency_ms)
{
    struct extractor *E = ctx;
    *acc = ofa_evaluate(&E->ev, &E->net, &E->ex, s);
    if (E->dev->model == OFA_LAT_MEASURED || E->dev->model == OFA_LAT_OPWISE)
        *latency_ms = ofa_latency_measure(&E->net, s, E->dev->arith, 21);
}

static void dirname_of(const char *path, char *out, size_t n)
{
    snprintf(out, n, "%s", path);
    char *slash = strrchr(out, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(out, n, ".");
}

static int load_inputs(struct extractor *E, struct ofa_error *err)
{
    const struct ofa_extract_opts *o = E->o;
    if (ofa_ckpt_read_recipe(o->supernet, &E->recipe_text, err))
        return -1;
    if (ofa_recipe_load_string(&E->r, E->recipe_text, o->supernet, err))
        return -1;
    const char *from = o->supernet;
    if (o->devices) {
        struct ofa_recipe *d = ofa_xmalloc(sizeof *d, "recipe");
        ofa_recipe_default(d);
        int rc = ofa_recipe_load(d, o->devices, err);
        if (!rc) {
            E->r.n_devices = d->n_devices;
            memcpy(E->r.devices, d->devices, sizeof d->devices);
        }
        free(d);
        if (rc)
            return -1;
        from = o->devices;
    }
    const int searching = !o->measure_only && !o->n_evaluate;
    E->dev = searching ? ofa_recipe_device(&E->r, o->device) : NULL;
    if (searching && !E->dev) {
        char names[1024] = "";
        for (int i = 0; i < E->r.n_devices; i++) {
            strncat(names, i ? ", " : "", sizeof names - strlen(names) - 1);
            strncat(names, E->r.devices[i].name, sizeof names - strlen(names) - 1);
        }
        return ofa_error_set(err, from, 0, "%s has no device '%s' (devices: %s)",
                             o->devices ? "it" : "its recipe", o->device,
                             E->r.n_devices ? names : "none");
    }
    if (E->dev && ofa_device_space(E->dev, &E->r.space, &E->dev_sp, from, err))
        return -1;
    ofa_supernet_init(&E->net, &E->r.space, 0);
    if (ofa_ckpt_load(o->supernet, &E->net.p, &E->st, err))
        return -1;
    if (ofa_dataset_load(o->data, &E->ds, err))
        return -1;
    if (ofa_dataset_fingerprint(&E->ds) != E->st.data_hash)
        return ofa_error_set(err, o->data, 0, "is not the data set (or split) that %s was "
                             "trained on", o->supernet);
    if (E->ds.train.c != E->r.space.in_channels || E->ds.num_classes != E->r.space.num_classes)
        return ofa_error_set(err, o->data, 0,
                             "has %d-channel images and %d classes; the supernet expects %d "
                             "and %d", E->ds.train.c, E->ds.num_classes,
                             E->r.space.in_channels, E->r.space.num_classes);
    ofa_evaluator_init(&E->ev, &E->ds, &E->r, o->test_split ? OFA_SPLIT_TEST : OFA_SPLIT_VAL,
                       (uint64_t)E->r.train.seed);
    ofa_exec_init(&E->ex, &E->net, ofa_evaluator_max_batch(&E->ev));
    E->dim = ofa_subnet_onehot_size(&E->r.space);
    E->onehot = ofa_xmalloc((size_t)E->dim * sizeof(float), "encoding");
    if (o->measurements)
        snprintf(E->cache, sizeof E->cache, "%s", o->measurements);
    else {
        snprintf(E->cache, sizeof E->cache, "%s", o->supernet);
        size_t n = strlen(E->cache);
        if (n > 3 && strcmp(E->cache + n - 3, ".h5") == 0)
            E->cache[n - 3] = '\0';
        strncat(E->cache, ".measurements.tsv", sizeof E->cache - strlen(E->cache) - 1);
    }
    if (o->output)
        dirname_of(o->output, E->dir, sizeof E->dir);
    return 0;
}

/* Measure the sampled subnets not in the cache (largest and smallest always
 * included); the cache is saved every 10 measurements and at the end. */
static int measure(struct extractor *E, int samples, struct ofa_error *err)
{
    const struct ofa_space *sp = &E->r.space;
    if (access(E->cache, F_OK) == 0 && ofa_measurements_load(&E->m, E->cache, sp, err))
        return -1;
    int fresh = 0;
    double t0 = ofa_now();
    for (int i = 0; i < samples; i++) {
        struct ofa_subnet s;
        if (i == 0)
            ofa_subnet_largest(sp, &s);
        else if (i == 1)
            ofa_subnet_smallest(sp, &s);
        else {
            struct ofa_rng r;
            ofa_rng_derive(&r, (uint64_t)E->r.train.seed, 0x6d656173ULL /* "meas" */,
                           (uint64_t)i);
            ofa_subnet_sample(sp, &r, &s);
        }
        if (ofa_measurements_find(&E->m, &s) >= 0)
            continue;
        double acc = ofa_evaluate(&E->ev, &E->net, &E->ex, &s);
        ofa_measurements_add(&E->m, &s, (float)acc);
        fresh++;
        if (E->o->progress) {
            double dt = ofa_now() - t0;
            fprintf(stderr, "%sofa-extract: measured %d/%d subnets (%.1f s each)%s",
                    isatty(2) ? "\r" : "", i + 1, samples, dt / fresh,
                    isatty(2) ? "\033[K" : "\n");
        }
        if (fresh % 10 == 0 && ofa_measurements_save(&E->m, E->cache, sp, err))
            return -1;
    }
    if (E->o->progress && fresh && isatty(2))
        fputc('\n', stderr);
    if (fresh && ofa_measurements_save(&E->m, E->cache, sp, err))
        return -1;
    if (E->o->progress)
        fprintf(stderr, "ofa-extract: %d measurements (%d new) in %s\n", E->m.n, fresh, E->cache);
    return 0;
}

/* Fit on 4 of every 5 measurements, report RMSE and Kendall tau on the
 * fifth, then refit on all of them for the search. */
static void fit_predictor(struct extractor *E, double *rmse, double *tau)
{
    const struct ofa_space *sp = &E->r.space;
    const int n = E->m.n, d = E->dim;
    float *x = ofa_xmalloc((size_t)n * d * sizeof(float), "predictor inputs");
    float *y = ofa_xmalloc((size_t)n * sizeof(float), "predictor targets");
    float *hx = ofa_xmalloc((size_t)n * d * sizeof(float), "held-out inputs");
    float *hy = ofa_xmalloc((size_t)n * sizeof(float), "held-out targets");
    float *hp = ofa_xmalloc((size_t)n * sizeof(float), "held-out predictions");
    int nt = 0, nh = 0;
    for (int i = 0; i < n; i++) {
        int held = i % 5 == 4;
        ofa_subnet_onehot(sp, &E->m.sub[i], (held ? hx + (size_t)nh * d : x + (size_t)nt * d));
        if (held)
            hy[nh++] = E->m.acc[i];
        else
            y[nt++] = E->m.acc[i];
    }
    struct ofa_mlp_cfg c;
    ofa_mlp_cfg_default(&c);
    c.seed = (uint64_t)E->r.train.seed;
    *rmse = *tau = NAN;
    if (nh >= 2) {
        struct ofa_predictor *p = ofa_predictor_fit(x, y, nt, d, &c);
        ofa_predictor_eval_batch(p, hx, nh, hp);
        *rmse = ofa_rmse(hp, hy, nh);
        *tau = ofa_kendall_tau(hp, hy, nh);
        ofa_predictor_free(p);
    }
    for (int i = 0; i < n; i++) {
        ofa_subnet_onehot(sp, &E->m.sub[i], x + (size_t)i * d);
        y[i] = E->m.acc[i];
    }
    E->pred = ofa_predictor_fit(x, y, n, d, &c);
    free(x), free(y), free(hx), free(hy), free(hp);
}

static int write_pareto(const char *path, const struct ofa_space *sp,
                        const struct ofa_search_result *front, struct ofa_error *err)
{
    struct ofa_atomic_file af;
    FILE *f = ofa_atomic_open(&af, path, err);
    if (!f)
        return -1;
    ofa_search_write_tsv(f, sp, front);
    return ofa_atomic_commit(&af, err);
}

/* "12.5 ms", or "none" for a budget of 0. */
static void budget(char *buf, size_t n, double v, const char *unit)
{
    if (v > 0)
        snprintf(buf, n, "%g %s", v, unit);
    else
        snprintf(buf, n, "none");
}

/* The latency model as records and reports name it: "measured int8" for a
 * host profile of the int8 runtime, else the model's name. */
static const char *model_label(const struct ofa_device *dev)
{
    if (dev->model == OFA_LAT_MEASURED && dev->arith == OFA_ARITH_INT8)
        return "measured int8";
    return ofa_latency_model_name(dev->model);
}

static int run(struct extractor *E, struct ofa_error *err)
{
    const struct ofa_extract_opts *o = E->o;
    const struct ofa_space *sp = &E->dev_sp;
    const struct ofa_device *dev = E->dev;
    if (measure(E, o->samples > 0 ? o->samples : E->r.extract.samples, err))
        return -1;
    double rmse, tau;
    fit_predictor(E, &rmse, &tau);
    if (o->progress)
        fprintf(stderr, "ofa-extract: accuracy predictor on held-out subnets: RMSE %.2f points, "
                        "Kendall tau %.3f\n", 100 * rmse, tau);
    double t0 = ofa_now();
    if (ofa_latency_init(&E->lat, dev, &E->net, E->dir, err))
        return -1;
    if (o->progress)
        fprintf(stderr, "ofa-extract: %s latency predictor for %s ready in %.1f s\n",
                model_label(dev), dev->name, ofa_now() - t0);

    struct ofa_constraints c = {dev->latency_ms, dev->flash_kb, dev->sram_kb, dev->mmacs};
    struct ofa_search_cfg sc;
    ofa_search_cfg_default(&sc);
    sc.seed = (uint64_t)E->r.train.seed;
    sc.generations = o->generations > 0 ? o->generations : E->r.extract.generations;
    struct ofa_search_result best = {0}, front = {0}, rnd = {0};
    int rc = -1;
    /* The best distinct candidates re-measured for real (see
     * ofa_search_choose: a timed budget that none meets searches again
     * under a calibrated one). */
    struct ofa_choice ch;
    int top = o->top > 0 ? o->top : E->r.extract.top;
    int got = ofa_search_choose(sp, &sc, &c, objectives, E, measure_candidate, E, top, &best,
                                &ch, err);
    if (got == -1) {
        /* name the device in the message */
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err->msg);
        ofa_error_set(err, o->devices ? o->devices : o->supernet, 0, "device %s: %s", dev->name,
                      msg); /* the file that declares the device */
        goto out;
    }
    if (got) {
        ofa_error_set(err, o->supernet, 0,
                      "device %s: none of the %d best candidates meets the latency budget of "
                      "%.3f ms when measured, after %d searches (the last under %.3f ms): the "
                      "predictor is optimistic or this host's timings are noisy; loosen the "
                      "budget",
                      dev->name, ch.top, dev->latency_ms, ch.searches, ch.search_latency_ms);
        goto out;
    }
    const int chosen = ch.chosen;
    if (o->progress && ch.searches > 1)
        fprintf(stderr, "ofa-extract: %s: searched %d times: the candidates of the first "
                        "measured over %.3f ms; the last search was under %.3f ms\n",
                dev->name, ch.searches, c.latency_ms, ch.search_latency_ms);
    /* NSGA-II front and random search with the same number of evaluations. */
    if (ofa_search_nsga2(sp, &sc, &c, objectives, E, &front, err))
        goto out;
    if (ofa_search_random(sp, front.evaluations, sc.seed, &c, objectives, E, &rnd, err))
        goto out;
    double ref_acc = 0, ref_lat = 0;
    for (int i = 0; i < front.n; i++)
        ref_lat = fmax(ref_lat, front.obj[i].latency_ms);
    for (int i = 0; i < rnd.n; i++)
        ref_lat = fmax(ref_lat, rnd.obj[i].latency_ms);
    ref_lat *= 1.05;
    double hv_nsga = ofa_hypervolume(front.obj, front.n, ref_acc, ref_lat);
    double hv_rand = ofa_hypervolume(rnd.obj, rnd.n, ref_acc, ref_lat);
    char pareto[1100];
    snprintf(pareto, sizeof pareto, "%s/pareto.tsv", E->dir);
    if (write_pareto(pareto, sp, &front, err))
        goto out;

    const struct ofa_subnet *s = &best.sub[chosen];
    struct ofa_subnet_record rec;
    memset(&rec, 0, sizeof rec);
    ofa_subnet_format(sp, s, rec.subnet, sizeof rec.subnet);
    snprintf(rec.device, sizeof rec.device, "%s", dev->name);
    snprintf(rec.latency_model, sizeof rec.latency_model, "%s", model_label(dev));
    rec.supernet_fingerprint = ofa_ckpt_fingerprint(E->recipe_text, &E->st);
    rec.acc_predicted = best.obj[chosen].acc;
    rec.acc_measured = ch.acc[chosen];
    rec.latency_predicted_ms = best.obj[chosen].latency_ms;
    rec.latency_measured_ms = ch.latency_ms[chosen];
    rec.mmacs = best.obj[chosen].mmacs;
    rec.params = ofa_subnet_params(sp, s);
    rec.flash_bytes = ofa_subnet_flash_bytes(sp, s);
    rec.sram_bytes = ofa_subnet_sram_bytes(sp, s);
    rec.budget_latency_ms = dev->latency_ms;
    rec.budget_flash_kb = dev->flash_kb;
    rec.budget_sram_kb = dev->sram_kb;
    rec.budget_mmacs = dev->mmacs;

    char summary[1100];
    snprintf(summary, sizeof summary, "%s/subnet.txt", E->dir);
    struct ofa_atomic_file af;
    FILE *f = ofa_atomic_open(&af, summary, err);
    if (!f)
        goto out;
    fprintf(f, "device          %s (%s latency model%s%s)\n", dev->name, model_label(dev),
            dev->source[0] ? "; " : "", dev->source);
    fprintf(f, "subnet          %s\n", rec.subnet);
    fprintf(f, "accuracy        %.2f%% measured (validation, BN-recalibrated), %.2f%% predicted\n",
            100 * rec.acc_measured, 100 * rec.acc_predicted);
    char b[4][32];
    budget(b[0], sizeof b[0], dev->latency_ms, "ms");
    budget(b[1], sizeof b[1], dev->mmacs, "M");
    budget(b[2], sizeof b[2], dev->flash_kb, "KB");
    budget(b[3], sizeof b[3], dev->sram_kb, "KB");
    fprintf(f, "latency         %.3f ms predicted", rec.latency_predicted_ms);
    if (!isnan(rec.latency_measured_ms))
        fprintf(f, ", %.3f ms measured on this host", rec.latency_measured_ms);
    fprintf(f, " (budget %s", b[0]);
    if (ch.searches > 1)
        fprintf(f, "; searched %d times, the last under %.3f ms: the earlier candidates "
                   "measured over the budget", ch.searches, ch.search_latency_ms);
    fprintf(f, ")\n");
    fprintf(f, "MACs            %.2f M (budget %s)\n", rec.mmacs, b[1]);
    fprintf(f, "parameters      %lld\n", rec.params);
    fprintf(f, "flash (int8)    %.1f KB (budget %s)\n", rec.flash_bytes / 1024.0, b[2]);
    fprintf(f, "SRAM (int8)     %.1f KB (budget %s)\n", rec.sram_bytes / 1024.0, b[3]);
    fprintf(f, "predictor       %d measured subnets; held-out RMSE %.2f points, Kendall tau "
               "%.3f\n", E->m.n, 100 * rmse, tau);
    fprintf(f, "search          evolution %d generations x %d in %.2f s; NSGA-II front of %d "
               "(hypervolume %.4g) vs random search %ld evaluations (%.4g)",
            sc.generations, sc.population, ch.seconds, front.n, hv_nsga, rnd.evaluations,
            hv_rand);
    for (int i = 0; dev->n_res && i < sp->n_res; i++)
        fprintf(f, "%s%d", i ? ", " : "; the device's resolutions only: ", sp->resolutions[i]);
    fprintf(f, "\n");
    fprintf(f, "candidates      (predicted acc / measured acc / measured latency ms)\n");
    for (int i = 0; i < ch.top; i++) {
        char t[OFA_SUBNET_TEXT_MAX];
        ofa_subnet_format(sp, &best.sub[i], t, sizeof t);
        fprintf(f, "  %s %s %.4f / %.4f / %.3f\n", i == chosen ? "*" : " ", t, best.obj[i].acc,
                ch.acc[i], ch.latency_ms[i]);
    }
    if (ofa_atomic_commit(&af, err))
        goto out;
    /* Last: subnet.h5 is what make waits for. */
    if (ofa_subnet_record_save(o->output, &rec, err))
        goto out;
    if (o->progress)
        fprintf(stderr, "ofa-extract: %s: %s, %.2f%% validation accuracy, %.2f M MACs; wrote %s\n",
                dev->name, rec.subnet, 100 * rec.acc_measured, rec.mmacs, o->output);
    rc = 0;
out:
    ofa_search_result_free(&best);
    ofa_search_result_free(&front);
    ofa_search_result_free(&rnd);
    return rc;
}

/* Seed of random:N in --evaluate: fixed, so that every supernet of a space
 * is judged on the same subnets. */
#define EVAL_RANDOM_SEED 2024

static int eval_one(struct extractor *E, const char *name, const struct ofa_subnet *s)
{
    const struct ofa_space *sp = &E->net.sp;
    char t[OFA_SUBNET_TEXT_MAX];
    ofa_subnet_format(sp, s, t, sizeof t);
    double acc = ofa_evaluate(&E->ev, &E->net, &E->ex, s);
    fprintf(E->o->eval_out, "%s\t%s\t%.4f\t%lld\t%.4f\n", name, t,
            (double)ofa_subnet_macs(sp, s) * 1e-6, ofa_subnet_params(sp, s), acc);
    fflush(E->o->eval_out);
    return ferror(E->o->eval_out) ? -1 : 0;
}

static int evaluate(struct extractor *E, struct ofa_error *err)
{
    const struct ofa_extract_opts *o = E->o;
    const struct ofa_space *sp = &E->net.sp;
    fprintf(o->eval_out, "name\tsubnet\tmmacs\tparams\taccuracy_%s\n",
            o->test_split ? "test" : "val");
    for (int i = 0; i < o->n_evaluate; i++) {
        const char *a = o->evaluate[i];
        struct ofa_subnet s;
        int rc;
        if (!strcmp(a, "largest") || !strcmp(a, "medium") || !strcmp(a, "smallest")) {
            (a[0] == 'l' ? ofa_subnet_largest : a[0] == 'm' ? ofa_subnet_medium
                                                            : ofa_subnet_smallest)(sp, &s);
            rc = eval_one(E, a, &s);
        } else if (!strncmp(a, "random:", 7)) {
            long n;
            if (ofa_parse_long(a + 7, 1, 100000, "random:N", &n, err))
                return -1;
            struct ofa_rng r;
            ofa_rng_seed(&r, EVAL_RANDOM_SEED);
            rc = 0;
            for (long k = 0; k < n && !rc; k++) {
                char name[32];
                snprintf(name, sizeof name, "random%ld", k + 1);
                ofa_subnet_sample(sp, &r, &s);
                rc = eval_one(E, name, &s);
            }
        } else {
            if (ofa_subnet_parse(sp, a, &s, err))
                return -1;
            rc = eval_one(E, "subnet", &s);
        }
        if (rc)
            return ofa_error_set(err, NULL, 0, "error writing the evaluation: %s",
                                 strerror(errno));
    }
    return 0;
}

int ofa_extract_run(const struct ofa_extract_opts *o, struct ofa_error *err)
{
    struct extractor *E = ofa_xcalloc(1, sizeof *E, "extractor");
    E->o = o;
    if (o->threads > 0)
        ofa_threads_set(o->threads);
    int rc = load_inputs(E, err);
    if (rc == 0)
        rc = o->n_evaluate     ? evaluate(E, err)
             : o->measure_only ? measure(E, o->samples > 0 ? o->samples : E->r.extract.samples, err)
                               : run(E, err);
    if (E->lat)
        ofa_latency_free(E->lat);
    if (E->pred)
        ofa_predictor_free(E->pred);
    ofa_measurements_free(&E->m);
    ofa_evaluator_free(&E->ev);
    ofa_exec_free(&E->ex);
    ofa_supernet_free(&E->net);
    ofa_dataset_free(&E->ds);
    free(E->onehot);
    free(E->recipe_text);
    free(E);
    return rc;
}

int ofa_extract_list_devices(const char *supernet, const char *recipe, FILE *out,
                             struct ofa_error *err)
{
    struct ofa_recipe r;
    OFA_ASSERT(!supernet != !recipe);
    if (recipe) {
        ofa_recipe_default(&r);
        if (ofa_recipe_load(&r, recipe, err))
            return -1;
    } else {
        char *text = NULL;
        if (ofa_ckpt_read_recipe(supernet, &text, err))
            return -1;
        int rc = ofa_recipe_load_string(&r, text, supernet, err);
        free(text);
        if (rc)
            return -1;
    }
    for (int i = 0; i < r.n_devices; i++)
        fprintf(out, "%s\n", r.devices[i].name);
    return 0;
}
