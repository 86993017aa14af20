/* train.c: the supernet training loop (sandwich rule with in-place
 * distillation under the deps, bignas or ofa-ps schedule), evaluation with
 * BN recalibration, progress line, TSV log, checkpoints and exact resume.
 * Every random choice is a pure function of (seed, step, k) or of (seed,
 * epoch, sample), so a resumed run repeats an uninterrupted one bit for bit
 * (same thread count). */
#include <config.h>

#include "train.h"

#include "blas.h"
#include "ckpt.h"
#include "ops.h"
#include "dist.h"
#include "model.h"
#include "optim.h"
#include "rng.h"
#include "util.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Streams derived from the recipe seed: (seed, tag, step/epoch). */
enum { TAG_SUBNET = 1, TAG_DROPOUT = 2, TAG_CALIB = 3, TAG_PS = 4 };

/* ---- Evaluation ---------------------------------------------------------------- */

void ofa_evaluator_init(struct ofa_evaluator *ev, const struct ofa_dataset *ds,
                        const struct ofa_recipe *r, int split, uint64_t seed)
{
    memset(ev, 0, sizeof *ev);
    ev->ds = ds;
    const int maxres = ofa_space_max_res(&r->space);
    struct ofa_loader_config c;
    ofa_loader_config_default(&c);
    c.aug.normalize = r->augment.normalize;
    c.async = 0;
    c.max_resolution = maxres > ds->train.h ? maxres : ds->train.h;
    c.resolution = maxres;
    /* BN recalibration: a fixed subset of the training split (the first
     * calib_images of one seeded permutation), no augmentation. */
    c.split = OFA_SPLIT_TRAIN;
    c.shuffle = 1;
    c.seed = seed ^ 0x63616c6962ULL; /* "calib" */
    c.batch_size = r->train.calib_batch;
    c.drop_last = 1;
    ev->calib = ofa_loader_create(ds, &c);
    ev->calib_batch = r->train.calib_batch;
    ev->calib_batches = r->train.calib_images / r->train.calib_batch;
    if (ev->calib_batches < 1)
        ev->calib_batches = 1;
    if (ev->calib_batches > ofa_loader_num_batches(ev->calib))
        ev->calib_batches = ofa_loader_num_batches(ev->calib);
    /* Evaluation: the whole split in order. */
    c.split = split;
    c.shuffle = 0;
    c.drop_last = 0;
    c.batch_size = r->train.batch_size;
    ev->eval = ofa_loader_create(ds, &c);
    ev->eval_batch = c.batch_size;
    int maxb = ofa_evaluator_max_batch(ev);
    ev->x = ofa_xmalloc((size_t)maxb * c.max_resolution * c.max_resolution * ds->train.c *
                            sizeof(float), "evaluation batch");
    ev->y = ofa_xmalloc((size_t)maxb * sizeof(int), "evaluation labels");
}

void ofa_evaluator_free(struct ofa_evaluator *ev)
{
    if (ev->calib)
        ofa_loader_free(ev->calib);
    if (ev->eval)
        ofa_loader_free(ev->eval);
    free(ev->x);
    free(ev->y);
    memset(ev, 0, sizeof *ev);
}

int ofa_evaluator_max_batch(const struct ofa_evaluator *ev)
{
    return ev->calib_batch > ev->eval_batch ? ev->calib_batch : ev->eval_batch;
}

double ofa_evaluate(struct ofa_evaluator *ev, struct ofa_supernet *net, struct ofa_exec *ex,
                    const struct ofa_subnet *sub)
{
    /* Under MPI every rank takes every P-th batch, and the sums are reduced. */
    const int K = net->sp.num_classes, P = ofa_dist_size(), me = ofa_dist_rank();
    ofa_supernet_calib_begin(net);
    for (int b = me; b < ev->calib_batches; b += P) {
        int n = ofa_loader_fill(ev->calib, 0, b, sub->res, ev->x, ev->y, 1);
        ofa_supernet_forward(net, ex, sub, ev->x, n, OFA_MODE_CALIB, 0.0f, NULL);
    }
    if (P > 1) {
        double nb = net->calib_batches;
        ofa_dist_sum_f32(net->calib, net->p.total);
        ofa_dist_sum_f64(&nb, 1);
        net->calib_batches = (int)nb;
    }
    ofa_supernet_calib_end(net, sub);
    /* The evaluation runs the subnet materialised with BN folded, as ofa-run
     * does (several times faster than the supernet's eval pass), unless an
     * activation hook (fake quantization) must see the activations. */
    struct ofa_model m;
    float *scratch = NULL, *mlogits = NULL;
    if (!net->act_hook) {
        ofa_model_materialise(&m, net, sub);
        scratch = ofa_model_scratch_alloc(&m, ev->eval_batch);
        mlogits = ofa_xmalloc((size_t)ev->eval_batch * K * sizeof *mlogits, "evaluation logits");
    }
    double counts[2] = {0, 0}; /* correct, total */
    int nb = ofa_loader_num_batches(ev->eval);
    for (int b = me; b < nb; b += P) {
        int n = ofa_loader_fill(ev->eval, 0, b, sub->res, ev->x, ev->y, 1);
        const float *logits = mlogits;
        if (mlogits)
            ofa_model_forward(&m, mlogits, ev->x, n, scratch);
        else
            logits = ofa_supernet_forward(net, ex, sub, ev->x, n, OFA_MODE_EVAL, 0.0f, NULL);
        for (int i = 0; i < n; i++) {
            int best = 0;
            for (int k = 1; k < K; k++)
                if (logits[i * K + k] > logits[i * K + best])
                    best = k;
            counts[0] += best == ev->y[i];
        }
        counts[1] += n;
    }
    if (mlogits) {
        free(scratch);
        free(mlogits);
        ofa_model_free(&m);
    }
    ofa_dist_sum_f64(counts, 2);
    return counts[1] > 0 ? counts[0] / counts[1] : 0.0;
}

