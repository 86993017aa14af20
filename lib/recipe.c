/* recipe.c: INI recipes, parsed by inih, into struct ofa_recipe.
 * One static table of keys drives parsing, the resolved text and the docs.
 * The loaders take untrusted input: lines, files, includes and values are
 * bounded, and every refusal names the file, the line and the key. */
#include <config.h>

#include "recipe.h"

#include "data.h"

#include <ini.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

#define MAX_FILE_BYTES (1L << 20) /* a recipe is a few KiB; refuse anything odd */
#define MAX_INCLUDE_DEPTH 8
#define MAX_FILES 64              /* files read by one load, includes counted */
#define MAX_NAME 64               /* section and key names */
#define MAX_VALUE 1024
/* The longest line a recipe may have: libinih's buffer (INI_MAX_LINE, 200 in
 * Debian's build) less its terminator. A string value must leave room for
 * "key = " so that the resolved text (ofa_recipe_format) reads back. */
#define MAX_LINE 199

/* Values are stored through int pointers. */
_Static_assert(sizeof(enum ofa_act) == sizeof(int), "enum ofa_act is not int-sized");
_Static_assert(sizeof(enum ofa_schedule) == sizeof(int), "enum ofa_schedule is not int-sized");
_Static_assert(sizeof(enum ofa_latency_model) == sizeof(int),
               "enum ofa_latency_model is not int-sized");
_Static_assert(sizeof(enum ofa_interp) == sizeof(int), "enum ofa_interp is not int-sized");
_Static_assert(sizeof(enum ofa_arith) == sizeof(int), "enum ofa_arith is not int-sized");

enum ktype { T_INT, T_LONG, T_FLOAT, T_DOUBLE, T_BOOL, T_ENUM, T_LIST, T_STRING };
enum { F_MIN_EXCL = 1, F_MAX_EXCL = 2, F_ODD = 4, F_EMPTY = 8 /* T_LIST: may be empty */ };
/* S_SUPERNET .. S_EXPORT are the plain sections; [device.NAME],
 * [variant.NAME] and [export.NAME] (S_EXPORT's keys for one device) are
 * named ones that accumulate. */
enum sec {
    S_TOP, S_SUPERNET, S_STAGE, S_TRAIN, S_AUGMENT, S_CHECKPOINT, S_EXTRACT, S_EXPORT, S_DEVICE,
    S_VARIANT, S_EXPORTDEV,
    S_UNKNOWN, S_BADSTAGE, S_BADDEVICE, S_BADVARIANT, S_BADEXPORTDEV
};

static const char *const sec_names[] = {"",        "supernet", "stage",  "train",  "augment",
                                        "checkpoint", "extract", "export", "device", "variant",
                                        "export"};

#define MAX_DEVICE_NAME 40 /* inih keeps section names under 50 characters */
#define MAX_VARIANT_NAME 40
_Static_assert(sizeof(((struct ofa_variant_cfg *)0)->name) == MAX_VARIANT_NAME + 1,
               "variant name size");

struct enum_name {
    const char *name;
    int value;
};

static const struct enum_name act_names[] = {
    {"relu", OFA_ACT_RELU}, {"hswish", OFA_ACT_HSWISH}, {NULL, 0}};
static const struct enum_name sched_names[] = {
    {"deps", OFA_SCHED_DEPS}, {"bignas", OFA_SCHED_BIGNAS}, {"ofa-ps", OFA_SCHED_OFA_PS}, {NULL, 0}};
static const struct enum_name model_names[] = {
    {"measured", OFA_LAT_MEASURED}, {"opwise", OFA_LAT_OPWISE}, {"opcount", OFA_LAT_OPCOUNT},
    {"lut", OFA_LAT_LUT}, {NULL, 0}};
static const struct enum_name calib_names[] = {{"minmax", 0}, {"percentile", 1}, {NULL, 0}};
static const struct enum_name target_names[] = {{"labels", OFA_TARGET_LABELS},
                                                {"original", OFA_TARGET_ORIGINAL},
                                                {"largest", OFA_TARGET_LARGEST},
                                                {NULL, 0}};
static const struct enum_name draw_names[] = {
    {"random", OFA_DRAW_RANDOM}, {"worst", OFA_DRAW_WORST}, {"all", OFA_DRAW_ALL}, {NULL, 0}};
static const struct enum_name interp_names[] = {
    {"nearest", OFA_INTERP_NEAREST}, {"bilinear", OFA_INTERP_BILINEAR}, {"area", OFA_INTERP_AREA},
    {NULL, 0}};
static const struct enum_name arith_names[] = {
    {"fp32", OFA_ARITH_FP32}, {"int8", OFA_ARITH_INT8}, {NULL, 0}};

struct key {
    enum sec sec;
    const char *name;
    enum ktype type;
    size_t off;       /* into struct ofa_recipe; S_STAGE: struct ofa_stage_cfg; S_DEVICE:
                       * struct ofa_device; S_VARIANT: struct ofa_variant_cfg */
    size_t count_off; /* T_LIST: the int holding the number of values */
    const struct enum_name *names; /* T_ENUM */
    double min, max;  /* of the value (T_LIST: of every element; T_STRING: max = size of
                       * the char array) */
    int flags;
    const char *def;  /* default as recipe text; NULL: required */
    const char *desc;
};

#define RO(f) offsetof(struct ofa_recipe, f)
#define SO(f) offsetof(struct ofa_stage_cfg, f)
#define DO(f) offsetof(struct ofa_device, f)
#define VO(f) offsetof(struct ofa_variant_cfg, f)
#define VINT(n, f, lo, hi, d, txt) {S_VARIANT, n, T_INT, VO(f), 0, NULL, lo, hi, 0, d, txt}
#define VFLT(n, f, lo, hi, fl, d, txt) {S_VARIANT, n, T_FLOAT, VO(f), 0, NULL, lo, hi, fl, d, txt}
#define VENUM(n, f, names, d, txt) {S_VARIANT, n, T_ENUM, VO(f), 0, names, 0, 0, 0, d, txt}
#define DBL(n, f, lo, hi, d, txt) {S_DEVICE, n, T_DOUBLE, DO(f), 0, NULL, lo, hi, 0, d, txt}
#define STR(n, f, d, txt) \
    {S_DEVICE, n, T_STRING, DO(f), 0, NULL, 0, sizeof(((struct ofa_device *)0)->f), 0, d, txt}
#define INT(s, n, f, lo, hi, d, txt) {s, n, T_INT, RO(f), 0, NULL, lo, hi, 0, d, txt}
#define FLT(s, n, f, lo, hi, fl, d, txt) {s, n, T_FLOAT, RO(f), 0, NULL, lo, hi, fl, d, txt}
#define BOOL(s, n, f, d, txt) {s, n, T_BOOL, RO(f), 0, NULL, 0, 1, 0, d, txt}
#define LIST(n, f, cnt, lo, hi, fl, d, txt) \
    {S_SUPERNET, n, T_LIST, RO(space.f), RO(space.cnt), NULL, lo, hi, fl, d, txt}

