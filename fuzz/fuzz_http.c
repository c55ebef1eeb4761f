/* The HTTP server end to end: the input is sent as raw bytes (request line,
 * headers, body) over loopback to a real server on a small valid run, so
 * the router, the guard and every handler see it as a browser's request.
 * The server runs in this process, so its threads' coverage counts. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "fuzz_common.h"
#include "tardis/server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The token the seeds carry (fuzz/corpus/http; their Host names no port,
 * which the server accepts, so any free port does). */
#define FZ_TOKEN "0123456789abcdef0123456789abcdef"
static int port;

static void start_server(void) {
  static td_server *srv;
  if (srv)
    return;
  signal(SIGPIPE, SIG_IGN);
  td_server_opts o;
  td_server_opts_init(&o);
  o.run_dir = fz_run();
  o.method = "pca";
  o.port = 0;
  o.token = FZ_TOKEN;
  o.heartbeat_ms = 200; /* an event stream ends soon after its client */
  td_err err;
  if (td_server_start(&o, &srv, &err)) {
    fprintf(stderr, "fuzz server: %s\n", err.msg);
    abort();
  }
  port = td_server_port(srv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  start_server();
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    abort();
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct timeval tv = {3, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
    abort();
  for (size_t off = 0; off < size;) {
    ssize_t n = send(fd, data + off, size - off, MSG_NOSIGNAL);
    if (n <= 0)
      break;
    off += (size_t)n;
  }
  /* no more requests on this connection: the server answers what it has,
   * then closes */
  shutdown(fd, SHUT_WR);
  /* an answer that never ends (an event stream whose end is missed) is a
   * hang: libFuzzer's -timeout reports it */
  char buf[65536];
  while (recv(fd, buf, sizeof buf, 0) > 0) {
  }
  close(fd);
  return 0;
}
