/* model.c: the exported (materialised) float model: a flat list of layers
 * copied out of a supernet subnet with every BN folded into the convolution
 * before it, and its float forward pass on the project's ops.
 *
 * The layer list follows ofa_supernet_forward step by step (stem, first
 * block, MBConv blocks, head), so the model computes what the supernet view
 * computes in OFA_MODE_EVAL up to the rounding of the folded weights.
 * The forward keeps each tensor in a scratch slot until its last reader has
 * run (a residual input stays alive across its block), so the scratch is a
 * few tensors wide, not the whole network. The 1x1 convolutions and the
 * classifier run on a copy of their weights packed once (ofa_model_pack). */
#include <config.h>

#include "model.h"

#include "blas.h"
#include "prof.h"
#include "supernet.h"
#include "util.h"

#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdlib.h>
#include <string.h>

void ofa_model_free(struct ofa_model *m)
{
    free(m->class_names);
    free(m->layers);
    free(m->tensors);
    free(m->weights);
    free(m->packed);
    free(m->tq);
    free(m->qweights);
    free(m->qbias);
    free(m->wscale);
    memset(m, 0, sizeof *m);
}

/* ---- Materialisation -------------------------------------------------------- */

struct builder {
    struct ofa_model *m;
    int cap_layers, cap_tensors;
    long cap_weights;
    int part; /* ofa_layer.part of the layers added now */
};

static void *grow(void *p, size_t n, size_t size, const char *what)
{
    void *q = realloc(p, ofa_mul_size(n, size));
    if (!q)
        ofa_fatal("out of memory (%zu x %zu bytes) for %s", n, size, what);
    return q;
}

/* Reserve n floats of weights; returns their offset. */
static long reserve(struct builder *bd, long n)
{
    struct ofa_model *m = bd->m;
    if (m->n_weights + n > bd->cap_weights) {
        while (m->n_weights + n > bd->cap_weights)
            bd->cap_weights = bd->cap_weights ? 2 * bd->cap_weights : 4096;
        m->weights = grow(m->weights, (size_t)bd->cap_weights, sizeof(float), "model weights");
    }
    long off = m->n_weights;
    m->n_weights += n;
    return off;
}

static int add_tensor(struct builder *bd, int H, int W, int C)
{
    struct ofa_model *m = bd->m;
    if (m->n_tensors == bd->cap_tensors) {
        bd->cap_tensors = bd->cap_tensors ? 2 * bd->cap_tensors : 64;
        m->tensors = grow(m->tensors, (size_t)bd->cap_tensors, sizeof *m->tensors,
                          "model tensors");
    }
    m->tensors[m->n_tensors] = (struct ofa_tshape){H, W, C};
    return m->n_tensors++;
}

/* A new layer reading tensor in, with its output tensor of shape (Ho, Wo,
 * Cout) registered; weight offsets absent until the caller sets them. */
static struct ofa_layer *add_layer(struct builder *bd, enum ofa_layer_kind kind, int in,
                                   int Ho, int Wo, int Cout)
{
    struct ofa_model *m = bd->m;
    if (m->n_layers == bd->cap_layers) {
        bd->cap_layers = bd->cap_layers ? 2 * bd->cap_layers : 64;
        m->layers = grow(m->layers, (size_t)bd->cap_layers, sizeof *m->layers, "model layers");
    }
    const struct ofa_tshape ti = m->tensors[in];
    int out = add_tensor(bd, Ho, Wo, Cout);
    struct ofa_layer *L = &m->layers[m->n_layers++];
    memset(L, 0, sizeof *L);
    L->kind = kind;
    L->in = in, L->in2 = -1, L->out = out;
    L->H = ti.H, L->W = ti.W, L->Cin = ti.C;
    L->Ho = Ho, L->Wo = Wo, L->Cout = Cout;
    L->K = 1, L->stride = 1, L->pad = 0;
    L->act = OFA_ACT_NONE;
    L->w = L->b = L->w2 = L->b2 = -1;
    L->qw = L->qw2 = L->qb = L->qb2 = L->ws = L->ws2 = -1;
    L->part = bd->part;
    return L;
}

