/* check_recipe.c: recipes: defaults, the shipped recipes, includes, every
 * kind of bad recipe (file:line and key), the resolved text's round trip,
 * --set overrides, [device.NAME], [export] and [variant.NAME] sections,
 * docs/recipes.md being current, and mutated input.
 * `check_recipe --write-docs` prints docs/recipes.md (make recipe-docs). */
#include <config.h>

#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data.h"
#include "recipe.h"
#include "rng.h"
#include "space.h"
#include "util.h"

static const char *srcdir(void)
{
    const char *d = getenv("OFA_SRCDIR");
    return d && *d ? d : ".";
}

static void src_path(char *buf, size_t n, const char *rel)
{
    snprintf(buf, n, "%s/%s", srcdir(), rel);
}

static void load_ok(struct ofa_recipe *r, const char *rel)
{
    char path[1024];
    src_path(path, sizeof path, rel);
    struct ofa_error err = {0};
    int rc = ofa_recipe_load(r, path, &err);
    ck_assert_msg(rc == 0, "%s: %s:%ld: %s", rel, err.file, err.line, err.msg);
}

/* The parts of two recipes that must agree (all but the path). */
static void assert_same_recipe(const struct ofa_recipe *a, const struct ofa_recipe *b)
{
    ck_assert(memcmp(&a->space, &b->space, sizeof a->space) == 0);
    ck_assert(memcmp(&a->train, &b->train, sizeof a->train) == 0);
    ck_assert(memcmp(&a->augment, &b->augment, sizeof a->augment) == 0);
    ck_assert_int_eq(a->ckpt_deflate, b->ckpt_deflate);
    ck_assert(memcmp(&a->export, &b->export, sizeof a->export) == 0);
}

static void assert_same_variants(const struct ofa_recipe *a, const struct ofa_recipe *b)
{
    ck_assert_int_eq(a->n_variants, b->n_variants);
    ck_assert(memcmp(a->variants, b->variants, sizeof a->variants) == 0);
}

static void assert_same_devices(const struct ofa_recipe *a, const struct ofa_recipe *b)
{
    ck_assert_int_eq(a->n_devices, b->n_devices);
    ck_assert(memcmp(a->devices, b->devices, sizeof a->devices) == 0);
}

static char *read_all(FILE *f)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0) {
            cap *= 2;
            buf = realloc(buf, cap);
            ck_assert_ptr_nonnull(buf);
        }
    }
    buf[n] = '\0';
    return buf;
}

START_TEST(test_defaults_equal_space_default)
{
    struct ofa_recipe r;
    struct ofa_space sp;
    ofa_recipe_default(&r);
    ofa_space_default(&sp);
    ck_assert(memcmp(&r.space, &sp, sizeof sp) == 0);
    ck_assert_str_eq(r.path, "");
    ck_assert_int_eq(r.train.schedule, OFA_SCHED_DEPS);
    ck_assert_int_eq(r.train.n_random, 2);
    ck_assert(r.train.shrink_start == 0.5f);
    ck_assert(r.train.beta_ramp == 0.05f);
    ck_assert_int_eq(r.train.calib_images, 2000);
    ck_assert_int_eq(r.train.calib_batch, 200);
    ck_assert_int_eq(r.export.epochs, 2);
    ck_assert(r.export.alpha == 10);
    ck_assert_int_eq(r.export.fake_quant, 1);
    ck_assert_int_eq(r.export.calib_percentile_on, 0);
    ck_assert_int_eq(r.n_variants, 0); /* no default variants */
    struct ofa_error err = {0};
    ck_assert_int_eq(ofa_space_validate(&r.space, &err), 0);
    /* An empty recipe is the defaults. */
    struct ofa_recipe e;
    ck_assert_int_eq(ofa_recipe_load_string(&e, "", "empty", &err), 0);
    assert_same_recipe(&r, &e);
}
END_TEST

START_TEST(test_fashion_mnist_recipe_is_reference_space)
{
    struct ofa_recipe r, d;
    load_ok(&r, "recipes/fashion-mnist.ini");
    ofa_recipe_default(&d);
    struct ofa_space sp;
    ofa_space_default(&sp);
    ck_assert(memcmp(&r.space, &sp, sizeof sp) == 0);
    ck_assert_ptr_nonnull(strstr(r.path, "recipes/fashion-mnist.ini"));
    /* The full default recipe writes out the built-in defaults. */
    assert_same_recipe(&r, &d);
}
END_TEST

START_TEST(test_quick_recipe_includes_and_overrides)
{
    struct ofa_recipe q, f;
    load_ok(&q, "recipes/quick.ini");
    load_ok(&f, "recipes/fashion-mnist.ini");
    ck_assert(memcmp(&q.space, &f.space, sizeof q.space) == 0);
    ck_assert_int_eq(q.train.epochs, 4);
    ck_assert_int_eq(q.train.subset, 6000);
    ck_assert_int_lt(q.train.epochs, f.train.epochs);
    ck_assert(q.train.lr == f.train.lr);
    ck_assert_int_eq(q.train.batch_size, f.train.batch_size);
    ck_assert_int_eq(q.augment.crop_padding, f.augment.crop_padding);
    ck_assert_ptr_nonnull(strstr(q.path, "quick.ini"));
}
END_TEST

START_TEST(test_tiny_recipe_replaces_default_stages)
{
    struct ofa_recipe r;
    load_ok(&r, "tests/fixtures/recipes/tiny.ini");
    ck_assert_int_eq(r.space.n_stages, 2);
    ck_assert_int_eq(r.space.stages[0].width, 8);
    ck_assert_int_eq(r.space.stages[1].width, 16);
    ck_assert_int_eq(r.space.stages[1].act, OFA_ACT_HSWISH);
    ck_assert_int_eq(r.space.stages[1].se, 1);
    ck_assert_int_eq(r.space.stages[0].se, 0); /* stage default */
    /* Not merged with the 4 default stages. */
    struct ofa_stage_cfg zero;
    memset(&zero, 0, sizeof zero);
    for (int i = 2; i < OFA_MAX_STAGES; i++)
        ck_assert(memcmp(&r.space.stages[i], &zero, sizeof zero) == 0);
    ck_assert_int_eq(r.space.n_depths, 2);
    ck_assert_int_eq(r.space.depths[1], 2);
    ck_assert_int_eq(r.space.depths[2], 0);
    ck_assert_int_eq(r.train.subset, 256);
}
END_TEST

START_TEST(test_included_stage_keys_merge_with_overrides)
{
    struct ofa_recipe r;
    load_ok(&r, "tests/fixtures/recipes/tiny-override.ini");
    ck_assert_int_eq(r.space.n_stages, 2);
    ck_assert_int_eq(r.space.stages[1].width, 24); /* overridden, with a # comment */
    ck_assert_int_eq(r.space.stages[1].se, 1);     /* kept from tiny.ini */
    ck_assert_int_eq(r.space.stages[1].stride, 2);
}
END_TEST

