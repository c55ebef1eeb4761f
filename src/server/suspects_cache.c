/* The server's suspects features and recommenders (docs/api.md, "Suspicious
 * samples"). Computing the features takes seconds on a large run the first
 * time, so a worker thread of the server computes them; request threads
 * only look at the result (or learn that it is being computed) and never
 * wait for it. The worker opens a run handle of its own, so it needs none
 * of the server's locks while it works. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_internal.h"
#include "tardis/suspects.h"

#define MAX_SESSIONS_CACHED 16

/* One recommender per session, kept across requests so it remembers which
 * score picked what; rebuilt when the features change. */
typedef struct rec_slot {
  int64_t session;
  td_recommender *rec;
  uint64_t used;
} rec_slot;

struct td__sus_cache {
  pthread_mutex_t mu;
  pthread_cond_t wake; /* the worker: a new generation, or stop */
  pthread_t worker;
  int started, stop;
  char *run_dir;
  /* want: the newest run generation a request saw; done: the generation
   * the worker last finished (0: none yet). */
  uint64_t want, done;
  int computing;
  /* The last computation's outcome: features (have) or an error (rc). */
  int have, rc;
  td_err err;
  td_sus_features f;
  char note[256];
  td_recommender *prior; /* for the session-less ranking */
  rec_slot slots[MAX_SESSIONS_CACHED];
  uint64_t tick;
};

static void drop_recs(td__sus_cache *c) {
  td_rec_free(c->prior);
  c->prior = NULL;
  for (int i = 0; i < MAX_SESSIONS_CACHED; i++) {
    td_rec_free(c->slots[i].rec);
    c->slots[i].rec = NULL;
  }
}

/* Features of the run as it is on disk now, and their prior recommender.
 * The features' own cache (RUN/vis/suspects-*) makes a recheck cheap. */
static int compute(const char *run_dir, td_sus_features *f, char *note,
                   td_recommender **prior, td_err *err) {
  td_run *run;
  memset(f, 0, sizeof *f);
  *prior = NULL;
  int rc = td_run_open(run_dir, &run, err);
  if (!rc)
    rc = td_sus_features_get(run, NULL, f, NULL, note, err);
  td_run_close(run);
  if (!rc)
    rc = td_rec_new(f, NULL, prior, err);
  if (rc)
    td_sus_features_close(f);
  return rc;
}

/* Installs a finished computation (c->mu held). Unchanged features keep
 * the recommenders, and with them what each session's ranking remembers. */
static void install(td__sus_cache *c, int rc, const td_err *err,
                    td_sus_features *f, const char *note,
                    td_recommender *prior) {
  if (rc) {
    drop_recs(c);
    td_sus_features_close(&c->f);
    c->have = 0;
    c->rc = rc;
    c->err = *err;
    return;
  }
  c->rc = 0;
  if (c->have && c->f.signature == f->signature) {
    td_sus_features_close(f);
    td_rec_free(prior);
    return;
  }
  drop_recs(c);
  td_sus_features_close(&c->f);
  c->f = *f;
  c->prior = prior;
  c->have = 1;
  snprintf(c->note, sizeof c->note, "%s", note); /* from a note[256] too */
}

static void *worker_main(void *arg) {
  td__sus_cache *c = arg;
  pthread_mutex_lock(&c->mu);
  while (!c->stop) {
    if (c->want == c->done) {
      pthread_cond_wait(&c->wake, &c->mu);
      continue;
    }
    uint64_t gen = c->want;
    c->computing = 1;
    pthread_mutex_unlock(&c->mu);
    td_sus_features f;
    td_recommender *prior;
    char note[256] = "";
    td_err err = {0};
    int rc = compute(c->run_dir, &f, note, &prior, &err);
    pthread_mutex_lock(&c->mu);
    install(c, rc, &err, &f, note, prior);
    c->computing = 0;
    c->done = gen;
  }
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

int td__sus_cache_new(const char *run_dir, td__sus_cache **out, td_err *err) {
  *out = NULL;
  td__sus_cache *c = calloc(1, sizeof *c);
  if (!c || !(c->run_dir = strdup(run_dir))) {
    free(c);
    return td_err_set(err, TD_ENOMEM, "out of memory");
  }
  pthread_mutex_init(&c->mu, NULL);
  pthread_cond_init(&c->wake, NULL);
  if (pthread_create(&c->worker, NULL, worker_main, c) != 0) {
    td__sus_cache_free(c);
    return td_err_set(err, TD_EIO, "cannot start the suspects worker thread");
  }
  c->started = 1;
  *out = c;
  return TD_OK;
}

void td__sus_cache_free(td__sus_cache *c) {
  if (!c)
    return;
  if (c->started) {
    /* A computation under way is finished first (it cannot be cut short). */
    pthread_mutex_lock(&c->mu);
    c->stop = 1;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->worker, NULL);
  }
  drop_recs(c);
  td_sus_features_close(&c->f);
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->wake);
  free(c->run_dir);
  free(c);
}

int td__sus_cache_lock(td__sus_cache *c, uint64_t gen,
                       const td_sus_features **f, const char **note, int *rc,
                       td_err *err) {
  pthread_mutex_lock(&c->mu);
  if (gen != c->want && gen != 0) {
    c->want = gen;
    pthread_cond_signal(&c->wake);
  }
  if (c->have) { /* possibly being rechecked: the last result meanwhile */
    *f = &c->f;
    *note = c->note;
    return TD__SUS_READY;
  }
  int st = TD__SUS_COMPUTING;
  if (c->rc && c->done == c->want) {
    st = TD__SUS_FAILED;
    *rc = c->rc;
    *err = c->err;
  }
  pthread_mutex_unlock(&c->mu);
  return st;
}

td_recommender *td__sus_cache_rec(td__sus_cache *c, int64_t session,
                                  td_err *err) {
  if (session <= 0)
    return c->prior;
  rec_slot *lru = &c->slots[0];
  for (int i = 0; i < MAX_SESSIONS_CACHED; i++) {
    rec_slot *s = &c->slots[i];
    if (s->rec && s->session == session) {
      s->used = ++c->tick;
      return s->rec;
    }
    if (!s->rec || (lru->rec && s->used < lru->used))
      lru = s;
  }
  td_rec_free(lru->rec);
  lru->rec = NULL;
  if (td_rec_new(&c->f, NULL, &lru->rec, err))
    return NULL;
  lru->session = session;
  lru->used = ++c->tick;
  return lru->rec;
}

void td__sus_cache_unlock(td__sus_cache *c) { pthread_mutex_unlock(&c->mu); }
