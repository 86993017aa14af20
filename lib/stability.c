/* stability.c: device variants, the instability measure and the stability
 * fine-tuning pass of ofa-export (stability.h; Cidon et al., MLSys 2021).
 *
 * Variant pipeline (ofa_variant_apply): JPEG round trip on the stored uint8
 * image; then, only when the variant has a tone curve, blur or noise, [0,1]
 * floats through those; then the data set's normalisation (the loader's
 * affine per-channel map) and the resize to the model's resolution with the
 * variant's interpolation. Normalising before resizing is what the loader
 * does (the map is affine and every interpolation's weights sum to one, so
 * the order does not change the values beyond rounding); doing the same
 * here makes the clean pipeline bit-identical to the evaluator's.
 *
 * Fine-tuning (ofa_stability_finetune), decisions:
 * - Data: the first export.subset images of the training split, reshuffled
 *   every epoch from (seed, epoch), without the recipe's augmentation: each
 *   image is seen clean and through a device variant drawn for it, which
 *   needs the stored image, and the variants are the augmentation of this
 *   short pass. Batches drop the last partial one.
 * - Variants per image (export.variant_draw): one of the fp32 variants
 *   drawn at random; or the worst of them: every fp32 variant of the batch
 *   goes through the network in inference mode (running BN statistics, the
 *   fake-quantized weights and activations of the step), and each image
 *   takes the variant whose prediction has the largest KL from its clean
 *   one (instability counts an image whose label moves under any variant,
 *   so the variant that moves it most is the one to train on: worst-of-k, as
 *   in Engstrom et al., ICML 2019); or all of them, in one batch of
 *   (1 + variants) x batch_size, the stability term their mean KL (so that
 *   alpha weighs each variant as the random draw does on average).
 * - export.target original or largest: the clean term is distillation
 *   (temperature 1) instead of the cross-entropy on the labels, from the
 *   network as it came into the pass or from the supernet's largest subnet
 *   (the caller's teacher, at its own resolution): the subnet was trained
 *   from the largest subnet's soft outputs, and hard labels alone pull a
 *   small subnet away from what it learnt that way. The teacher is fixed
 *   and sees each training image clean, in fp32 and inference mode, so its
 *   probabilities are computed once, before the first step.
 * - export.detach_clean: the KL term's gradient on the clean logits is
 *   dropped, so that p(x) is a fixed target the variants are pulled to and
 *   the clean prediction moves for the cross-entropy only.
 * - Loss: CE(f(x), y) (no label smoothing) + alpha * KL(p(x) || p(v(x))).
 *   The clean images and their variants go through the network as one batch
 *   of 2 x batch_size (all: more; one forward, one backward: the gradient
 *   reaches both branches), so that BN's batch statistics are shared: with a
 *   separate batch per branch, each branch would be normalised by its own
 *   statistics, which hides a variant's global shift (gamma, contrast) from
 *   the loss while evaluation, with one set of running statistics, sees it.
 *   Then one SGD step (Nesterov momentum 0.9, export.lr cosine to 0 without
 *   warm-up, export.weight_decay in the form of train.wd_decoupled,
 *   train.clip_norm). BN in training mode, no dropout.
 * - Fake quantization (export.fake_quant): the inputs, every conv and linear
 *   weight per output channel (int8 symmetric, as the exporter quantizes
 *   them: BN folding scales each output channel, which leaves the per-channel
 *   integers unchanged) and every block output per tensor (int8 asymmetric,
 *   range from an EMA of batch min/max, through the supernet's act_hook).
 *   Straight-through: the gradient computed with the quantized values
 *   updates the float weights, kept aside during the step.
 * - At the end, BN statistics are recalibrated on the evaluator's fixed
 *   calibration images (train.calib_images, clean pipeline).
 * Everything random is a pure function of export.seed and the image's
 * position, so a run is deterministic for a given thread count.
 */
#include <config.h>

#include "stability.h"

#include "ops.h"
#include "optim.h"
#include "rng.h"
#include "supernet.h"
#include "train.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifndef _OPENMP
#pragma GCC diagnostic ignored "-Wunknown-pragmas"
#endif

/* Streams derived from export.seed. */
enum { TAG_ORDER = 1, TAG_DRAW = 2, TAG_MEASURE = 3 };

#define MEASURE_BATCH 256
#define PROGRESS_EVERY 20
#define ACT_EMA 0.9f /* weight of the running range in the activation EMA */

/* ---- variants --------------------------------------------------------------------- */

/* The normalisation table exactly as data_loader.c builds it: lut[c][v] =
 * (v / 255 - mean_c) / std_c in double, rounded once to float (identity
 * scale without normalisation). */
static void make_lut(float *lut, const struct ofa_dataset *ds, int C, int normalize)
{
    for (int c = 0; c < C; c++)
        for (int v = 0; v < 256; v++) {
            double x = v / 255.0;
            if (normalize)
                x = (x - ds->mean[c]) / ds->std[c];
            lut[c * 256 + v] = (float)x;
        }
}

static int has_float_stage(const struct ofa_variant_cfg *v)
{
    return v->gamma != 1.0f || v->brightness != 0.0f || v->contrast != 1.0f ||
           v->blur_sigma > 0.0f || v->noise_std > 0.0f;
}

