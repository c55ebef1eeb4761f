/* tardis/feedback.h — feedback sessions on suspicious samples, stored in
 * RUN/tardis.db (SQLite, write-ahead log).
 *
 * A session is one user's pass over the recommendations; each verdict is
 * one row (session, sample) → accept/reject, the latest write wins. Every
 * call is its own transaction, committed before it returns, so a killed
 * process loses nothing it was told was saved, and several processes (two
 * browser tabs through the server, the CLI) may write at once: writers wait
 * up to 5 s for each other.
 *
 *     td_fb *db;
 *     if (td_fb_open("runs/x", &db, &err)) ...
 *     int64_t s;
 *     td_fb_session_create(db, "first pass", &s, &err);
 *     int32_t idx[] = {17, 230};
 *     int8_t v[] = {1, 0};                    // accept 17, reject 230
 *     td_fb_record(db, s, idx, v, 2, NULL, &err);
 *     td_fb_close(db);
 */
#ifndef TARDIS_FEEDBACK_H
#define TARDIS_FEEDBACK_H

#include <stdint.h>

#include "tardis/error.h"

typedef struct td_fb td_fb;

/* Opens (creating when absent) RUN/tardis.db and its tables. */
TD_NODISCARD int td_fb_open(const char *run_dir, td_fb **out, td_err *err);
/* Same, for any database path (tests). */
TD_NODISCARD int td_fb_open_path(const char *path, td_fb **out, td_err *err);
void td_fb_close(td_fb *db); /* NULL is fine */

typedef struct td_fb_session {
  int64_t id;
  char name[128];
  char created[32]; /* ISO-8601 UTC */
  char updated[32]; /* of the newest verdict; = created when none */
  int64_t n_accept, n_reject;
  int rounds; /* feedback batches recorded */
} td_fb_session;

/* New session; name may be NULL or "" ("session N"). */
TD_NODISCARD int td_fb_session_create(td_fb *db, const char *name, int64_t *id,
                                      td_err *err);
/* TD_ENOENT when there is no such session. */
TD_NODISCARD int td_fb_session_get(td_fb *db, int64_t id, td_fb_session *out,
                                   td_err *err);
/* All sessions, newest first: *out malloc'd (caller frees), *n entries. */
TD_NODISCARD int td_fb_session_list(td_fb *db, td_fb_session **out, int *n,
                                    td_err *err);

/* Records one batch of verdicts (1 accept, 0 reject; anything else is
 * TD_EARG) in one transaction; *round (may be NULL) receives the batch
 * number (1, 2, ...). Indices are not checked against a run here. */
TD_NODISCARD int td_fb_record(td_fb *db, int64_t session, const int32_t *idx,
                              const int8_t *verdict, int n, int *round,
                              td_err *err);

/* Fills verdict[n] with −1 (unjudged), 0 or 1 from the session. Rows whose
 * index is >= n are ignored. */
TD_NODISCARD int td_fb_load(td_fb *db, int64_t session, int64_t n,
                            int8_t *verdict, td_err *err);

/* The accepted (want = 1) or rejected (want = 0) indices, ascending:
 * *idx malloc'd (caller frees; NULL when *n == 0). */
TD_NODISCARD int td_fb_list(td_fb *db, int64_t session, int want, int32_t **idx,
                            int64_t *n, td_err *err);

#endif
