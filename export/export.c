/* export.c: ofa-export for one device. Loads the supernet, its recipe and the
 * device's subnet.h5 (refusing a subnet of another supernet or a data set the
 * supernet was not trained on), recalibrates BN, materialises the subnet,
 * quantizes it and measures it (test accuracy fp32 and int8, instability
 * over the recipe's device variants), runs the stability fine-tuning pass,
 * materialises, quantizes and measures again, and writes the artifacts: into
 * a staging directory first, moved into place only once all are written
 * (write_artifacts), so a failure or a signal leaves the previous export as
 * it was, and a device directory with a card is complete. */
#include <config.h>

#include "export.h"

#include "blas.h"
#include "ckpt.h"
#include "data.h"
#include "model.h"
#include "onnx.h"
#include "quant.h"
#include "recipe.h"
#include "stability.h"
#include "supernet.h"
#include "train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Figures of one exported model (before or after fine-tuning). */
struct figures {
    double acc_fp32, acc_int8;  /* clean test accuracy */
    struct ofa_instability in;  /* over the recipe's variants */
};

struct exporter {
    const struct ofa_export_opts *o;
    struct ofa_recipe r;
    char *recipe_text;
    struct ofa_supernet net, sa;
    struct ofa_supernet teacher; /* export.target largest */
    struct ofa_train_state st;
    struct ofa_dataset ds;
    struct ofa_subnet_record rec;
    struct ofa_subnet sub;
    /* clean inputs at the subnet's resolution */
    float *calib_x, *test_x;
    int *calib_y, *test_y;
    int n_calib, n_test;
};

static int load_inputs(struct exporter *E, struct ofa_error *err)
{
    const struct ofa_export_opts *o = E->o;
    if (ofa_ckpt_read_recipe(o->supernet, &E->recipe_text, err) ||
        ofa_recipe_load_string(&E->r, E->recipe_text, o->supernet, err))
        return -1;
    if (o->recipe) {
        /* Export settings from another recipe: only [export], [export.*]
         * and [variant.*] are taken; the supernet's own sections stay as
         * trained. */
        struct ofa_recipe r2;
        ofa_recipe_default(&r2);
        if (ofa_recipe_load(&r2, o->recipe, err))
            return -1;
        E->r.export = r2.export;
        E->r.n_export_overrides = r2.n_export_overrides;
        memcpy(E->r.export_overrides, r2.export_overrides, sizeof r2.export_overrides);
        E->r.n_variants = r2.n_variants;
        memcpy(E->r.variants, r2.variants, sizeof r2.variants);
    }
    for (int i = 0; i < o->n_sets; i++) {
        if (strncmp(o->sets[i], "export.", 7) != 0 && strncmp(o->sets[i], "variant.", 8) != 0)
            return ofa_error_set(err, "--set", 0, "'%s': ofa-export takes only export.* and "
                                 "variant.* keys (the supernet is already trained)", o->sets[i]);
        if (ofa_recipe_set(&E->r, o->sets[i], err))
            return -1;
    }
    ofa_supernet_init(&E->net, &E->r.space, 0);
    if (ofa_ckpt_load(o->supernet, &E->net.p, &E->st, err))
        return -1;
    if (ofa_subnet_record_load(o->subnet, &E->rec, err))
        return -1;
    /* this device's settings: [export] with its [export.DEVICE] keys */
    ofa_recipe_export(&E->r, E->rec.device, &E->r.export);
    if (E->rec.supernet_fingerprint != ofa_ckpt_fingerprint(E->recipe_text, &E->st))
        return ofa_error_set(err, o->subnet, 0, "was chosen from another supernet than %s "
                             "(fingerprints differ); run ofa-extract on this supernet again",
                             o->supernet);
    if (ofa_subnet_parse(&E->r.space, E->rec.subnet, &E->sub, err))
        return ofa_error_set(err, o->subnet, 0, "subnet '%s' does not fit the supernet's "
                             "space: %s", E->rec.subnet, err->msg);
    if (ofa_dataset_load(o->data, &E->ds, err))
        return -1;
    if (ofa_dataset_fingerprint(&E->ds) != E->st.data_hash)
        return ofa_error_set(err, o->data, 0, "is not the data set (or split) that %s was "
                             "trained on", o->supernet);
    if (E->ds.test.n == 0)
        return ofa_error_set(err, o->data, 0, "has no test split; ofa-export reports test "
                             "accuracy and instability");
    return 0;
}

