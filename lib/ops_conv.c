#include <config.h>
/* ops_conv.c: dense KxK convolution (im2col + GEMM, col2im for the input
 * gradient; inference sums a stem's few terms straight from its input),
 * pointwise convolution and the linear layer, all as GEMMs over NHWC rows:
 * BLAS for the dense convolution, the linear layer and the supernet's
 * evaluation-mode 1x1 forward (ofa_pwconv_forward), the file's own kernels
 * for the 1x1 convolutions of inference (ofa_model), of training's forward
 * (with the batch statistics) and of their backward. Elastic width slices
 * the stored [Cout][ldw] weights in place.
 * BLAS is only called outside OpenMP regions; the im2col/col2im loops are
 * parallel over output/input rows and thread-count independent.
 */

#include "ops.h"
#include "ops_vec.h"
#include "util.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

size_t ofa_conv2d_col_size(int N, int H, int W, int Cin, int K, int stride, int pad)
{
    int Ho = ofa_conv_out_size(H, K, stride, pad);
    int Wo = ofa_conv_out_size(W, K, stride, pad);
    OFA_ASSERT(N > 0 && Ho > 0 && Wo > 0 && Cin > 0 && K > 0);
    size_t rows = ofa_mul_size(ofa_mul_size((size_t)N, (size_t)Ho), (size_t)Wo);
    return ofa_mul_size(rows, ofa_mul_size((size_t)K * (size_t)K, (size_t)Cin));
}

/* inp [N,H,W,Cin] -> col [N*Ho*Wo][K][K][Cin], zeros where the window leaves
 * the padded image. A kernel row's K*Cin floats are one run of the input row
 * where the window is inside it, copied by a plain loop: a memcpy call per
 * tap of a 1-channel stem (4 bytes) took 4x as long (128 28x28 images). */
