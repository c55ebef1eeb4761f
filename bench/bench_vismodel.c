/* bench_vismodel: the cost and quality of one epoch's projection — boundary
 * samples, kNN + fuzzy complex, training the encoder/decoder (warm-started
 * from the previous epoch after the first), encoding — with nn@15 and ppr
 * measured outside the timed part, both for the encoder's output and for
 * the layout itself (what `tardis project` stores for training points; its
 * complex there is also class-aware, see bench_project for the end-to-end
 * figures). On a recorded run or on synthetic blobs.
 *
 *   bench_vismodel --run runs/fmnist-noisy10 --epochs 10 11 12
 *                  [--subset N] [--threads T] [--no-boundary]
 *                  [--hidden H] [--layers L] [--pass-edges E] [--passes P]
 *                  [--batch B] [--rec-frac F] [--lambda-rec R] [--neg K]
 *                  [--a A] [--b B] [--lr LR] [--warm-scale S]
 *                  [--temporal none|dvi|memory] [--seed S] [-v]
 *                  [--layout-only] [--hogwild]
 *   bench_vismodel --synthetic N [--dim D] [--classes C] ...
 *
 * Peer figures (DESIGN §5, 2 cores): umap-learn 60k 41.5 s nn@15 0.138,
 * 10k 18 s 0.287; DVI in PyTorch 60k 331 s nn@15 0.057 ppr 0.901, 10k 55 s
 * 0.14 ppr 0.87.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tardis/boundary.h"
#include "tardis/complex.h"
#include "tardis/knn.h"
#include "tardis/metrics.h"
#include "tardis/parallel.h"
#include "tardis/rng.h"
#include "tardis/run.h"
#include "tardis/vismodel.h"

typedef struct {
  const char *run_dir;
  int epochs[64], n_epochs;
  int64_t subset, synthetic;
  int dim, classes, threads, boundary, verbose, layout_only;
  float bweight;
  td_vis_params p;
} opts;

static void die(const char *what, const td_err *err) {
  fprintf(stderr, "bench_vismodel: %s: %s\n", what, err ? err->msg : "");
  exit(1);
}

static int progress_cb(void *ctx, int pass, double loss) {
  double *t0 = ctx;
  fprintf(stderr, "    pass %2d  loss %.5f  %.2f s\n", pass, loss,
          td_now() - *t0);
  return 0;
}

/* One epoch's inputs: representations [n, D] and, for a run, the head's
 * logits and the head itself. */
typedef struct {
  float *x, *logits;
  int64_t n;
  int D, C;
  td_head *head;
} epoch_data;

static void load_epoch(const opts *o, td_run *run, int epoch,
                       const int32_t *rows, epoch_data *e) {
  td_err err;
  td_array repr, lg;
  if (td_run_load_f32(run, epoch, "train_repr", &repr, &err) ||
      td_run_load_f32(run, epoch, "train_logits", &lg, &err) ||
      td_run_load_head(run, epoch, &e->head, &err))
    die("load", &err);
  int64_t N = repr.shape[0];
  e->D = (int)repr.shape[1];
  e->C = (int)lg.shape[1];
  e->n = o->subset > 0 && o->subset < N ? o->subset : N;
  e->x = malloc((size_t)(e->n * e->D) * sizeof(float));
  e->logits = malloc((size_t)(e->n * e->C) * sizeof(float));
  for (int64_t i = 0; i < e->n; i++) {
    int64_t r = rows ? rows[i] : i;
    memcpy(e->x + i * e->D, (float *)repr.data + r * e->D,
           (size_t)e->D * sizeof(float));
    memcpy(e->logits + i * e->C, (float *)lg.data + r * e->C,
           (size_t)e->C * sizeof(float));
  }
  td_array_close(&repr);
  td_array_close(&lg);
}

