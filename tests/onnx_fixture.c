/* onnx_fixture.c: test helper for tests/check_onnx.py. Builds a supernet
 * from a recipe (or the default space) with random weights and BN
 * statistics, materialises one subnet, writes it with ofa_onnx_write, and
 * writes a batch of random normalised inputs with our own float forward's
 * logits, so that runtimes we did not write can be compared with ours.
 *
 *   onnx_fixture RECIPE|default SUBNET N SEED OUTDIR [SECTION.KEY=VALUE...]
 *     SUBNET: largest, smallest, random (drawn from SEED) or canonical text;
 *     the assignments override recipe keys (as ofa-train's --set).
 *     Writes OUTDIR/model.onnx, OUTDIR/input.f32 (N images, NHWC, float32
 *     little-endian, as ofa_model_forward reads them), OUTDIR/logits.f32
 *     ([N, classes]) and OUTDIR/fixture.txt (key=value lines; class=NAME
 *     once per class, in order).
 *   onnx_fixture --refusals OUTDIR
 *     Checks that the writer refuses an inconsistent model and an
 *     unwritable path with an error naming the path, leaving no file.
 *
 * BN statistics: calibrated on random inputs (so activations keep a sane
 * scale through a deep net), then perturbed at random, with random BN
 * gamma/beta, SE and classifier biases, so that the folding matters and no
 * weight is zero or one by construction.
 */
#include <config.h>

#include "model.h"
#include "recipe.h"
#include "rng.h"
#include "space.h"
#include "supernet.h"
#include "util.h"

#include "../export/onnx.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* BN affine, biases and kernel transforms random; weights keep He init. */
static void randomize(struct ofa_supernet *net, struct ofa_rng *r)
{
    for (int i = 0; i < net->p.n; i++) {
        const char *name = net->p.t[i].name;
        float *x = ofa_param_data(&net->p, i);
        for (size_t j = 0; j < net->p.t[i].numel; j++) {
            const float u = 2.0f * ofa_rng_uniform(r) - 1.0f;
            if (ends_with(name, ".gamma"))
                x[j] = 1.0f + 0.5f * u;
            else if (ends_with(name, ".beta") || ends_with(name, ".b1") ||
                     ends_with(name, ".b2") || ends_with(name, "fc.b"))
                x[j] = 0.3f * u;
            else if (ends_with(name, ".m75") || ends_with(name, ".m53"))
                x[j] += 0.1f * u;
        }
    }
}

/* Running statistics from random inputs, then perturbed. */
static void calibrate(struct ofa_supernet *net, const struct ofa_subnet *sub, struct ofa_rng *r)
{
    const int B = 16, C = net->sp.in_channels;
    const long n = (long)B * sub->res * sub->res * C;
    float *x = ofa_xmalloc((size_t)n * sizeof *x, "calibration images");
    struct ofa_exec ex;
    ofa_exec_init(&ex, net, B);
    ofa_supernet_calib_begin(net);
    for (int b = 0; b < 2; b++) {
        ofa_rng_fill_normal(r, x, n, 1.0f);
        ofa_supernet_forward(net, &ex, sub, x, B, OFA_MODE_CALIB, 0.0f, NULL);
    }
    ofa_supernet_calib_end(net, sub);
    ofa_exec_free(&ex);
    free(x);
    for (int i = 0; i < net->p.n; i++) {
        const char *name = net->p.t[i].name;
        if (!ends_with(name, ".mean"))
            continue;
        char vname[OFA_PARAM_NAMELEN];
        snprintf(vname, sizeof vname, "%.*s.var", (int)(strlen(name) - 5), name);
        const int vi = ofa_params_find(&net->p, vname);
        OFA_ASSERT(vi >= 0);
        float *mean = ofa_param_data(&net->p, i), *var = ofa_param_data(&net->p, vi);
        for (size_t j = 0; j < net->p.t[i].numel; j++) {
            const float u = 2.0f * ofa_rng_uniform(r) - 1.0f;
            mean[j] += 0.2f * u * sqrtf(var[j] + 1e-5f);
            var[j] *= 0.6f + 0.8f * ofa_rng_uniform(r);
        }
    }
}

static void write_floats(const char *path, const float *x, long n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        ofa_fatal("cannot create %s: %s", path, strerror(errno));
    for (long i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        const unsigned char b[4] = {(unsigned char)u, (unsigned char)(u >> 8),
                                    (unsigned char)(u >> 16), (unsigned char)(u >> 24)};
        if (fwrite(b, 1, 4, f) != 4)
            ofa_fatal("write of %s failed: %s", path, strerror(errno));
    }
    if (fclose(f) != 0)
        ofa_fatal("write of %s failed: %s", path, strerror(errno));
}

/* Class names that exercise the metadata's JSON: quotes, a backslash,
 * non-ASCII UTF-8, a byte that is not UTF-8 (written as U+FFFD). */
