/* data_cifar.c: CIFAR-10 and CIFAR-100 binary batches.
 *
 * A batch file is a sequence of fixed-size records (label byte(s), then the
 * 32x32 red, green and blue planes), so its size must be a positive multiple
 * of the record size; images are transposed to HWC.
 */
#include <config.h>

#include "data.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CIFAR_SIDE 32
#define CIFAR_PIX (CIFAR_SIDE * CIFAR_SIDE * 3)

int ofa_cifar_parse(const uint8_t *buf, size_t len, const char *name, int cifar100,
                    struct ofa_images *out, struct ofa_error *err)
{
    size_t nlab = cifar100 ? 2 : 1;
    size_t rec = nlab + CIFAR_PIX;
    int K = cifar100 ? 100 : 10;
    if (len == 0 || len % rec != 0)
        return ofa_error_set(err, name, 0,
                             "size %zu is not a positive multiple of the %s record size %zu "
                             "(truncated, or not a %s batch)", len, cifar100 ? "CIFAR-100" :
                             "CIFAR-10", rec, cifar100 ? "CIFAR-100" : "CIFAR-10");
    size_t n = len / rec;
    if (out->n > 0 && (out->h != CIFAR_SIDE || out->w != CIFAR_SIDE || out->c != 3))
        return ofa_error_set(err, name, 0, "cannot append CIFAR images to a %dx%dx%d set",
                             out->h, out->w, out->c);
    if ((size_t)out->n + n > INT32_MAX)
        return ofa_error_set(err, name, 0, "too many images");
    for (size_t i = 0; i < n; i++) {
        int y = buf[i * rec + nlab - 1];
        if (cifar100 && buf[i * rec] >= 20)
            return ofa_error_set_offset(err, name, (long long)(i * rec),
                                        "coarse label %d of record %zu is out of range [0, 20)",
                                        buf[i * rec], i);
        if (y >= K)
            return ofa_error_set_offset(err, name, (long long)(i * rec + nlab - 1),
                                        "label %d of record %zu is out of range [0, %d)", y, i,
                                        K);
    }
    size_t old = (size_t)out->n, tot = old + n;
    uint8_t *px = realloc(out->pixels, tot * CIFAR_PIX);
    int *lab = realloc(out->labels, tot * sizeof(int));
    if (!px || !lab)
        ofa_fatal("out of memory appending %zu CIFAR images", n);
    out->pixels = px;
    out->labels = lab;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *r = buf + i * rec;
        lab[old + i] = r[nlab - 1];
        uint8_t *dst = px + (old + i) * CIFAR_PIX;
        const uint8_t *pl = r + nlab;
        for (int p = 0; p < CIFAR_SIDE * CIFAR_SIDE; p++)
            for (int c = 0; c < 3; c++)
                dst[p * 3 + c] = pl[c * CIFAR_SIDE * CIFAR_SIDE + p];
    }
    out->n = (int)tot;
    out->h = out->w = CIFAR_SIDE;
    out->c = 3;
    return 0;
}

static int load_batch(const char *dir, const char *file, int cifar100, struct ofa_images *out,
                      struct ofa_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    uint8_t *buf;
    size_t len;
    if (ofa_read_file(path, &buf, &len, err))
        return -1;
    int rc = ofa_cifar_parse(buf, len, path, cifar100, out, err);
    free(buf);
    return rc;
}

static const char *const cifar10_names[10] = {"airplane", "automobile", "bird", "cat", "deer",
                                              "dog", "frog", "horse", "ship", "truck"};

/* One name per line, K non-empty lines (blank lines at the end ignored). */
static int read_names(const char *dir, const char *file, int K, struct ofa_dataset *ds,
                      struct ofa_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    struct stat st;
    if (stat(path, &st) != 0)
        return 1; /* absent: defaults */
    uint8_t *buf;
    size_t len;
    if (ofa_read_file(path, &buf, &len, err))
        return -1;
    int k = 0;
    size_t i = 0;
    while (i < len) {
        size_t e = i;
        while (e < len && buf[e] != '\n')
            e++;
        size_t n = e - i;
        while (n > 0 && (buf[i + n - 1] == '\r' || buf[i + n - 1] == ' '))
            n--;
        if (n > 0) {
            if (k >= K || n > OFA_DATA_MAX_CLASS_NAME) {
                free(buf);
                return ofa_error_set(err, path, k + 1, k >= K ? "more than %d class names" :
                                     "class name longer than 63 characters (%d classes)", K);
            }
            memcpy(ds->class_names[k], buf + i, n);
            ds->class_names[k][n] = '\0';
            k++;
        }
        i = e + 1;
    }
    free(buf);
    if (k != K)
        return ofa_error_set(err, path, 0, "%d class names, expected %d", k, K);
    return 0;
}

int ofa_cifar_read_dir(const char *dir, int cifar100, struct ofa_dataset *ds,
                       struct ofa_error *err)
{
    int K = cifar100 ? 100 : 10;
    ds->num_classes = K;
    ds->class_names = ofa_xcalloc((size_t)K, sizeof *ds->class_names, "class names");
    for (int k = 0; k < K; k++)
        snprintf(ds->class_names[k], sizeof ds->class_names[k], "%s",
                 cifar100 ? "" : cifar10_names[k]);
    if (cifar100)
        for (int k = 0; k < K; k++)
            snprintf(ds->class_names[k], sizeof ds->class_names[k], "%d", k);
    int rc = read_names(dir, cifar100 ? "fine_label_names.txt" : "batches.meta.txt", K, ds, err);
    if (rc < 0)
        return -1;
    if (cifar100) {
        if (load_batch(dir, "train.bin", 1, &ds->train, err) ||
            load_batch(dir, "test.bin", 1, &ds->test, err))
            return -1;
    } else {
        for (int b = 1; b <= 5; b++) {
            char f[32];
            snprintf(f, sizeof f, "data_batch_%d.bin", b);
            if (load_batch(dir, f, 0, &ds->train, err))
                return -1;
        }
        if (load_batch(dir, "test_batch.bin", 0, &ds->test, err))
            return -1;
    }
    return 0;
}
