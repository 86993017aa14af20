#include <config.h>
/* bench_predictor.c: fitting time and held-out quality (RMSE, Kendall tau) of
 * the accuracy predictor on a synthetic ground truth over the default space,
 * and the evaluation throughput the evolutionary search needs (500
 * generations x 100 candidates). Environment knobs for tuning: THREADS (2),
 * EPOCHS, BATCH, LR, WD (override the defaults), QUICK (skip 4,000 pairs),
 * SHARP=s (a steeper truth, z * s, with two interaction terms). */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "blas.h"
#include "predictor.h"
#include "rng.h"
#include "space.h"
#include "synthetic.h"

static double env_or(const char *name, double dflt)
{
    const char *v = getenv(name);
    return v ? atof(v) : dflt;
}

int main(int argc, char **argv)
{
    ofa_blas_select_kernels(argv); /* before anything else: it may exec */
    (void)argc;
    ofa_threads_set((int)env_or("THREADS", 2));
    struct ofa_space sp;
    ofa_space_default(&sp);
    const int dim = ofa_subnet_onehot_size(&sp), ntest = 500, nmax = 4000 + ntest;
    float *x = malloc(sizeof(float) * (size_t)nmax * dim), *y = malloc(sizeof(float) * nmax);
    float *pred = malloc(sizeof(float) * ntest);
    if (!x || !y || !pred)
        return 1;
    struct ofa_rng rng;
    ofa_rng_seed(&rng, 42);
    double sharp = env_or("SHARP", 0);
    for (int i = 0; i < nmax; i++) {
        struct ofa_subnet s;
        ofa_subnet_sample(&sp, &rng, &s);
        ofa_subnet_onehot(&sp, &s, x + (size_t)i * dim);
        y[i] = synth_accuracy(&sp, &s, &rng, sharp);
    }
    double m = 0, v = 0;
    for (int i = 0; i < nmax; i++)
        m += y[i];
    m /= nmax;
    for (int i = 0; i < nmax; i++)
        v += (y[i] - m) * (y[i] - m);
    printf("synthetic accuracy: mean %.4f std %.4f (noise 0.002), one-hot dim %d\n", m,
           sqrt(v / nmax), dim);

    struct ofa_mlp_cfg c;
    ofa_mlp_cfg_default(&c);
    c.epochs = (int)env_or("EPOCHS", c.epochs);
    c.batch = (int)env_or("BATCH", c.batch);
    c.lr = (float)env_or("LR", c.lr);
    c.weight_decay = (float)env_or("WD", c.weight_decay);
    printf("MLP %dx%d, epochs %d, batch %d, lr %g, weight decay %g\n", c.layers, c.hidden,
           c.epochs, c.batch, c.lr, c.weight_decay);

    const float *xt = x + (size_t)(nmax - ntest) * dim, *yt = y + nmax - ntest;
    static const int sizes[] = {300, 1000, 4000};
    const int nsz = getenv("QUICK") ? 2 : 3;
    struct ofa_predictor *p1000 = NULL;
    for (int k = 0; k < nsz; k++) {
        double t0 = ofa_now();
        struct ofa_predictor *p = ofa_predictor_fit(x, y, sizes[k], dim, &c);
        double t1 = ofa_now();
        ofa_predictor_eval_batch(p, xt, ntest, pred);
        printf("fit %5d pairs: %6.2f s, held-out (%d) RMSE %.4f, Kendall tau %.3f\n", sizes[k],
               t1 - t0, ntest, ofa_rmse(pred, yt, ntest), ofa_kendall_tau(pred, yt, ntest));
        if (sizes[k] == 1000)
            p1000 = p;
        else
            ofa_predictor_free(p);
    }

    /* Search-shaped evaluation: 500 generations of 100 candidates. */
    float out[100];
    double t0 = ofa_now();
    for (int g = 0; g < 500; g++)
        ofa_predictor_eval_batch(p1000, x + (size_t)(g % 40) * 100 * dim, 100, out);
    double t1 = ofa_now();
    for (int i = 0; i < 50000; i++)
        out[0] = ofa_predictor_eval(p1000, x + (size_t)(i % 4000) * dim);
    double t2 = ofa_now();
    printf("50,000 evaluations: %.3f s in batches of 100, %.3f s one at a time\n", t1 - t0,
           t2 - t1);
    ofa_predictor_free(p1000);
    free(pred), free(x), free(y);
    return 0;
}
