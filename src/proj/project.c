/* Orchestrates the projection of a run, epoch by epoch: loads each epoch,
 * makes its boundary samples, hands it to the projection method (method_dvi.c,
 * method_pca.c), computes the territory and commits the epoch through the vis
 * writer. What a method needs from the previous epoch (model, kNN graph, PCA
 * axes) stays in its own state, so the epochs are projected in one pass and a
 * resumed run reloads only the newest finished model. */
#include "tardis/project.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proj/blocks.h"
#include "proj/proj_method.h"
#include "proj/scale.h"
#include "tardis/alloc.h"
#include "tardis/boundary.h"
#include "tardis/fsutil.h"
#include "tardis/parallel.h"
#include "tardis/projection.h"
#include "tardis/rng.h"
#include "tardis/territory.h"
#include "tardis/vis.h"

void td_project_opts_default(td_project_opts *o) {
  memset(o, 0, sizeof *o);
  o->method = "dvi";
  o->k = 15;
  o->territory_res = 256;
  o->boundary = 1;
  o->temporal = -1;
  o->seed = 1;
  o->cross_weight = 0.01f;
  o->links = 5;
  o->link_weight = 1.0f;
  o->neighbour_init = 1;
  o->relocate = 1;
  td_project_vis *v = &o->vis;
  v->hidden = v->layout_epochs = v->warm_layout_epochs = -1;
  v->distil_epochs = v->warm_distil_epochs = v->distil_points = -1;
  v->n_negatives = v->dec_on_layout = -1;
  v->lambda_head = v->warm_alpha = -1.0f;
  v->polish_rounds = -1;
  o->scale = -1;
  o->scale_place = TD_SCALE_PLACE_KNN;
}

typedef td__proj_epoch epoch_data;

static void epoch_data_free(epoch_data *e) {
  td_array_close(&e->train);
  td_array_close(&e->test);
  td_array_close(&e->ood);
  td_array_close(&e->logits);
  td_head_free(e->head);
  free(e->bnd);
  free(e->pairs);
  memset(e, 0, sizeof *e);
}

static int load_epoch(const td_run *run, int epoch, epoch_data *e,
                      td_err *err) {
  memset(e, 0, sizeof *e);
  const td_run_meta *meta = td_run_get_meta(run);
  e->D = meta->repr_dim;
  e->C = meta->n_classes;
  int rc = td_run_validate_epoch(run, epoch, err);
  if (rc == TD_OK)
    rc = td_run_load_f32(run, epoch, "train_repr", &e->train, err);
  if (rc == TD_OK)
    rc = td_run_load_f32(run, epoch, "train_logits", &e->logits, err);
  if (rc == TD_OK)
    rc = td_run_load_head(run, epoch, &e->head, err);
  if (rc == TD_OK && td_run_has(run, epoch, "test_repr")) {
    rc = td_run_load_f32(run, epoch, "test_repr", &e->test, err);
    e->m = rc == TD_OK ? e->test.shape[0] : 0;
  }
  if (rc == TD_OK && td_run_has(run, epoch, "ood_repr")) {
    /* An extension of the format, so its shape is checked here. */
    rc = td_run_load_f32(run, epoch, "ood_repr", &e->ood, err);
    if (rc == TD_OK && (e->ood.ndim != 2 || e->ood.shape[1] != e->D)) {
      char sh[64];
      rc = td_err_set(err, TD_ESHAPE,
                      "epoch %d: ood_repr.npy: expected [M, %d], found %s",
                      epoch, e->D, td_array_shape_str(&e->ood, sh, sizeof sh));
    }
    if (rc == TD_OK && td_array_check_finite(&e->ood, NULL) != TD_OK)
      rc = td_err_set(err, TD_EVALUE,
                      "epoch %d: ood_repr.npy holds NaN or infinity", epoch);
    e->mo = rc == TD_OK ? e->ood.shape[0] : 0;
  }
  if (rc != TD_OK) {
    epoch_data_free(e);
    return rc;
  }
  e->n = e->train.shape[0];
  return TD_OK;
}

static void report(const td_project_opts *o, int index, int count, int epoch,
                   const char *stage, double secs) {
  if (o->progress) {
    td_project_progress p = {index, count, epoch, stage, secs};
    o->progress(&p, o->progress_ctx);
  }
}

static const td__proj_method *const methods[] = {&td__proj_dvi, &td__proj_pca};

static const td__proj_method *method_of(const char *name) {
  for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
    if (!strcmp(methods[i]->name, name))
      return methods[i];
  return NULL;
}

/* The canvas positions of the epoch's four point sets, malloc'd. */
typedef struct placed {
  float *y[4]; /* train, test, boundary, ood */
} placed;

static void placed_free(placed *p) {
  for (int s = 0; s < 4; s++)
    free(p->y[s]);
}

static int place_epoch(const td__proj_method *pm, const void *st,
                       const epoch_data *e, placed *p, td_err *err) {
  int64_t N[4] = {e->n, e->m, e->nb, e->mo};
  memset(p, 0, sizeof *p);
  for (int s = 0; s < 4; s++)
    if ((N[s] || s == 0) &&
        !(p->y[s] = malloc((size_t)(N[s] ? N[s] : 1) * 2 * sizeof(float))))
      return td_err_set(err, TD_ENOMEM, "out of memory");
  return pm->place(st, e, p->y, err);
}

