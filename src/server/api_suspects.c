/* /api/suspects: suspicious samples, feedback sessions and their export
 * (docs/api.md, "Suspicious samples"). Features come from the server's
 * suspects cache (suspects_cache.c), computed off the request threads;
 * sessions live in RUN/tardis.db, opened per request so that other
 * processes (the CLI, a second server) may write too.
 */
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_internal.h"
#include "tardis/feedback.h"
#include "tardis/fsutil.h"
#include "tardis/suspects.h"

#define MAX_K 1000
#define RETRY_AFTER_S "1"

static const char *arg(struct MHD_Connection *c, const char *key) {
  return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, key);
}

static int get_k(struct MHD_Connection *c, int *k, enum MHD_Result *res) {
  const char *v = arg(c, "k");
  int64_t x = 50;
  if (v && (td__parse_i64(v, &x) || x < 1 || x > MAX_K)) {
    *res = td__reply_error(c, 400, "bad k '%.32s' (1-%d)", v, MAX_K);
    return -1;
  }
  *k = (int)x;
  return 0;
}

static json_t *item_json(const td_recommender *rec, const td_sus_features *f,
                         const int32_t *labels, int32_t i, float score) {
  int feat[TD_SUS_FEATURE_COUNT];
  double pct[TD_SUS_FEATURE_COUNT];
  int nw = td_rec_why(rec, i, feat, pct, TD_SUS_FEATURE_COUNT);
  json_t *why = json_array(), *vals = json_object();
  for (int j = 0; j < nw; j++)
    json_array_append_new(
        why,
        json_pack("{s:s,s:f,s:f}", "feature", td_sus_feature_name(feat[j]),
                  "value",
                  (double)f->x[(int64_t)i * TD_SUS_FEATURE_COUNT + feat[j]],
                  "percentile", pct[j]));
  for (int j = 0; j < TD_SUS_FEATURE_COUNT; j++)
    if ((f->has_trajectory || j > TD_SUS_RARITY_ACC) &&
        td_sus_feature_is_score(j))
      json_object_set_new(
          vals, td_sus_feature_name(j),
          json_real((double)f->x[(int64_t)i * TD_SUS_FEATURE_COUNT + j]));
  return json_pack("{s:i,s:f,s:i,s:o,s:o}", "index", (json_int_t)i, "score",
                   (double)score, "label", (json_int_t)labels[i], "why", why,
                   "features", vals);
}

static json_t *features_info(const td_sus_features *f, const char *note) {
  json_t *names = json_array();
  for (int j = 0; j < TD_SUS_FEATURE_COUNT; j++)
    if ((f->has_trajectory || j > TD_SUS_RARITY_ACC) &&
        td_sus_feature_is_score(j))
      json_array_append_new(names, json_string(td_sus_feature_name(j)));
  return json_pack("{s:o,s:b,s:s,s:s,s:i}", "names", names, "trajectory",
                   f->has_trajectory, "method", f->method, "note", note,
                   "epochs", f->n_epochs);
}

/* Ranks with rec against verdict and replies {"features", ..., "suspects"}.
 * The suspects cache is locked. */
static enum MHD_Result reply_ranked(struct MHD_Connection *c, const td_run *run,
                                    const td_sus_features *f, const char *note,
                                    td_recommender *rec, const int8_t *verdict,
                                    int k, json_t *extra) {
  int32_t *idx = malloc((size_t)k * sizeof *idx);
  float *sc = malloc((size_t)k * sizeof *sc);
  if (!idx || !sc) {
    free(idx);
    free(sc);
    json_decref(extra);
    return td__reply_error(c, 500, "out of memory");
  }
  td_rec_info info;
  int n = td_rec_next(rec, verdict, k, idx, sc, &info);
  json_t *items = json_array();
  const int32_t *labels = td_run_train_labels(run);
  /* suggested labels: left out (not an error) when they cannot be made */
  td_sus_suggestion *sg = malloc(sizeof *sg * (size_t)(n ? n : 1));
  td_err err;
  int have_sg = sg && td_sus_suggest(run, idx, n, 0, sg, &err) == TD_OK;
  for (int j = 0; j < n; j++) {
    json_t *it = item_json(rec, f, labels, idx[j], sc[j]);
    if (td_run_subset(run)) /* the row's training index */
      json_object_set_new(it, "sample",
                          json_integer(td_run_subset(run)[idx[j]]));
    if (have_sg)
      json_object_set_new(
          it, "suggested",
          json_pack("{s:i,s:f,s:i,s:f,s:i,s:f}", "label", sg[j].label,
                    "confidence", (double)sg[j].confidence, "model_class",
                    sg[j].model_class, "model_prob", (double)sg[j].model_prob,
                    "knn_class", sg[j].knn_class, "knn_share",
                    (double)sg[j].knn_share));
    json_array_append_new(items, it);
  }
  free(sg);
  free(idx);
  free(sc);
  json_t *o = extra ? extra : json_object();
  json_object_set_new(o, "features", features_info(f, note));
  json_object_set_new(o, "ranked_by",
                      json_string(info.model_ranked ? "model" : "prior"));
  json_object_set_new(o, "suspects", items);
  return td__reply_json(c, 200, o);
}

