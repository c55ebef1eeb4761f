/* NumPy .npy files: a strict header parser, memory-mapped reading and atomic
 * writing. The format: 6-byte magic "\x93NUMPY", major and minor version
 * bytes, a little-endian header length (2 bytes in 1.0, 4 bytes in 2.0/3.0),
 * then a Python dict literal describing dtype, order and shape, padded with
 * spaces to an aligned size and ended by '\n'. */
#include "tardis/array.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tardis/alloc.h"
#include "tardis/fsutil.h"

static const char npy_magic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

typedef struct {
  const char *p, *end;
} cursor;

static void skip_ws(cursor *c) {
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t'))
    c->p++;
}

static int accept(cursor *c, char ch) {
  skip_ws(c);
  if (c->p < c->end && *c->p == ch) {
    c->p++;
    return 1;
  }
  return 0;
}

/* A quoted Python string (single or double quotes, no escapes needed). */
static int parse_str(cursor *c, char *out, size_t cap) {
  skip_ws(c);
  if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
    return -1;
  char q = *c->p++;
  size_t n = 0;
  while (c->p < c->end && *c->p != q) {
    if (n + 1 >= cap || *c->p == '\\')
      return -1;
    out[n++] = *c->p++;
  }
  if (c->p >= c->end)
    return -1;
  c->p++;
  out[n] = '\0';
  return 0;
}

static int parse_dtype(const char *d, td_dtype *t) {
  /* '<' little-endian, '|' not applicable, '=' native (little-endian here). */
  char order = d[0];
  const char *code = d + 1;
  if (order != '<' && order != '|' && order != '=')
    return -1;
  if (!strcmp(code, "f4"))
    *t = TD_F32;
  else if (!strcmp(code, "f2"))
    *t = TD_F16;
  else if (!strcmp(code, "i4"))
    *t = TD_I32;
  else if (!strcmp(code, "i8"))
    *t = TD_I64;
  else if (!strcmp(code, "u1"))
    *t = TD_U8;
  else
    return -1;
  if (order == '|' && *t != TD_U8)
    return -1;
  return 0;
}

