/* ops.h: forward/backward pairs for every op of the MobileNetV3 supernet.
 *
 * Memory layout (chosen for speed on CPUs):
 *   - Activations are NHWC, float32, contiguous: a [N,H,W,C] tensor is M = N*H*W
 *     rows of C floats. A 1x1 convolution is then one GEMM over M rows, and a
 *     depthwise convolution vectorises over the contiguous channels.
 *   - Dense conv weights: [Cout][K][K][Cin] (one row of K*K*Cin per output
 *     channel, matching the im2col column order ky, kx, ci).
 *   - Pointwise conv / linear weights: [Cout][ldw], the active Cin <= ldw
 *     columns first. Elastic width uses the first Cout rows and the first Cin
 *     columns of the full-size stored matrix in place (no copy): ldw is the
 *     stored (largest) Cin.
 *   - Depthwise kernels are stored [7][7][Cmax]; ofa_dwkernel_forward()
 *     materialises the active [K][K][C] kernel (centre window, optionally
 *     through OFA's kernel-transformation matrices) that ofa_dwconv_* use.
 *   - BN parameters and statistics: the first C entries of full-size vectors.
 *
 * Dimension letters: N batch, H/W height/width (Ho/Wo of the output), C
 * channels (Cin/Cout), K kernel size, M = N*H*W rows, R SE-reduced channels.
 *
 * Conventions (llm.c style): outputs first, then caches, then const inputs,
 * weights and sizes. Every backward ACCUMULATES (+=) into the input gradient
 * and the weight gradients; one call per step zeroes all gradients. Scratch
 * buffers are supplied by the caller (from the arena) so that no op allocates.
 * Results are a deterministic function of the inputs and the OpenMP thread
 * count. In-place (out == inp) is NOT allowed unless stated.
 */
#ifndef OFA_OPS_H
#define OFA_OPS_H

#include <stddef.h>
#include <stdint.h>

struct ofa_rng;

/* ---- GEMM (row-major), the one place that calls BLAS -------------------- */
/* C[M x N] = alpha * op(A) * op(B) + beta * C, op(X) = X or X^T. */
void ofa_gemm(int transA, int transB, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb, float beta,
              float *C, int ldc);
/* C [M x N] (leading dimension ldc) += the nt - 1 partial sums part [nt-1][M][N]
 * of threads 1.. of a split sum, in thread order; called by every thread of
 * the parallel region that made them (its rows are shared among them). */
void ofa_gemm_add_partials(float *C, int ldc, const float *part, int M, int N, int nt);

/* ---- Dense KxK convolution (the stem), im2col + GEMM --------------------- */
/* Ho = (H + 2*pad - K) / stride + 1, Wo likewise. */
static inline int ofa_conv_out_size(int H, int K, int stride, int pad)
{
    return (H + 2 * pad - K) / stride + 1;
}
/* Floats of im2col scratch: N*Ho*Wo*K*K*Cin. */
size_t ofa_conv2d_col_size(int N, int H, int W, int Cin, int K, int stride, int pad);
/* inp [N,H,W,Cin], w [Cout][K*K*Cin] -> out [N,Ho,Wo,Cout]; col: scratch that
 * receives im2col(inp) and must be kept for the backward. */
void ofa_conv2d_forward(float *out, float *col, const float *inp, const float *w,
                        int N, int H, int W, int Cin, int Cout, int K, int stride, int pad);
/* dout [N,Ho,Wo,Cout] -> dw [Cout][K*K*Cin] (+=), dinp [N,H,W,Cin] (+=, may be
 * NULL: the stem's input needs no gradient); col: the forward's im2col;
 * dcol: scratch of ofa_conv2d_col_size() floats (unused when dinp is NULL). */
void ofa_conv2d_backward(float *dinp, float *dw, float *dcol, const float *dout,
                         const float *col, const float *w,
                         int N, int H, int W, int Cin, int Cout, int K, int stride, int pad);