static json_t *session_json(const td_fb_session *s) {
  return json_pack("{s:I,s:s,s:s,s:s,s:I,s:I,s:i}", (const char *)"id",
                   (json_int_t)s->id, "name", s->name, "created", s->created,
                   "updated", s->updated, "accepted", (json_int_t)s->n_accept,
                   "rejected", (json_int_t)s->n_reject, "rounds", s->rounds);
}

static enum MHD_Result db_error(struct MHD_Connection *c, int rc,
                                const td_err *e) {
  return td__reply_error(c, rc == TD_ENOENT ? 404 : 500, "%s", e->msg);
}

static int parse_session(struct MHD_Connection *c, const char *text,
                         int64_t *id, enum MHD_Result *res) {
  if (td__parse_i64(text, id) || *id < 1) {
    *res = td__reply_error(c, 400, "bad session id '%.32s'", text);
    return -1;
  }
  return 0;
}

/* 503 with Retry-After: the features are being computed (docs/api.md). */
static enum MHD_Result reply_computing(struct MHD_Connection *c) {
  const td__problem p = {.flag = "computing",
                         .header = MHD_HTTP_HEADER_RETRY_AFTER,
                         .value = RETRY_AFTER_S,
                         .cache = "no-store"};
  return td__reply_problem(c, MHD_HTTP_SERVICE_UNAVAILABLE, &p,
                           "computing the suspects features; retry shortly");
}

/* The run's state for the suspects cache: every change the watcher sees
 * (new or projected epochs, new metrics) is an event, so the newest event
 * id names it. */
static uint64_t run_generation(td_server *s) {
  pthread_mutex_lock(&s->ev_mu);
  uint64_t g = s->ev_last + 1;
  pthread_mutex_unlock(&s->ev_mu);
  return g;
}

/* The session's verdicts ([n], -1 unjudged; all -1 without a session),
 * read before the suspects cache is locked. */
static int load_verdict(td_fb *db, int64_t session, int64_t n, int8_t **out,
                        td_err *err) {
  *out = malloc((size_t)(n ? n : 1));
  if (!*out)
    return td_err_set(err, TD_ENOMEM, "out of memory");
  memset(*out, -1, (size_t)n);
  return session > 0 ? td_fb_load(db, session, n, *out, err) : TD_OK;
}

static enum MHD_Result get_ranking(td_server *s, struct MHD_Connection *c,
                                   const td_run *run, td_fb *db,
                                   int64_t session) {
  enum MHD_Result res;
  int k;
  td_err err;
  if (get_k(c, &k, &res))
    return res;
  td_fb_session ss;
  int rc;
  if (session > 0 && (rc = td_fb_session_get(db, session, &ss, &err)))
    return db_error(c, rc, &err);
  int64_t n = td_run_get_meta(run)->n_train;
  int8_t *verdict;
  if ((rc = load_verdict(db, session, n, &verdict, &err))) {
    free(verdict);
    return td__reply_error(c, 500, "%s", err.msg);
  }
  const td_sus_features *f;
  const char *note;
  int st = td__sus_cache_lock(s->sus, run_generation(s), &f, &note, &rc, &err);
  if (st != TD__SUS_READY) {
    free(verdict);
    return st == TD__SUS_COMPUTING
               ? reply_computing(c)
               : td__reply_error(c, rc == TD_ESTATE ? 404 : 500, "%s", err.msg);
  }
  td_recommender *rec =
      f->n == n ? td__sus_cache_rec(s->sus, session, &err) : NULL;
  if (f->n != n)
    td_err_set(&err, TD_ESTATE,
               "%s: the suspects features are of %lld samples, "
               "the run has %lld",
               td_run_dir(run), (long long)f->n, (long long)n);
  if (rec)
    res = reply_ranked(
        c, run, f, note, rec, verdict, k,
        session > 0 ? json_pack("{s:o}", "session", session_json(&ss)) : NULL);
  td__sus_cache_unlock(s->sus);
  free(verdict);
  return rec ? res : td__reply_error(c, 500, "%s", err.msg);
}