/* ---- Schedule --------------------------------------------------------------------- */

/* Phases: deps 0 full, 1 sandwich; bignas 1 sandwich; ofa-ps 0 full,
 * 1 elastic kernel, 2 + depth, 3 + expand. */
enum { PHASE_FULL = 0, PHASE_SANDWICH = 1, PHASE_PS_KERNEL = 1, PHASE_PS_DEPTH = 2,
       PHASE_PS_EXPAND = 3 };
static const char *const sched_phase_names[3][4] = {
    {"full", "shrink", "", ""},
    {"", "sandwich", "", ""},
    {"full", "kernel", "depth", "expand"},
};

struct schedule {
    enum ofa_schedule kind;
    long steps_per_epoch;
    long total_epochs;
    long phase_start[5]; /* first epoch of each phase; phase_start[n] = end */
    int n_phases, first_phase;
};

static void schedule_init(struct schedule *s, const struct ofa_train_cfg *t, long spe)
{
    memset(s, 0, sizeof *s);
    s->kind = t->schedule;
    s->steps_per_epoch = spe;
    switch (t->schedule) {
    case OFA_SCHED_DEPS: {
        long shrink = lround(t->shrink_start * t->epochs);
        s->first_phase = 0;
        s->phase_start[0] = 0;
        s->phase_start[1] = shrink;
        s->phase_start[2] = t->epochs;
        s->n_phases = 2;
        s->total_epochs = t->epochs;
        break;
    }
    case OFA_SCHED_BIGNAS:
        s->first_phase = 1;
        s->phase_start[1] = 0;
        s->phase_start[2] = t->epochs;
        s->n_phases = 2;
        s->total_epochs = t->epochs;
        break;
    case OFA_SCHED_OFA_PS:
        s->first_phase = 0;
        s->phase_start[0] = 0;
        s->phase_start[1] = t->epochs;
        s->phase_start[2] = s->phase_start[1] + t->ps_kernel_epochs;
        s->phase_start[3] = s->phase_start[2] + t->ps_depth_epochs;
        s->phase_start[4] = s->phase_start[3] + t->ps_expand_epochs;
        s->n_phases = 4;
        s->total_epochs = s->phase_start[4];
        break;
    }
}

static int phase_of(const struct schedule *s, long epoch)
{
    int ph = s->first_phase;
    for (int p = s->first_phase; p < s->n_phases; p++)
        if (epoch >= s->phase_start[p])
            ph = p;
    return ph;
}

/* Learning rate: one cosine over the run (deps, bignas); for ofa-ps one
 * cosine per phase, the shrinking phases from ps_lr without warm-up. */
static float lr_at(const struct schedule *s, const struct ofa_train_cfg *t, long step)
{
    long spe = s->steps_per_epoch;
    if (s->kind == OFA_SCHED_OFA_PS) {
        int ph = phase_of(s, step / spe);
        long a = s->phase_start[ph] * spe, b = s->phase_start[ph + 1] * spe;
        if (ph == PHASE_FULL)
            return ofa_lr_cosine(step - a, b - a, lround(t->warmup_epochs * spe), t->lr,
                                 t->final_lr);
        return ofa_lr_cosine(step - a, b - a, 0, t->ps_lr, t->final_lr);
    }
    return ofa_lr_cosine(step, s->total_epochs * spe, lround(t->warmup_epochs * spe), t->lr,
                         t->final_lr);
}

/* DepS subnet gradient factor: 0 -> beta_max linearly over beta_ramp of the
 * epochs after the shrink point; 1 for bignas; kd weight for ofa-ps. */
static float beta_at(const struct schedule *s, const struct ofa_train_cfg *t, long step)
{
    if (s->kind != OFA_SCHED_DEPS)
        return 1.0f;
    long spe = s->steps_per_epoch;
    long s0 = s->phase_start[1] * spe;
    long ramp = lround(t->beta_ramp * s->total_epochs * spe);
    if (step < s0)
        return 0.0f;
    if (ramp <= 0)
        return t->beta_max;
    double f = (double)(step - s0 + 1) / (double)ramp;
    return (float)(t->beta_max * (f < 1.0 ? f : 1.0));
}

/* ---- The trainer -------------------------------------------------------------------- */

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

struct trainer {
    const struct ofa_train_opts *o;
    struct ofa_recipe r;
    char *recipe_text;
    struct ofa_dataset ds;
    struct ofa_dataset train_view; /* shallow copy of ds limited to the subset */
    struct ofa_supernet net, teacher;
    int have_teacher;
    struct ofa_exec ex;
    struct ofa_loader *loader;
    struct ofa_evaluator ev;
    struct schedule sch;
    struct ofa_train_state st;
    struct ofa_sgd sgd;
    const float *xb; /* the current batch (owned by the loader) */
    const int *yb;
    float *xr, *tprobs, *probs, *dlogits;
    float *gsum; /* gradient of the shards before the current one (several per process) */
    double wait0;    /* loader wait seconds at the start of the epoch */
    char part[1024], tpath[1024], logpath[1024];
    FILE *log;
    int writer;   /* this process writes the files (rank 0) */
    int progress; /* and the progress lines (rank 0, unless quiet) */
    double t_start, last_ckpt;
    /* running sums for the progress line and step rows (win), and for
     * epoch rows (ep) */
    struct sums {
        double loss, kd, t0;
        long nloss, nkd, images;
    } win, ep;
};

static void sums_reset(struct sums *a)
{
    memset(a, 0, sizeof *a);
    a->t0 = ofa_now();
}

