/* quant.c: post-training int8 quantization of an exported model and the int8
 * executor.
 *
 * Calibration runs the float model layer by layer on the calibration images
 * (its own pass: it needs every tensor, the hswish pre-activations and the
 * SE internals, not only the logits) and keeps each range's min/max, or a
 * percentile of |values| on either side of zero from a 4096-bin histogram
 * over [0, max] (second pass; error below 1/4096 of the range, a sixteenth
 * of an int8 step). Ranges always include 0, so real zero is exact.
 *
 * ofa_quant_prepare turns a quantized model into what the integer kernels of
 * qnet.inc run; the executor and the model.c emitter share it, so both
 * compute the same integers. The executor picks the kernels' best
 * instruction set for this CPU (OFA_QRUN_ISA forces a lower one).
 */
#include <config.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "qnet.h"
#include "quant.h"

_Static_assert((int)OFA_LAYER_CONV == OFA_QK_CONV && (int)OFA_LAYER_DW == OFA_QK_DW &&
                   (int)OFA_LAYER_SE == OFA_QK_SE && (int)OFA_LAYER_ADD == OFA_QK_ADD &&
                   (int)OFA_LAYER_POOL == OFA_QK_POOL && (int)OFA_LAYER_FC == OFA_QK_FC,
               "layer kinds of model.h and qnet.inc agree");

/* Quantized biases stay within +-2^29 and reductions within 16384 terms, so
 * every int32 accumulator of the kernels stays below 2^31 in magnitude
 * (products of at most 255 * 127 < 2^15). */
#define BIAS_MAX 536870912.0
#define REDUCE_MAX OFA_QUANT_REDUCE_MAX
/* The runtime pads conv rows to whole vectors (32 bytes of int8). */
#define ROW_ALIGN 32

enum { NBINS = 4096, CHUNK = 16 };

/* ---- calibration ---------------------------------------------------------- */

/* The range of one quantity: min/max (pass 0), then |value| histograms of
 * either side over [0, max|side|] (pass 1, percentile only). */
struct rstat {
    float lo, hi;
    int seen;
    long long *hist; /* [2][NBINS]: negative side, positive side */
};

static void stat_add(struct rstat *st, const float *v, long n, int pass)
{
    if (pass == 0) {
        float lo = st->lo, hi = st->hi;
        for (long i = 0; i < n; i++) {
            float a = v[i];
            if (!isfinite(a))
                continue;
            lo = a < lo ? a : lo;
            hi = a > hi ? a : hi;
        }
        st->lo = lo, st->hi = hi, st->seen = 1;
        return;
    }
    long long *neg = st->hist, *pos = st->hist + NBINS;
    const double sn = st->lo < 0.0f ? NBINS / -(double)st->lo : 0.0;
    const double sp = st->hi > 0.0f ? NBINS / (double)st->hi : 0.0;
    for (long i = 0; i < n; i++) {
        float a = v[i];
        if (!isfinite(a) || a == 0.0f)
            continue;
        long b = (long)(a > 0.0f ? a * sp : -a * sn);
        b = b >= NBINS ? NBINS - 1 : b;
        if (a > 0.0f)
            pos[b]++;
        else
            neg[b]++;
    }
}

/* The value below which `pct` percent of one side's counts lie (linear
 * within the bin); 0 for an empty side. */
static double hist_percentile(const long long *h, double max, double pct)
{
    long long total = 0;
    for (int b = 0; b < NBINS; b++)
        total += h[b];
    if (total == 0)
        return 0.0;
    double target = pct / 100.0 * (double)total, cum = 0.0;
    for (int b = 0; b < NBINS; b++) {
        if (h[b] > 0 && cum + (double)h[b] >= target) {
            double f = (target - cum) / (double)h[b];
            return (b + f) * max / NBINS;
        }
        cum += (double)h[b];
    }
    return max;
}

/* Per-tensor asymmetric parameters of [lo, hi] (extended to include 0). */
static struct ofa_qp qp_of_range(double lo, double hi)
{
    lo = lo < 0.0 ? lo : 0.0;
    hi = hi > 0.0 ? hi : 0.0;
    struct ofa_qp q;
    if (hi - lo < 1e-12) { /* a constant zero tensor: any scale, zero exact */
        q.scale = 1.0f;
        q.zp = -128;
        return q;
    }
    q.scale = (float)((hi - lo) / 255.0);
    long z = lround(-128.0 - lo / (double)q.scale);
    q.zp = (int32_t)(z < -128 ? -128 : z > 127 ? 127 : z);
    return q;
}

static struct ofa_qp qp_of_stat(const struct rstat *st, const struct ofa_quant_opts *o)
{
    if (!st->seen)
        return qp_of_range(0.0, 0.0);
    if (o->method == OFA_CALIB_MINMAX)
        return qp_of_range(st->lo, st->hi);
    double lo = -hist_percentile(st->hist, -(double)st->lo, o->percentile);
    double hi = hist_percentile(st->hist + NBINS, st->hi, o->percentile);
    return qp_of_range(lo, hi);
}

static long tsize(const struct ofa_model *m, int t)
{
    const struct ofa_tshape *s = &m->tensors[t];
    return (long)s->H * s->W * s->C;
}

/* The stat slots of a model: one per tensor, then pre, pool, hid per layer. */
static int slot_pre(const struct ofa_model *m, int i) { return m->n_tensors + 3 * i; }
static int slot_pool(const struct ofa_model *m, int i) { return m->n_tensors + 3 * i + 1; }
static int slot_hid(const struct ofa_model *m, int i) { return m->n_tensors + 3 * i + 2; }

