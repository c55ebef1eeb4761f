/* `tardis serve`: the daemon, request dispatch, the run watcher and the
 * server-sent event stream.
 *
 * libmicrohttpd runs one thread per connection, so an event stream may
 * block in its content callback (waiting on a condition variable) without
 * holding up any other request. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "server/server_internal.h"
#include "tardis/fsutil.h"
#include "tardis/vis.h"

/* The web UI's assets: installed beside the binary (`make install` puts them
 * in PREFIX/share/tardis/web next to PREFIX/bin/tardis), else the
 * repository's web/ directory. The build may define TD_WEB_DIR; without it,
 * the repository's path is derived from this file's own (absolute, under
 * CMake) path, src/server/server.c → web. */
static void default_web_dir(char *buf, size_t len) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) {
      *slash = '\0';
      if (td_pathf(buf, len, NULL, "%s/../share/tardis/web", exe) == TD_OK &&
          td_path_is_dir(buf))
        return;
    }
  }
#ifdef TD_WEB_DIR
  int rc = td_pathf(buf, len, NULL, "%s", TD_WEB_DIR);
#else
  const char *f = __FILE__, *tail = strstr(f, "src/server/server.c");
  int rc = tail ? td_pathf(buf, len, NULL, "%.*sweb", (int)(tail - f), f)
                : td_pathf(buf, len, NULL, "web");
#endif
  if (rc) {
    /* buf is "": no built-in web directory, so / serves the fallback page */
  }
}

void td_server_opts_init(td_server_opts *o) {
  memset(o, 0, sizeof *o);
  o->host = "127.0.0.1";
  o->port = 8040;
  o->method = "dvi";
  o->poll_ms = 1000;
  o->heartbeat_ms = 15000;
  o->max_connections = 512;
  o->follow_nice = 19;
  o->headers_ms = 10000;
  o->body_ms = 30000;
}

int td_server_port(const td_server *srv) { return srv->port; }

/* ---- events ------------------------------------------------------------- */

static void emit(td_server *s, const char *name, const char *data) {
  pthread_mutex_lock(&s->ev_mu);
  uint64_t id = ++s->ev_last;
  td__event *e = &s->ring[id % TD__EVENT_RING];
  e->id = id;
  /* fits: the names are "epoch", "projection", "quality" and "alert", the
   * data at most 110 bytes of JSON (emit_epoch) */
  snprintf(e->name, sizeof e->name, "%s", name);
  snprintf(e->data, sizeof e->data, "%s", data);
  pthread_cond_broadcast(&s->ev_cond);
  pthread_mutex_unlock(&s->ev_mu);
}

static void deadline_after(struct timespec *ts, int ms) {
  clock_gettime(CLOCK_REALTIME, ts);
  ts->tv_sec += ms / 1000;
  ts->tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

typedef struct sse_state {
  td_server *srv;
  uint64_t last_id;
  int fd;   /* the client's socket, watched for a hang-up */
  int drop; /* under ev_mu: pushed out by a newer stream */
  char buf[512];
  size_t len, off;
} sse_state;

/* The client hung up (or reset). A stream that waits for events never reads
 * from its socket, so without this look a closed stream would hold its
 * thread and connection until the next heartbeat failed to send. */
static int peer_gone(int fd) {
  struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
  if (fd < 0 || poll(&p, 1, 0) <= 0)
    return 0;
  if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))
    return 1;
  char b;
  return recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

/* Fills st->buf with the next thing to send, blocking until there is one.
 * Returns 1, or when the stream ends 0 (the server stops) or -1 (the client
 * left, or a newer stream took its place). */
