/* The JSON/binary API under /api/ (docs/api.md is the reference). */
#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/json_file.h"
#include "run/run_json.h"
#include "server/server_internal.h"
#include "tardis/fsutil.h"
#include "tardis/knn.h"
#include "tardis/render.h"
#include "tardis/territory.h"
#include "tardis/vis.h"

#define MAX_FILTER_INDICES 100000

enum { SPLIT_TRAIN, SPLIT_TEST, SPLIT_TRUTH };
static const char *const split_names[] = {"train", "test", "truth"};

/* One API request: the server, the connection, and the run's read lock held
 * for the whole request. */
typedef struct req {
  td_server *s;
  struct MHD_Connection *c;
  const td_run *run;
  const td_run_meta *meta;
  const char *method; /* projection method of this request */
} req;

static const char *arg(const req *r, const char *key) {
  return MHD_lookup_connection_value(r->c, MHD_GET_ARGUMENT_KIND, key);
}

static json_t *jreal(double v) {
  return isfinite(v) ? json_real(v) : json_null();
}

static int64_t split_n(const req *r, int split) {
  return split == SPLIT_TEST ? r->meta->n_test : r->meta->n_train;
}

/* Parses ?split= into *split; 0 on success, else an error was queued into
 * *res. */
static int get_split(const req *r, int allow_truth, int *split,
                     enum MHD_Result *res) {
  const char *v = arg(r, "split");
  *split = SPLIT_TRAIN;
  if (!v || !strcmp(v, "train"))
    return 0;
  if (!strcmp(v, "test")) {
    *split = SPLIT_TEST;
    return 0;
  }
  if (allow_truth && !strcmp(v, "truth")) {
    *split = SPLIT_TRUTH;
    return 0;
  }
  *res = td__reply_error(r->c, 400, "bad split '%.32s' (train%s)", v,
                         allow_truth ? ", test or truth" : " or test");
  return -1;
}

/* An epoch number from a path segment or ?epoch= (default: the last). */
static int get_epoch(const req *r, const char *text, int *epoch,
                     enum MHD_Result *res) {
  int n = td_run_n_epochs(r->run);
  if (!text) {
    if (n == 0) {
      *res = td__reply_error(r->c, 404, "the run has no epochs yet");
      return -1;
    }
    *epoch = td_run_epoch_number(r->run, n - 1);
    return 0;
  }
  int64_t v;
  if (td__parse_i64(text, &v) || v < 0 || v > INT_MAX) {
    *res = td__reply_error(r->c, 400, "bad epoch '%.32s'", text);
    return -1;
  }
  if (td_run_epoch_index(r->run, (int)v) < 0) {
    *res = td__reply_error(r->c, 404, "no epoch %lld", (long long)v);
    return -1;
  }
  *epoch = (int)v;
  return 0;
}

/* A file of RUN/vis/<method> (epoch < 0) or of one of its epochs; "" when
 * the path does not fit, which then reads as absent. */
static void vis_path(const req *r, int epoch, const char *file, char *buf,
                     size_t len) {
  int rc = epoch < 0 ? td_vis_method_path(r->s->run_dir, r->method, file, buf,
                                          len, NULL)
                     : td_vis_epoch_path(r->s->run_dir, r->method, epoch, file,
                                         buf, len, NULL);
  if (rc)
    buf[0] = '\0';
}

/* A run array's path; "" when it does not fit, which reads as absent. */
static void run_path(const req *r, int epoch, const char *name, char *buf,
                     size_t len) {
  char dir[TD_PATH_MAX];
  int rc = epoch < 0 ? td_pathf(dir, sizeof dir, NULL, "%s", r->s->run_dir)
                     : td_run_epoch_path(r->run, epoch, dir, sizeof dir);
  if (rc || td_pathf(buf, len, NULL, "%s/%s.npy", dir, name))
    buf[0] = '\0';
}

/* Replies with the cache's error: absent → 404, anything else → 500. */
static enum MHD_Result load_error(const req *r, int rc, const td_err *e,
                                  const char *what) {
  if (rc == TD_ENOENT)
    return td__reply_error(r->c, 404, "%s not found", what);
  return td__reply_error(r->c, 500, "%s", e->msg);
}

/* A run array (epoch < 0: top level) through the cache. */
static int get_run_array(const req *r, int epoch, const char *name,
                         td__cache_entry **out, td_err *e) {
  char p[TD_PATH_MAX];
  run_path(r, epoch, name, p, sizeof p);
  return td__cache_get(r->s, p, epoch, name, out, e);
}

/* An N×2 embedding of the projection (n < 0: any rows), checked as every
 * reader of RUN/vis/ checks it. */
static int get_vis_array(const req *r, int epoch, const char *file, int64_t n,
                         td__cache_entry **out, td_err *e) {
  char p[TD_PATH_MAX];
  vis_path(r, epoch, file, p, sizeof p);
  int rc = td__cache_get(r->s, p, 0, NULL, out, e);
  if (rc)
    return rc;
  rc = td_vis_check_embedding(p, &(*out)->a, n, e);
  if (rc)
    td__cache_release(r->s, *out);
  return rc;
}

/* ---- /api/run, /api/epochs, /api/quality -------------------------------- */

static json_t *list_methods(const req *r) {
  json_t *a = json_array();
  char p[TD_PATH_MAX];
  DIR *d = td_vis_root(r->s->run_dir, p, sizeof p, NULL) ? NULL : opendir(p);
  if (!d)
    return a;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (de->d_name[0] == '.')
      continue;
    char q[TD_PATH_MAX];
    if (td_pathf(q, sizeof q, NULL, "%s/%s", p, de->d_name) == TD_OK &&
        td_path_is_dir(q))
      json_array_append_new(a, json_string(de->d_name));
  }
  closedir(d);
  return a;
}

