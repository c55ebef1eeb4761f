/* Rendering: frames decoded back and checked pixel by pixel, GIFs decoded
 * with giflib, thumbnails, territory images, errors, and the command.
 *
 * Set TD_RENDER_KEEP=DIR to keep the showcase PNG and GIF for viewing. */
#include <cairo.h>
#include <gif_lib.h>
#include <stdarg.h>
#include <sys/wait.h>

#include "harness.h"
#include "render/render_internal.h"
#include "run/run_json.h"
#include "tardis/fsutil.h"
#include "tardis/render.h"
#include "tardis/run.h"
#include "tardis/territory.h"
#include "toy_run.h"

static uint32_t rng_state = 12345u;
static float frand(void) {
  rng_state = rng_state * 1664525u + 1013904223u;
  return (float)(rng_state >> 8) / (float)(1u << 24);
}
static float gauss(void) {
  float u = frand() + 1e-7f, v = frand();
  return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

/* ---- synthetic runs --------------------------------------------------------
 */

static char *names10[10] = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                            "Coat",        "Sandal",    "Shirt",    "Sneaker",
                            "Bag",         "Ankle boot"};

/* A scene: C classes, N train and M test samples, positions and predictions
 * per epoch, and a territory function. */
typedef struct {
  int C, N, M, n_epochs, res;
  int32_t *label, *tlabel;
  /* per epoch: */
  float *xy, *txy;       /* [N,2], [M,2] */
  int32_t *pred, *tpred; /* [N], [M] */
  float ext[4];
  uint8_t *tcls; /* [res*res] */
  float *tconf;
  double acc, tacc;
} scene;

/* Writes run.json, labels and epoch e with logits that argmax to pred (the
 * representation is the logit vector and the head is the identity). */
static int write_epoch(const char *dir, const scene *s, int e, td_err *err) {
  int C = s->C;
  float *z = calloc((size_t)s->N * C, sizeof *z);
  float *tz = calloc((size_t)s->M * C, sizeof *tz);
  float *w = calloc((size_t)C * C, sizeof *w), *b = calloc((size_t)C, 4);
  for (int i = 0; i < s->N; i++)
    z[(size_t)i * C + s->pred[i]] = 2.0f;
  for (int i = 0; i < s->M; i++)
    tz[(size_t)i * C + s->tpred[i]] = 2.0f;
  for (int i = 0; i < C; i++)
    w[i * C + i] = 1;
  td_epoch_writer *wr;
  int rc = td_epoch_begin(dir, e, &wr, err);
  if (!rc) {
    /* the representations are the logits */
    rc = td_t_toy_reprs(wr, s->N, s->M, C, C, z, tz, z, tz, err);
    json_t *ej = json_pack("{s:i, s:f, s:f}", "epoch", e, "train_acc", s->acc,
                           "test_acc", s->tacc);
    rc = td_t_toy_end(wr, rc, ej, w, b, C, C, err);
  }
  free(z), free(tz), free(w), free(b);
  return rc;
}

static int write_vis(const char *dir, const scene *s, int e, td_err *err) {
  char vd[4096];
  td_t_sfmt(vd, sizeof vd, "%s/vis/dvi/epoch_%04d", dir, e);
  td_territory t = {.res = s->res,
                    .x0 = s->ext[0],
                    .y0 = s->ext[1],
                    .x1 = s->ext[2],
                    .y1 = s->ext[3],
                    .cls = s->tcls,
                    .conf = s->tconf};
  int rc = td_territory_save(&t, vd, err);
  if (!rc)
    rc = td_t_toy_embeddings(vd, s->N, s->M, s->xy, s->txy, err);
  return rc;
}

static int create_run(const char *dir, const scene *s, td_err *err) {
  td_run_meta m;
  memset(&m, 0, sizeof m);
  snprintf(m.name, sizeof m.name, "synthetic blobs");
  m.classes = names10;
  m.n_classes = s->C;
  m.n_train = s->N;
  m.n_test = s->M;
  m.repr_dim = s->C;
  int rc = td_run_create(dir, &m, 1, err);
  td_array a;
  int64_t sn[1] = {s->N}, sm[1] = {s->M};
  td_array_wrap(&a, TD_I32, 1, sn, s->label);
  if (!rc)
    rc = td_run_write_array(dir, "train_labels", &a, err);
  td_array_wrap(&a, TD_I32, 1, sm, s->tlabel);
  if (!rc)
    rc = td_run_write_array(dir, "test_labels", &a, err);
  return rc;
}

