/* The alerts of a run: per-epoch geometry (geometry.c), the detector on
 * each metric's series (detector.c), and RUN/alerts.jsonl and
 * RUN/geometry.jsonl. Live and batch use the same path, epoch by epoch. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "live/geometry.h"
#include "run/run_json.h"
#include "tardis/alloc.h"
#include "tardis/fsutil.h"

/* Per metric: name, the bad direction (+1 rising, −1 falling, 0 never
 * alerted), whether the drift rule applies (prediction churn swings from
 * epoch to epoch on a clean run: measured in docs/alerts.md), the smallest step
 * that counts (absolute, plus a share of the previous value), and the words of
 * a message. */
static const struct {
  const char *name;
  int bad_dir, drift; /* drift: whether the drift rule applies */
  double floor_abs, floor_rel;
  const char *what;
  double z_jump; /* > 0: this metric's own jump threshold */
} spec[TD_GEOM_COUNT] = {
    [TD_GEOM_SEPARATION] = {"separation", -1, 1, 0, 0.01,
                            "class separation (centre distance / spread)"},
    [TD_GEOM_CENTRE_MEAN] = {"centre_mean", -1, 1, 0, 0.01,
                             "mean distance between class centres"},
    [TD_GEOM_CENTRE_MIN] = {"centre_min", -1, 1, 0, 0.01,
                            "distance between the two closest classes"},
    [TD_GEOM_SPREAD] = {"spread", +1, 1, 0, 0.01, "spread within classes"},
    [TD_GEOM_KNN_AGREEMENT] = {"knn_agreement", -1, 1, 0.005, 0,
                               "kNN label agreement"},
    /* Churn settles within a few epochs of a healthy run (steps after
     * the warm-up stayed within ±0.033 on every clean run measured) and
     * turns up as soon as a growing learning rate starts to shake the
     * representation — the earliest signal of a gradual failure measured
     * (docs/alerts.md). Its early, steep fall inflates the spread, so a
     * rise beyond 0.04 needs only z >= 1. */
    [TD_GEOM_KNN_CHURN] = {"knn_churn", +1, 1, 0.04, 0, "neighbourhood churn",
                           1.0},
    [TD_GEOM_PRED_CHURN] = {"pred_churn", +1, 0, 0.005, 0,
                            "predictions changed since the last epoch"},
    [TD_GEOM_TRAIN_ACC] = {"train_acc", -1, 1, 0.005, 0, "training accuracy"},
    [TD_GEOM_TEST_LOSS] = {"test_loss", 0, 0, 0, 0, "test loss"},
    [TD_GEOM_TEST_ACC] = {"test_acc", 0, 0, 0, 0, "test accuracy"},
};

const char *td_geom_metric_name(td_geom_metric m) {
  return (unsigned)m < TD_GEOM_COUNT ? spec[m].name : "?";
}

struct td_alerts_state {
  td_alerts_opts o;
  td__geom g;      /* set up by the first epoch */
  int n, cap;      /* epochs added */
  int *epochs;     /* [cap] */
  double *vals;    /* [cap, TD_GEOM_COUNT] */
  double *pc_prev; /* [TD_GEOM_COUNT, C] per class, last epoch */
  double *pc_cur;
  int fired_prev[TD_GEOM_COUNT]; /* drift fired at the last epoch */
  td_alert *alerts;
  int n_alerts, cap_alerts;
};

int td_alerts_state_new(const td_alerts_opts *o, td_alerts_state **out,
                        td_err *err) {
  *out = NULL;
  td_alerts_state *s = td_calloc(1, sizeof *s);
  if (!s)
    return td_err_set(err, TD_ENOMEM, "alerts: out of memory");
  if (o)
    s->o = *o;
  else
    td_alerts_opts_default(&s->o);
  if (s->o.window < 2 || s->o.warmup < 0 || s->o.sample < 2 || s->o.k < 1 ||
      !(s->o.z_jump > 0) || !(s->o.drift >= 0) || !(s->o.z_drift > 0)) {
    free(s);
    return td_err_set(err, TD_EARG,
                      "alerts: window >= 2, warmup >= 0, sample >= 2, "
                      "k >= 1, z > 0 and drift >= 0 are required");
  }
  *out = s;
  return TD_OK;
}

void td_alerts_state_free(td_alerts_state *s) {
  if (!s)
    return;
  td__geom_close(&s->g);
  free(s->epochs);
  free(s->vals);
  free(s->pc_prev);
  free(s->pc_cur);
  free(s->alerts);
  free(s);
}

int td_alerts_count(const td_alerts_state *s) { return s->n_alerts; }
const td_alert *td_alerts_get(const td_alerts_state *s, int i) {
  return &s->alerts[i];
}
int td_alerts_n_epochs(const td_alerts_state *s) { return s->n; }
int td_alerts_epoch(const td_alerts_state *s, int i) { return s->epochs[i]; }
const double *td_alerts_geometry(const td_alerts_state *s, int i) {
  return s->vals + (size_t)i * TD_GEOM_COUNT;
}

