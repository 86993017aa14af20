#include <config.h>
/* search.c: OFA's evolutionary search, NSGA-II and a random baseline over a
 * space's fixed-length genomes, on caller-supplied objectives. Constraints by
 * rejection; every distinct subnet is evaluated once (hash cache); serial and
 * deterministic for a seed (one derived stream per candidate slot). */

#include "search.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

/* Genes are choice indices: [0] resolution, [1 + st] depth of stage st, then
 * kernel and expand of every (stage, slot) pair up to the maximum depth. */
#define MAX_GENES (1 + OFA_MAX_STAGES + 2 * OFA_MAX_STAGES * OFA_MAX_DEPTH)
#define INACTIVE 0xff /* gene of a slot beyond its stage's depth, in keys */

/* Stream coordinate of the random baseline, apart from the slots (g, i). */
#define RANDOM_STREAM UINT64_C(0x72616e646f6d0000)

struct genome {
    uint8_t g[MAX_GENES];
};

struct codec {
    const struct ofa_space *sp;
    int ns, maxd, n; /* stages, maximum depth, genes */
    uint8_t card[MAX_GENES];
};

static int gene_depth(const struct codec *cd, int st)
{
    (void)cd;
    return 1 + st;
}

static int gene_kernel(const struct codec *cd, int st, int b)
{
    return 1 + cd->ns + 2 * (st * cd->maxd + b);
}

static void codec_init(struct codec *cd, const struct ofa_space *sp)
{
    OFA_ASSERT(sp->n_stages >= 1 && sp->n_stages <= OFA_MAX_STAGES);
    OFA_ASSERT(sp->n_res >= 1 && sp->n_depths >= 1 && sp->n_kernels >= 1 && sp->n_expands >= 1);
    memset(cd, 0, sizeof *cd);
    cd->sp = sp;
    cd->ns = sp->n_stages;
    cd->maxd = ofa_space_max_depth(sp);
    OFA_ASSERT(cd->maxd >= 1 && cd->maxd <= OFA_MAX_DEPTH);
    cd->n = 1 + cd->ns + 2 * cd->ns * cd->maxd;
    cd->card[0] = (uint8_t)sp->n_res;
    for (int st = 0; st < cd->ns; st++) {
        cd->card[gene_depth(cd, st)] = (uint8_t)sp->n_depths;
        for (int b = 0; b < cd->maxd; b++) {
            cd->card[gene_kernel(cd, st, b)] = (uint8_t)sp->n_kernels;
            cd->card[gene_kernel(cd, st, b) + 1] = (uint8_t)sp->n_expands;
        }
    }
}

/* The genome with its inactive genes blanked: equal keys, equal subnets. */
static void genome_key(const struct codec *cd, const struct genome *x, uint8_t *key)
{
    memcpy(key, x->g, (size_t)cd->n);
    for (int st = 0; st < cd->ns; st++) {
        int d = cd->sp->depths[x->g[gene_depth(cd, st)]];
        for (int b = d; b < cd->maxd; b++)
            key[gene_kernel(cd, st, b)] = key[gene_kernel(cd, st, b) + 1] = INACTIVE;
    }
}

/* A key (or genome) to a normalised subnet. */
static void key_decode(const struct codec *cd, const uint8_t *key, struct ofa_subnet *s)
{
    const struct ofa_space *sp = cd->sp;
    memset(s, 0, sizeof *s);
    s->res = sp->resolutions[key[0]];
    for (int st = 0; st < cd->ns; st++) {
        s->depth[st] = sp->depths[key[gene_depth(cd, st)]];
        for (int b = 0; b < s->depth[st]; b++) {
            s->kernel[st][b] = sp->kernels[key[gene_kernel(cd, st, b)]];
            s->expand[st][b] = sp->expands[key[gene_kernel(cd, st, b) + 1]];
        }
    }
}

/* ---- operators: every gene consumes the same number of draws whatever its
 * value, so a slot's stream is easy to reason about ---- */

static void op_random(const struct codec *cd, struct ofa_rng *r, struct genome *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < cd->n; i++)
        out->g[i] = (uint8_t)ofa_rng_below(r, cd->card[i]);
}

static void op_smallest(const struct codec *cd, struct genome *out)
{
    (void)cd;
    memset(out, 0, sizeof *out); /* choice sets are ascending */
}

/* Each gene resampled (uniformly, possibly to the same value) with
 * probability p, the resolution with p_res. */
static void op_mutate(const struct codec *cd, struct ofa_rng *r, const struct genome *a,
                      float p, float p_res, struct genome *out)
{
    *out = *a;
    for (int i = 0; i < cd->n; i++) {
        float u = ofa_rng_uniform(r);
        if (u < (i == 0 ? p_res : p))
            out->g[i] = (uint8_t)ofa_rng_below(r, cd->card[i]);
    }
}

