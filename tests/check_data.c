/* check_data.c: the datasets layer: readers and their rejection of bad
 * input, data.h5 round trip and validation, the loader's determinism, the
 * augmentations, the device-variant transforms, and ofa-data end to end.
 *
 * Bad files are crafted at test time in a private temporary folder (one per
 * test; Check forks per test). The Fashion-MNIST test reads the Debian
 * package's files and passes with a note when they are absent.
 */
#include <config.h>

#include "blas.h"
#include "data.h"
#include "ops.h"
#include "rng.h"
#include "testutil.h"

#include <check.h>
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

/* ---- helpers ------------------------------------------------------------------ */

static char tmpdir[1024];

static void setup_tmp(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/check_data.XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown_tmp(void)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}

static const char *tpath(const char *name)
{
    static char p[4][1200];
    static int k;
    k = (k + 1) & 3;
    snprintf(p[k], sizeof p[k], "%s/%s", tmpdir, name);
    return p[k];
}

static void write_bytes(const char *path, const void *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    ck_assert_uint_eq(fwrite(buf, 1, n, f), n);
    fclose(f);
}

static void mkdir_p(const char *path)
{
    ck_assert_msg(mkdir(path, 0777) == 0 || errno == EEXIST, "mkdir %s", path);
}

/* IDX bytes: magic type 0x08, dims, payload. Returns the length. */
static size_t idx_bytes(uint8_t *out, int nd, const uint32_t *dims, const uint8_t *payload,
                        size_t plen)
{
    out[0] = out[1] = 0;
    out[2] = 8;
    out[3] = (uint8_t)nd;
    for (int i = 0; i < nd; i++) {
        out[4 + 4 * i] = (uint8_t)(dims[i] >> 24);
        out[5 + 4 * i] = (uint8_t)(dims[i] >> 16);
        out[6 + 4 * i] = (uint8_t)(dims[i] >> 8);
        out[7 + 4 * i] = (uint8_t)dims[i];
    }
    memcpy(out + 4 + 4 * nd, payload, plen);
    return 4 + 4 * (size_t)nd + plen;
}

static size_t gzip_bytes(uint8_t *out, size_t cap, const uint8_t *in, size_t n)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    ck_assert_int_eq(deflateInit2(&z, 9, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    ck_assert_int_eq(deflate(&z, Z_FINISH), Z_STREAM_END);
    size_t len = cap - z.avail_out;
    deflateEnd(&z);
    return len;
}

/* A small IDX directory: n images of h x w with pixel (i*7 + j) & 255,
 * labels i % K. */
static void make_idx_dir(const char *dir, int n, int h, int w, int K, int gz)
{
    mkdir_p(dir);
    size_t np = (size_t)n * (size_t)h * (size_t)w;
    uint8_t *px = malloc(np), *lab = malloc((size_t)n);
    for (size_t i = 0; i < np; i++)
        px[i] = (uint8_t)((i * 7 + i / 13) & 255);
    for (int i = 0; i < n; i++)
        lab[i] = (uint8_t)(i % K);
    uint8_t *buf = malloc(np + 64), *gzb = malloc(2 * np + 256);
    uint32_t di[3] = {(uint32_t)n, (uint32_t)h, (uint32_t)w}, dl[1] = {(uint32_t)n};
    const char *pre[2] = {"train", "t10k"};
    for (int s = 0; s < 2; s++) {
        char p[1200];
        size_t len = idx_bytes(buf, 3, di, px, np);
        snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte%s", dir, pre[s], gz ? ".gz" : "");
        if (gz)
            write_bytes(p, gzb, gzip_bytes(gzb, 2 * np + 256, buf, len));
        else
            write_bytes(p, buf, len);
        len = idx_bytes(buf, 1, dl, lab, (size_t)n);
        snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte%s", dir, pre[s], gz ? ".gz" : "");
        if (gz)
            write_bytes(p, gzb, gzip_bytes(gzb, 2 * np + 256, buf, len));
        else
            write_bytes(p, buf, len);
    }
    free(px);
    free(lab);
    free(buf);
    free(gzb);
}

#define ASSERT_ERR_CONTAINS(err, needle)                                                   \
    ck_assert_msg(strstr((err).msg, (needle)) != NULL, "message \"%s\" lacks \"%s\"",   \
                  (err).msg, (needle))

/* A PNG chunk appended to buf at *len. */
static void png_chunk(uint8_t *buf, size_t *len, const char *type, const uint8_t *d, uint32_t n)
{
    uint8_t *p = buf + *len;
    p[0] = (uint8_t)(n >> 24);
    p[1] = (uint8_t)(n >> 16);
    p[2] = (uint8_t)(n >> 8);
    p[3] = (uint8_t)n;
    memcpy(p + 4, type, 4);
    if (n)
        memcpy(p + 8, d, n);
    uLong crc = crc32(0, p + 4, 4 + n);
    p[8 + n] = (uint8_t)(crc >> 24);
    p[9 + n] = (uint8_t)(crc >> 16);
    p[10 + n] = (uint8_t)(crc >> 8);
    p[11 + n] = (uint8_t)crc;
    *len += 12 + n;
}

/* A PNG from raw scanline bytes (filter byte 0 is added per row). */
static size_t png_bytes(uint8_t *out, uint32_t w, uint32_t h, int depth, int ctype,
                        const uint8_t *rows, size_t rowbytes, const uint8_t *plte, int nplte,
                        const uint8_t *trns, int ntrns)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    size_t len = 8;
    memcpy(out, sig, 8);
    uint8_t ihdr[13] = {(uint8_t)(w >> 24), (uint8_t)(w >> 16), (uint8_t)(w >> 8), (uint8_t)w,
                        (uint8_t)(h >> 24), (uint8_t)(h >> 16), (uint8_t)(h >> 8), (uint8_t)h,
                        (uint8_t)depth, (uint8_t)ctype, 0, 0, 0};
    png_chunk(out, &len, "IHDR", ihdr, 13);
    if (plte)
        png_chunk(out, &len, "PLTE", plte, (uint32_t)nplte);
    if (trns)
        png_chunk(out, &len, "tRNS", trns, (uint32_t)ntrns);
    size_t rawlen = (size_t)h * (rowbytes + 1);
    uint8_t *raw = malloc(rawlen ? rawlen : 1);
    for (uint32_t y = 0; y < h; y++) {
        raw[y * (rowbytes + 1)] = 0;
        memcpy(raw + y * (rowbytes + 1) + 1, rows + y * rowbytes, rowbytes);
    }
    uLongf zl = compressBound(rawlen);
    uint8_t *z = malloc(zl);
    ck_assert_int_eq(compress(z, &zl, raw, rawlen), Z_OK);
    png_chunk(out, &len, "IDAT", z, (uint32_t)zl);
    png_chunk(out, &len, "IEND", NULL, 0);
    free(raw);
    free(z);
    return len;
}

/* A synthetic in-memory dataset: n images h x w x c of seeded noise, K classes. */
static void make_dataset(struct ofa_dataset *ds, int n, int h, int w, int c, int K, int nval)
{
    memset(ds, 0, sizeof *ds);
    ds->num_classes = K;
    ds->class_names = calloc((size_t)K, sizeof *ds->class_names);
    for (int k = 0; k < K; k++)
        snprintf(ds->class_names[k], sizeof ds->class_names[k], "class%d", k);
    snprintf(ds->source, sizeof ds->source, "synthetic");
    struct ofa_rng r;
    ofa_rng_seed(&r, 42);
    struct ofa_images *ims[2] = {&ds->train, &ds->test};
    for (int s = 0; s < 2; s++) {
        struct ofa_images *im = ims[s];
        im->n = s ? n / 4 : n;
        im->h = h;
        im->w = w;
        im->c = c;
        size_t np = (size_t)im->n * (size_t)h * (size_t)w * (size_t)c;
        im->pixels = malloc(np);
        im->labels = malloc(sizeof(int) * (size_t)im->n);
        for (size_t i = 0; i < np; i++)
            im->pixels[i] = (uint8_t)ofa_rng_below(&r, 256);
        for (int i = 0; i < im->n; i++)
            im->labels[i] = (int)ofa_rng_below(&r, (uint32_t)K);
    }
    struct ofa_error err;
    ck_assert_int_eq(ofa_dataset_split(ds, nval, 7, &err), 0);
}

static void check_same_images(const struct ofa_images *a, const struct ofa_images *b)
{
    ck_assert_int_eq(a->n, b->n);
    ck_assert_int_eq(a->h, b->h);
    ck_assert_int_eq(a->w, b->w);
    ck_assert_int_eq(a->c, b->c);
    size_t np = (size_t)a->n * (size_t)a->h * (size_t)a->w * (size_t)a->c;
    ck_assert(np == 0 || memcmp(a->pixels, b->pixels, np) == 0);
    ck_assert(a->n == 0 || memcmp(a->labels, b->labels, sizeof(int) * (size_t)a->n) == 0);
}

/* ---- IDX ---------------------------------------------------------------------- */

START_TEST(test_idx_plain_and_gzip_read_the_same_images)
{
    struct ofa_read_opts o = {0};
    struct ofa_dataset a, b;
    struct ofa_error err;
    make_idx_dir(tpath("plain"), 30, 5, 4, 10, 0);
    make_idx_dir(tpath("gz"), 30, 5, 4, 10, 1);
    ck_assert_msg(ofa_data_read_source(tpath("plain"), &o, &a, &err) == 0, "%s", err.msg);
    ck_assert_msg(ofa_data_read_source(tpath("gz"), &o, &b, &err) == 0, "%s", err.msg);
    check_same_images(&a.train, &b.train);
    check_same_images(&a.test, &b.test);
    ck_assert_int_eq(a.train.n, 30);
    ck_assert_int_eq(a.train.h, 5);
    ck_assert_int_eq(a.train.w, 4);
    ck_assert_int_eq(a.train.c, 1);
    ck_assert_int_eq(a.train.pixels[7], 7 * 7);
    ck_assert_int_eq(a.train.labels[13], 3);
    ck_assert_int_eq(a.num_classes, 10);
    ofa_dataset_free(&a);
    ofa_dataset_free(&b);
}
END_TEST