static void scene_alloc(scene *s) {
  s->label = calloc((size_t)s->N, 4), s->tlabel = calloc((size_t)s->M, 4);
  s->pred = calloc((size_t)s->N, 4), s->tpred = calloc((size_t)s->M, 4);
  s->xy = calloc((size_t)s->N * 2, 4), s->txy = calloc((size_t)s->M * 2, 4);
  s->tcls = calloc((size_t)s->res * s->res, 1);
  s->tconf = calloc((size_t)s->res * s->res, 4);
}

static void scene_free(scene *s) {
  free(s->label), free(s->tlabel), free(s->pred), free(s->tpred);
  free(s->xy), free(s->txy), free(s->tcls), free(s->tconf);
}

/* The precise scene: extent [-1, 1]², class 0 left of x = 0, class 1 right,
 * confidence 2|x| (a white band |x| < 0.075). A few samples at known
 * places, one of them (label 1, predicted 0) at (-0.5, -0.5). */
static void precise_scene(scene *s) {
  memset(s, 0, sizeof *s);
  s->C = 3, s->N = 6, s->M = 2, s->n_epochs = 3, s->res = 64;
  s->acc = 0.875, s->tacc = 0.5;
  scene_alloc(s);
  float pts[6][2] = {{-0.5f, 0.5f}, {-0.5f, -0.5f}, {0.5f, 0.6f},
                     {0.5f, -0.6f}, {0.5f, 0.0f},   {0.7f, -0.9f}};
  int lab[6] = {0, 1, 1, 1, 1, 2}, pr[6] = {0, 0, 1, 1, 1, 2};
  for (int i = 0; i < 6; i++) {
    s->xy[2 * i] = pts[i][0], s->xy[2 * i + 1] = pts[i][1];
    s->label[i] = lab[i], s->pred[i] = pr[i];
  }
  s->txy[0] = -0.8f, s->txy[1] = 0.8f, s->txy[2] = 0.8f, s->txy[3] = 0.8f;
  s->tlabel[0] = 0, s->tlabel[1] = 1, s->tpred[0] = 0, s->tpred[1] = 0;
  float e[4] = {-1, -1, 1, 1};
  memcpy(s->ext, e, sizeof e);
  for (int r = 0; r < s->res; r++)
    for (int c = 0; c < s->res; c++) {
      float x = -1 + (c + 0.5f) * 2.0f / s->res;
      s->tcls[r * s->res + c] = x < 0 ? 0 : 1;
      s->tconf[r * s->res + c] = fminf(1.0f, 2 * fabsf(x));
    }
}

static int make_precise_run(const char *dir, scene *s, td_err *err) {
  precise_scene(s);
  int rc = create_run(dir, s, err);
  for (int e = 1; !rc && e <= s->n_epochs; e++) {
    rc = write_epoch(dir, s, e, err);
    if (!rc)
      rc = write_vis(dir, s, e, err);
  }
  return rc;
}

/* The showcase: 10 Gaussian blobs on a ring that tighten epoch by epoch,
 * 5 % flipped labels, a territory from the two nearest class centres. */
