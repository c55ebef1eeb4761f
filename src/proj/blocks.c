/* Projection in blocks of consecutive epochs, one block per process
 * (tardis/project.h, td_project_block_*; docs/scale.md "Across processes").
 * Each block chains its epochs exactly as td_project does; a block after
 * the first starts from its own cold fit of the epoch before it, and its
 * epochs are afterwards moved onto the canvas of the block before by the
 * similarity that best maps that border fit onto the border as written. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "proj/blocks.h"
#include "tardis/fsutil.h"
#include "tardis/parallel.h"
#include "tardis/territory.h"
#include "tardis/vis.h"

struct td_project_block {
  td_run *run;
  td_project_opts o;
  td_projector *p;
  int rank, size;
  int *epochs, n; /* this block's epochs */
  int border;     /* the epoch fitted (not written) before them; -1: none */
  int skipped;    /* epochs in range already done (counted by block 0) */
  float *border_y;
};

void td_project_block_close(td_project_block *b) {
  if (!b)
    return;
  td_projector_close(b->p);
  free(b->epochs);
  free(b->border_y);
  free(b);
}

/* Which epochs are block rank's, and the border before them: the epoch
 * just before the first, when an earlier block projects it. */
static void block_share(td_project_block *b, const int *idx, int n) {
  int lo = (int)((int64_t)n * b->rank / b->size);
  int hi = (int)((int64_t)n * (b->rank + 1) / b->size);
  b->n = hi - lo;
  for (int i = 0; i < b->n; i++)
    b->epochs[i] = td_run_epoch_number(b->run, idx[lo + i]);
  b->border = -1;
  if (b->n && lo > 0 && idx[lo - 1] == idx[lo] - 1)
    b->border = td_run_epoch_number(b->run, idx[lo - 1]);
}

int td_project_block_open(td_run *run, const td_project_opts *o, int rank,
                          int size, td_project_block **out, td_err *err) {
  *out = NULL;
  if (size < 1 || rank < 0 || rank >= size)
    return td_err_set(err, TD_EARG, "block %d of %d", rank, size);
  if (size > 1 && strcmp(o->method, "dvi") != 0)
    return td_err_set(err, TD_EARG,
                      "projection in blocks of epochs is for dvi (method '%s' "
                      "is fast on one process)",
                      o->method);
  int rc = td_run_validate_top(run, err);
  if (rc)
    return rc;
  td_project_block *b = calloc(1, sizeof *b);
  if (!b)
    return td_err_set(err, TD_ENOMEM, "out of memory");
  b->run = run;
  b->o = *o;
  b->rank = rank;
  b->size = size;
  int *idx = NULL, n = 0;
  td_project_summary s;
  memset(&s, 0, sizeof s);
  rc = td__project_pending(run, o, &idx, &n, &s, err);
  if (rc == TD_OK && !(b->epochs = malloc((size_t)(n ? n : 1) * sizeof(int))))
    rc = td_err_set(err, TD_ENOMEM, "out of memory");
  if (rc == TD_OK) {
    block_share(b, idx, n);
    b->skipped = rank == 0 ? s.skipped : 0;
    /* the block reports its epochs itself, counted within the block */
    td_project_opts po = b->o;
    po.progress = NULL;
    rc = td_projector_open(run, &po, &b->p, err);
  }
  free(idx);
  if (rc) {
    td_project_block_close(b);
    return rc;
  }
  *out = b;
  return TD_OK;
}

int td_project_block_fit(td_project_block *b, td_project_summary *s,
                         td_err *err) {
  memset(s, 0, sizeof *s);
  s->skipped = b->skipped;
  double t0 = td_now();
  int rc = TD_OK;
  if (b->border >= 0)
    rc = td__projector_fit_only(b->p, b->border, &b->border_y, err);
  for (int i = 0; rc == TD_OK && i < b->n; i++) {
    double dt = 0;
    if ((rc = td_projector_epoch(b->p, b->epochs[i], NULL, &dt, err)))
      break;
    if (b->o.progress) {
      td_project_progress pr = {i, b->n, b->epochs[i], "done", dt};
      b->o.progress(&pr, b->o.progress_ctx);
    }
    if (s->projected == 0)
      s->first_seconds = dt;
    else if (dt > s->max_later_seconds)
      s->max_later_seconds = dt;
    s->projected++;
  }
  s->seconds = td_now() - t0;
  return rc;
}

