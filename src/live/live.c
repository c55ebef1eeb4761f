/* The live projector: follows a run as it is written and projects each new
 * epoch (include/tardis/live.h has the scheduling rules). One record per
 * recorded epoch says whether it is drawn, and whether as a draft (placed by
 * an earlier epoch's model) or fully fitted. Full fits run one at a time on
 * a thread of their own, oldest first, each warm-started from its
 * predecessor; drafts of the newest epoch and the alerts of each epoch run
 * one at a time on a second thread (the side job). The follower's thread
 * only watches the run and schedules: while the run is being written both
 * threads run at idle priority, and the side job is raised to the usual
 * priority only when the newest drawn epoch would otherwise fall more than
 * lag_budget seconds behind. */
#include "tardis/live.h"

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "live/live_internal.h"
#include "tardis/alloc.h"
#include "tardis/fsutil.h"
#include "tardis/parallel.h"
#include "tardis/vis.h"

enum { EP_NONE, EP_DRAFT, EP_DONE };

typedef struct ep_rec {
  int epoch;
  int state;      /* EP_* */
  double noticed; /* td_now() when first seen */
  int previewed;  /* drawn by a preview (td_project_preview) */
} ep_rec;

/* The full fit under way on its own thread. While it runs, the projector
 * and fit_run belong to that thread. */
typedef struct fit_job {
  pthread_t th;
  int running; /* started and not yet joined */
  atomic_int done;
  int epoch, low, was_draft;
  int preview; /* a preview of the newest epoch, warm from `from` */
  int from;
  atomic_int tid;          /* the fit thread's kernel id; 0 until it runs */
  atomic_int raise_wanted; /* raise_job: its priority is to be given back */
  int raised; /* its priority was given back (the run went quiet) */
  double started;
  int warm_from;
  double seconds;
  int rc;
  td_err err;
} fit_job;

/* The side job: a draft of the newest epoch or one epoch's alerts, on a
 * thread of its own so that it can run at idle priority (a thread cannot
 * raise its own priority back without privileges; a new thread starts at
 * the usual one). While it runs, side_run, the cold drafter and the alerts
 * state belong to that thread. */
enum { SIDE_DRAFT, SIDE_ALERTS };

typedef struct side_job {
  pthread_t th;
  int running; /* started and not yet joined */
  atomic_int done;
  atomic_int tid;
  atomic_int raise_wanted; /* see raise_job */
  int kind;                /* SIDE_* */
  int low;                 /* started at idle priority */
  int raised;              /* raised to the usual priority since */
  int epoch;               /* the epoch drawn, or added to the alerts */
  int from;   /* draft: the fitted epoch whose model draws it; -1: cold */
  int src;    /* draft: the epoch whose model drew it */
  int before; /* alerts: the count before this epoch's */
  int n_new;  /* alerts: this epoch's new alerts */
  double seconds;
  int rc;
  td_err err;
} side_job;

struct td_live {
  char *dir;
  td_live_opts o;
  td__notify nt;
  atomic_int stop;  /* lock-free, so safe from a signal handler */
  td_run *run;      /* NULL until run.json and train_labels.npy are there */
  td_run *fit_run;  /* the fit thread's own handle on the run */
  td_run *side_run; /* the side job's */
  td_projector *pj;
  td_drafter *cold; /* the cold draft's model, until an epoch is fitted */
  fit_job job;
  side_job side;
  double last_fresh;       /* td_now() when the newest epoch was noticed */
  double next_draft_at;    /* drafts keep to half the side job's time */
  td_alerts_state *alerts; /* NULL: o.alerts is 0 */
  int last_alerted;        /* the newest epoch given to alerts; 0: none */
  ep_rec *ep;              /* ascending by epoch, as the run lists them */
  int n;
  pthread_mutex_t mu; /* guards st */
  td_live_status st;
};

void td_live_opts_default(td_live_opts *o) {
  memset(o, 0, sizeof *o);
  td_project_opts_default(&o->proj);
  o->poll_ms = 500;
  o->inotify = 1;
  o->until_finished = 1;
  o->alerts = 1;
  td_alerts_opts_default(&o->alerts_opts);
  o->drafts = 1;
  o->yield_nice = 19;
  o->yield_window = 30.0;
  o->cold_sample = 5000;
  o->draft_wait = 3.0;
  o->lag_budget = 6.0;
}

