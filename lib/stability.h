/* stability.h: device variants, instability and the stability fine-tuning
 * pass of ofa-export (PIPELINE.md; Cidon et al., MLSys 2021).
 *
 * A device variant is a named input pipeline from the recipe
 * ([variant.NAME], struct ofa_variant_cfg in recipe.h): from the stored
 * uint8 image, an optional JPEG round trip, then on [0,1] floats a tone
 * curve, a blur and sensor noise, then a resize to the model's resolution
 * with the variant's interpolation, then the data set's normalisation; and
 * the arithmetic it runs with (fp32 or the exported int8 model). The clean
 * pipeline (no variant) is exactly the evaluator's.
 *
 * Instability (label-agnostic): share of test images whose top-1 label is
 * not the same under every variant. Label-aware: share right under one
 * variant and wrong under another.
 *
 * Stability fine-tuning: L = CE(f(x), y) + alpha * KL(p(x) || p(v(x))) with v
 * a variant drawn per image (among the fp32 ones), gradients through both
 * branches, weights fake-quantized per output channel (int8 symmetric,
 * straight-through) in the forward pass, and every block output
 * fake-quantized per tensor with running min/max, so that what is
 * stabilised is the int8 model. Deterministic from the seed.
 */
#ifndef OFA_STABILITY_H
#define OFA_STABILITY_H

#include <stdint.h>

#include "data.h"
#include "recipe.h"

struct ofa_supernet;
struct ofa_exec;

/* One image through a variant (v NULL: the clean pipeline): img [H,W,C]
 * uint8 -> out [res,res,C] normalised floats (lut: the data set's [C][256]
 * normalisation table, as the loader builds it). seed decides the noise.
 * scratch: 2 * max(H*W, res*res) * C floats. */
int ofa_variant_apply(float *out, const struct ofa_variant_cfg *v, const uint8_t *img, int H,
                      int W, int C, int res, const float *lut, float *scratch, uint64_t seed,
                      struct ofa_error *err);

/* Predicts top-1 labels of n images x [n,res,res,C] under arithmetic int8
 * (0: fp32, 1: int8). */
typedef void (*ofa_predict_fn)(void *ctx, int int8, const float *x, int n, int *labels);

struct ofa_instability {
    int n_images, n_variants;
    double instability;       /* label-agnostic */
    double instability_label; /* label-aware */
    double acc_clean;         /* fp32, clean pipeline */
    double acc[OFA_MAX_VARIANTS]; /* per variant */
    double flip[OFA_MAX_VARIANTS]; /* per variant: share whose label is not the clean one's */
};

/* Measure over the first n images (0: all) of ds's test split. */
int ofa_instability_measure(struct ofa_instability *out, const struct ofa_dataset *ds,
                            const struct ofa_recipe *r, int res, int n, ofa_predict_fn predict,
                            void *ctx, struct ofa_error *err);

/* What a stability pass did. */
struct ofa_stability_stats {
    long images;                  /* clean images of the pass (steps x batch) */
    long drawn[OFA_MAX_VARIANTS]; /* of them, how many it saw through each variant */
};

/* Fine-tune the standalone network net (ofa_supernet_extract) on the
 * training split with the recipe's [export] settings; progress lines on
 * stderr unless quiet. Its BN statistics are recalibrated at the end.
 * teacher: with export.target largest, the supernet's largest subnet,
 * standalone, BN calibrated (any resolution); NULL otherwise. stats: NULL,
 * or receives what the pass did. export.epochs 0: nothing is done. */
int ofa_stability_finetune(struct ofa_supernet *net, struct ofa_supernet *teacher,
                           const struct ofa_dataset *ds, const struct ofa_recipe *r, int quiet,
                           struct ofa_stability_stats *stats, struct ofa_error *err);

/* The stability term: mean over the N rows of KL(softmax(a) || softmax(b))
 * for logits a, b [N,K] (computed in double from log-softmaxes). When da and
 * db are not NULL, ACCUMULATES scale times its gradient: with p = softmax(a),
 * q = softmax(b), l = log p - log q and kl = sum_k p_k l_k per row,
 *   da_j += scale * p_j (l_j - kl) / N,   db_j += scale * (q_j - p_j) / N. */
double ofa_stability_kl(const float *a, const float *b, int N, int K, float *da, float *db,
                        float scale);

#endif
