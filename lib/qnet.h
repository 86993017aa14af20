/* qnet.h: (internal to libofa) the prepared int8 network that the kernels of
 * qnet.inc run, shared by the int8 executor (quant.c) and the model.c
 * emitter (emit_c.c), and the instruction-set variants of those kernels.
 *
 * ofa_quant_prepare derives everything the integer kernels need from a
 * quantized model (model.h keeps only scales and zero points): the buffer
 * plan, biases with the zero points folded in, the requantization
 * multipliers and shifts, and the hswish/hsigmoid tables.
 */
#ifndef OFA_QNET_H
#define OFA_QNET_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

/* Code bytes of the portable kernels in a generated model.c (gcc -Os,
 * x86-64, measured; check_quant compares the emitter's flash figure with
 * `size` of the compiled object). */
#define OFA_QNET_CODE_BYTES 3300L

#define OFA_QNET_TYPES_ONLY
#include "qnet.inc"
#undef OFA_QNET_TYPES_ONLY

/* Arrays owned by a prepared layer (NULL where the kind has none). */
struct ofa_qprep_data {
    int8_t *w, *w2;
    int32_t *b, *b2, *m, *m2;
    int8_t *s, *s2;
    int8_t *lut;
    int16_t *glut;
};

struct ofa_qprep {
    struct ofa_qnet net;          /* points into the arrays below */
    int n_layers;
    struct ofa_qlayer *layers;    /* [n_layers] */
    struct ofa_qprep_data *data;  /* [n_layers] */
    int n_tensors;
    int32_t *toff;                /* [n_tensors] byte offset of every tensor */
    long scratch_bytes;           /* peak of live tensors and temporaries */
};

/* Prepare m (quantized) for the kernels; p owns copies of everything it
 * points to, so m may be freed afterwards. pad_rows (the runtime's layout):
 * conv weight rows padded with zeros to whole vectors, and for CONV, FC and DW
 * packed copies of the weights (w2) and temporaries sized for the vector
 * kernels (faster; the same integers; more bytes); without it, what a
 * generated model.c carries. */
void ofa_quant_prepare(struct ofa_qprep *p, const struct ofa_model *m, int pad_rows);
void ofa_quant_prepare_free(struct ofa_qprep *p);

/* Q31 multiplier and shift of a real multiplier >= 0 (struct ofa_qlayer):
 * real = m * 2^(shift - 31), m in [2^30, 2^31); m = 0 when real < 2^-32. */
void ofa_quant_multiplier(double real, int32_t *m, int *shift);
/* The residual add's ma, mb, sa and mc (qk_add1; q->zi and q->zi2 set) for
 * the inputs' scales over the output's, ra and rb >= 0. */
void ofa_quant_add_mults(struct ofa_qlayer *q, double ra, double rb);
/* round(x / scale) + zp clamped to int8 (halves away from zero; NaN -> zp). */
int8_t ofa_quant_value(float x, struct ofa_qp qp);
/* The input the evaluator feeds for pixel value v of channel c:
 * (v / 255 - mean) / std, computed like the data loader. */
float ofa_quant_pixel(const struct ofa_model *m, int c, int v);

/* The kernels, compiled once per instruction set (lib/qnet_<isa>.c). */
typedef void (*ofa_qnet_fn)(const struct ofa_qnet *net, void *scratch);
void ofa_qnet_run_portable(const struct ofa_qnet *net, void *scratch);
#ifdef OFA_HAVE_QNET_AVX2
void ofa_qnet_run_avx2(const struct ofa_qnet *net, void *scratch);
#endif
#ifdef OFA_HAVE_QNET_AVX512
void ofa_qnet_run_avx512vnni(const struct ofa_qnet *net, void *scratch);
void ofa_qnet_run_avx512vbmi(const struct ofa_qnet *net, void *scratch);
#endif

#endif
