/* data_h5.c: the data.h5 file (layout in docs/data-format.md).
 *
 * Writing goes to a temporary file in the destination's directory that is
 * renamed over the destination only once it is complete and synced. Loading
 * trusts nothing: every object's presence, type class, element size, rank
 * and shape is checked before anything is read, sizes are capped by the
 * file's own size, and labels and split indices are range-checked. HDF5's
 * automatic error printing is switched off while we work; its failures
 * become a struct ofa_error naming the object.
 */
#include <config.h>

#include "data.h"
#include "h5file.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NAME_LEN (OFA_DATA_MAX_CLASS_NAME + 1)

/* The file starts with the integrity header (h5file.h), checked before
 * libhdf5 parses a byte. */
#define DATA_WHAT "a data.h5 written by ofa-data"

/* ---- Writing ------------------------------------------------------------------ */

static int put_attr_str(hid_t obj, const char *name, const char *val)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    size_t n = strlen(val);
    H5Tset_size(t, n ? n : 1);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    int ok = a >= 0 && H5Awrite(a, t, n ? val : "") >= 0;
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return ok ? 0 : -1;
}

static int put_attr(hid_t obj, const char *name, hid_t ftype, hid_t mtype, int n,
                    const void *val)
{
    hsize_t d = (hsize_t)n;
    hid_t sp = n == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &d, NULL);
    hid_t a = H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    int ok = a >= 0 && H5Awrite(a, mtype, val) >= 0;
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    return ok ? 0 : -1;
}

