/* check_extract.c: ofa-extract on a tiny supernet trained on a Fashion-MNIST
 * subset: a feasible subnet is chosen for each profile and meets its budgets,
 * the measurement cache is reused, the same inputs give the same choice, and
 * impossible budgets, unknown devices and mismatched data are refused. */
#include <config.h>

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"
#include "data.h"
#include "device.h"
#include "extract.h"
#include "recipe.h"
#include "testutil.h"
#include "train.h"

static char dir[256], data_path[300], recipe_path[512], super[300];
static double mid_budget, below_smallest;

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/ofa-check-extract-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(data_path, sizeof data_path, "%s/data.h5", dir);
    snprintf(super, sizeof super, "%s/supernet.h5", dir);
    const char *src = getenv("OFA_SRCDIR");
    snprintf(recipe_path, sizeof recipe_path, "%s/tests/fixtures/recipes/tiny-devices.ini",
             src ? src : ".");
    tu_fashion_subset(data_path, 4000, 500, 500);
    struct ofa_error err;
    /* Budgets from the tiny space: half-way between the smallest and the
     * largest subnet's predicted latency, and below the smallest's. */
    struct ofa_recipe r;
    ck_assert_msg(ofa_recipe_load(&r, recipe_path, &err) == 0, "%s", err.msg);
    struct ofa_subnet lo, hi;
    ofa_subnet_smallest(&r.space, &lo);
    ofa_subnet_largest(&r.space, &hi);
    double l0 = 10 * ofa_subnet_macs(&r.space, &lo) * 1e-6 + 1;
    double l1 = 10 * ofa_subnet_macs(&r.space, &hi) * 1e-6 + 1;
    mid_budget = 0.5 * (l0 + l1);
    below_smallest = 0.9 * l0;
    char s1[96], s2[96];
    snprintf(s1, sizeof s1, "device.tiny-mcu.latency_ms=%.6f", mid_budget);
    snprintf(s2, sizeof s2, "device.impossible.latency_ms=%.6f", below_smallest);
    const char *sets[] = {s1, s2, "train.epochs=1", "train.subset=512"};
    struct ofa_train_opts o = {.recipe_path = recipe_path, .data_path = data_path,
                               .output = super, .overrides = sets, .n_overrides = 4,
                               .threads = 2};
    ck_assert_msg(ofa_train_run(&o, &err) == 0, "%s: %s", err.file, err.msg);
}

