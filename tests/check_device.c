/* check_device.c: device profiles: exact int8 flash and SRAM of the reference
 * subnets (counted by hand below), monotonicity, the opcount and lut latency
 * models, lut tables' errors (file:line), and sanity of the host-profiled
 * measured and opwise predictors (no assertion on absolute speed). */
#include <config.h>

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blas.h"
#include "device.h"
#include "recipe.h"
#include "rng.h"
#include "space.h"
#include "supernet.h"
#include "testutil.h"
#include "util.h"

static const char *srcdir(void)
{
    const char *d = getenv("OFA_SRCDIR");
    return d && *d ? d : ".";
}

static void parse(const struct ofa_space *sp, const char *text, struct ofa_subnet *s)
{
    struct ofa_error err = {0};
    ck_assert_msg(ofa_subnet_parse(sp, text, s, &err) == 0, "%s: %s", text, err.msg);
}

/* The smallest reference subnet r20-d2222-k33.33.33.33-e33.33.33.33, by hand.
 * R = 20, the stem keeps H = 20. Widths 16 | 24 (s2, relu) | 40 (s2, hswish,
 * SE) | 64 (s2, hswish) | 96 (s1, hswish, SE); mid = 3 x cin; SE squeezes to
 * make_divisible(mid / 4, 8): 72 -> 24 (16 is more than 10% below 18),
 * 120 -> 32, 192 -> 48, 288 -> 72.
 *
 * Flash: int8 weights + 4-byte bias per output channel:
 *   stem 3x3 1->16       144 + 64                                =    208
 *   first dw3 16         144 + 64                                =    208
 *   first pw 16->16      256 + 64                                =    320
 *   s1b1 16->48->24      768+192, 432+192, 1152+96               =   2832
 *   s1b2 24->72->24      1728+288, 648+288, 1728+96              =   4776
 *   s2b1 24->72->40 SE24 2016, 936, SE 1728+96+1728+288, 2880+160 =   9832
 *   s2b2 40->120->40 SE32 5280, 1560, SE 3840+128+3840+480, 4960  =  20088
 *   s3b1 40->120->64     5280, 1560, 7680+256                    =  14776
 *   s3b2 64->192->64     13056, 2496, 12288+256                  =  28096
 *   s4b1 64->192->96 SE48 13056, 2496, SE 9216+192+9216+768, 18432+384 = 53760
 *   s4b2 96->288->96 SE72 28800, 3744, SE 20736+288+20736+1152, 28032 = 103488
 *   head 96->384         36864 + 1536                            =  38400
 *   classifier 384->10   3840 + 40                               =   3880
 *   weights and biases                                           = 280664
 * plus what model.c adds (lib/device.h):
 *   multiplier and shift, 5 bytes x 3946 output channels          =  19730
 *   hswish tables: stem, expand and dw of stages 2-4, head: 14 x 256 = 3584
 *   hsigmoid tables of the 4 SE blocks, 4 x 512                   =   2048
 *   layer table, 39 layers (3 + add, 32 in blocks, head 3) x 208  =   8112
 *   network 32, input table 256, class-name pointers 10 x 9       =    378
 *   kernels' code                                                 =   3300
 *   total                                                        = 317816
 * SRAM = max over layers of live int8 bytes (input + output + residual
 * source):
 *   stem 400 + 6400 = 6800; first dw 12800; first pw 6400 + 6400 + 6400 =
 *   19200; s1b1 expand 20x20x16 + 20x20x48 = 6400 + 19200 = 25600 (dw
 *   19200 + 10x10x48 = 24000, project 4800 + 2400 = 7200); every later
 *   layer is smaller (s1b2 dw 7200 + 7200 + 2400 = 16800, ...; head 864 +
 *   3456 = 4320): peak 25600. */
START_TEST(test_smallest_subnet_memory_matches_hand_count)
{
    struct ofa_space sp;
    ofa_space_default(&sp);
    struct ofa_subnet s, t;
    parse(&sp, "r20-d2222-k33.33.33.33-e33.33.33.33", &s);
    ofa_subnet_smallest(&sp, &t);
    ck_assert(memcmp(&s, &t, sizeof s) == 0);
    ck_assert_int_eq(ofa_subnet_flash_bytes(&sp, &s), 317816);
    ck_assert_int_eq(ofa_subnet_sram_bytes(&sp, &s), 25600);
}
END_TEST

