/* bench_nn: throughput of the neural-network engine on the two workloads
 * tardis runs — the subject MLP 784-256-128-10 (batch 128, SGD momentum) and
 * a projection encoder 128-256-256-256-256-2 (batch 1000, Adam) — on random
 * data, plus batched inference. With --torch it runs the same workloads in
 * PyTorch (/usr/bin/python3) in the same invocation and prints the ratios.
 * With --model cnn it times instead the documented CNN (docs/engine.md):
 * forward + backward + SGD step of batch 128 on 1x28x28 inputs, at 1
 * thread and at 2 threads as the trainer runs it (the batch split over
 * replicas, single-threaded BLAS each), and PyTorch's time for the same net
 * with --torch.
 *
 *   bench_nn [--model mlp|cnn] [--threads N] [--epochs N] [--torch]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tardis/nn.h"
#include "tardis/parallel.h"
#include "tardis/rng.h"

/* CPU seconds of the whole process: on a shared, loaded machine the wall
 * clock measures the neighbours too, CPU time far less so. */
static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return v[n / 2];
}

/* One epoch of the subject trainer: shuffle, gather each batch (as a real
 * trainer does), forward, loss, backward, SGD step. Returns seconds. */
static double subject_epoch(td_net *net, td_net_ws *ws, td_optim *opt,
                            const float *x, const int32_t *y, int n,
                            int32_t *perm, float *xb, int32_t *yb, float *dl,
                            td_rng *r, double *cpu) {
  const int B = 128, D = 784, C = 10;
  double t0 = td_now(), c0 = cpu_now();
  td_rng_shuffle_i32(r, perm, n);
  for (int s = 0; s < n; s += B) {
    int b = n - s < B ? n - s : B;
    for (int i = 0; i < b; i++) {
      memcpy(xb + (size_t)i * D, x + (size_t)perm[s + i] * D,
             D * sizeof(float));
      yb[i] = y[perm[s + i]];
    }
    const float *logits = td_net_forward(net, ws, xb, b);
    td_softmax_xent(logits, yb, b, C, dl, NULL);
    td_net_zero_grad(net);
    td_net_backward(net, ws, dl, b, NULL);
    td_optim_step(opt, td_net_params(net), td_net_grads(net));
  }
  *cpu = cpu_now() - c0;
  return td_now() - t0;
}

static double bench_subject(int epochs, double *predict_sps, double *cpu_s) {
  const int N = 60000, D = 784, C = 10, B = 128;
  td_rng r;
  td_rng_seed(&r, 1);
  float *x = malloc(sizeof(float) * (size_t)N * D);
  int32_t *y = malloc(sizeof(int32_t) * N), *perm = malloc(sizeof(int32_t) * N);
  float *xb = malloc(sizeof(float) * B * D),
        *dl = malloc(sizeof(float) * B * C);
  int32_t yb[128];
  for (size_t i = 0; i < (size_t)N * D; i++)
    x[i] = td_rng_uniform(&r);
  for (int i = 0; i < N; i++) {
    y[i] = (int32_t)td_rng_below(&r, C);
    perm[i] = i;
  }
  int dims[] = {784, 256, 128, 10};
  td_act acts[] = {TD_ACT_RELU, TD_ACT_RELU, TD_ACT_NONE};
  td_net *net = td_net_new(3, dims, acts);
  td_net_init(net, &r);
  td_net_ws *ws = td_net_ws_new(net, B);
  td_optim *opt = td_optim_sgd(td_net_n_params(net), 0.01f, 0.9f, 0.0f);
  double t[16], c[16];
  subject_epoch(net, ws, opt, x, y, N, perm, xb, yb, dl, &r, c); /* warm-up */
  for (int e = 0; e < epochs; e++) {
    t[e] = subject_epoch(net, ws, opt, x, y, N, perm, xb, yb, dl, &r, &c[e]);
    printf("  epoch %d: %.3f s wall, %.3f s cpu\n", e + 1, t[e], c[e]);
  }
  double sec = median(t, epochs);
  *cpu_s = median(c, epochs);

  /* Inference over the whole training set, tapping the representation, as
   * the recorder does once per epoch. */
  float *logits = malloc(sizeof(float) * (size_t)N * C);
  float *repr = malloc(sizeof(float) * (size_t)N * 128);
  double p0 = 0;
  /* the first pass warms up; the second is timed */
  for (int pass = 0; pass < 2; pass++) {
    p0 = td_now();
    if (td_net_predict(net, x, N, logits, 1, repr)) {
      fprintf(stderr, "bench_nn: predict: out of memory\n");
      exit(1);
    }
  }
  *predict_sps = N / (td_now() - p0);
  free(logits);
  free(repr);
  td_optim_free(opt);
  td_net_ws_free(ws);
  td_net_free(net);
  free(x);
  free(y);
  free(perm);
  free(xb);
  free(dl);
  return sec;
}