/* Add a step's loss sums (st: loss sum, count, KD sum, count) and images. */
static void sums_add(struct trainer *T, const double *st, long images)
{
    struct sums *all[2] = {&T->win, &T->ep};
    for (int i = 0; i < 2; i++) {
        all[i]->loss += st[0], all[i]->nloss += (long)st[1];
        all[i]->kd += st[2], all[i]->nkd += (long)st[3];
        all[i]->images += images;
    }
}

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Write a checkpoint of net from the writing process; every process
 * returns its outcome. */
static int save_net(struct trainer *T, const char *path, const struct ofa_supernet *net,
                    struct ofa_error *err)
{
    int rc = T->writer ? ofa_ckpt_save(path, T->recipe_text, &net->sp, &net->p, &T->st,
                                       T->r.ckpt_deflate, err)
                       : 0;
    double bad = rc != 0;
    ofa_dist_sum_f64(&bad, 1);
    if (bad > 0 && rc == 0)
        rc = ofa_error_set(err, path, 0, "rank 0 could not write it (its message says why)");
    return rc;
}

static int save_ckpt(struct trainer *T, const char *path, struct ofa_error *err)
{
    T->st.elapsed += ofa_now() - T->t_start;
    T->t_start = ofa_now();
    T->last_ckpt = T->t_start;
    return save_net(T, path, &T->net, err);
}

/* Recipe and data -> supernet, loaders, buffers. */
static int setup(struct trainer *T, struct ofa_error *err)
{
    const struct ofa_train_opts *o = T->o;
    snprintf(T->part, sizeof T->part, "%s.part", o->output);
    snprintf(T->tpath, sizeof T->tpath, "%s.teacher", o->output);
    if (o->log_path)
        snprintf(T->logpath, sizeof T->logpath, "%s", o->log_path);
    else {
        snprintf(T->logpath, sizeof T->logpath, "%s", o->output);
        size_t n = strlen(T->logpath);
        if (n > 3 && strcmp(T->logpath + n - 3, ".h5") == 0)
            T->logpath[n - 3] = '\0';
        strncat(T->logpath, ".tsv", sizeof T->logpath - strlen(T->logpath) - 1);
    }
    int resuming = o->resume && file_exists(T->part);
    if (resuming) {
        /* The checkpoint's own recipe wins; a --recipe that trains differently
         * is refused (devices, [extract] and [export] may differ: they do not
         * change training). */
        if (ofa_ckpt_read_recipe(T->part, &T->recipe_text, err))
            return -1;
        if (ofa_recipe_load_string(&T->r, T->recipe_text, T->part, err))
            return -1;
        if (T->r.train.shards == 0) /* a checkpoint from before shards: one */
            T->r.train.shards = 1;
        if (o->recipe_path) {
            struct ofa_recipe given;
            if (ofa_recipe_load(&given, o->recipe_path, err))
                return -1;
            for (int i = 0; i < o->n_overrides; i++)
                if (ofa_recipe_set(&given, o->overrides[i], err))
                    return -1;
            if (given.train.shards == 0) /* "the process count" at the start */
                given.train.shards = T->r.train.shards;
            char *gt = ofa_recipe_format_training(&given);
            char *ct = ofa_recipe_format_training(&T->r);
            int same = strcmp(gt, ct) == 0;
            free(gt);
            free(ct);
            if (!same)
                return ofa_error_set(err, o->recipe_path, 0,
                                     "trains differently from the recipe of the checkpoint "
                                     "being resumed (%s); resume without --recipe/--set, or "
                                     "start afresh",
                                     T->part);
        }
    } else {
        if (!o->recipe_path)
            return ofa_error_set(err, NULL, 0, "--recipe is required (nothing to resume at %s)",
                                 T->part);
        if (ofa_recipe_load(&T->r, o->recipe_path, err))
            return -1;
        for (int i = 0; i < o->n_overrides; i++)
            if (ofa_recipe_set(&T->r, o->overrides[i], err))
                return -1;
        if (T->r.train.shards == 0)
            T->r.train.shards = ofa_dist_size();
        T->recipe_text = ofa_recipe_format(&T->r);
    }
    const char *rfile = resuming ? T->part : o->recipe_path;
    const int S = T->r.train.shards, P = ofa_dist_size();
    if (T->r.train.batch_size % S != 0)
        return ofa_error_set(err, rfile, 0, "train.batch_size (%d) is not a multiple of "
                             "train.shards (%d: one per MPI process unless set)",
                             T->r.train.batch_size, S);
    if (S % P != 0)
        return ofa_error_set(err, rfile, 0, "train.shards is %d: %d MPI processes cannot share "
                             "them evenly (run on a number of processes that divides %d)",
                             S, P, S);
    /* ofa-extract would refuse it after the training: say so now */
    for (int i = 0; i < T->r.n_devices; i++)
        if (ofa_device_space(&T->r.devices[i], &T->r.space, NULL, rfile, err))
            return -1;
    if (ofa_dataset_load(o->data_path, &T->ds, err))
        return -1;
    const struct ofa_space *sp = &T->r.space;
    const struct ofa_train_cfg *t = &T->r.train;
    if (T->ds.train.c != sp->in_channels)
        return ofa_error_set(err, o->data_path, 0,
                             "images have %d channels, the recipe's supernet expects "
                             "in_channels = %d", T->ds.train.c, sp->in_channels);
    if (T->ds.num_classes != sp->num_classes)
        return ofa_error_set(err, o->data_path, 0,
                             "the data set has %d classes, the recipe's supernet expects "
                             "num_classes = %d", T->ds.num_classes, sp->num_classes);
    if (T->ds.train.h != T->ds.train.w)
        return ofa_error_set(err, o->data_path, 0, "images must be square, got %dx%d",
                             T->ds.train.h, T->ds.train.w);
    int ntrain = T->ds.n_train;
    if (t->subset > 0 && t->subset < ntrain)
        ntrain = t->subset;
    if (ntrain < t->batch_size)
        return ofa_error_set(err, o->data_path, 0,
                             "%d training images are fewer than one batch (batch_size = %d)",
                             ntrain, t->batch_size);

    ofa_supernet_init(&T->net, sp, (uint64_t)t->seed);
    /* The checkpoint first: its guarded load forks (h5file.h), which is safe
     * only before the loaders start their threads (a fork while another
     * thread holds an allocator lock can leave the child waiting for it;
     * CI's ASan build did). */
    memset(&T->st, 0, sizeof T->st);
    T->st.data_hash = ofa_dataset_fingerprint(&T->ds);
    /* Every random choice is derived from (seed, step, k); this generator
     * is kept in the state for extensions that need a running stream. */
    ofa_rng_seed(&T->st.rng, (uint64_t)t->seed);
    if (resuming) {
        uint64_t want = T->st.data_hash;
        if (ofa_ckpt_load(T->part, &T->net.p, &T->st, err))
            return -1;
        if (T->st.data_hash != want)
            return ofa_error_set(err, o->data_path, 0,
                                 "is not the data set (or split) that %s was trained on", T->part);
        if (t->schedule == OFA_SCHED_OFA_PS && T->st.phase >= PHASE_PS_KERNEL) {
            struct ofa_train_state tst;
            ofa_supernet_init(&T->teacher, sp, 0);
            if (ofa_ckpt_load(T->tpath, &T->teacher.p, &tst, err))
                return -1;
            T->have_teacher = 1;
        }
    }
    /* Training batches at the largest resolution, from the train split. */
    struct ofa_loader_config c;
    ofa_loader_config_default(&c);
    c.split = OFA_SPLIT_TRAIN;
    c.batch_size = t->batch_size;
    c.shuffle = 1;
    c.drop_last = 1;
    c.seed = (uint64_t)t->seed;
    c.aug.crop_pad = T->r.augment.crop_padding;
    c.aug.flip = T->r.augment.flip;
    c.aug.erase_prob = T->r.augment.erase_prob;
    c.aug.normalize = T->r.augment.normalize;
    c.resolution = ofa_space_max_res(sp);
    c.max_resolution = c.resolution > T->ds.train.h ? c.resolution : T->ds.train.h;
    /* A background thread prepares the next batch while this one trains:
     * only this process's shards of it under MPI. */
    c.async = 1;
    if (P > 1) {
        c.keep_n = T->r.train.batch_size / P;
        c.keep_from = ofa_dist_rank() * c.keep_n;
    }
    /* subset: a view of the first `subset` images of the train split. */
    T->train_view = T->ds;
    T->train_view.n_train = ntrain;
    T->loader = ofa_loader_create(&T->train_view, &c);
    ofa_evaluator_init(&T->ev, &T->ds, &T->r, OFA_SPLIT_VAL, (uint64_t)t->seed);
    int maxb = t->batch_size > ofa_evaluator_max_batch(&T->ev) ? t->batch_size
                                                                : ofa_evaluator_max_batch(&T->ev);
    ofa_exec_init(&T->ex, &T->net, maxb);
    schedule_init(&T->sch, t, ofa_loader_num_batches(T->loader));
    const int R = c.max_resolution, C = sp->in_channels, B = t->batch_size, K = sp->num_classes;
    T->xr = ofa_xmalloc((size_t)B * R * R * C * sizeof(float), "resized batch");
    T->tprobs = ofa_xmalloc((size_t)B * K * sizeof(float), "teacher outputs");
    T->probs = ofa_xmalloc((size_t)B * K * sizeof(float), "student outputs");
    T->dlogits = ofa_xmalloc((size_t)B * K * sizeof(float), "logit gradients");
    T->sgd.momentum = t->momentum;
    T->sgd.nesterov = t->nesterov;
    T->sgd.weight_decay = t->weight_decay;
    T->sgd.wd_mode = t->wd_decoupled ? OFA_WD_DECOUPLED : OFA_WD_L2;
    T->sgd.clip_norm = t->clip_norm;

    return 0;
}

