/* prof.h: a per-op wall-time profile of the training step (bench_train_step
 * --profile), off by default.
 *
 * When enabled, every timed op adds its call and its self time (wall time,
 * CLOCK_MONOTONIC, in nanoseconds, minus the time of the timed ops nested in
 * it) to a table indexed by op kind and direction. Self times of the ops of
 * a step therefore add up to at most the step's wall time; the rest is
 * untimed work (loops and bookkeeping between the ops).
 *
 * Where ops are timed: the supernet's layers at their call sites in
 * supernet.c (the call site knows the role: a 1x1 convolution is an expand,
 * a project or the head), the entry points that training calls beside the
 * supernet inside their own functions: the losses, the bilinear resize,
 * ofa_params_zero_grad and ofa_sgd_step; and the layers of the materialised
 * model's fp32 inference (ofa_model_forward, model.c), as forward ops of the
 * same kinds (BN folded; a residual add is made in the project convolution
 * before it and counted there, else it is its own kind).
 *
 * Threads: the switch and the table are per thread (thread-local). Enable it
 * on the thread that calls the ops (the main thread; the ops parallelise
 * inside, so its wall time is the op's time); ops that other threads call,
 * such as the data loader's resizes, are not counted.
 *
 * Off, an op pays one test of a thread-local flag before it and one of a
 * local after it.
 */
#ifndef OFA_PROF_H
#define OFA_PROF_H

#include <stdint.h>

enum ofa_prof_kind {
    OFA_PROF_STEM_CONV,  /* dense 3x3 stem convolution (im2col + GEMM) */
    OFA_PROF_PW_EXPAND,  /* 1x1 expand of an MBConv block (GEMM) */
    OFA_PROF_PW_PROJECT, /* 1x1 project of an MBConv block and of the first block */
    OFA_PROF_PW_HEAD,    /* the head's 1x1 convolution */
    OFA_PROF_DW3,        /* depthwise convolution by kernel size */
    OFA_PROF_DW5,
    OFA_PROF_DW7,        /* (a loaded model's larger kernels too) */
    OFA_PROF_DWKERNEL,   /* the active kernel from the stored 7x7 one (elastic kernel) */
    OFA_PROF_BN_TRAIN,   /* BN with batch statistics (and the residual added in
                          * its sweep), and every BN backward (but
                          * the input gradient of a 1x1 convolution's BN, made a
                          * block of rows at a time inside that convolution's
                          * backward and counted there) */
    OFA_PROF_BN_EVAL,    /* BN with running statistics */
    OFA_PROF_BN_CALIB,   /* BN of a recalibration pass */
    OFA_PROF_IDENTITY,   /* activations, by function */
    OFA_PROF_RELU,
    OFA_PROF_HSWISH,
    OFA_PROF_HSIGMOID,
    OFA_PROF_SE,         /* squeeze-excite, whole */
    OFA_PROF_AVGPOOL,    /* the head's global average pool */
    OFA_PROF_DROPOUT,
    OFA_PROF_FC,         /* the classifier (GEMM) */
    OFA_PROF_ADD,        /* an inference residual add of its own (training's is in BN_TRAIN) */
    OFA_PROF_GRAD_FILL,  /* zeroing of activation gradient buffers in the backward */
    OFA_PROF_SOFTMAX,    /* losses: softmax (distillation targets), */
    OFA_PROF_CE,         /* label-smoothed cross-entropy, */
    OFA_PROF_KD,         /* distillation */
    OFA_PROF_RESIZE,     /* bilinear resize (inputs to a subnet's resolution) */
    OFA_PROF_ZERO_GRAD,  /* ofa_params_zero_grad */
    OFA_PROF_SGD,        /* ofa_sgd_step (gradient norm included) */
    OFA_PROF_NKINDS
};

enum ofa_prof_dir {
    OFA_PROF_FWD,
    OFA_PROF_BWD,
    OFA_PROF_STEP, /* neither: zeroing gradients, the update */
    OFA_PROF_NDIRS
};

/* Counts and self times of the calling thread's timed ops. */
struct ofa_prof {
    long calls[OFA_PROF_NKINDS][OFA_PROF_NDIRS];
    int64_t ns[OFA_PROF_NKINDS][OFA_PROF_NDIRS];
};

/* Switch the calling thread's profile on (on != 0) or off; the table keeps
 * what it holds either way. */
void ofa_prof_enable(int on);
/* Zero the calling thread's table. Not from inside a timed op. */
void ofa_prof_reset(void);
/* Copy the calling thread's table. */
void ofa_prof_read(struct ofa_prof *out);
/* Sum of the self times in p (ns). */
int64_t ofa_prof_total_ns(const struct ofa_prof *p);
/* The profile's clock (CLOCK_MONOTONIC, ns): time a step with it to compare
 * with the table. */
int64_t ofa_prof_now_ns(void);
/* Short names for tables: "pw expand", "bwd". */
const char *ofa_prof_kind_name(enum ofa_prof_kind k);
const char *ofa_prof_dir_name(enum ofa_prof_dir d);

/* Timing one op: began = ofa_prof_begin(); the op; ofa_prof_end(began, kind,
 * dir). OFA_PROF wraps a statement so. Nesting is allowed (a few levels). */
extern _Thread_local int ofa_prof_on;
void ofa_prof_push(void);
void ofa_prof_pop(enum ofa_prof_kind kind, enum ofa_prof_dir dir);

static inline int ofa_prof_begin(void)
{
    if (!ofa_prof_on)
        return 0;
    ofa_prof_push();
    return 1;
}

static inline void ofa_prof_end(int began, enum ofa_prof_kind kind, enum ofa_prof_dir dir)
{
    if (began)
        ofa_prof_pop(kind, dir);
}

#define OFA_PROF(kind, dir, ...)                          \
    do {                                                  \
        const int ofa_prof_began_ = ofa_prof_begin();     \
        __VA_ARGS__;                                      \
        ofa_prof_end(ofa_prof_began_, (kind), (dir));     \
    } while (0)

#endif
