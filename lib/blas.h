/* blas.h: which BLAS is loaded, and one knob for all thread pools.
 *
 * OpenBLAS must be its OpenMP build at run time, so that OpenMP and BLAS
 * share one thread pool; configure links that build and pins it by rpath.
 */
#ifndef OFA_BLAS_H
#define OFA_BLAS_H

#include <stddef.h>

/* Call first in main, before MPI_Init or any thread. OpenBLAS picks its
 * kernels when it loads, from the CPU model; Debian 12's 0.3.21 does not know
 * CPUs newer than it (Emerald Rapids, model 207, say) and falls back to its
 * generic Prescott kernels, 2-4x slower. When OPENBLAS_CORETYPE is unset, the
 * loaded kernels are Prescott's and the CPU has AVX-512 (SkylakeX kernels) or
 * AVX2 with FMA (Haswell kernels), this sets OPENBLAS_CORETYPE and executes
 * the program again with the same arguments; OPENBLAS_CORETYPE=Prescott keeps
 * the generic kernels. Returns only when nothing is to be done or the exec
 * failed (then with a warning, the slow kernels in place). */
void ofa_blas_select_kernels(char **argv);
/* Set the OpenMP thread count (exactly n: dynamic adjustment off) and
 * OpenBLAS's thread count to n (n >= 1). */
void ofa_threads_set(int n);
/* Threads that parallel regions will use (1 without OpenMP). */
int ofa_threads_get(void);
/* The slowest round trip of a cache line between thread 0 and another
 * thread, in ns: a few dozen on one die, several hundred when the cores'
 * caches are far apart (two sockets, or a virtual machine whose vCPUs the
 * host has put on different dies, which it may change at any moment).
 * Measured by a short ping-pong of the threads of a parallel region (a few
 * microseconds), again when the last measurement is older than 0.2 s.
 * 0 at one thread, or when called inside a parallel region. */
double ofa_threads_round_trip_ns(void);
/* 1 when the loaded OpenBLAS reports its OpenMP build. */
int ofa_blas_is_openmp(void);
/* One line: BLAS name, version/config, kernels in use, threading model,
 * thread counts. */
void ofa_blas_describe(char *buf, size_t n);

#endif
