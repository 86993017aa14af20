/* check_prof.c: the per-op profile (prof.h): the calls that a training step
 * of a subnet, and the fp32 inference of its materialised model, record are
 * the ones its architecture implies, op by op and direction by direction; times are self times that add up to at most the
 * step's wall time; off (the default) records nothing; reset and
 * accumulation; nesting; other threads are not counted. No assertion on how
 * long anything takes. */
#include <config.h>

#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "ops.h"
#include "optim.h"
#include "prof.h"
#include "rng.h"
#include "space.h"
#include "supernet.h"
#include "testutil.h"

/* Two stages with SE and without, relu and hswish, stride 1 and 2, residual
 * blocks and not; every kernel size. */
static void tiny_space(struct ofa_space *sp)
{
    tu_tiny_space(sp);
    sp->stem_act = OFA_ACT_HSWISH;
    sp->kernel_transform = 1;
}

/* The calls of one forward and one backward of sub, from the layer list
 * (supernet.h): stem conv + BN + act; first block dw3x3 + BN + relu + 1x1 +
 * BN; per block expand + BN + act, the active depthwise kernel (derived from
 * the stored 7x7 one unless it is the 7x7 at the largest expand ratio), dw +
 * BN + act, SE, project + BN; head 1x1 + BN + hswish, pool, dropout, fc. The
 * backward mirrors every op. Each activation is one op with the BN before it
 * (ofa_bn_act_forward_*, ofa_bn_act_backward), counted as BN; so is a
 * residual, added in the project BN's sweep (its gradient in place). Not
 * counted: the zeroing of gradient buffers, an implementation detail. */
static void expected(const struct ofa_space *sp, const struct ofa_subnet *sub, int dropout,
                     struct ofa_prof *w)
{
    memset(w, 0, sizeof *w);
    const int emax = sp->expands[sp->n_expands - 1];
    for (int d = OFA_PROF_FWD; d <= OFA_PROF_BWD; d++) {
        w->calls[OFA_PROF_STEM_CONV][d]++;
        w->calls[OFA_PROF_BN_TRAIN][d] += 1 + 2 + 1; /* stem, first block, head */
        w->calls[OFA_PROF_DW3][d]++;
        w->calls[OFA_PROF_PW_PROJECT][d]++;
        for (int s = 0; s < sp->n_stages; s++)
            for (int b = 0; b < sub->depth[s]; b++) {
                const struct ofa_stage_cfg *st = &sp->stages[s];
                const int K = sub->kernel[s][b];
                w->calls[OFA_PROF_PW_EXPAND][d]++;
                w->calls[OFA_PROF_BN_TRAIN][d] += 3;
                w->calls[K == 3 ? OFA_PROF_DW3 : K == 5 ? OFA_PROF_DW5 : OFA_PROF_DW7][d]++;
                w->calls[OFA_PROF_DWKERNEL][d] += !(K == 7 && sub->expand[s][b] == emax);
                w->calls[OFA_PROF_SE][d] += st->se;
                w->calls[OFA_PROF_PW_PROJECT][d]++;
            }
        w->calls[OFA_PROF_PW_HEAD][d]++;
        w->calls[OFA_PROF_AVGPOOL][d]++;
        w->calls[OFA_PROF_DROPOUT][d] += dropout;
        w->calls[OFA_PROF_FC][d]++;
    }
}

struct step {
    struct ofa_space sp;
    struct ofa_supernet net;
    struct ofa_exec ex;
    struct ofa_subnet sub;
    float *x, *probs, *dlogits;
    int y[2];
};

enum { N = 2 };

static void step_init(struct step *t, const char *subtext)
{
    tu_threads(1);
    memset(t, 0, sizeof *t);
    tiny_space(&t->sp);
    ofa_supernet_init(&t->net, &t->sp, 1);
    ofa_exec_init(&t->ex, &t->net, N);
    struct ofa_error err;
    ck_assert_int_eq(ofa_subnet_parse(&t->sp, subtext, &t->sub, &err), 0);
    t->x = tu_rand((long)N * t->sub.res * t->sub.res, 1.0f, 1, 0);
    t->probs = tu_zeros((long)N * t->sp.num_classes);
    t->dlogits = tu_zeros((long)N * t->sp.num_classes);
    t->y[0] = 0, t->y[1] = 2;
}

