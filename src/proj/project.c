/* Orchestrates the projection of a run, epoch by epoch: everything a stage
 * needs from the previous epoch (model, kNN graph, PCA axes) is carried in a
 * small state, so the epochs are projected in one pass and a resumed run
 * reloads only the newest finished model. */
#include "tardis/project.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proj/proj_method.h"
#include "tardis/boundary.h"
#include "tardis/complex.h"
#include "tardis/fsutil.h"
#include "tardis/knn.h"
#include "tardis/parallel.h"
#include "tardis/projection.h"
#include "tardis/territory.h"
#include "tardis/vis.h"
#include "tardis/vismodel.h"

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
}

/* What one epoch hands to the next. */
typedef struct carry {
  td_vismodel *model;
  td_knn knn; /* spatial kNN of the training points (first n rows) */
  int have_knn;
  /* dvi: the drawn positions (the layout) of the last fitted epoch's
   * vertices, training points first, then its boundary samples; the next
   * epoch's layout starts from the training points' rows. */
  float *pos;
  int64_t n_pos; /* training points */
  int64_t n_vert;
  int32_t *pred; /* [n_pos] their predicted classes */
  /* SentryCam's memory: a 5 % sample of the training points with the
   * positions they were drawn at, for each of the last MEMORY_SLOTS epochs
   * (newest first); epochs t-1, t-2, t-4, t-8 are used as anchors. */
  struct memory_slot {
    int32_t *idx;
    float *pos;
    int64_t m;
  } mem[8];
  int n_mem;
  uint64_t n_pushed; /* seeds each epoch's sample */
} carry;

#define MEMORY_SLOTS 8
#define MEMORY_SHARE 0.05

static void memory_slot_free(struct memory_slot *m) {
  free(m->idx);
  free(m->pos);
  memset(m, 0, sizeof *m);
}

/* Remembers a sample of this epoch's drawn positions (pos [n, 2]). */
static void memory_push(carry *c, const float *pos, int64_t n, uint64_t seed) {
  int64_t m = (int64_t)(MEMORY_SHARE * (double)n);
  if (m < 1)
    return;
  struct memory_slot s = {malloc((size_t)m * sizeof(int32_t)),
                          malloc((size_t)m * 2 * sizeof(float)), m};
  if (!s.idx || !s.pos) {
    memory_slot_free(&s);
    return;
  }
  td_rng r;
  td_rng_seed(&r, seed);
  for (int64_t i = 0; i < m; i++) {
    s.idx[i] = (int32_t)td_rng_below(&r, (uint64_t)n);
    s.pos[2 * i] = pos[2 * s.idx[i]];
    s.pos[2 * i + 1] = pos[2 * s.idx[i] + 1];
  }
  if (c->n_mem == MEMORY_SLOTS)
    memory_slot_free(&c->mem[--c->n_mem]);
  memmove(&c->mem[1], &c->mem[0], (size_t)c->n_mem * sizeof c->mem[0]);
  c->mem[0] = s;
  c->n_mem++;
}

/* Builds the anchor's memory rows from the slots of epochs t-1, t-2, t-4,
 * t-8: the points' current representations and remembered positions. The
 * hinge margin grows with the point's distribution shift (how much its
 * high-dimensional neighbourhood changed): δ = base · (1 + 2 (1 − r)). */
static int memory_anchor(const carry *c, const float *x, int D,
                         const float *overlap, float base, td_vis_anchor *a,
                         float **buf) {
  int64_t total = 0;
  for (int age = 1; age <= c->n_mem; age *= 2)
    total += c->mem[age - 1].m;
  if (total == 0)
    return 0;
  float *b = malloc((size_t)total * (size_t)(D + 3) * sizeof *b);
  if (!b)
    return -1;
  float *mx = b, *my = b + total * D, *md = my + total * 2;
  int64_t k = 0;
  for (int age = 1; age <= c->n_mem; age *= 2) {
    const struct memory_slot *s = &c->mem[age - 1];
    for (int64_t i = 0; i < s->m; i++, k++) {
      int32_t j = s->idx[i];
      memcpy(mx + k * D, x + (int64_t)j * D, (size_t)D * sizeof *mx);
      my[2 * k] = s->pos[2 * i];
      my[2 * k + 1] = s->pos[2 * i + 1];
      float r = overlap ? overlap[j] : 1.0f;
      md[k] = base * (1.0f + 2.0f * (1.0f - r));
    }
  }
  a->n_memory = total;
  a->mem_x = mx;
  a->mem_y = my;
  a->mem_delta = md;
  *buf = b;
  return 0;
}

