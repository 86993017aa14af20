/* model.h: an exported (materialised) subnet: a flat list of layers over
 * numbered tensors, BN folded into the convolutions, float32 weights and,
 * once quantized, int8 weights with their scales. This is what ofa-export
 * writes (model.h5, model.onnx, model.c) and what ofa-run executes.
 *
 * Tensors: tensor 0 is the network input [res, res, in_channels] (normalised
 * floats, the same values the evaluator feeds the supernet); every layer
 * writes one new tensor; the last layer's output is the logits [num_classes].
 * Shapes are per image, NHWC; a batch is N such images back to back.
 *
 * Weight layouts (offsets into weights[], in floats):
 *   OFA_LAYER_CONV  w [Cout][K][K][Cin], b [Cout]  (1x1 convs: K = 1)
 *   OFA_LAYER_DW    w [K][K][C], b [C]             (Cin = Cout = C)
 *   OFA_LAYER_SE    w [R][C], b [R], w2 [C][R], b2 [C]: MobileNetV3's
 *                   squeeze-excite, out = in * hsigmoid(w2 relu(w p + b) + b2)
 *                   with p the global average of in
 *   OFA_LAYER_ADD   out = in + in2 (residual), no weights
 *   OFA_LAYER_POOL  global average pool [H,W,C] -> [1,1,C], no weights
 *   OFA_LAYER_FC    w [Cout][Cin], b [Cout] on [1,1,Cin] -> [1,1,Cout]
 * CONV and DW pad K/2 (stem, depthwise) or 0 (1x1) as `pad` says, then add
 * the bias, then apply `act`. Absent offsets are -1.
 *
 * Quantization (TFLite/gemmlowp scheme, REFERENCES.md): real = scale * (q - zp)
 * with q int8. Every tensor has one (scale, zp) (tq[]): activations per
 * tensor, asymmetric. Weights per output channel, symmetric (zp 0, q in
 * [-127, 127]), scales in wscale[]; biases int32 at in_scale * w_scale.
 * Layers whose act is hswish keep the int8 pre-activation's (scale, zp) in
 * `pre` (the int8 runtime maps pre -> out through a 256-entry table); relu
 * and none clamp in the requantization. SE layers keep `pre` for the gate
 * before hsigmoid and `pool`/`hid` for the pooled input and the hidden
 * activation. Requantization multipliers and shifts are derived from these
 * scales (ofa_quant_prepare), never stored.
 *
 * Ownership: a model filled by ofa_model_materialise / ofa_model_load owns
 * every array and is released by ofa_model_free (zeroed struct OK).
 */
#ifndef OFA_MODEL_H
#define OFA_MODEL_H

#include <stdint.h>

#include "ops.h"
#include "prof.h"
#include "space.h"
#include "util.h"

struct ofa_supernet;
struct ofa_exec;

#define OFA_MODEL_FORMAT "ofa-model"
#define OFA_MODEL_VERSION 1
#define OFA_CLASS_NAME_MAX 32

enum ofa_layer_kind {
    OFA_LAYER_CONV = 0,
    OFA_LAYER_DW,
    OFA_LAYER_SE,
    OFA_LAYER_ADD,
    OFA_LAYER_POOL,
    OFA_LAYER_FC,
};

struct ofa_qp {
    float scale;
    int32_t zp; /* in [-128, 127] */
};