/* The arrays of the epoch, in the writer's temporary directory. */
static int put_arrays(td_vis_writer *w, const epoch_data *e, const placed *p,
                      td_err *err) {
  int64_t bshape[2] = {e->nb, e->D}, pshape[2] = {e->nb, 2};
  int rc = td_vis_put_f32(w, "train_embedding.npy", p->y[0], e->n, 2, err);
  if (rc == TD_OK && e->m)
    rc = td_vis_put_f32(w, "test_embedding.npy", p->y[1], e->m, 2, err);
  if (rc == TD_OK && e->mo)
    rc = td_vis_put_f32(w, "ood_embedding.npy", p->y[3], e->mo, 2, err);
  if (rc == TD_OK)
    rc = td_vis_put_array(w, "boundary_repr.npy", TD_F32, 2, bshape, e->bnd,
                          err);
  if (rc == TD_OK)
    rc = td_vis_put_array(w, "boundary_pairs.npy", TD_I32, 2, pshape, e->pairs,
                          err);
  if (rc == TD_OK)
    rc = td_vis_put_f32(w, "boundary_embedding.npy", p->y[2], e->nb, 2, err);
  return rc;
}

/* ---- projection at scale (docs/scale.md) ----------------------------- */

/* A projector's fixed sample: the rows the method fits, the same at every
 * epoch so that each warm-starts from the previous one. */
typedef struct scale_state {
  int64_t *rows, s; /* NULL until the first epoch chooses them */
  int density;      /* 1: s came from the density rule */
  td__scale_density dens;
  double place_seconds; /* placing the epoch being written */
  int64_t moved;        /* placed points moved to keep their class */
} scale_state;

static int use_scale(const td_project_opts *o, const td__proj_method *pm,
                     const td_run *run) {
  if (!pm->layout || !pm->restrict_rows || o->scale == 0)
    return 0;
  return o->scale == 1 ||
         td_run_get_meta(run)->n_train > TD_PROJECT_SCALE_AUTO_MIN;
}

static void predicted_rows(const float *lg, int64_t n, int C, int32_t *pred) {
  for (int64_t i = 0; i < n; i++) {
    int b = 0;
    for (int k = 1; k < C; k++)
      b = lg[i * C + k] > lg[i * C + b] ? k : b;
    pred[i] = b;
  }
}

/* ppr at scale: a placed point whose position the decoder (through the
 * head) gives another class than the point's own moves beside its nearest
 * sample point of that class (alt), as the class-aware layout would have
 * drawn it. Sample rows are left as drawn (alt equals y there). */
static int keep_class(const td__proj_method *pm, void *st,
                      const td__proj_epoch *e, const int32_t *pred,
                      const float *alt, float *y, int64_t *moved, td_err *err) {
  enum { CHUNK = 8192 };
  float *xr = td_malloc((size_t)CHUNK * e->D * sizeof *xr);
  float *z = td_malloc((size_t)CHUNK * e->C * sizeof *z);
  int32_t *cls = td_malloc((size_t)CHUNK * sizeof *cls);
  int rc = xr && z && cls
               ? TD_OK
               : td_err_set(err, TD_ENOMEM, "placing: out of memory");
  *moved = 0;
  for (int64_t b = 0; rc == TD_OK && b < e->n; b += CHUNK) {
    int64_t m = e->n - b < CHUNK ? e->n - b : CHUNK;
    if (pm->decode(st, y + 2 * b, m, xr)) {
      rc = td_err_set(err, TD_ENOMEM, "placing: out of memory");
      break;
    }
    td_head_forward(e->head, xr, m, z);
    predicted_rows(z, m, e->C, cls);
    for (int64_t i = 0; i < m; i++)
      if (cls[i] != pred[b + i] &&
          (y[2 * (b + i)] != alt[2 * (b + i)] ||
           y[2 * (b + i) + 1] != alt[2 * (b + i) + 1])) {
        y[2 * (b + i)] = alt[2 * (b + i)];
        y[2 * (b + i) + 1] = alt[2 * (b + i) + 1];
        (*moved)++;
      }
  }
  td_free(xr);
  td_free(z);
  td_free(cls);
  return rc;
}

/* The training points outside the sample: the encoder's positions, refined
 * by their nearest sample points (TD_SCALE_PLACE_KNN: searched in the
 * sample's kNN graph; _CANVAS: among those near the encoder's position);
 * the sample and the
 * boundary samples: the fitted layout. */
static int place_scaled(const td_project_opts *o, const td__proj_method *pm,
                        void *st, const td__proj_epoch *e, scale_state *sc,
                        float *const y[4], td_err *err) {
  double t0 = td_now();
  int64_t nt = 0, nv = 0;
  const float *lay = pm->layout(st, &nt, &nv);
  if (!lay || nt != sc->s || nv != sc->s + e->nb)
    return td_err_set(err, TD_EARG,
                      "placing at scale: no layout of the "
                      "sample to place the points by");
  int rc = TD_OK;
  if (o->scale_place != TD_SCALE_PLACE_ENCODER) {
    int32_t *pred = td_malloc((size_t)e->n * sizeof *pred);
    float *alt = td_malloc((size_t)e->n * 2 * sizeof *alt);
    if (!pred || !alt)
      rc = td_err_set(err, TD_ENOMEM, "placing at scale: out of memory");
    if (rc == TD_OK) {
      predicted_rows(e->logits.data, e->n, e->C, pred);
      memcpy(alt, y[0], (size_t)e->n * 2 * sizeof *alt);
      const td_knn *g = o->scale_place == TD_SCALE_PLACE_KNN && pm->graph
                            ? pm->graph(st)
                            : NULL;
      rc = td__scale_refine(e->train.data, e->n, e->D, sc->rows, sc->s, lay,
                            pred, e->C, g, y[0], alt, err);
    }
    if (rc == TD_OK)
      rc = keep_class(pm, st, e, pred, alt, y[0], &sc->moved, err);
    td_free(pred);
    td_free(alt);
  }
  for (int64_t i = 0; i < sc->s; i++) {
    y[0][2 * sc->rows[i]] = lay[2 * i];
    y[0][2 * sc->rows[i] + 1] = lay[2 * i + 1];
  }
  if (e->nb)
    memcpy(y[2], lay + 2 * sc->s, (size_t)e->nb * 2 * sizeof *y[2]);
  sc->place_seconds = td_now() - t0;
  return rc;
}

