/* supernet.c: parameter layout, forward and backward through any subnet of
 * the elastic MobileNetV3 supernet, BN recalibration and channel sorting.
 * Activations are NHWC from one arena; the forward keeps a tape that the
 * backward walks in reverse, accumulating into the flat gradient buffer.
 * Each op of the forward and backward is timed where it is called (prof.h:
 * the call site knows the layer's role), through the helpers below or
 * OFA_PROF. */
#include <config.h>

#include "supernet.h"

#include "ops.h"
#include "prof.h"
#include "rng.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Layout and initialisation ------------------------------------------ */

static void add_bn(struct ofa_params *p, const char *prefix, int C, struct ofa_bn_idx *bn)
{
    char name[OFA_PARAM_NAMELEN];
    snprintf(name, sizeof name, "%s.gamma", prefix);
    bn->g = ofa_params_add(p, name, 0, 1, C, 0, 0, 0);
    snprintf(name, sizeof name, "%s.beta", prefix);
    bn->b = ofa_params_add(p, name, 0, 1, C, 0, 0, 0);
    snprintf(name, sizeof name, "%s.mean", prefix);
    bn->m = ofa_params_add(p, name, OFA_PARAM_NOGRAD, 1, C, 0, 0, 0);
    snprintf(name, sizeof name, "%s.var", prefix);
    bn->v = ofa_params_add(p, name, OFA_PARAM_NOGRAD, 1, C, 0, 0, 0);
}

static int add_w(struct ofa_params *p, const char *prefix, const char *what, unsigned flags,
                 int ndim, int d0, int d1, int d2)
{
    char name[OFA_PARAM_NAMELEN];
    snprintf(name, sizeof name, "%s%s", prefix, what);
    return ofa_params_add(p, name, flags, ndim, d0, d1, d2, 0);
}

static void init_bn(struct ofa_params *p, const struct ofa_bn_idx *bn, float gamma)
{
    const struct ofa_param *t = &p->t[bn->g];
    for (size_t i = 0; i < t->numel; i++) {
        ofa_param_data(p, bn->g)[i] = gamma;
        ofa_param_data(p, bn->v)[i] = 1.0f;
    }
}

static void init_normal(struct ofa_params *p, int idx, struct ofa_rng *r, int fan_in)
{
    ofa_rng_fill_normal(r, ofa_param_data(p, idx), (long)p->t[idx].numel,
                        sqrtf(2.0f / (float)fan_in));
}

static void init_identity(struct ofa_params *p, int idx, int n)
{
    for (int i = 0; i < n; i++)
        ofa_param_data(p, idx)[i * n + i] = 1.0f;
}

/* Register the parameter table. sub == NULL: the elastic supernet (every
 * block at its largest shape, 7x7 depthwise kernels); otherwise a standalone
 * subnet (its active blocks only, at their exact shapes, KxK kernels). */
static void layout(struct ofa_supernet *net, const struct ofa_space *sp,
                   const struct ofa_subnet *sub)
{
    memset(net, 0, sizeof *net);
    net->sp = *sp;
    struct ofa_params *p = &net->p;
    const unsigned D = OFA_PARAM_DECAY;
    const int emax = sp->expands[sp->n_expands - 1];

    net->stem_w = add_w(p, "stem/", "conv.w", D, 2, sp->stem_width, 9 * sp->in_channels, 0);
    add_bn(p, "stem/bn", sp->stem_width, &net->stem_bn);
    net->first_dw = add_w(p, "first/", "dw.w", D, 3, 3, 3, sp->stem_width);
    add_bn(p, "first/dw.bn", sp->stem_width, &net->first_dw_bn);
    net->first_pw = add_w(p, "first/", "pw.w", D, 2, sp->first_width, sp->stem_width, 0);
    add_bn(p, "first/pw.bn", sp->first_width, &net->first_pw_bn);

    int cin = sp->first_width;
    for (int s = 0; s < sp->n_stages; s++) {
        const struct ofa_stage_cfg *st = &sp->stages[s];
        const int depth = sub ? sub->depth[s] : ofa_space_max_depth(sp);
        for (int b = 0; b < depth; b++) {
            struct ofa_block_idx *bi = &net->blk[s][b];
            char pre[64], bn[80];
            snprintf(pre, sizeof pre, "stage%d/block%d/", s + 1, b + 1);
            bi->cin = cin;
            bi->cout = st->width;
            bi->stride = b == 0 ? st->stride : 1;
            bi->se = st->se;
            bi->act = st->act;
            bi->residual_possible = bi->stride == 1 && bi->cin == bi->cout;
            bi->mid_max = cin * (sub ? sub->expand[s][b] : emax);
            bi->dw_k = sub ? sub->kernel[s][b] : 7;
            bi->exp_w = add_w(p, pre, "expand.w", D, 2, bi->mid_max, cin, 0);
            snprintf(bn, sizeof bn, "%sexpand.bn", pre);
            add_bn(p, bn, bi->mid_max, &bi->exp_bn);
            bi->dw_w = add_w(p, pre, "dw.w", D, 3, bi->dw_k, bi->dw_k, bi->mid_max);
            bi->dw_m75 = bi->dw_m53 = -1;
            if (sp->kernel_transform && !sub) {
                bi->dw_m75 = add_w(p, pre, "dw.m75", 0, 2, 25, 25, 0);
                bi->dw_m53 = add_w(p, pre, "dw.m53", 0, 2, 9, 9, 0);
            }
            snprintf(bn, sizeof bn, "%sdw.bn", pre);
            add_bn(p, bn, bi->mid_max, &bi->dw_bn);
            bi->se_w1 = bi->se_b1 = bi->se_w2 = bi->se_b2 = -1;
            if (st->se) {
                bi->r_max = ofa_make_divisible((double)bi->mid_max / sp->se_reduction, 8);
                bi->se_w1 = add_w(p, pre, "se.w1", D, 2, bi->r_max, bi->mid_max, 0);
                bi->se_b1 = add_w(p, pre, "se.b1", 0, 1, bi->r_max, 0, 0);
                bi->se_w2 = add_w(p, pre, "se.w2", D, 2, bi->mid_max, bi->r_max, 0);
                bi->se_b2 = add_w(p, pre, "se.b2", 0, 1, bi->mid_max, 0, 0);
            }
            bi->proj_w = add_w(p, pre, "project.w", D, 2, st->width, bi->mid_max, 0);
            snprintf(bn, sizeof bn, "%sproject.bn", pre);
            add_bn(p, bn, st->width, &bi->proj_bn);
            cin = st->width;
        }
    }
    net->head_w = add_w(p, "head/", "conv.w", D, 2, sp->head_width, cin, 0);
    add_bn(p, "head/bn", sp->head_width, &net->head_bn);
    net->fc_w = add_w(p, "head/", "fc.w", D, 2, sp->num_classes, sp->head_width, 0);
    net->fc_b = add_w(p, "head/", "fc.b", 0, 1, sp->num_classes, 0, 0);
}

