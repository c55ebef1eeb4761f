/* One projected epoch as a picture: finding and loading what it shows,
 * laying it out, drawing it with cairo, and writing it as a PNG. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "render/render_internal.h"
#include "run/run_json.h"
#include "tardis/fsutil.h"
#include "tardis/vis.h"

#define FONT_FACE "DejaVu Sans"

/* ---- which epochs are projected ----------------------------------------- */

/* "1-12, 15, 20": runs of consecutive epochs collapse into ranges. */
static void format_epochs(const int *e, int n, char *buf, size_t len) {
  size_t at = 0;
  buf[0] = 0;
  for (int i = 0; i < n && at < len; i++) {
    int j = i;
    while (j + 1 < n && e[j + 1] == e[j] + 1)
      j++;
    int w = j > i ? snprintf(buf + at, len - at, "%s%d-%d", i ? ", " : "", e[i],
                             e[j])
                  : snprintf(buf + at, len - at, "%s%d", i ? ", " : "", e[i]);
    if (w < 0 || (size_t)w >= len - at) {
      /* Out of room: end with an ellipsis where it still fits. */
      if (len > 4)
        strcpy(buf + len - 4, "...");
      return;
    }
    at += (size_t)w;
    i = j;
  }
}

static int no_projection(const td_run *run, const char *method, const char *why,
                         td_err *err) {
  char dir[TD_PATH_MAX];
  int rc = td_vis_method_dir(td_run_dir(run), method, dir, sizeof dir, err);
  if (rc)
    return rc;
  int dvi = !strcmp(method, "dvi"); /* the default needs no --method */
  return td_err_set(err, TD_ENOENT,
                    "%s: %s; run `tardis project %s%s%s%s` first", dir, why,
                    dvi ? "" : "--method ", dvi ? "" : method, dvi ? "" : " ",
                    td_run_dir(run));
}

int td_render_list_epochs(const td_run *run, const char *method, int **epochs,
                          int *n, td_err *err) {
  int rc = td_vis_list_epochs(run, method, epochs, n, err);
  if (rc == TD_ENOENT)
    return no_projection(run, method, "no projection", err);
  if (rc == TD_OK && *n == 0)
    return no_projection(run, method, "no projected epoch", err);
  return rc;
}

int td_render_epoch_dir(const td_run *run, const char *method, int epoch,
                        char *buf, size_t len, td_err *err) {
  int *eps, n;
  int rc = td_render_list_epochs(run, method, &eps, &n, err);
  if (rc)
    return rc;
  int found = 0;
  for (int i = 0; i < n; i++)
    found |= eps[i] == epoch;
  if (!found) {
    char list[512];
    format_epochs(eps, n, list, sizeof list);
    free(eps);
    return td_err_set(err, TD_ENOENT,
                      "epoch %d is not projected by %s (projected: %s)", epoch,
                      method, list);
  }
  free(eps);
  return td_vis_epoch_find(run, method, epoch, buf, len, err);
}

/* ---- loading a frame ----------------------------------------------------- */

/* Argmax of each row of the epoch's logits (ties: the smaller class). */
static int load_pred(const td_run *run, int epoch, const char *name, int64_t n,
                     int32_t **out, td_err *err) {
  td_array z;
  int rc = td_run_load_f32(run, epoch, name, &z, err);
  if (rc)
    return rc;
  int64_t C = z.ndim == 2 ? z.shape[1] : 0;
  if (z.ndim != 2 || z.shape[0] != n || C < 1) {
    td_array_close(&z);
    return td_err_set(err, TD_ESHAPE, "epoch %d: %s: expected %lld rows", epoch,
                      name, (long long)n);
  }
  int32_t *p = malloc((size_t)(n ? n : 1) * sizeof *p);
  if (!p) {
    td_array_close(&z);
    return td_err_set(err, TD_ENOMEM, "epoch %d: %s: out of memory", epoch,
                      name);
  }
  const float *zd = z.data;
  for (int64_t i = 0; i < n; i++) {
    const float *row = zd + i * C;
    int32_t best = 0;
    for (int64_t c = 1; c < C; c++)
      if (row[c] > row[best])
        best = (int32_t)c;
    p[i] = best;
  }
  td_array_close(&z);
  *out = p;
  return TD_OK;
}

