/* check_stability.c: device variants (the clean pipeline is the loader's
 * bit for bit, JPEG, noise, tone, blur, resize), the instability measure on
 * a scripted predictor (exact fractions, label-agnostic and label-aware,
 * over several batches), the KL loss gradient against finite differences,
 * the supernet's activation hook (off or identity: bit-identical), and the
 * stability fine-tuning pass on a tiny network and a Fashion-MNIST subset
 * (it lowers the KL term, it is deterministic, fake quantization included).
 *
 * Needs Debian's dataset-fashion-mnist (the README's setup installs it). */
#include <config.h>

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "ops.h"
#include "recipe.h"
#include "rng.h"
#include "stability.h"
#include "supernet.h"
#include "testutil.h"

/* The first ntrain training and ntest test images of Fashion-MNIST in
 * memory, nval of the training images held out (split seed 0). */
static void fashion(struct ofa_dataset *ds, int ntrain, int ntest, int nval)
{
    struct ofa_error err;
    struct ofa_read_opts ro = {0};
    memset(ds, 0, sizeof *ds);
    ck_assert_msg(ofa_data_read_source("fashion-mnist", &ro, ds, &err) == 0,
                  "%s: %s (install Debian's dataset-fashion-mnist)", err.file, err.msg);
    ds->train.n = ntrain;
    ds->test.n = ntest;
    ck_assert_int_eq(ofa_dataset_split(ds, nval, 0, &err), 0);
}

static void tiny_recipe(struct ofa_recipe *r)
{
    const char *src = getenv("OFA_SRCDIR");
    char path[512];
    snprintf(path, sizeof path, "%s/tests/fixtures/recipes/tiny.ini", src ? src : ".");
    struct ofa_error err;
    ck_assert_msg(ofa_recipe_load(r, path, &err) == 0, "%s:%ld: %s", err.file, err.line,
                  err.msg);
}

static void lut_of(float *lut, const struct ofa_dataset *ds, int normalize)
{
    for (int c = 0; c < ds->train.c; c++)
        for (int v = 0; v < 256; v++) {
            double x = v / 255.0;
            if (normalize)
                x = (x - ds->mean[c]) / ds->std[c];
            lut[c * 256 + v] = (float)x;
        }
}

static struct ofa_variant_cfg variant(const char *name)
{
    struct ofa_variant_cfg v;
    memset(&v, 0, sizeof v);
    snprintf(v.name, sizeof v.name, "%s", name);
    v.gamma = 1.0f;
    v.contrast = 1.0f;
    v.interp = OFA_INTERP_BILINEAR;
    return v;
}

/* ---- variants ----------------------------------------------------------------------- */

START_TEST(test_clean_pipeline_is_the_loader_bit_for_bit)
{
    struct ofa_dataset ds;
    fashion(&ds, 200, 40, 20);
    const int n = ds.test.n, H = ds.test.h, C = ds.test.c;
    float lut[256], *scratch = tu_zeros(2L * 28 * 28);
    struct ofa_variant_cfg plain = variant("plain"), near = variant("near");
    near.interp = OFA_INTERP_NEAREST;
    const int res_list[] = {12, 20, 28};
    for (int norm = 0; norm < 2; norm++)
        for (int ri = 0; ri < 3; ri++) {
            const int res = res_list[ri];
            struct ofa_loader_config c;
            ofa_loader_config_default(&c);
            c.split = OFA_SPLIT_TEST;
            c.shuffle = 0;
            c.drop_last = 0;
            c.batch_size = n;
            c.aug.normalize = norm;
            c.resolution = res;
            c.max_resolution = res > H ? res : H;
            c.async = 0;
            struct ofa_loader *l = ofa_loader_create(&ds, &c);
            const size_t osz = (size_t)res * res * C;
            float *x = tu_zeros((long)(n * osz)), *out = tu_zeros((long)osz);
            int *y = malloc(sizeof(int) * (size_t)n);
            ck_assert_int_eq(ofa_loader_fill(l, 0, 0, res, x, y, 0), n);
            lut_of(lut, &ds, norm);
            struct ofa_error err;
            int near_differs = 0;
            for (int i = 0; i < n; i++) {
                const uint8_t *img = ds.test.pixels + (size_t)i * H * H * C;
                ck_assert_int_eq(ofa_variant_apply(out, NULL, img, H, H, C, res, lut, scratch, 7,
                                                   &err), 0);
                ck_assert_msg(memcmp(out, x + i * osz, osz * sizeof(float)) == 0,
                              "image %d res %d normalize %d differs from the loader", i, res,
                              norm);
                /* A variant with every default is the clean pipeline. */
                ck_assert_int_eq(ofa_variant_apply(out, &plain, img, H, H, C, res, lut, scratch,
                                                   7, &err), 0);
                ck_assert(memcmp(out, x + i * osz, osz * sizeof(float)) == 0);
                /* Nearest resizing changes the image unless the sizes match. */
                ck_assert_int_eq(ofa_variant_apply(out, &near, img, H, H, C, res, lut, scratch,
                                                   7, &err), 0);
                near_differs += memcmp(out, x + i * osz, osz * sizeof(float)) != 0;
            }
            ck_assert_int_eq(near_differs, res == H ? 0 : n);
            free(x), free(y), free(out);
            ofa_loader_free(l);
        }
    free(scratch);
    ofa_dataset_free(&ds);
}
END_TEST

/* Mean and max |a - b| in pixel levels (0..255) for normalised images. */
static void level_diff(const float *a, const float *b, long n, float span, double *mean,
                       double *max)
{
    double s = 0, m = 0;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / span * 255.0;
        s += d;
        m = d > m ? d : m;
    }
    *mean = s / n;
    *max = m;
}

