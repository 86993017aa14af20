/* recipe.h: an experiment's every setting, read from an INI recipe.
 *
 * Recipes are INI files ([section], key = value, '#' or ';' comments) parsed
 * with inih into typed structs with defaults. Unknown sections or keys, wrong
 * types and out-of-range values are refused with file:line and the key's
 * name. `include = other.ini` (a top-level key, or in any section) reads
 * another recipe at that point, relative to the including file; later values
 * override earlier ones. One table of keys (name, type, default, range,
 * description) drives parsing, the resolved text, and docs/recipes.md.
 *
 * Sections: [supernet] (struct ofa_space without the stages), [stage1] ...
 * [stageN] (width, stride, act, se; the number of stages is the number of
 * such sections, which must be consecutive from 1), [train], [augment],
 * [checkpoint], [export] (ofa-export's fine-tuning and quantization), any
 * number (up to OFA_MAX_VARIANTS) of [variant.NAME] device variants for the
 * instability pass (stability.h; they accumulate like devices), and any
 * number (up to OFA_MAX_DEVICES) of [device.NAME]
 * target device profiles (struct ofa_device, docs/devices.md), NAME of
 * letters, digits, '_', '.', '-' (at most 40), each with an optional
 * [export.NAME] of [export] keys that its export sets otherwise (a device
 * the recipe must have; such sections accumulate like devices, and only the
 * keys they set are stored and written out). Devices accumulate in the
 * order they first appear, over included files too; a device section given
 * again sets more keys of the same device. A relative `lut` path read from
 * a recipe file (or --set) is resolved against that file's directory (the
 * current directory for --set) and stored absolute, so that the resolved
 * text in a checkpoint still names the table; the string loader keeps paths
 * as written.
 */
#ifndef OFA_RECIPE_H
#define OFA_RECIPE_H

#include <stdio.h>

#include "device.h"
#include "space.h"
#include "util.h"

enum ofa_schedule {
    OFA_SCHED_DEPS = 0, /* "deps": full network alone, then sandwich with beta ramp */
    OFA_SCHED_BIGNAS,   /* "bignas": sandwich from the first step */
    OFA_SCHED_OFA_PS,   /* "ofa-ps": full, then elastic kernel, depth, expand */
};

struct ofa_train_cfg {
    int epochs;            /* total epochs (for ofa-ps: of the full-network phase) */
    int batch_size;
    int shards;            /* BN shards per batch (one per MPI process); 0: the process count */
    float lr;              /* peak learning rate (for batch_size) */
    float final_lr;        /* learning rate at the end of the cosine */
    float warmup_epochs;
    float momentum;
    int nesterov;
    float weight_decay;    /* none on BN parameters and biases */
    int wd_decoupled;      /* 0: L2 in the gradient (PyTorch/OFA), 1: decoupled */
    float clip_norm;       /* <= 0: off */
    float label_smoothing;
    long seed;
    enum ofa_schedule schedule;
    float shrink_start;    /* deps: fraction of epochs before shrinking starts */
    float beta_ramp;       /* deps: fraction of epochs over which beta goes 0 -> beta_max */
    float beta_max;        /* deps: subnet gradient factor after the ramp */
    int n_random;          /* random subnets per step besides largest and smallest */
    float kd_temperature;
    float kd_weight;       /* weight of each subnet's KD loss */
    int ps_kernel_epochs, ps_depth_epochs, ps_expand_epochs; /* ofa-ps phases */
    float ps_lr;           /* ofa-ps: peak learning rate of the shrinking phases */
    int subset;            /* train on the first N training images; 0: all */
    int calib_images;      /* BN recalibration images (OFA: 2000) */
    int calib_batch;       /* BN recalibration batch (OFA: 200) */
    int val_every;         /* validate every N epochs */
    int log_every;         /* TSV row every N steps */
    float checkpoint_minutes; /* also checkpoint every N minutes; 0: only per epoch */
};

struct ofa_augment_cfg {
    int crop_padding;     /* random crop after zero padding by this many pixels; 0: off */
    int flip;             /* random horizontal flip */
    float erase_prob;     /* random erasing probability; 0: off */
    int normalize;        /* subtract the data set mean, divide by its std */
};

/* [extract]: ofa-extract's accuracy predictor and search. */
struct ofa_extract_cfg {
    int samples;          /* subnets measured for the accuracy predictor */
    int generations;      /* search rounds */
    int top;              /* candidates re-measured before the choice */
};

/* export.variant_draw (stability.c) */
enum ofa_draw {
    OFA_DRAW_RANDOM, /* one fp32 variant per image, at random */
    OFA_DRAW_WORST,  /* the one moving its prediction most */
    OFA_DRAW_ALL,    /* every fp32 variant */
};

