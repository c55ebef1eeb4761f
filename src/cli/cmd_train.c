/* tardis train: train the built-in classifier and record every epoch. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "tardis/train.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: tardis train --out RUN [options]\n"
          "\n"
          "Trains a classifier and records every epoch as a tardis run.\n"
          "\n"
          "  --out RUN            run directory to write (required)\n"
          "  --dataset NAME       fashion-mnist (default)\n"
          "  --data-dir DIR       where the dataset's IDX files are\n"
          "                       (default %s)\n"
          "  --model NAME         mlp: 784-256-128-10, ReLU (default)\n"
          "  --epochs N           default 30\n"
          "  --batch N            default 128\n"
          "  --optimizer sgd|adam default sgd (momentum 0.9)\n"
          "  --lr X               default 0.01 (sgd), 0.001 (adam)\n"
          "  --noise F            fraction of training labels to corrupt, "
          "e.g. 0.1\n"
          "  --noise-type T       symmetric (default) or asymmetric\n"
          "  --limit N            use the first N training samples (and "
          "N/6 test)\n"
          "  --seed S             default 1\n"
          "  --threads T          default: all CPUs\n"
          "  --no-model           do not store the checkpoint in each epoch\n"
          "  --ood inverted       also record intensity-inverted test images\n"
          "                       (an out-of-distribution set)\n"
          "  --name TEXT          a name for the run\n"
          "  --force              replace an existing run at --out\n"
          "  --quiet              no progress output\n",
          TD_FASHION_MNIST_DIR);
}

typedef struct {
  int tty, quiet;
} progress_ctx;

static void on_progress(const td_train_progress *p, void *ctx) {
  progress_ctx *c = ctx;
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

static int parse_int(const char *s, const char *what, long long lo,
                     long long *out) {
  char *end;
  long long v = strtoll(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v < lo) {
    fprintf(stderr, "tardis train: invalid %s '%s'\n", what, s);
    return -1;
  }
  *out = v;
  return 0;
}

static int parse_double(const char *s, const char *what, double *out) {
  char *end;
  double v = strtod(s, &end);
  if (*s == '\0' || *end != '\0' || v != v) {
    fprintf(stderr, "tardis train: invalid %s '%s'\n", what, s);
    return -1;
  }
  *out = v;
  return 0;
}

int td_cmd_train(int argc, char **argv) {
  td_train_opts o;
  td_train_opts_default(&o);
  o.out = NULL;
  int lr_set = 0;
  progress_ctx pc = {isatty(2), 0};
  enum { O_DATA_DIR = 256, O_NOISE_TYPE, O_NO_MODEL, O_OPT, O_QUIET, O_OOD };
  static const struct option opts[] = {
      {"out", required_argument, 0, 'o'},
      {"dataset", required_argument, 0, 'd'},
      {"data-dir", required_argument, 0, O_DATA_DIR},
      {"model", required_argument, 0, 'm'},
      {"epochs", required_argument, 0, 'e'},
      {"batch", required_argument, 0, 'b'},
      {"optimizer", required_argument, 0, O_OPT},
      {"lr", required_argument, 0, 'l'},
      {"noise", required_argument, 0, 'n'},
      {"noise-type", required_argument, 0, O_NOISE_TYPE},
      {"limit", required_argument, 0, 'L'},
      {"seed", required_argument, 0, 's'},
      {"threads", required_argument, 0, 't'},
      {"no-model", no_argument, 0, O_NO_MODEL},
      {"ood", required_argument, 0, O_OOD},
      {"name", required_argument, 0, 'N'},
      {"force", no_argument, 0, 'f'},
      {"quiet", no_argument, 0, O_QUIET},
      {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0}};
  optind = 1;
  int ch;
  long long v;
  while ((ch = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
    switch (ch) {
    case 'o':
      o.out = optarg;
      break;
    case 'd':
      o.dataset = optarg;
      break;
    case O_DATA_DIR:
      o.data_dir = optarg;
      break;
    case 'm':
      o.model = optarg;
      break;
    case 'e':
      if (parse_int(optarg, "--epochs", 1, &v))
        return 2;
      o.epochs = (int)v;
      break;
    case 'b':
      if (parse_int(optarg, "--batch", 1, &v))
        return 2;
      o.batch = (int)v;
      break;
    case O_OPT:
      o.optimizer = optarg;
      break;
    case 'l':
      if (parse_double(optarg, "--lr", &o.lr))
        return 2;
      lr_set = 1;
      break;
    case 'n':
      if (parse_double(optarg, "--noise", &o.noise))
        return 2;
      if (o.noise < 0 || o.noise >= 1) {
        fprintf(stderr, "tardis train: --noise must be in [0, 1)\n");
        return 2;
      }
      break;
    case O_NOISE_TYPE:
      if (!strcmp(optarg, "symmetric"))
        o.noise_type = TD_NOISE_SYMMETRIC;
      else if (!strcmp(optarg, "asymmetric"))
        o.noise_type = TD_NOISE_ASYMMETRIC;
      else {
        fprintf(stderr, "tardis train: --noise-type must be symmetric or "
                        "asymmetric\n");
        return 2;
      }
      break;
    case 'L':
      if (parse_int(optarg, "--limit", 1, &v))
        return 2;
      o.limit = v;
      break;
    case 's':
      if (parse_int(optarg, "--seed", 0, &v))
        return 2;
      o.seed = (uint64_t)v;
      break;
    case 't':
      if (parse_int(optarg, "--threads", 0, &v))
        return 2;
      o.threads = (int)v;
      break;
    case O_NO_MODEL:
      o.save_model = 0;
      break;
    case O_OOD:
      if (strcmp(optarg, "inverted")) {
        fprintf(stderr, "tardis train: --ood must be 'inverted'\n");
        return 2;
      }
      o.ood = optarg;
      break;
    case 'N':
      o.name = optarg;
      break;
    case 'f':
      o.force = 1;
      break;
    case O_QUIET:
      pc.quiet = 1;
      break;
    case 'h':
      usage(stdout);
      return 0;
    default:
      usage(stderr);
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "tardis train: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  if (!o.out) {
    fprintf(stderr, "tardis train: --out RUN is required\n\n");
    usage(stderr);
    return 2;
  }
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
    return 1;
  }
  printf("trained %d epochs in %.1f s (%.2f s/epoch training; recording "
         "%.2f s/epoch computing + %.2f s/epoch writing in the background)\n",
         r.epochs, r.total_seconds, r.train_seconds / r.epochs,
         r.record_eval_seconds / r.epochs, r.record_seconds / r.epochs);
  if (r.n_flipped)
    printf("label noise: %lld training labels corrupted (clean labels in "
           "train_truth.npy)\n",
           (long long)r.n_flipped);
  printf("final: train acc %.4f, test acc %.4f, test loss %.4f\n",
         r.final_train_acc, r.final_test_acc, r.final_test_loss);
  printf("run written to %s\n", o.out);
  return 0;
}
