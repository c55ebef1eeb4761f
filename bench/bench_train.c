/* bench_train: training throughput of the built-in MLP (784-256-128-10,
 * batch 128, SGD momentum) in tardis and in PyTorch side by side, and the
 * cost of recording every epoch. With --model cnn, the same for the built-in
 * CNN (docs/engine.md) against the same net in PyTorch (/usr/bin/python3),
 * same data, batch, optimizer and threads, with the test accuracy of each.
 *
 *   bench_train [--epochs 5] [--peers ../shared/peers] [--no-peer]
 *               [--threads T] [--out DIR]
 *   bench_train --model cnn [--batchnorm] [--limit N] [--epochs 2]
 *               [--threads T] [--no-peer] [--out DIR]
 */
#define _DEFAULT_SOURCE /* getloadavg */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "tardis/fsutil.h"
#include "tardis/train.h"

typedef struct bench_opts {
  int epochs, threads, batchnorm;
  int64_t limit;
  const char *model;
} bench_opts;

/* CPU seconds of the process (user + system, every thread). */
static double cpu_seconds(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return (double)u.ru_utime.tv_sec + 1e-6 * (double)u.ru_utime.tv_usec +
         (double)u.ru_stime.tv_sec + 1e-6 * (double)u.ru_stime.tv_usec;
}

static double run_tardis_model(const bench_opts *b, const char *out,
                               td_train_result *r, double *cpu) {
  td_train_opts o;
  td_train_opts_default(&o);
  o.epochs = b->epochs;
  o.threads = b->threads;
  o.model = b->model;
  o.batchnorm = b->batchnorm;
  o.limit = b->limit;
  if (!strcmp(b->model, "mlp"))
    o.noise = 0.1;
  o.out = out;
  o.force = 1;
  td_err err;
  double c0 = cpu_seconds();
  if (td_train(&o, r, &err) != TD_OK) {
    fprintf(stderr, "bench_train: %s\n", err.msg);
    exit(1);
  }
  if (cpu)
    *cpu = (cpu_seconds() - c0) / b->epochs;
  return r->total_seconds / b->epochs;
}

/* The CNN in PyTorch on the same Fashion-MNIST slice: per-epoch wall and
 * CPU time (training only, the data already in memory) and the final test
 * accuracy. */
static const char *torch_cnn_script =
    "import gzip, struct, time, statistics, numpy as np, torch, torch.nn as "
    "nn\n"
    "torch.set_num_threads(%d); torch.manual_seed(0)\n"
    "def idx(p):\n"
    "    d = gzip.open(p).read(); nd = d[3]\n"
    "    dims = struct.unpack('>' + 'I' * nd, d[4:4 + 4 * nd])\n"
    "    return np.frombuffer(d, np.uint8, offset=4 + 4 * nd).reshape(dims)\n"
    "R = '/usr/share/datasets/fashion-mnist/'\n"
    "def load(p, n):\n"
    "    x = idx(R + p + '-images-idx3-ubyte.gz')[:n].astype(np.float32) / "
    "255\n"
    "    y = idx(R + p + '-labels-idx1-ubyte.gz')[:n].astype(np.int64)\n"
    "    return torch.from_numpy(x).reshape(-1, 1, 28, 28), "
    "torch.from_numpy(y)\n"
    "N = %lld; X, Y = load('train', N); Xt, Yt = load('t10k', max(N // 6, "
    "1))\n"
    "bn = %d\n"
    "def block(i, o):\n"
    "    L = [nn.Conv2d(i, o, 3, padding=1)]\n"
    "    L += [nn.BatchNorm2d(o)] if bn else []\n"
    "    return L + [nn.ReLU(), nn.MaxPool2d(2)]\n"
    "m = nn.Sequential(*block(1, 32), *block(32, 64), nn.Flatten(),"
    " nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))\n"
    "opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)\n"
    "ts = []\n"
    "for ep in range(%d):\n"
    "    m.train(); perm = torch.randperm(len(X))\n"
    "    t0 = time.perf_counter(); c0 = time.process_time()\n"
    "    for s in range(0, len(X), 128):\n"
    "        i = perm[s:s + 128]\n"
    "        opt.zero_grad(set_to_none=True)\n"
    "        nn.functional.cross_entropy(m(X[i]), Y[i]).backward(); "
    "opt.step()\n"
    "    ts.append((time.perf_counter() - t0, time.process_time() - c0))\n"
    "m.eval()\n"
    "with torch.no_grad():\n"
    "    acc = (m(Xt).argmax(1) == Yt).float().mean().item()\n"
    "print('torch %%s epoch_s %%.3f cpu_s %%.3f test_acc %%.4f' %% "
    "(torch.__version__, statistics.median([a for a, b in ts]), "
    "statistics.median([b for a, b in ts]), acc))\n";