static void add_bias(float *x, const float *b, long rows, int C)
{
    for (long r = 0; r < rows; r++)
        for (int c = 0; c < C; c++)
            x[r * C + c] += b[c];
}

/* The float model on B images x, feeding every range to st. last[t]: the
 * last layer that reads tensor t (tensors are freed after it). */
static void calib_chunk(const struct ofa_model *m, const float *x, int B, const int *last,
                        struct rstat *st, int pass)
{
    float **t = ofa_xcalloc((size_t)m->n_tensors, sizeof(float *), "calibration tensors");
    stat_add(&st[0], x, B * tsize(m, 0), pass);
    for (int i = 0; i < m->n_layers; i++) {
        const struct ofa_layer *L = &m->layers[i];
        const float *in = L->in == 0 ? x : t[L->in];
        const float *w = m->weights + (L->w >= 0 ? L->w : 0);
        const float *b = m->weights + (L->b >= 0 ? L->b : 0);
        const long rows = (long)B * L->Ho * L->Wo;
        float *out = ofa_xmalloc(sizeof(float) * (size_t)(B * tsize(m, L->out)), "calibration");
        switch (L->kind) {
        case OFA_LAYER_CONV:
            if (L->K == 1 && L->stride == 1 && L->pad == 0) {
                ofa_pwconv_forward(out, in, w, L->Cin, rows, L->Cin, L->Cout);
            } else {
                float *col = ofa_xmalloc(sizeof(float) * ofa_conv2d_col_size(B, L->H, L->W,
                                         L->Cin, L->K, L->stride, L->pad), "im2col");
                ofa_conv2d_forward(out, col, in, w, B, L->H, L->W, L->Cin, L->Cout, L->K,
                                   L->stride, L->pad);
                free(col);
            }
            add_bias(out, b, rows, L->Cout);
            break;
        case OFA_LAYER_DW:
            ofa_dwconv_forward(out, in, w, B, L->H, L->W, L->Cin, L->K, L->stride);
            add_bias(out, b, rows, L->Cout);
            break;
        case OFA_LAYER_FC:
            ofa_linear_forward(out, in, w, L->Cin, b, B, L->Cin, L->Cout);
            break;
        case OFA_LAYER_SE: {
            const int C = L->Cin, R = L->R;
            float *pooled = ofa_xmalloc(sizeof(float) * (size_t)B * (size_t)(2 * C + R), "SE");
            float *gate = pooled + (long)B * C, *hidden = gate + (long)B * C;
            ofa_se_forward(out, pooled, hidden, gate, in, w, C, b, m->weights + L->w2, R,
                           m->weights + L->b2, B, L->H * L->W, C, R);
            ofa_act_forward(hidden, hidden, (long)B * R, OFA_ACT_RELU);
            stat_add(&st[slot_pool(m, i)], pooled, (long)B * C, pass);
            stat_add(&st[slot_hid(m, i)], hidden, (long)B * R, pass);
            stat_add(&st[slot_pre(m, i)], gate, (long)B * C, pass);
            free(pooled);
            break;
        }
        case OFA_LAYER_ADD: {
            const float *in2 = L->in2 == 0 ? x : t[L->in2];
            const long n = B * tsize(m, L->out);
            for (long k = 0; k < n; k++)
                out[k] = in[k] + in2[k];
            break;
        }
        case OFA_LAYER_POOL:
            ofa_avgpool_forward(out, in, B, L->H * L->W, L->Cin);
            break;
        }
        if (L->kind == OFA_LAYER_CONV || L->kind == OFA_LAYER_DW || L->kind == OFA_LAYER_FC) {
            if (L->act == OFA_ACT_HSWISH)
                stat_add(&st[slot_pre(m, i)], out, rows * L->Cout, pass);
            ofa_act_forward(out, out, rows * L->Cout, L->act);
        }
        t[L->out] = out;
        stat_add(&st[L->out], out, B * tsize(m, L->out), pass);
        for (int k = 1; k < m->n_tensors; k++)
            if (t[k] && last[k] <= i && k != m->n_tensors - 1) {
                free(t[k]);
                t[k] = NULL;
            }
    }
    for (int k = 1; k < m->n_tensors; k++)
        free(t[k]);
    free(t);
}

/* Per output channel symmetric int8 of `rows` channels: channel r's weights
 * are w[r * rs + j * js], j < n. Fills q (same layout) and scale[rows]. */
static void quantize_rows(int8_t *q, float *scale, const float *w, int rows, long n, long rs,
                          long js)
{
    for (int r = 0; r < rows; r++) {
        float mx = 0.0f;
        for (long j = 0; j < n; j++) {
            float a = fabsf(w[r * rs + j * js]);
            mx = a > mx ? a : mx;
        }
        float s = mx > 0.0f && isfinite(mx) ? mx / 127.0f : 1.0f / 127.0f;
        scale[r] = s;
        for (long j = 0; j < n; j++) {
            double v = round((double)w[r * rs + j * js] / s);
            q[r * rs + j * js] = (int8_t)(v < -127.0 ? -127 : v > 127.0 ? 127 : v);
        }
    }
}

/* int32 bias at in_scale * w_scale, bounded by BIAS_MAX. */
static void quantize_bias(int32_t *q, const float *b, const float *wscale, float in_scale,
                          int n)
{
    for (int i = 0; i < n; i++) {
        double v = round((double)b[i] / ((double)in_scale * wscale[i]));
        v = isfinite(v) ? v : 0.0;
        q[i] = (int32_t)(v < -BIAS_MAX ? -BIAS_MAX : v > BIAS_MAX ? BIAS_MAX : v);
    }
}