static enum MHD_Result api_run(const req *r) {
  static const char *const files[] = {"train_labels", "test_labels",
                                      "train_truth", "train_inputs",
                                      "test_inputs"};
  const td_run_meta *m = r->meta;
  json_t *o = td__run_meta_json(m), *f = json_object(), *ep = json_array();
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
    json_object_set_new(f, files[i],
                        json_boolean(td_run_has(r->run, -1, files[i])));
  for (int i = 0; i < td_run_n_epochs(r->run); i++)
    json_array_append_new(ep, json_integer(td_run_epoch_number(r->run, i)));
  json_object_set_new(o, "files", f);
  if (td_run_subset(r->run)) { /* a subset run: n_train is the K recorded */
    json_object_set_new(o, "subset", json_true());
    json_object_set_new(o, "n_train_all",
                        json_integer(td_run_n_train_all(r->run)));
  }
  json_object_set_new(o, "methods", list_methods(r));
  json_object_set_new(o, "method", json_string(r->method));
  json_object_set_new(o, "n_epochs", json_integer(td_run_n_epochs(r->run)));
  json_object_set_new(o, "epochs", ep);
  json_object_set_new(o, "producer", json_string(m->producer));
  json_object_set_new(o, "created", json_string(m->created));
  /* Live mode: whether this server projects new epochs, the one it is
   * projecting now, whether the writer has marked the run finished, and
   * whether epochs are still to be drawn (a finished run's back-fill). */
  int busy = td__follow_projecting(r->s);
  json_object_set_new(o, "follow", json_boolean(r->s->live != NULL));
  json_object_set_new(o, "projecting",
                      busy >= 0 ? json_integer(busy) : json_null());
  json_object_set_new(o, "finished",
                      json_boolean(td_run_is_finished(td_run_dir(r->run))));
  json_object_set_new(o, "drawing", json_boolean(td__follow_drawing(r->s)));
  return td__reply_json(r->c, 200, o);
}

/* metrics.json comes from `tardis eval`; accept the plausible layouts. */
static json_t *quality_of(json_t *q, int epoch) {
  if (!q)
    return NULL;
  json_t *list = json_is_array(q) ? q : json_object_get(q, "epochs");
  if (json_is_array(list)) {
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) {
      json_t *e = json_object_get(v, "epoch");
      if (json_is_integer(e) && json_integer_value(e) == epoch)
        return v;
    }
    return NULL;
  }
  if (json_is_object(q)) {
    char key[16];
    snprintf(key, sizeof key, "%d", epoch);
    json_t *v = json_object_get(q, key);
    if (!v) {
      snprintf(key, sizeof key, "%04d", epoch);
      v = json_object_get(q, key);
    }
    return json_is_object(v) ? v : NULL;
  }
  return NULL;
}

static json_t *load_quality(const req *r) {
  char p[TD_PATH_MAX];
  vis_path(r, -1, "metrics.json", p, sizeof p);
  return td__json_load_file(p, 0, NULL);
}

static enum MHD_Result api_epochs(const req *r) {
  json_t *q = load_quality(r), *arr = json_array();
  for (int i = 0; i < td_run_n_epochs(r->run); i++) {
    int ep = td_run_epoch_number(r->run, i);
    json_t *e = json_object(), *metrics = NULL;
    char p[TD_PATH_MAX];
    if (td__run_load_epoch_json(r->run, ep, &metrics, NULL) != TD_OK)
      metrics = NULL;
    json_object_set_new(e, "epoch", json_integer(ep));
    json_object_set_new(e, "metrics", metrics ? metrics : json_null());
    vis_path(r, ep, "train_embedding.npy", p, sizeof p);
    json_object_set_new(e, "projected", json_boolean(td_path_exists(p)));
    json_object_set_new(
        e, "draft",
        json_boolean(td_vis_epoch_is_draft(td_run_dir(r->run), r->method, ep)));
    json_object_set_new(e, "has_test",
                        json_boolean(td_run_has(r->run, ep, "test_logits")));
    vis_path(r, ep, "territory.json", p, sizeof p);
    json_object_set_new(e, "has_territory", json_boolean(td_path_exists(p)));
    json_t *qe = quality_of(q, ep);
    json_object_set_new(e, "quality", qe ? json_incref(qe) : json_null());
    json_array_append_new(arr, e);
  }
  json_decref(q);
  return td__reply_json(
      r->c, 200, json_pack("{s:s,s:o}", "method", r->method, "epochs", arr));
}

static enum MHD_Result api_quality(const req *r) {
  json_t *q = load_quality(r);
  if (!q)
    return td__reply_error(r->c, 404, "no metrics.json for method %s",
                           r->method);
  return td__reply_json(r->c, 200, q);
}

/* ---- per-epoch arrays --------------------------------------------------- */

static enum MHD_Result api_embedding(const req *r, int epoch, int split) {
  int64_t n = split_n(r, split);
  char file[64], shape[48];
  snprintf(file, sizeof file, "%s_embedding.npy", split_names[split]);
  td__cache_entry *e;
  td_err err;
  int rc = get_vis_array(r, epoch, file, n, &e, &err);
  if (rc)
    return load_error(r, rc, &err, "embedding");
  snprintf(shape, sizeof shape, "%lld,2", (long long)n);
  enum MHD_Result res =
      td__reply_bin(r->c, e->a.data, e->a.nbytes, shape, "float32");
  td__cache_release(r->s, e);
  return res;
}

static enum MHD_Result api_boundary(const req *r, int epoch) {
  td__cache_entry *e;
  td_err err;
  int rc = get_vis_array(r, epoch, "boundary_embedding.npy", -1, &e, &err);
  if (rc)
    return load_error(r, rc, &err, "boundary embedding");
  char shape[48];
  snprintf(shape, sizeof shape, "%lld,2", (long long)e->a.shape[0]);
  enum MHD_Result res =
      td__reply_bin(r->c, e->a.data, e->a.nbytes, shape, "float32");
  td__cache_release(r->s, e);
  return res;
}

/* argmax (ties: smaller class) and, when conf is not NULL, the largest
 * softmax probability (the exps are most of the cost). */
static void judge_row(const float *z, int C, int *cls, double *conf) {
  int best = 0;
  for (int k = 1; k < C; k++)
    if (z[k] > z[best])
      best = k;
  *cls = best;
  if (!conf)
    return;
  double sum = 0;
  for (int k = 0; k < C; k++)
    sum += exp((double)z[k] - (double)z[best]);
  *conf = 1.0 / sum;
}

/* Class numbers (labels and predictions alike) go out in the narrowest of
 * uint8, int16, int32 that holds every class of the run (docs/api.md), so
 * a class >= 256 is neither wrapped nor refused. */