struct ofa_layer {
    enum ofa_layer_kind kind;
    int in, in2, out;    /* tensor indices (in2: ADD's second operand, else -1) */
    int H, W, Cin;       /* input shape */
    int Ho, Wo, Cout;    /* output shape */
    int K, stride, pad;  /* CONV, DW (1 / 1 / 0 otherwise) */
    int R;               /* SE hidden width (0 otherwise) */
    enum ofa_act act;    /* after CONV, DW, FC; NONE for the others */
    long w, b, w2, b2;   /* float weight offsets, -1 when absent */
    /* int8 (when model->quantized) */
    long qw, qw2;        /* offsets into qweights (int8, same layouts as w, w2) */
    long qb, qb2;        /* offsets into qbias (int32) */
    long ws, ws2;        /* offsets into wscale (one per output channel) */
    struct ofa_qp pre;   /* hswish pre-activation; SE: gate before hsigmoid */
    struct ofa_qp pool, hid; /* SE: pooled input, hidden after relu */
    /* The part of the subnet the layer computes, for per-block profiling:
     * 0 the stem (stem conv and first block), 1 + i the subnet's i-th block
     * in execution order, then 1 + (number of blocks) the head. Set by
     * ofa_model_materialise; not stored in model.h5 (-1 after a load). */
    int part;
    /* CONV and FC: offset of the weights packed for
     * ofa_pwconv_forward_packed (a KxK CONV's with K*K*Cin input channels)
     * in model->packed; SE: of w packed, then w2; -1 otherwise. Set by
     * ofa_model_pack; not stored. */
    long wp;
};

struct ofa_tshape {
    int H, W, C;
};

struct ofa_model {
    char subnet[OFA_SUBNET_TEXT_MAX]; /* canonical subnet text */
    char device[64];
    uint64_t supernet_fingerprint;
    int in_channels, res, num_classes;
    float norm_mean[3], norm_std[3]; /* input = (pixel / 255 - mean) / std */
    char (*class_names)[OFA_CLASS_NAME_MAX]; /* [num_classes] */
    int n_layers;
    struct ofa_layer *layers;
    int n_tensors;
    struct ofa_tshape *tensors;
    long n_weights;
    float *weights;
    float *packed; /* ofa_model_pack's copy of the 1x1 and FC weights */
    /* int8 */
    int quantized;
    struct ofa_qp *tq;  /* [n_tensors] */
    long n_qweights, n_qbias, n_wscale;
    int8_t *qweights;
    int32_t *qbias;
    float *wscale;
};

void ofa_model_free(struct ofa_model *m);

/* Copy subnet sub out of net (ofa_supernet_extract: kernel transform applied;
 * or, when net is already standalone, its own subnet, which must be sub),
 * with net's BN statistics as they are (recalibrate them first), and fold
 * every BN into the convolution before it. norm_mean/std and class names are
 * the caller's to fill. */
void ofa_model_materialise(struct ofa_model *m, const struct ofa_supernet *net,
                           const struct ofa_subnet *sub);

/* Fill layer.wp and m->packed from m->weights (replacing an earlier
 * packing): ofa_model_materialise and ofa_model_load do it; whoever builds
 * a model otherwise, or changes its float weights, calls it before
 * ofa_model_forward. */
void ofa_model_pack(struct ofa_model *m);

/* Floats of scratch ofa_model_forward needs for batches of up to N, at any
 * thread count. */
size_t ofa_model_scratch_size(const struct ofa_model *m, int N);
/* That scratch, zeroed, on a 64-byte boundary, which the forward's tensors
 * then keep: their vectors never straddle two cache lines (the largest
 * reference subnet at batch 128, one thread: 1,389-1,394 images/s on a
 * malloc'd scratch, 16 bytes off a boundary, 1,426-1,509 on this one);
 * free() it. */
float *ofa_model_scratch_alloc(const struct ofa_model *m, int N);
/* Float forward of x [N, res, res, in_channels] -> logits [N, num_classes].
 * An image's logits are the same floats whatever the batch it is in and the
 * thread count. */
void ofa_model_forward(const struct ofa_model *m, float *logits, const float *x, int N,
                       float *scratch);
/* The profile's op kind (prof.h) of layer i, under which ofa_model_forward
 * times it: a 1x1 convolution is an expand when a depthwise one follows, the
 * head when the pool does, else a project; other convolutions are the stem. */
enum ofa_prof_kind ofa_model_layer_prof_kind(const struct ofa_model *m, int i);

/* model.h5 (docs/model-format.md): atomic write; load validates format,
 * version, every dataset's presence, dtype and shape, and the layer graph
 * (indices, shapes, offsets in range), naming the file and what is wrong. */
int ofa_model_save(const char *path, const struct ofa_model *m, struct ofa_error *err);
int ofa_model_load(const char *path, struct ofa_model *m, struct ofa_error *err);

#endif