/* n clean images of a split at the subnet's resolution (evaluator pipeline:
 * normalisation, bilinear resize, no augmentation); shuffled: a seeded
 * subset, else the first n. */
static void clean_images(const struct exporter *E, int split, int shuffle, int n, float **x,
                         int **y)
{
    const int res = E->sub.res, C = E->ds.train.c;
    struct ofa_loader_config c;
    ofa_loader_config_default(&c);
    c.split = split;
    c.shuffle = shuffle;
    c.seed = (uint64_t)E->r.export.seed ^ 0x7175616e74ULL; /* "quant" */
    c.batch_size = n;
    c.aug.normalize = E->r.augment.normalize;
    c.resolution = res;
    c.max_resolution = res > E->ds.train.h ? res : E->ds.train.h;
    c.async = 0;
    struct ofa_loader *l = ofa_loader_create(&E->ds, &c);
    *x = ofa_xmalloc(ofa_mul_size((size_t)n * res * res, (size_t)C * sizeof(float)), "images");
    *y = ofa_xmalloc((size_t)n * sizeof(int), "labels");
    int got = ofa_loader_fill(l, 0, 0, res, *x, *y, 1);
    OFA_ASSERT(got == n);
    ofa_loader_free(l);
}

/* ---- prediction ------------------------------------------------------------------ */

#define PRED_BATCH 256

struct predictor {
    const struct ofa_model *m;
    struct ofa_qrun *q;
    float *scratch, *logits;
};

static void predictor_init(struct predictor *p, const struct ofa_model *m)
{
    p->m = m;
    p->q = ofa_qrun_create(m);
    p->scratch = ofa_model_scratch_alloc(m, PRED_BATCH);
    p->logits = ofa_xmalloc((size_t)PRED_BATCH * m->num_classes * sizeof(float), "logits");
}

static void predictor_free(struct predictor *p)
{
    ofa_qrun_free(p->q);
    free(p->scratch);
    free(p->logits);
}

static void predict(void *ctx, int int8, const float *x, int n, int *labels)
{
    struct predictor *p = ctx;
    const int K = p->m->num_classes;
    const size_t img = (size_t)p->m->res * p->m->res * p->m->in_channels;
    for (int i = 0; i < n; i += PRED_BATCH) {
        int b = n - i < PRED_BATCH ? n - i : PRED_BATCH;
        if (int8)
            ofa_qrun_forward(p->q, p->logits, x + (size_t)i * img, b);
        else
            ofa_model_forward(p->m, p->logits, x + (size_t)i * img, b, p->scratch);
        for (int j = 0; j < b; j++) {
            const float *l = p->logits + (size_t)j * K;
            int best = 0;
            for (int k = 1; k < K; k++)
                if (l[k] > l[best])
                    best = k;
            labels[i + j] = best;
        }
    }
}

static double accuracy(struct predictor *p, int int8, const float *x, const int *y, int n)
{
    int *pred = ofa_xmalloc((size_t)n * sizeof(int), "predictions");
    predict(p, int8, x, n, pred);
    long right = 0;
    for (int i = 0; i < n; i++)
        right += pred[i] == y[i];
    free(pred);
    return (double)right / n;
}

/* ---- one model: materialise, quantize, measure -------------------------------------- */