/* Count of weights, bias entries (= output channels) of one weight set. */
static void weight_sizes(const struct ofa_layer *L, int second, long *nw, long *nb)
{
    switch (L->kind) {
    case OFA_LAYER_CONV:
        *nw = (long)L->Cout * L->K * L->K * L->Cin, *nb = L->Cout;
        break;
    case OFA_LAYER_DW:
        *nw = (long)L->K * L->K * L->Cout, *nb = L->Cout;
        break;
    case OFA_LAYER_FC:
        *nw = (long)L->Cout * L->Cin, *nb = L->Cout;
        break;
    case OFA_LAYER_SE:
        *nw = (long)L->R * L->Cin, *nb = second ? L->Cin : L->R;
        break;
    default:
        *nw = 0, *nb = 0;
        break;
    }
}

static void quantize_weights(struct ofa_model *m)
{
    long nw = 0, nb = 0;
    for (int i = 0; i < m->n_layers; i++)
        for (int k = 0; k < (m->layers[i].kind == OFA_LAYER_SE ? 2 : 1); k++) {
            long a, b;
            weight_sizes(&m->layers[i], k, &a, &b);
            nw += a, nb += b;
        }
    m->n_qweights = nw, m->n_qbias = nb, m->n_wscale = nb;
    m->qweights = ofa_xmalloc((size_t)(nw ? nw : 1), "int8 weights");
    m->qbias = ofa_xmalloc(sizeof(int32_t) * (size_t)(nb ? nb : 1), "int32 biases");
    m->wscale = ofa_xmalloc(sizeof(float) * (size_t)(nb ? nb : 1), "weight scales");
    long ow = 0, ob = 0;
    for (int i = 0; i < m->n_layers; i++) {
        struct ofa_layer *L = &m->layers[i];
        L->qw = L->qw2 = L->qb = L->qb2 = L->ws = L->ws2 = -1;
        long a, b;
        weight_sizes(L, 0, &a, &b);
        if (a == 0)
            continue;
        const float *w = m->weights + L->w, *bias = m->weights + L->b;
        int8_t *qw = m->qweights + ow;
        float *ws = m->wscale + ob;
        float in_scale = m->tq[L->in].scale;
        L->qw = ow, L->qb = ob, L->ws = ob;
        if (L->kind == OFA_LAYER_DW) /* [K][K][C]: channel c at stride C */
            quantize_rows(qw, ws, w, L->Cout, (long)L->K * L->K, 1, L->Cout);
        else
            quantize_rows(qw, ws, w, (int)b, a / b, a / b, 1);
        if (L->kind == OFA_LAYER_SE)
            in_scale = L->pool.scale;
        quantize_bias(m->qbias + ob, bias, ws, in_scale, (int)b);
        ow += a, ob += b;
        if (L->kind == OFA_LAYER_SE) { /* w2 [C][R], b2 [C] at the hidden's scale */
            weight_sizes(L, 1, &a, &b);
            L->qw2 = ow, L->qb2 = ob, L->ws2 = ob;
            quantize_rows(m->qweights + ow, m->wscale + ob, m->weights + L->w2, L->Cin, L->R,
                          L->R, 1);
            quantize_bias(m->qbias + ob, m->weights + L->b2, m->wscale + ob, L->hid.scale,
                          L->Cin);
            ow += a, ob += b;
        }
    }
    OFA_ASSERT(ow == nw && ob == nb);
}

void ofa_quant_calibrate(struct ofa_model *m, const float *x, int n,
                         const struct ofa_quant_opts *o)
{
    OFA_ASSERT(m && x && o && n >= 1 && m->n_layers >= 1 && m->n_tensors >= 2);
    OFA_ASSERT(o->method == OFA_CALIB_MINMAX ||
               (o->method == OFA_CALIB_PERCENTILE && o->percentile > 50.0 &&
                o->percentile <= 100.0));
    const int ns = m->n_tensors + 3 * m->n_layers;
    struct rstat *st = ofa_xcalloc((size_t)ns, sizeof *st, "calibration ranges");
    int *last = ofa_xmalloc(sizeof(int) * (size_t)m->n_tensors, "tensor liveness");
    for (int k = 0; k < m->n_tensors; k++)
        last[k] = -1;
    for (int i = 0; i < m->n_layers; i++) {
        const struct ofa_layer *L = &m->layers[i];
        OFA_ASSERT(L->in >= 0 && L->in < m->n_tensors && L->out == i + 1);
        last[L->in] = i;
        if (L->in2 >= 0)
            last[L->in2] = i;
    }
    const long insz = tsize(m, 0);
    const int passes = o->method == OFA_CALIB_PERCENTILE ? 2 : 1;
    for (int pass = 0; pass < passes; pass++) {
        if (pass == 1)
            for (int k = 0; k < ns; k++)
                st[k].hist = ofa_xcalloc(2 * NBINS, sizeof(long long), "histogram");
        for (int i = 0; i < n; i += CHUNK) {
            int B = n - i < CHUNK ? n - i : CHUNK;
            calib_chunk(m, x + (long)i * insz, B, last, st, pass);
        }
    }

    free(m->tq);
    free(m->qweights);
    free(m->qbias);
    free(m->wscale);
    m->tq = ofa_xmalloc(sizeof(struct ofa_qp) * (size_t)m->n_tensors, "tensor scales");
    for (int k = 0; k < m->n_tensors; k++)
        m->tq[k] = qp_of_stat(&st[k], o);
    const struct ofa_qp none = {0.0f, 0};
    for (int i = 0; i < m->n_layers; i++) {
        struct ofa_layer *L = &m->layers[i];
        int has_pre = L->kind == OFA_LAYER_SE ||
                      (L->act == OFA_ACT_HSWISH && (L->kind == OFA_LAYER_CONV ||
                                                    L->kind == OFA_LAYER_DW ||
                                                    L->kind == OFA_LAYER_FC));
        L->pre = has_pre ? qp_of_stat(&st[slot_pre(m, i)], o) : none;
        L->pool = L->kind == OFA_LAYER_SE ? qp_of_stat(&st[slot_pool(m, i)], o) : none;
        L->hid = L->kind == OFA_LAYER_SE ? qp_of_stat(&st[slot_hid(m, i)], o) : none;
    }
    quantize_weights(m);
    m->quantized = 1;
    for (int k = 0; k < ns; k++)
        free(st[k].hist);
    free(st);
    free(last);
}