/* Per-channel BN scale gamma / sqrt(var + eps) (double) of channel c. */
static double bn_scale(const struct ofa_params *p, const struct ofa_bn_idx *bn, int c, float eps)
{
    return (double)ofa_param_data(p, bn->g)[c] /
           sqrt((double)ofa_param_data(p, bn->v)[c] + (double)eps);
}

/* Fold BN into a weight whose output channel c owns the `row` floats at
 * w + c * row (conv [Cout][K][K][Cin]) or, for depthwise [K][K][C], the
 * floats w[j * C + c]. Writes the folded weights and bias to the model. */
static void fold(struct builder *bd, struct ofa_layer *L, const struct ofa_params *p, int widx,
                 const struct ofa_bn_idx *bn, float eps)
{
    const int C = L->Cout;
    const int dw = L->kind == OFA_LAYER_DW;
    const long row = dw ? (long)L->K * L->K : (long)L->K * L->K * L->Cin;
    OFA_ASSERT(p->t[widx].numel == (size_t)(row * C));
    L->w = reserve(bd, row * C);
    L->b = reserve(bd, C);
    const float *src = ofa_param_data(p, widx);
    const float *mean = ofa_param_data(p, bn->m), *beta = ofa_param_data(p, bn->b);
    float *w = bd->m->weights + L->w, *b = bd->m->weights + L->b;
    for (int c = 0; c < C; c++) {
        const double s = bn_scale(p, bn, c, eps);
        for (long j = 0; j < row; j++) {
            const long i = dw ? j * C + c : c * row + j;
            w[i] = (float)((double)src[i] * s);
        }
        b[c] = (float)((double)beta[c] - (double)mean[c] * s);
    }
}

static void copy_weights(struct builder *bd, long *off, const struct ofa_params *p, int idx)
{
    const long n = (long)p->t[idx].numel;
    *off = reserve(bd, n);
    memcpy(bd->m->weights + *off, ofa_param_data(p, idx), (size_t)n * sizeof(float));
}

/* conv (K, stride, pad K/2 or 0) + folded BN + act, from tensor in. */
static int conv_bn(struct builder *bd, const struct ofa_params *p, float eps,
                   enum ofa_layer_kind kind, int in, int widx, const struct ofa_bn_idx *bn,
                   int Cout, int K, int stride, enum ofa_act act)
{
    const struct ofa_tshape ti = bd->m->tensors[in];
    const int pad = K / 2;
    const int Ho = ofa_conv_out_size(ti.H, K, stride, pad);
    const int Wo = ofa_conv_out_size(ti.W, K, stride, pad);
    struct ofa_layer *L = add_layer(bd, kind, in, Ho, Wo, Cout);
    L->K = K, L->stride = stride, L->pad = pad;
    L->act = act;
    fold(bd, L, p, widx, bn, eps);
    return L->out;
}

static int add_residual(struct builder *bd, int in, int in2)
{
    const struct ofa_tshape t = bd->m->tensors[in];
    OFA_ASSERT(memcmp(&t, &bd->m->tensors[in2], sizeof t) == 0);
    struct ofa_layer *L = add_layer(bd, OFA_LAYER_ADD, in, t.H, t.W, t.C);
    L->in2 = in2;
    return L->out;
}

