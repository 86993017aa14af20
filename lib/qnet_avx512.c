/* qnet_avx512.c: the int8 kernels of qnet.inc for AVX-512 (F, BW, VL, DQ) +
 * VNNI CPUs (configure's OFA_QNET_AVX512_CFLAGS). quant.c picks a variant at
 * run time; all compute the same integers. */
#include <config.h>

#define OFA_QNET_FN(name) name##_avx512vnni
#include "qnet.h"
#include "qnet.inc"