static int sse_next(sse_state *st) {
  td_server *s = st->srv;
  struct timespec dl;
  deadline_after(&dl, s->heartbeat_ms);
  pthread_mutex_lock(&s->ev_mu);
  int timed_out = 0;
  while (!s->stopping && !st->drop && s->ev_last == st->last_id && !timed_out) {
    /* wake at least every 500 ms to see whether the client is still there */
    struct timespec slice;
    deadline_after(&slice, 500);
    int last = slice.tv_sec > dl.tv_sec ||
               (slice.tv_sec == dl.tv_sec && slice.tv_nsec >= dl.tv_nsec);
    int rc =
        pthread_cond_timedwait(&s->ev_cond, &s->ev_mu, last ? &dl : &slice);
    timed_out = rc == ETIMEDOUT && last;
    if (rc == ETIMEDOUT && peer_gone(st->fd))
      st->drop = 1;
  }
  if (s->stopping || st->drop) {
    int rc = s->stopping ? 0 : -1;
    pthread_mutex_unlock(&s->ev_mu);
    return rc;
  }
  int n;
  if (s->ev_last != st->last_id) {
    /* A client that fell more than a ring behind skips what was lost. */
    uint64_t id = st->last_id + 1;
    if (s->ev_last - st->last_id > TD__EVENT_RING)
      id = s->ev_last - TD__EVENT_RING + 1;
    const td__event *e = &s->ring[id % TD__EVENT_RING];
    /* fits: a 20-digit id, e->name[16] and e->data[128] in buf[512] */
    n = snprintf(st->buf, sizeof st->buf, "id: %llu\nevent: %s\ndata: %s\n\n",
                 (unsigned long long)e->id, e->name, e->data);
    st->last_id = id;
  } else {
    n = snprintf(st->buf, sizeof st->buf, ": heartbeat\n\n");
  }
  pthread_mutex_unlock(&s->ev_mu);
  st->len = (size_t)n;
  st->off = 0;
  return 1;
}

static ssize_t sse_read_cb(void *cls, uint64_t pos, char *buf, size_t max) {
  (void)pos;
  sse_state *st = cls;
  int next = st->off < st->len ? 1 : sse_next(st);
  if (next <= 0)
    /* with an error, the connection closes: the client left or was pushed
     * out */
    return next == 0 ? MHD_CONTENT_READER_END_OF_STREAM
                     : MHD_CONTENT_READER_END_WITH_ERROR;
  size_t n = st->len - st->off;
  if (n > max)
    n = max;
  memcpy(buf, st->buf + st->off, n);
  st->off += n;
  return (ssize_t)n;
}

static void sse_free_cb(void *cls) {
  sse_state *st = cls;
  td_server *s = st->srv;
  pthread_mutex_lock(&s->ev_mu);
  for (int i = 0; i < s->n_streams; i++)
    if (s->streams[i] == st) {
      memmove(s->streams + i, s->streams + i + 1,
              (size_t)(s->n_streams - i - 1) * sizeof *s->streams);
      s->n_streams--;
      break;
    }
  pthread_mutex_unlock(&s->ev_mu);
  free(st);
}

/* Registers a new stream; at the cap the oldest one is told to end, so that
 * streams left open by forgotten tabs cannot use up the connections. */
static void stream_add(td_server *s, sse_state *st) {
  if (s->n_streams == TD__STREAMS_MAX) {
    s->streams[0]->drop = 1;
    memmove(s->streams, s->streams + 1,
            (size_t)(TD__STREAMS_MAX - 1) * sizeof *s->streams);
    s->n_streams--;
    pthread_cond_broadcast(&s->ev_cond);
  }
  s->streams[s->n_streams++] = st;
}

enum MHD_Result td__events_reply(td_server *s, struct MHD_Connection *c) {
  sse_state *st = calloc(1, sizeof *st);
  if (!st)
    return td__reply_error(c, 500, "out of memory");
  st->srv = s;
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
  st->fd = ci ? ci->connect_fd : -1;
  st->len =
      (size_t)snprintf(st->buf, sizeof st->buf, "retry: 2000\n: connected\n\n");
  struct MHD_Response *r = MHD_create_response_from_callback(
      MHD_SIZE_UNKNOWN, sizeof st->buf, sse_read_cb, st, sse_free_cb);
  if (!r) {
    free(st);
    return MHD_NO;
  }
  pthread_mutex_lock(&s->ev_mu);
  st->last_id = s->ev_last;
  const char *lei =
      MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Last-Event-ID");
  int64_t v;
  if (lei && td__parse_i64(lei, &v) == 0 && v >= 0 && (uint64_t)v <= s->ev_last)
    st->last_id = (uint64_t)v;
  stream_add(s, st);
  pthread_mutex_unlock(&s->ev_mu);
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                          "text/event-stream; charset=utf-8");
  MHD_add_response_header(r, "X-Accel-Buffering", "no");
  td__common_headers(r, "no-cache");
  enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_OK, r);
  MHD_destroy_response(r);
  return rc;
}

