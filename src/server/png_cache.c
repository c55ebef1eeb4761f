/* The territory PNGs of /api/epochs/N/territory.png, kept while their files
 * are unchanged: drawing one at ?size=4096 costs about a second of CPU, and
 * every open page asks for the same few. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "server/server_internal.h"
#include "tardis/fsutil.h"

/* What the PNG was drawn from: the three files of the territory. */
static int stamp_of(const char *dir, uint64_t *out) {
  static const char *const files[] = {"territory.json", "territory_class.npy",
                                      "territory_conf.npy"};
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    char p[TD_PATH_MAX];
    struct stat st;
    if (td_path_join(p, sizeof p, dir, files[i]) || stat(p, &st) != 0)
      return -1;
    uint64_t v[4] = {(uint64_t)st.st_ino, (uint64_t)st.st_size,
                     (uint64_t)st.st_mtim.tv_sec, (uint64_t)st.st_mtim.tv_nsec};
    for (int k = 0; k < 4; k++)
      h = (h ^ v[k]) * 1099511628211ull;
  }
  *out = h;
  return 0;
}

int td__png_cache_get(td_server *s, const char *dir, int size, void **png,
                      size_t *len) {
  uint64_t stamp;
  if (stamp_of(dir, &stamp))
    return 0;
  int hit = 0;
  pthread_mutex_lock(&s->png_mu);
  for (int i = 0; i < TD__PNG_CACHE_CAP && !hit; i++) {
    td__png_entry *e = &s->pngs[i];
    if (e->png && e->size == size && e->stamp == stamp &&
        !strcmp(e->dir, dir)) {
      *png = malloc(e->len);
      if (*png) {
        memcpy(*png, e->png, e->len);
        *len = e->len;
        e->last_used = ++s->png_tick;
        hit = 1;
      }
    }
  }
  pthread_mutex_unlock(&s->png_mu);
  return hit;
}

void td__png_cache_put(td_server *s, const char *dir, int size, const void *png,
                       size_t len) {
  uint64_t stamp;
  if (strlen(dir) >= sizeof s->pngs[0].dir || stamp_of(dir, &stamp))
    return;
  void *copy = malloc(len);
  if (!copy)
    return;
  memcpy(copy, png, len);
  pthread_mutex_lock(&s->png_mu);
  /* the same picture drawn again from newer files, else a free slot, else
   * the least recently used */
  td__png_entry *slot = NULL, *lru = &s->pngs[0];
  for (int i = 0; i < TD__PNG_CACHE_CAP && !slot; i++) {
    td__png_entry *e = &s->pngs[i];
    if (e->png && e->size == size && !strcmp(e->dir, dir))
      slot = e;
    else if (!e->png || (lru->png && e->last_used < lru->last_used))
      lru = e;
  }
  if (!slot)
    slot = lru;
  free(slot->png);
  strcpy(slot->dir, dir); /* fits: checked above */
  slot->size = size;
  slot->stamp = stamp;
  slot->png = copy;
  slot->len = len;
  slot->last_used = ++s->png_tick;
  pthread_mutex_unlock(&s->png_mu);
}

void td__png_cache_clear(td_server *s) {
  for (int i = 0; i < TD__PNG_CACHE_CAP; i++) {
    free(s->pngs[i].png);
    s->pngs[i].png = NULL;
  }
}
