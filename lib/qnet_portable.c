/* qnet_portable.c: the int8 kernels of qnet.inc for any CPU of the
 * architecture, built without vector extensions beyond its base instruction
 * set (configure's OFA_QNET_PORTABLE_CFLAGS; explicit -m flags override
 * -march=native). quant.c picks a variant at run time; all compute the same
 * integers. */
#include <config.h>

#define OFA_QNET_FN(name) name##_portable
#include "qnet.h"
#include "qnet.inc"
