/* td_array: typed views of contiguous memory, ownership, conversions. */
#include "tardis/array.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "tardis/alloc.h"

static const struct {
  size_t size;
  const char *descr, *name;
} dtype_info[TD_DTYPE_COUNT] = {
    [TD_F32] = {4, "<f4", "float32"}, [TD_F16] = {2, "<f2", "float16"},
    [TD_I32] = {4, "<i4", "int32"},   [TD_I64] = {8, "<i8", "int64"},
    [TD_U8] = {1, "|u1", "uint8"},
};

size_t td_dtype_size(td_dtype t) {
  TD_ASSERT(t >= 0 && t < TD_DTYPE_COUNT);
  return dtype_info[t].size;
}
const char *td_dtype_descr(td_dtype t) {
  TD_ASSERT(t >= 0 && t < TD_DTYPE_COUNT);
  return dtype_info[t].descr;
}
const char *td_dtype_name(td_dtype t) {
  TD_ASSERT(t >= 0 && t < TD_DTYPE_COUNT);
  return dtype_info[t].name;
}

int64_t td_array_count(const td_array *a) {
  int64_t n = 1;
  for (int i = 0; i < a->ndim; i++)
    n *= a->shape[i];
  return n;
}

char *td_array_shape_str(const td_array *a, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = '\0';
  if (a->ndim == 0) {
    snprintf(buf, len, "scalar");
    return buf;
  }
  for (int i = 0; i < a->ndim && used < len; i++) {
    int w = snprintf(buf + used, len - used, i ? "×%lld" : "%lld",
                     (long long)a->shape[i]);
    if (w < 0)
      break;
    used += (size_t)w;
  }
  return buf;
}

int td_array_alloc(td_array *a, td_dtype t, int ndim, const int64_t *shape) {
  TD_ASSERT(ndim >= 0 && ndim <= TD_MAX_DIMS);
  memset(a, 0, sizeof *a);
  a->dtype = t;
  a->ndim = ndim;
  size_t count = 1;
  for (int i = 0; i < ndim; i++) {
    TD_ASSERT(shape[i] >= 0);
    a->shape[i] = shape[i];
    if (shape[i] && count > SIZE_MAX / (size_t)shape[i] / 8)
      return TD_ENOMEM;
    count *= (size_t)shape[i];
  }
  a->nbytes = count * td_dtype_size(t);
  a->owned_ = td_calloc(a->nbytes ? a->nbytes : 1, 1);
  if (!a->owned_) {
    memset(a, 0, sizeof *a);
    return TD_ENOMEM;
  }
  a->data = a->owned_;
  return TD_OK;
}

void td_array_wrap(td_array *a, td_dtype t, int ndim, const int64_t *shape,
                   void *data) {
  TD_ASSERT(ndim >= 0 && ndim <= TD_MAX_DIMS);
  memset(a, 0, sizeof *a);
  a->dtype = t;
  a->ndim = ndim;
  size_t count = 1;
  for (int i = 0; i < ndim; i++) {
    a->shape[i] = shape[i];
    count *= (size_t)shape[i];
  }
  a->nbytes = count * td_dtype_size(t);
  a->data = data;
}

void td_array_close(td_array *a) {
  if (!a)
    return;
  if (a->map_base_)
    munmap(a->map_base_, a->map_len_);
  td_free(a->owned_);
  memset(a, 0, sizeof *a);
}

/* IEEE 754 binary16 conversions, done with integer arithmetic so they do not
 * depend on compiler support for _Float16. */
float td_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31;
  uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else { /* subnormal: renormalise */
      int e = -1;
      do {
        e++;
        mant <<= 1;
      } while (!(mant & 0x400));
      bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

uint16_t td_f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
  uint32_t exp = (x >> 23) & 0xff, mant = x & 0x7fffff;
  if (exp == 255) /* Inf or NaN (keep NaN quiet) */
    return sign | 0x7c00 | (mant ? 0x200 : 0);
  int e = (int)exp - 127 + 15;
  if (e >= 31)
    return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10)
      return sign;
    mant |= 0x800000;
    int shift = 14 - e;
    uint32_t half = mant >> shift, rem = mant & ((1u << shift) - 1),
             mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1)))
      half++;
    return sign | (uint16_t)half;
  }
  uint32_t half = ((uint32_t)e << 10) | (mant >> 13), rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (half & 1)))
    half++; /* may carry into the exponent, which is the correct rounding */
  return sign | (uint16_t)half;
}

int td_array_to_f32(const td_array *src, td_array *dst, td_err *err) {
  if (src->dtype != TD_F32 && src->dtype != TD_F16)
    return td_err_set(err, TD_EDTYPE, "expected float32 or float16, found %s",
                      td_dtype_name(src->dtype));
  if (td_array_alloc(dst, TD_F32, src->ndim, src->shape) != TD_OK)
    return td_err_set(err, TD_ENOMEM, "out of memory converting to float32");
  int64_t n = td_array_count(src);
  float *out = dst->data;
  if (src->dtype == TD_F32) {
    memcpy(out, src->data, (size_t)n * 4);
  } else {
    const uint16_t *in = src->data;
    for (int64_t i = 0; i < n; i++)
      out[i] = td_f16_to_f32(in[i]);
  }
  return TD_OK;
}

int td_array_check_finite(const td_array *a, int64_t *first_bad) {
  int64_t n = td_array_count(a);
  if (a->dtype == TD_F32) {
    const float *v = a->data;
    for (int64_t i = 0; i < n; i++)
      if (!isfinite(v[i])) {
        if (first_bad)
          *first_bad = i;
        return TD_EVALUE;
      }
  } else if (a->dtype == TD_F16) {
    const uint16_t *v = a->data;
    for (int64_t i = 0; i < n; i++)
      if ((v[i] & 0x7c00) == 0x7c00) {
        if (first_bad)
          *first_bad = i;
        return TD_EVALUE;
      }
  }
  return TD_OK;
}