static void showcase_epoch(scene *s, int e) {
  rng_state = 777u + (uint32_t)e;
  float spread = 0.55f - 0.1f * (float)e;
  float cx[10], cy[10];
  for (int k = 0; k < 10; k++) {
    float a = 6.2831853f * (float)k / 10 + 0.05f * (float)e;
    float rad = 3.0f + 0.6f * (float)(k % 3);
    cx[k] = rad * cosf(a), cy[k] = rad * sinf(a);
  }
  for (int split = 0; split < 2; split++) {
    int n = split ? s->M : s->N;
    float *xy = split ? s->txy : s->xy;
    int32_t *lab = split ? s->tlabel : s->label,
            *pred = split ? s->tpred : s->pred;
    int wrong = 0;
    for (int i = 0; i < n; i++) {
      int k = i % 10;
      float x = cx[k] + spread * 2.2f * gauss(),
            y = cy[k] + spread * 1.4f * gauss();
      xy[2 * i] = x, xy[2 * i + 1] = y;
      if (e == 1)
        lab[i] = (frand() < 0.05f) ? (k + 1 + (int)(frand() * 9)) % 10 : k;
      int best = 0;
      float bd = 1e30f;
      for (int c = 0; c < 10; c++) {
        float d = (x - cx[c]) * (x - cx[c]) + (y - cy[c]) * (y - cy[c]);
        if (d < bd)
          bd = d, best = c;
      }
      pred[i] = best;
      wrong += best != lab[i];
    }
    if (split)
      s->tacc = 1.0 - (double)wrong / n;
    else
      s->acc = 1.0 - (double)wrong / n;
  }
  td_territory_extent(s->xy, s->N, s->ext);
  int R = s->res;
  for (int r = 0; r < R; r++)
    for (int c = 0; c < R; c++) {
      float x = s->ext[0] + (c + 0.5f) * (s->ext[2] - s->ext[0]) / R;
      float y = s->ext[3] - (r + 0.5f) * (s->ext[3] - s->ext[1]) / R;
      float d1 = 1e30f, d2 = 1e30f;
      int k1 = 0;
      for (int k = 0; k < 10; k++) {
        float d = sqrtf((x - cx[k]) * (x - cx[k]) + (y - cy[k]) * (y - cy[k]));
        if (d < d1)
          d2 = d1, d1 = d, k1 = k;
        else if (d < d2)
          d2 = d;
      }
      s->tcls[r * R + c] = (uint8_t)k1;
      s->tconf[r * R + c] = fminf(1.0f, (d2 - d1) / 1.5f);
    }
}

static int make_showcase_run(const char *dir, scene *s, int n, td_err *err) {
  memset(s, 0, sizeof *s);
  s->C = 10, s->N = n, s->M = n / 6, s->n_epochs = 4, s->res = 300;
  scene_alloc(s);
  int rc = TD_OK;
  for (int e = 1; !rc && e <= s->n_epochs; e++) {
    showcase_epoch(s, e);
    if (e == 1)
      rc = create_run(dir, s, err);
    if (!rc)
      rc = write_epoch(dir, s, e, err);
    if (!rc)
      rc = write_vis(dir, s, e, err);
  }
  return rc;
}

/* ---- decoding ---------------------------------------------------------- */

typedef struct {
  const uint8_t *p;
  size_t len, at;
} reader;

static cairo_status_t png_read(void *closure, unsigned char *data,
                               unsigned int len) {
  reader *r = closure;
  if (r->len - r->at < len)
    return CAIRO_STATUS_READ_ERROR;
  memcpy(data, r->p + r->at, len);
  r->at += len;
  return CAIRO_STATUS_SUCCESS;
}

static cairo_surface_t *decode_png(const td_render_buf *b) {
  reader r = {b->data, b->len, 0};
  return cairo_image_surface_create_from_png_stream(png_read, &r);
}

static void pixel(cairo_surface_t *s, int x, int y, int rgb[3]) {
  const uint8_t *d = cairo_image_surface_get_data(s);
  int stride = cairo_image_surface_get_stride(s);
  uint32_t v = ((const uint32_t *)(const void *)(d + (size_t)y * stride))[x];
  rgb[0] = v >> 16 & 255, rgb[1] = v >> 8 & 255, rgb[2] = v & 255;
}

static int gif_read(GifFileType *g, GifByteType *data, int len) {
  reader *r = g->UserData;
  size_t n = r->len - r->at < (size_t)len ? r->len - r->at : (size_t)len;
  memcpy(data, r->p + r->at, n);
  r->at += n;
  return (int)n;
}

/* Pixel position of canvas point (x, y) in a frame. */
static void to_px(const td__layout *l, const float ext[4], float x, float y,
                  int *px, int *py) {
  *px = (int)(l->map_x + (double)((x - ext[0]) / (ext[2] - ext[0])) * l->map);
  *py = (int)(l->map_y + (double)((ext[3] - y) / (ext[3] - ext[1])) * l->map);
}

static void keep(const char *name, const td_render_buf *b) {
  const char *dir = getenv("TD_RENDER_KEEP");
  if (!dir)
    return;
  char p[4096];
  td_t_sfmt(p, sizeof p, "%s/%s", dir, name);
  td_err err;
  if (td_write_file_atomic(p, b->data, b->len, &err))
    fprintf(stderr, "  TD_RENDER_KEEP: %s\n", err.msg);
}

/* ---- tests ------------------------------------------------------------- */