/* The projection encoder: steps of batch 1000 with a squared-error loss
 * against random 2-D targets and Adam. Returns samples per second. */
static double bench_encoder(int steps) {
  const int B = 1000, D = 128;
  td_rng r;
  td_rng_seed(&r, 2);
  float *x = malloc(sizeof(float) * B * D), *t = malloc(sizeof(float) * B * 2);
  float *dout = malloc(sizeof(float) * B * 2);
  for (int i = 0; i < B * D; i++)
    x[i] = td_rng_normal(&r);
  for (int i = 0; i < B * 2; i++)
    t[i] = td_rng_normal(&r);
  int dims[] = {128, 256, 256, 256, 256, 2};
  td_act acts[] = {TD_ACT_RELU, TD_ACT_RELU, TD_ACT_RELU, TD_ACT_RELU,
                   TD_ACT_NONE};
  td_net *net = td_net_new(5, dims, acts);
  td_net_init(net, &r);
  td_net_ws *ws = td_net_ws_new(net, B);
  td_optim *opt =
      td_optim_adam(td_net_n_params(net), 1e-3f, 0.9f, 0.999f, 1e-8f);
  double t0 = 0;
  for (int s = -5; s < steps; s++) { /* 5 warm-up steps */
    if (s == 0)
      t0 = td_now();
    const float *e = td_net_forward(net, ws, x, B);
    for (int i = 0; i < B * 2; i++)
      dout[i] = 2.0f * (e[i] - t[i]) / (float)(B * 2);
    td_net_zero_grad(net);
    td_net_backward(net, ws, dout, B, NULL);
    td_optim_step(opt, td_net_params(net), td_net_grads(net));
  }
  double sps = (double)steps * B / (td_now() - t0);
  td_optim_free(opt);
  td_net_ws_free(ws);
  td_net_free(net);
  free(x);
  free(t);
  free(dout);
  return sps;
}

/* The same two workloads in PyTorch; prints "subject_s <median s/epoch>" and
 * "encoder_sps <samples/s>". */
static const char *torch_script =
    "import time, statistics, torch, torch.nn as nn\n"
    "torch.set_num_threads(%d); torch.manual_seed(0)\n"
    "N, B = 60000, 128\n"
    "X = torch.rand(N, 784); y = torch.randint(0, 10, (N,))\n"
    "m = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128),"
    " nn.ReLU(), nn.Linear(128, 10))\n"
    "opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)\n"
    "lf = nn.functional.cross_entropy\n"
    "def epoch():\n"
    "    perm = torch.randperm(N)\n"
    "    t0 = time.perf_counter(); c0 = time.process_time()\n"
    "    for s in range(0, N, B):\n"
    "        i = perm[s:s + B]\n"
    "        opt.zero_grad(set_to_none=True)\n"
    "        lf(m(X[i]), y[i]).backward(); opt.step()\n"
    "    return time.perf_counter() - t0, time.process_time() - c0\n"
    "epoch()\n"
    "r = [epoch() for _ in range(%d)]\n"
    "print('subject_s', statistics.median([a for a, b in r]))\n"
    "print('subject_cpu_s', statistics.median([b for a, b in r]))\n"
    "e = nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 256),"
    " nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 256),"
    " nn.ReLU(), nn.Linear(256, 2))\n"
    "opt = torch.optim.Adam(e.parameters(), lr=1e-3)\n"
    "x = torch.randn(1000, 128); t = torch.randn(1000, 2)\n"
    "for k in range(%d):\n"
    "    if k == 5: t0 = time.perf_counter()\n"
    "    opt.zero_grad(set_to_none=True)\n"
    "    ((e(x) - t) ** 2).mean().backward(); opt.step()\n"
    "print('encoder_sps', (%d - 5) * 1000 / (time.perf_counter() - t0))\n";

