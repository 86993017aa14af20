/* device.c: a subnet's efficiency on a device profile: exact int8 flash and
 * peak SRAM, and the four latency predictors of device.h (per-block table
 * measured on this host, per-op regressors, op count, user LUT in TSV).
 * Profiling times this host's own fp32 or int8 runtime at batch 1 and keeps medians,
 * which resist the noise of a shared machine; nothing here is timed in tests. */
#include <config.h>

#include "device.h"
#include "qnet.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blas.h"
#include "model.h"
#include "ops.h"
#include "quant.h"
#include "rng.h"
#include "supernet.h"

#define NCH OFA_MAX_CHOICES
#define PROFILE_REPS 9   /* medians of this many timed runs when profiling */
#define OPWISE_CAP 48    /* profiled shapes per op type */
#define CALIB_RANDOM 12  /* random subnets per resolution timed whole to calibrate */
#define MAX_FEAT 4

/* ---- geometry ------------------------------------------------------------- */

struct geom {
    int H, Ho, cin, mid, cout, K, E, stride, se, r, residual;
    enum ofa_act act;
};

static int stem_out(const struct ofa_space *sp, int R)
{
    return ofa_conv_out_size(R, 3, sp->stem_stride, 1);
}

/* Input size of stage st's first block (st == n_stages: the head's input). */
static int stage_in_h(const struct ofa_space *sp, int R, int st)
{
    int H = stem_out(sp, R);
    for (int i = 0; i < st; i++)
        H = (H - 1) / sp->stages[i].stride + 1;
    return H;
}

static int last_width(const struct ofa_space *sp)
{
    return sp->n_stages ? sp->stages[sp->n_stages - 1].width : sp->first_width;
}

/* Block b (0-based) of stage st at resolution R with kernel K, expand E:
 * the same shapes the runtime plans (supernet.c). */
static void block_geom(const struct ofa_space *sp, int R, int st, int b, int K, int E,
                       struct geom *g)
{
    const struct ofa_stage_cfg *c = &sp->stages[st];
    memset(g, 0, sizeof *g);
    int H = stage_in_h(sp, R, st);
    if (b > 0)
        H = (H - 1) / c->stride + 1;
    g->stride = b == 0 ? c->stride : 1;
    g->H = H;
    g->Ho = (H - 1) / g->stride + 1;
    g->cin = b > 0 ? c->width : st > 0 ? sp->stages[st - 1].width : sp->first_width;
    g->cout = c->width;
    g->K = K;
    g->E = E;
    g->mid = g->cin * E;
    g->se = c->se;
    g->r = c->se ? ofa_make_divisible((double)g->mid / sp->se_reduction, 8) : 0;
    g->act = c->act;
    g->residual = g->stride == 1 && g->cin == g->cout;
}

static int index_in(const int *v, int n, int x)
{
    for (int i = 0; i < n; i++)
        if (v[i] == x)
            return i;
    return -1;
}

/* ---- weighted least squares ------------------------------------------------ */

#define MAX_P (OFA_MAX_CHOICES + 2)

struct wls {
    int p;
    double A[MAX_P][MAX_P], v[MAX_P]; /* normal equations */
};

static void wls_init(struct wls *l, int p)
{
    OFA_ASSERT(p >= 1 && p <= MAX_P);
    memset(l, 0, sizeof *l);
    l->p = p;
}

/* One observation y of features f (p of them) with weight w. */
static void wls_add(struct wls *l, const double *f, double y, double w)
{
    for (int a = 0; a < l->p; a++) {
        l->v[a] += w * f[a] * y;
        for (int b = 0; b < l->p; b++)
            l->A[a][b] += w * f[a] * f[b];
    }
}

/* Gaussian elimination with partial pivoting and a tiny ridge; -1 when
 * singular (a feature never seen). */
static int wls_solve(struct wls *l, double *x)
{
    const int p = l->p;
    double A[MAX_P][MAX_P], y[MAX_P];
    memcpy(A, l->A, sizeof A);
    memcpy(y, l->v, sizeof y);
    for (int a = 0; a < p; a++)
        A[a][a] *= 1.0 + 1e-9;
    for (int c = 0; c < p; c++) {
        int piv = c;
        for (int r = c + 1; r < p; r++)
            if (fabs(A[r][c]) > fabs(A[piv][c]))
                piv = r;
        if (!(fabs(A[piv][c]) > 1e-200))
            return -1;
        if (piv != c) {
            for (int k = 0; k < p; k++) {
                double t = A[c][k];
                A[c][k] = A[piv][k];
                A[piv][k] = t;
            }
            double t = y[c];
            y[c] = y[piv];
            y[piv] = t;
        }
        for (int r = c + 1; r < p; r++) {
            double f = A[r][c] / A[c][c];
            for (int k = c; k < p; k++)
                A[r][k] -= f * A[c][k];
            y[r] -= f * y[c];
        }
    }
    for (int c = p - 1; c >= 0; c--) {
        double t = y[c];
        for (int k = c + 1; k < p; k++)
            t -= A[c][k] * x[k];
        x[c] = t / A[c][c];
    }
    return 0;
}

/* ---- search space ----------------------------------------------------------- */

int ofa_device_space(const struct ofa_device *dev, const struct ofa_space *sp,
                     struct ofa_space *out, const char *file, struct ofa_error *err)
{
    struct ofa_space r = *sp;
    if (dev->n_res)
        r.n_res = 0;
    for (int i = 0; i < dev->n_res; i++) {
        int j = 0;
        while (j < sp->n_res && sp->resolutions[j] != dev->resolutions[i])
            j++;
        if (j == sp->n_res) {
            char have[128] = "";
            for (j = 0; j < sp->n_res; j++)
                snprintf(have + strlen(have), sizeof have - strlen(have), "%s%d",
                         j ? ", " : "", sp->resolutions[j]);
            return ofa_error_set(err, file, 0, "device %s: resolution %d is not one of the "
                                 "supernet's (%s)", dev->name, dev->resolutions[i], have);
        }
        r.resolutions[r.n_res++] = dev->resolutions[i];
    }
    if (out)
        *out = r;
    return 0;
}

/* ---- memory ----------------------------------------------------------------- */

/* Every conv is followed by BN, folded into int8 weights and an int32 bias
 * per output channel; SE and classifier biases are int32 too. */
/* Flash of one int8 layer with weights: the weights, then per output
 * channel an int32 bias, an int32 requantization multiplier and an int8
 * shift; a 256-entry int8 table when its activation is hswish. */
static long long qlayer_bytes(long long weights, long long cout, enum ofa_act act)
{
    return weights + 9 * cout + (act == OFA_ACT_HSWISH ? 256 : 0);
}

long long ofa_subnet_flash_bytes(const struct ofa_space *sp, const struct ofa_subnet *s)
{
    const long long C0 = sp->stem_width, F = sp->first_width, Hw = sp->head_width;
    long long f = qlayer_bytes(9LL * sp->in_channels * C0, C0, sp->stem_act); /* stem 3x3 */
    f += qlayer_bytes(9 * C0, C0, OFA_ACT_RELU);      /* first block: depthwise 3x3 */
    f += qlayer_bytes(C0 * F, F, OFA_ACT_NONE);       /* first block: pointwise */
    long long layers = 3 + (C0 == F);                 /* stem, dw, pw (+ add) */
    for (int st = 0; st < sp->n_stages; st++)
        for (int b = 0; b < s->depth[st]; b++) {
            struct geom g;
            block_geom(sp, s->res, st, b, s->kernel[st][b], s->expand[st][b], &g);
            const long long mid = g.mid, r = g.r;
            f += qlayer_bytes((long long)g.cin * mid, mid, g.act);     /* expand 1x1 */
            f += qlayer_bytes((long long)g.K * g.K * mid, mid, g.act); /* depthwise KxK */
            if (g.se) /* two 1x1 with biases, and the int16 hsigmoid table */
                f += qlayer_bytes(mid * r, r, OFA_ACT_NONE) +
                     qlayer_bytes(r * mid, mid, OFA_ACT_NONE) + 512;
            f += qlayer_bytes(mid * g.cout, g.cout, OFA_ACT_NONE);     /* project 1x1 */
            layers += 3 + g.se + g.residual;
        }
    f += qlayer_bytes(last_width(sp) * Hw, Hw, OFA_ACT_HSWISH);            /* head 1x1 */
    f += qlayer_bytes(Hw * sp->num_classes, sp->num_classes, OFA_ACT_NONE); /* classifier */
    layers += 3; /* head conv, pool, classifier */
    /* the layer table, the network, the input table, the class-name
     * pointers and terminators (not the names), the kernels' code */
    f += layers * (long long)sizeof(struct ofa_qlayer) + (long long)sizeof(struct ofa_qnet);
    f += 256LL * sp->in_channels + (long long)sp->num_classes * (long long)(sizeof(char *) + 1);
    return f + OFA_QNET_CODE_BYTES;
}

