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

/* Bilinear sampling of an R × R grid at grid coordinates (gx, gy). */
typedef struct {
  size_t i00, i10, i01, i11;
  double fx, fy;
} bilin;

static bilin bilin_at(int R, double gx, double gy) {
  gx = gx < 0 ? 0 : gx > R - 1 ? R - 1 : gx;
  gy = gy < 0 ? 0 : gy > R - 1 ? R - 1 : gy;
  int x0 = (int)gx, y0 = (int)gy;
  int x1 = x0 + 1 < R ? x0 + 1 : x0, y1 = y0 + 1 < R ? y0 + 1 : y0;
  bilin b = {(size_t)y0 * R + x0,
             (size_t)y0 * R + x1,
             (size_t)y1 * R + x0,
             (size_t)y1 * R + x1,
             gx - x0,
             gy - y0};
  return b;
}

/* Value at b of the four corner values v, and its change per grid cell
 * along x and y. */
static double bilin_eval(const bilin *b, const double v[4], double *dx,
                         double *dy) {
  double fx = b->fx, fy = b->fy;
  *dx = (1 - fy) * (v[1] - v[0]) + fy * (v[3] - v[2]);
  *dy = (1 - fx) * (v[2] - v[0]) + fx * (v[3] - v[1]);
  return (1 - fy) * ((1 - fx) * v[0] + fx * v[1]) +
         fy * ((1 - fx) * v[2] + fx * v[3]);
}

static double conf_at(const td_territory *t, size_t i) {
  double c = t->conf[i];
  return c == c ? c : 0; /* NaN cells are undecided */
}

/* Colour of output pixel (px, py); sx, sy: grid cells per output pixel.
 *  - class: the nearest cell's, shaded by the confidence interpolated
 *    bilinearly — pale where the classifier is unsure, never white;
 *  - decision boundary: a thin antialiased dark line where the class
 *    changes, the zero crossing of the confidence signed by "same class as
 *    this pixel's" (smooth curves, not the grid's staircase);
 *  - no data: where t->near falls towards 0 the colour fades into a light
 *    grey with diagonal hatching, so extrapolated territory far from every
 *    sample does not read like the model's opinion. */
static uint32_t territory_px(const td_territory *t, double sx, double sy,
                             float cmax, int px, int py) {
  int R = t->res;
  bilin b = bilin_at(R, (px + 0.5) * sx - 0.5, (py + 0.5) * sy - 0.5);
  size_t idx[4] = {b.i00, b.i10, b.i01, b.i11};
  size_t near_i = idx[(b.fy >= 0.5) * 2 + (b.fx >= 0.5)];
  int cls = t->cls[near_i];
  double cv[4], sv[4], nv[4], dx, dy;
  for (int k = 0; k < 4; k++) {
    cv[k] = conf_at(t, idx[k]);
    /* +0.02: two classes meeting at zero confidence still cross zero */
    sv[k] = (t->cls[idx[k]] == cls ? 1 : -1) * (cv[k] + 0.02);
    nv[k] = t->near ? t->near[idx[k]] : 1;
  }
  double conf = bilin_eval(&b, cv, &dx, &dy);
  double sg = bilin_eval(&b, sv, &dx, &dy);
  double grad = fabs(dx) * sx + fabs(dy) * sy; /* change per output px */
  double line = 1.1 - fabs(sg) / (grad + 1e-9);
  line = line < 0 ? 0 : line > 1 ? 1 : line;
  double nr = bilin_eval(&b, nv, &dx, &dy);
  nr = nr < 0 ? 0 : nr > 1 ? 1 : nr;
  float rgb[3];
  td__render_shade(cls, (float)(0.12 + 0.88 * conf / (double)cmax), rgb);
  /* hatching of "no data": 1-px diagonals every 7 px */
  double far_base = ((px + py) % 7 == 0) ? 205.0 : 242.0;
  uint8_t out[3];
  for (int ch = 0; ch < 3; ch++) {
    double c = rgb[ch];
    double v = nr * c + (1 - nr) * (0.25 * c + 0.75 * far_base);
    v = line * 70.0 * 0.6 + (1 - line * 0.6) * v;
    out[ch] = clamp_u8((float)v);
  }
  return pack_rgb(out);
}

cairo_surface_t *td__render_territory_surface_wh(const td_territory *t,
                                                 int width, int height) {
  cairo_surface_t *s =
      cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
  if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) {
    cairo_surface_destroy(s);
    return NULL;
  }
  cairo_surface_flush(s);
  uint8_t *base = cairo_image_surface_get_data(s);
  int stride = cairo_image_surface_get_stride(s);
  double sx = (double)t->res / width, sy = (double)t->res / height;
  float cmax = td__render_conf_max(t);
  for (int y = 0; y < height; y++) {
    uint32_t *row = (uint32_t *)(void *)(base + (size_t)y * stride);
    for (int x = 0; x < width; x++)
      row[x] = territory_px(t, sx, sy, cmax, x, y);
  }
  cairo_surface_mark_dirty(s);
  return s;
}

cairo_surface_t *td__render_territory_surface(const td_territory *t, int size) {
  if (size <= 0)
    size = t->res;
  return td__render_territory_surface_wh(t, size, size);
}

int td_render_territory_png_wh(const td_territory *t, int width, int height,
                               td_sink_fn sink, void *ctx, td_err *err) {
  if (!t || t->res < 1 || !t->cls || !t->conf)
    return td_err_set(err, TD_EARG, "territory image: empty territory");
  if (width <= 0 || height <= 0)
    width = height = t->res;
  if (width > TD_RENDER_MAX_SIZE || height > TD_RENDER_MAX_SIZE)
    return td_err_set(err, TD_EARG, "territory image: size %d×%d exceeds %d",
                      width, height, TD_RENDER_MAX_SIZE);
  cairo_surface_t *s = td__render_territory_surface_wh(t, width, height);
  if (!s)
    return td_err_set(err, TD_ENOMEM, "territory image: out of memory");
  int rc = td__render_write_png(s, sink, ctx, "territory image", err);
  cairo_surface_destroy(s);
  return rc;
}

int td_render_territory_png(const td_territory *t, int size, td_sink_fn sink,
                            void *ctx, td_err *err) {
  if (size > TD_RENDER_MAX_SIZE)
    return td_err_set(err, TD_EARG, "territory image: size %d exceeds %d", size,
                      TD_RENDER_MAX_SIZE);
  return td_render_territory_png_wh(t, size, size, sink, ctx, err);
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
