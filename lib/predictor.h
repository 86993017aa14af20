/* predictor.h: the accuracy predictor of ofa-extract (OFA: an MLP on the
 * one-hot architecture encoding, 3 hidden layers of 400, ReLU), trained on
 * measured (subnet, BN-recalibrated validation accuracy) pairs, and the rank
 * statistics used to judge it.
 *
 * Network: dim -> [hidden, ReLU] x layers -> 1 (linear). It predicts the
 * standardised target (acc - mean) / std of the training accuracies and the
 * eval functions undo that, so the learning rate does not depend on the
 * accuracy range (a few tenths of a point or tens of points). Predictions are
 * not clamped to [0,1]: clamping would create ties that hurt ranking.
 *
 * Training: minibatch Adam (beta1 0.9, beta2 0.999, eps 1e-8, PyTorch's bias
 * correction) on the mean squared error of the standardised target, cosine
 * learning-rate decay to 0 over all steps, decoupled weight decay (AdamW) on
 * the weight matrices only, He-normal hidden layers from the seed (the output
 * layer starts at 0: training starts from the mean), and a seeded shuffle
 * per epoch (the last minibatch of an epoch may be short).
 * Deterministic for a given seed (and thread count: fit and eval run their
 * small GEMMs on one thread, setting the OpenMP/BLAS thread count to 1 and
 * restoring it, which is faster on 2 cores; see predictor.c). The network
 * runs on the CPU with the project's ops (GEMM + bias + ReLU): fit and eval
 * call BLAS, so they must not be called inside an OpenMP parallel region.
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
    float lr;       /* Adam's peak learning rate (cosine-decayed to 0) */
    float weight_decay; /* decoupled (AdamW), weights only; 0 disables */
    uint64_t seed;  /* initialisation and shuffles */
};
/* OFA's shape (3 x 400) with a schedule that fits a few hundred to a few
 * thousand pairs in seconds on 2 cores (see predictor.c for the figures). */
void ofa_mlp_cfg_default(struct ofa_mlp_cfg *c);

struct ofa_predictor; /* opaque; owns its weights */

/* Fit on n >= 1 pairs (x [n][dim] one-hot rows, y [n] finite accuracies,
 * normally in [0,1]). The inputs are not kept. Never returns NULL (bad
 * sizes are programmer errors, asserted). */
struct ofa_predictor *ofa_predictor_fit(const float *x, const float *y, int n, int dim,
                                        const struct ofa_mlp_cfg *c);
void ofa_predictor_free(struct ofa_predictor *p); /* NULL-safe */
/* Input width the predictor was fitted on. */
int ofa_predictor_dim(const struct ofa_predictor *p);
/* Predicted accuracy of one encoded subnet (x: dim floats), on the caller's
 * thread: about 50 us at 3 x 400 (dot products; the weights stream from the
 * cache). The batched form is 5x faster per row where rows can wait. */
float ofa_predictor_eval(const struct ofa_predictor *p, const float *x);
/* Batched: out[i] for rows x[i] of dim floats, for a whole generation of a
 * search or a held-out set (50,000 evaluations in batches of 100: about
 * 0.5 s at 3 x 400). Allocates its scratch per call, so p is never written
 * and concurrent calls (outside OpenMP regions) are safe. */
void ofa_predictor_eval_batch(const struct ofa_predictor *p, const float *x, int n, float *out);

/* Rank correlation (Kendall tau-b, ties handled) and RMSE of a vs b, n >= 1.
 * tau-b = (concordant - discordant) / sqrt((n0 - ta) (n0 - tb)), n0 = n(n-1)/2,
 * ta/tb the pairs tied in a/b; O(n^2). Returns 0 when a or b is constant
 * (tau undefined). A NaN compares as a tie. */
double ofa_kendall_tau(const float *a, const float *b, int n);
double ofa_rmse(const float *a, const float *b, int n);

/* Measurement cache: a TSV file "subnet<TAB>accuracy" (canonical subnet
 * text), so that reruns and further devices reuse measurements. Lines that
 * start with '#' are comments (save writes one header comment), empty lines
 * are skipped. The file does not record which checkpoint the accuracies came
 * from: callers keep one cache per checkpoint. Subnets are stored normalised
 * (ofa_subnet_normalize), so they compare with memcmp. A zeroed struct is an
 * empty set; ofa_measurements_free releases it (and leaves it zeroed). */
struct ofa_measurements {
    int n, cap;
    struct ofa_subnet *sub;
    float *acc;
};
/* Add the file's measurements to m (zeroed or holding earlier ones), as
 * ofa_measurements_add does (a subnet seen again takes the later accuracy).
 * Refuses, with err->file = path and err->line, malformed lines, accuracies
 * not in [0,1] and subnets not in the space; on error m is unchanged. A
 * missing file is an error too (callers that treat it as an empty cache test
 * for it first). */
int ofa_measurements_load(struct ofa_measurements *m, const char *path,
                          const struct ofa_space *sp, struct ofa_error *err);
/* Write all of m atomically (a temporary file next to path, fsync, rename):
 * path holds either its old content or the complete new one. Accuracies are
 * written with the fewest digits that read back as the same float. */
int ofa_measurements_save(const struct ofa_measurements *m, const char *path,
                          const struct ofa_space *sp, struct ofa_error *err);
/* Append (s, acc), or replace the accuracy when s is already present. These
 * two have no space, so they normalise what they can without one: the
 * choices of blocks beyond each stage's depth are zeroed, and stages outside
 * the space must have depth 0 (every constructor in space.h leaves them so).
 * s must be valid in the space it will be saved with (asserted at save). */
void ofa_measurements_add(struct ofa_measurements *m, const struct ofa_subnet *s, float acc);
/* Index of s in m (compared after that normalisation), or -1. O(n). */
int ofa_measurements_find(const struct ofa_measurements *m, const struct ofa_subnet *s);
void ofa_measurements_free(struct ofa_measurements *m);

#endif
