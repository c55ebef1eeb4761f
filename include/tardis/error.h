/* tardis/error.h — error codes and detailed error messages.
 *
 * Every fallible function in tardis returns an int: 0 (TD_OK) on success or one
 * of the negative TD_E* codes below. Functions that read files or parse input
 * also take a `td_err *` (may be NULL) that receives a message naming the file
 * and what was wrong, e.g.
 *
 *     td_err err;
 *     td_array a;
 *     if (td_npy_load("run/train_labels.npy", &a, &err) != TD_OK)
 *         fprintf(stderr, "tardis: %s\n", err.msg);
 *
 * Out-of-memory policy: library functions return TD_ENOMEM with a message
 * and leave their outputs untouched; they never abort on a failed allocation
 * (see tardis/alloc.h). The command-line front end reports it and exits.
 * Programmer errors (violated preconditions) abort through TD_ASSERT, in
 * release builds too.
 */
#ifndef TARDIS_ERROR_H
#define TARDIS_ERROR_H

#include <stddef.h>

/* Marks a fallible function (one returning a TD_E* code, or an allocated
 * pointer that is NULL on failure): the compiler warns when a caller drops
 * the result. A `(void)` cast does not silence it under GCC; a caller that
 * may truly ignore a failure says so with a checked `if (...) {}` and a
 * comment. */
#if defined(__GNUC__)
#define TD_NODISCARD __attribute__((warn_unused_result))
#else
#define TD_NODISCARD
#endif

/* X(name, value, message). Values are only ever appended. */
#define TD_ERRNO_MAP(X)                                                        \
  X(OK, 0, "success")                                                          \
  X(ENOMEM, -1, "out of memory")                                               \
  X(EIO, -2, "input/output error")                                             \
  X(ENOENT, -3, "no such file or directory")                                   \
  X(EEXIST, -4, "already exists")                                              \
  X(EFORMAT, -5, "malformed file")                                             \
  X(EDTYPE, -6, "unsupported data type")                                       \
  X(ESHAPE, -7, "shape mismatch")                                              \
  X(EVALUE, -8, "invalid value")                                               \
  X(EARG, -9, "invalid argument")                                              \
  X(EVERSION, -10, "unsupported format version")                               \
  X(ERANGE, -11, "out of range")                                               \
  X(EINTERRUPTED, -12, "interrupted")                                          \
  X(ESTATE, -13, "invalid state")

/* TD_ERR_COUNT counts the table's rows ("0 +1 +1 ..."), so appending a code
 * cannot leave it stale. */
#define TD__ERR_ENUM(name, value, msg) TD_##name = value,
#define TD__ERR_ONE(name, value, msg) +1
typedef enum {
  TD_ERRNO_MAP(TD__ERR_ENUM) TD_ERR_COUNT = 0 TD_ERRNO_MAP(TD__ERR_ONE)
} td_errcode;
#undef TD__ERR_ENUM
#undef TD__ERR_ONE

/* Detailed error: the code plus a human-readable message. */
typedef struct td_err {
  int code;
  char msg[1024];
} td_err;

/* Static message for a code ("malformed file"); never NULL. */
const char *td_strerror(int code);
/* Symbolic name of a code ("TD_EFORMAT"); never NULL. */
const char *td_err_name(int code);

/* Fills *err (if not NULL) with code and a printf-style message; returns code.
 * Typical use: `return td_err_set(err, TD_EFORMAT, "%s: bad magic", path);` */
int td_err_set(td_err *err, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Prepends "prefix: " to an existing message (used to add context). */
void td_err_prefix(td_err *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Aborts with file and line when cond is false, in every build type. */
#define TD_ASSERT(cond)                                                        \
  do {                                                                         \
    if (!(cond))                                                               \
      td__assert_fail(#cond, __FILE__, __LINE__);                              \
  } while (0)

_Noreturn void td__assert_fail(const char *expr, const char *file, int line);

#endif
