/* tardis render RUN: a PNG of one projected epoch, or a GIF of all. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "tardis/render.h"
#include "tardis/run.h"

/* Declared here too until cli/commands.h lists it (the lead owns that
 * file); the repeat is harmless afterwards. */

static void usage(FILE *f) {
  fprintf(f,
          "usage: tardis render RUN --epoch N --out FILE.png [options]\n"
          "       tardis render RUN --gif FILE.gif [options]\n"
          "\n"
          "Draws the projection of a run (written by `tardis project RUN`):\n"
          "the decision territory of the canvas with the samples on top. A\n"
          "correct sample is a dot in its label's colour; a mispredicted one\n"
          "is a ring in its label's colour around a dot in the predicted "
          "colour.\n"
          "\n"
          "  --epoch N          the epoch to draw (with --out)\n"
          "  --out FILE         write that epoch as a PNG\n"
          "  --gif FILE         write every projected epoch as an animated "
          "GIF\n"
          "  --method M         projection method under RUN/vis (default "
          "dvi)\n"
          "  --size PX          side of the map in pixels, %d..%d (default "
          "1024\n"
          "                     for PNG, 640 for GIF); title and legend add "
          "margins\n"
          "  --split S          samples to draw: train (default), test or "
          "both\n"
          "  --no-territory     draw the samples on white\n"
          "  --fps N            GIF frames per second, 1..100 (default 4)\n"
          "  --quiet            no progress or summary on stderr\n"
          "  --help             show this help\n"
          "\n"
          "Output is written to a temporary file and renamed into place, so a\n"
          "failed render leaves nothing behind.\n"
          "Exit status: 0 written, 1 failed, 2 bad usage.\n",
          TD_RENDER_MIN_SIZE, TD_RENDER_MAX_SIZE);
}

static int parse_int(const char *s, const char *opt, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < -1000000000L || v > 1000000000L) {
    fprintf(stderr, "tardis render: %s: expected an integer, got \"%s\"\n", opt,
            s);
    return -1;
  }
  *out = (int)v;
  return 0;
}

static void progress_cb(int i, int n, void *ctx) {
  (void)ctx;
  if (i < n)
    fprintf(stderr, "\rrendering epoch %d/%d", i + 1, n);
  else
    fprintf(stderr, "\r%40s\r", "");
  fflush(stderr);
}

typedef struct {
  const char *run_dir, *out, *gif;
  int epoch, has_epoch, quiet, size_given;
  td_render_opts o;
} render_args;

