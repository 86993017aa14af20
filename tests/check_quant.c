/* check_quant.c: int8 post-training quantization and the int8 runtime: the
 * requantization helpers against a reference and the real product, the
 * hswish/hsigmoid tables against the float functions, the buffer plan, int8
 * against fp32 on a materialised model, bit-identical logits on every
 * instruction set and in multi-threaded batches, and the generated model.c
 * (compiled with the system C compiler) against the runtime. */
#include <config.h>

#include <check.h>
#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "device.h"
#include "model.h"
#include "quant.h"
#include "rng.h"
#include "space.h"
#include "supernet.h"
#include "testutil.h"

#include "qnet.h"

/* ck_assert in a hot loop costs a system call per check (Check marks the
 * point through a pipe); this fails just the same but is free when it holds. */
#define CHECK(cond, ...)                \
    do {                                \
        if (!(cond))                    \
            ck_abort_msg(__VA_ARGS__);  \
    } while (0)

/* The kernels once more, compiled with this program's flags: their helpers
 * are tested directly, and the entry point is one more variant to compare. */
#define OFA_QNET_FN(name) name##_test
#define OFA_QNET_API static
#include "qnet.inc"

/* ---- requantization ---------------------------------------------------- */

/* gemmlowp's definitions written differently from the kernels: floor
 * division for the half-up rounding of the doubling high multiply (m >= 0,
 * so never its saturating case), and a sign-symmetric shift for the
 * halves-away-from-zero division. */
static int32_t ref_requant(int32_t x, int32_t m, int s)
{
    if (s > 0) {
        int64_t v = (int64_t)x * ((int64_t)1 << s);
        x = v > INT32_MAX ? INT32_MAX : v < INT32_MIN ? INT32_MIN : (int32_t)v;
    }
    int64_t p = (int64_t)x * m + ((int64_t)1 << 30), d = (int64_t)1 << 31;
    int64_t y = p >= 0 ? p / d : -((-p + d - 1) / d); /* floor */
    if (s >= 0)
        return (int32_t)y;
    int64_t a = y < 0 ? -y : y;
    a = (a + ((int64_t)1 << (-s - 1))) >> -s;
    return (int32_t)(y < 0 ? -a : a);
}

START_TEST(test_requant_matches_reference_and_real_product)
{
    struct ofa_rng r;
    ofa_rng_seed(&r, 11);
    const int32_t edge_x[] = {0, 1, -1, 2, -2, 3, -3, INT32_MAX, INT32_MIN, INT32_MAX - 1,
                              INT32_MIN + 1, 1 << 30, -(1 << 30), 12345, -12345};
    const double edge_m[] = {0.5, 1.0 - 1e-12, 0.25, 0.75, 1.0, 2.0, 1e-9, 2.3e-10, 3.0,
                             0.999999, 1.0 / 3.0, 128.0, 1.5e5};
    long n = 0;
    for (int it = 0; it < 100000; it++) {
        double real;
        int32_t x;
        if (it < (int)(sizeof edge_x / sizeof edge_x[0] * sizeof edge_m / sizeof edge_m[0])) {
            x = edge_x[it % (int)(sizeof edge_x / sizeof edge_x[0])];
            real = edge_m[it / (int)(sizeof edge_x / sizeof edge_x[0])];
        } else {
            real = exp2(-34.0 + 44.0 * ofa_rng_uniform(&r)); /* 2^-34 .. 2^10 */
            double u = 2.0 * ofa_rng_uniform(&r) - 1.0;
            int bits = 1 + (int)(31.0 * ofa_rng_uniform(&r));
            x = (int32_t)(u * (exp2(bits) - 1.0));
            if (it % 7 == 0) /* exact halves after the high multiply */
                x = (int32_t)(u * 4096.0) * 2 + 1;
        }
        int32_t m;
        int s;
        ofa_quant_multiplier(real, &m, &s);
        CHECK(s >= -31 && s <= 31, "shift %d", s);
        double q = ldexp((double)m, s - 31); /* the multiplier as stored */
        if (m != 0)
            CHECK(m >= (1 << 30) && fabs(q - real) <= real * ldexp(1.0, -31), "real %g: m %d s %d",
                  real, m, s);
        else
            CHECK(real < ldexp(1.0, -32), "real %g gave a zero multiplier", real);
        int32_t got = qk_requant(x, m, s), want_ref = ref_requant(x, m, s);
        CHECK(got == want_ref, "x %d m %d s %d: %d, reference %d", x, m, s, got, want_ref);
        /* no saturation: within one unit of the real product (two roundings) */
        if (fabs((double)x * ldexp(1.0, s > 0 ? s : 0)) < 2147483647.0) {
            double want = (double)x * q;
            CHECK(fabs((double)got - want) <= 1.0, "x %d real %g: %d vs %.3f", x, real, got, want);
            n++;
        }
    }
    ck_assert_int_gt(n, 50000);
    /* the helpers' own edge cases */
    ck_assert_int_eq(qk_srdhm(INT32_MIN, 1 << 30), -(1 << 30));
    ck_assert_int_eq(qk_srdhm(-3, 1 << 30), -1); /* -1.5 rounds up */
    ck_assert_int_eq(qk_srdhm(1 << 30, 1 << 30), 1 << 29);
    ck_assert_int_eq(qk_rdbpot(5, 1), 3);
    ck_assert_int_eq(qk_rdbpot(-5, 1), -3);
    ck_assert_int_eq(qk_rdbpot(-4, 1), -2);
    ck_assert_int_eq(qk_rdbpot(INT32_MIN, 31), -1);
    ck_assert_int_eq(qk_rdbpot(INT32_MAX, 31), 1);
    ck_assert_int_eq(qk_requant(INT32_MAX, 1 << 30, 3), ref_requant(INT32_MAX, 1 << 30, 3));
}
END_TEST

/* qk_requant_row (8 lanes at a time where the build has AVX2, as the
 * runtime's avx2 and avx512vnni variants do) gives what qk_requant and
 * qk_clamp give element by element: shifts both ways, saturation, halves,
 * clamps, row lengths with and without a scalar tail. */
START_TEST(test_requant_row_matches_scalar)
{
    struct ofa_rng r;
    ofa_rng_seed(&r, 12);
    enum { N = 4099 };
    static int32_t x[N], m[N], acc[N];
    static int8_t sh[N], out[N];
    const int32_t edge_x[] = {0, 1, -1, 3, -3, INT32_MAX, INT32_MIN, 1 << 30, -(1 << 30), 511, -513};
    for (int i = 0; i < N; i++) {
        double real = exp2(-34.0 + 44.0 * ofa_rng_uniform(&r));
        int s;
        ofa_quant_multiplier(real, &m[i], &s);
        sh[i] = (int8_t)s;
        if (i < (int)(sizeof edge_x / sizeof edge_x[0]) * 4)
            x[i] = edge_x[i % (int)(sizeof edge_x / sizeof edge_x[0])];
        else if (i % 7 == 0)
            x[i] = (int32_t)((2.0 * ofa_rng_uniform(&r) - 1.0) * 4096.0) * 2 + 1;
        else
            x[i] = (int32_t)((2.0 * ofa_rng_uniform(&r) - 1.0) *
                             (exp2(1 + (int)(31.0 * ofa_rng_uniform(&r))) - 1.0));
    }
    const int lens[] = {1, 7, 8, 9, 16, 23, N};
    for (size_t t = 0; t < sizeof lens / sizeof *lens; t++)
        for (int zr = -128; zr <= 127; zr += 85) {
            const int n = lens[t], lo = zr < 0 ? -128 : zr, hi = 127;
            memcpy(acc, x, sizeof(int32_t) * (size_t)n);
            qk_requant_row(out, acc, n, m, sh, zr, lo, hi, NULL);
            for (int i = 0; i < n; i++) {
                const int32_t want = qk_clamp(qk_requant(x[i], m[i], sh[i]), zr, lo, hi);
                CHECK(acc[i] == want && out[i] == (int8_t)want,
                      "n %d zr %d: x %d m %d s %d: %d (byte %d), scalar %d", n, zr, x[i], m[i],
                      sh[i], acc[i], out[i], want);
            }
        }
}
END_TEST

#ifdef QK_HAVE_VEC
/* The AVX-512 requantization (qv_requant, qv_requant_clamp, qv_store16's
 * bytes) against qk_requant and qk_clamp, lane by lane, on both of its
 * paths: 16 lanes that all shift right by 1..23 (or have m = 0) take the
 * 64-bit form, any other lane sends the vector down the general one. Edge
 * accumulators (the largest the kernels can produce, halves), zero points
 * and clamps at both ends and inside. */
