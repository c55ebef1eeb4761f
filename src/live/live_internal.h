/* Internals of live mode (src/live/), shared by its files. */
#ifndef TD_LIVE_INTERNAL_H
#define TD_LIVE_INTERNAL_H

#include "tardis/error.h"

/* Wakes the follower when the run directory may have changed: inotify on
 * RUN/ and RUN/epochs/ where available, a timeout always, and a self-pipe
 * for td_live_stop. */
typedef struct td__notify {
  int fd;        /* inotify descriptor; -1: polling only */
  int wd_epochs; /* watch on RUN/epochs/; -1 until it exists */
  int pipe_rd, pipe_wr;
  char epochs[4096];
} td__notify;

/* use_inotify 0, or inotify failing, leaves polling only. Fails only when
 * the self-pipe cannot be made. */
TD_NODISCARD int td__notify_open(td__notify *n, const char *run_dir,
                                 int use_inotify, td_err *err);
/* Returns after a change, a wake or timeout_ms, whichever comes first. A
 * wake is used up by the wait it ends: a waker sets what the follower should
 * notice (a flag) before waking it. */
void td__notify_wait(td__notify *n, int timeout_ms);
/* Async-signal-safe. */
void td__notify_wake(td__notify *n);
void td__notify_close(td__notify *n);

#endif