/* 0 ok, 1 help shown, 2 bad usage (message printed). */
static int parse_args(int argc, char **argv, render_args *a) {
  enum {
    O_EPOCH = 256,
    O_OUT,
    O_GIF,
    O_METHOD,
    O_SIZE,
    O_SPLIT,
    O_NOTERR,
    O_FPS,
    O_QUIET,
    O_HELP
  };
  static const struct option opts[] = {
      {"epoch", required_argument, 0, O_EPOCH},
      {"out", required_argument, 0, O_OUT},
      {"gif", required_argument, 0, O_GIF},
      {"method", required_argument, 0, O_METHOD},
      {"size", required_argument, 0, O_SIZE},
      {"split", required_argument, 0, O_SPLIT},
      {"no-territory", no_argument, 0, O_NOTERR},
      {"fps", required_argument, 0, O_FPS},
      {"quiet", no_argument, 0, O_QUIET},
      {"help", no_argument, 0, O_HELP},
      {0, 0, 0, 0}};
  memset(a, 0, sizeof *a);
  td_render_opts_init(&a->o);
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case O_EPOCH:
      if (parse_int(optarg, "--epoch", &a->epoch))
        return 2;
      a->has_epoch = 1;
      break;
    case O_OUT:
      a->out = optarg;
      break;
    case O_GIF:
      a->gif = optarg;
      break;
    case O_METHOD:
      a->o.method = optarg;
      break;
    case O_SIZE:
      if (parse_int(optarg, "--size", &a->o.size))
        return 2;
      a->size_given = 1;
      break;
    case O_SPLIT:
      if (!strcmp(optarg, "train"))
        a->o.split = TD_RENDER_TRAIN;
      else if (!strcmp(optarg, "test"))
        a->o.split = TD_RENDER_TEST;
      else if (!strcmp(optarg, "both"))
        a->o.split = TD_RENDER_BOTH;
      else {
        fprintf(stderr,
                "tardis render: --split: expected train, test or "
                "both, got \"%s\"\n",
                optarg);
        return 2;
      }
      break;
    case O_NOTERR:
      a->o.territory = 0;
      break;
    case O_FPS:
      if (parse_int(optarg, "--fps", &a->o.fps))
        return 2;
      break;
    case O_QUIET:
      a->quiet = 1;
      break;
    case O_HELP:
      usage(stdout);
      return 1;
    default:
      usage(stderr);
      return 2;
    }
  }
  const char *why = NULL;
  if (optind != argc - 1)
    why = optind >= argc ? "missing RUN" : "more than one RUN given";
  else if (!a->gif && !a->out)
    why = "nothing to write: give --epoch N --out FILE.png or --gif FILE.gif";
  else if (a->gif && (a->out || a->has_epoch))
    why = "--gif draws every epoch; it does not take --epoch or --out";
  else if (a->out && !a->has_epoch)
    why = "--out needs --epoch N";
  else if (a->has_epoch && !a->out)
    why = "--epoch needs --out FILE.png";
  if (why) {
    fprintf(stderr, "tardis render: %s\n(see tardis render --help)\n", why);
    return 2;
  }
  a->run_dir = argv[optind];
  if (a->gif && !a->size_given)
    a->o.size = 640;
  td_err err;
  if (td_render_opts_check(&a->o, &err)) {
    fprintf(stderr, "tardis render: %s\n", err.msg);
    return 2;
  }
  return 0;
}

/* Renders into "<path>.tmp.<pid>" and renames it over path only when the
 * whole image was written and flushed. */
static int write_output(const render_args *a, const td_run *run,
                        const char *path, td_err *err) {
  char tmp[4096];
  if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >=
      sizeof tmp)
    return td_err_set(err, TD_ERANGE, "%s: path too long", path);
  FILE *f = fopen(tmp, "wb");
  if (!f)
    return td_err_set(err, TD_EIO, "%s: %s", tmp, strerror(errno));
  int rc = a->gif ? td_render_gif(run, &a->o, td_render_sink_file, f, err)
                  : td_render_frame_png(run, a->epoch, &a->o,
                                        td_render_sink_file, f, err);
  if (!rc && (fflush(f) != 0 || fsync(fileno(f)) != 0))
    rc = td_err_set(err, TD_EIO, "%s: %s", tmp, strerror(errno));
  if (fclose(f) != 0 && !rc)
    rc = td_err_set(err, TD_EIO, "%s: %s", tmp, strerror(errno));
  if (!rc && rename(tmp, path) != 0)
    rc = td_err_set(err, TD_EIO, "%s: %s", path, strerror(errno));
  if (rc)
    unlink(tmp);
  return rc;
}

int td_cmd_render(int argc, char **argv) {
  render_args a;
  int prc = parse_args(argc, argv, &a);
  if (prc)
    return prc == 1 ? 0 : 2;
  if (!a.quiet && isatty(STDERR_FILENO))
    a.o.progress = progress_cb;
  td_err err;
  td_run *run;
  if (td_run_open(a.run_dir, &run, &err)) {
    fprintf(stderr, "tardis render: %s\n", err.msg);
    return 1;
  }
  const char *path = a.gif ? a.gif : a.out;
  int rc = write_output(&a, run, path, &err);
  if (rc) {
    fprintf(stderr, "tardis render: %s\n", err.msg);
  } else if (!a.quiet) {
    if (a.gif) {
      int *eps, n = 0;
      if (!td_render_list_epochs(run, a.o.method, &eps, &n, NULL))
        free(eps);
      fprintf(stderr, "wrote %s (%d epoch%s, %d fps)\n", path, n,
              n == 1 ? "" : "s", a.o.fps);
    } else {
      fprintf(stderr, "wrote %s (epoch %d)\n", path, a.epoch);
    }
  }
  td_run_close(run);
  td_render_shutdown();
  return rc ? 1 : 0;
}
