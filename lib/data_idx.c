/* data_idx.c: IDX files (MNIST / Fashion-MNIST), plain or gzip-compressed.
 *
 * Parsed from memory: the header is decoded first and the payload size it
 * implies is checked against what the file can hold (exactly its remaining
 * size when plain, at most deflate's maximum ratio times its size when
 * gzip) before anything is allocated; the stream must then end exactly where
 * the header says (truncated, corrupt or over-long streams are errors).
 */
#include <config.h>

#include "data.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

/* Deflate cannot expand more than ~1032:1. */
#define GZ_MAX_RATIO 1040u

struct src {
    const uint8_t *buf;
    size_t len, pos; /* plain: position in buf */
    int gz;
    z_stream z;
    size_t out_pos;  /* decompressed bytes delivered so far */
    const char *name;
    struct ofa_error *err;
};

static int src_open(struct src *s, const uint8_t *buf, size_t len, const char *name,
                    struct ofa_error *err)
{
    memset(s, 0, sizeof *s);
    s->buf = buf;
    s->len = len;
    s->name = name;
    s->err = err;
    if (len >= 2 && buf[0] == 0x1f && buf[1] == 0x8b) {
        s->gz = 1;
        if (inflateInit2(&s->z, 15 + 16) != Z_OK)
            return ofa_error_set(err, name, 0, "zlib initialisation failed");
        s->z.next_in = (Bytef *)buf;
        s->z.avail_in = (uInt)(len > UINT32_MAX ? UINT32_MAX : len);
        s->pos = s->z.avail_in;
    }
    return 0;
}

static void src_close(struct src *s)
{
    if (s->gz)
        inflateEnd(&s->z);
}

/* Largest number of bytes the stream can still deliver. */
static uint64_t src_capacity(const struct src *s)
{
    if (!s->gz)
        return s->len - s->pos;
    return (uint64_t)s->len * GZ_MAX_RATIO + 1024;
}

/* Read exactly n bytes; returns 0, or -1 with err set (truncation/corruption).
 * With n == 0 and at_end != 0, checks that the stream is over. */
static int src_read(struct src *s, uint8_t *dst, size_t n)
{
    if (!s->gz) {
        if (s->len - s->pos < n)
            return ofa_error_set_offset(s->err, s->name, (long long)s->len,
                                        "file truncated: %zu more bytes expected",
                                        n - (s->len - s->pos));
        memcpy(dst, s->buf + s->pos, n);
        s->pos += n;
        s->out_pos += n;
        return 0;
    }
    while (n > 0) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        s->z.next_out = dst;
        s->z.avail_out = chunk;
        int rc = inflate(&s->z, Z_NO_FLUSH);
        size_t got = chunk - s->z.avail_out;
        dst += got;
        n -= got;
        s->out_pos += got;
        if (rc == Z_STREAM_END && n > 0) {
            /* Another gzip member may follow (gzip -d accepts concatenations). */
            if (s->z.avail_in >= 2 && s->z.next_in[0] == 0x1f && s->z.next_in[1] == 0x8b) {
                inflateReset(&s->z);
                continue;
            }
            return ofa_error_set_offset(s->err, s->name, (long long)s->out_pos,
                                        "file truncated: the decompressed data ends %zu "
                                        "bytes early", n);
        }
        if (rc == Z_STREAM_END)
            break;
        if (rc == Z_BUF_ERROR && s->z.avail_in == 0)
            return ofa_error_set_offset(s->err, s->name, (long long)s->out_pos,
                                        "truncated gzip stream (unexpected end of file)");
        if (rc != Z_OK && rc != Z_BUF_ERROR)
            return ofa_error_set_offset(s->err, s->name, (long long)s->out_pos,
                                        "corrupt gzip data: %s",
                                        s->z.msg ? s->z.msg : zError(rc));
        if (got == 0 && s->z.avail_in == 0)
            return ofa_error_set_offset(s->err, s->name, (long long)s->out_pos,
                                        "truncated gzip stream (unexpected end of file)");
    }
    return 0;
}

/* After the payload: the stream must end here (and the gzip trailer's CRC
 * must check out). */
