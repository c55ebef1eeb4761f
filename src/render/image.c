/* Sinks, PNG output through them, territory images and sample thumbnails. */
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "render/render_internal.h"

int td_render_sink_buf(void *ctx, const void *data, size_t len) {
  td_render_buf *b = ctx;
  if (len > SIZE_MAX - b->len)
    return -1;
  if (b->len + len > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + len)
      cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p)
      return -1;
    b->data = p;
    b->cap = cap;
  }
  if (len)
    memcpy(b->data + b->len, data, len);
  b->len += len;
  return 0;
}

void td_render_buf_free(td_render_buf *b) {
  if (!b)
    return;
  free(b->data);
  memset(b, 0, sizeof *b);
}

int td_render_sink_file(void *ctx, const void *data, size_t len) {
  return fwrite(data, 1, len, (FILE *)ctx) == len ? 0 : -1;
}

void td_render_opts_init(td_render_opts *o) {
  memset(o, 0, sizeof *o);
  o->method = "dvi";
  o->size = 1024;
  o->split = TD_RENDER_TRAIN;
  o->territory = 1;
  o->fps = 4;
}

int td_render_opts_check(const td_render_opts *o, td_err *err) {
  if (o->size < TD_RENDER_MIN_SIZE || o->size > TD_RENDER_MAX_SIZE)
    return td_err_set(err, TD_EARG, "size %d: must be %d to %d pixels", o->size,
                      TD_RENDER_MIN_SIZE, TD_RENDER_MAX_SIZE);
  if (o->fps < 1 || o->fps > 100)
    return td_err_set(err, TD_EARG,
                      "fps %d: must be 1 to 100 frames per second", o->fps);
  if ((unsigned)o->split >= TD_RENDER_SPLIT_COUNT)
    return td_err_set(err, TD_EARG, "split %d: must be train, test or both",
                      (int)o->split);
  /* The method names a directory under RUN/vis: never a path. */
  const char *m = o->method;
  if (!m || !*m || m[0] == '.' || strchr(m, '/') || strlen(m) > 64)
    return td_err_set(err, TD_EARG,
                      "method \"%s\": expected a plain name such "
                      "as dvi or pca",
                      m ? m : "(null)");
  return TD_OK;
}

typedef struct {
  td_sink_fn sink;
  void *ctx;
  int failed;
} png_stream;

static cairo_status_t png_write_cb(void *closure, const unsigned char *data,
                                   unsigned int len) {
  png_stream *p = closure;
  if (p->sink(p->ctx, data, len) != 0) {
    p->failed = 1;
    return CAIRO_STATUS_WRITE_ERROR;
  }
  return CAIRO_STATUS_SUCCESS;
}

int td__render_write_png(cairo_surface_t *s, td_sink_fn sink, void *ctx,
                         const char *what, td_err *err) {
  if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS)
    return td_err_set(err, TD_ENOMEM, "%s: cannot create the image: %s", what,
                      cairo_status_to_string(cairo_surface_status(s)));
  png_stream p = {sink, ctx, 0};
  cairo_status_t st = cairo_surface_write_to_png_stream(s, png_write_cb, &p);
  if (p.failed)
    return td_err_set(err, TD_EIO, "%s: the output refused the PNG data", what);
  if (st != CAIRO_STATUS_SUCCESS)
    return td_err_set(err, st == CAIRO_STATUS_NO_MEMORY ? TD_ENOMEM : TD_EIO,
                      "%s: writing the PNG failed: %s", what,
                      cairo_status_to_string(st));
  return TD_OK;
}

static uint32_t pack_rgb(const uint8_t *p) {
  return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}

float td__render_conf_max(const td_territory *t) {
  size_t cells = (size_t)t->res * (size_t)t->res;
  float m = TD_TERRITORY_BOUNDARY_CONF;
  for (size_t i = 0; i < cells; i++)
    m = t->conf[i] > m ? t->conf[i] : m;
  return m;
}

void td__render_shade(int cls, float s, float rgb[3]) {
  const uint8_t *p = td_tab10[(cls < 0 ? 0 : cls) % 10];
  float k = TD__RENDER_TINT * (s < 0 ? 0 : s > 0.9f ? 0.9f : s);
  for (int ch = 0; ch < 3; ch++)
    rgb[ch] = k * (float)p[ch] + (1 - k) * 255.0f;
}