static void log_header(FILE *f)
{
    fprintf(f, "kind\tepoch\tstep\tphase\tlr\tbeta\tloss\tkd_loss\timages_per_s\t"
               "val_acc_largest\tval_acc_smallest\telapsed_s\timages_seen\tdata_wait_s\t"
               "train_gflop\n");
}

static const char *phase_name(const struct trainer *T, int phase)
{
    return sched_phase_names[T->sch.kind][phase];
}

/* Losses of one step: sums and counts of the label loss and the KD loss,
 * a flag for a loss that is not finite, and the step's floating-point
 * operations (6 x MACs per image of every subnet trained, forward and
 * backward, as bench/compare.py counts them; 2 x MACs per image of ofa-ps's
 * teacher, forward only). */
enum { ST_LOSS, ST_NLOSS, ST_KD, ST_NKD, ST_BAD, ST_FLOP, ST_N };

/* Forward and backward of the sandwich on one shard: n images at (xb, yb),
 * gradients scaled by gscale (1/shards) and added to the table. Returns 0, or
 * -1 when a loss is not finite. */
static int shard_step(struct trainer *T, int n, int phase, float beta, float gscale,
                      uint64_t shard, double *st)
{
    const struct ofa_space *sp = &T->net.sp;
    const struct ofa_train_cfg *t = &T->r.train;
    const int K = sp->num_classes, Rmax = ofa_space_max_res(sp), C = sp->in_channels;
    const long step = T->st.step;
    struct ofa_rng drop;
    ofa_rng_derive(&drop, (uint64_t)t->seed, TAG_DROPOUT, (uint64_t)step | shard << 48);
    struct ofa_subnet big, sub;
    ofa_subnet_largest(sp, &big);
    int n_students = 0;
    int ps = T->sch.kind == OFA_SCHED_OFA_PS && phase >= PHASE_PS_KERNEL;

    if (!ps) {
        /* The largest subnet on the labels (dropout on it only). */
        const float *logits = ofa_supernet_forward(&T->net, &T->ex, &big, T->xb, n,
                                                   OFA_MODE_TRAIN, sp->dropout, &drop);
        float loss = ofa_ce_forward(T->probs, logits, T->yb, n, K, t->label_smoothing);
        if (!isfinite(loss))
            return -1;
        st[ST_LOSS] += loss, st[ST_NLOSS]++;
        st[ST_FLOP] += 6.0 * (double)ofa_subnet_macs(sp, &big) * n;
        if (phase == PHASE_SANDWICH)
            ofa_softmax_forward(T->tprobs, logits, n, K, t->kd_temperature);
        memset(T->dlogits, 0, (size_t)n * K * sizeof(float));
        ofa_ce_backward(T->dlogits, T->probs, T->yb, n, K, t->label_smoothing, gscale);
        ofa_supernet_backward(&T->net, &T->ex, T->dlogits);
        if (phase == PHASE_SANDWICH)
            n_students = 1 + t->n_random;
    } else {
        /* Progressive shrinking: the frozen full network teaches. */
        const float *tl = ofa_supernet_forward(&T->teacher, &T->ex, &big, T->xb, n,
                                               OFA_MODE_TRAIN, 0.0f, NULL);
        ofa_softmax_forward(T->tprobs, tl, n, K, t->kd_temperature);
        st[ST_FLOP] += 2.0 * (double)ofa_subnet_macs(sp, &big) * n;
        n_students = 1 + t->n_random;
    }

    for (int k = 0; k < n_students; k++) {
        if (!ps && k == 0) {
            ofa_subnet_smallest(sp, &sub);
        } else {
            struct ofa_rng r;
            ofa_rng_derive(&r, (uint64_t)t->seed, TAG_SUBNET, (uint64_t)step * 64 + (uint64_t)k);
            ofa_subnet_sample(sp, &r, &sub);
            if (ps) {
                /* Elastic dimensions of the phase only. */
                for (int s = 0; s < sp->n_stages; s++) {
                    if (phase < PHASE_PS_DEPTH)
                        sub.depth[s] = ofa_space_max_depth(sp);
                    for (int b = 0; b < sub.depth[s]; b++) {
                        if (sub.kernel[s][b] == 0) { /* slot beyond the sampled depth */
                            sub.kernel[s][b] = sp->kernels[ofa_rng_below(&r, (uint32_t)sp->n_kernels)];
                            sub.expand[s][b] = sp->expands[ofa_rng_below(&r, (uint32_t)sp->n_expands)];
                        }
                        if (phase < PHASE_PS_EXPAND)
                            sub.expand[s][b] = sp->expands[sp->n_expands - 1];
                    }
                }
            }
        }
        const float *x = T->xb;
        if (sub.res != Rmax) {
            ofa_resize_bilinear_forward(T->xr, T->xb, n, Rmax, Rmax, sub.res, sub.res, C);
            x = T->xr;
        }
        const float *logits = ofa_supernet_forward(&T->net, &T->ex, &sub, x, n, OFA_MODE_TRAIN,
                                                   0.0f, NULL);
        float kd = ofa_kd_forward(T->probs, logits, T->tprobs, n, K, t->kd_temperature);
        if (!isfinite(kd))
            return -1;
        st[ST_KD] += kd, st[ST_NKD]++;
        st[ST_FLOP] += 6.0 * (double)ofa_subnet_macs(sp, &sub) * n;
        memset(T->dlogits, 0, (size_t)n * K * sizeof(float));
        ofa_kd_backward(T->dlogits, T->probs, T->tprobs, n, K, t->kd_temperature,
                        beta * t->kd_weight * gscale);
        if (ps) {
            /* OFA's shrinking phases also train on the labels. */
            float *pl = T->probs;
            float ce = ofa_ce_forward(pl, logits, T->yb, n, K, t->label_smoothing);
            if (!isfinite(ce))
                return -1;
            st[ST_LOSS] += ce, st[ST_NLOSS]++;
            ofa_ce_backward(T->dlogits, pl, T->yb, n, K, t->label_smoothing, gscale);
        }
        ofa_supernet_backward(&T->net, &T->ex, T->dlogits);
    }
    return 0;
}

