/* data_loader.c: augmentation and the double-buffered batch loader.
 *
 * Batch `b` of epoch `e` at resolution `r` is a pure function of (seed, e,
 * b, r): the epoch's order is a Fisher-Yates permutation drawn from
 * (seed, e), and sample i of the epoch draws its crop, flip and erasing from
 * its own stream ofa_rng_derive(seed', e, i) (seed' = seed mixed with a
 * constant private to the loader, so that the trainer's own derived streams
 * never coincide with these). Thread count and timing therefore cannot change
 * a batch.
 *
 * Threads: with async = 1 one background pthread assembles batch b+1 into
 * the second of two preallocated, pre-touched buffers while the caller
 * computes on batch b. That thread is plain serial C with no OpenMP, so it
 * never creates a second OpenMP pool that would fight the compute threads
 * on a small machine; it needs about 1 ms per batch of 128 28x28 images.
 * ofa_loader_fill() (the synchronous path, for evaluation) may use an OpenMP
 * loop over samples since nothing else runs then.
 */
#include <config.h>

#include "data.h"
#include "ops.h"
#include "rng.h"

#include <math.h>
#include <pthread.h>
#ifdef _OPENMP
#include <omp.h>
#else
#pragma GCC diagnostic ignored "-Wunknown-pragmas"
#endif
#include <stdlib.h>
#include <string.h>

#define LOADER_SEED_MIX 0x6f66612d64617461ULL /* "ofa-data" */
#define PERM_CACHE 3
#define PAR_MIN_ELEMS (1L << 21) /* output floats below which fill() stays serial */

void ofa_aug_default(struct ofa_aug *a)
{
    memset(a, 0, sizeof *a);
    a->erase_min = 0.02f;
    a->erase_max = 0.33f;
    a->erase_ratio = 0.3f;
    a->normalize = 1;
}

void ofa_loader_config_default(struct ofa_loader_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->split = OFA_SPLIT_TRAIN;
    cfg->batch_size = 128;
    cfg->shuffle = 1;
    cfg->drop_last = 1;
    cfg->async = 1;
    ofa_aug_default(&cfg->aug);
}

void ofa_augment_one(float *out, const uint8_t *img, int H, int W, int C, int res,
                     const struct ofa_aug *aug, const float *lut, float *scratch,
                     struct ofa_rng *rng)
{
    int oy = 0, ox = 0, flip = 0;
    if (aug->crop_pad > 0) {
        uint32_t span = 2u * (uint32_t)aug->crop_pad + 1u;
        oy = (int)ofa_rng_below(rng, span) - aug->crop_pad;
        ox = (int)ofa_rng_below(rng, span) - aug->crop_pad;
    }
    if (aug->flip)
        flip = (int)(ofa_rng_u64(rng) >> 63);
    float *dst = (res == H && res == W) ? out : scratch;
    /* Crop (shift with zero padding) then flip, through the value LUT; the
     * padding is raw value 0 mapped through the same LUT. */
    for (int y = 0; y < H; y++) {
        int sy = y + oy;
        float *row = dst + (size_t)y * (size_t)W * (size_t)C;
        if (sy < 0 || sy >= H) {
            for (int x = 0; x < W; x++)
                for (int c = 0; c < C; c++)
                    row[x * C + c] = lut[c * 256];
            continue;
        }
        const uint8_t *srow = img + (size_t)sy * (size_t)W * (size_t)C;
        if (C == 1) {
            for (int x = 0; x < W; x++) {
                int sx = (flip ? W - 1 - x : x) + ox;
                row[x] = lut[(sx >= 0 && sx < W) ? srow[sx] : 0];
            }
        } else {
            for (int x = 0; x < W; x++) {
                int sx = (flip ? W - 1 - x : x) + ox;
                for (int c = 0; c < C; c++)
                    row[x * C + c] = lut[c * 256 + ((sx >= 0 && sx < W) ? srow[sx * C + c] : 0)];
            }
        }
    }
    /* The normalisation is affine per channel and bilinear weights sum to
     * one, so resizing after normalising equals normalising after resizing. */
    if (dst != out)
        ofa_resize_bilinear_forward(out, dst, 1, H, W, res, res, C);
    if (aug->erase_prob > 0.0f && ofa_rng_uniform(rng) < aug->erase_prob) {
        float area = (float)res * (float)res;
        float lr0 = logf(aug->erase_ratio), lr1 = -lr0;
        for (int attempt = 0; attempt < 10; attempt++) {
            float a = area * (aug->erase_min + (aug->erase_max - aug->erase_min) *
                                                   ofa_rng_uniform(rng));
            float ar = expf(lr0 + (lr1 - lr0) * ofa_rng_uniform(rng));
            int eh = (int)lroundf(sqrtf(a * ar)), ew = (int)lroundf(sqrtf(a / ar));
            if (eh < 1 || ew < 1 || eh >= res || ew >= res)
                continue;
            int y0 = (int)ofa_rng_below(rng, (uint32_t)(res - eh + 1));
            int x0 = (int)ofa_rng_below(rng, (uint32_t)(res - ew + 1));
            for (int y = y0; y < y0 + eh; y++)
                memset(out + ((size_t)y * res + x0) * C, 0, sizeof(float) * (size_t)ew * C);
            break;
        }
    }
}