int td_live_open(const char *run_dir, const td_live_opts *o, td_live **out,
                 td_err *err) {
  *out = NULL;
  if (!td_path_is_dir(run_dir))
    return td_err_set(err, TD_ENOENT, "%s: no such run directory", run_dir);
  td_live *lv = td_calloc(1, sizeof *lv);
  if (!lv || !(lv->dir = td_strdup(run_dir))) {
    td_free(lv);
    return td_err_set(err, TD_ENOMEM, "%s: out of memory", run_dir);
  }
  lv->o = *o;
  if (lv->o.poll_ms <= 0)
    lv->o.poll_ms = 500;
  int rc = td__notify_open(&lv->nt, run_dir, o->inotify, err);
  if (rc) {
    td_free(lv->dir);
    td_free(lv);
    return rc;
  }
  if (lv->o.alerts &&
      (rc = td_alerts_state_new(&lv->o.alerts_opts, &lv->alerts, err))) {
    td__notify_close(&lv->nt);
    td_free(lv->dir);
    td_free(lv);
    return rc;
  }
  pthread_mutex_init(&lv->mu, NULL);
  lv->st.newest_recorded = lv->st.newest_projected = lv->st.projecting = -1;
  *out = lv;
  return TD_OK;
}

static void join_job(td_live *lv) {
  if (lv->job.running) {
    pthread_join(lv->job.th, NULL);
    lv->job.running = 0;
  }
}

static void join_side(td_live *lv) {
  if (lv->side.running) {
    pthread_join(lv->side.th, NULL);
    lv->side.running = 0;
  }
}

void td_live_close(td_live *lv) {
  if (!lv)
    return;
  join_job(lv);
  join_side(lv);
  td_drafter_close(lv->cold);
  td_projector_close(lv->pj);
  td_run_close(lv->side_run);
  td_run_close(lv->fit_run);
  td_alerts_state_free(lv->alerts);
  td_run_close(lv->run);
  td__notify_close(&lv->nt);
  pthread_mutex_destroy(&lv->mu);
  td_free(lv->ep);
  td_free(lv->dir);
  td_free(lv);
}

void td_live_stop(td_live *lv) {
  atomic_store(&lv->stop, 1);
  td__notify_wake(&lv->nt);
}

void td_live_get_status(td_live *lv, td_live_status *s) {
  pthread_mutex_lock(&lv->mu);
  *s = lv->st;
  pthread_mutex_unlock(&lv->mu);
}

/* Publishes the counts of the records (projecting: the epoch under way). */
static void publish(td_live *lv, int projecting, int finished) {
  td_live_status s = {0, 0, -1, -1, projecting, finished, 0};
  if (s.projecting < 0 && lv->side.running && lv->side.kind == SIDE_DRAFT)
    s.projecting = lv->side.epoch;
  if (s.projecting < 0 && lv->job.running)
    s.projecting = lv->job.epoch;
  for (int i = 0; i < lv->n; i++) {
    s.n_recorded++;
    s.newest_recorded = lv->ep[i].epoch;
    if (lv->ep[i].state != EP_NONE) {
      s.n_projected++;
      s.newest_projected = lv->ep[i].epoch;
    }
    s.n_drafts += lv->ep[i].state == EP_DRAFT;
  }
  pthread_mutex_lock(&lv->mu);
  lv->st = s;
  pthread_mutex_unlock(&lv->mu);
}

static int run_json_exists(const td_live *lv) {
  char p[TD_PATH_MAX];
  return td_pathf(p, sizeof p, NULL, "%s/run.json", lv->dir) == TD_OK &&
         td_path_exists(p);
}

static int vanished(const td_live *lv, td_err *err) {
  return td_err_set(err, TD_ENOENT,
                    "%s: the run directory disappeared (or lost its run.json) "
                    "while it was being followed",
                    lv->dir);
}

/* Opens the run once run.json and train_labels.npy are both there (they
 * are written atomically, run.json first); until then *waiting. */
