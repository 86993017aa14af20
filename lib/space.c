/* space.c: the supernet's search space and subnets: defaults, validation,
 * sampling, canonical text, one-hot encoding, MAC and parameter counts.
 * Counts follow PIPELINE.md ("mbv3-28"): MACs of convs, SE and the linear
 * layer; parameters of conv/linear weights, biases and BN gamma/beta. */
#include <config.h>

#include "space.h"
#include "rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ofa_space_default(struct ofa_space *sp)
{
    memset(sp, 0, sizeof *sp);
    sp->in_channels = 1;
    sp->num_classes = 10;
    sp->stem_width = 16;
    sp->stem_stride = 1;
    sp->stem_act = OFA_ACT_HSWISH;
    sp->first_width = 16;
    static const struct ofa_stage_cfg st[4] = {
        {24, 2, OFA_ACT_RELU, 0},
        {40, 2, OFA_ACT_HSWISH, 1},
        {64, 2, OFA_ACT_HSWISH, 0},
        {96, 1, OFA_ACT_HSWISH, 1},
    };
    sp->n_stages = 4;
    memcpy(sp->stages, st, sizeof st);
    sp->n_depths = 3, sp->depths[0] = 2, sp->depths[1] = 3, sp->depths[2] = 4;
    sp->n_expands = 3, sp->expands[0] = 3, sp->expands[1] = 4, sp->expands[2] = 6;
    sp->n_kernels = 3, sp->kernels[0] = 3, sp->kernels[1] = 5, sp->kernels[2] = 7;
    sp->n_res = 3, sp->resolutions[0] = 20, sp->resolutions[1] = 24, sp->resolutions[2] = 28;
    sp->head_width = 384;
    sp->dropout = 0.1f;
    sp->se_reduction = 4;
    sp->kernel_transform = 1;
    sp->zero_last_gamma = 1;
    sp->bn_momentum = 0.1f;
    sp->bn_eps = 1e-5f;
}

static int check_set(const int *v, int n, int lo, int hi, const char *what,
                     struct ofa_error *err)
{
    if (n < 1 || n > OFA_MAX_CHOICES)
        return ofa_error_set(err, NULL, 0, "%s: needs 1 to %d values, got %d", what,
                             OFA_MAX_CHOICES, n);
    for (int i = 0; i < n; i++) {
        if (v[i] < lo || v[i] > hi)
            return ofa_error_set(err, NULL, 0, "%s: %d is out of range [%d, %d]", what, v[i],
                                 lo, hi);
        if (i > 0 && v[i] <= v[i - 1])
            return ofa_error_set(err, NULL, 0, "%s: values must be strictly ascending", what);
    }
    return 0;
}

int ofa_space_validate(const struct ofa_space *sp, struct ofa_error *err)
{
    if (sp->in_channels < 1 || sp->in_channels > 4)
        return ofa_error_set(err, NULL, 0, "in_channels: %d is out of range [1, 4]",
                             sp->in_channels);
    if (sp->num_classes < 2 || sp->num_classes > 100000)
        return ofa_error_set(err, NULL, 0, "num_classes: %d is out of range [2, 100000]",
                             sp->num_classes);
    if (sp->stem_width < 1 || sp->first_width < 1 || sp->head_width < 1)
        return ofa_error_set(err, NULL, 0, "stem_width, first_width and head_width must be >= 1");
    if (sp->stem_stride != 1 && sp->stem_stride != 2)
        return ofa_error_set(err, NULL, 0, "stem_stride: must be 1 or 2");
    if (sp->n_stages < 1 || sp->n_stages > OFA_MAX_STAGES)
        return ofa_error_set(err, NULL, 0, "the supernet needs 1 to %d stages, got %d",
                             OFA_MAX_STAGES, sp->n_stages);
    for (int s = 0; s < sp->n_stages; s++) {
        const struct ofa_stage_cfg *st = &sp->stages[s];
        if (st->width < 1)
            return ofa_error_set(err, NULL, 0, "stage %d: width must be >= 1", s + 1);
        if (st->stride != 1 && st->stride != 2)
            return ofa_error_set(err, NULL, 0, "stage %d: stride must be 1 or 2", s + 1);
        if (st->act != OFA_ACT_RELU && st->act != OFA_ACT_HSWISH)
            return ofa_error_set(err, NULL, 0, "stage %d: act must be relu or hswish", s + 1);
    }
    if (check_set(sp->depths, sp->n_depths, 1, OFA_MAX_DEPTH, "depths", err) ||
        check_set(sp->expands, sp->n_expands, 1, 9, "expands", err) ||
        check_set(sp->kernels, sp->n_kernels, 3, 7, "kernels", err) ||
        check_set(sp->resolutions, sp->n_res, 8, 4096, "resolutions", err))
        return -1;
    for (int i = 0; i < sp->n_kernels; i++)
        if (sp->kernels[i] % 2 == 0)
            return ofa_error_set(err, NULL, 0, "kernels: %d is not one of 3, 5, 7",
                                 sp->kernels[i]);
    if (!(sp->dropout >= 0.0f && sp->dropout < 1.0f))
        return ofa_error_set(err, NULL, 0, "dropout: %g is out of range [0, 1)", sp->dropout);
    if (sp->se_reduction < 1)
        return ofa_error_set(err, NULL, 0, "se_reduction: must be >= 1");
    if (!(sp->bn_momentum > 0.0f && sp->bn_momentum <= 1.0f))
        return ofa_error_set(err, NULL, 0, "bn_momentum: %g is out of range (0, 1]",
                             sp->bn_momentum);
    if (!(sp->bn_eps > 0.0f && sp->bn_eps < 1.0f))
        return ofa_error_set(err, NULL, 0, "bn_eps: %g is out of range (0, 1)", sp->bn_eps);
    return 0;
}

