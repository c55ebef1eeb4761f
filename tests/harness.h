/* Minimal test harness in the spirit of libuv's task.h: checks print both
 * values and the location, a test binary runs its cases and prints
 * "N passed, N failed, N skipped". A skipped case is never a pass: a binary
 * that skipped anything (and failed nothing) exits 77, which CMake's
 * SKIP_RETURN_CODE makes ctest report as skipped. */
#ifndef TD_TEST_HARNESS_H
#define TD_TEST_HARNESS_H

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tardis/error.h"

static inline const char *td_t_msg(const td_err *e) { return e ? e->msg : ""; }

static int td_t_failed_checks;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__,       \
              #cond);                                                          \
      td_t_failed_checks++;                                                    \
      return;                                                                  \
    }                                                                          \
  } while (0)

#define CHECK_INT(a, op, b)                                                    \
  do {                                                                         \
    long long td_a_ = (long long)(a), td_b_ = (long long)(b);                  \
    if (!(td_a_ op td_b_)) {                                                   \
      fprintf(stderr, "  %s:%d: %s %s %s failed: %lld vs %lld\n", __FILE__,    \
              __LINE__, #a, #op, #b, td_a_, td_b_);                            \
      td_t_failed_checks++;                                                    \
      return;                                                                  \
    }                                                                          \
  } while (0)

#define CHECK_NEAR(a, b, tol)                                                  \
  do {                                                                         \
    double td_a_ = (double)(a), td_b_ = (double)(b);                           \
    if (!(fabs(td_a_ - td_b_) <= (double)(tol))) {                             \
      fprintf(stderr, "  %s:%d: %s ≈ %s failed: %.9g vs %.9g (tol %g)\n",      \
              __FILE__, __LINE__, #a, #b, td_a_, td_b_, (double)(tol));        \
      td_t_failed_checks++;                                                    \
      return;                                                                  \
    }                                                                          \
  } while (0)

/* Checks that a tardis call returned TD_OK, printing its message if not. */
#define CHECK_OK(call, errp)                                                   \
  do {                                                                         \
    int td_rc_ = (call);                                                       \
    if (td_rc_ != 0) {                                                         \
      fprintf(stderr, "  %s:%d: %s returned %d: %s\n", __FILE__, __LINE__,     \
              #call, td_rc_, td_t_msg(errp));                                  \
      td_t_failed_checks++;                                                    \
      return;                                                                  \
    }                                                                          \
  } while (0)

#define CHECK_STR_CONTAINS(hay, needle)                                        \
  do {                                                                         \
    const char *td_h_ = (hay), *td_n_ = (needle);                              \
    if (!td_h_ || !strstr(td_h_, td_n_)) {                                     \
      fprintf(stderr, "  %s:%d: \"%s\" does not contain \"%s\"\n", __FILE__,   \
              __LINE__, td_h_ ? td_h_ : "(null)", td_n_);                      \
      td_t_failed_checks++;                                                    \
      return;                                                                  \
    }                                                                          \
  } while (0)

/* Ends the current case as skipped, saying why (printf-style). Only for
 * what the environment lacks; a missing build product is a failure. */
static int td_t_skipped_now;
#define SKIP(...)                                                              \
  do {                                                                         \
    fprintf(stderr, "  %s:%d: skipped: ", __FILE__, __LINE__);                 \
    fprintf(stderr, __VA_ARGS__);                                              \
    fputc('\n', stderr);                                                       \
    td_t_skipped_now = 1;                                                      \
    return;                                                                    \
  } while (0)

typedef void (*td_t_fn)(void);
static int td_t_passed, td_t_failed, td_t_skipped;

/* TD_TEST_ONLY=name runs only the tests whose name contains it (for
 * reproducing one test in a loop); the others are not counted at all. */
static inline void td_t_run(const char *name, td_t_fn fn) {
  const char *only = getenv("TD_TEST_ONLY");
  if (only && *only && !strstr(name, only))
    return;
  int before = td_t_failed_checks;
  fprintf(stderr, "[ RUN  ] %s\n", name);
  td_t_skipped_now = 0;
  fn();
  if (td_t_failed_checks == before && td_t_skipped_now) {
    td_t_skipped++;
    fprintf(stderr, "[ SKIP ] %s\n", name);
  } else if (td_t_failed_checks == before) {
    td_t_passed++;
    fprintf(stderr, "[  OK  ] %s\n", name);
  } else {
    td_t_failed++;
    fprintf(stderr, "[ FAIL ] %s\n", name);
  }
}

#define RUN(fn) td_t_run(#fn, fn)

/* Exit status for main: 1 on any failure, else 77 when anything was
 * skipped (ctest: SKIP_RETURN_CODE), else 0. */
static inline int td_t_finish(void) {
  printf("%d passed, %d failed, %d skipped\n", td_t_passed, td_t_failed,
         td_t_skipped);
  return td_t_failed ? 1 : td_t_skipped ? 77 : 0;
}

/* snprintf without gcc's truncation warnings (test paths are short). */
static inline void td_t_sfmt(char *buf, size_t len, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, len, fmt, ap);
  va_end(ap);
}

/* A fresh scratch directory for one test: $TD_TEST_TMP/<name>.<pid>. */
static inline const char *td_t_tmpdir(const char *name) {
  static char buf[4096];
  const char *root = getenv("TD_TEST_TMP");
  if (!root)
    root = "/tmp";
  mkdir(root, 0755);
  snprintf(buf, sizeof buf, "%s/%s.%d", root, name, (int)getpid());
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", buf);
  if (system(cmd) != 0)
    return NULL;
  mkdir(buf, 0755);
  return buf;
}

#endif