START_TEST(test_rgb100_five_stage_recipe_loads)
{
    struct ofa_recipe r;
    load_ok(&r, "tests/fixtures/recipes/rgb100.ini");
    ck_assert_int_eq(r.space.in_channels, 3);
    ck_assert_int_eq(r.space.num_classes, 100);
    ck_assert_int_eq(r.space.n_stages, 5);
    ck_assert_int_eq(r.space.stages[3].stride, 1); /* stage default */
    ck_assert_int_eq(r.space.stages[3].se, 1);
    ck_assert_int_eq(r.space.stages[4].width, 160);
    ck_assert_int_eq(r.space.stages[0].act, OFA_ACT_RELU);
    ck_assert_int_eq(r.space.n_expands, 2);
    ck_assert_int_eq(r.train.schedule, OFA_SCHED_OFA_PS);
    ck_assert(r.space.dropout == 0.2f);
    struct ofa_error err = {0};
    ck_assert_int_eq(ofa_space_validate(&r.space, &err), 0);
}
END_TEST

static const struct bad_case {
    const char *file;     /* loaded, under tests/fixtures/recipes/ */
    const char *err_file; /* the file the error is in */
    long line;
    const char *want1, *want2; /* substrings of the message */
} bad_cases[] = {
    {"bad-section.ini", "bad-section.ini", 5, "traning", "did you mean [train]"},
    {"bad-key.ini", "bad-key.ini", 4, "train.epoch", "did you mean epochs"},
    {"bad-type.ini", "bad-type.ini", 3, "train.epochs", "expected an integer"},
    {"bad-range.ini", "bad-range.ini", 4, "supernet.dropout", "out of range"},
    {"bad-stage-no-width.ini", "bad-stage-no-width.ini", 6, "stage2.width", "[stage2]"},
    {"bad-stage-gap.ini", "bad-stage-gap.ini", 5, "[stage2]", "consecutive"},
    {"bad-stage-number.ini", "bad-stage-number.ini", 2, "stage9", "[stage8]"},
    {"bad-include-loop-a.ini", "bad-include-loop-b.ini", 3, "include", "loop"},
    {"bad-include-missing.ini", "bad-include-missing.ini", 5, "include", "no-such-file.ini"},
    {"bad-include-child.ini", "bad-type.ini", 3, "train.epochs", "expected an integer"},
    {"bad-depth.ini", "bad-depth.ini", 3, "supernet.depths", "out of range"},
    {"bad-list-order.ini", "bad-list-order.ini", 3, "supernet.kernels", "ascending"},
    {"bad-enum.ini", "bad-enum.ini", 4, "stage1.act", "relu, hswish"},
    {"bad-cross.ini", "bad-cross.ini", 4, "train.final_lr", "train.lr"},
    {"bad-toplevel-key.ini", "bad-toplevel-key.ini", 2, "epochs", "section"},
    {"bad-syntax.ini", "bad-syntax.ini", 4, "syntax error", "key = value"},
    {"bad-continuation.ini", "bad-continuation.ini", 4, "lr", "indent"},
};

START_TEST(test_bad_recipe_names_file_line_and_key)
{
    const struct bad_case *c = &bad_cases[_i];
    char rel[256], path[1024];
    snprintf(rel, sizeof rel, "tests/fixtures/recipes/%s", c->file);
    src_path(path, sizeof path, rel);
    struct ofa_recipe r;
    ofa_recipe_default(&r);
    r.train.epochs = 777;
    struct ofa_error err = {0};
    ck_assert_int_ne(ofa_recipe_load(&r, path, &err), 0);
    ck_assert_msg(strstr(err.file, c->err_file) != NULL, "%s: error in %s, expected %s",
                  c->file, err.file, c->err_file);
    ck_assert_msg(err.line == c->line, "%s: line %ld, expected %ld (%s)", c->file, err.line,
                  c->line, err.msg);
    ck_assert_msg(strstr(err.msg, c->want1) && strstr(err.msg, c->want2),
                  "%s: message \"%s\" lacks \"%s\" or \"%s\"", c->file, err.msg, c->want1,
                  c->want2);
    ck_assert_int_eq(r.train.epochs, 777); /* untouched on failure */
}
END_TEST

START_TEST(test_bad_strings_report_line)
{
    struct ofa_recipe r;
    struct ofa_error err = {0};
    /* A line longer than inih's buffer is refused, not split. */
    char text[600];
    snprintf(text, sizeof text, "[train]\n# %0500d\nepochs = 3\n", 0);
    ck_assert_int_ne(ofa_recipe_load_string(&r, text, "long", &err), 0);
    ck_assert_int_eq(err.line, 2);
    ck_assert_ptr_nonnull(strstr(err.msg, "longer than"));
    ck_assert_str_eq(err.file, "long");
    /* A string value that fits its own line but not "key = value" is refused,
     * so that every resolved recipe reads back (found by fuzz_recipe). */
    snprintf(text, sizeof text, "[device.d]\nlatency_model = opcount\nsource =%0191d\n", 0);
    ck_assert_int_ne(ofa_recipe_load_string(&r, text, "src", &err), 0);
    ck_assert_int_eq(err.line, 3);
    ck_assert_ptr_nonnull(strstr(err.msg, "longer than 190 characters"));
    snprintf(text, sizeof text,
             "[device.d]\nlatency_model = opcount\na_ms_per_mmac = 1\nsource =%0190d\n", 0);
    ofa_recipe_default(&r);
    ck_assert_msg(ofa_recipe_load_string(&r, text, "src", &err) == 0, "%s", err.msg);
    char *resolved = ofa_recipe_format(&r);
    ofa_recipe_default(&r);
    ck_assert_msg(ofa_recipe_load_string(&r, resolved, "resolved", &err) == 0, "%s", err.msg);
    free(resolved);
    /* An empty stage section still counts: it has no width. */
    ck_assert_int_ne(ofa_recipe_load_string(&r, "[stage1]\nwidth = 8\n[stage2]\n", "s", &err),
                     0);
    ck_assert_int_eq(err.line, 3);
    ck_assert_ptr_nonnull(strstr(err.msg, "stage2.width"));
    /* An empty unknown section is refused too. */
    ck_assert_int_ne(ofa_recipe_load_string(&r, "[train]\n\n[foo]\n", "s", &err), 0);
    ck_assert_int_eq(err.line, 3);
    ck_assert_ptr_nonnull(strstr(err.msg, "foo"));
    /* Values: floats, booleans, lists. */
    ck_assert_int_ne(ofa_recipe_load_string(&r, "[train]\nlr = nan\n", "s", &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "train.lr"));
    ck_assert_int_ne(ofa_recipe_load_string(&r, "[augment]\nflip = maybe\n", "s", &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "augment.flip"));
    ck_assert_int_ne(ofa_recipe_load_string(&r, "[supernet]\nkernels = 3, 4\n", "s", &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "odd"));
    ck_assert_int_ne(
        ofa_recipe_load_string(&r, "[supernet]\ndepths = 1,2,3,4,5,6,7,8,8\n", "s", &err), 0);
    ck_assert_int_ne(ofa_recipe_load_string(&r, "[supernet]\ndepths = 2,\n", "s", &err), 0);
    ck_assert_int_ne(ofa_recipe_load_string(&r, "[train]\nepochs = 99999999999999999999\n",
                                            "s", &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "out of range"));
    /* A default that breaks a constraint is blamed on the key, without a line. */
    ck_assert_int_ne(ofa_recipe_load_string(&r, "[train]\ncalib_images = 100\n", "s", &err),
                     0);
    ck_assert_int_eq(err.line, 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "train.calib_batch"));
    ck_assert_int_ne(ofa_recipe_load_string(&r, "[train]\n\nbatch_size = 512\nsubset = 100\n",
                                            "s", &err), 0);
    ck_assert_int_eq(err.line, 4);
    ck_assert_ptr_nonnull(strstr(err.msg, "train.subset"));
}
END_TEST

