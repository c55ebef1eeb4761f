/* A small LRU of memory-mapped arrays, keyed by file path.
 *
 * Mappings cost address space, not memory, so the cache holds many (a
 * sample's trajectory touches every projected epoch). Each hit re-stats the
 * file: a re-projected epoch replaces its files, and the cache must not keep
 * serving the old mapping. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "server/server_internal.h"

static void entry_free(td__cache_entry *e) {
  td_array_close(&e->a);
  memset(e, 0, sizeof *e);
}

static int64_t mtime_ns(const struct stat *st) {
  return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

static int same_file(const td__cache_entry *e, const struct stat *st) {
  return e->dev == st->st_dev && e->ino == st->st_ino &&
         e->mtime_ns == mtime_ns(st) && e->size == st->st_size;
}

/* Slot for a new entry: a free one, else the least recently used idle one.
 * NULL when every slot is in use (the caller then loads uncached). */
static td__cache_entry *victim(td_server *s) {
  td__cache_entry *best = NULL;
  for (int i = 0; i < TD__CACHE_CAP; i++) {
    td__cache_entry *e = &s->cache[i];
    if (!e->key[0] && !e->stale)
      return e;
    if (e->refs == 0 && (!best || e->last_used < best->last_used))
      best = e;
  }
  if (best)
    entry_free(best);
  return best;
}

int td__cache_get(td_server *s, const char *path, int epoch, const char *name,
                  td__cache_entry **out, td_err *err) {
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
    return td_err_set(err, TD_ENOENT, "%s: no such file", path);
  if (strlen(path) >= sizeof s->cache[0].key)
    return td_err_set(err, TD_ERANGE, "%s: path too long", path);

  pthread_mutex_lock(&s->cache_mu);
  for (int i = 0; i < TD__CACHE_CAP; i++) {
    td__cache_entry *e = &s->cache[i];
    if (!e->key[0] || strcmp(e->key, path) != 0)
      continue;
    if (same_file(e, &st)) {
      e->refs++;
      e->last_used = ++s->tick;
      pthread_mutex_unlock(&s->cache_mu);
      *out = e;
      return TD_OK;
    }
    /* Changed on disk: retire it; users still holding it keep it alive. */
    e->key[0] = '\0';
    if (e->refs == 0)
      entry_free(e);
    else
      e->stale = 1;
  }
  pthread_mutex_unlock(&s->cache_mu);

  /* Load outside the lock: validation of a large array takes a while, and
   * two requests racing to load the same file merely both map it. */
  td_array a;
  int rc = name ? td_run_load_f32(s->run, epoch, name, &a, err)
                : td_npy_load(path, &a, err);
  if (rc)
    return rc;

  pthread_mutex_lock(&s->cache_mu);
  td__cache_entry *e = victim(s);
  if (!e) {
    pthread_mutex_unlock(&s->cache_mu);
    td_array_close(&a);
    return td_err_set(err, TD_ENOMEM, "array cache exhausted");
  }
  snprintf(e->key, sizeof e->key, "%s", path); /* length checked on entry */
  e->a = a;
  e->dev = st.st_dev;
  e->ino = st.st_ino;
  e->mtime_ns = mtime_ns(&st);
  e->size = st.st_size;
  e->refs = 1;
  e->last_used = ++s->tick;
  pthread_mutex_unlock(&s->cache_mu);
  *out = e;
  return TD_OK;
}

void td__cache_release(td_server *s, td__cache_entry *e) {
  if (!e)
    return;
  pthread_mutex_lock(&s->cache_mu);
  if (--e->refs == 0 && e->stale)
    entry_free(e);
  pthread_mutex_unlock(&s->cache_mu);
}

void td__cache_clear(td_server *s) {
  for (int i = 0; i < TD__CACHE_CAP; i++)
    entry_free(&s->cache[i]);
}