START_TEST(test_vector_requant_matches_scalar)
{
    struct ofa_rng r;
    ofa_rng_seed(&r, 13);
    const int32_t edge_x[] = {0, 1, -1, 3, -3, (1 << 30) + (1 << 29), -(1 << 30) - (1 << 29),
                              1 << 30, -(1 << 30), 511, -513, INT32_MAX, INT32_MIN};
    const int nex = (int)(sizeof edge_x / sizeof *edge_x);
    long fast = 0, general = 0;
    for (int it = 0; it < 20000; it++) {
        int32_t x[16], m[16], sh[16];
        /* shifts: mostly right by 1..23; every fourth vector has one lane
         * outside (24..31, 0 or a left shift) */
        for (int i = 0; i < 16; i++) {
            double real = exp2(-24.0 + 23.0 * ofa_rng_uniform(&r)); /* 2^-24 .. 2^-1 */
            if (it % 4 == 3 && i == it / 4 % 16)
                real = exp2(-34.0 + 44.0 * ofa_rng_uniform(&r));
            int s;
            ofa_quant_multiplier(real, &m[i], &s);
            if (it % 5 == 0 && i == 7)
                m[i] = 0, s = it % 3 - 1;
            sh[i] = s;
            const int k = it * 16 + i;
            if (k < nex * 8)
                x[i] = edge_x[k % nex];
            else if (k % 7 == 0) /* halves after the high multiply */
                x[i] = (int32_t)((2.0 * ofa_rng_uniform(&r) - 1.0) * 4096.0) * 2 + 1;
            else
                x[i] = (int32_t)((2.0 * ofa_rng_uniform(&r) - 1.0) *
                                 (exp2(1 + (int)(30.0 * ofa_rng_uniform(&r))) - 1.0));
        }
        const int zr = (int)(255.0 * ofa_rng_uniform(&r)) - 128;
        const int lo = it % 3 == 0 ? -128 : it % 3 == 1 ? zr : -100;
        const int hi = it % 2 ? 127 : 100 > lo ? 100 : lo;
        struct qv_rq q;
        qv_rq_init(&q, _mm512_loadu_si512(m), _mm512_loadu_si512(sh), zr, lo, hi);
        fast += q.fast, general += !q.fast;
        int32_t raw[16], clamped[16];
        int8_t bytes[16];
        _mm512_storeu_si512(raw, qv_requant(_mm512_loadu_si512(x), &q));
        _mm512_storeu_si512(clamped, qv_requant_clamp(_mm512_loadu_si512(x), &q));
        qv_store16(bytes, 0xFFFF, _mm512_loadu_si512(x), &q, NULL);
        for (int i = 0; i < 16; i++) {
            const int32_t want = qk_requant(x[i], m[i], sh[i]);
            const int32_t wantc = qk_clamp(want, zr, lo, hi);
            CHECK(clamped[i] == wantc && bytes[i] == (int8_t)wantc,
                  "x %d m %d s %d zr %d [%d, %d] (fast %d): %d / byte %d, scalar %d", x[i], m[i],
                  sh[i], zr, lo, hi, q.fast, clamped[i], bytes[i], wantc);
            CHECK(raw[i] == want, "x %d m %d s %d (fast %d): %d, scalar %d", x[i], m[i], sh[i],
                  q.fast, raw[i], want);
        }
    }
    printf("vector requantization: %ld vectors on the 64-bit path, %ld on the general one\n",
           fast, general);
    ck_assert_int_gt(fast, 10000);
    ck_assert_int_gt(general, 1500);
}
END_TEST

/* qv_copy: n bytes and not one more, for n across the 64-byte steps. */
START_TEST(test_vector_copy)
{
    uint8_t src[300], dst[300];
    for (int i = 0; i < 300; i++)
        src[i] = (uint8_t)(i * 7 + 1);
    for (int n = 0; n <= 200; n++) {
        memset(dst, 0xee, sizeof dst);
        qv_copy(dst + 3, src + 5, n);
        for (int i = 0; i < 300; i++)
            CHECK(dst[i] == (i >= 3 && i < 3 + n ? src[i - 3 + 5] : 0xee),
                  "n %d: byte %d is %d", n, i, dst[i]);
    }
}
END_TEST
#endif

/* ---- a materialised model --------------------------------------------- */

/* RGB, stem stride 2, SE and hswish, stride-2 stage, residuals. */
static void small_space(struct ofa_space *sp)
{
    ofa_space_default(sp);
    sp->in_channels = 3;
    sp->stem_width = 8;
    sp->stem_stride = 2;
    sp->stem_act = OFA_ACT_HSWISH;
    sp->first_width = 8;
    sp->n_stages = 2;
    sp->stages[0] = (struct ofa_stage_cfg){12, 1, OFA_ACT_RELU, 1};
    sp->stages[1] = (struct ofa_stage_cfg){16, 2, OFA_ACT_HSWISH, 1};
    sp->n_depths = 1, sp->depths[0] = 2;
    sp->n_expands = 1, sp->expands[0] = 3;
    sp->n_kernels = 2, sp->kernels[0] = 3, sp->kernels[1] = 5;
    sp->n_res = 1, sp->resolutions[0] = 16;
    sp->head_width = 24;
    sp->num_classes = 10;
    sp->dropout = 0.0f;
    sp->kernel_transform = 0;
    sp->zero_last_gamma = 0;
}

/* He-initialised weights; random BN statistics and affine terms (so that the
 * folding matters) and random biases, kept moderate so that activations stay
 * in a trained network's scale. */
static void randomize_bn(struct ofa_supernet *net, uint64_t seed)
{
    struct ofa_rng r;
    ofa_rng_seed(&r, seed);
    for (int i = 0; i < net->p.n; i++) {
        const struct ofa_param *t = &net->p.t[i];
        float *x = ofa_param_data(&net->p, i);
        int is_var = strstr(t->name, ".var") != NULL, is_gamma = strstr(t->name, ".gamma") != NULL;
        int is_mean = strstr(t->name, ".mean") != NULL, is_beta = strstr(t->name, ".beta") != NULL;
        const char *dot = strrchr(t->name, '.');
        int is_bias = dot && dot[1] == 'b' && (dot[2] == '\0' || isdigit((unsigned char)dot[2]));
        for (size_t j = 0; j < t->numel; j++) {
            float u = 2.0f * ofa_rng_uniform(&r) - 1.0f;
            if (is_var)
                x[j] = 0.5f + ofa_rng_uniform(&r);
            else if (is_gamma)
                x[j] = 1.0f + 0.3f * u;
            else if (is_mean || is_beta || is_bias)
                x[j] = 0.2f * u;
        }
    }
}

static void make_model(struct ofa_model *m, const char *subnet)
{
    struct ofa_space sp;
    small_space(&sp);
    struct ofa_supernet net;
    ofa_supernet_init(&net, &sp, 5);
    randomize_bn(&net, 6);
    struct ofa_subnet s;
    struct ofa_error err;
    ck_assert_msg(ofa_subnet_parse(&sp, subnet, &s, &err) == 0, "%s", err.msg);
    ofa_model_materialise(m, &net, &s);
    ofa_supernet_free(&net);
    const float mean[3] = {0.5f, 0.45f, 0.4f}, sd[3] = {0.25f, 0.3f, 0.2f};
    for (int c = 0; c < 3; c++)
        m->norm_mean[c] = mean[c], m->norm_std[c] = sd[c];
}

#define SUBNET "r16-d22-k35.53-e33.33"

/* n images of random pixels with some spatial structure (a random smooth
 * pattern per image plus noise), and their normalised floats. */
static void make_images(const struct ofa_model *m, int n, uint64_t seed, uint8_t *px, float *x)
{
    struct ofa_rng r;
    ofa_rng_seed(&r, seed);
    const int R = m->res, C = m->in_channels;
    for (int i = 0; i < n; i++) {
        double fx = 0.5 + 2.0 * ofa_rng_uniform(&r), fy = 0.5 + 2.0 * ofa_rng_uniform(&r);
        double ph = 6.28 * ofa_rng_uniform(&r), amp = 40.0 + 80.0 * ofa_rng_uniform(&r);
        double base = 60.0 + 120.0 * ofa_rng_uniform(&r);
        for (int y = 0; y < R; y++)
            for (int xx = 0; xx < R; xx++)
                for (int c = 0; c < C; c++) {
                    double v = base + amp * sin(fx * xx / R * 6.28 + fy * y / R * 6.28 + ph + c) +
                               30.0 * (ofa_rng_uniform(&r) - 0.5);
                    long k = (((long)i * R + y) * R + xx) * C + c;
                    px[k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : lround(v));
                    x[k] = ofa_quant_pixel(m, c, px[k]);
                }
    }
}

struct fixture {
    struct ofa_model m;
    int ncal, ntest;
    long insz;
    uint8_t *px_cal, *px_test;
    float *x_cal, *x_test;
};

static void fixture_init(struct fixture *f, enum ofa_calib_method method, double pct)
{
    memset(f, 0, sizeof *f);
    make_model(&f->m, SUBNET);
    f->ncal = 64, f->ntest = 64;
    f->insz = (long)f->m.res * f->m.res * f->m.in_channels;
    f->px_cal = malloc((size_t)(f->ncal * f->insz));
    f->px_test = malloc((size_t)(f->ntest * f->insz));
    f->x_cal = malloc(sizeof(float) * (size_t)(f->ncal * f->insz));
    f->x_test = malloc(sizeof(float) * (size_t)(f->ntest * f->insz));
    make_images(&f->m, f->ncal, 1, f->px_cal, f->x_cal);
    make_images(&f->m, f->ntest, 2, f->px_test, f->x_test);
    struct ofa_quant_opts o = {method, pct};
    ofa_quant_calibrate(&f->m, f->x_cal, f->ncal, &o);
}

static void fixture_free(struct fixture *f)
{
    ofa_model_free(&f->m);
    free(f->px_cal), free(f->px_test), free(f->x_cal), free(f->x_test);
}

static void float_logits(const struct ofa_model *m, float *logits, const float *x, int n)
{
    float *s = ofa_model_scratch_alloc(m, n);
    ofa_model_forward(m, logits, x, n, s);
    free(s);
}

static int argmax_f(const float *x, int n)
{
    int b = 0;
    for (int k = 1; k < n; k++)
        if (x[k] > x[b])
            b = k;
    return b;
}

static int argmax_i8(const int8_t *x, int n)
{
    int b = 0;
    for (int k = 1; k < n; k++)
        if (x[k] > x[b])
            b = k;
    return b;
}

/* Top-1 agreement and the largest logit error relative to the float logits'
 * range over the test set. */
