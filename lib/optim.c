/* optim.c: SGD with Nesterov momentum over the flat parameter table. The
 * step times itself (prof.h). */
#include <config.h>

#include "optim.h"
#include "prof.h"
#include "util.h"

#include <math.h>

/* Sum of g[j]^2 in double, in LANES independent sums (element j into sum j
 * % LANES), added in lane order at the end: the compiler vectorises the
 * lanes, where one running sum is a chain of dependent scalar adds (the
 * SGD step of the largest subnet, 1.6 M parameters, one thread: 3.1 -> 1.8
 * ms). One thread, in a fixed order: the norm does not depend on the thread
 * count (an OpenMP reduction's did). */
static double sum_squares(const float *g, size_t n)
{
    enum { LANES = 16 };
    double lane[LANES] = {0};
    size_t j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++)
            lane[l] += (double)g[j + l] * (double)g[j + l];
    for (int l = 0; j + l < n; l++)
        lane[l] += (double)g[j + l] * (double)g[j + l];
    double s = 0;
    for (int l = 0; l < LANES; l++)
        s += lane[l];
    return s;
}

double ofa_grad_norm(const struct ofa_params *p)
{
    double s = 0;
    for (int i = 0; i < p->n; i++) {
        const struct ofa_param *t = &p->t[i];
        if (!(t->flags & OFA_PARAM_NOGRAD))
            s += sum_squares(p->grad + t->offset, t->numel);
    }
    return sqrt(s);
}

double ofa_sgd_step(const struct ofa_sgd *o, struct ofa_params *p, float lr)
{
    const int prof = ofa_prof_begin();
    double norm = ofa_grad_norm(p);
    float gscale = 1.0f;
    if (o->clip_norm > 0 && norm > o->clip_norm)
        gscale = (float)(o->clip_norm / norm);
    const float mu = o->momentum;
    /* One parallel region for all the tensors (most were too small for a
     * region each): each thread takes its share of every tensor. Largest
     * subnet, two threads: the step 1.6 -> 1.1 ms. */
#pragma omp parallel if (p->total > 65536)
    for (int i = 0; i < p->n; i++) {
        const struct ofa_param *t = &p->t[i];
        if (t->flags & OFA_PARAM_NOGRAD)
            continue;
        float *w = p->data + t->offset, *g = p->grad + t->offset, *v = p->mom + t->offset;
        const float wd = (t->flags & OFA_PARAM_DECAY) ? o->weight_decay : 0.0f;
        const float l2 = o->wd_mode == OFA_WD_L2 ? wd : 0.0f;
        const float decoupled = o->wd_mode == OFA_WD_DECOUPLED ? lr * wd : 0.0f;
        const int nesterov = o->nesterov;
        const size_t n = t->numel;
#pragma omp for schedule(static) nowait
        for (size_t j = 0; j < n; j++) {
            float gj = gscale * g[j] + l2 * w[j];
            float vj = mu * v[j] + gj;
            v[j] = vj;
            float step = nesterov ? gj + mu * vj : vj;
            w[j] = w[j] - decoupled * w[j] - lr * step;
        }
    }
    ofa_prof_end(prof, OFA_PROF_SGD, OFA_PROF_STEP);
    return norm;
}

float ofa_lr_cosine(long step, long total, long warmup, float base, float final_lr)
{
    OFA_ASSERT(total > 0 && step >= 0 && warmup >= 0);
    if (step < warmup)
        return base * (float)(step + 1) / (float)warmup;
    if (step >= total)
        return final_lr;
    double t = (double)(step - warmup) / (double)(total - warmup > 0 ? total - warmup : 1);
    return (float)(final_lr + 0.5 * (base - final_lr) * (1.0 + cos(3.14159265358979323846 * t)));
}