/* Table order is the order of the resolved text and of docs/recipes.md. */
static const struct key keys[] = {
    INT(S_SUPERNET, "in_channels", space.in_channels, 1, 4, "1",
        "Input image channels: 1 for grey, 3 for RGB."),
    INT(S_SUPERNET, "num_classes", space.num_classes, 2, 100000, "10",
        "Number of classes: outputs of the final linear layer."),
    INT(S_SUPERNET, "stem_width", space.stem_width, 1, 4096, "16",
        "Output channels of the stem: 3x3 conv, BN, `stem_act`."),
    INT(S_SUPERNET, "stem_stride", space.stem_stride, 1, 2, "1", "Stride of the stem conv."),
    {S_SUPERNET, "stem_act", T_ENUM, RO(space.stem_act), 0, act_names, 0, 0, 0, "hswish",
     "Activation after the stem conv."},
    INT(S_SUPERNET, "first_width", space.first_width, 1, 4096, "16",
        "Output channels of the fixed first block (depthwise 3x3, BN, ReLU, pointwise, BN; "
        "residual when equal to `stem_width`)."),
    LIST("depths", depths, n_depths, 1, OFA_MAX_DEPTH, 0, "2, 3, 4",
         "Elastic depth: choices of the number of blocks per stage; a subnet runs the first D "
         "blocks of every stage."),
    LIST("expands", expands, n_expands, 1, 9, 0, "3, 4, 6",
         "Elastic width: choices of the expand ratio E per block (the middle layer has E x Cin "
         "channels, the most important first)."),
    LIST("kernels", kernels, n_kernels, 3, 7, F_ODD, "3, 5, 7",
         "Elastic kernel: choices of the depthwise kernel size per block; smaller kernels are "
         "centre windows of the largest."),
    LIST("resolutions", resolutions, n_res, 8, 4096, 0, "20, 24, 28",
         "Elastic resolution: choices of the input size in pixels (square)."),
    INT(S_SUPERNET, "head_width", space.head_width, 1, 65536, "384",
        "Channels of the head: 1x1 conv, BN, hswish, global average pool, dropout, linear."),
    FLT(S_SUPERNET, "dropout", space.dropout, 0, 1, F_MAX_EXCL, "0.1",
        "Dropout before the classifier, on the largest subnet only."),
    INT(S_SUPERNET, "se_reduction", space.se_reduction, 1, 64, "4",
        "Squeeze-excite squeezes to make_divisible(mid / se_reduction, 8) channels."),
    BOOL(S_SUPERNET, "kernel_transform", space.kernel_transform, "yes",
         "OFA's learned kernel transformation (25x25 for 7->5, 9x9 for 5->3) instead of plain "
         "centre windows."),
    BOOL(S_SUPERNET, "zero_last_gamma", space.zero_last_gamma, "yes",
         "Start the last BN gamma of every residual block at 0."),
    FLT(S_SUPERNET, "bn_momentum", space.bn_momentum, 0, 1, F_MIN_EXCL, "0.1",
        "BN running-statistics momentum (PyTorch convention: weight of the new batch)."),
    FLT(S_SUPERNET, "bn_eps", space.bn_eps, 0, 1, F_MIN_EXCL | F_MAX_EXCL, "1e-05",
        "BN epsilon."),

    {S_STAGE, "width", T_INT, SO(width), 0, NULL, 1, 4096, 0, NULL,
     "Output channels of every block of the stage (required)."},
    {S_STAGE, "stride", T_INT, SO(stride), 0, NULL, 1, 2, 0, "1",
     "Stride of the stage's first block."},
    {S_STAGE, "act", T_ENUM, SO(act), 0, act_names, 0, 0, 0, "relu",
     "Activation of the stage's blocks."},
    {S_STAGE, "se", T_BOOL, SO(se), 0, NULL, 0, 1, 0, "no",
     "Squeeze-excite in every block of the stage."},

    INT(S_TRAIN, "epochs", train.epochs, 1, 100000, "36",
        "Epochs of training (for `ofa-ps`: of the full-network phase)."),
    INT(S_TRAIN, "batch_size", train.batch_size, 1, 65536, "128", "Images per step."),
    INT(S_TRAIN, "shards", train.shards, 0, 65536, "0",
        "Parts of each batch that go through the network separately, each with its own BN "
        "batch statistics, their gradients summed: one per MPI process (or several per "
        "process). 0: the number of processes. A run with S shards gives the same steps on "
        "any number of processes that divides S."),
    FLT(S_TRAIN, "lr", train.lr, 0, 100, F_MIN_EXCL, "0.1",
        "Peak learning rate, reached after the warm-up."),
    FLT(S_TRAIN, "final_lr", train.final_lr, 0, 100, 0, "0",
        "Learning rate at the end of the cosine (at most `lr`)."),
    FLT(S_TRAIN, "warmup_epochs", train.warmup_epochs, 0, 100000, 0, "1",
        "Linear warm-up from 0 to `lr`, in epochs (at most `epochs`)."),
    FLT(S_TRAIN, "momentum", train.momentum, 0, 1, F_MAX_EXCL, "0.9", "SGD momentum."),
    BOOL(S_TRAIN, "nesterov", train.nesterov, "yes", "Nesterov momentum."),
    FLT(S_TRAIN, "weight_decay", train.weight_decay, 0, 1, 0, "5e-05",
        "Weight decay on conv and linear weights (none on BN parameters and biases)."),
    BOOL(S_TRAIN, "wd_decoupled", train.wd_decoupled, "no",
         "no: L2 term added to the gradient (PyTorch, OFA); yes: decoupled decay."),
    FLT(S_TRAIN, "clip_norm", train.clip_norm, 0, 1e6, 0, "0",
        "Clip the global gradient norm to this value; 0: off."),
    FLT(S_TRAIN, "label_smoothing", train.label_smoothing, 0, 1, F_MAX_EXCL, "0.1",
        "Label smoothing of the largest subnet's cross-entropy."),
    {S_TRAIN, "seed", T_LONG, RO(train.seed), 0, NULL, 0, (double)LONG_MAX, 0, "1",
     "Seed of every random choice (initialisation, data order, subnet sampling)."},
    {S_TRAIN, "schedule", T_ENUM, RO(train.schedule), 0, sched_names, 0, 0, 0, "deps",
     "`deps`: full network alone, then sandwich with a beta ramp; `bignas`: sandwich from the "
     "first step; `ofa-ps`: progressive shrinking (full, kernel, depth, expand)."},
    FLT(S_TRAIN, "shrink_start", train.shrink_start, 0, 1, F_MAX_EXCL, "0.5",
        "deps: fraction of the epochs trained by the full network alone; channel sorting "
        "happens here."),
    FLT(S_TRAIN, "beta_ramp", train.beta_ramp, 0, 1, 0, "0.05",
        "deps: fraction of the epochs over which the subnets' gradient factor beta rises "
        "linearly from 0 to `beta_max` (`shrink_start + beta_ramp` at most 1)."),
    FLT(S_TRAIN, "beta_max", train.beta_max, 0, 10, F_MIN_EXCL, "1",
        "deps: subnets' gradient factor after the ramp."),
    INT(S_TRAIN, "n_random", train.n_random, 0, 64, "2",
        "Random subnets per step besides the largest and the smallest (sandwich rule)."),
    FLT(S_TRAIN, "kd_temperature", train.kd_temperature, 0, 100, F_MIN_EXCL, "1",
        "Temperature of the in-place distillation loss."),
    FLT(S_TRAIN, "kd_weight", train.kd_weight, 0, 100, 0, "1",
        "Weight of each subnet's distillation loss."),
    INT(S_TRAIN, "ps_kernel_epochs", train.ps_kernel_epochs, 0, 100000, "5",
        "ofa-ps: epochs of the elastic-kernel phase."),
    INT(S_TRAIN, "ps_depth_epochs", train.ps_depth_epochs, 0, 100000, "5",
        "ofa-ps: epochs of the elastic-depth phase."),
    INT(S_TRAIN, "ps_expand_epochs", train.ps_expand_epochs, 0, 100000, "5",
        "ofa-ps: epochs of the elastic-expand phase."),
    FLT(S_TRAIN, "ps_lr", train.ps_lr, 0, 100, F_MIN_EXCL, "0.03",
        "ofa-ps: peak learning rate of the shrinking phases."),
    INT(S_TRAIN, "subset", train.subset, 0, INT_MAX, "0",
        "Train on the first N training images only; 0: all (at least `batch_size` otherwise)."),
    INT(S_TRAIN, "calib_images", train.calib_images, 1, 10000000, "2000",
        "Training images used to recalibrate BN statistics before a subnet is evaluated."),
    INT(S_TRAIN, "calib_batch", train.calib_batch, 1, 65536, "200",
        "Batch size of BN recalibration (at most `calib_images`)."),
    INT(S_TRAIN, "val_every", train.val_every, 1, 100000, "1",
        "Validate the largest and smallest subnets every N epochs."),
    INT(S_TRAIN, "log_every", train.log_every, 1, 10000000, "50",
        "Write a row of the training log every N steps (besides one per epoch)."),
    FLT(S_TRAIN, "checkpoint_minutes", train.checkpoint_minutes, 0, 1e6, 0, "10",
        "Also write a checkpoint every N minutes of training; 0: only once per epoch."),

    INT(S_AUGMENT, "crop_padding", augment.crop_padding, 0, 64, "2",
        "Random crop after zero padding by this many pixels on every side; 0: off."),
    BOOL(S_AUGMENT, "flip", augment.flip, "yes", "Random horizontal flip."),
    FLT(S_AUGMENT, "erase_prob", augment.erase_prob, 0, 1, 0, "0",
        "Probability of random erasing; 0: off."),
    BOOL(S_AUGMENT, "normalize", augment.normalize, "yes",
         "Subtract the data set's mean and divide by its standard deviation."),

    INT(S_CHECKPOINT, "deflate", ckpt_deflate, 0, 9, "0",
        "gzip level of the parameter datasets of checkpoints; 0: uncompressed."),

    INT(S_EXTRACT, "samples", extract.samples, 10, 1000000, "300",
        "Subnets whose BN-recalibrated validation accuracy ofa-extract measures to fit the "
        "accuracy predictor (cached beside the supernet, shared by every device; "
        "`--samples` overrides)."),
    INT(S_EXTRACT, "generations", extract.generations, 1, 1000000, "500",
        "Rounds of the evolutionary search and of NSGA-II (population 100, 25 parents, 50 "
        "mutants and 50 crossovers a round; `--generations` overrides)."),
    INT(S_EXTRACT, "top", extract.top, 1, 64, "5",
        "Best candidates of the search re-measured for real (accuracy, and latency on a host "
        "profile) before one is chosen, with the best of each resolution (`--top` "
        "overrides)."),

    INT(S_EXPORT, "epochs", export.epochs, 0, 100000, "2",
        "Epochs of the stability fine-tuning pass of ofa-export; 0: skip the pass."),
    FLT(S_EXPORT, "lr", export.lr, 0, 100, F_MIN_EXCL, "0.01",
        "Peak learning rate of the pass (cosine to 0, no warm-up; SGD, Nesterov momentum 0.9)."),
    INT(S_EXPORT, "batch_size", export.batch_size, 1, 65536, "128",
        "Images per step of the pass (each also seen through a device variant)."),
    INT(S_EXPORT, "subset", export.subset, 0, INT_MAX, "0",
        "Fine-tune on the first N images of the training split; 0: all (at least "
        "`batch_size` otherwise)."),
    FLT(S_EXPORT, "alpha", export.alpha, 0, 1000, 0, "10",
        "Weight of the stability term, the KL divergence of p(v(x)) from p(x), beside the "
        "cross-entropy; 0: cross-entropy only."),
    FLT(S_EXPORT, "weight_decay", export.weight_decay, 0, 1, 0, "5e-05",
        "Weight decay of the pass, on conv and linear weights (form as `train.wd_decoupled`)."),
    BOOL(S_EXPORT, "fake_quant", export.fake_quant, "yes",
         "Fine-tune through int8 fake quantization (weights per output channel, block outputs "
         "per tensor, straight-through), so that the int8 model is what is stabilised."),
    {S_EXPORT, "variant_draw", T_ENUM, RO(export.variant_draw), 0, draw_names, 0, 0, 0,
     "random",
     "Which fp32 variants each image of the pass is seen through: `random` (one drawn per "
     "image); `worst` (of every fp32 variant, the one whose prediction is furthest, by KL, "
     "from the clean image's under the current weights in inference mode: worst-of-k; costs "
     "one inference pass per variant a step); `all` (every fp32 variant, the stability term "
     "their mean; a step's batch is 1 + variants times `batch_size`)."},
    BOOL(S_EXPORT, "detach_clean", export.detach_clean, "no",
         "The stability term's gradient reaches the variant branch only: p(x) is a fixed "
         "target, as the sandwich rule's teacher is, and the clean prediction answers to the "
         "cross-entropy alone."),
    {S_EXPORT, "target", T_ENUM, RO(export.target), 0, target_names, 0, 0, 0, "labels",
     "The clean term of the pass: `labels`, the cross-entropy on the labels; `original`, "
     "distillation from the subnet as it came into the pass (a frozen fp32 copy in inference "
     "mode); `largest`, distillation from the supernet's largest subnet at the largest "
     "resolution (BN recalibrated), the teacher the supernet trained its subnets with. The "
     "teacher sees the clean image, in fp32."},
    INT(S_EXPORT, "calib_images", export.calib_images, 1, 10000000, "1000",
        "Training images that calibrate the int8 activation ranges."),
    {S_EXPORT, "calib_method", T_ENUM, RO(export.calib_percentile_on), 0, calib_names, 0, 0, 0,
     "minmax",
     "int8 activation ranges: `minmax` of the calibration activations, or `percentile` "
     "(the `calib_percentile` percentile of the values on either side)."},
    FLT(S_EXPORT, "calib_percentile", export.calib_percentile, 50, 100, F_MIN_EXCL, "99.99",
        "percentile: the percentile of the calibration activations kept in range."),
    INT(S_EXPORT, "test_images", export.test_images, 0, INT_MAX, "0",
        "Test images for the reported accuracy and instability (the first N); 0: all."),
    {S_EXPORT, "seed", T_LONG, RO(export.seed), 0, NULL, 0, (double)LONG_MAX, 0, "1",
     "Seed of the pass (image order, variant draws, sensor noise) and of the calibration "
     "subset."},

    {S_DEVICE, "latency_model", T_ENUM, DO(model), 0, model_names, 0, 0, 0, "measured",
     "`measured`: per-block table profiled on this host (fp32 runtime, one thread); "
     "`opwise`: per-op-type regressors fitted on this host; `opcount`: `a_ms_per_mmac` x MACs "
     "+ `b_ms` (MicroNets); `lut`: the TSV table `lut` (docs/devices.md)."},
    {S_DEVICE, "arith", T_ENUM, DO(arith), 0, arith_names, 0, 0, 0, "fp32",
     "measured: the runtime profiled on this host, `fp32` or `int8` (the int8 runtime of "
     "ofa-run, on the instruction set it picks); opwise needs `fp32`; opcount and lut ignore "
     "it."},
    DBL("a_ms_per_mmac", a_ms_per_mmac, 0, 1e6, "0",
        "opcount: milliseconds per million multiply-adds (required, > 0, for opcount)."),
    DBL("b_ms", b_ms, -1e6, 1e6, "0", "opcount: milliseconds per inference besides the MACs."),
    STR("lut", lut, "",
        "lut: the latency table (TSV, docs/devices.md); a relative path is relative to the "
        "recipe file that sets it and is stored absolute (required for lut)."),
    STR("source", source, "",
        "Where the coefficients or the table come from (free text, shown in reports)."),
    DBL("latency_ms", latency_ms, 0, 1e9, "0",
        "Latency budget in milliseconds at batch 1 (predicted by the latency model); 0: none."),
    DBL("flash_kb", flash_kb, 0, 1e9, "0",
        "Flash budget in KiB (1024 bytes): int8 weights and int32 biases after BN folding; "
        "0: none."),
    DBL("sram_kb", sram_kb, 0, 1e9, "0",
        "SRAM budget in KiB: peak bytes of live int8 activations (docs/devices.md); 0: none."),
    DBL("mmacs", mmacs, 0, 1e9, "0", "Budget of millions of multiply-adds per image; 0: none."),
    {S_DEVICE, "resolutions", T_LIST, DO(resolutions), DO(n_res), NULL, 8, 4096, F_EMPTY, "",
     "Input resolutions the search may choose for this device, each one of `[supernet]` "
     "`resolutions` (checked by ofa-train before it trains, and by ofa-extract against the "
     "supernet's); empty: all of them. For a device whose images come at a size the model "
     "should take as they are."},

    VINT("jpeg_quality", jpeg_quality, 0, 100, "0",
         "JPEG round trip of the stored image at this quality (libjpeg-turbo, 4:4:4; grey or "
         "RGB images); 0: none."),
    VFLT("gamma", gamma, 0, 10, F_MIN_EXCL, "1",
         "Tone curve on [0,1] pixels: x -> contrast * (x^gamma - 0.5) + 0.5 + brightness, "
         "clamped to [0,1]."),
    VFLT("brightness", brightness, -1, 1, 0, "0", "Tone curve: added brightness."),
    VFLT("contrast", contrast, 0, 10, 0, "1", "Tone curve: contrast around 0.5."),
    VFLT("blur", blur_sigma, 0, 20, 0, "0",
         "Gaussian blur sigma in pixels of the stored image; 0: none."),
    VFLT("noise", noise_std, 0, 1, 0, "0",
         "Sensor noise: standard deviation of Gaussian noise on [0,1] pixels (clamped), seeded "
         "per image; 0: none."),
    VENUM("resize", interp, interp_names, "bilinear",
          "Interpolation of the resize to the model's resolution (`bilinear` is the "
          "evaluator's); no effect when the sizes match."),
    VENUM("arithmetic", int8, arith_names, "fp32",
          "`fp32`: the float model; `int8`: the exported int8 model (integer runtime)."),
};