static void test_frame_pixels(void) {
  const char *dir = td_t_tmpdir("render_frame");
  td_err err;
  scene s;
  CHECK_OK(make_precise_run(dir, &s, &err), &err);
  td_run *run;
  CHECK_OK(td_run_open(dir, &run, &err), &err);
  td_render_opts o;
  td_render_opts_init(&o);
  o.size = 512;
  td_render_buf b = {0};
  CHECK_OK(td_render_frame_png(run, 2, &o, td_render_sink_buf, &b, &err), &err);
  keep("precise.png", &b);
  cairo_surface_t *img = decode_png(&b);
  CHECK_INT(cairo_surface_status(img), ==, CAIRO_STATUS_SUCCESS);
  td__layout l;
  CHECK_OK(td__layout_compute(run, &o, &l, &err), &err);
  CHECK_INT(cairo_image_surface_get_width(img), ==, l.width);
  CHECK_INT(cairo_image_surface_get_height(img), ==, l.height);
  CHECK(l.width > 512 && l.height > 512);
  int px, py, c[3];
  /* On the decision boundary, away from samples: the dark grey line. */
  to_px(&l, s.ext, 0.0f, -0.3f, &px, &py);
  pixel(img, px, py, c);
  CHECK(c[0] < 200 && c[1] < 200 && c[2] < 200);
  CHECK(abs(c[0] - c[2]) < 30 && abs(c[1] - c[2]) < 30);
  /* Inside class 0's region but far from every sample: its shade faded
   * into the light grey of "no data" — still bluish, much paler. */
  float want[3];
  td__render_shade(0, 0.9f, want); /* the grid's surest cells */
  to_px(&l, s.ext, -0.75f, 0.0f, &px, &py);
  pixel(img, px, py, c);
  CHECK(c[2] > c[0] + 10);
  CHECK(c[0] > (int)want[0] + 40);
  /* Next to a class-0 sample (8 px left of the one at (-0.5, 0.5), clear of
   * its dot): the strong shade, bluer than the faded one. */
  to_px(&l, s.ext, -0.5f, 0.5f, &px, &py);
  pixel(img, px - 8, py, c);
  CHECK(c[2] > c[0] + 50);
  /* Right side: class 1 (orange) region. */
  to_px(&l, s.ext, 0.75f, 0.3f, &px, &py);
  pixel(img, px, py, c);
  CHECK(c[0] > c[2] + 30);
  /* Mispredicted sample (label 1 orange, predicted 0 blue) at (-0.5,-0.5):
   * blue centre, an orange ring around it on a blue region. */
  to_px(&l, s.ext, -0.5f, -0.5f, &px, &py);
  pixel(img, px, py, c);
  CHECK(c[2] > c[0] + 60);
  int ring = 0;
  for (int dy = -8; dy <= 8; dy++)
    for (int dx = -8; dx <= 8; dx++) {
      pixel(img, px + dx, py + dy, c);
      ring += c[0] > 200 && c[2] < 120;
    }
  CHECK(ring >= 6);
  /* A correct sample of class 0: a blue dot, no orange around it. */
  to_px(&l, s.ext, -0.5f, 0.5f, &px, &py);
  pixel(img, px, py, c);
  CHECK(c[2] > c[0] + 60);
  for (int dy = -8; dy <= 8; dy++)
    for (int dx = -8; dx <= 8; dx++) {
      pixel(img, px + dx, py + dy, c);
      CHECK(!(c[0] > 200 && c[2] < 120));
    }
  /* The title band is white with dark text somewhere in it. */
  int dark = 0;
  for (int y = 0; y < (int)l.title_h; y++)
    for (int x = 0; x < l.width; x++) {
      pixel(img, x, y, c);
      dark += c[0] < 100 && c[1] < 100 && c[2] < 100;
    }
  CHECK(dark > 50);
  cairo_surface_destroy(img);
  td_render_buf_free(&b);
  /* Without the territory the class region is white. */
  o.territory = 0;
  CHECK_OK(td_render_frame_png(run, 1, &o, td_render_sink_buf, &b, &err), &err);
  img = decode_png(&b);
  CHECK_INT(cairo_surface_status(img), ==, CAIRO_STATUS_SUCCESS);
  td_territory_extent(s.xy, s.N, s.ext); /* the extent it then uses */
  to_px(&l, s.ext, -0.7f, 0.0f, &px, &py);
  pixel(img, px, py, c);
  CHECK(c[0] >= 250 && c[1] >= 250 && c[2] >= 250);
  cairo_surface_destroy(img);
  td_render_buf_free(&b);
  /* Both splits: the test sample at (-0.8, 0.8) is drawn (blue square). */
  o.territory = 1;
  o.split = TD_RENDER_BOTH;
  CHECK_OK(td_render_frame_png(run, 3, &o, td_render_sink_buf, &b, &err), &err);
  td__layout lb;
  CHECK_OK(td__layout_compute(run, &o, &lb, &err), &err);
  img = decode_png(&b);
  CHECK_INT(cairo_surface_status(img), ==, CAIRO_STATUS_SUCCESS);
  float e[4] = {-1, -1, 1, 1};
  to_px(&lb, e, -0.8f, 0.8f, &px, &py);
  pixel(img, px, py, c);
  CHECK(c[2] > c[0] + 60);
  cairo_surface_destroy(img);
  td_render_buf_free(&b);
  td_run_close(run);
  scene_free(&s);
}