START_TEST(test_jpeg_variant_q100_close_q10_far)
{
    struct ofa_dataset ds;
    fashion(&ds, 200, 20, 20);
    const int H = 28, res = 28, n = ds.test.n;
    float lut[256], *scratch = tu_zeros(2 * 28 * 28);
    lut_of(lut, &ds, 1);
    const float span = lut[255] - lut[0];
    float *clean = tu_zeros(28 * 28), *out = tu_zeros(28 * 28);
    struct ofa_variant_cfg q100 = variant("q100"), q10 = variant("q10");
    q100.jpeg_quality = 100;
    q10.jpeg_quality = 10;
    struct ofa_error err;
    double m100 = 0, x100 = 0, m10 = 0;
    for (int i = 0; i < n; i++) {
        const uint8_t *img = ds.test.pixels + (size_t)i * H * H;
        double m, x;
        ck_assert_int_eq(ofa_variant_apply(clean, NULL, img, H, H, 1, res, lut, scratch, 0, &err),
                         0);
        ck_assert_int_eq(ofa_variant_apply(out, &q100, img, H, H, 1, res, lut, scratch, 0, &err),
                         0);
        level_diff(out, clean, 28 * 28, span, &m, &x);
        m100 += m / n;
        x100 = x > x100 ? x : x100;
        ck_assert_int_eq(ofa_variant_apply(out, &q10, img, H, H, 1, res, lut, scratch, 0, &err),
                         0);
        level_diff(out, clean, 28 * 28, span, &m, &x);
        m10 += m / n;
    }
    ck_assert_msg(x100 <= 4.0 && m100 < 0.5, "q100: mean %.3f max %.3f levels", m100, x100);
    ck_assert_msg(m10 > 4.0 && m10 > 20 * m100, "q10: mean %.3f levels (q100 %.3f)", m10, m100);
    /* JPEG needs grey or RGB: a 4-channel image is refused, naming the variant. */
    uint8_t rgba[4 * 8 * 8] = {0};
    float *o4 = tu_zeros(4 * 8 * 8), *s4 = tu_zeros(2 * 4 * 8 * 8), lut4[4 * 256];
    for (int c = 0; c < 4; c++)
        memcpy(lut4 + c * 256, lut, sizeof lut);
    ck_assert_int_ne(ofa_variant_apply(o4, &q10, rgba, 8, 8, 4, 8, lut4, s4, 0, &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "q10"));
    ck_assert_ptr_nonnull(strstr(err.msg, "4 channels"));
    free(o4), free(s4), free(clean), free(out), free(scratch);
    ofa_dataset_free(&ds);
}
END_TEST

START_TEST(test_noise_is_seeded_and_has_its_std)
{
    enum { S = 32 };
    uint8_t img[S * S];
    memset(img, 128, sizeof img);
    float lut[256], *scratch = tu_zeros(2 * S * S);
    for (int v = 0; v < 256; v++)
        lut[v] = (float)((v / 255.0 - 0.3) / 0.4);
    struct ofa_variant_cfg nv = variant("noisy");
    nv.noise_std = 0.05f;
    float *a = tu_zeros(S * S), *b = tu_zeros(S * S), *c = tu_zeros(S * S);
    struct ofa_error err;
    ck_assert_int_eq(ofa_variant_apply(a, &nv, img, S, S, 1, S, lut, scratch, 11, &err), 0);
    ck_assert_int_eq(ofa_variant_apply(b, &nv, img, S, S, 1, S, lut, scratch, 11, &err), 0);
    ck_assert_int_eq(ofa_variant_apply(c, &nv, img, S, S, 1, S, lut, scratch, 12, &err), 0);
    ck_assert(memcmp(a, b, sizeof(float) * S * S) == 0);
    ck_assert(memcmp(a, c, sizeof(float) * S * S) != 0);
    /* In [0,1] units: (out - lut[0]) / span, around 128/255 with std 0.05. */
    const float span = lut[255] - lut[0];
    double s = 0, s2 = 0;
    for (int i = 0; i < S * S; i++) {
        double d = (a[i] - lut[0]) / span - 128.0 / 255.0;
        s += d, s2 += d * d;
    }
    double mean = s / (S * S), sd = sqrt(s2 / (S * S) - mean * mean);
    ck_assert_msg(fabs(mean) < 0.01 && fabs(sd - 0.05) < 0.006, "mean %g std %g", mean, sd);
    free(a), free(b), free(c), free(scratch);
}
END_TEST

START_TEST(test_tone_blur_and_resize_variants)
{
    enum { S = 16 };
    uint8_t img[S * S];
    struct ofa_rng g;
    ofa_rng_seed(&g, 3);
    for (int i = 0; i < S * S; i++)
        img[i] = (uint8_t)ofa_rng_below(&g, 256);
    float lut[256], *scratch = tu_zeros(2 * S * S);
    for (int v = 0; v < 256; v++)
        lut[v] = v / 255.0f; /* no normalisation: outputs are [0,1] pixels */
    float *clean = tu_zeros(S * S), *out = tu_zeros(S * S);
    struct ofa_error err;
    ck_assert_int_eq(ofa_variant_apply(clean, NULL, img, S, S, 1, S, lut, scratch, 0, &err), 0);
    /* Brightness shifts, contrast scales around 0.5, gamma < 1 brightens. */
    struct ofa_variant_cfg t = variant("t");
    t.brightness = 0.1f;
    ck_assert_int_eq(ofa_variant_apply(out, &t, img, S, S, 1, S, lut, scratch, 0, &err), 0);
    for (int i = 0; i < S * S; i++)
        ck_assert(fabsf(out[i] - fminf(clean[i] + 0.1f, 1.0f)) < 1e-5f);
    t = variant("t");
    t.contrast = 0.5f;
    ck_assert_int_eq(ofa_variant_apply(out, &t, img, S, S, 1, S, lut, scratch, 0, &err), 0);
    for (int i = 0; i < S * S; i++)
        ck_assert(fabsf(out[i] - (0.5f * (clean[i] - 0.5f) + 0.5f)) < 1e-5f);
    t = variant("t");
    t.gamma = 0.5f;
    ck_assert_int_eq(ofa_variant_apply(out, &t, img, S, S, 1, S, lut, scratch, 0, &err), 0);
    for (int i = 0; i < S * S; i++)
        ck_assert(fabsf(out[i] - sqrtf(clean[i])) < 1e-5f);
    /* Blur smooths: less variation between neighbouring pixels. */
    t = variant("t");
    t.blur_sigma = 1.0f;
    ck_assert_int_eq(ofa_variant_apply(out, &t, img, S, S, 1, S, lut, scratch, 0, &err), 0);
    double vc = 0, vb = 0;
    for (int i = 1; i < S * S; i++)
        if (i % S) {
            vc += fabsf(clean[i] - clean[i - 1]);
            vb += fabsf(out[i] - out[i - 1]);
        }
    ck_assert_msg(vb < 0.5 * vc, "blur: %g vs %g", vb, vc);
    /* Resizing: area of a constant image is constant; the interpolations
     * differ on a pattern. */
    uint8_t flat[S * S];
    memset(flat, 200, sizeof flat);
    float small[3][10 * 10];
    const int interps[3] = {OFA_INTERP_NEAREST, OFA_INTERP_BILINEAR, OFA_INTERP_AREA};
    for (int k = 0; k < 3; k++) {
        t = variant("r");
        t.interp = interps[k];
        ck_assert_int_eq(ofa_variant_apply(small[k], &t, flat, S, S, 1, 10, lut, scratch, 0, &err),
                         0);
        for (int i = 0; i < 100; i++)
            ck_assert(fabsf(small[k][i] - lut[200]) < 1e-5f);
        ck_assert_int_eq(ofa_variant_apply(small[k], &t, img, S, S, 1, 10, lut, scratch, 0, &err),
                         0);
    }
    ck_assert(memcmp(small[0], small[1], sizeof small[0]) != 0);
    ck_assert(memcmp(small[1], small[2], sizeof small[0]) != 0);
    free(clean), free(out), free(scratch);
}
END_TEST

