#include <config.h>
/* ops_conv.c: dense KxK convolution (im2col + GEMM, col2im for the input
 * gradient), pointwise convolution and the linear layer, all as GEMMs over
 * NHWC rows. Elastic width slices the stored [Cout][ldw] weights in place.
 * BLAS is only called outside OpenMP regions; the im2col/col2im loops are
 * parallel over output/input rows and thread-count independent.
 */

#include "ops.h"
#include "util.h"

#include <limits.h>
#include <string.h>

size_t ofa_conv2d_col_size(int N, int H, int W, int Cin, int K, int stride, int pad)
{
    int Ho = ofa_conv_out_size(H, K, stride, pad);
    int Wo = ofa_conv_out_size(W, K, stride, pad);
    OFA_ASSERT(N > 0 && Ho > 0 && Wo > 0 && Cin > 0 && K > 0);
    size_t rows = ofa_mul_size(ofa_mul_size((size_t)N, (size_t)Ho), (size_t)Wo);
    return ofa_mul_size(rows, ofa_mul_size((size_t)K * (size_t)K, (size_t)Cin));
}

/* inp [N,H,W,Cin] -> col [N*Ho*Wo][K][K][Cin], zeros where the window leaves
 * the padded image. */
static void im2col(float *col, const float *inp, int N, int H, int W, int Cin, int K,
                   int stride, int pad, int Ho, int Wo)
{
    const size_t kkc = (size_t)K * K * Cin;
    #pragma omp parallel for schedule(static)
    for (long row = 0; row < (long)N * Ho; row++) {
        int n = (int)(row / Ho), oy = (int)(row % Ho);
        for (int ox = 0; ox < Wo; ox++) {
            float *dst = col + ((size_t)row * Wo + ox) * kkc;
            for (int ky = 0; ky < K; ky++) {
                int y = oy * stride - pad + ky;
                for (int kx = 0; kx < K; kx++) {
                    int x = ox * stride - pad + kx;
                    float *d = dst + ((size_t)ky * K + kx) * Cin;
                    if (y < 0 || y >= H || x < 0 || x >= W)
                        memset(d, 0, (size_t)Cin * sizeof *d);
                    else
                        memcpy(d, inp + (((size_t)n * H + y) * W + x) * Cin,
                               (size_t)Cin * sizeof *d);
                }
            }
        }
    }
}

/* dcol [N*Ho*Wo][K][K][Cin] -> dinp [N,H,W,Cin] (+=). A gather per input row:
 * each input pixel sums its taps in a fixed order, so no two threads write the
 * same element and the result does not depend on the thread count. */
static void col2im_add(float *dinp, const float *dcol, int N, int H, int W, int Cin,
                       int K, int stride, int pad, int Ho, int Wo)
{
    const size_t kkc = (size_t)K * K * Cin;
    #pragma omp parallel for schedule(static)
    for (long row = 0; row < (long)N * H; row++) {
        int n = (int)(row / H), y = (int)(row % H);
        for (int x = 0; x < W; x++) {
            float *d = dinp + ((size_t)row * W + x) * Cin;
            for (int ky = 0; ky < K; ky++) {
                int ty = y + pad - ky;
                if (ty < 0 || ty % stride)
                    continue;
                int oy = ty / stride;
                if (oy >= Ho)
                    continue;
                for (int kx = 0; kx < K; kx++) {
                    int tx = x + pad - kx;
                    if (tx < 0 || tx % stride)
                        continue;
                    int ox = tx / stride;
                    if (ox >= Wo)
                        continue;
                    const float *s = dcol + (((size_t)n * Ho + oy) * Wo + ox) * kkc
                                     + ((size_t)ky * K + kx) * Cin;
                    for (int c = 0; c < Cin; c++)
                        d[c] += s[c];
                }
            }
        }
    }
}

/* inp [N,H,W,Cin], w [Cout][K*K*Cin] -> out [N,Ho,Wo,Cout], col [N*Ho*Wo][K*K*Cin]. */
void ofa_conv2d_forward(float *out, float *col, const float *inp, const float *w,
                        int N, int H, int W, int Cin, int Cout, int K, int stride, int pad)
{
    OFA_ASSERT(stride >= 1 && pad >= 0 && Cout > 0);
    int Ho = ofa_conv_out_size(H, K, stride, pad);
    int Wo = ofa_conv_out_size(W, K, stride, pad);
    (void)ofa_conv2d_col_size(N, H, W, Cin, K, stride, pad); /* validates the shape */
    long M = (long)N * Ho * Wo;
    int kkc = K * K * Cin;
    OFA_ASSERT(M <= INT_MAX);
    im2col(col, inp, N, H, W, Cin, K, stride, pad, Ho, Wo);
    ofa_gemm(0, 1, (int)M, Cout, kkc, 1.0f, col, kkc, w, kkc, 0.0f, out, Cout);
}

