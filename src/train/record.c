/* The recorder: evaluates the end-of-epoch snapshot of the net on every
 * sample and writes the epoch into the run on a thread of its own, so that
 * the disk writes overlap with the next epoch's training (record.h). */
#include "train/record.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "run/run_json.h"
#include "tardis/fsutil.h"
#include "tardis/parallel.h"
#include "tardis/run.h"
#include "train/model.h"
#include "train/resume.h"

#define RECORD_CHUNK 1024

double td__cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int td__record_eval(const td_net *net, td_net_infer *infer, const td__split *s,
                    int C, td__split_eval *ev) {
  if (s->n == 0)
    return TD_OK;
  int tap = td__model_repr_layer(net);
  int rc = infer
               ? td_net_infer_run(infer, s->x, s->n, ev->logits, tap, ev->repr)
               : td_net_predict(net, s->x, s->n, ev->logits, tap, ev->repr);
  if (rc != TD_OK)
    return rc;
  int64_t correct = 0, correct_truth = 0;
  double loss_sum = 0;
  for (int64_t b = 0; b < s->n; b += RECORD_CHUNK) {
    int m = (int)(s->n - b < RECORD_CHUNK ? s->n - b : RECORD_CHUNK);
    const float *logits = ev->logits + b * C;
    loss_sum += (double)td_softmax_xent(logits, s->labels + b, m, C, NULL,
                                        ev->loss + b) *
                m;
    for (int i = 0; i < m; i++) {
      const float *z = logits + (size_t)i * C;
      int best = 0;
      for (int c = 1; c < C; c++)
        if (z[c] > z[best])
          best = c;
      correct += best == s->labels[b + i];
      if (s->truth)
        correct_truth += best == s->truth[b + i];
    }
  }
  ev->mean_loss = loss_sum / (double)s->n;
  ev->acc = (double)correct / (double)s->n;
  ev->acc_truth = (double)correct_truth / (double)s->n;
  return TD_OK;
}

static int add_f32(td_epoch_writer *w, const char *name, float *data,
                   int64_t rows, int64_t cols, td_err *err) {
  td_array a;
  int64_t shape[2] = {rows, cols};
  td_array_wrap(&a, TD_F32, cols ? 2 : 1, shape, data);
  return td_epoch_add_array(w, name, &a, err);
}

/* Writes rows idx[0..n_idx) (idx NULL: all n) of data[n, cols] (cols 0: a
 * vector) as `name`, in float16 when f16. The ordinary case writes the
 * buffer as it is. */
static int add_rows(td_epoch_writer *w, const char *name, float *data,
                    int64_t n, int64_t cols, const int32_t *idx, int64_t n_idx,
                    int f16, td_err *err) {
  if (!idx && !f16)
    return add_f32(w, name, data, n, cols, err);
  int64_t rows = idx ? n_idx : n, width = cols ? cols : 1;
  size_t esz = f16 ? sizeof(uint16_t) : sizeof(float);
  void *buf = malloc((size_t)(rows * width) * esz);
  if (!buf)
    return td_err_set(err, TD_ENOMEM, "out of memory writing %s", name);
  for (int64_t i = 0; i < rows; i++) {
    const float *src = data + (idx ? idx[i] : i) * width;
    if (f16)
      for (int64_t j = 0; j < width; j++)
        ((uint16_t *)buf)[i * width + j] = td_f32_to_f16(src[j]);
    else
      memcpy((float *)buf + i * width, src, (size_t)width * sizeof(float));
  }
  td_array a;
  int64_t shape[2] = {rows, cols};
  td_array_wrap(&a, f16 ? TD_F16 : TD_F32, cols ? 2 : 1, shape, buf);
  int rc = td_epoch_add_array(w, name, &a, err);
  free(buf);
  return rc;
}