static const char *place_name(int place) {
  return place == TD_SCALE_PLACE_ENCODER  ? "encoder"
         : place == TD_SCALE_PLACE_CANVAS ? "canvas"
                                          : "knn";
}

/* projection.json's "scale" object. */
static json_t *scale_json(const td_project_opts *o, const scale_state *sc,
                          int64_t n) {
  json_t *j = json_pack(
      "{s:I, s:I, s:s, s:s, s:f}", "sample", (json_int_t)sc->s, "n_train",
      (json_int_t)n, "rule", sc->density ? "density" : "fixed", "place",
      place_name(o->scale_place), "place_seconds", sc->place_seconds);
  if (j && o->scale_place != TD_SCALE_PLACE_ENCODER)
    json_object_set_new(j, "moved_to_class",
                        json_integer((json_int_t)sc->moved));
  if (j && sc->density) {
    json_t *curve = json_array();
    for (int i = 0; i < 5; i++)
      json_array_append_new(curve, json_real(sc->dens.density[i]));
    json_object_set_new(j, "ratio", json_real(sc->dens.ratio));
    json_object_set_new(j, "density", curve);
  }
  return j;
}

/* projection.json: what the epoch cost, stage by stage. */
static int put_timing(td_vis_writer *w, const td_project_opts *o, int epoch,
                      const epoch_data *e, const double secs[5], int draft_from,
                      int64_t draft_sample, const scale_state *sc,
                      td_err *err) {
  json_t *pj = json_pack(
      "{s:i, s:s, s:f, s:f, s:f, s:f, s:f, s:I, s:I}", "epoch", epoch, "method",
      o->method, "boundary_seconds", secs[4], "knn_seconds", secs[0],
      "fit_seconds", secs[1], "territory_seconds", secs[2], "write_seconds",
      secs[3], "n_boundary", (json_int_t)e->nb, "k", (json_int_t)o->k);
  double total = secs[0] + secs[1] + secs[2] + secs[3] + secs[4];
  if (sc) {
    total += sc->place_seconds;
    json_object_set_new(pj, "scale", scale_json(o, sc, e->n));
  }
  json_object_set_new(pj, "seconds", json_real(total));
  if (draft_from >= 0) {
    json_object_set_new(pj, TD_VIS_DRAFT_KEY, json_true());
    json_object_set_new(pj, TD_VIS_DRAFT_FROM_KEY, json_integer(draft_from));
  }
  if (draft_from >= 0 && draft_sample > 0)
    json_object_set_new(pj, TD_VIS_DRAFT_SAMPLE_KEY,
                        json_integer((json_int_t)draft_sample));
  if (draft_from >= 0 && draft_sample < 0) /* a preview: td_project_preview */
    json_object_set_new(pj, TD_VIS_DRAFT_FITTED_KEY, json_true());
  char *txt = json_dumps(pj, JSON_INDENT(2));
  json_decref(pj);
  int rc = txt ? td_vis_put_json(w, "projection.json", txt, err)
               : td_err_set(err, TD_ENOMEM, "out of memory");
  free(txt);
  return rc;
}

/* Places the points, computes the territory and writes the epoch's vis
 * directory through the vis writer (atomic: docs/vis-format.md); a draft
 * (draft_from >= 0: the epoch whose model st holds) is marked as one, and
 * draft_sample > 0 says that model was fitted on that many of draft_from's
 * training points only (a cold draft), < 0 that it was fitted on this
 * epoch out of order (a preview). */
static int write_epoch(const td_run *run, const td_project_opts *o,
                       const td__proj_method *pm, void *st, int epoch,
                       const epoch_data *e, double secs[5], int draft_from,
                       int64_t draft_sample, scale_state *sc, td_err *err) {
  td_vis_dims d;
  td_vis_dims_of_run(run, &d);
  d.n_train = e->n, d.n_test = e->m, d.n_ood = e->mo, d.n_boundary = e->nb;
  d.res = o->territory_res;
  td_vis_writer *w = NULL;
  td_territory terr;
  memset(&terr, 0, sizeof terr);
  placed p;
  int rc = place_epoch(pm, st, e, &p, err);
  if (rc == TD_OK && sc)
    rc = place_scaled(o, pm, st, e, sc, p.y, err);
  double t0 = td_now();
  float ext[4];
  if (rc == TD_OK) {
    td_territory_extent(p.y[0], e->n, ext);
    rc = td_territory_compute(pm->decode, st, e->D, e->head, ext,
                              o->territory_res, &terr, err);
  }
  secs[2] = td_now() - t0;
  t0 = td_now();
  if (rc == TD_OK)
    rc = td_vis_epoch_begin(td_run_dir(run), o->method, epoch, &d, &w, err);
  if (rc == TD_OK && !(rc = put_arrays(w, e, &p, err)) &&
      !(rc = td_territory_save(&terr, td_vis_writer_dir(w), err)))
    rc = pm->save(st, td_vis_writer_dir(w), err);
  secs[3] = td_now() - t0;
  if (rc == TD_OK && !(rc = put_timing(w, o, epoch, e, secs, draft_from,
                                       draft_sample, sc, err))) {
    rc = td_vis_epoch_commit(w, err);
    w = NULL;
  }
  td_vis_epoch_abort(w);
  td_territory_free(&terr);
  placed_free(&p);
  return rc;
}

