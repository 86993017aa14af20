/* ckpt.c: the HDF5 supernet checkpoint (layout: docs/checkpoint-format.md).
 *
 * Saving builds the file in memory, writes it to <path>.tmp.<pid>, syncs it
 * and renames it over path, so the old file survives any failure or crash.
 * Loading trusts nothing: every object's link type, type, rank, shape and
 * storage is checked before a byte is read, chunked tensors are decoded here
 * with checked sizes, and reads go to scratch buffers that are copied into
 * the caller's table only once everything has succeeded. HDF5's automatic
 * error printing is off while we work; its failures become a struct ofa_error.
 */
#include <config.h>

#include "ckpt.h"
#include "h5file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <zlib.h>

/* Refuse strings and chunks beyond these sizes in files we read: a crafted
 * header must not make us (or HDF5) allocate gigabytes. */
#define MAX_RECIPE_BYTES (16u << 20)
#define MAX_NAME_BYTES 4096u
#define MAX_CHUNK_BYTES (256u << 20)
/* Whole files are read into memory, checked, then parsed. */
#define MAX_CKPT_BYTES ((size_t)1 << 33)
#define MAX_SUBNET_BYTES ((size_t)16 << 20)
/* Chunks we write hold at most this many bytes (parameter tensors are small,
 * so nearly all are one chunk). */
#define WRITE_CHUNK_BYTES (1u << 20)
/* Smaller tensors stay contiguous and uncompressed even with deflate on: in
 * the default (oldest, most readable) file format each chunked dataset costs
 * a B-tree node of about 2 KiB, more than deflate could save. */
#define MIN_DEFLATE_BYTES 4096u

/* ---- Shared: error context and HDF5's error stack -------------------------- */

struct ctx {
    const char *path; /* the file named in messages */
    struct ofa_error *err;
};

/* Fill err with path and the message, plus HDF5's innermost message if the
 * last HDF5 call failed (see ofa_h5_fail). Returns -1. */
static int fail(const struct ctx *c, const char *fmt, ...) OFA_PRINTF(2, 3);
static int fail(const struct ctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = ofa_h5_vfail(c->err, c->path, fmt, ap);
    va_end(ap);
    return rc;
}

static const char *act_name(int a)
{
    switch (a) {
    case OFA_ACT_NONE: return "none";
    case OFA_ACT_RELU: return "relu";
    case OFA_ACT_HSWISH: return "hswish";
    case OFA_ACT_HSIGMOID: return "hsigmoid";
    }
    return "?";
}

/* "[96,16]" */
static void fmt_shape(char *buf, size_t n, int rank, const hsize_t *d)
{
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < rank && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%llu", i ? "," : "", (unsigned long long)d[i]);
    if (k < n)
        snprintf(buf + k, n - k, "]");
}

/* ---- Writing ----------------------------------------------------------------- */

struct writer {
    struct ctx c;
    hid_t gcpl;  /* groups: no time stamps */
    hid_t dcpl;  /* small datasets: no time stamps */
    int deflate; /* 0 or 1-9, parameter datasets only */
};

/* A fixed-length, NUL-terminated C string type of n bytes. */
static hid_t str_type(size_t n)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0)
        return -1;
    if (H5Tset_size(t, n) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

/* The activation enum, stored as 32-bit integers with names. */
static hid_t act_type(void)
{
    hid_t t = H5Tenum_create(H5T_NATIVE_INT);
    if (t < 0)
        return -1;
    static const int vals[] = {OFA_ACT_NONE, OFA_ACT_RELU, OFA_ACT_HSWISH, OFA_ACT_HSIGMOID};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
        if (H5Tenum_insert(t, act_name(vals[i]), &vals[i]) < 0) {
            H5Tclose(t);
            return -1;
        }
    return t;
}

/* Attribute `name` on obj (called objname in messages): n == 0 scalar, else
 * a 1-D array of n elements. */
static int put_attr(const struct writer *w, hid_t obj, const char *objname, const char *name,
                    hid_t ftype, hid_t mtype, int n, const void *val)
{
    hsize_t d = (hsize_t)n;
    hid_t sp = n == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &d, NULL);
    if (sp < 0)
        return fail(&w->c, "H5Screate for attribute %s of %s failed", name, objname);
    hid_t a = H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) {
        fail(&w->c, "H5Acreate2 of attribute %s of %s failed", name, objname);
        H5Sclose(sp);
        return -1;
    }
    int rc = 0;
    if (H5Awrite(a, mtype, val) < 0)
        rc = fail(&w->c, "H5Awrite of attribute %s of %s failed", name, objname);
    if (H5Aclose(a) < 0 && rc == 0)
        rc = fail(&w->c, "H5Aclose of attribute %s of %s failed", name, objname);
    H5Sclose(sp);
    return rc;
}

static int put_attr_str(const struct writer *w, hid_t obj, const char *objname,
                        const char *name, const char *val)
{
    size_t n = strlen(val) + 1;
    hid_t t = str_type(n);
    if (t < 0)
        return fail(&w->c, "cannot make a string type for attribute %s", name);
    int rc = put_attr(w, obj, objname, name, t, t, 0, val);
    H5Tclose(t);
    return rc;
}

static int put_i32(const struct writer *w, hid_t obj, const char *objname, const char *name,
                   int n, const int *v)
{
    return put_attr(w, obj, objname, name, H5T_STD_I32LE, H5T_NATIVE_INT, n, v);
}

static int put_f32(const struct writer *w, hid_t obj, const char *objname, const char *name,
                   float v)
{
    return put_attr(w, obj, objname, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 0, &v);
}

static int put_i64(const struct writer *w, hid_t obj, const char *objname, const char *name,
                   int64_t v)
{
    return put_attr(w, obj, objname, name, H5T_STD_I64LE, H5T_NATIVE_INT64, 0, &v);
}

static hid_t make_group(const struct writer *w, hid_t loc, const char *name, const char *shown)
{
    hid_t g = H5Gcreate2(loc, name, H5P_DEFAULT, w->gcpl, H5P_DEFAULT);
    if (g < 0)
        fail(&w->c, "H5Gcreate2 of group %s failed", shown);
    return g;
}

static int write_config(const struct writer *w, hid_t f, const struct ofa_space *sp)
{
    hid_t g = make_group(w, f, "config", "/config");
    if (g < 0)
        return -1;
    hid_t at = act_type();
    if (at < 0) {
        H5Gclose(g);
        return fail(&w->c, "H5Tenum_create for the activation type failed");
    }
    const char *gn = "/config";
    int ns = sp->n_stages;
    int width[OFA_MAX_STAGES], stride[OFA_MAX_STAGES], act[OFA_MAX_STAGES], se[OFA_MAX_STAGES];
    for (int s = 0; s < ns; s++) {
        width[s] = sp->stages[s].width;
        stride[s] = sp->stages[s].stride;
        act[s] = (int)sp->stages[s].act;
        se[s] = sp->stages[s].se;
    }
    int stem_act = (int)sp->stem_act;
    int rc = put_i32(w, g, gn, "in_channels", 0, &sp->in_channels) ||
             put_i32(w, g, gn, "num_classes", 0, &sp->num_classes) ||
             put_i32(w, g, gn, "stem_width", 0, &sp->stem_width) ||
             put_i32(w, g, gn, "stem_stride", 0, &sp->stem_stride) ||
             put_attr(w, g, gn, "stem_act", at, at, 0, &stem_act) ||
             put_i32(w, g, gn, "first_width", 0, &sp->first_width) ||
             put_i32(w, g, gn, "n_stages", 0, &ns) ||
             put_i32(w, g, gn, "stage_width", ns, width) ||
             put_i32(w, g, gn, "stage_stride", ns, stride) ||
             put_attr(w, g, gn, "stage_act", at, at, ns, act) ||
             put_i32(w, g, gn, "stage_se", ns, se) ||
             put_i32(w, g, gn, "depths", sp->n_depths, sp->depths) ||
             put_i32(w, g, gn, "expands", sp->n_expands, sp->expands) ||
             put_i32(w, g, gn, "kernels", sp->n_kernels, sp->kernels) ||
             put_i32(w, g, gn, "resolutions", sp->n_res, sp->resolutions) ||
             put_i32(w, g, gn, "head_width", 0, &sp->head_width) ||
             put_f32(w, g, gn, "dropout", sp->dropout) ||
             put_i32(w, g, gn, "se_reduction", 0, &sp->se_reduction) ||
             put_i32(w, g, gn, "kernel_transform", 0, &sp->kernel_transform) ||
             put_i32(w, g, gn, "zero_last_gamma", 0, &sp->zero_last_gamma) ||
             put_f32(w, g, gn, "bn_momentum", sp->bn_momentum) ||
             put_f32(w, g, gn, "bn_eps", sp->bn_eps)
                 ? -1 : 0;
    H5Tclose(at);
    if (H5Gclose(g) < 0 && rc == 0)
        rc = fail(&w->c, "H5Gclose of /config failed");
    return rc;
}