static void compare_int8_fp32(struct fixture *f, double *agree, double *relerr)
{
    const int K = f->m.num_classes, n = f->ntest;
    float *lf = malloc(sizeof(float) * (size_t)(n * K)), *lq = malloc(sizeof(float) * (size_t)(n * K));
    float_logits(&f->m, lf, f->x_test, n);
    struct ofa_qrun *q = ofa_qrun_create(&f->m);
    ofa_qrun_forward(q, lq, f->x_test, n);
    ofa_qrun_free(q);
    float lo = lf[0], hi = lf[0];
    double err = 0.0;
    int same = 0;
    for (long i = 0; i < (long)n * K; i++) {
        lo = lf[i] < lo ? lf[i] : lo;
        hi = lf[i] > hi ? lf[i] : hi;
        err = fmax(err, fabs((double)lf[i] - lq[i]));
    }
    for (int i = 0; i < n; i++)
        same += argmax_f(lf + (long)i * K, K) == argmax_f(lq + (long)i * K, K);
    *agree = (double)same / n;
    *relerr = err / (hi - lo);
    free(lf), free(lq);
}

START_TEST(test_int8_close_to_fp32_minmax)
{
    tu_threads(1);
    struct fixture f;
    fixture_init(&f, OFA_CALIB_MINMAX, 0.0);
    double agree, rel;
    compare_int8_fp32(&f, &agree, &rel);
    printf("int8 vs fp32 (min/max): top-1 agreement %.3f, max logit error %.4f of the range\n",
           agree, rel);
    ck_assert_msg(agree >= 0.9, "top-1 agreement %.3f", agree);
    ck_assert_msg(rel <= 0.06, "logit error %.4f of the range", rel);
    fixture_free(&f);
}
END_TEST

START_TEST(test_int8_close_to_fp32_percentile)
{
    tu_threads(1);
    struct fixture f, g;
    fixture_init(&f, OFA_CALIB_PERCENTILE, 99.99);
    double agree, rel;
    compare_int8_fp32(&f, &agree, &rel);
    printf("int8 vs fp32 (99.99th percentile): top-1 agreement %.3f, max logit error %.4f\n",
           agree, rel);
    ck_assert_msg(agree >= 0.9, "top-1 agreement %.3f", agree);
    ck_assert_msg(rel <= 0.06, "logit error %.4f of the range", rel);
    /* the percentile's ranges lie within min/max; at 100 they are min/max up
     * to the histogram's resolution */
    fixture_init(&g, OFA_CALIB_MINMAX, 0.0);
    for (int t = 0; t < f.m.n_tensors; t++)
        ck_assert(f.m.tq[t].scale <= g.m.tq[t].scale * (1.0f + 1e-6f));
    fixture_free(&f);
    fixture_init(&f, OFA_CALIB_PERCENTILE, 100.0);
    for (int t = 0; t < f.m.n_tensors; t++) {
        ck_assert(fabsf(f.m.tq[t].scale - g.m.tq[t].scale) <= 1e-3f * g.m.tq[t].scale);
        ck_assert_int_le(abs(f.m.tq[t].zp - g.m.tq[t].zp), 1);
    }
    fixture_free(&f);
    fixture_free(&g);
}
END_TEST

/* Every range includes zero (so it is exact), weights are symmetric and
 * per output channel, and the quantized weights reproduce the float ones. */
START_TEST(test_quantized_parameters_are_consistent)
{
    tu_threads(1);
    struct fixture f;
    fixture_init(&f, OFA_CALIB_MINMAX, 0.0);
    const struct ofa_model *m = &f.m;
    ck_assert_int_eq(m->quantized, 1);
    for (int t = 0; t < m->n_tensors; t++) {
        ck_assert(m->tq[t].scale > 0.0f);
        ck_assert_int_ge(m->tq[t].zp, -128);
        ck_assert_int_le(m->tq[t].zp, 127);
        ck_assert_int_eq(ofa_quant_value(0.0f, m->tq[t]), m->tq[t].zp);
    }
    for (long i = 0; i < m->n_qweights; i++)
        CHECK(m->qweights[i] >= -127, "weight %ld is -128", i);
    int nse = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const struct ofa_layer *L = &m->layers[i];
        if (L->kind == OFA_LAYER_CONV || L->kind == OFA_LAYER_FC) {
            const long row = (long)L->K * L->K * L->Cin;
            for (int c = 0; c < L->Cout; c++) {
                const float s = m->wscale[L->ws + c];
                int peak = 0;
                for (long j = 0; j < row; j++) {
                    float w = m->weights[L->w + c * row + j];
                    int q = m->qweights[L->qw + c * row + j];
                    peak = abs(q) > peak ? abs(q) : peak;
                    CHECK(fabsf(w - s * q) <= 0.5f * s + 1e-7f, "layer %d weight %ld", i, j);
                }
                CHECK(peak == 127, "layer %d channel %d: peak %d", i, c, peak);
                double b = (double)m->weights[L->b + c];
                double bs = (double)m->tq[L->in].scale * s;
                CHECK(fabs(b - bs * m->qbias[L->qb + c]) <= 0.5 * bs + 1e-9, "layer %d bias %d", i,
                      c);
            }
        }
        if (L->kind == OFA_LAYER_SE) {
            nse++;
            ck_assert(L->pool.scale > 0.0f && L->hid.scale > 0.0f && L->pre.scale > 0.0f);
            ck_assert_int_eq(L->hid.zp, -128); /* after relu: [0, max] */
            ck_assert(L->qw2 >= 0 && L->qb2 >= 0 && L->ws2 >= 0);
        }
        if ((L->kind == OFA_LAYER_CONV || L->kind == OFA_LAYER_DW) && L->act == OFA_ACT_RELU)
            ck_assert_int_eq(m->tq[L->out].zp, -128);
        if (L->act == OFA_ACT_HSWISH)
            ck_assert(L->pre.scale > 0.0f);
    }
    ck_assert_int_eq(nse, 4);
    fixture_free(&f);
}
END_TEST

/* Degenerate calibration is safe: a layer whose weights are all zero (zero
 * range per channel), calibration images that are one constant value (zero
 * ranges of activations) or contain NaN and Inf: every scale is finite and
 * positive, zero stays exact, and the int8 runtime gives finite logits, for
 * min/max and for percentile calibration. */
START_TEST(test_degenerate_calibration_is_safe)
{
    tu_threads(1);
    for (int method = 0; method < 2; method++) {
        struct ofa_model m;
        make_model(&m, SUBNET);
        int zeroed = 0;
        for (int i = 0; i < m.n_layers && !zeroed; i++) {
            const struct ofa_layer *L = &m.layers[i];
            if (L->kind == OFA_LAYER_CONV && i > 0) {
                memset(m.weights + L->w, 0, sizeof(float) * (size_t)L->K * L->K * L->Cin * L->Cout);
                zeroed = 1;
            }
        }
        ck_assert(zeroed);
        const long insz = (long)m.res * m.res * m.in_channels;
        const int n = 8;
        float *x = malloc(sizeof(float) * (size_t)(n * insz));
        for (long i = 0; i < n * insz; i++)
            x[i] = 0.25f; /* constant images */
        x[3] = NAN, x[insz + 5] = INFINITY, x[2 * insz + 7] = -INFINITY;
        struct ofa_quant_opts o = {method ? OFA_CALIB_PERCENTILE : OFA_CALIB_MINMAX, 99.9};
        ofa_quant_calibrate(&m, x, n, &o);
        for (int t = 0; t < m.n_tensors; t++) {
            CHECK(m.tq[t].scale > 0.0f && isfinite(m.tq[t].scale), "tensor %d scale %g", t,
                  (double)m.tq[t].scale);
            ck_assert_int_eq(ofa_quant_value(0.0f, m.tq[t]), m.tq[t].zp);
        }
        for (long c = 0; c < m.n_wscale; c++)
            CHECK(m.wscale[c] > 0.0f && isfinite(m.wscale[c]), "weight scale %ld: %g", c,
                  (double)m.wscale[c]);
        for (long i = 0; i < n * insz; i++)
            x[i] = 0.25f;
        const int K = m.num_classes;
        float *lq = malloc(sizeof(float) * (size_t)(n * K));
        struct ofa_qrun *q = ofa_qrun_create(&m);
        ofa_qrun_forward(q, lq, x, n);
        ofa_qrun_free(q);
        for (long i = 0; i < (long)n * K; i++)
            CHECK(isfinite(lq[i]), "logit %ld is %g", i, (double)lq[i]);
        free(lq);
        free(x);
        ofa_model_free(&m);
    }
}
END_TEST

/* The hswish tables give hswish(pre) within half an output step (of the
 * value clamped to the output's range); the hsigmoid tables within half a
 * step of Q8. */
START_TEST(test_luts_match_float_within_half_step)
{
    tu_threads(1);
    struct fixture f;
    fixture_init(&f, OFA_CALIB_MINMAX, 0.0);
    struct ofa_qprep p;
    ofa_quant_prepare(&p, &f.m, 1);
    int nl = 0, ng = 0;
    for (int i = 0; i < p.n_layers; i++) {
        const struct ofa_layer *L = &f.m.layers[i];
        const struct ofa_qlayer *q = &p.layers[i];
        if (q->lut) {
            const struct ofa_qp o = f.m.tq[L->out];
            const double lo = o.scale * (-128 - o.zp), hi = o.scale * (127 - o.zp);
            for (int v = -128; v < 128; v++) {
                double x = (double)L->pre.scale * (v - L->pre.zp);
                double y = x * fmin(fmax(x + 3.0, 0.0), 6.0) / 6.0;
                y = fmin(fmax(y, lo), hi);
                double got = (double)o.scale * (q->lut[v + 128] - o.zp);
                CHECK(fabs(got - y) <= 0.5 * o.scale * (1 + 1e-6), "layer %d q %d", i, v);
            }
            nl++;
        }
        if (q->glut) {
            for (int v = -128; v < 128; v++) {
                double x = (double)L->pre.scale * (v - L->pre.zp);
                double y = fmin(fmax((x + 3.0) / 6.0, 0.0), 1.0);
                CHECK(fabs(q->glut[v + 128] / 256.0 - y) <= 0.5 / 256.0 + 1e-12, "layer %d q %d",
                      i, v);
            }
            ng++;
        }
    }
    ck_assert_int_gt(nl, 3);
    ck_assert_int_eq(ng, 4);
    ofa_quant_prepare_free(&p);
    fixture_free(&f);
}
END_TEST