/* Variants that change nothing on images of side H at resolution res. */
static int is_clean(const struct ofa_variant_cfg *v, int H, int W, int res)
{
    return v->jpeg_quality == 0 && !has_float_stage(v) &&
           (v->interp == OFA_INTERP_BILINEAR || (res == H && res == W));
}

static int check_channels(const struct ofa_variant_cfg *v, int C, struct ofa_error *err)
{
    if (v && v->jpeg_quality > 0 && C != 1 && C != 3)
        return ofa_error_set(err, NULL, 0, "variant %s: the JPEG round trip needs grey or RGB "
                             "images, the data set has %d channels", v->name, C);
    return 0;
}

int ofa_variant_apply(float *out, const struct ofa_variant_cfg *v, const uint8_t *img, int H,
                      int W, int C, int res, const float *lut, float *scratch, uint64_t seed,
                      struct ofa_error *err)
{
    OFA_ASSERT(H >= 1 && W >= 1 && C >= 1 && C <= 4 && res >= 1);
    const size_t hw = (size_t)H * W * C, rr = (size_t)res * res * C;
    float *a = scratch, *b = scratch + (hw > rr ? hw : rr);
    const int same = res == H && res == W;
    const int interp = v ? v->interp : OFA_INTERP_BILINEAR;
    const uint8_t *src = img;
    if (v && v->jpeg_quality > 0) {
        if (check_channels(v, C, err))
            return -1;
        uint8_t *j = (uint8_t *)b; /* hw bytes fit in hw floats */
        if (ofa_variant_jpeg(j, img, H, W, C, v->jpeg_quality, err))
            return -1;
        src = j;
    }
    float *cur;
    if (v && has_float_stage(v)) {
        for (size_t i = 0; i < hw; i++)
            a[i] = (float)(src[i] / 255.0);
        cur = a;
        if (v->gamma != 1.0f || v->brightness != 0.0f || v->contrast != 1.0f)
            ofa_variant_tone(cur, (long)hw, v->gamma, v->brightness, v->contrast);
        if (v->blur_sigma > 0.0f) {
            ofa_variant_blur(b, a, H, W, C, v->blur_sigma);
            cur = b;
        }
        if (v->noise_std > 0.0f)
            ofa_variant_noise(cur, (long)hw, v->noise_std, seed, 1);
        /* lut[c][v] = lut[c][0] + v/255 * (lut[c][255] - lut[c][0]) */
        float *dst = same ? out : cur;
        for (size_t i = 0; i < hw; i += (size_t)C)
            for (int c = 0; c < C; c++) {
                const float lo = lut[c * 256], span = lut[c * 256 + 255] - lo;
                dst[i + c] = lo + cur[i + c] * span;
            }
    } else {
        /* Exactly the loader's per-sample step without augmentation. */
        cur = same ? out : a;
        for (size_t i = 0; i < hw; i += (size_t)C)
            for (int c = 0; c < C; c++)
                cur[i + c] = lut[c * 256 + src[i + c]];
    }
    if (!same)
        ofa_variant_resize(out, cur, H, W, res, res, C, interp);
    return 0;
}

/* The seed of the sensor noise of image `index` under variant v for a pass
 * (tag) of the given seed. */
static uint64_t noise_seed(long seed, int tag, int v, long index)
{
    struct ofa_rng g;
    ofa_rng_derive(&g, (uint64_t)seed, (uint64_t)tag * 1024 + (uint64_t)v, (uint64_t)index);
    return ofa_rng_u64(&g);
}

/* n images of im starting at `first` (idx: their indices, NULL for
 * first..first+n-1) through variant v (NULL: clean) into x [n,res,res,C].
 * Images run in parallel; per-image results do not depend on the thread
 * count. seeds[i]: image i's noise seed. */
static int apply_batch(float *x, const struct ofa_variant_cfg *v, const struct ofa_images *im,
                       const int *idx, int first, int n, int res, const float *lut,
                       const uint64_t *seeds, struct ofa_error *err)
{
    const int H = im->h, W = im->w, C = im->c;
    const size_t isz = (size_t)H * W * C, osz = (size_t)res * res * C;
    const size_t ssz = 2 * (isz > osz ? isz : osz);
    if (check_channels(v, C, err))
        return -1;
    int failed = 0;
#pragma omp parallel
    {
        float *scratch = ofa_xmalloc(ssz * sizeof(float), "variant scratch");
        struct ofa_error e;
#pragma omp for schedule(static)
        for (int i = 0; i < n; i++) {
            int img = idx ? idx[i] : first + i;
            if (ofa_variant_apply(x + (size_t)i * osz, v, im->pixels + (size_t)img * isz, H, W,
                                  C, res, lut, scratch, seeds ? seeds[i] : 0, &e)) {
#pragma omp critical(ofa_stability_err)
                {
                    if (!failed && err)
                        *err = e;
                    failed = 1;
                }
            }
        }
        free(scratch);
    }
    return failed ? -1 : 0;
}

/* ---- instability ------------------------------------------------------------------- */

