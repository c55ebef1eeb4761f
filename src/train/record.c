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
#include "train/bigbuf.h"
#include "train/model.h"
#include "train/resume.h"

#define RECORD_CHUNK 1024

double td__cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Per-sample losses, mean loss and accuracies of split s from its logits. */
static void record_stats(const td__split *s, int C, td__split_eval *ev) {
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
}

/* o[i] = td__u8_unit(p[i]) for i < k, 16 at a time (a fixed count, which
 * gcc vectorises at -O2). */
static void u8_units(const uint8_t *restrict p, float *restrict o, int64_t k) {
  int64_t i = 0;
  for (; i + 16 <= k; i += 16)
    for (int j = 0; j < 16; j++)
      o[i + j] = td__u8_unit(p[i + j]);
  for (; i < k; i++)
    o[i] = td__u8_unit(p[i]);
}

void td__split_rows(const td__split *s, int64_t r0, int64_t m, float *out) {
  int64_t k = m * s->in;
  if (s->x) {
    memcpy(out, s->x + r0 * s->in, (size_t)k * sizeof *out);
    return;
  }
  u8_units(s->x8 + r0 * s->in, out, k);
}

int td__record_eval(const td_net *net, td_net_infer *infer, const td__split *s,
                    int C, td__split_eval *ev) {
  if (s->n == 0)
    return TD_OK;
  int tap = td__model_repr_layer(net);
  float *tmp = NULL; /* byte rows: this path converts the whole split */
  const float *x = s->x;
  if (!x) {
    if (!(tmp = td__big_floats(s->n * s->in)))
      return TD_ENOMEM;
    td__split_rows(s, 0, s->n, tmp);
    x = tmp;
  }
  int rc = infer ? td_net_infer_run(infer, x, s->n, ev->logits, tap, ev->repr)
                 : td_net_predict(net, x, s->n, ev->logits, tap, ev->repr);
  free(tmp);
  if (rc == TD_OK)
    record_stats(s, C, ev);
  return rc;
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
static int write_continual(td__recorder *r, const td__rec_epoch *e,
                           td_epoch_writer *w, json_t *meta) {
  json_t *acc = json_object();
  json_object_set_new(acc, "train", task_acc_json(r, &r->train, &r->ev_train));
  if (r->test.n)
    json_object_set_new(acc, "test", task_acc_json(r, &r->test, &r->ev_test));
  json_object_set_new(meta, "task", json_integer(e->task));
  json_object_set_new(meta, "n_trained", json_integer(e->n_trained));
  json_object_set_new(meta, "task_acc", acc);
  td_array a;
  int64_t n = e->n_trained;
  td_array_wrap(&a, TD_I32, 1, &n, e->trained);
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
static int write_checkpoint(td__recorder *r, const td_net *net,
                            const td__rec_epoch *e, td_epoch_writer *w) {
  char path[TD_PATH_MAX];
  int rc = td_pathf(path, sizeof path, &r->err, "%s/model", td_epoch_path(w));
  if (!rc)
    rc = td_net_save(net, path, &r->err);
  if (!rc)
    rc = td__state_save(td_epoch_path(w), e->epoch, &e->rng, r->optimizer,
                        e->opt_steps, (float *const *)e->opt_snap,
                        td_net_n_params(net), &r->err);
  return rc;
}

/* The evaluated arrays of the epoch: representations, logits, losses. */
static int write_arrays(td__recorder *r, td_epoch_writer *w) {
  td_err *err = &r->err;
  int C = r->n_classes, D = r->repr_dim;
  const td__split_eval *et = &r->ev_train, *ev = &r->ev_test;
  const int32_t *ri = r->rec_idx;
  int64_t nr = r->n_rec, ntr = r->train.n;
  int f16 = r->repr_f16;
  int rc;
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
                                  r->ood.n, C, err)))))
    return rc;
  return TD_OK;
}