static double json_num(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  return json_is_number(v) ? json_number_value(v) : (double)NAN;
}

static int load_test(const td_run *run, int epoch, const char *dir,
                     td__frame *f, td_err *err) {
  int64_t m = td_run_get_meta(run)->n_test;
  if (m <= 0)
    return td_err_set(err, TD_ENOENT, "%s: the run has no test set",
                      td_run_dir(run));
  int rc = td_vis_load_embedding_in(dir, "test", m, &f->test_xy, err);
  if (rc == TD_ENOENT)
    td_err_prefix(err, "no projected test samples");
  if (!rc)
    rc = td_run_load(run, -1, "test_labels", &f->test_labels, err);
  if (!rc && td_run_has(run, epoch, "test_logits"))
    rc = load_pred(run, epoch, "test_logits", m, &f->test_pred, err);
  return rc;
}

int td__frame_load(const td_run *run, int epoch, const td_render_opts *o,
                   td__frame *f, td_err *err) {
  memset(f, 0, sizeof *f);
  f->epoch = epoch;
  f->train_acc = f->test_acc = NAN;
  f->draw_train = o->split != TD_RENDER_TEST;
  f->draw_test = o->split != TD_RENDER_TRAIN;
  const td_run_meta *meta = td_run_get_meta(run);
  char dir[TD_PATH_MAX];
  int rc = td_render_epoch_dir(run, o->method, epoch, dir, sizeof dir, err);
  if (!rc)
    rc = td_run_validate_top(run, err);
  if (!rc)
    rc = td_run_validate_epoch(run, epoch, err);
  if (!rc && o->territory) {
    rc = td_territory_load(dir, &f->terr, err);
    if (rc == TD_ENOENT && err)
      td_err_prefix(err, "no territory (draw without: --no-territory)");
  }
  /* The training embedding fixes the extent even when it is not drawn. */
  if (!rc)
    rc = td_vis_load_embedding_in(dir, "train", meta->n_train, &f->train_xy,
                                  err);
  if (!rc && f->draw_train)
    rc = load_pred(run, epoch, "train_logits", meta->n_train, &f->train_pred,
                   err);
  if (!rc && f->draw_test)
    rc = load_test(run, epoch, dir, f, err);
  if (!rc && f->draw_train)
    rc = td__frame_load_marks(run, o, &f->train_mark, err);
  if (rc) {
    td__frame_close(f);
    return rc;
  }
  if (f->terr.res) {
    const float *y = f->train_xy.data;
    int64_t n = f->train_xy.shape[0];
    if (td_territory_set_data(&f->terr, y, n, td_territory_data_radius(y, n))) {
      td__frame_close(f);
      return td_err_set(err, TD_ENOMEM, "render: out of memory");
    }
    f->ext[0] = f->terr.x0, f->ext[1] = f->terr.y0;
    f->ext[2] = f->terr.x1, f->ext[3] = f->terr.y1;
  } else {
    td_territory_extent(f->train_xy.data, meta->n_train > 0 ? meta->n_train : 0,
                        f->ext);
  }
  json_t *ej = NULL;
  if (td__run_load_epoch_json(run, epoch, &ej, NULL) == TD_OK) {
    f->train_acc = json_num(ej, "train_acc");
    f->test_acc = json_num(ej, "test_acc");
    json_decref(ej);
  }
  return TD_OK;
}

void td__frame_close(td__frame *f) {
  td_territory_free(&f->terr);
  td_array_close(&f->train_xy);
  td_array_close(&f->test_xy);
  td_array_close(&f->test_labels);
  free(f->train_pred);
  free(f->test_pred);
  free(f->train_mark);
  memset(f, 0, sizeof *f);
}

