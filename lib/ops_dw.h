/* ops_dw.h: what the depthwise convolution's two files share: the forward
 * and the input gradient (ops_dwconv.c) and the kernel gradient
 * (ops_dwconv_grad.c). Their kernels are specialised on the kernel size,
 * stride, run length and channel tail, 1.5 and 1.4 MB of code: split, the two
 * compile in parallel (77 and 53 s at -O2 -march=native on Zen 4, where the
 * one file took 150; several times that with the sanitizers). Private to
 * lib/.
 */
#ifndef OFA_OPS_DW_H
#define OFA_OPS_DW_H

#include "ops.h"
#include "ops_vec.h"

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

enum { DK_MAXTAPS = 49 };

/* Taps [*k0, *k1) of a window at output coordinate o whose input coordinate
 * o*stride - pad + k stays inside [0, n). */
static inline void tap_range(int *k0, int *k1, int o, int stride, int pad, int K, int n)
{
    int base = o * stride - pad;
    *k0 = base < 0 ? -base : 0;
    *k1 = n - base < K ? n - base : K;
}

/* The convolution kernels work on blocks of VL channels held in vector
 * registers (ops_vec.h): 16 where the build targets AVX-512 (one register),
 * else 8 (one AVX register, two SSE ones). They keep a run
 * of output pixels (forward, input gradient) or a row of taps (kernel
 * gradient) in registers, so that each FMA needs about one load instead of
 * three loads and a store. A channel tail (C % VL) goes through the same code
 * with partial loads and stores. Each channel is summed in the same order
 * whatever VL is. On 2 cores, VL 16 against 8 (largest subnet's shapes, one
 * and two threads): the kernel gradient 1.3-2x, the forward up to 1.4x. */
enum { XB = 8 }; /* outputs of a run */

/* The BN and activation that training applies to a depthwise convolution's
 * input as the convolution reads it (ofa_dwconv_forward_bn), for one block of
 * VL channels (nc valid): x -> act((x - mu) a + b), a = rstd gamma, b = beta,
 * the products and sums of normalise (ops_norm.c), so the values it would
 * store. `on` is 0 for an input read as it is. */
struct dw_in {
    vf mu, a, b;
    enum ofa_act act;
    int on;
};

ALWAYS_INLINE struct dw_in dw_in_block(const struct ofa_bn_act *bn, int c0, int nc)
{
    struct dw_in p = {.on = bn != NULL};
    if (bn) {
        p.mu = ld(bn->mean + c0, nc);
        p.a = ld(bn->rstd + c0, nc) * ld(bn->gamma + c0, nc);
        p.b = ld(bn->beta + c0, nc);
        p.act = bn->act;
    }
    return p;
}

/* dst[i] = the input vector at src + i C (nc valid) through pre, for i < n;
 * the case of pre (plain or which activation) chosen once, outside the loop. */
ALWAYS_INLINE void ld_in_n(vf *dst, const float *src, int n, int C, int nc,
                           const struct dw_in *pre)
{
    const vf mu = pre->mu, a = pre->a, b = pre->b;
#define LD_IN_LOOP(EXPR)                                                                  \
    _Pragma("GCC unroll 16")                                                              \
    for (int i = 0; i < n; i++) {                                                         \
        const vf x = ld(src + (size_t)i * C, nc);                                         \
        dst[i] = (EXPR);                                                                  \
    }                                                                                     \
    return;
    if (!pre->on) {
        LD_IN_LOOP(x)
    }
    switch (pre->act) {
    case OFA_ACT_RELU: LD_IN_LOOP(bias_act_v((x - mu) * a, b, OFA_ACT_RELU))
    case OFA_ACT_HSWISH: LD_IN_LOOP(bias_act_v((x - mu) * a, b, OFA_ACT_HSWISH))
    case OFA_ACT_HSIGMOID: LD_IN_LOOP(bias_act_v((x - mu) * a, b, OFA_ACT_HSIGMOID))
    default: LD_IN_LOOP(bias_act_v((x - mu) * a, b, OFA_ACT_NONE))
    }
#undef LD_IN_LOOP
}

/* inp [P,C] through bn into a new [P,C] buffer, the values ld_in_n gives:
 * the input of the row path (images wider than DWB_MAXW), which reads it as it
 * is (ops_dwconv.c). */
float *ofa_dw_in_materialise(const float *inp, const struct ofa_bn_act *bn, long P, int C);