static void make_model(struct exporter *E, struct ofa_model *m)
{
    ofa_model_materialise(m, &E->sa, &E->sub);
    snprintf(m->device, sizeof m->device, "%s", E->rec.device);
    m->supernet_fingerprint = E->rec.supernet_fingerprint;
    for (int c = 0; c < m->in_channels && c < 3; c++) {
        m->norm_mean[c] = E->r.augment.normalize ? (float)E->ds.mean[c] : 0.0f;
        m->norm_std[c] = E->r.augment.normalize ? (float)E->ds.std[c] : 1.0f;
    }
    m->class_names = ofa_xcalloc((size_t)m->num_classes, sizeof *m->class_names, "class names");
    for (int k = 0; k < m->num_classes; k++)
        snprintf(m->class_names[k], OFA_CLASS_NAME_MAX, "%s", E->ds.class_names[k]);
    struct ofa_quant_opts qo = {
        E->r.export.calib_percentile_on ? OFA_CALIB_PERCENTILE : OFA_CALIB_MINMAX,
        E->r.export.calib_percentile};
    ofa_quant_calibrate(m, E->calib_x, E->n_calib, &qo);
}

static int measure(struct exporter *E, const struct ofa_model *m, struct figures *f,
                   const char *when, struct ofa_error *err)
{
    struct predictor p;
    predictor_init(&p, m);
    double t0 = ofa_now();
    f->acc_fp32 = accuracy(&p, 0, E->test_x, E->test_y, E->n_test);
    f->acc_int8 = accuracy(&p, 1, E->test_x, E->test_y, E->n_test);
    int rc = ofa_instability_measure(&f->in, &E->ds, &E->r, E->sub.res, E->n_test, predict, &p,
                                     err);
    predictor_free(&p);
    if (rc)
        return -1;
    if (E->o->progress)
        fprintf(stderr, "ofa-export: %s: test accuracy fp32 %.2f%%, int8 %.2f%%; instability "
                        "%.2f%% (label-aware %.2f%%) over %d variants, %d images (%.1f s)\n",
                when, 100 * f->acc_fp32, 100 * f->acc_int8, 100 * f->in.instability,
                100 * f->in.instability_label, f->in.n_variants, f->in.n_images,
                ofa_now() - t0);
    return 0;
}

/* Batch-1 latency on this host, one thread, median of reps (ms); the same
 * definition as ofa-extract's measured host profiles. */
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void host_latency(const struct ofa_model *m, const float *x, double *fp32_ms,
                         double *int8_ms)
{
    enum { WARM = 10, REPS = 101 };
    int prev = ofa_threads_get();
    ofa_threads_set(1);
    struct ofa_qrun *q = ofa_qrun_create(m);
    float *scratch = ofa_model_scratch_alloc(m, 1);
    float *logits = ofa_xmalloc((size_t)m->num_classes * sizeof(float), "logits");
    double t[REPS];
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < WARM + REPS; i++) {
            double t0 = ofa_thread_cpu_now();
            if (pass == 0)
                ofa_model_forward(m, logits, x, 1, scratch);
            else
                ofa_qrun_forward(q, logits, x, 1);
            if (i >= WARM)
                t[i - WARM] = 1e3 * (ofa_thread_cpu_now() - t0);
        }
        qsort(t, REPS, sizeof *t, cmp_double);
        *(pass == 0 ? fp32_ms : int8_ms) = t[REPS / 2];
    }
    free(scratch);
    free(logits);
    ofa_qrun_free(q);
    ofa_threads_set(prev);
}

/* ---- artifacts ------------------------------------------------------------------- */

static void path_in(char *buf, size_t n, const char *dir, const char *name)
{
    snprintf(buf, n, "%s/%s", dir, name);
}

struct summary {
    struct figures before, after;
    double val_acc;                 /* supernet view, BN recalibrated */
    double teacher_val_acc;         /* target largest: the teacher's, likewise */
    double lat_fp32_ms, lat_int8_ms;
    struct ofa_emit_stats emit;
    double seconds_finetune;
    struct ofa_stability_stats pass;
};

static const char *const draw_desc[] = {
    [OFA_DRAW_RANDOM] = "one fp32 variant per image at random",
    [OFA_DRAW_WORST] = "the worst fp32 variant per image",
    [OFA_DRAW_ALL] = "every fp32 variant per image"};

