/* fuzz_subnet.c: libFuzzer target for the subnet.h5 reader
 * (ofa_subnet_record_load) and what ofa-export does next with the record
 * (ofa_subnet_parse against the supernet's space).
 *
 * Two kinds of input:
 *  - a file starting with the "OFA-HDF5" magic of the integrity header
 *    (lib/h5file.h), as the real writer's files do (seeds: files of
 *    ofa_subnet_record_save, valid and damaged). Skipped by default; loaded
 *    as it is with OFA_FUZZ_RAW=1 (byte mutations then mostly stop at the
 *    header's CRC-32, which is the point of it); with OFA_FUZZ_RESEAL=1
 *    (which implies OFA_FUZZ_RAW) an input of 512 bytes or more first gets
 *    a valid header for its bytes after the first 512, so that libhdf5's
 *    parser and our checks behind it are exercised. libhdf5 crashes on such
 *    files within seconds (the H5Aexists use-after-free of README.md):
 *    upstream bugs, not ours (run with -fork=1 -ignore_crashes=1);
 *  - anything else is a list of decisions (structure-aware, as fuzz_h5s):
 *    every root attribute present or absent, of the right or a wrong type,
 *    rank or shape, fixed or variable-length strings, values from the
 *    input, and a subnet text that starts valid for one of two spaces and
 *    gets a few edits. The file is built through the HDF5 API in memory
 *    with the 512-byte user block, written to a temporary file (the reader
 *    takes a path) and given a valid integrity header
 *    (ofa_h5_header_seal), so that it reaches libhdf5 and our checks.
 *    All-zero (or empty) decisions give a valid file.
 * An accepted record must hold terminated strings and write and read back
 * equal; a subnet text that parses must be valid in its space and its
 * canonical text must parse to the same subnet.
 *
 * OFA_FUZZ_SEED_DIR=DIR: write the real-writer seeds into DIR at start-up.
 * OFA_FUZZ_VERBOSE=1: print what each input reaches.
 * OFA_FUZZ_SAVE_FILE=F: copy the subnet.h5 built from a decision list to F.
 * OFA_FUZZ_RAW=1: also load "OFA-HDF5" files as they are (above).
 * OFA_FUZZ_RESEAL=1: also load "OFA-HDF5" files, with their header made
 * valid first (above).
 */
#include <config.h>

#include "ckpt.h"
#include "data.h"
#include "h5file.h"
#include "recipe.h"
#include "space.h"

#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__asan_default_options(void);
const char *__lsan_default_suppressions(void);
const char *__ubsan_default_options(void);

/* As fuzz_ckpt: libhdf5 answers some crafted headers with absurd
 * allocations that it handles failing, and leaks on some error paths. */
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}

const char *__lsan_default_suppressions(void)
{
    return "leak:libhdf5\n";
}

/* Undefined behaviour in our code is a finding, not a message. */
const char *__ubsan_default_options(void)
{
    return "halt_on_error=1:print_stacktrace=1";
}

static char path[96], path2[112];
static struct ofa_space spaces[2];
static int verbose, raw, reseal;

/* ---- The decision stream --------------------------------------------------------- */

struct in {
    const uint8_t *p;
    size_t n;
};

/* The next decision in [0, mod); 0 once the input is exhausted. */
static unsigned take(struct in *in, unsigned mod)
{
    if (in->n == 0)
        return 0;
    unsigned v = *in->p++;
    in->n--;
    return v % mod;
}

static uint64_t take_u64(struct in *in, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)take(in, 256) << (8 * i);
    return v;
}

/* ---- Building a file through the HDF5 API ------------------------------------------ */

static hid_t str_type(size_t n, unsigned pad)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, n);
    H5Tset_strpad(t, pad == 1 ? H5T_STR_NULLPAD : pad == 2 ? H5T_STR_SPACEPAD : H5T_STR_NULLTERM);
    return t;
}