#define N_KEYS (sizeof keys / sizeof keys[0])

/* ---- small text helpers -------------------------------------------------- */

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = ofa_xmalloc(n, "recipe text");
    memcpy(d, s, n);
    return d;
}

/* A value as quoted in messages: bounded, non-printable bytes replaced. */
static void shown(const char *s, char *buf, size_t n)
{
    size_t i = 0, j = 0, lim = n > 8 ? n - 6 : 0;
    buf[j++] = '"';
    for (; s[i] && j < lim; i++)
        buf[j++] = isprint((unsigned char)s[i]) ? s[i] : '?';
    if (s[i])
        buf[j++] = '.', buf[j++] = '.', buf[j++] = '.';
    buf[j++] = '"';
    buf[j] = '\0';
}

static void trim_copy(const char *s, size_t len, char *out, size_t n)
{
    while (len && isspace((unsigned char)*s))
        s++, len--;
    while (len && isspace((unsigned char)s[len - 1]))
        len--;
    if (len >= n)
        len = n - 1;
    memcpy(out, s, len);
    out[len] = '\0';
}

/* Edit distance of two short names, for "did you mean". */
static int distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la >= MAX_NAME || lb >= MAX_NAME)
        return 99;
    int row[MAX_NAME + 1], prev[MAX_NAME + 1];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int d = prev[j - 1] + (a[i - 1] != b[j - 1]);
            if (prev[j] + 1 < d)
                d = prev[j] + 1;
            if (row[j - 1] + 1 < d)
                d = row[j - 1] + 1;
            row[j] = d;
        }
        memcpy(prev, row, (lb + 1) * sizeof *row);
    }
    return prev[lb];
}

static void format_float(float v, char *buf, size_t n)
{
    /* The shortest text that reads back to the same float (at most %.9g). */
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, n, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v)
            return;
    }
}

static void format_double(double v, char *buf, size_t n)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

/* ---- sections and keys --------------------------------------------------- */

/* [supernet] etc.; [stageN] gives S_STAGE and *stage = N - 1. */
static enum sec classify_section(const char *name, int *stage)
{
    *stage = -1;
    if (!*name)
        return S_TOP;
    static const char name_chars[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-";
    if (strncmp(name, "device", 6) == 0 && (name[6] == '.' || name[6] == '\0')) {
        const char *d = name + 7;
        size_t n = name[6] ? strlen(d) : 0;
        if (n == 0 || n > MAX_DEVICE_NAME || strspn(d, name_chars) != n)
            return S_BADDEVICE;
        return S_DEVICE;
    }
    if (strncmp(name, "export.", 7) == 0) {
        const char *d = name + 7;
        size_t n = strlen(d);
        if (n == 0 || n > MAX_DEVICE_NAME || strspn(d, name_chars) != n)
            return S_BADEXPORTDEV;
        return S_EXPORTDEV;
    }
    if (strncmp(name, "variant", 7) == 0 && (name[7] == '.' || name[7] == '\0')) {
        const char *d = name + 8;
        size_t n = name[7] ? strlen(d) : 0;
        if (n == 0 || n > MAX_VARIANT_NAME || strspn(d, name_chars) != n)
            return S_BADVARIANT;
        return S_VARIANT;
    }
    if (strncmp(name, "stage", 5) == 0 && name[5]) {
        const char *d = name + 5;
        size_t n = strlen(d);
        if (strspn(d, "0123456789") != n)
            return S_UNKNOWN;
        if (d[0] == '0' || n > 3)
            return S_BADSTAGE;
        int v = atoi(d);
        if (v < 1 || v > OFA_MAX_STAGES)
            return S_BADSTAGE;
        *stage = v - 1;
        return S_STAGE;
    }
    for (int s = S_SUPERNET; s <= S_EXPORT; s++)
        if (s != S_STAGE && strcmp(name, sec_names[s]) == 0)
            return (enum sec)s;
    return S_UNKNOWN;
}

static const struct key *find_key(enum sec s, const char *name)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (keys[i].sec == s && strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

/* " (did you mean epochs?)" or " (it belongs in [train])" or "". */
static void suggest_key(enum sec s, const char *name, char *buf, size_t n)
{
    const struct key *best = NULL;
    int bd = 3;
    for (size_t i = 0; i < N_KEYS; i++) {
        int d = keys[i].sec == s ? distance(name, keys[i].name) : 99;
        if (d < bd)
            bd = d, best = &keys[i];
    }
    buf[0] = '\0';
    if (best) {
        snprintf(buf, n, " (did you mean %s?)", best->name);
        return;
    }
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].name, name) == 0) {
            snprintf(buf, n, " (it belongs in [%s%s])", sec_names[keys[i].sec],
                     keys[i].sec == S_STAGE                                   ? "N"
                     : keys[i].sec == S_DEVICE || keys[i].sec == S_VARIANT ? ".NAME"
                                                                              : "");
            return;
        }
}

static void suggest_section(const char *name, char *buf, size_t n)
{
    int bd = 3, best = -1;
    for (int s = S_SUPERNET; s <= S_EXPORT; s++) {
        int d = distance(name, s == S_STAGE ? "stage1" : sec_names[s]);
        if (d < bd)
            bd = d, best = s;
    }
    buf[0] = '\0';
    if (best >= 0) {
        snprintf(buf, n, " (did you mean [%s]?)", best == S_STAGE ? "stage1" : sec_names[best]);
        return;
    }
    const char *dot = strchr(name, '.');
    char pre[MAX_NAME];
    if (dot && (size_t)(dot - name) < sizeof pre) {
        memcpy(pre, name, (size_t)(dot - name));
        pre[dot - name] = '\0';
        if (distance(pre, "device") < 3)
            snprintf(buf, n, " (did you mean [device%.30s]?)", dot);
        else if (distance(pre, "variant") < 3)
            snprintf(buf, n, " (did you mean [variant%.30s]?)", dot);
    }
}

static void range_text(const struct key *k, char *buf, size_t n)
{
    if (k->type == T_STRING)
        snprintf(buf, n, "at most %d characters", (int)k->max - 1);
    else if (k->type == T_FLOAT || k->type == T_DOUBLE)
        snprintf(buf, n, "%c%.10g, %.10g%c", k->flags & F_MIN_EXCL ? '(' : '[', k->min, k->max,
                 k->flags & F_MAX_EXCL ? ')' : ']');
    else
        snprintf(buf, n, "[%lld, %lld]", (long long)k->min,
                 k->max >= (double)LLONG_MAX ? LLONG_MAX : (long long)k->max);
}

static int in_range(const struct key *k, double v)
{
    if (v < k->min || ((k->flags & F_MIN_EXCL) && v == k->min))
        return 0;
    if (v > k->max || ((k->flags & F_MAX_EXCL) && v == k->max))
        return 0;
    return 1;
}

/* 0, -1 not an integer, -2 overflows. */
static int parse_ll(const char *s, const char **end, long long *out)
{
    char *e;
    errno = 0;
    long long v = strtoll(s, &e, 10);
    *end = e;
    if (e == s)
        return -1;
    if (errno == ERANGE)
        return -2;
    *out = v;
    return 0;
}

static void enum_list(const struct enum_name *names, char *buf, size_t n)
{
    buf[0] = '\0';
    for (int i = 0; names[i].name; i++) {
        size_t l = strlen(buf);
        snprintf(buf + l, n - l, "%s%s", i ? ", " : "", names[i].name);
    }
}

/* Parse text into the field of k at base. On failure, msg says why (without
 * the key's name) and nothing is written. */