/* ---- instability ------------------------------------------------------------------- */

/* A scripted predictor: pipeline k of batch b answers table[k][b*256 + i]
 * (the measure calls the clean pipeline, then every variant in order, per
 * batch of 256), checks the arithmetic flag, and checks that int8 variants
 * without transforms see exactly the clean inputs. */
struct script {
    int nv, n, calls;
    const int *table;   /* [1 + nv][n] */
    const int *int8;    /* [1 + nv] expected flags */
    const int *is_clean; /* [1 + nv]: the inputs must equal the clean ones */
    size_t img;
    float *clean;       /* the current batch's clean inputs */
};

static void scripted(void *ctx, int int8, const float *x, int n, int *labels)
{
    struct script *s = ctx;
    int k = s->calls % (1 + s->nv), b = s->calls / (1 + s->nv);
    s->calls++;
    ck_assert_int_eq(int8, s->int8[k]);
    ck_assert_int_le(b * 256 + n, s->n);
    if (k == 0)
        memcpy(s->clean, x, (size_t)n * s->img * sizeof(float));
    else
        ck_assert_int_eq(memcmp(s->clean, x, (size_t)n * s->img * sizeof(float)) == 0,
                         s->is_clean[k]);
    for (int i = 0; i < n; i++)
        labels[i] = s->table[(size_t)k * s->n + b * 256 + i];
}

START_TEST(test_instability_of_a_scripted_predictor_is_exact)
{
    struct ofa_dataset ds;
    fashion(&ds, 100, 300, 10);
    struct ofa_recipe r;
    ofa_recipe_default(&r);
    r.n_variants = 2;
    r.variants[0] = variant("jpeg");
    r.variants[0].jpeg_quality = 50;
    r.variants[1] = variant("int8");
    r.variants[1].int8 = 1;
    const int res = 20, int8[3] = {0, 0, 1}, is_clean[3] = {1, 0, 1};
    struct script s = {.nv = 2, .int8 = int8, .is_clean = is_clean, .img = (size_t)res * res};
    s.clean = tu_zeros(256L * res * res);
    /* Six images by hand: y right, w/w2 two different wrong labels.
     *   0: y y y      stable
     *   1: y w y      unstable, right and wrong
     *   2: w w w      stable (wrong everywhere)
     *   3: w w2 w     unstable, wrong everywhere
     *   4: w y w      unstable, right and wrong
     *   5: y y w      unstable, right and wrong */
    static const char pat[6][3] = {{'y', 'y', 'y'}, {'y', 'w', 'y'}, {'w', 'w', 'w'},
                                   {'w', 'v', 'w'}, {'w', 'y', 'w'}, {'y', 'y', 'w'}};
    int table[3 * 300];
    s.n = 6;
    for (int i = 0; i < 6; i++)
        for (int k = 0; k < 3; k++) {
            int y = ds.test.labels[i];
            table[k * 6 + i] = pat[i][k] == 'y' ? y : pat[i][k] == 'w' ? (y + 1) % 10
                                                                       : (y + 2) % 10;
        }
    s.table = table;
    struct ofa_instability in;
    struct ofa_error err;
    ck_assert_int_eq(ofa_instability_measure(&in, &ds, &r, res, 6, scripted, &s, &err), 0);
    ck_assert_int_eq(s.calls, 3);
    ck_assert_int_eq(in.n_images, 6);
    ck_assert_int_eq(in.n_variants, 2);
    ck_assert(in.instability == 4.0 / 6.0);
    ck_assert(in.instability_label == 3.0 / 6.0);
    ck_assert(in.acc_clean == 3.0 / 6.0);
    ck_assert(in.acc[0] == 3.0 / 6.0);
    ck_assert(in.acc[1] == 2.0 / 6.0);
    ck_assert(in.flip[0] == 3.0 / 6.0); /* images 1, 3, 4 */
    ck_assert(in.flip[1] == 1.0 / 6.0); /* image 5 */

    /* 300 images (two batches), random answers, against a direct count. */
    struct ofa_rng g;
    ofa_rng_seed(&g, 5);
    for (int i = 0; i < 3 * 300; i++) {
        int y = ds.test.labels[i % 300];
        table[i] = ofa_rng_uniform(&g) < 0.7f ? y : (int)ofa_rng_below(&g, 10);
    }
    s.n = 300;
    s.calls = 0;
    ck_assert_int_eq(ofa_instability_measure(&in, &ds, &r, res, 0, scripted, &s, &err), 0);
    ck_assert_int_eq(s.calls, 6);
    long un = 0, unl = 0, acc[3] = {0}, flip[2] = {0};
    for (int i = 0; i < 300; i++) {
        int y = ds.test.labels[i], l0 = table[i], l1 = table[300 + i], l2 = table[600 + i];
        un += !(l0 == l1 && l1 == l2);
        int right = l0 == y || l1 == y || l2 == y, wrong = l0 != y || l1 != y || l2 != y;
        unl += right && wrong;
        acc[0] += l0 == y, acc[1] += l1 == y, acc[2] += l2 == y;
        flip[0] += l1 != l0, flip[1] += l2 != l0;
    }
    ck_assert_int_eq(in.n_images, 300);
    ck_assert(in.instability == un / 300.0);
    ck_assert(in.instability_label == unl / 300.0);
    ck_assert(in.acc_clean == acc[0] / 300.0);
    ck_assert(in.acc[0] == acc[1] / 300.0 && in.acc[1] == acc[2] / 300.0);
    ck_assert(in.flip[0] == flip[0] / 300.0 && in.flip[1] == flip[1] / 300.0);
    ck_assert(un > 0 && unl > 0 && unl < un);
    free(s.clean);
    /* No test split: refused. */
    ds.test.n = 0;
    ck_assert_int_ne(ofa_instability_measure(&in, &ds, &r, res, 0, scripted, &s, &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "test"));
    ofa_dataset_free(&ds);
}
END_TEST

