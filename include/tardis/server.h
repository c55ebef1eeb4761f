/* tardis/server.h — `tardis serve`: the HTTP server behind the web UI.
 *
 * Serves one run directory and its projection as a JSON/binary API plus the
 * static files of the web UI, and pushes new epochs to browsers as
 * server-sent events. docs/api.md is the reference of the routes.
 *
 *     td_server_opts o;
 *     td_server_opts_init(&o);
 *     o.run_dir = "runs/fmnist";
 *     o.port = 0;                        // any free port
 *     td_server *srv;
 *     td_err err;
 *     if (td_server_start(&o, &srv, &err)) { puts(err.msg); ... }
 *     printf("port %d\n", td_server_port(srv));
 *     ...                                // requests run on server threads
 *     td_server_stop(srv);
 *
 * Threads: the HTTP library runs one thread per connection (so a
 * long-lived event stream never blocks other requests) and the server adds
 * one thread that polls the run for new epochs, and with follow one that
 * projects them.
 */
#ifndef TARDIS_SERVER_H
#define TARDIS_SERVER_H

#include "tardis/error.h"

typedef struct td_server_opts {
  const char *run_dir; /* required */
  const char *host;    /* numeric address or name; default "127.0.0.1" */
  int port;            /* 0: an ephemeral port (see td_server_port) */
  const char *method;  /* projection method under RUN/vis/; default "dvi" */
  const char *web_dir; /* static files; NULL: the built-in TD_WEB_DIR */
  int poll_ms;         /* run polling interval for events; default 1000 */
  int heartbeat_ms;    /* event-stream heartbeat; default 15000 */
  int max_connections; /* default 512 */
  const char *token;   /* NULL: a random one per start (the default);
                          else 32 hex digits (tests and fuzzers) */
  int follow;          /* 1: project new epochs as they are recorded, on a
                          thread the server owns (include/tardis/live.h);
                          method must then be "dvi" or "pca" */
  int follow_nice;     /* with follow: nice value of the projector's full
                          fits while the run is being written, 1..19; 0:
                          never yield (include/tardis/live.h); default 19 */
  int headers_ms;      /* a request's headers must all arrive within this
                          (from the connection, or the end of the previous
                          request on it); else 408 and closed. Default 10000 */
  int body_ms;         /* its body within this after the headers; default
                          30000 */
} td_server_opts;

/* Fills *o with the defaults (run_dir NULL, port 8040). */
void td_server_opts_init(td_server_opts *o);

typedef struct td_server td_server;

/* Opens the run, binds host:port and starts serving. The strings in *opts
 * are copied. A port in use is TD_EEXIST with a message naming it; an
 * unreadable run is the run reader's error. Free with td_server_stop. */
TD_NODISCARD int td_server_start(const td_server_opts *opts, td_server **out,
                                 td_err *err);

/* The bound port (useful with port 0). */
int td_server_port(const td_server *srv);

/* The random token made at start (32 hex digits): state-changing requests
 * must send it in X-Tardis-Token, and beyond loopback every request (header,
 * ?token= or cookie). Print it in the URL: http://HOST:PORT/?token=... */
const char *td_server_token(const td_server *srv);

/* 1 when bound to a loopback address (127/8, ::1) only. */
int td_server_is_loopback(const td_server *srv);

/* Stops accepting, ends event streams, joins every thread, closes the run
 * and frees srv. NULL is fine. */
void td_server_stop(td_server *srv);

#endif