/* ---- the run watcher ---------------------------------------------------- */

struct td__watch {
  int *epochs;      /* known epochs, ascending */
  uint64_t *stamps; /* their projection's directory (inode, mtime); 0: none */
  int n;
  int64_t metrics_mtime;
  int64_t alerts_stamp; /* RUN/alerts.jsonl (api_alerts.c) */
};
typedef struct td__watch watch_state;

/* Identifies the projection of an epoch on disk, so that one replaced (a
 * live draft drawn again) counts as new; 0 when there is none. */
static uint64_t projection_stamp(const td_server *s, int epoch) {
  char p[TD_PATH_MAX];
  struct stat st;
  if (!td_vis_epoch_has(s->run_dir, s->method, epoch, "train_embedding.npy") ||
      td_vis_epoch_dir(s->run_dir, s->method, epoch, p, sizeof p) ||
      stat(p, &st) != 0)
    return 0;
  return ((uint64_t)st.st_ino * 1000003u) ^ (uint64_t)st.st_mtim.tv_nsec ^
         ((uint64_t)st.st_mtim.tv_sec << 20) ^ 1u;
}

static int64_t metrics_mtime(const td_server *s) {
  char p[TD_PATH_MAX];
  struct stat st;
  if (td_vis_method_path(s->run_dir, s->method, "metrics.json", p, sizeof p,
                         NULL) ||
      stat(p, &st) != 0)
    return 0;
  return (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
}

/* "epoch" when an epoch is recorded, "projection" when it is drawn (or
 * drawn again); both carry the counts the status bar shows, and whether
 * the epoch's projection is a live draft (include/tardis/live.h). */
static void emit_epoch(td_server *s, const char *name, int epoch, int projected,
                       int recorded, int drawn, int projecting) {
  char data[160], busy[16] = "null";
  if (projecting >= 0)
    snprintf(busy, sizeof busy, "%d", projecting);
  int draft = projected && td_vis_epoch_is_draft(s->run_dir, s->method, epoch);
  snprintf(data, sizeof data,
           "{\"epoch\":%d,\"projected\":%s,\"draft\":%s,\"recorded\":%d,"
           "\"drawn\":%d,\"projecting\":%s}",
           epoch, projected ? "true" : "false", draft ? "true" : "false",
           recorded, drawn, busy);
  emit(s, name, data);
}

/* Takes a new snapshot; emits events for what differs from the last one
 * when send. */
static void watch_scan(td_server *s, watch_state *ws, int send) {
  if (!td__follow_run_ready(s))
    return; /* serve --follow before the run has started */
  pthread_rwlock_wrlock(&s->run_lock);
  if (td_run_refresh(s->run, NULL)) {
    /* the old list stays; the next scan tries again */
  }
  int n = td_run_n_epochs(s->run);
  int *ep = malloc(sizeof *ep * (size_t)(n ? n : 1));
  uint64_t *stamp = calloc((size_t)(n ? n : 1), sizeof *stamp);
  if (!ep || !stamp) {
    pthread_rwlock_unlock(&s->run_lock);
    free(ep);
    free(stamp);
    return;
  }
  for (int i = 0; i < n; i++)
    ep[i] = td_run_epoch_number(s->run, i);
  pthread_rwlock_unlock(&s->run_lock);

  int drawn = 0, projecting = td__follow_projecting(s);
  for (int i = 0; i < n; i++)
    drawn += (stamp[i] = projection_stamp(s, ep[i])) != 0;
  int j = 0;
  for (int i = 0; i < n && send; i++) {
    while (j < ws->n && ws->epochs[j] < ep[i])
      j++;
    int known = j < ws->n && ws->epochs[j] == ep[i];
    if (!known)
      emit_epoch(s, "epoch", ep[i], stamp[i] != 0, n, drawn, projecting);
    if (stamp[i] && (!known || stamp[i] != ws->stamps[j]))
      emit_epoch(s, "projection", ep[i], 1, n, drawn, projecting);
  }
  int64_t mt = metrics_mtime(s);
  if (send && mt != ws->metrics_mtime)
    emit(s, "quality", "{}");
  int64_t as = td__alerts_stamp(s->run_dir);
  if (send && as != ws->alerts_stamp)
    emit(s, "alert", "{}");
  ws->alerts_stamp = as;
  free(ws->epochs);
  free(ws->stamps);
  ws->epochs = ep;
  ws->stamps = stamp;
  ws->n = n;
  ws->metrics_mtime = mt;
}

void td__watch_poke(td_server *s) {
  pthread_mutex_lock(&s->ev_mu);
  s->scan_now = 1;
  pthread_cond_broadcast(&s->ev_cond);
  pthread_mutex_unlock(&s->ev_mu);
}

static void *watcher_main(void *arg) {
  td_server *s = arg;
  pthread_mutex_lock(&s->ev_mu);
  while (!s->stopping) {
    struct timespec dl;
    deadline_after(&dl, s->poll_ms);
    while (!s->stopping && !s->scan_now &&
           pthread_cond_timedwait(&s->ev_cond, &s->ev_mu, &dl) != ETIMEDOUT)
      ;
    if (s->stopping)
      break;
    s->scan_now = 0;
    pthread_mutex_unlock(&s->ev_mu);
    watch_scan(s, s->watch, 1);
    pthread_mutex_lock(&s->ev_mu);
  }
  pthread_mutex_unlock(&s->ev_mu);
  return NULL;
}

/* ---- request dispatch --------------------------------------------------- */

typedef struct req_state {
  int started;    /* on_request has seen the headers */
  size_t raw_len; /* of the request target as sent */
  int raw_nul;    /* the target holds %00 */
  size_t body_len;
  char *body; /* POST /api/suspects/...: the body so far */
  size_t body_cap;
} req_state;

/* POST is accepted only where the API takes a body (feedback sessions). */
static int post_allowed(const char *method, const char *url) {
  return !strcmp(method, "POST") &&
         (!strcmp(url, "/api/suspects") || !strncmp(url, "/api/suspects/", 14));
}

/* Called with the request target before MHD decodes it (which would cut a
 * path at %00 without a word); what it returns is the request's state. */
static void *uri_log_cb(void *cls, const char *uri, struct MHD_Connection *c) {
  td__conn_phase(cls, c, TD__PHASE_HEADERS);
  req_state *st = calloc(1, sizeof *st);
  if (st && uri) {
    st->raw_len = strlen(uri);
    for (const char *p = uri; (p = strchr(p, '%')); p++)
      if (p[1] == '0' && p[2] == '0')
        st->raw_nul = 1;
  }
  return st;
}

static void request_done_cb(void *cls, struct MHD_Connection *c, void **con_cls,
                            enum MHD_RequestTerminationCode toe) {
  (void)toe;
  td__conn_phase(cls, c, TD__PHASE_WAIT); /* for a next request */
  req_state *st = *con_cls;
  if (st)
    free(st->body);
  free(st);
  *con_cls = NULL;
}

typedef struct cl_scan {
  int n, differ, chunked;
  char first[32];
} cl_scan;

static enum MHD_Result cl_header_cb(void *cls, enum MHD_ValueKind kind,
                                    const char *key, const char *value) {
  (void)kind;
  cl_scan *sc = cls;
  if (!strcasecmp(key, "Transfer-Encoding"))
    sc->chunked = 1;
  if (strcasecmp(key, "Content-Length"))
    return MHD_YES;
  if (sc->n++ == 0)
    snprintf(sc->first, sizeof sc->first, "%s", value ? value : "");
  else if (strcmp(sc->first, value ? value : ""))
    sc->differ = 1;
  return MHD_YES;
}

/* Refuses a request before its body is read: bad framing (two
 * Content-Lengths that differ, Content-Length beside chunked), an oversized
 * or unexpected body, a %00 or an overlong target, a refused Host, Origin or
 * token. 0: go on; else the refusal is queued in *res. */
static int check_request(td_server *s, struct MHD_Connection *c,
                         const req_state *st, const char *url,
                         const char *method, const char *version, int is_get,
                         int is_post, enum MHD_Result *res) {
  if (st->raw_len > TD__TARGET_MAX) {
    *res = td__reply_error(c, 414, "request target longer than %d bytes",
                           TD__TARGET_MAX);
    return -1;
  }
  if (st->raw_nul) {
    *res = td__reply_error(c, 400, "%%00 in the request target");
    return -1;
  }
  cl_scan sc = {0};
  MHD_get_connection_values(c, MHD_HEADER_KIND, cl_header_cb, &sc);
  if (sc.differ || (sc.n && sc.chunked)) {
    *res = td__reply_error(c, 400, "conflicting Content-Length");
    return -1;
  }
  if (td__guard_check(s, c, url, method, version, is_post, res))
    return -1;
  int64_t len = 0;
  if (sc.n && (td__parse_i64(sc.first, &len) || len < 0)) {
    *res = td__reply_error(c, 400, "bad Content-Length");
    return -1;
  }
  if (len > (int64_t)TD__BODY_MAX) {
    *res = td__reply_error(c, 413, "request body over %u bytes", TD__BODY_MAX);
    return -1;
  }
  if (is_get && len > 0) {
    *res = td__reply_error(c, 400, "%s requests take no body", method);
    return -1;
  }
  const char *ct =
      MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
  if (is_post && ct && strncasecmp(ct, "application/json", 16)) {
    *res = td__reply_error(c, 415, "the body must be application/json");
    return -1;
  }
  return 0;
}

static enum MHD_Result reply_405(struct MHD_Connection *c) {
  const td__problem p = {.header = MHD_HTTP_HEADER_ALLOW, .value = "GET, HEAD"};
  return td__reply_problem(c, 405, &p, "method not allowed (GET, HEAD)");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
  td_server *s = cls;
  int is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
  int is_post = post_allowed(method, url);
  req_state *st = *con_cls;
  if (!st)
    return MHD_NO;
  if (!st->started) {
    st->started = 1;
    td__conn_phase(s, c, TD__PHASE_BODY);
    enum MHD_Result res;
    if (check_request(s, c, st, url, method, version, is_get, is_post, &res))
      return res;
    return MHD_YES;
  }
  if (*upload_size) {
    /* A chunked body has no Content-Length: count it and drop the
     * connection once it is too big. */
    size_t add = *upload_size;
    st->body_len += add;
    *upload_size = 0;
    if (st->body_len > TD__BODY_MAX || is_get)
      return MHD_NO;
    if (is_post) {
      if (st->body_len > st->body_cap) {
        size_t cap = st->body_cap ? st->body_cap : 4096;
        while (cap < st->body_len)
          cap *= 2;
        char *nb = realloc(st->body, cap);
        if (!nb)
          return MHD_NO;
        st->body = nb;
        st->body_cap = cap;
      }
      memcpy(st->body + st->body_len - add, upload, add);
    }
    return MHD_YES;
  }
  td__conn_phase(s, c, TD__PHASE_ANSWER);
  if (strlen(url) > TD__URL_MAX)
    return td__reply_error(c, 414, "URL longer than %d bytes", TD__URL_MAX);
  if (is_post && !td__follow_run_ready(s))
    return td__reply_waiting(s, c);
  if (is_post)
    return td__api_post(s, c, url, st->body, st->body ? st->body_len : 0);
  if (!is_get)
    return reply_405(c);
  if (!strcmp(url, "/api") || !strncmp(url, "/api/", 5)) {
    if (!strcmp(url, "/api/events"))
      return td__events_reply(s, c);
    return td__api_route(s, c, url);
  }
  return td__static_reply(s, c, url);
}

/* ---- start / stop ------------------------------------------------------- */

/* Binds and listens ourselves so that "port in use" is a clear error and
 * port 0 can be read back. */
static int open_listener(const char *host, int port, int *fd_out, int *v6,
                         td_err *err) {
  struct addrinfo hints = {0}, *res = NULL;
  char ps[16];
  snprintf(ps, sizeof ps, "%d", port);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  int gai = getaddrinfo(host, ps, &hints, &res);
  if (gai)
    return td_err_set(err, TD_EARG, "%s: %s", host, gai_strerror(gai));
  int fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    freeaddrinfo(res);
    return td_err_set(err, TD_EIO, "socket: %s", strerror(errno));
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  *v6 = res->ai_family == AF_INET6;
  int rc = bind(fd, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  if (rc != 0 || listen(fd, 64) != 0) {
    int e = errno;
    close(fd);
    return td_err_set(err, e == EADDRINUSE ? TD_EEXIST : TD_EIO,
                      "cannot listen on %s:%d: %s%s", host, port, strerror(e),
                      e == EADDRINUSE ? " (pick another with --port)" : "");
  }
  *fd_out = fd;
  return TD_OK;
}

static int bound_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
    return -1;
  if (ss.ss_family == AF_INET6)
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static int valid_method(const char *m) {
  size_t n = strlen(m);
  if (n == 0 || n > 32)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!(m[i] == '-' || m[i] == '_' || (m[i] >= '0' && m[i] <= '9') ||
          (m[i] >= 'a' && m[i] <= 'z') || (m[i] >= 'A' && m[i] <= 'Z')))
      return 0;
  return 1;
}

static void server_free(td_server *s) {
  td__sus_cache_free(s->sus);
  if (s->run)
    td_run_close(s->run);
  if (s->cache)
    td__cache_clear(s);
  free(s->cache);
  free(s->run_dir);
  free(s->method);
  free(s->web_dir);
  if (s->watch) {
    free(s->watch->epochs);
    free(s->watch->stamps);
    free(s->watch);
  }
  pthread_rwlock_destroy(&s->run_lock);
  pthread_mutex_destroy(&s->cache_mu);
  td__png_cache_clear(s);
  pthread_mutex_destroy(&s->png_mu);
  pthread_mutex_destroy(&s->conn_mu);
  pthread_mutex_destroy(&s->ev_mu);
  pthread_cond_destroy(&s->ev_cond);
  free(s);
}

int td_server_start(const td_server_opts *opts, td_server **out, td_err *err) {
  *out = NULL;
  if (!opts->run_dir)
    return td_err_set(err, TD_EARG, "no run directory given");
  const char *method = opts->method ? opts->method : "dvi";
  if (!valid_method(method))
    return td_err_set(err, TD_EARG,
                      "bad method '%s' (letters, digits, '-', '_')", method);
  if (opts->port < 0 || opts->port > 65535)
    return td_err_set(err, TD_EARG, "bad port %d", opts->port);

  td_server *s = calloc(1, sizeof *s);
  if (!s)
    return td_err_set(err, TD_ENOMEM, "out of memory");
  pthread_rwlock_init(&s->run_lock, NULL);
  pthread_mutex_init(&s->cache_mu, NULL);
  pthread_mutex_init(&s->png_mu, NULL);
  pthread_mutex_init(&s->conn_mu, NULL);
  pthread_mutex_init(&s->ev_mu, NULL);
  pthread_cond_init(&s->ev_cond, NULL);
  s->poll_ms = opts->poll_ms > 0 ? opts->poll_ms : 1000;
  s->follow_nice = opts->follow_nice;
  s->heartbeat_ms = opts->heartbeat_ms > 0 ? opts->heartbeat_ms : 15000;
  s->headers_ms = opts->headers_ms > 0 ? opts->headers_ms : 10000;
  s->body_ms = opts->body_ms > 0 ? opts->body_ms : 30000;
  s->run_dir = strdup(opts->run_dir);
  s->method = strdup(method);
  s->cache = calloc(TD__CACHE_CAP, sizeof *s->cache);
  if (!s->run_dir || !s->method || !s->cache) {
    server_free(s);
    return td_err_set(err, TD_ENOMEM, "out of memory");
  }
  int rc = td__follow_open_run(opts, &s->run, err);
  if (!rc)
    rc = td__sus_cache_new(opts->run_dir, &s->sus, err);
  if (rc) {
    server_free(s);
    return rc;
  }
  /* An explicit --web must exist; the built-in default may be missing (the
   * server then answers / with a page pointing at the API). */
  char real[PATH_MAX], builtin[PATH_MAX];
  default_web_dir(builtin, sizeof builtin);
  const char *web = opts->web_dir ? opts->web_dir : builtin;
  if (realpath(web, real) && td_path_is_dir(real)) {
    s->web_dir = strdup(real);
  } else if (opts->web_dir) {
    server_free(s);
    return td_err_set(err, TD_ENOENT, "%s: no such web directory", web);
  }

  int fd = -1, v6 = 0;
  const char *host = opts->host ? opts->host : "127.0.0.1";
  rc = open_listener(host, opts->port, &fd, &v6, err);
  if (rc) {
    server_free(s);
    return rc;
  }
  s->port = bound_port(fd);
  if ((rc = td__guard_init(s, fd, host, opts->token, err))) {
    close(fd);
    server_free(s);
    return rc;
  }

  /* The watcher's first snapshot is taken before serving, so events only
   * report what changed after the server started. */
  s->watch = calloc(1, sizeof *s->watch);
  if (!s->watch) {
    close(fd);
    server_free(s);
    return td_err_set(err, TD_ENOMEM, "out of memory");
  }
  watch_scan(s, s->watch, 0);
  if (pthread_create(&s->watcher, NULL, watcher_main, s) != 0) {
    close(fd);
    server_free(s);
    return td_err_set(err, TD_EIO, "cannot start the watcher thread");
  }
  s->watcher_started = 1;
  if (opts->follow && (rc = td__follow_start(s, err))) {
    close(fd);
    td_server_stop(s);
    return rc;
  }

  if ((rc = td__reaper_start(s, err))) {
    close(fd);
    td_server_stop(s);
    return rc;
  }

  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD |
                   MHD_USE_THREAD_PER_CONNECTION | (v6 ? MHD_USE_IPv6 : 0);
  s->mhd = MHD_start_daemon(
      flags, 0, NULL, NULL, on_request, s, MHD_OPTION_LISTEN_SOCKET, fd,
      MHD_OPTION_CONNECTION_LIMIT,
      (unsigned)(opts->max_connections > 0 ? opts->max_connections : 512),
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)TD__IDLE_TIMEOUT_S,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32768,
      MHD_OPTION_URI_LOG_CALLBACK, uri_log_cb, s, MHD_OPTION_NOTIFY_COMPLETED,
      request_done_cb, s, MHD_OPTION_NOTIFY_CONNECTION, td__conn_notify_cb, s,
      MHD_OPTION_END);
  if (!s->mhd) {
    close(fd);
    td_server_stop(s);
    return td_err_set(err, TD_EIO, "cannot start the HTTP server on %s:%d",
                      host, opts->port);
  }
  *out = s;
  return TD_OK;
}

void td_server_stop(td_server *s) {
  if (!s)
    return;
  /* Wake event streams and the watcher first: MHD joins connection
   * threads, which must not sit in a wait. */
  pthread_mutex_lock(&s->ev_mu);
  s->stopping = 1;
  pthread_cond_broadcast(&s->ev_cond);
  pthread_mutex_unlock(&s->ev_mu);
  if (s->mhd)
    MHD_stop_daemon(s->mhd);
  if (s->watcher_started)
    pthread_join(s->watcher, NULL);
  td__reaper_join(s);
  td__follow_stop(s); /* after the watcher, which reads its status */
  server_free(s);
}
