/* blas.h: which BLAS is loaded, and one knob for all thread pools.
 *
 * OpenBLAS must be its OpenMP build at run time, so that OpenMP and BLAS
 * share one thread pool; configure links that build and pins it by rpath.
 */
#ifndef OFA_BLAS_H
#define OFA_BLAS_H

#include <stddef.h>

/* Set the OpenMP thread count and OpenBLAS's thread count to n (n >= 1). */
void ofa_threads_set(int n);
/* Threads that parallel regions will use (1 without OpenMP). */
int ofa_threads_get(void);
/* 1 when the loaded OpenBLAS reports its OpenMP build. */
int ofa_blas_is_openmp(void);
/* One line: BLAS name, version/config, threading model, thread counts. */
void ofa_blas_describe(char *buf, size_t n);

#endif
