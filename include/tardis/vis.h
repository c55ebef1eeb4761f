/* tardis/vis.h — the one owner of RUN/vis/ (docs/vis-format.md): the table
 * of the files a projection writes, the paths to them, the checked loaders
 * every reader uses, and the writer that commits an epoch atomically.
 *
 *     td_vis_dims d = {...};                 // what the run fixes
 *     td_vis_writer *w;
 *     td_vis_epoch_begin(run_dir, "dvi", 7, &d, &w, &err);
 *     td_vis_put_f32(w, "train_embedding.npy", y, n, 2, &err);
 *     ...                                    // td_vis_writer_dir for model/
 *     td_vis_epoch_commit(w, &err);          // checked, then renamed
 *
 *     td_array y;
 *     td_vis_load_embedding(run_dir, "dvi", 7, "train", n, &y, &err);
 *
 * Writer and readers share the spec table: commit refuses an epoch that a
 * reader would refuse, so none is ever published.
 */
#ifndef TARDIS_VIS_H
#define TARDIS_VIS_H

#include <stddef.h>
#include <stdint.h>

#include "tardis/array.h"
#include "tardis/error.h"
#include "tardis/run.h"

/* ---- the spec table ----------------------------------------------------- */

/* What a dimension of a vis file is measured against. */
typedef enum {
  TD_VIS_DIM_TRAIN,    /* the run's training samples */
  TD_VIS_DIM_TEST,     /* the run's test samples */
  TD_VIS_DIM_OOD,      /* the epoch's ood_repr rows */
  TD_VIS_DIM_BOUNDARY, /* the epoch's boundary samples */
  TD_VIS_DIM_REPR,     /* the representation width D */
  TD_VIS_DIM_RES,      /* the territory resolution R */
  TD_VIS_DIM_2,        /* the canvas: 2 */
  TD_VIS_DIM_3         /* pca.npy rows: mean, axis 1, axis 2 */
} td_vis_dim;

typedef enum {
  TD_VIS_NPY,
  TD_VIS_JSON,
  TD_VIS_DIR /* a directory (model/, written by td_vismodel_save) */
} td_vis_kind;

/* When a file of an epoch must exist. */
typedef enum {
  TD_VIS_ALWAYS,   /* every epoch of every method */
  TD_VIS_IF_TEST,  /* when the run has test representations */
  TD_VIS_IF_OOD,   /* when the epoch has ood_repr */
  TD_VIS_ONLY_DVI, /* method dvi */
  TD_VIS_ONLY_PCA  /* method pca */
} td_vis_when;

typedef struct td_vis_file_spec {
  const char *name; /* file name inside the epoch directory */
  td_vis_kind kind;
  td_dtype dtype; /* TD_VIS_NPY only */
  td_vis_dim rows, cols;
  td_vis_when when;
  const char *what; /* one line for docs/vis-format.md */
} td_vis_file_spec;

/* The key of projection.json that marks a draft: an epoch placed by the
 * encoder/decoder of an earlier, fully fitted epoch, without a fit of its
 * own (live mode, include/tardis/live.h). Absent or false: fully fitted. */
#define TD_VIS_DRAFT_KEY "draft"
/* projection.json of a draft also names the epoch whose model placed it. */
#define TD_VIS_DRAFT_FROM_KEY "draft_from"
/* ... and, for a cold draft (its model fitted on a sample of draft_from's
 * training points, before any epoch was fully fitted), the sample's size. */
#define TD_VIS_DRAFT_SAMPLE_KEY "draft_sample"
/* ... and, for a preview (a full fit out of order, warm-started from
 * draft_from or, where draft_from is the epoch itself, cold), true. */
#define TD_VIS_DRAFT_FITTED_KEY "draft_fitted"

/* The files of an epoch directory, in table order. */
const td_vis_file_spec *td_vis_spec(size_t *count);
/* The entry for an epoch file name, or NULL. */
const td_vis_file_spec *td_vis_spec_find(const char *name);

/* The sizes an epoch's files are checked against; -1: not known here (the
 * file then fixes it, and later files must agree). */
typedef struct td_vis_dims {
  int64_t n_train, n_test, n_ood, n_boundary, repr_dim, res;
} td_vis_dims;

/* Every size unknown (-1). */
void td_vis_dims_unknown(td_vis_dims *d);
/* Sizes a run fixes: n_train, n_test (0 without test set), repr_dim. */
void td_vis_dims_of_run(const td_run *run, td_vis_dims *d);

/* Checks an array against its spec entry (dtype, shape, finite floats);
 * unknown sizes in *d are set from the array. The message names path. */
TD_NODISCARD int td_vis_check_array(const td_vis_file_spec *s, const char *path,
                                    const td_array *a, td_vis_dims *d,
                                    td_err *err);

/* Checks a finished epoch directory against the table for the method:
 * every required file present and every array well formed. */
TD_NODISCARD int td_vis_check_epoch(const char *epoch_dir, const char *method,
                                    const td_vis_dims *d, td_err *err);

/* ---- paths -------------------------------------------------------------- */

/* A method is a plain name: not empty, no '/', not starting with '.'. */
int td_vis_method_ok(const char *method);

/* All paths below return TD_ERANGE with a message when buf is too small,
 * and TD_EARG for a method that is not a plain name. */

/* RUN/vis */
TD_NODISCARD int td_vis_root(const char *run_dir, char *buf, size_t len,
                             td_err *err);
/* RUN/vis/<method> */
TD_NODISCARD int td_vis_method_dir(const char *run_dir, const char *method,
                                   char *buf, size_t len, td_err *err);
