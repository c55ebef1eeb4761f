/* The subject trainer: trains the built-in models on a dataset and records
 * each epoch into a run through the recorder (record.c), which works on a
 * snapshot of the net at the end of the epoch. */
#include "tardis/train.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "run/run_json.h"
#include "tardis/fsutil.h"
#include "tardis/nn.h"
#include "tardis/parallel.h"
#include "tardis/rng.h"
#include "tardis/run.h"
#include "train/augment.h"
#include "train/continual.h"
#include "train/labels.h"
#include "train/model.h"
#include "train/options.h"
#include "train/pool.h"
#include "train/record.h"
#include "train/resume.h"
#include "train/select_times.h"

void td_train_opts_default(td_train_opts *o) {
  memset(o, 0, sizeof *o);
  o->dataset = "fashion-mnist";
  o->model = "mlp";
  o->optimizer = "sgd";
  o->epochs = 30;
  o->batch = 128;
  o->lr = 0.01;
  o->momentum = 0.9;
  o->lr_spike_factor = 1;
  o->lr_grow = 1;
  o->noise_type = TD_NOISE_SYMMETRIC;
  o->seed = 1;
  o->save_model = 1;
}

/* A dataset's inputs as a split: float images as they are, byte images
 * as bytes (converted a batch or a chunk at a time where they are used,
 * td__split_rows). */
static td__split split_of(const td_dataset *ds, const int32_t *labels,
                          const int32_t *truth) {
  td__split s = {NULL,  labels, truth,
                 ds->n, NULL,   (int)td_dataset_sample_size(ds)};
  if (ds->images.dtype == TD_F32)
    s.x = ds->images.data;
  else
    s.x8 = ds->images.data;
  return s;
}

/* run.json's trainer fields: the model and the options (docs/run-format.md). */
static json_t *run_extra(const td_train_opts *o, const td_net *net,
                         const td_dataset *tr) {
  /* absolute paths: --resume and --from may run from another directory */
  td_train_opts a = *o;
  char d[TD_PATH_MAX], dd[TD_PATH_MAX], sel[TD_PATH_MAX], lab[TD_PATH_MAX];
  char ex[TD_PATH_MAX];
  if (o->data && realpath(o->data, d))
    a.data = d;
  if (o->data_dir && realpath(o->data_dir, dd))
    a.data_dir = dd;
  if (o->select && realpath(o->select, sel))
    a.select = sel;
  if (o->labels && realpath(o->labels, lab))
    a.labels = lab;
  if (o->exclude && realpath(o->exclude, ex))
    a.exclude = ex;
  return json_pack("{s:o, s:o}", "model",
                   td__model_json(o, net, tr->channels, tr->height, tr->width),
                   "train", td__train_opts_json(&a));
}

/* A child run's inputs mapped from its parent's file: linked to it. */
static int link_inputs(const char *out, const char *src, const char *name,
                       td_err *err) {
  char path[TD_PATH_MAX];
  int rc = td_pathf(path, sizeof path, err, "%s/%s.npy", src, name);
  return rc ? rc : td_run_link_array(out, name, path, err);
}

static int write_run_header(const td_train_opts *o, const td_dataset *tr,
                            const td_dataset *te, const int32_t *noisy,
                            const int32_t *truth, const td__continual *cl,
                            const td_net *net, const td__cont *parent,
                            const int32_t *rec_idx, int64_t rec_n,
                            const int stored[2], td_err *err) {
  td_run_meta m;
  memset(&m, 0, sizeof m);
  char dflt[256];
  snprintf(dflt, sizeof dflt, "%s %s", o->data ? "dataset" : o->dataset,
           o->model);
  const char *name = o->name ? o->name : dflt;
  if (strlen(name) >= sizeof m.name)
    return td_err_set(err, TD_EVALUE,
                      "run name is %zu bytes long, at most %zu allowed",
                      strlen(name), sizeof m.name - 1);
  memcpy(m.name, name, strlen(name) + 1);
  m.classes = (char **)(uintptr_t)tr->class_names;
  m.n_classes = tr->n_classes;
  m.n_train = tr->n;
  m.n_test = te->n;
  m.repr_dim = td__model_repr_dim(net);
  m.input_shape[0] = tr->channels;
  m.input_shape[1] = tr->height;
  m.input_shape[2] = tr->width;
  m.has_input_shape = 1;
  if (cl) {
    m.n_tasks = cl->n_tasks;
    m.task_of_class = cl->task_of_class;
    m.epochs_per_task = cl->epochs_per_task;
  }
  if (parent && parent->run_dir[0]) {
    if (strlen(parent->run_dir) >= sizeof m.parent)
      return td_err_set(err, TD_ERANGE, "%s: path too long", parent->run_dir);
    memcpy(m.parent, parent->run_dir, strlen(parent->run_dir) + 1);
    m.parent_epoch = parent->epoch;
  }
  json_t *extra = run_extra(o, net, tr);
  int rc = extra ? td__run_create_json(o->out, &m, extra, o->force, err)
                 : td_err_set(err, TD_ENOMEM, "out of memory");
  json_decref(extra);
  if (rc)
    return rc;
  td_array a;
  int64_t n = tr->n, nt = te->n;
  int64_t ishape[4] = {tr->n, tr->channels, tr->height, tr->width};
  int64_t tshape[4] = {te->n, te->channels, te->height, te->width};
#define WRITE(name, dt, nd, shp, ptr)                                          \
  do {                                                                         \
    td_array_wrap(&a, dt, nd, shp, (void *)(uintptr_t)(ptr));                  \
    if ((rc = td_run_write_array(o->out, name, &a, err)) != TD_OK)             \
      return rc;                                                               \
  } while (0)
  int64_t k = rec_n;
  if (rec_idx) /* before the labels: whoever opens the run sees it */
    WRITE("subset", TD_I32, 1, &k, rec_idx);
  WRITE("train_labels", TD_I32, 1, &n, noisy);
  if (truth)
    WRITE("train_truth", TD_I32, 1, &n, truth);
  if (stored[0]) /* the parent's file, the same bytes */
    rc = link_inputs(o->out, parent->run_dir, "train_inputs", err);
  else
    WRITE("train_inputs", tr->images.dtype, 4, ishape, tr->images.data);
  if (!rc && te->n) {
    WRITE("test_labels", TD_I32, 1, &nt, te->labels);
    if (stored[1])
      rc = link_inputs(o->out, parent->run_dir, "test_inputs", err);
    else
      WRITE("test_inputs", te->images.dtype, 4, tshape, te->images.data);
  }
#undef WRITE
  return rc;
}

