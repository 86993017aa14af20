/* fuzz_model.c: libFuzzer target for the model.h5 reader (ofa_model_load,
 * which validates the layer graph), and for what runs an accepted model:
 * the float forward and the int8 runtime (ofa-run). An accepted model must
 * be safe to run.
 *
 * Two kinds of input:
 *  - a file starting with the "OFA-HDF5" magic of the integrity header
 *    (lib/h5file.h), as the real writer's files do (seeds: files of
 *    ofa_model_save, and a truncated one). Skipped by default; loaded as it
 *    is with OFA_FUZZ_RAW=1 (byte mutations then mostly stop at the
 *    header's CRC-32, which is the point of it); with OFA_FUZZ_RESEAL=1
 *    (which implies OFA_FUZZ_RAW) an input of 512 bytes or more first gets
 *    a valid header for its bytes after the first 512, so that libhdf5's
 *    parser and our checks behind it are exercised. libhdf5 crashes on such
 *    files within seconds (upstream, see README.md; run with -fork=1
 *    -ignore_crashes=1);
 *  - anything else is a list of decisions (structure-aware, as fuzz_h5s): a
 *    model is generated layer by layer, consistent by construction (conv,
 *    dw, se, add, pool, fc over the tensors so far, weight offsets laid out,
 *    optionally quantized), then up to three values are corrupted (any
 *    field of any layer, a tensor shape, a root attribute, an array's
 *    length, a weight, a scale or a zero point), and the file is written
 *    through the HDF5 API with optional damage to its structure (an object
 *    missing, of another type or shape, chunked or compressed, a soft or
 *    external link, the layer compound with a field missing or retyped,
 *    variable-length strings, an unexpected object), with the 512-byte user
 *    block, and given a valid integrity header (ofa_h5_header_seal) so that
 *    it reaches libhdf5 and our checks. All-zero (or empty) decisions give
 *    a valid model.
 * A model that loads is run (float, and int8 when quantized) on one image
 * when it is small enough (a few million multiply-adds), and must save and
 * load back.
 *
 * OFA_FUZZ_SEED_DIR=DIR: write seeds into DIR at start-up (real-writer
 * files, and decision lists that reach every layer kind).
 * OFA_FUZZ_VERBOSE=1: print what each input reaches.
 * OFA_FUZZ_SAVE_FILE=F: copy the model.h5 built from a decision list to F.
 * OFA_FUZZ_RAW=1: also load "OFA-HDF5" files as they are (above).
 * OFA_FUZZ_RESEAL=1: also load "OFA-HDF5" files, with their header made
 * valid first (above).
 */
#include <config.h>

#include "blas.h"
#include "data.h"
#include "h5file.h"
#include "model.h"
#include "quant.h"
#include "rng.h"

#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__asan_default_options(void);
const char *__lsan_default_suppressions(void);
const char *__ubsan_default_options(void);

/* As fuzz_ckpt: libhdf5 answers some crafted headers with absurd
 * allocations that it handles failing, and leaks on some error paths. */
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}

const char *__lsan_default_suppressions(void)
{
    return "leak:libhdf5\n";
}

/* Undefined behaviour in our code is a finding, not a message. */
const char *__ubsan_default_options(void)
{
    return "halt_on_error=1:print_stacktrace=1";
}

static char path[96], path2[112];
static int verbose, raw, reseal;

/* ---- The decision stream --------------------------------------------------------- */

struct in {
    const uint8_t *p;
    size_t n;
};

static unsigned take(struct in *in, unsigned mod)
{
    if (in->n == 0)
        return 0;
    unsigned v = *in->p++;
    in->n--;
    return v % mod;
}

static uint64_t take_u64(struct in *in, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)take(in, 256) << (8 * i);
    return v;
}

/* A byte of filler: from the input, or a fixed pattern once it is spent. */
static uint8_t fill_byte(struct in *in, size_t i)
{
    return in->n ? (uint8_t)take(in, 256) : (uint8_t)(i * 37 + 11);
}

/* An interesting integer for a corrupted field (cur: its value). */
static int64_t pick_int(struct in *in, int64_t cur)
{
    static const int64_t v[] = {-1, 0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 127, 128, -128, 255,
                                65536, 65537, INT32_MAX, INT32_MIN, (int64_t)1 << 28,
                                (int64_t)1 << 32, INT64_MAX, INT64_MIN};
    const unsigned n = sizeof v / sizeof v[0];
    unsigned k = take(in, n + 4);
    if (k < n)
        return v[k];
    if (k == n)
        return cur + 1;
    if (k == n + 1)
        return cur - 1;
    if (k == n + 2)
        return cur * 2;
    return (int64_t)take_u64(in, 8);
}