void ofa_supernet_init(struct ofa_supernet *net, const struct ofa_space *sp, uint64_t seed)
{
    OFA_ASSERT(ofa_space_validate(sp, NULL) == 0);
    layout(net, sp, NULL);
    struct ofa_params *p = &net->p;
    const int cin = p->t[net->head_w].shape[1];
    ofa_params_alloc(p);

    struct ofa_rng r;
    ofa_rng_seed(&r, seed);
    init_normal(p, net->stem_w, &r, 9 * sp->in_channels);
    init_bn(p, &net->stem_bn, 1.0f);
    init_normal(p, net->first_dw, &r, 9);
    init_bn(p, &net->first_dw_bn, 1.0f);
    init_normal(p, net->first_pw, &r, sp->stem_width);
    init_bn(p, &net->first_pw_bn,
            sp->zero_last_gamma && sp->stem_width == sp->first_width ? 0.0f : 1.0f);
    for (int s = 0; s < sp->n_stages; s++)
        for (int b = 0; b < ofa_space_max_depth(sp); b++) {
            struct ofa_block_idx *bi = &net->blk[s][b];
            init_normal(p, bi->exp_w, &r, bi->cin);
            init_bn(p, &bi->exp_bn, 1.0f);
            init_normal(p, bi->dw_w, &r, 49);
            if (bi->dw_m75 >= 0) {
                init_identity(p, bi->dw_m75, 25);
                init_identity(p, bi->dw_m53, 9);
            }
            init_bn(p, &bi->dw_bn, 1.0f);
            if (bi->se) {
                init_normal(p, bi->se_w1, &r, bi->mid_max);
                init_normal(p, bi->se_w2, &r, bi->r_max);
            }
            init_normal(p, bi->proj_w, &r, bi->mid_max);
            init_bn(p, &bi->proj_bn, sp->zero_last_gamma && bi->residual_possible ? 0.0f : 1.0f);
        }
    init_normal(p, net->head_w, &r, cin);
    init_bn(p, &net->head_bn, 1.0f);
    /* The classifier starts small (std 0.01, as OFA's linear layers). */
    ofa_rng_fill_normal(&r, ofa_param_data(p, net->fc_w), (long)p->t[net->fc_w].numel, 0.01f);
}

/* Copy rows [0, rows) x columns [0, cols) of a row-major matrix with
 * leading dimension lds into one with leading dimension ldd. */
static void copy_block(float *dst, int ldd, const float *src, int lds, int rows, int cols)
{
    for (int r = 0; r < rows; r++)
        memcpy(dst + (size_t)r * ldd, src + (size_t)r * lds, (size_t)cols * sizeof *dst);
}

static void copy_bn(struct ofa_params *d, const struct ofa_bn_idx *db, const struct ofa_params *s,
                    const struct ofa_bn_idx *sb, int C)
{
    const int di[4] = {db->g, db->b, db->m, db->v}, si[4] = {sb->g, sb->b, sb->m, sb->v};
    for (int i = 0; i < 4; i++)
        memcpy(ofa_param_data(d, di[i]), ofa_param_data(s, si[i]), (size_t)C * sizeof(float));
}

void ofa_supernet_extract(struct ofa_supernet *dst, const struct ofa_supernet *src,
                          const struct ofa_subnet *sub)
{
    OFA_ASSERT(!src->standalone && ofa_subnet_valid(&src->sp, sub));
    struct ofa_space sp = src->sp;
    sp.kernel_transform = 0; /* kernels are stored materialised */
    layout(dst, &sp, sub);
    dst->standalone = 1;
    dst->sub = *sub;
    struct ofa_params *d = &dst->p;
    const struct ofa_params *s = &src->p;
    ofa_params_alloc(d);
    const int same[] = {src->stem_w, src->first_dw, src->first_pw, src->head_w, src->fc_w,
                        src->fc_b};
    const int to[] = {dst->stem_w, dst->first_dw, dst->first_pw, dst->head_w, dst->fc_w,
                      dst->fc_b};
    for (int i = 0; i < 6; i++)
        memcpy(ofa_param_data(d, to[i]), ofa_param_data(s, same[i]),
               s->t[same[i]].numel * sizeof(float));
    copy_bn(d, &dst->stem_bn, s, &src->stem_bn, sp.stem_width);
    copy_bn(d, &dst->first_dw_bn, s, &src->first_dw_bn, sp.stem_width);
    copy_bn(d, &dst->first_pw_bn, s, &src->first_pw_bn, sp.first_width);
    copy_bn(d, &dst->head_bn, s, &src->head_bn, sp.head_width);
    float *k5 = NULL;
    for (int st = 0; st < sp.n_stages; st++)
        for (int b = 0; b < sub->depth[st]; b++) {
            const struct ofa_block_idx *sb = &src->blk[st][b], *db = &dst->blk[st][b];
            const int mid = db->mid_max, cin = db->cin, K = db->dw_k;
            copy_block(ofa_param_data(d, db->exp_w), cin, ofa_param_data(s, sb->exp_w), cin, mid,
                       cin);
            copy_bn(d, &db->exp_bn, s, &sb->exp_bn, mid);
            k5 = realloc(k5, (size_t)25 * mid * sizeof *k5);
            OFA_ASSERT(k5);
            ofa_dwkernel_forward(ofa_param_data(d, db->dw_w), k5, ofa_param_data(s, sb->dw_w),
                                 sb->dw_m75 >= 0 ? ofa_param_data(s, sb->dw_m75) : NULL,
                                 sb->dw_m53 >= 0 ? ofa_param_data(s, sb->dw_m53) : NULL, K, mid,
                                 sb->mid_max, sb->dw_m75 >= 0);
            copy_bn(d, &db->dw_bn, s, &sb->dw_bn, mid);
            if (db->se) {
                const int R = db->r_max;
                copy_block(ofa_param_data(d, db->se_w1), mid, ofa_param_data(s, sb->se_w1),
                           sb->mid_max, R, mid);
                memcpy(ofa_param_data(d, db->se_b1), ofa_param_data(s, sb->se_b1),
                       (size_t)R * sizeof(float));
                copy_block(ofa_param_data(d, db->se_w2), R, ofa_param_data(s, sb->se_w2),
                           sb->r_max, mid, R);
                memcpy(ofa_param_data(d, db->se_b2), ofa_param_data(s, sb->se_b2),
                       (size_t)mid * sizeof(float));
            }
            copy_block(ofa_param_data(d, db->proj_w), mid, ofa_param_data(s, sb->proj_w),
                       sb->mid_max, db->cout, mid);
            copy_bn(d, &db->proj_bn, s, &sb->proj_bn, db->cout);
        }
    free(k5);
}

void ofa_supernet_free(struct ofa_supernet *net)
{
    ofa_params_free(&net->p);
    free(net->calib);
    memset(net, 0, sizeof *net);
}

/* ---- Planning: every buffer of one pass, from the arena ------------------ */