/* export.target (stability.c): the clean term of the pass */
enum ofa_target {
    OFA_TARGET_LABELS,   /* cross-entropy on the labels */
    OFA_TARGET_ORIGINAL, /* distillation from the subnet as it came into the pass */
    OFA_TARGET_LARGEST,  /* distillation from the supernet's largest subnet */
};

/* [export]: ofa-export's stability fine-tuning and quantization. */
struct ofa_export_cfg {
    int epochs;           /* stability fine-tuning epochs; 0: skip the pass */
    float lr;             /* peak learning rate (cosine to 0, no warm-up) */
    int batch_size;
    int subset;           /* fine-tune on the first N training images; 0: all */
    float alpha;          /* weight of KL(p(x) || p(v(x))) */
    float weight_decay;
    int fake_quant;       /* fake-quantize weights and activations while fine-tuning */
    int variant_draw;     /* enum ofa_draw: the fp32 variants each image is seen through */
    int detach_clean;     /* the KL term's gradient reaches the variant branch only */
    int target;           /* enum ofa_target: the clean term */
    int calib_images;     /* int8 activation calibration images (training split) */
    int calib_percentile_on; /* 0: min/max, 1: percentile */
    float calib_percentile;  /* e.g. 99.99 */
    int test_images;      /* test images for accuracy and instability; 0: all */
    long seed;
};

/* [export.DEVICE]: [export] keys set otherwise for one device's export
 * (ofa_recipe_export). */
struct ofa_export_override {
    char device[41];
    unsigned set;               /* bit i: the i-th [export] key of the key table is set */
    struct ofa_export_cfg cfg;  /* the values of the keys set (the rest as [export]'s) */
};

#define OFA_MAX_VARIANTS 16

/* [variant.NAME]: one device's input pipeline (stability.h). */
struct ofa_variant_cfg {
    char name[41];
    int jpeg_quality;     /* JPEG round trip at this quality (1-100); 0: none */
    float gamma, brightness, contrast; /* tone curve; 1, 0, 1: identity */
    float blur_sigma;     /* Gaussian blur; 0: none */
    float noise_std;      /* sensor noise on [0,1] pixels; 0: none */
    int interp;           /* enum ofa_interp: resize to the model's resolution */
    int int8;             /* arithmetic: 0 fp32, 1 the exported int8 model */
};

struct ofa_recipe {
    char path[512];       /* file it was loaded from ("" for a string) */
    struct ofa_space space;
    struct ofa_train_cfg train;
    struct ofa_augment_cfg augment;
    int ckpt_deflate;     /* [checkpoint] deflate: 0 off, 1-9 gzip level */
    int n_devices;        /* [device.NAME] sections, in order of first appearance */
    struct ofa_device devices[OFA_MAX_DEVICES];
    struct ofa_extract_cfg extract; /* [extract] */
    struct ofa_export_cfg export;  /* [export] */
    int n_export_overrides;        /* [export.DEVICE] sections, in order of first appearance */
    struct ofa_export_override export_overrides[OFA_MAX_DEVICES];
    int n_variants;       /* [variant.NAME] sections, in order of first appearance */
    struct ofa_variant_cfg variants[OFA_MAX_VARIANTS];
};

/* The device named name, or NULL. */
const struct ofa_device *ofa_recipe_device(const struct ofa_recipe *r, const char *name);

/* The [export] settings of device's export: [export] with its
 * [export.DEVICE] keys, if any, applied. */
void ofa_recipe_export(const struct ofa_recipe *r, const char *device,
                       struct ofa_export_cfg *out);

/* Defaults for every key (the reference mbv3-28 space, OFA/DepS settings). */
void ofa_recipe_default(struct ofa_recipe *r);
/* Load a recipe file (with includes) over the defaults and validate it. */
int ofa_recipe_load(struct ofa_recipe *r, const char *path, struct ofa_error *err);
/* Same from text (as stored in a checkpoint); name is used in messages;
 * includes are refused (the resolved text has none). */
int ofa_recipe_load_string(struct ofa_recipe *r, const char *text, const char *name,
                           struct ofa_error *err);
/* Override one key, "section.key=value" (command line --set); validated.
 * Devices: "device.NAME.key=value" for a device the recipe has. */
int ofa_recipe_set(struct ofa_recipe *r, const char *assignment, struct ofa_error *err);
/* The resolved recipe: every key of every section with its value, as INI
 * text that ofa_recipe_load_string reads back to an equal struct. Caller
 * frees. */
char *ofa_recipe_format(const struct ofa_recipe *r);
/* The same for the sections that decide training only ([supernet], [stageN],
 * [train], [augment], [checkpoint]): what a resumed run must agree on, and
 * what the pipeline's training rule depends on. */
char *ofa_recipe_format_training(const struct ofa_recipe *r);
/* Markdown reference of every key (type, default, range, description). */
void ofa_recipe_write_docs(FILE *f);

#endif
