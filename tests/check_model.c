/* check_model.c: the exported model: materialisation (BN folded, kernel
 * transform applied) computes what the supernet view computes, model.h5
 * round trips exactly, and loading refuses damaged or inconsistent files
 * with a message that names the problem. */
#include <config.h>

#include <check.h>
#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model.h"
#include "h5file.h"
#include "rng.h"
#include "space.h"
#include "supernet.h"
#include "testutil.h"

/* A small space with every feature: SE and no SE, stride 1 and 2, residual
 * and not, elastic depth, kernel (optionally transformed), expand and
 * resolution. variant 1: RGB input, stem stride 2, stem and first widths
 * differ (no first residual), relu stem. */
static void tiny_space(struct ofa_space *sp, int transform, int variant)
{
    tu_tiny_space(sp);
    sp->kernel_transform = transform;
    sp->zero_last_gamma = 0;
    if (variant == 1) {
        sp->in_channels = 3;
        sp->stem_stride = 2;
        sp->stem_act = OFA_ACT_RELU;
        sp->first_width = 6;
        sp->stages[0] = (struct ofa_stage_cfg){6, 1, OFA_ACT_HSWISH, 1};
        sp->stages[1] = (struct ofa_stage_cfg){10, 1, OFA_ACT_RELU, 1};
        sp->n_res = 2, sp->resolutions[0] = 12, sp->resolutions[1] = 16;
        sp->num_classes = 5;
    }
}

/* Randomise every tensor, BN affine and running statistics included, so that
 * folding is really exercised and nothing passes by symmetry. */
static void randomize(struct ofa_supernet *net, uint64_t seed)
{
    struct ofa_rng r;
    ofa_rng_seed(&r, seed);
    for (int i = 0; i < net->p.n; i++) {
        const struct ofa_param *t = &net->p.t[i];
        float *x = ofa_param_data(&net->p, i);
        int is_var = strstr(t->name, ".var") != NULL, is_gamma = strstr(t->name, ".gamma") != NULL;
        int is_mean = strstr(t->name, ".mean") != NULL;
        int is_matrix = strstr(t->name, ".m75") != NULL || strstr(t->name, ".m53") != NULL;
        for (size_t j = 0; j < t->numel; j++) {
            float u = 2.0f * ofa_rng_uniform(&r) - 1.0f;
            if (is_var)
                x[j] = 0.3f + 1.5f * ofa_rng_uniform(&r);
            else if (is_gamma)
                x[j] = 1.0f + 0.5f * u;
            else if (is_mean)
                x[j] = 0.8f * u;
            else if (is_matrix)
                x[j] += 0.1f * u;
            else
                x[j] = 0.5f * u;
        }
    }
}

static int argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

static double maxabs_of(const float *x, long n)
{
    double m = 0;
    for (long i = 0; i < n; i++)
        if (fabs(x[i]) > m)
            m = fabs(x[i]);
    return m;
}

/* Logits of the model for x [N, res, res, C] (scratch from the model). */
static float *model_logits(const struct ofa_model *m, const float *x, int N)
{
    float *scr = ofa_model_scratch_alloc(m, N);
    float *out = ofa_xmalloc((size_t)N * m->num_classes * sizeof(float), "test logits");
    ofa_model_forward(m, out, x, N, scr);
    free(scr);
    return out;
}

/* Materialise sub and compare with the supernet view in OFA_MODE_EVAL on N
 * random images: relative max error and identical top-1. */
static void check_matches(struct ofa_supernet *net, struct ofa_exec *ex,
                          const struct ofa_subnet *s, int N, unsigned long seed)
{
    const struct ofa_space *sp = &net->sp;
    char text[OFA_SUBNET_TEXT_MAX];
    ofa_subnet_format(sp, s, text, sizeof text);
    struct ofa_model m;
    ofa_model_materialise(&m, net, s);
    ck_assert_str_eq(m.subnet, text);
    ck_assert_int_eq(m.res, s->res);
    ck_assert_int_eq(m.in_channels, sp->in_channels);
    ck_assert_int_eq(m.num_classes, sp->num_classes);
    ck_assert_int_eq(m.quantized, 0);
    ck_assert_int_eq(m.n_tensors, m.n_layers + 1);
    const long nx = (long)N * s->res * s->res * sp->in_channels, K = sp->num_classes;
    float *x = tu_rand(nx, 1.5f, seed, 1);
    float *a = tu_copy(ofa_supernet_forward(net, ex, s, x, N, OFA_MODE_EVAL, 0.0f, NULL), N * K);
    float *b = model_logits(&m, x, N);
    const double err = tu_maxabs(a, b, N * K), scale = maxabs_of(a, N * K);
    ck_assert_msg(scale > 1e-3, "%s: degenerate logits", text);
    ck_assert_msg(err <= 2e-5 * scale + 1e-6, "%s: model differs from the supernet by %g (scale %g)",
                  text, err, scale);
    for (int n = 0; n < N; n++)
        ck_assert_msg(argmax(a + n * K, (int)K) == argmax(b + n * K, (int)K),
                      "%s: image %d changes its top-1", text, n);
    /* A batch of one gives the first image's logits (batch independence). */
    float *c = model_logits(&m, x, 1);
    ck_assert_msg(tu_maxabs(c, b, K) <= 1e-5 * scale + 1e-7, "%s: batch of one differs by %g (scale %g)", text, tu_maxabs(c, b, K), scale);
    free(c);
    free(a);
    free(b);
    free(x);
    ofa_model_free(&m);
}