int ofa_instability_measure(struct ofa_instability *out, const struct ofa_dataset *ds,
                            const struct ofa_recipe *r, int res, int n, ofa_predict_fn predict,
                            void *ctx, struct ofa_error *err)
{
    memset(out, 0, sizeof *out);
    const struct ofa_images *im = &ds->test;
    if (im->n == 0)
        return ofa_error_set(err, NULL, 0, "the data set has no test images to measure "
                             "instability on");
    OFA_ASSERT(res >= 1 && predict);
    if (n <= 0 || n > im->n)
        n = im->n;
    const int C = im->c, nv = r->n_variants;
    for (int v = 0; v < nv; v++)
        if (check_channels(&r->variants[v], C, err))
            return -1;
    const size_t osz = (size_t)res * res * C;
    float *lut = ofa_xmalloc(sizeof(float) * 256 * (size_t)C, "normalisation table");
    make_lut(lut, ds, C, r->augment.normalize);
    float *xc = ofa_xmalloc(ofa_mul_size(MEASURE_BATCH * osz, sizeof(float)), "clean batch");
    float *xv = ofa_xmalloc(ofa_mul_size(MEASURE_BATCH * osz, sizeof(float)), "variant batch");
    int *ref = ofa_xmalloc(MEASURE_BATCH * sizeof(int), "labels");
    int *lab = ofa_xmalloc(MEASURE_BATCH * sizeof(int), "labels");
    unsigned char *same = ofa_xmalloc(MEASURE_BATCH, "flags"), *right = ofa_xmalloc(MEASURE_BATCH, "flags"),
                  *wrong = ofa_xmalloc(MEASURE_BATCH, "flags");
    uint64_t *seeds = ofa_xmalloc(MEASURE_BATCH * sizeof(uint64_t), "noise seeds");
    long correct_clean = 0, correct[OFA_MAX_VARIANTS] = {0}, flips[OFA_MAX_VARIANTS] = {0};
    long unstable = 0, unstable_label = 0;
    int rc = 0;
    for (int start = 0; start < n && rc == 0; start += MEASURE_BATCH) {
        const int b = n - start < MEASURE_BATCH ? n - start : MEASURE_BATCH;
        const int *y = im->labels + start;
        rc = apply_batch(xc, NULL, im, NULL, start, b, res, lut, NULL, err);
        OFA_ASSERT(rc == 0); /* the clean pipeline cannot fail */
        predict(ctx, 0, xc, b, ref);
        for (int i = 0; i < b; i++) {
            same[i] = 1;
            right[i] = ref[i] == y[i];
            wrong[i] = ref[i] != y[i];
            correct_clean += ref[i] == y[i];
        }
        for (int v = 0; v < nv && rc == 0; v++) {
            const struct ofa_variant_cfg *vc = &r->variants[v];
            const float *x = xc;
            if (!is_clean(vc, im->h, im->w, res)) {
                for (int i = 0; i < b; i++)
                    seeds[i] = noise_seed(r->export.seed, TAG_MEASURE, v, start + i);
                if ((rc = apply_batch(xv, vc, im, NULL, start, b, res, lut, seeds, err)))
                    break;
                x = xv;
            }
            predict(ctx, vc->int8, x, b, lab);
            for (int i = 0; i < b; i++) {
                same[i] &= lab[i] == ref[i];
                right[i] |= lab[i] == y[i];
                wrong[i] |= lab[i] != y[i];
                correct[v] += lab[i] == y[i];
                flips[v] += lab[i] != ref[i];
            }
        }
        for (int i = 0; i < b; i++) {
            unstable += !same[i];
            unstable_label += right[i] && wrong[i];
        }
    }
    if (rc == 0) {
        out->n_images = n;
        out->n_variants = nv;
        out->instability = (double)unstable / n;
        out->instability_label = (double)unstable_label / n;
        out->acc_clean = (double)correct_clean / n;
        for (int v = 0; v < nv; v++) {
            out->acc[v] = (double)correct[v] / n;
            out->flip[v] = (double)flips[v] / n;
        }
    }
    free(lut), free(xc), free(xv), free(ref), free(lab), free(same), free(right), free(wrong);
    free(seeds);
    return rc;
}

/* ---- the stability loss -------------------------------------------------------------- */

/* z [K] -> lz [K] = log softmax(z), in double. */
static void log_softmax(double *lz, const float *z, int K)
{
    double m = z[0];
    for (int k = 1; k < K; k++)
        if (z[k] > m)
            m = z[k];
    double s = 0;
    for (int k = 0; k < K; k++)
        s += exp((double)z[k] - m);
    double lse = m + log(s);
    for (int k = 0; k < K; k++)
        lz[k] = (double)z[k] - lse;
}

double ofa_stability_kl(const float *a, const float *b, int N, int K, float *da, float *db,
                        float scale)
{
    OFA_ASSERT(N >= 1 && K >= 1);
    OFA_ASSERT((da == NULL) == (db == NULL));
    double *la = ofa_xmalloc(2 * (size_t)K * sizeof(double), "KL rows"), *lb = la + K;
    double total = 0;
    const double g = (double)scale / N;
    for (int n = 0; n < N; n++) {
        const float *ra = a + (size_t)n * K, *rb = b + (size_t)n * K;
        log_softmax(la, ra, K);
        log_softmax(lb, rb, K);
        double kl = 0;
        for (int k = 0; k < K; k++)
            kl += exp(la[k]) * (la[k] - lb[k]);
        total += kl;
        if (!da)
            continue;
        float *ga = da + (size_t)n * K, *gb = db + (size_t)n * K;
        for (int k = 0; k < K; k++) {
            double p = exp(la[k]), q = exp(lb[k]);
            ga[k] += (float)(g * p * ((la[k] - lb[k]) - kl));
            gb[k] += (float)(g * (q - p));
        }
    }
    free(la);
    return total / N;
}