static int src_expect_end(struct src *s)
{
    if (!s->gz) {
        if (s->pos != s->len)
            return ofa_error_set_offset(s->err, s->name, (long long)s->pos,
                                        "%zu bytes of trailing data after the payload "
                                        "the header describes", s->len - s->pos);
        return 0;
    }
    for (;;) {
        uint8_t scratch[64];
        s->z.next_out = scratch;
        s->z.avail_out = sizeof scratch;
        int rc = inflate(&s->z, Z_NO_FLUSH);
        size_t got = sizeof scratch - s->z.avail_out;
        if (got > 0)
            return ofa_error_set_offset(s->err, s->name, (long long)s->out_pos,
                                        "the decompressed data is longer than the header says");
        if (rc == Z_STREAM_END) {
            if (s->z.avail_in >= 2 && s->z.next_in[0] == 0x1f && s->z.next_in[1] == 0x8b) {
                inflateReset(&s->z);
                continue;
            }
            if (s->z.avail_in > 0)
                return ofa_error_set_offset(s->err, s->name,
                                            (long long)(s->len - s->z.avail_in),
                                            "trailing garbage after the gzip stream");
            return 0;
        }
        if (rc == Z_BUF_ERROR && s->z.avail_in == 0)
            return ofa_error_set_offset(s->err, s->name, (long long)s->out_pos,
                                        "truncated gzip stream (missing end or checksum)");
        if (rc != Z_OK && rc != Z_BUF_ERROR)
            return ofa_error_set_offset(s->err, s->name, (long long)s->out_pos,
                                        "corrupt gzip data: %s",
                                        s->z.msg ? s->z.msg : zError(rc));
    }
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Header: returns the number of dims (filled into dims), or -1. */
static int read_header(struct src *s, int want_lo, int want_hi, uint32_t dims[4])
{
    uint8_t h[4];
    if (src_read(s, h, 4))
        return -1;
    if (h[0] != 0 || h[1] != 0)
        return ofa_error_set_offset(s->err, s->name, 0,
                                    "wrong magic %02x %02x %02x %02x: not an IDX file "
                                    "(expected 00 00 08 0%d)", h[0], h[1], h[2], h[3], want_lo);
    if (h[2] != 0x08)
        return ofa_error_set_offset(s->err, s->name, 2,
                                    "unsupported IDX element type 0x%02x (only unsigned "
                                    "bytes, 0x08)", h[2]);
    int nd = h[3];
    if (nd < want_lo || nd > want_hi)
        return ofa_error_set_offset(s->err, s->name, 3,
                                    "IDX file has %d dimensions; expected %d%s", nd, want_lo,
                                    want_hi > want_lo ? " or 4" : "");
    uint8_t d[16];
    if (src_read(s, d, (size_t)nd * 4))
        return -1;
    for (int i = 0; i < nd; i++)
        dims[i] = be32(d + 4 * i);
    return nd;
}

int ofa_idx_parse_images(const uint8_t *buf, size_t len, const char *name,
                         struct ofa_images *out, struct ofa_error *err)
{
    memset(out, 0, sizeof *out);
    struct src s;
    if (src_open(&s, buf, len, name, err))
        return -1;
    uint32_t d[4] = {0, 0, 0, 1};
    int nd = read_header(&s, 3, 4, d);
    int rc = -1;
    if (nd < 0)
        goto done;
    if (d[0] == 0 || d[1] == 0 || d[2] == 0 || d[3] == 0) {
        ofa_error_set(err, name, 0, "IDX image dimensions %u x %u x %u x %u contain a zero",
                      d[0], d[1], d[2], d[3]);
        goto done;
    }
    if (d[1] > OFA_DATA_MAX_SIDE || d[2] > OFA_DATA_MAX_SIDE || d[3] > 4 || d[0] > INT32_MAX) {
        ofa_error_set(err, name, 0, "IDX image dimensions %u x %u x %u x %u are out of range "
                      "(side <= %d, channels <= 4)", d[0], d[1], d[2], d[3], OFA_DATA_MAX_SIDE);
        goto done;
    }
    uint64_t need = (uint64_t)d[0] * d[1] * d[2] * d[3]; /* < 2^31 * 2^12 * 2^12 * 4: no overflow */
    if (need > src_capacity(&s)) {
        ofa_error_set(err, name, 0,
                      "dimensions %u x %u x %u x %u need %llu bytes but the file can only "
                      "hold %llu", d[0], d[1], d[2], d[3], (unsigned long long)need,
                      (unsigned long long)src_capacity(&s));
        goto done;
    }
    out->n = (int)d[0];
    out->h = (int)d[1];
    out->w = (int)d[2];
    out->c = (int)d[3];
    out->pixels = ofa_xmalloc((size_t)need, "IDX images");
    if (src_read(&s, out->pixels, (size_t)need) || src_expect_end(&s))
        goto done;
    rc = 0;
done:
    src_close(&s);
    if (rc)
        ofa_images_free(out);
    return rc;
}

int ofa_idx_parse_labels(const uint8_t *buf, size_t len, const char *name,
                         int num_classes, int **labels, int *n, struct ofa_error *err)
{
    *labels = NULL;
    *n = 0;
    struct src s;
    if (src_open(&s, buf, len, name, err))
        return -1;
    uint32_t d[4] = {0, 0, 0, 0};
    int rc = -1;
    uint8_t *raw = NULL;
    int nd = read_header(&s, 1, 1, d);
    if (nd < 0)
        goto done;
    if (d[0] == 0 || d[0] > INT32_MAX) {
        ofa_error_set(err, name, 0, "IDX label count %u is out of range", d[0]);
        goto done;
    }
    if (d[0] > src_capacity(&s)) {
        ofa_error_set(err, name, 0, "%u labels but the file can only hold %llu", d[0],
                      (unsigned long long)src_capacity(&s));
        goto done;
    }
    raw = ofa_xmalloc(d[0], "IDX labels");
    if (src_read(&s, raw, d[0]) || src_expect_end(&s))
        goto done;
    for (uint32_t i = 0; i < d[0]; i++)
        if (raw[i] >= num_classes) {
            ofa_error_set_offset(err, name, 8 + (long long)i,
                                 "label %d of image %u is out of range [0, %d)", raw[i], i,
                                 num_classes);
            goto done;
        }
    *labels = ofa_xmalloc(sizeof(int) * d[0], "labels");
    for (uint32_t i = 0; i < d[0]; i++)
        (*labels)[i] = raw[i];
    *n = (int)d[0];
    rc = 0;
done:
    free(raw);
    src_close(&s);
    return rc;
}

static const char *const fashion_names[10] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

/* Fill ds->class_names from a spec; K from the spec (10 for the presets). */
static int set_class_names(struct ofa_dataset *ds, const char *spec, const char *dir,
                           struct ofa_error *err)
{
    const char *base = strrchr(dir, '/');
    base = base && base[1] ? base + 1 : dir;
    int fashion = 0;
    if (!spec) {
        /* Guess: a directory called like the Debian package's is Fashion-MNIST. */
        char low[256];
        size_t i;
        for (i = 0; i + 1 < sizeof low && base[i]; i++)
            low[i] = (char)tolower((unsigned char)base[i]);
        low[i] = '\0';
        fashion = strstr(low, "fashion") != NULL;
        spec = fashion ? "fashion-mnist" : "mnist";
    }
    if (strcmp(spec, "fashion-mnist") == 0 || strcmp(spec, "mnist") == 0) {
        fashion = spec[0] == 'f';
        ds->num_classes = 10;
        ds->class_names = ofa_xcalloc(10, sizeof *ds->class_names, "class names");
        for (int k = 0; k < 10; k++) {
            if (fashion)
                snprintf(ds->class_names[k], sizeof ds->class_names[k], "%s", fashion_names[k]);
            else
                snprintf(ds->class_names[k], sizeof ds->class_names[k], "%d", k);
        }
        return 0;
    }
    int K = 1;
    for (const char *p = spec; *p; p++)
        K += *p == ',';
    if (K > OFA_DATA_MAX_CLASSES)
        return ofa_error_set(err, "", 0, "too many class names (%d > %d)", K,
                             OFA_DATA_MAX_CLASSES);
    ds->num_classes = K;
    ds->class_names = ofa_xcalloc((size_t)K, sizeof *ds->class_names, "class names");
    const char *p = spec;
    for (int k = 0; k < K; k++) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 0 || n > OFA_DATA_MAX_CLASS_NAME)
            return ofa_error_set(err, "", 0, "class name %d in --class-names is %s", k + 1,
                                 n == 0 ? "empty" : "longer than 63 characters");
        memcpy(ds->class_names[k], p, n);
        p = e ? e + 1 : p + n;
    }
    return 0;
}