/* The arrays a child run's epoch 0 takes from its parent's epoch. */
static const char *const linked_names[] = {
    "train_repr", "train_logits", "train_loss", "test_repr", "test_logits"};

/* The parent's recording of the epoch, linked (td__recorder_start_linked). */
static int link_arrays(td__recorder *r, td_epoch_writer *w) {
  char path[TD_PATH_MAX];
  int n = r->test.n ? 5 : 3, rc = TD_OK;
  for (int i = 0; i < n && !rc; i++)
    if (!(rc = td_pathf(path, sizeof path, &r->err, "%s/%s.npy", r->link_from,
                        linked_names[i])))
      rc = td_epoch_link_array(w, linked_names[i], path, &r->err);
  return rc;
}

/* Writes epoch e of net (evaluated into r's arrays) and commits it. */
static int write_epoch(td__recorder *r, td_net *net, const td__rec_epoch *e) {
  td_err *err = &r->err;
  int C = r->n_classes, D = r->repr_dim;
  int rc;
  td_epoch_writer *w;
  if ((rc = td_epoch_begin(r->run_dir, e->epoch, &w, err)) != TD_OK)
    return rc;
  const td__split_eval *et = &r->ev_train, *ev = &r->ev_test;
  json_t *meta = json_pack("{s:i, s:f, s:f, s:f, s:f}", "epoch", e->epoch,
                           "train_loss", et->mean_loss, "train_acc", et->acc,
                           "seconds", e->seconds, "lr", e->lr);
  if (!isnan(e->inflight_loss)) /* epoch 0 of a child run trained nothing */
    json_object_set_new(meta, "train_loss_inflight",
                        json_real(e->inflight_loss));
  if (r->train.truth)
    json_object_set_new(meta, "train_acc_clean", json_real(et->acc_truth));
  if (r->test.n) {
    json_object_set_new(meta, "test_loss", json_real(ev->mean_loss));
    json_object_set_new(meta, "test_acc", json_real(ev->acc));
  }
  int L = td_net_n_layers(net);
  const float *hw = td_net_weight(net, L - 1), *hb = td_net_bias(net, L - 1);
  int hdims[2] = {D, C};
  if ((rc = r->link_from ? link_arrays(r, w) : write_arrays(r, w)) ||
      (rc = td_head_write(w, 1, &hw, &hb, hdims, NULL, err)) ||
      (r->cl && (rc = write_continual(r, e, w, meta))) ||
      (!r->cl && r->sel && e->epoch > 0 &&
       (rc = write_selection(r, w, meta))) ||
      (rc = td__epoch_add_json(w, "epoch.json", meta, err))) {
    json_decref(meta);
    td_epoch_abort(w);
    return rc;
  }
  json_decref(meta);
  if (r->save_model && (rc = write_checkpoint(r, net, e, w)) != TD_OK) {
    td_epoch_abort(w);
    return rc;
  }
  return td_epoch_commit(w, err);
}

/* ---- the pass in chunks -------------------------------------------------- */

static double thread_cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Chunk k of the pass: TD_NET_INFER_CHUNK rows of one split (the same
 * chunks td_net_infer_run would make of each split), on buffer slot
 * `slot`. */
static void run_chunk(td__recorder *r, int64_t k, int slot) {
  const td__split *sp[3] = {&r->train, &r->test, &r->ood};
  td__split_eval *ev[3] = {&r->ev_train, &r->ev_test, &r->ev_ood};
  int s = 0;
  while (k >= r->chunks0[s + 1])
    s++;
  int64_t r0 = (k - r->chunks0[s]) * TD_NET_INFER_CHUNK;
  int64_t m =
      sp[s]->n - r0 < TD_NET_INFER_CHUNK ? sp[s]->n - r0 : TD_NET_INFER_CHUNK;
  int tap = td__model_repr_layer(r->snap);
  if (sp[s]->x) {
    td_net_infer_rows(r->infer, slot, sp[s]->x, r0, m, ev[s]->logits, tap,
                      ev[s]->repr);
    return;
  }
  /* byte rows: the chunk converted into the slot's buffer, run as rows
   * [0, m) of arrays that start at row r0 (the same chunk, the same bytes) */
  td__split_rows(sp[s], r0, m, r->xbuf[slot]);
  td_net_infer_rows(r->infer, slot, r->xbuf[slot], 0, m,
                    ev[s]->logits + r0 * r->n_classes, tap,
                    ev[s]->repr ? ev[s]->repr + r0 * r->repr_dim : NULL);
}

