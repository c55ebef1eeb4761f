/* tardis/run.h — run format v1: the run directory every stage reads and writes.
 *
 * A run is a directory (docs/run-format.md has the full reference):
 *
 *     RUN/run.json            metadata: classes, sizes, representation width
 *     RUN/train_labels.npy    int32 [n_train]
 *     RUN/epochs/0001/        one directory per recorded epoch, written under a
 *                             temporary name and renamed into place when whole
 *
 * Reading a run:
 *
 *     td_run *run;
 *     td_err err;
 *     if (td_run_open("runs/fmnist", &run, &err)) { puts(err.msg); ... }
 *     for (int i = 0; i < td_run_n_epochs(run); i++) {
 *       int ep = td_run_epoch_number(run, i);
 *       td_array repr;
 *       if (td_run_load_f32(run, ep, "train_repr", &repr, &err)) { ... }
 *       // repr.shape = {n_train, repr_dim}, float32, finite
 *       td_array_close(&repr);
 *     }
 *     td_run_close(run);
 *
 * Writing a run:
 *
 *     td_run_create("runs/x", &meta, 0, &err);
 *     td_run_write_array("runs/x", "train_labels", &labels, &err);
 *     td_epoch_writer *w;
 *     td_epoch_begin("runs/x", 1, &w, &err);
 *     td_epoch_add_array(w, "train_repr.npy", &repr, &err);   // + logits...
 *     // epoch.json: written into td_epoch_path(w) (inside tardis with
 *     // td__epoch_add_json, src/run/run_json.h)
 *     td_head_write(w, 1, weights, biases, dims, NULL, &err);
 *     td_epoch_commit(w, &err);        // on error: td_epoch_abort(w)
 *
 * Every error message names the file and says what was expected and what was
 * found, e.g. "runs/x/epochs/0007/train_repr.npy: expected 60000×128 float32
 * or float16, found 60000×64 float32".
 */
#ifndef TARDIS_RUN_H
#define TARDIS_RUN_H

#include <stdint.h>

#include "tardis/array.h"
#include "tardis/error.h"

/* The run format version this tardis reads and writes. */
#define TD_RUN_VERSION 1

/* Metadata of a run (run.json). When returned by td_run_get_meta the run owns
 * `classes`; when passed to td_run_create the caller does. */
typedef struct td_run_meta {
  char name[256];
  char **classes; /* n_classes NUL-terminated names */
  int n_classes;
  int64_t n_train, n_test; /* n_test is 0 when the run has no test set */
  int repr_dim;            /* D, the width of train_repr */
  int input_shape[3];      /* c, h, w — valid when has_input_shape */
  int has_input_shape;
  char producer[256]; /* e.g. "tardis 0.1.0" or "tardis_recorder 0.1" */
  char created[64];   /* ISO-8601; td_run_create fills it when empty */
  /* Continual learning (optional "tasks" of run.json): the classes are
   * trained as n_tasks tasks in sequence. task_of_class[c] is the task that
   * holds class c, or -1 when no task does (n_classes entries; NULL when
   * n_tasks is 0). Owned like `classes`. epochs_per_task is 0 when not
   * given. */
  int n_tasks;
  int *task_of_class;
  int epochs_per_task;
  /* A child run (optional "parent" of run.json: tardis train --from): the
   * run it was fine-tuned from, as its writer named it, and the epoch of
   * that run it started from. parent[0] == 0 when the run has no parent. */
  char parent[1024];
  int parent_epoch;
} td_run_meta;

/* ---- reading ------------------------------------------------------------ */

typedef struct td_run td_run; /* an opened run */

/* Opens a run: reads and checks run.json and train_labels.npy (dtype, length,
 * range) and lists the epoch directories. Cheap: epoch files are not read.
 * Hidden entries of epochs/ (".tmp-*" left by a killed writer) are ignored.
 * Free with td_run_close. */
TD_NODISCARD int td_run_open(const char *dir, td_run **out, td_err *err);
void td_run_close(td_run *run); /* NULL is fine */

/* Owned by the run; valid until td_run_close. In a subset run (RUN/subset.npy,
 * docs/run-format.md#subset-runs) the run reads as a run of its K recorded
 * samples: meta->n_train is K, row r of every training array (labels, truth,
 * inputs, representations, logits, loss) is the training sample subset[r]. */
const td_run_meta *td_run_get_meta(const td_run *run);
/* The training index of each recorded row, int32 [K] ascending, or NULL when
 * the run records every training sample (then row r is sample r). */
const int32_t *td_run_subset(const td_run *run);
/* run.json's n_train: N, the whole training set (= meta->n_train unless the
 * run is a subset run). */
int64_t td_run_n_train_all(const td_run *run);
const char *td_run_dir(const td_run *run);

/* Recorded epochs, ascending by number (gaps allowed). */
int td_run_n_epochs(const td_run *run);
int td_run_epoch_number(const td_run *run, int i); /* 0 <= i < n_epochs */
/* Index of epoch number `epoch` in the list, or -1. */
int td_run_epoch_index(const td_run *run, int epoch);
/* Writes "RUN/epochs/NNNN" into buf; returns TD_ERANGE if it does not fit. */
TD_NODISCARD int td_run_epoch_path(const td_run *run, int epoch, char *buf,
                                   size_t len);

