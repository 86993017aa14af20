/* device.h: target device profiles, and the efficiency of a subnet on them
 * (latency predictors, int8 flash and peak SRAM). docs/devices.md has the
 * definitions, the lut table format and the default devices.
 *
 * A profile is declared in a recipe section [device.NAME] (see
 * docs/recipes.md): a latency model and budgets. Latency models:
 *   measured  per-block latency table profiled on this host with the
 *             project's own runtime, fp32 (the evaluator's forward) or int8
 *             (ofa-run's int8 runtime, quant.h) as the profile's arith says,
 *             summed over the subnet's blocks;
 *   opwise    per-op-type linear regressors on (MACs, input and output
 *             sizes) fitted from profiling samples of every op type of the
 *             space on this host, summed over ops;
 *   opcount   latency = a * MACs + b (MicroNets), coefficients in the recipe;
 *   lut       a user-supplied TSV table keyed by block shape (docs/devices.md).
 * opwise profiles the fp32 runtime only.
 * Host timings (measured, opwise, ofa_latency_measure) run on one thread and
 * take the thread's CPU time, median of repetitions: robust on a shared
 * machine, equal to wall time on an idle one.
 * Memory (int8 deployment, every profile): flash = what the generated
 * model.c holds (ofa_emit_c): int8 weights, per output channel an int32
 * bias, multiplier and int8 shift, hswish/hsigmoid tables, the layer table,
 * the input table and the kernels' code; exact but for the class names'
 * characters. SRAM = the largest, over layers, of the bytes of
 * the int8 tensors alive at once (input + output, plus a residual source
 * kept for a later add).
 */
#ifndef OFA_DEVICE_H
#define OFA_DEVICE_H

#include <stdint.h>
#include <stdio.h>

#include "prof.h"
#include "space.h"
#include "util.h"

#define OFA_MAX_DEVICES 16
#define OFA_DEVICE_NAMELEN 64

enum ofa_latency_model {
    OFA_LAT_MEASURED = 0,
    OFA_LAT_OPWISE,
    OFA_LAT_OPCOUNT,
    OFA_LAT_LUT,
};

/* The arithmetic a host profile times: fp32, or the int8 runtime. */
enum ofa_arith {
    OFA_ARITH_FP32 = 0,
    OFA_ARITH_INT8,
};

struct ofa_device {
    char name[OFA_DEVICE_NAMELEN];
    enum ofa_latency_model model;
    enum ofa_arith arith;       /* measured: which runtime is profiled (opwise: fp32 only) */
    double a_ms_per_mmac, b_ms; /* opcount: latency_ms = a * MACs / 1e6 + b */
    char lut[512];              /* lut: path of the TSV table; a recipe file's relative path
                                 * is stored resolved (absolute) at load time, see
                                 * docs/devices.md */
    char source[256];           /* where the coefficients / table come from (free text; no
                                 * control characters, no '#' or ';' after a space) */
    double latency_ms;          /* budgets; 0 = no budget */
    double flash_kb;
    double sram_kb;
    double mmacs;
    int n_res, resolutions[OFA_MAX_CHOICES]; /* input resolutions the search may choose,
                                              * ascending; n_res 0: all of the space's */
};

/* out = the space sp with only the resolutions dev allows ([device.NAME]
 * resolutions; none named: all of sp's); an error, naming file (where dev
 * is declared), for a resolution sp does not have. out may be NULL (check
 * only). */
int ofa_device_space(const struct ofa_device *dev, const struct ofa_space *sp,
                     struct ofa_space *out, const char *file, struct ofa_error *err);

/* Int8 deployment memory of the standalone subnet, exact for the definitions
 * of docs/devices.md. Flash: int8 weights plus int32 biases of every
 * BN-folded conv (stem, first block, expand, depthwise, project, head) and
 * of the SE convs and the classifier (requantisation parameters, runtime
 * code and tables not counted). SRAM: the largest, over layers in execution
 * order, of the int8 bytes alive at once: the layer's input and output, plus
 * the block input kept for a residual add (adds run in place on the project
 * output, SE scales in place and keeps its pooled/hidden vectors; im2col and
 * other kernel scratch not counted). */