static float *take(struct ofa_exec *ex, size_t n)
{
    if (n > ex->gsize)
        ex->gsize = n;
    return ofa_arena_alloc(&ex->arena, n);
}

/* Allocate the tape for (sub, N) and record shapes. The allocation sequence
 * depends only on (sub, N), so a measuring arena sizes the real one. */
static void plan(const struct ofa_supernet *net, struct ofa_exec *ex,
                 const struct ofa_subnet *sub, int N)
{
    const struct ofa_space *sp = &net->sp;
    ofa_arena_reset(&ex->arena);
    ex->gsize = 0;
    ex->sub = *sub;
    ex->N = N;
    ex->R = sub->res;
    int H = ofa_conv_out_size(sub->res, 3, sp->stem_stride, 1);
    size_t M = (size_t)N * H * H;
    int C = sp->stem_width;
    ex->col = ofa_arena_alloc(&ex->arena,
                              ofa_conv2d_col_size(N, sub->res, sub->res, sp->in_channels, 3,
                                                  sp->stem_stride, 1));
    ex->s1 = take(ex, M * C), ex->s2 = take(ex, M * C);
    ex->stem_bn.mean = take(ex, C), ex->stem_bn.rstd = take(ex, C);
    ex->f1 = take(ex, M * C), ex->f2 = take(ex, M * C);
    ex->f_bn[0].mean = take(ex, C), ex->f_bn[0].rstd = take(ex, C);
    ex->f3 = take(ex, M * sp->first_width), ex->f4 = take(ex, M * sp->first_width);
    ex->f_bn[1].mean = take(ex, sp->first_width), ex->f_bn[1].rstd = take(ex, sp->first_width);
    ex->first_residual = sp->stem_width == sp->first_width;
    C = sp->first_width;
    int kmax = 0;       /* largest middle width: depthwise kernel scratch */
    size_t semax = 0;   /* largest SE backward scratch */
    for (int s = 0; s < sp->n_stages; s++)
        for (int b = 0; b < sub->depth[s]; b++) {
            const struct ofa_block_idx *bi = &net->blk[s][b];
            struct ofa_block_tape *t = &ex->blk[s][b];
            memset(t, 0, sizeof *t);
            t->H = H;
            t->stride = bi->stride;
            t->Ho = (H - 1) / bi->stride + 1;
            t->cin = C;
            t->mid = C * sub->expand[s][b];
            t->cout = bi->cout;
            t->K = sub->kernel[s][b];
            t->se = bi->se;
            t->act = bi->act;
            t->residual = bi->residual_possible;
            kmax = t->mid > kmax ? t->mid : kmax;
            size_t Mi = (size_t)N * H * H, Mo = (size_t)N * t->Ho * t->Ho;
            t->e1 = take(ex, Mi * t->mid), t->e2 = take(ex, Mi * t->mid);
            t->k = take(ex, 49 * (size_t)t->mid), t->k5 = take(ex, 25 * (size_t)t->mid);
            t->d1 = take(ex, Mo * t->mid), t->d2 = take(ex, Mo * t->mid);
            if (t->se) {
                t->R = ofa_make_divisible((double)t->mid / sp->se_reduction, 8);
                t->s = take(ex, Mo * t->mid);
                t->pooled = take(ex, (size_t)N * t->mid), t->gate = take(ex, (size_t)N * t->mid);
                t->hid = take(ex, (size_t)N * t->R);
                size_t ss = ofa_se_scratch_size(N, t->mid, t->R);
                semax = ss > semax ? ss : semax;
            }
            t->p1 = take(ex, Mo * t->cout), t->out = take(ex, Mo * t->cout);
            for (int i = 0; i < 3; i++) {
                int Cb = i < 2 ? t->mid : t->cout;
                t->bn[i].mean = take(ex, Cb), t->bn[i].rstd = take(ex, Cb);
            }
            H = t->Ho;
            C = t->cout;
        }
    ex->Hh = H;
    M = (size_t)N * H * H;
    int Hw = sp->head_width;
    ex->h1 = take(ex, M * Hw), ex->h2 = take(ex, M * Hw);
    ex->head_bn.mean = take(ex, Hw), ex->head_bn.rstd = take(ex, Hw);
    ex->g = take(ex, (size_t)N * Hw), ex->g2 = take(ex, (size_t)N * Hw);
    ex->mask = take(ex, (size_t)N * Hw);
    ex->logits = take(ex, (size_t)N * sp->num_classes);
    size_t gs = ex->gsize;
    ex->ga = ofa_arena_alloc(&ex->arena, gs), ex->gb = ofa_arena_alloc(&ex->arena, gs);
    ex->u = ofa_arena_alloc(&ex->arena, gs), ex->v = ofa_arena_alloc(&ex->arena, gs);
    ex->kscr = ofa_arena_alloc(&ex->arena, (size_t)(49 + 25) * kmax);
    ex->sescr = ofa_arena_alloc(&ex->arena, semax);
}

void ofa_exec_init(struct ofa_exec *ex, const struct ofa_supernet *net, int max_batch)
{
    OFA_ASSERT(max_batch >= 1);
    memset(ex, 0, sizeof *ex);
    struct ofa_subnet big;
    if (net->standalone)
        big = net->sub;
    else
        ofa_subnet_largest(&net->sp, &big);
    ofa_arena_init_measure(&ex->arena);
    plan(net, ex, &big, max_batch);
    size_t need = ex->arena.peak;
    ofa_arena_init(&ex->arena, need);
    ex->max_batch = max_batch;
}

void ofa_exec_free(struct ofa_exec *ex)
{
    ofa_arena_free(&ex->arena);
    memset(ex, 0, sizeof *ex);
}

/* ---- Timed op calls (prof.h) ----------------------------------------------- */

static enum ofa_prof_kind dw_kind(int K)
{
    OFA_ASSERT(K == 3 || K == 5 || K == 7);
    return K == 3 ? OFA_PROF_DW3 : K == 5 ? OFA_PROF_DW5 : OFA_PROF_DW7;
}

/* The depthwise convolution of inp, through bn when not NULL. */
static void dwconv_forward(float *out, const float *inp, const struct ofa_bn_act *bn,
                           const float *k, int N, int H, int C, int K, int stride)
{
    OFA_PROF(dw_kind(K), OFA_PROF_FWD,
             ofa_dwconv_forward_bn(out, inp, bn, k, N, H, H, C, K, stride));
}

static void dwconv_backward(float *dinp, int accumulate, float *dk, const float *dout,
                            const float *inp, const struct ofa_bn_act *bn, const float *k,
                            int N, int H, int C, int K, int stride)
{
    OFA_PROF(dw_kind(K), OFA_PROF_BWD,
             ofa_dwconv_backward_bn(dinp, accumulate, dk, dout, inp, bn, k, N, H, H, C, K,
                                    stride));
}

/* ---- Forward ---------------------------------------------------------------- */

/* A 1x1 convolution whose output a BN takes next: in training and
 * calibration it gives that BN its batch statistics too, in t's mean and
 * rstd (ofa_pwconv_forward_stats), for bn_forward with given set. */