static void class_name(int k, char *out)
{
    static const char *const special[] = {"T-shirt/top", "Ankle \"boot\"", "back\\slash",
                                          "Pull\xc3\xb6ver", "bad\xff" "byte"};
    if (k < 5)
        snprintf(out, OFA_CLASS_NAME_MAX, "%s", special[k]);
    else
        snprintf(out, OFA_CLASS_NAME_MAX, "class %d", k);
}

static void make_net(struct ofa_supernet *net, const char *recipe, int n_set,
                     char *const *set, uint64_t seed)
{
    struct ofa_recipe *rc = ofa_xmalloc(sizeof *rc, "recipe");
    struct ofa_error err;
    ofa_recipe_default(rc);
    int bad = strcmp(recipe, "default") != 0 && ofa_recipe_load(rc, recipe, &err) != 0;
    for (int i = 0; !bad && i < n_set; i++)
        bad = ofa_recipe_set(rc, set[i], &err) != 0;
    if (bad) {
        ofa_error_print(&err, "onnx_fixture");
        exit(1);
    }
    ofa_supernet_init(net, &rc->space, seed);
    free(rc);
}

static int fixture(const char *recipe, const char *subtext, int N, uint64_t seed,
                   const char *outdir, int n_set, char *const *set)
{
    struct ofa_rng r;
    ofa_rng_seed(&r, seed);
    struct ofa_supernet net;
    make_net(&net, recipe, n_set, set, seed);
    const struct ofa_space *sp = &net.sp;
    struct ofa_subnet sub;
    if (strcmp(subtext, "largest") == 0) {
        ofa_subnet_largest(sp, &sub);
    } else if (strcmp(subtext, "smallest") == 0) {
        ofa_subnet_smallest(sp, &sub);
    } else if (strcmp(subtext, "random") == 0) {
        ofa_subnet_sample(sp, &r, &sub);
    } else {
        struct ofa_error err;
        if (ofa_subnet_parse(sp, subtext, &sub, &err) != 0) {
            fprintf(stderr, "onnx_fixture: subnet %s: %s\n", subtext, err.msg);
            return 1;
        }
    }
    randomize(&net, &r);
    calibrate(&net, &sub, &r);

    struct ofa_model m;
    ofa_model_materialise(&m, &net, &sub);
    ofa_supernet_free(&net);
    snprintf(m.device, sizeof m.device, "test-device");
    m.supernet_fingerprint = 0x0123456789abcdefULL ^ seed;
    static const float mean[3] = {0.2860f, 0.4914f, 0.4822f}, stdv[3] = {0.3530f, 0.2470f,
                                                                         0.2435f};
    memcpy(m.norm_mean, mean, sizeof mean);
    memcpy(m.norm_std, stdv, sizeof stdv);
    m.class_names = ofa_xcalloc((size_t)m.num_classes, OFA_CLASS_NAME_MAX, "class names");
    for (int k = 0; k < m.num_classes; k++)
        class_name(k, m.class_names[k]);

    const size_t plen = strlen(outdir) + 32;
    char *path = ofa_xmalloc(plen, "path");
    struct ofa_error err;
    snprintf(path, plen, "%s/model.onnx", outdir);
    if (ofa_onnx_write(path, &m, &err) != 0) {
        ofa_error_print(&err, "onnx_fixture");
        return 1;
    }

    const long nx = (long)N * m.res * m.res * m.in_channels, K = m.num_classes;
    float *x = ofa_xmalloc((size_t)nx * sizeof *x, "inputs");
    ofa_rng_fill_normal(&r, x, nx, 1.0f);
    float *logits = ofa_xmalloc((size_t)(N * K) * sizeof *logits, "logits");
    float *scratch = ofa_model_scratch_alloc(&m, N);
    ofa_model_forward(&m, logits, x, N, scratch);
    snprintf(path, plen, "%s/input.f32", outdir);
    write_floats(path, x, nx);
    snprintf(path, plen, "%s/logits.f32", outdir);
    write_floats(path, logits, N * K);

    snprintf(path, plen, "%s/fixture.txt", outdir);
    FILE *f = fopen(path, "w");
    if (!f)
        ofa_fatal("cannot create %s: %s", path, strerror(errno));
    int has_se = 0, kernels = 0;
    for (int i = 0; i < m.n_layers; i++) {
        has_se |= m.layers[i].kind == OFA_LAYER_SE;
        if (m.layers[i].kind == OFA_LAYER_DW)
            kernels |= 1 << m.layers[i].K;
    }
    fprintf(f, "subnet=%s\nn=%d\nres=%d\nchannels=%d\nclasses=%d\nlayers=%d\nse=%d\n", m.subnet,
            N, m.res, m.in_channels, m.num_classes, m.n_layers, has_se);
    fprintf(f, "kernels=");
    for (int k = 1, first = 1; k < 16; k++)
        if (kernels & (1 << k))
            fprintf(f, "%s%d", first ? "" : ",", k), first = 0;
    fprintf(f, "\nfingerprint=%016llx\n", (unsigned long long)m.supernet_fingerprint);
    fprintf(f, "norm_mean=%.9g", (double)m.norm_mean[0]);
    for (int c = 1; c < m.in_channels; c++)
        fprintf(f, ",%.9g", (double)m.norm_mean[c]);
    fprintf(f, "\nnorm_std=%.9g", (double)m.norm_std[0]);
    for (int c = 1; c < m.in_channels; c++)
        fprintf(f, ",%.9g", (double)m.norm_std[c]);
    fprintf(f, "\n");
    for (int k = 0; k < m.num_classes; k++)
        fprintf(f, "class=%s\n", m.class_names[k]);
    if (fclose(f) != 0)
        ofa_fatal("write of %s failed: %s", path, strerror(errno));
    printf("%s: %s, %d layers, %ld weights\n", outdir, m.subnet, m.n_layers, m.n_weights);

    free(scratch);
    free(logits);
    free(x);
    free(path);
    ofa_model_free(&m);
    return 0;
}