void ofa_model_materialise(struct ofa_model *m, const struct ofa_supernet *net,
                           const struct ofa_subnet *sub)
{
    memset(m, 0, sizeof *m);
    /* A standalone network (ofa_supernet_extract, e.g. after fine-tuning) is
     * read as it is; an elastic one is extracted first: own weights, KxK
     * kernels materialised. */
    struct ofa_supernet ext = {0};
    const struct ofa_supernet *src = net;
    if (net->standalone) {
        char a[OFA_SUBNET_TEXT_MAX], b[OFA_SUBNET_TEXT_MAX];
        ofa_subnet_format(&net->sp, sub, a, sizeof a);
        ofa_subnet_format(&net->sp, &net->sub, b, sizeof b);
        OFA_ASSERT(strcmp(a, b) == 0);
    } else {
        ofa_supernet_extract(&ext, net, sub);
        src = &ext;
    }
    const struct ofa_supernet sn = *src;
    const struct ofa_space *sp = &net->sp;
    const struct ofa_params *p = &sn.p;
    const float eps = sp->bn_eps;
    struct builder bd = {m, 0, 0, 0, 0};

    ofa_subnet_format(sp, sub, m->subnet, sizeof m->subnet);
    m->in_channels = sp->in_channels;
    m->res = sub->res;
    m->num_classes = sp->num_classes;
    for (int i = 0; i < 3; i++)
        m->norm_mean[i] = 0.0f, m->norm_std[i] = 1.0f;

    int x = add_tensor(&bd, sub->res, sub->res, sp->in_channels);
    /* Stem: conv 3x3 stride stem_stride pad 1, BN, stem act. */
    const int stem = conv_bn(&bd, p, eps, OFA_LAYER_CONV, x, sn.stem_w, &sn.stem_bn,
                             sp->stem_width, 3, sp->stem_stride, sp->stem_act);
    /* First block: dw3x3, BN, relu, pw, BN, residual when the widths match. */
    int t = conv_bn(&bd, p, eps, OFA_LAYER_DW, stem, sn.first_dw, &sn.first_dw_bn,
                    sp->stem_width, 3, 1, OFA_ACT_RELU);
    t = conv_bn(&bd, p, eps, OFA_LAYER_CONV, t, sn.first_pw, &sn.first_pw_bn, sp->first_width, 1,
                1, OFA_ACT_NONE);
    if (sp->stem_width == sp->first_width)
        t = add_residual(&bd, t, stem);

    for (int s = 0; s < sp->n_stages; s++)
        for (int b = 0; b < sub->depth[s]; b++) {
            const struct ofa_block_idx *bi = &sn.blk[s][b];
            const int mid = bi->mid_max, K = bi->dw_k, bin = t;
            bd.part++;
            OFA_ASSERT(mid == bi->cin * sub->expand[s][b] && K == sub->kernel[s][b]);
            t = conv_bn(&bd, p, eps, OFA_LAYER_CONV, t, bi->exp_w, &bi->exp_bn, mid, 1, 1,
                        bi->act);
            t = conv_bn(&bd, p, eps, OFA_LAYER_DW, t, bi->dw_w, &bi->dw_bn, mid, K, bi->stride,
                        bi->act);
            if (bi->se) {
                const struct ofa_tshape ts = m->tensors[t];
                struct ofa_layer *L = add_layer(&bd, OFA_LAYER_SE, t, ts.H, ts.W, ts.C);
                L->R = bi->r_max;
                copy_weights(&bd, &L->w, p, bi->se_w1);
                copy_weights(&bd, &L->b, p, bi->se_b1);
                copy_weights(&bd, &L->w2, p, bi->se_w2);
                copy_weights(&bd, &L->b2, p, bi->se_b2);
                t = L->out;
            }
            t = conv_bn(&bd, p, eps, OFA_LAYER_CONV, t, bi->proj_w, &bi->proj_bn, bi->cout, 1, 1,
                        OFA_ACT_NONE);
            if (bi->residual_possible)
                t = add_residual(&bd, t, bin);
        }

    /* Head: 1x1 conv, BN, hswish, global pool, (dropout: identity), linear. */
    bd.part++;
    t = conv_bn(&bd, p, eps, OFA_LAYER_CONV, t, sn.head_w, &sn.head_bn, sp->head_width, 1, 1,
                OFA_ACT_HSWISH);
    t = add_layer(&bd, OFA_LAYER_POOL, t, 1, 1, sp->head_width)->out;
    struct ofa_layer *fc = add_layer(&bd, OFA_LAYER_FC, t, 1, 1, sp->num_classes);
    copy_weights(&bd, &fc->w, p, sn.fc_w);
    copy_weights(&bd, &fc->b, p, sn.fc_b);
    if (!net->standalone)
        ofa_supernet_free(&ext);
    ofa_model_pack(m);
}