static void variant_desc(const struct ofa_variant_cfg *v, char *buf, size_t n)
{
    static const char *interp[] = {"nearest", "bilinear", "area"};
    int k = snprintf(buf, n, "%s", v->int8 ? "int8 arithmetic" : "fp32");
    if (v->jpeg_quality)
        k += snprintf(buf + k, n - (size_t)k, ", JPEG q%d", v->jpeg_quality);
    if (v->gamma != 1.0f)
        k += snprintf(buf + k, n - (size_t)k, ", gamma %g", v->gamma);
    if (v->brightness != 0.0f)
        k += snprintf(buf + k, n - (size_t)k, ", brightness %+g", v->brightness);
    if (v->contrast != 1.0f)
        k += snprintf(buf + k, n - (size_t)k, ", contrast %g", v->contrast);
    if (v->blur_sigma > 0.0f)
        k += snprintf(buf + k, n - (size_t)k, ", blur sigma %g", v->blur_sigma);
    if (v->noise_std > 0.0f)
        k += snprintf(buf + k, n - (size_t)k, ", noise std %g", v->noise_std);
    snprintf(buf + k, n - (size_t)k, ", %s resize", interp[v->interp]);
}

static void write_card(FILE *f, const struct exporter *E, const struct ofa_model *m,
                       const struct summary *s)
{
    const struct ofa_space *sp = &E->r.space;
    const struct ofa_subnet_record *rc = &E->rec;
    fprintf(f, "# Model card: %s\n\n", rc->device);
    fprintf(f, "Subnet `%s` of the supernet `%s` (fingerprint %016llx), exported by "
               "ofa-export %s.\n\n",
            rc->subnet, E->o->supernet, (unsigned long long)rc->supernet_fingerprint,
            PACKAGE_VERSION);
    fprintf(f, "## Figures\n\n| figure | value |\n|---|---|\n");
    fprintf(f, "| test accuracy fp32 (after fine-tuning) | %.2f%% |\n", 100 * s->after.acc_fp32);
    fprintf(f, "| test accuracy int8 (after fine-tuning) | %.2f%% |\n", 100 * s->after.acc_int8);
    fprintf(f, "| test accuracy fp32 / int8 before fine-tuning | %.2f%% / %.2f%% |\n",
            100 * s->before.acc_fp32, 100 * s->before.acc_int8);
    fprintf(f, "| instability before -> after | %.2f%% -> %.2f%% |\n",
            100 * s->before.in.instability, 100 * s->after.in.instability);
    fprintf(f, "| label-aware instability before -> after | %.2f%% -> %.2f%% |\n",
            100 * s->before.in.instability_label, 100 * s->after.in.instability_label);
    fprintf(f, "| validation accuracy (supernet view, ofa-extract) | %.2f%% (predicted %.2f%%) |\n",
            100 * s->val_acc, 100 * rc->acc_predicted);
    fprintf(f, "| latency on this host, batch 1, 1 thread: fp32 / int8 | %.3f ms / %.3f ms |\n",
            s->lat_fp32_ms, s->lat_int8_ms);
    if (isfinite(rc->latency_predicted_ms))
        fprintf(f, "| device latency (%s model): predicted | %.3f ms |\n", rc->latency_model,
                rc->latency_predicted_ms);
    fprintf(f, "| MACs | %.2f M |\n| parameters | %lld |\n",
            (double)ofa_subnet_macs(sp, &E->sub) * 1e-6, ofa_subnet_params(sp, &E->sub));
    fprintf(f, "| flash (model.c: const data + code) | %.1f KB |\n", s->emit.flash_bytes / 1024.0);
    fprintf(f, "| SRAM (model.c: peak activations) | %.1f KB |\n", s->emit.sram_bytes / 1024.0);
    char b1[32] = "none", b2[32] = "none", b3[32] = "none";
    if (rc->budget_latency_ms > 0)
        snprintf(b1, sizeof b1, "%g ms", rc->budget_latency_ms);
    if (rc->budget_flash_kb > 0)
        snprintf(b2, sizeof b2, "%g KB", rc->budget_flash_kb);
    if (rc->budget_sram_kb > 0)
        snprintf(b3, sizeof b3, "%g KB", rc->budget_sram_kb);
    fprintf(f, "| device budgets: latency / flash / SRAM | %s / %s / %s |\n\n", b1, b2, b3);

    fprintf(f, "## Accuracy under each device variant (%d test images)\n\n",
            s->after.in.n_images);
    fprintf(f, "| variant | pipeline | accuracy before | after | label not clean's: before "
               "| after | fine-tuning images |\n|---|---|---|---|---|---|---|\n");
    fprintf(f, "| clean | fp32, bilinear resize | %.2f%% | %.2f%% | - | - | all |\n",
            100 * s->before.in.acc_clean, 100 * s->after.in.acc_clean);
    for (int v = 0; v < E->r.n_variants; v++) {
        char d[256], share[32] = "-";
        variant_desc(&E->r.variants[v], d, sizeof d);
        if (s->pass.images > 0 && !E->r.variants[v].int8)
            snprintf(share, sizeof share, "%.1f%%",
                     100.0 * (double)s->pass.drawn[v] / (double)s->pass.images);
        fprintf(f, "| %s | %s | %.2f%% | %.2f%% | %.2f%% | %.2f%% | %s |\n",
                E->r.variants[v].name, d, 100 * s->before.in.acc[v], 100 * s->after.in.acc[v],
                100 * s->before.in.flip[v], 100 * s->after.in.flip[v], share);
    }
    const struct ofa_export_cfg *x = &E->r.export;
    fprintf(f, "\nInstability is the share of test images whose top-1 label is not the same "
               "under every variant (label-aware: right under one variant, wrong under "
               "another); \"label not clean's\": the share whose label under the variant is "
               "not the clean pipeline's; \"fine-tuning images\": the share of the stability "
               "pass's images seen through the variant (int8 variants are not drawn%s). ",
            E->r.export.fake_quant ? ": every step is fake-quantized" : "");
    char target[120];
    if (x->target == OFA_TARGET_LARGEST)
        snprintf(target, sizeof target, "distilled from the supernet's largest subnet "
                 "(validation accuracy %.2f%%)", 100 * s->teacher_val_acc);
    else
        snprintf(target, sizeof target, "%s", x->target == OFA_TARGET_ORIGINAL
                 ? "distilled from the subnet as it came" : "cross-entropy on the labels");
    if (x->epochs > 0)
        fprintf(f, "Stability fine-tuning: %d epoch%s, lr %g, alpha %g, %s, clean term %s%s, "
                   "%s, %.0f s.\n\n",
                x->epochs, x->epochs == 1 ? "" : "s", x->lr, x->alpha, draw_desc[x->variant_draw],
                target, x->detach_clean ? " (no stability gradient)" : "",
                x->fake_quant ? "fake-quantized weights and activations" : "float",
                s->seconds_finetune);
    else
        fprintf(f, "Stability fine-tuning was off (export.epochs = 0): before = after.\n\n");

    fprintf(f, "## Files\n\n"
               "- `model.h5`: the self-describing model (architecture, BN-folded float weights, "
               "int8 weights, scales and zero points, input normalisation, class names); run "
               "it with `ofa-run model.h5 IMAGES...`.\n"
               "- `model.onnx`: the float model (BN folded), ONNX opset %d, input `input` "
               "[N,%d,%d,%d] normalised, output `logits`. The int8 model is not exported "
               "to ONNX: use model.h5 or model.c for int8.\n"
               "- `model.c`, `model.h`: the int8 model as const arrays and a dependency-free "
               "C99 function `ofa_model_run()` for microcontrollers.\n\n",
            OFA_ONNX_OPSET, m->in_channels, m->res, m->res);
    fprintf(f, "Input: %s image %dx%d, pixel/255, then (x - mean) / std with mean",
            m->in_channels == 1 ? "grey" : "RGB", m->res, m->res);
    for (int c = 0; c < m->in_channels; c++)
        fprintf(f, " %.4f", m->norm_mean[c]);
    fprintf(f, ", std");
    for (int c = 0; c < m->in_channels; c++)
        fprintf(f, " %.4f", m->norm_std[c]);
    fprintf(f, ". Classes:");
    for (int k = 0; k < m->num_classes; k++)
        fprintf(f, "%s %s", k ? "," : "", m->class_names[k]);
    fprintf(f, ".\n\n## Recipe\n\nThe supernet's recipe (as trained), with the export settings "
               "used:\n\n```ini\n");
    char *text = ofa_recipe_format(&E->r);
    fputs(text, f);
    free(text);
    fprintf(f, "```\n");
}