static void matches_supernet(int transform, int variant)
{
    tu_threads(2);
    struct ofa_space sp;
    tiny_space(&sp, transform, variant);
    struct ofa_supernet net;
    ofa_supernet_init(&net, &sp, 7);
    randomize(&net, 100 + (uint64_t)(transform + 2 * variant));
    struct ofa_exec ex;
    ofa_exec_init(&ex, &net, 5);
    struct ofa_subnet s;
    ofa_subnet_largest(&sp, &s);
    check_matches(&net, &ex, &s, 5, 1);
    ofa_subnet_smallest(&sp, &s);
    check_matches(&net, &ex, &s, 5, 2);
    struct ofa_rng r;
    ofa_rng_seed(&r, 42 + (uint64_t)variant);
    for (int i = 0; i < 6; i++) {
        ofa_subnet_sample(&sp, &r, &s);
        check_matches(&net, &ex, &s, 3, 3 + (unsigned long)i);
    }
    ofa_exec_free(&ex);
    ofa_supernet_free(&net);
}

START_TEST(test_model_matches_supernet_view)
{
    matches_supernet(0, 0);
}
END_TEST

START_TEST(test_model_matches_supernet_view_with_kernel_transform)
{
    matches_supernet(1, 0);
}
END_TEST

START_TEST(test_model_matches_supernet_view_rgb_stem_stride_se_everywhere)
{
    matches_supernet(1, 1);
}
END_TEST

/* The reference space mbv3-28 with random weights and BN statistics. */
START_TEST(test_model_matches_supernet_view_reference_space)
{
    tu_threads(2);
    struct ofa_space sp;
    ofa_space_default(&sp);
    sp.kernel_transform = 1;
    struct ofa_supernet net;
    ofa_supernet_init(&net, &sp, 3);
    randomize(&net, 5);
    struct ofa_exec ex;
    ofa_exec_init(&ex, &net, 2);
    static const char *const subs[] = {"r20-d2222-k33.33.33.33-e33.33.33.33",
                                       "r24-d3234-k573.35.357.7535-e463.43.634.6346"};
    for (int i = 0; i < 2; i++) {
        struct ofa_subnet s;
        struct ofa_error err;
        ck_assert_msg(ofa_subnet_parse(&sp, subs[i], &s, &err) == 0, "%s", err.msg);
        check_matches(&net, &ex, &s, 2, 50 + (unsigned long)i);
    }
    ofa_exec_free(&ex);
    ofa_supernet_free(&net);
}
END_TEST

/* The logits of a model for N images at `threads` threads, in batches of b,
 * on a scratch `skew` floats past a 64-byte boundary. */
static float *logits_in_batches(const struct ofa_model *m, const float *x, int N, int b,
                                int threads, int skew)
{
    tu_threads(threads);
    const long img = (long)m->res * m->res * m->in_channels, K = m->num_classes;
    float *scr = ofa_xzalloc64((ofa_model_scratch_size(m, b) + (size_t)skew) * sizeof(float),
                               "test scratch");
    float *out = ofa_xmalloc((size_t)(N * K) * sizeof(float), "test logits");
    for (int n0 = 0; n0 < N; n0 += b)
        ofa_model_forward(m, out + n0 * K, x + n0 * img, N - n0 < b ? N - n0 : b, scr + skew);
    free(scr);
    return out;
}

/* An image's logits are the same floats whatever the batch around it, the
 * thread count and the scratch's alignment: every product is summed in one
 * order per output (no BLAS, whose order can depend on the matrix sizes),
 * so that sub-batches may be cut to suit the threads, and no kernel's order
 * depends on where its vectors start (ofa_model_scratch_alloc's 64-byte
 * boundary is for speed only). The medium reference subnet (SE in its later
 * stages) and the tiny space's largest with an RGB stem of stride 2. */
START_TEST(test_model_logits_independent_of_batch_and_threads)
{
    for (int variant = 0; variant < 2; variant++) {
        struct ofa_space sp;
        struct ofa_supernet net;
        if (variant == 0) {
            ofa_space_default(&sp);
        } else {
            tiny_space(&sp, 1, 1);
        }
        ofa_supernet_init(&net, &sp, 3);
        randomize(&net, 11 + (uint64_t)variant);
        struct ofa_subnet s;
        struct ofa_error err;
        if (variant == 0)
            ck_assert_msg(ofa_subnet_parse(&sp, "r24-d3333-k555.555.555.555-e444.444.444.444",
                                           &s, &err) == 0, "%s", err.msg);
        else
            ofa_subnet_largest(&sp, &s);
        struct ofa_model m;
        ofa_model_materialise(&m, &net, &s);
        const int N = 41; /* more than one sub-batch of 32 at one thread */
        const long K = m.num_classes;
        float *x = tu_rand((long)N * m.res * m.res * m.in_channels, 1.5f, 77, 1);
        float *ref = logits_in_batches(&m, x, N, N, 1, 0);
        static const int batch[] = {1, 2, 3, 8, 41};
        for (int t = 1; t <= 2; t++)
            for (size_t k = 0; k < sizeof batch / sizeof *batch; k++)
                for (int skew = 0; skew <= 4 * (int)(k % 2); skew += 4) { /* 0, and 16 bytes */
                    float *got = logits_in_batches(&m, x, N, batch[k], t, skew);
                    for (long i = 0; i < N * K; i++)
                        ck_assert_msg(got[i] == ref[i],
                                      "%s: image %ld class %ld: %a in batches of %d at %d "
                                      "threads (scratch %d bytes off 64), %a in one batch at "
                                      "one thread",
                                      m.subnet, i / K, i % K, got[i], batch[k], t, 4 * skew,
                                      ref[i]);
                    free(got);
                }
        free(ref);
        free(x);
        ofa_model_free(&m);
        ofa_supernet_free(&net);
    }
}
END_TEST