/* ---- Pointwise (1x1) convolution = GEMM ---------------------------------- */
/* inp [M,Cin], w [Cout][ldw] (first Cin columns used) -> out [M,Cout]. */
void ofa_pwconv_forward(float *out, const float *inp, const float *w, int ldw,
                        long M, int Cin, int Cout);
/* dinp [M,Cin] (+= when accumulate, else overwritten; may be NULL), dw
 * [Cout][ldw] (+=): in row blocks on the packed kernel and a weight
 * gradient kernel of its own (not BLAS), the same at every call for a given
 * thread count. */
void ofa_pwconv_backward(float *dinp, int accumulate, float *dw, const float *dout,
                         const float *inp, const float *w, int ldw, long M, int Cin, int Cout);

/* ---- Linear layer (classifier) ------------------------------------------- */
/* inp [N,Cin], w [Cout][ldw], b [Cout] -> out [N,Cout]. */
void ofa_linear_forward(float *out, const float *inp, const float *w, int ldw,
                        const float *b, int N, int Cin, int Cout);
/* dinp [N,Cin] (+=, may be NULL), dw [Cout][ldw] (+=), db [Cout] (+=). */
void ofa_linear_backward(float *dinp, float *dw, float *db, const float *dout,
                         const float *inp, const float *w, int ldw,
                         int N, int Cin, int Cout);

/* ---- Elastic depthwise kernel -------------------------------------------- */
/* Stored kernel w7 [7][7][Cmax]. Produces k [K][K][C], K in {3,5,7}, C <= Cmax:
 *   transform == 0: the centre KxK window of w7 (first C channels).
 *   transform != 0: OFA's kernel transformation. For every channel c, with the
 *     window flattened row-major:
 *       k5[c][i] = sum_j m75[i][j] * centre5(w7)[c][j]      (m75: [25][25])
 *       k3[c][i] = sum_j m53[i][j] * centre3(k5)[c][j]      (m53: [9][9])
 *     K == 7 is always the stored kernel itself.
 * k5: [5][5][C] scratch that receives the transformed 5x5 kernel; it is only
 *   written when transform && K == 3, and must be kept for the backward. */
void ofa_dwkernel_forward(float *k, float *k5, const float *w7, const float *m75,
                          const float *m53, int K, int C, int Cmax, int transform);
/* dk [K][K][C] -> dw7 [7][7][Cmax] (+=), dm75 (+=), dm53 (+=) (the matrices'
 * gradients may be NULL when transform == 0). dk5: [5][5][C] scratch. */
void ofa_dwkernel_backward(float *dw7, float *dm75, float *dm53, float *dk5,
                           const float *dk, const float *k5, const float *w7,
                           const float *m75, const float *m53,
                           int K, int C, int Cmax, int transform);

/* ---- Depthwise KxK convolution, padding K/2 ------------------------------ */
/* Ho = (H - 1) / stride + 1. inp [N,H,W,C], k [K][K][C] -> out [N,Ho,Wo,C]. */
void ofa_dwconv_forward(float *out, const float *inp, const float *k,
                        int N, int H, int W, int C, int K, int stride);
/* dinp [N,H,W,C] (+= when accumulate, else overwritten; may be NULL), dk
 * [K][K][C] (+=). Overwriting spares the caller a sweep that zeroes dinp and
 * this one a read of it. */
void ofa_dwconv_backward(float *dinp, int accumulate, float *dk, const float *dout,
                         const float *inp, const float *k, int N, int H, int W, int C, int K,
                         int stride);

/* Activations (functions below, with the BN section's fused forms). */
enum ofa_act {
    OFA_ACT_NONE = 0,
    OFA_ACT_RELU,
    OFA_ACT_HSWISH,   /* x * relu6(x + 3) / 6 */
    OFA_ACT_HSIGMOID, /* relu6(x + 3) / 6 */
};

/* A training BN and the activation after it, applied by the depthwise
 * convolution that reads its output (ofa_dwconv_forward_bn): z = act((x -
 * mean) rstd gamma + beta) per channel [C], the values
 * ofa_bn_act_forward_train_given stores, made as x is read and never stored. */
