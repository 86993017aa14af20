/* supernet.h: the weight-shared elastic MobileNetV3 supernet.
 *
 * Every tensor is stored once at its largest shape in one parameter table
 * (params.h); a subnet is a view: the first D blocks of each stage, the first
 * E*Cin middle channels of each block, the centre KxK of each 7x7 depthwise
 * kernel (optionally through the learned kernel-transformation matrices), the
 * first channels of every BN. Nothing is copied to run a subnet.
 *
 * Layers (PIPELINE.md): stem conv3x3 + BN + act; first block dw3x3 + BN +
 * relu + pw + BN (+ residual when the widths match); stages of MBConv blocks
 * (expand 1x1 + BN + act, depthwise KxK + BN + act, optional SE, project 1x1 +
 * BN, residual when stride 1 and widths match); head 1x1 conv + BN + hswish,
 * global average pool, dropout, linear.
 *
 * Execution: struct ofa_exec owns the activation arena (sized once for the
 * largest subnet at the largest resolution and batch) and the tape of one
 * forward pass; ofa_supernet_backward walks that tape and ACCUMULATES into
 * the parameter gradients, so the sandwich rule is: forward, backward (scaled
 * through dlogits), next subnet, ..., one optimizer step.
 */
#ifndef OFA_SUPERNET_H
#define OFA_SUPERNET_H

#include "arena.h"
#include "params.h"
#include "space.h"

struct ofa_rng;

struct ofa_bn_idx {
    int g, b, m, v; /* gamma, beta (trained), running mean, var (not trained) */
};

struct ofa_block_idx {
    int cin, cout, mid_max, r_max, stride, se, residual_possible;
    enum ofa_act act;
    int exp_w;
    struct ofa_bn_idx exp_bn;
    int dw_k;                 /* stored kernel size: 7 (elastic) or K (standalone) */
    int dw_w, dw_m75, dw_m53; /* [dw_k][dw_k][mid_max]; matrices -1 when not used */
    struct ofa_bn_idx dw_bn;
    int se_w1, se_b1, se_w2, se_b2; /* -1 without SE */
    int proj_w;
    struct ofa_bn_idx proj_bn;
};

struct ofa_supernet {
    struct ofa_space sp;
    struct ofa_params p;
    int stem_w;
    struct ofa_bn_idx stem_bn;
    int first_dw, first_pw;
    struct ofa_bn_idx first_dw_bn, first_pw_bn;
    struct ofa_block_idx blk[OFA_MAX_STAGES][OFA_MAX_DEPTH];
    int head_w;
    struct ofa_bn_idx head_bn;
    int fc_w, fc_b;
    float *calib; /* BN recalibration sums, same layout as p.data (lazily made) */
    int calib_batches;
    int standalone;          /* made by ofa_supernet_extract: runs only `sub` */
    struct ofa_subnet sub;
    /* Optional activation hook (NULL: none; init and extract leave it NULL).
     * Forward passes in OFA_MODE_TRAIN and OFA_MODE_EVAL call it in place on
     * the output of the stem (site 0), of the first block (site 1), of every
     * active MBConv block in order (sites 2, 3, ...) and of the head's 1x1
     * conv + BN + hswish (the last site), before the next layer reads it;
     * mode is the pass's enum ofa_mode. The backward treats it as the
     * identity (straight-through estimator). Used for activation fake
     * quantization (stability.c). */
    void (*act_hook)(void *ctx, int site, float *x, long n, int mode);
    void *act_hook_ctx;
};

/* Lay out and initialise the parameters for a validated space (He-normal
 * convs, BN gamma 1 / beta 0 / var 1, identity kernel transforms, zero last
 * BN gamma of residual blocks when sp->zero_last_gamma). */
void ofa_supernet_init(struct ofa_supernet *net, const struct ofa_space *sp, uint64_t seed);
void ofa_supernet_free(struct ofa_supernet *net);

/* A standalone network with its own copy of subnet sub's weights: only the
 * active blocks, each tensor at its active shape, depthwise kernels stored
 * materialised as KxK (kernel transformation applied), BN statistics as
 * they are in src. It runs (forward, backward, recalibration) through the
 * same functions, with sub only, and computes what src computes for sub;
 * its trainable parameter count equals ofa_subnet_params(). */
void ofa_supernet_extract(struct ofa_supernet *dst, const struct ofa_supernet *src,
                          const struct ofa_subnet *sub);

enum ofa_mode {
    OFA_MODE_TRAIN, /* batch statistics, running averages updated, tape kept */
    OFA_MODE_EVAL,  /* running statistics */
    OFA_MODE_CALIB, /* batch statistics, accumulated for BN recalibration */
};