static int ensure_open(td_live *lv, td_err *err) {
  if (lv->run)
    return TD_OK;
  td_err e;
  int rc = td_run_open(lv->dir, &lv->run, &e);
  if (rc == TD_ENOENT)
    return TD_OK; /* not written yet */
  if (rc) {
    *err = e;
    return rc;
  }
  rc = td_run_open(lv->dir, &lv->fit_run, &e);
  if (rc == TD_OK)
    rc = td_run_open(lv->dir, &lv->side_run, &e);
  if (rc == TD_OK)
    rc = td_projector_open(lv->fit_run, &lv->o.proj, &lv->pj, &e);
  if (rc) {
    td_run_close(lv->side_run);
    td_run_close(lv->fit_run);
    td_run_close(lv->run);
    lv->run = lv->fit_run = lv->side_run = NULL;
  }
  /* A file missing now that was there a moment ago (seen once under ASan
   * on a loaded machine, cause not found): look again at the next wake-up
   * rather than stop following; a run directory that is gone is told
   * apart by td_live_run. */
  if (rc && rc != TD_ENOENT)
    *err = e;
  return rc == TD_ENOENT ? TD_OK : rc;
}

static int cmp_rec(const void *a, const void *b) {
  int x = ((const ep_rec *)a)->epoch, y = ((const ep_rec *)b)->epoch;
  return (x > y) - (x < y);
}

/* Re-lists the run's epochs and carries the records over; *fresh receives
 * whether a new epoch appeared. */
static int sync_epochs(td_live *lv, int first, int *fresh, td_err *err) {
  int rc = td_run_refresh(lv->run, err);
  if (rc)
    return rc;
  int n = td_run_n_epochs(lv->run);
  ep_rec *v = td_malloc((size_t)(n ? n : 1) * sizeof *v);
  if (!v)
    return td_err_set(err, TD_ENOMEM, "%s: out of memory", lv->dir);
  double now = td_now();
  *fresh = 0;
  for (int i = 0; i < n; i++) {
    ep_rec key = {td_run_epoch_number(lv->run, i), 0, 0, 0};
    const ep_rec *old =
        lv->n ? bsearch(&key, lv->ep, (size_t)lv->n, sizeof key, cmp_rec)
              : NULL;
    if (old) {
      v[i] = *old;
      continue;
    }
    key.state =
        td_vis_epoch_final(lv->dir, lv->o.proj.method, key.epoch)  ? EP_DONE
        : td_vis_epoch_done(lv->dir, lv->o.proj.method, key.epoch) ? EP_DRAFT
                                                                   : EP_NONE;
    key.noticed = now;
    v[i] = key;
    *fresh = 1;
    lv->last_fresh = now;
    if (!first && lv->o.on_recorded)
      lv->o.on_recorded(key.epoch, lv->o.ctx);
  }
  td_free(lv->ep);
  lv->ep = v;
  lv->n = n;
  return TD_OK;
}

static int find_rec(const td_live *lv, int epoch) {
  for (int i = 0; i < lv->n; i++)
    if (lv->ep[i].epoch == epoch)
      return i;
  return -1;
}

/* Whether the run is being written: not finished, and an epoch arrived
 * within yield_window seconds. Fits, drafts and alerts then yield to the
 * trainer. */
static int run_active(const td_live *lv, int finished) {
  return lv->o.yield_nice > 0 && !finished &&
         td_now() - lv->last_fresh < lv->o.yield_window;
}

/* When the oldest epoch newer than every drawn one was noticed: what the
 * lag of the newest drawn epoch is counted from. -1: nothing is drawn yet
 * (the first epoch is drawn at once); HUGE_VAL: nothing waits. */
static double uncovered_since(const td_live *lv) {
  int d = -1;
  for (int i = 0; i < lv->n; i++)
    if (lv->ep[i].state != EP_NONE)
      d = i;
  if (d < 0)
    return lv->n ? -1 : (double)HUGE_VAL;
  return d + 1 < lv->n ? lv->ep[d + 1].noticed : (double)HUGE_VAL;
}

static void fill_event(td_live *lv, int i, td_live_epoch *ev) {
  ev->epoch = lv->ep[i].epoch;
  ev->backfill = i != lv->n - 1;
  ev->latency = td_now() - lv->ep[i].noticed;
  ev->newest = lv->ep[lv->n - 1].epoch;
  ev->lag = lv->n - 1 - i;
  td_live_status s;
  td_live_get_status(lv, &s);
  ev->n_recorded = s.n_recorded;
  ev->n_projected = s.n_projected;
}

