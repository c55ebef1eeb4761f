/* td_repair: MODE's loop (DESIGN §3.10 (5)). Diagnose the model, choose pool
 * samples for its buggy labels, fine-tune on the trained-on samples plus
 * the chosen ones (a child run of the buggy one, continued by --resume each
 * round), diagnose again; until no label is buggy or the budget is spent. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/json_file.h"
#include "repair/guard.h"
#include "repair/repair_internal.h"
#include "repair/select.h"
#include "tardis/array.h"
#include "tardis/fsutil.h"
#include "tardis/parallel.h"
#include "tardis/train.h"

void td_repair_opts_default(td_repair_opts *o) {
  memset(o, 0, sizeof *o);
  o->epoch = -1;
  o->budget = 2000;
  /* the recipe measured best (docs/repair.md, "Fine-tuning recipe"): one
   * round of four passes at twice the parent's rate, halved after each */
  o->rounds = 1;
  o->epochs_per_round = 4;
  o->other_share = 0.2;
  o->lr_decay = 0.5;
  o->lr_scale = 2;
  o->pick_repeat = 1;
  o->strategy = TD_SELECT_MODE;
  o->seed = 1;
  o->max_label_loss = -1; /* the guard is off */
  td_diagnose_opts_default(&o->diag);
}

static double cpu_now(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return (double)u.ru_utime.tv_sec + 1e-6 * (double)u.ru_utime.tv_usec +
         (double)u.ru_stime.tv_sec + 1e-6 * (double)u.ru_stime.tv_usec;
}

void td_repair_result_free(td_repair_result *r) {
  for (int i = 0; r->rounds && i < r->n_rounds; i++) {
    free(r->rounds[i].per_label);
    free(r->rounds[i].selected);
    free(r->rounds[i].acc_before);
    free(r->rounds[i].acc_after);
    td__guard_round_free(&r->rounds[i].guard);
  }
  free(r->rounds);
  free(r->acc_before);
  free(r->acc_after);
  memset(r, 0, sizeof *r);
}

/* The state of one repair. */
typedef struct rep {
  const td_repair_opts *o;
  td_run *parent;
  int epoch; /* of the parent */
  int C;
  int64_t n_train;
  const int32_t *y;
  int32_t *pool, *avail; /* the pool; its samples not chosen yet */
  int64_t n_pool, n_avail;
  int64_t n_reserved; /* the guard's held-out samples (never in avail) */
  int32_t *sel;       /* trained-on samples of the parent + every pick so far */
  int64_t n_sel, n_parent; /* of which the first n_parent: the parent's */
  int32_t *fit;    /* a round's fine-tuning set: replay sample + picks */
  int32_t *times;  /* how many times each of fit is trained on; NULL: once */
  json_t *root;    /* the parent's run.json (its training options) */
  td_train_opts t; /* the fine-tuning options */
  char from[TD_PATH_MAX + 16];
  td_diagnose_opts diag;  /* after the first diagnosis: its layer */
  td_rng rng, replay_rng; /* picks; the replay sample (its own stream, so
                             that the picks do not depend on --replay) */
  /* the guard (o->max_label_loss >= 0): the parent's predictions and
   * inputs, the held-out samples reserved before any selection, what the
   * hook did */
  int32_t *parent_pred, *held;
  td_array x_in;
  td__guard guard;
  td_repair_guard gr;
} rep;

static int load_i32(const td_run *run, int epoch, const char *name, int32_t **v,
                    int64_t *n, td_err *err) {
  td_array a;
  int rc = td_run_load(run, epoch, name, &a, err);
  if (rc)
    return rc;
  if (a.dtype != TD_I32 || a.ndim != 1) {
    td_array_close(&a);
    return td_err_set(err, TD_EFORMAT, "%s/%s.npy: expected int32 [K]",
                      td_run_dir(run), name);
  }
  *n = a.shape[0];
  *v = malloc((size_t)(*n ? *n : 1) * sizeof **v);
  if (*v)
    memcpy(*v, a.data, (size_t)*n * sizeof **v);
  td_array_close(&a);
  return *v ? TD_OK : td_err_set(err, TD_ENOMEM, "out of memory");
}