static int write_state(const struct writer *w, hid_t f, const struct ofa_train_state *st)
{
    hid_t g = make_group(w, f, "state", "/state");
    if (g < 0)
        return -1;
    const char *gn = "/state";
    int phase = st->phase, sorted = st->channels_sorted;
    uint64_t hash = st->data_hash;
    double elapsed = st->elapsed, gflop = st->train_gflop;
    int rc = put_i64(w, g, gn, "epoch", st->epoch) || put_i64(w, g, gn, "step", st->step) ||
             put_i32(w, g, gn, "phase", 0, &phase) ||
             put_i32(w, g, gn, "channels_sorted", 0, &sorted) ||
             put_attr(w, g, gn, "rng", H5T_STD_U64LE, H5T_NATIVE_UINT64, 4, st->rng.s) ||
             put_attr(w, g, gn, "elapsed", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 0, &elapsed) ||
             put_i64(w, g, gn, "images_seen", st->images_seen) ||
             put_attr(w, g, gn, "data_hash", H5T_STD_U64LE, H5T_NATIVE_UINT64, 0, &hash) ||
             put_attr(w, g, gn, "train_gflop", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 0, &gflop)
                 ? -1 : 0;
    if (H5Gclose(g) < 0 && rc == 0)
        rc = fail(&w->c, "H5Gclose of /state failed");
    return rc;
}

