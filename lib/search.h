/* search.h: constrained architecture search over a supernet's space, on
 * predictors (callbacks), deterministic for a seed.
 *
 * Evolutionary search (OFA): population P (100), the best `parents` (25)
 * are kept, then `mutants` (50) mutated parents (each gene resampled with
 * probability mutate_prob (0.1), the resolution with mutate_res_prob (0.5))
 * and `crossovers` (50) children of two parents (each gene from either),
 * every candidate rejected and redrawn until it meets the constraints;
 * elitist; `generations` rounds. Multi-objective mode: NSGA-II on (maximise
 * accuracy, minimise latency), writing the Pareto front; its quality is the
 * hypervolume against a reference point. Random search with the same number
 * of predictor evaluations is the baseline.
 */
#ifndef OFA_SEARCH_H
#define OFA_SEARCH_H

#include <stdint.h>
#include <stdio.h>

#include "space.h"
#include "util.h"

/* Genome: the resolution, a depth per stage and a kernel size and expand
 * ratio for every block slot up to the space's maximum depth (slots beyond a
 * stage's depth carry genes too, inactive, so that mutation and crossover
 * work on fixed-length genomes). Candidates are compared, cached and
 * returned normalised (ofa_subnet_normalize): a genome differing only in
 * inactive genes is the same subnet and is never evaluated twice.
 *
 * Determinism: every candidate slot (generation g, index i) draws from its
 * own stream ofa_rng_derive(seed, g, i), rejected draws included; the search
 * runs serially, so results depend on the seed only (not on thread counts).
 *
 * Objectives of a candidate, from the caller's predictors. The callback is
 * called once per distinct subnet (results are cached for the search), so it
 * must be a pure function of the subnet; it may fill the objectives that no
 * budget uses with 0. */
struct ofa_objectives {
    double acc;        /* predicted accuracy (maximised) */
    double latency_ms; /* predicted latency (minimised in NSGA-II) */
    double flash_kb, sram_kb, mmacs;
};
typedef void (*ofa_objective_fn)(void *ctx, const struct ofa_subnet *s,
                                 struct ofa_objectives *out);

struct ofa_constraints {
    double latency_ms, flash_kb, sram_kb, mmacs; /* 0 = unconstrained */
};
/* 1 when o meets every set budget. */
int ofa_constraints_met(const struct ofa_constraints *c, const struct ofa_objectives *o);

struct ofa_search_cfg {
    int population;  /* initial population (evolve), population (NSGA-II) */
    int parents, mutants, crossovers; /* per generation (evolve only) */
    int generations;
    float mutate_prob, mutate_res_prob;
    int max_tries;  /* draws per candidate before the slot is given up (rejection) */
    uint64_t seed;
};
/* OFA's: 100, 25, 50, 50, 500 generations, 0.1, 0.5; max_tries 200, seed 1. */
void ofa_search_cfg_default(struct ofa_search_cfg *c);

struct ofa_search_result {
    int n;                     /* candidates returned, best first */
    struct ofa_subnet *sub;    /* n normalised, distinct subnets (owned) */
    struct ofa_objectives *obj; /* n (owned) */
    long evaluations;          /* calls of the objective function (distinct subnets) */
};
/* Frees sub and obj and zeroes r; safe on a zeroed or freed result. */
void ofa_search_result_free(struct ofa_search_result *r);

/* Single objective: maximise acc under the constraints. The initial
 * population is `population` random feasible subnets; each generation keeps
 * the best `parents`, adds `mutants` mutated parents and `crossovers`
 * children of two parents, every one redrawn (same operator) until it is
 * feasible and not yet in the new population, up to max_tries draws (a slot
 * that fails is left empty, so a tiny feasible region gives a smaller
 * population instead of duplicates). Returns the final population
 * (parents + mutants + crossovers, distinct) sorted by acc, best first, ties
 * by lower latency. When no random draw is feasible the smallest subnet is
 * tried; -1 with err when it fails too: err->msg is "no subnet meets the
 * budgets (...): tightest budget <name> <budget> (smallest subnet needs <Y>)"
 * with every budget the smallest subnet violates (the caller prefixes the
 * device). err->file is left empty. */
int ofa_search_evolve(const struct ofa_space *sp, const struct ofa_search_cfg *cfg,
                      const struct ofa_constraints *c, ofa_objective_fn f, void *ctx,
                      struct ofa_search_result *out, struct ofa_error *err);
/* Random search baseline: uniform draws until `evaluations` distinct subnets
 * have been evaluated (infeasible ones count, as they do in the evolutionary
 * search's `evaluations`; duplicates are redrawn for free). Returns every
 * feasible subnet drawn, sorted by acc, best first. -1 with err when none was
 * feasible (the infeasible-budget message above when the smallest subnet
 * fails the budgets too). Uses streams of its own, distinct from evolve's. */