static int run_torch(int threads, int epochs, int steps, double *subject_s,
                     double *subject_cpu_s, double *encoder_sps) {
  char script[4096], cmd[64];
  snprintf(script, sizeof script, torch_script, threads, epochs, steps + 5,
           steps + 5);
  const char *path = "/tmp/tardis_bench_nn_torch.py";
  FILE *f = fopen(path, "w");
  if (!f)
    return -1;
  fputs(script, f);
  fclose(f);
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s", path);
  FILE *p = popen(cmd, "r");
  if (!p)
    return -1;
  char line[256];
  int got = 0;
  while (fgets(line, sizeof line, p)) {
    got += sscanf(line, "subject_s %lf", subject_s) == 1;
    got += sscanf(line, "subject_cpu_s %lf", subject_cpu_s) == 1;
    got += sscanf(line, "encoder_sps %lf", encoder_sps) == 1;
  }
  int rc = pclose(p);
  remove(path);
  return rc == 0 && got == 3 ? 0 : -1;
}

/* ---- the CNN ------------------------------------------------------------- */

static const td_layer_spec cnn_layers[] = {
    {.kind = TD_LAYER_CONV,
     .out = 32,
     .kernel = 3,
     .pad = 1,
     .act = TD_ACT_RELU},
    {.kind = TD_LAYER_MAXPOOL, .kernel = 2},
    {.kind = TD_LAYER_CONV,
     .out = 64,
     .kernel = 3,
     .pad = 1,
     .act = TD_ACT_RELU},
    {.kind = TD_LAYER_MAXPOOL, .kernel = 2},
    {.kind = TD_LAYER_DENSE, .out = 128, .act = TD_ACT_RELU},
    {.kind = TD_LAYER_DENSE, .out = 10}};
#define CNN_LAYERS 6
#define CNN_B 128
#define CNN_SHARDS_MAX 16

typedef struct {
  td_net *net, *rep[CNN_SHARDS_MAX];
  td_net_ws *rws[CNN_SHARDS_MAX];
  float *x, *dl[CNN_SHARDS_MAX];
  int32_t *y;
  int shards;
} cnn_ctx;

/* One replica's slice of the batch, as src/train/trainer.c runs it. */
static void cnn_shard_cb(void *ctx, int64_t begin, int64_t end, int tid) {
  cnn_ctx *c = ctx;
  (void)tid;
  for (int64_t j = begin; j < end; j++) {
    int r0 = (int)(CNN_B * j / c->shards),
        r1 = (int)(CNN_B * (j + 1) / c->shards);
    td_net_zero_grad(c->rep[j]);
    const float *lg =
        td_net_forward(c->rep[j], c->rws[j], c->x + (size_t)r0 * 784, r1 - r0);
    td_softmax_xent(lg, c->y + r0, r1 - r0, 10, c->dl[j], NULL);
    td_net_backward(c->rep[j], c->rws[j], c->dl[j], r1 - r0, NULL);
  }
}

/* Seconds (wall and cpu) per training step of batch 128 split over
 * `shards` replicas, median of `reps` runs of 20 steps. */
static double bench_cnn_at(int shards, int reps, double *cpu_s) {
  cnn_ctx c = {.shards = shards};
  td_rng r;
  td_rng_seed(&r, 3);
  c.net = td_net_new_layers(1, 28, 28, CNN_LAYERS, cnn_layers);
  td_net_init(c.net, &r);
  c.x = malloc(sizeof(float) * CNN_B * 784);
  c.y = malloc(sizeof(int32_t) * CNN_B);
  for (int i = 0; i < CNN_B * 784; i++)
    c.x[i] = td_rng_uniform(&r);
  for (int i = 0; i < CNN_B; i++)
    c.y[i] = (int32_t)td_rng_below(&r, 10);
  for (int j = 0; j < shards; j++) {
    c.rep[j] = td_net_replica(c.net);
    c.rws[j] = td_net_ws_new(c.rep[j], CNN_B / shards + 1);
    c.dl[j] = malloc(sizeof(float) * CNN_B * 10);
  }
  size_t np = td_net_n_params(c.net);
  td_optim *opt = td_optim_sgd(np, 0.01f, 0.9f, 0.0f);
  double t[16], cs[16];
  td_blas_single_begin();
  for (int k = -1; k < reps; k++) { /* one warm-up run */
    double t0 = td_now(), c0 = cpu_now();
    for (int s = 0; s < 20; s++) {
      if (shards == 1)
        cnn_shard_cb(&c, 0, 1, 0);
      else
        td_parallel_for(shards, 1, cnn_shard_cb, &c);
      float *g = td_net_grads(c.net);
      memcpy(g, td_net_grads(c.rep[0]), np * sizeof *g);
      for (int j = 1; j < shards; j++)
        for (size_t i = 0; i < np; i++)
          g[i] += td_net_grads(c.rep[j])[i];
      td_optim_step(opt, td_net_params(c.net), g);
    }
    if (k >= 0) {
      t[k] = (td_now() - t0) / 20;
      cs[k] = (cpu_now() - c0) / 20;
    }
  }
  td_blas_single_end();
  *cpu_s = median(cs, reps);
  for (int j = 0; j < shards; j++) {
    td_net_free(c.rep[j]);
    td_net_ws_free(c.rws[j]);
    free(c.dl[j]);
  }
  td_optim_free(opt);
  td_net_free(c.net);
  free(c.x);
  free(c.y);
  return median(t, reps);
}