static int write_vis_json(const char *run_dir, const td_project_opts *o, int D,
                          td_err *err) {
  json_t *j =
      json_pack("{s:s, s:i, s:{s:i, s:i, s:b, s:s, s:I}}", "method", o->method,
                "repr_dim", D, "params", "k", o->k, "territory_res",
                o->territory_res, "boundary", o->boundary, "boundary_space",
                o->boundary_input ? "input" : "representation", "seed",
                (json_int_t)o->seed);
  char *txt = json_dumps(j, JSON_INDENT(2));
  json_decref(j);
  int rc =
      txt ? td_vis_write_method_json(run_dir, o->method, "vis.json", txt, err)
          : td_err_set(err, TD_ENOMEM, "out of memory");
  free(txt);
  return rc;
}

/* The training inputs as the tardis trainer feeds them (uint8 / 255, or
 * float32 as stored), [N, c·h·w]; loaded once for input-space mixup. */
static int load_inputs_f32(const td_run *run, float **out, td_err *err) {
  td_array a;
  int rc = td_run_load(run, -1, "train_inputs", &a, err);
  if (rc == TD_ENOENT)
    return td_err_set(err, rc,
                      "input-space boundary samples need train_inputs.npy "
                      "in the run");
  if (rc)
    return rc;
  int64_t count = td_array_count(&a);
  float *x = malloc((size_t)count * sizeof *x);
  if (!x) {
    td_array_close(&a);
    return td_err_set(err, TD_ENOMEM, "out of memory");
  }
  if (a.dtype == TD_U8) {
    const uint8_t *u = a.data;
    for (int64_t i = 0; i < count; i++)
      x[i] = (float)u[i] * (1.0f / 255.0f);
  } else {
    memcpy(x, a.data, (size_t)count * sizeof *x);
  }
  td_array_close(&a);
  *out = x;
  return TD_OK;
}

/* Input-space boundary samples through the epoch's full model. */
static int boundary_input(const td_run *run, int ep, const float *inputs,
                          epoch_data *e, const td_boundary_params *bp,
                          td_err *err) {
  char dir[TD_PATH_MAX], mdir[TD_PATH_MAX];
  if (td_run_epoch_path(run, ep, dir, sizeof dir))
    return td_err_set(err, TD_ERANGE, "path too long");
  int rc = td_pathf(mdir, sizeof mdir, err, "%s/model", dir);
  if (rc)
    return rc;
  if (!td_path_is_dir(mdir))
    return td_err_set(err, TD_ENOENT,
                      "%s: input-space boundary samples need the epoch's "
                      "model checkpoint (runs of `tardis train`)",
                      mdir);
  td_net *net;
  rc = td_net_load(mdir, &net, err);
  if (rc)
    return rc;
  int repr_layer = td_net_n_layers(net) - 1 - td_head_n_layers(e->head);
  if (repr_layer < 0 || td_net_dim(net, repr_layer + 1) != e->D ||
      td_net_out_dim(net) != e->C)
    rc = td_err_set(err, TD_ESHAPE,
                    "%s: the model does not end in this epoch's head (%d -> "
                    "%d)",
                    mdir, e->D, e->C);
  else
    rc = td_boundary_generate_input(net, repr_layer, inputs, e->logits.data,
                                    e->n, bp, &e->bnd, &e->pairs, &e->nb, err);
  td_net_free(net);
  return rc;
}

/* A resumed projection warm-starts from the newest finished epoch before
 * the first one to do. */
static int load_previous(const td_project_opts *o, const td__proj_method *pm,
                         void *st, const td_run *run, int upto_index,
                         td_err *err) {
  for (int i = upto_index - 1; i >= 0 && pm->resume; i--) {
    char dir[TD_PATH_MAX];
    int ep = td_run_epoch_number(run, i);
    if (!td_vis_epoch_final(td_run_dir(run), o->method, ep) ||
        td_vis_epoch_dir(td_run_dir(run), o->method, ep, dir, sizeof dir))
      continue;
    /* Continuing silently from a damaged epoch would anchor every later
     * epoch to garbage (or quietly start cold): refuse instead. */
    td_projection *pj;
    int rc = td_projection_load(dir, td_run_get_meta(run)->repr_dim, &pj, err);
    td_projection_free(pj);
    if (rc == TD_OK)
      rc = pm->resume(st, run, ep, dir, err);
    if (rc)
      td_err_prefix(err,
                    "epoch %d continues from the projection of epoch %d, "
                    "which is unusable (redo it: --force --epochs %d:%d)",
                    td_run_epoch_number(run, upto_index), ep, ep, ep);
    return rc;
  }
  return TD_OK;
}

