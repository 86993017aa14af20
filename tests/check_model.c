/* check_model.c: the exported model: materialisation (BN folded, kernel
 * transform applied) computes what the supernet view computes, model.h5
 * round trips exactly, and loading refuses damaged or inconsistent files
 * with a message that names the problem. */
#include <config.h>

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model.h"
#include "rng.h"
#include "space.h"
#include "supernet.h"
#include "testutil.h"

/* A small space with every feature: SE and no SE, stride 1 and 2, residual
 * and not, elastic depth, kernel (optionally transformed), expand and
 * resolution. variant 1: RGB input, stem stride 2, stem and first widths
 * differ (no first residual), relu stem. */
static void tiny_space(struct ofa_space *sp, int transform, int variant)
{
    ofa_space_default(sp);
    sp->stem_width = 8;
    sp->first_width = 8;
    sp->n_stages = 2;
    sp->stages[0] = (struct ofa_stage_cfg){8, 1, OFA_ACT_RELU, 1};
    sp->stages[1] = (struct ofa_stage_cfg){12, 2, OFA_ACT_HSWISH, 0};
    sp->n_depths = 2, sp->depths[0] = 1, sp->depths[1] = 2;
    sp->n_expands = 2, sp->expands[0] = 2, sp->expands[1] = 3;
    sp->n_kernels = 3, sp->kernels[0] = 3, sp->kernels[1] = 5, sp->kernels[2] = 7;
    sp->n_res = 2, sp->resolutions[0] = 8, sp->resolutions[1] = 10;
    sp->head_width = 16;
    sp->num_classes = 3;
    sp->kernel_transform = transform;
    sp->zero_last_gamma = 0;
    if (variant == 1) {
        sp->in_channels = 3;
        sp->stem_stride = 2;
        sp->stem_act = OFA_ACT_RELU;
        sp->first_width = 6;
        sp->stages[0] = (struct ofa_stage_cfg){6, 1, OFA_ACT_HSWISH, 1};
        sp->stages[1] = (struct ofa_stage_cfg){10, 1, OFA_ACT_RELU, 1};
        sp->n_res = 2, sp->resolutions[0] = 12, sp->resolutions[1] = 16;
        sp->num_classes = 5;
    }
}

/* Randomise every tensor, BN affine and running statistics included, so that
 * folding is really exercised and nothing passes by symmetry. */
static void randomize(struct ofa_supernet *net, uint64_t seed)
{
    struct ofa_rng r;
    ofa_rng_seed(&r, seed);
    for (int i = 0; i < net->p.n; i++) {
        const struct ofa_param *t = &net->p.t[i];
        float *x = ofa_param_data(&net->p, i);
        int is_var = strstr(t->name, ".var") != NULL, is_gamma = strstr(t->name, ".gamma") != NULL;
        int is_mean = strstr(t->name, ".mean") != NULL;
        int is_matrix = strstr(t->name, ".m75") != NULL || strstr(t->name, ".m53") != NULL;
        for (size_t j = 0; j < t->numel; j++) {
            float u = 2.0f * ofa_rng_uniform(&r) - 1.0f;
            if (is_var)
                x[j] = 0.3f + 1.5f * ofa_rng_uniform(&r);
            else if (is_gamma)
                x[j] = 1.0f + 0.5f * u;
            else if (is_mean)
                x[j] = 0.8f * u;
            else if (is_matrix)
                x[j] += 0.1f * u;
            else
                x[j] = 0.5f * u;
        }
    }
}

static int argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

static double maxabs_of(const float *x, long n)
{
    double m = 0;
    for (long i = 0; i < n; i++)
        if (fabs(x[i]) > m)
            m = fabs(x[i]);
    return m;
}

/* Logits of the model for x [N, res, res, C] (scratch from the model). */
static float *model_logits(const struct ofa_model *m, const float *x, int N)
{
    float *scr = ofa_xmalloc(ofa_model_scratch_size(m, N) * sizeof(float), "test scratch");
    float *out = ofa_xmalloc((size_t)N * m->num_classes * sizeof(float), "test logits");
    ofa_model_forward(m, out, x, N, scr);
    free(scr);
    return out;
}

/* Materialise sub and compare with the supernet view in OFA_MODE_EVAL on N
 * random images: relative max error and identical top-1. */
