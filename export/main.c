/* ofa-export: materialises a device's subnet, fine-tunes it for cross-device
 * stability, quantizes it to int8 and writes the deployable artifacts.
 * This version parses and validates its command line; the export itself is
 * not built yet, and the program says so instead of pretending. */
#include <config.h>

#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

static const char *const prog = "ofa-export";

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: %s --supernet SUPERNET.h5 --subnet SUBNET.h5 --data DATA.h5 -o DIR [OPTION]...\n"
            "Materialise, stabilise and quantize a device's subnet; write its artifacts to DIR.\n\n"
            "  -s, --supernet=FILE  checkpoint written by ofa-train\n"
            "  -n, --subnet=FILE    subnet chosen by ofa-extract\n"
            "  -d, --data=FILE      data set prepared by ofa-data\n"
            "  -o, --output=DIR     device directory for model.h5, model.onnx, card.md\n"
            OFA_CLI_COMMON_HELP
            "\nExample:\n"
            "  %s -s runs/quick/supernet.h5 -n runs/quick/devices/cortex-m7/subnet.h5 \\\n"
            "     -d runs/quick/data.h5 -o runs/quick/devices/cortex-m7\n",
            prog, prog);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"supernet", required_argument, NULL, 's'}, {"subnet", required_argument, NULL, 'n'},
        {"data", required_argument, NULL, 'd'},     {"output", required_argument, NULL, 'o'},
        OFA_CLI_COMMON_LONGOPTS,                    {NULL, 0, NULL, 0}};
    const char *supernet = NULL, *subnet = NULL, *data = NULL, *output = NULL;
    int c, r;
    struct ofa_cli_common co;
    ofa_cli_common_init(&co);
    while ((c = getopt_long(argc, argv, "s:n:d:o:" OFA_CLI_COMMON_SHORTOPTS, opts, NULL)) != -1) {
        switch (c) {
        case 's': supernet = optarg; break;
        case 'n': subnet = optarg; break;
        case 'd': data = optarg; break;
        case 'o': output = optarg; break;
        default:
            if ((r = ofa_cli_common_opt(c, optarg, prog, usage, &co)) <= 0)
                return r == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
        }
    }
    if (ofa_cli_common_finish(argc, argv, optind, prog, &co))
        return EXIT_FAILURE;
    if (!supernet || !subnet || !data || !output) {
        fprintf(stderr, "%s: --supernet, --subnet, --data and --output are required\n"
                        "Try '%s --help'.\n", prog, prog);
        return EXIT_FAILURE;
    }
    fprintf(stderr,
            "%s: would export subnet '%s' of '%s' (data '%s') into '%s',\n"
            "%s: but the export is not built in this version; nothing was done.\n",
            prog, subnet, supernet, data, output, prog);
    return OFA_EXIT_NOT_IMPLEMENTED;
}