START_TEST(test_string_loader_refuses_include)
{
    struct ofa_recipe r;
    struct ofa_error err = {0};
    ck_assert_int_ne(ofa_recipe_load_string(&r, "\n[train]\ninclude = x.ini\n", "ckpt", &err),
                     0);
    ck_assert_str_eq(err.file, "ckpt");
    ck_assert_int_eq(err.line, 3);
    ck_assert_ptr_nonnull(strstr(err.msg, "include"));
}
END_TEST

/* A chain d0.ini -> d1.ini -> ... in a temporary directory. */
static void write_chain(const char *dir, int n)
{
    for (int i = 0; i <= n; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/d%d.ini", dir, i);
        FILE *f = fopen(path, "w");
        ck_assert_ptr_nonnull(f);
        if (i < n)
            fprintf(f, "include = d%d.ini\n", i + 1);
        fprintf(f, "[train]\nseed = %d\n", 100 + i);
        fclose(f);
    }
}

START_TEST(test_include_depth_is_limited)
{
    char dir[] = "/tmp/ofa-recipe-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[512];
    snprintf(path, sizeof path, "%s/d0.ini", dir);
    struct ofa_recipe r;
    struct ofa_error err = {0};
    write_chain(dir, 8); /* 8 nested includes are fine */
    ck_assert_msg(ofa_recipe_load(&r, path, &err) == 0, "%s:%ld: %s", err.file, err.line,
                  err.msg);
    ck_assert_int_eq(r.train.seed, 100); /* the includer's value comes last */
    write_chain(dir, 9);
    ck_assert_int_ne(ofa_recipe_load(&r, path, &err), 0);
    ck_assert_ptr_nonnull(strstr(err.file, "d8.ini"));
    ck_assert_int_eq(err.line, 1);
    ck_assert_ptr_nonnull(strstr(err.msg, "nested"));
    for (int i = 0; i <= 9; i++) {
        snprintf(path, sizeof path, "%s/d%d.ini", dir, i);
        remove(path);
    }
    remove(dir);
}
END_TEST

static void check_round_trip(const char *rel)
{
    struct ofa_recipe a, b;
    load_ok(&a, rel);
    char *text = ofa_recipe_format(&a);
    struct ofa_error err = {0};
    int rc = ofa_recipe_load_string(&b, text, "resolved", &err);
    ck_assert_msg(rc == 0, "%s: resolved:%ld: %s", rel, err.line, err.msg);
    assert_same_recipe(&a, &b);
    assert_same_devices(&a, &b);
    assert_same_variants(&a, &b);
    ck_assert_str_eq(b.path, "");
    char *again = ofa_recipe_format(&b);
    ck_assert_str_eq(text, again);
    free(text);
    free(again);
}

START_TEST(test_format_round_trips_exactly)
{
    check_round_trip("recipes/fashion-mnist.ini");
    check_round_trip("recipes/quick.ini");
    check_round_trip("tests/fixtures/recipes/tiny.ini");
    check_round_trip("tests/fixtures/recipes/rgb100.ini");
    /* Floats that need all 9 digits survive too. */
    struct ofa_recipe a, b;
    ofa_recipe_default(&a);
    a.train.lr = 0.123456789f;
    a.train.weight_decay = 3.0e-5f;
    a.space.bn_eps = 1.17549435e-38f * 1e30f;
    a.train.seed = 1234567890123L;
    /* Devices, with doubles that need all 17 digits and text. */
    a.n_devices = 2;
    memset(a.devices, 0, sizeof a.devices);
    snprintf(a.devices[0].name, sizeof a.devices[0].name, "m.4_x-1");
    a.devices[0].model = OFA_LAT_OPCOUNT;
    a.devices[0].a_ms_per_mmac = 0.1 + 0.2;
    a.devices[0].b_ms = -1.0 / 3.0;
    a.devices[0].sram_kb = 127.5;
    snprintf(a.devices[0].source, sizeof a.devices[0].source, "a, b (c) 1#2 x=y");
    snprintf(a.devices[1].name, sizeof a.devices[1].name, "t");
    a.devices[1].model = OFA_LAT_LUT;
    snprintf(a.devices[1].lut, sizeof a.devices[1].lut, "/abs/t.tsv");
    a.devices[1].latency_ms = 1e-7;
    /* [export] and variants, with floats that need all digits. */
    a.export.alpha = 0.1f + 0.2f;
    a.export.calib_percentile_on = 1;
    a.export.calib_percentile = 99.999f;
    a.export.seed = 987654321098L;
    a.n_variants = 2;
    memset(a.variants, 0, sizeof a.variants);
    snprintf(a.variants[0].name, sizeof a.variants[0].name, "ph.1_b-x");
    a.variants[0].jpeg_quality = 37;
    a.variants[0].gamma = 1.0f / 3.0f;
    a.variants[0].brightness = -0.0123456789f;
    a.variants[0].contrast = 1.1f;
    a.variants[0].blur_sigma = 0.7f;
    a.variants[0].noise_std = 0.02f;
    a.variants[0].interp = OFA_INTERP_AREA;
    snprintf(a.variants[1].name, sizeof a.variants[1].name, "q");
    a.variants[1].gamma = 1;
    a.variants[1].contrast = 1;
    a.variants[1].interp = OFA_INTERP_NEAREST;
    a.variants[1].int8 = 1;
    char *text = ofa_recipe_format(&a);
    struct ofa_error err = {0};
    ck_assert_msg(ofa_recipe_load_string(&b, text, "t", &err) == 0, "%s", err.msg);
    assert_same_recipe(&a, &b);
    assert_same_devices(&a, &b);
    assert_same_variants(&a, &b);
    char *again = ofa_recipe_format(&b);
    ck_assert_str_eq(text, again);
    free(again);
    free(text);
}
END_TEST

