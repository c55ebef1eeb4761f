/* Response helpers and the static files of the web UI. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/server_internal.h"
#include "tardis/fsutil.h"

void td__common_headers(struct MHD_Response *r, const char *cache_control) {
  MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  MHD_add_response_header(r, "Cache-Control", cache_control);
}

enum MHD_Result td__reply_bytes(struct MHD_Connection *c, unsigned status,
                                const void *data, size_t len,
                                const char *content_type) {
  struct MHD_Response *r = MHD_create_response_from_buffer(
      len, (void *)(uintptr_t)data, MHD_RESPMEM_MUST_COPY);
  if (!r)
    return MHD_NO;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
  td__common_headers(r, "no-cache");
  enum MHD_Result rc = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return rc;
}

/* The answer when not even the JSON of an answer could be made. */
static enum MHD_Result reply_oom(struct MHD_Connection *c) {
  static const char oom[] = "{\"error\":\"out of memory\"}";
  return td__reply_bytes(c, 500, oom, sizeof oom - 1,
                         "application/json; charset=utf-8");
}

enum MHD_Result td__reply_json(struct MHD_Connection *c, unsigned status,
                               json_t *v) {
  char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;
  json_decref(v);
  if (!s)
    return reply_oom(c);
  enum MHD_Result rc = td__reply_bytes(c, status, s, strlen(s),
                                       "application/json; charset=utf-8");
  free(s);
  return rc;
}

enum MHD_Result td__reply_problem(struct MHD_Connection *c, unsigned status,
                                  const td__problem *p, const char *msg) {
  static const td__problem plain = {0};
  if (!p)
    p = &plain;
  json_t *j = json_pack("{s:s}", "error", msg);
  if (j && p->flag)
    json_object_set_new(j, p->flag, json_true());
  char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  if (!txt)
    return reply_oom(c);
  struct MHD_Response *r =
      MHD_create_response_from_buffer(strlen(txt), txt, MHD_RESPMEM_MUST_FREE);
  if (!r) {
    free(txt);
    return MHD_NO;
  }
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                          "application/json; charset=utf-8");
  if (p->header)
    MHD_add_response_header(r, p->header, p->value);
  if (p->close)
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
  td__common_headers(r, p->cache ? p->cache : "no-cache");
  enum MHD_Result rc = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return rc;
}

enum MHD_Result td__reply_error(struct MHD_Connection *c, unsigned status,
                                const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return td__reply_problem(c, status, NULL, msg);
}

enum MHD_Result td__reply_bin(struct MHD_Connection *c, const void *data,
                              size_t len, const char *shape,
                              const char *dtype) {
  struct MHD_Response *r = MHD_create_response_from_buffer(
      len, (void *)(uintptr_t)data, MHD_RESPMEM_MUST_COPY);
  if (!r)
    return MHD_NO;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                          "application/octet-stream");
  MHD_add_response_header(r, "X-Tardis-Shape", shape);
  MHD_add_response_header(r, "X-Tardis-Dtype", dtype);
  MHD_add_response_header(r, "Access-Control-Expose-Headers",
                          "X-Tardis-Shape, X-Tardis-Dtype");
  td__common_headers(r, "no-cache");
  enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_OK, r);
  MHD_destroy_response(r);
  return rc;
}

int td__parse_i64(const char *s, int64_t *out) {
  if (!s || !*s || strlen(s) > 19)
    return -1;
  const char *p = s;
  if (*p == '-')
    p++;
  if (!*p)
    return -1;
  for (const char *q = p; *q; q++)
    if (*q < '0' || *q > '9')
      return -1;
  errno = 0;
  char *end;
  long long v = strtoll(s, &end, 10);
  if (errno || *end)
    return -1;
  *out = v;
  return 0;
}

/* ---- static files ------------------------------------------------------- */

static const struct {
  const char *ext, *type;
} mime_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".json", "application/json; charset=utf-8"},
    {".map", "application/json; charset=utf-8"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".gif", "image/gif"},
    {".jpg", "image/jpeg"},
    {".jpeg", "image/jpeg"},
    {".ico", "image/x-icon"},
    {".woff2", "font/woff2"},
    {".wasm", "application/wasm"},
    {".txt", "text/plain; charset=utf-8"},
};

static const char *mime_of(const char *path) {
  const char *slash = strrchr(path, '/');
  const char *dot = strrchr(slash ? slash : path, '.');
  if (dot)
    for (size_t i = 0; i < sizeof mime_types / sizeof mime_types[0]; i++)
      if (!strcasecmp(dot, mime_types[i].ext))
        return mime_types[i].type;
  return "application/octet-stream";
}