/* Any type (for wrong-type attributes). */
static hid_t any_type(struct in *in)
{
    switch (take(in, 12)) {
    case 0: return H5Tcopy(H5T_STD_U8LE);
    case 1: return H5Tcopy(H5T_STD_I8LE);
    case 2: return H5Tcopy(H5T_STD_I16BE);
    case 3: return H5Tcopy(H5T_STD_I32LE);
    case 4: return H5Tcopy(H5T_STD_I64BE);
    case 5: return H5Tcopy(H5T_STD_U64LE);
    case 6: return H5Tcopy(H5T_IEEE_F32BE);
    case 7: return H5Tcopy(H5T_IEEE_F64LE);
    case 8: return H5Tcopy(H5T_STD_U32LE);
    case 9: {
        hsize_t d = 2;
        return H5Tarray_create2(H5T_STD_I32LE, 1, &d);
    }
    case 10: {
        hid_t t = H5Tcreate(H5T_COMPOUND, 8);
        H5Tinsert(t, "a", 0, H5T_STD_I32LE);
        H5Tinsert(t, "b", 4, H5T_IEEE_F32LE);
        return t;
    }
    default: return str_type(1 + take(in, 300), take(in, 3));
    }
}

/* Write attribute `name` of the root: mode 0 as the writer does (type
 * `good`, scalar, value `val`), 1 absent, 2 any type and shape with input
 * bytes, 3 the right type with a non-scalar or empty dataspace. */
static void put(struct in *in, hid_t f, const char *name, hid_t good, const void *val,
                unsigned mode)
{
    if (mode == 1)
        return;
    hid_t t = mode == 2 ? any_type(in) : H5Tcopy(good);
    hid_t sp;
    size_t count = 1;
    if (mode == 0) {
        sp = H5Screate(H5S_SCALAR);
    } else {
        unsigned k = take(in, 5);
        if (k == 0) {
            sp = H5Screate(H5S_SCALAR);
        } else if (k == 1) {
            sp = H5Screate(H5S_NULL);
            count = 0;
        } else {
            hsize_t d[2] = {take(in, 4), 1 + take(in, 2)};
            int r = k == 4 ? 2 : 1;
            sp = H5Screate_simple(r, d, NULL);
            count = d[0] * (r == 2 ? d[1] : 1);
        }
    }
    htri_t vl = H5Tis_variable_str(t);
    size_t esz = H5Tget_size(t);
    hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0 && count > 0) {
        if (vl > 0) {
            /* variable-length strings: val (mode 0) or input bytes */
            char **s = calloc(count, sizeof *s);
            for (size_t i = 0; i < count; i++) {
                if (mode == 0) {
                    s[i] = strdup(*(const char *const *)val);
                } else {
                    size_t n = take(in, 40);
                    s[i] = malloc(n + 1);
                    for (size_t j = 0; j < n; j++)
                        s[i][j] = (char)(1 + take(in, 255));
                    s[i][n] = '\0';
                }
            }
            H5Awrite(a, t, s);
            for (size_t i = 0; i < count; i++)
                free(s[i]);
            free(s);
        } else {
            uint8_t *buf = calloc(count, esz);
            if (mode == 0 || mode == 3)
                for (size_t i = 0; i < count; i++)
                    memcpy(buf + i * esz, val, esz);
            else
                for (size_t i = 0; i < count * esz; i++)
                    buf[i] = (uint8_t)take(in, 256);
            H5Awrite(a, t, buf);
            free(buf);
        }
    }
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
}

/* A string attribute: fixed length (the writer's NUL-terminated type, or
 * another padding, or a size that cuts it) or variable length. */
