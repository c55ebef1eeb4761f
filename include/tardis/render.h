/* tardis/render.h — pictures of training: PNG frames, animated GIFs,
 * territory images and sample thumbnails.
 *
 * A frame shows one projected epoch (docs/vis-format.md): the decision
 * territory of the canvas (pastel class regions, white boundaries, DESIGN
 * §3.6) with the samples on top — a correctly predicted sample is a dot in
 * its label's colour, a mispredicted one a ring in its label's colour around
 * a dot in the predicted colour — plus a title line and a legend.
 *
 * Every image goes out through a sink, so the same code writes a file, an
 * HTTP response or a memory buffer:
 *
 *     td_run *run;
 *     td_run_open("runs/fmnist", &run, &err);
 *     td_render_opts o;
 *     td_render_opts_init(&o);                 // dvi, 1024 px, train split
 *     td_render_buf png = {0};
 *     if (td_render_frame_png(run, 12, &o, td_render_sink_buf, &png, &err))
 *       puts(err.msg);   // e.g. "epoch 13 is not projected (projected: 1-12)"
 *     ... png.data, png.len ...
 *     td_render_buf_free(&png);
 *
 *     FILE *f = fopen("training.gif", "wb");
 *     o.size = 640;
 *     td_render_gif(run, &o, td_render_sink_file, f, &err);
 *
 * A sink returns 0 on success; anything else aborts the rendering, which
 * then returns TD_EIO. A failed call may already have passed part of the
 * image to the sink: callers writing files write a temporary file and
 * rename it (the `tardis render` command does).
 */
#ifndef TARDIS_RENDER_H
#define TARDIS_RENDER_H

#include <stddef.h>
#include <stdint.h>

#include "tardis/error.h"
#include "tardis/run.h"
#include "tardis/territory.h"

/* Receives the next len bytes of an image. Returns 0 to go on. */
typedef int (*td_sink_fn)(void *ctx, const void *data, size_t len);

/* A growing memory buffer, for td_render_sink_buf. Zero-initialise it; free
 * data with td_render_buf_free. */
typedef struct td_render_buf {
  uint8_t *data;
  size_t len, cap;
} td_render_buf;

/* Sink into a td_render_buf (ctx). Fails only when out of memory. */
TD_NODISCARD int td_render_sink_buf(void *ctx, const void *data, size_t len);
void td_render_buf_free(td_render_buf *b);
/* Sink into a stdio stream (ctx is a FILE * opened for binary writing). */
TD_NODISCARD int td_render_sink_file(void *ctx, const void *data, size_t len);

/* Which samples a frame draws. */
typedef enum {
  TD_RENDER_TRAIN, /* training samples (train_embedding.npy) */
  TD_RENDER_TEST,  /* test samples (test_embedding.npy) */
  TD_RENDER_BOTH,  /* both; test samples are drawn as squares */
  TD_RENDER_SPLIT_COUNT
} td_render_split;

#define TD_RENDER_MIN_SIZE 64
#define TD_RENDER_MAX_SIZE 8192

typedef struct td_render_opts {
  const char *method;    /* projection method: RUN/vis/<method>; "dvi" */
  int size;              /* side of the square map in pixels; the title
                            and legend add margins. 1024 */
  td_render_split split; /* TD_RENDER_TRAIN */
  int territory;         /* 1: draw the territory (default); 0: white */
  int fps;               /* GIF frames per second, 1..100. 4 */
  int mark_noise;        /* 1: cross the training samples whose label is
                            noisy (needs train_truth.npy). 0 */
  int mark_suspects;     /* 1: a magenta diamond on the training samples
                            accepted as suspicious in `session`. 0 */
  int64_t session;       /* feedback session (RUN/tardis.db); 0: the most
                            recently updated one */
  /* GIF progress: called with (i, n) before frame i of n and (n, n) at the
   * end; may be NULL. */
  void (*progress)(int i, int n, void *ctx);
  void *progress_ctx;
} td_render_opts;

