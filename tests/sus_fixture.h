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
#include "toy_run.h"

#define SF_N 300
#define SF_C 3
#define SF_D 4
#define SF_T 6
#define SF_NOISY 30

static float sf_logits[SF_T][SF_N * SF_C];
static int32_t sf_labels[SF_N], sf_truth[SF_N];

static int sf_make_run(const char *dir, int with_truth, int with_proj,
                       td_err *err) {
  static char cls0[] = "a", cls1[] = "b", cls2[] = "c";
  char *classes[] = {cls0, cls1, cls2};
  td_run_meta m;
  td_t_toy_meta(&m, "sus-fixture", classes, SF_C, SF_N, SF_N / 3, SF_D);
  int rc = td_run_create(dir, &m, 1, err);
  if (rc)
    return rc;
  uint32_t s = 12345;
  for (int i = 0; i < SF_N; i++) {
    sf_truth[i] = i % SF_C;
    sf_labels[i] = i < SF_NOISY ? (sf_truth[i] + 1) % SF_C : sf_truth[i];
  }
  if ((rc = td_t_toy_i32(dir, "train_labels", sf_labels, SF_N, err)))
    return rc;
  if (with_truth &&
      (rc = td_t_toy_i32(dir, "train_truth", sf_truth, SF_N, err)))
    return rc;
  for (int t = 0; t < SF_T; t++) {
    float repr[SF_N * SF_D], w[SF_C * SF_D], b[SF_C];
    memset(w, 0, sizeof w);
    memset(b, 0, sizeof b);
    for (int c = 0; c < SF_C; c++)
      w[c * SF_D + c] = 1;
    for (int i = 0; i < SF_N; i++) {
      for (int d = 0; d < SF_D; d++)
        repr[i * SF_D + d] = td_t_lcg(&s) - 0.5f;
      /* clean samples learn their label; noisy ones stay with the truth */
      int favour = sf_truth[i];
      float strength = 0.5f + (float)t * 0.6f;
      repr[i * SF_D + favour] += strength;
      if (i >= SF_NOISY && td_t_lcg(&s) < 0.1f) /* an occasional slip */
        repr[i * SF_D + favour] -= 2.5f;
      for (int c = 0; c < SF_C; c++)
        sf_logits[t][i * SF_C + c] = repr[i * SF_D + c];
    }
    td_epoch_writer *wr;
    if ((rc = td_epoch_begin(dir, t + 1, &wr, err)))
      return rc;
    rc = td_t_toy_put(wr, "train_repr", TD_F32, SF_N, SF_D, repr, err);
    if (!rc)
      rc = td_t_toy_put(wr, "train_logits", TD_F32, SF_N, SF_C, sf_logits[t],
                        err);
    json_t *ej = json_pack("{s:i}", "epoch", t + 1);
    if ((rc = td_t_toy_end(wr, rc, ej, w, b, SF_D, SF_C, err)))
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
        emb[2 * i] = cx + drift * (float)t + td_t_lcg(&s);
        emb[2 * i + 1] = td_t_lcg(&s);
      }
      for (int i = 0; i < SF_N / 3; i++) {
        /* the first 10 test samples are far off every training path */
        float off = i < 10 ? 500.0f : 0;
        temb[2 * i] = (float)(i % SF_C) * 10 + off + td_t_lcg(&s);
        temb[2 * i + 1] = td_t_lcg(&s) + off;
      }
      if ((rc = td_t_toy_embeddings(p, SF_N, SF_N / 3, emb, temb, err)))
        return rc;
    }
  }
  return TD_OK;
}

#endif