struct ofa_bn_act {
    const float *mean, *rstd, *gamma, *beta;
    enum ofa_act act;
};
/* ofa_dwconv_forward of z (above), inp [N,H,W,C] the BN's input: the same
 * values as z stored, then convolved. bn NULL: ofa_dwconv_forward. */
void ofa_dwconv_forward_bn(float *out, const float *inp, const struct ofa_bn_act *bn,
                           const float *k, int N, int H, int W, int C, int K, int stride);
/* ofa_dwconv_backward with z (above) its input: dk from dout and z made from
 * inp as it is read (the input gradient, at z, does not read it). bn NULL:
 * ofa_dwconv_backward. */
void ofa_dwconv_backward_bn(float *dinp, int accumulate, float *dk, const float *dout,
                            const float *inp, const struct ofa_bn_act *bn, const float *k,
                            int N, int H, int W, int C, int K, int stride);

/* act(x): relu's x < 0 ? 0 : x lets a NaN through (as PyTorch's); hardsigmoid
 * is relu6(x + 3) * (1/6), the same floats as (x + 3) * (1/6) clamped to
 * [0, 1]; hardswish is x * hardsigmoid(x). PyTorch divides by 6 instead of
 * multiplying by 1/6 (within one rounding of these): a vector division issues
 * one every 10 or so cycles, and the divisions of hardswish had made the
 * kernels that apply it as they store 1.1-1.2x slower (batch-128 inference of
 * the reference subnets 3.5-4.5% fewer images/s). Selects between values and
 * constants, so that loops calling it with a constant act vectorise. */
static inline float ofa_act_value(enum ofa_act act, float x)
{
    switch (act) {
    case OFA_ACT_RELU:
        return x < 0.0f ? 0.0f : x;
    case OFA_ACT_HSWISH:
    case OFA_ACT_HSIGMOID: {
        const float t = x + 3.0f, h = (t < 0.0f ? 0.0f : (t > 6.0f ? 6.0f : t)) * (1.0f / 6.0f);
        return act == OFA_ACT_HSWISH ? x * h : h;
    }
    default:
        return x;
    }
}

/* ofa_dwconv_forward, then out = act(out + bias [C]) in the same pass
 * (inference with BN folded): equal to the three steps one after another. */
void ofa_dwconv_forward_bias_act(float *out, const float *inp, const float *k,
                                 const float *bias, enum ofa_act act, int N, int H, int W,
                                 int C, int K, int stride);

/* Pointwise convolution for inference with fixed weights (ofa_model): w
 * [Cout][ldw] repacked once into panels of ofa_pw_panel() output channels,
 * wp [ceil(Cout / panel)][Cin][panel], zeros past Cout (ofa_pw_packed_size
 * floats), so that no call packs weights again. */
int ofa_pw_panel(void);
size_t ofa_pw_packed_size(int Cin, int Cout);
void ofa_pw_pack(float *wp, const float *w, int ldw, int Cin, int Cout);
/* inp [M,Cin], wp packed, b [Cout] -> out [M,Cout] = act(inp w^T + b), each
 * output summed over Cin in order by one thread (thread-count independent).
 * Outside a parallel region, large layers share their blocks among the
 * threads; inside one, the calling thread does it all. */
void ofa_pwconv_forward_packed(float *out, const float *inp, const float *wp,
                               const float *b, enum ofa_act act, long M, int Cin, int Cout);
/* The same, then res [M,Cout] (when not NULL) added to every output (a
 * residual: the same floats as adding it after); res may not be out. */
void ofa_pwconv_forward_packed_res(float *out, const float *inp, const float *wp,
                                   const float *b, enum ofa_act act, const float *res, long M,
                                   int Cin, int Cout);
/* ofa_pwconv_forward on the packed kernel (the weights packed at every call),
 * and the columns' batch mean [Cout] and biased variance [Cout] of out, as
 * ofa_bn_batch_stats gives them but summed as the rows are made, in chunks
 * fixed by (M, Cin): the same at any thread count. */
void ofa_pwconv_forward_stats(float *out, float *mean, float *var, const float *inp,
                              const float *w, int ldw, long M, int Cin, int Cout);