int td_npy_parse_header(const void *buf, size_t len, td_array *out,
                        size_t *data_offset, td_err *err) {
  const unsigned char *b = buf;
  memset(out, 0, sizeof *out);
  if (len < 10 || memcmp(b, npy_magic, 6) != 0)
    return td_err_set(err, TD_EFORMAT, "not a .npy file (bad magic)");
  int major = b[6];
  size_t hlen, hstart;
  if (major == 1) {
    hlen = (size_t)b[8] | (size_t)b[9] << 8;
    hstart = 10;
  } else if (major == 2 || major == 3) {
    if (len < 12)
      return td_err_set(err, TD_EFORMAT, "truncated .npy header");
    hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 |
           (size_t)b[11] << 24;
    hstart = 12;
  } else {
    return td_err_set(err, TD_EVERSION, "unsupported .npy format version %d.%d",
                      major, b[7]);
  }
  if (hlen > (1u << 20) || hstart + hlen > len)
    return td_err_set(err, TD_EFORMAT,
                      "truncated .npy header (declares %zu bytes)", hlen);
  cursor c = {(const char *)b + hstart, (const char *)b + hstart + hlen};
  int have_descr = 0, have_order = 0, have_shape = 0;
  td_dtype dtype = TD_F32;
  if (!accept(&c, '{'))
    return td_err_set(err, TD_EFORMAT, ".npy header is not a dict");
  while (!accept(&c, '}')) {
    char key[32], val[32];
    if (parse_str(&c, key, sizeof key) || !accept(&c, ':'))
      return td_err_set(err, TD_EFORMAT, "malformed .npy header");
    if (!strcmp(key, "descr")) {
      if (parse_str(&c, val, sizeof val))
        return td_err_set(err, TD_EDTYPE,
                          "unsupported dtype (structured or malformed)");
      if (parse_dtype(val, &dtype))
        return td_err_set(err, TD_EDTYPE,
                          "unsupported dtype '%s' (tardis reads float32, "
                          "float16, int32, int64, uint8, little-endian)",
                          val);
      have_descr = 1;
    } else if (!strcmp(key, "fortran_order")) {
      skip_ws(&c);
      if ((size_t)(c.end - c.p) >= 5 && !memcmp(c.p, "False", 5)) {
        c.p += 5;
      } else if ((size_t)(c.end - c.p) >= 4 && !memcmp(c.p, "True", 4)) {
        return td_err_set(err, TD_EFORMAT,
                          "Fortran-order arrays are not supported (save "
                          "with numpy.ascontiguousarray)");
      } else {
        return td_err_set(err, TD_EFORMAT, "malformed fortran_order");
      }
      have_order = 1;
    } else if (!strcmp(key, "shape")) {
      if (!accept(&c, '('))
        return td_err_set(err, TD_EFORMAT, "malformed shape");
      int nd = 0;
      while (!accept(&c, ')')) {
        skip_ws(&c);
        if (c.p >= c.end || !isdigit((unsigned char)*c.p))
          return td_err_set(err, TD_EFORMAT, "malformed shape");
        int64_t v = 0;
        while (c.p < c.end && isdigit((unsigned char)*c.p)) {
          if (v > (INT64_MAX - 9) / 10)
            return td_err_set(err, TD_EFORMAT, "shape dimension overflows");
          v = v * 10 + (*c.p++ - '0');
        }
        if (nd >= TD_MAX_DIMS)
          return td_err_set(err, TD_EFORMAT, "more than %d dimensions",
                            TD_MAX_DIMS);
        out->shape[nd++] = v;
        if (!accept(&c, ',')) {
          if (!accept(&c, ')'))
            return td_err_set(err, TD_EFORMAT, "malformed shape");
          break;
        }
      }
      out->ndim = nd;
      have_shape = 1;
    } else {
      return td_err_set(err, TD_EFORMAT, "unexpected key '%s' in .npy header",
                        key);
    }
    if (!accept(&c, ',')) {
      if (!accept(&c, '}'))
        return td_err_set(err, TD_EFORMAT, "malformed .npy header");
      break;
    }
  }
  if (!have_descr || !have_order || !have_shape)
    return td_err_set(err, TD_EFORMAT,
                      ".npy header lacks descr, fortran_order or shape");
  /* The element count times item size must not overflow. */
  uint64_t bytes = td_dtype_size(dtype);
  for (int i = 0; i < out->ndim; i++) {
    uint64_t d = (uint64_t)out->shape[i];
    if (d && bytes > (UINT64_MAX >> 1) / d)
      return td_err_set(err, TD_EFORMAT, "shape overflows");
    bytes *= d;
  }
  if (bytes > (uint64_t)INT64_MAX)
    return td_err_set(err, TD_EFORMAT, "shape overflows");
  out->dtype = dtype;
  out->nbytes = (size_t)bytes;
  *data_offset = hstart + hlen;
  return TD_OK;
}

/* numpy pads its own headers so that the data starts on a 64-byte boundary,
 * but reads any offset, and other writers pad less. Elements read in place
 * at an unaligned address are undefined behaviour in C, so such data is
 * copied into an allocation (aligned for every dtype); aligned files keep
 * the zero-copy mapping. */
#define TD_NPY_ALIGN 8

static int copy_aligned(const char *path, const void *map, size_t off,
                        td_array *a, td_err *err) {
  void *buf = td_malloc(a->nbytes ? a->nbytes : 1);
  if (!buf)
    return td_err_set(err, TD_ENOMEM, "%s: out of memory copying %zu bytes",
                      path, a->nbytes);
  memcpy(buf, (const char *)map + off, a->nbytes);
  a->data = buf;
  a->owned_ = buf;
  return TD_OK;
}