#define MAX_SHARDS 16

/* Data-parallel training: each batch is cut into `shards` contiguous slices,
 * one per core; every slice runs forward and backward on its own replica of
 * the net (single-threaded BLAS), and the replicas' gradients are summed in
 * a fixed order, so a run is reproducible for a given thread count. At batch
 * 128 this beats multi-threaded GEMMs, whose synchronisation costs more than
 * the small products save. */
typedef struct train_state {
  td_net *net;
  td_net_ws *ws;
  td_optim *opt;
  float *xb, *dlogits;
  int32_t *yb, *perm;
  int shards;
  td_net *rep[MAX_SHARDS];
  td_net_ws *rws[MAX_SHARDS];
  float *rdl[MAX_SHARDS];
  double rloss[MAX_SHARDS];
  int m; /* rows of the current batch */
  int C;
  /* augmentation of the batch, on images of shape [c, h, w] */
  td__augment aug;
  int c, h, w;
  float *aug_tmp;
} train_state;

static void train_state_free(train_state *s) {
  for (int j = 0; j < s->shards; j++) {
    td_net_free(s->rep[j]);
    td_net_ws_free(s->rws[j]);
    free(s->rdl[j]);
  }
  td_net_free(s->net);
  td_net_ws_free(s->ws);
  td_optim_free(s->opt);
  free(s->xb);
  free(s->dlogits);
  free(s->yb);
  free(s->perm);
  free(s->aug_tmp);
}

static int train_state_shard(train_state *s, int shards, int batch, int C) {
  if (shards > MAX_SHARDS)
    shards = MAX_SHARDS;
  if (shards > batch / 16)
    shards = batch / 16 > 1 ? batch / 16 : 1;
  s->C = C;
  if (shards <= 1) {
    s->shards = 0;
    return TD_OK;
  }
  s->shards = shards;
  int rows = (batch + shards - 1) / shards;
  for (int j = 0; j < shards; j++) {
    s->rep[j] = td_net_replica(s->net);
    s->rws[j] = s->rep[j] ? td_net_ws_new(s->rep[j], rows) : NULL;
    s->rdl[j] = malloc((size_t)rows * C * sizeof(float));
    if (!s->rep[j] || !s->rws[j] || !s->rdl[j])
      return TD_ENOMEM;
  }
  return TD_OK;
}

static void shard_cb(void *ctx, int64_t begin, int64_t end, int tid) {
  train_state *s = ctx;
  (void)tid; /* the shard index, not the thread, picks the replica */
  int in = td_net_in_dim(s->net);
  for (int64_t j = begin; j < end; j++) {
    int r0 = (int)((int64_t)s->m * j / s->shards);
    int r1 = (int)((int64_t)s->m * (j + 1) / s->shards);
    int mj = r1 - r0;
    td_net *net = s->rep[j];
    td_net_zero_grad(net);
    s->rloss[j] = 0;
    if (mj == 0)
      continue;
    const float *logits =
        td_net_forward(net, s->rws[j], s->xb + (size_t)r0 * in, mj);
    float loss = td_softmax_xent(logits, s->yb + r0, mj, s->C, s->rdl[j], NULL);
    /* the slice's mean-loss gradient, re-weighted to the batch mean */
    float w = (float)mj / (float)s->m;
    for (int i = 0; i < mj * s->C; i++)
      s->rdl[j][i] *= w;
    td_net_backward(net, s->rws[j], s->rdl[j], mj, NULL);
    s->rloss[j] = (double)loss * mj;
  }
}

/* One training step on the gathered batch; returns the summed loss. The
 * workspaces are in training mode (batch statistics, dropout) with masks
 * drawn from `seed`; the running statistics are updated from the batch. */
