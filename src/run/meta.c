/* run.json: parsing, checking and writing the metadata of a run, plus small
 * helpers shared by the rest of src/run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_file.h"
#include "run/run_internal.h"
#include "tardis/fsutil.h"

void td__epoch_name(int epoch, char *buf, size_t len) {
  snprintf(buf, len, "%04d", epoch);
}

int td__plain_name(const char *name) {
  return name && name[0] && name[0] != '.' && !strchr(name, '/') &&
         !strchr(name, '\\');
}

const char *td__json_type_str(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT:
    return "an object";
  case JSON_ARRAY:
    return "an array";
  case JSON_STRING:
    return "a string";
  case JSON_INTEGER:
    return "an integer";
  case JSON_REAL:
    return "a real number";
  case JSON_TRUE:
  case JSON_FALSE:
    return "a boolean";
  default:
    return "null";
  }
}

void td__err_name_path(td_err *err, const char *path) {
  if (err && !strstr(err->msg, path))
    td_err_prefix(err, "%s", path);
}

void td__meta_free(td_run_meta *m) {
  if (!m)
    return;
  if (m->classes) {
    for (int i = 0; i < m->n_classes; i++)
      td_free(m->classes[i]);
    td_free(m->classes);
  }
  td_free(m->task_of_class);
  m->task_of_class = NULL;
  m->n_tasks = 0;
  m->classes = NULL;
  m->n_classes = 0;
}

/* Fetches a required field, or fails naming it. */
static int field(const json_t *root, const char *path, const char *key,
                 json_t **out, td_err *err) {
  *out = json_object_get(root, key);
  if (!*out)
    return td_err_set(err, TD_EFORMAT, "%s: missing field \"%s\"", path, key);
  return TD_OK;
}

static int field_str(const json_t *root, const char *path, const char *key,
                     char *buf, size_t cap, td_err *err) {
  json_t *v;
  int rc = field(root, path, key, &v, err);
  if (rc)
    return rc;
  if (!json_is_string(v))
    return td_err_set(err, TD_EFORMAT,
                      "%s: field \"%s\" should be a string, found %s", path,
                      key, td__json_type_str(v));
  if (json_string_length(v) >= cap)
    return td_err_set(err, TD_EVALUE,
                      "%s: field \"%s\" is %zu bytes long, at most %zu allowed",
                      path, key, json_string_length(v), cap - 1);
  memcpy(buf, json_string_value(v), json_string_length(v) + 1);
  return TD_OK;
}

static int field_int(const json_t *root, const char *path, const char *key,
                     int64_t lo, int64_t hi, int64_t *out, td_err *err) {
  json_t *v;
  int rc = field(root, path, key, &v, err);
  if (rc)
    return rc;
  if (!json_is_integer(v))
    return td_err_set(err, TD_EFORMAT,
                      "%s: field \"%s\" should be an integer, found %s", path,
                      key, td__json_type_str(v));
  json_int_t x = json_integer_value(v);
  if (x < lo || x > hi)
    return td_err_set(err, TD_EVALUE,
                      "%s: field \"%s\" is %lld, expected an integer in "
                      "[%lld, %lld]",
                      path, key, (long long)x, (long long)lo, (long long)hi);
  *out = (int64_t)x;
  return TD_OK;
}

static int parse_classes(const json_t *root, const char *path, td_run_meta *m,
                         td_err *err) {
  json_t *v;
  int rc = field(root, path, "classes", &v, err);
  if (rc)
    return rc;
  /* A classifier needs two classes at least (territories compare the top
   * two logits); the Python recorder enforces the same. */
  if (!json_is_array(v) || json_array_size(v) < 2)
    return td_err_set(err, TD_EFORMAT,
                      "%s: field \"classes\" should be an array of at least "
                      "2 class names, found %s",
                      path, json_is_array(v) ? "fewer" : td__json_type_str(v));
  if (json_array_size(v) > 1000000)
    return td_err_set(err, TD_EVALUE, "%s: %zu classes is too many", path,
                      json_array_size(v));
  size_t n = json_array_size(v);
  for (size_t i = 0; i < n; i++) {
    json_t *c = json_array_get(v, i);
    if (!json_is_string(c) || json_string_length(c) == 0)
      return td_err_set(err, TD_EFORMAT,
                        "%s: \"classes\"[%zu] should be a non-empty string, "
                        "found %s",
                        path, i,
                        json_is_string(c) ? "\"\"" : td__json_type_str(c));
  }
  m->classes = td_calloc(n, sizeof *m->classes);
  if (!m->classes)
    return td_err_set(err, TD_ENOMEM, "%s: out of memory", path);
  m->n_classes = (int)n;
  for (size_t i = 0; i < n; i++) {
    m->classes[i] = td_strdup(json_string_value(json_array_get(v, i)));
    if (!m->classes[i])
      return td_err_set(err, TD_ENOMEM, "%s: out of memory", path);
  }
  return TD_OK;
}

