#include <config.h>
/* predictor.c: the MLP accuracy predictor (fit with Adam on minibatches,
 * batched evaluation), Kendall tau-b and RMSE, and the measurement cache TSV.
 * All matrix work goes through ofa_linear_* (one GEMM each); no OpenMP region
 * here calls BLAS, and everything runs on one thread (see
 * single_thread_begin), so a fit is a pure function of (data, cfg). */

#include "predictor.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blas.h"
#include "ops.h"
#include "optim.h"
#include "params.h"
#include "rng.h"

/* ---- The network ----------------------------------------------------------- */

enum { MAX_LAYERS = 32 };

struct ofa_predictor {
    int dim, hidden, layers;
    float y_mean, y_std; /* the network predicts (acc - y_mean) / y_std */
    struct ofa_params p;
    /* Parameter indices: layer l < layers is hidden, l == layers the output. */
    int w[MAX_LAYERS + 1], b[MAX_LAYERS + 1];
};

/* Rows per chunk in batched evaluation: bounds the scratch, and is large
 * enough that each GEMM runs near peak. */
enum { EVAL_CHUNK = 1024 };

void ofa_mlp_cfg_default(struct ofa_mlp_cfg *c)
{
    /* Tuned on bench/bench_predictor's synthetic truth (default space, dim
     * 99): strong decoupled weight decay matters most (held-out Kendall tau
     * with 1,000 pairs: 0.84 at lr 1e-3 without decay, 0.94 here), also on
     * a sharper truth with interactions. Held-out tau 0.89 / 0.94 / 0.95 for
     * 300 / 1,000 / 4,000 pairs, fitted in 0.5 / 1.5 / 7 s (one thread,
     * beside a training run); the cost is linear in pairs x epochs. */
    c->hidden = 400;
    c->layers = 3;
    c->epochs = 50;
    c->batch = 128;
    c->lr = 5e-3f;
    c->weight_decay = 3.0f;
    c->seed = 1;
}

/* The predictor's GEMMs are small (at most EVAL_CHUNK x 400 x 400): on 2
 * cores, OpenBLAS threads cost more in synchronisation than they gain, and
 * when another process keeps a core busy they are more than 10x slower than one
 * thread (bench/bench_predictor: 50,000 batched evaluations 0.4 s on one
 * thread, 5.5 s on two, beside a training run). So fit and eval run on one
 * thread and restore the caller's count; this also makes a fit independent
 * of the thread count. (Without OpenMP the count reads as 1 and is left to
 * BLAS's own setting.) */
static int single_thread_begin(void)
{
    int prev = ofa_threads_get();
    if (prev > 1)
        ofa_threads_set(1);
    return prev;
}

static void single_thread_end(int prev)
{
    if (prev > 1)
        ofa_threads_set(prev);
}

static int layer_in(const struct ofa_predictor *P, int l)
{
    return l == 0 ? P->dim : P->hidden;
}

static int layer_out(const struct ofa_predictor *P, int l)
{
    return l == P->layers ? 1 : P->hidden;
}

static struct ofa_predictor *alloc_net(int dim, int hidden, int layers)
{
    OFA_ASSERT(dim >= 1 && hidden >= 1 && layers >= 0 && layers < MAX_LAYERS);
    struct ofa_predictor *P = ofa_xcalloc(1, sizeof *P, "predictor");
    P->dim = dim, P->hidden = hidden, P->layers = layers;
    for (int l = 0; l <= layers; l++) {
        char name[OFA_PARAM_NAMELEN];
        snprintf(name, sizeof name, "fc%d.weight", l);
        P->w[l] = ofa_params_add(&P->p, name, OFA_PARAM_DECAY, 2, layer_out(P, l),
                                 layer_in(P, l), 0, 0);
        snprintf(name, sizeof name, "fc%d.bias", l);
        P->b[l] = ofa_params_add(&P->p, name, 0, 1, layer_out(P, l), 0, 0, 0);
    }
    ofa_params_alloc(&P->p);
    return P;
}

void ofa_predictor_free(struct ofa_predictor *p)
{
    if (!p)
        return;
    ofa_params_free(&p->p);
    free(p);
}

int ofa_predictor_dim(const struct ofa_predictor *p)
{
    return p->dim;
}

