#include <config.h>
/* ops_dwconv_grad.c: the depthwise convolution's kernel gradient (its
 * forward and input gradient: ops_dwconv.c), on the same three paths: rows,
 * image blocks through a ring of input rows, small images held whole.
 */

#include "ops_dw.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

enum { DK_FLOAT_TERMS = 256 };

/* The kernel gradient's tasks need another slice of image n + 1: its
 * threads own channel blocks (each thread takes the same blocks of every
 * image), so task (n, b) prefetches block b (channels c0 .. c0 + nc) of
 * pixels part * npix / nparts .. (part + 1) * npix / nparts of the npix-pixel
 * tensor p, one or two lines a pixel: the lines this thread reads next. A
 * contiguous slice (prefetch_slice, ops_dwconv.c) put half of them in the
 * other core's L2: at two threads the 7x7 kernel gradient took longer than at
 * one (1.9 against 1.7 ms, 240 channels, caches cold). */
ALWAYS_INLINE void prefetch_block(const float *p, size_t npix, int C, int c0, int nc, int part,
                                  int nparts)
{
    const size_t lo = npix * part / nparts, hi = npix * (part + 1) / nparts;
    for (size_t i = lo; i < hi; i++) {
        const char *first = (const char *)(p + i * C + c0);
        const char *last = (const char *)(p + i * C + c0 + nc - 1);
        __builtin_prefetch(first, 0, 2);
        if ((uintptr_t)first / 64 != (uintptr_t)last / 64)
            __builtin_prefetch(last, 0, 2);
    }
}

/* Row sums of one kernel row: a[kx] += sum_ox g[ox] * row[ox*s - pad + kx]. */
ALWAYS_INLINE void dk_row(vf *a, const float *g, const float *row, int W, int C, int K, int s,
                          int Wo, int nc)
{
    const int pad = K / 2;
    /* Interior outputs (every tap inside the row) need no checks. */
    int lo = (pad + s - 1) / s, hi = (W - K + pad) / s + 1;
    if (hi > Wo)
        hi = Wo;
    if (lo > hi)
        lo = hi;
    for (int ox = 0; ox < Wo; ox++) {
        const vf gv = ld(g + (size_t)ox * C, nc);
        const int base = ox * s - pad;
        if (ox >= lo && ox < hi) {
#pragma GCC unroll 7
            for (int kx = 0; kx < K; kx++)
                a[kx] += gv * ld(row + (size_t)(base + kx) * C, nc);
        } else {
#pragma GCC unroll 7
            for (int kx = 0; kx < K; kx++)
                if (base + kx >= 0 && base + kx < W)
                    a[kx] += gv * ld(row + (size_t)(base + kx) * C, nc);
        }
    }
}

/* One channel block of the kernel gradient of one image (see below):
 * dout [Ho,Wo,C], inp [H,W,C]; sum [K*K] += the image's sums. */
ALWAYS_INLINE void dk_block(vf *sum, const float *dout, const float *inp, int H, int W, int C,
                            int K, int s, int c0, int nc)
{
    const int pad = K / 2, Ho = (H - 1) / s + 1, Wo = (W - 1) / s + 1;
    for (int oy = 0; oy < Ho; oy++) {
        int ky0, ky1;
        tap_range(&ky0, &ky1, oy, s, pad, K, H);
        const float *g = dout + ((size_t)oy * Wo) * C + c0;
        for (int ky = ky0; ky < ky1; ky++) {
            const float *row = inp + ((size_t)(oy * s - pad + ky) * W) * C + c0;
            vf a[7];
#pragma GCC unroll 7
            for (int kx = 0; kx < 7; kx++)
                a[kx] = (vf){0};
            dk_row(a, g, row, W, C, K, s, Wo, nc);
#pragma GCC unroll 7
            for (int kx = 0; kx < K; kx++)
                sum[ky * K + kx] += a[kx];
        }
    }
}

/* dk_block on the image-block path (W <= DWB_MAXW): the input rows come
 * from the ring, and for a run of RB outputs the RB output gradients stay in
 * registers while each input vector is loaded once for the K taps that read
 * it; input columns outside the image are skipped (ring_cols). The same sums
 * in the same order as dk_block (the skipped taps would add zeros). */
