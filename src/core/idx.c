/* IDX reader (through zlib, so .gz and plain files both work). */
#include "tardis/idx.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

static int read_exact(gzFile f, void *buf, size_t n) {
  char *p = buf;
  while (n > 0) {
    unsigned chunk = n > (1u << 30) ? (1u << 30) : (unsigned)n;
    int r = gzread(f, p, chunk);
    if (r <= 0)
      return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

int td_idx_load(const char *path, td_array *out, td_err *err) {
  memset(out, 0, sizeof *out);
  gzFile f = gzopen(path, "rb");
  if (!f)
    return td_err_set(err, errno == ENOENT ? TD_ENOENT : TD_EIO, "%s: %s", path,
                      errno ? strerror(errno) : "cannot open");
  unsigned char magic[4];
  int rc = TD_OK;
  if (read_exact(f, magic, 4) != 0 || magic[0] != 0 || magic[1] != 0) {
    rc = td_err_set(err, TD_EFORMAT, "%s: not an IDX file (bad magic)", path);
    goto done;
  }
  if (magic[2] != 0x08) {
    rc = td_err_set(err, TD_EDTYPE,
                    "%s: IDX element type 0x%02x is not unsigned byte (0x08)",
                    path, magic[2]);
    goto done;
  }
  int ndim = magic[3];
  if (ndim < 1 || ndim > TD_MAX_DIMS) {
    rc = td_err_set(err, TD_EFORMAT, "%s: IDX file with %d dimensions", path,
                    ndim);
    goto done;
  }
  int64_t shape[TD_MAX_DIMS];
  uint64_t count = 1;
  for (int i = 0; i < ndim; i++) {
    unsigned char b[4];
    if (read_exact(f, b, 4) != 0) {
      rc = td_err_set(err, TD_EFORMAT, "%s: truncated IDX header", path);
      goto done;
    }
    shape[i] = (int64_t)((uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 |
                         (uint32_t)b[2] << 8 | b[3]);
    count *= (uint64_t)shape[i];
    if (count > ((uint64_t)1 << 40)) {
      rc = td_err_set(err, TD_EFORMAT, "%s: IDX dimensions too large", path);
      goto done;
    }
  }
  /* A header may promise any size: check it against what the file can
   * hold (deflate expands at most 1032-fold) before allocating it. */
  struct stat st;
  if (stat(path, &st) == 0 && count / 1032 > (uint64_t)st.st_size) {
    rc = td_err_set(err, TD_EFORMAT,
                    "%s: truncated IDX data (expected %llu bytes, the file "
                    "has %lld)",
                    path, (unsigned long long)count, (long long)st.st_size);
    goto done;
  }
  if (td_array_alloc(out, TD_U8, ndim, shape) != TD_OK) {
    rc = td_err_set(err, TD_ENOMEM, "%s: out of memory", path);
    goto done;
  }
  if (read_exact(f, out->data, out->nbytes) != 0) {
    td_array_close(out);
    rc = td_err_set(err, TD_EFORMAT,
                    "%s: truncated IDX data (expected %llu bytes)", path,
                    (unsigned long long)count);
    goto done;
  }
  char extra;
  if (gzread(f, &extra, 1) > 0) {
    td_array_close(out);
    rc = td_err_set(err, TD_EFORMAT, "%s: trailing bytes after IDX data", path);
  }
done:
  gzclose(f);
  return rc;
}