static int put_dataset(hid_t loc, const char *name, hid_t ftype, hid_t mtype, int rank,
                       const hsize_t *dims, const void *data)
{
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(loc, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t total = 1;
    for (int i = 0; i < rank; i++)
        total *= dims[i];
    int ok = d >= 0 && (total == 0 || H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    if (d >= 0)
        H5Dclose(d);
    H5Sclose(sp);
    return ok ? 0 : -1;
}

static int write_images(hid_t file, const char *group, const struct ofa_images *im)
{
    hid_t g = H5Gcreate2(file, group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0)
        return -1;
    hsize_t d4[4] = {(hsize_t)im->n, (hsize_t)im->h, (hsize_t)im->w, (hsize_t)im->c};
    hsize_t d1[1] = {(hsize_t)im->n};
    int rc = put_dataset(g, "images", H5T_STD_U8LE, H5T_NATIVE_UINT8, 4, d4, im->pixels);
    if (rc == 0)
        rc = put_dataset(g, "labels", H5T_STD_I32LE, H5T_NATIVE_INT, 1, d1, im->labels);
    H5Gclose(g);
    return rc;
}

static int write_all(hid_t f, const struct ofa_dataset *ds)
{
    int32_t ver = OFA_DATA_FORMAT_VERSION, K = ds->num_classes, nv = ds->n_val;
    uint64_t seed = ds->split_seed;
    int C = ds->train.c;
    if (put_attr_str(f, "format", OFA_DATA_FORMAT) ||
        put_attr(f, "format_version", H5T_STD_I32LE, H5T_NATIVE_INT32, 0, &ver) ||
        put_attr_str(f, "created_by", PACKAGE_NAME "-data " PACKAGE_VERSION) ||
        put_attr_str(f, "source", ds->source) ||
        put_attr(f, "num_classes", H5T_STD_I32LE, H5T_NATIVE_INT32, 0, &K) ||
        put_attr(f, "split_seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, 0, &seed) ||
        put_attr(f, "val_size", H5T_STD_I32LE, H5T_NATIVE_INT32, 0, &nv) ||
        put_attr(f, "mean", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, C, ds->mean) ||
        put_attr(f, "std", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, C, ds->std))
        return -1;
    /* Class names: a dataset, not an attribute (object headers cap at 64 KiB). */
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, NAME_LEN);
    H5Tset_strpad(st, H5T_STR_NULLTERM);
    hsize_t dk = (hsize_t)K;
    int rc = put_dataset(f, "class_names", st, st, 1, &dk, ds->class_names);
    H5Tclose(st);
    if (rc || write_images(f, "/train", &ds->train) || write_images(f, "/test", &ds->test))
        return -1;
    hid_t g = H5Gcreate2(f, "/split", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0)
        return -1;
    hsize_t dt = (hsize_t)ds->n_train, dv = (hsize_t)ds->n_val;
    rc = put_dataset(g, "train", H5T_STD_I32LE, H5T_NATIVE_INT, 1, &dt, ds->train_index);
    if (rc == 0)
        rc = put_dataset(g, "val", H5T_STD_I32LE, H5T_NATIVE_INT, 1, &dv, ds->val_index);
    H5Gclose(g);
    return rc;
}

int ofa_dataset_seal(const char *path, struct ofa_error *err)
{
    return ofa_h5_header_seal(path, OFA_H5_MAGIC_DATA, err);
}

int ofa_dataset_save(const struct ofa_dataset *ds, const char *path, struct ofa_error *err)
{
    OFA_ASSERT(ds->train_index && ds->n_train + ds->n_val == ds->train.n);
    size_t n = strlen(path);
    char *tmp = ofa_xmalloc(n + 16, "temporary name");
    snprintf(tmp, n + 16, "%s.tmp.XXXXXX", path);
    ofa_tmp_register(tmp); /* mkstemp fills in the name in place */
    int fd = mkstemp(tmp);
    if (fd < 0) {
        ofa_error_set(err, path, 0, "cannot create a temporary file next to it: %s",
                      strerror(errno));
        ofa_tmp_unregister(tmp);
        free(tmp);
        return -1;
    }
    mode_t um = umask(0); /* mkstemp makes 0600; data.h5 gets the usual 0666 & ~umask */
    umask(um);
    if (fchmod(fd, 0666 & ~um) != 0) {
        /* not fatal: the file stays private */
    }
    close(fd);
    struct ofa_h5quiet q;
    ofa_h5_quiet_on(&q);
    int rc = -1;
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    H5Pset_userblock(fcpl, OFA_H5_UB_SIZE);
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    H5Pclose(fcpl);
    if (f < 0) {
        ofa_error_set(err, tmp, 0, "HDF5 cannot create the file");
        goto out;
    }
    if (write_all(f, ds) != 0 || H5Fflush(f, H5F_SCOPE_GLOBAL) < 0) {
        H5Fclose(f);
        ofa_error_set(err, path, 0, "HDF5 write failed (disk full?)");
        goto out;
    }
    if (H5Fclose(f) < 0) {
        ofa_error_set(err, path, 0, "HDF5 could not close the file (disk full?)");
        goto out;
    }
    if (ofa_dataset_seal(tmp, err))
        goto out;
    if (rename(tmp, path) != 0) {
        ofa_error_set(err, path, 0, "cannot rename the temporary file into place: %s",
                      strerror(errno));
        goto out;
    }
    rc = 0;
out:
    ofa_h5_quiet_off(&q);
    if (rc)
        unlink(tmp);
    ofa_tmp_unregister(tmp);
    free(tmp);
    return rc;
}

/* ---- Loading ------------------------------------------------------------------ */

struct loadctx {
    hid_t f;
    const char *name;
    uint64_t file_size;
    struct ofa_error *err;
};

static int attr_open(struct loadctx *c, const char *name, hid_t *a)
{
    htri_t ex = H5Aexists(c->f, name);
    if (ex <= 0)
        return ofa_error_set(c->err, c->name, 0, "missing root attribute \"%s\"", name);
    *a = H5Aopen(c->f, name, H5P_DEFAULT);
    if (*a < 0)
        return ofa_error_set(c->err, c->name, 0, "cannot open root attribute \"%s\"", name);
    return 0;
}

/* Number of elements of an attribute's dataspace (scalar = 1), -1 on error. */
static long long attr_npoints(hid_t a)
{
    hid_t sp = H5Aget_space(a);
    if (sp < 0)
        return -1;
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    int rank = H5Sget_simple_extent_ndims(sp);
    H5Sclose(sp);
    return rank > 1 ? -1 : (long long)n;
}

static int get_attr_str(struct loadctx *c, const char *name, char *out, size_t cap)
{
    hid_t a;
    if (attr_open(c, name, &a))
        return -1;
    int rc = -1;
    hid_t t = H5Aget_type(a);
    if (t < 0 || H5Tget_class(t) != H5T_STRING || attr_npoints(a) != 1) {
        ofa_error_set(c->err, c->name, 0, "root attribute \"%s\" is not a single string", name);
        goto done;
    }
    if (H5Tis_variable_str(t) > 0) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        char *s = NULL;
        if (H5Aread(a, mt, &s) >= 0 && s) {
            snprintf(out, cap, "%s", s);
            H5free_memory(s);
            rc = 0;
        }
        H5Tclose(mt);
    } else {
        size_t n = H5Tget_size(t);
        if (n == 0 || n > 65536) {
            ofa_error_set(c->err, c->name, 0, "root attribute \"%s\" has a bad string size %zu",
                          name, n);
            goto done;
        }
        char *buf = ofa_xcalloc(n + 1, 1, "attribute");
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, n);
        if (H5Aread(a, mt, buf) >= 0) {
            buf[n] = '\0';
            snprintf(out, cap, "%s", buf);
            rc = 0;
        }
        H5Tclose(mt);
        free(buf);
    }
    if (rc)
        ofa_error_set(c->err, c->name, 0, "cannot read root attribute \"%s\"", name);
done:
    if (t >= 0)
        H5Tclose(t);
    H5Aclose(a);
    return rc;
}