/* One optimizer step on a batch: each of the recipe's shards goes through
 * shard_step on its own (its own BN batch statistics), this process taking
 * its share of them (all without MPI); the gradients are summed over the
 * processes and every process takes the same step. Returns 0, or -1 (on
 * every process) when a loss or the gradient is not finite. */
static int train_step(struct trainer *T, const struct ofa_batch *bt, int phase, float lr,
                      float beta)
{
    const struct ofa_space *sp = &T->net.sp;
    const int S = T->r.train.shards, P = ofa_dist_size(), me = ofa_dist_rank();
    const int Rmax = ofa_space_max_res(sp), m = bt->n / S;
    OFA_ASSERT(bt->n % S == 0 && S % P == 0);
    struct ofa_params *p = &T->net.p;
    double st[ST_N] = {0};
    for (int j = me * (S / P); j < (me + 1) * (S / P); j++) {
        /* Each shard's gradient on its own, then added to the sum of those
         * before it: the same additions MPI_Allreduce makes across
         * processes, so that 2 shards give the same bits on 1 or 2. */
        if (j > me * (S / P)) {
            if (!T->gsum)
                T->gsum = ofa_xmalloc(p->total * sizeof(float), "shard gradient sum");
            memcpy(T->gsum, p->grad, p->total * sizeof(float));
        }
        ofa_params_zero_grad(p);
        T->xb = bt->x + (size_t)j * m * Rmax * Rmax * sp->in_channels;
        T->yb = bt->y + (size_t)j * m;
        if (shard_step(T, m, phase, beta, 1.0f / (float)S, (uint64_t)j, st)) {
            st[ST_BAD] = 1;
            break;
        }
        if (j > me * (S / P))
            for (size_t i = 0; i < p->total; i++)
                p->grad[i] = T->gsum[i] + p->grad[i];
    }
    ofa_dist_sum_f64(st, ST_N);
    if (st[ST_BAD] != 0)
        return -1;
    ofa_dist_sum_f32(p->grad, p->total);
    double gnorm = ofa_sgd_step(&T->sgd, p, lr);
    if (!isfinite(gnorm))
        return -1;
    /* the shards' mean losses: the loss of the whole batch */
    int ps = T->sch.kind == OFA_SCHED_OFA_PS && phase >= PHASE_PS_KERNEL;
    int n_students = ps || phase == PHASE_SANDWICH ? 1 + T->r.train.n_random : 0;
    long images = (long)bt->n * (ps ? n_students : 1 + n_students);
    double per_batch[ST_N] = {st[ST_LOSS] / S, st[ST_NLOSS] / S, st[ST_KD] / S, st[ST_NKD] / S};
    T->st.images_seen += images;
    /* the FLOP of all shards on all processes: integers, summed exactly */
    T->st.train_gflop += st[ST_FLOP] * 1e-9;
    sums_add(T, per_batch, images);
    return 0;
}

