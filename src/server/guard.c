/* Who may talk to `tardis serve` (docs/api.md, "Security").
 *
 * Three defences, checked before a request reaches any handler:
 *  - Host: a browser tricked by DNS rebinding sends the attacker's name
 *    (Host: attacker.example:8040), so only loopback names, the address the
 *    server is bound to and the --host name are accepted;
 *  - Origin: a page of another site that sends a request carries its own
 *    origin, refused whenever the header is present and not ours;
 *  - a random token made at start: every state-changing request must carry
 *    it in X-Tardis-Token (a cross-site form or text/plain post cannot set a
 *    header), and beyond loopback every request must carry it (header,
 *    ?token= or the cookie set when the printed URL is opened). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/server_internal.h"

#define TOKEN_HEADER "X-Tardis-Token"
#define TOKEN_COOKIE "tardis_token"

/* A given token: exactly TD__TOKEN_LEN hex digits. */
static int token_ok(const char *t) {
  if (strlen(t) != TD__TOKEN_LEN)
    return 0;
  for (const char *p = t; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
      return 0;
  return 1;
}

int td__guard_init(td_server *s, int fd, const char *host, const char *token,
                   td_err *err) {
  unsigned char raw[TD__TOKEN_LEN / 2];
  size_t got = token ? sizeof raw : 0;
  if (token && !token_ok(token))
    return td_err_set(err, TD_EARG, "bad token (%d hex digits)", TD__TOKEN_LEN);
  if (token)
    memcpy(s->token, token, TD__TOKEN_LEN + 1);
  while (got < sizeof raw) {
    ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
    if (n < 0 && errno != EINTR)
      return td_err_set(err, TD_EIO, "getrandom: %s", strerror(errno));
    if (n > 0)
      got += (size_t)n;
  }
  for (size_t i = 0; !token && i < sizeof raw; i++)
    snprintf(s->token + 2 * i, 3, "%02x", raw[i]);

  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
    return td_err_set(err, TD_EIO, "getsockname: %s", strerror(errno));
  char num[INET6_ADDRSTRLEN] = "";
  if (ss.ss_family == AF_INET6) {
    const struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
    inet_ntop(AF_INET6, a, num, sizeof num);
    s->loopback = IN6_IS_ADDR_LOOPBACK(a);
    s->wildcard = IN6_IS_ADDR_UNSPECIFIED(a);
    snprintf(s->bound_addr, sizeof s->bound_addr, "[%s]", num);
  } else {
    const struct in_addr *a = &((struct sockaddr_in *)&ss)->sin_addr;
    inet_ntop(AF_INET, a, num, sizeof num);
    s->loopback = (ntohl(a->s_addr) >> 24) == 127;
    s->wildcard = a->s_addr == htonl(INADDR_ANY);
    snprintf(s->bound_addr, sizeof s->bound_addr, "%s", num);
  }
  snprintf(s->host_name, sizeof s->host_name, "%s%s%s",
           strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "");
  if (s->wildcard && gethostname(s->machine, sizeof s->machine) != 0)
    s->machine[0] = '\0';
  s->machine[sizeof s->machine - 1] = '\0';
  return TD_OK;
}

const char *td_server_token(const td_server *s) { return s->token; }

int td_server_is_loopback(const td_server *s) { return s->loopback; }

/* An IP literal: a.b.c.d, or [v6]. DNS rebinding needs a name, so behind a
 * wildcard bind any literal is one of this machine's addresses or a
 * mistake, never an attacker's. */
static int is_ip_literal(const char *name, size_t n) {
  char buf[64];
  unsigned char bin[16];
  if (n < 2 || n >= sizeof buf)
    return 0;
  if (name[0] == '[' && name[n - 1] == ']') {
    memcpy(buf, name + 1, n - 2);
    buf[n - 2] = '\0';
    return inet_pton(AF_INET6, buf, bin) == 1;
  }
  memcpy(buf, name, n);
  buf[n] = '\0';
  return inet_pton(AF_INET, buf, bin) == 1;
}

static int name_is(const char *name, size_t n, const char *want) {
  return *want && strlen(want) == n && !strncasecmp(name, want, n);
}

/* "name[:port]" or "[v6][:port]": one of our names and our port. A Host
 * may leave the port out (the name is what DNS rebinding changes); an
 * Origin names it unless it is 80 (another port is another site). */
static int authority_ok(const td_server *s, const char *v, int need_port) {
  size_t n;
  if (v[0] == '[') {
    const char *e = strchr(v, ']');
    if (!e)
      return 0;
    n = (size_t)(e - v) + 1;
  } else {
    n = strcspn(v, ":");
  }
  const char *port = v + n;
  if (*port) {
    char want[16];
    snprintf(want, sizeof want, ":%d", s->port);
    if (strcmp(port, want))
      return 0;
  } else if (need_port && s->port != 80) {
    return 0;
  }
  if (name_is(v, n, "localhost") || name_is(v, n, "127.0.0.1") ||
      name_is(v, n, "[::1]") || name_is(v, n, s->bound_addr) ||
      name_is(v, n, s->host_name))
    return 1;
  return s->wildcard && (is_ip_literal(v, n) || name_is(v, n, s->machine));
}

static int token_eq(const td_server *s, const char *t) {
  if (!t || strlen(t) != TD__TOKEN_LEN)
    return 0;
  unsigned char diff = 0;
  for (int i = 0; i < TD__TOKEN_LEN; i++)
    diff |= (unsigned char)(t[i] ^ s->token[i]);
  return diff == 0;
}

/* Refusals close the connection: whoever sent one request from the wrong
 * site would send the next one the same way. */
static enum MHD_Result refuse(struct MHD_Connection *c, unsigned status,
                              const char *msg) {
  const td__problem p = {.close = 1};
  return td__reply_problem(c, status, &p, msg);
}

/* Beyond loopback, opening the printed URL (?token=) sets the cookie and
 * sends the browser on without the token in its address bar, so that the
 * page's scripts, images and event stream carry it. */
static enum MHD_Result
redirect_with_cookie(td_server *s, struct MHD_Connection *c, const char *url) {
  struct MHD_Response *r =
      MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
  if (!r)
    return MHD_NO;
  char cookie[128];
  snprintf(cookie, sizeof cookie,
           TOKEN_COOKIE "=%s; Path=/; HttpOnly; SameSite=Strict", s->token);
  MHD_add_response_header(r, MHD_HTTP_HEADER_SET_COOKIE, cookie);
  MHD_add_response_header(r, MHD_HTTP_HEADER_LOCATION, url);
  td__common_headers(r, "no-store");
  enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_SEE_OTHER, r);
  MHD_destroy_response(r);
  return rc;
}

