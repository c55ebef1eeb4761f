/* td_diagnose: per-label metrics, layer probes, the saturation layer and
 * the heat maps there, for one epoch of a run. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "repair/repair_internal.h"

void td_diagnose_opts_default(td_diagnose_opts *o) {
  memset(o, 0, sizeof *o);
  o->epoch = -1;
  o->theta = 0.92;
  o->gamma = 0.10;
  o->layer = -2;
  o->probe_epochs = 10;
  o->probe_max = 5000;
  o->saturation = 0.01;
  o->seed = 1;
}

void td_diagnosis_free(td_diagnosis *d) {
  if (!d)
    return;
  free(d->labels);
  free(d->confusion);
  free(d->probes);
  free(d->probe_w);
  free(d->hm_correct);
  free(d->hm_missed);
  free(d->hm_wrong);
  free(d->hm_confused);
  free(d->dhm_under);
  free(d->dhm_over);
  free(d);
}

/* A one-layer head read back as weights: head(0) is the bias, head(e_j) -
 * head(0) the column j. */
static int head_weights(const td__diag_data *d, float *w) {
  int D = d->D, C = d->C;
  float *x = calloc((size_t)(D + 1) * D, sizeof *x);
  float *z = malloc((size_t)(D + 1) * C * sizeof *z);
  if (!x || !z) {
    free(x);
    free(z);
    return TD_ENOMEM;
  }
  for (int j = 0; j < D; j++)
    x[(int64_t)(j + 1) * D + j] = 1.0f;
  td_head_forward(d->head, x, D + 1, z);
  for (int c = 0; c < C; c++)
    for (int j = 0; j < D; j++)
      w[(int64_t)c * D + j] = z[(int64_t)(j + 1) * C + c] - z[c];
  free(x);
  free(z);
  return TD_OK;
}

/* The layers a probe looks at: every hidden layer but dropout (the same
 * features as the layer before it at inference). */
static int probe_layers(const td_net *net, int *layers) {
  int n = 0;
  for (int i = 0; i + 1 < td_net_n_layers(net); i++)
    if (td_net_layer_spec(net, i)->kind != TD_LAYER_DROPOUT)
      layers[n++] = i;
  return n;
}

/* Fits a probe at each candidate layer; the heat maps go to the first one
 * within o->saturation of the best test accuracy. */
static int probe_all(const td__diag_data *d, const td_diagnose_opts *o,
                     td_diagnosis *g, td_err *err) {
  int L = td_net_n_layers(d->net), C = d->C;
  int *layers = malloc((size_t)L * sizeof *layers);
  g->probes = calloc((size_t)L, sizeof *g->probes);
  float **ws = calloc((size_t)L, sizeof *ws);
  float *b = malloc((size_t)C * sizeof *b);
  int rc = layers && g->probes && ws && b ? TD_OK : TD_ENOMEM;
  int n = rc ? 0 : probe_layers(d->net, layers);
  int want = o->layer == -1 ? L - 2 : o->layer;
  if (!rc && want >= 0) { /* one layer, chosen by the caller */
    if (want >= L - 1)
      rc = td_err_set(err, TD_EARG,
                      "layer %d: the checkpoint's hidden layers are 0 to %d",
                      want, L - 2);
    layers[0] = want;
    n = 1;
  }
  double *acc = rc ? NULL : malloc((size_t)2 * (n ? n : 1) * sizeof *acc);
  for (int k = 0; !rc && k < n; k++) {
    td_probe_diag *p = &g->probes[k];
    p->layer = layers[k];
    p->dim = td__feature_dim(d, p->layer, &p->pooled);
    if (!(ws[k] = malloc((size_t)C * p->dim * sizeof(float))))
      rc = TD_ENOMEM;
    g->n_probes = k + 1;
  }
  if (!rc && !acc)
    rc = TD_ENOMEM;
  if (!rc) /* every layer's features from one pass */
    rc = td__probe_fit_layers(d, n, layers, o, ws, b, acc, acc + n, err);
  for (int k = 0; !rc && k < n; k++) {
    g->probes[k].train_acc = acc[k];
    g->probes[k].test_acc = acc[n + k];
  }
  free(acc);
  int pick = 0;
  double best = -1;
  for (int k = 0; !rc && k < n; k++)
    best = g->probes[k].test_acc > best ? g->probes[k].test_acc : best;
  while (!rc && pick + 1 < n && g->probes[pick].test_acc < best - o->saturation)
    pick++;
  if (!rc) {
    g->layer = g->probes[pick].layer;
    g->dim = g->probes[pick].dim;
    g->pooled = g->probes[pick].pooled;
    g->probe_w = ws[pick];
    ws[pick] = NULL;
  }
  for (int k = 0; k < L && ws; k++)
    free(ws[k]);
  free(ws);
  free(layers);
  free(b);
  return rc == TD_ENOMEM && !err->msg[0]
             ? td_err_set(err, rc, "out of memory fitting the probes")
             : rc;
}

