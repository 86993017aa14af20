/* check_core.c: RNG, parameter table, optimizer, LR schedule, arena, CLI
 * parsing and the BLAS build in use. */
#include <config.h>

#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arena.h"
#include "blas.h"
#include "cli.h"
#include "optim.h"
#include "params.h"
#include "rng.h"
#include "testutil.h"

START_TEST(test_rng_same_seed_same_stream)
{
    struct ofa_rng a, b, c;
    ofa_rng_seed(&a, 42);
    ofa_rng_seed(&b, 42);
    ofa_rng_seed(&c, 43);
    int differ = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = ofa_rng_u64(&a);
        ck_assert_uint_eq(x, ofa_rng_u64(&b));
        differ += x != ofa_rng_u64(&c);
    }
    ck_assert_int_gt(differ, 990);
}
END_TEST

START_TEST(test_rng_derive_is_pure_function_of_coordinates)
{
    struct ofa_rng a, b, c;
    ofa_rng_derive(&a, 7, 100, 2);
    ofa_rng_u64(&a); /* advancing one stream must not affect a new derivation */
    ofa_rng_derive(&a, 7, 100, 2);
    ofa_rng_derive(&b, 7, 100, 2);
    ofa_rng_derive(&c, 7, 100, 3);
    uint64_t xa = ofa_rng_u64(&a);
    ck_assert_uint_eq(xa, ofa_rng_u64(&b));
    ck_assert_uint_ne(xa, ofa_rng_u64(&c));
}
END_TEST

START_TEST(test_rng_distributions_have_right_moments)
{
    struct ofa_rng r;
    ofa_rng_seed(&r, 1);
    const int n = 200000;
    double su = 0, sn = 0, sn2 = 0;
    int counts[7] = {0};
    for (int i = 0; i < n; i++) {
        float u = ofa_rng_uniform(&r);
        ck_assert(u >= 0.0f && u < 1.0f);
        su += u;
        double z = ofa_rng_normal(&r);
        sn += z;
        sn2 += z * z;
        uint32_t k = ofa_rng_below(&r, 7);
        ck_assert_uint_lt(k, 7);
        counts[k]++;
    }
    ck_assert_double_eq_tol(su / n, 0.5, 0.005);
    ck_assert_double_eq_tol(sn / n, 0.0, 0.01);
    ck_assert_double_eq_tol(sn2 / n, 1.0, 0.02);
    for (int k = 0; k < 7; k++)
        ck_assert_double_eq_tol(counts[k] / (double)n, 1.0 / 7, 0.005);
}
END_TEST

START_TEST(test_params_table_is_aligned_and_findable)
{
    struct ofa_params p = {0};
    int a = ofa_params_add(&p, "stem.w", OFA_PARAM_DECAY, 2, 16, 9, 0, 0);
    int b = ofa_params_add(&p, "stem.bn.gamma", 0, 1, 16, 0, 0, 0);
    int c = ofa_params_add(&p, "stem.bn.mean", OFA_PARAM_NOGRAD, 1, 16, 0, 0, 0);
    ofa_params_alloc(&p);
    ck_assert_int_eq(ofa_params_find(&p, "stem.bn.gamma"), b);
    ck_assert_int_eq(ofa_params_find(&p, "nope"), -1);
    ck_assert_uint_eq(p.t[a].numel, 144);
    ck_assert_uint_eq(((uintptr_t)ofa_param_data(&p, b)) % 64, 0);
    ck_assert_uint_eq(((uintptr_t)ofa_param_grad(&p, c)) % 64, 0);
    ck_assert_uint_eq(ofa_params_count(&p), 160);
    for (size_t i = 0; i < p.total; i++)
        ck_assert(p.data[i] == 0.0f && p.grad[i] == 0.0f && p.mom[i] == 0.0f);
    ofa_params_free(&p);
    ofa_params_free(&p); /* safe on a freed (zeroed) table */
}
END_TEST

/* PyTorch SGD(momentum=0.9, nesterov=True, weight_decay=wd) by hand, in
 * double, for a decayed and a non-decayed tensor over three steps. */