/* Per-task accuracies of one split as a JSON array (null: no samples). */
static json_t *task_acc_json(const td__recorder *r, const td__split *s,
                             const td__split_eval *ev) {
  double acc[TD__MAX_TASKS];
  td__continual_task_acc(r->cl, ev->logits, s->labels, s->n, acc);
  json_t *a = json_array();
  for (int t = 0; t < r->cl->n_tasks; t++)
    json_array_append_new(a, isnan(acc[t]) ? json_null() : json_real(acc[t]));
  return a;
}

/* The continual-learning part of an epoch: epoch.json's task and per-task
 * accuracies, and trained.npy. */
static int write_continual(td__recorder *r, td_epoch_writer *w, json_t *meta) {
  json_t *acc = json_object();
  json_object_set_new(acc, "train", task_acc_json(r, &r->train, &r->ev_train));
  if (r->test.n)
    json_object_set_new(acc, "test", task_acc_json(r, &r->test, &r->ev_test));
  json_object_set_new(meta, "task", json_integer(r->task));
  json_object_set_new(meta, "n_trained", json_integer(r->n_trained));
  json_object_set_new(meta, "task_acc", acc);
  td_array a;
  td_array_wrap(&a, TD_I32, 1, &r->n_trained, r->trained);
  return td_epoch_add_array(w, "trained.npy", &a, &r->err);
}

/* A --select run's trained.npy (the selection) and n_trained. */
static int write_selection(td__recorder *r, td_epoch_writer *w, json_t *meta) {
  json_object_set_new(meta, "n_trained", json_integer(r->n_sel));
  td_array a;
  td_array_wrap(&a, TD_I32, 1, &r->n_sel, (void *)(uintptr_t)r->sel);
  return td_epoch_add_array(w, "trained.npy", &a, &r->err);
}

/* The checkpoint (model/) and the trainer state (trainer/) of the epoch. */
static int write_checkpoint(td__recorder *r, td_epoch_writer *w) {
  char path[TD_PATH_MAX];
  int rc = td_pathf(path, sizeof path, &r->err, "%s/model", td_epoch_path(w));
  if (!rc)
    rc = td_net_save(r->snap, path, &r->err);
  if (!rc)
    rc = td__state_save(td_epoch_path(w), r->epoch, &r->rng, r->optimizer,
                        r->opt_steps, r->opt_snap, td_net_n_params(r->snap),
                        &r->err);
  return rc;
}

static int write_epoch(td__recorder *r) {
  td_err *err = &r->err;
  int C = r->n_classes, D = r->repr_dim;
  int rc;
  td_epoch_writer *w;
  if ((rc = td_epoch_begin(r->run_dir, r->epoch, &w, err)) != TD_OK)
    return rc;
  const td__split_eval *et = &r->ev_train, *ev = &r->ev_test;
  json_t *meta = json_pack("{s:i, s:f, s:f, s:f, s:f}", "epoch", r->epoch,
                           "train_loss", et->mean_loss, "train_acc", et->acc,
                           "seconds", r->seconds, "lr", r->lr);
  if (!isnan(r->inflight_loss)) /* epoch 0 of a child run trained nothing */
    json_object_set_new(meta, "train_loss_inflight",
                        json_real(r->inflight_loss));
  if (r->train.truth)
    json_object_set_new(meta, "train_acc_clean", json_real(et->acc_truth));
  if (r->test.n) {
    json_object_set_new(meta, "test_loss", json_real(ev->mean_loss));
    json_object_set_new(meta, "test_acc", json_real(ev->acc));
  }
  int L = td_net_n_layers(r->snap);
  const float *hw = td_net_weight(r->snap, L - 1),
              *hb = td_net_bias(r->snap, L - 1);
  int hdims[2] = {D, C};
  const int32_t *ri = r->rec_idx;
  int64_t nr = r->n_rec, ntr = r->train.n;
  int f16 = r->repr_f16;
  if ((rc =
           add_rows(w, "train_repr.npy", et->repr, ntr, D, ri, nr, f16, err)) ||
      (rc = add_rows(w, "train_logits.npy", et->logits, ntr, C, ri, nr, 0,
                     err)) ||
      (rc = add_rows(w, "train_loss.npy", et->loss, ntr, 0, ri, nr, 0, err)) ||
      (r->test.n &&
       ((rc = add_rows(w, "test_repr.npy", ev->repr, r->test.n, D, NULL, 0, f16,
                       err)) ||
        (rc = add_f32(w, "test_logits.npy", ev->logits, r->test.n, C, err)))) ||
      (r->ood.n && ((rc = add_rows(w, "ood_repr.npy", r->ev_ood.repr, r->ood.n,
                                   D, NULL, 0, f16, err)) ||
                    (rc = add_f32(w, "ood_logits.npy", r->ev_ood.logits,
                                  r->ood.n, C, err)))) ||
      (rc = td_head_write(w, 1, &hw, &hb, hdims, NULL, err)) ||
      (r->cl && (rc = write_continual(r, w, meta))) ||
      (!r->cl && r->sel && r->epoch > 0 &&
       (rc = write_selection(r, w, meta))) ||
      (rc = td__epoch_add_json(w, "epoch.json", meta, err))) {
    json_decref(meta);
    td_epoch_abort(w);
    return rc;
  }
  json_decref(meta);
  if (r->save_model && (rc = write_checkpoint(r, w)) != TD_OK) {
    td_epoch_abort(w);
    return rc;
  }
  return td_epoch_commit(w, err);
}