static void put_str(struct in *in, hid_t f, const char *name, const char *s, unsigned mode,
                    int structural)
{
    unsigned how = structural ? take(in, 6) : 0;
    size_t n = strlen(s) + 1;
    if (how == 1) {
        n = 1 + take(in, (unsigned)n + 8); /* shorter or longer than the text */
    }
    hid_t t;
    if (how == 2) {
        t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, H5T_VARIABLE);
        put(in, f, name, t, &s, mode);
        H5Tclose(t);
        return;
    }
    t = str_type(n, how == 3 ? 1 : how == 4 ? 2 : 0);
    char *buf = calloc(n + 1, 1);
    memcpy(buf, s, strlen(s) < n ? strlen(s) : n);
    put(in, f, name, t, buf, mode);
    free(buf);
    H5Tclose(t);
}

/* A value for a number: the writer's value or one of the interesting ones. */
static double pick_double(struct in *in, double good)
{
    static const double v[] = {0.0, 1.0, -1.0, 0.5, 1e300, -1e-300, 2.5e-7};
    unsigned k = take(in, 16);
    if (k == 0)
        return good;
    if (k <= sizeof v / sizeof v[0])
        return v[k - 1];
    if (k == 8)
        return NAN;
    if (k == 9)
        return -INFINITY;
    uint64_t bits = take_u64(in, 8);
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

static int64_t pick_i64(struct in *in, int64_t good)
{
    static const int64_t v[] = {0, 1, -1, INT64_MAX, INT64_MIN, INT32_MAX, 1000000};
    unsigned k = take(in, 10);
    if (k == 0)
        return good;
    if (k <= sizeof v / sizeof v[0])
        return v[k - 1];
    return (int64_t)take_u64(in, 8);
}

/* A valid subnet of sp from decisions (all zero: the smallest). */
static void pick_subnet(struct in *in, const struct ofa_space *sp, struct ofa_subnet *s)
{
    memset(s, 0, sizeof *s);
    s->res = sp->resolutions[take(in, (unsigned)sp->n_res)];
    for (int i = 0; i < sp->n_stages; i++) {
        s->depth[i] = sp->depths[take(in, (unsigned)sp->n_depths)];
        for (int j = 0; j < s->depth[i]; j++) {
            s->kernel[i][j] = sp->kernels[take(in, (unsigned)sp->n_kernels)];
            s->expand[i][j] = sp->expands[take(in, (unsigned)sp->n_expands)];
        }
    }
}

/* Edit text in place (buf of cap bytes): replace, insert or delete bytes. */
static void edit_text(struct in *in, char *buf, size_t cap)
{
    static const char alphabet[] = "0123456789rdke.-+ x";
    unsigned edits = take(in, 4);
    for (unsigned e = 0; e < edits; e++) {
        size_t len = strlen(buf), pos = take(in, (unsigned)len + 1);
        unsigned op = take(in, 3), b = take(in, 256);
        char c = b < 200 ? alphabet[b % (sizeof alphabet - 1)] : (char)(b == 200 ? 1 : b);
        if (op == 0 && pos < len) {
            buf[pos] = c;
        } else if (op == 1 && len + 1 < cap) {
            memmove(buf + pos + 1, buf + pos, len - pos + 1);
            buf[pos] = c;
        } else if (pos < len) {
            memmove(buf + pos, buf + pos + 1, len - pos);
        }
    }
}

/* Build subnet.h5 from the decisions into path (the core driver writes the
 * file when it is closed: an image taken while it is open is not final in
 * the newest format), with the user block of the integrity header, which
 * build_sealed then fills. Returns 0, or -1 when nothing was built. */
static int build(struct in *in)
{
    const unsigned flags = take(in, 256);
    const int structural = (flags & 3) == 3; /* attributes may be damaged */
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), fcpl = H5Pcreate(H5P_FILE_CREATE);
    H5Pset_fapl_core(fapl, 1 << 16, 1);
    H5Pset_userblock(fcpl, OFA_H5_UB_SIZE);
    H5Pset_obj_track_times(fcpl, 0);
    if (flags & 4) /* the newest file format (checksummed headers) */
        H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, fapl);
    H5Pclose(fcpl);
    H5Pclose(fapl);
    if (f < 0)
        return -1;
