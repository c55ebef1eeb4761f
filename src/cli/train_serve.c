/* tardis train --serve: `serve --follow` on the run while it trains. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>

#include "cli/commands.h"

static void stop_signals(sigset_t *set) {
  sigemptyset(set);
  sigaddset(set, SIGINT);
  sigaddset(set, SIGTERM);
}

/* The stop signals are blocked while the server's threads start (they
 * inherit the mask), so only the training thread takes them: Ctrl-C during
 * training ends the process as it does without --serve. */
void td_cli_train_serve_start(td_cli_train_server *t) {
  sigset_t stop;
  stop_signals(&stop);
  pthread_sigmask(SIG_BLOCK, &stop, NULL);
  signal(SIGPIPE, SIG_IGN);
  td_err err;
  t->want = 0;
  if (td_server_start(&t->opts, &t->srv, &err) != TD_OK)
    fprintf(stderr, "%stardis: cannot serve the run: %s\n",
            t->tty ? "\r\033[K" : "", err.msg);
  else {
    if (!td_server_is_loopback(t->srv))
      fprintf(stderr,
              "%stardis: warning: %s is reachable beyond this machine; every "
              "request must carry the token of the URL below\n",
              t->tty ? "\r\033[K" : "", t->opts.host);
    fprintf(stderr, "%stardis: serving %s live at http://%s:%d/?token=%s\n",
            t->tty ? "\r\033[K" : "", t->opts.run_dir, t->opts.host,
            td_server_port(t->srv), td_server_token(t->srv));
  }
  pthread_sigmask(SIG_UNBLOCK, &stop, NULL);
}

void td_cli_train_serve_finish(td_cli_train_server *t, int trained) {
  if (!t->srv)
    return;
  if (trained) {
    sigset_t stop;
    stop_signals(&stop);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    fprintf(stderr,
            "tardis: training done; still serving at http://%s:%d/?token=%s "
            "(Ctrl-C to stop)\n",
            t->opts.host, td_server_port(t->srv), td_server_token(t->srv));
    int sig = 0;
    sigwait(&stop, &sig);
  }
  td_server_stop(t->srv);
  t->srv = NULL;
}
