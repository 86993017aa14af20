/* fuzz_cli.c: libFuzzer target for the command lines of the five tools
 * (ofa-train, ofa-extract, ofa-export, ofa-run, ofa-data) and the shared
 * parsers of lib/cli.c, without fork or exec.
 *
 * The tools' main.c files are compiled into this file (#include below) with
 * main and their static names renamed, so their option parsing runs
 * unchanged. What would run for minutes is replaced, in those files only,
 * by a stand-in that does what the tool does first with its options:
 *   ofa_train_run, ofa_train_predict_scaling -> load the recipe and apply
 *                       every --set;
 *   ofa_extract_run  -> load the --recipe and look the --device up;
 *   ofa_export_run   -> load the --recipe and apply every --set;
 *   ofa_data_read_source -> refuses the word fashion-mnist (70000 images),
 *                       else the real reader;
 *   ofa_dataset_seal -> seals a copy (never a fixture);
 *   ofa_cleanup_on_signals -> nothing (libFuzzer keeps its handlers);
 *   ofa_blas_select_kernels -> nothing (it may exec the program again: here,
 *                       the fuzzer with the fuzzed arguments);
 *   ofa_cli_common_finish -> the real one with --threads capped at 1 (the
 *                       parsed value is kept; 4096 OpenMP threads would
 *                       only slow the fuzzer down).
 * Everything else is real: getopt_long, ofa_parse_long, ofa_recipe_find,
 * --print-recipe (recipe + --set + format), --list-devices on a recipe or a
 * real checkpoint, ofa-run end to end (model.h5 float and int8 on a PNG, an
 * IDX file and a data.h5 split), ofa-data prepare / export-png / stats.
 *
 * Input: NUL-separated arguments; the first names the tool (ofa-train,
 * ofa-extract, ofa-export, ofa-run, ofa-data, or parse: each further
 * argument through ofa_parse_long and ofa_parse_float with several ranges);
 * an unknown name picks a tool by its first byte. Arguments may not hold
 * '/' or "..": every file name is then a file of a private scratch folder,
 * the current directory during the call, which holds small real fixtures
 * (recipes, a checkpoint, subnet.h5, model.h5 float and int8, data.h5, an
 * IDX and a PNG folder, a PNG, an IDX file; the HDF5 files are written by
 * the real writers, so they carry the integrity header of lib/h5file.h and
 * the tools' loaders accept them). Whatever a call creates there
 * is removed after it, and a fixture it replaced is written again.
 * The tools' stdout goes to /dev/null, their stderr too unless
 * OFA_FUZZ_VERBOSE is set. libFuzzer's -artifact_prefix defaults to the
 * starting directory (crash files are not left in the scratch folder).
 */
#include <config.h>

/* Every header the tools include, first: the renames below must not reach
 * their declarations. */
#include "blas.h"
#include "ckpt.h"
#include "cli.h"
#include "data.h"
#include "dist.h"
#include "extract.h"
#include "h5file.h"
#include "model.h"
#include "quant.h"
#include "recipe.h"
#include "rng.h"
#include "stability.h"
#include "supernet.h"
#include "train.h"
#include "util.h"
#include "../../export/export.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__ubsan_default_options(void);
int train_main(int argc, char **argv);
int extract_main(int argc, char **argv);
int export_main(int argc, char **argv);
int run_main(int argc, char **argv);
int data_main(int argc, char **argv);

static int fz_verbose;

/* Undefined behaviour in our code is a finding, not a message. */
const char *__ubsan_default_options(void)
{
    return "halt_on_error=1:print_stacktrace=1";
}

/* ---- Stand-ins (used by the included files only) ----------------------------------- */

static int fz_load_recipe_sets(const char *path, const char *const *sets, int n,
                            struct ofa_error *err)
{
    struct ofa_recipe *r = malloc(sizeof *r);
    if (!r)
        return ofa_error_set(err, NULL, 0, "out of memory");
    ofa_recipe_default(r);
    int rc = path ? ofa_recipe_load(r, path, err) : 0;
    for (int i = 0; i < n && rc == 0; i++)
        rc = ofa_recipe_set(r, sets[i], err);
    free(r);
    return rc ? -1 : 0;
}