static void progress(struct trainer *T, int phase, float lr, float beta)
{
    if (!T->progress)
        return;
    const struct sums *w = &T->win;
    long total = T->sch.total_epochs * T->sch.steps_per_epoch;
    double now = ofa_now(), dt = now - w->t0;
    double elapsed = T->st.elapsed + (now - T->t_start);
    double done = total ? (double)T->st.step / (double)total : 1.0;
    double eta = done > 0 ? elapsed * (1.0 - done) / done : 0;
    int tty = isatty(2);
    fprintf(stderr, "%sepoch %ld/%ld step %ld/%ld %-6s loss %.4f kd %.4f lr %.4g beta %.2f "
                    "%.0f img/s ETA %02d:%02d:%02d%s",
            tty ? "\r" : "", T->st.epoch + 1, T->sch.total_epochs, T->st.step, total,
            phase_name(T, phase), w->nloss ? w->loss / w->nloss : 0.0,
            w->nkd ? w->kd / w->nkd : 0.0, lr, beta, dt > 0 ? w->images / dt : 0.0,
            (int)(eta / 3600), (int)fmod(eta / 60, 60), (int)fmod(eta, 60), tty ? "\033[K" : "\n");
    fflush(stderr);
}

static void log_row(struct trainer *T, const char *kind, const struct sums *a, int phase,
                    float lr, float beta, double acc_l, double acc_s)
{
    if (!T->log)
        return; /* not the writing process */
    double now = ofa_now(), dt = now - a->t0;
    fprintf(T->log, "%s\t%ld\t%ld\t%s\t%.6g\t%.4f\t%.6f\t%.6f\t%.1f\t", kind, T->st.epoch,
            T->st.step, phase_name(T, phase), lr, beta, a->nloss ? a->loss / a->nloss : NAN,
            a->nkd ? a->kd / a->nkd : NAN, dt > 0 ? a->images / dt : 0.0);
    if (acc_l >= 0)
        fprintf(T->log, "%.4f\t%.4f", acc_l, acc_s);
    else
        fprintf(T->log, "\t");
    /* data_wait_s: seconds this epoch so far spent waiting for the loader */
    fprintf(T->log, "\t%.1f\t%lld\t%.3f\t%.6f\n", T->st.elapsed + (now - T->t_start),
            T->st.images_seen, ofa_loader_wait_seconds(T->loader) - T->wait0,
            T->st.train_gflop);
    fflush(T->log);
}

static int begin_phase(struct trainer *T, int phase, struct ofa_error *err)
{
    /* Channel importance sorting once, when elastic width first trains:
     * deps at the shrink point, ofa-ps at the expand phase. */
    int sort = (T->sch.kind == OFA_SCHED_DEPS && phase == PHASE_SANDWICH) ||
               (T->sch.kind == OFA_SCHED_OFA_PS && phase == PHASE_PS_EXPAND);
    if (sort && !T->st.channels_sorted) {
        ofa_supernet_sort_channels(&T->net);
        T->st.channels_sorted = 1;
        if (T->have_teacher)
            ofa_supernet_sort_channels(&T->teacher);
    }
    if (T->sch.kind == OFA_SCHED_OFA_PS && phase >= PHASE_PS_KERNEL && !T->have_teacher) {
        /* Freeze the full network as the teacher of the shrinking phases,
         * and keep it on disk for resumes. */
        ofa_supernet_init(&T->teacher, &T->net.sp, 0);
        memcpy(T->teacher.p.data, T->net.p.data, T->net.p.total * sizeof(float));
        T->have_teacher = 1;
        if (save_net(T, T->tpath, &T->teacher, err))
            return -1;
    }
    T->st.phase = phase;
    return 0;
}