/* Tensors alive at the same step never share bytes (except SE and ADD
 * writing over an input that dies with them); temporaries likewise. In the
 * runtime's layout every tensor, temporary and packed weight array starts
 * on a 64-byte boundary (the vector kernels' loads within one cache line). */
START_TEST(test_buffer_plan_keeps_live_tensors_apart)
{
    tu_threads(1);
    struct fixture f;
    fixture_init(&f, OFA_CALIB_MINMAX, 0.0);
    const struct ofa_model *m = &f.m;
    struct ofa_qprep p;
    ofa_quant_prepare(&p, m, 1);
    const int T = m->n_tensors;
    int *first = malloc(sizeof(int) * (size_t)T), *last = malloc(sizeof(int) * (size_t)T);
    long sum = 0, peak_layer = 0, peak_tmp = 0;
    for (int t = 0; t < T; t++) {
        first[t] = t == 0 ? 0 : t; /* layer t-1 runs at step t */
        last[t] = first[t];
        sum += (long)m->tensors[t].H * m->tensors[t].W * m->tensors[t].C;
    }
    for (int i = 0; i < m->n_layers; i++) {
        last[m->layers[i].in] = i + 1;
        if (m->layers[i].in2 >= 0)
            last[m->layers[i].in2] = i + 1;
    }
    last[T - 1] = m->n_layers + 1;
    int aliases = 0;
    for (int a = 0; a < T; a++)
        for (int b = a + 1; b < T; b++) {
            if (last[a] < first[b] || last[b] < first[a])
                continue;
            const long sa = (long)m->tensors[a].H * m->tensors[a].W * m->tensors[a].C;
            const long sb = (long)m->tensors[b].H * m->tensors[b].W * m->tensors[b].C;
            const long oa = p.toff[a], ob = p.toff[b];
            if (oa < ob + sb && ob < oa + sa) {
                const struct ofa_layer *L = &m->layers[b - 1]; /* b is L's output */
                ck_assert_msg((L->kind == OFA_LAYER_SE || L->kind == OFA_LAYER_ADD) &&
                                  (L->in == a || L->in2 == a) && last[a] == b && oa == ob,
                              "tensors %d and %d overlap", a, b);
                aliases++;
            }
        }
    for (int i = 0; i < m->n_layers; i++) {
        const struct ofa_layer *L = &m->layers[i];
        const struct ofa_qlayer *q = &p.layers[i];
        long io = (long)L->H * L->W * L->Cin + (long)L->Ho * L->Wo * L->Cout;
        peak_layer = io > peak_layer ? io : peak_layer;
        /* the temporaries sit on none of the tensors the layer touches */
        long tb = L->kind == OFA_LAYER_SE    ? 9L * L->Cin + L->R
                  : L->kind == OFA_LAYER_ADD ? 0
                  : L->kind == OFA_LAYER_CONV || L->kind == OFA_LAYER_FC
                      ? 4L * L->Cout + 2L * q->ldw
                  : L->kind == OFA_LAYER_DW ? 4L * QK_DW_BLOCK * L->Cout
                                            : 4L * L->Cout;
        /* and what the vector kernels use (the runtime's layout) */
        const long tv = qk_vec_tmp_bytes((int)L->kind, L->H, L->W, L->Cin, L->Wo, L->Cout, L->K,
                                         L->stride, L->pad);
        tb = tb && tv > tb ? tv : tb;
        peak_tmp = tb > peak_tmp ? tb : peak_tmp;
        for (int t = 0; t < T && tb; t++) {
            if (last[t] < i + 1 || first[t] > i + 1)
                continue;
            const long st = (long)m->tensors[t].H * m->tensors[t].W * m->tensors[t].C;
            CHECK(!(q->tmp < p.toff[t] + st && p.toff[t] < q->tmp + tb), "layer %d tmp on %d", i,
                  t);
        }
        ck_assert_int_eq(q->tmp % 64, 0);
        if (L->kind == OFA_LAYER_CONV || L->kind == OFA_LAYER_FC || L->kind == OFA_LAYER_DW)
            ck_assert_msg(q->w2 && (uintptr_t)q->w2 % 64 == 0, "layer %d: packed weights at %p", i,
                          (const void *)q->w2);
    }
    for (int t = 0; t < T; t++)
        ck_assert_msg(p.toff[t] % 64 == 0, "tensor %d at %d", t, (int)p.toff[t]);
    ck_assert_int_eq(p.scratch_bytes % 64, 0);
    ck_assert_int_ge(aliases, 4); /* every SE and ADD of this subnet runs in place */
    ck_assert_int_ge(p.scratch_bytes, peak_layer);
    /* less than every tensor and the largest temporaries side by side */
    ck_assert_int_lt(p.scratch_bytes, sum + peak_tmp);
    printf("int8 scratch %ld bytes (all tensors %ld, largest layer in+out %ld, largest "
           "temporaries %ld)\n", p.scratch_bytes, sum, peak_layer, peak_tmp);
    free(first), free(last);
    ofa_quant_prepare_free(&p);
    fixture_free(&f);
}
END_TEST

/* ---- a plain integer reference ------------------------------------------ */

static int32_t mult_of(double real, int *shift)
{
    int32_t m;
    ofa_quant_multiplier(real, &m, shift);
    return m;
}

/* requant(acc, real) + z clamped to [lo, hi]; acc must fit int32. */
static int ref_out(int64_t acc, double real, int z, int lo, int hi)
{
    CHECK(acc >= INT32_MIN && acc <= INT32_MAX, "accumulator %lld overflows", (long long)acc);
    int s;
    int32_t m = mult_of(real, &s);
    int64_t v = (int64_t)ref_requant((int32_t)acc, m, s) + z;
    return (int)(v < lo ? lo : v > hi ? hi : v);
}

/* The shift of qk_add1 for scales ra, rb (over the output's): the largest
 * s <= 30 whose multipliers round(r 2^s) stay below 2^21. */
static int ref_add_shift(double ra, double rb)
{
    int s = -1100;
    while (s < 30 && llround(ldexp(fmax(ra, rb), s + 1)) < (1 << 21))
        s++;
    return s;
}

/* The residual add of input differences da, db as qk_add1 defines it, in
 * int64 and double: the sum of da, db times their multipliers at shift s
 * rounded halves up, or multiplied by 2^-s where s < 0. */
static int ref_add(int da, int db, double ra, double rb, int s, int zo)
{
    const int64_t v = da * llround(ldexp(ra, s)) + db * llround(ldexp(rb, s));
    const double y = s <= 0 ? ldexp((double)v, -s)
                            : floor(((double)v + ldexp(1.0, s - 1)) / ldexp(1.0, s));
    return (int)fmax(-128.0, fmin(127.0, y + zo));
}

/* The int8 network computed plainly from the model's own quantities: int64
 * sums of (x - zx) w over the valid taps, the reference requantization and
 * the prepared tables (tested on their own above). */