#define MODE() (structural ? take(in, 4) : 0u)
    static const char *const formats[] = {OFA_SUBNET_FORMAT, "ofa-model", "", "ofa-subnetX",
                                          "ofa-supernet"};
    put_str(in, f, "format", formats[structural ? take(in, 5) : 0], MODE(), structural);
    static const int32_t versions[] = {OFA_SUBNET_VERSION, 0, 2, -1, INT32_MAX};
    const int32_t ver = versions[structural ? take(in, 5) : 0];
    put(in, f, "format_version", H5T_STD_I32LE, &ver, MODE());
    put_str(in, f, "created_by", "ofa fuzz", MODE(), structural);

    char text[OFA_SUBNET_TEXT_MAX + 64];
    struct ofa_subnet s;
    const struct ofa_space *sp = &spaces[take(in, 2)];
    pick_subnet(in, sp, &s);
    ofa_subnet_format(sp, &s, text, OFA_SUBNET_TEXT_MAX);
    if (take(in, 4) == 3) { /* a long text: repeat it */
        size_t len = strlen(text);
        for (; len < sizeof text - 2; len++)
            text[len] = len % 7 ? '5' : '.';
        text[len] = '\0';
    }
    edit_text(in, text, sizeof text);
    put_str(in, f, "subnet", text, MODE(), structural);

    char dev[100] = "cortex-m7";
    unsigned dl = take(in, 8);
    if (dl) { /* a device name from the input, up to 90 bytes */
        size_t n = dl == 7 ? 64 + take(in, 27) : take(in, 20);
        for (size_t i = 0; i < n; i++)
            dev[i] = (char)(1 + take(in, 255));
        dev[n] = '\0';
    }
    put_str(in, f, "device", dev, MODE(), structural);
    static const char *const lm[] = {"measured", "measured int8", "opwise", "opcount", "lut",
                                     "", "a-latency-model-name-too-long"};
    put_str(in, f, "latency_model", lm[take(in, 7)], MODE(), structural);
    const uint64_t fp = take_u64(in, 8);
    const unsigned fm = MODE();
    /* the fingerprint as a signed, or narrower, integer */
    put(in, f, "supernet_fingerprint",
        fm == 0 && structural && take(in, 4) == 0 ? H5T_STD_I64LE : H5T_STD_U64LE, &fp, fm);

    static const char *const nums[] = {
        "acc_predicted", "acc_measured", "latency_predicted_ms", "latency_measured_ms",
        "mmacs", "budget_latency_ms", "budget_flash_kb", "budget_sram_kb", "budget_mmacs"};
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        const double v = pick_double(in, 0.25 * (double)(i + 1));
        const unsigned m = MODE();
        if (m == 0 && structural && take(in, 4) == 0) {
            const float v32 = (float)v; /* a 32-bit float, also accepted */
            put(in, f, nums[i], H5T_IEEE_F32LE, &v32, m);
        } else {
            put(in, f, nums[i], H5T_IEEE_F64LE, &v, m);
        }
    }
    static const char *const ints[] = {"params", "flash_bytes", "sram_bytes"};
    for (size_t i = 0; i < 3; i++) {
        const int64_t v = pick_i64(in, 1000 * (int64_t)(i + 1));
        const unsigned m = MODE();
        const unsigned w = structural ? take(in, 4) : 0;
        if (m == 0 && w == 1) {
            const int32_t v32 = (int32_t)v;
            put(in, f, ints[i], H5T_STD_I32BE, &v32, m);
        } else if (m == 0 && w == 2) {
            const uint64_t u = (uint64_t)v;
            put(in, f, ints[i], H5T_STD_U64LE, &u, m);
        } else {
            put(in, f, ints[i], H5T_STD_I64LE, &v, m);
        }
    }
    if (structural && take(in, 4) == 0) { /* an extra attribute and a dataset */
        const int32_t one = 1;
        put(in, f, "unexpected", H5T_STD_I32LE, &one, 0);
        hsize_t d = 3;
        hid_t dsp = H5Screate_simple(1, &d, NULL);
        hid_t ds = H5Dcreate2(f, "data", H5T_STD_I32LE, dsp, H5P_DEFAULT, H5P_DEFAULT,
                              H5P_DEFAULT);
        if (ds >= 0)
            H5Dclose(ds);
        H5Sclose(dsp);
    }
