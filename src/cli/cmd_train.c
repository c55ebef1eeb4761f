/* tardis train: train the built-in classifier and record every epoch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "tardis/train.h"

typedef struct {
  int tty, quiet;
  td_cli_train_server serve;
} progress_ctx;

static void on_progress(const td_train_progress *p, void *ctx) {
  progress_ctx *c = ctx;
  if (c->serve.want)
    td_cli_train_serve_start(&c->serve);
  if (c->quiet)
    return;
  if (p->epoch_done) {
    fprintf(stderr, "%sepoch %3d/%d  loss %.4f  %.2f s  %.0f samples/s\n",
            c->tty ? "\r\033[K" : "", p->epoch, p->epochs, p->loss,
            p->epoch_seconds, p->samples_per_s);
  } else if (c->tty) {
    fprintf(stderr,
            "\r\033[Kepoch %3d/%d  [%5.1f%%]  loss %.4f  %.0f samples/s",
            p->epoch, p->epochs, 100.0 * (double)p->step / (double)p->steps,
            p->loss, p->samples_per_s);
  }
}

/* "E:F" into the spike's epoch and factor; 0 or -1. */
static int parse_spike(const char *s, td_train_opts *o) {
  char *end;
  long e = strtol(s, &end, 10);
  if (end == s || *end != ':' || e < 1 || e > 1000000000)
    return -1;
  const char *f = end + 1;
  double x = strtod(f, &end);
  if (end == f || *end || !(x > 0) || !isfinite(x))
    return -1;
  o->lr_spike_epoch = (int)e;
  o->lr_spike_factor = x;
  return 0;
}

/* --out, --resume and --from: which go together. A resumed run keeps its
 * own options, so only the ones about this process may come with it. */
static int check_modes(td_args_cmd *cmd, const td_train_opts *o) {
  static const char *const with_resume[] = {"resume", "epochs", "threads",
                                            "quiet",  "serve",  "port"};
  if (!o->resume && !o->out)
    return td_args_fail(cmd, "missing --out RUN");
  if (o->resume && o->from)
    return td_args_fail(cmd, "--resume and --from exclude each other");
  if (!o->resume)
    return 0;
  for (const td_opt *p = cmd->opts; p->name; p++) {
    int ok = 0;
    for (size_t i = 0; i < sizeof with_resume / sizeof *with_resume; i++)
      ok |= !strcmp(p->name, with_resume[i]);
    if (p->given && !ok)
      return td_args_fail(cmd,
                          "--%s: a resumed run continues with its own "
                          "options (only --epochs, --threads, --quiet, --serve "
                          "and --port go with --resume)",
                          p->name);
  }
  return 0;
}

