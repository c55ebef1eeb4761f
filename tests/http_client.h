/* A tiny HTTP/1.1 client on plain sockets for the server tests: one request
 * per connection, the whole response kept (status, headers, de-chunked
 * body). A failure of the client itself (no connection, out of memory) is
 * printed and leaves status 0, so every status check fails clearly. */
#ifndef TD_TEST_HTTP_CLIENT_H
#define TD_TEST_HTTP_CLIENT_H

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

typedef struct td_t_resp {
  int status; /* 0: no response (see closed_early) */
  char *raw;  /* whole response, NUL-terminated (owned) */
  size_t len; /* of raw */
  char *body; /* points into raw (after de-chunking); NULL without one */
  size_t blen;
  int closed_early; /* the connection closed with no status line */
} td_t_resp;

static inline void td_t_resp_free(td_t_resp *r) {
  free(r->raw);
  memset(r, 0, sizeof *r);
}

/* Seconds a send or receive of td_t_connect's sockets may wait. */
static int td_t_timeout_s = 5;

/* A connected socket to 127.0.0.1:port with td_t_timeout_s timeouts, or
 * -1. */
static inline int td_t_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return -1;
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct timeval tv = {td_t_timeout_s, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Writes all of buf; the server may close early on hostile input. */
static inline void td_t_send_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n <= 0)
      return;
    p += n;
    len -= (size_t)n;
  }
}

static inline void td_t_dechunk(td_t_resp *r) {
  char *src = r->body, *end = r->raw + r->len, *dst = r->body;
  while (src < end) {
    char *e;
    unsigned long n = strtoul(src, &e, 16);
    char *line_end = strstr(src, "\r\n");
    if (!line_end || n == 0)
      break;
    src = line_end + 2;
    if ((size_t)(end - src) < n)
      n = (size_t)(end - src);
    memmove(dst, src, n);
    dst += n;
    src += n + 2;
  }
  r->blen = (size_t)(dst - r->body);
  *dst = '\0';
}

/* A response with Content-Length is complete once that many body bytes are
 * in: the server may keep the connection open after an error. */
static inline int td_t_response_complete(char *raw, size_t len) {
  raw[len] = '\0';
  char *h = strstr(raw, "\r\n\r\n");
  if (!h)
    return 0;
  char *cl = strcasestr(raw, "\r\nContent-Length:");
  if (!cl || cl > h)
    return 0;
  size_t want = strtoul(cl + 17, NULL, 10);
  return len - (size_t)(h + 4 - raw) >= want;
}

/* Sends a raw request and reads the response until it is complete or the
 * server closes. */
static inline void td_t_http_raw(int port, const void *req, size_t len,
                                 td_t_resp *r) {
  memset(r, 0, sizeof *r);
  size_t cap = 1 << 16;
  r->raw = malloc(cap + 1);
  if (!r->raw) {
    fprintf(stderr, "  http client: out of memory\n");
    return;
  }
  r->raw[0] = '\0';
  int fd = td_t_connect(port);
  if (fd < 0) {
    fprintf(stderr, "  http client: cannot connect to port %d\n", port);
    return;
  }
  td_t_send_all(fd, req, len);
  for (;;) {
    if (r->len == cap) {
      char *more = realloc(r->raw, 2 * cap + 1);
      if (!more) {
        fprintf(stderr, "  http client: out of memory after %zu bytes\n",
                r->len);
        close(fd);
        r->raw[0] = '\0';
        r->len = 0;
        return;
      }
      r->raw = more;
      cap *= 2;
    }
    ssize_t n = recv(fd, r->raw + r->len, cap - r->len, 0);
    if (n <= 0)
      break;
    r->len += (size_t)n;
    if (td_t_response_complete(r->raw, r->len))
      break;
  }
  close(fd);
  r->raw[r->len] = '\0';
  if (sscanf(r->raw, "HTTP/1.1 %d", &r->status) != 1) {
    r->closed_early = 1;
    return;
  }
  char *h = strstr(r->raw, "\r\n\r\n");
  if (!h)
    return;
  r->body = h + 4;
  r->blen = r->len - (size_t)(r->body - r->raw);
  char *te = strcasestr(r->raw, "Transfer-Encoding: chunked");
  if (te && te < h)
    td_t_dechunk(r);
}