static void ref_forward(const struct ofa_model *m, const struct ofa_qprep *p, const int8_t *x0,
                        int8_t *logits)
{
    int8_t **t = calloc((size_t)m->n_tensors, sizeof *t);
    const long n0 = (long)m->res * m->res * m->in_channels;
    t[0] = malloc((size_t)n0);
    memcpy(t[0], x0, (size_t)n0);
    for (int i = 0; i < m->n_layers; i++) {
        const struct ofa_layer *L = &m->layers[i];
        const struct ofa_qlayer *q = &p->layers[i];
        const struct ofa_qp ti = m->tq[L->in], to = m->tq[L->out];
        const int8_t *in = t[L->in];
        int8_t *out = malloc((size_t)L->Ho * L->Wo * L->Cout);
        const long HW = (long)L->H * L->W;
        switch (L->kind) {
        case OFA_LAYER_CONV:
        case OFA_LAYER_DW:
        case OFA_LAYER_FC: {
            const int dw = L->kind == OFA_LAYER_DW, K = L->kind == OFA_LAYER_FC ? 1 : L->K;
            const int pad = L->kind == OFA_LAYER_FC ? 0 : L->pad;
            const struct ofa_qp tg = L->act == OFA_ACT_HSWISH ? L->pre : to;
            const int lo = L->act == OFA_ACT_RELU ? to.zp : -128;
            for (int oy = 0; oy < L->Ho; oy++)
                for (int ox = 0; ox < L->Wo; ox++)
                    for (int co = 0; co < L->Cout; co++) {
                        int64_t acc = m->qbias[L->qb + co];
                        for (int ky = 0; ky < K; ky++)
                            for (int kx = 0; kx < K; kx++) {
                                int iy = oy * L->stride - pad + ky, ix = ox * L->stride - pad + kx;
                                if (iy < 0 || iy >= L->H || ix < 0 || ix >= L->W)
                                    continue;
                                for (int ci = 0; ci < (dw ? 1 : L->Cin); ci++) {
                                    int c = dw ? co : ci;
                                    long wi = dw ? (long)(ky * K + kx) * L->Cout + co
                                                 : (((long)co * K + ky) * K + kx) * L->Cin + ci;
                                    acc += (int64_t)(in[((long)iy * L->W + ix) * L->Cin + c] -
                                                     ti.zp) * m->qweights[L->qw + wi];
                                }
                            }
                        int v = ref_out(acc, (double)ti.scale * m->wscale[L->ws + co] / tg.scale,
                                        tg.zp, lo, 127);
                        out[((long)oy * L->Wo + ox) * L->Cout + co] =
                            (int8_t)(L->act == OFA_ACT_HSWISH ? q->lut[v + 128] : v);
                    }
            break;
        }
        case OFA_LAYER_SE: {
            const int C = L->Cin, R = L->R;
            int *pool = malloc(sizeof(int) * (size_t)C), *h = malloc(sizeof(int) * (size_t)R);
            int *g = malloc(sizeof(int) * (size_t)C);
            for (int c = 0; c < C; c++) {
                int64_t sum = 0;
                for (long k = 0; k < HW; k++)
                    sum += in[k * C + c] - ti.zp;
                pool[c] = ref_out(sum, (double)ti.scale / ((double)HW * L->pool.scale),
                                  L->pool.zp, -128, 127);
            }
            for (int r = 0; r < R; r++) {
                int64_t acc = m->qbias[L->qb + r];
                for (int c = 0; c < C; c++)
                    acc += (int64_t)(pool[c] - L->pool.zp) * m->qweights[L->qw + (long)r * C + c];
                h[r] = ref_out(acc, (double)L->pool.scale * m->wscale[L->ws + r] / L->hid.scale,
                               L->hid.zp, L->hid.zp, 127);
            }
            for (int c = 0; c < C; c++) {
                int64_t acc = m->qbias[L->qb2 + c];
                for (int r = 0; r < R; r++)
                    acc += (int64_t)(h[r] - L->hid.zp) * m->qweights[L->qw2 + (long)c * R + r];
                g[c] = q->glut[ref_out(acc, (double)L->hid.scale * m->wscale[L->ws2 + c] /
                                                L->pre.scale, L->pre.zp, -128, 127) + 128];
            }
            for (long k = 0; k < HW; k++)
                for (int c = 0; c < C; c++)
                    out[k * C + c] = (int8_t)ref_out((int64_t)(in[k * C + c] - ti.zp) * g[c],
                                                     (double)ti.scale / (256.0 * to.scale), to.zp,
                                                     -128, 127);
            free(pool), free(h), free(g);
            break;
        }
        case OFA_LAYER_ADD: {
            const struct ofa_qp t2 = m->tq[L->in2];
            const int8_t *in2 = t[L->in2];
            const double ra = (double)ti.scale / to.scale, rb = (double)t2.scale / to.scale;
            const int s = ref_add_shift(ra, rb);
            for (long k = 0; k < HW * L->Cout; k++)
                out[k] = (int8_t)ref_add(in[k] - ti.zp, in2[k] - t2.zp, ra, rb, s, to.zp);
            break;
        }
        case OFA_LAYER_POOL:
            for (int c = 0; c < L->Cin; c++) {
                int64_t sum = 0;
                for (long k = 0; k < HW; k++)
                    sum += in[k * L->Cin + c] - ti.zp;
                out[c] = (int8_t)ref_out(sum, (double)ti.scale / ((double)HW * to.scale), to.zp,
                                         -128, 127);
            }
            break;
        }
        t[L->out] = out;
    }
    memcpy(logits, t[m->n_tensors - 1], (size_t)m->num_classes);
    for (int k = 0; k < m->n_tensors; k++)
        free(t[k]);
    free(t);
}

/* The optimised kernels (buffer plan, folded biases, padded rows, in-place
 * SE and ADD, blocked depthwise conv) compute exactly the plain reference. */
START_TEST(test_runtime_matches_plain_integer_reference)
{
    tu_threads(1);
    struct fixture f;
    fixture_init(&f, OFA_CALIB_MINMAX, 0.0);
    struct ofa_qprep p;
    ofa_quant_prepare(&p, &f.m, 1);
    const int K = f.m.num_classes;
    int8_t *x = malloc((size_t)f.insz), *ref = malloc((size_t)K), *got = malloc((size_t)K);
    struct ofa_qrun *q = ofa_qrun_create(&f.m);
    for (int i = 0; i < 16; i++) {
        for (long k = 0; k < f.insz; k++)
            x[k] = ofa_quant_value(f.x_test[(long)i * f.insz + k], f.m.tq[0]);
        ref_forward(&f.m, &p, x, ref);
        ofa_qrun_forward_q(q, got, f.x_test + (long)i * f.insz);
        ck_assert_mem_eq(got, ref, (size_t)K);
    }
    ofa_qrun_free(q);
    free(x), free(ref), free(got);
    ofa_quant_prepare_free(&p);
    fixture_free(&f);
}
END_TEST

/* Fuzzing regressions (tests/fixtures/data/fuzz-model-*.h5). Models the
 * int8 runtime cannot run are refused by the loader (they aborted in
 * ofa_quant_prepare); models with a tensor no layer reads run as the plain
 * reference does (the planner gave such a tensor no lifetime and placed it
 * over live ones: an SE gate overwritten, wrong logits). The files are the
 * fuzzer's, given the integrity header since (h5jam, then the header). */
static void fixture_file(char *buf, size_t n, const char *name)
{
    const char *src = getenv("OFA_SRCDIR");
    snprintf(buf, n, "%s/tests/fixtures/data/%s", src ? src : ".", name);
}

START_TEST(test_fuzz_models_refused_or_run_right)
{
    tu_threads(1);
    static const struct {
        const char *file, *refused;
    } cases[] = {
        {"fuzz-model-int8-hsigmoid-abort.h5", "activation hsigmoid has no int8 kernel"},
        {"fuzz-model-int8-pool-abort.h5", "exceeds the int8 runtime's"},
        {"fuzz-model-int8-dead-tensor.h5", NULL},
        {"fuzz-model-int8-dead-se-overflow.h5", NULL},
    };
    for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
        char path[1200];
        fixture_file(path, sizeof path, cases[t].file);
        struct ofa_model m;
        struct ofa_error err;
        int rc = ofa_model_load(path, &m, &err);
        if (cases[t].refused) {
            ck_assert_msg(rc == -1 && strstr(err.msg, cases[t].refused), "%s: %s", path,
                          rc ? err.msg : "loaded");
            continue;
        }
        ck_assert_msg(rc == 0, "%s: %s", path, err.msg);
        struct ofa_qprep p;
        ofa_quant_prepare(&p, &m, 1);
        const long insz = (long)m.res * m.res * m.in_channels;
        const int K = m.num_classes;
        float *xf = malloc(sizeof(float) * (size_t)insz);
        int8_t *x = malloc((size_t)insz), *ref = malloc((size_t)K), *got = malloc((size_t)K);
        struct ofa_rng r;
        ofa_rng_seed(&r, 7);
        for (long k = 0; k < insz; k++) {
            xf[k] = 2.0f * ofa_rng_uniform(&r) - 1.0f;
            x[k] = ofa_quant_value(xf[k], m.tq[0]);
        }
        ref_forward(&m, &p, x, ref);
        struct ofa_qrun *q = ofa_qrun_create(&m);
        ofa_qrun_forward_q(q, got, xf);
        ck_assert_msg(memcmp(got, ref, (size_t)K) == 0, "%s: int8 logits differ from the reference",
                      cases[t].file);
        ofa_qrun_free(q);
        free(xf), free(x), free(ref), free(got);
        ofa_quant_prepare_free(&p);
        ofa_model_free(&m);
    }
}
END_TEST

/* The vector kernels (the avx512vnni and avx512vbmi variants and this
 * program's own build, when its flags target AVX-512 VNNI) against the plain ones, tensor by
 * tensor, on models with awkward shapes: channel counts that are not
 * multiples of 16 (or 4: the RGB stem's patch rows are 27 bytes), output
 * widths that are not multiples of the 8-pixel blocks (some below 4),
 * kernels 3, 5 and 7, stride 2 with and without odd input sizes, SE with
 * odd widths, hswish and relu; and the logits against the plain reference. */
/* The kernel variants to compare: the portable kernels, those built with
 * this program's flags, then the AVX2, AVX-512 VNNI and VBMI ones where this
 * CPU runs them (NULL otherwise). */
#define N_VARIANTS 5
static const char *const variant_names[N_VARIANTS] = {"portable", "test-build", "avx2",
                                                      "avx512vnni", "avx512vbmi"};
static void kernel_variants(ofa_qnet_fn fns[N_VARIANTS])
{
    fns[0] = ofa_qnet_run_portable, fns[1] = ofa_qnet_run_test;
    fns[2] = fns[3] = fns[4] = NULL;
#ifdef OFA_HAVE_QNET_AVX2
    setenv("OFA_QRUN_ISA", "avx2", 1);
    if (strcmp(ofa_qrun_isa(), "avx2") == 0)
        fns[2] = ofa_qnet_run_avx2;
#endif
#ifdef OFA_HAVE_QNET_AVX512
    setenv("OFA_QRUN_ISA", "avx512vnni", 1);
    if (strcmp(ofa_qrun_isa(), "avx512vnni") == 0)
        fns[3] = ofa_qnet_run_avx512vnni;
#endif
#ifdef OFA_HAVE_QNET_AVX512VBMI
    setenv("OFA_QRUN_ISA", "avx512vbmi", 1);
    if (strcmp(ofa_qrun_isa(), "avx512vbmi") == 0)
        fns[4] = ofa_qnet_run_avx512vbmi;
#endif
    unsetenv("OFA_QRUN_ISA");
}

/* The residual add on every pair of int8 inputs (and a tail that is not a
 * whole vector), for scale ratios from 2^-40 to 2^40, equal ones, zero and
 * random ones: every kernel variant gives the reference's bytes, and those
 * are within ofa_quant_add_mults' bound of the real sum, clamped. */
