/* GET /api/diagnosis[...] and /api/repair: what `tardis diagnose` wrote
 * under RUN/diagnosis/epoch_NNNN/ and what `tardis repair` wrote as
 * FIXED/repair.json (docs/repair.md), served read-only (docs/api.md). The
 * server never diagnoses: a diagnosis fits probes on the whole training
 * set, far too long for a request, so a run without one gets a 404 that
 * names the command to run. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/server_internal.h"
#include "tardis/alloc.h"
#include "tardis/fsutil.h"

/* The maps a diagnosis writes as .npy and .png (docs/repair.md); the only
 * names a request may ask for, which keeps every path inside the run. */
static const char *const map_names[] = {
    "probe_w",     "hm_correct", "hm_missed", "hm_wrong",
    "hm_confused", "dhm_under",  "dhm_over",
};
#define N_MAPS (sizeof map_names / sizeof *map_names)

/* The epoch of a directory named epoch_NNNN (as "%04d" writes it, nothing
 * else: the .tmp-PID and .old-PID directories of a diagnosis being written
 * do not count), else -1. */
static int diag_epoch_of(const char *name) {
  if (strncmp(name, "epoch_", 6) != 0)
    return -1;
  const char *d = name + 6;
  size_t n = strlen(d);
  int64_t v;
  if (n < 4 || strspn(d, "0123456789") != n || td__parse_i64(d, &v) ||
      v > INT_MAX)
    return -1;
  char canon[32]; /* the one spelling tardis diagnose writes: no extra 0s */
  snprintf(canon, sizeof canon, "%04d", (int)v);
  return strcmp(canon, d) ? -1 : (int)v;
}

static int diag_file(const td_server *s, int epoch, const char *file, char *buf,
                     size_t len, td_err *err) {
  return td_pathf(buf, len, err, "%s/diagnosis/epoch_%04d/%s", s->run_dir,
                  epoch, file);
}