/* The largest subnet r28-d4444-k7777.7777.7777.7777-e6666.6666.6666.6666:
 * its SRAM peak is the first block of stage 1: the depthwise layer reads the
 * 28x28x96 expanded tensor (75264) and writes 14x14x96 (18816): 94080; the
 * expand before it holds 12544 + 75264 = 87808. */
START_TEST(test_largest_subnet_needs_more_memory)
{
    struct ofa_space sp;
    ofa_space_default(&sp);
    struct ofa_subnet small, big;
    ofa_subnet_smallest(&sp, &small);
    ofa_subnet_largest(&sp, &big);
    ck_assert_int_eq(ofa_subnet_sram_bytes(&sp, &big), 94080);
    long long fs = ofa_subnet_flash_bytes(&sp, &small), fb = ofa_subnet_flash_bytes(&sp, &big);
    ck_assert_int_gt(fb, 5 * fs);
    /* flash = parameters + 2 bytes per BN channel (int32 bias instead of
     * gamma and beta) + 3 per SE / classifier bias: within 10% of params */
    long long pb = ofa_subnet_params(&sp, &big);
    ck_assert(fb > pb && fb < pb + pb / 10);
}
END_TEST

/* Growing any one gene (expand ratio, kernel, depth, resolution) never
 * shrinks flash or SRAM; expand, kernel and depth strictly grow flash. */
START_TEST(test_memory_is_monotone_in_every_gene)
{
    struct ofa_space sp;
    ofa_space_default(&sp);
    struct ofa_rng rng;
    ofa_rng_seed(&rng, 11);
    for (int it = 0; it < 300; it++) {
        struct ofa_subnet s, g;
        ofa_subnet_sample(&sp, &rng, &s);
        g = s;
        int st = (int)ofa_rng_below(&rng, (uint32_t)sp.n_stages);
        int b = (int)ofa_rng_below(&rng, (uint32_t)s.depth[st]);
        int what = (int)ofa_rng_below(&rng, 4), strict = 1;
        if (what == 0 && g.expand[st][b] < sp.expands[sp.n_expands - 1])
            g.expand[st][b] = sp.expands[sp.n_expands - 1];
        else if (what == 1 && g.kernel[st][b] < sp.kernels[sp.n_kernels - 1])
            g.kernel[st][b] = sp.kernels[sp.n_kernels - 1];
        else if (what == 2 && g.depth[st] < ofa_space_max_depth(&sp)) {
            g.kernel[st][g.depth[st]] = sp.kernels[0];
            g.expand[st][g.depth[st]] = sp.expands[0];
            g.depth[st]++;
        } else {
            g.res = ofa_space_max_res(&sp);
            strict = 0;
        }
        if (memcmp(&s, &g, sizeof s) == 0)
            continue;
        long long f0 = ofa_subnet_flash_bytes(&sp, &s), f1 = ofa_subnet_flash_bytes(&sp, &g);
        ck_assert(strict ? f1 > f0 : f1 == f0); /* resolution changes no weight */
        ck_assert_int_ge(ofa_subnet_sram_bytes(&sp, &g), ofa_subnet_sram_bytes(&sp, &s));
    }
}
END_TEST

static struct ofa_device device(const char *name, enum ofa_latency_model m)
{
    struct ofa_device d;
    memset(&d, 0, sizeof d);
    snprintf(d.name, sizeof d.name, "%s", name);
    d.model = m;
    return d;
}

