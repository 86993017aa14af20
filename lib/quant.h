/* quant.h: post-training int8 quantization of an exported model and the
 * int8 runtime that executes it (model.h explains the scheme).
 *
 * Calibration runs the float model on training images and records, per
 * tensor (and per hswish pre-activation and SE internal), the range to
 * quantize: min/max, or the given percentile of |values| on either side.
 *
 * The int8 runtime is integer-only from the quantized input to the int8
 * logits: int8 x int8 -> int32 accumulation, fixed-point requantization
 * (multiplier in [0.5, 1) as Q31 and a rounding right shift, gemmlowp's
 * SaturatingRoundingDoublingHighMul + RoundingDivideByPOT; the residual add
 * multiplies each input by a 21-bit multiplier and shifts their sum once),
 * lookup tables for hswish and hsigmoid. Its kernels are compiled for several instruction
 * sets (portable C; AVX2; AVX-512 VNNI) from one source and one is chosen at
 * run time; all give bit-identical results. The same portable source is
 * what the generated model.c carries (ofa_emit_c), so model.c, ofa-run and
 * ofa-extract's host-int8 profile compute the same integers.
 */
#ifndef OFA_QUANT_H
#define OFA_QUANT_H

#include <stddef.h>

#include "model.h"

enum ofa_calib_method { OFA_CALIB_MINMAX = 0, OFA_CALIB_PERCENTILE };

/* The int8 runtime's limits (int32 sums without overflow): a conv or fc
 * reduction (K*K*Cin, Cin) of at most OFA_QUANT_REDUCE_MAX terms, an average
 * (pool, SE) over at most 64 times as many pixels. The model loader refuses
 * int8 models beyond them, and conv/dw/fc activations other than relu and
 * hswish. */
#define OFA_QUANT_REDUCE_MAX 16384L

struct ofa_quant_opts {
    enum ofa_calib_method method;
    double percentile; /* OFA_CALIB_PERCENTILE: e.g. 99.99 */
};

/* Fill m's int8 part (tq, pre/pool/hid, qweights, qbias, wscale,
 * quantized = 1) from calibration images x [n, res, res, C] (normalised,
 * like the evaluator's). Replaces an earlier quantization. */
void ofa_quant_calibrate(struct ofa_model *m, const float *x, int n,
                         const struct ofa_quant_opts *o);

/* A prepared int8 executor (requantization multipliers, tables, scratch for
 * batch 1; ofa_qrun_forward loops over images). */
struct ofa_qrun;
struct ofa_qrun *ofa_qrun_create(const struct ofa_model *m);
void ofa_qrun_free(struct ofa_qrun *q);
/* x [N, res, res, C] floats, quantized with tq[0]; logits [N, classes]
 * dequantized from the int8 output. Images run in parallel (OpenMP). */
void ofa_qrun_forward(struct ofa_qrun *q, float *logits, const float *x, int N);
/* The int8 logits of one image, for exact comparisons. */
void ofa_qrun_forward_q(struct ofa_qrun *q, int8_t *logits, const float *x);
/* Per-layer cost of one image x: after a whole pass has filled every
 * tensor, layer i of m->layers is run alone reps times on the calling thread
 * (in groups of up to 16 runs, at least 5 groups where reps allows) and
 * ms[i] is the median of the groups' mean thread CPU times in milliseconds
 * (for per-block latency tables; layer i of the model is layer i here). */
void ofa_qrun_time_layers(struct ofa_qrun *q, const float *x, int reps, double *ms);
/* Instruction set the runtime chose ("avx512vbmi": AVX-512 VNNI and VBMI,
 * "avx512vnni", "avx2", "portable"); OFA_QRUN_ISA=portable|avx2|avx512vnni|
 * avx512vbmi in the environment forces a lower one. */
const char *ofa_qrun_isa(void);

/* Write DIR/model.c and DIR/model.h: the int8 model as const arrays and a
 * dependency-free C99 inference function (the portable runtime),
 *   int ofa_model_run(const uint8_t *pixels, int8_t *logits, void *scratch)
 * on pixels [res][res][C] at the model's resolution, with OFA_MODEL_SCRATCH
 * bytes of scratch; returns the top-1 class. Also reports the model's flash
 * (const data + code estimate) and peak SRAM (scratch) bytes. Atomic writes. */
struct ofa_emit_stats {
    long flash_bytes, sram_bytes;
};
int ofa_emit_c(const struct ofa_model *m, const char *dir, struct ofa_emit_stats *st,
               struct ofa_error *err);

#endif