static void cleanup(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static int extract_from(const char *devices, const char *device, const char *out,
                        const char *data, struct ofa_error *err)
{
    struct ofa_extract_opts o = {.supernet = super, .data = data, .device = device,
                                 .devices = devices, .output = out, .samples = 24,
                                 .generations = 20, .top = 3, .threads = 2};
    return ofa_extract_run(&o, err);
}

static int extract(const char *device, const char *out, const char *data, struct ofa_error *err)
{
    return extract_from(NULL, device, out, data, err);
}

/* A file of device profiles that the supernet's recipe does not have: the
 * host's int8 runtime, and three confined to some of the input resolutions
 * (the tiny space has 12 and 16; 20 is not one of them). */
static void write_devices(char *path, size_t n)
{
    snprintf(path, n, "%s/devices.ini", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "[device.host8]\nlatency_model = measured\narith = int8\n");
    fprintf(f, "[device.at12]\nlatency_model = opcount\na_ms_per_mmac = 10\nresolutions = 12\n");
    fprintf(f, "[device.at16]\nlatency_model = opcount\na_ms_per_mmac = 10\nresolutions = 16\n");
    fprintf(f, "[device.at20]\nlatency_model = opcount\na_ms_per_mmac = 10\n"
               "resolutions = 12, 20\n");
    ck_assert_int_eq(fclose(f), 0);
}

START_TEST(test_extract_chooses_feasible_subnets_and_is_deterministic)
{
    setup();
    char out[400], out2[400], cache[400];
    struct ofa_error err;
    snprintf(out, sizeof out, "%s/mcu.h5", dir);
    snprintf(out2, sizeof out2, "%s/mcu2.h5", dir);
    snprintf(cache, sizeof cache, "%s/supernet.measurements.tsv", dir);
    /* the cache first (as the pipeline does before running devices in
     * parallel), then the search, which finds every measurement there */
    struct ofa_extract_opts mo = {.supernet = super, .data = data_path, .samples = 24,
                                  .threads = 2, .measure_only = 1};
    ck_assert_msg(ofa_extract_run(&mo, &err) == 0, "%s: %s", err.file, err.msg);
    ck_assert_int_eq(access(cache, R_OK), 0);
    struct stat st0, st1;
    ck_assert_int_eq(stat(cache, &st0), 0);
    ck_assert_msg(extract("tiny-mcu", out, data_path, &err) == 0, "%s: %s", err.file, err.msg);
    ck_assert_int_eq(stat(cache, &st1), 0);
    ck_assert(st0.st_mtim.tv_sec == st1.st_mtim.tv_sec &&
              st0.st_mtim.tv_nsec == st1.st_mtim.tv_nsec); /* not rewritten */
    char names[256] = "";
    FILE *f = fmemopen(names, sizeof names, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_msg(ofa_extract_list_devices(super, NULL, f, &err) == 0, "%s", err.msg);
    fclose(f);
    ck_assert_str_eq(names, "tiny-mcu\nimpossible\nhost\n");
    struct ofa_subnet_record a, b;
    ck_assert_msg(ofa_subnet_record_load(out, &a, &err) == 0, "%s", err.msg);
    /* the choice meets the budget, and is a valid subnet of the space */
    char *text = NULL;
    ck_assert_int_eq(ofa_ckpt_read_recipe(super, &text, &err), 0);
    struct ofa_recipe r;
    ck_assert_int_eq(ofa_recipe_load_string(&r, text, super, &err), 0);
    free(text);
    struct ofa_subnet s;
    ck_assert_msg(ofa_subnet_parse(&r.space, a.subnet, &s, &err) == 0, "%s", err.msg);
    ck_assert_double_le(10 * ofa_subnet_macs(&r.space, &s) * 1e-6 + 1, mid_budget + 1e-9);
    ck_assert_double_eq_tol(a.latency_predicted_ms, 10 * ofa_subnet_macs(&r.space, &s) * 1e-6 + 1,
                            1e-6);
    ck_assert(a.acc_measured > 0.2 && a.acc_measured <= 1.0); /* chance is 0.1 */
    ck_assert(isnan(a.latency_measured_ms));                  /* opcount: not measurable */
    ck_assert_int_eq(a.flash_bytes, ofa_subnet_flash_bytes(&r.space, &s));
    ck_assert_str_eq(a.device, "tiny-mcu");
    /* the same inputs (cache reused) give the same choice */
    ck_assert_msg(extract("tiny-mcu", out2, data_path, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(ofa_subnet_record_load(out2, &b, &err), 0);
    ck_assert_str_eq(a.subnet, b.subnet);
    ck_assert(a.acc_measured == b.acc_measured);
    /* the measured host profile works too, and measures latency */
    snprintf(out2, sizeof out2, "%s/host.h5", dir);
    ck_assert_msg(extract("host", out2, data_path, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(ofa_subnet_record_load(out2, &b, &err), 0);
    ck_assert(b.latency_measured_ms > 0 && b.latency_predicted_ms > 0);
    ck_assert_str_eq(b.latency_model, "measured");
    /* a device added later, from another file (no retraining): the host's
     * int8 runtime */
    char devs[400];
    write_devices(devs, sizeof devs);
    snprintf(out2, sizeof out2, "%s/host8.h5", dir);
    ck_assert_msg(extract_from(devs, "host8", out2, data_path, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(ofa_subnet_record_load(out2, &b, &err), 0);
    ck_assert_str_eq(b.device, "host8");
    ck_assert_str_eq(b.latency_model, "measured int8");
    ck_assert(b.latency_measured_ms > 0 && b.latency_predicted_ms > 0);
    /* a device confined to one resolution gets a subnet at it, whichever
     * resolution the search would have preferred */
    const char *dn[2] = {"at16", "at12"};
    for (int i = 0; i < 2; i++) {
        snprintf(out2, sizeof out2, "%s/%s.h5", dir, dn[i]);
        ck_assert_msg(extract_from(devs, dn[i], out2, data_path, &err) == 0, "%s", err.msg);
        ck_assert_int_eq(ofa_subnet_record_load(out2, &b, &err), 0);
        ck_assert_msg(ofa_subnet_parse(&r.space, b.subnet, &s, &err) == 0, "%s", err.msg);
        ck_assert_msg(s.res == (i ? 12 : 16), "%s: %s", dn[i], b.subnet);
    }
    cleanup();
}
END_TEST

/* --evaluate: a TSV row per subnet, named; random:N is the same draw every
 * time; a bad subnet text is an error. */
START_TEST(test_evaluate_prints_a_row_per_subnet)
{
    setup();
    const char *subs[] = {"largest", "smallest", "random:3", "medium"};
    char buf[2][4096];
    struct ofa_error err;
    for (int k = 0; k < 2; k++) {
        memset(buf[k], 0, sizeof buf[k]);
        FILE *f = fmemopen(buf[k], sizeof buf[k], "w");
        ck_assert_ptr_nonnull(f);
        struct ofa_extract_opts o = {.supernet = super, .data = data_path, .threads = 2,
                                     .evaluate = subs, .n_evaluate = 4, .test_split = k,
                                     .eval_out = f};
        ck_assert_msg(ofa_extract_run(&o, &err) == 0, "%s: %s", err.file, err.msg);
        fclose(f);
    }
    const char *head = "name\tsubnet\tmmacs\tparams\taccuracy_val\n";
    ck_assert_msg(strncmp(buf[0], head, strlen(head)) == 0, "%s", buf[0]);
    ck_assert_ptr_nonnull(strstr(buf[1], "accuracy_test"));
    const char *want[] = {"largest", "smallest", "random1", "random2", "random3", "medium"};
    char *line = strchr(buf[0], '\n') + 1, *line1 = strchr(buf[1], '\n') + 1;
    for (int i = 0; i < 6; i++) {
        char name[32], text[128], text1[128];
        double mmacs, acc;
        long long params;
        ck_assert_msg(sscanf(line, "%31s %127s %lf %lld %lf", name, text, &mmacs, &params, &acc) ==
                      5, "row %d: %s", i, line);
        ck_assert_str_eq(name, want[i]);
        ck_assert(mmacs > 0 && params > 0 && acc >= 0 && acc <= 1);
        ck_assert_int_eq(sscanf(line1, "%*s %127s", text1), 1);
        ck_assert_str_eq(text, text1); /* the same subnets on both splits */
        line = strchr(line, '\n') + 1;
        line1 = strchr(line1, '\n') + 1;
    }
    ck_assert_str_eq(line, "");
    const char *bad[] = {"r99-d1"};
    struct ofa_extract_opts o = {.supernet = super, .data = data_path, .threads = 2,
                                 .evaluate = bad, .n_evaluate = 1, .eval_out = stdout};
    ck_assert_int_eq(ofa_extract_run(&o, &err), -1);
    ck_assert_msg(strstr(err.msg, "r99") || strstr(err.msg, "resolution"), "%s", err.msg);
    cleanup();
}
END_TEST

START_TEST(test_extract_refuses_impossible_budgets_and_bad_inputs)
{
    setup();
    char out[400];
    struct ofa_error err;
    snprintf(out, sizeof out, "%s/x.h5", dir);
    ck_assert_int_eq(extract("impossible", out, data_path, &err), -1);
    ck_assert_msg(strstr(err.msg, "impossible") && strstr(err.msg, "latency"), "%s", err.msg);
    ck_assert_msg(strstr(err.msg, "smallest"), "%s", err.msg);
    ck_assert_int_eq(access(out, F_OK), -1);
    ck_assert_int_eq(extract("no-such-device", out, data_path, &err), -1);
    ck_assert_msg(strstr(err.msg, "no device 'no-such-device'") && strstr(err.msg, "tiny-mcu"),
                  "%s", err.msg);
    /* with a devices file, its profiles replace the recipe's */
    char devs[400];
    write_devices(devs, sizeof devs);
    ck_assert_int_eq(extract_from(devs, "tiny-mcu", out, data_path, &err), -1);
    ck_assert_msg(strstr(err.file, "devices.ini") && strstr(err.msg, "no device 'tiny-mcu'") &&
                  strstr(err.msg, "host8"), "%s: %s", err.file, err.msg);
    /* a resolution the supernet does not have */
    ck_assert_int_eq(extract_from(devs, "at20", out, data_path, &err), -1);
    ck_assert_msg(strstr(err.file, "devices.ini") && strstr(err.msg, "resolution 20") &&
                  strstr(err.msg, "(12, 16)"), "%s: %s", err.file, err.msg);
    ck_assert_int_eq(access(out, F_OK), -1);
    /* another split of the data is not what the supernet was trained on */
    char other[400];
    snprintf(other, sizeof other, "%s/other.h5", dir);
    struct ofa_dataset ds = {0};
    ck_assert_int_eq(ofa_dataset_load(data_path, &ds, &err), 0);
    ck_assert_int_eq(ofa_dataset_split(&ds, 600, 1, &err), 0);
    ck_assert_int_eq(ofa_dataset_save(&ds, other, &err), 0);
    ofa_dataset_free(&ds);
    ck_assert_int_eq(extract("tiny-mcu", out, other, &err), -1);
    ck_assert_msg(strstr(err.msg, "not the data set"), "%s", err.msg);
    /* a data file given as the supernet */
    struct ofa_extract_opts o = {.supernet = data_path, .data = data_path, .device = "host",
                                 .output = out, .threads = 2};
    ck_assert_int_eq(ofa_extract_run(&o, &err), -1);
    ck_assert_msg(strstr(err.msg, "not an ofa supernet checkpoint"), "%s", err.msg);
    cleanup();
}
END_TEST

START_TEST(test_list_devices_of_a_recipe)
{
    const char *src = getenv("OFA_SRCDIR");
    snprintf(recipe_path, sizeof recipe_path, "%s/tests/fixtures/recipes/tiny-devices.ini",
             src ? src : ".");
    struct ofa_error err;
    char buf[256] = "";
    FILE *f = fmemopen(buf, sizeof buf, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_msg(ofa_extract_list_devices(NULL, recipe_path, f, &err) == 0, "%s", err.msg);
    fclose(f);
    ck_assert_str_eq(buf, "tiny-mcu\nimpossible\nhost\n");
    ck_assert_int_eq(ofa_extract_list_devices("/nonexistent/supernet.h5", NULL, stdout, &err), -1);
    ck_assert_int_eq(ofa_extract_list_devices(NULL, "/nonexistent/recipe.ini", stdout, &err), -1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("extract");
    TCase *tc = tcase_create("extract");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_list_devices_of_a_recipe);
    tcase_add_test(tc, test_extract_chooses_feasible_subnets_and_is_deterministic);
    tcase_add_test(tc, test_extract_refuses_impossible_budgets_and_bad_inputs);
    tcase_add_test(tc, test_evaluate_prints_a_row_per_subnet);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    return nf ? EXIT_FAILURE : EXIT_SUCCESS;
}
