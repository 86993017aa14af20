/* check_export.c: ofa-export and ofa-run end to end on a tiny supernet
 * trained on a Fashion-MNIST subset: every artifact is written and loads,
 * ofa-run reproduces the card's accuracies, the same inputs give the same
 * model, and bad inputs (a subnet of another supernet, a missing directory,
 * a training key in --set, a corrupt model) are refused with a clear
 * message and nothing written. */
#include <config.h>

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ckpt.h"
#include "extract.h"
#include "model.h"
#include "testutil.h"
#include "train.h"

static char dir[256], data_path[300], super[300], subnet[400], devdir[300];

static const char *builddir(void)
{
    const char *b = getenv("OFA_BUILDDIR");
    return b ? b : ".";
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/ofa-check-export-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(data_path, sizeof data_path, "%s/data.h5", dir);
    snprintf(super, sizeof super, "%s/supernet.h5", dir);
    snprintf(devdir, sizeof devdir, "%s/mcu", dir);
    snprintf(subnet, sizeof subnet, "%s/subnet.h5", devdir);
    ck_assert_int_eq(mkdir(devdir, 0755), 0);
    char recipe[512];
    const char *src = getenv("OFA_SRCDIR");
    snprintf(recipe, sizeof recipe, "%s/tests/fixtures/recipes/tiny-export.ini",
             src ? src : ".");
    tu_fashion_subset(data_path, 2000, 300, 400);
    struct ofa_error err;
    const char *sets[] = {"train.epochs=2", "train.subset=1024"};
    struct ofa_train_opts o = {.recipe_path = recipe, .data_path = data_path, .output = super,
                               .overrides = sets, .n_overrides = 2, .threads = 2};
    ck_assert_msg(ofa_train_run(&o, &err) == 0, "%s: %s", err.file, err.msg);
    struct ofa_extract_opts x = {.supernet = super, .data = data_path, .device = "tiny-mcu",
                                 .output = subnet, .samples = 12, .generations = 10, .top = 2,
                                 .threads = 2};
    ck_assert_msg(ofa_extract_run(&x, &err) == 0, "%s: %s", err.file, err.msg);
}

