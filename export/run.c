/* ofa-run: runs an exported model (model.h5, fp32 or int8) on PNG files, an
 * IDX image file or a data.h5 split. Images go through the evaluator's
 * pipeline (pixel/255, the model's normalisation, bilinear resize to its
 * resolution), so figures agree with ofa-export's. Prints the top-k classes
 * per image, or accuracy and latency for a labelled split. */
#include <config.h>

#include "blas.h"
#include "cli.h"
#include "data.h"
#include "model.h"
#include "quant.h"
#include "stability.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const prog = "ofa-run";

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: %s MODEL.h5 INPUT... [OPTION]...\n"
            "Run an exported model on images. INPUT is a PNG file (top-k per image), an IDX\n"
            "image file, plain or gzip (top-k per image), or a data set prepared by ofa-data\n"
            "(accuracy and latency on one split).\n\n"
            "  -a, --arith=int8|fp32  arithmetic (default: int8 when the model is quantized)\n"
            "  -k, --top=K          classes printed per image (default 3)\n"
            "      --split=test|val|train  split of a data.h5 INPUT (default test)\n"
            "  -q, --quiet          accuracy line only for a split\n"
            OFA_CLI_COMMON_HELP
            "\nExamples:\n"
            "  %s runs/quick/devices/cortex-m7/model.h5 shirt.png\n"
            "  %s runs/quick/devices/cortex-m7/model.h5 runs/quick/data.h5 --arith fp32\n",
            prog, prog, prog);
}

struct runner {
    const struct ofa_model *m;
    struct ofa_qrun *q;
    int int8, topk;
    float lut[3 * 256];
    float *scratch, *x, *logits, *vscratch;
    int batch;
};

enum { BATCH = 256 };

static void runner_init(struct runner *R, const struct ofa_model *m, int int8, int topk)
{
    R->m = m;
    R->int8 = int8;
    R->topk = topk < m->num_classes ? topk : m->num_classes;
    R->q = int8 ? ofa_qrun_create(m) : NULL;
    for (int c = 0; c < m->in_channels; c++)
        for (int v = 0; v < 256; v++)
            R->lut[c * 256 + v] = (float)((v / 255.0 - m->norm_mean[c]) / m->norm_std[c]);
    R->scratch = int8 ? NULL : ofa_model_scratch_alloc(m, BATCH);
    size_t img = (size_t)m->res * m->res * m->in_channels;
    R->x = ofa_xmalloc(BATCH * img * sizeof(float), "inputs");
    R->logits = ofa_xmalloc((size_t)BATCH * m->num_classes * sizeof(float), "logits");
}

static void runner_free(struct runner *R)
{
    ofa_qrun_free(R->q);
    free(R->scratch), free(R->x), free(R->logits), free(R->vscratch);
}

/* Image [H,W,C] uint8 into slot i of the batch. */
static int runner_put(struct runner *R, int i, const uint8_t *img, int H, int W,
                      struct ofa_error *err)
{
    const struct ofa_model *m = R->m;
    int side = H > W ? H : W;
    side = side > m->res ? side : m->res;
    free(R->vscratch);
    R->vscratch = ofa_xmalloc(2 * (size_t)side * side * m->in_channels * sizeof(float),
                              "scratch");
    return ofa_variant_apply(R->x + (size_t)i * m->res * m->res * m->in_channels, NULL, img, H,
                             W, m->in_channels, m->res, R->lut, R->vscratch, 0, err);
}

static void runner_forward(struct runner *R, int n)
{
    if (R->int8)
        ofa_qrun_forward(R->q, R->logits, R->x, n);
    else
        ofa_model_forward(R->m, R->logits, R->x, n, R->scratch);
}

static int argmax(const float *v, int n)
{
    int b = 0;
    for (int k = 1; k < n; k++)
        if (v[k] > v[b])
            b = k;
    return b;
}

/* "name<TAB>class prob<TAB>..." with softmax probabilities. */
static void print_top(const struct runner *R, const char *name, int i)
{
    const int K = R->m->num_classes;
    const float *l = R->logits + (size_t)i * K;
    double *p = ofa_xmalloc((size_t)K * sizeof *p, "probabilities");
    double mx = l[argmax(l, K)], sum = 0;
    for (int k = 0; k < K; k++)
        sum += p[k] = exp((double)l[k] - mx);
    printf("%s", name);
    for (int t = 0; t < R->topk; t++) {
        int b = -1;
        for (int k = 0; k < K; k++)
            if (p[k] >= 0 && (b < 0 || p[k] > p[b]))
                b = k;
        printf("\t%s %.4f", R->m->class_names[b], p[b] / sum);
        p[b] = -1; /* printed */
    }
    printf("\n");
    free(p);
}