/* A convolution other than a 1x1 of stride 1 (the stem): one for
 * ofa_conv2d_forward_packed, im2col's matrix in the plan unless it goes
 * without (ofa_conv2d_direct). */
static int dense_conv(const struct ofa_layer *L)
{
    return L->kind == OFA_LAYER_CONV && !(L->K == 1 && L->stride == 1 && L->pad == 0);
}

static int needs_col(const struct ofa_layer *L)
{
    return dense_conv(L) && !ofa_conv2d_direct(L->Cin, L->K);
}

void ofa_model_pack(struct ofa_model *m)
{
    free(m->packed);
    m->packed = NULL;
    size_t n = 0;
    for (int i = 0; i < m->n_layers; i++) {
        struct ofa_layer *L = &m->layers[i];
        L->wp = -1;
        if (L->kind == OFA_LAYER_CONV || L->kind == OFA_LAYER_FC) {
            L->wp = (long)n;
            n += ofa_pw_packed_size(L->K * L->K * L->Cin, L->Cout);
        } else if (L->kind == OFA_LAYER_SE) {
            L->wp = (long)n;
            n += ofa_pw_packed_size(L->Cin, L->R) + ofa_pw_packed_size(L->R, L->Cin);
        }
    }
    m->packed = ofa_xzalloc64(ofa_mul_size(n, sizeof *m->packed), "packed model weights");
    for (int i = 0; i < m->n_layers; i++) {
        const struct ofa_layer *L = &m->layers[i];
        if (L->kind == OFA_LAYER_SE) {
            float *wp = m->packed + L->wp;
            ofa_pw_pack(wp, m->weights + L->w, L->Cin, L->Cin, L->R);
            ofa_pw_pack(wp + ofa_pw_packed_size(L->Cin, L->R), m->weights + L->w2, L->R, L->R,
                        L->Cin);
        } else if (L->wp >= 0) {
            const int kkc = L->K * L->K * L->Cin;
            ofa_pw_pack(m->packed + L->wp, m->weights + L->w, kkc, kkc, L->Cout);
        }
    }
}

/* ---- Forward ------------------------------------------------------------------ */

/* Scratch plan for batches of N: slot[t] for every tensor t >= 1 (tensor 0
 * is the caller's input), each slot `slot_floats` wide; then the im2col
 * buffer and the SE caches. */
struct plan {
    int *slot;
    int nslots;
    size_t slot_floats, col_floats, se_floats;
};

static size_t round16(size_t n)
{
    return (n + 15) & ~(size_t)15;
}

static size_t tensor_floats(const struct ofa_model *m, int t, int N)
{
    const struct ofa_tshape *s = &m->tensors[t];
    return ofa_mul_size(ofa_mul_size((size_t)N, (size_t)s->H * s->W), (size_t)s->C);
}

/* Give each layer's output the lowest slot whose tensor has been read for
 * the last time by an earlier layer. Layer i writes tensor i + 1. */
