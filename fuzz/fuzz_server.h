/* Shared by the harnesses that talk to a real server (fuzz_http,
 * fuzz_feedback): `tardis serve` on the fixture run of fuzz_common.h,
 * started once per process in this process (so its threads' coverage
 * counts), and loopback connections to it. */
#ifndef TD_FUZZ_SERVER_H
#define TD_FUZZ_SERVER_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "fuzz_common.h"
#include "tardis/server.h"

/* The token the seeds carry (fuzz/corpus/http; their Host names no port,
 * which the server accepts, so any free port does). */
#define FZ_TOKEN "0123456789abcdef0123456789abcdef"

static int fz_port;

/* Starts the server on first use (heartbeat_ms: of its event streams; 0:
 * the default). 1 the first time, 0 after. */
static inline int fz_start_server(int heartbeat_ms) {
  static td_server *srv;
  if (srv)
    return 0;
  signal(SIGPIPE, SIG_IGN);
  td_server_opts o;
  td_server_opts_init(&o);
  o.run_dir = fz_run();
  o.method = "pca";
  o.port = 0;
  o.token = FZ_TOKEN;
  if (heartbeat_ms > 0)
    o.heartbeat_ms = heartbeat_ms;
  td_err err;
  if (td_server_start(&o, &srv, &err)) {
    fprintf(stderr, "fuzz server: %s\n", err.msg);
    abort();
  }
  fz_port = td_server_port(srv);
  return 1;
}

/* A connection to the server whose sends and receives give up after
 * timeout_s; 0: they wait, and libFuzzer's -timeout judges a server that
 * stops answering. */
static inline int fz_connect(int timeout_s) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    abort();
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)fz_port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct timeval tv = {timeout_s, 0};
  if (timeout_s > 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
    abort();
  return fd;
}

#endif