START_TEST(test_idx_rejects_truncated_gzip)
{
    uint8_t px[200], buf[300], gz[600];
    for (int i = 0; i < 200; i++)
        px[i] = (uint8_t)(i * 37);
    uint32_t d[3] = {2, 10, 10};
    size_t n = gzip_bytes(gz, sizeof gz, buf, idx_bytes(buf, 3, d, px, 200));
    struct ofa_images im;
    struct ofa_error err;
    /* Cut inside the deflate data, and inside the 8-byte trailer. */
    ck_assert_int_eq(ofa_idx_parse_images(gz, n / 2, "cut.gz", &im, &err), -1);
    ASSERT_ERR_CONTAINS(err, "truncated");
    ck_assert_str_eq(err.file, "cut.gz");
    ck_assert_int_eq(ofa_idx_parse_images(gz, n - 3, "cut.gz", &im, &err), -1);
    ASSERT_ERR_CONTAINS(err, "truncated");
    ck_assert_int_eq(ofa_idx_parse_images(gz, n, "ok.gz", &im, &err), 0);
    ofa_images_free(&im);
}
END_TEST

START_TEST(test_idx_rejects_corrupt_gzip)
{
    uint8_t px[400], buf[500], gz[1000];
    for (int i = 0; i < 400; i++)
        px[i] = (uint8_t)(i * i);
    uint32_t d[3] = {4, 10, 10};
    size_t n = gzip_bytes(gz, sizeof gz, buf, idx_bytes(buf, 3, d, px, 400));
    struct ofa_images im;
    struct ofa_error err;
    int rejected = 0;
    /* Every single-byte corruption of the deflate body or the CRC trailer
     * is caught (by inflate or by the CRC-32/size check). */
    for (size_t pos = 10; pos < n; pos++) {
        uint8_t save = gz[pos];
        gz[pos] ^= 0x55;
        if (ofa_idx_parse_images(gz, n, "bad.gz", &im, &err) == 0) {
            ofa_images_free(&im);
        } else {
            rejected++;
            ck_assert_msg(strstr(err.msg, "gzip") || strstr(err.msg, "truncated") ||
                          strstr(err.msg, "magic") || strstr(err.msg, "dimension") ||
                          strstr(err.msg, "longer") || strstr(err.msg, "hold") ||
                          strstr(err.msg, "type"), "unexpected message %s", err.msg);
        }
        gz[pos] = save;
    }
    ck_assert_int_eq(rejected, (int)(n - 10));
    /* Trailing garbage after the stream. */
    gz[n] = 'x';
    ck_assert_int_eq(ofa_idx_parse_images(gz, n + 1, "tail.gz", &im, &err), -1);
    ASSERT_ERR_CONTAINS(err, "trailing garbage");
}
END_TEST

START_TEST(test_idx_rejects_wrong_magic_and_type)
{
    uint8_t px[8] = {0}, buf[64];
    uint32_t d[1] = {8};
    size_t n = idx_bytes(buf, 1, d, px, 8);
    struct ofa_images im;
    struct ofa_error err;
    int *lab, nl;
    buf[0] = 0x1f; /* not gzip either: 0x1f 0x00 */
    ck_assert_int_eq(ofa_idx_parse_labels(buf, n, "m", 10, &lab, &nl, &err), -1);
    ASSERT_ERR_CONTAINS(err, "wrong magic");
    buf[0] = 0;
    buf[2] = 0x0d; /* float */
    ck_assert_int_eq(ofa_idx_parse_labels(buf, n, "m", 10, &lab, &nl, &err), -1);
    ASSERT_ERR_CONTAINS(err, "element type");
    buf[2] = 8;
    /* A label file is not an image file. */
    ck_assert_int_eq(ofa_idx_parse_images(buf, n, "m", &im, &err), -1);
    ASSERT_ERR_CONTAINS(err, "dimensions");
    ck_assert_int_eq(ofa_idx_parse_labels(buf, 3, "short", 10, &lab, &nl, &err), -1);
    ASSERT_ERR_CONTAINS(err, "truncated");
}
END_TEST

START_TEST(test_idx_rejects_dims_overflowing_or_disagreeing_with_file_size)
{
    uint8_t px[64] = {0}, buf[128], gz[256];
    struct ofa_images im;
    struct ofa_error err;
    /* Huge dimensions: refused before any allocation. */
    uint32_t huge[3] = {0xffffffffu, 4096, 4096};
    size_t n = idx_bytes(buf, 3, huge, px, 16);
    ck_assert_int_eq(ofa_idx_parse_images(buf, n, "huge", &im, &err), -1);
    uint32_t big[3] = {1000000, 28, 28};
    n = idx_bytes(buf, 3, big, px, 16);
    ck_assert_int_eq(ofa_idx_parse_images(buf, n, "big", &im, &err), -1);
    ASSERT_ERR_CONTAINS(err, "can only hold");
    /* A gzip "bomb" header: 1e6 x 28 x 28 from 60 compressed bytes. */
    size_t g = gzip_bytes(gz, sizeof gz, buf, n);
    ck_assert_int_eq(ofa_idx_parse_images(gz, g, "big.gz", &im, &err), -1);
    ASSERT_ERR_CONTAINS(err, "can only hold");
    /* Fewer and more bytes than the header says. */
    uint32_t d[3] = {2, 4, 4};
    n = idx_bytes(buf, 3, d, px, 31);
    ck_assert_int_eq(ofa_idx_parse_images(buf, n, "short", &im, &err), -1);
    n = idx_bytes(buf, 3, d, px, 33);
    ck_assert_int_eq(ofa_idx_parse_images(buf, n, "long", &im, &err), -1);
    ASSERT_ERR_CONTAINS(err, "trailing");
    g = gzip_bytes(gz, sizeof gz, buf, n);
    ck_assert_int_eq(ofa_idx_parse_images(gz, g, "long.gz", &im, &err), -1);
    ASSERT_ERR_CONTAINS(err, "longer than the header");
    /* Zero dimension. */
    uint32_t z[3] = {2, 0, 4};
    n = idx_bytes(buf, 3, z, px, 0);
    ck_assert_int_eq(ofa_idx_parse_images(buf, n, "zero", &im, &err), -1);
    ASSERT_ERR_CONTAINS(err, "zero");
}
END_TEST

START_TEST(test_idx_rejects_label_count_mismatch)
{
    make_idx_dir(tpath("d"), 10, 3, 3, 10, 0);
    uint8_t lab[9] = {0}, buf[64];
    uint32_t d[1] = {9};
    write_bytes(tpath("d/train-labels-idx1-ubyte"), buf, idx_bytes(buf, 1, d, lab, 9));
    struct ofa_read_opts o = {0};
    struct ofa_dataset ds;
    struct ofa_error err;
    ck_assert_int_eq(ofa_data_read_source(tpath("d"), &o, &ds, &err), -1);
    ASSERT_ERR_CONTAINS(err, "9 labels");
    ASSERT_ERR_CONTAINS(err, "10 images");
}
END_TEST

START_TEST(test_idx_rejects_label_out_of_range)
{
    uint8_t lab[5] = {0, 1, 10, 2, 3}, buf[64];
    uint32_t d[1] = {5};
    size_t n = idx_bytes(buf, 1, d, lab, 5);
    int *l, nl;
    struct ofa_error err;
    ck_assert_int_eq(ofa_idx_parse_labels(buf, n, "lab", 10, &l, &nl, &err), -1);
    ASSERT_ERR_CONTAINS(err, "label 10 of image 2 is out of range");
    ck_assert_int_eq(err.offset, 10);
    ck_assert_int_eq(ofa_idx_parse_labels(buf, n, "lab", 11, &l, &nl, &err), 0);
    ck_assert_int_eq(nl, 5);
    ck_assert_int_eq(l[2], 10);
    free(l);
}
END_TEST

START_TEST(test_idx_missing_file_is_named)
{
    make_idx_dir(tpath("d"), 4, 3, 3, 10, 0);
    ck_assert_int_eq(unlink(tpath("d/t10k-labels-idx1-ubyte")), 0);
    struct ofa_read_opts o = {0};
    struct ofa_dataset ds;
    struct ofa_error err;
    ck_assert_int_eq(ofa_data_read_source(tpath("d"), &o, &ds, &err), -1);
    ck_assert(strstr(err.file, "t10k-labels-idx1-ubyte") != NULL);
    ASSERT_ERR_CONTAINS(err, "cannot open");
}
END_TEST

/* ---- CIFAR -------------------------------------------------------------------- */

START_TEST(test_cifar_records_are_transposed_to_hwc)
{
    size_t rec = 3074;
    uint8_t *buf = calloc(2, rec);
    for (int r = 0; r < 2; r++) {
        buf[r * rec] = 3;
        buf[r * rec + 1] = (uint8_t)(50 + r);
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < 1024; p++)
                buf[r * rec + 2 + (size_t)c * 1024 + (size_t)p] = (uint8_t)(c * 80 + (p & 63) + r);
    }
    struct ofa_images im = {0};
    struct ofa_error err;
    ck_assert_int_eq(ofa_cifar_parse(buf, 2 * rec, "c100", 1, &im, &err), 0);
    ck_assert_int_eq(im.n, 2);
    ck_assert_int_eq(im.labels[1], 51);
    ck_assert_int_eq(im.pixels[3072 + 5 * 3 + 2], 2 * 80 + 5 + 1);
    /* Appending a second batch. */
    ck_assert_int_eq(ofa_cifar_parse(buf, 2 * rec, "c100", 1, &im, &err), 0);
    ck_assert_int_eq(im.n, 4);
    ofa_images_free(&im);
    /* The same bytes are not a whole number of CIFAR-10 records. */
    ck_assert_int_eq(ofa_cifar_parse(buf, 2 * rec, "c10", 0, &im, &err), -1);
    ASSERT_ERR_CONTAINS(err, "multiple of the CIFAR-10 record size 3073");
    free(buf);
}
END_TEST