static int fuzz_train_run(const struct ofa_train_opts *o, struct ofa_error *err)
{
    if (fz_load_recipe_sets(o->recipe_path, o->overrides, o->n_overrides, err))
        return -1;
    return ofa_error_set(err, NULL, 0, "fuzz_cli: training is not run");
}

static int fuzz_train_predict(const struct ofa_train_opts *o, double bandwidth, double latency,
                              FILE *out, struct ofa_error *err)
{
    (void)out;
    if (!(bandwidth > 0 && latency >= 0))
        abort(); /* the command line let a bad network figure through */
    if (fz_load_recipe_sets(o->recipe_path, o->overrides, o->n_overrides, err))
        return -1;
    return ofa_error_set(err, NULL, 0, "fuzz_cli: the scaling profile is not run");
}

static int fuzz_extract_run(const struct ofa_extract_opts *o, struct ofa_error *err)
{
    if (o->devices) {
        struct ofa_recipe *r = malloc(sizeof *r);
        if (!r)
            return ofa_error_set(err, NULL, 0, "out of memory");
        ofa_recipe_default(r);
        int rc = ofa_recipe_load(r, o->devices, err);
        if (rc == 0 && o->device && !ofa_recipe_device(r, o->device))
            rc = ofa_error_set(err, o->devices, 0, "no device %s", o->device);
        free(r);
        if (rc)
            return -1;
    }
    return ofa_error_set(err, NULL, 0, "fuzz_cli: the search is not run");
}

static int fuzz_export_run(const struct ofa_export_opts *o, struct ofa_error *err)
{
    if (fz_load_recipe_sets(o->recipe, o->sets, o->n_sets, err))
        return -1;
    return ofa_error_set(err, NULL, 0, "fuzz_cli: the export is not run");
}

static int fuzz_read_source(const char *source, const struct ofa_read_opts *opts,
                            struct ofa_dataset *ds, struct ofa_error *err)
{
    if (strcmp(source, "fashion-mnist") == 0)
        return ofa_error_set(err, source, 0, "fuzz_cli: not read here");
    return ofa_data_read_source(source, opts, ds, err);
}

static void fz_copy_file(const char *from, const char *to)
{
    uint8_t *buf = NULL;
    size_t n = 0;
    struct ofa_error err;
    FILE *f;
    if (ofa_read_file(from, &buf, &n, &err) == 0 && (f = fopen(to, "wb")) != NULL) {
        fwrite(buf, 1, n, f);
        fclose(f);
    }
    free(buf);
}

static int fuzz_seal(const char *path, struct ofa_error *err)
{
    fz_copy_file(path, "seal-copy.h5");
    return ofa_dataset_seal("seal-copy.h5", err);
}

static int fuzz_cli_common_finish(int argc, char **argv, int optind_, const char *prog,
                                  const struct ofa_cli_common *co)
{
    struct ofa_cli_common c = *co;
    c.threads = 1;
    return ofa_cli_common_finish(argc, argv, optind_, prog, &c);
}

/* ofa-train's main calloc's its --set array and does not free it when it
 * returns early (harmless at exit): the only calloc of that file, tracked
 * here so that the fuzzer frees it instead of reporting a leak each time. */
static void *fz_train_sets;
static long fz_train_sets_leaked;

static void *fuzz_calloc(size_t n, size_t size)
{
    return fz_train_sets = calloc(n, size);
}

static void fuzz_free(void *p)
{
    if (p && p == fz_train_sets)
        fz_train_sets = NULL;
    free(p);
}

/* ---- The tools' main.c files ----------------------------------------------------- */

#include "blas.h" /* declared before the stand-in below */
#define ofa_cleanup_on_signals() ((void)0)
#define ofa_blas_select_kernels(argv) ((void)(argv)) /* never exec the fuzzer */
#define ofa_cli_common_finish fuzz_cli_common_finish

#define main train_main
#define prog train_prog
#define usage train_usage
#define print_recipe train_print_recipe
#define ofa_train_run fuzz_train_run
#define ofa_train_predict_scaling fuzz_train_predict
#define calloc fuzz_calloc
#define free fuzz_free
#include "../../train/main.c"
#undef main
#undef prog
#undef usage
#undef print_recipe
#undef ofa_train_run
#undef ofa_train_predict_scaling
#undef calloc
#undef free