static long long max_ll(long long a, long long b)
{
    return a > b ? a : b;
}

/* Layer by layer, the int8 bytes alive while it runs: its input and output,
 * plus a residual source that a later add still needs. Adds run in place on
 * the project conv's output; SE scales in place. */
long long ofa_subnet_sram_bytes(const struct ofa_space *sp, const struct ofa_subnet *s)
{
    const long long R = s->res, H = stem_out(sp, s->res), C0 = sp->stem_width,
                    F = sp->first_width;
    long long pk = R * R * sp->in_channels + H * H * C0;           /* stem conv */
    pk = max_ll(pk, 2 * H * H * C0);                                /* first dw */
    pk = max_ll(pk, H * H * C0 + H * H * F + (C0 == F ? H * H * C0 : 0)); /* first pw */
    for (int st = 0; st < sp->n_stages; st++)
        for (int b = 0; b < s->depth[st]; b++) {
            struct geom g;
            block_geom(sp, s->res, st, b, s->kernel[st][b], s->expand[st][b], &g);
            const long long Hi = g.H, Ho = g.Ho;
            const long long x = Hi * Hi * g.cin, e = Hi * Hi * g.mid, d = Ho * Ho * g.mid,
                            y = Ho * Ho * g.cout, rs = g.residual ? x : 0;
            pk = max_ll(pk, x + e);                /* expand: x is also the residual source */
            pk = max_ll(pk, e + d + rs);           /* depthwise */
            if (g.se)
                pk = max_ll(pk, d + g.mid + g.r + rs); /* SE: d, pooled/gate, hidden */
            pk = max_ll(pk, d + y + rs);           /* project (+ add in place) */
        }
    const long long Hh = stage_in_h(sp, s->res, sp->n_stages), Hw = sp->head_width;
    pk = max_ll(pk, Hh * Hh * last_width(sp) + Hh * Hh * Hw); /* head conv */
    pk = max_ll(pk, Hh * Hh * Hw + Hw);                       /* pooling */
    pk = max_ll(pk, Hw + sp->num_classes);                    /* classifier */
    return pk;
}

/* ---- ops of a subnet (opwise) ---------------------------------------------- */

enum {
    T_PW = 0,           /* + act (none, relu, hswish): 1x1 conv, BN, act */
    T_DW = 3,           /* + ((K-3)/2 * 2 + stride-1) * 3 + act: depthwise, BN, act */
    T_SE = T_DW + 18,   /* squeeze-excite */
    T_ADD,              /* residual add */
    T_CONV,             /* stem: dense 3x3 conv, BN, act */
    T_POOL,             /* global average pool */
    T_LINEAR,           /* classifier */
    N_TYPES
};

static const char *const type_names[N_TYPES] = {
    "pw", "pw-relu", "pw-hswish",
    "dw3", "dw3-relu", "dw3-hswish", "dw3/2", "dw3/2-relu", "dw3/2-hswish",
    "dw5", "dw5-relu", "dw5-hswish", "dw5/2", "dw5/2-relu", "dw5/2-hswish",
    "dw7", "dw7-relu", "dw7-hswish", "dw7/2", "dw7/2-relu", "dw7/2-hswish",
    "se", "add", "conv", "pool", "linear"};

struct op {
    int type;
    int H, Ho, cin, cout, K, stride, r; /* cout is C for dw/se/pool; n elements for add */
    int act;
};

static int act_index(enum ofa_act a)
{
    OFA_ASSERT(a == OFA_ACT_NONE || a == OFA_ACT_RELU || a == OFA_ACT_HSWISH);
    return a == OFA_ACT_NONE ? 0 : a == OFA_ACT_RELU ? 1 : 2;
}

static struct op mk_op(int type, int H, int Ho, int cin, int cout, int K, int stride, int r,
                       enum ofa_act act)
{
    struct op o;
    memset(&o, 0, sizeof o);
    o.type = type, o.H = H, o.Ho = Ho, o.cin = cin, o.cout = cout, o.K = K;
    o.stride = stride, o.r = r, o.act = (int)act;
    return o;
}

static struct op pw_op(int H, int cin, int cout, enum ofa_act act)
{
    return mk_op(T_PW + act_index(act), H, H, cin, cout, 1, 1, 0, act);
}

static struct op dw_op(int H, int C, int K, int stride, enum ofa_act act)
{
    OFA_ASSERT((K == 3 || K == 5 || K == 7) && (stride == 1 || stride == 2));
    int t = T_DW + (((K - 3) / 2) * 2 + stride - 1) * 3 + act_index(act);
    return mk_op(t, H, (H - 1) / stride + 1, C, C, K, stride, 0, act);
}

/* The ops of one block, in order; returns how many (at most 5). */
static int block_ops(const struct geom *g, struct op *o)
{
    int n = 0;
    o[n++] = pw_op(g->H, g->cin, g->mid, g->act);
    o[n++] = dw_op(g->H, g->mid, g->K, g->stride, g->act);
    if (g->se)
        o[n++] = mk_op(T_SE, g->Ho, g->Ho, g->mid, g->mid, 1, 1, g->r, OFA_ACT_NONE);
    o[n++] = pw_op(g->Ho, g->mid, g->cout, OFA_ACT_NONE);
    if (g->residual)
        o[n++] = mk_op(T_ADD, g->Ho, g->Ho, g->cout, g->cout, 1, 1, 0, OFA_ACT_NONE);
    return n;
}

/* Stem conv and first block at resolution R; returns how many (at most 4). */
static int stem_ops(const struct ofa_space *sp, int R, struct op *o)
{
    int n = 0, H = stem_out(sp, R);
    o[n++] = mk_op(T_CONV, R, H, sp->in_channels, sp->stem_width, 3, sp->stem_stride, 0,
                   sp->stem_act);
    o[n++] = dw_op(H, sp->stem_width, 3, 1, OFA_ACT_RELU);
    o[n++] = pw_op(H, sp->stem_width, sp->first_width, OFA_ACT_NONE);
    if (sp->stem_width == sp->first_width)
        o[n++] = mk_op(T_ADD, H, H, sp->first_width, sp->first_width, 1, 1, 0, OFA_ACT_NONE);
    return n;
}

/* Head conv, pooling, classifier at resolution R; returns 3. */
static int head_ops(const struct ofa_space *sp, int R, struct op *o)
{
    int Hh = stage_in_h(sp, R, sp->n_stages);
    o[0] = pw_op(Hh, last_width(sp), sp->head_width, OFA_ACT_HSWISH);
    o[1] = mk_op(T_POOL, Hh, 1, sp->head_width, sp->head_width, 1, 1, 0, OFA_ACT_NONE);
    o[2] = mk_op(T_LINEAR, 1, 1, sp->head_width, sp->num_classes, 1, 1, 0, OFA_ACT_NONE);
    return 3;
}

/* Regression features of an op (in millions, so that the normal equations
 * are well scaled): a constant, then the work, then input and output sizes. */
static int op_features(const struct op *o, double *f)
{
    const double M = 1e-6, Hi2 = (double)o->H * o->H, Ho2 = (double)o->Ho * o->Ho;
    f[0] = 1.0;
    if (o->type < T_DW) {
        f[1] = Hi2 * o->cin * o->cout * M;
        f[2] = Hi2 * o->cin * M;
        f[3] = Hi2 * o->cout * M;
        return 4;
    }
    if (o->type < T_SE) {
        f[1] = Ho2 * o->K * o->K * o->cout * M;
        f[2] = Hi2 * o->cout * M;
        f[3] = Ho2 * o->cout * M;
        return 4;
    }
    switch (o->type) {
    case T_SE:
        f[1] = Ho2 * o->cout * M;
        f[2] = (double)o->cout * o->r * M;
        return 3;
    case T_ADD:
        f[1] = Ho2 * o->cout * M;
        return 2;
    case T_CONV:
        f[1] = Ho2 * o->K * o->K * o->cin * o->cout * M;
        f[2] = Ho2 * o->K * o->K * o->cin * M;
        f[3] = Ho2 * o->cout * M;
        return 4;
    case T_POOL:
        f[1] = Hi2 * o->cout * M;
        return 2;
    case T_LINEAR:
        f[1] = (double)o->cin * o->cout * M;
        return 2;
    }
    OFA_ASSERT(!"unknown op type");
    return 0;
}