/* With the guard: its held-out samples, reserved from the pool before any
 * selection, so that no strategy picks them and nothing trains on them. */
static int reserve(rep *r, td_err *err) {
  if (r->o->max_label_loss < 0)
    return TD_OK;
  r->held = malloc((size_t)(r->n_pool ? r->n_pool : 1) * sizeof *r->held);
  r->n_reserved = r->held ? td__guard_reserve(r->pool, r->n_pool, r->y, r->C,
                                              r->o->seed, r->held)
                          : -1;
  return r->n_reserved < 0 ? td_err_set(err, TD_ENOMEM, "out of memory")
                           : TD_OK;
}

/* The pool samples picked so far. */
static int64_t n_picked(const rep *r) {
  return r->n_pool - r->n_reserved - r->n_avail;
}

/* The parent's epoch, checkpoint, pool, trained-on samples and options;
 * the refusals of docs/repair.md. */
static int open_parent(rep *r, td_err *err) {
  const td_repair_opts *o = r->o;
  int rc = td_run_open(o->run, &r->parent, err);
  if (!rc)
    rc = td_run_require_all_samples(r->parent, "tardis repair", err);
  if (rc)
    return rc;
  int n = td_run_n_epochs(r->parent);
  if (n == 0)
    return td_err_set(err, TD_ENOENT, "%s: no epoch recorded", o->run);
  r->epoch = o->epoch >= 0 ? o->epoch : td_run_epoch_number(r->parent, n - 1);
  if (td_run_epoch_index(r->parent, r->epoch) < 0)
    return td_err_set(err, TD_ERANGE, "%s has no epoch %d", o->run, r->epoch);
  const td_run_meta *m = td_run_get_meta(r->parent);
  r->C = m->n_classes;
  r->n_train = m->n_train;
  r->y = td_run_train_labels(r->parent);
  if (!o->select_only && !td_run_has(r->parent, r->epoch, "model"))
    return td_err_set(err, TD_ENOENT,
                      "%s: epoch %d has no checkpoint (model/): repair "
                      "fine-tunes a model trained by tardis train; a run "
                      "recorded from PyTorch can be diagnosed, or give "
                      "--select-only for the pool samples to train on",
                      o->run, r->epoch);
  if (!td_run_has(r->parent, -1, "pool"))
    return td_err_set(err, TD_ENOENT,
                      "%s has no pool (pool.npy) to draw repair inputs "
                      "from: train it with tardis train --pool F",
                      o->run);
  if ((rc = load_i32(r->parent, -1, "pool", &r->pool, &r->n_pool, err)) ||
      (rc = reserve(r, err)))
    return rc;
  if (o->budget > r->n_pool - r->n_reserved)
    return r->n_reserved
               ? td_err_set(err, TD_EARG,
                            "--budget %lld is larger than the pool less the "
                            "held-out samples --max-label-loss reserves "
                            "(%lld - %lld = %lld samples)",
                            (long long)o->budget, (long long)r->n_pool,
                            (long long)r->n_reserved,
                            (long long)(r->n_pool - r->n_reserved))
               : td_err_set(err, TD_EARG,
                            "--budget %lld is larger than the pool (%lld "
                            "samples)",
                            (long long)o->budget, (long long)r->n_pool);
  if (td_run_has(r->parent, r->epoch, "trained"))
    rc = load_i32(r->parent, r->epoch, "trained", &r->sel, &r->n_sel, err);
  else if (!o->select_only)
    rc = td_err_set(err, TD_ENOENT,
                    "%s: epoch %d does not record the samples it trained "
                    "on (trained.npy)",
                    o->run, r->epoch);
  if (rc)
    return rc;
  r->n_parent = r->n_sel;
  r->avail = malloc((size_t)r->n_pool * sizeof *r->avail);
  r->fit = malloc((size_t)(r->n_sel + o->budget) * sizeof *r->fit);
  if (o->pick_repeat > 1 || o->balance)
    r->times = malloc((size_t)(r->n_sel + o->budget) * sizeof *r->times);
  if ((o->pick_repeat > 1 || o->balance) && !r->times)
    return td_err_set(err, TD_ENOMEM, "out of memory");
  int32_t *grow =
      realloc(r->sel, (size_t)(r->n_sel + o->budget) * sizeof *grow);
  if (grow)
    r->sel = grow;
  if (!r->avail || !r->fit || !grow)
    return td_err_set(err, TD_ENOMEM, "out of memory");
  r->n_avail = 0; /* the pool less the reserved (both in pool order) */
  for (int64_t i = 0, h = 0; i < r->n_pool; i++)
    if (h < r->n_reserved && r->held[h] == r->pool[i])
      h++;
    else
      r->avail[r->n_avail++] = r->pool[i];
  return TD_OK;
}