/* One "key<TAB>value" line per figure, for report generators. */
static void write_tsv(FILE *f, const struct exporter *E, const struct summary *s)
{
    fprintf(f, "key\tvalue\n");
    fprintf(f, "device\t%s\nsubnet\t%s\n", E->rec.device, E->rec.subnet);
    fprintf(f, "acc_fp32\t%.6f\nacc_int8\t%.6f\n", s->after.acc_fp32, s->after.acc_int8);
    fprintf(f, "acc_fp32_before\t%.6f\nacc_int8_before\t%.6f\n", s->before.acc_fp32,
            s->before.acc_int8);
    fprintf(f, "instability_before\t%.6f\ninstability_after\t%.6f\n", s->before.in.instability,
            s->after.in.instability);
    fprintf(f, "instability_label_before\t%.6f\ninstability_label_after\t%.6f\n",
            s->before.in.instability_label, s->after.in.instability_label);
    fprintf(f, "val_acc\t%.6f\nacc_predicted\t%.6f\n", s->val_acc, E->rec.acc_predicted);
    fprintf(f, "host_latency_fp32_ms\t%.4f\nhost_latency_int8_ms\t%.4f\n", s->lat_fp32_ms,
            s->lat_int8_ms);
    fprintf(f, "device_latency_predicted_ms\t%.4f\n", E->rec.latency_predicted_ms);
    fprintf(f, "mmacs\t%.4f\nparams\t%lld\n", (double)ofa_subnet_macs(&E->r.space, &E->sub) * 1e-6,
            ofa_subnet_params(&E->r.space, &E->sub));
    fprintf(f, "flash_bytes\t%ld\nsram_bytes\t%ld\n", s->emit.flash_bytes, s->emit.sram_bytes);
    for (int v = 0; v < E->r.n_variants; v++)
        fprintf(f, "acc_%s_before\t%.6f\nacc_%s_after\t%.6f\nflip_%s_before\t%.6f\n"
                   "flip_%s_after\t%.6f\n",
                E->r.variants[v].name, s->before.in.acc[v], E->r.variants[v].name,
                s->after.in.acc[v], E->r.variants[v].name, s->before.in.flip[v],
                E->r.variants[v].name, s->after.in.flip[v]);
    fprintf(f, "test_images\t%d\n", s->after.in.n_images);
}