/* The image-block path: one task per (image, block of VL channels) slides
 * down the image with a ring of the K input rows the current output row
 * reads. For a run of RB outputs and one kernel row, each input vector is
 * loaded once and multiplied by every kernel tap that reads it (the K taps
 * of the row held in registers): (RB-1)*s + K loads for RB*K FMAs, against
 * RB*K loads in dw_run (ops_dwconv.c). Widths up to DWB_MAXW use it (the
 * ring lives on the stack); wider images take the row path. (Kernels of 3,
 * and of 5 at stride 2, read without BN take neither: the direct path,
 * dwd_run in ops_dwconv.c.) Taps that fall
 * outside the image are skipped: kernel rows (at 4x4 with K = 7, three of
 * seven) and input columns (ring_cols); the run length RB (4, 6, 7 or 8,
 * run_length_of) fits the output width, so that few accumulators are computed
 * only to be dropped. Before both, a 4x4 layer with K = 7 spent 224 FMAs a
 * kernel row on 64 products. Every output is summed in the row path's order
 * (ky, then kx; the skipped taps would add zeros, which leave a sum
 * unchanged), so the two paths give the same values. */
enum { DWB_MAXW = 256, DWB_RINGW = DWB_MAXW + 3 };

/* The run length of the image-block path for Wo outputs a row: of the n
 * lengths rb (longest first), the one that leaves the fewest unused
 * accumulators in the last run of the row (the longest on a tie). */
static inline int run_length_of(int Wo, const int *rb, int n)
{
    int best = rb[0], waste = INT_MAX;
    for (int i = 0; i < n; i++) {
        int w = (Wo + rb[i] - 1) / rb[i] * rb[i] - Wo;
        if (w < waste)
            best = rb[i], waste = w;
    }
    return best;
}

/* Of 8, 7 and 4 (7 divides 28, 14 and 7): the kernel gradient's and the
 * stride-2 input gradient's, which have no runs of 6 (dwb_run_length). */
static inline int run_length(int Wo)
{
    static const int rb[] = {8, 7, 4};
    return run_length_of(Wo, rb, 3);
}

/* The ring columns [*i0, *i1) of a run starting at output o0 that hold input
 * columns: ring index i of the run is input column o0 * s - pad + i. */
ALWAYS_INLINE void ring_cols(int *i0, int *i1, int o0, int s, int pad, int W)
{
    *i0 = pad - o0 * s > 0 ? pad - o0 * s : 0;
    *i1 = W + pad - o0 * s;
}

/* Ring slot of input row iy (iy >= -pad), K slots. */
ALWAYS_INLINE vf *ring_row(vf *ring, int iy, int pad, int K)
{
    return ring + (size_t)((iy + pad) % K) * DWB_RINGW;
}

/* Input row iy (zeros outside [0, H)) into its slot through pre, at offset
 * pad (the columns around the row are never read: ring_cols). */
ALWAYS_INLINE void ring_fill(vf *ring, const float *in, int iy, int H, int W, int C, int pad,
                             int K, int nc, const struct dw_in *pre)
{
    vf *r = ring_row(ring, iy, pad, K) + pad;
    if (iy < 0 || iy >= H) {
        for (int x = 0; x < W; x++)
            r[x] = (vf){0};
        return;
    }
    ld_in_n(r, in + (size_t)iy * W * C, W, C, nc, pre);
}

/* Make the ring hold the K input rows of output row oy (oy = 0 first, then
 * each next row in turn): at oy = 0 fill every slot; later, the s rows
 * entering. */
ALWAYS_INLINE void ring_window(vf *ring, const float *in, int oy, int H, int W, int C, int K,
                               int s, int nc, const struct dw_in *pre)
{
    const int pad = K / 2;
    if (oy == 0) {
        for (int iy = -pad; iy < K - pad; iy++)
            ring_fill(ring, in, iy, H, W, C, pad, K, nc, pre);
        return;
    }
    for (int iy = (oy - 1) * s - pad + K; iy < oy * s - pad + K; iy++)
        ring_fill(ring, in, iy, H, W, C, pad, K, nc, pre);
}

/* The small-image path: square images of at most DWS_MAXH pixels a side,
 * stride 1 (the last stages: 4x4 at a 28-pixel input, 3x3 at 20 and 24).
 * There the ring's bookkeeping costs more than the sums (a 4x4 image with
 * K = 7 has 256 products a channel), so a task loads its image block whole
 * and, with H and K compile-time constants, every loop unrolls to the taps
 * inside the image. The sums and their order are the ring path's (all
 * outputs of a row are one run there). The largest subnet's 4x4 576-channel
 * layer, batch 128, one thread: forward and input gradient 2.1x, kernel
 * gradient 1.5x (with add_to_double); its training step 1.03-1.06x. */
enum { DWS_MAXH = 4 };

/* Whether the small-image path takes an H x W image at stride s. */
static inline int dws_takes(int H, int W, int s)
{
    return s == 1 && H == W && H <= DWS_MAXH;
}

/* The kernel gradient (ops_dwconv_grad.c): dout [N,Ho,Wo,C], inp [N,H,W,C]
 * (through bn when not NULL) -> dk [K][K][C] (+=). */
void ofa_dwconv_kernel_grad(float *dk, const float *dout, const float *inp,
                            const struct ofa_bn_act *bn, int N, int H, int W, int C, int K,
                            int stride);

#endif