static void carry_free(carry *c) {
  td_vismodel_free(c->model);
  if (c->have_knn)
    td_knn_free(&c->knn);
  free(c->pos);
  free(c->pred);
  for (int i = 0; i < c->n_mem; i++)
    memory_slot_free(&c->mem[i]);
  memset(c, 0, sizeof *c);
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
  int rc = td_run_load_f32(run, epoch, "train_repr", &e->train, err);
  if (rc == TD_OK)
    rc = td_run_load(run, epoch, "train_logits", &e->logits, err);
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

/* The head as one dense layer, logits = W x + b, read off by probing it at
 * 0 and the unit vectors, then checked on a real row: the decoder's
 * head-consistency term needs its gradient (d logits / dx = W). Returns 0
 * with *w [C, D] and *b [C] malloc'd, or -1 for a head that is not linear
 * (it then gets no consistency term). */
static int head_linear(const td_head *h, int D, int C, const float *x0,
                       float **w_out, float **b_out) {
  *w_out = *b_out = NULL;
  if (td_head_n_layers(h) != 1 || td_head_in_dim(h) != D ||
      td_head_out_dim(h) != C)
    return -1;
  float *probe = calloc((size_t)(D + 1) * D, sizeof(float));
  float *z = malloc((size_t)(D + 1) * C * sizeof(float));
  float *w = malloc((size_t)C * D * sizeof(float));
  float *b = malloc((size_t)C * sizeof(float));
  float zx[1024];
  int ok = probe && z && w && b && C <= 1024;
  if (ok) {
    for (int j = 0; j < D; j++)
      probe[(size_t)(j + 1) * D + j] = 1.0f;
    td_head_forward(h, probe, D + 1, z);
    for (int c = 0; c < C; c++) {
      b[c] = z[c];
      for (int j = 0; j < D; j++)
        w[(size_t)c * D + j] = z[(size_t)(j + 1) * C + c] - z[c];
    }
    td_head_forward(h, x0, 1, zx);
    for (int c = 0; c < C && ok; c++) {
      double acc = (double)b[c];
      for (int j = 0; j < D; j++)
        acc += (double)w[(size_t)c * D + j] * (double)x0[j];
      ok = fabs(acc - (double)zx[c]) <= 1e-3 * (1.0 + fabs((double)zx[c]));
    }
  }
  free(probe);
  free(z);
  if (!ok) {
    free(w);
    free(b);
    return -1;
  }
  *w_out = w;
  *b_out = b;
  return 0;
}

/* The class-aware complex (docs/projection.md, "ppr"): edges between
 * training points of different predicted classes are scaled by
 * cross_weight, and every training point gets `links` class links
 * (td_complex_class_links) of weight link_weight. Measured defaults in
 * td_project_opts_default; bench/bench_project.c and the CLI's TD_PROJ_*
 * environment variables (src/cli/proj_env.c) change them for
 * measurements. */
typedef struct proj_tune {
  float cross_weight, link_weight;
  int links;
  int independent; /* no warm start: every epoch projected on its own */
} proj_tune;

static void tune_from_opts(const td_project_opts *o, proj_tune *t) {
  t->cross_weight = o->cross_weight;
  t->links = o->links;
  t->link_weight = o->link_weight;
  t->independent = o->independent;
}

/* The overrides of td_vis_params in o (negative: keep the default). */
static void tune_params(const td_project_opts *o, td_vis_params *p) {
  const td_project_vis *v = &o->vis;
  p->hogwild = o->hogwild;
  if (v->lambda_head >= 0.0f)
    p->lambda_head = v->lambda_head;
  if (v->hidden >= 0)
    p->hidden = v->hidden;
  if (v->distil_epochs >= 0)
    p->distil_epochs = v->distil_epochs;
  if (v->warm_distil_epochs >= 0)
    p->warm_distil_epochs = v->warm_distil_epochs;
  if (v->layout_epochs >= 0)
    p->layout_epochs = v->layout_epochs;
  if (v->warm_layout_epochs >= 0)
    p->warm_layout_epochs = v->warm_layout_epochs;
  if (v->distil_points >= 0)
    p->distil_points = v->distil_points;
  if (v->n_negatives >= 0)
    p->n_negatives = v->n_negatives;
  if (v->warm_alpha >= 0.0f)
    p->warm_alpha = v->warm_alpha;
  if (v->dec_on_layout >= 0)
    p->dec_on_layout = v->dec_on_layout;
}

static void predicted(const epoch_data *e, int32_t *pred) {
  const float *lg = e->logits.data;
  for (int64_t i = 0; i < e->n; i++) {
    int b = 0;
    for (int k = 1; k < e->C; k++)
      b = lg[i * e->C + k] > lg[i * e->C + b] ? k : b;
    pred[i] = b;
  }
}

/* Warm start for a point whose predicted class changed since the previous
 * epoch: its old position lies in the old class's region, farther from
 * its new class than 30 gentle layout epochs can carry it (measured: ppr
 * 0.95-0.97 early in training without this). It starts instead next to
 * its nearest kNN neighbour of the new class that kept its class. */
static int64_t relocate_changed(const epoch_data *e, const carry *c,
                                const int32_t *pred, const td_knn *knn,
                                float *init) {
  int64_t moved = 0;
  int k = knn->k;
  for (int64_t i = 0; i < e->n; i++) {
    if (pred[i] == c->pred[i])
      continue;
    for (int j = 0; j < k; j++) {
      int32_t v = knn->idx[i * k + j];
      if (v < e->n && pred[v] == pred[i] && c->pred[v] == pred[v]) {
        /* a small deterministic offset so the two do not coincide */
        float a = (float)(i % 628) * 0.01f;
        init[2 * i] = c->pos[2 * v] + 0.05f * cosf(a);
        init[2 * i + 1] = c->pos[2 * v + 1] + 0.05f * sinf(a);
        moved++;
        break;
      }
    }
  }
  return moved;
}

/* Warm start in proportion to neighbourhood change: a point that kept a
 * share r of its kNN starts at r x its old position + (1 - r) x the mean old
 * position of its new neighbours, so points whose neighbourhood changed
 * move, and the others stay (temporal_corr, docs/projection.md). */
static void neighbour_init(const epoch_data *e, const carry *c,
                           const td_knn *knn, const float *overlap,
                           float *init) {
  int k = knn->k;
  for (int64_t i = 0; i < e->n; i++) {
    float r = overlap[i];
    if (r >= 1.0f)
      continue;
    double sx = 0.0, sy = 0.0;
    int cnt = 0;
    for (int j = 0; j < k; j++) {
      int32_t v = knn->idx[i * k + j];
      if (v < e->n) {
        sx += (double)c->pos[2 * v];
        sy += (double)c->pos[2 * v + 1];
        cnt++;
      }
    }
    if (!cnt)
      continue;
    init[2 * i] = r * c->pos[2 * i] + (1.0f - r) * (float)(sx / cnt);
    init[2 * i + 1] = r * c->pos[2 * i + 1] + (1.0f - r) * (float)(sy / cnt);
  }
}

static int class_aware(const epoch_data *e, const proj_tune *t, uint64_t seed,
                       const int32_t *pred, const td_knn *knn, td_graph *g,
                       td_err *err) {
  if (t->cross_weight == 1.0f && t->links <= 0)
    return TD_OK;
  td_graph_scale_mixed(g, pred, e->n, t->cross_weight);
  td_graph_prune(g, 1e-6f);
  int rc = TD_OK;
  if (t->links > 0 && e->n >= 2) {
    td_graph cl, joined;
    rc = td_complex_class_links(e->train.data, e->n, e->D, knn, pred, t->links,
                                t->link_weight, seed, &cl, NULL, err);
    if (rc == TD_OK) {
      const td_graph *parts[2] = {g, &cl};
      rc = td_graph_join(parts, NULL, 2, g->n_vertices, &joined, err);
      td_graph_free(&cl);
      if (rc == TD_OK) {
        td_graph_free(g);
        *g = joined;
      }
    }
  }
  return rc;
}

/* dvi: the complex over training points + boundary samples, made class
 * aware; *xv holds the vertices, *pred the training points' classes. */
static int dvi_graph(const td_project_opts *o, const epoch_data *e,
                     float **xv_out, int32_t **pred_out, td_graph *g,
                     td_knn *knn, double *knn_s, td_err *err) {
  double t0 = td_now();
  int64_t nv = e->n + e->nb;
  float *xv = malloc((size_t)nv * e->D * sizeof *xv);
  if (!xv)
    return td_err_set(err, TD_ENOMEM, "out of memory");
  memcpy(xv, e->train.data, (size_t)e->n * e->D * sizeof *xv);
  if (e->nb)
    memcpy(xv + e->n * e->D, e->bnd, (size_t)e->nb * e->D * sizeof *xv);
  int rc =
      td_complex_dvi(xv, e->n, e->bnd, e->nb, e->D, o->k, o->seed, g, knn, err);
  *knn_s = td_now() - t0;
  if (rc != TD_OK) {
    free(xv);
    return rc;
  }
  proj_tune tu;
  tune_from_opts(o, &tu);
  int32_t *pred = malloc((size_t)(e->n ? e->n : 1) * sizeof *pred);
  if (!pred)
    rc = td_err_set(err, TD_ENOMEM, "out of memory");
  else
    predicted(e, pred);
  if (rc != TD_OK ||
      (rc = class_aware(e, &tu, o->seed, pred, knn, g, err)) != TD_OK) {
    free(pred);
    free(xv);
    td_graph_free(g);
    td_knn_free(knn);
    return rc;
  }
  *xv_out = xv;
  *pred_out = pred;
  return TD_OK;
}

static void dvi_params(const td_project_opts *o, const epoch_data *e,
                       int64_t nv, td_vis_params *p) {
  td_vis_params_default(p, e->D);
  p->seed = o->seed;
  if (o->temporal >= 0)
    p->temporal = o->temporal;
  /* measured at 60k (docs/projection.md): 80 cold epochs already match
   * umap-learn's nn@15, and every later epoch refines the layout further */
  if (nv > 30000)
    p->layout_epochs = 80;
  tune_params(o, p);
}

/* The temporal anchors of a warm start: each vertex's kNN overlap with the
 * previous epoch, and SentryCam's memory rows. -1: out of memory. */
static int dvi_anchor(const epoch_data *e, const carry *c, const td_knn *knn,
                      int64_t nv, const td_vis_params *p, td_vis_anchor *anc,
                      float **overlap_out, float **membuf) {
  memset(anc, 0, sizeof *anc);
  float *overlap = NULL;
  if (c->have_knn) {
    overlap = malloc((size_t)nv * sizeof *overlap);
    if (overlap) {
      td_knn cur = *knn, prev = c->knn;
      cur.n = prev.n = e->n < c->knn.n ? e->n : c->knn.n;
      td_vis_knn_overlap(&prev, &cur, overlap);
      double mean = 0;
      for (int64_t i = 0; i < cur.n; i++)
        mean += (double)overlap[i];
      mean = cur.n ? mean / (double)cur.n : 1.0;
      for (int64_t i = cur.n; i < nv; i++)
        overlap[i] = (float)mean; /* boundary samples: the epoch's mean */
      anc->knn_overlap = overlap;
    }
  }
  *overlap_out = overlap;
  if (p->temporal == TD_TEMPORAL_MEMORY && c->n_mem > 0 &&
      memory_anchor(c, e->train.data, e->D, anc->knn_overlap, p->memory_delta,
                    anc, membuf) != 0) {
    free(overlap);
    *overlap_out = NULL;
    return -1;
  }
  return 0;
}

/* The layout starts from the previous epoch's positions, moved where the
 * neighbourhood or the predicted class changed; NULL: cold start. */
static float *dvi_init(const td_project_opts *o, const epoch_data *e,
                       const carry *c, const int32_t *pred, const td_knn *knn,
                       const float *overlap) {
  float *init = NULL;
  if (c->pos && c->n_pos == e->n &&
      (init = malloc((size_t)e->n * 2 * sizeof *init))) {
    memcpy(init, c->pos, (size_t)e->n * 2 * sizeof *init);
    if (overlap && o->neighbour_init)
      neighbour_init(e, c, knn, overlap, init);
    if (c->pred && o->relocate)
      relocate_changed(e, c, pred, knn, init);
  }
  return init;
}

/* Hands the fitted epoch to the next one. */
static void dvi_keep(const td_project_opts *o, const epoch_data *e, carry *c,
                     td_vismodel *m, float *pos, int32_t *pred, td_knn *knn,
                     int64_t nv, int temporal) {
  free(c->pos);
  free(c->pred);
  c->pred = pred;
  c->pos = pos;
  c->n_pos = e->n;
  c->n_vert = nv;
  td_vismodel_free(c->model);
  c->model = m;
  if (c->have_knn)
    td_knn_free(&c->knn);
  c->knn = *knn;
  c->have_knn = 1;
  if (temporal == TD_TEMPORAL_MEMORY)
    memory_push(c, pos, e->n, o->seed * 1000003u + c->n_pushed++);
}

/* The fit itself: the encoder/decoder and the drawn layout *pos of the
 * vertices xv [nv, D]. */
static int dvi_run_fit(const epoch_data *e, const carry *c, int warm,
                       const float *xv, int64_t nv, const td_graph *g,
                       const td_vis_params *p, const td_vis_anchor *anc,
                       float *init, td_vismodel *m, float *pos, td_err *err) {
  td_vis_fit_io io;
  memset(&io, 0, sizeof io);
  td_vis_head vh = {e->C, NULL, NULL};
  float *hw = NULL, *hb = NULL;
  if (e->n > 0 &&
      head_linear(e->head, e->D, e->C, e->train.data, &hw, &hb) == 0) {
    vh.w = hw;
    vh.b = hb;
    io.head = &vh;
  }
  if (init) {
    io.init_y = init;
    io.n_init = e->n;
  }
  io.y_out = pos;
  int rc = m && pos
               ? td_vismodel_fit_ex(
                     m, xv, nv, g, warm ? c->model : NULL, p,
                     anc->knn_overlap || anc->n_memory ? anc : NULL, &io, err)
               : td_err_set(err, TD_ENOMEM, "out of memory");
  free(hw);
  free(hb);
  return rc;
}

static int dvi_fit(void *st, const td_project_opts *o, const epoch_data *e,
                   double *knn_s, double *fit_s, td_err *err) {
  carry *c = st;
  float *xv = NULL;
  int32_t *pred = NULL;
  td_graph g;
  td_knn knn;
  double t0 = td_now();
  int rc = dvi_graph(o, e, &xv, &pred, &g, &knn, knn_s, err);
  if (rc != TD_OK)
    return rc;
  double t1 = t0 + *knn_s; /* the fit includes the class links */
  int64_t nv = e->n + e->nb;
  td_vis_params p;
  dvi_params(o, e, nv, &p);
  int warm = c->model && !o->independent;
  float *overlap = NULL, *membuf = NULL, *init = NULL, *pos = NULL;
  td_vis_anchor anc;
  memset(&anc, 0, sizeof anc);
  td_vismodel *m = NULL;
  if (warm && dvi_anchor(e, c, &knn, nv, &p, &anc, &overlap, &membuf) != 0) {
    rc = td_err_set(err, TD_ENOMEM, "out of memory");
  } else {
    m = td_vismodel_new(e->D, &p);
    init = warm ? dvi_init(o, e, c, pred, &knn, overlap) : NULL;
    pos = malloc((size_t)nv * 2 * sizeof *pos);
    rc = dvi_run_fit(e, c, warm, xv, nv, &g, &p, &anc, init, m, pos, err);
  }
  *fit_s = td_now() - t1;
  free(init);
  free(overlap);
  free(membuf);
  free(xv);
  td_graph_free(&g);
  if (rc != TD_OK) {
    free(pos);
    free(pred);
    td_vismodel_free(m);
    td_knn_free(&knn);
    return rc;
  }
  dvi_keep(o, e, c, m, pos, pred, &knn, nv, p.temporal);
  return TD_OK;
}

/* Training points and boundary samples are the layout's vertices: their
 * drawn positions are the layout itself; the encoder serves every other
 * point (docs/projection.md). */
static int dvi_place(const void *st, const epoch_data *e, float *const y[4],
                     td_err *err) {
  const carry *c = st;
  const float *X[4] = {e->train.data, e->test.data, e->bnd, e->ood.data};
  int64_t N[4] = {e->n, e->m, e->nb, e->mo};
  int layout = c->pos && c->n_vert == e->n + e->nb;
  if (layout) {
    memcpy(y[0], c->pos, (size_t)e->n * 2 * sizeof *y[0]);
    if (e->nb)
      memcpy(y[2], c->pos + 2 * e->n, (size_t)e->nb * 2 * sizeof *y[2]);
  }
  for (int s = 0; s < 4; s++) {
    if (!N[s] || (layout && (s == 0 || s == 2)))
      continue;
    if (td_vismodel_encode(c->model, X[s], N[s], y[s]) != 0)
      return td_err_set(err, TD_ENOMEM, "encoding the epoch: out of memory");
  }
  return TD_OK;
}

static int dvi_decode(void *ctx, const float *y, int64_t m, float *x) {
  const carry *c = ctx;
  return td_vismodel_decode(c->model, y, m, x);
}

static int dvi_save(const void *st, const char *dir, td_err *err) {
  const carry *c = st;
  char mdir[TD_PATH_MAX];
  int rc = td_pathf(mdir, sizeof mdir, err, "%s/model", dir);
  return rc ? rc : td_vismodel_save(c->model, mdir, err);
}

static void *dvi_new(void) { return calloc(1, sizeof(carry)); }

static void dvi_free(void *st) {
  if (st)
    carry_free(st);
  free(st);
}

/* The newest finished epoch's model, its drawn positions (they warm-start
 * the next layout) and its predicted classes (for relocate_changed). */
static void dvi_resume(void *st, const td_run *run, int epoch,
                       const char *dir) {
  carry *c = st;
  char mdir[TD_PATH_MAX];
  if (td_pathf(mdir, sizeof mdir, NULL, "%s/model", dir) ||
      td_vismodel_load(mdir, &c->model, NULL) != TD_OK)
    return;
  td_array a;
  if (td_vis_load_embedding_in(dir, "train", -1, &a, NULL) == TD_OK) {
    if ((c->pos = malloc((size_t)a.shape[0] * 2 * sizeof(float)))) {
      memcpy(c->pos, a.data, (size_t)a.shape[0] * 2 * sizeof(float));
      c->n_pos = a.shape[0];
    }
    td_array_close(&a);
  }
  epoch_data pe;
  memset(&pe, 0, sizeof pe);
  pe.C = td_run_get_meta(run)->n_classes;
  if (c->pos &&
      td_run_load(run, epoch, "train_logits", &pe.logits, NULL) == TD_OK) {
    pe.n = pe.logits.shape[0];
    if (pe.logits.dtype == TD_F32 && pe.logits.ndim == 2 &&
        pe.logits.shape[1] == pe.C && pe.n == c->n_pos &&
        (c->pred = malloc((size_t)pe.n * sizeof *c->pred)))
      predicted(&pe, c->pred);
    td_array_close(&pe.logits);
  }
}

const td__proj_method td__proj_dvi = {
    "dvi",   1,         dvi_new,    dvi_free, dvi_resume,
    dvi_fit, dvi_place, dvi_decode, dvi_save,
};

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

/* projection.json: what the epoch cost, stage by stage. */
static int put_timing(td_vis_writer *w, const td_project_opts *o, int epoch,
                      const epoch_data *e, const double secs[5], td_err *err) {
  json_t *pj = json_pack(
      "{s:i, s:s, s:f, s:f, s:f, s:f, s:f, s:I, s:I}", "epoch", epoch, "method",
      o->method, "boundary_seconds", secs[4], "knn_seconds", secs[0],
      "fit_seconds", secs[1], "territory_seconds", secs[2], "write_seconds",
      secs[3], "n_boundary", (json_int_t)e->nb, "k", (json_int_t)o->k);
  json_object_set_new(
      pj, "seconds",
      json_real(secs[0] + secs[1] + secs[2] + secs[3] + secs[4]));
  char *txt = json_dumps(pj, JSON_INDENT(2));
  json_decref(pj);
  int rc = txt ? td_vis_put_json(w, "projection.json", txt, err)
               : td_err_set(err, TD_ENOMEM, "out of memory");
  free(txt);
  return rc;
}

/* Places the points, computes the territory and writes the epoch's vis
 * directory through the vis writer (atomic: docs/vis-format.md). */
static int write_epoch(const td_run *run, const td_project_opts *o,
                       const td__proj_method *pm, void *st, int epoch,
                       const epoch_data *e, double secs[5], td_err *err) {
  td_vis_dims d;
  td_vis_dims_of_run(run, &d);
  d.n_train = e->n, d.n_test = e->m, d.n_ood = e->mo, d.n_boundary = e->nb;
  d.res = o->territory_res;
  td_vis_writer *w = NULL;
  td_territory terr;
  memset(&terr, 0, sizeof terr);
  placed p;
  int rc = place_epoch(pm, st, e, &p, err);
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
  if (rc == TD_OK && !(rc = put_timing(w, o, epoch, e, secs, err))) {
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
static void load_previous(const td_project_opts *o, const td__proj_method *pm,
                          void *st, const td_run *run, int upto_index) {
  for (int i = upto_index - 1; i >= 0 && pm->resume; i--) {
    char dir[TD_PATH_MAX];
    int ep = td_run_epoch_number(run, i);
    if (!td_vis_epoch_done(td_run_dir(run), o->method, ep) ||
        td_vis_epoch_dir(td_run_dir(run), o->method, ep, dir, sizeof dir))
      continue;
    td_projection *pj;
    if (td_projection_load(dir, &pj, NULL) != TD_OK)
      return;
    td_projection_free(pj);
    pm->resume(st, run, ep, dir);
    return;
  }
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
    if (!o->force && td_vis_epoch_done(td_run_dir(run), o->method, ep)) {
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

/* Loads, fits and writes one epoch; secs as in projection.json. */
static int project_epoch(const td_run *run, const td_project_opts *o,
                         const td__proj_method *pm, void *st, int t, int n,
                         int ep, float **inputs, double *dt, td_err *err) {
  double t0 = td_now(), secs[5] = {0};
  epoch_data e;
  report(o, t, n, ep, "load", 0);
  int rc = load_epoch(run, ep, &e, err);
  if (rc)
    return rc;
  if (o->boundary && pm->boundary) {
    report(o, t, n, ep, "boundary", 0);
    rc = boundary_epoch(run, o, ep, &e, inputs, err);
    secs[4] = td_now() - t0;
  }
  if (rc == TD_OK) {
    report(o, t, n, ep, "fit", 0);
    rc = pm->fit(st, o, &e, &secs[0], &secs[1], err);
  }
  if (rc == TD_OK) {
    report(o, t, n, ep, "territory", 0);
    rc = write_epoch(run, o, pm, st, ep, &e, secs, err);
  }
  epoch_data_free(&e);
  *dt = td_now() - t0;
  return rc;
}

int td_project(td_run *run, const td_project_opts *o, td_project_summary *s,
               td_err *err) {
  memset(s, 0, sizeof *s);
  const td__proj_method *pm = method_of(o->method);
  if (!pm)
    return td_err_set(err, TD_EARG, "unknown method '%s' (dvi or pca)",
                      o->method);
  if (o->k < 2 || o->territory_res < 8 || o->territory_res > 4096)
    return td_err_set(err, TD_EARG, "invalid k or territory resolution");
  int *idx = NULL, n_pending = 0;
  int rc =
      write_vis_json(td_run_dir(run), o, td_run_get_meta(run)->repr_dim, err);
  if (rc || (rc = pending_epochs(run, o, &idx, &n_pending, s, err)))
    return rc;
  float *inputs = NULL; /* input-space mixup: loaded on first use */
  void *st = pm->state_new();
  if (!st)
    rc = td_err_set(err, TD_ENOMEM, "out of memory");
  else if (n_pending && idx[0] > 0)
    load_previous(o, pm, st, run, idx[0]);
  double t_all = td_now();
  for (int t = 0; t < n_pending && rc == TD_OK; t++) {
    int ep = td_run_epoch_number(run, idx[t]);
    double dt;
    rc = project_epoch(run, o, pm, st, t, n_pending, ep, &inputs, &dt, err);
    if (rc != TD_OK) {
      td_err_prefix(err, "epoch %d", ep);
      break;
    }
    if (s->projected == 0)
      s->first_seconds = dt;
    else if (dt > s->max_later_seconds)
      s->max_later_seconds = dt;
    s->projected++;
    report(o, t, n_pending, ep, "done", dt);
  }
  s->seconds = td_now() - t_all;
  if (st)
    pm->state_free(st);
  free(inputs);
  free(idx);
  return rc;
}
