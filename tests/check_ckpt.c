/* check_ckpt.c: the HDF5 checkpoint: round trips, byte-identical re-saves,
 * validation messages, damaged files, atomic replacement under SIGKILL,
 * deflate sizes and h5dump. Each test works in its own temporary directory
 * and checks that no HDF5 handle is left open. */
#include <config.h>

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ckpt.h"
#include "h5file.h"
#include "params.h"
#include "rng.h"
#include "space.h"
#include "testutil.h"

static const char *RECIPE =
    "# test recipe\n[supernet]\npreset = mbv3-28\n\n[train]\nepochs = 3 ; comment\n";

/* ---- Fixtures -------------------------------------------------------------- */

static char dir[64];

static void dir_setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/ofa_ckpt_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void dir_teardown(void)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                unlinkat(dirfd(d), e->d_name, 0);
        closedir(d);
    }
    rmdir(dir);
}

static char *tpath(const char *name)
{
    static char buf[4][128];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s", dir, name);
    return b;
}

/* A small table with the kinds of names the supernet uses: top-level names,
 * names with groups, untrained BN statistics. `variant` changes shapes or
 * the set of tensors for the validation tests:
 *   0 reference, 1 expand.w has another shape, 2 without "head/fc.b",
 *   3 with an extra tensor "head/fc2.w", 4 dw.w with another rank. */
static void make_table(struct ofa_params *p, int variant)
{
    memset(p, 0, sizeof *p);
    ofa_params_add(p, "stem.w", OFA_PARAM_DECAY, 4, 16, 1, 3, 3);
    ofa_params_add(p, "stem.bn.gamma", 0, 1, 16, 0, 0, 0);
    ofa_params_add(p, "stem.bn.beta", 0, 1, 16, 0, 0, 0);
    ofa_params_add(p, "stem.bn.mean", OFA_PARAM_NOGRAD, 1, 16, 0, 0, 0);
    ofa_params_add(p, "stem.bn.var", OFA_PARAM_NOGRAD, 1, 16, 0, 0, 0);
    if (variant == 1)
        ofa_params_add(p, "stage1/block0/expand.w", OFA_PARAM_DECAY, 2, 144, 24, 0, 0);
    else
        ofa_params_add(p, "stage1/block0/expand.w", OFA_PARAM_DECAY, 2, 96, 16, 0, 0);
    if (variant == 4)
        ofa_params_add(p, "stage1/block0/dw.w", OFA_PARAM_DECAY, 2, 96, 49, 0, 0);
    else
        ofa_params_add(p, "stage1/block0/dw.w", OFA_PARAM_DECAY, 3, 96, 7, 7, 0);
    ofa_params_add(p, "stage1/block0/bn1.mean", OFA_PARAM_NOGRAD, 1, 96, 0, 0, 0);
    ofa_params_add(p, "stage2/block3/project.w", OFA_PARAM_DECAY, 2, 40, 240, 0, 0);
    ofa_params_add(p, "kt/7to5", 0, 2, 25, 25, 0, 0);
    ofa_params_add(p, "head/fc.w", OFA_PARAM_DECAY, 2, 10, 384, 0, 0);
    if (variant != 2)
        ofa_params_add(p, "head/fc.b", 0, 1, 10, 0, 0, 0);
    if (variant == 3)
        ofa_params_add(p, "head/fc2.w", OFA_PARAM_DECAY, 2, 10, 10, 0, 0);
    ofa_params_alloc(p);
}

static void fill_table(struct ofa_params *p, uint64_t seed)
{
    struct ofa_rng r;
    ofa_rng_seed(&r, seed);
    for (int i = 0; i < p->n; i++) {
        ofa_rng_fill_uniform(&r, ofa_param_data(p, i), (long)p->t[i].numel, 1.0f);
        ofa_rng_fill_uniform(&r, p->mom + p->t[i].offset, (long)p->t[i].numel, 0.1f);
    }
}

static void make_state(struct ofa_train_state *st, long epoch)
{
    memset(st, 0, sizeof *st);
    st->epoch = epoch;
    st->step = 1000 * epoch + 17;
    st->phase = 2;
    st->channels_sorted = 1;
    ofa_rng_seed(&st->rng, 0x5eed + (uint64_t)epoch);
    ofa_rng_u64(&st->rng);
    st->elapsed = 123.456789 * (double)epoch;
    st->images_seen = 60000LL * epoch + 3;
    st->data_hash = 0xfedcba9876543210ull;
    st->train_gflop = 1234.5678901 * (double)epoch;
}

static int tensors_equal(const struct ofa_params *a, const struct ofa_params *b)
{
    if (a->n != b->n)
        return 0;
    for (int i = 0; i < a->n; i++) {
        size_t bytes = a->t[i].numel * sizeof(float);
        if (memcmp(ofa_param_data(a, i), ofa_param_data(b, i), bytes) != 0)
            return 0;
        if (!(a->t[i].flags & OFA_PARAM_NOGRAD) &&
            memcmp(a->mom + a->t[i].offset, b->mom + b->t[i].offset, bytes) != 0)
            return 0;
    }
    return 1;
}

static int states_equal(const struct ofa_train_state *a, const struct ofa_train_state *b)
{
    return a->epoch == b->epoch && a->step == b->step && a->phase == b->phase &&
           a->channels_sorted == b->channels_sorted &&
           memcmp(&a->rng, &b->rng, sizeof a->rng) == 0 &&
           memcmp(&a->elapsed, &b->elapsed, sizeof a->elapsed) == 0 &&
           a->images_seen == b->images_seen && a->data_hash == b->data_hash &&
           memcmp(&a->train_gflop, &b->train_gflop, sizeof a->train_gflop) == 0;
}

static void assert_no_open_hdf5_objects(void)
{
    ck_assert_int_eq((int)H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL), 0);
}

static void save_ok(const char *path, const struct ofa_params *p,
                    const struct ofa_train_state *st, int deflate)
{
    struct ofa_space sp;
    ofa_space_default(&sp);
    struct ofa_error err;
    int rc = ofa_ckpt_save(path, RECIPE, &sp, p, st, deflate, &err);
    if (rc != 0)
        ck_abort_msg("save failed: %s: %s", err.file, err.msg);
    assert_no_open_hdf5_objects();
}

/* Write the reference checkpoint (variant 0, seed 1, epoch 3) to path. */
static void save_reference(const char *path)
{
    struct ofa_params p;
    struct ofa_train_state st;
    make_table(&p, 0);
    fill_table(&p, 1);
    make_state(&st, 3);
    save_ok(path, &p, &st, 0);
    ofa_params_free(&p);
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void spit(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(b, 1, n, f), n);
    fclose(f);
}

