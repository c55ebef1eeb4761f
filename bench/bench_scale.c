/* bench_scale: `tardis project` on a large run (docs/scale.md), with its
 * quality measured at that size.
 *
 *   bench/make_synth_run.py --out /tmp/s1m --n 1000000 --dim 128 --epochs 3
 *   bench_scale --run /tmp/s1m [--scale auto|on|off] [--sample S]
 *               [--place knn|canvas|encoder] [--queries 10000] [--threads 2]
 *               [--no-project]
 *   bench_scale --run RUN --place-only EPOCH [--sample S] [--threads 2]
 *
 * Projects every epoch of the run (in place, --force: RUN/vis/dvi is
 * replaced) and prints per epoch: wall and CPU seconds (getrusage, all
 * threads), the first and the later epochs apart, the process's peak
 * resident set after projecting (before the quality pass, which holds its
 * own arrays), the sample size and rule from projection.json; then per
 * epoch the quality:
 *
 *   nn@15 — for Q random training points (seeded), the share of their 15
 *     exact nearest neighbours in the representation space (brute force
 *     among all N points) that are among their 15 nearest on the canvas
 *     (exact, among all N drawn points);
 *   ppr — over all N points, the share whose class under head(decoder(y))
 *     is the head's class of the representation.
 *
 * --place-only times the placement of the points outside the sample alone
 * (td__scale_refine, its graph search), on the epoch's representations and
 * a canvas taken from its projection (every point where RUN/vis/dvi drew
 * it, standing in for the encoder's positions, so the canvas candidates
 * are better than the encoder's and the search a little shorter than in a
 * projection): CPU and wall seconds, and a checksum of the positions to
 * compare builds by. The sample (S, default 10 % capped at 100,000) and its
 * kNN graph are drawn afresh.
 *
 * The load average is printed beside the timings: on a shared machine wall
 * time depends on other people's jobs, CPU time much less.
 */
#define _DEFAULT_SOURCE /* getloadavg */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "proj/scale.h"
#include "tardis/alloc.h"
#include "tardis/fsutil.h"
#include "tardis/knn.h"
#include "tardis/parallel.h"
#include "tardis/project.h"
#include "tardis/rng.h"
#include "tardis/run.h"
#include "tardis/vis.h"
#include "tardis/vismodel.h"

#define NN_K 15
#define PPR_CHUNK 65536

static double cpu_seconds(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return (double)u.ru_utime.tv_sec + 1e-6 * (double)u.ru_utime.tv_usec +
         (double)u.ru_stime.tv_sec + 1e-6 * (double)u.ru_stime.tv_usec;
}

static double peak_rss_gb(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return (double)u.ru_maxrss / (1024.0 * 1024.0);
}

static double load1(void) {
  double l[1] = {0};
  return getloadavg(l, 1) == 1 ? l[0] : -1.0;
}

typedef struct {
  double wall[64], cpu[64], last_cpu;
  int epoch[64], n;
} timing;

static void on_progress(const td_project_progress *p, void *ctx) {
  timing *t = ctx;
  if (strcmp(p->stage, "done") || t->n >= 64)
    return;
  double c = cpu_seconds();
  t->wall[t->n] = p->seconds;
  t->cpu[t->n] = c - t->last_cpu;
  t->epoch[t->n++] = p->epoch;
  t->last_cpu = c;
  fprintf(stderr, "  epoch %d: %.1f s wall, %.1f s CPU, load %.1f\n", p->epoch,
          p->seconds, t->cpu[t->n - 1], load1());
}

