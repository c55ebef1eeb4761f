/* Saving and loading the projection model: vismodel.json beside the
 * encoder/ and decoder/ td_net checkpoints, written atomically. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_file.h"
#include "tardis/fsutil.h"
#include "vismodel_internal.h"

#define VIS_FORMAT "tardis-vismodel"
#define VIS_VERSION 1

static json_t *model_to_json(const td_vismodel *m) {
  const td_vis_params *p = &m->params;
  json_t *mean = json_array();
  for (int j = 0; mean && j < m->dim; j++)
    if (json_array_append_new(mean, json_real((double)m->mean[j]))) {
      json_decref(mean);
      return NULL;
    }
  if (!mean)
    return NULL;
  return json_pack(
      "{s:s, s:i, s:i, s:i, s:i, s:f, s:o, s:{s:f, s:f, s:i, s:i, s:f, s:f, "
      "s:f, s:f, s:i, s:I, s:f, s:i, s:f, s:I}}",
      "format", VIS_FORMAT, "version", VIS_VERSION, "repr_dim", m->dim,
      "hidden", td_net_dim(m->enc, 1), "n_hidden_layers",
      td_net_n_layers(m->enc) - 1, "scale", (double)m->scale, "mean", mean,
      "params", "lr", (double)p->lr, "lr_min", (double)p->lr_min, "batch_edges",
      p->batch_edges, "n_negatives", p->n_negatives, "lambda_rec",
      (double)p->lambda_rec, "rec_fraction", (double)p->rec_fraction, "a",
      (double)p->a, "b", (double)p->b, "max_epochs", p->max_epochs,
      "pass_edges", (json_int_t)p->pass_edges, "min_improvement",
      (double)p->min_improvement, "temporal", p->temporal, "lambda_temporal",
      (double)p->lambda_temporal, "seed", (json_int_t)p->seed);
}

static int write_model(const td_vismodel *m, const char *tmp, td_err *err) {
  char path[TD_PATH_MAX];
  int rc = td_mkdirs(tmp, err);
  if (rc)
    return rc;
  if (td_path_join(path, sizeof path, tmp, "encoder") ||
      (rc = td_net_save(m->enc, path, err)))
    return rc ? rc : td_err_set(err, TD_ERANGE, "%s: path too long", tmp);
  if (td_path_join(path, sizeof path, tmp, "decoder") ||
      (rc = td_net_save(m->dec, path, err)))
    return rc ? rc : td_err_set(err, TD_ERANGE, "%s: path too long", tmp);
  json_t *j = model_to_json(m);
  char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
  json_decref(j);
  if (!text)
    return td_err_set(err, TD_ENOMEM, "%s: out of memory", tmp);
  if (td_path_join(path, sizeof path, tmp, "vismodel.json"))
    rc = td_err_set(err, TD_ERANGE, "%s: path too long", tmp);
  else
    rc = td_write_file_atomic(path, text, strlen(text), err);
  free(text);
  return rc;
}

int td_vismodel_save(const td_vismodel *m, const char *dir, td_err *err) {
  char tmp[TD_PATH_MAX], old[TD_PATH_MAX];
  if (!dir || !*dir)
    return td_err_set(err, TD_EARG, "vismodel: bad directory name");
  int rc = td_pathf(tmp, sizeof tmp, err, "%s.tmp", dir);
  if (rc == TD_OK)
    rc = td_pathf(old, sizeof old, err, "%s.old", dir);
  if (rc == TD_OK)
    rc = td_remove_tree(tmp, err);
  if (rc == TD_OK)
    rc = write_model(m, tmp, err);
  /* Move an existing model aside rather than delete it first, so a crash
   * leaves either the old or the new one in place. */
  if (rc == TD_OK && td_path_exists(dir)) {
    if ((rc = td_remove_tree(old, err)) == TD_OK && rename(dir, old) != 0)
      rc = td_err_set(err, TD_EIO, "%s: cannot move aside", dir);
  }
  if (rc == TD_OK && rename(tmp, dir) != 0) {
    rename(old, dir);
    rc = td_err_set(err, TD_EIO, "%s: cannot rename into place", dir);
  }
  if (rc != TD_OK) {
    td_remove_tree_best_effort(tmp);
    return rc;
  }
  td_remove_tree_best_effort(old);
  return TD_OK;
}

static double jnum(json_t *o, const char *key, double def) {
  json_t *v = json_object_get(o, key);
  return json_is_number(v) ? json_number_value(v) : def;
}

