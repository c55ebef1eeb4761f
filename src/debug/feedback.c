/* Feedback sessions in RUN/tardis.db (SQLite in WAL mode): one row per
 * (session, sample) verdict, written in one transaction per batch. */
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tardis/feedback.h"
#include "tardis/fsutil.h"

struct td_fb {
  sqlite3 *db;
  char path[TD_PATH_MAX];
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS suspect_sessions ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " name TEXT NOT NULL,"
    " created TEXT NOT NULL,"
    " updated TEXT NOT NULL,"
    " rounds INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS suspect_feedback ("
    " session INTEGER NOT NULL REFERENCES suspect_sessions(id),"
    " sample INTEGER NOT NULL,"
    " verdict INTEGER NOT NULL CHECK (verdict IN (0, 1)),"
    " round INTEGER NOT NULL,"
    " at TEXT NOT NULL,"
    " PRIMARY KEY (session, sample)) WITHOUT ROWID;";

static int db_err(td_fb *db, td_err *err, const char *what) {
  int code = sqlite3_errcode(db->db);
  return td_err_set(err, code == SQLITE_BUSY ? TD_ESTATE : TD_EIO, "%s: %s: %s",
                    db->path, what, sqlite3_errmsg(db->db));
}

static void now_iso(char *buf, size_t len) {
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int td_fb_open_path(const char *path, td_fb **out, td_err *err) {
  *out = NULL;
  td_fb *db = calloc(1, sizeof *db);
  if (!db)
    return td_err_set(err, TD_ENOMEM, "out of memory");
  int rc = td_pathf(db->path, sizeof db->path, err, "%s", path);
  if (rc) {
    free(db);
    return rc;
  }
  if (sqlite3_open_v2(path, &db->db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                          SQLITE_OPEN_FULLMUTEX,
                      NULL) != SQLITE_OK) {
    rc = td_err_set(err, TD_EIO, "%s: cannot open: %s", path,
                    db->db ? sqlite3_errmsg(db->db) : "out of memory");
    sqlite3_close(db->db);
    free(db);
    return rc;
  }
  /* Concurrent writers (two tabs, the CLI) wait for each other instead of
   * failing; WAL lets readers go on while one writes; synchronous=FULL
   * makes a committed verdict survive a power cut, not only a kill. */
  sqlite3_busy_timeout(db->db, 5000);
  if (sqlite3_exec(db->db,
                   "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                   "PRAGMA foreign_keys=ON;",
                   NULL, NULL, NULL) != SQLITE_OK ||
      sqlite3_exec(db->db, schema, NULL, NULL, NULL) != SQLITE_OK)
    rc = db_err(db, err, "cannot set up the feedback tables");
  if (rc) {
    sqlite3_close(db->db);
    free(db);
    return rc;
  }
  *out = db;
  return TD_OK;
}

int td_fb_open(const char *run_dir, td_fb **out, td_err *err) {
  char p[TD_PATH_MAX];
  int rc = td_pathf(p, sizeof p, err, "%s/tardis.db", run_dir);
  return rc ? rc : td_fb_open_path(p, out, err);
}

void td_fb_close(td_fb *db) {
  if (!db)
    return;
  sqlite3_close(db->db);
  free(db);
}

int td_fb_session_create(td_fb *db, const char *name, int64_t *id,
                         td_err *err) {
  /* session_row reads names back into td_fb_session.name */
  size_t cap = sizeof((td_fb_session *)0)->name;
  if (name && strlen(name) >= cap)
    return td_err_set(err, TD_EVALUE,
                      "session name is %zu bytes long, at most %zu allowed",
                      strlen(name), cap - 1);
  char now[32];
  now_iso(now, sizeof now);
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db->db,
                         "INSERT INTO suspect_sessions(name, created, updated)"
                         " VALUES (?1, ?2, ?2)",
                         -1, &st, NULL) != SQLITE_OK)
    return db_err(db, err, "create session");
  sqlite3_bind_text(st, 1, name ? name : "", -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 2, now, -1, SQLITE_TRANSIENT);
  int ok = sqlite3_step(st) == SQLITE_DONE;
  sqlite3_finalize(st);
  if (!ok)
    return db_err(db, err, "create session");
  *id = sqlite3_last_insert_rowid(db->db);
  if (!name || !name[0]) {
    char nm[64];
    snprintf(nm, sizeof nm, "session %lld", (long long)*id);
    if (sqlite3_prepare_v2(
            db->db, "UPDATE suspect_sessions SET name = ?1 WHERE id = ?2", -1,
            &st, NULL) == SQLITE_OK) {
      sqlite3_bind_text(st, 1, nm, -1, SQLITE_TRANSIENT);
      sqlite3_bind_int64(st, 2, *id);
      sqlite3_step(st);
      sqlite3_finalize(st);
    }
  }
  return TD_OK;
}