/* Each gene from either parent with probability 1/2. */
static void op_crossover(const struct codec *cd, struct ofa_rng *r, const struct genome *a,
                         const struct genome *b, struct genome *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < cd->n; i++)
        out->g[i] = ofa_rng_below(r, 2) ? b->g[i] : a->g[i];
}

/* ---- evaluation cache: open addressing on the normalised key ---- */

struct cache {
    long n, cap;
    uint8_t *keys;              /* cap * klen */
    struct ofa_objectives *obj; /* cap */
    uint8_t *feasible;          /* cap */
    long *mark;                 /* cap: membership stamp (population sets) */
    long *tab, tabsz;           /* tabsz slots (power of 2), -1 empty */
};

struct search {
    struct codec cd;
    const struct ofa_constraints *c;
    ofa_objective_fn f;
    void *ctx;
    struct cache cache;
    long evaluations;
    long stamp;
};

static uint64_t hash_key(const uint8_t *k, int n)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (int i = 0; i < n; i++)
        h = (h ^ k[i]) * UINT64_C(0x100000001b3);
    return h ^ (h >> 29);
}

static void cache_rehash(struct search *sr, long tabsz)
{
    struct cache *c = &sr->cache;
    free(c->tab);
    c->tabsz = tabsz;
    c->tab = ofa_xmalloc(ofa_mul_size((size_t)tabsz, sizeof *c->tab), "search cache table");
    for (long i = 0; i < tabsz; i++)
        c->tab[i] = -1;
    for (long e = 0; e < c->n; e++) {
        const uint8_t *k = c->keys + (size_t)e * (size_t)sr->cd.n;
        long h = (long)(hash_key(k, sr->cd.n) & (uint64_t)(tabsz - 1));
        while (c->tab[h] >= 0)
            h = (h + 1) & (tabsz - 1);
        c->tab[h] = e;
    }
}

static void cache_grow(struct search *sr)
{
    struct cache *c = &sr->cache;
    long cap = c->cap ? 2 * c->cap : 1024;
    size_t kl = (size_t)sr->cd.n;
    uint8_t *keys = ofa_xmalloc(ofa_mul_size((size_t)cap, kl), "search cache keys");
    struct ofa_objectives *obj = ofa_xmalloc(ofa_mul_size((size_t)cap, sizeof *obj), "search cache");
    uint8_t *fe = ofa_xmalloc((size_t)cap, "search cache");
    long *mark = ofa_xmalloc(ofa_mul_size((size_t)cap, sizeof *mark), "search cache");
    if (c->n) {
        memcpy(keys, c->keys, (size_t)c->n * kl);
        memcpy(obj, c->obj, (size_t)c->n * sizeof *obj);
        memcpy(fe, c->feasible, (size_t)c->n);
        memcpy(mark, c->mark, (size_t)c->n * sizeof *mark);
    }
    free(c->keys), free(c->obj), free(c->feasible), free(c->mark);
    c->keys = keys, c->obj = obj, c->feasible = fe, c->mark = mark;
    c->cap = cap;
    if (2 * cap > c->tabsz)
        cache_rehash(sr, 4 * cap);
}

static void search_init(struct search *sr, const struct ofa_space *sp,
                        const struct ofa_constraints *c, ofa_objective_fn f, void *ctx)
{
    memset(sr, 0, sizeof *sr);
    codec_init(&sr->cd, sp);
    sr->c = c;
    sr->f = f;
    sr->ctx = ctx;
}

static void search_free(struct search *sr)
{
    struct cache *c = &sr->cache;
    free(c->keys), free(c->obj), free(c->feasible), free(c->mark), free(c->tab);
    memset(c, 0, sizeof *c);
}

/* Index of the key in the cache, or -1; *slot receives the table slot where
 * it belongs. */
static long cache_find(const struct search *sr, const uint8_t *key, long *slot)
{
    const struct cache *c = &sr->cache;
    if (!c->tabsz) {
        *slot = -1;
        return -1;
    }
    long h = (long)(hash_key(key, sr->cd.n) & (uint64_t)(c->tabsz - 1));
    while (c->tab[h] >= 0) {
        if (!memcmp(c->keys + (size_t)c->tab[h] * (size_t)sr->cd.n, key, (size_t)sr->cd.n))
            return c->tab[h];
        h = (h + 1) & (c->tabsz - 1);
    }
    *slot = h;
    return -1;
}

/* The cache entry of a genome, evaluating it (once) if new; *fresh is set
 * when it was evaluated by this call. */