int ofa_search_random(const struct ofa_space *sp, long evaluations, uint64_t seed,
                      const struct ofa_constraints *c, ofa_objective_fn f, void *ctx,
                      struct ofa_search_result *out, struct ofa_error *err);
/* NSGA-II on (acc max, latency min) under the constraints: `population`
 * parents, as many offspring a generation (binary tournaments on rank then
 * crowding distance, crossover then mutation, rejection as above), fast
 * non-dominated sort and crowding distance over parents + offspring.
 * Returns the first non-dominated front of the final population, sorted by
 * latency (ascending); errors as ofa_search_evolve. parents/mutants/crossovers
 * are not used. */
int ofa_search_nsga2(const struct ofa_space *sp, const struct ofa_search_cfg *cfg,
                     const struct ofa_constraints *c, ofa_objective_fn f, void *ctx,
                     struct ofa_search_result *out, struct ofa_error *err);
/* Hypervolume of points (acc, latency) dominated w.r.t. the reference
 * (ref_acc, ref_latency): area of {(a, l): a >= ref_acc, l <= ref_latency,
 * dominated by some point}, exact (sweep over latency). Points with
 * acc <= ref_acc or latency >= ref_latency add nothing; dominated points and
 * duplicates are harmless, so any candidate set can be passed. */
double ofa_hypervolume(const struct ofa_objectives *pts, int n, double ref_acc,
                       double ref_latency);

/* The real figures of a candidate, measured by the caller: accuracy, and
 * latency when the device's latency can be timed on this host (*latency_ms
 * is then set; it is left NAN otherwise). */
typedef void (*ofa_measure_fn)(void *ctx, const struct ofa_subnet *s, double *acc,
                               double *latency_ms);

enum { OFA_CHOOSE_MAX_TOP = 64, OFA_CHOOSE_RETRIES = 2 };
struct ofa_choice {
    int chosen;                 /* index into the search result, or -1 */
    int top;                    /* candidates measured (of the last search that found any):
                                 * out's first `top` */
    int searches;               /* evolutionary searches run (1 + retries) */
    double search_latency_ms;   /* latency budget of the last search */
    double seconds;             /* time of the last search that found candidates */
    /* measured: the best `top` and each resolution's best */
    double acc[OFA_CHOOSE_MAX_TOP + OFA_MAX_CHOICES];
    double latency_ms[OFA_CHOOSE_MAX_TOP + OFA_MAX_CHOICES];
};
/* A device's choice: ofa_search_evolve under c, then the best `top`
 * candidates (at most OFA_CHOOSE_MAX_TOP) measured for real by m, and with
 * them, when the space has several resolutions, the best of a search
 * confined to each resolution (inserted into `out` after the `top` best
 * unless among them already: the predictor can misjudge a whole
 * resolution); the chosen one has the highest measured accuracy among those
 * that meet c with their measured latency. When the latency is timed and none meets
 * it (the predictor optimistic on this host, or its timings noisy), the
 * search runs again under ofa_search_calibrated_budget, up to
 * OFA_CHOOSE_RETRIES times; c stays the budget to meet. `out` holds the
 * last search's candidates. Returns 0 with ch->chosen >= 0; -1 with err
 * from ofa_search_evolve when the first search finds no feasible subnet;
 * -2 when no measured candidate meets the budgets, after every retry or
 * when a tightened budget leaves no subnet (ch describes the searches; err
 * is to be ignored). */
int ofa_search_choose(const struct ofa_space *sp, const struct ofa_search_cfg *cfg,
                      const struct ofa_constraints *c, ofa_objective_fn f, void *ctx,
                      ofa_measure_fn m, void *mctx, int top, struct ofa_search_result *out,
                      struct ofa_choice *ch, struct ofa_error *err);
/* The latency budget of another search after none of the best candidates
 * met `budget` when timed: budget / q, q the median (retry 1) or the
 * largest (later retries) of the n > 0 ratios measured / predicted latency
 * of every candidate timed so far, and at least 1. */
double ofa_search_calibrated_budget(double budget, const double *predicted,
                                    const double *measured, int n, int retry);

/* The candidates as TSV (pareto.tsv): a header "subnet acc latency_ms mmacs
 * flash_kb sram_kb", then one line per candidate in r's order with the
 * canonical subnet text. Returns 0, or -1 when the stream has an error. */
int ofa_search_write_tsv(FILE *f, const struct ofa_space *sp, const struct ofa_search_result *r);

#endif