/* nn@15 over q random rows of x [n, d] drawn as y [n, 2]. */
static int nn_at_15(const float *x, const float *y, int64_t n, int d, int64_t q,
                    double *out, td_err *err) {
  q = q < n ? q : n;
  int64_t *rows = malloc((size_t)q * sizeof *rows);
  float *qx = malloc((size_t)q * d * sizeof *qx);
  float *qy = malloc((size_t)q * 2 * sizeof *qy);
  if (!rows || !qx || !qy) {
    free(rows), free(qx), free(qy);
    return td_err_set(err, TD_ENOMEM, "out of memory");
  }
  td_rng r;
  td_rng_seed(&r, 12345);
  for (int64_t i = 0; i < q; i++) { /* with replacement: q << n */
    rows[i] = (int64_t)td_rng_below(&r, (uint64_t)n);
    memcpy(qx + i * d, x + rows[i] * d, (size_t)d * sizeof *qx);
    qy[2 * i] = y[2 * rows[i]];
    qy[2 * i + 1] = y[2 * rows[i] + 1];
  }
  td_knn hi = {0}, lo = {0};
  int rc = td_knn_query_exact(x, n, qx, q, d, NN_K + 1, &hi, err);
  if (rc == TD_OK)
    rc = td_knn_2d_query(y, n, qy, q, NN_K + 1, &lo, err);
  double hit = 0;
  for (int64_t i = 0; rc == TD_OK && i < q; i++) {
    /* drop the point itself (else the farthest) from both lists */
    const int32_t *a = hi.idx + i * (NN_K + 1), *b = lo.idx + i * (NN_K + 1);
    int sa = NN_K, sb = NN_K;
    for (int j = 0; j <= NN_K; j++) {
      if (a[j] == rows[i])
        sa = j;
      if (b[j] == rows[i])
        sb = j;
    }
    for (int j = 0; j <= NN_K; j++)
      for (int l = 0; l <= NN_K && j != sa; l++)
        if (l != sb && a[j] == b[l]) {
          hit++;
          break;
        }
  }
  *out = hit / (double)(q * NN_K);
  td_knn_free(&hi);
  td_knn_free(&lo);
  free(rows), free(qx), free(qy);
  return rc;
}

static int argmax(const float *z, int c) {
  int b = 0;
  for (int k = 1; k < c; k++)
    b = z[k] > z[b] ? k : b;
  return b;
}

/* ppr over all n points: head(decoder(y)) against head(x). */
static int ppr_all(const td_vismodel *m, const td_head *h, const float *x,
                   const float *y, int64_t n, int d, double *out, td_err *err) {
  int C = td_head_out_dim(h);
  float *xr = malloc((size_t)PPR_CHUNK * d * sizeof *xr);
  float *z1 = malloc((size_t)PPR_CHUNK * C * sizeof *z1);
  float *z2 = malloc((size_t)PPR_CHUNK * C * sizeof *z2);
  int rc = xr && z1 && z2 ? TD_OK : td_err_set(err, TD_ENOMEM, "out of memory");
  int64_t same = 0;
  for (int64_t b = 0; rc == TD_OK && b < n; b += PPR_CHUNK) {
    int64_t c = n - b < PPR_CHUNK ? n - b : PPR_CHUNK;
    if (td_vismodel_decode(m, y + 2 * b, c, xr)) {
      rc = td_err_set(err, TD_ENOMEM, "decoding: out of memory");
      break;
    }
    td_head_forward(h, xr, c, z1);
    td_head_forward(h, x + b * d, c, z2);
    for (int64_t i = 0; i < c; i++)
      same += argmax(z1 + i * C, C) == argmax(z2 + i * C, C);
  }
  *out = (double)same / (double)n;
  free(xr), free(z1), free(z2);
  return rc;
}

/* projection.json's sample size and rule, for the report. */
static void scale_of(const char *dir, char *buf, size_t cap) {
  char p[TD_PATH_MAX];
  td_err e = {0};
  snprintf(buf, cap, "full");
  if (td_pathf(p, sizeof p, &e, "%s/projection.json", dir))
    return;
  json_t *j = json_load_file(p, 0, NULL);
  json_t *s = j ? json_object_get(j, "scale") : NULL;
  if (s)
    snprintf(buf, cap, "sample %lld (%s, %s)",
             (long long)json_integer_value(json_object_get(s, "sample")),
             json_string_value(json_object_get(s, "rule")),
             json_string_value(json_object_get(s, "place")));
  json_decref(j);
}