int ofa_make_divisible(double v, int divisor)
{
    int nv = (int)(v + divisor / 2.0) / divisor * divisor;
    if (nv < divisor)
        nv = divisor;
    if (nv < 0.9 * v)
        nv += divisor;
    return nv;
}

/* ---- Subnets ------------------------------------------------------------- */

void ofa_subnet_normalize(const struct ofa_space *sp, struct ofa_subnet *s)
{
    for (int st = 0; st < OFA_MAX_STAGES; st++) {
        if (st >= sp->n_stages)
            s->depth[st] = 0;
        for (int b = st < sp->n_stages ? s->depth[st] : 0; b < OFA_MAX_DEPTH; b++)
            s->kernel[st][b] = s->expand[st][b] = 0;
    }
}

/* Every gene at the same position of its choice set: the entry
 * at(n) of the n choices. */
static void subnet_fill(const struct ofa_space *sp, struct ofa_subnet *s, int (*at)(int n))
{
    memset(s, 0, sizeof *s);
    s->res = sp->resolutions[at(sp->n_res)];
    for (int st = 0; st < sp->n_stages; st++) {
        s->depth[st] = sp->depths[at(sp->n_depths)];
        for (int b = 0; b < s->depth[st]; b++) {
            s->kernel[st][b] = sp->kernels[at(sp->n_kernels)];
            s->expand[st][b] = sp->expands[at(sp->n_expands)];
        }
    }
}

static int first(int n) { (void)n; return 0; }
static int middle(int n) { return n / 2; }
static int last(int n) { return n - 1; }

void ofa_subnet_largest(const struct ofa_space *sp, struct ofa_subnet *s)
{
    subnet_fill(sp, s, last);
}

void ofa_subnet_medium(const struct ofa_space *sp, struct ofa_subnet *s)
{
    subnet_fill(sp, s, middle);
}

void ofa_subnet_smallest(const struct ofa_space *sp, struct ofa_subnet *s)
{
    subnet_fill(sp, s, first);
}

void ofa_subnet_sample(const struct ofa_space *sp, struct ofa_rng *rng, struct ofa_subnet *s)
{
    memset(s, 0, sizeof *s);
    s->res = sp->resolutions[ofa_rng_below(rng, (uint32_t)sp->n_res)];
    for (int st = 0; st < sp->n_stages; st++) {
        s->depth[st] = sp->depths[ofa_rng_below(rng, (uint32_t)sp->n_depths)];
        /* Draw genes for every slot so that the stream does not depend on
         * the depth drawn (mutation and crossover can rely on it). */
        for (int b = 0; b < ofa_space_max_depth(sp); b++) {
            int k = sp->kernels[ofa_rng_below(rng, (uint32_t)sp->n_kernels)];
            int e = sp->expands[ofa_rng_below(rng, (uint32_t)sp->n_expands)];
            if (b < s->depth[st])
                s->kernel[st][b] = k, s->expand[st][b] = e;
        }
    }
}

