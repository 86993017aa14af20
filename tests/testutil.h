/* testutil.h: helpers shared by the Check programs.
 *
 * Gradient checks: an op's analytic backward is compared with central finite
 * differences of the scalar L = sum_i out[i] * r[i] (r random, fixed), and
 * scored by the normalised MSE  sum (a - b)^2 / sum b^2.
 */
#ifndef OFA_TESTUTIL_H
#define OFA_TESTUTIL_H

#include <hdf5.h>
#include <stddef.h>

#include "rng.h"
#include "space.h"

/* A freshly allocated array of n floats, uniform in (-a, a), from a derived
 * stream so that each call with the same (seed, tag) is reproducible. */
float *tu_rand(long n, float a, unsigned long seed, unsigned long tag);
float *tu_zeros(long n);
float *tu_copy(const float *x, long n);

/* sum (a-b)^2 / max(sum b^2, tiny). */
double tu_nmse(const float *a, const float *b, long n);
/* max |a - b|. */
double tu_maxabs(const float *a, const float *b, long n);
/* The columns' mean [C] and biased variance [C] of x [M,C], two passes in
 * double (the reference for the BN statistics). */
void tu_col_stats(double *mean, double *var, const float *x, long M, int C);

/* Forward function for a finite-difference check: must recompute the op's
 * output from the current contents of the inputs and return sum out*r in
 * double precision. */
typedef double (*tu_loss_fn)(void *ctx);
/* Numerical gradient of f w.r.t. x[0..n) by central differences with step h;
 * written to g (n floats). x is restored. */
void tu_numgrad(tu_loss_fn f, void *ctx, float *x, long n, float h, float *g);
/* sum_i out[i] * r[i] in double. */
double tu_dot(const float *out, const float *r, long n);

/* Write a data.h5 of the first ntrain training and ntest test images of
 * Debian's Fashion-MNIST, with nval of the training images held out for
 * validation (split seed 0). Fails the test, naming the package, when the
 * data set is not installed. */
void tu_fashion_subset(const char *path, int ntrain, int ntest, int nval);

/* A tiny search space with every feature: SE and no SE, stride 1 and 2,
 * residual and not, elastic depth (1-2), expand (2-3), kernel (3/5/7) and
 * resolution (8/10); 3 classes. Tests adjust fields from there. */
void tu_tiny_space(struct ofa_space *sp);

/* Set the OpenMP and BLAS thread counts (no-op without OpenMP). */
void tu_threads(int n);

/* Close an ofa HDF5 file (supernet.h5, subnet.h5, model.h5) opened
 * read-write for tampering, and write its integrity header anew, so that the
 * loader's own checks, behind the header's, meet the change. */
void tu_h5_close_resealed(hid_t f);

#endif