static size_t class_dtype(int n_classes, const char **name) {
  *name = n_classes <= 256 ? "uint8" : n_classes <= 32768 ? "int16" : "int32";
  return n_classes <= 256 ? 1 : n_classes <= 32768 ? 2 : 4;
}

static void put_class(void *out, size_t esz, int64_t i, int32_t c) {
  if (esz == 1)
    ((uint8_t *)out)[i] = (uint8_t)c;
  else if (esz == 2)
    ((int16_t *)out)[i] = (int16_t)c;
  else
    ((int32_t *)out)[i] = c;
}

/* The split's logits at an epoch, checked to have n_classes columns. */
static int get_logits(const req *r, int epoch, int split, td__cache_entry **out,
                      td_err *e) {
  return get_run_array(
      r, epoch, split == SPLIT_TEST ? "test_logits" : "train_logits", out, e);
}

static enum MHD_Result api_predictions(const req *r, int epoch, int split,
                                       int want_conf) {
  td__cache_entry *e;
  td_err err;
  int rc = get_logits(r, epoch, split, &e, &err);
  if (rc)
    return load_error(r, rc, &err, "logits");
  int64_t n = e->a.shape[0];
  int C = (int)e->a.shape[1];
  const char *dtype = "float32";
  size_t esz = want_conf ? sizeof(float) : class_dtype(C, &dtype);
  unsigned char *out = malloc((size_t)(n ? n : 1) * esz);
  if (!out) {
    td__cache_release(r->s, e);
    return td__reply_error(r->c, 500, "out of memory");
  }
  const float *z = e->a.data;
  for (int64_t i = 0; i < n; i++) {
    int cls;
    double conf;
    judge_row(z + i * C, C, &cls, want_conf ? &conf : NULL);
    if (want_conf)
      ((float *)out)[i] = (float)conf;
    else
      put_class(out, esz, i, cls);
  }
  td__cache_release(r->s, e);
  char shape[32];
  snprintf(shape, sizeof shape, "%lld", (long long)n);
  enum MHD_Result res = td__reply_bin(r->c, out, (size_t)n * esz, shape, dtype);
  free(out);
  return res;
}

static enum MHD_Result api_territory_json(const req *r, int epoch) {
  char p[TD_PATH_MAX];
  vis_path(r, epoch, "territory.json", p, sizeof p);
  json_t *t = td__json_load_file(p, 0, NULL);
  if (!t)
    return td__reply_error(r->c, 404, "epoch %d has no territory", epoch);
  json_t *res = json_object_get(t, "res"), *ext = json_object_get(t, "extent");
  if (!json_is_integer(res) || !json_is_array(ext) ||
      json_array_size(ext) != 4) {
    json_decref(t);
    return td__reply_error(r->c, 500, "%s: malformed", p);
  }
  char png[64], cls[64], conf[64];
  snprintf(png, sizeof png, "/api/epochs/%d/territory.png", epoch);
  snprintf(cls, sizeof cls, "/api/epochs/%d/territory/class", epoch);
  snprintf(conf, sizeof conf, "/api/epochs/%d/territory/conf", epoch);
  json_t *o = json_pack("{s:i,s:O,s:O,s:s,s:s,s:s}", "epoch", epoch, "res", res,
                        "extent", ext, "png", png, "class", cls, "conf", conf);
  json_decref(t);
  return td__reply_json(r->c, 200, o);
}

static enum MHD_Result api_territory_array(const req *r, int epoch, int conf) {
  char p[TD_PATH_MAX];
  vis_path(r, epoch, conf ? "territory_conf.npy" : "territory_class.npy", p,
           sizeof p);
  td__cache_entry *e;
  td_err err;
  int rc = td__cache_get(r->s, p, 0, NULL, &e, &err);
  if (rc)
    return load_error(r, rc, &err, "territory");
  const td_array *a = &e->a;
  enum MHD_Result res;
  if (a->ndim != 2 || a->dtype != (conf ? TD_F32 : TD_U8)) {
    res = td__reply_error(r->c, 500, "%s: expected %s [R, R]", p,
                          conf ? "float32" : "uint8");
  } else {
    char shape[48];
    snprintf(shape, sizeof shape, "%lld,%lld", (long long)a->shape[0],
             (long long)a->shape[1]);
    res = td__reply_bin(r->c, a->data, a->nbytes, shape,
                        conf ? "float32" : "uint8");
  }
  td__cache_release(r->s, e);
  return res;
}

/* ?view=x0,y0,x1,y1&w=W&h=H: the territory of that rectangle of the
 * canvas, decoded now from the stored projection (td_territory_of_view) at
 * about a third of the pixels per side, drawn at W × H. */
static enum MHD_Result api_territory_view(const req *r, int epoch,
                                          const char *view) {
  float e[4];
  char tail;
  int64_t w = 0, h = 0;
  const char *ws = arg(r, "w"), *hs = arg(r, "h");
  if (sscanf(view, "%f,%f,%f,%f%c", &e[0], &e[1], &e[2], &e[3], &tail) != 4 ||
      !(e[2] > e[0]) || !(e[3] > e[1]) || !isfinite(e[2] - e[0]) ||
      !isfinite(e[3] - e[1]))
    return td__reply_error(r->c, 400, "bad view '%.64s' (x0,y0,x1,y1)", view);
  if (!ws || !hs || td__parse_i64(ws, &w) || td__parse_i64(hs, &h) || w < 1 ||
      h < 1 || w > 4096 || h > 4096)
    return td__reply_error(r->c, 400, "view needs w and h, 1-4096");
  int64_t side = (w > h ? w : h) / 3;
  int res = (int)(side < 96 ? 96 : side > 384 ? 384 : side);
  td_territory t;
  td_err err;
  if (td_territory_of_view(r->run, r->method, epoch, e, res, &t, &err))
    return td__reply_error(r->c, 500, "%s", err.msg);
  td_render_buf png = {0};
  int rc = td_render_territory_png_wh(&t, (int)w, (int)h, td_render_sink_buf,
                                      &png, &err);
  td_territory_free(&t);
  enum MHD_Result res_ =
      rc ? td__reply_error(r->c, 500, "%s", err.msg)
         : td__reply_bytes(r->c, 200, png.data, png.len, "image/png");
  td_render_buf_free(&png);
  return res_;
}