START_TEST(test_add_within_its_bound_of_the_real_sum)
{
    struct ofa_rng r;
    ofa_rng_seed(&r, 17);
    ofa_qnet_fn fns[N_VARIANTS];
    kernel_variants(fns);
    const long n = 65536 + 13;
    int8_t *s = malloc((size_t)(4 * n));
    const double edge[][2] = {{1, 1}, {0.5, 0.5}, {1, 0}, {0, 0}, {0.75, 1.25},
                              {0x1p-40, 0x1p-33}, {0x1p20, 0.5}, {0x1p21, 0x1.0000cp21},
                              {0x1p40, 0x1.00001p40}, {3.0, 0x1p-25}};
    const int n_edge = (int)(sizeof edge / sizeof edge[0]);
    long off_half = 0, total = 0;
    for (int it = 0; it < n_edge + 40; it++) {
        double ra, rb;
        if (it < n_edge)
            ra = edge[it][0], rb = edge[it][1];
        else
            ra = exp2(-12.0 + 16.0 * ofa_rng_uniform(&r)),
            rb = exp2(-12.0 + 16.0 * ofa_rng_uniform(&r));
        struct ofa_qlayer L = {0};
        L.kind = OFA_QK_ADD;
        L.H = L.Ho = 1, L.W = L.Wo = (int32_t)n, L.Cin = L.Cout = 1;
        L.in = 0, L.in2 = (int32_t)n, L.out = (int32_t)(2 * n), L.tmp = (int32_t)(3 * n);
        L.zi = (int32_t)ofa_rng_below(&r, 256) - 128;
        L.zi2 = (int32_t)ofa_rng_below(&r, 256) - 128;
        L.zo = (int32_t)ofa_rng_below(&r, 256) - 128;
        ofa_quant_add_mults(&L, ra, rb);
        const int sh = ref_add_shift(ra, rb);
        CHECK(L.sa == sh, "ratios %g, %g: shift %d, want %d", ra, rb, L.sa, sh);
        CHECK(L.ma < (1 << 21) && L.mb < (1 << 21), "multipliers %d, %d", L.ma, L.mb);
        for (long k = 0; k < n; k++) {
            s[k] = (int8_t)(k < 65536 ? (k & 255) - 128 : (int)ofa_rng_below(&r, 256) - 128);
            s[n + k] = (int8_t)(k < 65536 ? (k >> 8) - 128 : (int)ofa_rng_below(&r, 256) - 128);
        }
        const struct ofa_qnet net = {1, &L, 0, L.out, 1, (int32_t)(4 * n)};
        const double bound = sh < 30 ? 255.0 * fmax(ra, rb) / (0x1p20 - 0.25) : 255.0 * 0x1p-30;
        int8_t *want = s + 3 * n;
        for (int f = 0; f < N_VARIANTS; f++) {
            if (!fns[f])
                continue;
            memset(s + 2 * n, 0x5a, (size_t)n);
            fns[f](&net, s);
            if (f > 0) {
                CHECK(memcmp(s + 2 * n, want, (size_t)n) == 0,
                      "ratios %g, %g: the %s kernels differ from the portable ones", ra, rb,
                      variant_names[f]);
                continue;
            }
            memcpy(want, s + 2 * n, (size_t)n);
            for (long k = 0; k < n; k++) {
                const int da = s[k] - L.zi, db = s[n + k] - L.zi2;
                CHECK(want[k] == ref_add(da, db, ra, rb, sh, L.zo),
                      "ratios %g, %g: add(%d, %d) = %d, the reference %d", ra, rb, s[k],
                      s[n + k], want[k], ref_add(da, db, ra, rb, sh, L.zo));
                const double real = da * ra + db * rb + L.zo;
                const double near = fmax(-128.0, fmin(127.0, floor(real + 0.5)));
                const double lo = fmax(-128.0, fmin(127.0, real - bound));
                const double hi = fmax(-128.0, fmin(127.0, real + bound));
                CHECK(want[k] >= floor(lo + 0.5) && want[k] <= floor(hi + 0.5),
                      "ratios %g, %g: add(%d, %d) = %d, real sum %.9g (bound %g)", ra, rb, s[k],
                      s[n + k], want[k], real, bound);
                off_half += want[k] != near;
                total++;
            }
        }
    }
    printf("residual add: %ld of %ld results not the real sum's nearest integer (within the "
           "bound of a half)\n", off_half, total);
    free(s);
}
END_TEST

START_TEST(test_vector_kernels_match_plain_kernels_on_odd_shapes)
{
    tu_threads(1);
    /* the grey stems: patches by byte permute from one (stride 2) and both
     * (stride 1, rows of 30 bytes) 64-byte halves of their window */
    static const struct {
        int in_ch, stem, first, w0, w1, e, res, stem_stride, s0;
        const char *subnet;
    } cases[] = {
        {3, 5, 7, 13, 19, 3, 19, 2, 1, "r19-d22-k37.75-e33.33"},
        {1, 9, 11, 21, 27, 5, 23, 2, 1, "r23-d22-k55.37-e55.55"},
        {3, 17, 15, 9, 35, 3, 14, 2, 1, "r14-d22-k73.53-e33.33"},
        {1, 16, 16, 24, 40, 3, 28, 1, 1, "r28-d22-k33.35-e33.33"},
        /* depthwise inputs of 4 columns or fewer (qv_dw_narrow), 5x5 and 7x7
         * kernels: 4x4, 3x3, 2x2 and 1x1, strides 1 and 2 */
        {3, 8, 8, 21, 35, 3, 8, 2, 1, "r8-d22-k75.57-e33.33"},
        {1, 8, 8, 19, 37, 3, 12, 2, 2, "r12-d22-k57.75-e33.33"},
        {1, 8, 8, 17, 33, 3, 8, 2, 2, "r8-d22-k55.77-e33.33"},
    };
    ofa_qnet_fn fns[N_VARIANTS];
    kernel_variants(fns);
    for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
        struct ofa_space sp;
        small_space(&sp);
        sp.in_channels = cases[t].in_ch;
        sp.stem_stride = cases[t].stem_stride;
        sp.stem_width = cases[t].stem;
        sp.first_width = cases[t].first;
        sp.stages[0].width = cases[t].w0;
        sp.stages[0].se = 1;
        sp.stages[0].stride = cases[t].s0;
        sp.stages[1].width = cases[t].w1;
        sp.expands[0] = cases[t].e;
        sp.n_kernels = 3, sp.kernels[0] = 3, sp.kernels[1] = 5, sp.kernels[2] = 7;
        sp.resolutions[0] = cases[t].res;
        struct ofa_supernet net;
        ofa_supernet_init(&net, &sp, 11 + t);
        randomize_bn(&net, 12 + t);
        struct ofa_subnet sub;
        struct ofa_error err;
        ck_assert_msg(ofa_subnet_parse(&sp, cases[t].subnet, &sub, &err) == 0, "%s", err.msg);
        struct ofa_model m;
        ofa_model_materialise(&m, &net, &sub);
        ofa_supernet_free(&net);
        for (int c = 0; c < m.in_channels; c++)
            m.norm_mean[c] = 0.5f, m.norm_std[c] = 0.25f;
        const long insz = (long)m.res * m.res * m.in_channels;
        const int n = 4;
        uint8_t *px = malloc((size_t)(n * insz));
        float *xf = malloc(sizeof(float) * (size_t)(n * insz));
        make_images(&m, n, 3 + t, px, xf);
        const struct ofa_quant_opts o = {OFA_CALIB_MINMAX, 0};
        ofa_quant_calibrate(&m, xf, n, &o);
        struct ofa_qprep p;
        ofa_quant_prepare(&p, &m, 1);
        void *s = malloc((size_t)p.scratch_bytes);
        long *woff = malloc(sizeof(long) * (size_t)(p.n_layers + 1));
        woff[0] = 0;
        for (int l = 0; l < p.n_layers; l++) {
            const struct ofa_tshape *ts = &m.tensors[m.layers[l].out];
            woff[l + 1] = woff[l] + (long)ts->H * ts->W * ts->C;
        }
        int8_t *x = malloc((size_t)insz), *want = malloc((size_t)woff[p.n_layers]);
        int8_t *ref = malloc((size_t)m.num_classes);
        int packed = 0; /* layers prepared for the vector kernels (w2 of a conv) */
        for (int l = 0; l < p.n_layers; l++) {
            const struct ofa_qlayer *q = &p.layers[l];
            const int conv = q->kind == OFA_QK_CONV || q->kind == OFA_QK_DW || q->kind == OFA_QK_FC;
            ck_assert(!conv || q->w2 != NULL);
            packed += conv;
        }
        for (int i = 0; i < n; i++) {
            for (long k = 0; k < insz; k++)
                x[k] = ofa_quant_value(xf[(long)i * insz + k], m.tq[0]);
            ref_forward(&m, &p, x, ref);
            for (int f = 0; f < N_VARIANTS; f++) {
                if (!fns[f])
                    continue;
                memset(s, 0x5a, (size_t)p.scratch_bytes);
                memcpy((int8_t *)s + p.net.in_off, x, (size_t)insz);
                struct ofa_qnet one = p.net;
                one.n_layers = 1;
                for (int l = 0; l < p.n_layers; l++) {
                    one.layers = &p.layers[l];
                    fns[f](&one, s);
                    const struct ofa_tshape *ts = &m.tensors[m.layers[l].out];
                    const long sz = (long)ts->H * ts->W * ts->C;
                    int8_t *o8 = (int8_t *)s + p.layers[l].out;
                    if (f == 0) /* the plain kernels' tensors, one after another */
                        memcpy(want + woff[l], o8, (size_t)sz);
                    else
                        CHECK(memcmp(o8, want + woff[l], (size_t)sz) == 0,
                              "case %zu image %d: the %s kernels differ from the portable "
                              "ones at layer %d (kind %d, K %d, %dx%dx%d)",
                              t, i, variant_names[f], l, (int)m.layers[l].kind, m.layers[l].K, m.layers[l].Ho,
                              m.layers[l].Wo, m.layers[l].Cout);
                }
                CHECK(memcmp((int8_t *)s + p.net.out_off, ref, (size_t)m.num_classes) == 0,
                      "case %zu image %d: the %s kernels' logits differ from the reference",
                      t, i, variant_names[f]);
            }
        }
        printf("odd shapes %zu (%s, %d layers, %d with packed weights): kernels equal to the "
               "portable ones:", t, cases[t].subnet, p.n_layers, packed);
        for (int f = 1; f < N_VARIANTS; f++)
            if (fns[f])
                printf(" %s", variant_names[f]);
        printf("\n");
        free(s), free(x), free(want), free(woff), free(ref), free(px), free(xf);
        ofa_quant_prepare_free(&p);
        ofa_model_free(&m);
    }
}
END_TEST

