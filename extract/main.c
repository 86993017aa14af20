/* ofa-extract: for one device profile of the supernet's recipe, predictors
 * (accuracy, latency, memory), constrained evolutionary search, and the
 * chosen subnet in subnet.h5; a thin command line over lib/extract.c. */
#include <config.h>

#include "blas.h"
#include "cli.h"
#include "extract.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const prog = "ofa-extract";

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: %s --supernet SUPERNET.h5 --data DATA.h5 --device NAME -o SUBNET.h5 [OPTION]...\n"
            "  or:  %s --supernet SUPERNET.h5 --data DATA.h5 --evaluate [--split test] SUBNET...\n"
            "Choose the most accurate subnet of a trained supernet within device NAME's budgets;\n"
            "or print the BN-recalibrated accuracy of the given subnets as TSV.\n\n"
            "  -s, --supernet=FILE      checkpoint written by ofa-train (its recipe names the devices)\n"
            "  -d, --data=FILE          data set prepared by ofa-data (validation split)\n"
            "  -D, --device=NAME        device profile ([device.NAME]) of the supernet's recipe,\n"
            "                           or of --recipe\n"
            "  -o, --output=FILE        subnet file to write; subnet.txt and pareto.tsv go beside it\n"
            "  -m, --measurements=FILE  accuracy measurement cache, shared by all devices\n"
            "                           (default: SUPERNET.measurements.tsv)\n"
            "      --samples=M          subnets measured for the accuracy predictor\n"
            "                           (default: the recipe's extract.samples, 300)\n"
            "      --generations=G      evolution rounds (default: extract.generations, 500)\n"
            "      --top=K              best candidates re-measured for real (default:\n"
            "                           extract.top, 5)\n"
            "      --measure-only       only measure the --samples subnets into the cache\n"
            "                           (before running devices in parallel)\n"
            "  -q, --quiet              no progress messages\n"
            "      --list-devices       print the device profiles of the supernet's recipe\n"
            "                           (or, with -r RECIPE.ini instead of -s, of a recipe)\n"
            "      --evaluate           evaluate each SUBNET: a subnet text, largest, medium,\n"
            "                           smallest, or random:N (N subnets drawn with a fixed seed,\n"
            "                           the same for every supernet of the space)\n"
            "      --split=val|test     split of --evaluate (default val)\n"
            "  -r, --recipe=FILE        take the device profiles from this recipe (or a file of\n"
            "                           [device.NAME] sections) instead of the supernet's: add\n"
            "                           or change devices without retraining; also for\n"
            "                           --list-devices\n"
            OFA_CLI_COMMON_HELP
            "\nExample:\n"
            "  %s -s runs/quick/supernet.h5 -d runs/quick/data.h5 -D cortex-m7 \\\n"
            "     -o runs/quick/devices/cortex-m7/subnet.h5\n"
            "  %s -s runs/quick/supernet.h5 -d runs/quick/data.h5 -r my-devices.ini \\\n"
            "     -D my-board -o runs/quick/devices/my-board/subnet.h5\n"
            "  %s -s runs/quick/supernet.h5 -d runs/quick/data.h5 --evaluate --split test \\\n"
            "     largest medium smallest random:50 > accuracy.tsv\n",
            prog, prog, prog, prog, prog);
}

