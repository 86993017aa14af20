/* fuzz_ckpt.c: libFuzzer target for the checkpoint reader. The input is
 * written to a temporary file (the API reads paths) and read with
 * ofa_ckpt_read_recipe and ofa_ckpt_load into a small fixed table, the same
 * one tests/check_ckpt.c uses to write the seeds in corpus/ckpt/.
 *
 * A checkpoint starts with the integrity header of lib/h5file.h (a CRC-32
 * of the file in its 512-byte HDF5 user block), checked before libhdf5
 * parses a byte. By default the input is loaded as it is, so mutations
 * mostly stop at the header (which is the point of it). With
 * OFA_FUZZ_RESEAL=1 in the environment an input of 512 bytes or more first
 * gets a valid header for the bytes after its first 512 (as fuzz_h5 does
 * for data.h5), so that libhdf5 and our validation behind it are
 * exercised; crashes inside libhdf5 itself are then upstream bugs (README.md;
 * run with -fork=1 -ignore_crashes=1 to keep going).
 *
 * OFA_FUZZ_VERBOSE=1: print what each input reaches (the loaders' errors). */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt.h"
#include "h5file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__asan_default_options(void);
const char *__lsan_default_suppressions(void);

/* libhdf5 answers some crafted headers with absurd allocations that it
 * handles failing, and leaks small blocks on some of its error paths: both
 * are upstream behaviour, not findings about our code. */
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}

const char *__lsan_default_suppressions(void)
{
    return "leak:libhdf5\n";
}

static struct ofa_params table;
static char path[64];
static int reseal, verbose;

/* libhdf5 is not instrumented: an object we forget to close shows up as an
 * open identifier, not as a leak. */
static void check_closed(const char *after)
{
    ssize_t n = H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (n != 0) {
        fprintf(stderr, "fuzz_ckpt: %zd HDF5 objects left open by %s\n", n, after);
        abort();
    }
}

static void cleanup(void)
{
    if (path[0])
        unlink(path);
}

/* Remove the input files of killed runs of this target (a crash skips
 * atexit; with OFA_FUZZ_RESEAL=1 libhdf5 crashes often): /tmp entries
 * named fuzz_ckpt_<pid>_... whose process is gone. */
static void remove_stale(void)
{
    DIR *d = opendir("/tmp");
    struct dirent *e;
    static const char prefix[] = "fuzz_ckpt_";
    const size_t n = sizeof prefix - 1;
    while (d && (e = readdir(d)) != NULL) {
        char *end;
        if (strncmp(e->d_name, prefix, n) != 0)
            continue;
        long pid = strtol(e->d_name + n, &end, 10);
        if (end == e->d_name + n || *end != '_' || pid <= 0 ||
            kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        char p[512];
        snprintf(p, sizeof p, "/tmp/%s", e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
}

static void setup(void)
{
    /* loaders in this process, not in a guarding child: crashes must show */
    ofa_h5_guard_set(0);
    /* Keep in step with make_fuzz_table() in tests/check_ckpt.c. */
    ofa_params_add(&table, "stem.w", OFA_PARAM_DECAY, 4, 4, 1, 3, 3);
    ofa_params_add(&table, "stem.bn.mean", OFA_PARAM_NOGRAD, 1, 4, 0, 0, 0);
    ofa_params_add(&table, "stage1/block0/expand.w", OFA_PARAM_DECAY, 2, 32, 32, 0, 0);
    ofa_params_add(&table, "head/fc.b", 0, 1, 3, 0, 0, 0);
    ofa_params_alloc(&table);
    const char *e = getenv("OFA_FUZZ_RESEAL");
    reseal = e && *e == '1';
    verbose = getenv("OFA_FUZZ_VERBOSE") != NULL;
    remove_stale();
    snprintf(path, sizeof path, "/tmp/fuzz_ckpt_%ld_XXXXXX", (long)getpid());
    int fd = mkstemp(path);
    if (fd < 0)
        abort();
    close(fd);
    atexit(cleanup);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!table.data)
        setup();
    uint8_t *sealed = NULL;
    if (reseal && size >= OFA_H5_UB_SIZE) {
        sealed = malloc(size);
        if (!sealed)
            abort();
        memcpy(sealed, data, size);
        ofa_h5_header_fill(sealed, size, OFA_H5_MAGIC);
        data = sealed;
    }
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort();
    free(sealed);
    struct ofa_error err;
    char *recipe = NULL;
    int rc = ofa_ckpt_read_recipe(path, &recipe, &err);
    if (verbose)
        fprintf(stderr, "recipe: %s\n", rc == 0 ? "read" : err.msg);
    if (rc == 0)
        free(recipe);
    check_closed("ofa_ckpt_read_recipe");
    struct ofa_train_state st;
    rc = ofa_ckpt_load(path, &table, &st, &err);
    if (verbose)
        fprintf(stderr, "load: %s\n", rc == 0 ? "accepted" : err.msg);
    check_closed("ofa_ckpt_load");
    return 0;
}
