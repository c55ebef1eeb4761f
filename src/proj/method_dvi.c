/* DeepVisualInsight as a projection method: per epoch the fuzzy complex of
 * the training points and boundary samples (with class-aware links), the
 * UMAP-style layout that gives the drawn positions, and the encoder/decoder
 * fitted to it, all warm-started from the previous epoch (docs/projection.md).
 * What one epoch hands to the next lives in the method's state (carry). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proj/proj_method.h"
#include "tardis/complex.h"
#include "tardis/fsutil.h"
#include "tardis/knn.h"
#include "tardis/parallel.h"
#include "tardis/rng.h"
#include "tardis/vis.h"
#include "tardis/vismodel.h"

typedef td__proj_epoch epoch_data;

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
  if (v->polish_rounds >= 0)
    p->polish_rounds = v->polish_rounds;
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

/* Mean kNN overlap with the previous epoch below which the warm layout gets
 * more epochs, and the overlap at which it gets twice as many. */
#define CHANGED_OVERLAP 0.8
#define CHANGED_OVERLAP_MIN 0.6

/* A warm layout of warm_layout_epochs at a small step does not finish
 * separating the predicted classes on an epoch where the classifier changed
 * a lot: on a 6k run's epoch 2 (mean overlap 0.64) 30 epochs left ppr at
 * 0.975-0.979, 60 gave 0.990-0.993 (docs/projection.md, "ppr on small
 * runs"). Scales the warm layout by up to 2 as the mean overlap of the
 * training points drops from CHANGED_OVERLAP to CHANGED_OVERLAP_MIN; an
 * epoch that changed little (the later epochs of a long run) costs the same
 * as before. */
static void more_layout_when_changed(td_vis_params *p, const float *overlap,
                                     int64_t n) {
  if (!overlap || n < 1)
    return;
  double mean = 0.0;
  for (int64_t i = 0; i < n; i++)
    mean += (double)overlap[i];
  mean /= (double)n;
  double t = (CHANGED_OVERLAP - mean) / (CHANGED_OVERLAP - CHANGED_OVERLAP_MIN);
  t = t < 0.0 ? 0.0 : t > 1.0 ? 1.0 : t;
  p->warm_layout_epochs = (int)lround(p->warm_layout_epochs * (1.0 + t));
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
  io.n_check = e->n; /* the polish checks the training points (ppr) */
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
    if (warm)
      more_layout_when_changed(&p, overlap, e->n);
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
 * the next layout) and its predicted classes (for relocate_changed). The
 * layout's vertex count (n_vert) stays 0, so dvi_place encodes every point:
 * what a draft of a later epoch needs. */
static int dvi_resume(void *st, const td_run *run, int epoch, const char *dir,
                      td_err *err) {
  carry *c = st;
  char mdir[TD_PATH_MAX];
  int rc = td_pathf(mdir, sizeof mdir, err, "%s/model", dir);
  if (!rc)
    rc = td_vismodel_load(mdir, &c->model, err);
  td_array a;
  if (!rc)
    rc = td_vis_load_embedding_in(dir, "train", td_run_get_meta(run)->n_train,
                                  &a, err);
  if (rc)
    return rc;
  if ((c->pos = malloc((size_t)a.shape[0] * 2 * sizeof(float)))) {
    memcpy(c->pos, a.data, (size_t)a.shape[0] * 2 * sizeof(float));
    c->n_pos = a.shape[0];
  }
  td_array_close(&a);
  epoch_data pe;
  memset(&pe, 0, sizeof pe);
  pe.C = td_run_get_meta(run)->n_classes;
  if (!c->pos)
    return td_err_set(err, TD_ENOMEM, "%s: out of memory", dir);
  if ((rc = td_run_load_f32(run, epoch, "train_logits", &pe.logits, err)))
    return rc;
  pe.n = pe.logits.shape[0];
  if (pe.n == c->n_pos && (c->pred = malloc((size_t)pe.n * sizeof *c->pred)))
    predicted(&pe, c->pred);
  td_array_close(&pe.logits);
  return c->pred ? TD_OK : td_err_set(err, TD_ENOMEM, "out of memory");
}

/* dvi_place then encodes every point (n_vert no longer matches). */
static void dvi_forget_layout(void *st) { ((carry *)st)->n_vert = 0; }

static const float *dvi_layout(const void *st, int64_t *n_train,
                               int64_t *n_vert) {
  const carry *c = st;
  *n_train = c->n_pos;
  *n_vert = c->n_vert;
  return c->n_vert ? c->pos : NULL;
}

/* A state resumed from files holds every point's position and class; the
 * sampled fit warm-starts from the sample's rows of them. */
static int dvi_restrict(void *st, const int64_t *rows, int64_t s, int64_t n) {
  carry *c = st;
  if (!c->pos || c->n_pos != n || s == n)
    return 0;
  for (int64_t i = 0; i < s; i++) { /* rows ascending: in place is safe */
    c->pos[2 * i] = c->pos[2 * rows[i]];
    c->pos[2 * i + 1] = c->pos[2 * rows[i] + 1];
    if (c->pred)
      c->pred[i] = c->pred[rows[i]];
  }
  c->n_pos = s;
  if (c->have_knn) { /* a kNN graph of all n points is no use to s */
    td_knn_free(&c->knn);
    c->have_knn = 0;
  }
  return 0;
}

static const td_knn *dvi_graph_of(const void *st) {
  const carry *c = st;
  return c->have_knn ? &c->knn : NULL;
}

const td__proj_method td__proj_dvi = {
    "dvi",
    1,
    1,
    dvi_new,
    dvi_free,
    dvi_resume,
    dvi_fit,
    dvi_place,
    dvi_decode,
    dvi_save,
    dvi_forget_layout,
    dvi_layout,
    dvi_restrict,
    dvi_graph_of,
};