START_TEST(test_cifar_rejects_partial_record_and_bad_labels)
{
    uint8_t *buf = calloc(2, 3073);
    struct ofa_images im = {0};
    struct ofa_error err;
    ck_assert_int_eq(ofa_cifar_parse(buf, 3073 + 100, "part", 0, &im, &err), -1);
    ck_assert_int_eq(ofa_cifar_parse(buf, 0, "empty", 0, &im, &err), -1);
    buf[3073] = 10;
    ck_assert_int_eq(ofa_cifar_parse(buf, 2 * 3073, "lab", 0, &im, &err), -1);
    ASSERT_ERR_CONTAINS(err, "label 10 of record 1 is out of range [0, 10)");
    ck_assert_int_eq(err.offset, 3073);
    ck_assert_int_eq(im.n, 0);
    free(buf);
}
END_TEST

START_TEST(test_cifar10_folder_reads_batches_and_names)
{
    mkdir_p(tpath("c10"));
    uint8_t *buf = calloc(3, 3073);
    for (int r = 0; r < 3; r++)
        buf[r * 3073] = (uint8_t)(r * 3);
    for (int b = 1; b <= 5; b++) {
        char name[64];
        snprintf(name, sizeof name, "c10/data_batch_%d.bin", b);
        write_bytes(tpath(name), buf, 3 * 3073);
    }
    write_bytes(tpath("c10/test_batch.bin"), buf, 3073);
    const char names[] = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n\n";
    write_bytes(tpath("c10/batches.meta.txt"), names, strlen(names));
    struct ofa_read_opts o = {0};
    struct ofa_dataset ds;
    struct ofa_error err;
    ck_assert_msg(ofa_data_read_source(tpath("c10"), &o, &ds, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(ds.train.n, 15);
    ck_assert_int_eq(ds.test.n, 1);
    ck_assert_int_eq(ds.train.labels[14], 6);
    ck_assert_str_eq(ds.class_names[9], "j");
    ofa_dataset_free(&ds);
    /* A truncated batch is named. */
    write_bytes(tpath("c10/data_batch_4.bin"), buf, 3 * 3073 - 1);
    ck_assert_int_eq(ofa_data_read_source(tpath("c10"), &o, &ds, &err), -1);
    ck_assert(strstr(err.file, "data_batch_4.bin") != NULL);
    free(buf);
}
END_TEST

/* ---- PNG ---------------------------------------------------------------------- */

START_TEST(test_png_decodes_every_colour_type_and_depth)
{
    uint8_t png[4096];
    uint8_t *px;
    int h, w;
    struct ofa_error err;
    /* grey 8-bit 3x2 -> 1 and 3 channels */
    const uint8_t g8[6] = {0, 50, 100, 150, 200, 255};
    size_t n = png_bytes(png, 3, 2, 8, 0, g8, 3, NULL, 0, NULL, 0);
    ck_assert_int_eq(ofa_png_peek_channels(png, n), 1);
    ck_assert_int_eq(ofa_png_decode(png, n, "g8", 1, &px, &h, &w, &err), 0);
    ck_assert_int_eq(h, 2);
    ck_assert_int_eq(w, 3);
    ck_assert_mem_eq(px, g8, 6);
    free(px);
    ck_assert_int_eq(ofa_png_decode(png, n, "g8", 3, &px, &h, &w, &err), 0);
    ck_assert_int_eq(px[3 * 4 + 0], 200);
    ck_assert_int_eq(px[3 * 4 + 2], 200);
    free(px);
    /* grey 1-bit 9x1: bits 1000 0000 1 -> 255 0 ... 0 255 */
    const uint8_t g1[2] = {0x80, 0x80};
    n = png_bytes(png, 9, 1, 1, 0, g1, 2, NULL, 0, NULL, 0);
    ck_assert_int_eq(ofa_png_decode(png, n, "g1", 1, &px, &h, &w, &err), 0);
    ck_assert_int_eq(px[0], 255);
    ck_assert_int_eq(px[1], 0);
    ck_assert_int_eq(px[8], 255);
    free(px);
    /* grey 16-bit 2x1: high byte kept */
    const uint8_t g16[4] = {0x12, 0x34, 0xab, 0xcd};
    n = png_bytes(png, 2, 1, 16, 0, g16, 4, NULL, 0, NULL, 0);
    ck_assert_int_eq(ofa_png_decode(png, n, "g16", 1, &px, &h, &w, &err), 0);
    ck_assert_int_eq(px[0], 0x12);
    ck_assert_int_eq(px[1], 0xab);
    free(px);
    /* grey+alpha 2x1 -> 1 channel (alpha dropped), 4 channels (alpha kept) */
    const uint8_t ga[4] = {10, 20, 30, 40};
    n = png_bytes(png, 2, 1, 8, 4, ga, 4, NULL, 0, NULL, 0);
    ck_assert_int_eq(ofa_png_decode(png, n, "ga", 1, &px, &h, &w, &err), 0);
    ck_assert_int_eq(px[0], 10);
    ck_assert_int_eq(px[1], 30);
    free(px);
    ck_assert_int_eq(ofa_png_decode(png, n, "ga", 4, &px, &h, &w, &err), 0);
    const uint8_t ga4[8] = {10, 10, 10, 20, 30, 30, 30, 40};
    ck_assert_mem_eq(px, ga4, 8);
    free(px);
    /* RGB 1x1 -> grey uses luma; -> RGBA adds opaque alpha */
    const uint8_t rgb[3] = {255, 0, 0};
    n = png_bytes(png, 1, 1, 8, 2, rgb, 3, NULL, 0, NULL, 0);
    ck_assert_int_eq(ofa_png_peek_channels(png, n), 3);
    ck_assert_int_eq(ofa_png_decode(png, n, "rgb", 1, &px, &h, &w, &err), 0);
    ck_assert_msg(px[0] >= 50 && px[0] <= 80, "luma of pure red is %d", px[0]);
    free(px);
    ck_assert_int_eq(ofa_png_decode(png, n, "rgb", 4, &px, &h, &w, &err), 0);
    ck_assert_int_eq(px[3], 255);
    free(px);
    /* RGBA 16-bit 1x1 -> RGB */
    const uint8_t rgba16[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    n = png_bytes(png, 1, 1, 16, 6, rgba16, 8, NULL, 0, NULL, 0);
    ck_assert_int_eq(ofa_png_decode(png, n, "rgba16", 3, &px, &h, &w, &err), 0);
    ck_assert_int_eq(px[0], 1);
    ck_assert_int_eq(px[1], 3);
    ck_assert_int_eq(px[2], 5);
    free(px);
    /* palette 4-bit with tRNS: indices 1, 0 */
    const uint8_t pal[6] = {9, 8, 7, 100, 110, 120}, trns[1] = {0}, idx[1] = {0x10};
    n = png_bytes(png, 2, 1, 4, 3, idx, 1, pal, 6, trns, 1);
    ck_assert_int_eq(ofa_png_decode(png, n, "pal", 3, &px, &h, &w, &err), 0);
    const uint8_t pal3[6] = {100, 110, 120, 9, 8, 7};
    ck_assert_mem_eq(px, pal3, 6);
    free(px);
    ck_assert_int_eq(ofa_png_decode(png, n, "pal", 4, &px, &h, &w, &err), 0);
    ck_assert_int_eq(px[3], 255);
    ck_assert_int_eq(px[7], 0);
    free(px);
}
END_TEST

START_TEST(test_png_rejections_name_the_problem)
{
    uint8_t png[1024];
    uint8_t *px;
    int h, w;
    struct ofa_error err;
    const uint8_t g8[4] = {1, 2, 3, 4};
    size_t n = png_bytes(png, 2, 2, 8, 0, g8, 2, NULL, 0, NULL, 0);
    /* Not a PNG at all. */
    ck_assert_int_eq(ofa_png_decode((const uint8_t *)"hello world", 11, "t.txt", 1, &px, &h, &w,
                                    &err), -1);
    ASSERT_ERR_CONTAINS(err, "not a PNG");
    ck_assert_str_eq(err.file, "t.txt");
    /* Truncated. */
    ck_assert_int_eq(ofa_png_decode(png, n - 20, "cut.png", 1, &px, &h, &w, &err), -1);
    ASSERT_ERR_CONTAINS(err, "libpng");
    /* Bad CRC in IHDR. */
    png[29] ^= 1;
    ck_assert_int_eq(ofa_png_decode(png, n, "crc.png", 1, &px, &h, &w, &err), -1);
    ASSERT_ERR_CONTAINS(err, "libpng");
    png[29] ^= 1;
    /* Corrupt IDAT data (CRC fixed up so that zlib sees it). */
    uint8_t bad[1024];
    uint8_t junk[40];
    memset(junk, 0xa5, sizeof junk);
    size_t m = png_bytes(bad, 2, 2, 8, 0, g8, 2, NULL, 0, NULL, 0);
    (void)m;
    size_t len = 33;
    memcpy(bad, png, 33);
    png_chunk(bad, &len, "IDAT", junk, sizeof junk);
    png_chunk(bad, &len, "IEND", NULL, 0);
    ck_assert_int_eq(ofa_png_decode(bad, len, "zlib.png", 1, &px, &h, &w, &err), -1);
    ASSERT_ERR_CONTAINS(err, "libpng");
    /* A header claiming 4000x4000 in a 60-byte file: refused before allocating. */
    n = png_bytes(png, 4000, 4000, 8, 2, g8, 0, NULL, 0, NULL, 0);
    ck_assert_int_eq(ofa_png_decode(png, n, "huge.png", 3, &px, &h, &w, &err), -1);
    ASSERT_ERR_CONTAINS(err, "larger than the file");
    /* Over the side limit. */
    n = png_bytes(png, 100000, 1, 8, 0, g8, 0, NULL, 0, NULL, 0);
    ck_assert_int_eq(ofa_png_decode(png, n, "wide.png", 1, &px, &h, &w, &err), -1);
}
END_TEST

/* Write a grey PNG of h x w filled with v into dir/name. */
static void put_png(const char *path, int h, int w, uint8_t v)
{
    uint8_t *rows = malloc((size_t)h * (size_t)w), *png = malloc((size_t)h * (size_t)w * 2 + 1024);
    memset(rows, v, (size_t)h * (size_t)w);
    size_t n = png_bytes(png, (uint32_t)w, (uint32_t)h, 8, 0, rows, (size_t)w, NULL, 0, NULL, 0);
    write_bytes(path, png, n);
    free(rows);
    free(png);
}

static void make_png_folder(const char *root)
{
    char p[1200];
    mkdir_p(root);
    const char *cls[3] = {"zebra", "ant", "moth"};
    for (int k = 0; k < 3; k++) {
        snprintf(p, sizeof p, "%s/%s", root, cls[k]);
        mkdir_p(p);
        for (int i = 0; i < 2 + k; i++) {
            snprintf(p, sizeof p, "%s/%s/img%d.png", root, cls[k], i);
            put_png(p, 6, 5, (uint8_t)(k * 100 + i));
        }
    }
}

START_TEST(test_png_folder_classes_are_sorted_folder_names)
{
    make_png_folder(tpath("f"));
    write_bytes(tpath("f/ant/.hidden"), "x", 1); /* hidden files are skipped */
    struct ofa_read_opts o = {.format = OFA_FMT_PNG};
    struct ofa_dataset ds;
    struct ofa_error err;
    ck_assert_msg(ofa_data_read_source(tpath("f"), &o, &ds, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(ds.num_classes, 3);
    ck_assert_str_eq(ds.class_names[0], "ant");
    ck_assert_str_eq(ds.class_names[1], "moth");
    ck_assert_str_eq(ds.class_names[2], "zebra");
    ck_assert_int_eq(ds.train.n, 9);
    ck_assert_int_eq(ds.train.h, 6);
    ck_assert_int_eq(ds.train.w, 5);
    ck_assert_int_eq(ds.train.c, 1);
    ck_assert_int_eq(ds.test.n, 0);
    /* ant = k 1 in creation order: values 100..102, label 0 */
    ck_assert_int_eq(ds.train.labels[0], 0);
    ck_assert_int_eq(ds.train.pixels[0], 100);
    ck_assert_int_eq(ds.train.labels[8], 2);
    ck_assert_int_eq(ds.train.pixels[8 * 30], 1);
    ofa_dataset_free(&ds);
    /* Requested channels and resizing. */
    o.channels = 3;
    o.height = 12;
    o.width = 10;
    ck_assert_msg(ofa_data_read_source(tpath("f"), &o, &ds, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(ds.train.c, 3);
    ck_assert_int_eq(ds.train.h, 12);
    ck_assert_int_eq(ds.train.pixels[12 * 10 * 3 - 1], 100);
    ofa_dataset_free(&ds);
}
END_TEST

START_TEST(test_png_folder_rejects_empty_class_folder)
{
    make_png_folder(tpath("f"));
    mkdir_p(tpath("f/empty"));
    struct ofa_read_opts o = {.format = OFA_FMT_PNG};
    struct ofa_dataset ds;
    struct ofa_error err;
    ck_assert_int_eq(ofa_data_read_source(tpath("f"), &o, &ds, &err), -1);
    ASSERT_ERR_CONTAINS(err, "empty class folder");
    ck_assert(strstr(err.file, "f/empty") != NULL);
}
END_TEST

START_TEST(test_png_folder_rejects_non_image_file)
{
    make_png_folder(tpath("f"));
    write_bytes(tpath("f/moth/notes.txt"), "not an image\n", 13);
    struct ofa_read_opts o = {.format = OFA_FMT_PNG};
    struct ofa_dataset ds;
    struct ofa_error err;
    ck_assert_int_eq(ofa_data_read_source(tpath("f"), &o, &ds, &err), -1);
    ASSERT_ERR_CONTAINS(err, "not a PNG");
    ck_assert(strstr(err.file, "moth/notes.txt") != NULL);
    /* A stray file next to the class folders. */
    unlink(tpath("f/moth/notes.txt"));
    write_bytes(tpath("f/README"), "x", 1);
    ck_assert_int_eq(ofa_data_read_source(tpath("f"), &o, &ds, &err), -1);
    ASSERT_ERR_CONTAINS(err, "not a class folder");
}
END_TEST

START_TEST(test_png_folder_rejects_mixed_sizes_unless_resizing)
{
    make_png_folder(tpath("f"));
    put_png(tpath("f/moth/odd.png"), 7, 5, 3);
    struct ofa_read_opts o = {.format = OFA_FMT_PNG};
    struct ofa_dataset ds;
    struct ofa_error err;
    ck_assert_int_eq(ofa_data_read_source(tpath("f"), &o, &ds, &err), -1);
    ASSERT_ERR_CONTAINS(err, "mixed sizes");
    ASSERT_ERR_CONTAINS(err, "5x7");
    ck_assert(strstr(err.file, "moth/odd.png") != NULL);
    o.height = 4;
    o.width = 4;
    ck_assert_msg(ofa_data_read_source(tpath("f"), &o, &ds, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(ds.train.n, 10);
    ck_assert_int_eq(ds.train.pixels[0], 100); /* a constant image stays constant */
    ofa_dataset_free(&ds);
}
END_TEST

START_TEST(test_png_folder_rejects_unreadable_directory)
{
    make_png_folder(tpath("f"));
    struct ofa_read_opts o = {.format = OFA_FMT_PNG};
    struct ofa_dataset ds;
    struct ofa_error err;
    /* A class "folder" that cannot be listed. Root ignores permissions, so
     * a non-root run also checks the EACCES path. */
    if (geteuid() != 0) {
        ck_assert_int_eq(chmod(tpath("f/ant"), 0), 0);
        ck_assert_int_eq(ofa_data_read_source(tpath("f"), &o, &ds, &err), -1);
        chmod(tpath("f/ant"), 0755);
        ASSERT_ERR_CONTAINS(err, "cannot read the directory");
        ck_assert(strstr(err.file, "f/ant") != NULL);
    }
    ck_assert_int_eq(ofa_data_read_source(tpath("nonexistent"), &o, &ds, &err), -1);
    ASSERT_ERR_CONTAINS(err, "cannot access");
    write_bytes(tpath("plainfile"), "x", 1);
    ck_assert_int_eq(ofa_data_read_source(tpath("plainfile"), &o, &ds, &err), -1);
    ASSERT_ERR_CONTAINS(err, "must be a directory");
}
END_TEST

START_TEST(test_png_write_then_decode_round_trips)
{
    uint8_t img[4 * 3 * 3];
    for (int i = 0; i < 36; i++)
        img[i] = (uint8_t)(i * 7);
    struct ofa_error err;
    ck_assert_int_eq(ofa_png_write(tpath("a.png"), img, 4, 3, 3, &err), 0);
    uint8_t *buf, *px;
    size_t len;
    int h, w;
    ck_assert_int_eq(ofa_read_file(tpath("a.png"), &buf, &len, &err), 0);
    ck_assert_int_eq(ofa_png_decode(buf, len, "a.png", 3, &px, &h, &w, &err), 0);
    ck_assert_int_eq(h, 4);
    ck_assert_int_eq(w, 3);
    ck_assert_mem_eq(px, img, 36);
    free(px);
    free(buf);
    ck_assert_int_eq(ofa_png_write(tpath("nodir/a.png"), img, 4, 3, 3, &err), -1);
    ASSERT_ERR_CONTAINS(err, "cannot create");
}
END_TEST

/* ---- data.h5 ------------------------------------------------------------------ */

START_TEST(test_h5_prepare_then_load_round_trips)
{
    make_idx_dir(tpath("d"), 50, 6, 6, 10, 1);
    struct ofa_read_opts o = {0};
    struct ofa_dataset a, b;
    struct ofa_error err;
    ck_assert_int_eq(ofa_data_read_source(tpath("d"), &o, &a, &err), 0);
    ck_assert_int_eq(ofa_dataset_split(&a, 8, 123, &err), 0);
    ck_assert_msg(ofa_dataset_save(&a, tpath("data.h5"), &err) == 0, "%s", err.msg);
    ck_assert_msg(ofa_dataset_load(tpath("data.h5"), &b, &err) == 0, "%s", err.msg);
    check_same_images(&a.train, &b.train);
    check_same_images(&a.test, &b.test);
    ck_assert_int_eq(b.n_val, 8);
    ck_assert_int_eq(b.n_train, 42);
    ck_assert_mem_eq(a.val_index, b.val_index, 8 * sizeof(int));
    ck_assert_mem_eq(a.train_index, b.train_index, 42 * sizeof(int));
    ck_assert_uint_eq(b.split_seed, 123);
    ck_assert_str_eq(a.source, b.source);
    ck_assert_str_eq(b.class_names[3], "3");
    ck_assert_double_eq_tol(a.mean[0], b.mean[0], 1e-12);
    /* The split is a deterministic function of the seed, and differs by seed. */
    struct ofa_dataset c;
    ck_assert_int_eq(ofa_data_read_source(tpath("d"), &o, &c, &err), 0);
    ck_assert_int_eq(ofa_dataset_split(&c, 8, 123, &err), 0);
    ck_assert_mem_eq(a.val_index, c.val_index, 8 * sizeof(int));
    ck_assert_int_eq(ofa_dataset_split(&c, 8, 124, &err), 0);
    ck_assert(memcmp(a.val_index, c.val_index, 8 * sizeof(int)) != 0);
    ck_assert_int_eq(ofa_dataset_split(&c, 50, 1, &err), -1);
    /* The in-memory entry point agrees. */
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq(ofa_read_file(tpath("data.h5"), &buf, &len, &err), 0);
    ofa_dataset_free(&c);
    ck_assert_msg(ofa_dataset_load_image(buf, len, "mem", &c, &err) == 0, "%s", err.msg);
    check_same_images(&a.train, &c.train);
    free(buf);
    ofa_dataset_free(&a);
    ofa_dataset_free(&b);
    ofa_dataset_free(&c);
}
END_TEST

/* Save a small valid data.h5 at path. */
static void save_small(const char *path)
{
    struct ofa_dataset ds;
    struct ofa_error err;
    make_dataset(&ds, 40, 4, 4, 1, 5, 8);
    ck_assert_msg(ofa_dataset_save(&ds, path, &err) == 0, "%s", err.msg);
    ofa_dataset_free(&ds);
}

/* Replace dataset `name` of an existing file with one of the given type and dims. */
static void replace_dataset(const char *path, const char *name, hid_t type, int rank,
                            const hsize_t *dims, int fill)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert(f >= 0);
    if (H5Lexists(f, name, H5P_DEFAULT) > 0)
        ck_assert(H5Ldelete(f, name, H5P_DEFAULT) >= 0);
    if (rank > 0) {
        hid_t sp = H5Screate_simple(rank, dims, NULL);
        hid_t d = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        ck_assert(d >= 0);
        hsize_t n = 1;
        for (int i = 0; i < rank; i++)
            n *= dims[i];
        int *v = malloc(sizeof(int) * n);
        for (hsize_t i = 0; i < n; i++)
            v[i] = fill >= 0 ? fill : (int)i;
        ck_assert(H5Dwrite(d, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
        free(v);
        H5Dclose(d);
        H5Sclose(sp);
    }
    H5Fclose(f);
    struct ofa_error err;
    ck_assert_msg(ofa_dataset_seal(path, &err) == 0, "%s", err.msg); /* as another tool would */
}

static void expect_load_error(const char *path, const char *needle)
{
    struct ofa_dataset ds;
    struct ofa_error err;
    ck_assert_int_eq(ofa_dataset_load(path, &ds, &err), -1);
    ck_assert_msg(strstr(err.msg, needle) != NULL, "message \"%s\" lacks \"%s\"", err.msg, needle);
    ck_assert_str_eq(err.file, path);
}

START_TEST(test_h5_rejects_missing_datasets)
{
    const char *p = tpath("m.h5");
    save_small(p);
    replace_dataset(p, "/train/labels", 0, 0, NULL, 0);
    expect_load_error(p, "missing dataset \"/train/labels\"");
    save_small(p);
    replace_dataset(p, "/split", 0, 0, NULL, 0);
    expect_load_error(p, "missing dataset \"/split/train\" (its group is missing)");
    save_small(p);
    replace_dataset(p, "/class_names", 0, 0, NULL, 0);
    expect_load_error(p, "missing dataset \"/class_names\"");
    save_small(p);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    H5Adelete(f, "format");
    H5Fclose(f);
    struct ofa_error err;
    ck_assert_int_eq(ofa_dataset_seal(p, &err), 0);
    expect_load_error(p, "missing root attribute \"format\"");
}
END_TEST

START_TEST(test_h5_rejects_mistyped_and_misshapen_datasets)
{
    const char *p = tpath("t.h5");
    hsize_t d4[4] = {40, 4, 4, 1}, d1[1] = {40}, d39[1] = {39};
    save_small(p);
    replace_dataset(p, "/train/images", H5T_IEEE_F32LE, 4, d4, 1);
    expect_load_error(p, "dataset \"/train/images\" has the wrong type: float of 4 bytes");
    save_small(p);
    replace_dataset(p, "/train/images", H5T_STD_I16LE, 4, d4, 1);
    expect_load_error(p, "\"/train/images\" has the wrong type");
    save_small(p);
    replace_dataset(p, "/train/labels", H5T_IEEE_F64LE, 1, d1, 1);
    expect_load_error(p, "\"/train/labels\" has the wrong type");
    save_small(p);
    replace_dataset(p, "/train/labels", H5T_STD_I32LE, 1, d39, 1);
    expect_load_error(p, "\"/train/labels\" has shape (39) but \"/train/images\" has shape "
                         "(40, 4, 4, 1)");
    save_small(p);
    replace_dataset(p, "/train/images", H5T_STD_U8LE, 1, d1, 1);
    expect_load_error(p, "\"/train/images\" has rank 1, expected 4");
    hsize_t d2[4] = {40, 4, 4, 2};
    save_small(p);
    replace_dataset(p, "/train/images", H5T_STD_U8LE, 4, d2, 1);
    expect_load_error(p, "C in {1, 3, 4}");
    /* Labels out of range, indices out of range or overlapping. */
    save_small(p);
    replace_dataset(p, "/train/labels", H5T_STD_I32LE, 1, d1, 5);
    expect_load_error(p, "label 5 of image 0 is out of range [0, 5)");
    hsize_t d32[1] = {32}, d8[1] = {8};
    save_small(p);
    replace_dataset(p, "/split/val", H5T_STD_I32LE, 1, d8, 40);
    expect_load_error(p, "index 40 at position 0 is out of range");
    save_small(p);
    replace_dataset(p, "/split/train", H5T_STD_I32LE, 1, d32, -1); /* 0..31 */
    replace_dataset(p, "/split/val", H5T_STD_I32LE, 1, d8, 3);
    expect_load_error(p, "appears twice");
    /* A file that is not HDF5 at all, and an empty one. */
    write_bytes(p, "definitely not hdf5", 19);
    expect_load_error(p, "not a data.h5 written by ofa-data (19 bytes)");
    write_bytes(p, "", 0);
    expect_load_error(p, "not a data.h5 written by ofa-data (0 bytes)");
}
END_TEST

START_TEST(test_h5_failed_save_leaves_no_file)
{
    struct ofa_dataset ds;
    struct ofa_error err;
    make_dataset(&ds, 20, 4, 4, 1, 3, 4);
    ck_assert_int_eq(ofa_dataset_save(&ds, tpath("missing/data.h5"), &err), -1);
    ASSERT_ERR_CONTAINS(err, "temporary file");
    /* An existing file is replaced whole, and no temporary remains. */
    write_bytes(tpath("data.h5"), "old", 3);
    ck_assert_int_eq(ofa_dataset_save(&ds, tpath("data.h5"), &err), 0);
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "test $(ls -A '%s' | wc -l) -eq 1", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
    ofa_dataset_free(&ds);
}
END_TEST

START_TEST(test_h5_corruption_is_caught_before_hdf5_parses)
{
    const char *p = tpath("c.h5");
    save_small(p);
    uint8_t *good, *buf;
    size_t len, n;
    struct ofa_error err;
    struct ofa_dataset ds;
    ck_assert_int_eq(ofa_read_file(p, &good, &len, &err), 0);
    buf = malloc(len);
    /* Any changed byte after the user block: checksum. */
    for (size_t pos = 512; pos < len; pos += 251) {
        memcpy(buf, good, len);
        buf[pos] ^= 0x20;
        write_bytes(p, buf, len);
        expect_load_error(p, "checksum mismatch");
        ck_assert_int_eq(ofa_dataset_load_image(buf, len, "mem", &ds, &err), -1);
        ASSERT_ERR_CONTAINS(err, "checksum mismatch");
    }
    /* Truncated, or a damaged header. */
    write_bytes(p, good, len - 100);
    expect_load_error(p, "truncated");
    memcpy(buf, good, len);
    buf[3] = 'X';
    write_bytes(p, buf, len);
    expect_load_error(p, "not a data.h5 written by ofa-data");
    /* Fuzzing regression: this file (from an earlier format without the
     * checksum) made libhdf5 1.10.8 read out of bounds in H5Aexists. */
    const char *src = getenv("OFA_SRCDIR");
    char fx[1200];
    snprintf(fx, sizeof fx, "%s/tests/fixtures/data/fuzz-h5-libhdf5-attr-overflow.h5",
             src ? src : ".");
    free(buf);
    if (ofa_read_file(fx, &buf, &n, &err) == 0) {
        ck_assert_int_eq(ofa_dataset_load_image(buf, n, fx, &ds, &err), -1);
        ck_assert_int_eq(ofa_dataset_load(fx, &ds, &err), -1);
        ASSERT_ERR_CONTAINS(err, "not a data.h5 written by ofa-data");
    } else {
        fprintf(stderr, "note: %s not found (set OFA_SRCDIR)\n", fx);
        buf = malloc(1);
    }
    /* A plain HDF5 file without a user block cannot be sealed. */
    hid_t f = H5Fcreate(tpath("plain.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(f);
    ck_assert_int_eq(ofa_dataset_seal(tpath("plain.h5"), &err), -1);
    ASSERT_ERR_CONTAINS(err, "user block");
    expect_load_error(tpath("plain.h5"), "not a data.h5");
    free(buf);
    free(good);
}
END_TEST

/* ---- Fashion-MNIST ------------------------------------------------------------ */

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

START_TEST(test_fashion_mnist_counts_and_known_image)
{
    struct stat st;
    if (stat(OFA_FASHION_MNIST_DIR "/train-images-idx3-ubyte.gz", &st) != 0) {
        fprintf(stderr, "note: %s absent (Debian package dataset-fashion-mnist); "
                "test_fashion_mnist_counts_and_known_image skipped\n", OFA_FASHION_MNIST_DIR);
        return;
    }
    struct ofa_read_opts o = {0};
    struct ofa_dataset ds;
    struct ofa_error err;
    ck_assert_msg(ofa_data_read_source("fashion-mnist", &o, &ds, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(ds.train.n, 60000);
    ck_assert_int_eq(ds.test.n, 10000);
    ck_assert_int_eq(ds.train.h, 28);
    ck_assert_int_eq(ds.train.w, 28);
    ck_assert_int_eq(ds.train.c, 1);
    ck_assert_int_eq(ds.num_classes, 10);
    ck_assert_str_eq(ds.class_names[9], "Ankle boot");
    int tr[10] = {0}, te[10] = {0};
    for (int i = 0; i < ds.train.n; i++)
        tr[ds.train.labels[i]]++;
    for (int i = 0; i < ds.test.n; i++)
        te[ds.test.labels[i]]++;
    for (int k = 0; k < 10; k++) {
        ck_assert_int_eq(tr[k], 6000);
        ck_assert_int_eq(te[k], 1000);
    }
    /* Reference values computed once with Python's gzip module from the
     * Debian files: label byte 8+i of train-labels, FNV-1a-64 and byte sum of
     * the 784 bytes at offset 16+784*i of train-images (i = 0 and 59999), and
     * the first test image's label and byte sum. */
    ck_assert_int_eq(ds.train.labels[0], 9);
    ck_assert_uint_eq(fnv1a(ds.train.pixels, 784), 0x01fdf72590541338ULL);
    ck_assert_int_eq(ds.train.labels[59999], 5);
    ck_assert_uint_eq(fnv1a(ds.train.pixels + 59999 * 784, 784), 0xa8cade07e861679dULL);
    long sum = 0;
    for (int i = 0; i < 784; i++)
        sum += ds.test.pixels[i];
    ck_assert_int_eq(sum, 33456);
    ck_assert_int_eq(ds.test.labels[0], 9);
    /* The default split: 55,000 + 5,000. */
    ck_assert_int_eq(ofa_dataset_split(&ds, 5000, 0, &err), 0);
    ck_assert_int_eq(ds.n_train + ds.n_val, 60000);
    ck_assert_double_eq_tol(ds.mean[0], 0.2860, 2e-3);
    ck_assert_double_eq_tol(ds.std[0], 0.3530, 2e-3);
    ofa_dataset_free(&ds);
}
END_TEST

/* ---- loader and augmentation ------------------------------------------------------ */

static int res_cycle(void *ctx, int epoch, int index)
{
    (void)ctx;
    static const int r[3] = {20, 24, 28};
    return r[(epoch + index) % 3];
}

static void full_aug(struct ofa_aug *a)
{
    ofa_aug_default(a);
    a->crop_pad = 3;
    a->flip = 1;
    a->erase_prob = 0.5f;
}

START_TEST(test_loader_batches_are_pure_functions_of_seed_epoch_index_resolution)
{
    struct ofa_dataset ds;
    make_dataset(&ds, 300, 28, 28, 1, 10, 44);
    struct ofa_loader_config cfg;
    ofa_loader_config_default(&cfg);
    cfg.batch_size = 32;
    cfg.seed = 99;
    cfg.res_fn = res_cycle;
    cfg.max_resolution = 28;
    full_aug(&cfg.aug);
    struct ofa_loader *l = ofa_loader_create(&ds, &cfg);
    int nb = ofa_loader_num_batches(l);
    ck_assert_int_eq(nb, 256 / 32);
    size_t xs = 32 * 28 * 28;
    float *x1 = malloc(xs * sizeof(float)), *x2 = malloc(xs * sizeof(float));
    int y1[32], y2[32];
    for (int epoch = 0; epoch < 2; epoch++) {
        ofa_loader_start_epoch(l, epoch);
        for (int b = 0; b < nb; b++) {
            const struct ofa_batch *bt = ofa_loader_next(l);
            ck_assert_ptr_nonnull(bt);
            ck_assert_int_eq(bt->index, b);
            ck_assert_int_eq(bt->res, res_cycle(NULL, epoch, b));
            size_t n = (size_t)bt->n * (size_t)bt->res * (size_t)bt->res;
            tu_threads(1);
            ofa_loader_fill(l, epoch, b, bt->res, x1, y1, 2);
            tu_threads(2);
            ofa_loader_fill(l, epoch, b, bt->res, x2, y2, 2);
            ck_assert_mem_eq(bt->x, x1, n * sizeof(float));
            ck_assert_mem_eq(x1, x2, n * sizeof(float));
            ck_assert_mem_eq(bt->y, y1, 32 * sizeof(int));
            ck_assert_mem_eq(y1, y2, 32 * sizeof(int));
        }
        ck_assert_ptr_null(ofa_loader_next(l));
    }
    /* Restarting an epoch (mid-way through another) gives the same batches. */
    ofa_loader_start_epoch(l, 1);
    (void)ofa_loader_next(l);
    ofa_loader_start_epoch(l, 0);
    const struct ofa_batch *bt = ofa_loader_next(l);
    ofa_loader_fill(l, 0, 0, bt->res, x1, y1, 0);
    ck_assert_mem_eq(bt->x, x1, (size_t)bt->n * bt->res * bt->res * sizeof(float));
    /* Stopping one batch short leaves a prepared batch of the old epoch and
     * one run ahead for the next: both must be handled (no stale batch, no
     * deadlock). */
    ofa_loader_start_epoch(l, 5);
    for (int b = 0; b < nb - 1; b++)
        ck_assert_ptr_nonnull(ofa_loader_next(l));
    nanosleep(&(struct timespec){0, 20000000}, NULL);
    ofa_loader_start_epoch(l, 6);
    for (int b = 0; b < nb; b++) {
        const struct ofa_batch *bb = ofa_loader_next(l);
        ck_assert_int_eq(bb->epoch, 6);
        ck_assert_int_eq(bb->index, b);
        ofa_loader_fill(l, 6, b, bb->res, x1, y1, 0);
        ck_assert_mem_eq(bb->x, x1, (size_t)bb->n * bb->res * bb->res * sizeof(float));
    }
    ck_assert_ptr_null(ofa_loader_next(l));
    bt = NULL;
    ofa_loader_start_epoch(l, 0);
    bt = ofa_loader_next(l);
    ofa_loader_fill(l, 0, 0, bt->res, x1, y1, 0);
    /* A second loader with a different seed gives different batches. */
    cfg.seed = 100;
    struct ofa_loader *l2 = ofa_loader_create(&ds, &cfg);
    ofa_loader_fill(l2, 0, 0, bt->res, x2, y2, 0);
    ck_assert(memcmp(x1, x2, (size_t)bt->n * bt->res * bt->res * sizeof(float)) != 0);
    ofa_loader_free(l2);
    ofa_loader_free(l);
    free(x1);
    free(x2);
    ofa_dataset_free(&ds);
}
END_TEST

/* keep_from/keep_n (a process's part of each batch under MPI): the images
 * of the part are those of the whole batch, at the same places. */
START_TEST(test_loader_part_of_a_batch_matches_the_whole)
{
    struct ofa_dataset ds;
    make_dataset(&ds, 200, 28, 28, 1, 10, 45);
    struct ofa_loader_config cfg;
    ofa_loader_config_default(&cfg);
    cfg.batch_size = 32;
    cfg.seed = 7;
    cfg.resolution = 28;
    full_aug(&cfg.aug);
    struct ofa_loader *whole = ofa_loader_create(&ds, &cfg);
    cfg.keep_from = 16;
    cfg.keep_n = 8;
    struct ofa_loader *part = ofa_loader_create(&ds, &cfg);
    const size_t img = 28 * 28;
    for (int epoch = 0; epoch < 2; epoch++) {
        ofa_loader_start_epoch(whole, epoch);
        ofa_loader_start_epoch(part, epoch);
        for (int b = 0; b < ofa_loader_num_batches(whole); b++) {
            const struct ofa_batch *w = ofa_loader_next(whole), *p = ofa_loader_next(part);
            ck_assert_int_eq(p->n, w->n);
            ck_assert_mem_eq(p->x + 16 * img, w->x + 16 * img, 8 * img * sizeof(float));
            ck_assert_mem_eq(p->y + 16, w->y + 16, 8 * sizeof(int));
        }
    }
    ofa_loader_free(part);
    ofa_loader_free(whole);
    ofa_dataset_free(&ds);
}
END_TEST

START_TEST(test_loader_epoch_visits_each_sample_once)
{
    struct ofa_dataset ds;
    make_dataset(&ds, 100, 4, 4, 1, 3, 10);
    struct ofa_loader_config cfg;
    ofa_loader_config_default(&cfg);
    cfg.batch_size = 16;
    cfg.drop_last = 0;
    cfg.aug.normalize = 0;
    struct ofa_loader *l = ofa_loader_create(&ds, &cfg);
    ck_assert_int_eq(ofa_loader_num_batches(l), 6); /* 90 = 5 x 16 + 10 */
    int first[2] = {-1, -1};
    for (int epoch = 0; epoch < 2; epoch++) {
        int *seen = calloc(100, sizeof(int)), total = 0;
        ofa_loader_start_epoch(l, epoch);
        const struct ofa_batch *b;
        while ((b = ofa_loader_next(l)) != NULL) {
            for (int i = 0; i < b->n; i++) {
                /* Identify the image by its first pixel row (random bytes). */
                int found = -1;
                for (int k = 0; k < ds.n_train; k++) {
                    int j = ds.train_index[k], same = 1;
                    for (int p = 0; p < 16 && same; p++)
                        same = fabsf(b->x[i * 16 + p] - ds.train.pixels[j * 16 + p] / 255.0f) <
                               1e-6f;
                    if (same)
                        found = j;
                }
                ck_assert_int_ge(found, 0);
                ck_assert_int_eq(b->y[i], ds.train.labels[found]);
                seen[found]++;
                if (total++ == 0)
                    first[epoch] = found;
            }
        }
        ck_assert_int_eq(total, 90);
        for (int k = 0; k < ds.n_val; k++)
            ck_assert_int_eq(seen[ds.val_index[k]], 0);
        for (int k = 0; k < ds.n_train; k++)
            ck_assert_int_eq(seen[ds.train_index[k]], 1);
        free(seen);
    }
    ck_assert_int_ne(first[0], first[1]); /* reshuffled (for this seed) */
    ofa_loader_free(l);
    ofa_dataset_free(&ds);
}
END_TEST

/* Augment one 8x8 single-channel image with identity LUT (value = byte). */
static void augment_u8(float *out, const uint8_t *img, int res, const struct ofa_aug *a,
                       uint64_t seed)
{
    float lut[256], scratch[64];
    for (int v = 0; v < 256; v++)
        lut[v] = (float)v;
    struct ofa_rng r;
    ofa_rng_derive(&r, seed, 0, 0);
    ofa_augment_one(out, img, 8, 8, 1, res, a, lut, scratch, &r);
}

START_TEST(test_flip_twice_is_identity)
{
    uint8_t img[64], back[64];
    for (int i = 0; i < 64; i++)
        img[i] = (uint8_t)(1 + i * 3);
    struct ofa_aug a;
    ofa_aug_default(&a);
    a.flip = 1;
    int flips = 0;
    for (uint64_t s = 0; s < 64; s++) {
        float once[64], twice[64];
        augment_u8(once, img, 8, &a, s);
        int flipped = once[0] != img[0];
        flips += flipped;
        if (!flipped) {
            for (int i = 0; i < 64; i++)
                ck_assert_float_eq(once[i], img[i]);
            continue;
        }
        for (int i = 0; i < 64; i++)
            back[i] = (uint8_t)once[i];
        augment_u8(twice, back, 8, &a, s); /* same stream: flips again */
        for (int i = 0; i < 64; i++)
            ck_assert_float_eq(twice[i], img[i]);
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < 8; x++)
                ck_assert_float_eq(once[y * 8 + x], img[y * 8 + 7 - x]);
    }
    ck_assert_int_gt(flips, 16);
    ck_assert_int_lt(flips, 48);
}
END_TEST

START_TEST(test_crop_with_padding_is_a_zero_filled_shift)
{
    uint8_t img[64];
    for (int i = 0; i < 64; i++)
        img[i] = (uint8_t)(1 + i);
    struct ofa_aug a;
    ofa_aug_default(&a);
    a.crop_pad = 2;
    int hist[5][5] = {{0}};
    for (uint64_t s = 0; s < 400; s++) {
        float out[64];
        augment_u8(out, img, 8, &a, s);
        int match = 0;
        for (int dy = -2; dy <= 2 && !match; dy++)
            for (int dx = -2; dx <= 2 && !match; dx++) {
                int ok = 1;
                for (int y = 0; y < 8 && ok; y++)
                    for (int x = 0; x < 8 && ok; x++) {
                        int sy = y + dy, sx = x + dx;
                        float want = (sy < 0 || sy >= 8 || sx < 0 || sx >= 8) ? 0.0f
                                                                              : img[sy * 8 + sx];
                        ok = out[y * 8 + x] == want;
                    }
                if (ok) {
                    match = 1;
                    hist[dy + 2][dx + 2]++;
                }
            }
        ck_assert_msg(match, "seed %llu: output is not a padded shift",
                      (unsigned long long)s);
    }
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++)
            ck_assert_int_gt(hist[i][j], 0); /* every offset occurs */
}
END_TEST

START_TEST(test_random_erasing_zeroes_one_rectangle)
{
    uint8_t img[64];
    memset(img, 200, sizeof img);
    struct ofa_aug a;
    ofa_aug_default(&a);
    a.erase_prob = 1.0f;
    a.erase_min = 0.1f;
    a.erase_max = 0.3f;
    int erased = 0;
    for (uint64_t s = 0; s < 100; s++) {
        float out[64];
        augment_u8(out, img, 8, &a, s);
        int y0 = 8, y1 = -1, x0 = 8, x1 = -1, nz = 0;
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < 8; x++)
                if (out[y * 8 + x] == 0.0f) {
                    nz++;
                    y0 = y < y0 ? y : y0;
                    y1 = y > y1 ? y : y1;
                    x0 = x < x0 ? x : x0;
                    x1 = x > x1 ? x : x1;
                } else {
                    ck_assert_float_eq(out[y * 8 + x], 200.0f);
                }
        if (nz == 0)
            continue; /* ten attempts can all fail to fit */
        erased++;
        ck_assert_int_eq(nz, (y1 - y0 + 1) * (x1 - x0 + 1));
        ck_assert_int_le(nz, (int)(0.3f * 64 * 1.5f));
    }
    ck_assert_int_gt(erased, 80);
}
END_TEST

START_TEST(test_normalised_batch_has_zero_mean_unit_std)
{
    struct ofa_dataset ds;
    make_dataset(&ds, 600, 10, 10, 3, 4, 88);
    struct ofa_loader_config cfg;
    ofa_loader_config_default(&cfg);
    cfg.batch_size = 512; /* the whole train split: exactly the statistics' population */
    cfg.async = 0;
    struct ofa_loader *l = ofa_loader_create(&ds, &cfg);
    ofa_loader_start_epoch(l, 0);
    const struct ofa_batch *b = ofa_loader_next(l);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(b->n, 512);
    ck_assert_int_eq(b->c, 3);
    for (int c = 0; c < 3; c++) {
        double s = 0, s2 = 0;
        long n = (long)b->n * b->res * b->res;
        for (long i = 0; i < n; i++) {
            double v = b->x[i * 3 + c];
            s += v;
            s2 += v * v;
        }
        double m = s / n, sd = sqrt(s2 / n - m * m);
        ck_assert_double_eq_tol(m, 0.0, 1e-4);
        ck_assert_double_eq_tol(sd, 1.0, 1e-4);
    }
    ck_assert_ptr_null(ofa_loader_next(l));
    ofa_loader_free(l);
    ofa_dataset_free(&ds);
}
END_TEST

START_TEST(test_loader_resize_matches_bilinear_op)
{
    struct ofa_dataset ds;
    make_dataset(&ds, 40, 12, 12, 1, 2, 8);
    struct ofa_loader_config cfg;
    ofa_loader_config_default(&cfg);
    cfg.batch_size = 4;
    cfg.shuffle = 0;
    cfg.aug.normalize = 0;
    cfg.resolution = 8;
    cfg.async = 0;
    struct ofa_loader *l = ofa_loader_create(&ds, &cfg);
    ofa_loader_start_epoch(l, 0);
    const struct ofa_batch *b = ofa_loader_next(l);
    ck_assert_int_eq(b->res, 8);
    float in[144], want[64];
    int j = ds.train_index[1];
    for (int i = 0; i < 144; i++)
        in[i] = ds.train.pixels[j * 144 + i] / 255.0f;
    ofa_resize_bilinear_forward(want, in, 1, 12, 12, 8, 8, 1);
    ck_assert_float_eq_tol((float)tu_maxabs(b->x + 64, want, 64), 0.0f, 1e-6f);
    ofa_loader_free(l);
    ofa_dataset_free(&ds);
}
END_TEST

/* ---- device-variant transforms --------------------------------------------------- */

START_TEST(test_jpeg_q100_is_near_identity_and_lower_quality_changes_more)
{
    int H = 32, W = 32;
    uint8_t img[32 * 32 * 3], out[32 * 32 * 3];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++)
                img[(y * W + x) * 3 + c] = (uint8_t)(128 + 100 * sin(0.3 * x + 0.2 * y + c));
    struct ofa_error err;
    double prev = -1;
    const int qs[3] = {100, 75, 20};
    for (int k = 0; k < 3; k++) {
        ck_assert_int_eq(ofa_variant_jpeg(out, img, H, W, 3, qs[k], &err), 0);
        double e = 0;
        for (int i = 0; i < H * W * 3; i++)
            e += fabs((double)out[i] - img[i]);
        e /= H * W * 3;
        if (k == 0)
            ck_assert_msg(e < 1.5, "q100 mean abs error %g", e);
        else
            ck_assert_msg(e > prev, "q%d error %g not above %g", qs[k], e, prev);
        prev = e;
    }
    /* Grey, in place. */
    uint8_t g[32 * 32];
    for (int i = 0; i < 32 * 32; i++)
        g[i] = (uint8_t)(i * 5);
    ck_assert_int_eq(ofa_variant_jpeg(g, g, 32, 32, 1, 90, &err), 0);
}
END_TEST

START_TEST(test_noise_has_requested_std_and_is_seeded)
{
    long n = 100000;
    float *x = calloc((size_t)n, sizeof(float)), *y = calloc((size_t)n, sizeof(float));
    for (long i = 0; i < n; i++)
        x[i] = y[i] = 0.5f;
    ofa_variant_noise(x, n, 0.05f, 3, 0);
    ofa_variant_noise(y, n, 0.05f, 3, 0);
    ck_assert_mem_eq(x, y, (size_t)n * sizeof(float));
    double s = 0, s2 = 0;
    for (long i = 0; i < n; i++) {
        s += x[i] - 0.5;
        s2 += (x[i] - 0.5) * (x[i] - 0.5);
    }
    ck_assert_double_eq_tol(s / n, 0.0, 1e-3);
    ck_assert_double_eq_tol(sqrt(s2 / n), 0.05, 1e-3);
    ofa_variant_noise(y, n, 0.05f, 4, 1);
    ck_assert(memcmp(x, y, (size_t)n * sizeof(float)) != 0);
    free(x);
    free(y);
}
END_TEST

START_TEST(test_tone_gamma_one_is_identity_and_shifts_move_the_mean)
{
    float x[256], y[256];
    for (int i = 0; i < 256; i++)
        x[i] = y[i] = i / 255.0f;
    ofa_variant_tone(y, 256, 1.0f, 0.0f, 1.0f);
    ck_assert_mem_eq(x, y, sizeof x);
    ofa_variant_tone(y, 256, 2.0f, 0.0f, 1.0f);
    ck_assert_float_eq_tol(y[128], powf(128 / 255.0f, 2.0f), 1e-6f);
    for (int i = 0; i < 256; i++)
        y[i] = x[i];
    ofa_variant_tone(y, 256, 1.0f, 0.1f, 1.0f);
    ck_assert_float_eq_tol(y[100], x[100] + 0.1f, 1e-6f);
    ck_assert_float_eq(y[255], 1.0f); /* clamped */
    for (int i = 0; i < 256; i++)
        y[i] = x[i];
    ofa_variant_tone(y, 256, 1.0f, 0.0f, 0.5f);
    ck_assert_float_eq_tol(y[0], 0.25f, 1e-6f);
}
END_TEST

START_TEST(test_blur_keeps_constants_and_spreads_an_impulse)
{
    float c[5 * 6 * 2], out[5 * 6 * 2];
    for (int i = 0; i < 60; i++)
        c[i] = 0.7f;
    ofa_variant_blur(out, c, 5, 6, 2, 1.0f);
    for (int i = 0; i < 60; i++)
        ck_assert_float_eq_tol(out[i], 0.7f, 1e-6f);
    float imp[9 * 9] = {0}, o2[81];
    imp[40] = 1.0f;
    ofa_variant_blur(o2, imp, 9, 9, 1, 1.0f);
    double s = 0;
    for (int i = 0; i < 81; i++)
        s += o2[i];
    ck_assert_double_eq_tol(s, 1.0, 1e-5);
    ck_assert_float_lt(o2[40], 0.2f);
    ck_assert_float_eq_tol(o2[39], o2[41], 1e-7f);
    ck_assert_float_eq_tol(o2[31], o2[41], 1e-7f);
    ofa_variant_blur(o2, imp, 9, 9, 1, 0.0f);
    ck_assert_mem_eq(o2, imp, sizeof imp);
}
END_TEST

START_TEST(test_resize_nearest_bilinear_area)
{
    float in[4 * 4], out[2 * 2];
    for (int i = 0; i < 16; i++)
        in[i] = (float)i;
    ofa_variant_resize(out, in, 4, 4, 2, 2, 1, OFA_INTERP_AREA);
    /* 2x2 block means */
    ck_assert_float_eq_tol(out[0], (0 + 1 + 4 + 5) / 4.0f, 1e-6f);
    ck_assert_float_eq_tol(out[3], (10 + 11 + 14 + 15) / 4.0f, 1e-6f);
    ofa_variant_resize(out, in, 4, 4, 2, 2, 1, OFA_INTERP_NEAREST);
    ck_assert_float_eq(out[0], 0.0f);
    ck_assert_float_eq(out[1], 2.0f);
    ck_assert_float_eq(out[2], 8.0f);
    ofa_variant_resize(out, in, 4, 4, 2, 2, 1, OFA_INTERP_BILINEAR);
    ck_assert_float_eq_tol(out[0], 2.5f, 1e-6f); /* align_corners=False, 2x: same as area */
    /* Area over a non-integer ratio preserves the mean of a ramp. */
    float big[7 * 5], small[3 * 2];
    for (int i = 0; i < 35; i++)
        big[i] = (float)(i % 5) + 10.0f * (float)(i / 5);
    ofa_variant_resize(small, big, 7, 5, 3, 2, 1, OFA_INTERP_AREA);
    double sb = 0, ss = 0;
    for (int i = 0; i < 35; i++)
        sb += big[i];
    for (int i = 0; i < 6; i++)
        ss += small[i];
    ck_assert_double_eq_tol(sb / 35, ss / 6, 1e-4);
}
END_TEST

/* ---- ofa-data end to end ------------------------------------------------------------ */

static void same_per_class(const struct ofa_images *a, const struct ofa_images *b, int K)
{
    ck_assert_int_eq(a->n, b->n);
    size_t isz = (size_t)a->h * (size_t)a->w * (size_t)a->c;
    for (int k = 0; k < K; k++) {
        int i = 0, j = 0;
        for (;;) {
            while (i < a->n && a->labels[i] != k)
                i++;
            while (j < b->n && b->labels[j] != k)
                j++;
            ck_assert_int_eq(i < a->n, j < b->n);
            if (i >= a->n)
                break;
            ck_assert_mem_eq(a->pixels + i * isz, b->pixels + j * isz, isz);
            i++;
            j++;
        }
    }
}

static int run(const char *fmt, const char *a, const char *b, const char *c)
{
    const char *bd = getenv("OFA_BUILDDIR");
    char cmd[4096], args[3000];
    snprintf(args, sizeof args, fmt, a, b, c);
    snprintf(cmd, sizeof cmd, "'%s/datasets/ofa-data' %s 2>%s/stderr.txt", bd ? bd : ".", args,
             tmpdir);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 255;
}

static int stderr_contains(const char *needle)
{
    uint8_t *buf;
    size_t len;
    struct ofa_error err;
    if (ofa_read_file(tpath("stderr.txt"), &buf, &len, &err))
        return 0;
    buf = realloc(buf, len + 1);
    buf[len] = 0;
    int found = strstr((char *)buf, needle) != NULL;
    free(buf);
    return found;
}

START_TEST(test_ofa_data_prepare_export_and_reprepare_round_trip)
{
    const char *bd = getenv("OFA_BUILDDIR");
    char exe[1200];
    snprintf(exe, sizeof exe, "%s/datasets/ofa-data", bd ? bd : ".");
    if (access(exe, X_OK) != 0) {
        fprintf(stderr, "note: %s not built; CLI test skipped\n", exe);
        return;
    }
    make_idx_dir(tpath("d"), 40, 5, 5, 10, 1);
    ck_assert_int_eq(run("prepare %s -o %s --val-size 6 --seed 3 -q%s", tpath("d"),
                         tpath("a.h5"), ""), 0);
    ck_assert_int_eq(run("stats %s%s%s >/dev/null", tpath("a.h5"), "", ""), 0);
    ck_assert_int_eq(run("export-png %s -o %s%s", tpath("a.h5"), tpath("png"), ""), 0);
    ck_assert_int_eq(run("prepare %s -o %s --val-size 6 --seed 3 -q --format png", tpath("png"),
                         tpath("b.h5"), ""), 0);
    struct ofa_dataset a, b;
    struct ofa_error err;
    ck_assert_int_eq(ofa_dataset_load(tpath("a.h5"), &a, &err), 0);
    ck_assert_int_eq(ofa_dataset_load(tpath("b.h5"), &b, &err), 0);
    /* A folder is read class by class, so compare per class, in order. */
    same_per_class(&a.train, &b.train, 10);
    same_per_class(&a.test, &b.test, 10);
    ck_assert_int_eq(b.n_val, 6);
    ck_assert_str_eq(b.class_names[3], "3_3");
    ofa_dataset_free(&a);
    ofa_dataset_free(&b);
    /* Errors: non-zero exit, a message, and no output left behind. */
    ck_assert_int_eq(run("export-png %s -o %s%s", tpath("a.h5"), tpath("png"), ""), 1);
    ck_assert(stderr_contains("already exists"));
    write_bytes(tpath("d/train-images-idx3-ubyte.gz"), "\x1f\x8b\x08\x00garbage", 12);
    ck_assert_int_eq(run("prepare %s -o %s%s", tpath("d"), tpath("c.h5"), ""), 1);
    ck_assert(stderr_contains("train-images-idx3-ubyte.gz"));
    ck_assert_int_ne(access(tpath("c.h5"), F_OK), 0);
    ck_assert_int_eq(run("prepare %s -o %s --val-size 100000%s", tpath("png"), tpath("c.h5"), ""),
                     1);
    ck_assert(stderr_contains("validation size"));
    ck_assert_int_ne(access(tpath("c.h5"), F_OK), 0);
    ck_assert_int_eq(run("prepare %s --bogus%s%s", tpath("png"), "", ""), 1);
    ck_assert_int_eq(run("frobnicate%s%s%s", "", "", ""), 1);
    ck_assert_int_eq(run("--version >/dev/null%s%s%s", "", "", ""), 0);
    ck_assert_int_eq(run("--help >/dev/null%s%s%s", "", "", ""), 0);
    ck_assert_int_eq(run("stats %s%s%s", tpath("missing.h5"), "", ""), 1);
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s' | grep tmp)\"", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("data");
    TCase *tc;

    tc = tcase_create("idx");
    tcase_add_checked_fixture(tc, setup_tmp, teardown_tmp);
    tcase_add_test(tc, test_idx_plain_and_gzip_read_the_same_images);
    tcase_add_test(tc, test_idx_rejects_truncated_gzip);
    tcase_add_test(tc, test_idx_rejects_corrupt_gzip);
    tcase_add_test(tc, test_idx_rejects_wrong_magic_and_type);
    tcase_add_test(tc, test_idx_rejects_dims_overflowing_or_disagreeing_with_file_size);
    tcase_add_test(tc, test_idx_rejects_label_count_mismatch);
    tcase_add_test(tc, test_idx_rejects_label_out_of_range);
    tcase_add_test(tc, test_idx_missing_file_is_named);
    suite_add_tcase(s, tc);

    tc = tcase_create("cifar");
    tcase_add_checked_fixture(tc, setup_tmp, teardown_tmp);
    tcase_add_test(tc, test_cifar_records_are_transposed_to_hwc);
    tcase_add_test(tc, test_cifar_rejects_partial_record_and_bad_labels);
    tcase_add_test(tc, test_cifar10_folder_reads_batches_and_names);
    suite_add_tcase(s, tc);

    tc = tcase_create("png");
    tcase_add_checked_fixture(tc, setup_tmp, teardown_tmp);
    tcase_add_test(tc, test_png_decodes_every_colour_type_and_depth);
    tcase_add_test(tc, test_png_rejections_name_the_problem);
    tcase_add_test(tc, test_png_folder_classes_are_sorted_folder_names);
    tcase_add_test(tc, test_png_folder_rejects_empty_class_folder);
    tcase_add_test(tc, test_png_folder_rejects_non_image_file);
    tcase_add_test(tc, test_png_folder_rejects_mixed_sizes_unless_resizing);
    tcase_add_test(tc, test_png_folder_rejects_unreadable_directory);
    tcase_add_test(tc, test_png_write_then_decode_round_trips);
    suite_add_tcase(s, tc);

    tc = tcase_create("h5");
    tcase_add_checked_fixture(tc, setup_tmp, teardown_tmp);
    tcase_add_test(tc, test_h5_prepare_then_load_round_trips);
    tcase_add_test(tc, test_h5_rejects_missing_datasets);
    tcase_add_test(tc, test_h5_rejects_mistyped_and_misshapen_datasets);
    tcase_add_test(tc, test_h5_failed_save_leaves_no_file);
    tcase_add_test(tc, test_h5_corruption_is_caught_before_hdf5_parses);
    suite_add_tcase(s, tc);

    tc = tcase_create("fashion_mnist");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_fashion_mnist_counts_and_known_image);
    suite_add_tcase(s, tc);

    tc = tcase_create("loader");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_loader_batches_are_pure_functions_of_seed_epoch_index_resolution);
    tcase_add_test(tc, test_loader_part_of_a_batch_matches_the_whole);
    tcase_add_test(tc, test_loader_epoch_visits_each_sample_once);
    tcase_add_test(tc, test_flip_twice_is_identity);
    tcase_add_test(tc, test_crop_with_padding_is_a_zero_filled_shift);
    tcase_add_test(tc, test_random_erasing_zeroes_one_rectangle);
    tcase_add_test(tc, test_normalised_batch_has_zero_mean_unit_std);
    tcase_add_test(tc, test_loader_resize_matches_bilinear_op);
    suite_add_tcase(s, tc);

    tc = tcase_create("variant");
    tcase_add_test(tc, test_jpeg_q100_is_near_identity_and_lower_quality_changes_more);
    tcase_add_test(tc, test_noise_has_requested_std_and_is_seeded);
    tcase_add_test(tc, test_tone_gamma_one_is_identity_and_shifts_move_the_mean);
    tcase_add_test(tc, test_blur_keeps_constants_and_spreads_an_impulse);
    tcase_add_test(tc, test_resize_nearest_bilinear_area);
    suite_add_tcase(s, tc);

    tc = tcase_create("cli");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup_tmp, teardown_tmp);
    tcase_add_test(tc, test_ofa_data_prepare_export_and_reprepare_round_trip);
    suite_add_tcase(s, tc);

    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    return nf ? EXIT_FAILURE : EXIT_SUCCESS;
}