static int files_identical(const char *a, const char *b)
{
    size_t na, nb;
    unsigned char *x = slurp(a, &na), *y = slurp(b, &nb);
    int same = na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

static long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

/* Try to load path into a fresh variant table filled with sentinels; the
 * load must fail, name path, leave the table as it was, and leak no handle.
 * Returns the message (static). */
static const char *load_must_fail(const char *path, int variant)
{
    static struct ofa_error err;
    struct ofa_params p, keep;
    make_table(&p, variant);
    make_table(&keep, variant);
    fill_table(&p, 99);
    fill_table(&keep, 99);
    struct ofa_train_state st, st0;
    make_state(&st, 42);
    st0 = st;
    memset(&err, 0, sizeof err);
    int rc = ofa_ckpt_load(path, &p, &st, &err);
    ck_assert_int_eq(rc, -1);
    ck_assert_str_eq(err.file, path);
    ck_assert(err.msg[0] != '\0');
    ck_assert_msg(tensors_equal(&p, &keep), "a failed load modified the table");
    ck_assert_msg(states_equal(&st, &st0), "a failed load modified the state");
    ofa_params_free(&p);
    ofa_params_free(&keep);
    assert_no_open_hdf5_objects();
    return err.msg;
}

static void assert_contains(const char *msg, const char *part)
{
    ck_assert_msg(strstr(msg, part) != NULL, "message \"%s\" lacks \"%s\"", msg, part);
}

static const char *fixture(const char *name)
{
    static char path[1024];
    const char *src = getenv("OFA_SRCDIR");
    snprintf(path, sizeof path, "%s/tests/fixtures/data/%s", src ? src : ".", name);
    return path;
}

/* Open a checkpoint for tampering. */
static hid_t open_rw(const char *path)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert_int_ge(f, 0);
    return f;
}

static void set_attr_str(hid_t obj, const char *name, const char *val)
{
    if (H5Aexists(obj, name) > 0)
        ck_assert_int_ge(H5Adelete(obj, name), 0);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(val) + 1);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(a, 0);
    ck_assert_int_ge(H5Awrite(a, t, val), 0);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
}

static void set_attr_int(hid_t obj, const char *name, int v)
{
    if (H5Aexists(obj, name) > 0)
        ck_assert_int_ge(H5Adelete(obj, name), 0);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(a, 0);
    ck_assert_int_ge(H5Awrite(a, H5T_NATIVE_INT, &v), 0);
    H5Aclose(a);
    H5Sclose(sp);
}

/* ---- Round trips -------------------------------------------------------------- */

START_TEST(test_ckpt_round_trip_restores_params_momentum_state_recipe)
{
    dir_setup();
    struct ofa_params a, b;
    struct ofa_train_state sa, sb;
    make_table(&a, 0);
    fill_table(&a, 1);
    make_state(&sa, 3);
    save_ok(tpath("a.h5"), &a, &sa, 0);

    make_table(&b, 0);
    memset(&sb, 0, sizeof sb);
    struct ofa_error err;
    int rc = ofa_ckpt_load(tpath("a.h5"), &b, &sb, &err);
    ck_assert_msg(rc == 0, "load failed: %s", err.msg);
    ck_assert(tensors_equal(&a, &b));
    ck_assert(states_equal(&sa, &sb));
    /* Untrained tensors keep no momentum: their momentum is left alone. */
    for (int i = 0; i < b.n; i++)
        if (b.t[i].flags & OFA_PARAM_NOGRAD)
            for (size_t k = 0; k < b.t[i].numel; k++)
                ck_assert(b.mom[b.t[i].offset + k] == 0.0f);

    char *text = NULL;
    rc = ofa_ckpt_read_recipe(tpath("a.h5"), &text, &err);
    ck_assert_msg(rc == 0, "read_recipe failed: %s", err.msg);
    ck_assert_str_eq(text, RECIPE);
    free(text);
    assert_no_open_hdf5_objects();
    ofa_params_free(&a);
    ofa_params_free(&b);
    dir_teardown();
}
END_TEST

START_TEST(test_ckpt_layout_has_groups_order_and_no_momentum_for_bn_stats)
{
    dir_setup();
    save_reference(tpath("a.h5"));
    hid_t f = H5Fopen(tpath("a.h5"), H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert_int_ge(f, 0);
    ck_assert_int_gt(H5Lexists(f, "/params/stage1", H5P_DEFAULT), 0);
    ck_assert_int_gt(H5Lexists(f, "/params/stage1/block0/expand.w", H5P_DEFAULT), 0);
    ck_assert_int_gt(H5Lexists(f, "/params/stem.bn.mean", H5P_DEFAULT), 0);
    ck_assert_int_gt(H5Lexists(f, "/optim/stem.bn.gamma", H5P_DEFAULT), 0);
    ck_assert_int_eq(H5Lexists(f, "/optim/stem.bn.mean", H5P_DEFAULT), 0);
    ck_assert_int_gt(H5Lexists(f, "/recipe", H5P_DEFAULT), 0);
    ck_assert_int_gt(H5Lexists(f, "/order", H5P_DEFAULT), 0);
    ck_assert_int_gt(H5Aexists_by_name(f, "/config", "stage_width", H5P_DEFAULT), 0);
    ck_assert_int_gt(H5Aexists_by_name(f, "/state", "rng", H5P_DEFAULT), 0);
    /* order lists the names in table order */
    hid_t d = H5Dopen2(f, "/order", H5P_DEFAULT);
    ck_assert_int_ge(d, 0);
    hid_t t = H5Dget_type(d);
    size_t sz = H5Tget_size(t);
    char *names = calloc(12, sz);
    ck_assert_int_ge(H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, names), 0);
    ck_assert_str_eq(names, "stem.w");
    ck_assert_str_eq(names + 5 * sz, "stage1/block0/expand.w");
    free(names);
    H5Tclose(t);
    H5Dclose(d);
    H5Fclose(f);
    assert_no_open_hdf5_objects();
    dir_teardown();
}
END_TEST

START_TEST(test_ckpt_resave_after_load_is_byte_identical)
{
    dir_setup();
    save_reference(tpath("a.h5"));
    save_reference(tpath("b.h5"));
    ck_assert_msg(files_identical(tpath("a.h5"), tpath("b.h5")),
                  "two saves of the same state differ");

    struct ofa_params p;
    struct ofa_train_state st;
    make_table(&p, 0);
    struct ofa_error err;
    ck_assert_int_eq(ofa_ckpt_load(tpath("a.h5"), &p, &st, &err), 0);
    save_ok(tpath("c.h5"), &p, &st, 0);
    ck_assert_msg(files_identical(tpath("a.h5"), tpath("c.h5")),
                  "save -> load -> save changed the file");
    /* Compressed files too. */
    save_ok(tpath("d.h5"), &p, &st, 4);
    ck_assert_int_eq(ofa_ckpt_load(tpath("d.h5"), &p, &st, &err), 0);
    save_ok(tpath("e.h5"), &p, &st, 4);
    ck_assert(files_identical(tpath("d.h5"), tpath("e.h5")));
    ofa_params_free(&p);
    dir_teardown();
}
END_TEST