ALWAYS_INLINE void dkb_block(vf *sum, vf *ring, const float *dout, const float *inp, int H,
                             int W, int C, int K, int s, int RB, int c0, int nc, int pf,
                             const struct dw_in *pre)
{
    const int pad = K / 2, Ho = (H - 1) / s + 1, Wo = (W - 1) / s + 1;
    const float *in = inp + c0;
    for (int oy = 0; oy < Ho; oy++) {
        if (pf) {
            prefetch_block(inp + (size_t)H * W * C, (size_t)H * W, C, c0, nc, oy, Ho);
            prefetch_block(dout + (size_t)Ho * Wo * C, (size_t)Ho * Wo, C, c0, nc, oy, Ho);
        }
        ring_window(ring, in, oy, H, W, C, K, s, nc, pre);
        int ky0, ky1;
        tap_range(&ky0, &ky1, oy, s, pad, K, H);
        const float *g = dout + ((size_t)oy * Wo) * C + c0;
        for (int ky = ky0; ky < ky1; ky++) {
            const vf *row = ring_row(ring, oy * s - pad + ky, pad, K);
            vf a[7];
#pragma GCC unroll 7
            for (int kx = 0; kx < 7; kx++)
                a[kx] = (vf){0};
            for (int o0 = 0; o0 < Wo; o0 += RB) {
                const int nb = Wo - o0 < RB ? Wo - o0 : RB;
                int i0, i1;
                ring_cols(&i0, &i1, o0, s, pad, W);
                vf gv[XB];
#pragma GCC unroll 8
                for (int j = 0; j < RB; j++)
                    gv[j] = j < nb ? ld(g + (size_t)(o0 + j) * C, nc) : (vf){0};
                const vf *r = row + (size_t)o0 * s;
#pragma GCC unroll 32
                for (int i = 0; i < (RB - 1) * s + K; i++) {
                    if (i < i0 || i >= i1)
                        continue;
                    const vf v = r[i];
#pragma GCC unroll 7
                    for (int kx = 0; kx < K; kx++)
                        if (i - kx >= 0 && (i - kx) % s == 0 && (i - kx) / s < RB)
                            a[kx] += gv[(i - kx) / s] * v;
                }
            }
#pragma GCC unroll 7
            for (int kx = 0; kx < K; kx++)
                sum[ky * K + kx] += a[kx];
        }
    }
}

/* dkb_block on the small-image path (dws_image): for each tap, the sum over
 * ox (in order) of each output row's products, added to sum[tap] row by row
 * (rows in order), as dkb_block adds them. */
ALWAYS_INLINE void dks_block(vf *sum, const float *dout, const float *inp, int C, int c0,
                             int nc, int pf, const struct dw_in *pre, const int H, const int K)
{
    const int pad = K / 2;
    const size_t n = (size_t)H * H * C;
    if (pf) {
        prefetch_block(inp + n, (size_t)H * H, C, c0, nc, 0, 1);
        prefetch_block(dout + n, (size_t)H * H, C, c0, nc, 0, 1);
    }
    vf x[DWS_MAXH * DWS_MAXH], g[DWS_MAXH * DWS_MAXH];
    ld_in_n(x, inp + c0, H * H, C, nc, pre);
#pragma GCC unroll 16
    for (int i = 0; i < H * H; i++)
        g[i] = ld(dout + (size_t)i * C + c0, nc);
#pragma GCC unroll 7
    for (int ky = 0; ky < K; ky++)
#pragma GCC unroll 7
        for (int kx = 0; kx < K; kx++) {
            vf t = sum[ky * K + kx];
#pragma GCC unroll 4
            for (int oy = 0; oy < H; oy++) {
                const int iy = oy - pad + ky;
                if (iy < 0 || iy >= H)
                    continue;
                vf a = (vf){0};
#pragma GCC unroll 4
                for (int ox = 0; ox < H; ox++)
                    if (ox - pad + kx >= 0 && ox - pad + kx < H)
                        a += g[oy * H + ox] * x[iy * H + ox - pad + kx];
                t += a;
            }
            sum[ky * K + kx] = t;
        }
}

/* dks_block for the run-time H (<= DWS_MAXH) and K. */
static void dks_task(vf *sum, const float *dout, const float *inp, int H, int C, int K, int c0,
                     int nc, int pf, const struct dw_in *pre)
{
#define DKS_RUN(HH, KK)                                                                   \
    if (H == HH && K == KK) {                                                             \
        if (nc == VL)                                                                     \
            dks_block(sum, dout, inp, C, c0, VL, pf, pre, HH, KK);                        \
        else                                                                              \
            dks_block(sum, dout, inp, C, c0, nc, pf, pre, HH, KK);                        \
        return;                                                                           \
    }
#define DKS_CASE(HH) DKS_RUN(HH, 3) DKS_RUN(HH, 5) DKS_RUN(HH, 7)
    DKS_CASE(1) DKS_CASE(2) DKS_CASE(3) DKS_CASE(4)
#undef DKS_CASE
#undef DKS_RUN
    OFA_ASSERT(!"unsupported small depthwise image or kernel size");
}

/* a[0 .. VL) += v, in double (two vectors of VL / 2 doubles). */
ALWAYS_INLINE void add_to_double(double *a, vf v)
{
    typedef float vfh __attribute__((vector_size(VL / 2 * sizeof(float))));
    typedef double vdh __attribute__((vector_size(VL / 2 * sizeof(double))));
    vfh h[2];
    vdh d[2];
    memcpy(h, &v, sizeof h);
    memcpy(d, a, sizeof d);
    d[0] += __builtin_convertvector(h[0], vdh);
    d[1] += __builtin_convertvector(h[1], vdh);
    memcpy(a, d, sizeof d);
}

