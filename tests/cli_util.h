/* Helpers of the tests that run the `tardis` command and read what it
 * wrote: exit statuses of shell commands and whole files. */
#ifndef TD_TESTS_CLI_UTIL_H
#define TD_TESTS_CLI_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "harness.h"
#include "tardis/fsutil.h"
#include "tardis/run.h"

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

/* Whether the file at path contains want; when not, prints what it holds
 * (the output of a command, say) for the log. */
static inline int td_t_file_has(const char *path, const char *want) {
  char *txt = td_t_slurp(path);
  int has = txt && strstr(txt, want);
  if (!has)
    fprintf(stderr, "  %s does not contain \"%s\"; it holds:\n%s\n", path, want,
            txt ? txt : "(nothing: unreadable)");
  free(txt);
  return has;
}

/* The setup of a test binary that runs `tardis`: the binary (TD_BIN, which
 * ctest sets) into bin and a fresh scratch directory td_t_tmpdir(name) into
 * dir; 0, or 1 after saying what is missing. */
static inline int td_t_cli_setup(char *bin, size_t blen, char *dir, size_t dlen,
                                 const char *name) {
  const char *b = getenv("TD_BIN");
  if (!b) {
    fprintf(stderr, "TD_BIN is not set (ctest sets it to the tardis binary)\n");
    return 1;
  }
  const char *t = td_t_tmpdir(name);
  if (!t) {
    fprintf(stderr, "cannot make the scratch directory of %s\n", name);
    return 1;
  }
  snprintf(bin, blen, "%s", b);
  snprintf(dir, dlen, "%s", t);
  return 0;
}

/* Trains DIR/NAME afresh with `BIN train --out NAME ARGS --quiet` run in
 * dir, and opens it: the run, or NULL after saying what failed. */
static inline td_run *td_t_train_open(const char *bin, const char *dir,
                                      const char *name, const char *args) {
  char cmd[20000], run_dir[4200];
  snprintf(cmd, sizeof cmd,
           "cd %s && rm -rf %s && %s train --out %s %s --quiet > /dev/null",
           dir, name, bin, name, args);
  int st = td_t_system(cmd);
  if (st != 0) {
    fprintf(stderr, "  %s: exit status %d\n", cmd, st);
    return NULL;
  }
  snprintf(run_dir, sizeof run_dir, "%s/%s", dir, name);
  td_run *run = NULL;
  td_err err;
  if (td_run_open(run_dir, &run, &err) != TD_OK) {
    fprintf(stderr, "  %s: %s\n", run_dir, err.msg);
    return NULL;
  }
  return run;
}

#endif