/* Runs chunks on `slot` until none is left or `most` are done; the
 * thread's CPU time goes to the slot. Returns the chunks run. */
static int64_t claim_chunks(td__recorder *r, int slot, int64_t most) {
  double c0 = thread_cpu_now();
  int64_t done = 0;
  while (done < most) {
    int64_t k = atomic_fetch_add(&r->next_chunk, 1);
    if (k >= r->n_chunks)
      break;
    run_chunk(r, k, slot);
    atomic_fetch_add(&r->chunks_done, 1);
    done++;
  }
  r->slot_cpu[slot] += thread_cpu_now() - c0;
  return done;
}

static void help_cb(void *ctx, int64_t begin, int64_t end, int tid) {
  td__recorder *r = ctx;
  for (int64_t i = begin; i < end; i++)
    claim_chunks(r, 1 + tid, INT64_MAX);
}

/* The trainer's threads take every chunk not yet claimed (slots 1..). */
static void eval_foreground(td__recorder *r) {
  double t0 = td_now();
  int nt = td_threads() < r->n_slots - 1 ? td_threads() : r->n_slots - 1;
  td_blas_single_begin();
  if (nt <= 1)
    claim_chunks(r, 1, INT64_MAX);
  else
    td_parallel_for(nt, 1, help_cb, r);
  td_blas_single_end();
  r->eval_seconds += td_now() - t0;
}

/* After every chunk has run: the losses and accuracies. */
static void eval_stats(td__recorder *r) {
  const td__split *sp[3] = {&r->train, &r->test, &r->ood};
  td__split_eval *ev[3] = {&r->ev_train, &r->ev_test, &r->ev_ood};
  for (int k = 0; k < 3; k++)
    if (sp[k]->n)
      record_stats(sp[k], r->n_classes, ev[k]);
}

/* After the pass, with no thread left on it: its CPU time. */
static void eval_cpu(td__recorder *r) {
  for (int i = 0; i < r->n_slots; i++)
    r->eval_cpu_seconds += r->slot_cpu[i];
}

static void *job_main(void *arg) {
  td__recorder *r = arg;
  double t0 = td_now();
  int rc = r->w_net ? write_epoch(r, r->w_net, r->w_ep) : TD_OK;
  pthread_mutex_lock(&r->mu);
  r->rc = rc;
  r->write_done = 1;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  if (rc == TD_OK && r->bg_eval) {
    td_set_thread_threads(1);
    td_blas_single_begin();
    double c0 = r->slot_cpu[0];
    claim_chunks(r, 0, r->bg_max);
    atomic_fetch_add(&r->bg_cpu_ns, (long long)(1e9 * (r->slot_cpu[0] - c0)));
    td_blas_single_end();
    /* every chunk done before the trainer came for them: the epoch is
     * written now rather than by the next job, an epoch later */
    if (atomic_load(&r->chunks_done) == r->n_chunks) {
      eval_stats(r);
      r->rc = write_epoch(r, r->snap, &r->cur);
      r->bg_wrote = 1;
    }
  }
  r->busy_seconds += td_now() - t0;
  return NULL;
}

double td__recorder_bg_cpu(td__recorder *r) {
  return 1e-9 * (double)atomic_load(&r->bg_cpu_ns);
}