static void make_plan(const struct ofa_model *m, int N, struct plan *pl)
{
    OFA_ASSERT(m->n_layers >= 1 && m->n_tensors == m->n_layers + 1);
    const int nt = m->n_tensors;
    int *last = ofa_xmalloc((size_t)nt * sizeof *last, "model plan");
    int *owner = ofa_xmalloc((size_t)nt * sizeof *owner, "model plan"); /* slot -> tensor */
    pl->slot = ofa_xmalloc((size_t)nt * sizeof *pl->slot, "model plan");
    for (int t = 0; t < nt; t++)
        last[t] = t - 1, pl->slot[t] = -1;
    pl->nslots = 0;
    pl->slot_floats = pl->col_floats = pl->se_floats = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const struct ofa_layer *L = &m->layers[i];
        OFA_ASSERT(L->out == i + 1 && L->in >= 0 && L->in <= i && L->in2 <= i);
        last[L->in] = i;
        if (L->in2 >= 0)
            last[L->in2] = i;
    }
    for (int i = 0; i < m->n_layers; i++) {
        const struct ofa_layer *L = &m->layers[i];
        int s = -1;
        /* a residual add in place over its first input where that is read
         * for the last time here (the project convolution before it then
         * stores the sums: forward_batch) */
        if (L->kind == OFA_LAYER_ADD && L->in >= 1 && last[L->in] == i)
            s = pl->slot[L->in];
        for (int k = 0; k < pl->nslots && s < 0; k++)
            if (last[owner[k]] < i)
                s = k;
        if (s < 0)
            s = pl->nslots++;
        owner[s] = L->out;
        pl->slot[L->out] = s;
        size_t n = tensor_floats(m, L->out, N);
        if (n > pl->slot_floats)
            pl->slot_floats = n;
        if (needs_col(L)) {
            n = ofa_conv2d_col_size(N, L->H, L->W, L->Cin, L->K, L->stride, L->pad);
            if (n > pl->col_floats)
                pl->col_floats = n;
        }
        if (L->kind == OFA_LAYER_SE) {
            n = 2 * (size_t)N * L->Cin + (size_t)N * L->R + 48;
            if (n > pl->se_floats)
                pl->se_floats = n;
        }
    }
    pl->slot_floats = round16(pl->slot_floats);
    pl->col_floats = round16(pl->col_floats);
    free(last);
    free(owner);
}

/* Batches are cut into sub-batches of up to SUB_BATCH images, shared out among
 * the threads, each running every layer on its own: no barrier per layer, and
 * a thread's activations stay in its own cache. Measured on 2 cores
 * (bench_train_step, batch 128, reference subnets): 32 gave the most images/s
 * on one thread and on two, against 2 to 128 (one thread: 1.1-1.3x of 128; two
 * threads: 1.3-1.6x), on the kernels of 2026-12-03; on the Xeon (Emerald
 * Rapids) of 2026-12-07 16 gave more than 32 (largest subnet 1,624-1,673
 * against 1,382-1,570 images/s on one thread, 3,305 against 3,048-3,163 on
 * two; medium and smallest 1-2% more), 8 as much as 16 and 4 less. A batch of
 * at least as many images as threads gives every thread a sub-batch: for
 * batches of 2 to 32 of the largest reference subnet at two threads, 0.40-0.45
 * ms an image, where threads sharing every layer took 0.46-0.74 (1.3 for 2
 * images when the two cores' caches are far apart, see ofa_model_forward). The
 * logits do not depend on the cut
 * (test_model_logits_independent_of_batch_and_threads). */
#define SUB_BATCH 16

/* Cores whose cache line round trip (ofa_threads_round_trip_ns) exceeds
 * this are too far apart to share the layers of one image: the Zen 4 host
 * of the README's tables gave 50-80 ns in its near state, 330-350 in its
 * far one. */
#define FAR_ROUND_TRIP_NS 200.0

static size_t plan_floats(const struct plan *pl)
{
    return ofa_mul_size((size_t)pl->nslots, pl->slot_floats) + pl->col_floats + pl->se_floats;
}

/* A batch of N at T threads: *nsub sub-batches of at most *b <= SUB_BATCH
 * images, as even as can be (the last may have fewer), their number a
 * multiple of T where N allows. */
static void sub_batches(int N, int T, int *b, int *nsub)
{
    OFA_ASSERT(N >= 1 && T >= 1);
    int n = (N + SUB_BATCH - 1) / SUB_BATCH;
    n = (n + T - 1) / T * T;
    *b = (N + (n < N ? n : N) - 1) / (n < N ? n : N);
    *nsub = (N + *b - 1) / *b;
}

/* Scratch for the sub-batches that run at once: at most ceil(N / b) of b
 * images, whatever the thread count at the call (b <= SUB_BATCH). */
size_t ofa_model_scratch_size(const struct ofa_model *m, int N)
{
    OFA_ASSERT(N >= 1);
    size_t most = 0;
    for (int b = 1; b <= SUB_BATCH && b <= N; b++) {
        struct plan pl;
        make_plan(m, b, &pl);
        free(pl.slot);
        const size_t n = ofa_mul_size((size_t)(N + b - 1) / (size_t)b, plan_floats(&pl));
        if (n > most)
            most = n;
    }
    return most;
}

