#include <config.h>
/* check_search.c: evolutionary, NSGA-II and random search on synthetic
 * objectives over the default space: budgets met, better than random at equal
 * evaluations, clean infeasibility errors, determinism, hypervolume, fronts. */

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "search.h"
#include "synthetic.h"
#include "space.h"
#include "util.h"

/* ---- synthetic objectives ---- */

struct synth {
    struct ofa_space sp;
    long calls;
    /* optional record of every evaluated subnet */
    struct ofa_subnet *seen;
    long nseen, capseen;
};

/* The synthetic objective (tests/synthetic.c), counting calls and,
 * optionally, recording every evaluated subnet. */
static void synth_obj(void *ctx, const struct ofa_subnet *s, struct ofa_objectives *o)
{
    struct synth *sy = ctx;
    const struct ofa_space *sp = &sy->sp;
    sy->calls++;
    if (sy->seen) {
        if (sy->nseen == sy->capseen) {
            sy->capseen *= 2;
            sy->seen = realloc(sy->seen, (size_t)sy->capseen * sizeof *sy->seen);
            ck_assert_ptr_nonnull(sy->seen);
        }
        sy->seen[sy->nseen++] = *s;
    }
    synth_objectives(sp, s, o);
}

static void synth_init(struct synth *sy)
{
    memset(sy, 0, sizeof *sy);
    ofa_space_default(&sy->sp);
}

static void objectives_of(struct synth *sy, const struct ofa_subnet *s, struct ofa_objectives *o)
{
    long calls = sy->calls;
    struct ofa_subnet *seen = sy->seen;
    sy->seen = NULL;
    synth_obj(sy, s, o);
    sy->seen = seen;
    sy->calls = calls;
}

static void extremes(struct synth *sy, struct ofa_objectives *lo, struct ofa_objectives *hi)
{
    struct ofa_subnet s;
    ofa_subnet_smallest(&sy->sp, &s);
    objectives_of(sy, &s, lo);
    ofa_subnet_largest(&sy->sp, &s);
    objectives_of(sy, &s, hi);
}

static void small_cfg(struct ofa_search_cfg *cfg, int generations, uint64_t seed)
{
    ofa_search_cfg_default(cfg);
    cfg->generations = generations;
    cfg->seed = seed;
}

/* A latency budget at fraction t between the smallest and largest subnet. */
static double latency_at(struct synth *sy, double t)
{
    struct ofa_objectives lo, hi;
    extremes(sy, &lo, &hi);
    return lo.latency_ms + t * (hi.latency_ms - lo.latency_ms);
}

static int cmp_subnet(const void *a, const void *b)
{
    return memcmp(a, b, sizeof(struct ofa_subnet));
}

/* Index of a repeated subnet in s[0..n), or -1. (Check records every
 * ck_assert, so loops over many candidates test with plain ifs.) */
static long find_duplicate(const struct ofa_subnet *s, long n)
{
    struct ofa_subnet *c = malloc((size_t)(n ? n : 1) * sizeof *c);
    ck_assert_ptr_nonnull(c);
    memcpy(c, s, (size_t)n * sizeof *c);
    qsort(c, (size_t)n, sizeof *c, cmp_subnet);
    long dup = -1;
    for (long i = 1; i < n && dup < 0; i++)
        if (!cmp_subnet(&c[i - 1], &c[i]))
            dup = i;
    free(c);
    return dup;
}

static void assert_result_sane(struct synth *sy, const struct ofa_search_result *r,
                               const struct ofa_constraints *c)
{
    ck_assert_int_gt(r->n, 0);
    for (int i = 0; i < r->n; i++) {
        struct ofa_subnet s = r->sub[i];
        if (!ofa_subnet_valid(&sy->sp, &s))
            ck_abort_msg("candidate %d is not in the space", i);
        ofa_subnet_normalize(&sy->sp, &s);
        if (memcmp(&s, &r->sub[i], sizeof s) != 0)
            ck_abort_msg("candidate %d is not normalised", i);
        struct ofa_objectives o;
        objectives_of(sy, &s, &o);
        if (memcmp(&o, &r->obj[i], sizeof o) != 0)
            ck_abort_msg("candidate %d: objectives are not its own", i);
        if (!ofa_constraints_met(c, &r->obj[i]))
            ck_abort_msg("candidate %d breaks a budget", i);
    }
    ck_assert_int_eq(find_duplicate(r->sub, r->n), -1);
}

