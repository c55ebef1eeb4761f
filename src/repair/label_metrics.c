/* Per-label diagnosis (DESIGN §3.10 (1)): training accuracy over the
 * samples the epoch trained on, test accuracy, precision and recall, the
 * test confusion matrix, and a verdict per label. */
#include <math.h>
#include <stdlib.h>

#include "repair/repair_internal.h"

const char *td_verdict_name(td_verdict v) {
  static const char *const names[] = {"healthy", "underfitting", "overfitting"};
  return v >= 0 && v < TD_VERDICT_COUNT ? names[v] : NULL;
}

static double ratio(int64_t a, int64_t b) {
  return b > 0 ? (double)a / (double)b : (double)NAN;
}

/* Underfitting first: a label the model cannot even fit is not "over"
 * fitted, whatever its test accuracy. A label without training samples
 * is underfitted. */
static td_verdict verdict(double train, double test, double theta,
                          double gamma) {
  if (isnan(train) || train < theta)
    return TD_VERDICT_UNDERFIT;
  if (!isnan(test) && train - test > gamma)
    return TD_VERDICT_OVERFIT;
  return TD_VERDICT_HEALTHY;
}

int td__label_metrics(const td__diag_data *d, double theta, double gamma,
                      td_diagnosis *diag) {
  int C = d->C;
  diag->labels = calloc((size_t)C, sizeof *diag->labels);
  diag->confusion = calloc((size_t)C * C, sizeof *diag->confusion);
  int64_t *tr_ok = calloc((size_t)C, sizeof *tr_ok);
  int64_t *tr_n = calloc((size_t)C, sizeof *tr_n);
  if (!diag->labels || !diag->confusion || !tr_ok || !tr_n) {
    free(tr_ok);
    free(tr_n);
    return TD_ENOMEM;
  }
  int64_t ok_all = 0, ok_test = 0;
  for (int64_t k = 0; k < d->n_trained; k++) {
    int32_t i = d->trained[k], y = d->y_train[i];
    tr_n[y]++;
    tr_ok[y] += d->pred_train[i] == y;
  }
  for (int64_t i = 0; i < d->n_test; i++)
    diag->confusion[(int64_t)d->y_test[i] * C + d->pred_test[i]]++;
  for (int c = 0; c < C; c++) {
    td_label_diag *L = &diag->labels[c];
    int64_t row = 0, col = 0, best = 0;
    L->confused = -1;
    for (int k = 0; k < C; k++) {
      int64_t v = diag->confusion[(int64_t)c * C + k];
      row += v;
      col += diag->confusion[(int64_t)k * C + c];
      if (k != c && v > best)
        best = v, L->confused = k;
    }
    int64_t tp = diag->confusion[(int64_t)c * C + c];
    L->n_train = tr_n[c];
    L->n_test = row;
    L->train_acc = ratio(tr_ok[c], tr_n[c]);
    L->test_acc = ratio(tp, row);
    L->recall = L->test_acc;
    L->precision = ratio(tp, col);
    L->verdict = verdict(L->train_acc, L->test_acc, theta, gamma);
    ok_all += tr_ok[c];
    ok_test += tp;
  }
  diag->train_acc = ratio(ok_all, d->n_trained);
  diag->test_acc = ratio(ok_test, d->n_test);
  free(tr_ok);
  free(tr_n);
  return TD_OK;
}
