/* prof.c: the per-op profile (prof.h). A stack of open timed ops per thread:
 * an op's self time is its wall time minus that of the ops that ran inside
 * it, so the table never counts a nanosecond twice. Integer nanoseconds of
 * one monotonic clock, so that the sums are exact. */
#include <config.h>

#include "prof.h"

#include "util.h"

#include <string.h>
#include <time.h>

enum { MAX_DEPTH = 8 };

struct frame {
    int64_t t0;    /* when the op began */
    int64_t child; /* wall time of the timed ops nested in it */
};

_Thread_local int ofa_prof_on;
static _Thread_local struct ofa_prof table;
static _Thread_local struct frame stack[MAX_DEPTH];
static _Thread_local int depth;

int64_t ofa_prof_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void ofa_prof_enable(int on)
{
    ofa_prof_on = on != 0;
}

void ofa_prof_reset(void)
{
    OFA_ASSERT(depth == 0);
    memset(&table, 0, sizeof table);
}

void ofa_prof_read(struct ofa_prof *out)
{
    *out = table;
}

int64_t ofa_prof_total_ns(const struct ofa_prof *p)
{
    int64_t s = 0;
    for (int k = 0; k < OFA_PROF_NKINDS; k++)
        for (int d = 0; d < OFA_PROF_NDIRS; d++)
            s += p->ns[k][d];
    return s;
}

void ofa_prof_push(void)
{
    OFA_ASSERT(depth < MAX_DEPTH);
    stack[depth].t0 = ofa_prof_now_ns();
    stack[depth].child = 0;
    depth++;
}

void ofa_prof_pop(enum ofa_prof_kind kind, enum ofa_prof_dir dir)
{
    const int64_t t1 = ofa_prof_now_ns();
    OFA_ASSERT(depth > 0 && (unsigned)kind < OFA_PROF_NKINDS && (unsigned)dir < OFA_PROF_NDIRS);
    const struct frame *f = &stack[--depth];
    const int64_t wall = t1 - f->t0;
    table.calls[kind][dir]++;
    table.ns[kind][dir] += wall - f->child;
    if (depth > 0)
        stack[depth - 1].child += wall;
}

const char *ofa_prof_kind_name(enum ofa_prof_kind k)
{
    static const char *const names[OFA_PROF_NKINDS] = {
        [OFA_PROF_STEM_CONV] = "stem conv 3x3",
        [OFA_PROF_PW_EXPAND] = "pw expand",
        [OFA_PROF_PW_PROJECT] = "pw project",
        [OFA_PROF_PW_HEAD] = "pw head",
        [OFA_PROF_DW3] = "dw 3x3",
        [OFA_PROF_DW5] = "dw 5x5",
        [OFA_PROF_DW7] = "dw 7x7",
        [OFA_PROF_DWKERNEL] = "kernel transform",
        [OFA_PROF_BN_TRAIN] = "bn batch stats",
        [OFA_PROF_BN_EVAL] = "bn running stats",
        [OFA_PROF_BN_CALIB] = "bn recalibration",
        [OFA_PROF_IDENTITY] = "identity",
        [OFA_PROF_RELU] = "relu",
        [OFA_PROF_HSWISH] = "hswish",
        [OFA_PROF_HSIGMOID] = "hsigmoid",
        [OFA_PROF_SE] = "squeeze-excite",
        [OFA_PROF_AVGPOOL] = "avg pool",
        [OFA_PROF_DROPOUT] = "dropout",
        [OFA_PROF_FC] = "classifier fc",
        [OFA_PROF_ADD] = "residual add",
        [OFA_PROF_GRAD_FILL] = "zero act grads",
        [OFA_PROF_SOFTMAX] = "softmax",
        [OFA_PROF_CE] = "cross-entropy",
        [OFA_PROF_KD] = "distillation",
        [OFA_PROF_RESIZE] = "resize",
        [OFA_PROF_ZERO_GRAD] = "zero param grads",
        [OFA_PROF_SGD] = "sgd update",
    };
    OFA_ASSERT((unsigned)k < OFA_PROF_NKINDS && names[k]);
    return names[k];
}

const char *ofa_prof_dir_name(enum ofa_prof_dir d)
{
    static const char *const names[OFA_PROF_NDIRS] = {"fwd", "bwd", "step"};
    OFA_ASSERT((unsigned)d < OFA_PROF_NDIRS);
    return names[d];
}