/* ---- the KL term ------------------------------------------------------------------ */

struct klctx {
    float *a, *b, *r;
    int N, K;
};

static double kl_loss(void *ctx)
{
    struct klctx *c = ctx;
    return ofa_stability_kl(c->a, c->b, c->N, c->K, NULL, NULL, 0.0f);
}

START_TEST(test_kl_gradient_matches_finite_differences)
{
    enum { N = 5, K = 10 };
    struct klctx c = {tu_rand(N * K, 3.0f, 1, 1), tu_rand(N * K, 3.0f, 1, 2), NULL, N, K};
    const float scale = 1.7f;
    float *da = tu_zeros(N * K), *db = tu_zeros(N * K);
    /* Accumulates: start from a non-zero gradient. */
    for (int i = 0; i < N * K; i++)
        da[i] = db[i] = 0.25f;
    double kl = ofa_stability_kl(c.a, c.b, N, K, da, db, scale);
    ck_assert(kl > 0);
    float *na = tu_zeros(N * K), *nb = tu_zeros(N * K);
    tu_numgrad(kl_loss, &c, c.a, N * K, 1e-2f, na);
    tu_numgrad(kl_loss, &c, c.b, N * K, 1e-2f, nb);
    for (int i = 0; i < N * K; i++) {
        na[i] = 0.25f + scale * na[i];
        nb[i] = 0.25f + scale * nb[i];
    }
    ck_assert_msg(tu_nmse(da, na, N * K) < 1e-5, "da nmse %g", tu_nmse(da, na, N * K));
    ck_assert_msg(tu_nmse(db, nb, N * K) < 1e-5, "db nmse %g", tu_nmse(db, nb, N * K));
    /* KL(p || p) = 0 with zero gradient, also for huge logits. */
    for (int i = 0; i < N * K; i++)
        c.a[i] *= 100.0f;
    memset(da, 0, sizeof(float) * N * K);
    memset(db, 0, sizeof(float) * N * K);
    ck_assert(ofa_stability_kl(c.a, c.a, N, K, da, db, 1.0f) == 0.0);
    for (int i = 0; i < N * K; i++)
        ck_assert(da[i] == 0.0f && db[i] == 0.0f);
    ck_assert(isfinite(ofa_stability_kl(c.a, c.b, N, K, da, db, 1.0f)));
    free(c.a), free(c.b), free(da), free(db), free(na), free(nb);
}
END_TEST

/* ---- the activation hook ------------------------------------------------------------ */

struct hooklog {
    int calls, sites[64];
    long sizes[64];
    int modes[64];
    float scale;
};

static void log_hook(void *ctx, int site, float *x, long n, int mode)
{
    struct hooklog *h = ctx;
    ck_assert_int_lt(h->calls, 64);
    h->sites[h->calls] = site;
    h->sizes[h->calls] = n;
    h->modes[h->calls] = mode;
    h->calls++;
    if (h->scale != 1.0f)
        for (long i = 0; i < n; i++)
            x[i] *= h->scale;
}

