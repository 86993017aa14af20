/* extract.h: the ofa-extract stage as library code.
 *
 * For one device profile of the supernet's recipe: measure the
 * BN-recalibrated validation accuracy of sampled subnets (cached in a TSV
 * file shared by all devices), fit the accuracy predictor and report its
 * held-out RMSE and Kendall tau, build the device's latency predictor, run
 * the constrained evolutionary search on the predictors, re-measure the best
 * candidates for real, and write the chosen subnet (subnet.h5) with a
 * human-readable summary beside it; also NSGA-II's Pareto front (TSV) and
 * the hypervolumes of NSGA-II and of random search with the same number of
 * predictor evaluations.
 */
#ifndef OFA_EXTRACT_H
#define OFA_EXTRACT_H

#include <stdio.h>

#include "util.h"

struct ofa_extract_opts {
    const char *supernet;     /* supernet.h5 from ofa-train */
    const char *data;         /* data.h5 (the validation split) */
    const char *device;       /* profile name in the recipe */
    const char *devices;      /* recipe file whose [device.NAME] profiles replace those of
                               * the supernet's recipe (NULL: the supernet's), so that
                               * devices can be added or changed without retraining */
    const char *output;       /* devices/<dev>/subnet.h5 */
    const char *measurements; /* cache; NULL: <supernet without .h5>.measurements.tsv */
    int samples;              /* subnets measured for the predictor (0: the recipe's) */
    int generations;          /* evolution rounds (0: the recipe's) */
    int top;                  /* candidates re-measured (0: the recipe's) */
    int threads;
    int progress;
    int measure_only;         /* only fill the measurement cache (device, output unused) */
    /* Instead of a search: evaluate these subnets (BN-recalibrated accuracy),
     * each a canonical subnet text, largest, medium, smallest or random:N
     * (N subnets drawn with a fixed seed, the same for every supernet of the
     * space), printing a TSV row each to eval_out (device, output unused). */
    const char *const *evaluate;
    int n_evaluate;
    int test_split;           /* evaluate on the test split (default: validation) */
    FILE *eval_out;
};

int ofa_extract_run(const struct ofa_extract_opts *o, struct ofa_error *err);

/* Print the device profiles of a supernet's recipe, or of a recipe file
 * (exactly one of the two), one name a line. */
int ofa_extract_list_devices(const char *supernet, const char *recipe, FILE *out,
                             struct ofa_error *err);

#endif