/* The fine-tuning options: the parent's optimiser, batch and rate (or
 * o->lr), on the trained-on samples plus the picks. */
static int train_opts(rep *r, td_err *err) {
  char path[TD_PATH_MAX];
  int rc = td_pathf(path, sizeof path, err, "%s/run.json", r->o->run);
  if (rc)
    return rc;
  json_error_t je;
  r->root = td__json_load_file(path, 0, &je);
  json_t *t = r->root ? json_object_get(r->root, "train") : NULL;
  if (!t)
    return td_err_set(err, TD_EFORMAT,
                      "%s: no \"train\" options: repair needs a run "
                      "written by tardis train",
                      path);
  td_train_opts_default(&r->t);
  const char *opt = json_string_value(json_object_get(t, "optimizer"));
  if (opt)
    r->t.optimizer = opt;
  json_t *v;
  if ((v = json_object_get(t, "lr")) && json_is_number(v))
    r->t.lr = json_number_value(v);
  if ((v = json_object_get(t, "momentum")) && json_is_number(v))
    r->t.momentum = json_number_value(v);
  if ((v = json_object_get(t, "batch")) && json_is_integer(v))
    r->t.batch = (int)json_integer_value(v);
  r->t.lr = r->o->lr > 0 ? r->o->lr : r->t.lr * r->o->lr_scale;
  r->t.lr_grow = r->o->lr_decay;
  snprintf(r->from, sizeof r->from, "%s:%d", r->o->run, r->epoch);
  r->t.threads = r->o->threads;
  r->t.seed = r->o->seed;
  /* each round's end is diagnosed; the epochs between are not recorded */
  r->t.record_last_only = 1;
  r->t.force = r->o->force;
  r->t.no_reuse = r->o->no_reuse;
  return TD_OK;
}

/* The round's fine-tuning set into r->fit: every pick so far plus
 * o->replay of the parent's trained-on samples drawn at random (partial
 * Fisher-Yates over a copy; all of them when o->replay is 0 or larger). */
static int64_t fit_set(rep *r) {
  int64_t np = r->n_parent, m = r->o->replay;
  memcpy(r->fit, r->sel, (size_t)r->n_sel * sizeof *r->fit);
  if (m <= 0 || m >= np)
    return r->n_sel;
  for (int64_t i = 0; i < m; i++) {
    int64_t j = i + (int64_t)td_rng_below(&r->replay_rng, (uint64_t)(np - i));
    int32_t v = r->fit[i];
    r->fit[i] = r->fit[j];
    r->fit[j] = v;
  }
  memmove(r->fit + m, r->sel + np, (size_t)(r->n_sel - np) * sizeof *r->fit);
  return m + r->n_sel - np;
}

/* How many times each of the round's n fine-tuning samples (r->fit: the
 * replayed ones, then the picks from index n_replayed) is trained on per
 * epoch: the picks o->pick_repeat times; with o->balance each label's
 * samples further round(largest label's total / its own) times. */
