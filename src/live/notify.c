/* Noticing changes in a run directory: inotify on RUN/ and RUN/epochs/
 * (epochs are renamed into place, so IN_MOVED_TO marks a committed one),
 * with a timeout that makes plain polling the fallback. Whatever wakes the
 * follower, it re-lists the run: an event only says "look now". */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "live/live_internal.h"
#include "tardis/fsutil.h"

#define RUN_EVENTS                                                             \
  (IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE | IN_DELETE_SELF | IN_MOVE_SELF)

int td__notify_open(td__notify *n, const char *run_dir, int use_inotify,
                    td_err *err) {
  int p[2];
  n->fd = n->wd_epochs = n->pipe_rd = n->pipe_wr = -1;
  if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0)
    return td_err_set(err, TD_EIO, "%s: cannot create a pipe: %s", run_dir,
                      strerror(errno));
  n->pipe_rd = p[0];
  n->pipe_wr = p[1];
  int rc = td_pathf(n->epochs, sizeof n->epochs, err, "%s/epochs", run_dir);
  if (rc) {
    td__notify_close(n);
    return rc;
  }
  if (!use_inotify)
    return TD_OK;
  n->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (n->fd >= 0 && inotify_add_watch(n->fd, run_dir, RUN_EVENTS) < 0) {
    close(n->fd); /* e.g. out of watches: polling still works */
    n->fd = -1;
  }
  return TD_OK;
}

/* RUN/epochs/ appears with run.json; watch it once it is there. */
static void watch_epochs(td__notify *n) {
  if (n->fd >= 0 && n->wd_epochs < 0 && td_path_is_dir(n->epochs))
    n->wd_epochs = inotify_add_watch(n->fd, n->epochs, RUN_EVENTS);
}

static void drain(int fd) {
  char buf[4096];
  while (read(fd, buf, sizeof buf) > 0)
    ;
}

void td__notify_wait(td__notify *n, int timeout_ms) {
  watch_epochs(n);
  struct pollfd pf[2] = {{n->pipe_rd, POLLIN, 0}, {n->fd, POLLIN, 0}};
  int np = n->fd >= 0 ? 2 : 1;
  if (poll(pf, (nfds_t)np, timeout_ms) > 0) {
    if (np == 2 && pf[1].revents)
      drain(n->fd);
    /* A wake byte left in the pipe would make every later wait return at
     * once (the follower spun on its own thread after the first fit, ~3,000
     * wake-ups a second). Draining loses nothing: whoever wakes the follower
     * sets what it should look at (a stop flag, a job's done flag) first,
     * and the follower looks at all of it after every wait. */
    if (pf[0].revents)
      drain(n->pipe_rd);
  }
}

void td__notify_wake(td__notify *n) {
  if (n->pipe_wr >= 0) {
    ssize_t w = write(n->pipe_wr, "x", 1);
    (void)w; /* a full pipe is already a pending wake */
  }
}

void td__notify_close(td__notify *n) {
  if (n->fd >= 0)
    close(n->fd);
  if (n->pipe_rd >= 0)
    close(n->pipe_rd);
  if (n->pipe_wr >= 0)
    close(n->pipe_wr);
  n->fd = n->pipe_rd = n->pipe_wr = -1;
}
