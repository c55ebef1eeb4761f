/* bench_train: training throughput of the built-in MLP (784-256-128-10,
 * batch 128, SGD momentum) in tardis and in PyTorch side by side, and the
 * cost of recording every epoch.
 *
 *   bench_train [--epochs 5] [--peers ../shared/peers] [--no-peer]
 *               [--threads T] [--out DIR]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tardis/fsutil.h"
#include "tardis/train.h"

static double run_tardis(int epochs, int threads, const char *out,
                         td_train_result *r) {
  td_train_opts o;
  td_train_opts_default(&o);
  o.epochs = epochs;
  o.threads = threads;
  o.noise = 0.1;
  o.out = out;
  o.force = 1;
  td_err err;
  if (td_train(&o, r, &err) != TD_OK) {
    fprintf(stderr, "bench_train: %s\n", err.msg);
    exit(1);
  }
  return r->total_seconds / epochs;
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
  int epochs = 5, threads = 0, peer = 1;
  const char *peers = "../shared/peers", *out = "/tmp/tardis-bench-train";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--epochs") && i + 1 < argc)
      epochs = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
      threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--peers") && i + 1 < argc)
      peers = argv[++i];
    else if (!strcmp(argv[i], "--out") && i + 1 < argc)
      out = argv[++i];
    else if (!strcmp(argv[i], "--no-peer"))
      peer = 0;
    else {
      fprintf(stderr, "usage: bench_train [--epochs N] [--threads T] "
                      "[--peers DIR] [--no-peer] [--out DIR]\n");
      return 2;
    }
  }
  td_train_result plain, rec;
  printf("MLP 784-256-128-10, Fashion-MNIST 60k, batch 128, SGD m=0.9, "
         "%d epochs\n",
         epochs);
  double t_plain = run_tardis(epochs, threads, NULL, &plain);
  printf("tardis, no recording:     %.3f s/epoch  (%.0f samples/s), test acc "
         "%.4f\n",
         t_plain, 60000.0 / t_plain, plain.final_test_acc);
  double t_rec = run_tardis(epochs, threads, out, &rec);
  printf("tardis, recording epochs: %.3f s/epoch  (forward passes %.3f "
         "s/epoch; writer thread %.3f s/epoch, overlapped)\n",
         t_rec, rec.record_eval_seconds / epochs, rec.record_seconds / epochs);
  printf("recording cost: %+.1f %% of an epoch\n",
         100.0 * (t_rec - t_plain) / t_plain);
  td_remove_tree_best_effort(out);
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