/* ---- tests ---- */

START_TEST(test_constraints_met_checks_only_set_budgets)
{
    struct ofa_constraints c = {0};
    struct ofa_objectives o = {0.5, 10.0, 100.0, 50.0, 20.0};
    ck_assert(ofa_constraints_met(&c, &o));
    c.latency_ms = 10.0;
    ck_assert(ofa_constraints_met(&c, &o));
    c.latency_ms = 9.99;
    ck_assert(!ofa_constraints_met(&c, &o));
    c.latency_ms = 0.0;
    c.sram_kb = 49.0;
    ck_assert(!ofa_constraints_met(&c, &o));
    c.sram_kb = 0.0, c.flash_kb = 100.0, c.mmacs = 20.0;
    ck_assert(ofa_constraints_met(&c, &o));
    c.mmacs = 19.0;
    ck_assert(!ofa_constraints_met(&c, &o));
}
END_TEST

START_TEST(test_evolve_finds_feasible_subnets_for_every_budget)
{
    struct synth sy;
    synth_init(&sy);
    struct ofa_objectives lo, hi;
    extremes(&sy, &lo, &hi);
    struct ofa_constraints budgets[5] = {
        {lo.latency_ms + 0.2 * (hi.latency_ms - lo.latency_ms), 0, 0, 0},
        {0, lo.flash_kb * 1.15, lo.sram_kb * 1.5, 0},
        {0, 0, 0, lo.mmacs + 0.3 * (hi.mmacs - lo.mmacs)},
        {lo.latency_ms * 1.3, hi.flash_kb * 0.6, hi.sram_kb * 0.5, hi.mmacs * 0.5},
        {lo.latency_ms * 1.01, 0, 0, 0}, /* barely above the smallest subnet */
    };
    for (int k = 0; k < 5; k++) {
        struct ofa_search_cfg cfg;
        small_cfg(&cfg, 20, 7);
        struct ofa_search_result r;
        struct ofa_error err = {0};
        int rc = ofa_search_evolve(&sy.sp, &cfg, &budgets[k], synth_obj, &sy, &r, &err);
        ck_assert_msg(rc == 0, "budget set %d: %s", k, err.msg);
        assert_result_sane(&sy, &r, &budgets[k]);
        for (int i = 1; i < r.n; i++)
            ck_assert(r.obj[i - 1].acc >= r.obj[i].acc);
        ck_assert_int_le(r.n, cfg.parents + cfg.mutants + cfg.crossovers);
        ofa_search_result_free(&r);
    }
}
END_TEST

START_TEST(test_evolve_returns_full_population_of_distinct_subnets)
{
    struct synth sy;
    synth_init(&sy);
    struct ofa_constraints c = {latency_at(&sy, 0.5), 0, 0, 0};
    struct ofa_search_cfg cfg;
    small_cfg(&cfg, 10, 3);
    struct ofa_search_result r;
    struct ofa_error err = {0};
    ck_assert_int_eq(ofa_search_evolve(&sy.sp, &cfg, &c, synth_obj, &sy, &r, &err), 0);
    ck_assert_int_eq(r.n, cfg.parents + cfg.mutants + cfg.crossovers);
    assert_result_sane(&sy, &r, &c);
    ofa_search_result_free(&r);
    /* no generations: the initial population */
    small_cfg(&cfg, 0, 3);
    ck_assert_int_eq(ofa_search_evolve(&sy.sp, &cfg, &c, synth_obj, &sy, &r, &err), 0);
    ck_assert_int_eq(r.n, cfg.population);
    assert_result_sane(&sy, &r, &c);
    ofa_search_result_free(&r);
    ofa_search_result_free(&r); /* twice is safe */
}
END_TEST