/* RUN/vis/<method>/<file>: vis.json, metrics.json */
TD_NODISCARD int td_vis_method_path(const char *run_dir, const char *method,
                                    const char *file, char *buf, size_t len,
                                    td_err *err);
/* RUN/vis/<method>/epoch_NNNN (TD_ERANGE when it does not fit; no message,
 * kept for the callers of the old project.h function). */
TD_NODISCARD int td_vis_epoch_dir(const char *run_dir, const char *method,
                                  int epoch, char *buf, size_t len);
/* RUN/vis/<method>/epoch_NNNN/<file> */
TD_NODISCARD int td_vis_epoch_path(const char *run_dir, const char *method,
                                   int epoch, const char *file, char *buf,
                                   size_t len, td_err *err);
/* RUN/vis/suspects-<method>.<ext> (ext "npy" or "json"): the cache of
 * tardis suspects. */
TD_NODISCARD int td_vis_suspects_path(const char *run_dir, const char *method,
                                      const char *ext, char *buf, size_t len,
                                      td_err *err);

/* ---- readers ------------------------------------------------------------ */

/* Whether the epoch is projected (its directory is committed). */
int td_vis_epoch_done(const char *run_dir, const char *method, int epoch);
/* Whether a committed epoch is a draft (TD_VIS_DRAFT_KEY in its
 * projection.json); 0 when not projected or unreadable. */
int td_vis_epoch_is_draft(const char *run_dir, const char *method, int epoch);
/* Whether the epoch is projected and fully fitted (done, not a draft):
 * what `tardis project` leaves, and what a warm start may start from. */
int td_vis_epoch_final(const char *run_dir, const char *method, int epoch);
/* Whether a file of a committed epoch exists. */
int td_vis_epoch_has(const char *run_dir, const char *method, int epoch,
                     const char *file);

/* The directory of a projected epoch of the run: epoch_ + the run's own
 * epoch directory name, else epoch_NNNN. TD_ENOENT when not projected. */
TD_NODISCARD int td_vis_epoch_find(const td_run *run, const char *method,
                                   int epoch, char *buf, size_t len,
                                   td_err *err);

/* The projected epochs of a method that are still in the run, ascending
 * (*epochs malloc'd, NULL when *n == 0). TD_ENOENT: no RUN/vis/<method>. */
TD_NODISCARD int td_vis_list_epochs(const td_run *run, const char *method,
                                    int **epochs, int *n, td_err *err);

/* Checks a loaded N×2 embedding: float32, [n, 2] (n < 0: any rows), every
 * value finite. The message names path. */
TD_NODISCARD int td_vis_check_embedding(const char *path, const td_array *a,
                                        int64_t n, td_err *err);
/* Loads and checks the N×2 float32 embedding at path. */
TD_NODISCARD int td_vis_load_embedding_file(const char *path, int64_t n,
                                            td_array *out, td_err *err);
/* Loads <split>_embedding.npy (split: train, test, ood, boundary) of an
 * epoch directory. */
TD_NODISCARD int td_vis_load_embedding_in(const char *epoch_dir,
                                          const char *split, int64_t n,
                                          td_array *out, td_err *err);
/* Same, for RUN/vis/<method>/epoch_NNNN. */
TD_NODISCARD int td_vis_load_embedding(const char *run_dir, const char *method,
                                       int epoch, const char *split, int64_t n,
                                       td_array *out, td_err *err);

/* ---- the writer --------------------------------------------------------- */

typedef struct td_vis_writer td_vis_writer;

/* Creates RUN/vis/<method>/vis.json's directory and an epoch's temporary
 * directory (.tmp-NNNN-<pid>), clearing the leftovers of killed writers.
 * d fixes what the files are checked against (copied). */
TD_NODISCARD int td_vis_epoch_begin(const char *run_dir, const char *method,
                                    int epoch, const td_vis_dims *d,
                                    td_vis_writer **out, td_err *err);
/* The temporary directory, for files written by their own savers
 * (td_territory_save, td_vismodel_save, td_pca_save). */
const char *td_vis_writer_dir(const td_vis_writer *w);
/* Writes an array of the table, checked against it first. */
TD_NODISCARD int td_vis_put_array(td_vis_writer *w, const char *name,
                                  td_dtype dtype, int ndim,
                                  const int64_t *shape, const void *data,
                                  td_err *err);
TD_NODISCARD int td_vis_put_f32(td_vis_writer *w, const char *name,
                                const float *v, int64_t rows, int64_t cols,
                                td_err *err);
/* Writes a JSON file of the table (text, e.g. from json_dumps). */
TD_NODISCARD int td_vis_put_json(td_vis_writer *w, const char *name,
                                 const char *text, td_err *err);
/* Checks the epoch against the table and renames it into place, replacing
 * an older one. Frees w whatever the outcome; on failure nothing is
 * published and the temporary directory is removed. */
TD_NODISCARD int td_vis_epoch_commit(td_vis_writer *w, td_err *err);
/* Drops the unfinished epoch. NULL is fine. */
void td_vis_epoch_abort(td_vis_writer *w);

/* Removes the temporary epoch directories of writers that are no longer
 * running (a killed `tardis project`). */
void td_vis_clean_stale(const char *run_dir, const char *method);

/* Writes RUN/vis/<method>/<file> (vis.json, metrics.json) atomically. */
TD_NODISCARD int td_vis_write_method_json(const char *run_dir,
                                          const char *method, const char *file,
                                          const char *text, td_err *err);

#endif
