/* util.h: the three error tiers of the project, and small helpers.
 *
 * 1. Programmer errors: OFA_ASSERT, always on (NDEBUG does not remove it),
 *    prints file:line and the failed expression, then aborts.
 * 2. Resources: ofa_xmalloc/ofa_xcalloc/ofa_xfopen... print what failed and
 *    why and exit(1); a failed allocation of a training buffer is not something
 *    a caller can repair.
 * 3. Bad input (recipe, dataset, checkpoint, command line): functions return
 *    non-zero and fill a struct ofa_error with the file, the line or offset
 *    and a message; main() prints it with ofa_error_print() and exits non-zero.
 */
#ifndef OFA_UTIL_H
#define OFA_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#if defined(__GNUC__)
#define OFA_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define OFA_NORETURN __attribute__((noreturn))
#else
#define OFA_PRINTF(a, b)
#define OFA_NORETURN
#endif

OFA_NORETURN void ofa_assert_fail(const char *file, int line, const char *expr);
OFA_NORETURN void ofa_fatal(const char *fmt, ...) OFA_PRINTF(1, 2);

#define OFA_ASSERT(x) \
    do { if (!(x)) ofa_assert_fail(__FILE__, __LINE__, #x); } while (0)

/* Checked allocation: never returns NULL (size 0 returns a valid pointer). */
void *ofa_xmalloc(size_t n, const char *what);
void *ofa_xcalloc(size_t count, size_t size, const char *what);
/* n zeroed bytes on a 64-byte boundary (a cache line, an AVX-512 vector),
 * every page touched; free()d. */
void *ofa_xzalloc64(size_t n, const char *what);
/* n * size with overflow check; aborts on overflow (sizes here come from
 * validated shapes, so overflow is a programmer error). */
size_t ofa_mul_size(size_t a, size_t b);

/* Bad-input error: where and what. line is 0 when not applicable; offset is
 * -1 when not applicable. */
struct ofa_error {
    char file[512];
    long line;
    long long offset;
    char msg[1024];
};

/* Fill err (if not NULL) and return -1, so that callers can write
 * `return ofa_error_set(err, path, 0, "...")`. */
int ofa_error_set(struct ofa_error *err, const char *file, long line,
                  const char *fmt, ...) OFA_PRINTF(4, 5);
int ofa_error_set_offset(struct ofa_error *err, const char *file, long long offset,
                         const char *fmt, ...) OFA_PRINTF(4, 5);
/* Print "prog: file:line: msg" (or without line/offset) to stderr. */
void ofa_error_print(const struct ofa_error *err, const char *prog);

/* Atomic replacement of a file: write to the stream of ofa_atomic_open
 * (a temporary "<path>.tmp.<pid>" in the same directory), then
 * ofa_atomic_commit flushes, fsyncs, renames it over path and fsyncs the
 * directory. On any failure, or with ofa_atomic_abort, the temporary file is
 * removed and the previous file at path is untouched. */
struct ofa_atomic_file {
    FILE *f;
    char *tmp;
    char *path;
};
/* Returns the stream, or NULL with err naming path. */
FILE *ofa_atomic_open(struct ofa_atomic_file *a, const char *path, struct ofa_error *err);
int ofa_atomic_commit(struct ofa_atomic_file *a, struct ofa_error *err);
void ofa_atomic_abort(struct ofa_atomic_file *a);
/* Temporary files in progress (every ofa_atomic_file's, and others a writer
 * registers) are removed by the handler of ofa_cleanup_on_signals: SIGINT,
 * SIGTERM or SIGHUP removes them and then ends the process as the signal
 * would have (so a killed tool leaves no partial file behind; the files it
 * replaces are untouched). Call it from the main thread, the one that
 * creates files. A registered directory is removed after the
 * files (it must hold only registered files). Register before creating the
 * file, unregister once it is renamed or removed; path must stay valid
 * meanwhile. */
void ofa_tmp_register(const char *path);
void ofa_tmp_unregister(const char *path);
void ofa_cleanup_on_signals(void);
/* The directory part of path (malloc'd): "." when it has none, "/" for the
 * root. */
char *ofa_dirname(const char *path);
/* fsync a directory (makes a rename in it durable); file systems that
 * cannot sync directories are not an error. */
int ofa_sync_dir(const char *dir, const char *shown, struct ofa_error *err);

/* Wall-clock seconds (monotonic). */
double ofa_now(void);
/* Seconds of CPU time of the calling thread: run single-threaded, the
 * latency of the work without the time the thread spent descheduled, so that
 * timings on a shared machine measure the code, not the neighbours (on an
 * idle machine it equals wall time). Wall time where the clock is missing. */
double ofa_thread_cpu_now(void);
/* Median of v[0..n) (n >= 1; sorts v in place): what timings report. */
double ofa_median(double *v, int n);

#endif