START_TEST(test_no_subnet_is_evaluated_twice)
{
    struct synth sy;
    synth_init(&sy);
    sy.capseen = 1024;
    sy.seen = malloc((size_t)sy.capseen * sizeof *sy.seen);
    struct ofa_constraints c = {latency_at(&sy, 0.3), 0, 0, 0};
    struct ofa_search_cfg cfg;
    small_cfg(&cfg, 15, 5);
    struct ofa_search_result r;
    struct ofa_error err = {0};
    ck_assert_int_eq(ofa_search_evolve(&sy.sp, &cfg, &c, synth_obj, &sy, &r, &err), 0);
    ck_assert_int_eq(r.evaluations, sy.calls);
    ck_assert_int_eq(sy.nseen, sy.calls);
    /* the search converges, so many genomes repeat: the cache must absorb them */
    for (long i = 0; i < sy.nseen; i++)
        if (!ofa_subnet_valid(&sy.sp, &sy.seen[i]))
            ck_abort_msg("evaluation %ld is not in the space", i);
    ck_assert_int_eq(find_duplicate(sy.seen, sy.nseen), -1);
    ofa_search_result_free(&r);
    free(sy.seen);
}
END_TEST

static double best_feasible(const struct ofa_search_result *r)
{
    return r->n ? r->obj[0].acc : 0.0;
}

START_TEST(test_evolve_beats_random_search_at_equal_evaluations)
{
    struct synth sy;
    synth_init(&sy);
    struct ofa_constraints c = {latency_at(&sy, 0.25), 0, 0, 0};
    double evo = 0.0, rnd = 0.0;
    int seeds = 4;
    for (int k = 0; k < seeds; k++) {
        struct ofa_search_cfg cfg;
        small_cfg(&cfg, 40, 100 + (uint64_t)k);
        struct ofa_search_result a, b;
        struct ofa_error err = {0};
        ck_assert_int_eq(ofa_search_evolve(&sy.sp, &cfg, &c, synth_obj, &sy, &a, &err), 0);
        ck_assert_int_eq(ofa_search_random(&sy.sp, a.evaluations, cfg.seed, &c, synth_obj, &sy,
                                           &b, &err),
                         0);
        ck_assert_int_eq(b.evaluations, a.evaluations);
        assert_result_sane(&sy, &b, &c);
        for (int i = 1; i < b.n; i++)
            if (!(b.obj[i - 1].acc >= b.obj[i].acc))
                ck_abort_msg("random search result not sorted at %d", i);
        evo += best_feasible(&a) / seeds;
        rnd += best_feasible(&b) / seeds;
        ofa_search_result_free(&a);
        ofa_search_result_free(&b);
    }
    /* about +0.015 here; a clear margin, not a tie */
    ck_assert_msg(evo > rnd + 0.005, "evolution %.5f vs random %.5f", evo, rnd);
}
END_TEST

START_TEST(test_nsga2_hypervolume_beats_random_search)
{
    struct synth sy;
    synth_init(&sy);
    struct ofa_objectives lo, hi;
    extremes(&sy, &lo, &hi);
    struct ofa_constraints c = {latency_at(&sy, 0.6), 0, 0, 0};
    double ref_acc = lo.acc - 0.02, ref_lat = c.latency_ms;
    double hn = 0.0, hr = 0.0;
    int seeds = 3;
    for (int k = 0; k < seeds; k++) {
        struct ofa_search_cfg cfg;
        small_cfg(&cfg, 40, 200 + (uint64_t)k);
        struct ofa_search_result a, b;
        struct ofa_error err = {0};
        ck_assert_int_eq(ofa_search_nsga2(&sy.sp, &cfg, &c, synth_obj, &sy, &a, &err), 0);
        ck_assert_int_eq(ofa_search_random(&sy.sp, a.evaluations, cfg.seed, &c, synth_obj, &sy,
                                           &b, &err),
                         0);
        hn += ofa_hypervolume(a.obj, a.n, ref_acc, ref_lat) / seeds;
        hr += ofa_hypervolume(b.obj, b.n, ref_acc, ref_lat) / seeds;
        ofa_search_result_free(&a);
        ofa_search_result_free(&b);
    }
    /* about +15% here */
    ck_assert_msg(hn > 1.05 * hr, "NSGA-II %.6f vs random %.6f", hn, hr);
}
END_TEST