static void step_free(struct step *t)
{
    free(t->x), free(t->probs), free(t->dlogits);
    ofa_exec_free(&t->ex);
    ofa_supernet_free(&t->net);
}

/* One training step: zero gradients, forward (with dropout if asked), loss,
 * backward, SGD update. */
static void train_step(struct step *t, float dropout)
{
    const int K = t->sp.num_classes;
    struct ofa_rng r;
    ofa_rng_seed(&r, 3);
    ofa_params_zero_grad(&t->net.p);
    const float *logits =
        ofa_supernet_forward(&t->net, &t->ex, &t->sub, t->x, N, OFA_MODE_TRAIN, dropout, &r);
    ofa_ce_forward(t->probs, logits, t->y, N, K, 0.1f);
    memset(t->dlogits, 0, (size_t)N * K * sizeof(float));
    ofa_ce_backward(t->dlogits, t->probs, t->y, N, K, 0.1f, 1.0f);
    ofa_supernet_backward(&t->net, &t->ex, t->dlogits);
    const struct ofa_sgd sgd = {.momentum = 0.9f, .nesterov = 1};
    ofa_sgd_step(&sgd, &t->net.p, 0.01f);
}

static int all_zero(const struct ofa_prof *p)
{
    for (int k = 0; k < OFA_PROF_NKINDS; k++)
        for (int d = 0; d < OFA_PROF_NDIRS; d++)
            if (p->calls[k][d] != 0 || p->ns[k][d] != 0)
                return 0;
    return 1;
}

static void check_counts(const char *subtext, float dropout)
{
    struct step t;
    step_init(&t, subtext);
    struct ofa_prof want, got;
    expected(&t.sp, &t.sub, dropout > 0.0f, &want);
    want.calls[OFA_PROF_ZERO_GRAD][OFA_PROF_STEP] = 1;
    want.calls[OFA_PROF_SGD][OFA_PROF_STEP] = 1;
    want.calls[OFA_PROF_CE][OFA_PROF_FWD] = 1;
    want.calls[OFA_PROF_CE][OFA_PROF_BWD] = 1;
    ofa_prof_reset();
    ofa_prof_enable(1);
    train_step(&t, dropout);
    ofa_prof_enable(0);
    ofa_prof_read(&got);
    for (int k = 0; k < OFA_PROF_NKINDS; k++)
        for (int d = 0; d < OFA_PROF_NDIRS; d++) {
            if (k == OFA_PROF_GRAD_FILL)
                continue;
            ck_assert_msg(got.calls[k][d] == want.calls[k][d], "%s: %s %s: %ld calls, expected %ld",
                          subtext, ofa_prof_kind_name(k), ofa_prof_dir_name(d), got.calls[k][d],
                          want.calls[k][d]);
        }
    /* gradient buffers are zeroed in the backward only */
    ck_assert_int_eq(got.calls[OFA_PROF_GRAD_FILL][OFA_PROF_FWD], 0);
    ck_assert_int_gt(got.calls[OFA_PROF_GRAD_FILL][OFA_PROF_BWD], 0);
    step_free(&t);
}

START_TEST(test_step_counts_match_architecture_largest)
{
    check_counts("r10-d22-k77.77-e33.33", 0.0f);
}
END_TEST

START_TEST(test_step_counts_match_architecture_mixed_with_dropout)
{
    check_counts("r8-d12-k5.37-e3.23", 0.2f);
}
END_TEST

START_TEST(test_step_counts_match_architecture_smallest)
{
    check_counts("r8-d11-k3.3-e2.2", 0.0f);
}
END_TEST