static double train_step(train_state *s, int m, uint64_t seed) {
  if (s->shards == 0) {
    td_net_ws_set_training(s->ws, 1, seed);
    const float *logits = td_net_forward(s->net, s->ws, s->xb, m);
    float loss = td_softmax_xent(logits, s->yb, m, s->C, s->dlogits, NULL);
    td_net_zero_grad(s->net);
    td_net_backward(s->net, s->ws, s->dlogits, m, NULL);
    td_net_update_state(s->net, &s->ws, 1);
    td_optim_step(s->opt, td_net_params(s->net), td_net_grads(s->net));
    return (double)loss * m;
  }
  s->m = m;
  for (int j = 0; j < s->shards; j++)
    td_net_ws_set_training(s->rws[j], 1, seed + (uint64_t)j);
  td_parallel_for(s->shards, 1, shard_cb, s);
  td_net_update_state(s->net, s->rws, s->shards);
  size_t np = td_net_n_params(s->net);
  float *g = td_net_grads(s->net);
  memcpy(g, td_net_grads(s->rep[0]), np * sizeof *g);
  double loss = s->rloss[0];
  for (int j = 1; j < s->shards; j++) {
    const float *gj = td_net_grads(s->rep[j]);
    for (size_t i = 0; i < np; i++)
      g[i] += gj[i];
    loss += s->rloss[j];
  }
  td_optim_step(s->opt, td_net_params(s->net), g);
  return loss;
}

/* One pass over the training set (or over the n samples idx lists) in a
 * seeded random order. Returns the mean in-flight loss. */
static double train_epoch(const td_train_opts *o, train_state *s,
                          const td__split *x, const int32_t *y, int64_t n,
                          const int32_t *idx, int in, td_rng *rng, int epoch) {
  for (int64_t i = 0; i < n; i++)
    s->perm[i] = idx ? idx[i] : (int32_t)i;
  td_rng_shuffle_i32(rng, s->perm, n);
  if (s->shards)
    td_blas_single_begin(); /* the shards are the parallelism */
  int64_t steps = (n + o->batch - 1) / o->batch;
  double loss_sum = 0, t0 = td_now(), last_report = t0;
  for (int64_t st = 0; st < steps; st++) {
    int64_t b0 = st * o->batch;
    int m = (int)(n - b0 < o->batch ? n - b0 : o->batch);
    for (int i = 0; i < m; i++) {
      int32_t k = s->perm[b0 + i];
      td__split_rows(x, k, 1, s->xb + (size_t)i * in);
      s->yb[i] = y[k];
    }
    /* augmentation and dropout draw from (seed, epoch, step): a resumed run
     * draws the same */
    uint64_t step_seed =
        o->seed ^ ((uint64_t)epoch << 40) ^ ((uint64_t)st << 8) ^ 0x61756721ULL;
    td__augment_batch(&s->aug, s->xb, m, s->c, s->h, s->w, step_seed,
                      s->aug_tmp);
    loss_sum += train_step(s, m, step_seed);
    double now = td_now();
    if (o->progress && (now - last_report > 0.1 || st + 1 == steps)) {
      last_report = now;
      td_train_progress p = {.epoch = epoch,
                             .epochs = o->epochs,
                             .step = st + 1,
                             .steps = steps,
                             .loss = loss_sum / (double)(b0 + m),
                             .samples_per_s = (double)(b0 + m) / (now - t0)};
      o->progress(&p, o->progress_ctx);
    }
  }
  if (s->shards)
    td_blas_single_end();
  return loss_sum / (double)n;
}

/* An out-of-distribution copy of the test inputs, to see how unseen kinds of
 * input move through training: "inverted" flips the intensities (a
 * Fashion-MNIST image turned into a negative). */
/* The out-of-distribution set of `kind` for the test inputs x[n, in]:
 * "inverted" (1 − x) or "gaussian" (every pixel drawn from a normal with
 * the test set's pixel mean and standard deviation, clipped to [0, 1] and,
 * for byte images, rounded to 1/255 so that what is stored is what the
 * net sees; drawn from the seed). */
static float *ood_inputs(const char *kind, const td_dataset *te,
                         const td__split *xs, int64_t n, int in,
                         uint64_t seed) {
  float *y = malloc((size_t)(n * in > 0 ? n * in : 1) * sizeof *y);
  if (y) /* the test inputs, then turned into the set in place */
    td__split_rows(xs, 0, n, y);
  if (!y || strcmp(kind, "gaussian")) {
    for (int64_t i = 0; y && i < n * in; i++)
      y[i] = 1.0f - y[i];
    return y;
  }
  double s = 0, ss = 0, cnt = (double)(n * in > 0 ? n * in : 1);
  for (int64_t i = 0; i < n * in; i++) {
    s += (double)y[i];
    ss += (double)y[i] * (double)y[i];
  }
  double mu = s / cnt, sd = sqrt(fmax(ss / cnt - mu * mu, 0));
  td_rng rng;
  td_rng_seed(&rng, seed ^ 0x6f6f64676175ULL);
  for (int64_t i = 0; i < n * in; i++) {
    double v = fmin(fmax(mu + sd * (double)td_rng_normal(&rng), 0), 1);
    y[i] =
        te->images.dtype == TD_F32 ? (float)v : (float)lrint(v * 255) / 255.0f;
  }
  return y;
}

