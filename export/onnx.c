/* onnx.c: model.onnx, the exported float model as a standard ONNX graph
 * (export/onnx.h), serialised with protobuf-c from the ONNX schema (Debian's
 * onnx.proto, compiled by protoc-c at build time).
 *
 * Choices made for the runtimes the test suite checks the graph against
 * (tests/check_onnx.py: onnx.checker, and Debian's OpenCV 4.6 importer):
 * - Opset 14, IR version 7 (the pair ONNX 1.9 introduced): HardSwish exists
 *   from opset 14 on, and OpenCV 4.6 runs it, so hswish is one node.
 * - Every Conv carries kernel_shape, 1x1 included (OpenCV refuses a Conv
 *   without it), and the graph input and output carry full shapes.
 * - SE's scaling is Mul(gate, x), gate [N,C,1,1] first: OpenCV 4.6 turns a
 *   broadcasting Mul into its Scale layer correctly only in that order.
 * - No Identity nodes (OpenCV refuses those fed by initializers).
 * - The batch dimension is dynamic ("N"). OpenCV 4.6 fixes the SE broadcast
 *   axis at import from the declared input shape (batch 1 when dynamic), so
 *   it runs these graphs one image at a time, or at a batch size pinned in
 *   the file; runtimes that broadcast as ONNX specifies take any N.
 * Weights are initializers in raw_data, little-endian whatever the host's
 * byte order. The whole message tree is built on allocations recorded in
 * one list and freed together; the file is packed straight into the
 * temporary file of an atomic write, so a failure leaves the previous file.
 */
#include <config.h>

#include "onnx.h"

#include "onnx.pb-c.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ATTRS 5

/* ---- Allocation pool and string building ------------------------------------ */

struct wr {
    const struct ofa_model *m;
    const char *path;
    struct ofa_error *err;
    void **alloc;
    size_t n_alloc, cap_alloc;
    Onnx__NodeProto **nodes;
    size_t n_nodes, cap_nodes;
    Onnx__TensorProto **inits;
    size_t n_inits, cap_inits;
    char **tname; /* ONNX name of each model tensor */
    int *rank;    /* 4 ([N,C,H,W]) or 2 ([N,C], after a classifier) */
};

static void *pool_keep(struct wr *w, void *p)
{
    if (w->n_alloc == w->cap_alloc) {
        w->cap_alloc = w->cap_alloc ? 2 * w->cap_alloc : 256;
        void **a = realloc(w->alloc, ofa_mul_size(w->cap_alloc, sizeof *a));
        if (!a)
            ofa_fatal("out of memory for the ONNX message tree");
        w->alloc = a;
    }
    w->alloc[w->n_alloc++] = p;
    return p;
}

static void *pool_alloc(struct wr *w, size_t count, size_t size)
{
    return pool_keep(w, ofa_xcalloc(count ? count : 1, size, "ONNX message tree"));
}

