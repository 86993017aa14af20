/* model_h5.c: model.h5, the self-describing exported model (layout:
 * docs/model-format.md).
 *
 * Saving validates the model (a file we write always loads), builds the
 * HDF5 file in memory and writes it atomically (temporary file, fsync,
 * rename), so a failure leaves the previous file intact and no partial one.
 * Loading trusts nothing: every dataset's type, rank, shape and storage is
 * checked before it is read (its size against the file's, so a crafted
 * header cannot make us allocate more than the file holds), and then the
 * layer graph: tensor indices, shapes, weight offsets, quantization
 * parameters. The caller's model changes only when everything has passed.
 */
#include <config.h>

#include "model.h"
#include "h5file.h"
#include "quant.h"

#include <errno.h>
#include <hdf5.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Bounds on what a model may hold: far beyond any real model, small enough
 * that no size computation overflows and no shape makes us allocate wildly. */
#define MAX_SPATIAL 65536
#define MAX_CHANNELS (1 << 20)
#define MAX_TENSOR_FLOATS (1L << 28)
#define MAX_LAYERS 100000
#define MAX_CLASSES 1000000
#define MAX_STRING_BYTES 4096u
/* Whole files are read into memory, checked, then parsed. */
#define MAX_FILE_BYTES ((size_t)1 << 32)

/* ---- Shared: error context and HDF5's error stack ------------------------------ */

struct ctx {
    const char *path;
    struct ofa_error *err;
    long long file_size; /* reading: bytes of the file */
};

/* err = path + message + the innermost HDF5 message when an HDF5 call has
 * just failed (ofa_h5_fail). Returns -1. */
static int fail(const struct ctx *c, const char *fmt, ...) OFA_PRINTF(2, 3);
static int fail(const struct ctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = ofa_h5_vfail(c->err, c->path, fmt, ap);
    va_end(ap);
    return rc;
}

/* A bad-input error (no HDF5 detail). */
static int bad(const struct ctx *c, const char *fmt, ...) OFA_PRINTF(2, 3);
static int bad(const struct ctx *c, const char *fmt, ...)
{
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ofa_error_set(c->err, c->path, 0, "%s", msg);
}

static const char *const kind_names[] = {"conv", "dw", "se", "add", "pool", "fc"};
static const char *const act_names[] = {"none", "relu", "hswish", "hsigmoid"};
#define N_KINDS 6
#define N_ACTS 4

/* An enumeration over H5T_STD_I32LE (values 0..n-1) with the given names. */
static hid_t enum_type(const char *const *names, int n)
{
    hid_t t = H5Tenum_create(H5T_STD_I32LE);
    if (t < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        /* the value in the base type's (little-endian) byte order */
        const unsigned char v[4] = {(unsigned char)i, 0, 0, 0};
        if (H5Tenum_insert(t, names[i], v) < 0) {
            H5Tclose(t);
            return -1;
        }
    }
    return t;
}

/* The same enumeration over the host's int32, for memory. */
static hid_t enum_mtype(const char *const *names, int n)
{
    hid_t t = H5Tenum_create(H5T_NATIVE_INT32);
    if (t < 0)
        return -1;
    for (int32_t i = 0; i < n; i++)
        if (H5Tenum_insert(t, names[i], &i) < 0) {
            H5Tclose(t);
            return -1;
        }
    return t;
}

/* One row of /layers, in memory. */
struct layer_rec {
    int32_t kind, in, in2, out, H, W, Cin, Ho, Wo, Cout, K, stride, pad, R, act;
    int64_t w, b, w2, b2, qw, qw2, qb, qb2, ws, ws2;
    float pre_scale;
    int32_t pre_zp;
    float pool_scale;
    int32_t pool_zp;
    float hid_scale;
    int32_t hid_zp;
};

enum ftype { F_KIND, F_ACT, F_I32, F_I64, F_F32 };

static const struct field {
    const char *name;
    enum ftype t;
    size_t off;
} fields[] = {
#define I32(x) {#x, F_I32, offsetof(struct layer_rec, x)}
#define I64(x) {#x, F_I64, offsetof(struct layer_rec, x)}
#define F32(x) {#x, F_F32, offsetof(struct layer_rec, x)}
    {"kind", F_KIND, offsetof(struct layer_rec, kind)},
    I32(in), I32(in2), I32(out), I32(H), I32(W), I32(Cin), I32(Ho), I32(Wo), I32(Cout), I32(K),
    I32(stride), I32(pad), I32(R),
    {"act", F_ACT, offsetof(struct layer_rec, act)},
    I64(w), I64(b), I64(w2), I64(b2), I64(qw), I64(qw2), I64(qb), I64(qb2), I64(ws), I64(ws2),
    F32(pre_scale), I32(pre_zp), F32(pool_scale), I32(pool_zp), F32(hid_scale), I32(hid_zp),
#undef I32
#undef I64
#undef F32
};
#define N_FIELDS ((int)(sizeof fields / sizeof fields[0]))

/* The compound type of /layers: file = 1 (packed, little-endian standard
 * types, named enums), memory = 0 (struct layer_rec). */
static hid_t layer_type(int file)
{
    size_t size = 0;
    if (file)
        for (int i = 0; i < N_FIELDS; i++)
            size += fields[i].t == F_I64 ? 8 : 4;
    else
        size = sizeof(struct layer_rec);
    hid_t t = H5Tcreate(H5T_COMPOUND, size);
    hid_t kt = file ? enum_type(kind_names, N_KINDS) : enum_mtype(kind_names, N_KINDS);
    hid_t at = file ? enum_type(act_names, N_ACTS) : enum_mtype(act_names, N_ACTS);
    int ok = t >= 0 && kt >= 0 && at >= 0;
    size_t off = 0;
    for (int i = 0; ok && i < N_FIELDS; i++) {
        hid_t ft;
        switch (fields[i].t) {
        case F_KIND: ft = kt; break;
        case F_ACT: ft = at; break;
        case F_I32: ft = file ? H5T_STD_I32LE : H5T_NATIVE_INT32; break;
        case F_I64: ft = file ? H5T_STD_I64LE : H5T_NATIVE_INT64; break;
        default: ft = file ? H5T_IEEE_F32LE : H5T_NATIVE_FLOAT; break;
        }
        ok = H5Tinsert(t, fields[i].name, file ? off : fields[i].off, ft) >= 0;
        off += fields[i].t == F_I64 ? 8 : 4;
    }
    ofa_h5_close_id(kt);
    ofa_h5_close_id(at);
    if (!ok) {
        ofa_h5_close_id(t);
        return -1;
    }
    return t;
}

static void to_rec(struct layer_rec *r, const struct ofa_layer *L)
{
    memset(r, 0, sizeof *r);
    r->kind = (int32_t)L->kind, r->in = L->in, r->in2 = L->in2, r->out = L->out;
    r->H = L->H, r->W = L->W, r->Cin = L->Cin, r->Ho = L->Ho, r->Wo = L->Wo, r->Cout = L->Cout;
    r->K = L->K, r->stride = L->stride, r->pad = L->pad, r->R = L->R, r->act = (int32_t)L->act;
    r->w = L->w, r->b = L->b, r->w2 = L->w2, r->b2 = L->b2;
    r->qw = L->qw, r->qw2 = L->qw2, r->qb = L->qb, r->qb2 = L->qb2, r->ws = L->ws, r->ws2 = L->ws2;
    r->pre_scale = L->pre.scale, r->pre_zp = L->pre.zp;
    r->pool_scale = L->pool.scale, r->pool_zp = L->pool.zp;
    r->hid_scale = L->hid.scale, r->hid_zp = L->hid.zp;
}