/* x [B][dim] -> out [B] (standardised), through z[l] [B][hidden]
 * (pre-activations) and a[l] [B][hidden] (post-ReLU); a[l] may equal z[l]
 * when no backward follows. */
static void forward(const struct ofa_predictor *P, float *const *z, float *const *a,
                    float *out, const float *x, int B)
{
    const float *inp = x;
    for (int l = 0; l < P->layers; l++) {
        ofa_linear_forward(z[l], inp, ofa_param_data(&P->p, P->w[l]), layer_in(P, l),
                           ofa_param_data(&P->p, P->b[l]), B, layer_in(P, l), P->hidden);
        ofa_act_forward(a[l], z[l], (long)B * P->hidden, OFA_ACT_RELU);
        inp = a[l];
    }
    int L = P->layers;
    ofa_linear_forward(out, inp, ofa_param_data(&P->p, P->w[L]), layer_in(P, L),
                       ofa_param_data(&P->p, P->b[L]), B, layer_in(P, L), 1);
}

void ofa_predictor_eval_batch(const struct ofa_predictor *p, const float *x, int n, float *out)
{
    OFA_ASSERT(n >= 0);
    if (n == 0)
        return;
    int threads = single_thread_begin();
    int chunk = n < EVAL_CHUNK ? n : EVAL_CHUNK;
    size_t sz = ofa_mul_size((size_t)chunk, (size_t)p->hidden);
    float *buf = ofa_xmalloc(ofa_mul_size(2 * sz, sizeof(float)), "predictor scratch");
    /* Ping-pong: layer l writes buffer l % 2 and reads the other one. */
    float *z[MAX_LAYERS];
    for (int l = 0; l < p->layers; l++)
        z[l] = buf + (size_t)(l % 2) * sz;
    for (int i = 0; i < n; i += chunk) {
        int B = n - i < chunk ? n - i : chunk;
        forward(p, z, z, out + i, x + (size_t)i * p->dim, B);
    }
    free(buf);
    single_thread_end(threads);
    for (int i = 0; i < n; i++)
        out[i] = p->y_mean + p->y_std * out[i];
}

/* One row is a matrix-vector product per layer: dot products over the weight
 * rows, on the caller's thread. A one-row GEMM spends most of its time
 * switching the thread count and packing (bench/bench_search: 160 us per
 * call at 3 x 400, against 48 us here). */
float ofa_predictor_eval(const struct ofa_predictor *p, const float *x)
{
    float *buf = ofa_xmalloc(ofa_mul_size(2 * (size_t)p->hidden, sizeof(float)),
                             "predictor scratch");
    const float *inp = x;
    float y = 0.0f;
    for (int l = 0; l <= p->layers; l++) {
        const int nin = layer_in(p, l), nout = layer_out(p, l);
        const float *w = ofa_param_data(&p->p, p->w[l]), *b = ofa_param_data(&p->p, p->b[l]);
        float *o = l == p->layers ? &y : buf + (size_t)(l % 2) * p->hidden;
        for (int j = 0; j < nout; j++) {
            const float *wj = w + (size_t)j * nin;
            float s = 0.0f;
#pragma omp simd reduction(+ : s)
            for (int i = 0; i < nin; i++)
                s += wj[i] * inp[i];
            s += b[j];
            o[j] = l < p->layers && s < 0.0f ? 0.0f : s;
        }
        inp = o;
    }
    free(buf);
    return p->y_mean + p->y_std * y;
}

/* ---- Training ---------------------------------------------------------------- */

/* One Adam step over the flat table (PyTorch's Adam/AdamW formulas):
 * m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * w -= lr wd w (decoupled, OFA_PARAM_DECAY tensors only);
 * w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps). */
static void adam_step(struct ofa_params *p, float *v2, long t, float lr, float wd)
{
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    const float bc1 = 1.0f - powf(b1, (float)t);
    const float rbc2 = 1.0f / sqrtf(1.0f - powf(b2, (float)t));
    const float step = lr / bc1;
    for (int i = 0; i < p->n; i++) {
        const struct ofa_param *T = &p->t[i];
        float *w = p->data + T->offset, *g = p->grad + T->offset;
        float *m = p->mom + T->offset, *v = v2 + T->offset;
        const float decay = (T->flags & OFA_PARAM_DECAY) ? lr * wd : 0.0f;
        const long n = (long)T->numel;
#pragma omp simd
        for (long j = 0; j < n; j++) {
            float mj = b1 * m[j] + (1.0f - b1) * g[j];
            float vj = b2 * v[j] + (1.0f - b2) * g[j] * g[j];
            m[j] = mj, v[j] = vj;
            w[j] = w[j] - decay * w[j] - step * mj / (sqrtf(vj) * rbc2 + eps);
        }
    }
}

