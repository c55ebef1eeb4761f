/* A small synthetic run for the suspicious-sample tests: N samples, C
 * classes, T epochs, the first N_NOISY with a flipped training label whose
 * logits keep favouring the true class; the rest learn their label with
 * seeded wobble (so some are forgotten now and then). Optional 2-D
 * projection under vis/pca/. */
#ifndef TD_SUS_FIXTURE_H
#define TD_SUS_FIXTURE_H

#include <stdio.h>
#include <string.h>

#include "run/run_json.h"
#include "tardis/array.h"
#include "tardis/fsutil.h"
#include "tardis/run.h"

#define SF_N 300
#define SF_C 3
#define SF_D 4
#define SF_T 6
#define SF_NOISY 30

static float sf_logits[SF_T][SF_N * SF_C];
static int32_t sf_labels[SF_N], sf_truth[SF_N];

static float sf_rand(uint32_t *s) {
  *s = *s * 1664525u + 1013904223u;
  return (float)(*s >> 8) / 16777216.0f;
}

static int sf_make_run(const char *dir, int with_truth, int with_proj,
                       td_err *err) {
  static char cls0[] = "a", cls1[] = "b", cls2[] = "c";
  char *classes[] = {cls0, cls1, cls2};
  td_run_meta m;
  memset(&m, 0, sizeof m);
  snprintf(m.name, sizeof m.name, "sus-fixture");
  m.classes = classes;
  m.n_classes = SF_C;
  m.n_train = SF_N;
  m.n_test = SF_N / 3;
  m.repr_dim = SF_D;
  int rc = td_run_create(dir, &m, 1, err);
  if (rc)
    return rc;
  uint32_t s = 12345;
  for (int i = 0; i < SF_N; i++) {
    sf_truth[i] = i % SF_C;
    sf_labels[i] = i < SF_NOISY ? (sf_truth[i] + 1) % SF_C : sf_truth[i];
  }
  td_array a;
  int64_t shape[2] = {SF_N, 0};
  td_array_wrap(&a, TD_I32, 1, shape, sf_labels);
  if ((rc = td_run_write_array(dir, "train_labels", &a, err)))
    return rc;
  if (with_truth) {
    td_array_wrap(&a, TD_I32, 1, shape, sf_truth);
    if ((rc = td_run_write_array(dir, "train_truth", &a, err)))
      return rc;
  }
  for (int t = 0; t < SF_T; t++) {
    float repr[SF_N * SF_D], w[SF_C * SF_D], b[SF_C];
    memset(w, 0, sizeof w);
    memset(b, 0, sizeof b);
    for (int c = 0; c < SF_C; c++)
      w[c * SF_D + c] = 1;
    for (int i = 0; i < SF_N; i++) {
      for (int d = 0; d < SF_D; d++)
        repr[i * SF_D + d] = sf_rand(&s) - 0.5f;
      /* clean samples learn their label; noisy ones stay with the truth */
      int favour = sf_truth[i];
      float strength = 0.5f + (float)t * 0.6f;
      repr[i * SF_D + favour] += strength;
      if (i >= SF_NOISY && sf_rand(&s) < 0.1f) /* an occasional slip */
        repr[i * SF_D + favour] -= 2.5f;
      for (int c = 0; c < SF_C; c++)
        sf_logits[t][i * SF_C + c] = repr[i * SF_D + c];
    }
    td_epoch_writer *wr;
    if ((rc = td_epoch_begin(dir, t + 1, &wr, err)))
      return rc;
    td_array ar;
    int64_t rs[2] = {SF_N, SF_D}, ls[2] = {SF_N, SF_C};
    td_array_wrap(&ar, TD_F32, 2, rs, repr);
    if (!rc)
      rc = td_epoch_add_array(wr, "train_repr", &ar, err);
    td_array_wrap(&ar, TD_F32, 2, ls, sf_logits[t]);
    if (!rc)
      rc = td_epoch_add_array(wr, "train_logits", &ar, err);
    json_t *ej = json_pack("{s:i}", "epoch", t + 1);
    if (!rc)
      rc = td__epoch_add_json(wr, "epoch.json", ej, err);
    json_decref(ej);
    const float *ws[] = {w}, *bs[] = {b};
    int dims[] = {SF_D, SF_C};
    if (!rc)
      rc = td_head_write(wr, 1, ws, bs, dims, NULL, err);
    if (rc) {
      td_epoch_abort(wr);
      return rc;
    }
    if ((rc = td_epoch_commit(wr, err)))
      return rc;
    if (with_proj) {
      char p[4400];
      snprintf(p, sizeof p, "%s/vis/pca/epoch_%04d", dir, t + 1);
      if ((rc = td_mkdirs(p, err)))
        return rc;
      float emb[SF_N * 2], temb[SF_N / 3 * 2];
      for (int i = 0; i < SF_N; i++) {
        /* noisy samples drift away from their labelled class, others sit
         * still near theirs */
        float cx = (float)sf_labels[i] * 10, drift = i < SF_NOISY ? 3.0f : 0;
        emb[2 * i] = cx + drift * (float)t + sf_rand(&s);
        emb[2 * i + 1] = sf_rand(&s);
      }
      for (int i = 0; i < SF_N / 3; i++) {
        /* the first 10 test samples are far off every training path */
        float off = i < 10 ? 500.0f : 0;
        temb[2 * i] = (float)(i % SF_C) * 10 + off + sf_rand(&s);
        temb[2 * i + 1] = sf_rand(&s) + off;
      }
      int64_t es[2] = {SF_N, 2}, ts[2] = {SF_N / 3, 2};
      char f[4500];
      snprintf(f, sizeof f, "%s/train_embedding.npy", p);
      if ((rc = td_npy_save_raw(f, TD_F32, 2, es, emb, err)))
        return rc;
      snprintf(f, sizeof f, "%s/test_embedding.npy", p);
      if ((rc = td_npy_save_raw(f, TD_F32, 2, ts, temb, err)))
        return rc;
    }
  }
  return TD_OK;
}

#endif