/* kind and act are checked to be in range by the reader before this. */
static void from_rec(struct ofa_layer *L, const struct layer_rec *r)
{
    memset(L, 0, sizeof *L);
    L->kind = (enum ofa_layer_kind)r->kind, L->in = r->in, L->in2 = r->in2, L->out = r->out;
    L->H = r->H, L->W = r->W, L->Cin = r->Cin, L->Ho = r->Ho, L->Wo = r->Wo, L->Cout = r->Cout;
    L->K = r->K, L->stride = r->stride, L->pad = r->pad, L->R = r->R;
    L->act = (enum ofa_act)r->act;
    L->w = (long)r->w, L->b = (long)r->b, L->w2 = (long)r->w2, L->b2 = (long)r->b2;
    L->qw = (long)r->qw, L->qw2 = (long)r->qw2, L->qb = (long)r->qb, L->qb2 = (long)r->qb2;
    L->ws = (long)r->ws, L->ws2 = (long)r->ws2;
    L->pre = (struct ofa_qp){r->pre_scale, r->pre_zp};
    L->pool = (struct ofa_qp){r->pool_scale, r->pool_zp};
    L->hid = (struct ofa_qp){r->hid_scale, r->hid_zp};
    L->part = -1;
}

/* ---- Validation (shared by save and load) ------------------------------------------ */

/* [off, off + n) lies within [0, total). */
static int in_range(int64_t off, int64_t n, int64_t total)
{
    return off >= 0 && n >= 0 && off <= total - n;
}

static int check_qp(const struct ctx *c, int i, const char *what, struct ofa_qp q, int needed)
{
    if (!isfinite(q.scale) || q.scale < 0 || (needed && !(q.scale > 0)))
        return bad(c, "layer %d: %s scale %g is not %s", i, what, (double)q.scale,
                   needed ? "a positive finite number" : "finite and >= 0");
    if (q.zp < -128 || q.zp > 127)
        return bad(c, "layer %d: %s zero point %d is outside [-128, 127]", i, what, (int)q.zp);
    return 0;
}

/* One weight array of a layer: offset `off` of n elements in an array of
 * `total` (absent = -1 exactly when n == 0). */
static int check_off(const struct ctx *c, int i, const char *kind, const char *field, long off,
                     int64_t n, int64_t total, const char *array)
{
    if (n == 0) {
        if (off != -1)
            return bad(c, "layer %d (%s): %s is %ld, expected -1 (absent)", i, kind, field, off);
        return 0;
    }
    if (!in_range(off, n, total))
        return bad(c, "layer %d (%s): %s = %ld with %lld elements is out of range of %s [%lld]",
                   i, kind, field, off, (long long)n, array, (long long)total);
    return 0;
}

static int same_shape(const struct ofa_tshape *t, int H, int W, int C)
{
    return t->H == H && t->W == W && t->C == C;
}

static int check_layer(const struct ctx *c, const struct ofa_model *m, int i)
{
    const struct ofa_layer *L = &m->layers[i];
    if ((int)L->kind < 0 || (int)L->kind >= N_KINDS)
        return bad(c, "layer %d: unknown kind %d", i, (int)L->kind);
    const char *kn = kind_names[L->kind];
    if ((int)L->act < 0 || (int)L->act >= N_ACTS)
        return bad(c, "layer %d (%s): unknown activation %d", i, kn, (int)L->act);
    if (L->out != i + 1)
        return bad(c, "layer %d (%s): writes tensor %d, expected %d (layer i writes tensor i+1)",
                   i, kn, L->out, i + 1);
    if (L->in < 0 || L->in > i)
        return bad(c, "layer %d (%s): input tensor %d is out of range [0, %d]", i, kn, L->in, i);
    if (L->kind == OFA_LAYER_ADD ? (L->in2 < 0 || L->in2 > i) : L->in2 != -1)
        return bad(c, "layer %d (%s): second input tensor %d is %s", i, kn, L->in2,
                   L->kind == OFA_LAYER_ADD ? "out of range" : "not -1");
    const struct ofa_tshape *ti = &m->tensors[L->in], *to = &m->tensors[L->out];
    if (!same_shape(ti, L->H, L->W, L->Cin))
        return bad(c, "layer %d (%s): input shape [%d,%d,%d] differs from tensor %d [%d,%d,%d]", i,
                   kn, L->H, L->W, L->Cin, L->in, ti->H, ti->W, ti->C);
    if (!same_shape(to, L->Ho, L->Wo, L->Cout))
        return bad(c, "layer %d (%s): output shape [%d,%d,%d] differs from tensor %d [%d,%d,%d]",
                   i, kn, L->Ho, L->Wo, L->Cout, L->out, to->H, to->W, to->C);
    const int conv = L->kind == OFA_LAYER_CONV, dw = L->kind == OFA_LAYER_DW;
    if (!conv && !dw && (L->K != 1 || L->stride != 1 || L->pad != 0))
        return bad(c, "layer %d (%s): K/stride/pad are %d/%d/%d, expected 1/1/0", i, kn, L->K,
                   L->stride, L->pad);
    if (L->kind != OFA_LAYER_SE && L->R != 0)
        return bad(c, "layer %d (%s): R is %d, expected 0", i, kn, L->R);
    if (!conv && !dw && L->kind != OFA_LAYER_FC && L->act != OFA_ACT_NONE)
        return bad(c, "layer %d (%s): has an activation (%s)", i, kn, act_names[L->act]);
    const int64_t C = L->Cin, Co = L->Cout, K = L->K;
    int64_t nw = 0, nb = 0, nw2 = 0, nb2 = 0;
    switch (L->kind) {
    case OFA_LAYER_CONV:
        if (K < 1 || K > 15 || K % 2 == 0 || L->stride < 1 || L->stride > 8 ||
            (L->pad != 0 && L->pad != K / 2))
            return bad(c, "layer %d (conv): K %d, stride %d, pad %d are not supported (odd K "
                       "<= 15, stride 1-8, pad 0 or K/2)", i, L->K, L->stride, L->pad);
        if (L->H + 2 * L->pad < K || L->W + 2 * L->pad < K ||
            L->Ho != ofa_conv_out_size(L->H, L->K, L->stride, L->pad) ||
            L->Wo != ofa_conv_out_size(L->W, L->K, L->stride, L->pad))
            return bad(c, "layer %d (conv): output %dx%d does not follow from input %dx%d, K %d, "
                       "stride %d, pad %d", i, L->Ho, L->Wo, L->H, L->W, L->K, L->stride, L->pad);
        nw = Co * K * K * C, nb = Co;
        break;
    case OFA_LAYER_DW:
        if ((K != 3 && K != 5 && K != 7) || (L->stride != 1 && L->stride != 2) ||
            L->pad != K / 2)
            return bad(c, "layer %d (dw): K %d, stride %d, pad %d are not supported (K 3/5/7, "
                       "stride 1/2, pad K/2)", i, L->K, L->stride, L->pad);
        if (C != Co || L->Ho != (L->H - 1) / L->stride + 1 || L->Wo != (L->W - 1) / L->stride + 1)
            return bad(c, "layer %d (dw): output [%d,%d,%d] does not follow from input [%d,%d,%d] "
                       "with stride %d", i, L->Ho, L->Wo, L->Cout, L->H, L->W, L->Cin, L->stride);
        nw = K * K * C, nb = C;
        break;
    case OFA_LAYER_SE:
        if (C != Co || L->H != L->Ho || L->W != L->Wo)
            return bad(c, "layer %d (se): output shape differs from its input", i);
        if (L->R < 1 || (int64_t)L->R > (int64_t)L->H * L->W * C)
            return bad(c, "layer %d (se): R %d is not in [1, H*W*C]", i, L->R);
        nw = (int64_t)L->R * C, nb = L->R, nw2 = C * L->R, nb2 = C;
        break;
    case OFA_LAYER_ADD: {
        const struct ofa_tshape *t2 = &m->tensors[L->in2];
        if (!same_shape(t2, L->H, L->W, L->Cin) || !same_shape(to, L->H, L->W, L->Cin))
            return bad(c, "layer %d (add): tensors %d [%d,%d,%d], %d [%d,%d,%d] and output "
                       "[%d,%d,%d] differ", i, L->in, ti->H, ti->W, ti->C, L->in2, t2->H, t2->W,
                       t2->C, L->Ho, L->Wo, L->Cout);
        break;
    }
    case OFA_LAYER_POOL:
        if (L->Ho != 1 || L->Wo != 1 || Co != C)
            return bad(c, "layer %d (pool): output [%d,%d,%d] is not [1,1,%d]", i, L->Ho, L->Wo,
                       L->Cout, L->Cin);
        break;
    case OFA_LAYER_FC:
        if (L->H != 1 || L->W != 1 || L->Ho != 1 || L->Wo != 1)
            return bad(c, "layer %d (fc): input and output must be 1x1", i);
        nw = Co * C, nb = Co;
        break;
    }
    const int64_t nwt = m->n_weights;
    if (check_off(c, i, kn, "w", L->w, nw, nwt, "weights") ||
        check_off(c, i, kn, "b", L->b, nb, nwt, "weights") ||
        check_off(c, i, kn, "w2", L->w2, nw2, nwt, "weights") ||
        check_off(c, i, kn, "b2", L->b2, nb2, nwt, "weights"))
        return -1;
    /* int8: the same arrays, one scale per output channel of each weight */
    const int q = m->quantized != 0;
    const int64_t nch = L->kind == OFA_LAYER_SE ? L->R : nb;
    if (check_off(c, i, kn, "qw", L->qw, q ? nw : 0, m->n_qweights, "qweights") ||
        check_off(c, i, kn, "qw2", L->qw2, q ? nw2 : 0, m->n_qweights, "qweights") ||
        check_off(c, i, kn, "qb", L->qb, q ? nb : 0, m->n_qbias, "qbias") ||
        check_off(c, i, kn, "qb2", L->qb2, q ? nb2 : 0, m->n_qbias, "qbias") ||
        check_off(c, i, kn, "ws", L->ws, q ? nch : 0, m->n_wscale, "wscale") ||
        check_off(c, i, kn, "ws2", L->ws2, q ? nb2 : 0, m->n_wscale, "wscale"))
        return -1;
    const int se = L->kind == OFA_LAYER_SE;
    const int need_pre = q && (se || L->act == OFA_ACT_HSWISH);
    if (check_qp(c, i, "pre", L->pre, need_pre) || check_qp(c, i, "pool", L->pool, q && se) ||
        check_qp(c, i, "hid", L->hid, q && se))
        return -1;
    if (!q)
        return 0;
    /* what the int8 runtime can run (quant.h) */
    if ((conv || dw || L->kind == OFA_LAYER_FC) && L->act != OFA_ACT_NONE &&
        L->act != OFA_ACT_RELU && L->act != OFA_ACT_HSWISH)
        return bad(c, "layer %d (%s): activation %s has no int8 kernel (none, relu or hswish)", i,
                   kn, act_names[L->act]);
    if (nw && !dw && nw / nb > OFA_QUANT_REDUCE_MAX)
        return bad(c, "layer %d (%s): a reduction of %lld terms exceeds the int8 runtime's %ld", i,
                   kn, (long long)(nw / nb), OFA_QUANT_REDUCE_MAX);
    if ((se || L->kind == OFA_LAYER_POOL) &&
        (int64_t)L->H * L->W > 64 * OFA_QUANT_REDUCE_MAX)
        return bad(c, "layer %d (%s): an average over %dx%d pixels exceeds the int8 runtime's %ld",
                   i, kn, L->H, L->W, 64 * OFA_QUANT_REDUCE_MAX);
    return 0;
}