static void pw_forward(enum ofa_mode mode, enum ofa_prof_kind kind, float *out,
                       struct ofa_bn_tape *t, const float *inp, const float *w, int ldw,
                       long M, int Cin, int Cout)
{
    if (mode == OFA_MODE_EVAL)
        OFA_PROF(kind, OFA_PROF_FWD, ofa_pwconv_forward(out, inp, w, ldw, M, Cin, Cout));
    else
        OFA_PROF(kind, OFA_PROF_FWD,
                 ofa_pwconv_forward_stats(out, t->mean, t->rstd, inp, w, ldw, M, Cin, Cout));
}

/* out = act(BN(in)), act OFA_ACT_NONE for none, plus res (a residual, NULL
 * for none; no activation then). The BN output before an activation is not
 * kept: the backward recomputes it (ofa_bn_act_backward). With given, t's
 * mean and rstd hold the batch mean and biased variance of in (pw_forward)
 * outside OFA_MODE_EVAL; out may then be NULL there, for only the statistics
 * (the consumer normalises: ofa_dwconv_forward_bn). */
static void bn_forward(struct ofa_supernet *net, enum ofa_mode mode, const struct ofa_bn_idx *bi,
                       float *out, enum ofa_act act, struct ofa_bn_tape *t, const float *in,
                       const float *res, long M, int C, int given)
{
    OFA_ASSERT(out || (given && mode != OFA_MODE_EVAL));
    float *y = act == OFA_ACT_NONE ? out : NULL, *z = act == OFA_ACT_NONE ? NULL : out;
    struct ofa_params *p = &net->p;
    const float *g = ofa_param_data(p, bi->g), *b = ofa_param_data(p, bi->b);
    float *rm = ofa_param_data(p, bi->m), *rv = ofa_param_data(p, bi->v);
    const int prof = ofa_prof_begin();
    switch (mode) {
    case OFA_MODE_TRAIN:
        if (given)
            ofa_bn_act_forward_train_given(y, z, t->mean, t->rstd, rm, rv, in, g, b, M, C,
                                           net->sp.bn_momentum, net->sp.bn_eps, act, res);
        else
            ofa_bn_act_forward_train(y, z, t->mean, t->rstd, rm, rv, in, g, b, M, C,
                                     net->sp.bn_momentum, net->sp.bn_eps, act, res);
        break;
    case OFA_MODE_EVAL:
        ofa_bn_act_forward_eval(out, in, g, b, rm, rv, M, C, net->sp.bn_eps, act, res);
        break;
    case OFA_MODE_CALIB: {
        /* Add the batch mean and biased variance to the recalibration sums
         * (t->rstd holds the variance until the forward below overwrites
         * it), then normalise with batch statistics. */
        if (!given)
            ofa_bn_batch_stats(t->mean, t->rstd, in, M, C);
        float *sm = net->calib + p->t[bi->m].offset, *sv = net->calib + p->t[bi->v].offset;
        for (int c = 0; c < C; c++) {
            sm[c] += t->mean[c];
            sv[c] += t->rstd[c];
        }
        ofa_bn_act_forward_train_given(y, z, t->mean, t->rstd, NULL, NULL, in, g, b, M, C,
                                       net->sp.bn_momentum, net->sp.bn_eps, act, res);
        break;
    }
    }
    ofa_prof_end(prof,
                 mode == OFA_MODE_TRAIN  ? OFA_PROF_BN_TRAIN
                 : mode == OFA_MODE_EVAL ? OFA_PROF_BN_EVAL
                                         : OFA_PROF_BN_CALIB,
                 OFA_PROF_FWD);
}

/* The stored depthwise kernel already is the active [K][K][mid] one (a
 * standalone subnet, or the largest kernel and width of a supernet block). */
static int stored_kernel_is_active(const struct ofa_block_idx *bi,
                                   const struct ofa_block_tape *t)
{
    return bi->dw_k == t->K && bi->mid_max == t->mid;
}

/* The expansion's BN (batch statistics, t's) and activation, as the
 * depthwise convolution applies them to e1 in training and calibration. */
static struct ofa_bn_act expand_bn_act(const struct ofa_supernet *net,
                                       const struct ofa_block_idx *bi,
                                       const struct ofa_block_tape *t)
{
    return (struct ofa_bn_act){t->bn[0].mean, t->bn[0].rstd,
                               ofa_param_data(&net->p, bi->exp_bn.g),
                               ofa_param_data(&net->p, bi->exp_bn.b), t->act};
}

static void block_forward(struct ofa_supernet *net, enum ofa_mode mode,
                          const struct ofa_block_idx *bi, struct ofa_block_tape *t,
                          const float *x, int N)
{
    struct ofa_params *p = &net->p;
    const long Mi = (long)N * t->H * t->H, Mo = (long)N * t->Ho * t->Ho;
    t->x = x;
    pw_forward(mode, OFA_PROF_PW_EXPAND, t->e1, &t->bn[0], x, ofa_param_data(p, bi->exp_w),
               bi->cin, Mi, t->cin, t->mid);
    /* Outside inference the depthwise convolution normalises e1 as it reads
     * it, instead of a sweep that writes e2 for it to read back: the largest
     * subnet's step, one thread, BN forward 24-25 -> 15 ms, the depthwise
     * forward and backward 1-3 ms slower each, 371 -> 375 images/s; two
     * threads, which share the memory the sweep went to, 668 -> 707. */
    const int eval = mode == OFA_MODE_EVAL;
    bn_forward(net, mode, &bi->exp_bn, eval ? t->e2 : NULL, t->act, &t->bn[0], t->e1, NULL, Mi,
               t->mid, 1);
    const struct ofa_bn_act ebn = expand_bn_act(net, bi, t);
    const float *kern = ofa_param_data(p, bi->dw_w);
    if (!stored_kernel_is_active(bi, t)) {
        OFA_PROF(OFA_PROF_DWKERNEL, OFA_PROF_FWD,
                 ofa_dwkernel_forward(t->k, t->k5, kern,
                                      bi->dw_m75 >= 0 ? ofa_param_data(p, bi->dw_m75) : NULL,
                                      bi->dw_m53 >= 0 ? ofa_param_data(p, bi->dw_m53) : NULL,
                                      t->K, t->mid, bi->mid_max, bi->dw_m75 >= 0));
        kern = t->k;
    }
    dwconv_forward(t->d1, eval ? t->e2 : t->e1, eval ? NULL : &ebn, kern, N, t->H, t->mid, t->K,
                   t->stride);
    bn_forward(net, mode, &bi->dw_bn, t->d2, t->act, &t->bn[1], t->d1, NULL, Mo, t->mid, 0);
    const float *pin = t->d2;
    if (t->se) {
        OFA_PROF(OFA_PROF_SE, OFA_PROF_FWD,
                 ofa_se_forward(t->s, t->pooled, t->hid, t->gate, t->d2,
                                ofa_param_data(p, bi->se_w1), bi->mid_max,
                                ofa_param_data(p, bi->se_b1), ofa_param_data(p, bi->se_w2),
                                bi->r_max, ofa_param_data(p, bi->se_b2), N, t->Ho * t->Ho,
                                t->mid, t->R));
        pin = t->s;
    }
    pw_forward(mode, OFA_PROF_PW_PROJECT, t->p1, &t->bn[2], pin,
               ofa_param_data(p, bi->proj_w), bi->mid_max, Mo, t->mid, t->cout);
    bn_forward(net, mode, &bi->proj_bn, t->out, OFA_ACT_NONE, &t->bn[2], t->p1,
               t->residual ? x : NULL, Mo, t->cout, 1);
}