/* The three splits' evaluation, timed into the recorder. */
static int eval_all(td__recorder *r) {
  double t0 = td_now(), c0 = td__cpu_now();
  int rc =
      td__record_eval(r->snap, r->infer, &r->train, r->n_classes, &r->ev_train);
  if (rc == TD_OK)
    rc =
        td__record_eval(r->snap, r->infer, &r->test, r->n_classes, &r->ev_test);
  if (rc == TD_OK)
    rc = td__record_eval(r->snap, r->infer, &r->ood, r->n_classes, &r->ev_ood);
  r->eval_seconds += td_now() - t0;
  if (!r->job_overlaps) /* overlapped, the process CPU is the trainer's too */
    r->eval_cpu_seconds += td__cpu_now() - c0;
  if (rc != TD_OK)
    return td_err_set(&r->err, rc, "out of memory while recording");
  return TD_OK;
}

static void *recorder_main(void *arg) {
  td__recorder *r = arg;
  double t0 = td_now();
  r->rc = TD_OK;
  if (r->job_overlaps) {
    /* the forward pass on this thread alone, beside the next epoch: the
     * results do not depend on the thread count */
    td_set_thread_threads(1);
    r->rc = eval_all(r);
  }
  if (r->rc == TD_OK)
    r->rc = write_epoch(r);
  r->busy_seconds += td_now() - t0;
  return NULL;
}

/* Waits for the recorder's current job; returns its status. */
int td__recorder_wait(td__recorder *r) {
  if (!r->running)
    return r->rc;
  pthread_join(r->thread, NULL);
  r->running = 0;
  return r->rc;
}