static int fit_times(rep *r, int64_t n, int64_t n_replayed) {
  if (!r->times)
    return TD_OK;
  for (int64_t i = 0; i < n; i++)
    r->times[i] = i < n_replayed ? 1 : r->o->pick_repeat;
  if (!r->o->balance)
    return TD_OK;
  int64_t *tot = calloc((size_t)r->C, sizeof *tot), most = 0;
  if (!tot)
    return TD_ENOMEM;
  for (int64_t i = 0; i < n; i++)
    tot[r->y[r->fit[i]]] += r->times[i];
  for (int l = 0; l < r->C; l++)
    most = tot[l] > most ? tot[l] : most;
  for (int64_t i = 0; i < n; i++) {
    int64_t t = tot[r->y[r->fit[i]]];
    int64_t f = (most + t / 2) / t;
    int64_t c = r->times[i] * (f > 1 ? f : 1);
    r->times[i] = (int32_t)(c < 1000 ? c : 1000);
  }
  free(tot);
  return TD_OK;
}

/* Fine-tunes round `round` (1-based): the first starts the child run from
 * the parent's epoch, the next ones resume it with the grown selection. */
static int fine_tune(rep *r, int round, td_err *err) {
  td_train_opts t = r->t;
  t.select_idx = r->fit;
  t.n_select_idx = fit_set(r);
  t.select_times = r->times;
  if (fit_times(r, t.n_select_idx, t.n_select_idx - (r->n_sel - r->n_parent)))
    return td_err_set(err, TD_ENOMEM, "out of memory");
  t.epochs = round * r->o->epochs_per_round;
  if (r->o->max_label_loss >= 0) {
    t.before_record = td__guard_hook;
    t.before_record_ctx = &r->guard;
  }
  if (round == 1) {
    t.from = r->from;
    t.out = r->o->out;
  } else {
    t.resume = r->o->out;
    t.out = r->o->out;
    t.force = 0;
  }
  td_train_result res;
  return td_train(&t, &res, err);
}

/* The guard's inputs, once: the parent's checkpoint must end in a dense
 * layer (refused before anything is trained), its predictions on every
 * training sample (the recorded logits of the repaired epoch: a repair
 * needs a run that records every sample) and its inputs. */
static int guard_setup(rep *r, const td__diag_data *d, td_err *err) {
  if (!d->net)
    return td_err_set(err, TD_ENOENT,
                      "%s: --max-label-loss needs the run's checkpoint and "
                      "inputs (train_inputs.npy)",
                      r->o->run);
  int rc = td__guard_check_net(d->net, err);
  if (rc)
    return rc;
  r->parent_pred = malloc((size_t)(r->n_train ? r->n_train : 1) * 4);
  if (!r->parent_pred)
    return td_err_set(err, TD_ENOMEM, "out of memory");
  memcpy(r->parent_pred, d->pred_train, (size_t)r->n_train * 4);
  if ((rc = td_run_load(r->parent, -1, "train_inputs", &r->x_in, err)))
    return rc;
  r->guard = (td__guard){.D = r->o->max_label_loss,
                         .C = r->C,
                         .x = &r->x_in,
                         .y = r->y,
                         .parent_pred = r->parent_pred,
                         .held = r->held,
                         .n_held = r->n_reserved,
                         .out = &r->gr};
  return TD_OK;
}

/* What the hook recorded, moved into the round. */
static void guard_take(rep *r, td_repair_round *rd) {
  rd->guarded = 1;
  rd->guard = r->gr;
  memset(&r->gr, 0, sizeof r->gr);
}

static int per_label_acc(const td_diagnosis *g, double **out) {
  *out = malloc((size_t)g->n_classes * sizeof **out);
  if (!*out)
    return TD_ENOMEM;
  for (int l = 0; l < g->n_classes; l++)
    (*out)[l] = g->labels[l].test_acc;
  return TD_OK;
}

