/* blas.c: thread-count control and a description of the BLAS actually loaded. */
#include <config.h>

#include "blas.h"
#include "util.h"

#include <cblas.h>
#include <errno.h>
#include <stdatomic.h>
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

#ifdef _OPENMP
/* Thread 0's round trips with thread t, after a few unmeasured ones. */
enum { RT_WARM = 4, RT_REPS = 32 };
static double ping_pong_ns(atomic_int *flag, int me, int t)
{
    double t0 = 0.0;
    atomic_store_explicit(flag, 0, memory_order_relaxed);
#pragma omp barrier
    for (int i = 0; i < RT_WARM + RT_REPS; i++) {
        if (me == 0) {
            if (i == RT_WARM)
                t0 = ofa_now();
            atomic_store_explicit(flag, 2 * i + 1, memory_order_release);
            while (atomic_load_explicit(flag, memory_order_acquire) != 2 * i + 2)
                ;
        } else if (me == t) {
            while (atomic_load_explicit(flag, memory_order_acquire) != 2 * i + 1)
                ;
            atomic_store_explicit(flag, 2 * i + 2, memory_order_release);
        } else {
            break;
        }
    }
#pragma omp barrier
    return me == 0 ? (ofa_now() - t0) / RT_REPS * 1e9 : 0.0;
}
#endif

double ofa_threads_round_trip_ns(void)
{
#ifdef _OPENMP
    static _Atomic double measured_at = -1.0, last_ns = 0.0;
    const int T = omp_get_max_threads();
    if (T == 1 || omp_in_parallel())
        return 0.0;
    const double now = ofa_now();
    if (measured_at >= 0.0 && now - measured_at < 0.2)
        return last_ns;
    _Alignas(64) atomic_int flag;
    double worst = 0.0;
#pragma omp parallel num_threads(T)
    {
        const int me = omp_get_thread_num(), nt = omp_get_num_threads();
        for (int t = 1; t < nt; t++) {
            const double ns = ping_pong_ns(&flag, me, t);
            if (me == 0 && ns > worst)
                worst = ns;
        }
    }
    last_ns = worst;
    measured_at = now;
    return worst;
#else
    return 0.0;
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
