/* JSON files opened without blocking on FIFOs (see json_file.h). */
#include "core/json_file.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tardis/fsutil.h"

json_t *td__json_load_file(const char *path, size_t flags, json_error_t *je) {
  td_err err;
  int fd = td_open_regular(path, NULL, &err);
  if (fd < 0) {
    if (je) {
      memset(je, 0, sizeof *je);
      /* err.msg starts with the path, which the callers print already */
      size_t n = strlen(path);
      const char *why = strncmp(err.msg, path, n) == 0 && err.msg[n] == ':'
                            ? err.msg + n + 1 + (err.msg[n + 1] == ' ')
                            : err.msg;
      snprintf(je->text, sizeof je->text, "%.150s", why);
      snprintf(je->source, sizeof je->source, "%s", "<open>");
    }
    return NULL;
  }
  json_t *root = json_loadfd(fd, flags, je);
  close(fd);
  return root;
}