/* ---- layout -------------------------------------------------------------- */

static void set_font(cairo_t *cr, double px, int bold) {
  cairo_select_font_face(cr, FONT_FACE, CAIRO_FONT_SLANT_NORMAL,
                         bold ? CAIRO_FONT_WEIGHT_BOLD
                              : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, px);
}

static double text_w(cairo_t *cr, const char *s) {
  cairo_text_extents_t e;
  cairo_text_extents(cr, s, &e);
  return e.x_advance;
}

/* Legend texts other than the class names. */
static const char *const k_correct = "correct";
static const char *const k_wrong = "mispredicted";
static const char *const k_wrong2 = "ring: label, dot: prediction";
static const char *const k_test = "test sample";
static const char *const k_bound = "decision boundary";
static const char *const k_unsure = "model unsure";
static const char *const k_nodata = "no data nearby";
static const char *const k_noisy = "noisy label";
static const char *const k_suspect = "accepted suspect";

int td__layout_compute(const td_run *run, const td_render_opts *o,
                       td__layout *l, td_err *err) {
  memset(l, 0, sizeof *l);
  const td_run_meta *m = td_run_get_meta(run);
  l->map = o->size;
  l->font = fmax(10.0, floor(o->size / 60.0));
  l->pad = round(l->font * 1.2);
  l->title_h = round(l->font * 2.8);
  l->map_x = l->pad;
  l->map_y = l->title_h;
  l->legend_x = l->map_x + l->map + round(l->font * 1.5);
  l->n_classes = m->n_classes;
  l->test_marker = o->split == TD_RENDER_BOTH;
  l->mark_noise = o->mark_noise && o->split != TD_RENDER_TEST;
  l->mark_suspects = o->mark_suspects && o->split != TD_RENDER_TEST;
  cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1);
  cairo_t *cr = cairo_create(s);
  set_font(cr, l->font, 0);
  double wmax = 0;
  const char *const fixed[] = {k_correct, k_wrong,  k_test,  k_bound,
                               k_unsure,  k_nodata, k_noisy, k_suspect};
  for (int i = 0; i < m->n_classes; i++)
    wmax = fmax(wmax, text_w(cr, m->classes[i]));
  for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
    wmax = fmax(wmax, text_w(cr, fixed[i]));
  set_font(cr, l->font * 0.8, 0);
  wmax = fmax(wmax, text_w(cr, k_wrong2));
  int bad = cairo_status(cr) != CAIRO_STATUS_SUCCESS;
  cairo_destroy(cr);
  cairo_surface_destroy(s);
  if (bad)
    return td_err_set(err, TD_ENOMEM, "render: cannot measure text");
  double swatch = l->font * 1.6;
  l->width =
      (int)ceil(l->legend_x + swatch + fmin(wmax, 30 * l->font) + l->pad);
  l->height = (int)ceil(l->map_y + l->map + l->pad);
  return TD_OK;
}

/* ---- drawing ---------------------------------------------------------------
 */

static void tab10(int k, double rgb[3]) {
  const uint8_t *p = td_tab10[(k < 0 ? 0 : k) % 10];
  for (int i = 0; i < 3; i++)
    rgb[i] = p[i] / 255.0;
}

typedef struct {
  double r, alpha;        /* dot radius (px) and opacity */
  double ring_r, ring_lw; /* ring around a mispredicted dot */
  double ring_alpha;
  double sx, sy, ox, oy; /* canvas -> pixel: px = ox + sx·x */
} marks;

static void marker_path(cairo_t *cr, double x, double y, double r, int square) {
  cairo_new_path(cr);
  if (square)
    cairo_rectangle(cr, x - 0.9 * r, y - 0.9 * r, 1.8 * r, 1.8 * r);
  else
    cairo_arc(cr, x, y, r, 0, 2 * M_PI);
}