struct doc {
    const struct exporter *E;
    const struct ofa_model *m;
    const struct summary *s;
};

static int write_doc(const char *path, int card, const struct doc *d, struct ofa_error *err)
{
    struct ofa_atomic_file af;
    FILE *f = ofa_atomic_open(&af, path, err);
    if (!f)
        return -1;
    if (card)
        write_card(f, d->E, d->m, d->s);
    else
        write_tsv(f, d->E, d->s);
    return ofa_atomic_commit(&af, err);
}

/* The artifacts, in the order they are put in place: card.md last. */
static const char *const artifacts[] = {"model.h5", "model.onnx", "model.h", "model.c",
                                        "export.tsv", "card.md"};
enum { N_ARTIFACTS = sizeof artifacts / sizeof *artifacts };

/* The artifacts are written into a staging directory DIR/.export.<pid>
 * first, each atomically, and moved into DIR only once all of them are
 * written: a full disk, an error or a signal while writing leaves the
 * previous export untouched and no partial file (the signal handler of
 * ofa_cleanup_on_signals removes the staged files and the directory).
 * Moving them is renames only: card.md goes first and comes back last, so
 * a directory with a card is complete. */
struct stage {
    char dir[1100];
    char file[N_ARTIFACTS][1200];
};

static void stage_remove(struct stage *st)
{
    for (int i = 0; i < N_ARTIFACTS; i++) {
        unlink(st->file[i]);
        ofa_tmp_unregister(st->file[i]);
    }
    rmdir(st->dir);
    ofa_tmp_unregister(st->dir);
}