/* A dataset of the given types and shape (rank 0: scalar) written in one go. */
static int put_dataset(const struct writer *w, hid_t loc, const char *name, const char *shown,
                       hid_t ftype, hid_t mtype, int rank, const hsize_t *dims, hid_t dcpl,
                       const void *buf)
{
    hid_t sp = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, dims, NULL);
    if (sp < 0)
        return fail(&w->c, "H5Screate for %s failed", shown);
    hid_t d = H5Dcreate2(loc, name, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (d < 0) {
        fail(&w->c, "H5Dcreate2 of %s failed", shown);
        H5Sclose(sp);
        return -1;
    }
    int rc = 0;
    if (H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        rc = fail(&w->c, "H5Dwrite of %s failed", shown);
    if (H5Dclose(d) < 0 && rc == 0)
        rc = fail(&w->c, "H5Dclose of %s failed", shown);
    H5Sclose(sp);
    return rc;
}

/* Create the groups on the way to name ("a/b/c" -> a, a/b) under loc. */
static int make_parents(const struct writer *w, hid_t loc, const char *root, const char *name)
{
    char part[OFA_PARAM_NAMELEN];
    for (const char *s = strchr(name, '/'); s; s = strchr(s + 1, '/')) {
        size_t n = (size_t)(s - name);
        memcpy(part, name, n);
        part[n] = '\0';
        htri_t ex = H5Lexists(loc, part, H5P_DEFAULT);
        if (ex < 0)
            return fail(&w->c, "H5Lexists of %s/%s failed", root, part);
        if (ex > 0)
            continue;
        char shown[OFA_PARAM_NAMELEN + 16];
        snprintf(shown, sizeof shown, "%s/%s", root, part);
        hid_t g = make_group(w, loc, part, shown);
        if (g < 0)
            return -1;
        if (H5Gclose(g) < 0)
            return fail(&w->c, "H5Gclose of %s failed", shown);
    }
    return 0;
}

/* Chunk shape for a parameter dataset: the whole tensor, halving leading
 * dimensions until a chunk holds at most WRITE_CHUNK_BYTES. */
static void chunk_shape(int rank, const hsize_t *dims, hsize_t *chunk)
{
    hsize_t bytes = sizeof(float);
    for (int i = 0; i < rank; i++) {
        chunk[i] = dims[i];
        bytes *= dims[i];
    }
    for (int i = 0; i < rank && bytes > WRITE_CHUNK_BYTES; i++) {
        while (chunk[i] > 1 && bytes > WRITE_CHUNK_BYTES) {
            hsize_t c = (chunk[i] + 1) / 2;
            bytes = bytes / chunk[i] * c;
            chunk[i] = c;
        }
    }
}

/* /params or /optim: one float32 dataset per tensor (momentum: trained
 * tensors only), at its full shape. */
static int write_tensors(const struct writer *w, hid_t f, const char *root,
                         const struct ofa_params *p, const float *base, int skip_nograd)
{
    hid_t g = make_group(w, f, root + 1, root);
    if (g < 0)
        return -1;
    int rc = 0;
    for (int i = 0; i < p->n && rc == 0; i++) {
        const struct ofa_param *t = &p->t[i];
        if (skip_nograd && (t->flags & OFA_PARAM_NOGRAD))
            continue;
        char shown[OFA_PARAM_NAMELEN + 16];
        snprintf(shown, sizeof shown, "%s/%s", root, t->name);
        hsize_t dims[OFA_PARAM_MAXDIM];
        for (int k = 0; k < t->ndim; k++)
            dims[k] = (hsize_t)t->shape[k];
        hid_t dcpl = w->dcpl;
        if (w->deflate > 0 && t->numel * sizeof(float) >= MIN_DEFLATE_BYTES) {
            hsize_t chunk[OFA_PARAM_MAXDIM];
            chunk_shape(t->ndim, dims, chunk);
            dcpl = H5Pcopy(w->dcpl);
            if (dcpl < 0 || H5Pset_chunk(dcpl, t->ndim, chunk) < 0 || H5Pset_shuffle(dcpl) < 0 ||
                H5Pset_deflate(dcpl, (unsigned)w->deflate) < 0) {
                rc = fail(&w->c, "cannot set up chunking and deflate for %s", shown);
                ofa_h5_close_id(dcpl);
                break;
            }
        }
        if (make_parents(w, g, root, t->name) != 0)
            rc = -1;
        else
            rc = put_dataset(w, g, t->name, shown, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, t->ndim,
                             dims, dcpl, base + t->offset);
        if (dcpl != w->dcpl)
            H5Pclose(dcpl);
    }
    if (H5Gclose(g) < 0 && rc == 0)
        rc = fail(&w->c, "H5Gclose of %s failed", root);
    return rc;
}

static int write_order(const struct writer *w, hid_t f, const struct ofa_params *p)
{
    char *names = ofa_xcalloc((size_t)p->n, OFA_PARAM_NAMELEN, "checkpoint order list");
    for (int i = 0; i < p->n; i++)
        memcpy(names + (size_t)i * OFA_PARAM_NAMELEN, p->t[i].name, strlen(p->t[i].name));
    hid_t t = str_type(OFA_PARAM_NAMELEN);
    int rc;
    if (t < 0) {
        rc = fail(&w->c, "cannot make the string type of /order");
    } else {
        hsize_t n = (hsize_t)p->n;
        rc = put_dataset(w, f, "order", "/order", t, t, 1, &n, w->dcpl, names);
        H5Tclose(t);
    }
    free(names);
    return rc;
}

static int write_all(const struct writer *w, hid_t f, const char *recipe,
                     const struct ofa_space *sp, const struct ofa_params *p,
                     const struct ofa_train_state *st)
{
    int version = OFA_CKPT_VERSION;
    if (put_attr_str(w, f, "/", "format", OFA_CKPT_FORMAT) ||
        put_i32(w, f, "/", "format_version", 0, &version) ||
        put_attr_str(w, f, "/", "created_by", PACKAGE_NAME " " PACKAGE_VERSION))
        return -1;
    /* The recipe is a dataset: object headers (and so attributes) cap at 64 KiB. */
    hid_t t = str_type(strlen(recipe) + 1);
    if (t < 0)
        return fail(&w->c, "cannot make the string type of /recipe");
    int rc = put_dataset(w, f, "recipe", "/recipe", t, t, 0, NULL, w->dcpl, recipe);
    H5Tclose(t);
    if (rc || write_config(w, f, sp) || write_tensors(w, f, "/params", p, p->data, 0) ||
        write_tensors(w, f, "/optim", p, p->mom, 1) || write_order(w, f, p) ||
        write_state(w, f, st))
        return -1;
    return 0;
}

/* Tensor names become HDF5 paths below /params: no empty components, no "."
 * or ".." components, and no name may be a group on the way to another. */
static int check_names(const struct ctx *c, const struct ofa_params *p)
{
    if (p->n < 1)
        return ofa_error_set(c->err, c->path, 0, "the parameter table is empty");
    for (int i = 0; i < p->n; i++) {
        const char *nm = p->t[i].name;
        size_t len = strlen(nm);
        if (len == 0 || nm[0] == '/' || nm[len - 1] == '/' || strstr(nm, "//"))
            return ofa_error_set(c->err, c->path, 0,
                                 "tensor name \"%s\" cannot be an HDF5 path (empty component)",
                                 nm);
        for (const char *s = nm; s; s = strchr(s, '/')) {
            if (*s == '/')
                s++;
            size_t n = strcspn(s, "/");
            if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
                return ofa_error_set(c->err, c->path, 0,
                                     "tensor name \"%s\" has a \".\" or \"..\" component", nm);
        }
        for (int j = 0; j < p->n; j++) {
            size_t lj = strlen(p->t[j].name);
            if (j != i && lj > len && strncmp(p->t[j].name, nm, len) == 0 &&
                p->t[j].name[len] == '/')
                return ofa_error_set(c->err, c->path, 0,
                                     "tensor \"%s\" would be both a dataset and the group of "
                                     "\"%s\"", nm, p->t[j].name);
        }
    }
    return 0;
}

/* Build an HDF5 file with build(w, f, arg) and write it to path atomically
 * with its integrity header (ofa_h5_save). step: the in-memory image's
 * growth step (about the expected size). On failure the previous file at
 * path is untouched. */
typedef int (*build_fn)(const struct writer *w, hid_t f, const void *arg);
struct build_call {
    const struct writer *w;
    build_fn build;
    const void *arg;
};

static int build_call(hid_t f, const void *arg)
{
    const struct build_call *b = arg;
    return b->build(b->w, f, b->arg);
}

static int save_image(const char *path, struct ofa_error *err, size_t step, int deflate,
                      build_fn build, const void *arg)
{
    struct ofa_h5quiet q;
    ofa_h5_quiet_on(&q);
    struct writer w = {{path, err}, -1, -1, deflate};
    int rc = -1;
    if (deflate > 0 && H5Zfilter_avail(H5Z_FILTER_DEFLATE) <= 0) {
        fail(&w.c, "this HDF5 library has no deflate filter");
        goto out;
    }
    w.gcpl = H5Pcreate(H5P_GROUP_CREATE);
    w.dcpl = H5Pcreate(H5P_DATASET_CREATE);
    /* No object time stamps, so that saving the same state twice gives the
     * same bytes. */
    if (w.gcpl < 0 || w.dcpl < 0 || H5Pset_obj_track_times(w.gcpl, 0) < 0 ||
        H5Pset_obj_track_times(w.dcpl, 0) < 0 ||
        H5Pset_fill_time(w.dcpl, H5D_FILL_TIME_NEVER) < 0) {
        fail(&w.c, "cannot set up HDF5 property lists");
        goto out;
    }
    struct build_call b = {&w, build, arg};
    rc = ofa_h5_save(path, OFA_H5_MAGIC, step, build_call, &b, err);
out:
    ofa_h5_close_id(w.gcpl);
    ofa_h5_close_id(w.dcpl);
    ofa_h5_quiet_off(&q);
    return rc;
}

struct ckpt_parts {
    const char *recipe;
    const struct ofa_space *sp;
    const struct ofa_params *p;
    const struct ofa_train_state *st;
};

static int build_ckpt(const struct writer *w, hid_t f, const void *arg)
{
    const struct ckpt_parts *c = arg;
    return write_all(w, f, c->recipe, c->sp, c->p, c->st);
}

int ofa_ckpt_save(const char *path, const char *recipe_text, const struct ofa_space *sp,
                  const struct ofa_params *p, const struct ofa_train_state *st, int deflate,
                  struct ofa_error *err)
{
    OFA_ASSERT(path && sp && p && st);
    OFA_ASSERT(p->data && p->mom);
    struct ctx c = {path, err};
    if (deflate < 0 || deflate > 9)
        return ofa_error_set(err, path, 0, "deflate level %d is not in 0-9", deflate);
    struct ofa_error serr;
    if (ofa_space_validate(sp, &serr) != 0)
        return ofa_error_set(err, path, 0, "refusing to save an invalid space: %s", serr.msg);
    if (check_names(&c, p) != 0)
        return -1;
    struct ckpt_parts parts = {recipe_text ? recipe_text : "", sp, p, st};
    return save_image(path, err, ofa_mul_size(p->total, 2 * sizeof(float)) + (1u << 20),
                      deflate, build_ckpt, &parts);
}

/* ---- Reading ------------------------------------------------------------------ */

/* Check that every link on the way to the absolute path `obj` exists and is
 * a hard link (no soft or external links into other objects or files).
 * Returns 1 present, 0 missing (err not set), -1 error (err set). */
static int hard_path(const struct ctx *c, hid_t f, const char *obj)
{
    char part[OFA_PARAM_NAMELEN + 64];
    size_t len = strlen(obj);
    if (len >= sizeof part)
        return ofa_error_set(c->err, c->path, 0, "path %s is too long", obj);
    for (const char *s = strchr(obj + 1, '/');; s = strchr(s + 1, '/')) {
        size_t n = s ? (size_t)(s - obj) : len;
        memcpy(part, obj, n);
        part[n] = '\0';
        htri_t ex = H5Lexists(f, part, H5P_DEFAULT);
        if (ex == 0)
            return 0;
        if (ex < 0) /* a component on the way is not a group */
            return ofa_error_set(c->err, c->path, 0, "%s is not a group, so %s is missing",
                                 part, obj);
        H5L_info_t li;
        if (H5Lget_info(f, part, &li, H5P_DEFAULT) < 0)
            return fail(c, "H5Lget_info of %s failed", part);
        if (li.type != H5L_TYPE_HARD)
            return ofa_error_set(c->err, c->path, 0, "%s is a soft or external link", part);
        if (!s)
            return 1;
    }
}

static hid_t open_group(const struct ctx *c, hid_t f, const char *name)
{
    int ex = hard_path(c, f, name);
    if (ex == 0)
        ofa_error_set(c->err, c->path, 0, "missing group %s", name);
    if (ex <= 0)
        return -1;
    hid_t g = H5Gopen2(f, name, H5P_DEFAULT);
    if (g < 0)
        fail(c, "%s is not a group", name);
    return g;
}

/* Describe a datatype for messages: "64-bit float", "string", ... */
static void describe_type(hid_t t, char *buf, size_t n)
{
    H5T_class_t cls = H5Tget_class(t);
    size_t bits = H5Tget_size(t) * 8;
    const char *what = cls == H5T_INTEGER ? "integer" : cls == H5T_FLOAT ? "float" :
                       cls == H5T_STRING ? "string" : cls == H5T_COMPOUND ? "compound" :
                       cls == H5T_ENUM ? "enum" : cls == H5T_ARRAY ? "array" :
                       cls == H5T_VLEN ? "variable-length" : "other";
    snprintf(buf, n, "%zu-bit %s", bits, what);
}

/* Only the storage we write: contiguous, or (tensors) chunked with shuffle
 * and deflate. No compact data, external raw data files, virtual datasets
 * or other filters (which would load plugins named by the environment).
 * Chunks must be of a sane size. *chunked tells which of the two it is. */
static int check_storage(const struct ctx *c, hid_t d, const char *name, size_t elem,
                         int allow_chunked, int *chunked)
{
    hid_t dcpl = H5Dget_create_plist(d);
    if (dcpl < 0)
        return fail(c, "H5Dget_create_plist of %s failed", name);
    int rc = 0;
    H5D_layout_t lay = H5Pget_layout(dcpl);
    int next = H5Pget_external_count(dcpl);
    int nf = H5Pget_nfilters(dcpl);
    *chunked = lay == H5D_CHUNKED;
    if (lay != H5D_CONTIGUOUS && !(allow_chunked && lay == H5D_CHUNKED)) {
        rc = ofa_error_set(c->err, c->path, 0,
                           "%s has a storage layout ofa does not write (only contiguous%s)",
                           name, allow_chunked ? " or chunked" : "");
    } else if (next != 0) {
        rc = ofa_error_set(c->err, c->path, 0, "%s keeps its data in external files", name);
    } else if (nf < 0 || nf > 8) {
        rc = fail(c, "%s has a bad filter pipeline", name);
    } else {
        for (int i = 0; i < nf && rc == 0; i++) {
            unsigned fl, cd[8];
            size_t ncd = 8;
            char fname[64];
            H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &fl, &ncd, cd, sizeof fname,
                                             fname, NULL);
            if (id != H5Z_FILTER_DEFLATE && id != H5Z_FILTER_SHUFFLE)
                rc = ofa_error_set(c->err, c->path, 0,
                                   "%s uses HDF5 filter %d (only deflate and shuffle are "
                                   "accepted)", name, (int)id);
            else if (id == H5Z_FILTER_SHUFFLE && (ncd < 1 || cd[0] != elem))
                rc = ofa_error_set(c->err, c->path, 0, "%s: bad shuffle filter parameters",
                                   name);
        }
    }
    if (rc == 0 && lay == H5D_CHUNKED) {
        hsize_t ch[H5S_MAX_RANK];
        int r = H5Pget_chunk(dcpl, H5S_MAX_RANK, ch);
        double bytes = (double)elem;
        for (int i = 0; i < r; i++)
            bytes *= (double)ch[i];
        if (r < 1 || bytes < 1 || bytes > (double)MAX_CHUNK_BYTES)
            rc = ofa_error_set(c->err, c->path, 0, "%s has an absurd chunk size", name);
    } else if (rc == 0 && nf != 0) {
        rc = ofa_error_set(c->err, c->path, 0, "%s has filters but is not chunked", name);
    }
    H5Pclose(dcpl);
    return rc;
}

