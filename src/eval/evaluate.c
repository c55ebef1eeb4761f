/* Projection quality of a run, epoch by epoch. The high-dimensional kNN
 * graph of each epoch is computed once and serves nn@k for every k and the
 * temporal correlation. */
#include "tardis/evaluate.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_file.h"
#include "tardis/fsutil.h"
#include "tardis/knn.h"
#include "tardis/metrics.h"
#include "tardis/project.h"
#include "tardis/projection.h"
#include "tardis/territory.h"
#include "tardis/vis.h"

const int td_eval_ks[TD_EVAL_NK] = {10, 15, 20};

void td_eval_result_free(td_eval_result *r) {
  free(r->epochs);
  memset(r, 0, sizeof *r);
}

/* nn@k of one split; feeds the temporal accumulator when given. */
static int split_metrics(const float *x, int64_t n, int D, const float *y,
                         double *nn, td_temporal *tc, td_err *err) {
  td_knn hi;
  int rc = td_knn_exact(x, n, D, td_eval_ks[TD_EVAL_NK - 1], &hi, err);
  if (rc)
    return rc;
  rc = td_metric_nn_preservation_knn(&hi, y, td_eval_ks, TD_EVAL_NK, nn, err);
  if (rc == TD_OK && tc)
    rc = td_temporal_add(tc, &hi, y, err);
  td_knn_free(&hi);
  return rc;
}

/* ppr: the head's verdict on decode(encode(x)) against its verdict on x,
 * for one split (x [n, D] placed at y [n, 2]). */
static int split_ppr(td_projection *pj, const td_head *head, const char *dir,
                     const char *split, const td_array *x, const td_array *y,
                     double *ppr, double *conf_diff, td_err *err) {
  int64_t n = x->shape[0];
  if (n < 1)
    return TD_OK;
  float *rec = malloc((size_t)n * (size_t)x->shape[1] * sizeof *rec);
  if (!rec)
    return td_err_set(err, TD_ENOMEM, "out of memory");
  int rc = td_projection_decode(pj, y->data, n, rec);
  if (rc)
    td_err_set(err, rc, "%s: decoding the %s embedding failed", dir, split);
  else if ((rc = td_metric_ppr(head, x->data, rec, n, ppr, conf_diff)))
    td_err_set(err, rc, "%s: computing %s ppr failed", dir, split);
  free(rec);
  return rc;
}

