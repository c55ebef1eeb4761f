/* The alert detector on one metric's series (docs/alerts.md#detector).
 *
 * A training run's metrics move fast at first and slowly later, so a fixed
 * threshold is either blind early or noisy late. The detector compares the
 * newest step with the run's own recent steps instead: the median recent
 * step is the expected one, their median absolute deviation the spread
 * (both robust to the very failures being looked for, which sit in the
 * window for a while after they happen). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tardis/alerts.h"

void td_alerts_opts_default(td_alerts_opts *o) {
  memset(o, 0, sizeof *o);
  o->sample = 1024;
  o->k = 10;
  o->seed = 1;
  o->warmup = 3;
  o->window = 8;
  o->z_jump = 6;
  o->drift = 0.2;
  o->z_drift = 2.5;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Median of v[0..n) (sorts v). */
static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Standard deviation of the finite values among v[lo..hi). */
static double stddev(const double *v, int lo, int hi) {
  double s = 0, ss = 0;
  int n = 0;
  for (int i = lo; i < hi; i++)
    if (isfinite(v[i])) {
      s += v[i];
      n++;
    }
  if (n < 2)
    return 0;
  double mean = s / n;
  for (int i = lo; i < hi; i++)
    if (isfinite(v[i]))
      ss += (v[i] - mean) * (v[i] - mean);
  return sqrt(ss / (n - 1));
}

int td_alerts_detect(const double *v, int t, int bad_dir, double floor,
                     int drift_ok, const td_alerts_opts *o, td_alert *out) {
  if (t < o->warmup || t < 2 || !isfinite(v[t]) || !isfinite(v[t - 1]))
    return 0;
  enum { MAX_WINDOW = 64 };
  double steps[MAX_WINDOW], dev[MAX_WINDOW];
  int w = o->window < MAX_WINDOW ? o->window : MAX_WINDOW, n = 0;
  for (int i = t - 1; i >= 1 && n < w; i--)
    if (isfinite(v[i]) && isfinite(v[i - 1]))
      steps[n++] = v[i] - v[i - 1];
  if (n < 2)
    return 0;
  double med = median(steps, n);
  for (int i = 0; i < n; i++)
    dev[i] = fabs(steps[i] - med);
  double sd = 1.4826 * median(dev, n);
  if (sd < floor)
    sd = floor;
  /* An improving trend is not extrapolated: early epochs improve fast, and
   * a plateau after them is no failure. */
  if (bad_dir * med < 0)
    med = 0;
  double step = v[t] - v[t - 1], bad = bad_dir * step;
  double z = bad_dir * (step - med) / sd;
  int jump = bad > floor && z >= o->z_jump;
  /* Drift: SentryCam's two consecutive bad steps, the last one above
   * o->drift × the standard deviation of the recent values; alone it fires
   * on noise, so the two steps together must also stand z_drift robust
   * standard deviations beyond twice the expected step, measured on at
   * least 4 recent steps (a spread from fewer is itself noise). */
  int lo = t - w > 0 ? t - w : 0, drift = 0;
  if (!jump && drift_ok && n >= 4 && bad > floor && isfinite(v[t - 2])) {
    double prev = v[t - 1] - v[t - 2];
    double z2 = bad_dir * (step + prev - 2 * med) / (sd * sqrt(2.0));
    drift = bad_dir * prev > 0 && bad > o->drift * stddev(v, lo, t) &&
            z2 >= o->z_drift;
    if (drift)
      z = z2;
  }
  if (!jump && !drift)
    return 0;
  out->value = v[t];
  out->expected = v[t - 1] + med;
  out->z = z;
  out->drift = drift;
  out->critical = jump && z >= 2 * o->z_jump;
  return 1;
}
