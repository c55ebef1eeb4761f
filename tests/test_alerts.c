/* Alerts: the geometry of one epoch against a naive reference on synthetic
 * classes, the detector on synthetic series, and end to end through the
 * `tardis` command (an --lr-spike run raises an alert at the spike, a clean
 * run none; epoch-by-epoch and batch give the same alerts.jsonl). */
#include <math.h>
#include <string.h>
#include <sys/wait.h>

#include "cli_util.h"
#include "harness.h"
#include "live/geometry.h"
#include "tardis/alerts.h"
#include "tardis/fsutil.h"
#include "tardis/rng.h"

static double gauss(td_rng *r) {
  double u = ((double)td_rng_below(r, 1u << 30) + 0.5) / (double)(1u << 30);
  double v = ((double)td_rng_below(r, 1u << 30) + 0.5) / (double)(1u << 30);
  return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

enum { N = 400, D = 8, C = 2 };

/* Two Gaussian classes whose means lie `sep` apart on the first axis;
 * logits predict the class by the sign of that axis. */
static void two_classes(double sep, uint64_t seed, float *x, int32_t *lab,
                        float *logits) {
  td_rng r;
  td_rng_seed(&r, seed);
  for (int i = 0; i < N; i++) {
    lab[i] = i % 2;
    for (int j = 0; j < D; j++)
      x[i * D + j] = (float)gauss(&r);
    x[i * D] += (float)((lab[i] ? 0.5 : -0.5) * sep);
    logits[i * C] = -x[i * D];
    logits[i * C + 1] = x[i * D];
  }
}

/* The naive reference: centres, scale, spread, separation and kNN label
 * agreement of the subsample by brute force. */
static void naive(const td__geom *g, const float *x, const int32_t *lab,
                  double *sep, double *spread, double *cdist, double *agree) {
  double mu[C][D] = {{0}}, all[D] = {0}, cnt[C] = {0}, ss = 0, sp[C] = {0};
  for (int i = 0; i < N; i++)
    for (int j = 0; j < D; j++) {
      mu[lab[i]][j] += (double)x[i * D + j] / (N / 2);
      all[j] += (double)x[i * D + j] / N;
    }
  for (int i = 0; i < N; i++) {
    double d = 0;
    for (int j = 0; j < D; j++) {
      ss += pow((double)x[i * D + j] - all[j], 2);
      d += pow((double)x[i * D + j] - mu[lab[i]][j], 2);
    }
    sp[lab[i]] += sqrt(d);
    cnt[lab[i]]++;
  }
  double scale = sqrt(ss / N), c = 0;
  for (int j = 0; j < D; j++)
    c += pow(mu[0][j] - mu[1][j], 2);
  *cdist = sqrt(c) / scale;
  *spread = (sp[0] / cnt[0] + sp[1] / cnt[1]) / 2 / scale;
  *sep = *cdist / *spread;
  double a = 0;
  for (int q = 0; q < g->m; q++) {
    int s = g->sample[q];
    double best[16];
    int bl[16], nb = 0;
    for (int i = 0; i < N; i++) {
      if (i == s)
        continue;
      double d = 0;
      for (int j = 0; j < D; j++)
        d += pow((double)(x[i * D + j] - x[s * D + j]), 2);
      int p = nb < g->k ? nb++ : g->k;
      if (p == g->k && d >= best[g->k - 1])
        continue;
      if (p == g->k)
        p = g->k - 1;
      while (p > 0 && best[p - 1] > d) {
        best[p] = best[p - 1];
        bl[p] = bl[p - 1];
        p--;
      }
      best[p] = d;
      bl[p] = lab[i];
    }
    int same = 0;
    for (int j = 0; j < g->k; j++)
      same += bl[j] == lab[s];
    a += (double)same / g->k;
  }
  *agree = a / g->m;
}

static void test_geometry_against_naive(void) {
  static float x[N * D], logits[N * C];
  static int32_t lab[N];
  double vals[TD_GEOM_COUNT], pc[TD_GEOM_COUNT * C], ref[4], sep_far = 0;
  int pair[2];
  td__geom g;
  td_err err = {0};
  CHECK_OK(td__geom_init(&g, N, D, C, 100, 8, 3, &err), &err);
  for (int round = 0; round < 2; round++) {
    two_classes(round ? 0 : 8, 5 + (uint64_t)round, x, lab, logits);
    CHECK_OK(td__geom_epoch(&g, x, lab, logits, vals, pc, pair, &err), &err);
    naive(&g, x, lab, &ref[0], &ref[1], &ref[2], &ref[3]);
    CHECK_NEAR(vals[TD_GEOM_SEPARATION], ref[0], 1e-9);
    CHECK_NEAR(vals[TD_GEOM_SPREAD], ref[1], 1e-9);
    CHECK_NEAR(vals[TD_GEOM_CENTRE_MIN], ref[2], 1e-9);
    CHECK_NEAR(vals[TD_GEOM_CENTRE_MEAN], ref[2], 1e-9);
    CHECK_NEAR(vals[TD_GEOM_KNN_AGREEMENT], ref[3], 1e-12);
    CHECK(pair[0] == 0 && pair[1] == 1);
    if (round == 0) {
      sep_far = vals[TD_GEOM_SEPARATION];
      CHECK(vals[TD_GEOM_KNN_AGREEMENT] > 0.95);
      CHECK(isnan(vals[TD_GEOM_KNN_CHURN]));
      CHECK(vals[TD_GEOM_TRAIN_ACC] > 0.95);
    } else {
      /* The classes merged: separation and agreement drop, the
       * neighbourhoods and predictions changed. */
      CHECK(vals[TD_GEOM_SEPARATION] < 0.5 * sep_far);
      CHECK(vals[TD_GEOM_KNN_AGREEMENT] < 0.7);
      CHECK(vals[TD_GEOM_KNN_CHURN] > 0.5);
      CHECK(vals[TD_GEOM_PRED_CHURN] > 0.1);
    }
  }
  /* The same epoch again: nothing churns. */
  CHECK_OK(td__geom_epoch(&g, x, lab, logits, vals, pc, pair, &err), &err);
  CHECK_NEAR(vals[TD_GEOM_KNN_CHURN], 0, 0);
  CHECK_NEAR(vals[TD_GEOM_PRED_CHURN], 0, 0);
  td__geom_close(&g);
}

static void test_detector_series(void) {
  td_alerts_opts o;
  td_alerts_opts_default(&o);
  td_rng r;
  td_rng_seed(&r, 11);
  enum { T = 60 };
  double v[T];
  int fired = 0;
  td_alert a;
  /* A flat noisy series, then one rising like a training curve: never. */
  for (int kind = 0; kind < 2; kind++)
    for (int t = 0; t < T; t++) {
      v[t] = (kind ? 0.9 - 0.3 * exp(-t / 6.0) : 0.8) + 0.01 * gauss(&r);
      if (td_alerts_detect(v, t, -1, 0.005, 1, &o, &a)) {
        fprintf(stderr, "  kind %d t %d drift %d z %.2f\n", kind, t, a.drift,
                a.z);
        fired++;
      }
    }
  CHECK_INT(fired, ==, 0);
  /* A step down at t = 30 fires there, as a jump, expected near 0.8. */
  for (int t = 0; t < T; t++)
    v[t] = (t >= 30 ? 0.6 : 0.8) + 0.01 * gauss(&r);
  int first = -1;
  for (int t = 0; t < T && first < 0; t++)
    if (td_alerts_detect(v, t, -1, 0.005, 1, &o, &a))
      first = t;
  CHECK_INT(first, ==, 30);
  CHECK(!a.drift && a.z >= o.z_jump);
  CHECK_NEAR(a.expected, 0.8, 0.05);
  /* Rising is good for this metric: the same step up says nothing. */
  for (int t = 0; t < T; t++)
    v[t] = 1.6 - v[t];
  fired = 0;
  for (int t = 0; t < T; t++)
    fired += td_alerts_detect(v, t, -1, 0.005, 1, &o, &a);
  CHECK_INT(fired, ==, 0);
  /* A slow slide after a calm stretch: a drift, within a few epochs. */
  for (int t = 0; t < T; t++)
    v[t] = 0.8 + 0.002 * gauss(&r) - (t >= 30 ? 0.02 * (t - 29) : 0);
  first = -1;
  for (int t = 0; t < T && first < 0; t++)
    if (td_alerts_detect(v, t, -1, 0.005, 1, &o, &a))
      first = t;
  CHECK(first >= 30 && first <= 32);
  /* Warm-up: nothing in the first epochs, whatever happens. */
  double w[4] = {0.8, 0.8, 0.1, 0.8};
  CHECK_INT(td_alerts_detect(w, 2, -1, 0.005, 1, &o, &a), ==, 0);
}

static char bin[4096], dir[4096];

/* First epoch with an alert in RUN/alerts.jsonl (0: none), or -1. */
static int first_alert(const char *run) {
  char path[4400];
  snprintf(path, sizeof path, "%s/alerts.jsonl", run);
  char *txt = td_t_slurp(path);
  if (!txt)
    return -1;
  int ep = 0;
  if (txt[0] && sscanf(txt, "{\"epoch\":%d", &ep) != 1)
    ep = -1;
  free(txt);
  return ep;
}

static void test_cli_spike_and_clean(void) {
  char cmd[40000], clean[4300], spike[4300];
  snprintf(clean, sizeof clean, "%s/clean", dir);
  snprintf(spike, sizeof spike, "%s/spike", dir);
  const char *common = "--epochs 10 --limit 3000 --no-model --seed 4 --quiet";
  snprintf(cmd, sizeof cmd,
           "%s train --out %s %s >/dev/null && %s train --out %s %s "
           "--lr-spike 7:30 >/dev/null",
           bin, clean, common, bin, spike, common);
  CHECK_INT(td_t_system(cmd), ==, 0);
  snprintf(cmd, sizeof cmd,
           "%s alerts %s >/dev/null && %s alerts %s --json "
           "> %s/spike.json",
           bin, clean, bin, spike, dir);
  CHECK_INT(td_t_system(cmd), ==, 0);
  CHECK_INT(first_alert(clean), ==, 0);
  int ep = first_alert(spike);
  CHECK(ep == 7 || ep == 8);
  snprintf(cmd, sizeof cmd, "%s/spike.json", dir);
  char *txt = td_t_slurp(cmd);
  CHECK_STR_CONTAINS(txt, "\"first_alert\": 7");
  CHECK_STR_CONTAINS(txt, "\"severity\":\"critical\"");
  free(txt);
}

/* Live: a state fed epoch by epoch, writing after each (as `tardis watch`
 * does), ends with the same bytes as `tardis alerts` on the finished run. */
static void test_live_equals_batch(void) {
  char spike[4300], path[4400];
  snprintf(spike, sizeof spike, "%s/spike", dir);
  snprintf(path, sizeof path, "%s/alerts.jsonl", spike);
  char *batch = td_t_slurp(path);
  snprintf(path, sizeof path, "%s/geometry.jsonl", spike);
  char *batch_geom = td_t_slurp(path);
  if (!batch || !batch_geom) {
    free(batch);
    free(batch_geom);
    SKIP("the CLI test did not leave its run");
  }
  char live[4300];
  snprintf(live, sizeof live, "%s/live", dir);
  CHECK_OK(td_mkdirs(live, NULL), NULL);
  td_err err = {0};
  td_run *run;
  td_alerts_state *s;
  CHECK_OK(td_run_open(spike, &run, &err), &err);
  CHECK_OK(td_alerts_state_new(NULL, &s, &err), &err);
  int total = 0;
  for (int i = 0; i < td_run_n_epochs(run); i++) {
    int n_new;
    CHECK_OK(
        td_alerts_add_epoch(s, run, td_run_epoch_number(run, i), &n_new, &err),
        &err);
    total += n_new;
    CHECK_OK(td_alerts_write(s, live, &err), &err);
  }
  CHECK_INT(total, ==, td_alerts_count(s));
  /* Out of order is refused and leaves the state as it was. */
  CHECK_INT(td_alerts_add_epoch(s, run, 1, NULL, &err), ==, TD_EARG);
  CHECK_INT(td_alerts_n_epochs(s), ==, td_run_n_epochs(run));
  snprintf(path, sizeof path, "%s/alerts.jsonl", live);
  char *l = td_t_slurp(path);
  snprintf(path, sizeof path, "%s/geometry.jsonl", live);
  char *lg = td_t_slurp(path);
  CHECK(l && !strcmp(l, batch));
  CHECK(lg && !strcmp(lg, batch_geom));
  free(l);
  free(lg);
  free(batch);
  free(batch_geom);
  td_alerts_state_free(s);
  td_run_close(run);
}

int main(void) {
  RUN(test_geometry_against_naive);
  RUN(test_detector_series);
  const char *b = getenv("TD_BIN");
  if (!b) {
    fprintf(stderr, "TD_BIN is not set (ctest sets it to the tardis binary)\n");
    return 1;
  }
  snprintf(bin, sizeof bin, "%s", b);
  snprintf(dir, sizeof dir, "%s", td_t_tmpdir("alerts"));
  RUN(test_cli_spike_and_clean);
  RUN(test_live_equals_batch);
  return td_t_finish();
}
