/* tardis suspects RUN --session S: feedback from the command line, in the
 * same store as the web UI (RUN/tardis.db, tardis/feedback.h), the next
 * recommendations for the session, and the export of its corrections. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/suspects_session.h"
#include "tardis/array.h"
#include "tardis/feedback.h"

/* "12,40,7" → idx[] (malloc'd), each in [0, n). Returns the count or −1
 * after printing why. */
static int parse_list(const char *opt, const char *s, int64_t n,
                      int32_t **idx) {
  int cap = 1;
  for (const char *p = s; *p; p++)
    cap += *p == ',';
  *idx = malloc(sizeof **idx * (size_t)cap);
  if (!*idx)
    return -1;
  int m = 0;
  for (const char *p = s;;) {
    char *end;
    errno = 0;
    long long v = strtoll(p, &end, 10);
    if (end == p || errno || v < 0 || v >= n || (*end && *end != ',')) {
      fprintf(stderr,
              "tardis suspects: --%s: '%s' is not a list of training sample "
              "indices in [0, %lld)\n",
              opt, s, (long long)n);
      free(*idx);
      *idx = NULL;
      return -1;
    }
    (*idx)[m++] = (int32_t)v;
    if (!*end)
      break;
    p = end + 1;
  }
  return m;
}

/* The session named by `s`: a number is an id that must exist; anything
 * else is a name, found among the sessions or created. */
static int resolve_session(td_fb *db, const char *s, int64_t *id, int json,
                           td_err *err) {
  char *end;
  long long v = strtoll(s, &end, 10);
  td_fb_session ss;
  if (*s && !*end)
    return td_fb_session_get(db, *id = v, &ss, err);
  td_fb_session *all;
  int n, rc = td_fb_session_list(db, &all, &n, err);
  if (rc)
    return rc;
  int found = 0;
  for (int i = 0; i < n && !found; i++)
    if (!strcmp(all[i].name, s)) {
      *id = all[i].id;
      found = 1;
    }
  free(all);
  if (found)
    return TD_OK;
  rc = td_fb_session_create(db, s, id, err);
  if (!rc && !json)
    printf("new feedback session %lld \"%s\"\n", (long long)*id, s);
  return rc;
}

/* --accept / --reject as one batch. */
static int record(td_fb *db, int64_t id, const args *a, int64_t n, int *round,
                  int *n_rec, td_err *err) {
  int32_t *acc = NULL, *rej = NULL;
  int na = a->accept ? parse_list("accept", a->accept, n, &acc) : 0;
  int nr = a->reject ? parse_list("reject", a->reject, n, &rej) : 0;
  int rc = TD_OK;
  *n_rec = 0;
  if (na < 0 || nr < 0) {
    rc = td_err_set(err, TD_EARG, "bad sample list");
  } else if (na + nr > 0) {
    int32_t *idx = malloc(sizeof *idx * (size_t)(na + nr));
    int8_t *v = malloc((size_t)(na + nr));
    if (!idx || !v) {
      rc = td_err_set(err, TD_ENOMEM, "out of memory");
    } else {
      for (int i = 0; i < na + nr; i++) {
        idx[i] = i < na ? acc[i] : rej[i - na];
        v[i] = i < na;
      }
      rc = td_fb_record(db, id, idx, v, na + nr, round, err);
      *n_rec = na + nr;
    }
    free(idx);
    free(v);
  }
  free(acc);
  free(rej);
  return rc;
}

/* The training indices not in acc[na] (ascending, distinct) into
 * DIR/kept.npy: `tardis train --from RUN --select DIR/kept.npy` (or
 * --exclude DIR/accepted.npy) retrains without the accepted samples. */
static int export_kept(const char *dir, int64_t n, const int32_t *acc,
                       int64_t na, td_err *err) {
  int32_t *kept = malloc(sizeof *kept * (size_t)(n ? n : 1));
  if (!kept)
    return td_err_set(err, TD_ENOMEM, "out of memory");
  int64_t nk = 0, j = 0;
  for (int64_t i = 0; i < n; i++) {
    while (j < na && acc[j] < i)
      j++;
    if (j >= na || acc[j] != i)
      kept[nk++] = (int32_t)i;
  }
  char path[4200];
  int64_t sh[1] = {nk};
  int rc = TD_OK;
  if (snprintf(path, sizeof path, "%s/kept.npy", dir) >= (int)sizeof path)
    rc = td_err_set(err, TD_EARG, "%s: path too long", dir);
  if (!rc)
    rc = td_npy_save_raw(path, TD_I32, 1, sh, kept, err);
  free(kept);
  return rc;
}

/* DIR/train_labels_fixed.npy (each accepted sample's label replaced by
 * its suggestion), DIR/accepted.npy (the accepted indices) and
 * DIR/kept.npy (the others). */