static void test_gif(void) {
  const char *dir = td_t_tmpdir("render_gif");
  td_err err;
  scene s;
  CHECK_OK(make_precise_run(dir, &s, &err), &err);
  td_run *run;
  CHECK_OK(td_run_open(dir, &run, &err), &err);
  td_render_opts o;
  td_render_opts_init(&o);
  o.size = 200;
  o.fps = 5;
  int calls = 0;
  td_render_buf b = {0};
  CHECK_OK(td_render_gif(run, &o, td_render_sink_buf, &b, &err), &err);
  td__layout l;
  CHECK_OK(td__layout_compute(run, &o, &l, &err), &err);
  reader r = {b.data, b.len, 0};
  int gerr = 0;
  GifFileType *g = DGifOpen(&r, gif_read, &gerr);
  CHECK(g != NULL);
  CHECK_INT(DGifSlurp(g), ==, GIF_OK);
  CHECK_INT(g->ImageCount, ==, s.n_epochs);
  CHECK_INT(g->SWidth, ==, l.width);
  CHECK_INT(g->SHeight, ==, l.height);
  GraphicsControlBlock gcb;
  CHECK_INT(DGifSavedExtensionToGCB(g, 0, &gcb), ==, GIF_OK);
  CHECK_INT(gcb.DelayTime, ==, 20);
  /* The loop extension is on the first frame. */
  int loops = 0;
  SavedImage *f0 = &g->SavedImages[0];
  for (int i = 0; i < f0->ExtensionBlockCount; i++)
    loops |= f0->ExtensionBlocks[i].ByteCount == 11 &&
             !memcmp(f0->ExtensionBlocks[i].Bytes, "NETSCAPE2.0", 11);
  CHECK(loops);
  /* A boundary pixel of the last frame is the dark grey line. */
  int px, py;
  to_px(&l, s.ext, 0.0f, -0.3f, &px, &py);
  const ColorMapObject *cm = g->SColorMap;
  SavedImage *last = &g->SavedImages[g->ImageCount - 1];
  GifColorType col = cm->Colors[last->RasterBits[py * g->SWidth + px]];
  CHECK(col.Red < 200 && col.Green < 200 && col.Blue < 200);
  to_px(&l, s.ext, -0.5f, 0.5f, &px, &py);
  col = cm->Colors[last->RasterBits[py * g->SWidth + px - 8]];
  CHECK(col.Blue > col.Red + 30);
  DGifCloseFile(g, &gerr);
  td_render_buf_free(&b);
  (void)calls;
  td_run_close(run);
  scene_free(&s);
}

static void count_progress(int i, int n, void *ctx) {
  int *c = ctx;
  if (i <= n)
    (*c)++;
}