static float pick_float(struct in *in)
{
    static const float v[] = {0.0f, -0.0f, -1.0f, 1e-38f, 1e-45f, 1e38f, 3.4e38f, 0.5f};
    unsigned k = take(in, 12);
    if (k < 8)
        return v[k];
    if (k == 8)
        return NAN;
    if (k == 9)
        return INFINITY;
    uint32_t bits = (uint32_t)take_u64(in, 4);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* ---- The layer table as the file stores it (lib/model_h5.c) ----------------------- */

static const char *const kind_names[] = {"conv", "dw", "se", "add", "pool", "fc"};
static const char *const act_names[] = {"none", "relu", "hswish", "hsigmoid"};

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

static hid_t enum_type(const char *const *names, int n, hid_t base, int shift)
{
    hid_t t = H5Tenum_create(base);
    for (int i = 0; i < n; i++) {
        int64_t v = i + shift;
        unsigned char b[8];
        for (int k = 0; k < 8; k++)
            b[k] = (unsigned char)(v >> (8 * k));
        /* base is little-endian */
        H5Tenum_insert(t, names[i], b);
    }
    return t;
}

/* The file's compound type of /layers. damage: 0 none, 1 a field missing,
 * 2 a field of another type, 3 an extra field, 4 an enumeration with other
 * values. field: the field concerned. Memory layout: struct layer_rec, so
 * the buffer is written with this same type and its offsets. */
static hid_t layer_type(unsigned damage, int field)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(struct layer_rec) + (damage == 3 ? 8 : 0));
    hid_t kt = enum_type(kind_names, 6, H5T_STD_I32LE, damage == 4 && field % 2 ? 1 : 0);
    hid_t at = enum_type(act_names, damage == 4 && field % 2 == 0 ? 3 : 4, H5T_STD_I32LE, 0);
    for (int i = 0; i < N_FIELDS; i++) {
        if (damage == 1 && i == field)
            continue;
        hid_t ft;
        switch (fields[i].t) {
        case F_KIND: ft = kt; break;
        case F_ACT: ft = at; break;
        case F_I32: ft = H5T_STD_I32LE; break;
        case F_I64: ft = H5T_STD_I64LE; break;
        default: ft = H5T_IEEE_F32LE; break;
        }
        if (damage == 2 && i == field)
            ft = fields[i].t == F_I64 ? H5T_STD_I32LE : fields[i].t == F_F32 ? H5T_STD_I32LE
                                                                           : H5T_IEEE_F32LE;
        H5Tinsert(t, fields[i].name, fields[i].off, ft);
    }
    if (damage == 3)
        H5Tinsert(t, "extra", sizeof(struct layer_rec), H5T_STD_I64LE);
    H5Tclose(kt);
    H5Tclose(at);
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

/* ---- Generating a model ------------------------------------------------------------ */

enum { MAX_BODY = 12 };

static int gen_classes; /* names generate() made (num_classes may be corrupted since) */

struct gen {
    struct ofa_model *m;
    int cap;
};

static int add_tensor(struct gen *g, int H, int W, int C)
{
    struct ofa_model *m = g->m;
    m->tensors[m->n_tensors] = (struct ofa_tshape){H, W, C};
    return m->n_tensors++;
}

static long alloc_w(struct ofa_model *m, long n)
{
    long off = m->n_weights;
    m->n_weights += n;
    return off;
}

/* Append a layer of kind k on tensor `in`; returns 0 or -1 (not possible). */
static int add_layer(struct gen *g, struct in *in, int kind, int tin)
{
    struct ofa_model *m = g->m;
    if (m->n_layers >= g->cap)
        return -1;
    const struct ofa_tshape t = m->tensors[tin];
    struct ofa_layer L;
    memset(&L, 0, sizeof L);
    L.kind = (enum ofa_layer_kind)kind;
    L.in = tin, L.in2 = -1, L.out = m->n_layers + 1;
    L.H = t.H, L.W = t.W, L.Cin = t.C;
    L.K = 1, L.stride = 1, L.pad = 0;
    L.act = OFA_ACT_NONE;
    L.w = L.b = L.w2 = L.b2 = -1;
    L.qw = L.qw2 = L.qb = L.qb2 = L.ws = L.ws2 = -1;
    L.part = -1;
    int Ho = t.H, Wo = t.W, Co = t.C;
    switch (kind) {
    case OFA_LAYER_CONV: {
        static const int ks[] = {1, 3, 5, 7, 9, 15};
        L.K = ks[take(in, 6)];
        L.stride = 1 + (int)take(in, 3);
        L.pad = L.K > 1 && take(in, 3) ? L.K / 2 : 0;
        if (t.H + 2 * L.pad < L.K || t.W + 2 * L.pad < L.K)
            L.pad = L.K / 2;
        Co = 1 + (int)take(in, 8);
        L.act = (enum ofa_act)take(in, 4);
        Ho = ofa_conv_out_size(t.H, L.K, L.stride, L.pad);
        Wo = ofa_conv_out_size(t.W, L.K, L.stride, L.pad);
        L.w = alloc_w(m, (long)Co * L.K * L.K * t.C);
        L.b = alloc_w(m, Co);
        break;
    }
    case OFA_LAYER_DW:
        L.K = 3 + 2 * (int)take(in, 3);
        L.stride = 1 + (int)take(in, 2);
        L.pad = L.K / 2;
        L.act = (enum ofa_act)take(in, 4);
        Ho = (t.H - 1) / L.stride + 1, Wo = (t.W - 1) / L.stride + 1;
        L.w = alloc_w(m, (long)L.K * L.K * t.C);
        L.b = alloc_w(m, t.C);
        break;
    case OFA_LAYER_SE: {
        long most = (long)t.H * t.W * t.C;
        L.R = 1 + (int)take(in, most < 8 ? (unsigned)most : 8u);
        L.w = alloc_w(m, (long)L.R * t.C);
        L.b = alloc_w(m, L.R);
        L.w2 = alloc_w(m, (long)t.C * L.R);
        L.b2 = alloc_w(m, t.C);
        break;
    }
    case OFA_LAYER_ADD: {
        /* the latest earlier tensor of the same shape, else tin itself */
        L.in2 = tin;
        for (int k = m->n_tensors - 1; k >= 0; k--)
            if (k != tin && m->tensors[k].H == t.H && m->tensors[k].W == t.W &&
                m->tensors[k].C == t.C) {
                L.in2 = k;
                break;
            }
        break;
    }
    case OFA_LAYER_POOL:
        Ho = Wo = 1;
        break;
    case OFA_LAYER_FC:
        if (t.H != 1 || t.W != 1)
            return -1;
        Co = 1 + (int)take(in, 8);
        L.act = (enum ofa_act)take(in, 4);
        Ho = Wo = 1;
        L.w = alloc_w(m, (long)Co * t.C);
        L.b = alloc_w(m, Co);
        break;
    }
    L.Ho = Ho, L.Wo = Wo, L.Cout = Co;
    add_tensor(g, Ho, Wo, Co);
    m->layers[m->n_layers++] = L;
    return 0;
}

