/* tardis alerts RUN: the geometry of every epoch and the alerts it raises
 * (docs/alerts.md); writes RUN/alerts.jsonl and RUN/geometry.jsonl, the
 * same files `tardis watch` keeps up to date while a run trains. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "tardis/alerts.h"
#include "tardis/run.h"

static void print_text(const td_alerts_state *s) {
  int n = td_alerts_count(s);
  for (int i = 0; i < n; i++) {
    const td_alert *a = td_alerts_get(s, i);
    printf("epoch %4d  %-8s  %-13s  %s\n", a->epoch,
           a->critical ? "critical" : "warning", td_geom_metric_name(a->metric),
           a->message);
  }
  int base = td_alerts_baseline_epoch(s);
  printf("%d alert%s over %d epochs", n, n == 1 ? "" : "s",
         td_alerts_n_epochs(s));
  if (n)
    printf("; first at epoch %d", td_alerts_get(s, 0)->epoch);
  if (base)
    printf("; the test loss first exceeds its running minimum by 5%% at "
           "epoch %d",
           base);
  printf("\n");
}

static void print_json(const td_alerts_state *s, const char *dir) {
  int n = td_alerts_count(s), base = td_alerts_baseline_epoch(s);
  json_t *d = json_string(dir);
  char *dtxt = d ? json_dumps(d, JSON_ENCODE_ANY) : NULL;
  json_decref(d);
  printf("{\"run\": %s, \"epochs\": %d, \"first_alert\": ",
         dtxt ? dtxt : "null", td_alerts_n_epochs(s));
  free(dtxt);
  printf(n ? "%d" : "null", n ? td_alerts_get(s, 0)->epoch : 0);
  printf(", \"baseline_epoch\": ");
  printf(base ? "%d" : "null", base);
  printf(", \"alerts\": [");
  char line[2048];
  for (int i = 0; i < n; i++) {
    td_alert_format(td_alerts_get(s, i), line, sizeof line);
    printf("%s%s", i ? ",\n  " : "\n  ", line);
  }
  printf("]}\n");
}

int td_cmd_alerts(int argc, char **argv) {
  const char *dir = NULL;
  int json = 0;
  td_alerts_opts o;
  td_alerts_opts_default(&o);
  td_opt opts[] = {
      TD_OPT_FLAG("json", &json, "print the alerts as JSON"),
      TD_OPT_INT("sample", &o.sample, 2, TD_ARG_INF, "N",
                 "samples whose neighbours are searched (default 1024)"),
      TD_OPT_INT("k", &o.k, 1, 256, "N", "neighbours per sample (default 10)"),
      TD_OPT_INT("warmup", &o.warmup, 0, TD_ARG_INF, "N",
                 "no alert in the first N epochs (default 3)"),
      TD_OPT_DOUBLE("z", &o.z_jump, 0, TD_ARG_INF, TD_ARG_GT, "X",
                    "a jump is a step X robust standard deviations\n"
                    "beyond the expected one (default 6)"),
      TD_OPT_END};
  td_arg_pos pos[] = {{"RUN", &dir}, {0}};
  td_args_cmd cmd = {
      .name = "alerts",
      .usage = "alerts RUN [options]",
      .about = "Measures the geometry of the representations at every epoch "
               "and\nlists the alerts it raises; writes RUN/alerts.jsonl and "
               "RUN/geometry.jsonl.",
      .opts = opts,
      .pos = pos};
  int status;
  if (!td_args_parse(&cmd, argc, argv, &status))
    return status;
  td_err err = {0};
  td_run *run = NULL;
  td_alerts_state *s = NULL;
  int rc = td_run_open(dir, &run, &err);
  if (!rc)
    rc = td_alerts_state_new(&o, &s, &err);
  if (!rc)
    rc = td_alerts_add_run(s, run, &err);
  if (!rc)
    rc = td_alerts_write(s, dir, &err);
  if (!rc) {
    if (json)
      print_json(s, dir);
    else
      print_text(s);
  } else {
    fprintf(stderr, "tardis alerts: error: %s\n",
            err.msg[0] ? err.msg : td_strerror(rc));
  }
  td_alerts_state_free(s);
  td_run_close(run);
  return rc ? 1 : 0;
}