/* Chunked tensors are read chunk by chunk, raw, and decoded here (inflate,
 * unshuffle) with every size checked: libhdf5 1.10 trusts a chunk's stored
 * size and filter mask, so a crafted chunk makes H5Dread read past its
 * buffers (found by fuzzing). */
struct chunk_reader {
    const struct ctx *c;
    const char *name;
    int rank;
    hsize_t dims[OFA_PARAM_MAXDIM], cdims[OFA_PARAM_MAXDIM];
    size_t cbytes; /* bytes of one decoded chunk */
    int nf;
    H5Z_filter_t filters[8];
    int swap; /* file byte order differs from the host's */
};

/* dst[region of the chunk at off] = chunk (row-major over cdims). */
static void scatter_chunk(const struct chunk_reader *r, const hsize_t *off,
                          const unsigned char *chunk, float *dst)
{
    size_t ext[OFA_PARAM_MAXDIM], cstride[OFA_PARAM_MAXDIM], dstride[OFA_PARAM_MAXDIM];
    int R = r->rank;
    cstride[R - 1] = dstride[R - 1] = 1;
    for (int k = R - 2; k >= 0; k--) {
        cstride[k] = cstride[k + 1] * (size_t)r->cdims[k + 1];
        dstride[k] = dstride[k + 1] * (size_t)r->dims[k + 1];
    }
    for (int k = 0; k < R; k++) {
        hsize_t left = r->dims[k] - off[k];
        ext[k] = (size_t)(left < r->cdims[k] ? left : r->cdims[k]);
    }
    size_t idx[OFA_PARAM_MAXDIM] = {0};
    for (;;) {
        size_t so = 0, d0 = 0;
        for (int k = 0; k < R - 1; k++) {
            so += idx[k] * cstride[k];
            d0 += ((size_t)off[k] + idx[k]) * dstride[k];
        }
        d0 += (size_t)off[R - 1];
        const unsigned char *src = chunk + so * sizeof(float);
        unsigned char *out = (unsigned char *)(dst + d0);
        size_t nb = ext[R - 1] * sizeof(float);
        if (!r->swap) {
            memcpy(out, src, nb);
        } else {
            for (size_t i = 0; i < nb; i += 4) {
                out[i] = src[i + 3];
                out[i + 1] = src[i + 2];
                out[i + 2] = src[i + 1];
                out[i + 3] = src[i];
            }
        }
        int k = R - 2;
        while (k >= 0 && ++idx[k] == ext[k])
            idx[k--] = 0;
        if (k < 0)
            break;
    }
}

/* Undo the filters of one raw chunk (size bytes in raw; mask: filters
 * skipped for this chunk). Returns the decoded chunk (one of a, b, raw) or
 * NULL with err set. */
static unsigned char *decode_chunk(const struct chunk_reader *r, unsigned char *raw,
                                   size_t size, unsigned mask, unsigned char *a,
                                   unsigned char *b)
{
    unsigned char *cur = raw;
    size_t n = size;
    for (int i = r->nf - 1; i >= 0; i--) {
        if (mask & (1u << i))
            continue;
        unsigned char *out = cur == a ? b : a;
        if (r->filters[i] == H5Z_FILTER_DEFLATE) {
            uLongf outlen = (uLongf)r->cbytes;
            int z = uncompress(out, &outlen, cur, (uLong)n);
            if (z != Z_OK || outlen != r->cbytes) {
                ofa_error_set(r->c->err, r->c->path, 0,
                              "%s: a chunk does not inflate to %zu bytes (damaged file?)",
                              r->name, r->cbytes);
                return NULL;
            }
            n = (size_t)outlen;
        } else { /* shuffle of 4-byte elements */
            if (n != r->cbytes)
                break;
            size_t ne = n / 4;
            for (size_t e = 0; e < ne; e++)
                for (size_t k = 0; k < 4; k++)
                    out[e * 4 + k] = cur[k * ne + e];
        }
        cur = out;
    }
    if (n != r->cbytes) {
        ofa_error_set(r->c->err, r->c->path, 0,
                      "%s: a chunk holds %zu bytes, expected %zu (damaged file?)", r->name, n,
                      r->cbytes);
        return NULL;
    }
    return cur;
}