int td_project_block_border(const td_project_block *b, double T[6],
                            td_err *err) {
  td__affine_identity(T);
  if (b->border < 0)
    return TD_OK;
  int64_t n = td_run_get_meta(b->run)->n_train;
  td_array a;
  int rc = td_vis_load_embedding(td_run_dir(b->run), b->o.method, b->border,
                                 "train", n, &a, err);
  if (rc) {
    td_err_prefix(err, "block %d's border", b->rank);
    return rc;
  }
  td__affine_procrustes(b->border_y, a.data, n, T);
  td_array_close(&a);
  return TD_OK;
}

void td_project_block_chain(const double *borders, int rank, double out[6]) {
  td__affine_identity(out);
  for (int r = 1; r <= rank; r++) {
    double t[6];
    td__affine_compose(out, borders + 6 * r, t);
    memcpy(out, t, sizeof t);
  }
}

/* ---- rewriting an epoch through a transform -------------------------- */

static int decode_model(void *ctx, const float *y, int64_t m, float *x) {
  return td_vismodel_decode(ctx, y, m, x);
}

/* The epoch's files: positions [train, test, boundary, ood] copied (the
 * loaded arrays are read-only maps; NULL: absent), the rest as loaded. */
typedef struct moved {
  float *y[4];
  int64_t ny[4];
  td_array bnd, pairs;
  td_vismodel *model;
  td_territory terr;
  json_t *pj;
} moved;

static void moved_free(moved *m) {
  for (int s = 0; s < 4; s++)
    free(m->y[s]);
  td_array_close(&m->bnd);
  td_array_close(&m->pairs);
  td_vismodel_free(m->model);
  td_territory_free(&m->terr);
  json_decref(m->pj);
}

static const char *const splits[4] = {"train", "test", "boundary", "ood"};

static int load_moved(const char *dir, moved *m, td_err *err) {
  char path[TD_PATH_MAX];
  int rc = TD_OK;
  for (int s = 0; s < 4 && rc == TD_OK; s++) {
    if ((rc = td_pathf(path, sizeof path, err, "%s/%s_embedding.npy", dir,
                       splits[s])))
      break;
    if (s != 0 && s != 2 && !td_path_exists(path))
      continue;
    td_array a;
    if ((rc = td_vis_load_embedding_file(path, -1, &a, err)))
      break;
    m->ny[s] = a.shape[0];
    if ((m->y[s] =
             malloc((size_t)(a.shape[0] ? a.shape[0] : 1) * 2 * sizeof(float))))
      memcpy(m->y[s], a.data, (size_t)a.shape[0] * 2 * sizeof(float));
    else
      rc = td_err_set(err, TD_ENOMEM, "%s: out of memory", path);
    td_array_close(&a);
  }
  if (rc == TD_OK &&
      !(rc = td_pathf(path, sizeof path, err, "%s/boundary_repr.npy", dir)))
    rc = td_npy_load(path, &m->bnd, err);
  if (rc == TD_OK &&
      !(rc = td_pathf(path, sizeof path, err, "%s/boundary_pairs.npy", dir)))
    rc = td_npy_load(path, &m->pairs, err);
  if (rc == TD_OK && !(rc = td_pathf(path, sizeof path, err, "%s/model", dir)))
    rc = td_vismodel_load(path, &m->model, err);
  if (rc == TD_OK &&
      !(rc = td_pathf(path, sizeof path, err, "%s/projection.json", dir))) {
    json_error_t je;
    if (!(m->pj = json_load_file(path, 0, &je)) || !json_is_object(m->pj))
      rc = td_err_set(err, TD_EFORMAT, "%s: %s", path, je.text);
  }
  return rc;
}

