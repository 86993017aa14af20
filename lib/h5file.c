/* h5file.c: the integrity header, in-memory building and atomic writing,
 * and checked opening of ofa's HDF5 files (see h5file.h). */
#include <config.h>

#include "h5file.h"

#include "data.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#define UB_VERSION 1

static const uint8_t hdf5_sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* zlib's crc32 takes at most UINT_MAX bytes a call. */
static uint32_t crc_update(uint32_t crc, const uint8_t *p, size_t n)
{
    uLong c = crc;
    while (n > 0) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, k);
        p += k;
        n -= k;
    }
    return (uint32_t)c;
}

static void fill_ub(uint8_t *ub, const char *magic, uint32_t crc, uint64_t size)
{
    OFA_ASSERT(strlen(magic) == 8);
    memset(ub, 0, OFA_H5_UB_SIZE);
    memcpy(ub, magic, 8);
    put_le(ub + 8, UB_VERSION, 4);
    put_le(ub + 12, crc, 4);
    put_le(ub + 16, size, 8);
}

void ofa_h5_header_fill(uint8_t *image, size_t len, const char *magic)
{
    OFA_ASSERT(len >= OFA_H5_UB_SIZE);
    uint32_t crc = crc_update((uint32_t)crc32(0, Z_NULL, 0), image + OFA_H5_UB_SIZE,
                              len - OFA_H5_UB_SIZE);
    fill_ub(image, magic, crc, len);
}

/* Check a user block against the file's size and the CRC of the rest,
 * which the caller computed. */
static int check_ub(const uint8_t *ub, uint64_t size, uint32_t crc, const char *magic,
                    const char *what, const char *name, struct ofa_error *err)
{
    if (memcmp(ub, magic, 8) != 0) {
        if (memcmp(ub, hdf5_sig, 8) == 0)
            return ofa_error_set(err, name, 0,
                                 "not %s: an HDF5 file without the \"%s\" integrity header "
                                 "(written by another tool, or by an older ofa)", what, magic);
        return ofa_error_set(err, name, 0, "not %s (no \"%s\" integrity header)", what, magic);
    }
    if (get_le(ub + 8, 4) != UB_VERSION)
        return ofa_error_set(err, name, 0, "integrity header version %u is not supported",
                             (unsigned)get_le(ub + 8, 4));
    static const uint8_t zeros[OFA_H5_UB_SIZE - 24];
    if (memcmp(ub + 24, zeros, sizeof zeros) != 0)
        return ofa_error_set(err, name, 0, "integrity header: bytes 24..511 are not zero "
                             "(the file is corrupt)");
    if (get_le(ub + 16, 8) != size)
        return ofa_error_set(err, name, 0,
                             "file is %llu bytes but was written with %llu "
                             "(truncated or appended to)",
                             (unsigned long long)size, (unsigned long long)get_le(ub + 16, 8));
    if (get_le(ub + 12, 4) != crc)
        return ofa_error_set(err, name, 0,
                             "checksum mismatch (CRC-32 %08x, expected %08x): the file is corrupt",
                             (unsigned)crc, (unsigned)get_le(ub + 12, 4));
    return 0;
}

int ofa_h5_header_check_image(const uint8_t *image, size_t len, const char *magic,
                              const char *what, const char *name, struct ofa_error *err)
{
    if (len < OFA_H5_UB_SIZE)
        return ofa_error_set(err, name, 0, "not %s (%zu bytes)", what, len);
    uint32_t crc = crc_update((uint32_t)crc32(0, Z_NULL, 0), image + OFA_H5_UB_SIZE,
                              len - OFA_H5_UB_SIZE);
    return check_ub(image, len, crc, magic, what, name, err);
}

/* Stream the CRC-32 of fd's bytes from OFA_H5_UB_SIZE on. */
static int crc_fd(int fd, uint32_t *crc)
{
    uint8_t *buf = ofa_xmalloc(1 << 20, "checksum buffer");
    uint32_t c = (uint32_t)crc32(0, Z_NULL, 0);
    off_t off = OFA_H5_UB_SIZE;
    for (;;) {
        ssize_t r = pread(fd, buf, 1 << 20, off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(buf);
            return -1;
        }
        if (r == 0)
            break;
        c = crc_update(c, buf, (size_t)r);
        off += r;
    }
    free(buf);
    *crc = c;
    return 0;
}