static int parse_input_shape(const json_t *root, const char *path,
                             td_run_meta *m, td_err *err) {
  json_t *v;
  int rc = field(root, path, "input_shape", &v, err);
  if (rc)
    return rc;
  m->has_input_shape = 0;
  if (json_is_null(v))
    return TD_OK;
  if (!json_is_array(v) || json_array_size(v) != 3)
    return td_err_set(err, TD_EFORMAT,
                      "%s: field \"input_shape\" should be [c, h, w] or null, "
                      "found %s",
                      path, td__json_type_str(v));
  for (int i = 0; i < 3; i++) {
    json_t *d = json_array_get(v, (size_t)i);
    if (!json_is_integer(d) || json_integer_value(d) < 1 ||
        json_integer_value(d) > INT32_MAX)
      return td_err_set(err, TD_EFORMAT,
                        "%s: \"input_shape\"[%d] should be a positive integer",
                        path, i);
    m->input_shape[i] = (int)json_integer_value(d);
  }
  m->has_input_shape = 1;
  return TD_OK;
}

static int parse_format(const json_t *root, const char *path, td_err *err) {
  if (!json_is_object(root))
    return td_err_set(err, TD_EFORMAT, "%s: expected a JSON object, found %s",
                      path, td__json_type_str(root));
  char format[64];
  int rc = field_str(root, path, "format", format, sizeof format, err);
  if (rc == TD_EVALUE || (rc == TD_OK && strcmp(format, "tardis-run") != 0))
    return td_err_set(
        err, TD_EFORMAT,
        "%s: \"format\" should be \"tardis-run\", found \"%.60s\"", path,
        rc ? json_string_value(json_object_get(root, "format")) : format);
  if (rc)
    return rc;
  json_t *v;
  if ((rc = field(root, path, "version", &v, err)))
    return rc;
  if (!json_is_integer(v))
    return td_err_set(err, TD_EFORMAT,
                      "%s: field \"version\" should be an integer, found %s",
                      path, td__json_type_str(v));
  json_int_t version = json_integer_value(v);
  if (version > TD_RUN_VERSION)
    return td_err_set(err, TD_EVERSION,
                      "%s: format version %lld is newer than this tardis "
                      "supports (%d)",
                      path, (long long)version, TD_RUN_VERSION);
  if (version < 1)
    return td_err_set(err, TD_EFORMAT,
                      "%s: format version %lld is not valid (expected %d)",
                      path, (long long)version, TD_RUN_VERSION);
  return TD_OK;
}

/* Digits at s[0..n), advancing *s. */
static int digits(const char **s, int n) {
  for (int i = 0; i < n; i++, (*s)++)
    if (**s < '0' || **s > '9')
      return 0;
  return 1;
}

static int lit(const char **s, char c) { return *(*s)++ == c; }

/* YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM|-HH:MM), as the recorders write it. */
static int iso8601(const char *s) {
  if (!(digits(&s, 4) && lit(&s, '-') && digits(&s, 2) && lit(&s, '-') &&
        digits(&s, 2) && lit(&s, 'T') && digits(&s, 2) && lit(&s, ':') &&
        digits(&s, 2) && lit(&s, ':') && digits(&s, 2)))
    return 0;
  if (*s == '.') {
    s++;
    if (!digits(&s, 1))
      return 0;
    while (*s >= '0' && *s <= '9')
      s++;
  }
  if (*s == 'Z')
    return s[1] == 0;
  if (*s != '+' && *s != '-')
    return 0;
  s++;
  return digits(&s, 2) && lit(&s, ':') && digits(&s, 2) && *s == 0;
}