/* ---- instruction sets and threads ---------------------------------------- */

/* The int8 logits of m on n images x (insz floats each) from every vector
 * variant this CPU runs, and from the kernels built with this program's
 * flags, equal the portable ones byte for byte; returns how many vector
 * variants were compared. */
static int isa_logits_equal(const struct ofa_model *m, const float *x, int n, long insz)
{
    const int K = m->num_classes;
    int8_t *ref = malloc((size_t)(n * K)), *got = malloc((size_t)(n * K));
    setenv("OFA_QRUN_ISA", "portable", 1);
    ck_assert_str_eq(ofa_qrun_isa(), "portable");
    struct ofa_qrun *q = ofa_qrun_create(m);
    for (int i = 0; i < n; i++)
        ofa_qrun_forward_q(q, ref + (long)i * K, x + (long)i * insz);
    ofa_qrun_free(q);
    /* the kernels built with this program's flags */
    struct ofa_qprep p;
    ofa_quant_prepare(&p, m, 1);
    void *s = malloc((size_t)p.scratch_bytes);
    for (int i = 0; i < n; i++) {
        int8_t *in = (int8_t *)s + p.net.in_off;
        for (long k = 0; k < insz; k++)
            in[k] = ofa_quant_value(x[(long)i * insz + k], m->tq[0]);
        ofa_qnet_run_test(&p.net, s);
        ck_assert_mem_eq((int8_t *)s + p.net.out_off, ref + (long)i * K, (size_t)K);
    }
    free(s);
    ofa_quant_prepare_free(&p);
    const char *names[] = {"avx2", "avx512vnni", "avx512vbmi"};
    int tried = 0;
    for (int k = 0; k < 3; k++) {
        setenv("OFA_QRUN_ISA", names[k], 1);
        if (strcmp(ofa_qrun_isa(), names[k]) != 0) {
            printf("ISA %s: not available here\n", names[k]);
            continue;
        }
        q = ofa_qrun_create(m);
        for (int i = 0; i < n; i++)
            ofa_qrun_forward_q(q, got + (long)i * K, x + (long)i * insz);
        ofa_qrun_free(q);
        ck_assert_mem_eq(got, ref, (size_t)(n * K));
        printf("ISA %s: identical int8 logits to portable\n", names[k]);
        tried++;
    }
    unsetenv("OFA_QRUN_ISA");
    free(ref), free(got);
    return tried;
}

START_TEST(test_every_isa_gives_identical_logits)
{
    tu_threads(1);
    struct fixture f;
    fixture_init(&f, OFA_CALIB_MINMAX, 0.0);
    int tried = isa_logits_equal(&f.m, f.x_test, f.ntest, f.insz);
    fixture_free(&f);
    /* 7x7 depthwise kernels too, at 20 pixels: widths 10 and 5 (odd, not
     * multiples of the kernels' pixel blocks), a 5x5 layer under a 7x7
     * kernel, channel counts 8, 36 and 48 (not multiples of 16) */
    struct ofa_space sp;
    small_space(&sp);
    sp.n_kernels = 2, sp.kernels[0] = 3, sp.kernels[1] = 7;
    sp.n_res = 1, sp.resolutions[0] = 20;
    struct ofa_supernet net;
    ofa_supernet_init(&net, &sp, 7);
    randomize_bn(&net, 8);
    struct ofa_subnet sub;
    struct ofa_error err;
    ck_assert_msg(ofa_subnet_parse(&sp, "r20-d22-k77.37-e33.33", &sub, &err) == 0, "%s", err.msg);
    struct ofa_model m;
    ofa_model_materialise(&m, &net, &sub);
    ofa_supernet_free(&net);
    const int n = 32;
    const long insz = 20L * 20 * 3;
    uint8_t *px = malloc((size_t)(n * insz));
    float *x = malloc(sizeof(float) * (size_t)(n * insz));
    make_images(&m, n, 4, px, x);
    struct ofa_quant_opts o = {OFA_CALIB_MINMAX, 0.0};
    ofa_quant_calibrate(&m, x, n, &o);
    tried += isa_logits_equal(&m, x, n, insz);
    free(px), free(x);
    ofa_model_free(&m);
    printf("runtime ISA: %s (%d vector variant runs compared)\n", ofa_qrun_isa(), tried);
}
END_TEST

START_TEST(test_batch_forward_matches_single_images_on_two_threads)
{
    tu_threads(2);
    struct fixture f;
    fixture_init(&f, OFA_CALIB_MINMAX, 0.0);
    const int K = f.m.num_classes, n = f.ntest;
    float *lq = malloc(sizeof(float) * (size_t)(n * K));
    int8_t *one = malloc((size_t)K);
    struct ofa_qrun *q = ofa_qrun_create(&f.m);
    ofa_qrun_forward(q, lq, f.x_test, n);
    const struct ofa_qp o = f.m.tq[f.m.n_tensors - 1];
    for (int i = 0; i < n; i++) {
        ofa_qrun_forward_q(q, one, f.x_test + (long)i * f.insz);
        for (int k = 0; k < K; k++)
            CHECK(lq[(long)i * K + k] == o.scale * (float)(one[k] - o.zp), "image %d", i);
    }
    ofa_qrun_free(q);
    free(lq), free(one);
    fixture_free(&f);
}
END_TEST

/* Per-layer timing (host-int8 latency tables): a figure per layer, and the
 * runtime computes the same logits afterwards. */
START_TEST(test_layer_timing_leaves_the_runtime_intact)
{
    struct fixture f;
    fixture_init(&f, OFA_CALIB_MINMAX, 0.0);
    const int K = f.m.num_classes;
    int8_t *before = malloc((size_t)K), *after = malloc((size_t)K);
    double *ms = malloc(sizeof(double) * (size_t)(f.m.n_layers + 1));
    ms[f.m.n_layers] = -7.0; /* sentinel: nothing written past the layers */
    struct ofa_qrun *q = ofa_qrun_create(&f.m);
    ofa_qrun_forward_q(q, before, f.x_test);
    ofa_qrun_time_layers(q, f.x_test + f.insz, 3, ms);
    for (int i = 0; i < f.m.n_layers; i++)
        CHECK(ms[i] >= 0 && isfinite(ms[i]) && ms[i] < 1e3, "layer %d: %g ms", i, ms[i]);
    ck_assert(ms[f.m.n_layers] == -7.0);
    ofa_qrun_forward_q(q, after, f.x_test);
    ck_assert_int_eq(memcmp(before, after, (size_t)K), 0);
    ofa_qrun_free(q);
    free(before), free(after), free(ms);
    fixture_free(&f);
}
END_TEST

/* A quantized model saved to model.h5 and loaded back runs to the same int8
 * logits. */
START_TEST(test_quantized_model_round_trips_through_model_h5)
{
    tu_threads(1);
    struct fixture f;
    fixture_init(&f, OFA_CALIB_PERCENTILE, 99.9);
    char dir[] = "/tmp/check_quant.XXXXXX", path[256];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/model.h5", dir);
    struct ofa_error err;
    ck_assert_msg(ofa_model_save(path, &f.m, &err) == 0, "%s", err.msg);
    struct ofa_model back;
    memset(&back, 0, sizeof back);
    ck_assert_msg(ofa_model_load(path, &back, &err) == 0, "%s", err.msg);
    const int K = f.m.num_classes;
    int8_t *a = malloc((size_t)K), *b = malloc((size_t)K);
    struct ofa_qrun *qa = ofa_qrun_create(&f.m), *qb = ofa_qrun_create(&back);
    for (int i = 0; i < 8; i++) {
        ofa_qrun_forward_q(qa, a, f.x_test + (long)i * f.insz);
        ofa_qrun_forward_q(qb, b, f.x_test + (long)i * f.insz);
        ck_assert_mem_eq(a, b, (size_t)K);
    }
    ofa_qrun_free(qa), ofa_qrun_free(qb);
    free(a), free(b);
    ofa_model_free(&back);
    unlink(path);
    rmdir(dir);
    fixture_free(&f);
}
END_TEST

/* ---- the generated model.c ---------------------------------------------- */

static int run(const char *cmd)
{
    int rc = system(cmd);
    return rc;
}

static const char *MAIN_C =
    "#include <stdio.h>\n"
    "#include <stdlib.h>\n"
    "#include \"model.h\"\n"
    "static int32_t scratch[(OFA_MODEL_SCRATCH + 3) / 4];\n"
    "int main(int argc, char **argv)\n"
    "{\n"
    "    enum { N = OFA_MODEL_RES * OFA_MODEL_RES * OFA_MODEL_CHANNELS };\n"
    "    static uint8_t px[N];\n"
    "    int8_t logits[OFA_MODEL_CLASSES];\n"
    "    FILE *in, *out;\n"
    "    if (argc != 3 || !(in = fopen(argv[1], \"rb\")) || !(out = fopen(argv[2], \"wb\")))\n"
    "        return 2;\n"
    "    while (fread(px, 1, N, in) == N) {\n"
    "        int top = ofa_model_run(px, logits, scratch);\n"
    "        int8_t t = (int8_t)top;\n"
    "        if (top < 0 || fwrite(logits, 1, OFA_MODEL_CLASSES, out) != OFA_MODEL_CLASSES ||\n"
    "            fwrite(&t, 1, 1, out) != 1)\n"
    "            return 3;\n"
    "    }\n"
    "    if (ofa_model_run(px, logits, (char *)scratch + 1) != -1)\n"
    "        return 4;\n"
    "    return fclose(out) == 0 && fclose(in) == 0 ? 0 : 5;\n"
    "}\n";