static int in_set(const int *v, int n, int x)
{
    for (int i = 0; i < n; i++)
        if (v[i] == x)
            return 1;
    return 0;
}

int ofa_subnet_valid(const struct ofa_space *sp, const struct ofa_subnet *s)
{
    if (!in_set(sp->resolutions, sp->n_res, s->res))
        return 0;
    for (int st = 0; st < sp->n_stages; st++) {
        if (!in_set(sp->depths, sp->n_depths, s->depth[st]))
            return 0;
        for (int b = 0; b < s->depth[st]; b++)
            if (!in_set(sp->kernels, sp->n_kernels, s->kernel[st][b]) ||
                !in_set(sp->expands, sp->n_expands, s->expand[st][b]))
                return 0;
    }
    return 1;
}

void ofa_subnet_format(const struct ofa_space *sp, const struct ofa_subnet *s, char *buf,
                       size_t n)
{
    OFA_ASSERT(n >= OFA_SUBNET_TEXT_MAX);
    char *p = buf, *end = buf + n;
    p += snprintf(p, (size_t)(end - p), "r%d-d", s->res);
    for (int st = 0; st < sp->n_stages; st++)
        p += snprintf(p, (size_t)(end - p), "%d", s->depth[st]);
    for (int pass = 0; pass < 2; pass++) {
        p += snprintf(p, (size_t)(end - p), pass == 0 ? "-k" : "-e");
        for (int st = 0; st < sp->n_stages; st++) {
            if (st > 0)
                p += snprintf(p, (size_t)(end - p), ".");
            for (int b = 0; b < s->depth[st]; b++)
                p += snprintf(p, (size_t)(end - p), "%d",
                              pass == 0 ? s->kernel[st][b] : s->expand[st][b]);
        }
    }
    OFA_ASSERT(p < end);
}

/* Reads one decimal digit; returns -1 when c is not a digit. */
static int digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : -1;
}

int ofa_subnet_parse(const struct ofa_space *sp, const char *text, struct ofa_subnet *s,
                     struct ofa_error *err)
{
    struct ofa_subnet t;
    memset(&t, 0, sizeof t);
    const char *p = text;
    const char *form = "expected r<res>-d<depths>-k<kernels>-e<expands>, e.g. "
                       "r24-d3333-k555.555.555.555-e444.444.444.444";
    if (*p++ != 'r' || digit(*p) < 0)
        return ofa_error_set(err, NULL, 0, "subnet '%s': %s", text, form);
    long res = 0;
    while (digit(*p) >= 0 && res < 100000)
        res = res * 10 + digit(*p++);
    t.res = (int)res;
    if (p[0] != '-' || p[1] != 'd')
        return ofa_error_set(err, NULL, 0, "subnet '%s': %s", text, form);
    p += 2;
    for (int st = 0; st < sp->n_stages; st++) {
        if (digit(*p) < 0)
            return ofa_error_set(err, NULL, 0, "subnet '%s': needs %d depths (one per stage)",
                                 text, sp->n_stages);
        t.depth[st] = digit(*p++);
        if (!in_set(sp->depths, sp->n_depths, t.depth[st]))
            return ofa_error_set(err, NULL, 0, "subnet '%s': depth %d of stage %d is not a "
                                 "choice of this supernet", text, t.depth[st], st + 1);
    }
    for (int pass = 0; pass < 2; pass++) {
        if (p[0] != '-' || p[1] != (pass == 0 ? 'k' : 'e'))
            return ofa_error_set(err, NULL, 0, "subnet '%s': %s", text, form);
        p += 2;
        for (int st = 0; st < sp->n_stages; st++) {
            if (st > 0 && *p++ != '.')
                return ofa_error_set(err, NULL, 0, "subnet '%s': stage %d: expected '.' "
                                     "between stages", text, st + 1);
            for (int b = 0; b < t.depth[st]; b++) {
                int v = digit(*p);
                if (v < 0)
                    return ofa_error_set(err, NULL, 0, "subnet '%s': stage %d needs %d %s",
                                         text, st + 1, t.depth[st],
                                         pass == 0 ? "kernel sizes" : "expand ratios");
                p++;
                if (pass == 0 && !in_set(sp->kernels, sp->n_kernels, v))
                    return ofa_error_set(err, NULL, 0, "subnet '%s': kernel %d (stage %d, "
                                         "block %d) is not a choice", text, v, st + 1, b + 1);
                if (pass == 1 && !in_set(sp->expands, sp->n_expands, v))
                    return ofa_error_set(err, NULL, 0, "subnet '%s': expand ratio %d (stage "
                                         "%d, block %d) is not a choice", text, v, st + 1, b + 1);
                (pass == 0 ? t.kernel : t.expand)[st][b] = v;
            }
        }
    }
    if (*p != '\0')
        return ofa_error_set(err, NULL, 0, "subnet '%s': unexpected '%s' at the end", text, p);
    if (!in_set(sp->resolutions, sp->n_res, t.res))
        return ofa_error_set(err, NULL, 0, "subnet '%s': resolution %d is not a choice of "
                             "this supernet", text, t.res);
    *s = t;
    return 0;
}