static int check_model(const struct ctx *c, const struct ofa_model *m)
{
    if (!memchr(m->subnet, '\0', sizeof m->subnet) || !m->subnet[0])
        return bad(c, "the subnet text is empty or not terminated");
    if (!memchr(m->device, '\0', sizeof m->device))
        return bad(c, "the device name is not terminated");
    if (m->in_channels < 1 || m->in_channels > MAX_CHANNELS || m->res < 1 ||
        m->res > MAX_SPATIAL || m->num_classes < 1 || m->num_classes > MAX_CLASSES)
        return bad(c, "in_channels %d, res %d or num_classes %d is out of range", m->in_channels,
                   m->res, m->num_classes);
    for (int k = 0; k < 3; k++)
        if (!isfinite(m->norm_mean[k]) || !isfinite(m->norm_std[k]) || !(m->norm_std[k] > 0))
            return bad(c, "norm_mean[%d] = %g, norm_std[%d] = %g: need finite values, std > 0", k,
                       (double)m->norm_mean[k], k, (double)m->norm_std[k]);
    if (m->n_layers < 1 || m->n_layers > MAX_LAYERS || !m->layers)
        return bad(c, "the model has %d layers", m->n_layers);
    if (m->n_tensors != m->n_layers + 1 || !m->tensors)
        return bad(c, "the model has %d tensors for %d layers, expected %d", m->n_tensors,
                   m->n_layers, m->n_layers + 1);
    for (int t = 0; t < m->n_tensors; t++) {
        const struct ofa_tshape *s = &m->tensors[t];
        if (s->H < 1 || s->H > MAX_SPATIAL || s->W < 1 || s->W > MAX_SPATIAL || s->C < 1 ||
            s->C > MAX_CHANNELS || (long)s->H * s->W * (long)s->C > MAX_TENSOR_FLOATS)
            return bad(c, "tensor %d has shape [%d,%d,%d], out of range", t, s->H, s->W, s->C);
    }
    if (!same_shape(&m->tensors[0], m->res, m->res, m->in_channels))
        return bad(c, "tensor 0 has shape [%d,%d,%d], expected the input [%d,%d,%d]",
                   m->tensors[0].H, m->tensors[0].W, m->tensors[0].C, m->res, m->res,
                   m->in_channels);
    if (!same_shape(&m->tensors[m->n_tensors - 1], 1, 1, m->num_classes))
        return bad(c, "the last tensor is not the logits [1,1,%d]", m->num_classes);
    if (m->n_weights < 1 || !m->weights)
        return bad(c, "the model has no weights");
    for (long k = 0; k < m->n_weights; k++)
        if (!isfinite(m->weights[k]))
            return bad(c, "weights[%ld] is %g", k, (double)m->weights[k]);
    if (m->quantized != 0 && m->quantized != 1)
        return bad(c, "quantized is %d, expected 0 or 1", m->quantized);
    if (m->quantized) {
        if (!m->tq || m->n_qweights < 1 || !m->qweights || m->n_qbias < 1 || !m->qbias ||
            m->n_wscale < 1 || !m->wscale)
            return bad(c, "the model is quantized but lacks its int8 arrays");
        for (int t = 0; t < m->n_tensors; t++)
            if (!isfinite(m->tq[t].scale) || !(m->tq[t].scale > 0) || m->tq[t].zp < -128 ||
                m->tq[t].zp > 127)
                return bad(c, "tensor %d has quantization scale %g, zero point %d", t,
                           (double)m->tq[t].scale, (int)m->tq[t].zp);
        for (long k = 0; k < m->n_qweights; k++)
            if (m->qweights[k] < -127)
                return bad(c, "qweights[%ld] is -128 (symmetric weights are in [-127, 127])", k);
        for (long k = 0; k < m->n_wscale; k++)
            if (!isfinite(m->wscale[k]) || m->wscale[k] < 0)
                return bad(c, "wscale[%ld] is %g", k, (double)m->wscale[k]);
    } else if (m->n_qweights || m->n_qbias || m->n_wscale) {
        return bad(c, "the model is not quantized but has int8 arrays");
    }
    for (int i = 0; i < m->n_layers; i++)
        if (check_layer(c, m, i) != 0)
            return -1;
    if (m->class_names)
        for (int k = 0; k < m->num_classes; k++)
            if (!memchr(m->class_names[k], '\0', OFA_CLASS_NAME_MAX))
                return bad(c, "class name %d is not terminated", k);
    return 0;
}

