/* Internals of `tardis serve`, shared by the files of src/server/. */
#ifndef TD_SERVER_INTERNAL_H
#define TD_SERVER_INTERNAL_H

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "tardis/array.h"
#include "tardis/run.h"
#include "tardis/server.h"

#define TD__URL_MAX 4096
#define TD__TARGET_MAX 8192 /* the whole request target, query included */
#define TD__TOKEN_LEN 32    /* hex digits */
#define TD__STREAMS_MAX 32  /* open /api/events streams; the oldest goes */
/* A connection that sends nothing for this long is closed; above the
 * event-stream heartbeat (15 s), which keeps an idle stream alive. */
#define TD__IDLE_TIMEOUT_S 20
#define TD__BODY_MAX (1u << 20)
#define TD__CACHE_CAP 64
#define TD__EVENT_RING 256

/* One memory-mapped array, valid while its file is unchanged. */
typedef struct td__cache_entry {
  char key[512]; /* the file's path; "" when the slot is free */
  td_array a;
  dev_t dev;
  ino_t ino;
  int64_t mtime_ns;
  off_t size;
  uint64_t last_used;
  int refs;  /* requests using `a` right now; never evicted while > 0 */
  int stale; /* replaced on disk: freed when the last user lets go */
} td__cache_entry;

/* A territory PNG as served (png_cache.c). */
#define TD__PNG_CACHE_CAP 8
typedef struct td__png_entry {
  char dir[512]; /* the epoch's projection directory */
  int size;      /* ?size= */
  uint64_t stamp;
  void *png; /* NULL: free slot */
  size_t len;
  uint64_t last_used;
} td__png_entry;

typedef struct td__event {
  uint64_t id;
  char name[16];  /* "epoch", "projection", "quality", "alert" */
  char data[128]; /* JSON */
} td__event;

struct td_server {
  struct MHD_Daemon *mhd;
  int port;
  char *run_dir, *method, *web_dir; /* web_dir: realpath, or NULL if absent */
  int poll_ms, heartbeat_ms;

  /* The run's epoch list changes under td_run_refresh (writer); every
   * request holds the read side while it uses the run. */
  td_run *run;
  pthread_rwlock_t run_lock;

  pthread_mutex_t cache_mu;
  td__cache_entry *cache; /* TD__CACHE_CAP slots */
  uint64_t tick;

  pthread_mutex_t png_mu;
  td__png_entry pngs[TD__PNG_CACHE_CAP];
  uint64_t png_tick;

  /* Events for /api/events: a ring of the last TD__EVENT_RING, ids from 1. */
  pthread_mutex_t ev_mu;
  pthread_cond_t ev_cond;
  td__event ring[TD__EVENT_RING];
  uint64_t ev_last; /* id of the newest event; 0 = none yet */
  int stopping;
  pthread_t watcher;
  struct td__watch *watch; /* the watcher's last snapshot (server.c) */
  int watcher_started;

  struct td__sus_cache *sus; /* /api/suspects features (suspects_cache.c) */

  /* --follow: the live projector and its thread (follow.c). */
  struct td_live *live;
  pthread_t live_thread;
  int live_started;
  int follow_nice; /* td_server_opts.follow_nice */
  int scan_now;    /* under ev_mu: the watcher scans at once */

  /* Open event streams (under ev_mu), oldest first (server.c). */
  struct sse_state *streams[TD__STREAMS_MAX];
  int n_streams;

  /* Who may connect (guard.c). */
  char token[TD__TOKEN_LEN + 1];
  int loopback;        /* bound to 127/8 or ::1 */
  int wildcard;        /* bound to 0.0.0.0 or :: */
  char bound_addr[64]; /* numeric, v6 in brackets */
  char host_name[300]; /* --host as given, v6 in brackets */
  char machine[256];   /* gethostname(), with a wildcard bind */

  /* Connections and their deadlines (deadline.c). */
  int headers_ms, body_ms;
  pthread_mutex_t conn_mu;
  struct td__conn *conns;
  pthread_t reaper;
  int reaper_started;
};

/* ---- responses (http.c) ---- */

/* What a JSON error reply carries beyond {"error": msg}; {0}: nothing. */
typedef struct td__problem {
  const char *flag;           /* adds "flag": true ("waiting", "computing") */
  const char *header, *value; /* one more header (Allow, Retry-After) */
  const char *cache;          /* Cache-Control; NULL: "no-cache" */
  int close;                  /* Connection: close */
} td__problem;
/* Queues {"error": msg[, flag: true]} with status: every JSON error of the
 * server goes out through here. p may be NULL. */