/* The territory coloured as `tardis render` does; ?size= scales it. */
static enum MHD_Result api_territory_png(const req *r, int epoch) {
  int64_t size = 0;
  const char *sz = arg(r, "size");
  if (sz && (td__parse_i64(sz, &size) || size < 0 || size > 4096))
    return td__reply_error(r->c, 400, "bad size '%.32s' (0-4096)", sz);
  char dir[TD_PATH_MAX], p[TD_PATH_MAX];
  vis_path(r, epoch, "territory.json", p, sizeof p);
  if (!td_path_exists(p))
    return td__reply_error(r->c, 404, "epoch %d has no territory", epoch);
  if (td_vis_epoch_dir(r->s->run_dir, r->method, epoch, dir, sizeof dir))
    return td__reply_error(r->c, 500, "epoch %d: path too long", epoch);
  const char *view = arg(r, "view");
  if (view)
    return api_territory_view(r, epoch, view);
  void *hit;
  size_t hit_len;
  if (td__png_cache_get(r->s, dir, (int)size, &hit, &hit_len)) {
    enum MHD_Result res = td__reply_bytes(r->c, 200, hit, hit_len, "image/png");
    free(hit);
    return res;
  }
  td_territory t;
  td_err err;
  if (td_territory_load(dir, &t, &err))
    return td__reply_error(r->c, 500, "%s", err.msg);
  td_render_buf png = {0};
  td__cache_entry *ye = NULL;
  int rc = get_vis_array(r, epoch, "train_embedding.npy", r->meta->n_train, &ye,
                         &err);
  if (!rc) {
    const float *y = ye->a.data;
    int64_t n = ye->a.shape[0];
    rc = td_territory_set_data(&t, y, n, td_territory_data_radius(y, n));
    td__cache_release(r->s, ye);
  }
  if (!rc)
    rc = td_render_territory_png(&t, (int)size, td_render_sink_buf, &png, &err);
  td_territory_free(&t);
  if (!rc)
    td__png_cache_put(r->s, dir, (int)size, png.data, png.len);
  enum MHD_Result res =
      rc ? td__reply_error(r->c, 500, "%s", err.msg)
         : td__reply_bytes(r->c, 200, png.data, png.len, "image/png");
  td_render_buf_free(&png);
  return res;
}

/* ---- labels ------------------------------------------------------------- */

/* Labels of a split as int32 (train: owned by the run, never released). */
static int get_labels(const req *r, int split, const int32_t **lab,
                      td__cache_entry **e, td_err *err) {
  *e = NULL;
  if (split == SPLIT_TRAIN) {
    *lab = td_run_train_labels(r->run);
    return TD_OK;
  }
  int rc = get_run_array(
      r, -1, split == SPLIT_TEST ? "test_labels" : "train_truth", e, err);
  if (rc)
    return rc;
  *lab = (*e)->a.data;
  return TD_OK;
}

/* Per-sample cross-entropy of the epoch's logits under the split's labels
 * (log-sum-exp minus the label's logit), float32 [n]; NaN where a sample has
 * no label in [0, C). The UI colours by it (docs/api.md). */
static enum MHD_Result api_loss(const req *r, int epoch, int split) {
  td__cache_entry *e, *le;
  td_err err;
  const int32_t *lab;
  int rc = get_logits(r, epoch, split, &e, &err);
  if (rc)
    return load_error(r, rc, &err, "logits");
  rc = get_labels(r, split, &lab, &le, &err);
  if (rc) {
    td__cache_release(r->s, e);
    return load_error(r, rc, &err, "labels");
  }
  int64_t n = e->a.shape[0];
  int C = (int)e->a.shape[1];
  float *out = malloc((size_t)(n ? n : 1) * sizeof(float));
  if (!out) {
    td__cache_release(r->s, le);
    td__cache_release(r->s, e);
    return td__reply_error(r->c, 500, "out of memory");
  }
  int64_t nlab = split == SPLIT_TEST ? r->meta->n_test : r->meta->n_train;
  const float *z = e->a.data;
  for (int64_t i = 0; i < n; i++) {
    const float *zi = z + i * C;
    int cls;
    judge_row(zi, C, &cls, NULL);
    double lse = 0;
    for (int k = 0; k < C; k++)
      lse += exp((double)zi[k] - (double)zi[cls]);
    int l = i < nlab ? lab[i] : -1;
    out[i] = l >= 0 && l < C
                 ? (float)(log(lse) + (double)zi[cls] - (double)zi[l])
                 : NAN;
  }
  td__cache_release(r->s, le);
  td__cache_release(r->s, e);
  char shape[32];
  snprintf(shape, sizeof shape, "%lld", (long long)n);
  enum MHD_Result res =
      td__reply_bin(r->c, out, (size_t)n * sizeof(float), shape, "float32");
  free(out);
  return res;
}

/* The loss the trainer recorded per training sample (train_loss.npy). */
static enum MHD_Result api_recorded_loss(const req *r, int epoch) {
  td__cache_entry *e;
  td_err err;
  int rc = get_run_array(r, epoch, "train_loss", &e, &err);
  if (rc)
    return load_error(r, rc, &err, "train_loss");
  if (e->a.dtype != TD_F32 || e->a.ndim != 1 ||
      e->a.shape[0] != r->meta->n_train) {
    td__cache_release(r->s, e);
    return td__reply_error(r->c, 500,
                           "epoch %d: train_loss.npy is not float32 [%lld]",
                           epoch, (long long)r->meta->n_train);
  }
  int64_t n = e->a.shape[0];
  char shape[32];
  snprintf(shape, sizeof shape, "%lld", (long long)n);
  enum MHD_Result res = td__reply_bin(
      r->c, e->a.data, (size_t)n * sizeof(float), shape, "float32");
  td__cache_release(r->s, e);
  return res;
}

