/* data.h: datasets for the pipeline: readers (IDX, CIFAR, PNG folders), the
 * data.h5 file that training reads, the batch loader with its augmentations,
 * and the device-variant image transforms used by the instability pass.
 *
 * Dimension letters: N images, H x W pixels, C channels; images are uint8
 * [N,H,W,C] in memory and on disk, batches are float [N,R,R,C] (NHWC).
 *
 * Errors: every reader and the data.h5 loader return 0 on success and -1 on
 * bad input, with a struct ofa_error naming the file and the problem. They
 * never allocate more than the input's own size justifies (see each reader).
 * Ownership: a struct filled by a *_read / *_load function owns its buffers
 * and is released by the matching *_free, which accepts a zeroed struct.
 */
#ifndef OFA_DATA_H
#define OFA_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define OFA_DATA_FORMAT "ofa-data"
#define OFA_DATA_FORMAT_VERSION 1
#define OFA_DATA_MAX_CLASSES 1000
#define OFA_DATA_MAX_CLASS_NAME 63
/* Largest side accepted from any reader (a sanity cap, not a design limit). */
#define OFA_DATA_MAX_SIDE 4096

/* ---- A labelled image set ------------------------------------------------ */
struct ofa_images {
    int n, h, w, c;
    uint8_t *pixels; /* [n,h,w,c] */
    int *labels;     /* [n], each in [0, num_classes) */
};
void ofa_images_free(struct ofa_images *im);

/* ---- A dataset: what data.h5 holds ------------------------------------------ */
struct ofa_dataset {
    int num_classes;
    char (*class_names)[OFA_DATA_MAX_CLASS_NAME + 1]; /* [num_classes] */
    char source[512];     /* where the data came from (free text) */
    struct ofa_images train; /* the whole training set (train split + validation) */
    struct ofa_images test;  /* may hold 0 images */
    /* The split: indices into train, each sorted ascending, disjoint, covering. */
    int *train_index, n_train;
    int *val_index, n_val;
    uint64_t split_seed;
    /* Per-channel mean and std of train_index images on the [0,1] scale. */
    double mean[4], std[4];
};
void ofa_dataset_free(struct ofa_dataset *ds);

/* Deterministic split: a permutation of [0, train.n) drawn from split_seed;
 * its first n_val entries are the validation set (both lists then sorted).
 * n_val must be < train.n. Also recomputes mean/std. Returns -1 (err) if
 * n_val is out of range. */
int ofa_dataset_split(struct ofa_dataset *ds, int n_val, uint64_t seed, struct ofa_error *err);
/* A fingerprint of the data set and its split (recorded in checkpoints, so
 * that later stages refuse a different data set). */
uint64_t ofa_dataset_fingerprint(const struct ofa_dataset *ds);
/* mean/std per channel over the given indices of im (all of im when idx is NULL). */
void ofa_images_stats(const struct ofa_images *im, const int *idx, int n,
                      double mean[4], double std[4]);

/* ---- Readers ------------------------------------------------------------------ */
enum ofa_data_format {
    OFA_FMT_AUTO = 0,
    OFA_FMT_IDX,
    OFA_FMT_CIFAR10,
    OFA_FMT_CIFAR100,
    OFA_FMT_PNG,
};
/* "auto", "idx", "cifar10", "cifar100", "png" -> format; -1 when unknown. */
int ofa_data_format_parse(const char *s);
const char *ofa_data_format_name(int fmt);

struct ofa_read_opts {
    int format;         /* enum ofa_data_format */
    int channels;       /* PNG: 1, 3 or 4; 0 = from the first image (grey -> 1, else 3) */
    int height, width;  /* PNG: resize every image to this size; 0 = no resizing
                           (then mixed sizes are an error) */
    const char *class_names; /* IDX: comma-separated names, or "fashion-mnist" /
                                "mnist"; NULL = guess from the directory name */
};

/* IDX (MNIST format), plain or gzip. Images: magic 0x0803 (N,H,W) or 0x0804
 * (N,H,W,C), labels: 0x0801 (N). The whole stream must match the header
 * exactly. `name` is used in error messages. out->labels / out->pixels is
 * NULL for the kind not read. */
int ofa_idx_parse_images(const uint8_t *buf, size_t len, const char *name,
                         struct ofa_images *out, struct ofa_error *err);
int ofa_idx_parse_labels(const uint8_t *buf, size_t len, const char *name,
                         int num_classes, int **labels, int *n, struct ofa_error *err);
