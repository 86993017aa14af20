/* params.h: all trainable parameters in one flat buffer, sized from one table.
 *
 * A network registers its tensors (name, shape, flags) once; ofa_params_alloc
 * then allocates data, grad and momentum buffers with identical layout, so the
 * optimizer is one loop over a table and a checkpoint writes one table. Each
 * tensor starts on a 16-float boundary (64 bytes) for aligned vector loads.
 * Ownership: struct ofa_params owns its table and buffers; ofa_params_free
 * releases them (safe on a zeroed struct).
 */
#ifndef OFA_PARAMS_H
#define OFA_PARAMS_H

#include <stddef.h>

enum {
    OFA_PARAM_DECAY = 1u << 0, /* weight decay applies (not BN, not biases) */
    OFA_PARAM_NOGRAD = 1u << 1 /* not trained (e.g. BN running statistics) */
};

#define OFA_PARAM_MAXDIM 4
#define OFA_PARAM_NAMELEN 96

struct ofa_param {
    char name[OFA_PARAM_NAMELEN];
    int ndim;
    int shape[OFA_PARAM_MAXDIM];
    size_t numel;
    size_t offset; /* in floats, into data/grad/mom */
    unsigned flags;
};

struct ofa_params {
    struct ofa_param *t;
    int n, cap;
    size_t total; /* floats, including alignment padding */
    float *data, *grad, *mom;
};

/* Register a tensor; returns its index. Shape dims beyond ndim are ignored.
 * Must be called before ofa_params_alloc. Names must be unique (asserted). */
int ofa_params_add(struct ofa_params *p, const char *name, unsigned flags, int ndim,
                   int d0, int d1, int d2, int d3);
/* Allocate zeroed data/grad/mom buffers for the registered table. */
void ofa_params_alloc(struct ofa_params *p);
void ofa_params_free(struct ofa_params *p);
/* Index of a tensor by name, or -1. */
int ofa_params_find(const struct ofa_params *p, const char *name);

static inline float *ofa_param_data(const struct ofa_params *p, int i)
{
    return p->data + p->t[i].offset;
}
static inline float *ofa_param_grad(const struct ofa_params *p, int i)
{
    return p->grad + p->t[i].offset;
}

void ofa_params_zero_grad(struct ofa_params *p);
/* Number of trainable scalars (excludes OFA_PARAM_NOGRAD tensors). */
size_t ofa_params_count(const struct ofa_params *p);

#endif
