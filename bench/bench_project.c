/* bench_project: `tardis project` + `tardis eval` on a recorded run, with
 * umap-learn run side by side on the same representations.
 *
 *   bench_project --run runs/fmnist-noisy10 --epochs 9:12 [--threads 2]
 *                 [--no-umap] [--umap-epoch E] [--keep] [--hogwild]
 *                 [--peers ../shared/peers]
 *
 * The selected epochs are linked into a scratch copy of the run (the run
 * itself is not written to), projected (boundary samples, kNN, complex,
 * layout, nets, territory: every stage), then evaluated. Per epoch it prints
 * wall and CPU seconds (getrusage, all threads: less sensitive to other
 * jobs on the machine than wall time), the stage split from
 * projection.json, nn@15 train/test, ppr; then temporal_corr; then
 * umap-learn (umap.UMAP(n_neighbors=15), numba compiled beforehand on a
 * small set) on the first projected epoch's training representations, its
 * nn@15 with the peers' knnutil.py, and the ratios; and the kNN stage
 * alone (k = 15 on the same representations): tardis exact and NN-descent
 * against scikit-learn's brute force and pynndescent. The load
 * average is printed beside the timings. --hogwild selects the lock-free
 * layout; the TD_PROJ_* environment variables of the CLI
 * (src/cli/proj_env.c) change the configuration.
 */
#define _DEFAULT_SOURCE /* realpath, getloadavg */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tardis/evaluate.h"
#include "tardis/fsutil.h"
#include "tardis/knn.h"
#include "tardis/parallel.h"
#include "tardis/project.h"
#include "tardis/run.h"

#include "cli/commands.h"