/* ---- Writing ------------------------------------------------------------------------ */

struct writer {
    struct ctx c;
    hid_t gcpl, dcpl;
    const struct ofa_model *m;
};

static hid_t str_type(size_t n)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0)
        return -1;
    if (H5Tset_size(t, n) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

static int put_attr(const struct writer *w, hid_t obj, const char *name, hid_t ftype,
                    hid_t mtype, int n, const void *val)
{
    hsize_t d = (hsize_t)n;
    hid_t sp = n == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &d, NULL);
    if (sp < 0)
        return fail(&w->c, "H5Screate for attribute %s failed", name);
    hid_t a = H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) {
        fail(&w->c, "H5Acreate2 of attribute %s failed", name);
        H5Sclose(sp);
        return -1;
    }
    int rc = 0;
    if (H5Awrite(a, mtype, val) < 0)
        rc = fail(&w->c, "H5Awrite of attribute %s failed", name);
    if (H5Aclose(a) < 0 && rc == 0)
        rc = fail(&w->c, "H5Aclose of attribute %s failed", name);
    H5Sclose(sp);
    return rc;
}

static int put_str(const struct writer *w, hid_t obj, const char *name, const char *val)
{
    hid_t t = str_type(strlen(val) + 1);
    if (t < 0)
        return fail(&w->c, "cannot make a string type for attribute %s", name);
    int rc = put_attr(w, obj, name, t, t, 0, val);
    H5Tclose(t);
    return rc;
}

static int put_i32(const struct writer *w, hid_t obj, const char *name, int v)
{
    return put_attr(w, obj, name, H5T_STD_I32LE, H5T_NATIVE_INT, 0, &v);
}

