/* ofa-train: trains the once-for-all supernet (sandwich rule, in-place
 * distillation, delayed epsilon-shrinking) and checkpoints it to HDF5.
 * This version parses and validates its command line; the training loop
 * itself is not built yet, and the program says so instead of pretending. */
#include <config.h>

#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

static const char *const prog = "ofa-train";

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: %s --recipe RECIPE.ini --data DATA.h5 -o SUPERNET.h5 [OPTION]...\n"
            "Train a once-for-all supernet described by RECIPE on DATA.\n\n"
            "  -r, --recipe=FILE    recipe (INI) naming every setting\n"
            "  -d, --data=FILE      data set prepared by ofa-data\n"
            "  -o, --output=FILE    supernet checkpoint to write (HDF5)\n"
            "      --resume         continue from the checkpoint at --output\n"
            OFA_CLI_COMMON_HELP
            "\nExample:\n"
            "  %s --recipe recipes/quick.ini --data runs/quick/data.h5 -o runs/quick/supernet.h5\n",
            prog, prog);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"recipe", required_argument, NULL, 'r'}, {"data", required_argument, NULL, 'd'},
        {"output", required_argument, NULL, 'o'}, {"resume", no_argument, NULL, 'R'},
        OFA_CLI_COMMON_LONGOPTS,                  {NULL, 0, NULL, 0}};
    const char *recipe = NULL, *data = NULL, *output = NULL;
    int resume = 0, c, r;
    struct ofa_cli_common co;
    ofa_cli_common_init(&co);
    while ((c = getopt_long(argc, argv, "r:d:o:" OFA_CLI_COMMON_SHORTOPTS, opts, NULL)) != -1) {
        switch (c) {
        case 'r': recipe = optarg; break;
        case 'd': data = optarg; break;
        case 'o': output = optarg; break;
        case 'R': resume = 1; break;
        default:
            if ((r = ofa_cli_common_opt(c, optarg, prog, usage, &co)) <= 0)
                return r == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
        }
    }
    if (ofa_cli_common_finish(argc, argv, optind, prog, &co))
        return EXIT_FAILURE;
    if (!recipe || !data || !output) {
        fprintf(stderr, "%s: --recipe, --data and --output are required\nTry '%s --help'.\n",
                prog, prog);
        return EXIT_FAILURE;
    }
    fprintf(stderr,
            "%s: would %s training recipe '%s' on '%s' into '%s' with %d threads,\n"
            "%s: but the training loop is not built in this version; nothing was done.\n",
            prog, resume ? "resume" : "start", recipe, data, output, co.threads, prog);
    return OFA_EXIT_NOT_IMPLEMENTED;
}