/* dout [N,Ho,Wo,C], inp [N,H,W,C] -> dk [K][K][C] (+=). Parallel over blocks
 * of VL channels, each owning its dk columns. For every output row and
 * kernel row, the K taps accumulate in registers along the row; the sums of
 * a group of consecutive images are kept in float (at most DK_FLOAT_TERMS
 * terms, or one image's Ho*Wo), across groups in double, in a fixed order:
 * the result does not depend on the thread count. A group of one image made
 * the float-to-double adds (49 taps, two conversions each) cost as much as
 * the products of a 4x4 image: with groups, the largest subnet's kernel
 * gradients at batch 128, one thread, 4x4 576 channels 1.64 -> 0.60 ms, 4x4
 * 384 1.11 -> 0.40, 7x7 240 1.59 -> 1.26. The
 * images are the outer loop and each thread takes the same blocks of every
 * image, so an image's tensors are read while they are in the cache (a loop
 * of blocks outside the images would sweep the whole batch per block, half
 * a cache line at a time; so would groups of small images per block, as
 * measured). */
void ofa_dwconv_kernel_grad(float *dk, const float *dout, const float *inp,
                            const struct ofa_bn_act *bn, int N, int H, int W, int C, int K,
                            int stride)
{
    if (bn && W > DWB_MAXW) { /* the row path (dk_block) reads inp as it is */
        float *z = ofa_dw_in_materialise(inp, bn, (long)N * H * W, C);
        ofa_dwconv_kernel_grad(dk, dout, z, NULL, N, H, W, C, K, stride);
        free(z);
        return;
    }
    const int taps = K * K, nblk = (C + VL - 1) / VL;
    const int Ho = (H - 1) / stride + 1, Wo = (W - 1) / stride + 1, rb = run_length(Wo);
    const int small = dws_takes(H, W, stride);
    const int group = Ho * Wo < DK_FLOAT_TERMS ? DK_FLOAT_TERMS / (Ho * Wo) : 1;
    double *acc = ofa_xcalloc((size_t)nblk * DK_MAXTAPS * VL, sizeof *acc,
                              "depthwise kernel gradient sums");
    /* float sums of the current group, per block */
    vf *fsum = ofa_xzalloc64(ofa_mul_size((size_t)nblk * DK_MAXTAPS, sizeof(vf)),
                             "depthwise kernel gradient group sums");
    #pragma omp parallel
    {
    vf ring[7 * DWB_RINGW];
    for (int n = 0; n < N; n++) {
        const float *g = dout + (size_t)n * Ho * Wo * C, *in = inp + (size_t)n * H * W * C;
        /* static, same trip count: a thread gets the same blocks for every n */
        #pragma omp for schedule(static) nowait
        for (int b = 0; b < nblk; b++) {
            const int c0 = b * VL, nc = C - c0 < VL ? C - c0 : VL;
            const int pf = n + 1 < N; /* prefetch image n + 1's block */
            vf *sum = fsum + (size_t)b * DK_MAXTAPS;
            const struct dw_in pre = dw_in_block(bn, c0, nc);
#define DKB_RUN(KK, SS, RB)                                                               \
            if (rb == RB) {                                                               \
                if (nc == VL)                                                             \
                    dkb_block(sum, ring, g, in, H, W, C, KK, SS, RB, c0, VL, pf, &pre);   \
                else                                                                      \
                    dkb_block(sum, ring, g, in, H, W, C, KK, SS, RB, c0, nc, pf, &pre);   \
            }
#define DK_CASE(KK, SS)                                                                   \
            if (K == KK && stride == SS) {                                                \
                if (W <= DWB_MAXW) {                                                      \
                    DKB_RUN(KK, SS, 8) DKB_RUN(KK, SS, 7) DKB_RUN(KK, SS, 4)              \
                } else if (nc == VL)                                                      \
                    dk_block(sum, g, in, H, W, C, KK, SS, c0, VL);                        \
                else                                                                      \
                    dk_block(sum, g, in, H, W, C, KK, SS, c0, nc);                        \
            }
            if (small)
                dks_task(sum, g, in, H, C, K, c0, nc, pf, &pre);
            else {
                DK_CASE(3, 1) DK_CASE(5, 1) DK_CASE(7, 1) DK_CASE(3, 2) DK_CASE(5, 2)
                DK_CASE(7, 2)
            }
#undef DK_CASE
#undef DKB_RUN
            if ((n + 1) % group != 0 && n + 1 < N)
                continue;
            double *a = acc + (size_t)b * DK_MAXTAPS * VL;
            if (nc == VL)
                for (int t = 0; t < taps; t++)
                    add_to_double(a + (size_t)t * VL, sum[t]);
            else
                for (int t = 0; t < taps; t++)
                    for (int c = 0; c < nc; c++)
                        a[t * VL + c] += sum[t][c];
            for (int t = 0; t < taps; t++)
                sum[t] = (vf){0};
        }
    }
    #pragma omp for schedule(static)
    for (int b = 0; b < nblk; b++) {
        const int c0 = b * VL, nc = C - c0 < VL ? C - c0 : VL;
        const double *a = acc + (size_t)b * DK_MAXTAPS * VL;
        for (int t = 0; t < taps; t++)
            for (int c = 0; c < nc; c++)
                dk[(size_t)t * C + c0 + c] += (float)a[t * VL + c];
    }
    }
    free(fsum);
    free(acc);
}