static double cpu_now(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
         (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

static double load1(void) {
  double l[3] = {0, 0, 0};
  return getloadavg(l, 3) > 0 ? l[0] : -1.0;
}

typedef struct {
  double wall[256], cpu[256], load[256];
  int epoch[256], n;
  double t0, c0;
} timing;

static void progress(const td_project_progress *p, void *ctx) {
  timing *t = ctx;
  if (!strcmp(p->stage, "load")) {
    t->t0 = td_now();
    t->c0 = cpu_now();
  } else if (!strcmp(p->stage, "done") && t->n < 256) {
    t->wall[t->n] = td_now() - t->t0;
    t->cpu[t->n] = cpu_now() - t->c0;
    t->load[t->n] = load1();
    t->epoch[t->n++] = p->epoch;
  }
}

static int sh(const char *cmd) {
  int rc = system(cmd);
  if (rc != 0)
    fprintf(stderr, "bench_project: failed: %s\n", cmd);
  return rc;
}

/* A scratch run whose files are links into the real one. */
static int make_scratch(const char *src_rel, int from, int to, char *dst,
                        size_t len) {
  char cmd[32768], src[4096];
  if (!realpath(src_rel, src)) {
    fprintf(stderr, "bench_project: %s: no such run\n", src_rel);
    return 1;
  }
  snprintf(dst, len, "/tmp/bench_project.%d", (int)getpid());
  snprintf(cmd, sizeof cmd,
           "rm -rf '%s' && mkdir -p '%s/epochs' && cd '%s' && "
           "for f in '%s'/*; do "
           "  b=$(basename \"$f\"); [ \"$b\" = vis ] || [ \"$b\" = epochs ] || "
           "  ln -s \"$f\" \"$b\"; done && "
           "for d in '%s'/epochs/*; do "
           "  e=$(basename \"$d\" | sed 's/^0*//'); "
           "  [ -n \"$e\" ] && [ \"$e\" -ge %d ] && [ \"$e\" -le %d ] && "
           "  ln -s \"$d\" epochs/; done; true",
           dst, dst, dst, src, src, from, to);
  return sh(cmd);
}

static double json_num(const char *path, const char *key) {
  json_t *j = json_load_file(path, 0, NULL);
  double v = j ? json_number_value(json_object_get(j, key)) : -1.0;
  json_decref(j);
  return v;
}

/* How far the class centres move between consecutive epochs, in units of
 * the embedding's extent (mean over classes and epoch pairs), and the
 * largest rotation of the class-centre constellation: a flip or rotation
 * of the map shows up as a large value of either. */
static void centre_drift(const char *scratch, const timing *tm) {
  char path[4400];
  snprintf(path, sizeof path, "%s/train_labels.npy", scratch);
  td_array lab;
  if (td_npy_load(path, &lab, NULL) || lab.dtype != TD_I32)
    return;
  const int32_t *l = lab.data;
  int64_t n = lab.shape[0];
  double prev[64][2], pmx = 0.0, pmy = 0.0, drift = 0.0, maxrot = 0.0;
  int have = 0, pairs = 0;
  for (int i = 0; i < tm->n; i++) {
    char dir[4200];
    if (td_vis_epoch_dir(scratch, "dvi", tm->epoch[i], dir, sizeof dir))
      continue; /* skipped like a missing epoch */
    snprintf(path, sizeof path, "%s/train_embedding.npy", dir);
    td_array y;
    if (td_npy_load(path, &y, NULL))
      continue;
    const float *v = y.data;
    double cen[64][2] = {{0}}, cnt[64] = {0};
    double lo[2] = {1e30, 1e30}, hi[2] = {-1e30, -1e30};
    for (int64_t r = 0; r < n && r < y.shape[0]; r++) {
      int c = l[r] & 63;
      for (int a = 0; a < 2; a++) {
        double t = (double)v[2 * r + a];
        cen[c][a] += t;
        lo[a] = t < lo[a] ? t : lo[a];
        hi[a] = t > hi[a] ? t : hi[a];
      }
      cnt[c] += 1.0;
    }
    double ext = hi[0] - lo[0] > hi[1] - lo[1] ? hi[0] - lo[0] : hi[1] - lo[1];
    double mx = 0, my = 0;
    int nc = 0;
    for (int c = 0; c < 64; c++)
      if (cnt[c] > 0) {
        cen[c][0] /= cnt[c];
        cen[c][1] /= cnt[c];
        mx += cen[c][0];
        my += cen[c][1];
        nc++;
      }
    mx /= nc;
    my /= nc;
    if (have) {
      /* least-squares rotation angle between the centred constellations */
      double d = 0, sxy = 0, sxx = 0;
      for (int c = 0; c < 64; c++)
        if (cnt[c] > 0) {
          d += hypot(cen[c][0] - prev[c][0], cen[c][1] - prev[c][1]) / ext;
          double ax = prev[c][0] - pmx, ay = prev[c][1] - pmy;
          double bx = cen[c][0] - mx, by = cen[c][1] - my;
          sxx += ax * bx + ay * by;
          sxy += ax * by - ay * bx;
        }
      double rot = fabs(atan2(sxy, sxx)) * 180.0 / 3.14159265358979;
      maxrot = rot > maxrot ? rot : maxrot;
      drift += d / nc;
      pairs++;
    }
    memcpy(prev, cen, sizeof prev);
    pmx = mx;
    pmy = my;
    have = 1;
    td_array_close(&y);
  }
  if (pairs)
    printf("class centres: mean move per epoch %.3f of the extent, largest "
           "rotation %.1f degrees\n",
           drift / pairs, maxrot);
  td_array_close(&lab);
}

/* umap-learn on one epoch's training representations: prints and returns
 * its seconds and nn@15 (both -1 on failure). */
static void run_umap(const char *peers, const char *run_dir, int epoch,
                     double *secs, double *nn) {
  char cmd[8192];
  *secs = *nn = -1.0;
  snprintf(cmd, sizeof cmd,
           "OMP_NUM_THREADS=2 NUMBA_NUM_THREADS=2 /usr/bin/python3 -c \""
           "import sys, time, numpy as np\n"
           "sys.path.insert(0, '%s')\n"
           "import knnutil, umap\n"
           "X = np.load('%s/epochs/%04d/train_repr.npy').astype(np.float32)\n"
           "umap.UMAP(n_neighbors=15).fit_transform(X[:500])\n"
           "hi = knnutil.exact_knn(X, 15)\n"
           "t = time.perf_counter()\n"
           "Y = umap.UMAP(n_neighbors=15, min_dist=0.1).fit_transform(X)\n"
           "t = time.perf_counter() - t\n"
           "print('UMAP', t, knnutil.preservation(hi, Y, 15))\n"
           "\" 2>/dev/null",
           peers, run_dir, epoch);
  FILE *f = popen(cmd, "r");
  if (!f)
    return;
  char line[512];
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, "UMAP ", 5))
      sscanf(line + 5, "%lf %lf", secs, nn);
  pclose(f);
}

/* The kNN stage alone, k = 15, on one epoch's training representations:
 * tardis exact and NN-descent (median of 3) beside scikit-learn's brute
 * force and pynndescent (its JIT warmed on a small set first). */