static enum MHD_Result api_labels(const req *r, int split) {
  const int32_t *lab;
  td__cache_entry *e;
  td_err err;
  int rc = get_labels(r, split, &lab, &e, &err);
  if (rc)
    return load_error(r, rc, &err,
                      split == SPLIT_TRUTH ? "train_truth" : "labels");
  int64_t n = split == SPLIT_TEST ? r->meta->n_test : r->meta->n_train;
  const char *dtype;
  size_t esz = class_dtype(r->meta->n_classes, &dtype);
  unsigned char *out = malloc((size_t)(n ? n : 1) * esz);
  enum MHD_Result res;
  if (!out) {
    res = td__reply_error(r->c, 500, "out of memory");
  } else {
    for (int64_t i = 0; i < n; i++)
      put_class(out, esz, i, lab[i]);
    char shape[32];
    snprintf(shape, sizeof shape, "%lld", (long long)n);
    res = td__reply_bin(r->c, out, (size_t)n * esz, shape, dtype);
    free(out);
  }
  td__cache_release(r->s, e);
  return res;
}

/* ---- samples ------------------------------------------------------------ */

static int parse_index(const req *r, const char *text, int split, int64_t *i,
                       enum MHD_Result *res) {
  if (td__parse_i64(text, i) || *i < 0) {
    *res = td__reply_error(r->c, 400, "bad sample index '%.32s'", text);
    return -1;
  }
  if (*i >= split_n(r, split)) {
    *res = td__reply_error(r->c, 404, "no %s sample %lld (n = %lld)",
                           split_names[split], (long long)*i,
                           (long long)split_n(r, split));
    return -1;
  }
  return 0;
}

static json_t *trajectory(const req *r, int split, int64_t i) {
  json_t *t = json_array();
  char file[64];
  snprintf(file, sizeof file, "%s_embedding.npy", split_names[split]);
  for (int k = 0; k < td_run_n_epochs(r->run); k++) {
    int ep = td_run_epoch_number(r->run, k);
    char p[TD_PATH_MAX];
    vis_path(r, ep, file, p, sizeof p);
    if (!td_path_exists(p))
      continue;
    td__cache_entry *e;
    if (get_vis_array(r, ep, file, split_n(r, split), &e, NULL))
      continue;
    const float *y = (const float *)e->a.data + 2 * i;
    json_array_append_new(t,
                          json_pack("[iff]", ep, (double)y[0], (double)y[1]));
    td__cache_release(r->s, e);
  }
  return t;
}

/* Adds label, truth, noisy; *label_out = the label or -1. */
static void sample_labels(const req *r, json_t *o, int split, int64_t i,
                          int *label_out) {
  const int32_t *lab;
  td__cache_entry *e;
  int label = -1;
  if (get_labels(r, split, &lab, &e, NULL) == TD_OK) {
    label = lab[i];
    td__cache_release(r->s, e);
  }
  int truth = -1;
  if (split == SPLIT_TRAIN &&
      get_labels(r, SPLIT_TRUTH, &lab, &e, NULL) == TD_OK) {
    truth = lab[i];
    td__cache_release(r->s, e);
  }
  const td_run_meta *m = r->meta;
  json_object_set_new(o, "label",
                      label >= 0 ? json_integer(label) : json_null());
  json_object_set_new(o, "label_name",
                      label >= 0 && label < m->n_classes
                          ? json_string(m->classes[label])
                          : json_null());
  json_object_set_new(o, "truth",
                      truth >= 0 ? json_integer(truth) : json_null());
  json_object_set_new(o, "noisy",
                      label >= 0 && truth >= 0 ? json_boolean(label != truth)
                                               : json_null());
  *label_out = label;
}

/* The k nearest neighbours of sample i among the samples of its split: in
 * the representation space (the classifier's view) and on the canvas, with
 * how many the two lists share. Self excluded. */
static json_t *knn_list(const float *x, int64_t n, int D, int64_t i, int k,
                        int *ids, td_err *err) {
  td_knn g;
  if (td_knn_query_exact(x, n, x + i * D, 1, D, k + 1, &g, err))
    return NULL;
  json_t *a = json_array();
  int m = 0;
  for (int j = 0; j < g.k && m < k; j++) {
    if (g.idx[j] == i)
      continue;
    ids[m++] = g.idx[j];
    json_array_append_new(a, json_pack("{s:i, s:f}", "index", (int)g.idx[j],
                                       "dist", (double)g.dist[j]));
  }
  td_knn_free(&g);
  return a;
}

static enum MHD_Result api_neighbors(const req *r, const char *itext) {
  enum MHD_Result res;
  int split, epoch;
  int64_t i, k = 10;
  const char *ks = arg(r, "k");
  if (get_split(r, 0, &split, &res) || parse_index(r, itext, split, &i, &res) ||
      get_epoch(r, arg(r, "epoch"), &epoch, &res))
    return res;
  int64_t n = split_n(r, split);
  if (ks && (td__parse_i64(ks, &k) || k < 1 || k > 50))
    return td__reply_error(r->c, 400, "bad k '%.32s' (1-50)", ks);
  if (k > n - 1)
    k = n - 1;
  if (k < 1)
    return td__reply_error(r->c, 404, "no other samples");
  char file[64];
  snprintf(file, sizeof file, "%s_embedding.npy", split_names[split]);
  td_array x = {0};
  td__cache_entry *ye = NULL;
  td_err err;
  int rc = td_run_load_f32(r->run, epoch,
                           split == SPLIT_TEST ? "test_repr" : "train_repr", &x,
                           &err);
  if (!rc)
    rc = get_vis_array(r, epoch, file, n, &ye, &err);
  if (rc) {
    td_array_close(&x);
    return load_error(r, rc, &err, "representation or embedding");
  }
  int hi_ids[50], lo_ids[50];
  json_t *hi = knn_list(x.data, n, (int)x.shape[1], i, (int)k, hi_ids, &err);
  json_t *lo = hi ? knn_list(ye->a.data, n, 2, i, (int)k, lo_ids, &err) : NULL;
  td__cache_release(r->s, ye);
  td_array_close(&x);
  if (!hi || !lo) {
    json_decref(hi);
    return td__reply_error(r->c, 500, "%s", err.msg);
  }
  int shared = 0;
  for (int a = 0; a < k; a++)
    for (int b = 0; b < k; b++)
      shared += hi_ids[a] == lo_ids[b];
  json_t *o =
      json_pack("{s:I, s:s, s:i, s:I, s:o, s:o, s:i}", "index", (json_int_t)i,
                "split", split_names[split], "epoch", epoch, "k", (json_int_t)k,
                "high", hi, "low", lo, "shared", shared);
  return td__reply_json(r->c, 200, o);
}