/* The server's token (td_server_token) that td_t_http sends in
 * X-Tardis-Token; "" sends none. */
static char td_t_token[64];

/* One request with Connection: close and the token; a body (may be NULL) is
 * sent as application/json. */
static inline void td_t_http(int port, const char *method, const char *path,
                             const char *body, td_t_resp *r) {
  size_t blen = body ? strlen(body) : 0;
  size_t cap = strlen(method) + strlen(path) + blen + 320;
  char *req = malloc(cap);
  if (!req) {
    memset(r, 0, sizeof *r);
    fprintf(stderr, "  http client: out of memory\n");
    return;
  }
  char tok[96] = "";
  if (td_t_token[0])
    snprintf(tok, sizeof tok, "X-Tardis-Token: %s\r\n", td_t_token);
  int n = body ? snprintf(req, cap,
                          "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s"
                          "Connection: close\r\n"
                          "Content-Type: application/json\r\n"
                          "Content-Length: %zu\r\n\r\n%s",
                          method, path, port, tok, blen, body)
               : snprintf(req, cap,
                          "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s"
                          "Connection: close\r\n\r\n",
                          method, path, port, tok);
  td_t_http_raw(port, req, (size_t)n, r);
  free(req);
}

/* Value of a response header (copied into buf), or NULL. */
static inline const char *td_t_header(const td_t_resp *r, const char *name,
                                      char *buf, size_t len) {
  const char *end = r->body ? r->body : r->raw + r->len;
  size_t nl = strlen(name);
  for (const char *p = strstr(r->raw, "\r\n"); p && p < end;
       p = strstr(p + 2, "\r\n")) {
    const char *line = p + 2;
    if (!strncasecmp(line, name, nl) && line[nl] == ':') {
      const char *v = line + nl + 1;
      while (*v == ' ')
        v++;
      const char *e = strstr(v, "\r\n");
      size_t vl = e ? (size_t)(e - v) : strlen(v);
      if (vl >= len)
        vl = len - 1;
      memcpy(buf, v, vl);
      buf[vl] = '\0';
      return buf;
    }
  }
  return NULL;
}

/* The body as JSON, or NULL. */
static inline json_t *td_t_body_json(const td_t_resp *r) {
  return r->body ? json_loadb(r->body, r->blen, 0, NULL) : NULL;
}

/* GET path (with the token) as JSON, or NULL; *status is the status. */
static inline json_t *td_t_get_json(int port, const char *path, int *status) {
  td_t_resp r;
  td_t_http(port, "GET", path, NULL, &r);
  *status = r.status;
  json_t *j = td_t_body_json(&r);
  td_t_resp_free(&r);
  return j;
}

/* Seconds on the monotonic clock. */
static inline double td_t_now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Copies of needle in hay. */
static inline int td_t_count(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
    n++;
  return n;
}

/* Reads from fd (an event stream, say) into acc (cap bytes, *len kept,
 * NUL-terminated) until it holds `want` copies of needle: 1; or ms pass,
 * the buffer fills or the server closes: 0. */
static inline int td_t_read_until(int fd, char *acc, size_t cap, size_t *len,
                                  const char *needle, int want, int ms) {
  double deadline = td_t_now_s() + ms / 1000.0;
  for (;;) {
    acc[*len] = '\0';
    if (td_t_count(acc, needle) >= want)
      return 1;
    double left = deadline - td_t_now_s();
    if (left <= 0 || *len + 1 >= cap)
      return 0;
    struct pollfd pfd = {fd, POLLIN, 0};
    if (poll(&pfd, 1, (int)(left * 1000) + 1) <= 0)
      continue;
    ssize_t n = recv(fd, acc + *len, cap - 1 - *len, 0);
    if (n <= 0)
      return 0;
    *len += (size_t)n;
  }
}

/* A connection to GET /api/events whose response headers and first
 * comment (": connected") have arrived within 5 s, or -1. */
static inline int td_t_open_stream(int port) {
  int fd = td_t_connect(port);
  if (fd < 0)
    return -1;
  const char req[] = "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  td_t_send_all(fd, req, sizeof req - 1);
  char buf[1024];
  size_t len = 0;
  if (td_t_read_until(fd, buf, sizeof buf, &len, ": connected", 1, 5000))
    return fd;
  close(fd);
  return -1;
}

#endif