/* Indices of the epochs to do (malloc'd); the others in range are done. */
static int pending_epochs(const td_run *run, const td_project_opts *o,
                          int **idx_out, int *n_out, td_project_summary *s,
                          td_err *err) {
  int n_ep = td_run_n_epochs(run), n = 0;
  int *idx = malloc((size_t)(n_ep ? n_ep : 1) * sizeof *idx);
  if (!idx)
    return td_err_set(err, TD_ENOMEM, "out of memory");
  for (int i = 0; i < n_ep; i++) {
    int ep = td_run_epoch_number(run, i);
    if ((o->epoch_from && ep < o->epoch_from) ||
        (o->epoch_to && ep > o->epoch_to))
      continue;
    if (!o->force && td_vis_epoch_final(td_run_dir(run), o->method, ep)) {
      /* "already done" must not hide an epoch that has gone bad since */
      int rc = td_run_validate_epoch(run, ep, err);
      if (rc) {
        free(idx);
        return rc;
      }
      s->skipped++;
      continue;
    }
    idx[n++] = i;
  }
  *idx_out = idx;
  *n_out = n;
  return TD_OK;
}

/* The epoch's boundary samples, in representation space or through the
 * full model (*inputs: the training inputs, loaded on first use). */
static int boundary_epoch(const td_run *run, const td_project_opts *o, int ep,
                          epoch_data *e, float **inputs, td_err *err) {
  td_boundary_params bp;
  td_boundary_params_default(&bp, e->n, e->C);
  bp.seed = o->seed + (uint64_t)ep;
  int rc = TD_OK;
  if (o->boundary_input && !*inputs)
    rc = load_inputs_f32(run, inputs, err);
  if (rc == TD_OK && o->boundary_input)
    return boundary_input(run, ep, *inputs, e, &bp, err);
  if (rc == TD_OK)
    rc = td_boundary_generate(e->head, e->train.data, e->logits.data, e->n,
                              e->D, e->C, &bp, &e->bnd, &e->pairs, &e->nb, err);
  return rc;
}

/* The training rows (representations, logits) of e listed in rows, as an
 * epoch of their own without test, ood or boundary points; the head is
 * e's, borrowed (sub->head is not freed: see drafter_fit). */
static int sample_epoch(const epoch_data *e, const int64_t *rows, int64_t s,
                        epoch_data *sub, td_err *err) {
  memset(sub, 0, sizeof *sub);
  int64_t xs[2] = {s, e->D}, ls[2] = {s, e->C};
  if (td_array_alloc(&sub->train, TD_F32, 2, xs) ||
      td_array_alloc(&sub->logits, TD_F32, 2, ls)) {
    epoch_data_free(sub);
    return td_err_set(err, TD_ENOMEM, "sampling the epoch: out of memory");
  }
  const float *x = e->train.data, *l = e->logits.data;
  float *sx = sub->train.data, *sl = sub->logits.data;
  for (int64_t i = 0; i < s; i++) {
    memcpy(sx + i * e->D, x + rows[i] * e->D, (size_t)e->D * sizeof *sx);
    memcpy(sl + i * e->C, l + rows[i] * e->C, (size_t)e->C * sizeof *sl);
  }
  sub->n = s;
  sub->D = e->D;
  sub->C = e->C;
  sub->head = e->head;
  return TD_OK;
}

/* Chooses the projector's sample at its first epoch: a fixed size, or
 * SentryCam's density rule measured on the run's first recorded epoch (so
 * that a resumed projection draws the same sample). */
static int scale_choose(const td_run *run, const td_project_opts *o, int ep,
                        const epoch_data *e, scale_state *sc, td_err *err) {
  int64_t s = o->scale_sample;
  if (s <= 0 && e->n <= TD_PROJECT_SCALE_SAMPLE_MIN)
    s = e->n; /* the rule's floor holds every point anyway */
  if (s <= 0) {
    td_array first;
    memset(&first, 0, sizeof first);
    const float *x = e->train.data;
    int ep0 = td_run_epoch_number(run, 0), rc = TD_OK;
    if (ep0 != ep &&
        (rc = td_run_load_f32(run, ep0, "train_repr", &first, err)) == TD_OK &&
        first.shape[0] == e->n && first.shape[1] == e->D)
      x = first.data;
    if (rc == TD_OK)
      rc = td__scale_density_ratio(x, e->n, e->D, o->seed, &sc->dens, err);
    td_array_close(&first);
    if (rc)
      return rc;
    s = (int64_t)(sc->dens.ratio * (double)e->n + 0.5);
    s = s < TD_PROJECT_SCALE_SAMPLE_MIN ? TD_PROJECT_SCALE_SAMPLE_MIN : s;
    s = s > TD_PROJECT_SCALE_SAMPLE_MAX ? TD_PROJECT_SCALE_SAMPLE_MAX : s;
    sc->density = 1;
  }
  sc->s = s < e->n ? s : e->n;
  if (!(sc->rows = td__scale_sample_rows(e->n, sc->s, o->seed ^ 0x5ca1eULL)))
    return td_err_set(err, TD_ENOMEM, "sampling the epoch: out of memory");
  return TD_OK;
}

/* The fit at scale: boundary samples and the method's fit on the sample;
 * the boundary samples then join e (their pairs as rows of e). */