static enum MHD_Result api_sample(const req *r, const char *itext) {
  enum MHD_Result res;
  int split, epoch;
  int64_t i;
  if (get_split(r, 0, &split, &res) || parse_index(r, itext, split, &i, &res) ||
      get_epoch(r, arg(r, "epoch"), &epoch, &res))
    return res;
  json_t *o = json_object();
  json_object_set_new(o, "index", json_integer(i));
  if (split == SPLIT_TRAIN && td_run_subset(r->run)) /* its training index */
    json_object_set_new(o, "sample", json_integer(td_run_subset(r->run)[i]));
  json_object_set_new(o, "split", json_string(split_names[split]));
  json_object_set_new(o, "epoch", json_integer(epoch));
  int label;
  sample_labels(r, o, split, i, &label);

  td__cache_entry *e;
  json_t *pred = json_null(), *pname = json_null(), *loss = json_null(),
         *conf = json_null(), *logits = json_null();
  if (get_logits(r, epoch, split, &e, NULL) == TD_OK) {
    int C = (int)e->a.shape[1], cls;
    const float *z = (const float *)e->a.data + i * C;
    double c;
    judge_row(z, C, &cls, &c);
    pred = json_integer(cls);
    pname = cls < r->meta->n_classes ? json_string(r->meta->classes[cls])
                                     : json_null();
    conf = jreal(c);
    logits = json_array();
    for (int k = 0; k < C; k++)
      json_array_append_new(logits, jreal(z[k]));
    if (label >= 0 && label < C) {
      double lse = 0;
      for (int k = 0; k < C; k++)
        lse += exp((double)z[k] - (double)z[cls]);
      loss = jreal(log(lse) + (double)z[cls] - (double)z[label]);
    }
    td__cache_release(r->s, e);
  }
  if (split == SPLIT_TRAIN &&
      get_run_array(r, epoch, "train_loss", &e, NULL) == TD_OK) {
    if (e->a.dtype == TD_F32 && e->a.ndim == 1 && e->a.shape[0] > i) {
      json_decref(loss);
      loss = jreal(((const float *)e->a.data)[i]);
    }
    td__cache_release(r->s, e);
  }
  json_object_set_new(o, "prediction", pred);
  json_object_set_new(o, "prediction_name", pname);
  json_object_set_new(o, "loss", loss);
  json_object_set_new(o, "confidence", conf);
  json_object_set_new(o, "logits", logits);
  json_object_set_new(o, "trajectory", trajectory(r, split, i));
  json_object_set_new(
      o, "has_thumbnail",
      json_boolean(td_run_has(
          r->run, -1, split == SPLIT_TEST ? "test_inputs" : "train_inputs")));
  return td__reply_json(r->c, 200, o);
}

static enum MHD_Result api_thumbnail(const req *r, const char *itext) {
  enum MHD_Result res;
  int split;
  int64_t i, scale = 4;
  if (get_split(r, 0, &split, &res) || parse_index(r, itext, split, &i, &res))
    return res;
  const char *sc = arg(r, "scale");
  if (sc && (td__parse_i64(sc, &scale) || scale < 1 || scale > 16))
    return td__reply_error(r->c, 400, "bad scale '%.32s' (1-16)", sc);
  const char *name = split == SPLIT_TEST ? "test_inputs" : "train_inputs";
  td__cache_entry *e;
  td_err err;
  int rc = get_run_array(r, -1, name, &e, &err);
  if (rc == TD_ENOENT)
    return td__reply_error(r->c, 404, "the run stores no %s inputs",
                           split_names[split]);
  if (rc)
    return td__reply_error(r->c, 500, "%s", err.msg);
  const td_array *a = &e->a;
  /* [n, c, h, w], or [n, h, w] for single-channel images. */
  int c = a->ndim == 4 ? (int)a->shape[1] : 1;
  int h = (int)a->shape[a->ndim - 2], w = (int)a->shape[a->ndim - 1];
  if ((a->ndim != 3 && a->ndim != 4) || (c != 1 && c != 3) ||
      (a->dtype != TD_U8 && a->dtype != TD_F32) || a->shape[0] <= i) {
    td__cache_release(r->s, e);
    return td__reply_error(r->c, 404, "%s inputs are not images",
                           split_names[split]);
  }
  size_t per = (size_t)c * (size_t)h * (size_t)w;
  td_render_buf png = {0};
  if (a->dtype == TD_U8)
    rc = td_render_thumbnail_png((const uint8_t *)a->data + per * (size_t)i, c,
                                 h, w, (int)scale, td_render_sink_buf, &png);
  else
    rc =
        td_render_thumbnail_png_f32((const float *)a->data + per * (size_t)i, c,
                                    h, w, (int)scale, td_render_sink_buf, &png);
  td__cache_release(r->s, e);
  if (rc == TD_EARG)
    res = td__reply_error(r->c, 400, "image too large at scale %lld",
                          (long long)scale);
  else if (rc)
    res = td__reply_error(r->c, 500, "cannot render the thumbnail");
  else
    res = td__reply_bytes(r->c, 200, png.data, png.len, "image/png");
  td_render_buf_free(&png);
  return res;
}

/* ---- filter ------------------------------------------------------------- */

typedef struct filt {
  int64_t label, pred, miscls, noisy; /* -1: not given */
} filt;

static int parse_filter_int(const req *r, const char *key, int64_t lo,
                            int64_t hi, int64_t *out, enum MHD_Result *res) {
  const char *v = arg(r, key);
  *out = -1;
  if (!v)
    return 0;
  if (td__parse_i64(v, out) || *out < lo || *out > hi) {
    *res = td__reply_error(r->c, 400, "bad %s '%.32s'", key, v);
    return -1;
  }
  return 0;
}

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

