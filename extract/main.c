/* ofa-extract: BN recalibration, accuracy and per-device efficiency
 * predictors, constrained evolutionary search; one subnet per device.
 * This version parses and validates its command line; the search itself is
 * not built yet, and the program says so instead of pretending. */
#include <config.h>

#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

static const char *const prog = "ofa-extract";

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: %s --supernet SUPERNET.h5 --data DATA.h5 --device NAME -o SUBNET.h5 [OPTION]...\n"
            "Search the trained supernet for the most accurate subnet within device NAME's budgets.\n\n"
            "  -s, --supernet=FILE  checkpoint written by ofa-train (its recipe names the devices)\n"
            "  -d, --data=FILE      data set prepared by ofa-data (validation split)\n"
            "  -D, --device=NAME    device profile from the recipe\n"
            "  -o, --output=FILE    subnet file to write (HDF5)\n"
            OFA_CLI_COMMON_HELP
            "\nExample:\n"
            "  %s -s runs/quick/supernet.h5 -d runs/quick/data.h5 -D cortex-m7 \\\n"
            "     -o runs/quick/devices/cortex-m7/subnet.h5\n",
            prog, prog);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"supernet", required_argument, NULL, 's'}, {"data", required_argument, NULL, 'd'},
        {"device", required_argument, NULL, 'D'},   {"output", required_argument, NULL, 'o'},
        OFA_CLI_COMMON_LONGOPTS,                    {NULL, 0, NULL, 0}};
    const char *supernet = NULL, *data = NULL, *device = NULL, *output = NULL;
    int c, r;
    struct ofa_cli_common co;
    ofa_cli_common_init(&co);
    while ((c = getopt_long(argc, argv, "s:d:D:o:" OFA_CLI_COMMON_SHORTOPTS, opts, NULL)) != -1) {
        switch (c) {
        case 's': supernet = optarg; break;
        case 'd': data = optarg; break;
        case 'D': device = optarg; break;
        case 'o': output = optarg; break;
        default:
            if ((r = ofa_cli_common_opt(c, optarg, prog, usage, &co)) <= 0)
                return r == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
        }
    }
    if (ofa_cli_common_finish(argc, argv, optind, prog, &co))
        return EXIT_FAILURE;
    if (!supernet || !data || !device || !output) {
        fprintf(stderr, "%s: --supernet, --data, --device and --output are required\n"
                        "Try '%s --help'.\n", prog, prog);
        return EXIT_FAILURE;
    }
    fprintf(stderr,
            "%s: would search '%s' for device '%s' (validation data '%s') and write '%s',\n"
            "%s: but the search is not built in this version; nothing was done.\n",
            prog, supernet, device, data, output, prog);
    return OFA_EXIT_NOT_IMPLEMENTED;
}
