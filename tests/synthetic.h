/* synthetic.h: synthetic objectives on a space, shared by the tests and
 * benchmarks of the search and the accuracy predictor (so that both judge
 * them on the same landscape). */
#ifndef OFA_SYNTHETIC_H
#define OFA_SYNTHETIC_H

#include "search.h"
#include "space.h"

/* acc: saturating in capacity (expand x kernel per active block, deeper
 * stages weigh more, later blocks of a stage less, resolution), with
 * interactions: a kernel repeated within a stage helps, a wide 7x7 first
 * stage hurts, a deep last stage helps more at full resolution.
 * latency: MACs plus per-block costs. flash: int8 parameters. sram: input +
 * expanded activation of the largest block, int8. */
void synth_objectives(const struct ofa_space *sp, const struct ofa_subnet *s,
                      struct ofa_objectives *o);

/* A synthetic accuracy ground truth for the predictor's test and benchmark:
 * a saturating function of a per-block score (kernel and expand choices
 * weighted by stage, a bonus per active block), resolution, and resolution x
 * total expansion, plus N(0, 0.002^2) noise from rng. Over uniformly sampled
 * subnets of the default space: mean 0.70, std 0.032. sharp > 0 steepens it
 * and adds two interaction terms (the benchmark's harder variant). */
struct ofa_rng;
float synth_accuracy(const struct ofa_space *sp, const struct ofa_subnet *s,
                     struct ofa_rng *rng, double sharp);

#endif
