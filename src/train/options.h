/* The trainer's options as run.json's "train" object (internal to
 * src/train): written when a run is created, read back by --resume (which
 * continues with exactly these options) and --from (which takes the
 * parent's data, labels and model from them). */
#ifndef TD_TRAIN_OPTIONS_H
#define TD_TRAIN_OPTIONS_H

#include <jansson.h>

#include "tardis/train.h"

/* The options that define a run's data, labels, model, optimisation and
 * random streams. Paths are written as given (the trainer passes absolute
 * ones). */
json_t *td__train_opts_json(const td_train_opts *o);

/* Reads "train" of a run.json (root) into *o over its current values. The
 * strings point into root, which must outlive *o. path names run.json in
 * messages. */
TD_NODISCARD int td__train_opts_from_json(const json_t *root, const char *path,
                                          td_train_opts *o, td_err *err);

#endif