static int fit_scaled(const td_run *run, const td_project_opts *o,
                      const td__proj_method *pm, void *st, int ep,
                      epoch_data *e, scale_state *sc, float **inputs,
                      double secs[5], td_err *err) {
  int rc = sc->rows ? TD_OK : scale_choose(run, o, ep, e, sc, err);
  epoch_data sub;
  if (rc || (rc = sample_epoch(e, sc->rows, sc->s, &sub, err)))
    return rc;
  double t0 = td_now();
  if (o->boundary && pm->boundary)
    rc = boundary_epoch(run, o, ep, &sub, inputs, err);
  secs[4] = td_now() - t0;
  if (rc == TD_OK)
    rc = pm->restrict_rows(st, sc->rows, sc->s, e->n);
  if (rc == TD_OK)
    rc = pm->fit(st, o, &sub, &secs[0], &secs[1], err);
  if (rc == TD_OK) {
    for (int64_t i = 0; i < 2 * sub.nb; i++)
      sub.pairs[i] = (int32_t)sc->rows[sub.pairs[i]];
    e->bnd = sub.bnd;
    e->pairs = sub.pairs;
    e->nb = sub.nb;
    sub.bnd = NULL;
    sub.pairs = NULL;
  }
  sub.head = NULL; /* e's */
  epoch_data_free(&sub);
  return rc;
}

/* Loads, fits and writes one epoch; secs as in projection.json. */
static int project_epoch(const td_run *run, const td_project_opts *o,
                         const td__proj_method *pm, void *st, int t, int n,
                         int ep, float **inputs, scale_state *sc,
                         int preview_from, double *dt, td_err *err) {
  double t0 = td_now(), secs[5] = {0};
  epoch_data e;
  report(o, t, n, ep, "load", 0);
  int rc = load_epoch(run, ep, &e, err);
  if (rc)
    return rc;
  if (sc) {
    report(o, t, n, ep, "fit", 0);
    rc = fit_scaled(run, o, pm, st, ep, &e, sc, inputs, secs, err);
  } else if (o->boundary && pm->boundary) {
    report(o, t, n, ep, "boundary", 0);
    rc = boundary_epoch(run, o, ep, &e, inputs, err);
    secs[4] = td_now() - t0;
  }
  if (rc == TD_OK && !sc) {
    report(o, t, n, ep, "fit", 0);
    rc = pm->fit(st, o, &e, &secs[0], &secs[1], err);
  }
  if (rc == TD_OK) {
    report(o, t, n, ep, "territory", 0);
    rc = write_epoch(run, o, pm, st, ep, &e, secs, preview_from,
                     preview_from >= 0 ? -1 : 0, sc, err);
  }
  epoch_data_free(&e);
  *dt = td_now() - t0;
  return rc;
}

/* An open projection: the method's state carries from one epoch to the
 * next, as long as each epoch follows the one fitted last. */
struct td_projector {
  td_run *run;
  td_project_opts o;
  const td__proj_method *pm;
  void *st;
  int last;      /* the epoch the state holds; -1: none */
  float *inputs; /* input-space mixup: loaded on first use */
  int scaled;    /* projection at scale (use_scale) */
  scale_state sc;
};

int td_projector_open(td_run *run, const td_project_opts *o, td_projector **out,
                      td_err *err) {
  *out = NULL;
  const td__proj_method *pm = method_of(o->method);
  if (!pm)
    return td_err_set(err, TD_EARG, "unknown method '%s' (dvi or pca)",
                      o->method);
  if (o->k < 2 || o->territory_res < 8 || o->territory_res > 4096)
    return td_err_set(err, TD_EARG, "invalid k or territory resolution");
  int rc =
      write_vis_json(td_run_dir(run), o, td_run_get_meta(run)->repr_dim, err);
  if (rc)
    return rc;
  td_projector *p = calloc(1, sizeof *p);
  if (!p || !(p->st = pm->state_new())) {
    free(p);
    return td_err_set(err, TD_ENOMEM, "out of memory");
  }
  p->run = run;
  p->o = *o;
  p->pm = pm;
  p->last = -1;
  p->scaled = use_scale(o, pm, run);
  if (p->scaled && o->boundary_input) {
    td_projector_close(p);
    return td_err_set(err, TD_EARG,
                      "%s: input-space boundary samples are not drawn at "
                      "scale (--scale off, or --boundary-space repr)",
                      td_run_dir(run));
  }
  *out = p;
  return TD_OK;
}

void td_projector_close(td_projector *p) {
  if (!p)
    return;
  p->pm->state_free(p->st);
  free(p->inputs);
  td_free(p->sc.rows);
  free(p);
}

/* The newest fully fitted epoch recorded before position i of the run
 * (drafts do not count: a warm start never starts from one). */
static int newest_done_before(const td_projector *p, int i) {
  for (i--; i >= 0; i--) {
    int ep = td_run_epoch_number(p->run, i);
    if (ep == p->last ||
        td_vis_epoch_final(td_run_dir(p->run), p->o.method, ep))
      return ep;
  }
  return -1;
}

static int projector_do(td_projector *p, int t, int n, int epoch,
                        int *warm_from, double *dt, td_err *err) {
  int i = td_run_epoch_index(p->run, epoch);
  if (i < 0)
    return td_err_set(err, TD_ENOENT, "%s: epoch %d is not recorded",
                      td_run_dir(p->run), epoch);
  int from = newest_done_before(p, i);
  if (from != p->last) { /* warm-start from disk instead */
    void *st = p->pm->state_new();
    if (!st)
      return td_err_set(err, TD_ENOMEM, "out of memory");
    p->pm->state_free(p->st);
    p->st = st;
    p->last = -1;
    int rc =
        from >= 0 ? load_previous(&p->o, p->pm, p->st, p->run, i, err) : TD_OK;
    if (rc)
      return rc;
  }
  if (warm_from)
    *warm_from = from;
  int rc = project_epoch(p->run, &p->o, p->pm, p->st, t, n, epoch, &p->inputs,
                         p->scaled ? &p->sc : NULL, -1, dt, err);
  /* A failed fit may leave the state half-updated: start afresh. */
  p->last = rc == TD_OK ? epoch : -2;
  if (rc)
    td_err_prefix(err, "epoch %d", epoch);
  return rc;
}

