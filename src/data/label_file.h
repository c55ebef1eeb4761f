/* A label file (internal to src/data and its users): the one reader of an
 * .npy array of class labels, shared by dataset directories (npydir.c's
 * <split>_labels.npy) and `tardis train --labels` (src/train/labels.c). */
#ifndef TD_DATA_LABEL_FILE_H
#define TD_DATA_LABEL_FILE_H

#include <stdint.h>

#include "tardis/error.h"

/* What the messages call the samples and the classes: the length's says
 * "N labels, but <whose> has n <samples>" ("the run", "training samples";
 * or the inputs file, "samples"); the range's "(C classes of <classes>"
 * when classes is not NULL ("classes.json"). */
typedef struct td__label_names {
  const char *whose, *samples, *classes;
} td__label_names;

/* path: int32, int64 or uint8 [n], every value in [0, C); into dst[n].
 * Errors name the file and what is wrong: the dtype (TD_EDTYPE), the
 * dimensions or the length (TD_ESHAPE), the first value out of range and
 * its sample (TD_EVALUE). */
TD_NODISCARD int td__label_file_read(const char *path, int64_t n, int C,
                                     const td__label_names *names, int32_t *dst,
                                     td_err *err);

#endif