static int read_chunked(const struct ctx *c, hid_t d, hid_t ty, const char *name,
                        const struct ofa_param *t, float *dst)
{
#if H5_VERSION_GE(1, 10, 5)
    struct chunk_reader r = {.c = c, .name = name, .rank = t->ndim};
    hid_t dcpl = H5Dget_create_plist(d);
    if (dcpl < 0)
        return fail(c, "H5Dget_create_plist of %s failed", name);
    int cr = H5Pget_chunk(dcpl, OFA_PARAM_MAXDIM, r.cdims);
    r.nf = H5Pget_nfilters(dcpl);
    for (int i = 0; i < r.nf && i < 8; i++) {
        unsigned fl, cd[8];
        size_t ncd = 8;
        r.filters[i] = H5Pget_filter2(dcpl, (unsigned)i, &fl, &ncd, cd, 0, NULL, NULL);
    }
    H5Pclose(dcpl);
    if (cr != t->ndim || r.nf < 0 || r.nf > 8)
        return ofa_error_set(c->err, c->path, 0, "%s has a bad chunk layout", name);
    r.cbytes = sizeof(float);
    hsize_t expected = 1;
    for (int k = 0; k < t->ndim; k++) {
        r.dims[k] = (hsize_t)t->shape[k];
        if (r.cdims[k] < 1)
            return ofa_error_set(c->err, c->path, 0, "%s has a bad chunk layout", name);
        r.cbytes *= (size_t)r.cdims[k]; /* bounded by check_storage */
        expected *= (r.dims[k] + r.cdims[k] - 1) / r.cdims[k];
    }
    r.swap = H5Tget_order(ty) != H5Tget_order(H5T_NATIVE_FLOAT);
    hsize_t nch = 0;
    hid_t fsp = H5Dget_space(d);
    if (fsp < 0)
        return fail(c, "H5Dget_space of %s failed", name);
    if (H5Dget_num_chunks(d, fsp, &nch) < 0) {
        fail(c, "H5Dget_num_chunks of %s failed", name);
        H5Sclose(fsp);
        return -1;
    }
    if (nch != expected) {
        H5Sclose(fsp);
        return ofa_error_set(c->err, c->path, 0, "%s has %llu chunks, expected %llu", name,
                             (unsigned long long)nch, (unsigned long long)expected);
    }
    /* A deflated chunk is at most a little larger than its data. */
    size_t max_raw = r.cbytes + r.cbytes / 8 + 4096;
    unsigned char *raw = ofa_xmalloc(max_raw, "chunk buffer");
    unsigned char *a = ofa_xmalloc(r.cbytes, "chunk buffer");
    unsigned char *b = ofa_xmalloc(r.cbytes, "chunk buffer");
    unsigned char *seen = ofa_xcalloc((size_t)expected, 1, "chunk map");
    int rc = 0;
    for (hsize_t i = 0; i < nch && rc == 0; i++) {
        hsize_t off[H5S_MAX_RANK];
        unsigned mask = 0;
        haddr_t addr;
        hsize_t size = 0;
        if (H5Dget_chunk_info(d, fsp, i, off, &mask, &addr, &size) < 0) {
            rc = fail(c, "H5Dget_chunk_info of %s failed", name);
            break;
        }
        size_t lin = 0;
        for (int k = 0; k < t->ndim && rc == 0; k++) {
            if (off[k] % r.cdims[k] != 0 || off[k] >= r.dims[k])
                rc = ofa_error_set(c->err, c->path, 0, "%s: a chunk lies outside the tensor",
                                   name);
            lin = lin * (size_t)((r.dims[k] + r.cdims[k] - 1) / r.cdims[k]) +
                  (size_t)(off[k] / r.cdims[k]);
        }
        if (rc)
            break;
        if (seen[lin]++) {
            rc = ofa_error_set(c->err, c->path, 0, "%s: a chunk is stored twice", name);
            break;
        }
        if (size < 1 || size > max_raw) {
            rc = ofa_error_set(c->err, c->path, 0, "%s: a chunk has an absurd size %llu", name,
                               (unsigned long long)size);
            break;
        }
        /* H5Dread_chunk copies the stored size that H5Dget_chunk_info reported. */
        uint32_t fmask = 0;
        if (H5Dread_chunk(d, H5P_DEFAULT, off, &fmask, raw) < 0) {
            rc = fail(c, "H5Dread_chunk of %s failed (damaged file?)", name);
            break;
        }
        unsigned char *chunk = decode_chunk(&r, raw, (size_t)size, fmask, a, b);
        if (!chunk)
            rc = -1;
        else
            scatter_chunk(&r, off, chunk, dst);
    }
    H5Sclose(fsp);
    free(raw);
    free(a);
    free(b);
    free(seen);
    return rc;
#else
    (void)ty;
    (void)t;
    if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
        return fail(c, "H5Dread of %s failed (damaged file?)", name);
    return 0;
#endif
}

/* Open dataset `name` (absolute) and read its extent: rank 0 for a scalar.
 * Returns the dataset, or -1 with err set (missing datasets are named). */
static hid_t open_dataset(const struct ctx *c, hid_t f, const char *name, int *rank,
                          hsize_t *dims)
{
    int ex = hard_path(c, f, name);
    if (ex == 0)
        ofa_error_set(c->err, c->path, 0, "missing dataset %s", name);
    if (ex <= 0)
        return -1;
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) {
        fail(c, "%s is not a dataset", name);
        return -1;
    }
    hid_t sp = H5Dget_space(d);
    if (sp < 0) {
        fail(c, "H5Dget_space of %s failed", name);
        H5Dclose(d);
        return -1;
    }
    H5S_class_t cls = H5Sget_simple_extent_type(sp);
    int r = cls == H5S_SCALAR ? 0 : cls == H5S_SIMPLE ? H5Sget_simple_extent_ndims(sp) : -1;
    if (r > 0 && (r > H5S_MAX_RANK || H5Sget_simple_extent_dims(sp, dims, NULL) != r))
        r = -1;
    H5Sclose(sp);
    if (r < 0) {
        ofa_error_set(c->err, c->path, 0, "%s has an empty or unreadable dataspace", name);
        H5Dclose(d);
        return -1;
    }
    *rank = r;
    return d;
}

/* Read one parameter tensor into dst after checking dtype, shape, storage. */
static int read_tensor(const struct ctx *c, hid_t f, const char *name,
                       const struct ofa_param *t, float *dst)
{
    int rank;
    hsize_t dims[H5S_MAX_RANK];
    hid_t d = open_dataset(c, f, name, &rank, dims);
    if (d < 0)
        return -1;
    int rc = 0;
    hid_t ty = H5Dget_type(d);
    if (ty < 0) {
        rc = fail(c, "H5Dget_type of %s failed", name);
        goto done;
    }
    /* 32-bit IEEE floats only (either byte order): no silent conversion of
     * doubles or integers into weights. */
    if (H5Tequal(ty, H5T_IEEE_F32LE) <= 0 && H5Tequal(ty, H5T_IEEE_F32BE) <= 0) {
        char got[64];
        describe_type(ty, got, sizeof got);
        rc = ofa_error_set(c->err, c->path, 0, "%s has type %s, expected 32-bit IEEE float",
                           name, got);
        goto done;
    }
    int same = rank == t->ndim;
    for (int i = 0; same && i < rank; i++)
        same = dims[i] == (hsize_t)t->shape[i];
    if (!same) {
        hsize_t want[OFA_PARAM_MAXDIM];
        for (int i = 0; i < t->ndim; i++)
            want[i] = (hsize_t)t->shape[i];
        char a[200], b[200];
        fmt_shape(a, sizeof a, rank, dims);
        fmt_shape(b, sizeof b, t->ndim, want);
        rc = ofa_error_set(c->err, c->path, 0, "%s has shape %s, the recipe expects %s", name,
                           a, b);
        goto done;
    }
    int chunked;
    if (check_storage(c, d, name, sizeof(float), 1, &chunked) != 0) {
        rc = -1;
        goto done;
    }
    /* The file's extent equals the table's, so the read fills exactly
     * numel floats of dst. */
    if (chunked)
        rc = read_chunked(c, d, ty, name, t, dst);
    else if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
        rc = fail(c, "H5Dread of %s failed (damaged file?)", name);
done:
    ofa_h5_close_id(ty);
    H5Dclose(d);
    return rc;
}

struct extras {
    const struct ctx *c;
    const struct ofa_params *p;
    const char *root;
    int optim; /* /optim: untrained tensors are extras too */
    int found; /* err is set */
};

static herr_t extras_cb(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
    struct extras *x = data;
    const char *what = NULL;
    if (info->type != H5L_TYPE_HARD) {
        what = "a soft or external link";
    } else {
        hid_t o = H5Oopen(g, name, H5P_DEFAULT);
        if (o < 0) {
            fail(x->c, "H5Oopen of %s/%s failed", x->root, name);
            x->found = 1;
            return -1;
        }
        H5I_type_t ty = H5Iget_type(o);
        H5Oclose(o);
        if (ty == H5I_GROUP)
            return 0;
        int i = ofa_params_find(x->p, name);
        if (ty != H5I_DATASET)
            what = "an object that is neither a group nor a dataset";
        else if (i < 0)
            what = "not a tensor of the recipe";
        else if (x->optim && (x->p->t[i].flags & OFA_PARAM_NOGRAD))
            what = "momentum of an untrained tensor";
    }
    if (!what)
        return 0;
    ofa_error_set(x->c->err, x->c->path, 0, "%s/%s is %s (first extra object)", x->root, name,
                  what);
    x->found = 1;
    return 1;
}

/* Refuse any dataset below root that is not one of the table's tensors. */
static int check_extras(const struct ctx *c, hid_t f, const char *root,
                        const struct ofa_params *p, int optim)
{
    hid_t g = open_group(c, f, root);
    if (g < 0)
        return -1;
    struct extras x = {c, p, root, optim, 0};
    herr_t r = H5Lvisit(g, H5_INDEX_NAME, H5_ITER_INC, extras_cb, &x);
    H5Gclose(g);
    if (x.found)
        return -1;
    if (r < 0)
        return fail(c, "H5Lvisit of %s failed", root);
    return 0;
}