/* The layer list: shapes chain, every layer writes the next tensor, folded
 * conv weights are the supernet's scaled by gamma / sqrt(var + eps). */
START_TEST(test_model_layer_list_is_consistent)
{
    struct ofa_space sp;
    tiny_space(&sp, 0, 0);
    struct ofa_supernet net;
    ofa_supernet_init(&net, &sp, 7);
    randomize(&net, 9);
    struct ofa_subnet s;
    struct ofa_error err;
    ck_assert_int_eq(ofa_subnet_parse(&sp, "r10-d21-k73.5-e32.2", &s, &err), 0);
    struct ofa_model m;
    ofa_model_materialise(&m, &net, &s);
    /* stem, first dw, first pw, add; block 1.1: exp, dw, se, proj, add;
     * block 1.2 likewise; block 2.1: exp, dw, proj (stride 2); head conv,
     * pool, fc */
    static const enum ofa_layer_kind kinds[] = {
        OFA_LAYER_CONV, OFA_LAYER_DW, OFA_LAYER_CONV, OFA_LAYER_ADD,
        OFA_LAYER_CONV, OFA_LAYER_DW, OFA_LAYER_SE, OFA_LAYER_CONV, OFA_LAYER_ADD,
        OFA_LAYER_CONV, OFA_LAYER_DW, OFA_LAYER_SE, OFA_LAYER_CONV, OFA_LAYER_ADD,
        OFA_LAYER_CONV, OFA_LAYER_DW, OFA_LAYER_CONV,
        OFA_LAYER_CONV, OFA_LAYER_POOL, OFA_LAYER_FC};
    /* parts: stem and first block, the three blocks, the head */
    static const int parts[] = {0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3, 4, 4, 4};
    const int nk = (int)(sizeof kinds / sizeof kinds[0]);
    ck_assert_int_eq(m.n_layers, nk);
    for (int i = 0; i < nk; i++) {
        const struct ofa_layer *L = &m.layers[i];
        ck_assert_int_eq(L->kind, kinds[i]);
        ck_assert_int_eq(L->part, parts[i]);
        ck_assert_int_eq(L->out, i + 1);
        const struct ofa_tshape *ti = &m.tensors[L->in], *to = &m.tensors[L->out];
        ck_assert(ti->H == L->H && ti->W == L->W && ti->C == L->Cin);
        ck_assert(to->H == L->Ho && to->W == L->Wo && to->C == L->Cout);
        ck_assert_int_eq(L->qw, -1);
    }
    ck_assert_int_eq(m.layers[3].in2, 1);                    /* stem output */
    ck_assert_int_eq(m.layers[5].K, 7);
    ck_assert_int_eq(m.layers[10].K, 3);
    ck_assert_int_eq(m.layers[15].K, 5);
    ck_assert_int_eq(m.layers[15].stride, 2);
    ck_assert_int_eq(m.layers[15].Ho, 5);
    ck_assert_int_eq(m.layers[6].R, 8);                      /* make_divisible(24/4) */
    ck_assert_int_eq(m.layers[0].act, sp.stem_act);
    ck_assert_int_eq(m.layers[4].act, OFA_ACT_RELU);
    ck_assert_int_eq(m.layers[17].act, OFA_ACT_HSWISH);
    ck_assert_int_eq(m.tensors[m.n_tensors - 1].C, 3);
    /* stem fold, channel 2, weight 5 */
    const struct ofa_params *p = &net.p;
    const double g = ofa_param_data(p, net.stem_bn.g)[2], v = ofa_param_data(p, net.stem_bn.v)[2];
    const double mu = ofa_param_data(p, net.stem_bn.m)[2], be = ofa_param_data(p, net.stem_bn.b)[2];
    const double sc = g / sqrt(v + sp.bn_eps);
    ck_assert(fabs(m.weights[m.layers[0].w + 2 * 9 + 5] -
                   ofa_param_data(p, net.stem_w)[2 * 9 + 5] * sc) < 1e-6);
    ck_assert(fabs(m.weights[m.layers[0].b + 2] - (be - mu * sc)) < 1e-6);
    /* a standalone copy of the subnet materialises to the same model */
    struct ofa_supernet sa;
    ofa_supernet_extract(&sa, &net, &s);
    struct ofa_model m2;
    ofa_model_materialise(&m2, &sa, &s);
    ck_assert_int_eq(m2.n_weights, m.n_weights);
    ck_assert_int_eq(memcmp(m2.weights, m.weights, (size_t)m.n_weights * sizeof(float)), 0);
    ofa_model_free(&m2);
    ofa_supernet_free(&sa);
    /* n_weights counts exactly the layers' arrays */
    long total = 0;
    for (int i = 0; i < nk; i++) {
        const struct ofa_layer *L = &m.layers[i];
        switch (L->kind) {
        case OFA_LAYER_CONV: total += (long)L->Cout * L->K * L->K * L->Cin + L->Cout; break;
        case OFA_LAYER_DW: total += (long)L->K * L->K * L->Cout + L->Cout; break;
        case OFA_LAYER_SE: total += 2L * L->R * L->Cin + L->R + L->Cin; break;
        case OFA_LAYER_FC: total += (long)L->Cout * L->Cin + L->Cout; break;
        default: break;
        }
    }
    ck_assert_int_eq(total, m.n_weights);
    ofa_model_free(&m);
    ofa_model_free(&m); /* a freed model is zeroed: freeing again is safe */
    ofa_supernet_free(&net);
}
END_TEST

