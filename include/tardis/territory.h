/* tardis/territory.h — decision territories of the 2-D canvas (DESIGN §3.6).
 *
 * A territory is an R × R grid over a square extent of the canvas. Each
 * cell centre is decoded to a representation by the projection's inverse,
 * the classifier head judges it, and the cell keeps the winning class and
 * how sure the head was. Cells where it hardly was are the drawn decision
 * boundaries (white).
 *
 *     float ext[4];
 *     td_territory_extent(embedding, n, ext);          // from the train set
 *     td_territory t;
 *     if (td_territory_compute(my_decode, model, D, head, ext, 300, &t,
 *                              &err) != TD_OK) { ... }
 *     uint8_t *rgb = malloc(300 * 300 * 3);
 *     td_territory_rgb(&t, rgb);                       // row 0 = top
 *     td_territory_save(&t, "RUN/vis/dvi/epoch_0007", &err);
 *     td_territory_free(&t);
 *
 * Geometry: cell (r, c), row r counted from the top, covers
 * x ∈ [x0 + c·w, x0 + (c+1)·w), y ∈ (y1 − (r+1)·h, y1 − r·h] with
 * w = (x1 − x0)/R, h = (y1 − y0)/R; it is judged at its centre.
 */
#ifndef TARDIS_TERRITORY_H
#define TARDIS_TERRITORY_H

#include <stdint.h>

#include "tardis/error.h"
#include "tardis/run.h"

/* Cells with a confidence below this are boundary (white). */
#define TD_TERRITORY_BOUNDARY_CONF 0.15f
/* The largest |coordinate| of a territory's extent that is saved or loaded:
 * far beyond any real layout, small enough that the grid arithmetic stays
 * finite. */
#define TD_TERRITORY_MAX_COORD 1e18f

typedef struct td_territory {
  int res;              /* R: cells per side */
  float x0, y0, x1, y1; /* the square extent */
  uint8_t *cls;         /* [R*R] argmax class, row-major, row 0 = top (y1) */
  float *conf;          /* [R*R] confidence in [0, 1], see below */
  /* [R*R] closeness to the samples in [0, 1] (1: a sample is near, 0: no
   * data within twice the radius), or NULL: not known (drawn as near). Set
   * by td_territory_set_data; never saved. */
  float *near;
} td_territory;

/* The extent of an embedding y [n, 2] (n >= 1): its bounding box grown by
 * 10 % of its width (height) on each side, then made square by growing the
 * shorter side symmetrically about its centre. A box of zero size gets side
 * 1. ext = {x0, y0, x1, y1}. */
void td_territory_extent(const float *y, int64_t n, float ext[4]);

/* Maps canvas points y [m, 2] to representations x [m, D]; returns 0 on
 * success, anything else aborts the computation (td_territory_compute then
 * returns TD_EVALUE). Called on the caller's thread, in blocks of whole grid
 * rows; the decoder may use threads of its own. */
typedef int (*td_decode_fn)(void *ctx, const float *y, int64_t m, float *x);

/* Fills *out (R >= 1, classes < 256): each cell centre is decoded and the
 * head (D -> C) judges it: class = argmax of the logits (ties: smaller
 * index), confidence = (l1 − l2) / (l1 − l_min) of the sorted logits,
 * i.e. td_logit_gap of boundary.h (0 when all logits are equal; for C = 2
 * the softmax difference tanh(|l1 − l2| / 2)). Owns cls and conf; free
 * with td_territory_free. On error *out is zeroed. */
TD_NODISCARD int td_territory_compute(td_decode_fn decode, void *ctx, int D,
                                      const td_head *head, const float ext[4],
                                      int res, td_territory *out, td_err *err);

/* The radius td_territory_set_data uses by default for samples y [n, 2]:
 * 4 % of the side of td_territory_extent(y). */
float td_territory_data_radius(const float *y, int64_t n);

/* Fills t->near from the samples y [n, 2]: a cell whose centre lies within
 * `radius` (canvas units) of a sample gets 1, beyond 2·radius 0, linear in
 * between. Distances are chamfer distances on the grid (exact along rows,
 * columns and diagonals, within 8 % elsewhere): "no data here" is a
 * picture, not a measurement. TD_ENOMEM or TD_OK. */
TD_NODISCARD int td_territory_set_data(td_territory *t, const float *y,
                                       int64_t n, float radius);

/* Frees cls and conf and zeroes *t; safe on a zeroed territory. */
void td_territory_free(td_territory *t);

/* matplotlib's tab10 palette, RGB. Class k uses td_tab10[k % 10]. */
extern const uint8_t td_tab10[10][3];

/* Colours a territory into rgb [R*R*3] (row 0 = top). A cell with
 * confidence < TD_TERRITORY_BOUNDARY_CONF is white (255, 255, 255);
 * otherwise, with s = 0.9·conf (confidence scaled to at most 0.9) and P the
 * class's palette colour, each channel is round(0.5·s·P + (1 − s)·255),
 * DVI's shading: surer cells are darker and more saturated. */
void td_territory_rgb(const td_territory *t, uint8_t *rgb);

/* Index r·R + c of the cell holding the canvas point (x, y), or -1 when it
 * falls outside the extent (the far edges belong to the last cells). */
int64_t td_territory_cell(const td_territory *t, float x, float y);

/* The territory of any rectangle ext of the canvas (the view on screen),
 * decoded from the stored projection of RUN/vis/<method>/epoch_N and judged
 * by the epoch's head, res × res cells (cells need not be square), with
 * t->near set from the epoch's training embedding (its default radius).
 * Errors name the file that failed to load. */
TD_NODISCARD int td_territory_of_view(const td_run *run, const char *method,
                                      int epoch, const float ext[4], int res,
                                      td_territory *out, td_err *err);

/* 1 if the canvas point (x, y) falls in a boundary cell; 0 if in a class
 * cell or outside the extent. */
int td_territory_is_boundary(const td_territory *t, float x, float y);

/* Writes dir/territory_class.npy (uint8 [R, R]), dir/territory_conf.npy
 * (float32 [R, R]) and dir/territory.json {"extent": [x0, y0, x1, y1],
 * "res": R}, creating dir if needed. Each file is written atomically. */
TD_NODISCARD int td_territory_save(const td_territory *t, const char *dir,
                                   td_err *err);

/* Reads what td_territory_save wrote, checking shapes and dtypes. *out
 * owns its arrays (free with td_territory_free); zeroed on error. */
TD_NODISCARD int td_territory_load(const char *dir, td_territory *out,
                                   td_err *err);

#endif
