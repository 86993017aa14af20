/* arena.h: activation memory, sized once, no allocation inside a step.
 *
 * A bump allocator over one 64-byte-aligned block. A forward/backward pass
 * allocates its activations and scratch with ofa_arena_alloc and releases
 * them all at once with ofa_arena_reset (or back to a mark). Running out is a
 * programmer error (the owner sizes the arena for the largest batch and
 * resolution, e.g. with a measuring pass): it asserts with the sizes.
 * A measuring arena (capacity 0 from ofa_arena_init_measure) hands out no
 * memory but records the peak, so a network can size its real arena by
 * running its allocation sequence once.
 */
#ifndef OFA_ARENA_H
#define OFA_ARENA_H

#include <stddef.h>

struct ofa_arena {
    char *base;
    size_t cap, used, peak;
    int measuring;
};

void ofa_arena_init(struct ofa_arena *a, size_t bytes);
void ofa_arena_init_measure(struct ofa_arena *a);
void ofa_arena_free(struct ofa_arena *a);
/* n floats, 64-byte aligned; NULL only in a measuring arena. */
float *ofa_arena_alloc(struct ofa_arena *a, size_t n);
/* Same, zero-filled. */
float *ofa_arena_calloc(struct ofa_arena *a, size_t n);
static inline size_t ofa_arena_mark(const struct ofa_arena *a) { return a->used; }
void ofa_arena_reset_to(struct ofa_arena *a, size_t mark);
static inline void ofa_arena_reset(struct ofa_arena *a) { ofa_arena_reset_to(a, 0); }

#endif