/* For blocks of epochs (blocks.c): what td_project would do, in the
 * order it would. */
int td__project_pending(const td_run *run, const td_project_opts *o, int **idx,
                        int *n, td_project_summary *s, td_err *err) {
  return pending_epochs(run, o, idx, n, s, err);
}

/* A block's border (blocks.c): the epoch fitted cold on a fresh state and
 * placed as write_epoch would place it, but not written; the next epoch
 * then warm-starts from it. */
int td__projector_fit_only(td_projector *p, int epoch, float **y_train,
                           td_err *err) {
  *y_train = NULL;
  void *st = p->pm->state_new();
  if (!st)
    return td_err_set(err, TD_ENOMEM, "out of memory");
  p->pm->state_free(p->st);
  p->st = st;
  p->last = -2;
  double secs[5] = {0};
  epoch_data e;
  int rc = load_epoch(p->run, epoch, &e, err);
  if (rc)
    return rc;
  scale_state *sc = p->scaled ? &p->sc : NULL;
  if (sc)
    rc = fit_scaled(p->run, &p->o, p->pm, st, epoch, &e, sc, &p->inputs, secs,
                    err);
  else if (p->o.boundary && p->pm->boundary)
    rc = boundary_epoch(p->run, &p->o, epoch, &e, &p->inputs, err);
  if (rc == TD_OK && !sc)
    rc = p->pm->fit(st, &p->o, &e, &secs[0], &secs[1], err);
  placed pl;
  memset(&pl, 0, sizeof pl);
  if (rc == TD_OK)
    rc = place_epoch(p->pm, st, &e, &pl, err);
  if (rc == TD_OK && sc)
    rc = place_scaled(&p->o, p->pm, st, &e, sc, pl.y, err);
  if (rc == TD_OK) {
    *y_train = pl.y[0];
    pl.y[0] = NULL;
    p->last = epoch;
  }
  placed_free(&pl);
  epoch_data_free(&e);
  if (rc)
    td_err_prefix(err, "epoch %d (block border)", epoch);
  return rc;
}

int td_projector_epoch(td_projector *p, int epoch, int *warm_from,
                       double *seconds, td_err *err) {
  double dt = 0;
  int rc = projector_do(p, 0, 1, epoch, warm_from, &dt, err);
  if (rc == TD_OK)
    report(&p->o, 0, 1, epoch, "done", dt);
  if (seconds)
    *seconds = dt;
  return rc;
}

int td_project_draft(td_run *run, const td_project_opts *o, int epoch, int from,
                     double *seconds, td_err *err) {
  double t0 = td_now(), secs[5] = {0};
  const td__proj_method *pm = method_of(o->method);
  char dir[TD_PATH_MAX];
  if (!pm || !pm->drafts)
    return td_err_set(err, TD_EARG, "method '%s' draws no drafts", o->method);
  if (!td_vis_epoch_final(td_run_dir(run), o->method, from) ||
      td_vis_epoch_dir(td_run_dir(run), o->method, from, dir, sizeof dir))
    return td_err_set(err, TD_ENOENT,
                      "%s: epoch %d has no fully fitted projection to draw a "
                      "draft with",
                      td_run_dir(run), from);
  void *st = pm->state_new();
  if (!st)
    return td_err_set(err, TD_ENOMEM, "out of memory");
  int rc = pm->resume(st, run, from, dir, err);
  epoch_data e;
  memset(&e, 0, sizeof e);
  /* No boundary samples: making them costs more than the rest of a draft,
   * and the territory comes from the decoder and this epoch's head. */
  if (rc == TD_OK && (rc = load_epoch(run, epoch, &e, err)) == TD_OK)
    rc = write_epoch(run, o, pm, st, epoch, &e, secs, from, 0, NULL, err);
  epoch_data_free(&e);
  pm->state_free(st);
  if (rc)
    td_err_prefix(err, "epoch %d (draft)", epoch);
  if (seconds)
    *seconds = td_now() - t0;
  return rc;
}

int td_project_can_preview(const td_run *run, const td_project_opts *o) {
  const td__proj_method *pm = method_of(o->method);
  return pm && pm->drafts && pm->resume && !use_scale(o, pm, run);
}

