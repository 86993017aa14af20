/* fuzz_idx.c: libFuzzer target for the IDX parser (plain and gzip), both
 * the image and the label entry points. */
#include <config.h>

#include "data.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ofa_error err;
    struct ofa_images im;
    if (ofa_idx_parse_images(data, size, "fuzz", &im, &err) == 0)
        ofa_images_free(&im);
    int *labels = NULL, n = 0;
    if (ofa_idx_parse_labels(data, size, "fuzz", 10, &labels, &n, &err) == 0)
        free(labels);
    return 0;
}
