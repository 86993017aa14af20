#include <config.h>
/* ops_dwconv.c: the elastic depthwise kernel (centre window of the stored 7x7
 * kernel, optionally through OFA's 7->5 and 5->3 transformation matrices) and
 * the NHWC depthwise convolution (padding K/2, stride 1 or 2): its forward and
 * input gradient here, its kernel gradient in ops_dwconv_grad.c (ops_dw.h).
 * Inner loops run over contiguous channels; every parallel loop owns its
 * outputs, so results are deterministic and in fact independent of the thread
 * count.
 */

#include "ops_dw.h"
#include "util.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdlib.h>
#include <string.h>

static void check_kernel_args(int K, int C, int Cmax)
{
    OFA_ASSERT(K == 3 || K == 5 || K == 7);
    OFA_ASSERT(C > 0 && C <= Cmax);
}

/* src [Kin][Kin][lds] -> dst [Kout][Kout][C]: the centre Kout x Kout window. */
static void centre_window(float *dst, const float *src, int lds, int Kin, int Kout, int C)
{
    int o = (Kin - Kout) / 2;
    for (int ky = 0; ky < Kout; ky++)
        for (int kx = 0; kx < Kout; kx++)
            memcpy(dst + ((size_t)ky * Kout + kx) * C,
                   src + ((size_t)(ky + o) * Kin + kx + o) * lds, (size_t)C * sizeof *dst);
}

/* dst [Kout][Kout][lds] += src [Kout][Kout][C] into the centre window. */
static void centre_window_add(float *dst, int lds, const float *src, int Kin, int Kout,
                              int C)
{
    int o = (Kin - Kout) / 2;
    for (int ky = 0; ky < Kout; ky++)
        for (int kx = 0; kx < Kout; kx++) {
            float *d = dst + ((size_t)(ky + o) * Kin + kx + o) * lds;
            const float *s = src + ((size_t)ky * Kout + kx) * C;
            for (int c = 0; c < C; c++)
                d[c] += s[c];
        }
}

/* m [T][T] (T = Kout^2), src [Kin][Kin][lds] -> dst [Kout][Kout][C]:
 * dst[i][c] = sum_j m[i][j] * centre(src)[j][c]. */
static void transform_forward(float *dst, const float *m, const float *src, int lds,
                              int Kin, int Kout, int C)
{
    int T = Kout * Kout, o = (Kin - Kout) / 2;
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < T; i++) {
        float *restrict d = dst + (size_t)i * C;
        memset(d, 0, (size_t)C * sizeof *d);
        for (int j = 0; j < T; j++) {
            float mij = m[i * T + j];
            const float *restrict s = src + ((size_t)(j / Kout + o) * Kin + j % Kout + o) * lds;
            #pragma omp simd
            for (int c = 0; c < C; c++)
                d[c] += mij * s[c];
        }
    }
}

/* Backward of transform_forward: ddst [Kout][Kout][C] ->
 * dsrc [Kin][Kin][lds] centre window (+=), dm [T][T] (+=, skipped when NULL). */
static void transform_backward(float *dsrc, float *dm, const float *ddst, const float *m,
                               const float *src, int lds, int Kin, int Kout, int C)
{
    int T = Kout * Kout, o = (Kin - Kout) / 2;
    /* Input gradient: one centre tap j per iteration. */
    #pragma omp parallel for schedule(static)
    for (int j = 0; j < T; j++) {
        float *restrict d = dsrc + ((size_t)(j / Kout + o) * Kin + j % Kout + o) * lds;
        for (int i = 0; i < T; i++) {
            float mij = m[i * T + j];
            const float *restrict g = ddst + (size_t)i * C;
            #pragma omp simd
            for (int c = 0; c < C; c++)
                d[c] += mij * g[c];
        }
    }
    if (!dm)
        return;
    /* Matrix gradient: one row i per iteration, channel sums in double. */
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < T; i++) {
        const float *g = ddst + (size_t)i * C;
        for (int j = 0; j < T; j++) {
            const float *s = src + ((size_t)(j / Kout + o) * Kin + j % Kout + o) * lds;
            double acc = 0;
            for (int c = 0; c < C; c++)
                acc += (double)g[c] * (double)s[c];
            dm[i * T + j] += (float)acc;
        }
    }
}

/* w7 [7][7][Cmax], m75 [25][25], m53 [9][9] -> k [K][K][C], k5 [5][5][C]
 * (written only when transform && K == 3). */
void ofa_dwkernel_forward(float *k, float *k5, const float *w7, const float *m75,
                          const float *m53, int K, int C, int Cmax, int transform)
{
    check_kernel_args(K, C, Cmax);
    if (K == 7 || !transform) {
        centre_window(k, w7, Cmax, 7, K, C);
        return;
    }
    OFA_ASSERT(m75 != NULL);
    if (K == 5) {
        transform_forward(k, m75, w7, Cmax, 7, 5, C);
        return;
    }
    OFA_ASSERT(m53 != NULL && k5 != NULL);
    transform_forward(k5, m75, w7, Cmax, 7, 5, C);
    transform_forward(k, m53, k5, C, 5, 3, C);
}

/* dk [K][K][C] -> dw7 [7][7][Cmax] (+=), dm75 [25][25] (+=), dm53 [9][9] (+=);
 * k5 [5][5][C] from the forward, dk5 [5][5][C] scratch. */