/* Find dir/base or dir/base.gz and parse it. */
static int load_one(const char *dir, const char *base, int images, int K,
                    struct ofa_images *im, struct ofa_error *err)
{
    char path[4096];
    uint8_t *buf = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/%s.gz", dir, base);
    FILE *f = fopen(path, "rb");
    if (!f)
        snprintf(path, sizeof path, "%s/%s", dir, base);
    else
        fclose(f);
    if (ofa_read_file(path, &buf, &len, err))
        return -1;
    int rc;
    if (images)
        rc = ofa_idx_parse_images(buf, len, path, im, err);
    else
        rc = ofa_idx_parse_labels(buf, len, path, K, &im->labels, &im->n, err);
    free(buf);
    return rc;
}

static int load_pair(const char *dir, const char *prefix, int K, struct ofa_images *out,
                     struct ofa_error *err)
{
    char ib[64], lb[64];
    snprintf(ib, sizeof ib, "%s-images-idx3-ubyte", prefix);
    snprintf(lb, sizeof lb, "%s-labels-idx1-ubyte", prefix);
    struct ofa_images lab = {0};
    if (load_one(dir, ib, 1, K, out, err))
        return -1;
    if (load_one(dir, lb, 0, K, &lab, err)) {
        ofa_images_free(out);
        return -1;
    }
    if (lab.n != out->n) {
        ofa_error_set(err, dir, 0, "%s has %d labels but %s has %d images", lb, lab.n, ib,
                      out->n);
        ofa_images_free(&lab);
        ofa_images_free(out);
        return -1;
    }
    out->labels = lab.labels;
    return 0;
}

int ofa_idx_read_dir(const char *dir, const struct ofa_read_opts *opts,
                     struct ofa_dataset *ds, struct ofa_error *err)
{
    if (set_class_names(ds, opts->class_names, dir, err))
        return -1;
    if (load_pair(dir, "train", ds->num_classes, &ds->train, err) ||
        load_pair(dir, "t10k", ds->num_classes, &ds->test, err))
        return -1;
    const struct ofa_images *a = &ds->train, *b = &ds->test;
    if (a->h != b->h || a->w != b->w || a->c != b->c)
        return ofa_error_set(err, dir, 0, "train images are %dx%dx%d but test images are "
                             "%dx%dx%d", a->h, a->w, a->c, b->h, b->w, b->c);
    return 0;
}
