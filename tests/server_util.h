/* The server of the black-box server tests, started in this process on an
 * ephemeral loopback port: its options, its start (saying why it failed)
 * and its token for http_client.h's requests. */
#ifndef TD_TESTS_SERVER_UTIL_H
#define TD_TESTS_SERVER_UTIL_H

#include <stdio.h>

#include "http_client.h"
#include "tardis/server.h"

/* The default options for serving run_dir on an ephemeral loopback port. */
static inline void td_t_server_opts(td_server_opts *o, const char *run_dir) {
  td_server_opts_init(o);
  o->run_dir = run_dir;
  o->port = 0;
}

/* Starts a server with o: it, with its port in *port (may be NULL), or
 * NULL after printing why on stderr. */
static inline td_server *td_t_server_start(const td_server_opts *o, int *port) {
  td_server *s = NULL;
  td_err err;
  if (td_server_start(o, &s, &err)) {
    fprintf(stderr, "  server on %s: %s\n", o->run_dir, err.msg);
    return NULL;
  }
  if (port)
    *port = td_server_port(s);
  return s;
}

/* Makes td_t_http send srv's token, as the UI does. */
static inline void td_t_use_token(const td_server *srv) {
  snprintf(td_t_token, sizeof td_t_token, "%s", td_server_token(srv));
}

#endif