static char *pool_fmt(struct wr *w, const char *fmt, ...) OFA_PRINTF(2, 3);
static char *pool_fmt(struct wr *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    OFA_ASSERT(n >= 0);
    char *s = pool_alloc(w, (size_t)n + 1, 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static void pool_free(struct wr *w)
{
    for (size_t i = 0; i < w->n_alloc; i++)
        free(w->alloc[i]);
    free(w->alloc);
    w->alloc = NULL;
    w->n_alloc = w->cap_alloc = 0;
}

/* A growing string; protobuf string fields must hold valid UTF-8. */
struct sbuf {
    char *p;
    size_t n, cap;
};

static void sb_putc(struct sbuf *b, char c)
{
    if (b->n + 2 > b->cap) {
        b->cap = b->cap ? 2 * b->cap : 256;
        char *p = realloc(b->p, b->cap);
        if (!p)
            ofa_fatal("out of memory for ONNX metadata");
        b->p = p;
    }
    b->p[b->n++] = c;
    b->p[b->n] = '\0';
}

static void sb_printf(struct sbuf *b, const char *fmt, ...) OFA_PRINTF(2, 3);
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    OFA_ASSERT(n >= 0 && (size_t)n < sizeof tmp);
    for (int i = 0; i < n; i++)
        sb_putc(b, tmp[i]);
}

/* Length of the valid UTF-8 sequence starting at s (at most n bytes), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    size_t len;
    unsigned min;
    unsigned cp;
    if (s[0] < 0x80)
        return 1;
    else if ((s[0] & 0xe0) == 0xc0)
        len = 2, min = 0x80, cp = s[0] & 0x1f;
    else if ((s[0] & 0xf0) == 0xe0)
        len = 3, min = 0x800, cp = s[0] & 0x0f;
    else if ((s[0] & 0xf8) == 0xf0)
        len = 4, min = 0x10000, cp = s[0] & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* Append text (at most n bytes, up to a NUL); bytes that are not UTF-8 become
 * U+FFFD. In JSON mode, quotes, backslashes and control characters are
 * escaped. */
static void sb_text(struct sbuf *b, const char *text, size_t n, int json)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < n && s[i]) {
        size_t k = utf8_seq(s + i, strnlen(text + i, n - i));
        if (k == 0) {
            sb_printf(b, "\xef\xbf\xbd");
            i++;
            continue;
        }
        if (json && k == 1 && (s[i] == '"' || s[i] == '\\'))
            sb_printf(b, "\\%c", s[i]);
        else if (json && k == 1 && s[i] < 0x20)
            sb_printf(b, "\\u%04x", s[i]);
        else
            for (size_t j = 0; j < k; j++)
                sb_putc(b, (char)s[i + j]);
        i += k;
    }
}

static char *sb_keep(struct wr *w, struct sbuf *b)
{
    char *p = b->p ? b->p : ofa_xcalloc(1, 1, "ONNX metadata");
    b->p = NULL;
    b->n = b->cap = 0;
    return pool_keep(w, p);
}

/* ---- Nodes and initializers ------------------------------------------------- */

static Onnx__NodeProto *add_node(struct wr *w, const char *op, char *name, int n_in,
                                 char *const *in, char *out)
{
    OFA_ASSERT(w->n_nodes < w->cap_nodes);
    Onnx__NodeProto *n = pool_alloc(w, 1, sizeof *n);
    onnx__node_proto__init(n);
    n->op_type = pool_fmt(w, "%s", op);
    n->name = name;
    n->n_input = (size_t)n_in;
    n->input = pool_alloc(w, (size_t)n_in, sizeof *n->input);
    for (int i = 0; i < n_in; i++)
        n->input[i] = in[i];
    n->n_output = 1;
    n->output = pool_alloc(w, 1, sizeof *n->output);
    n->output[0] = out;
    n->attribute = pool_alloc(w, MAX_ATTRS, sizeof *n->attribute);
    w->nodes[w->n_nodes++] = n;
    return n;
}

