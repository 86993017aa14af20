/* ofa-export: materialises a device's subnet, fine-tunes it for cross-device
 * stability, quantizes it to int8 and writes the deployable artifacts
 * (export/export.c). */
#include <config.h>

#include "blas.h"
#include "cli.h"
#include "export.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

static const char *const prog = "ofa-export";

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: %s --supernet SUPERNET.h5 --subnet SUBNET.h5 --data DATA.h5 -o DIR [OPTION]...\n"
            "Materialise, stabilise and quantize a device's subnet; write its artifacts to DIR:\n"
            "model.h5 (int8 + float, for ofa-run), model.onnx (float), model.c/model.h (int8,\n"
            "dependency-free C), card.md (figures) and export.tsv (the same, for scripts).\n\n"
            "  -s, --supernet=FILE  checkpoint written by ofa-train\n"
            "  -n, --subnet=FILE    subnet chosen by ofa-extract (devices/DEV/subnet.h5)\n"
            "  -d, --data=FILE      data set prepared by ofa-data (the one trained on)\n"
            "  -o, --output=DIR     device directory (must exist)\n"
            "  -r, --recipe=FILE    take the [export] and [variant.*] settings from this\n"
            "                       recipe instead of the supernet's recorded one\n"
            "      --set=SEC.KEY=VALUE  override an export.* or variant.NAME.* key\n"
            "                       (repeatable), e.g. --set export.epochs=0\n"
            "  -q, --quiet          no progress lines\n"
            OFA_CLI_COMMON_HELP
            "\nExample:\n"
            "  %s -s runs/quick/supernet.h5 -n runs/quick/devices/cortex-m7/subnet.h5 \\\n"
            "     -d runs/quick/data.h5 -o runs/quick/devices/cortex-m7\n",
            prog, prog);
}

int main(int argc, char **argv)
{
    ofa_blas_select_kernels(argv); /* before anything else: it may exec */
    ofa_cleanup_on_signals(); /* a signal leaves no temporary file behind */
    enum { OPT_SET = 256 };
    static const struct option opts[] = {
        {"supernet", required_argument, NULL, 's'}, {"subnet", required_argument, NULL, 'n'},
        {"data", required_argument, NULL, 'd'},     {"output", required_argument, NULL, 'o'},
        {"recipe", required_argument, NULL, 'r'},   {"set", required_argument, NULL, OPT_SET},
        {"quiet", no_argument, NULL, 'q'},          OFA_CLI_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0}};
    struct ofa_export_opts o = {.progress = 1};
    char recipe_buf[1024];
    struct ofa_cli_common co;
    struct ofa_error err;
    int c, r;
    ofa_cli_common_init(&co);
    while ((c = getopt_long(argc, argv, "s:n:d:o:r:q" OFA_CLI_COMMON_SHORTOPTS, opts, NULL)) !=
           -1) {
        switch (c) {
        case 's': o.supernet = optarg; break;
        case 'n': o.subnet = optarg; break;
        case 'd': o.data = optarg; break;
        case 'o': o.outdir = optarg; break;
        case 'r': o.recipe = ofa_recipe_find(optarg, recipe_buf, sizeof recipe_buf); break;
        case 'q': o.progress = 0; break;
        case OPT_SET:
            if (o.n_sets == OFA_EXPORT_MAX_SETS) {
                fprintf(stderr, "%s: at most %d --set options\n", prog, OFA_EXPORT_MAX_SETS);
                return EXIT_FAILURE;
            }
            o.sets[o.n_sets++] = optarg;
            break;
        default:
            if ((r = ofa_cli_common_opt(c, optarg, prog, usage, &co)) <= 0)
                return r == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
        }
    }
    if (ofa_cli_common_finish(argc, argv, optind, prog, &co))
        return EXIT_FAILURE;
    if (!o.supernet || !o.subnet || !o.data || !o.outdir) {
        fprintf(stderr, "%s: --supernet, --subnet, --data and --output are required\n"
                        "Try '%s --help' for more information.\n", prog, prog);
        return EXIT_FAILURE;
    }
    if (ofa_export_run(&o, &err)) {
        ofa_error_print(&err, prog);
        return EXIT_FAILURE;
    }
    return EXIT_SUCCESS;
}
