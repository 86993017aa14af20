/* emit_c.c: ofa_emit_c, the int8 model as dependency-free C99 (model.c,
 * model.h) for microcontrollers and any other C target.
 *
 * model.c carries the prepared network of ofa_quant_prepare as const arrays
 * (int8 weights, int32 biases with folded zero points, requantization
 * multipliers and shifts, hswish/hsigmoid tables, the layer table with the
 * buffer plan) and the very source of the library's portable kernels
 * (lib/qnet.inc, embedded at build time as lib/qnet_src.h), so it computes
 * the same int8 logits as ofa_qrun_forward_q. The input is quantized from
 * pixels through one 256-entry table per channel (normalisation and tq[0]).
 *
 * Flash = the const data's bytes (exact, with the layer table at its host
 * size) + the kernels' code (OFA_QNET_CODE_BYTES, measured; check_quant compares
 * the total with the size of the compiled object). SRAM = the scratch
 * buffer: the peak of the tensors and temporaries alive at once.
 */
#include <config.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/qnet_src.h"
#include "qnet.h"
#include "quant.h"

/* Code bytes of the embedded kernels and ofa_model_run: 3,277 with gcc 12
 * -Os on x86-64 (the functions' sizes in a model.c object); Thumb-2 code is
 * smaller. */

struct emitter {
    FILE *f;
    long data; /* const data bytes written */
};

static void emit_i8(struct emitter *e, const char *name, const int8_t *v, long n)
{
    fprintf(e->f, "static const int8_t %s[%ld] = {", name, n);
    for (long i = 0; i < n; i++)
        fprintf(e->f, "%s%d%s", i % 24 ? "" : "\n    ", v[i], i + 1 < n ? "," : "");
    fprintf(e->f, "\n};\n");
    e->data += n;
}

static void emit_i16(struct emitter *e, const char *name, const int16_t *v, long n)
{
    fprintf(e->f, "static const int16_t %s[%ld] = {", name, n);
    for (long i = 0; i < n; i++)
        fprintf(e->f, "%s%d%s", i % 16 ? "" : "\n    ", v[i], i + 1 < n ? "," : "");
    fprintf(e->f, "\n};\n");
    e->data += 2 * n;
}

static void emit_i32(struct emitter *e, const char *name, const int32_t *v, long n)
{
    fprintf(e->f, "static const int32_t %s[%ld] = {", name, n);
    /* INT32_MIN has no literal of its own type */
    for (long i = 0; i < n; i++) {
        fprintf(e->f, "%s", i % 8 ? "" : "\n    ");
        if (v[i] == INT32_MIN)
            fprintf(e->f, "INT32_MIN");
        else
            fprintf(e->f, "%ld", (long)v[i]);
        fprintf(e->f, "%s", i + 1 < n ? "," : "");
    }
    fprintf(e->f, "\n};\n");
    e->data += 4 * n;
}

/* A C string literal of s: printable ASCII as is, the rest in octal. */
static void emit_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\' || c == '?')
            fprintf(f, "\\%c", c);
        else if (c >= 32 && c < 127)
            fputc(c, f);
        else
            fprintf(f, "\\%03o", c);
    }
    fputc('"', f);
}

/* Lengths of a prepared layer's arrays. */
static void array_sizes(const struct ofa_qlayer *q, long *nw, long *nb, long *nw2, long *nb2)
{
    *nw = *nb = *nw2 = *nb2 = 0;
    switch (q->kind) {
    case OFA_QK_CONV:
    case OFA_QK_FC:
        *nw = (long)q->Cout * q->ldw, *nb = q->Cout;
        break;
    case OFA_QK_DW:
        *nw = (long)q->K * q->K * q->Cout, *nb = q->Cout;
        break;
    case OFA_QK_SE:
        *nw = (long)q->R * q->Cin, *nb = q->R;
        *nw2 = (long)q->Cin * q->R, *nb2 = q->Cin;
        break;
    default:
        break;
    }
}

