/* check_train.c: the training stage on real data (a tiny supernet on a
 * Fashion-MNIST subset): it learns, the smallest subnet improves once
 * shrinking starts, an interrupted run resumes bit for bit, every schedule
 * runs, and mismatched inputs are refused with clear errors.
 *
 * Needs Debian's dataset-fashion-mnist (the README's setup installs it). */
#include <config.h>

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt.h"
#include "data.h"
#include "recipe.h"
#include "rng.h"
#include "supernet.h"
#include "testutil.h"
#include "train.h"

static char dir[256], data_path[300], recipe_path[512];

static void setup_data(void)
{
    snprintf(dir, sizeof dir, "/tmp/ofa-check-train-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(data_path, sizeof data_path, "%s/data.h5", dir);
    const char *src = getenv("OFA_SRCDIR");
    snprintf(recipe_path, sizeof recipe_path, "%s/tests/fixtures/recipes/tiny.ini",
             src ? src : ".");
    /* The first 8,000 training and 1,000 test images: real data, small files. */
    tu_fashion_subset(data_path, 8000, 1000, 1000);
}

static void cleanup(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static int train(const char *out, const char *const *sets, int nsets, int resume, long stop,
                 struct ofa_error *err)
{
    struct ofa_train_opts o = {.recipe_path = resume ? NULL : recipe_path,
                               .data_path = data_path,
                               .output = out,
                               .overrides = sets,
                               .n_overrides = nsets,
                               .resume = resume,
                               .threads = 2,
                               .stop_after_steps = stop};
    return ofa_train_run(&o, err);
}

/* Column `col` (0-based) of the epoch rows of a TSV log. */
static int epoch_column(const char *log, int col, double *vals, int max)
{
    FILE *f = fopen(log, "r");
    ck_assert_ptr_nonnull(f);
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f) && n < max) {
        if (strncmp(line, "epoch\t", 6) != 0)
            continue;
        char *p = line;
        for (int c = 0; c < col; c++) {
            p = strchr(p, '\t');
            ck_assert_ptr_nonnull(p);
            p++;
        }
        vals[n++] = atof(p);
    }
    fclose(f);
    return n;
}

START_TEST(test_train_learns_and_smallest_improves_after_shrink)
{
    setup_data();
    char out[400], log[400];
    snprintf(out, sizeof out, "%s/super.h5", dir);
    snprintf(log, sizeof log, "%s/super.tsv", dir);
    static const char *const sets[] = {"train.epochs=6", "train.subset=2048",
                                       "train.shrink_start=0.5", "train.beta_ramp=0.1"};
    struct ofa_error err;
    ck_assert_msg(train(out, sets, 4, 0, 0, &err) == 0, "%s: %s", err.file, err.msg);
    ck_assert_int_eq(access(out, R_OK), 0);
    double largest[6], smallest[6];
    ck_assert_int_eq(epoch_column(log, 9, largest, 6), 6);
    ck_assert_int_eq(epoch_column(log, 10, smallest, 6), 6);
    /* Chance is 10%; the tiny net on 2048 images gets well past it. */
    ck_assert_msg(largest[5] > 0.6, "largest subnet reached only %.3f", largest[5]);
    /* Shrinking starts after epoch 3: the smallest subnet, untrained so far
     * beyond what it shares, improves. */
    ck_assert_msg(smallest[5] > smallest[2] + 0.05, "smallest subnet %.3f -> %.3f", smallest[2],
                  smallest[5]);
    cleanup();
}
END_TEST

static void load_params(const char *path, struct ofa_supernet *net, struct ofa_train_state *st)
{
    struct ofa_error err;
    char *text = NULL;
    ck_assert_msg(ofa_ckpt_read_recipe(path, &text, &err) == 0, "%s", err.msg);
    struct ofa_recipe r;
    ck_assert_int_eq(ofa_recipe_load_string(&r, text, path, &err), 0);
    ofa_supernet_init(net, &r.space, 0);
    ck_assert_msg(ofa_ckpt_load(path, &net->p, st, &err) == 0, "%s", err.msg);
    free(text);
}

/* Straight run vs. stopped mid-epoch, stopped at an epoch end, and resumed
 * twice; the shrink point (channel sorting, phase change) lies in between. */