START_TEST(test_activation_hook_off_or_identity_is_bit_identical)
{
    tu_threads(2);
    struct ofa_recipe r;
    tiny_recipe(&r);
    struct ofa_supernet net;
    ofa_supernet_init(&net, &r.space, 3);
    ck_assert_ptr_null(net.act_hook);
    struct ofa_subnet sub;
    struct ofa_rng g;
    ofa_rng_seed(&g, 9);
    ofa_subnet_sample(&r.space, &g, &sub);
    const int N = 6, K = r.space.num_classes;
    float *x = tu_rand((long)N * sub.res * sub.res, 2.0f, 4, 1);
    float *dl = tu_rand((long)N * K, 1.0f, 4, 2);
    struct ofa_exec ex;
    ofa_exec_init(&ex, &net, N);
    const size_t P = net.p.total;
    float *l0 = tu_zeros((long)N * K), *g0 = tu_zeros((long)P), *d0 = tu_copy(net.p.data, (long)P);
    /* Off. */
    ofa_params_zero_grad(&net.p);
    memcpy(l0, ofa_supernet_forward(&net, &ex, &sub, x, N, OFA_MODE_TRAIN, 0.0f, NULL),
           sizeof(float) * N * K);
    ofa_supernet_backward(&net, &ex, dl);
    memcpy(g0, net.p.grad, P * sizeof(float));
    /* An identity hook (same BN statistics to start from). */
    memcpy(net.p.data, d0, P * sizeof(float));
    struct hooklog h = {.scale = 1.0f};
    net.act_hook = log_hook;
    net.act_hook_ctx = &h;
    ofa_params_zero_grad(&net.p);
    const float *l1 = ofa_supernet_forward(&net, &ex, &sub, x, N, OFA_MODE_TRAIN, 0.0f, NULL);
    ck_assert(memcmp(l0, l1, sizeof(float) * N * K) == 0);
    ofa_supernet_backward(&net, &ex, dl);
    ck_assert(memcmp(g0, net.p.grad, P * sizeof(float)) == 0);
    /* Sites: stem, first block, every active block, head; with their sizes. */
    int blocks = 0;
    for (int s = 0; s < r.space.n_stages; s++)
        blocks += sub.depth[s];
    ck_assert_int_eq(h.calls, 3 + blocks);
    for (int i = 0; i < h.calls; i++) {
        ck_assert_int_eq(h.sites[i], i);
        ck_assert_int_eq(h.modes[i], OFA_MODE_TRAIN);
    }
    const int H1 = sub.res; /* stem stride 1 */
    ck_assert_int_eq(h.sizes[0], (long)N * H1 * H1 * r.space.stem_width);
    ck_assert_int_eq(h.sizes[h.calls - 1], (long)N * ex.Hh * ex.Hh * r.space.head_width);
    /* Evaluation calls it too; calibration does not. */
    h.calls = 0;
    ofa_supernet_forward(&net, &ex, &sub, x, N, OFA_MODE_EVAL, 0.0f, NULL);
    ck_assert_int_eq(h.calls, 3 + blocks);
    ck_assert_int_eq(h.modes[0], OFA_MODE_EVAL);
    h.calls = 0;
    ofa_supernet_calib_begin(&net);
    ofa_supernet_forward(&net, &ex, &sub, x, N, OFA_MODE_CALIB, 0.0f, NULL);
    ck_assert_int_eq(h.calls, 0);
    /* A hook that changes values changes the output. */
    memcpy(net.p.data, d0, P * sizeof(float));
    h.scale = 0.5f;
    const float *l2 = ofa_supernet_forward(&net, &ex, &sub, x, N, OFA_MODE_TRAIN, 0.0f, NULL);
    ck_assert(memcmp(l0, l2, sizeof(float) * N * K) != 0);
    ofa_exec_free(&ex);
    ofa_supernet_free(&net);
    free(x), free(dl), free(l0), free(g0), free(d0);
}
END_TEST

/* ---- fine-tuning ---------------------------------------------------------------------- */

/* Mean KL(p(x) || p(v(x))) over the first n training-split images, BN in
 * evaluation mode, variant vi of r with fixed noise seeds. */
static double variant_kl(struct ofa_supernet *net, const struct ofa_dataset *ds,
                         const struct ofa_recipe *r, int vi, int n)
{
    const int res = net->sub.res, H = ds->train.h, K = net->sp.num_classes;
    const size_t osz = (size_t)res * res;
    float lut[256], *scratch = tu_zeros(2L * H * H);
    lut_of(lut, ds, r->augment.normalize);
    float *xc = tu_zeros((long)(n * osz)), *xv = tu_zeros((long)(n * osz));
    struct ofa_error err;
    for (int i = 0; i < n; i++) {
        const uint8_t *img = ds->train.pixels + (size_t)ds->train_index[i] * H * H;
        ck_assert_int_eq(ofa_variant_apply(xc + i * osz, NULL, img, H, H, 1, res, lut, scratch,
                                           0, &err), 0);
        ck_assert_int_eq(ofa_variant_apply(xv + i * osz, &r->variants[vi], img, H, H, 1, res, lut,
                                           scratch, 1000 + (uint64_t)i, &err), 0);
    }
    struct ofa_exec ex;
    ofa_exec_init(&ex, net, n);
    float *lc = tu_zeros((long)n * K);
    memcpy(lc, ofa_supernet_forward(net, &ex, &net->sub, xc, n, OFA_MODE_EVAL, 0.0f, NULL),
           sizeof(float) * n * K);
    const float *lv = ofa_supernet_forward(net, &ex, &net->sub, xv, n, OFA_MODE_EVAL, 0.0f, NULL);
    double kl = ofa_stability_kl(lc, lv, n, K, NULL, NULL, 0.0f);
    ofa_exec_free(&ex);
    free(lc), free(xc), free(xv), free(scratch);
    return kl;
}

/* Shift every training-split label by `by` (mod the classes); returns
 * the labels as they were, for restore_labels. */
static int *shift_labels(struct ofa_dataset *ds, int by)
{
    int *saved = malloc(sizeof(int) * (size_t)ds->train.n);
    ck_assert_ptr_nonnull(saved);
    memcpy(saved, ds->train.labels, sizeof(int) * (size_t)ds->train.n);
    for (int i = 0; i < ds->train.n; i++)
        ds->train.labels[i] = (saved[i] + by) % ds->num_classes;
    return saved;
}

static void restore_labels(struct ofa_dataset *ds, int *saved)
{
    memcpy(ds->train.labels, saved, sizeof(int) * (size_t)ds->train.n);
    free(saved);
}

/* A fresh standalone copy of the largest tiny subnet with the weights of w. */
static void copy_net(struct ofa_supernet *dst, const struct ofa_supernet *super,
                     const struct ofa_subnet *sub, const float *w)
{
    ofa_supernet_extract(dst, super, sub);
    memcpy(dst->p.data, w, dst->p.total * sizeof(float));
}

/* A predictor on a network (fp32 for both arithmetics). */
struct netpred {
    struct ofa_supernet *net;
    struct ofa_exec ex;
};

static void net_predict(void *ctx, int int8, const float *x, int n, int *labels)
{
    struct netpred *p = ctx;
    (void)int8;
    const int K = p->net->sp.num_classes;
    const float *l = ofa_supernet_forward(p->net, &p->ex, &p->net->sub, x, n, OFA_MODE_EVAL, 0.0f,
                                          NULL);
    for (int i = 0; i < n; i++) {
        int best = 0;
        for (int k = 1; k < K; k++)
            if (l[i * K + k] > l[i * K + best])
                best = k;
        labels[i] = best;
    }
}