#define main extract_main
#define prog extract_prog
#define usage extract_usage
#define ofa_extract_run fuzz_extract_run
#include "../../extract/main.c"
#undef main
#undef prog
#undef usage
#undef ofa_extract_run

#define main export_main
#define prog export_prog
#define usage export_usage
#define ofa_export_run fuzz_export_run
#include "../../export/main.c"
#undef main
#undef prog
#undef usage
#undef ofa_export_run

#define main run_main
#define prog run_prog
#define usage run_usage
#include "../../export/run.c"
#undef main
#undef prog
#undef usage

#define main data_main
#define prog data_prog
#define usage data_usage
#define fail data_fail
#define ofa_data_read_source fuzz_read_source
#define ofa_dataset_seal fuzz_seal
#include "../../datasets/ofa_data.c"
#undef main
#undef prog
#undef usage
#undef fail
#undef ofa_data_read_source
#undef ofa_dataset_seal

#undef ofa_cleanup_on_signals
#undef ofa_cli_common_finish

/* ---- The scratch folder and its fixtures ------------------------------------------ */

static char fz_scratch[256];
static int fz_home_fd = -1;

static const char fz_tiny_ini[] =
    "# tiny.ini: a 2-stage supernet (tests/fixtures/recipes/tiny.ini)\n"
    "[supernet]\nstem_width = 8\nfirst_width = 8\ndepths = 1, 2\nexpands = 2, 3\n"
    "kernels = 3, 5\nresolutions = 12, 16\nhead_width = 32\n\n"
    "[stage1]\nwidth = 8\nstride = 2\nact = relu\n\n"
    "[stage2]\nwidth = 16\nstride = 2\nact = hswish\nse = yes\n\n"
    "[train]\nepochs = 2\nbatch_size = 32\nsubset = 256\nwarmup_epochs = 0\n"
    "calib_images = 64\ncalib_batch = 32\nlog_every = 2\n";
static const char fz_devices_ini[] =
    "include = tiny.ini\n\n"
    "[device.tiny-mcu]\nlatency_model = opcount\na_ms_per_mmac = 10\nb_ms = 1\n"
    "source = test figures\nflash_kb = 1024\n\n"
    "[device.host]\nlatency_model = measured\n\n"
    "[export]\nepochs = 1\nbatch_size = 32\nlr = 0.01\nalpha = 1\ncalib_images = 128\n"
    "test_images = 0\n\n"
    "[variant.jpeg]\njpeg_quality = 50\nresize = bilinear\n\n"
    "[variant.int8]\narithmetic = int8\n";

/* Top-level entries of the scratch folder that are fixtures. */
static const char *const fz_fixtures[] = {"tiny.ini", "devices.ini", "supernet.h5", "subnet.h5",
                                       "model.h5", "fp32.h5", "data.h5", "idx", "png",
                                       "img.png", "images.idx", NULL};
static struct stat fz_fixture_st[sizeof fz_fixtures / sizeof fz_fixtures[0]];

static void fz_die(const char *what, const struct ofa_error *err)
{
    fprintf(stderr, "fuzz_cli: set-up: %s: %s%s%s\n", what, err ? err->file : "",
            err ? ": " : "", err ? err->msg : strerror(errno));
    exit(1);
}

static void fz_put_file(const char *name, const void *data, size_t n)
{
    FILE *f = fopen(name, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0)
        fz_die(name, NULL);
}

static void fz_put_idx_images(const char *name, int n, int h, int w, int seed)
{
    uint8_t buf[16 + 6 * 4 * 5];
    const uint8_t hdr[16] = {0, 0, 8, 3, 0, 0, 0, (uint8_t)n, 0, 0, 0, (uint8_t)h,
                             0, 0, 0, (uint8_t)w};
    memcpy(buf, hdr, 16);
    for (int i = 0; i < n * h * w; i++)
        buf[16 + i] = (uint8_t)(i * 37 + seed);
    fz_put_file(name, buf, 16 + (size_t)(n * h * w));
}

static void fz_put_idx_labels(const char *name, int n)
{
    uint8_t buf[8 + 6];
    const uint8_t hdr[8] = {0, 0, 8, 1, 0, 0, 0, (uint8_t)n};
    memcpy(buf, hdr, 8);
    for (int i = 0; i < n; i++)
        buf[8 + i] = (uint8_t)(i * 3 % 10);
    fz_put_file(name, buf, 8 + (size_t)n);
}

