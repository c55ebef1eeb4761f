/* `tardis serve --follow`: the live projector on a thread owned by the
 * server. It projects each epoch as it is recorded; the run watcher
 * (server.c) turns what appears on disk into events, and is poked so that
 * a projection reaches the browsers at once rather than at the next poll. */
#include <stdio.h>
#include <string.h>

#include "server/server_internal.h"
#include "tardis/live.h"

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