/* Waits for the job thread's write, takes the chunks it has not, and joins
 * it: afterwards the current snapshot is evaluated (overlap mode: and not
 * yet written). */
static int finish_job(td__recorder *r) {
  if (!r->running)
    return r->rc;
  pthread_mutex_lock(&r->mu);
  while (!r->write_done)
    pthread_cond_wait(&r->cv, &r->mu);
  int rc = r->rc;
  pthread_mutex_unlock(&r->mu);
  if (rc == TD_OK && r->bg_eval)
    eval_foreground(r);
  double t0 = td_now();
  pthread_join(r->thread, NULL);
  r->running = 0;
  if (r->bg_eval) {
    r->eval_seconds += td_now() - t0; /* the job thread's last chunk */
    eval_cpu(r);
    if (r->rc == TD_OK && !r->bg_wrote) {
      eval_stats(r);
      r->unwritten = 1;
    }
  }
  return r->rc;
}

/* Starts the job thread: write w_net/w_ep (if set), then evaluate in the
 * background if bg_eval. Without a thread, the trainer does both. */
static int start_job(td__recorder *r) {
  r->write_done = 0;
  r->bg_wrote = 0;
  if (pthread_create(&r->thread, NULL, job_main, r) == 0) {
    r->running = 1;
    return TD_OK;
  }
  r->rc = r->w_net ? write_epoch(r, r->w_net, r->w_ep) : TD_OK;
  if (r->rc == TD_OK && r->bg_eval) {
    eval_foreground(r);
    eval_stats(r);
    eval_cpu(r);
    r->unwritten = 1;
  }
  return r->rc;
}

/* The live net's state into the snapshot and cur. */
static void take_snapshot(td__recorder *r, const td_net *net, td_optim *opt,
                          const td_rng *rng, int epoch, double seconds,
                          double lr, double inflight) {
  size_t np = td_net_n_params(net);
  memcpy(td_net_params(r->snap), td_net_params_const(net), np * sizeof(float));
  if (td_net_n_state(net)) /* batchnorm's running statistics */
    memcpy(td_net_state(r->snap), td_net_state_const(net),
           td_net_n_state(net) * sizeof(float));
  td__rec_epoch *e = &r->cur;
  for (int i = 0; i < 2; i++)
    if (e->opt_snap[i])
      memcpy(e->opt_snap[i], td_optim_state(opt, i), np * sizeof(float));
  e->opt_steps = td_optim_steps(opt);
  e->rng = *rng;
  e->epoch = epoch;
  e->seconds = seconds;
  e->lr = lr;
  e->inflight_loss = inflight;
  if (r->cl) {
    e->task = r->cl->task;
    e->n_trained = r->cl->n_trained;
    memcpy(e->trained, r->cl->trained,
           (size_t)e->n_trained * sizeof *e->trained);
  }
}

/* Moves the evaluated, unwritten snapshot to wsnap/wr, for the job thread
 * to write while the next one is evaluated. */
static void move_to_write(td__recorder *r) {
  memcpy(td_net_params(r->wsnap), td_net_params_const(r->snap),
         td_net_n_params(r->snap) * sizeof(float));
  if (td_net_n_state(r->snap))
    memcpy(td_net_state(r->wsnap), td_net_state_const(r->snap),
           td_net_n_state(r->snap) * sizeof(float));
  td__rec_epoch t = r->wr;
  r->wr = r->cur;
  r->cur = t;
  r->unwritten = 0;
}

/* Sets up a pass over the three splits with the snapshot's weights. */
static void free_byte_buffers(td__recorder *r) {
  for (int i = 0; r->xbuf && i < r->n_slots; i++)
    free(r->xbuf[i]);
  free(r->xbuf);
  r->xbuf = NULL;
}