int ofa_h5_header_check_fd(int fd, const char *magic, const char *what, const char *name,
                           struct ofa_error *err)
{
    struct stat st;
    uint8_t ub[OFA_H5_UB_SIZE];
    uint32_t crc;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return ofa_error_set(err, name, 0, "not a regular file");
    if (st.st_size < OFA_H5_UB_SIZE || pread(fd, ub, OFA_H5_UB_SIZE, 0) != OFA_H5_UB_SIZE)
        return ofa_error_set(err, name, 0, "not %s (%lld bytes)", what, (long long)st.st_size);
    if (crc_fd(fd, &crc) != 0)
        return ofa_error_set(err, name, 0, "read error: %s", strerror(errno));
    return check_ub(ub, (uint64_t)st.st_size, crc, magic, what, name, err);
}

int ofa_h5_header_seal(const char *path, const char *magic, struct ofa_error *err)
{
    int fd = open(path, O_RDWR);
    if (fd < 0)
        return ofa_error_set(err, path, 0, "cannot open for writing: %s", strerror(errno));
    uint8_t ub[OFA_H5_UB_SIZE], head[8];
    uint32_t crc = 0;
    struct stat st;
    if (fstat(fd, &st) != 0 || pread(fd, head, 8, OFA_H5_UB_SIZE) != 8 ||
        memcmp(head, hdf5_sig, 8) != 0) {
        close(fd);
        return ofa_error_set(err, path, 0, "not an HDF5 file with a %d-byte user block",
                             OFA_H5_UB_SIZE);
    }
    if (crc_fd(fd, &crc) != 0) {
        int e = errno;
        close(fd);
        return ofa_error_set(err, path, 0, "read error: %s", strerror(e));
    }
    fill_ub(ub, magic, crc, (uint64_t)st.st_size);
    if (pwrite(fd, ub, OFA_H5_UB_SIZE, 0) != OFA_H5_UB_SIZE || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return ofa_error_set(err, path, 0, "cannot write or sync: %s", strerror(e));
    }
    if (close(fd) != 0)
        return ofa_error_set(err, path, 0, "close failed: %s", strerror(errno));
    return 0;
}

/* ---- HDF5's error stack ------------------------------------------------------- */

void ofa_h5_quiet_on(struct ofa_h5quiet *q)
{
    q->fn = NULL;
    q->data = NULL;
    H5Eget_auto2(H5E_DEFAULT, &q->fn, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void ofa_h5_quiet_off(const struct ofa_h5quiet *q)
{
    H5Eset_auto2(H5E_DEFAULT, q->fn, q->data);
}

static herr_t innermost_cb(unsigned n, const H5E_error2_t *e, void *data)
{
    /* Walking upward starts at the innermost failure, the most specific one.
     * System call failures carry a long description (time, buffer address,
     * sizes...); keep only its start and the system's message. */
    char *out = data;
    if (n != 0 || !e->desc)
        return 0;
    const char *d = e->desc, *m = strstr(d, "error message = '");
    const char *colon = strchr(d, ':');
    if (m && colon) {
        m += strlen("error message = '");
        snprintf(out, 256, "%.*s: %.*s", (int)(colon - d), d, (int)strcspn(m, "'"), m);
    } else {
        snprintf(out, 256, "%s", d);
    }
    for (char *s = out; *s; s++)
        if (*s == '\n')
            *s = ' ';
    return 0;
}

int ofa_h5_vfail(struct ofa_error *err, const char *path, const char *fmt, va_list ap)
{
    char detail[256] = "";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost_cb, detail);
    char msg[900];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (detail[0])
        return ofa_error_set(err, path, 0, "%s (HDF5: %s)", msg, detail);
    return ofa_error_set(err, path, 0, "%s", msg);
}

int ofa_h5_fail(struct ofa_error *err, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = ofa_h5_vfail(err, path, fmt, ap);
    va_end(ap);
    return rc;
}

void ofa_h5_close_id(hid_t id)
{
    if (id >= 0)
        H5Idec_ref(id);
}

/* ---- Writing and opening ------------------------------------------------------- */

/* A writer killed mid-save leaves <path>.tmp.<pid>; remove those whose
 * process no longer exists on this host. */
static void remove_stale_temps(const char *path)
{
    char *dir = ofa_dirname(path);
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t blen = strlen(base);
    DIR *d = dir ? opendir(dir) : NULL;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            const char *nm = e->d_name;
            if (strncmp(nm, base, blen) != 0 || strncmp(nm + blen, ".tmp.", 5) != 0)
                continue;
            const char *digits = nm + blen + 5;
            if (!*digits || strspn(digits, "0123456789") != strlen(digits) || strlen(digits) > 9)
                continue;
            long pid = strtol(digits, NULL, 10);
            if (pid <= 0 || pid == (long)getpid())
                continue;
            if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
                continue; /* alive (or not ours to judge) */
            unlinkat(dirfd(d), nm, 0);
        }
        closedir(d);
    }
    free(dir);
}