static void fz_rm_rf(const char *p)
{
    struct stat st;
    if (lstat(p, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(p);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char sub[4096];
            snprintf(sub, sizeof sub, "%s/%s", p, e->d_name);
            fz_rm_rf(sub);
        }
        if (d)
            closedir(d);
        rmdir(p);
    } else {
        unlink(p);
    }
}

/* Write every fixture into the current directory (the scratch folder). */
static void fz_make_fixtures(void)
{
    struct ofa_error err;
    for (int i = 0; fz_fixtures[i]; i++)
        fz_rm_rf(fz_fixtures[i]);
    fz_put_file("tiny.ini", fz_tiny_ini, sizeof fz_tiny_ini - 1);
    fz_put_file("devices.ini", fz_devices_ini, sizeof fz_devices_ini - 1);
    /* IDX folder: 6 training and 2 test images of 4x5 */
    if (mkdir("idx", 0777) != 0)
        fz_die("idx", NULL);
    fz_put_idx_images("idx/train-images-idx3-ubyte", 6, 4, 5, 1);
    fz_put_idx_labels("idx/train-labels-idx1-ubyte", 6);
    fz_put_idx_images("idx/t10k-images-idx3-ubyte", 2, 4, 5, 2);
    fz_put_idx_labels("idx/t10k-labels-idx1-ubyte", 2);
    fz_put_idx_images("images.idx", 3, 4, 5, 3);
    /* PNG folder: two classes of 3x3 grey images; a lone PNG */
    uint8_t px[27];
    for (int i = 0; i < 27; i++)
        px[i] = (uint8_t)(i * 29);
    if (mkdir("png", 0777) != 0 || mkdir("png/a", 0777) != 0 || mkdir("png/b", 0777) != 0 ||
        ofa_png_write("png/a/0.png", px, 3, 3, 1, &err) ||
        ofa_png_write("png/a/1.png", px + 1, 3, 3, 1, &err) ||
        ofa_png_write("png/b/0.png", px + 2, 3, 3, 1, &err) ||
        ofa_png_write("img.png", px, 3, 3, 3, &err))
        fz_die("png", &err);
    /* data.h5 from the IDX folder */
    struct ofa_read_opts ro = {0};
    struct ofa_dataset ds;
    if (ofa_data_read_source("idx", &ro, &ds, &err) || ofa_dataset_split(&ds, 1, 0, &err) ||
        ofa_dataset_save(&ds, "data.h5", &err))
        fz_die("data.h5", &err);
    /* A supernet of devices.ini (fresh weights), its checkpoint, the
     * smallest subnet's record and model (float, and int8) */
    struct ofa_recipe *r = malloc(sizeof *r);
    ofa_recipe_default(r);
    if (ofa_recipe_load(r, "devices.ini", &err))
        fz_die("devices.ini", &err);
    r->space.num_classes = ds.num_classes;
    r->space.in_channels = ds.train.c;
    char *text = ofa_recipe_format(r);
    struct ofa_supernet net;
    ofa_supernet_init(&net, &r->space, 3);
    struct ofa_train_state st;
    memset(&st, 0, sizeof st);
    st.data_hash = ofa_dataset_fingerprint(&ds);
    if (ofa_ckpt_save("supernet.h5", text, &r->space, &net.p, &st, 0, &err))
        fz_die("supernet.h5", &err);
    struct ofa_subnet s;
    ofa_subnet_smallest(&r->space, &s);
    struct ofa_subnet_record rec;
    memset(&rec, 0, sizeof rec);
    ofa_subnet_format(&r->space, &s, rec.subnet, sizeof rec.subnet);
    snprintf(rec.device, sizeof rec.device, "tiny-mcu");
    snprintf(rec.latency_model, sizeof rec.latency_model, "opcount");
    rec.supernet_fingerprint = ofa_ckpt_fingerprint(text, &st);
    if (ofa_subnet_record_save("subnet.h5", &rec, &err))
        fz_die("subnet.h5", &err);
    struct ofa_model m;
    ofa_model_materialise(&m, &net, &s);
    snprintf(m.device, sizeof m.device, "tiny-mcu");
    for (int k = 0; k < 3; k++)
        m.norm_mean[k] = 0.5f, m.norm_std[k] = 0.25f;
    m.class_names = calloc((size_t)m.num_classes, OFA_CLASS_NAME_MAX);
    for (int k = 0; k < m.num_classes; k++)
        snprintf(m.class_names[k], OFA_CLASS_NAME_MAX, "%s", ds.class_names[k]);
    if (ofa_model_save("fp32.h5", &m, &err))
        fz_die("fp32.h5", &err);
    const size_t img = (size_t)m.res * m.res * m.in_channels;
    float *x = malloc(4 * img * sizeof *x);
    struct ofa_rng rng;
    ofa_rng_seed(&rng, 5);
    for (size_t i = 0; i < 4 * img; i++)
        x[i] = 2 * ofa_rng_uniform(&rng) - 1;
    struct ofa_quant_opts qo = {OFA_CALIB_MINMAX, 0};
    ofa_quant_calibrate(&m, x, 4, &qo);
    if (ofa_model_save("model.h5", &m, &err))
        fz_die("model.h5", &err);
    free(x);
    ofa_model_free(&m);
    ofa_supernet_free(&net);
    free(text);
    free(r);
    ofa_dataset_free(&ds);
    for (int i = 0; fz_fixtures[i]; i++)
        if (lstat(fz_fixtures[i], &fz_fixture_st[i]) != 0)
            fz_die(fz_fixtures[i], NULL);
}