void ofa_dwkernel_backward(float *dw7, float *dm75, float *dm53, float *dk5,
                           const float *dk, const float *k5, const float *w7,
                           const float *m75, const float *m53,
                           int K, int C, int Cmax, int transform)
{
    check_kernel_args(K, C, Cmax);
    if (K == 7 || !transform) {
        centre_window_add(dw7, Cmax, dk, 7, K, C);
        return;
    }
    OFA_ASSERT(m75 != NULL);
    if (K == 5) {
        transform_backward(dw7, dm75, dk, m75, w7, Cmax, 7, 5, C);
        return;
    }
    OFA_ASSERT(m53 != NULL && k5 != NULL && dk5 != NULL);
    /* dk5 is the gradient of k5; only its centre 3x3 is reached from k. */
    memset(dk5, 0, (size_t)25 * C * sizeof *dk5);
    transform_backward(dk5, dm53, dk, m53, k5, C, 5, 3, C);
    transform_backward(dw7, dm75, dk5, m75, w7, Cmax, 7, 5, C);
}

/* Outputs j in [*j0, *j1) of a run of nb starting at o0 whose input
 * coordinate (o0 + j) * s - p + k lies in [0, n). */
ALWAYS_INLINE void run_range(int *j0, int *j1, int o0, int s, int p, int k, int n, int nb)
{
    const int a = p - k - o0 * s;     /* need j * s >= a */
    const int b = n - 1 + a;          /* need j * s <= b */
    *j0 = a > 0 ? (a + s - 1) / s : 0;
    const int hi = b < 0 ? 0 : b / s + 1;
    *j1 = hi < nb ? hi : nb;
}

float *ofa_dw_in_materialise(const float *inp, const struct ofa_bn_act *bn, long P, int C)
{
    float *z = ofa_xmalloc(ofa_mul_size(ofa_mul_size((size_t)P, (size_t)C), sizeof *z),
                           "depthwise input after BN");
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < P; i++)
        for (int c0 = 0; c0 < C; c0 += VL) {
            const int nc = C - c0 < VL ? C - c0 : VL;
            const struct dw_in pre = dw_in_block(bn, c0, nc);
            vf v;
            ld_in_n(&v, inp + (size_t)i * C + c0, 1, C, nc, &pre);
            st(z + (size_t)i * C + c0, v, nc);
        }
    return z;
}

/* A run of nb <= XB outputs of one row, VL channels (nc of them valid):
 * out[j] (= or +=) sum over taps of in[row(ky)][(o0+j)*s - p + kx] * k[ky][kx],
 * the kernel read flipped when `flip` (the stride-1 input gradient). */
ALWAYS_INLINE void dw_run(float *out, const float *in, const float *k, int W, int C, int K,
                          int s, int ky0, int ky1, int iy0, int o0, int nb, int c0, int nc,
                          int flip, int accumulate)
{
    const int pad = K / 2;
    vf acc[XB];
#pragma GCC unroll 8
    for (int j = 0; j < XB; j++)
        acc[j] = (vf){0};
    for (int ky = ky0; ky < ky1; ky++) {
        const float *row = in + ((size_t)(iy0 + ky) * W) * C + c0;
        for (int kx = 0; kx < K; kx++) {
            const int t = flip ? (K - 1 - ky) * K + (K - 1 - kx) : ky * K + kx;
            const vf kv = ld(k + (size_t)t * C + c0, nc);
            int j0, j1;
            run_range(&j0, &j1, o0, s, pad, kx, W, nb);
            const float *base = row + ((ptrdiff_t)o0 * s - pad + kx) * C;
#pragma GCC unroll 8
            for (int j = 0; j < XB; j++)
                if (j >= j0 && j < j1)
                    acc[j] += ld(base + (size_t)j * s * C, nc) * kv;
        }
    }
#pragma GCC unroll 8
    for (int j = 0; j < XB; j++)
        if (j < nb) {
            float *o = out + (size_t)(o0 + j) * C + c0;
            st(o, accumulate ? ld(o, nc) + acc[j] : acc[j], nc);
        }
}

/* One output row of one image, all channels: in [H][W][C] -> out [Wo][C].
 * Rows iy = oy*s - pad + ky for ky in the valid range. */
ALWAYS_INLINE void dw_row(float *out, const float *in, const float *k, int H, int W, int C,
                          int K, int s, int oy, int Wo, int flip, int accumulate)
{
    const int pad = K / 2;
    int ky0, ky1;
    tap_range(&ky0, &ky1, oy, s, pad, K, H);
    const int iy0 = oy * s - pad;
    for (int c0 = 0; c0 < C; c0 += VL) {
        for (int o0 = 0; o0 < Wo; o0 += XB) {
            const int nb = Wo - o0 < XB ? Wo - o0 : XB;
            if (C - c0 >= VL)
                dw_run(out, in, k, W, C, K, s, ky0, ky1, iy0, o0, nb, c0, VL, flip, accumulate);
            else
                dw_run(out, in, k, W, C, K, s, ky0, ky1, iy0, o0, nb, c0, C - c0, flip,
                       accumulate);
        }
    }
}

/* dw_row specialised on the kernel size (and stride 1 or 2): the row path's
 * layers, images wider than the image-block path takes read without BN (a
 * BN is applied first, ofa_dw_in_materialise), so none that dwd_run takes
 * (kernels of 3, and of 5 at stride 2). */
static void dw_row_any(float *out, const float *in, const float *k, int H, int W, int C, int K,
                       int s, int oy, int Wo, int flip, int accumulate)
{
#define DW_CASE(KK, SS)                                                                   \
    if (K == KK && s == SS) {                                                             \
        if (flip)                                                                         \
            dw_row(out, in, k, H, W, C, KK, SS, oy, Wo, 1, accumulate);                   \
        else                                                                              \
            dw_row(out, in, k, H, W, C, KK, SS, oy, Wo, 0, accumulate);                   \
        return;                                                                           \
    }
    DW_CASE(5, 1) DW_CASE(7, 1) DW_CASE(7, 2)
#undef DW_CASE
    OFA_ASSERT(!"unsupported depthwise kernel size or stride");
}