struct ofa_bn_tape {
    float *mean, *rstd;
};

struct ofa_block_tape {
    int H, Ho, cin, mid, cout, K, stride, R, residual, se;
    enum ofa_act act;
    const float *x;          /* input [N,H,H,cin] */
    float *e1, *e2;          /* expand: conv out, act(BN) out [N,H,H,mid] (e2 in
                              * inference only: ofa_dwconv_forward_bn) */
    float *k, *k5;           /* active depthwise kernel [K][K][mid], 5x5 cache */
    float *d1, *d2;          /* depthwise: conv out, act(BN) out [N,Ho,Ho,mid] */
    float *s, *pooled, *hid, *gate; /* SE out and caches */
    float *p1, *out;         /* project conv out; BN out (+ residual) [N,Ho,Ho,cout] */
    struct ofa_bn_tape bn[3];
};

struct ofa_exec {
    struct ofa_arena arena;
    int max_batch;
    /* the tape of the last forward pass */
    struct ofa_subnet sub;
    enum ofa_mode mode;
    int N, R;
    const float *x;
    float *col, *s1, *s2;             /* stem: conv out, act(BN) out */
    struct ofa_bn_tape stem_bn, f_bn[2];
    float *f1, *f2, *f3, *f4;         /* first block */
    int first_residual;
    struct ofa_block_tape blk[OFA_MAX_STAGES][OFA_MAX_DEPTH];
    int Hh;                           /* spatial size at the head */
    float *h1, *h2, *g, *g2, *mask, *logits;
    struct ofa_bn_tape head_bn;
    int dropout_on;
    /* backward scratch: four of the largest tensor's size, the depthwise
     * kernel gradients, the SE backward's scratch */
    float *ga, *gb, *u, *v, *kscr, *sescr;
    size_t gsize;
};

/* Size the arena for batches up to max_batch of the largest subnet (of a
 * standalone network: of its subnet). */
void ofa_exec_init(struct ofa_exec *ex, const struct ofa_supernet *net, int max_batch);
void ofa_exec_free(struct ofa_exec *ex);

/* Forward the subnet on x [N, R, R, in_channels] with R = sub->res.
 * dropout > 0 (training only) applies dropout before the classifier with
 * masks drawn from rng. Returns the logits [N, num_classes], owned by ex
 * (valid until the next forward). */
const float *ofa_supernet_forward(struct ofa_supernet *net, struct ofa_exec *ex,
                                  const struct ofa_subnet *sub, const float *x, int N,
                                  enum ofa_mode mode, float dropout, struct ofa_rng *rng);
/* Backward of the last OFA_MODE_TRAIN forward from dlogits [N, classes];
 * accumulates into net->p.grad (only the active weights receive gradient). */
void ofa_supernet_backward(struct ofa_supernet *net, struct ofa_exec *ex, const float *dlogits);

/* Inference latency of each part of a subnet at batch 1 on this host, in
 * milliseconds (median of reps): stem + first block, every active block, and
 * the head (conv, pooling, classifier). Forwards once in OFA_MODE_EVAL to
 * set up every block's input, then times each part alone; random inputs.
 * Times are CPU time of the calling thread (ofa_thread_cpu_now): call it
 * with one thread, so that a busy machine does not inflate them. */
void ofa_supernet_time_parts(struct ofa_supernet *net, struct ofa_exec *ex,
                             const struct ofa_subnet *sub, int reps, double *stem_ms,
                             double block_ms[OFA_MAX_STAGES][OFA_MAX_DEPTH], double *head_ms);

/* BN recalibration (OFA): begin, then forward the subnet in OFA_MODE_CALIB on
 * a fixed set of training batches, then end: the subnet's running mean and
 * variance become the exact average of the per-batch mean and (biased)
 * variance. Only the subnet's active channels and blocks change. */
void ofa_supernet_calib_begin(struct ofa_supernet *net);
void ofa_supernet_calib_end(struct ofa_supernet *net, const struct ofa_subnet *sub);

/* Channel importance sorting: rank each block's middle channels by the L1
 * norm of the project conv's weights that read them, and permute expand conv,
 * its BN, depthwise kernel, its BN, SE and project conv (and the momentum
 * buffers) so that the first k channels are the k most important. SE hidden
 * channels are sorted the same way by the L1 norm of the SE expand weights.
 * The largest subnet computes the same function before and after. */
void ofa_supernet_sort_channels(struct ofa_supernet *net);

#endif
