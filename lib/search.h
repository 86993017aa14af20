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

#include "space.h"
#include "util.h"

/* Objectives of a candidate, from the caller's predictors. */
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
    int population, parents, mutants, crossovers, generations;
    float mutate_prob, mutate_res_prob;
    int max_tries;  /* draws per candidate before the search gives up (rejection) */
    uint64_t seed;
};
void ofa_search_cfg_default(struct ofa_search_cfg *c);

struct ofa_search_result {
    int n;                     /* candidates returned, best first */
    struct ofa_subnet *sub;
    struct ofa_objectives *obj;
    long evaluations;          /* calls of the objective function */
};
void ofa_search_result_free(struct ofa_search_result *r);

/* Single objective: maximise acc under the constraints; returns the final
 * population sorted by acc (best first). -1 with err when no feasible
 * candidate was found within max_tries draws (err names the tightest budget
 * and the smallest subnet's figures). */
int ofa_search_evolve(const struct ofa_space *sp, const struct ofa_search_cfg *cfg,
                      const struct ofa_constraints *c, ofa_objective_fn f, void *ctx,
                      struct ofa_search_result *out, struct ofa_error *err);
/* Random search with `evaluations` feasible draws; best first. */
int ofa_search_random(const struct ofa_space *sp, long evaluations, uint64_t seed,
                      const struct ofa_constraints *c, ofa_objective_fn f, void *ctx,
                      struct ofa_search_result *out, struct ofa_error *err);
/* NSGA-II on (acc max, latency min) under the constraints; returns the
 * first non-dominated front, sorted by latency. */
int ofa_search_nsga2(const struct ofa_space *sp, const struct ofa_search_cfg *cfg,
                     const struct ofa_constraints *c, ofa_objective_fn f, void *ctx,
                     struct ofa_search_result *out, struct ofa_error *err);
/* Hypervolume of points (acc, latency) dominated w.r.t. the reference
 * (ref_acc, ref_latency): area of {(a, l): a >= ref_acc, l <= ref_latency,
 * dominated by some point}. */
double ofa_hypervolume(const struct ofa_objectives *pts, int n, double ref_acc,
                       double ref_latency);

#endif