/* The int8 part, laid out as ofa_quant_calibrate does, values from input. */
static void quantize(struct ofa_model *m, struct in *in)
{
    long nq = 0, nb = 0, ns = 0;
    for (int i = 0; i < m->n_layers; i++) {
        struct ofa_layer *L = &m->layers[i];
        long w = 0, b = 0, w2 = 0, b2 = 0;
        switch (L->kind) {
        case OFA_LAYER_CONV: w = (long)L->Cout * L->K * L->K * L->Cin, b = L->Cout; break;
        case OFA_LAYER_DW: w = (long)L->K * L->K * L->Cout, b = L->Cout; break;
        case OFA_LAYER_FC: w = (long)L->Cout * L->Cin, b = L->Cout; break;
        case OFA_LAYER_SE: w = (long)L->R * L->Cin, b = L->R, w2 = w, b2 = L->Cin; break;
        default: break;
        }
        if (w) {
            L->qw = nq, nq += w;
            L->qb = nb, nb += b;
            L->ws = ns, ns += b;
        }
        if (w2) {
            L->qw2 = nq, nq += w2;
            L->qb2 = nb, nb += b2;
            L->ws2 = ns, ns += b2;
        }
        if (L->act == OFA_ACT_HSWISH || L->kind == OFA_LAYER_SE)
            L->pre = (struct ofa_qp){(1 + take(in, 256)) / 64.0f, (int32_t)take(in, 256) - 128};
        if (L->kind == OFA_LAYER_SE) {
            L->pool = (struct ofa_qp){(1 + take(in, 256)) / 128.0f, (int32_t)take(in, 256) - 128};
            L->hid = (struct ofa_qp){(1 + take(in, 256)) / 128.0f, (int32_t)take(in, 256) - 128};
        }
    }
    m->quantized = 1;
    m->n_qweights = nq, m->n_qbias = nb, m->n_wscale = ns;
    m->qweights = malloc((size_t)nq + 1);
    m->qbias = malloc(((size_t)nb + 1) * sizeof *m->qbias);
    m->wscale = malloc(((size_t)ns + 1) * sizeof *m->wscale);
    m->tq = malloc((size_t)m->n_tensors * sizeof *m->tq);
    for (long k = 0; k < nq; k++)
        m->qweights[k] = (int8_t)((int)(fill_byte(in, (size_t)k) % 255) - 127);
    for (long k = 0; k < nb; k++)
        m->qbias[k] = (int32_t)((int)fill_byte(in, (size_t)k) - 128) * 97;
    for (long k = 0; k < ns; k++)
        m->wscale[k] = (1 + fill_byte(in, (size_t)k)) * 1e-3f;
    for (int t = 0; t < m->n_tensors; t++)
        m->tq[t] = (struct ofa_qp){(1 + take(in, 256)) / 100.0f, (int32_t)take(in, 256) - 128};
}

/* A consistent model from the decisions (all zero: one fc layer). */
static void generate(struct ofa_model *m, struct in *in)
{
    memset(m, 0, sizeof *m);
    const int C = 1 + (int)take(in, 3), res = 1 + (int)take(in, 10),
              K = 1 + (int)take(in, 5), nbody = (int)take(in, MAX_BODY + 1);
    const int quant = (int)take(in, 2);
    struct gen g = {m, nbody + 2};
    m->layers = calloc((size_t)g.cap, sizeof *m->layers);
    m->tensors = calloc((size_t)g.cap + 1, sizeof *m->tensors);
    snprintf(m->subnet, sizeof m->subnet, "r%d-d1-k3-e3", res);
    snprintf(m->device, sizeof m->device, "fuzz");
    m->supernet_fingerprint = 0x5eed;
    m->in_channels = C, m->res = res, m->num_classes = K;
    for (int k = 0; k < 3; k++) {
        m->norm_mean[k] = (float)take(in, 256) / 256.0f;
        m->norm_std[k] = (float)(1 + take(in, 256)) / 256.0f;
    }
    add_tensor(&g, res, res, C);
    int cur = 0;
    for (int i = 0; i < nbody; i++) {
        int kind = (int)take(in, 6);
        int tin = take(in, 4) == 3 ? (int)take(in, (unsigned)m->n_tensors) : cur;
        if (kind == OFA_LAYER_FC && (m->tensors[tin].H != 1 || m->tensors[tin].W != 1))
            kind = OFA_LAYER_POOL;
        if (add_layer(&g, in, kind, tin) == 0)
            cur = m->n_tensors - 1;
    }
    /* the logits: pool to 1x1, then fc to K classes */
    if (m->tensors[cur].H != 1 || m->tensors[cur].W != 1) {
        if (add_layer(&g, in, OFA_LAYER_POOL, cur) == 0)
            cur = m->n_tensors - 1;
    }
    if (m->tensors[cur].C != K || m->n_layers == 0 || m->layers[m->n_layers - 1].kind != OFA_LAYER_FC) {
        struct ofa_layer *L = NULL;
        if (add_layer(&g, in, OFA_LAYER_FC, cur) == 0) {
            /* its width is the class count */
            L = &m->layers[m->n_layers - 1];
            m->n_weights -= (long)L->Cout * L->Cin + L->Cout;
            L->Cout = K;
            L->w = alloc_w(m, (long)K * L->Cin);
            L->b = alloc_w(m, K);
            m->tensors[m->n_tensors - 1].C = K;
        }
    }
    m->weights = malloc(((size_t)m->n_weights + 1) * sizeof *m->weights);
    for (long k = 0; k < m->n_weights; k++)
        m->weights[k] = ((int)fill_byte(in, (size_t)k) - 128) / 128.0f;
    m->class_names = calloc((size_t)K, OFA_CLASS_NAME_MAX);
    gen_classes = K;
    for (int k = 0; k < K; k++)
        snprintf(m->class_names[k], OFA_CLASS_NAME_MAX, "class %d", k);
    if (quant)
        quantize(m, in);
}