static float *zeroed(float *x, size_t n)
{
    memset(x, 0, n * sizeof *x);
    return x;
}

struct ofa_predictor *ofa_predictor_fit(const float *x, const float *y, int n, int dim,
                                        const struct ofa_mlp_cfg *c)
{
    OFA_ASSERT(n >= 1 && dim >= 1 && c->hidden >= 1 && c->layers >= 0 && c->epochs >= 0 &&
               c->batch >= 1 && c->lr >= 0 && c->weight_decay >= 0);
    struct ofa_predictor *P = alloc_net(dim, c->hidden, c->layers);
    int threads = single_thread_begin();

    /* Standardise the target (double sums, fixed order). */
    double s = 0, ss = 0;
    for (int i = 0; i < n; i++) {
        OFA_ASSERT(isfinite(y[i]));
        s += y[i];
    }
    double mean = s / n;
    for (int i = 0; i < n; i++)
        ss += (y[i] - mean) * (y[i] - mean);
    double sd = sqrt(ss / n);
    P->y_mean = (float)mean;
    P->y_std = sd > 1e-12 ? (float)sd : 1.0f;

    /* He-normal hidden weights (fan-in). The output layer and all biases
     * start at 0, so training starts from the constant predictor (the mean):
     * constant targets give exactly their value, and held-out quality is the
     * same as with a random output layer (bench/bench_predictor). */
    struct ofa_rng rng;
    ofa_rng_derive(&rng, c->seed, 0x696e6974 /* "init" */, 0);
    for (int l = 0; l < P->layers; l++) {
        const struct ofa_param *T = &P->p.t[P->w[l]];
        ofa_rng_fill_normal(&rng, ofa_param_data(&P->p, P->w[l]), (long)T->numel,
                            sqrtf(2.0f / (float)layer_in(P, l)));
    }

    const int B = c->batch < n ? c->batch : n, H = P->hidden, L = P->layers;
    const size_t bh = (size_t)B * H;
    float *work = ofa_xmalloc(ofa_mul_size(bh * (2 * (size_t)L + 2) + (size_t)B * (dim + 3),
                                           sizeof(float)),
                              "predictor training buffers");
    float *z[MAX_LAYERS], *a[MAX_LAYERS];
    float *w = work;
    for (int l = 0; l < L; l++) {
        z[l] = w, w += bh;
        a[l] = w, w += bh;
    }
    float *da = w, *dz = w + bh; /* dL/da[l-1] and dL/dz[l-1] */
    w += 2 * bh;
    float *xb = w, *yb = w + (size_t)B * dim, *out = yb + B, *dout = out + B;
    float *v2 = ofa_xcalloc(P->p.total, sizeof(float), "Adam second moments");
    int *perm = ofa_xmalloc(ofa_mul_size((size_t)n, sizeof(int)), "shuffle");
    for (int i = 0; i < n; i++)
        perm[i] = i;

    const long steps_per_epoch = (n + B - 1) / B, total = steps_per_epoch * c->epochs;
    const float rstd = 1.0f / P->y_std;
    long t = 0;
    for (int e = 0; e < c->epochs; e++) {
        /* Fisher-Yates, continuing from the previous epoch's order. */
        ofa_rng_derive(&rng, c->seed, 0x73687566 /* "shuf" */, (uint64_t)e);
        for (int i = n - 1; i > 0; i--) {
            int j = (int)ofa_rng_below(&rng, (uint32_t)i + 1), tmp = perm[i];
            perm[i] = perm[j], perm[j] = tmp;
        }
        for (int i0 = 0; i0 < n; i0 += B) {
            int b = n - i0 < B ? n - i0 : B;
            for (int r = 0; r < b; r++) {
                int k = perm[i0 + r];
                memcpy(xb + (size_t)r * dim, x + (size_t)k * dim, (size_t)dim * sizeof *xb);
                yb[r] = (float)((y[k] - mean) * rstd);
            }
            forward(P, z, a, out, xb, b);
            /* L = mean_r (out - y)^2 -> dL/dout = 2 (out - y) / b. */
            for (int r = 0; r < b; r++)
                dout[r] = 2.0f * (out[r] - yb[r]) / (float)b;
            ofa_params_zero_grad(&P->p);
            const struct ofa_params *p = &P->p;
            const float *dnext = dout;
            for (int l = L; l >= 0; l--) {
                float *dinp = l > 0 ? zeroed(da, (size_t)b * H) : NULL;
                ofa_linear_backward(dinp, ofa_param_grad(p, P->w[l]), ofa_param_grad(p, P->b[l]),
                                    dnext, l > 0 ? a[l - 1] : xb, ofa_param_data(p, P->w[l]),
                                    layer_in(P, l), b, layer_in(P, l), layer_out(P, l));
                /* dnext (== dz below the output layer) has been consumed:
                 * dz can take the next layer's gradient. */
                if (l > 0) {
                    ofa_act_backward(zeroed(dz, (size_t)b * H), da, z[l - 1], (long)b * H,
                                     OFA_ACT_RELU);
                    dnext = dz;
                }
            }
            t++;
            adam_step(&P->p, v2, t, ofa_lr_cosine(t - 1, total, 0, c->lr, 0.0f), c->weight_decay);
        }
    }
    free(perm);
    free(v2);
    free(work);
    single_thread_end(threads);
    return P;
}