/* Lowers the calling thread to idle priority and keeps its work on it: one
 * thread for td_parallel_for and for OpenBLAS. SCHED_IDLE (its own policy:
 * on Linux a thread's, not the process's) is what lets the trainer take the
 * core back at once when one of its threads wakes: a nice-19 thread still
 * runs out its time slice first, and the trainer's threads wake hundreds of
 * times an epoch (docs/performance.md, "Live mode"). The nice value stays
 * for kernels without SCHED_IDLE and for tools that show it. */
static void become_low_priority(int nice) {
  if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice) != 0) {
    /* not fatal: the work then competes at the usual priority */
  }
  struct sched_param sp = {0};
  if (sched_setscheduler(0, SCHED_IDLE, &sp) != 0) {
    /* not fatal: nice alone */
  }
  td_set_thread_threads(1);
  td_blas_single_begin();
}

/* Gives a lowered thread the usual priority back. This needs CAP_SYS_NICE
 * or a RLIMIT_NICE that allows it; without either, the work finishes where
 * it is (on an idle machine that costs nothing), and the work started after
 * it runs at the usual priority. */
static void raise_priority(int tid) {
  struct sched_param sp = {0};
  if (sched_setscheduler(tid, SCHED_OTHER, &sp) != 0) {
    /* EPERM: see above */
  }
  if (setpriority(PRIO_PROCESS, (id_t)tid, 0) != 0) {
    /* EPERM/EACCES: see above */
  }
}

/* Whether this process may raise a lowered thread again: a thread of its
 * own is lowered as a job would be and tries. An unprivileged account with
 * Debian's default RLIMIT_NICE (0) cannot leave SCHED_IDLE, so a draft
 * lowered there could wait for ever beside a busy trainer; such a process
 * keeps its drafts and alerts at the usual priority (their lag budget
 * still bounds their cost) and lowers only the full fits. */
static int raise_ok;

static void *probe_raise(void *arg) {
  (void)arg;
  struct sched_param sp = {0};
  int self = (int)syscall(SYS_gettid);
  raise_ok = setpriority(PRIO_PROCESS, (id_t)self, 19) == 0 &&
             sched_setscheduler(0, SCHED_IDLE, &sp) == 0 &&
             sched_setscheduler(0, SCHED_OTHER, &sp) == 0 &&
             setpriority(PRIO_PROCESS, (id_t)self, 0) == 0;
  return NULL;
}

static void probe_once(void) {
  pthread_t th;
  if (pthread_create(&th, NULL, probe_raise, NULL) == 0)
    pthread_join(th, NULL);
}

static int can_raise(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, probe_once);
  return raise_ok;
}

/* A job's thread lowers itself; a raise asked for before it got there is
 * carried out by the thread itself once lowered (raise_job). */
static void lower_self(atomic_int *tid, atomic_int *raise_wanted, int nice) {
  int self = (int)syscall(SYS_gettid);
  atomic_store(tid, self);
  become_low_priority(nice);
  if (atomic_load(raise_wanted))
    raise_priority(self);
}

static void raise_job(atomic_int *tid, atomic_int *raise_wanted) {
  atomic_store(raise_wanted, 1);
  int t = atomic_load(tid);
  if (t)
    raise_priority(t);
}

static void *fit_main(void *arg) {
  td_live *lv = arg;
  fit_job *j = &lv->job;
  if (j->low)
    lower_self(&j->tid, &j->raise_wanted, lv->o.yield_nice);
  j->rc = td_run_refresh(lv->fit_run, &j->err);
  if (j->rc == TD_OK && j->preview) {
    j->warm_from = j->from;
    j->rc = td_project_preview(lv->fit_run, &lv->o.proj, j->epoch, j->from,
                               &j->seconds, &j->err);
  } else if (j->rc == TD_OK)
    j->rc = td_projector_epoch(lv->pj, j->epoch, &j->warm_from, &j->seconds,
                               &j->err);
  if (j->low)
    td_blas_single_end();
  atomic_store(&j->done, 1);
  td__notify_wake(&lv->nt);
  return NULL;
}

/* Starts the full fit of record i. It yields to the trainer while the run
 * is being written — the first, cold, fit too: until it is done, drafts
 * come from a model fitted on a sample of one epoch (td_drafter_cold). */