static int run(struct trainer *T, struct ofa_error *err)
{
    const struct ofa_train_opts *o = T->o;
    const struct ofa_train_cfg *t = &T->r.train;
    const struct ofa_space *sp = &T->r.space;
    int appending = o->resume && T->st.step > 0 && file_exists(T->logpath);
    if (T->writer) {
        T->log = fopen(T->logpath, appending ? "a" : "w");
        if (!T->log)
            return ofa_error_set(err, T->logpath, 0, "cannot open the log for writing: %s",
                                 strerror(errno));
        if (!appending)
            log_header(T->log);
    }
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    stop_signal = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    T->t_start = T->last_ckpt = ofa_now();
    const double t_run = T->t_start;
    sums_reset(&T->win);
    sums_reset(&T->ep);
    const long spe = T->sch.steps_per_epoch;
    long steps_this_run = 0;
    int rc = 0;
    struct ofa_subnet big, small;
    ofa_subnet_largest(sp, &big);
    ofa_subnet_smallest(sp, &small);
    if (T->progress) {
        char tb[OFA_SUBNET_TEXT_MAX], ts[OFA_SUBNET_TEXT_MAX];
        ofa_subnet_format(sp, &big, tb, sizeof tb);
        ofa_subnet_format(sp, &small, ts, sizeof ts);
        fprintf(stderr, "ofa-train: %ld epochs of %ld steps (batch %d), schedule %s, "
                        "%lld parameters, %d threads\n"
                        "ofa-train: largest %s (%.1f M MACs), smallest %s (%.1f M MACs)\n",
                T->sch.total_epochs, spe, t->batch_size,
                T->sch.kind == OFA_SCHED_DEPS ? "deps" : T->sch.kind == OFA_SCHED_BIGNAS
                                                             ? "bignas" : "ofa-ps",
                (long long)ofa_params_count(&T->net.p), ofa_threads_get(), tb,
                ofa_subnet_macs(sp, &big) * 1e-6, ts, ofa_subnet_macs(sp, &small) * 1e-6);
    }

    while (T->st.epoch < T->sch.total_epochs) {
        int phase = phase_of(&T->sch, T->st.epoch);
        if (phase != T->st.phase || (T->st.step == 0 && T->st.epoch == 0))
            if (begin_phase(T, phase, err)) {
                rc = -1;
                break;
            }
        float lr = 0, beta = 0;
        const long first = T->st.step - T->st.epoch * spe;
        ofa_loader_start_epoch(T->loader, (int)T->st.epoch);
        for (long i = 0; i < first; i++) /* resuming mid-epoch: skip what was trained */
            ofa_loader_next(T->loader);
        T->wait0 = ofa_loader_wait_seconds(T->loader);
        for (long i = first; i < spe; i++) {
            lr = lr_at(&T->sch, t, T->st.step);
            beta = beta_at(&T->sch, t, T->st.step);
            const struct ofa_batch *bt = ofa_loader_next(T->loader);
            OFA_ASSERT(bt && bt->index == i);
            if (train_step(T, bt, phase, lr, beta)) {
                rc = ofa_error_set(err, NULL, 0,
                                   "loss or gradient became NaN/Inf at step %ld (epoch %ld); "
                                   "stopped, the last good checkpoint %s is kept "
                                   "(lower the learning rate or enable clip_norm)",
                                   T->st.step, T->st.epoch + 1,
                                   file_exists(T->part) ? T->part : "(none yet)");
                goto out;
            }
            T->st.step++;
            steps_this_run++;
            if (t->log_every > 0 && T->st.step % t->log_every == 0) {
                progress(T, phase, lr, beta);
                log_row(T, "step", &T->win, phase, lr, beta, -1, -1);
                sums_reset(&T->win);
            }
            /* Every process takes the same decision (a timer or a signal of
             * one of them is enough). */
            double want[2] = {t->checkpoint_minutes > 0 &&
                                  ofa_now() - T->last_ckpt > 60.0 * t->checkpoint_minutes,
                              stop_signal != 0};
            ofa_dist_sum_f64(want, 2);
            int stop = want[1] > 0;
            int asked = o->stop_after_steps > 0 && steps_this_run >= o->stop_after_steps;
            if ((want[0] > 0 || stop || asked) && i + 1 < spe) {
                if (save_ckpt(T, T->part, err)) {
                    rc = -1;
                    goto out;
                }
                if (stop || asked) {
                    if (T->progress)
                        fprintf(stderr, "\nofa-train: %s at step %ld; checkpoint %s written; "
                                        "continue with --resume\n",
                                stop ? "interrupted" : "stopped", T->st.step, T->part);
                    rc = OFA_TRAIN_INTERRUPTED;
                    goto out;
                }
            }
        }
        T->st.epoch++;
        double acc_l = -1, acc_s = -1;
        if (t->val_every > 0 && (T->st.epoch % t->val_every == 0 ||
                                 T->st.epoch == T->sch.total_epochs)) {
            acc_l = ofa_evaluate(&T->ev, &T->net, &T->ex, &big);
            acc_s = ofa_evaluate(&T->ev, &T->net, &T->ex, &small);
        }
        if (T->progress && acc_l >= 0)
            fprintf(stderr, "%sofa-train: epoch %ld: validation accuracy largest %.2f%% "
                            "smallest %.2f%%\n", isatty(2) ? "\n" : "", T->st.epoch,
                    100 * acc_l, 100 * acc_s);
        log_row(T, "epoch", &T->ep, phase, lr, beta, acc_l, acc_s);
        sums_reset(&T->ep);
        sums_reset(&T->win);
        if (save_ckpt(T, T->part, err)) {
            rc = -1;
            goto out;
        }
        double sig = stop_signal != 0;
        ofa_dist_sum_f64(&sig, 1);
        int asked = o->stop_after_steps > 0 && steps_this_run >= o->stop_after_steps;
        if ((sig > 0 || asked) && T->st.epoch < T->sch.total_epochs) {
            if (T->progress)
                fprintf(stderr, "ofa-train: %s after epoch %ld; continue with --resume\n",
                        sig > 0 ? "interrupted" : "stopped", T->st.epoch);
            rc = OFA_TRAIN_INTERRUPTED;
            goto out;
        }
    }
    /* Finished: the final model, then the in-progress files go. */
    if (save_ckpt(T, o->output, err)) {
        rc = -1;
        goto out;
    }
    if (T->writer) {
        remove(T->part);
        if (T->have_teacher)
            remove(T->tpath);
    }
    if (T->progress)
        fprintf(stderr, "ofa-train: done in %.0f s; wrote %s and %s\n", T->st.elapsed, o->output,
                T->logpath);
out:
    if (T->progress && ofa_dist_size() > 1) {
        double busy = ofa_now() - t_run;
        fprintf(stderr, "ofa-train: %d processes; rank 0 spent %.1f s of %.1f s in "
                        "MPI_Allreduce (%.1f%%)\n", ofa_dist_size(), ofa_dist_comm_seconds(),
                busy, busy > 0 ? 100.0 * ofa_dist_comm_seconds() / busy : 0.0);
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (T->log && fclose(T->log) != 0 && rc == 0)
        rc = ofa_error_set(err, T->logpath, 0, "write failed: %s", strerror(errno));
    T->log = NULL;
    return rc;
}

/* ---- Scaling model ------------------------------------------------------------------ */

static void trainer_free(struct trainer *T)
{
    if (T->loader)
        ofa_loader_free(T->loader);
    ofa_evaluator_free(&T->ev);
    ofa_exec_free(&T->ex);
    ofa_supernet_free(&T->net);
    if (T->have_teacher)
        ofa_supernet_free(&T->teacher);
    ofa_dataset_free(&T->ds);
    free(T->recipe_text);
    free(T->xr), free(T->tprobs), free(T->probs), free(T->dlogits), free(T->gsum);
    free(T);
}

int ofa_train_predict_scaling(const struct ofa_train_opts *o, double bandwidth, double latency,
                              FILE *out, struct ofa_error *err)
{
    OFA_ASSERT(bandwidth > 0 && latency >= 0);
    if (ofa_dist_size() > 1)
        return ofa_error_set(err, NULL, 0, "--predict-scaling profiles one process: run it "
                             "without mpirun");
    struct trainer *T = ofa_xcalloc(1, sizeof *T, "trainer");
    struct ofa_train_opts one = *o;
    one.resume = 0;
    if (!one.output)
        one.output = "supernet.h5"; /* names only: nothing is written */
    T->o = &one;
    T->writer = 1;
    if (o->threads > 0)
        ofa_threads_set(o->threads);
    if (setup(T, err)) {
        trainer_free(T);
        return -1;
    }
    /* The steady state: the sandwich (deps, bignas); ofa-ps's full phase. */
    const int phase = T->sch.kind == OFA_SCHED_OFA_PS ? 0 : PHASE_SANDWICH;
    const int B = T->r.train.batch_size, warm = 2, timed = 6;
    T->r.train.shards = 1;
    ofa_loader_start_epoch(T->loader, 0);
    double t0 = 0;
    for (int i = 0; i < warm + timed; i++) {
        if (i == warm)
            t0 = ofa_now();
        const struct ofa_batch *bt = ofa_loader_next(T->loader);
        if (train_step(T, bt, phase, 1e-4f, 1.0f)) {
            trainer_free(T);
            return ofa_error_set(err, NULL, 0, "the profile step's loss is not finite");
        }
        T->st.step++;
    }
    const double tc = (ofa_now() - t0) / timed;
    /* images as the log counts them: every subnet's (the sandwich's 2 +
     * n_random per batch image) */
    const double per_step = (double)(T->st.images_seen) / (warm + timed);
    const double G = 4.0 * (double)T->net.p.total;
    const double buckets = ceil((double)T->net.p.total / OFA_DIST_BUCKET);
    fprintf(out,
            "# one process, %d threads: %.1f ms per step of %d images (%s: %.0f subnet images), "
            "%.0f images/s\n"
            "# gradient: %.2f MB in %.0f buckets; network: %.3g GB/s, %.3g us latency\n"
            "# model: step(N) = compute/N + ring allreduce 2(N-1)/N*bytes/bandwidth\n"
            "#        + 2(N-1)*latency per bucket + 3 small allreduces of 2*log2(N)*latency\n"
            "ranks\timages_per_rank\tcompute_ms\tcomm_ms\tstep_ms\timages_per_s\tspeedup\t"
            "comm_share\n",
            ofa_threads_get(), 1e3 * tc, B, phase_name(T, phase), per_step, per_step / tc,
            G / 1e6, buckets,
            bandwidth / 1e9, latency * 1e6);
    int crossover = 0;
    for (int n = 1; n <= 1024 && n <= B; n *= 2) {
        double comp = tc / n, comm = 0;
        if (n > 1)
            comm = 2.0 * (n - 1) / n * G / bandwidth + 2.0 * (n - 1) * latency * buckets +
                   3 * 2.0 * log2((double)n) * latency;
        double step = comp + comm;
        fprintf(out, "%d\t%d\t%.2f\t%.2f\t%.2f\t%.0f\t%.2f\t%.3f\n", n, B / n, 1e3 * comp,
                1e3 * comm, 1e3 * step, per_step / step, tc / step, comm / step);
        if (!crossover && comm >= comp)
            crossover = n;
    }
    if (crossover)
        fprintf(out, "# communication dominates from %d ranks on (the batch of %d is then "
                     "%d images per rank)\n", crossover, B, B / crossover);
    else
        fprintf(out, "# communication stays below compute up to %d ranks\n", B < 1024 ? B : 1024);
    trainer_free(T);
    return 0;
}

int ofa_train_run(const struct ofa_train_opts *o, struct ofa_error *err)
{
    struct trainer *T = ofa_xcalloc(1, sizeof *T, "trainer");
    T->o = o;
    T->writer = ofa_dist_rank() == 0;
    T->progress = o->progress && T->writer;
    if (o->threads > 0)
        ofa_threads_set(o->threads);
    int rc = setup(T, err);
    if (rc == 0) {
        if (o->resume && !file_exists(T->part) && file_exists(o->output)) {
            if (T->progress)
                fprintf(stderr, "ofa-train: %s is already trained; nothing to do\n", o->output);
        } else {
            rc = run(T, err);
        }
    }
    trainer_free(T);
    return rc;
}
