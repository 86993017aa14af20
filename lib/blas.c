/* blas.c: thread-count control and a description of the BLAS actually loaded. */
#include <config.h>

#include "blas.h"
#include "util.h"

#include <cblas.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

void ofa_blas_select_kernels(char **argv)
{
    if (getenv("OPENBLAS_CORETYPE") || strcmp(openblas_get_corename(), "Prescott") != 0)
        return;
    const char *core = NULL;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        core = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        core = "Haswell";
#endif
    if (!core)
        return;
    if (setenv("OPENBLAS_CORETYPE", core, 1) != 0)
        return;
    execv("/proc/self/exe", argv);
    fprintf(stderr, "warning: could not restart %s with OPENBLAS_CORETYPE=%s (%s); "
            "OpenBLAS keeps its generic kernels\n", argv[0], core, strerror(errno));
}

void ofa_threads_set(int n)
{
    OFA_ASSERT(n >= 1);
#ifdef _OPENMP
    /* Exactly n: with OMP_DYNAMIC the runtime may give a region fewer
     * threads, which would make a run depend on the machine's load (and
     * OpenBLAS's OpenMP build waits forever for the threads it asked for). */
    omp_set_dynamic(0);
    omp_set_num_threads(n);
#endif
    openblas_set_num_threads(n);
}

int ofa_threads_get(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int ofa_blas_is_openmp(void)
{
    /* 0: sequential, 1: pthreads, 2: OpenMP. */
    return openblas_get_parallel() == 2;
}

void ofa_blas_describe(char *buf, size_t n)
{
    static const char *const models[] = {"sequential", "pthreads", "OpenMP"};
    int par = openblas_get_parallel();
    const char *model = par >= 0 && par <= 2 ? models[par] : "unknown";
    snprintf(buf, n,
             "BLAS: OpenBLAS (%s), kernels %s, %s build, %d BLAS threads, %d OpenMP threads%s",
             openblas_get_config(), openblas_get_corename(), model, openblas_get_num_threads(), ofa_threads_get(),
#ifdef _OPENMP
             ""
#else
             " (built without OpenMP)"
#endif
    );
}