int ofa_h5_save(const char *path, const char *magic, size_t step, ofa_h5_build_fn build,
                const void *arg, struct ofa_error *err)
{
    /* The in-memory file's name (no backing store is written). */
    size_t n = strlen(path) + 32;
    char *name = ofa_xmalloc(n, "temporary name");
    snprintf(name, n, "%s.image.%ld", path, (long)getpid());
    remove_stale_temps(path);
    struct ofa_h5quiet q;
    ofa_h5_quiet_on(&q);
    int rc = -1;
    hid_t f = -1, fcpl = H5Pcreate(H5P_FILE_CREATE), fapl = H5Pcreate(H5P_FILE_ACCESS);
    uint8_t *image = NULL;
    ssize_t size = 0;
    if (fcpl < 0 || fapl < 0 || H5Pset_fapl_core(fapl, step, 0) < 0 ||
        H5Pset_userblock(fcpl, OFA_H5_UB_SIZE) < 0 || H5Pset_obj_track_times(fcpl, 0) < 0) {
        ofa_h5_fail(err, path, "cannot set up HDF5 property lists");
        goto out;
    }
    f = H5Fcreate(name, H5F_ACC_TRUNC, fcpl, fapl);
    if (f < 0) {
        ofa_h5_fail(err, path, "H5Fcreate of an in-memory file failed");
        goto out;
    }
    if (build(f, arg) != 0)
        goto out;
    if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0) {
        ofa_h5_fail(err, path, "H5Fflush failed");
        goto out;
    }
    /* The image leaves the user block out. */
    size = H5Fget_file_image(f, NULL, 0);
    if (size <= 0) {
        ofa_h5_fail(err, path, "H5Fget_file_image failed");
        goto out;
    }
    image = ofa_xcalloc(1, (size_t)size + OFA_H5_UB_SIZE, "HDF5 file image");
    if (H5Fget_file_image(f, image + OFA_H5_UB_SIZE, (size_t)size) != size) {
        ofa_h5_fail(err, path, "H5Fget_file_image failed");
        goto out;
    }
    size += OFA_H5_UB_SIZE;
    herr_t cr = H5Fclose(f);
    f = -1;
    if (cr < 0) {
        ofa_h5_fail(err, path, "H5Fclose failed");
        goto out;
    }
    ofa_h5_header_fill(image, (size_t)size, magic);
    struct ofa_atomic_file af;
    FILE *out = ofa_atomic_open(&af, path, err);
    if (!out)
        goto out;
    if (fwrite(image, 1, (size_t)size, out) != (size_t)size) {
        ofa_error_set(err, path, 0, "write of the temporary file %s failed: %s", af.tmp,
                      strerror(errno));
        ofa_atomic_abort(&af);
        goto out;
    }
    rc = ofa_atomic_commit(&af, err);