static void test_showcase(void) {
  const char *dir = td_t_tmpdir("render_show");
  const char *big = getenv("TD_RENDER_N");
  td_err err;
  scene s;
  CHECK_OK(make_showcase_run(dir, &s, big ? atoi(big) : 6000, &err), &err);
  td_run *run;
  CHECK_OK(td_run_open(dir, &run, &err), &err);
  td_render_opts o;
  td_render_opts_init(&o);
  td_render_buf b = {0};
  CHECK_OK(td_render_frame_png(run, 4, &o, td_render_sink_buf, &b, &err), &err);
  keep("showcase.png", &b);
  td_render_buf_free(&b);
  o.split = TD_RENDER_BOTH;
  o.size = 640;
  CHECK_OK(td_render_frame_png(run, 1, &o, td_render_sink_buf, &b, &err), &err);
  keep("showcase_both.png", &b);
  td_render_buf_free(&b);
  o.split = TD_RENDER_TRAIN;
  int calls = 0;
  o.progress = count_progress;
  o.progress_ctx = &calls;
  CHECK_OK(td_render_gif(run, &o, td_render_sink_buf, &b, &err), &err);
  CHECK_INT(calls, ==, s.n_epochs + 1);
  keep("showcase.gif", &b);
  td_render_buf_free(&b);
  /* The bare territory, for the web UI. */
  td_territory t;
  char vd[4096];
  CHECK_OK(td_render_epoch_dir(run, "dvi", 4, vd, sizeof vd, &err), &err);
  CHECK_OK(td_territory_load(vd, &t, &err), &err);
  CHECK_OK(td_render_territory_png(&t, 0, td_render_sink_buf, &b, &err), &err);
  cairo_surface_t *img = decode_png(&b);
  CHECK_INT(cairo_image_surface_get_width(img), ==, 300);
  cairo_surface_destroy(img);
  td_render_buf_free(&b);
  CHECK_OK(td_render_territory_png(&t, 512, td_render_sink_buf, &b, &err),
           &err);
  keep("territory.png", &b);
  img = decode_png(&b);
  CHECK_INT(cairo_image_surface_get_width(img), ==, 512);
  CHECK_INT(cairo_image_surface_get_height(img), ==, 512);
  cairo_surface_destroy(img);
  td_render_buf_free(&b);
  td_territory_free(&t);
  td_run_close(run);
  scene_free(&s);
}

static void test_thumbnail(void) {
  uint8_t g[2 * 3];
  for (int i = 0; i < 6; i++)
    g[i] = (uint8_t)(40 * i);
  td_render_buf b = {0};
  CHECK_OK(td_render_thumbnail_png(g, 1, 2, 3, 4, td_render_sink_buf, &b),
           NULL);
  cairo_surface_t *img = decode_png(&b);
  CHECK_INT(cairo_image_surface_get_width(img), ==, 12);
  CHECK_INT(cairo_image_surface_get_height(img), ==, 8);
  int c[3];
  pixel(img, 11, 7, c); /* source pixel (row 1, col 2) = 200 */
  CHECK(c[0] == 200 && c[1] == 200 && c[2] == 200);
  pixel(img, 4, 0, c); /* (0, 1) = 40 */
  CHECK_INT(c[0], ==, 40);
  cairo_surface_destroy(img);
  td_render_buf_free(&b);
  /* RGB, channels first: one red and one blue pixel. */
  uint8_t rgb[3 * 1 * 2] = {255, 0, 0, 0, 0, 255};
  CHECK_OK(td_render_thumbnail_png(rgb, 3, 1, 2, 1, td_render_sink_buf, &b),
           NULL);
  img = decode_png(&b);
  pixel(img, 0, 0, c);
  CHECK(c[0] == 255 && c[1] == 0 && c[2] == 0);
  pixel(img, 1, 0, c);
  CHECK(c[0] == 0 && c[1] == 0 && c[2] == 255);
  cairo_surface_destroy(img);
  td_render_buf_free(&b);
  /* float32: [0, 1] kept, a standardised image stretched. */
  float f01[2] = {0.0f, 0.5f}, fz[2] = {-2.0f, 2.0f};
  CHECK_OK(td_render_thumbnail_png_f32(f01, 1, 1, 2, 2, td_render_sink_buf, &b),
           NULL);
  img = decode_png(&b);
  pixel(img, 2, 0, c);
  CHECK_NEAR(c[0], 128, 1);
  cairo_surface_destroy(img);
  td_render_buf_free(&b);
  CHECK_OK(td_render_thumbnail_png_f32(fz, 1, 1, 2, 1, td_render_sink_buf, &b),
           NULL);
  img = decode_png(&b);
  pixel(img, 0, 0, c);
  CHECK_INT(c[0], ==, 0);
  pixel(img, 1, 0, c);
  CHECK_INT(c[0], ==, 255);
  cairo_surface_destroy(img);
  td_render_buf_free(&b);
  CHECK_INT(td_render_thumbnail_png(g, 2, 2, 3, 1, td_render_sink_buf, &b), ==,
            TD_EARG);
  CHECK_INT(td_render_thumbnail_png(g, 1, 2, 3, 0, td_render_sink_buf, &b), ==,
            TD_EARG);
  td_render_buf_free(&b);
}