static int apply_value(char *base, const struct key *k, const char *val, char *msg, size_t n)
{
    char sv[64], rt[64];
    shown(val, sv, sizeof sv);
    range_text(k, rt, sizeof rt);
    switch (k->type) {
    case T_INT:
    case T_LONG: {
        long long v;
        const char *end;
        int rc = parse_ll(val, &end, &v);
        if (rc == -1 || *end) {
            snprintf(msg, n, "expected an integer, got %s", sv);
            return -1;
        }
        if (rc == -2 || !in_range(k, (double)v)) {
            snprintf(msg, n, "%s is out of range %s", sv, rt);
            return -1;
        }
        if (k->type == T_INT)
            *(int *)(void *)(base + k->off) = (int)v;
        else
            *(long *)(void *)(base + k->off) = (long)v;
        return 0;
    }
    case T_FLOAT: {
        char *end;
        errno = 0;
        float v = strtof(val, &end);
        if (end == val || *end) {
            snprintf(msg, n, "expected a number, got %s", sv);
            return -1;
        }
        if (!isfinite(v)) {
            snprintf(msg, n, "expected a finite number, got %s", sv);
            return -1;
        }
        if (errno == ERANGE) {
            snprintf(msg, n, "%s is too large or too small for a float", sv);
            return -1;
        }
        if (!in_range(k, (double)v)) {
            snprintf(msg, n, "%s is out of range %s", sv, rt);
            return -1;
        }
        *(float *)(void *)(base + k->off) = v;
        return 0;
    }
    case T_DOUBLE: {
        char *end;
        errno = 0;
        double v = strtod(val, &end);
        if (end == val || *end) {
            snprintf(msg, n, "expected a number, got %s", sv);
            return -1;
        }
        if (!isfinite(v) || errno == ERANGE) {
            snprintf(msg, n, "expected a finite number, got %s", sv);
            return -1;
        }
        if (!in_range(k, v)) {
            snprintf(msg, n, "%s is out of range %s", sv, rt);
            return -1;
        }
        *(double *)(void *)(base + k->off) = v;
        return 0;
    }
    case T_STRING: {
        const size_t len = strlen(val), room = MAX_LINE - strlen(k->name) - 3;
        const size_t lim = (size_t)k->max - 1 < room ? (size_t)k->max - 1 : room;
        if (len > lim) {
            snprintf(msg, n, "longer than %zu characters (\"%s = \" and the value must fit "
                     "in a recipe line of %d)", lim, k->name, MAX_LINE);
            return -1;
        }
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)val[i];
            if (c < 0x20 || c == 0x7f) {
                snprintf(msg, n, "control character in %s", sv);
                return -1;
            }
            /* what a reader would take for a comment cannot round-trip: the
             * value is written after "key = " */
            if ((c == '#' || c == ';') && (i == 0 || val[i - 1] == ' ' || val[i - 1] == '\t')) {
                snprintf(msg, n, "'%c' %s starts a comment; not allowed in %s", c,
                         i ? "after a space" : "at the start of a value", sv);
                return -1;
            }
        }
        memcpy(base + k->off, val, len + 1);
        return 0;
    }
    case T_BOOL: {
        static const char *const yes[] = {"true", "yes", "on", "1"};
        static const char *const no[] = {"false", "no", "off", "0"};
        for (int i = 0; i < 4; i++) {
            if (strcasecmp(val, yes[i]) == 0 || strcasecmp(val, no[i]) == 0) {
                *(int *)(void *)(base + k->off) = strcasecmp(val, yes[i]) == 0;
                return 0;
            }
        }
        snprintf(msg, n, "expected yes/no (or true/false, on/off, 1/0), got %s", sv);
        return -1;
    }
    case T_ENUM: {
        for (int i = 0; k->names[i].name; i++)
            if (strcmp(val, k->names[i].name) == 0) {
                *(int *)(void *)(base + k->off) = k->names[i].value;
                return 0;
            }
        char l[128];
        enum_list(k->names, l, sizeof l);
        snprintf(msg, n, "expected one of %s, got %s", l, sv);
        return -1;
    }
    case T_LIST: {
        int v[OFA_MAX_CHOICES] = {0};
        int cnt = 0;
        const char *p = val;
        while (cnt > 0 || *p || !(k->flags & F_EMPTY)) { /* F_EMPTY: "" */
            long long x;
            const char *end;
            int rc = parse_ll(p, &end, &x);
            if (rc == -1) {
                snprintf(msg, n, "expected a comma-separated list of integers, got %s", sv);
                return -1;
            }
            if (cnt == OFA_MAX_CHOICES) {
                snprintf(msg, n, "at most %d values, got %s", OFA_MAX_CHOICES, sv);
                return -1;
            }
            if (rc == -2) {
                snprintf(msg, n, "a value of %s is out of range %s", sv, rt);
                return -1;
            }
            if (!in_range(k, (double)x)) {
                snprintf(msg, n, "%lld is out of range %s", x, rt);
                return -1;
            }
            if ((k->flags & F_ODD) && x % 2 == 0) {
                snprintf(msg, n, "%lld is not odd (choices in %s: 3, 5, 7)", x, rt);
                return -1;
            }
            if (cnt > 0 && x <= v[cnt - 1]) {
                snprintf(msg, n, "values must be strictly ascending, got %s", sv);
                return -1;
            }
            v[cnt++] = (int)x;
            p = end;
            while (isspace((unsigned char)*p))
                p++;
            if (*p == '\0')
                break;
            if (*p != ',') {
                snprintf(msg, n, "expected a comma-separated list of integers, got %s", sv);
                return -1;
            }
            p++;
        }
        memcpy(base + k->off, v, sizeof v);
        *(int *)(void *)(base + k->count_off) = cnt;
        return 0;
    }
    }
    snprintf(msg, n, "internal error: unknown key type");
    return -1;
}

static void value_text(const char *base, const struct key *k, char *buf, size_t n)
{
    const void *p = base + k->off;
    switch (k->type) {
    case T_INT:
        snprintf(buf, n, "%d", *(const int *)p);
        return;
    case T_LONG:
        snprintf(buf, n, "%ld", *(const long *)p);
        return;
    case T_FLOAT:
        format_float(*(const float *)p, buf, n);
        return;
    case T_DOUBLE:
        format_double(*(const double *)p, buf, n);
        return;
    case T_STRING:
        snprintf(buf, n, "%s", (const char *)p);
        return;
    case T_BOOL:
        snprintf(buf, n, "%s", *(const int *)p ? "yes" : "no");
        return;
    case T_ENUM:
        for (int i = 0; k->names[i].name; i++)
            if (k->names[i].value == *(const int *)p) {
                snprintf(buf, n, "%s", k->names[i].name);
                return;
            }
        snprintf(buf, n, "invalid(%d)", *(const int *)p);
        return;
    case T_LIST: {
        const int *v = p;
        int cnt = *(const int *)(const void *)(base + k->count_off);
        buf[0] = '\0';
        for (int i = 0; i < cnt && i < OFA_MAX_CHOICES; i++) {
            size_t l = strlen(buf);
            snprintf(buf + l, n - l, "%s%d", i ? ", " : "", v[i]);
        }
        return;
    }
    }
}

static void stage_defaults(struct ofa_stage_cfg *st)
{
    memset(st, 0, sizeof *st);
    char msg[256];
    for (size_t i = 0; i < N_KEYS; i++)
        if (keys[i].sec == S_STAGE && keys[i].def)
            OFA_ASSERT(apply_value((char *)st, &keys[i], keys[i].def, msg, sizeof msg) == 0);
}

void ofa_recipe_default(struct ofa_recipe *r)
{
    memset(r, 0, sizeof *r);
    ofa_space_default(&r->space);
    struct ofa_space sp;
    memcpy(&sp, &r->space, sizeof sp);
    char msg[256];
    for (size_t i = 0; i < N_KEYS; i++)
        if (keys[i].sec != S_STAGE && keys[i].sec != S_DEVICE && keys[i].sec != S_VARIANT)
            OFA_ASSERT(apply_value((char *)r, &keys[i], keys[i].def, msg, sizeof msg) == 0);
    /* The table's defaults are what the docs show: they must be space.c's. */
    OFA_ASSERT(memcmp(&sp, &r->space, sizeof sp) == 0);
}

/* ---- [export.NAME] ------------------------------------------------------- */

/* The index of [export] key k among the [export] keys: its bit in struct
 * ofa_export_override's set. */
static int export_bit(const struct key *k)
{
    int b = 0;
    for (const struct key *q = keys; q < k; q++)
        b += q->sec == S_EXPORT;
    OFA_ASSERT(k->sec == S_EXPORT && b < 32);
    return b;
}

/* [export] key k with its offset into struct ofa_export_cfg instead of
 * struct ofa_recipe, for a device's override. */
static struct key export_key(const struct key *k)
{
    OFA_ASSERT(k->sec == S_EXPORT && k->off >= offsetof(struct ofa_recipe, export));
    struct key e = *k;
    e.off -= offsetof(struct ofa_recipe, export);
    return e;
}

static size_t key_size(const struct key *k)
{
    switch (k->type) {
    case T_LONG:
        return sizeof(long);
    case T_FLOAT:
        return sizeof(float);
    case T_DOUBLE:
        return sizeof(double);
    case T_INT:
    case T_BOOL:
    case T_ENUM:
        return sizeof(int);
    case T_LIST:
    case T_STRING:
        break;
    }
    OFA_ASSERT(!"an [export] key of a type that overrides do not copy");
    return 0;
}

static int find_override(const struct ofa_recipe *r, const char *device)
{
    for (int i = 0; i < r->n_export_overrides; i++)
        if (strcmp(r->export_overrides[i].device, device) == 0)
            return i;
    return -1;
}

/* The override of device, added (no key set) when the recipe has none yet;
 * NULL when OFA_MAX_DEVICES are there already. */
static struct ofa_export_override *get_override(struct ofa_recipe *r, const char *device)
{
    int o = find_override(r, device);
    if (o >= 0)
        return &r->export_overrides[o];
    if (r->n_export_overrides == OFA_MAX_DEVICES)
        return NULL;
    struct ofa_export_override *ov = &r->export_overrides[r->n_export_overrides++];
    memset(ov, 0, sizeof *ov);
    size_t l = strlen(device);
    OFA_ASSERT(l < sizeof ov->device);
    memcpy(ov->device, device, l + 1);
    return ov;
}

/* Key k of [export] set to val in ov. */
static int override_value(struct ofa_export_override *ov, const struct key *k, const char *val,
                          char *msg, size_t n)
{
    const struct key e = export_key(k);
    if (apply_value((char *)&ov->cfg, &e, val, msg, n))
        return -1;
    ov->set |= 1u << export_bit(k);
    return 0;
}

void ofa_recipe_export(const struct ofa_recipe *r, const char *device,
                       struct ofa_export_cfg *out)
{
    *out = r->export;
    int o = find_override(r, device);
    if (o < 0)
        return;
    const struct ofa_export_override *ov = &r->export_overrides[o];
    for (size_t i = 0; i < N_KEYS; i++)
        if (keys[i].sec == S_EXPORT && (ov->set >> export_bit(&keys[i]) & 1u)) {
            const struct key e = export_key(&keys[i]);
            memcpy((char *)out + e.off, (const char *)&ov->cfg + e.off, key_size(&e));
        }
}

/* ---- cross-field checks --------------------------------------------------- */

static int find_device(const struct ofa_recipe *r, const char *name);

/* Constraints between keys, after every key is read. On failure *key names
 * the key to blame ("train.final_lr", or "stageN" for a stage) and msg says
 * why, starting with that name. */
