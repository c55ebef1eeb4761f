/* GET /api/alerts: the alerts of RUN/alerts.jsonl (docs/api.md), and the
 * stamp the event watcher compares to notice that file changing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "server/server_internal.h"
#include "tardis/alloc.h"
#include "tardis/fsutil.h"

/* Checks one alert against docs/api.md; NULL when fine, else what is
 * wrong. */
static const char *alert_problem(const json_t *a, int n_classes) {
  static const char *const strings[] = {"metric", "severity", "message"};
  if (!json_is_object(a))
    return "not a JSON object";
  json_t *ep = json_object_get(a, "epoch");
  if (!json_is_integer(ep) || json_integer_value(ep) < 0)
    return "\"epoch\" is not a non-negative integer";
  for (size_t i = 0; i < sizeof strings / sizeof *strings; i++)
    if (!json_is_string(json_object_get(a, strings[i])))
      return i == 0   ? "\"metric\" is not a string"
             : i == 1 ? "\"severity\" is not a string"
                      : "\"message\" is not a string";
  /* null: a value the detector could not compute (not finite) */
  json_t *v = json_object_get(a, "value"), *x = json_object_get(a, "expected");
  if (!json_is_number(v) && !json_is_null(v))
    return "\"value\" is not a number";
  if (!json_is_number(x) && !json_is_null(x))
    return "\"expected\" is not a number";
  json_t *cls = json_object_get(a, "classes"), *c;
  size_t i;
  if (!cls)
    return NULL;
  if (!json_is_array(cls))
    return "\"classes\" is not an array";
  json_array_foreach(cls, i, c) {
    if (!json_is_integer(c) || json_integer_value(c) < 0 ||
        json_integer_value(c) >= n_classes)
      return "\"classes\" holds something that is not a class index";
  }
  return NULL;
}

/* Parses the lines of text (NUL-terminated) into *out. A final line without
 * its newline that does not parse is being appended right now and is left
 * out; any other bad line is an error naming it. */
static int parse_alerts(const char *path, char *text, int n_classes,
                        json_t **out, td_err *err) {
  json_t *arr = json_array();
  int line = 0;
  for (char *p = text; *p;) {
    char *nl = strchr(p, '\n');
    int complete = nl != NULL;
    if (nl)
      *nl = '\0';
    line++;
    char *q = p;
    p = nl ? nl + 1 : p + strlen(p);
    if (q[strspn(q, " \t\r")] == '\0')
      continue; /* blank */
    json_error_t je;
    json_t *a = json_loads(q, JSON_REJECT_DUPLICATES, &je);
    if (!a && !complete)
      break;
    const char *why = a ? alert_problem(a, n_classes) : je.text;
    if (why) {
      json_decref(a);
      json_decref(arr);
      return td_err_set(err, TD_EFORMAT, "%s: line %d: %s", path, line, why);
    }
    json_array_append_new(arr, a);
  }
  *out = arr;
  return TD_OK;
}

enum MHD_Result td__alerts_get(td_server *s, struct MHD_Connection *c,
                               const td_run *run) {
  char path[TD_PATH_MAX], *text = NULL;
  size_t len;
  td_err err;
  if (td_pathf(path, sizeof path, &err, "%s/alerts.jsonl", s->run_dir))
    return td__reply_error(c, 500, "%s", err.msg);
  int rc = td_read_file(path, &text, &len, &err);
  if (rc == TD_ENOENT)
    return td__reply_json(c, 200, json_array());
  if (rc)
    return td__reply_error(c, 500, "%s", err.msg);
  json_t *arr = NULL;
  if (strlen(text) != len)
    rc = td_err_set(&err, TD_EFORMAT, "%s: holds a NUL byte", path);
  else
    rc = parse_alerts(path, text, td_run_get_meta(run)->n_classes, &arr, &err);
  td_free(text);
  if (rc)
    return td__reply_error(c, 500, "%s", err.msg);
  return td__reply_json(c, 200, arr);
}

int64_t td__alerts_stamp(const char *run_dir) {
  char p[TD_PATH_MAX];
  struct stat st;
  if (td_pathf(p, sizeof p, NULL, "%s/alerts.jsonl", run_dir) ||
      stat(p, &st) != 0)
    return 0;
  /* the size too: appends within one mtime tick still count */
  uint64_t t =
      (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
  return (int64_t)(t * 31u + (uint64_t)st.st_size);
}
