/* bench_knn — exact and NN-descent kNN graphs, timed, with recall, and (with
 * --peers) scikit-learn brute force and pynndescent on the same data in the
 * same invocation.
 *
 *   bench_knn [--data X.npy | --fmnist | --clusters] [--n N] [--d D] [--k K]
 *             [--reps R] [--threads T] [--peers] [--no-exact]
 *             [--block B] [--leaf L] [--trees T] [--rate R] [--iters I]
 *             [--delta D] [--seed S] [--save X.npy] [--truth G.npy]
 *             [--verbose]
 *
 * --fmnist: raw Fashion-MNIST training pixels (/255) through a seeded
 * Gaussian random projection to D (default 128) dimensions.
 * --clusters (default): N points in 20 Gaussian clusters in D dimensions.
 * Times are medians of R runs; recall is NN-descent against exact, self
 * excluded on both sides. --truth G.npy saves the exact graph's indices, and
 * with --no-exact loads them instead of recomputing (for parameter sweeps). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <cblas.h>

#include "knn/knn_internal.h"
#include "tardis/array.h"
#include "tardis/knn.h"
#include "tardis/parallel.h"
#include "tardis/rng.h"

#define FMNIST "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"

static double cpu_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static float *gen_clusters(int64_t n, int d, uint64_t seed) {
  enum { NC = 20 };
  float *x = malloc(sizeof *x * (size_t)n * (size_t)d);
  float *cent = malloc(sizeof *cent * NC * (size_t)d);
  if (!x || !cent) {
    free(x);
    free(cent);
    return NULL;
  }
  td_rng r;
  td_rng_seed(&r, seed);
  for (int i = 0; i < NC * d; i++)
    cent[i] = 3.0f * td_rng_normal(&r);
  for (int64_t i = 0; i < n; i++) {
    int c = (int)td_rng_below(&r, NC);
    for (int j = 0; j < d; j++)
      x[i * d + j] = cent[c * d + j] + td_rng_normal(&r);
  }
  free(cent);
  return x;
}

static uint32_t be32(const unsigned char *b) {
  return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 |
         b[3];
}

/* Fashion-MNIST pixels, randomly projected to d dimensions. */
static float *load_fmnist(int64_t *n, int d, uint64_t seed) {
  gzFile f = gzopen(FMNIST, "rb");
  if (!f) {
    fprintf(stderr, "bench_knn: cannot open %s\n", FMNIST);
    return NULL;
  }
  unsigned char hdr[16];
  if (gzread(f, hdr, 16) != 16 || be32(hdr) != 2051) {
    fprintf(stderr, "bench_knn: %s: bad IDX header\n", FMNIST);
    gzclose(f);
    return NULL;
  }
  int64_t cnt = be32(hdr + 4);
  int pix = (int)(be32(hdr + 8) * be32(hdr + 12));
  if (*n > 0 && *n < cnt)
    cnt = *n;
  unsigned char *raw = malloc((size_t)cnt * (size_t)pix);
  float *px = malloc(sizeof *px * (size_t)cnt * (size_t)pix);
  float *proj = malloc(sizeof *proj * (size_t)pix * (size_t)d);
  float *x = malloc(sizeof *x * (size_t)cnt * (size_t)d);
  if (!raw || !px || !proj || !x ||
      gzread(f, raw, (unsigned)(cnt * pix)) != (int)(cnt * pix)) {
    fprintf(stderr, "bench_knn: cannot read %s\n", FMNIST);
    gzclose(f);
    free(raw);
    free(px);
    free(proj);
    free(x);
    return NULL;
  }
  gzclose(f);
  for (int64_t i = 0; i < cnt * pix; i++)
    px[i] = raw[i] / 255.0f;
  td_rng r;
  td_rng_seed(&r, seed ^ 0x70726f6aULL);
  float scale = 1.0f / sqrtf((float)d);
  for (int64_t i = 0; i < (int64_t)pix * d; i++)
    proj[i] = td_rng_normal(&r) * scale;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)cnt, d, pix, 1.0f,
              px, pix, proj, d, 0.0f, x, d);
  free(raw);
  free(px);
  free(proj);
  *n = cnt;
  return x;
}

/* The peers, timed like shared/peers/bench_knn.py: sklearn brute force
 * (n_jobs=2, float32) and pynndescent warm (first call excluded). pynndescent
 * counts the point itself among its neighbours, so it is asked for k+1 and
 * self is dropped; its graph goes to a file for recall against ours. */
