#include <config.h>
/* ops_resize.c: bilinear resize of NHWC images with PyTorch's
 * align_corners=False rule (source coordinates in float as PyTorch computes
 * them). The backward gathers per input row, so each thread owns the rows of
 * dinp it writes: no atomics, and the summation order is fixed. Both time
 * themselves (prof.h): the training step calls them outside the supernet. */

#include "ops.h"
#include "prof.h"
#include "util.h"


#define PAR_MIN 32768L

/* Output index dst of a size `in` -> `out` axis: the two source indices i0,
 * i1 (i1 == i0 at the far edge) and the weight l1 of i1. */
static inline void src_index(int dst, int in, int out, int *i0, int *i1, float *l1)
{
    float scale = (float)in / (float)out;
    float s = scale * ((float)dst + 0.5f) - 0.5f;
    if (s < 0.0f)
        s = 0.0f;
    int i = (int)s;
    if (i > in - 1)
        i = in - 1;
    float l = s - (float)i;
    *i0 = i;
    *i1 = i + (i < in - 1 ? 1 : 0);
    *l1 = l < 0.0f ? 0.0f : (l > 1.0f ? 1.0f : l);
}

/* inp [N,H,W,C] -> out [N,Ho,Wo,C]. */
void ofa_resize_bilinear_forward(float *out, const float *inp, int N, int H, int W,
                                 int Ho, int Wo, int C)
{
    OFA_ASSERT(N >= 1 && H >= 1 && W >= 1 && Ho >= 1 && Wo >= 1 && C >= 1);
    const int prof = ofa_prof_begin();
    long rows = (long)N * Ho;
#pragma omp parallel for schedule(static) if (rows * Wo * C >= PAR_MIN)
    for (long t = 0; t < rows; t++) {
        int n = (int)(t / Ho), y = (int)(t % Ho);
        int y0, y1;
        float ly;
        src_index(y, H, Ho, &y0, &y1, &ly);
        float hy = 1.0f - ly;
        const float *r0 = inp + ((long)n * H + y0) * W * C;
        const float *r1 = inp + ((long)n * H + y1) * W * C;
        for (int x = 0; x < Wo; x++) {
            int x0, x1;
            float lx;
            src_index(x, W, Wo, &x0, &x1, &lx);
            float hx = 1.0f - lx;
            const float *p00 = r0 + (long)x0 * C, *p01 = r0 + (long)x1 * C;
            const float *p10 = r1 + (long)x0 * C, *p11 = r1 + (long)x1 * C;
            float *o = out + (t * Wo + x) * C;
#pragma omp simd
            for (int c = 0; c < C; c++)
                o[c] = hy * (hx * p00[c] + lx * p01[c]) + ly * (hx * p10[c] + lx * p11[c]);
        }
    }
    ofa_prof_end(prof, OFA_PROF_RESIZE, OFA_PROF_FWD);
}

/* dout [N,Ho,Wo,C] -> dinp [N,H,W,C] (+=). Task (n, iy) adds the
 * contributions of every output row that reads input row iy, in output order. */
void ofa_resize_bilinear_backward(float *dinp, const float *dout, int N, int H, int W,
                                  int Ho, int Wo, int C)
{
    OFA_ASSERT(N >= 1 && H >= 1 && W >= 1 && Ho >= 1 && Wo >= 1 && C >= 1);
    const int prof = ofa_prof_begin();
    long rows = (long)N * H;
#pragma omp parallel for schedule(static) if ((long)N * Ho * Wo * C >= PAR_MIN)
    for (long t = 0; t < rows; t++) {
        int n = (int)(t / H), iy = (int)(t % H);
        float *drow = dinp + t * W * C;
        for (int y = 0; y < Ho; y++) {
            int y0, y1;
            float ly;
            src_index(y, H, Ho, &y0, &y1, &ly);
            if (y0 != iy && y1 != iy)
                continue;
            float wy = (y0 == iy ? 1.0f - ly : 0.0f) + (y1 == iy ? ly : 0.0f);
            const float *grow = dout + ((long)n * Ho + y) * Wo * C;
            for (int x = 0; x < Wo; x++) {
                int x0, x1;
                float lx;
                src_index(x, W, Wo, &x0, &x1, &lx);
                float w0 = wy * (1.0f - lx), w1 = wy * lx;
                const float *g = grow + (long)x * C;
                float *d0 = drow + (long)x0 * C, *d1 = drow + (long)x1 * C;
#pragma omp simd
                for (int c = 0; c < C; c++)
                    d0[c] += w0 * g[c];
#pragma omp simd
                for (int c = 0; c < C; c++)
                    d1[c] += w1 * g[c];
            }
        }
    }
    ofa_prof_end(prof, OFA_PROF_RESIZE, OFA_PROF_BWD);
}
