/* `tardis serve --follow`: the live projector on a thread owned by the
 * server. It projects each epoch as it is recorded; the run watcher
 * (server.c) turns what appears on disk into events, and is poked so that
 * a projection reaches the browsers at once rather than at the next poll. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_internal.h"
#include "tardis/fsutil.h"
#include "tardis/live.h"

int td__follow_open_run(const td_server_opts *o, td_run **run, td_err *err) {
  *run = NULL;
  if (o->follow && !td_path_is_dir(o->run_dir))
    return td_err_set(err, TD_ENOENT,
                      "%s: no such directory (--follow waits for a run to "
                      "start in an existing directory: create it, or point "
                      "the trainer and the server at the same one)",
                      o->run_dir);
  td_err e;
  int rc = td_run_open(o->run_dir, run, &e);
  if (rc == TD_ENOENT && o->follow)
    return TD_OK; /* not started yet: td__follow_run_ready waits for it */
  if (rc)
    *err = e;
  return rc;
}

int td__follow_run_ready(td_server *s) {
  pthread_rwlock_rdlock(&s->run_lock);
  int ready = s->run != NULL;
  pthread_rwlock_unlock(&s->run_lock);
  if (ready)
    return 1;
  pthread_rwlock_wrlock(&s->run_lock);
  td_run *run;
  if (!s->run && td_run_open(s->run_dir, &run, NULL) == TD_OK)
    s->run = run;
  ready = s->run != NULL;
  pthread_rwlock_unlock(&s->run_lock);
  return ready;
}

enum MHD_Result td__reply_waiting(td_server *s, struct MHD_Connection *c) {
  char msg[TD_PATH_MAX + 64];
  snprintf(msg, sizeof msg,
           "%s: waiting for the run to start (no run.json yet)", s->run_dir);
  const td__problem p = {.flag = "waiting",
                         .header = MHD_HTTP_HEADER_RETRY_AFTER,
                         .value = "1",
                         .cache = "no-store"};
  return td__reply_problem(c, MHD_HTTP_SERVICE_UNAVAILABLE, &p, msg);
}

static void poke_recorded(int epoch, void *ctx) {
  (void)epoch;
  td__watch_poke(ctx);
}

/* After each projected epoch. (The follower also keeps RUN/alerts.jsonl up
 * to date as epochs are recorded; the run watcher turns its changes into
 * `alert` events.) */
static void poke_projected(const td_live_epoch *e, void *ctx) {
  (void)e;
  td__watch_poke(ctx);
}

static void *live_main(void *arg) {
  td_server *s = arg;
  td_live_end end;
  td_err err;
  if (td_live_run(s->live, &end, &err) != TD_OK)
    fprintf(stderr, "tardis serve: no longer following %s: %s\n", s->run_dir,
            err.msg);
  else if (end == TD_LIVE_FINISHED)
    fprintf(stderr, "tardis serve: %s is finished and every epoch drawn\n",
            s->run_dir);
  td__watch_poke(s);
  return NULL;
}

int td__follow_start(td_server *s, td_err *err) {
  if (strcmp(s->method, "dvi") && strcmp(s->method, "pca"))
    return td_err_set(err, TD_EARG,
                      "--follow projects with dvi or pca, not '%s'", s->method);
  td_live_opts o;
  td_live_opts_default(&o);
  o.proj.method = s->method;
  o.yield_nice = s->follow_nice;
  o.on_recorded = poke_recorded;
  o.on_projected = poke_projected;
  o.ctx = s;
  int rc = td_live_open(s->run_dir, &o, &s->live, err);
  if (rc)
    return rc;
  if (pthread_create(&s->live_thread, NULL, live_main, s) != 0) {
    td_live_close(s->live);
    s->live = NULL;
    return td_err_set(err, TD_EIO, "cannot start the live projector thread");
  }
  s->live_started = 1;
  return TD_OK;
}

void td__follow_stop(td_server *s) {
  if (s->live_started) {
    td_live_stop(s->live);
    pthread_join(s->live_thread, NULL);
    s->live_started = 0;
  }
  td_live_close(s->live);
  s->live = NULL;
}

int td__follow_projecting(td_server *s) {
  if (!s->live)
    return -1;
  td_live_status st;
  td_live_get_status(s->live, &st);
  return st.projecting;
}

int td__follow_drawing(td_server *s) {
  if (!s->live)
    return 0;
  td_live_status st;
  td_live_get_status(s->live, &st);
  return !st.finished || st.n_projected < st.n_recorded || st.n_drafts > 0 ||
         st.projecting >= 0;
}
