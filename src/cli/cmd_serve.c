/* tardis serve RUN: the HTTP API and web UI of a run (docs/api.md). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "tardis/server.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: tardis serve RUN [--port 8040] [--host 127.0.0.1] "
          "[--method dvi] [--web DIR]\n"
          "\n"
          "Serves the run directory RUN and its projection to the web UI:\n"
          "a JSON/binary API under /api/ (docs/api.md) and the UI's static "
          "files.\n"
          "New epochs and projections are pushed to open pages as they "
          "appear.\n"
          "\n"
          "  --port N     TCP port (0: any free port); default 8040\n"
          "  --host ADDR  address to bind; default 127.0.0.1 (this machine "
          "only)\n"
          "  --method M   projection method under RUN/vis/; default dvi\n"
          "  --web DIR    directory of the web UI; default the built-in one\n"
          "  --help       show this help\n"
          "\n"
          "Stop with Ctrl-C. Exit status: 0 stopped, 1 could not start, 2 "
          "bad usage.\n");
}

static int parse_port(const char *s, int *out) {
  char *end;
  long v = strtol(s, &end, 10);
  if (!*s || *end || v < 0 || v > 65535)
    return -1;
  *out = (int)v;
  return 0;
}

/* Declared here too until cli/commands.h lists it. */

int td_cmd_serve(int argc, char **argv) {
  td_server_opts o;
  td_server_opts_init(&o);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int has_val = i + 1 < argc;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--port") && has_val) {
      if (parse_port(argv[++i], &o.port)) {
        fprintf(stderr, "tardis serve: bad port '%s' (0-65535)\n", argv[i]);
        return 2;
      }
    } else if (!strcmp(a, "--host") && has_val) {
      o.host = argv[++i];
    } else if (!strcmp(a, "--method") && has_val) {
      o.method = argv[++i];
    } else if (!strcmp(a, "--web") && has_val) {
      o.web_dir = argv[++i];
    } else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "tardis serve: unknown or incomplete option '%s'\n\n", a);
      usage(stderr);
      return 2;
    } else if (!o.run_dir) {
      o.run_dir = a;
    } else {
      fprintf(stderr, "tardis serve: more than one run given\n\n");
      usage(stderr);
      return 2;
    }
  }
  if (!o.run_dir) {
    usage(stderr);
    return 2;
  }

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
  printf("tardis: serving %s at http://%s%s%s:%d\n", o.run_dir, v6 ? "[" : "",
         host, v6 ? "]" : "", td_server_port(srv));
  fflush(stdout);

  int sig = 0;
  sigwait(&stop, &sig);
  fprintf(stderr, "tardis: %s, shutting down\n",
          sig == SIGINT ? "interrupted" : "terminated");
  td_server_stop(srv);
  return 0;
}