static const char *torch_cnn_script =
    "import time, statistics, torch, torch.nn as nn\n"
    "torch.set_num_threads(%d); torch.manual_seed(0)\n"
    "m = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),"
    " nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),"
    " nn.MaxPool2d(2), nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(),"
    " nn.Linear(128, 10))\n"
    "opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)\n"
    "x = torch.rand(128, 1, 28, 28); y = torch.randint(0, 10, (128,))\n"
    "def run():\n"
    "    t0 = time.perf_counter(); c0 = time.process_time()\n"
    "    for _ in range(20):\n"
    "        opt.zero_grad(set_to_none=True)\n"
    "        nn.functional.cross_entropy(m(x), y).backward(); opt.step()\n"
    "    return (time.perf_counter() - t0) / 20, (time.process_time() - c0) / "
    "20\n"
    "run()\n"
    "r = [run() for _ in range(%d)]\n"
    "print('cnn_s', statistics.median([a for a, b in r]))\n"
    "print('cnn_cpu_s', statistics.median([b for a, b in r]))\n";

static int run_torch_cnn(int threads, int reps, double *s, double *cpu) {
  char script[2048], cmd[64];
  snprintf(script, sizeof script, torch_cnn_script, threads, reps);
  const char *path = "/tmp/tardis_bench_nn_torch_cnn.py";
  FILE *f = fopen(path, "w");
  if (!f)
    return -1;
  fputs(script, f);
  fclose(f);
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s", path);
  FILE *p = popen(cmd, "r");
  if (!p)
    return -1;
  char line[256];
  int got = 0;
  while (fgets(line, sizeof line, p)) {
    got += sscanf(line, "cnn_s %lf", s) == 1;
    got += sscanf(line, "cnn_cpu_s %lf", cpu) == 1;
  }
  int rc = pclose(p);
  remove(path);
  return rc == 0 && got == 2 ? 0 : -1;
}

/* The recording's forward pass (eval mode, every sample) per stage, one
 * thread, CPU time: the inference path (td_net_infer, what the recorder
 * runs) and the plain forward pass (td_net_predict) on nets made of the
 * CNN's first 2, 4, 5 and 6 layers; a stage's cost is the difference to the
 * previous prefix. The eight passes run in turn, seven rounds, and each
 * keeps its best round (a loaded machine inflates some rounds); in
 * microseconds per sample over n random samples. Returns the whole net's
 * inference time. */
static double bench_record_stages(int n) {
  static const char *const stage[4] = {
      "conv 3x3x32 + ReLU + pool", "conv 3x3x64 + ReLU + pool",
      "dense 3136-128 + ReLU (repr)", "dense 128-10 (head)"};
  static const int prefix[4] = {2, 4, 5, 6};
  td_rng r;
  td_rng_seed(&r, 5);
  float *x = malloc(sizeof(float) * (size_t)n * 784),
        *out = malloc(sizeof(float) * (size_t)n * 6272);
  for (size_t i = 0; i < (size_t)n * 784; i++)
    x[i] = td_rng_uniform(&r);
  td_net *net[4];
  td_net_infer *inf[4];
  double best[4][2];
  for (int k = 0; k < 4; k++) {
    net[k] = td_net_new_layers(1, 28, 28, prefix[k], cnn_layers);
    td_net_init(net[k], &r);
    inf[k] = td_net_infer_new(net[k]);
    best[k][0] = best[k][1] = 1e30;
  }
  for (int rep = -1; rep < 7; rep++) /* one warm-up round */
    for (int k = 0; k < 4; k++)
      for (int path = 0; path < 2; path++) {
        double c0 = cpu_now();
        int rc = path == 0 ? td_net_infer_run(inf[k], x, n, out, -1, NULL)
                           : td_net_predict(net[k], x, n, out, -1, NULL);
        double c = (cpu_now() - c0) / n * 1e6;
        if (rc != TD_OK) {
          fprintf(stderr, "bench_nn: out of memory\n");
          exit(1);
        }
        if (rep >= 0 && c < best[k][path])
          best[k][path] = c;
      }
  printf("  recording forward pass, 1 thread, CPU us/sample (best of 7, %d "
         "samples):\n  %-30s %9s %9s\n",
         n, "stage", "infer", "predict");
  for (int k = 0; k < 4; k++) {
    printf("  %-30s %9.1f %9.1f\n", stage[k],
           best[k][0] - (k ? best[k - 1][0] : 0),
           best[k][1] - (k ? best[k - 1][1] : 0));
    td_net_infer_free(inf[k]);
    td_net_free(net[k]);
  }
  printf("  %-30s %9.1f %9.1f\n", "whole net", best[3][0], best[3][1]);
  free(x);
  free(out);
  return best[3][0];
}