static void im2col(float *col, const float *inp, int N, int H, int W, int Cin, int K,
                   int stride, int pad, int Ho, int Wo)
{
    const int kc = K * Cin;
    const size_t kkc = (size_t)K * kc;
    #pragma omp parallel for schedule(static)
    for (long row = 0; row < (long)N * Ho; row++) {
        int n = (int)(row / Ho), oy = (int)(row % Ho);
        for (int ox = 0; ox < Wo; ox++) {
            float *dst = col + ((size_t)row * Wo + ox) * kkc;
            const int x0 = ox * stride - pad;
            for (int ky = 0; ky < K; ky++) {
                const int y = oy * stride - pad + ky;
                float *d = dst + (size_t)ky * kc;
                if (y < 0 || y >= H) {
                    for (int i = 0; i < kc; i++)
                        d[i] = 0.0f;
                    continue;
                }
                const float *r = inp + ((size_t)n * H + y) * W * Cin; /* input row y */
                if (x0 >= 0 && x0 + K <= W) {
                    const float *s = r + (size_t)x0 * Cin;
                    for (int i = 0; i < kc; i++)
                        d[i] = s[i];
                    continue;
                }
                for (int kx = 0; kx < K; kx++) {
                    const int x = x0 + kx;
                    for (int c = 0; c < Cin; c++)
                        d[kx * Cin + c] = x >= 0 && x < W ? r[(size_t)x * Cin + c] : 0.0f;
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

/* A convolution's shape checked: its output size *Ho x *Wo and the
 * N*Ho*Wo rows of its im2col matrix (at most INT_MAX, for BLAS). */
static int conv_rows(int N, int H, int W, int Cin, int Cout, int K, int stride, int pad,
                     int *Ho, int *Wo)
{
    OFA_ASSERT(stride >= 1 && pad >= 0 && Cout > 0);
    *Ho = ofa_conv_out_size(H, K, stride, pad);
    *Wo = ofa_conv_out_size(W, K, stride, pad);
    (void)ofa_conv2d_col_size(N, H, W, Cin, K, stride, pad); /* validates the shape */
    const long M = (long)N * *Ho * *Wo;
    OFA_ASSERT(M <= INT_MAX);
    return (int)M;
}

/* inp [N,H,W,Cin], w [Cout][K*K*Cin] -> out [N,Ho,Wo,Cout], col [N*Ho*Wo][K*K*Cin]. */
void ofa_conv2d_forward(float *out, float *col, const float *inp, const float *w,
                        int N, int H, int W, int Cin, int Cout, int K, int stride, int pad)
{
    int Ho, Wo;
    const int M = conv_rows(N, H, W, Cin, Cout, K, stride, pad, &Ho, &Wo), kkc = K * K * Cin;
    im2col(col, inp, N, H, W, Cin, K, stride, pad, Ho, Wo);
    ofa_gemm(0, 1, M, Cout, kkc, 1.0f, col, kkc, w, kkc, 0.0f, out, Cout);
}

/* dout [N,Ho,Wo,Cout], col [N*Ho*Wo][K*K*Cin] -> dw [Cout][K*K*Cin] (+=),
 * dinp [N,H,W,Cin] (+=, optional) through dcol [N*Ho*Wo][K*K*Cin]. */
void ofa_conv2d_backward(float *dinp, float *dw, float *dcol, const float *dout,
                         const float *col, const float *w,
                         int N, int H, int W, int Cin, int Cout, int K, int stride, int pad)
{
    int Ho, Wo;
    const int M = conv_rows(N, H, W, Cin, Cout, K, stride, pad, &Ho, &Wo), kkc = K * K * Cin;
    ofa_gemm(1, 0, Cout, kkc, M, 1.0f, dout, Cout, col, kkc, 1.0f, dw, kkc);
    if (!dinp)
        return;
    OFA_ASSERT(dcol != NULL);
    ofa_gemm(0, 0, M, kkc, Cout, 1.0f, dout, Cout, w, kkc, 0.0f, dcol, kkc);
    col2im_add(dinp, dcol, N, H, W, Cin, K, stride, pad, Ho, Wo);
}

/* inp [M,Cin], w [Cout][ldw] (first Cin columns) -> out [M,Cout]. */
void ofa_pwconv_forward(float *out, const float *inp, const float *w, int ldw,
                        long M, int Cin, int Cout)
{
    OFA_ASSERT(M >= 0 && M <= INT_MAX && Cin > 0 && Cin <= ldw && Cout > 0);
    ofa_gemm(0, 1, (int)M, Cout, Cin, 1.0f, inp, Cin, w, ldw, 0.0f, out, Cout);
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

/* ---- Pointwise convolution on packed weights ------------------------------ */

/* A block of PW_MR rows x 2 panels (2 VL outputs) of sums in registers: per
 * input channel, two weight loads and PW_MR broadcasts feed 2 PW_MR FMAs.
 * 24 (AVX-512, of 32 registers) or 12 (AVX, of 16) accumulators. Rows of
 * input are read in chunks of about PW_CHUNK floats, each chunk's rows
 * against every panel, so the chunk stays in cache while the panels stream.
 * Inference (ofa_pwconv_forward_packed) shares a chunk's panels out among
 * the threads, for a single image's few rows; training's larger batches
 * (ofa_pwconv_forward_stats) take a block of rows against every panel in
 * turn, so that whole output rows are written at once, and store outputs of
 * at least PW_STREAM_BYTES past the caches. */
enum {
    PW_MR = VL == 16 ? 12 : 6,
    PW_CHUNK = 12288,
    PW_PAR_MACS = 1 << 18,
    PW_STREAM_BYTES = 8 << 20
};

int ofa_pw_panel(void)
{
    return VL;
}

size_t ofa_pw_packed_size(int Cin, int Cout)
{
    OFA_ASSERT(Cin > 0 && Cout > 0);
    return ofa_mul_size(ofa_mul_size((size_t)(Cout + VL - 1) / VL, (size_t)Cin), VL);
}

/* Weights of output o and input k at w[o so + k sk] -> wp as ofa_pw_pack
 * lays them out. */
static void pw_pack_strided(float *wp, const float *w, size_t so, size_t sk, int Cin, int Cout)
{
    const int np = (Cout + VL - 1) / VL;
    for (int p = 0; p < np; p++)
        for (int k = 0; k < Cin; k++)
            for (int l = 0; l < VL; l++) {
                const int o = p * VL + l;
                wp[((size_t)p * Cin + k) * VL + l] = o < Cout ? w[o * so + k * sk] : 0.0f;
            }
}

void ofa_pw_pack(float *wp, const float *w, int ldw, int Cin, int Cout)
{
    OFA_ASSERT(Cin > 0 && Cin <= ldw && Cout > 0);
    pw_pack_strided(wp, w, (size_t)ldw, 1, Cin, Cout);
}

/* Column statistics of a block's sums (ofa_pwconv_forward_stats): the
 * shift per output and the double sums of (out - shift) and its square of
 * the block's chunk, [Cout rounded up to whole panel pairs] each. */
struct pw_stats {
    const float *shift;
    double *s, *q;
};

typedef double vd __attribute__((vector_size(VL * sizeof(double))));
typedef double vdu __attribute__((vector_size(VL * sizeof(double)), aligned(sizeof(double))));

/* out rows [0, mr) x outputs [c0, c0 + nv VL) (the last vector nc_last
 * wide) = act(in w^T + b) (b NULL: neither bias nor act); wp at panel c0 /
 * VL. With pf, the mr Cin floats at pf are prefetched along the way (the
 * next block's rows, when the rows are read once). With cs, the block's
 * column sums of out - shift and of its square are added to cs's, in float
 * over the block's rows (in row order), then in double. With nt (whole
 * vectors into out aligned to them), out is stored past the caches. With
 * res (laid out as out), res is added to what is stored. */
ALWAYS_INLINE void pw_block(float *out, int Cout, const float *in, int Cin, const float *wp,
                            const float *b, enum ofa_act act, int c0, int mr, int nv,
                            int nc_last, const float *pf, const struct pw_stats *cs, int nt,
                            const float *res)
{
    vf acc[PW_MR][2];
#pragma GCC unroll 16
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++)
            acc[r][v] = (vf){0};
    const float *w1 = wp + (size_t)Cin * VL;
    for (int k = 0; k < Cin; k++) {
        if (pf)
            __builtin_prefetch(pf + (size_t)k * mr);
        const vf a0 = *(const vfu *)(wp + (size_t)k * VL);
        const vf a1 = nv > 1 ? *(const vfu *)(w1 + (size_t)k * VL) : (vf){0};
#pragma GCC unroll 16
        for (int r = 0; r < mr; r++) {
            const float x = in[(size_t)r * Cin + k];
            acc[r][0] += x * a0;
            if (nv > 1)
                acc[r][1] += x * a1;
        }
    }
#pragma GCC unroll 2
    for (int v = 0; v < nv; v++) {
        const int nc = v == nv - 1 ? nc_last : VL, c = c0 + v * VL;
        const vf bv = b ? ld(b + c, nc) : (vf){0};
        /* lanes past Cout: zero weights, zero shift, zero sums */
        const vf sh = cs ? *(const vfu *)(cs->shift + c) : (vf){0};
        vf s = {0}, q = {0};
#pragma GCC unroll 16
        for (int r = 0; r < mr; r++) {
            vf y = b ? bias_act_v(acc[r][v], bv, act) : acc[r][v];
            if (res)
                y += ld(res + (size_t)r * Cout + c, nc);
            if (nt)
                st_stream(out + (size_t)r * Cout + c, y);
            else
                st(out + (size_t)r * Cout + c, y, nc);
            if (cs) {
                const vf d = y - sh;
                s += d;
                q += d * d;
            }
        }
        if (cs) {
            *(vdu *)(cs->s + c) += __builtin_convertvector(s, vd);
            *(vdu *)(cs->q + c) += __builtin_convertvector(q, vd);
        }
    }
}

/* One chunk's rows [r0, r1) against panel pairs [pp0, pp1) (panels [2 pp0,
 * 2 pp1)), a block of rows against each pair in turn, with the chunk's
 * statistics in cs (or none). */
ALWAYS_INLINE void pw_unit(float *out, const float *inp, const float *wp, const float *b,
                           enum ofa_act act, long r0, long r1, int pp0, int pp1, int Cin,
                           int Cout, const struct pw_stats *cs, int nt, const float *res)
{
    const int np = (Cout + VL - 1) / VL;
    /* The rows are read once when the unit takes every output: prefetch the
     * chunk's next block then (25088 x 144 -> 24, one thread: 3.7 -> 2.3 ms). */
    const int once = pp1 - pp0 == (np + 1) / 2;
    /* Constant mr and nv in every call, so that the sums stay in registers;
     * a row tail goes in blocks of 4, 2 and 1. */
#define PW_ROWS(R)                                                                        \
    do {                                                                                  \
        const float *in = inp + (size_t)r * Cin;                                          \
        for (int pp = pp0; pp < pp1; pp++) {                                              \
            const int p = 2 * pp, nv = np - p >= 2 ? 2 : 1, c0 = p * VL;                  \
            const int nc_last = (p + nv) * VL <= Cout ? VL : Cout - (p + nv - 1) * VL;    \
            const float *w = wp + (size_t)p * Cin * VL;                                   \
            const int pre = once && pp == pp0 && r + 2 * (R) <= r1;                       \
            const float *pf = pre ? in + (size_t)(R) * Cin : NULL;                        \
            if (nv == 2)                                                                  \
                pw_block(out + (size_t)r * Cout, Cout, in, Cin, w, b, act, c0, R, 2,      \
                         nc_last, pf, cs, nt, res ? res + (size_t)r * Cout : NULL);       \
            else                                                                          \
                pw_block(out + (size_t)r * Cout, Cout, in, Cin, w, b, act, c0, R, 1,      \
                         nc_last, pf, cs, nt, res ? res + (size_t)r * Cout : NULL);       \
        }                                                                                 \
        r += R;                                                                           \
    } while (0)
    long r = r0;
    while (r1 - r >= PW_MR)
        PW_ROWS(PW_MR);
    while (r1 - r >= 4)
        PW_ROWS(4);
    if (r1 - r >= 2)
        PW_ROWS(2);
    if (r1 - r >= 1)
        PW_ROWS(1);
#undef PW_ROWS
}

static void pw_unit_plain(float *out, const float *inp, const float *wp, const float *b,
                          enum ofa_act act, long r0, long r1, int pp0, int pp1, int Cin,
                          int Cout)
{
    pw_unit(out, inp, wp, b, act, r0, r1, pp0, pp1, Cin, Cout, NULL, 0, NULL);
}

/* pw_unit_plain with res added to its outputs: a copy of its own, so that
 * the plain one has no test of res at its stores. */
static void pw_unit_res(float *out, const float *inp, const float *wp, const float *b,
                        enum ofa_act act, long r0, long r1, int pp0, int pp1, int Cin, int Cout,
                        const float *res)
{
    OFA_ASSERT(res);
    pw_unit(out, inp, wp, b, act, r0, r1, pp0, pp1, Cin, Cout, NULL, 0, res);
}

static void pw_unit_stats(float *out, const float *inp, const float *wp, long r0, long r1,
                          int pp0, int pp1, int Cin, int Cout, const struct pw_stats *cs,
                          int nt)
{
    pw_unit(out, inp, wp, NULL, OFA_ACT_NONE, r0, r1, pp0, pp1, Cin, Cout, cs, nt, NULL);
    if (nt)
        st_stream_fence();
}

/* The row chunks of the packed kernel for [M,Cin]: about PW_CHUNK floats of
 * input each, in whole blocks of PW_MR rows, as even as those allow (784
 * rows of 16 channels in 768 + 16 gave one thread nearly all the work). */
static long pw_chunk_rows(long M, int Cin, long *nchunks)
{
    long chunk = PW_CHUNK / Cin / PW_MR * PW_MR;
    if (chunk < PW_MR)
        chunk = PW_MR;
    long n = (M + chunk - 1) / chunk;
    chunk = ((M + n - 1) / n + PW_MR - 1) / PW_MR * PW_MR;
    *nchunks = (M + chunk - 1) / chunk;
    return chunk;
}

void ofa_pwconv_forward_packed_res(float *out, const float *inp, const float *wp,
                                   const float *b, enum ofa_act act, const float *res, long M,
                                   int Cin, int Cout)
{
    OFA_ASSERT(M >= 0 && Cin > 0 && Cout > 0);
    if (M == 0)
        return;
    const int npp = ((Cout + VL - 1) / VL + 1) / 2;
    long nchunks;
    const long chunk = pw_chunk_rows(M, Cin, &nchunks), units = nchunks * npp;
#ifdef _OPENMP
    const int par = !omp_in_parallel() && (double)M * Cin * Cout >= PW_PAR_MACS;
#endif
#pragma omp parallel for schedule(static) if (par)
    for (long u = 0; u < units; u++) {
        const long r0 = u / npp * chunk, r1 = r0 + chunk < M ? r0 + chunk : M;
        const int pp = (int)(u % npp);
        if (res)
            pw_unit_res(out, inp, wp, b, act, r0, r1, pp, pp + 1, Cin, Cout, res);
        else
            pw_unit_plain(out, inp, wp, b, act, r0, r1, pp, pp + 1, Cin, Cout);
    }
}

void ofa_pwconv_forward_packed(float *out, const float *inp, const float *wp,
                               const float *b, enum ofa_act act, long M, int Cin, int Cout)
{
    ofa_pwconv_forward_packed_res(out, inp, wp, b, act, NULL, M, Cin, Cout);
}

/* ---- Pointwise convolution backward ------------------------------------- */

/* dw rows [o0, o0 + mr) x columns [c0, c0 + nv VL) += (= without add) the
 * sums over rows r < rows, in row order, of dout[r][o] inp[r][c]: pw_block's
 * shape with the sum running over rows instead of channels, a row's nv
 * vectors of inp and mr broadcasts of dout feeding nv mr FMAs (mr nv <=
 * PW_WG_ACC). With partial (nv 1), the one vector is nc < VL wide. */
enum { PW_WG_ACC = 2 * PW_MR };
ALWAYS_INLINE void pw_wgrad_block(float *dw, int ldw, int add, const float *dout, int Cout,
                                  const float *inp, int Cin, int rows, int o0, int mr, int c0,
                                  int nv, int partial, int nc)
{
    if (!partial)
        nc = VL;
    else if (nc >= VL)
        __builtin_unreachable();
    vf acc[PW_WG_ACC];
#pragma GCC unroll 24
    for (int i = 0; i < mr * nv; i++)
        acc[i] = (vf){0};
    for (int r = 0; r < rows; r++) {
        const float *x = inp + (size_t)r * Cin + c0, *d = dout + (size_t)r * Cout + o0;
        const vf a0 = ld(x, nc);
        const vf a1 = nv > 1 ? *(const vfu *)(x + VL) : (vf){0};
#pragma GCC unroll 24
        for (int i = 0; i < mr; i++) {
            acc[i * nv] += d[i] * a0;
            if (nv > 1)
                acc[i * nv + 1] += d[i] * a1;
        }
    }
#pragma GCC unroll 24
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++) {
            float *g = dw + (size_t)(o0 + i) * ldw + c0 + v * VL;
            st(g, add ? acc[i * nv + v] + ld(g, nc) : acc[i * nv + v], nc);
        }
}

/* dw [Cout][ldw] += (= without add) dout^T inp over rows [0, rows): the
 * whole vectors of columns in pairs (a last one alone), then the partial
 * one, each against blocks of rows of dw (PW_MR for pairs, 2 PW_MR for
 * single vectors, a tail in blocks of 4, 2 and 1), mr, nv and partial
 * constant in every call. */
static void pw_wgrad(float *dw, int ldw, int add, const float *dout, const float *inp, int rows,
                     int Cin, int Cout)
{
    const int nfull = Cin / VL, rem = Cin % VL;
#define PW_WGRAD(R, NV, PARTIAL)                                                          \
    for (; Cout - o >= (R); o += (R))                                                     \
        pw_wgrad_block(dw, ldw, add, dout, Cout, inp, Cin, rows, o, R, c0, NV, PARTIAL, rem)
    for (int v0 = 0; v0 < nfull; v0 += 2) {
        const int c0 = v0 * VL;
        int o = 0;
        if (nfull - v0 >= 2) {
            PW_WGRAD(PW_MR, 2, 0);
            PW_WGRAD(4, 2, 0);
            PW_WGRAD(2, 2, 0);
            PW_WGRAD(1, 2, 0);
        } else {
            PW_WGRAD(2 * PW_MR, 1, 0);
            PW_WGRAD(PW_MR, 1, 0);
            PW_WGRAD(4, 1, 0);
            PW_WGRAD(2, 1, 0);
            PW_WGRAD(1, 1, 0);
        }
    }
    if (rem) {
        const int c0 = nfull * VL;
        int o = 0;
        PW_WGRAD(2 * PW_MR, 1, 1);
        PW_WGRAD(PW_MR, 1, 1);
        PW_WGRAD(4, 1, 1);
        PW_WGRAD(2, 1, 1);
        PW_WGRAD(1, 1, 1);
    }
#undef PW_WGRAD
}

/* ofa_pwconv_backward's row blocks: about this many floats of a block's
 * dout and inp rows together (128 KB), at least PW_BWD_MIN_BLOCK rows, so
 * that the weight gradient finds in L2 the dout rows the input gradient
 * has just read. */
enum { PW_BWD_BLOCK_FLOATS = 32768, PW_BWD_MIN_BLOCK = 96 };

/* dout [M,Cout], inp [M,Cin] -> dinp [M,Cin] (+= when accumulate, else
 * overwritten; optional), dw [Cout][ldw] (+=); with bg (ofa_pwconv_backward_bn)
 * dout is instead the BN input gradient that bg computes from dz and y.
 *
 * In blocks of rows, each block's input gradient (the packed kernel on w^T,
 * packed once a call) and weight gradient (pw_wgrad) back to back, since two
 * whole GEMMs read dout from DRAM twice. These were OpenBLAS GEMMs a block
 * until its kernels turned out to be a choice of the environment: with
 * OPENBLAS_CORETYPE=Haswell on an AVX-512 CPU (AMD Zen 5) its AVX2 kernels
 * made the whole training step 1.2x slower than these; with its AVX-512 ones
 * the step is about as fast (0.97x to 1.01x with these). The threads take
 * contiguous slices of the rows, thread 0's weight gradient into dw, the
 * others' into partials that dw then adds in thread order: a function of the
 * thread count. Each thread reads only rows that the same thread wrote in the
 * step's other passes, which matters when the cores' caches are far apart
 * (ofa_threads_round_trip_ns). The blocks do not depend on dinp, so dw is
 * the same with and without it. With bg, a block's dout rows are computed
 * into scratch just before (each thread into its own rows of scratch), so
 * the BN input gradient is never written to memory whole. */
static void pw_backward(float *dinp, int accumulate, float *dw, const float *dout,
                        const struct ofa_bn_grad *bg, float *scratch, const float *dz,
                        const float *y, const float *inp, const float *w, int ldw, long M,
                        int Cin, int Cout)
{
    OFA_ASSERT(M >= 0 && M <= INT_MAX && Cin > 0 && Cin <= ldw && Cout > 0);
    OFA_ASSERT(!bg || bg->C == Cout);
    if (M == 0)
        return;
    long B = PW_BWD_BLOCK_FLOATS / (Cin + Cout) / 16 * 16;
    if (B < PW_BWD_MIN_BLOCK)
        B = PW_BWD_MIN_BLOCK;
    int T = 1;
#ifdef _OPENMP
    if (!omp_in_parallel())
        T = omp_get_max_threads();
#endif
    if (T > M / B)
        T = M / B > 1 ? (int)(M / B) : 1;
    const int npp = ((Cin + VL - 1) / VL + 1) / 2;
    float *wt = NULL;
    if (dinp) {
        wt = ofa_xzalloc64(ofa_mul_size(ofa_pw_packed_size(Cout, Cin), sizeof *wt),
                           "transposed pointwise weights");
        pw_pack_strided(wt, w, 1, (size_t)ldw, Cout, Cin); /* w^T [Cin][Cout] */
    }
    float *part = T > 1 ? ofa_xmalloc((size_t)(T - 1) * Cout * Cin * sizeof *part,
                                      "pointwise weight gradient partial sums")
                        : NULL;
#pragma omp parallel num_threads(T) if (T > 1)
    {
        int t = 0, nt = 1;
#ifdef _OPENMP
        t = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        const long m0 = M * t / nt, m1 = M * (t + 1) / nt;
        float *dwt = t ? part + (size_t)(t - 1) * Cout * Cin : dw;
        const int lddw = t ? Cin : ldw;
        int add = !t;
        for (long r = m0; r < m1; r += B) {
            const int rows = (int)(m1 - r < B ? m1 - r : B);
            const float *drows = dout + (size_t)r * Cout;
            if (bg) {
                float *d = scratch + (size_t)m0 * Cout; /* rows <= m1 - m0 */
                ofa_bn_grad_rows(bg, d, Cout, 0, dz + (size_t)r * Cout, y + (size_t)r * Cout,
                                 rows);
                drows = d;
            }
            if (dinp) {
                float *di = dinp + (size_t)r * Cin;
                if (accumulate) /* each output read, then written, by one step */
                    pw_unit_res(di, drows, wt, NULL, OFA_ACT_NONE, 0, rows, 0, npp, Cout, Cin,
                                di);
                else
                    pw_unit_plain(di, drows, wt, NULL, OFA_ACT_NONE, 0, rows, 0, npp, Cout, Cin);
            }
            pw_wgrad(dwt, lddw, add, drows, inp + (size_t)r * Cin, rows, Cin, Cout);
            add = 1;
        }
#pragma omp barrier
        ofa_gemm_add_partials(dw, ldw, part, Cout, Cin, nt);
    }
    free(part);
    free(wt);
}

void ofa_pwconv_backward(float *dinp, int accumulate, float *dw, const float *dout,
                         const float *inp, const float *w, int ldw, long M, int Cin, int Cout)
{
    pw_backward(dinp, accumulate, dw, dout, NULL, NULL, NULL, NULL, inp, w, ldw, M, Cin, Cout);
}

void ofa_pwconv_backward_bn(float *dinp, int accumulate, float *dw, float *scratch,
                            const struct ofa_bn_grad *bg, const float *dz, const float *y,
                            const float *inp, const float *w, int ldw, long M, int Cin,
                            int Cout)
{
    OFA_ASSERT(bg && scratch && dz && y);
    pw_backward(dinp, accumulate, dw, NULL, bg, scratch, dz, y, inp, w, ldw, M, Cin, Cout);
}

/* Reductions of at most this many terms (a grey stem's 9, an RGB one's 27)
 * go without im2col: as a GEMM of so few columns the 3x3 grey stem of the
 * smallest reference subnet ran at 15 GFLOP/s (8% of its batch-128
 * inference), its im2col and its output both swept for 9 sums an output. */
enum { CONV_DIRECT_MAX = 32, CONV_DIRECT_XB = 8 };

int ofa_conv2d_direct(int Cin, int K)
{
    return (long)K * K * Cin <= CONV_DIRECT_MAX;
}

/* Outputs ox0 .. ox0 + nb - 1 (nb <= CONV_DIRECT_XB) of output row oy of image
 * in, for one panel of outputs (w and out at it, nc valid): pw_block's sums
 * (from zero, over the K K Cin terms in order, then b and act unless b is
 * NULL) of the window's taps inside the image, where im2col's are zeros
 * that change no sum; inside: nb = CONV_DIRECT_XB pixels whose windows lie
 * within the row. Called with s and inside constant (the bounds' divisions
 * and tests took a third of a grey stem's time), and K and Cin too for the
 * stems (conv_direct). */
ALWAYS_INLINE void conv_direct_run(float *out, const float *in, const float *w, const float *b,
                                   vf bv, enum ofa_act act, int H, int W, int Cin, int Cout, int K,
                                   int s, int pad, int oy, int ox0, int nb, int nc, int inside)
{
    vf acc[CONV_DIRECT_XB];
#pragma GCC unroll 8
    for (int j = 0; j < CONV_DIRECT_XB; j++)
        acc[j] = (vf){0};
#pragma GCC unroll 7
    for (int ky = 0; ky < K; ky++) {
        const int y = oy * s - pad + ky;
        if (y < 0 || y >= H)
            continue;
        const float *r = in + (size_t)y * W * Cin;
#pragma GCC unroll 7
        for (int kx = 0; kx < K; kx++) {
            int j0 = 0, j1 = nb;
            if (!inside) {
                const int a = pad - kx - ox0 * s, e = W - 1 + a; /* j s in [a, e] */
                j0 = a > 0 ? (a + s - 1) / s : 0, j1 = e < 0 ? 0 : e / s + 1;
            }
            const float *x = r + ((ptrdiff_t)ox0 * s - pad + kx) * Cin;
#pragma GCC unroll 4
            for (int c = 0; c < Cin; c++) {
                const vf wv = *(const vfu *)(w + ((size_t)(ky * K + kx) * Cin + c) * VL);
#pragma GCC unroll 8
                for (int j = 0; j < CONV_DIRECT_XB; j++)
                    if (inside || (j >= j0 && j < j1 && j < nb))
                        acc[j] += x[(size_t)j * s * Cin + c] * wv;
            }
        }
    }
    if (inside) { /* the activation chosen once a run */
        st_run_bias_act(out + (size_t)ox0 * Cout, Cout, acc, CONV_DIRECT_XB, nc, 0, b, bv, act);
        return;
    }
#pragma GCC unroll 8
    for (int j = 0; j < CONV_DIRECT_XB; j++)
        if (j < nb)
            st(out + (size_t)(ox0 + j) * Cout, b ? bias_act_v(acc[j], bv, act) : acc[j], nc);
}

/* One output row of one image, every panel. The outputs whose windows lie
 * within the row's columns, [xl, xr), go in runs of CONV_DIRECT_XB with no
 * tests, the last run moved left to end at xr (its first outputs computed
 * twice, the same floats); the others, and rows with fewer such outputs, in
 * runs that test each column. Grey 3x3 stems of 20x20 to 28x28 pixels (16
 * images, hswish, one thread) 1.2-1.4x faster than when every run that was
 * not whole and inside the row tested its columns (2 of 3 at 24x24), with K
 * and Cin constants and the activation chosen once a run. */
ALWAYS_INLINE void conv_direct_row(float *o, const float *in, const float *wp, const float *b,
                                   enum ofa_act act, int H, int W, int Cin, int Cout, int K,
                                   int s, int pad, int oy, int Wo)
{
    const int np = (Cout + VL - 1) / VL, kkc = K * K * Cin;
    int xl = (pad + s - 1) / s, xr = W - K + pad < 0 ? 0 : (W - K + pad) / s + 1;
    xr = xr > Wo ? Wo : xr;
    if (xr - xl < CONV_DIRECT_XB)
        xl = xr = Wo;
    for (int p = 0; p < np; p++, o += VL) {
        const int nc = Cout - p * VL < VL ? Cout - p * VL : VL;
        const vf bv = b ? ld(b + p * VL, nc) : (vf){0};
        const float *w = wp + (size_t)p * kkc * VL;
        for (int ox0 = xl; ox0 < xr; ox0 += CONV_DIRECT_XB) {
            const int x0 = xr - ox0 < CONV_DIRECT_XB ? xr - CONV_DIRECT_XB : ox0;
            conv_direct_run(o, in, w, b, bv, act, H, W, Cin, Cout, K, s, pad, oy, x0,
                            CONV_DIRECT_XB, nc, 1);
        }
        /* [0, xl), then [xr, Wo) */
        for (int e = 0; e < 2; e++)
            for (int ox0 = e ? xr : 0, x1 = e ? Wo : xl; ox0 < x1; ox0 += CONV_DIRECT_XB) {
                const int nb = x1 - ox0 < CONV_DIRECT_XB ? x1 - ox0 : CONV_DIRECT_XB;
                conv_direct_run(o, in, w, b, bv, act, H, W, Cin, Cout, K, s, pad, oy, ox0, nb,
                                nc, 0);
            }
    }
}

static void conv_direct(float *out, const float *inp, const float *wp, const float *b,
                        enum ofa_act act, int N, int H, int W, int Cin, int Cout, int K,
                        int stride, int pad, int Ho, int Wo)
{
#ifdef _OPENMP
    const int par =
        !omp_in_parallel() && (double)N * Ho * Wo * K * K * Cin * Cout >= PW_PAR_MACS;
#endif
#pragma omp parallel for schedule(static) if (par)
    for (long row = 0; row < (long)N * Ho; row++) {
        const int n = (int)(row / Ho), oy = (int)(row % Ho);
        const float *in = inp + (size_t)n * H * W * Cin;
        float *o = out + (size_t)row * Wo * Cout;
        /* constant K, Cin and stride for the stems (grey and RGB, 3x3) */
#define CONV_DIRECT_ROW(KK, CC, SS)                                                       \
    conv_direct_row(o, in, wp, b, act, H, W, CC, Cout, KK, SS, pad, oy, Wo)
        if (K == 3 && Cin == 1 && stride == 1)
            CONV_DIRECT_ROW(3, 1, 1);
        else if (K == 3 && Cin == 3 && stride == 1)
            CONV_DIRECT_ROW(3, 3, 1);
        else if (K == 3 && Cin == 1 && stride == 2)
            CONV_DIRECT_ROW(3, 1, 2);
        else if (K == 3 && Cin == 3 && stride == 2)
            CONV_DIRECT_ROW(3, 3, 2);
        else
            CONV_DIRECT_ROW(K, Cin, stride);
#undef CONV_DIRECT_ROW
    }
}

void ofa_conv2d_forward_packed(float *out, float *col, const float *inp, const float *wp,
                               const float *b, enum ofa_act act, int N, int H, int W, int Cin,
                               int Cout, int K, int stride, int pad)
{
    int Ho, Wo;
    const int M = conv_rows(N, H, W, Cin, Cout, K, stride, pad, &Ho, &Wo);
    if (ofa_conv2d_direct(Cin, K)) {
        conv_direct(out, inp, wp, b, act, N, H, W, Cin, Cout, K, stride, pad, Ho, Wo);
        return;
    }
    im2col(col, inp, N, H, W, Cin, K, stride, pad, Ho, Wo);
    ofa_pwconv_forward_packed(out, col, wp, b, act, M, K * K * Cin, Cout);
}

void ofa_pwconv_forward_stats(float *out, float *mean, float *var, const float *inp,
                              const float *w, int ldw, long M, int Cin, int Cout)
{
    OFA_ASSERT(M >= 1 && M <= INT_MAX && Cin > 0 && Cin <= ldw && Cout > 0);
    const int npp = ((Cout + VL - 1) / VL + 1) / 2, cw = 2 * VL * npp;
    /* a large enough output past the caches */
    const int nt = can_stream(out, Cout) && (double)M * Cout * sizeof *out >= PW_STREAM_BYTES;
    long nchunks;
    const long chunk = pw_chunk_rows(M, Cin, &nchunks);
    float *wp = ofa_xzalloc64(ofa_mul_size(ofa_pw_packed_size(Cin, Cout), sizeof *wp),
                              "packed pointwise weights");
    ofa_pw_pack(wp, w, ldw, Cin, Cout);
    /* The shift that keeps the one-pass variance accurate (as in block_stats,
     * ops_norm.c): row 0 of out (zeros past Cout). */
    float *shift = ofa_xcalloc((size_t)cw, sizeof *shift, "statistics shift");
    pw_unit_plain(shift, inp, wp, NULL, OFA_ACT_NONE, 0, 1, 0, npp, Cin, Cout);
    double *part = ofa_xcalloc(ofa_mul_size(ofa_mul_size((size_t)nchunks, (size_t)cw), 2),
                               sizeof *part, "pointwise statistics partial sums");
#ifdef _OPENMP
    const int par = !omp_in_parallel() && (double)M * Cin * Cout >= PW_PAR_MACS;
#endif
#pragma omp parallel for schedule(static) if (par)
    for (long k = 0; k < nchunks; k++) {
        const long r0 = k * chunk, r1 = r0 + chunk < M ? r0 + chunk : M;
        const struct pw_stats st = {shift, part + (size_t)k * 2 * cw,
                                    part + ((size_t)k * 2 + 1) * cw};
        pw_unit_stats(out, inp, wp, r0, r1, 0, npp, Cin, Cout, &st, nt);
    }
    /* chunk order: the same sums at any thread count */
    for (int c = 0; c < Cout; c++) {
        double s = 0, q = 0;
        for (long k = 0; k < nchunks; k++) {
            s += part[(size_t)k * 2 * cw + c];
            q += part[((size_t)k * 2 + 1) * cw + c];
        }
        const double dm = s / (double)M, v = q / (double)M - dm * dm;
        mean[c] = (float)((double)shift[c] + dm);
        var[c] = (float)(v > 0 ? v : 0);
    }
    free(part);
    free(shift);
    free(wp);
}