static int write_ood_inputs(const char *run_dir, const td_dataset *te,
                            const float *xood, td_err *err) {
  int64_t shape[4] = {te->n, te->channels, te->height, te->width};
  td_array a;
  if (te->images.dtype == TD_F32) { /* float inputs: the float set */
    td_array_wrap(&a, TD_F32, 4, shape, (void *)(uintptr_t)xood);
    return td_run_write_array(run_dir, "ood_inputs", &a, err);
  }
  int64_t count = te->n * td_dataset_sample_size(te);
  uint8_t *px = malloc((size_t)(count > 0 ? count : 1));
  if (!px)
    return td_err_set(err, TD_ENOMEM, "out of memory");
  for (int64_t i = 0; i < count; i++) /* exact: multiples of 1/255 */
    px[i] = (uint8_t)lrintf(xood[i] * 255.0f);
  td_array_wrap(&a, TD_U8, 4, shape, px);
  int rc = td_run_write_array(run_dir, "ood_inputs", &a, err);
  free(px);
  return rc;
}

/* The learning rate of an epoch (1-based) under the failure scenarios. */
static double epoch_lr(const td_train_opts *o, int epoch) {
  double lr = o->lr * pow(o->lr_grow, epoch - 1);
  return epoch == o->lr_spike_epoch ? lr * o->lr_spike_factor : lr;
}

static int check_opts(const td_train_opts *o, td_err *err) {
  int widths[TD__MAX_HIDDEN], nh;
  td__augment aug;
  if (strcmp(o->model, "mlp") != 0 && strcmp(o->model, "cnn") != 0)
    return td_err_set(err, TD_EARG, "unknown model '%s' (available: mlp, cnn)",
                      o->model);
  if (o->hidden && strcmp(o->model, "mlp") != 0)
    return td_err_set(err, TD_EARG, "--hidden sets the widths of the mlp");
  if (o->batchnorm && strcmp(o->model, "cnn") != 0)
    return td_err_set(err, TD_EARG, "--batchnorm goes with --model cnn");
  int rc = td__model_parse_hidden(o->hidden, widths, &nh, err);
  if (!rc)
    rc = td__augment_parse(o->augment, &aug, err);
  if (rc)
    return rc;
  if (o->select && o->tasks)
    return td_err_set(err, TD_EARG,
                      "--select and --tasks both choose the samples to train "
                      "on: give one");
  if (o->exclude && (o->select || o->select_idx || o->tasks))
    return td_err_set(err, TD_EARG,
                      "--exclude chooses the samples to train on: not with "
                      "--select or --tasks");
  if (o->labels && o->noise > 0)
    return td_err_set(err, TD_EARG,
                      "--labels gives the training labels: not with --noise");
  if (o->exclude && (o->pool > 0 || o->class_fraction))
    return td_err_set(err, TD_EARG,
                      "--exclude chooses the samples to train on: not with "
                      "--pool or --class-fraction");
  if ((o->pool > 0 || o->class_fraction) &&
      (o->select || o->select_idx || o->tasks || o->from))
    return td_err_set(err, TD_EARG,
                      "--pool and --class-fraction choose the samples to "
                      "train on: not with --select, --tasks or --from");
  if (!(o->pool >= 0 && o->pool < 1))
    return td_err_set(err, TD_EARG, "--pool %g: expected a fraction in [0, 1)",
                      o->pool);
  if (o->record_subset < 0)
    return td_err_set(err, TD_EARG, "--record-subset: expected K >= 1");
  if ((o->resume || o->from) && !o->out)
    return td_err_set(err, TD_EARG, "--resume and --from need a run to write");
  if ((o->epochs < 1 && !o->tasks) || o->epochs < 0 || o->batch < 1 ||
      !(o->lr > 0))
    return td_err_set(err, TD_EARG,
                      "epochs, batch and learning rate must be positive");
  if (!o->tasks && (o->epochs_per_task || o->replay))
    return td_err_set(err, TD_EARG,
                      "--epochs-per-task and --replay need --tasks");
  if (o->tasks && (o->epochs_per_task < 1 || o->replay < 0))
    return td_err_set(err, TD_EARG,
                      "--tasks needs --epochs-per-task N (N >= 1)");
  if (o->lr_spike_epoch < 0 || !(o->lr_spike_factor > 0) || !(o->lr_grow > 0))
    return td_err_set(err, TD_EARG,
                      "the learning-rate spike epoch must be >= 0, its "
                      "factor and the growth factor positive");
  if (o->ood && strcmp(o->ood, "inverted") && strcmp(o->ood, "gaussian"))
    return td_err_set(err, TD_EARG,
                      "unknown out-of-distribution set '%s' (inverted or "
                      "gaussian)",
                      o->ood);
  if (strcmp(o->optimizer, "sgd") && strcmp(o->optimizer, "adam"))
    return td_err_set(err, TD_EARG, "unknown optimizer '%s' (sgd or adam)",
                      o->optimizer);
  return TD_OK;
}

/* Sets up class-incremental tasks over the training labels; derives the
 * number of epochs from them or checks the one given. */
static int setup_tasks(td_train_opts *o, td__continual *cl, td__recorder *rec,
                       const int32_t *labels, int64_t n, int C, td_err *err) {
  int rc = td__continual_init(cl, o->tasks, o->epochs_per_task, o->replay,
                              labels, n, C, o->seed, err);
  if (rc)
    return rc;
  int64_t want = (int64_t)cl->n_tasks * o->epochs_per_task;
  if (want > 1000000)
    return td_err_set(err, TD_EARG, "%d tasks x %d epochs is too many epochs",
                      cl->n_tasks, o->epochs_per_task);
  if (o->epochs && o->epochs != want)
    return td_err_set(err, TD_EARG,
                      "--epochs %d conflicts with --tasks: %d tasks x "
                      "--epochs-per-task %d = %lld epochs (leave --epochs "
                      "out)",
                      o->epochs, cl->n_tasks, o->epochs_per_task,
                      (long long)want);
  o->epochs = (int)want;
  return td__recorder_tasks(rec, cl, n, err);
}

