/* ofa_data.c: the ofa-data command: prepare a data.h5 from IDX, CIFAR or PNG
 * sources, export one back to a PNG folder, print its statistics.
 *
 * Outputs are written atomically (a temporary file or folder next to the
 * destination, renamed into place when complete, removed on error), so a
 * failure never leaves a half-written data.h5 or folder behind.
 */
#include <config.h>

#include "data.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *prog = "ofa-data";

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: %s COMMAND [OPTIONS]\n"
        "Prepare and inspect the data.h5 files that ofa-train reads.\n"
        "\n"
        "Commands:\n"
        "  prepare SOURCE -o data.h5   read a dataset and write data.h5\n"
        "  export-png data.h5 -o DIR   write the images as DIR/{train,test}/<class>/N.png\n"
        "  stats data.h5               counts per class and split, mean and std per channel\n"
        "  seal data.h5                write the integrity header of a data.h5 made by\n"
        "                              another tool (with a 512-byte HDF5 user block)\n"
        "\n"
        "SOURCE is a directory: IDX files ({train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]),\n"
        "CIFAR-10 (data_batch_1..5.bin, test_batch.bin), CIFAR-100 (train.bin, test.bin),\n"
        "or PNG class folders (optionally under train/ and test/); the word\n"
        "'fashion-mnist' names %s.\n"
        "\n"
        "Options of prepare:\n"
        "  -o, --output FILE       the data.h5 to write (required)\n"
        "  -f, --format FMT        auto (default), idx, cifar10, cifar100 or png\n"
        "  -v, --val-size N        images held out of the training set for validation\n"
        "                          (default 5000, or a tenth of smaller training sets)\n"
        "  -s, --seed S            seed of the train/validation split (default 0)\n"
        "  -c, --channels C        PNG: convert to 1, 3 or 4 channels (default: from the\n"
        "                          first image, grey -> 1, colour -> 3)\n"
        "      --size H[xW]        PNG: resize every image (default: keep; mixed sizes\n"
        "                          are then an error)\n"
        "      --class-names LIST  IDX: comma-separated names, or fashion-mnist / mnist\n"
        "                          (default: guessed from the directory name)\n"
        "  -q, --quiet             no progress messages\n"
        "Options of export-png:\n"
        "  -o, --output DIR        the folder to create (must not exist, or be empty)\n"
        "Common:\n"
        "  -h, --help              this help\n"
        "  -V, --version           print the version\n"
        "\n"
        "Examples:\n"
        "  %s prepare fashion-mnist -o data.h5\n"
        "  %s prepare ~/cifar-10-batches-bin -o cifar10.h5 --val-size 5000 --seed 1\n"
        "  %s prepare photos/ --format png --channels 3 --size 32 -o photos.h5\n"
        "  %s export-png data.h5 -o samples/\n"
        "  %s stats data.h5\n",
        prog, OFA_FASHION_MNIST_DIR, prog, prog, prog, prog, prog);
}