/* ---- preparation for the kernels ---------------------------------------- */

void ofa_quant_multiplier(double real, int32_t *m, int *shift)
{
    OFA_ASSERT(real >= 0.0 && isfinite(real));
    *m = 0, *shift = 0;
    if (real == 0.0)
        return;
    int e;
    double f = frexp(real, &e); /* real = f 2^e, f in [0.5, 1) */
    long long q = llround(f * 2147483648.0);
    if (q == 2147483648LL)
        q /= 2, e++;
    if (e < -31) /* below 2^-32: every int32 maps to 0 */
        return;
    if (e > 31) { /* saturates for every non-zero int32 */
        q = 2147483647LL;
        e = 31;
    }
    *m = (int32_t)q, *shift = e;
}

int8_t ofa_quant_value(float x, struct ofa_qp qp)
{
    double v = (double)x / (double)qp.scale;
    if (isnan(v))
        return (int8_t)qp.zp;
    /* round(v) (halves away from zero) without the library call the int8
     * runtime made for every input value: v - trunc(v) is exact */
    const double t = trunc(v);
    v = (fabs(v - t) >= 0.5 ? t + (v < 0 ? -1.0 : 1.0) : t) + qp.zp;
    return (int8_t)(v < -128.0 ? -128 : v > 127.0 ? 127 : v);
}

float ofa_quant_pixel(const struct ofa_model *m, int c, int v)
{
    double x = v / 255.0;
    x = (x - (double)m->norm_mean[c]) / (double)m->norm_std[c];
    return (float)x;
}

static void *dup_bytes(const void *src, size_t n, const char *what)
{
    void *d = ofa_xmalloc(n ? n : 1, what);
    memcpy(d, src, n);
    return d;
}

static double hswish_d(double x)
{
    double r = x + 3.0;
    r = r < 0.0 ? 0.0 : r > 6.0 ? 6.0 : r;
    return x * r / 6.0;
}

static double hsigmoid_d(double x)
{
    double r = (x + 3.0) / 6.0;
    return r < 0.0 ? 0.0 : r > 1.0 ? 1.0 : r;
}

/* Per output channel multipliers of in_scale * ws[c] / out_scale. */
static void channel_mults(int32_t **pm, int8_t **ps, const float *ws, double in_scale,
                          double out_scale, int n)
{
    int32_t *m = ofa_xmalloc(sizeof(int32_t) * (size_t)n, "multipliers");
    int8_t *s = ofa_xmalloc((size_t)n, "shifts");
    for (int c = 0; c < n; c++) {
        int sh;
        ofa_quant_multiplier(in_scale * ws[c] / out_scale, &m[c], &sh);
        s[c] = (int8_t)sh;
    }
    *pm = m, *ps = s;
}

static void scalar_mult(int32_t *m, int32_t *s, double real)
{
    int sh;
    ofa_quant_multiplier(real, m, &sh);
    *s = sh;
}

/* The residual add's multipliers (qk_add1), for out = zo + the nearest
 * integer to (a - zi) ra + (b - zi2) rb: ma, mb = round(ra 2^sa),
 * round(rb 2^sa) with sa the largest shift up to 30 that keeps both below
 * 2^21 (negative only where an input's scale is 2^20 times the output's or
 * more); mc = 2^(sa - 1) - zi ma - zi2 mb (no rounding term when sa <= 0).
 * |a ma + b mb| < 2^29 for int8 a, b and |mc| < 2^30, so the sum fits in an
 * int32. Each multiplier is off by at most 1/2 in 2^sa, and 2^sa >= (2^20 -
 * 1/4) / max(ra, rb) below sa = 30, so the result is within 255 max(ra, rb)
 * / (2^20 - 1/4) (or 255 2^-30) of the real sum before its rounding: the
 * real sum's nearest integer except where that lies so close to a half
 * (TFLite's form is as exact as its 20 bits of headroom over the larger
 * input scale). */
void ofa_quant_add_mults(struct ofa_qlayer *q, double ra, double rb)
{
    OFA_ASSERT(ra >= 0.0 && rb >= 0.0 && isfinite(ra) && isfinite(rb));
    const double r = ra > rb ? ra : rb, lim = (double)(1 << 21);
    int s = 30;
    while (round(ldexp(r, s)) >= lim) /* r < 2^1024: ends by s = -1045 */
        s--;
    q->ma = (int32_t)round(ldexp(ra, s));
    q->mb = (int32_t)round(ldexp(rb, s));
    q->sa = s;
    q->mc = (s > 0 ? (int32_t)1 << (s - 1) : 0) - q->zi * q->ma - q->zi2 * q->mb;
    q->sb = q->sc = 0;
}

/* Bias (bounded by BIAS_MAX) with z * sum(w row) subtracted: at most 2^29 +
 * 255 * 127 * REDUCE_MAX < 2^30 in magnitude, and the dot products it is
 * added to stay below 2^29. */