/* KxK convolution for inference: im2col into col (ofa_conv2d_col_size
 * floats), then ofa_pwconv_forward_packed with the K*K*Cin columns as its
 * input channels: wp is w [Cout][K][K][Cin] packed with Cin = K*K*Cin.
 * Where ofa_conv2d_direct(Cin, K) (a stem's few K*K*Cin terms), the same
 * sums in the same order straight from inp, and col is not used (NULL is
 * fine). */
int ofa_conv2d_direct(int Cin, int K);
void ofa_conv2d_forward_packed(float *out, float *col, const float *inp, const float *wp,
                               const float *b, enum ofa_act act, int N, int H, int W, int Cin,
                               int Cout, int K, int stride, int pad);

/* ---- Batch normalisation over rows, elastic width ------------------------ */
/* Training mode: batch statistics over the M rows of inp [M,C]; mean and rstd
 * ([C], cache for the backward) receive the batch mean and 1/sqrt(var + eps)
 * with the biased variance. When run_mean/run_var are not NULL they are
 * updated PyTorch-style: r = (1 - momentum) * r + momentum * batch, with the
 * unbiased variance for run_var. */
void ofa_bn_forward_train(float *out, float *mean, float *rstd, float *run_mean,
                          float *run_var, const float *inp, const float *gamma,
                          const float *beta, long M, int C, float momentum, float eps);
/* Inference mode with running statistics. out == inp is allowed. */
void ofa_bn_forward_eval(float *out, const float *inp, const float *gamma,
                         const float *beta, const float *run_mean, const float *run_var,
                         long M, int C, float eps);
/* BN and the activation after it in one sweep (the same values as
 * ofa_bn_forward_* then ofa_act_forward). Training mode: y [M,C] the BN
 * output (may be NULL when only z is wanted; required for OFA_ACT_NONE), z
 * [M,C] = act(y) (unused for OFA_ACT_NONE). Inference mode: out = act(BN(inp));
 * out == inp is allowed. res [M,C] (NULL for none; OFA_ACT_NONE only; may be
 * the output): a residual added to the BN output in the same sweep, the same
 * bits as adding it after. */
void ofa_bn_act_forward_train(float *y, float *z, float *mean, float *rstd, float *run_mean,
                              float *run_var, const float *inp, const float *gamma,
                              const float *beta, long M, int C, float momentum, float eps,
                              enum ofa_act act, const float *res);
/* ofa_bn_act_forward_train with the batch statistics given: on entry mean
 * [C] holds the batch mean of inp and rstd [C] its biased variance (as
 * ofa_bn_batch_stats or ofa_pwconv_forward_stats give them), so inp is read
 * once, to normalise it; with y and z both NULL, not at all (only rstd and
 * the running statistics are set: ofa_dwconv_forward_bn normalises). */
void ofa_bn_act_forward_train_given(float *y, float *z, float *mean, float *rstd,
                                    float *run_mean, float *run_var, const float *inp,
                                    const float *gamma, const float *beta, long M, int C,
                                    float momentum, float eps, enum ofa_act act,
                                    const float *res);
void ofa_bn_act_forward_eval(float *out, const float *inp, const float *gamma,
                             const float *beta, const float *run_mean, const float *run_var,
                             long M, int C, float eps, enum ofa_act act, const float *res);
/* Batch mean and biased variance of inp [M,C] (for BN recalibration). */
void ofa_bn_batch_stats(float *mean, float *var, const float *inp, long M, int C);
/* dinp [M,C] (+=), dgamma [C] (+=), dbeta [C] (+=). */
void ofa_bn_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                     const float *inp, const float *mean, const float *rstd,
                     const float *gamma, long M, int C);

/* ---- Activations ---------------------------------------------------------- */