/* Runs without a checkpoint: the representation, with the head as probe. */
static int probe_head(const td__diag_data *d, const td_diagnose_opts *o,
                      td_diagnosis *g, td_err *err) {
  g->layer = -1;
  g->dim = d->D;
  g->probes = calloc(1, sizeof *g->probes);
  g->probe_w = malloc((size_t)d->C * d->D * sizeof(float));
  float *b = malloc((size_t)d->C * sizeof *b);
  int rc = g->probes && g->probe_w && b ? TD_OK : TD_ENOMEM;
  g->n_probes = 1;
  if (!rc) {
    g->probes[0] = (td_probe_diag){-1, d->D, 0, g->train_acc, g->test_acc};
    if (td_head_n_layers(d->head) == 1)
      rc = head_weights(d, g->probe_w);
    else /* a deeper head is not linear: fit a linear probe instead */
      rc = td__probe_fit(d, -1, o, g->probe_w, b, &g->probes[0].train_acc,
                         &g->probes[0].test_acc, err);
  }
  free(b);
  return rc == TD_ENOMEM && !err->msg[0]
             ? td_err_set(err, rc, "out of memory reading the head")
             : rc;
}

static int pick_epoch(const td_run *run, int want, int *epoch, td_err *err) {
  int n = td_run_n_epochs(run);
  if (n == 0)
    return td_err_set(err, TD_ENOENT, "%s: no epoch recorded", td_run_dir(run));
  if (want < 0) {
    *epoch = td_run_epoch_number(run, n - 1);
    return TD_OK;
  }
  if (td_run_epoch_index(run, want) < 0)
    return td_err_set(err, TD_ERANGE, "%s has no epoch %d (recorded: %d to %d)",
                      td_run_dir(run), want, td_run_epoch_number(run, 0),
                      td_run_epoch_number(run, n - 1));
  *epoch = want;
  return TD_OK;
}

/* The diagnosis of td__diagnose_run; metrics_only: the per-label metrics
 * and verdicts without probes and heat maps. */
static int diagnose(const td_run *run, const td_diagnose_opts *o,
                    int metrics_only, td_diagnosis **out, td__diag_data *d,
                    td_err *err) {
  *out = NULL;
  memset(d, 0, sizeof *d);
  if (!(o->theta > 0 && o->theta <= 1) || !(o->gamma >= 0 && o->gamma < 1))
    return td_err_set(err, TD_EARG,
                      "theta must be in (0, 1] and gamma in [0, 1)");
  int rc0 = td_run_require_all_samples(run, "tardis diagnose", err);
  if (rc0)
    return rc0;
  td_diagnosis *g = calloc(1, sizeof *g);
  int epoch = 0;
  int rc = g ? pick_epoch(run, o->epoch, &epoch, err)
             : td_err_set(err, TD_ENOMEM, "out of memory");
  if (!rc)
    rc = td__diag_data_load(run, epoch, d, err);
  if (!rc) {
    g->epoch = epoch;
    g->n_classes = d->C;
    g->has_model = d->net != NULL;
    g->layer = metrics_only ? -2 : 0;
    if (td__label_metrics(d, o->theta, o->gamma, g))
      rc = td_err_set(err, TD_ENOMEM, "out of memory");
  }
  if (!rc && !metrics_only)
    rc = d->net ? probe_all(d, o, g, err) : probe_head(d, o, g, err);
  if (!rc && !metrics_only)
    rc = td__diag_heatmaps(d, g, err);
  if (rc) {
    td__diag_data_free(d);
    td_diagnosis_free(g);
    return rc;
  }
  *out = g;
  return TD_OK;
}

int td__diagnose_run(const td_run *run, const td_diagnose_opts *o,
                     td_diagnosis **out, td__diag_data *d, td_err *err) {
  return diagnose(run, o, 0, out, d, err);
}

int td__diagnose_metrics(const td_run *run, const td_diagnose_opts *o,
                         td_diagnosis **out, td__diag_data *d, td_err *err) {
  return diagnose(run, o, 1, out, d, err);
}

int td_diagnose(const char *dir, const td_diagnose_opts *o, td_diagnosis **out,
                td_err *err) {
  *out = NULL;
  td_run *run = NULL;
  td__diag_data d;
  int rc = td_run_open(dir, &run, err);
  if (!rc) {
    rc = td__diagnose_run(run, o, out, &d, err);
    if (!rc)
      td__diag_data_free(&d);
  }
  td_run_close(run);
  return rc;
}
