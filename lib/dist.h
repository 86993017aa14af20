/* dist.h: data-parallel training across processes (MPI).
 *
 * With configure --with-mpi and a program started by mpirun or srun, the
 * processes form one world: ofa_dist_size() ranks, each with its rank.
 * Otherwise (no MPI, or a plain start) the world is one process and every
 * call below is a no-op, so callers need no #ifdef.
 *
 * Only the main thread calls MPI (MPI_THREAD_FUNNELED). Collectives are
 * timed (ofa_dist_comm_seconds) and watched: when one has not completed
 * after the watchdog's limit (a rank died or hangs), the process prints a
 * message and exits, which makes mpirun (or srun) take the job down instead
 * of hanging until the time limit.
 */
#ifndef OFA_DIST_H
#define OFA_DIST_H

#include <stddef.h>

#include "util.h"

/* Join the world if the process was started by an MPI launcher (Open MPI's,
 * Slurm's PMI/PMIx). Returns 0, or -1 with err set. */
int ofa_dist_init(int *argc, char ***argv, struct ofa_error *err);
/* Leave it (a no-op when not joined). */
void ofa_dist_finalize(void);
/* End the whole job (MPI_Abort), or this process when not joined. */
OFA_NORETURN void ofa_dist_abort(int status);
int ofa_dist_rank(void);
int ofa_dist_size(void);
/* Element-wise sums over all ranks, in place, in buckets of at most
 * OFA_DIST_BUCKET elements (large gradients overlap nothing but stay within
 * the transport's eager and rendezvous sweet spots). */
#define OFA_DIST_BUCKET (1 << 20)
void ofa_dist_sum_f32(float *x, size_t n);
void ofa_dist_sum_f64(double *x, size_t n);
/* Wall seconds spent in the sums so far. */
double ofa_dist_comm_seconds(void);
/* Exit with a message when a collective has not completed in `seconds`
 * (0: no watchdog). */
void ofa_dist_watchdog(double seconds);

#endif