static void knn_side_by_side(const td_run *run, const char *run_dir,
                             int epoch) {
  td_array x;
  td_err err;
  if (td_run_load_f32(run, epoch, "train_repr", &x, &err)) {
    fprintf(stderr, "bench_project: %s\n", err.msg);
    return;
  }
  int64_t n = x.shape[0];
  int d = (int)x.shape[1];
  double te[3], tn[3];
  for (int r = 0; r < 3; r++) {
    td_knn g;
    double t0 = td_now();
    if (td_knn_exact(x.data, n, d, 15, &g, &err)) {
      fprintf(stderr, "bench_project: %s\n", err.msg);
      exit(1);
    }
    te[r] = td_now() - t0;
    td_knn_free(&g);
    td_nnd_params p;
    td_nnd_params_default(&p);
    t0 = td_now();
    if (td_knn_nndescent(x.data, n, d, 15, &p, &g, &err)) {
      fprintf(stderr, "bench_project: %s\n", err.msg);
      exit(1);
    }
    tn[r] = td_now() - t0;
    td_knn_free(&g);
  }
  td_array_close(&x);
  for (int a = 0; a < 2; a++) /* medians of three */
    for (int b = a + 1; b < 3; b++) {
      if (te[b] < te[a]) {
        double t = te[a];
        te[a] = te[b];
        te[b] = t;
      }
      if (tn[b] < tn[a]) {
        double t = tn[a];
        tn[a] = tn[b];
        tn[b] = t;
      }
    }
  char cmd[8192];
  snprintf(cmd, sizeof cmd,
           "OMP_NUM_THREADS=2 NUMBA_NUM_THREADS=2 /usr/bin/python3 -c \""
           "import time, numpy as np\n"
           "X = np.load('%s/epochs/%04d/train_repr.npy').astype(np.float32)\n"
           "from sklearn.neighbors import NearestNeighbors\n"
           "t = time.perf_counter()\n"
           "NearestNeighbors(n_neighbors=16, algorithm='brute').fit(X)"
           ".kneighbors(X)\n"
           "ts = time.perf_counter() - t\n"
           "import pynndescent\n"
           "pynndescent.NNDescent(X[:2000], n_neighbors=16).neighbor_graph\n"
           "t = time.perf_counter()\n"
           "pynndescent.NNDescent(X, n_neighbors=16).neighbor_graph\n"
           "print('KNN', ts, time.perf_counter() - t)\n"
           "\" 2>/dev/null",
           run_dir, epoch);
  double ts = -1, tp = -1;
  FILE *f = popen(cmd, "r");
  char line[512];
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "KNN ", 4))
      sscanf(line + 4, "%lf %lf", &ts, &tp);
  if (f)
    pclose(f);
  printf("kNN k=15 on epoch %d (%lld x %d): tardis exact %.2f s, NN-descent "
         "%.2f s",
         epoch, (long long)n, d, te[1], tn[1]);
  if (ts > 0 && tp > 0)
    printf("; scikit-learn brute %.2f s (%.1fx), pynndescent %.2f s (%.1fx)\n",
           ts, ts / te[1], tp, tp / tn[1]);
  else
    printf("; peers not available (bash ../shared/peers/setup.sh)\n");
}

