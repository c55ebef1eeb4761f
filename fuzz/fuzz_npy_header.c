/* The .npy header parser on arbitrary bytes (td_npy_parse_header). */
#include <stdint.h>

#include "tardis/array.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  td_array a;
  size_t off;
  td_err err;
  if (td_npy_parse_header(data, size, &a, &off, &err) == TD_OK &&
      off > size + (1u << 20))
    __builtin_trap(); /* a data offset beyond any header is a parser bug */
  return 0;
}