#undef MODE
    return H5Fclose(f) < 0 ? -1 : 0;
}

/* build, then the integrity header as the real writer puts it: the file
 * must reach libhdf5 and our checks, not stop at the header. */
static int build_sealed(struct in *in)
{
    if (build(in) != 0)
        return -1;
    struct ofa_error err;
    if (ofa_h5_header_seal(path, OFA_H5_MAGIC, &err) != 0) {
        fprintf(stderr, "fuzz_subnet: sealing the built file failed: %s\n", err.msg);
        abort();
    }
    return 0;
}

/* ---- Checks ------------------------------------------------------------------------ */

/* libhdf5 is not instrumented: an object left open shows up here. */
static void check_closed(const char *after)
{
    ssize_t n = H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (n != 0) {
        fprintf(stderr, "fuzz_subnet: %zd HDF5 objects left open by %s\n", n, after);
        abort();
    }
}

static void write_file(const char *p, const uint8_t *data, size_t size)
{
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort();
}

/* What ofa-export does with the record: parse the text against the space. */
static void check_subnet_text(const char *text)
{
    for (int k = 0; k < 2; k++) {
        const struct ofa_space *sp = &spaces[k];
        struct ofa_subnet s, s2;
        struct ofa_error err;
        if (ofa_subnet_parse(sp, text, &s, &err) != 0) {
            if (verbose)
                fprintf(stderr, "space %d: %s\n", k, err.msg);
            continue;
        }
        if (!ofa_subnet_valid(sp, &s)) {
            fprintf(stderr, "fuzz_subnet: '%s' parses but is not valid in space %d\n", text, k);
            abort();
        }
        char canon[OFA_SUBNET_TEXT_MAX], canon2[OFA_SUBNET_TEXT_MAX];
        ofa_subnet_format(sp, &s, canon, sizeof canon);
        if (ofa_subnet_parse(sp, canon, &s2, &err) != 0) {
            fprintf(stderr, "fuzz_subnet: canonical text '%s' of '%s' does not parse: %s\n",
                    canon, text, err.msg);
            abort();
        }
        ofa_subnet_format(sp, &s2, canon2, sizeof canon2);
        if (strcmp(canon, canon2) != 0) {
            fprintf(stderr, "fuzz_subnet: '%s' -> '%s' -> '%s'\n", text, canon, canon2);
            abort();
        }
        (void)ofa_subnet_macs(sp, &s);
        (void)ofa_subnet_params(sp, &s);
        if (verbose)
            fprintf(stderr, "space %d: subnet %s\n", k, canon);
    }
}

static int same_record(const struct ofa_subnet_record *a, const struct ofa_subnet_record *b)
{
#define SAME(x) (memcmp(&a->x, &b->x, sizeof a->x) == 0)
    return !strcmp(a->subnet, b->subnet) && !strcmp(a->device, b->device) &&
           !strcmp(a->latency_model, b->latency_model) && SAME(supernet_fingerprint) &&
           SAME(acc_predicted) && SAME(acc_measured) && SAME(latency_predicted_ms) &&
           SAME(latency_measured_ms) && SAME(mmacs) && SAME(params) && SAME(flash_bytes) &&
           SAME(sram_bytes) && SAME(budget_latency_ms) && SAME(budget_flash_kb) &&
           SAME(budget_sram_kb) && SAME(budget_mmacs);
#undef SAME
}

