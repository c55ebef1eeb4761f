/* tardis serve RUN: the HTTP API and web UI of a run (docs/api.md). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "tardis/server.h"

int td_cmd_serve(int argc, char **argv) {
  td_server_opts o;
  td_server_opts_init(&o);
  td_opt opts[] = {
      TD_OPT_INT("port", &o.port, 0, 65535, "N",
                 "TCP port (0: any free port); default 8040"),
      TD_OPT_STRING("host", &o.host, "ADDR",
                    "address to bind; default 127.0.0.1 (this machine only)"),
      TD_OPT_STRING("method", &o.method, "M",
                    "projection method under RUN/vis/; default dvi"),
      TD_OPT_STRING("web", &o.web_dir, "DIR",
                    "directory of the web UI; default the built-in one"),
      TD_OPT_FLAG("follow", &o.follow,
                  "project new epochs as they are recorded (a run being\n"
                  "written by `tardis train` or the Python recorder)"),
      TD_OPT_INT("nice", &o.follow_nice, 0, 19, "N",
                 "with --follow: while the run is being written, fits,\n"
                 "drafts and alerts run at idle priority (SCHED_IDLE) and\n"
                 "this nice value (default 19; 0: never yield to the trainer)"),
      TD_OPT_END};
  const td_arg_pos pos[] = {{"RUN", &o.run_dir}, {0}};
  td_args_cmd cmd = {
      .name = "serve",
      .usage = "serve RUN [--port 8040] [--host 127.0.0.1] [--method dvi] "
               "[--web DIR] [--follow [--nice N]]",
      .about = "Serves the run directory RUN and its projection to the web "
               "UI:\na JSON/binary API under /api/ (docs/api.md) and the UI's "
               "static files.\nNew epochs and projections are pushed to open "
               "pages as they appear.",
      .after = "Stop with Ctrl-C. Exit status: 0 stopped, 1 could not start, 2 "
               "bad usage.",
      .opts = opts,
      .pos = pos};
  int status;
  if (!td_args_parse(&cmd, argc, argv, &status))
    return status;

  /* Block the stop signals in every thread (the server's threads inherit
   * this mask) and take them synchronously below. */
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, NULL);
  signal(SIGPIPE, SIG_IGN);

  td_server *srv;
  td_err err;
  if (td_server_start(&o, &srv, &err) != TD_OK) {
    fprintf(stderr, "tardis serve: %s\n", err.msg);
    return 1;
  }
  const char *host = o.host;
  int v6 = strchr(host, ':') != NULL;
  if (!td_server_is_loopback(srv))
    fprintf(stderr,
            "tardis: warning: %s is reachable beyond this machine; every "
            "request must carry the token of the URL below\n",
            host);
  printf("tardis: serving %s at http://%s%s%s:%d/?token=%s\n", o.run_dir,
         v6 ? "[" : "", host, v6 ? "]" : "", td_server_port(srv),
         td_server_token(srv));
  fflush(stdout);

  int sig = 0;
  sigwait(&stop, &sig);
  fprintf(stderr, "tardis: %s, shutting down\n",
          sig == SIGINT ? "interrupted" : "terminated");
  td_server_stop(srv);
  return 0;
}