/* The optional activation hook (supernet.h); not in calibration passes. */
static void act_hook(struct ofa_supernet *net, enum ofa_mode mode, int site, float *x, long n)
{
    if (net->act_hook && mode != OFA_MODE_CALIB)
        net->act_hook(net->act_hook_ctx, site, x, n, (int)mode);
}

const float *ofa_supernet_forward(struct ofa_supernet *net, struct ofa_exec *ex,
                                  const struct ofa_subnet *sub, const float *x, int N,
                                  enum ofa_mode mode, float dropout, struct ofa_rng *rng)
{
    const struct ofa_space *sp = &net->sp;
    struct ofa_params *p = &net->p;
    OFA_ASSERT(N >= 1 && N <= ex->max_batch);
    OFA_ASSERT(ofa_subnet_valid(sp, sub));
    OFA_ASSERT(!net->standalone || memcmp(sub, &net->sub, sizeof *sub) == 0);
    OFA_ASSERT(mode != OFA_MODE_CALIB || net->calib);
    plan(net, ex, sub, N);
    ex->mode = mode;
    if (mode == OFA_MODE_CALIB)
        net->calib_batches++;
    ex->x = x;
    const int R = sub->res, H = ofa_conv_out_size(R, 3, sp->stem_stride, 1);
    const long M = (long)N * H * H;
    int C = sp->stem_width;

    OFA_PROF(OFA_PROF_STEM_CONV, OFA_PROF_FWD,
             ofa_conv2d_forward(ex->s1, ex->col, x, ofa_param_data(p, net->stem_w), N, R, R,
                                sp->in_channels, C, 3, sp->stem_stride, 1));
    bn_forward(net, mode, &net->stem_bn, ex->s2, sp->stem_act, &ex->stem_bn, ex->s1, NULL,
               M, C, 0);
    act_hook(net, mode, 0, ex->s2, M * C);
    dwconv_forward(ex->f1, ex->s2, NULL, ofa_param_data(p, net->first_dw), N, H, C, 3, 1);
    bn_forward(net, mode, &net->first_dw_bn, ex->f2, OFA_ACT_RELU, &ex->f_bn[0], ex->f1,
               NULL, M, C, 0);
    pw_forward(mode, OFA_PROF_PW_PROJECT, ex->f3, &ex->f_bn[1], ex->f2,
               ofa_param_data(p, net->first_pw), C, M, C, sp->first_width);
    bn_forward(net, mode, &net->first_pw_bn, ex->f4, OFA_ACT_NONE, &ex->f_bn[1], ex->f3,
               ex->first_residual ? ex->s2 : NULL, M, sp->first_width, 1);
    act_hook(net, mode, 1, ex->f4, M * sp->first_width);

    const float *cur = ex->f4;
    int site = 2;
    for (int s = 0; s < sp->n_stages; s++)
        for (int b = 0; b < sub->depth[s]; b++) {
            struct ofa_block_tape *t = &ex->blk[s][b];
            block_forward(net, mode, &net->blk[s][b], t, cur, N);
            act_hook(net, mode, site++, t->out, (long)N * t->Ho * t->Ho * t->cout);
            cur = t->out;
        }

    const int Hh = ex->Hh, Cl = net->p.t[net->head_w].shape[1], Hw = sp->head_width;
    const long Mh = (long)N * Hh * Hh;
    pw_forward(mode, OFA_PROF_PW_HEAD, ex->h1, &ex->head_bn, cur,
               ofa_param_data(p, net->head_w), Cl, Mh, Cl, Hw);
    bn_forward(net, mode, &net->head_bn, ex->h2, OFA_ACT_HSWISH, &ex->head_bn, ex->h1, NULL,
               Mh, Hw, 1);
    act_hook(net, mode, site, ex->h2, Mh * Hw);
    OFA_PROF(OFA_PROF_AVGPOOL, OFA_PROF_FWD, ofa_avgpool_forward(ex->g, ex->h2, N, Hh * Hh, Hw));
    ex->dropout_on = mode == OFA_MODE_TRAIN && dropout > 0.0f;
    const float *feat = ex->g;
    if (ex->dropout_on) {
        OFA_ASSERT(rng);
        OFA_PROF(OFA_PROF_DROPOUT, OFA_PROF_FWD,
                 ofa_dropout_forward(ex->g2, ex->mask, ex->g, (long)N * Hw, dropout, rng));
        feat = ex->g2;
    }
    OFA_PROF(OFA_PROF_FC, OFA_PROF_FWD,
             ofa_linear_forward(ex->logits, feat, ofa_param_data(p, net->fc_w), Hw,
                                ofa_param_data(p, net->fc_b), N, Hw, sp->num_classes));
    return ex->logits;
}

/* ---- Timing ---------------------------------------------------------------------- */

/* Median of n timings in seconds, in ms. */
static double median_ms(double *t, int n)
{
    return 1e3 * ofa_median(t, n);
}