static int cmp_int(const void *a, const void *b) {
  int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

/* GET /api/diagnosis: {"epochs": [...], "repaired": bool}: the diagnosed
 * epochs ascending (an empty list when the run has none), and whether the
 * run has a repair.json, so that a page asks for neither in vain. */
static enum MHD_Result diag_list(td_server *s, struct MHD_Connection *c) {
  char dir[TD_PATH_MAX], p[TD_PATH_MAX];
  td_err err;
  if (td_pathf(dir, sizeof dir, &err, "%s/diagnosis", s->run_dir))
    return td__reply_error(c, 500, "%s", err.msg);
  json_t *o = json_object(), *eps = json_array();
  int *v = NULL, n = 0, cap = 0;
  DIR *d = opendir(dir);
  if (!d && errno != ENOENT && errno != ENOTDIR) {
    json_decref(o);
    json_decref(eps);
    return td__reply_error(c, 500, "%s: cannot list the diagnoses", dir);
  }
  struct dirent *de;
  while (d && (de = readdir(d))) {
    int e = diag_epoch_of(de->d_name);
    if (e < 0 || diag_file(s, e, "diagnosis.json", p, sizeof p, NULL) ||
        !td_path_exists(p))
      continue;
    if (n == cap) {
      int *more = realloc(v, (size_t)(cap = cap ? 2 * cap : 16) * sizeof *v);
      if (!more) {
        closedir(d);
        free(v);
        json_decref(o);
        json_decref(eps);
        return td__reply_error(c, 500, "out of memory");
      }
      v = more;
    }
    v[n++] = e;
  }
  if (d)
    closedir(d);
  if (n)
    qsort(v, (size_t)n, sizeof *v, cmp_int);
  for (int i = 0; i < n; i++)
    json_array_append_new(eps, json_integer(v[i]));
  free(v);
  json_object_set_new(o, "epochs", eps);
  int repaired = !td_pathf(p, sizeof p, NULL, "%s/repair.json", s->run_dir) &&
                 td_path_exists(p);
  json_object_set_new(o, "repaired", json_boolean(repaired));
  return td__reply_json(c, 200, o);
}

/* Reads a JSON object file: 0 and *out, or an error reply queued into
 * *res (absent: 404 with `absent`; unreadable or not an object: 500 naming
 * the file). */
static int load_object(struct MHD_Connection *c, const char *path,
                       const char *absent, json_t **out, enum MHD_Result *res) {
  char *text = NULL;
  size_t len;
  td_err err;
  int rc = td_read_file(path, &text, &len, &err);
  if (rc) {
    *res = rc == TD_ENOENT ? td__reply_error(c, 404, "%s", absent)
                           : td__reply_error(c, 500, "%s", err.msg);
    return -1;
  }
  json_error_t je;
  json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
  td_free(text);
  if (!json_is_object(j)) {
    *res = td__reply_error(c, 500, "%s: %s", path,
                           j ? "not a JSON object" : je.text);
    json_decref(j);
    return -1;
  }
  *out = j;
  return 0;
}

/* What the page relies on in diagnosis.json; NULL when fine. */
static const char *diag_problem(const json_t *j, int epoch, int n_classes) {
  json_t *e = json_object_get(j, "epoch");
  if (!json_is_integer(e) || json_integer_value(e) != epoch)
    return "\"epoch\" is not the epoch of its directory";
  json_t *labels = json_object_get(j, "labels"), *conf, *row;
  if (!json_is_array(labels) || json_array_size(labels) != (size_t)n_classes)
    return "\"labels\" is not an array of one entry per class";
  conf = json_object_get(j, "confusion");
  if (!json_is_array(conf) || json_array_size(conf) != (size_t)n_classes)
    return "\"confusion\" is not a C x C array";
  size_t i;
  json_array_foreach(conf, i, row) {
    if (!json_is_array(row) || json_array_size(row) != (size_t)n_classes)
      return "\"confusion\" is not a C x C array";
  }
  if (!json_is_array(json_object_get(j, "probes")))
    return "\"probes\" is not an array";
  return NULL;
}

/* GET /api/diagnosis/{E}: diagnosis.json with "maps": the URL of each
 * heat-map PNG present. */
static enum MHD_Result diag_one(td_server *s, struct MHD_Connection *c,
                                const td_run *run, int epoch) {
  char p[TD_PATH_MAX], absent[TD_PATH_MAX + 160];
  td_err err;
  if (diag_file(s, epoch, "diagnosis.json", p, sizeof p, &err))
    return td__reply_error(c, 500, "%s", err.msg);
  snprintf(absent, sizeof absent,
           "no diagnosis of epoch %d (%s): run `tardis diagnose RUN "
           "--epoch %d`",
           epoch, p, epoch);
  json_t *j;
  enum MHD_Result res;
  if (load_object(c, p, absent, &j, &res))
    return res;
  const char *why = diag_problem(j, epoch, td_run_get_meta(run)->n_classes);
  if (why) {
    json_decref(j);
    return td__reply_error(c, 500, "%s: %s", p, why);
  }
  json_t *maps = json_object();
  for (size_t k = 0; k < N_MAPS; k++) {
    char f[64], url[96];
    snprintf(f, sizeof f, "%s.png", map_names[k]);
    if (diag_file(s, epoch, f, p, sizeof p, NULL) || !td_path_exists(p))
      continue;
    snprintf(url, sizeof url, "/api/diagnosis/%d/%s", epoch, f);
    json_object_set_new(maps, map_names[k], json_string(url));
  }
  json_object_set_new(j, "maps", maps);
  return td__reply_json(c, 200, j);
}

/* GET /api/diagnosis/{E}/{map}.png: the PNG as written, with an ETag (a
 * new diagnosis replaces the directory, so the inode changes with it). */
static enum MHD_Result diag_png(td_server *s, struct MHD_Connection *c,
                                int epoch, const char *file) {
  size_t k, fl = strlen(file);
  for (k = 0; k < N_MAPS; k++)
    if (fl == strlen(map_names[k]) + 4 &&
        !strncmp(file, map_names[k], fl - 4) && !strcmp(file + fl - 4, ".png"))
      break;
  if (k == N_MAPS)
    return td__reply_error(c, 404,
                           "no heat map '%.64s' (probe_w, hm_correct, "
                           "hm_missed, hm_wrong, hm_confused, dhm_under or "
                           "dhm_over, .png)",
                           file);
  char p[TD_PATH_MAX];
  td_err err;
  if (diag_file(s, epoch, file, p, sizeof p, &err))
    return td__reply_error(c, 500, "%s", err.msg);
  int fd = open(p, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0)
    return errno == ENOENT || errno == ENOTDIR
               ? td__reply_error(c, 404,
                                 "no diagnosis of epoch %d (%s): run "
                                 "`tardis diagnose RUN --epoch %d`",
                                 epoch, p, epoch)
               : td__reply_error(c, 500, "%s: cannot open", p);
  static const unsigned char sig[8] = {0x89, 'P',  'N',  'G',
                                       '\r', '\n', 0x1a, '\n'};
  unsigned char head[8];
  if (fstat(fd, &st) || !S_ISREG(st.st_mode) || pread(fd, head, 8, 0) != 8 ||
      memcmp(head, sig, 8)) {
    close(fd);
    return td__reply_error(c, 500, "%s: not a PNG file", p);
  }
  char etag[96];
  snprintf(etag, sizeof etag, "\"%llx-%llx-%llx-%lx\"",
           (unsigned long long)st.st_ino, (unsigned long long)st.st_size,
           (unsigned long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec);
  const char *inm =
      MHD_lookup_connection_value(c, MHD_HEADER_KIND, "If-None-Match");
  struct MHD_Response *r;
  unsigned status = MHD_HTTP_OK;
  if (inm && strstr(inm, etag)) {
    close(fd);
    r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    status = MHD_HTTP_NOT_MODIFIED;
  } else {
    r = MHD_create_response_from_fd((uint64_t)st.st_size, fd); /* owns fd */
    if (!r)
      close(fd);
  }
  if (!r)
    return MHD_NO;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "image/png");
  MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, etag);
  td__common_headers(r, "no-cache"); /* revalidated: cheap through the ETag */
  enum MHD_Result rc = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return rc;
}