static int fail(const struct ofa_error *err)
{
    ofa_error_print(err, prog);
    return EXIT_FAILURE;
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "%s: ", prog);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry '%s --help' for more information.\n", prog);
    return EXIT_FAILURE;
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int cmd_prepare(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"output", required_argument, NULL, 'o'},
        {"format", required_argument, NULL, 'f'},
        {"val-size", required_argument, NULL, 'v'},
        {"seed", required_argument, NULL, 's'},
        {"channels", required_argument, NULL, 'c'},
        {"size", required_argument, NULL, 'S'},
        {"class-names", required_argument, NULL, 'N'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *out = NULL;
    struct ofa_read_opts ro = {0};
    long val = -1, v;
    unsigned long long seed = 0;
    int quiet = 0, opt;
    while ((opt = getopt_long(argc, argv, "o:f:v:s:c:qh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'o':
            out = optarg;
            break;
        case 'f':
            ro.format = ofa_data_format_parse(optarg);
            if (ro.format < 0)
                return usage_error("unknown format '%s' (auto, idx, cifar10, cifar100, png)",
                                   optarg);
            break;
        case 'v':
            if (parse_int(optarg, 0, INT_MAX, &val))
                return usage_error("--val-size wants a non-negative integer, not '%s'", optarg);
            break;
        case 's': {
            char *end;
            errno = 0;
            seed = strtoull(optarg, &end, 0);
            if (errno || end == optarg || *end || optarg[0] == '-')
                return usage_error("--seed wants a non-negative integer, not '%s'", optarg);
            break;
        }
        case 'c':
            if (parse_int(optarg, 1, 4, &v) || v == 2)
                return usage_error("--channels must be 1, 3 or 4, not '%s'", optarg);
            ro.channels = (int)v;
            break;
        case 'S': {
            char *end;
            errno = 0;
            long h = strtol(optarg, &end, 10), w = h;
            if (*end == 'x')
                w = strtol(end + 1, &end, 10);
            if (errno || *end || h < 1 || w < 1 || h > OFA_DATA_MAX_SIDE || w > OFA_DATA_MAX_SIDE)
                return usage_error("--size wants H or HxW (1..4096), not '%s'", optarg);
            ro.height = (int)h;
            ro.width = (int)w;
            break;
        }
        case 'N':
            ro.class_names = optarg;
            break;
        case 'q':
            quiet = 1;
            break;
        case 'h':
            usage(stdout);
            return EXIT_SUCCESS;
        default:
            fprintf(stderr, "Try '%s --help' for more information.\n", prog);
            return EXIT_FAILURE;
        }
    }
    if (optind + 1 != argc)
        return usage_error("%s", optind >= argc ? "prepare needs a SOURCE"
                                                 : "prepare takes exactly one SOURCE");
    if (!out)
        return usage_error("%s", "prepare needs -o data.h5");
    const char *source = argv[optind];
    struct ofa_error err = {0};
    struct ofa_dataset ds;
    if (ofa_data_read_source(source, &ro, &ds, &err))
        return fail(&err);
    if (!quiet)
        fprintf(stderr, "%s: read %d training and %d test images (%dx%dx%d, %d classes) "
                "from %s\n", prog, ds.train.n, ds.test.n, ds.train.h, ds.train.w, ds.train.c,
                ds.num_classes, ds.source);
    if (val < 0)
        val = ds.train.n >= 50000 ? 5000 : ds.train.n / 10;
    if (ofa_dataset_split(&ds, (int)val, seed, &err)) {
        snprintf(err.file, sizeof err.file, "%s", source);
        ofa_dataset_free(&ds);
        return fail(&err);
    }
    if (ofa_dataset_save(&ds, out, &err)) {
        ofa_dataset_free(&ds);
        return fail(&err);
    }
    if (!quiet)
        fprintf(stderr, "%s: wrote %s: %d train, %d validation (seed %llu), %d test\n", prog,
                out, ds.n_train, ds.n_val, (unsigned long long)seed, ds.test.n);
    ofa_dataset_free(&ds);
    return EXIT_SUCCESS;
}

/* Remove a tree we created (files and folders only; symlinks not followed). */
static void rm_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d)) != NULL) {
                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                    continue;
                char sub[4096];
                snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
                rm_tree(sub);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

static int digits(int n)
{
    int d = 1;
    while (n >= 10) {
        n /= 10;
        d++;
    }
    return d;
}

static int mkdir_err(const char *p, struct ofa_error *err)
{
    if (mkdir(p, 0777) != 0 && errno != EEXIST)
        return ofa_error_set(err, p, 0, "cannot create the folder: %s", strerror(errno));
    return 0;
}

static int export_split(const struct ofa_dataset *ds, const struct ofa_images *im,
                        const char *root, struct ofa_error *err)
{
    if (mkdir_err(root, err))
        return -1;
    int kd = digits(ds->num_classes - 1), nd = digits(im->n > 0 ? im->n - 1 : 0);
    size_t isz = (size_t)im->h * (size_t)im->w * (size_t)im->c;
    char dir[4096], path[4200];
    for (int i = 0; i < im->n; i++) {
        int k = im->labels[i];
        char name[OFA_DATA_MAX_CLASS_NAME + 1];
        snprintf(name, sizeof name, "%s", ds->class_names[k]);
        for (char *p = name; *p; p++)
            if (*p == '/')
                *p = '_';
        snprintf(dir, sizeof dir, "%s/%0*d_%s", root, kd, k, name);
        if (mkdir_err(dir, err))
            return -1;
        if (snprintf(path, sizeof path, "%s/%0*d.png", dir, nd, i) >= (int)sizeof path)
            return ofa_error_set(err, dir, 0, "path too long");
        if (ofa_png_write(path, im->pixels + (size_t)i * isz, im->h, im->w, im->c, err))
            return -1;
    }
    return 0;
}

static int cmd_export(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *out = NULL;
    int opt;
    while ((opt = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
        if (opt == 'o') {
            out = optarg;
        } else if (opt == 'h') {
            usage(stdout);
            return EXIT_SUCCESS;
        } else {
            fprintf(stderr, "Try '%s --help' for more information.\n", prog);
            return EXIT_FAILURE;
        }
    }
    if (optind + 1 != argc)
        return usage_error("%s", "export-png takes exactly one data.h5");
    if (!out)
        return usage_error("%s", "export-png needs -o DIR");
    struct ofa_error err = {0};
    struct stat st;
    if (stat(out, &st) == 0) {
        DIR *d = S_ISDIR(st.st_mode) ? opendir(out) : NULL;
        int empty = d != NULL;
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL)
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                empty = 0;
        if (d)
            closedir(d);
        if (!empty) {
            ofa_error_set(&err, out, 0, "already exists (and is not an empty folder)");
            return fail(&err);
        }
    }
    struct ofa_dataset ds;
    if (ofa_dataset_load(argv[optind], &ds, &err))
        return fail(&err);
    size_t n = strlen(out);
    while (n > 1 && out[n - 1] == '/')
        n--;
    char *tmp = ofa_xmalloc(n + 16, "temporary name");
    snprintf(tmp, n + 16, "%.*s.tmp.XXXXXX", (int)n, out);
    if (!mkdtemp(tmp)) {
        ofa_error_set(&err, out, 0, "cannot create a temporary folder next to it: %s",
                      strerror(errno));
        free(tmp);
        ofa_dataset_free(&ds);
        return fail(&err);
    }
    mode_t um = umask(0); /* mkdtemp makes 0700; let the umask decide instead */
    umask(um);
    chmod(tmp, 0777 & ~um);
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/train", tmp);
    int rc = export_split(&ds, &ds.train, sub, &err);
    snprintf(sub, sizeof sub, "%s/test", tmp);
    if (rc == 0)
        rc = export_split(&ds, &ds.test, sub, &err);
    if (rc == 0 && rename(tmp, out) != 0)
        rc = ofa_error_set(&err, out, 0, "cannot rename the temporary folder into place: %s",
                           strerror(errno));
    if (rc)
        rm_tree(tmp);
    else
        fprintf(stderr, "%s: wrote %d training and %d test images to %s\n", prog, ds.train.n,
                ds.test.n, out);
    free(tmp);
    ofa_dataset_free(&ds);
    return rc ? fail(&err) : EXIT_SUCCESS;
}

static int cmd_stats(int argc, char **argv)
{
    static const struct option longopts[] = {{"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (opt == 'h') {
            usage(stdout);
            return EXIT_SUCCESS;
        }
        fprintf(stderr, "Try '%s --help' for more information.\n", prog);
        return EXIT_FAILURE;
    }
    if (optind + 1 != argc)
        return usage_error("%s", "stats takes exactly one data.h5");
    struct ofa_error err = {0};
    struct ofa_dataset ds;
    const char *path = argv[optind];
    if (ofa_dataset_load(path, &ds, &err))
        return fail(&err);
    int K = ds.num_classes;
    long *cnt = ofa_xcalloc((size_t)K * 3, sizeof(long), "counts");
    for (int i = 0; i < ds.n_train; i++)
        cnt[ds.train.labels[ds.train_index[i]] * 3 + 0]++;
    for (int i = 0; i < ds.n_val; i++)
        cnt[ds.train.labels[ds.val_index[i]] * 3 + 1]++;
    for (int i = 0; i < ds.test.n; i++)
        cnt[ds.test.labels[i] * 3 + 2]++;
    printf("%s: %s v%d, source %s\n", path, OFA_DATA_FORMAT, OFA_DATA_FORMAT_VERSION, ds.source);
    printf("images %dx%dx%d (HxWxC), %d classes, split seed %llu\n", ds.train.h, ds.train.w,
           ds.train.c, K, (unsigned long long)ds.split_seed);
    printf("%-4s %-24s %8s %8s %8s\n", "k", "class", "train", "val", "test");
    for (int k = 0; k < K; k++)
        printf("%-4d %-24s %8ld %8ld %8ld\n", k, ds.class_names[k], cnt[k * 3], cnt[k * 3 + 1],
               cnt[k * 3 + 2]);
    printf("%-4s %-24s %8d %8d %8d\n", "", "total", ds.n_train, ds.n_val, ds.test.n);
    double vm[4], vs[4], tm[4], ts[4];
    ofa_images_stats(&ds.train, ds.val_index, ds.n_val, vm, vs);
    ofa_images_stats(&ds.test, NULL, 0, tm, ts);
    printf("per channel, pixel values scaled to [0, 1] (mean / std):\n");
    printf("%-8s %17s %17s %17s\n", "channel", "train", "val", "test");
    for (int c = 0; c < ds.train.c; c++)
        printf("%-8d %8.4f / %6.4f %8.4f / %6.4f %8.4f / %6.4f\n", c, ds.mean[c], ds.std[c],
               vm[c], vs[c], tm[c], ts[c]);
    free(cnt);
    ofa_dataset_free(&ds);
    return EXIT_SUCCESS;
}

int main(int argc, char **argv)
{
    ofa_cleanup_on_signals(); /* a signal leaves no temporary file behind */
    if (argc < 2) {
        usage(stderr);
        return EXIT_FAILURE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) {
        usage(stdout);
        return EXIT_SUCCESS;
    }
    if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0) {
        printf("ofa-data (%s) %s\n", PACKAGE_NAME, PACKAGE_VERSION);
        return EXIT_SUCCESS;
    }
    /* getopt names the program by argv[0]: "ofa-data prepare: ..." */
    char name[64];
    snprintf(name, sizeof name, "ofa-data %s", cmd);
    int (*sub)(int, char **) = strcmp(cmd, "prepare") == 0      ? cmd_prepare
                               : strcmp(cmd, "export-png") == 0 ? cmd_export
                               : strcmp(cmd, "stats") == 0      ? cmd_stats
                                                                : NULL;
    if (sub) {
        argv[1] = name;
        return sub(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "seal") == 0) {
        if (argc != 3 || argv[2][0] == '-')
            return usage_error("%s", "seal takes exactly one data.h5");
        struct ofa_error err = {0};
        if (ofa_dataset_seal(argv[2], &err))
            return fail(&err);
        /* Sealing a file that does not validate would only hide the problem. */
        struct ofa_dataset ds;
        if (ofa_dataset_load(argv[2], &ds, &err))
            return fail(&err);
        ofa_dataset_free(&ds);
        return EXIT_SUCCESS;
    }
    return usage_error("unknown command '%s' (prepare, export-png, stats, seal)", cmd);
}