/* ?indices=1,2,3 → sorted, unique int32 list. */
static int parse_indices(const req *r, int64_t n, int32_t **out, int64_t *k,
                         enum MHD_Result *res) {
  const char *v = arg(r, "indices");
  *out = NULL;
  *k = -1;
  if (!v)
    return 0;
  size_t cap = 1;
  for (const char *p = v; *p; p++)
    cap += *p == ',';
  if (cap > MAX_FILTER_INDICES) {
    *res =
        td__reply_error(r->c, 400, "more than %d indices", MAX_FILTER_INDICES);
    return -1;
  }
  int32_t *idx = malloc(cap * sizeof *idx);
  if (!idx) {
    *res = td__reply_error(r->c, 500, "out of memory");
    return -1;
  }
  int64_t m = 0;
  const char *p = v;
  for (;;) {
    const char *q = strchr(p, ',');
    size_t len = q ? (size_t)(q - p) : strlen(p);
    char num[24];
    int64_t x;
    if (len == 0 || len >= sizeof num) {
      free(idx);
      *res = td__reply_error(r->c, 400, "bad indices list");
      return -1;
    }
    memcpy(num, p, len);
    num[len] = '\0';
    if (td__parse_i64(num, &x) || x < 0 || x >= n) {
      free(idx);
      *res = td__reply_error(r->c, 400, "bad index '%s' (0 <= i < %lld)", num,
                             (long long)n);
      return -1;
    }
    idx[m++] = (int32_t)x;
    if (!q)
      break;
    p = q + 1;
  }
  qsort(idx, (size_t)m, sizeof *idx, cmp_i32);
  int64_t u = 0;
  for (int64_t j = 0; j < m; j++)
    if (u == 0 || idx[u - 1] != idx[j])
      idx[u++] = idx[j];
  *out = idx;
  *k = u;
  return 0;
}

static enum MHD_Result reply_indices(const req *r, const int32_t *v,
                                     int64_t k) {
  const char *fmt = arg(r, "format");
  if (fmt && !strcmp(fmt, "bin")) {
    char shape[32];
    snprintf(shape, sizeof shape, "%lld", (long long)k);
    return td__reply_bin(r->c, v, (size_t)k * sizeof *v, shape, "int32");
  }
  json_t *a = json_array();
  for (int64_t j = 0; j < k; j++)
    json_array_append_new(a, json_integer(v[j]));
  return td__reply_json(r->c, 200, a);
}

static enum MHD_Result api_filter(const req *r) {
  enum MHD_Result res;
  int split, epoch;
  filt f;
  int C = r->meta->n_classes;
  const char *fmt = arg(r, "format");
  if (fmt && strcmp(fmt, "bin") && strcmp(fmt, "json"))
    return td__reply_error(r->c, 400, "bad format '%.16s' (json or bin)", fmt);
  if (get_split(r, 0, &split, &res) ||
      parse_filter_int(r, "label", 0, C - 1, &f.label, &res) ||
      parse_filter_int(r, "pred", 0, C - 1, &f.pred, &res) ||
      parse_filter_int(r, "misclassified", 0, 1, &f.miscls, &res) ||
      parse_filter_int(r, "noisy", 0, 1, &f.noisy, &res))
    return res;
  int need_pred = f.pred >= 0 || f.miscls >= 0;
  if (need_pred && get_epoch(r, arg(r, "epoch"), &epoch, &res))
    return res;
  if (!need_pred && arg(r, "epoch") &&
      get_epoch(r, arg(r, "epoch"), &epoch, &res))
    return res;
  if (f.noisy >= 0 && split != SPLIT_TRAIN)
    return td__reply_error(r->c, 400, "noisy applies to the train split only");
  int64_t n = split_n(r, split), k;
  int32_t *idx;
  if (parse_indices(r, n, &idx, &k, &res))
    return res;

  td__cache_entry *le = NULL, *te = NULL, *ze = NULL;
  const int32_t *lab = NULL, *truth = NULL;
  const float *z = NULL;
  int Cz = 0;
  td_err err;
  int rc = TD_OK;
  if ((f.label >= 0 || f.miscls >= 0 || f.noisy >= 0) &&
      (rc = get_labels(r, split, &lab, &le, &err)))
    res = load_error(r, rc, &err, "labels");
  if (!rc && f.noisy >= 0 &&
      (rc = get_labels(r, SPLIT_TRUTH, &truth, &te, &err)))
    res = load_error(r, rc, &err, "train_truth");
  if (!rc && need_pred && (rc = get_logits(r, epoch, split, &ze, &err)))
    res = load_error(r, rc, &err, "logits");
  if (!rc) {
    if (ze) {
      z = ze->a.data;
      Cz = (int)ze->a.shape[1];
    }
    int64_t total = k >= 0 ? k : n, m = 0;
    int32_t *out = malloc((size_t)(total ? total : 1) * sizeof *out);
    if (!out) {
      res = td__reply_error(r->c, 500, "out of memory");
    } else {
      for (int64_t j = 0; j < total; j++) {
        int64_t i = idx ? idx[j] : j;
        if (f.label >= 0 && lab[i] != f.label)
          continue;
        if (f.noisy >= 0 && (lab[i] != truth[i]) != (f.noisy == 1))
          continue;
        if (z) {
          int cls;
          judge_row(z + i * Cz, Cz, &cls, NULL);
          if (f.pred >= 0 && cls != f.pred)
            continue;
          if (f.miscls >= 0 && (cls != lab[i]) != (f.miscls == 1))
            continue;
        }
        out[m++] = (int32_t)i;
      }
      res = reply_indices(r, out, m);
      free(out);
    }
  }
  td__cache_release(r->s, le);
  td__cache_release(r->s, te);
  td__cache_release(r->s, ze);
  free(idx);
  return res;
}

/* The rows of a subset run whose samples are in trained[0..n) (both
 * ascending): the UI addresses rows. Malloc'd; NULL when out of memory. */
static int32_t *trained_rows(const req *r, const int32_t *trained, int64_t n,
                             int64_t *n_rows) {
  const int32_t *sub = td_run_subset(r->run);
  int64_t k = r->meta->n_train, m = 0;
  int32_t *rows = malloc((size_t)(k ? k : 1) * sizeof *rows);
  for (int64_t i = 0, j = 0; rows && i < k && j < n;) {
    if (sub[i] < trained[j])
      i++;
    else if (sub[i] > trained[j])
      j++;
    else
      rows[m++] = (int32_t)i++;
  }
  *n_rows = m;
  return rows;
}

/* trained.npy (continual learning): int32 [K], checked by td_run_load; in
 * a subset run the recorded rows among them. */