static struct ofa_instability instability(struct ofa_supernet *net, const struct ofa_dataset *ds,
                                          const struct ofa_recipe *r)
{
    struct netpred p = {.net = net};
    ofa_exec_init(&p.ex, net, 256);
    struct ofa_instability in;
    struct ofa_error err;
    ck_assert_int_eq(ofa_instability_measure(&in, ds, r, net->sub.res, 0, net_predict, &p, &err),
                     0);
    ofa_exec_free(&p.ex);
    return in;
}

/* The fine-tuning tests' variant that moves every prediction. */
static struct ofa_variant_cfg harsh_variant(void)
{
    struct ofa_variant_cfg v = variant("harsh");
    v.jpeg_quality = 25;
    v.noise_std = 0.08f;
    v.gamma = 0.7f;
    return v;
}

static void finetune_taught(struct ofa_supernet *net, struct ofa_supernet *teacher,
                            const struct ofa_dataset *ds, const struct ofa_recipe *r,
                            struct ofa_stability_stats *st)
{
    struct ofa_error err;
    int rc = ofa_stability_finetune(net, teacher, ds, r, 1, st, &err);
    ck_assert_msg(rc == 0, "%s", err.msg);
    ck_assert_ptr_null(net->act_hook);
}

static void finetune_drawn(struct ofa_supernet *net, const struct ofa_dataset *ds,
                           const struct ofa_recipe *r, struct ofa_stability_stats *st)
{
    finetune_taught(net, NULL, ds, r, st);
}

static void finetune_ok(struct ofa_supernet *net, const struct ofa_dataset *ds,
                        const struct ofa_recipe *r)
{
    finetune_drawn(net, ds, r, NULL);
}

START_TEST(test_finetune_lowers_kl_and_is_deterministic)
{
    /* One thread: a tiny network gains nothing from a team, and on a busy
     * machine its barriers would spin. */
    tu_threads(1);
    struct ofa_dataset ds;
    fashion(&ds, 560, 300, 60); /* 500 training-split images */
    struct ofa_recipe r;
    tiny_recipe(&r);
    r.n_variants = 2;
    r.variants[0] = harsh_variant();
    r.variants[1] = variant("int8"); /* not drawn by the pass */
    r.variants[1].int8 = 1;
    r.export.batch_size = 50;
    r.export.subset = 0;
    r.export.weight_decay = 5e-5f;
    struct ofa_supernet super, net;
    ofa_supernet_init(&super, &r.space, 2);
    struct ofa_subnet sub;
    ofa_subnet_largest(&r.space, &sub);
    ofa_supernet_extract(&net, &super, &sub);
    /* Pre-train on the labels only. */
    r.export.epochs = 6;
    r.export.lr = 0.1f;
    r.export.alpha = 0.0f;
    r.export.fake_quant = 0;
    finetune_ok(&net, &ds, &r);
    const size_t P = net.p.total;
    float *w0 = tu_copy(net.p.data, (long)P);
    double kl0 = variant_kl(&net, &ds, &r, 0, 200);

    /* The same budget with and without the stability term. */
    r.export.epochs = 4;
    r.export.lr = 0.03f;
    struct ofa_supernet a, b, a2;
    copy_net(&a, &super, &sub, w0);
    copy_net(&b, &super, &sub, w0);
    r.export.alpha = 0.0f;
    finetune_ok(&b, &ds, &r);
    r.export.alpha = 4.0f;
    finetune_ok(&a, &ds, &r);
    double kla = variant_kl(&a, &ds, &r, 0, 200), klb = variant_kl(&b, &ds, &r, 0, 200);
    ck_assert_msg(kla < 0.25 * klb && kla < 0.5 * kl0,
                  "KL: before %.4f, alpha 4 %.4f, alpha 0 %.4f", kl0, kla, klb);
    /* ... and the instability on test images. */
    struct ofa_instability ia = instability(&a, &ds, &r), ib = instability(&b, &ds, &r);
    ck_assert_int_eq(ia.n_images, 300);
    ck_assert_msg(ia.instability < 0.7 * ib.instability && ia.acc_clean > 0.5,
                  "instability %.3f (alpha 4) vs %.3f (alpha 0), accuracy %.3f",
                  ia.instability, ib.instability, ia.acc_clean);
    /* Deterministic: the same run again gives the same weights. */
    copy_net(&a2, &super, &sub, w0);
    finetune_ok(&a2, &ds, &r);
    ck_assert(memcmp(a.p.data, a2.p.data, P * sizeof(float)) == 0);
    ofa_supernet_free(&a2);

    /* With fake quantization: deterministic too, the weights stay float, and
     * the stability term still works. */
    r.export.fake_quant = 1;
    struct ofa_supernet q1, q2;
    copy_net(&q1, &super, &sub, w0);
    copy_net(&q2, &super, &sub, w0);
    finetune_ok(&q1, &ds, &r);
    finetune_ok(&q2, &ds, &r);
    ck_assert(memcmp(q1.p.data, q2.p.data, P * sizeof(float)) == 0);
    ck_assert(memcmp(q1.p.data, a.p.data, P * sizeof(float)) != 0);
    double klq = variant_kl(&q1, &ds, &r, 0, 200);
    ck_assert_msg(klq < 0.25 * klb, "KL with fake quantization %.4f, alpha 0 %.4f", klq, klb);
    /* Float weights: the stem's first output channel is not on an int8 grid. */
    const float *sw = ofa_param_data(&q1.p, q1.stem_w);
    const int per = q1.p.t[q1.stem_w].shape[1];
    float m = 0;
    for (int i = 0; i < per; i++)
        m = fmaxf(m, fabsf(sw[i]));
    int off_grid = 0;
    for (int i = 0; i < per; i++) {
        float q = sw[i] / (m / 127.0f);
        off_grid += fabsf(q - roundf(q)) > 1e-3f;
    }
    ck_assert_int_gt(off_grid, 0);

    /* epochs 0: nothing changes; too few images for a batch: refused. */
    r.export.epochs = 0;
    finetune_ok(&q2, &ds, &r);
    ck_assert(memcmp(q1.p.data, q2.p.data, P * sizeof(float)) == 0);
    r.export.epochs = 1;
    r.export.batch_size = 501;
    struct ofa_error err;
    ck_assert_int_ne(ofa_stability_finetune(&q2, NULL, &ds, &r, 1, NULL, &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "export.batch_size"));
    ofa_supernet_free(&q1), ofa_supernet_free(&q2);
    ofa_supernet_free(&a), ofa_supernet_free(&b);
    ofa_supernet_free(&net), ofa_supernet_free(&super);
    free(w0);
    ofa_dataset_free(&ds);
}
END_TEST