/* Re-lists the epochs (live mode: new ones may have appeared). On error the
 * previous list is kept. */
TD_NODISCARD int td_run_refresh(td_run *run, td_err *err);

/* TD_ESTATE with "RUN: records only K of the N training samples (subset.npy);
 * WHAT needs a run that records all of them" for a subset run; TD_OK
 * otherwise. For what cannot work on a subset (diagnose, repair). */
TD_NODISCARD int td_run_require_all_samples(const td_run *run, const char *what,
                                            td_err *err);

/* The training labels, always int32 [n_train] (converted on open when stored
 * as int64). Owned by the run. */
const int32_t *td_run_train_labels(const td_run *run);

/* Loads one array of the run, checking dtype and shape against run.json.
 * In a subset run the top-level per-sample arrays (train_labels,
 * train_truth, train_inputs) come back gathered to the K recorded rows (an
 * owned copy), and an epoch's subset.npy is compared with the run's before
 * any of its per-sample arrays is returned. trained.npy, pool.npy and
 * select.npy keep indices into the whole training set [0, N).
 * epoch < 0: a top-level array ("train_labels", "test_labels", "train_truth",
 * "train_inputs", "test_inputs"); epoch >= 0: an array of that epoch
 * ("train_repr", "test_repr", "train_logits", "test_logits", "train_loss",
 * "subset", "trained"). The name may carry the ".npy" suffix or not. Other
 * names are loaded without checks. Representations and logits are checked to be
 * finite. Label and index arrays stored as int64 are returned as int32.
 * Otherwise the array is returned as stored (a read-only mapping; float16 stays
 * float16). TD_ENOENT (message naming the path) when the file is absent. Free
 * *out with td_array_close. */
TD_NODISCARD int td_run_load(const td_run *run, int epoch, const char *name,
                             td_array *out, td_err *err);
/* Like td_run_load, but float16 arrays are converted to a float32 copy. Every
 * reader of representations, logits or losses uses it: each may be float16. */
TD_NODISCARD int td_run_load_f32(const td_run *run, int epoch, const char *name,
                                 td_array *out, td_err *err);

/* True if the file `name` (with or without ".npy"; or "model" for the
 * checkpoint directory) exists at top level (epoch < 0) or in that epoch. */
int td_run_has(const td_run *run, int epoch, const char *name);

/* ---- the classifier head ------------------------------------------------ */

/* A chain of dense layers mapping a representation [D] to logits [C]. */
typedef struct td_head td_head;

/* Loads head.json of an epoch and the arrays it names, checking that the
 * chain maps repr_dim -> ... -> n_classes. Free with td_head_free. */
TD_NODISCARD int td_run_load_head(const td_run *run, int epoch, td_head **out,
                                  td_err *err);
/* Same, from any directory holding head.json, with the expected in/out
 * widths (either may be <= 0 to skip that check). */
TD_NODISCARD int td_head_load_dir(const char *dir, int in_dim, int out_dim,
                                  td_head **out, td_err *err);
void td_head_free(td_head *head); /* NULL is fine */
int td_head_in_dim(const td_head *head);
int td_head_out_dim(const td_head *head);
int td_head_n_layers(const td_head *head);

/* logits[n, out_dim] = head(x[n, in_dim]), in parallel over td_threads() in
 * chunks of a fixed number of rows, each on one BLAS thread: the logits are
 * bit-identical at any thread count. Reentrant: may be called from several
 * threads at once on the same head. Multi-layer heads allocate scratch per
 * chunk; when that fails they fall back to one row at a time in scratch
 * allocated by the load (serialised, slower), so this never fails. */
void td_head_forward(const td_head *head, const float *x, int64_t n,
                     float *logits);

/* ---- full validation ---------------------------------------------------- */

/* Checks every file of every epoch: dtypes, shapes, finite representations
 * and logits, label and subset ranges, epoch.json, the head chain, and that
 * the head reproduces the recorded train logits on the first rows. Calls
 * progress(i, n, ctx) before epoch i of n and progress(n, n, ctx) at the end,
 * if progress is not NULL. Stops at the first problem. */
TD_NODISCARD int td_run_validate(const td_run *run,
                                 void (*progress)(int, int, void *), void *ctx,
                                 td_err *err);
/* The same checks for one recorded epoch: what td_run_validate does per
 * epoch. Every command that computes from an epoch (project, eval, render,
 * suspects, alerts) calls it first, so a run `tardis info` rejects is
 * rejected by all of them with the same message (a head that no longer
 * reproduces the recorded logits above all). */
TD_NODISCARD int td_run_validate_epoch(const td_run *run, int epoch,
                                       td_err *err);
/* The run-level files (labels, truth, inputs): what td_run_validate checks
 * before the epochs. Cheap for uint8 inputs (headers only). */
TD_NODISCARD int td_run_validate_top(const td_run *run, td_err *err);

/* ---- writing ------------------------------------------------------------ */

