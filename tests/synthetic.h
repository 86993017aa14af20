/* synthetic.h: a synthetic objective on a space, for the search tests and
 * benchmark (so that both judge the search on the same landscape). */
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

#endif
