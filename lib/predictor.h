/* predictor.h: the accuracy predictor of ofa-extract (OFA: an MLP on the
 * one-hot architecture encoding, 3 hidden layers of 400, ReLU), trained on
 * measured (subnet, BN-recalibrated validation accuracy) pairs, and the rank
 * statistics used to judge it.
 *
 * Training: full-batch-free Adam on mean squared error with a seeded
 * shuffle; deterministic for a given seed and thread count. The network and
 * its training run on the CPU with the project's ops (GEMM + bias + ReLU).
 */
#ifndef OFA_PREDICTOR_H
#define OFA_PREDICTOR_H

#include <stdint.h>
#include <stdio.h>

#include "space.h"
#include "util.h"

struct ofa_mlp_cfg {
    int hidden;     /* units per hidden layer (400) */
    int layers;     /* hidden layers (3) */
    int epochs;     /* passes over the training pairs */
    int batch;      /* minibatch size */
    float lr;       /* Adam learning rate */
    float weight_decay;
    uint64_t seed;
};
void ofa_mlp_cfg_default(struct ofa_mlp_cfg *c);

struct ofa_predictor; /* opaque */

/* Fit on n pairs (x [n][dim] one-hot rows, y [n] accuracies in [0,1]). */
struct ofa_predictor *ofa_predictor_fit(const float *x, const float *y, int n, int dim,
                                        const struct ofa_mlp_cfg *c);
void ofa_predictor_free(struct ofa_predictor *p);
/* Predicted accuracy of one encoded subnet. */
float ofa_predictor_eval(const struct ofa_predictor *p, const float *x);
/* Batched: out[i] for rows x[i] of dim floats. */
void ofa_predictor_eval_batch(const struct ofa_predictor *p, const float *x, int n, float *out);

/* Rank correlation (Kendall tau-b, ties handled) and RMSE of a vs b. */
double ofa_kendall_tau(const float *a, const float *b, int n);
double ofa_rmse(const float *a, const float *b, int n);

/* Measurement cache: a TSV file "subnet<TAB>accuracy" (canonical subnet
 * text), so that reruns and further devices reuse measurements. Loading
 * refuses malformed lines (file:line) and subnets not in the space. */
struct ofa_measurements {
    int n, cap;
    struct ofa_subnet *sub;
    float *acc;
};
int ofa_measurements_load(struct ofa_measurements *m, const char *path,
                          const struct ofa_space *sp, struct ofa_error *err);
/* Append atomically (rewrite to a temporary file, rename). */
int ofa_measurements_save(const struct ofa_measurements *m, const char *path,
                          const struct ofa_space *sp, struct ofa_error *err);
void ofa_measurements_add(struct ofa_measurements *m, const struct ofa_subnet *s, float acc);
/* Index of s in m, or -1. */
int ofa_measurements_find(const struct ofa_measurements *m, const struct ofa_subnet *s);
void ofa_measurements_free(struct ofa_measurements *m);

#endif