/* ---- model.h5 ------------------------------------------------------------------ */

static char dir[64];

static void dir_setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/ofa_model_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

/* Remove dir and everything in it (one level of subdirectories). */
static void rm_tree(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char sub[1024];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            struct stat sb;
            if (lstat(sub, &sb) == 0 && S_ISDIR(sb.st_mode))
                rm_tree(sub);
            else
                unlink(sub);
        }
        closedir(d);
    }
    rmdir(path);
}

static void dir_teardown(void)
{
    rm_tree(dir);
}

static char *tpath(const char *name)
{
    static char buf[4][128];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s", dir, name);
    return b;
}

static int count_entries(const char *path)
{
    DIR *d = opendir(path);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static void assert_no_open_hdf5_objects(void)
{
    ck_assert_int_eq((int)H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL), 0);
}

/* A materialised model of the tiny space (SE, residuals, stride 2) with
 * every field the exporter fills. */
static void make_model(struct ofa_model *m, const char *subtext)
{
    struct ofa_space sp;
    tiny_space(&sp, 1, 0);
    struct ofa_supernet net;
    ofa_supernet_init(&net, &sp, 7);
    randomize(&net, 11);
    struct ofa_subnet s;
    struct ofa_error err;
    ck_assert_int_eq(ofa_subnet_parse(&sp, subtext, &s, &err), 0);
    ofa_model_materialise(m, &net, &s);
    ofa_supernet_free(&net);
    snprintf(m->device, sizeof m->device, "cortex-m7");
    m->supernet_fingerprint = 0xfedcba9876543210ULL;
    m->norm_mean[0] = 0.2860f, m->norm_std[0] = 0.3530f;
    m->class_names = calloc((size_t)m->num_classes, OFA_CLASS_NAME_MAX);
    ck_assert_ptr_nonnull(m->class_names);
    static const char *const names[] = {"T-shirt/top", "Trouser", "Pullover"};
    for (int k = 0; k < m->num_classes; k++)
        snprintf(m->class_names[k], OFA_CLASS_NAME_MAX, "%s", names[k % 3]);
}

/* Fill the int8 part by hand with arbitrary (valid) values: the offsets
 * follow the layouts of model.h, the values are random. */
static void fake_quantize(struct ofa_model *m, uint64_t seed)
{
    struct ofa_rng r;
    ofa_rng_seed(&r, seed);
    long nq = 0, nb = 0, ns = 0;
    for (int i = 0; i < m->n_layers; i++) {
        struct ofa_layer *L = &m->layers[i];
        long w = 0, b = 0, w2 = 0, b2 = 0;
        switch (L->kind) {
        case OFA_LAYER_CONV: w = (long)L->Cout * L->K * L->K * L->Cin, b = L->Cout; break;
        case OFA_LAYER_DW: w = (long)L->K * L->K * L->Cout, b = L->Cout; break;
        case OFA_LAYER_FC: w = (long)L->Cout * L->Cin, b = L->Cout; break;
        case OFA_LAYER_SE: w = (long)L->R * L->Cin, b = L->R, w2 = w, b2 = L->Cin; break;
        default: break;
        }
        if (w) {
            L->qw = nq, nq += w;
            L->qb = nb, nb += b;
            L->ws = ns, ns += b;
        }
        if (w2) {
            L->qw2 = nq, nq += w2;
            L->qb2 = nb, nb += b2;
            L->ws2 = ns, ns += b2;
        }
        if (L->act == OFA_ACT_HSWISH || L->kind == OFA_LAYER_SE)
            L->pre = (struct ofa_qp){0.05f + ofa_rng_uniform(&r), (int32_t)(ofa_rng_u64(&r) % 256) - 128};
        if (L->kind == OFA_LAYER_SE) {
            L->pool = (struct ofa_qp){0.01f + ofa_rng_uniform(&r), -3};
            L->hid = (struct ofa_qp){0.02f + ofa_rng_uniform(&r), -128};
        }
    }
    m->quantized = 1;
    m->n_qweights = nq, m->n_qbias = nb, m->n_wscale = ns;
    m->qweights = malloc((size_t)nq);
    m->qbias = malloc((size_t)nb * sizeof *m->qbias);
    m->wscale = malloc((size_t)ns * sizeof *m->wscale);
    m->tq = malloc((size_t)m->n_tensors * sizeof *m->tq);
    ck_assert(m->qweights && m->qbias && m->wscale && m->tq);
    for (long k = 0; k < nq; k++)
        m->qweights[k] = (int8_t)((int)(ofa_rng_u64(&r) % 255) - 127);
    for (long k = 0; k < nb; k++)
        m->qbias[k] = (int32_t)(uint32_t)ofa_rng_u64(&r);
    for (long k = 0; k < ns; k++)
        m->wscale[k] = 1e-4f + ofa_rng_uniform(&r) * 1e-2f;
    for (int t = 0; t < m->n_tensors; t++)
        m->tq[t] = (struct ofa_qp){0.01f + ofa_rng_uniform(&r), (int32_t)(ofa_rng_u64(&r) % 256) - 128};
}

