/* tardis watch RUN: follow a run while it is written and project each epoch
 * as it lands (include/tardis/live.h), one line per projected epoch. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "tardis/live.h"
#include "tardis/parallel.h"

typedef struct {
  int json;
} watch_ctx;

/* After each projected epoch. */
static void on_projected(const td_live_epoch *e, void *ctx) {
  const watch_ctx *c = ctx;
  if (c->json)
    printf("{\"epoch\":%d,\"draft\":%s,\"cold\":%s,\"preview\":%s,"
           "\"seconds\":%.3f,"
           "\"latency\":%.3f,"
           "\"newest\":%d,\"lag\":%d,\"warm_from\":%d,\"backfill\":%s,"
           "\"redo\":%s,\"yielded\":%s,\"raised\":%s,\"recorded\":%d,"
           "\"projected\":%d}\n",
           e->epoch, e->draft ? "true" : "false", e->cold ? "true" : "false",
           e->preview ? "true" : "false", e->seconds, e->latency, e->newest,
           e->lag, e->warm_from, e->backfill ? "true" : "false",
           e->redo ? "true" : "false", e->low_priority ? "true" : "false",
           e->raised ? "true" : "false", e->n_recorded, e->n_projected);
  else if (e->preview && e->warm_from < 0)
    printf("epoch %4d  preview in %6.2f s (a full cold fit; the in-order fit "
           "follows)\n",
           e->epoch, e->seconds);
  else if (e->preview)
    printf("epoch %4d  preview in %6.2f s (a full fit warm from epoch %d; "
           "the in-order fit follows)\n",
           e->epoch, e->seconds, e->warm_from);
  else if (e->draft)
    printf("epoch %4d  draft in %6.2f s with epoch %d's %smodel  lag %d "
           "(newest recorded %d)\n",
           e->epoch, e->seconds, e->warm_from, e->cold ? "sampled " : "",
           e->lag, e->newest);
  else
    printf("epoch %4d  projected in %6.2f s  lag %d (newest recorded %d)%s%s\n",
           e->epoch, e->seconds, e->lag, e->newest,
           e->redo       ? "  replaces its draft"
           : e->backfill ? "  back-filled"
                         : "",
           e->low_priority ? "  (yielded to the trainer)" : "");
  fflush(stdout);
}

/* Each new alert (the follower computes them as epochs are recorded and
 * keeps RUN/alerts.jsonl up to date): one line, or its JSON object. */
static void on_alert(const td_alert *a, void *ctx) {
  const watch_ctx *c = ctx;
  char line[1024];
  int n = td_alert_format(a, line, sizeof line);
  if (n < 0 || (size_t)n >= sizeof line)
    return; /* cannot happen: messages are at most 200 bytes */
  if (c->json)
    printf("{\"alert\":%s}\n", line);
  else
    printf("ALERT epoch %4d  %s  %s\n", a->epoch,
           a->critical ? "critical" : "warning ", a->message);
  fflush(stdout);
}

static td_live *the_live; /* for the signal handler */

static void on_signal(int sig) {
  (void)sig;
  if (the_live)
    td_live_stop(the_live); /* async-signal-safe */
}

static void catch_stop_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

int td_cmd_watch(int argc, char **argv) {
  td_live_opts o;
  td_live_opts_default(&o);
  td_cli_proj_env(&o.proj);
  watch_ctx wc = {0};
  int threads = 0, poll = 0;
  const char *dir = NULL;
  static const char *const methods[] = {"dvi", "pca", NULL};
  td_opt opts[] = {
      TD_OPT_CHOICE_STR("method", &o.proj.method, methods,
                        "projection method (default dvi)"),
      TD_OPT_DOUBLE("exit-idle", &o.exit_idle, 0, TD_ARG_INF, TD_ARG_GT, "S",
                    "stop after S seconds with no new epoch and nothing\n"
                    "left to project"),
      TD_OPT_FLAG("json", &wc.json, "one JSON object a line"),
      TD_OPT_INT("res", &o.proj.territory_res, 8, 4096, "R",
                 "territory resolution (default 256)"),
      TD_OPT_SEED("seed", &o.proj.seed, "default 1"),
      TD_OPT_INT("threads", &threads, 0, TD_ARG_INF, "T", "default: all CPUs"),
      TD_OPT_UNFLAG("no-alerts", &o.alerts,
                    "do not compute alerts (RUN/alerts.jsonl)"),
      TD_OPT_FLAG("poll", &poll,
                  "look for new epochs by polling only (no inotify)"),
      TD_OPT_INT("nice", &o.yield_nice, 0, 19, "N",
                 "while the run is being written, fits, drafts and alerts\n"
                 "run at idle priority (SCHED_IDLE) and this nice value\n"
                 "(default 19; 0: never yield to the trainer)"),
      TD_OPT_UNFLAG("no-drafts", &o.drafts,
                    "no drafts: every epoch drawn by its full fit only"),
      TD_OPT_END};
  const td_arg_pos pos[] = {{"RUN", &dir}, {0}};
  td_args_cmd cmd = {
      .name = "watch",
      .usage = "watch RUN [--method dvi|pca] [--exit-idle S] [--json]",
      .about =
          "Follows the run directory RUN while it is written (RUN may "
          "still be empty)\nand projects each new epoch as it lands, "
          "warm-started from the newest\nprojected one; when training "
          "outruns the projection the newest epoch\nis drawn at once as a "
          "draft (placed by the newest fully fitted epoch's\nmodel; "
          "before any is, by a model fitted on a sample of 5000\npoints) "
          "and every epoch's full fit follows in order. Prints one\nline "
          "per projected epoch: its projection time and how many\nrecorded "
          "epochs are newer.\nComputes the geometry alerts of each recorded "
          "epoch "
          "(docs/alerts.md), prints\neach new one and keeps "
          "RUN/alerts.jsonl up to date.",
      .after = "Stops by itself once the run is marked finished and every "
               "epoch is projected.\nExit status: 0 done or stopped (Ctrl-C), "
               "1 error (e.g. RUN disappeared), 2 bad usage.",
      .opts = opts,
      .pos = pos};
  int status;
  if (!td_args_parse(&cmd, argc, argv, &status))
    return status;
  td_set_threads(threads);
  o.inotify = !poll;
  o.on_projected = on_projected;
  o.on_alert = on_alert;
  o.ctx = &wc;
  td_err err = {0};
  td_live *lv;
  if (td_live_open(dir, &o, &lv, &err) != TD_OK) {
    fprintf(stderr, "tardis watch: %s\n", err.msg);
    return 1;
  }
  /* the run is open from here on: removing it now is "disappeared" */
  fprintf(stderr, "tardis watch: following %s\n", dir);
  the_live = lv;
  catch_stop_signals();
  td_live_end end = TD_LIVE_STOPPED;
  int rc = td_live_run(lv, &end, &err);
  td_live_status st;
  td_live_get_status(lv, &st);
  the_live = NULL;
  td_live_close(lv);
  if (rc != TD_OK) {
    fprintf(stderr, "tardis watch: %s\n", err.msg);
    return 1;
  }
  fprintf(stderr, "tardis watch: %s; %d of %d recorded epochs projected\n",
          end == TD_LIVE_FINISHED ? "run finished"
          : end == TD_LIVE_IDLE   ? "idle, stopping"
                                  : "stopped",
          st.n_projected, st.n_recorded);
  return 0;
}