/* Inference: every BN uses running statistics, nothing runs backward. */
START_TEST(test_eval_forward_counts_running_stats_bn)
{
    struct step t;
    step_init(&t, "r8-d12-k5.37-e3.23");
    struct ofa_prof want, got;
    expected(&t.sp, &t.sub, 0, &want);
    ofa_prof_reset();
    ofa_prof_enable(1);
    ofa_supernet_forward(&t.net, &t.ex, &t.sub, t.x, N, OFA_MODE_EVAL, 0.0f, NULL);
    ofa_prof_enable(0);
    ofa_prof_read(&got);
    ck_assert_int_eq(got.calls[OFA_PROF_BN_EVAL][OFA_PROF_FWD],
                     want.calls[OFA_PROF_BN_TRAIN][OFA_PROF_FWD]);
    ck_assert_int_eq(got.calls[OFA_PROF_BN_TRAIN][OFA_PROF_FWD], 0);
    ck_assert_int_eq(got.calls[OFA_PROF_DW5][OFA_PROF_FWD], want.calls[OFA_PROF_DW5][OFA_PROF_FWD]);
    for (int k = 0; k < OFA_PROF_NKINDS; k++)
        ck_assert_msg(got.calls[k][OFA_PROF_BWD] == 0 && got.calls[k][OFA_PROF_STEP] == 0,
                      "%s recorded outside the forward", ofa_prof_kind_name(k));
    step_free(&t);
}
END_TEST

/* The materialised model's fp32 inference (ofa_model_forward, BN folded):
 * one forward op a layer, the 1x1 convolutions told apart by their place
 * (expand, project, head), the residual adds (where a block keeps its width
 * and stride 1) made in the project convolutions before them and counted
 * there; on one thread, every sub-batch of the 40 images counted (as many
 * as the stem's calls, more than one); self times within the wall time. */
START_TEST(test_model_forward_counts_layers)
{
    struct step t;
    step_init(&t, "r10-d22-k37.57-e23.32");
    struct ofa_model m;
    ofa_model_materialise(&m, &t.net, &t.sub);
    const int n = 40;
    float *x = tu_rand((long)n * 10 * 10, 1.0f, 5, 0), *logits = tu_zeros((long)n * 3);
    float *scratch = ofa_model_scratch_alloc(&m, n);
    struct ofa_prof want, got;
    memset(&want, 0, sizeof want);
    const struct ofa_space *sp = &t.sp;
#define W(k) want.calls[k][OFA_PROF_FWD]
    W(OFA_PROF_STEM_CONV) = W(OFA_PROF_DW3) = W(OFA_PROF_PW_PROJECT) = 1;
    int adds = sp->stem_width == sp->first_width, cin = sp->first_width;
    for (int s = 0; s < sp->n_stages; s++)
        for (int b = 0; b < t.sub.depth[s]; b++) {
            const int K = t.sub.kernel[s][b], cout = sp->stages[s].width;
            W(OFA_PROF_PW_EXPAND)++;
            W(K == 3 ? OFA_PROF_DW3 : K == 5 ? OFA_PROF_DW5 : OFA_PROF_DW7)++;
            W(OFA_PROF_SE) += sp->stages[s].se;
            W(OFA_PROF_PW_PROJECT)++;
            adds += (b > 0 || sp->stages[s].stride == 1) && cin == cout;
            cin = cout;
        }
    W(OFA_PROF_PW_HEAD) = W(OFA_PROF_AVGPOOL) = W(OFA_PROF_FC) = 1;
#undef W
    int model_adds = 0;
    for (int i = 0; i < m.n_layers; i++)
        model_adds += m.layers[i].kind == OFA_LAYER_ADD;
    ck_assert_int_eq(model_adds, adds);
    ck_assert_int_gt(adds, 1);
    ofa_prof_reset();
    ofa_prof_enable(1);
    const int64_t t0 = ofa_prof_now_ns();
    ofa_model_forward(&m, logits, x, n, scratch);
    const int64_t wall = ofa_prof_now_ns() - t0;
    ofa_prof_enable(0);
    ofa_prof_read(&got);
    const long subs = got.calls[OFA_PROF_STEM_CONV][OFA_PROF_FWD];
    ck_assert_msg(subs > 1 && subs <= n, "%ld sub-batches of %d images", subs, n);
    for (int k = 0; k < OFA_PROF_NKINDS; k++)
        for (int d = 0; d < OFA_PROF_NDIRS; d++)
            ck_assert_msg(got.calls[k][d] == subs * want.calls[k][d],
                          "%s %s: %ld calls, expected %ld", ofa_prof_kind_name(k),
                          ofa_prof_dir_name(d), got.calls[k][d], subs * want.calls[k][d]);
    ck_assert_msg(ofa_prof_total_ns(&got) <= wall, "layers %lld ns > forward %lld ns",
                  (long long)ofa_prof_total_ns(&got), (long long)wall);
    free(x), free(logits), free(scratch);
    ofa_model_free(&m);
    step_free(&t);
}
END_TEST