/* ---- Validation -------------------------------------------------------------- */

START_TEST(test_ckpt_shape_mismatch_names_dataset_and_both_shapes)
{
    dir_setup();
    save_reference(tpath("a.h5"));
    const char *msg = load_must_fail(tpath("a.h5"), 1);
    ck_assert_str_eq(msg, "/params/stage1/block0/expand.w has shape [96,16], "
                          "the recipe expects [144,24]");
    msg = load_must_fail(tpath("a.h5"), 4);
    assert_contains(msg, "/params/stage1/block0/dw.w has shape [96,7,7]");
    assert_contains(msg, "expects [96,49]");
    dir_teardown();
}
END_TEST

START_TEST(test_ckpt_missing_dataset_is_named)
{
    dir_setup();
    save_reference(tpath("a.h5"));
    const char *msg = load_must_fail(tpath("a.h5"), 3);
    ck_assert_str_eq(msg, "missing dataset /params/head/fc2.w");
    /* A momentum buffer missing. */
    hid_t f = open_rw(tpath("a.h5"));
    ck_assert_int_ge(H5Ldelete(f, "/optim/stage2/block3/project.w", H5P_DEFAULT), 0);
    tu_h5_close_resealed(f);
    msg = load_must_fail(tpath("a.h5"), 0);
    assert_contains(msg, "/optim/stage2/block3/project.w");
    dir_teardown();
}
END_TEST

START_TEST(test_ckpt_extra_tensor_is_refused_and_named)
{
    dir_setup();
    save_reference(tpath("a.h5"));
    const char *msg = load_must_fail(tpath("a.h5"), 2);
    assert_contains(msg, "/params/head/fc.b");
    assert_contains(msg, "not a tensor of the recipe");
    dir_teardown();
}
END_TEST

START_TEST(test_ckpt_wrong_dtype_is_refused)
{
    dir_setup();
    save_reference(tpath("a.h5"));
    hid_t f = open_rw(tpath("a.h5"));
    ck_assert_int_ge(H5Ldelete(f, "/params/kt/7to5", H5P_DEFAULT), 0);
    hsize_t dims[2] = {25, 25};
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t d = H5Dcreate2(f, "/params/kt/7to5", H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                         H5P_DEFAULT);
    ck_assert_int_ge(d, 0);
    double *zeros = calloc(625, sizeof *zeros);
    ck_assert_int_ge(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, zeros), 0);
    free(zeros);
    H5Dclose(d);
    H5Sclose(sp);
    tu_h5_close_resealed(f);
    const char *msg = load_must_fail(tpath("a.h5"), 0);
    ck_assert_str_eq(msg, "/params/kt/7to5 has type 64-bit float, expected 32-bit IEEE float");
    dir_teardown();
}
END_TEST

START_TEST(test_ckpt_wrong_format_is_refused)
{
    dir_setup();
    save_reference(tpath("a.h5"));
    hid_t f = open_rw(tpath("a.h5"));
    set_attr_str(f, "format", "ofa-subnet");
    tu_h5_close_resealed(f);
    const char *msg = load_must_fail(tpath("a.h5"), 0);
    assert_contains(msg, "not an ofa supernet checkpoint");
    assert_contains(msg, "ofa-subnet");
    char *text = (char *)1;
    struct ofa_error err;
    ck_assert_int_eq(ofa_ckpt_read_recipe(tpath("a.h5"), &text, &err), -1);
    ck_assert_ptr_null(text);
    f = open_rw(tpath("a.h5"));
    ck_assert_int_ge(H5Adelete(f, "format"), 0);
    tu_h5_close_resealed(f);
    msg = load_must_fail(tpath("a.h5"), 0);
    assert_contains(msg, "no root attribute \"format\"");
    dir_teardown();
}
END_TEST

START_TEST(test_ckpt_newer_version_is_refused)
{
    dir_setup();
    save_reference(tpath("a.h5"));
    hid_t f = open_rw(tpath("a.h5"));
    set_attr_int(f, "format_version", OFA_CKPT_VERSION + 1);
    tu_h5_close_resealed(f);
    const char *msg = load_must_fail(tpath("a.h5"), 0);
    assert_contains(msg, "format_version 2 is newer");
    f = open_rw(tpath("a.h5"));
    set_attr_int(f, "format_version", 0);
    tu_h5_close_resealed(f);
    msg = load_must_fail(tpath("a.h5"), 0);
    assert_contains(msg, "format_version");
    dir_teardown();
}
END_TEST

START_TEST(test_ckpt_missing_or_mistyped_state_is_refused_after_reading_tensors)
{
    dir_setup();
    save_reference(tpath("a.h5"));
    /* /state is read last: the table must still be untouched. */
    hid_t f = open_rw(tpath("a.h5"));
    ck_assert_int_ge(H5Adelete_by_name(f, "/state", "rng", H5P_DEFAULT), 0);
    tu_h5_close_resealed(f);
    const char *msg = load_must_fail(tpath("a.h5"), 0);
    ck_assert_str_eq(msg, "/state has no attribute \"rng\"");

    save_reference(tpath("a.h5"));
    f = open_rw(tpath("a.h5"));
    hid_t g = H5Gopen2(f, "/state", H5P_DEFAULT);
    set_attr_str(g, "epoch", "three");
    H5Gclose(g);
    tu_h5_close_resealed(f);
    msg = load_must_fail(tpath("a.h5"), 0);
    assert_contains(msg, "attribute \"epoch\" of /state is not an integer");
    dir_teardown();
}
END_TEST

/* train_gflop came later than the other state fields: a checkpoint without
 * it loads (the count restarts from 0); a bad value is refused. */
