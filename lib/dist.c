/* dist.c: the MPI world of data-parallel training (see dist.h). */
#include <config.h>

#include "dist.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#ifdef OFA_HAVE_MPI
#include <mpi.h>
#endif

static int world_rank, world_size = 1;
static double comm_seconds;

#ifdef OFA_HAVE_MPI
static int joined;
/* The watchdog: the start of the collective in progress (ms since the
 * epoch of ofa_now, 0 when none) and the limit. */
static atomic_llong busy_since_ms;
static double watchdog_s;
#endif

int ofa_dist_rank(void)
{
    return world_rank;
}

int ofa_dist_size(void)
{
    return world_size;
}

double ofa_dist_comm_seconds(void)
{
    return comm_seconds;
}

#ifdef OFA_HAVE_MPI
/* Started by a launcher? (A plain start stays a world of one rather than an
 * MPI singleton.) */
static int launched(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK",
                                       "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i]))
            return 1;
    return 0;
}
#endif

int ofa_dist_init(int *argc, char ***argv, struct ofa_error *err)
{
#ifdef OFA_HAVE_MPI
    if (!launched())
        return 0;
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return ofa_error_set(err, NULL, 0, "MPI_Init_thread failed");
    if (provided < MPI_THREAD_FUNNELED) {
        MPI_Finalize();
        return ofa_error_set(err, NULL, 0, "the MPI library does not support threads "
                                           "(MPI_THREAD_FUNNELED)");
    }
    /* A failed collective ends the job (the default, said explicitly). */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    joined = 1;
#else
    (void)argc;
    (void)argv;
    (void)err;
#endif
    return 0;
}

void ofa_dist_finalize(void)
{
#ifdef OFA_HAVE_MPI
    if (joined)
        MPI_Finalize();
    joined = 0;
#endif
}

void ofa_dist_abort(int status)
{
#ifdef OFA_HAVE_MPI
    if (joined)
        MPI_Abort(MPI_COMM_WORLD, status);
#endif
    exit(status);
}

#ifdef OFA_HAVE_MPI
static void *watch(void *arg)
{
    (void)arg;
    for (;;) {
        sleep(1);
        long long t0 = atomic_load(&busy_since_ms);
        if (t0 && ofa_now() * 1000.0 - (double)t0 > watchdog_s * 1000.0) {
            fprintf(stderr,
                    "ofa-train: rank %d of %d: an MPI collective has not completed in %.0f s: "
                    "another rank died or hangs; ending this process so that the job ends\n",
                    world_rank, world_size, watchdog_s);
            fflush(stderr);
            _exit(3);
        }
    }
    return NULL;
}
#endif

void ofa_dist_watchdog(double seconds)
{
#ifdef OFA_HAVE_MPI
    static int started;
    if (!joined || seconds <= 0 || started)
        return;
    watchdog_s = seconds;
    pthread_t th;
    if (pthread_create(&th, NULL, watch, NULL) != 0)
        ofa_fatal("cannot start the MPI watchdog thread");
    pthread_detach(th);
    started = 1;
#else
    (void)seconds;
#endif
}

#ifdef OFA_HAVE_MPI
static void sum(void *x, size_t n, size_t elem, MPI_Datatype type)
{
    if (!joined || world_size == 1)
        return;
    double t0 = ofa_now();
    atomic_store(&busy_since_ms, (long long)(t0 * 1000.0));
    for (size_t i = 0; i < n; i += OFA_DIST_BUCKET) {
        int k = (int)(n - i < OFA_DIST_BUCKET ? n - i : OFA_DIST_BUCKET);
        MPI_Allreduce(MPI_IN_PLACE, (char *)x + i * elem, k, type, MPI_SUM, MPI_COMM_WORLD);
    }
    atomic_store(&busy_since_ms, 0);
    comm_seconds += ofa_now() - t0;
}
#endif

void ofa_dist_sum_f32(float *x, size_t n)
{
#ifdef OFA_HAVE_MPI
    sum(x, n, sizeof *x, MPI_FLOAT);
#else
    (void)x;
    (void)n;
#endif
}

void ofa_dist_sum_f64(double *x, size_t n)
{
#ifdef OFA_HAVE_MPI
    sum(x, n, sizeof *x, MPI_DOUBLE);
#else
    (void)x;
    (void)n;
#endif
}