/* Sessions judge rows; an export names training samples, so a subset
 * run's rows become their training indices. */
static enum MHD_Result get_export(struct MHD_Connection *c, const td_run *run,
                                  td_fb *db, int64_t session) {
  const char *fmt = arg(c, "format"), *which = arg(c, "verdict");
  if (fmt && strcmp(fmt, "json") && strcmp(fmt, "csv"))
    return td__reply_error(c, 400, "bad format '%.16s' (json or csv)", fmt);
  if (which && strcmp(which, "accept") && strcmp(which, "reject"))
    return td__reply_error(c, 400, "bad verdict '%.16s' (accept or reject)",
                           which);
  int want = !which || !strcmp(which, "accept");
  td_err err;
  td_fb_session s;
  int rc = td_fb_session_get(db, session, &s, &err);
  int32_t *idx = NULL;
  int64_t n = 0;
  if (!rc)
    rc = td_fb_list(db, session, want, &idx, &n, &err);
  if (rc)
    return db_error(c, rc, &err);
  const int32_t *sub = td_run_subset(run);
  for (int64_t j = 0; sub && j < n; j++)
    idx[j] = sub[idx[j]];
  enum MHD_Result res;
  if (fmt && !strcmp(fmt, "csv")) {
    /* fits: "index\n", then at most 10 digits and '\n' per int32 index */
    size_t cap = 16 + (size_t)n * 12, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
      free(idx);
      return td__reply_error(c, 500, "out of memory");
    }
    len += (size_t)snprintf(buf, cap, "index\n");
    for (int64_t j = 0; j < n; j++)
      len += (size_t)snprintf(buf + len, cap - len, "%d\n", idx[j]);
    res = td__reply_bytes(c, 200, buf, len, "text/csv; charset=utf-8");
    free(buf);
  } else {
    json_t *a = json_array();
    for (int64_t j = 0; j < n; j++)
      json_array_append_new(a, json_integer(idx[j]));
    res = td__reply_json(c, 200,
                         json_pack("{s:I,s:s,s:o}", "session",
                                   (json_int_t)session, "verdict",
                                   want ? "accept" : "reject", "indices", a));
  }
  free(idx);
  return res;
}

/* GET /api/suspects/ood[?method=M][&epoch=E]: one detector's score of
 * every test and out-of-distribution sample (high = unlike the training
 * set), with its AUROC per measurable shift. */
static enum MHD_Result get_ood(struct MHD_Connection *c, const td_run *run) {
  const char *mv = arg(c, "method"), *ev = arg(c, "epoch");
  int method = mv ? td_ood_parse(mv) : TD_OOD_DEFAULT;
  int64_t epoch = -1;
  if (method < 0)
    return td__reply_error(c, 400, "bad method '%.32s'", mv);
  if (ev && (td__parse_i64(ev, &epoch) || epoch < 0 || epoch > INT_MAX))
    return td__reply_error(c, 400, "bad epoch '%.32s'", ev);
  td_err err;
  td_ood_result r;
  int rc = td_ood_run(run, (int)epoch, 0, 1u << method, &r, &err);
  if (rc)
    return td__reply_error(c, rc == TD_ENOENT ? 404 : 500, "%s", err.msg);
  json_t *test = json_array(), *ood = json_array(), *left = json_array();
  float *in = malloc(sizeof *in * (size_t)(r.m_test ? r.m_test : 1)),
        *lo = malloc(sizeof *lo * (size_t)(r.m_test ? r.m_test : 1));
  int64_t ni = 0, nl = 0;
  for (int64_t i = 0; i < r.m_test; i++) {
    float v = r.test[method][i];
    json_array_append_new(test, json_real((double)v));
    if (r.left_out[i])
      json_array_append_new(left, json_integer(i));
    if (in && lo)
      *(r.left_out[i] ? &lo[nl++] : &in[ni++]) = v;
  }
  for (int64_t i = 0; i < r.m_ood; i++)
    json_array_append_new(ood, json_real((double)r.ood[method][i]));
  json_t *au = json_object();
  if (in && lo && r.m_ood > 0)
    json_object_set_new(au, r.ood_set,
                        json_real(td_auroc(r.ood[method], r.m_ood, in, ni)));
  if (in && lo && nl > 0)
    json_object_set_new(au, "left_out_class",
                        json_real(td_auroc(lo, nl, in, ni)));
  free(in);
  free(lo);
  json_t *o = json_pack("{s:s,s:i,s:i,s:o,s:o,s:o,s:o}", "method",
                        td_ood_name(method), "epoch", r.epoch, "k", r.k, "test",
                        test, "ood", ood, "left_out", left, "auroc", au);
  td_ood_result_close(&r);
  return td__reply_json(c, 200, o);
}