static const char *PEER_PY =
    "import sys, time, statistics, numpy as np\n"
    "from sklearn.neighbors import NearestNeighbors\n"
    "import pynndescent\n"
    "X = np.load(sys.argv[1]); k = int(sys.argv[2]); reps = int(sys.argv[3])\n"
    "ts = []\n"
    "for r in range(reps):\n"
    "    t0 = time.perf_counter()\n"
    "    NearestNeighbors(n_neighbors=k, algorithm='brute', n_jobs=2)"
    ".fit(X).kneighbors(X)\n"
    "    ts.append(time.perf_counter() - t0)\n"
    "print('sklearn_brute', statistics.median(ts), flush=True)\n"
    "pynndescent.NNDescent(X[:2000], n_neighbors=k + 1)\n"
    "ts = []\n"
    "for r in range(reps):\n"
    "    t0 = time.perf_counter()\n"
    "    g = pynndescent.NNDescent(X, n_neighbors=k + 1).neighbor_graph[0]\n"
    "    ts.append(time.perf_counter() - t0)\n"
    "print('pynndescent', statistics.median(ts), flush=True)\n"
    "out = np.empty((g.shape[0], k), dtype=np.int32)\n"
    "for i in range(g.shape[0]):\n"
    "    r = g[i][g[i] != i]\n"
    "    out[i] = r[:k]\n"
    "np.save(sys.argv[4], out)\n";

static int run_peers(const char *npy, int k, int reps, const td_knn *exact,
                     double *t_brute, double *t_nnd, double *rec_nnd) {
  char py[] = "/tmp/bench_knn_peer_XXXXXX";
  int fd = mkstemp(py);
  if (fd < 0)
    return -1;
  FILE *pf = fdopen(fd, "w");
  fputs(PEER_PY, pf);
  fclose(pf);
  char graph[600], cmd[2048];
  snprintf(graph, sizeof graph, "%s.graph.npy", py);
  snprintf(cmd, sizeof cmd,
           "OMP_NUM_THREADS=2 NUMBA_NUM_THREADS=2 /usr/bin/python3 %s %s %d "
           "%d %s",
           py, npy, k, reps, graph);
  FILE *p = popen(cmd, "r");
  if (!p) {
    unlink(py);
    return -1;
  }
  char line[256], name[64];
  double v;
  *t_brute = *t_nnd = *rec_nnd = (double)NAN;
  while (fgets(line, sizeof line, p))
    if (sscanf(line, "%63s %lf", name, &v) == 2) {
      if (!strcmp(name, "sklearn_brute"))
        *t_brute = v;
      else if (!strcmp(name, "pynndescent"))
        *t_nnd = v;
    }
  int rc = pclose(p);
  unlink(py);
  td_array g;
  td_err err;
  if (exact && td_npy_load(graph, &g, &err) == TD_OK) {
    if (g.dtype == TD_I32 && g.ndim == 2 && g.shape[0] == exact->n &&
        g.shape[1] == k) {
      td_knn a = {.n = exact->n, .k = k, .idx = g.data, .dist = NULL};
      *rec_nnd = td_knn_recall(&a, exact);
    }
    td_array_close(&g);
  }
  unlink(graph);
  return rc;
}