void ofa_supernet_time_parts(struct ofa_supernet *net, struct ofa_exec *ex,
                             const struct ofa_subnet *sub, int reps, double *stem_ms,
                             double block_ms[OFA_MAX_STAGES][OFA_MAX_DEPTH], double *head_ms)
{
    const struct ofa_space *sp = &net->sp;
    OFA_ASSERT(reps >= 1);
    const int R = sub->res;
    float *x = ofa_xmalloc((size_t)R * R * sp->in_channels * sizeof *x, "timing input");
    struct ofa_rng r;
    ofa_rng_seed(&r, 1);
    ofa_rng_fill_normal(&r, x, (long)R * R * sp->in_channels, 1.0f);
    double *t = ofa_xmalloc((size_t)(reps + 1) * sizeof *t, "timings");
    /* The whole forward once (sets up every block's input), then each part. */
    ofa_supernet_forward(net, ex, sub, x, 1, OFA_MODE_EVAL, 0.0f, NULL);
    double total_ms;
    for (int i = 0; i <= reps; i++) {
        double t0 = ofa_thread_cpu_now();
        ofa_supernet_forward(net, ex, sub, x, 1, OFA_MODE_EVAL, 0.0f, NULL);
        t[i] = ofa_thread_cpu_now() - t0;
    }
    total_ms = median_ms(t + 1, reps);
    double blocks_ms = 0;
    for (int s = 0; s < sp->n_stages; s++)
        for (int b = 0; b < sub->depth[s]; b++) {
            struct ofa_block_tape *bt = &ex->blk[s][b];
            for (int i = 0; i <= reps; i++) {
                double t0 = ofa_thread_cpu_now();
                block_forward(net, OFA_MODE_EVAL, &net->blk[s][b], bt, bt->x, 1);
                t[i] = ofa_thread_cpu_now() - t0;
            }
            block_ms[s][b] = median_ms(t + 1, reps);
            blocks_ms += block_ms[s][b];
        }
    /* Stem and head: the head alone is timed; the stem and first block are
     * what remains of the whole forward. */
    const int Hh = ex->Hh, Cl = net->p.t[net->head_w].shape[1], Hw = sp->head_width;
    const float *last = ex->f4;
    for (int s = 0; s < sp->n_stages; s++)
        if (sub->depth[s] > 0)
            last = ex->blk[s][sub->depth[s] - 1].out;
    for (int i = 0; i <= reps; i++) {
        double t0 = ofa_thread_cpu_now();
        ofa_pwconv_forward(ex->h1, last, ofa_param_data(&net->p, net->head_w), Cl,
                           (long)Hh * Hh, Cl, Hw);
        ofa_bn_act_forward_eval(ex->h2, ex->h1, ofa_param_data(&net->p, net->head_bn.g),
                                ofa_param_data(&net->p, net->head_bn.b),
                                ofa_param_data(&net->p, net->head_bn.m),
                                ofa_param_data(&net->p, net->head_bn.v), (long)Hh * Hh, Hw,
                                sp->bn_eps, OFA_ACT_HSWISH, NULL);
        ofa_avgpool_forward(ex->g, ex->h2, 1, Hh * Hh, Hw);
        ofa_linear_forward(ex->logits, ex->g, ofa_param_data(&net->p, net->fc_w), Hw,
                           ofa_param_data(&net->p, net->fc_b), 1, Hw, sp->num_classes);
        t[i] = ofa_thread_cpu_now() - t0;
    }
    *head_ms = median_ms(t + 1, reps);
    *stem_ms = total_ms - blocks_ms - *head_ms;
    if (*stem_ms < 0)
        *stem_ms = 0;
    free(t);
    free(x);
}

/* ---- Backward ----------------------------------------------------------------- */

/* buf[0, n) = 0, the threads taking contiguous chunks (at 2 threads about
 * half the time of one memset: these buffers are megabytes). */
static void zero_fill(float *buf, size_t n)
{
    enum { CHUNK = 1 << 16 };
    const long chunks = (long)((n + CHUNK - 1) / CHUNK);
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (long c = 0; c < chunks; c++) {
        const size_t i0 = (size_t)c * CHUNK, i1 = i0 + CHUNK < n ? i0 + CHUNK : n;
        memset(buf + i0, 0, (i1 - i0) * sizeof *buf);
    }
}

/* A gradient buffer zeroed for an op that accumulates into it. */
static float *zeroed(float *buf, size_t n)
{
    OFA_PROF(OFA_PROF_GRAD_FILL, OFA_PROF_BWD, zero_fill(buf, n));
    return buf;
}

/* The backward of act(BN(in)) (act may be OFA_ACT_NONE): dinp is
 * overwritten. */
static void bn_act_backward(struct ofa_supernet *net, const struct ofa_bn_idx *bi, float *dinp,
                            const float *dout, enum ofa_act act, const float *in,
                            const struct ofa_bn_tape *t, long M, int C)
{
    struct ofa_params *p = &net->p;
    OFA_PROF(OFA_PROF_BN_TRAIN, OFA_PROF_BWD,
             ofa_bn_act_backward(dinp, ofa_param_grad(p, bi->g), ofa_param_grad(p, bi->b), dout,
                                 in, t->mean, t->rstd, ofa_param_data(p, bi->g),
                                 ofa_param_data(p, bi->b), M, C, act));
}

/* The backward of act(BN(y)), y = the 1x1 convolution of inp, from dz the
 * gradient at act(BN(y)): BN's sums, then its input gradient a block of rows
 * at a time into the convolution's backward (ofa_pwconv_backward_bn), in
 * scratch [M,cout]. The profile counts the sums as BN and the rest as the
 * convolution (kind). */
static void bn_pw_backward(struct ofa_supernet *net, const struct ofa_bn_idx *bi,
                           const struct ofa_bn_tape *t, enum ofa_act act,
                           enum ofa_prof_kind kind, float *dinp, int accumulate, int w,
                           int ldw, float *scratch, const float *dz, const float *y,
                           const float *inp, long M, int cin, int cout)
{
    struct ofa_params *p = &net->p;
    struct ofa_bn_grad bg;
    OFA_PROF(OFA_PROF_BN_TRAIN, OFA_PROF_BWD,
             ofa_bn_grad_prepare(&bg, ofa_param_grad(p, bi->g), ofa_param_grad(p, bi->b), dz,
                                 y, t->mean, t->rstd, ofa_param_data(p, bi->g),
                                 ofa_param_data(p, bi->b), M, cout, act));
    OFA_PROF(kind, OFA_PROF_BWD,
             ofa_pwconv_backward_bn(dinp, accumulate, ofa_param_grad(p, w), scratch, &bg, dz, y,
                                    inp, ofa_param_data(p, w), ldw, M, cin, cout));
    ofa_bn_grad_free(&bg);
}

/* dout [N,Ho,Ho,cout] -> dx [N,H,H,cin] (overwritten), using ex->u and ex->v.
 * A residual block adds its input gradient to dout in place: dx is dout
 * (read only by the project's backward, before the expand's adds to it). */