static int dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        ofa_fatal("cannot open %s: %s", dir, strerror(errno));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* The writer must fail with err naming path, and leave outdir as it was. */
static int expect_refusal(const char *what, const char *path, const struct ofa_model *m,
                          const char *outdir, const char *needle)
{
    const int before = dir_entries(outdir);
    struct ofa_error err;
    memset(&err, 0, sizeof err);
    if (ofa_onnx_write(path, m, &err) == 0) {
        fprintf(stderr, "onnx_fixture: %s: the writer accepted it\n", what);
        return 1;
    }
    if (strcmp(err.file, path) != 0 || !strstr(err.msg, needle)) {
        fprintf(stderr, "onnx_fixture: %s: unexpected error \"%s: %s\" (wanted %s and \"%s\")\n",
                what, err.file, err.msg, path, needle);
        return 1;
    }
    if (dir_entries(outdir) != before) {
        fprintf(stderr, "onnx_fixture: %s: the writer left a file in %s\n", what, outdir);
        return 1;
    }
    printf("refused %s: %s: %s\n", what, err.file, err.msg);
    return 0;
}

static int refusals(const char *outdir)
{
    struct ofa_supernet net;
    struct ofa_space sp;
    ofa_space_default(&sp);
    ofa_supernet_init(&net, &sp, 3);
    struct ofa_subnet sub;
    ofa_subnet_smallest(&sp, &sub);
    struct ofa_model m;
    ofa_model_materialise(&m, &net, &sub);
    ofa_supernet_free(&net);
    const size_t plen = strlen(outdir) + 64;
    char *path = ofa_xmalloc(plen, "path");
    int bad = 0;

    snprintf(path, plen, "%s/no-such-dir/model.onnx", outdir);
    bad |= expect_refusal("a path in a missing directory", path, &m, outdir, "temporary file");

    snprintf(path, plen, "%s/model.onnx", outdir);
    int dw = 0;
    while (m.layers[dw].kind != OFA_LAYER_DW)
        dw++;
    char needle[64];
    snprintf(needle, sizeof needle, "layer %d (depthwise conv)", dw);
    const long w = m.layers[dw].w;
    m.layers[dw].w = m.n_weights - 1;
    bad |= expect_refusal("a weight offset out of range", path, &m, outdir, needle);
    m.layers[dw].w = w;
    const int in = m.layers[5].in;
    m.layers[5].in = 6;
    bad |= expect_refusal("a layer reading a later tensor", path, &m, outdir, "layer 5");
    m.layers[5].in = in;
    m.num_classes++;
    bad |= expect_refusal("logits of the wrong width", path, &m, outdir, "logits");
    m.num_classes--;

    /* The same model, intact, is written. */
    struct ofa_error err;
    if (ofa_onnx_write(path, &m, &err) != 0) {
        ofa_error_print(&err, "onnx_fixture");
        bad = 1;
    }
    free(path);
    ofa_model_free(&m);
    return bad;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--refusals") == 0)
        return refusals(argv[2]);
    if (argc < 6) {
        fprintf(stderr, "usage: %s RECIPE|default SUBNET N SEED OUTDIR [SECTION.KEY=VALUE...]\n"
                        "       %s --refusals OUTDIR\n", argv[0], argv[0]);
        return 2;
    }
    const int N = atoi(argv[3]);
    if (N < 1 || N > 4096) {
        fprintf(stderr, "onnx_fixture: N must be in [1, 4096]\n");
        return 2;
    }
    return fixture(argv[1], argv[2], N, strtoull(argv[4], NULL, 10), argv[5], argc - 6,
                   argv + 6);
}