START_TEST(test_nsga2_front_is_nondominated_feasible_and_sorted_by_latency)
{
    struct synth sy;
    synth_init(&sy);
    struct ofa_constraints c = {latency_at(&sy, 0.5), 0, 0, 0};
    struct ofa_search_cfg cfg;
    small_cfg(&cfg, 30, 11);
    struct ofa_search_result r;
    struct ofa_error err = {0};
    ck_assert_int_eq(ofa_search_nsga2(&sy.sp, &cfg, &c, synth_obj, &sy, &r, &err), 0);
    assert_result_sane(&sy, &r, &c);
    ck_assert_int_ge(r.n, 5);
    ck_assert_int_le(r.n, cfg.population);
    for (int i = 0; i < r.n; i++) {
        if (i)
            ck_assert(r.obj[i - 1].latency_ms <= r.obj[i].latency_ms);
        for (int j = 0; j < r.n; j++) {
            const struct ofa_objectives *a = &r.obj[i], *b = &r.obj[j];
            int dom = a->acc >= b->acc && a->latency_ms <= b->latency_ms &&
                      (a->acc > b->acc || a->latency_ms < b->latency_ms);
            ck_assert_msg(!dom, "front member %d dominates %d", i, j);
        }
    }
    ofa_search_result_free(&r);
}
END_TEST

START_TEST(test_infeasible_latency_budget_names_budget_and_smallest_figure)
{
    struct synth sy;
    synth_init(&sy);
    struct ofa_objectives lo, hi;
    extremes(&sy, &lo, &hi);
    struct ofa_constraints c = {lo.latency_ms * 0.5, 0, 0, 0};
    char need[64];
    snprintf(need, sizeof need, "smallest subnet needs %.4g", lo.latency_ms);
    struct ofa_search_cfg cfg;
    small_cfg(&cfg, 5, 1);
    cfg.max_tries = 20;
    for (int mode = 0; mode < 3; mode++) {
        struct ofa_search_result r;
        struct ofa_error err = {0};
        int rc = mode == 0   ? ofa_search_evolve(&sy.sp, &cfg, &c, synth_obj, &sy, &r, &err)
                 : mode == 1 ? ofa_search_nsga2(&sy.sp, &cfg, &c, synth_obj, &sy, &r, &err)
                             : ofa_search_random(&sy.sp, 500, 1, &c, synth_obj, &sy, &r, &err);
        ck_assert_int_eq(rc, -1);
        ck_assert_int_eq(r.n, 0);
        ck_assert_ptr_null(r.sub);
        ck_assert_msg(strstr(err.msg, "no subnet meets the budgets") != NULL, "%s", err.msg);
        ck_assert_msg(strstr(err.msg, "tightest budget latency_ms") != NULL, "%s", err.msg);
        ck_assert_msg(strstr(err.msg, need) != NULL, "%s (want '%s')", err.msg, need);
        ck_assert_str_eq(err.file, "");
        ofa_search_result_free(&r);
    }
}
END_TEST

START_TEST(test_infeasible_message_names_the_tightest_of_several_budgets)
{
    struct synth sy;
    synth_init(&sy);
    struct ofa_objectives lo, hi;
    extremes(&sy, &lo, &hi);
    /* flash misses by 2x, latency by 10%: flash is the tightest */
    struct ofa_constraints c = {lo.latency_ms * 0.9, lo.flash_kb * 0.5, hi.sram_kb, 0};
    struct ofa_search_cfg cfg;
    small_cfg(&cfg, 5, 1);
    cfg.max_tries = 20;
    struct ofa_search_result r;
    struct ofa_error err = {0};
    ck_assert_int_eq(ofa_search_evolve(&sy.sp, &cfg, &c, synth_obj, &sy, &r, &err), -1);
    char want[128];
    snprintf(want, sizeof want, "tightest budget flash_kb %.4g (smallest subnet needs %.4g)",
             c.flash_kb, lo.flash_kb);
    ck_assert_msg(strstr(err.msg, want) != NULL, "%s (want '%s')", err.msg, want);
    snprintf(want, sizeof want, "also latency_ms %.4g (smallest subnet needs %.4g)",
             c.latency_ms, lo.latency_ms);
    ck_assert_msg(strstr(err.msg, want) != NULL, "%s (want '%s')", err.msg, want);
    ck_assert_msg(strstr(err.msg, "also sram_kb") == NULL, "%s", err.msg);
    ck_assert_msg(strstr(err.msg, "sram_kb") != NULL, "budget list: %s", err.msg);
}
END_TEST