static int32_t *fold_bias(const int32_t *b, const int8_t *w, int rows, long n, int32_t z)
{
    int32_t *f = ofa_xmalloc(sizeof(int32_t) * (size_t)rows, "biases");
    for (int r = 0; r < rows; r++) {
        int64_t sw = 0;
        for (long j = 0; j < n; j++)
            sw += w[r * n + j];
        int64_t v = b[r] < -(int64_t)BIAS_MAX ? -(int64_t)BIAS_MAX
                    : b[r] > (int64_t)BIAS_MAX ? (int64_t)BIAS_MAX
                                               : b[r];
        f[r] = (int32_t)(v - (int64_t)z * sw);
    }
    return f;
}

/* hswish table: int8 pre-activation (pre) -> int8 output (out). */
static int8_t *hswish_lut(struct ofa_qp pre, struct ofa_qp out)
{
    int8_t *t = ofa_xmalloc(256, "hswish table");
    for (int q = -128; q < 128; q++) {
        double y = hswish_d((double)pre.scale * (q - pre.zp));
        double v = round(y / (double)out.scale) + out.zp;
        t[q + 128] = (int8_t)(v < -128.0 ? -128 : v > 127.0 ? 127 : v);
    }
    return t;
}

/* hsigmoid table: int8 gate -> Q8 in [0, 256]. */
static int16_t *hsigmoid_lut(struct ofa_qp g)
{
    int16_t *t = ofa_xmalloc(sizeof(int16_t) * 256, "hsigmoid table");
    for (int q = -128; q < 128; q++)
        t[q + 128] = (int16_t)lround(256.0 * hsigmoid_d((double)g.scale * (q - g.zp)));
    return t;
}

/* CONV/FC weights w [Cout][n] in the vector kernels' layout (w2 of such a
 * layer, qnet.inc): [ceil(Cout/16)][Kp/4][16][4], Kp = n rounded up to 4,
 * zeros beyond. */
static int8_t *pack_weights(const int8_t *w, long Cout, long n)
{
    const long K4 = (n + 3) / 4, NB = (Cout + 15) / 16;
    int8_t *p = ofa_xzalloc64((size_t)(NB * K4 * 64), "int8 packed weights");
    for (long co = 0; co < Cout; co++)
        for (long k = 0; k < n; k++)
            p[((co / 16 * K4 + k / 4) * 16 + co % 16) * 4 + k % 4] = w[co * n + k];
    return p;
}

/* DW weights w [K][K][C] in the vector kernels' layout (w2 of such a layer,
 * qnet.inc): tap quads, then int32 row sums. */
static int8_t *pack_dw_weights(const int8_t *w, int K, int C)
{
    const long KQ = (K + 3) / 4, C16 = (C + 15) & ~15, NCB = C16 / 16;
    const long nq = K * KQ * C16 * 4;
    int8_t *p = ofa_xzalloc64((size_t)(nq + 4 * K * C16), "int8 packed weights");
    int32_t *rowsum = (int32_t *)(void *)(p + nq);
    for (long ky = 0; ky < K; ky++)
        for (long kx = 0; kx < K; kx++)
            for (long c = 0; c < C; c++) {
                const int8_t v = w[(ky * K + kx) * C + c];
                p[((ky * KQ + kx / 4) * NCB + c / 16) * 64 + (c % 16) * 4 + kx % 4] = v;
                rowsum[ky * C16 + c] += v;
            }
    return p;
}

/* Buffer plan: tensors and per-layer temporaries get byte offsets in one
 * scratch buffer; two may share bytes only when their live intervals (the
 * layer steps from production to last use) do not overlap. SE and ADD write
 * in place over an input that dies with them. First fit, in production order,
 * at offsets of 16 bytes, or 64 in the runtime's layout (pad_rows): its
 * vector kernels load 64 bytes at a time from their temporaries (the
 * depthwise kernel's tap quads) and packed weights, and a load across two
 * cache lines costs two (with both, and the scratch, on 16-byte boundaries
 * the largest subnet's depthwise layers took 0.252 ms, 0.211 so; the whole
 * batch-1 pass 0.524 -> 0.479 ms on an Emerald Rapids core). */
struct block {
    long off, size;
    int start, end;
};

/* x rounded up to a multiple of a (a power of two). */
static long align_up(long x, long a)
{
    return (x + a - 1) & ~(a - 1);
}

/* The lowest offset, a multiple of align, where size bytes overlap no block
 * alive in steps start .. end. */
static long place(struct block *b, int nb, long size, int start, int end, long align)
{
    long off = 0;
    for (;;) {
        int moved = 0;
        for (int k = 0; k < nb; k++) {
            if (b[k].end < start || b[k].start > end || b[k].size == 0)
                continue;
            if (off < b[k].off + b[k].size && b[k].off < off + size) {
                off = align_up(b[k].off + b[k].size, align);
                moved = 1;
            }
        }
        if (!moved)
            return off;
    }
}

/* Row length of a CONV/FC weight row: K K Cin, padded when asked. */
static long row_len(const struct ofa_layer *L, int pad_rows)
{
    long n = L->kind == OFA_LAYER_FC ? L->Cin : (long)L->K * L->K * L->Cin;
    return pad_rows ? (n + ROW_ALIGN - 1) / ROW_ALIGN * ROW_ALIGN : n;
}

/* The plain kernels' temporaries; with pad_rows (the runtime's layout) at
 * least what the vector kernels need too. */
