/* run.json's "train": the options a run was trained with (docs/run-format.md),
 * so that it can be resumed or fine-tuned without the user repeating them. */
#include "train/options.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tardis/parallel.h"

static json_t *str_or_null(const char *s) {
  return s ? json_string(s) : json_null();
}

json_t *td__train_opts_json(const td_train_opts *o) {
  char seed[24];
  snprintf(seed, sizeof seed, "%" PRIu64, o->seed);
  json_t *j = json_object();
  json_object_set_new(j, "dataset", json_string(o->dataset));
  json_object_set_new(j, "data", str_or_null(o->data));
  json_object_set_new(j, "data_dir", str_or_null(o->data_dir));
  json_object_set_new(j, "model", json_string(o->model));
  json_object_set_new(j, "hidden", str_or_null(o->hidden));
  json_object_set_new(j, "batchnorm", json_boolean(o->batchnorm));
  json_object_set_new(j, "augment", str_or_null(o->augment));
  json_object_set_new(j, "optimizer", json_string(o->optimizer));
  json_object_set_new(j, "lr", json_real(o->lr));
  json_object_set_new(j, "momentum", json_real(o->momentum));
  json_object_set_new(j, "batch", json_integer(o->batch));
  json_object_set_new(j, "epochs", json_integer(o->epochs));
  json_object_set_new(j, "seed", json_string(seed));
  json_object_set_new(j, "noise", json_real(o->noise));
  json_object_set_new(j, "noise_type",
                      json_string(o->noise_type == TD_NOISE_ASYMMETRIC
                                      ? "asymmetric"
                                      : "symmetric"));
  json_object_set_new(j, "limit", json_integer(o->limit));
  json_object_set_new(j, "lr_spike_epoch", json_integer(o->lr_spike_epoch));
  json_object_set_new(j, "lr_spike_factor", json_real(o->lr_spike_factor));
  json_object_set_new(j, "lr_grow", json_real(o->lr_grow));
  json_object_set_new(j, "ood", str_or_null(o->ood));
  json_object_set_new(j, "tasks", str_or_null(o->tasks));
  json_object_set_new(j, "epochs_per_task", json_integer(o->epochs_per_task));
  json_object_set_new(j, "replay", json_integer(o->replay));
  json_object_set_new(j, "select", str_or_null(o->select));
  json_object_set_new(j, "pool", json_real(o->pool));
  json_object_set_new(j, "class_fraction", str_or_null(o->class_fraction));
  json_object_set_new(j, "save_model", json_boolean(o->save_model));
  /* only when set: an ordinary run's run.json stays as it was */
  if (o->repr_f16)
    json_object_set_new(j, "repr_dtype", json_string("float16"));
  if (o->record_subset)
    json_object_set_new(j, "record_subset", json_integer(o->record_subset));
  if (o->labels)
    json_object_set_new(j, "labels", json_string(o->labels));
  if (o->exclude) /* what select.npy was made from; not read back */
    json_object_set_new(j, "exclude", json_string(o->exclude));
  json_object_set_new(j, "threads", json_integer(td_threads()));
  return j;
}

typedef struct reader {
  const json_t *t;
  const char *path;
  td_err *err;
  int rc;
} reader;

static const json_t *get(reader *r, const char *key, int (*is)(const json_t *),
                         const char *what) {
  const json_t *v = json_object_get(r->t, key);
  if (r->rc == TD_OK && (!v || !is(v)))
    r->rc = td_err_set(r->err, TD_EFORMAT, "%s: \"train\".\"%s\" should be %s",
                       r->path, key, what);
  return r->rc == TD_OK ? v : NULL;
}

static int is_str(const json_t *v) { return json_is_string(v); }
static int is_str_null(const json_t *v) {
  return json_is_string(v) || json_is_null(v);
}
static int is_num(const json_t *v) { return json_is_number(v); }
static int is_int(const json_t *v) { return json_is_integer(v); }
static int is_bool(const json_t *v) { return json_is_boolean(v); }

static void rd_str(reader *r, const char *key, const char **dst) {
  const json_t *v = get(r, key, is_str, "a string");
  if (v)
    *dst = json_string_value(v);
}
static void rd_str_null(reader *r, const char *key, const char **dst) {
  const json_t *v = get(r, key, is_str_null, "a string or null");
  if (v)
    *dst = json_is_null(v) ? NULL : json_string_value(v);
}
static void rd_num(reader *r, const char *key, double *dst) {
  const json_t *v = get(r, key, is_num, "a number");
  if (v)
    *dst = json_number_value(v);
}
static void rd_int(reader *r, const char *key, int64_t lo, int64_t hi,
                   int64_t *dst) {
  const json_t *v = get(r, key, is_int, "an integer");
  if (v && (json_integer_value(v) < lo || json_integer_value(v) > hi))
    r->rc = td_err_set(r->err, TD_EVALUE,
                       "%s: \"train\".\"%s\" is out of range", r->path, key);
  if (v && r->rc == TD_OK)
    *dst = json_integer_value(v);
}