/* Slice b of nb of the n floats at p, into L2 (for writing when rw).
 *
 * A task of the image-block path (dwb_image; dkb_block in ops_dwconv_grad.c)
 * reads one block of VL channels of an image: a cache line every C floats, a
 * pattern the hardware prefetchers follow poorly, so the task waited on DRAM
 * (at batch 128 the kernels ran at half their speed on data in cache).
 * Instead, each output row of task (n, b) prefetches its share (part b * Ho +
 * oy of nblk * Ho) of image n + 1's tensors, contiguous lines, while it
 * computes: by the time image n's tasks are done, image n + 1 is in L2.
 * Largest subnet's shapes, batch 128, one thread (Zen 4): stride 1 forward
 * and input gradient 1.5-1.8x, kernel gradient 1.2-1.4x, stride 2 forward
 * 1.3x; its training step 1.08-1.12x at one thread, 1.05-1.10x at two. */
ALWAYS_INLINE void prefetch_slice(const float *p, size_t n, int b, int nb, int rw)
{
    const char *c = (const char *)p;
    const size_t bytes = n * sizeof *p, lo = bytes * b / nb, hi = bytes * (b + 1) / nb;
    for (size_t i = lo & ~(size_t)63; i < hi; i += 64) {
        if (rw)
            __builtin_prefetch(c + i, 1, 2);
        else
            __builtin_prefetch(c + i, 0, 2);
    }
}

/* The run length of the image-block path's forward and stride-1 input
 * gradient: run_length's, or 6, which 12-wide outputs take (3 runs of 4 had 4
 * sums in flight, too few to hide the FMAs' latency): 12x12 layers, 16
 * images, one thread, 1.14x (5x5, 96 channels) and 1.21x (7x7) faster. */
static int dwb_run_length(int Wo)
{
    static const int rb[] = {8, 7, 6, 4};
    return run_length_of(Wo, rb, 4);
}

/* One image, one channel block: in [H][W][C] (read through pre) -> out
 * [Ho][Wo][C] (= or +=), kb [K*K] the block's kernel taps (already flipped for
 * the input gradient); with a bias (bias != NULL, its block in bv), out =
 * act(sum + bias). Runs of RB outputs. */
ALWAYS_INLINE void dwb_image(float *out, const float *in, const vf *kb, vf *ring, int H, int W,
                             int C, int K, int s, int RB, int c0, int nc, int accumulate,
                             const float *bias, vf bv, enum ofa_act act, int b, int nblk,
                             const struct dw_in *pre)
{
    const int pad = K / 2, Ho = (H - 1) / s + 1, Wo = (W - 1) / s + 1;
    for (int oy = 0; oy < Ho; oy++) {
        if (b >= 0) {
            prefetch_slice(in + (size_t)H * W * C, (size_t)H * W * C, b * Ho + oy, nblk * Ho,
                           0);
            prefetch_slice(out + (size_t)Ho * Wo * C, (size_t)Ho * Wo * C, b * Ho + oy,
                           nblk * Ho, 1);
        }
        ring_window(ring, in + c0, oy, H, W, C, K, s, nc, pre);
        int ky0, ky1;
        tap_range(&ky0, &ky1, oy, s, pad, K, H);
        for (int o0 = 0; o0 < Wo; o0 += RB) {
            int i0, i1;
            ring_cols(&i0, &i1, o0, s, pad, W);
            vf acc[XB];
#pragma GCC unroll 8
            for (int j = 0; j < RB; j++)
                acc[j] = (vf){0};
            for (int ky = ky0; ky < ky1; ky++) {
                const vf *r = ring_row(ring, oy * s - pad + ky, pad, K) + (size_t)o0 * s;
                vf kv[7];
#pragma GCC unroll 7
                for (int kx = 0; kx < K; kx++)
                    kv[kx] = kb[ky * K + kx];
#pragma GCC unroll 32
                for (int i = 0; i < (RB - 1) * s + K; i++) {
                    if (i < i0 || i >= i1)
                        continue;
                    const vf v = r[i];
#pragma GCC unroll 7
                    for (int kx = 0; kx < K; kx++)
                        if (i - kx >= 0 && (i - kx) % s == 0 && (i - kx) / s < RB)
                            acc[(i - kx) / s] += v * kv[kx];
                }
            }
            const int nb = Wo - o0 < RB ? Wo - o0 : RB;
            float *o = out + ((size_t)oy * Wo + o0) * C + c0;
#pragma GCC unroll 8
            for (int j = 0; j < RB; j++)
                if (j < nb) {
                    vf v = accumulate ? ld(o + (size_t)j * C, nc) + acc[j] : acc[j];
                    st(o + (size_t)j * C, bias ? bias_act_v(v, bv, act) : v, nc);
                }
        }
    }
}

/* dwb_image on the small-image path, kb the block's taps (already flipped
 * for the input gradient), bv its bias; with pf, the block's pixels of the
 * next image (in and out n floats on) are prefetched. */