static uint8_t clamp_u8(float v) {
  return (uint8_t)(v <= 0 ? 0 : v >= 255 ? 255 : lrintf(v));
}

/* Colour of output pixel (px, py) of a size × size rendering. The
 * confidence is interpolated bilinearly and the boundary threshold applied
 * to it with a one-pixel ramp, so the white boundaries come out as smooth
 * antialiased curves instead of the grid's staircase. The class is the
 * nearest cell's: it only changes where the confidence is low (white), so
 * its hard switch does not show. */
static uint32_t territory_px(const td_territory *t, double scale, float cmax,
                             int px, int py) {
  int R = t->res;
  double gx = (px + 0.5) * scale - 0.5, gy = (py + 0.5) * scale - 0.5;
  gx = gx < 0 ? 0 : gx > R - 1 ? R - 1 : gx;
  gy = gy < 0 ? 0 : gy > R - 1 ? R - 1 : gy;
  int x0 = (int)gx, y0 = (int)gy;
  int x1 = x0 + 1 < R ? x0 + 1 : x0, y1 = y0 + 1 < R ? y0 + 1 : y0;
  double fx = gx - x0, fy = gy - y0;
  const float *cf = t->conf;
  double c00 = cf[(size_t)y0 * R + x0], c10 = cf[(size_t)y0 * R + x1];
  double c01 = cf[(size_t)y1 * R + x0], c11 = cf[(size_t)y1 * R + x1];
  if (!(c00 == c00))
    c00 = 0; /* NaN cells are undecided */
  if (!(c10 == c10))
    c10 = 0;
  if (!(c01 == c01))
    c01 = 0;
  if (!(c11 == c11))
    c11 = 0;
  double conf =
      (1 - fy) * ((1 - fx) * c00 + fx * c10) + fy * ((1 - fx) * c01 + fx * c11);
  /* Confidence change across one output pixel sets the ramp width. */
  double dx = ((1 - fy) * (c10 - c00) + fy * (c11 - c01)) * scale;
  double dy = ((1 - fx) * (c01 - c00) + fx * (c11 - c10)) * scale;
  double w = fabs(dx) + fabs(dy) + 1e-6;
  double a = (conf - (double)TD_TERRITORY_BOUNDARY_CONF) / w + 0.5;
  a = a < 0 ? 0 : a > 1 ? 1 : a;
  int cx = fx < 0.5 ? x0 : x1, cy = fy < 0.5 ? y0 : y1;
  float rgb[3];
  /* Shade at or above the threshold; the ramp blends it into white. */
  float cc = (float)conf > TD_TERRITORY_BOUNDARY_CONF
                 ? (float)conf
                 : TD_TERRITORY_BOUNDARY_CONF;
  td__render_shade(t->cls[(size_t)cy * R + cx], 0.9f * cc / cmax, rgb);
  uint8_t out[3];
  for (int ch = 0; ch < 3; ch++)
    out[ch] = clamp_u8((float)(a * (double)rgb[ch] + (1 - a) * 255.0));
  return pack_rgb(out);
}

cairo_surface_t *td__render_territory_surface(const td_territory *t, int size) {
  if (size <= 0)
    size = t->res;
  cairo_surface_t *s =
      cairo_image_surface_create(CAIRO_FORMAT_RGB24, size, size);
  if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) {
    cairo_surface_destroy(s);
    return NULL;
  }
  cairo_surface_flush(s);
  uint8_t *base = cairo_image_surface_get_data(s);
  int stride = cairo_image_surface_get_stride(s);
  double scale = (double)t->res / size;
  float cmax = td__render_conf_max(t);
  for (int y = 0; y < size; y++) {
    uint32_t *row = (uint32_t *)(void *)(base + (size_t)y * stride);
    for (int x = 0; x < size; x++)
      row[x] = territory_px(t, scale, cmax, x, y);
  }
  cairo_surface_mark_dirty(s);
  return s;
}