static int put_dataset(const struct writer *w, hid_t loc, const char *name, hid_t ftype,
                       hid_t mtype, int rank, const hsize_t *dims, const void *buf)
{
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    if (sp < 0)
        return fail(&w->c, "H5Screate for %s failed", name);
    hid_t d = H5Dcreate2(loc, name, ftype, sp, H5P_DEFAULT, w->dcpl, H5P_DEFAULT);
    if (d < 0) {
        fail(&w->c, "H5Dcreate2 of %s failed", name);
        H5Sclose(sp);
        return -1;
    }
    int rc = 0;
    if (H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        rc = fail(&w->c, "H5Dwrite of %s failed", name);
    if (H5Dclose(d) < 0 && rc == 0)
        rc = fail(&w->c, "H5Dclose of %s failed", name);
    H5Sclose(sp);
    return rc;
}

static int write_layers(const struct writer *w, hid_t f, const struct ofa_model *m)
{
    struct layer_rec *r = ofa_xcalloc((size_t)m->n_layers, sizeof *r, "layer table");
    for (int i = 0; i < m->n_layers; i++)
        to_rec(&r[i], &m->layers[i]);
    hid_t ft = layer_type(1), mt = layer_type(0);
    int rc;
    if (ft < 0 || mt < 0) {
        rc = fail(&w->c, "cannot make the compound type of /layers");
    } else {
        hsize_t n = (hsize_t)m->n_layers;
        rc = put_dataset(w, f, "layers", ft, mt, 1, &n, r);
    }
    ofa_h5_close_id(ft);
    ofa_h5_close_id(mt);
    free(r);
    return rc;
}

static int write_class_names(const struct writer *w, hid_t f, const struct ofa_model *m)
{
    const size_t nc = (size_t)m->num_classes;
    char (*names)[OFA_CLASS_NAME_MAX] = ofa_xcalloc(nc, OFA_CLASS_NAME_MAX, "class names");
    for (size_t k = 0; k < nc; k++) {
        if (m->class_names)
            memcpy(names[k], m->class_names[k], OFA_CLASS_NAME_MAX);
        else
            snprintf(names[k], OFA_CLASS_NAME_MAX, "%zu", k);
    }
    hid_t t = str_type(OFA_CLASS_NAME_MAX);
    int rc;
    if (t < 0) {
        rc = fail(&w->c, "cannot make the string type of /class_names");
    } else {
        hsize_t n = nc;
        rc = put_dataset(w, f, "class_names", t, t, 1, &n, names);
        H5Tclose(t);
    }
    free(names);
    return rc;
}

static int write_quant(const struct writer *w, hid_t f, const struct ofa_model *m)
{
    hid_t g = H5Gcreate2(f, "quant", H5P_DEFAULT, w->gcpl, H5P_DEFAULT);
    if (g < 0)
        return fail(&w->c, "H5Gcreate2 of /quant failed");
    const size_t nt = (size_t)m->n_tensors;
    float *scale = ofa_xmalloc(nt * sizeof *scale, "tensor scales");
    int32_t *zp = ofa_xmalloc(nt * sizeof *zp, "tensor zero points");
    for (size_t t = 0; t < nt; t++)
        scale[t] = m->tq[t].scale, zp[t] = m->tq[t].zp;
    hsize_t dt = nt, dq = (hsize_t)m->n_qweights, db = (hsize_t)m->n_qbias,
            ds = (hsize_t)m->n_wscale;
    int rc = put_dataset(w, g, "tensor_scale", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, &dt, scale) ||
             put_dataset(w, g, "tensor_zp", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &dt, zp) ||
             put_dataset(w, g, "qweights", H5T_STD_I8LE, H5T_NATIVE_INT8, 1, &dq, m->qweights) ||
             put_dataset(w, g, "qbias", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &db, m->qbias) ||
             put_dataset(w, g, "wscale", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, &ds, m->wscale)
                 ? -1 : 0;
    free(scale);
    free(zp);
    if (H5Gclose(g) < 0 && rc == 0)
        rc = fail(&w->c, "H5Gclose of /quant failed");
    return rc;
}

static int build(hid_t f, const void *arg)
{
    const struct writer *w = arg;
    const struct ofa_model *m = w->m;
    const uint64_t fp = m->supernet_fingerprint;
    if (put_str(w, f, "format", OFA_MODEL_FORMAT) ||
        put_i32(w, f, "format_version", OFA_MODEL_VERSION) ||
        put_str(w, f, "created_by", PACKAGE_NAME " " PACKAGE_VERSION) ||
        put_str(w, f, "subnet", m->subnet) || put_str(w, f, "device", m->device) ||
        put_attr(w, f, "supernet_fingerprint", H5T_STD_U64LE, H5T_NATIVE_UINT64, 0, &fp) ||
        put_i32(w, f, "in_channels", m->in_channels) || put_i32(w, f, "res", m->res) ||
        put_i32(w, f, "num_classes", m->num_classes) ||
        put_attr(w, f, "norm_mean", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, m->norm_mean) ||
        put_attr(w, f, "norm_std", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, m->norm_std) ||
        put_i32(w, f, "quantized", m->quantized))
        return -1;
    int32_t *shapes = ofa_xmalloc((size_t)m->n_tensors * 3 * sizeof *shapes, "tensor shapes");
    for (int t = 0; t < m->n_tensors; t++) {
        shapes[3 * t] = m->tensors[t].H;
        shapes[3 * t + 1] = m->tensors[t].W;
        shapes[3 * t + 2] = m->tensors[t].C;
    }
    hsize_t ds[2] = {(hsize_t)m->n_tensors, 3}, dw = (hsize_t)m->n_weights;
    int rc = put_dataset(w, f, "tensors", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, ds, shapes);
    free(shapes);
    if (rc || write_layers(w, f, m) ||
        put_dataset(w, f, "weights", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, &dw, m->weights) ||
        write_class_names(w, f, m) || (m->quantized && write_quant(w, f, m)))
        return -1;
    return 0;
}

int ofa_model_save(const char *path, const struct ofa_model *m, struct ofa_error *err)
{
    OFA_ASSERT(path && m);
    struct ctx vc = {path, err, 0};
    struct ofa_error verr;
    struct ctx vc2 = {path, &verr, 0};
    if (check_model(&vc2, m) != 0)
        return bad(&vc, "refusing to save an invalid model: %s", verr.msg);

    struct ofa_h5quiet q;
    ofa_h5_quiet_on(&q);
    struct writer w = {{path, err, 0}, -1, -1, m};
    int rc = -1;
    const size_t step = ofa_mul_size((size_t)m->n_weights, sizeof(float)) +
                        (size_t)m->n_qweights + 8 * (size_t)m->n_qbias + (1u << 16);
    w.gcpl = H5Pcreate(H5P_GROUP_CREATE);
    w.dcpl = H5Pcreate(H5P_DATASET_CREATE);
    /* No time stamps: the same model gives the same bytes. */
    if (w.gcpl < 0 || w.dcpl < 0 || H5Pset_obj_track_times(w.gcpl, 0) < 0 ||
        H5Pset_obj_track_times(w.dcpl, 0) < 0 ||
        H5Pset_fill_time(w.dcpl, H5D_FILL_TIME_NEVER) < 0)
        fail(&w.c, "cannot set up HDF5 property lists");
    else
        rc = ofa_h5_save(path, OFA_H5_MAGIC, step, build, &w, err);
    ofa_h5_close_id(w.gcpl);
    ofa_h5_close_id(w.dcpl);
    ofa_h5_quiet_off(&q);
    return rc;
}

/* ---- Reading ---------------------------------------------------------------------------- */

/* 1 when the absolute path obj exists with hard links all the way, 0 when
 * missing (err not set), -1 on error (err set). */
static int hard_path(const struct ctx *c, hid_t f, const char *obj)
{
    char part[128];
    size_t len = strlen(obj);
    OFA_ASSERT(len < sizeof part && obj[0] == '/');
    for (const char *s = strchr(obj + 1, '/');; s = strchr(s + 1, '/')) {
        size_t n = s ? (size_t)(s - obj) : len;
        memcpy(part, obj, n);
        part[n] = '\0';
        htri_t ex = H5Lexists(f, part, H5P_DEFAULT);
        if (ex == 0)
            return 0;
        if (ex < 0)
            return bad(c, "%s is not a group, so %s is missing", part, obj);
        H5L_info_t li;
        if (H5Lget_info(f, part, &li, H5P_DEFAULT) < 0)
            return fail(c, "H5Lget_info of %s failed", part);
        if (li.type != H5L_TYPE_HARD)
            return bad(c, "%s is a soft or external link", part);
        if (!s)
            return 1;
    }
}

static void describe_type(hid_t t, char *buf, size_t n)
{
    H5T_class_t cls = H5Tget_class(t);
    size_t bits = H5Tget_size(t) * 8;
    const char *what = cls == H5T_INTEGER ? "integer" : cls == H5T_FLOAT ? "float" :
                       cls == H5T_STRING ? "string" : cls == H5T_COMPOUND ? "compound" :
                       cls == H5T_ENUM ? "enum" : cls == H5T_ARRAY ? "array" :
                       cls == H5T_VLEN ? "variable-length" : "other";
    snprintf(buf, n, "%zu-bit %s", bits, what);
}

enum dkind { D_F32, D_I32, D_I8, D_LAYERS, D_STR };

/* The file's type of a dataset is what we write (class and size; either
 * byte order). For /layers: a compound with exactly our fields, each of the
 * class we write, kind and act being our enumerations. */
static int check_type(const struct ctx *c, const char *name, hid_t ty, enum dkind k)
{
    char got[64];
    describe_type(ty, got, sizeof got);
    const H5T_class_t cls = H5Tget_class(ty);
    const size_t sz = H5Tget_size(ty);
    switch (k) {
    case D_F32:
        if (cls != H5T_FLOAT || sz != 4)
            return bad(c, "%s has type %s, expected 32-bit float", name, got);
        return 0;
    case D_I32:
    case D_I8:
        if (cls != H5T_INTEGER || sz != (k == D_I8 ? 1u : 4u) || H5Tget_sign(ty) != H5T_SGN_2)
            return bad(c, "%s has type %s, expected signed %d-bit integer", name, got,
                       k == D_I8 ? 8 : 32);
        return 0;
    case D_STR:
        if (cls != H5T_STRING)
            return bad(c, "%s has type %s, expected strings", name, got);
        return 0;
    case D_LAYERS:
        break;
    }
    if (cls != H5T_COMPOUND)
        return bad(c, "%s has type %s, expected the layer compound", name, got);
    int nm = H5Tget_nmembers(ty);
    if (nm != N_FIELDS)
        return bad(c, "%s has %d fields, expected %d", name, nm, N_FIELDS);
    hid_t kt = enum_type(kind_names, N_KINDS), at = enum_type(act_names, N_ACTS);
    int rc = kt < 0 || at < 0 ? fail(c, "cannot make the enumeration types") : 0;
    for (int i = 0; i < N_FIELDS && rc == 0; i++) {
        const struct field *fd = &fields[i];
        int idx = H5Tget_member_index(ty, fd->name);
        if (idx < 0) {
            rc = bad(c, "%s has no field \"%s\"", name, fd->name);
            break;
        }
        hid_t mt = H5Tget_member_type(ty, (unsigned)idx);
        if (mt < 0) {
            rc = fail(c, "H5Tget_member_type of %s.%s failed", name, fd->name);
            break;
        }
        const H5T_class_t mc = H5Tget_class(mt);
        const size_t ms = H5Tget_size(mt);
        int ok;
        switch (fd->t) {
        case F_KIND: ok = H5Tequal(mt, kt) > 0; break;
        case F_ACT: ok = H5Tequal(mt, at) > 0; break;
        case F_I32: ok = mc == H5T_INTEGER && ms == 4 && H5Tget_sign(mt) == H5T_SGN_2; break;
        case F_I64: ok = mc == H5T_INTEGER && ms == 8 && H5Tget_sign(mt) == H5T_SGN_2; break;
        default: ok = mc == H5T_FLOAT && ms == 4; break;
        }
        if (!ok) {
            describe_type(mt, got, sizeof got);
            static const char *const want[] = {"the layer-kind enumeration",
                                               "the activation enumeration",
                                               "signed 32-bit integer", "signed 64-bit integer",
                                               "32-bit float"};
            rc = bad(c, "%s: field \"%s\" has type %s, expected %s", name, fd->name, got,
                     want[fd->t]);
        }
        H5Tclose(mt);
    }
    ofa_h5_close_id(kt);
    ofa_h5_close_id(at);
    return rc;
}

static void fmt_dims(char *buf, size_t n, int rank, const hsize_t *d)
{
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < rank && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%llu", i ? "," : "", (unsigned long long)d[i]);
    if (k < n)
        snprintf(buf + k, n - k, "]");
}

/* Open dataset `name`, check its type (kind), rank and shape (want[i] == 0:
 * any extent, at least 1) and storage (contiguous, unfiltered, its bytes
 * within the file). Returns the dataset and its type, or -1 with err set. */
static hid_t open_checked_dataset(const struct ctx *c, hid_t f, const char *name, enum dkind k,
                                  int rank, const hsize_t *want, hsize_t *dims, hid_t *type,
                                  hsize_t max_elems)
{
    *type = -1;
    int ex = hard_path(c, f, name);
    if (ex == 0)
        bad(c, "missing dataset %s", name);
    if (ex <= 0)
        return -1;
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) {
        fail(c, "%s is not a dataset", name);
        return -1;
    }
    hid_t ty = H5Dget_type(d), sp = H5Dget_space(d), dcpl = H5Dget_create_plist(d);
    int rc = 0;
    if (ty < 0 || sp < 0 || dcpl < 0) {
        rc = fail(c, "cannot read the type, dataspace or storage of %s", name);
        goto done;
    }
    if (check_type(c, name, ty, k) != 0) {
        rc = -1;
        goto done;
    }
    int r = H5Sget_simple_extent_type(sp) == H5S_SIMPLE ? H5Sget_simple_extent_ndims(sp) : -1;
    hsize_t got[H5S_MAX_RANK];
    if (r < 1 || r > H5S_MAX_RANK || H5Sget_simple_extent_dims(sp, got, NULL) != r) {
        rc = bad(c, "%s is not a %d-dimensional array", name, rank);
        goto done;
    }
    int same = r == rank;
    double elems = 1;
    for (int i = 0; i < r; i++) {
        same = same && got[i] >= 1 && (want[i] == 0 || got[i] == want[i]);
        elems *= (double)got[i];
    }
    if (!same) {
        char a[128], b[128];
        fmt_dims(a, sizeof a, r, got);
        fmt_dims(b, sizeof b, rank, want);
        for (char *s = b; *s; s++) /* unknown extents print as "n" */
            if (*s == '0' && (s[-1] == '[' || s[-1] == ',') && (s[1] == ']' || s[1] == ','))
                *s = 'n';
        rc = bad(c, "%s has shape %s, expected %s", name, a, b);
        goto done;
    }
    if (elems > (double)max_elems) {
        rc = bad(c, "%s has %.0f elements, more than the %llu allowed", name, elems,
                 (unsigned long long)max_elems);
        goto done;
    }
    if (H5Pget_layout(dcpl) != H5D_CONTIGUOUS || H5Pget_external_count(dcpl) != 0 ||
        H5Pget_nfilters(dcpl) != 0) {
        rc = bad(c, "%s is not stored as ofa writes it (contiguous, no filters, no external "
                 "files)", name);
        goto done;
    }
    const double bytes = elems * (double)H5Tget_size(ty);
    const hsize_t stored = H5Dget_storage_size(d);
    if ((double)stored != bytes || bytes > (double)c->file_size) {
        rc = bad(c, "%s should hold %.0f bytes but %llu are stored in a file of %lld bytes "
                 "(truncated or damaged file?)", name, bytes, (unsigned long long)stored,
                 c->file_size);
        goto done;
    }
    for (int i = 0; i < r; i++)
        dims[i] = got[i];
done:
    ofa_h5_close_id(sp);
    ofa_h5_close_id(dcpl);
    if (rc) {
        ofa_h5_close_id(ty);
        H5Dclose(d);
        return -1;
    }
    *type = ty;
    return d;
}