ALWAYS_INLINE void dws_image(float *out, const float *in, const vf *kb, vf bv, int C, int c0,
                             int nc, int accumulate, const float *bias, enum ofa_act act,
                             int pf, const struct dw_in *pre, const int H, const int K)
{
    const int pad = K / 2;
    const size_t n = (size_t)H * H * C;
    if (pf) {
#pragma GCC unroll 16
        for (int p = 0; p < H * H; p++) {
            __builtin_prefetch(in + n + (size_t)p * C + c0, 0, 3);
            __builtin_prefetch(out + n + (size_t)p * C + c0, 1, 3);
        }
    }
    vf x[DWS_MAXH * DWS_MAXH];
    ld_in_n(x, in + c0, H * H, C, nc, pre);
#pragma GCC unroll 4
    for (int oy = 0; oy < H; oy++) {
        vf acc[DWS_MAXH];
#pragma GCC unroll 4
        for (int ox = 0; ox < H; ox++)
            acc[ox] = (vf){0};
#pragma GCC unroll 7
        for (int ky = 0; ky < K; ky++) {
            const int iy = oy - pad + ky;
            if (iy < 0 || iy >= H)
                continue;
#pragma GCC unroll 7
            for (int kx = 0; kx < K; kx++)
#pragma GCC unroll 4
                for (int ox = 0; ox < H; ox++)
                    if (ox - pad + kx >= 0 && ox - pad + kx < H)
                        acc[ox] += x[iy * H + ox - pad + kx] * kb[ky * K + kx];
        }
        float *o = out + (size_t)oy * H * C + c0;
#pragma GCC unroll 4
        for (int ox = 0; ox < H; ox++) {
            const vf v = accumulate ? ld(o + (size_t)ox * C, nc) + acc[ox] : acc[ox];
            st(o + (size_t)ox * C, bias ? bias_act_v(v, bv, act) : v, nc);
        }
    }
}

/* One block of VL channels of N images on the small-image path. */
ALWAYS_INLINE void dws_block(float *out, const float *inp, const float *k, int N, int C, int c0,
                             int nc, int flip, int accumulate, const float *bias,
                             enum ofa_act act, const struct dw_in *pre, const int H,
                             const int K)
{
    const size_t sz = (size_t)H * H * C;
    vf kb[DK_MAXTAPS];
#pragma GCC unroll 49
    for (int t = 0; t < K * K; t++)
        kb[t] = ld(k + (size_t)(flip ? K * K - 1 - t : t) * C + c0, nc);
    const vf bv = bias ? ld(bias + c0, nc) : (vf){0};
    for (int n = 0; n < N; n++)
        dws_image(out + n * sz, inp + n * sz, kb, bv, C, c0, nc, accumulate, bias, act,
                  n + 1 < N, pre, H, K);
}

/* Images [n0, n0 + n) of channel block b on the small-image path. */
ALWAYS_INLINE void dws_task(float *out, const float *inp, const float *k, int n0, int n, int H,
                            int C, int K, int b, int flip, int accumulate, const float *bias,
                            enum ofa_act act, const struct ofa_bn_act *bn)
{
    const size_t at = (size_t)n0 * H * H * C;
    const int c0 = b * VL, nc = C - c0 < VL ? C - c0 : VL;
    const struct dw_in pre = dw_in_block(bn, c0, nc);
#define DWS_RUN(HH, KK)                                                                   \
    if (H == HH && K == KK) {                                                             \
        if (nc == VL)                                                                     \
            dws_block(out + at, inp + at, k, n, C, c0, VL, flip, accumulate, bias, act,   \
                      &pre, HH, KK);                                                      \
        else                                                                              \
            dws_block(out + at, inp + at, k, n, C, c0, nc, flip, accumulate, bias, act,   \
                      &pre, HH, KK);                                                      \
    }
#define DWS_CASE(HH) DWS_RUN(HH, 3) DWS_RUN(HH, 5) DWS_RUN(HH, 7)
    DWS_CASE(1) DWS_CASE(2) DWS_CASE(3) DWS_CASE(4)
#undef DWS_CASE
#undef DWS_RUN
}

/* Two copies of the tasks: without bn (inference, the input gradient) they
 * compile to the plain loads of before ofa_dwconv_forward_bn, which the
 * largest subnet's inference had lost 5-7% of its speed to. */
static __attribute__((noinline)) void dws_task_plain(float *out, const float *inp,
                                                     const float *k, int n0, int n, int H,
                                                     int C, int K, int b, int flip,
                                                     int accumulate, const float *bias,
                                                     enum ofa_act act)
{
    dws_task(out, inp, k, n0, n, H, C, K, b, flip, accumulate, bias, act, NULL);
}

static __attribute__((noinline)) void dws_task_bn(float *out, const float *inp, const float *k,
                                                  int n0, int n, int H, int C, int K, int b,
                                                  int flip, int accumulate, const float *bias,
                                                  enum ofa_act act,
                                                  const struct ofa_bn_act *bn)
{
    dws_task(out, inp, k, n0, n, H, C, K, b, flip, accumulate, bias, act, bn);
}

/* dwb_apply on the small-image path: a task takes a block of VL channels
 * and its images in turn, so that the block's taps are loaded once, not once
 * an image (49 cache lines against an image block's 16 in and 16 out with K
 * = 7 on 4x4). 16 images, one thread: the largest subnet's 4x4 7x7 layers 47
 * -> 27 us (384 channels) and 64 -> 39 (576), the medium's 3x3 5x5 11 -> 8
 * (256) and 17 -> 8-9 (384); in their batch-128 inference, the 7x7 layers
 * 14.9-17.0 -> 13.6-14.6 ms, the 5x5 3.35-3.69 -> 3.16-3.25. With fewer
 * than two blocks a thread, each block's images are split in groups. (The
 * tasks in one loop that inlined them both ways ran the 4x4 7x7 layers
 * 1.1-1.15x slower.) */
static void dws_apply(float *out, const float *inp, const float *k, int N, int H, int C, int K,
                      int flip, int accumulate, const float *bias, enum ofa_act act,
                      const struct ofa_bn_act *bn)
{
    const int nblk = (C + VL - 1) / VL;
    int T = 1;
#ifdef _OPENMP
    if (!omp_in_parallel())
        T = omp_get_max_threads();
#endif
    int groups = (2 * T + nblk - 1) / nblk;
    const int per = (N + groups - 1) / groups;
    groups = (N + per - 1) / per; /* none empty */
    #pragma omp parallel for schedule(static)
    for (int task = 0; task < nblk * groups; task++) {
        const int b = task / groups, n0 = task % groups * per, n = n0 + per < N ? per : N - n0;
        if (bn)
            dws_task_bn(out, inp, k, n0, n, H, C, K, b, flip, accumulate, bias, act, bn);
        else
            dws_task_plain(out, inp, k, n0, n, H, C, K, b, flip, accumulate, bias, act);
    }
}

