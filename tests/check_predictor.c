/* check_predictor.c: the accuracy predictor learns a known synthetic truth on
 * the default space well enough to rank held-out subnets, fits are
 * reproducible, Kendall tau-b and RMSE match hand-computed values, and the
 * measurement cache round-trips exactly and refuses every kind of bad line. */
#include <config.h>

#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blas.h"
#include "predictor.h"
#include "rng.h"
#include "space.h"
#include "synthetic.h"
#include "testutil.h"

/* ---- Synthetic ground truth ----------------------------------------------------- */

/* n sampled subnets of the default space: x [n][dim], y [n]. */
static void synth_data(const struct ofa_space *sp, int n, uint64_t seed, float **x, float **y)
{
    int dim = ofa_subnet_onehot_size(sp);
    *x = malloc(sizeof(float) * (size_t)n * dim);
    *y = malloc(sizeof(float) * (size_t)n);
    struct ofa_rng rng;
    ofa_rng_seed(&rng, seed);
    for (int i = 0; i < n; i++) {
        struct ofa_subnet s;
        ofa_subnet_sample(sp, &rng, &s);
        ofa_subnet_onehot(sp, &s, *x + (size_t)i * dim);
        (*y)[i] = synth_accuracy(sp, &s, &rng, 0);
    }
}

/* ---- Fitting -------------------------------------------------------------------- */

START_TEST(test_fit_ranks_held_out_synthetic_subnets)
{
    tu_threads(2);
    struct ofa_space sp;
    ofa_space_default(&sp);
    int dim = ofa_subnet_onehot_size(&sp), ntr = 1000, nte = 300;
    float *x, *y;
    synth_data(&sp, ntr + nte, 11, &x, &y);
    struct ofa_mlp_cfg c;
    ofa_mlp_cfg_default(&c);
    struct ofa_predictor *p = ofa_predictor_fit(x, y, ntr, dim, &c);
    ck_assert_int_eq(ofa_predictor_dim(p), dim);
    const float *xt = x + (size_t)ntr * dim, *yt = y + ntr;
    float pred[300], cst[300];
    ofa_predictor_eval_batch(p, xt, nte, pred);

    double mean = 0;
    for (int i = 0; i < ntr; i++)
        mean += y[i];
    mean /= ntr;
    for (int i = 0; i < nte; i++)
        cst[i] = (float)mean;
    double rmse = ofa_rmse(pred, yt, nte), rmse0 = ofa_rmse(cst, yt, nte);
    double tau = ofa_kendall_tau(pred, yt, nte);
    fprintf(stderr, "synthetic: held-out RMSE %.4f (constant predictor %.4f), Kendall tau %.3f\n",
            rmse, rmse0, tau);
    /* Measured: RMSE about 0.0032 against noise 0.002, tau about 0.94. */
    ck_assert_msg(tau > 0.88, "Kendall tau %.3f", tau);
    ck_assert_msg(rmse < 0.006, "RMSE %.4f", rmse);
    ck_assert_msg(rmse < 0.2 * rmse0, "RMSE %.4f vs constant predictor %.4f", rmse, rmse0);
    ofa_predictor_free(p);
    free(x), free(y);
}
END_TEST

START_TEST(test_fit_is_deterministic_for_a_seed)
{
    tu_threads(2);
    struct ofa_space sp;
    ofa_space_default(&sp);
    int dim = ofa_subnet_onehot_size(&sp), n = 300;
    float *x, *y;
    synth_data(&sp, n, 5, &x, &y);
    struct ofa_mlp_cfg c;
    ofa_mlp_cfg_default(&c);
    c.epochs = 10;
    float a[300], b[300], d[300];
    int threads = ofa_threads_get();
    struct ofa_predictor *p = ofa_predictor_fit(x, y, n, dim, &c);
    ofa_predictor_eval_batch(p, x, n, a);
    ofa_predictor_free(p);
    p = ofa_predictor_fit(x, y, n, dim, &c);
    ofa_predictor_eval_batch(p, x, n, b);
    ofa_predictor_free(p);
    ck_assert_int_eq(memcmp(a, b, sizeof a), 0);
    c.seed = 2;
    p = ofa_predictor_fit(x, y, n, dim, &c);
    ofa_predictor_eval_batch(p, x, n, d);
    ofa_predictor_free(p);
    ck_assert_int_ne(memcmp(a, d, sizeof a), 0);
    /* The caller's thread count is restored. */
    ck_assert_int_eq(ofa_threads_get(), threads);
    free(x), free(y);
}
END_TEST