static void block_backward(struct ofa_supernet *net, struct ofa_exec *ex,
                           const struct ofa_block_idx *bi, const struct ofa_block_tape *t,
                           float *dx, const float *dout, int N)
{
    OFA_ASSERT(t->residual == (dx == dout));
    struct ofa_params *p = &net->p;
    const long Mi = (long)N * t->H * t->H, Mo = (long)N * t->Ho * t->Ho;
    float *u = ex->u, *v = ex->v;
    bn_pw_backward(net, &bi->proj_bn, &t->bn[2], OFA_ACT_NONE, OFA_PROF_PW_PROJECT, v, 0,
                   bi->proj_w, bi->mid_max, u, dout, t->p1, t->se ? t->s : t->d2, Mo, t->mid,
                   t->cout);
    float *dd2 = v;
    if (t->se) {
        OFA_PROF(OFA_PROF_SE, OFA_PROF_BWD,
                 ofa_se_backward(u, 0, ofa_param_grad(p, bi->se_w1),
                                 ofa_param_grad(p, bi->se_b1), ofa_param_grad(p, bi->se_w2),
                                 ofa_param_grad(p, bi->se_b2), ex->sescr, v, t->d2, t->pooled,
                                 t->hid, t->gate, ofa_param_data(p, bi->se_w1), bi->mid_max,
                                 ofa_param_data(p, bi->se_w2), bi->r_max, N, t->Ho * t->Ho,
                                 t->mid, t->R));
        dd2 = u;
    }
    float *other = dd2 == u ? v : u;
    bn_act_backward(net, &bi->dw_bn, other, dd2, t->act, t->d1, &t->bn[1], Mo, t->mid);
    float *dd1 = other;
    other = dd1 == u ? v : u;
    const struct ofa_bn_act ebn = expand_bn_act(net, bi, t);
    if (stored_kernel_is_active(bi, t)) {
        dwconv_backward(other, 0, ofa_param_grad(p, bi->dw_w), dd1, t->e1, &ebn,
                        ofa_param_data(p, bi->dw_w), N, t->H, t->mid, t->K, t->stride);
    } else {
        float *dk = zeroed(ex->kscr, (size_t)t->K * t->K * t->mid);
        float *dk5 = dk + (size_t)t->K * t->K * t->mid;
        dwconv_backward(other, 0, dk, dd1, t->e1, &ebn, t->k, N, t->H, t->mid, t->K,
                        t->stride);
        OFA_PROF(OFA_PROF_DWKERNEL, OFA_PROF_BWD,
                 ofa_dwkernel_backward(ofa_param_grad(p, bi->dw_w),
                                       bi->dw_m75 >= 0 ? ofa_param_grad(p, bi->dw_m75) : NULL,
                                       bi->dw_m53 >= 0 ? ofa_param_grad(p, bi->dw_m53) : NULL,
                                       dk5, dk, t->k5, ofa_param_data(p, bi->dw_w),
                                       bi->dw_m75 >= 0 ? ofa_param_data(p, bi->dw_m75) : NULL,
                                       bi->dw_m53 >= 0 ? ofa_param_data(p, bi->dw_m53) : NULL,
                                       t->K, t->mid, bi->mid_max, bi->dw_m75 >= 0));
    }
    float *de2 = other;
    other = de2 == u ? v : u;
    bn_pw_backward(net, &bi->exp_bn, &t->bn[0], t->act, OFA_PROF_PW_EXPAND, dx, t->residual,
                   bi->exp_w, bi->cin, other, de2, t->e1, t->x, Mi, t->cin, t->mid);
}

void ofa_supernet_backward(struct ofa_supernet *net, struct ofa_exec *ex, const float *dlogits)
{
    OFA_ASSERT(ex->mode == OFA_MODE_TRAIN);
    const struct ofa_space *sp = &net->sp;
    struct ofa_params *p = &net->p;
    const int N = ex->N, Hw = sp->head_width, Hh = ex->Hh;
    const int Cl = p->t[net->head_w].shape[1];
    const long Mh = (long)N * Hh * Hh;
    float *u = ex->u, *v = ex->v;

    /* Head: dlogits -> dfeat (u) -> dg (v) -> dh2 (u) -> dh1 (v). */
    const float *feat = ex->dropout_on ? ex->g2 : ex->g;
    OFA_PROF(OFA_PROF_FC, OFA_PROF_BWD,
             ofa_linear_backward(zeroed(u, (size_t)N * Hw), ofa_param_grad(p, net->fc_w),
                                 ofa_param_grad(p, net->fc_b), dlogits, feat,
                                 ofa_param_data(p, net->fc_w), Hw, N, Hw, sp->num_classes));
    float *dg = u;
    if (ex->dropout_on) {
        OFA_PROF(OFA_PROF_DROPOUT, OFA_PROF_BWD,
                 ofa_dropout_backward(zeroed(v, (size_t)N * Hw), u, ex->mask, (long)N * Hw));
        dg = v;
    }
    float *dh2 = dg == u ? v : u;
    OFA_PROF(OFA_PROF_AVGPOOL, OFA_PROF_BWD,
             ofa_avgpool_backward(zeroed(dh2, (size_t)(Mh * Hw)), dg, N, Hh * Hh, Hw));
    float *dh1 = dh2 == u ? v : u;
    bn_act_backward(net, &net->head_bn, dh1, dh2, OFA_ACT_HSWISH, ex->h1, &ex->head_bn,
                    Mh, Hw);
    /* Into the last block's output gradient (ga). */
    const float *last = ex->f4;
    for (int s = 0; s < sp->n_stages; s++)
        if (ex->sub.depth[s] > 0)
            last = ex->blk[s][ex->sub.depth[s] - 1].out;
    float *gcur = ex->ga, *gnext = ex->gb;
    OFA_PROF(OFA_PROF_PW_HEAD, OFA_PROF_BWD,
             ofa_pwconv_backward(gcur, 0, ofa_param_grad(p, net->head_w), dh1, last,
                                 ofa_param_data(p, net->head_w), Cl, Mh, Cl, Hw));

    for (int s = sp->n_stages - 1; s >= 0; s--)
        for (int b = ex->sub.depth[s] - 1; b >= 0; b--) {
            const struct ofa_block_tape *t = &ex->blk[s][b];
            float *dx = t->residual ? gcur : gnext; /* a residual block adds in place */
            block_backward(net, ex, &net->blk[s][b], t, dx, gcur, N);
            if (dx == gnext) {
                gnext = gcur;
                gcur = dx;
            }
        }

    /* First block and stem; gcur holds d(f4). */
    const int R = ex->R, H = ofa_conv_out_size(R, 3, sp->stem_stride, 1);
    const int C = sp->stem_width, F = sp->first_width;
    const long M = (long)N * H * H;
    /* A residual first block adds ds2 to gcur in place (read before). */
    float *ds2 = ex->first_residual ? gcur : gnext;
    bn_act_backward(net, &net->first_pw_bn, u, gcur, OFA_ACT_NONE, ex->f3, &ex->f_bn[1], M,
                    F);
    OFA_PROF(OFA_PROF_PW_PROJECT, OFA_PROF_BWD,
             ofa_pwconv_backward(v, 0, ofa_param_grad(p, net->first_pw), u, ex->f2,
                                 ofa_param_data(p, net->first_pw), C, M, C, F));
    bn_act_backward(net, &net->first_dw_bn, u, v, OFA_ACT_RELU, ex->f1, &ex->f_bn[0], M,
                    C);
    dwconv_backward(ds2, ex->first_residual, ofa_param_grad(p, net->first_dw), u, ex->s2, NULL,
                    ofa_param_data(p, net->first_dw), N, H, C, 3, 1);
    bn_act_backward(net, &net->stem_bn, v, ds2, sp->stem_act, ex->s1, &ex->stem_bn, M, C);
    OFA_PROF(OFA_PROF_STEM_CONV, OFA_PROF_BWD,
             ofa_conv2d_backward(NULL, ofa_param_grad(p, net->stem_w), NULL, v, ex->col,
                                 ofa_param_data(p, net->stem_w), N, R, R, sp->in_channels, C, 3,
                                 sp->stem_stride, 1));
}

/* ---- BN recalibration ------------------------------------------------------ */