float *ofa_model_scratch_alloc(const struct ofa_model *m, int N)
{
    return ofa_xzalloc64(ofa_mul_size(ofa_model_scratch_size(m, N), sizeof(float)),
                         "inference scratch");
}

enum ofa_prof_kind ofa_model_layer_prof_kind(const struct ofa_model *m, int i)
{
    OFA_ASSERT(i >= 0 && i < m->n_layers);
    const struct ofa_layer *L = &m->layers[i];
    const int next = i + 1 < m->n_layers ? (int)m->layers[i + 1].kind : -1;
    switch (L->kind) {
    case OFA_LAYER_CONV:
        return dense_conv(L) ? OFA_PROF_STEM_CONV
               : next == OFA_LAYER_DW ? OFA_PROF_PW_EXPAND
               : next == OFA_LAYER_POOL ? OFA_PROF_PW_HEAD
                                        : OFA_PROF_PW_PROJECT;
    case OFA_LAYER_DW: return L->K <= 3 ? OFA_PROF_DW3 : L->K <= 5 ? OFA_PROF_DW5 : OFA_PROF_DW7;
    case OFA_LAYER_SE: return OFA_PROF_SE;
    case OFA_LAYER_ADD: return OFA_PROF_ADD;
    case OFA_LAYER_POOL: return OFA_PROF_AVGPOOL;
    case OFA_LAYER_FC: return OFA_PROF_FC;
    }
    OFA_ASSERT(0);
    return OFA_PROF_NKINDS;
}

/* Whether layer i is a 1x1 convolution whose output only a residual add
 * after it reads, in place (make_plan): the convolution adds the residual as
 * it stores its outputs, the same floats as the add (the largest subnet's
 * adds had taken 3% of its batch-128 inference, the smallest's 6%). */
static int fused_add(const struct ofa_model *m, const struct plan *pl, int i)
{
    const struct ofa_layer *L = &m->layers[i], *A = L + 1;
    return i + 1 < m->n_layers && L->kind == OFA_LAYER_CONV && !dense_conv(L) &&
           A->kind == OFA_LAYER_ADD && A->in == L->out && A->in2 != L->out &&
           pl->slot[A->out] == pl->slot[L->out];
}

/* The layers on N images (N at most the plan's), in scratch laid out by pl;
 * each timed (prof.h) when the calling thread's profile is on (a residual
 * add made in the convolution before it, with it). */