static long layer_tmp_bytes(const struct ofa_layer *L, int pad_rows)
{
    const long v = pad_rows ? qk_vec_tmp_bytes((int)L->kind, L->H, L->W, L->Cin, L->Wo, L->Cout,
                                               L->K, L->stride, L->pad)
                            : 0;
    long t;
    switch (L->kind) {
    case OFA_LAYER_CONV: /* accumulators, and the patch row */
    case OFA_LAYER_FC:
        t = 4L * L->Cout + 2L * row_len(L, pad_rows);
        return t > v ? t : v;
    case OFA_LAYER_DW:
        t = 4L * QK_DW_BLOCK * L->Cout;
        return t > v ? t : v;
    case OFA_LAYER_POOL:
        return 4L * L->Cout;
    case OFA_LAYER_SE:
        return 8L * L->Cin + L->Cin + L->R;
    default:
        return 0;
    }
}

static void plan(struct ofa_qprep *p, const struct ofa_model *m, int pad_rows)
{
    const int T = m->n_tensors, NL = m->n_layers;
    const long align = pad_rows ? 64 : 16;
    int *last = ofa_xmalloc(sizeof(int) * (size_t)T, "plan");
    for (int k = 0; k < T; k++)
        last[k] = k - 1; /* live at least while its layer writes it, even if never read */
    for (int i = 0; i < NL; i++) {
        last[m->layers[i].in] = i;
        if (m->layers[i].in2 >= 0)
            last[m->layers[i].in2] = i;
    }
    last[T - 1] = NL; /* the logits are read after the run */
    /* step of layer i is i + 1; the input is written at step 0 */
    struct block *b = ofa_xcalloc((size_t)(T + NL), sizeof *b, "plan");
    int nb = 0;
    long top = 0;
    b[nb] = (struct block){0, tsize(m, 0), 0, last[0] + 1};
    p->toff[0] = 0;
    nb++;
    for (int i = 0; i < NL; i++) {
        const struct ofa_layer *L = &m->layers[i];
        const int step = i + 1, o = L->out;
        const long size = tsize(m, o), tb = layer_tmp_bytes(L, pad_rows);
        int alias = -1;
        if (L->kind == OFA_LAYER_SE || L->kind == OFA_LAYER_ADD) {
            if (last[L->in] == i && L->in != 0 && tsize(m, L->in) == size)
                alias = L->in;
            else if (L->in2 > 0 && last[L->in2] == i && tsize(m, L->in2) == size)
                alias = L->in2;
        }
        long off = alias >= 0 ? p->toff[alias] : place(b, nb, size, step, last[o] + 1, align);
        b[nb++] = (struct block){off, size, step, last[o] + 1};
        long ts = tb ? place(b, nb, tb, step, step, align) : 0;
        if (tb)
            b[nb++] = (struct block){ts, tb, step, step};
        p->toff[o] = (int32_t)off;
        p->layers[i].tmp = (int32_t)ts;
        top = off + size > top ? off + size : top;
        top = ts + tb > top ? ts + tb : top;
    }
    top = top > tsize(m, 0) ? top : tsize(m, 0);
    OFA_ASSERT(top < INT32_MAX);
    p->scratch_bytes = align_up(top, align);
    free(b);
    free(last);
}