enum MHD_Result td__suspects_get(td_server *s, struct MHD_Connection *c,
                                 const td_run *run, char **seg, int nseg) {
  td_err err;
  if (nseg == 1) /* no session: the prior's ranking */
    return get_ranking(s, c, run, NULL, 0);
  if (nseg == 2 && !strcmp(seg[1], "ood"))
    return get_ood(c, run);
  if (strcmp(seg[1], "sessions") || nseg > 4)
    return td__reply_error(c, 404, "no such route");
  /* A GET never creates RUN/tardis.db: without it there are no sessions,
   * and a read-only run answers instead of failing to create the file. */
  char dbp[TD_PATH_MAX];
  enum MHD_Result res;
  int64_t id;
  if (td_pathf(dbp, sizeof dbp, NULL, "%s/tardis.db", td_run_dir(run)) ||
      !td_path_exists(dbp)) {
    if (nseg == 2)
      return td__reply_json(c, 200, json_pack("{s:[]}", "sessions"));
    if (parse_session(c, seg[2], &id, &res))
      return res;
    return td__reply_error(c, 404, "no such session");
  }
  td_fb *db;
  int rc = td_fb_open(td_run_dir(run), &db, &err);
  if (rc)
    return td__reply_error(c, 500, "%s", err.msg);
  if (nseg == 2) {
    td_fb_session *v;
    int n;
    rc = td_fb_session_list(db, &v, &n, &err);
    if (rc) {
      res = td__reply_error(c, 500, "%s", err.msg);
    } else {
      json_t *a = json_array();
      for (int i = 0; i < n; i++)
        json_array_append_new(a, session_json(&v[i]));
      free(v);
      res = td__reply_json(c, 200, json_pack("{s:o}", "sessions", a));
    }
  } else if (parse_session(c, seg[2], &id, &res)) {
    /* res is queued */
  } else if (nseg == 3) {
    td_fb_session ss;
    rc = td_fb_session_get(db, id, &ss, &err);
    res =
        rc ? db_error(c, rc, &err) : td__reply_json(c, 200, session_json(&ss));
  } else if (!strcmp(seg[3], "recommend")) {
    res = get_ranking(s, c, run, db, id);
  } else if (!strcmp(seg[3], "export")) {
    res = get_export(c, run, db, id);
  } else {
    res = td__reply_error(c, 404, "no such route");
  }
  td_fb_close(db);
  return res;
}

/* ---- POST --------------------------------------------------------------- */

/* {"accept": [i...], "reject": [j...]} → parallel arrays. */
static int parse_feedback(json_t *body, int64_t n, int32_t **idx, int8_t **v,
                          int *m, char *msg, size_t len) {
  json_t *acc = json_object_get(body, "accept"),
         *rej = json_object_get(body, "reject");
  *idx = NULL;
  *v = NULL;
  *m = 0;
  if ((acc && !json_is_array(acc)) || (rej && !json_is_array(rej)) ||
      (!acc && !rej)) {
    snprintf(msg, len,
             "body must be {\"accept\": [indices], \"reject\": "
             "[indices]}");
    return -1;
  }
  size_t total =
      (acc ? json_array_size(acc) : 0) + (rej ? json_array_size(rej) : 0);
  *idx = malloc((total ? total : 1) * sizeof **idx);
  *v = malloc(total ? total : 1);
  /* one bit per sample finds repeats in linear time */
  uint8_t *seen = calloc((size_t)(n / 8 + 1), 1);
  if (!*idx || !*v || !seen) {
    free(seen);
    snprintf(msg, len, "out of memory");
    return -1;
  }
  for (int pass = 0; pass < 2; pass++) {
    json_t *a = pass ? rej : acc, *x;
    size_t i;
    if (!a)
      continue;
    json_array_foreach(a, i, x) {
      json_int_t val = json_is_integer(x) ? json_integer_value(x) : -1;
      if (val < 0 || val >= n) {
        snprintf(msg, len, "bad index in \"%s\" (integers 0 <= i < %lld)",
                 pass ? "reject" : "accept", (long long)n);
        free(seen);
        return -1;
      }
      if (seen[val / 8] & (1u << (val % 8))) {
        snprintf(msg, len, "sample %lld appears twice", (long long)val);
        free(seen);
        return -1;
      }
      seen[val / 8] |= (uint8_t)(1u << (val % 8));
      (*idx)[*m] = (int32_t)val;
      (*v)[(*m)++] = (int8_t)(pass ? 0 : 1);
    }
  }
  free(seen);
  return 0;
}

