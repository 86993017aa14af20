/* fuzz_png.c: libFuzzer target for the PNG decoder (libpng under setjmp);
 * the requested channel count (1, 3 or 4) comes from the input length so
 * that every conversion path is exercised. */
#include <config.h>

#include "data.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int ch[3] = {1, 3, 4};
    struct ofa_error err;
    uint8_t *px = NULL;
    int h, w;
    (void)ofa_png_peek_channels(data, size);
    if (ofa_png_decode(data, size, "fuzz", ch[size % 3], &px, &h, &w, &err) == 0)
        free(px);
    return 0;
}