static int run_png(struct runner *R, const char *path, struct ofa_error *err)
{
    uint8_t *buf = NULL, *px = NULL;
    size_t len;
    int h, w, rc = -1;
    const int C = R->m->in_channels;
    if (C != 1 && C != 3 && C != 4)
        return ofa_error_set(err, path, 0, "a PNG gives 1, 3 or 4 channels; the model takes %d",
                             C);
    if (ofa_read_file(path, &buf, &len, err) == 0 &&
        ofa_png_decode(buf, len, path, C, &px, &h, &w, err) == 0 &&
        runner_put(R, 0, px, h, w, err) == 0) {
        runner_forward(R, 1);
        print_top(R, path, 0);
        rc = 0;
    }
    free(buf), free(px);
    return rc;
}

static int run_idx(struct runner *R, const char *path, const uint8_t *buf, size_t len,
                   struct ofa_error *err)
{
    struct ofa_images im = {0};
    if (ofa_idx_parse_images(buf, len, path, &im, err))
        return -1;
    int rc = 0;
    if (im.c != R->m->in_channels)
        rc = ofa_error_set(err, path, 0, "has %d-channel images; the model takes %d", im.c,
                           R->m->in_channels);
    const size_t img = (size_t)im.h * im.w * im.c;
    for (int i = 0; rc == 0 && i < im.n; i += BATCH) {
        int b = im.n - i < BATCH ? im.n - i : BATCH;
        for (int j = 0; rc == 0 && j < b; j++)
            rc = runner_put(R, j, im.pixels + (size_t)(i + j) * img, im.h, im.w, err);
        if (rc)
            break;
        runner_forward(R, b);
        for (int j = 0; j < b; j++) {
            char name[600];
            snprintf(name, sizeof name, "%s[%d]", path, i + j);
            print_top(R, name, j);
        }
    }
    ofa_images_free(&im);
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int run_split(struct runner *R, const char *path, int split, int quiet,
                     struct ofa_error *err)
{
    static const char *names[] = {"train", "val", "test"};
    struct ofa_dataset ds = {0};
    if (ofa_dataset_load(path, &ds, err))
        return -1;
    int rc = 0;
    const int *idx = NULL;
    int n = 0;
    const struct ofa_images *im = split == OFA_SPLIT_TEST ? &ds.test : &ds.train;
    if (split == OFA_SPLIT_TRAIN)
        idx = ds.train_index, n = ds.n_train;
    else if (split == OFA_SPLIT_VAL)
        idx = ds.val_index, n = ds.n_val;
    else
        n = ds.test.n;
    if (ds.train.c != R->m->in_channels || ds.num_classes != R->m->num_classes)
        rc = ofa_error_set(err, path, 0, "has %d-channel images and %d classes; the model "
                           "takes %d and has %d", ds.train.c, ds.num_classes,
                           R->m->in_channels, R->m->num_classes);
    else if (n == 0)
        rc = ofa_error_set(err, path, 0, "has no %s split", names[split]);
    const size_t img = (size_t)im->h * im->w * im->c;
    long right = 0;
    double t0 = ofa_now();
    for (int i = 0; rc == 0 && i < n; i += BATCH) {
        int b = n - i < BATCH ? n - i : BATCH;
        for (int j = 0; rc == 0 && j < b; j++)
            rc = runner_put(R, j, im->pixels + (size_t)(idx ? idx[i + j] : i + j) * img, im->h,
                            im->w, err);
        if (rc)
            break;
        runner_forward(R, b);
        for (int j = 0; j < b; j++)
            right += argmax(R->logits + (size_t)j * R->m->num_classes, R->m->num_classes) ==
                     im->labels[idx ? idx[i + j] : i + j];
    }
    if (rc == 0) {
        double secs = ofa_now() - t0;
        printf("%s %s: accuracy %.2f%% on %d images (%s)\n", path, names[split],
               100.0 * right / n, n, R->int8 ? "int8" : "fp32");
        if (!quiet) {
            /* batch-1 latency, one thread, median of 101 (after 10 warm-up runs) */
            enum { REPS = 101 };
            double t[REPS];
            int prev = ofa_threads_get();
            ofa_threads_set(1);
            for (int i = 0; i < 10 + REPS; i++) {
                double s = ofa_thread_cpu_now();
                runner_forward(R, 1);
                if (i >= 10)
                    t[i - 10] = 1e3 * (ofa_thread_cpu_now() - s);
            }
            ofa_threads_set(prev);
            qsort(t, REPS, sizeof *t, cmp_double);
            printf("throughput %.0f images/s (batches of %d, %d threads, preprocessing "
                   "included); latency batch 1, 1 thread: %.3f ms (median)\n",
                   n / secs, BATCH, prev, t[REPS / 2]);
        }
    }
    ofa_dataset_free(&ds);
    return rc;
}

static int run_input(struct runner *R, const char *path, int split, int quiet,
                     struct ofa_error *err)
{
    uint8_t *buf = NULL;
    size_t len;
    if (ofa_read_file(path, &buf, &len, err))
        return -1;
    int rc;
    if (ofa_png_peek_channels(buf, len) > 0) {
        free(buf);
        return run_png(R, path, err);
    }
    static const uint8_t hdf5_sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    /* data.h5 carries a user block, so the signature may sit at 512, 1024, ... */
    int is_h5 = 0;
    for (size_t off = 0; off + 8 <= len && off <= 1 << 20 && !is_h5; off = off ? off * 2 : 512)
        is_h5 = memcmp(buf + off, hdf5_sig, 8) == 0;
    if (is_h5) {
        free(buf);
        return run_split(R, path, split, quiet, err);
    }
    rc = run_idx(R, path, buf, len, err);
    free(buf);
    return rc;
}

int main(int argc, char **argv)
{
    ofa_blas_select_kernels(argv); /* before anything else: it may exec */
    enum { OPT_SPLIT = 256 };
    static const struct option opts[] = {
        {"arith", required_argument, NULL, 'a'}, {"top", required_argument, NULL, 'k'},
        {"split", required_argument, NULL, OPT_SPLIT}, {"quiet", no_argument, NULL, 'q'},
        OFA_CLI_COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
    struct ofa_cli_common co;
    struct ofa_error err;
    int c, r, arith = -1, quiet = 0, split = OFA_SPLIT_TEST;
    long topk = 3;
    ofa_cli_common_init(&co);
    while ((c = getopt_long(argc, argv, "a:k:q" OFA_CLI_COMMON_SHORTOPTS, opts, NULL)) != -1) {
        switch (c) {
        case 'a':
            if (strcmp(optarg, "int8") && strcmp(optarg, "fp32")) {
                fprintf(stderr, "%s: --arith must be int8 or fp32, not '%s'\n", prog, optarg);
                return EXIT_FAILURE;
            }
            arith = strcmp(optarg, "int8") == 0;
            break;
        case 'k':
            if (ofa_parse_long(optarg, 1, 256, "--top", &topk, &err)) {
                ofa_error_print(&err, prog);
                return EXIT_FAILURE;
            }
            break;
        case OPT_SPLIT:
            split = !strcmp(optarg, "test") ? OFA_SPLIT_TEST
                    : !strcmp(optarg, "val") ? OFA_SPLIT_VAL
                    : !strcmp(optarg, "train") ? OFA_SPLIT_TRAIN : -1;
            if (split < 0) {
                fprintf(stderr, "%s: --split must be test, val or train, not '%s'\n", prog,
                        optarg);
                return EXIT_FAILURE;
            }
            break;
        case 'q': quiet = 1; break;
        default:
            if ((r = ofa_cli_common_opt(c, optarg, prog, usage, &co)) <= 0)
                return r == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
        }
    }
    /* MODEL and INPUTs are positional: hand ofa_cli_common_finish none. */
    if (ofa_cli_common_finish(optind, argv, optind, prog, &co))
        return EXIT_FAILURE;
    if (argc - optind < 2) {
        fprintf(stderr, "%s: needs a model and at least one input\n"
                        "Try '%s --help' for more information.\n", prog, prog);
        return EXIT_FAILURE;
    }
    struct ofa_model m = {0};
    if (ofa_model_load(argv[optind], &m, &err)) {
        ofa_error_print(&err, prog);
        return EXIT_FAILURE;
    }
    if (arith < 0)
        arith = m.quantized;
    if (arith && !m.quantized) {
        fprintf(stderr, "%s: %s holds no int8 model; use --arith fp32\n", prog, argv[optind]);
        ofa_model_free(&m);
        return EXIT_FAILURE;
    }
    struct runner R = {0};
    runner_init(&R, &m, arith, (int)topk);
    int rc = EXIT_SUCCESS;
    for (int i = optind + 1; i < argc; i++)
        if (run_input(&R, argv[i], split, quiet, &err)) {
            ofa_error_print(&err, prog);
            rc = EXIT_FAILURE;
            break;
        }
    runner_free(&R);
    ofa_model_free(&m);
    return rc;
}