/* The direct path: for the small kernels, each output summed straight from
 * the input tensor (no ring), one output at a time; taps outside the image
 * are skipped, the rest added in the ring path's order (ky, then kx), so the
 * same values. With K = 3 a run of outputs shares few loads, and the ring's
 * copying and bookkeeping cost more than they save: the smallest reference
 * subnet's 3x3 layers of 5x5 to 20x20 pixels (16 images, one thread)
 * 1.1-1.6x faster this way, a 24x24 5x5 layer of stride 2 1.3x (its batch-128
 * inference 5% more images/s, the medium subnet's 2-3%); with K = 5 at
 * stride 1 and K = 7 the ring path is faster (0.4-0.9x of it this way).
 * Read as it is (no BN on the way in). */
static int dwd_takes(int K, int s)
{
    return K == 3 || (K == 5 && s == 2);
}

/* A run of R outputs from ox0 of output row oy whose windows lie inside the
 * image's columns: each input vector of a kernel row loaded once and
 * multiplied by every tap of the row that reads it ((R - 1) S + K loads for
 * R K FMAs, R independent sums), as the ring path does; each output's taps
 * added in the same order as one at a time (ky, then kx). */
ALWAYS_INLINE void dwd_run_inside(float *o, const float *in, const vf *kb, int C, int nc,
                                  int accumulate, const float *bias, vf bv, enum ofa_act act,
                                  ptrdiff_t row0, int W, int ky0, int ky1, int ox0, const int K,
                                  const int S, const int R)
{
    const int pad = K / 2;
    vf acc[8];
#pragma GCC unroll 8
    for (int j = 0; j < R; j++)
        acc[j] = (vf){0};
#pragma GCC unroll 5
    for (int ky = 0; ky < K; ky++) {
        if (ky < ky0 || ky >= ky1)
            continue;
        const float *r = in + row0 + ((ptrdiff_t)ky * W + ox0 * S - pad) * C;
#pragma GCC unroll 24
        for (int i = 0; i < (R - 1) * S + K; i++) {
            const vf v = ld(r + (size_t)i * C, nc);
#pragma GCC unroll 5
            for (int kx = 0; kx < K; kx++)
                if (i - kx >= 0 && (i - kx) % S == 0 && (i - kx) / S < R)
                    acc[(i - kx) / S] += v * kb[ky * K + kx];
        }
    }
    st_run_bias_act(o + (size_t)ox0 * C, C, acc, R, nc, accumulate, bias, bv, act);
}

/* One image, one channel block: out (= or +=) [bias/act of] the sums, the
 * kernel's taps in registers (kb, flipped already when they are to be).
 * Interior outputs [xl, xr) have every column of the window inside the
 * image: runs of 8, then one of 4, 2 and 1 as the rest needs, share their
 * loads (dwd_run_inside; against one output at a time, 16 images, one thread:
 * 3x3 layers of 20x20 and 16 channels 1.37x faster, of 10x10 1.1x, a 24x24
 * 5x5 layer of stride 2 1.09x, but 5x5 of 120 channels 0.84x, unexplained);
 * the others go one at a time, testing each column. No prefetching of the
 * next image as the ring path's: at 16 images its divisions cost 10-25% of
 * these layers, and at 128 images it gained or lost as much by shape. */
ALWAYS_INLINE void dwd_image(float *out, const float *in, const vf *kb, int H, int W, int C,
                             int c0, int nc, int accumulate, const float *bias, vf bv,
                             enum ofa_act act, const int K, const int S)
{
    const int pad = K / 2, Ho = (H - 1) / S + 1, Wo = (W - 1) / S + 1;
    const int xl = (pad + S - 1) / S;
    int xr = (W - K + pad) / S + 1;
    xr = xr > Wo ? Wo : xr < xl ? xl : xr;
    for (int oy = 0; oy < Ho; oy++) {
        int ky0, ky1;
        tap_range(&ky0, &ky1, oy, S, pad, K, H);
        /* row ky of the window at row0 + ky W C (read only for ky in [ky0, ky1)) */
        const ptrdiff_t row0 = (ptrdiff_t)(oy * S - pad) * W * C + c0;
        float *o = out + (size_t)oy * Wo * C + c0;
        int ox = xl;
        for (; xr - ox >= 8; ox += 8)
            dwd_run_inside(o, in, kb, C, nc, accumulate, bias, bv, act, row0, W, ky0, ky1, ox,
                           K, S, 8);
        if (xr - ox >= 4)
            dwd_run_inside(o, in, kb, C, nc, accumulate, bias, bv, act, row0, W, ky0, ky1, ox,
                           K, S, 4), ox += 4;
        if (xr - ox >= 2)
            dwd_run_inside(o, in, kb, C, nc, accumulate, bias, bv, act, row0, W, ky0, ky1, ox,
                           K, S, 2), ox += 2;
        if (xr - ox >= 1)
            dwd_run_inside(o, in, kb, C, nc, accumulate, bias, bv, act, row0, W, ky0, ky1, ox,
                           K, S, 1);
        /* then [0, xl) and [xr, Wo) */
        for (int e = 0; e < 2; e++) {
            for (ox = e ? xr : 0; ox < (e ? Wo : xl); ox++) {
                vf acc = {0};
#pragma GCC unroll 5
                for (int ky = 0; ky < K; ky++) {
                    if (ky < ky0 || ky >= ky1)
                        continue;
                    /* offsets, not pointers: the window may start outside */
                    const ptrdiff_t at = row0 + ((ptrdiff_t)ky * W + ox * S - pad) * C;
#pragma GCC unroll 5
                    for (int kx = 0; kx < K; kx++)
                        if (ox * S - pad + kx >= 0 && ox * S - pad + kx < W)
                            acc += ld(in + at + (ptrdiff_t)kx * C, nc) * kb[ky * K + kx];
                }
                float *q = o + (size_t)ox * C;
                const vf v = accumulate ? ld(q, nc) + acc : acc;
                st(q, bias ? bias_act_v(v, bv, act) : v, nc);
            }
        }
    }
}

