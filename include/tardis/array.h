/* tardis/array.h — n-dimensional arrays and NumPy .npy files.
 *
 * A td_array is a typed view of contiguous C-order memory. Arrays loaded from
 * .npy files are memory-mapped read-only (`data` points into the mapping), so
 * opening a 60,000 × 128 representation costs nothing until it is touched.
 *
 *     td_array repr;
 *     td_err err;
 *     if (td_npy_load("epochs/0001/train_repr.npy", &repr, &err)) { ... }
 *     // repr.dtype == TD_F32, repr.ndim == 2, repr.shape = {60000, 128}
 *     const float *x = repr.data;
 *     td_array_close(&repr);               // unmaps
 *
 * Writing is atomic: td_npy_save writes "<path>.tmp.<pid>" and renames it into
 * place, so a reader never sees a half-written file.
 */
#ifndef TARDIS_ARRAY_H
#define TARDIS_ARRAY_H

#include <stddef.h>
#include <stdint.h>

#include "tardis/error.h"

#define TD_MAX_DIMS 8

typedef enum {
  TD_F32, /* '<f4' */
  TD_F16, /* '<f2' */
  TD_I32, /* '<i4' */
  TD_I64, /* '<i8' */
  TD_U8,  /* '|u1' */
  TD_DTYPE_COUNT
} td_dtype;

typedef struct td_array {
  td_dtype dtype;
  int ndim;
  int64_t shape[TD_MAX_DIMS];
  void *data;    /* first element; read-only when mapped */
  size_t nbytes; /* size of the data in bytes */
  /* ownership (private): either a mapping or a malloc'd buffer, or neither */
  void *map_base_;
  size_t map_len_;
  void *owned_;
} td_array;

/* Bytes per element of a dtype. */
size_t td_dtype_size(td_dtype t);
/* NumPy descr string ("<f4") and short name ("float32"). */
const char *td_dtype_descr(td_dtype t);
const char *td_dtype_name(td_dtype t);

/* Number of elements (product of the shape); 1 for ndim == 0. */
int64_t td_array_count(const td_array *a);
/* Formats the shape as "60000×128" into buf; returns buf. */
char *td_array_shape_str(const td_array *a, char *buf, size_t len);

/* Allocates a zeroed, owned array. Free with td_array_close. */
TD_NODISCARD int td_array_alloc(td_array *a, td_dtype t, int ndim,
                                const int64_t *shape);
/* Wraps caller memory without taking ownership (for saving). */
void td_array_wrap(td_array *a, td_dtype t, int ndim, const int64_t *shape,
                   void *data);
/* Releases a mapping or owned buffer; safe on a zeroed or closed array. */
void td_array_close(td_array *a);

/* Converts any float array (f32/f16) into a new owned float32 copy. For f32
 * input it still copies, so the result is always writable. */
TD_NODISCARD int td_array_to_f32(const td_array *src, td_array *dst,
                                 td_err *err);

/* Returns TD_OK if every element of a float array is finite; otherwise
 * TD_EVALUE with *first_bad (if not NULL) set to the first bad element. */
TD_NODISCARD int td_array_check_finite(const td_array *a, int64_t *first_bad);

/* Loads a .npy file (format 1.0, 2.0 or 3.0) by memory-mapping it. Rejects bad
 * magic, unknown dtypes, big-endian data, Fortran order, shapes that overflow
 * or disagree with the file size. On error *out is left zeroed. */
TD_NODISCARD int td_npy_load(const char *path, td_array *out, td_err *err);

/* Parses a .npy header from a buffer holding the start of a file (at least the
 * whole header). On success fills dtype/ndim/shape of *out (data unset) and
 * *data_offset. Exposed for tests and fuzzing. */
TD_NODISCARD int td_npy_parse_header(const void *buf, size_t len, td_array *out,
                                     size_t *data_offset, td_err *err);

/* Writes an array as .npy (format 1.0, or 2.0 when the header needs it),
 * atomically through a temporary file and rename. */
TD_NODISCARD int td_npy_save(const char *path, const td_array *a, td_err *err);

/* Convenience: save a raw buffer with the given dtype and shape. */
TD_NODISCARD int td_npy_save_raw(const char *path, td_dtype t, int ndim,
                                 const int64_t *shape, const void *data,
                                 td_err *err);

/* IEEE half <-> float conversions (round to nearest even). */
float td_f16_to_f32(uint16_t h);
uint16_t td_f32_to_f16(float f);

#endif