START_TEST(test_times_are_self_times_within_wall_time)
{
    struct step t;
    step_init(&t, "r10-d22-k57.73-e23.32");
    ofa_prof_reset();
    ofa_prof_enable(1);
    const int64_t t0 = ofa_prof_now_ns();
    train_step(&t, 0.1f);
    const int64_t wall = ofa_prof_now_ns() - t0;
    ofa_prof_enable(0);
    struct ofa_prof p;
    ofa_prof_read(&p);
    for (int k = 0; k < OFA_PROF_NKINDS; k++)
        for (int d = 0; d < OFA_PROF_NDIRS; d++) {
            ck_assert_msg(p.ns[k][d] >= 0, "%s %s: %lld ns", ofa_prof_kind_name(k),
                          ofa_prof_dir_name(d), (long long)p.ns[k][d]);
            if (p.calls[k][d] == 0)
                ck_assert(p.ns[k][d] == 0);
        }
    ck_assert_msg(ofa_prof_total_ns(&p) <= wall, "ops %lld ns > step %lld ns",
                  (long long)ofa_prof_total_ns(&p), (long long)wall);
    step_free(&t);
}
END_TEST

START_TEST(test_off_by_default_and_when_disabled)
{
    struct step t;
    step_init(&t, "r8-d12-k5.37-e3.23");
    struct ofa_prof p;
    ofa_prof_reset(); /* empty already when Check forks per test */
    train_step(&t, 0.0f); /* the profile is off until enabled */
    ofa_prof_read(&p);
    ck_assert(all_zero(&p));
    ofa_prof_enable(1);
    ofa_prof_enable(0);
    train_step(&t, 0.0f);
    ofa_supernet_forward(&t.net, &t.ex, &t.sub, t.x, N, OFA_MODE_EVAL, 0.0f, NULL);
    ofa_prof_read(&p);
    ck_assert(all_zero(&p));
    step_free(&t);
}
END_TEST

START_TEST(test_steps_accumulate_until_reset)
{
    struct step t;
    step_init(&t, "r8-d12-k5.37-e3.23");
    struct ofa_prof one, two, cleared, again;
    ofa_prof_enable(1);
    train_step(&t, 0.0f);
    ofa_prof_read(&one);
    train_step(&t, 0.0f);
    ofa_prof_read(&two);
    ofa_prof_reset();
    ofa_prof_read(&cleared);
    train_step(&t, 0.0f);
    ofa_prof_read(&again);
    ofa_prof_enable(0);
    ck_assert(all_zero(&cleared));
    for (int k = 0; k < OFA_PROF_NKINDS; k++)
        for (int d = 0; d < OFA_PROF_NDIRS; d++) {
            ck_assert(two.calls[k][d] == 2 * one.calls[k][d]);
            ck_assert(again.calls[k][d] == one.calls[k][d]);
            ck_assert(two.ns[k][d] >= one.ns[k][d]);
        }
    ck_assert_int_eq(one.calls[OFA_PROF_SGD][OFA_PROF_STEP], 1);
    step_free(&t);
}
END_TEST

