/* Helpers of the tests that run the `tardis` command and read what it
 * wrote: exit statuses of shell commands and whole files. */
#ifndef TD_TESTS_CLI_UTIL_H
#define TD_TESTS_CLI_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "tardis/fsutil.h"

/* The exit status of `sh -c cmd`; 128 when it did not exit (a signal). */
static inline int td_t_system(const char *cmd) {
  int st = system(cmd);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* The whole file, NUL-terminated (free it), or NULL when unreadable. */
static inline char *td_t_slurp(const char *path) {
  char *data = NULL;
  size_t len;
  if (td_read_file(path, &data, &len, NULL) != TD_OK)
    return NULL;
  return data;
}

/* Runs `BIN ARGS > out 2>&1`; returns its exit status. */
static inline int td_t_tardis(const char *bin, const char *out,
                              const char *args) {
  char cmd[40000];
  snprintf(cmd, sizeof cmd, "'%s' %s > '%s' 2>&1", bin, args, out);
  return td_t_system(cmd);
}

#endif