static int cross_check(const struct ofa_recipe *r, char *key, size_t keyn, char *msg, size_t n)
{
    struct ofa_error e;
    if (ofa_space_validate(&r->space, &e)) {
        int st;
        if (sscanf(e.msg, "stage %d:", &st) == 1) {
            snprintf(key, keyn, "stage%d", st);
            snprintf(msg, n, "[stage%d]%.400s", st, e.msg + strcspn(e.msg, ":"));
            return -1;
        }
        size_t w = strcspn(e.msg, ":, ");
        char name[MAX_NAME];
        trim_copy(e.msg, w < sizeof name ? w : sizeof name - 1, name, sizeof name);
        if (e.msg[w] == ':' && find_key(S_SUPERNET, name))
            snprintf(key, keyn, "supernet.%.40s", name);
        else
            snprintf(key, keyn, "supernet");
        snprintf(msg, n, "supernet.%.400s", e.msg);
        return -1;
    }
    const struct ofa_train_cfg *t = &r->train;
#define FAIL(k, ...) \
    do { snprintf(key, keyn, "%s", k); snprintf(msg, n, __VA_ARGS__); return -1; } while (0)
    if (t->final_lr > t->lr)
        FAIL("train.final_lr", "train.final_lr (%g) must not exceed train.lr (%g)",
             (double)t->final_lr, (double)t->lr);
    if (t->warmup_epochs > (float)t->epochs)
        FAIL("train.warmup_epochs", "train.warmup_epochs (%g) must not exceed train.epochs (%d)",
             (double)t->warmup_epochs, t->epochs);
    if (t->calib_batch > t->calib_images)
        FAIL("train.calib_batch", "train.calib_batch (%d) must not exceed train.calib_images (%d)",
             t->calib_batch, t->calib_images);
    if (t->shards > 0 && t->batch_size % t->shards != 0)
        FAIL("train.shards", "train.batch_size (%d) is not a multiple of train.shards (%d)",
             t->batch_size, t->shards);
    if (t->subset > 0 && t->subset < t->batch_size)
        FAIL("train.subset", "train.subset (%d) must be 0 (all images) or at least "
             "train.batch_size (%d)", t->subset, t->batch_size);
    if ((double)t->shrink_start + (double)t->beta_ramp > 1.0 + 1e-6)
        FAIL("train.beta_ramp", "train.shrink_start + train.beta_ramp (%g + %g) must be at "
             "most 1, so that the ramp ends within the run",
             (double)t->shrink_start, (double)t->beta_ramp);
#undef FAIL
    for (int i = -1; i < r->n_export_overrides; i++) {
        /* [export], then each device's settings */
        struct ofa_export_cfg x;
        char sec[64] = "export";
        if (i >= 0) {
            const char *dev = r->export_overrides[i].device;
            if (find_device(r, dev) < 0) {
                snprintf(key, keyn, "export.%s", dev);
                snprintf(msg, n, "[export.%s]: the recipe has no device %s (a [device.%s] "
                         "section)", dev, dev, dev);
                return -1;
            }
            snprintf(sec, sizeof sec, "export.%s", dev);
            ofa_recipe_export(r, dev, &x);
        } else {
            x = r->export;
        }
        if (x.subset > 0 && x.subset < x.batch_size) {
            snprintf(key, keyn, "%s.subset", sec);
            snprintf(msg, n, "%s.subset (%d) must be 0 (all images) or at least "
                     "%s.batch_size (%d)", sec, x.subset, sec, x.batch_size);
            return -1;
        }
    }
    for (int i = 0; i < r->n_devices; i++) {
        const struct ofa_device *d = &r->devices[i];
        if (d->model == OFA_LAT_OPCOUNT && !(d->a_ms_per_mmac > 0)) {
            snprintf(key, keyn, "device.%s.a_ms_per_mmac", d->name);
            snprintf(msg, n, "device.%s.a_ms_per_mmac must be > 0 for latency_model = opcount",
                     d->name);
            return -1;
        }
        if (d->model == OFA_LAT_OPWISE && d->arith != OFA_ARITH_FP32) {
            snprintf(key, keyn, "device.%s.arith", d->name);
            snprintf(msg, n, "device.%s.arith: latency_model = opwise profiles the fp32 runtime "
                     "only; use latency_model = measured for int8", d->name);
            return -1;
        }
        if (d->model == OFA_LAT_LUT && !d->lut[0]) {
            snprintf(key, keyn, "device.%s.lut", d->name);
            snprintf(msg, n, "device.%s.lut: latency_model = lut needs a table file", d->name);
            return -1;
        }
    }
    return 0;
}

static int find_device(const struct ofa_recipe *r, const char *name)
{
    for (int i = 0; i < r->n_devices; i++)
        if (strcmp(r->devices[i].name, name) == 0)
            return i;
    return -1;
}

const struct ofa_device *ofa_recipe_device(const struct ofa_recipe *r, const char *name)
{
    int i = find_device(r, name);
    return i >= 0 ? &r->devices[i] : NULL;
}

/* A new device with every key at its default. */
static void device_defaults(struct ofa_device *d, const char *name)
{
    memset(d, 0, sizeof *d);
    size_t l = strlen(name);
    OFA_ASSERT(l < sizeof d->name);
    memcpy(d->name, name, l + 1);
    char msg[256];
    for (size_t i = 0; i < N_KEYS; i++)
        if (keys[i].sec == S_DEVICE)
            OFA_ASSERT(apply_value((char *)d, &keys[i], keys[i].def, msg, sizeof msg) == 0);
}

static int find_variant(const struct ofa_recipe *r, const char *name)
{
    for (int i = 0; i < r->n_variants; i++)
        if (strcmp(r->variants[i].name, name) == 0)
            return i;
    return -1;
}

/* A new variant with every key at its default (the clean fp32 pipeline). */
static void variant_defaults(struct ofa_variant_cfg *v, const char *name)
{
    memset(v, 0, sizeof *v);
    size_t l = strlen(name);
    OFA_ASSERT(l < sizeof v->name);
    memcpy(v->name, name, l + 1);
    char msg[256];
    for (size_t i = 0; i < N_KEYS; i++)
        if (keys[i].sec == S_VARIANT)
            OFA_ASSERT(apply_value((char *)v, &keys[i], keys[i].def, msg, sizeof msg) == 0);
}

/* A relative lut path made absolute against the directory of file (the
 * current directory when file is NULL): 0, or -1 when it does not fit. */
static int resolve_path(const char *file, char *path, size_t n)
{
    if (!path[0] || path[0] == '/')
        return 0;
    char cwd[PATH_MAX], dir[PATH_MAX], out[PATH_MAX];
    const char *slash = file ? strrchr(file, '/') : NULL;
    int w;
    if (slash && file[0] == '/') {
        w = snprintf(dir, sizeof dir, "%.*s", (int)(slash - file), file);
    } else {
        if (!getcwd(cwd, sizeof cwd))
            return -1;
        if (slash)
            w = snprintf(dir, sizeof dir, "%s/%.*s", cwd, (int)(slash - file), file);
        else
            w = snprintf(dir, sizeof dir, "%s", cwd);
    }
    if (w < 0 || (size_t)w >= sizeof dir)
        return -1;
    const char *rel = path;
    while (rel[0] == '.' && rel[1] == '/')
        rel += 2;
    w = snprintf(out, sizeof out, "%s%s%s", dir, dir[0] && dir[strlen(dir) - 1] == '/' ? "" : "/",
                 rel);
    if (w < 0 || (size_t)w >= n || (size_t)w >= sizeof out)
        return -1;
    memcpy(path, out, (size_t)w + 1);
    return 0;
}

/* The longest resolved lut path + 1: the resolved recipe writes it as
 * "lut = PATH" on one line of at most MAX_LINE characters. */
static size_t lut_cap(void)
{
    const size_t room = MAX_LINE - strlen("lut = ") + 1;
    return sizeof ((struct ofa_device *)0)->lut < room ? sizeof ((struct ofa_device *)0)->lut
                                                       : room;
}

/* ---- loading ------------------------------------------------------------- */

struct origin {
    int file; /* index into load.files; -1: not set by this load */
    long line;
};

struct load {
    struct ofa_recipe r;    /* built here, copied out on success */
    struct ofa_error *err;
    int failed;
    int allow_include;
    char *files[MAX_FILES]; /* names as shown in messages */
    int n_files;
    struct stat stack[MAX_INCLUDE_DEPTH + 1]; /* identity of the files being read */
    int depth;
    struct origin origin[N_KEYS];
    /* [stageN] sections anywhere in this load replace the default stages. */
    struct ofa_stage_cfg stages[OFA_MAX_STAGES];
    unsigned seen, width_set;
    struct origin stage_at[OFA_MAX_STAGES]; /* first header of each */
    /* [device.NAME] sections accumulate in ld->r.devices */
    struct origin dev_at[OFA_MAX_DEVICES];  /* first header of each */
    struct origin dev_origin[OFA_MAX_DEVICES][N_KEYS];
    /* [variant.NAME] sections accumulate in ld->r.variants */
    struct origin var_at[OFA_MAX_VARIANTS];
    struct origin var_origin[OFA_MAX_VARIANTS][N_KEYS];
    /* [export.NAME] sections accumulate in ld->r.export_overrides */
    struct origin exo_at[OFA_MAX_DEVICES];
    struct origin exo_origin[OFA_MAX_DEVICES][N_KEYS];
};

struct source {
    struct load *ld;
    int file;
    const char *text;
    size_t pos, len;
    long line;
    const char *cur; /* the line inih is working on */
    size_t cur_len;
    int prev_key;    /* a key since the last header: inih continues indented lines */
    long fail_line;  /* line of this file where reading stopped on an error */
};