START_TEST(test_ckpt_state_without_train_gflop_loads_as_zero)
{
    dir_setup();
    struct ofa_params a, b;
    struct ofa_train_state sa, sb;
    make_table(&a, 0);
    fill_table(&a, 1);
    make_state(&sa, 3);
    ck_assert(sa.train_gflop > 0);
    save_ok(tpath("a.h5"), &a, &sa, 0);
    hid_t f = open_rw(tpath("a.h5"));
    ck_assert_int_ge(H5Adelete_by_name(f, "/state", "train_gflop", H5P_DEFAULT), 0);
    tu_h5_close_resealed(f);
    make_table(&b, 0);
    memset(&sb, 0xff, sizeof sb);
    struct ofa_error err;
    ck_assert_msg(ofa_ckpt_load(tpath("a.h5"), &b, &sb, &err) == 0, "%s", err.msg);
    ck_assert(tensors_equal(&a, &b));
    ck_assert(sb.train_gflop == 0.0);
    sb.train_gflop = sa.train_gflop;
    ck_assert(states_equal(&sa, &sb));

    f = open_rw(tpath("a.h5"));
    hid_t g = H5Gopen2(f, "/state", H5P_DEFAULT);
    double bad = -1.0;
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t at = H5Acreate2(g, "train_gflop", H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(at, 0);
    ck_assert_int_ge(H5Awrite(at, H5T_NATIVE_DOUBLE, &bad), 0);
    H5Aclose(at);
    H5Sclose(sp);
    H5Gclose(g);
    tu_h5_close_resealed(f);
    const char *msg = load_must_fail(tpath("a.h5"), 0);
    ck_assert_str_eq(msg, "/state: train_gflop is -1");
    ofa_params_free(&a);
    ofa_params_free(&b);
    dir_teardown();
}
END_TEST

START_TEST(test_ckpt_truncated_file_is_refused)
{
    dir_setup();
    save_reference(tpath("a.h5"));
    size_t n;
    unsigned char *b = slurp(tpath("a.h5"), &n);
    spit(tpath("half.h5"), b, n / 2);
    load_must_fail(tpath("half.h5"), 0);
    char *text = NULL;
    struct ofa_error err;
    ck_assert_int_eq(ofa_ckpt_read_recipe(tpath("half.h5"), &text, &err), -1);
    /* Every cut, not only the half. */
    for (int k = 0; k < 32; k++) {
        spit(tpath("cut.h5"), b, n * (size_t)k / 32);
        load_must_fail(tpath("cut.h5"), 0);
    }
    spit(tpath("cut.h5"), b, n - 1);
    load_must_fail(tpath("cut.h5"), 0);
    free(b);
    assert_no_open_hdf5_objects();
    dir_teardown();
}
END_TEST

START_TEST(test_ckpt_non_hdf5_and_missing_files_are_refused)
{
    dir_setup();
    const char text[] = "[supernet]\npreset = mbv3-28\n";
    spit(tpath("recipe.ini"), text, sizeof text - 1);
    const char *msg = load_must_fail(tpath("recipe.ini"), 0);
    assert_contains(msg, "not an ofa supernet checkpoint (28 bytes)");
    spit(tpath("empty.h5"), "", 0);
    load_must_fail(tpath("empty.h5"), 0);
    msg = load_must_fail(tpath("nonexistent.h5"), 0);
    assert_contains(msg, "No such file");
    msg = load_must_fail(dir, 0);
    assert_contains(msg, "not a regular file");
    dir_teardown();
}
END_TEST

START_TEST(test_ckpt_save_failure_names_file_and_keeps_old_file)
{
    dir_setup();
    struct ofa_params p;
    struct ofa_train_state st;
    struct ofa_space sp;
    struct ofa_error err;
    ofa_space_default(&sp);
    make_table(&p, 0);
    make_state(&st, 1);
    char bad[160];
    snprintf(bad, sizeof bad, "%s/no/such/dir/x.h5", dir);
    ck_assert_int_eq(ofa_ckpt_save(bad, RECIPE, &sp, &p, &st, 0, &err), -1);
    ck_assert_str_eq(err.file, bad);
    assert_contains(err.msg, "cannot create the temporary file");
    assert_no_open_hdf5_objects();
    ck_assert_int_eq(ofa_ckpt_save(tpath("x.h5"), RECIPE, &sp, &p, &st, 10, &err), -1);
    assert_contains(err.msg, "deflate");
    ofa_params_free(&p);

    /* A table whose names cannot be HDF5 paths is refused: the old file
     * stays and no temporary file is left. */
    save_reference(tpath("a.h5"));
    size_t n0;
    unsigned char *before = slurp(tpath("a.h5"), &n0);
    memset(&p, 0, sizeof p);
    ofa_params_add(&p, "a.w", 0, 1, 4, 0, 0, 0);
    ofa_params_add(&p, "a.w/x", 0, 1, 4, 0, 0, 0);
    ofa_params_alloc(&p);
    ck_assert_int_eq(ofa_ckpt_save(tpath("a.h5"), RECIPE, &sp, &p, &st, 0, &err), -1);
    assert_contains(err.msg, "a.w/x");
    ofa_params_free(&p);
    size_t n1;
    unsigned char *after = slurp(tpath("a.h5"), &n1);
    ck_assert(n0 == n1 && memcmp(before, after, n0) == 0);
    free(after);
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", tpath("a.h5"), (long)getpid());
    ck_assert_int_ne(access(tmp, F_OK), 0);
    assert_no_open_hdf5_objects();

    /* A write that fails half way (file size limit: EFBIG, as on a full
     * disk), in a child so the limit stays there. */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {(rlim_t)n0 / 2, (rlim_t)n0 / 2};
        setrlimit(RLIMIT_FSIZE, &rl);
        make_table(&p, 0);
        fill_table(&p, 7);
        int rc = ofa_ckpt_save(tpath("a.h5"), RECIPE, &sp, &p, &st, 0, &err);
        int named = strcmp(err.file, tpath("a.h5")) == 0;
        if (rc == -1 && named)
            fprintf(stderr, "save past the file size limit: %s\n", err.msg);
        _exit(rc == -1 && named && H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL) == 0 ? 0
                                                                                          : 1);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    after = slurp(tpath("a.h5"), &n1);
    ck_assert(n0 == n1 && memcmp(before, after, n0) == 0);
    free(after);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", tpath("a.h5"), (long)pid);
    ck_assert_int_ne(access(tmp, F_OK), 0);
    free(before);
    dir_teardown();
}
END_TEST

/* ---- Atomic replacement ----------------------------------------------------- */

/* A checkpoint big enough that writing it takes a while. */
static void make_big(struct ofa_params *p, uint64_t seed)
{
    memset(p, 0, sizeof *p);
    ofa_params_add(p, "big/a", OFA_PARAM_DECAY, 2, 1024, 1024, 0, 0);
    ofa_params_add(p, "big/b", OFA_PARAM_DECAY, 2, 1024, 1024, 0, 0);
    ofa_params_add(p, "big/c", OFA_PARAM_NOGRAD, 2, 512, 1024, 0, 0);
    ofa_params_alloc(p);
    fill_table(p, seed);
}