static long evaluate(struct search *sr, const struct genome *x, int *fresh)
{
    uint8_t key[MAX_GENES];
    genome_key(&sr->cd, x, key);
    long slot;
    long e = cache_find(sr, key, &slot);
    if (fresh)
        *fresh = e < 0;
    if (e >= 0)
        return e;
    struct cache *c = &sr->cache;
    if (c->n == c->cap) {
        cache_grow(sr);
        cache_find(sr, key, &slot);
    }
    e = c->n++;
    memcpy(c->keys + (size_t)e * (size_t)sr->cd.n, key, (size_t)sr->cd.n);
    c->tab[slot] = e;
    struct ofa_subnet s;
    key_decode(&sr->cd, key, &s);
    memset(&c->obj[e], 0, sizeof c->obj[e]);
    sr->f(sr->ctx, &s, &c->obj[e]);
    sr->evaluations++;
    c->feasible[e] = (uint8_t)ofa_constraints_met(sr->c, &c->obj[e]);
    c->mark[e] = 0;
    return e;
}

/* ---- populations ---- */

struct cand {
    struct genome gen; /* all genes, inactive ones included */
    long e;            /* cache entry */
    double acc, lat;
    int rank;
    double crowd;
};

static void cand_set(const struct search *sr, struct cand *c, const struct genome *x, long e)
{
    c->gen = *x;
    c->e = e;
    c->acc = sr->cache.obj[e].acc;
    c->lat = sr->cache.obj[e].latency_ms;
    c->rank = 0;
    c->crowd = 0.0;
}

/* Accept x into a set being built under the current stamp when it is
 * feasible and not yet a member. */
static int try_accept(struct search *sr, const struct genome *x, struct cand *out)
{
    long e = evaluate(sr, x, NULL);
    if (!sr->cache.feasible[e] || sr->cache.mark[e] == sr->stamp)
        return 0;
    sr->cache.mark[e] = sr->stamp;
    cand_set(sr, out, x, e);
    return 1;
}

static void new_set(struct search *sr)
{
    sr->stamp++;
}

static void join_set(struct search *sr, const struct cand *c)
{
    sr->cache.mark[c->e] = sr->stamp;
}

/* Best first: acc descending, then latency ascending, then first evaluated. */
static int cmp_acc(const void *pa, const void *pb)
{
    const struct cand *a = pa, *b = pb;
    if (a->acc != b->acc)
        return a->acc > b->acc ? -1 : 1;
    if (a->lat != b->lat)
        return a->lat < b->lat ? -1 : 1;
    return (a->e > b->e) - (a->e < b->e);
}

static int cmp_lat(const void *pa, const void *pb)
{
    const struct cand *a = pa, *b = pb;
    if (a->lat != b->lat)
        return a->lat < b->lat ? -1 : 1;
    if (a->acc != b->acc)
        return a->acc > b->acc ? -1 : 1;
    return (a->e > b->e) - (a->e < b->e);
}

/* NSGA-II survival order: rank ascending, crowding distance descending. */
static int cmp_survival(const void *pa, const void *pb)
{
    const struct cand *a = pa, *b = pb;
    if (a->rank != b->rank)
        return a->rank < b->rank ? -1 : 1;
    if (a->crowd != b->crowd)
        return a->crowd > b->crowd ? -1 : 1;
    return (a->e > b->e) - (a->e < b->e);
}

static void fmt_budget(char *buf, size_t n, const char *name, double v)
{
    snprintf(buf, n, "%s %.4g", name, v);
}

/* The message for budgets that even the smallest subnet misses (or, when it
 * meets them, that the search found nothing). */
static int infeasible_error(struct search *sr, struct ofa_error *err, const char *what)
{
    struct genome x;
    op_smallest(&sr->cd, &x);
    long e = evaluate(sr, &x, NULL);
    const struct ofa_objectives *o = &sr->cache.obj[e];
    const struct ofa_constraints *c = sr->c;
    const char *names[4] = {"latency_ms", "flash_kb", "sram_kb", "mmacs"};
    double budget[4] = {c->latency_ms, c->flash_kb, c->sram_kb, c->mmacs};
    double need[4] = {o->latency_ms, o->flash_kb, o->sram_kb, o->mmacs};
    char all[256] = "", one[64];
    int tight = -1;
    double worst = 0.0;
    for (int i = 0; i < 4; i++) {
        if (!(budget[i] > 0.0))
            continue;
        fmt_budget(one, sizeof one, names[i], budget[i]);
        size_t l = strlen(all);
        snprintf(all + l, sizeof all - l, "%s%s", l ? ", " : "", one);
        if (need[i] > budget[i] && need[i] / budget[i] > worst)
            worst = need[i] / budget[i], tight = i;
    }
    if (tight < 0)
        return ofa_error_set(err, NULL, 0,
                             "%s found no subnet that meets the budgets (%s) in %ld "
                             "evaluations, though the smallest subnet does",
                             what, all, sr->evaluations);
    char msg[768];
    int len = snprintf(msg, sizeof msg,
                       "no subnet meets the budgets (%s): tightest budget %s %.4g "
                       "(smallest subnet needs %.4g)",
                       all, names[tight], budget[tight], need[tight]);
    for (int i = 0; i < 4 && len > 0 && (size_t)len < sizeof msg; i++)
        if (i != tight && budget[i] > 0.0 && need[i] > budget[i])
            len += snprintf(msg + len, sizeof msg - (size_t)len,
                            "; also %s %.4g (smallest subnet needs %.4g)", names[i],
                            budget[i], need[i]);
    return ofa_error_set(err, NULL, 0, "%s", msg);
}