static const char session_select[] =
    "SELECT s.id, s.name, s.created, s.updated, s.rounds,"
    " (SELECT count(*) FROM suspect_feedback f"
    "   WHERE f.session = s.id AND f.verdict = 1),"
    " (SELECT count(*) FROM suspect_feedback f"
    "   WHERE f.session = s.id AND f.verdict = 0)"
    " FROM suspect_sessions s"; /* under 300 bytes: fits the q[512] below */

/* The copies fit: names are checked by td_fb_session_create, the times are
 * now_iso's 20 bytes. */
static void session_row(sqlite3_stmt *st, td_fb_session *s) {
  memset(s, 0, sizeof *s);
  s->id = sqlite3_column_int64(st, 0);
  snprintf(s->name, sizeof s->name, "%s",
           (const char *)sqlite3_column_text(st, 1));
  snprintf(s->created, sizeof s->created, "%s",
           (const char *)sqlite3_column_text(st, 2));
  snprintf(s->updated, sizeof s->updated, "%s",
           (const char *)sqlite3_column_text(st, 3));
  s->rounds = sqlite3_column_int(st, 4);
  s->n_accept = sqlite3_column_int64(st, 5);
  s->n_reject = sqlite3_column_int64(st, 6);
}

int td_fb_session_get(td_fb *db, int64_t id, td_fb_session *out, td_err *err) {
  char q[512];
  snprintf(q, sizeof q, "%s WHERE s.id = ?1", session_select);
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db->db, q, -1, &st, NULL) != SQLITE_OK)
    return db_err(db, err, "read session");
  sqlite3_bind_int64(st, 1, id);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW)
    session_row(st, out);
  sqlite3_finalize(st);
  if (rc == SQLITE_ROW)
    return TD_OK;
  if (rc == SQLITE_DONE)
    return td_err_set(err, TD_ENOENT, "no feedback session %lld",
                      (long long)id);
  return db_err(db, err, "read session");
}

int td_fb_session_list(td_fb *db, td_fb_session **out, int *n, td_err *err) {
  char q[512];
  snprintf(q, sizeof q, "%s ORDER BY s.id DESC", session_select);
  sqlite3_stmt *st;
  *out = NULL;
  *n = 0;
  if (sqlite3_prepare_v2(db->db, q, -1, &st, NULL) != SQLITE_OK)
    return db_err(db, err, "list sessions");
  int cap = 0, rc;
  td_fb_session *v = NULL;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (*n == cap) {
      cap = cap ? 2 * cap : 16;
      td_fb_session *nv = realloc(v, (size_t)cap * sizeof *v);
      if (!nv) {
        free(v);
        sqlite3_finalize(st);
        *n = 0;
        return td_err_set(err, TD_ENOMEM, "out of memory");
      }
      v = nv;
    }
    session_row(st, &v[(*n)++]);
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) {
    free(v);
    *n = 0;
    return db_err(db, err, "list sessions");
  }
  *out = v;
  return TD_OK;
}