static int same_result(const struct ofa_search_result *a, const struct ofa_search_result *b)
{
    return a->n == b->n && a->evaluations == b->evaluations &&
           memcmp(a->sub, b->sub, (size_t)a->n * sizeof *a->sub) == 0 &&
           memcmp(a->obj, b->obj, (size_t)a->n * sizeof *a->obj) == 0;
}

static int run_mode(int mode, struct synth *sy, uint64_t seed, const struct ofa_constraints *c,
                    struct ofa_search_result *r)
{
    struct ofa_search_cfg cfg;
    small_cfg(&cfg, 15, seed);
    struct ofa_error err = {0};
    int rc = mode == 0   ? ofa_search_evolve(&sy->sp, &cfg, c, synth_obj, sy, r, &err)
             : mode == 1 ? ofa_search_nsga2(&sy->sp, &cfg, c, synth_obj, sy, r, &err)
                         : ofa_search_random(&sy->sp, 2000, seed, c, synth_obj, sy, r, &err);
    ck_assert_msg(rc == 0, "%s", err.msg);
    return rc;
}

START_TEST(test_same_seed_gives_identical_results_and_another_seed_differs)
{
    struct synth sy;
    synth_init(&sy);
    struct ofa_constraints c = {latency_at(&sy, 0.4), 0, 0, 0};
    for (int mode = 0; mode < 3; mode++) {
        struct ofa_search_result a, b, d;
        run_mode(mode, &sy, 42, &c, &a);
        run_mode(mode, &sy, 42, &c, &b);
        run_mode(mode, &sy, 43, &c, &d);
        ck_assert_msg(same_result(&a, &b), "mode %d: same seed, different results", mode);
        ck_assert_msg(!same_result(&a, &d), "mode %d: seeds 42 and 43 agree", mode);
        ofa_search_result_free(&a);
        ofa_search_result_free(&b);
        ofa_search_result_free(&d);
    }
}
END_TEST

START_TEST(test_tight_budget_falls_back_to_smallest_subnet)
{
    struct synth sy;
    synth_init(&sy);
    struct ofa_objectives lo, hi;
    extremes(&sy, &lo, &hi);
    /* only the smallest subnet fits: no random draw will find it */
    struct ofa_constraints c = {lo.latency_ms, lo.flash_kb, 0, 0};
    struct ofa_search_cfg cfg;
    small_cfg(&cfg, 3, 1);
    cfg.max_tries = 10;
    struct ofa_search_result r;
    struct ofa_error err = {0};
    ck_assert_msg(ofa_search_evolve(&sy.sp, &cfg, &c, synth_obj, &sy, &r, &err) == 0, "%s",
                  err.msg);
    struct ofa_subnet s;
    ofa_subnet_smallest(&sy.sp, &s);
    ck_assert_int_eq(r.n, 1);
    ck_assert(memcmp(&r.sub[0], &s, sizeof s) == 0);
    ofa_search_result_free(&r);
}
END_TEST

static struct ofa_objectives pt(double acc, double lat)
{
    struct ofa_objectives o = {0};
    o.acc = acc;
    o.latency_ms = lat;
    return o;
}

/* The calibrated budget: the budget over the median ratio of measured to
 * predicted latency on the first retry, over the largest later, never
 * looser than the budget itself. */
START_TEST(test_calibrated_budget_of_hand_examples)
{
    const double pred[4] = {1.0, 2.0, 1.0, 0.5}, meas[4] = {1.1, 2.6, 1.5, 0.5};
    /* ratios 1.1, 1.3, 1.5, 1.0: median 1.2, largest 1.5 */
    ck_assert_double_eq_tol(ofa_search_calibrated_budget(1.2, pred, meas, 4, 1), 1.0, 1e-12);
    ck_assert_double_eq_tol(ofa_search_calibrated_budget(1.2, pred, meas, 4, 2), 0.8, 1e-12);
    const double fast[2] = {0.5, 0.9}; /* measured under the prediction */
    ck_assert_double_eq_tol(ofa_search_calibrated_budget(1.2, pred, fast, 2, 1), 1.2, 1e-12);
    ck_assert_double_eq_tol(ofa_search_calibrated_budget(1.2, pred, fast, 2, 2), 1.2, 1e-12);
    /* the inputs are left as they were (the median sorts a copy) */
    ck_assert(meas[0] == 1.1 && meas[1] == 2.6 && meas[2] == 1.5 && meas[3] == 0.5);
}
END_TEST