/* ofa-extract's flash figure (ofa_subnet_flash_bytes, from the subnet
 * alone) is what the generated model.c holds, but for the class names'
 * characters. */
START_TEST(test_extract_flash_figure_is_model_c)
{
    tu_threads(1);
    static const char *subnets[] = {SUBNET, "r16-d22-k33.33-e33.33", "r16-d22-k55.55-e33.33"};
    for (size_t i = 0; i < sizeof subnets / sizeof *subnets; i++) {
        struct ofa_model m;
        make_model(&m, subnets[i]);
        const int n = 16, sz = m.res * m.res * m.in_channels;
        uint8_t *px = malloc((size_t)n * sz);
        float *x = malloc((size_t)n * sz * sizeof(float));
        make_images(&m, n, 3, px, x);
        struct ofa_quant_opts o = {OFA_CALIB_MINMAX, 0.0};
        ofa_quant_calibrate(&m, x, n, &o);
        char dir[] = "/tmp/check_quant.XXXXXX";
        ck_assert_ptr_nonnull(mkdtemp(dir));
        struct ofa_emit_stats st;
        struct ofa_error err;
        ck_assert_msg(ofa_emit_c(&m, dir, &st, &err) == 0, "%s", err.msg);
        struct ofa_space sp;
        small_space(&sp);
        struct ofa_subnet s;
        ck_assert_int_eq(ofa_subnet_parse(&sp, subnets[i], &s, &err), 0);
        long names = 0; /* class names "0", "1", ... */
        for (int k = 0; k < m.num_classes; k++)
            names += k < 10 ? 1 : k < 100 ? 2 : 3;
        ck_assert_int_eq(st.flash_bytes, ofa_subnet_flash_bytes(&sp, &s) + names);
        char cmd[256];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        ck_assert_int_eq(system(cmd), 0);
        free(px), free(x);
        ofa_model_free(&m);
    }
}
END_TEST

START_TEST(test_model_c_compiles_and_matches_runtime)
{
    tu_threads(1);
    if (run("command -v cc >/dev/null 2>&1") != 0) {
        printf("no system C compiler (cc): generated model.c not compiled\n");
        return;
    }
    struct fixture f;
    fixture_init(&f, OFA_CALIB_MINMAX, 0.0);
    /* a class name that needs escaping */
    f.m.class_names = calloc((size_t)f.m.num_classes, OFA_CLASS_NAME_MAX);
    for (int k = 0; k < f.m.num_classes; k++)
        snprintf(f.m.class_names[k], OFA_CLASS_NAME_MAX, k == 3 ? "say \"hi\"\\?\?=" : "c%d", k);
    char dir[] = "/tmp/check_quant.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    struct ofa_emit_stats st;
    struct ofa_error err;
    ck_assert_msg(ofa_emit_c(&f.m, dir, &st, &err) == 0, "%s", err.msg);
    char cmd[4096], path[1024];
    snprintf(path, sizeof path, "%s/main.c", dir);
    FILE *fm = fopen(path, "w");
    ck_assert_ptr_nonnull(fm);
    fputs(MAIN_C, fm);
    fclose(fm);
    snprintf(cmd, sizeof cmd,
             "cd %s && cc -std=c99 -Wall -Wextra -Werror -pedantic -c model.c -o model.o && "
             "cc -std=c99 -Wall -Wextra -Werror -c main.c -o main.o && "
             "cc -o run main.o model.o", dir);
    ck_assert_msg(run(cmd) == 0, "compiling the generated model.c failed: %s", cmd);
    snprintf(path, sizeof path, "%s/px.bin", dir);
    FILE *fp = fopen(path, "wb");
    ck_assert_ptr_nonnull(fp);
    ck_assert_int_eq(fwrite(f.px_test, 1, (size_t)(f.ntest * f.insz), fp),
                     (size_t)(f.ntest * f.insz));
    fclose(fp);
    snprintf(cmd, sizeof cmd, "cd %s && ./run px.bin logits.bin", dir);
    ck_assert_int_eq(run(cmd), 0);
    const int K = f.m.num_classes;
    int8_t *got = malloc((size_t)(f.ntest * (K + 1))), *ref = malloc((size_t)K);
    snprintf(path, sizeof path, "%s/logits.bin", dir);
    fp = fopen(path, "rb");
    ck_assert_ptr_nonnull(fp);
    ck_assert_int_eq(fread(got, 1, (size_t)(f.ntest * (K + 1)), fp), (size_t)(f.ntest * (K + 1)));
    fclose(fp);
    struct ofa_qrun *q = ofa_qrun_create(&f.m);
    for (int i = 0; i < f.ntest; i++) {
        ofa_qrun_forward_q(q, ref, f.x_test + (long)i * f.insz);
        ck_assert_mem_eq(got + (long)i * (K + 1), ref, (size_t)K);
        ck_assert_int_eq(got[(long)i * (K + 1) + K], argmax_i8(ref, K));
    }
    ofa_qrun_free(q);

    /* flash: the estimate against the object compiled for size */
    snprintf(cmd, sizeof cmd,
             "cd %s && cc -std=c99 -Os -c model.c -o model_os.o && size model_os.o > size.txt",
             dir);
    if (run("command -v size >/dev/null 2>&1") == 0 && run(cmd) == 0) {
        snprintf(path, sizeof path, "%s/size.txt", dir);
        fp = fopen(path, "r");
        ck_assert_ptr_nonnull(fp);
        long text = 0, data = 0, bss = 0;
        char line[512];
        ck_assert_ptr_nonnull(fgets(line, sizeof line, fp));
        ck_assert_int_eq(fscanf(fp, "%ld %ld %ld", &text, &data, &bss), 3);
        fclose(fp);
        const long measured = text + data;
        printf("model.c: flash estimate %ld bytes, compiled -Os %ld (text %ld + data %ld); "
               "SRAM %ld bytes\n", st.flash_bytes, measured, text, data, st.sram_bytes);
        ck_assert_msg(labs(st.flash_bytes - measured) <= measured / 10,
                      "flash estimate %ld vs measured %ld", st.flash_bytes, measured);
    }
    struct ofa_qprep p;
    ofa_quant_prepare(&p, &f.m, 0); /* what the emitter plans */
    ck_assert_int_eq(st.sram_bytes, p.scratch_bytes);
    ofa_quant_prepare_free(&p);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(run(cmd), 0);
    free(got), free(ref);
    fixture_free(&f);
}
END_TEST

/* An emit into a missing directory fails with the path named and leaves
 * nothing behind. */
START_TEST(test_emit_c_reports_unwritable_directory)
{
    tu_threads(1);
    struct fixture f;
    fixture_init(&f, OFA_CALIB_MINMAX, 0.0);
    struct ofa_emit_stats st = {-1, -1};
    struct ofa_error err = {0};
    ck_assert_int_ne(ofa_emit_c(&f.m, "/nonexistent-dir/ofa", &st, &err), 0);
    ck_assert_ptr_nonnull(strstr(err.file, "/nonexistent-dir/ofa/model."));
    ck_assert_int_eq(st.flash_bytes, -1);
    fixture_free(&f);
}
END_TEST

static Suite *quant_suite(void)
{
    Suite *s = suite_create("quant");
    TCase *tc = tcase_create("requant");
    tcase_add_test(tc, test_requant_matches_reference_and_real_product);
    tcase_add_test(tc, test_requant_row_matches_scalar);
#ifdef QK_HAVE_VEC
    tcase_add_test(tc, test_vector_requant_matches_scalar);
    tcase_add_test(tc, test_vector_copy);
#endif
    tcase_add_test(tc, test_add_within_its_bound_of_the_real_sum); /* every variant built */
    suite_add_tcase(s, tc);
    TCase *tm = tcase_create("model");
    tcase_set_timeout(tm, 120);
    tcase_add_test(tm, test_int8_close_to_fp32_minmax);
    tcase_add_test(tm, test_int8_close_to_fp32_percentile);
    tcase_add_test(tm, test_quantized_parameters_are_consistent);
    tcase_add_test(tm, test_degenerate_calibration_is_safe);
    tcase_add_test(tm, test_luts_match_float_within_half_step);
    tcase_add_test(tm, test_buffer_plan_keeps_live_tensors_apart);
    tcase_add_test(tm, test_runtime_matches_plain_integer_reference);
    tcase_add_test(tm, test_fuzz_models_refused_or_run_right);
    tcase_add_test(tm, test_every_isa_gives_identical_logits);
    tcase_add_test(tm, test_vector_kernels_match_plain_kernels_on_odd_shapes);
    tcase_add_test(tm, test_batch_forward_matches_single_images_on_two_threads);
    tcase_add_test(tm, test_layer_timing_leaves_the_runtime_intact);
    tcase_add_test(tm, test_quantized_model_round_trips_through_model_h5);
    tcase_add_test(tm, test_model_c_compiles_and_matches_runtime);
    tcase_add_test(tm, test_emit_c_reports_unwritable_directory);
    tcase_add_test(tm, test_extract_flash_figure_is_model_c);
    suite_add_tcase(s, tm);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(quant_suite());
    srunner_run_all(sr, CK_NORMAL);
    int nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    return nf == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
