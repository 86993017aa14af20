#include <config.h>
/* ops_dwconv.c: the elastic depthwise kernel (centre window of the stored 7x7
 * kernel, optionally through OFA's 7->5 and 5->3 transformation matrices) and
 * the NHWC depthwise convolution (padding K/2, stride 1 or 2). Inner loops run
 * over contiguous channels; every parallel loop owns its outputs, so results
 * are deterministic and in fact independent of the thread count.
 */

#include "ops.h"
#include "blas.h"
#include "util.h"

#include <string.h>

/* Channel blocks of the kernel-gradient loop: at most DK_MAXCB channels, so
 * that the per-block accumulators live on the stack. */
enum { DK_MAXCB = 64, DK_MAXTAPS = 49 };

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

/* Taps [*k0, *k1) of a window at output coordinate o whose input coordinate
 * o*stride - pad + k stays inside [0, n). */
static void tap_range(int *k0, int *k1, int o, int stride, int pad, int K, int n)
{
    int base = o * stride - pad;
    *k0 = base < 0 ? -base : 0;
    *k1 = n - base < K ? n - base : K;
}

/* inp [N,H,W,C], k [K][K][C] -> out [N,Ho,Wo,C], Ho = (H-1)/stride + 1. */
void ofa_dwconv_forward(float *out, const float *inp, const float *k,
                        int N, int H, int W, int C, int K, int stride)
{
    OFA_ASSERT(K == 3 || K == 5 || K == 7);
    OFA_ASSERT(stride == 1 || stride == 2);
    OFA_ASSERT(N > 0 && H > 0 && W > 0 && C > 0);
    const int pad = K / 2, Ho = (H - 1) / stride + 1, Wo = (W - 1) / stride + 1;
    #pragma omp parallel for schedule(static)
    for (long row = 0; row < (long)N * Ho; row++) {
        int n = (int)(row / Ho), oy = (int)(row % Ho);
        int ky0, ky1;
        tap_range(&ky0, &ky1, oy, stride, pad, K, H);
        for (int ox = 0; ox < Wo; ox++) {
            float *restrict o = out + ((size_t)row * Wo + ox) * C;
            int kx0, kx1;
            tap_range(&kx0, &kx1, ox, stride, pad, K, W);
            memset(o, 0, (size_t)C * sizeof *o);
            for (int ky = ky0; ky < ky1; ky++) {
                int iy = oy * stride - pad + ky;
                for (int kx = kx0; kx < kx1; kx++) {
                    int ix = ox * stride - pad + kx;
                    const float *restrict ip = inp + (((size_t)n * H + iy) * W + ix) * C;
                    const float *restrict kp = k + ((size_t)ky * K + kx) * C;
                    #pragma omp simd
                    for (int c = 0; c < C; c++)
                        o[c] += ip[c] * kp[c];
                }
            }
        }
    }
}

/* dout [N,Ho,Wo,C] -> dinp [N,H,W,C] (+=): a gather per input row, so that no
 * two threads write the same element. */
static void dwconv_backward_input(float *dinp, const float *dout, const float *k,
                                  int N, int H, int W, int C, int K, int stride)
{
    const int pad = K / 2, Ho = (H - 1) / stride + 1, Wo = (W - 1) / stride + 1;
    #pragma omp parallel for schedule(static)
    for (long row = 0; row < (long)N * H; row++) {
        int n = (int)(row / H), y = (int)(row % H);
        for (int x = 0; x < W; x++) {
            float *restrict d = dinp + ((size_t)row * W + x) * C;
            for (int ky = 0; ky < K; ky++) {
                int ty = y + pad - ky;
                if (ty < 0 || ty % stride || ty / stride >= Ho)
                    continue;
                int oy = ty / stride;
                for (int kx = 0; kx < K; kx++) {
                    int tx = x + pad - kx;
                    if (tx < 0 || tx % stride || tx / stride >= Wo)
                        continue;
                    int ox = tx / stride;
                    const float *restrict g = dout + (((size_t)n * Ho + oy) * Wo + ox) * C;
                    const float *restrict kp = k + ((size_t)ky * K + kx) * C;
                    #pragma omp simd
                    for (int c = 0; c < C; c++)
                        d[c] += g[c] * kp[c];
                }
            }
        }
    }
}

