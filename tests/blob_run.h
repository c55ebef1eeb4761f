/* A synthetic run of class blobs for the projection tests (test_scale.c,
 * test_blocks.c): D = 16 dimensions, C = 4 classes on the dimensions
 * j % C == class, separating further each epoch (sep_step) and drifting
 * (drift), with a head that sums each class's dimensions. */
#ifndef TD_TESTS_BLOB_RUN_H
#define TD_TESTS_BLOB_RUN_H
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "run/run_json.h"
#include "tardis/rng.h"
#include "tardis/run.h"
#include "toy_run.h"

enum { TD_T_BLOB_D = 16, TD_T_BLOB_C = 4 };

typedef struct {
  const char *name;
  int n, m, epochs;
  uint64_t seed;
  float sep_step, drift;
} td_t_blob_opts;

static inline void td_t_blob_points(td_rng *rng, int64_t n, int epoch,
                                    const td_t_blob_opts *o, const int32_t *lab,
                                    float *x, float *z) {
  enum { D = TD_T_BLOB_D, C = TD_T_BLOB_C };
  float sep = 1.5f + o->sep_step * (float)epoch;
  for (int64_t i = 0; i < n; i++) {
    for (int j = 0; j < D; j++) {
      float centre = (j % C == lab[i]) ? sep : o->drift * (float)epoch;
      x[i * D + j] =
          centre + (0.4f + 0.3f * (float)(j % 5)) * td_rng_normal(rng);
    }
    for (int c = 0; c < C; c++) {
      float s = 0;
      for (int j = c; j < D; j += C)
        s += x[i * D + j];
      z[i * C + c] = s;
    }
  }
}

static inline int td_t_blob_epochs(const char *run_dir, const td_t_blob_opts *o,
                                   const int32_t *ytr, const int32_t *yte,
                                   float *buf, td_err *err) {
  enum { D = TD_T_BLOB_D, C = TD_T_BLOB_C };
  float *xtr = buf, *xte = xtr + (size_t)o->n * D,
        *ztr = xte + (size_t)o->m * D;
  float *zte = ztr + (size_t)o->n * C, w[C * D], b[C] = {0};
  for (int c = 0; c < C; c++)
    for (int j = 0; j < D; j++)
      w[c * D + j] = (j % C == c) ? 1.0f : 0.0f;
  td_rng rng;
  td_rng_seed(&rng, o->seed);
  for (int ep = 1; ep <= o->epochs; ep++) {
    td_t_blob_points(&rng, o->n, ep, o, ytr, xtr, ztr);
    td_t_blob_points(&rng, o->m, ep, o, yte, xte, zte);
    td_epoch_writer *wr;
    if (td_epoch_begin(run_dir, ep, &wr, err))
      return -1;
    int rc = td_t_toy_reprs(wr, o->n, o->m, D, C, xtr, xte, ztr, zte, err);
    json_t *ej = json_pack("{s:i}", "epoch", ep);
    if (td_t_toy_end(wr, rc, ej, w, b, D, C, err))
      return -1;
  }
  return 0;
}

/* Writes the run; 0, or -1 with the error printed. */
static inline int td_t_blob_run(const char *run_dir, const td_t_blob_opts *o) {
  enum { D = TD_T_BLOB_D, C = TD_T_BLOB_C };
  char *classes[C] = {"a", "b", "c", "d"};
  td_run_meta m;
  td_t_toy_meta(&m, o->name, classes, C, o->n, o->m, D);
  td_err err = {0};
  int32_t *ytr = malloc((size_t)(o->n + o->m) * sizeof *ytr);
  float *buf = malloc((size_t)(o->n + o->m) * (D + C) * sizeof *buf);
  int rc = !ytr || !buf || td_run_create(run_dir, &m, 0, &err) ? -1 : 0;
  int32_t *yte = ytr ? ytr + o->n : NULL;
  for (int i = 0; rc == 0 && i < o->n; i++)
    ytr[i] = (i * 7) % C;
  for (int i = 0; rc == 0 && i < o->m; i++)
    yte[i] = i % C;
  if (rc == 0)
    rc = td_t_toy_i32(run_dir, "train_labels", ytr, o->n, &err) ? -1 : 0;
  if (rc == 0)
    rc = td_t_toy_i32(run_dir, "test_labels", yte, o->m, &err) ? -1 : 0;
  if (rc == 0)
    rc = td_t_blob_epochs(run_dir, o, ytr, yte, buf, &err);
  if (rc)
    fprintf(stderr, "%s: %s\n", run_dir,
            err.msg[0] ? err.msg : "out of memory");
  free(ytr);
  free(buf);
  return rc;
}

#endif