/* ---- Statistics ---------------------------------------------------------------- */

static int cmp3(float u, float v)
{
    return (u > v) - (u < v); /* 0 for ties and NaN */
}

double ofa_kendall_tau(const float *a, const float *b, int n)
{
    OFA_ASSERT(n >= 1);
    long long s = 0, ta = 0, tb = 0;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            int ca = cmp3(a[i], a[j]), cb = cmp3(b[i], b[j]);
            s += ca * cb;
            ta += ca == 0;
            tb += cb == 0;
        }
    long long n0 = (long long)n * (n - 1) / 2;
    double den = sqrt((double)(n0 - ta) * (double)(n0 - tb));
    return den > 0 ? (double)s / den : 0.0;
}

double ofa_rmse(const float *a, const float *b, int n)
{
    OFA_ASSERT(n >= 1);
    double s = 0;
    for (int i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        s += d * d;
    }
    return sqrt(s / n);
}

/* ---- Measurement cache -------------------------------------------------------------- */

/* What add/find can do without the space (see predictor.h). */
static void normalize_nospace(struct ofa_subnet *s)
{
    for (int st = 0; st < OFA_MAX_STAGES; st++) {
        OFA_ASSERT(s->depth[st] >= 0 && s->depth[st] <= OFA_MAX_DEPTH);
        for (int b = s->depth[st]; b < OFA_MAX_DEPTH; b++)
            s->kernel[st][b] = s->expand[st][b] = 0;
    }
}

int ofa_measurements_find(const struct ofa_measurements *m, const struct ofa_subnet *s)
{
    struct ofa_subnet k = *s;
    normalize_nospace(&k);
    for (int i = 0; i < m->n; i++)
        if (m->sub[i].res == k.res && memcmp(&m->sub[i], &k, sizeof k) == 0)
            return i;
    return -1;
}

void ofa_measurements_add(struct ofa_measurements *m, const struct ofa_subnet *s, float acc)
{
    int i = ofa_measurements_find(m, s);
    if (i >= 0) {
        m->acc[i] = acc;
        return;
    }
    if (m->n == m->cap) {
        int cap = m->cap ? 2 * m->cap : 64;
        OFA_ASSERT(cap > m->cap);
        struct ofa_subnet *ns = realloc(m->sub, ofa_mul_size((size_t)cap, sizeof *ns));
        if (!ns)
            ofa_fatal("out of memory for %d measurements", cap);
        m->sub = ns;
        float *na = realloc(m->acc, ofa_mul_size((size_t)cap, sizeof *na));
        if (!na)
            ofa_fatal("out of memory for %d measurements", cap);
        m->acc = na;
        m->cap = cap;
    }
    m->sub[m->n] = *s;
    normalize_nospace(&m->sub[m->n]);
    m->acc[m->n] = acc;
    m->n++;
}

