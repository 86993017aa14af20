/* check_supernet.c: the search space (counts, canonical text, one-hot,
 * sampling) and the weight-shared supernet (gradients through whole subnets,
 * only active weights trained, channel sorting invariance, BN recalibration,
 * zero-initialised residual gammas, other recipes' shapes). */
#include <config.h>

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "space.h"
#include "supernet.h"
#include "testutil.h"

/* A small space that still has every feature: SE and no SE, stride 1 and 2,
 * residual and not, elastic depth, kernel (with transform), expand and
 * resolution. */
static void tiny_space(struct ofa_space *sp, int transform)
{
    tu_tiny_space(sp);
    sp->dropout = 0.0f;
    sp->kernel_transform = transform;
    sp->zero_last_gamma = 0; /* gradients must flow everywhere for the FD check */
}

/* Randomise every tensor (weights, BN affine and running statistics) so that
 * tests do not pass by symmetry. */
static void randomize(struct ofa_supernet *net, uint64_t seed)
{
    struct ofa_rng r;
    ofa_rng_seed(&r, seed);
    for (int i = 0; i < net->p.n; i++) {
        const struct ofa_param *t = &net->p.t[i];
        float *x = ofa_param_data(&net->p, i);
        int is_var = strstr(t->name, ".var") != NULL, is_gamma = strstr(t->name, ".gamma") != NULL;
        int is_matrix = strstr(t->name, ".m75") != NULL || strstr(t->name, ".m53") != NULL;
        for (size_t j = 0; j < t->numel; j++) {
            float u = 2.0f * ofa_rng_uniform(&r) - 1.0f;
            if (is_var)
                x[j] = 0.5f + ofa_rng_uniform(&r);
            else if (is_gamma)
                x[j] = 1.0f + 0.5f * u;
            else if (is_matrix)
                x[j] += 0.1f * u; /* keep near the identity */
            else
                x[j] = 0.5f * u;
        }
    }
}

START_TEST(test_reference_subnets_macs_and_params)
{
    struct ofa_space sp;
    ofa_space_default(&sp);
    struct ofa_subnet s;
    struct ofa_error err;
    ofa_subnet_largest(&sp, &s);
    ck_assert_int_eq(ofa_subnet_macs(&sp, &s), 30456736);
    ck_assert_int_eq(ofa_subnet_params(&sp, &s), 1639234);
    ck_assert_int_eq(ofa_subnet_parse(&sp, "r24-d3333-k555.555.555.555-e444.444.444.444", &s, &err),
                     0);
    ck_assert_int_eq(ofa_subnet_macs(&sp, &s), 8674848);
    ck_assert_int_eq(ofa_subnet_params(&sp, &s), 638482);
    struct ofa_subnet med;
    ofa_subnet_medium(&sp, &med);
    ofa_subnet_normalize(&sp, &s);
    ck_assert_int_eq(memcmp(&med, &s, sizeof s), 0); /* the reference medium */
    ofa_subnet_smallest(&sp, &s);
    ck_assert_int_eq(ofa_subnet_macs(&sp, &s), 3276856);
    ck_assert_int_eq(ofa_subnet_params(&sp, &s), 271914);
    ck_assert_int_eq(ofa_make_divisible(120 / 4.0, 8), 32);
    ck_assert_int_eq(ofa_make_divisible(240 / 4.0, 8), 64);
    ck_assert_int_eq(ofa_make_divisible(3, 8), 8);
}
END_TEST