/* ---- timing ------------------------------------------------------------------- */

/* Host latency is defined on one thread (docs/devices.md): at batch 1 these
 * networks are too small for a second thread to pay for its
 * synchronisation, and on a busy machine a descheduled OpenMP thread stalls
 * every op (2 threads next to a training run: 30x slower, 10x noisier).
 * Returns the thread count to restore. */
static int single_thread_begin(void)
{
    int prev = ofa_threads_get();
    if (prev != 1)
        ofa_threads_set(1);
    return prev;
}

static void single_thread_end(int prev)
{
    if (prev != 1)
        ofa_threads_set(prev);
}

static float *rnd(struct ofa_rng *r, size_t n)
{
    float *x = ofa_xmalloc((n ? n : 1) * sizeof *x, "profiling tensor");
    ofa_rng_fill_normal(r, x, (long)n, 1.0f);
    return x;
}

static void bn_params(struct ofa_rng *r, int C, float **p)
{
    for (int i = 0; i < 4; i++)
        p[i] = rnd(r, (size_t)C);
    for (int c = 0; c < C; c++)
        p[3][c] = 1.0f + fabsf(p[3][c]); /* a variance */
}

/* Run op o once on the buffers in b (made by op_buffers). */
struct opbuf {
    float *x, *w, *y1, *y2, *y3, *col, *bn[4], *b1, *w2, *b2, *pooled, *hid, *gate;
};

static void op_buffers(const struct op *o, struct opbuf *b)
{
    struct ofa_rng r;
    ofa_rng_seed(&r, 7);
    memset(b, 0, sizeof *b);
    const size_t Hi2 = (size_t)o->H * o->H, Ho2 = (size_t)o->Ho * o->Ho;
    const size_t nin = Hi2 * (size_t)o->cin, nout = Ho2 * (size_t)o->cout;
    b->x = rnd(&r, o->type == T_LINEAR ? (size_t)o->cin : nin);
    b->y1 = rnd(&r, nout), b->y2 = rnd(&r, nout), b->y3 = rnd(&r, nout);
    bn_params(&r, o->cout, b->bn);
    if (o->type < T_DW) {
        b->w = rnd(&r, (size_t)o->cin * o->cout);
    } else if (o->type < T_SE) {
        b->w = rnd(&r, (size_t)o->K * o->K * o->cout);
    } else if (o->type == T_SE) {
        b->w = rnd(&r, (size_t)o->r * o->cout), b->b1 = rnd(&r, (size_t)o->r);
        b->w2 = rnd(&r, (size_t)o->cout * o->r), b->b2 = rnd(&r, (size_t)o->cout);
        b->pooled = rnd(&r, (size_t)o->cout), b->gate = rnd(&r, (size_t)o->cout);
        b->hid = rnd(&r, (size_t)o->r);
    } else if (o->type == T_CONV) {
        b->w = rnd(&r, (size_t)o->cout * o->K * o->K * o->cin);
        b->col = rnd(&r, ofa_conv2d_col_size(1, o->H, o->H, o->cin, o->K, o->stride, 1));
    } else if (o->type == T_LINEAR) {
        b->w = rnd(&r, (size_t)o->cin * o->cout), b->b1 = rnd(&r, (size_t)o->cout);
    }
}

static void op_buffers_free(struct opbuf *b)
{
    float *all[] = {b->x, b->w, b->y1, b->y2, b->y3, b->col, b->bn[0], b->bn[1], b->bn[2],
                    b->bn[3], b->b1, b->w2, b->b2, b->pooled, b->hid, b->gate};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
    memset(b, 0, sizeof *b);
}

/* The same calls, on separate buffers, as the runtime's forward in eval mode. */
static void op_run(const struct op *o, struct opbuf *b, float eps)
{
    const long Mi = (long)o->H * o->H, Mo = (long)o->Ho * o->Ho;
    if (o->type < T_SE) {
        if (o->type < T_DW)
            ofa_pwconv_forward(b->y1, b->x, b->w, o->cin, Mi, o->cin, o->cout);
        else
            ofa_dwconv_forward(b->y1, b->x, b->w, 1, o->H, o->H, o->cout, o->K, o->stride);
        ofa_bn_forward_eval(b->y2, b->y1, b->bn[0], b->bn[1], b->bn[2], b->bn[3], Mo, o->cout,
                            eps);
        if (o->act != OFA_ACT_NONE)
            ofa_act_forward(b->y3, b->y2, Mo * o->cout, (enum ofa_act)o->act);
        return;
    }
    switch (o->type) {
    case T_SE:
        ofa_se_forward(b->y1, b->pooled, b->hid, b->gate, b->x, b->w, o->cout, b->b1, b->w2, o->r,
                       b->b2, 1, (int)Mo, o->cout, o->r);
        return;
    case T_ADD: {
        const long n = Mo * o->cout;
        float *y = b->y1;
        const float *x = b->x;
        for (long i = 0; i < n; i++)
            y[i] += x[i];
        return;
    }
    case T_CONV:
        ofa_conv2d_forward(b->y1, b->col, b->x, b->w, 1, o->H, o->H, o->cin, o->cout, o->K,
                           o->stride, 1);
        ofa_bn_forward_eval(b->y2, b->y1, b->bn[0], b->bn[1], b->bn[2], b->bn[3], Mo, o->cout,
                            eps);
        ofa_act_forward(b->y3, b->y2, Mo * o->cout, (enum ofa_act)o->act);
        return;
    case T_POOL:
        ofa_avgpool_forward(b->y1, b->x, 1, (int)Mi, o->cout);
        return;
    case T_LINEAR:
        ofa_linear_forward(b->y1, b->x, b->w, o->cin, b->b1, 1, o->cin, o->cout);
        return;
    }
    OFA_ASSERT(!"unknown op type");
}

/* Median milliseconds of reps runs of op o (after one warm-up run). */
static double op_time(const struct op *o, int reps, float eps)
{
    struct opbuf b;
    op_buffers(o, &b);
    double *t = ofa_xmalloc((size_t)reps * sizeof *t, "timings");
    op_run(o, &b, eps);
    for (int i = 0; i < reps; i++) {
        double t0 = ofa_thread_cpu_now();
        op_run(o, &b, eps);
        t[i] = 1e3 * (ofa_thread_cpu_now() - t0);
    }
    double m = ofa_median(t, reps);
    free(t);
    op_buffers_free(&b);
    return m;
}

/* ---- the predictor ------------------------------------------------------------ */

struct ofa_latency {
    enum ofa_latency_model model;
    enum ofa_arith arith; /* measured: the runtime profiled */
    struct ofa_space sp;
    double a, b; /* opcount */
    /* measured and lut: [resolution index], block [res][stage][block][kernel][expand] */
    double stem[NCH], head[NCH];
    double blk[NCH][OFA_MAX_STAGES][OFA_MAX_DEPTH][NCH][NCH];
    /* opwise: per op type, coefficients of op_features() */
    double coef[N_TYPES][MAX_FEAT];
    int nfit[N_TYPES]; /* samples each was fitted on */
    /* whole-pass calibration: parts timed alone are scaled by alpha; opwise
     * adds net0 ms per pass (counted in the stem) */
    double alpha, net0;
    int nnet; /* whole passes it was fitted on */
};

/* The op's own regressor, without the whole-pass term. */
static double op_alone(const struct ofa_latency *lat, const struct op *o)
{
    double f[MAX_FEAT];
    int n = op_features(o, f);
    double y = 0;
    for (int i = 0; i < n; i++)
        y += lat->coef[o->type][i] * f[i];
    return y > 0 ? y : 0;
}

static double op_predict(const struct ofa_latency *lat, const struct op *o)
{
    return lat->alpha * op_alone(lat, o);
}

static double ops_predict(const struct ofa_latency *lat, const struct op *o, int n)
{
    double y = 0;
    for (int i = 0; i < n; i++)
        y += op_predict(lat, &o[i]);
    return y;
}

/* Table of one block slot: stage st, 0-based block b, choice indices. */
static double block_table_ms(const struct ofa_latency *lat, int ri, int st, int b, int ki,
                             int ei)
{
    const struct ofa_space *sp = &lat->sp;
    if (lat->model == OFA_LAT_OPWISE) {
        struct geom g;
        struct op o[5];
        block_geom(sp, sp->resolutions[ri], st, b, sp->kernels[ki], sp->expands[ei], &g);
        return ops_predict(lat, o, block_ops(&g, o));
    }
    return lat->blk[ri][st][b][ki][ei];
}