START_TEST(test_sgd_nesterov_matches_pytorch_semantics)
{
    struct ofa_params p = {0};
    int w = ofa_params_add(&p, "w", OFA_PARAM_DECAY, 1, 3, 0, 0, 0);
    int b = ofa_params_add(&p, "b", 0, 1, 2, 0, 0, 0);
    int s = ofa_params_add(&p, "bn.mean", OFA_PARAM_NOGRAD, 1, 1, 0, 0, 0);
    ofa_params_alloc(&p);
    const float w0[3] = {1.0f, -2.0f, 0.5f}, b0[2] = {0.25f, -0.75f};
    memcpy(ofa_param_data(&p, w), w0, sizeof w0);
    memcpy(ofa_param_data(&p, b), b0, sizeof b0);
    ofa_param_data(&p, s)[0] = 3.0f;
    struct ofa_sgd o = {.momentum = 0.9f, .nesterov = 1, .weight_decay = 0.01f};
    double rw[3] = {1.0, -2.0, 0.5}, rb[2] = {0.25, -0.75}, vw[3] = {0}, vb[2] = {0};
    const double lr = 0.1;
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < 3; i++)
            ofa_param_grad(&p, w)[i] = (float)(0.1 * (i + 1) * (step + 1));
        for (int i = 0; i < 2; i++)
            ofa_param_grad(&p, b)[i] = (float)(-0.2 * (i + 1));
        ofa_param_grad(&p, s)[0] = 100.0f; /* must be ignored */
        for (int i = 0; i < 3; i++) {
            double g = 0.1 * (i + 1) * (step + 1) + 0.01 * rw[i];
            vw[i] = 0.9 * vw[i] + g;
            rw[i] -= lr * (g + 0.9 * vw[i]);
        }
        for (int i = 0; i < 2; i++) {
            double g = -0.2 * (i + 1);
            vb[i] = 0.9 * vb[i] + g;
            rb[i] -= lr * (g + 0.9 * vb[i]);
        }
        ofa_sgd_step(&o, &p, (float)lr);
    }
    for (int i = 0; i < 3; i++)
        ck_assert_double_eq_tol(ofa_param_data(&p, w)[i], rw[i], 1e-6);
    for (int i = 0; i < 2; i++)
        ck_assert_double_eq_tol(ofa_param_data(&p, b)[i], rb[i], 1e-6);
    ck_assert_float_eq(ofa_param_data(&p, s)[0], 3.0f);
    ofa_params_free(&p);
}
END_TEST

START_TEST(test_sgd_clipping_and_decoupled_decay)
{
    struct ofa_params p = {0};
    int w = ofa_params_add(&p, "w", OFA_PARAM_DECAY, 1, 2, 0, 0, 0);
    ofa_params_alloc(&p);
    ofa_param_data(&p, w)[0] = 1.0f;
    ofa_param_data(&p, w)[1] = 1.0f;
    ofa_param_grad(&p, w)[0] = 3.0f;
    ofa_param_grad(&p, w)[1] = 4.0f; /* norm 5, clipped to 1 */
    struct ofa_sgd o = {.momentum = 0.0f, .nesterov = 0, .weight_decay = 0.5f,
                        .wd_mode = OFA_WD_DECOUPLED, .clip_norm = 1.0f};
    double norm = ofa_sgd_step(&o, &p, 0.1f);
    ck_assert_double_eq_tol(norm, 5.0, 1e-6);
    /* w = w - lr*wd*w - lr*g_clipped */
    ck_assert_double_eq_tol(ofa_param_data(&p, w)[0], 1.0 - 0.05 - 0.1 * 0.6, 1e-6);
    ck_assert_double_eq_tol(ofa_param_data(&p, w)[1], 1.0 - 0.05 - 0.1 * 0.8, 1e-6);
    ofa_params_free(&p);
}
END_TEST

/* A step over tensors large and small (one region for all, each thread a
 * share of every tensor; the norm in 16 lanes): the same bits at one and two
 * threads, and the norm that of a plain double sum. */
START_TEST(test_sgd_step_independent_of_threads)
{
    static const size_t sizes[] = {3, 70001, 17, 100003, 1};
    struct ofa_params p[2] = {{0}, {0}};
    double ref = 0;
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 5; i++) {
            char name[8];
            snprintf(name, sizeof name, "t%d", i);
            ofa_params_add(&p[k], name, i == 2 ? OFA_PARAM_NOGRAD
                                        : i % 2 ? OFA_PARAM_DECAY : 0,
                           1, (int)sizes[i], 0, 0, 0);
        }
        ofa_params_alloc(&p[k]);
        for (int i = 0; i < 5; i++) {
            float *d[3] = {ofa_param_data(&p[k], i), ofa_param_grad(&p[k], i),
                           p[k].mom + p[k].t[i].offset};
            for (int a = 0; a < 3; a++) {
                float *r = tu_rand((long)sizes[i], 1, 77, (unsigned long)(10 * i + a));
                memcpy(d[a], r, sizes[i] * sizeof *r);
                free(r);
            }
            for (size_t j = 0; k == 0 && i != 2 && j < sizes[i]; j++)
                ref += (double)d[1][j] * (double)d[1][j];
        }
    }
    struct ofa_sgd o = {.momentum = 0.9f, .nesterov = 1, .weight_decay = 0.01f,
                        .clip_norm = 10.0f};
    double norm[2];
    for (int k = 0; k < 2; k++) {
        tu_threads(k + 1);
        norm[k] = ofa_sgd_step(&o, &p[k], 0.1f);
    }
    ck_assert(norm[0] == norm[1]);
    ck_assert_double_eq_tol(norm[0], sqrt(ref), 1e-9 * sqrt(ref));
    ck_assert(memcmp(p[0].data, p[1].data, p[0].total * sizeof *p[0].data) == 0);
    ck_assert(memcmp(p[0].mom, p[1].mom, p[0].total * sizeof *p[0].mom) == 0);
    ofa_params_free(&p[0]);
    ofa_params_free(&p[1]);
}
END_TEST