START_TEST(test_predictions_are_finite_and_single_matches_batch)
{
    tu_threads(2);
    struct ofa_space sp;
    ofa_space_default(&sp);
    int dim = ofa_subnet_onehot_size(&sp), n = 200;
    float *x, *y;
    synth_data(&sp, n, 7, &x, &y);
    struct ofa_mlp_cfg c;
    ofa_mlp_cfg_default(&c);
    c.epochs = 10;
    struct ofa_predictor *p = ofa_predictor_fit(x, y, n, dim, &c);
    float batch[200];
    ofa_predictor_eval_batch(p, x, n, batch);
    for (int i = 0; i < n; i++) {
        ck_assert(isfinite(batch[i]));
        float one = ofa_predictor_eval(p, x + (size_t)i * dim);
        ck_assert_msg(fabsf(one - batch[i]) < 1e-5f, "row %d: %g vs %g", i, one, batch[i]);
    }
    /* The extremes of the space and an all-zero row stay finite. */
    struct ofa_subnet s;
    float *e = calloc((size_t)dim, sizeof *e);
    ofa_subnet_largest(&sp, &s);
    ofa_subnet_onehot(&sp, &s, e);
    ck_assert(isfinite(ofa_predictor_eval(p, e)));
    ofa_subnet_smallest(&sp, &s);
    ofa_subnet_onehot(&sp, &s, e);
    ck_assert(isfinite(ofa_predictor_eval(p, e)));
    memset(e, 0, sizeof *e * (size_t)dim);
    ck_assert(isfinite(ofa_predictor_eval(p, e)));
    free(e);
    ofa_predictor_eval_batch(p, x, 0, batch); /* no rows: no work */
    ofa_predictor_free(p);
    ofa_predictor_free(NULL);
    free(x), free(y);
}
END_TEST

START_TEST(test_fit_on_constant_targets_predicts_the_constant)
{
    tu_threads(2);
    struct ofa_space sp;
    ofa_space_default(&sp);
    int dim = ofa_subnet_onehot_size(&sp), n = 64;
    float *x, *y;
    synth_data(&sp, n, 3, &x, &y);
    for (int i = 0; i < n; i++)
        y[i] = 0.625f;
    struct ofa_mlp_cfg c;
    ofa_mlp_cfg_default(&c);
    c.epochs = 5;
    struct ofa_predictor *p = ofa_predictor_fit(x, y, n, dim, &c);
    float out[64];
    ofa_predictor_eval_batch(p, x, n, out);
    for (int i = 0; i < n; i++)
        ck_assert_msg(fabsf(out[i] - 0.625f) < 1e-3f, "row %d: %g", i, out[i]);
    ofa_predictor_free(p);
    /* A single pair and a network without hidden layers are fine too. */
    c.layers = 0;
    p = ofa_predictor_fit(x, y, 1, dim, &c);
    ck_assert(fabsf(ofa_predictor_eval(p, x) - 0.625f) < 1e-3f);
    ofa_predictor_free(p);
    free(x), free(y);
}
END_TEST

/* ---- Statistics ---------------------------------------------------------------------- */

START_TEST(test_kendall_tau_perfect_reversed_and_ties)
{
    const float up[5] = {1, 2, 3, 4, 5}, down[5] = {5, 4, 3, 2, 1}, sq[5] = {1, 4, 9, 16, 25};
    ck_assert_double_eq_tol(ofa_kendall_tau(up, sq, 5), 1.0, 1e-12);
    ck_assert_double_eq_tol(ofa_kendall_tau(up, down, 5), -1.0, 1e-12);
    /* One pair tied in a: 5 concordant of 6 pairs, tau-b = 5 / sqrt(5 * 6). */
    const float a[4] = {1, 2, 2, 3}, b[4] = {1, 2, 3, 4};
    ck_assert_double_eq_tol(ofa_kendall_tau(a, b, 4), 5.0 / sqrt(30.0), 1e-12);
    ck_assert_double_eq_tol(ofa_kendall_tau(b, a, 4), 5.0 / sqrt(30.0), 1e-12);
    /* SciPy's documented example (ties in both): -0.47140452079103173. */
    const float x1[5] = {12, 2, 1, 12, 2}, x2[5] = {1, 4, 7, 1, 0};
    ck_assert_double_eq_tol(ofa_kendall_tau(x1, x2, 5), -0.47140452079103173, 1e-12);
    /* A constant side: undefined, reported as 0. */
    const float c[4] = {7, 7, 7, 7};
    ck_assert_double_eq(ofa_kendall_tau(c, b, 4), 0.0);
    ck_assert_double_eq(ofa_kendall_tau(b, b, 1), 0.0);
}
END_TEST

