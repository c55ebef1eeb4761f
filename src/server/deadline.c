/* Total deadlines for a request's headers and body (docs/api.md, "Slow
 * clients").
 *
 * libmicrohttpd's connection timeout counts idle time only: a client that
 * sends one byte of its headers every few seconds (slow-loris) resets it
 * with every byte and holds its connection and thread for ever. Here each
 * connection carries the time by which what it is sending now must be in:
 * its request line and headers (from the connection's start, or from the
 * end of the request before on a kept-alive one), then its body. A thread
 * of ours looks every quarter second and ends a connection past its
 * deadline with shutdown(), which wakes libmicrohttpd's thread of that
 * connection to close it. A request under way gets a 408 first, written
 * straight to the socket (libmicrohttpd is reading it, not writing, in
 * those phases); a connection with no request begun (an idle keep-alive, a
 * browser's preconnect) is closed without a word, as an idle timeout
 * would. While a response is sent there is no deadline (an event stream
 * lasts as long as its client stays).
 *
 * libmicrohttpd reports a connection closed (NOTIFY_CLOSED) before it
 * closes its socket, and the entry leaves the list under the same mutex as
 * the reaper's shutdown(), so the reaper never touches a reused fd. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "server/server_internal.h"

struct td__conn {
  int fd;
  int phase;       /* TD__PHASE_* */
  double deadline; /* CLOCK_MONOTONIC seconds; 0: none */
  struct td__conn *prev, *next;
};

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double limit_of(const td_server *s, int phase) {
  return phase == TD__PHASE_WAIT || phase == TD__PHASE_HEADERS
             ? s->headers_ms / 1000.0
         : phase == TD__PHASE_BODY ? s->body_ms / 1000.0
                                   : 0;
}

static void set_phase(td_server *s, struct td__conn *k, int phase) {
  int same_clock = k->phase == TD__PHASE_WAIT && phase == TD__PHASE_HEADERS;
  k->phase = phase;
  if (same_clock)
    return; /* the request line is in: its headers are due as before */
  double lim = limit_of(s, phase);
  k->deadline = lim > 0 ? now_s() + lim : 0;
}

void td__conn_notify_cb(void *cls, struct MHD_Connection *c,
                        void **socket_context,
                        enum MHD_ConnectionNotificationCode toe) {
  td_server *s = cls;
  struct td__conn *k = *socket_context;
  if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    k = calloc(1, sizeof *k);
    if (!k || !ci) {
      free(k); /* without an entry the connection has no deadline */
      return;
    }
    k->fd = ci->connect_fd;
    pthread_mutex_lock(&s->conn_mu);
    k->phase = TD__PHASE_ANSWER;
    set_phase(s, k, TD__PHASE_WAIT);
    k->next = s->conns;
    if (s->conns)
      s->conns->prev = k;
    s->conns = k;
    pthread_mutex_unlock(&s->conn_mu);
    *socket_context = k;
    return;
  }
  if (!k)
    return;
  pthread_mutex_lock(&s->conn_mu);
  if (k->prev)
    k->prev->next = k->next;
  else
    s->conns = k->next;
  if (k->next)
    k->next->prev = k->prev;
  pthread_mutex_unlock(&s->conn_mu);
  free(k);
  *socket_context = NULL;
}

void td__conn_phase(td_server *s, struct MHD_Connection *c, int phase) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  struct td__conn *k = ci ? ci->socket_context : NULL;
  if (!k)
    return;
  pthread_mutex_lock(&s->conn_mu);
  set_phase(s, k, phase);
  pthread_mutex_unlock(&s->conn_mu);
}

/* Ends every connection past its deadline; called under conn_mu. */
static void reap(td_server *s, double now) {
  for (struct td__conn *k = s->conns; k; k = k->next) {
    if (k->deadline <= 0 || now < k->deadline)
      continue;
    if (k->phase == TD__PHASE_WAIT) {
      shutdown(k->fd, SHUT_RDWR);
      k->deadline = 0;
      continue;
    }
    char body[128], msg[256];
    int bl = snprintf(body, sizeof body,
                      "{\"error\":\"request %s not complete within %d ms\"}",
                      k->phase == TD__PHASE_BODY ? "body" : "headers",
                      k->phase == TD__PHASE_BODY ? s->body_ms : s->headers_ms);
    int ml = snprintf(msg, sizeof msg,
                      "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
                      "Content-Type: application/json; charset=utf-8\r\n"
                      "Content-Length: %d\r\n\r\n%s",
                      bl, body);
    /* best effort: a client too slow to take 200 bytes is closed anyway */
    if (send(k->fd, msg, (size_t)ml, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
    }
    shutdown(k->fd, SHUT_RDWR);
    k->deadline = 0;
    k->phase = TD__PHASE_ANSWER;
  }
}

static void *reaper_main(void *arg) {
  td_server *s = arg;
  pthread_mutex_lock(&s->ev_mu);
  while (!s->stopping) {
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_nsec += 250000000L;
    if (dl.tv_nsec >= 1000000000L) {
      dl.tv_sec++;
      dl.tv_nsec -= 1000000000L;
    }
    int rc = 0;
    while (!s->stopping && rc != ETIMEDOUT)
      rc = pthread_cond_timedwait(&s->ev_cond, &s->ev_mu, &dl);
    if (s->stopping)
      break;
    pthread_mutex_unlock(&s->ev_mu);
    pthread_mutex_lock(&s->conn_mu);
    reap(s, now_s());
    pthread_mutex_unlock(&s->conn_mu);
    pthread_mutex_lock(&s->ev_mu);
  }
  pthread_mutex_unlock(&s->ev_mu);
  return NULL;
}

int td__reaper_start(td_server *s, td_err *err) {
  if (pthread_create(&s->reaper, NULL, reaper_main, s) != 0)
    return td_err_set(err, TD_EIO, "cannot start the request deadline thread");
  s->reaper_started = 1;
  return TD_OK;
}

void td__reaper_join(td_server *s) {
  if (s->reaper_started)
    pthread_join(s->reaper, NULL);
  s->reaper_started = 0;
}