/* ---- fake quantization --------------------------------------------------------------- */

/* The conv and linear weights of a standalone network, with their layout:
 * dw: [K][K][C] (output channel last), else [Cout][...] (output channel
 * first). */
struct fq_tensor {
    int idx, dw;
};

static int list_weights(const struct ofa_supernet *net, struct fq_tensor *t, int cap)
{
    int n = 0;
#define ADD(i, d)                          \
    do {                                   \
        OFA_ASSERT(n < cap && (i) >= 0);   \
        t[n].idx = (i), t[n].dw = (d), n++; \
    } while (0)
    ADD(net->stem_w, 0);
    ADD(net->first_dw, 1);
    ADD(net->first_pw, 0);
    for (int s = 0; s < net->sp.n_stages; s++)
        for (int b = 0; b < net->sub.depth[s]; b++) {
            const struct ofa_block_idx *bi = &net->blk[s][b];
            ADD(bi->exp_w, 0);
            ADD(bi->dw_w, 1);
            if (bi->se) {
                ADD(bi->se_w1, 0);
                ADD(bi->se_w2, 0);
            }
            ADD(bi->proj_w, 0);
        }
    ADD(net->head_w, 0);
    ADD(net->fc_w, 0);
#undef ADD
    return n;
}

/* Symmetric int8 per output channel: w = clamp(round(w / s), -127, 127) * s
 * with s = max|w| / 127 over the channel. src [nout][per] (stride 1 within a
 * channel) or, for depthwise, [per][nout] (stride nout). */
static void fq_weights(float *dst, const float *src, int nout, int per, int dw)
{
    const size_t step = dw ? (size_t)nout : 1, chan = dw ? 1 : (size_t)per;
    for (int o = 0; o < nout; o++) {
        const float *s = src + (size_t)o * chan;
        float *d = dst + (size_t)o * chan;
        float m = 0.0f;
        for (int i = 0; i < per; i++)
            m = fmaxf(m, fabsf(s[i * step]));
        if (m == 0.0f) {
            for (int i = 0; i < per; i++)
                d[i * step] = 0.0f;
            continue;
        }
        const float scale = m / 127.0f;
        for (int i = 0; i < per; i++) {
            float q = roundf(s[i * step] / scale);
            q = q < -127.0f ? -127.0f : q > 127.0f ? 127.0f : q;
            d[i * step] = q * scale;
        }
    }
}

/* Per-tensor asymmetric int8 on [lo, hi] (widened to contain 0, as int8
 * activations must represent 0 exactly): x = (clamp(round(x / s) + zp) - zp)
 * * s with s = (hi - lo) / 255. */
static void fq_tensor(float *x, long n, float lo, float hi)
{
    lo = fminf(lo, 0.0f);
    hi = fmaxf(hi, 0.0f);
    if (!(hi > lo))
        return;
    const float scale = (hi - lo) / 255.0f;
    float zp = roundf(-128.0f - lo / scale);
    zp = zp < -128.0f ? -128.0f : zp > 127.0f ? 127.0f : zp;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (long i = 0; i < n; i++) {
        float q = roundf(x[i] / scale) + zp;
        q = q < -128.0f ? -128.0f : q > 127.0f ? 127.0f : q;
        x[i] = (q - zp) * scale;
    }
}

#define MAX_SITES (3 + OFA_MAX_STAGES * OFA_MAX_DEPTH)

/* Running ranges of the block outputs (supernet act_hook). */
struct act_fq {
    float lo[MAX_SITES], hi[MAX_SITES];
    int seen[MAX_SITES];
};

static void act_fq_hook(void *ctx, int site, float *x, long n, int mode)
{
    struct act_fq *q = ctx;
    OFA_ASSERT(site >= 0 && site < MAX_SITES && n > 0);
    if (mode == OFA_MODE_TRAIN) {
        float mn = x[0], mx = x[0];
#pragma omp parallel for reduction(min : mn) reduction(max : mx) schedule(static) if (n > 65536)
        for (long i = 0; i < n; i++) {
            mn = x[i] < mn ? x[i] : mn;
            mx = x[i] > mx ? x[i] : mx;
        }
        if (!q->seen[site]) {
            q->lo[site] = mn, q->hi[site] = mx, q->seen[site] = 1;
        } else {
            q->lo[site] = ACT_EMA * q->lo[site] + (1.0f - ACT_EMA) * mn;
            q->hi[site] = ACT_EMA * q->hi[site] + (1.0f - ACT_EMA) * mx;
        }
    }
    if (q->seen[site])
        fq_tensor(x, n, q->lo[site], q->hi[site]);
}

/* ---- fine-tuning ---------------------------------------------------------------------- */