enum MHD_Result td__diagnosis_get(td_server *s, struct MHD_Connection *c,
                                  const td_run *run, char **seg, int nseg) {
  if (nseg == 1)
    return diag_list(s, c);
  if (nseg > 3)
    return td__reply_error(c, 404, "no such route");
  int64_t v;
  if (td__parse_i64(seg[1], &v) || v < 0 || v > INT_MAX)
    return td__reply_error(c, 400, "bad epoch '%.32s'", seg[1]);
  if (nseg == 2)
    return diag_one(s, c, run, (int)v);
  return diag_png(s, c, (int)v, seg[2]);
}

/* What the page relies on in one round of repair.json; NULL when fine. */
static const char *round_problem(const json_t *rd, int64_t n_train) {
  if (!json_is_object(rd))
    return "not a JSON object";
  static const char *const ints[] = {"epoch_before", "epoch_after"};
  for (size_t i = 0; i < 2; i++) {
    json_t *e = json_object_get(rd, ints[i]);
    if (!json_is_integer(e) || json_integer_value(e) < 0)
      return i ? "\"epoch_after\" is not a non-negative integer"
               : "\"epoch_before\" is not a non-negative integer";
  }
  json_t *sel = json_object_get(rd, "selected"), *x;
  size_t i;
  if (!json_is_array(sel))
    return "\"selected\" is not an array";
  json_array_foreach(sel, i, x) {
    if (!json_is_integer(x) || json_integer_value(x) < 0 ||
        json_integer_value(x) >= n_train)
      return "\"selected\" holds something that is not a training index";
  }
  return NULL;
}

enum MHD_Result td__repair_get(td_server *s, struct MHD_Connection *c,
                               const td_run *run) {
  char p[TD_PATH_MAX], absent[TD_PATH_MAX + 160];
  td_err err;
  if (td_pathf(p, sizeof p, &err, "%s/repair.json", s->run_dir))
    return td__reply_error(c, 500, "%s", err.msg);
  snprintf(absent, sizeof absent,
           "not a repaired run: no %s (`tardis repair PARENT --out RUN` "
           "writes it)",
           p);
  json_t *j, *rounds, *rd;
  enum MHD_Result res;
  if (load_object(c, p, absent, &j, &res))
    return res;
  rounds = json_object_get(j, "rounds");
  if (!json_is_array(rounds)) {
    json_decref(j);
    return td__reply_error(c, 500, "%s: \"rounds\" is not an array", p);
  }
  size_t i;
  json_array_foreach(rounds, i, rd) {
    const char *why = round_problem(rd, td_run_n_train_all(run));
    if (why) {
      json_decref(j);
      return td__reply_error(c, 500, "%s: round %zu: %s", p, i + 1, why);
    }
  }
  return td__reply_json(c, 200, j);
}