static void assert_models_equal(const struct ofa_model *a, const struct ofa_model *b)
{
    ck_assert_str_eq(a->subnet, b->subnet);
    ck_assert_str_eq(a->device, b->device);
    ck_assert(a->supernet_fingerprint == b->supernet_fingerprint);
    ck_assert_int_eq(a->in_channels, b->in_channels);
    ck_assert_int_eq(a->res, b->res);
    ck_assert_int_eq(a->num_classes, b->num_classes);
    ck_assert(memcmp(a->norm_mean, b->norm_mean, sizeof a->norm_mean) == 0);
    ck_assert(memcmp(a->norm_std, b->norm_std, sizeof a->norm_std) == 0);
    for (int k = 0; k < a->num_classes; k++)
        ck_assert_str_eq(a->class_names[k], b->class_names[k]);
    ck_assert_int_eq(a->n_layers, b->n_layers);
    for (int i = 0; i < a->n_layers; i++) {
        const struct ofa_layer *x = &a->layers[i], *y = &b->layers[i];
        ck_assert(x->kind == y->kind && x->in == y->in && x->in2 == y->in2 && x->out == y->out);
        ck_assert(x->H == y->H && x->W == y->W && x->Cin == y->Cin);
        ck_assert(x->Ho == y->Ho && x->Wo == y->Wo && x->Cout == y->Cout);
        ck_assert(x->K == y->K && x->stride == y->stride && x->pad == y->pad && x->R == y->R);
        ck_assert(x->act == y->act);
        ck_assert(x->w == y->w && x->b == y->b && x->w2 == y->w2 && x->b2 == y->b2);
        ck_assert(x->qw == y->qw && x->qw2 == y->qw2 && x->qb == y->qb && x->qb2 == y->qb2);
        ck_assert(x->ws == y->ws && x->ws2 == y->ws2);
        ck_assert(memcmp(&x->pre, &y->pre, sizeof x->pre) == 0);
        ck_assert(memcmp(&x->pool, &y->pool, sizeof x->pool) == 0);
        ck_assert(memcmp(&x->hid, &y->hid, sizeof x->hid) == 0);
    }
    ck_assert_int_eq(a->n_tensors, b->n_tensors);
    ck_assert(memcmp(a->tensors, b->tensors, (size_t)a->n_tensors * sizeof *a->tensors) == 0);
    ck_assert_int_eq(a->n_weights, b->n_weights);
    ck_assert(memcmp(a->weights, b->weights, (size_t)a->n_weights * sizeof(float)) == 0);
    ck_assert_int_eq(a->quantized, b->quantized);
    if (a->quantized) {
        ck_assert(memcmp(a->tq, b->tq, (size_t)a->n_tensors * sizeof *a->tq) == 0);
        ck_assert_int_eq(a->n_qweights, b->n_qweights);
        ck_assert_int_eq(a->n_qbias, b->n_qbias);
        ck_assert_int_eq(a->n_wscale, b->n_wscale);
        ck_assert(memcmp(a->qweights, b->qweights, (size_t)a->n_qweights) == 0);
        ck_assert(memcmp(a->qbias, b->qbias, (size_t)a->n_qbias * sizeof(int32_t)) == 0);
        ck_assert(memcmp(a->wscale, b->wscale, (size_t)a->n_wscale * sizeof(float)) == 0);
    } else {
        ck_assert(b->tq == NULL && b->qweights == NULL && b->qbias == NULL && b->wscale == NULL);
    }
}

static void save_ok(const char *path, const struct ofa_model *m)
{
    struct ofa_error err;
    int rc = ofa_model_save(path, m, &err);
    ck_assert_msg(rc == 0, "save: %s: %s", err.file, err.msg);
    assert_no_open_hdf5_objects();
}

static void load_ok(const char *path, struct ofa_model *m)
{
    struct ofa_error err;
    int rc = ofa_model_load(path, m, &err);
    ck_assert_msg(rc == 0, "load: %s: %s", err.file, err.msg);
    assert_no_open_hdf5_objects();
}

/* Loading must fail naming the file, with `want` in the message, leave the
 * model untouched and no HDF5 object open. */
static void load_fails(const char *path, const char *want)
{
    struct ofa_model m;
    memset(&m, 0, sizeof m);
    struct ofa_error err;
    memset(&err, 0, sizeof err);
    ck_assert_msg(ofa_model_load(path, &m, &err) != 0, "%s loaded (expected: %s)", path, want);
    ck_assert_str_eq(err.file, path);
    ck_assert_msg(strstr(err.msg, want) != NULL, "message \"%s\" lacks \"%s\"", err.msg, want);
    ck_assert(m.layers == NULL && m.weights == NULL && m.n_layers == 0);
    assert_no_open_hdf5_objects();
}

static unsigned char *slurp(const char *path, long *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)*n + 1);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq((long)fread(b, 1, (size_t)*n, f), *n);
    fclose(f);
    return b;
}

