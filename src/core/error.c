/* Error codes and messages: one table (TD_ERRNO_MAP) drives both. */
#include "tardis/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *td_strerror(int code) {
  switch (code) {
#define TD__ERR_MSG(name, value, msg)                                          \
  case value:                                                                  \
    return msg;
    TD_ERRNO_MAP(TD__ERR_MSG)
#undef TD__ERR_MSG
  default:
    return "unknown error";
  }
}

const char *td_err_name(int code) {
  switch (code) {
#define TD__ERR_NAME(name, value, msg)                                         \
  case value:                                                                  \
    return "TD_" #name;
    TD_ERRNO_MAP(TD__ERR_NAME)
#undef TD__ERR_NAME
  default:
    return "TD_EUNKNOWN";
  }
}

int td_err_set(td_err *err, int code, const char *fmt, ...) {
  if (err) {
    va_list ap;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
  }
  return code;
}

void td_err_prefix(td_err *err, const char *fmt, ...) {
  if (!err)
    return;
  char old[sizeof err->msg];
  va_list ap;
  memcpy(old, err->msg, sizeof old);
  va_start(ap, fmt);
  int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  va_end(ap);
  /* Truncate rather than fail: the message is for humans. */
  size_t used = n < 0 ? 0 : (size_t)n;
  if (used + 3 >= sizeof err->msg)
    return;
  memcpy(err->msg + used, ": ", 2);
  used += 2;
  size_t rest = strlen(old), room = sizeof err->msg - used - 1;
  if (rest > room)
    rest = room;
  memcpy(err->msg + used, old, rest);
  err->msg[used + rest] = '\0';
}

_Noreturn void td__assert_fail(const char *expr, const char *file, int line) {
  fprintf(stderr, "tardis: assertion failed: %s (%s:%d)\n", expr, file, line);
  abort();
}