static int fail(struct source *src, long line, const char *fmt, ...) OFA_PRINTF(3, 4);
static int fail(struct source *src, long line, const char *fmt, ...)
{
    struct load *ld = src->ld;
    src->fail_line = line;
    if (ld->failed)
        return -1; /* an included file already said what is wrong */
    ld->failed = 1;
    char buf[sizeof ld->err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return ofa_error_set(ld->err, ld->files[src->file], line, "%s", buf);
}

static struct load *load_new(struct ofa_error *err, int allow_include)
{
    struct load *ld = ofa_xcalloc(1, sizeof *ld, "recipe loader");
    ofa_recipe_default(&ld->r);
    ld->err = err;
    ld->allow_include = allow_include;
    for (size_t i = 0; i < N_KEYS; i++)
        ld->origin[i].file = -1;
    for (int d = 0; d < OFA_MAX_DEVICES; d++)
        for (size_t i = 0; i < N_KEYS; i++)
            ld->dev_origin[d][i].file = -1;
    for (int v = 0; v < OFA_MAX_VARIANTS; v++)
        for (size_t i = 0; i < N_KEYS; i++)
            ld->var_origin[v][i].file = -1;
    for (int o = 0; o < OFA_MAX_DEVICES; o++)
        for (size_t i = 0; i < N_KEYS; i++)
            ld->exo_origin[o][i].file = -1;
    return ld;
}

static void load_free(struct load *ld)
{
    for (int i = 0; i < ld->n_files; i++)
        free(ld->files[i]);
    free(ld);
}

static void note_stage(struct source *src, int idx)
{
    struct load *ld = src->ld;
    if (ld->seen & (1u << idx))
        return;
    ld->seen |= 1u << idx;
    stage_defaults(&ld->stages[idx]);
    ld->stage_at[idx].file = src->file;
    ld->stage_at[idx].line = src->line;
}

static const char *skip_bom(const struct source *src, const char *p, const char *e)
{
    if (src->line == 1 && e - p >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        return p + 3;
    return p;
}

/* inih does not report section headers, so the reader notes them: an empty
 * [stage3] must still count, and an unknown section is refused at its own
 * line. Returns -1 after reporting an error. */
static int note_header(struct source *src)
{
    const char *e = src->cur + src->cur_len;
    const char *p = skip_bom(src, src->cur, e);
    while (p < e && isspace((unsigned char)*p))
        p++;
    if (p == e || *p != '[')
        return 0;
    if (p > src->cur && src->prev_key)
        return 0; /* inih takes an indented line as a continuation */
    const char *close = memchr(p + 1, ']', (size_t)(e - p - 1));
    if (!close)
        return 0; /* inih reports the syntax error */
    src->prev_key = 0;
    char name[MAX_NAME + 8], sv[MAX_NAME + 16], hint[64];
    size_t n = (size_t)(close - p - 1);
    trim_copy(p + 1, n < MAX_NAME + 4 ? n : MAX_NAME + 4, name, sizeof name);
    shown(name, sv, sizeof sv);
    int idx;
    switch (classify_section(name, &idx)) {
    case S_STAGE:
        note_stage(src, idx);
        return 0;
    case S_BADSTAGE:
        return fail(src, src->line, "section [%s]: stage sections are [stage1] to [stage%d]",
                    name[0] && strlen(name) < 16 ? name : "stage?", OFA_MAX_STAGES);
    case S_DEVICE: {
        struct load *ld = src->ld;
        if (find_device(&ld->r, name + 7) >= 0)
            return 0;
        if (ld->r.n_devices == OFA_MAX_DEVICES)
            return fail(src, src->line, "section [%.*s]: more than %d device sections",
                        (int)(strlen(sv) - 2), sv + 1, OFA_MAX_DEVICES);
        int d = ld->r.n_devices++;
        device_defaults(&ld->r.devices[d], name + 7);
        ld->dev_at[d].file = src->file;
        ld->dev_at[d].line = src->line;
        return 0;
    }
    case S_BADDEVICE:
        return fail(src, src->line, "section [%.*s]: device sections are [device.NAME], NAME of 1 "
                    "to %d letters, digits, '_', '.' or '-'", (int)(strlen(sv) - 2), sv + 1,
                    MAX_DEVICE_NAME);
    case S_VARIANT: {
        struct load *ld = src->ld;
        if (find_variant(&ld->r, name + 8) >= 0)
            return 0;
        if (ld->r.n_variants == OFA_MAX_VARIANTS)
            return fail(src, src->line, "section [%.*s]: more than %d variant sections",
                        (int)(strlen(sv) - 2), sv + 1, OFA_MAX_VARIANTS);
        int v = ld->r.n_variants++;
        variant_defaults(&ld->r.variants[v], name + 8);
        ld->var_at[v].file = src->file;
        ld->var_at[v].line = src->line;
        return 0;
    }
    case S_BADVARIANT:
        return fail(src, src->line, "section [%.*s]: variant sections are [variant.NAME], NAME "
                    "of 1 to %d letters, digits, '_', '.' or '-'", (int)(strlen(sv) - 2), sv + 1,
                    MAX_VARIANT_NAME);
    case S_EXPORTDEV: {
        struct load *ld = src->ld;
        const int had = ld->r.n_export_overrides;
        if (!get_override(&ld->r, name + 7))
            return fail(src, src->line, "section [%.*s]: more than %d export.NAME sections",
                        (int)(strlen(sv) - 2), sv + 1, OFA_MAX_DEVICES);
        if (ld->r.n_export_overrides > had) {
            ld->exo_at[had].file = src->file;
            ld->exo_at[had].line = src->line;
        }
        return 0;
    }
    case S_BADEXPORTDEV:
        return fail(src, src->line, "section [%.*s]: a device's export settings are "
                    "[export.NAME], NAME a device of the recipe", (int)(strlen(sv) - 2), sv + 1);
    case S_UNKNOWN:
    case S_TOP:
        suggest_section(name, hint, sizeof hint);
        return fail(src, src->line,
                    "unknown section [%.*s]%s; sections are [supernet], [stage1] to [stage%d], "
                    "[train], [augment], [checkpoint], [export], [device.NAME], "
                    "[export.NAME] and [variant.NAME]",
                    (int)(strlen(sv) - 2), sv + 1, hint, OFA_MAX_STAGES);
    default:
        return 0;
    }
}

static char *read_line(char *buf, int num, void *stream)
{
    struct source *src = stream;
    if (src->ld->failed || src->pos >= src->len || num < 2)
        return NULL;
    const char *s = src->text + src->pos;
    const char *nl = memchr(s, '\n', src->len - src->pos);
    size_t n = nl ? (size_t)(nl - s) : src->len - src->pos;
    src->pos += n + (nl != NULL);
    src->line++;
    src->cur = s;
    src->cur_len = n;
    if (n >= (size_t)num) {
        fail(src, src->line, "line is longer than %d characters", num - 1);
        return NULL;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (note_header(src))
        return NULL;
    return buf;
}

/* inih passes a key's value; it continues a value on an indented line, which
 * recipes do not allow, so the raw line must start with the key itself. */
static int line_has_key(const struct source *src, const char *name)
{
    const char *e = src->cur + src->cur_len;
    const char *p = skip_bom(src, src->cur, e);
    while (p < e && isspace((unsigned char)*p))
        p++;
    size_t n = strlen(name);
    if ((size_t)(e - p) < n || memcmp(p, name, n) != 0)
        return 0;
    p += n;
    while (p < e && isspace((unsigned char)*p))
        p++;
    return p < e && (*p == '=' || *p == ':');
}

/* Drop an inline '#' comment (inih drops ';' ones). */
static int strip_comment(const char *in, char *out, size_t n)
{
    size_t len = strlen(in);
    for (size_t i = 0; i < len; i++)
        if (in[i] == '#' && (i == 0 || in[i - 1] == ' ' || in[i - 1] == '\t')) {
            len = i;
            break;
        }
    if (len >= n)
        return -1;
    trim_copy(in, len, out, n);
    return 0;
}

static int parse_source(struct load *ld, int file, const char *text, size_t len);
static char *slurp(const char *path, size_t *len, char *why, size_t whyn);

static int do_include(struct source *src, const char *value)
{
    struct load *ld = src->ld;
    long line = src->line;
    char sv[96];
    shown(value, sv, sizeof sv);
    if (!ld->allow_include)
        return fail(src, line, "include = %s: includes are not allowed in a resolved recipe "
                    "(text from a checkpoint or --set)", sv);
    if (!*value)
        return fail(src, line, "include: expected a file name");
    char path[PATH_MAX];
    const char *cur = ld->files[src->file];
    const char *slash = strrchr(cur, '/');
    int w;
    if (value[0] == '/' || !slash)
        w = snprintf(path, sizeof path, "%s", value);
    else
        w = snprintf(path, sizeof path, "%.*s/%s", (int)(slash - cur), cur, value);
    if (w < 0 || (size_t)w >= sizeof path || (size_t)w >= sizeof ld->err->file)
        return fail(src, line, "include = %s: path is too long", sv);
    if (ld->depth >= MAX_INCLUDE_DEPTH)
        return fail(src, line, "include = %s: includes are nested more than %d deep",
                    sv, MAX_INCLUDE_DEPTH);
    if (ld->n_files >= MAX_FILES)
        return fail(src, line, "include = %s: more than %d files included", sv, MAX_FILES);
    struct stat st;
    if (stat(path, &st))
        return fail(src, line, "include = %s: cannot open %s: %s", sv, path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return fail(src, line, "include = %s: %s is not a regular file", sv, path);
    for (int i = 0; i <= ld->depth; i++)
        if (ld->stack[i].st_dev == st.st_dev && ld->stack[i].st_ino == st.st_ino)
            return fail(src, line, "include = %s: include loop (%s is already being read)",
                        sv, path);
    char why[128];
    size_t n;
    char *text = slurp(path, &n, why, sizeof why);
    if (!text)
        return fail(src, line, "include = %s: cannot read %s: %s", sv, path, why);
    int idx = ld->n_files++;
    ld->files[idx] = xstrdup(path);
    ld->stack[++ld->depth] = st;
    int rc = parse_source(ld, idx, text, n);
    ld->depth--;
    free(text);
    if (rc) {
        /* The error names the included file; say where it was included from. */
        struct ofa_error *e = ld->err;
        size_t l = e ? strlen(e->msg) : 0;
        if (e && l < sizeof e->msg)
            snprintf(e->msg + l, sizeof e->msg - l, " (included from %s:%ld)", cur, line);
        return fail(src, line, "include = %s: error in the included file", sv);
    }
    return 0;
}

static int handle_key(struct source *src, const char *section, const char *name,
                      const char *value)
{
    struct load *ld = src->ld;
    long line = src->line;
    if (ld->failed)
        return -1;
    char sv[96];
    shown(name, sv, sizeof sv);
    if (!line_has_key(src, name))
        return fail(src, line, "indented line continues the value of %s: multi-line values "
                    "are not supported (remove the indentation)", sv);
    src->prev_key = 1;
    char val[MAX_VALUE];
    if (strip_comment(value, val, sizeof val))
        return fail(src, line, "value of %s is longer than %d characters", sv, MAX_VALUE - 1);
    if (strcmp(name, "include") == 0)
        return do_include(src, val);
    int idx;
    enum sec s = classify_section(section, &idx);
    if (s == S_TOP)
        return fail(src, line, "key %s comes before any [section] (only include may)", sv);
    if (s < S_SUPERNET || s > S_EXPORTDEV)
        return fail(src, line, "key %s is in an unknown section", sv);
    const enum sec ks = s == S_EXPORTDEV ? S_EXPORT : s; /* whose keys the section takes */
    const struct key *k = find_key(ks, name);
    char label[64], hint[64], msg[512];
    if (s == S_STAGE)
        snprintf(label, sizeof label, "stage%d", idx + 1);
    else if (s == S_DEVICE || s == S_VARIANT || s == S_EXPORTDEV)
        snprintf(label, sizeof label, "%s", section);
    else
        snprintf(label, sizeof label, "%s", sec_names[s]);
    if (!k) {
        suggest_key(ks, name, hint, sizeof hint);
        return fail(src, line, "unknown key %s.%.*s%s", label, (int)(strlen(sv) - 2), sv + 1,
                    hint);
    }
    char *base;
    int dev = -1, var = -1;
    if (s == S_EXPORTDEV) {
        const int o = find_override(&ld->r, section + 7);
        if (o < 0) /* as for devices */
            return fail(src, line, "key %s: export section name too long", sv);
        if (override_value(&ld->r.export_overrides[o], k, val, msg, sizeof msg))
            return fail(src, line, "%s.%s: %s", label, k->name, msg);
        ld->exo_origin[o][k - keys].file = src->file;
        ld->exo_origin[o][k - keys].line = line;
        return 0;
    }
    if (s == S_STAGE) {
        note_stage(src, idx);
        base = (char *)&ld->stages[idx];
    } else if (s == S_DEVICE) {
        dev = find_device(&ld->r, section + 7);
        if (dev < 0) /* the header was noted first; only a truncated name gets here */
            return fail(src, line, "key %s: device section name too long", sv);
        base = (char *)&ld->r.devices[dev];
    } else if (s == S_VARIANT) {
        var = find_variant(&ld->r, section + 8);
        if (var < 0) /* as for devices */
            return fail(src, line, "key %s: variant section name too long", sv);
        base = (char *)&ld->r.variants[var];
    } else {
        base = (char *)&ld->r;
    }
    if (apply_value(base, k, val, msg, sizeof msg))
        return fail(src, line, "%s.%s: %s", label, k->name, msg);
    if (s == S_STAGE) {
        if (strcmp(k->name, "width") == 0)
            ld->width_set |= 1u << idx;
    } else if (s == S_DEVICE) {
        struct ofa_device *d = &ld->r.devices[dev];
        if (k->off == offsetof(struct ofa_device, lut) && ld->allow_include &&
            resolve_path(ld->files[src->file], d->lut, lut_cap()))
            return fail(src, line, "%s.lut: %s resolved against %s is longer than %zu "
                        "characters", label, sv, ld->files[src->file], lut_cap() - 1);
        ld->dev_origin[dev][k - keys].file = src->file;
        ld->dev_origin[dev][k - keys].line = line;
    } else if (s == S_VARIANT) {
        ld->var_origin[var][k - keys].file = src->file;
        ld->var_origin[var][k - keys].line = line;
    } else {
        ld->origin[k - keys].file = src->file;
        ld->origin[k - keys].line = line;
    }
    return 0;
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
    return handle_key(user, section, name, value) == 0;
}

static int parse_source(struct load *ld, int file, const char *text, size_t len)
{
    struct source src = {0};
    src.ld = ld;
    src.file = file;
    src.text = text;
    src.len = len;
    int rc = ini_parse_stream(read_line, &src, on_key, &src);
    if (rc > 0 && (!ld->failed || rc < src.fail_line)) {
        /* inih found a line that is neither [section] nor key = value, before
         * anything else went wrong. */
        ld->failed = 1;
        ofa_error_set(ld->err, ld->files[file], rc,
                      "syntax error: expected [section], key = value or a comment");
        return -1;
    }
    if (rc == -2 && !ld->failed) {
        ld->failed = 1;
        ofa_error_set(ld->err, ld->files[file], 0, "out of memory while parsing");
    }
    return ld->failed ? -1 : 0;
}

/* An error found after reading, at the line that set the key to blame (the
 * top file without a line when the value is a default). */
static int at(struct load *ld, struct origin o, const char *msg)
{
    const char *file = o.file >= 0 ? ld->files[o.file] : ld->files[0];
    return ofa_error_set(ld->err, file, o.file >= 0 ? o.line : 0, "%s", msg);
}

/* After the last line: the stages, then the constraints between keys. */
static int finish(struct load *ld)
{
    if (ld->seen) {
        int m = 0;
        for (int i = 0; i < OFA_MAX_STAGES; i++)
            if (ld->seen & (1u << i))
                m = i + 1;
        for (int i = 0; i < m; i++) {
            if (ld->seen & (1u << i))
                continue;
            int j = i + 1;
            while (!(ld->seen & (1u << j)))
                j++;
            char msg[160];
            snprintf(msg, sizeof msg, "[stage%d] without [stage%d]: stage sections must be "
                     "consecutive from [stage1]", j + 1, i + 1);
            return at(ld, ld->stage_at[j], msg);
        }
        for (int i = 0; i < m; i++)
            if (!(ld->width_set & (1u << i))) {
                char msg[160];
                snprintf(msg, sizeof msg, "[stage%d] has no width: every stage needs "
                         "stage%d.width", i + 1, i + 1);
                return at(ld, ld->stage_at[i], msg);
            }
        memset(ld->r.space.stages, 0, sizeof ld->r.space.stages);
        memcpy(ld->r.space.stages, ld->stages, (size_t)m * sizeof ld->stages[0]);
        ld->r.space.n_stages = m;
    }
    char key[128], msg[512];
    if (cross_check(&ld->r, key, sizeof key, msg, sizeof msg) == 0)
        return 0;
    struct origin o = {-1, 0};
    int st;
    if (sscanf(key, "stage%d", &st) == 1 && st >= 1 && st <= OFA_MAX_STAGES &&
        (ld->seen & (1u << (st - 1))))
        o = ld->stage_at[st - 1];
    for (size_t i = 0; i < N_KEYS; i++) {
        char full[MAX_NAME * 2];
        snprintf(full, sizeof full, "%s.%s", sec_names[keys[i].sec], keys[i].name);
        if (strcmp(full, key) == 0)
            o = ld->origin[i];
    }
    const char *last = strrchr(key, '.');
    if (strncmp(key, "device.", 7) == 0 && last > key + 7) {
        char dname[MAX_DEVICE_NAME + 1];
        snprintf(dname, sizeof dname, "%.*s", (int)(last - key - 7), key + 7);
        int d = find_device(&ld->r, dname);
        const struct key *k = find_key(S_DEVICE, last + 1);
        if (d >= 0 && k)
            o = ld->dev_origin[d][k - keys].file >= 0 ? ld->dev_origin[d][k - keys] : ld->dev_at[d];
    }
    if (strncmp(key, "export.", 7) == 0) { /* export.NAME, or export.NAME.key */
        int e = find_override(&ld->r, key + 7);
        if (e >= 0) {
            o = ld->exo_at[e];
        } else if (last > key + 7) {
            char dname[MAX_DEVICE_NAME + 1];
            snprintf(dname, sizeof dname, "%.*s", (int)(last - key - 7), key + 7);
            e = find_override(&ld->r, dname);
            const struct key *k = find_key(S_EXPORT, last + 1);
            if (e >= 0 && k)
                o = ld->exo_origin[e][k - keys].file >= 0 ? ld->exo_origin[e][k - keys]
                                                          : ld->exo_at[e];
        }
    }
    if (strncmp(key, "variant.", 8) == 0 && last > key + 8) {
        char vname[MAX_VARIANT_NAME + 1];
        snprintf(vname, sizeof vname, "%.*s", (int)(last - key - 8), key + 8);
        int v = find_variant(&ld->r, vname);
        const struct key *k = find_key(S_VARIANT, last + 1);
        if (v >= 0 && k)
            o = ld->var_origin[v][k - keys].file >= 0 ? ld->var_origin[v][k - keys] : ld->var_at[v];
    }
    return at(ld, o, msg);
}

static char *slurp(const char *path, size_t *len, char *why, size_t whyn)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, whyn, "%s", strerror(errno));
        return NULL;
    }
    char *buf = ofa_xmalloc(MAX_FILE_BYTES + 1, "recipe file");
    size_t n = fread(buf, 1, MAX_FILE_BYTES + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || n > MAX_FILE_BYTES) {
        snprintf(why, whyn, bad ? "read error" : "larger than %ld bytes", MAX_FILE_BYTES);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    const char *z = memchr(buf, '\0', n);
    if (z) {
        long line = 1;
        for (const char *p = buf; p < z; p++)
            line += *p == '\n';
        snprintf(why, whyn, "binary data (a NUL byte) on line %ld", line);
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static int load_text(struct ofa_recipe *r, struct load *ld, const char *text, size_t len)
{
    int rc = parse_source(ld, 0, text, len);
    if (rc == 0)
        rc = finish(ld);
    if (rc == 0)
        memcpy(r, &ld->r, sizeof *r);
    return rc;
}

int ofa_recipe_load(struct ofa_recipe *r, const char *path, struct ofa_error *err)
{
    if (strlen(path) >= sizeof r->path)
        return ofa_error_set(err, NULL, 0, "recipe path is longer than %zu characters",
                             sizeof r->path - 1);
    struct stat st;
    if (stat(path, &st))
        return ofa_error_set(err, path, 0, "cannot open recipe: %s", strerror(errno));
    if (!S_ISREG(st.st_mode))
        return ofa_error_set(err, path, 0, "cannot read recipe: not a regular file");
    char why[128];
    size_t n;
    char *text = slurp(path, &n, why, sizeof why);
    if (!text)
        return ofa_error_set(err, path, 0, "cannot read recipe: %s", why);
    struct load *ld = load_new(err, 1);
    snprintf(ld->r.path, sizeof ld->r.path, "%s", path);
    ld->files[ld->n_files++] = xstrdup(path);
    ld->stack[0] = st;
    int rc = load_text(r, ld, text, n);
    load_free(ld);
    free(text);
    return rc;
}

int ofa_recipe_load_string(struct ofa_recipe *r, const char *text, const char *name,
                           struct ofa_error *err)
{
    struct load *ld = load_new(err, 0);
    ld->files[ld->n_files++] = xstrdup(name ? name : "");
    int rc = load_text(r, ld, text, strlen(text));
    load_free(ld);
    return rc;
}

int ofa_recipe_set(struct ofa_recipe *r, const char *assignment, struct ofa_error *err)
{
    char sa[160];
    shown(assignment, sa, sizeof sa);
    const char *eq = strchr(assignment, '=');
    if (!eq)
        return ofa_error_set(err, NULL, 0, "%s: expected section.key=value", sa);
    char lhs[MAX_NAME * 2], val[MAX_VALUE], msg[512], hint[64];
    trim_copy(assignment, (size_t)(eq - assignment), lhs, sizeof lhs);
    if (strlen(eq + 1) >= sizeof val)
        return ofa_error_set(err, NULL, 0, "%s: value is too long", sa);
    trim_copy(eq + 1, strlen(eq + 1), val, sizeof val);
    char *dot = strrchr(lhs, '.'); /* keys have no dots; device names may */
    if (!dot)
        return ofa_error_set(err, NULL, 0, "%s: expected section.key=value", sa);
    *dot = '\0';
    const char *section = lhs, *name = dot + 1;
    if (strcmp(name, "include") == 0)
        return ofa_error_set(err, NULL, 0, "%s: include is not allowed in --set", sa);
    int idx;
    enum sec s = classify_section(section, &idx);
    if (s < S_SUPERNET || s > S_EXPORTDEV) {
        suggest_section(section, hint, sizeof hint);
        return ofa_error_set(err, NULL, 0, "%s: unknown section %s%s", sa,
                             s == S_TOP ? "(none)" : section, hint);
    }
    if (s == S_STAGE && idx >= r->space.n_stages)
        return ofa_error_set(err, NULL, 0, "%s: the recipe has %d stages", sa,
                             r->space.n_stages);
    int dev = s == S_DEVICE || s == S_EXPORTDEV ? find_device(r, section + 7) : -1;
    if ((s == S_DEVICE || s == S_EXPORTDEV) && dev < 0) {
        char list[256] = "";
        for (int i = 0; i < r->n_devices; i++) {
            size_t l = strlen(list);
            snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "", r->devices[i].name);
        }
        return ofa_error_set(err, NULL, 0, "%s: the recipe has no device %s (devices: %s)", sa,
                             section + 7, r->n_devices ? list : "none");
    }
    int var = s == S_VARIANT ? find_variant(r, section + 8) : -1;
    if (s == S_VARIANT && var < 0) {
        char list[768] = "";
        for (int i = 0; i < r->n_variants; i++) {
            size_t l = strlen(list);
            snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "", r->variants[i].name);
        }
        return ofa_error_set(err, NULL, 0, "%s: the recipe has no variant %s (variants: %s)", sa,
                             section + 8, r->n_variants ? list : "none");
    }
    const enum sec ks = s == S_EXPORTDEV ? S_EXPORT : s;
    const struct key *k = find_key(ks, name);
    if (!k) {
        suggest_key(ks, name, hint, sizeof hint);
        return ofa_error_set(err, NULL, 0, "%s: unknown key%s", sa, hint);
    }
    struct ofa_recipe *t = ofa_xmalloc(sizeof *t, "recipe");
    memcpy(t, r, sizeof *t);
    char *base = s == S_STAGE     ? (char *)&t->space.stages[idx]
                 : s == S_DEVICE  ? (char *)&t->devices[dev]
                 : s == S_VARIANT ? (char *)&t->variants[var]
                                  : (char *)t;
    /* [export.NAME]: a device's own [export] setting; every device may have one */
    struct ofa_export_override *ov = s == S_EXPORTDEV ? get_override(t, section + 7) : NULL;
    OFA_ASSERT(s != S_EXPORTDEV || ov);
    char key[128];
    int rc = 0;
    if (ov ? override_value(ov, k, val, msg, sizeof msg)
           : apply_value(base, k, val, msg, sizeof msg))
        rc = ofa_error_set(err, NULL, 0, "%s: %s.%s: %s", sa, section, k->name, msg);
    else if (s == S_DEVICE && k->off == offsetof(struct ofa_device, lut) &&
             resolve_path(NULL, t->devices[dev].lut, lut_cap()))
        rc = ofa_error_set(err, NULL, 0, "%s: the path resolved against the working directory "
                           "is longer than %zu characters", sa, lut_cap() - 1);
    else if (cross_check(t, key, sizeof key, msg, sizeof msg))
        rc = ofa_error_set(err, NULL, 0, "%s: %s", sa, msg);
    else
        memcpy(r, t, sizeof *r);
    free(t);
    return rc;
}

/* ---- output -------------------------------------------------------------- */

struct sbuf {
    char *p;
    size_t len, cap;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) OFA_PRINTF(2, 3);
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int w = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
        va_end(ap);
        OFA_ASSERT(w >= 0);
        if ((size_t)w < room) {
            b->len += (size_t)w;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap - b->len <= (size_t)w)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q)
            ofa_fatal("out of memory formatting a recipe (%zu bytes)", cap);
        b->p = q;
        b->cap = cap;
    }
}

