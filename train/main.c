/* ofa-train: trains the once-for-all supernet (sandwich rule, in-place
 * distillation, delayed epsilon-shrinking, BigNAS or progressive shrinking)
 * and checkpoints it to HDF5; a thin command line over lib/train.c. */
#include <config.h>

#include "blas.h"
#include "cli.h"
#include "dist.h"
#include "recipe.h"
#include "train.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char *const prog = "ofa-train";

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: %s --recipe RECIPE.ini --data DATA.h5 -o SUPERNET.h5 [OPTION]...\n"
            "Train a once-for-all supernet described by RECIPE on DATA.\n\n"
            "While training, the checkpoint is SUPERNET.h5.part (written every epoch and every\n"
            "checkpoint_minutes); SUPERNET.h5 appears only when training has finished. SIGINT\n"
            "or SIGTERM finishes the current step, writes the checkpoint and exits with 2.\n\n"
            "  -r, --recipe=FILE    recipe (INI) naming every setting; a bare name (quick,\n"
            "                       fashion-mnist) is looked up in $OFA_RECIPES, then in\n"
            "                       the installed recipes (" OFA_RECIPESDIR ")\n"
            "  -d, --data=FILE      data set prepared by ofa-data\n"
            "  -o, --output=FILE    supernet checkpoint to write (HDF5)\n"
            "      --resume         continue from SUPERNET.h5.part (its recipe is used; a\n"
            "                       --recipe given too must train the same way: its\n"
            "                       devices, [extract] and [export] may differ)\n"
            "  -s, --set=SEC.KEY=VALUE  override one recipe key (repeatable),\n"
            "                       e.g. --set train.epochs=5\n"
            "      --log=FILE       TSV log (default: SUPERNET.tsv beside the output)\n"
            "  -q, --quiet          no progress line\n"
            "      --stop-after=N   stop (with a checkpoint) after N steps, as if interrupted\n"
            "      --print-recipe   print the resolved recipe (every key, --set applied) and\n"
            "                       exit\n"
            "\nMPI (a build configured --with-mpi, started by mpirun or srun): every process\n"
            "trains its share of each batch (train.shards), gradients are summed with\n"
            "MPI_Allreduce, rank 0 writes the files.\n"
            "      --mpi-timeout=S  end the job when a collective has not completed in S\n"
            "                       seconds (a rank died or hangs; default 600, 0: never)\n"
            "      --predict-scaling  profile a few steps as one process and print the\n"
            "                       predicted throughput on 1, 2, 4, ... ranks (TSV)\n"
            "      --net-bandwidth=GB/s  --net-latency=US  the network of the prediction\n"
            "                       (default 1.25 GB/s and 25 us: 10 Gb Ethernet)\n"
            OFA_CLI_COMMON_HELP
            "\nExamples:\n"
            "  %s --recipe recipes/quick.ini --data runs/quick/data.h5 -o runs/quick/supernet.h5\n"
            "  %s --resume --data runs/quick/data.h5 -o runs/quick/supernet.h5\n"
            "  %s --print-recipe -r quick --set train.epochs=2\n"
            "\nExit status: 0 trained, 1 error, 2 stopped early (resume with --resume).\n",
            prog, prog, prog, prog);
}

/* --print-recipe: the resolved recipe (with the --set overrides) on stdout. */
static int print_recipe(const char *path, const char **sets, int n, struct ofa_error *err)
{
    if (!path)
        return ofa_error_set(err, NULL, 0, "--print-recipe needs --recipe");
    struct ofa_recipe *r = malloc(sizeof *r);
    if (!r)
        return ofa_error_set(err, NULL, 0, "out of memory");
    ofa_recipe_default(r);
    int rc = ofa_recipe_load(r, path, err);
    for (int i = 0; i < n && !rc; i++)
        rc = ofa_recipe_set(r, sets[i], err);
    if (!rc) {
        char *text = ofa_recipe_format(r);
        if (fputs(text, stdout) == EOF || fflush(stdout))
            rc = ofa_error_set(err, NULL, 0, "error writing the recipe to standard output");
        free(text);
    }
    free(r);
    return rc;
}