/* After a call: remove what it created, and write the fixtures again if it
 * replaced or removed one. */
static void fz_restore_scratch(void)
{
    DIR *d = opendir(".");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        int known = 0;
        for (int i = 0; fz_fixtures[i] && !known; i++)
            known = !strcmp(e->d_name, fz_fixtures[i]);
        if (!known)
            fz_rm_rf(e->d_name);
    }
    if (d)
        closedir(d);
    for (int i = 0; fz_fixtures[i]; i++) {
        struct stat st;
        if (lstat(fz_fixtures[i], &st) != 0 || st.st_ino != fz_fixture_st[i].st_ino ||
            st.st_size != fz_fixture_st[i].st_size ||
            st.st_mtim.tv_sec != fz_fixture_st[i].st_mtim.tv_sec ||
            st.st_mtim.tv_nsec != fz_fixture_st[i].st_mtim.tv_nsec) {
            if (fz_verbose)
                fprintf(stderr, "fuzz_cli: fixture %s was changed; writing them again\n",
                        fz_fixtures[i]);
            fz_make_fixtures();
            break;
        }
    }
}

static void fz_cleanup(void)
{
    if (fz_scratch[0])
        fz_rm_rf(fz_scratch);
    if (fz_train_sets_leaked)
        fprintf(stderr, "fuzz_cli: ofa-train's main returned early without freeing its --set "
                        "array %ld times (freed here; harmless at exit)\n", fz_train_sets_leaked);
}

/* ---- The target ------------------------------------------------------------------- */

/* Remove what killed runs of this target left in dir: entries named
 * <prefix><pid>_... whose process is gone (a crash skips atexit). */
static void fz_remove_stale(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    const size_t n = strlen(prefix);
    while (d && (e = readdir(d)) != NULL) {
        char *end;
        if (strncmp(e->d_name, prefix, n) != 0)
            continue;
        long pid = strtol(e->d_name + n, &end, 10);
        if (end == e->d_name + n || *end != '_' || pid <= 0 ||
            kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        fz_rm_rf(p);
    }
    if (d)
        closedir(d);
}


int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    /* loaders in this process, not in a guarding child: crashes must show */
    ofa_h5_guard_set(0);
    fz_verbose = getenv("OFA_FUZZ_VERBOSE") != NULL;
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd))
        fz_die("getcwd", NULL);
    /* Crash files go to the starting directory, not the scratch folder. */
    int has_prefix = 0;
    for (int i = 1; i < *argc; i++)
        has_prefix |= strncmp((*argv)[i], "-artifact_prefix=", 17) == 0;
    if (!has_prefix) {
        char **nv = calloc((size_t)*argc + 2, sizeof *nv);
        size_t n = strlen(cwd) + 32;
        char *flag = malloc(n);
        snprintf(flag, n, "-artifact_prefix=%s/", cwd);
        nv[0] = (*argv)[0];
        nv[1] = flag;
        for (int i = 1; i < *argc; i++)
            nv[i + 1] = (*argv)[i];
        *argc += 1;
        *argv = nv;
    }
    fz_home_fd = open(".", O_RDONLY | O_DIRECTORY);
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    fz_remove_stale(base, "fuzz_cli_");
    snprintf(fz_scratch, sizeof fz_scratch, "%s/fuzz_cli_%ld_XXXXXX", base, (long)getpid());
    if (fz_home_fd < 0 || !mkdtemp(fz_scratch) || chdir(fz_scratch) != 0)
        fz_die("scratch folder", NULL);
    atexit(fz_cleanup);
    ofa_threads_set(1);
    fz_make_fixtures();
    if (fchdir(fz_home_fd) != 0)
        fz_die("fchdir", NULL);
    setenv("OFA_RECIPES", fz_scratch, 1);
    if (!freopen("/dev/null", "w", stdout))
        fz_die("/dev/null", NULL);
    return 0;
}