/* A host whose timings run `scale` x the prediction (NAN: not timed);
 * accuracy as predicted. */
struct host {
    struct synth *sy;
    double scale;
    int calls;
};
static void host_measure(void *ctx, const struct ofa_subnet *s, double *acc, double *latency_ms)
{
    struct host *h = ctx;
    struct ofa_objectives o;
    objectives_of(h->sy, s, &o);
    *acc = o.acc;
    if (!isnan(h->scale))
        *latency_ms = h->scale * o.latency_ms;
    h->calls++;
}

/* ofa_search_choose: an exact predictor is met by the first search; an
 * optimistic one (timings 1.3 x the prediction) makes the first search's
 * candidates miss the budget, and a search under the calibrated budget
 * yields one that meets it; an untimed device keeps the predicted latency;
 * a hopeless host (100 x) ends in -2 after every retry. */
START_TEST(test_choose_searches_again_under_a_calibrated_budget)
{
    struct synth sy;
    synth_init(&sy);
    struct ofa_search_cfg cfg;
    small_cfg(&cfg, 20, 3);
    struct ofa_constraints c = {latency_at(&sy, 0.5), 0, 0, 0};
    struct ofa_search_result r = {0};
    struct ofa_choice ch;
    struct ofa_error err = {0};

    struct host exact = {&sy, 1.0, 0};
    ck_assert_int_eq(ofa_search_choose(&sy.sp, &cfg, &c, synth_obj, &sy, host_measure, &exact,
                                       5, &r, &ch, &err), 0);
    ck_assert_int_eq(ch.searches, 1);
    /* the 5 best, and the best of each resolution that is not among them */
    ck_assert_int_ge(ch.top, 5);
    ck_assert_int_le(ch.top, 5 + sy.sp.n_res);
    ck_assert_int_eq(exact.calls, ch.top);
    ck_assert(ch.search_latency_ms == c.latency_ms);
    ck_assert(ch.latency_ms[ch.chosen] <= c.latency_ms);
    for (int i = 0; i < ch.top; i++) /* the most accurate of those that fit */
        ck_assert(ch.acc[i] <= ch.acc[ch.chosen]);
    ck_assert_int_eq(find_duplicate(r.sub, r.n), -1);
    /* One generation: the population still holds every resolution, so each
     * resolution's best is found in it below the top 1 too, and is moved up
     * rather than copied. */
    struct ofa_search_cfg one_gen;
    small_cfg(&one_gen, 1, 3);
    ck_assert_int_eq(ofa_search_choose(&sy.sp, &one_gen, &c, synth_obj, &sy, host_measure,
                                       &exact, 1, &r, &ch, &err), 0);
    ck_assert_int_ge(ch.top, 2);
    ck_assert_int_eq(find_duplicate(r.sub, r.n), -1);

    struct host slow = {&sy, 1.3, 0};
    ck_assert_int_eq(ofa_search_choose(&sy.sp, &cfg, &c, synth_obj, &sy, host_measure, &slow,
                                       5, &r, &ch, &err), 0);
    ck_assert_int_ge(ch.searches, 2);
    ck_assert(ch.search_latency_ms < c.latency_ms / 1.29);
    ck_assert(ch.latency_ms[ch.chosen] <= c.latency_ms);
    ck_assert(r.obj[ch.chosen].latency_ms <= ch.search_latency_ms);
    ck_assert_int_ge(slow.calls, 5 * ch.searches);
    ck_assert_int_le(slow.calls, (5 + sy.sp.n_res) * ch.searches);

    struct host untimed = {&sy, NAN, 0};
    ck_assert_int_eq(ofa_search_choose(&sy.sp, &cfg, &c, synth_obj, &sy, host_measure,
                                       &untimed, 5, &r, &ch, &err), 0);
    ck_assert_int_eq(ch.searches, 1);
    ck_assert(isnan(ch.latency_ms[ch.chosen]));
    ck_assert_int_eq(ch.chosen, 0); /* the best predicted: accuracy is exact here */

    struct host hopeless = {&sy, 100.0, 0};
    ck_assert_int_eq(ofa_search_choose(&sy.sp, &cfg, &c, synth_obj, &sy, host_measure,
                                       &hopeless, 5, &r, &ch, &err), -2);
    ck_assert_int_eq(ch.chosen, -1);
    ck_assert_int_ge(ch.searches, 2); /* a retry was tried */
    ck_assert_int_le(ch.searches, 1 + OFA_CHOOSE_RETRIES);
    ofa_search_result_free(&r);
}
END_TEST

