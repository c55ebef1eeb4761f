/* The live projector: follows a run as it is written and projects each new
 * epoch (include/tardis/live.h has the scheduling rules). One record per
 * recorded epoch says whether it is projected, and whether that projection
 * is a draft warm-started from an epoch other than its predecessor. */
#include "tardis/live.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

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
} ep_rec;

struct td_live {
  char *dir;
  td_live_opts o;
  td__notify nt;
  atomic_int stop; /* lock-free, so safe from a signal handler */
  td_run *run;     /* NULL until run.json and train_labels.npy are there */
  td_projector *pj;
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

void td_live_close(td_live *lv) {
  if (!lv)
    return;
  td_projector_close(lv->pj);
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
  td_live_status s = {0, 0, -1, -1, projecting, finished};
  for (int i = 0; i < lv->n; i++) {
    s.n_recorded++;
    s.newest_recorded = lv->ep[i].epoch;
    if (lv->ep[i].state != EP_NONE) {
      s.n_projected++;
      s.newest_projected = lv->ep[i].epoch;
    }
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
  rc = td_projector_open(lv->run, &lv->o.proj, &lv->pj, err);
  if (rc) {
    td_run_close(lv->run);
    lv->run = NULL;
  }
  return rc;
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
    ep_rec key = {td_run_epoch_number(lv->run, i), 0, 0};
    const ep_rec *old =
        lv->n ? bsearch(&key, lv->ep, (size_t)lv->n, sizeof key, cmp_rec)
              : NULL;
    if (old) {
      v[i] = *old;
      continue;
    }
    key.state = td_vis_epoch_done(lv->dir, lv->o.proj.method, key.epoch)
                    ? EP_DONE
                    : EP_NONE;
    key.noticed = now;
    v[i] = key;
    *fresh = 1;
    if (!first && lv->o.on_recorded)
      lv->o.on_recorded(key.epoch, lv->o.ctx);
  }
  td_free(lv->ep);
  lv->ep = v;
  lv->n = n;
  return TD_OK;
}

/* The alerts need the epochs in ascending order, which is the order they
 * are recorded in: each new one is added once, before any projection (it
 * reads only the recorded representations), and RUN/alerts.jsonl is
 * rewritten when one was added. An epoch that appears below the newest one
 * already added (a run rewritten under us) is left out rather than stopping
 * the follower; `tardis alerts` recomputes the whole run. */
static int alert_new_epochs(td_live *lv, td_err *err) {
  if (!lv->alerts)
    return TD_OK;
  int added = 0;
  for (int i = 0; i < lv->n; i++) {
    int ep = lv->ep[i].epoch;
    if (ep <= lv->last_alerted)
      continue;
    int before = td_alerts_count(lv->alerts), n_new = 0;
    int rc = td_alerts_add_epoch(lv->alerts, lv->run, ep, &n_new, err);
    if (rc)
      return rc;
    lv->last_alerted = ep;
    added = 1;
    for (int k = before; lv->o.on_alert && k < before + n_new; k++)
      lv->o.on_alert(td_alerts_get(lv->alerts, k), lv->o.ctx);
  }
  return added ? td_alerts_write(lv->alerts, lv->dir, err) : TD_OK;
}

/* The next epoch to project (an index into lv->ep), or -1. */
static int pick(const td_live *lv) {
  if (lv->n && lv->ep[lv->n - 1].state == EP_NONE)
    return lv->n - 1;
  for (int i = 0; i < lv->n; i++)
    if (lv->ep[i].state == EP_NONE || (lv->ep[i].state == EP_DRAFT && i > 0 &&
                                       lv->ep[i - 1].state != EP_NONE))
      return i;
  return -1;
}

static int project_one(td_live *lv, int i, int finished, td_err *err) {
  ep_rec *r = &lv->ep[i];
  td_live_epoch ev = {0};
  ev.epoch = r->epoch;
  ev.redo = r->state == EP_DRAFT;
  ev.backfill = i != lv->n - 1;
  publish(lv, r->epoch, finished);
  int rc =
      td_projector_epoch(lv->pj, r->epoch, &ev.warm_from, &ev.seconds, err);
  if (rc)
    return rc;
  int pred = i > 0 ? lv->ep[i - 1].epoch : -1;
  r->state = ev.warm_from == pred ? EP_DONE : EP_DRAFT;
  publish(lv, -1, finished);
  ev.latency = td_now() - r->noticed;
  ev.newest = lv->ep[lv->n - 1].epoch;
  ev.lag = lv->n - 1 - i;
  td_live_status s;
  td_live_get_status(lv, &s);
  ev.n_recorded = s.n_recorded;
  ev.n_projected = s.n_projected;
  if (lv->o.on_projected)
    lv->o.on_projected(&ev, lv->o.ctx);
  return TD_OK;
}

/* One look at the run: open it when it appears, re-list its epochs,
 * project one epoch if any needs it (*did). */
static int step(td_live *lv, int finished, int *did, int *fresh, td_err *err) {
  int first = lv->run == NULL;
  *did = *fresh = 0;
  int rc = ensure_open(lv, err);
  if (rc || !lv->run)
    return rc;
  if ((rc = sync_epochs(lv, first, fresh, err)) ||
      (rc = alert_new_epochs(lv, err)))
    return rc;
  publish(lv, -1, finished);
  int i = pick(lv);
  if (i < 0)
    return TD_OK;
  *did = 1;
  return project_one(lv, i, finished, err);
}

int td_live_run(td_live *lv, td_live_end *end, td_err *err) {
  double idle_since = td_now();
  for (;;) {
    if (atomic_load(&lv->stop)) {
      *end = TD_LIVE_STOPPED;
      return TD_OK;
    }
    if (!td_path_is_dir(lv->dir) || (lv->run && !run_json_exists(lv)))
      return vanished(lv, err);
    /* Read before the epochs are listed: the marker is written after the
     * last epoch, so the list that follows holds every epoch. */
    int finished = td_run_is_finished(lv->dir);
    int did, fresh;
    int rc = step(lv, finished, &did, &fresh, err);
    if (rc) {
      if (!td_path_is_dir(lv->dir) || (lv->run && !run_json_exists(lv)))
        return vanished(lv, err);
      return rc;
    }
    double now = td_now();
    if (did || fresh)
      idle_since = now;
    if (did)
      continue;
    if (finished && lv->run && lv->o.until_finished) {
      *end = TD_LIVE_FINISHED;
      return TD_OK;
    }
    int wait_ms = lv->o.poll_ms;
    if (lv->o.exit_idle > 0) {
      double left = lv->o.exit_idle - (now - idle_since);
      if (left <= 0) {
        *end = TD_LIVE_IDLE;
        return TD_OK;
      }
      if (left * 1000 < wait_ms)
        wait_ms = (int)(left * 1000) + 1;
    }
    td__notify_wait(&lv->nt, wait_ms);
  }
}
