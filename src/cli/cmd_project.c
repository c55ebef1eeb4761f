/* tardis project / tardis eval: 2-D projection of a run and its quality. */
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#ifdef TD_MPI
#include "cli/project_mpi.h"
#endif
#include "tardis/evaluate.h"
#include "tardis/fsutil.h"
#include "tardis/parallel.h"
#include "tardis/project.h"
#include "tardis/vismodel.h"

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

int td_cmd_project(int argc, char **argv) {
  td_project_opts o;
  td_project_opts_default(&o);
  td_cli_proj_env(&o);
  int threads = 0;
  const char *dir = NULL;
  static const char *const methods[] = {"dvi", "pca", NULL};
  static const char *const temporals[] = {"none", "dvi", "memory", NULL};
  static const int temporal_values[] = {TD_TEMPORAL_NONE, TD_TEMPORAL_DVI,
                                        TD_TEMPORAL_MEMORY};
  static const char *const spaces[] = {"repr", "input", NULL};
  static const char *const scales[] = {"auto", "on", "off", NULL};
  static const int scale_values[] = {-1, 1, 0};
  static const char *const places[] = {"knn", "encoder", "canvas", NULL};
  static const int place_values[] = {TD_SCALE_PLACE_KNN, TD_SCALE_PLACE_ENCODER,
                                     TD_SCALE_PLACE_CANVAS};
  int epochs[2] = {o.epoch_from, o.epoch_to};
  td_opt opts[] = {
      TD_OPT_CHOICE_STR("method", &o.method, methods,
                        "dvi (default): encoder/decoder networks;\n"
                        "pca: the linear baseline"),
      TD_OPT_RANGE("epochs", epochs, 1, "A:B",
                   "only epochs A..B (either side may be open)"),
      TD_OPT_CHOICE("temporal", &o.temporal, temporals, temporal_values,
                    "temporal anchor between epochs (default dvi)"),
      TD_OPT_UNFLAG("no-boundary", &o.boundary, "skip boundary samples"),
      {.name = "boundary-space",
       .kind = TD_ARG_CHOICE,
       .dst = &o.boundary_input,
       .choices = spaces,
       .meta = "S",
       .help = "repr (default): mix representations,\n"
               "judged by the head; input: mix raw inputs\n"
               "through the full model (runs of tardis\n"
               "train, which keep a checkpoint per epoch)"},
      TD_OPT_INT("res", &o.territory_res, 8, 4096, "R",
                 "territory grid resolution (default 256)"),
      TD_OPT_SEED("seed", &o.seed, "default 1"),
      TD_OPT_INT("threads", &threads, 0, TD_ARG_INF, "T", "default: all CPUs"),
      TD_OPT_FLAG("force", &o.force, "redo epochs that are already projected"),
      TD_OPT_FLAG("hogwild", &o.hogwild,
                  "umap-learn's lock-free layout,\n"
                  "reproducible only on one thread"),
      TD_OPT_CHOICE("scale", &o.scale, scales, scale_values,
                    "fit on a sample, place the rest (docs/scale.md):\n"
                    "auto (default: above 200,000 points), on, off"),
      TD_OPT_INT64("scale-sample", &o.scale_sample, 2, TD_ARG_INF, "S",
                   "sample size at scale (default: the\n"
                   "density rule, 20,000-100,000 points)"),
      TD_OPT_CHOICE("scale-place", &o.scale_place, places, place_values,
                    "placing the rest: knn (default: encoder,\n"
                    "then the nearest sample points, searched\n"
                    "in the sample's kNN graph), canvas (the\n"
                    "nearest among those near it on the canvas)\n"
                    "or encoder"),
      TD_OPT_END};
  const td_arg_pos pos[] = {{"RUN", &dir}, {0}};
  td_args_cmd cmd = {
      .name = "project",
      .usage = "project RUN [options]",
      .about = "Projects every recorded epoch to an invertible 2-D canvas\n"
               "(DeepVisualInsight) into RUN/vis/<method>/. Resumable: epochs\n"
               "already projected are skipped.",
      .opts = opts,
      .pos = pos};
  int status;
  if (!td_args_parse(&cmd, argc, argv, &status))
    return status;
  o.epoch_from = epochs[0];
  o.epoch_to = epochs[1];
  td_set_threads(threads);
  td_err err = {0};
  td_run *run;
  if (td_run_open(dir, &run, &err) != TD_OK) {
    fprintf(stderr, "tardis: error: %s\n", err.msg);
    return 1;
  }
  /* The scaled path trades quality for time (docs/scale.md): say so. */
  int64_t n_train = td_run_get_meta(run)->n_train;
  if (!strcmp(o.method, "dvi") &&
      (o.scale == 1 || (o.scale == -1 && n_train > TD_PROJECT_SCALE_AUTO_MIN)))
    fprintf(stderr,
            "tardis project: %" PRId64 " training points: fitting on a "
            "sample and placing the rest,\nfaster but a coarser picture "
            "(docs/scale.md; --scale off fits them all)\n",
            n_train);
  pctx pc = {isatty(2)};
  o.progress = on_progress;
  o.progress_ctx = &pc;
  td_project_summary s;
  int rank = 0, rc;
#ifdef TD_MPI
  if (td_cli_mpi_launched())
    rc = td_cli_project_mpi(run, &o, &s, &rank, &err);
  else
#endif
    rc = td_project(run, &o, &s, &err);
  td_run_close(run);
  if (rc != TD_OK) {
    fprintf(stderr, "%stardis: error: %s\n", pc.tty ? "\r\033[K" : "", err.msg);
    return 1;
  }
  if (rank != 0)
    return 0; /* rank 0 prints the summary of all processes */
  printf("projected %d epoch%s (%d already done) with %s in %.1f s",
         s.projected, s.projected == 1 ? "" : "s", s.skipped, o.method,
         s.seconds);
  if (s.projected)
    printf(": first %.1f s, later at most %.1f s", s.first_seconds,
           s.max_later_seconds);
  printf("\n");
  return 0;
}