/* A directory holding {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]. */
int ofa_idx_read_dir(const char *dir, const struct ofa_read_opts *opts,
                     struct ofa_dataset *ds, struct ofa_error *err);

/* CIFAR binary batches: records of 1 (CIFAR-10) or 2 (CIFAR-100: coarse,
 * fine; the fine label is used) label bytes + 3072 bytes of R, G, B planes
 * 32x32. Appends to out (which may be empty). */
int ofa_cifar_parse(const uint8_t *buf, size_t len, const char *name, int cifar100,
                    struct ofa_images *out, struct ofa_error *err);
/* A directory with data_batch_{1..5}.bin + test_batch.bin (CIFAR-10) or
 * train.bin + test.bin (CIFAR-100), class names from batches.meta.txt /
 * fine_label_names.txt when present. */
int ofa_cifar_read_dir(const char *dir, int cifar100, struct ofa_dataset *ds,
                       struct ofa_error *err);

/* PNG decoding with libpng (setjmp error handling), any colour type and bit
 * depth, converted to `channels` (1, 3 or 4; alpha is dropped when not asked
 * for, grey is replicated, colour is converted to luma). */
int ofa_png_decode(const uint8_t *buf, size_t len, const char *name, int channels,
                   uint8_t **pixels, int *h, int *w, struct ofa_error *err);
/* The colour channels a PNG holds without alpha (1 or 3), -1 if not a PNG. */
int ofa_png_peek_channels(const uint8_t *buf, size_t len);
/* 8-bit PNG with c in {1,3,4}. */
int ofa_png_write(const char *path, const uint8_t *pixels, int h, int w, int c,
                  struct ofa_error *err);
/* A folder of class sub-folders of PNG files (sorted names), or a folder with
 * train/ and test/ each holding such class folders. */
int ofa_png_read_dir(const char *dir, const struct ofa_read_opts *opts,
                     struct ofa_dataset *ds, struct ofa_error *err);

/* Whole-file read with the size known before allocating (regular files only). */
int ofa_read_file(const char *path, uint8_t **buf, size_t *len, struct ofa_error *err);

/* Any source: a directory in one of the formats above ("auto" guesses from
 * the file names), or the word "fashion-mnist" for the Debian package's
 * directory (OFA_FASHION_MNIST_DIR). */
#define OFA_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
int ofa_data_read_source(const char *source, const struct ofa_read_opts *opts,
                         struct ofa_dataset *ds, struct ofa_error *err);

/* ---- data.h5 ------------------------------------------------------------------- */
/* Write atomically (temporary file in the same directory, then rename; the
 * temporary is removed on error). */
int ofa_dataset_save(const struct ofa_dataset *ds, const char *path, struct ofa_error *err);
/* Write the integrity header (CRC-32 of the file after its 512-byte HDF5
 * user block) of a file made by another tool with such a user block (h5py:
 * h5py.File(path, 'w', userblock_size=512)). Loading checks it first. */
int ofa_dataset_seal(const char *path, struct ofa_error *err);
/* Verify the integrity header, then load and validate every dataset's presence, type and shape, labels in
 * range, split indices in range, disjoint and covering. */
int ofa_dataset_load(const char *path, struct ofa_dataset *ds, struct ofa_error *err);
/* The same from an in-memory file image (for fuzzing). */
int ofa_dataset_load_image(const void *buf, size_t len, const char *name,
                           struct ofa_dataset *ds, struct ofa_error *err);

/* ---- Augmentation and batches ---------------------------------------------------- */
struct ofa_aug {
    int crop_pad;       /* random crop of the original size from the image
                           zero-padded by this many pixels; 0 = off */
    int flip;           /* random horizontal flip with probability 1/2 */
    float erase_prob;   /* random erasing probability; 0 = off */
    float erase_min, erase_max; /* erased area fraction range (0.02, 0.33) */
    float erase_ratio;  /* aspect ratio range [r, 1/r] (0.3) */
    int normalize;      /* (x - mean) / std with the dataset's statistics;
                           otherwise x in [0, 1] */
};
/* Off everywhere except normalize, erase parameters at torchvision's defaults. */
void ofa_aug_default(struct ofa_aug *a);

enum ofa_split { OFA_SPLIT_TRAIN = 0, OFA_SPLIT_VAL, OFA_SPLIT_TEST, OFA_SPLIT_TRAIN_ALL };

struct ofa_batch {
    float *x;   /* [n, res, res, c] */
    int *y;     /* [n] */
    int n, res, c;
    int epoch, index;
};

/* Returns the resolution of batch `index` of `epoch` (e.g. sampled from
 * ofa_rng_derive(seed, step, k)); must be a pure function. */