static const char fallback_page[] =
    "<!doctype html><meta charset=utf-8><title>tardis</title>"
    "<p>The tardis web UI is not installed (no web directory). "
    "The API is at <a href=\"/api/run\">/api/run</a>.</p>\n";

/* MHD has already percent-decoded the URL, so "%2e%2e" arrives as "..":
 * checking components here covers both spellings. Hidden components are
 * refused too, which keeps .git and editor files private. */
static int url_is_safe(const char *url) {
  if (url[0] != '/')
    return 0;
  for (const char *p = url; *p; p++) {
    if (*p == '\\' || (unsigned char)*p < 0x20)
      return 0;
    if (*p == '/' && p[1] == '.')
      return 0;
  }
  return 1;
}

/* The page with the token filled into its
 * <meta name="tardis-token" content="">, which the UI's scripts send back
 * (web/js/api.js). */
static struct MHD_Response *page_with_token(const td_server *s, int fd,
                                            off_t size) {
  static const char mark[] = "name=\"tardis-token\" content=\"";
  if (size < 0 || size > (off_t)(8u << 20))
    return NULL;
  size_t n = (size_t)size, tl = strlen(s->token);
  char *buf = malloc(n + tl + 1);
  if (!buf)
    return NULL;
  size_t got = 0;
  while (got < n) {
    ssize_t k = read(fd, buf + got, n - got);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      break;
    got += (size_t)k;
  }
  buf[got] = '\0';
  char *m = strstr(buf, mark);
  if (m) {
    char *at = m + sizeof mark - 1;
    memmove(at + tl, at, got + 1 - (size_t)(at - buf));
    memcpy(at, s->token, tl);
    got += tl;
  }
  struct MHD_Response *r =
      MHD_create_response_from_buffer(got, buf, MHD_RESPMEM_MUST_FREE);
  if (!r)
    free(buf);
  return r;
}

enum MHD_Result td__static_reply(td_server *s, struct MHD_Connection *c,
                                 const char *url) {
  if (!url_is_safe(url) || strstr(url, "//"))
    return td__reply_error(c, 404, "not found");
  if (!s->web_dir) {
    if (!strcmp(url, "/") || !strcmp(url, "/index.html"))
      return td__reply_bytes(c, 200, fallback_page, sizeof fallback_page - 1,
                             "text/html; charset=utf-8");
    return td__reply_error(c, 404, "not found");
  }
  char path[TD__URL_MAX + 1024], real[PATH_MAX];
  if (td_pathf(path, sizeof path, NULL, "%s%s%s", s->web_dir, url,
               url[strlen(url) - 1] == '/' ? "index.html" : "") ||
      !realpath(path, real))
    return td__reply_error(c, 404, "not found");
  /* A symlink inside web/ must not lead outside it. */
  size_t wl = strlen(s->web_dir);
  if (strncmp(real, s->web_dir, wl) != 0 || real[wl] != '/')
    return td__reply_error(c, 404, "not found");
  int fd = open(real, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0)
    return td__reply_error(c, 404, "not found");
  if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
    close(fd);
    return td__reply_error(c, 404, "not found");
  }
  /* A page carries this start's token: its ETag changes with it, or a
   * browser would revalidate an old page and send an old token. */
  int is_page = !strncmp(mime_of(real), "text/html", 9);
  uint64_t tok = 1469598103934665603ull; /* FNV-1a of the token */
  for (const char *t = s->token; is_page && *t; t++)
    tok = (tok ^ (unsigned char)*t) * 1099511628211ull;
  char etag[96];
  snprintf(etag, sizeof etag, "\"%llx-%llx-%lx-%llx\"",
           (unsigned long long)st.st_size,
           (unsigned long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec,
           is_page ? (unsigned long long)tok : 0ull);
  const char *inm =
      MHD_lookup_connection_value(c, MHD_HEADER_KIND, "If-None-Match");
  struct MHD_Response *r;
  unsigned status;
  if (inm && strstr(inm, etag)) {
    close(fd);
    r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    status = MHD_HTTP_NOT_MODIFIED;
  } else if (is_page) {
    r = page_with_token(s, fd, st.st_size);
    close(fd);
    status = MHD_HTTP_OK;
  } else {
    r = MHD_create_response_from_fd((uint64_t)st.st_size, fd); /* owns fd */
    status = MHD_HTTP_OK;
    if (!r)
      close(fd);
  }
  if (!r)
    return MHD_NO;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, mime_of(real));
  MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, etag);
  /* The UI changes while developing: always revalidate (cheap, via ETag). */
  td__common_headers(r, "no-cache");
  enum MHD_Result rc = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return rc;
}