void ofa_quant_prepare(struct ofa_qprep *p, const struct ofa_model *m, int pad_rows)
{
    OFA_ASSERT(m->quantized && m->tq && m->n_layers >= 1);
    memset(p, 0, sizeof *p);
    const int NL = m->n_layers;
    p->n_layers = NL;
    p->n_tensors = m->n_tensors;
    p->layers = ofa_xcalloc((size_t)NL, sizeof *p->layers, "int8 layers");
    p->data = ofa_xcalloc((size_t)NL, sizeof *p->data, "int8 layers");
    p->toff = ofa_xcalloc((size_t)m->n_tensors, sizeof(int32_t), "tensor offsets");
    for (int k = 0; k < m->n_tensors; k++)
        OFA_ASSERT(m->tq[k].scale > 0.0f && isfinite(m->tq[k].scale) && m->tq[k].zp >= -128 &&
                   m->tq[k].zp <= 127);
    plan(p, m, pad_rows);
    for (int i = 0; i < NL; i++) {
        const struct ofa_layer *L = &m->layers[i];
        struct ofa_qlayer *q = &p->layers[i];
        struct ofa_qprep_data *d = &p->data[i];
        const struct ofa_qp ti = m->tq[L->in], to = m->tq[L->out];
        q->kind = (int32_t)L->kind;
        q->H = L->H, q->W = L->W, q->Cin = L->Cin;
        q->Ho = L->Ho, q->Wo = L->Wo, q->Cout = L->Cout;
        q->K = L->K, q->stride = L->stride, q->pad = L->pad, q->R = L->R;
        q->in = p->toff[L->in];
        q->in2 = L->in2 >= 0 ? p->toff[L->in2] : 0;
        q->out = p->toff[L->out];
        q->zi = ti.zp, q->zo = to.zp;
        q->lo = -128, q->hi = 127;
        const long HW = (long)L->H * L->W;
        long nw, nb;
        weight_sizes(L, 0, &nw, &nb);
        if (nw) {
            OFA_ASSERT(L->qw >= 0 && L->qw + nw <= m->n_qweights && L->qb >= 0 &&
                       L->qb + nb <= m->n_qbias && L->ws >= 0 && L->ws + nb <= m->n_wscale);
            OFA_ASSERT(nw / nb <= REDUCE_MAX || L->kind == OFA_LAYER_DW);
        }
        if (L->kind == OFA_LAYER_CONV || L->kind == OFA_LAYER_FC) {
            const long n = nw / nb, ld = row_len(L, pad_rows);
            d->w = ofa_xcalloc((size_t)(nb * ld), 1, "int8 weights");
            for (long r = 0; r < nb; r++)
                memcpy(d->w + r * ld, m->qweights + L->qw + r * n, (size_t)n);
            q->ldw = (int32_t)ld;
            if (pad_rows) /* the vector kernels' copy (qnet.inc, w2 of CONV/FC) */
                d->w2 = pack_weights(m->qweights + L->qw, nb, n);
        } else if (nw) {
            d->w = dup_bytes(m->qweights + L->qw, (size_t)nw, "int8 weights");
            if (pad_rows && L->kind == OFA_LAYER_DW) /* the vector kernels' (w2 of DW) */
                d->w2 = pack_dw_weights(d->w, L->K, L->Cout);
        }
        switch (L->kind) {
        case OFA_LAYER_CONV:
        case OFA_LAYER_DW:
        case OFA_LAYER_FC: {
            OFA_ASSERT(L->act == OFA_ACT_NONE || L->act == OFA_ACT_RELU ||
                       L->act == OFA_ACT_HSWISH);
            OFA_ASSERT(L->kind != OFA_LAYER_DW || (long)L->K * L->K <= REDUCE_MAX);
            const int hsw = L->act == OFA_ACT_HSWISH;
            const struct ofa_qp target = hsw ? L->pre : to;
            OFA_ASSERT(target.scale > 0.0f && isfinite(target.scale));
            q->zr = target.zp;
            if (L->act == OFA_ACT_RELU)
                q->lo = to.zp;
            if (L->kind == OFA_LAYER_FC)
                q->H = q->W = q->Ho = q->Wo = q->K = q->stride = 1, q->pad = 0;
            if (L->kind == OFA_LAYER_DW) /* sums x - zi itself */
                d->b = fold_bias(m->qbias + L->qb, NULL, L->Cout, 0, 0);
            else /* sums x + 128 */
                d->b = fold_bias(m->qbias + L->qb, d->w, L->Cout, q->ldw, ti.zp + 128);
            channel_mults(&d->m, &d->s, m->wscale + L->ws, ti.scale, target.scale, L->Cout);
            if (hsw)
                d->lut = hswish_lut(L->pre, to);
            break;
        }
        case OFA_LAYER_SE: {
            const int C = L->Cin, R = L->R;
            OFA_ASSERT(L->pool.scale > 0.0f && L->hid.scale > 0.0f && L->pre.scale > 0.0f);
            OFA_ASSERT(L->qw2 >= 0 && L->qw2 + (long)C * R <= m->n_qweights && L->qb2 >= 0 &&
                       L->qb2 + C <= m->n_qbias && L->ws2 >= 0 && L->ws2 + C <= m->n_wscale);
            OFA_ASSERT(HW <= REDUCE_MAX * 64);
            q->za = L->pool.zp, q->zb = L->hid.zp, q->zg = L->pre.zp;
            scalar_mult(&q->ma, &q->sa, (double)ti.scale / ((double)HW * L->pool.scale));
            d->b = fold_bias(m->qbias + L->qb, d->w, R, C, L->pool.zp);
            channel_mults(&d->m, &d->s, m->wscale + L->ws, L->pool.scale, L->hid.scale, R);
            d->w2 = dup_bytes(m->qweights + L->qw2, (size_t)C * R, "int8 weights");
            d->b2 = fold_bias(m->qbias + L->qb2, d->w2, C, R, L->hid.zp);
            channel_mults(&d->m2, &d->s2, m->wscale + L->ws2, L->hid.scale, L->pre.scale, C);
            d->glut = hsigmoid_lut(L->pre);
            scalar_mult(&q->mb, &q->sb, (double)ti.scale / (256.0 * to.scale));
            break;
        }
        case OFA_LAYER_ADD: {
            const struct ofa_qp t2 = m->tq[L->in2];
            q->zi2 = t2.zp;
            ofa_quant_add_mults(q, (double)ti.scale / to.scale, (double)t2.scale / to.scale);
            break;
        }
        case OFA_LAYER_POOL:
            OFA_ASSERT(HW <= REDUCE_MAX * 64);
            scalar_mult(&q->ma, &q->sa, (double)ti.scale / ((double)HW * to.scale));
            break;
        }
        q->w = d->w, q->w2 = d->w2, q->b = d->b, q->b2 = d->b2;
        q->m = d->m, q->m2 = d->m2, q->s = d->s, q->s2 = d->s2;
        q->lut = d->lut, q->glut = d->glut;
    }
    p->net.n_layers = NL;
    p->net.layers = p->layers;
    p->net.in_off = p->toff[0];
    p->net.out_off = p->toff[m->n_tensors - 1];
    p->net.n_out = m->num_classes;
    p->net.scratch_bytes = (int32_t)p->scratch_bytes;
    OFA_ASSERT(tsize(m, m->n_tensors - 1) == m->num_classes);
}

void ofa_quant_prepare_free(struct ofa_qprep *p)
{
    if (!p)
        return;
    for (int i = 0; p->data && i < p->n_layers; i++) {
        struct ofa_qprep_data *d = &p->data[i];
        free(d->w), free(d->w2), free(d->b), free(d->b2), free(d->m), free(d->m2);
        free(d->s), free(d->s2), free(d->lut), free(d->glut);
    }
    free(p->data);
    free(p->layers);
    free(p->toff);
    memset(p, 0, sizeof *p);
}

/* ---- instruction sets ------------------------------------------------------ */

struct isa {
    const char *name;
    ofa_qnet_fn fn;
};