int main(int argc, char **argv)
{
    ofa_blas_select_kernels(argv); /* before anything else: it may exec */
    ofa_cleanup_on_signals(); /* a signal leaves no temporary file behind */
    enum { OPT_SAMPLES = 256, OPT_GENS, OPT_TOP, OPT_LIST, OPT_MEASURE, OPT_EVAL, OPT_SPLIT };
    static const struct option opts[] = {
        {"supernet", required_argument, NULL, 's'},
        {"data", required_argument, NULL, 'd'},
        {"device", required_argument, NULL, 'D'},
        {"output", required_argument, NULL, 'o'},
        {"measurements", required_argument, NULL, 'm'},
        {"samples", required_argument, NULL, OPT_SAMPLES},
        {"generations", required_argument, NULL, OPT_GENS},
        {"top", required_argument, NULL, OPT_TOP},
        {"evaluate", no_argument, NULL, OPT_EVAL},
        {"split", required_argument, NULL, OPT_SPLIT},
        {"quiet", no_argument, NULL, 'q'},
        {"list-devices", no_argument, NULL, OPT_LIST},
        {"recipe", required_argument, NULL, 'r'},
        {"measure-only", no_argument, NULL, OPT_MEASURE},
        OFA_CLI_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0}};
    struct ofa_extract_opts o = {.progress = 1};
    int list = 0, evaluate = 0;
    const char *recipe = NULL;
    char recipe_buf[1024];
    struct ofa_cli_common co;
    struct ofa_error err;
    long v;
    int c, r;
    ofa_cli_common_init(&co);
    while ((c = getopt_long(argc, argv, "s:d:D:o:m:r:q" OFA_CLI_COMMON_SHORTOPTS, opts, NULL)) !=
           -1) {
        switch (c) {
        case 's': o.supernet = optarg; break;
        case 'd': o.data = optarg; break;
        case 'D': o.device = optarg; break;
        case 'o': o.output = optarg; break;
        case 'm': o.measurements = optarg; break;
        case 'q': o.progress = 0; break;
        case 'r': recipe = ofa_recipe_find(optarg, recipe_buf, sizeof recipe_buf); break;
        case OPT_LIST: list = 1; break;
        case OPT_MEASURE: o.measure_only = 1; break;
        case OPT_EVAL: evaluate = 1; break;
        case OPT_SPLIT:
            if (strcmp(optarg, "val") && strcmp(optarg, "test")) {
                fprintf(stderr, "%s: --split: '%s' is not val or test\n", prog, optarg);
                return EXIT_FAILURE;
            }
            o.test_split = !strcmp(optarg, "test");
            break;
        case OPT_SAMPLES:
        case OPT_GENS:
        case OPT_TOP: {
            const char *name = c == OPT_SAMPLES ? "--samples" : c == OPT_GENS ? "--generations"
                                                                              : "--top";
            if (ofa_parse_long(optarg, c == OPT_SAMPLES ? 10 : 1, c == OPT_TOP ? 64 : 1000000,
                               name, &v, &err)) {
                ofa_error_print(&err, prog);
                return EXIT_FAILURE;
            }
            *(c == OPT_SAMPLES ? &o.samples : c == OPT_GENS ? &o.generations : &o.top) = (int)v;
            break;
        }
        default:
            if ((r = ofa_cli_common_opt(c, optarg, prog, usage, &co)) <= 0)
                return r == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
        }
    }
    if (evaluate) {
        /* the operands are the subnets */
        if (optind == argc || !o.supernet || !o.data) {
            fprintf(stderr, "%s: --evaluate needs --supernet, --data and at least one SUBNET "
                            "(e.g. largest)\n", prog);
            return EXIT_FAILURE;
        }
        o.evaluate = (const char *const *)(argv + optind);
        o.n_evaluate = argc - optind;
        o.eval_out = stdout;
        optind = argc;
    }
    if (ofa_cli_common_finish(argc, argv, optind, prog, &co))
        return EXIT_FAILURE;
    if (list) {
        if (!o.supernet == !recipe) {
            fprintf(stderr, "%s: --list-devices needs --supernet or --recipe (one of them)\n",
                    prog);
            return EXIT_FAILURE;
        }
        if (ofa_extract_list_devices(o.supernet, recipe, stdout, &err)) {
            ofa_error_print(&err, prog);
            return EXIT_FAILURE;
        }
        return EXIT_SUCCESS;
    }
    if (o.measure_only && (!o.supernet || !o.data)) {
        fprintf(stderr, "%s: --measure-only needs --supernet and --data\n", prog);
        return EXIT_FAILURE;
    }
    if (!o.measure_only && !evaluate && (!o.supernet || !o.data || !o.device || !o.output)) {
        fprintf(stderr, "%s: --supernet, --data, --device and --output are required\n"
                        "Try '%s --help' for more information.\n", prog, prog);
        return EXIT_FAILURE;
    }
    if (o.output && !evaluate && !o.measure_only) {
        /* before the search, not after it: the output's directory must exist */
        char *dir = ofa_dirname(o.output);
        struct stat st;
        int ok = stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
        if (!ok)
            fprintf(stderr, "%s: %s: the directory %s does not exist (create it first)\n", prog,
                    o.output, dir);
        free(dir);
        if (!ok)
            return EXIT_FAILURE;
    }
    o.devices = recipe;
    o.threads = co.threads;
    if (ofa_extract_run(&o, &err)) {
        ofa_error_print(&err, prog);
        return EXIT_FAILURE;
    }
    return EXIT_SUCCESS;
}