START_TEST(test_set_overrides_keys)
{
    struct ofa_recipe r;
    load_ok(&r, "recipes/fashion-mnist.ini");
    struct ofa_error err = {0};
    ck_assert_int_eq(ofa_recipe_set(&r, "train.epochs=5", &err), 0);
    ck_assert_int_eq(r.train.epochs, 5);
    ck_assert_int_eq(ofa_recipe_set(&r, " stage2.width = 48 ", &err), 0);
    ck_assert_int_eq(r.space.stages[1].width, 48);
    ck_assert_int_eq(ofa_recipe_set(&r, "supernet.depths=1,2", &err), 0);
    ck_assert_int_eq(r.space.n_depths, 2);
    ck_assert_int_eq(r.space.depths[2], 0);
    ck_assert_int_eq(ofa_recipe_set(&r, "augment.flip=no", &err), 0);
    ck_assert_int_eq(r.augment.flip, 0);
    ck_assert_int_eq(ofa_recipe_set(&r, "train.schedule=bignas", &err), 0);
    ck_assert_int_eq(r.train.schedule, OFA_SCHED_BIGNAS);
    ck_assert_int_eq(ofa_recipe_set(&r, "checkpoint.deflate=4", &err), 0);
    ck_assert_int_eq(r.ckpt_deflate, 4);

    struct ofa_recipe before;
    memcpy(&before, &r, sizeof r);
    static const struct {
        const char *a, *want;
    } bad[] = {
        {"train.epochs=abc", "expected an integer"},
        {"train.epochs", "section.key=value"},
        {"epochs=3", "section.key=value"},
        {"train.epoch=3", "did you mean epochs"},
        {"trian.epochs=3", "unknown section"},
        {"stage5.width=8", "4 stages"},
        {"stage2.width=0", "out of range"},
        {"train.final_lr=1", "train.lr"},
        {"supernet.include=x.ini", "include"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&err, 0, sizeof err);
        ck_assert_int_ne(ofa_recipe_set(&r, bad[i].a, &err), 0);
        ck_assert_msg(strstr(err.msg, bad[i].a) && strstr(err.msg, bad[i].want),
                      "--set %s: \"%s\"", bad[i].a, err.msg);
        ck_assert(memcmp(&r, &before, sizeof r) == 0);
    }
}
END_TEST

START_TEST(test_fashion_mnist_recipe_declares_default_devices)
{
    struct ofa_recipe r;
    load_ok(&r, "recipes/fashion-mnist.ini");
    static const struct {
        const char *name;
        enum ofa_latency_model model;
        enum ofa_arith arith;
        double flash_kb, sram_kb;
    } want[] = {
        {"host-fp32", OFA_LAT_MEASURED, OFA_ARITH_FP32, 0, 0},
        {"host-int8", OFA_LAT_MEASURED, OFA_ARITH_INT8, 0, 0},
        {"cortex-m4", OFA_LAT_OPCOUNT, OFA_ARITH_FP32, 512, 128},
        {"cortex-m7", OFA_LAT_OPCOUNT, OFA_ARITH_FP32, 1024, 320},
        {"cortex-m7-large", OFA_LAT_OPCOUNT, OFA_ARITH_FP32, 2048, 512},
        {"example-lut", OFA_LAT_LUT, OFA_ARITH_FP32, 0, 0},
    };
    const int nd = (int)(sizeof want / sizeof want[0]);
    ck_assert_int_eq(r.n_devices, nd);
    for (int i = 0; i < nd; i++) {
        const struct ofa_device *d = &r.devices[i];
        ck_assert_str_eq(d->name, want[i].name);
        ck_assert_int_eq(d->model, want[i].model);
        ck_assert_int_eq(d->arith, want[i].arith);
        ck_assert(d->flash_kb == want[i].flash_kb && d->sram_kb == want[i].sram_kb);
        ck_assert(d->latency_ms > 0);
        ck_assert(d->source[0] != '\0');
        if (d->model == OFA_LAT_OPCOUNT)
            ck_assert(d->a_ms_per_mmac > 0);
        ck_assert_ptr_eq(ofa_recipe_device(&r, want[i].name), d);
    }
    /* The lut path is stored absolute and names the shipped table. */
    const struct ofa_device *lut = ofa_recipe_device(&r, "example-lut");
    ck_assert_int_eq(lut->lut[0], '/');
    ck_assert_ptr_nonnull(strstr(lut->lut, "recipes/devices/example-lut.tsv"));
    FILE *f = fopen(lut->lut, "r");
    ck_assert_msg(f != NULL, "%s", lut->lut);
    fclose(f);
    /* quick.ini includes it: the devices come along. */
    struct ofa_recipe q;
    load_ok(&q, "recipes/quick.ini");
    assert_same_devices(&r, &q);
}
END_TEST

static int load_str(struct ofa_recipe *r, const char *text, struct ofa_error *err)
{
    memset(err, 0, sizeof *err);
    return ofa_recipe_load_string(r, text, "s", err);
}

START_TEST(test_device_sections_accumulate_and_override)
{
    struct ofa_recipe r;
    struct ofa_error err;
    ck_assert_int_eq(load_str(&r, "[device.a]\nlatency_model = opcount\na_ms_per_mmac = 2\n"
                                  "[train]\nepochs = 3\n[device.b]\nsram_kb = 64\n"
                                  "[device.a]\nb_ms = 1.5\nlut = rel/x.tsv\n"
                                  "resolutions = 24, 28\n", &err), 0);
    ck_assert_int_eq(r.n_devices, 2);
    ck_assert_str_eq(r.devices[0].name, "a");
    ck_assert(r.devices[0].a_ms_per_mmac == 2 && r.devices[0].b_ms == 1.5);
    ck_assert(r.devices[0].n_res == 2 && r.devices[0].resolutions[0] == 24 &&
              r.devices[0].resolutions[1] == 28);
    ck_assert_int_eq(r.devices[1].n_res, 0); /* default: every resolution */
    /* both round-trip through the resolved text, the empty list too */
    char *text = ofa_recipe_format(&r);
    struct ofa_recipe r2;
    ck_assert_msg(load_str(&r2, text, &err) == 0, "%s", err.msg);
    free(text);
    ck_assert(r2.devices[0].n_res == 2 && r2.devices[0].resolutions[1] == 28 &&
              r2.devices[1].n_res == 0);
    ck_assert_str_eq(r.devices[0].lut, "rel/x.tsv"); /* the string loader keeps it */
    ck_assert_int_eq(r.devices[1].model, OFA_LAT_MEASURED); /* default */
    ck_assert(r.devices[1].sram_kb == 64 && r.devices[1].latency_ms == 0);
    ck_assert_int_eq(r.train.epochs, 3);
    /* An empty device section is a device with every default. */
    ck_assert_int_eq(load_str(&r, "[device.x]\n", &err), 0);
    ck_assert_int_eq(r.n_devices, 1);
    /* Devices in an included file accumulate; a relative lut path is
     * resolved against the file that sets it. */
    char dir[] = "/tmp/ofa-dev-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char sub[100], a[200], b[200];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    ck_assert_int_eq(mkdir(sub, 0700), 0);
    snprintf(a, sizeof a, "%s/a.ini", dir);
    snprintf(b, sizeof b, "%s/b.ini", sub);
    FILE *f = fopen(b, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "[device.one]\nlatency_model = lut\nlut = t.tsv\n[device.two]\nmmacs = 5\n");
    fclose(f);
    f = fopen(a, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "include = sub/b.ini\n[device.three]\nflash_kb = 1\n[device.one]\nsram_kb = 2\n");
    fclose(f);
    ck_assert_msg(ofa_recipe_load(&r, a, &err) == 0, "%s:%ld: %s", err.file, err.line, err.msg);
    ck_assert_int_eq(r.n_devices, 3);
    ck_assert_str_eq(r.devices[0].name, "one");
    ck_assert_str_eq(r.devices[2].name, "three");
    ck_assert(r.devices[0].sram_kb == 2 && r.devices[1].mmacs == 5);
    char want[700];
    snprintf(want, sizeof want, "%s/t.tsv", sub);
    ck_assert_str_eq(r.devices[0].lut, want);
    /* A relative lut path that resolves longer than a recipe line holds
     * (193 characters after "lut = ") is refused: the resolved recipe would
     * not read back. */
    char deep[400], c[500];
    snprintf(deep, sizeof deep, "%s/%0200d", dir, 0);
    ck_assert_int_eq(mkdir(deep, 0700), 0);
    snprintf(c, sizeof c, "%s/c.ini", deep);
    f = fopen(c, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "[device.one]\nlatency_model = lut\nlut = t.tsv\n");
    fclose(f);
    ck_assert_int_ne(ofa_recipe_load(&r, c, &err), 0);
    ck_assert_msg(strstr(err.msg, "longer than 193 characters"), "%s", err.msg);
    /* So is one of --set, resolved against the working directory (the
     * resolved recipe did not load again). */
    ck_assert_int_eq(ofa_recipe_load(&r, a, &err), 0);
    char cwd[PATH_MAX];
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
    ck_assert_int_eq(chdir(deep), 0);
    ck_assert_int_ne(ofa_recipe_set(&r, "device.one.lut=t.tsv", &err), 0);
    ck_assert_msg(strstr(err.msg, "longer than 193 characters"), "%s", err.msg);
    ck_assert_str_eq(r.devices[0].lut, want);
    ck_assert_int_eq(chdir(dir), 0);
    ck_assert_int_eq(ofa_recipe_set(&r, "device.one.lut=sub/t.tsv", &err), 0);
    ck_assert_str_eq(r.devices[0].lut, want);
    char *resolved = ofa_recipe_format(&r);
    struct ofa_recipe back;
    ck_assert_msg(ofa_recipe_load_string(&back, resolved, "resolved", &err) == 0, "%s", err.msg);
    free(resolved);
    ck_assert_int_eq(chdir(cwd), 0);
    remove(c);
    remove(deep);
    remove(a);
    remove(b);
    remove(sub);
    remove(dir);
}
END_TEST