static enum MHD_Result post(td_server *s, struct MHD_Connection *c, char **seg,
                            int nseg, json_t *body) {
  const td_run *run = s->run;
  td_err err;
  td_fb *db;
  int64_t id;
  enum MHD_Result res;
  int is_create = nseg == 2 && !strcmp(seg[1], "sessions");
  int is_feedback =
      nseg == 4 && !strcmp(seg[1], "sessions") && !strcmp(seg[3], "feedback");
  if (!is_create && !is_feedback)
    return td__reply_error(c, 404, "no such route");
  if (is_feedback && parse_session(c, seg[2], &id, &res))
    return res;
  if (td_fb_open(td_run_dir(run), &db, &err))
    return td__reply_error(c, 500, "%s", err.msg);
  if (is_create) {
    json_t *nm = json_object_get(body, "name");
    if (nm && !json_is_string(nm)) {
      res = td__reply_error(c, 400, "\"name\" must be a string");
    } else {
      td_fb_session ss;
      int rc = td_fb_session_create(db, nm ? json_string_value(nm) : NULL, &id,
                                    &err);
      if (!rc)
        rc = td_fb_session_get(db, id, &ss, &err);
      res = rc ? td__reply_error(c, rc == TD_EVALUE ? 400 : 500, "%s", err.msg)
               : td__reply_json(c, 201, session_json(&ss));
    }
  } else {
    int32_t *idx;
    int8_t *v;
    int m, round;
    char msg[160];
    if (parse_feedback(body, td_run_get_meta(run)->n_train, &idx, &v, &m, msg,
                       sizeof msg)) {
      res = td__reply_error(c, 400, "%s", msg);
    } else {
      int rc = td_fb_record(db, id, idx, v, m, &round, &err);
      if (rc) {
        res = db_error(c, rc, &err);
      } else {
        td_fb_session ss;
        rc = td_fb_session_get(db, id, &ss, &err);
        res = rc ? db_error(c, rc, &err)
                 : td__reply_json(c, 200,
                                  json_pack("{s:i,s:i,s:o}", "round", round,
                                            "recorded", m, "session",
                                            session_json(&ss)));
      }
    }
    free(idx);
    free(v);
  }
  td_fb_close(db);
  return res;
}

enum MHD_Result td__api_post(td_server *s, struct MHD_Connection *c,
                             const char *url, const char *body, size_t len) {
  char path[TD__URL_MAX + 1];
  char *seg[8];
  int nseg = 0;
  if (strncmp(url, "/api/", 5))
    return td__reply_error(c, 404, "no such route");
  /* fits: server.c refuses URLs longer than TD__URL_MAX */
  snprintf(path, sizeof path, "%s", url + 5);
  for (char *p = path, *save = NULL, *t; (t = strtok_r(p, "/", &save));
       p = NULL) {
    if (nseg == 8)
      return td__reply_error(c, 404, "no such route");
    seg[nseg++] = t;
  }
  if (nseg == 0 || strcmp(seg[0], "suspects"))
    return td__reply_error(c, 405, "method not allowed (GET, HEAD)");
  json_error_t je;
  /* An empty body is an empty object: creating a session needs no fields. */
  json_t *j = len == 0 ? json_object() : json_loadb(body, len, 0, &je);
  if (!json_is_object(j)) {
    json_decref(j);
    return td__reply_error(c, 400, "body must be a JSON object");
  }
  pthread_rwlock_rdlock(&s->run_lock);
  enum MHD_Result res = post(s, c, seg, nseg, j);
  pthread_rwlock_unlock(&s->run_lock);
  json_decref(j);
  return res;
}