static double stem_table_ms(const struct ofa_latency *lat, int ri)
{
    if (lat->model == OFA_LAT_OPWISE) {
        struct op o[4];
        return lat->net0 + ops_predict(lat, o, stem_ops(&lat->sp, lat->sp.resolutions[ri], o));
    }
    return lat->stem[ri];
}

static double head_table_ms(const struct ofa_latency *lat, int ri)
{
    if (lat->model == OFA_LAT_OPWISE) {
        struct op o[3];
        return ops_predict(lat, o, head_ops(&lat->sp, lat->sp.resolutions[ri], o));
    }
    return lat->head[ri];
}

double ofa_latency_predict(const struct ofa_latency *lat, const struct ofa_subnet *s)
{
    const struct ofa_space *sp = &lat->sp;
    OFA_ASSERT(ofa_subnet_valid(sp, s));
    if (lat->model == OFA_LAT_OPCOUNT)
        return lat->a * (double)ofa_subnet_macs(sp, s) / 1e6 + lat->b;
    int ri = index_in(sp->resolutions, sp->n_res, s->res);
    double y = stem_table_ms(lat, ri) + head_table_ms(lat, ri);
    for (int st = 0; st < sp->n_stages; st++)
        for (int b = 0; b < s->depth[st]; b++)
            y += block_table_ms(lat, ri, st, b,
                                index_in(sp->kernels, sp->n_kernels, s->kernel[st][b]),
                                index_in(sp->expands, sp->n_expands, s->expand[st][b]));
    return y;
}

void ofa_latency_free(struct ofa_latency *lat)
{
    free(lat);
}

/* ---- the int8 runtime ------------------------------------------------------- */

/* Subnet s of net (extracted, or net itself when standalone) as the int8
 * runtime runs it, quantized with ranges from two random inputs (latency
 * does not depend on the values). m receives the model (the caller frees
 * it), *x a random input image (the caller frees it). */
static struct ofa_qrun *int8_runtime(const struct ofa_supernet *net, const struct ofa_subnet *s,
                                     struct ofa_model *m, float **x)
{
    ofa_model_materialise(m, net, s);
    struct ofa_rng r;
    ofa_rng_seed(&r, 3);
    float *calib = rnd(&r, 2 * (size_t)s->res * s->res * net->sp.in_channels);
    const struct ofa_quant_opts qo = {OFA_CALIB_MINMAX, 0};
    ofa_quant_calibrate(m, calib, 2, &qo);
    *x = calib;
    return ofa_qrun_create(m);
}

/* Median thread CPU time (ms) of reps passes of q over the image x, after
 * two warm-up passes. */
static double int8_pass_ms(struct ofa_qrun *q, const float *x, int n_classes, int reps)
{
    int8_t *logits = ofa_xmalloc((size_t)n_classes, "logits");
    double *t = ofa_xmalloc((size_t)reps * sizeof *t, "timings");
    for (int i = 0; i < 2; i++)
        ofa_qrun_forward_q(q, logits, x);
    for (int i = 0; i < reps; i++) {
        double t0 = ofa_thread_cpu_now();
        ofa_qrun_forward_q(q, logits, x);
        t[i] = 1e3 * (ofa_thread_cpu_now() - t0);
    }
    double ms = ofa_median(t, reps);
    free(logits);
    free(t);
    return ms;
}

/* Subnet s in the int8 runtime (int8_runtime, materialised into m): every
 * layer timed alone (ofa_qrun_time_layers) into *layer_ms [m->n_layers];
 * returns the whole pass (int8_pass_ms) on the same runtime. The caller
 * frees *layer_ms, and m with ofa_model_free. */
static double int8_layer_ms(const struct ofa_supernet *net, const struct ofa_subnet *s, int reps,
                            struct ofa_model *m, double **layer_ms)
{
    float *x;
    struct ofa_qrun *q = int8_runtime(net, s, m, &x);
    *layer_ms = ofa_xmalloc((size_t)m->n_layers * sizeof **layer_ms, "layer timings");
    ofa_qrun_time_layers(q, x, reps, *layer_ms);
    const double whole = int8_pass_ms(q, x, m->num_classes, reps);
    free(x);
    ofa_qrun_free(q);
    return whole;
}

/* Per-part times (ms) of subnet s in the int8 runtime (int8_layer_ms) summed
 * by ofa_layer.part: stem, blocks in execution order (stage by stage), head;
 * and the whole pass. */
static double int8_parts(const struct ofa_supernet *net, const struct ofa_subnet *s, int reps,
                         double *stem_ms, double block_ms[OFA_MAX_STAGES][OFA_MAX_DEPTH],
                         double *head_ms)
{
    const struct ofa_space *sp = &net->sp;
    struct ofa_model m;
    double *ms;
    const double whole = int8_layer_ms(net, s, reps, &m, &ms);
    double part[1 + OFA_MAX_STAGES * OFA_MAX_DEPTH + 1] = {0};
    int nb = 0;
    for (int st = 0; st < sp->n_stages; st++)
        nb += s->depth[st];
    for (int i = 0; i < m.n_layers; i++) {
        OFA_ASSERT(m.layers[i].part >= 0 && m.layers[i].part <= nb + 1);
        part[m.layers[i].part] += ms[i];
    }
    *stem_ms = part[0];
    *head_ms = part[nb + 1];
    for (int st = 0, k = 1; st < sp->n_stages; st++)
        for (int b = 0; b < s->depth[st]; b++)
            block_ms[st][b] = part[k++];
    free(ms);
    ofa_model_free(&m);
    return whole;
}

/* ---- measured: per-block table from whole subnets ------------------------- */

/* Every stage at depth D, every block at (K, E), resolution R. */
static void uniform_subnet(const struct ofa_space *sp, int R, int D, int K, int E,
                           struct ofa_subnet *s)
{
    memset(s, 0, sizeof *s);
    s->res = R;
    for (int st = 0; st < sp->n_stages; st++) {
        s->depth[st] = D;
        for (int b = 0; b < D; b++)
            s->kernel[st][b] = K, s->expand[st][b] = E;
    }
    ofa_subnet_normalize(sp, s);
}

static double table_blocks_ms(const struct ofa_latency *lat, const struct ofa_subnet *s)
{
    const struct ofa_space *sp = &lat->sp;
    int ri = index_in(sp->resolutions, sp->n_res, s->res);
    double y = 0;
    for (int st = 0; st < sp->n_stages; st++)
        for (int b = 0; b < s->depth[st]; b++)
            y += lat->blk[ri][st][b][index_in(sp->kernels, sp->n_kernels, s->kernel[st][b])]
                         [index_in(sp->expands, sp->n_expands, s->expand[st][b])];
    return y;
}

/* For every resolution and every (kernel, expand) pair, one subnet with every
 * stage at full depth and every block at (K, E) covers each table entry:
 * the first block of a stage (its own shape) and the rest (one shape, timed
 * depth - 1 times, the median kept). fp32: ofa_supernet_time_parts times
 * each block and the head alone, on warm caches; the stem (stem conv and
 * first block) is timed op by op (time_parts derives it from a whole pass,
 * which a busy host preempts too often). int8: every layer of the int8
 * runtime is timed alone and summed per part (int8_parts). A whole pass costs more than its parts
 * timed alone (every block's weights and activations come from further out
 * in the cache hierarchy), so the table is scaled by one factor alpha fitted
 * on whole passes (ofa_latency_measure) of the same subnets and of
 * CALIB_RANDOM random subnets per resolution (seeded), least squares on
 * relative error. */