static void format_section(struct sbuf *b, enum sec s, const char *base)
{
    char v[1024];
    for (size_t i = 0; i < N_KEYS; i++)
        if (keys[i].sec == s) {
            value_text(base, &keys[i], v, sizeof v);
            sb_printf(b, "%s = %s\n", keys[i].name, v);
        }
}

/* Sections S_SUPERNET .. last (S_CHECKPOINT: what decides training; S_EXPORT:
 * every plain section), then the named ones when all is set. */
static char *format_sections(const struct ofa_recipe *r, int last, int all)
{
    struct sbuf b = {0};
    sb_printf(&b, "# ofa recipe, resolved: every key with its value (see docs/recipes.md)\n");
    for (int s = S_SUPERNET; s <= last; s++) {
        if (s != S_STAGE) {
            sb_printf(&b, "\n[%s]\n", sec_names[s]);
            format_section(&b, (enum sec)s, (const char *)r);
            continue;
        }
        for (int i = 0; i < r->space.n_stages && i < OFA_MAX_STAGES; i++) {
            sb_printf(&b, "\n[stage%d]\n", i + 1);
            format_section(&b, S_STAGE, (const char *)&r->space.stages[i]);
        }
    }
    for (int i = 0; all && i < r->n_devices && i < OFA_MAX_DEVICES; i++) {
        sb_printf(&b, "\n[device.%s]\n", r->devices[i].name);
        format_section(&b, S_DEVICE, (const char *)&r->devices[i]);
    }
    for (int i = 0; all && i < r->n_variants && i < OFA_MAX_VARIANTS; i++) {
        sb_printf(&b, "\n[variant.%s]\n", r->variants[i].name);
        format_section(&b, S_VARIANT, (const char *)&r->variants[i]);
    }
    for (int i = 0; all && i < r->n_export_overrides && i < OFA_MAX_DEVICES; i++) {
        const struct ofa_export_override *ov = &r->export_overrides[i];
        sb_printf(&b, "\n[export.%s]\n", ov->device);
        char v[1024];
        for (size_t j = 0; j < N_KEYS; j++)
            if (keys[j].sec == S_EXPORT && (ov->set >> export_bit(&keys[j]) & 1u)) {
                const struct key e = export_key(&keys[j]);
                value_text((const char *)&ov->cfg, &e, v, sizeof v);
                sb_printf(&b, "%s = %s\n", e.name, v);
            }
    }
    return b.p;
}