START_TEST(test_lr_cosine_warmup_and_endpoints)
{
    ck_assert_double_eq_tol(ofa_lr_cosine(0, 100, 10, 1.0f, 0.0f), 0.1, 1e-6);
    ck_assert_double_eq_tol(ofa_lr_cosine(9, 100, 10, 1.0f, 0.0f), 1.0, 1e-6);
    ck_assert_double_eq_tol(ofa_lr_cosine(10, 100, 10, 1.0f, 0.0f), 1.0, 1e-6);
    ck_assert_double_eq_tol(ofa_lr_cosine(55, 100, 10, 1.0f, 0.0f), 0.5, 1e-6);
    ck_assert_double_eq_tol(ofa_lr_cosine(100, 100, 10, 1.0f, 0.01f), 0.01, 1e-7);
    float prev = 2.0f;
    for (long s = 10; s < 100; s++) {
        float lr = ofa_lr_cosine(s, 100, 10, 1.0f, 0.0f);
        ck_assert(lr <= prev);
        prev = lr;
    }
}
END_TEST

START_TEST(test_arena_aligns_measures_and_resets)
{
    struct ofa_arena m;
    ofa_arena_init_measure(&m);
    ck_assert_ptr_null(ofa_arena_alloc(&m, 3));
    ofa_arena_alloc(&m, 100);
    size_t need = m.peak;
    ck_assert_uint_eq(need, 64 + 448);
    struct ofa_arena a;
    ofa_arena_init(&a, need);
    float *x = ofa_arena_alloc(&a, 3);
    size_t mark = ofa_arena_mark(&a);
    float *y = ofa_arena_calloc(&a, 100);
    ck_assert_uint_eq((uintptr_t)x % 64, 0);
    ck_assert_uint_eq((uintptr_t)y % 64, 0);
    ck_assert_float_eq(y[99], 0.0f);
    ofa_arena_reset_to(&a, mark);
    ck_assert_ptr_eq(ofa_arena_alloc(&a, 100), y);
    ofa_arena_reset(&a);
    ck_assert_ptr_eq(ofa_arena_alloc(&a, 1), x);
    ofa_arena_free(&a);
    /* a large arena: whole huge pages (2 MiB), aligned to them, all usable */
    ofa_arena_init(&a, (8 << 20) + 4);
    ck_assert_uint_eq((uintptr_t)a.base % (2 << 20), 0);
    ck_assert_uint_eq(a.cap, 10 << 20);
    float *big = ofa_arena_alloc(&a, ((8 << 20) + 4) / sizeof(float));
    big[0] = 1.0f, big[(8 << 20) / sizeof(float)] = 2.0f;
    ofa_arena_free(&a);
}
END_TEST

START_TEST(test_arena_overflow_aborts)
{
    struct ofa_arena a;
    ofa_arena_init(&a, 64);
    ofa_arena_alloc(&a, 16);
    ofa_arena_alloc(&a, 1); /* SIGABRT expected */
}
END_TEST

START_TEST(test_recipe_found_by_name)
{
    char dir[] = "/tmp/ofa-check-recipes-XXXXXX", path[128], buf[256];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/exp.ini", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    setenv("OFA_RECIPES", dir, 1);
    ck_assert_str_eq(ofa_recipe_find("exp", buf, sizeof buf), path);
    ck_assert_str_eq(ofa_recipe_find("exp.ini", buf, sizeof buf), path);
    /* paths and unknown names come back as given, for the caller's error */
    ck_assert_str_eq(ofa_recipe_find("nope", buf, sizeof buf), "nope");
    ck_assert_str_eq(ofa_recipe_find("sub/exp", buf, sizeof buf), "sub/exp");
    ck_assert_str_eq(ofa_recipe_find(path, buf, sizeof buf), path);
    unsetenv("OFA_RECIPES");
    remove(path);
    rmdir(dir);
}
END_TEST