void ofa_measurements_free(struct ofa_measurements *m)
{
    free(m->sub);
    free(m->acc);
    memset(m, 0, sizeof *m);
}

static const char HEADER[] = "# ofa measurements: subnet<TAB>BN-recalibrated validation accuracy";

/* One data line (newline stripped) -> (s, acc); the error names path:line. */
static int parse_line(char *line, const char *path, long ln, const struct ofa_space *sp,
                      struct ofa_subnet *s, float *acc, struct ofa_error *err)
{
    char *tab = strchr(line, '\t');
    if (!tab)
        return ofa_error_set(err, path, ln, "malformed line: expected subnet<TAB>accuracy");
    *tab = '\0';
    const char *num = tab + 1;
    if (strchr(num, '\t'))
        return ofa_error_set(err, path, ln, "malformed line: more than two fields");
    if (*num == '\0' || *num == ' ')
        return ofa_error_set(err, path, ln, "malformed line: missing accuracy");
    char *end;
    errno = 0;
    double v = strtod(num, &end);
    if (end == num || *end != '\0' || errno == ERANGE)
        return ofa_error_set(err, path, ln, "malformed accuracy '%s'", num);
    if (!(v >= 0.0 && v <= 1.0))
        return ofa_error_set(err, path, ln, "accuracy %s is not in [0,1]", num);
    if (ofa_subnet_parse(sp, line, s, err) != 0) {
        /* keep parse's message, add where */
        if (err) {
            err->line = ln;
            snprintf(err->file, sizeof err->file, "%s", path);
        }
        return -1;
    }
    *acc = (float)v;
    return 0;
}

int ofa_measurements_load(struct ofa_measurements *m, const char *path,
                          const struct ofa_space *sp, struct ofa_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return ofa_error_set(err, path, 0, "cannot open the measurements: %s", strerror(errno));
    struct ofa_measurements tmp = {0};
    char *line = NULL;
    size_t cap = 0;
    long ln = 0;
    int rc = 0;
    ssize_t len;
    errno = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        ln++;
        if (len > 0 && line[len - 1] == '\n')
            line[--len] = '\0';
        if (len > 0 && line[len - 1] == '\r')
            line[--len] = '\0';
        if ((size_t)len != strlen(line)) {
            rc = ofa_error_set(err, path, ln, "malformed line: contains a NUL byte");
            break;
        }
        if (len == 0 || line[0] == '#')
            continue;
        struct ofa_subnet s;
        float acc = 0;
        if ((rc = parse_line(line, path, ln, sp, &s, &acc, err)) != 0)
            break;
        ofa_measurements_add(&tmp, &s, acc);
    }
    if (rc == 0 && ferror(f))
        rc = ofa_error_set(err, path, ln, "read error: %s", strerror(errno));
    free(line);
    fclose(f);
    if (rc == 0)
        for (int i = 0; i < tmp.n; i++)
            ofa_measurements_add(m, &tmp.sub[i], tmp.acc[i]);
    ofa_measurements_free(&tmp);
    return rc;
}

/* The shortest %.*g text of v that reads back as the same float. */
static void format_acc(char *buf, size_t n, float v)
{
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, n, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v)
            return;
    }
}

int ofa_measurements_save(const struct ofa_measurements *m, const char *path,
                          const struct ofa_space *sp, struct ofa_error *err)
{
    struct ofa_atomic_file af;
    FILE *f = ofa_atomic_open(&af, path, err);
    if (!f)
        return -1;
    fprintf(f, "%s\n", HEADER);
    for (int i = 0; i < m->n; i++) {
        OFA_ASSERT(ofa_subnet_valid(sp, &m->sub[i]));
        OFA_ASSERT(m->acc[i] >= 0.0f && m->acc[i] <= 1.0f);
        char text[OFA_SUBNET_TEXT_MAX], num[32];
        ofa_subnet_format(sp, &m->sub[i], text, sizeof text);
        format_acc(num, sizeof num, m->acc[i]);
        fprintf(f, "%s\t%s\n", text, num);
    }
    return ofa_atomic_commit(&af, err);
}