/* A predictor that overrates one resolution by 10 points, and the truth
 * that rates it 10 points lower. */
struct skewed {
    struct synth *sy;
    int res;
};
static void skewed_obj(void *ctx, const struct ofa_subnet *s, struct ofa_objectives *o)
{
    struct skewed *k = ctx;
    synth_obj(k->sy, s, o);
    if (s->res == k->res)
        o->acc += 0.1;
}
static void skewed_truth(void *ctx, const struct ofa_subnet *s, double *acc, double *latency_ms)
{
    struct skewed *k = ctx;
    struct ofa_objectives o;
    objectives_of(k->sy, s, &o);
    *acc = o.acc - (s->res == k->res ? 0.1 : 0.0);
    (void)latency_ms; /* not timed */
}

/* ofa_search_choose measures each resolution's best beside the best
 * candidates: with one resolution overrated, the 5 best are all of it, and
 * the measurements choose another resolution. */
START_TEST(test_choose_measures_the_best_of_each_resolution)
{
    struct synth sy;
    synth_init(&sy);
    struct ofa_search_cfg cfg;
    small_cfg(&cfg, 20, 3);
    struct ofa_constraints c = {latency_at(&sy, 0.5), 0, 0, 0};
    struct skewed k = {&sy, sy.sp.resolutions[0]};
    struct ofa_search_result r = {0};
    struct ofa_choice ch;
    struct ofa_error err = {0};
    ck_assert_int_eq(ofa_search_choose(&sy.sp, &cfg, &c, skewed_obj, &k, skewed_truth, &k, 5,
                                       &r, &ch, &err), 0);
    /* the 5 best, all of the overrated resolution; then the best of each
     * resolution in order (the overrated one's too when the search confined
     * to it found a subnet that the first search had not) */
    ck_assert_int_ge(ch.top, 5 + sy.sp.n_res - 1);
    ck_assert_int_le(ch.top, 5 + sy.sp.n_res);
    int next = ch.top == 5 + sy.sp.n_res ? 0 : 1;
    for (int i = 0; i < ch.top; i++) {
        if (i < 5)
            ck_assert_int_eq(r.sub[i].res, k.res);
        else
            ck_assert_int_eq(r.sub[i].res, sy.sp.resolutions[next++]);
        ck_assert(ofa_constraints_met(&c, &r.obj[i]));
    }
    ck_assert_int_ne(r.sub[ch.chosen].res, k.res);
    ck_assert_int_eq(find_duplicate(r.sub, r.n), -1); /* moved, not copied, when present */
    ofa_search_result_free(&r);
}
END_TEST

START_TEST(test_hypervolume_of_hand_examples)
{
    struct ofa_objectives p[6] = {{0}};
    ck_assert(ofa_hypervolume(p, 0, 0.5, 20.0) == 0.0);
    p[0] = pt(0.8, 10.0);
    ck_assert_double_eq_tol(ofa_hypervolume(p, 1, 0.5, 20.0), 0.3 * 10.0, 1e-12);
    /* a staircase: [5,10) at height 0.1, [10,20) at 0.3 */
    p[1] = pt(0.6, 5.0);
    ck_assert_double_eq_tol(ofa_hypervolume(p, 2, 0.5, 20.0), 0.5 + 3.0, 1e-12);
    /* dominated points, duplicates and points beyond the reference add nothing */
    p[2] = pt(0.7, 12.0);
    p[3] = pt(0.8, 10.0);
    p[4] = pt(0.4, 1.0);
    p[5] = pt(0.99, 25.0);
    ck_assert_double_eq_tol(ofa_hypervolume(p, 6, 0.5, 20.0), 3.5, 1e-12);
    /* order does not matter */
    struct ofa_objectives q[3] = {pt(0.9, 15.0), pt(0.6, 2.0), pt(0.7, 8.0)};
    double want = (8.0 - 2.0) * 0.1 + (15.0 - 8.0) * 0.2 + (20.0 - 15.0) * 0.4;
    ck_assert_double_eq_tol(ofa_hypervolume(q, 3, 0.5, 20.0), want, 1e-12);
    struct ofa_objectives q2[3] = {q[2], q[0], q[1]};
    ck_assert_double_eq_tol(ofa_hypervolume(q2, 3, 0.5, 20.0), want, 1e-12);
    /* equal latency: the better accuracy counts */
    struct ofa_objectives e[2] = {pt(0.6, 10.0), pt(0.9, 10.0)};
    ck_assert_double_eq_tol(ofa_hypervolume(e, 2, 0.5, 20.0), 0.4 * 10.0, 1e-12);
}
END_TEST