int td_alerts_baseline_epoch(const td_alerts_state *s) {
  double best = (double)INFINITY;
  for (int i = 0; i < s->n; i++) {
    double l = s->vals[(size_t)i * TD_GEOM_COUNT + TD_GEOM_TEST_LOSS];
    if (!isfinite(l))
      continue;
    if (l > 1.05 * best)
      return s->epochs[i];
    if (l < best)
      best = l;
  }
  return 0;
}

/* Room for one more epoch and `more` alerts. */
static int grow(td_alerts_state *s, int more, td_err *err) {
  if (s->n == s->cap) {
    int cap = s->cap ? 2 * s->cap : 64;
    int *e = td_realloc(s->epochs, (size_t)cap * sizeof *e);
    if (e)
      s->epochs = e;
    double *v = td_realloc(s->vals, (size_t)cap * TD_GEOM_COUNT * sizeof *v);
    if (v)
      s->vals = v;
    if (!e || !v)
      return td_err_set(err, TD_ENOMEM, "alerts: out of memory");
    s->cap = cap;
  }
  if (s->n_alerts + more > s->cap_alerts) {
    int cap = 2 * (s->n_alerts + more);
    td_alert *a = td_realloc(s->alerts, (size_t)cap * sizeof *a);
    if (!a)
      return td_err_set(err, TD_ENOMEM, "alerts: out of memory");
    s->alerts = a;
    s->cap_alerts = cap;
  }
  return TD_OK;
}

/* The first epoch sets up the subsample and the per-class buffers. */
static int setup(td_alerts_state *s, const td_run *run, td_err *err) {
  const td_run_meta *m = td_run_get_meta(run);
  int rc = td__geom_init(&s->g, m->n_train, m->repr_dim, m->n_classes,
                         s->o.sample, s->o.k, s->o.seed, err);
  if (rc)
    return rc;
  size_t n = (size_t)TD_GEOM_COUNT * m->n_classes;
  s->pc_prev = td_malloc(n * sizeof *s->pc_prev);
  s->pc_cur = td_malloc(n * sizeof *s->pc_cur);
  if (!s->pc_prev || !s->pc_cur) {
    td__geom_close(&s->g);
    free(s->pc_prev);
    free(s->pc_cur);
    s->pc_prev = s->pc_cur = NULL;
    return td_err_set(err, TD_ENOMEM, "alerts: out of memory");
  }
  for (size_t i = 0; i < n; i++)
    s->pc_prev[i] = (double)NAN;
  return TD_OK;
}

/* test_loss and test_acc of epoch.json, NaN when absent. */
static int test_metrics(const td_run *run, int epoch, double *vals,
                        td_err *err) {
  json_t *j;
  int rc = td__run_load_epoch_json(run, epoch, &j, err);
  if (rc)
    return rc;
  json_t *l = json_object_get(j, "test_loss"),
         *a = json_object_get(j, "test_acc");
  vals[TD_GEOM_TEST_LOSS] =
      json_is_number(l) ? json_number_value(l) : (double)NAN;
  vals[TD_GEOM_TEST_ACC] =
      json_is_number(a) ? json_number_value(a) : (double)NAN;
  json_decref(j);
  return TD_OK;
}

/* The classes concerned by an alert on metric m: the pair of closest
 * centres, or up to three classes whose per-class value moved the most in
 * the bad direction (at least half the largest such move). */
static void concerned(const td_alerts_state *s, td_geom_metric m,
                      const int pair[2], td_alert *a) {
  a->n_classes = 0;
  if (m == TD_GEOM_CENTRE_MIN) {
    for (int i = 0; i < 2; i++)
      if (pair[i] >= 0)
        a->classes[a->n_classes++] = pair[i];
    return;
  }
  const int C = s->g.C;
  const double *cur = s->pc_cur + (size_t)m * C,
               *prev = s->pc_prev + (size_t)m * C;
  double best = 0;
  for (int c = 0; c < C; c++) {
    double b = spec[m].bad_dir * (cur[c] - prev[c]);
    if (isfinite(b) && b > best)
      best = b;
  }
  for (int r = 0; r < 3 && best > 0; r++) {
    int pick = -1;
    double pb = 0.5 * best;
    for (int c = 0; c < C; c++) {
      double b = spec[m].bad_dir * (cur[c] - prev[c]);
      int taken = 0;
      for (int i = 0; i < a->n_classes; i++)
        taken |= a->classes[i] == c;
      if (!taken && isfinite(b) && b >= pb && (pick < 0 || b > pb)) {
        pick = c;
        pb = b;
      }
    }
    if (pick < 0)
      break;
    a->classes[a->n_classes++] = pick;
  }
}