START_TEST(test_rmse_matches_hand_values)
{
    const float a[2] = {0, 0}, b[2] = {3, 4}, c[3] = {0.5f, 0.25f, 1};
    ck_assert_double_eq_tol(ofa_rmse(a, b, 2), sqrt(12.5), 1e-12);
    ck_assert_double_eq_tol(ofa_rmse(b, a, 2), sqrt(12.5), 1e-12);
    ck_assert_double_eq(ofa_rmse(c, c, 3), 0.0);
}
END_TEST

/* ---- Measurement cache ---------------------------------------------------------------------- */

static char dir[256];

static void make_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/ofa-check-predictor-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void remove_dir(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}

/* Entries of dir (excluding . and ..). */
static int count_entries(const char *d)
{
    DIR *dp = opendir(d);
    ck_assert_ptr_nonnull(dp);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dp)))
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(dp);
    return n;
}

START_TEST(test_measurements_round_trip_exactly)
{
    make_dir();
    struct ofa_space sp;
    ofa_space_default(&sp);
    struct ofa_rng rng;
    ofa_rng_seed(&rng, 9);
    struct ofa_measurements m = {0};
    for (int i = 0; i < 200; i++) {
        struct ofa_subnet s;
        ofa_subnet_sample(&sp, &rng, &s);
        float acc = i == 0 ? 0.0f : i == 1 ? 1.0f : ofa_rng_uniform(&rng);
        ofa_measurements_add(&m, &s, acc);
    }
    ck_assert_int_gt(m.n, 190); /* duplicates are possible but rare */
    char path[400];
    snprintf(path, sizeof path, "%s/acc.tsv", dir);
    struct ofa_error err;
    ck_assert_msg(ofa_measurements_save(&m, path, &sp, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(count_entries(dir), 1); /* no temporary left behind */

    FILE *f = fopen(path, "r");
    char line[512];
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    ck_assert_int_eq(line[0], '#');
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    ck_assert_ptr_nonnull(strchr(line, '\t'));
    fclose(f);

    struct ofa_measurements r = {0};
    ck_assert_msg(ofa_measurements_load(&r, path, &sp, &err) == 0, "%s:%ld: %s", err.file,
                  err.line, err.msg);
    ck_assert_int_eq(r.n, m.n);
    ck_assert_int_eq(memcmp(r.sub, m.sub, sizeof *m.sub * (size_t)m.n), 0);
    ck_assert_int_eq(memcmp(r.acc, m.acc, sizeof *m.acc * (size_t)m.n), 0);
    for (int i = 0; i < m.n; i++)
        ck_assert_int_eq(ofa_measurements_find(&r, &m.sub[i]), i);

    /* Saving again replaces the file atomically with the new content. */
    struct ofa_subnet big;
    ofa_subnet_largest(&sp, &big);
    ofa_measurements_add(&r, &big, 0.5f);
    ck_assert_int_eq(ofa_measurements_save(&r, path, &sp, &err), 0);
    struct ofa_measurements r2 = {0};
    ck_assert_int_eq(ofa_measurements_load(&r2, path, &sp, &err), 0);
    ck_assert_int_eq(r2.n, r.n);
    ck_assert_int_eq(count_entries(dir), 1);

    ofa_measurements_free(&m);
    ofa_measurements_free(&r);
    ofa_measurements_free(&r2);
    ck_assert_int_eq(r.n, 0);
    ck_assert_ptr_null(r.sub);
    remove_dir();
}
END_TEST

START_TEST(test_measurements_add_replaces_and_find_normalises)
{
    struct ofa_space sp;
    ofa_space_default(&sp);
    struct ofa_measurements m = {0};
    struct ofa_subnet a, b;
    ofa_subnet_smallest(&sp, &a);
    ofa_subnet_largest(&sp, &b);
    ck_assert_int_eq(ofa_measurements_find(&m, &a), -1);
    ofa_measurements_add(&m, &a, 0.25f);
    ofa_measurements_add(&m, &b, 0.75f);
    ck_assert_int_eq(ofa_measurements_find(&m, &a), 0);
    ck_assert_int_eq(ofa_measurements_find(&m, &b), 1);
    /* Leftover choices in inactive block slots do not matter. */
    struct ofa_subnet g = a;
    g.kernel[0][3] = 7, g.expand[2][3] = 6;
    ck_assert_int_eq(ofa_measurements_find(&m, &g), 0);
    ofa_measurements_add(&m, &g, 0.5f);
    ck_assert_int_eq(m.n, 2);
    ck_assert_float_eq(m.acc[0], 0.5f);
    /* A different subnet is not found. */
    g.res = sp.resolutions[1];
    ck_assert_int_eq(ofa_measurements_find(&m, &g), -1);
    ofa_measurements_free(&m);
    ofa_measurements_free(&m); /* twice is fine */
}
END_TEST

START_TEST(test_measurements_skip_comments_blank_lines_and_crlf)
{
    make_dir();
    struct ofa_space sp;
    ofa_space_default(&sp);
    char path[400];
    snprintf(path, sizeof path, "%s/acc.tsv", dir);
    write_file(path, "# header\n"
                     "\n"
                     "r24-d3333-k555.555.555.555-e444.444.444.444\t0.5\r\n"
                     "# a comment\n"
                     "r20-d2222-k33.33.33.33-e33.33.33.33\t1e-1\n"
                     "r24-d3333-k555.555.555.555-e444.444.444.444\t0.75\n");
    struct ofa_measurements m = {0};
    struct ofa_error err;
    ck_assert_msg(ofa_measurements_load(&m, path, &sp, &err) == 0, "%s:%ld: %s", err.file,
                  err.line, err.msg);
    ck_assert_int_eq(m.n, 2);
    ck_assert_float_eq(m.acc[0], 0.75f); /* the later line wins */
    ck_assert_float_eq(m.acc[1], 0.1f);
    struct ofa_subnet s;
    ofa_subnet_smallest(&sp, &s);
    ck_assert_int_eq(ofa_measurements_find(&m, &s), 1);
    ofa_measurements_free(&m);
    remove_dir();
}
END_TEST

static const struct bad_case {
    const char *line; /* the third line of the file */
    const char *msg;  /* a part of the message */
} bad_cases[] = {
    {"r24-d3333-k555.555.555.555-e444.444.444.444 0.5", "malformed line"},
    {"r24-d3333-k555.555.555.555-e444.444.444.444\t0.5\t1", "more than two fields"},
    {"r24-d3333-k555.555.555.555-e444.444.444.444\t", "missing accuracy"},
    {"r24-d3333-k555.555.555.555-e444.444.444.444\tabc", "malformed accuracy"},
    {"r24-d3333-k555.555.555.555-e444.444.444.444\t0.5x", "malformed accuracy"},
    {"r24-d3333-k555.555.555.555-e444.444.444.444\t0.5 ", "malformed accuracy"},
    {"r24-d3333-k555.555.555.555-e444.444.444.444\t1.5", "not in [0,1]"},
    {"r24-d3333-k555.555.555.555-e444.444.444.444\t-0.01", "not in [0,1]"},
    {"r24-d3333-k555.555.555.555-e444.444.444.444\tnan", "not in [0,1]"},
    {"r24-d3333-k555.555.555.555-e444.444.444.444\t1e999", "malformed accuracy"},
    {"r32-d3333-k555.555.555.555-e444.444.444.444\t0.5", "resolution 32"},
    {"r24-d3335-k555.555.555.55555-e444.444.444.44444\t0.5", "depth 5"},
    {"r24-d3333-k555.555.595.555-e444.444.444.444\t0.5", "kernel 9"},
    {"r24-d3333-k555.555.555.555-e444.444.444.445\t0.5", "expand ratio 5"},
    {"r24-d333-k555.555.555-e444.444.444\t0.5", "subnet"},
    {"hello\t0.5", "subnet 'hello'"},
    {"\t0.5", "subnet ''"},
};

START_TEST(test_measurements_load_names_file_line_of_bad_lines)
{
    make_dir();
    struct ofa_space sp;
    ofa_space_default(&sp);
    char path[400], text[1024];
    snprintf(path, sizeof path, "%s/acc.tsv", dir);
    snprintf(text, sizeof text, "# header\nr20-d2222-k33.33.33.33-e33.33.33.33\t0.5\n%s\n",
             bad_cases[_i].line);
    write_file(path, text);
    /* m holds one earlier measurement, which must survive the failure. */
    struct ofa_measurements m = {0};
    struct ofa_subnet s;
    ofa_subnet_largest(&sp, &s);
    ofa_measurements_add(&m, &s, 0.9f);
    struct ofa_error err;
    memset(&err, 0, sizeof err);
    ck_assert_int_ne(ofa_measurements_load(&m, path, &sp, &err), 0);
    ck_assert_str_eq(err.file, path);
    ck_assert_int_eq(err.line, 3);
    ck_assert_msg(strstr(err.msg, bad_cases[_i].msg) != NULL, "case %d: '%s' lacks '%s'", _i,
                  err.msg, bad_cases[_i].msg);
    ck_assert_int_eq(m.n, 1);
    ck_assert_float_eq(m.acc[0], 0.9f);
    ofa_measurements_free(&m);
    remove_dir();
}
END_TEST

START_TEST(test_measurements_missing_file_and_failed_save_are_errors)
{
    make_dir();
    struct ofa_space sp;
    ofa_space_default(&sp);
    char path[400];
    snprintf(path, sizeof path, "%s/none.tsv", dir);
    struct ofa_measurements m = {0};
    struct ofa_error err;
    ck_assert_int_ne(ofa_measurements_load(&m, path, &sp, &err), 0);
    ck_assert_str_eq(err.file, path);
    ck_assert_ptr_nonnull(strstr(err.msg, "No such file"));
    ck_assert_int_eq(m.n, 0);

    struct ofa_subnet s;
    ofa_subnet_largest(&sp, &s);
    ofa_measurements_add(&m, &s, 0.5f);
    /* A directory that does not exist. */
    snprintf(path, sizeof path, "%s/no/acc.tsv", dir);
    ck_assert_int_ne(ofa_measurements_save(&m, path, &sp, &err), 0);
    ck_assert_str_eq(err.file, path);
    /* rename() over a directory fails: the temporary is removed. */
    snprintf(path, sizeof path, "%s/sub", dir);
    ck_assert_int_eq(mkdir(path, 0700), 0);
    ck_assert_int_ne(ofa_measurements_save(&m, path, &sp, &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "rename"));
    ck_assert_int_eq(count_entries(dir), 1);
    ofa_measurements_free(&m);
    remove_dir();
}
END_TEST

static Suite *predictor_suite(void)
{
    Suite *s = suite_create("predictor");
    TCase *fit = tcase_create("fit");
    tcase_set_timeout(fit, 60);
    tcase_add_test(fit, test_fit_ranks_held_out_synthetic_subnets);
    tcase_add_test(fit, test_fit_is_deterministic_for_a_seed);
    tcase_add_test(fit, test_predictions_are_finite_and_single_matches_batch);
    tcase_add_test(fit, test_fit_on_constant_targets_predicts_the_constant);
    suite_add_tcase(s, fit);
    TCase *tc = tcase_create("stats_and_cache");
    tcase_add_test(tc, test_kendall_tau_perfect_reversed_and_ties);
    tcase_add_test(tc, test_rmse_matches_hand_values);
    tcase_add_test(tc, test_measurements_round_trip_exactly);
    tcase_add_test(tc, test_measurements_add_replaces_and_find_normalises);
    tcase_add_test(tc, test_measurements_skip_comments_blank_lines_and_crlf);
    tcase_add_loop_test(tc, test_measurements_load_names_file_line_of_bad_lines, 0,
                        (int)(sizeof bad_cases / sizeof bad_cases[0]));
    tcase_add_test(tc, test_measurements_missing_file_and_failed_save_are_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(predictor_suite());
    srunner_run_all(sr, CK_NORMAL);
    int nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    return nf == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
