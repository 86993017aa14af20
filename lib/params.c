/* params.c: the flat parameter table (data, gradient and momentum buffers). */
#include <config.h>

#include "params.h"
#include "prof.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#define ALIGN_FLOATS 16

int ofa_params_add(struct ofa_params *p, const char *name, unsigned flags, int ndim,
                   int d0, int d1, int d2, int d3)
{
    OFA_ASSERT(p->data == NULL); /* table is frozen once allocated */
    OFA_ASSERT(ndim >= 1 && ndim <= OFA_PARAM_MAXDIM);
    OFA_ASSERT(strlen(name) < OFA_PARAM_NAMELEN);
    OFA_ASSERT(ofa_params_find(p, name) < 0);
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 64;
        struct ofa_param *t = realloc(p->t, (size_t)p->cap * sizeof *t);
        if (!t)
            ofa_fatal("out of memory growing the parameter table");
        p->t = t;
    }
    struct ofa_param *e = &p->t[p->n];
    memset(e, 0, sizeof *e);
    strcpy(e->name, name);
    e->ndim = ndim;
    int dims[OFA_PARAM_MAXDIM] = {d0, d1, d2, d3};
    e->numel = 1;
    for (int i = 0; i < ndim; i++) {
        OFA_ASSERT(dims[i] >= 1);
        e->shape[i] = dims[i];
        e->numel = ofa_mul_size(e->numel, (size_t)dims[i]);
    }
    e->flags = flags;
    e->offset = p->total;
    p->total += (e->numel + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS;
    return p->n++;
}

static float *alloc_aligned(size_t nfloats, const char *what)
{
    return ofa_xzalloc64(ofa_mul_size(nfloats ? nfloats : 1, sizeof(float)), what);
}

void ofa_params_alloc(struct ofa_params *p)
{
    OFA_ASSERT(p->data == NULL);
    p->data = alloc_aligned(p->total, "parameters");
    p->grad = alloc_aligned(p->total, "gradients");
    p->mom = alloc_aligned(p->total, "momentum buffers");
}

void ofa_params_free(struct ofa_params *p)
{
    free(p->t);
    free(p->data);
    free(p->grad);
    free(p->mom);
    memset(p, 0, sizeof *p);
}

int ofa_params_find(const struct ofa_params *p, const char *name)
{
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->t[i].name, name) == 0)
            return i;
    return -1;
}

void ofa_params_zero_grad(struct ofa_params *p)
{
    OFA_PROF(OFA_PROF_ZERO_GRAD, OFA_PROF_STEP, memset(p->grad, 0, p->total * sizeof(float)));
}

size_t ofa_params_count(const struct ofa_params *p)
{
    size_t n = 0;
    for (int i = 0; i < p->n; i++)
        if (!(p->t[i].flags & OFA_PARAM_NOGRAD))
            n += p->t[i].numel;
    return n;
}