START_TEST(test_ckpt_killed_writer_leaves_previous_checkpoint_loadable)
{
    dir_setup();
    const char *path = tpath("big.h5");
    struct ofa_params first, second, got;
    struct ofa_train_state s1, s2, sg;
    make_big(&first, 1);
    make_big(&second, 2);
    make_big(&got, 0);
    make_state(&s1, 1);
    make_state(&s2, 2);
    save_ok(path, &first, &s1, 0);
    double t0 = ofa_now();
    save_ok(path, &first, &s1, 0);
    double save_time = ofa_now() - t0;
    struct ofa_rng r;
    ofa_rng_seed(&r, (uint64_t)time(NULL));
    /* The temporary file exists only while the image is written and synced,
     * the last part of a save. Even trials kill the writer at a random moment,
     * odd ones a random few ms after its temporary file appears. */
    int trials = 0, mid_write = 0;
    for (; trials < 4; trials++) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            struct ofa_space sp;
            struct ofa_error err;
            ofa_space_default(&sp);
            for (;;)
                if (ofa_ckpt_save(path, RECIPE, &sp, &second, &s2, 0, &err) != 0)
                    _exit(3);
        }
        char tmp[160];
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)pid);
        if (trials % 2 == 1) {
            double t = ofa_now();
            struct timespec poll = {0, 100000};
            while (access(tmp, F_OK) != 0 && ofa_now() - t < 5.0)
                nanosleep(&poll, NULL);
        }
        double delay = trials % 2 ? 0.010 * ofa_rng_uniform(&r)
                                  : save_time * (0.1 + ofa_rng_uniform(&r));
        struct timespec ts = {0, (long)(delay * 1e9)};
        if (ts.tv_nsec > 900000000L)
            ts.tv_nsec = 900000000L;
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFSIGNALED(status));
        mid_write += access(tmp, F_OK) == 0;

        /* Whatever is at path is a complete checkpoint: the first one, or the
         * child's if one of its saves finished; never a mixture. */
        struct ofa_error err;
        int rc = ofa_ckpt_load(path, &got, &sg, &err);
        ck_assert_msg(rc == 0, "after SIGKILL: %s", err.msg);
        if (sg.epoch == 1)
            ck_assert(tensors_equal(&got, &first) && states_equal(&sg, &s1));
        else
            ck_assert(tensors_equal(&got, &second) && states_equal(&sg, &s2));

        /* A later save works and removes the dead writer's temporary file. */
        save_ok(path, &first, &s1, 0);
        ck_assert_int_ne(access(tmp, F_OK), 0);
        rc = ofa_ckpt_load(path, &got, &sg, &err);
        ck_assert_msg(rc == 0, "after re-save: %s", err.msg);
        ck_assert(tensors_equal(&got, &first) && states_equal(&sg, &s1));
    }
    printf("killed writer: %d of %d kills landed while the temporary file was written "
           "(a save takes %.0f ms)\n", mid_write, trials, save_time * 1e3);
    ck_assert_int_gt(mid_write, 0);
    ofa_params_free(&first);
    ofa_params_free(&second);
    ofa_params_free(&got);
    dir_teardown();
}
END_TEST

START_TEST(test_ckpt_stale_temp_of_live_process_is_kept)
{
    dir_setup();
    /* pid 1 is alive: its temporary file is not ours to remove. */
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.tmp.1", tpath("a.h5"));
    spit(tmp, "x", 1);
    save_reference(tpath("a.h5"));
    ck_assert_int_eq(access(tmp, F_OK), 0);
    dir_teardown();
}
END_TEST

/* ---- Compression and tools --------------------------------------------------- */

START_TEST(test_ckpt_deflate_shrinks_compressible_params)
{
    dir_setup();
    struct ofa_params p, q;
    struct ofa_train_state st, sq;
    make_table(&p, 0);
    /* Weights on a coarse grid compress; uniform random floats barely do. */
    struct ofa_rng r;
    ofa_rng_seed(&r, 5);
    for (size_t i = 0; i < p.total; i++) {
        p.data[i] = 0.125f * (float)ofa_rng_below(&r, 8);
        p.mom[i] = 0.0f;
    }
    make_state(&st, 2);
    save_ok(tpath("raw.h5"), &p, &st, 0);
    save_ok(tpath("z1.h5"), &p, &st, 1);
    save_ok(tpath("z9.h5"), &p, &st, 9);
    long raw = file_size(tpath("raw.h5")), z1 = file_size(tpath("z1.h5"));
    long z9 = file_size(tpath("z9.h5"));
    fill_table(&p, 1);
    save_ok(tpath("rraw.h5"), &p, &st, 0);
    save_ok(tpath("rz6.h5"), &p, &st, 6);
    long rraw = file_size(tpath("rraw.h5")), rz6 = file_size(tpath("rz6.h5"));
    printf("checkpoint sizes: grid weights %ld B raw, %ld B deflate 1, %ld B deflate 9; "
           "random weights %ld B raw, %ld B deflate 6\n", raw, z1, z9, rraw, rz6);
    ck_assert_int_lt(z1, raw);
    ck_assert_int_le(z9, z1);
    /* Compressed files load to the same values. */
    make_table(&q, 0);
    struct ofa_error err;
    ck_assert_int_eq(ofa_ckpt_load(tpath("rz6.h5"), &q, &sq, &err), 0);
    ck_assert(tensors_equal(&p, &q));
    ck_assert(states_equal(&st, &sq));
    ofa_params_free(&p);
    ofa_params_free(&q);
    assert_no_open_hdf5_objects();
    dir_teardown();
}
END_TEST

START_TEST(test_ckpt_deflate_multi_chunk_and_big_endian_tensors_load)
{
    dir_setup();
    /* Tensors above the 1 MiB chunk size are split, with partial edge chunks. */
    struct ofa_params p, q;
    struct ofa_train_state st, sq;
    memset(&p, 0, sizeof p);
    ofa_params_add(&p, "big/w2", OFA_PARAM_DECAY, 2, 1001, 301, 0, 0);
    ofa_params_add(&p, "big/w4", OFA_PARAM_DECAY, 4, 5, 300, 13, 13);
    ofa_params_add(&p, "small", 0, 1, 7, 0, 0, 0);
    ofa_params_alloc(&p);
    fill_table(&p, 11);
    make_state(&st, 4);
    save_ok(tpath("m.h5"), &p, &st, 3);
    memset(&q, 0, sizeof q);
    ofa_params_add(&q, "big/w2", OFA_PARAM_DECAY, 2, 1001, 301, 0, 0);
    ofa_params_add(&q, "big/w4", OFA_PARAM_DECAY, 4, 5, 300, 13, 13);
    ofa_params_add(&q, "small", 0, 1, 7, 0, 0, 0);
    ofa_params_alloc(&q);
    struct ofa_error err;
    int rc = ofa_ckpt_load(tpath("m.h5"), &q, &sq, &err);
    ck_assert_msg(rc == 0, "%s", err.msg);
    ck_assert(tensors_equal(&p, &q));

    /* A big-endian, shuffled and deflated tensor written by another tool. */
    hid_t f = open_rw(tpath("m.h5"));
    ck_assert_int_ge(H5Ldelete(f, "/params/big/w2", H5P_DEFAULT), 0);
    hsize_t dims[2] = {1001, 301}, chunk[2] = {100, 301};
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 2, chunk);
    H5Pset_shuffle(dcpl);
    H5Pset_deflate(dcpl, 1);
    hid_t d = H5Dcreate2(f, "/params/big/w2", H5T_IEEE_F32BE, sp, H5P_DEFAULT, dcpl,
                         H5P_DEFAULT);
    ck_assert_int_ge(d, 0);
    ck_assert_int_ge(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                              ofa_param_data(&p, 0)), 0);
    H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(sp);
    tu_h5_close_resealed(f);
    memset(q.data, 0, q.total * sizeof(float));
    rc = ofa_ckpt_load(tpath("m.h5"), &q, &sq, &err);
    ck_assert_msg(rc == 0, "%s", err.msg);
    ck_assert(tensors_equal(&p, &q));
    ofa_params_free(&p);
    ofa_params_free(&q);
    assert_no_open_hdf5_objects();
    dir_teardown();
}
END_TEST