static const struct isa isas[] = {
    {"portable", ofa_qnet_run_portable},
#ifdef OFA_HAVE_QNET_AVX2
    {"avx2", ofa_qnet_run_avx2},
#endif
#ifdef OFA_HAVE_QNET_AVX512
    {"avx512vnni", ofa_qnet_run_avx512vnni},
#endif
#ifdef OFA_HAVE_QNET_AVX512VBMI
    {"avx512vbmi", ofa_qnet_run_avx512vbmi},
#endif
};
enum { N_ISAS = sizeof isas / sizeof isas[0] };

static int cpu_has(const char *name)
{
    if (strcmp(name, "portable") == 0)
        return 1;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    if (strcmp(name, "avx2") == 0)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (strcmp(name, "avx512vnni") == 0 || strcmp(name, "avx512vbmi") == 0)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vnni") &&
               (strcmp(name, "avx512vbmi") != 0 || __builtin_cpu_supports("avx512vbmi"));
#endif
    return 0;
}

/* The best ISA this CPU runs, or the lower one OFA_QRUN_ISA names. */
static const struct isa *choose_isa(void)
{
    int best = 0;
    for (int k = 1; k < N_ISAS; k++)
        if (cpu_has(isas[k].name))
            best = k;
    const char *env = getenv("OFA_QRUN_ISA");
    if (env && *env) {
        for (int k = 0; k <= best; k++)
            if (strcmp(env, isas[k].name) == 0)
                return &isas[k];
        fprintf(stderr, "ofa: OFA_QRUN_ISA=%s is not available here; using %s\n", env,
                isas[best].name);
    }
    return &isas[best];
}

const char *ofa_qrun_isa(void)
{
    return choose_isa()->name;
}

/* ---- executor ---------------------------------------------------------------- */

struct ofa_qrun {
    struct ofa_qprep p;
    ofa_qnet_fn run;
    struct ofa_qp in_qp, out_qp;
    long in_size;
    int n_out;
    size_t stride;   /* scratch bytes per thread */
    char *scratch;   /* per-thread scratch, grown to the thread count */
    int nscratch;    /* threads it holds */
};

struct ofa_qrun *ofa_qrun_create(const struct ofa_model *m)
{
    struct ofa_qrun *q = ofa_xcalloc(1, sizeof *q, "int8 runtime");
    ofa_quant_prepare(&q->p, m, 1);
    q->run = choose_isa()->fn;
    q->in_qp = m->tq[0];
    q->out_qp = m->tq[m->n_tensors - 1];
    q->in_size = tsize(m, 0);
    q->n_out = m->num_classes;
    q->stride = (size_t)q->p.scratch_bytes; /* a multiple of 64 in this layout (plan) */
    q->scratch = ofa_xzalloc64(q->stride, "int8 scratch");
    q->nscratch = 1;
    return q;
}

void ofa_qrun_free(struct ofa_qrun *q)
{
    if (!q)
        return;
    ofa_quant_prepare_free(&q->p);
    free(q->scratch);
    free(q);
}

/* One image: quantize x into the input tensor, run, leave the int8 logits. */
static const int8_t *run_one(const struct ofa_qrun *q, void *scratch, const float *x)
{
    int8_t *in = (int8_t *)scratch + q->p.net.in_off;
    for (long i = 0; i < q->in_size; i++)
        in[i] = ofa_quant_value(x[i], q->in_qp);
    q->run(&q->p.net, scratch);
    return (const int8_t *)scratch + q->p.net.out_off;
}

void ofa_qrun_forward_q(struct ofa_qrun *q, int8_t *logits, const float *x)
{
    memcpy(logits, run_one(q, q->scratch, x), (size_t)q->n_out);
}

void ofa_qrun_time_layers(struct ofa_qrun *q, const float *x, int reps, double *ms)
{
    OFA_ASSERT(reps >= 1);
    run_one(q, q->scratch, x);
    /* Runs timed in groups of g, each group's mean one sample: a read of the
     * thread CPU clock is a system call (0.4 us in a KVM guest, as long as
     * the smallest layers), which timing each run alone added to every
     * layer (the smallest subnet's layers summed to 1.34x its whole pass). */
    const int g = reps / 5 < 1 ? 1 : reps / 5 > 16 ? 16 : reps / 5, n = reps / g;
    double *t = ofa_xmalloc((size_t)n * sizeof *t, "timings");
    /* A one-layer view of the prepared network: every offset is into the
     * same scratch, so the layer reads the tensors the whole pass left. */
    struct ofa_qnet one = q->p.net;
    one.n_layers = 1;
    for (int i = 0; i < q->p.n_layers; i++) {
        one.layers = &q->p.layers[i];
        q->run(&one, q->scratch);
        for (int r = 0; r < n; r++) {
            double t0 = ofa_thread_cpu_now();
            for (int k = 0; k < g; k++)
                q->run(&one, q->scratch);
            t[r] = 1e3 * (ofa_thread_cpu_now() - t0) / g;
        }
        ms[i] = ofa_median(t, n);
    }
    free(t);
}

void ofa_qrun_forward(struct ofa_qrun *q, float *logits, const float *x, int N)
{
    int nt = 1;
#ifdef _OPENMP
    nt = N > 1 ? omp_get_max_threads() : 1;
#endif
    if (nt > q->nscratch) {
        free(q->scratch);
        q->scratch = ofa_xzalloc64(ofa_mul_size(q->stride, (size_t)nt), "int8 scratch");
        q->nscratch = nt;
    }
#pragma omp parallel for schedule(static) if (nt > 1)
    for (int n = 0; n < N; n++) {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        const int8_t *o = run_one(q, q->scratch + (size_t)tid * q->stride,
                                  x + (long)n * q->in_size);
        for (int k = 0; k < q->n_out; k++)
            logits[(long)n * q->n_out + k] = q->out_qp.scale * (float)(o[k] - q->out_qp.zp);
    }
}
