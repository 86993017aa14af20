/* arena.c: the activation arena (bump allocation, reset per step). */
#include <config.h>
#define _DEFAULT_SOURCE /* madvise's MADV_HUGEPAGE (Linux) */

#include "arena.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

enum { HUGE_PAGE = 2 << 20 };

/* An arena of several huge pages is whole ones, aligned to them, and asks
 * for them (transparent huge pages, where the kernel has them in madvise
 * mode), for the kernels' strided sweeps over tensors of tens of MB (one
 * cache line a pixel in the depthwise kernels): the largest subnet's
 * training step 1.01-1.02x at one thread (7 alternating runs, Zen 4),
 * within the noise at two. */
void ofa_arena_init(struct ofa_arena *a, size_t bytes)
{
    memset(a, 0, sizeof *a);
    bytes = (bytes + 63) / 64 * 64;
    const int huge = bytes >= 4 * (size_t)HUGE_PAGE;
    if (huge)
        bytes = (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    void *p = NULL;
    if (posix_memalign(&p, huge ? HUGE_PAGE : 64, bytes ? bytes : 64) != 0)
        ofa_fatal("out of memory allocating an activation arena of %zu MiB "
                  "(reduce the batch size or the resolution)", bytes >> 20);
#ifdef MADV_HUGEPAGE
    if (huge)
        (void)madvise(p, bytes, MADV_HUGEPAGE); /* advice: failing is harmless */
#endif
    a->base = p;
    a->cap = bytes;
}

void ofa_arena_init_measure(struct ofa_arena *a)
{
    memset(a, 0, sizeof *a);
    a->measuring = 1;
}

void ofa_arena_free(struct ofa_arena *a)
{
    free(a->base);
    memset(a, 0, sizeof *a);
}

float *ofa_arena_alloc(struct ofa_arena *a, size_t n)
{
    size_t bytes = (ofa_mul_size(n, sizeof(float)) + 63) / 64 * 64;
    OFA_ASSERT(bytes <= SIZE_MAX - a->used);
    size_t at = a->used;
    a->used += bytes;
    if (a->used > a->peak)
        a->peak = a->used;
    if (a->measuring)
        return NULL;
    if (a->used > a->cap) {
        fprintf(stderr, "arena: need %zu bytes, capacity %zu\n", a->used, a->cap);
        OFA_ASSERT(a->used <= a->cap);
    }
    return (float *)(a->base + at);
}

float *ofa_arena_calloc(struct ofa_arena *a, size_t n)
{
    float *p = ofa_arena_alloc(a, n);
    if (p)
        memset(p, 0, n * sizeof(float));
    return p;
}

void ofa_arena_reset_to(struct ofa_arena *a, size_t mark)
{
    OFA_ASSERT(mark <= a->used);
    a->used = mark;
}