static int get_attr_int(struct loadctx *c, const char *name, long long *out)
{
    hid_t a;
    if (attr_open(c, name, &a))
        return -1;
    int rc = -1;
    hid_t t = H5Aget_type(a);
    if (t < 0 || H5Tget_class(t) != H5T_INTEGER || attr_npoints(a) != 1) {
        ofa_error_set(c->err, c->name, 0, "root attribute \"%s\" is not a single integer", name);
    } else if (H5Tget_sign(t) == H5T_SGN_NONE) {
        unsigned long long v;
        rc = H5Aread(a, H5T_NATIVE_ULLONG, &v) >= 0 ? 0 : -1;
        *out = (long long)v;
    } else {
        rc = H5Aread(a, H5T_NATIVE_LLONG, out) >= 0 ? 0 : -1;
    }
    if (rc && t >= 0 && H5Tget_class(t) == H5T_INTEGER)
        ofa_error_set(c->err, c->name, 0, "cannot read root attribute \"%s\"", name);
    if (t >= 0)
        H5Tclose(t);
    H5Aclose(a);
    return rc;
}

enum dkind { DK_U8, DK_INT, DK_STR };

/* Open path as a dataset of the given kind and rank; dims filled. */
static int open_dataset(struct loadctx *c, const char *path, enum dkind kind, int rank,
                        hsize_t *dims, hid_t *out)
{
    *out = -1;
    /* Check each link on the way, so that a missing group is reported
     * instead of making H5Lexists fail. */
    char part[256];
    for (const char *p = strchr(path + 1, '/'); ; p = strchr(p + 1, '/')) {
        size_t n = p ? (size_t)(p - path) : strlen(path);
        if (n >= sizeof part)
            return ofa_error_set(c->err, c->name, 0, "path too long");
        memcpy(part, path, n);
        part[n] = '\0';
        if (H5Lexists(c->f, part, H5P_DEFAULT) <= 0)
            return ofa_error_set(c->err, c->name, 0, "missing dataset \"%s\"%s", path,
                                 p ? " (its group is missing)" : "");
        if (!p)
            break;
    }
    hid_t d = H5Dopen2(c->f, path, H5P_DEFAULT);
    if (d < 0)
        return ofa_error_set(c->err, c->name, 0, "\"%s\" is not a readable dataset", path);
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    const char *want = kind == DK_U8 ? "unsigned 8-bit integers" :
                       kind == DK_INT ? "integers" : "fixed-length strings";
    int ok = t >= 0 && sp >= 0;
    H5T_class_t cls = ok ? H5Tget_class(t) : H5T_NO_CLASS;
    size_t sz = ok ? H5Tget_size(t) : 0;
    if (kind == DK_U8)
        ok = ok && cls == H5T_INTEGER && sz == 1 && H5Tget_sign(t) == H5T_SGN_NONE;
    else if (kind == DK_INT)
        ok = ok && cls == H5T_INTEGER && sz <= 8;
    else
        ok = ok && cls == H5T_STRING && H5Tis_variable_str(t) == 0 && sz >= 1 && sz <= 4096;
    if (!ok) {
        static const char *const cname[] = {"integer", "float", "time", "string", "bitfield",
                                            "opaque", "compound", "reference", "enum",
                                            "variable-length", "array"};
        ofa_error_set(c->err, c->name, 0, "dataset \"%s\" has the wrong type: %s of %zu "
                      "bytes, expected %s", path,
                      cls >= 0 && cls <= 10 ? cname[cls] : "unknown", sz, want);
        goto fail;
    }
    int r = H5Sget_simple_extent_ndims(sp);
    if (r != rank) {
        ofa_error_set(c->err, c->name, 0, "dataset \"%s\" has rank %d, expected %d", path, r,
                      rank);
        goto fail;
    }
    H5Sget_simple_extent_dims(sp, dims, NULL);
    /* Cap: no dataset may claim more than the file could hold compressed. */
    uint64_t bytes = sz;
    for (int i = 0; i < rank; i++) {
        if (dims[i] > (hsize_t)INT32_MAX || (dims[i] && bytes > UINT64_MAX / 8 / dims[i])) {
            bytes = UINT64_MAX;
            break;
        }
        bytes *= dims[i];
    }
    if (bytes > c->file_size * 1040 + (1u << 20)) {
        ofa_error_set(c->err, c->name, 0, "dataset \"%s\" claims more data than the file "
                      "(%llu bytes) can hold", path, (unsigned long long)c->file_size);
        goto fail;
    }
    H5Tclose(t);
    H5Sclose(sp);
    *out = d;
    return 0;
fail:
    if (t >= 0)
        H5Tclose(t);
    if (sp >= 0)
        H5Sclose(sp);
    H5Dclose(d);
    return -1;
}