static void check_matches(struct ofa_supernet *net, struct ofa_exec *ex,
                          const struct ofa_subnet *s, int N, unsigned long seed)
{
    const struct ofa_space *sp = &net->sp;
    char text[OFA_SUBNET_TEXT_MAX];
    ofa_subnet_format(sp, s, text, sizeof text);
    struct ofa_model m;
    ofa_model_materialise(&m, net, s);
    ck_assert_str_eq(m.subnet, text);
    ck_assert_int_eq(m.res, s->res);
    ck_assert_int_eq(m.in_channels, sp->in_channels);
    ck_assert_int_eq(m.num_classes, sp->num_classes);
    ck_assert_int_eq(m.quantized, 0);
    ck_assert_int_eq(m.n_tensors, m.n_layers + 1);
    const long nx = (long)N * s->res * s->res * sp->in_channels, K = sp->num_classes;
    float *x = tu_rand(nx, 1.5f, seed, 1);
    float *a = tu_copy(ofa_supernet_forward(net, ex, s, x, N, OFA_MODE_EVAL, 0.0f, NULL), N * K);
    float *b = model_logits(&m, x, N);
    const double err = tu_maxabs(a, b, N * K), scale = maxabs_of(a, N * K);
    ck_assert_msg(scale > 1e-3, "%s: degenerate logits", text);
    ck_assert_msg(err <= 2e-5 * scale + 1e-6, "%s: model differs from the supernet by %g (scale %g)",
                  text, err, scale);
    for (int n = 0; n < N; n++)
        ck_assert_msg(argmax(a + n * K, (int)K) == argmax(b + n * K, (int)K),
                      "%s: image %d changes its top-1", text, n);
    /* A batch of one gives the first image's logits (batch independence). */
    float *c = model_logits(&m, x, 1);
    ck_assert_msg(tu_maxabs(c, b, K) <= 1e-5 * scale + 1e-7, "%s: batch of one differs by %g (scale %g)", text, tu_maxabs(c, b, K), scale);
    free(c);
    free(a);
    free(b);
    free(x);
    ofa_model_free(&m);
}

static void matches_supernet(int transform, int variant)
{
    tu_threads(2);
    struct ofa_space sp;
    tiny_space(&sp, transform, variant);
    struct ofa_supernet net;
    ofa_supernet_init(&net, &sp, 7);
    randomize(&net, 100 + (uint64_t)(transform + 2 * variant));
    struct ofa_exec ex;
    ofa_exec_init(&ex, &net, 5);
    struct ofa_subnet s;
    ofa_subnet_largest(&sp, &s);
    check_matches(&net, &ex, &s, 5, 1);
    ofa_subnet_smallest(&sp, &s);
    check_matches(&net, &ex, &s, 5, 2);
    struct ofa_rng r;
    ofa_rng_seed(&r, 42 + (uint64_t)variant);
    for (int i = 0; i < 6; i++) {
        ofa_subnet_sample(&sp, &r, &s);
        check_matches(&net, &ex, &s, 3, 3 + (unsigned long)i);
    }
    ofa_exec_free(&ex);
    ofa_supernet_free(&net);
}

START_TEST(test_model_matches_supernet_view)
{
    matches_supernet(0, 0);
}
END_TEST

START_TEST(test_model_matches_supernet_view_with_kernel_transform)
{
    matches_supernet(1, 0);
}
END_TEST

START_TEST(test_model_matches_supernet_view_rgb_stem_stride_se_everywhere)
{
    matches_supernet(1, 1);
}
END_TEST

/* The reference space mbv3-28 with random weights and BN statistics. */
START_TEST(test_model_matches_supernet_view_reference_space)
{
    tu_threads(2);
    struct ofa_space sp;
    ofa_space_default(&sp);
    sp.kernel_transform = 1;
    struct ofa_supernet net;
    ofa_supernet_init(&net, &sp, 3);
    randomize(&net, 5);
    struct ofa_exec ex;
    ofa_exec_init(&ex, &net, 2);
    static const char *const subs[] = {"r20-d2222-k33.33.33.33-e33.33.33.33",
                                       "r24-d3234-k573.35.357.7535-e463.43.634.6346"};
    for (int i = 0; i < 2; i++) {
        struct ofa_subnet s;
        struct ofa_error err;
        ck_assert_msg(ofa_subnet_parse(&sp, subs[i], &s, &err) == 0, "%s", err.msg);
        check_matches(&net, &ex, &s, 2, 50 + (unsigned long)i);
    }
    ofa_exec_free(&ex);
    ofa_supernet_free(&net);
}
END_TEST

/* The layer list: shapes chain, every layer writes the next tensor, folded
 * conv weights are the supernet's scaled by gamma / sqrt(var + eps). */