static int put_moved(td_vis_writer *w, const moved *m, td_err *err) {
  static const char *const names[4] = {
      "train_embedding.npy", "test_embedding.npy", "boundary_embedding.npy",
      "ood_embedding.npy"};
  int rc = TD_OK;
  for (int s = 0; s < 4 && rc == TD_OK; s++)
    if (m->y[s])
      rc = td_vis_put_f32(w, names[s], m->y[s], m->ny[s], 2, err);
  if (rc == TD_OK)
    rc = td_vis_put_array(w, "boundary_repr.npy", m->bnd.dtype, m->bnd.ndim,
                          m->bnd.shape, m->bnd.data, err);
  if (rc == TD_OK)
    rc = td_vis_put_array(w, "boundary_pairs.npy", m->pairs.dtype,
                          m->pairs.ndim, m->pairs.shape, m->pairs.data, err);
  char mdir[TD_PATH_MAX];
  if (rc == TD_OK && !(rc = td_pathf(mdir, sizeof mdir, err, "%s/model",
                                     td_vis_writer_dir(w))))
    rc = td_vismodel_save(m->model, mdir, err);
  if (rc == TD_OK)
    rc = td_territory_save(&m->terr, td_vis_writer_dir(w), err);
  char *txt = rc == TD_OK ? json_dumps(m->pj, JSON_INDENT(2)) : NULL;
  if (rc == TD_OK)
    rc = txt ? td_vis_put_json(w, "projection.json", txt, err)
             : td_err_set(err, TD_ENOMEM, "out of memory");
  free(txt);
  return rc;
}

/* projection.json says which block drew the epoch and how it was moved. */
static void note_block(const td_project_block *b, const double T[6],
                       json_t *pj) {
  json_t *t = json_array();
  for (int i = 0; i < 6; i++)
    json_array_append_new(t, json_real(T[i]));
  json_object_set_new(pj, "block",
                      json_pack("{s:i, s:i, s:i, s:o}", "index", b->rank, "of",
                                b->size, "border", b->border, "transform", t));
}

/* Rewrites one written epoch of the block with its canvas moved by T. */
static int move_epoch(const td_project_block *b, int epoch, const double T[6],
                      td_err *err) {
  char dir[TD_PATH_MAX];
  const char *run_dir = td_run_dir(b->run);
  if (td_vis_epoch_dir(run_dir, b->o.method, epoch, dir, sizeof dir))
    return td_err_set(err, TD_ERANGE, "%s: path too long", run_dir);
  moved m;
  memset(&m, 0, sizeof m);
  td_head *head = NULL;
  td_vis_writer *w = NULL;
  int rc = load_moved(dir, &m, err);
  if (rc == TD_OK)
    rc = td_run_load_head(b->run, epoch, &head, err);
  for (int s = 0; s < 4 && rc == TD_OK; s++)
    if (m.y[s])
      td__affine_apply(T, m.y[s], m.ny[s]);
  if (rc == TD_OK && td__vismodel_affine(m.model, T))
    rc = td_err_set(err, TD_EVALUE, "%s: a singular canvas transform", dir);
  float ext[4];
  if (rc == TD_OK)
    td_territory_extent(m.y[0], m.ny[0], ext);
  if (rc == TD_OK)
    rc = td_territory_compute(decode_model, m.model,
                              td_vismodel_repr_dim(m.model), head, ext,
                              b->o.territory_res, &m.terr, err);
  if (rc == TD_OK) {
    note_block(b, T, m.pj);
    td_vis_dims d;
    td_vis_dims_of_run(b->run, &d);
    d.n_train = m.ny[0], d.n_boundary = m.ny[2];
    d.n_test = m.ny[1], d.n_ood = m.ny[3];
    d.res = b->o.territory_res;
    rc = td_vis_epoch_begin(run_dir, b->o.method, epoch, &d, &w, err);
  }
  if (rc == TD_OK && (rc = put_moved(w, &m, err)) == TD_OK) {
    rc = td_vis_epoch_commit(w, err);
    w = NULL;
  }
  td_vis_epoch_abort(w);
  td_head_free(head);
  moved_free(&m);
  if (rc)
    td_err_prefix(err, "epoch %d (aligning block %d)", epoch, b->rank);
  return rc;
}

int td_project_block_align(td_project_block *b, const double chained[6],
                           td_err *err) {
  double id[6];
  td__affine_identity(id);
  if (!memcmp(id, chained, sizeof id))
    return TD_OK; /* block 0, or a block that warm-started from disk */
  for (int i = 0; i < b->n; i++) {
    int rc = move_epoch(b, b->epochs[i], chained, err);
    if (rc)
      return rc;
  }
  return TD_OK;
}