static int start_fit(td_live *lv, int i, int preview_from, int finished,
                     td_err *err) {
  fit_job *j = &lv->job;
  j->preview = preview_from != INT_MIN;
  j->from = j->preview ? preview_from : -1;
  j->epoch = lv->ep[i].epoch;
  j->was_draft = lv->ep[i].state == EP_DRAFT;
  j->low = run_active(lv, finished);
  j->started = td_now();
  j->warm_from = -1;
  j->seconds = 0;
  j->raised = 0;
  atomic_store(&j->tid, 0);
  atomic_store(&j->raise_wanted, 0);
  atomic_store(&j->done, 0);
  if (pthread_create(&j->th, NULL, fit_main, lv) != 0)
    return td_err_set(err, TD_EIO, "%s: cannot start a projection thread",
                      lv->dir);
  j->running = 1;
  return TD_OK;
}

/* A fit that yielded keeps going at the usual priority once the run is
 * finished or quiet (where the system allows it: raise_priority). */
static void give_back_priority(td_live *lv, int finished) {
  fit_job *j = &lv->job;
  if (!j->running || !j->low || j->raised || run_active(lv, finished))
    return;
  j->raised = 1;
  raise_job(&j->tid, &j->raise_wanted);
}

/* When the side job is raised to the usual priority: once the newest drawn
 * epoch lags by lag_budget seconds (the side job — a draft, or the alerts
 * before it — is what stands between it and a newer one), or the run is no
 * longer being written. HUGE_VAL: not while things stay as they are. */
static double side_raise_at(const td_live *lv, int finished) {
  const side_job *j = &lv->side;
  if (!j->running || !j->low || j->raised)
    return (double)HUGE_VAL;
  if (!run_active(lv, finished))
    return 0;
  double since = uncovered_since(lv);
  if (!lv->o.drafts || since == (double)HUGE_VAL)
    return (double)HUGE_VAL;
  return (since < 0 ? lv->ep[0].noticed : since) + lv->o.lag_budget;
}

static void raise_side(td_live *lv, int finished) {
  side_job *j = &lv->side;
  if (td_now() >= side_raise_at(lv, finished)) {
    j->raised = 1;
    raise_job(&j->tid, &j->raise_wanted);
  }
}

/* Takes in the finished fit: its record is final now. */
static int collect_fit(td_live *lv, int finished, td_err *err) {
  fit_job *j = &lv->job;
  join_job(lv);
  if (j->rc) {
    *err = j->err;
    return j->rc;
  }
  int i = find_rec(lv, j->epoch);
  if (i < 0)
    return TD_OK; /* the run was rewritten under us */
  lv->ep[i].state = j->preview ? EP_DRAFT : EP_DONE;
  lv->ep[i].previewed |= j->preview;
  /* drafts come from fitted epochs from now on (the cold model is freed
   * when the next draft starts: no side job uses it then) */
  publish(lv, -1, finished);
  td_live_epoch ev = {0};
  fill_event(lv, i, &ev);
  ev.warm_from = j->warm_from;
  ev.seconds = j->seconds;
  ev.redo = j->was_draft && !j->preview;
  ev.draft = ev.preview = j->preview;
  ev.cold = j->preview && j->from < 0;
  ev.low_priority = j->low;
  ev.raised = j->raised;
  if (lv->o.on_projected)
    lv->o.on_projected(&ev, lv->o.ctx);
  return TD_OK;
}

/* The oldest epoch not fully fitted (its predecessors all are, so its fit
 * is warm-started from its predecessor as in `tardis project`), or -1. */
static int next_fit(const td_live *lv) {
  for (int i = 0; i < lv->n; i++)
    if (lv->ep[i].state != EP_DONE)
      return i;
  return -1;
}

/* The oldest recorded epoch not yet given to the alerts, or -1. The alerts
 * need the epochs in ascending order, which is the order they are recorded
 * in; an epoch that appears below the newest one already added (a run
 * rewritten under us) is left out rather than stopping the follower
 * (`tardis alerts` recomputes the whole run). */
static int next_alert(const td_live *lv) {
  for (int i = 0; lv->alerts && i < lv->n; i++)
    if (lv->ep[i].epoch > lv->last_alerted)
      return i;
  return -1;
}

/* A draft of j->epoch with the model of j->from (a fully fitted epoch), of
 * the cold draft's sample, or — neither there yet — of a cold draft fitted
 * on a sample of this epoch. j->src: the epoch whose model drew it. */