static void profile_measured(struct ofa_latency *lat, struct ofa_supernet *net, int reps)
{
    const struct ofa_space *sp = &lat->sp;
    const int D = ofa_space_max_depth(sp);
    const int nke = sp->n_kernels * sp->n_expands, cap = sp->n_res * (nke + CALIB_RANDOM);
    struct ofa_rng rng;
    ofa_rng_seed(&rng, 4242);
    double *heads = ofa_xmalloc((size_t)cap * sizeof *heads, "timings");
    double *stems = ofa_xmalloc((size_t)cap * sizeof *stems, "timings");
    double *total = ofa_xmalloc((size_t)cap * sizeof *total, "timings");
    struct ofa_subnet *run = ofa_xmalloc((size_t)cap * sizeof *run, "profiled subnets");
    double rest[OFA_MAX_DEPTH];
    int n = 0;
    for (int ri = 0; ri < sp->n_res; ri++) {
        for (int ki = 0; ki < sp->n_kernels; ki++)
            for (int ei = 0; ei < sp->n_expands; ei++) {
                struct ofa_subnet *s = &run[n];
                uniform_subnet(sp, sp->resolutions[ri], D, sp->kernels[ki], sp->expands[ei], s);
                double bm[OFA_MAX_STAGES][OFA_MAX_DEPTH], st_ms;
                double *head = &heads[ki * sp->n_expands + ei];
                if (lat->arith == OFA_ARITH_INT8) {
                    total[n++] = int8_parts(net, s, reps, &st_ms, bm, head);
                    stems[ki * sp->n_expands + ei] = st_ms;
                } else {
                    struct ofa_supernet sa;
                    struct ofa_exec ex;
                    ofa_supernet_extract(&sa, net, s);
                    ofa_exec_init(&ex, &sa, 1);
                    ofa_supernet_time_parts(&sa, &ex, s, reps, &st_ms, bm, head);
                    ofa_exec_free(&ex);
                    total[n++] = ofa_latency_measure(&sa, s, OFA_ARITH_FP32, reps);
                    ofa_supernet_free(&sa);
                }
                for (int st = 0; st < sp->n_stages; st++) {
                    lat->blk[ri][st][0][ki][ei] = bm[st][0];
                    for (int b = 1; b < D; b++)
                        rest[b - 1] = bm[st][b];
                    double m = D > 1 ? ofa_median(rest, D - 1) : 0;
                    for (int b = 1; b < D; b++)
                        lat->blk[ri][st][b][ki][ei] = m;
                }
            }
        lat->head[ri] = ofa_median(heads, nke);
        if (lat->arith == OFA_ARITH_INT8) {
            lat->stem[ri] = ofa_median(stems, nke);
        } else {
            struct op o[4];
            int k = stem_ops(sp, sp->resolutions[ri], o);
            lat->stem[ri] = 0;
            for (int i = 0; i < k; i++)
                lat->stem[ri] += op_time(&o[i], reps, sp->bn_eps);
        }
        for (int j = 0; j < CALIB_RANDOM; j++) {
            ofa_subnet_sample(sp, &rng, &run[n]);
            run[n].res = sp->resolutions[ri];
            total[n] = ofa_latency_measure(net, &run[n], lat->arith, reps);
            n++;
        }
    }
    /* alpha minimises sum ((alpha * parts - total) / total)^2 */
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        int ri = index_in(sp->resolutions, sp->n_res, run[i].res);
        double q = (lat->stem[ri] + table_blocks_ms(lat, &run[i]) + lat->head[ri]) / total[i];
        num += q, den += q * q;
    }
    lat->alpha = den > 0 && num / den > 0.25 && num / den < 4 ? num / den : 1.0;
    for (int ri = 0; ri < sp->n_res; ri++) {
        lat->stem[ri] *= lat->alpha;
        lat->head[ri] *= lat->alpha;
        for (int st = 0; st < sp->n_stages; st++)
            for (int b = 0; b < D; b++)
                for (int ki = 0; ki < sp->n_kernels; ki++)
                    for (int ei = 0; ei < sp->n_expands; ei++)
                        lat->blk[ri][st][b][ki][ei] *= lat->alpha;
    }
    lat->nnet = n;
    free(run);
    free(total);
    free(stems);
    free(heads);
}

/* ---- opwise: per-op-type regressors ------------------------------------------- */

/* Least squares on relative error (weights 1/y^2): sum ((f.w - y) / y)^2;
 * fewer samples than features use the first n features. */
static void fit_type(const double (*F)[MAX_FEAT], const double *y, int n, int nf, double *w)
{
    memset(w, 0, MAX_FEAT * sizeof *w);
    if (n == 0)
        return;
    struct wls l;
    wls_init(&l, nf < n ? nf : n);
    for (int i = 0; i < n; i++)
        wls_add(&l, F[i], y[i], 1.0 / (y[i] * y[i] + 1e-12));
    if (wls_solve(&l, w))
        memset(w, 0, MAX_FEAT * sizeof *w);
}

static void add_op(struct op **all, int *n, int *cap, const struct op *o)
{
    for (int i = 0; i < *n; i++)
        if (memcmp(&(*all)[i], o, sizeof *o) == 0)
            return;
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 256;
        struct op *p = realloc(*all, (size_t)*cap * sizeof *p);
        if (!p)
            ofa_fatal("out of memory listing op shapes");
        *all = p;
    }
    (*all)[(*n)++] = *o;
}

/* Every op of subnet s, in order; returns how many. */
static int subnet_ops(const struct ofa_space *sp, const struct ofa_subnet *s, struct op *o)
{
    int n = stem_ops(sp, s->res, o);
    for (int st = 0; st < sp->n_stages; st++)
        for (int b = 0; b < s->depth[st]; b++) {
            struct geom g;
            block_geom(sp, s->res, st, b, s->kernel[st][b], s->expand[st][b], &g);
            n += block_ops(&g, o + n);
        }
    return n + head_ops(sp, s->res, o + n);
}

#define MAX_OPS (8 + 5 * OFA_MAX_STAGES * OFA_MAX_DEPTH)

/* The whole-pass calibration, as for measured: for the smallest and largest
 * subnet at every resolution and 4 random ones, the measured pass against
 * the sum of its ops' regressors: t = net0 + alpha * sum(ops), least
 * squares on relative error (net0 = 0 when the fit makes it negative). */
static void fit_pass_overhead(struct ofa_latency *lat, struct ofa_supernet *net, int reps)
{
    const struct ofa_space *sp = &lat->sp;
    struct op *o = ofa_xmalloc(MAX_OPS * sizeof *o, "op list");
    struct ofa_rng rng;
    ofa_rng_seed(&rng, 777);
    struct wls l;
    wls_init(&l, 2);
    double num = 0, den = 0; /* the same without the intercept */
    for (int ri = 0; ri < sp->n_res; ri++)
        for (int j = 0; j < 6; j++) {
            struct ofa_subnet s;
            if (j == 0)
                ofa_subnet_smallest(sp, &s);
            else if (j == 1)
                ofa_subnet_largest(sp, &s);
            else
                ofa_subnet_sample(sp, &rng, &s);
            s.res = sp->resolutions[ri];
            int k = subnet_ops(sp, &s, o);
            double f[2] = {1.0, 0.0};
            for (int i = 0; i < k; i++)
                f[1] += op_alone(lat, &o[i]);
            double t = ofa_latency_measure(net, &s, OFA_ARITH_FP32, reps);
            wls_add(&l, f, t, 1.0 / (t * t + 1e-12));
            num += f[1] / t, den += f[1] * f[1] / (t * t);
            lat->nnet++;
        }
    double x[2];
    lat->net0 = 0, lat->alpha = 1.0;
    if (wls_solve(&l, x) == 0 && x[0] >= 0 && x[1] > 0.25 && x[1] < 4)
        lat->net0 = x[0], lat->alpha = x[1];
    else if (den > 0 && num / den > 0.25 && num / den < 4) /* a pass costs at least its ops */
        lat->alpha = num / den;
    free(o);
}

/* Every distinct op shape of the space (all resolutions, every stage's first
 * block and later blocks, every kernel and expand), then per type up to
 * OPWISE_CAP of them drawn at random (seeded) are timed and fitted; then the
 * whole-pass term from a few end-to-end timings. */
static void profile_opwise(struct ofa_latency *lat, struct ofa_supernet *net, int reps)
{
    const struct ofa_space *sp = &lat->sp;
    struct op *all = NULL, o[5];
    int n = 0, cap = 0;
    for (int ri = 0; ri < sp->n_res; ri++) {
        const int R = sp->resolutions[ri];
        int k = stem_ops(sp, R, o);
        for (int i = 0; i < k; i++)
            add_op(&all, &n, &cap, &o[i]);
        k = head_ops(sp, R, o);
        for (int i = 0; i < k; i++)
            add_op(&all, &n, &cap, &o[i]);
        for (int st = 0; st < sp->n_stages; st++)
            for (int b = 0; b < (ofa_space_max_depth(sp) > 1 ? 2 : 1); b++)
                for (int ki = 0; ki < sp->n_kernels; ki++)
                    for (int ei = 0; ei < sp->n_expands; ei++) {
                        struct geom g;
                        block_geom(sp, R, st, b, sp->kernels[ki], sp->expands[ei], &g);
                        k = block_ops(&g, o);
                        for (int i = 0; i < k; i++)
                            add_op(&all, &n, &cap, &o[i]);
                    }
    }
    struct ofa_rng rng;
    ofa_rng_seed(&rng, 12345);
    double (*F)[MAX_FEAT] = ofa_xmalloc((size_t)(n ? n : 1) * sizeof *F, "features");
    double *y = ofa_xmalloc((size_t)(n ? n : 1) * sizeof *y, "timings");
    int *idx = ofa_xmalloc((size_t)(n ? n : 1) * sizeof *idx, "op list");
    for (int t = 0; t < N_TYPES; t++) {
        int m = 0;
        for (int i = 0; i < n; i++)
            if (all[i].type == t)
                idx[m++] = i;
        for (int i = m - 1; i > 0; i--) { /* seeded shuffle, then the first CAP */
            int j = (int)ofa_rng_below(&rng, (uint32_t)(i + 1));
            int tmp = idx[i];
            idx[i] = idx[j];
            idx[j] = tmp;
        }
        if (m > OPWISE_CAP)
            m = OPWISE_CAP;
        int nf = 0;
        for (int i = 0; i < m; i++) {
            nf = op_features(&all[idx[i]], F[i]);
            y[i] = op_time(&all[idx[i]], reps, sp->bn_eps);
        }
        fit_type((const double (*)[MAX_FEAT])F, y, m, nf, lat->coef[t]);
        lat->nfit[t] = m;
    }
    free(idx);
    free(y);
    free(F);
    free(all);
    fit_pass_overhead(lat, net, reps);
}