/* `want` distinct feasible random subnets (slot i draws from (seed, 0, i));
 * the smallest subnet when no draw at all is feasible; -1 when it is not. */
static int init_population(struct search *sr, const struct ofa_search_cfg *cfg,
                           struct cand *pop, int want, int *np, struct ofa_error *err)
{
    new_set(sr);
    int n = 0;
    for (int i = 0; i < want; i++) {
        struct ofa_rng r;
        ofa_rng_derive(&r, cfg->seed, 0, (uint64_t)i);
        for (int t = 0; t < cfg->max_tries; t++) {
            struct genome x;
            op_random(&sr->cd, &r, &x);
            if (try_accept(sr, &x, &pop[n])) {
                n++;
                break;
            }
        }
    }
    if (n == 0) {
        struct genome x;
        op_smallest(&sr->cd, &x);
        if (try_accept(sr, &x, &pop[n]))
            n++;
        else
            return infeasible_error(sr, err, "the search");
    }
    *np = n;
    return 0;
}

static void check_cfg(const struct ofa_search_cfg *cfg, int evolve)
{
    OFA_ASSERT(cfg->population >= 1 && cfg->generations >= 0 && cfg->max_tries >= 1);
    if (evolve)
        OFA_ASSERT(cfg->parents >= 1 && cfg->mutants >= 0 && cfg->crossovers >= 0);
    OFA_ASSERT(cfg->mutate_prob >= 0.0f && cfg->mutate_prob <= 1.0f);
    OFA_ASSERT(cfg->mutate_res_prob >= 0.0f && cfg->mutate_res_prob <= 1.0f);
}

static void result_fill(const struct search *sr, const struct cand *c, int n,
                        struct ofa_search_result *out)
{
    memset(out, 0, sizeof *out);
    out->n = n;
    out->sub = ofa_xmalloc(ofa_mul_size((size_t)(n ? n : 1), sizeof *out->sub), "search result");
    out->obj = ofa_xmalloc(ofa_mul_size((size_t)(n ? n : 1), sizeof *out->obj), "search result");
    for (int i = 0; i < n; i++) {
        key_decode(&sr->cd, sr->cache.keys + (size_t)c[i].e * (size_t)sr->cd.n, &out->sub[i]);
        out->obj[i] = sr->cache.obj[c[i].e];
    }
    out->evaluations = sr->evaluations;
}

/* ---- public ---- */

int ofa_constraints_met(const struct ofa_constraints *c, const struct ofa_objectives *o)
{
    if (!c)
        return 1;
    if (c->latency_ms > 0.0 && !(o->latency_ms <= c->latency_ms))
        return 0;
    if (c->flash_kb > 0.0 && !(o->flash_kb <= c->flash_kb))
        return 0;
    if (c->sram_kb > 0.0 && !(o->sram_kb <= c->sram_kb))
        return 0;
    if (c->mmacs > 0.0 && !(o->mmacs <= c->mmacs))
        return 0;
    return 1;
}

void ofa_search_cfg_default(struct ofa_search_cfg *c)
{
    memset(c, 0, sizeof *c);
    c->population = 100;
    c->parents = 25;
    c->mutants = 50;
    c->crossovers = 50;
    c->generations = 500;
    c->mutate_prob = 0.1f;
    c->mutate_res_prob = 0.5f;
    c->max_tries = 200;
    c->seed = 1;
}

double ofa_search_calibrated_budget(double budget, const double *predicted,
                                    const double *measured, int n, int retry)
{
    OFA_ASSERT(budget > 0 && n > 0 && retry >= 1);
    double *r = ofa_xmalloc((size_t)n * sizeof *r, "latency ratios");
    double q = 1;
    for (int i = 0; i < n; i++) {
        OFA_ASSERT(predicted[i] > 0);
        r[i] = measured[i] / predicted[i];
        if (retry > 1 && r[i] > q)
            q = r[i];
    }
    if (retry == 1)
        q = fmax(1, ofa_median(r, n));
    free(r);
    return budget / q;
}