/* Fills *o with the defaults above. */
void td_render_opts_init(td_render_opts *o);

/* Checks o (size, fps, split, method a plain name). TD_EARG with a message
 * saying which option is wrong and its valid range. */
TD_NODISCARD int td_render_opts_check(const td_render_opts *o, td_err *err);

/* The epochs projected by a method, ascending: the epoch_NNNN directories of
 * RUN/vis/<method>/ (unfinished .tmp-* ones are skipped). *epochs is
 * malloc'd (caller frees; NULL when *n == 0). TD_ENOENT, with a message
 * telling to run `tardis project RUN` first, when the method's directory is
 * missing or holds no epoch. */
TD_NODISCARD int td_render_list_epochs(const td_run *run, const char *method,
                                       int **epochs, int *n, td_err *err);

/* Writes "RUN/vis/<method>/epoch_NNNN" (NNNN as the run's epoch directory
 * name) into buf. TD_ENOENT when the epoch is not projected, with a message
 * listing the epochs that are; TD_ERANGE when buf is too small. */
TD_NODISCARD int td_render_epoch_dir(const td_run *run, const char *method,
                                     int epoch, char *buf, size_t len,
                                     td_err *err);

/* One projected epoch as a PNG (RGB, opaque): map of o->size × o->size
 * pixels, a title line above (run name, epoch, train/test accuracy,
 * method) and a legend to the right (class names and colours, markers). */
TD_NODISCARD int td_render_frame_png(const td_run *run, int epoch,
                                     const td_render_opts *o, td_sink_fn sink,
                                     void *ctx, td_err *err);

/* Every projected epoch as an animated GIF that loops forever, at o->fps
 * frames per second, each frame laid out as td_render_frame_png draws it,
 * on one fixed 256-colour palette. */
TD_NODISCARD int td_render_gif(const td_run *run, const td_render_opts *o,
                               td_sink_fn sink, void *ctx, td_err *err);

/* Just the territory as an opaque RGB PNG, row 0 = top (y1): size × size
 * pixels, smoothly scaled, or R × R cells when size <= 0. No points, no
 * text (the web UI draws those itself). TD_EARG for size >
 * TD_RENDER_MAX_SIZE or an empty territory. */
TD_NODISCARD int td_render_territory_png(const td_territory *t, int size,
                                         td_sink_fn sink, void *ctx,
                                         td_err *err);
/* The same at width × height pixels (both <= 0: R × R), for a territory
 * whose extent is not square (td_territory_of_view). */
TD_NODISCARD int td_render_territory_png_wh(const td_territory *t, int width,
                                            int height, td_sink_fn sink,
                                            void *ctx, td_err *err);

/* A sample thumbnail as a PNG of (w·scale) × (h·scale) pixels, nearest
 * neighbour so single pixels stay crisp. pixels are c × h × w, channels
 * first (run.json's input_shape); c = 1 gives a grayscale image, c = 3 RGB.
 * scale 1..64, w·scale and h·scale at most TD_RENDER_MAX_SIZE. Returns
 * TD_EARG for bad shapes, TD_EIO when the sink fails, TD_ENOMEM. */
TD_NODISCARD int td_render_thumbnail_png(const uint8_t *pixels, int c, int h,
                                         int w, int scale, td_sink_fn sink,
                                         void *ctx);
/* The same for float32 inputs: values already in [0, 1] are taken as they
 * are; otherwise the image is stretched from its own minimum to maximum
 * (standardised inputs), so a thumbnail always shows its contrast. */
TD_NODISCARD int td_render_thumbnail_png_f32(const float *pixels, int c, int h,
                                             int w, int scale, td_sink_fn sink,
                                             void *ctx);

/* Releases the font caches cairo and fontconfig keep for the frames' text,
 * so leak checkers see only tardis' own memory. Call once at exit, when no
 * other thread renders; rendering afterwards reloads them. */
void td_render_shutdown(void);

#endif