/* Moves to the task of epoch `ep` when it changes; *idx and *n become the
 * samples this epoch trains on. */
static int enter_task(td__continual *cl, int ep, const int32_t **idx,
                      int64_t *n, td_err *err) {
  int t = td__continual_task_of_epoch(cl, ep);
  if (t != cl->task)
    td__continual_select(cl, t);
  if (cl->n_trained == 0)
    return td_err_set(err, TD_EVALUE,
                      "task %d has no training samples (none of its classes "
                      "occurs in the training set)",
                      t);
  *idx = cl->trained;
  *n = cl->n_trained;
  return TD_OK;
}

/* One split of the built-in dataset, cut to `limit`. A run continued from
 * src (--from, --resume) stored the inputs it trained on, the same bytes:
 * its <split>_inputs.npy is mapped instead of inflating the IDX file again
 * (*stored = 1). A stored array of another shape is decoded afresh. */
static int load_split(const td_train_opts *o, const char *src,
                      const char *split, int64_t limit, td_dataset *ds,
                      int *stored, td_err *err) {
  char path[TD_PATH_MAX];
  td_array a = {0};
  *stored = 0;
  if (src &&
      td_pathf(path, sizeof path, NULL, "%s/%s_inputs.npy", src, split) ==
          TD_OK &&
      td_npy_load(path, &a, NULL) == TD_OK) {
    td_err e2 = {0};
    int rc = td_dataset_load_with_images(o->dataset, o->data_dir, split, &a,
                                         limit, ds, &e2);
    td_array_close(&a);
    if (rc != TD_ESHAPE) {
      *stored = rc == TD_OK;
      if (rc)
        *err = e2;
      return rc;
    }
  }
  int rc = td_dataset_load(o->dataset, o->data_dir, split, ds, err);
  if (!rc && limit > 0)
    td_dataset_truncate(ds, limit);
  return rc;
}

/* The training and test sets the options name, cut to the limit; an empty
 * test set when a dataset directory has none. src: the run continued from,
 * whose stored inputs stand in for the dataset's (stored[split]). */
static int load_data(const td_train_opts *o, const char *src, td_dataset *tr,
                     td_dataset *te, int stored[2], td_err *err) {
  memset(te, 0, sizeof *te);
  int64_t te_limit = o->limit > 0 ? (o->limit / 6 > 0 ? o->limit / 6 : 1) : 0;
  stored[0] = stored[1] = 0;
  if (o->data)
    src = NULL;
  int rc = o->data ? td_dataset_load_dir(o->data, "train", tr, err)
                   : load_split(o, src, "train", o->limit, tr, &stored[0], err);
  if (rc)
    return rc;
  char ti[TD_PATH_MAX], tl[TD_PATH_MAX];
  if (o->data && (rc = td_pathf(ti, sizeof ti, err, "%s/test_inputs.npy",
                                o->data)) == TD_OK)
    rc = td_pathf(tl, sizeof tl, err, "%s/test_labels.npy", o->data);
  if (rc || (o->data && !td_path_exists(ti) && !td_path_exists(tl)))
    ; /* a dataset directory without a test set */
  else if ((rc = o->data ? td_dataset_load_dir(o->data, "test", te, err)
                         : load_split(o, src, "test", te_limit, te, &stored[1],
                                      err)) == TD_OK &&
           (te->channels != tr->channels || te->height != tr->height ||
            te->width != tr->width || te->n_classes != tr->n_classes))
    rc = td_err_set(err, TD_ESHAPE,
                    "%s/test_inputs.npy: samples of %d×%d×%d, but the "
                    "training samples are %d×%d×%d",
                    o->data ? o->data : o->dataset, te->channels, te->height,
                    te->width, tr->channels, tr->height, tr->width);
  if (rc) {
    td_dataset_close(tr);
    td_dataset_close(te);
    return rc;
  }
  if (o->limit > 0) { /* a no-op for the built-in dataset's splits */
    td_dataset_truncate(tr, o->limit);
    td_dataset_truncate(te, te_limit);
  }
  return TD_OK;
}

/* The net: built and initialised from the seed, or loaded from the
 * checkpoint a run continues from (checked against the data). */
static int make_net(const td_train_opts *o, const td__cont *c,
                    const td_dataset *tr, td_net **net, td_rng *rng,
                    td_err *err) {
  td_rng_seed(rng, o->seed);
  if (!c->model_dir[0]) {
    int rc = td__model_build(o, tr->channels, tr->height, tr->width,
                             tr->n_classes, net, err);
    if (!rc)
      td_net_init(*net, rng);
    return rc;
  }
  int rc = td_net_load(c->model_dir, net, err);
  if (rc)
    return rc;
  if (td_net_in_dim(*net) != td_dataset_sample_size(tr) ||
      td_net_out_dim(*net) != tr->n_classes || td_net_n_layers(*net) < 2)
    return td_err_set(err, TD_ESHAPE,
                      "%s: the checkpoint maps %d inputs to %d classes, the "
                      "data has %lld inputs and %d classes",
                      c->model_dir, td_net_in_dim(*net), td_net_out_dim(*net),
                      (long long)td_dataset_sample_size(tr), tr->n_classes);
  return TD_OK;
}