static int load_tensors(const struct ctx *c, hid_t f, const char *root,
                        const struct ofa_params *p, float *base, int optim)
{
    char name[OFA_PARAM_NAMELEN + 16];
    for (int i = 0; i < p->n; i++) {
        if (optim && (p->t[i].flags & OFA_PARAM_NOGRAD))
            continue;
        snprintf(name, sizeof name, "%s/%s", root, p->t[i].name);
        if (read_tensor(c, f, name, &p->t[i], base + p->t[i].offset) != 0)
            return -1;
    }
    return check_extras(c, f, root, p, optim);
}

/* Read a string dataset of `count` elements (rank <= 1; count 1 may be a
 * scalar), fixed-length or variable-length. Calls fn(i, s, arg) per element;
 * a non-zero return stops. max_bytes bounds each element. */
typedef int (*str_fn)(const char *s, long i, void *arg);

static int read_strings(const struct ctx *c, hid_t f, const char *name, long *count,
                        size_t max_bytes, str_fn fn, void *arg)
{
    int rank;
    hsize_t dims[H5S_MAX_RANK];
    hid_t d = open_dataset(c, f, name, &rank, dims);
    if (d < 0)
        return -1;
    int rc = 0;
    hid_t ty = H5Dget_type(d), mt = -1;
    if (ty < 0) {
        rc = fail(c, "H5Dget_type of %s failed", name);
        goto done;
    }
    if (H5Tget_class(ty) != H5T_STRING || rank > 1) {
        rc = ofa_error_set(c->err, c->path, 0, "%s is not a %s", name,
                           *count == 1 ? "string" : "list of strings");
        goto done;
    }
    long n = rank == 0 ? 1 : dims[0] > 1000000 ? -1 : (long)dims[0];
    if (n < 0 || (*count > 0 && n != *count)) {
        rc = ofa_error_set(c->err, c->path, 0, "%s holds %lld strings, expected %ld", name,
                           rank == 0 ? 1LL : (long long)dims[0], *count);
        goto done;
    }
    *count = n;
    int chunked;
    if (check_storage(c, d, name, H5Tget_size(ty), 0, &chunked) != 0) {
        rc = -1;
        goto done;
    }
    htri_t vl = H5Tis_variable_str(ty);
    if (vl < 0) {
        rc = fail(c, "H5Tis_variable_str of %s failed", name);
        goto done;
    }
    if (vl) {
        mt = H5Tcopy(H5T_C_S1);
        if (mt < 0 || H5Tset_size(mt, H5T_VARIABLE) < 0) {
            rc = fail(c, "cannot make a string type for %s", name);
            goto done;
        }
        char **v = ofa_xcalloc((size_t)(n ? n : 1), sizeof *v, "string list");
        if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) {
            rc = fail(c, "H5Dread of %s failed (damaged file?)", name);
        } else {
            for (long i = 0; i < n && rc == 0; i++) {
                if (!v[i] || strlen(v[i]) > max_bytes)
                    rc = ofa_error_set(c->err, c->path, 0, "%s: string %ld is null or too long",
                                       name, i);
                else
                    rc = fn(v[i], i, arg);
            }
        }
        /* Free what HDF5 allocated, also after a read that failed part way. */
        for (long i = 0; i < n; i++)
            if (v[i])
                H5free_memory(v[i]);
        free(v);
    } else {
        size_t sz = H5Tget_size(ty);
        if (sz == 0 || sz > max_bytes) {
            rc = ofa_error_set(c->err, c->path, 0, "%s has a bad string size %zu", name, sz);
            goto done;
        }
        mt = H5Tcopy(ty);
        if (mt < 0) {
            rc = fail(c, "H5Tcopy of the type of %s failed", name);
            goto done;
        }
        /* One spare byte after the last element so every string ends in NUL. */
        char *buf = ofa_xcalloc(ofa_mul_size((size_t)(n ? n : 1), sz) + 1, 1, "strings");
        char *one = ofa_xmalloc(sz + 1, "string");
        if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
            rc = fail(c, "H5Dread of %s failed (damaged file?)", name);
        } else {
            for (long i = 0; i < n && rc == 0; i++) {
                memcpy(one, buf + (size_t)i * sz, sz);
                one[sz] = '\0';
                rc = fn(one, i, arg);
            }
        }
        free(one);
        free(buf);
    }
done:
    ofa_h5_close_id(mt);
    ofa_h5_close_id(ty);
    H5Dclose(d);
    return rc;
}

struct order_arg {
    const struct ctx *c;
    const struct ofa_params *p;
    unsigned char *seen;
};

static int order_fn(const char *s, long i, void *arg)
{
    (void)i;
    struct order_arg *o = arg;
    int k = ofa_params_find(o->p, s);
    if (k < 0)
        return ofa_error_set(o->c->err, o->c->path, 0,
                             "/order names \"%.100s\", which is not a tensor of the recipe", s);
    if (o->seen[k]++)
        return ofa_error_set(o->c->err, o->c->path, 0, "/order names \"%s\" twice", s);
    return 0;
}

static int check_order(const struct ctx *c, hid_t f, const struct ofa_params *p)
{
    struct order_arg o = {c, p, ofa_xcalloc((size_t)p->n, 1, "order check")};
    long n = p->n;
    int rc = read_strings(c, f, "/order", &n, MAX_NAME_BYTES, order_fn, &o);
    free(o.seen);
    return rc;
}

static int copy_fn(const char *s, long i, void *arg)
{
    (void)i;
    *(char **)arg = strdup(s);
    if (!*(char **)arg)
        ofa_fatal("out of memory copying the recipe text");
    return 0;
}

/* Kinds of attribute values. */
enum akind { AK_STR, AK_INT, AK_U64, AK_FLOAT };

/* Open attribute `name` of obj and check its class and element count
 * (count 1: scalar or one element). */
static hid_t open_attr(const struct ctx *c, hid_t obj, const char *objname, const char *name,
                       enum akind kind, int count, hid_t *type)
{
    *type = -1;
    htri_t ex = H5Aexists(obj, name);
    if (ex < 0) {
        fail(c, "H5Aexists of attribute %s of %s failed", name, objname);
        return -1;
    }
    if (ex == 0) {
        ofa_error_set(c->err, c->path, 0, "%s has no attribute \"%s\"", objname, name);
        return -1;
    }
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) {
        fail(c, "H5Aopen of attribute %s of %s failed", name, objname);
        return -1;
    }
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    int ok = t >= 0 && sp >= 0;
    if (ok) {
        H5S_class_t sc = H5Sget_simple_extent_type(sp);
        int r = sc == H5S_SIMPLE ? H5Sget_simple_extent_ndims(sp) : sc == H5S_SCALAR ? 0 : -1;
        hssize_t np = H5Sget_simple_extent_npoints(sp);
        ok = r >= 0 && r <= 1 && np == count && (count == 1 || r == 1);
    }
    H5T_class_t cls = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    size_t sz = t >= 0 ? H5Tget_size(t) : 0;
    const char *want = "";
    switch (kind) {
    case AK_STR:
        want = "a string";
        ok = ok && cls == H5T_STRING;
        break;
    case AK_INT:
        want = "an integer";
        ok = ok && cls == H5T_INTEGER && sz <= 8;
        break;
    case AK_U64:
        want = count == 1 ? "an unsigned 64-bit integer" : "unsigned 64-bit integers";
        ok = ok && cls == H5T_INTEGER && sz == 8 && H5Tget_sign(t) == H5T_SGN_NONE;
        break;
    case AK_FLOAT:
        want = "a float";
        ok = ok && cls == H5T_FLOAT && (sz == 4 || sz == 8);
        break;
    }
    ofa_h5_close_id(sp);
    if (!ok) {
        if (count == 1)
            ofa_error_set(c->err, c->path, 0, "attribute \"%s\" of %s is not %s", name, objname,
                          want);
        else
            ofa_error_set(c->err, c->path, 0, "attribute \"%s\" of %s is not %d %s", name,
                          objname, count, want);
        ofa_h5_close_id(t);
        H5Aclose(a);
        return -1;
    }
    *type = t;
    return a;
}