static const char *const draw_desc[] = {
    [OFA_DRAW_RANDOM] = "one at random", [OFA_DRAW_WORST] = "the worst", [OFA_DRAW_ALL] = "all"};
static const char *const target_desc[] = {
    [OFA_TARGET_LABELS] = "the labels", [OFA_TARGET_ORIGINAL] = "the subnet as it came",
    [OFA_TARGET_LARGEST] = "the largest subnet"};

struct tuner {
    struct ofa_supernet *net;
    const struct ofa_dataset *ds;
    const struct ofa_export_cfg *e;
    struct ofa_exec ex;
    int n_train, B, res, C, K;
    int fp[OFA_MAX_VARIANTS], n_fp; /* the fp32 variants */
    int draw;    /* export.variant_draw */
    int slots;   /* variant batches make_batch fills after the clean one */
    int trained; /* variant batches of the training forward: all: slots, else 1 */
    float *lut, *master;
    float *x, *dl;     /* [1 + slots][B] images, [1 + trained][B] logit gradients */
    float *probs, *lclean; /* CE probabilities; worst: clean logits */
    float *dsink;          /* detach_clean: the discarded clean-branch KL gradient */
    float *tprobs_all;     /* distillation: the teacher's probabilities [n_train][K] */
    float *tprobs;         /* ... of the batch's images */
    int *tsel;             /* the batch's images' rows of tprobs_all */
    double *kl_best;       /* worst: each image's largest KL so far */
    int *y, *perm, *idx, *pick; /* pick: random and worst: each image's variant */
    uint64_t *seeds;
    struct fq_tensor w[4 + 5 * OFA_MAX_STAGES * OFA_MAX_DEPTH];
    int n_w;
    float in_lo, in_hi; /* input range for fake quantization */
    struct act_fq act;
};

static void tuner_free(struct tuner *T)
{
    ofa_exec_free(&T->ex);
    free(T->lut), free(T->x), free(T->probs), free(T->dl), free(T->master);
    free(T->lclean), free(T->kl_best), free(T->dsink), free(T->tprobs_all), free(T->tprobs);
    free(T->tsel);
    free(T->y), free(T->perm), free(T->idx), free(T->pick);
    free(T->seeds);
}

/* Keep the float weights in master, put their fake-quantized values in
 * place (or, undo: put the float weights back). */
static void swap_weights(struct tuner *T, int quantize)
{
    struct ofa_params *p = &T->net->p;
    size_t off = 0;
    for (int i = 0; i < T->n_w; i++) {
        const struct ofa_param *t = &p->t[T->w[i].idx];
        float *w = ofa_param_data(p, T->w[i].idx);
        if (quantize) {
            memcpy(T->master + off, w, t->numel * sizeof(float));
            int nout = T->w[i].dw ? t->shape[t->ndim - 1] : t->shape[0];
            fq_weights(w, T->master + off, nout, (int)(t->numel / (size_t)nout), T->w[i].dw);
        } else {
            memcpy(w, T->master + off, t->numel * sizeof(float));
        }
        off += t->numel;
    }
}

/* Batch `step` of `epoch`: the clean images first in x; then, for the
 * random draw, each through its drawn variant; for the worst and all draws,
 * the batch through every fp32 variant, one after the other. */
static int make_batch(struct tuner *T, const struct ofa_recipe *r, int epoch, int step,
                      struct ofa_error *err)
{
    const struct ofa_images *im = &T->ds->train;
    for (int i = 0; i < T->B; i++) {
        long pos = (long)step * T->B + i;
        T->idx[i] = T->ds->train_index[T->perm[pos]];
        if (T->tsel)
            T->tsel[i] = T->perm[pos];
        T->y[i] = im->labels[T->idx[i]];
        struct ofa_rng g;
        ofa_rng_derive(&g, (uint64_t)T->e->seed, TAG_DRAW,
                       (uint64_t)epoch * (uint64_t)T->n_train + (uint64_t)pos);
        T->pick[i] = T->n_fp ? T->fp[ofa_rng_below(&g, (uint32_t)T->n_fp)] : -1;
        T->seeds[i] = ofa_rng_u64(&g);
    }
    const size_t osz = (size_t)T->res * T->res * T->C;
    float *xc = T->x, *xv = T->x + (size_t)T->B * osz;
    if (apply_batch(xc, NULL, im, T->idx, 0, T->B, T->res, T->lut, NULL, err))
        return -1;
    /* Each image through its own variant (or none: then v(x) = x), with its
     * own noise seed; or through each fp32 variant. */
    const int each = T->draw != OFA_DRAW_RANDOM, nv = T->slots;
    if (!each)
        memcpy(xv, xc, (size_t)T->B * osz * sizeof(float));
    int failed = 0;
    const int H = im->h, W = im->w, C = im->c;
    const size_t isz = (size_t)H * W * C, ssz = 2 * (isz > osz ? isz : osz);
#pragma omp parallel
    {
        float *scratch = ofa_xmalloc(ssz * sizeof(float), "variant scratch");
        struct ofa_error e;
#pragma omp for schedule(static)
        for (int k = 0; k < nv * T->B; k++) {
            const int j = k / T->B, i = k % T->B;
            if (!each && T->pick[i] < 0)
                continue;
            const struct ofa_variant_cfg *v = &r->variants[each ? T->fp[j] : T->pick[i]];
            if (ofa_variant_apply(xv + (size_t)k * osz, v, im->pixels + (size_t)T->idx[i] * isz,
                                  H, W, C, T->res, T->lut, scratch, T->seeds[i], &e)) {
#pragma omp critical(ofa_stability_err)
                {
                    if (!failed && err)
                        *err = e;
                    failed = 1;
                }
            }
        }
        free(scratch);
    }
    return failed ? -1 : 0;
}