struct slot {
    struct ofa_batch b;
    int state; /* SLOT_* */
    int gen;
};
enum { SLOT_FREE = 0, SLOT_BUSY, SLOT_READY, SLOT_HELD };

struct perm_entry {
    int epoch; /* -1: empty */
    int *perm;
    unsigned long used;
};

struct ofa_loader {
    const struct ofa_dataset *ds;
    struct ofa_loader_config cfg;
    const struct ofa_images *im;
    const int *idx; /* the split's images (NULL: 0..n-1) */
    int n, nb, maxres, C;
    uint64_t seed;
    float *lut; /* [C][256] */
    /* Cached epoch permutations (guarded by mu). */
    struct perm_entry perms[PERM_CACHE];
    unsigned long perm_clock;
    /* Double buffering. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t th;
    int have_thread, stop;
    struct slot slots[2];
    int epoch, next;          /* the consumer's position */
    int prod_epoch, want;     /* the producer's next job */
    int active;               /* 0 until the first start_epoch */
    int gen;                  /* bumped when queued work is discarded */
    float *scratch; /* producer's (or the synchronous next()'s) */
    double wait_s;
    long wait_n;
};

/* Copy count sample indices of epoch starting at position start (mu held or not:
 * takes it). */
static void epoch_samples(struct ofa_loader *l, int epoch, int start, int count, int *out)
{
    if (!l->cfg.shuffle) {
        for (int i = 0; i < count; i++)
            out[i] = start + i;
        return;
    }
    pthread_mutex_lock(&l->mu);
    struct perm_entry *e = NULL, *victim = &l->perms[0];
    for (int k = 0; k < PERM_CACHE; k++) {
        if (l->perms[k].epoch == epoch)
            e = &l->perms[k];
        if (l->perms[k].used < victim->used)
            victim = &l->perms[k];
    }
    if (!e) {
        e = victim;
        e->epoch = epoch;
        int *p = e->perm;
        for (int i = 0; i < l->n; i++)
            p[i] = i;
        struct ofa_rng r;
        ofa_rng_derive(&r, l->seed, (uint64_t)epoch, UINT64_MAX);
        for (int i = l->n - 1; i > 0; i--) {
            int j = (int)ofa_rng_below(&r, (uint32_t)i + 1);
            int t = p[i];
            p[i] = p[j];
            p[j] = t;
        }
    }
    e->used = ++l->perm_clock;
    memcpy(out, e->perm + start, sizeof(int) * (size_t)count);
    pthread_mutex_unlock(&l->mu);
}

static int batch_len(const struct ofa_loader *l, int index)
{
    int B = l->cfg.batch_size;
    int left = l->n - index * B;
    return left < B ? left : B;
}