START_TEST(test_opcount_is_a_times_mmacs_plus_b)
{
    struct ofa_space sp;
    ofa_space_default(&sp);
    struct ofa_supernet net;
    ofa_supernet_init(&net, &sp, 1);
    struct ofa_device d = device("m", OFA_LAT_OPCOUNT);
    struct ofa_latency *lat;
    struct ofa_error err = {0};
    ck_assert_int_ne(ofa_latency_init(&lat, &d, &net, NULL, &err), 0); /* a = 0 */
    ck_assert_ptr_null(lat);
    ck_assert_ptr_nonnull(strstr(err.msg, "a_ms_per_mmac"));
    d.a_ms_per_mmac = 13.9;
    d.b_ms = 1;
    ck_assert_int_eq(ofa_latency_init(&lat, &d, &net, NULL, &err), 0);
    ck_assert_int_eq(ofa_latency_model(lat), OFA_LAT_OPCOUNT);
    struct ofa_subnet s;
    ofa_subnet_smallest(&sp, &s);
    double want = 13.9 * 3.276856 + 1; /* 3,276,856 MACs */
    ck_assert_double_eq_tol(ofa_latency_predict(lat, &s), want, 1e-9);
    FILE *f = tmpfile();
    ck_assert_int_ne(ofa_latency_write_lut(lat, f, NULL), 0); /* no per-block figures */
    fclose(f);
    ofa_latency_free(lat);
    ofa_latency_free(NULL);
    ofa_supernet_free(&net);
}
END_TEST

/* Sum of the example table's rows for one subnet, read here independently. */
static double lut_sum(const char *path, const struct ofa_space *sp, const struct ofa_subnet *s)
{
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char line[512];
    double sum = 0;
    int rows = 0, header = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#')
            continue;
        if (!header++) {
            ck_assert_str_eq(line, "stage\tblock\tcin\tcout\tstride\th\tkernel\texpand\tse\tact\t"
                                   "latency_ms\n");
            continue;
        }
        char stage[16], v[8][16];
        int h, st, blk, k, e;
        double ms;
        ck_assert_int_eq(sscanf(line, "%15s %15s %15s %15s %15s %d %15s %15s %15s %15s %lf", stage,
                                v[0], v[1], v[2], v[3], &h, v[4], v[5], v[6], v[7], &ms), 11);
        if (!strcmp(stage, "stem") || !strcmp(stage, "head")) {
            if (h == s->res)
                sum += ms, rows++;
            continue;
        }
        /* the input size h of a block identifies the resolution */
        st = atoi(stage) - 1, blk = atoi(v[0]) - 1, k = atoi(v[4]), e = atoi(v[5]);
        int H = s->res;
        for (int i = 0; i < st; i++)
            H = (H - 1) / sp->stages[i].stride + 1;
        if (blk > 0)
            H = (H - 1) / sp->stages[st].stride + 1;
        if (blk < s->depth[st] && h == H && s->kernel[st][blk] == k && s->expand[st][blk] == e)
            sum += ms, rows++;
    }
    fclose(f);
    int want = 2;
    for (int i = 0; i < sp->n_stages; i++)
        want += s->depth[i];
    ck_assert_int_eq(rows, want);
    return sum;
}