int td_cmd_train(int argc, char **argv) {
  td_train_opts o;
  td_train_opts_default(&o);
  o.out = NULL;
  progress_ctx pc = {isatty(2), 0, {0, isatty(2), {0}, NULL}};
  td_server_opts_init(&pc.serve.opts);
  pc.serve.opts.follow = 1;
  static const char *const optimizers[] = {"sgd", "adam", NULL};
  static const char *const models[] = {"mlp", "cnn", NULL};
  static const char *const noise_types[] = {"symmetric", "asymmetric", NULL};
  static const int noise_values[] = {TD_NOISE_SYMMETRIC, TD_NOISE_ASYMMETRIC};
  static const char *const ood_sets[] = {"inverted", "gaussian", NULL};
  static const char *const repr_dtypes[] = {"float32", "float16", "f32", "f16",
                                            NULL};
  const char *repr_dtype = "float32";
  int noise_type = (int)o.noise_type;
  const char *lr_spike = NULL;
  td_opt opts[] = {
      {.name = "out",
       .short_name = 'o',
       .kind = TD_ARG_STRING,
       .dst = &o.out,
       .meta = "RUN",
       .help = "run directory to write (required, except with --resume)"},
      TD_OPT_STRING("dataset", &o.dataset, "NAME", "fashion-mnist (default)"),
      TD_OPT_STRING("data-dir", &o.data_dir, "DIR",
                    "where the dataset's IDX files are\n"
                    "(default " TD_FASHION_MNIST_DIR ")"),
      TD_OPT_STRING("data", &o.data, "DIR",
                    "train on a directory of .npy arrays instead:\n"
                    "train_inputs.npy, train_labels.npy, classes.json,\n"
                    "optionally test_*.npy (docs/engine.md)"),
      TD_OPT_CHOICE_STR("model", &o.model, models,
                        "mlp (default): dense ReLU layers of the --hidden\n"
                        "widths, the last one the representation;\n"
                        "cnn: conv 3x3x32, pool 2, conv 3x3x64, pool 2,\n"
                        "dense 128 (the representation); both end in one\n"
                        "dense head (docs/engine.md)"),
      TD_OPT_STRING("hidden", &o.hidden, "W,W,..",
                    "mlp hidden widths (default 256,128)"),
      TD_OPT_FLAG("batchnorm", &o.batchnorm,
                  "cnn: batch normalisation after each conv"),
      TD_OPT_STRING("augment", &o.augment, "shift,flip",
                    "random shifts (up to 2 px, zero fill) and/or\n"
                    "horizontal flips of the training images"),
      TD_OPT_INT("epochs", &o.epochs, 1, TD_ARG_INF, "N", "default 30"),
      TD_OPT_INT("batch", &o.batch, 1, TD_ARG_INF, "N", "default 128"),
      TD_OPT_CHOICE_STR("optimizer", &o.optimizer, optimizers,
                        "default sgd (momentum 0.9)"),
      TD_OPT_DOUBLE("lr", &o.lr, 0, TD_ARG_INF, TD_ARG_GT, "X",
                    "default 0.01 (sgd), 0.001 (adam)"),
      TD_OPT_STRING("lr-spike", &lr_spike, "E:F",
                    "multiply the learning rate by F for epoch E only\n"
                    "(a failure to see: docs/alerts.md)"),
      TD_OPT_DOUBLE("lr-grow", &o.lr_grow, 0, TD_ARG_INF, TD_ARG_GT, "G",
                    "multiply the learning rate by G every epoch\n"
                    "(a gradual failure; default 1)"),
      TD_OPT_DOUBLE("noise", &o.noise, 0, 1, TD_ARG_LT, "F",
                    "fraction of training labels to corrupt, e.g. 0.1"),
      TD_OPT_CHOICE("noise-type", &noise_type, noise_types, noise_values,
                    "symmetric (default) or asymmetric"),
      TD_OPT_INT64("limit", &o.limit, 1, TD_ARG_INF, "N",
                   "use the first N training samples (and N/6 test)"),
      TD_OPT_SEED("seed", &o.seed, "default 1"),
      TD_OPT_INT("threads", &o.threads, 0, TD_ARG_INF, "T",
                 "default: all CPUs"),
      TD_OPT_UNFLAG("no-model", &o.save_model,
                    "do not store the checkpoint in each epoch"),
      TD_OPT_CHOICE_STR("repr-dtype", &repr_dtype, repr_dtypes,
                        "float32 (default) or float16 (f16): how the\n"
                        "representations are stored (half the disk)"),
      TD_OPT_INT64("record-subset", &o.record_subset, 1, TD_ARG_INF, "K",
                   "record only K training samples, drawn from the\n"
                   "seed, the same in every epoch (RUN/subset.npy)"),
      TD_OPT_CHOICE_STR("ood", &o.ood, ood_sets,
                        "also record an out-of-distribution set beside\n"
                        "the test set: inverted (the test images with\n"
                        "intensities inverted) or gaussian (noise images\n"
                        "with the test pixels' mean and deviation)"),
      TD_OPT_STRING("tasks", &o.tasks, "LIST",
                    "continual learning: train these tasks in\n"
                    "sequence, e.g. 0-4,5-9 or 0+3,1+2 (classes,\n"
                    "a-b ranges, + within a task, ',' between)"),
      TD_OPT_INT("epochs-per-task", &o.epochs_per_task, 1, TD_ARG_INF, "N",
                 "epochs of each task (with --tasks; total\n"
                 "epochs = tasks x N)"),
      TD_OPT_INT64("replay", &o.replay, 0, TD_ARG_INF, "N",
                   "replay N samples of earlier tasks in every\n"
                   "epoch (class-balanced buffer; with --tasks)"),
      TD_OPT_STRING("resume", &o.resume, "RUN",
                    "continue RUN from its last checkpoint up to --epochs\n"
                    "with its own options, optimizer state and random\n"
                    "streams"),
      TD_OPT_STRING("from", &o.from, "RUN[:E]",
                    "fine-tune epoch E (default the last) of RUN into a\n"
                    "new run at --out that names it as its parent"),
      TD_OPT_STRING("select", &o.select, "IDX.npy",
                    "train only on these training samples (int32/int64\n"
                    "indices); every epoch still records all of them"),
      TD_OPT_STRING("exclude", &o.exclude, "IDX.npy",
                    "train on every training sample but these, e.g.\n"
                    "tardis suspects --export's accepted.npy"),
      TD_OPT_STRING("labels", &o.labels, "FILE.npy",
                    "train on these labels (int32/int64/uint8 [N] in\n"
                    "[0, C)) instead of the dataset's, e.g. tardis\n"
                    "suspects --export's train_labels_fixed.npy; with\n"
                    "--from instead of the parent's"),
      TD_OPT_DOUBLE("pool", &o.pool, 0, 1, TD_ARG_LT, "F",
                    "keep a fraction F of each label's training samples\n"
                    "out of training as a pool (RUN/pool.npy) that\n"
                    "tardis repair may draw from"),
      TD_OPT_STRING("class-fraction", &o.class_fraction, "L:F,..",
                    "train on only a fraction F of label L's samples\n"
                    "(starved labels: a model that underfits them)"),
      TD_OPT_STRING("name", &o.name, "TEXT", "a name for the run"),
      TD_OPT_FLAG("force", &o.force,
                  "replace an existing run at --out (kept until\n"
                  "the new one has succeeded)"),
      TD_OPT_FLAG("quiet", &pc.quiet, "no progress output"),
      TD_OPT_FLAG("serve", &pc.serve.want,
                  "serve the run to the web UI while it trains, drawing\n"
                  "each epoch as it lands (tardis serve --follow)"),
      TD_OPT_INT("port", &pc.serve.opts.port, 0, 65535, "N",
                 "--serve's TCP port (0: any free port); default 8040"),
      TD_OPT_END};
  td_args_cmd cmd = {
      .name = "train",
      .usage = "train --out RUN [options]\n"
               "train --resume RUN [--epochs N]\n"
               "train --from RUN[:EPOCH] --out NEW [--select IDX.npy | "
               "--exclude IDX.npy] [--labels FILE.npy] [options]",
      .about = "Trains a classifier and records every epoch as a tardis run.",
      .opts = opts};
  int status;
  if (!td_args_parse(&cmd, argc, argv, &status))
    return status;
  if ((status = check_modes(&cmd, &o)) != 0)
    return status;
  o.noise_type = (td_noise_type)noise_type;
  o.repr_f16 = !strcmp(repr_dtype, "float16") || !strcmp(repr_dtype, "f16");
  if ((o.tasks || o.resume) && !td_args_given(&cmd, "epochs"))
    o.epochs = 0; /* tasks x epochs-per-task; a resumed run's own */
  if (lr_spike && parse_spike(lr_spike, &o) != 0)
    return td_args_fail(&cmd,
                        "--lr-spike: expected E:F (an epoch >= 1 and a "
                        "factor > 0), got \"%s\"",
                        lr_spike);
  if (o.resume)
    o.out = o.resume;
  pc.serve.opts.run_dir = o.out;
  int lr_set = td_args_given(&cmd, "lr");
  if (!lr_set && !strcmp(o.optimizer, "adam"))
    o.lr = 0.001;
  o.progress = on_progress;
  o.progress_ctx = &pc;
  td_train_result r;
  td_err err = {0};
  int rc = td_train(&o, &r, &err);
  if (rc != TD_OK) {
    fprintf(stderr, "%stardis: error: %s\n", pc.tty ? "\r\033[K" : "",
            err.msg[0] ? err.msg : td_strerror(rc));
    td_cli_train_serve_finish(&pc.serve, 0);
    return 1;
  }
  if (o.resume)
    printf("resumed %s: epochs %d to %d\n", o.resume,
           r.last_epoch - r.epochs + 1, r.last_epoch);
  printf("trained %d epochs in %.1f s (%.2f s/epoch training; recording "
         "%.2f s/epoch computing + %.2f s/epoch writing in the background)\n",
         r.epochs, r.total_seconds, r.train_seconds / r.epochs,
         r.record_eval_seconds / r.epochs, r.record_seconds / r.epochs);
  if (r.n_flipped && o.labels)
    printf("labels from %s: %lld differ from the clean labels "
           "(train_truth.npy)\n",
           o.labels, (long long)r.n_flipped);
  else if (r.n_flipped)
    printf("label noise: %lld training labels corrupted (clean labels in "
           "train_truth.npy)\n",
           (long long)r.n_flipped);
  printf("final: train acc %.4f, test acc %.4f, test loss %.4f\n",
         r.final_train_acc, r.final_test_acc, r.final_test_loss);
  printf("run written to %s\n", o.out);
  fflush(stdout);
  td_cli_train_serve_finish(&pc.serve, 1);
  return 0;
}