/* Where a split is in bytes: a chunk's inputs as floats per slot. */
static int byte_buffers(td__recorder *r) {
  const td__split *sp[3] = {&r->train, &r->test, &r->ood};
  int bytes = 0;
  for (int k = 0; k < 3; k++)
    bytes |= !sp[k]->x && sp[k]->n;
  if (!bytes || r->xbuf)
    return TD_OK;
  size_t size = (size_t)TD_NET_INFER_CHUNK * td_net_in_dim(r->snap);
  int ok = (r->xbuf = calloc((size_t)r->n_slots, sizeof *r->xbuf)) != NULL;
  for (int i = 0; ok && i < r->n_slots; i++)
    ok = (r->xbuf[i] = malloc(size * sizeof(float))) != NULL;
  if (!ok)
    free_byte_buffers(r);
  return ok ? TD_OK : TD_ENOMEM;
}

static int prepare_pass(td__recorder *r) {
  const td__split *sp[3] = {&r->train, &r->test, &r->ood};
  r->chunks0[0] = 0;
  for (int k = 0; k < 3; k++)
    r->chunks0[k + 1] = r->chunks0[k] + (sp[k]->n + TD_NET_INFER_CHUNK - 1) /
                                            TD_NET_INFER_CHUNK;
  r->n_chunks = r->chunks0[3];
  atomic_store(&r->next_chunk, 0);
  atomic_store(&r->chunks_done, 0);
  for (int i = 0; i < r->n_slots; i++)
    r->slot_cpu[i] = 0;
  if (byte_buffers(r) != TD_OK ||
      td_net_infer_begin(r->infer, r->n_slots) != TD_OK)
    return td_err_set(&r->err, TD_ENOMEM, "out of memory while recording");
  return TD_OK;
}

/* The plain path (TD_RECORD_PLAIN=1): td_net_predict over each split. */
static int eval_plain(td__recorder *r) {
  double t0 = td_now(), c0 = td__cpu_now();
  int rc =
      td__record_eval(r->snap, NULL, &r->train, r->n_classes, &r->ev_train);
  if (rc == TD_OK)
    rc = td__record_eval(r->snap, NULL, &r->test, r->n_classes, &r->ev_test);
  if (rc == TD_OK)
    rc = td__record_eval(r->snap, NULL, &r->ood, r->n_classes, &r->ev_ood);
  r->eval_seconds += td_now() - t0;
  r->eval_cpu_seconds += td__cpu_now() - c0;
  if (rc != TD_OK)
    return td_err_set(&r->err, rc, "out of memory while recording");
  return TD_OK;
}

int td__recorder_wait(td__recorder *r) {
  int rc = finish_job(r);
  if (rc == TD_OK && r->unwritten) {
    r->unwritten = 0;
    rc = r->rc = write_epoch(r, r->snap, &r->cur);
  }
  return rc;
}

int td__recorder_start(td__recorder *r, const td_net *net, td_optim *opt,
                       const td_rng *rng, int epoch, double seconds, double lr,
                       double inflight, int last) {
  int rc = finish_job(r);
  if (rc != TD_OK)
    return rc;
  int bg = r->overlap && r->infer && !last;
  r->w_net = NULL;
  r->w_ep = NULL;
  if (r->unwritten) { /* the previous epoch, evaluated beside this one */
    move_to_write(r);
    if (bg) {
      r->w_net = r->wsnap;
      r->w_ep = &r->wr;
    } else if ((rc = r->rc = write_epoch(r, r->wsnap, &r->wr)) != TD_OK) {
      return rc;
    }
  }
  take_snapshot(r, net, opt, rng, epoch, seconds, lr, inflight);
  r->bg_eval = bg;
  if (!r->infer) {
    if ((rc = eval_plain(r)) != TD_OK)
      return rc;
  } else if ((rc = prepare_pass(r)) != TD_OK) {
    return rc;
  } else if (!bg) { /* at once, on every core; the thread only writes */
    eval_foreground(r);
    eval_stats(r);
    eval_cpu(r);
  }
  if (!bg) {
    r->w_net = r->snap;
    r->w_ep = &r->cur;
  }
  return start_job(r);
}

