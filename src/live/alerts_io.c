/* RUN/alerts.jsonl and RUN/geometry.jsonl: one JSON object a line, each
 * file written whole through a temporary file and a rename, so that a
 * reader (the server, a user's script) never sees half a line and a killed
 * process leaves a valid file. Numbers carry 6 significant digits: enough
 * to read, and the same bytes whichever path computed them. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tardis/alerts.h"
#include "tardis/fsutil.h"

#define JSON_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6))

static json_t *num(double x) {
  return isfinite(x) ? json_real(x) : json_null();
}

static json_t *alert_json(const td_alert *a) {
  json_t *o = json_object(), *cl = json_array();
  if (!o || !cl) {
    json_decref(o);
    json_decref(cl);
    return NULL;
  }
  json_object_set_new(o, "epoch", json_integer(a->epoch));
  json_object_set_new(o, "metric", json_string(td_geom_metric_name(a->metric)));
  json_object_set_new(o, "value", num(a->value));
  json_object_set_new(o, "expected", num(a->expected));
  json_object_set_new(o, "z", num(a->z));
  json_object_set_new(o, "severity",
                      json_string(a->critical ? "critical" : "warning"));
  json_object_set_new(o, "rule", json_string(a->drift ? "drift" : "jump"));
  for (int i = 0; i < a->n_classes; i++)
    json_array_append_new(cl, json_integer(a->classes[i]));
  json_object_set_new(o, "classes", cl);
  json_object_set_new(o, "message", json_string(a->message));
  return o;
}

int td_alert_format(const td_alert *a, char *buf, size_t len) {
  json_t *o = alert_json(a);
  char *txt = o ? json_dumps(o, JSON_FLAGS) : NULL;
  json_decref(o);
  int n = snprintf(buf, len, "%s", txt ? txt : "{}");
  free(txt);
  return n;
}

/* Appends one JSON line to a growing buffer; 0 or TD_ENOMEM. */
static int append(json_t *o, char **buf, size_t *len, size_t *cap) {
  char *txt = o ? json_dumps(o, JSON_FLAGS) : NULL;
  json_decref(o);
  if (!txt)
    return TD_ENOMEM;
  size_t n = strlen(txt);
  if (*len + n + 2 > *cap) {
    size_t c = 2 * (*len + n + 2);
    char *b = realloc(*buf, c);
    if (!b) {
      free(txt);
      return TD_ENOMEM;
    }
    *buf = b;
    *cap = c;
  }
  memcpy(*buf + *len, txt, n);
  (*buf)[*len + n] = '\n';
  *len += n + 1;
  free(txt);
  return TD_OK;
}

static json_t *geometry_json(const td_alerts_state *s, int i) {
  json_t *o = json_object();
  if (!o)
    return NULL;
  json_object_set_new(o, "epoch", json_integer(td_alerts_epoch(s, i)));
  const double *v = td_alerts_geometry(s, i);
  for (int m = 0; m < TD_GEOM_COUNT; m++)
    json_object_set_new(o, td_geom_metric_name((td_geom_metric)m), num(v[m]));
  return o;
}

static int write_lines(const char *run_dir, const char *name,
                       const td_alerts_state *s, int geometry, td_err *err) {
  char path[TD_PATH_MAX];
  int rc = td_pathf(path, sizeof path, err, "%s/%s", run_dir, name);
  if (rc)
    return rc;
  char *buf = NULL;
  size_t len = 0, cap = 0;
  int n = geometry ? td_alerts_n_epochs(s) : td_alerts_count(s);
  for (int i = 0; i < n && !rc; i++)
    rc =
        append(geometry ? geometry_json(s, i) : alert_json(td_alerts_get(s, i)),
               &buf, &len, &cap);
  if (rc)
    rc = td_err_set(err, rc, "%s: out of memory", path);
  else
    rc = td_write_file_atomic(path, buf ? buf : "", len, err);
  free(buf);
  return rc;
}

int td_alerts_write(const td_alerts_state *s, const char *run_dir,
                    td_err *err) {
  int rc = write_lines(run_dir, "geometry.jsonl", s, 1, err);
  return rc ? rc : write_lines(run_dir, "alerts.jsonl", s, 0, err);
}
