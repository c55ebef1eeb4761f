/* The HTTP server end to end: the input is sent as raw bytes (request line,
 * headers, body) over loopback to a real server on a small valid run, so
 * the router, the guard and every handler see it as a browser's request.
 * The server runs in this process, so its threads' coverage counts. */
#include "fuzz_server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_start_server(200); /* an event stream ends soon after its client */
  int fd = fz_connect(3);
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