/* Read a whole numeric dataset into a new buffer of elem-byte elements. */
static void *read_array(const struct ctx *c, hid_t f, const char *name, enum dkind k, int rank,
                        const hsize_t *want, hsize_t *dims, hid_t mtype, size_t elem,
                        hsize_t max_elems)
{
    hid_t ty;
    hid_t d = open_checked_dataset(c, f, name, k, rank, want, dims, &ty, max_elems);
    if (d < 0)
        return NULL;
    size_t n = 1;
    for (int i = 0; i < rank; i++)
        n = ofa_mul_size(n, (size_t)dims[i]);
    void *buf = ofa_xmalloc(ofa_mul_size(n, elem), name);
    if (H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        fail(c, "H5Dread of %s failed (damaged file?)", name);
        free(buf);
        buf = NULL;
    }
    H5Tclose(ty);
    H5Dclose(d);
    return buf;
}

/* Attribute kinds. */
enum akind { AK_STR, AK_INT, AK_U64, AK_FLOAT };

/* Open root attribute `name` and check its class and element count (count
 * 1: scalar or one element). */
static hid_t open_attr(const struct ctx *c, hid_t obj, const char *name, enum akind kind,
                       int count, hid_t *type)
{
    *type = -1;
    htri_t ex = H5Aexists(obj, name);
    if (ex < 0) {
        fail(c, "H5Aexists of root attribute %s failed", name);
        return -1;
    }
    if (ex == 0) {
        bad(c, "missing root attribute \"%s\"", name);
        return -1;
    }
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) {
        fail(c, "H5Aopen of root attribute %s failed", name);
        return -1;
    }
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    int ok = t >= 0 && sp >= 0;
    if (ok) {
        H5S_class_t sc = H5Sget_simple_extent_type(sp);
        int r = sc == H5S_SIMPLE ? H5Sget_simple_extent_ndims(sp) : sc == H5S_SCALAR ? 0 : -1;
        hssize_t np = H5Sget_simple_extent_npoints(sp);
        ok = r >= 0 && r <= 1 && np == count && (count == 1 || r == 1);
    }
    H5T_class_t cls = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    size_t sz = t >= 0 ? H5Tget_size(t) : 0;
    const char *want = "";
    switch (kind) {
    case AK_STR:
        want = "a string";
        ok = ok && cls == H5T_STRING;
        break;
    case AK_INT:
        want = "an integer";
        ok = ok && cls == H5T_INTEGER && sz <= 8;
        break;
    case AK_U64:
        want = "an unsigned 64-bit integer";
        ok = ok && cls == H5T_INTEGER && sz == 8 && H5Tget_sign(t) == H5T_SGN_NONE;
        break;
    case AK_FLOAT:
        want = count == 1 ? "a float" : "floats";
        ok = ok && cls == H5T_FLOAT && (sz == 4 || sz == 8);
        break;
    }
    ofa_h5_close_id(sp);
    if (!ok) {
        if (count == 1)
            bad(c, "root attribute \"%s\" is not %s", name, want);
        else
            bad(c, "root attribute \"%s\" is not %d %s", name, count, want);
        ofa_h5_close_id(t);
        H5Aclose(a);
        return -1;
    }
    *type = t;
    return a;
}

