/* fuzz_cifar.c: libFuzzer target for the CIFAR-10/100 batch parser; the
 * input is parsed as both variants and appended twice (the append path). */
#include <config.h>

#include "data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ofa_error err;
    for (int v = 0; v < 2; v++) {
        struct ofa_images im = {0};
        if (ofa_cifar_parse(data, size, "fuzz", v, &im, &err) == 0)
            ofa_cifar_parse(data, size, "fuzz", v, &im, &err);
        ofa_images_free(&im);
    }
    return 0;
}
