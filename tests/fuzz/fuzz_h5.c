/* fuzz_h5.c: libFuzzer target for the data.h5 loader, through HDF5's core
 * (in-memory) driver.
 *
 * By default the input goes to the loader as is, so mutations mostly stop
 * at the integrity header (which is the point of it). With OFA_FUZZ_RESEAL=1
 * in the environment the target first rewrites the header to match the
 * mutated bytes, so that libhdf5 and our validation behind it are exercised;
 * crashes inside libhdf5 itself are then upstream bugs (run with -fork=1
 * -ignore_crashes=1 to keep going). libhdf5 is not instrumented: coverage
 * feedback only sees our code. */
#include <config.h>

#include "data.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int reseal = -1;
    if (reseal < 0) {
        const char *e = getenv("OFA_FUZZ_RESEAL");
        reseal = e && *e == '1';
    }
    struct ofa_error err;
    struct ofa_dataset ds;
    if (!reseal || size < 512) {
        if (ofa_dataset_load_image(data, size, "fuzz", &ds, &err) == 0)
            ofa_dataset_free(&ds);
        return 0;
    }
    uint8_t *buf = malloc(size);
    memcpy(buf, data, size);
    uLong crc = crc32(crc32(0, Z_NULL, 0), buf + 512, (uInt)(size - 512));
    memset(buf, 0, 512);
    memcpy(buf, "OFA-DATA", 8);
    buf[8] = 1;
    for (int i = 0; i < 4; i++)
        buf[12 + i] = (uint8_t)(crc >> (8 * i));
    for (int i = 0; i < 8; i++)
        buf[16 + i] = (uint8_t)((uint64_t)size >> (8 * i));
    if (ofa_dataset_load_image(buf, size, "fuzz", &ds, &err) == 0)
        ofa_dataset_free(&ds);
    free(buf);
    return 0;
}