static int write_artifacts(struct exporter *E, const struct ofa_model *m, struct summary *s,
                           struct ofa_error *err)
{
    const char *dir = E->o->outdir;
    static struct stage st; /* registered paths must outlive the handler's use */
    char sdir[sizeof st.dir]; /* a copy: the file paths are made in the same struct */
    snprintf(sdir, sizeof sdir, "%s/.export.%ld", dir, (long)getpid());
    memcpy(st.dir, sdir, sizeof sdir);
    ofa_tmp_register(st.dir); /* the handler removes files first, then directories */
    for (int i = 0; i < N_ARTIFACTS; i++) {
        path_in(st.file[i], sizeof st.file[i], sdir, artifacts[i]);
        ofa_tmp_register(st.file[i]);
    }
    if (mkdir(st.dir, 0777) != 0) {
        ofa_error_set(err, dir, 0, "cannot create the staging directory %s: %s", st.dir,
                      strerror(errno));
        stage_remove(&st);
        return -1;
    }
    const struct doc d = {E, m, s};
    if (ofa_model_save(st.file[0], m, err) || ofa_onnx_write(st.file[1], m, err) ||
        ofa_emit_c(m, st.dir, &s->emit, err) || write_doc(st.file[4], 0, &d, err) ||
        write_doc(st.file[5], 1, &d, err)) {
        /* name the artifact in the destination, not the staging directory */
        char msg[sizeof err->msg + sizeof err->file + 2];
        const char *slash = strrchr(err->file, '/');
        snprintf(msg, sizeof msg, "%s: %s", slash ? slash + 1 : err->file, err->msg);
        ofa_error_set(err, dir, 0, "%.900s (nothing was replaced)", msg);
        stage_remove(&st);
        return -1;
    }
    char path[1200];
    path_in(path, sizeof path, dir, "card.md");
    if (unlink(path) != 0 && errno != ENOENT) {
        ofa_error_set(err, path, 0, "cannot replace it: %s", strerror(errno));
        stage_remove(&st);
        return -1;
    }
    for (int i = 0; i < N_ARTIFACTS; i++) {
        path_in(path, sizeof path, dir, artifacts[i]);
        if (rename(st.file[i], path) != 0) {
            ofa_error_set(err, path, 0, "cannot move %s into place: %s", st.file[i],
                          strerror(errno));
            stage_remove(&st);
            return -1;
        }
    }
    stage_remove(&st);
    return ofa_sync_dir(dir, dir, err);
}

/* BN recalibration of a subnet in the supernet (OFA), then its own copy in
 * dst; returns its validation accuracy. */
static double extract_recalibrated(struct exporter *E, struct ofa_supernet *dst,
                                   const struct ofa_subnet *sub)
{
    struct ofa_evaluator ev;
    struct ofa_exec ex;
    ofa_evaluator_init(&ev, &E->ds, &E->r, OFA_SPLIT_VAL, (uint64_t)E->r.train.seed);
    ofa_exec_init(&ex, &E->net, ofa_evaluator_max_batch(&ev));
    double acc = ofa_evaluate(&ev, &E->net, &ex, sub);
    ofa_exec_free(&ex);
    ofa_evaluator_free(&ev);
    ofa_supernet_extract(dst, &E->net, sub);
    return acc;
}

