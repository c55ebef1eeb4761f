/* Every projected epoch as one animated GIF, on a fixed palette built for
 * these pictures: white, black, greys for text and frames, and for each
 * tab10 colour the shades its territory and its samples take. */
#include <gif_lib.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "render/render_internal.h"

#define N_GREYS 14
#define N_TERR_SHADES 18 /* s = 0.05 .. 0.9: territory confidence levels */
#define LUT_BITS 6       /* per channel: 2^18 cached nearest colours */

typedef struct {
  GifColorType pal[256];
  uint16_t *lut; /* [2^(3·LUT_BITS)], 0xffff = not computed yet */
} gif_palette;

static GifColorType rgb_of(double r, double g, double b) {
  GifColorType c = {(GifByteType)lrint(fmin(fmax(r, 0), 255)),
                    (GifByteType)lrint(fmin(fmax(g, 0), 255)),
                    (GifByteType)lrint(fmin(fmax(b, 0), 255))};
  return c;
}

/* Territory colour of a class at scaled confidence s (td__render_shade). */
static void terr_shade(const uint8_t *p, double s, double out[3]) {
  double k = (double)TD__RENDER_TINT * s;
  for (int ch = 0; ch < 3; ch++)
    out[ch] = k * p[ch] + (1 - k) * 255;
}

static void palette_build(gif_palette *gp) {
  int k = 0;
  gp->pal[k++] = rgb_of(255, 255, 255);
  gp->pal[k++] = rgb_of(0, 0, 0);
  for (int i = 1; i <= N_GREYS; i++) {
    double v = 255.0 * i / (N_GREYS + 1);
    gp->pal[k++] = rgb_of(v, v, v);
  }
  for (int c = 0; c < 10; c++) {
    const uint8_t *p = td_tab10[c];
    double t[3];
    for (int i = 1; i <= N_TERR_SHADES; i++) {
      terr_shade(p, 0.9 * i / N_TERR_SHADES, t);
      gp->pal[k++] = rgb_of(t[0], t[1], t[2]);
    }
    /* Sample dots: the pure colour, and translucent dots over white and
     * over their own territory. */
    gp->pal[k++] = rgb_of(p[0], p[1], p[2]);
    const double mix[5][2] = {
        {0.5, 0}, {0.5, 0.45}, {0.5, 0.9}, {0.75, 0.3}, {0.75, 0.9}};
    for (int m = 0; m < 5; m++) {
      double al = mix[m][0];
      terr_shade(p, mix[m][1], t);
      gp->pal[k++] =
          rgb_of(al * p[0] + (1 - al) * t[0], al * p[1] + (1 - al) * t[1],
                 al * p[2] + (1 - al) * t[2]);
    }
  }
  /* 16 + 10 × (18 + 6) = 256 */
  TD_ASSERT(k == 256);
}

static uint8_t nearest(const gif_palette *gp, int r, int g, int b) {
  /* Weighted RGB distance: green differences show most, blue least. */
  long best = -1;
  int arg = 0;
  for (int i = 0; i < 256; i++) {
    long dr = r - gp->pal[i].Red, dg = g - gp->pal[i].Green,
         db = b - gp->pal[i].Blue;
    long d = 3 * dr * dr + 4 * dg * dg + 2 * db * db;
    if (best < 0 || d < best) {
      best = d;
      arg = i;
    }
  }
  return (uint8_t)arg;
}

static uint8_t quantise(gif_palette *gp, uint32_t px) {
  int r = px >> 16 & 255, g = px >> 8 & 255, b = px & 255;
  const int sh = 8 - LUT_BITS;
  size_t key = (size_t)(r >> sh) << (2 * LUT_BITS) |
               (size_t)(g >> sh) << LUT_BITS | (size_t)(b >> sh);
  if (gp->lut[key] == 0xffff) {
    /* Judge the bucket by its centre so the cache is order-independent. */
    int half = 1 << (sh - 1);
    gp->lut[key] = nearest(gp, (r >> sh << sh) + half, (g >> sh << sh) + half,
                           (b >> sh << sh) + half);
  }
  return (uint8_t)gp->lut[key];
}