/* dout [N,Ho,Wo,C], inp [N,H,W,C] -> dk [K][K][C] (+=). Parallel over blocks
 * of channels, each owning its dk columns: per output row the products are
 * summed in float, rows are then summed in double, in a fixed order, so the
 * result does not depend on the block size or the thread count. */
static void dwconv_backward_kernel(float *dk, const float *dout, const float *inp,
                                   int N, int H, int W, int C, int K, int stride)
{
    const int pad = K / 2, Ho = (H - 1) / stride + 1, Wo = (W - 1) / stride + 1;
    const int taps = K * K;
    /* About four blocks per thread, 8 to DK_MAXCB channels each. */
    int cb = (C + 4 * ofa_threads_get() - 1) / (4 * ofa_threads_get());
    cb = (cb + 7) / 8 * 8;
    cb = cb < 8 ? 8 : cb > DK_MAXCB ? DK_MAXCB : cb;
    const int nblk = (C + cb - 1) / cb;
    #pragma omp parallel for schedule(static)
    for (int b = 0; b < nblk; b++) {
        float rowacc[DK_MAXTAPS * DK_MAXCB];
        double acc[DK_MAXTAPS * DK_MAXCB];
        const int c0 = b * cb, nc = C - c0 < cb ? C - c0 : cb;
        memset(acc, 0, sizeof acc);
        for (long row = 0; row < (long)N * Ho; row++) {
            int n = (int)(row / Ho), oy = (int)(row % Ho);
            int ky0, ky1;
            tap_range(&ky0, &ky1, oy, stride, pad, K, H);
            memset(rowacc, 0, (size_t)taps * nc * sizeof *rowacc);
            for (int ox = 0; ox < Wo; ox++) {
                const float *restrict g = dout + ((size_t)row * Wo + ox) * C + c0;
                int kx0, kx1;
                tap_range(&kx0, &kx1, ox, stride, pad, K, W);
                for (int ky = ky0; ky < ky1; ky++) {
                    int iy = oy * stride - pad + ky;
                    for (int kx = kx0; kx < kx1; kx++) {
                        int ix = ox * stride - pad + kx;
                        const float *restrict ip =
                            inp + (((size_t)n * H + iy) * W + ix) * C + c0;
                        float *restrict a = rowacc + (ky * K + kx) * nc;
                        #pragma omp simd
                        for (int c = 0; c < nc; c++)
                            a[c] += g[c] * ip[c];
                    }
                }
            }
            for (int t = 0; t < taps * nc; t++)
                acc[t] += rowacc[t];
        }
        for (int t = 0; t < taps; t++)
            for (int c = 0; c < nc; c++)
                dk[(size_t)t * C + c0 + c] += (float)acc[t * nc + c];
    }
}

/* dout [N,Ho,Wo,C], inp [N,H,W,C], k [K][K][C] -> dinp [N,H,W,C] (+=, optional),
 * dk [K][K][C] (+=). */
void ofa_dwconv_backward(float *dinp, float *dk, const float *dout, const float *inp,
                         const float *k, int N, int H, int W, int C, int K, int stride)
{
    OFA_ASSERT(K == 3 || K == 5 || K == 7);
    OFA_ASSERT(stride == 1 || stride == 2);
    OFA_ASSERT(N > 0 && H > 0 && W > 0 && C > 0);
    if (dinp)
        dwconv_backward_input(dinp, dout, k, N, H, W, C, K, stride);
    dwconv_backward_kernel(dk, dout, inp, N, H, W, C, K, stride);
}