static int side_draft(td_live *lv, side_job *j, td_err *err) {
  j->src = j->from;
  if (j->from >= 0)
    return td_project_draft(lv->side_run, &lv->o.proj, j->epoch, j->from,
                            &j->seconds, err);
  if (lv->cold) {
    j->src = td_drafter_epoch(lv->cold);
    return td_drafter_draw(lv->cold, j->epoch, &j->seconds, err);
  }
  j->src = j->epoch;
  return td_drafter_cold(lv->side_run, &lv->o.proj, j->epoch, lv->o.cold_sample,
                         &lv->cold, &j->seconds, err);
}

/* Adds j->epoch to the alerts (it reads only the recorded representations,
 * not the projection) and rewrites RUN/alerts.jsonl. */
static int side_alerts(td_live *lv, side_job *j, td_err *err) {
  j->before = td_alerts_count(lv->alerts);
  double t0 = td_now();
  int rc =
      td_alerts_add_epoch(lv->alerts, lv->side_run, j->epoch, &j->n_new, err);
  if (rc == TD_OK)
    rc = td_alerts_write(lv->alerts, lv->dir, err);
  j->seconds = td_now() - t0;
  return rc;
}

static void *side_main(void *arg) {
  td_live *lv = arg;
  side_job *j = &lv->side;
  if (j->low)
    lower_self(&j->tid, &j->raise_wanted, lv->o.yield_nice);
  j->rc = td_run_refresh(lv->side_run, &j->err);
  if (j->rc == TD_OK)
    j->rc = j->kind == SIDE_DRAFT ? side_draft(lv, j, &j->err)
                                  : side_alerts(lv, j, &j->err);
  if (j->low)
    td_blas_single_end();
  atomic_store(&j->done, 1);
  td__notify_wake(&lv->nt);
  return NULL;
}

static int start_side(td_live *lv, int kind, int i, int from, int finished,
                      td_err *err) {
  side_job *j = &lv->side;
  j->kind = kind;
  j->epoch = lv->ep[i].epoch;
  j->from = from;
  j->src = -1;
  j->before = j->n_new = 0;
  j->seconds = 0;
  j->low = run_active(lv, finished) && can_raise();
  j->raised = 0;
  atomic_store(&j->tid, 0);
  atomic_store(&j->raise_wanted, 0);
  atomic_store(&j->done, 0);
  if (pthread_create(&j->th, NULL, side_main, lv) != 0)
    return td_err_set(err, TD_EIO, "%s: cannot start a projection thread",
                      lv->dir);
  j->running = 1;
  publish(lv, -1, finished);
  return TD_OK;
}

/* Takes in the finished side job: a draft's record and event, or the new
 * alerts. A draft is followed by as long again without one (drafts keep to
 * half the side job's time), except the cold draft: its fit on the sample
 * is paid once. */
static int collect_side(td_live *lv, int finished, td_err *err) {
  side_job *j = &lv->side;
  join_side(lv);
  if (j->rc) {
    *err = j->err;
    return j->rc;
  }
  if (j->kind == SIDE_ALERTS) {
    lv->last_alerted = j->epoch;
    for (int k = j->before; lv->o.on_alert && k < j->before + j->n_new; k++)
      lv->o.on_alert(td_alerts_get(lv->alerts, k), lv->o.ctx);
    return TD_OK;
  }
  int cold_fit = j->from < 0 && j->src == j->epoch;
  lv->next_draft_at = td_now() + (cold_fit ? 0 : j->seconds);
  int i = find_rec(lv, j->epoch);
  if (i < 0 || lv->ep[i].state != EP_NONE)
    return TD_OK; /* the run was rewritten under us */
  lv->ep[i].state = EP_DRAFT;
  publish(lv, -1, finished);
  td_live_epoch ev = {0};
  fill_event(lv, i, &ev);
  ev.warm_from = j->src;
  ev.seconds = j->seconds;
  ev.draft = 1;
  ev.cold = j->from < 0;
  ev.low_priority = j->low;
  ev.raised = j->raised;
  if (lv->o.on_projected)
    lv->o.on_projected(&ev, lv->o.ctx);
  return TD_OK;
}

/* When a draft of the newest epoch may start (HUGE_VAL: none is wanted):
 * once the oldest epoch newer than every drawn one has waited draft_wait
 * seconds — the first epoch at once — and half the side job's time after
 * the last draft. Not of the epoch being fitted (the two would race to
 * write it), nor of one whose fit starts next at the usual priority, nor
 * before a cold draft can be drawn. *from: the newest fully fitted epoch,
 * whose model draws it (-1: the cold draft's). */