static void emit_layer_arrays(struct emitter *e, const struct ofa_qlayer *q, int i)
{
    long nw, nb, nw2, nb2;
    char name[64];
    array_sizes(q, &nw, &nb, &nw2, &nb2);
    if (nw) {
        snprintf(name, sizeof name, "l%d_w", i);
        emit_i8(e, name, q->w, nw);
        snprintf(name, sizeof name, "l%d_b", i);
        emit_i32(e, name, q->b, nb);
        snprintf(name, sizeof name, "l%d_m", i);
        emit_i32(e, name, q->m, nb);
        snprintf(name, sizeof name, "l%d_s", i);
        emit_i8(e, name, q->s, nb);
    }
    if (nw2) {
        snprintf(name, sizeof name, "l%d_w2", i);
        emit_i8(e, name, q->w2, nw2);
        snprintf(name, sizeof name, "l%d_b2", i);
        emit_i32(e, name, q->b2, nb2);
        snprintf(name, sizeof name, "l%d_m2", i);
        emit_i32(e, name, q->m2, nb2);
        snprintf(name, sizeof name, "l%d_s2", i);
        emit_i8(e, name, q->s2, nb2);
    }
    if (q->lut) {
        snprintf(name, sizeof name, "l%d_lut", i);
        emit_i8(e, name, q->lut, 256);
    }
    if (q->glut) {
        snprintf(name, sizeof name, "l%d_glut", i);
        emit_i16(e, name, q->glut, 256);
    }
}

static void emit_layer(FILE *f, const struct ofa_qlayer *q, int i)
{
    static const char *const kinds[] = {"OFA_QK_CONV", "OFA_QK_DW",   "OFA_QK_SE",
                                        "OFA_QK_ADD",  "OFA_QK_POOL", "OFA_QK_FC"};
    OFA_ASSERT(q->kind >= 0 && q->kind <= OFA_QK_FC);
    fprintf(f, "    {.kind = %s, .H = %d, .W = %d, .Cin = %d, .Ho = %d, .Wo = %d, .Cout = %d,\n",
            kinds[q->kind], (int)q->H, (int)q->W, (int)q->Cin, (int)q->Ho, (int)q->Wo,
            (int)q->Cout);
    fprintf(f, "     .K = %d, .stride = %d, .pad = %d, .R = %d, .ldw = %d,\n", (int)q->K,
            (int)q->stride, (int)q->pad, (int)q->R, (int)q->ldw);
    fprintf(f, "     .in = %ld, .in2 = %ld, .out = %ld, .tmp = %ld,\n", (long)q->in, (long)q->in2,
            (long)q->out, (long)q->tmp);
    fprintf(f, "     .zi = %d, .zi2 = %d, .zo = %d, .zr = %d, .lo = %d, .hi = %d,\n", (int)q->zi,
            (int)q->zi2, (int)q->zo, (int)q->zr, (int)q->lo, (int)q->hi);
    fprintf(f, "     .za = %d, .zb = %d, .zg = %d,\n", (int)q->za, (int)q->zb, (int)q->zg);
    fprintf(f, "     .ma = %ld, .sa = %d, .mb = %ld, .sb = %d, .mc = %ld, .sc = %d",
            (long)q->ma, (int)q->sa, (long)q->mb, (int)q->sb, (long)q->mc, (int)q->sc);
    if (q->w)
        fprintf(f, ",\n     .w = l%d_w, .b = l%d_b, .m = l%d_m, .s = l%d_s", i, i, i, i);
    if (q->w2)
        fprintf(f, ",\n     .w2 = l%d_w2, .b2 = l%d_b2, .m2 = l%d_m2, .s2 = l%d_s2", i, i, i, i);
    if (q->lut)
        fprintf(f, ",\n     .lut = l%d_lut", i);
    if (q->glut)
        fprintf(f, ",\n     .glut = l%d_glut", i);
    fprintf(f, "},\n");
}