enum MHD_Result td__reply_problem(struct MHD_Connection *c, unsigned status,
                                  const td__problem *p, const char *msg);
/* Queues a JSON error {"error": msg} with status. */
enum MHD_Result td__reply_error(struct MHD_Connection *c, unsigned status,
                                const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Queues a JSON value (stolen: decref'd here). */
enum MHD_Result td__reply_json(struct MHD_Connection *c, unsigned status,
                               json_t *v);
/* Queues a copy of a binary array with X-Tardis-Shape/X-Tardis-Dtype. */
enum MHD_Result td__reply_bin(struct MHD_Connection *c, const void *data,
                              size_t len, const char *shape, const char *dtype);
/* Queues a copy of bytes with a content type. */
enum MHD_Result td__reply_bytes(struct MHD_Connection *c, unsigned status,
                                const void *data, size_t len,
                                const char *content_type);
/* Adds headers every response carries. */
void td__common_headers(struct MHD_Response *r, const char *cache_control);

/* Strict decimal integer: the whole string, optional '-', no overflow. */
TD_NODISCARD int td__parse_i64(const char *s, int64_t *out);

/* ---- who may connect (guard.c) ---- */

/* Makes the token (or takes the one given) and records the bound address
 * of the listening socket fd (host: --host as given). */
TD_NODISCARD int td__guard_init(td_server *s, int fd, const char *host,
                                const char *token, td_err *err);
/* Checks Host, Origin and the token of a request whose headers are in;
 * changes: a state-changing request (POST), which always needs the token
 * header. 0: go on; else a refusal (403/400, or a redirect that sets the
 * token cookie) was queued in *res. */
TD_NODISCARD int td__guard_check(td_server *s, struct MHD_Connection *c,
                                 const char *url, const char *method,
                                 const char *version, int changes,
                                 enum MHD_Result *res);

/* ---- total deadlines of slow requests (deadline.c) ---- */

enum { TD__PHASE_WAIT, TD__PHASE_HEADERS, TD__PHASE_BODY, TD__PHASE_ANSWER };
/* MHD_OPTION_NOTIFY_CONNECTION: enters a new connection (its headers are
 * due) and removes a closed one. cls: the server. */
void td__conn_notify_cb(void *cls, struct MHD_Connection *c,
                        void **socket_context,
                        enum MHD_ConnectionNotificationCode toe);
/* What the connection does now: TD__PHASE_WAIT (no request begun; its
 * headers are due, closed silently past the deadline), TD__PHASE_HEADERS
 * (its request line is in, the headers due by the same deadline, else
 * 408), TD__PHASE_BODY (its body is due, else 408), TD__PHASE_ANSWER (no
 * deadline). */
void td__conn_phase(td_server *s, struct MHD_Connection *c, int phase);
/* Starts / joins the thread that ends connections past their deadline (it
 * stops when s->stopping is set under ev_mu, with ev_cond broadcast). */
TD_NODISCARD int td__reaper_start(td_server *s, td_err *err);
void td__reaper_join(td_server *s);

/* ---- cache (cache.c) ---- */

/* Returns the cached mapping of an array, loading it on a miss or when the
 * file changed. epoch/name != NULL: a run array loaded through td_run_load
 * (checked against run.json; path is its file for the staleness check);
 * name == NULL: a plain .npy at path. Release with td__cache_release. */
TD_NODISCARD int td__cache_get(td_server *s, const char *path, int epoch,
                               const char *name, td__cache_entry **out,
                               td_err *err);
void td__cache_release(td_server *s, td__cache_entry *e);
void td__cache_clear(td_server *s);

/* ---- territory PNGs (png_cache.c) ---- */

/* 1 and a malloc'd copy in *png, *len when the PNG of dir at size is cached
 * and its files unchanged; else 0. */
int td__png_cache_get(td_server *s, const char *dir, int size, void **png,
                      size_t *len);
/* Keeps a copy of png (the least recently used entry makes room). */
void td__png_cache_put(td_server *s, const char *dir, int size, const void *png,
                       size_t len);
void td__png_cache_clear(td_server *s);

/* ---- API (api.c), static files and events (server.c) ---- */

enum MHD_Result td__api_route(td_server *s, struct MHD_Connection *c,
                              const char *url);
enum MHD_Result td__events_reply(td_server *s, struct MHD_Connection *c);
enum MHD_Result td__static_reply(td_server *s, struct MHD_Connection *c,
                                 const char *url);

/* ---- suspects features, computed off the request threads
 * (suspects_cache.c) ---- */

typedef struct td__sus_cache td__sus_cache;
struct td_recommender;
struct td_sus_features;

/* Creates the cache of the run at run_dir and starts its worker thread;
 * nothing is computed until the first td__sus_cache_lock. */
TD_NODISCARD int td__sus_cache_new(const char *run_dir, td__sus_cache **out,
                                   td_err *err);
/* Stops the worker (after the computation under way, if any). NULL is
 * fine. */
void td__sus_cache_free(td__sus_cache *c);

enum { TD__SUS_READY, TD__SUS_COMPUTING, TD__SUS_FAILED };
/* The cache's state for a request. gen (>= 1) names the run's state on
 * disk; when it differs from the last one seen the worker rechecks the
 * features (the last result is served meanwhile). TD__SUS_READY: *f and
 * *note are valid and the cache stays locked until td__sus_cache_unlock.
 * TD__SUS_COMPUTING: nothing computed yet; TD__SUS_FAILED: *rc and *err are
 * the computation's error. Neither of those two holds the lock. */
TD_NODISCARD int td__sus_cache_lock(td__sus_cache *c, uint64_t gen,
                                    const struct td_sus_features **f,
                                    const char **note, int *rc, td_err *err);
/* The recommender of a session (created on first use), or for session <= 0
 * the prior's. Only while locked; NULL with err on failure. */
TD_NODISCARD struct td_recommender *
td__sus_cache_rec(td__sus_cache *c, int64_t session, td_err *err);
void td__sus_cache_unlock(td__sus_cache *c);

/* ---- following a run (follow.c) ---- */

/* Opens the run to serve. With --follow, a directory without run.json yet
 * is not an error: *run stays NULL until td__follow_run_ready finds it. */
TD_NODISCARD int td__follow_open_run(const td_server_opts *o, td_run **run,
                                     td_err *err);
/* Whether s->run is open, opening it once it has appeared (takes the run's
 * write lock to set it; call without the lock held). */
int td__follow_run_ready(td_server *s);
/* 503 with Retry-After: the followed run has not started yet. */
enum MHD_Result td__reply_waiting(td_server *s, struct MHD_Connection *c);

/* Starts the live projector's thread (opts->follow). */
TD_NODISCARD int td__follow_start(td_server *s, td_err *err);
/* Stops and joins it (after the epoch under way). Safe when not started. */
void td__follow_stop(td_server *s);
/* The epoch being projected now, or -1 (also without --follow). */
int td__follow_projecting(td_server *s);
/* Whether the follower has work left: the run goes on, or recorded epochs
 * and drafts wait to be drawn. */
int td__follow_drawing(td_server *s);
/* Wakes the run watcher for a scan now (server.c). */
void td__watch_poke(td_server *s);

/* ---- suspicious samples (api_suspects.c) ---- */

/* GET /api/suspects[/...]: seg[0] == "suspects"; the run's read lock is
 * held by the caller. */
enum MHD_Result td__suspects_get(td_server *s, struct MHD_Connection *c,
                                 const td_run *run, char **seg, int nseg);
/* POST /api/...: body (len bytes, not NUL-terminated, at most TD__BODY_MAX)
 * is the whole request body. Routes other than /api/suspects/... answer
 * 405. Takes the run's read lock itself. */
enum MHD_Result td__api_post(td_server *s, struct MHD_Connection *c,
                             const char *url, const char *body, size_t len);

/* ---- alerts (api_alerts.c) ---- */

/* GET /api/alerts: RUN/alerts.jsonl as a JSON array; the run's read lock is
 * held by the caller. */
enum MHD_Result td__alerts_get(td_server *s, struct MHD_Connection *c,
                               const td_run *run);
/* A stamp of RUN/alerts.jsonl (modification time and size) that changes
 * when the file does; 0 when it is absent. */
int64_t td__alerts_stamp(const char *run_dir);

/* ---- diagnosis and repair (api_diagnosis.c) ---- */

/* GET /api/diagnosis[/{E}[/{map}.png]]: seg[0] == "diagnosis"; the run's
 * read lock is held by the caller. */
enum MHD_Result td__diagnosis_get(td_server *s, struct MHD_Connection *c,
                                  const td_run *run, char **seg, int nseg);
/* GET /api/repair: RUN/repair.json of a run made by `tardis repair`. */
enum MHD_Result td__repair_get(td_server *s, struct MHD_Connection *c,
                               const td_run *run);

#endif