int main(int argc, char **argv) {
  const char *run_dir = NULL;
  int from = 1, to = 4, threads = 2, umap_on = 1, umap_epoch = -1, keep = 0;
  int hogwild = 0;
  const char *peers = "../shared/peers";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--run") && i + 1 < argc)
      run_dir = argv[++i];
    else if (!strcmp(argv[i], "--epochs") && i + 1 < argc)
      sscanf(argv[++i], "%d:%d", &from, &to);
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
      threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--no-umap"))
      umap_on = 0;
    else if (!strcmp(argv[i], "--umap-epoch") && i + 1 < argc)
      umap_epoch = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--hogwild"))
      hogwild = 1;
    else if (!strcmp(argv[i], "--keep"))
      keep = 1;
    else if (!strcmp(argv[i], "--peers") && i + 1 < argc)
      peers = argv[++i];
    else {
      fprintf(stderr, "usage: bench_project --run RUN --epochs A:B "
                      "[--threads T] [--no-umap] [--umap-epoch E] [--keep] "
                      "[--hogwild] [--peers DIR]\n");
      return 2;
    }
  }
  if (!run_dir) {
    fprintf(stderr, "bench_project: --run is required\n");
    return 2;
  }
  td_set_threads(threads);
  char scratch[4096];
  if (make_scratch(run_dir, from, to, scratch, sizeof scratch))
    return 1;
  td_err err;
  td_run *run;
  if (td_run_open(scratch, &run, &err)) {
    fprintf(stderr, "bench_project: %s\n", err.msg);
    return 1;
  }
  printf("bench_project: %s epochs %d..%d, %lld train x %d, threads %d, "
         "layout %s, load average %.2f\n",
         run_dir, from, to, (long long)td_run_get_meta(run)->n_train,
         td_run_get_meta(run)->repr_dim, threads,
         hogwild ? "hogwild" : "deterministic", load1());
  fflush(stdout);
  timing tm;
  memset(&tm, 0, sizeof tm);
  td_project_opts o;
  td_project_opts_default(&o);
  td_cli_proj_env(&o);
  if (hogwild)
    o.hogwild = 1;
  o.force = 1;
  o.progress = progress;
  o.progress_ctx = &tm;
  td_project_summary s;
  if (td_project(run, &o, &s, &err)) {
    fprintf(stderr, "bench_project: project: %s\n", err.msg);
    return 1;
  }
  td_eval_result r;
  if (td_evaluate(run, "dvi", NULL, NULL, &r, &err)) {
    fprintf(stderr, "bench_project: eval: %s\n", err.msg);
    return 1;
  }
  printf("epoch   wall s   cpu s  load | knn+cx s  fit s  terr s | nn@15 "
         "train  test |  ppr\n");
  double first = 0, later_max = 0, later_sum = 0, later_cpu = 0;
  for (int i = 0; i < tm.n && i < r.n_epochs; i++) {
    char dir[4200], path[4400];
    if (td_vis_epoch_dir(scratch, "dvi", tm.epoch[i], dir, sizeof dir))
      dir[0] = '\0'; /* cannot happen: scratch is a short temporary path */
    snprintf(path, sizeof path, "%s/projection.json", dir);
    const td_eval_epoch *e = &r.epochs[i];
    printf("%5d  %7.2f %7.2f %5.2f | %8.2f %6.2f %6.2f |      %.4f %.4f | "
           "%.4f\n",
           tm.epoch[i], tm.wall[i], tm.cpu[i], tm.load[i],
           json_num(path, "knn_seconds"), json_num(path, "fit_seconds"),
           json_num(path, "territory_seconds"), e->nn_train[1], e->nn_test[1],
           e->ppr);
    if (i == 0) {
      first = tm.wall[i];
    } else {
      later_sum += tm.wall[i];
      later_cpu += tm.cpu[i];
      if (tm.wall[i] > later_max)
        later_max = tm.wall[i];
    }
  }
  printf("first epoch %.2f s; later epochs mean %.2f s (max %.2f, cpu mean "
         "%.2f s); temporal_corr train %.3f test %.3f\n",
         first, tm.n > 1 ? later_sum / (tm.n - 1) : 0.0, later_max,
         tm.n > 1 ? later_cpu / (tm.n - 1) : 0.0, r.temporal_corr_train,
         r.temporal_corr_test);
  centre_drift(scratch, &tm);
  if (umap_on && r.n_epochs > 0) {
    int ue = umap_epoch > 0 ? umap_epoch : r.epochs[0].epoch;
    int ui = 0;
    for (int i = 0; i < r.n_epochs; i++)
      if (r.epochs[i].epoch == ue)
        ui = i;
    double us, unn;
    double l = load1();
    run_umap(peers, run_dir, ue, &us, &unn);
    if (us > 0) {
      printf("umap-learn epoch %d: %.2f s (load %.2f), nn@15 %.4f\n", ue, us, l,
             unn);
      printf("ratios: umap time / tardis first epoch %.1fx, / tardis later "
             "epoch %.1fx; tardis nn@15 / umap %.2f\n",
             us / first, tm.n > 1 ? us / (later_sum / (tm.n - 1)) : 0.0,
             r.epochs[ui].nn_train[1] / unn);
    } else {
      printf("umap-learn: not available (bash ../shared/peers/setup.sh)\n");
    }
    knn_side_by_side(run, run_dir, ue);
  }
  td_eval_result_free(&r);
  td_run_close(run);
  if (!keep) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
    sh(cmd);
  } else {
    printf("scratch run kept: %s\n", scratch);
  }
  return 0;
}