/* Gaussian class blobs; each "epoch" moves the centres a little. */
static void synth_epoch(const opts *o, int epoch, epoch_data *e) {
  e->n = o->synthetic;
  e->D = o->dim;
  e->C = o->classes;
  e->x = malloc((size_t)(e->n * e->D) * sizeof(float));
  e->logits = NULL;
  e->head = NULL;
  td_rng r;
  td_rng_seed(&r, 99);
  float *cent = malloc((size_t)(e->C * e->D) * sizeof(float));
  for (int i = 0; i < e->C * e->D; i++)
    cent[i] = 3.0f * td_rng_normal(&r);
  td_rng_seed(&r, 1000 + (uint64_t)epoch);
  for (int i = 0; i < e->C * e->D; i++)
    cent[i] += 0.05f * (float)epoch * td_rng_normal(&r);
  td_rng_seed(&r, 7);
  for (int64_t i = 0; i < e->n; i++) {
    int c = (int)(i % e->C);
    for (int j = 0; j < e->D; j++)
      e->x[i * e->D + j] = cent[c * e->D + j] + td_rng_normal(&r);
  }
  free(cent);
}

static void parse(int argc, char **argv, opts *o) {
  memset(o, 0, sizeof *o);
  o->dim = 128;
  o->classes = 10;
  o->threads = 2;
  o->boundary = 1;
  o->bweight = TD_COMPLEX_BOUNDARY_WEIGHT;
  td_vis_params_default(&o->p, 128);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : "0";
#define ARG(name) (strcmp(a, name) == 0 && ++i)
    if (ARG("--run"))
      o->run_dir = v;
    else if (strcmp(a, "--epochs") == 0) {
      while (i + 1 < argc && argv[i + 1][0] != '-' && o->n_epochs < 64)
        o->epochs[o->n_epochs++] = atoi(argv[++i]);
    } else if (ARG("--subset"))
      o->subset = atoll(v);
    else if (ARG("--synthetic"))
      o->synthetic = atoll(v);
    else if (ARG("--dim"))
      o->dim = atoi(v);
    else if (ARG("--classes"))
      o->classes = atoi(v);
    else if (ARG("--threads"))
      o->threads = atoi(v);
    else if (strcmp(a, "--no-boundary") == 0)
      o->boundary = 0;
    else if (strcmp(a, "--layout-only") == 0)
      o->layout_only = 1;
    else if (strcmp(a, "--hogwild") == 0)
      o->p.hogwild = 1;
    else if (strcmp(a, "-v") == 0)
      o->verbose = 1;
    else if (ARG("--hidden"))
      o->p.hidden = atoi(v);
    else if (ARG("--layers"))
      o->p.n_hidden_layers = atoi(v);
    else if (ARG("--pass-edges"))
      o->p.pass_edges = atoll(v);
    else if (ARG("--passes"))
      o->p.max_epochs = atoi(v);
    else if (ARG("--batch"))
      o->p.batch_edges = atoi(v);
    else if (ARG("--rec-frac"))
      o->p.rec_fraction = (float)atof(v);
    else if (ARG("--lambda-rec"))
      o->p.lambda_rec = (float)atof(v);
    else if (ARG("--neg"))
      o->p.n_negatives = atoi(v);
    else if (ARG("--a"))
      o->p.a = (float)atof(v);
    else if (ARG("--b"))
      o->p.b = (float)atof(v);
    else if (ARG("--lr"))
      o->p.lr = (float)atof(v);
    else if (ARG("--min-imp"))
      o->p.min_improvement = (float)atof(v);
    else if (ARG("--warm-scale"))
      o->p.warm_pass_scale = (float)atof(v);
    else if (ARG("--bweight"))
      o->bweight = (float)atof(v);
    else if (ARG("--layout"))
      o->p.layout_epochs = atoi(v);
    else if (ARG("--warm-layout"))
      o->p.warm_layout_epochs = atoi(v);
    else if (ARG("--distil"))
      o->p.distil_epochs = atoi(v);
    else if (ARG("--warm-distil"))
      o->p.warm_distil_epochs = atoi(v);
    else if (ARG("--distil-batch"))
      o->p.distil_batch = atoi(v);
    else if (ARG("--seed"))
      o->p.seed = (uint64_t)atoll(v);
    else if (ARG("--temporal"))
      o->p.temporal = strcmp(v, "dvi") == 0      ? TD_TEMPORAL_DVI
                      : strcmp(v, "memory") == 0 ? TD_TEMPORAL_MEMORY
                                                 : TD_TEMPORAL_NONE;
    else {
      fprintf(stderr, "bench_vismodel: unknown option %s\n", a);
      exit(2);
    }
#undef ARG
  }
  if (!o->n_epochs)
    o->epochs[o->n_epochs++] = o->run_dir ? 1 : 0;
  if (!o->run_dir && !o->synthetic)
    o->synthetic = 10000;
}