/* 1 when file `name` of dir holds the int32 [n] labels given. */
static int same_labels(const char *dir, const char *name, const int32_t *y,
                       int64_t n) {
  char path[TD_PATH_MAX];
  td_array a;
  if (td_pathf(path, sizeof path, NULL, "%s/%s.npy", dir, name) ||
      td_npy_load(path, &a, NULL))
    return 0;
  int same = a.dtype == TD_I32 && a.ndim == 1 && a.shape[0] == n &&
             !memcmp(a.data, y, (size_t)n * sizeof *y);
  td_array_close(&a);
  return same;
}

/* Maps the parent's linked_names[i] of epoch dir ep when it has the dtype
 * and shape this run would record; 0 otherwise. */
static int parent_array(const td__recorder *r, const char *ep, int i,
                        td_array *a) {
  char path[TD_PATH_MAX];
  int test = i >= 3, repr = i == 0 || i == 3, loss = i == 2;
  int64_t rows = test ? r->test.n : r->train.n;
  int64_t cols = repr ? r->repr_dim : loss ? 0 : r->n_classes;
  td_dtype want = repr && r->repr_f16 ? TD_F16 : TD_F32;
  if (td_pathf(path, sizeof path, NULL, "%s/%s.npy", ep, linked_names[i]) ||
      td_npy_load(path, a, NULL))
    return 0;
  if (a->dtype == want && a->ndim == (cols ? 2 : 1) && a->shape[0] == rows &&
      (!cols || a->shape[1] == cols))
    return 1;
  td_array_close(a);
  return 0;
}

/* The statistics of epoch.json from the parent's logits, as a pass would
 * compute them; 0 when an array does not fit. */
static int linked_stats(td__recorder *r, const char *ep) {
  const td__split *sp[2] = {&r->train, &r->test};
  td__split_eval *ev[2] = {&r->ev_train, &r->ev_test};
  int n = r->test.n ? 5 : 3, ok = 1;
  for (int i = 0; i < n && ok; i++) {
    td_array a;
    if (!(ok = parent_array(r, ep, i, &a)))
      break;
    if (i == 1 || i == 4) {
      td__split_eval *e = ev[i == 4];
      memcpy(e->logits, a.data, a.nbytes);
      record_stats(sp[i == 4], r->n_classes, e);
    }
    td_array_close(&a);
  }
  return ok;
}

int td__recorder_start_linked(td__recorder *r, const td_net *net, td_optim *opt,
                              const td_rng *rng, double lr, const char *parent,
                              const char *ep, int *linked) {
  *linked = 0;
  if (r->rec_idx || r->ood.n || r->cl || r->running || r->unwritten ||
      !same_labels(parent, "train_labels", r->train.labels, r->train.n) ||
      (r->test.n &&
       !same_labels(parent, "test_labels", r->test.labels, r->test.n)) ||
      !linked_stats(r, ep))
    return TD_OK;
  take_snapshot(r, net, opt, rng, 0, 0.0, lr, NAN);
  r->link_from = ep;
  int rc = r->rc = write_epoch(r, r->snap, &r->cur);
  r->link_from = NULL;
  *linked = rc == TD_OK;
  return rc;
}

/* Buffers for one split's recorded arrays; 0 or TD_ENOMEM. */
static int split_eval_alloc(td__split_eval *ev, int64_t n, int D, int C) {
  n = n > 0 ? n : 1; /* an empty test set still gets buffers */
  ev->repr = td__big_floats(n * D);
  ev->logits = td__big_floats(n * C);
  ev->loss = malloc((size_t)n * sizeof(float));
  return ev->repr && ev->logits && ev->loss ? TD_OK : TD_ENOMEM;
}

