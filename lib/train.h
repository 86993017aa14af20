/* train.h: the ofa-train stage as library code (the executable is a thin
 * command line over it, and tests drive it directly).
 *
 * Training: sandwich rule with in-place distillation under the recipe's
 * schedule (deps, bignas, ofa-ps), SGD with Nesterov momentum, cosine
 * learning rate, per-epoch BN-recalibrated validation of the largest and
 * smallest subnets, a TSV log, a progress line, atomic checkpoints every
 * epoch and every N minutes, exact resume, clean stop on SIGINT/SIGTERM.
 *
 * Files: the finished supernet is written to `output`; while training runs
 * the checkpoint lives in `<output>.part` (same format), so that a make rule
 * on `output` never sees an unfinished model. --resume continues from the
 * .part file (or from a finished `output`, to train no further: a no-op).
 *
 * Resolution: the largest subnet trains at the largest resolution and the
 * smallest at the smallest; random subnets at their sampled resolution. All
 * see the same augmented images, resized bilinearly from the largest
 * resolution, so the teacher's soft labels match the students' inputs.
 *
 * Shards and MPI: each batch is cut into train.shards parts that go through
 * the sandwich separately (their own BN batch statistics); their gradients,
 * each scaled by 1/shards, are added in the order MPI_Allreduce adds them
 * across processes (dist.h). Under MPI every process takes its consecutive
 * shards, rank 0 writes the files, and the BN running statistics it saves
 * are its own (every evaluation recalibrates them first).
 */
#ifndef OFA_TRAIN_H
#define OFA_TRAIN_H

#include <stdio.h>

#include "data.h"
#include "recipe.h"
#include "supernet.h"

struct ofa_train_opts {
    const char *recipe_path;
    const char *data_path;
    const char *output;       /* supernet.h5 */
    const char *log_path;     /* TSV log; NULL: <output without .h5>.tsv beside it */
    const char *const *overrides; /* "section.key=value" */
    int n_overrides;
    int resume;
    int threads;
    int progress;             /* 0: quiet, 1: progress on stderr */
    long stop_after_steps;    /* >0: checkpoint and stop after this many steps of
                                 this invocation (as if interrupted; for tests) */
};

/* Exit statuses of ofa_train_run besides 0 (finished) and -1 (error). */
#define OFA_TRAIN_INTERRUPTED 2

/* Run (or resume) training. Returns 0 when training finished and `output`
 * was written, OFA_TRAIN_INTERRUPTED when it stopped early with a
 * checkpoint in <output>.part, -1 with err filled on bad input or a fault
 * (NaN/Inf: the last good checkpoint is kept). */
int ofa_train_run(const struct ofa_train_opts *o, struct ofa_error *err);

/* --predict-scaling: profile a few steady-state steps of the recipe as one
 * process, then print (TSV with # comments) the predicted step time,
 * throughput and communication share on 1, 2, 4, ... ranks for a network of
 * `bandwidth` bytes/s and `latency` seconds, and the rank count from which
 * communication dominates. The global batch stays the recipe's. */
int ofa_train_predict_scaling(const struct ofa_train_opts *o, double bandwidth, double latency,
                              FILE *out, struct ofa_error *err);

/* ---- Evaluation, shared with ofa-extract ------------------------------------ */

/* BN recalibration on a fixed subset of training images, then top-1
 * accuracy on a split. Owns its loaders and buffers. */
struct ofa_evaluator {
    const struct ofa_dataset *ds;
    struct ofa_loader *calib, *eval;
    int calib_batches, calib_batch, eval_batch;
    float *x;
    int *y;
};

/* split: OFA_SPLIT_VAL or OFA_SPLIT_TEST. Batches are sized for the recipe's
 * largest resolution; calibration uses the recipe's calib_images and
 * calib_batch, evaluation its batch_size. */
void ofa_evaluator_init(struct ofa_evaluator *ev, const struct ofa_dataset *ds,
                        const struct ofa_recipe *r, int split, uint64_t seed);
void ofa_evaluator_free(struct ofa_evaluator *ev);
/* Recalibrate the subnet's BN statistics, then return its accuracy in [0,1].
 * ex must allow batches of max(calib_batch, eval batch). */
double ofa_evaluate(struct ofa_evaluator *ev, struct ofa_supernet *net, struct ofa_exec *ex,
                    const struct ofa_subnet *sub);
/* The batch size ofa_evaluate needs from an exec. */
int ofa_evaluator_max_batch(const struct ofa_evaluator *ev);

#endif
