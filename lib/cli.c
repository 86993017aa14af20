/* cli.c: shared command-line helpers for the ofa-* programs. */
#include <config.h>

#include "cli.h"
#include "blas.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int ofa_parse_long(const char *s, long lo, long hi, const char *what, long *out,
                   struct ofa_error *err)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (s[0] == '\0' || *end != '\0' || errno == ERANGE)
        return ofa_error_set(err, NULL, 0, "%s: '%s' is not an integer", what, s);
    if (v < lo || v > hi)
        return ofa_error_set(err, NULL, 0, "%s: %ld is out of range [%ld, %ld]", what, v,
                             lo, hi);
    *out = v;
    return 0;
}

int ofa_parse_float(const char *s, double lo, double hi, const char *what, float *out,
                    struct ofa_error *err)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (s[0] == '\0' || *end != '\0' || errno == ERANGE || !isfinite(v))
        return ofa_error_set(err, NULL, 0, "%s: '%s' is not a finite number", what, s);
    if (v < lo || v > hi)
        return ofa_error_set(err, NULL, 0, "%s: %g is out of range [%g, %g]", what, v, lo,
                             hi);
    *out = (float)v;
    return 0;
}

int ofa_default_threads(void)
{
    const char *env = getenv("OMP_NUM_THREADS");
    long v;
    if (env && ofa_parse_long(env, 1, 4096, "OMP_NUM_THREADS", &v, NULL) == 0)
        return (int)v;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n >= 1 ? (int)n : 1;
}

void ofa_print_version(const char *prog)
{
    printf("%s (%s) %s\n", prog, PACKAGE_NAME, PACKAGE_VERSION);
}

void ofa_print_banner(const char *prog)
{
    char buf[512];
    ofa_blas_describe(buf, sizeof buf);
    fprintf(stderr, "%s %s\n%s: %s\n", prog, PACKAGE_VERSION, prog, buf);
    if (!ofa_blas_is_openmp())
        fprintf(stderr, "%s: warning: OpenBLAS is not its OpenMP build; its thread pool will "
                        "compete with OpenMP's (install libopenblas0-openmp)\n", prog);
}

void ofa_cli_common_init(struct ofa_cli_common *co)
{
    co->threads = ofa_default_threads();
    co->verbose = 0;
}

int ofa_cli_common_opt(int c, const char *arg, const char *prog, void (*usage)(FILE *),
                       struct ofa_cli_common *co)
{
    struct ofa_error err;
    long v;
    switch (c) {
    case 'j':
        if (ofa_parse_long(arg, 1, 4096, "--threads", &v, &err)) {
            ofa_error_print(&err, prog);
            return -1;
        }
        co->threads = (int)v;
        return 1;
    case 'v':
        co->verbose = 1;
        return 1;
    case 'h':
        usage(stdout);
        return 0;
    case 'V':
        ofa_print_version(prog);
        return 0;
    default:
        fprintf(stderr, "Try '%s --help' for more information.\n", prog);
        return -1;
    }
}

int ofa_cli_common_finish(int argc, char **argv, int optind_, const char *prog,
                          const struct ofa_cli_common *co)
{
    if (optind_ < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\nTry '%s --help' for more information.\n",
                prog, argv[optind_], prog);
        return -1;
    }
    ofa_threads_set(co->threads);
    if (co->verbose)
        ofa_print_banner(prog);
    return 0;
}

static int readable(const char *path)
{
    return access(path, R_OK) == 0;
}

const char *ofa_recipe_find(const char *arg, char *buf, size_t n)
{
    if (readable(arg) || strchr(arg, '/'))
        return arg;
    size_t len = strlen(arg);
    const char *ext = len > 4 && strcmp(arg + len - 4, ".ini") == 0 ? "" : ".ini";
    const char *dirs[2] = {getenv("OFA_RECIPES"), OFA_RECIPESDIR};
    for (int i = 0; i < 2; i++) {
        if (!dirs[i] || !*dirs[i])
            continue;
        int k = snprintf(buf, n, "%s/%s%s", dirs[i], arg, ext);
        if (k > 0 && (size_t)k < n && readable(buf))
            return buf;
    }
    return arg;
}