static int parse_model(json_t *root, const char *path, td_vismodel *m,
                       td_err *err) {
  json_t *mean = json_object_get(root, "mean");
  if (!json_is_array(mean) || (int)json_array_size(mean) != m->dim)
    return td_err_set(err, TD_EFORMAT, "%s: \"mean\" must hold %d numbers",
                      path, m->dim);
  for (int j = 0; j < m->dim; j++) {
    json_t *v = json_array_get(mean, (size_t)j);
    if (!json_is_number(v))
      return td_err_set(err, TD_EFORMAT, "%s: \"mean\" must hold numbers",
                        path);
    m->mean[j] = (float)json_number_value(v);
  }
  m->scale = (float)jnum(root, "scale", 1.0);
  if (!(m->scale > 0.0f) || !isfinite(m->scale))
    return td_err_set(err, TD_EFORMAT, "%s: bad \"scale\"", path);
  td_vis_params *p = &m->params;
  td_vis_params_default(p, m->dim);
  p->hidden = td_net_dim(m->enc, 1);
  p->n_hidden_layers = td_net_n_layers(m->enc) - 1;
  json_t *o = json_object_get(root, "params");
  if (json_is_object(o)) {
    p->lr = (float)jnum(o, "lr", (double)p->lr);
    p->lr_min = (float)jnum(o, "lr_min", (double)p->lr_min);
    p->batch_edges = (int)jnum(o, "batch_edges", p->batch_edges);
    p->n_negatives = (int)jnum(o, "n_negatives", p->n_negatives);
    p->lambda_rec = (float)jnum(o, "lambda_rec", (double)p->lambda_rec);
    p->rec_fraction = (float)jnum(o, "rec_fraction", (double)p->rec_fraction);
    p->a = (float)jnum(o, "a", (double)p->a);
    p->b = (float)jnum(o, "b", (double)p->b);
    p->max_epochs = (int)jnum(o, "max_epochs", p->max_epochs);
    p->pass_edges = (int64_t)jnum(o, "pass_edges", (double)p->pass_edges);
    p->min_improvement =
        (float)jnum(o, "min_improvement", (double)p->min_improvement);
    p->temporal = (int)jnum(o, "temporal", p->temporal);
    p->lambda_temporal =
        (float)jnum(o, "lambda_temporal", (double)p->lambda_temporal);
    p->seed = (uint64_t)jnum(o, "seed", (double)p->seed);
  }
  return TD_OK;
}

int td_vismodel_load(const char *dir, td_vismodel **out, td_err *err) {
  *out = NULL;
  char path[TD_PATH_MAX];
  if (td_path_join(path, sizeof path, dir, "vismodel.json"))
    return td_err_set(err, TD_ERANGE, "%s: path too long", dir);
  json_error_t jerr;
  json_t *root = td__json_load_file(path, 0, &jerr);
  if (!root)
    return td_err_set(err, td_path_exists(path) ? TD_EFORMAT : TD_ENOENT,
                      "%s: %s", path, jerr.text);
  int rc = TD_OK;
  td_net *enc = NULL, *dec = NULL;
  td_vismodel *m = NULL;
  json_t *fmt = json_object_get(root, "format");
  json_t *ver = json_object_get(root, "version");
  json_t *dim = json_object_get(root, "repr_dim");
  if (!json_is_string(fmt) || strcmp(json_string_value(fmt), VIS_FORMAT) ||
      !json_is_integer(ver) || !json_is_integer(dim) ||
      json_integer_value(dim) < 1) {
    rc = td_err_set(err, TD_EFORMAT, "%s: not a tardis projection model", path);
    goto done;
  }
  if (json_integer_value(ver) > VIS_VERSION) {
    rc = td_err_set(err, TD_EVERSION,
                    "%s: version %lld is newer than this tardis (%d)", path,
                    (long long)json_integer_value(ver), VIS_VERSION);
    goto done;
  }
  int d = (int)json_integer_value(dim);
  char sub[TD_PATH_MAX];
  if ((rc = td_pathf(sub, sizeof sub, err, "%s/encoder", dir)) ||
      (rc = td_net_load(sub, &enc, err)))
    goto done;
  if ((rc = td_pathf(sub, sizeof sub, err, "%s/decoder", dir)) ||
      (rc = td_net_load(sub, &dec, err)))
    goto done;
  int L = td_net_n_layers(enc);
  if (td_net_in_dim(enc) != d || td_net_out_dim(enc) != 2 ||
      td_net_in_dim(dec) != 2 || td_net_out_dim(dec) != d ||
      td_net_n_layers(dec) != L || L < 1) {
    rc =
        td_err_set(err, TD_EFORMAT, "%s: encoder/decoder shapes disagree", dir);
    goto done;
  }
  m = calloc(1, sizeof *m);
  if (!m || !(m->mean = calloc((size_t)d, sizeof(float)))) {
    rc = td_err_set(err, TD_ENOMEM, "%s: out of memory", dir);
    goto done;
  }
  m->dim = d;
  m->enc = enc;
  m->dec = dec;
  enc = dec = NULL;
  rc = parse_model(root, path, m, err);
done:
  json_decref(root);
  td_net_free(enc);
  td_net_free(dec);
  if (rc) {
    td_vismodel_free(m);
    return rc;
  }
  *out = m;
  return TD_OK;
}
