/* cli.h: what every ofa-* program shares on its command line.
 *
 * Strict number parsing (the whole string, in range, with a message naming
 * the option), --threads handling, --version text and the --verbose banner
 * that says which BLAS is loaded and how many threads run.
 */
#ifndef OFA_CLI_H
#define OFA_CLI_H

#include "util.h"

#include <stdio.h>

/* Parse all of s as a base-10 integer in [lo, hi]. On failure fills err
 * (file = the option name, e.g. "--threads") and returns -1. */
int ofa_parse_long(const char *s, long lo, long hi, const char *what, long *out,
                   struct ofa_error *err);
/* Parse all of s as a finite float in [lo, hi]. */
int ofa_parse_float(const char *s, double lo, double hi, const char *what, float *out,
                    struct ofa_error *err);
/* Threads to use when --threads is absent: OMP_NUM_THREADS if set, else the
 * number of online processors. */
int ofa_default_threads(void);
/* Print "<prog> (ofa) VERSION" and the licence line to stdout. */
void ofa_print_version(const char *prog);
/* Print the start-up banner to stderr: program, version, BLAS and threads. */
void ofa_print_banner(const char *prog);

/* A recipe argument: a path as given when that file exists; otherwise a bare
 * name ("quick", "fashion-mnist.ini") is looked up in $OFA_RECIPES and then
 * in the installed recipes directory ($(pkgdatadir)/recipes), with ".ini"
 * added when missing. Returns arg itself or buf (n bytes) holding the found
 * path; arg itself when nothing is found, so the caller's error names it. */
const char *ofa_recipe_find(const char *arg, char *buf, size_t n);

/* Options every program takes: -j/--threads, -v/--verbose, -h/--help,
 * -V/--version. Put OFA_CLI_COMMON_LONGOPTS in the long-option table and
 * OFA_CLI_COMMON_SHORTOPTS in the short-option string, and pass every option
 * the program does not handle itself to ofa_cli_common_opt. */
#define OFA_CLI_COMMON_SHORTOPTS "j:vhV"
#define OFA_CLI_COMMON_LONGOPTS                                                 \
    {"threads", required_argument, NULL, 'j'}, {"verbose", no_argument, NULL, 'v'}, \
        {"help", no_argument, NULL, 'h'}, {"version", no_argument, NULL, 'V'}
#define OFA_CLI_COMMON_HELP                                                          \
    "  -j, --threads=N      OpenMP and BLAS threads (default: OMP_NUM_THREADS or all cores)\n" \
    "  -v, --verbose        print the BLAS in use and thread counts at start-up\n"          \
    "  -h, --help           show this help and exit\n"                                      \
    "  -V, --version        show the version and exit\n"

struct ofa_cli_common {
    int threads;
    int verbose;
};

void ofa_cli_common_init(struct ofa_cli_common *co);
/* Handle option c. Returns 1 when the program should go on parsing, 0 when it
 * should exit successfully (--help, --version done), -1 when it should exit
 * with failure (message printed). */
int ofa_cli_common_opt(int c, const char *arg, const char *prog, void (*usage)(FILE *),
                       struct ofa_cli_common *co);
/* After parsing: reject stray arguments, set thread counts, print the banner
 * when verbose. Returns 0 or -1 (message printed). */
int ofa_cli_common_finish(int argc, char **argv, int optind_, const char *prog,
                          const struct ofa_cli_common *co);
#endif