/* Index of s among r's candidates, or -1. */
static int result_find(const struct ofa_space *sp, const struct ofa_search_result *r,
                       const struct ofa_subnet *s)
{
    char a[OFA_SUBNET_TEXT_MAX], b[OFA_SUBNET_TEXT_MAX];
    ofa_subnet_format(sp, s, a, sizeof a);
    for (int i = 0; i < r->n; i++) {
        ofa_subnet_format(sp, &r->sub[i], b, sizeof b);
        if (!strcmp(a, b))
            return i;
    }
    return -1;
}

/* Puts (s, o) at position pos <= r->n of r: moved there from index j >= pos
 * when r holds it already, inserted when j < 0 (r's subnets stay distinct). */
static void result_place(struct ofa_search_result *r, int pos, int j, const struct ofa_subnet *s,
                         const struct ofa_objectives *o)
{
    OFA_ASSERT(pos >= 0 && pos <= r->n && (j < 0 || (j >= pos && j < r->n)));
    if (j >= 0) {
        const struct ofa_subnet ts = r->sub[j];
        const struct ofa_objectives to = r->obj[j];
        memmove(r->sub + pos + 1, r->sub + pos, sizeof *r->sub * (size_t)(j - pos));
        memmove(r->obj + pos + 1, r->obj + pos, sizeof *r->obj * (size_t)(j - pos));
        r->sub[pos] = ts, r->obj[pos] = to;
        return;
    }
    struct ofa_subnet *sub = ofa_xmalloc(sizeof *sub * (size_t)(r->n + 1), "search result");
    struct ofa_objectives *obj = ofa_xmalloc(sizeof *obj * (size_t)(r->n + 1), "search result");
    memcpy(sub, r->sub, sizeof *sub * (size_t)pos);
    memcpy(obj, r->obj, sizeof *obj * (size_t)pos);
    sub[pos] = *s, obj[pos] = *o;
    memcpy(sub + pos + 1, r->sub + pos, sizeof *sub * (size_t)(r->n - pos));
    memcpy(obj + pos + 1, r->obj + pos, sizeof *obj * (size_t)(r->n - pos));
    free(r->sub), free(r->obj);
    r->sub = sub, r->obj = obj;
    r->n++;
}

/* For ofa_search_choose, when sp has several resolutions: the best of a
 * search confined to each resolution, inserted into r after its `top` best
 * unless it is among them already. The accuracy predictor can misjudge a
 * whole resolution (on the default supernet, cortex-m7-large's 5 best were
 * near-copies at 24 pixels, predicted 93.4% and measured 92.3-92.5%), and
 * the near-copies' measurements cannot show it; each resolution's best
 * measured beside them can. Returns how many were inserted. */
static int insert_resolution_bests(const struct ofa_space *sp, const struct ofa_search_cfg *cfg,
                                   const struct ofa_constraints *c, ofa_objective_fn f,
                                   void *ctx, struct ofa_search_result *r, int top)
{
    int added = 0;
    for (int i = 0; sp->n_res > 1 && i < sp->n_res; i++) {
        struct ofa_space one = *sp;
        one.n_res = 1;
        one.resolutions[0] = sp->resolutions[i];
        struct ofa_search_result ri = {0};
        struct ofa_error e; /* a resolution that no subnet of it fits adds nothing */
        if (!ofa_search_evolve(&one, cfg, c, f, ctx, &ri, &e)) {
            const int j = result_find(sp, r, &ri.sub[0]);
            if (j < 0 || j >= top + added) {
                result_place(r, top + added, j, &ri.sub[0], &ri.obj[0]);
                added++;
            }
        }
        ofa_search_result_free(&ri);
    }
    return added;
}

int ofa_search_choose(const struct ofa_space *sp, const struct ofa_search_cfg *cfg,
                      const struct ofa_constraints *c, ofa_objective_fn f, void *ctx,
                      ofa_measure_fn m, void *mctx, int top, struct ofa_search_result *out,
                      struct ofa_choice *ch, struct ofa_error *err)
{
    enum { NT = (OFA_CHOOSE_RETRIES + 1) * (OFA_CHOOSE_MAX_TOP + OFA_MAX_CHOICES) };
    double pred[NT], meas[NT]; /* every timed candidate's latencies */
    int n_timed = 0;
    struct ofa_constraints sc = *c;
    memset(ch, 0, sizeof *ch);
    ch->chosen = -1;
    for (int retry = 0;; retry++) {
        ofa_search_result_free(out);
        ch->searches = retry + 1;
        ch->search_latency_ms = sc.latency_ms;
        double t0 = ofa_now();
        if (ofa_search_evolve(sp, cfg, &sc, f, ctx, out, err))
            return retry ? -2 : -1; /* later: the tightened budget leaves no subnet */
        ch->seconds = ofa_now() - t0;
        ch->top = top < out->n ? top : out->n;
        if (ch->top > OFA_CHOOSE_MAX_TOP)
            ch->top = OFA_CHOOSE_MAX_TOP;
        ch->top += insert_resolution_bests(sp, cfg, &sc, f, ctx, out, ch->top);
        for (int i = 0; i < ch->top; i++) {
            struct ofa_objectives o = out->obj[i];
            ch->latency_ms[i] = NAN;
            m(mctx, &out->sub[i], &ch->acc[i], &ch->latency_ms[i]);
            if (!isnan(ch->latency_ms[i])) {
                o.latency_ms = ch->latency_ms[i];
                pred[n_timed] = out->obj[i].latency_ms;
                meas[n_timed++] = ch->latency_ms[i];
            }
            if (ofa_constraints_met(c, &o) && (ch->chosen < 0 || ch->acc[i] > ch->acc[ch->chosen]))
                ch->chosen = i;
        }
        if (ch->chosen >= 0)
            return 0;
        /* (the device's latency is timed for every candidate or for none) */
        if (!n_timed || !(c->latency_ms > 0) || retry == OFA_CHOOSE_RETRIES)
            return -2;
        sc.latency_ms = ofa_search_calibrated_budget(c->latency_ms, pred, meas, n_timed,
                                                     retry + 1);
    }
}

