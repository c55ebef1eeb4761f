/* Pieces of the small synthetic runs that tests write by hand (RUN/ as
 * docs/run-format.md describes it): the run's metadata, its 1-D int32
 * arrays (labels, truth), an epoch's arrays, and the epoch.json and
 * one-layer head that close an epoch. Each returns TD_OK or the error. */
#ifndef TD_TESTS_TOY_RUN_H
#define TD_TESTS_TOY_RUN_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "run/run_json.h"
#include "tardis/array.h"
#include "tardis/run.h"

/* The next number of a seeded linear congruential sequence, uniform in
 * [0, 1): the toy runs' data, the same on every machine. */
static inline float td_t_lcg(uint32_t *s) {
  *s = *s * 1664525u + 1013904223u;
  return (float)(*s >> 8) / 16777216.0f;
}

/* The metadata of a toy run: n_classes classes, n_train training and
 * n_test test samples with repr_dim-wide representations; the rest 0. */
static inline void td_t_toy_meta(td_run_meta *m, const char *name,
                                 char **classes, int n_classes, int64_t n_train,
                                 int64_t n_test, int repr_dim) {
  memset(m, 0, sizeof *m);
  snprintf(m->name, sizeof m->name, "%s", name);
  m->classes = classes;
  m->n_classes = n_classes;
  m->n_train = n_train;
  m->n_test = n_test;
  m->repr_dim = repr_dim;
}

/* Writes the n int32 values of v as the run's array `name`. */
static inline int td_t_toy_i32(const char *run_dir, const char *name,
                               const int32_t *v, int64_t n, td_err *err) {
  td_array a;
  td_array_wrap(&a, TD_I32, 1, &n, (void *)(uintptr_t)v);
  return td_run_write_array(run_dir, name, &a, err);
}

/* Adds a [rows, cols] array of dtype t (cols 0: [rows]) to the epoch. */
static inline int td_t_toy_put(td_epoch_writer *wr, const char *name,
                               td_dtype t, int64_t rows, int64_t cols,
                               const void *v, td_err *err) {
  td_array a;
  int64_t shape[2] = {rows, cols};
  td_array_wrap(&a, t, cols ? 2 : 1, shape, (void *)(uintptr_t)v);
  return td_epoch_add_array(wr, name, &a, err);
}

/* Adds an epoch's float32 representations and logits of its n training
 * and m test samples: train_repr [n, d], test_repr [m, d], train_logits
 * [n, c] and test_logits [m, c]. */
static inline int td_t_toy_reprs(td_epoch_writer *wr, int64_t n, int64_t m,
                                 int64_t d, int64_t c, const float *repr,
                                 const float *trepr, const float *logits,
                                 const float *tlogits, td_err *err) {
  int rc = td_t_toy_put(wr, "train_repr", TD_F32, n, d, repr, err);
  if (!rc)
    rc = td_t_toy_put(wr, "test_repr", TD_F32, m, d, trepr, err);
  if (!rc)
    rc = td_t_toy_put(wr, "train_logits", TD_F32, n, c, logits, err);
  if (!rc)
    rc = td_t_toy_put(wr, "test_logits", TD_F32, m, c, tlogits, err);
  return rc;
}

/* Saves a [rows, cols] array of dtype t as the file dir/name. */
static inline int td_t_toy_npy(const char *dir, const char *name, td_dtype t,
                               int64_t rows, int64_t cols, const void *v,
                               td_err *err) {
  char p[4600];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  int64_t shape[2] = {rows, cols};
  return td_npy_save_raw(p, t, 2, shape, v, err);
}

/* Saves a projected epoch's 2-D points into its directory vis_dir:
 * train_embedding.npy [n, 2] and test_embedding.npy [m, 2]. */
static inline int td_t_toy_embeddings(const char *vis_dir, int64_t n, int64_t m,
                                      const float *emb, const float *temb,
                                      td_err *err) {
  int rc = td_t_toy_npy(vis_dir, "train_embedding.npy", TD_F32, n, 2, emb, err);
  if (!rc)
    rc = td_t_toy_npy(vis_dir, "test_embedding.npy", TD_F32, m, 2, temb, err);
  return rc;
}

/* Closes an epoch: adds epoch.json (ej, released here) and a one-layer
 * head (w [c, d], b [c]), then commits it; when rc (what was written
 * before) or either of these fails, the epoch is aborted instead. */
static inline int td_t_toy_end(td_epoch_writer *wr, int rc, json_t *ej,
                               const float *w, const float *b, int d, int c,
                               td_err *err) {
  if (!rc)
    rc = td__epoch_add_json(wr, "epoch.json", ej, err);
  json_decref(ej);
  const float *ws[1] = {w}, *bs[1] = {b};
  int dims[2] = {d, c};
  if (!rc)
    rc = td_head_write(wr, 1, ws, bs, dims, NULL, err);
  if (rc) {
    td_epoch_abort(wr);
    return rc;
  }
  return td_epoch_commit(wr, err);
}

#endif