static void write_header(FILE *f, const struct ofa_model *m, const struct ofa_qprep *p)
{
    const struct ofa_qp lq = m->tq[m->n_tensors - 1];
    fprintf(f, "/* model.h: int8 inference of the subnet %s", m->subnet);
    if (m->device[0])
        fprintf(f, " (device %s)", m->device);
    fprintf(f, ",\n * generated by ofa-export " PACKAGE_VERSION ". Dependency-free C99.\n"
               " *\n"
               " * int ofa_model_run(pixels, logits, scratch): pixels [RES][RES][CHANNELS]\n"
               " * (row-major, channels last, 0..255) -> int8 logits [CLASSES], whose real\n"
               " * values are LOGIT_SCALE * (logit - LOGIT_ZERO_POINT); returns the top-1\n"
               " * class, or -1 when an argument is NULL or scratch is not 4-byte aligned.\n"
               " * scratch: OFA_MODEL_SCRATCH bytes (e.g. static int32_t\n"
               " * scratch[OFA_MODEL_SCRATCH / 4]); reentrant with one scratch per caller.\n"
               " */\n");
    fprintf(f, "#ifndef OFA_MODEL_GENERATED_H\n#define OFA_MODEL_GENERATED_H\n\n"
               "#include <stdint.h>\n\n"
               "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n");
    fprintf(f, "#define OFA_MODEL_RES %d\n", m->res);
    fprintf(f, "#define OFA_MODEL_CHANNELS %d\n", m->in_channels);
    fprintf(f, "#define OFA_MODEL_CLASSES %d\n", m->num_classes);
    fprintf(f, "#define OFA_MODEL_SCRATCH %ld\n", p->scratch_bytes);
    fprintf(f, "#define OFA_MODEL_LOGIT_SCALE %.9gf\n", (double)lq.scale);
    fprintf(f, "#define OFA_MODEL_LOGIT_ZERO_POINT (%d)\n\n", (int)lq.zp);
    fprintf(f, "extern const char *const ofa_model_class_names[OFA_MODEL_CLASSES];\n\n");
    fprintf(f, "int ofa_model_run(const uint8_t *pixels, int8_t *logits, void *scratch);\n\n");
    fprintf(f, "#ifdef __cplusplus\n}\n#endif\n\n#endif\n");
}

