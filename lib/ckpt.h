/* ckpt.h: the HDF5 supernet checkpoint (supernet.h5). Layout: docs/checkpoint-format.md.
 *
 * A checkpoint holds the resolved recipe text, the resolved search space as
 * attributes of /config, every parameter tensor at its full (largest) shape
 * with an order list, the optimizer's momentum buffers in the same layout,
 * and the training state needed to resume bit for bit. Saving writes a
 * temporary file in the same directory, flushes it and renames it over the
 * target, so a crash leaves the previous checkpoint intact. Loading validates
 * format, version, names, shapes and dtypes and names the offending dataset
 * (with both shapes on a mismatch).
 */
#ifndef OFA_CKPT_H
#define OFA_CKPT_H

#include <stdint.h>

#include "params.h"
#include "rng.h"
#include "space.h"
#include "util.h"

#define OFA_CKPT_FORMAT "ofa-supernet"
#define OFA_CKPT_VERSION 1

struct ofa_train_state {
    long epoch;            /* epochs completed */
    long step;             /* optimizer steps taken */
    int phase;             /* schedule phase (0: full network, ...) */
    int channels_sorted;   /* channel importance sorting already applied */
    struct ofa_rng rng;    /* the trainer's generator state */
    double elapsed;        /* seconds of training so far */
    long long images_seen; /* training images processed (all subnets) */
    uint64_t data_hash;    /* fingerprint of the data set / split trained on */
    double train_gflop;    /* GFLOP of the training steps so far: 6 x MACs per
                              subnet image trained, 2 x MACs per image of
                              ofa-ps's frozen teacher; a file from before it
                              was recorded loads as 0 */
};

/* Write the checkpoint atomically. deflate: 0 (off) or 1-9 for parameter
 * datasets. Returns 0, or -1 with err naming the file and what failed (the
 * previous file at path is untouched). */
int ofa_ckpt_save(const char *path, const char *recipe_text, const struct ofa_space *sp,
                  const struct ofa_params *p, const struct ofa_train_state *st, int deflate,
                  struct ofa_error *err);
/* Read only the recipe text (to build the supernet before loading it).
 * *recipe_text is malloc'd; caller frees. */
int ofa_ckpt_read_recipe(const char *path, char **recipe_text, struct ofa_error *err);
/* Load parameters, momentum and state into p, whose table (names, shapes)
 * must already be laid out by the same recipe: every tensor of p must be
 * present with its shape, and the file must hold no other tensor. */
int ofa_ckpt_load(const char *path, struct ofa_params *p, struct ofa_train_state *st,
                  struct ofa_error *err);

/* Fingerprint of a training run (recipe text and training state): stored in
 * every file derived from a supernet, so that a subnet file from another
 * supernet is refused. */
uint64_t ofa_ckpt_fingerprint(const char *recipe_text, const struct ofa_train_state *st);

/* ---- subnet.h5: the subnet ofa-extract chose for one device ------------------ */

#define OFA_SUBNET_FORMAT "ofa-subnet"
#define OFA_SUBNET_VERSION 1

/* One file of root attributes (docs/checkpoint-format.md). Figures not
 * available are NaN (e.g. measured latency on a device profiled elsewhere). */
struct ofa_subnet_record {
    char subnet[OFA_SUBNET_TEXT_MAX]; /* canonical text */
    char device[64];
    char latency_model[16];           /* measured, measured int8, opwise, opcount, lut */
    uint64_t supernet_fingerprint;    /* ofa_ckpt_fingerprint of its supernet */
    double acc_predicted, acc_measured;               /* validation accuracy, [0,1] */
    double latency_predicted_ms, latency_measured_ms; /* batch 1 */
    double mmacs;
    long long params, flash_bytes, sram_bytes;
    double budget_latency_ms, budget_flash_kb, budget_sram_kb, budget_mmacs; /* 0 = none */
};

int ofa_subnet_record_save(const char *path, const struct ofa_subnet_record *r,
                           struct ofa_error *err);
/* Validates format, version, every attribute's presence and type; the
 * subnet text is checked by the caller against its space. */
int ofa_subnet_record_load(const char *path, struct ofa_subnet_record *r,
                           struct ofa_error *err);

#endif