void ofa_search_result_free(struct ofa_search_result *r)
{
    if (!r)
        return;
    free(r->sub);
    free(r->obj);
    memset(r, 0, sizeof *r);
}

int ofa_search_evolve(const struct ofa_space *sp, const struct ofa_search_cfg *cfg,
                      const struct ofa_constraints *c, ofa_objective_fn f, void *ctx,
                      struct ofa_search_result *out, struct ofa_error *err)
{
    check_cfg(cfg, 1);
    memset(out, 0, sizeof *out);
    struct search sr;
    search_init(&sr, sp, c, f, ctx);
    int per_gen = cfg->parents + cfg->mutants + cfg->crossovers;
    int cap = cfg->population > per_gen ? cfg->population : per_gen;
    struct cand *pop = ofa_xmalloc(ofa_mul_size((size_t)cap, sizeof *pop), "search population");
    struct cand *next = ofa_xmalloc(ofa_mul_size((size_t)cap, sizeof *next), "search population");
    int np;
    if (init_population(&sr, cfg, pop, cfg->population, &np, err)) {
        free(pop), free(next);
        search_free(&sr);
        return -1;
    }
    for (int g = 1; g <= cfg->generations; g++) {
        qsort(pop, (size_t)np, sizeof *pop, cmp_acc);
        int npar = cfg->parents < np ? cfg->parents : np;
        int nn = 0;
        new_set(&sr);
        for (int i = 0; i < npar; i++) {
            next[nn] = pop[i];
            join_set(&sr, &next[nn++]);
        }
        for (int j = 0; j < cfg->mutants + cfg->crossovers; j++) {
            struct ofa_rng r;
            ofa_rng_derive(&r, cfg->seed, (uint64_t)g, (uint64_t)j);
            for (int t = 0; t < cfg->max_tries; t++) {
                struct genome x;
                if (j < cfg->mutants) {
                    const struct cand *p = &pop[ofa_rng_below(&r, (uint32_t)npar)];
                    op_mutate(&sr.cd, &r, &p->gen, cfg->mutate_prob, cfg->mutate_res_prob, &x);
                } else {
                    const struct cand *a = &pop[ofa_rng_below(&r, (uint32_t)npar)];
                    const struct cand *b = &pop[ofa_rng_below(&r, (uint32_t)npar)];
                    op_crossover(&sr.cd, &r, &a->gen, &b->gen, &x);
                }
                if (try_accept(&sr, &x, &next[nn])) {
                    nn++;
                    break;
                }
            }
        }
        struct cand *tmp = pop;
        pop = next, next = tmp;
        np = nn;
    }
    qsort(pop, (size_t)np, sizeof *pop, cmp_acc);
    result_fill(&sr, pop, np, out);
    free(pop), free(next);
    search_free(&sr);
    return 0;
}