START_TEST(test_model_layer_list_is_consistent)
{
    struct ofa_space sp;
    tiny_space(&sp, 0, 0);
    struct ofa_supernet net;
    ofa_supernet_init(&net, &sp, 7);
    randomize(&net, 9);
    struct ofa_subnet s;
    struct ofa_error err;
    ck_assert_int_eq(ofa_subnet_parse(&sp, "r10-d21-k73.5-e32.2", &s, &err), 0);
    struct ofa_model m;
    ofa_model_materialise(&m, &net, &s);
    /* stem, first dw, first pw, add; block 1.1: exp, dw, se, proj, add;
     * block 1.2 likewise; block 2.1: exp, dw, proj (stride 2); head conv,
     * pool, fc */
    static const enum ofa_layer_kind kinds[] = {
        OFA_LAYER_CONV, OFA_LAYER_DW, OFA_LAYER_CONV, OFA_LAYER_ADD,
        OFA_LAYER_CONV, OFA_LAYER_DW, OFA_LAYER_SE, OFA_LAYER_CONV, OFA_LAYER_ADD,
        OFA_LAYER_CONV, OFA_LAYER_DW, OFA_LAYER_SE, OFA_LAYER_CONV, OFA_LAYER_ADD,
        OFA_LAYER_CONV, OFA_LAYER_DW, OFA_LAYER_CONV,
        OFA_LAYER_CONV, OFA_LAYER_POOL, OFA_LAYER_FC};
    const int nk = (int)(sizeof kinds / sizeof kinds[0]);
    ck_assert_int_eq(m.n_layers, nk);
    for (int i = 0; i < nk; i++) {
        const struct ofa_layer *L = &m.layers[i];
        ck_assert_int_eq(L->kind, kinds[i]);
        ck_assert_int_eq(L->out, i + 1);
        const struct ofa_tshape *ti = &m.tensors[L->in], *to = &m.tensors[L->out];
        ck_assert(ti->H == L->H && ti->W == L->W && ti->C == L->Cin);
        ck_assert(to->H == L->Ho && to->W == L->Wo && to->C == L->Cout);
        ck_assert_int_eq(L->qw, -1);
    }
    ck_assert_int_eq(m.layers[3].in2, 1);                    /* stem output */
    ck_assert_int_eq(m.layers[5].K, 7);
    ck_assert_int_eq(m.layers[10].K, 3);
    ck_assert_int_eq(m.layers[15].K, 5);
    ck_assert_int_eq(m.layers[15].stride, 2);
    ck_assert_int_eq(m.layers[15].Ho, 5);
    ck_assert_int_eq(m.layers[6].R, 8);                      /* make_divisible(24/4) */
    ck_assert_int_eq(m.layers[0].act, sp.stem_act);
    ck_assert_int_eq(m.layers[4].act, OFA_ACT_RELU);
    ck_assert_int_eq(m.layers[17].act, OFA_ACT_HSWISH);
    ck_assert_int_eq(m.tensors[m.n_tensors - 1].C, 3);
    /* stem fold, channel 2, weight 5 */
    const struct ofa_params *p = &net.p;
    const double g = ofa_param_data(p, net.stem_bn.g)[2], v = ofa_param_data(p, net.stem_bn.v)[2];
    const double mu = ofa_param_data(p, net.stem_bn.m)[2], be = ofa_param_data(p, net.stem_bn.b)[2];
    const double sc = g / sqrt(v + sp.bn_eps);
    ck_assert(fabs(m.weights[m.layers[0].w + 2 * 9 + 5] -
                   ofa_param_data(p, net.stem_w)[2 * 9 + 5] * sc) < 1e-6);
    ck_assert(fabs(m.weights[m.layers[0].b + 2] - (be - mu * sc)) < 1e-6);
    /* n_weights counts exactly the layers' arrays */
    long total = 0;
    for (int i = 0; i < nk; i++) {
        const struct ofa_layer *L = &m.layers[i];
        switch (L->kind) {
        case OFA_LAYER_CONV: total += (long)L->Cout * L->K * L->K * L->Cin + L->Cout; break;
        case OFA_LAYER_DW: total += (long)L->K * L->K * L->Cout + L->Cout; break;
        case OFA_LAYER_SE: total += 2L * L->R * L->Cin + L->R + L->Cin; break;
        case OFA_LAYER_FC: total += (long)L->Cout * L->Cin + L->Cout; break;
        default: break;
        }
    }
    ck_assert_int_eq(total, m.n_weights);
    ofa_model_free(&m);
    ofa_model_free(&m); /* a freed model is zeroed: freeing again is safe */
    ofa_supernet_free(&net);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("model");
    TCase *tm = tcase_create("materialise");
    tcase_set_timeout(tm, 120);
    tcase_add_test(tm, test_model_layer_list_is_consistent);
    tcase_add_test(tm, test_model_matches_supernet_view);
    tcase_add_test(tm, test_model_matches_supernet_view_with_kernel_transform);
    tcase_add_test(tm, test_model_matches_supernet_view_rgb_stem_stride_se_everywhere);
    tcase_add_test(tm, test_model_matches_supernet_view_reference_space);
    suite_add_tcase(s, tm);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    return nf ? EXIT_FAILURE : EXIT_SUCCESS;
}