/* The worst draw: each image's fp32 variant whose inference-mode
 * prediction is furthest, by KL, from the clean image's, into the first
 * variant batch of x and pick. Ties go to the first variant. */
static void pick_worst(struct tuner *T)
{
    struct ofa_supernet *net = T->net;
    const int B = T->B, K = T->K;
    const size_t osz = (size_t)T->res * T->res * T->C;
    const float *l = ofa_supernet_forward(net, &T->ex, &net->sub, T->x, B, OFA_MODE_EVAL, 0.0f,
                                          NULL);
    memcpy(T->lclean, l, (size_t)B * K * sizeof(float));
    double *best = T->kl_best;
    for (int j = 0; j < T->n_fp; j++) {
        const float *xj = T->x + (size_t)(1 + j) * B * osz;
        l = ofa_supernet_forward(net, &T->ex, &net->sub, xj, B, OFA_MODE_EVAL, 0.0f, NULL);
        for (int i = 0; i < B; i++) {
            double kl = ofa_stability_kl(T->lclean + (size_t)i * K, l + (size_t)i * K, 1, K,
                                         NULL, NULL, 1.0f);
            if (j == 0 || kl > best[i]) {
                best[i] = kl;
                T->pick[i] = T->fp[j];
                if (j > 0) /* variant 0's image i is no longer needed */
                    memcpy(T->x + (size_t)(B + i) * osz, xj + (size_t)i * osz,
                           osz * sizeof(float));
            }
        }
    }
}

/* One optimizer step on the current batch; ce and kl (the mean over the
 * trained variant batches) receive the losses. Returns -1 when a loss or
 * the gradient is not finite. */
static int tune_step(struct tuner *T, const struct ofa_sgd *sgd, float lr, double *ce,
                     double *kl)
{
    struct ofa_supernet *net = T->net;
    const int B = T->B, K = T->K;
    const long osz = (long)T->res * T->res * T->C;
    const int nb = 1 + T->trained;
    if (T->e->fake_quant) {
        fq_tensor(T->x, (1L + T->slots) * B * osz, T->in_lo, T->in_hi);
        swap_weights(T, 1);
    }
    if (T->draw == OFA_DRAW_WORST)
        pick_worst(T);
    if (T->tprobs)
        for (int i = 0; i < B; i++)
            memcpy(T->tprobs + (size_t)i * K, T->tprobs_all + (size_t)T->tsel[i] * K,
                   (size_t)K * sizeof(float));
    ofa_params_zero_grad(&net->p);
    const float *l = ofa_supernet_forward(net, &T->ex, &net->sub, T->x, nb * B, OFA_MODE_TRAIN,
                                          0.0f, NULL);
    memset(T->dl, 0, (size_t)nb * B * K * sizeof(float));
    if (T->dsink)
        memset(T->dsink, 0, (size_t)B * K * sizeof(float));
    if (T->tprobs) {
        *ce = ofa_kd_forward(T->probs, l, T->tprobs, B, K, 1.0f);
        ofa_kd_backward(T->dl, T->probs, T->tprobs, B, K, 1.0f, 1.0f);
    } else {
        *ce = ofa_ce_forward(T->probs, l, T->y, B, K, 0.0f);
        ofa_ce_backward(T->dl, T->probs, T->y, B, K, 0.0f, 1.0f);
    }
    *kl = 0;
    for (int j = 1; j < nb; j++)
        *kl += ofa_stability_kl(l, l + (size_t)j * B * K, B, K, T->dsink ? T->dsink : T->dl,
                                T->dl + (size_t)j * B * K, T->e->alpha / (float)T->trained) /
               T->trained;
    int ok = isfinite(*ce) && isfinite(*kl);
    if (ok)
        ofa_supernet_backward(net, &T->ex, T->dl);
    if (T->e->fake_quant)
        swap_weights(T, 0);
    if (!ok)
        return -1;
    return isfinite(ofa_sgd_step(sgd, &net->p, lr)) ? 0 : -1;
}

/* The teacher's probabilities on the n_train training images of the pass,
 * clean, at the teacher's resolution, in inference mode. */
