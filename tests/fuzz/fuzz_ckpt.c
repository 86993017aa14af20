/* fuzz_ckpt.c: libFuzzer target for the checkpoint reader. The input is
 * written to a temporary file (the API reads paths) and read with
 * ofa_ckpt_read_recipe and ofa_ckpt_load into a small fixed table, the same
 * one tests/check_ckpt.c uses to write the seeds in corpus/ckpt/. */
#include <config.h>

#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt.h"

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

static void setup(void)
{
    /* Keep in step with make_fuzz_table() in tests/check_ckpt.c. */
    ofa_params_add(&table, "stem.w", OFA_PARAM_DECAY, 4, 4, 1, 3, 3);
    ofa_params_add(&table, "stem.bn.mean", OFA_PARAM_NOGRAD, 1, 4, 0, 0, 0);
    ofa_params_add(&table, "stage1/block0/expand.w", OFA_PARAM_DECAY, 2, 32, 32, 0, 0);
    ofa_params_add(&table, "head/fc.b", 0, 1, 3, 0, 0, 0);
    ofa_params_alloc(&table);
    snprintf(path, sizeof path, "/tmp/fuzz_ckpt_XXXXXX");
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
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort();
    struct ofa_error err;
    char *recipe = NULL;
    if (ofa_ckpt_read_recipe(path, &recipe, &err) == 0)
        free(recipe);
    check_closed("ofa_ckpt_read_recipe");
    struct ofa_train_state st;
    ofa_ckpt_load(path, &table, &st, &err);
    check_closed("ofa_ckpt_load");
    return 0;
}