START_TEST(test_bad_devices_name_line_and_key)
{
    static const struct {
        const char *text;
        long line;
        const char *want1, *want2;
    } bad[] = {
        {"[device.m4]\nlatency_model = opcount\n", 1, "device.m4.a_ms_per_mmac", "> 0"},
        {"[device.m4]\nlatency_model = opcount\na_ms_per_mmac = 0\n", 3, "a_ms_per_mmac",
         "opcount"},
        {"[device.t]\n\nlatency_model = lut\n", 1, "device.t.lut", "table"},
        {"[device.t]\nlatency_model = opwise\narith = int8\n", 3, "device.t.arith", "measured"},
        {"[device.t]\narith = int4\n", 2, "device.t.arith", "int8"},
        {"[device.t]\nram_kb = 3\n", 2, "device.t.ram_kb", "did you mean sram_kb"},
        {"[device.t]\nsram_kb = -1\n", 2, "device.t.sram_kb", "out of range"},
        {"[device.t]\nflash_kb = lots\n", 2, "device.t.flash_kb", "expected a number"},
        {"[device.t]\nlatency_model = fast\n", 2, "device.t.latency_model", "opcount"},
        {"[device.t]\nresolutions = 28, 24\n", 2, "device.t.resolutions", "ascending"},
        {"[device.t]\nresolutions = 24,\n", 2, "device.t.resolutions", "list of integers"},
        {"[device.t]\nresolutions = 4\n", 2, "device.t.resolutions", "out of range"},
        {"[device.t]\nsource = a ;b\n\n[device.t]\nsource = x\x01y\n", 5, "source", "control"},
        /* read as ";b", but written back as "lut = ;b", a comment (a fuzz finding) */
        {"[device.t]\nlatency_model = lut\nlut =;b\n", 3, "device.t.lut", "start of a value"},
        {"\n[device.a b]\n", 2, "[device.a b]", "NAME"},
        {"[device.]\n", 1, "device", "NAME"},
        {"[device]\n", 1, "device", "NAME"},
        {"[devcie.x]\n", 1, "devcie.x", "did you mean [device.x]"},
        {"[train]\nsram_kb = 3\n", 2, "train.sram_kb", "[device.NAME]"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct ofa_recipe r;
        struct ofa_error err;
        ck_assert_msg(load_str(&r, bad[i].text, &err) != 0, "accepted: %s", bad[i].text);
        ck_assert_msg(err.line == bad[i].line && strstr(err.msg, bad[i].want1) &&
                          strstr(err.msg, bad[i].want2),
                      "case %zu: line %ld (want %ld): %s", i, err.line, bad[i].line, err.msg);
    }
    /* At most OFA_MAX_DEVICES devices. */
    char text[2048] = "";
    for (int i = 0; i <= OFA_MAX_DEVICES; i++) {
        size_t l = strlen(text);
        snprintf(text + l, sizeof text - l, "[device.d%d]\n", i);
    }
    struct ofa_recipe r;
    struct ofa_error err;
    ck_assert_int_ne(load_str(&r, text, &err), 0);
    ck_assert_int_eq(err.line, OFA_MAX_DEVICES + 1);
    ck_assert_ptr_nonnull(strstr(err.msg, "more than"));
}
END_TEST

START_TEST(test_set_overrides_device_keys)
{
    struct ofa_recipe r;
    load_ok(&r, "recipes/fashion-mnist.ini");
    struct ofa_error err = {0};
    ck_assert_int_eq(ofa_recipe_set(&r, "device.cortex-m4.sram_kb=256", &err), 0);
    ck_assert(ofa_recipe_device(&r, "cortex-m4")->sram_kb == 256);
    ck_assert_int_eq(ofa_recipe_set(&r, "device.cortex-m7-large.latency_ms = 0.5", &err), 0);
    ck_assert(ofa_recipe_device(&r, "cortex-m7-large")->latency_ms == 0.5);
    ck_assert_int_eq(ofa_recipe_set(&r, "device.example-lut.lut=/x/y.tsv", &err), 0);
    ck_assert_str_eq(ofa_recipe_device(&r, "example-lut")->lut, "/x/y.tsv");
    struct ofa_recipe before;
    memcpy(&before, &r, sizeof r);
    static const struct {
        const char *a, *want;
    } bad[] = {
        {"device.nope.sram_kb=1", "no device nope"},
        {"device.cortex-m4.sram_k=1", "did you mean sram_kb"},
        {"device.cortex-m4.a_ms_per_mmac=0", "> 0"},
        {"device.example-lut.lut=", "needs a table"},
        {"device.cortex-m4.source=a #b", "comment"},
        {"device.cortex-m4.source=;b", "comment"},
        {"device.cortex-m4.source=#b", "comment"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&err, 0, sizeof err);
        ck_assert_int_ne(ofa_recipe_set(&r, bad[i].a, &err), 0);
        ck_assert_msg(strstr(err.msg, bad[i].want), "--set %s: \"%s\"", bad[i].a, err.msg);
        ck_assert(memcmp(&r, &before, sizeof r) == 0);
    }
}
END_TEST

START_TEST(test_fashion_mnist_recipe_declares_variants_and_export)
{
    struct ofa_recipe r, d;
    load_ok(&r, "recipes/fashion-mnist.ini");
    ofa_recipe_default(&d);
    /* [export] is written out at the built-in defaults. */
    ck_assert(memcmp(&r.export, &d.export, sizeof r.export) == 0);
    ck_assert_int_gt(r.export.epochs, 0);
    ck_assert_int_eq(r.export.subset, 0); /* every training image */
    static const struct {
        const char *name;
        int jpeg, interp, int8;
        float gamma, contrast, noise;
    } want[] = {
        {"phone-a", 95, OFA_INTERP_BILINEAR, 0, 1.0f, 1.0f, 0.0f},
        {"phone-b", 70, OFA_INTERP_BILINEAR, 0, 0.9f, 1.0f, 0.02f},
        {"sensor-c", 0, OFA_INTERP_NEAREST, 0, 1.0f, 1.1f, 0.0f},
        {"int8", 0, OFA_INTERP_BILINEAR, 1, 1.0f, 1.0f, 0.0f},
    };
    ck_assert_int_eq(r.n_variants, 4);
    for (int i = 0; i < 4; i++) {
        const struct ofa_variant_cfg *v = &r.variants[i];
        ck_assert_str_eq(v->name, want[i].name);
        ck_assert_int_eq(v->jpeg_quality, want[i].jpeg);
        ck_assert_int_eq(v->interp, want[i].interp);
        ck_assert_int_eq(v->int8, want[i].int8);
        ck_assert(v->gamma == want[i].gamma && v->contrast == want[i].contrast);
        ck_assert(v->noise_std == want[i].noise && v->brightness == 0 && v->blur_sigma == 0);
    }
    /* quick.ini includes them and shortens the pass. */
    struct ofa_recipe q;
    load_ok(&q, "recipes/quick.ini");
    assert_same_variants(&r, &q);
    ck_assert_int_gt(q.export.subset, 0); /* a subset, where the default takes all */
    /* ofa-extract's settings: OFA's defaults, fewer for the quick recipe */
    ck_assert_int_eq(r.extract.samples, 300);
    ck_assert_int_eq(r.extract.generations, 500);
    ck_assert_int_eq(r.extract.top, 5);
    ck_assert_int_lt(q.extract.samples, r.extract.samples);
    ck_assert_int_lt(q.extract.generations, r.extract.generations);
    ck_assert_int_gt(q.export.test_images, 0);
    ck_assert(q.export.lr == r.export.lr);
}
END_TEST

START_TEST(test_variant_sections_accumulate_and_override)
{
    struct ofa_recipe r;
    struct ofa_error err;
    ck_assert_int_eq(load_str(&r, "[variant.b]\njpeg_quality = 50\n[export]\nalpha = 2\n"
                                  "calib_method = percentile\ncalib_percentile = 99.9\n"
                                  "[variant.a]\nresize = area\narithmetic = int8\n"
                                  "[variant.b]\nnoise = 0.1\nblur = 0.5\n", &err), 0);
    ck_assert_int_eq(r.n_variants, 2);
    ck_assert_str_eq(r.variants[0].name, "b");
    ck_assert_int_eq(r.variants[0].jpeg_quality, 50);
    ck_assert(r.variants[0].noise_std == 0.1f && r.variants[0].blur_sigma == 0.5f);
    ck_assert_int_eq(r.variants[0].interp, OFA_INTERP_BILINEAR); /* default */
    ck_assert(r.variants[0].gamma == 1 && r.variants[0].contrast == 1);
    ck_assert_str_eq(r.variants[1].name, "a");
    ck_assert_int_eq(r.variants[1].interp, OFA_INTERP_AREA);
    ck_assert_int_eq(r.variants[1].int8, 1);
    ck_assert(r.export.alpha == 2);
    ck_assert_int_eq(r.export.calib_percentile_on, 1);
    ck_assert(r.export.calib_percentile == 99.9f);
    /* An empty variant section is the clean fp32 pipeline under a name. */
    ck_assert_int_eq(load_str(&r, "[variant.x]\n", &err), 0);
    ck_assert_int_eq(r.n_variants, 1);
    ck_assert_int_eq(r.variants[0].jpeg_quality, 0);
    ck_assert_int_eq(r.variants[0].int8, 0);
    /* Variants in an included file come first, then the includer's. */
    char dir[] = "/tmp/ofa-var-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char a[200], b[200];
    snprintf(a, sizeof a, "%s/a.ini", dir);
    snprintf(b, sizeof b, "%s/b.ini", dir);
    FILE *f = fopen(b, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "[variant.one]\ngamma = 2\n[export]\nepochs = 3\n");
    fclose(f);
    f = fopen(a, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "include = b.ini\n[variant.two]\ncontrast = 0.5\n[variant.one]\nbrightness = "
               "0.25\n[export]\nepochs = 0\n");
    fclose(f);
    ck_assert_msg(ofa_recipe_load(&r, a, &err) == 0, "%s:%ld: %s", err.file, err.line, err.msg);
    ck_assert_int_eq(r.n_variants, 2);
    ck_assert_str_eq(r.variants[0].name, "one");
    ck_assert(r.variants[0].gamma == 2 && r.variants[0].brightness == 0.25f);
    ck_assert(r.variants[1].contrast == 0.5f);
    ck_assert_int_eq(r.export.epochs, 0);
    remove(a);
    remove(b);
    remove(dir);
}
END_TEST

START_TEST(test_bad_variants_and_export_name_line_and_key)
{
    static const struct {
        const char *text;
        long line;
        const char *want1, *want2;
    } bad[] = {
        {"[variant.p]\njpeg_quality = 101\n", 2, "variant.p.jpeg_quality", "out of range"},
        {"[variant.p]\n\njpeg_quality = high\n", 3, "variant.p.jpeg_quality",
         "expected an integer"},
        {"[variant.p]\ngamma = 0\n", 2, "variant.p.gamma", "out of range"},
        {"[variant.p]\nnoise = -0.1\n", 2, "variant.p.noise", "out of range"},
        {"[variant.p]\nresize = cubic\n", 2, "variant.p.resize", "nearest, bilinear, area"},
        {"[variant.p]\narithmetic = int4\n", 2, "variant.p.arithmetic", "fp32, int8"},
        {"[variant.p]\njpeg_qualty = 90\n", 2, "variant.p.jpeg_qualty", "did you mean jpeg_quality"},
        {"[variant.p]\nlatency_ms = 3\n", 2, "variant.p.latency_ms", "[device.NAME]"},
        {"[train]\njpeg_quality = 3\n", 2, "train.jpeg_quality", "[variant.NAME]"},
        {"\n[variant.a b]\n", 2, "[variant.a b]", "NAME"},
        {"[variant.]\n", 1, "variant", "NAME"},
        {"[variant]\n", 1, "variant", "NAME"},
        {"[varaint.x]\n", 1, "varaint.x", "did you mean [variant.x]"},
        {"[exprot]\n", 1, "exprot", "did you mean [export]"},
        {"[export]\nlr = 0\n", 2, "export.lr", "out of range"},
        {"[extract]\nsamples = 5\n", 2, "extract.samples", "out of range"},
        {"[extract]\ntop = 65\n", 2, "extract.top", "out of range"},
        {"[extract]\npopulation = 50\n", 2, "extract.population", "unknown"},
        {"[export]\ncalib_method = median\n", 2, "export.calib_method", "minmax, percentile"},
        {"[export]\ncalib_percentile = 40\n", 2, "export.calib_percentile", "out of range"},
        {"[export]\nfake_quant = maybe\n", 2, "export.fake_quant", "yes/no"},
        {"[export]\nepoch = 2\n", 2, "export.epoch", "did you mean epochs"},
        {"[export]\n\nsubset = 100\n", 3, "export.subset", "export.batch_size"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct ofa_recipe r;
        struct ofa_error err;
        ck_assert_msg(load_str(&r, bad[i].text, &err) != 0, "accepted: %s", bad[i].text);
        ck_assert_msg(err.line == bad[i].line && strstr(err.msg, bad[i].want1) &&
                          strstr(err.msg, bad[i].want2),
                      "case %zu: line %ld (want %ld): %s", i, err.line, bad[i].line, err.msg);
    }
    /* At most OFA_MAX_VARIANTS variants. */
    char text[2048] = "";
    for (int i = 0; i <= OFA_MAX_VARIANTS; i++) {
        size_t l = strlen(text);
        snprintf(text + l, sizeof text - l, "[variant.v%d]\n", i);
    }
    struct ofa_recipe r;
    struct ofa_error err;
    ck_assert_int_ne(load_str(&r, text, &err), 0);
    ck_assert_int_eq(err.line, OFA_MAX_VARIANTS + 1);
    ck_assert_ptr_nonnull(strstr(err.msg, "more than"));
}
END_TEST

START_TEST(test_set_overrides_variant_and_export_keys)
{
    struct ofa_recipe r;
    load_ok(&r, "recipes/fashion-mnist.ini");
    struct ofa_error err = {0};
    ck_assert_int_eq(ofa_recipe_set(&r, "variant.phone-b.jpeg_quality=10", &err), 0);
    ck_assert_int_eq(r.variants[1].jpeg_quality, 10);
    ck_assert_int_eq(ofa_recipe_set(&r, "variant.sensor-c.resize = area", &err), 0);
    ck_assert_int_eq(r.variants[2].interp, OFA_INTERP_AREA);
    ck_assert_int_eq(ofa_recipe_set(&r, "export.alpha=0.5", &err), 0);
    ck_assert(r.export.alpha == 0.5f);
    ck_assert_int_eq(ofa_recipe_set(&r, "export.calib_method=percentile", &err), 0);
    ck_assert_int_eq(r.export.calib_percentile_on, 1);
    ck_assert_int_eq(ofa_recipe_set(&r, "export.epochs=0", &err), 0);
    ck_assert_int_eq(r.export.epochs, 0);
    struct ofa_recipe before;
    memcpy(&before, &r, sizeof r);
    static const struct {
        const char *a, *want;
    } bad[] = {
        {"variant.nope.noise=0.1", "no variant nope (variants: phone-a, phone-b, sensor-c, int8)"},
        {"variant.phone-a.nois=0.1", "did you mean noise"},
        {"variant.phone-a.noise=2", "out of range"},
        {"variant.int8.arithmetic=int16", "fp32, int8"},
        {"export.calib_method=best", "minmax, percentile"},
        {"export.subset=5", "export.batch_size"},
        {"exprt.lr=1", "unknown section"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&err, 0, sizeof err);
        ck_assert_int_ne(ofa_recipe_set(&r, bad[i].a, &err), 0);
        ck_assert_msg(strstr(err.msg, bad[i].a) && strstr(err.msg, bad[i].want),
                      "--set %s: \"%s\"", bad[i].a, err.msg);
        ck_assert(memcmp(&r, &before, sizeof r) == 0);
    }
}
END_TEST

/* [export.NAME]: the [export] keys one device's export sets otherwise. */
START_TEST(test_export_device_sections_set_one_devices_settings)
{
    struct ofa_recipe r;
    struct ofa_error err;
    /* before [export] and before the device, over two sections */
    ck_assert_msg(load_str(&r, "[export.m4]\nvariant_draw = worst\n[export]\nalpha = 2\n"
                               "variant_draw = all\n[device.m4]\nlatency_model = opcount\n"
                               "a_ms_per_mmac = 1\n[device.h]\n[export.m4]\nepochs = 5\n",
                           &err) == 0, "%s", err.msg);
    ck_assert_int_eq(r.n_export_overrides, 1);
    ck_assert_str_eq(r.export_overrides[0].device, "m4");
    ck_assert_int_eq(r.export.variant_draw, OFA_DRAW_ALL);
    ck_assert_int_eq(r.export.epochs, 2);
    struct ofa_export_cfg x, want = r.export;
    want.variant_draw = OFA_DRAW_WORST;
    want.epochs = 5;
    ofa_recipe_export(&r, "m4", &x);
    ck_assert(memcmp(&x, &want, sizeof x) == 0);
    ck_assert(x.alpha == 2.0f); /* [export]'s, not the default */
    ofa_recipe_export(&r, "h", &x);
    ck_assert(memcmp(&x, &r.export, sizeof x) == 0);
    ofa_recipe_export(&r, "none", &x);
    ck_assert(memcmp(&x, &r.export, sizeof x) == 0);

    /* written out with the keys it sets only, and read back the same */
    char *text = ofa_recipe_format(&r);
    ck_assert_ptr_nonnull(strstr(text, "\n[export.m4]\nepochs = 5\nvariant_draw = worst\n"));
    struct ofa_recipe b;
    ck_assert_msg(load_str(&b, text, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(b.n_export_overrides, 1);
    ck_assert(memcmp(b.export_overrides, r.export_overrides, sizeof r.export_overrides) == 0);
    char *again = ofa_recipe_format(&b);
    ck_assert_str_eq(text, again);
    free(again);
    free(text);
    /* the training part does not hold them */
    text = ofa_recipe_format_training(&r);
    ck_assert_ptr_null(strstr(text, "[export"));
    free(text);

    /* --set export.NAME.key, for any device of the recipe */
    ck_assert_int_eq(ofa_recipe_set(&r, "export.h.lr=0.5", &err), 0);
    ck_assert_int_eq(r.n_export_overrides, 2);
    ofa_recipe_export(&r, "h", &x);
    ck_assert(x.lr == 0.5f && r.export.lr != 0.5f);
    ck_assert_int_eq(ofa_recipe_set(&r, "export.m4.variant_draw = random", &err), 0);
    ofa_recipe_export(&r, "m4", &x);
    ck_assert_int_eq(x.variant_draw, OFA_DRAW_RANDOM);
    ck_assert_int_eq(x.epochs, 5);
    /* [export] keys set later do not undo a device's own */
    ck_assert_int_eq(ofa_recipe_set(&r, "export.epochs=1", &err), 0);
    ofa_recipe_export(&r, "m4", &x);
    ck_assert_int_eq(x.epochs, 5);
    struct ofa_recipe before;
    memcpy(&before, &r, sizeof r);
    static const struct {
        const char *a, *want;
    } bad[] = {
        {"export.zz.lr=1", "no device zz (devices: m4, h)"},
        {"export.h.lrr=1", "did you mean lr"},
        {"export.h.variant_draw=best", "random, worst, all"},
        {"export.h.subset=5", "export.h.subset (5) must be 0"},
        {"export.h.latency_ms=5", "unknown key"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&err, 0, sizeof err);
        ck_assert_int_ne(ofa_recipe_set(&r, bad[i].a, &err), 0);
        ck_assert_msg(strstr(err.msg, bad[i].a) && strstr(err.msg, bad[i].want),
                      "--set %s: \"%s\"", bad[i].a, err.msg);
        ck_assert(memcmp(&r, &before, sizeof r) == 0);
    }

    /* bad sections and keys: file line and name */
    static const struct {
        const char *text;
        long line;
        const char *want1, *want2;
    } bad_text[] = {
        {"[device.a]\n[export.b]\nepochs = 1\n", 2, "[export.b]", "no device b"},
        {"[device.a]\n[export.a]\nepochs = -1\n", 3, "export.a.epochs", "out of range"},
        {"[device.a]\n[export.a]\nepoch = 1\n", 3, "export.a.epoch", "did you mean epochs"},
        {"[device.a]\n[export.a]\n\nsubset = 100\n", 4, "export.a.subset", "batch_size"},
        {"[device.a]\n[export.a]\nbatch_size = 256\n[export]\nsubset = 200\n", 2,
         "export.a.subset (200)", "export.a.batch_size (256)"},
        {"[export.]\n", 1, "export.", "NAME"},
        {"[device.a]\n[export.a]\nsram_kb = 3\n", 3, "export.a.sram_kb", "[device.NAME]"},
    };
    for (size_t i = 0; i < sizeof bad_text / sizeof bad_text[0]; i++) {
        ck_assert_msg(load_str(&r, bad_text[i].text, &err) != 0, "accepted: %s", bad_text[i].text);
        ck_assert_msg(err.line == bad_text[i].line && strstr(err.msg, bad_text[i].want1) &&
                          strstr(err.msg, bad_text[i].want2),
                      "case %zu: line %ld (want %ld): %s", i, err.line, bad_text[i].line, err.msg);
    }
}
END_TEST

START_TEST(test_docs_recipes_md_is_up_to_date)
{
    FILE *gen = tmpfile();
    ck_assert_ptr_nonnull(gen);
    ofa_recipe_write_docs(gen);
    rewind(gen);
    char *want = read_all(gen);
    fclose(gen);
    char path[1024];
    src_path(path, sizeof path, "docs/recipes.md");
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s is missing: run make recipe-docs", path);
    char *have = read_all(f);
    fclose(f);
    ck_assert_msg(strcmp(want, have) == 0,
                  "docs/recipes.md differs from the key table: run make recipe-docs");
    /* Every key of the resolved text is documented. */
    struct ofa_recipe r;
    ofa_recipe_default(&r);
    char *text = ofa_recipe_format(&r);
    int n = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char key[64];
        if (sscanf(line, "%63[a-z_0-9] =", key) != 1 || !strchr(line, '='))
            continue;
        char cell[80];
        snprintf(cell, sizeof cell, "| `%s` |", key);
        ck_assert_msg(strstr(have, cell) != NULL, "key %s is not documented", key);
        n++;
    }
    ck_assert_int_gt(n, 40);
    free(text);
    free(want);
    free(have);
}
END_TEST

START_TEST(test_mutated_recipes_never_crash)
{
    struct ofa_recipe base;
    load_ok(&base, "recipes/fashion-mnist.ini");
    char *text = ofa_recipe_format(&base);
    size_t n = strlen(text);
    char *buf = malloc(n + 64);
    ck_assert_ptr_nonnull(buf);
    static const char alphabet[] = "[]=:;#, \n\t.-+0123456789eE_abcxyz\x01\xff";
    struct ofa_rng rng;
    ofa_rng_seed(&rng, 7);
    int ok = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(buf, text, n + 1);
        int muts = 1 + (int)ofa_rng_below(&rng, 4);
        for (int m = 0; m < muts; m++) {
            size_t at = ofa_rng_below(&rng, (uint32_t)n);
            buf[at] = alphabet[ofa_rng_below(&rng, sizeof alphabet - 1)];
        }
        struct ofa_recipe r;
        struct ofa_error err = {0};
        if (ofa_recipe_load_string(&r, buf, "mutant", &err) == 0) {
            ok++;
            struct ofa_error e2 = {0};
            ck_assert_int_eq(ofa_space_validate(&r.space, &e2), 0);
        } else {
            ck_assert(err.msg[0] != '\0');
            ck_assert(err.line >= 0);
        }
    }
    ck_assert_int_gt(ok, 0);
    free(buf);
    free(text);
}
END_TEST

static Suite *recipe_suite(void)
{
    Suite *s = suite_create("recipe");
    TCase *tc = tcase_create("recipe");
    tcase_add_test(tc, test_defaults_equal_space_default);
    tcase_add_test(tc, test_fashion_mnist_recipe_is_reference_space);
    tcase_add_test(tc, test_quick_recipe_includes_and_overrides);
    tcase_add_test(tc, test_tiny_recipe_replaces_default_stages);
    tcase_add_test(tc, test_included_stage_keys_merge_with_overrides);
    tcase_add_test(tc, test_rgb100_five_stage_recipe_loads);
    tcase_add_loop_test(tc, test_bad_recipe_names_file_line_and_key, 0,
                        (int)(sizeof bad_cases / sizeof bad_cases[0]));
    tcase_add_test(tc, test_bad_strings_report_line);
    tcase_add_test(tc, test_string_loader_refuses_include);
    tcase_add_test(tc, test_include_depth_is_limited);
    tcase_add_test(tc, test_format_round_trips_exactly);
    tcase_add_test(tc, test_set_overrides_keys);
    tcase_add_test(tc, test_fashion_mnist_recipe_declares_default_devices);
    tcase_add_test(tc, test_device_sections_accumulate_and_override);
    tcase_add_test(tc, test_bad_devices_name_line_and_key);
    tcase_add_test(tc, test_set_overrides_device_keys);
    tcase_add_test(tc, test_fashion_mnist_recipe_declares_variants_and_export);
    tcase_add_test(tc, test_variant_sections_accumulate_and_override);
    tcase_add_test(tc, test_bad_variants_and_export_name_line_and_key);
    tcase_add_test(tc, test_set_overrides_variant_and_export_keys);
    tcase_add_test(tc, test_export_device_sections_set_one_devices_settings);
    tcase_add_test(tc, test_docs_recipes_md_is_up_to_date);
    tcase_add_test(tc, test_mutated_recipes_never_crash);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--write-docs") == 0) {
        ofa_recipe_write_docs(stdout);
        return ferror(stdout) ? 1 : 0;
    }
    SRunner *sr = srunner_create(recipe_suite());
    srunner_run_all(sr, CK_NORMAL);
    int nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    return nf == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