int td_project_preview(td_run *run, const td_project_opts *o, int epoch,
                       int from, double *seconds, td_err *err) {
  const td__proj_method *pm = method_of(o->method);
  double dt = 0;
  char dir[TD_PATH_MAX];
  if (!td_project_can_preview(run, o))
    return td_err_set(err, TD_EARG, "%s: method '%s' draws no previews here",
                      td_run_dir(run), o->method);
  if (from >= 0 &&
      (!td_vis_epoch_final(td_run_dir(run), o->method, from) ||
       td_vis_epoch_dir(td_run_dir(run), o->method, from, dir, sizeof dir)))
    return td_err_set(err, TD_ENOENT,
                      "%s: epoch %d has no fully fitted projection to start "
                      "a preview from",
                      td_run_dir(run), from);
  void *st = pm->state_new();
  if (!st)
    return td_err_set(err, TD_ENOMEM, "out of memory");
  float *inputs = NULL;
  int rc = from >= 0 ? pm->resume(st, run, from, dir, err) : TD_OK;
  /* cold: marked as drawn from itself, as a cold draft is */
  if (rc == TD_OK)
    rc = project_epoch(run, o, pm, st, 0, 1, epoch, &inputs, NULL,
                       from >= 0 ? from : epoch, &dt, err);
  free(inputs);
  pm->state_free(st);
  if (rc)
    td_err_prefix(err, "epoch %d (preview)", epoch);
  if (seconds)
    *seconds = dt;
  return rc;
}

/* ---- cold drafts: a model fitted on a sample of one epoch ------------ */

struct td_drafter {
  td_run *run;
  td_project_opts o;
  const td__proj_method *pm;
  void *st;
  int from;         /* the epoch whose sample the model was fitted on */
  int64_t n_sample; /* that sample's size */
};

/* Fits d's model on a sample of e's training points. */
static int drafter_fit(td_drafter *d, const epoch_data *e, td_err *err) {
  int64_t s = d->n_sample < e->n ? d->n_sample : e->n;
  int64_t *rows = td__scale_sample_rows(e->n, s, d->o.seed);
  if (!rows)
    return td_err_set(err, TD_ENOMEM, "sampling the epoch: out of memory");
  epoch_data sub;
  int rc = sample_epoch(e, rows, s, &sub, err);
  td_free(rows);
  if (rc)
    return rc;
  double knn_s = 0, fit_s = 0;
  rc = d->pm->fit(d->st, &d->o, &sub, &knn_s, &fit_s, err);
  sub.head = NULL; /* e's */
  epoch_data_free(&sub);
  d->n_sample = s;
  return rc;
}

void td_drafter_close(td_drafter *d) {
  if (!d)
    return;
  if (d->st)
    d->pm->state_free(d->st);
  td_free(d);
}

int td_drafter_cold(td_run *run, const td_project_opts *o, int epoch,
                    int64_t n_sample, td_drafter **out, double *seconds,
                    td_err *err) {
  double t0 = td_now(), secs[5] = {0};
  *out = NULL;
  const td__proj_method *pm = method_of(o->method);
  if (!pm || !pm->drafts || !pm->forget_layout)
    return td_err_set(err, TD_EARG, "method '%s' draws no drafts", o->method);
  if (n_sample < 2)
    return td_err_set(err, TD_EARG, "a cold draft needs a sample of >= 2");
  td_drafter *d = td_calloc(1, sizeof *d);
  if (!d || !(d->st = pm->state_new())) {
    td_free(d);
    return td_err_set(err, TD_ENOMEM, "out of memory");
  }
  d->run = run;
  d->o = *o;
  d->pm = pm;
  d->from = epoch;
  d->n_sample = n_sample;
  epoch_data e;
  int rc = load_epoch(run, epoch, &e, err);
  if (rc == TD_OK) {
    if ((rc = drafter_fit(d, &e, err)) == TD_OK) {
      pm->forget_layout(d->st);
      rc = write_epoch(run, o, pm, d->st, epoch, &e, secs, epoch, d->n_sample,
                       NULL, err);
    }
    epoch_data_free(&e);
  }
  if (seconds)
    *seconds = td_now() - t0;
  if (rc) {
    td_err_prefix(err, "epoch %d (cold draft)", epoch);
    td_drafter_close(d);
    return rc;
  }
  *out = d;
  return TD_OK;
}

int td_drafter_epoch(const td_drafter *d) { return d->from; }

int td_drafter_draw(td_drafter *d, int epoch, double *seconds, td_err *err) {
  double t0 = td_now(), secs[5] = {0};
  epoch_data e;
  int rc = load_epoch(d->run, epoch, &e, err);
  if (rc == TD_OK) {
    rc = write_epoch(d->run, &d->o, d->pm, d->st, epoch, &e, secs, d->from,
                     d->n_sample, NULL, err);
    epoch_data_free(&e);
  }
  if (rc)
    td_err_prefix(err, "epoch %d (draft)", epoch);
  if (seconds)
    *seconds = td_now() - t0;
  return rc;
}

int td_project(td_run *run, const td_project_opts *o, td_project_summary *s,
               td_err *err) {
  memset(s, 0, sizeof *s);
  td_projector *p;
  int *idx = NULL, n_pending = 0;
  int rc = td_run_validate_top(run, err);
  if (rc)
    return rc;
  rc = td_projector_open(run, o, &p, err);
  if (rc || (rc = pending_epochs(run, o, &idx, &n_pending, s, err))) {
    td_projector_close(p);
    return rc;
  }
  double t_all = td_now();
  for (int t = 0; t < n_pending && rc == TD_OK; t++) {
    int ep = td_run_epoch_number(run, idx[t]);
    double dt;
    if ((rc = projector_do(p, t, n_pending, ep, NULL, &dt, err)))
      break;
    if (s->projected == 0)
      s->first_seconds = dt;
    else if (dt > s->max_later_seconds)
      s->max_later_seconds = dt;
    s->projected++;
    report(o, t, n_pending, ep, "done", dt);
  }
  s->seconds = td_now() - t_all;
  td_projector_close(p);
  free(idx);
  return rc;
}