static int n_buggy(const td_diagnosis *g) {
  int n = 0;
  for (int l = 0; l < g->n_classes; l++)
    n += g->labels[l].verdict != TD_VERDICT_HEALTHY;
  return n;
}

/* Picks this round's samples from the current model (run, its diagnosis g
 * and data d) and moves them from the available pool to the selection. */
static int choose(rep *r, const td_diagnosis *g, const td__diag_data *d,
                  int64_t k, td_repair_round *rd, td_err *err) {
  td__select_ctx c = {g,
                      d,
                      r->y,
                      r->avail,
                      r->n_avail,
                      k,
                      r->o->other_share,
                      r->o->diag.theta,
                      r->o->diag.gamma,
                      r->o->strategy,
                      &r->rng};
  rd->selected = malloc((size_t)(k ? k : 1) * sizeof *rd->selected);
  rd->per_label = calloc((size_t)r->C, sizeof *rd->per_label);
  if (!rd->selected || !rd->per_label)
    return td_err_set(err, TD_ENOMEM, "out of memory");
  int rc = td__select(&c, rd->selected, &rd->n_selected, rd->per_label, err);
  if (rc)
    return rc;
  char *taken = calloc((size_t)r->n_train, 1);
  if (!taken)
    return td_err_set(err, TD_ENOMEM, "out of memory");
  for (int64_t i = 0; i < rd->n_selected; i++) {
    taken[rd->selected[i]] = 1;
    r->sel[r->n_sel++] = rd->selected[i];
  }
  int64_t m = 0;
  for (int64_t i = 0; i < r->n_avail; i++)
    if (!taken[r->avail[i]])
      r->avail[m++] = r->avail[i];
  r->n_avail = m;
  free(taken);
  return TD_OK;
}

/* Diagnoses the last epoch of dir (or the parent's epoch); metrics_only
 * after the last round, which chooses nothing. */
static int diagnose_at(const char *dir, int epoch, const td_diagnose_opts *o,
                       int metrics_only, td_diagnosis **g, td__diag_data *d,
                       td_run **run, td_err *err) {
  td_diagnose_opts dop = *o;
  dop.epoch = epoch;
  int rc = td_run_open(dir, run, err);
  if (rc)
    return rc;
  return metrics_only ? td__diagnose_metrics(*run, &dop, g, d, err)
                      : td__diagnose_run(*run, &dop, g, d, err);
}

static int one_round(rep *r, int round, td_diagnosis **g, td__diag_data *d,
                     td_run **cur, td_repair_round *rd, td_err *err) {
  const td_repair_opts *o = r->o;
  double t0 = td_now(), c0 = cpu_now();
  int64_t per = (o->budget + o->rounds - 1) / o->rounds;
  int64_t spent = n_picked(r);
  int64_t k = per < o->budget - spent ? per : o->budget - spent;
  rd->epoch_before = round == 1 ? 0 : (round - 1) * o->epochs_per_round;
  rd->test_before = (*g)->test_acc;
  rd->n_buggy_before = n_buggy(*g);
  int rc = per_label_acc(*g, &rd->acc_before) ? TD_ENOMEM : TD_OK;
  if (!rc)
    rc = choose(r, *g, d, k, rd, err);
  td__diag_data_free(d);
  td_diagnosis_free(*g);
  *g = NULL;
  td_run_close(*cur);
  *cur = NULL;
  if (!rc)
    rc = fine_tune(r, round, err);

  /* the last round: only the metrics, no probe or heat maps to choose by */
  int last = round == o->rounds || n_picked(r) >= o->budget;
  if (!rc)
    rc = diagnose_at(o->out, -1, &r->diag, last, g, d, cur, err);
  if (!rc && o->max_label_loss >= 0) { /* as the recording shows it */
    td__guard_finish(&r->guard, d->pred_train);
    guard_take(r, rd);
  }
  if (!rc) {
    rd->epoch_after = (*g)->epoch;
    rd->test_after = (*g)->test_acc;
    rd->n_buggy_after = n_buggy(*g);
    rc = per_label_acc(*g, &rd->acc_after) ? TD_ENOMEM : TD_OK;
  }
  rd->seconds = td_now() - t0;
  rd->cpu_seconds = cpu_now() - c0;
  if (rc == TD_ENOMEM && !err->msg[0])
    td_err_set(err, rc, "out of memory");
  return rc;
}

