/* tardis project / tardis eval: 2-D projection of a run and its quality. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "tardis/evaluate.h"
#include "tardis/parallel.h"
#include "tardis/project.h"
#include "tardis/vismodel.h"

static int parse_range(const char *s, int *a, int *b) {
  /* "A:B", "A:", ":B" or "A" */
  char *end;
  const char *colon = strchr(s, ':');
  *a = *b = 0;
  if (!colon) {
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end || v < 0)
      return -1;
    *a = *b = (int)v;
    return 0;
  }
  if (colon != s) {
    long v = strtol(s, &end, 10);
    if (end != colon || v < 0)
      return -1;
    *a = (int)v;
  }
  if (colon[1]) {
    long v = strtol(colon + 1, &end, 10);
    if (*end || v < 0)
      return -1;
    *b = (int)v;
  }
  return 0;
}

typedef struct {
  int tty;
} pctx;

static void on_progress(const td_project_progress *p, void *ctx) {
  pctx *c = ctx;
  if (!strcmp(p->stage, "done")) {
    fprintf(stderr, "%sprojected epoch %d (%d/%d) in %.1f s\n",
            c->tty ? "\r\033[K" : "", p->epoch, p->index + 1, p->count,
            p->seconds);
  } else if (c->tty) {
    fprintf(stderr, "\r\033[Kepoch %d (%d/%d): %s...", p->epoch, p->index + 1,
            p->count, p->stage);
  }
}

static void project_usage(FILE *f) {
  fprintf(f,
          "usage: tardis project RUN [options]\n"
          "\n"
          "Projects every recorded epoch to an invertible 2-D canvas\n"
          "(DeepVisualInsight) into RUN/vis/<method>/. Resumable: epochs\n"
          "already projected are skipped.\n"
          "\n"
          "  --method dvi|pca     dvi (default): encoder/decoder networks;\n"
          "                       pca: the linear baseline\n"
          "  --epochs A:B         only epochs A..B (either side may be open)\n"
          "  --temporal none|dvi|memory\n"
          "                       temporal anchor between epochs (default "
          "dvi)\n"
          "  --no-boundary        skip boundary samples\n"
          "  --boundary-space S   repr (default): mix representations,\n"
          "                       judged by the head; input: mix raw inputs\n"
          "                       through the full model (runs of tardis\n"
          "                       train, which keep a checkpoint per epoch)\n"
          "  --res R              territory grid resolution (default 256)\n"
          "  --seed S             default 1\n"
          "  --threads T          default: all CPUs\n"
          "  --force              redo epochs that are already projected\n"
          "  --hogwild            umap-learn's lock-free layout,\n"
          "                       reproducible only on one thread\n");
}

int td_cmd_project(int argc, char **argv) {
  td_project_opts o;
  td_project_opts_default(&o);
  td_cli_proj_env(&o);
  int threads = 0;
  enum { O_NO_BOUNDARY = 256, O_TEMPORAL, O_RES, O_BSPACE, O_HOGWILD };
  static const struct option opts[] = {
      {"method", required_argument, 0, 'm'},
      {"epochs", required_argument, 0, 'e'},
      {"temporal", required_argument, 0, O_TEMPORAL},
      {"no-boundary", no_argument, 0, O_NO_BOUNDARY},
      {"boundary-space", required_argument, 0, O_BSPACE},
      {"res", required_argument, 0, O_RES},
      {"seed", required_argument, 0, 's'},
      {"threads", required_argument, 0, 't'},
      {"force", no_argument, 0, 'f'},
      {"hogwild", no_argument, 0, O_HOGWILD},
      {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0}};
  optind = 1;
  int ch;
  while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (ch) {
    case 'm':
      o.method = optarg;
      break;
    case 'e':
      if (parse_range(optarg, &o.epoch_from, &o.epoch_to)) {
        fprintf(stderr, "tardis project: invalid --epochs '%s' (A:B)\n",
                optarg);
        return 2;
      }
      break;
    case O_TEMPORAL:
      if (!strcmp(optarg, "none"))
        o.temporal = TD_TEMPORAL_NONE;
      else if (!strcmp(optarg, "dvi"))
        o.temporal = TD_TEMPORAL_DVI;
      else if (!strcmp(optarg, "memory"))
        o.temporal = TD_TEMPORAL_MEMORY;
      else {
        fprintf(stderr, "tardis project: --temporal must be none, dvi or "
                        "memory\n");
        return 2;
      }
      break;
    case O_NO_BOUNDARY:
      o.boundary = 0;
      break;
    case O_HOGWILD:
      o.hogwild = 1;
      break;
    case O_BSPACE:
      if (!strcmp(optarg, "input"))
        o.boundary_input = 1;
      else if (!strcmp(optarg, "repr"))
        o.boundary_input = 0;
      else {
        fprintf(stderr, "tardis project: --boundary-space must be repr or "
                        "input\n");
        return 2;
      }
      break;
    case O_RES:
      o.territory_res = atoi(optarg);
      if (o.territory_res < 8 || o.territory_res > 4096) {
        fprintf(stderr, "tardis project: --res must be in 8..4096\n");
        return 2;
      }
      break;
    case 's':
      o.seed = strtoull(optarg, NULL, 10);
      break;
    case 't':
      threads = atoi(optarg);
      break;
    case 'f':
      o.force = 1;
      break;
    case 'h':
      project_usage(stdout);
      return 0;
    default:
      project_usage(stderr);
      return 2;
    }
  }
  if (optind + 1 != argc) {
    project_usage(stderr);
    return 2;
  }
  if (strcmp(o.method, "dvi") && strcmp(o.method, "pca")) {
    fprintf(stderr, "tardis project: --method must be dvi or pca\n");
    return 2;
  }
  td_set_threads(threads);
  td_err err = {0};
  td_run *run;
  if (td_run_open(argv[optind], &run, &err) != TD_OK) {
    fprintf(stderr, "tardis: error: %s\n", err.msg);
    return 1;
  }
  pctx pc = {isatty(2)};
  o.progress = on_progress;
  o.progress_ctx = &pc;
  td_project_summary s;
  int rc = td_project(run, &o, &s, &err);
  td_run_close(run);
  if (rc != TD_OK) {
    fprintf(stderr, "%stardis: error: %s\n", pc.tty ? "\r\033[K" : "", err.msg);
    return 1;
  }
  printf("projected %d epoch%s (%d already done) with %s in %.1f s",
         s.projected, s.projected == 1 ? "" : "s", s.skipped, o.method,
         s.seconds);
  if (s.projected)
    printf(": first %.1f s, later at most %.1f s", s.first_seconds,
           s.max_later_seconds);
  printf("\n");
  return 0;
}