static int eval_epoch(td_run *run, const char *dir, int ep, td_eval_epoch *r,
                      td_temporal *tc_tr, td_temporal *tc_te, td_err *err) {
  const td_run_meta *meta = td_run_get_meta(run);
  int D = meta->repr_dim;
  td_array xtr = {0}, xte = {0}, ytr = {0}, yte = {0}, xb = {0}, yb = {0};
  td_projection *pj = NULL;
  td_head *head = NULL;
  td_territory terr;
  memset(&terr, 0, sizeof terr);
  r->epoch = ep;
  for (int i = 0; i < TD_EVAL_NK; i++)
    r->nn_test[i] = NAN;
  r->boundary_nn15 = r->boundary_kept = r->ppr_test = NAN;
  r->on_boundary = r->terr_agree = r->unsure = r->unsure_area = NAN;
  int rc;
  if ((rc = td_run_load_f32(run, ep, "train_repr", &xtr, err)) ||
      (rc = td_vis_load_embedding_in(dir, "train", xtr.shape[0], &ytr, err)) ||
      (rc = td_projection_load(dir, D, &pj, err)) ||
      (rc = td_run_load_head(run, ep, &head, err)))
    goto out;
  int64_t n = xtr.shape[0];
  if ((rc = split_metrics(xtr.data, n, D, ytr.data, r->nn_train, tc_tr, err)))
    goto out;
  char path[TD_PATH_MAX];
  if ((rc = td_pathf(path, sizeof path, err, "%s/test_embedding.npy", dir)))
    goto out;
  if (td_run_has(run, ep, "test_repr") && td_path_exists(path)) {
    if ((rc = td_run_load_f32(run, ep, "test_repr", &xte, err)) ||
        (rc = td_vis_load_embedding_in(dir, "test", xte.shape[0], &yte, err)) ||
        (rc = split_metrics(xte.data, xte.shape[0], D, yte.data, r->nn_test,
                            tc_te, err)))
      goto out;
  }
  if ((rc = split_ppr(pj, head, dir, "training", &xtr, &ytr, &r->ppr,
                      &r->inv_conf_diff, err)) ||
      (xte.data && (rc = split_ppr(pj, head, dir, "test", &xte, &yte,
                                   &r->ppr_test, NULL, err))))
    goto out;
  if ((rc = td_pathf(path, sizeof path, err, "%s/territory.json", dir)))
    goto out;
  if (td_path_exists(path)) {
    td_territory_fit fit;
    if ((rc = td_territory_load(dir, &terr, err)))
      goto out;
    if ((rc = td_metric_territory_fit(&terr, head, xtr.data, ytr.data, n,
                                      &fit))) {
      td_err_set(err, rc, "%s: measuring the territory failed", dir);
      goto out;
    }
    r->on_boundary = fit.on_boundary;
    r->terr_agree = fit.agree;
    r->unsure = fit.unsure;
    r->unsure_area = fit.unsure_area;
  }
  /* boundary samples */
  if ((rc = td_pathf(path, sizeof path, err, "%s/boundary_repr.npy", dir)))
    goto out;
  if (td_path_exists(path)) {
    td_vis_dims vd;
    td_vis_dims_unknown(&vd);
    vd.repr_dim = D;
    if ((rc = td_npy_load(path, &xb, err)) ||
        (rc = td_vis_check_array(td_vis_spec_find("boundary_repr.npy"), path,
                                 &xb, &vd, err)))
      goto out;
    int64_t nb = xb.shape[0];
    r->n_boundary = nb;
    if (nb > 0) {
      if ((rc = td_vis_load_embedding_in(dir, "boundary", nb, &yb, err)))
        goto out;
      if (nb > 15 &&
          (rc = td_metric_boundary_nn(xb.data, yb.data, nb, NULL, NULL, 0, D,
                                      15, &r->boundary_nn15, err)))
        goto out;
      if (!terr.cls && (rc = td_territory_load(dir, &terr, err)))
        goto out;
      r->boundary_kept = td_metric_boundary_kept(&terr, yb.data, nb);
    }
  }
  /* timing recorded by tardis project */
  if ((rc = td_pathf(path, sizeof path, err, "%s/projection.json", dir)))
    goto out;
  json_t *pjs = td__json_load_file(path, 0, NULL);
  r->proj_seconds =
      pjs ? json_number_value(json_object_get(pjs, "seconds")) : (double)NAN;
  json_decref(pjs);
out:
  td_array_close(&xtr);
  td_array_close(&xte);
  td_array_close(&ytr);
  td_array_close(&yte);
  td_array_close(&xb);
  td_array_close(&yb);
  td_projection_free(pj);
  td_head_free(head);
  td_territory_free(&terr);
  return rc;
}

static json_t *num(double v) {
  return isfinite(v) ? json_real(v) : json_null();
}

static int write_metrics(const char *run_dir, const char *method,
                         const td_eval_result *r, td_err *err) {
  json_t *root = json_object(), *eps = json_array();
  json_object_set_new(root, "method", json_string(method));
  json_object_set_new(root, "temporal_corr", num(r->temporal_corr_train));
  json_object_set_new(root, "temporal_corr_test", num(r->temporal_corr_test));
  for (int i = 0; i < r->n_epochs; i++) {
    const td_eval_epoch *e = &r->epochs[i];
    json_t *o = json_object();
    json_object_set_new(o, "epoch", json_integer(e->epoch));
    for (int k = 0; k < TD_EVAL_NK; k++) {
      char key[32];
      snprintf(key, sizeof key, "nn@%d", td_eval_ks[k]);
      json_object_set_new(o, key, num(e->nn_train[k]));
      snprintf(key, sizeof key, "test_nn@%d", td_eval_ks[k]);
      json_object_set_new(o, key, num(e->nn_test[k]));
    }
    json_object_set_new(o, "boundary_nn@15", num(e->boundary_nn15));
    json_object_set_new(o, "ppr", num(e->ppr));
    json_object_set_new(o, "inv_conf_diff", num(e->inv_conf_diff));
    json_object_set_new(o, "test_ppr", num(e->ppr_test));
    json_object_set_new(o, "on_boundary", num(e->on_boundary));
    json_object_set_new(o, "territory_agree", num(e->terr_agree));
    json_object_set_new(o, "unsure", num(e->unsure));
    json_object_set_new(o, "unsure_area", num(e->unsure_area));
    json_object_set_new(o, "boundary_kept", num(e->boundary_kept));
    json_object_set_new(o, "n_boundary", json_integer(e->n_boundary));
    json_object_set_new(o, "projection_seconds", num(e->proj_seconds));
    json_array_append_new(eps, o);
  }
  json_object_set_new(root, "epochs", eps);
  char *txt = json_dumps(root, JSON_INDENT(2));
  json_decref(root);
  int rc =
      txt ? td_vis_write_method_json(run_dir, method, "metrics.json", txt, err)
          : td_err_set(err, TD_ENOMEM, "out of memory");
  free(txt);
  return rc;
}