/* ---- Set-up and seeds -------------------------------------------------------------- */

static void cleanup(void)
{
    if (path[0])
        unlink(path);
    if (path2[0])
        unlink(path2);
}

/* The real writer's files: valid, and damaged (truncated; a byte of the
 * subnet text changed), into dir. */
static void write_seeds(const char *dir)
{
    struct ofa_subnet_record r;
    memset(&r, 0, sizeof r);
    struct ofa_subnet s;
    ofa_subnet_medium(&spaces[0], &s);
    ofa_subnet_format(&spaces[0], &s, r.subnet, sizeof r.subnet);
    snprintf(r.device, sizeof r.device, "cortex-m7");
    snprintf(r.latency_model, sizeof r.latency_model, "opwise");
    r.supernet_fingerprint = 0x0123456789abcdefULL;
    r.acc_predicted = 0.91, r.acc_measured = 0.905;
    r.latency_predicted_ms = 12.5, r.latency_measured_ms = NAN;
    r.mmacs = 4.25, r.params = 123456, r.flash_bytes = 150000, r.sram_bytes = 60000;
    r.budget_latency_ms = 20, r.budget_flash_kb = 512, r.budget_sram_kb = 0, r.budget_mmacs = 0;
    char p[4096];
    struct ofa_error err;
    snprintf(p, sizeof p, "%s/medium.h5", dir);
    if (ofa_subnet_record_save(p, &r, &err) != 0) {
        fprintf(stderr, "fuzz_subnet: %s: %s\n", err.file, err.msg);
        exit(1);
    }
    FILE *f = fopen(p, "rb");
    static uint8_t img[1 << 16];
    size_t n = f ? fread(img, 1, sizeof img, f) : 0;
    if (f)
        fclose(f);
    /* cut in half: the header's file size no longer matches (refused
     * before libhdf5 unless resealed) */
    snprintf(p, sizeof p, "%s/truncated.h5", dir);
    write_file(p, img, n / 2);
    /* the subnet text's first "r" becomes "R" (found by content), with the
     * header made valid again: the damage reaches ofa_subnet_parse */
    for (size_t i = OFA_H5_UB_SIZE; i + strlen(r.subnet) <= n; i++)
        if (memcmp(img + i, r.subnet, strlen(r.subnet)) == 0) {
            img[i] = 'R';
            break;
        }
    ofa_h5_header_fill(img, n, OFA_H5_MAGIC);
    snprintf(p, sizeof p, "%s/bad-text.h5", dir);
    write_file(p, img, n);
    ofa_subnet_smallest(&spaces[1], &s);
    ofa_subnet_format(&spaces[1], &s, r.subnet, sizeof r.subnet);
    snprintf(r.device, sizeof r.device, "%s", "");
    snprintf(r.latency_model, sizeof r.latency_model, "measured int8");
    snprintf(p, sizeof p, "%s/small-space.h5", dir);
    if (ofa_subnet_record_save(p, &r, &err) != 0) {
        fprintf(stderr, "fuzz_subnet: %s: %s\n", err.file, err.msg);
        exit(1);
    }
    fprintf(stderr, "fuzz_subnet: seeds written to %s\n", dir);
}

/* Remove what killed runs of this target left in dir: entries named
 * <prefix><pid>_... whose process is gone (a crash skips atexit). */