int td_npy_load(const char *path, td_array *out, td_err *err) {
  memset(out, 0, sizeof *out);
  size_t size = 0;
  int fd = td_open_regular(path, &size, err);
  if (fd < 0)
    return fd;
  if (size < 10) {
    close(fd);
    return td_err_set(err, TD_EFORMAT, "%s: truncated .npy file (%zu bytes)",
                      path, size);
  }
  /* The mapping counts as an allocation for the failure-injection hook. */
  void *map = MAP_FAILED;
  if (td__alloc_inject())
    errno = ENOMEM;
  else
    map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
  int map_errno = errno;
  close(fd);
  if (map == MAP_FAILED)
    return td_err_set(err, map_errno == ENOMEM ? TD_ENOMEM : TD_EIO,
                      "%s: cannot map: %s", path, strerror(map_errno));
  td_array a;
  size_t off = 0;
  int rc = td_npy_parse_header(map, size, &a, &off, err);
  if (rc != TD_OK) {
    munmap(map, size);
    td_err_prefix(err, "%s", path);
    return rc;
  }
  if (off + a.nbytes != size) {
    munmap(map, size);
    char sh[128];
    return td_err_set(err, TD_EFORMAT,
                      "%s: header says %s %s (%zu data bytes) but the file "
                      "holds %zu",
                      path, td_array_shape_str(&a, sh, sizeof sh),
                      td_dtype_name(a.dtype), a.nbytes,
                      size > off ? size - off : 0);
  }
  if (off % TD_NPY_ALIGN == 0) {
    a.data = (char *)map + off;
    a.map_base_ = map;
    a.map_len_ = size;
  } else if ((rc = copy_aligned(path, map, off, &a, err)) != TD_OK) {
    munmap(map, size);
    return rc;
  } else {
    munmap(map, size);
  }
  *out = a;
  return TD_OK;
}

static int write_all(int fd, const void *data, size_t len) {
  const char *p = data;
  while (len > 0) {
    size_t chunk = len > (1u << 26) ? (1u << 26) : len;
    ssize_t w = write(fd, p, chunk);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    p += w;
    len -= (size_t)w;
  }
  return 0;
}

int td_npy_save(const char *path, const td_array *a, td_err *err) {
  /* Fits: about 60 bytes of text, a descr of at most 3, and at most
   * TD_MAX_DIMS (8) dimensions of at most 22 bytes each. */
  char dict[512];
  int n = snprintf(dict, sizeof dict,
                   "{'descr': '%s', 'fortran_order': False, 'shape': (",
                   td_dtype_descr(a->dtype));
  for (int i = 0; i < a->ndim; i++)
    n += snprintf(dict + n, sizeof dict - (size_t)n, "%lld,%s",
                  (long long)a->shape[i], i + 1 < a->ndim ? " " : "");
  if (a->ndim > 1)
    n--; /* numpy writes (2, 3) but (5,) */
  n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
  /* Pad magic + length + dict + '\n' to a multiple of 64 bytes. */
  size_t pre = 10, total = pre + (size_t)n + 1;
  total = (total + 63) / 64 * 64;
  size_t hlen = total - pre;
  char header[640];
  memcpy(header, npy_magic, 6);
  header[6] = 1;
  header[7] = 0;
  header[8] = (char)(hlen & 0xff);
  header[9] = (char)(hlen >> 8);
  memcpy(header + pre, dict, (size_t)n);
  memset(header + pre + n, ' ', hlen - (size_t)n - 1);
  header[total - 1] = '\n';

  char tmp[TD_PATH_MAX];
  int rc = td_pathf(tmp, sizeof tmp, err, "%s.tmp.%d", path, (int)getpid());
  if (rc)
    return rc;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0)
    return td_err_set(err, TD_EIO, "%s: cannot create: %s", path,
                      strerror(errno));
  if (write_all(fd, header, total) != 0 ||
      write_all(fd, a->data, a->nbytes) != 0 || fsync(fd) != 0) {
    int e = errno;
    close(fd);
    unlink(tmp);
    return td_err_set(err, TD_EIO, "%s: write failed: %s", path, strerror(e));
  }
  if (close(fd) != 0 || rename(tmp, path) != 0) {
    int e = errno;
    unlink(tmp);
    return td_err_set(err, TD_EIO, "%s: cannot finish writing: %s", path,
                      strerror(e));
  }
  return TD_OK;
}

int td_npy_save_raw(const char *path, td_dtype t, int ndim,
                    const int64_t *shape, const void *data, td_err *err) {
  td_array a;
  td_array_wrap(&a, t, ndim, shape, (void *)(uintptr_t)data);
  return td_npy_save(path, &a, err);
}
