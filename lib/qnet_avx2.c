/* qnet_avx2.c: the int8 kernels of qnet.inc for AVX2 + FMA CPUs (configure's
 * OFA_QNET_AVX2_CFLAGS turn AVX-512 and AVX-VNNI off explicitly, so that
 * -march=native does not add them). quant.c picks a variant at run time; all
 * compute the same integers. */
#include <config.h>

#define OFA_QNET_FN(name) name##_avx2
#include "qnet.h"
#include "qnet.inc"