START_TEST(test_subnet_text_round_trips_and_rejects_bad_forms)
{
    struct ofa_space sp;
    ofa_space_default(&sp);
    struct ofa_rng r;
    ofa_rng_seed(&r, 3);
    char buf[OFA_SUBNET_TEXT_MAX];
    struct ofa_error err;
    for (int i = 0; i < 200; i++) {
        struct ofa_subnet a, b;
        ofa_subnet_sample(&sp, &r, &a);
        ck_assert(ofa_subnet_valid(&sp, &a));
        ofa_subnet_format(&sp, &a, buf, sizeof buf);
        ck_assert_int_eq(ofa_subnet_parse(&sp, buf, &b, &err), 0);
        ck_assert_int_eq(memcmp(&a, &b, sizeof a), 0);
    }
    struct ofa_subnet s;
    static const char *const bad[] = {
        "", "r28", "r28-d4444", "r26-d4444-k7777.7777.7777.7777-e6666.6666.6666.6666",
        "r28-d4445-k7777.7777.7777.7777-e6666.6666.6666.6666",
        "r28-d4444-k7777.7777.7777.7774-e6666.6666.6666.6666",
        "r28-d4444-k7777.7777.7777.7777-e6666.6666.6666.666",
        "r28-d4444-k7777.7777.7777.7777-e6666.6666.6666.6666x",
        "r28-d2222-k77.77.77.77-e66.66.66.66.66", "x28-d2222-k77.77.77.77-e66.66.66.66",
        "r99999999999999999999-d2222-k77.77.77.77-e66.66.66.66",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(ofa_subnet_parse(&sp, bad[i], &s, &err) == -1, "accepted '%s'", bad[i]);
    ck_assert_int_eq(ofa_subnet_parse(&sp, bad[3], &s, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "resolution 26"));
}
END_TEST

START_TEST(test_onehot_encoding_is_stable_and_counts_active_blocks)
{
    struct ofa_space sp;
    ofa_space_default(&sp);
    int n = ofa_subnet_onehot_size(&sp);
    ck_assert_int_eq(n, 4 * 4 * 6 + 3);
    float *v = tu_zeros(n);
    struct ofa_subnet s;
    ofa_subnet_smallest(&sp, &s);
    ofa_subnet_onehot(&sp, &s, v);
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += v[i];
    ck_assert_double_eq(sum, 2 * 8 + 1);
    ck_assert_float_eq(v[0], 1.0f);     /* stage 1 block 1 kernel 3 */
    ck_assert_float_eq(v[3], 1.0f);     /* expand 3 */
    ck_assert_float_eq(v[n - 3], 1.0f); /* resolution 20 */
    free(v);
}
END_TEST

START_TEST(test_sampling_is_pure_function_of_stream)
{
    struct ofa_space sp;
    ofa_space_default(&sp);
    struct ofa_rng a, b;
    ofa_rng_derive(&a, 9, 1234, 2);
    ofa_rng_derive(&b, 9, 1234, 2);
    struct ofa_subnet x, y;
    ofa_subnet_sample(&sp, &a, &x);
    ofa_subnet_sample(&sp, &b, &y);
    ck_assert_int_eq(memcmp(&x, &y, sizeof x), 0);
}
END_TEST

struct fdctx {
    struct ofa_supernet *net;
    struct ofa_exec *ex;
    struct ofa_subnet sub;
    const float *x, *r;
    int N;
};

static double fd_loss(void *p)
{
    struct fdctx *c = p;
    const float *logits =
        ofa_supernet_forward(c->net, c->ex, &c->sub, c->x, c->N, OFA_MODE_TRAIN, 0.0f, NULL);
    return tu_dot(logits, c->r, (long)c->N * c->net->sp.num_classes);
}

static void gradient_check(int transform, const char *subtext)
{
    tu_threads(2);
    struct ofa_space sp;
    tiny_space(&sp, transform);
    struct ofa_supernet net;
    ofa_supernet_init(&net, &sp, 1);
    randomize(&net, 2);
    struct ofa_exec ex;
    const int N = 3;
    ofa_exec_init(&ex, &net, N);
    struct fdctx c = {.net = &net, .ex = &ex, .N = N};
    struct ofa_error err;
    ck_assert_int_eq(ofa_subnet_parse(&sp, subtext, &c.sub, &err), 0);
    float *x = tu_rand((long)N * c.sub.res * c.sub.res, 1.0f, 4, 0);
    float *r = tu_rand((long)N * sp.num_classes, 1.0f, 5, 0);
    c.x = x, c.r = r;
    fd_loss(&c);
    ofa_params_zero_grad(&net.p);
    ofa_supernet_backward(&net, &ex, r);
    float *ana = tu_copy(net.p.grad, (long)net.p.total);
    /* Central differences on up to 24 entries of every trainable tensor. */
    double num = 0, den = 0;
    int checked = 0;
    for (int i = 0; i < net.p.n; i++) {
        const struct ofa_param *t = &net.p.t[i];
        if (t->flags & OFA_PARAM_NOGRAD)
            continue;
        float *w = ofa_param_data(&net.p, i);
        size_t step = t->numel / 24 + 1;
        double tn = 0, td = 0;
        for (size_t j = 0; j < t->numel; j += step) {
            float g;
            tu_numgrad(fd_loss, &c, w + j, 1, 1e-3f, &g);
            double a = ana[t->offset + j];
            tn += (a - g) * (a - g);
            td += (double)g * g;
            checked++;
        }
        if (getenv("OFA_FD_DEBUG"))
            fprintf(stderr, "%-32s nmse %.3g  |g|^2 %.3g\n", t->name, tn / (td + 1e-30), td);
        num += tn;
        den += td;
    }
    /* Relu and hswish kinks make some central differences inexact: a
     * perturbation that moves pre-activations across a kink. That error
     * shrinks with h (measured: total nmse ~4e-3 at h = 1e-2, ~3e-4 at
     * h = 1e-3), whereas a wrong backward term gives O(1) whatever h. */
    double nmse = num / den;
    ck_assert_msg(nmse < 1e-3, "supernet gradient nmse %g over %d entries (%s)", nmse, checked,
                  subtext);
    free(ana);
    free(x);
    free(r);
    ofa_exec_free(&ex);
    ofa_supernet_free(&net);
}

START_TEST(test_supernet_backward_matches_fd_largest)
{
    gradient_check(0, "r10-d22-k77.77-e33.33");
}
END_TEST

START_TEST(test_supernet_backward_matches_fd_mixed_with_transform)
{
    gradient_check(1, "r8-d12-k3.53-e2.32");
}
END_TEST

/* Entries of a tensor outside the active slice must have zero gradient. */
static void expect_zero_rows(const struct ofa_params *p, int idx, int row0, int cols, int ld)
{
    const struct ofa_param *t = &p->t[idx];
    int rows = (int)(t->numel / (size_t)ld);
    const float *g = ofa_param_grad(p, idx);
    for (int rr = 0; rr < rows; rr++)
        for (int j = 0; j < ld; j++) {
            int inactive = rr >= row0 || j >= cols;
            if (inactive)
                ck_assert_msg(g[(size_t)rr * ld + j] == 0.0f, "%s[%d][%d] has gradient", t->name,
                              rr, j);
        }
}

START_TEST(test_only_active_weights_receive_gradient)
{
    tu_threads(2);
    struct ofa_space sp;
    tiny_space(&sp, 0);
    struct ofa_supernet net;
    ofa_supernet_init(&net, &sp, 1);
    randomize(&net, 2);
    struct ofa_exec ex;
    ofa_exec_init(&ex, &net, 4);
    struct ofa_subnet s;
    struct ofa_error err;
    ck_assert_int_eq(ofa_subnet_parse(&sp, "r8-d11-k5.3-e2.2", &s, &err), 0);
    float *x = tu_rand(4 * 64, 1.0f, 4, 0), *r = tu_rand(4 * 3, 1.0f, 5, 0);
    ofa_supernet_forward(&net, &ex, &s, x, 4, OFA_MODE_TRAIN, 0.0f, NULL);
    ofa_params_zero_grad(&net.p);
    ofa_supernet_backward(&net, &ex, r);
    for (int st = 0; st < 2; st++)
        for (int b = 0; b < 2; b++) {
            const struct ofa_block_idx *bi = &net.blk[st][b];
            if (b >= s.depth[st]) {
                /* whole block inactive */
                for (int i = 0; i < net.p.n; i++) {
                    char pre[48];
                    snprintf(pre, sizeof pre, "stage%d/block%d/", st + 1, b + 1);
                    if (strncmp(net.p.t[i].name, pre, strlen(pre)) == 0)
                        expect_zero_rows(&net.p, i, 0, 0, 1);
                }
                continue;
            }
            int mid = bi->cin * s.expand[st][b], K = s.kernel[st][b];
            expect_zero_rows(&net.p, bi->exp_w, mid, bi->cin, bi->cin);
            expect_zero_rows(&net.p, bi->exp_bn.g, mid, 1, 1);
            expect_zero_rows(&net.p, bi->dw_bn.b, mid, 1, 1);
            expect_zero_rows(&net.p, bi->proj_w, bi->cout, mid, bi->mid_max);
            /* depthwise: channels >= mid and taps outside the centre KxK */
            const float *g = ofa_param_grad(&net.p, bi->dw_w);
            int off = (7 - K) / 2;
            for (int ky = 0; ky < 7; ky++)
                for (int kx = 0; kx < 7; kx++)
                    for (int c = 0; c < bi->mid_max; c++) {
                        int in = ky >= off && ky < off + K && kx >= off && kx < off + K && c < mid;
                        if (!in)
                            ck_assert(g[(ky * 7 + kx) * bi->mid_max + c] == 0.0f);
                    }
            if (bi->se) {
                int R = ofa_make_divisible(mid / 4.0, 8);
                expect_zero_rows(&net.p, bi->se_w1, R, mid, bi->mid_max);
                expect_zero_rows(&net.p, bi->se_w2, mid, R, bi->r_max);
                expect_zero_rows(&net.p, bi->se_b2, mid, 1, 1);
            }
        }
    /* and the active ones do get some */
    ck_assert(ofa_param_grad(&net.p, net.blk[0][0].exp_w)[0] != 0.0f);
    free(x);
    free(r);
    ofa_exec_free(&ex);
    ofa_supernet_free(&net);
}
END_TEST

START_TEST(test_sorting_keeps_largest_subnet_function)
{
    tu_threads(2);
    struct ofa_space sp;
    tiny_space(&sp, 1);
    struct ofa_supernet net;
    ofa_supernet_init(&net, &sp, 1);
    randomize(&net, 7);
    struct ofa_exec ex;
    ofa_exec_init(&ex, &net, 4);
    struct ofa_subnet big;
    ofa_subnet_largest(&sp, &big);
    float *x = tu_rand(4 * 100, 1.0f, 8, 0);
    for (int mode = 0; mode < 2; mode++) {
        enum ofa_mode m = mode ? OFA_MODE_EVAL : OFA_MODE_TRAIN;
        struct ofa_supernet copy;
        ofa_supernet_init(&copy, &sp, 1);
        memcpy(copy.p.data, net.p.data, net.p.total * sizeof(float));
        const float *l0 = ofa_supernet_forward(&copy, &ex, &big, x, 4, m, 0.0f, NULL);
        float *before = tu_copy(l0, 4 * 3);
        float *w_before = tu_copy(copy.p.data, (long)copy.p.total);
        ofa_supernet_sort_channels(&copy);
        ck_assert_msg(memcmp(w_before, copy.p.data, copy.p.total * sizeof(float)) != 0,
                      "sorting changed nothing");
        const float *l1 = ofa_supernet_forward(&copy, &ex, &big, x, 4, m, 0.0f, NULL);
        ck_assert_msg(tu_maxabs(before, l1, 12) < 1e-4, "logits moved by %g",
                      tu_maxabs(before, l1, 12));
        /* importance (L1 of project columns) is now descending */
        const struct ofa_block_idx *bi = &copy.blk[1][1];
        const float *pw = ofa_param_data(&copy.p, bi->proj_w);
        double prev = INFINITY;
        for (int c = 0; c < bi->mid_max; c++) {
            double l1n = 0;
            for (int o = 0; o < bi->cout; o++)
                l1n += fabs(pw[o * bi->mid_max + c]);
            ck_assert(l1n <= prev);
            prev = l1n;
        }
        free(before);
        free(w_before);
        ofa_supernet_free(&copy);
    }
    free(x);
    ofa_exec_free(&ex);
    ofa_supernet_free(&net);
}
END_TEST

START_TEST(test_recalibration_averages_batch_statistics)
{
    tu_threads(2);
    struct ofa_space sp;
    tiny_space(&sp, 0);
    struct ofa_supernet net;
    ofa_supernet_init(&net, &sp, 1);
    randomize(&net, 11);
    struct ofa_exec ex;
    ofa_exec_init(&ex, &net, 8);
    struct ofa_subnet s;
    struct ofa_error err;
    ck_assert_int_eq(ofa_subnet_parse(&sp, "r10-d21-k37.5-e32.3", &s, &err), 0);
    float *x1 = tu_rand(8 * 100, 1.0f, 1, 0), *x2 = tu_rand(8 * 100, 2.0f, 2, 0);
    /* One batch: running statistics become that batch's, so evaluation
     * reproduces batch-statistics normalisation. */
    ofa_supernet_calib_begin(&net);
    const float *lc = ofa_supernet_forward(&net, &ex, &s, x1, 8, OFA_MODE_CALIB, 0.0f, NULL);
    float *calib_logits = tu_copy(lc, 8 * 3);
    ofa_supernet_calib_end(&net, &s);
    const float *le = ofa_supernet_forward(&net, &ex, &s, x1, 8, OFA_MODE_EVAL, 0.0f, NULL);
    ck_assert_msg(tu_maxabs(calib_logits, le, 24) < 1e-3, "eval after 1-batch calib differs by %g",
                  tu_maxabs(calib_logits, le, 24));
    float m1[8];
    memcpy(m1, ofa_param_data(&net.p, net.stem_bn.m), sizeof m1);
    ofa_supernet_calib_begin(&net);
    ofa_supernet_forward(&net, &ex, &s, x2, 8, OFA_MODE_CALIB, 0.0f, NULL);
    ofa_supernet_calib_end(&net, &s);
    float m2[8];
    memcpy(m2, ofa_param_data(&net.p, net.stem_bn.m), sizeof m2);
    /* Two batches: the exact average (the stem BN's input does not depend on
     * any other BN). */
    ofa_supernet_calib_begin(&net);
    ofa_supernet_forward(&net, &ex, &s, x1, 8, OFA_MODE_CALIB, 0.0f, NULL);
    ofa_supernet_forward(&net, &ex, &s, x2, 8, OFA_MODE_CALIB, 0.0f, NULL);
    ofa_supernet_calib_end(&net, &s);
    for (int c = 0; c < 8; c++)
        ck_assert_double_eq_tol(ofa_param_data(&net.p, net.stem_bn.m)[c], 0.5 * (m1[c] + m2[c]),
                                1e-5);
    free(x1);
    free(x2);
    free(calib_logits);
    ofa_exec_free(&ex);
    ofa_supernet_free(&net);
}
END_TEST

START_TEST(test_zero_last_gamma_on_residual_blocks_only)
{
    struct ofa_space sp;
    ofa_space_default(&sp);
    struct ofa_supernet net;
    ofa_supernet_init(&net, &sp, 1);
    for (int s = 0; s < sp.n_stages; s++)
        for (int b = 0; b < 4; b++) {
            const struct ofa_block_idx *bi = &net.blk[s][b];
            float g = ofa_param_data(&net.p, bi->proj_bn.g)[0];
            ck_assert_float_eq(g, bi->residual_possible ? 0.0f : 1.0f);
            ck_assert_int_eq(bi->residual_possible, b > 0 || (sp.stages[s].stride == 1 &&
                                                              bi->cin == bi->cout));
        }
    /* first block 16 -> 16 is residual */
    ck_assert_float_eq(ofa_param_data(&net.p, net.first_pw_bn.g)[0], 0.0f);
    ofa_supernet_free(&net);
}
END_TEST

START_TEST(test_same_inputs_same_gradients_bitwise)
{
    tu_threads(2);
    struct ofa_space sp;
    ofa_space_default(&sp);
    struct ofa_supernet net;
    ofa_supernet_init(&net, &sp, 1);
    struct ofa_exec ex;
    ofa_exec_init(&ex, &net, 4);
    struct ofa_subnet s;
    ofa_subnet_largest(&sp, &s);
    float *x = tu_rand(4 * 28 * 28, 1.0f, 1, 0), *r = tu_rand(4 * 10, 1.0f, 2, 0);
    float *g[2];
    for (int k = 0; k < 2; k++) {
        struct ofa_rng drop;
        ofa_rng_seed(&drop, 5);
        ofa_supernet_forward(&net, &ex, &s, x, 4, OFA_MODE_TRAIN, 0.1f, &drop);
        ofa_params_zero_grad(&net.p);
        ofa_supernet_backward(&net, &ex, r);
        g[k] = tu_copy(net.p.grad, (long)net.p.total);
    }
    ck_assert_int_eq(memcmp(g[0], g[1], net.p.total * sizeof(float)), 0);
    free(g[0]);
    free(g[1]);
    free(x);
    free(r);
    ofa_exec_free(&ex);
    ofa_supernet_free(&net);
}
END_TEST

START_TEST(test_other_recipe_rgb_100_classes_five_stages)
{
    tu_threads(2);
    struct ofa_space sp;
    ofa_space_default(&sp);
    sp.in_channels = 3;
    sp.num_classes = 100;
    sp.stem_stride = 2;
    sp.n_stages = 5;
    sp.stages[0] = (struct ofa_stage_cfg){16, 1, OFA_ACT_RELU, 0};
    sp.stages[1] = (struct ofa_stage_cfg){24, 2, OFA_ACT_RELU, 1};
    sp.stages[2] = (struct ofa_stage_cfg){32, 2, OFA_ACT_HSWISH, 0};
    sp.stages[3] = (struct ofa_stage_cfg){48, 1, OFA_ACT_HSWISH, 1};
    sp.stages[4] = (struct ofa_stage_cfg){64, 2, OFA_ACT_HSWISH, 1};
    sp.n_res = 2, sp.resolutions[0] = 24, sp.resolutions[1] = 32;
    ck_assert_int_eq(ofa_space_validate(&sp, NULL), 0);
    struct ofa_supernet net;
    ofa_supernet_init(&net, &sp, 1);
    struct ofa_exec ex;
    ofa_exec_init(&ex, &net, 2);
    struct ofa_rng r;
    ofa_rng_seed(&r, 1);
    for (int k = 0; k < 3; k++) {
        struct ofa_subnet s;
        ofa_subnet_sample(&sp, &r, &s);
        float *x = tu_rand(2L * s.res * s.res * 3, 1.0f, 3, (unsigned long)k);
        float *dl = tu_rand(2 * 100, 1.0f, 4, 0);
        const float *l = ofa_supernet_forward(&net, &ex, &s, x, 2, OFA_MODE_TRAIN, 0.0f, NULL);
        for (int i = 0; i < 200; i++)
            ck_assert(isfinite(l[i]));
        ofa_supernet_backward(&net, &ex, dl);
        ck_assert_int_gt(ofa_subnet_macs(&sp, &s), 0);
        free(x);
        free(dl);
    }
    ofa_exec_free(&ex);
    ofa_supernet_free(&net);
}
END_TEST

START_TEST(test_standalone_subnet_matches_supernet_view)
{
    tu_threads(2);
    struct ofa_space sp;
    tiny_space(&sp, 1);
    struct ofa_supernet net;
    ofa_supernet_init(&net, &sp, 1);
    randomize(&net, 21);
    struct ofa_exec ex, exs;
    ofa_exec_init(&ex, &net, 4);
    static const char *const subs[] = {"r8-d12-k3.53-e2.32", "r10-d22-k77.57-e33.23",
                                       "r8-d11-k5.3-e3.2"};
    for (int i = 0; i < 3; i++) {
        struct ofa_subnet s;
        struct ofa_error err;
        ck_assert_int_eq(ofa_subnet_parse(&sp, subs[i], &s, &err), 0);
        struct ofa_supernet alone;
        ofa_supernet_extract(&alone, &net, &s);
        ck_assert_int_eq((long long)ofa_params_count(&alone.p), ofa_subnet_params(&sp, &s));
        ofa_exec_init(&exs, &alone, 4);
        float *x = tu_rand(4L * s.res * s.res, 1.0f, 30, (unsigned long)i);
        for (int m = 0; m < 2; m++) {
            enum ofa_mode mode = m ? OFA_MODE_EVAL : OFA_MODE_TRAIN;
            float *a = tu_copy(ofa_supernet_forward(&net, &ex, &s, x, 4, mode, 0.0f, NULL), 12);
            const float *b = ofa_supernet_forward(&alone, &exs, &s, x, 4, mode, 0.0f, NULL);
            ck_assert_msg(tu_maxabs(a, b, 12) < 1e-5, "%s: standalone differs by %g", subs[i],
                          tu_maxabs(a, b, 12));
            free(a);
        }
        /* it trains too: a backward pass reaches every tensor it owns */
        float *r = tu_rand(12, 1.0f, 31, 0);
        ofa_supernet_forward(&alone, &exs, &s, x, 4, OFA_MODE_TRAIN, 0.0f, NULL);
        ofa_params_zero_grad(&alone.p);
        ofa_supernet_backward(&alone, &exs, r);
        for (int t = 0; t < alone.p.n; t++) {
            if (alone.p.t[t].flags & OFA_PARAM_NOGRAD || strstr(alone.p.t[t].name, ".beta"))
                continue; /* betas before a BN get exactly zero gradient */
            double g = 0;
            for (size_t j = 0; j < alone.p.t[t].numel; j++)
                g += fabs(ofa_param_grad(&alone.p, t)[j]);
            ck_assert_msg(g > 0, "%s got no gradient", alone.p.t[t].name);
        }
        free(r);
        free(x);
        ofa_exec_free(&exs);
        ofa_supernet_free(&alone);
    }
    ofa_exec_free(&ex);
    ofa_supernet_free(&net);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("supernet");
    TCase *tc = tcase_create("space");
    tcase_add_test(tc, test_reference_subnets_macs_and_params);
    tcase_add_test(tc, test_subnet_text_round_trips_and_rejects_bad_forms);
    tcase_add_test(tc, test_onehot_encoding_is_stable_and_counts_active_blocks);
    tcase_add_test(tc, test_sampling_is_pure_function_of_stream);
    suite_add_tcase(s, tc);
    TCase *tn = tcase_create("supernet");
    tcase_set_timeout(tn, 120);
    tcase_add_test(tn, test_supernet_backward_matches_fd_largest);
    tcase_add_test(tn, test_supernet_backward_matches_fd_mixed_with_transform);
    tcase_add_test(tn, test_only_active_weights_receive_gradient);
    tcase_add_test(tn, test_sorting_keeps_largest_subnet_function);
    tcase_add_test(tn, test_recalibration_averages_batch_statistics);
    tcase_add_test(tn, test_zero_last_gamma_on_residual_blocks_only);
    tcase_add_test(tn, test_same_inputs_same_gradients_bitwise);
    tcase_add_test(tn, test_other_recipe_rgb_100_classes_five_stages);
    tcase_add_test(tn, test_standalone_subnet_matches_supernet_view);
    suite_add_tcase(s, tn);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    return nf ? EXIT_FAILURE : EXIT_SUCCESS;
}
