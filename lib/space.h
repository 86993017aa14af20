/* space.h: the search space of the supernet and one point in it (a subnet).
 *
 * struct ofa_space is the resolved [supernet] section of a recipe: everything
 * that decides the supernet's shape. struct ofa_subnet picks, from a space, a
 * resolution, a depth per stage and a kernel size and expand ratio per active
 * block. Both are plain values (no pointers), so they can be copied, compared
 * with memcmp after ofa_subnet_normalize(), and stored in checkpoints.
 *
 * Canonical text form of a subnet (printed and accepted by every tool):
 *   r<R>-d<D1><D2>..-k<k..>.<k..>..-e<e..>.<e..>..
 * one digit group per stage for the active blocks only, e.g. the reference
 * medium subnet of mbv3-28 is "r24-d3333-k555.555.555.555-e444.444.444.444".
 * Kernel sizes and expand ratios are single digits (asserted by the space).
 */
#ifndef OFA_SPACE_H
#define OFA_SPACE_H

#include <stddef.h>
#include <stdint.h>

#include "ops.h"
#include "util.h"

#define OFA_MAX_STAGES 8
#define OFA_MAX_DEPTH 8   /* blocks per stage */
#define OFA_MAX_CHOICES 8 /* entries of each choice set */

struct ofa_stage_cfg {
    int width;  /* output channels of every block of the stage */
    int stride; /* of the stage's first block: 1 or 2 */
    enum ofa_act act;
    int se; /* squeeze-excite in every block of the stage */
};

struct ofa_space {
    int in_channels;      /* 1 grey, 3 RGB */
    int num_classes;
    int stem_width;       /* 3x3 conv, stride stem_stride, BN, stem_act */
    int stem_stride;
    enum ofa_act stem_act;
    int first_width;      /* first block: dw3x3, BN, relu, pw, BN, residual if equal */
    int n_stages;
    struct ofa_stage_cfg stages[OFA_MAX_STAGES];
    int n_depths, depths[OFA_MAX_CHOICES];   /* ascending */
    int n_expands, expands[OFA_MAX_CHOICES]; /* ascending */
    int n_kernels, kernels[OFA_MAX_CHOICES]; /* ascending, subset of {3,5,7} */
    int n_res, resolutions[OFA_MAX_CHOICES]; /* ascending */
    int head_width;       /* final 1x1 conv, BN, hswish, pool, dropout, linear */
    float dropout;        /* before the classifier, largest subnet only */
    int se_reduction;     /* SE squeezes to make_divisible(mid / se_reduction, 8) */
    int kernel_transform; /* OFA's learned 7->5->3 kernel transformation */
    int zero_last_gamma;  /* last BN gamma of each residual block starts at 0 */
    float bn_momentum;    /* PyTorch convention */
    float bn_eps;
};

/* The reference supernet "mbv3-28" of PIPELINE.md (the default recipe). */
void ofa_space_default(struct ofa_space *sp);
/* Check a space for consistency (choice sets sorted, non-empty, within
 * limits; kernels in {3,5,7}; widths >= 1 ...). Fills err (file NULL) with
 * the field name on failure. */
int ofa_space_validate(const struct ofa_space *sp, struct ofa_error *err);
static inline int ofa_space_max_depth(const struct ofa_space *sp)
{
    return sp->depths[sp->n_depths - 1];
}
static inline int ofa_space_max_res(const struct ofa_space *sp)
{
    return sp->resolutions[sp->n_res - 1];
}
/* make_divisible(v, 8): nearest multiple of 8, at least 8, and never more
 * than 10% below v. */
int ofa_make_divisible(double v, int divisor);

struct ofa_subnet {
    int res;
    int depth[OFA_MAX_STAGES];
    int kernel[OFA_MAX_STAGES][OFA_MAX_DEPTH];
    int expand[OFA_MAX_STAGES][OFA_MAX_DEPTH];
};

/* Zero the choices of inactive blocks so that equal subnets compare equal. */
void ofa_subnet_normalize(const struct ofa_space *sp, struct ofa_subnet *s);
void ofa_subnet_largest(const struct ofa_space *sp, struct ofa_subnet *s);
void ofa_subnet_smallest(const struct ofa_space *sp, struct ofa_subnet *s);
/* The middle entry (index n / 2) of every choice set: the reference medium
 * subnet ("r24-d3333-k555.555.555.555-e444.444.444.444" in mbv3-28). */
void ofa_subnet_medium(const struct ofa_space *sp, struct ofa_subnet *s);
/* Uniform choice of every gene (resolution, depth per stage, kernel and expand
 * per block) from the rng. */
struct ofa_rng;
void ofa_subnet_sample(const struct ofa_space *sp, struct ofa_rng *rng, struct ofa_subnet *s);
/* 1 when every choice of s is in the space's choice sets. */
int ofa_subnet_valid(const struct ofa_space *sp, const struct ofa_subnet *s);

/* Canonical text (see top). buf of at least OFA_SUBNET_TEXT_MAX bytes. */
#define OFA_SUBNET_TEXT_MAX 256
void ofa_subnet_format(const struct ofa_space *sp, const struct ofa_subnet *s, char *buf,
                       size_t n);
/* Parse canonical text; every value must be in the space's choice sets.
 * err->msg names what is wrong (file left empty for the caller to fill). */
int ofa_subnet_parse(const struct ofa_space *sp, const char *text, struct ofa_subnet *s,
                     struct ofa_error *err);

/* Stable one-hot encoding for predictors (OFA style): per block slot of every
 * stage (max depth slots), one-hot of the kernel and one-hot of the expand
 * ratio (all zeros for a skipped block), then one-hot of the resolution. */
int ofa_subnet_onehot_size(const struct ofa_space *sp);
void ofa_subnet_onehot(const struct ofa_space *sp, const struct ofa_subnet *s, float *out);

/* Multiply-adds per image (convs, SE, linear; not BN, activations, pooling,
 * SE scaling) and trainable parameters (conv/linear weights, biases, BN gamma
 * and beta; not running statistics, not the kernel-transformation matrices)
 * of the standalone subnet. */
long long ofa_subnet_macs(const struct ofa_space *sp, const struct ofa_subnet *s);
long long ofa_subnet_params(const struct ofa_space *sp, const struct ofa_subnet *s);

#endif