static int read_attr_num(const struct ctx *c, hid_t obj, const char *name, enum akind kind,
                         int count, hid_t mt, void *out)
{
    hid_t t, a = open_attr(c, obj, name, kind, count, &t);
    if (a < 0)
        return -1;
    int rc = 0;
    if (H5Aread(a, mt, out) < 0)
        rc = fail(c, "H5Aread of root attribute %s failed", name);
    H5Tclose(t);
    H5Aclose(a);
    return rc;
}

static int read_int(const struct ctx *c, hid_t obj, const char *name, int64_t lo, int64_t hi,
                    int *v)
{
    int64_t x;
    if (read_attr_num(c, obj, name, AK_INT, 1, H5T_NATIVE_INT64, &x) != 0)
        return -1;
    if (x < lo || x > hi)
        return bad(c, "root attribute \"%s\" is %lld, outside [%lld, %lld]", name, (long long)x,
                   (long long)lo, (long long)hi);
    *v = (int)x;
    return 0;
}

/* A string attribute of at most cap - 1 bytes. */
static int read_attr_str(const struct ctx *c, hid_t obj, const char *name, char *out, size_t cap)
{
    hid_t t, a = open_attr(c, obj, name, AK_STR, 1, &t);
    if (a < 0)
        return -1;
    int rc = 0;
    char *s = NULL;
    htri_t vl = H5Tis_variable_str(t);
    hid_t mt = vl >= 0 ? H5Tcopy(t) : -1;
    if (mt < 0) {
        rc = fail(c, "cannot read the string type of root attribute %s", name);
    } else if (vl) {
        if (H5Aread(a, mt, &s) < 0 || !s)
            rc = fail(c, "H5Aread of root attribute %s failed", name);
        else if (strlen(s) >= cap)
            rc = bad(c, "root attribute \"%s\" is longer than %zu bytes", name, cap - 1);
        else
            memcpy(out, s, strlen(s) + 1);
        if (s)
            H5free_memory(s);
    } else {
        size_t sz = H5Tget_size(t);
        if (sz == 0 || sz > MAX_STRING_BYTES) {
            rc = bad(c, "root attribute \"%s\" has a bad string size %zu", name, sz);
        } else {
            char *buf = ofa_xcalloc(sz + 1, 1, "attribute");
            if (H5Aread(a, mt, buf) < 0)
                rc = fail(c, "H5Aread of root attribute %s failed", name);
            else if (strlen(buf) >= cap)
                rc = bad(c, "root attribute \"%s\" is longer than %zu bytes", name, cap - 1);
            else
                memcpy(out, buf, strlen(buf) + 1);
            free(buf);
        }
    }
    ofa_h5_close_id(mt);
    H5Tclose(t);
    H5Aclose(a);
    return rc;
}

/* /class_names: num_classes strings (fixed or variable length), each
 * shorter than OFA_CLASS_NAME_MAX. */
static int read_class_names(const struct ctx *c, hid_t f, struct ofa_model *m)
{
    const char *name = "/class_names";
    hsize_t want = (hsize_t)m->num_classes, dims[1];
    hid_t ty;
    hid_t d = open_checked_dataset(c, f, name, D_STR, 1, &want, dims, &ty, MAX_CLASSES);
    if (d < 0)
        return -1;
    const size_t n = (size_t)m->num_classes;
    m->class_names = ofa_xcalloc(n, OFA_CLASS_NAME_MAX, "class names");
    int rc = 0;
    hid_t mt = -1;
    htri_t vl = H5Tis_variable_str(ty);
    if (vl < 0) {
        rc = fail(c, "H5Tis_variable_str of %s failed", name);
    } else if (vl) {
        mt = H5Tcopy(H5T_C_S1);
        char **v = ofa_xcalloc(n, sizeof *v, "class names");
        if (mt < 0 || H5Tset_size(mt, H5T_VARIABLE) < 0 ||
            H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0)
            rc = fail(c, "H5Dread of %s failed (damaged file?)", name);
        for (size_t k = 0; k < n && rc == 0; k++) {
            if (!v[k] || strlen(v[k]) >= OFA_CLASS_NAME_MAX)
                rc = bad(c, "%s: name %zu is missing or longer than %d bytes", name, k,
                         OFA_CLASS_NAME_MAX - 1);
            else
                memcpy(m->class_names[k], v[k], strlen(v[k]) + 1);
        }
        for (size_t k = 0; k < n; k++)
            if (v[k])
                H5free_memory(v[k]);
        free(v);
    } else {
        const size_t sz = H5Tget_size(ty);
        mt = sz >= 1 && sz <= MAX_STRING_BYTES ? H5Tcopy(ty) : -1;
        if (mt < 0) {
            rc = bad(c, "%s has a bad string size %zu", name, sz);
        } else {
            char *buf = ofa_xcalloc(ofa_mul_size(n, sz) + 1, 1, "class names");
            if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
                rc = fail(c, "H5Dread of %s failed (damaged file?)", name);
            for (size_t k = 0; k < n && rc == 0; k++) {
                const char *s = buf + k * sz;
                size_t len = strnlen(s, sz);
                if (len >= OFA_CLASS_NAME_MAX)
                    rc = bad(c, "%s: name %zu is longer than %d bytes", name, k,
                             OFA_CLASS_NAME_MAX - 1);
                else
                    memcpy(m->class_names[k], s, len);
            }
            free(buf);
        }
    }
    ofa_h5_close_id(mt);
    H5Tclose(ty);
    H5Dclose(d);
    return rc;
}

/* Objects of a group that an ofa-model file does not have. */
struct extras {
    const struct ctx *c;
    const char *prefix; /* the group's path with a trailing slash */
    const char *const *allowed;
    int found;
};

static herr_t extras_cb(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
    (void)g;
    (void)info;
    struct extras *x = data;
    for (const char *const *a = x->allowed; *a; a++)
        if (strcmp(name, *a) == 0)
            return 0;
    bad(x->c, "unexpected object %s%s (not part of an %s file)", x->prefix, name,
        OFA_MODEL_FORMAT);
    x->found = 1;
    return 1;
}

static int check_extras(const struct ctx *c, hid_t f, const char *group, const char *prefix,
                        const char *const *allowed)
{
    struct extras x = {c, prefix, allowed, 0};
    hid_t g = H5Gopen2(f, group, H5P_DEFAULT);
    if (g < 0)
        return fail(c, "%s is not a group", group);
    herr_t r = H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, extras_cb, &x);
    H5Gclose(g);
    if (x.found)
        return -1;
    if (r < 0)
        return fail(c, "H5Literate of %s failed", group);
    return 0;
}