static double draft_at(const td_live *lv, int finished, int *from) {
  int i = lv->n - 1;
  *from = -1;
  if (!lv->o.drafts || i < 0 || lv->ep[i].state != EP_NONE ||
      (lv->job.running && lv->job.epoch == lv->ep[i].epoch))
    return (double)HUGE_VAL;
  for (int k = i - 1; k >= 0 && *from < 0; k--)
    if (lv->ep[k].state == EP_DONE)
      *from = lv->ep[k].epoch;
  if ((!lv->job.running && next_fit(lv) == i && !run_active(lv, finished)) ||
      (*from < 0 && !lv->cold && lv->o.cold_sample < 2))
    return (double)HUGE_VAL;
  double since = uncovered_since(lv);
  double at = since < 0 ? 0 : since + lv->o.draft_wait;
  return at > lv->next_draft_at ? at : lv->next_draft_at;
}

/* Starts the side job when none runs: the newest epoch's draft when it is
 * due, else the alerts of the oldest epoch not given to them. */
static int maybe_side(td_live *lv, int finished, int *did, td_err *err) {
  if (lv->side.running)
    return TD_OK;
  int from, i = next_alert(lv);
  if (td_now() >= draft_at(lv, finished, &from)) {
    /* drafts come from fitted epochs once there is one */
    if (from >= 0 && lv->cold) {
      td_drafter_close(lv->cold);
      lv->cold = NULL;
    }
    *did = 1;
    return start_side(lv, SIDE_DRAFT, lv->n - 1, from, finished, err);
  }
  if (i < 0)
    return TD_OK;
  *did = 1;
  return start_side(lv, SIDE_ALERTS, i, -1, finished, err);
}

/* Once the run is finished with at least two epochs before the newest
 * still to fit, the in-order fits would leave the newest a draft for a
 * while (16 fits of a 60k run: ~100 s), and a draft drawn by an early
 * epoch's model shows a jumble. A preview — a full fit of the newest epoch
 * warm-started from the newest fitted one — shows it as it will look after
 * one fit; its in-order fit replaces it at the end. Returns the record to
 * preview, or -1; *from: the epoch it starts from (-1: cold). */
static int preview_due(const td_live *lv, int finished, int *from) {
  int i = lv->n - 1, next = next_fit(lv);
  if (!finished || !lv->o.drafts || i < 0 || next < 0 || next > i - 2 ||
      lv->ep[i].state == EP_DONE || lv->ep[i].previewed ||
      !td_project_can_preview(lv->run, &lv->o.proj))
    return -1;
  *from = -1;
  for (int k = i - 1; k >= 0 && *from < 0; k--)
    if (lv->ep[k].state == EP_DONE)
      *from = lv->ep[k].epoch;
  return i;
}

/* Starts the next full fit when none runs: a preview when one is due, else
 * the oldest epoch not fitted. While the run is being written it waits
 * until the side job has nothing to do: the fit of a 60k epoch costs ~10
 * CPU-s, and at idle priority beside a busy trainer it would only slow the
 * drafts and alerts down (the fits catch up once training ends). Never the
 * epoch being drafted. */
static int maybe_fit(td_live *lv, int finished, int *did, td_err *err) {
  int from = INT_MIN, i = -1;
  if (!lv->job.running && (i = preview_due(lv, finished, &from)) < 0) {
    from = INT_MIN;
    i = next_fit(lv);
  }
  if (i < 0 ||
      (lv->side.running && lv->side.kind == SIDE_DRAFT &&
       lv->side.epoch == lv->ep[i].epoch) ||
      (run_active(lv, finished) && (lv->side.running || next_alert(lv) >= 0)))
    return TD_OK;
  *did = 1;
  int rc = start_fit(lv, i, from, finished, err);
  if (rc == TD_OK)
    publish(lv, -1, finished);
  return rc;
}

/* One look at the run: open it when it appears, re-list its epochs, take
 * in a finished fit or side job, start the next ones (*did: any of that
 * happened). */