static int quality(td_run *run, int ep, int64_t q, td_err *err) {
  char dir[TD_PATH_MAX], mdir[TD_PATH_MAX], sc[128];
  if (td_vis_epoch_dir(td_run_dir(run), "dvi", ep, dir, sizeof dir))
    return td_err_set(err, TD_ERANGE, "path too long");
  if (td_pathf(mdir, sizeof mdir, err, "%s/model", dir))
    return TD_ERANGE;
  td_array x = {0}, y = {0};
  td_head *h = NULL;
  td_vismodel *m = NULL;
  int64_t n = td_run_get_meta(run)->n_train;
  int d = td_run_get_meta(run)->repr_dim;
  int rc = td_run_load_f32(run, ep, "train_repr", &x, err);
  if (rc == TD_OK)
    rc = td_vis_load_embedding_in(dir, "train", n, &y, err);
  if (rc == TD_OK)
    rc = td_run_load_head(run, ep, &h, err);
  if (rc == TD_OK)
    rc = td_vismodel_load(mdir, &m, err);
  double nn = 0, ppr = 0, t0 = td_now();
  if (rc == TD_OK)
    rc = nn_at_15(x.data, y.data, n, d, q, &nn, err);
  double t1 = td_now();
  if (rc == TD_OK)
    rc = ppr_all(m, h, x.data, y.data, n, d, &ppr, err);
  scale_of(dir, sc, sizeof sc);
  if (rc == TD_OK)
    printf("epoch %d: nn@15 %.4f (%lld queries, %.0f s), ppr %.4f (all %lld, "
           "%.0f s), %s\n",
           ep, nn, (long long)(q < n ? q : n), t1 - t0, ppr, (long long)n,
           td_now() - t1, sc);
  td_array_close(&x);
  td_array_close(&y);
  td_head_free(h);
  td_vismodel_free(m);
  return rc;
}

/* The placement alone (--place-only), on epoch ep. */
static int place_only(td_run *run, int ep, int64_t s, td_err *err) {
  char dir[TD_PATH_MAX];
  if (td_vis_epoch_dir(td_run_dir(run), "dvi", ep, dir, sizeof dir))
    return td_err_set(err, TD_ERANGE, "path too long");
  int64_t n = td_run_get_meta(run)->n_train;
  int d = td_run_get_meta(run)->repr_dim;
  s = s > 0 ? s : n / 10 < 100000 ? n / 10 : 100000;
  td_array x = {0}, y0 = {0};
  td_head *h = NULL;
  int rc = td_run_load_f32(run, ep, "train_repr", &x, err);
  if (rc == TD_OK)
    rc = td_vis_load_embedding_in(dir, "train", n, &y0, err);
  if (rc == TD_OK)
    rc = td_run_load_head(run, ep, &h, err);
  int C = h ? td_head_out_dim(h) : 0;
  int64_t *rows = rc == TD_OK ? td__scale_sample_rows(n, s, 7) : NULL;
  float *xs = malloc((size_t)s * d * sizeof *xs), *pos = malloc(8 * s);
  float *y = malloc(8 * n), *alt = malloc(8 * n), *z = malloc(4 * n * C);
  int32_t *pred = malloc(4 * n);
  td_knn g = {0};
  if (rc == TD_OK && !(rows && xs && pos && y && alt && z && pred))
    rc = td_err_set(err, TD_ENOMEM, "out of memory");
  if (rc == TD_OK) {
    const float *yy = y0.data;
    for (int64_t v = 0; v < s; v++) {
      memcpy(xs + v * d, (const float *)x.data + rows[v] * d, 4 * (size_t)d);
      pos[2 * v] = yy[2 * rows[v]], pos[2 * v + 1] = yy[2 * rows[v] + 1];
    }
    td_head_forward(h, x.data, n, z);
    for (int64_t i = 0; i < n; i++)
      pred[i] = argmax(z + i * C, C);
    memcpy(y, yy, 8 * (size_t)n);
    memcpy(alt, yy, 8 * (size_t)n);
    rc = td_knn_auto(xs, s, d, 15, 7, &g, err);
  }
  if (rc == TD_OK) {
    double c0 = cpu_seconds(), t0 = td_now();
    rc = td__scale_refine(x.data, n, d, rows, s, pos, pred, C, &g, y, alt, err);
    double cpu = cpu_seconds() - c0, wall = td_now() - t0, sum = 0;
    for (int64_t i = 0; i < 2 * n; i++)
      sum += (double)y[i] * (double)((i % 7) + 1);
    if (rc == TD_OK)
      printf("place %lld of %lld (sample %lld): %.2f s CPU, %.2f s wall, "
             "%.2f us CPU per point, load %.1f; checksum %.9g\n",
             (long long)(n - s), (long long)n, (long long)s, cpu, wall,
             1e6 * cpu / (double)(n - s), load1(), sum);
  }
  td_knn_free(&g);
  free(xs), free(pos), free(y), free(alt), free(z), free(pred);
  td_free(rows);
  td_array_close(&x);
  td_array_close(&y0);
  td_head_free(h);
  return rc;
}