/* ---- Writing it through the HDF5 API, with damage ------------------------------------ */

struct writer {
    struct in *in;
    int structural; /* objects may be damaged */
    hid_t f;
};

static hid_t str_type(size_t n, unsigned pad)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, n);
    H5Tset_strpad(t, pad == 1 ? H5T_STR_NULLPAD : pad == 2 ? H5T_STR_SPACEPAD : H5T_STR_NULLTERM);
    return t;
}

static hid_t any_type(struct in *in)
{
    switch (take(in, 10)) {
    case 0: return H5Tcopy(H5T_STD_U8LE);
    case 1: return H5Tcopy(H5T_STD_I8LE);
    case 2: return H5Tcopy(H5T_STD_I16BE);
    case 3: return H5Tcopy(H5T_STD_I32BE);
    case 4: return H5Tcopy(H5T_STD_U32LE);
    case 5: return H5Tcopy(H5T_STD_I64LE);
    case 6: return H5Tcopy(H5T_IEEE_F32BE);
    case 7: return H5Tcopy(H5T_IEEE_F64LE);
    case 8: return H5Tcopy(H5T_STD_U64LE);
    default: return str_type(1 + take(in, 64), take(in, 3));
    }
}

/* Attribute of the root: the right type `good` with count values from val
 * (count 0: scalar), or (structural) absent, any type and shape, or the
 * right type in another shape. */
static void put_attr(struct writer *w, const char *name, hid_t good, int count, const void *val)
{
    struct in *in = w->in;
    unsigned mode = w->structural ? take(in, 6) : 0;
    if (mode == 1)
        return;
    hid_t t = mode == 2 ? any_type(in) : H5Tcopy(good);
    hsize_t d = (hsize_t)count;
    size_t n = count ? (size_t)count : 1;
    hid_t sp;
    if (mode == 2 || mode == 3) {
        unsigned k = take(in, 4);
        d = take(in, 5);
        sp = k == 0 ? H5Screate(H5S_SCALAR) : k == 1 ? H5Screate(H5S_NULL)
                                                     : H5Screate_simple(1, &d, NULL);
        n = k == 0 ? 1 : k == 1 ? 0 : (size_t)d;
    } else {
        sp = count ? H5Screate_simple(1, &d, NULL) : H5Screate(H5S_SCALAR);
    }
    const size_t esz = H5Tget_size(t), gsz = H5Tget_size(good);
    hid_t a = H5Acreate2(w->f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0 && n > 0) {
        uint8_t *buf = calloc(n, esz > gsz ? esz : gsz);
        if (mode == 2)
            for (size_t i = 0; i < n * esz; i++)
                buf[i] = fill_byte(in, i);
        else
            for (size_t i = 0; i < n; i++)
                memcpy(buf + i * gsz, (const uint8_t *)val + (i % (count ? (size_t)count : 1)) * gsz,
                       gsz);
        H5Awrite(a, t, buf);
        free(buf);
    }
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
}

static void put_attr_str(struct writer *w, const char *name, const char *s)
{
    unsigned how = w->structural ? take(w->in, 5) : 0;
    if (how == 1) { /* variable length */
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, H5T_VARIABLE);
        hid_t sp = H5Screate(H5S_SCALAR);
        hid_t a = H5Acreate2(w->f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
        if (a >= 0) {
            H5Awrite(a, t, &s);
            H5Aclose(a);
        }
        H5Sclose(sp);
        H5Tclose(t);
        return;
    }
    size_t n = strlen(s) + 1;
    if (how == 2) /* a longer text, beyond the reader's buffers */
        n = 64 + take(w->in, 255);
    char *buf = calloc(n + 1, 1);
    memcpy(buf, s, strlen(s) < n ? strlen(s) : n);
    if (how == 2)
        memset(buf + strlen(s), 'x', n - strlen(s) - 1);
    hid_t t = str_type(n, how == 3 ? 1 : how == 4 ? 2 : 0);
    put_attr(w, name, t, 0, buf);
    H5Tclose(t);
    free(buf);
}

/* Dataset `name` at loc as the writer makes it (file type ft, memory type
 * mt, rank, dims, buf), or (structural) absent, of any type, in another
 * shape, chunked or compressed, or a soft or external link. */
