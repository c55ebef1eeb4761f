/* Large float buffers of the trainer (the dataset as float, the recorded
 * representations): backed by transparent huge pages where the kernel
 * allows them. */
#ifndef TD_TRAIN_BIGBUF_H
#define TD_TRAIN_BIGBUF_H

#include <stdint.h>

/* count floats, uninitialised; freed with free(). NULL when out of memory. */
float *td__big_floats(int64_t count);

#endif
