/* The JSON side of the run API, for tardis's own modules and tests (the
 * trainer, the CLI, the server, the renderer). Kept out of the public
 * tardis/run.h so that the public headers do not depend on jansson: its
 * json_t is an implementation detail of how tardis reads and writes
 * run.json and epoch.json. */
#ifndef TD_RUN_JSON_H
#define TD_RUN_JSON_H

#include <jansson.h>

#include "tardis/run.h"

/* The metadata as a new JSON object (name, producer, created, classes,
 * n_classes, n_train, n_test, repr_dim, input_shape, and tasks and
 * epochs_per_task when the run has tasks); caller json_decref's. */
TD_NODISCARD json_t *td__run_meta_json(const td_run_meta *m);

/* td_run_create with more fields for run.json (extra: an object whose
 * members are added, never replacing the format's own; NULL for none). The
 * trainer records its model and options this way (docs/run-format.md). */
TD_NODISCARD int td__run_create_json(const char *dir, const td_run_meta *meta,
                                     const json_t *extra, int force,
                                     td_err *err);

/* Reads epoch.json of an epoch, checking that it is an object whose "epoch"
 * equals the epoch number and whose known metrics (train_loss, train_acc,
 * test_loss, test_acc, seconds, lr) are numbers or null when present, and
 * that "task" and "task_acc" agree with the run's tasks.
 * The caller owns *out (json_decref). */
TD_NODISCARD int td__run_load_epoch_json(const td_run *run, int epoch,
                                         json_t **out, td_err *err);

/* Writes a JSON file into the epoch. The value is borrowed (not decref'd).
 * For "epoch.json" the value must be an object whose "epoch" equals the
 * writer's epoch. */
TD_NODISCARD int td__epoch_add_json(td_epoch_writer *w, const char *file_name,
                                    json_t *value, td_err *err);

#endif