static int run(struct exporter *E, struct ofa_error *err)
{
    const struct ofa_export_opts *o = E->o;
    const struct ofa_export_cfg *x = &E->r.export;
    struct summary s;
    memset(&s, 0, sizeof s);
    struct stat stt;
    if (stat(o->outdir, &stt) != 0 || !S_ISDIR(stt.st_mode))
        return ofa_error_set(err, o->outdir, 0, "is not a directory (create it, or give the "
                             "directory of the device's subnet.h5)");

    s.val_acc = extract_recalibrated(E, &E->sa, &E->sub);
    if (o->progress)
        fprintf(stderr, "ofa-export: %s: subnet %s, validation accuracy %.2f%% after BN "
                        "recalibration\n", E->rec.device, E->rec.subnet, 100 * s.val_acc);

    E->n_calib = x->calib_images < E->ds.n_train ? x->calib_images : E->ds.n_train;
    E->n_test = x->test_images > 0 && x->test_images < E->ds.test.n ? x->test_images
                                                                    : E->ds.test.n;
    clean_images(E, OFA_SPLIT_TRAIN, 1, E->n_calib, &E->calib_x, &E->calib_y);
    clean_images(E, OFA_SPLIT_TEST, 0, E->n_test, &E->test_x, &E->test_y);

    struct ofa_model before = {0}, after = {0};
    int rc = -1;
    make_model(E, &before);
    if (measure(E, &before, &s.before, "before fine-tuning", err))
        goto out;
    const struct ofa_model *final = &before;
    s.after = s.before;
    if (x->epochs > 0) {
        double t0 = ofa_now();
        struct ofa_supernet *teacher = NULL;
        if (x->target == OFA_TARGET_LARGEST) {
            struct ofa_subnet largest;
            ofa_subnet_largest(&E->r.space, &largest);
            teacher = &E->teacher;
            s.teacher_val_acc = extract_recalibrated(E, teacher, &largest);
            if (o->progress)
                fprintf(stderr, "ofa-export: the teacher, the largest subnet, validation accuracy "
                                "%.2f%% after BN recalibration\n", 100 * s.teacher_val_acc);
        }
        if (ofa_stability_finetune(&E->sa, teacher, &E->ds, &E->r, !o->progress, &s.pass, err))
            goto out;
        s.seconds_finetune = ofa_now() - t0;
        make_model(E, &after);
        if (measure(E, &after, &s.after, "after fine-tuning", err))
            goto out;
        final = &after;
    }
    host_latency(final, E->test_x, &s.lat_fp32_ms, &s.lat_int8_ms);
    if (write_artifacts(E, final, &s, err))
        goto out;
    if (o->progress)
        fprintf(stderr, "ofa-export: %s: wrote model.h5, model.onnx, model.c, model.h, "
                        "card.md to %s (int8 %.2f%%, instability %.2f%% -> %.2f%%)\n",
                E->rec.device, o->outdir, 100 * s.after.acc_int8,
                100 * s.before.in.instability, 100 * s.after.in.instability);
    rc = 0;
out:
    ofa_model_free(&before);
    ofa_model_free(&after);
    return rc;
}

int ofa_export_run(const struct ofa_export_opts *o, struct ofa_error *err)
{
    struct exporter E;
    memset(&E, 0, sizeof E);
    E.o = o;
    ofa_recipe_default(&E.r);
    int rc = load_inputs(&E, err);
    if (rc == 0)
        rc = run(&E, err);
    free(E.recipe_text);
    free(E.calib_x), free(E.calib_y), free(E.test_x), free(E.test_y);
    if (E.sa.p.data)
        ofa_supernet_free(&E.sa);
    if (E.teacher.p.data)
        ofa_supernet_free(&E.teacher);
    ofa_supernet_free(&E.net);
    ofa_dataset_free(&E.ds);
    return rc;
}