static void make_sample(const struct ofa_loader *l, int epoch, int pos, int sample, int res,
                        float *x, int *y, float *scratch)
{
    const struct ofa_images *im = l->im;
    int img = l->idx ? l->idx[sample] : sample;
    struct ofa_rng r;
    ofa_rng_derive(&r, l->seed, (uint64_t)epoch, (uint64_t)pos);
    size_t isz = (size_t)im->h * (size_t)im->w * (size_t)im->c;
    ofa_augment_one(x, im->pixels + (size_t)img * isz, im->h, im->w, im->c, res, &l->cfg.aug,
                    l->lut, scratch, &r);
    *y = im->labels[img];
}

static int resolution_of(const struct ofa_loader *l, int epoch, int index)
{
    int res = l->cfg.res_fn ? l->cfg.res_fn(l->cfg.res_ctx, epoch, index) : l->cfg.resolution;
    if (res == 0)
        res = l->im->h;
    OFA_ASSERT(res >= 1 && res <= l->maxres);
    return res;
}

int ofa_loader_fill(const struct ofa_loader *cl, int epoch, int index, int res, float *x,
                    int *y, int parallel)
{
    struct ofa_loader *l = (struct ofa_loader *)cl; /* only the guarded cache changes */
    OFA_ASSERT(index >= 0 && index < l->nb);
    OFA_ASSERT(res >= 1 && res <= l->maxres);
    int n = batch_len(l, index), B = l->cfg.batch_size;
    int *samples = ofa_xmalloc(sizeof(int) * (size_t)n, "batch samples");
    epoch_samples(l, epoch, index * B, n, samples);
    size_t osz = (size_t)res * (size_t)res * (size_t)l->C;
    size_t ssz = (size_t)l->im->h * (size_t)l->im->w * (size_t)l->C;
    /* A team only pays off for big batches: 128 Fashion-MNIST images take
     * ~0.2 ms serially, less than a team's start-up on a busy machine. */
    if (parallel == 1)
        parallel = (double)n * (double)osz >= (double)PAR_MIN_ELEMS;
    (void)parallel; /* read by the OpenMP pragma only */
#pragma omp parallel if (parallel)
    {
        float *scratch = ofa_xmalloc(ssz * sizeof(float), "augment scratch");
#pragma omp for schedule(static)
        for (int i = 0; i < n; i++)
            make_sample(l, epoch, index * B + i, samples[i], res, x + (size_t)i * osz, y + i,
                        scratch);
        free(scratch);
    }
    free(samples);
    return n;
}

/* Fill a slot (serial: runs on the producer thread). */
static void fill_slot(struct ofa_loader *l, struct slot *s, int epoch, int index, int res,
                      int *samples)

{
    int n = batch_len(l, index), B = l->cfg.batch_size;
    epoch_samples(l, epoch, index * B, n, samples);
    size_t osz = (size_t)res * (size_t)res * (size_t)l->C;
    int from = 0, to = n;
    if (l->cfg.keep_n > 0 && n == B) { /* a full batch: only this process's part */
        from = l->cfg.keep_from;
        to = from + l->cfg.keep_n;
    }
    for (int i = from; i < to; i++)
        make_sample(l, epoch, index * B + i, samples[i], res, s->b.x + (size_t)i * osz,
                    s->b.y + i, l->scratch);
    s->b.n = n;
    s->b.res = res;
    s->b.c = l->C;
}