/* dwb_run's tasks on the direct path (dwd_takes(K, s); no bn). */
static void dwd_run(float *out, const float *inp, const float *k, int N, int H, int W, int C,
                    int K, int s, int flip, int accumulate, const float *bias, enum ofa_act act)
{
    OFA_ASSERT(dwd_takes(K, s) && K * K <= 25);
    const int Ho = (H - 1) / s + 1, Wo = (W - 1) / s + 1, nblk = (C + VL - 1) / VL;
    #pragma omp parallel for schedule(static)
    for (long task = 0; task < (long)N * nblk; task++) {
        const int n = (int)(task / nblk), c0 = (int)(task % nblk) * VL;
        const int nc = C - c0 < VL ? C - c0 : VL;
        vf kb[25];
        for (int t = 0; t < K * K; t++)
            kb[t] = ld(k + (size_t)(flip ? K * K - 1 - t : t) * C + c0, nc);
        const vf bv = bias ? ld(bias + c0, nc) : (vf){0};
        float *o = out + (size_t)n * Ho * Wo * C;
        const float *in = inp + (size_t)n * H * W * C;
#define DWD_RUN(KK, SS)                                                                   \
        if (K == KK && s == SS) {                                                         \
            if (nc == VL)                                                                 \
                dwd_image(o, in, kb, H, W, C, c0, VL, accumulate, bias, bv, act, KK, SS); \
            else                                                                          \
                dwd_image(o, in, kb, H, W, C, c0, nc, accumulate, bias, bv, act, KK, SS); \
        }
        DWD_RUN(3, 1) DWD_RUN(3, 2) DWD_RUN(5, 2)
#undef DWD_RUN
    }
}

/* dwb_apply's tasks on the image-block path. */
ALWAYS_INLINE void dwb_run(float *out, const float *inp, const float *k, int N, int H, int W,
                           int C, int K, int s, int flip, int accumulate, const float *bias,
                           enum ofa_act act, const struct ofa_bn_act *bn)
{
    const int Ho = (H - 1) / s + 1, Wo = (W - 1) / s + 1, nblk = (C + VL - 1) / VL;
    const int rb = dwb_run_length(Wo);
    #pragma omp parallel
    {
        vf ring[7 * DWB_RINGW];
        vf kb[DK_MAXTAPS];
        #pragma omp for schedule(static)
        for (long task = 0; task < (long)N * nblk; task++) {
            const int n = (int)(task / nblk), c0 = (int)(task % nblk) * VL;
            const int nc = C - c0 < VL ? C - c0 : VL;
            const struct dw_in pre = dw_in_block(bn, c0, nc);
            for (int t = 0; t < K * K; t++)
                kb[t] = ld(k + (size_t)(flip ? K * K - 1 - t : t) * C + c0, nc);
            const vf bv = bias ? ld(bias + c0, nc) : (vf){0};
            float *o = out + (size_t)n * Ho * Wo * C;
            const float *in = inp + (size_t)n * H * W * C;
            const int b = n + 1 < N ? (int)(task % nblk) : -1;
#define DWB_RUN(KK, SS, RB)                                                               \
            if (K == KK && s == SS && rb == RB) {                                         \
                if (nc == VL)                                                             \
                    dwb_image(o, in, kb, ring, H, W, C, KK, SS, RB, c0, VL, accumulate,   \
                              bias, bv, act, b, nblk, &pre);                              \
                else                                                                      \
                    dwb_image(o, in, kb, ring, H, W, C, KK, SS, RB, c0, nc, accumulate,   \
                              bias, bv, act, b, nblk, &pre);                              \
            }
#define DWB_CASE(KK, SS)                                                                  \
    DWB_RUN(KK, SS, 8) DWB_RUN(KK, SS, 7) DWB_RUN(KK, SS, 6) DWB_RUN(KK, SS, 4)
            DWB_CASE(3, 1) DWB_CASE(5, 1) DWB_CASE(7, 1) DWB_CASE(3, 2) DWB_CASE(5, 2)
            DWB_CASE(7, 2)
#undef DWB_CASE
#undef DWB_RUN
        }
    }
}

/* out (= or +=) the depthwise correlation of inp (through bn when not NULL)
 * with k (read flipped when `flip`): inp [N,H,W,C], k [K][K][C] -> out
 * [N,Ho,Wo,C]: small images by dws_apply, small kernels read as they are by
 * dwd_run, the rest by the image-block path. Returns 0 (and does nothing)
 * when W is too wide for that path and neither other one takes the layer. */
static int dwb_apply(float *out, const float *inp, const float *k, int N, int H, int W, int C,
                     int K, int s, int flip, int accumulate, const float *bias, enum ofa_act act,
                     const struct ofa_bn_act *bn)
{
    if (dws_takes(H, W, s))
        dws_apply(out, inp, k, N, H, C, K, flip, accumulate, bias, act, bn);
    else if (!bn && dwd_takes(K, s))
        dwd_run(out, inp, k, N, H, W, C, K, s, flip, accumulate, bias, act);
    else if (W > DWB_MAXW)
        return 0;
    else if (bn) /* two copies, as dws_apply's */
        dwb_run(out, inp, k, N, H, W, C, K, s, flip, accumulate, bias, act, bn);
    else
        dwb_run(out, inp, k, N, H, W, C, K, s, flip, accumulate, bias, act, NULL);
    return 1;
}