/* What h5py writes for Python str: variable-length strings. */
START_TEST(test_ckpt_variable_length_strings_are_accepted)
{
    dir_setup();
    save_reference(tpath("a.h5"));
    struct ofa_params p;
    make_table(&p, 0);
    hid_t f = open_rw(tpath("a.h5"));
    hid_t vs = H5Tcopy(H5T_C_S1);
    H5Tset_size(vs, H5T_VARIABLE);
    hid_t scalar = H5Screate(H5S_SCALAR);
    ck_assert_int_ge(H5Adelete(f, "format"), 0);
    hid_t a = H5Acreate2(f, "format", vs, scalar, H5P_DEFAULT, H5P_DEFAULT);
    const char *fmt = "ofa-supernet";
    ck_assert_int_ge(H5Awrite(a, vs, &fmt), 0);
    H5Aclose(a);
    ck_assert_int_ge(H5Ldelete(f, "/recipe", H5P_DEFAULT), 0);
    hid_t d = H5Dcreate2(f, "/recipe", vs, scalar, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    const char *text = "[supernet]\nfrom = h5py\n";
    ck_assert_int_ge(H5Dwrite(d, vs, H5S_ALL, H5S_ALL, H5P_DEFAULT, &text), 0);
    H5Dclose(d);
    ck_assert_int_ge(H5Ldelete(f, "/order", H5P_DEFAULT), 0);
    hsize_t n = (hsize_t)p.n;
    hid_t sp = H5Screate_simple(1, &n, NULL);
    d = H5Dcreate2(f, "/order", vs, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    const char **names = calloc((size_t)p.n, sizeof *names);
    for (int i = 0; i < p.n; i++)
        names[p.n - 1 - i] = p.t[i].name; /* another order is fine */
    ck_assert_int_ge(H5Dwrite(d, vs, H5S_ALL, H5S_ALL, H5P_DEFAULT, names), 0);
    free(names);
    H5Dclose(d);
    H5Sclose(sp);
    H5Sclose(scalar);
    H5Tclose(vs);
    tu_h5_close_resealed(f);

    char *got = NULL;
    struct ofa_error err;
    ck_assert_int_eq(ofa_ckpt_read_recipe(tpath("a.h5"), &got, &err), 0);
    ck_assert_str_eq(got, text);
    free(got);
    struct ofa_train_state st;
    int rc = ofa_ckpt_load(tpath("a.h5"), &p, &st, &err);
    ck_assert_msg(rc == 0, "%s", err.msg);
    ck_assert_int_eq(st.epoch, 3);
    ofa_params_free(&p);
    assert_no_open_hdf5_objects();
    dir_teardown();
}
END_TEST

START_TEST(test_ckpt_order_must_list_the_table)
{
    dir_setup();
    save_reference(tpath("a.h5"));
    hid_t f = open_rw(tpath("a.h5"));
    hid_t d = H5Dopen2(f, "/order", H5P_DEFAULT);
    hid_t t = H5Dget_type(d);
    size_t sz = H5Tget_size(t);
    char *names = calloc(12, sz);
    ck_assert_int_ge(H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, names), 0);
    strcpy(names + 2 * sz, names); /* stem.w twice, stem.bn.beta missing */
    ck_assert_int_ge(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, names), 0);
    free(names);
    H5Tclose(t);
    H5Dclose(d);
    tu_h5_close_resealed(f);
    const char *msg = load_must_fail(tpath("a.h5"), 0);
    ck_assert_str_eq(msg, "/order names \"stem.w\" twice");
    dir_teardown();
}
END_TEST

static int run_to(const char *cmd, const char *out)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s > '%s' 2>&1", cmd, out);
    int rc = system(buf);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static int file_contains(const char *path, const char *part)
{
    size_t n;
    unsigned char *b = slurp(path, &n);
    b[n] = '\0';
    int found = strstr((char *)b, part) != NULL;
    free(b);
    return found;
}

START_TEST(test_ckpt_h5dump_reads_file)
{
    if (access("/usr/bin/h5dump", X_OK) != 0) {
        printf("h5dump not installed: skipped\n");
        return;
    }
    dir_setup();
    save_reference(tpath("a.h5"));
    char cmd[256];
    snprintf(cmd, sizeof cmd, "/usr/bin/h5dump -H '%s'", tpath("a.h5"));
    ck_assert_int_eq(run_to(cmd, tpath("h.txt")), 0);
    ck_assert(file_contains(tpath("h.txt"), "GROUP \"block0\""));
    ck_assert(file_contains(tpath("h.txt"), "DATASET \"expand.w\""));
    ck_assert(file_contains(tpath("h.txt"), "H5T_IEEE_F32LE"));
    snprintf(cmd, sizeof cmd, "/usr/bin/h5dump -a /format -a /config/stage_act '%s'",
             tpath("a.h5"));
    ck_assert_int_eq(run_to(cmd, tpath("a.txt")), 0);
    ck_assert(file_contains(tpath("a.txt"), "\"ofa-supernet\""));
    ck_assert(file_contains(tpath("a.txt"), "hswish"));
    snprintf(cmd, sizeof cmd, "/usr/bin/h5dump -d /recipe '%s'", tpath("a.h5"));
    ck_assert_int_eq(run_to(cmd, tpath("r.txt")), 0);
    ck_assert(file_contains(tpath("r.txt"), "preset = mbv3-28"));
    dir_teardown();
}
END_TEST

/* The table of tests/fuzz/fuzz_ckpt.c (keep the two in step). With
 * OFA_CKPT_SEED_DIR set, this test writes the fuzzer's seed files there. */
static void make_fuzz_table(struct ofa_params *p)
{
    memset(p, 0, sizeof *p);
    ofa_params_add(p, "stem.w", OFA_PARAM_DECAY, 4, 4, 1, 3, 3);
    ofa_params_add(p, "stem.bn.mean", OFA_PARAM_NOGRAD, 1, 4, 0, 0, 0);
    ofa_params_add(p, "stage1/block0/expand.w", OFA_PARAM_DECAY, 2, 32, 32, 0, 0);
    ofa_params_add(p, "head/fc.b", 0, 1, 3, 0, 0, 0);
    ofa_params_alloc(p);
}