int ofa_subnet_onehot_size(const struct ofa_space *sp)
{
    return sp->n_stages * ofa_space_max_depth(sp) * (sp->n_kernels + sp->n_expands) + sp->n_res;
}

static int index_of(const int *v, int n, int x)
{
    for (int i = 0; i < n; i++)
        if (v[i] == x)
            return i;
    OFA_ASSERT(!"value not in choice set");
    return -1;
}

void ofa_subnet_onehot(const struct ofa_space *sp, const struct ofa_subnet *s, float *out)
{
    int n = ofa_subnet_onehot_size(sp), at = 0;
    memset(out, 0, (size_t)n * sizeof *out);
    for (int st = 0; st < sp->n_stages; st++)
        for (int b = 0; b < ofa_space_max_depth(sp); b++) {
            if (b < s->depth[st]) {
                out[at + index_of(sp->kernels, sp->n_kernels, s->kernel[st][b])] = 1.0f;
                out[at + sp->n_kernels + index_of(sp->expands, sp->n_expands, s->expand[st][b])] =
                    1.0f;
            }
            at += sp->n_kernels + sp->n_expands;
        }
    out[at + index_of(sp->resolutions, sp->n_res, s->res)] = 1.0f;
}

/* Walks the subnet's layers and sums MACs and parameters. */
static void count(const struct ofa_space *sp, const struct ofa_subnet *s, long long *macs,
                  long long *params)
{
    long long m = 0, p = 0;
    int H = ofa_conv_out_size(s->res, 3, sp->stem_stride, 1);
    int C = sp->stem_width;
    m += (long long)H * H * 9 * sp->in_channels * C;
    p += 9LL * sp->in_channels * C + 2 * C;
    /* first block: dw3x3, BN, pw, BN */
    m += (long long)H * H * 9 * C + (long long)H * H * C * sp->first_width;
    p += 9LL * C + 2 * C + (long long)C * sp->first_width + 2 * sp->first_width;
    C = sp->first_width;
    for (int st = 0; st < sp->n_stages; st++) {
        const struct ofa_stage_cfg *cfg = &sp->stages[st];
        for (int b = 0; b < s->depth[st]; b++) {
            int stride = b == 0 ? cfg->stride : 1, K = s->kernel[st][b];
            int mid = C * s->expand[st][b], Ho = (H - 1) / stride + 1;
            m += (long long)H * H * C * mid;                  /* expand */
            p += (long long)C * mid + 2 * mid;
            m += (long long)Ho * Ho * K * K * mid;            /* depthwise */
            p += (long long)K * K * mid + 2 * mid;
            if (cfg->se) {
                int r = ofa_make_divisible((double)mid / sp->se_reduction, 8);
                m += 2LL * mid * r;
                p += 2LL * mid * r + r + mid;
            }
            m += (long long)Ho * Ho * mid * cfg->width;       /* project */
            p += (long long)mid * cfg->width + 2 * cfg->width;
            H = Ho;
            C = cfg->width;
        }
    }
    m += (long long)H * H * C * sp->head_width;
    p += (long long)C * sp->head_width + 2 * sp->head_width;
    m += (long long)sp->head_width * sp->num_classes;
    p += (long long)sp->head_width * sp->num_classes + sp->num_classes;
    *macs = m;
    *params = p;
}

long long ofa_subnet_macs(const struct ofa_space *sp, const struct ofa_subnet *s)
{
    long long m, p;
    count(sp, s, &m, &p);
    return m;
}

long long ofa_subnet_params(const struct ofa_space *sp, const struct ofa_subnet *s)
{
    long long m, p;
    count(sp, s, &m, &p);
    return p;
}