static void put_ds(struct writer *w, hid_t loc, const char *name, hid_t ft, hid_t mt, int rank,
                   const hsize_t *dims, const void *buf)
{
    struct in *in = w->in;
    unsigned mode = w->structural ? take(in, 10) : 0;
    hsize_t d[3];
    for (int i = 0; i < rank; i++)
        d[i] = dims[i];
    int r = rank;
    hid_t t = H5Tcopy(ft), m = H5Tcopy(mt);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_obj_track_times(dcpl, 0);
    const void *src = buf;
    uint8_t *tmp = NULL;
    switch (mode) {
    case 1: /* absent */
        goto done;
    case 2: { /* any type, any small shape, input bytes */
        H5Tclose(t);
        H5Tclose(m);
        t = any_type(in);
        m = H5Tcopy(t);
        r = 1 + (int)take(in, 3);
        size_t n = 1;
        for (int i = 0; i < r; i++)
            n *= (d[i] = take(in, 6));
        tmp = calloc(n + 1, H5Tget_size(t));
        for (size_t i = 0; i < n * H5Tget_size(t); i++)
            tmp[i] = fill_byte(in, i);
        src = tmp;
        break;
    }
    case 3: { /* the right type, another shape; contents from buf as far as they go */
        size_t old = 1, n = 1;
        for (int i = 0; i < r; i++)
            old *= d[i];
        unsigned k = take(in, 4);
        if (k == 0 && r < 3)
            d[r++] = 1;
        else if (k == 1 && r > 1)
            r--;
        else
            d[take(in, (unsigned)r)] += k == 2 ? 1 : (hsize_t)-1;
        for (int i = 0; i < r; i++)
            n *= d[i];
        if (n > (1u << 20))
            goto done;
        size_t esz = H5Tget_size(mt);
        tmp = calloc(n + 1, esz);
        if (buf)
            memcpy(tmp, buf, (n < old ? n : old) * esz);
        src = tmp;
        break;
    }
    case 4: /* chunked, maybe compressed */
    case 5: {
        hsize_t c[3];
        for (int i = 0; i < r; i++)
            c[i] = d[i] ? d[i] : 1;
        H5Pset_chunk(dcpl, r, c);
        if (mode == 5)
            H5Pset_deflate(dcpl, 1);
        break;
    }
    case 6: /* a soft link to an allowed name, or dangling */
        H5Lcreate_soft(take(in, 2) ? "/tensors" : "/nowhere", loc, name, H5P_DEFAULT,
                       H5P_DEFAULT);
        goto done;
    case 7: /* an external link */
        H5Lcreate_external("fuzz-other.h5", "/weights", loc, name, H5P_DEFAULT, H5P_DEFAULT);
        goto done;
    default:
        break;
    }
    {
        hid_t sp = H5Screate_simple(r, d, NULL);
        hid_t ds = H5Dcreate2(loc, name, t, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        if (ds >= 0) {
            size_t n = 1;
            for (int i = 0; i < r; i++)
                n *= d[i];
            if (n && src)
                H5Dwrite(ds, m, H5S_ALL, H5S_ALL, H5P_DEFAULT, src);
            H5Dclose(ds);
        }
        H5Sclose(sp);
    }
done:
    free(tmp);
    H5Pclose(dcpl);
    H5Tclose(t);
    H5Tclose(m);
}

static const char *class_name(const struct ofa_model *m, size_t k)
{
    return k < (size_t)gen_classes ? m->class_names[k] : "extra";
}

static void write_class_names(struct writer *w, const struct ofa_model *m)
{
    const size_t n = m->num_classes < 0 ? 0 : m->num_classes > 4096 ? 4096 : (size_t)m->num_classes;
    unsigned how = w->structural ? take(w->in, 5) : 0;
    hsize_t d = n;
    if (how == 1) { /* variable length, one of them long */
        char **v = calloc(n, sizeof *v);
        for (size_t k = 0; k < n; k++)
            v[k] = (char *)class_name(m, k);
        char longname[48];
        memset(longname, 'n', sizeof longname - 1);
        longname[sizeof longname - 1] = '\0';
        if (n && take(w->in, 2))
            v[take(w->in, (unsigned)n)] = longname;
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, H5T_VARIABLE);
        put_ds(w, w->f, "class_names", t, t, 1, &d, v);
        H5Tclose(t);
        free(v);
        return;
    }
    /* fixed length: the writer's 32 bytes, or another size (names cut or long) */
    size_t sz = how == 2 ? 1 + take(w->in, 48) : OFA_CLASS_NAME_MAX;
    char *buf = calloc(n + 1, sz);
    for (size_t k = 0; k < n; k++)
        strncpy(buf + k * sz, class_name(m, k), sz);
    if (how == 3 && n) /* a name filling its slot, no terminator */
        memset(buf + take(w->in, (unsigned)n) * sz, 'z', sz);
    hid_t t = str_type(sz, how == 4 ? 1 : 0);
    put_ds(w, w->f, "class_names", t, t, 1, &d, buf);
    H5Tclose(t);
    free(buf);
}

/* Write model.h5 of m (and damage decisions) into path (the core driver
 * writes the file when it is closed: an image taken while it is open is not
 * final in the newest format), with the user block of the integrity
 * header, which build_file then fills. Returns 0, or -1 when nothing was
 * written. */