typedef int (*ofa_res_fn)(void *ctx, int epoch, int index);

struct ofa_loader_config {
    int split;          /* enum ofa_split */
    int batch_size;
    int shuffle;        /* permute per epoch from (seed, epoch) */
    int drop_last;      /* drop the final partial batch */
    uint64_t seed;
    struct ofa_aug aug;
    int resolution;     /* output side when res_fn is NULL; 0 = image height */
    int max_resolution; /* buffers are sized for this; 0 = max(resolution, H) */
    ofa_res_fn res_fn;
    void *res_ctx;
    int async;          /* 1: a background thread prepares the next batch */
    int keep_from, keep_n; /* > 0: ofa_loader_next makes only images [keep_from,
                              keep_from + keep_n) of each full batch, at their places
                              (data-parallel training: this process's shards) */
};
void ofa_loader_config_default(struct ofa_loader_config *cfg);

struct ofa_loader;
/* The loader keeps a pointer to ds, which must outlive it. Square images
 * only (H == W) when resizing; aborts on a programmer error (bad config). */
struct ofa_loader *ofa_loader_create(const struct ofa_dataset *ds,
                                     const struct ofa_loader_config *cfg);
void ofa_loader_free(struct ofa_loader *l);
int ofa_loader_num_batches(const struct ofa_loader *l);
int ofa_loader_num_samples(const struct ofa_loader *l);
/* Begin an epoch (stops any work of the previous one). */
void ofa_loader_start_epoch(struct ofa_loader *l, int epoch);
/* The next batch of the current epoch, or NULL at its end. The batch stays
 * valid until the next call (the loader owns it). */
const struct ofa_batch *ofa_loader_next(struct ofa_loader *l);
/* Synchronous, stateless: fill out (allocated by the caller: x for
 * batch_size * res * res * C floats, y for batch_size ints) with batch
 * `index` of `epoch` at resolution res. parallel: 0 serial, 1 an OpenMP loop
 * over the samples when the batch is large enough to pay for a team (2M
 * output floats), 2 always that loop; the result never depends on the thread
 * count. Returns n. */
int ofa_loader_fill(const struct ofa_loader *l, int epoch, int index, int res,
                    float *x, int *y, int parallel);
/* Seconds the consumer spent blocked in ofa_loader_next since creation, and
 * the number of calls that had to block. */
double ofa_loader_wait_seconds(const struct ofa_loader *l);
long ofa_loader_wait_count(const struct ofa_loader *l);

/* Augment one uint8 image [H,W,C] into out [res,res,C] (the per-sample step of
 * the loader, exposed for tests). lut: [C][256] value map (normalisation);
 * scratch: H*W*C floats when res != H. rng decides crop, flip, erase. */
struct ofa_rng;
void ofa_augment_one(float *out, const uint8_t *img, int H, int W, int C, int res,
                     const struct ofa_aug *aug, const float *lut, float *scratch,
                     struct ofa_rng *rng);

/* ---- Device-variant transforms (instability pass) --------------------------------- */
/* uint8 [H,W,C], C in {1,3}: JPEG compress + decompress at quality q (1..100)
 * through libturbojpeg, 4:4:4 chroma. out may equal img. Returns -1 (err) on a
 * libjpeg-turbo failure. */
int ofa_variant_jpeg(uint8_t *out, const uint8_t *img, int H, int W, int C, int quality,
                     struct ofa_error *err);
/* float [n]: x += N(0, std^2), seeded; clamp to [0,1] when clamp != 0. */
void ofa_variant_noise(float *x, long n, float std, uint64_t seed, int clamp);
/* float [n] in [0,1]: x -> clamp(contrast * (x^gamma - 0.5) + 0.5 + brightness). */
void ofa_variant_tone(float *x, long n, float gamma, float brightness, float contrast);
/* float [H,W,C]: separable Gaussian blur with sigma (radius ceil(3 sigma)),
 * edges replicated; sigma <= 0 copies. */
void ofa_variant_blur(float *out, const float *inp, int H, int W, int C, float sigma);
enum ofa_interp { OFA_INTERP_NEAREST = 0, OFA_INTERP_BILINEAR, OFA_INTERP_AREA };
/* float [H,W,C] -> [Ho,Wo,C]. Area averages the covered source pixels
 * (exact box filter, any ratio); bilinear is ofa_resize_bilinear_forward. */
void ofa_variant_resize(float *out, const float *inp, int H, int W, int Ho, int Wo, int C,
                        int interp);

#endif