static Onnx__AttributeProto *add_attr(struct wr *w, Onnx__NodeProto *n, const char *name,
                                      Onnx__AttributeProto__AttributeType type)
{
    OFA_ASSERT(n->n_attribute < MAX_ATTRS);
    Onnx__AttributeProto *a = pool_alloc(w, 1, sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = pool_fmt(w, "%s", name);
    a->has_type = 1;
    a->type = type;
    n->attribute[n->n_attribute++] = a;
    return a;
}

static void attr_int(struct wr *w, Onnx__NodeProto *n, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = add_attr(w, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    a->has_i = 1;
    a->i = v;
}

static void attr_float(struct wr *w, Onnx__NodeProto *n, const char *name, float v)
{
    Onnx__AttributeProto *a =
        add_attr(w, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    a->has_f = 1;
    a->f = v;
}

static void attr_ints(struct wr *w, Onnx__NodeProto *n, const char *name, int count, int64_t v)
{
    Onnx__AttributeProto *a = add_attr(w, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    a->n_ints = (size_t)count;
    a->ints = pool_alloc(w, (size_t)count, sizeof *a->ints);
    for (int i = 0; i < count; i++)
        a->ints[i] = v;
}

/* A float initializer called name, of shape dims; returns its raw bytes (4
 * per value, for put_f32 to fill). */
static uint8_t *add_init(struct wr *w, char *name, int ndim, const int64_t *dims)
{
    OFA_ASSERT(w->n_inits < w->cap_inits);
    Onnx__TensorProto *t = pool_alloc(w, 1, sizeof *t);
    onnx__tensor_proto__init(t);
    t->name = name;
    t->has_data_type = 1;
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    t->n_dims = (size_t)ndim;
    t->dims = pool_alloc(w, (size_t)ndim, sizeof *t->dims);
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        OFA_ASSERT(dims[i] >= 1);
        t->dims[i] = dims[i];
        count = ofa_mul_size(count, (size_t)dims[i]);
    }
    t->has_raw_data = 1;
    t->raw_data.len = ofa_mul_size(count, 4);
    t->raw_data.data = pool_alloc(w, count, 4);
    w->inits[w->n_inits++] = t;
    return t->raw_data.data;
}

static void put_f32(uint8_t *raw, size_t i, float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    uint8_t *p = raw + 4 * i;
    p[0] = (uint8_t)u, p[1] = (uint8_t)(u >> 8), p[2] = (uint8_t)(u >> 16),
    p[3] = (uint8_t)(u >> 24);
}

/* A bias initializer [n] copied from the model's weights at off. */
static char *bias_init(struct wr *w, const char *name, long off, int n)
{
    char *nm = pool_fmt(w, "%s", name);
    const int64_t dims[1] = {n};
    uint8_t *raw = add_init(w, nm, 1, dims);
    for (int i = 0; i < n; i++)
        put_f32(raw, (size_t)i, w->m->weights[off + i]);
    return nm;
}

/* The activation after a Conv or Gemm: pre -> out. */
static void emit_act(struct wr *w, int li, enum ofa_act act, char *pre, char *out)
{
    char *in[1] = {pre};
    switch (act) {
    case OFA_ACT_NONE:
        OFA_ASSERT(pre == out);
        break;
    case OFA_ACT_RELU:
        add_node(w, "Relu", pool_fmt(w, "l%d.relu", li), 1, in, out);
        break;
    case OFA_ACT_HSWISH:
        add_node(w, "HardSwish", pool_fmt(w, "l%d.hswish", li), 1, in, out);
        break;
    case OFA_ACT_HSIGMOID: {
        Onnx__NodeProto *n = add_node(w, "HardSigmoid", pool_fmt(w, "l%d.hsigmoid", li), 1, in,
                                      out);
        attr_float(w, n, "alpha", 1.0f / 6.0f);
        attr_float(w, n, "beta", 0.5f);
        break;
    }
    default:
        OFA_ASSERT(!"unknown activation");
    }
}

/* Name of a layer's pre-activation output: the output itself without act. */
static char *pre_name(struct wr *w, int li, enum ofa_act act, char *out, const char *what)
{
    return act == OFA_ACT_NONE ? out : pool_fmt(w, "l%d.%s", li, what);
}

static void emit_conv(struct wr *w, int li, const struct ofa_layer *L)
{
    const float *wt = w->m->weights + L->w;
    const int K = L->K, Cin = L->Cin, Cout = L->Cout;
    const int dw = L->kind == OFA_LAYER_DW;
    char *wname = pool_fmt(w, "l%d.weight", li);
    const int64_t dims[4] = {Cout, dw ? 1 : Cin, K, K};
    uint8_t *raw = add_init(w, wname, 4, dims);
    if (dw) {
        /* [K][K][C] -> [C][1][K][K] */
        for (int c = 0; c < Cout; c++)
            for (int ky = 0; ky < K; ky++)
                for (int kx = 0; kx < K; kx++)
                    put_f32(raw, ((size_t)c * K + ky) * K + kx,
                            wt[((size_t)ky * K + kx) * Cout + c]);
    } else {
        /* [Cout][K][K][Cin] -> [Cout][Cin][K][K] */
        for (int o = 0; o < Cout; o++)
            for (int c = 0; c < Cin; c++)
                for (int ky = 0; ky < K; ky++)
                    for (int kx = 0; kx < K; kx++)
                        put_f32(raw, (((size_t)o * Cin + c) * K + ky) * K + kx,
                                wt[(((size_t)o * K + ky) * K + kx) * Cin + c]);
    }
    char *in[3] = {w->tname[L->in], wname, NULL};
    int n_in = 2;
    if (L->b >= 0)
        in[n_in++] = bias_init(w, pool_fmt(w, "l%d.bias", li), L->b, Cout);
    char *out = w->tname[L->out];
    char *pre = pre_name(w, li, L->act, out, "conv");
    Onnx__NodeProto *n = add_node(w, "Conv", pool_fmt(w, "l%d.conv", li), n_in, in, pre);
    attr_ints(w, n, "kernel_shape", 2, K);
    attr_ints(w, n, "strides", 2, L->stride);
    attr_ints(w, n, "pads", 4, L->pad);
    attr_ints(w, n, "dilations", 2, 1);
    attr_int(w, n, "group", dw ? Cout : 1);
    emit_act(w, li, L->act, pre, out);
}

/* 1x1 Conv of the SE block: [Co][Ci] weights at off -> [Co][Ci][1][1]. */
static char *se_conv(struct wr *w, int li, int which, char *x, long off, long boff, int Co,
                     int Ci)
{
    char *wname = pool_fmt(w, "l%d.se%d.weight", li, which);
    const int64_t dims[4] = {Co, Ci, 1, 1};
    uint8_t *raw = add_init(w, wname, 4, dims);
    for (size_t i = 0; i < (size_t)Co * (size_t)Ci; i++)
        put_f32(raw, i, w->m->weights[off + (long)i]);
    char *in[3] = {x, wname, bias_init(w, pool_fmt(w, "l%d.se%d.bias", li, which), boff, Co)};
    char *out = pool_fmt(w, "l%d.se%d", li, which);
    Onnx__NodeProto *n = add_node(w, "Conv", pool_fmt(w, "l%d.se%d.conv", li, which), 3, in, out);
    attr_ints(w, n, "kernel_shape", 2, 1);
    return out;
}

static void emit_se(struct wr *w, int li, const struct ofa_layer *L)
{
    char *x = w->tname[L->in];
    char *pooled = pool_fmt(w, "l%d.pool", li);
    add_node(w, "GlobalAveragePool", pool_fmt(w, "l%d.pool", li), 1, &x, pooled);
    char *h = se_conv(w, li, 1, pooled, L->w, L->b, L->R, L->Cin);
    char *hid = pool_fmt(w, "l%d.hid", li);
    add_node(w, "Relu", pool_fmt(w, "l%d.relu", li), 1, &h, hid);
    char *g = se_conv(w, li, 2, hid, L->w2, L->b2, L->Cin, L->R);
    char *gate = pool_fmt(w, "l%d.gate", li);
    emit_act(w, li, OFA_ACT_HSIGMOID, g, gate);
    char *in[2] = {gate, x};
    add_node(w, "Mul", pool_fmt(w, "l%d.scale", li), 2, in, w->tname[L->out]);
}

static void emit_fc(struct wr *w, int li, const struct ofa_layer *L)
{
    char *x = w->tname[L->in];
    if (w->rank[L->in] == 4) {
        char *flat = pool_fmt(w, "l%d.flat", li);
        Onnx__NodeProto *n = add_node(w, "Flatten", pool_fmt(w, "l%d.flatten", li), 1, &x, flat);
        attr_int(w, n, "axis", 1);
        x = flat;
    }
    char *wname = pool_fmt(w, "l%d.weight", li);
    const int64_t dims[2] = {L->Cout, L->Cin};
    uint8_t *raw = add_init(w, wname, 2, dims);
    for (size_t i = 0; i < (size_t)L->Cout * (size_t)L->Cin; i++)
        put_f32(raw, i, w->m->weights[L->w + (long)i]);
    char *in[3] = {x, wname, NULL};
    int n_in = 2;
    if (L->b >= 0)
        in[n_in++] = bias_init(w, pool_fmt(w, "l%d.bias", li), L->b, L->Cout);
    char *out = w->tname[L->out];
    char *pre = pre_name(w, li, L->act, out, "gemm");
    Onnx__NodeProto *n = add_node(w, "Gemm", pool_fmt(w, "l%d.gemm", li), n_in, in, pre);
    attr_int(w, n, "transB", 1);
    emit_act(w, li, L->act, pre, out);
}

/* ---- Model checks ----------------------------------------------------------- */

static const char *kind_name(enum ofa_layer_kind k)
{
    switch (k) {
    case OFA_LAYER_CONV: return "conv";
    case OFA_LAYER_DW: return "depthwise conv";
    case OFA_LAYER_SE: return "squeeze-excite";
    case OFA_LAYER_ADD: return "add";
    case OFA_LAYER_POOL: return "pool";
    case OFA_LAYER_FC: return "classifier";
    }
    return "unknown";
}

static int bad(struct wr *w, const char *fmt, ...) OFA_PRINTF(2, 3);
static int bad(struct wr *w, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ofa_error_set(w->err, w->path, 0, "cannot write the model as ONNX: %s", msg);
}

static int weights_ok(const struct ofa_model *m, long off, long n)
{
    return off >= 0 && n >= 0 && off <= m->n_weights && n <= m->n_weights - off;
}

/* What the mapping relies on: a topologically ordered graph over defined
 * tensors with consistent shapes and weights in range, ending in the logits.
 * Assigns the tensors' ONNX ranks and names. */
static int check_and_name(struct wr *w)
{
    const struct ofa_model *m = w->m;
    if (m->n_layers < 1 || m->n_tensors != m->n_layers + 1 || !m->layers || !m->tensors)
        return bad(w, "the model has %d layers and %d tensors", m->n_layers, m->n_tensors);
    if (m->in_channels < 1 || m->in_channels > 3)
        return bad(w, "%d input channels (1 to 3 supported)", m->in_channels);
    const struct ofa_tshape t0 = m->tensors[0];
    if (t0.H != m->res || t0.W != m->res || t0.C != m->in_channels || m->res < 1)
        return bad(w, "input tensor [%d, %d, %d] is not [res %d, res, %d channels]", t0.H, t0.W,
                   t0.C, m->res, m->in_channels);
    w->rank = pool_alloc(w, (size_t)m->n_tensors, sizeof *w->rank);
    w->tname = pool_alloc(w, (size_t)m->n_tensors, sizeof *w->tname);
    w->rank[0] = 4;
    for (int i = 0; i < m->n_layers; i++) {
        const struct ofa_layer *L = &m->layers[i];
        const char *kn = kind_name(L->kind);
        if (L->out != i + 1)
            return bad(w, "layer %d (%s) writes tensor %d, not %d", i, kn, L->out, i + 1);
        if (L->in < 0 || L->in > i || (L->kind == OFA_LAYER_ADD && (L->in2 < 0 || L->in2 > i)))
            return bad(w, "layer %d (%s) reads a tensor that is not yet defined", i, kn);
        const struct ofa_tshape ti = m->tensors[L->in], to = m->tensors[L->out];
        if (ti.H != L->H || ti.W != L->W || ti.C != L->Cin || to.H != L->Ho ||
            to.W != L->Wo || to.C != L->Cout)
            return bad(w, "layer %d (%s): shapes [%d,%d,%d] -> [%d,%d,%d] differ from its "
                       "tensors [%d,%d,%d] -> [%d,%d,%d]", i, kn, L->H, L->W, L->Cin, L->Ho,
                       L->Wo, L->Cout, ti.H, ti.W, ti.C, to.H, to.W, to.C);
        if (L->kind != OFA_LAYER_FC && w->rank[L->in] != 4)
            return bad(w, "layer %d (%s) reads the output of a classifier", i, kn);
        if ((int)L->act < OFA_ACT_NONE || (int)L->act > OFA_ACT_HSIGMOID)
            return bad(w, "layer %d (%s): unknown activation %d", i, kn, (int)L->act);
        const long KK = (long)L->K * L->K;
        int ok = 1;
        switch (L->kind) {
        case OFA_LAYER_CONV:
        case OFA_LAYER_DW: {
            const int dw = L->kind == OFA_LAYER_DW;
            const int Ho = L->stride >= 1 ? ofa_conv_out_size(L->H, L->K, L->stride, L->pad) : -1;
            const int Wo = L->stride >= 1 ? ofa_conv_out_size(L->W, L->K, L->stride, L->pad) : -1;
            ok = L->K >= 1 && L->stride >= 1 && L->pad >= 0 && Ho == L->Ho && Wo == L->Wo &&
                 (!dw || L->Cin == L->Cout) &&
                 weights_ok(m, L->w, KK * L->Cout * (dw ? 1 : L->Cin)) &&
                 (L->b < 0 || weights_ok(m, L->b, L->Cout));
            break;
        }
        case OFA_LAYER_SE:
            ok = L->R >= 1 && L->Cin == L->Cout && L->H == L->Ho && L->W == L->Wo &&
                 L->act == OFA_ACT_NONE && weights_ok(m, L->w, (long)L->R * L->Cin) &&
                 weights_ok(m, L->b, L->R) && weights_ok(m, L->w2, (long)L->R * L->Cin) &&
                 weights_ok(m, L->b2, L->Cin);
            break;
        case OFA_LAYER_ADD: {
            const struct ofa_tshape t2 = m->tensors[L->in2];
            ok = w->rank[L->in2] == 4 && t2.H == ti.H && t2.W == ti.W && t2.C == ti.C &&
                 L->Cin == L->Cout && L->H == L->Ho && L->W == L->Wo && L->act == OFA_ACT_NONE;
            break;
        }
        case OFA_LAYER_POOL:
            ok = L->Ho == 1 && L->Wo == 1 && L->Cin == L->Cout && L->act == OFA_ACT_NONE;
            break;
        case OFA_LAYER_FC:
            /* Flatten of [N,C,1,1] is [N,C]; a larger map would be flattened
             * in NCHW order, which the NHWC weights do not match. */
            ok = L->H == 1 && L->W == 1 && L->Ho == 1 && L->Wo == 1 &&
                 weights_ok(m, L->w, (long)L->Cout * L->Cin) &&
                 (L->b < 0 || weights_ok(m, L->b, L->Cout));
            break;
        default:
            return bad(w, "layer %d has unknown kind %d", i, (int)L->kind);
        }
        if (!ok)
            return bad(w, "layer %d (%s) is inconsistent (sizes, stride, padding, activation "
                       "or weight offsets)", i, kn);
        w->rank[L->out] = L->kind == OFA_LAYER_FC ? 2 : 4;
    }
    const int last = m->n_tensors - 1;
    const struct ofa_tshape tl = m->tensors[last];
    if (tl.H != 1 || tl.W != 1 || tl.C != m->num_classes || m->num_classes < 1)
        return bad(w, "the last tensor [%d, %d, %d] is not the logits [1, 1, %d]", tl.H, tl.W,
                   tl.C, m->num_classes);
    w->tname[0] = pool_fmt(w, "input");
    for (int t = 1; t < m->n_tensors; t++)
        w->tname[t] = pool_fmt(w, "t%d", t);
    if (w->rank[last] == 2)
        w->tname[last] = pool_fmt(w, "logits");
    return 0;
}

/* ---- Graph, model and file -------------------------------------------------- */

static Onnx__ValueInfoProto *value_info(struct wr *w, char *name, int ndim, const int64_t *dims)
{
    Onnx__ValueInfoProto *v = pool_alloc(w, 1, sizeof *v);
    onnx__value_info_proto__init(v);
    v->name = name;
    Onnx__TypeProto *tp = pool_alloc(w, 1, sizeof *tp);
    onnx__type_proto__init(tp);
    Onnx__TypeProto__Tensor *tt = pool_alloc(w, 1, sizeof *tt);
    onnx__type_proto__tensor__init(tt);
    tt->has_elem_type = 1;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    Onnx__TensorShapeProto *sh = pool_alloc(w, 1, sizeof *sh);
    onnx__tensor_shape_proto__init(sh);
    sh->n_dim = (size_t)ndim;
    sh->dim = pool_alloc(w, (size_t)ndim, sizeof *sh->dim);
    for (int i = 0; i < ndim; i++) {
        Onnx__TensorShapeProto__Dimension *d = pool_alloc(w, 1, sizeof *d);
        onnx__tensor_shape_proto__dimension__init(d);
        if (dims[i] < 0) { /* the batch */
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = pool_fmt(w, "N");
        } else {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = dims[i];
        }
        sh->dim[i] = d;
    }
    tt->shape = sh;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    v->type = tp;
    return v;
}

static void floats_text(struct sbuf *b, const float *v, int n)
{
    for (int i = 0; i < n; i++)
        sb_printf(b, "%s%.9g", i ? "," : "", (double)v[i]);
}

static Onnx__StringStringEntryProto *prop(struct wr *w, const char *key, char *value)
{
    Onnx__StringStringEntryProto *p = pool_alloc(w, 1, sizeof *p);
    onnx__string_string_entry_proto__init(p);
    p->key = pool_fmt(w, "%s", key);
    p->value = value;
    return p;
}

static void metadata(struct wr *w, Onnx__ModelProto *mp)
{
    const struct ofa_model *m = w->m;
    const int C = m->in_channels;
    mp->metadata_props = pool_alloc(w, 9, sizeof *mp->metadata_props);
    size_t n = 0;
    struct sbuf b = {0};
    sb_text(&b, m->subnet, sizeof m->subnet, 0);
    char *subnet = sb_keep(w, &b);
    sb_text(&b, m->device, sizeof m->device, 0);
    char *device = sb_keep(w, &b);
    floats_text(&b, m->norm_mean, C);
    char *mean = sb_keep(w, &b);
    floats_text(&b, m->norm_std, C);
    char *std = sb_keep(w, &b);
    char *layout = pool_fmt(w, "NCHW float32 [N, %d, %d, %d]; value = (pixel / 255 - "
                               "norm_mean[c]) / norm_std[c]", C, m->res, m->res);
    mp->metadata_props[n++] = prop(w, "ofa.subnet", subnet);
    mp->metadata_props[n++] = prop(w, "ofa.device", device);
    mp->metadata_props[n++] =
        prop(w, "ofa.supernet_fingerprint", pool_fmt(w, "%016" PRIx64, m->supernet_fingerprint));
    mp->metadata_props[n++] = prop(w, "ofa.input_layout", layout);
    mp->metadata_props[n++] = prop(w, "ofa.norm_mean", mean);
    mp->metadata_props[n++] = prop(w, "ofa.norm_std", std);
    if (m->class_names) {
        sb_putc(&b, '[');
        for (int k = 0; k < m->num_classes; k++) {
            sb_printf(&b, "%s\"", k ? ", " : "");
            sb_text(&b, m->class_names[k], OFA_CLASS_NAME_MAX, 1);
            sb_putc(&b, '"');
        }
        sb_putc(&b, ']');
        mp->metadata_props[n++] = prop(w, "ofa.class_names", sb_keep(w, &b));
    }
    mp->metadata_props[n++] = prop(w, "ofa.num_classes", pool_fmt(w, "%d", m->num_classes));
    mp->metadata_props[n++] = prop(w, "ofa.resolution", pool_fmt(w, "%d", m->res));
    mp->n_metadata_props = n;
    mp->doc_string = pool_fmt(w, "ofa subnet %s%s%s. Input 'input': %s, with norm_mean = (%s) "
                                 "and norm_std = (%s). Output 'logits': [N, %d] float32, "
                                 "before softmax.",
                              subnet, device[0] ? " for device " : "", device, layout, mean, std,
                              m->num_classes);
}

/* protobuf-c output buffer that streams into a FILE. */
struct file_buffer {
    ProtobufCBuffer base; /* first: protobuf-c calls back with its address */
    FILE *f;
    int err; /* errno of the first failed write */
};

static void file_append(ProtobufCBuffer *buf, size_t len, const uint8_t *data)
{
    struct file_buffer *fb = (struct file_buffer *)buf;
    if (!fb->err && len && fwrite(data, 1, len, fb->f) != len)
        fb->err = errno ? errno : EIO;
}

int ofa_onnx_write(const char *path, const struct ofa_model *m, struct ofa_error *err)
{
    OFA_ASSERT(path && m);
    struct wr w = {0};
    w.m = m, w.path = path, w.err = err;
    int rc = -1;
    if (check_and_name(&w) != 0)
        goto out;
    w.cap_nodes = 6 * (size_t)m->n_layers + 1;
    w.nodes = pool_alloc(&w, w.cap_nodes, sizeof *w.nodes);
    w.cap_inits = 4 * (size_t)m->n_layers;
    w.inits = pool_alloc(&w, w.cap_inits, sizeof *w.inits);
    for (int i = 0; i < m->n_layers; i++) {
        const struct ofa_layer *L = &m->layers[i];
        switch (L->kind) {
        case OFA_LAYER_CONV:
        case OFA_LAYER_DW:
            emit_conv(&w, i, L);
            break;
        case OFA_LAYER_SE:
            emit_se(&w, i, L);
            break;
        case OFA_LAYER_ADD: {
            char *in[2] = {w.tname[L->in], w.tname[L->in2]};
            add_node(&w, "Add", pool_fmt(&w, "l%d.add", i), 2, in, w.tname[L->out]);
            break;
        }
        case OFA_LAYER_POOL:
            add_node(&w, "GlobalAveragePool", pool_fmt(&w, "l%d.pool", i), 1, &w.tname[L->in],
                     w.tname[L->out]);
            break;
        case OFA_LAYER_FC:
            emit_fc(&w, i, L);
            break;
        }
    }
    char *logits = w.tname[m->n_tensors - 1];
    if (w.rank[m->n_tensors - 1] == 4) {
        char *flat = pool_fmt(&w, "logits");
        Onnx__NodeProto *n = add_node(&w, "Flatten", pool_fmt(&w, "logits.flatten"), 1, &logits,
                                      flat);
        attr_int(&w, n, "axis", 1);
        logits = flat;
    }

    Onnx__GraphProto graph;
    onnx__graph_proto__init(&graph);
    graph.name = pool_fmt(&w, "ofa");
    graph.n_node = w.n_nodes;
    graph.node = w.nodes;
    graph.n_initializer = w.n_inits;
    graph.initializer = w.inits;
    const int64_t in_dims[4] = {-1, m->in_channels, m->res, m->res};
    const int64_t out_dims[2] = {-1, m->num_classes};
    Onnx__ValueInfoProto *gin = value_info(&w, w.tname[0], 4, in_dims);
    Onnx__ValueInfoProto *gout = value_info(&w, logits, 2, out_dims);
    graph.n_input = 1;
    graph.input = &gin;
    graph.n_output = 1;
    graph.output = &gout;

    Onnx__OperatorSetIdProto opset;
    onnx__operator_set_id_proto__init(&opset);
    opset.domain = pool_fmt(&w, "%s", ""); /* the default ai.onnx domain */
    opset.has_version = 1;
    opset.version = OFA_ONNX_OPSET;
    Onnx__OperatorSetIdProto *opsets[1] = {&opset};

    Onnx__ModelProto model;
    onnx__model_proto__init(&model);
    model.has_ir_version = 1;
    model.ir_version = OFA_ONNX_IR_VERSION;
    model.n_opset_import = 1;
    model.opset_import = opsets;
    model.producer_name = pool_fmt(&w, "%s", PACKAGE_NAME);
    model.producer_version = pool_fmt(&w, "%s", PACKAGE_VERSION);
    model.graph = &graph;
    metadata(&w, &model);

    struct ofa_atomic_file af;
    FILE *f = ofa_atomic_open(&af, path, err);
    if (!f)
        goto out;
    struct file_buffer fb = {{file_append}, f, 0};
    errno = 0;
    onnx__model_proto__pack_to_buffer(&model, &fb.base);
    if (fb.err) {
        ofa_error_set(err, path, 0, "write of the temporary file %s failed: %s", af.tmp,
                      strerror(fb.err));
        ofa_atomic_abort(&af);
        goto out;
    }
    rc = ofa_atomic_commit(&af, err);
out:
    pool_free(&w);
    return rc;
}