START_TEST(test_cli_parsing_is_strict)
{
    struct ofa_error err;
    long v;
    float f;
    ck_assert_int_eq(ofa_parse_long("12", 1, 64, "--threads", &v, &err), 0);
    ck_assert_int_eq(v, 12);
    ck_assert_int_eq(ofa_parse_long("12x", 1, 64, "--threads", &v, &err), -1);
    ck_assert_str_eq(err.msg, "--threads: '12x' is not an integer");
    ck_assert_int_eq(ofa_parse_long("0", 1, 64, "--threads", &v, &err), -1);
    ck_assert_str_eq(err.msg, "--threads: 0 is out of range [1, 64]");
    ck_assert_int_eq(ofa_parse_long("", 1, 64, "--threads", &v, &err), -1);
    ck_assert_int_eq(ofa_parse_long("99999999999999999999", 1, 64, "x", &v, &err), -1);
    ck_assert_int_eq(ofa_parse_float("0.5", 0, 1, "--lr", &f, &err), 0);
    ck_assert_float_eq(f, 0.5f);
    ck_assert_int_eq(ofa_parse_float("nan", 0, 1, "--lr", &f, &err), -1);
    ck_assert_int_eq(ofa_parse_float("2", 0, 1, "--lr", &f, &err), -1);
}
END_TEST

START_TEST(test_error_struct_formats_location)
{
    struct ofa_error err;
    ck_assert_int_eq(ofa_error_set(&err, "r.ini", 7, "unknown key '%s'", "lr2"), -1);
    ck_assert_str_eq(err.file, "r.ini");
    ck_assert_int_eq(err.line, 7);
    ck_assert_str_eq(err.msg, "unknown key 'lr2'");
    ck_assert_int_eq(ofa_error_set_offset(&err, "d.idx", 16, "bad magic"), -1);
    ck_assert_int_eq(err.offset, 16);
    ck_assert_int_eq(ofa_error_set(NULL, "x", 0, "ignored"), -1);
}
END_TEST

START_TEST(test_blas_is_openmp_build_when_built_with_openmp)
{
    tu_threads(2);
    char buf[512];
    ofa_blas_describe(buf, sizeof buf);
#ifdef _OPENMP
    ck_assert_msg(ofa_blas_is_openmp(), "loaded BLAS is not OpenBLAS's OpenMP build: %s", buf);
    ck_assert_int_eq(ofa_threads_get(), 2);
#else
    ck_assert_int_eq(ofa_threads_get(), 1);
#endif
    ck_assert_ptr_nonnull(strstr(buf, "OpenBLAS"));
}
END_TEST

/* The threads' cache line round trip: measured at two threads and kept for
 * 0.2 s; 0 at one thread, and inside a parallel region, where a ping-pong
 * would wait for threads that the nested region does not have. */
START_TEST(test_threads_round_trip)
{
    tu_threads(1);
    ck_assert(ofa_threads_round_trip_ns() == 0.0);
#ifdef _OPENMP
    tu_threads(2);
    const double t0 = ofa_now(), a = ofa_threads_round_trip_ns();
    ck_assert_msg(isfinite(a) && a > 0.0, "round trip %g ns", a);
    const double b = ofa_threads_round_trip_ns();
    if (ofa_now() - t0 < 0.15)
        ck_assert_msg(b == a, "measured again within 0.2 s: %g then %g ns", a, b);
    double inside = -1.0;
#pragma omp parallel num_threads(2)
#pragma omp single
    inside = ofa_threads_round_trip_ns();
    ck_assert(inside == 0.0);
#endif
}
END_TEST

int main(void)
{
    Suite *s = suite_create("core");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_rng_same_seed_same_stream);
    tcase_add_test(tc, test_rng_derive_is_pure_function_of_coordinates);
    tcase_add_test(tc, test_rng_distributions_have_right_moments);
    tcase_add_test(tc, test_params_table_is_aligned_and_findable);
    tcase_add_test(tc, test_sgd_nesterov_matches_pytorch_semantics);
    tcase_add_test(tc, test_sgd_clipping_and_decoupled_decay);
    tcase_add_test(tc, test_sgd_step_independent_of_threads);
    tcase_add_test(tc, test_lr_cosine_warmup_and_endpoints);
    tcase_add_test(tc, test_arena_aligns_measures_and_resets);
    tcase_add_test_raise_signal(tc, test_arena_overflow_aborts, SIGABRT);
    tcase_add_test(tc, test_cli_parsing_is_strict);
    tcase_add_test(tc, test_recipe_found_by_name);
    tcase_add_test(tc, test_error_struct_formats_location);
    tcase_add_test(tc, test_blas_is_openmp_build_when_built_with_openmp);
    tcase_add_test(tc, test_threads_round_trip);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    return nf ? EXIT_FAILURE : EXIT_SUCCESS;
}
