/* data.c: the dataset struct, the deterministic train/validation split,
 * statistics, whole-file reading and the dispatch over source formats.
 *
 * Readers only ever allocate what a file's actual size justifies; that is
 * why files are read whole after an fstat, never from a size found inside.
 */
#include <config.h>

#include "data.h"
#include "rng.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void ofa_images_free(struct ofa_images *im)
{
    if (!im)
        return;
    free(im->pixels);
    free(im->labels);
    memset(im, 0, sizeof *im);
}

void ofa_dataset_free(struct ofa_dataset *ds)
{
    if (!ds)
        return;
    free(ds->class_names);
    ofa_images_free(&ds->train);
    ofa_images_free(&ds->test);
    free(ds->train_index);
    free(ds->val_index);
    memset(ds, 0, sizeof *ds);
}

void ofa_images_stats(const struct ofa_images *im, const int *idx, int n,
                      double mean[4], double std[4])
{
    int C = im->c;
    size_t hw = (size_t)im->h * (size_t)im->w;
    if (!idx)
        n = im->n;
    /* Exact integer histograms: the result does not depend on summation order. */
    uint64_t hist[4][256];
    memset(hist, 0, sizeof hist);
    for (int k = 0; k < n; k++) {
        int i = idx ? idx[k] : k;
        const uint8_t *p = im->pixels + (size_t)i * hw * (size_t)C;
        for (size_t j = 0; j < hw; j++)
            for (int c = 0; c < C; c++)
                hist[c][p[j * (size_t)C + (size_t)c]]++;
    }
    for (int c = 0; c < 4; c++) {
        mean[c] = 0.0;
        std[c] = 1.0;
    }
    for (int c = 0; c < C; c++) {
        double s = 0, s2 = 0, cnt = 0;
        for (int v = 0; v < 256; v++) {
            double x = v / 255.0;
            s += (double)hist[c][v] * x;
            s2 += (double)hist[c][v] * x * x;
            cnt += (double)hist[c][v];
        }
        if (cnt > 0) {
            double m = s / cnt;
            double var = s2 / cnt - m * m;
            mean[c] = m;
            std[c] = var > 1e-12 ? sqrt(var) : 1.0;
        }
    }
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int ofa_dataset_split(struct ofa_dataset *ds, int n_val, uint64_t seed, struct ofa_error *err)
{
    int N = ds->train.n;
    if (n_val < 0 || n_val >= N)
        return ofa_error_set(err, "", 0,
                             "validation size %d is out of range: the training set has %d "
                             "images (need 0 <= size < %d)", n_val, N, N);
    int *perm = ofa_xmalloc(sizeof(int) * (size_t)N, "split permutation");
    for (int i = 0; i < N; i++)
        perm[i] = i;
    /* Fisher-Yates from a stream private to the split. */
    struct ofa_rng r;
    ofa_rng_derive(&r, seed, 0x73706c6974ULL /* "split" */, (uint64_t)N);
    for (int i = N - 1; i > 0; i--) {
        int j = (int)ofa_rng_below(&r, (uint32_t)i + 1);
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    free(ds->val_index);
    free(ds->train_index);
    ds->n_val = n_val;
    ds->n_train = N - n_val;
    ds->val_index = ofa_xmalloc(sizeof(int) * (size_t)(n_val ? n_val : 1), "validation index");
    ds->train_index = ofa_xmalloc(sizeof(int) * (size_t)ds->n_train, "train index");
    memcpy(ds->val_index, perm, sizeof(int) * (size_t)n_val);
    memcpy(ds->train_index, perm + n_val, sizeof(int) * (size_t)ds->n_train);
    free(perm);
    qsort(ds->val_index, (size_t)n_val, sizeof(int), cmp_int);
    qsort(ds->train_index, (size_t)ds->n_train, sizeof(int), cmp_int);
    ds->split_seed = seed;
    ofa_images_stats(&ds->train, ds->train_index, ds->n_train, ds->mean, ds->std);
    return 0;
}

int ofa_read_file(const char *path, uint8_t **buf, size_t *len, struct ofa_error *err)
{
    *buf = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return ofa_error_set(err, path, 0, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return ofa_error_set(err, path, 0, "cannot stat: %s", strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return ofa_error_set(err, path, 0, "not a regular file");
    }
    size_t n = (size_t)st.st_size;
    uint8_t *p = ofa_xmalloc(n ? n : 1, path);
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : 0;
            close(fd);
            free(p);
            return ofa_error_set(err, path, 0, "read failed after %zu of %zu bytes%s%s", got, n,
                                 e ? ": " : "", e ? strerror(e) : "");
        }
        got += (size_t)r;
    }
    close(fd);
    *buf = p;
    *len = n;
    return 0;
}

static const char *const fmt_names[] = {"auto", "idx", "cifar10", "cifar100", "png"};

int ofa_data_format_parse(const char *s)
{
    for (int i = 0; i < (int)(sizeof fmt_names / sizeof fmt_names[0]); i++)
        if (strcmp(s, fmt_names[i]) == 0)
            return i;
    return -1;
}

const char *ofa_data_format_name(int fmt)
{
    if (fmt < 0 || fmt >= (int)(sizeof fmt_names / sizeof fmt_names[0]))
        return "?";
    return fmt_names[fmt];
}

static int exists(const char *dir, const char *name)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat st;
    return stat(p, &st) == 0;
}

