/* tardis render RUN: a PNG of one projected epoch, or a GIF of all. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "tardis/fsutil.h"
#include "tardis/render.h"
#include "tardis/run.h"

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
  int epoch, has_epoch, quiet;
  td_render_opts o;
} render_args;

#define STR_(x) #x
#define STR(x) STR_(x)
#define SIZE_RANGE STR(TD_RENDER_MIN_SIZE) ".." STR(TD_RENDER_MAX_SIZE)

/* The checks the option table cannot express: which outputs go together. */
static int check_outputs(const td_args_cmd *cmd, const render_args *a) {
  const char *why = NULL;
  if (!a->gif && !a->out)
    why = "nothing to write: give --epoch N --out FILE.png or --gif FILE.gif";
  else if (a->gif && (a->out || a->has_epoch))
    why = "--gif draws every epoch; it does not take --epoch or --out";
  else if (a->out && !a->has_epoch)
    why = "--out needs --epoch N";
  else if (a->has_epoch && !a->out)
    why = "--epoch needs --out FILE.png";
  return why ? td_args_fail(cmd, "%s", why) : 0;
}

/* 1 to render, or 0 with *status the exit status (help or bad usage). */
static int parse_args(int argc, char **argv, render_args *a, int *status) {
  static const char *const splits[] = {"train", "test", "both", NULL};
  static const int split_values[] = {TD_RENDER_TRAIN, TD_RENDER_TEST,
                                     TD_RENDER_BOTH};
  memset(a, 0, sizeof *a);
  td_render_opts_init(&a->o);
  int split = (int)a->o.split;
  td_opt opts[] = {
      TD_OPT_INT("epoch", &a->epoch, 0, TD_ARG_INF, "N",
                 "the epoch to draw (with --out)"),
      TD_OPT_STRING("out", &a->out, "FILE", "write that epoch as a PNG"),
      TD_OPT_STRING("gif", &a->gif, "FILE",
                    "write every projected epoch as an animated GIF"),
      TD_OPT_STRING("method", &a->o.method, "M",
                    "projection method under RUN/vis (default dvi)"),
      TD_OPT_INT("size", &a->o.size, TD_RENDER_MIN_SIZE, TD_RENDER_MAX_SIZE,
                 "PX",
                 "side of the map in pixels, " SIZE_RANGE " (default 1024\n"
                 "for PNG, 640 for GIF); title and legend add margins"),
      {.name = "split",
       .kind = TD_ARG_CHOICE,
       .dst = &split,
       .choices = splits,
       .values = split_values,
       .meta = "S",
       .help = "samples to draw: train (default), test or both"},
      TD_OPT_UNFLAG("no-territory", &a->o.territory,
                    "draw the samples on white"),
      TD_OPT_FLAG("mark-noise", &a->o.mark_noise,
                  "cross the training samples whose label is\n"
                  "noisy (needs RUN/train_truth.npy)"),
      TD_OPT_FLAG("mark-suspects", &a->o.mark_suspects,
                  "a magenta diamond on the samples accepted\n"
                  "as suspicious (RUN/tardis.db)"),
      TD_OPT_INT64("session", &a->o.session, 1, TD_ARG_INF, "ID",
                   "feedback session for --mark-suspects\n"
                   "(default: the most recently updated)"),
      TD_OPT_INT("fps", &a->o.fps, 1, 100, "N",
                 "GIF frames per second, 1..100 (default 4)"),
      TD_OPT_FLAG("quiet", &a->quiet, "no progress or summary on stderr"),
      TD_OPT_END};
  const td_arg_pos pos[] = {{"RUN", &a->run_dir}, {0}};
  td_args_cmd cmd = {
      .name = "render",
      .usage = "render RUN --epoch N --out FILE.png [options]\n"
               "render RUN --gif FILE.gif [options]",
      .about =
          "Draws the projection of a run (written by `tardis project RUN`):\n"
          "the decision territory of the canvas with the samples on top. A\n"
          "correct sample is a dot in its label's colour; a mispredicted one\n"
          "is a ring in its label's colour around a dot in the predicted "
          "colour.",
      .after = "Output is written to a temporary file and renamed into place, "
               "so a\nfailed render leaves nothing behind.\n"
               "Exit status: 0 written, 1 failed, 2 bad usage.",
      .opts = opts,
      .pos = pos};
  if (!td_args_parse(&cmd, argc, argv, status))
    return 0;
  a->o.split = (td_render_split)split;
  a->has_epoch = td_args_given(&cmd, "epoch");
  if ((*status = check_outputs(&cmd, a)))
    return 0;
  if (a->gif && !td_args_given(&cmd, "size"))
    a->o.size = 640;
  td_err err;
  if (td_render_opts_check(&a->o, &err)) {
    *status = td_args_fail(&cmd, "%s", err.msg);
    return 0;
  }
  return 1;
}

/* The file sink, remembering why a write failed: the renderer only learns
 * that the sink refused, and the user needs the path and the errno (a full
 * disk, a file size limit). */
typedef struct {
  FILE *f;
  int errno_;
} file_sink;

static int sink_cb(void *ctx, const void *data, size_t len) {
  file_sink *s = ctx;
  if (fwrite(data, 1, len, s->f) == len)
    return 0;
  s->errno_ = errno ? errno : EIO;
  return -1;
}

/* Renders into "<path>.tmp.<pid>" and renames it over path only when the
 * whole image was written and flushed. */
static int write_output(const render_args *a, const td_run *run,
                        const char *path, td_err *err) {
  char tmp[TD_PATH_MAX];
  int rc = td_pathf(tmp, sizeof tmp, err, "%s.tmp.%d", path, (int)getpid());
  if (rc)
    return rc;
  FILE *f = fopen(tmp, "wb");
  if (!f)
    return td_err_set(err, TD_EIO, "%s: %s", tmp, strerror(errno));
  file_sink s = {f, 0};
  errno = 0;
  rc = a->gif ? td_render_gif(run, &a->o, sink_cb, &s, err)
              : td_render_frame_png(run, a->epoch, &a->o, sink_cb, &s, err);
  if (rc && s.errno_)
    rc = td_err_set(err, TD_EIO, "%s: cannot write: %s", tmp,
                    strerror(s.errno_));
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
  int status;
  if (!parse_args(argc, argv, &a, &status))
    return status;
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
