/* tardis/fsutil.h — small file-system helpers used across tardis. */
#ifndef TARDIS_FSUTIL_H
#define TARDIS_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>

#include "tardis/error.h"

/* The size of every path buffer in tardis (PATH_MAX on Linux). */
#define TD_PATH_MAX 4096

/* snprintf into a path buffer. When the path does not fit: TD_ERANGE, with a
 * message naming the start of the truncated path, and buf holds "" (so a
 * caller that goes on reads the path as absent rather than as a truncated
 * one). Every path tardis builds from parts goes through here. */
TD_NODISCARD int td_pathf(char *buf, size_t len, td_err *err, const char *fmt,
                          ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* Joins a and b with '/' into buf; returns TD_ERANGE if it does not fit. */
TD_NODISCARD int td_path_join(char *buf, size_t len, const char *a,
                              const char *b);
bool td_path_exists(const char *path);
bool td_path_is_dir(const char *path);
/* mkdir -p. */
TD_NODISCARD int td_mkdirs(const char *path, td_err *err);
/* rm -rf (refuses "/" and ""). */
TD_NODISCARD int td_remove_tree(const char *path, td_err *err);
/* td_remove_tree for cleanup, where a failure has nowhere to go: a temporary
 * directory after another error (which is the one to report), an aborted
 * writer, a stale leftover. What it cannot remove stays behind and is swept
 * as stale later (td_run_remove_stale, the vis writer's start). */
void td_remove_tree_best_effort(const char *path);
/* Writes a whole file atomically (temp file + fsync + rename). */
TD_NODISCARD int td_write_file_atomic(const char *path, const void *data,
                                      size_t len, td_err *err);
/* Opens a regular file for reading without blocking on a FIFO: anything
 * else (FIFO, device, directory, socket) is refused with TD_EIO naming the
 * path and what it is. Returns the descriptor (blocking, close-on-exec; the
 * caller closes it) and its size in *size (if not NULL), or a negative
 * td_err code. Every reader of a run's files opens them through here. */
TD_NODISCARD int td_open_regular(const char *path, size_t *size, td_err *err);
/* Reads a whole file into a td_malloc'd, NUL-terminated buffer (caller
 * frees). */
TD_NODISCARD int td_read_file(const char *path, char **data, size_t *len,
                              td_err *err);
/* fsyncs a directory so that renames inside it are durable. */
void td_fsync_dir(const char *path);

#endif