static void *producer(void *arg)
{
    struct ofa_loader *l = arg;
#ifdef _OPENMP
    /* Any OpenMP region reached from this thread (e.g. a large resize) stays
     * on this thread instead of starting a second team. */
    omp_set_num_threads(1);
#endif
    int *samples = ofa_xmalloc(sizeof(int) * (size_t)l->cfg.batch_size, "batch samples");
    pthread_mutex_lock(&l->mu);
    for (;;) {
        struct slot *s = NULL;
        while (!l->stop) {
            s = NULL;
            if (l->active && l->nb > 0 && l->want >= l->nb) {
                /* Run ahead into the next epoch: when the caller starts it,
                 * its first batches are ready (otherwise they are dropped). */
                l->prod_epoch++;
                l->want = 0;
            }
            if (l->active && l->nb > 0)
                for (int k = 0; k < 2; k++)
                    if (l->slots[k].state == SLOT_FREE)
                        s = &l->slots[k];
            if (s)
                break;
            pthread_cond_wait(&l->cv, &l->mu);
        }
        if (l->stop)
            break;
        int epoch = l->prod_epoch, index = l->want++, gen = l->gen;
        s->state = SLOT_BUSY;
        s->gen = gen;
        s->b.epoch = epoch;
        s->b.index = index;
        pthread_mutex_unlock(&l->mu);
        int res = resolution_of(l, epoch, index);
        fill_slot(l, s, epoch, index, res, samples);
        pthread_mutex_lock(&l->mu);
        s->state = (gen == l->gen) ? SLOT_READY : SLOT_FREE;
        pthread_cond_broadcast(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
    free(samples);
    return NULL;
}

struct ofa_loader *ofa_loader_create(const struct ofa_dataset *ds,
                                     const struct ofa_loader_config *cfg)
{
    OFA_ASSERT(cfg->batch_size >= 1);
    struct ofa_loader *l = ofa_xcalloc(1, sizeof *l, "loader");
    l->ds = ds;
    l->cfg = *cfg;
    switch (cfg->split) {
    case OFA_SPLIT_TRAIN:
        l->im = &ds->train;
        l->idx = ds->train_index;
        l->n = ds->n_train;
        break;
    case OFA_SPLIT_VAL:
        l->im = &ds->train;
        l->idx = ds->val_index;
        l->n = ds->n_val;
        break;
    case OFA_SPLIT_TEST:
        l->im = &ds->test;
        l->n = ds->test.n;
        break;
    case OFA_SPLIT_TRAIN_ALL:
        l->im = &ds->train;
        l->n = ds->train.n;
        break;
    default:
        OFA_ASSERT(!"unknown split");
    }
    l->C = ds->train.c;
    l->nb = cfg->drop_last ? l->n / cfg->batch_size
                           : (l->n + cfg->batch_size - 1) / cfg->batch_size;
    int H = ds->train.h;
    l->maxres = cfg->max_resolution ? cfg->max_resolution
                                    : (cfg->resolution > H ? cfg->resolution : H);
    OFA_ASSERT(cfg->resolution <= l->maxres);
    OFA_ASSERT(cfg->keep_n == 0 || (cfg->keep_from >= 0 && cfg->keep_n > 0 &&
                                     cfg->keep_from + cfg->keep_n <= cfg->batch_size));
    OFA_ASSERT(cfg->aug.crop_pad >= 0 && cfg->aug.crop_pad < 1024);
    OFA_ASSERT(cfg->aug.erase_prob <= 0.0f ||
               (cfg->aug.erase_min > 0.0f && cfg->aug.erase_min <= cfg->aug.erase_max &&
                cfg->aug.erase_max < 1.0f && cfg->aug.erase_ratio > 0.0f &&
                cfg->aug.erase_ratio <= 1.0f));
    l->seed = cfg->seed ^ LOADER_SEED_MIX;
    l->lut = ofa_xmalloc(sizeof(float) * 256 * (size_t)l->C, "normalisation table");
    for (int c = 0; c < l->C; c++)
        for (int v = 0; v < 256; v++) {
            double x = v / 255.0;
            if (cfg->aug.normalize)
                x = (x - ds->mean[c]) / ds->std[c];
            l->lut[c * 256 + v] = (float)x;
        }
    for (int k = 0; k < PERM_CACHE; k++) {
        l->perms[k].epoch = -1;
        l->perms[k].perm = ofa_xmalloc(sizeof(int) * (size_t)(l->n ? l->n : 1), "permutation");
    }
    size_t xsz = (size_t)cfg->batch_size * (size_t)l->maxres * (size_t)l->maxres * (size_t)l->C;
    /* zeroed: their pages touched now, not in the first batch */
    for (int k = 0; k < 2; k++) {
        l->slots[k].b.x = ofa_xzalloc64(xsz * sizeof(float), "batch buffer");
        l->slots[k].b.y = ofa_xzalloc64(sizeof(int) * (size_t)cfg->batch_size, "batch labels");
    }
    l->scratch = ofa_xzalloc64(sizeof(float) * (size_t)H * (size_t)ds->train.w * (size_t)l->C,
                               "augment scratch");
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    l->epoch = 0;
    l->next = l->nb;
    if (cfg->async) {
        if (pthread_create(&l->th, NULL, producer, l) != 0)
            ofa_fatal("cannot start the data loader thread");
        l->have_thread = 1;
    }
    return l;
}

void ofa_loader_free(struct ofa_loader *l)
{
    if (!l)
        return;
    if (l->have_thread) {
        pthread_mutex_lock(&l->mu);
        l->stop = 1;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->th, NULL);
    }
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    for (int k = 0; k < 2; k++) {
        free(l->slots[k].b.x);
        free(l->slots[k].b.y);
    }
    for (int k = 0; k < PERM_CACHE; k++)
        free(l->perms[k].perm);
    free(l->scratch);
    free(l->lut);
    free(l);
}

int ofa_loader_num_batches(const struct ofa_loader *l)
{
    return l->nb;
}

int ofa_loader_num_samples(const struct ofa_loader *l)
{
    return l->n;
}

void ofa_loader_start_epoch(struct ofa_loader *l, int epoch)
{
    pthread_mutex_lock(&l->mu);
    /* Keep what the producer made ahead for exactly this epoch; a restart
     * of the current epoch or a jump elsewhere discards the queue. */
    int keep = l->active && epoch == l->prod_epoch && epoch != l->epoch;
    for (int k = 0; k < 2; k++) {
        struct slot *s = &l->slots[k];
        if (s->state == SLOT_HELD || (s->state == SLOT_READY && !(keep && s->b.epoch == epoch)))
            s->state = SLOT_FREE;
    }
    if (!keep) {
        l->gen++;
        l->prod_epoch = epoch;
        l->want = 0;
    }
    l->active = 1;
    l->epoch = epoch;
    l->next = 0;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

const struct ofa_batch *ofa_loader_next(struct ofa_loader *l)
{
    if (!l->have_thread) {
        if (l->next >= l->nb)
            return NULL;
        int index = l->next++;
        struct slot *s = &l->slots[0];
        int res = resolution_of(l, l->epoch, index);
        s->b.n = ofa_loader_fill(l, l->epoch, index, res, s->b.x, s->b.y, 1);
        s->b.res = res;
        s->b.c = l->C;
        s->b.epoch = l->epoch;
        s->b.index = index;
        return &s->b;
    }
    pthread_mutex_lock(&l->mu);
    for (int k = 0; k < 2; k++)
        if (l->slots[k].state == SLOT_HELD) {
            l->slots[k].state = SLOT_FREE;
            pthread_cond_broadcast(&l->cv);
        }
    if (l->next >= l->nb) {
        pthread_mutex_unlock(&l->mu);
        return NULL;
    }
    int index = l->next++;
    struct slot *s = NULL;
    double t0 = 0.0;
    for (;;) {
        for (int k = 0; k < 2; k++)
            if (l->slots[k].state == SLOT_READY && l->slots[k].b.epoch == l->epoch &&
                l->slots[k].b.index == index)
                s = &l->slots[k];
        if (s)
            break;
        if (t0 == 0.0)
            t0 = ofa_now();
        pthread_cond_wait(&l->cv, &l->mu);
    }
    if (t0 != 0.0) {
        l->wait_s += ofa_now() - t0;
        l->wait_n++;
    }
    s->state = SLOT_HELD;
    pthread_mutex_unlock(&l->mu);
    return &s->b;
}

double ofa_loader_wait_seconds(const struct ofa_loader *l)
{
    return l->wait_s;
}

long ofa_loader_wait_count(const struct ofa_loader *l)
{
    return l->wait_n;
}