static void remove_stale(const char *dir, const char *prefix)
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
        unlink(p);
    }
    if (d)
        closedir(d);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    /* loaders in this process, not in a guarding child: crashes must show */
    ofa_h5_guard_set(0);
    (void)argc;
    (void)argv;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    verbose = getenv("OFA_FUZZ_VERBOSE") != NULL;
    const char *e = getenv("OFA_FUZZ_RESEAL");
    reseal = e && *e == '1';
    raw = getenv("OFA_FUZZ_RAW") != NULL || reseal;
    ofa_space_default(&spaces[0]);
    /* A small space with other choice sets (tests/check_model.c's). */
    struct ofa_space *sp = &spaces[1];
    ofa_space_default(sp);
    sp->stem_width = 8, sp->first_width = 8, sp->n_stages = 2;
    sp->stages[0] = (struct ofa_stage_cfg){8, 1, OFA_ACT_RELU, 1};
    sp->stages[1] = (struct ofa_stage_cfg){12, 2, OFA_ACT_HSWISH, 0};
    sp->n_depths = 2, sp->depths[0] = 1, sp->depths[1] = 2;
    sp->n_expands = 2, sp->expands[0] = 2, sp->expands[1] = 3;
    sp->n_kernels = 3, sp->kernels[0] = 3, sp->kernels[1] = 5, sp->kernels[2] = 7;
    sp->n_res = 2, sp->resolutions[0] = 8, sp->resolutions[1] = 10;
    sp->head_width = 16, sp->num_classes = 3;
    struct ofa_error err;
    for (int k = 0; k < 2; k++)
        if (ofa_space_validate(&spaces[k], &err) != 0) {
            fprintf(stderr, "fuzz_subnet: space %d: %s\n", k, err.msg);
            abort();
        }
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    remove_stale(dir, "fuzz_subnet_");
    snprintf(path, sizeof path, "%s/fuzz_subnet_%ld_XXXXXX", dir, (long)getpid());
    int fd = mkstemp(path);
    if (fd < 0)
        abort();
    close(fd);
    snprintf(path2, sizeof path2, "%s.rt", path);
    atexit(cleanup);
    const char *seeds = getenv("OFA_FUZZ_SEED_DIR");
    if (seeds)
        write_seeds(seeds);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size >= 8 && memcmp(data, OFA_H5_MAGIC, 8) == 0) {
        if (!raw) /* byte-level files: only with OFA_FUZZ_RAW or _RESEAL (see the top) */
            return 0;
        if (reseal && size >= OFA_H5_UB_SIZE) {
            uint8_t *img = malloc(size);
            if (!img)
                abort();
            memcpy(img, data, size);
            ofa_h5_header_fill(img, size, OFA_H5_MAGIC);
            write_file(path, img, size);
            free(img);
        } else {
            write_file(path, data, size);
        }
    } else {
        struct in in = {data, size};
        if (build_sealed(&in) != 0)
            return 0;
        const char *keep = getenv("OFA_FUZZ_SAVE_FILE"); /* the built subnet.h5, for reports */
        if (keep) {
            uint8_t *img = NULL;
            size_t len = 0;
            struct ofa_error e;
            if (ofa_read_file(path, &img, &len, &e) == 0)
                write_file(keep, img, len);
            free(img);
        }
    }
    struct ofa_subnet_record r;
    struct ofa_error err;
    int rc = ofa_subnet_record_load(path, &r, &err);
    check_closed("ofa_subnet_record_load");
    if (verbose)
        fprintf(stderr, "load: %s\n", rc == 0 ? "accepted" : err.msg);
    if (rc != 0)
        return 0;
    if (!memchr(r.subnet, '\0', sizeof r.subnet) || !memchr(r.device, '\0', sizeof r.device) ||
        !memchr(r.latency_model, '\0', sizeof r.latency_model))
        abort();
    check_subnet_text(r.subnet);
    /* What we accept, we write and read back equal. */
    struct ofa_subnet_record back;
    if (ofa_subnet_record_save(path2, &r, &err) != 0 ||
        ofa_subnet_record_load(path2, &back, &err) != 0) {
        fprintf(stderr, "fuzz_subnet: round trip failed: %s\n", err.msg);
        abort();
    }
    unlink(path2);
    check_closed("the round trip");
    if (!same_record(&r, &back)) {
        fprintf(stderr, "fuzz_subnet: the record changed in a round trip\n");
        abort();
    }
    return 0;
}