static int read_dataset(struct loadctx *c, hid_t d, const char *path, hid_t mtype, void *buf,
                        hsize_t n)
{
    if (n == 0)
        return 0;
    if (H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        return ofa_error_set(c->err, c->name, 0, "cannot read dataset \"%s\" (corrupt file?)",
                             path);
    return 0;
}

static int load_images(struct loadctx *c, const char *group, int K, struct ofa_images *im)
{
    char pi[64], pl[64];
    snprintf(pi, sizeof pi, "%s/images", group);
    snprintf(pl, sizeof pl, "%s/labels", group);
    hsize_t d4[4], d1[1];
    hid_t di, dl;
    if (open_dataset(c, pi, DK_U8, 4, d4, &di))
        return -1;
    if (open_dataset(c, pl, DK_INT, 1, d1, &dl)) {
        H5Dclose(di);
        return -1;
    }
    int rc = -1;
    if (d4[1] == 0 || d4[2] == 0 || d4[1] > OFA_DATA_MAX_SIDE || d4[2] > OFA_DATA_MAX_SIDE ||
        (d4[3] != 1 && d4[3] != 3 && d4[3] != 4)) {
        ofa_error_set(c->err, c->name, 0, "dataset \"%s\" has shape (%llu, %llu, %llu, %llu): "
                      "expected (N, H, W, C) with 1 <= H, W <= %d and C in {1, 3, 4}", pi,
                      (unsigned long long)d4[0], (unsigned long long)d4[1],
                      (unsigned long long)d4[2], (unsigned long long)d4[3], OFA_DATA_MAX_SIDE);
        goto done;
    }
    if (d1[0] != d4[0]) {
        ofa_error_set(c->err, c->name, 0, "dataset \"%s\" has shape (%llu) but \"%s\" has "
                      "shape (%llu, %llu, %llu, %llu): one label per image is required", pl,
                      (unsigned long long)d1[0], pi, (unsigned long long)d4[0],
                      (unsigned long long)d4[1], (unsigned long long)d4[2],
                      (unsigned long long)d4[3]);
        goto done;
    }
    im->n = (int)d4[0];
    im->h = (int)d4[1];
    im->w = (int)d4[2];
    im->c = (int)d4[3];
    size_t np = (size_t)d4[0] * (size_t)d4[1] * (size_t)d4[2] * (size_t)d4[3];
    im->pixels = ofa_xmalloc(np, pi);
    im->labels = ofa_xmalloc(sizeof(int) * (size_t)im->n, pl);
    if (read_dataset(c, di, pi, H5T_NATIVE_UINT8, im->pixels, np) ||
        read_dataset(c, dl, pl, H5T_NATIVE_INT, im->labels, d1[0]))
        goto done;
    for (int i = 0; i < im->n; i++)
        if (im->labels[i] < 0 || im->labels[i] >= K) {
            ofa_error_set(c->err, c->name, 0, "dataset \"%s\": label %d of image %d is out of "
                          "range [0, %d)", pl, im->labels[i], i, K);
            goto done;
        }
    rc = 0;
done:
    H5Dclose(di);
    H5Dclose(dl);
    return rc;
}

static int load_index(struct loadctx *c, const char *path, int N, int **idx, int *n)
{
    hsize_t d[1];
    hid_t ds;
    if (open_dataset(c, path, DK_INT, 1, d, &ds))
        return -1;
    int rc = -1;
    if (d[0] > (hsize_t)N) {
        ofa_error_set(c->err, c->name, 0, "dataset \"%s\" has %llu indices for %d training "
                      "images", path, (unsigned long long)d[0], N);
        goto done;
    }
    *n = (int)d[0];
    *idx = ofa_xmalloc(sizeof(int) * (d[0] ? d[0] : 1), path);
    if (read_dataset(c, ds, path, H5T_NATIVE_INT, *idx, d[0]))
        goto done;
    for (int i = 0; i < *n; i++)
        if ((*idx)[i] < 0 || (*idx)[i] >= N) {
            ofa_error_set(c->err, c->name, 0, "dataset \"%s\": index %d at position %d is out "
                          "of range [0, %d)", path, (*idx)[i], i, N);
            goto done;
        }
    rc = 0;
done:
    H5Dclose(ds);
    return rc;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int load_all(struct loadctx *c, struct ofa_dataset *ds)
{
    char fmt[64];
    long long ver, K, seed, nval;
    if (get_attr_str(c, "format", fmt, sizeof fmt))
        return -1;
    if (strcmp(fmt, OFA_DATA_FORMAT) != 0)
        return ofa_error_set(c->err, c->name, 0, "format attribute is \"%s\", not \"%s\"", fmt,
                             OFA_DATA_FORMAT);
    if (get_attr_int(c, "format_version", &ver))
        return -1;
    if (ver != OFA_DATA_FORMAT_VERSION)
        return ofa_error_set(c->err, c->name, 0, "format version %lld is not supported "
                             "(this build reads version %d)", ver, OFA_DATA_FORMAT_VERSION);
    if (get_attr_str(c, "source", ds->source, sizeof ds->source) ||
        get_attr_int(c, "num_classes", &K) || get_attr_int(c, "split_seed", &seed) ||
        get_attr_int(c, "val_size", &nval))
        return -1;
    if (K < 1 || K > OFA_DATA_MAX_CLASSES)
        return ofa_error_set(c->err, c->name, 0, "num_classes %lld is out of range [1, %d]", K,
                             OFA_DATA_MAX_CLASSES);
    ds->num_classes = (int)K;
    ds->split_seed = (uint64_t)seed;
    hsize_t dk[1];
    hid_t dn;
    if (open_dataset(c, "/class_names", DK_STR, 1, dk, &dn))
        return -1;
    if (dk[0] != (hsize_t)K) {
        H5Dclose(dn);
        return ofa_error_set(c->err, c->name, 0, "dataset \"/class_names\" has shape (%llu) "
                             "but num_classes is %lld", (unsigned long long)dk[0], K);
    }
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, NAME_LEN);
    H5Tset_strpad(mt, H5T_STR_NULLTERM);
    ds->class_names = ofa_xcalloc((size_t)K, NAME_LEN, "class names");
    int rc = read_dataset(c, dn, "/class_names", mt, ds->class_names, dk[0]);
    H5Tclose(mt);
    H5Dclose(dn);
    if (rc)
        return -1;
    for (int k = 0; k < K; k++)
        ds->class_names[k][NAME_LEN - 1] = '\0';
    if (load_images(c, "/train", (int)K, &ds->train) ||
        load_images(c, "/test", (int)K, &ds->test))
        return -1;
    if (ds->train.n < 1)
        return ofa_error_set(c->err, c->name, 0, "dataset \"/train/images\" holds no images");
    if (ds->test.n > 0 && (ds->test.h != ds->train.h || ds->test.w != ds->train.w ||
                           ds->test.c != ds->train.c))
        return ofa_error_set(c->err, c->name, 0, "\"/test/images\" are %dx%dx%d but "
                             "\"/train/images\" are %dx%dx%d", ds->test.h, ds->test.w,
                             ds->test.c, ds->train.h, ds->train.w, ds->train.c);
    int N = ds->train.n;
    if (load_index(c, "/split/train", N, &ds->train_index, &ds->n_train) ||
        load_index(c, "/split/val", N, &ds->val_index, &ds->n_val))
        return -1;
    if (ds->n_val != nval)
        return ofa_error_set(c->err, c->name, 0, "val_size attribute is %lld but "
                             "\"/split/val\" holds %d indices", nval, ds->n_val);
    if (ds->n_train + ds->n_val != N || ds->n_train == 0)
        return ofa_error_set(c->err, c->name, 0, "the split (%d train + %d validation) does "
                             "not cover the %d training images", ds->n_train, ds->n_val, N);
    uint8_t *seen = ofa_xcalloc((size_t)N, 1, "split check");
    int dup = -1;
    for (int i = 0; i < ds->n_train && dup < 0; i++)
        dup = seen[ds->train_index[i]]++ ? ds->train_index[i] : -1;
    for (int i = 0; i < ds->n_val && dup < 0; i++)
        dup = seen[ds->val_index[i]]++ ? ds->val_index[i] : -1;
    free(seen);
    if (dup >= 0)
        return ofa_error_set(c->err, c->name, 0, "image %d appears twice in \"/split\"", dup);
    qsort(ds->train_index, (size_t)ds->n_train, sizeof(int), cmp_int);
    qsort(ds->val_index, (size_t)ds->n_val, sizeof(int), cmp_int);
    ofa_images_stats(&ds->train, ds->train_index, ds->n_train, ds->mean, ds->std);
    return 0;
}

static int load_from(hid_t fapl, const char *open_name, const char *name, uint64_t size,
                     struct ofa_dataset *ds, struct ofa_error *err)
{
    memset(ds, 0, sizeof *ds);
    struct ofa_h5quiet q;
    ofa_h5_quiet_on(&q);
    hid_t f = H5Fopen(open_name, H5F_ACC_RDONLY, fapl);
    int rc;
    if (f < 0) {
        rc = ofa_error_set(err, name, 0, "not an HDF5 file, or unreadable");
    } else {
        struct loadctx c = {f, name, size, err};
        rc = load_all(&c, ds);
        H5Fclose(f);
    }
    ofa_h5_quiet_off(&q);
    if (rc)
        ofa_dataset_free(ds);
    return rc;
}

static int load_dataset(const char *path, struct ofa_dataset *ds, struct ofa_error *err)
{
    memset(ds, 0, sizeof *ds);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return ofa_error_set(err, path, 0, "cannot open: %s", strerror(errno));
    struct stat st;
    int rc = ofa_h5_header_check_fd(fd, OFA_H5_MAGIC_DATA, DATA_WHAT, path, err);
    if (rc == 0 && fstat(fd, &st) != 0)
        rc = ofa_error_set(err, path, 0, "cannot stat: %s", strerror(errno));
    close(fd);
    if (rc)
        return -1;
    return load_from(H5P_DEFAULT, path, path, (uint64_t)st.st_size, ds, err);
}

/* Guarded against libhdf5 crashes (ofa_h5_guarded). */
struct load_call {
    const char *path;
    struct ofa_dataset *ds;
    struct ofa_error *err;
};

static int call_load_dataset(void *a)
{
    struct load_call *c = a;
    return load_dataset(c->path, c->ds, c->err);
}

int ofa_dataset_load(const char *path, struct ofa_dataset *ds, struct ofa_error *err)
{
    memset(ds, 0, sizeof *ds);
    struct load_call c = {path, ds, err};
    return ofa_h5_guarded(path, call_load_dataset, &c, err);
}

int ofa_dataset_load_image(const void *buf, size_t len, const char *name,
                           struct ofa_dataset *ds, struct ofa_error *err)
{
    memset(ds, 0, sizeof *ds);
    if (ofa_h5_header_check_image(buf, len, OFA_H5_MAGIC_DATA, DATA_WHAT, name, err))
        return -1;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_core(fapl, 1 << 20, 0);
    struct ofa_h5quiet q;
    ofa_h5_quiet_on(&q);
    int ok = H5Pset_file_image(fapl, (void *)buf, len) >= 0;
    ofa_h5_quiet_off(&q);
    int rc = ok ? load_from(fapl, name, name, len, ds, err)
                : ofa_error_set(err, name, 0, "HDF5 rejected the file image");
    H5Pclose(fapl);
    return rc;
}
