/* File-system helpers: paths, mkdir -p, rm -rf, atomic whole-file writes. */
#include "tardis/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tardis/alloc.h"

int td_pathf(char *buf, size_t len, td_err *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, len, fmt, ap);
  va_end(ap);
  if (n >= 0 && (size_t)n < len)
    return TD_OK;
  int rc = td_err_set(err, TD_ERANGE,
                      "path too long (%d bytes, room for %zu): "
                      "%.200s...",
                      n, len ? len - 1 : 0, len ? buf : "");
  if (len)
    buf[0] = '\0';
  return rc;
}

int td_path_join(char *buf, size_t len, const char *a, const char *b) {
  return (a && *a) ? td_pathf(buf, len, NULL, "%s/%s", a, b)
                   : td_pathf(buf, len, NULL, "%s", b);
}

bool td_path_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

bool td_path_is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int td_mkdirs(const char *path, td_err *err) {
  char buf[TD_PATH_MAX];
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof buf)
    return td_err_set(err, TD_EARG, "invalid directory path '%s'", path);
  memcpy(buf, path, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (buf[i] == '/' || buf[i] == '\0') {
      char c = buf[i];
      buf[i] = '\0';
      if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return td_err_set(err, TD_EIO, "%s: cannot create directory: %s", buf,
                          strerror(errno));
      buf[i] = c;
    }
  }
  if (!td_path_is_dir(path))
    return td_err_set(err, TD_EIO, "%s: exists and is not a directory", path);
  return TD_OK;
}

static int remove_rec(const char *path, td_err *err) {
  struct stat st;
  if (lstat(path, &st) != 0)
    return errno == ENOENT
               ? TD_OK
               : td_err_set(err, TD_EIO, "%s: %s", path, strerror(errno));
  if (S_ISDIR(st.st_mode)) {
    DIR *d = opendir(path);
    if (!d)
      return td_err_set(err, TD_EIO, "%s: %s", path, strerror(errno));
    struct dirent *e;
    int rc = TD_OK;
    while (rc == TD_OK && (e = readdir(d)) != NULL) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
        continue;
      char child[TD_PATH_MAX];
      if (td_path_join(child, sizeof child, path, e->d_name) != TD_OK)
        rc = td_err_set(err, TD_ERANGE, "%s: path too long", path);
      else
        rc = remove_rec(child, err);
    }
    closedir(d);
    if (rc != TD_OK)
      return rc;
    if (rmdir(path) != 0)
      return td_err_set(err, TD_EIO, "%s: %s", path, strerror(errno));
    return TD_OK;
  }
  if (unlink(path) != 0)
    return td_err_set(err, TD_EIO, "%s: %s", path, strerror(errno));
  return TD_OK;
}

int td_remove_tree(const char *path, td_err *err) {
  if (!path || !*path || !strcmp(path, "/"))
    return td_err_set(err, TD_EARG, "refusing to remove '%s'",
                      path ? path : "");
  return remove_rec(path, err);
}

void td_remove_tree_best_effort(const char *path) {
  if (td_remove_tree(path, NULL) != TD_OK) {
    /* ignored by design; see fsutil.h */
  }
}

void td_fsync_dir(const char *path) {
  int fd = open(path, O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
}

int td_write_file_atomic(const char *path, const void *data, size_t len,
                         td_err *err) {
  char tmp[TD_PATH_MAX];
  int rc = td_pathf(tmp, sizeof tmp, err, "%s.tmp.%d", path, (int)getpid());
  if (rc)
    return rc;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0)
    return td_err_set(err, TD_EIO, "%s: cannot create: %s", tmp,
                      strerror(errno));
  const char *p = data;
  size_t left = len;
  while (left > 0) {
    ssize_t w = write(fd, p, left);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      int e = errno;
      close(fd);
      unlink(tmp);
      return td_err_set(err, TD_EIO, "%s: write failed: %s", path, strerror(e));
    }
    p += w;
    left -= (size_t)w;
  }
  if (fsync(fd) != 0 || close(fd) != 0) {
    unlink(tmp);
    return td_err_set(err, TD_EIO, "%s: cannot flush: %s", path,
                      strerror(errno));
  }
  if (rename(tmp, path) != 0) {
    int e = errno;
    unlink(tmp);
    return td_err_set(err, TD_EIO, "%s: cannot rename into place: %s", path,
                      strerror(e));
  }
  return TD_OK;
}

/* O_NONBLOCK makes open() return at once on a FIFO (which would otherwise
 * wait for a writer forever); the fstat then refuses anything but a regular
 * file before a byte is read, and the flag is cleared again for the reads. */
int td_open_regular(const char *path, size_t *size, td_err *err) {
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0)
    return td_err_set(err, errno == ENOENT ? TD_ENOENT : TD_EIO, "%s: %s", path,
                      strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return td_err_set(err, TD_EIO, "%s: %s", path, strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return td_err_set(err, TD_EIO, "%s: not a regular file (%s)", path,
                      S_ISFIFO(st.st_mode)   ? "a FIFO"
                      : S_ISDIR(st.st_mode)  ? "a directory"
                      : S_ISSOCK(st.st_mode) ? "a socket"
                                             : "a device");
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
    int e = errno;
    close(fd);
    return td_err_set(err, TD_EIO, "%s: %s", path, strerror(e));
  }
  if (size)
    *size = (size_t)st.st_size;
  return fd;
}

int td_read_file(const char *path, char **data, size_t *len, td_err *err) {
  int fd = td_open_regular(path, NULL, err);
  if (fd < 0)
    return fd;
  FILE *f = fdopen(fd, "rb");
  if (!f) {
    int e = errno;
    close(fd);
    return td_err_set(err, e == ENOMEM ? TD_ENOMEM : TD_EIO, "%s: %s", path,
                      strerror(e));
  }
  size_t cap = 4096, n = 0;
  char *buf = td_malloc(cap);
  if (!buf) {
    fclose(f);
    return td_err_set(err, TD_ENOMEM, "%s: out of memory", path);
  }
  for (;;) {
    if (n + 1 >= cap) {
      char *nb = td_realloc(buf, cap * 2);
      if (!nb) {
        td_free(buf);
        fclose(f);
        return td_err_set(err, TD_ENOMEM, "%s: out of memory", path);
      }
      buf = nb;
      cap *= 2;
    }
    size_t r = fread(buf + n, 1, cap - n - 1, f);
    n += r;
    if (r == 0)
      break;
  }
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    td_free(buf);
    return td_err_set(err, TD_EIO, "%s: read error", path);
  }
  buf[n] = '\0';
  *data = buf;
  if (len)
    *len = n;
  return TD_OK;
}