START_TEST(test_lut_predicts_stem_plus_blocks_plus_head)
{
    struct ofa_space sp;
    ofa_space_default(&sp);
    struct ofa_supernet net;
    ofa_supernet_init(&net, &sp, 1);
    char base[1024], path[1100];
    snprintf(base, sizeof base, "%s/recipes", srcdir());
    snprintf(path, sizeof path, "%s/devices/example-lut.tsv", base);
    struct ofa_device d = device("example", OFA_LAT_LUT);
    struct ofa_latency *lat;
    struct ofa_error err = {0};
    ck_assert_int_ne(ofa_latency_init(&lat, &d, &net, base, &err), 0); /* no table named */
    snprintf(d.lut, sizeof d.lut, "devices/example-lut.tsv");
    ck_assert_msg(ofa_latency_init(&lat, &d, &net, base, &err) == 0, "%s:%ld: %s", err.file,
                  err.line, err.msg);
    struct ofa_rng rng;
    ofa_rng_seed(&rng, 3);
    for (int i = 0; i < 20; i++) {
        struct ofa_subnet s;
        if (i == 0)
            ofa_subnet_smallest(&sp, &s);
        else if (i == 1)
            ofa_subnet_largest(&sp, &s);
        else
            ofa_subnet_sample(&sp, &rng, &s);
        ck_assert_double_eq_tol(ofa_latency_predict(lat, &s), lut_sum(path, &sp, &s), 1e-9);
    }
    /* Written back out, the table reads back to the same predictor. */
    char dir[] = "/tmp/ofa-lut-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    struct ofa_device d2 = device("copy", OFA_LAT_LUT);
    snprintf(d2.lut, sizeof d2.lut, "%s/copy.tsv", dir);
    FILE *f = fopen(d2.lut, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(ofa_latency_write_lut(lat, f, "a copy\nof the example"), 0);
    fclose(f);
    struct ofa_latency *lat2;
    ck_assert_msg(ofa_latency_init(&lat2, &d2, &net, "/nonexistent", &err) == 0, "%s", err.msg);
    struct ofa_subnet s;
    ofa_subnet_largest(&sp, &s);
    ck_assert_double_eq_tol(ofa_latency_predict(lat, &s), ofa_latency_predict(lat2, &s), 1e-5);
    remove(d2.lut);
    remove(dir);
    ofa_latency_free(lat2);
    ofa_latency_free(lat);
    ofa_supernet_free(&net);
}
END_TEST

/* Bad tables: each error names the file and the line (0 for a row that is
 * missing) and says what is wrong. */
static const struct bad_lut {
    const char *text;
    long line;
    const char *want1, *want2;
} bad_luts[] = {
    {"# c\nstage\tblock\tcin\tcout\tstride\th\tkernel\texpand\tse\tact\tlatency\n", 2,
     "unknown column", "latency"},
    {"stage\tblock\tcin\tcout\tstride\th\tkernel\texpand\tse\tact\n", 1, "lacks column",
     "latency_ms"},
    {"stage\tblock\tcin\tcout\tstride\th\th\tkernel\texpand\tse\tact\tlatency_ms\n", 1, "twice",
     "h"},
    {"stage\tblock\tcin\tcout\tstride\th\tkernel\texpand\tse\tact\tlatency_ms\n"
     "stem\t-\t-\t-\t-\t20\t-\t-\t-\t-\n", 2, "expected 11", "fields"},
    {"stage\tblock\tcin\tcout\tstride\th\tkernel\texpand\tse\tact\tlatency_ms\n\n"
     "1\t1\t16\t24\t2\t20\t3\t3\tmaybe\trelu\t0.1\n", 3, "se", "yes or no"},
    {"stage\tblock\tcin\tcout\tstride\th\tkernel\texpand\tse\tact\tlatency_ms\n"
     "1\t1\t16\t24\t2\t20\t3\t3\tno\trelu\t-0.1\n", 2, "latency_ms", ">= 0"},
    {"stage\tblock\tcin\tcout\tstride\th\tkernel\texpand\tse\tact\tlatency_ms\n"
     "9\t1\t16\t24\t2\t20\t3\t3\tno\trelu\t0.1\n", 2, "stage", "stem, head"},
    {"stage\tblock\tcin\tcout\tstride\th\tkernel\texpand\tse\tact\tlatency_ms\n"
     "head\t-\t-\t-\t-\t20\t3\t-\t-\t-\t0.1\n", 2, "kernel", "head row"},
    {"stage\tblock\tcin\tcout\tstride\th\tkernel\texpand\tse\tact\tlatency_ms\n"
     "stem\t-\t-\t-\t-\t20\t-\t-\t-\t-\t0.1\nstem\t-\t-\t-\t-\t20\t-\t-\t-\t-\t0.2\n", 3,
     "duplicate", "line 2"},
    {"# only comments\n", 0, "no header", "latency_ms"},
    /* well formed, but lacks what the space needs */
    {"stage\tblock\tcin\tcout\tstride\th\tkernel\texpand\tse\tact\tlatency_ms\n"
     "stem\t-\t-\t-\t-\t20\t-\t-\t-\t-\t0.1\n", 0, "no row for head", "resolution 20"},
};

START_TEST(test_bad_lut_tables_name_file_and_line)
{
    const struct bad_lut *c = &bad_luts[_i];
    struct ofa_space sp;
    ofa_space_default(&sp);
    struct ofa_supernet net;
    ofa_supernet_init(&net, &sp, 1);
    char dir[] = "/tmp/ofa-lut-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/bad.tsv", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(c->text, f);
    fclose(f);
    struct ofa_device d = device("bad", OFA_LAT_LUT);
    snprintf(d.lut, sizeof d.lut, "bad.tsv");
    struct ofa_latency *lat;
    struct ofa_error err = {0};
    ck_assert_int_ne(ofa_latency_init(&lat, &d, &net, dir, &err), 0);
    ck_assert_ptr_null(lat);
    ck_assert_str_eq(err.file, path);
    ck_assert_msg(err.line == c->line && strstr(err.msg, c->want1) && strstr(err.msg, c->want2),
                  "case %d: line %ld (want %ld): %s", _i, err.line, c->line, err.msg);
    remove(path);
    remove(dir);
    ofa_supernet_free(&net);
}
END_TEST

/* A table without one block configuration: the error names it. */
START_TEST(test_lut_missing_configuration_is_named)
{
    struct ofa_space sp;
    ofa_space_default(&sp);
    struct ofa_supernet net;
    ofa_supernet_init(&net, &sp, 1);
    char src[1100], dir[] = "/tmp/ofa-lut-XXXXXX", path[256];
    snprintf(src, sizeof src, "%s/recipes/devices/example-lut.tsv", srcdir());
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/cut.tsv", dir);
    FILE *in = fopen(src, "r"), *out = fopen(path, "w");
    ck_assert(in && out);
    char line[512];
    /* stage 3's later blocks at R20 and R24 (input 3x3 at both) */
    const char *drop = "3\t2\t64\t64\t1\t3\t5\t6\tno\thswish\t";
    while (fgets(line, sizeof line, in))
        if (strncmp(line, drop, strlen(drop)) != 0)
            fputs(line, out);
    fclose(in);
    fclose(out);
    struct ofa_device d = device("cut", OFA_LAT_LUT);
    snprintf(d.lut, sizeof d.lut, "%s", path);
    struct ofa_latency *lat;
    struct ofa_error err = {0};
    ck_assert_int_ne(ofa_latency_init(&lat, &d, &net, NULL, &err), 0);
    ck_assert_msg(strstr(err.msg, "stage 3 block 2 (cin 64, cout 64, stride 1, h 3, kernel 5, "
                                  "expand 6, se no, act hswish)") && strstr(err.msg, "resolution 20"),
                  "%s", err.msg);
    remove(path);
    remove(dir);
    ofa_supernet_free(&net);
}
END_TEST

/* Host predictors profile this machine: only sanity is asserted. */
static void check_host_model(enum ofa_latency_model m, enum ofa_arith arith)
{
    tu_threads(2);
    const int threads = ofa_threads_get();
    struct ofa_space sp;
    ofa_space_default(&sp);
    struct ofa_supernet net;
    ofa_supernet_init(&net, &sp, 1);
    struct ofa_device d = device("host", m);
    d.arith = arith;
    struct ofa_latency *lat;
    struct ofa_error err = {0};
    ck_assert_int_eq(ofa_latency_init(&lat, &d, &net, NULL, &err), 0);
    ck_assert_int_eq(ofa_latency_model(lat), m);
    ck_assert_int_eq(ofa_latency_arith(lat), arith);
    struct ofa_subnet small, big;
    ofa_subnet_smallest(&sp, &small);
    ofa_subnet_largest(&sp, &big);
    double ps = ofa_latency_predict(lat, &small), pb = ofa_latency_predict(lat, &big);
    /* Timings on a shared machine are noisy (even their order, when another
     * process shares the core's caches): no assertion on them here; their
     * accuracy against real timings is judged in bench_latency. */
    ck_assert_msg(ps > 0 && isfinite(ps) && pb > 0 && isfinite(pb), "smallest %g ms, largest "
                  "%g ms", ps, pb);
    double ms = ofa_latency_measure(&net, &small, arith, 3);
    ck_assert(ms > 0 && isfinite(ms));
    /* profiling and measuring leave the caller's thread count alone */
    ck_assert_int_eq(ofa_threads_get(), threads);
    if (m == OFA_LAT_MEASURED) {
        /* The table written as a LUT and read back predicts the same for
         * every subnet: a complete table, and a faithful LUT round trip. */
        char path[] = "/tmp/ofa-lut-XXXXXX";
        int fd = mkstemp(path);
        ck_assert_int_ge(fd, 0);
        FILE *f = fdopen(fd, "w");
        ck_assert_int_eq(ofa_latency_write_lut(lat, f, "check_device"), 0);
        ck_assert_int_eq(fclose(f), 0);
        struct ofa_device dl = device("table", OFA_LAT_LUT);
        snprintf(dl.lut, sizeof dl.lut, "%s", path);
        struct ofa_latency *lut;
        ck_assert_msg(ofa_latency_init(&lut, &dl, &net, NULL, &err) == 0, "%s", err.msg);
        struct ofa_rng r;
        ofa_rng_seed(&r, 7);
        for (int i = 0; i < 50; i++) {
            struct ofa_subnet s;
            ofa_subnet_sample(&sp, &r, &s);
            double a = ofa_latency_predict(lat, &s), b = ofa_latency_predict(lut, &s);
            ck_assert_msg(a > 0 && isfinite(a), "prediction %g", a);
            ck_assert_msg(fabs(a - b) <= 1e-4 + 1e-5 * a, "measured %g ms, its LUT %g ms", a, b);
        }
        ofa_latency_free(lut);
        remove(path);
    }
    double share = ofa_latency_validate(lat, &net, 2, 1, 1, 10.0, NULL, NULL);
    ck_assert(share >= 0 && share <= 1);
    ofa_latency_free(lat);
    ofa_supernet_free(&net);
}

START_TEST(test_measured_predictor_is_sane)
{
    check_host_model(OFA_LAT_MEASURED, OFA_ARITH_FP32);
}
END_TEST

START_TEST(test_measured_int8_predictor_is_sane)
{
    check_host_model(OFA_LAT_MEASURED, OFA_ARITH_INT8);
}
END_TEST

/* The int8 pass by op kind: the medium reference subnet's layers counted by
 * hand (stem, the first block's 3x3 depthwise, project and residual add; 12
 * blocks of expand, 5x5 depthwise and project, an SE in each of stages 2
 * and 4, a residual add in all but each stage's first; head, pool, fc);
 * times finite and not negative; the caller's thread count kept. */
START_TEST(test_int8_profile_counts_every_layer_by_kind)
{
    tu_threads(2);
    const int threads = ofa_threads_get(); /* 1 without OpenMP */
    struct ofa_space sp;
    ofa_space_default(&sp);
    struct ofa_supernet net;
    ofa_supernet_init(&net, &sp, 1);
    struct ofa_subnet s;
    parse(&sp, "r24-d3333-k555.555.555.555-e444.444.444.444", &s);
    double ms[OFA_PROF_NKINDS];
    int calls[OFA_PROF_NKINDS];
    const double pass = ofa_latency_int8_profile(&net, &s, 3, ms, calls);
    ck_assert_int_eq(ofa_threads_get(), threads);
    ck_assert_msg(pass > 0 && isfinite(pass), "pass %g ms", pass);
    static const struct {
        enum ofa_prof_kind k;
        int n;
    } want[] = {{OFA_PROF_STEM_CONV, 1}, {OFA_PROF_DW3, 1},     {OFA_PROF_DW5, 12},
                {OFA_PROF_PW_EXPAND, 12}, {OFA_PROF_PW_PROJECT, 13}, {OFA_PROF_SE, 6},
                {OFA_PROF_ADD, 9},        {OFA_PROF_PW_HEAD, 1},  {OFA_PROF_AVGPOOL, 1},
                {OFA_PROF_FC, 1}};
    int total = 0, named = 0;
    for (int k = 0; k < OFA_PROF_NKINDS; k++) {
        total += calls[k];
        ck_assert_msg(ms[k] >= 0 && isfinite(ms[k]), "%s: %g ms", ofa_prof_kind_name(k), ms[k]);
        ck_assert_msg(calls[k] > 0 || ms[k] == 0, "%s: no layers, %g ms", ofa_prof_kind_name(k),
                      ms[k]);
    }
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        ck_assert_msg(calls[want[i].k] == want[i].n, "%s: %d layers, want %d",
                      ofa_prof_kind_name(want[i].k), calls[want[i].k], want[i].n);
        ck_assert_msg(ms[want[i].k] > 0, "%s: %g ms", ofa_prof_kind_name(want[i].k),
                      ms[want[i].k]);
        named += want[i].n;
    }
    ck_assert_int_eq(total, named);
    ofa_supernet_free(&net);
}
END_TEST