static int repair_body(rep *r, td_repair_result *res, td_err *err) {
  const td_repair_opts *o = r->o;
  td_diagnosis *g = NULL;
  td__diag_data d;
  memset(&d, 0, sizeof d);
  td_run *cur = NULL;
  int rc = open_parent(r, err);
  if (!rc)
    rc = train_opts(r, err);
  if (!rc)
    rc = diagnose_at(o->run, r->epoch, &r->diag, 0, &g, &d, &cur, err);
  if (!rc && o->max_label_loss >= 0 && (rc = guard_setup(r, &d, err)))
    td__diag_data_free(&d);
  if (rc) {
    td_diagnosis_free(g);
    td_run_close(cur);
    return rc;
  }
  r->t.threads = o->threads;
  r->diag.layer = g->layer; /* later rounds: the same layer */
  res->n_classes = r->C;
  res->test_before = g->test_acc;
  rc = per_label_acc(g, &res->acc_before) ? TD_ENOMEM : TD_OK;
  res->rounds = calloc((size_t)o->rounds, sizeof *res->rounds);
  if (!res->rounds)
    rc = TD_ENOMEM;
  for (int round = 1; !rc && round <= o->rounds; round++) {
    if (n_buggy(g) == 0) {
      res->stopped_clean = 1;
      break;
    }
    if (n_picked(r) >= o->budget)
      break;
    rc = one_round(r, round, &g, &d, &cur, &res->rounds[round - 1], err);
    res->n_rounds = round;
    if (!rc && !o->quiet)
      fprintf(stderr,
              "round %d: %lld picked, test acc %.4f -> %.4f, buggy "
              "labels %d -> %d\n",
              round, (long long)res->rounds[round - 1].n_selected,
              res->rounds[round - 1].test_before,
              res->rounds[round - 1].test_after,
              res->rounds[round - 1].n_buggy_before,
              res->rounds[round - 1].n_buggy_after);
  }
  if (!rc && g && n_buggy(g) == 0)
    res->stopped_clean = 1;
  if (!rc && g) {
    res->test_after = g->test_acc;
    rc = per_label_acc(g, &res->acc_after) ? TD_ENOMEM : TD_OK;
  }
  res->n_selected = n_picked(r);
  res->n_heldout = r->n_reserved;
  if (g)
    td__diag_data_free(&d);
  td_diagnosis_free(g);
  td_run_close(cur);
  if (rc == TD_ENOMEM && !err->msg[0])
    td_err_set(err, rc, "out of memory");
  return rc;
}

/* --select-only: one round's picks from the current model, to out. */
static int select_only(rep *r, td_repair_result *res, td_err *err) {
  const td_repair_opts *o = r->o;
  td_diagnosis *g = NULL;
  td__diag_data d;
  td_run *cur = NULL;
  int rc = open_parent(r, err);
  if (!rc)
    rc = diagnose_at(o->run, r->epoch, &r->diag, 0, &g, &d, &cur, err);
  if (rc) {
    td_run_close(cur);
    return rc;
  }
  res->n_classes = r->C;
  res->test_before = res->test_after = g->test_acc;
  res->rounds = calloc(1, sizeof *res->rounds);
  td_repair_round *rd = res->rounds;
  rc = res->rounds ? choose(r, g, &d, o->budget, rd, err)
                   : td_err_set(err, TD_ENOMEM, "out of memory");
  if (!rc) {
    res->n_rounds = 1;
    res->n_selected = rd->n_selected;
    rd->test_before = rd->test_after = g->test_acc;
    rd->n_buggy_before = rd->n_buggy_after = n_buggy(g);
    rd->epoch_before = rd->epoch_after = g->epoch;
    int64_t shape[1] = {rd->n_selected};
    rc = td_npy_save_raw(o->out, TD_I32, 1, shape, rd->selected, err);
  }
  td__diag_data_free(&d);
  td_diagnosis_free(g);
  td_run_close(cur);
  return rc;
}