int main(int argc, char **argv)
{
    ofa_blas_select_kernels(argv); /* before anything else: it may exec */
    ofa_cleanup_on_signals(); /* a signal leaves no temporary file behind */
    enum { OPT_RESUME = 256, OPT_LOG, OPT_STOP, OPT_PRINT, OPT_TIMEOUT, OPT_PREDICT, OPT_BW,
           OPT_LAT };
    static const struct option opts[] = {
        {"recipe", required_argument, NULL, 'r'}, {"data", required_argument, NULL, 'd'},
        {"output", required_argument, NULL, 'o'}, {"resume", no_argument, NULL, OPT_RESUME},
        {"set", required_argument, NULL, 's'},    {"log", required_argument, NULL, OPT_LOG},
        {"quiet", no_argument, NULL, 'q'},        {"stop-after", required_argument, NULL, OPT_STOP},
        {"print-recipe", no_argument, NULL, OPT_PRINT},
        {"mpi-timeout", required_argument, NULL, OPT_TIMEOUT},
        {"predict-scaling", no_argument, NULL, OPT_PREDICT},
        {"net-bandwidth", required_argument, NULL, OPT_BW},
        {"net-latency", required_argument, NULL, OPT_LAT},
        OFA_CLI_COMMON_LONGOPTS,                  {NULL, 0, NULL, 0}};
    struct ofa_train_opts o = {.progress = 1};
    char recipe_buf[1024];
    const char **sets = calloc((size_t)argc, sizeof *sets);
    struct ofa_cli_common co;
    struct ofa_error err;
    long v;
    float fv, timeout = 600, bandwidth = 1.25f, latency = 25;
    int c, r, rc, print = 0, predict = 0;
    if (!sets)
        return EXIT_FAILURE;
    ofa_cli_common_init(&co);
    while ((c = getopt_long(argc, argv, "r:d:o:s:q" OFA_CLI_COMMON_SHORTOPTS, opts, NULL)) != -1) {
        switch (c) {
        case 'r': o.recipe_path = ofa_recipe_find(optarg, recipe_buf, sizeof recipe_buf); break;
        case 'd': o.data_path = optarg; break;
        case 'o': o.output = optarg; break;
        case OPT_RESUME: o.resume = 1; break;
        case 's': sets[o.n_overrides++] = optarg; break;
        case OPT_LOG: o.log_path = optarg; break;
        case 'q': o.progress = 0; break;
        case OPT_PRINT: print = 1; break;
        case OPT_PREDICT: predict = 1; break;
        case OPT_TIMEOUT:
        case OPT_BW:
        case OPT_LAT:
            if (ofa_parse_float(optarg, c == OPT_BW ? 1e-6 : 0, 1e7,
                                c == OPT_TIMEOUT ? "--mpi-timeout"
                                : c == OPT_BW    ? "--net-bandwidth" : "--net-latency",
                                &fv, &err)) {
                ofa_error_print(&err, prog);
                free(sets);
                return EXIT_FAILURE;
            }
            *(c == OPT_TIMEOUT ? &timeout : c == OPT_BW ? &bandwidth : &latency) = fv;
            break;
        case OPT_STOP:
            if (ofa_parse_long(optarg, 1, 1L << 40, "--stop-after", &v, &err)) {
                ofa_error_print(&err, prog);
                free(sets);
                return EXIT_FAILURE;
            }
            o.stop_after_steps = v;
            break;
        default:
            if ((r = ofa_cli_common_opt(c, optarg, prog, usage, &co)) <= 0) {
                free(sets);
                return r == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
            }
        }
    }
    if (ofa_cli_common_finish(argc, argv, optind, prog, &co)) {
        free(sets);
        return EXIT_FAILURE;
    }
    if (print) {
        rc = print_recipe(o.recipe_path, sets, o.n_overrides, &err);
        free(sets);
        if (rc)
            ofa_error_print(&err, prog);
        return rc ? EXIT_FAILURE : EXIT_SUCCESS;
    }
    if (!o.data_path || (!o.output && !predict) || (!o.recipe_path && !o.resume)) {
        fprintf(stderr, "%s: --data and --output are required, and --recipe unless --resume\n"
                        "Try '%s --help' for more information.\n", prog, prog);
        free(sets);
        return EXIT_FAILURE;
    }
    o.overrides = sets;
    o.threads = co.threads;
    if (ofa_dist_init(&argc, &argv, &err)) {
        ofa_error_print(&err, prog);
        free(sets);
        return EXIT_FAILURE;
    }
    if (predict) { /* one process (refused under mpirun) */
        rc = ofa_train_predict_scaling(&o, 1e9 * bandwidth, 1e-6 * latency, stdout, &err);
        free(sets);
        if (rc)
            ofa_error_print(&err, prog);
        ofa_dist_finalize();
        return rc ? EXIT_FAILURE : EXIT_SUCCESS;
    }
    ofa_dist_watchdog(timeout);
    rc = ofa_train_run(&o, &err);
    free(sets);
    if (rc < 0 && ofa_dist_size() > 1) {
        /* One process failed: the others may wait in a collective. */
        char who[64];
        snprintf(who, sizeof who, "%s: rank %d of %d", prog, ofa_dist_rank(), ofa_dist_size());
        ofa_error_print(&err, who);
        ofa_dist_abort(EXIT_FAILURE);
    }
    ofa_dist_finalize();
    if (rc < 0) {
        ofa_error_print(&err, prog);
        return EXIT_FAILURE;
    }
    return rc == OFA_TRAIN_INTERRUPTED ? 2 : EXIT_SUCCESS;
}