static int write_model(const struct ofa_model *m, const struct layer_rec *rec, struct in *in,
                       int structural, int newest)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), fcpl = H5Pcreate(H5P_FILE_CREATE);
    H5Pset_fapl_core(fapl, 1 << 16, 1);
    H5Pset_userblock(fcpl, OFA_H5_UB_SIZE);
    H5Pset_obj_track_times(fcpl, 0);
    if (newest)
        H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, fapl);
    H5Pclose(fcpl);
    H5Pclose(fapl);
    if (f < 0)
        return -1;
    struct writer w = {in, structural, f};
    static const char *const formats[] = {OFA_MODEL_FORMAT, "ofa-subnet", "", "ofa-model "};
    put_attr_str(&w, "format", formats[structural ? take(in, 4) : 0]);
    const int32_t ver = structural && take(in, 4) == 0 ? (int32_t)pick_int(in, 1) : 1;
    put_attr(&w, "format_version", H5T_STD_I32LE, 0, &ver);
    put_attr_str(&w, "created_by", "ofa fuzz");
    put_attr_str(&w, "subnet", m->subnet);
    put_attr_str(&w, "device", m->device);
    put_attr(&w, "supernet_fingerprint", H5T_STD_U64LE, 0, &m->supernet_fingerprint);
    const int32_t ic = m->in_channels, res = m->res, nc = m->num_classes, q = m->quantized;
    put_attr(&w, "in_channels", H5T_STD_I32LE, 0, &ic);
    const int64_t res64 = res; /* also as a 64-bit integer, which the reader takes */
    put_attr(&w, "res", structural && take(in, 8) == 0 ? H5T_STD_I64LE : H5T_STD_I32LE, 0,
             &res64);
    put_attr(&w, "num_classes", H5T_STD_I32LE, 0, &nc);
    put_attr(&w, "norm_mean", H5T_IEEE_F32LE, 3, m->norm_mean);
    put_attr(&w, "norm_std", H5T_IEEE_F32LE, 3, m->norm_std);
    put_attr(&w, "quantized", H5T_STD_I32LE, 0, &q);

    const size_t nt = (size_t)m->n_tensors;
    int32_t *shapes = malloc(nt * 3 * sizeof *shapes);
    for (size_t t = 0; t < nt; t++) {
        shapes[3 * t] = m->tensors[t].H;
        shapes[3 * t + 1] = m->tensors[t].W;
        shapes[3 * t + 2] = m->tensors[t].C;
    }
    hsize_t ds2[2] = {nt, 3};
    put_ds(&w, f, "tensors", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, ds2, shapes);
    free(shapes);
    unsigned ld = structural ? take(in, 8) : 0;
    hid_t lt = layer_type(ld <= 4 ? ld : 0, (int)take(in, N_FIELDS));
    hsize_t dl = (hsize_t)m->n_layers;
    put_ds(&w, f, "layers", lt, lt, 1, &dl, rec);
    H5Tclose(lt);
    hsize_t dw = (hsize_t)m->n_weights;
    put_ds(&w, f, "weights", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, &dw, m->weights);
    write_class_names(&w, m);
    if (m->quantized || (structural && take(in, 8) == 0)) {
        hid_t g = H5Gcreate2(f, "quant", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        float *scale = malloc(nt * sizeof *scale + 1);
        int32_t *zp = malloc(nt * sizeof *zp + 1);
        for (size_t t = 0; t < nt; t++)
            scale[t] = m->tq ? m->tq[t].scale : 1, zp[t] = m->tq ? m->tq[t].zp : 0;
        hsize_t dt = nt, dq = (hsize_t)m->n_qweights, db = (hsize_t)m->n_qbias,
                dsc = (hsize_t)m->n_wscale;
        put_ds(&w, g, "tensor_scale", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, &dt, scale);
        put_ds(&w, g, "tensor_zp", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &dt, zp);
        put_ds(&w, g, "qweights", H5T_STD_I8LE, H5T_NATIVE_INT8, 1, &dq, m->qweights);
        put_ds(&w, g, "qbias", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &db, m->qbias);
        put_ds(&w, g, "wscale", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, &dsc, m->wscale);
        if (structural && take(in, 8) == 0) {
            hid_t x = H5Gcreate2(g, "extra", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            if (x >= 0)
                H5Gclose(x);
        }
        free(scale);
        free(zp);
        H5Gclose(g);
    }
    if (structural && take(in, 8) == 0) { /* an unexpected object at the root */
        hid_t g = H5Gcreate2(f, take(in, 2) ? "extra" : "quant2", H5P_DEFAULT, H5P_DEFAULT,
                             H5P_DEFAULT);
        if (g >= 0)
            H5Gclose(g);
    }
    return H5Fclose(f) < 0 ? -1 : 0;
}

/* Corrupt one value of m or of its layer records. */
static void corrupt(struct ofa_model *m, struct layer_rec *rec, struct in *in)
{
    switch (take(in, 8)) {
    case 0:
    case 1:
    case 2: { /* a field of a layer */
        if (m->n_layers == 0)
            return;
        struct layer_rec *r = &rec[take(in, (unsigned)m->n_layers)];
        const struct field *fd = &fields[take(in, N_FIELDS)];
        uint8_t *p = (uint8_t *)r + fd->off;
        if (fd->t == F_I64) {
            int64_t v;
            memcpy(&v, p, 8);
            v = pick_int(in, v);
            memcpy(p, &v, 8);
        } else if (fd->t == F_F32) {
            float v = pick_float(in);
            memcpy(p, &v, 4);
        } else {
            int32_t v;
            memcpy(&v, p, 4);
            v = (int32_t)pick_int(in, v);
            memcpy(p, &v, 4);
        }
        break;
    }
    case 3: { /* a tensor's shape */
        struct ofa_tshape *t = &m->tensors[take(in, (unsigned)m->n_tensors)];
        int *d = take(in, 3) == 0 ? &t->H : take(in, 2) ? &t->W : &t->C;
        *d = (int)pick_int(in, *d);
        break;
    }
    case 4: { /* a root attribute */
        int *v[] = {&m->in_channels, &m->res, &m->num_classes, &m->quantized};
        int *p = v[take(in, 4)];
        *p = (int)pick_int(in, *p);
        if (take(in, 2))
            m->norm_std[take(in, 3)] = pick_float(in);
        break;
    }
    case 5: /* an array's length (the file holds fewer or more values) */
        switch (take(in, 4)) {
        case 0:
            if (m->n_weights > 1)
                m->n_weights -= 1 + (long)take(in, 4) % m->n_weights;
            break;
        case 1:
            if (m->n_qweights > 1)
                m->n_qweights--;
            break;
        case 2:
            if (m->n_qbias > 1)
                m->n_qbias--;
            break;
        default:
            if (m->n_wscale > 1)
                m->n_wscale--;
            break;
        }
        break;
    case 6: /* a weight or a scale */
        if (m->n_weights)
            m->weights[take(in, 256) % m->n_weights] = pick_float(in);
        if (m->wscale && m->n_wscale && take(in, 2))
            m->wscale[take(in, 256) % m->n_wscale] = pick_float(in);
        if (m->qweights && m->n_qweights && take(in, 2))
            m->qweights[take(in, 256) % m->n_qweights] = -128;
        break;
    default: /* a tensor's quantization (when the model was made quantized) */
        if (m->tq) {
            struct ofa_qp *q = &m->tq[take(in, (unsigned)m->n_tensors)];
            if (take(in, 2))
                q->scale = pick_float(in);
            else
                q->zp = (int32_t)pick_int(in, q->zp);
        }
        break;
    }
}

/* ---- Running an accepted model ------------------------------------------------------ */

static void check_closed(const char *after)
{
    ssize_t n = H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (n != 0) {
        fprintf(stderr, "fuzz_model: %zd HDF5 objects left open by %s\n", n, after);
        abort();
    }
}

static double model_macs(const struct ofa_model *m)
{
    double s = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const struct ofa_layer *L = &m->layers[i];
        double in = (double)L->H * L->W * L->Cin, out = (double)L->Ho * L->Wo * L->Cout;
        switch (L->kind) {
        case OFA_LAYER_CONV: s += out * L->K * L->K * L->Cin; break;
        case OFA_LAYER_DW: s += out * L->K * L->K; break;
        case OFA_LAYER_SE: s += in + 2.0 * L->R * L->Cin; break;
        case OFA_LAYER_FC: s += (double)L->Cout * L->Cin; break;
        default: s += in; break;
        }
        s += in + out;
    }
    return s;
}