static int read_quant(const struct ctx *c, hid_t f, struct ofa_model *m)
{
    static const char *const allowed[] = {"tensor_scale", "tensor_zp", "qweights", "qbias",
                                          "wscale", NULL};
    int ex = hard_path(c, f, "/quant");
    if (ex == 0)
        return bad(c, "the model is quantized but the group /quant is missing");
    if (ex < 0 || check_extras(c, f, "/quant", "/quant/", allowed) != 0)
        return -1;
    const hsize_t nt = (hsize_t)m->n_tensors, any = 0, big = (hsize_t)1 << 32;
    hsize_t dims[1];
    float *scale = read_array(c, f, "/quant/tensor_scale", D_F32, 1, &nt, dims, H5T_NATIVE_FLOAT,
                              sizeof(float), nt);
    int32_t *zp = scale ? read_array(c, f, "/quant/tensor_zp", D_I32, 1, &nt, dims,
                                     H5T_NATIVE_INT32, sizeof(int32_t), nt)
                        : NULL;
    if (zp) {
        m->tq = ofa_xmalloc((size_t)nt * sizeof *m->tq, "tensor qparams");
        for (hsize_t t = 0; t < nt; t++)
            m->tq[t] = (struct ofa_qp){scale[t], zp[t]};
    }
    free(scale);
    free(zp);
    if (!m->tq)
        return -1;
    m->qweights = read_array(c, f, "/quant/qweights", D_I8, 1, &any, dims, H5T_NATIVE_INT8, 1, big);
    if (!m->qweights)
        return -1;
    m->n_qweights = (long)dims[0];
    m->qbias = read_array(c, f, "/quant/qbias", D_I32, 1, &any, dims, H5T_NATIVE_INT32,
                          sizeof(int32_t), big);
    if (!m->qbias)
        return -1;
    m->n_qbias = (long)dims[0];
    m->wscale = read_array(c, f, "/quant/wscale", D_F32, 1, &any, dims, H5T_NATIVE_FLOAT,
                           sizeof(float), big);
    if (!m->wscale)
        return -1;
    m->n_wscale = (long)dims[0];
    return 0;
}

static int read_model(const struct ctx *c, hid_t f, struct ofa_model *m)
{
    uint64_t fp;
    if (read_attr_str(c, f, "subnet", m->subnet, sizeof m->subnet) ||
        read_attr_str(c, f, "device", m->device, sizeof m->device) ||
        read_attr_num(c, f, "supernet_fingerprint", AK_U64, 1, H5T_NATIVE_UINT64, &fp) ||
        read_int(c, f, "in_channels", 1, MAX_CHANNELS, &m->in_channels) ||
        read_int(c, f, "res", 1, MAX_SPATIAL, &m->res) ||
        read_int(c, f, "num_classes", 1, MAX_CLASSES, &m->num_classes) ||
        read_attr_num(c, f, "norm_mean", AK_FLOAT, 3, H5T_NATIVE_FLOAT, m->norm_mean) ||
        read_attr_num(c, f, "norm_std", AK_FLOAT, 3, H5T_NATIVE_FLOAT, m->norm_std) ||
        read_int(c, f, "quantized", 0, 1, &m->quantized))
        return -1;
    m->supernet_fingerprint = fp;
    static const char *const plain[] = {"tensors", "layers", "weights", "class_names", NULL};
    static const char *const quant[] = {"tensors", "layers", "weights", "class_names", "quant",
                                        NULL};
    if (check_extras(c, f, "/", "/", m->quantized ? quant : plain) != 0)
        return -1;

    hsize_t dims[2];
    const hsize_t wt[2] = {0, 3};
    int32_t *shapes = read_array(c, f, "/tensors", D_I32, 2, wt, dims, H5T_NATIVE_INT32,
                                 sizeof(int32_t), 3 * (MAX_LAYERS + 1));
    if (!shapes)
        return -1;
    m->n_tensors = (int)dims[0];
    m->tensors = ofa_xmalloc((size_t)m->n_tensors * sizeof *m->tensors, "tensor shapes");
    for (int t = 0; t < m->n_tensors; t++)
        m->tensors[t] = (struct ofa_tshape){shapes[3 * t], shapes[3 * t + 1], shapes[3 * t + 2]};
    free(shapes);
    if (m->n_tensors < 2)
        return bad(c, "/tensors holds %d shapes, expected at least 2", m->n_tensors);

    const hsize_t wl = (hsize_t)m->n_tensors - 1;
    hid_t mt = layer_type(0);
    if (mt < 0)
        return fail(c, "cannot make the compound type of /layers");
    struct layer_rec *rec = read_array(c, f, "/layers", D_LAYERS, 1, &wl, dims, mt,
                                       sizeof *rec, MAX_LAYERS);
    H5Tclose(mt);
    if (!rec)
        return -1;
    m->n_layers = (int)wl;
    m->layers = ofa_xmalloc((size_t)m->n_layers * sizeof *m->layers, "layers");
    int rc = 0;
    for (int i = 0; i < m->n_layers && rc == 0; i++) {
        /* enum values outside the enumeration read as -1 (all bits set) */
        if (rec[i].kind < 0 || rec[i].kind >= N_KINDS || rec[i].act < 0 || rec[i].act >= N_ACTS)
            rc = bad(c, "/layers: layer %d has an unknown kind or activation", i);
        else
            from_rec(&m->layers[i], &rec[i]);
    }
    free(rec);
    if (rc)
        return -1;

    const hsize_t any = 0;
    m->weights = read_array(c, f, "/weights", D_F32, 1, &any, dims, H5T_NATIVE_FLOAT,
                            sizeof(float), (hsize_t)1 << 32);
    if (!m->weights)
        return -1;
    m->n_weights = (long)dims[0];
    if (read_class_names(c, f, m) != 0)
        return -1;
    if (m->quantized && read_quant(c, f, m) != 0)
        return -1;
    return check_model(c, m);
}

static int load_model(const char *path, struct ofa_model *m, struct ofa_error *err)
{
    struct ctx c = {path, err, 0};
    struct ofa_h5quiet q;
    ofa_h5_quiet_on(&q);
    struct ofa_model t;
    memset(&t, 0, sizeof t);
    int rc = -1;
    hid_t f = ofa_h5_open(path, OFA_H5_MAGIC, "an ofa model file", MAX_FILE_BYTES, err);
    hsize_t fsize = 0;
    if (f < 0)
        goto out;
    if (H5Fget_filesize(f, &fsize) < 0) {
        fail(&c, "H5Fget_filesize failed");
        goto out;
    }
    c.file_size = (long long)fsize;
    char fmt[256];
    int ver;
    htri_t has = H5Aexists(f, "format");
    if (has <= 0) {
        if (has < 0)
            fail(&c, "H5Aexists of the root attribute format failed");
        else
            bad(&c, "not an ofa model file (no root attribute \"format\")");
        goto out;
    }
    if (read_attr_str(&c, f, "format", fmt, sizeof fmt) != 0)
        goto out;
    if (strcmp(fmt, OFA_MODEL_FORMAT) != 0) {
        bad(&c, "not an ofa model file (format is \"%s\", expected \"%s\")", fmt,
            OFA_MODEL_FORMAT);
        goto out;
    }
    if (read_int(&c, f, "format_version", 1, INT32_MAX, &ver) != 0)
        goto out;
    if (ver > OFA_MODEL_VERSION) {
        bad(&c, "format_version %d is newer than this ofa reads (%d): upgrade ofa to load it",
            ver, OFA_MODEL_VERSION);
        goto out;
    }
    if (read_model(&c, f, &t) != 0)
        goto out;
    herr_t cr = H5Fclose(f);
    f = -1;
    if (cr < 0) {
        fail(&c, "H5Fclose failed");
        goto out;
    }
    ofa_model_pack(&t);
    *m = t;
    memset(&t, 0, sizeof t);
    rc = 0;
out:
    if (f >= 0)
        H5Fclose(f);
    ofa_model_free(&t);
    ofa_h5_quiet_off(&q);
    return rc;
}

/* Guarded against libhdf5 crashes (ofa_h5_guarded). */
struct load_call {
    const char *path;
    struct ofa_model *m;
    struct ofa_error *err;
};

static int call_load_model(void *a)
{
    struct load_call *c = a;
    return load_model(c->path, c->m, c->err);
}

int ofa_model_load(const char *path, struct ofa_model *m, struct ofa_error *err)
{
    OFA_ASSERT(path && m);
    struct load_call c = {path, m, err};
    return ofa_h5_guarded(path, call_load_model, &c, err);
}