static int failing_sink(void *ctx, const void *data, size_t len) {
  (void)data, (void)len;
  int *budget = ctx;
  return --*budget < 0 ? -1 : 0;
}

/* --mark-noise: asks for the clean labels, and crosses exactly the samples
 * whose label differs from them. */
static void test_marks(void) {
  const char *dir = td_t_tmpdir("render_marks");
  td_err err;
  scene s;
  CHECK_OK(make_precise_run(dir, &s, &err), &err);
  td_run *run;
  CHECK_OK(td_run_open(dir, &run, &err), &err);
  td_render_opts o;
  td_render_opts_init(&o);
  o.mark_noise = 1;
  uint8_t *m = NULL;
  CHECK(td__frame_load_marks(run, &o, &m, &err) == TD_ENOENT);
  CHECK_STR_CONTAINS(err.msg, "--mark-noise needs the clean labels");
  td_run_close(run);
  int64_t n = s.N;
  int32_t *truth = malloc((size_t)n * sizeof *truth);
  for (int64_t i = 0; i < n; i++)
    truth[i] = i == 1 ? (s.label[i] + 1) % s.C : s.label[i];
  char p[4096];
  td_t_sfmt(p, sizeof p, "%s/train_truth.npy", dir);
  CHECK_OK(td_npy_save_raw(p, TD_I32, 1, &n, truth, &err), &err);
  CHECK_OK(td_run_open(dir, &run, &err), &err);
  CHECK_OK(td__frame_load_marks(run, &o, &m, &err), &err);
  for (int64_t i = 0; i < n; i++)
    CHECK_INT(m[i], ==, i == 1 ? TD__MARK_NOISY : 0);
  free(m);
  o.mark_noise = 0;
  CHECK_OK(td__frame_load_marks(run, &o, &m, &err), &err);
  CHECK(m == NULL);
  td_run_close(run);
  free(truth);
  scene_free(&s);
}

static void test_errors(void) {
  const char *dir = td_t_tmpdir("render_err");
  td_err err;
  scene s;
  CHECK_OK(make_precise_run(dir, &s, &err), &err);
  td_run *run;
  CHECK_OK(td_run_open(dir, &run, &err), &err);
  td_render_opts o;
  td_render_opts_init(&o);
  o.size = 128;
  td_render_buf b = {0};
  /* Unknown epoch: the message lists what is projected. */
  CHECK_INT(td_render_frame_png(run, 9, &o, td_render_sink_buf, &b, &err), ==,
            TD_ENOENT);
  CHECK_STR_CONTAINS(err.msg, "epoch 9 is not projected");
  CHECK_STR_CONTAINS(err.msg, "projected: 1-3");
  CHECK_INT(b.len, ==, 0);
  /* Missing method directory. */
  o.method = "pca";
  CHECK_INT(td_render_frame_png(run, 1, &o, td_render_sink_buf, &b, &err), ==,
            TD_ENOENT);
  CHECK_STR_CONTAINS(err.msg, "tardis project --method pca /");
  CHECK_INT(td_render_gif(run, &o, td_render_sink_buf, &b, &err), ==,
            TD_ENOENT);
  o.method = "../x";
  CHECK_INT(td_render_frame_png(run, 1, &o, td_render_sink_buf, &b, &err), ==,
            TD_EARG);
  o.method = "dvi";
  o.size = 10;
  CHECK_INT(td_render_frame_png(run, 1, &o, td_render_sink_buf, &b, &err), ==,
            TD_EARG);
  CHECK_STR_CONTAINS(err.msg, "size 10");
  o.size = 128;
  o.fps = 0;
  CHECK_INT(td_render_gif(run, &o, td_render_sink_buf, &b, &err), ==, TD_EARG);
  o.fps = 4;
  /* A sink that fails midway. */
  int budget = 2;
  CHECK_INT(td_render_frame_png(run, 1, &o, failing_sink, &budget, &err), ==,
            TD_EIO);
  budget = 3;
  CHECK_INT(td_render_gif(run, &o, failing_sink, &budget, &err), ==, TD_EIO);
  /* A missing territory is named, with the way around it. */
  char p[4096];
  td_t_sfmt(p, sizeof p, "%s/vis/dvi/epoch_0002/territory.json", dir);
  CHECK_INT(unlink(p), ==, 0);
  CHECK_INT(td_render_frame_png(run, 2, &o, td_render_sink_buf, &b, &err), ==,
            TD_ENOENT);
  CHECK_STR_CONTAINS(err.msg, "--no-territory");
  o.territory = 0;
  CHECK_OK(td_render_frame_png(run, 2, &o, td_render_sink_buf, &b, &err), &err);
  td_render_buf_free(&b);
  /* An embedding of the wrong shape. */
  td_t_sfmt(p, sizeof p, "%s/vis/dvi/epoch_0003/train_embedding.npy", dir);
  int64_t sh[2] = {s.N - 1, 2};
  CHECK_OK(td_npy_save_raw(p, TD_F32, 2, sh, s.xy, &err), &err);
  CHECK_INT(td_render_frame_png(run, 3, &o, td_render_sink_buf, &b, &err), ==,
            TD_ESHAPE);
  CHECK_STR_CONTAINS(err.msg, "train_embedding.npy");
  td_run_close(run);
  /* No vis directory at all. */
  td_t_sfmt(p, sizeof p, "%s/vis", dir);
  CHECK_OK(td_remove_tree(p, &err), &err);
  CHECK_OK(td_run_open(dir, &run, &err), &err);
  CHECK_INT(td_render_frame_png(run, 1, &o, td_render_sink_buf, &b, &err), ==,
            TD_ENOENT);
  CHECK_STR_CONTAINS(err.msg, "run `tardis project ");
  td_render_buf_free(&b);
  td_run_close(run);
  scene_free(&s);
}