START_TEST(test_resume_is_bit_identical_to_uninterrupted_run)
{
    setup_data();
    char a[400], b[400];
    snprintf(a, sizeof a, "%s/a.h5", dir);
    snprintf(b, sizeof b, "%s/b.h5", dir);
    static const char *const sets[] = {"train.epochs=4", "train.subset=512",
                                       "train.shrink_start=0.5", "train.val_every=2"};
    struct ofa_error err;
    ck_assert_msg(train(a, sets, 4, 0, 0, &err) == 0, "%s", err.msg);
    /* 16 steps per epoch: stop after 5 steps (mid-epoch 1), then after 27
     * more (the end of epoch 2, across nothing), then finish. */
    ck_assert_int_eq(train(b, sets, 4, 0, 5, &err), OFA_TRAIN_INTERRUPTED);
    ck_assert_int_eq(access(b, F_OK), -1); /* unfinished: only b.h5.part */
    int rc = train(b, NULL, 0, 1, 27, &err);
    ck_assert_msg(rc == OFA_TRAIN_INTERRUPTED, "rc %d: %s: %s", rc, err.file, err.msg);
    ck_assert_msg(train(b, NULL, 0, 1, 0, &err) == 0, "%s", err.msg);
    struct ofa_supernet na, nb;
    struct ofa_train_state sa, sb;
    load_params(a, &na, &sa);
    load_params(b, &nb, &sb);
    ck_assert_int_eq(sa.step, sb.step);
    ck_assert_int_eq(sb.channels_sorted, 1);
    ck_assert_int_eq(sa.images_seen, sb.images_seen);
    ck_assert_msg(sa.train_gflop == sb.train_gflop, "train_gflop %.17g after resumes, %.17g "
                  "straight", sb.train_gflop, sa.train_gflop);
    ck_assert_uint_eq(na.p.total, nb.p.total);
    ck_assert_msg(memcmp(na.p.data, nb.p.data, na.p.total * sizeof(float)) == 0,
                  "parameters differ after resume");
    ck_assert_msg(memcmp(na.p.mom, nb.p.mom, na.p.total * sizeof(float)) == 0,
                  "momentum differs after resume");
    ofa_supernet_free(&na);
    ofa_supernet_free(&nb);
    cleanup();
}
END_TEST

/* The last two columns of the log: images_seen counts every subnet's images,
 * train_gflop 6 x MACs per subnet image (the library's MAC counter), for
 * the full phase and the sandwich (its random subnets drawn the way
 * train.c draws them: stream TAG_SUBNET = 1 of (seed, step * 64 + k)). */
START_TEST(test_log_counts_images_and_gflop_of_every_subnet)
{
    setup_data();
    char out[400], log[400];
    snprintf(out, sizeof out, "%s/flop.h5", dir);
    snprintf(log, sizeof log, "%s/flop.tsv", dir);
    /* 256 images, batch 32: 8 steps an epoch; epoch 1 full, epoch 2 sandwich */
    static const char *const sets[] = {"train.epochs=2", "train.subset=256",
                                       "train.shrink_start=0.5", "train.seed=7"};
    struct ofa_error err;
    ck_assert_msg(train(out, sets, 4, 0, 0, &err) == 0, "%s", err.msg);
    FILE *f = fopen(log, "r");
    ck_assert_ptr_nonnull(f);
    char line[1024];
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    fclose(f);
    ck_assert_msg(strstr(line, "\timages_seen\tdata_wait_s\ttrain_gflop\n") != NULL,
                  "header: %s", line);
    double images[2], gflop[2];
    ck_assert_int_eq(epoch_column(log, 12, images, 2), 2);
    ck_assert_int_eq(epoch_column(log, 14, gflop, 2), 2);

    struct ofa_supernet net;
    struct ofa_train_state st;
    load_params(out, &net, &st);
    const struct ofa_space *sp = &net.sp;
    struct ofa_subnet big, small, sub;
    ofa_subnet_largest(sp, &big);
    ofa_subnet_smallest(sp, &small);
    const double B = 32, macs_big = (double)ofa_subnet_macs(sp, &big);
    double full = 8 * B * 6 * macs_big, sandwich = 0;
    for (long step = 8; step < 16; step++) {
        double macs = macs_big + (double)ofa_subnet_macs(sp, &small);
        for (int k = 1; k <= 2; k++) {
            struct ofa_rng r;
            ofa_rng_derive(&r, 7, 1, (uint64_t)step * 64 + (uint64_t)k);
            ofa_subnet_sample(sp, &r, &sub);
            macs += (double)ofa_subnet_macs(sp, &sub);
        }
        sandwich += B * 6 * macs;
    }
    ck_assert(images[0] == 256 && images[1] == 256 + 4 * 256);
    ck_assert_int_eq(st.images_seen, 256 + 4 * 256);
    const double want0 = full * 1e-9, want1 = (full + sandwich) * 1e-9;
    ck_assert_msg(fabs(st.train_gflop - want1) <= 1e-12 * want1, "checkpoint %.17g GFLOP, "
                  "expected %.17g", st.train_gflop, want1);
    ck_assert_msg(fabs(gflop[0] - want0) <= 1e-6 && fabs(gflop[1] - want1) <= 1e-6,
                  "log %.6f %.6f GFLOP, expected %.6f %.6f", gflop[0], gflop[1], want0, want1);
    ofa_supernet_free(&net);
    cleanup();
}
END_TEST