static int read_attr_num(const struct ctx *c, hid_t obj, const char *objname, const char *name,
                         enum akind kind, int count, void *out)
{
    hid_t t, a = open_attr(c, obj, objname, name, kind, count, &t);
    if (a < 0)
        return -1;
    hid_t mt = kind == AK_INT ? H5T_NATIVE_INT64 : kind == AK_U64 ? H5T_NATIVE_UINT64
                                                                  : H5T_NATIVE_DOUBLE;
    int rc = 0;
    if (H5Aread(a, mt, out) < 0)
        rc = fail(c, "H5Aread of attribute %s of %s failed", name, objname);
    H5Tclose(t);
    H5Aclose(a);
    return rc;
}

/* An integer attribute within [lo, hi]. */
static int read_int(const struct ctx *c, hid_t obj, const char *objname, const char *name,
                    int64_t lo, int64_t hi, int64_t *v)
{
    if (read_attr_num(c, obj, objname, name, AK_INT, 1, v) != 0)
        return -1;
    if (*v < lo || *v > hi)
        return ofa_error_set(c->err, c->path, 0,
                             "attribute \"%s\" of %s is %lld, outside [%lld, %lld]", name,
                             objname, (long long)*v, (long long)lo, (long long)hi);
    return 0;
}

static int read_attr_str(const struct ctx *c, hid_t obj, const char *objname, const char *name,
                         char *out, size_t cap)
{
    hid_t t, a = open_attr(c, obj, objname, name, AK_STR, 1, &t);
    if (a < 0)
        return -1;
    int rc = 0;
    htri_t vl = H5Tis_variable_str(t);
    hid_t mt = vl >= 0 ? H5Tcopy(t) : -1;
    if (mt < 0) {
        rc = fail(c, "cannot read the string type of attribute %s", name);
    } else if (vl) {
        char *s = NULL;
        if (H5Aread(a, mt, &s) < 0 || !s)
            rc = fail(c, "H5Aread of attribute %s of %s failed", name, objname);
        else
            snprintf(out, cap, "%s", s);
        if (s)
            H5free_memory(s);
    } else {
        size_t sz = H5Tget_size(t);
        if (sz == 0 || sz > MAX_NAME_BYTES) {
            rc = ofa_error_set(c->err, c->path, 0, "attribute \"%s\" has a bad string size %zu",
                               name, sz);
        } else {
            char *buf = ofa_xcalloc(sz + 1, 1, "attribute");
            if (H5Aread(a, mt, buf) < 0)
                rc = fail(c, "H5Aread of attribute %s of %s failed", name, objname);
            else
                snprintf(out, cap, "%s", buf);
            free(buf);
        }
    }
    ofa_h5_close_id(mt);
    H5Tclose(t);
    H5Aclose(a);
    return rc;
}

/* Open path read-only (at most max_bytes; integrity header checked) and
 * check the root's format and version (what: the kind of file, for
 * messages: "an ofa subnet file"). */
static hid_t open_checked(const struct ctx *c, const char *format, int version,
                          const char *what, size_t max_bytes)
{
    hid_t f = ofa_h5_open(c->path, OFA_H5_MAGIC, what, max_bytes, c->err);
    if (f < 0)
        return -1;
    char fmt[256];
    int64_t ver;
    htri_t has = H5Aexists(f, "format");
    if (has <= 0) {
        if (has < 0)
            fail(c, "H5Aexists of the root attribute format failed");
        else
            ofa_error_set(c->err, c->path, 0, "not %s (no root attribute \"format\")", what);
        goto bad;
    }
    if (read_attr_str(c, f, "/", "format", fmt, sizeof fmt) != 0)
        goto bad;
    if (strcmp(fmt, format) != 0) {
        ofa_error_set(c->err, c->path, 0, "not %s (format is \"%.100s\", expected \"%s\")",
                      what, fmt, format);
        goto bad;
    }
    if (read_int(c, f, "/", "format_version", 1, INT32_MAX, &ver) != 0)
        goto bad;
    if (ver > version) {
        ofa_error_set(c->err, c->path, 0,
                      "format_version %lld is newer than this ofa reads (%d): written by a "
                      "newer ofa, upgrade to load it", (long long)ver, version);
        goto bad;
    }
    return f;
bad:
    H5Fclose(f);
    return -1;
}

static int read_recipe(const char *path, char **recipe_text, struct ofa_error *err)
{
    struct ctx c = {path, err};
    struct ofa_h5quiet q;
    ofa_h5_quiet_on(&q);
    int rc = -1;
    hid_t f = open_checked(&c, OFA_CKPT_FORMAT, OFA_CKPT_VERSION, "an ofa supernet checkpoint",
                            MAX_CKPT_BYTES);
    if (f >= 0) {
        long one = 1;
        char *text = NULL;
        rc = read_strings(&c, f, "/recipe", &one, MAX_RECIPE_BYTES, copy_fn, &text);
        if (H5Fclose(f) < 0 && rc == 0)
            rc = fail(&c, "H5Fclose failed");
        if (rc == 0)
            *recipe_text = text;
        else
            free(text);
    }
    ofa_h5_quiet_off(&q);
    return rc;
}

static int read_state(const struct ctx *c, hid_t f, struct ofa_train_state *st)
{
    hid_t g = open_group(c, f, "/state");
    if (g < 0)
        return -1;
    const char *gn = "/state";
    int64_t epoch, step, phase, sorted, images;
    double elapsed, gflop = 0.0;
    uint64_t rng[4], hash;
    int rc = read_int(c, g, gn, "epoch", 0, LONG_MAX, &epoch) ||
             read_int(c, g, gn, "step", 0, LONG_MAX, &step) ||
             read_int(c, g, gn, "phase", 0, INT_MAX, &phase) ||
             read_int(c, g, gn, "channels_sorted", 0, 1, &sorted) ||
             read_attr_num(c, g, gn, "rng", AK_U64, 4, rng) ||
             read_attr_num(c, g, gn, "elapsed", AK_FLOAT, 1, &elapsed) ||
             read_int(c, g, gn, "images_seen", 0, INT64_MAX, &images) ||
             read_attr_num(c, g, gn, "data_hash", AK_U64, 1, &hash)
                 ? -1 : 0;
    /* train_gflop is optional: checkpoints written before it was recorded
     * resume with the count starting from 0. */
    if (rc == 0) {
        htri_t has = H5Aexists(g, "train_gflop");
        if (has < 0)
            rc = fail(c, "H5Aexists of attribute train_gflop of /state failed");
        else if (has > 0)
            rc = read_attr_num(c, g, gn, "train_gflop", AK_FLOAT, 1, &gflop);
    }
    H5Gclose(g);
    if (rc)
        return -1;
    if (!(elapsed >= 0 && isfinite(elapsed)))
        return ofa_error_set(c->err, c->path, 0, "/state: elapsed is %g", elapsed);
    if (!(gflop >= 0 && isfinite(gflop)))
        return ofa_error_set(c->err, c->path, 0, "/state: train_gflop is %g", gflop);
    if ((rng[0] | rng[1] | rng[2] | rng[3]) == 0)
        return ofa_error_set(c->err, c->path, 0, "/state: the rng state is all zeros");
    st->epoch = (long)epoch;
    st->step = (long)step;
    st->phase = (int)phase;
    st->channels_sorted = (int)sorted;
    memcpy(st->rng.s, rng, sizeof rng);
    st->elapsed = elapsed;
    st->images_seen = (long long)images;
    st->data_hash = hash;
    st->train_gflop = gflop;
    return 0;
}

