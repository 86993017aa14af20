/* data_png.c: PNG decoding/encoding through libpng and folders of class
 * sub-folders of PNG images.
 *
 * libpng reports errors by longjmp: every libpng call sits under a setjmp
 * whose handler frees what was allocated and turns the library's message
 * into a struct ofa_error. Before the pixel buffer is allocated, the size the
 * header claims is checked against what the compressed file can hold
 * (deflate's maximum ratio), so a 60-byte file cannot ask for gigabytes.
 */
#include <config.h>

#include "data.h"
#include "ops.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct png_mem {
    const uint8_t *p;
    size_t len, pos;
};

struct png_err {
    char msg[256];
};

static void mem_read(png_structp png, png_bytep out, size_t n)
{
    struct png_mem *m = png_get_io_ptr(png);
    if (m->len - m->pos < n)
        png_error(png, "unexpected end of file (truncated PNG)");
    memcpy(out, m->p + m->pos, n);
    m->pos += n;
}

static void on_error(png_structp png, png_const_charp msg)
{
    struct png_err *e = png_get_error_ptr(png);
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

int ofa_png_peek_channels(const uint8_t *buf, size_t len)
{
    /* Signature, IHDR length+type, then width, height, depth, colour type. */
    if (len < 33 || png_sig_cmp(buf, 0, 8) != 0 || memcmp(buf + 12, "IHDR", 4) != 0)
        return -1;
    int ct = buf[25];
    return (ct & PNG_COLOR_MASK_COLOR) ? 3 : 1;
}

int ofa_png_decode(const uint8_t *buf, size_t len, const char *name, int channels,
                   uint8_t **pixels, int *h, int *w, struct ofa_error *err)
{
    *pixels = NULL;
    *h = *w = 0;
    OFA_ASSERT(channels == 1 || channels == 3 || channels == 4);
    if (len < 8 || png_sig_cmp(buf, 0, 8) != 0)
        return ofa_error_set(err, name, 0, "not a PNG image (bad signature)");
    struct png_err pe = {"unknown libpng error"};
    struct png_mem m = {buf, len, 0};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &pe, on_error, on_warning);
    if (!png)
        ofa_fatal("out of memory creating a libpng reader");
    png_infop info = png_create_info_struct(png);
    if (!info)
        ofa_fatal("out of memory creating a libpng info struct");
    uint8_t *volatile px = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(px);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        return ofa_error_set(err, name, 0, "PNG rejected by libpng: %s", pe.msg);
    }
    png_set_read_fn(png, &m, mem_read);
    png_set_user_limits(png, OFA_DATA_MAX_SIDE, OFA_DATA_MAX_SIDE);
    png_set_chunk_malloc_max(png, 8u << 20);
    png_read_info(png, info);
    png_uint_32 pw = png_get_image_width(png, info), ph = png_get_image_height(png, info);
    int depth = png_get_bit_depth(png, info), ct = png_get_color_type(png, info);
    int raw_ch = png_get_channels(png, info);
    uint64_t raw = (uint64_t)ph * (((uint64_t)pw * (uint64_t)depth * (uint64_t)raw_ch + 7) / 8 + 1);
    if (raw > (uint64_t)len * 1040 + 1024)
        png_error(png, "image size in the header is larger than the file can hold");
    if (depth == 16)
        png_set_strip_16(png);
    if (ct == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (ct == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    int trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
    if (trns)
        png_set_tRNS_to_alpha(png);
    int color = (ct & PNG_COLOR_MASK_COLOR) != 0;
    int alpha = (ct & PNG_COLOR_MASK_ALPHA) != 0 || trns;
    if (channels == 1 && color)
        png_set_rgb_to_gray_fixed(png, 1, -1, -1);
    if (channels >= 3 && !color)
        png_set_gray_to_rgb(png);
    if (channels != 4 && alpha)
        png_set_strip_alpha(png);
    if (channels == 4 && !alpha)
        png_set_add_alpha(png, 0xff, PNG_FILLER_AFTER);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (rowbytes != (size_t)pw * (size_t)channels)
        png_error(png, "unexpected row size after colour conversion");
    px = ofa_xmalloc((size_t)ph * rowbytes, "PNG pixels");
    rows = ofa_xmalloc(sizeof(png_bytep) * ph, "PNG rows");
    for (png_uint_32 y = 0; y < ph; y++)
        rows[y] = px + (size_t)y * rowbytes;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    *pixels = px;
    *h = (int)ph;
    *w = (int)pw;
    return 0;
}

int ofa_png_write(const char *path, const uint8_t *pixels, int h, int w, int c,
                  struct ofa_error *err)
{
    OFA_ASSERT(c == 1 || c == 3 || c == 4);
    FILE *f = fopen(path, "wb");
    if (!f)
        return ofa_error_set(err, path, 0, "cannot create: %s", strerror(errno));
    struct png_err pe = {"unknown libpng error"};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &pe, on_error, on_warning);
    if (!png)
        ofa_fatal("out of memory creating a libpng writer");
    png_infop info = png_create_info_struct(png);
    if (!info)
        ofa_fatal("out of memory creating a libpng info struct");
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(rows);
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return ofa_error_set(err, path, 0, "libpng could not write: %s", pe.msg);
    }
    png_init_io(png, f);
    int ct = c == 1 ? PNG_COLOR_TYPE_GRAY : c == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_RGBA;
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, ct, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    rows = ofa_xmalloc(sizeof(png_bytep) * (size_t)h, "PNG rows");
    for (int y = 0; y < h; y++)
        rows[y] = (png_bytep)(pixels + (size_t)y * (size_t)w * (size_t)c);
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    free(rows);
    png_destroy_write_struct(&png, &info);
    if (fflush(f) != 0 || ferror(f)) {
        int e = errno;
        fclose(f);
        return ofa_error_set(err, path, 0, "write failed: %s", strerror(e));
    }
    if (fclose(f) != 0)
        return ofa_error_set(err, path, 0, "write failed: %s", strerror(errno));
    return 0;
}