static long write_source(FILE *f, const struct ofa_model *m, const struct ofa_qprep *p)
{
    struct emitter e = {f, 0};
    const int C = m->in_channels;
    fprintf(f, "/* model.c: int8 inference of the subnet %s", m->subnet);
    if (m->device[0])
        fprintf(f, " (device %s)", m->device);
    fprintf(f, ",\n * generated by ofa-export " PACKAGE_VERSION
               " (supernet fingerprint %016llx). Do not edit.\n"
               " * Integer-only: int8 weights and activations, int32 accumulation,\n"
               " * fixed-point requantization. model.h documents the interface. */\n",
            (unsigned long long)m->supernet_fingerprint);
    fprintf(f, "#include <stdint.h>\n#include <string.h>\n\n#include \"model.h\"\n\n");
    fprintf(f, "#define OFA_QNET_FN(name) name\n#define OFA_QNET_API static\n");
    fputs(qnet_src, f);
    fprintf(f, "\n/* ---- the model ---- */\n\n");
    for (int i = 0; i < p->n_layers; i++)
        emit_layer_arrays(&e, &p->layers[i], i);
    fprintf(f, "\nstatic const struct ofa_qlayer layers[%d] = {\n", p->n_layers);
    for (int i = 0; i < p->n_layers; i++)
        emit_layer(f, &p->layers[i], i);
    fprintf(f, "};\n");
    e.data += (long)sizeof(struct ofa_qlayer) * p->n_layers;
    fprintf(f, "\nstatic const struct ofa_qnet net = {%d, layers, %ld, %ld, %ld, %ld};\n",
            p->n_layers, (long)p->net.in_off, (long)p->net.out_off, (long)p->net.n_out,
            (long)p->net.scratch_bytes);
    e.data += (long)sizeof(struct ofa_qnet);

    /* pixel -> int8 input, per channel */
    fprintf(f, "\n/* (v / 255 - mean) / std quantized to the input's int8 */\n");
    fprintf(f, "static const int8_t input_lut[%d][256] = {", C);
    for (int c = 0; c < C; c++) {
        fprintf(f, "\n    {");
        for (int v = 0; v < 256; v++)
            fprintf(f, "%s%d%s", v % 24 ? "" : "\n     ",
                    ofa_quant_value(ofa_quant_pixel(m, c, v), m->tq[0]), v < 255 ? "," : "");
        fprintf(f, "}%s", c + 1 < C ? "," : "");
    }
    fprintf(f, "\n};\n");
    e.data += 256L * C;

    fprintf(f, "\nconst char *const ofa_model_class_names[OFA_MODEL_CLASSES] = {\n");
    for (int k = 0; k < m->num_classes; k++) {
        char buf[OFA_CLASS_NAME_MAX + 16];
        if (m->class_names) {
            memcpy(buf, m->class_names[k], OFA_CLASS_NAME_MAX);
            buf[OFA_CLASS_NAME_MAX - 1] = '\0';
        } else {
            snprintf(buf, sizeof buf, "%d", k);
        }
        fprintf(f, "    ");
        emit_string(f, buf);
        fprintf(f, "%s\n", k + 1 < m->num_classes ? "," : "");
        e.data += (long)strlen(buf) + 1 + (long)sizeof(char *);
    }
    fprintf(f, "};\n");

    fprintf(f, "\nint ofa_model_run(const uint8_t *pixels, int8_t *logits, void *scratch)\n"
               "{\n"
               "    int8_t *s = (int8_t *)scratch;\n"
               "    long i;\n"
               "    int k, best = 0;\n"
               "    if (!pixels || !logits || !scratch || ((uintptr_t)scratch & 3u) != 0)\n"
               "        return -1;\n"
               "    for (i = 0; i < %ldL; i++)\n"
               "        s[%ld + i] = input_lut[i %% %d][pixels[i]];\n"
               "    ofa_qnet_run(&net, scratch);\n"
               "    memcpy(logits, s + %ld, %d);\n"
               "    for (k = 1; k < %d; k++)\n"
               "        if (logits[k] > logits[best])\n"
               "            best = k;\n"
               "    return best;\n"
               "}\n",
            (long)m->res * m->res * C, (long)p->net.in_off, C, (long)p->net.out_off,
            m->num_classes, m->num_classes);
    return e.data;
}

static int emit_file(const char *dir, const char *name, struct ofa_atomic_file *a, FILE **f,
                     struct ofa_error *err)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *path = ofa_xmalloc(n, "path");
    snprintf(path, n, "%s/%s", dir, name);
    *f = ofa_atomic_open(a, path, err);
    free(path);
    return *f ? 0 : -1;
}

int ofa_emit_c(const struct ofa_model *m, const char *dir, struct ofa_emit_stats *st,
               struct ofa_error *err)
{
    OFA_ASSERT(m && dir && m->quantized);
    OFA_ASSERT(m->in_channels >= 1 && m->in_channels <= 3 && m->num_classes >= 1);
    struct ofa_qprep p;
    ofa_quant_prepare(&p, m, 0); /* unpadded rows: flash matters more */
    struct ofa_atomic_file ah = {0}, ac = {0};
    FILE *fh, *fc;
    if (emit_file(dir, "model.h", &ah, &fh, err) != 0) {
        ofa_quant_prepare_free(&p);
        return -1;
    }
    if (emit_file(dir, "model.c", &ac, &fc, err) != 0) {
        ofa_atomic_abort(&ah);
        ofa_quant_prepare_free(&p);
        return -1;
    }
    write_header(fh, m, &p);
    long data = write_source(fc, m, &p);
    int rc = 0;
    if (ofa_atomic_commit(&ah, err) != 0) {
        ofa_atomic_abort(&ac);
        rc = -1;
    } else if (ofa_atomic_commit(&ac, err) != 0) {
        rc = -1;
    }
    if (rc == 0 && st) {
        st->flash_bytes = data + OFA_QNET_CODE_BYTES;
        st->sram_bytes = p.scratch_bytes;
    }
    ofa_quant_prepare_free(&p);
    return rc;
}