static void teacher_outputs(struct tuner *T, struct ofa_supernet *teacher)
{
    const struct ofa_images *im = &T->ds->train;
    const int B = T->B, K = T->K, res = teacher->sub.res;
    T->tprobs_all = ofa_xmalloc(ofa_mul_size((size_t)T->n_train * K, sizeof(float)),
                                "teacher probabilities");
    float *x = ofa_xmalloc(ofa_mul_size((size_t)B * res * res, (size_t)T->C * sizeof(float)),
                           "teacher batch");
    int *idx = ofa_xmalloc((size_t)B * sizeof(int), "image indices");
    struct ofa_exec ex;
    ofa_exec_init(&ex, teacher, B);
    for (int start = 0; start < T->n_train; start += B) {
        const int b = T->n_train - start < B ? T->n_train - start : B;
        for (int i = 0; i < b; i++)
            idx[i] = T->ds->train_index[start + i];
        int rc = apply_batch(x, NULL, im, idx, 0, b, res, T->lut, NULL, NULL);
        OFA_ASSERT(rc == 0); /* the clean pipeline cannot fail */
        ofa_softmax_forward(T->tprobs_all + (size_t)start * K,
                            ofa_supernet_forward(teacher, &ex, &teacher->sub, x, b,
                                                 OFA_MODE_EVAL, 0.0f, NULL),
                            b, K, 1.0f);
    }
    ofa_exec_free(&ex);
    free(x), free(idx);
}

/* BN statistics of the subnet from the evaluator's calibration batches. */
static void recalibrate(struct ofa_supernet *net, const struct ofa_dataset *ds,
                        const struct ofa_recipe *r)
{
    struct ofa_evaluator ev;
    ofa_evaluator_init(&ev, ds, r, OFA_SPLIT_VAL, (uint64_t)r->train.seed);
    struct ofa_exec ex;
    ofa_exec_init(&ex, net, ev.calib_batch);
    ofa_supernet_calib_begin(net);
    for (int b = 0; b < ev.calib_batches; b++) {
        int n = ofa_loader_fill(ev.calib, 0, b, net->sub.res, ev.x, ev.y, 1);
        ofa_supernet_forward(net, &ex, &net->sub, ev.x, n, OFA_MODE_CALIB, 0.0f, NULL);
    }
    ofa_supernet_calib_end(net, &net->sub);
    ofa_exec_free(&ex);
    ofa_evaluator_free(&ev);
}

