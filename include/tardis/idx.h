/* tardis/idx.h — the IDX format of MNIST-style datasets, gzip-compressed or
 * plain (zlib reads both).
 *
 * An IDX file is a 4-byte magic (0, 0, element type, number of dimensions),
 * the dimensions as big-endian uint32, then the elements in C order. tardis
 * reads unsigned-byte files (type 0x08), which is what (Fashion-)MNIST uses.
 *
 *     td_array images;
 *     if (td_idx_load("train-images-idx3-ubyte.gz", &images, &err)) ...
 *     // images.dtype == TD_U8, shape = {60000, 28, 28}; free: td_array_close
 */
#ifndef TARDIS_IDX_H
#define TARDIS_IDX_H

#include "tardis/array.h"

/* Reads a whole IDX file into an owned uint8 array. Rejects bad magic,
 * element types other than unsigned byte, truncated data and trailing
 * bytes, each with a message naming the file. */
TD_NODISCARD int td_idx_load(const char *path, td_array *out, td_err *err);

#endif