/* ---- lut: a TSV table keyed by block shape ------------------------------------ */

enum { C_STAGE, C_BLOCK, C_CIN, C_COUT, C_STRIDE, C_H, C_KERNEL, C_EXPAND, C_SE, C_ACT, C_MS,
       N_COLS };
static const char *const col_names[N_COLS] = {"stage", "block", "cin", "cout", "stride", "h",
                                              "kernel", "expand", "se", "act", "latency_ms"};

struct lut_row {
    int kind; /* 0 block, 1 stem, 2 head */
    int v[C_MS]; /* integer columns (se: 0/1, act: enum ofa_act) */
    double ms;
    long line;
};

struct lut {
    struct lut_row *rows;
    int n, cap;
};

static void lut_append(struct lut *t, const struct lut_row *r)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 256;
        struct lut_row *q = realloc(t->rows, (size_t)t->cap * sizeof *q);
        if (!q)
            ofa_fatal("out of memory reading a latency table");
        t->rows = q;
    }
    t->rows[t->n++] = *r;
}

static int lut_parse_int(const char *s, int lo, int hi, int *out)
{
    char *e;
    errno = 0;
    long v = strtol(s, &e, 10);
    if (e == s || *e || errno || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

/* One data field of a block row; 0, or -1 with why. */
static int lut_field(int col, const char *s, int *out, char *why, size_t n)
{
    switch (col) {
    case C_SE:
        if (!strcmp(s, "yes") || !strcmp(s, "1"))
            *out = 1;
        else if (!strcmp(s, "no") || !strcmp(s, "0"))
            *out = 0;
        else
            return snprintf(why, n, "se: expected yes or no, got \"%.40s\"", s), -1;
        return 0;
    case C_ACT:
        if (!strcmp(s, "relu"))
            *out = OFA_ACT_RELU;
        else if (!strcmp(s, "hswish"))
            *out = OFA_ACT_HSWISH;
        else if (!strcmp(s, "none"))
            *out = OFA_ACT_NONE;
        else
            return snprintf(why, n, "act: expected relu, hswish or none, got \"%.40s\"", s), -1;
        return 0;
    default:
        if (lut_parse_int(s, 1, 1 << 20, out))
            return snprintf(why, n, "%s: expected a positive integer, got \"%.40s\"",
                            col_names[col], s), -1;
        return 0;
    }
}

static int lut_same_key(const struct lut_row *a, const struct lut_row *b)
{
    if (a->kind != b->kind)
        return 0;
    if (a->kind)
        return a->v[C_H] == b->v[C_H];
    return memcmp(a->v, b->v, sizeof a->v) == 0;
}

static void describe_key(const struct lut_row *r, char *buf, size_t n)
{
    if (r->kind)
        snprintf(buf, n, "%s at h %d", r->kind == 1 ? "stem" : "head", r->v[C_H]);
    else
        snprintf(buf, n, "stage %d block %d (cin %d, cout %d, stride %d, h %d, kernel %d, "
                 "expand %d, se %s, act %s)", r->v[C_STAGE], r->v[C_BLOCK], r->v[C_CIN],
                 r->v[C_COUT], r->v[C_STRIDE], r->v[C_H], r->v[C_KERNEL], r->v[C_EXPAND],
                 r->v[C_SE] ? "yes" : "no",
                 r->v[C_ACT] == OFA_ACT_RELU ? "relu" : r->v[C_ACT] == OFA_ACT_HSWISH ? "hswish"
                                                                                      : "none");
}

/* Split line at tabs into at most max fields (in place); returns the count,
 * or max + 1 when there are more. */
static int split_tabs(char *line, char **f, int max)
{
    int n = 0;
    for (char *p = line;;) {
        if (n == max)
            return max + 1;
        f[n++] = p;
        char *t = strchr(p, '\t');
        if (!t)
            break;
        *t = '\0';
        p = t + 1;
    }
    for (int i = 0; i < n; i++) { /* trim spaces around fields */
        char *s = f[i];
        while (*s == ' ')
            s++;
        size_t l = strlen(s);
        while (l && s[l - 1] == ' ')
            s[--l] = '\0';
        f[i] = s;
    }
    return n;
}

static int lut_read(struct lut *t, const char *path, struct ofa_error *err)
{
    memset(t, 0, sizeof *t);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return ofa_error_set(err, path, 0, "cannot open latency table: %s", strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    long ln = 0;
    int col_of[N_COLS + 1], ncol = 0, rc = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, fp)) >= 0) {
        ln++;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if ((size_t)len != strlen(line)) {
            rc = ofa_error_set(err, path, ln, "binary data (a NUL byte)");
            break;
        }
        const char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0' || *p == '#')
            continue;
        char *f[N_COLS + 2];
        int nf = split_tabs(line, f, N_COLS + 1);
        if (!ncol) { /* the header */
            int seen[N_COLS] = {0};
            for (int i = 0; i < nf && i < N_COLS && !rc; i++) {
                int c = 0;
                while (c < N_COLS && strcmp(f[i], col_names[c]))
                    c++;
                if (c == N_COLS)
                    rc = ofa_error_set(err, path, ln, "unknown column \"%.40s\" (columns: stage, "
                                       "block, cin, cout, stride, h, kernel, expand, se, act, "
                                       "latency_ms)", f[i]);
                else if (seen[c]++)
                    rc = ofa_error_set(err, path, ln, "column %s appears twice", col_names[c]);
                else
                    col_of[i] = c;
            }
            if (!rc && nf > N_COLS)
                rc = ofa_error_set(err, path, ln, "header has more than the %d columns of a "
                                   "latency table", N_COLS);
            for (int c = 0; c < N_COLS && !rc; c++)
                if (!seen[c])
                    rc = ofa_error_set(err, path, ln, "header lacks column %s", col_names[c]);
            if (rc)
                break;
            ncol = nf;
            continue;
        }
        if (nf != ncol) {
            rc = ofa_error_set(err, path, ln, "expected %d tab-separated fields, got %s%d", ncol,
                               nf > ncol ? "more than " : "", nf > ncol ? ncol : nf);
            break;
        }
        struct lut_row r;
        memset(&r, 0, sizeof r);
        r.line = ln;
        const char *fv[N_COLS];
        for (int i = 0; i < nf; i++)
            fv[col_of[i]] = f[i];
        r.kind = !strcmp(fv[C_STAGE], "stem") ? 1 : !strcmp(fv[C_STAGE], "head") ? 2 : 0;
        char why[160] = "";
        for (int c = 0; c < C_MS && !why[0]; c++) {
            if (r.kind && c != C_H && c != C_STAGE) {
                if (strcmp(fv[c], "-"))
                    snprintf(why, sizeof why, "%s: a %s row has \"-\" here, got \"%.40s\"",
                             col_names[c], r.kind == 1 ? "stem" : "head", fv[c]);
                continue;
            }
            if (r.kind && c == C_STAGE)
                continue;
            if (c == C_STAGE && lut_parse_int(fv[c], 1, OFA_MAX_STAGES, &r.v[c])) {
                snprintf(why, sizeof why, "stage: expected stem, head or 1 to %d, got \"%.40s\"",
                         OFA_MAX_STAGES, fv[c]);
                continue;
            }
            if (c == C_BLOCK && lut_parse_int(fv[c], 1, OFA_MAX_DEPTH, &r.v[c])) {
                snprintf(why, sizeof why, "block: expected 1 to %d, got \"%.40s\"",
                         OFA_MAX_DEPTH, fv[c]);
                continue;
            }
            if (c != C_STAGE && c != C_BLOCK)
                lut_field(c, fv[c], &r.v[c], why, sizeof why);
        }
        if (!why[0]) {
            char *e;
            errno = 0;
            r.ms = strtod(fv[C_MS], &e);
            if (e == fv[C_MS] || *e || errno || !isfinite(r.ms) || r.ms < 0)
                snprintf(why, sizeof why, "latency_ms: expected a number >= 0, got \"%.40s\"",
                         fv[C_MS]);
        }
        if (why[0]) {
            rc = ofa_error_set(err, path, ln, "%s", why);
            break;
        }
        for (int i = 0; i < t->n && !rc; i++)
            if (lut_same_key(&t->rows[i], &r)) {
                char k[256];
                describe_key(&r, k, sizeof k);
                rc = ofa_error_set(err, path, ln, "duplicate row for %s (first on line %ld)", k,
                                   t->rows[i].line);
            }
        if (rc)
            break;
        lut_append(t, &r);
    }
    if (!rc && ferror(fp))
        rc = ofa_error_set(err, path, ln, "read error");
    if (!rc && !ncol)
        rc = ofa_error_set(err, path, 0, "no header line (stage, block, cin, cout, stride, h, "
                           "kernel, expand, se, act, latency_ms)");
    free(line);
    fclose(fp);
    if (rc) {
        free(t->rows);
        memset(t, 0, sizeof *t);
    }
    return rc;
}