/* The optional "parent": {"run": "...", "epoch": E} of a child run. */
static int parse_parent(const json_t *root, const char *path, td_run_meta *m,
                        td_err *err) {
  json_t *p = json_object_get(root, "parent");
  m->parent[0] = 0;
  m->parent_epoch = 0;
  if (!p || json_is_null(p))
    return TD_OK;
  if (!json_is_object(p))
    return td_err_set(err, TD_EFORMAT,
                      "%s: field \"parent\" should be an object or null, "
                      "found %s",
                      path, td__json_type_str(p));
  int64_t e;
  int rc = field_str(p, path, "run", m->parent, sizeof m->parent, err);
  if (!rc)
    rc = field_int(p, path, "epoch", 0, INT32_MAX, &e, err);
  if (rc)
    return rc; /* the message names run.json and the field */
  if (!m->parent[0])
    return td_err_set(err, TD_EFORMAT, "%s: \"parent\".\"run\" is empty", path);
  m->parent_epoch = (int)e;
  return TD_OK;
}

int td__meta_from_json(const json_t *root, const char *path, td_run_meta *m,
                       td_err *err) {
  memset(m, 0, sizeof *m);
  int rc = parse_format(root, path, err);
  int64_t x;
  if (!rc)
    rc = field_str(root, path, "name", m->name, sizeof m->name, err);
  if (!rc)
    rc = parse_classes(root, path, m, err);
  if (!rc &&
      !(rc = field_int(root, path, "n_train", 1, INT64_MAX / 2, &x, err)))
    m->n_train = x;
  if (!rc && !(rc = field_int(root, path, "n_test", 0, INT64_MAX / 2, &x, err)))
    m->n_test = x;
  if (!rc && !(rc = field_int(root, path, "repr_dim", 1, INT32_MAX, &x, err)))
    m->repr_dim = (int)x;
  if (!rc)
    rc = parse_input_shape(root, path, m, err);
  if (!rc)
    rc =
        field_str(root, path, "producer", m->producer, sizeof m->producer, err);
  if (!rc)
    rc = field_str(root, path, "created", m->created, sizeof m->created, err);
  if (!rc && !iso8601(m->created))
    rc = td_err_set(err, TD_EFORMAT,
                    "%s: field \"created\" should be an ISO-8601 time such "
                    "as 2024-11-25T08:30:00Z, found \"%s\"",
                    path, m->created);
  if (!rc)
    rc = td__tasks_from_json(root, path, m, err);
  if (!rc)
    rc = parse_parent(root, path, m, err);
  if (rc)
    td__meta_free(m);
  return rc;
}

int td__meta_read(const char *run_dir, td_run_meta *m, td_err *err) {
  char path[TD_PATH_MAX];
  memset(m, 0, sizeof *m);
  int rc = td_pathf(path, sizeof path, err, "%s/run.json", run_dir);
  if (rc)
    return rc;
  if (!td_path_exists(path))
    return td_err_set(err, TD_ENOENT,
                      "%s: no such file (is %s a tardis run directory?)", path,
                      run_dir);
  json_error_t jerr;
  json_t *root = td__json_load_file(path, 0, &jerr);
  if (!root)
    return td_err_set(err, TD_EFORMAT, "%s: invalid JSON at line %d: %s", path,
                      jerr.line, jerr.text);
  rc = td__meta_from_json(root, path, m, err);
  json_decref(root);
  return rc;
}