START_TEST(test_variant_draws_detach_and_target)
{
    tu_threads(1);
    struct ofa_dataset ds;
    fashion(&ds, 460, 10, 60); /* 400 training-split images */
    struct ofa_recipe r;
    tiny_recipe(&r);
    /* "mild" changes nothing (its KL is exactly 0, and ties go to the first
     * variant), "harsh" moves every prediction; int8 is never drawn. */
    r.n_variants = 3;
    r.variants[0] = variant("mild");
    r.variants[1] = variant("int8");
    r.variants[1].int8 = 1;
    r.variants[2] = harsh_variant();
    r.export.batch_size = 50;
    r.export.subset = 0;
    r.export.weight_decay = 5e-5f;
    r.export.fake_quant = 1;
    struct ofa_supernet super, net;
    ofa_supernet_init(&super, &r.space, 3);
    struct ofa_subnet sub;
    ofa_subnet_largest(&r.space, &sub);
    ofa_supernet_extract(&net, &super, &sub);
    r.export.epochs = 5;
    r.export.lr = 0.1f;
    r.export.alpha = 0.0f;
    finetune_ok(&net, &ds, &r); /* labels only */
    const size_t P = net.p.total;
    float *w0 = tu_copy(net.p.data, (long)P);

    /* The same budget, random, worst and all draws. */
    r.export.epochs = 2;
    r.export.lr = 0.03f;
    r.export.alpha = 4.0f;
    struct ofa_supernet rnd, wst, wst2, all;
    struct ofa_stability_stats dr, dw, dw2, da;
    copy_net(&rnd, &super, &sub, w0);
    copy_net(&wst, &super, &sub, w0);
    copy_net(&wst2, &super, &sub, w0);
    copy_net(&all, &super, &sub, w0);
    r.export.variant_draw = OFA_DRAW_RANDOM;
    finetune_drawn(&rnd, &ds, &r, &dr);
    r.export.variant_draw = OFA_DRAW_WORST;
    finetune_drawn(&wst, &ds, &r, &dw);
    finetune_drawn(&wst2, &ds, &r, &dw2);
    r.export.variant_draw = OFA_DRAW_ALL;
    finetune_drawn(&all, &ds, &r, &da);
    const long seen = 2 * 400;
    ck_assert_int_eq(dr.images, seen);
    ck_assert_int_eq(dr.drawn[0] + dr.drawn[2], seen);
    ck_assert_int_eq(dr.drawn[1], 0);
    ck_assert_msg(dr.drawn[0] > seen / 4 && dr.drawn[2] > seen / 4,
                  "random draws: %ld mild, %ld harsh", dr.drawn[0], dr.drawn[2]);
    ck_assert_int_eq(dw.images, seen);
    ck_assert_int_eq(dw.drawn[0] + dw.drawn[2], seen);
    ck_assert_int_eq(dw.drawn[1], 0);
    ck_assert_msg(dw.drawn[2] >= seen * 99 / 100, "worst draws: %ld mild, %ld harsh",
                  dw.drawn[0], dw.drawn[2]);
    ck_assert_int_eq(da.images, seen);
    ck_assert_int_eq(da.drawn[0], seen);
    ck_assert_int_eq(da.drawn[1], 0);
    ck_assert_int_eq(da.drawn[2], seen);
    /* Deterministic. */
    ck_assert(memcmp(wst.p.data, wst2.p.data, P * sizeof(float)) == 0);
    ck_assert(memcmp(&dw, &dw2, sizeof dw) == 0);
    /* Trained on the harsh variant about twice as often as the random draw,
     * the worst draw leaves it closer to the clean prediction. The all draw
     * weighs each variant alpha / variants, the random draw's weight on
     * average: it must still have cut the harsh variant's KL. */
    double kr = variant_kl(&rnd, &ds, &r, 2, 200), kw = variant_kl(&wst, &ds, &r, 2, 200);
    double ka = variant_kl(&all, &ds, &r, 2, 200);
    const double k0 = variant_kl(&net, &ds, &r, 2, 200);
    ck_assert_msg(kw < 0.7 * kr && ka < 0.5 * k0, "KL under harsh: worst draw %.4f, all %.4f, "
                  "random %.4f, before %.4f", kw, ka, kr, k0);

    /* detach_clean: without the stability term it changes nothing; with it,
     * the clean branch loses the term's gradient (other weights), and the
     * variant branch keeps it (the harsh KL still falls well below the
     * pass without the term). */
    r.export.variant_draw = OFA_DRAW_RANDOM;
    struct ofa_supernet d0, n0, d1;
    copy_net(&d0, &super, &sub, w0);
    copy_net(&n0, &super, &sub, w0);
    copy_net(&d1, &super, &sub, w0);
    r.export.alpha = 0.0f;
    finetune_ok(&n0, &ds, &r);
    r.export.detach_clean = 1;
    finetune_ok(&d0, &ds, &r);
    ck_assert(memcmp(d0.p.data, n0.p.data, P * sizeof(float)) == 0);
    r.export.alpha = 4.0f;
    finetune_ok(&d1, &ds, &r);
    ck_assert(memcmp(d1.p.data, rnd.p.data, P * sizeof(float)) != 0);
    const double kd = variant_kl(&d1, &ds, &r, 2, 200), kp = variant_kl(&n0, &ds, &r, 2, 200);
    ck_assert_msg(kd < 0.5 * kp, "KL under harsh: detached clean %.4f, alpha 0 %.4f", kd, kp);
    ofa_supernet_free(&d0), ofa_supernet_free(&n0), ofa_supernet_free(&d1);
    r.export.detach_clean = 0;

    /* target original: the labels play no part (other labels, the same
     * weights; with target labels they do change them), and the stability
     * term still cuts the harsh KL. */
    struct ofa_supernet o1, o2, l1, l2;
    copy_net(&o1, &super, &sub, w0);
    copy_net(&o2, &super, &sub, w0);
    copy_net(&l1, &super, &sub, w0);
    copy_net(&l2, &super, &sub, w0);
    r.export.target = OFA_TARGET_ORIGINAL;
    finetune_ok(&o1, &ds, &r);
    r.export.target = OFA_TARGET_LABELS;
    finetune_ok(&l1, &ds, &r);
    int *saved = shift_labels(&ds, 1);
    finetune_ok(&l2, &ds, &r);
    r.export.target = OFA_TARGET_ORIGINAL;
    finetune_ok(&o2, &ds, &r);
    restore_labels(&ds, saved);
    ck_assert(memcmp(o1.p.data, o2.p.data, P * sizeof(float)) == 0);
    ck_assert(memcmp(l1.p.data, l2.p.data, P * sizeof(float)) != 0);
    const double ko = variant_kl(&o1, &ds, &r, 2, 200);
    ck_assert_msg(ko < 0.5 * kp, "KL under harsh: target original %.4f, alpha 0 %.4f", ko, kp);
    ofa_supernet_free(&o1), ofa_supernet_free(&o2), ofa_supernet_free(&l1);
    ofa_supernet_free(&l2);
    ofa_supernet_free(&rnd), ofa_supernet_free(&wst), ofa_supernet_free(&wst2);
    ofa_supernet_free(&all);
    ofa_supernet_free(&net), ofa_supernet_free(&super);
    free(w0);
    ofa_dataset_free(&ds);
}
END_TEST

