/* tardis/alerts.h — geometry of the representations per epoch, and the
 * alerts that flag a failing run from it (SentryCam's idea, docs/alerts.md).
 *
 * Each recorded epoch is summarised by a few scalars computed from
 * train_repr (and train_logits, and the training labels): how far apart
 * the class centres are, how spread each class is, their ratio, how often
 * a sample's nearest neighbours share its label, and how much those
 * neighbourhoods and the predictions changed since the previous epoch. A
 * detector compares each metric's step with the run's own recent steps and
 * raises an alert when a step is far out of line (a jump) or when the
 * metric keeps moving in its bad direction (a drift).
 *
 * The same code serves a run being written (live) and a finished run:
 *
 *     td_alerts_state *s;
 *     if (td_alerts_state_new(NULL, &s, &err)) { ... }
 *     for each new epoch, in ascending order:
 *       int n_new;
 *       if (td_alerts_add_epoch(s, run, epoch, &n_new, &err)) { ... }
 *       for (int i = td_alerts_count(s) - n_new; i < td_alerts_count(s); i++)
 *         show(td_alerts_get(s, i));
 *       td_alerts_write(s, td_run_dir(run), &err);  // RUN/alerts.jsonl
 *     td_alerts_state_free(s);
 *
 * Adding the epochs of a run one by one as they land and adding them all
 * afterwards give byte-identical files. Memory holds a few scalars per epoch
 * and the previous epoch's neighbour lists of a fixed subsample, so it does
 * not grow with the size of the run beyond that.
 */
#ifndef TARDIS_ALERTS_H
#define TARDIS_ALERTS_H

#include <stdint.h>

#include "tardis/error.h"
#include "tardis/run.h"

/* The metrics of one epoch, in the order they appear in geometry.jsonl.
 * Values that cannot be computed (churn at the first epoch, test metrics
 * that were not recorded) are NaN. Distances are divided by the epoch's
 * scale (the root mean squared distance of the samples to their overall
 * mean), so a representation that merely grows does not move them. */
typedef enum {
  TD_GEOM_SEPARATION,    /* mean centre distance / mean within-class spread */
  TD_GEOM_CENTRE_MEAN,   /* mean distance between class centres / scale */
  TD_GEOM_CENTRE_MIN,    /* smallest distance between two centres / scale */
  TD_GEOM_SPREAD,        /* mean over classes of the mean distance of a
                            sample to its class centre / scale */
  TD_GEOM_KNN_AGREEMENT, /* share of a sample's k nearest neighbours with
                            its label (subsample) */
  TD_GEOM_KNN_CHURN,     /* 1 − share of a sample's k nearest neighbours
                            that were among them at the previous epoch */
  TD_GEOM_PRED_CHURN,    /* share of the subsample whose predicted class
                            changed since the previous epoch */
  TD_GEOM_TRAIN_ACC,     /* argmax of train_logits equals the label */
  TD_GEOM_TEST_LOSS,     /* from epoch.json; never alerted on */
  TD_GEOM_TEST_ACC,      /* from epoch.json; never alerted on */
  TD_GEOM_COUNT
} td_geom_metric;

/* The metric's name in files ("separation", "knn_agreement", ...). */
const char *td_geom_metric_name(td_geom_metric m);

/* Options. td_alerts_opts_default fills the documented defaults. */
typedef struct td_alerts_opts {
  int sample;     /* samples whose neighbours are searched (default 1024,
                     or all when the run has fewer) */
  int k;          /* neighbours per sample (default 10) */
  uint64_t seed;  /* chooses the subsample (default 1) */
  int warmup;     /* no alert at the first `warmup` epochs (default 3) */
  int window;     /* steps of history the detector compares with (8) */
  double z_jump;  /* a step this many robust standard deviations beyond
                     the expected step is a jump (default 6) */
  double drift;   /* drift: two consecutive bad steps, the last above
                     drift × the recent standard deviation (default 0.2) */
  double z_drift; /* ... and the two steps together z_drift robust standard
                     deviations beyond twice the expected step (2.5) */
} td_alerts_opts;

void td_alerts_opts_default(td_alerts_opts *o);

/* One alert. */
typedef struct td_alert {
  int epoch;
  td_geom_metric metric;
  double value;    /* the metric at this epoch */
  double expected; /* the previous value plus the median recent step */
  double z;        /* the step's distance from the expected step, in robust
                      standard deviations (positive: the bad direction) */
  int critical;    /* severity: 1 "critical" (z >= 2 × z_jump), 0 "warning" */
  int drift;       /* rule: 1 drift, 0 jump */
  int n_classes;   /* classes concerned (0–3), by their bad move */
  int classes[3];
  char message[200];
} td_alert;

/* ---- the detector, on one series --------------------------------------- */

/* Decides whether the value at index t of the series v[0..t] raises an
 * alert. bad_dir is +1 when rising is bad and −1 when falling is bad;
 * floor is the smallest step that counts (in the metric's units); NaN values
 * are skipped (they start the series later); drift_ok says whether the
 * drift rule may fire (the alerts state passes 0 for metrics too noisy for
 * it, and after a drift alert at t − 1: a drift fires once per run of bad
 * steps). Returns 1 and fills z, expected, critical and drift when it
 * fires, 0 otherwise. */
int td_alerts_detect(const double *v, int t, int bad_dir, double floor,
                     int drift_ok, const td_alerts_opts *o, td_alert *out);

/* ---- the state of a run ------------------------------------------------- */

typedef struct td_alerts_state td_alerts_state;

/* o may be NULL (defaults). Free with td_alerts_state_free. */
TD_NODISCARD int td_alerts_state_new(const td_alerts_opts *o,
                                     td_alerts_state **out, td_err *err);
void td_alerts_state_free(td_alerts_state *s); /* NULL is fine */

/* Computes the geometry of `epoch` of the run and the alerts it raises.
 * Epochs must come in ascending order (TD_EARG otherwise), all from runs
 * with the same n_train and classes. *n_new (may be NULL) receives how many
 * alerts were appended. On error the state is unchanged. */
TD_NODISCARD int td_alerts_add_epoch(td_alerts_state *s, const td_run *run,
                                     int epoch, int *n_new, td_err *err);

/* Adds every recorded epoch of the run that is newer than the last added. */
TD_NODISCARD int td_alerts_add_run(td_alerts_state *s, const td_run *run,
                                   td_err *err);

int td_alerts_count(const td_alerts_state *s);
const td_alert *td_alerts_get(const td_alerts_state *s, int i);

/* Epochs added so far, their numbers and metrics (TD_GEOM_COUNT values). */
int td_alerts_n_epochs(const td_alerts_state *s);
int td_alerts_epoch(const td_alerts_state *s, int i);
const double *td_alerts_geometry(const td_alerts_state *s, int i);

/* The first epoch whose test loss exceeds its running minimum by 5 % (the
 * validation-loss baseline), or 0 when none does or no test loss was
 * recorded. */
int td_alerts_baseline_epoch(const td_alerts_state *s);

/* One alert as a JSON object on one line (no newline), the line format of
 * alerts.jsonl; returns the number of characters, as snprintf does. */
int td_alert_format(const td_alert *a, char *buf, size_t len);

/* Writes run_dir/alerts.jsonl (one alert a line) and run_dir/geometry.jsonl
 * (one epoch a line), each as a whole file through a temporary file and a
 * rename, so a killed process leaves the previous or the new file. */
TD_NODISCARD int td_alerts_write(const td_alerts_state *s, const char *run_dir,
                                 td_err *err);

#endif
