/* qnet_avx512vbmi.c: the int8 kernels of qnet.inc for AVX-512 VNNI CPUs
 * with VBMI (configure's OFA_QNET_AVX512VBMI_CFLAGS): as qnet_avx512.c, with
 * the activation tables looked up by byte permutes. quant.c picks a variant
 * at run time; all compute the same integers. */
#include <config.h>

#define OFA_QNET_FN(name) name##_avx512vbmi
#include "qnet.h"
#include "qnet.inc"