START_TEST(test_ckpt_fuzz_table_round_trips)
{
    dir_setup();
    struct ofa_params p, q;
    struct ofa_train_state st, sq;
    make_fuzz_table(&p);
    make_fuzz_table(&q);
    fill_table(&p, 3);
    make_state(&st, 1);
    const char *seed_dir = getenv("OFA_CKPT_SEED_DIR");
    for (int z = 0; z <= 1; z++) {
        char name[32];
        snprintf(name, sizeof name, "seed_deflate%d.h5", z);
        save_ok(tpath(name), &p, &st, z);
        struct ofa_error err;
        ck_assert_int_eq(ofa_ckpt_load(tpath(name), &q, &sq, &err), 0);
        ck_assert(tensors_equal(&p, &q));
        if (seed_dir) {
            char out[512];
            snprintf(out, sizeof out, "%s/%s", seed_dir, name);
            size_t n;
            unsigned char *b = slurp(tpath(name), &n);
            spit(out, b, n);
            free(b);
        }
    }
    ofa_params_free(&p);
    ofa_params_free(&q);
    dir_teardown();
}
END_TEST

/* The guard (ofa_h5_guarded): a load that crashes does so in a child
 * process and becomes an error; one that returns runs again here and its
 * result (and its writes) are this process's. */
static pid_t guard_parent;
static int guard_runs;

static int load_counts(void *arg)
{
    guard_runs++;
    *(int *)arg = 42;
    return 0;
}

static int load_crashes_in_child(void *arg)
{
    (void)arg;
    if (getpid() != guard_parent)
        raise(SIGKILL); /* a signal no sanitizer turns into an exit status */
    guard_runs++;
    return 0;
}

/* A guarded load whose child process sends its pid down the pipe at arg and
 * then waits (the tool's own run never comes: the tool is killed first). */
static int load_reports_and_waits(void *arg)
{
    const pid_t self = getpid();
    if (write(*(int *)arg, &self, sizeof self) != (ssize_t)sizeof self)
        _exit(3);
    sleep(30);
    return 0;
}

/* Whether process pid has ended (gone, or a zombie not yet reaped). */
static int process_ended(pid_t pid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return kill(pid, 0) != 0;
    const size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *e = strrchr(buf, ')'); /* "pid (comm) state ..." */
    return !e || e[1] == '\0' || e[2] == 'Z' || e[2] == 'X';
}

/* A tool killed (SIGTERM's handler ends it too, ofa_cleanup_on_signals)
 * during a guarded load takes the guard's child with it: check_fault.sh had
 * found one still reading after the tool had gone. */
START_TEST(test_guard_child_ends_with_the_tool)
{
    int fd[2];
    ck_assert_int_eq(pipe(fd), 0);
    const pid_t tool = fork();
    ck_assert_int_ge(tool, 0);
    if (tool == 0) {
        struct ofa_error err;
        close(fd[0]);
        ofa_h5_guarded("x.h5", load_reports_and_waits, &fd[1], &err);
        _exit(0);
    }
    close(fd[1]);
    pid_t child = 0;
    ck_assert_int_eq(read(fd[0], &child, sizeof child), (ssize_t)sizeof child);
    close(fd[0]);
    ck_assert_int_gt(child, 0);
    ck_assert_int_eq(kill(tool, SIGKILL), 0);
    int status = 0;
    ck_assert_int_eq(waitpid(tool, &status, 0), tool);
    int ended = 0;
    const struct timespec tick = {0, 10000000};
    for (int i = 0; i < 500 && !(ended = process_ended(child)); i++)
        nanosleep(&tick, NULL);
    if (!ended)
        kill(child, SIGKILL);
    ck_assert_msg(ended, "the guard's child %d still runs 5 s after its tool was killed",
                  (int)child);
}
END_TEST

START_TEST(test_guard_turns_a_crash_into_an_error)
{
    struct ofa_error err;
    guard_parent = getpid();
    guard_runs = 0;
    int v = 0;
    ck_assert_int_eq(ofa_h5_guarded("x.h5", load_counts, &v, &err), 0);
    ck_assert_int_eq(v, 42);
    ck_assert_int_eq(guard_runs, 1); /* the child's run is not seen here */
    ck_assert_int_eq(ofa_h5_guarded("x.h5", load_crashes_in_child, NULL, &err), -1);
    ck_assert_int_eq(guard_runs, 1);
    ck_assert_str_eq(err.file, "x.h5");
    assert_contains(err.msg, "crashed libhdf5 (Killed, in a child process)");
    /* A fuzzing find: a checkpoint with a matching header whose HDF5 content
     * makes libhdf5 1.10 write through a NULL pointer. */
    struct ofa_params p;
    struct ofa_train_state st;
    make_fuzz_table(&p);
    ck_assert_int_eq(ofa_ckpt_load(fixture("fuzz-ckpt-sealed-libhdf5-segv.h5"), &p, &st, &err),
                     -1);
    /* a signal, or under ASan its report and exit status */
    assert_contains(err.msg, "in a child process");
    ofa_params_free(&p);
    assert_no_open_hdf5_objects();
}
END_TEST

START_TEST(test_subnet_record_round_trips_and_refuses_other_files)
{
    dir_setup();
    struct ofa_subnet_record r, back;
    memset(&r, 0, sizeof r);
    snprintf(r.subnet, sizeof r.subnet, "r24-d3333-k555.555.555.555-e444.444.444.444");
    snprintf(r.device, sizeof r.device, "cortex-m7");
    snprintf(r.latency_model, sizeof r.latency_model, "opcount");
    r.supernet_fingerprint = 0xfedcba9876543210ULL;
    r.acc_predicted = 0.913;
    r.acc_measured = 0.9071;
    r.latency_predicted_ms = 123.5;
    r.latency_measured_ms = NAN; /* profiled elsewhere */
    r.mmacs = 8.674848;
    r.params = 638482;
    r.flash_bytes = 700000;
    r.sram_bytes = 90000;
    r.budget_sram_kb = 320;
    r.budget_flash_kb = 1024;
    struct ofa_error err;
    ck_assert_msg(ofa_subnet_record_save(tpath("subnet.h5"), &r, &err) == 0, "%s", err.msg);
    ck_assert_msg(ofa_subnet_record_load(tpath("subnet.h5"), &back, &err) == 0, "%s", err.msg);
    ck_assert_str_eq(back.subnet, r.subnet);
    ck_assert_str_eq(back.device, r.device);
    ck_assert_str_eq(back.latency_model, r.latency_model);
    ck_assert(back.supernet_fingerprint == r.supernet_fingerprint);
    ck_assert(back.acc_predicted == r.acc_predicted && back.acc_measured == r.acc_measured);
    ck_assert(isnan(back.latency_measured_ms));
    ck_assert(back.params == r.params && back.flash_bytes == r.flash_bytes &&
              back.sram_bytes == r.sram_bytes);
    ck_assert(back.budget_sram_kb == 320 && back.budget_latency_ms == 0);
    /* a checkpoint is not a subnet file, and the other way round */
    struct ofa_params a;
    struct ofa_train_state sa;
    make_table(&a, 0);
    fill_table(&a, 1);
    make_state(&sa, 3);
    save_ok(tpath("a.h5"), &a, &sa, 0);
    ck_assert_int_eq(ofa_subnet_record_load(tpath("a.h5"), &back, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "not an ofa subnet file"));
    char *text = NULL;
    ck_assert_int_eq(ofa_ckpt_read_recipe(tpath("subnet.h5"), &text, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "not an ofa supernet checkpoint"));
    /* the fingerprint follows the training state */
    struct ofa_train_state sb = sa;
    sb.step++;
    ck_assert(ofa_ckpt_fingerprint("x", &sa) != ofa_ckpt_fingerprint("x", &sb));
    ck_assert(ofa_ckpt_fingerprint("x", &sa) != ofa_ckpt_fingerprint("y", &sa));
    ck_assert(ofa_ckpt_fingerprint("x", &sa) == ofa_ckpt_fingerprint("x", &sa));
    assert_no_open_hdf5_objects();
    ofa_params_free(&a);
    dir_teardown();
}
END_TEST