out:
    if (f >= 0)
        H5Fclose(f);
    ofa_h5_close_id(fcpl);
    ofa_h5_close_id(fapl);
    free(image);
    free(name);
    ofa_h5_quiet_off(&q);
    return rc;
}

/* Read a whole regular file of at most max_bytes. */
static int read_capped(const char *path, size_t max_bytes, const char *what, uint8_t **buf,
                       size_t *len, struct ofa_error *err)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
        (unsigned long long)st.st_size > max_bytes)
        return ofa_error_set(err, path, 0, "%lld bytes: too large for %s (at most %zu)",
                             (long long)st.st_size, what, max_bytes);
    return ofa_read_file(path, buf, len, err);
}

/* A name for an in-memory file: the core driver refuses to open an image
 * under the name of a file that exists, and each open file needs its own
 * name. Nothing can be created under /proc/self. */
static const char *image_name(char *buf, size_t n)
{
    static atomic_ulong counter;
    snprintf(buf, n, "/proc/self/ofa-h5-image-%lu", (unsigned long)atomic_fetch_add(&counter, 1));
    return buf;
}

hid_t ofa_h5_open(const char *path, const char *magic, const char *what, size_t max_bytes,
                  struct ofa_error *err)
{
    uint8_t *image = NULL;
    size_t len = 0;
    if (read_capped(path, max_bytes, what, &image, &len, err) != 0)
        return -1;
    if (ofa_h5_header_check_image(image, len, magic, what, path, err) != 0) {
        free(image);
        return -1;
    }
    /* HDF5 copies the image into the core driver's own buffer. */
    char name[64];
    struct ofa_h5quiet q;
    ofa_h5_quiet_on(&q);
    hid_t f = -1, fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fapl_core(fapl, 1 << 20, 0) < 0 ||
        H5Pset_file_image(fapl, image, len) < 0)
        ofa_h5_fail(err, path, "cannot set up an HDF5 file access list");
    else if ((f = H5Fopen(image_name(name, sizeof name), H5F_ACC_RDONLY, fapl)) < 0)
        ofa_h5_fail(err, path, "not an HDF5 file, or a damaged one (H5Fopen failed)");
    ofa_h5_close_id(fapl);
    ofa_h5_quiet_off(&q);
    free(image);
    return f;
}

/* ---- The guard: a crash-prone parse in a child process first ------------------ */

static int guard_on = 1;

void ofa_h5_guard_set(int on)
{
    guard_on = on;
}

int ofa_h5_guarded(const char *path, int (*load)(void *arg), void *arg, struct ofa_error *err)
{
    if (!guard_on)
        return load(arg);
    fflush(stdout);
    fflush(stderr);
    const pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
#ifdef __linux__
        /* killed with the parent: a SIGTERM to the tool (whose handler ends
         * it, ofa_cleanup_on_signals) must not leave the child reading on
         * (tests/check_fault.sh caught one still running after the tool) */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(2);
#else
        (void)parent;
#endif
        /* exit statuses 0 and 2 say the child returned; a crash gives a signal
         * (or, under a sanitizer, its own status) */
        _exit(load(arg) == 0 ? 0 : 2);
    }
    if (pid > 0) {
        int status = 0;
        pid_t w;
        while ((w = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
            ;
        if (w == pid && !(WIFEXITED(status) && (WEXITSTATUS(status) == 0 ||
                                                  WEXITSTATUS(status) == 2))) {
            if (WIFSIGNALED(status))
                return ofa_error_set(err, path, 0,
                                     "reading it crashed libhdf5 (%s, in a child process): the "
                                     "HDF5 content is damaged or crafted although its integrity "
                                     "header matches; refused",
                                     strsignal(WTERMSIG(status)));
            return ofa_error_set(err, path, 0,
                                 "reading it failed in a child process (exit status %d): the "
                                 "HDF5 content is damaged or crafted although its integrity "
                                 "header matches; refused",
                                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        }
    }
    /* no fork (pid < 0): load without the guard */
    return load(arg);
}