START_TEST(test_opwise_predictor_is_sane)
{
    check_host_model(OFA_LAT_OPWISE, OFA_ARITH_FP32);
}
END_TEST

/* opwise has no int8 regressors: asking for them is an error naming the
 * device, not an fp32 table under an int8 name. */
START_TEST(test_opwise_int8_is_refused)
{
    struct ofa_space sp;
    ofa_space_default(&sp);
    struct ofa_supernet net;
    ofa_supernet_init(&net, &sp, 1);
    struct ofa_device d = device("host-int8", OFA_LAT_OPWISE);
    d.arith = OFA_ARITH_INT8;
    struct ofa_latency *lat = (struct ofa_latency *)&d;
    struct ofa_error err = {0};
    ck_assert_int_ne(ofa_latency_init(&lat, &d, &net, NULL, &err), 0);
    ck_assert_ptr_null(lat);
    ck_assert_msg(strstr(err.msg, "host-int8") && strstr(err.msg, "measured"), "%s", err.msg);
    ofa_supernet_free(&net);
}
END_TEST

START_TEST(test_model_names)
{
    ck_assert_str_eq(ofa_latency_model_name(OFA_LAT_MEASURED), "measured");
    ck_assert_str_eq(ofa_latency_model_name(OFA_LAT_OPWISE), "opwise");
    ck_assert_str_eq(ofa_latency_model_name(OFA_LAT_OPCOUNT), "opcount");
    ck_assert_str_eq(ofa_latency_model_name(OFA_LAT_LUT), "lut");
    ck_assert_str_eq(ofa_arith_name(OFA_ARITH_FP32), "fp32");
    ck_assert_str_eq(ofa_arith_name(OFA_ARITH_INT8), "int8");
}
END_TEST