START_TEST(test_save_load_round_trip_is_exact)
{
    struct ofa_model m, l;
    make_model(&m, "r10-d21-k73.5-e32.2");
    save_ok(tpath("model.h5"), &m);
    memset(&l, 0, sizeof l);
    load_ok(tpath("model.h5"), &l);
    assert_models_equal(&m, &l);
    /* identical logits, bit for bit */
    float *x = tu_rand(3L * m.res * m.res * m.in_channels, 1.0f, 77, 0);
    float *a = model_logits(&m, x, 3), *b = model_logits(&l, x, 3);
    ck_assert(memcmp(a, b, 3 * (size_t)m.num_classes * sizeof(float)) == 0);
    /* the same model gives the same bytes */
    save_ok(tpath("again.h5"), &l);
    long na, nb;
    unsigned char *fa = slurp(tpath("model.h5"), &na), *fb = slurp(tpath("again.h5"), &nb);
    ck_assert_int_eq(na, nb);
    ck_assert(memcmp(fa, fb, (size_t)na) == 0);
    free(fa);
    free(fb);
    free(x);
    free(a);
    free(b);
    ofa_model_free(&m);
    ofa_model_free(&l);
}
END_TEST

START_TEST(test_quantized_round_trip_keeps_int8_arrays)
{
    struct ofa_model m, l;
    make_model(&m, "r8-d12-k3.53-e2.32");
    fake_quantize(&m, 5);
    save_ok(tpath("q.h5"), &m);
    memset(&l, 0, sizeof l);
    load_ok(tpath("q.h5"), &l);
    assert_models_equal(&m, &l);
    ofa_model_free(&m);
    ofa_model_free(&l);
}
END_TEST

START_TEST(test_model_without_class_names_gets_index_names)
{
    struct ofa_model m, l;
    make_model(&m, "r8-d11-k3.3-e2.2");
    free(m.class_names);
    m.class_names = NULL;
    save_ok(tpath("n.h5"), &m);
    memset(&l, 0, sizeof l);
    load_ok(tpath("n.h5"), &l);
    ck_assert_str_eq(l.class_names[0], "0");
    ck_assert_str_eq(l.class_names[2], "2");
    ofa_model_free(&m);
    ofa_model_free(&l);
}
END_TEST

/* ---- damaged files: each made from a good one through the HDF5 API --------- */

static hid_t open_rw(const char *path)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert_int_ge(f, 0);
    return f;
}

static void set_attr_str(const char *path, const char *name, const char *val)
{
    hid_t f = open_rw(path);
    ck_assert_int_ge(H5Adelete(f, name), 0);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(val) + 1);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(H5Awrite(a, t, val), 0);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    tu_h5_close_resealed(f);
}

static void set_attr_int(const char *path, const char *name, int v)
{
    hid_t f = open_rw(path);
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    ck_assert_int_ge(H5Awrite(a, H5T_NATIVE_INT, &v), 0);
    H5Aclose(a);
    tu_h5_close_resealed(f);
}

static void delete_attr(const char *path, const char *name)
{
    hid_t f = open_rw(path);
    ck_assert_int_ge(H5Adelete(f, name), 0);
    tu_h5_close_resealed(f);
}

static void delete_link(const char *path, const char *name)
{
    hid_t f = open_rw(path);
    ck_assert_int_ge(H5Ldelete(f, name, H5P_DEFAULT), 0);
    tu_h5_close_resealed(f);
}

/* Replace (or add) dataset name with n elements of type ftype, value 0. */
static void put_zeros(const char *path, const char *name, hid_t ftype, hsize_t n)
{
    hid_t f = open_rw(path);
    if (H5Lexists(f, name, H5P_DEFAULT) > 0)
        ck_assert_int_ge(H5Ldelete(f, name, H5P_DEFAULT), 0);
    double *z = calloc((size_t)n, sizeof *z);
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t d = H5Dcreate2(f, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(d, 0);
    ck_assert_int_ge(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, z), 0);
    H5Dclose(d);
    H5Sclose(sp);
    tu_h5_close_resealed(f);
    free(z);
}

/* Set one int32 or int64 field of one row of /layers (partial compound I/O). */
static void set_layer_field(const char *path, int row, const char *field, long long v)
{
    hid_t f = open_rw(path);
    hid_t d = H5Dopen2(f, "/layers", H5P_DEFAULT);
    ck_assert_int_ge(d, 0);
    hid_t mt = H5Tcreate(H5T_COMPOUND, sizeof(long long));
    H5Tinsert(mt, field, 0, H5T_NATIVE_LLONG);
    hid_t fs = H5Dget_space(d);
    hsize_t start = (hsize_t)row, count = 1;
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &count, NULL);
    hid_t ms = H5Screate_simple(1, &count, NULL);
    ck_assert_int_ge(H5Dwrite(d, mt, ms, fs, H5P_DEFAULT, &v), 0);
    H5Sclose(ms);
    H5Sclose(fs);
    H5Tclose(mt);
    H5Dclose(d);
    tu_h5_close_resealed(f);
}

/* Overwrite the stored bytes of one int32 field of one row of /layers in
 * the file itself (values the HDF5 API would refuse to write, such as a
 * layer kind outside the enumeration). */