int td_render_territory_png(const td_territory *t, int size, td_sink_fn sink,
                            void *ctx, td_err *err) {
  if (!t || t->res < 1 || !t->cls || !t->conf)
    return td_err_set(err, TD_EARG, "territory image: empty territory");
  if (size > TD_RENDER_MAX_SIZE)
    return td_err_set(err, TD_EARG, "territory image: size %d exceeds %d", size,
                      TD_RENDER_MAX_SIZE);
  cairo_surface_t *s = td__render_territory_surface(t, size);
  if (!s)
    return td_err_set(err, TD_ENOMEM, "territory image: out of memory");
  int rc = td__render_write_png(s, sink, ctx, "territory image", err);
  cairo_surface_destroy(s);
  return rc;
}

/* Writes a c × h × w image given as 0..255 bytes (already converted). */
static int thumb_write(const uint8_t *px, int c, int h, int w, int scale,
                       td_sink_fn sink, void *ctx) {
  int W = w * scale, H = h * scale;
  cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
  if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) {
    cairo_surface_destroy(s);
    return TD_ENOMEM;
  }
  cairo_surface_flush(s);
  uint8_t *base = cairo_image_surface_get_data(s);
  int stride = cairo_image_surface_get_stride(s);
  size_t plane = (size_t)h * (size_t)w;
  for (int y = 0; y < H; y++) {
    uint32_t *row = (uint32_t *)(void *)(base + (size_t)y * stride);
    for (int x = 0; x < W; x++) {
      size_t i = (size_t)(y / scale) * w + (size_t)(x / scale);
      uint8_t rgb[3];
      for (int ch = 0; ch < 3; ch++)
        rgb[ch] = px[(c == 3 ? (size_t)ch * plane : 0) + i];
      row[x] = pack_rgb(rgb);
    }
  }
  cairo_surface_mark_dirty(s);
  int rc = td__render_write_png(s, sink, ctx, "thumbnail", NULL);
  cairo_surface_destroy(s);
  return rc;
}

static int thumb_check(const void *pixels, int c, int h, int w, int scale,
                       td_sink_fn sink) {
  if (!pixels || !sink || (c != 1 && c != 3) || h < 1 || w < 1 || scale < 1 ||
      scale > 64 || h > TD_RENDER_MAX_SIZE / scale ||
      w > TD_RENDER_MAX_SIZE / scale)
    return TD_EARG;
  return TD_OK;
}

int td_render_thumbnail_png(const uint8_t *pixels, int c, int h, int w,
                            int scale, td_sink_fn sink, void *ctx) {
  int rc = thumb_check(pixels, c, h, w, scale, sink);
  return rc ? rc : thumb_write(pixels, c, h, w, scale, sink, ctx);
}

int td_render_thumbnail_png_f32(const float *pixels, int c, int h, int w,
                                int scale, td_sink_fn sink, void *ctx) {
  int rc = thumb_check(pixels, c, h, w, scale, sink);
  if (rc)
    return rc;
  size_t n = (size_t)c * h * w;
  float lo = INFINITY, hi = -INFINITY;
  for (size_t i = 0; i < n; i++)
    if (isfinite(pixels[i])) {
      lo = pixels[i] < lo ? pixels[i] : lo;
      hi = pixels[i] > hi ? pixels[i] : hi;
    }
  /* Inputs already in [0, 1] keep their absolute brightness; anything else
   * (standardised inputs) is stretched to its own range. */
  float off = 0, mul = 255.0f;
  if (!(lo >= 0 && hi <= 1)) {
    off = isfinite(lo) ? lo : 0;
    mul = hi > lo ? 255.0f / (hi - lo) : 0;
  }
  uint8_t *px = malloc(n);
  if (!px)
    return TD_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    float v = isfinite(pixels[i]) ? (pixels[i] - off) * mul : 0;
    px[i] = (uint8_t)(v <= 0 ? 0 : v >= 255 ? 255 : lrintf(v));
  }
  rc = thumb_write(px, c, h, w, scale, sink, ctx);
  free(px);
  return rc;
}

void td_render_shutdown(void) {
  cairo_debug_reset_static_data();
  /* fontconfig comes in through cairo and is not linked directly: look its
   * finaliser up rather than add a link dependency for one call. */
  void (*fini)(void) = NULL;
  *(void **)(&fini) = dlsym(RTLD_DEFAULT, "FcFini");
  if (fini)
    fini();
}