static json_t *dbl_array(const double *v, int n) {
  json_t *a = json_array();
  for (int i = 0; v && i < n; i++)
    json_array_append_new(a, isnan(v[i]) ? json_null() : json_real(v[i]));
  return a;
}

/* What the guard did in a round (docs/repair.md#the-no-new-bug-guard). */
static json_t *guard_json(const td_repair_round *rd, int C) {
  return json_pack("{s:I, s:o, s:o, s:o, s:o, s:b, s:i, s:b, s:f}", "n_held",
                   (json_int_t)rd->guard.n_held, "offsets",
                   dbl_array(rd->guard.offsets, C), "acc_parent",
                   dbl_array(rd->guard.acc_parent, C), "acc_before",
                   dbl_array(rd->guard.acc_before, C), "acc_after",
                   dbl_array(rd->guard.acc_after, C), "met", rd->guard.met,
                   "sweeps", rd->guard.sweeps, "converged", rd->guard.converged,
                   "cpu_seconds", rd->guard.cpu_seconds);
}

static json_t *round_json(const td_repair_round *rd, int C, int i) {
  json_t *per = json_array(), *sel = json_array();
  for (int l = 0; l < C; l++)
    json_array_append_new(per, json_integer(rd->per_label[l]));
  for (int64_t k = 0; k < rd->n_selected; k++)
    json_array_append_new(sel, json_integer(rd->selected[k]));
  return json_pack("{s:i, s:i, s:i, s:I, s:o, s:o, s:o, s:o, s:f, s:f, s:i, "
                   "s:i, s:f, s:f}",
                   "round", i + 1, "epoch_before", rd->epoch_before,
                   "epoch_after", rd->epoch_after, "n_selected",
                   (json_int_t)rd->n_selected, "per_label", per, "selected",
                   sel, "acc_before", dbl_array(rd->acc_before, C), "acc_after",
                   dbl_array(rd->acc_after, C), "test_before", rd->test_before,
                   "test_after", rd->test_after, "n_buggy_before",
                   rd->n_buggy_before, "n_buggy_after", rd->n_buggy_after,
                   "seconds", rd->seconds, "cpu_seconds", rd->cpu_seconds);
}

char *td_repair_json(const td_repair_result *r, const td_repair_opts *o) {
  json_t *rounds = json_array();
  for (int i = 0; i < r->n_rounds; i++) {
    json_t *rj = round_json(&r->rounds[i], r->n_classes, i);
    if (rj && r->rounds[i].guarded)
      json_object_set_new(rj, "guard", guard_json(&r->rounds[i], r->n_classes));
    json_array_append_new(rounds, rj);
  }
  json_t *root = json_pack(
      "{s:s, s:s, s:s, s:I, s:i, s:i, s:o, s:I, s:f, s:f, s:f, s:f, s:o, "
      "s:o, s:b}",
      "run", o->run, "out", o->out, "strategy", td_select_name(o->strategy),
      "budget", (json_int_t)o->budget, "rounds_max", o->rounds,
      "epochs_per_round", o->epochs_per_round, "rounds", rounds, "n_selected",
      (json_int_t)r->n_selected, "seconds", r->seconds, "cpu_seconds",
      r->cpu_seconds, "test_before", r->test_before, "test_after",
      r->test_after, "acc_before", dbl_array(r->acc_before, r->n_classes),
      "acc_after", dbl_array(r->acc_after, r->n_classes), "stopped_clean",
      r->stopped_clean);
  if (root) { /* the fine-tuning recipe (docs/repair.md) */
    json_object_set_new(root, "pick_repeat", json_integer(o->pick_repeat));
    json_object_set_new(root, "balance", json_boolean(o->balance));
    json_object_set_new(root, "lr_scale",
                        json_real(o->lr > 0 ? 0 : o->lr_scale));
    json_object_set_new(root, "lr_decay", json_real(o->lr_decay));
    if (o->max_label_loss >= 0) {
      json_object_set_new(root, "max_label_loss", json_real(o->max_label_loss));
      json_object_set_new(root, "n_heldout", json_integer(r->n_heldout));
    }
  }
  char *s = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
  json_decref(root);
  return s;
}

