/* optim.h: SGD with (Nesterov) momentum, per-tensor weight decay, gradient
 * clipping, and the cosine learning-rate schedule with linear warm-up.
 *
 * Weight decay is handled in the optimizer, per tensor (OFA_PARAM_DECAY: none
 * on BN parameters and biases), never by writing into the gradient buffer.
 * Two forms:
 *   OFA_WD_L2 (default; PyTorch SGD and OFA): g' = g + wd * w enters momentum;
 *   OFA_WD_DECOUPLED (Loshchilov & Hutter): w -= lr * wd * w, momentum sees g.
 * Update (PyTorch semantics): v = mu v + g'; step = nesterov ? g' + mu v : v;
 * w -= lr * step. Tensors flagged OFA_PARAM_NOGRAD are skipped.
 */
#ifndef OFA_OPTIM_H
#define OFA_OPTIM_H

#include "params.h"

enum ofa_wd_mode { OFA_WD_L2 = 0, OFA_WD_DECOUPLED = 1 };

struct ofa_sgd {
    float momentum;     /* 0.9 */
    int nesterov;       /* 1 */
    float weight_decay; /* e.g. 3e-5 (OFA) */
    enum ofa_wd_mode wd_mode;
    float clip_norm;    /* global L2 norm clip; <= 0 disables */
};

/* Global L2 norm of the trainable gradients (double accumulation). */
double ofa_grad_norm(const struct ofa_params *p);
/* One step with learning rate lr. Clips first when o->clip_norm > 0.
 * Returns the gradient norm before clipping (for logging, NaN detection). */
double ofa_sgd_step(const struct ofa_sgd *o, struct ofa_params *p, float lr);

/* Learning rate at step (0-based) of total: linear warm-up to base over the
 * first warmup steps (base * (step+1)/warmup), then cosine decay from base to
 * final_lr at step total. */
float ofa_lr_cosine(long step, long total, long warmup, float base, float final_lr);

#endif