static int step(td_live *lv, int finished, int *did, int *fresh, td_err *err) {
  int first = lv->run == NULL;
  *did = *fresh = 0;
  int rc = ensure_open(lv, err);
  if (rc || !lv->run)
    return rc;
  if ((rc = sync_epochs(lv, first, fresh, err)))
    return rc;
  publish(lv, -1, finished);
  give_back_priority(lv, finished);
  if (lv->job.running && atomic_load(&lv->job.done)) {
    if ((rc = collect_fit(lv, finished, err)))
      return rc;
    *did = 1;
  }
  if (lv->side.running && atomic_load(&lv->side.done)) {
    if ((rc = collect_side(lv, finished, err)))
      return rc;
    *did = 1;
  }
  if ((rc = maybe_side(lv, finished, did, err)) ||
      (rc = maybe_fit(lv, finished, did, err)))
    return rc;
  if (lv->side.running)
    raise_side(lv, finished);
  return TD_OK;
}

/* How long to wait for the next change: the poll interval, shortened to
 * the next draft due, to the side job's raise and to what is left of
 * exit_idle. 0: idle long enough. */
static int wait_ms(const td_live *lv, int finished, double idle_since) {
  double now = td_now(), at = (double)HUGE_VAL;
  int ms = lv->o.poll_ms, from;
  if (!lv->side.running)
    at = draft_at(lv, finished, &from);
  double raise = side_raise_at(lv, finished);
  if (raise < at)
    at = raise;
  if (at > now && (at - now) * 1000 < ms)
    ms = (int)((at - now) * 1000) + 1;
  if (lv->o.exit_idle > 0 && !lv->job.running && !lv->side.running) {
    double left = lv->o.exit_idle - (now - idle_since);
    if (left <= 0)
      return 0;
    if (left * 1000 < ms)
      ms = (int)(left * 1000) + 1;
  }
  return ms;
}

static int gone(const td_live *lv) {
  return !td_path_is_dir(lv->dir) || (lv->run && !run_json_exists(lv));
}

/* After an error: whether the run is being removed. `rm -rf RUN` is not
 * atomic: the error may come from a file it already removed (an encoder
 * the next fit warm-starts from) before it reaches run.json, so the check
 * is repeated for a while before the error is taken as the cause. */
static int going(const td_live *lv) {
  for (int i = 0; i < 40; i++) {
    if (gone(lv))
      return 1;
    usleep(50000);
  }
  return gone(lv);
}

/* Ends td_live_run: the fit and the side job under way are finished first
 * (they cannot be cut short; what they write is written, not reported),
 * at the usual priority — yielding, they would crawl on beside a busy
 * trainer. */
static int end_run(td_live *lv, int rc) {
  if (lv->job.running && lv->job.low)
    raise_job(&lv->job.tid, &lv->job.raise_wanted);
  if (lv->side.running && lv->side.low)
    raise_job(&lv->side.tid, &lv->side.raise_wanted);
  join_side(lv);
  join_job(lv);
  publish(lv, -1, lv->st.finished);
  return rc;
}

/* Every recorded epoch fully fitted and given to the alerts. */
static int all_done(const td_live *lv) {
  return lv->run && !lv->job.running && !lv->side.running && next_fit(lv) < 0 &&
         next_alert(lv) < 0;
}

int td_live_run(td_live *lv, td_live_end *end, td_err *err) {
  double idle_since = td_now();
  for (;;) {
    if (atomic_load(&lv->stop)) {
      *end = TD_LIVE_STOPPED;
      return end_run(lv, TD_OK);
    }
    if (gone(lv))
      return end_run(lv, vanished(lv, err));
    /* Read before the epochs are listed: the marker is written after the
     * last epoch, so the list that follows holds every epoch. */
    int finished = td_run_is_finished(lv->dir);
    int did, fresh;
    int rc = step(lv, finished, &did, &fresh, err);
    if (rc)
      return end_run(lv, going(lv) ? vanished(lv, err) : rc);
    if (did || fresh || lv->job.running || lv->side.running)
      idle_since = td_now();
    if (did)
      continue;
    if (finished && lv->o.until_finished && all_done(lv)) {
      *end = TD_LIVE_FINISHED;
      return end_run(lv, TD_OK);
    }
    int ms = wait_ms(lv, finished, idle_since);
    if (ms == 0) {
      *end = TD_LIVE_IDLE;
      return end_run(lv, TD_OK);
    }
    td__notify_wait(&lv->nt, ms);
  }
}