/* The integrity header (lib/h5file.h): any changed byte, a cut or an
 * appended byte, a file of another tool and the inputs on which fuzzing
 * crashed libhdf5 are refused before libhdf5 parses them. */

START_TEST(test_ckpt_integrity_header_refuses_damage_before_hdf5)
{
    dir_setup();
    save_reference(tpath("a.h5"));
    size_t n;
    unsigned char *b = slurp(tpath("a.h5"), &n);
    ck_assert_int_ge(n, 1024);
    ck_assert(memcmp(b, OFA_H5_MAGIC, 8) == 0);
    for (size_t pos = 512; pos < n; pos += n / 97) {
        b[pos] ^= 0x01;
        spit(tpath("flip.h5"), b, n);
        b[pos] ^= 0x01;
        assert_contains(load_must_fail(tpath("flip.h5"), 0), "checksum mismatch");
    }
    spit(tpath("cut.h5"), b, n - 100);
    assert_contains(load_must_fail(tpath("cut.h5"), 0), "truncated or appended to");
    unsigned char *longer = calloc(n + 1, 1);
    memcpy(longer, b, n);
    spit(tpath("long.h5"), longer, n + 1);
    free(longer);
    assert_contains(load_must_fail(tpath("long.h5"), 0), "truncated or appended to");
    b[300] = 1; /* a reserved byte of the header */
    spit(tpath("r.h5"), b, n);
    assert_contains(load_must_fail(tpath("r.h5"), 0), "bytes 24..511 are not zero");
    b[300] = 0;
    b[8] = 7; /* header version */
    spit(tpath("v.h5"), b, n);
    assert_contains(load_must_fail(tpath("v.h5"), 0), "integrity header version 7");
    /* the same file without its user block, as another tool (or an ofa
     * before the header) writes it */
    hid_t f = H5Fcreate(tpath("plain.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(f, 0);
    ck_assert_int_ge(H5Fclose(f), 0);
    assert_contains(load_must_fail(tpath("plain.h5"), 0),
                    "an HDF5 file without the \"OFA-HDF5\" integrity header");
    /* a data.h5 carries another magic */
    memcpy(b, OFA_H5_MAGIC_DATA, 8);
    spit(tpath("d.h5"), b, n);
    assert_contains(load_must_fail(tpath("d.h5"), 0),
                    "not an ofa supernet checkpoint (no \"OFA-HDF5\" integrity header)");
    free(b);
    /* fuzzing findings inside libhdf5 (tests/fuzz/README.md) */
    assert_contains(load_must_fail(fixture("fuzz-ckpt-libhdf5-accum-read-segv.h5"), 0),
                    "integrity header");
    assert_contains(load_must_fail(fixture("ckpt-hdf5-huge-object-header.h5"), 0),
                    "integrity header");
    struct ofa_subnet_record r;
    struct ofa_error err;
    ck_assert_int_eq(
        ofa_subnet_record_load(fixture("fuzz-subnet-libhdf5-attr-uaf.h5"), &r, &err), -1);
    assert_contains(err.msg, "integrity header");
    assert_no_open_hdf5_objects();
    dir_teardown();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ckpt");
    TCase *tc = tcase_create("ckpt");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_ckpt_round_trip_restores_params_momentum_state_recipe);
    tcase_add_test(tc, test_subnet_record_round_trips_and_refuses_other_files);
    tcase_add_test(tc, test_ckpt_integrity_header_refuses_damage_before_hdf5);
    tcase_add_test(tc, test_guard_turns_a_crash_into_an_error);
    tcase_add_test(tc, test_guard_child_ends_with_the_tool);
    tcase_add_test(tc, test_ckpt_layout_has_groups_order_and_no_momentum_for_bn_stats);
    tcase_add_test(tc, test_ckpt_resave_after_load_is_byte_identical);
    tcase_add_test(tc, test_ckpt_shape_mismatch_names_dataset_and_both_shapes);
    tcase_add_test(tc, test_ckpt_missing_dataset_is_named);
    tcase_add_test(tc, test_ckpt_extra_tensor_is_refused_and_named);
    tcase_add_test(tc, test_ckpt_wrong_dtype_is_refused);
    tcase_add_test(tc, test_ckpt_wrong_format_is_refused);
    tcase_add_test(tc, test_ckpt_newer_version_is_refused);
    tcase_add_test(tc, test_ckpt_missing_or_mistyped_state_is_refused_after_reading_tensors);
    tcase_add_test(tc, test_ckpt_state_without_train_gflop_loads_as_zero);
    tcase_add_test(tc, test_ckpt_truncated_file_is_refused);
    tcase_add_test(tc, test_ckpt_non_hdf5_and_missing_files_are_refused);
    tcase_add_test(tc, test_ckpt_save_failure_names_file_and_keeps_old_file);
    tcase_add_test(tc, test_ckpt_killed_writer_leaves_previous_checkpoint_loadable);
    tcase_add_test(tc, test_ckpt_stale_temp_of_live_process_is_kept);
    tcase_add_test(tc, test_ckpt_deflate_shrinks_compressible_params);
    tcase_add_test(tc, test_ckpt_deflate_multi_chunk_and_big_endian_tensors_load);
    tcase_add_test(tc, test_ckpt_variable_length_strings_are_accepted);
    tcase_add_test(tc, test_ckpt_order_must_list_the_table);
    tcase_add_test(tc, test_ckpt_h5dump_reads_file);
    tcase_add_test(tc, test_ckpt_fuzz_table_round_trips);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    return nf == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