/* The backward of act(BN(inp)) in training mode, in two sweeps instead of the
 * five of ofa_act_backward and ofa_bn_backward into zeroed buffers: dout [M,C]
 * the gradient at the activation's output; the activation's input (the BN
 * output) is recomputed from inp, mean, rstd, gamma and beta (beta [>= C],
 * unused for OFA_ACT_NONE) with the same bits as ofa_bn_act_forward_train's,
 * so training need not keep it; dinp [M,C] is OVERWRITTEN (not accumulated),
 * dgamma, dbeta [C] (+=). The same values as that composition. */
void ofa_bn_act_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                         const float *inp, const float *mean, const float *rstd,
                         const float *gamma, const float *beta, long M, int C,
                         enum ofa_act act);

/* ofa_bn_act_backward in two parts, for a consumer that takes the input
 * gradient a block of rows at a time (ofa_pwconv_backward_bn): the sums over
 * all rows (dgamma, dbeta += as there; bg then holds per-channel
 * coefficients until ofa_bn_grad_free), then any n rows, from dout and inp
 * rows [n,C] into dinp (row stride ldd; += when accumulate, else =), or all
 * M rows shared among the threads (ofa_bn_grad_apply), with the same bits
 * as ofa_bn_act_backward's. */
struct ofa_bn_grad {
    int C;
    enum ofa_act act;
    float *mu, *a, *b, *k, *ya, *yb;
};
void ofa_bn_grad_prepare(struct ofa_bn_grad *bg, float *dgamma, float *dbeta, const float *dout,
                         const float *inp, const float *mean, const float *rstd,
                         const float *gamma, const float *beta, long M, int C, enum ofa_act act);
void ofa_bn_grad_rows(const struct ofa_bn_grad *bg, float *dinp, long ldd, int accumulate,
                      const float *dout, const float *inp, long n);
void ofa_bn_grad_apply(const struct ofa_bn_grad *bg, float *dinp, int accumulate,
                       const float *dout, const float *inp, long M);
void ofa_bn_grad_free(struct ofa_bn_grad *bg);
/* ofa_bn_grad_rows of dz, y [M,Cout] into scratch [M,Cout], then
 * ofa_pwconv_backward of it, the same values, but each of its row blocks'
 * rows computed just before that block's sums (in cache, part of scratch)
 * instead of the whole gradient written and read back: the backward of a
 * pointwise convolution followed by BN and an activation. */
void ofa_pwconv_backward_bn(float *dinp, int accumulate, float *dw, float *scratch,
                            const struct ofa_bn_grad *bg, const float *dz, const float *y,
                            const float *inp, const float *w, int ldw, long M, int Cin,
                            int Cout);

/* act'(x) * g, PyTorch's choices at the kinks: relu'(0) = 0, hardswish' =
 * x/3 + 1/2 on [-3, 3], hardsigmoid' = 1/6 on (-3, 3). Written as selects
 * between values and constants, so that loops calling it with a constant act
 * vectorise. */
static inline float ofa_act_grad(enum ofa_act act, float x, float g)
{
    switch (act) {
    case OFA_ACT_RELU:
        return x > 0.0f ? g : 0.0f;
    case OFA_ACT_HSWISH: {
        float mid = ((x >= -3.0f) & (x <= 3.0f)) ? 1.0f : 0.0f;
        float hi = x > 3.0f ? 1.0f : 0.0f;
        return (mid * (x / 3.0f + 0.5f) + hi) * g;
    }
    case OFA_ACT_HSIGMOID: {
        float mid = ((x > -3.0f) & (x < 3.0f)) ? 1.0f : 0.0f;
        return mid * (g / 6.0f);
    }
    default:
        return g;
    }
}
/* out[i] = act(inp[i]); out == inp is allowed. */
void ofa_act_forward(float *out, const float *inp, long n, enum ofa_act act);
/* dinp[i] += act'(inp[i]) * dout[i]; inp is the pre-activation. */
void ofa_act_backward(float *dinp, const float *dout, const float *inp, long n,
                      enum ofa_act act);

/* ---- Global average pooling ----------------------------------------------- */
/* inp [N,HW,C] -> out [N,C]. */
void ofa_avgpool_forward(float *out, const float *inp, int N, int HW, int C);
/* dinp [N,HW,C] (+=). */
void ofa_avgpool_backward(float *dinp, const float *dout, int N, int HW, int C);