int main(int argc, char **argv) {
  const char *data = NULL, *save = NULL, *truth = NULL;
  int fmnist = 0, peers = 0, no_exact = 0, d = 128, k = 15, reps = 3;
  int64_t n = 60000;
  td_nnd_params np;
  td_nnd_params_default(&np);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (!strcmp(a, name) && v && (i++, 1))
    if (!strcmp(a, "--fmnist"))
      fmnist = 1;
    else if (!strcmp(a, "--clusters"))
      fmnist = 0;
    else if (!strcmp(a, "--peers"))
      peers = 1;
    else if (!strcmp(a, "--verbose"))
      td__nnd_set_verbose(1);
    else if (!strcmp(a, "--no-exact"))
      no_exact = 1;
    else if (ARG("--data"))
      data = v;
    else if (ARG("--truth"))
      truth = v;
    else if (ARG("--save"))
      save = v;
    else if (ARG("--n"))
      n = atoll(v);
    else if (ARG("--d"))
      d = atoi(v);
    else if (ARG("--k"))
      k = atoi(v);
    else if (ARG("--reps"))
      reps = atoi(v);
    else if (ARG("--threads"))
      td_set_threads(atoi(v));
    else if (ARG("--block"))
      td__knn_set_block(atoi(v));
    else if (ARG("--extra"))
      td__nnd_set_extra(atoi(v));
    else if (ARG("--leaf"))
      td__nnd_set_leaf_size(atoi(v));
    else if (ARG("--trees"))
      np.n_trees = atoi(v);
    else if (ARG("--rate"))
      np.sample_rate = (float)atof(v);
    else if (ARG("--iters"))
      np.n_iters = atoi(v);
    else if (ARG("--delta"))
      np.delta = (float)atof(v);
    else if (ARG("--seed"))
      np.seed = strtoull(v, NULL, 10);
    else {
      fprintf(stderr, "bench_knn: unknown or incomplete option %s\n", a);
      return 2;
    }
#undef ARG
  }
  if (reps < 1 || reps > 100)
    reps = 3;
  td_array arr = {0};
  float *x = NULL;
  const char *what;
  td_err err;
  if (data) {
    td_array raw;
    if (td_npy_load(data, &raw, &err) != TD_OK ||
        td_array_to_f32(&raw, &arr, &err) != TD_OK) {
      fprintf(stderr, "bench_knn: %s\n", err.msg);
      return 1;
    }
    td_array_close(&raw);
    if (arr.ndim != 2) {
      fprintf(stderr, "bench_knn: %s: expected a 2-d array\n", data);
      return 1;
    }
    x = arr.data;
    n = arr.shape[0];
    d = (int)arr.shape[1];
    what = data;
  } else if (fmnist) {
    x = load_fmnist(&n, d, np.seed);
    what = "Fashion-MNIST pixels, random projection";
  } else {
    x = gen_clusters(n, d, np.seed);
    what = "20 Gaussian clusters";
  }
  if (!x)
    return 1;
  printf("data: %s, %lld x %d, k = %d, threads %d, reps %d (median)\n", what,
         (long long)n, d, k, td_threads(), reps);
  char tmpnpy[64] = "";
  const char *npy = data ? data : save;
  if (!npy && peers) {
    snprintf(tmpnpy, sizeof tmpnpy, "/tmp/bench_knn_%d.npy", (int)getpid());
    npy = tmpnpy;
  }
  if (npy && !data) {
    int64_t shape[2] = {n, d};
    if (td_npy_save_raw(npy, TD_F32, 2, shape, x, &err) != TD_OK) {
      fprintf(stderr, "bench_knn: %s\n", err.msg);
      return 1;
    }
  }

  /* CPU seconds are printed too: on a shared machine they show the cost
   * when wall time is inflated by other load. */
  double te = (double)NAN, tn, ts[100], cs[100], ce = (double)NAN, cn;
  td_knn ex = {0}, ap = {0};
  td_array tarr = {0};
  if (no_exact && truth && td_npy_load(truth, &tarr, &err) == TD_OK) {
    if (tarr.dtype == TD_I32 && tarr.ndim == 2 && tarr.shape[0] == n &&
        tarr.shape[1] == k) {
      ex.n = n;
      ex.k = k;
      ex.idx = tarr.data;
    }
  } else if (!no_exact) {
    for (int r = 0; r < reps; r++) {
      td_knn_free(&ex);
      double t0 = td_now(), c0 = cpu_now();
      if (td_knn_exact(x, n, d, k, &ex, &err) != TD_OK) {
        fprintf(stderr, "bench_knn: exact: %s\n", err.msg);
        return 1;
      }
      ts[r] = td_now() - t0;
      cs[r] = cpu_now() - c0;
    }
    te = median(ts, reps);
    ce = median(cs, reps);
    printf("tardis exact       %8.3f s  (cpu %.2f s)\n", te, ce);
    int64_t shape[2] = {n, k};
    if (truth && td_npy_save_raw(truth, TD_I32, 2, shape, ex.idx, &err))
      fprintf(stderr, "bench_knn: %s\n", err.msg);
  }
  for (int r = 0; r < reps; r++) {
    td_knn_free(&ap);
    double t0 = td_now(), c0 = cpu_now();
    if (td_knn_nndescent(x, n, d, k, &np, &ap, &err) != TD_OK) {
      fprintf(stderr, "bench_knn: nndescent: %s\n", err.msg);
      return 1;
    }
    ts[r] = td_now() - t0;
    cs[r] = cpu_now() - c0;
  }
  tn = median(ts, reps);
  cn = median(cs, reps);
  double rec = ex.idx ? td_knn_recall(&ap, &ex) : (double)NAN;
  printf("tardis nndescent   %8.3f s  (cpu %.2f s)  recall %.4f  (trees %d, "
         "rate %.2f, iters <= %d, delta %g)\n",
         tn, cn, rec, np.n_trees, (double)np.sample_rate, np.n_iters,
         (double)np.delta);
  if (peers) {
    double pb = (double)NAN, pn = (double)NAN, pr = (double)NAN;
    int rc = run_peers(npy, k, reps, ex.idx ? &ex : NULL, &pb, &pn, &pr);
    if (rc != 0)
      fprintf(stderr, "bench_knn: peer script exited with %d\n", rc);
    printf("sklearn brute      %8.3f s  -> tardis exact %.2fx faster\n", pb,
           pb / te);
    printf("pynndescent warm   %8.3f s  recall %.4f  -> tardis nndescent "
           "%.2fx faster\n",
           pn, pr, pn / tn);
  }
  if (tmpnpy[0])
    unlink(tmpnpy);
  if (tarr.data)
    td_array_close(&tarr);
  else
    td_knn_free(&ex);
  td_knn_free(&ap);
  if (data)
    td_array_close(&arr);
  else
    free(x);
  return 0;
}
