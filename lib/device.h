/* device.h: target device profiles, and the efficiency of a subnet on them
 * (latency predictors, int8 flash and peak SRAM).
 *
 * A profile is declared in a recipe section [device.NAME] (see
 * docs/recipes.md): a latency model and budgets. Latency models:
 *   measured  per-block latency table profiled on this host with the
 *             project's own runtime (fp32), summed over the subnet's blocks;
 *   opwise    per-op-type linear regressors on (H, W, Cin, Cout, K, stride,
 *             FLOPs) fitted from profiling samples on this host, summed over ops;
 *   opcount   latency = a * MACs + b (MicroNets), coefficients in the recipe;
 *   lut       a user-supplied TSV table keyed by block shape (docs/devices.md).
 * Memory (int8 deployment, every profile): flash = int8 weights + int32
 * biases after BN folding; SRAM = the largest, over layers, of the bytes of
 * the int8 tensors alive at once (input + output, plus a residual source
 * kept for a later add).
 */
#ifndef OFA_DEVICE_H
#define OFA_DEVICE_H

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

struct ofa_device {
    char name[OFA_DEVICE_NAMELEN];
    enum ofa_latency_model model;
    double a_ms_per_mmac, b_ms; /* opcount: latency_ms = a * MACs / 1e6 + b */
    char lut[512];              /* lut: path of the TSV table (relative to the recipe) */
    char source[256];           /* where the coefficients / table come from (free text) */
    double latency_ms;          /* budgets; 0 = no budget */
    double flash_kb;
    double sram_kb;
    double mmacs;
};

/* Int8 flash bytes (weights + int32 biases of the BN-folded convs, SE and
 * classifier) and peak SRAM bytes (int8 activations) of the subnet. */
long long ofa_subnet_flash_bytes(const struct ofa_space *sp, const struct ofa_subnet *s);
long long ofa_subnet_sram_bytes(const struct ofa_space *sp, const struct ofa_subnet *s);

/* A latency predictor for one profile. Opaque; made by ofa_latency_init
 * (measured/opwise profile this host with net's runtime, so they take
 * seconds; the weights do not matter), freed by ofa_latency_free. lut
 * tables are read relative to base_dir (the recipe's directory); a bad
 * table is an error naming the file and line. */
struct ofa_latency;
struct ofa_supernet;
int ofa_latency_init(struct ofa_latency **lat, const struct ofa_device *dev,
                     struct ofa_supernet *net, const char *base_dir, struct ofa_error *err);
void ofa_latency_free(struct ofa_latency *lat);
/* Predicted latency in milliseconds at batch 1. */
double ofa_latency_predict(const struct ofa_latency *lat, const struct ofa_subnet *s);

/* Measured end-to-end latency of the subnet on this host (fp32 runtime,
 * standalone subnet extracted from net, batch 1, median of reps), in ms. */
double ofa_latency_measure(struct ofa_supernet *net, const struct ofa_subnet *s, int reps);

#endif