/* The optimizer of the options, with its state restored on --resume. */
static int make_optim(const td_train_opts *o, const td__cont *c, td_net *net,
                      td_rng *rng, td_optim **opt, td_err *err) {
  size_t np = td_net_n_params(net);
  *opt = !strcmp(o->optimizer, "sgd")
             ? td_optim_sgd(np, (float)o->lr, (float)o->momentum, 0.0f)
             : td_optim_adam(np, (float)o->lr, 0.9f, 0.999f, 1e-8f);
  if (!*opt)
    return td_err_set(err, TD_ENOMEM, "out of memory");
  if (!c->state_dir[0])
    return TD_OK;
  return td__state_load(c->state_dir, o->optimizer, rng, *opt, np, err);
}

/* Where an in-memory selection is kept: RUN/select.npy, absolute (run.json
 * names it for --resume, which may run from elsewhere). */
static int select_path(td_train_opts *o, char *buf, td_err *err) {
  char cwd[TD_PATH_MAX];
  if (o->out[0] != '/' && !getcwd(cwd, sizeof cwd))
    return td_err_set(err, TD_EIO, "cannot read the working directory");
  int rc =
      o->out[0] == '/'
          ? td_pathf(buf, TD_PATH_MAX, err, "%s/select.npy", o->out)
          : td_pathf(buf, TD_PATH_MAX, err, "%s/%s/select.npy", cwd, o->out);
  if (!rc)
    o->select = buf;
  return rc;
}

/* The samples of a run that chose them: RUN/pool.npy (a new run with a
 * pool) and RUN/select.npy (an in-memory selection, rewritten by each
 * --resume that brings one). */
static int write_samples(const td_train_opts *o, const int32_t *sel,
                         int64_t n_sel, const int32_t *pool, int64_t n_pool,
                         td_err *err) {
  td_array a;
  int rc = TD_OK;
  if (n_pool && !o->resume) {
    td_array_wrap(&a, TD_I32, 1, &n_pool, (void *)(uintptr_t)pool);
    rc = td_run_write_array(o->out, "pool", &a, err);
  }
  if (!rc && o->select_idx) {
    td_array_wrap(&a, TD_I32, 1, &n_sel, (void *)(uintptr_t)sel);
    rc = td_run_write_array(o->out, "select", &a, err);
  }
  return rc;
}

/* A child run starts with its parent's state as epoch 0, so that its own
 * views show what the fine-tuning changed: the parent's recording of that
 * epoch, linked, or a pass where it would differ (or with no_reuse). */
static int child_epoch0(const td_train_opts *o, const td__cont *c,
                        td__recorder *rec, train_state *s, const td_rng *rng) {
  char ep[TD_PATH_MAX];
  size_t n = strlen(c->model_dir); /* its epochs/NNNN/model */
  int linked = 0, rc = TD_OK;
  if (!o->no_reuse && n > 6 && n - 6 < sizeof ep) {
    memcpy(ep, c->model_dir, n - 6);
    ep[n - 6] = 0;
    rc = td__recorder_start_linked(rec, s->net, s->opt, rng, o->lr, c->run_dir,
                                   ep, &linked);
  }
  if (!rc && !linked)
    rc = td__recorder_start(rec, s->net, s->opt, rng, 0, 0.0, o->lr, NAN, 0);
  return rc;
}

/* The counts of a selection (td_train_opts.select_times, or on --resume
 * without a new selection the run's select_times.npy) and the list an
 * epoch then trains on: *ep NULL when every sample is trained on once. */
static int select_repeats(const td_train_opts *o, const int32_t *sel,
                          int64_t n_sel, int64_t n, int32_t **times,
                          int32_t **ep, int64_t *n_ep, td_err *err) {
  int rc = TD_OK;
  if (sel && o->select_idx && o->select_times)
    rc = td__select_times_align(o->select_idx, o->select_times, n_sel, sel, n,
                                times, err);
  else if (sel && o->resume && o->select && !o->select_idx)
    rc = td__select_times_load(o->out, n_sel, times, err);
  if (!rc && *times)
    rc = td__select_expand(sel, *times, n_sel, ep, n_ep, err);
  return rc;
}

