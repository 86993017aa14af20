/* testutil.c: random inputs, error norms, finite differences for the tests. */
#include <config.h>

#include "testutil.h"

#include "blas.h"
#include "data.h"
#include "h5file.h"
#include "util.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

float *tu_rand(long n, float a, unsigned long seed, unsigned long tag)
{
    float *x = ofa_xmalloc((size_t)n * sizeof *x, "test data");
    struct ofa_rng r;
    ofa_rng_derive(&r, seed, tag, 0x7e57);
    ofa_rng_fill_uniform(&r, x, n, a);
    return x;
}

float *tu_zeros(long n)
{
    return ofa_xcalloc((size_t)n, sizeof(float), "test data");
}

float *tu_copy(const float *x, long n)
{
    float *y = ofa_xmalloc((size_t)n * sizeof *y, "test data");
    memcpy(y, x, (size_t)n * sizeof *y);
    return y;
}

double tu_nmse(const float *a, const float *b, long n)
{
    double num = 0, den = 0;
    for (long i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    return num / (den > 1e-30 ? den : 1e-30);
}

double tu_maxabs(const float *a, const float *b, long n)
{
    double m = 0;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m)
            m = d;
    }
    return m;
}

void tu_col_stats(double *mean, double *var, const float *x, long M, int C)
{
    for (int c = 0; c < C; c++) {
        double s = 0;
        for (long m = 0; m < M; m++)
            s += x[m * C + c];
        mean[c] = s / (double)M;
        double q = 0;
        for (long m = 0; m < M; m++) {
            double d = x[m * C + c] - mean[c];
            q += d * d;
        }
        var[c] = q / (double)M;
    }
}

/* The evaluations run on one thread: they are thousands of tiny forward
 * passes, and when the tests run side by side on a loaded machine each
 * parallel region of two threads can wait a scheduler time slice for the
 * second one (CI saw a 0.6 s test pass Check's 60 s timeout). */
void tu_numgrad(tu_loss_fn f, void *ctx, float *x, long n, float h, float *g)
{
    int threads = ofa_threads_get();
    ofa_threads_set(1);
    for (long i = 0; i < n; i++) {
        float save = x[i];
        x[i] = save + h;
        double lp = f(ctx);
        x[i] = save - h;
        double lm = f(ctx);
        x[i] = save;
        g[i] = (float)((lp - lm) / (2.0 * (double)h));
    }
    ofa_threads_set(threads);
}

double tu_dot(const float *out, const float *r, long n)
{
    double s = 0;
    for (long i = 0; i < n; i++)
        s += (double)out[i] * (double)r[i];
    return s;
}

void tu_threads(int n)
{
    ofa_threads_set(n);
}

void tu_fashion_subset(const char *path, int ntrain, int ntest, int nval)
{
    struct ofa_dataset ds = {0};
    struct ofa_error err;
    struct ofa_read_opts ro = {0};
    ck_assert_msg(ofa_data_read_source("fashion-mnist", &ro, &ds, &err) == 0,
                  "%s: %s (install Debian's dataset-fashion-mnist)", err.file, err.msg);
    ds.train.n = ntrain;
    ds.test.n = ntest;
    ck_assert_int_eq(ofa_dataset_split(&ds, nval, 0, &err), 0);
    ck_assert_msg(ofa_dataset_save(&ds, path, &err) == 0, "%s", err.msg);
    ofa_dataset_free(&ds);
}

void tu_tiny_space(struct ofa_space *sp)
{
    ofa_space_default(sp);
    sp->stem_width = 8;
    sp->first_width = 8;
    sp->n_stages = 2;
    sp->stages[0] = (struct ofa_stage_cfg){8, 1, OFA_ACT_RELU, 1};
    sp->stages[1] = (struct ofa_stage_cfg){12, 2, OFA_ACT_HSWISH, 0};
    sp->n_depths = 2, sp->depths[0] = 1, sp->depths[1] = 2;
    sp->n_expands = 2, sp->expands[0] = 2, sp->expands[1] = 3;
    sp->n_kernels = 3, sp->kernels[0] = 3, sp->kernels[1] = 5, sp->kernels[2] = 7;
    sp->n_res = 2, sp->resolutions[0] = 8, sp->resolutions[1] = 10;
    sp->head_width = 16;
    sp->num_classes = 3;
}

void tu_h5_close_resealed(hid_t f)
{
    char path[4096];
    ck_assert_int_gt(H5Fget_name(f, path, sizeof path), 0);
    ck_assert_int_ge(H5Fclose(f), 0);
    struct ofa_error e;
    ck_assert_msg(ofa_h5_header_seal(path, OFA_H5_MAGIC, &e) == 0, "%s", e.msg);
}