int td__meta_check(const td_run_meta *m, td_err *err) {
  if (!m || m->n_classes < 2 || !m->classes)
    return td_err_set(err, TD_EARG, "run metadata: at least 2 classes needed");
  for (int i = 0; i < m->n_classes; i++)
    if (!m->classes[i] || !m->classes[i][0])
      return td_err_set(err, TD_EARG, "run metadata: class %d has no name", i);
  if (m->created[0] && !iso8601(m->created))
    return td_err_set(err, TD_EARG,
                      "run metadata: created \"%.63s\" is not ISO-8601",
                      m->created);
  if (m->n_train < 1 || m->n_test < 0 || m->repr_dim < 1)
    return td_err_set(err, TD_EARG,
                      "run metadata: need n_train >= 1, n_test >= 0, "
                      "repr_dim >= 1 (got %lld, %lld, %d)",
                      (long long)m->n_train, (long long)m->n_test, m->repr_dim);
  if (m->has_input_shape)
    for (int i = 0; i < 3; i++)
      if (m->input_shape[i] < 1)
        return td_err_set(err, TD_EARG,
                          "run metadata: input_shape[%d] is %d, expected >= 1",
                          i, m->input_shape[i]);
  if (!memchr(m->name, 0, sizeof m->name) ||
      !memchr(m->parent, 0, sizeof m->parent) || m->parent_epoch < 0 ||
      !memchr(m->producer, 0, sizeof m->producer) ||
      !memchr(m->created, 0, sizeof m->created))
    return td_err_set(err, TD_EARG, "run metadata: unterminated string");
  return td__tasks_check(m, err);
}

json_t *td__meta_to_json(const td_run_meta *m) {
  json_t *o = json_object(), *classes = json_array(), *shape = NULL;
  if (!o || !classes)
    goto fail;
  for (int i = 0; i < m->n_classes; i++)
    if (json_array_append_new(classes, json_string(m->classes[i])))
      goto fail;
  if (m->has_input_shape) {
    shape = json_pack("[iii]", m->input_shape[0], m->input_shape[1],
                      m->input_shape[2]);
  } else {
    shape = json_null();
  }
  if (!shape)
    goto fail;
  /* json_*_new steal references, so after the first set only `o` is ours. */
  int bad = json_object_set_new(o, "format", json_string("tardis-run"));
  bad |= json_object_set_new(o, "version", json_integer(TD_RUN_VERSION));
  bad |= json_object_set_new(o, "name", json_string(m->name));
  bad |= json_object_set_new(o, "classes", classes);
  bad |= json_object_set_new(o, "n_train", json_integer(m->n_train));
  bad |= json_object_set_new(o, "n_test", json_integer(m->n_test));
  bad |= json_object_set_new(o, "repr_dim", json_integer(m->repr_dim));
  bad |= json_object_set_new(o, "input_shape", shape);
  bad |= json_object_set_new(o, "producer", json_string(m->producer));
  bad |= json_object_set_new(o, "created", json_string(m->created));
  bad |= td__tasks_to_json(m, o) != 0;
  if (m->parent[0])
    bad |= json_object_set_new(
        o, "parent",
        json_pack("{s:s, s:i}", "run", m->parent, "epoch", m->parent_epoch));
  if (bad) {
    json_decref(o);
    return NULL;
  }
  return o;
fail:
  json_decref(o);
  json_decref(classes);
  json_decref(shape);
  return NULL;
}

json_t *td__run_meta_json(const td_run_meta *m) {
  json_t *o = json_object(), *classes = json_array();
  for (int i = 0; i < m->n_classes; i++)
    json_array_append_new(classes, json_string(m->classes[i]));
  json_object_set_new(o, "name", json_string(m->name));
  json_object_set_new(o, "producer", json_string(m->producer));
  json_object_set_new(o, "created", json_string(m->created));
  json_object_set_new(o, "classes", classes);
  json_object_set_new(o, "n_classes", json_integer(m->n_classes));
  json_object_set_new(o, "n_train", json_integer(m->n_train));
  json_object_set_new(o, "n_test", json_integer(m->n_test));
  json_object_set_new(o, "repr_dim", json_integer(m->repr_dim));
  json_object_set_new(o, "input_shape",
                      m->has_input_shape
                          ? json_pack("[iii]", m->input_shape[0],
                                      m->input_shape[1], m->input_shape[2])
                          : json_null());
  td__tasks_to_json(m, o); /* like the fields above: best effort */
  if (m->parent[0])
    json_object_set_new(
        o, "parent",
        json_pack("{s:s, s:i}", "run", m->parent, "epoch", m->parent_epoch));
  return o;
}