int td__train_opts_from_json(const json_t *root, const char *path,
                             td_train_opts *o, td_err *err) {
  reader r = {json_object_get(root, "train"), path, err, TD_OK};
  if (!json_is_object(r.t))
    return td_err_set(err, TD_EFORMAT,
                      "%s: no \"train\" options (a run written by tardis "
                      "train records them; this one cannot be resumed or "
                      "fine-tuned)",
                      path);
  const char *seed = NULL, *noise_type = NULL;
  int64_t batch = 0, epochs = 0, spike = 0, ept = 0;
  rd_str(&r, "dataset", &o->dataset);
  rd_str_null(&r, "data", &o->data);
  rd_str_null(&r, "data_dir", &o->data_dir);
  rd_str(&r, "model", &o->model);
  rd_str_null(&r, "hidden", &o->hidden);
  const json_t *bn = get(&r, "batchnorm", is_bool, "true or false");
  rd_str_null(&r, "augment", &o->augment);
  rd_str(&r, "optimizer", &o->optimizer);
  rd_num(&r, "lr", &o->lr);
  rd_num(&r, "momentum", &o->momentum);
  rd_int(&r, "batch", 1, INT32_MAX, &batch);
  rd_int(&r, "epochs", 0, INT32_MAX, &epochs);
  rd_str(&r, "seed", &seed);
  rd_num(&r, "noise", &o->noise);
  rd_str(&r, "noise_type", &noise_type);
  rd_int(&r, "limit", 0, INT64_MAX, &o->limit);
  rd_int(&r, "lr_spike_epoch", 0, INT32_MAX, &spike);
  rd_num(&r, "lr_spike_factor", &o->lr_spike_factor);
  rd_num(&r, "lr_grow", &o->lr_grow);
  rd_str_null(&r, "ood", &o->ood);
  rd_str_null(&r, "tasks", &o->tasks);
  rd_int(&r, "epochs_per_task", 0, INT32_MAX, &ept);
  rd_int(&r, "replay", 0, INT64_MAX, &o->replay);
  rd_str_null(&r, "select", &o->select);
  const json_t *sm = get(&r, "save_model", is_bool, "true or false");
  if (json_object_get(r.t, "pool")) /* optional: runs before pools */
    rd_num(&r, "pool", &o->pool);
  if (json_object_get(r.t, "class_fraction"))
    rd_str_null(&r, "class_fraction", &o->class_fraction);
  const char *repr_dtype = "float32"; /* optional: float32 when absent */
  if (json_object_get(r.t, "repr_dtype"))
    rd_str(&r, "repr_dtype", &repr_dtype);
  if (json_object_get(r.t, "record_subset"))
    rd_int(&r, "record_subset", 0, INT32_MAX, &o->record_subset);
  if (json_object_get(r.t, "labels")) /* optional: the dataset's when absent */
    rd_str_null(&r, "labels", &o->labels);
  if (!r.rc && strcmp(repr_dtype, "float32") && strcmp(repr_dtype, "float16"))
    r.rc = td_err_set(err, TD_EVALUE,
                      "%s: \"train\".\"repr_dtype\" should be \"float32\" or "
                      "\"float16\"",
                      path);
  o->repr_f16 = !strcmp(repr_dtype, "float16");
  int64_t threads = 0; /* optional: all CPUs when absent */
  if (json_object_get(r.t, "threads"))
    rd_int(&r, "threads", 0, 4096, &threads);
  if (r.rc)
    return r.rc;
  char *end;
  o->seed = strtoull(seed, &end, 10);
  if (!*seed || *end)
    return td_err_set(err, TD_EFORMAT,
                      "%s: \"train\".\"seed\" should be a decimal integer",
                      path);
  o->noise_type = !strcmp(noise_type, "asymmetric") ? TD_NOISE_ASYMMETRIC
                                                    : TD_NOISE_SYMMETRIC;
  o->batch = (int)batch;
  o->epochs = (int)epochs;
  o->lr_spike_epoch = (int)spike;
  o->epochs_per_task = (int)ept;
  o->save_model = json_is_true(sm);
  o->batchnorm = json_is_true(bn);
  o->threads = (int)threads;
  return TD_OK;
}