static void eval_progress(int i, int n, void *ctx) {
  if (*(int *)ctx)
    fprintf(stderr, "\r\033[Kevaluating epoch %d/%d...", i + 1, n);
}

/* One column of the eval table: header, printf format of the value (its
 * width is the column's), and where the value sits in a td_eval_epoch. */
typedef struct {
  const char *head, *fmt;
  size_t off;
} eval_col;

#define EVAL_COL(h, f, field)                                                  \
  { h, f, offsetof(td_eval_epoch, field) }
static const eval_col eval_cols[] = {
    EVAL_COL("nn@10", "%6.3f", nn_train[0]),
    EVAL_COL("nn@15", "%6.3f", nn_train[1]),
    EVAL_COL("nn@20", "%6.3f", nn_train[2]),
    EVAL_COL("test@15", "%7.3f", nn_test[1]),
    EVAL_COL("bnd_nn@15", "%9.3f", boundary_nn15),
    EVAL_COL("ppr", "%6.3f", ppr),
    EVAL_COL("test_ppr", "%8.3f", ppr_test),
    EVAL_COL("conf_diff", "%9.3f", inv_conf_diff),
    EVAL_COL("bnd_kept", "%8.3f", boundary_kept),
    EVAL_COL("on_white", "%8.3f", on_boundary),
    EVAL_COL("terr_agree", "%10.3f", terr_agree),
    EVAL_COL("unsure", "%6.3f", unsure),
    EVAL_COL("seconds", "%7.1f", proj_seconds),
};
#define EVAL_NCOLS (sizeof eval_cols / sizeof eval_cols[0])

/* A value in its column's width, or "-" right-aligned in the same width
 * when it is not defined (no test split, no boundary samples, ...). */
static void print_num(double v, const char *fmt) {
  if (isfinite(v))
    printf(fmt, v);
  else
    printf("%*s", (int)strtol(fmt + 1, NULL, 10), "-");
}

/* dir, method: to mark a live draft, to be replaced by its full fit
 * (vis-format.md). */
static void print_eval_table(const td_eval_result *r, const char *dir,
                             const char *method) {
  printf(" epoch");
  for (size_t c = 0; c < EVAL_NCOLS; c++)
    printf("  %*s", (int)strtol(eval_cols[c].fmt + 1, NULL, 10),
           eval_cols[c].head);
  printf("\n");
  for (int i = 0; i < r->n_epochs; i++) {
    const td_eval_epoch *e = &r->epochs[i];
    printf("%6d", e->epoch);
    for (size_t c = 0; c < EVAL_NCOLS; c++) {
      printf("  ");
      print_num(
          *(const double *)(const void *)((const char *)e + eval_cols[c].off),
          eval_cols[c].fmt);
    }
    printf("%s\n",
           td_vis_epoch_is_draft(dir, method, e->epoch) ? "  draft" : "");
  }
}

int td_cmd_eval(int argc, char **argv) {
  const char *method = "dvi";
  int json = 0, threads = 0;
  const char *dir = NULL;
  td_opt opts[] = {
      TD_OPT_STRING("method", &method, "M",
                    "projection method under RUN/vis/ (default dvi)"),
      TD_OPT_FLAG("json", &json,
                  "machine-readable output (the metrics.json written)"),
      TD_OPT_INT("threads", &threads, 0, TD_ARG_INF, "T", "default: all CPUs"),
      TD_OPT_END};
  const td_arg_pos pos[] = {{"RUN", &dir}, {0}};
  td_args_cmd cmd = {
      .name = "eval",
      .usage = "eval RUN [--method dvi|pca] [--json] [--threads T]",
      .about = "Measures the projection's quality per epoch: neighbour\n"
               "preservation nn@k (k = 10, 15, 20; train and test), boundary\n"
               "neighbour preservation, prediction preservation (ppr, train\n"
               "and test) and confidence difference of the inverse, boundary\n"
               "samples kept on boundaries, how the drawn territory fits the\n"
               "training samples (on_white: share on white cells; terr_agree:\n"
               "share whose cell has their predicted class; unsure: share the\n"
               "classifier itself is unsure of), temporal correlation, and\n"
               "the projection time. Writes RUN/vis/<method>/metrics.json.",
      .opts = opts,
      .pos = pos};
  int status;
  if (!td_args_parse(&cmd, argc, argv, &status))
    return status;
  td_set_threads(threads);
  td_err err = {0};
  td_run *run;
  if (td_run_open(dir, &run, &err) != TD_OK) {
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
    char path[TD_PATH_MAX];
    FILE *f = td_vis_method_path(td_run_dir(run), method, "metrics.json", path,
                                 sizeof path, NULL)
                  ? NULL
                  : fopen(path, "r");
    int c;
    while (f && (c = fgetc(f)) != EOF)
      putchar(c);
    if (f)
      fclose(f);
    printf("\n");
  } else {
    printf("method %s, %d projected epochs\n\n", method, r.n_epochs);
    print_eval_table(&r, dir, method);
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