static void cleanup(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Run a command line (builddir-relative program), stdout and stderr to
 * files in dir; returns the exit status. */
static int run(const char *prog, const char *args)
{
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "'%s/%s' %s >'%s/stdout.txt' 2>'%s/stderr.txt'", builddir(), prog,
             args, dir, dir);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static char *slurp(const char *name)
{
    char path[400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int export_to(const char *outdir, const char *subnet_file, const char *extra)
{
    char args[2000];
    snprintf(args, sizeof args, "-q -j 2 -s '%s' -n '%s' -d '%s' -o '%s' %s", super, subnet_file,
             data_path, outdir, extra);
    return run("export/ofa-export", args);
}

/* The value of key in export.tsv of devdir. */
static double tsv_value(const char *key)
{
    char path[400], line[512];
    snprintf(path, sizeof path, "%s/export.tsv", devdir);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = strlen(key);
    double v = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == '\t')
            v = atof(line + n + 1);
    fclose(f);
    ck_assert_msg(v >= 0, "export.tsv has no %s", key);
    return v;
}

START_TEST(test_export_writes_artifacts_that_ofa_run_reproduces)
{
    setup();
    ck_assert_msg(export_to(devdir, subnet, "") == 0, "ofa-export failed: %s",
                  slurp("stderr.txt"));
    static const char *files[] = {"model.h5", "model.onnx", "model.c", "model.h", "card.md",
                                  "export.tsv"};
    char path[400];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/%s", devdir, files[i]);
        ck_assert_msg(access(path, R_OK) == 0, "%s missing", files[i]);
    }
    struct ofa_model m = {0};
    struct ofa_error err;
    snprintf(path, sizeof path, "%s/model.h5", devdir);
    ck_assert_msg(ofa_model_load(path, &m, &err) == 0, "%s", err.msg);
    ck_assert(m.quantized);
    struct ofa_subnet_record rec;
    ck_assert_int_eq(ofa_subnet_record_load(subnet, &rec, &err), 0);
    ck_assert_str_eq(m.subnet, rec.subnet);
    ck_assert_str_eq(m.device, "tiny-mcu");

    /* The card's figures: accuracies well above chance (0.1), instability
     * in [0, 1], the variants listed. */
    double a8 = tsv_value("acc_int8"), a32 = tsv_value("acc_fp32");
    ck_assert(a32 > 0.3 && a8 > 0.3);
    double ib = tsv_value("instability_before"), ia = tsv_value("instability_after");
    ck_assert(ib >= 0 && ib <= 1 && ia >= 0 && ia <= 1);
    char card[400];
    snprintf(card, sizeof card, "mcu/card.md");
    const char *text = slurp(card);
    ck_assert_ptr_nonnull(strstr(text, "| jpeg |"));
    ck_assert_ptr_nonnull(strstr(text, "| sensor |"));
    ck_assert_ptr_nonnull(strstr(text, "instability before -> after"));

    /* ofa-run gives the same test accuracies, int8 and fp32. */
    char args[1200], want[64];
    snprintf(args, sizeof args, "-q '%s' '%s'", path, data_path);
    ck_assert_int_eq(run("export/ofa-run", args), 0);
    const int n_test = (int)tsv_value("test_images");
    ck_assert_int_eq(n_test, 300); /* test_images = 0: the whole test split */
    snprintf(want, sizeof want, "accuracy %.2f%% on %d images (int8)", 100 * a8, n_test);
    ck_assert_msg(strstr(slurp("stdout.txt"), want), "want '%s', got: %s", want,
                  slurp("stdout.txt"));
    snprintf(args, sizeof args, "-q --arith fp32 '%s' '%s'", path, data_path);
    ck_assert_int_eq(run("export/ofa-run", args), 0);
    snprintf(want, sizeof want, "accuracy %.2f%% on %d images (fp32)", 100 * a32, n_test);
    ck_assert_msg(strstr(slurp("stdout.txt"), want), "want '%s', got: %s", want,
                  slurp("stdout.txt"));

    /* The same inputs give the same model. */
    char dir2[300], sub2[400];
    snprintf(dir2, sizeof dir2, "%s/again", dir);
    ck_assert_int_eq(mkdir(dir2, 0755), 0);
    snprintf(sub2, sizeof sub2, "%s/subnet.h5", dir2);
    ck_assert_int_eq(ofa_subnet_record_save(sub2, &rec, &err), 0);
    ck_assert_msg(export_to(dir2, sub2, "") == 0, "%s", slurp("stderr.txt"));
    struct ofa_model m2 = {0};
    snprintf(path, sizeof path, "%s/model.h5", dir2);
    ck_assert_msg(ofa_model_load(path, &m2, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(m.n_qweights, m2.n_qweights);
    ck_assert_int_eq(memcmp(m.qweights, m2.qweights, (size_t)m.n_qweights), 0);
    ck_assert_int_eq(memcmp(m.weights, m2.weights, (size_t)m.n_weights * sizeof(float)), 0);
    ofa_model_free(&m);
    ofa_model_free(&m2);

    /* The device's own [export] settings ([export.tiny-mcu]) are the ones
     * its export runs with; those of another device are not. */
    text = slurp("mcu/card.md");
    ck_assert_ptr_nonnull(strstr(text, "Stability fine-tuning: 1 epoch,"));
    char dir3[300];
    snprintf(dir3, sizeof dir3, "%s/own", dir);
    ck_assert_int_eq(mkdir(dir3, 0755), 0);
    ck_assert_msg(export_to(dir3, subnet, "--set export.tiny-mcu.epochs=0 "
                                          "--set export.epochs=1") == 0,
                  "%s", slurp("stderr.txt"));
    text = slurp("own/card.md");
    ck_assert_ptr_nonnull(strstr(text, "Stability fine-tuning was off"));
    ck_assert_ptr_nonnull(strstr(text, "\n[export.tiny-mcu]\nepochs = 0\n"));

    /* target largest: the pass is taught by the supernet's largest subnet. */
    snprintf(dir3, sizeof dir3, "%s/taught", dir);
    ck_assert_int_eq(mkdir(dir3, 0755), 0);
    ck_assert_msg(export_to(dir3, subnet, "--set export.target=largest") == 0, "%s",
                  slurp("stderr.txt"));
    text = slurp("taught/card.md");
    ck_assert_ptr_nonnull(strstr(text, "clean term distilled from the supernet's largest subnet "
                                       "(validation accuracy "));
    cleanup();
}
END_TEST

START_TEST(test_export_refuses_bad_inputs)
{
    setup();
    struct ofa_error err;
    struct ofa_subnet_record rec;
    ck_assert_int_eq(ofa_subnet_record_load(subnet, &rec, &err), 0);
    char other[400], odir[300], path[400];
    snprintf(odir, sizeof odir, "%s/other", dir);
    ck_assert_int_eq(mkdir(odir, 0755), 0);
    snprintf(other, sizeof other, "%s/subnet.h5", odir);

    /* a subnet chosen from another supernet */
    rec.supernet_fingerprint ^= 1;
    ck_assert_int_eq(ofa_subnet_record_save(other, &rec, &err), 0);
    ck_assert_int_eq(export_to(odir, other, ""), 1);
    ck_assert_ptr_nonnull(strstr(slurp("stderr.txt"), "another supernet"));
    snprintf(path, sizeof path, "%s/model.h5", odir);
    ck_assert_int_ne(access(path, F_OK), 0);

    /* an output directory that does not exist */
    char missing[400];
    snprintf(missing, sizeof missing, "%s/nope", dir);
    ck_assert_int_eq(export_to(missing, subnet, ""), 1);
    ck_assert_ptr_nonnull(strstr(slurp("stderr.txt"), "is not a directory"));

    /* a training key in --set; an export key out of range */
    ck_assert_int_eq(export_to(devdir, subnet, "--set train.epochs=3"), 1);
    ck_assert_ptr_nonnull(strstr(slurp("stderr.txt"), "only export.* and variant.*"));
    ck_assert_int_eq(export_to(devdir, subnet, "--set export.alpha=-1"), 1);
    ck_assert_ptr_nonnull(strstr(slurp("stderr.txt"), "alpha"));
    snprintf(path, sizeof path, "%s/model.h5", devdir);
    ck_assert_int_ne(access(path, F_OK), 0);

    /* ofa-run: a corrupt model file, a model given as input, no input */
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fputs("not a model", f);
    fclose(f);
    char args[1000];
    snprintf(args, sizeof args, "'%s' '%s'", path, data_path);
    ck_assert_int_eq(run("export/ofa-run", args), 1);
    ck_assert_ptr_nonnull(strstr(slurp("stderr.txt"), "model.h5"));
    snprintf(args, sizeof args, "'%s'", path);
    ck_assert_int_eq(run("export/ofa-run", args), 1);
    ck_assert_ptr_nonnull(strstr(slurp("stderr.txt"), "needs a model and at least one input"));
    cleanup();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("export");
    TCase *tc = tcase_create("export");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_export_writes_artifacts_that_ofa_run_reproduces);
    tcase_add_test(tc, test_export_refuses_bad_inputs);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