/* The shipped default devices admit the smallest reference subnet. */
START_TEST(test_default_devices_admit_the_smallest_subnet)
{
    struct ofa_recipe r;
    char path[1100];
    snprintf(path, sizeof path, "%s/recipes/fashion-mnist.ini", srcdir());
    struct ofa_error err = {0};
    ck_assert_msg(ofa_recipe_load(&r, path, &err) == 0, "%s", err.msg);
    struct ofa_subnet s;
    ofa_subnet_smallest(&r.space, &s);
    const double flash = ofa_subnet_flash_bytes(&r.space, &s) / 1024.0;
    const double sram = ofa_subnet_sram_bytes(&r.space, &s) / 1024.0;
    const double mmacs = ofa_subnet_macs(&r.space, &s) / 1e6;
    for (int i = 0; i < r.n_devices; i++) {
        const struct ofa_device *d = &r.devices[i];
        ck_assert(d->flash_kb == 0 || flash <= d->flash_kb);
        ck_assert(d->sram_kb == 0 || sram <= d->sram_kb);
        ck_assert(d->mmacs == 0 || mmacs <= d->mmacs);
        if (d->model == OFA_LAT_OPCOUNT)
            ck_assert(d->latency_ms == 0 || d->a_ms_per_mmac * mmacs + d->b_ms <= d->latency_ms);
    }
}
END_TEST