typedef struct {
  td_sink_fn sink;
  void *ctx;
  int failed;
} gif_stream;

static int gif_out(GifFileType *g, const GifByteType *data, int len) {
  gif_stream *st = g->UserData;
  if (st->failed || st->sink(st->ctx, data, (size_t)len) != 0) {
    st->failed = 1;
    return 0;
  }
  return len;
}

/* NETSCAPE2.0 application extension with loop count 0: loop forever. */
static int put_loop(GifFileType *g) {
  static const unsigned char loop[3] = {1, 0, 0};
  if (EGifPutExtensionLeader(g, APPLICATION_EXT_FUNC_CODE) != GIF_OK ||
      EGifPutExtensionBlock(g, 11, "NETSCAPE2.0") != GIF_OK ||
      EGifPutExtensionBlock(g, 3, loop) != GIF_OK ||
      EGifPutExtensionTrailer(g) != GIF_OK)
    return -1;
  return 0;
}

/* 4 × 4 ordered dither, centred on zero: territory gradients would
 * otherwise band into the palette's confidence steps. */
static const int8_t bayer4[4][4] = {
    {-15, 1, -11, 5}, {9, -7, 13, -3}, {-9, 7, -13, 3}, {15, -1, 11, -5}};

static uint8_t quantise_dither(gif_palette *gp, uint32_t px, int x, int y) {
  int r = px >> 16 & 255, g = px >> 8 & 255, b = px & 255;
  /* White (boundaries, margins) maps exactly; dithering it would speckle
   * the boundaries with faint tints. */
  if ((px & 0xffffff) == 0xffffff)
    return quantise(gp, px);
  int d = bayer4[y & 3][x & 3] * 3 / 10; /* about ±4.5 levels */
  int c[3] = {r + d, g + d, b + d};
  for (int i = 0; i < 3; i++)
    c[i] = c[i] < 0 ? 0 : c[i] > 255 ? 255 : c[i];
  return quantise(gp,
                  (uint32_t)c[0] << 16 | (uint32_t)c[1] << 8 | (uint32_t)c[2]);
}

static int put_frame(GifFileType *g, gif_palette *gp, cairo_surface_t *s,
                     int delay_cs, uint8_t *line) {
  GraphicsControlBlock gcb = {.DisposalMode = DISPOSE_DO_NOT,
                              .UserInputFlag = false,
                              .DelayTime = delay_cs,
                              .TransparentColor = NO_TRANSPARENT_COLOR};
  GifByteType ext[4];
  EGifGCBToExtension(&gcb, ext);
  int W = cairo_image_surface_get_width(s);
  int H = cairo_image_surface_get_height(s);
  if (EGifPutExtension(g, GRAPHICS_EXT_FUNC_CODE, 4, ext) != GIF_OK ||
      EGifPutImageDesc(g, 0, 0, W, H, false, NULL) != GIF_OK)
    return -1;
  const uint8_t *base = cairo_image_surface_get_data(s);
  int stride = cairo_image_surface_get_stride(s);
  for (int y = 0; y < H; y++) {
    const uint32_t *row =
        (const uint32_t *)(const void *)(base + (size_t)y * stride);
    for (int x = 0; x < W; x++)
      line[x] = quantise_dither(gp, row[x], x, y);
    if (EGifPutLine(g, line, W) != GIF_OK)
      return -1;
  }
  return 0;
}

