/* Shared between the render sources; not a public interface. */
#ifndef TD_RENDER_INTERNAL_H
#define TD_RENDER_INTERNAL_H

#include <cairo.h>
#include <stdint.h>

#include "tardis/array.h"
#include "tardis/render.h"

/* Writes an image surface as PNG to a sink. TD_EIO (message naming what)
 * when the sink or cairo fails. */
TD_NODISCARD int td__render_write_png(cairo_surface_t *s, td_sink_fn sink,
                                      void *ctx, const char *what, td_err *err);

/* Territory shading. DESIGN §3.6 weighs the palette colour by 0.5·s and
 * white by 1 − s, with s the confidence scaled to at most 0.9; those
 * weights leave 0.5·s to black, which turns sure regions dark and swallows
 * the samples drawn on them. Normalising the weights to sum to one keeps the
 * palette's weight and gives DVI's pastel look: colour = k·P + (1 − k)·white
 * with k = 0.62·s ≤ 0.56 (stronger than DVI's 0.5, which washed out). As in
 * DVI, s = 0.9·conf / max conf of the grid, so a young model's unsure territory
 * still shows its classes; the shading never reaches white (s >= 0.12), so
 * "unsure" stays distinct from both the decision line and "no data" (image.c,
 * territory_px). */
#define TD__RENDER_TINT 0.62f
void td__render_shade(int cls, float s, float rgb[3]);
/* The largest confidence of a territory, at least the boundary threshold. */
float td__render_conf_max(const td_territory *t);

/* An RGB24 surface of size × size pixels (R × R when size <= 0) showing the
 * territory, row 0 = top, with smooth boundaries; NULL when out of memory. */
TD_NODISCARD cairo_surface_t *
td__render_territory_surface(const td_territory *t, int size);
/* The same over width × height pixels (the extent need not be square). */
TD_NODISCARD cairo_surface_t *
td__render_territory_surface_wh(const td_territory *t, int width, int height);

/* Everything one frame draws, loaded from the run and its vis directory. */
typedef struct td__frame {
  int epoch;
  td_territory terr; /* res == 0 when not drawn */
  float ext[4];      /* canvas extent shown: the territory's, or computed */
  td_array train_xy, test_xy, test_labels;
  int32_t *train_pred, *test_pred; /* NULL: prediction unknown */
  uint8_t *train_mark; /* [n_train] TD__MARK_* bits, NULL: none asked */
  int draw_train, draw_test;
  double train_acc, test_acc; /* NaN when not recorded */
} td__frame;

#define TD__MARK_NOISY 1   /* recorded label differs from train_truth */
#define TD__MARK_SUSPECT 2 /* accepted as suspicious in a session */
/* The marks o asks for (NULL when none), [n_train]; the caller frees. */
TD_NODISCARD int td__frame_load_marks(const td_run *run,
                                      const td_render_opts *o, uint8_t **out,
                                      td_err *err);

TD_NODISCARD int td__frame_load(const td_run *run, int epoch,
                                const td_render_opts *o, td__frame *f,
                                td_err *err);
void td__frame_close(td__frame *f);

/* Pixel geometry of a frame; depends only on the options and the run's class
 * names, so every frame of a GIF has the same size. */
typedef struct td__layout {
  int width, height;    /* whole image */
  double map_x, map_y;  /* top-left corner of the map */
  double map;           /* side of the map */
  double font, title_h; /* text size; height of the title band */
  double legend_x, pad; /* left edge of the legend; outer margin */
  int n_classes;
  int test_marker;               /* legend explains the test marker */
  int mark_noise, mark_suspects; /* legend explains these marks */
} td__layout;

TD_NODISCARD int td__layout_compute(const td_run *run, const td_render_opts *o,
                                    td__layout *l, td_err *err);

/* Draws a frame onto an RGB24 surface of l->width × l->height. */
void td__frame_draw(const td_run *run, const td__frame *f,
                    const td_render_opts *o, const td__layout *l,
                    cairo_surface_t *s);

#endif