/* target largest: the clean term is the teacher's, at the teacher's
 * resolution. A teacher trained on shifted labels (y + 1) makes a student
 * trained on the true labels follow it, and the labels play no part. */
START_TEST(test_target_largest_follows_the_teacher)
{
    tu_threads(1);
    struct ofa_dataset ds;
    fashion(&ds, 560, 300, 60); /* 500 training-split images */
    struct ofa_recipe r;
    tiny_recipe(&r);
    r.n_variants = 1;
    r.variants[0] = harsh_variant();
    r.export.batch_size = 50;
    r.export.subset = 0;
    r.export.fake_quant = 1;
    struct ofa_supernet super, student, teacher;
    ofa_supernet_init(&super, &r.space, 5);
    struct ofa_subnet small, large;
    ofa_subnet_smallest(&r.space, &small);
    ofa_subnet_largest(&r.space, &large);
    ck_assert_int_lt(small.res, large.res);
    ofa_supernet_extract(&student, &super, &small);
    ofa_supernet_extract(&teacher, &super, &large);
    /* Pre-train both on the labels, the teacher on shifted ones. */
    r.export.epochs = 6;
    r.export.lr = 0.1f;
    r.export.alpha = 0.0f;
    finetune_ok(&student, &ds, &r);
    int *saved = shift_labels(&ds, 1);
    finetune_ok(&teacher, &ds, &r);
    restore_labels(&ds, saved);
    const double acc0 = instability(&student, &ds, &r).acc_clean;
    ck_assert_msg(acc0 > 0.5 && instability(&teacher, &ds, &r).acc_clean < 0.2,
                  "pre-trained: student %.3f", acc0);
    const size_t P = student.p.total;
    float *w0 = tu_copy(student.p.data, (long)P), *t0 = tu_copy(teacher.p.data,
                                                                (long)teacher.p.total);

    struct ofa_supernet a, b;
    copy_net(&a, &super, &small, w0);
    copy_net(&b, &super, &small, w0);
    r.export.epochs = 4;
    r.export.alpha = 2.0f;
    r.export.target = OFA_TARGET_LARGEST;
    finetune_taught(&a, &teacher, &ds, &r, NULL);
    ck_assert(memcmp(teacher.p.data, t0, teacher.p.total * sizeof(float)) == 0);
    const double acc = instability(&a, &ds, &r).acc_clean;
    ck_assert_msg(acc < 0.2, "taught by a teacher of shifted labels, accuracy %.3f (before "
                  "%.3f)", acc, acc0);
    saved = shift_labels(&ds, 3);
    finetune_taught(&b, &teacher, &ds, &r, NULL);
    restore_labels(&ds, saved);
    ck_assert(memcmp(a.p.data, b.p.data, P * sizeof(float)) == 0);
    free(w0), free(t0);
    ofa_supernet_free(&a), ofa_supernet_free(&b);
    ofa_supernet_free(&student), ofa_supernet_free(&teacher), ofa_supernet_free(&super);
    ofa_dataset_free(&ds);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("stability");
    TCase *tc = tcase_create("stability");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_clean_pipeline_is_the_loader_bit_for_bit);
    tcase_add_test(tc, test_jpeg_variant_q100_close_q10_far);
    tcase_add_test(tc, test_noise_is_seeded_and_has_its_std);
    tcase_add_test(tc, test_tone_blur_and_resize_variants);
    tcase_add_test(tc, test_instability_of_a_scripted_predictor_is_exact);
    tcase_add_test(tc, test_kl_gradient_matches_finite_differences);
    tcase_add_test(tc, test_activation_hook_off_or_identity_is_bit_identical);
    suite_add_tcase(s, tc);
    TCase *ft = tcase_create("finetune");
    tcase_set_timeout(ft, 300);
    tcase_add_test(ft, test_finetune_lowers_kl_and_is_deterministic);
    tcase_add_test(ft, test_variant_draws_detach_and_target);
    tcase_add_test(ft, test_target_largest_follows_the_teacher);
    suite_add_tcase(s, ft);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    return nf ? EXIT_FAILURE : EXIT_SUCCESS;
}