static int export_fixed(const td_run *run, td_fb *db, int64_t id,
                        const char *dir, int json, td_err *err) {
  int32_t *acc;
  int64_t na;
  int rc = td_fb_list(db, id, 1, &acc, &na, err);
  if (rc)
    return rc;
  const td_run_meta *m = td_run_get_meta(run);
  int32_t *lab = malloc(sizeof *lab * (size_t)m->n_train);
  td_sus_suggestion *sg = malloc(sizeof *sg * (size_t)(na ? na : 1));
  int64_t changed = 0;
  if (!lab || !sg)
    rc = td_err_set(err, TD_ENOMEM, "out of memory");
  if (!rc && mkdir(dir, 0755) && errno != EEXIST)
    rc = td_err_set(err, TD_EIO, "%s: cannot create: %s", dir, strerror(errno));
  if (!rc) {
    memcpy(lab, td_run_train_labels(run), sizeof *lab * (size_t)m->n_train);
    rc = td_sus_suggest(run, acc, (int)na, 0, sg, err);
  }
  for (int64_t j = 0; !rc && j < na; j++) {
    changed += lab[acc[j]] != sg[j].label;
    lab[acc[j]] = sg[j].label;
  }
  char path[4200];
  int64_t sh[1] = {m->n_train};
  if (!rc && snprintf(path, sizeof path, "%s/train_labels_fixed.npy", dir) >=
                 (int)sizeof path)
    rc = td_err_set(err, TD_EARG, "%s: path too long", dir);
  if (!rc)
    rc = td_npy_save_raw(path, TD_I32, 1, sh, lab, err);
  sh[0] = na;
  if (!rc) {
    snprintf(path, sizeof path, "%s/accepted.npy", dir); /* fits: as above */
    rc = td_npy_save_raw(path, TD_I32, 1, sh, acc, err);
  }
  if (!rc)
    rc = export_kept(dir, m->n_train, acc, na, err);
  if (!rc && !json)
    printf("exported %s/train_labels_fixed.npy (%lld of %lld accepted "
           "samples relabelled by their suggestion), %s/accepted.npy and "
           "%s/kept.npy (the others): tardis train --from RUN --out NEW "
           "--labels %s/train_labels_fixed.npy retrains with them fixed, "
           "--exclude %s/accepted.npy without them\n",
           dir, (long long)changed, (long long)na, dir, dir, dir, dir);
  free(acc);
  free(lab);
  free(sg);
  return rc;
}

int td__suspects_session(const args *a, const td_run *run,
                         const td_sus_features *f, const char *note) {
  td_err err;
  td_fb *db;
  int64_t id = 0, n = td_run_get_meta(run)->n_train;
  int round = 0, n_rec = 0;
  /* --accept and the exported labels speak of training indices: a subset
   * run's sessions are the web UI's (rows mapped by the server) */
  if (td_run_require_all_samples(run, "tardis suspects --session", &err)) {
    fprintf(stderr, "tardis suspects: %s (the web UI's sessions work)\n",
            err.msg);
    return 1;
  }
  if (td_fb_open(td_run_dir(run), &db, &err)) {
    fprintf(stderr, "tardis suspects: %s\n", err.msg);
    return 1;
  }
  int8_t *verdict = malloc((size_t)n);
  int rc = verdict ? TD_OK : td_err_set(&err, TD_ENOMEM, "out of memory");
  if (!rc)
    rc = resolve_session(db, a->session, &id, a->json, &err);
  if (!rc)
    rc = record(db, id, a, n, &round, &n_rec, &err);
  if (!rc && n_rec && !a->json)
    printf("session %lld: recorded %d verdicts (round %d)\n", (long long)id,
           n_rec, round);
  if (!rc && a->export_dir)
    rc = export_fixed(run, db, id, a->export_dir, a->json, &err);
  if (!rc)
    rc = td_fb_load(db, id, n, verdict, &err);
  td_fb_session ss;
  if (!rc)
    rc = td_fb_session_get(db, id, &ss, &err);
  td_fb_close(db);
  if (rc) {
    free(verdict);
    if (err.code != TD_EARG || !strstr(err.msg, "bad sample list"))
      fprintf(stderr, "tardis suspects: %s\n", err.msg);
    return rc == TD_EARG ? 2 : 1;
  }
  int st = 0;
  int list = a->next || (!n_rec && !a->export_dir);
  if (list) {
    if (!a->json)
      printf("session %lld \"%s\": %lld accepted, %lld rejected\n",
             (long long)ss.id, ss.name, (long long)ss.n_accept,
             (long long)ss.n_reject);
    json_t *extra =
        json_pack("{s:I,s:s,s:I,s:I}", "session", (json_int_t)id, "name",
                  ss.name, "accepted", (json_int_t)ss.n_accept, "rejected",
                  (json_int_t)ss.n_reject);
    st = td__suspects_list(a, run, f, note, verdict, extra);
  } else if (a->json) {
    printf("{\"session\": %lld, \"round\": %d, \"accepted\": %lld, "
           "\"rejected\": %lld}\n",
           (long long)id, round, (long long)ss.n_accept,
           (long long)ss.n_reject);
  }
  free(verdict);
  return st;
}