/* Runs the script; fills wall and CPU seconds per epoch and the test
 * accuracy; -1 when PyTorch did not run. */
static int run_torch_cnn(const bench_opts *b, double *s, double *cpu,
                         double *acc) {
  char script[4096], cmd[128];
  snprintf(script, sizeof script, torch_cnn_script,
           b->threads > 0 ? b->threads : 2,
           (long long)(b->limit ? b->limit : 60000), b->batchnorm, b->epochs);
  const char *path = "/tmp/tardis_bench_train_cnn.py";
  FILE *f = fopen(path, "w");
  if (!f)
    return -1;
  fputs(script, f);
  fclose(f);
  snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=%d /usr/bin/python3 %s 2>&1",
           b->threads > 0 ? b->threads : 2, path);
  FILE *p = popen(cmd, "r");
  if (!p)
    return -1;
  char line[1024];
  int found = 0;
  while (fgets(line, sizeof line, p)) {
    const char *q = strstr(line, "epoch_s ");
    if (q && sscanf(q, "epoch_s %lf cpu_s %lf test_acc %lf", s, cpu, acc) == 3)
      found = 1;
    fputs("  torch| ", stdout);
    fputs(line, stdout);
  }
  pclose(p);
  return found ? 0 : -1;
}

/* The recording's forward pass against the training it follows, per epoch,
 * three ways in one invocation: through td_net_predict (TD_RECORD_PLAIN=1,
 * the path before the inference path existed), through the inference path
 * in the foreground (TD_RECORD_OVERLAP=0), and overlapped with the next
 * epoch (the default). The CPU share (CPU time of the forward passes over
 * that of the training loops) says what the pass costs; the wall time the
 * trainer was blocked (total minus training loops) says what it cost the
 * run. Wall figures are noisy on a shared machine. */
static void bench_recording(const bench_opts *b, const char *out) {
  static const char *const name[3] = {"plain td_net_predict",
                                      "infer, foreground", "infer, overlapped"};
  static const char *const plain[3] = {"1", "0", "0"}, *const ov[3] = {"0", "0",
                                                                       "1"};
  double load[3] = {0};
  for (int k = 0; k < 3; k++) {
    td_train_result r;
    setenv("TD_RECORD_PLAIN", plain[k], 1);
    setenv("TD_RECORD_OVERLAP", ov[k], 1);
    double t = run_tardis_model(b, out, &r, NULL);
    /* what the trainer waited for: the forward passes it ran itself and
     * the last epoch's recording */
    double blocked = r.total_seconds - r.train_seconds;
    int between = b->epochs > 1 ? b->epochs - 1 : 1;
    printf("recording, %-22s forward CPU %.3f s/epoch = %.1f %% of "
           "training CPU (%.3f s/epoch; target <= 10 %%)\n"
           "  trainer blocked between epochs %.3f s/epoch = %.1f %% of "
           "training wall (%.3f s/epoch); in all, last epoch included, "
           "%.3f s/epoch = %.1f %%; total %.3f s/epoch\n",
           name[k], r.record_eval_cpu_seconds / b->epochs,
           100.0 * r.record_eval_cpu_seconds / r.train_cpu_seconds,
           r.train_cpu_seconds / b->epochs, r.record_blocked_seconds / between,
           100.0 * r.record_blocked_seconds / between /
               (r.train_seconds / b->epochs),
           r.train_seconds / b->epochs, blocked / b->epochs,
           100.0 * blocked / r.train_seconds, t);
    td_remove_tree_best_effort(out);
  }
  unsetenv("TD_RECORD_PLAIN");
  unsetenv("TD_RECORD_OVERLAP");
  if (getloadavg(load, 3) > 0)
    printf("load average at the end: %.2f %.2f %.2f\n", load[0], load[1],
           load[2]);
}