/* Creates a run directory with run.json and an empty epochs/. An existing
 * non-empty directory is refused with TD_EEXIST unless force; with force it is
 * removed first, but only if it holds a run.json (tardis never deletes a
 * directory that is not a run). meta->created is filled with the current UTC
 * time when empty, meta->producer with "tardis <version>" when empty (the
 * caller's struct is not modified). */
TD_NODISCARD int td_run_create(const char *dir, const td_run_meta *meta,
                               int force, td_err *err);

/* Writes a top-level array ("train_labels" or "train_labels.npy", ...)
 * atomically. Known arrays are checked against run.json first (dtype, shape,
 * label range). */
TD_NODISCARD int td_run_write_array(const char *run_dir, const char *name,
                                    const td_array *a, td_err *err);

/* Puts src, an array file of another run (a child run's parent), into the
 * run as `name`, checked like td_run_write_array: a hard link, so that
 * neither run depends on the other being kept, or a copy where the file
 * system refuses links. Not for subset.npy. */
TD_NODISCARD int td_run_link_array(const char *run_dir, const char *name,
                                   const char *src, td_err *err);

/* One epoch being written, in RUN/epochs/.tmp-NNNN-<pid>. */
typedef struct td_epoch_writer td_epoch_writer;

/* Starts epoch `epoch` (>= 0) of the run in run_dir (run.json must exist). */
TD_NODISCARD int td_epoch_begin(const char *run_dir, int epoch,
                                td_epoch_writer **out, td_err *err);
/* Writes an array file into the epoch as "<name>.npy" (file_name may carry
 * the suffix or not). Known files (train_repr.npy, ...) are checked against
 * run.json first, as a reader would. file_name must be a plain name (no '/',
 * not starting with '.'). */
TD_NODISCARD int td_epoch_add_array(td_epoch_writer *w, const char *file_name,
                                    const td_array *a, td_err *err);
/* td_run_link_array for an epoch's array file: the same bytes as src
 * (another run's recording of the same state), checked as
 * td_epoch_add_array checks them. Not for subset.npy. */
TD_NODISCARD int td_epoch_link_array(td_epoch_writer *w, const char *file_name,
                                     const char *src, td_err *err);
/* The temporary directory, to write extra things such as model/ into. */
const char *td_epoch_path(const td_epoch_writer *w);
int td_epoch_number(const td_epoch_writer *w);
/* Checks that epoch.json, train_repr.npy, train_logits.npy and a loadable
 * head are there, fsyncs every file and the directory, and renames it to
 * epochs/NNNN. Fails with TD_EEXIST if that epoch exists already (it is
 * never replaced). Always frees the writer; on failure the temporary
 * directory is removed. */
TD_NODISCARD int td_epoch_commit(td_epoch_writer *w, td_err *err);
/* Removes the temporary directory and frees the writer. NULL is fine. */
void td_epoch_abort(td_epoch_writer *w);

/* Writes a dense head into the epoch: head.json and head_<i>_w.npy /
 * head_<i>_b.npy for i < n_layers. Layer i maps dims[i] -> dims[i+1]
 * (dims has n_layers + 1 entries; dims[0] = repr_dim, dims[n_layers] =
 * n_classes); weights[i] is float32 [dims[i+1], dims[i]] row-major,
 * biases[i] float32 [dims[i+1]]; acts[i] is "none" or "relu" (acts may be
 * NULL: all "none"). */
TD_NODISCARD int td_head_write(td_epoch_writer *w, int n_layers,
                               const float *const *weights,
                               const float *const *biases, const int *dims,
                               const char *const *acts, td_err *err);

/* Marks the run finished: writes RUN/finished (a small JSON object, written
 * atomically) after the last epoch is committed, so that followers (`tardis
 * watch`, `tardis serve --follow`) know no epoch will come. */
TD_NODISCARD int td_run_mark_finished(const char *run_dir, td_err *err);
/* Removes RUN/finished (absent is fine): a writer that appends epochs to a
 * finished run (tardis train --resume) calls it before the first. */
TD_NODISCARD int td_run_mark_unfinished(const char *run_dir, td_err *err);
/* Whether RUN/finished exists. */
int td_run_is_finished(const char *run_dir);

/* Replacing a run without losing it when the new one fails (`train
 * --force`): td_run_move_aside renames the run at dir to the sibling
 * "<dir>.old-<pid>" (its path in aside, "" when dir holds no run: then
 * nothing moves and td_run_create's own checks apply); td_run_end_aside
 * then removes the old run when the new one succeeded, or removes the
 * partial new one and moves the old one back. */
TD_NODISCARD int td_run_move_aside(const char *dir, char *aside, size_t len,
                                   td_err *err);
void td_run_end_aside(const char *dir, const char *aside, int success);

/* Removes epochs/.tmp-* directories whose writing process is gone (on this
 * host). *n_removed (may be NULL) receives how many. Every td_epoch_begin
 * does it, so a killed writer's leftovers go when the run is next written. */
TD_NODISCARD int td_run_remove_stale(const char *run_dir, int *n_removed,
                                     td_err *err);

#endif