/* An op timed inside another: each gets one call and its own time. */
START_TEST(test_nested_op_time_counted_once)
{
    ofa_prof_reset();
    ofa_prof_enable(1);
    const int64_t t0 = ofa_prof_now_ns();
    const int outer = ofa_prof_begin();
    float buf[4096];
    OFA_PROF(OFA_PROF_GRAD_FILL, OFA_PROF_BWD, memset(buf, 0, sizeof buf));
    ofa_prof_end(outer, OFA_PROF_BN_TRAIN, OFA_PROF_BWD);
    const int64_t wall = ofa_prof_now_ns() - t0;
    ofa_prof_enable(0);
    struct ofa_prof p;
    ofa_prof_read(&p);
    ck_assert_int_eq(p.calls[OFA_PROF_GRAD_FILL][OFA_PROF_BWD], 1);
    ck_assert_int_eq(p.calls[OFA_PROF_BN_TRAIN][OFA_PROF_BWD], 1);
    ck_assert(p.ns[OFA_PROF_GRAD_FILL][OFA_PROF_BWD] >= 0);
    ck_assert(p.ns[OFA_PROF_BN_TRAIN][OFA_PROF_BWD] >= 0);
    ck_assert(ofa_prof_total_ns(&p) <= wall);
    ck_assert(buf[0] == 0.0f);
}
END_TEST

/* The data loader resizes on its own thread: only the thread that enabled
 * the profile records, into its own table. */
static void *resize_on_thread(void *arg)
{
    struct ofa_prof *seen = arg;
    float in[4 * 4], out[2 * 2];
    memset(in, 0, sizeof in);
    ofa_resize_bilinear_forward(out, in, 1, 4, 4, 2, 2, 1); /* not enabled here */
    ofa_prof_enable(1);
    ofa_resize_bilinear_forward(out, in, 1, 4, 4, 2, 2, 1);
    ofa_prof_read(seen);
    return NULL;
}

START_TEST(test_other_threads_not_counted)
{
    ofa_prof_reset();
    ofa_prof_enable(1);
    struct ofa_prof theirs, ours;
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, resize_on_thread, &theirs), 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ofa_prof_enable(0);
    ofa_prof_read(&ours);
    ck_assert(all_zero(&ours));
    ck_assert_int_eq(theirs.calls[OFA_PROF_RESIZE][OFA_PROF_FWD], 1);
}
END_TEST

START_TEST(test_every_kind_and_direction_has_a_name)
{
    for (int k = 0; k < OFA_PROF_NKINDS; k++)
        ck_assert(ofa_prof_kind_name(k)[0] != '\0');
    ck_assert_str_eq(ofa_prof_dir_name(OFA_PROF_FWD), "fwd");
    ck_assert_str_eq(ofa_prof_dir_name(OFA_PROF_BWD), "bwd");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("prof");
    TCase *tc = tcase_create("prof");
    tcase_add_test(tc, test_step_counts_match_architecture_largest);
    tcase_add_test(tc, test_step_counts_match_architecture_mixed_with_dropout);
    tcase_add_test(tc, test_step_counts_match_architecture_smallest);
    tcase_add_test(tc, test_eval_forward_counts_running_stats_bn);
    tcase_add_test(tc, test_model_forward_counts_layers);
    tcase_add_test(tc, test_times_are_self_times_within_wall_time);
    tcase_add_test(tc, test_off_by_default_and_when_disabled);
    tcase_add_test(tc, test_steps_accumulate_until_reset);
    tcase_add_test(tc, test_nested_op_time_counted_once);
    tcase_add_test(tc, test_other_threads_not_counted);
    tcase_add_test(tc, test_every_kind_and_direction_has_a_name);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    return nf ? EXIT_FAILURE : EXIT_SUCCESS;
}