/* ---- Folders ---------------------------------------------------------------- */

struct names {
    char **v;
    int n;
};

static void names_free(struct names *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted entry names of dir, without "." entries (hidden files are skipped). */
static int list_dir(const char *dir, struct names *out, struct ofa_error *err)
{
    out->v = NULL;
    out->n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return ofa_error_set(err, dir, 0, "cannot read the directory: %s", strerror(errno));
    int cap = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (out->n == cap) {
            cap = cap ? 2 * cap : 64;
            out->v = realloc(out->v, sizeof(char *) * (size_t)cap);
            if (!out->v)
                ofa_fatal("out of memory listing %s", dir);
        }
        size_t n = strlen(e->d_name);
        out->v[out->n] = ofa_xmalloc(n + 1, "file name");
        memcpy(out->v[out->n], e->d_name, n + 1);
        out->n++;
    }
    int rerr = errno;
    closedir(d);
    if (rerr) {
        names_free(out);
        return ofa_error_set(err, dir, 0, "cannot read the directory: %s", strerror(rerr));
    }
    if (out->n > 1)
        qsort(out->v, (size_t)out->n, sizeof(char *), cmp_str);
    return 0;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Resize uint8 [h,w,C] to [H,W,C]: area when shrinking, bilinear otherwise. */
static void resize_u8(uint8_t *out, const uint8_t *in, int h, int w, int H, int W, int C)
{
    size_t ni = (size_t)h * (size_t)w * (size_t)C, no = (size_t)H * (size_t)W * (size_t)C;
    float *fi = ofa_xmalloc(ni * sizeof(float), "resize input");
    float *fo = ofa_xmalloc(no * sizeof(float), "resize output");
    for (size_t i = 0; i < ni; i++)
        fi[i] = in[i];
    ofa_variant_resize(fo, fi, h, w, H, W, C,
                       (H < h || W < w) ? OFA_INTERP_AREA : OFA_INTERP_BILINEAR);
    for (size_t i = 0; i < no; i++) {
        float v = roundf(fo[i]);
        out[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
    free(fi);
    free(fo);
}

struct folder_ctx {
    const struct ofa_read_opts *opts;
    int H, W, C; /* fixed after the first image */
    int fixed;
};

/* Read the class folders under root whose names are in classes (index = label)
 * into im. */
static int read_split(const char *root, struct names *classes, int allow_subset,
                      struct folder_ctx *fc, struct ofa_images *im, struct ofa_error *err)
{
    struct names cl = {0};
    if (list_dir(root, &cl, err))
        return -1;
    int rc = -1;
    struct names *files = ofa_xcalloc((size_t)(cl.n ? cl.n : 1), sizeof *files, "file lists");
    int *label = ofa_xcalloc((size_t)(cl.n ? cl.n : 1), sizeof(int), "labels");
    size_t total = 0;
    char path[4096];
    for (int k = 0; k < cl.n; k++) {
        snprintf(path, sizeof path, "%s/%s", root, cl.v[k]);
        if (!is_dir(path)) {
            ofa_error_set(err, path, 0, "not a class folder (every entry of %s must be a "
                          "folder of PNG images)", root);
            goto done;
        }
        label[k] = k;
        if (allow_subset) {
            label[k] = -1;
            for (int j = 0; j < classes->n; j++)
                if (strcmp(classes->v[j], cl.v[k]) == 0)
                    label[k] = j;
            if (label[k] < 0) {
                ofa_error_set(err, path, 0, "class folder has no counterpart in the training "
                              "set");
                goto done;
            }
        }
        if (list_dir(path, &files[k], err))
            goto done;
        if (files[k].n == 0) {
            ofa_error_set(err, path, 0, "empty class folder (no images)");
            goto done;
        }
        total += (size_t)files[k].n;
    }
    if (total > INT32_MAX) {
        ofa_error_set(err, root, 0, "too many images");
        goto done;
    }
    for (int k = 0; k < cl.n; k++) {
        for (int i = 0; i < files[k].n; i++) {
            snprintf(path, sizeof path, "%s/%s/%s", root, cl.v[k], files[k].v[i]);
            if (is_dir(path)) {
                ofa_error_set(err, path, 0, "unexpected folder inside a class folder");
                goto done;
            }
            uint8_t *buf, *px;
            size_t len;
            int h, w;
            if (ofa_read_file(path, &buf, &len, err))
                goto done;
            if (!fc->fixed && fc->C == 0) {
                fc->C = ofa_png_peek_channels(buf, len);
                if (fc->C < 0)
                    fc->C = 1; /* the decoder will reject it below */
            }
            int r = ofa_png_decode(buf, len, path, fc->C, &px, &h, &w, err);
            free(buf);
            if (r)
                goto done;
            if (!fc->fixed) {
                if (fc->H == 0) {
                    fc->H = h;
                    fc->W = w;
                }
                fc->fixed = 1;
            }
            if (!im->pixels) {
                im->h = fc->H;
                im->w = fc->W;
                im->c = fc->C;
                im->pixels = ofa_xmalloc(ofa_mul_size(total, (size_t)fc->H * (size_t)fc->W *
                                                                 (size_t)fc->C), "images");
                im->labels = ofa_xmalloc(total * sizeof(int), "labels");
            }
            uint8_t *dst = im->pixels + (size_t)im->n * (size_t)fc->H * (size_t)fc->W *
                                            (size_t)fc->C;
            if (h == fc->H && w == fc->W) {
                memcpy(dst, px, (size_t)h * (size_t)w * (size_t)fc->C);
            } else if (fc->opts->height > 0) {
                resize_u8(dst, px, h, w, fc->H, fc->W, fc->C);
            } else {
                free(px);
                ofa_error_set(err, path, 0, "image is %dx%d but the first image is %dx%d "
                              "(mixed sizes; pass --size to resize)", w, h, fc->W, fc->H);
                goto done;
            }
            free(px);
            im->labels[im->n++] = label[k];
        }
    }
    rc = 0;
done:
    for (int k = 0; k < cl.n; k++)
        names_free(&files[k]);
    free(files);
    free(label);
    if (rc == 0 && !allow_subset && cl.n == 0)
        rc = ofa_error_set(err, root, 0, "no class folders");
    if (rc == 0 && !allow_subset) {
        /* The caller takes the class list. */
        *classes = cl;
    } else {
        names_free(&cl);
    }
    return rc;
}

int ofa_png_read_dir(const char *dir, const struct ofa_read_opts *opts,
                     struct ofa_dataset *ds, struct ofa_error *err)
{
    if (opts->channels != 0 && opts->channels != 1 && opts->channels != 3 && opts->channels != 4)
        return ofa_error_set(err, dir, 0, "channels must be 1, 3 or 4 (got %d)", opts->channels);
    if (opts->height < 0 || opts->width < 0 || opts->height > OFA_DATA_MAX_SIDE ||
        opts->width > OFA_DATA_MAX_SIDE || (opts->height > 0) != (opts->width > 0))
        return ofa_error_set(err, dir, 0, "bad image size %dx%d", opts->width, opts->height);
    struct folder_ctx fc = {opts, opts->height, opts->width, opts->channels, 0};
    struct names top = {0};
    if (list_dir(dir, &top, err))
        return -1;
    int split = top.n == 2 && strcmp(top.v[0], "test") == 0 && strcmp(top.v[1], "train") == 0;
    char tr[4096], te[4096];
    snprintf(tr, sizeof tr, "%s/train", dir);
    snprintf(te, sizeof te, "%s/test", dir);
    split = split && is_dir(tr) && is_dir(te);
    names_free(&top);
    struct names classes = {0};
    if (read_split(split ? tr : dir, &classes, 0, &fc, &ds->train, err))
        return -1;
    int rc = 0;
    if (classes.n > OFA_DATA_MAX_CLASSES) {
        rc = ofa_error_set(err, dir, 0, "%d classes (at most %d)", classes.n, OFA_DATA_MAX_CLASSES);
        goto out;
    }
    ds->num_classes = classes.n;
    ds->class_names = ofa_xcalloc((size_t)classes.n, sizeof *ds->class_names, "class names");
    for (int k = 0; k < classes.n; k++) {
        if (strlen(classes.v[k]) > OFA_DATA_MAX_CLASS_NAME) {
            rc = ofa_error_set(err, dir, 0, "class folder name \"%s\" is longer than %d bytes",
                               classes.v[k], OFA_DATA_MAX_CLASS_NAME);
            goto out;
        }
        snprintf(ds->class_names[k], sizeof ds->class_names[k], "%s", classes.v[k]);
    }
    if (split) {
        rc = read_split(te, &classes, 1, &fc, &ds->test, err);
        if (rc == 0 && ds->test.n == 0) {
            ds->test.h = ds->train.h;
            ds->test.w = ds->train.w;
            ds->test.c = ds->train.c;
        }
    } else {
        ds->test.h = ds->train.h;
        ds->test.w = ds->train.w;
        ds->test.c = ds->train.c;
    }
out:
    names_free(&classes);
    return rc;
}