int main(int argc, char **argv) {
  opts o;
  parse(argc, argv, &o);
  td_set_threads(o.threads);
  td_err err;
  td_run *run = NULL;
  int32_t *rows = NULL;
  if (o.run_dir) {
    if (td_run_open(o.run_dir, &run, &err))
      die(o.run_dir, &err);
    int64_t N = td_run_get_meta(run)->n_train;
    if (o.subset > 0 && o.subset < N) {
      /* a fixed random subset, sorted, the same for every epoch */
      int32_t *perm = malloc((size_t)N * sizeof(int32_t));
      for (int64_t i = 0; i < N; i++)
        perm[i] = (int32_t)i;
      td_rng r;
      td_rng_seed(&r, 0);
      td_rng_shuffle_i32(&r, perm, N);
      rows = calloc((size_t)N, sizeof(int32_t));
      char *take = calloc((size_t)N, 1);
      for (int64_t i = 0; i < o.subset; i++)
        take[perm[i]] = 1;
      int64_t m = 0;
      for (int64_t i = 0; i < N; i++)
        if (take[i])
          rows[m++] = (int32_t)i;
      free(take);
      free(perm);
    }
  }
  printf("bench_vismodel: %s, threads %d, h=%d x %d, batch %d, pass_edges "
         "%lld, rec_frac %.2f, temporal %d\n",
         o.run_dir ? o.run_dir : "synthetic blobs", o.threads, o.p.hidden,
         o.p.n_hidden_layers, o.p.batch_edges, (long long)o.p.pass_edges,
         (double)o.p.rec_fraction, o.p.temporal);
  td_vismodel *prev = NULL;
  td_knn prev_knn = {0};
  for (int ei = 0; ei < o.n_epochs; ei++) {
    int epoch = o.epochs[ei];
    epoch_data e;
    if (run)
      load_epoch(&o, run, epoch, rows, &e);
    else
      synth_epoch(&o, epoch, &e);
    double t0 = td_now();
    float *b = NULL;
    int32_t *pair = NULL;
    int64_t nb = 0;
    if (o.boundary && e.head) {
      td_boundary_params bp;
      td_boundary_params_default(&bp, e.n, e.C);
      bp.seed = (uint64_t)epoch;
      if (td_boundary_generate(e.head, e.x, e.logits, e.n, e.D, e.C, &bp, &b,
                               &pair, &nb, &err))
        die("boundary", &err);
    }
    double t1 = td_now();
    int64_t nv = e.n + nb;
    float *xv = malloc((size_t)(nv * e.D) * sizeof(float));
    memcpy(xv, e.x, (size_t)(e.n * e.D) * sizeof(float));
    if (nb)
      memcpy(xv + e.n * e.D, b, (size_t)(nb * e.D) * sizeof(float));
    td_graph g;
    td_knn knn;
    if (td_complex_dvi_ex(e.x, e.n, b, nb, e.D, 15, o.bweight, (uint64_t)epoch,
                          &g, &knn, &err))
      die("complex", &err);
    double t2 = td_now();
    float *overlap = NULL;
    td_vis_anchor anc = {0};
    if (prev) {
      overlap = calloc((size_t)nv, sizeof(float));
      td_vis_knn_overlap(&prev_knn, &knn, overlap);
      for (int64_t i = e.n; i < nv; i++)
        overlap[i] = 0.0f; /* boundary samples are new every epoch */
      anc.knn_overlap = overlap;
    }
    td_vis_params p = o.p;
    p.seed = o.p.seed + (uint64_t)epoch;
    if (o.verbose) {
      p.progress = progress_cb;
      p.progress_ctx = &t2;
    }
    if (o.layout_only) {
      /* the direct layout alone, from a random start: its own nn@15 */
      float *yl = malloc((size_t)nv * 2 * sizeof(float));
      td_rng r;
      td_rng_seed(&r, 3);
      for (int64_t i = 0; i < 2 * nv; i++)
        yl[i] = 20.0f * td_rng_uniform(&r) - 10.0f;
      double tl = td_now();
      if ((p.hogwild ? td_vis_layout_hogwild : td_vis_layout)(
              &g, yl, p.layout_epochs, 1.0f, p.n_negatives, p.a, p.b, p.seed))
        die("layout: out of memory", NULL);
      tl = td_now() - tl;
      td_knn hi;
      double v = 0;
      if (td_knn_exact(e.x, e.n, e.D, 15, &hi, &err))
        die("knn", &err);
      int k15 = 15;
      if (td_metric_nn_preservation_knn(&hi, yl, &k15, 1, &v, &err))
        die("nn", &err);
      printf("layout only: %d epochs %.2f s nn@15 %.4f\n", p.layout_epochs, tl,
             v);
      td_knn_free(&hi);
      free(yl);
    }
    td_vismodel *m = td_vismodel_new(e.D, &p);
    /* the layout (the drawn positions, as tardis project stores them) */
    float *ylay = malloc((size_t)nv * 2 * sizeof(float));
    td_vis_fit_io io = {NULL, 0, ylay, NULL, 0};
    if (td_vismodel_fit_ex(m, xv, nv, &g, prev, &p, prev ? &anc : NULL, &io,
                           &err))
      die("fit", &err);
    double t3 = td_now();
    float *y = malloc((size_t)e.n * 2 * sizeof(float));
    if (td_vismodel_encode(m, e.x, e.n, y))
      die("encode: out of memory", NULL);
    double t4 = td_now();
    /* quality, untimed */
    td_knn high;
    if (td_knn_exact(e.x, e.n, e.D, 15, &high, &err))
      die("exact knn", &err);
    int ks[3] = {10, 15, 20};
    double nn[3] = {0, 0, 0}, ppr = -1, icd = -1;
    if (td_metric_nn_preservation_knn(&high, y, ks + 1, 1, nn + 1, &err))
      die("nn", &err);
    if (e.head) {
      float *xr = malloc((size_t)(e.n * e.D) * sizeof(float));
      if (td_vismodel_decode(m, y, e.n, xr) ||
          td_metric_ppr(e.head, e.x, xr, e.n, &ppr, &icd))
        die("decode / ppr: out of memory", NULL);
      free(xr);
    }
    double nn_lay = 0, ppr_lay = -1;
    if (td_metric_nn_preservation_knn(&high, ylay, ks + 1, 1, &nn_lay, &err))
      die("nn", &err);
    if (e.head) {
      float *xr = malloc((size_t)(e.n * e.D) * sizeof(float));
      if (td_vismodel_decode(m, ylay, e.n, xr) ||
          td_metric_ppr(e.head, e.x, xr, e.n, &ppr_lay, NULL))
        die("decode / ppr: out of memory", NULL);
      free(xr);
    }
    printf("epoch %d  n %lld  boundary %lld  edges %lld | boundary %.2f s  "
           "knn+complex %.2f s  fit %.2f s  encode %.2f s  TOTAL %.2f s | "
           "encoder: nn@15 %.4f  ppr %.4f  inv_conf_diff %.4f | layout: "
           "nn@15 %.4f  ppr %.4f\n",
           epoch, (long long)e.n, (long long)nb, (long long)g.n_edges, t1 - t0,
           t2 - t1, t3 - t2, t4 - t3, t4 - t0, nn[1], ppr, icd, nn_lay,
           ppr_lay);
    free(ylay);
    fflush(stdout);
    td_knn_free(&high);
    td_knn_free(&prev_knn);
    prev_knn = knn;
    td_vismodel_free(prev);
    prev = m;
    free(overlap);
    free(y);
    free(xv);
    free(b);
    free(pair);
    td_graph_free(&g);
    free(e.x);
    free(e.logits);
    td_head_free(e.head);
  }
  td_knn_free(&prev_knn);
  td_vismodel_free(prev);
  free(rows);
  td_run_close(run);
  return 0;
}