START_TEST(test_write_tsv_writes_header_and_canonical_rows)
{
    struct synth sy;
    synth_init(&sy);
    struct ofa_constraints c = {latency_at(&sy, 0.5), 0, 0, 0};
    struct ofa_search_cfg cfg;
    small_cfg(&cfg, 5, 9);
    struct ofa_search_result r;
    struct ofa_error err = {0};
    ck_assert_int_eq(ofa_search_nsga2(&sy.sp, &cfg, &c, synth_obj, &sy, &r, &err), 0);
    FILE *f = tmpfile();
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(ofa_search_write_tsv(f, &sy.sp, &r), 0);
    rewind(f);
    char line[512];
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    ck_assert_str_eq(line, "subnet\tacc\tlatency_ms\tmmacs\tflash_kb\tsram_kb\n");
    int rows = 0;
    while (fgets(line, sizeof line, f)) {
        char *tab = strchr(line, '\t');
        ck_assert_ptr_nonnull(tab);
        *tab = '\0';
        struct ofa_subnet s;
        ck_assert_int_eq(ofa_subnet_parse(&sy.sp, line, &s, &err), 0);
        ck_assert(memcmp(&s, &r.sub[rows], sizeof s) == 0);
        double acc, lat;
        ck_assert_int_eq(sscanf(tab + 1, "%lf\t%lf", &acc, &lat), 2);
        ck_assert_double_eq_tol(acc, r.obj[rows].acc, 1e-6);
        ck_assert_double_eq_tol(lat, r.obj[rows].latency_ms, 1e-4);
        rows++;
    }
    ck_assert_int_eq(rows, r.n);
    fclose(f);
    ofa_search_result_free(&r);
}
END_TEST

static Suite *search_suite(void)
{
    Suite *s = suite_create("search");
    TCase *tc = tcase_create("search");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_constraints_met_checks_only_set_budgets);
    tcase_add_test(tc, test_evolve_finds_feasible_subnets_for_every_budget);
    tcase_add_test(tc, test_evolve_returns_full_population_of_distinct_subnets);
    tcase_add_test(tc, test_no_subnet_is_evaluated_twice);
    tcase_add_test(tc, test_evolve_beats_random_search_at_equal_evaluations);
    tcase_add_test(tc, test_nsga2_hypervolume_beats_random_search);
    tcase_add_test(tc, test_nsga2_front_is_nondominated_feasible_and_sorted_by_latency);
    tcase_add_test(tc, test_infeasible_latency_budget_names_budget_and_smallest_figure);
    tcase_add_test(tc, test_infeasible_message_names_the_tightest_of_several_budgets);
    tcase_add_test(tc, test_same_seed_gives_identical_results_and_another_seed_differs);
    tcase_add_test(tc, test_tight_budget_falls_back_to_smallest_subnet);
    tcase_add_test(tc, test_calibrated_budget_of_hand_examples);
    tcase_add_test(tc, test_choose_searches_again_under_a_calibrated_budget);
    tcase_add_test(tc, test_choose_measures_the_best_of_each_resolution);
    tcase_add_test(tc, test_hypervolume_of_hand_examples);
    tcase_add_test(tc, test_write_tsv_writes_header_and_canonical_rows);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(search_suite());
    srunner_run_all(sr, CK_NORMAL);
    int nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    return nf ? EXIT_FAILURE : EXIT_SUCCESS;
}