static enum MHD_Result api_trained(const req *r, int epoch) {
  td__cache_entry *e;
  td_err err;
  int rc = get_run_array(r, epoch, "trained", &e, &err);
  if (rc)
    return load_error(r, rc, &err, "trained.npy");
  if (td_run_subset(r->run)) {
    int64_t m;
    int32_t *rows = trained_rows(r, e->a.data, e->a.shape[0], &m);
    td__cache_release(r->s, e);
    if (!rows)
      return td__reply_error(r->c, 500, "out of memory");
    char shape[32];
    snprintf(shape, sizeof shape, "%lld", (long long)m);
    enum MHD_Result res =
        td__reply_bin(r->c, rows, (size_t)m * sizeof *rows, shape, "int32");
    free(rows);
    return res;
  }
  char shape[32];
  snprintf(shape, sizeof shape, "%lld", (long long)e->a.shape[0]);
  enum MHD_Result res =
      td__reply_bin(r->c, e->a.data, e->a.nbytes, shape, "int32");
  td__cache_release(r->s, e);
  return res;
}

/* A subset run's training index of each recorded row, int32 [K]. */
static enum MHD_Result api_subset(const req *r) {
  const int32_t *sub = td_run_subset(r->run);
  if (!sub)
    return td__reply_error(r->c, 404,
                           "not a subset run (it records every sample)");
  char shape[32];
  snprintf(shape, sizeof shape, "%lld", (long long)r->meta->n_train);
  return td__reply_bin(r->c, sub, (size_t)r->meta->n_train * sizeof *sub, shape,
                       "int32");
}

/* ---- routing ------------------------------------------------------------ */

static int valid_method(const char *m) {
  size_t n = strlen(m);
  if (n == 0 || n > 32)
    return 0;
  return strspn(m, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                   "0123456789-_") == n;
}

static enum MHD_Result route_epoch(const req *r, char **seg, int nseg) {
  enum MHD_Result res;
  int epoch, split;
  if (get_epoch(r, seg[1], &epoch, &res))
    return res;
  const char *what = seg[2];
  if (nseg == 4 && !strcmp(what, "territory")) {
    if (!strcmp(seg[3], "class"))
      return api_territory_array(r, epoch, 0);
    if (!strcmp(seg[3], "conf"))
      return api_territory_array(r, epoch, 1);
    return td__reply_error(r->c, 404, "no such route");
  }
  if (nseg != 3)
    return td__reply_error(r->c, 404, "no such route");
  if (!strcmp(what, "territory"))
    return api_territory_json(r, epoch);
  if (!strcmp(what, "territory.png"))
    return api_territory_png(r, epoch);
  if (!strcmp(what, "boundary"))
    return api_boundary(r, epoch);
  if (!strcmp(what, "trained"))
    return api_trained(r, epoch);
  if (!strcmp(what, "recorded_loss"))
    return api_recorded_loss(r, epoch);
  if (get_split(r, 0, &split, &res))
    return res;
  if (!strcmp(what, "embedding"))
    return api_embedding(r, epoch, split);
  if (!strcmp(what, "predictions"))
    return api_predictions(r, epoch, split, 0);
  if (!strcmp(what, "confidence"))
    return api_predictions(r, epoch, split, 1);
  if (!strcmp(what, "loss"))
    return api_loss(r, epoch, split);
  return td__reply_error(r->c, 404, "no such route");
}

static enum MHD_Result route(const req *r, char **seg, int nseg) {
  enum MHD_Result res;
  int split;
  const char *a = seg[0];
  if (nseg == 1 && !strcmp(a, "run"))
    return api_run(r);
  if (nseg == 1 && !strcmp(a, "epochs"))
    return api_epochs(r);
  if (nseg == 1 && !strcmp(a, "quality"))
    return api_quality(r);
  if (nseg == 1 && !strcmp(a, "labels"))
    return get_split(r, 1, &split, &res) ? res : api_labels(r, split);
  if (nseg == 1 && !strcmp(a, "filter"))
    return api_filter(r);
  if (nseg == 1 && !strcmp(a, "subset"))
    return api_subset(r);
  if ((nseg == 3 || nseg == 4) && !strcmp(a, "epochs"))
    return route_epoch(r, seg, nseg);
  if (nseg == 2 && !strcmp(a, "samples"))
    return api_sample(r, seg[1]);
  if (nseg == 3 && !strcmp(a, "samples") && !strcmp(seg[2], "thumbnail.png"))
    return api_thumbnail(r, seg[1]);
  if (nseg == 3 && !strcmp(a, "samples") && !strcmp(seg[2], "neighbors"))
    return api_neighbors(r, seg[1]);
  if (!strcmp(a, "suspects"))
    return td__suspects_get(r->s, r->c, r->run, seg, nseg);
  if (nseg == 1 && !strcmp(a, "alerts"))
    return td__alerts_get(r->s, r->c, r->run);
  if (!strcmp(a, "diagnosis"))
    return td__diagnosis_get(r->s, r->c, r->run, seg, nseg);
  if (nseg == 1 && !strcmp(a, "repair"))
    return td__repair_get(r->s, r->c, r->run);
  return td__reply_error(r->c, 404, "no such route");
}

enum MHD_Result td__api_route(td_server *s, struct MHD_Connection *c,
                              const char *url) {
  char path[TD__URL_MAX + 1];
  char *seg[8];
  int nseg = 0;
  /* fits: server.c refuses URLs longer than TD__URL_MAX */
  snprintf(path, sizeof path, "%s", url + (strncmp(url, "/api/", 5) ? 4 : 5));
  for (char *p = path, *save = NULL, *t; (t = strtok_r(p, "/", &save));
       p = NULL) {
    if (nseg == 8)
      return td__reply_error(c, 404, "no such route");
    seg[nseg++] = t;
  }
  if (nseg == 0)
    return td__reply_error(c, 404, "no such route");
  if (!td__follow_run_ready(s))
    return td__reply_waiting(s, c);
  req r = {s, c, NULL, NULL, s->method};
  const char *m =
      MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "method");
  if (m) {
    if (!valid_method(m))
      return td__reply_error(c, 400, "bad method '%.32s'", m);
    r.method = m;
  }
  pthread_rwlock_rdlock(&s->run_lock);
  r.run = s->run;
  r.meta = td_run_get_meta(s->run);
  enum MHD_Result res = route(&r, seg, nseg);
  pthread_rwlock_unlock(&s->run_lock);
  return res;
}