/* FIXED/repair.json: what the repair did, for scripts and the UI; with the
 * guard, FIXED/heldout.npy: the samples it reserved (docs/run-format.md). */
static int write_record(const td_repair_opts *o, const td_repair_result *res,
                        const rep *r, td_err *err) {
  char path[TD_PATH_MAX];
  int rc = TD_OK;
  if (o->max_label_loss >= 0) {
    int64_t shape[1] = {r->n_reserved};
    rc = td_pathf(path, sizeof path, err, "%s/heldout.npy", o->out);
    if (!rc)
      rc = td_npy_save_raw(path, TD_I32, 1, shape, r->held, err);
    if (rc)
      return rc;
  }
  rc = td_pathf(path, sizeof path, err, "%s/repair.json", o->out);
  char *text = rc ? NULL : td_repair_json(res, o);
  if (!rc && !text)
    rc = td_err_set(err, TD_ENOMEM, "out of memory");
  if (!rc)
    rc = td_write_file_atomic(path, text, strlen(text), err);
  free(text);
  return rc;
}

int td_repair(const td_repair_opts *o, td_repair_result *res, td_err *err) {
  memset(res, 0, sizeof *res);
  if (!o->run || !o->out)
    return td_err_set(err, TD_EARG, "repair needs a run and --out");
  if (o->budget < 1 || o->rounds < 1 || o->epochs_per_round < 1 ||
      !(o->other_share >= 0 && o->other_share < 1) || o->strategy < 0 ||
      o->strategy >= TD_SELECT_COUNT ||
      !(o->lr_decay > 0 && o->lr_decay <= 1) || o->replay < 0 ||
      o->pick_repeat < 1 || o->pick_repeat > 1000 || !(o->lr_scale > 0) ||
      isnan(o->max_label_loss) || o->max_label_loss >= 1)
    return td_err_set(err, TD_EARG,
                      "budget, rounds and epochs per round must be >= 1, "
                      "the share of other labels in [0, 1), the rate's "
                      "decay in (0, 1], the replay >= 0, the picks' "
                      "repeat in [1, 1000], the rate's scale > 0, the "
                      "largest label loss in [0, 1) (negative: off)");
  if (o->select_only && o->max_label_loss >= 0)
    return td_err_set(err, TD_EARG,
                      "--max-label-loss calibrates the fine-tuned model: "
                      "not with --select-only");
  rep r;
  memset(&r, 0, sizeof r);
  r.o = o;
  r.diag = o->diag;
  td_rng_split(&r.rng, o->seed, 0x726570616972ULL);
  td_rng_split(&r.replay_rng, o->seed, 0x7265706c6179ULL);
  double t0 = td_now(), c0 = cpu_now();
  int rc =
      o->select_only ? select_only(&r, res, err) : repair_body(&r, res, err);
  res->seconds = td_now() - t0;
  res->cpu_seconds = cpu_now() - c0;
  if (!rc && res->n_rounds > 0 && !o->select_only)
    rc = write_record(o, res, &r, err);
  td_run_close(r.parent);
  free(r.pool);
  free(r.avail);
  free(r.sel);
  free(r.fit);
  free(r.times);
  free(r.parent_pred);
  free(r.held);
  td_array_close(&r.x_in);
  td__guard_round_free(&r.gr);
  json_decref(r.root);
  return rc;
}