static void run_model(const struct ofa_model *m, struct in *in)
{
    if (model_macs(m) > 4e6)
        return;
    const size_t img = (size_t)m->res * m->res * m->in_channels;
    const size_t scratch = ofa_model_scratch_size(m, 1);
    if (scratch > ((size_t)64 << 20) / sizeof(float))
        return;
    float *x = malloc((img + 1) * sizeof *x), *logits = malloc((size_t)m->num_classes * sizeof *logits);
    float *s = malloc((scratch + 1) * sizeof *s);
    for (size_t i = 0; i < img; i++)
        x[i] = ((int)fill_byte(in, i) - 128) / 64.0f;
    ofa_model_forward(m, logits, x, 1, s);
    if (m->quantized) {
        struct ofa_qrun *q = ofa_qrun_create(m);
        ofa_qrun_forward(q, logits, x, 1);
        int8_t *ql = malloc((size_t)m->num_classes);
        ofa_qrun_forward_q(q, ql, x);
        free(ql);
        ofa_qrun_free(q);
    }
    if (verbose)
        fprintf(stderr, "ran: %d layers, %.0f MACs, logit[0] %g\n", m->n_layers, model_macs(m),
                (double)logits[0]);
    free(x), free(logits), free(s);
}

/* ---- Set-up, seeds, the target ------------------------------------------------------ */

static void write_file(const char *p, const uint8_t *data, size_t size)
{
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort();
}

static void cleanup(void)
{
    if (path[0])
        unlink(path);
    if (path2[0])
        unlink(path2);
}

/* Build the file of a decision list into path, with a valid integrity
 * header as the real writer puts it (the file must reach libhdf5 and our
 * checks, not stop at the header); 0 or -1 (nothing built). */
static int build_file(const uint8_t *data, size_t size)
{
    struct in in = {data, size};
    const unsigned flags = take(&in, 256);
    const int structural = (flags & 3) == 3, newest = (flags & 4) != 0;
    const unsigned ncorrupt = (flags >> 3) & 3;
    struct ofa_model m;
    generate(&m, &in);
    struct layer_rec *rec = calloc((size_t)m.n_layers + 1, sizeof *rec);
    for (int i = 0; i < m.n_layers; i++)
        to_rec(&rec[i], &m.layers[i]);
    for (unsigned k = 0; k < ncorrupt; k++)
        corrupt(&m, rec, &in);
    int rc = write_model(&m, rec, &in, structural, newest);
    free(rec);
    ofa_model_free(&m);
    struct ofa_error err;
    if (rc == 0 && ofa_h5_header_seal(path, OFA_H5_MAGIC, &err) != 0) {
        fprintf(stderr, "fuzz_model: sealing the built file failed: %s\n", err.msg);
        abort();
    }
    return rc;
}

static int load_check(struct ofa_model *m, struct ofa_error *err)
{
    memset(m, 0, sizeof *m);
    int rc = ofa_model_load(path, m, err);
    check_closed("ofa_model_load");
    return rc;
}

/* Seeds: decision lists (found by a seeded search) whose models load, small
 * ones holding every layer kind, float and int8, and the real writer's
 * files of two of them (float, int8) and a truncated one. */