int ofa_data_read_source(const char *source, const struct ofa_read_opts *opts,
                         struct ofa_dataset *ds, struct ofa_error *err)
{
    memset(ds, 0, sizeof *ds);
    struct ofa_read_opts o = *opts;
    const char *dir = source;
    if (strcmp(source, "fashion-mnist") == 0) {
        dir = OFA_FASHION_MNIST_DIR;
        if (o.format == OFA_FMT_AUTO)
            o.format = OFA_FMT_IDX;
        if (!o.class_names)
            o.class_names = "fashion-mnist";
    }
    struct stat st;
    if (stat(dir, &st) != 0)
        return ofa_error_set(err, dir, 0, "cannot access the source: %s%s", strerror(errno),
                             dir != source ? " (install Debian's dataset-fashion-mnist)" : "");
    if (!S_ISDIR(st.st_mode))
        return ofa_error_set(err, dir, 0, "the source must be a directory");
    if (o.format == OFA_FMT_AUTO) {
        if (exists(dir, "train-images-idx3-ubyte.gz") || exists(dir, "train-images-idx3-ubyte"))
            o.format = OFA_FMT_IDX;
        else if (exists(dir, "data_batch_1.bin"))
            o.format = OFA_FMT_CIFAR10;
        else if (exists(dir, "train.bin"))
            o.format = OFA_FMT_CIFAR100;
        else
            o.format = OFA_FMT_PNG;
    }
    int rc;
    switch (o.format) {
    case OFA_FMT_IDX:
        rc = ofa_idx_read_dir(dir, &o, ds, err);
        break;
    case OFA_FMT_CIFAR10:
    case OFA_FMT_CIFAR100:
        rc = ofa_cifar_read_dir(dir, o.format == OFA_FMT_CIFAR100, ds, err);
        break;
    case OFA_FMT_PNG:
        rc = ofa_png_read_dir(dir, &o, ds, err);
        break;
    default:
        return ofa_error_set(err, dir, 0, "unknown format %d", o.format);
    }
    if (rc != 0) {
        ofa_dataset_free(ds);
        return rc;
    }
    if (!ds->source[0])
        snprintf(ds->source, sizeof ds->source, "%s:%s", ofa_data_format_name(o.format), dir);
    return 0;
}

/* FNV-1a over the shapes, the split and a sample of labels and pixels:
 * enough to tell data sets and splits apart, cheap to compute. */
uint64_t ofa_dataset_fingerprint(const struct ofa_dataset *ds)
{
    uint64_t h = 1469598103934665603ULL;
#define MIX(v) (h = (h ^ (uint64_t)(v)) * 1099511628211ULL)
    MIX(ds->train.n), MIX(ds->train.h), MIX(ds->train.w), MIX(ds->train.c);
    MIX(ds->num_classes), MIX(ds->n_val), MIX(ds->split_seed);
    for (int i = 0; i < ds->n_val; i++)
        MIX(ds->val_index[i]);
    for (int i = 0; i < ds->train.n; i += 97)
        MIX(ds->train.labels[i]), MIX(ds->train.pixels[(size_t)i * ds->train.h * ds->train.w]);
#undef MIX
    return h;
}