static void check_dw_args(int N, int H, int W, int C, int K, int stride)
{
    OFA_ASSERT(K == 3 || K == 5 || K == 7);
    OFA_ASSERT(stride == 1 || stride == 2);
    OFA_ASSERT(N > 0 && H > 0 && W > 0 && C > 0);
}

/* The forward of inp (through bn when not NULL), then (bias != NULL) out =
 * act(out + bias) as the outputs are stored (image-block path) or in a sweep
 * after (row path). */
static void dwconv_forward(float *out, const float *inp, const struct ofa_bn_act *bn,
                           const float *k, const float *bias, enum ofa_act act, int N, int H,
                           int W, int C, int K, int stride)
{
    check_dw_args(N, H, W, C, K, stride);
    if (dwb_apply(out, inp, k, N, H, W, C, K, stride, 0, 0, bias, act, bn))
        return;
    if (bn) {
        float *z = ofa_dw_in_materialise(inp, bn, (long)N * H * W, C);
        dwconv_forward(out, z, NULL, k, bias, act, N, H, W, C, K, stride);
        free(z);
        return;
    }
    const int Ho = (H - 1) / stride + 1, Wo = (W - 1) / stride + 1;
    #pragma omp parallel for schedule(static)
    for (long row = 0; row < (long)N * Ho; row++) {
        int n = (int)(row / Ho), oy = (int)(row % Ho);
        float *o = out + (size_t)row * Wo * C;
        dw_row_any(o, inp + (size_t)n * H * W * C, k, H, W, C, K, stride, oy, Wo, 0, 0);
        for (long i = 0; bias && i < (long)Wo * C; i++)
            o[i] = ofa_act_value(act, o[i] + bias[i % C]);
    }
}

void ofa_dwconv_forward(float *out, const float *inp, const float *k,
                        int N, int H, int W, int C, int K, int stride)
{
    dwconv_forward(out, inp, NULL, k, NULL, OFA_ACT_NONE, N, H, W, C, K, stride);
}

void ofa_dwconv_forward_bn(float *out, const float *inp, const struct ofa_bn_act *bn,
                           const float *k, int N, int H, int W, int C, int K, int stride)
{
    dwconv_forward(out, inp, bn, k, NULL, OFA_ACT_NONE, N, H, W, C, K, stride);
}

void ofa_dwconv_forward_bias_act(float *out, const float *inp, const float *k,
                                 const float *bias, enum ofa_act act, int N, int H, int W,
                                 int C, int K, int stride)
{
    OFA_ASSERT(bias);
    dwconv_forward(out, inp, NULL, k, bias, act, N, H, W, C, K, stride);
}

/* Stride-2 input gradient (the transposed convolution) for a run of nb <= RB
 * input pixels x = 2 * (m0 + j) + PX of one parity PX in input row y, VL
 * channels (nc valid): dinp[x] (+= or =) the sum over taps with y + pad - ky
 * = 2 * ty and x + pad - kx = 2 * tx of dout[ty][tx] * k[ky][kx]. Within a
 * parity class the taps are kx = kx0 + 2 q (q < nq), and tap q of pixel j
 * reads dout pixel tx = m0 + j + dmax - q: so, as in the forward's image-block
 * path, each dout vector of the row is loaded once and multiplied by every
 * tap that reads it (RB + nq - 1 loads for RB nq FMAs, against RB nq), the
 * kernel row's taps in registers. Columns outside the image are skipped. The
 * columns are visited from the right, so each pixel adds its taps in
 * increasing ky, then kx, as a per-pixel gather would. With `stream` (nc ==
 * VL, not accumulating) the sums are stored past the caches (st_stream). */
ALWAYS_INLINE void dwt2_run(float *drow, const float *g, const float *k, int Ho, int Wo,
                            int C, int K, int y, int m0, int nb, int c0, int nc,
                            int accumulate, int stream, const int PX, const int RB)
{
    const int pad = K / 2, kx0 = (PX + pad) & 1, nq = (K - kx0 + 1) / 2;
    const int dmax = (PX + pad - kx0) / 2;
    const int u0 = m0 + dmax - (nq - 1); /* dout column of u = 0 */
    vf acc[XB];
#pragma GCC unroll 8
    for (int j = 0; j < RB; j++)
        acc[j] = (vf){0};
    for (int ky = (y + pad) & 1; ky < K && ky <= y + pad; ky += 2) {
        const int ty = (y + pad - ky) / 2;
        if (ty >= Ho)
            continue;
        const float *grow = g + (size_t)ty * Wo * C + c0;
        vf kv[4];
#pragma GCC unroll 4
        for (int q = 0; q < nq; q++)
            kv[q] = ld(k + ((size_t)ky * K + kx0 + 2 * q) * C + c0, nc);
#pragma GCC unroll 16
        for (int u = RB + nq - 2; u >= 0; u--) {
            if (u0 + u < 0 || u0 + u >= Wo)
                continue;
            const vf v = ld(grow + (ptrdiff_t)(u0 + u) * C, nc);
#pragma GCC unroll 4
            for (int q = 0; q < nq; q++)
                if (u - (nq - 1) + q >= 0 && u - (nq - 1) + q < RB)
                    acc[u - (nq - 1) + q] += v * kv[q];
        }
    }
#pragma GCC unroll 8
    for (int j = 0; j < RB; j++)
        if (j < nb) {
            float *o = drow + (size_t)(2 * (m0 + j) + PX) * C + c0;
            if (stream)
                st_stream(o, acc[j]);
            else
                st(o, accumulate ? ld(o, nc) + acc[j] : acc[j], nc);
        }
}