static void usage(void) {
  fprintf(stderr, "usage: bench_scale --run RUN [--scale auto|on|off] "
                  "[--sample S] [--place knn|canvas|encoder] [--queries Q] "
                  "[--threads T] [--no-project] [--place-only EPOCH]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *dir = NULL;
  int threads = 2, project = 1, place_ep = 0;
  int64_t q = 10000;
  td_project_opts o;
  td_project_opts_default(&o);
  o.force = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--no-project")) {
      project = 0;
      continue;
    }
    if (!v)
      usage();
    i++;
    if (!strcmp(a, "--run"))
      dir = v;
    else if (!strcmp(a, "--threads"))
      threads = atoi(v);
    else if (!strcmp(a, "--place-only"))
      place_ep = atoi(v);
    else if (!strcmp(a, "--queries"))
      q = atoll(v);
    else if (!strcmp(a, "--sample"))
      o.scale_sample = atoll(v);
    else if (!strcmp(a, "--scale"))
      o.scale = !strcmp(v, "on") ? 1 : !strcmp(v, "off") ? 0 : -1;
    else if (!strcmp(a, "--place"))
      o.scale_place = !strcmp(v, "encoder")  ? TD_SCALE_PLACE_ENCODER
                      : !strcmp(v, "canvas") ? TD_SCALE_PLACE_CANVAS
                                             : TD_SCALE_PLACE_KNN;
    else
      usage();
  }
  if (!dir || q < 1)
    usage();
  td_set_threads(threads);
  td_err err = {0};
  td_run *run;
  if (td_run_open(dir, &run, &err)) {
    fprintf(stderr, "bench_scale: %s\n", err.msg);
    return 1;
  }
  const td_run_meta *meta = td_run_get_meta(run);
  printf("run %s: %lld x %d, %d epochs, %d threads, load %.1f\n", dir,
         (long long)meta->n_train, meta->repr_dim, td_run_n_epochs(run),
         threads, load1());
  int rc = TD_OK;
  if (place_ep > 0) {
    rc = place_only(run, place_ep, o.scale_sample, &err);
    project = 0, q = 0;
  }
  if (project) {
    timing t = {.last_cpu = cpu_seconds()};
    o.progress = on_progress;
    o.progress_ctx = &t;
    td_project_summary s;
    rc = td_project(run, &o, &s, &err);
    double later_w = 0, later_c = 0;
    for (int i = 1; i < t.n; i++)
      later_w = t.wall[i] > later_w ? t.wall[i] : later_w,
      later_c = t.cpu[i] > later_c ? t.cpu[i] : later_c;
    if (rc == TD_OK && t.n)
      printf("project: first epoch %.1f s wall / %.1f s CPU; later epochs "
             "at most %.1f s wall / %.1f s CPU; peak RSS %.2f GB; load "
             "%.1f\n",
             t.wall[0], t.cpu[0], later_w, later_c, peak_rss_gb(), load1());
  }
  for (int i = 0; rc == TD_OK && q > 0 && i < td_run_n_epochs(run); i++)
    if (td_vis_epoch_final(dir, "dvi", td_run_epoch_number(run, i)))
      rc = quality(run, td_run_epoch_number(run, i), q, &err);
  td_run_close(run);
  if (rc) {
    fprintf(stderr, "bench_scale: %s\n", err.msg);
    return 1;
  }
  return 0;
}