/* Overlap where the trainer leaves a core idle: the job thread runs at the
 * usual priority (at SCHED_IDLE beside a trainer on every core it could be
 * starved by other processes while it holds a chunk the trainer must wait
 * for: measured, 13.5 s of waiting per epoch at load 24). TD_RECORD_OVERLAP
 * =0|1 forces the choice, and TD_RECORD_BG_CHUNKS=K (tests: the job thread
 * takes at most K chunks, the trainer the rest). */
static void record_env(td__recorder *r) {
  const char *ov = getenv("TD_RECORD_OVERLAP");
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  r->overlap = ov && (!strcmp(ov, "0") || !strcmp(ov, "1"))
                   ? ov[0] == '1'
                   : cpus > td_threads();
  const char *most = getenv("TD_RECORD_BG_CHUNKS");
  r->bg_max = most && *most ? strtoll(most, NULL, 10) : INT64_MAX;
  if (r->bg_max < 0)
    r->bg_max = INT64_MAX;
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
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->cv, NULL);
  r->ready = 1;
  atomic_init(&r->next_chunk, 0);
  atomic_init(&r->chunks_done, 0);
  atomic_init(&r->bg_cpu_ns, 0);
  /* TD_RECORD_PLAIN=1 records through td_net_predict instead (bench_train
   * compares the two in one invocation), in the foreground */
  const char *plain = getenv("TD_RECORD_PLAIN");
  int use_infer = !plain || strcmp(plain, "1") != 0;
  record_env(r);
  r->n_slots = 1 + td_threads();
  int oom = !(r->snap = td_net_clone(net)) || !(r->wsnap = td_net_clone(net)) ||
            !(r->slot_cpu = calloc((size_t)r->n_slots, sizeof(double))) ||
            (use_infer && !(r->infer = td_net_infer_new(r->snap)));
  for (int k = 0; k < 3 && !oom; k++)
    oom = split_eval_alloc(evs[k], n[k], D, C) != TD_OK;
  for (int i = 0; i < 2 && !oom; i++)
    oom = td_optim_state(opt, i) &&
          (!(r->cur.opt_snap[i] = malloc((np ? np : 1) * sizeof(float))) ||
           !(r->wr.opt_snap[i] = malloc((np ? np : 1) * sizeof(float))));
  if (oom)
    return td_err_set(err, TD_ENOMEM, "out of memory preparing the recorder");
  return TD_OK;
}

int td__recorder_tasks(td__recorder *r, const td__continual *cl, int64_t n,
                       td_err *err) {
  r->cl = cl;
  r->cur.trained = malloc((size_t)(n > 0 ? n : 1) * sizeof *r->cur.trained);
  r->wr.trained = malloc((size_t)(n > 0 ? n : 1) * sizeof *r->wr.trained);
  if (!r->cur.trained || !r->wr.trained)
    return td_err_set(err, TD_ENOMEM, "out of memory preparing the tasks");
  return TD_OK;
}

static void rec_epoch_free(td__rec_epoch *e) {
  free(e->trained);
  free(e->opt_snap[0]);
  free(e->opt_snap[1]);
  memset(e, 0, sizeof *e);
}

void td__recorder_free(td__recorder *r) {
  if (r->ready) {
    (void)td__recorder_wait(r);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    r->ready = 0;
  }
  td_net_infer_free(r->infer);
  td_net_free(r->snap);
  td_net_free(r->wsnap);
  td__split_eval *evs[3] = {&r->ev_train, &r->ev_test, &r->ev_ood};
  for (int k = 0; k < 3; k++) {
    free(evs[k]->repr);
    free(evs[k]->logits);
    free(evs[k]->loss);
  }
  rec_epoch_free(&r->cur);
  rec_epoch_free(&r->wr);
  free(r->rec_idx);
  r->rec_idx = NULL;
  free_byte_buffers(r);
  free(r->slot_cpu);
  r->slot_cpu = NULL;
  r->infer = NULL;
  r->snap = r->wsnap = NULL;
}