/* ofa_parse_long and ofa_parse_float over several ranges; what they accept
 * is in range and (integers) prints back to the same value. */
static void fz_parse_mode(int n, char **v)
{
    static const long lr[][2] = {{1, 4096}, {0, LONG_MAX}, {LONG_MIN, LONG_MAX}, {-5, 5},
                                 {10, 1000000}, {1, 1L << 40}};
    static const double fr[][2] = {{0, 1}, {-1e30, 1e30}, {1e-9, 10}, {-HUGE_VAL, HUGE_VAL}};
    struct ofa_error err;
    for (int i = 0; i < n; i++) {
        const long *b = lr[i % 6];
        long x;
        if (ofa_parse_long(v[i], b[0], b[1], "--fuzz", &x, &err) == 0) {
            char back[32];
            long y;
            snprintf(back, sizeof back, "%ld", x);
            if (x < b[0] || x > b[1] ||
                ofa_parse_long(back, b[0], b[1], "--fuzz", &y, &err) != 0 || y != x)
                abort();
        }
        const double *c = fr[i % 4];
        float f;
        if (ofa_parse_float(v[i], c[0], c[1], "--fuzz", &f, &err) == 0 && !isfinite(f) &&
            c[1] < 1e38)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enum { MAX_ARGS = 48 };
    if (size == 0 || size > 2048)
        return 0;
    char *buf = malloc(size + 1);
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *argv[MAX_ARGS + 1];
    int argc = 0;
    for (char *p = buf; p < buf + size + 1 && argc < MAX_ARGS; p += strlen(p) + 1) {
        if (strchr(p, '/') || strstr(p, "..")) { /* stay in the scratch folder */
            free(buf);
            return 0;
        }
        argv[argc++] = p;
        if (p + strlen(p) >= buf + size)
            break;
    }
    argv[argc] = NULL;
    static const char *const names[] = {"ofa-train", "ofa-extract", "ofa-export", "ofa-run",
                                        "ofa-data", "parse"};
    int tool = -1;
    for (int k = 0; k < 6 && tool < 0; k++)
        if (strcmp(argv[0], names[k]) == 0)
            tool = k;
    if (tool < 0)
        tool = (uint8_t)buf[0] % 6;

    FILE *saved_err = stderr, *null_err = NULL;
    if (!fz_verbose && (null_err = fopen("/dev/null", "w")) != NULL)
        stderr = null_err;
    if (chdir(fz_scratch) != 0)
        abort();
    optind = 0; /* a fresh getopt_long scan */
    int rc = 0;
    switch (tool) {
    case 0:
        rc = train_main(argc, argv);
        if (fz_train_sets) {
            free(fz_train_sets);
            fz_train_sets = NULL;
            fz_train_sets_leaked++;
        }
        break;
    case 1: rc = extract_main(argc, argv); break;
    case 2: rc = export_main(argc, argv); break;
    case 3: rc = run_main(argc, argv); break;
    case 4: rc = data_main(argc, argv); break;
    default: fz_parse_mode(argc - 1, argv + 1); break;
    }
    fz_restore_scratch();
    if (fchdir(fz_home_fd) != 0)
        abort();
    fflush(stdout);
    stderr = saved_err;
    if (null_err)
        fclose(null_err);
    if (fz_verbose)
        fprintf(stderr, "fuzz_cli: %s -> %d\n", names[tool], rc);
    free(buf);
    return 0;
}