static Suite *device_suite(void)
{
    Suite *s = suite_create("device");
    TCase *tc = tcase_create("device");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_smallest_subnet_memory_matches_hand_count);
    tcase_add_test(tc, test_largest_subnet_needs_more_memory);
    tcase_add_test(tc, test_memory_is_monotone_in_every_gene);
    tcase_add_test(tc, test_opcount_is_a_times_mmacs_plus_b);
    tcase_add_test(tc, test_lut_predicts_stem_plus_blocks_plus_head);
    tcase_add_loop_test(tc, test_bad_lut_tables_name_file_and_line, 0,
                        (int)(sizeof bad_luts / sizeof bad_luts[0]));
    tcase_add_test(tc, test_lut_missing_configuration_is_named);
    tcase_add_test(tc, test_measured_predictor_is_sane);
    tcase_add_test(tc, test_measured_int8_predictor_is_sane);
    tcase_add_test(tc, test_int8_profile_counts_every_layer_by_kind);
    tcase_add_test(tc, test_opwise_predictor_is_sane);
    tcase_add_test(tc, test_opwise_int8_is_refused);
    tcase_add_test(tc, test_model_names);
    tcase_add_test(tc, test_default_devices_admit_the_smallest_subnet);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(device_suite());
    srunner_run_all(sr, CK_NORMAL);
    int nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    return nf == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