START_TEST(test_bignas_and_ofa_ps_schedules_run_every_phase)
{
    setup_data();
    char out[400], log[400];
    struct ofa_error err;
    static const char *const bignas[] = {"train.epochs=2", "train.subset=256",
                                         "train.schedule=bignas"};
    snprintf(out, sizeof out, "%s/bignas.h5", dir);
    ck_assert_msg(train(out, bignas, 3, 0, 0, &err) == 0, "%s", err.msg);
    static const char *const ps[] = {"train.epochs=1", "train.subset=256",
                                     "train.schedule=ofa-ps", "train.ps_kernel_epochs=1",
                                     "train.ps_depth_epochs=1", "train.ps_expand_epochs=1"};
    snprintf(out, sizeof out, "%s/ps.h5", dir);
    snprintf(log, sizeof log, "%s/ps.tsv", dir);
    ck_assert_msg(train(out, ps, 6, 0, 0, &err) == 0, "%s", err.msg);
    FILE *f = fopen(log, "r");
    ck_assert_ptr_nonnull(f);
    char line[1024];
    int seen[4] = {0};
    static const char *const names[4] = {"\tfull\t", "\tkernel\t", "\tdepth\t", "\texpand\t"};
    while (fgets(line, sizeof line, f))
        for (int i = 0; i < 4; i++)
            seen[i] |= strstr(line, names[i]) != NULL;
    fclose(f);
    for (int i = 0; i < 4; i++)
        ck_assert_msg(seen[i], "phase%s missing from the log", names[i]);
    /* ofa-ps: each of the 3 shrinking epochs (8 steps of 32) counts 3
     * student images per image and 6 x their MACs, plus 2 x the teacher's */
    double images[4], gflop[4];
    ck_assert_int_eq(epoch_column(log, 12, images, 4), 4);
    ck_assert_int_eq(epoch_column(log, 14, gflop, 4), 4);
    ck_assert(images[0] == 256 && images[3] == 256 + 3 * 3 * 256);
    {
        struct ofa_supernet net;
        struct ofa_train_state st;
        load_params(out, &net, &st);
        struct ofa_subnet big, small;
        ofa_subnet_largest(&net.sp, &big);
        ofa_subnet_smallest(&net.sp, &small);
        const double mb = (double)ofa_subnet_macs(&net.sp, &big);
        const double ms = (double)ofa_subnet_macs(&net.sp, &small);
        const double full = 256 * 6 * mb * 1e-9, n = 3 * 256;
        ck_assert(fabs(gflop[0] - full) <= 1e-6);
        double lo = full + n * (2 * mb + 3 * 6 * ms) * 1e-9;
        double hi = full + n * (2 * mb + 3 * 6 * mb) * 1e-9;
        ck_assert_msg(st.train_gflop > lo && st.train_gflop < hi,
                      "ofa-ps: %.6f GFLOP outside (%.6f, %.6f)", st.train_gflop, lo, hi);
        ofa_supernet_free(&net);
    }
    /* the teacher file is gone once training has finished */
    char teacher[420];
    snprintf(teacher, sizeof teacher, "%s.teacher", out);
    ck_assert_int_eq(access(teacher, F_OK), -1);
    cleanup();
}
END_TEST

START_TEST(test_mismatched_inputs_are_refused)
{
    setup_data();
    char out[400];
    snprintf(out, sizeof out, "%s/x.h5", dir);
    struct ofa_error err;
    static const char *const classes[] = {"supernet.num_classes=5"};
    ck_assert_int_eq(train(out, classes, 1, 0, 0, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "10 classes"));
    static const char *const rgb[] = {"supernet.in_channels=3"};
    ck_assert_int_eq(train(out, rgb, 1, 0, 0, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "1 channels"));
    /* resume with nothing to resume */
    ck_assert_int_eq(train(out, NULL, 0, 1, 0, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "nothing to resume"));
    /* resume with a different recipe */
    static const char *const sets[] = {"train.seed=5"};
    ck_assert_int_eq(train(out, sets, 1, 0, 3, &err), OFA_TRAIN_INTERRUPTED);
    struct ofa_train_opts o = {.recipe_path = recipe_path, .data_path = data_path,
                               .output = out, .resume = 1, .threads = 2};
    ck_assert_int_eq(ofa_train_run(&o, &err), -1);
    ck_assert_msg(strstr(err.msg, "trains differently") != NULL, "%s: %s", err.file, err.msg);
    /* a recipe that differs only where training does not look resumes */
    static const char *const same[] = {"train.seed=5", "export.alpha=0.5", "extract.samples=20"};
    o.overrides = same;
    o.n_overrides = 3;
    o.stop_after_steps = 1;
    o.progress = 0;
    ck_assert_msg(ofa_train_run(&o, &err) == OFA_TRAIN_INTERRUPTED, "%s: %s", err.file, err.msg);
    cleanup();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("train");
    TCase *tc = tcase_create("train");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_train_learns_and_smallest_improves_after_shrink);
    tcase_add_test(tc, test_resume_is_bit_identical_to_uninterrupted_run);
    tcase_add_test(tc, test_log_counts_images_and_gflop_of_every_subnet);
    tcase_add_test(tc, test_bignas_and_ofa_ps_schedules_run_every_phase);
    tcase_add_test(tc, test_mismatched_inputs_are_refused);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    return nf ? EXIT_FAILURE : EXIT_SUCCESS;
}