int ofa_search_random(const struct ofa_space *sp, long evaluations, uint64_t seed,
                      const struct ofa_constraints *c, ofa_objective_fn f, void *ctx,
                      struct ofa_search_result *out, struct ofa_error *err)
{
    OFA_ASSERT(evaluations >= 1);
    memset(out, 0, sizeof *out);
    struct search sr;
    search_init(&sr, sp, c, f, ctx);
    struct ofa_rng r;
    ofa_rng_derive(&r, seed, RANDOM_STREAM, 0);
    long cap = 1024, n = 0;
    struct cand *keep = ofa_xmalloc(ofa_mul_size((size_t)cap, sizeof *keep), "random search");
    /* Consecutive duplicates only pile up once the space is (nearly) exhausted. */
    long dups = 0, max_dups = 100000;
    while (sr.evaluations < evaluations && dups < max_dups) {
        struct genome x;
        op_random(&sr.cd, &r, &x);
        int fresh;
        long e = evaluate(&sr, &x, &fresh);
        if (!fresh) {
            dups++;
            continue;
        }
        dups = 0;
        if (!sr.cache.feasible[e])
            continue;
        if (n == cap) {
            cap *= 2;
            struct cand *k2 = ofa_xmalloc(ofa_mul_size((size_t)cap, sizeof *k2), "random search");
            memcpy(k2, keep, (size_t)n * sizeof *keep);
            free(keep);
            keep = k2;
        }
        cand_set(&sr, &keep[n++], &x, e);
    }
    if (n == 0) {
        int rc = infeasible_error(&sr, err, "random search");
        free(keep);
        search_free(&sr);
        return rc;
    }
    OFA_ASSERT(n <= 0x7fffffffL);
    qsort(keep, (size_t)n, sizeof *keep, cmp_acc);
    result_fill(&sr, keep, (int)n, out);
    free(keep);
    search_free(&sr);
    return 0;
}

static int dominates(const struct cand *a, const struct cand *b)
{
    return a->acc >= b->acc && a->lat <= b->lat && (a->acc > b->acc || a->lat < b->lat);
}

struct keyed {
    double v;
    int i;
};

static int cmp_keyed(const void *pa, const void *pb)
{
    const struct keyed *a = pa, *b = pb;
    if (a->v != b->v)
        return a->v < b->v ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

/* Deb's fast non-dominated sort and crowding distances of c[0..n); scratch
 * holds n*n bytes + 3n ints + n keyed. */
struct nds_scratch {
    uint8_t *dom; /* dom[i*n + j]: i dominates j */
    int *count, *front, *next;
    struct keyed *kv;
};

static void nds_scratch_init(struct nds_scratch *s, int nmax)
{
    s->dom = ofa_xmalloc(ofa_mul_size((size_t)nmax, (size_t)nmax), "nsga2 scratch");
    s->count = ofa_xmalloc(ofa_mul_size((size_t)nmax, sizeof(int)), "nsga2 scratch");
    s->front = ofa_xmalloc(ofa_mul_size((size_t)nmax, sizeof(int)), "nsga2 scratch");
    s->next = ofa_xmalloc(ofa_mul_size((size_t)nmax, sizeof(int)), "nsga2 scratch");
    s->kv = ofa_xmalloc(ofa_mul_size((size_t)nmax, sizeof *s->kv), "nsga2 scratch");
}

static void nds_scratch_free(struct nds_scratch *s)
{
    free(s->dom), free(s->count), free(s->front), free(s->next), free(s->kv);
}

static void crowding(struct cand *c, const int *idx, int m, struct keyed *kv)
{
    for (int k = 0; k < m; k++)
        c[idx[k]].crowd = 0.0;
    for (int obj = 0; obj < 2; obj++) {
        for (int k = 0; k < m; k++)
            kv[k].v = obj == 0 ? c[idx[k]].acc : c[idx[k]].lat, kv[k].i = idx[k];
        qsort(kv, (size_t)m, sizeof *kv, cmp_keyed);
        c[kv[0].i].crowd = c[kv[m - 1].i].crowd = INFINITY;
        double range = kv[m - 1].v - kv[0].v;
        if (!(range > 0.0))
            continue;
        for (int k = 1; k < m - 1; k++)
            c[kv[k].i].crowd += (kv[k + 1].v - kv[k - 1].v) / range;
    }
}

static void nondominated_sort(struct cand *c, int n, struct nds_scratch *s)
{
    memset(s->dom, 0, (size_t)n * (size_t)n);
    for (int i = 0; i < n; i++)
        s->count[i] = 0;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            if (dominates(&c[i], &c[j]))
                s->dom[(size_t)i * (size_t)n + (size_t)j] = 1, s->count[j]++;
            else if (dominates(&c[j], &c[i]))
                s->dom[(size_t)j * (size_t)n + (size_t)i] = 1, s->count[i]++;
        }
    int m = 0;
    for (int i = 0; i < n; i++)
        if (s->count[i] == 0)
            s->front[m++] = i;
    for (int rank = 0; m > 0; rank++) {
        int mn = 0;
        for (int k = 0; k < m; k++) {
            int i = s->front[k];
            c[i].rank = rank;
            const uint8_t *row = s->dom + (size_t)i * (size_t)n;
            for (int j = 0; j < n; j++)
                if (row[j] && --s->count[j] == 0)
                    s->next[mn++] = j;
        }
        crowding(c, s->front, m, s->kv);
        memcpy(s->front, s->next, (size_t)mn * sizeof(int));
        m = mn;
    }
}