int td_fb_record(td_fb *db, int64_t session, const int32_t *idx,
                 const int8_t *verdict, int n, int *round, td_err *err) {
  for (int j = 0; j < n; j++) {
    if (verdict[j] != 0 && verdict[j] != 1)
      return td_err_set(err, TD_EARG, "verdict %d for sample %d (0 or 1)",
                        verdict[j], idx[j]);
    if (idx[j] < 0)
      return td_err_set(err, TD_EARG, "negative sample index %d", idx[j]);
  }
  /* IMMEDIATE takes the write lock up front, so two writers queue on the
   * busy timeout rather than deadlocking on a lock upgrade. */
  if (sqlite3_exec(db->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
    return db_err(db, err, "begin");
  char now[32];
  now_iso(now, sizeof now);
  sqlite3_stmt *up = NULL, *ins = NULL;
  int r = 0, rc = TD_OK;
  if (sqlite3_prepare_v2(db->db,
                         "UPDATE suspect_sessions SET rounds = rounds + 1,"
                         " updated = ?2 WHERE id = ?1 RETURNING rounds",
                         -1, &up, NULL) != SQLITE_OK)
    rc = db_err(db, err, "record");
  if (!rc) {
    sqlite3_bind_int64(up, 1, session);
    sqlite3_bind_text(up, 2, now, -1, SQLITE_TRANSIENT);
    int s = sqlite3_step(up);
    if (s == SQLITE_ROW)
      r = sqlite3_column_int(up, 0);
    else if (s == SQLITE_DONE)
      rc = td_err_set(err, TD_ENOENT, "no feedback session %lld",
                      (long long)session);
    else
      rc = db_err(db, err, "record");
    sqlite3_finalize(up);
  }
  if (!rc && sqlite3_prepare_v2(db->db,
                                "INSERT OR REPLACE INTO suspect_feedback"
                                "(session, sample, verdict, round, at)"
                                " VALUES (?1, ?2, ?3, ?4, ?5)",
                                -1, &ins, NULL) != SQLITE_OK)
    rc = db_err(db, err, "record");
  for (int j = 0; !rc && j < n; j++) {
    sqlite3_reset(ins);
    sqlite3_bind_int64(ins, 1, session);
    sqlite3_bind_int64(ins, 2, idx[j]);
    sqlite3_bind_int(ins, 3, verdict[j]);
    sqlite3_bind_int(ins, 4, r);
    sqlite3_bind_text(ins, 5, now, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(ins) != SQLITE_DONE)
      rc = db_err(db, err, "record");
  }
  sqlite3_finalize(ins);
  if (!rc && sqlite3_exec(db->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
    rc = db_err(db, err, "commit");
  if (rc)
    sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
  else if (round)
    *round = r;
  return rc;
}

int td_fb_load(td_fb *db, int64_t session, int64_t n, int8_t *verdict,
               td_err *err) {
  memset(verdict, -1, (size_t)n);
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db->db,
                         "SELECT sample, verdict FROM suspect_feedback"
                         " WHERE session = ?1",
                         -1, &st, NULL) != SQLITE_OK)
    return db_err(db, err, "load feedback");
  sqlite3_bind_int64(st, 1, session);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    int64_t i = sqlite3_column_int64(st, 0);
    if (i >= 0 && i < n)
      verdict[i] = (int8_t)sqlite3_column_int(st, 1);
  }
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? TD_OK : db_err(db, err, "load feedback");
}

int td_fb_list(td_fb *db, int64_t session, int want, int32_t **idx, int64_t *n,
               td_err *err) {
  *idx = NULL;
  *n = 0;
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db->db,
                         "SELECT sample FROM suspect_feedback"
                         " WHERE session = ?1 AND verdict = ?2"
                         " ORDER BY sample",
                         -1, &st, NULL) != SQLITE_OK)
    return db_err(db, err, "list feedback");
  sqlite3_bind_int64(st, 1, session);
  sqlite3_bind_int(st, 2, want ? 1 : 0);
  int64_t cap = 0;
  int32_t *v = NULL;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (*n == cap) {
      cap = cap ? 2 * cap : 64;
      int32_t *nv = realloc(v, (size_t)cap * sizeof *v);
      if (!nv) {
        free(v);
        sqlite3_finalize(st);
        *n = 0;
        return td_err_set(err, TD_ENOMEM, "out of memory");
      }
      v = nv;
    }
    v[(*n)++] = (int32_t)sqlite3_column_int64(st, 0);
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) {
    free(v);
    *n = 0;
    return db_err(db, err, "list feedback");
  }
  *idx = v;
  return TD_OK;
}
