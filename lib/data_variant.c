/* data_variant.c: device-variant image transforms for the instability pass:
 * JPEG round trip (libturbojpeg), sensor noise, tone curves, blur and
 * resizing with a chosen interpolation. Plain reusable functions on one
 * image; nothing here is on the training hot path.
 */
#include <config.h>

#include "data.h"
#include "ops.h"
#include "rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

int ofa_variant_jpeg(uint8_t *out, const uint8_t *img, int H, int W, int C, int quality,
                     struct ofa_error *err)
{
    OFA_ASSERT(C == 1 || C == 3);
    OFA_ASSERT(quality >= 1 && quality <= 100);
    tjhandle c = tjInitCompress(), d = tjInitDecompress();
    if (!c || !d)
        ofa_fatal("libturbojpeg initialisation failed: %s", tjGetErrorStr());
    unsigned char *jpeg = NULL;
    unsigned long jsize = 0;
    int pf = C == 1 ? TJPF_GRAY : TJPF_RGB;
    int samp = C == 1 ? TJSAMP_GRAY : TJSAMP_444;
    int rc = 0;
    if (tjCompress2(c, img, W, 0, H, pf, &jpeg, &jsize, samp, quality, TJFLAG_ACCURATEDCT) != 0)
        rc = ofa_error_set(err, "", 0, "JPEG compression failed: %s", tjGetErrorStr2(c));
    else if (tjDecompress2(d, jpeg, jsize, out, W, 0, H, pf, TJFLAG_ACCURATEDCT) != 0)
        rc = ofa_error_set(err, "", 0, "JPEG decompression failed: %s", tjGetErrorStr2(d));
    tjFree(jpeg);
    tjDestroy(c);
    tjDestroy(d);
    return rc;
}

void ofa_variant_noise(float *x, long n, float std, uint64_t seed, int clamp)
{
    struct ofa_rng r;
    ofa_rng_derive(&r, seed, 0x6e6f697365ULL /* "noise" */, 0);
    for (long i = 0; i < n; i++) {
        float v = x[i] + std * ofa_rng_normal(&r);
        if (clamp)
            v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
        x[i] = v;
    }
}

void ofa_variant_tone(float *x, long n, float gamma, float brightness, float contrast)
{
    for (long i = 0; i < n; i++) {
        float v = x[i] < 0.0f ? 0.0f : x[i];
        if (gamma != 1.0f)
            v = powf(v, gamma);
        /* contrast * (v - 0.5) + 0.5 + brightness, written so that
         * contrast 1, brightness 0 is exact. */
        v = contrast * v + (0.5f * (1.0f - contrast) + brightness);
        x[i] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
    }
}

/* 1-D Gaussian pass along one axis; stride/len describe the axis. */
void ofa_variant_blur(float *out, const float *inp, int H, int W, int C, float sigma)
{
    size_t n = (size_t)H * (size_t)W * (size_t)C;
    if (sigma <= 0.0f) {
        memmove(out, inp, n * sizeof(float));
        return;
    }
    int R = (int)ceilf(3.0f * sigma);
    float *k = ofa_xmalloc(sizeof(float) * (size_t)(2 * R + 1), "blur kernel");
    float s = 0.0f;
    for (int i = -R; i <= R; i++) {
        k[i + R] = expf(-0.5f * (float)(i * i) / (sigma * sigma));
        s += k[i + R];
    }
    for (int i = 0; i <= 2 * R; i++)
        k[i] /= s;
    float *tmp = ofa_xmalloc(n * sizeof(float), "blur buffer");
    /* Horizontal into tmp, then vertical into out (edges replicated). */
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < C; c++) {
                float acc = 0.0f;
                for (int i = -R; i <= R; i++) {
                    int xx = x + i < 0 ? 0 : x + i >= W ? W - 1 : x + i;
                    acc += k[i + R] * inp[((size_t)y * W + xx) * C + c];
                }
                tmp[((size_t)y * W + x) * C + c] = acc;
            }
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < C; c++) {
                float acc = 0.0f;
                for (int i = -R; i <= R; i++) {
                    int yy = y + i < 0 ? 0 : y + i >= H ? H - 1 : y + i;
                    acc += k[i + R] * tmp[((size_t)yy * W + x) * C + c];
                }
                out[((size_t)y * W + x) * C + c] = acc;
            }
    free(tmp);
    free(k);
}

/* Area (box) weights of source cells [i, i+1) overlapping the destination
 * cell [d*s, (d+1)*s), s = src/dst. */
static void area_axis(float *out, const float *inp, int n_in, int n_out, long stride_in,
                      long stride_out, int count, long step_in, long step_out)
{
    double s = (double)n_in / n_out;
    for (int d = 0; d < n_out; d++) {
        double a = d * s, b = (d + 1) * s;
        int i0 = (int)floor(a), i1 = (int)ceil(b);
        if (i1 > n_in)
            i1 = n_in;
        for (int q = 0; q < count; q++) {
            double acc = 0.0;
            for (int i = i0; i < i1; i++) {
                double lo = i > a ? i : a, hi = i + 1 < b ? i + 1 : b;
                acc += (hi - lo) * inp[q * step_in + (long)i * stride_in];
            }
            out[q * step_out + (long)d * stride_out] = (float)(acc / s);
        }
    }
}

void ofa_variant_resize(float *out, const float *inp, int H, int W, int Ho, int Wo, int C,
                        int interp)
{
    if (interp == OFA_INTERP_BILINEAR) {
        ofa_resize_bilinear_forward(out, inp, 1, H, W, Ho, Wo, C);
        return;
    }
    if (interp == OFA_INTERP_NEAREST) {
        /* PyTorch's 'nearest': src = floor(dst * in / out). */
        for (int y = 0; y < Ho; y++) {
            int sy = (int)((long)y * H / Ho);
            for (int x = 0; x < Wo; x++) {
                int sx = (int)((long)x * W / Wo);
                memcpy(out + ((size_t)y * Wo + x) * C, inp + ((size_t)sy * W + sx) * C,
                       sizeof(float) * (size_t)C);
            }
        }
        return;
    }
    OFA_ASSERT(interp == OFA_INTERP_AREA);
    /* Rows first (H -> Ho) into tmp [Ho, W, C], then columns. */
    float *tmp = ofa_xmalloc(sizeof(float) * (size_t)Ho * (size_t)W * (size_t)C, "area resize");
    /* For each (x, c) column of the input: axis y with stride W*C. */
    area_axis(tmp, inp, H, Ho, (long)W * C, (long)W * C, W * C, 1, 1);
    /* For each row y of tmp and channel c: axis x with stride C. */
    for (int y = 0; y < Ho; y++)
        area_axis(out + (size_t)y * Wo * C, tmp + (size_t)y * W * C, W, Wo, C, C, C, 1, 1);
    free(tmp);
}