static void write_seeds(const char *dir)
{
    char p[4096];
    struct ofa_rng rng;
    ofa_rng_seed(&rng, 1);
    const int all = (1 << 6) - 1;
    int got[2] = {0, 0}, files[2] = {0, 0};
    uint8_t buf[256];
    for (int tries = 0; tries < 200000 && (got[0] != all || got[1] != all || !files[0] ||
                                           !files[1]); tries++) {
        size_t n = 24 + ofa_rng_u64(&rng) % (sizeof buf - 24);
        for (size_t i = 0; i < n; i++)
            buf[i] = (uint8_t)ofa_rng_u64(&rng);
        buf[0] &= ~(uint8_t)0x1f; /* no structural damage, no corruption */
        if (build_file(buf, n) != 0)
            continue;
        struct ofa_model m;
        struct ofa_error err;
        if (load_check(&m, &err) != 0)
            continue;
        int kinds = 0;
        for (int i = 0; i < m.n_layers; i++)
            kinds |= 1 << m.layers[i].kind;
        const int q = m.quantized != 0;
        if (m.n_layers < 4 || m.n_weights > 600 || model_macs(&m) > 2e5) {
            ofa_model_free(&m);
            continue;
        }
        if (kinds & ~got[q]) {
            snprintf(p, sizeof p, "%s/decisions-%s-%02x", dir, q ? "int8" : "float",
                     kinds & ~got[q]);
            write_file(p, buf, n);
            got[q] |= kinds;
        }
        if (!files[q] && m.n_layers >= 5) {
            snprintf(p, sizeof p, "%s/model-%s.h5", dir, q ? "int8" : "float");
            if (ofa_model_save(p, &m, &err) != 0) {
                fprintf(stderr, "fuzz_model: %s\n", err.msg);
                exit(1);
            }
            if (q) {
                FILE *f = fopen(p, "rb");
                static uint8_t img[1 << 20];
                size_t len = f ? fread(img, 1, sizeof img, f) : 0;
                if (f)
                    fclose(f);
                snprintf(p, sizeof p, "%s/model-int8-truncated.h5", dir);
                write_file(p, img, len * 3 / 4);
            }
            files[q] = 1;
        }
        ofa_model_free(&m);
    }
    fprintf(stderr, "fuzz_model: seeds written to %s (layer kinds %#x float, %#x int8)\n", dir,
            got[0], got[1]);
}

/* Remove what killed runs of this target left in dir: entries named
 * <prefix><pid>_... whose process is gone (a crash skips atexit). */
static void remove_stale(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    const size_t n = strlen(prefix);
    while (d && (e = readdir(d)) != NULL) {
        char *end;
        if (strncmp(e->d_name, prefix, n) != 0)
            continue;
        long pid = strtol(e->d_name + n, &end, 10);
        if (end == e->d_name + n || *end != '_' || pid <= 0 ||
            kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    /* loaders in this process, not in a guarding child: crashes must show */
    ofa_h5_guard_set(0);
    (void)argc;
    (void)argv;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    ofa_threads_set(1);
    verbose = getenv("OFA_FUZZ_VERBOSE") != NULL;
    const char *e = getenv("OFA_FUZZ_RESEAL");
    reseal = e && *e == '1';
    raw = getenv("OFA_FUZZ_RAW") != NULL || reseal;
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    remove_stale(dir, "fuzz_model_");
    snprintf(path, sizeof path, "%s/fuzz_model_%ld_XXXXXX", dir, (long)getpid());
    int fd = mkstemp(path);
    if (fd < 0)
        abort();
    close(fd);
    snprintf(path2, sizeof path2, "%s.rt", path);
    atexit(cleanup);
    const char *seeds = getenv("OFA_FUZZ_SEED_DIR");
    if (seeds)
        write_seeds(seeds);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct in rest = {NULL, 0};
    if (size >= 8 && memcmp(data, OFA_H5_MAGIC, 8) == 0) {
        if (!raw) /* byte-level files: only with OFA_FUZZ_RAW or _RESEAL (see the top) */
            return 0;
        if (reseal && size >= OFA_H5_UB_SIZE) {
            uint8_t *img = malloc(size);
            if (!img)
                abort();
            memcpy(img, data, size);
            ofa_h5_header_fill(img, size, OFA_H5_MAGIC);
            write_file(path, img, size);
            free(img);
        } else {
            write_file(path, data, size);
        }
    } else {
        if (build_file(data, size) != 0)
            return 0;
        rest = (struct in){data, size}; /* the input image's pixels come from here */
        const char *keep = getenv("OFA_FUZZ_SAVE_FILE"); /* the built model.h5, for reports */
        if (keep) {
            uint8_t *img = NULL;
            size_t len = 0;
            struct ofa_error e;
            if (ofa_read_file(path, &img, &len, &e) == 0)
                write_file(keep, img, len);
            free(img);
        }
    }
    struct ofa_model m;
    struct ofa_error err;
    int rc = load_check(&m, &err);
    if (verbose)
        fprintf(stderr, "load: %s\n", rc == 0 ? "accepted" : err.msg);
    if (rc != 0) {
        if (m.layers || m.weights || m.n_layers) /* the caller's model is untouched */
            abort();
        return 0;
    }
    run_model(&m, &rest);
    /* What we accept, we save and load back. */
    struct ofa_model back;
    memset(&back, 0, sizeof back);
    if (ofa_model_save(path2, &m, &err) != 0 || ofa_model_load(path2, &back, &err) != 0) {
        fprintf(stderr, "fuzz_model: round trip failed: %s\n", err.msg);
        abort();
    }
    unlink(path2);
    check_closed("the round trip");
    if (back.n_layers != m.n_layers || back.n_weights != m.n_weights ||
        memcmp(back.weights, m.weights, (size_t)m.n_weights * sizeof(float)) != 0)
        abort();
    ofa_model_free(&back);
    ofa_model_free(&m);
    return 0;
}