/* Renders and writes each epoch in turn, so memory stays at one frame. */
static int write_frames(const td_run *run, const td_render_opts *o,
                        const td__layout *l, const int *eps, int n,
                        GifFileType *g, gif_palette *gp, td_err *err) {
  cairo_surface_t *s =
      cairo_image_surface_create(CAIRO_FORMAT_RGB24, l->width, l->height);
  uint8_t *line = malloc((size_t)l->width);
  int rc = TD_OK;
  if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS || !line)
    rc = td_err_set(err, TD_ENOMEM, "gif: out of memory");
  int delay = (100 + o->fps / 2) / o->fps;
  /* One view for the whole animation: the union of the epochs' extents,
   * made square, so the picture does not jump in scale between frames. */
  float view[4] = {0};
  for (int i = 0; !rc && i < n; i++) {
    td__frame f;
    rc = td__frame_load(run, eps[i], o, &f, err);
    if (rc)
      break;
    for (int k = 0; k < 4; k++)
      if (i == 0 || (k < 2 ? f.ext[k] < view[k] : f.ext[k] > view[k]))
        view[k] = f.ext[k];
    td__frame_close(&f);
  }
  float half = 0.5f * fmaxf(view[2] - view[0], view[3] - view[1]);
  float cx = 0.5f * (view[0] + view[2]), cy = 0.5f * (view[1] + view[3]);
  view[0] = cx - half, view[2] = cx + half;
  view[1] = cy - half, view[3] = cy + half;
  for (int i = 0; !rc && i < n; i++) {
    if (o->progress)
      o->progress(i, n, o->progress_ctx);
    td__frame f;
    rc = td__frame_load(run, eps[i], o, &f, err);
    if (rc)
      break;
    memcpy(f.ext, view, sizeof view);
    td__frame_draw(run, &f, o, l, s);
    td__frame_close(&f);
    /* Holding the last epoch a moment marks where the loop restarts. */
    int d = i == n - 1 ? 3 * delay : delay;
    if (put_frame(g, gp, s, d, line) != 0)
      rc = td_err_set(err, TD_EIO, "gif: writing epoch %d failed", eps[i]);
  }
  if (!rc && o->progress)
    o->progress(n, n, o->progress_ctx);
  free(line);
  cairo_surface_destroy(s);
  return rc;
}

int td_render_gif(const td_run *run, const td_render_opts *o, td_sink_fn sink,
                  void *ctx, td_err *err) {
  int rc = td_render_opts_check(o, err);
  /* An animation of the whole run: refused, like `tardis info`, when any
   * epoch is damaged, not only the drawn ones. */
  if (!rc)
    rc = td_run_validate(run, NULL, NULL, err);
  if (rc)
    return rc;
  int *eps, n;
  rc = td_render_list_epochs(run, o->method, &eps, &n, err);
  if (rc)
    return rc;
  td__layout l;
  rc = td__layout_compute(run, o, &l, err);
  if (rc || l.width > 65535 || l.height > 65535) {
    free(eps);
    return rc ? rc : td_err_set(err, TD_EARG, "gif: image too large");
  }
  gif_palette gp;
  size_t lut_n = (size_t)1 << (3 * LUT_BITS);
  gp.lut = malloc(lut_n * sizeof *gp.lut);
  if (!gp.lut) {
    free(eps);
    return td_err_set(err, TD_ENOMEM, "gif: out of memory");
  }
  memset(gp.lut, 0xff, lut_n * sizeof *gp.lut);
  palette_build(&gp);
  gif_stream st = {sink, ctx, 0};
  int gerr = 0;
  GifFileType *g = EGifOpen(&st, gif_out, &gerr);
  ColorMapObject *cm = GifMakeMapObject(256, gp.pal);
  if (!g || !cm) {
    rc = td_err_set(err, TD_ENOMEM, "gif: out of memory");
  } else {
    EGifSetGifVersion(g, true);
    if (EGifPutScreenDesc(g, l.width, l.height, 8, 0, cm) != GIF_OK ||
        put_loop(g) != 0)
      rc = td_err_set(err, TD_EIO, "gif: writing the header failed");
  }
  if (!rc)
    rc = write_frames(run, o, &l, eps, n, g, &gp, err);
  if (g && EGifCloseFile(g, &gerr) != GIF_OK && !rc)
    rc = td_err_set(err, TD_EIO, "gif: finishing the file failed: %s",
                    GifErrorString(gerr));
  if (st.failed && (!rc || rc == TD_EIO))
    rc = td_err_set(err, TD_EIO, "gif: the output refused the data");
  GifFreeMapObject(cm);
  free(gp.lut);
  free(eps);
  return rc;
}