static void poke_layer_i32(const char *path, int row, const char *field, int32_t v)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert_int_ge(f, 0);
    hid_t d = H5Dopen2(f, "/layers", H5P_DEFAULT);
    hid_t t = H5Dget_type(d);
    int idx = H5Tget_member_index(t, field);
    ck_assert_int_ge(idx, 0);
    haddr_t base = H5Dget_offset(d);
    ck_assert(base != HADDR_UNDEF);
    long off = (long)base + (long)row * (long)H5Tget_size(t) +
               (long)H5Tget_member_offset(t, (unsigned)idx);
    H5Tclose(t);
    H5Dclose(d);
    H5Fclose(f);
    FILE *fp = fopen(path, "r+b");
    ck_assert_ptr_nonnull(fp);
    const unsigned char le[4] = {(unsigned char)v, (unsigned char)(v >> 8),
                                 (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
    ck_assert_int_eq(fseek(fp, off, SEEK_SET), 0);
    ck_assert_int_eq((int)fwrite(le, 1, 4, fp), 4);
    ck_assert_int_eq(fclose(fp), 0);
    struct ofa_error e;
    ck_assert_msg(ofa_h5_header_seal(path, OFA_H5_MAGIC, &e) == 0, "%s", e.msg);
}

static void copy_file(const char *from, const char *to)
{
    long n;
    unsigned char *b = slurp(from, &n);
    FILE *f = fopen(to, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq((long)fwrite(b, 1, (size_t)n, f), n);
    ck_assert_int_eq(fclose(f), 0);
    free(b);
}

START_TEST(test_load_refuses_damaged_or_inconsistent_files)
{
    struct ofa_model m;
    make_model(&m, "r10-d21-k73.5-e32.2");
    const char *good = tpath("good.h5");
    save_ok(good, &m);
    char *p = tpath("bad.h5");
    int fc = m.n_layers - 1; /* the classifier */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);

    copy_file(good, p), set_attr_str(p, "format", "ofa-supernet");
    load_fails(p, "format is \"ofa-supernet\", expected \"ofa-model\"");
    copy_file(good, p), set_attr_int(p, "format_version", OFA_MODEL_VERSION + 1);
    load_fails(p, "newer");
    copy_file(good, p), delete_attr(p, "res");
    load_fails(p, "missing root attribute \"res\"");
    copy_file(good, p), set_attr_int(p, "res", 12);
    load_fails(p, "tensor 0 has shape [10,10,1], expected the input [12,12,1]");
    copy_file(good, p), delete_link(p, "/weights");
    load_fails(p, "missing dataset /weights");
    copy_file(good, p), delete_link(p, "/class_names");
    load_fails(p, "missing dataset /class_names");
    copy_file(good, p), put_zeros(p, "/weights", H5T_IEEE_F64LE, (hsize_t)m.n_weights);
    load_fails(p, "/weights has type 64-bit float, expected 32-bit float");
    copy_file(good, p), put_zeros(p, "/weights", H5T_IEEE_F32LE, 10);
    load_fails(p, "out of range of weights [10]");
    copy_file(good, p), put_zeros(p, "/extra", H5T_IEEE_F32LE, 4);
    load_fails(p, "unexpected object /extra");
    copy_file(good, p), set_attr_int(p, "quantized", 1);
    load_fails(p, "/quant is missing");
    copy_file(good, p), set_layer_field(p, 6, "in", 99);
    load_fails(p, "layer 6 (se): input tensor 99 is out of range [0, 6]");
    copy_file(good, p), set_layer_field(p, 8, "in2", 9);
    load_fails(p, "layer 8 (add): second input tensor 9 is out of range");
    copy_file(good, p), set_layer_field(p, fc, "w", m.n_weights - 2);
    load_fails(p, "(fc): w = ");
    copy_file(good, p), set_layer_field(p, 3, "b", 0);
    load_fails(p, "layer 3 (add): b is 0, expected -1 (absent)");
    copy_file(good, p), set_layer_field(p, 2, "Cout", 9);
    load_fails(p, "layer 2 (conv): output shape [10,10,9] differs from tensor 3");
    copy_file(good, p), set_layer_field(p, 5, "K", 4);
    load_fails(p, "layer 5 (dw): K 4");
    copy_file(good, p), poke_layer_i32(p, 5, "kind", 9);
    load_fails(p, "unknown kind or activation");
    copy_file(good, p), poke_layer_i32(p, 0, "act", -5);
    load_fails(p, "unknown kind or activation");
    copy_file(good, p), poke_layer_i32(p, 1, "K", 5); /* poking an int works the same way */
    load_fails(p, "layer 1 (dw): K 5, stride 1, pad 1 are not supported");

    /* the integrity header: a cut, a changed byte anywhere after the user
     * block, a broken header, a file without one */
    long n;
    unsigned char *b = slurp(good, &n);
    FILE *f = fopen(p, "wb");
    ck_assert_int_eq((long)fwrite(b, 1, (size_t)(n / 2), f), n / 2);
    fclose(f);
    load_fails(p, "truncated or appended to");
    for (long pos = 512; pos < n; pos += n / 37) {
        b[pos] ^= 0x40;
        f = fopen(p, "wb");
        ck_assert_int_eq((long)fwrite(b, 1, (size_t)n, f), n);
        fclose(f);
        b[pos] ^= 0x40;
        load_fails(p, "checksum mismatch");
    }
    memset(b, 0x55, 8);
    f = fopen(p, "wb");
    ck_assert_int_eq((long)fwrite(b, 1, (size_t)n, f), n);
    fclose(f);
    load_fails(p, "not an ofa model file (no \"OFA-HDF5\" integrity header)");
    free(b);
    hid_t h = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(h, 0);
    H5Fclose(h);
    load_fails(p, "an HDF5 file without the \"OFA-HDF5\" integrity header");
    load_fails(tpath("absent.h5"), "cannot open");
    load_fails(dir, "not a regular file");
    ofa_model_free(&m);
}
END_TEST

START_TEST(test_load_checks_int8_parts)
{
    struct ofa_model m;
    make_model(&m, "r8-d11-k3.3-e2.2");
    fake_quantize(&m, 9);
    const char *good = tpath("q.h5");
    save_ok(good, &m);
    char *p = tpath("bad.h5");
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    copy_file(good, p), delete_link(p, "/quant/qbias");
    load_fails(p, "missing dataset /quant/qbias");
    copy_file(good, p), put_zeros(p, "/quant/qweights", H5T_STD_I16LE, (hsize_t)m.n_qweights);
    load_fails(p, "/quant/qweights has type 16-bit integer, expected signed 8-bit integer");
    copy_file(good, p), put_zeros(p, "/quant/tensor_scale", H5T_IEEE_F32LE, (hsize_t)m.n_tensors);
    load_fails(p, "tensor 0 has quantization scale 0");
    copy_file(good, p), put_zeros(p, "/quant/tensor_zp", H5T_STD_I32LE, 3);
    load_fails(p, "/quant/tensor_zp has shape [3], expected [");
    copy_file(good, p), set_layer_field(p, 0, "qb", m.n_qbias);
    load_fails(p, "layer 0 (conv): qb = ");
    copy_file(good, p), set_layer_field(p, 0, "pre_zp", 200);
    load_fails(p, "layer 0: pre zero point 200 is outside [-128, 127]");
    copy_file(good, p), set_attr_int(p, "quantized", 0);
    load_fails(p, "unexpected object /quant");
    ofa_model_free(&m);
}
END_TEST

START_TEST(test_failed_save_leaves_previous_file_and_no_partial_file)
{
    struct ofa_model m;
    make_model(&m, "r8-d11-k3.3-e2.2");
    const char *path = tpath("model.h5");
    save_ok(path, &m);
    long n0;
    unsigned char *before = slurp(path, &n0);
    struct ofa_error err;
    /* an invalid model is refused before anything is written */
    m.layers[2].in = 7;
    ck_assert_int_ne(ofa_model_save(path, &m, &err), 0);
    ck_assert_str_eq(err.file, path);
    ck_assert_msg(strstr(err.msg, "refusing to save an invalid model: layer 2 (conv): input "
                                  "tensor 7") != NULL, "%s", err.msg);
    m.layers[2].in = 2;
    /* the rename fails: the target is a non-empty directory */
    char *blocked = tpath("blocked.h5");
    ck_assert_int_eq(mkdir(blocked, 0700), 0);
    char inner[160];
    snprintf(inner, sizeof inner, "%s/keep", blocked);
    FILE *f = fopen(inner, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    ck_assert_int_ne(ofa_model_save(blocked, &m, &err), 0);
    ck_assert_str_eq(err.file, blocked);
    ck_assert_msg(strstr(err.msg, "cannot rename") != NULL, "%s", err.msg);
    /* a directory that does not exist */
    char *nowhere = tpath("no/such/dir/model.h5");
    ck_assert_int_ne(ofa_model_save(nowhere, &m, &err), 0);
    ck_assert_str_eq(err.file, nowhere);
    ck_assert_msg(strstr(err.msg, "temporary file") != NULL, "%s", err.msg);
    assert_no_open_hdf5_objects();
    /* nothing but model.h5 and the directory remain; model.h5 is unchanged */
    ck_assert_int_eq(count_entries(dir), 2);
    long n1;
    unsigned char *after = slurp(path, &n1);
    ck_assert(n0 == n1 && memcmp(before, after, (size_t)n0) == 0);
    struct ofa_model l;
    memset(&l, 0, sizeof l);
    load_ok(path, &l);
    ofa_model_free(&l);
    free(before);
    free(after);
    ofa_model_free(&m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("model");
    TCase *tm = tcase_create("materialise");
    tcase_set_timeout(tm, 120);
    tcase_add_test(tm, test_model_layer_list_is_consistent);
    tcase_add_test(tm, test_model_matches_supernet_view);
    tcase_add_test(tm, test_model_matches_supernet_view_with_kernel_transform);
    tcase_add_test(tm, test_model_matches_supernet_view_rgb_stem_stride_se_everywhere);
    tcase_add_test(tm, test_model_matches_supernet_view_reference_space);
    tcase_add_test(tm, test_model_logits_independent_of_batch_and_threads);
    suite_add_tcase(s, tm);
    TCase *th = tcase_create("h5");
    tcase_add_checked_fixture(th, dir_setup, dir_teardown);
    tcase_set_timeout(th, 60);
    tcase_add_test(th, test_save_load_round_trip_is_exact);
    tcase_add_test(th, test_quantized_round_trip_keeps_int8_arrays);
    tcase_add_test(th, test_model_without_class_names_gets_index_names);
    tcase_add_test(th, test_load_refuses_damaged_or_inconsistent_files);
    tcase_add_test(th, test_load_checks_int8_parts);
    tcase_add_test(th, test_failed_save_leaves_previous_file_and_no_partial_file);
    suite_add_tcase(s, th);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    return nf ? EXIT_FAILURE : EXIT_SUCCESS;
}
