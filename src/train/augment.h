/* Data augmentation of the subject trainer (internal to src/train): random
 * shifts and horizontal flips of the images of a batch, drawn from a seed
 * per step so that a resumed run draws the same ones. */
#ifndef TD_TRAIN_AUGMENT_H
#define TD_TRAIN_AUGMENT_H

#include <stdint.h>

#include "tardis/error.h"

#define TD__AUGMENT_SHIFT 2 /* at most this many pixels each way */

typedef struct td__augment {
  int shift, flip;
} td__augment;

/* "shift", "flip", "shift,flip" (either order) or "none"; NULL: none. */
TD_NODISCARD int td__augment_parse(const char *s, td__augment *a, td_err *err);

/* Augments the m images x [m, c, h, w] in place: each is shifted by (dy, dx),
 * both uniform in [-TD__AUGMENT_SHIFT, TD__AUGMENT_SHIFT], with zero fill,
 * and/or flipped left-right with probability 1/2; image i draws from stream
 * i of seed. scratch holds c * h * w floats. */
void td__augment_batch(const td__augment *a, float *x, int m, int c, int h,
                       int w, uint64_t seed, float *scratch);

#endif