int td_evaluate(td_run *run, const char *method,
                void (*progress)(int i, int n, void *ctx), void *ctx,
                td_eval_result *out, td_err *err) {
  memset(out, 0, sizeof *out);
  const char *run_dir = td_run_dir(run);
  int n_ep = td_run_n_epochs(run);
  char vis[TD_PATH_MAX];
  int rc = td_vis_method_dir(run_dir, method, vis, sizeof vis, err);
  if (!rc) /* every epoch, as `tardis info` does, projected or not */
    rc = td_run_validate(run, NULL, NULL, err);
  if (rc)
    return rc;
  if (!td_path_is_dir(vis))
    return td_err_set(err, TD_ENOENT,
                      "%s: no projection (run `tardis project %s%s%s` first)",
                      vis, run_dir, strcmp(method, "dvi") ? " --method " : "",
                      strcmp(method, "dvi") ? method : "");
  out->epochs = calloc((size_t)(n_ep ? n_ep : 1), sizeof *out->epochs);
  if (!out->epochs)
    return td_err_set(err, TD_ENOMEM, "out of memory");
  const td_run_meta *meta = td_run_get_meta(run);
  td_temporal *tc_tr = NULL, *tc_te = NULL;
  rc = td_temporal_new(meta->n_train, 15, &tc_tr, err);
  if (rc == TD_OK && meta->n_test > 0)
    rc = td_temporal_new(meta->n_test, 15, &tc_te, err);
  int n_pending = 0;
  for (int i = 0; i < n_ep; i++)
    n_pending +=
        td_vis_epoch_done(run_dir, method, td_run_epoch_number(run, i));
  for (int i = 0; i < n_ep && rc == TD_OK; i++) {
    int ep = td_run_epoch_number(run, i);
    char dir[TD_PATH_MAX];
    if (!td_vis_epoch_done(run_dir, method, ep) ||
        td_vis_epoch_dir(run_dir, method, ep, dir, sizeof dir))
      continue;
    if (progress)
      progress(out->n_epochs, n_pending, ctx);
    rc = eval_epoch(run, dir, ep, &out->epochs[out->n_epochs], tc_tr, tc_te,
                    err);
    if (rc == TD_OK)
      out->n_epochs++;
  }
  if (rc == TD_OK && out->n_epochs == 0)
    rc = td_err_set(err, TD_ENOENT, "%s: no projected epochs", vis);
  out->temporal_corr_train = out->temporal_corr_test = NAN;
  if (rc == TD_OK && td_temporal_n_epochs(tc_tr) >= 3)
    td_temporal_result(tc_tr, &out->temporal_corr_train, NULL);
  if (rc == TD_OK && tc_te && td_temporal_n_epochs(tc_te) >= 3)
    td_temporal_result(tc_te, &out->temporal_corr_test, NULL);
  td_temporal_free(tc_tr);
  td_temporal_free(tc_te);
  if (rc == TD_OK)
    rc = write_metrics(run_dir, method, out, err);
  if (rc != TD_OK)
    td_eval_result_free(out);
  return rc;
}