void ofa_supernet_calib_begin(struct ofa_supernet *net)
{
    if (!net->calib)
        net->calib = ofa_xmalloc(net->p.total * sizeof(float), "BN recalibration sums");
    memset(net->calib, 0, net->p.total * sizeof(float));
    net->calib_batches = 0;
}

static void calib_set(struct ofa_supernet *net, const struct ofa_bn_idx *bi, int C, int nb)
{
    struct ofa_params *p = &net->p;
    const float *sm = net->calib + p->t[bi->m].offset, *sv = net->calib + p->t[bi->v].offset;
    float *rm = ofa_param_data(p, bi->m), *rv = ofa_param_data(p, bi->v);
    for (int c = 0; c < C; c++) {
        rm[c] = sm[c] / (float)nb;
        rv[c] = sv[c] / (float)nb;
    }
}

void ofa_supernet_calib_end(struct ofa_supernet *net, const struct ofa_subnet *sub)
{
    const struct ofa_space *sp = &net->sp;
    OFA_ASSERT(net->calib);
    int nb = net->calib_batches;
    OFA_ASSERT(nb > 0);
    calib_set(net, &net->stem_bn, sp->stem_width, nb);
    calib_set(net, &net->first_dw_bn, sp->stem_width, nb);
    calib_set(net, &net->first_pw_bn, sp->first_width, nb);
    for (int s = 0; s < sp->n_stages; s++)
        for (int b = 0; b < sub->depth[s]; b++) {
            const struct ofa_block_idx *bi = &net->blk[s][b];
            int mid = bi->cin * sub->expand[s][b];
            calib_set(net, &bi->exp_bn, mid, nb);
            calib_set(net, &bi->dw_bn, mid, nb);
            calib_set(net, &bi->proj_bn, bi->cout, nb);
        }
    calib_set(net, &net->head_bn, sp->head_width, nb);
}

/* ---- Channel importance sorting ---------------------------------------------- */

struct rank {
    double key;
    int idx;
};

static int cmp_rank(const void *a, const void *b)
{
    const struct rank *x = a, *y = b;
    if (x->key != y->key)
        return x->key > y->key ? -1 : 1; /* descending importance */
    return x->idx - y->idx;              /* stable */
}

/* Permute the rows (stride cols floats each, nrows rows) of tensor idx in
 * data and momentum: new row i = old row perm[i]. */
static void permute_rows(struct ofa_params *p, int idx, const int *perm, int nrows, int cols,
                         float *tmp)
{
    float *bufs[2] = {ofa_param_data(p, idx), p->mom + p->t[idx].offset};
    for (int k = 0; k < 2; k++) {
        float *x = bufs[k];
        memcpy(tmp, x, (size_t)nrows * cols * sizeof *tmp);
        for (int i = 0; i < nrows; i++)
            memcpy(x + (size_t)i * cols, tmp + (size_t)perm[i] * cols, (size_t)cols * sizeof *x);
    }
}

/* Permute the columns (of nrows rows with stride ld) of tensor idx. */
static void permute_cols(struct ofa_params *p, int idx, const int *perm, int nrows, int ld,
                         float *tmp)
{
    float *bufs[2] = {ofa_param_data(p, idx), p->mom + p->t[idx].offset};
    for (int k = 0; k < 2; k++) {
        float *x = bufs[k];
        memcpy(tmp, x, (size_t)nrows * ld * sizeof *tmp);
        for (int r = 0; r < nrows; r++)
            for (int j = 0; j < ld; j++)
                x[(size_t)r * ld + j] = tmp[(size_t)r * ld + perm[j]];
    }
}

static void permute_bn(struct ofa_params *p, const struct ofa_bn_idx *bn, const int *perm, int C,
                       float *tmp)
{
    const int idx[4] = {bn->g, bn->b, bn->m, bn->v};
    for (int i = 0; i < 4; i++)
        permute_rows(p, idx[i], perm, C, 1, tmp);
}

static void rank_by_l1(const float *w, int nrows, int ld, int ncols, int *perm,
                       struct rank *rk)
{
    /* importance of column j = sum over rows |w[r][j]| */
    for (int j = 0; j < ncols; j++) {
        double s = 0;
        for (int r = 0; r < nrows; r++)
            s += fabs((double)w[(size_t)r * ld + j]);
        rk[j].key = s;
        rk[j].idx = j;
    }
    qsort(rk, (size_t)ncols, sizeof *rk, cmp_rank);
    for (int j = 0; j < ncols; j++)
        perm[j] = rk[j].idx;
}

void ofa_supernet_sort_channels(struct ofa_supernet *net)
{
    OFA_ASSERT(!net->standalone);
    const struct ofa_space *sp = &net->sp;
    struct ofa_params *p = &net->p;
    size_t maxn = 0;
    int maxc = 0;
    for (int i = 0; i < p->n; i++)
        if (p->t[i].numel > maxn)
            maxn = p->t[i].numel;
    for (int s = 0; s < sp->n_stages; s++)
        for (int b = 0; b < ofa_space_max_depth(sp); b++)
            if (net->blk[s][b].mid_max > maxc)
                maxc = net->blk[s][b].mid_max;
    float *tmp = ofa_xmalloc(maxn * sizeof *tmp, "channel sorting");
    int *perm = ofa_xmalloc((size_t)maxc * sizeof *perm, "channel sorting");
    struct rank *rk = ofa_xmalloc((size_t)maxc * sizeof *rk, "channel sorting");
    for (int s = 0; s < sp->n_stages; s++)
        for (int b = 0; b < ofa_space_max_depth(sp); b++) {
            const struct ofa_block_idx *bi = &net->blk[s][b];
            const int mid = bi->mid_max;
            if (bi->se) {
                /* SE hidden channels first, by the L1 norm of se.w2's columns. */
                const int R = bi->r_max;
                rank_by_l1(ofa_param_data(p, bi->se_w2), mid, R, R, perm, rk);
                permute_rows(p, bi->se_w1, perm, R, mid, tmp);
                permute_rows(p, bi->se_b1, perm, R, 1, tmp);
                permute_cols(p, bi->se_w2, perm, mid, R, tmp);
            }
            rank_by_l1(ofa_param_data(p, bi->proj_w), bi->cout, mid, mid, perm, rk);
            permute_cols(p, bi->proj_w, perm, bi->cout, mid, tmp);
            permute_rows(p, bi->exp_w, perm, mid, bi->cin, tmp);
            permute_bn(p, &bi->exp_bn, perm, mid, tmp);
            permute_cols(p, bi->dw_w, perm, 49, mid, tmp); /* [7*7][mid] */
            permute_bn(p, &bi->dw_bn, perm, mid, tmp);
            if (bi->se) {
                permute_cols(p, bi->se_w1, perm, bi->r_max, mid, tmp);
                permute_rows(p, bi->se_w2, perm, mid, bi->r_max, tmp);
                permute_rows(p, bi->se_b2, perm, mid, 1, tmp);
            }
        }
    free(tmp);
    free(perm);
    free(rk);
}
