/* util.c: assertions, checked allocation and the bad-input error struct. */
#include <config.h>

#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void ofa_assert_fail(const char *file, int line, const char *expr)
{
    fprintf(stderr, "%s:%d: assertion failed: %s\n", file, line, expr);
    fflush(stderr);
    abort();
}

void ofa_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

void *ofa_xmalloc(size_t n, const char *what)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        ofa_fatal("out of memory allocating %zu bytes for %s "
                  "(reduce the batch size or the resolution)", n, what);
    return p;
}

void *ofa_xzalloc64(size_t n, const char *what)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 64) != 0)
        ofa_fatal("out of memory allocating %zu bytes for %s "
                  "(reduce the batch size or the resolution)", n, what);
    memset(p, 0, n);
    return p;
}

void *ofa_xcalloc(size_t count, size_t size, const char *what)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p)
        ofa_fatal("out of memory allocating %zu x %zu bytes for %s "
                  "(reduce the batch size or the resolution)", count, size, what);
    return p;
}

size_t ofa_mul_size(size_t a, size_t b)
{
    OFA_ASSERT(b == 0 || a <= SIZE_MAX / b);
    return a * b;
}

static void copy_file(struct ofa_error *err, const char *file)
{
    if (!file)
        file = "";
    size_t n = strlen(file);
    if (n >= sizeof err->file)
        n = sizeof err->file - 1;
    memcpy(err->file, file, n);
    err->file[n] = '\0';
}

int ofa_error_set(struct ofa_error *err, const char *file, long line,
                  const char *fmt, ...)
{
    if (!err)
        return -1;
    copy_file(err, file);
    err->line = line;
    err->offset = -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

int ofa_error_set_offset(struct ofa_error *err, const char *file, long long offset,
                         const char *fmt, ...)
{
    if (!err)
        return -1;
    copy_file(err, file);
    err->line = 0;
    err->offset = offset;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

void ofa_error_print(const struct ofa_error *err, const char *prog)
{
    if (err->file[0] && err->line > 0)
        fprintf(stderr, "%s: %s:%ld: %s\n", prog, err->file, err->line, err->msg);
    else if (err->file[0] && err->offset >= 0)
        fprintf(stderr, "%s: %s: at byte %lld: %s\n", prog, err->file, err->offset, err->msg);
    else if (err->file[0])
        fprintf(stderr, "%s: %s: %s\n", prog, err->file, err->msg);
    else
        fprintf(stderr, "%s: %s\n", prog, err->msg);
}

double ofa_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double ofa_thread_cpu_now(void)
{
#ifdef CLOCK_THREAD_CPUTIME_ID
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0)
        return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
#endif
    return ofa_now();
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double ofa_median(double *v, int n)
{
    OFA_ASSERT(n >= 1);
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int ofa_sync_dir(const char *dir, const char *shown, struct ofa_error *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return ofa_error_set(err, shown, 0, "cannot open directory %s to sync it: %s", dir,
                             strerror(errno));
    int rc = 0;
    if (fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP)
        rc = ofa_error_set(err, shown, 0, "fsync of %s failed: %s", dir, strerror(errno));
    close(fd);
    return rc;
}

/* The registry: a few slots (a tool has at most a couple of files in
 * progress at once), changed with the signals blocked so that the handler
 * never sees a half-updated slot. */
enum { TMP_SLOTS = 16 };
static const char *volatile tmp_paths[TMP_SLOTS];

static void tmp_slot_swap(const char *old, const char *new)
{
    sigset_t all, saved;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &saved);
    int done = 0;
    for (int i = 0; i < TMP_SLOTS && !done; i++)
        if (tmp_paths[i] == old) {
            tmp_paths[i] = new;
            done = 1;
        }
    sigprocmask(SIG_SETMASK, &saved, NULL);
    OFA_ASSERT(done || !new); /* more files in progress than slots */
}

void ofa_tmp_register(const char *path)
{
    OFA_ASSERT(path);
    tmp_slot_swap(NULL, path);
}

void ofa_tmp_unregister(const char *path)
{
    tmp_slot_swap(path, NULL);
}

static pthread_t main_thread;

static void cleanup_handler(int sig)
{
    /* Files are created on the main thread only: handle the signal there,
     * so that no file can be created between the removal below and the
     * end of the process (an OpenMP worker that receives it hands it on). */
    if (!pthread_equal(pthread_self(), main_thread)) {
        pthread_kill(main_thread, sig);
        return;
    }
    /* files first, then the (now empty) directories registered */
    for (int i = 0; i < TMP_SLOTS; i++)
        if (tmp_paths[i])
            unlink(tmp_paths[i]);
    for (int i = 0; i < TMP_SLOTS; i++)
        if (tmp_paths[i])
            rmdir(tmp_paths[i]);
    signal(sig, SIG_DFL);
    raise(sig);
}

void ofa_cleanup_on_signals(void)
{
    main_thread = pthread_self();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = cleanup_handler;
    sigfillset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

char *ofa_dirname(const char *path)
{
    char *dir = ofa_xmalloc(strlen(path) + 2, "directory name");
    strcpy(dir, path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else
        slash[slash == dir ? 1 : 0] = '\0';
    return dir;
}

FILE *ofa_atomic_open(struct ofa_atomic_file *a, const char *path, struct ofa_error *err)
{
    size_t n = strlen(path) + 32;
    a->path = ofa_xmalloc(strlen(path) + 1, "file name");
    strcpy(a->path, path);
    a->tmp = ofa_xmalloc(n, "temporary name");
    snprintf(a->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    ofa_tmp_register(a->tmp);
    a->f = fopen(a->tmp, "w");
    if (!a->f) {
        ofa_error_set(err, path, 0, "cannot create the temporary file %s: %s", a->tmp,
                      strerror(errno));
        ofa_atomic_abort(a);
        return NULL;
    }
    return a->f;
}

void ofa_atomic_abort(struct ofa_atomic_file *a)
{
    if (a->f)
        fclose(a->f);
    if (a->tmp) {
        unlink(a->tmp);
        ofa_tmp_unregister(a->tmp);
    }
    free(a->tmp);
    free(a->path);
    memset(a, 0, sizeof *a);
}

int ofa_atomic_commit(struct ofa_atomic_file *a, struct ofa_error *err)
{
    OFA_ASSERT(a->f);
    FILE *f = a->f;
    a->f = NULL;
    if (fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0) {
        ofa_error_set(err, a->path, 0, "write of the temporary file %s failed: %s", a->tmp,
                      strerror(errno));
        fclose(f);
        ofa_atomic_abort(a);
        return -1;
    }
    if (fclose(f) != 0) {
        ofa_error_set(err, a->path, 0, "close of the temporary file %s failed: %s", a->tmp,
                      strerror(errno));
        ofa_atomic_abort(a);
        return -1;
    }
    if (rename(a->tmp, a->path) != 0) {
        ofa_error_set(err, a->path, 0, "cannot rename %s over it: %s", a->tmp, strerror(errno));
        ofa_atomic_abort(a);
        return -1;
    }
    char *dir = ofa_dirname(a->path);
    int rc = ofa_sync_dir(dir, a->path, err);
    free(dir);
    ofa_tmp_unregister(a->tmp);
    free(a->tmp);
    a->tmp = NULL; /* renamed: nothing to remove */
    ofa_atomic_abort(a);
    return rc;
}