long long ofa_subnet_flash_bytes(const struct ofa_space *sp, const struct ofa_subnet *s);
long long ofa_subnet_sram_bytes(const struct ofa_space *sp, const struct ofa_subnet *s);

/* A latency predictor for one profile. Opaque; made by ofa_latency_init,
 * freed by ofa_latency_free (NULL-safe). net gives the space (every model)
 * and, for measured, the weights to extract subnets from (they do not
 * matter; net must not be a standalone subnet). measured and opwise profile
 * this host with the project's runtime at batch 1 on one thread (the
 * caller's thread count is restored), so they take seconds (measured: one
 * subnet per resolution and (kernel, expand) pair, every block timed,
 * medians of 9, calibrated on whole passes; int8: those subnets quantized
 * on random inputs and every layer of the int8 runtime timed, summed per
 * block; opwise: up to 48 shapes of each
 * op type of the space, fitted, calibrated likewise). A relative lut path is read
 * relative to base_dir (NULL or "": the current directory); a bad table is
 * an error naming the file and line, and a table that lacks a configuration
 * the space needs is an error naming it. */
struct ofa_latency;
struct ofa_supernet;
int ofa_latency_init(struct ofa_latency **lat, const struct ofa_device *dev,
                     struct ofa_supernet *net, const char *base_dir, struct ofa_error *err);
void ofa_latency_free(struct ofa_latency *lat);
/* Predicted latency in milliseconds at batch 1 (s valid in the space):
 * measured/lut/opwise: stem(R) + sum over active blocks + head(R);
 * opcount: a * MACs / 1e6 + b. */
double ofa_latency_predict(const struct ofa_latency *lat, const struct ofa_subnet *s);
enum ofa_latency_model ofa_latency_model(const struct ofa_latency *lat);
/* "measured", "opwise", "opcount", "lut". */
const char *ofa_latency_model_name(enum ofa_latency_model m);
/* The predictor as a lut table (docs/devices.md): comment lines (each line of
 * comment prefixed with "# "; NULL for none), the header, then per
 * resolution the stem row, every block slot of every stage for every kernel
 * and expand (a shape that several resolutions share, written once), and
 * the head row. -1 for opcount (no per-block figures) or a write error. */
int ofa_latency_write_lut(const struct ofa_latency *lat, FILE *f, const char *comment);
/* Human-readable summary (coefficients, stem and head per resolution). */
void ofa_latency_describe(const struct ofa_latency *lat, FILE *f);

enum ofa_arith ofa_latency_arith(const struct ofa_latency *lat);
/* "fp32", "int8". */
const char *ofa_arith_name(enum ofa_arith a);

/* Measured end-to-end latency of the subnet on this host, in ms: the fp32
 * runtime, or for OFA_ARITH_INT8 the int8 runtime on the subnet quantized
 * with ranges from random inputs (the values do not change the work); the
 * standalone subnet is extracted from net unless net is that standalone
 * subnet; batch 1, one thread, two warm-up runs, median of reps of the
 * thread's CPU time. */
double ofa_latency_measure(struct ofa_supernet *net, const struct ofa_subnet *s,
                           enum ofa_arith arith, int reps);
/* Where ofa_latency_measure's int8 pass of s goes: every layer of the int8
 * runtime run alone reps times (ofa_qrun_time_layers: the median of groups'
 * mean thread CPU times), summed by the profile's op kinds
 * (ofa_model_layer_prof_kind) into ms[k] (ms), the layers counted in
 * calls[k]; returns the median whole pass (ms) on the same runtime, as
 * ofa_latency_measure times it. One thread. */
double ofa_latency_int8_profile(const struct ofa_supernet *net, const struct ofa_subnet *s,
                                int reps, double ms[OFA_PROF_NKINDS], int calls[OFA_PROF_NKINDS]);

/* Validation: n subnets drawn uniformly (ofa_subnet_sample, seeded), each
 * predicted and measured (ofa_latency_measure with reps, in the predictor's
 * arithmetic); returns the share
 * whose prediction is within +-tol (relative, e.g. 0.10) of the measurement.
 * pred and meas (n entries each) receive the figures when not NULL. */
double ofa_latency_validate(const struct ofa_latency *lat, struct ofa_supernet *net, int n,
                            uint64_t seed, int reps, double tol, double *pred, double *meas);

#endif