static const struct lut_row *lut_find(const struct lut *t, const struct lut_row *key)
{
    for (int i = 0; i < t->n; i++)
        if (lut_same_key(&t->rows[i], key))
            return &t->rows[i];
    return NULL;
}

static void block_key(const struct geom *g, int st, int b, struct lut_row *k)
{
    memset(k, 0, sizeof *k);
    k->v[C_STAGE] = st + 1, k->v[C_BLOCK] = b + 1, k->v[C_CIN] = g->cin;
    k->v[C_COUT] = g->cout, k->v[C_STRIDE] = g->stride, k->v[C_H] = g->H;
    k->v[C_KERNEL] = g->K, k->v[C_EXPAND] = g->E, k->v[C_SE] = g->se;
    k->v[C_ACT] = (int)g->act;
}

/* The same block shape at two resolutions (equal input size) is one
 * configuration: average its timings, so that the measured table, like a
 * LUT keyed by shape, holds one latency per shape (and writes out as one). */
static void unify_shapes(struct ofa_latency *lat)
{
    const struct ofa_space *sp = &lat->sp;
    const int D = ofa_space_max_depth(sp);
    double(*avg)[OFA_MAX_STAGES][OFA_MAX_DEPTH][NCH][NCH] =
        ofa_xmalloc(sizeof lat->blk, "latency table");
    for (int ri = 0; ri < sp->n_res; ri++)
        for (int st = 0; st < sp->n_stages; st++)
            for (int b = 0; b < D; b++)
                for (int ki = 0; ki < sp->n_kernels; ki++)
                    for (int ei = 0; ei < sp->n_expands; ei++) {
                        struct geom g, h;
                        struct lut_row k, kj;
                        block_geom(sp, sp->resolutions[ri], st, b, sp->kernels[ki],
                                   sp->expands[ei], &g);
                        block_key(&g, st, b, &k);
                        double sum = 0;
                        int n = 0;
                        for (int rj = 0; rj < sp->n_res; rj++) {
                            block_geom(sp, sp->resolutions[rj], st, b, sp->kernels[ki],
                                       sp->expands[ei], &h);
                            block_key(&h, st, b, &kj);
                            if (lut_same_key(&k, &kj))
                                sum += lat->blk[rj][st][b][ki][ei], n++;
                        }
                        avg[ri][st][b][ki][ei] = sum / n;
                    }
    for (int ri = 0; ri < sp->n_res; ri++)
        for (int st = 0; st < sp->n_stages; st++)
            for (int b = 0; b < D; b++)
                for (int ki = 0; ki < sp->n_kernels; ki++)
                    for (int ei = 0; ei < sp->n_expands; ei++)
                        lat->blk[ri][st][b][ki][ei] = avg[ri][st][b][ki][ei];
    free(avg);
}

/* Fill the table from the file; every configuration the space can produce
 * must have a row (the first one missing is named). */
static int lut_load(struct ofa_latency *lat, const char *path, struct ofa_error *err)
{
    struct lut t;
    if (lut_read(&t, path, err))
        return -1;
    const struct ofa_space *sp = &lat->sp;
    int rc = 0;
    for (int ri = 0; ri < sp->n_res && !rc; ri++) {
        const int R = sp->resolutions[ri];
        struct lut_row k;
        const struct lut_row *row;
        char d[256];
        for (int kind = 1; kind <= 2 && !rc; kind++) {
            memset(&k, 0, sizeof k);
            k.kind = kind;
            k.v[C_H] = R;
            if (!(row = lut_find(&t, &k))) {
                describe_key(&k, d, sizeof d);
                rc = ofa_error_set(err, path, 0, "no row for %s (input resolution %d of the "
                                   "space)", d, R);
            } else if (kind == 1) {
                lat->stem[ri] = row->ms;
            } else {
                lat->head[ri] = row->ms;
            }
        }
        for (int st = 0; st < sp->n_stages && !rc; st++)
            for (int b = 0; b < ofa_space_max_depth(sp) && !rc; b++)
                for (int ki = 0; ki < sp->n_kernels && !rc; ki++)
                    for (int ei = 0; ei < sp->n_expands && !rc; ei++) {
                        struct geom g;
                        block_geom(sp, R, st, b, sp->kernels[ki], sp->expands[ei], &g);
                        block_key(&g, st, b, &k);
                        if ((row = lut_find(&t, &k))) {
                            lat->blk[ri][st][b][ki][ei] = row->ms;
                            continue;
                        }
                        describe_key(&k, d, sizeof d);
                        rc = ofa_error_set(err, path, 0, "no row for %s, which subnets of the "
                                           "space at resolution %d use", d, R);
                    }
    }
    free(t.rows);
    return rc;
}

/* ---- public --------------------------------------------------------------------- */

const char *ofa_latency_model_name(enum ofa_latency_model m)
{
    switch (m) {
    case OFA_LAT_MEASURED:
        return "measured";
    case OFA_LAT_OPWISE:
        return "opwise";
    case OFA_LAT_OPCOUNT:
        return "opcount";
    case OFA_LAT_LUT:
        return "lut";
    }
    return "?";
}

int ofa_latency_init(struct ofa_latency **out, const struct ofa_device *dev,
                     struct ofa_supernet *net, const char *base_dir, struct ofa_error *err)
{
    *out = NULL;
    OFA_ASSERT(net);
    struct ofa_latency *lat = ofa_xcalloc(1, sizeof *lat, "latency predictor");
    lat->model = dev->model;
    lat->arith = dev->arith;
    lat->sp = net->sp;
    lat->alpha = 1.0;
    switch (dev->model) {
    case OFA_LAT_OPCOUNT:
        if (!(dev->a_ms_per_mmac > 0)) {
            free(lat);
            return ofa_error_set(err, NULL, 0, "device %s: opcount needs a_ms_per_mmac > 0",
                                 dev->name);
        }
        lat->a = dev->a_ms_per_mmac;
        lat->b = dev->b_ms;
        break;
    case OFA_LAT_MEASURED: {
        OFA_ASSERT(!net->standalone);
        int prev = single_thread_begin();
        profile_measured(lat, net, PROFILE_REPS);
        unify_shapes(lat);
        single_thread_end(prev);
        break;
    }
    case OFA_LAT_OPWISE: {
        OFA_ASSERT(!net->standalone);
        if (dev->arith != OFA_ARITH_FP32) {
            free(lat);
            return ofa_error_set(err, NULL, 0, "device %s: latency_model opwise profiles the fp32 "
                                 "runtime only; use measured for arith %s", dev->name,
                                 ofa_arith_name(dev->arith));
        }
        int prev = single_thread_begin();
        profile_opwise(lat, net, PROFILE_REPS);
        single_thread_end(prev);
        break;
    }
    case OFA_LAT_LUT: {
        if (!dev->lut[0]) {
            free(lat);
            return ofa_error_set(err, NULL, 0, "device %s: latency_model lut needs a lut file",
                                 dev->name);
        }
        char path[1100];
        if (dev->lut[0] == '/' || !base_dir || !base_dir[0])
            snprintf(path, sizeof path, "%s", dev->lut);
        else
            snprintf(path, sizeof path, "%s/%s", base_dir, dev->lut);
        if (lut_load(lat, path, err)) {
            free(lat);
            return -1;
        }
        break;
    }
    default:
        free(lat);
        return ofa_error_set(err, NULL, 0, "device %s: unknown latency model %d", dev->name,
                             (int)dev->model);
    }
    *out = lat;
    return 0;
}