static void eval_usage(FILE *f) {
  fprintf(f, "usage: tardis eval RUN [--method dvi|pca] [--json] "
             "[--threads T]\n"
             "\n"
             "Measures the projection's quality per epoch: neighbour\n"
             "preservation nn@k (k = 10, 15, 20; train and test), boundary\n"
             "neighbour preservation, prediction preservation (ppr) and\n"
             "confidence difference of the inverse, boundary samples kept on\n"
             "boundaries, temporal correlation, and the projection time.\n"
             "Writes RUN/vis/<method>/metrics.json.\n");
}

static void eval_progress(int i, int n, void *ctx) {
  if (*(int *)ctx)
    fprintf(stderr, "\r\033[Kevaluating epoch %d/%d...", i + 1, n);
}

static void print_num(double v, const char *fmt) {
  if (isfinite(v))
    printf(fmt, v);
  else
    printf("%*s", (int)strtol(fmt + 1, NULL, 10), "-");
}

int td_cmd_eval(int argc, char **argv) {
  const char *method = "dvi";
  int json = 0, threads = 0;
  static const struct option opts[] = {{"method", required_argument, 0, 'm'},
                                       {"json", no_argument, 0, 'j'},
                                       {"threads", required_argument, 0, 't'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  optind = 1;
  int ch;
  while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (ch) {
    case 'm':
      method = optarg;
      break;
    case 'j':
      json = 1;
      break;
    case 't':
      threads = atoi(optarg);
      break;
    case 'h':
      eval_usage(stdout);
      return 0;
    default:
      eval_usage(stderr);
      return 2;
    }
  }
  if (optind + 1 != argc) {
    eval_usage(stderr);
    return 2;
  }
  td_set_threads(threads);
  td_err err = {0};
  td_run *run;
  if (td_run_open(argv[optind], &run, &err) != TD_OK) {
    fprintf(stderr, "tardis: error: %s\n", err.msg);
    return 1;
  }
  int tty = isatty(2);
  td_eval_result r;
  int rc = td_evaluate(run, method, eval_progress, &tty, &r, &err);
  if (tty)
    fprintf(stderr, "\r\033[K");
  if (rc != TD_OK) {
    td_run_close(run);
    fprintf(stderr, "tardis: error: %s\n", err.msg);
    return 1;
  }
  if (json) {
    char path[4200];
    snprintf(path, sizeof path, "%s/vis/%s/metrics.json", td_run_dir(run),
             method);
    FILE *f = fopen(path, "r");
    int c;
    while (f && (c = fgetc(f)) != EOF)
      putchar(c);
    if (f)
      fclose(f);
    printf("\n");
  } else {
    printf("method %s, %d projected epochs\n\n", method, r.n_epochs);
    printf(" epoch  nn@10  nn@15  nn@20  test@15  bnd_nn@15    ppr  "
           "conf_diff  bnd_kept  seconds\n");
    for (int i = 0; i < r.n_epochs; i++) {
      const td_eval_epoch *e = &r.epochs[i];
      printf("%6d", e->epoch);
      for (int k = 0; k < TD_EVAL_NK; k++)
        print_num(e->nn_train[k], " %6.3f");
      print_num(e->nn_test[1], " %8.3f");
      print_num(e->boundary_nn15, " %10.3f");
      print_num(e->ppr, " %6.3f");
      print_num(e->inv_conf_diff, " %10.3f");
      print_num(e->boundary_kept, " %9.3f");
      print_num(e->proj_seconds, " %8.1f");
      printf("\n");
    }
    printf("\ntemporal_corr (train) ");
    print_num(r.temporal_corr_train, "%.3f");
    printf("   (test) ");
    print_num(r.temporal_corr_test, "%.3f");
    printf("   (more negative is better)\n");
  }
  td_eval_result_free(&r);
  td_run_close(run);
  return 0;
}