/* dout [N,Ho,Wo,Cout], col [N*Ho*Wo][K*K*Cin] -> dw [Cout][K*K*Cin] (+=),
 * dinp [N,H,W,Cin] (+=, optional) through dcol [N*Ho*Wo][K*K*Cin]. */
void ofa_conv2d_backward(float *dinp, float *dw, float *dcol, const float *dout,
                         const float *col, const float *w,
                         int N, int H, int W, int Cin, int Cout, int K, int stride, int pad)
{
    OFA_ASSERT(stride >= 1 && pad >= 0 && Cout > 0);
    int Ho = ofa_conv_out_size(H, K, stride, pad);
    int Wo = ofa_conv_out_size(W, K, stride, pad);
    (void)ofa_conv2d_col_size(N, H, W, Cin, K, stride, pad); /* validates the shape */
    long M = (long)N * Ho * Wo;
    int kkc = K * K * Cin;
    OFA_ASSERT(M <= INT_MAX);
    ofa_gemm(1, 0, Cout, kkc, (int)M, 1.0f, dout, Cout, col, kkc, 1.0f, dw, kkc);
    if (!dinp)
        return;
    OFA_ASSERT(dcol != NULL);
    ofa_gemm(0, 0, (int)M, kkc, Cout, 1.0f, dout, Cout, w, kkc, 0.0f, dcol, kkc);
    col2im_add(dinp, dcol, N, H, W, Cin, K, stride, pad, Ho, Wo);
}

/* inp [M,Cin], w [Cout][ldw] (first Cin columns) -> out [M,Cout]. */
void ofa_pwconv_forward(float *out, const float *inp, const float *w, int ldw,
                        long M, int Cin, int Cout)
{
    OFA_ASSERT(M >= 0 && M <= INT_MAX && Cin > 0 && Cin <= ldw && Cout > 0);
    ofa_gemm(0, 1, (int)M, Cout, Cin, 1.0f, inp, Cin, w, ldw, 0.0f, out, Cout);
}

/* dout [M,Cout], inp [M,Cin] -> dinp [M,Cin] (+= when accumulate, else
 * overwritten; optional), dw [Cout][ldw] (+=). */
void ofa_pwconv_backward(float *dinp, int accumulate, float *dw, const float *dout,
                         const float *inp, const float *w, int ldw, long M, int Cin, int Cout)
{
    OFA_ASSERT(M >= 0 && M <= INT_MAX && Cin > 0 && Cin <= ldw && Cout > 0);
    if (dinp)
        ofa_gemm(0, 0, (int)M, Cin, Cout, 1.0f, dout, Cout, w, ldw, accumulate ? 1.0f : 0.0f,
                 dinp, Cin);
    ofa_gemm(1, 0, Cout, Cin, (int)M, 1.0f, dout, Cout, inp, Cin, 1.0f, dw, ldw);
}

/* inp [N,Cin], w [Cout][ldw], b [Cout] -> out [N,Cout]. */
void ofa_linear_forward(float *out, const float *inp, const float *w, int ldw,
                        const float *b, int N, int Cin, int Cout)
{
    OFA_ASSERT(N >= 0 && Cin > 0 && Cin <= ldw && Cout > 0);
    for (int n = 0; n < N; n++)
        memcpy(out + (size_t)n * Cout, b, (size_t)Cout * sizeof *out);
    ofa_gemm(0, 1, N, Cout, Cin, 1.0f, inp, Cin, w, ldw, 1.0f, out, Cout);
}

/* dout [N,Cout], inp [N,Cin] -> dinp [N,Cin] (+=, optional), dw [Cout][ldw] (+=),
 * db [Cout] (+=). */
void ofa_linear_backward(float *dinp, float *dw, float *db, const float *dout,
                         const float *inp, const float *w, int ldw,
                         int N, int Cin, int Cout)
{
    OFA_ASSERT(N >= 0 && Cin > 0 && Cin <= ldw && Cout > 0);
    if (dinp)
        ofa_gemm(0, 0, N, Cin, Cout, 1.0f, dout, Cout, w, ldw, 1.0f, dinp, Cin);
    ofa_gemm(1, 0, Cout, Cin, N, 1.0f, dout, Cout, inp, Cin, 1.0f, dw, ldw);
    /* The classifier's bias gradient is tiny (N*Cout adds): serial, in row order. */
    for (int n = 0; n < N; n++) {
        const float *g = dout + (size_t)n * Cout;
        for (int o = 0; o < Cout; o++)
            db[o] += g[o];
    }
}