static int load_ckpt(const char *path, struct ofa_params *p, struct ofa_train_state *st,
                     struct ofa_error *err)
{
    struct ctx c = {path, err};
    struct ofa_h5quiet q;
    ofa_h5_quiet_on(&q);
    int rc = -1;
    float *data = NULL, *mom = NULL;
    hid_t f = open_checked(&c, OFA_CKPT_FORMAT, OFA_CKPT_VERSION, "an ofa supernet checkpoint",
                            MAX_CKPT_BYTES);
    if (f < 0)
        goto out;
    if (check_names(&c, p) != 0)
        goto out;
    /* Scratch copies: p changes only once the whole file has been read. */
    size_t bytes = ofa_mul_size(p->total, sizeof(float));
    data = ofa_xmalloc(bytes, "checkpoint scratch buffer");
    mom = ofa_xmalloc(bytes, "checkpoint scratch buffer");
    memcpy(data, p->data, bytes);
    memcpy(mom, p->mom, bytes);
    struct ofa_train_state tst;
    hid_t cfg = open_group(&c, f, "/config");
    if (cfg < 0)
        goto out;
    H5Gclose(cfg);
    if (load_tensors(&c, f, "/params", p, data, 0) != 0 ||
        load_tensors(&c, f, "/optim", p, mom, 1) != 0 || check_order(&c, f, p) != 0 ||
        read_state(&c, f, &tst) != 0)
        goto out;
    herr_t cr = H5Fclose(f);
    f = -1;
    if (cr < 0) {
        fail(&c, "H5Fclose failed");
        goto out;
    }
    memcpy(p->data, data, bytes);
    memcpy(p->mom, mom, bytes);
    *st = tst;
    rc = 0;
out:
    if (f >= 0)
        H5Fclose(f);
    free(data);
    free(mom);
    ofa_h5_quiet_off(&q);
    return rc;
}

/* ---- Fingerprints and subnet records ------------------------------------------- */

uint64_t ofa_ckpt_fingerprint(const char *recipe_text, const struct ofa_train_state *st)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)recipe_text; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    const uint64_t v[4] = {(uint64_t)st->step, (uint64_t)st->images_seen, st->data_hash,
                           (uint64_t)st->epoch};
    for (int i = 0; i < 4; i++)
        for (int b = 0; b < 8; b++)
            h = (h ^ ((v[i] >> (8 * b)) & 0xff)) * 1099511628211ULL;
    return h;
}

static int put_f64(const struct writer *w, hid_t obj, const char *name, double v)
{
    return put_attr(w, obj, "/", name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 0, &v);
}

static int build_record(const struct writer *w, hid_t f, const void *arg)
{
    const struct ofa_subnet_record *r = arg;
    const int version = OFA_SUBNET_VERSION;
    const uint64_t fp = r->supernet_fingerprint;
    int rc = put_attr_str(w, f, "/", "format", OFA_SUBNET_FORMAT);
    rc = rc ? rc : put_i32(w, f, "/", "format_version", 0, &version);
    rc = rc ? rc : put_attr_str(w, f, "/", "created_by", PACKAGE_NAME " " PACKAGE_VERSION);
    rc = rc ? rc : put_attr_str(w, f, "/", "subnet", r->subnet);
    rc = rc ? rc : put_attr_str(w, f, "/", "device", r->device);
    rc = rc ? rc : put_attr_str(w, f, "/", "latency_model", r->latency_model);
    rc = rc ? rc : put_attr(w, f, "/", "supernet_fingerprint", H5T_STD_U64LE, H5T_NATIVE_UINT64,
                            0, &fp);
    const struct {
        const char *name;
        double v;
    } nums[] = {
        {"acc_predicted", r->acc_predicted},
        {"acc_measured", r->acc_measured},
        {"latency_predicted_ms", r->latency_predicted_ms},
        {"latency_measured_ms", r->latency_measured_ms},
        {"mmacs", r->mmacs},
        {"budget_latency_ms", r->budget_latency_ms},
        {"budget_flash_kb", r->budget_flash_kb},
        {"budget_sram_kb", r->budget_sram_kb},
        {"budget_mmacs", r->budget_mmacs},
    };
    for (size_t i = 0; rc == 0 && i < sizeof nums / sizeof nums[0]; i++)
        rc = put_f64(w, f, nums[i].name, nums[i].v);
    rc = rc ? rc : put_i64(w, f, "/", "params", r->params);
    rc = rc ? rc : put_i64(w, f, "/", "flash_bytes", r->flash_bytes);
    rc = rc ? rc : put_i64(w, f, "/", "sram_bytes", r->sram_bytes);
    return rc;
}

int ofa_subnet_record_save(const char *path, const struct ofa_subnet_record *r,
                           struct ofa_error *err)
{
    OFA_ASSERT(path && r);
    return save_image(path, err, 1u << 16, 0, build_record, r);
}

static int load_record(const char *path, struct ofa_subnet_record *r, struct ofa_error *err)
{
    struct ctx c = {path, err};
    struct ofa_subnet_record t;
    memset(&t, 0, sizeof t);
    struct ofa_h5quiet q;
    ofa_h5_quiet_on(&q);
    int rc = -1;
    hid_t f = open_checked(&c, OFA_SUBNET_FORMAT, OFA_SUBNET_VERSION, "an ofa subnet file",
                            MAX_SUBNET_BYTES);
    if (f >= 0) {
        int64_t params, flash, sram;
        uint64_t fp;
        double *nums[] = {&t.acc_predicted, &t.acc_measured, &t.latency_predicted_ms,
                          &t.latency_measured_ms, &t.mmacs, &t.budget_latency_ms,
                          &t.budget_flash_kb, &t.budget_sram_kb, &t.budget_mmacs};
        static const char *const names[] = {
            "acc_predicted", "acc_measured", "latency_predicted_ms", "latency_measured_ms",
            "mmacs", "budget_latency_ms", "budget_flash_kb", "budget_sram_kb", "budget_mmacs"};
        rc = read_attr_str(&c, f, "/", "subnet", t.subnet, sizeof t.subnet);
        rc = rc ? rc : read_attr_str(&c, f, "/", "device", t.device, sizeof t.device);
        rc = rc ? rc : read_attr_str(&c, f, "/", "latency_model", t.latency_model,
                                     sizeof t.latency_model);
        rc = rc ? rc : read_attr_num(&c, f, "/", "supernet_fingerprint", AK_U64, 1, &fp);
        for (size_t i = 0; rc == 0 && i < sizeof names / sizeof names[0]; i++)
            rc = read_attr_num(&c, f, "/", names[i], AK_FLOAT, 1, nums[i]);
        rc = rc ? rc : read_int(&c, f, "/", "params", 0, INT64_MAX, &params);
        rc = rc ? rc : read_int(&c, f, "/", "flash_bytes", 0, INT64_MAX, &flash);
        rc = rc ? rc : read_int(&c, f, "/", "sram_bytes", 0, INT64_MAX, &sram);
        if (H5Fclose(f) < 0 && rc == 0)
            rc = fail(&c, "H5Fclose failed");
        if (rc == 0) {
            t.supernet_fingerprint = fp;
            t.params = params, t.flash_bytes = flash, t.sram_bytes = sram;
            *r = t;
        }
    }
    ofa_h5_quiet_off(&q);
    return rc;
}

/* ---- The public loaders: guarded against libhdf5 crashes (ofa_h5_guarded) ---- */

struct load_call {
    const char *path;
    struct ofa_error *err;
    char **recipe_text;
    struct ofa_params *p;
    struct ofa_train_state *st;
    struct ofa_subnet_record *r;
};

static int call_read_recipe(void *a)
{
    struct load_call *c = a;
    return read_recipe(c->path, c->recipe_text, c->err);
}

static int call_load_ckpt(void *a)
{
    struct load_call *c = a;
    return load_ckpt(c->path, c->p, c->st, c->err);
}

static int call_load_record(void *a)
{
    struct load_call *c = a;
    return load_record(c->path, c->r, c->err);
}

int ofa_ckpt_read_recipe(const char *path, char **recipe_text, struct ofa_error *err)
{
    OFA_ASSERT(path && recipe_text);
    *recipe_text = NULL;
    struct load_call c = {.path = path, .err = err, .recipe_text = recipe_text};
    return ofa_h5_guarded(path, call_read_recipe, &c, err);
}

int ofa_ckpt_load(const char *path, struct ofa_params *p, struct ofa_train_state *st,
                  struct ofa_error *err)
{
    OFA_ASSERT(path && p && st && p->data && p->mom);
    struct load_call c = {.path = path, .err = err, .p = p, .st = st};
    return ofa_h5_guarded(path, call_load_ckpt, &c, err);
}

int ofa_subnet_record_load(const char *path, struct ofa_subnet_record *r, struct ofa_error *err)
{
    OFA_ASSERT(path && r);
    struct load_call c = {.path = path, .err = err, .r = r};
    return ofa_h5_guarded(path, call_load_record, &c, err);
}