static void draw_mark(cairo_t *cr, const marks *mk, double x, double y,
                      int label, int pred, int square) {
  double c[3];
  tab10(pred, c);
  cairo_set_source_rgba(cr, c[0], c[1], c[2], mk->alpha);
  marker_path(cr, x, y, mk->r, square);
  cairo_fill(cr);
  if (pred == label)
    return;
  tab10(label, c);
  cairo_set_source_rgba(cr, c[0], c[1], c[2], mk->ring_alpha);
  cairo_set_line_width(cr, mk->ring_lw);
  marker_path(cr, x, y, mk->ring_r, square);
  cairo_stroke(cr);
}

static int64_t gcd64(int64_t a, int64_t b) {
  while (b) {
    int64_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

/* Draws n samples in two passes, correct ones first so that the mispredicted
 * stay visible on top. Within a pass the order is a fixed permutation
 * (stride coprime to n): data sorted by class would otherwise paint one
 * class over all the others. */
static void draw_samples(cairo_t *cr, const marks *mk, const float *xy,
                         const int32_t *label, const int32_t *pred, int64_t n,
                         int square) {
  int64_t step = 7919;
  while (n > 1 && gcd64(step, n) != 1)
    step += 2;
  for (int pass = 0; pass < 2; pass++)
    for (int64_t k = 0, i = 0; k < n; k++, i = (i + step) % n) {
      int lab = label[i], pr = pred ? pred[i] : lab;
      if ((pr != lab) != pass)
        continue;
      float x = xy[2 * i], y = xy[2 * i + 1];
      if (!isfinite(x) || !isfinite(y))
        continue;
      draw_mark(cr, mk, mk->ox + mk->sx * (double)x,
                mk->oy + mk->sy * (double)y, lab, pr, square);
    }
}

/* A noisy label: a dark ×; an accepted suspect: a magenta diamond (the
 * web UI's suspect colour). Sized to stay readable over any point size. */
static void noise_path(cairo_t *cr, double x, double y, double r) {
  cairo_new_path(cr);
  cairo_move_to(cr, x - r, y - r), cairo_line_to(cr, x + r, y + r);
  cairo_move_to(cr, x - r, y + r), cairo_line_to(cr, x + r, y - r);
}

static void suspect_path(cairo_t *cr, double x, double y, double r) {
  cairo_new_path(cr);
  cairo_move_to(cr, x, y - r), cairo_line_to(cr, x + r, y);
  cairo_line_to(cr, x, y + r), cairo_line_to(cr, x - r, y);
  cairo_close_path(cr);
}

static void draw_one_mark(cairo_t *cr, double x, double y, double r, int bits) {
  if (bits & TD__MARK_NOISY) {
    cairo_set_source_rgba(cr, 0.1, 0.1, 0.1, 0.85);
    cairo_set_line_width(cr, fmax(0.9, 0.3 * r));
    noise_path(cr, x, y, r);
    cairo_stroke(cr);
  }
  if (bits & TD__MARK_SUSPECT) {
    cairo_set_source_rgba(cr, 0.85, 0.0, 0.75, 0.95);
    cairo_set_line_width(cr, fmax(1.0, 0.3 * r));
    suspect_path(cr, x, y, 1.5 * r);
    cairo_stroke(cr);
  }
}

static void draw_marks(cairo_t *cr, const marks *mk, const float *xy,
                       const uint8_t *bits, int64_t n) {
  double r = fmax(2.2, 1.3 * mk->r);
  for (int64_t i = 0; i < n; i++) {
    float x = xy[2 * i], y = xy[2 * i + 1];
    if (!bits[i] || !isfinite(x) || !isfinite(y))
      continue;
    draw_one_mark(cr, mk->ox + mk->sx * (double)x, mk->oy + mk->sy * (double)y,
                  r, bits[i]);
  }
}

static marks marks_for(const td__frame *f, const td__layout *l, int64_t n) {
  marks mk;
  /* Size and opacity follow the area each sample gets: a few hundred points
   * are bold dots, 60,000 are fine grain that still shows density. */
  double per = l->map / sqrt((double)(n > 0 ? n : 1));
  mk.r = fmin(fmax(0.28 * per, 0.9), l->map / 200.0);
  mk.alpha = fmin(fmax(0.95 - 0.25 * log10(fmax(n, 1) / 1000.0), 0.35), 0.9);
  /* A ring hugs its dot: thin and barely larger, so that a class with many
   * mispredictions does not read as a cloud of rings hiding its dots. */
  mk.ring_r = fmax(1.45 * mk.r, 1.8);
  mk.ring_lw = fmax(0.4 * mk.r, 0.7);
  mk.ring_alpha = mk.alpha;
  double x0 = f->ext[0], y0 = f->ext[1], x1 = f->ext[2], y1 = f->ext[3];
  mk.sx = l->map / (x1 - x0);
  mk.sy = -l->map / (y1 - y0);
  mk.ox = l->map_x - mk.sx * x0;
  mk.oy = l->map_y - mk.sy * y1;
  return mk;
}

static void draw_map(const td_run *run, const td__frame *f, const td__layout *l,
                     cairo_t *cr) {
  if (f->terr.res) {
    /* The territory covers its own extent; the view (f->ext) may be wider
     * (an animation keeps one view for every epoch), so it is placed at
     * its extent's position and scale, clipped to the map. */
    double vx = (double)f->ext[2] - (double)f->ext[0];
    double tw = (double)f->terr.x1 - (double)f->terr.x0;
    int side = (int)ceil(l->map * tw / vx);
    cairo_surface_t *ts = td__render_territory_surface(&f->terr, side);
    if (ts) {
      double px =
          l->map_x + l->map * ((double)f->terr.x0 - (double)f->ext[0]) / vx;
      double py = l->map_y + l->map * ((double)f->ext[3] - (double)f->terr.y1) /
                                 ((double)f->ext[3] - (double)f->ext[1]);
      cairo_save(cr);
      cairo_rectangle(cr, l->map_x, l->map_y, l->map, l->map);
      cairo_clip(cr);
      cairo_set_source_surface(cr, ts, px, py);
      cairo_paint(cr);
      cairo_restore(cr);
      cairo_surface_destroy(ts);
    }
  }
  int64_t n_train = td_run_get_meta(run)->n_train;
  int64_t n_test = f->draw_test ? f->test_xy.shape[0] : 0;
  int64_t n = (f->draw_train ? n_train : 0) + n_test;
  marks mk = marks_for(f, l, n);
  cairo_save(cr);
  cairo_rectangle(cr, l->map_x, l->map_y, l->map, l->map);
  cairo_clip(cr);
  if (f->draw_train)
    draw_samples(cr, &mk, f->train_xy.data, td_run_train_labels(run),
                 f->train_pred, n_train, 0);
  if (f->draw_test)
    draw_samples(cr, &mk, f->test_xy.data, f->test_labels.data, f->test_pred,
                 n_test, l->test_marker);
  if (f->train_mark)
    draw_marks(cr, &mk, f->train_xy.data, f->train_mark, n_train);
  cairo_restore(cr);
  cairo_set_source_rgb(cr, 0.75, 0.75, 0.75);
  cairo_set_line_width(cr, 1);
  cairo_rectangle(cr, l->map_x - 0.5, l->map_y - 0.5, l->map + 1, l->map + 1);
  cairo_stroke(cr);
}

/* Shows s at the current point and returns the advance. */
static double show(cairo_t *cr, const char *s) {
  double w = text_w(cr, s);
  cairo_show_text(cr, s);
  return w;
}

static void draw_title(const td_run *run, const td__frame *f,
                       const td_render_opts *o, const td__layout *l,
                       cairo_t *cr) {
  double base = round(l->title_h * 0.62);
  char buf[512];
  cairo_set_source_rgb(cr, 0.13, 0.13, 0.13);
  set_font(cr, l->font * 1.25, 1);
  cairo_move_to(cr, l->map_x, base);
  snprintf(buf, sizeof buf, "Epoch %d", f->epoch);
  double x = l->map_x + show(cr, buf) + l->font * 1.2;
  set_font(cr, l->font * 1.05, 0);
  const char *names[2] = {"train", "test"};
  double acc[2] = {f->train_acc, f->test_acc};
  for (int i = 0; i < 2; i++) {
    if (isnan(acc[i]))
      continue;
    cairo_set_source_rgb(cr, 0.45, 0.45, 0.45);
    cairo_move_to(cr, x, base);
    snprintf(buf, sizeof buf, "%s acc ", names[i]);
    x += show(cr, buf);
    cairo_set_source_rgb(cr, 0.13, 0.13, 0.13);
    snprintf(buf, sizeof buf, "%.1f%%", 100 * acc[i]);
    x += show(cr, buf) + l->font * 1.2;
  }
  /* Method and run name, right-aligned over the map, in grey. */
  int n = snprintf(buf, sizeof buf, "%s  \xc2\xb7  %s",
                   td_run_get_meta(run)->name, o->method);
  if (n < 0 || (size_t)n >= sizeof buf)
    return; /* cut, it could end inside a UTF-8 sequence; too wide anyway */
  set_font(cr, l->font * 0.9, 0);
  double w = text_w(cr, buf);
  if (l->map_x + l->map - w > x) {
    cairo_set_source_rgb(cr, 0.55, 0.55, 0.55);
    cairo_move_to(cr, l->map_x + l->map - w, base);
    cairo_show_text(cr, buf);
  }
}

static void legend_text(cairo_t *cr, const td__layout *l, double y,
                        const char *s) {
  cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
  cairo_move_to(cr, l->legend_x + l->font * 1.6, y + 0.36 * l->font);
  cairo_show_text(cr, s);
}

/* Swatches of the territory: the decision line, the pale "unsure" shade
 * and the hatched "no data" grey, as image.c draws them. */
static void legend_territory(cairo_t *cr, const td__layout *l, double cx,
                             double y, double row) {
  double h = 0.5 * l->font;
  cairo_set_source_rgb(cr, 0.55, 0.55, 0.55);
  cairo_set_line_width(cr, 1.2);
  cairo_move_to(cr, cx - h, y + h), cairo_line_to(cr, cx + h, y - h);
  cairo_stroke(cr);
  legend_text(cr, l, y, k_bound);
  y += row;
  float rgb[3];
  td__render_shade(0, 0.2f, rgb);
  cairo_set_source_rgb(cr, rgb[0] / 255, rgb[1] / 255, rgb[2] / 255);
  cairo_rectangle(cr, cx - h, y - h, 2 * h, 2 * h);
  cairo_fill(cr);
  legend_text(cr, l, y, k_unsure);
  y += row;
  cairo_set_source_rgb(cr, 0.95, 0.95, 0.95);
  cairo_rectangle(cr, cx - h, y - h, 2 * h, 2 * h);
  cairo_fill(cr);
  cairo_save(cr);
  cairo_rectangle(cr, cx - h, y - h, 2 * h, 2 * h);
  cairo_clip(cr);
  cairo_set_source_rgb(cr, 0.8, 0.8, 0.8);
  cairo_set_line_width(cr, 1);
  for (double d = -2 * h; d < 2 * h; d += 4)
    cairo_move_to(cr, cx - h + d, y + h), cairo_line_to(cr, cx + h + d, y - h);
  cairo_stroke(cr);
  cairo_restore(cr);
  legend_text(cr, l, y, k_nodata);
}

static void draw_legend(const td_run *run, const td__layout *l, cairo_t *cr) {
  const td_run_meta *m = td_run_get_meta(run);
  double row = round(l->font * 1.55), y = l->map_y + 0.5 * row;
  double cx = l->legend_x + 0.6 * l->font;
  double bottom = l->map_y + l->map - 10 * row;
  set_font(cr, l->font, 0);
  for (int k = 0; k < m->n_classes; k++, y += row) {
    if (y > bottom && k < m->n_classes - 1) {
      char more[64];
      snprintf(more, sizeof more, "+ %d more", m->n_classes - k);
      legend_text(cr, l, y, more);
      y += row;
      break;
    }
    double c[3];
    tab10(k, c);
    cairo_set_source_rgb(cr, c[0], c[1], c[2]);
    cairo_new_path(cr);
    cairo_arc(cr, cx, y, 0.42 * l->font, 0, 2 * M_PI);
    cairo_fill(cr);
    legend_text(cr, l, y, m->classes[k]);
  }
  /* Marker key: grey for a correct dot (no class in particular), blue ring
   * around red for a blue sample predicted red. */
  y += 0.6 * row;
  marks mk = {.r = 0.3 * l->font,
              .alpha = 1,
              .ring_r = 0.55 * l->font,
              .ring_lw = fmax(1.2, 0.13 * l->font),
              .ring_alpha = 1};
  draw_mark(cr, &mk, cx, y, 7, 7, 0);
  legend_text(cr, l, y, k_correct);
  y += row;
  draw_mark(cr, &mk, cx, y, 0, 3, 0);
  legend_text(cr, l, y, k_wrong);
  y += 0.8 * row;
  set_font(cr, l->font * 0.8, 0);
  cairo_set_source_rgb(cr, 0.5, 0.5, 0.5);
  cairo_move_to(cr, l->legend_x + l->font * 1.6, y + 0.36 * l->font);
  cairo_show_text(cr, k_wrong2);
  set_font(cr, l->font, 0);
  y += row;
  if (l->test_marker) {
    draw_mark(cr, &mk, cx, y, 7, 7, 1);
    legend_text(cr, l, y, k_test);
    y += row;
  }
  double sr = 0.42 * l->font;
  if (l->mark_noise) {
    draw_one_mark(cr, cx, y, sr, TD__MARK_NOISY);
    legend_text(cr, l, y, k_noisy);
    y += row;
  }
  if (l->mark_suspects) {
    draw_one_mark(cr, cx, y, sr, TD__MARK_SUSPECT);
    legend_text(cr, l, y, k_suspect);
    y += row;
  }
  legend_territory(cr, l, cx, y, row);
}

void td__frame_draw(const td_run *run, const td__frame *f,
                    const td_render_opts *o, const td__layout *l,
                    cairo_surface_t *s) {
  cairo_t *cr = cairo_create(s);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  draw_map(run, f, l, cr);
  draw_title(run, f, o, l, cr);
  draw_legend(run, l, cr);
  cairo_destroy(cr);
  cairo_surface_flush(s);
}

int td_render_frame_png(const td_run *run, int epoch, const td_render_opts *o,
                        td_sink_fn sink, void *ctx, td_err *err) {
  int rc = td_render_opts_check(o, err);
  if (rc)
    return rc;
  td__layout l;
  rc = td__layout_compute(run, o, &l, err);
  if (rc)
    return rc;
  td__frame f;
  rc = td__frame_load(run, epoch, o, &f, err);
  if (rc)
    return rc;
  cairo_surface_t *s =
      cairo_image_surface_create(CAIRO_FORMAT_RGB24, l.width, l.height);
  if (cairo_surface_status(s) == CAIRO_STATUS_SUCCESS)
    td__frame_draw(run, &f, o, &l, s);
  char what[64];
  snprintf(what, sizeof what, "epoch %d", epoch);
  rc = td__render_write_png(s, sink, ctx, what, err);
  cairo_surface_destroy(s);
  td__frame_close(&f);
  return rc;
}