char *ofa_recipe_format(const struct ofa_recipe *r)
{
    return format_sections(r, S_EXPORT, 1);
}

char *ofa_recipe_format_training(const struct ofa_recipe *r)
{
    return format_sections(r, S_CHECKPOINT, 0);
}

static const char *type_text(const struct key *k)
{
    switch (k->type) {
    case T_INT:
    case T_LONG:
        return "integer";
    case T_FLOAT:
    case T_DOUBLE:
        return "number";
    case T_STRING:
        return "text";
    case T_BOOL:
        return "boolean";
    case T_ENUM:
        return "choice";
    case T_LIST:
        return "integer list";
    }
    return "?";
}

static const char docs_intro[] =
    "# Recipe reference\n"
    "\n"
    "<!-- Generated by ofa_recipe_write_docs() in lib/recipe.c from the table the parser\n"
    "     uses. Do not edit: run `make recipe-docs`; `make check` fails when this file is\n"
    "     out of date. -->\n"
    "\n"
    "A recipe is an INI file that names every setting of an experiment: `[section]` headers,\n"
    "`key = value` lines, and comments on lines of their own starting with `#` or `;` (or after\n"
    "a value, following a space; so a text value may not start with either). Every key has a\n"
    "default, so a recipe lists only what it changes; `recipes/fashion-mnist.ini` writes every\n"
    "key out. Unknown sections or keys, values of the wrong type and values out of range are\n"
    "refused with the file, the line and the key. Booleans are `yes`/`no`, `true`/`false`,\n"
    "`on`/`off` or `1`/`0`; lists are comma-separated integers in ascending order. Ranges are\n"
    "intervals: `[a, b]` includes both ends, `(` or `)` excludes one. A key given twice keeps\n"
    "the later value.\n"
    "\n"
    "`include = other.ini` (before the first section or inside any section) reads another\n"
    "recipe at that point, relative to the directory of the file that includes it; the\n"
    "included file starts outside any section, values after the include override its values.\n"
    "Includes nest at most 8 deep and may not loop. The stages of the supernet are the\n"
    "sections `[stage1]` to `[stageN]`, consecutive from 1; a stage's keys may be spread over\n"
    "several files of one load. When any stage section appears, the default stages are\n"
    "replaced entirely (not merged), so a recipe that defines stages defines all of them.\n"
    "Command-line overrides use the same names: `--set train.epochs=5`, `--set\n"
    "stage2.width=48` (for a stage the recipe has). The resolved recipe, with every key, is\n"
    "stored in each checkpoint.\n";

static void write_key_table(FILE *f, enum sec s)
{
    fprintf(f, "| key | type | default | range | description |\n");
    fprintf(f, "|---|---|---|---|---|\n");
    for (size_t i = 0; i < N_KEYS; i++) {
        const struct key *k = &keys[i];
        if (k->sec != s)
            continue;
        char range[128], rt[64];
        range_text(k, rt, sizeof rt);
        if (k->type == T_BOOL) {
            snprintf(range, sizeof range, "yes, no");
        } else if (k->type == T_ENUM) {
            enum_list(k->names, range, sizeof range);
        } else if (k->type == T_LIST) {
            snprintf(range, sizeof range, "%d to %d values in %s%s, ascending",
                     k->flags & F_EMPTY ? 0 : 1, OFA_MAX_CHOICES, rt,
                     k->flags & F_ODD ? ", odd" : "");
        } else {
            snprintf(range, sizeof range, "%s", rt);
        }
        const char *def = k->def ? k->def : "(required)";
        fprintf(f, "| `%s` | %s | %s | %s | %s |\n", k->name, type_text(k),
                !def[0] ? "(empty)" : def, range, k->desc);
    }
}

void ofa_recipe_write_docs(FILE *f)
{
    fputs(docs_intro, f);
    for (int s = S_SUPERNET; s <= S_EXPORT; s++) {
        if (s == S_STAGE)
            fprintf(f, "\n## [stage1] ... [stageN]\n\nOne section per stage (at most %d), in "
                    "order; `width` is required.\n\n", OFA_MAX_STAGES);
        else
            fprintf(f, "\n## [%s]\n\n", sec_names[s]);
        write_key_table(f, (enum sec)s);
        if (s == S_STAGE) {
            struct ofa_space sp;
            ofa_space_default(&sp);
            fprintf(f, "\nDefault stages (the reference supernet mbv3-28), used when no recipe "
                    "of a load has a stage section:\n\n| stage | width | stride | act | se |\n"
                    "|---|---|---|---|---|\n");
            for (int i = 0; i < sp.n_stages; i++) {
                char v[4][64];
                int j = 0;
                for (size_t q = 0; q < N_KEYS; q++)
                    if (keys[q].sec == S_STAGE && j < 4)
                        value_text((const char *)&sp.stages[i], &keys[q], v[j++], 64);
                fprintf(f, "| %d | %s | %s | %s | %s |\n", i + 1, v[0], v[1], v[2], v[3]);
            }
        }
    }
    fprintf(f, "\n## [device.NAME]\n\n"
            "A target device profile for ofa-extract (docs/devices.md): a latency model and "
            "budgets.\nAny number of devices, at most %d, NAME of 1 to %d letters, digits, "
            "`_`, `.` or `-`;\nthey accumulate over included files in the order they first "
            "appear, and a section given\nagain sets more keys of the same device. There are no "
            "default devices. A budget of 0\nis no budget. `--set device.NAME.key=value` changes "
            "a device the recipe has.\n\n", OFA_MAX_DEVICES, MAX_DEVICE_NAME);
    write_key_table(f, S_DEVICE);
    fprintf(f, "\n## [export.NAME]\n\n"
            "The [export] keys that device NAME's export sets otherwise, for example a "
            "stability pass\nthat draws the worst variant for one device and a random one "
            "for the others. NAME must\nbe a device of the recipe. Only the keys given are "
            "stored; the rest are [export]'s,\nalso when those come from `--set export.key=value`. "
            "`--set export.NAME.key=value` sets one\nfor a device of the recipe.\n");
    fprintf(f, "\n## [variant.NAME]\n\n"
            "A device variant for ofa-export's instability measure and stability fine-tuning\n"
            "(Cidon et al., MLSys 2021): an input pipeline that differs the way real devices do,\n"
            "and the arithmetic it runs with. From the stored image: the JPEG round trip, then on\n"
            "[0,1] pixels the tone curve, the blur and the noise, then the data set's "
            "normalisation\nand the resize to the model's resolution. Any number of variants, "
            "at most %d, NAME\nas for devices, in the order they first appear; a section given "
            "again sets more keys.\nThere are no default variants; the clean fp32 pipeline "
            "(the evaluator's) is always the\nreference. Instability is the share of test "
            "images whose top-1 label is not the same\nunder the reference and every variant. "
            "The fine-tuning pass sees each image through\nthe `fp32` variants as "
            "`export.variant_draw` says. `--set variant.NAME.key=value` changes\na variant "
            "the recipe has.\n\n",
            OFA_MAX_VARIANTS);
    write_key_table(f, S_VARIANT);
}