int ofa_stability_finetune(struct ofa_supernet *net, struct ofa_supernet *teacher,
                           const struct ofa_dataset *ds, const struct ofa_recipe *r, int quiet,
                           struct ofa_stability_stats *stats, struct ofa_error *err)
{
    OFA_ASSERT(net->standalone);
    OFA_ASSERT((teacher != NULL) == (r->export.target == OFA_TARGET_LARGEST));
    const struct ofa_export_cfg *e = &r->export;
    struct ofa_stability_stats st;
    memset(&st, 0, sizeof st);
    if (stats)
        *stats = st;
    if (e->epochs <= 0)
        return 0;
    const struct ofa_images *im = &ds->train;
    if (im->c != net->sp.in_channels || ds->num_classes != net->sp.num_classes)
        return ofa_error_set(err, NULL, 0, "the data set (%d channels, %d classes) does not fit "
                             "the network (%d, %d)", im->c, ds->num_classes,
                             net->sp.in_channels, net->sp.num_classes);
    struct tuner T;
    memset(&T, 0, sizeof T);
    T.net = net;
    T.ds = ds;
    T.e = e;
    T.n_train = ds->n_train;
    if (e->subset > 0 && e->subset < T.n_train)
        T.n_train = e->subset;
    if (T.n_train < e->batch_size)
        return ofa_error_set(err, NULL, 0, "%d training images are fewer than one batch of the "
                             "stability pass (export.batch_size = %d)", T.n_train,
                             e->batch_size);
    for (int v = 0; v < r->n_variants; v++)
        if (!r->variants[v].int8) {
            if (check_channels(&r->variants[v], im->c, err))
                return -1;
            T.fp[T.n_fp++] = v;
        }
    T.B = e->batch_size;
    T.res = net->sub.res;
    T.C = im->c;
    T.K = net->sp.num_classes;
    /* Without an fp32 variant, every draw is the random one with v(x) = x. */
    T.draw = T.n_fp ? e->variant_draw : OFA_DRAW_RANDOM;
    T.slots = T.draw == OFA_DRAW_RANDOM ? 1 : T.n_fp;
    T.trained = T.draw == OFA_DRAW_ALL ? T.n_fp : 1;
    const size_t osz = (size_t)T.res * T.res * T.C;
    const long spe = T.n_train / T.B, total = spe * e->epochs;
    T.lut = ofa_xmalloc(sizeof(float) * 256 * (size_t)T.C, "normalisation table");
    make_lut(T.lut, ds, T.C, r->augment.normalize);
    T.in_lo = T.lut[0], T.in_hi = T.lut[255];
    for (int c = 1; c < T.C; c++) {
        T.in_lo = fminf(T.in_lo, T.lut[c * 256]);
        T.in_hi = fmaxf(T.in_hi, T.lut[c * 256 + 255]);
    }
    T.x = ofa_xmalloc(ofa_mul_size((1 + (size_t)T.slots) * T.B * osz, sizeof(float)), "batch");
    T.probs = ofa_xmalloc((size_t)T.B * T.K * sizeof(float), "probabilities");
    if (e->target != OFA_TARGET_LABELS) {
        T.tprobs = ofa_xmalloc((size_t)T.B * T.K * sizeof(float), "teacher probabilities");
        T.tsel = ofa_xmalloc((size_t)T.B * sizeof(int), "teacher rows");
    }
    if (e->detach_clean)
        T.dsink = ofa_xmalloc((size_t)T.B * T.K * sizeof(float), "discarded gradient");
    T.dl = ofa_xmalloc((1 + (size_t)T.trained) * T.B * T.K * sizeof(float), "logit gradients");
    T.y = ofa_xmalloc((size_t)T.B * sizeof(int), "labels");
    T.idx = ofa_xmalloc((size_t)T.B * sizeof(int), "image indices");
    T.pick = ofa_xmalloc((size_t)T.B * sizeof(int), "variant draws");
    T.seeds = ofa_xmalloc((size_t)T.B * sizeof(uint64_t), "noise seeds");
    T.perm = ofa_xmalloc((size_t)T.n_train * sizeof(int), "image order");
    if (T.draw == OFA_DRAW_WORST) {
        T.lclean = ofa_xmalloc((size_t)T.B * T.K * sizeof(float), "clean logits");
        T.kl_best = ofa_xmalloc((size_t)T.B * sizeof(double), "variant KL");
    }
    T.n_w = list_weights(net, T.w, (int)(sizeof T.w / sizeof T.w[0]));
    size_t nmaster = 0;
    for (int i = 0; i < T.n_w; i++)
        nmaster += net->p.t[T.w[i].idx].numel;
    T.master = ofa_xmalloc(nmaster * sizeof(float), "float weights");
    ofa_exec_init(&T.ex, net, (1 + T.trained) * T.B);
    struct ofa_sgd sgd = {0.9f, 1, e->weight_decay,
                          r->train.wd_decoupled ? OFA_WD_DECOUPLED : OFA_WD_L2,
                          r->train.clip_norm};
    memset(net->p.mom, 0, net->p.total * sizeof(float));
    if (!quiet)
        fprintf(stderr, "ofa-export: stability fine-tuning: %d epoch%s of %ld steps (batch %d, "
                "%d images), alpha %g, %d fp32 variant%s (%s per image), fake quantization %s, "
                "clean term %s\n",
                e->epochs, e->epochs == 1 ? "" : "s", spe, T.B, T.n_train, (double)e->alpha,
                T.n_fp, T.n_fp == 1 ? "" : "s", draw_desc[T.draw], e->fake_quant ? "on" : "off",
                target_desc[e->target]);
    if (T.tprobs) /* before the fake quantization hook: the teacher is fp32 */
        teacher_outputs(&T, teacher ? teacher : net);
    if (e->fake_quant) {
        net->act_hook = act_fq_hook;
        net->act_hook_ctx = &T.act;
    }
    int rc = 0;
    long step = 0;
    double t0 = ofa_now(), sce = 0, skl = 0;
    int nsum = 0;
    const int tty = isatty(2);
    for (int epoch = 0; epoch < e->epochs && rc == 0; epoch++) {
        for (int i = 0; i < T.n_train; i++)
            T.perm[i] = i;
        struct ofa_rng g;
        ofa_rng_derive(&g, (uint64_t)e->seed, TAG_ORDER, (uint64_t)epoch);
        for (int i = T.n_train - 1; i > 0; i--) {
            int j = (int)ofa_rng_below(&g, (uint32_t)i + 1), t = T.perm[i];
            T.perm[i] = T.perm[j];
            T.perm[j] = t;
        }
        for (int s = 0; s < spe; s++, step++) {
            float lr = ofa_lr_cosine(step, total, 0, e->lr, 0.0f);
            double ce, kl;
            if ((rc = make_batch(&T, r, epoch, s, err)))
                break;
            if (tune_step(&T, &sgd, lr, &ce, &kl)) {
                rc = ofa_error_set(err, NULL, 0, "stability fine-tuning: the loss or the gradient "
                                   "became NaN/Inf at step %ld (lower export.lr)", step + 1);
                break;
            }
            sce += ce, skl += kl, nsum++;
            st.images += T.B;
            if (T.draw == OFA_DRAW_ALL)
                for (int j = 0; j < T.n_fp; j++)
                    st.drawn[T.fp[j]] += T.B;
            else
                for (int i = 0; i < T.B; i++)
                    if (T.pick[i] >= 0)
                        st.drawn[T.pick[i]]++;
            if (!quiet && ((step + 1) % PROGRESS_EVERY == 0 || step + 1 == total)) {
                double dt = ofa_now() - t0;
                fprintf(stderr, "%sofa-export: stability epoch %d/%d step %ld/%ld ce %.4f kl %.4f "
                        "lr %.3g %.0f img/s%s", tty ? "\r" : "", epoch + 1, e->epochs, step + 1,
                        total, sce / nsum, skl / nsum, (double)lr,
                        dt > 0 ? (double)(step + 1) * T.B / dt : 0.0, tty ? "\033[K" : "\n");
                fflush(stderr);
                sce = skl = 0;
                nsum = 0;
            }
        }
    }
    if (!quiet && tty)
        fputc('\n', stderr);
    net->act_hook = NULL;
    net->act_hook_ctx = NULL;
    tuner_free(&T);
    if (rc == 0)
        recalibrate(net, ds, r);
    if (stats)
        *stats = st;
    return rc;
}