int td__guard_check(td_server *s, struct MHD_Connection *c, const char *url,
                    const char *method, const char *version, int changes,
                    enum MHD_Result *res) {
  const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
  if (!host && !strcmp(version, MHD_HTTP_VERSION_1_1)) {
    *res = refuse(c, 400, "HTTP/1.1 request without Host");
    return -1;
  }
  if (host && !authority_ok(s, host, 0)) {
    *res = refuse(c, 403,
                  "Host not allowed (open the address the server printed)");
    return -1;
  }
  const char *origin =
      MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
  if (origin &&
      (strncasecmp(origin, "http://", 7) || !authority_ok(s, origin + 7, 1))) {
    *res = refuse(c, 403, "cross-origin request refused");
    return -1;
  }
  const char *hdr =
      MHD_lookup_connection_value(c, MHD_HEADER_KIND, TOKEN_HEADER);
  if (changes) {
    if (!token_eq(s, hdr)) {
      *res = refuse(c, 403,
                    "missing or wrong " TOKEN_HEADER
                    " (the page the server serves sends it)");
      return -1;
    }
    return 0;
  }
  if (s->loopback || token_eq(s, hdr) ||
      token_eq(s,
               MHD_lookup_connection_value(c, MHD_COOKIE_KIND, TOKEN_COOKIE)))
    return 0;
  if (token_eq(
          s, MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "token"))) {
    if (strcmp(url, "/api") && strncmp(url, "/api/", 5) &&
        !strcmp(method, "GET")) {
      int plain = 1;
      for (const char *q = url; *q; q++)
        plain &= (unsigned char)*q >= 0x20;
      *res = redirect_with_cookie(s, c, plain ? url : "/");
      return -1;
    }
    return 0;
  }
  *res = refuse(c, 403,
                "this server is bound beyond loopback: open the URL it "
                "printed (with ?token=)");
  return -1;
}