/* ---- Squeeze-excite -------------------------------------------------------- */
/* out = inp * hsigmoid(W2 relu(W1 avgpool(inp) + b1) + b2), per image.
 * inp, out [N,HW,C]; w1 [R][ld1] (first C columns), b1 [R];
 * w2 [C][ld2] (first R columns), b2 [C].
 * Caches for the backward: pooled [N,C], hidden [N,R] (pre-relu),
 * gate [N,C] (pre-hsigmoid). */
void ofa_se_forward(float *out, float *pooled, float *hidden, float *gate,
                    const float *inp, const float *w1, int ld1, const float *b1,
                    const float *w2, int ld2, const float *b2,
                    int N, int HW, int C, int R);
/* out [N,HW,C] = inp * g [N,C], per image and channel: the gate (hsigmoid
 * applied) of an SE whose matrix products the caller made (ofa_model). */
void ofa_se_scale(float *out, const float *inp, const float *g, int N, int HW, int C);
/* Floats of scratch for ofa_se_backward: 2*N*C + 2*N*R. */
size_t ofa_se_scratch_size(int N, int C, int R);
/* dinp [N,HW,C] (+= when accumulate, else overwritten), dw1, db1, dw2, db2
 * (+=). */
void ofa_se_backward(float *dinp, int accumulate, float *dw1, float *db1, float *dw2, float *db2,
                     float *scratch, const float *dout, const float *inp,
                     const float *pooled, const float *hidden, const float *gate,
                     const float *w1, int ld1, const float *w2, int ld2,
                     int N, int HW, int C, int R);

/* ---- Dropout (inverted, seeded) ------------------------------------------- */
/* mask [n] receives 0 or 1/(1-p); out = inp * mask. p in [0,1). The mask is a
 * function of the rng state only (drawn serially). out == inp is allowed. */
void ofa_dropout_forward(float *out, float *mask, const float *inp, long n, float p,
                         struct ofa_rng *rng);
/* dinp[i] += dout[i] * mask[i]. */
void ofa_dropout_backward(float *dinp, const float *dout, const float *mask, long n);

/* ---- Bilinear resize (elastic resolution) --------------------------------- */
/* PyTorch's F.interpolate(mode='bilinear', align_corners=False, no antialias):
 * src = (dst + 0.5) * H / Ho - 0.5, clamped at 0. inp [N,H,W,C] -> out [N,Ho,Wo,C]. */
void ofa_resize_bilinear_forward(float *out, const float *inp, int N, int H, int W,
                                 int Ho, int Wo, int C);
/* dinp [N,H,W,C] (+=). */
void ofa_resize_bilinear_backward(float *dinp, const float *dout, int N, int H, int W,
                                  int Ho, int Wo, int C);

/* ---- Losses ---------------------------------------------------------------- */
/* probs [N,K] = softmax(logits / T). */
void ofa_softmax_forward(float *probs, const float *logits, int N, int K, float T);
/* Softmax cross-entropy with label smoothing eps: target = (1-eps) onehot +
 * eps/K. probs [N,K] receives softmax(logits) for the backward. Returns the
 * mean loss over the N rows. labels in [0,K) (asserted). */
float ofa_ce_forward(float *probs, const float *logits, const int *labels,
                     int N, int K, float smoothing);
/* dlogits [N,K] += scale * (probs - target) / N. */
void ofa_ce_backward(float *dlogits, const float *probs, const int *labels,
                     int N, int K, float smoothing, float scale);
/* Distillation: T^2 * mean_n CE(softmax(teacher/T), softmax(logits/T)) with
 * tprobs = softmax(teacher/T) given (detached). probs [N,K] receives
 * softmax(logits/T). Returns the mean loss. */
float ofa_kd_forward(float *probs, const float *logits, const float *tprobs,
                     int N, int K, float T);
/* dlogits += scale * T * (probs - tprobs) / N. */
void ofa_kd_backward(float *dlogits, const float *probs, const float *tprobs,
                     int N, int K, float T, float scale);

#endif