/* One input row y of the stride-2 input gradient, all channels, runs of RB
 * pixels of a parity: each pixel is written once (+= or =; streamed when
 * `stream`, which needs C % VL == 0). */
ALWAYS_INLINE void dwt2_row(float *drow, const float *g, const float *k, int W, int Ho, int Wo,
                            int C, int K, int y, int accumulate, int stream, const int RB)
{
    for (int px = 0; px < 2 && px < W; px++) {
        const int nx = (W - px + 1) / 2; /* pixels of parity px */
        for (int c0 = 0; c0 < C; c0 += VL)
            for (int m0 = 0; m0 < nx; m0 += RB) {
                const int nb = nx - m0 < RB ? nx - m0 : RB, nc = C - c0 < VL ? C - c0 : VL;
#define DWT2_RUN(P, NC, S)                                                                \
                dwt2_run(drow, g, k, Ho, Wo, C, K, y, m0, nb, c0, NC, accumulate, S, P, RB)
                if (px == 0 && nc == VL)
                    DWT2_RUN(0, VL, stream);
                else if (px == 0)
                    DWT2_RUN(0, nc, 0);
                else if (nc == VL)
                    DWT2_RUN(1, VL, stream);
                else
                    DWT2_RUN(1, nc, 0);
#undef DWT2_RUN
            }
    }
}

/* dout [N,Ho,Wo,C] -> dinp [N,H,W,C] (+= when accumulate, else =). Stride 1:
 * the same correlation with the flipped kernel (padding K/2 is symmetric).
 * Stride 2: the transposed convolution per input row (dwt2_row), so that no
 * two threads write the same element; each row prefetches the dout row the
 * next row reaches and, when it adds to dinp, the next row of dinp (largest
 * subnet's 28x28 96-channel layer, batch 128: 9.6 -> 8.4 ms one thread, 4.7
 * -> 4.2 two). When it overwrites dinp (the blocks' stride-2 layers), it
 * stores past the caches instead: dinp, four times the size of dout, was
 * read into the cache line by line only to be overwritten, and prefetching
 * it for writing did not hide that (the same layer, input gradient alone,
 * huge pages: 7.4 -> 3.2 ms one thread, 3.9 -> 1.6 two; the step's
 * depthwise backward 53-56 -> 50-53 ms one thread, 36-38 -> 28-32 two). */
static void dwconv_backward_input(float *dinp, const float *dout, const float *k, int N, int H,
                                  int W, int C, int K, int stride, int accumulate)
{
    if (stride == 1 &&
        dwb_apply(dinp, dout, k, N, H, W, C, K, 1, 1, accumulate, NULL, OFA_ACT_NONE, NULL))
        return;
    const int Ho = (H - 1) / stride + 1, Wo = (W - 1) / stride + 1;
    const int rb = run_length((W + 1) / 2); /* stride 2: runs of the pixels of a parity */
    const int stream = stride == 2 && !accumulate && can_stream(dinp, C);
    #pragma omp parallel
    {
    #pragma omp for schedule(static) nowait
    for (long row = 0; row < (long)N * H; row++) {
        const int n = (int)(row / H), y = (int)(row % H);
        float *drow = dinp + (size_t)row * W * C;
        const float *g = dout + (size_t)n * Ho * Wo * C;
        if (stride == 1)
            dw_row_any(drow, g, k, Ho, Wo, C, K, 1, y, W, 1, accumulate);
        else {
            if (row + 1 < (long)N * H) { /* the next row's tensors into L2 */
                const int n1 = (int)((row + 1) / H), y1 = (int)((row + 1) % H);
                const int ty = (y1 + K / 2) / 2 < Ho ? (y1 + K / 2) / 2 : Ho - 1;
                if (!stream)
                    prefetch_slice(drow + (size_t)W * C, (size_t)W * C, 0, 1, 1);
                prefetch_slice(dout + ((size_t)n1 * Ho + ty) * Wo * C, (size_t)Wo * C, 0, 1,
                               0);
            }
#define DWT2_CASE(KK, RB)                                                                 \
            if (K == KK && rb == RB)                                                      \
                dwt2_row(drow, g, k, W, Ho, Wo, C, KK, y, accumulate, stream, RB);
            DWT2_CASE(3, 8) DWT2_CASE(3, 7) DWT2_CASE(3, 4) DWT2_CASE(5, 8) DWT2_CASE(5, 7)
            DWT2_CASE(5, 4) DWT2_CASE(7, 8) DWT2_CASE(7, 7) DWT2_CASE(7, 4)
#undef DWT2_CASE
        }
    }
    if (stream)
        st_stream_fence(); /* before the barrier: the other threads read dinp next */
    }
}

void ofa_dwconv_backward(float *dinp, int accumulate, float *dk, const float *dout,
                         const float *inp, const float *k, int N, int H, int W, int C, int K,
                         int stride)
{
    ofa_dwconv_backward_bn(dinp, accumulate, dk, dout, inp, NULL, k, N, H, W, C, K, stride);
}

void ofa_dwconv_backward_bn(float *dinp, int accumulate, float *dk, const float *dout,
                            const float *inp, const struct ofa_bn_act *bn, const float *k,
                            int N, int H, int W, int C, int K, int stride)
{
    check_dw_args(N, H, W, C, K, stride);
    if (dinp)
        dwconv_backward_input(dinp, dout, k, N, H, W, C, K, stride, accumulate);
    ofa_dwconv_kernel_grad(dk, dout, inp, bn, N, H, W, C, K, stride);
}