/* --model cnn: tardis without and with recording, then PyTorch. */
static int bench_cnn(const bench_opts *b, int peer, const char *out) {
  td_train_result plain;
  double cpu_plain;
  int64_t n = b->limit ? b->limit : 60000;
  printf("CNN%s (docs/engine.md), Fashion-MNIST first %lld, batch 128, SGD "
         "m=0.9 lr 0.01, %d epochs, %d threads\n",
         b->batchnorm ? " + batchnorm" : "", (long long)n, b->epochs,
         b->threads);
  run_tardis_model(b, NULL, &plain, &cpu_plain);
  printf("tardis, no recording:     %.3f s/epoch (CPU %.3f s/epoch, %.0f "
         "samples/s), test acc %.4f\n",
         plain.train_seconds / b->epochs, cpu_plain,
         (double)n * b->epochs / plain.train_seconds, plain.final_test_acc);
  bench_recording(b, out);
  double ts, tc, acc;
  if (peer && run_torch_cnn(b, &ts, &tc, &acc) == 0)
    printf("PyTorch:                  %.3f s/epoch (CPU %.3f s/epoch), test "
           "acc %.4f\n"
           "ratio tardis/PyTorch:     %.2f wall, %.2f CPU (below 1 = tardis "
           "faster)\n",
           ts, tc, acc, plain.train_seconds / b->epochs / ts, cpu_plain / tc);
  else if (peer)
    printf("PyTorch did not run (is python3-torch installed?)\n");
  return 0;
}

/* Runs the peer script and returns its median epoch time, or -1. */
static double run_torch(const char *peers, int epochs) {
  char cmd[8192];
  snprintf(cmd, sizeof cmd,
           "cd '%s' && OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=1 "
           "/usr/bin/python3 bench_torch_throughput.py --repeats %d 2>&1",
           peers, epochs);
  FILE *p = popen(cmd, "r");
  if (!p)
    return -1;
  char line[1024];
  double med = -1;
  while (fgets(line, sizeof line, p)) {
    const char *m = strstr(line, "epoch_time_s min=");
    if (m) {
      const char *q = strstr(m, "median=");
      if (q)
        med = atof(q + 7);
    }
    fputs("  torch| ", stdout);
    fputs(line, stdout);
  }
  pclose(p);
  return med;
}

int main(int argc, char **argv) {
  int epochs = 5, threads = 0, peer = 1, epochs_given = 0;
  const char *peers = "../shared/peers", *out = "/tmp/tardis-bench-train";
  bench_opts cnn = {2, 2, 0, 0, "mlp"};
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--epochs") && i + 1 < argc)
      epochs = atoi(argv[++i]), epochs_given = 1;
    else if (!strcmp(argv[i], "--model") && i + 1 < argc)
      cnn.model = argv[++i];
    else if (!strcmp(argv[i], "--batchnorm"))
      cnn.batchnorm = 1;
    else if (!strcmp(argv[i], "--limit") && i + 1 < argc)
      cnn.limit = atoll(argv[++i]);
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
      threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--peers") && i + 1 < argc)
      peers = argv[++i];
    else if (!strcmp(argv[i], "--out") && i + 1 < argc)
      out = argv[++i];
    else if (!strcmp(argv[i], "--no-peer"))
      peer = 0;
    else {
      fprintf(stderr, "usage: bench_train [--model mlp|cnn] [--batchnorm] "
                      "[--limit N] [--epochs N] [--threads T] [--peers DIR] "
                      "[--no-peer] [--out DIR]\n");
      return 2;
    }
  }
  if (!strcmp(cnn.model, "cnn")) {
    cnn.epochs = epochs_given ? epochs : 2;
    cnn.threads = threads > 0 ? threads : 2;
    return bench_cnn(&cnn, peer, out);
  }
  td_train_result plain;
  bench_opts mlp = {epochs, threads, 0, 0, "mlp"};
  printf("MLP 784-256-128-10, Fashion-MNIST 60k, batch 128, SGD m=0.9, "
         "%d epochs\n",
         epochs);
  double cpu_plain;
  double t_plain = run_tardis_model(&mlp, NULL, &plain, &cpu_plain);
  printf("tardis, no recording:     %.3f s/epoch  (CPU %.3f s/epoch, %.0f "
         "samples/s), test acc %.4f\n",
         t_plain, plain.train_cpu_seconds / epochs, 60000.0 / t_plain,
         plain.final_test_acc);
  bench_recording(&mlp, out);
  if (peer) {
    double t_torch = run_torch(peers, epochs);
    if (t_torch > 0)
      printf("PyTorch (median):         %.3f s/epoch\n"
             "ratio tardis/PyTorch:     %.2f (below 1 = tardis faster)\n",
             t_torch, t_plain / t_torch);
    else
      printf("PyTorch peer did not run (is python3-torch installed? "
             "--peers %s)\n",
             peers);
  }
  return 0;
}