static int train_body(const td_train_opts *o, td_train_result *res,
                      td_err *err) {
  memset(res, 0, sizeof *res);
  td_train_opts opts = *o; /* epochs may be derived from the tasks */
  td__cont cont = {0};
  int rc = o->resume ? td__resume_prepare(o, &opts, &cont, err)
           : o->from ? td__from_prepare(o, &opts, &cont, err)
                     : TD_OK;
  if (!rc)
    rc = check_opts(&opts, err);
  if (rc) {
    td__cont_free(&cont);
    return rc;
  }
  o = &opts;
  td__continual cl = {0};
  td_set_threads(o->threads);
  td_dataset tr, te;
  int stored[2]; /* the inputs are the source run's stored ones */
  const char *src = !o->no_reuse && cont.run_dir[0] ? cont.run_dir : NULL;
  rc = load_data(o, src, &tr, &te, stored, err);
  if (rc) {
    td__cont_free(&cont);
    return rc;
  }
  const int in = (int)td_dataset_sample_size(&tr), C = tr.n_classes;
  train_state s = {0};
  td__recorder rec = {0};
  td_rng rng;
  int32_t *noisy = malloc((size_t)tr.n * sizeof *noisy), *sel = NULL;
  int32_t *pool_idx = NULL, *truth_buf = NULL;
  int32_t *sel_times = NULL, *ep_sel = NULL; /* repeated samples */
  int64_t n_sel = 0, n_pool = 0, n_ep_sel = 0;
  char sel_path[TD_PATH_MAX];
  td__split xtr = split_of(&tr, noisy, NULL),
            xte = split_of(&te, te.labels, NULL);
  float *xood = NULL;
  int with_ood = o->ood && o->out;
  if ((rc = td__augment_parse(o->augment, &s.aug, err)) ||
      (rc = make_net(o, &cont, &tr, &s.net, &rng, err)) ||
      (rc = make_optim(o, &cont, s.net, &rng, &s.opt, err)) ||
      (o->select_idx && (rc = td__select_copy(o->select_idx, o->n_select_idx,
                                              tr.n, &sel, err))) ||
      (o->select && !o->select_idx &&
       (rc = td__select_load(o->select, tr.n, &sel, &n_sel, err))) ||
      (o->exclude &&
       (rc = td__exclude_load(o->exclude, tr.n, &sel, &n_sel, err))))
    goto done;
  if (o->select_idx)
    n_sel = o->n_select_idx;
  if ((rc = select_repeats(o, sel, n_sel, tr.n, &sel_times, &ep_sel, &n_ep_sel,
                           err)))
    goto done;
  if (o->exclude) { /* kept like an in-memory selection: RUN/select.npy */
    opts.select_idx = sel;
    opts.n_select_idx = n_sel;
  }
  s.ws = td_net_ws_new(s.net, o->batch);
  s.xb = malloc((size_t)o->batch * in * sizeof(float));
  s.dlogits = malloc((size_t)o->batch * C * sizeof(float));
  s.yb = malloc((size_t)o->batch * sizeof(int32_t));
  /* an epoch with repeated samples may train on more than tr.n */
  s.perm =
      malloc((size_t)(n_ep_sel > tr.n ? n_ep_sel : tr.n) * sizeof(int32_t));
  s.aug_tmp = malloc((size_t)in * sizeof(float));
  s.c = tr.channels;
  s.h = tr.height;
  s.w = tr.width;
  xood = with_ood ? ood_inputs(o->ood, &te, &xte, te.n, in, o->seed) : NULL;
  int64_t ns[3] = {tr.n, te.n, with_ood ? te.n : 0};
  int oom = !noisy || !s.ws || !s.xb || !s.dlogits || !s.yb || !s.perm ||
            !s.aug_tmp || (with_ood && !xood);
  if (!oom &&
      (rc = td__recorder_init(&rec, s.net, s.opt, o->optimizer, ns, C, err)))
    goto done;
  if (!oom)
    oom = train_state_shard(&s, td_threads(), o->batch, C) != TD_OK;
  if (oom) {
    rc = td_err_set(err, TD_ENOMEM, "out of memory preparing training");
    goto done;
  }
  int64_t flipped = 0;
  const int32_t *truth = NULL;
  if (o->labels) {
    rc = td__labels_setup(o, &cont, &tr, noisy, &truth, &truth_buf, &flipped,
                          err);
    if (rc)
      goto done;
  } else if (o->noise > 0) {
    /* asymmetric noise: Fashion-MNIST's look-alike pairs only on it */
    flipped = td_noise_inject(tr.labels, tr.n, C, o->noise_type,
                              o->data ? NULL : o->dataset, o->noise,
                              o->seed ^ 0x6e6f697365ULL, noisy, err);
    if (flipped < 0) {
      rc = (int)flipped;
      goto done;
    }
    truth = flipped > 0 ? tr.labels : NULL;
  } else {
    memcpy(noisy, tr.labels, (size_t)tr.n * sizeof *noisy);
  }
  res->n_flipped = flipped;
  if (o->tasks && (rc = setup_tasks(&opts, &cl, &rec, noisy, tr.n, C, err)))
    goto done;
  if ((o->pool > 0 || o->class_fraction) &&
      (rc = td__pool_split(noisy, tr.n, C, o->pool, o->class_fraction, o->seed,
                           &sel, &n_sel, &pool_idx, &n_pool, err)))
    goto done;
  if (o->select_idx && o->out && (rc = select_path(&opts, sel_path, err)))
    goto done;
  if (o->record_subset && o->out &&
      (rc = td__record_subset_prepare(o, tr.n, &rec.rec_idx, err)))
    goto done;
  rec.n_rec = rec.rec_idx ? o->record_subset : 0;
  rec.repr_f16 = o->repr_f16;
  if (o->resume && o->epochs <= cont.epoch) {
    rc = td_err_set(err, TD_EARG,
                    "%s has %d epochs already: nothing to continue", o->out,
                    cont.epoch);
    goto done;
  }
  if (o->out && !o->resume &&
      (rc = write_run_header(o, &tr, &te, noisy, truth, rec.cl, s.net, &cont,
                             rec.rec_idx, rec.n_rec, stored, err)))
    goto done;
  if (with_ood && !o->resume && (rc = write_ood_inputs(o->out, &te, xood, err)))
    goto done;
  if (o->out && (rc = write_samples(o, sel, n_sel, pool_idx, n_pool, err)))
    goto done;
  if (o->out && o->select_idx &&
      (rc = td__select_times_write(o->out, sel_times, n_sel, err)))
    goto done;
  /* A resumed run is being written again: followers wait for its end. */
  if (o->resume && (rc = td_run_mark_unfinished(o->out, err)))
    goto done;

  rec.train = xtr;
  rec.train.truth = truth;
  rec.test = xte;
  rec.ood = (td__split){xood, te.labels, NULL, with_ood ? te.n : 0, NULL, in};
  rec.run_dir = o->out;
  rec.save_model = o->save_model;
  rec.sel = sel;
  rec.n_sel = n_sel;

  double t_start = td_now();
  int first = o->resume ? cont.epoch + 1 : 1;
  if (o->from && (rc = child_epoch0(o, &cont, &rec, &s, &rng)) != TD_OK) {
    *err = rec.err;
    goto done;
  }
  for (int ep = first; ep <= o->epochs; ep++) {
    const int32_t *idx = ep_sel ? ep_sel : sel;
    int64_t n_ep = ep_sel ? n_ep_sel : sel ? n_sel : tr.n;
    if (rec.cl && (rc = enter_task(&cl, ep, &idx, &n_ep, err)))
      goto done;
    /* the recorder's job thread may evaluate beside training: its CPU
     * time is the recording's, not the training's */
    double t0 = td_now(), c0 = td__cpu_now() - td__recorder_bg_cpu(&rec);
    td_optim_set_lr(s.opt, (float)epoch_lr(o, ep));
    double inflight = train_epoch(o, &s, &xtr, noisy, n_ep, idx, in, &rng, ep);
    double secs = td_now() - t0;
    res->train_cpu_seconds += td__cpu_now() - td__recorder_bg_cpu(&rec) - c0;
    res->train_seconds += secs;
    res->epochs = ep - first + 1;
    res->last_epoch = ep;
    if (o->out && (!o->record_last_only || ep == o->epochs)) {
      if (o->before_record &&
          (rc = o->before_record(o->before_record_ctx, s.net, ep, err)))
        goto done;
      double w0 = td_now();
      rc = td__recorder_start(&rec, s.net, s.opt, &rng, ep, secs,
                              td_optim_lr(s.opt), inflight, ep == o->epochs);
      if (ep < o->epochs)
        res->record_blocked_seconds += td_now() - w0;
      if (rc != TD_OK) {
        *err = rec.err;
        goto done;
      }
    }
    if (o->progress) {
      /* Metrics of the previous recorded epoch are final now or soon; report
       * this epoch's timing and the in-flight loss. */
      td_train_progress p = {.epoch = ep,
                             .epochs = o->epochs,
                             .steps = 0,
                             .loss = inflight,
                             .samples_per_s = (double)n_ep / secs,
                             .epoch_done = 1,
                             .epoch_seconds = secs};
      o->progress(&p, o->progress_ctx);
    }
  }
  if (o->out) {
    rc = td__recorder_wait(&rec);
    if (rc != TD_OK) {
      *err = rec.err;
      goto done;
    }
    if ((rc = td_run_mark_finished(o->out, err)) != TD_OK)
      goto done; /* followers stop once every epoch is in */
    res->final_train_acc = rec.ev_train.acc;
    res->final_test_acc = rec.ev_test.acc;
    res->final_test_loss = rec.ev_test.mean_loss;
  } else {
    /* Without a run, still evaluate the final model once. */
    rec.train = xtr;
    rec.test = xte;
    if (td__record_eval(s.net, NULL, &rec.train, C, &rec.ev_train) ||
        td__record_eval(s.net, NULL, &rec.test, C, &rec.ev_test)) {
      rc = td_err_set(err, TD_ENOMEM, "out of memory evaluating");
      goto done;
    }
    res->final_train_acc = rec.ev_train.acc;
    res->final_test_acc = rec.ev_test.acc;
    res->final_test_loss = rec.ev_test.mean_loss;
  }
  res->total_seconds = td_now() - t_start;
  res->record_seconds = rec.busy_seconds;
  res->record_eval_seconds = rec.eval_seconds;
  res->record_eval_cpu_seconds = rec.eval_cpu_seconds;
done:
  td__recorder_free(&rec);
  td__continual_free(&cl);
  free(xood);
  train_state_free(&s);
  free(noisy);
  free(truth_buf);
  free(sel);
  free(sel_times);
  free(ep_sel);
  free(pool_idx);
  td_dataset_close(&tr);
  td_dataset_close(&te);
  td__cont_free(&cont);
  return rc;
}

/* --force keeps the old run until the new one has succeeded: on a full disk
 * (or any failure) the old run is moved back. A resumed run is never moved. */
int td_train(const td_train_opts *o, td_train_result *res, td_err *err) {
  char aside[TD_PATH_MAX] = "";
  int rc = TD_OK;
  int move = o->out && o->force && !o->resume;
  memset(res, 0, sizeof *res);
  if (move)
    rc = td_run_move_aside(o->out, aside, sizeof aside, err);
  if (!rc)
    rc = train_body(o, res, err);
  if (move)
    td_run_end_aside(o->out, aside, rc == TD_OK);
  return rc;
}