static int bench_cnn(int reps, int torch) {
  printf("CNN conv3x3x32-relu-maxpool2-conv3x3x64-relu-maxpool2-dense128-"
         "relu-dense10 on 1x28x28, batch 128, SGD momentum:\n");
  for (int t = 1; t <= 2; t++) {
    td_set_threads(t);
    double cpu, sec = bench_cnn_at(t, reps, &cpu);
    printf("  tardis, %d thread%s: %.2f ms/batch wall, %.2f ms cpu "
           "(%.2f s per 469-batch epoch)\n",
           t, t > 1 ? "s (2 replicas)" : "", sec * 1e3, cpu * 1e3, sec * 469);
    if (t == 1) {
      /* the recording's share of an epoch's CPU time: 70,000 samples
       * evaluated against 60,000 trained, both on one thread */
      double inf_us = bench_record_stages(2048);
      double train_us = cpu / CNN_B * 1e6;
      printf("  recording share of a 1-thread epoch (CPU): 70,000 x %.1f us / "
             "(60,000 x %.1f us) = %.1f %% (target <= 10 %%)\n",
             inf_us, train_us, 100.0 * 70000 * inf_us / (60000 * train_us));
    }
    if (!torch)
      continue;
    double ts, tcpu;
    if (run_torch_cnn(t, reps, &ts, &tcpu) != 0) {
      printf("torch: could not run /usr/bin/python3 with torch\n");
      return 1;
    }
    printf("  torch,  %d thread%s: %.2f ms/batch wall, %.2f ms cpu; "
           "time tardis/torch %.2fx wall, %.2fx cpu\n",
           t, t > 1 ? "s" : "", ts * 1e3, tcpu * 1e3, sec / ts, cpu / tcpu);
  }
  return 0;
}

int main(int argc, char **argv) {
  int threads = 0, epochs = 3, torch = 0, steps = 60, cnn = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--model") && i + 1 < argc &&
        (!strcmp(argv[i + 1], "cnn") || !strcmp(argv[i + 1], "mlp")))
      cnn = !strcmp(argv[++i], "cnn");
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
      threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--epochs") && i + 1 < argc)
      epochs = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--torch"))
      torch = 1;
    else {
      fprintf(stderr, "usage: bench_nn [--model mlp|cnn] [--threads N] "
                      "[--epochs N] [--torch]\n");
      return 2;
    }
  }
  if (epochs < 1 || epochs > 16)
    epochs = 3;
  if (cnn)
    return bench_cnn(epochs < 3 ? 3 : epochs, torch);
  td_set_threads(threads);
  printf("threads %d\n", td_threads());
  printf(
      "subject MLP 784-256-128-10, batch 128, SGD momentum, 60000 samples:\n");
  double pred_sps, cpu;
  double sec = bench_subject(epochs, &pred_sps, &cpu);
  printf("  tardis: %.3f s/epoch (median of %d), %.0f samples/s; cpu %.3f "
         "s/epoch\n",
         sec, epochs, 60000 / sec, cpu);
  printf("  inference with representation tap: %.0f samples/s\n", pred_sps);
  printf("encoder 128-256x4-2, batch 1000, Adam:\n");
  double enc = bench_encoder(steps);
  printf("  tardis: %.0f samples/s\n", enc);
  if (torch) {
    double ts, tcpu, tenc;
    if (run_torch(td_threads(), epochs, steps, &ts, &tcpu, &tenc) != 0) {
      printf("torch: could not run /usr/bin/python3 with torch\n");
      return 1;
    }
    printf("torch (same workloads, same thread count, same invocation):\n");
    printf("  subject: %.3f s/epoch, %.0f samples/s, cpu %.3f s/epoch; "
           "tardis/torch speed-up %.2fx wall, %.2fx cpu\n",
           ts, 60000 / ts, tcpu, ts / sec, tcpu / cpu);
    printf("  encoder: %.0f samples/s; tardis/torch speed-up %.2fx\n", tenc,
           enc / tenc);
  }
  return 0;
}
