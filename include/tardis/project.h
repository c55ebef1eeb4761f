/* tardis/project.h — projects every recorded epoch of a run to 2-D
 * (DeepVisualInsight): boundary samples, fuzzy complex, encoder/decoder
 * warm-started from the previous epoch, embeddings and the territory grid,
 * written to RUN/vis/<method>/epoch_NNNN/ (docs/vis-format.md).
 *
 *     td_project_opts o;
 *     td_project_opts_default(&o);
 *     td_project_summary s;
 *     if (td_project(run, &o, &s, &err)) ...
 *
 * Resumable: epochs already projected are skipped, and the newest finished
 * one (on disk) warm-starts the next.
 */
#ifndef TARDIS_PROJECT_H
#define TARDIS_PROJECT_H

#include <stdint.h>

#include "tardis/error.h"
#include "tardis/run.h"
#include "tardis/vis.h" /* td_vis_epoch_dir, formerly declared here */

typedef struct td_project_progress {
  int index, count; /* epoch being projected: index of count to do */
  int epoch;        /* its number */
  const char
      *stage;     /* "boundary", "knn", "fit", "territory", "write", "done" */
  double seconds; /* for "done": the epoch's total time */
} td_project_progress;

typedef struct td_project_opts {
  const char *method;       /* "dvi" (default) or "pca" */
  int epoch_from, epoch_to; /* inclusive range of epoch numbers; 0: open */
  int k;                    /* neighbours of the complex (15) */
  int territory_res;        /* R (256) */
  int boundary;             /* generate boundary samples (1) */
  int boundary_input;       /* mix raw inputs through the epoch's full model
                               (model/ checkpoint + train_inputs.npy) instead
                               of representations judged by the head (0) */
  int temporal;             /* td_vis_temporal; -1: the default */
  uint64_t seed;
  int force; /* re-project epochs that are already done */
  void (*progress)(const td_project_progress *p, void *ctx);
  void *progress_ctx;
} td_project_opts;

typedef struct td_project_summary {
  int projected, skipped;
  double seconds, first_seconds, max_later_seconds;
} td_project_summary;

void td_project_opts_default(td_project_opts *o);

/* Projects the epochs of an opened run. */
int td_project(td_run *run, const td_project_opts *o, td_project_summary *s,
               td_err *err);

#endif