/* Binary tournament: lower rank, then larger crowding distance. */
static const struct cand *tournament(const struct cand *pop, int np, struct ofa_rng *r)
{
    const struct cand *a = &pop[ofa_rng_below(r, (uint32_t)np)];
    const struct cand *b = &pop[ofa_rng_below(r, (uint32_t)np)];
    return cmp_survival(a, b) <= 0 ? a : b;
}

int ofa_search_nsga2(const struct ofa_space *sp, const struct ofa_search_cfg *cfg,
                     const struct ofa_constraints *c, ofa_objective_fn f, void *ctx,
                     struct ofa_search_result *out, struct ofa_error *err)
{
    check_cfg(cfg, 0);
    memset(out, 0, sizeof *out);
    struct search sr;
    search_init(&sr, sp, c, f, ctx);
    int N = cfg->population;
    struct cand *comb = ofa_xmalloc(ofa_mul_size(2 * (size_t)N, sizeof *comb), "nsga2 population");
    struct nds_scratch scr;
    nds_scratch_init(&scr, 2 * N);
    int np; /* the population is comb[0..np), offspring are appended */
    if (init_population(&sr, cfg, comb, N, &np, err)) {
        free(comb);
        nds_scratch_free(&scr);
        search_free(&sr);
        return -1;
    }
    nondominated_sort(comb, np, &scr);
    for (int g = 1; g <= cfg->generations; g++) {
        new_set(&sr);
        for (int i = 0; i < np; i++)
            join_set(&sr, &comb[i]);
        int n = np;
        for (int j = 0; j < N; j++) {
            struct ofa_rng r;
            ofa_rng_derive(&r, cfg->seed, (uint64_t)g, (uint64_t)j);
            for (int t = 0; t < cfg->max_tries; t++) {
                const struct cand *a = tournament(comb, np, &r);
                const struct cand *b = tournament(comb, np, &r);
                struct genome x, y;
                op_crossover(&sr.cd, &r, &a->gen, &b->gen, &x);
                op_mutate(&sr.cd, &r, &x, cfg->mutate_prob, cfg->mutate_res_prob, &y);
                if (try_accept(&sr, &y, &comb[n])) {
                    n++;
                    break;
                }
            }
        }
        nondominated_sort(comb, n, &scr);
        qsort(comb, (size_t)n, sizeof *comb, cmp_survival);
        np = n < N ? n : N;
    }
    /* Every rank-0 member of the last merge survives (they sort first), and
     * any other survivor is dominated by one of them. */
    int nf = 0;
    for (int i = 0; i < np; i++)
        if (comb[i].rank == 0)
            comb[nf++] = comb[i];
    qsort(comb, (size_t)nf, sizeof *comb, cmp_lat);
    result_fill(&sr, comb, nf, out);
    free(comb);
    nds_scratch_free(&scr);
    search_free(&sr);
    return 0;
}

struct hv_point {
    double acc, lat;
};

static int cmp_hv(const void *pa, const void *pb)
{
    const struct hv_point *a = pa, *b = pb;
    if (a->lat != b->lat)
        return a->lat < b->lat ? -1 : 1;
    return (a->acc < b->acc) - (a->acc > b->acc);
}

double ofa_hypervolume(const struct ofa_objectives *pts, int n, double ref_acc,
                       double ref_latency)
{
    if (n <= 0)
        return 0.0;
    struct hv_point *p = ofa_xmalloc(ofa_mul_size((size_t)n, sizeof *p), "hypervolume");
    int m = 0;
    for (int i = 0; i < n; i++)
        if (pts[i].acc > ref_acc && pts[i].latency_ms < ref_latency)
            p[m].acc = pts[i].acc, p[m].lat = pts[i].latency_ms, m++;
    qsort(p, (size_t)m, sizeof *p, cmp_hv);
    /* Sweep latency upwards: between consecutive latencies the dominated
     * region's height is the best accuracy seen so far. */
    double hv = 0.0, best = ref_acc;
    for (int i = 0; i < m; i++) {
        if (p[i].acc > best)
            best = p[i].acc;
        double upto = i + 1 < m ? p[i + 1].lat : ref_latency;
        hv += (upto - p[i].lat) * (best - ref_acc);
    }
    free(p);
    return hv;
}

int ofa_search_write_tsv(FILE *f, const struct ofa_space *sp, const struct ofa_search_result *r)
{
    fprintf(f, "subnet\tacc\tlatency_ms\tmmacs\tflash_kb\tsram_kb\n");
    for (int i = 0; i < r->n; i++) {
        char text[OFA_SUBNET_TEXT_MAX];
        ofa_subnet_format(sp, &r->sub[i], text, sizeof text);
        const struct ofa_objectives *o = &r->obj[i];
        fprintf(f, "%s\t%.6f\t%.4f\t%.4f\t%.3f\t%.3f\n", text, o->acc, o->latency_ms, o->mmacs,
                o->flash_kb, o->sram_kb);
    }
    return ferror(f) ? -1 : 0;
}