static void message(const td_run *run, td_alert *a) {
  const td_run_meta *m = td_run_get_meta(run);
  const char *dir = spec[a->metric].bad_dir > 0 ? "rose" : "fell";
  int len =
      snprintf(a->message, sizeof a->message, "%s %s to %.4g (expected %.4g)%s",
               spec[a->metric].what, dir, a->value, a->expected,
               a->drift ? ", the second bad step in a row" : "");
  for (int i = 0;
       i < a->n_classes && len > 0 && (size_t)len < sizeof a->message; i++)
    len += snprintf(a->message + len, sizeof a->message - (size_t)len, "%s%s",
                    i ? ", " : "; classes ", m->classes[a->classes[i]]);
}

/* Runs the detector on every alerted metric at the newest epoch. */
static int detect(td_alerts_state *s, const td_run *run, const int pair[2],
                  double *series) {
  int t = s->n - 1, added = 0;
  for (int m = 0; m < TD_GEOM_COUNT; m++) {
    if (!spec[m].bad_dir)
      continue;
    for (int i = 0; i < s->n; i++)
      series[i] = s->vals[(size_t)i * TD_GEOM_COUNT + m];
    double prev = t > 0 ? fabs(series[t - 1]) : 0;
    double floor = spec[m].floor_abs + spec[m].floor_rel * prev;
    td_alert a;
    memset(&a, 0, sizeof a);
    td_alerts_opts mo = s->o;
    if (spec[m].z_jump > 0)
      mo.z_jump = spec[m].z_jump;
    int fired = td_alerts_detect(series, t, spec[m].bad_dir, floor,
                                 spec[m].drift && !s->fired_prev[m], &mo, &a);
    s->fired_prev[m] = fired && a.drift;
    if (!fired)
      continue;
    a.critical = !a.drift && a.z >= 2 * s->o.z_jump; /* the run's scale */
    a.epoch = s->epochs[t];
    a.metric = (td_geom_metric)m;
    concerned(s, (td_geom_metric)m, pair, &a);
    message(run, &a);
    s->alerts[s->n_alerts + added++] = a;
  }
  s->n_alerts += added;
  return added;
}

int td_alerts_add_epoch(td_alerts_state *s, const td_run *run, int epoch,
                        int *n_new, td_err *err) {
  if (n_new)
    *n_new = 0;
  if (s->n && epoch <= s->epochs[s->n - 1])
    return td_err_set(err, TD_EARG,
                      "alerts: epoch %d comes after epoch %d; epochs must "
                      "be added in ascending order",
                      epoch, s->epochs[s->n - 1]);
  const td_run_meta *m = td_run_get_meta(run);
  int rc;
  if (!s->n && !s->pc_prev && (rc = setup(s, run, err)))
    return rc;
  if (m->n_train != s->g.n || m->n_classes != s->g.C || m->repr_dim != s->g.d)
    return td_err_set(err, TD_EARG,
                      "alerts: %s has a different size than the run the "
                      "alerts were started on",
                      td_run_dir(run));
  if ((rc = grow(s, TD_GEOM_COUNT, err)))
    return rc;
  double *vals = s->vals + (size_t)s->n * TD_GEOM_COUNT;
  if ((rc = test_metrics(run, epoch, vals, err)))
    return rc;
  double *series = td_malloc((size_t)(s->n + 1) * sizeof *series);
  if (!series)
    return td_err_set(err, TD_ENOMEM, "alerts: out of memory");
  td_array repr = {0}, logits = {0};
  int pair[2];
  if (!(rc = td_run_load_f32(run, epoch, "train_repr", &repr, err)) &&
      !(rc = td_run_load_f32(run, epoch, "train_logits", &logits, err)))
    rc = td__geom_epoch(&s->g, repr.data, td_run_train_labels(run), logits.data,
                        vals, s->pc_cur, pair, err);
  td_array_close(&repr);
  td_array_close(&logits);
  if (rc) {
    free(series);
    return rc;
  }
  s->epochs[s->n++] = epoch;
  int added = detect(s, run, pair, series);
  free(series);
  double *t = s->pc_prev;
  s->pc_prev = s->pc_cur;
  s->pc_cur = t;
  if (n_new)
    *n_new = added;
  return TD_OK;
}

int td_alerts_add_run(td_alerts_state *s, const td_run *run, td_err *err) {
  int rc = td_run_validate_top(run, err);
  if (rc)
    return rc;
  for (int i = 0; i < td_run_n_epochs(run); i++) {
    int ep = td_run_epoch_number(run, i);
    if (s->n && ep <= s->epochs[s->n - 1])
      continue;
    /* the same verdict as `tardis info` on every epoch it measures */
    if ((rc = td_run_validate_epoch(run, ep, err)) ||
        (rc = td_alerts_add_epoch(s, run, ep, NULL, err)))
      return rc;
  }
  return TD_OK;
}