enum ofa_latency_model ofa_latency_model(const struct ofa_latency *lat)
{
    return lat->model;
}

enum ofa_arith ofa_latency_arith(const struct ofa_latency *lat)
{
    return lat->arith;
}

const char *ofa_arith_name(enum ofa_arith a)
{
    return a == OFA_ARITH_INT8 ? "int8" : "fp32";
}

int ofa_latency_write_lut(const struct ofa_latency *lat, FILE *f, const char *comment)
{
    if (lat->model == OFA_LAT_OPCOUNT)
        return -1;
    const struct ofa_space *sp = &lat->sp;
    if (comment)
        for (const char *p = comment; *p;) {
            size_t n = strcspn(p, "\n");
            fprintf(f, "# %.*s\n", (int)n, p);
            p += n + (p[n] == '\n');
        }
    fprintf(f, "stage\tblock\tcin\tcout\tstride\th\tkernel\texpand\tse\tact\tlatency_ms\n");
    /* A block shape that several resolutions share (same input size) is one
     * key: written once, from the first resolution that has it. */
    struct lut seen = {0};
    for (int ri = 0; ri < sp->n_res; ri++) {
        const int R = sp->resolutions[ri];
        fprintf(f, "stem\t-\t-\t-\t-\t%d\t-\t-\t-\t-\t%.6f\n", R, stem_table_ms(lat, ri));
        for (int st = 0; st < sp->n_stages; st++)
            for (int b = 0; b < ofa_space_max_depth(sp); b++)
                for (int ki = 0; ki < sp->n_kernels; ki++)
                    for (int ei = 0; ei < sp->n_expands; ei++) {
                        struct geom g;
                        struct lut_row k;
                        block_geom(sp, R, st, b, sp->kernels[ki], sp->expands[ei], &g);
                        block_key(&g, st, b, &k);
                        if (lut_find(&seen, &k))
                            continue;
                        lut_append(&seen, &k);
                        fprintf(f, "%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%.6f\n", st + 1, b + 1,
                                g.cin, g.cout, g.stride, g.H, g.K, g.E, g.se ? "yes" : "no",
                                g.act == OFA_ACT_RELU ? "relu" : g.act == OFA_ACT_HSWISH
                                                                     ? "hswish" : "none",
                                block_table_ms(lat, ri, st, b, ki, ei));
                    }
        fprintf(f, "head\t-\t-\t-\t-\t%d\t-\t-\t-\t-\t%.6f\n", R, head_table_ms(lat, ri));
    }
    free(seen.rows);
    return ferror(f) ? -1 : 0;
}

void ofa_latency_describe(const struct ofa_latency *lat, FILE *f)
{
    const struct ofa_space *sp = &lat->sp;
    fprintf(f, "latency model %s\n", ofa_latency_model_name(lat->model));
    if (lat->model == OFA_LAT_MEASURED)
        fprintf(f, "  runtime       %s\n", ofa_arith_name(lat->arith));
    if (lat->model == OFA_LAT_OPCOUNT) {
        fprintf(f, "  %g ms per M MACs + %g ms\n", lat->a, lat->b);
        return;
    }
    if (lat->model == OFA_LAT_OPWISE)
        for (int t = 0; t < N_TYPES; t++) {
            if (!lat->nfit[t])
                continue;
            fprintf(f, "  %-13s n=%2d  ms = %.4g", type_names[t], lat->nfit[t], lat->coef[t][0]);
            for (int i = 1; i < MAX_FEAT; i++)
                if (lat->coef[t][i] != 0)
                    fprintf(f, " %+.4g x%d", lat->coef[t][i], i);
            fprintf(f, "\n");
        }
    if (lat->model == OFA_LAT_OPWISE)
        fprintf(f, "  whole pass    n=%2d  ms = %.4g + %.4g x sum of ops\n", lat->nnet,
                lat->net0, lat->alpha);
    if (lat->model == OFA_LAT_MEASURED)
        fprintf(f, "  whole pass    n=%2d  blocks timed alone scaled by %.4g\n", lat->nnet,
                lat->alpha);
    for (int ri = 0; ri < sp->n_res; ri++)
        fprintf(f, "  r%d: stem %.4f ms, head %.4f ms\n", sp->resolutions[ri],
                stem_table_ms(lat, ri), head_table_ms(lat, ri));
}

static double int8_measure(const struct ofa_supernet *net, const struct ofa_subnet *s, int reps)
{
    struct ofa_model m;
    float *x;
    struct ofa_qrun *q = int8_runtime(net, s, &m, &x);
    double ms = int8_pass_ms(q, x, m.num_classes, reps);
    free(x);
    ofa_qrun_free(q);
    ofa_model_free(&m);
    return ms;
}

double ofa_latency_int8_profile(const struct ofa_supernet *net, const struct ofa_subnet *s,
                                int reps, double ms[OFA_PROF_NKINDS], int calls[OFA_PROF_NKINDS])
{
    OFA_ASSERT(reps >= 1);
    struct ofa_subnet sub = *s;
    ofa_subnet_normalize(&net->sp, &sub);
    const int prev = single_thread_begin();
    struct ofa_model m;
    double *layer;
    const double pass = int8_layer_ms(net, &sub, reps, &m, &layer);
    for (int k = 0; k < OFA_PROF_NKINDS; k++)
        ms[k] = 0.0, calls[k] = 0;
    for (int i = 0; i < m.n_layers; i++) {
        const enum ofa_prof_kind k = ofa_model_layer_prof_kind(&m, i);
        ms[k] += layer[i];
        calls[k]++;
    }
    free(layer);
    ofa_model_free(&m);
    single_thread_end(prev);
    return pass;
}

double ofa_latency_measure(struct ofa_supernet *net, const struct ofa_subnet *s,
                           enum ofa_arith arith, int reps)
{
    OFA_ASSERT(reps >= 1);
    struct ofa_subnet sub = *s;
    ofa_subnet_normalize(&net->sp, &sub);
    if (arith == OFA_ARITH_INT8) {
        int prev = single_thread_begin();
        double ms = int8_measure(net, &sub, reps);
        single_thread_end(prev);
        return ms;
    }
    struct ofa_supernet sa;
    struct ofa_supernet *run = net;
    if (!net->standalone) {
        ofa_supernet_extract(&sa, net, &sub);
        run = &sa;
    } else {
        OFA_ASSERT(memcmp(&net->sub, &sub, sizeof sub) == 0);
    }
    struct ofa_exec ex;
    ofa_exec_init(&ex, run, 1);
    struct ofa_rng r;
    ofa_rng_seed(&r, 3);
    const struct ofa_space *sp = &net->sp;
    float *x = rnd(&r, (size_t)sub.res * sub.res * sp->in_channels);
    double *t = ofa_xmalloc((size_t)reps * sizeof *t, "timings");
    int prev = single_thread_begin();
    for (int i = 0; i < 2; i++)
        ofa_supernet_forward(run, &ex, &sub, x, 1, OFA_MODE_EVAL, 0.0f, NULL);
    for (int i = 0; i < reps; i++) {
        double t0 = ofa_thread_cpu_now();
        ofa_supernet_forward(run, &ex, &sub, x, 1, OFA_MODE_EVAL, 0.0f, NULL);
        t[i] = 1e3 * (ofa_thread_cpu_now() - t0);
    }
    single_thread_end(prev);
    double m = ofa_median(t, reps);
    free(t);
    free(x);
    ofa_exec_free(&ex);
    if (run == &sa)
        ofa_supernet_free(&sa);
    return m;
}

double ofa_latency_validate(const struct ofa_latency *lat, struct ofa_supernet *net, int n,
                            uint64_t seed, int reps, double tol, double *pred, double *meas)
{
    OFA_ASSERT(n >= 1);
    struct ofa_rng r;
    ofa_rng_seed(&r, seed);
    int ok = 0;
    for (int i = 0; i < n; i++) {
        struct ofa_subnet s;
        ofa_subnet_sample(&net->sp, &r, &s);
        double p = ofa_latency_predict(lat, &s), m = ofa_latency_measure(net, &s, lat->arith, reps);
        if (pred)
            pred[i] = p;
        if (meas)
            meas[i] = m;
        ok += fabs(p - m) <= tol * m;
    }
    return (double)ok / n;
}