int td__recorder_start(td__recorder *r, const td_net *net, td_optim *opt,
                       const td_rng *rng, int epoch, double seconds, double lr,
                       double inflight, int last) {
  int rc = td__recorder_wait(r);
  if (rc != TD_OK)
    return rc;
  /* Copy the parameters (and the optimizer's state): training goes on
   * mutating the live net. */
  size_t np = td_net_n_params(net);
  memcpy(td_net_params(r->snap), td_net_params_const(net), np * sizeof(float));
  if (td_net_n_state(net)) /* batchnorm's running statistics */
    memcpy(td_net_state(r->snap), td_net_state_const(net),
           td_net_n_state(net) * sizeof(float));
  for (int i = 0; i < 2; i++)
    if (r->opt_snap[i])
      memcpy(r->opt_snap[i], td_optim_state(opt, i), np * sizeof(float));
  r->opt_steps = td_optim_steps(opt);
  r->rng = *rng;
  r->epoch = epoch;
  r->seconds = seconds;
  r->lr = lr;
  r->inflight_loss = inflight;
  if (r->cl) {
    r->task = r->cl->task;
    r->n_trained = r->cl->n_trained;
    memcpy(r->trained, r->cl->trained,
           (size_t)r->n_trained * sizeof *r->trained);
  }
  /* The forward pass runs here on every core, through the inference path
   * (td_net_infer), and only the disk writes overlap with the next epoch —
   * unless the trainer leaves cores idle, where the writer thread evaluates
   * the snapshot itself while the next epoch trains. */
  r->job_overlaps = r->overlap && !last;
  if (!r->job_overlaps && (rc = eval_all(r)) != TD_OK)
    return rc;
  if (pthread_create(&r->thread, NULL, recorder_main, r) != 0)
    return recorder_main(r), r->rc; /* no thread: record inline */
  r->running = 1;
  return TD_OK;
}

/* Buffers for one split's recorded arrays; 0 or TD_ENOMEM. */
static int split_eval_alloc(td__split_eval *ev, int64_t n, int D, int C) {
  n = n > 0 ? n : 1; /* an empty test set still gets buffers */
  ev->repr = malloc((size_t)n * D * sizeof(float));
  ev->logits = malloc((size_t)n * C * sizeof(float));
  ev->loss = malloc((size_t)n * sizeof(float));
  return ev->repr && ev->logits && ev->loss ? TD_OK : TD_ENOMEM;
}

int td__recorder_init(td__recorder *r, const td_net *net, td_optim *opt,
                      const char *optimizer, const int64_t n[3], int C,
                      td_err *err) {
  size_t np = td_net_n_params(net);
  int D = td__model_repr_dim(net);
  td__split_eval *evs[3] = {&r->ev_train, &r->ev_test, &r->ev_ood};
  r->optimizer = optimizer;
  r->n_classes = C;
  r->repr_dim = D;
  /* TD_RECORD_PLAIN=1 records through td_net_predict instead (bench_train
   * compares the two in one invocation) */
  const char *plain = getenv("TD_RECORD_PLAIN");
  int use_infer = !plain || strcmp(plain, "1") != 0;
  /* Overlap where a core is left over: TD_RECORD_OVERLAP=0 or 1 forces the
   * choice (tests, benchmarks). */
  const char *ov = getenv("TD_RECORD_OVERLAP");
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  r->overlap = ov && (!strcmp(ov, "0") || !strcmp(ov, "1"))
                   ? ov[0] == '1'
                   : cpus > td_threads();
  int oom = !(r->snap = td_net_clone(net)) ||
            (use_infer && !(r->infer = td_net_infer_new(r->snap)));
  for (int k = 0; k < 3 && !oom; k++)
    oom = split_eval_alloc(evs[k], n[k], D, C) != TD_OK;
  for (int i = 0; i < 2 && !oom; i++)
    oom = td_optim_state(opt, i) &&
          !(r->opt_snap[i] = malloc((np ? np : 1) * sizeof(float)));
  if (oom)
    return td_err_set(err, TD_ENOMEM, "out of memory preparing the recorder");
  return TD_OK;
}

void td__recorder_free(td__recorder *r) {
  td__recorder_wait(r);
  td_net_infer_free(r->infer);
  td_net_free(r->snap);
  td__split_eval *evs[3] = {&r->ev_train, &r->ev_test, &r->ev_ood};
  for (int k = 0; k < 3; k++) {
    free(evs[k]->repr);
    free(evs[k]->logits);
    free(evs[k]->loss);
  }
  free(r->trained);
  free(r->rec_idx);
  r->rec_idx = NULL;
  free(r->opt_snap[0]);
  free(r->opt_snap[1]);
  r->infer = NULL;
  r->snap = NULL;
}