static void forward_batch(const struct ofa_model *m, const struct plan *pl, float *logits,
                          const float *x, int N, float *scratch)
{
    float *col = scratch + (size_t)pl->nslots * pl->slot_floats;
    float *se = col + pl->col_floats;
    const float *wt = m->weights;
    /* Tensor t's buffer: the input, or its slot. */
#define BUF(t) ((t) == 0 ? (float *)x : scratch + (size_t)pl->slot[(t)] * pl->slot_floats)
    for (int i = 0; i < m->n_layers; i++) {
        const struct ofa_layer *L = &m->layers[i];
        const float *in = BUF(L->in);
        float *out = BUF(L->out);
        const float *wp = L->wp >= 0 ? m->packed + L->wp : NULL;
        const long Mo = (long)N * L->Ho * L->Wo;
        const int began = ofa_prof_begin(), add = fused_add(m, pl, i);
        switch (L->kind) {
        case OFA_LAYER_CONV:
            if (dense_conv(L))
                ofa_conv2d_forward_packed(out, col, in, wp, wt + L->b, L->act, N, L->H, L->W,
                                          L->Cin, L->Cout, L->K, L->stride, L->pad);
            else
                ofa_pwconv_forward_packed_res(out, in, wp, wt + L->b, L->act,
                                              add ? BUF(m->layers[i + 1].in2) : NULL, Mo,
                                              L->Cin, L->Cout);
            break;
        case OFA_LAYER_DW:
            OFA_ASSERT(L->pad == L->K / 2);
            ofa_dwconv_forward_bias_act(out, in, wt + L->w, wt + L->b, L->act, N, L->H, L->W,
                                        L->Cin, L->K, L->stride);
            break;
        case OFA_LAYER_SE: {
            float *pooled = se, *gate = se + round16((size_t)N * L->Cin);
            float *hid = gate + round16((size_t)N * L->Cin);
            ofa_avgpool_forward(pooled, in, N, L->H * L->W, L->Cin);
            ofa_pwconv_forward_packed(hid, pooled, wp, wt + L->b, OFA_ACT_RELU, N, L->Cin, L->R);
            ofa_pwconv_forward_packed(gate, hid, wp + ofa_pw_packed_size(L->Cin, L->R),
                                      wt + L->b2, OFA_ACT_HSIGMOID, N, L->R, L->Cin);
            ofa_se_scale(out, in, gate, N, L->H * L->W, L->Cin);
            break;
        }
        case OFA_LAYER_ADD: {
            const float *in2 = BUF(L->in2);
            const long n = Mo * L->Cout;
#pragma omp parallel for schedule(static) if (n >= 65536)
            for (long k = 0; k < n; k++)
                out[k] = in[k] + in2[k];
            break;
        }
        case OFA_LAYER_POOL:
            ofa_avgpool_forward(out, in, N, L->H * L->W, L->Cin);
            break;
        case OFA_LAYER_FC:
            ofa_pwconv_forward_packed(out, in, wp, wt + L->b, L->act, N, L->Cin, L->Cout);
            break;
        }
        if (began)
            ofa_prof_end(began, ofa_model_layer_prof_kind(m, i), OFA_PROF_FWD);
        i += add;
    }
    const struct ofa_layer *last = &m->layers[m->n_layers - 1];
    OFA_ASSERT(last->Ho == 1 && last->Wo == 1 && last->Cout == m->num_classes);
    memcpy(logits, BUF(last->out), (size_t)N * m->num_classes * sizeof *logits);
#undef BUF
}

void ofa_model_forward(const struct ofa_model *m, float *logits, const float *x, int N,
                       float *scratch)
{
    OFA_ASSERT(N >= 1 && m->n_layers >= 1);
    const int T = ofa_threads_get();
    int b, nsub;
    sub_batches(N, T, &b, &nsub);
    const struct ofa_tshape *in = &m->tensors[0];
    const size_t in_floats = (size_t)in->H * in->W * in->C;
    struct plan pl;
    make_plan(m, b, &pl);
    const size_t per = plan_floats(&pl);
    /* A single sub-batch (one thread, or one image) uses the threads inside
     * every layer, called here rather than from a parallel region of one
     * thread: nested regions cost more (batch-1 latency, on a loaded machine,
     * was several times longer). Except when the cores' caches are far
     * apart: the layers' threads exchange every activation, and one image of
     * the largest reference subnet took 1.3-1.5 ms at two threads whose cache
     * line round trip was 330-350 ns against 0.83 on one thread (0.70 at two
     * when the round trip was 50-80 ns). */
    if (nsub == 1) {
#ifdef _OPENMP
        const int alone = T > 1 && ofa_threads_round_trip_ns() > FAR_ROUND_TRIP_NS;
        if (alone)
            omp_set_num_threads(1); /* this thread's count only; no BLAS here */
        forward_batch(m, &pl, logits, x, N, scratch);
        if (alone)
            omp_set_num_threads(T);
#else
        forward_batch(m, &pl, logits, x, N, scratch);
#endif
        free(pl.slot);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int k = 0; k < nsub; k++) {
        const int n0 = k * b, n = N - n0 < b ? N - n0 : b;
#ifdef _OPENMP
        const int t = omp_get_thread_num();
#else
        const int t = 0;
#endif
        OFA_ASSERT(t < nsub); /* static schedule: a thread with work has t < nsub */
        forward_batch(m, &pl, logits + (size_t)n0 * m->num_classes, x + (size_t)n0 * in_floats,
                      n, scratch + (size_t)t * per);
    }
    free(pl.slot);
}