/* Runs the tardis binary; returns its exit status, or -1. */
static int run_cli(const char *args) {
  const char *bin = getenv("TD_BIN");
  char cmd[8192];
  td_t_sfmt(cmd, sizeof cmd, "'%s' render %s 2>/dev/null >/dev/null", bin,
            args);
  int st = system(cmd);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void) {
  const char *bin = getenv("TD_BIN");
  if (!bin)
    SKIP("TD_BIN is not set (ctest sets it to the tardis binary)");
  CHECK(td_path_exists(bin));
  CHECK_INT(run_cli("--help"), ==, 0);
  const char *dir = td_t_tmpdir("render_cli");
  td_err err;
  scene s;
  CHECK_OK(make_precise_run(dir, &s, &err), &err);
  scene_free(&s);
  char a[8192], out[4096];
  td_t_sfmt(out, sizeof out, "%s/e2.png", dir);
  td_t_sfmt(a, sizeof a, "'%s' --epoch 2 --out '%s' --size 200", dir, out);
  CHECK_INT(run_cli(a), ==, 0);
  CHECK(td_path_exists(out));
  td_t_sfmt(out, sizeof out, "%s/t.gif", dir);
  td_t_sfmt(a, sizeof a, "'%s' --gif '%s' --size 128 --fps 2", dir, out);
  CHECK_INT(run_cli(a), ==, 0);
  CHECK(td_path_exists(out));
  td_t_sfmt(out, sizeof out, "%s/bad.png", dir);
  td_t_sfmt(a, sizeof a, "'%s' --epoch 7 --out '%s'", dir, out);
  CHECK_INT(run_cli(a), ==, 1);
  CHECK(!td_path_exists(out));
  td_t_sfmt(a, sizeof a, "'%s' --epoch 1 --out '%s' --size 5", dir, out);
  CHECK_INT(run_cli(a), ==, 2);
  td_t_sfmt(a, sizeof a, "'%s' --epoch 1", dir);
  CHECK_INT(run_cli(a), ==, 2);
  td_t_sfmt(a, sizeof a, "'%s' --epoch 1 --out '%s' --split nope", dir, out);
  CHECK_INT(run_cli(a), ==, 2);
  /* Nothing half-written is left next to the target. */
  td_t_sfmt(a, sizeof a, "ls '%s' | grep -q '\\.tmp\\.'", dir);
  CHECK(system(a) != 0);
}

int main(void) {
  RUN(test_frame_pixels);
  RUN(test_gif);
  RUN(test_showcase);
  RUN(test_thumbnail);
  RUN(test_marks);
  RUN(test_errors);
  RUN(test_cli);
  td_render_shutdown();
  return td_t_finish();
}
