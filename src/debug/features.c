/* Per-sample features of suspicious samples (DESIGN §3.8): training
 * dynamics from the recorded logits, trajectory rarity from the projection,
 * and their cache under RUN/vis/. */
#include <dirent.h>
#include <float.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/json_file.h"
#include "tardis/alloc.h"
#include "tardis/fsutil.h"
#include "tardis/kmeans.h"
#include "tardis/knn.h"
#include "tardis/suspects.h"
#include "tardis/vis.h"

/* Bumped whenever the features' definition changes, so old caches die. */
#define FEATURES_VERSION 3

static const char *const feature_names[TD_SUS_FEATURE_COUNT] = {
    "rarity_pos", "rarity_vel",   "rarity_acc",  "uncertainty", "aum",
    "loss",       "confidence",   "variability", "forgetting",  "early_aum",
    "first_fit",  "knn_disagree", "early_class"};

const char *td_sus_feature_name(int f) {
  return f >= 0 && f < TD_SUS_FEATURE_COUNT ? feature_names[f] : "?";
}

int td_sus_feature_sign(int f) {
  return f == TD_SUS_AUM || f == TD_SUS_CONFIDENCE || f == TD_SUS_EARLY_AUM ? -1
                                                                            : 1;
}

int td_sus_feature_is_score(int f) {
  return f >= 0 && f < TD_SUS_FEATURE_COUNT && f != TD_SUS_EARLY_CLASS;
}

void td_sus_opts_default(td_sus_opts *o) {
  o->method = NULL;
  o->clusters = 30;
  o->max_iter = 50;
  o->seed = 1;
}

void td_sus_features_close(td_sus_features *f) {
  if (!f)
    return;
  free(f->x);
  free(f->labels);
  free(f->nbr);
  free(f->traj_epochs);
  for (int i = 0; i < TD_SUS_FAM_COUNT; i++) {
    free(f->fam[i].centroids);
    free(f->fam[i].radius);
    free(f->fam[i].size);
  }
  memset(f, 0, sizeof *f);
}

static float sqdist(const float *a, const float *b, int dim) {
  float s = 0;
  for (int d = 0; d < dim; d++)
    s += (a[d] - b[d]) * (a[d] - b[d]);
  return s;
}

/* ---- training dynamics -------------------------------------------------- */

typedef struct dyn_acc {
  double *aum, *loss, *p, *p2;
  double *early_aum, *early_p; /* [n], [n, C] over the first E epochs */
  int32_t *forget, *last_wrong;
  uint8_t *prev_ok, *ever_ok;
} dyn_acc;

/* Adds one epoch's logits (and recorded loss, when given). */
static void dyn_add(dyn_acc *d, const float *z, const float *loss,
                    const int32_t *y, int64_t n, int C, int t, int early,
                    float *unc) {
  int first = t == 0;
  for (int64_t i = 0; i < n; i++) {
    const float *zi = z + i * C;
    int lab = y[i], arg = 0;
    float other = -FLT_MAX;
    for (int c = 0; c < C; c++) {
      if (zi[c] > zi[arg])
        arg = c;
      if (c != lab && zi[c] > other)
        other = zi[c];
    }
    double s = 0;
    for (int c = 0; c < C; c++)
      s += exp((double)zi[c] - (double)zi[arg]);
    double logp = (double)zi[lab] - (double)zi[arg] - log(s);
    double p = exp(logp);
    d->aum[i] += (double)zi[lab] - (double)other;
    if (early) {
      d->early_aum[i] += (double)zi[lab] - (double)other;
      for (int c = 0; c < C; c++)
        d->early_p[i * C + c] += exp((double)zi[c] - (double)zi[arg]) / s;
    }
    d->loss[i] += loss ? (double)loss[i] : -logp;
    d->p[i] += p;
    d->p2[i] += p * p;
    uint8_t ok = arg == lab;
    if (!first && d->prev_ok[i] && !ok)
      d->forget[i]++;
    d->prev_ok[i] = ok;
    d->ever_ok[i] |= ok;
    if (!ok)
      d->last_wrong[i] = t;
    if (unc)
      unc[i] = (float)(1.0 - 1.0 / s);
  }
}

/* The early window: the first ⌈T/4⌉ epochs. */
static int early_epochs(int T) { return T < 4 ? 1 : (T + 3) / 4; }

/* knn_disagree: the share of each sample's 10 nearest training
 * representations at the last epoch of the early window whose label differs
 * from its own, among a fixed reference of at most 10,000 rows (every
 * n/10,000-th sample; the sample itself is skipped). */
static int knn_disagree(const td_run *run, td_sus_features *f, td_err *err) {
  enum { K = 10, REF_MAX = 10000 };
  const td_run_meta *m = td_run_get_meta(run);
  int64_t n = f->n, step = n > REF_MAX ? (n + REF_MAX - 1) / REF_MAX : 1;
  int64_t nr = (n + step - 1) / step;
  int d = m->repr_dim, k = nr - 1 < K ? (int)nr - 1 : K;
  int T = td_run_n_epochs(run);
  if (k < 1)
    return TD_OK;
  td_array r;
  int rc = td_run_load_f32(run, td_run_epoch_number(run, early_epochs(T) - 1),
                           "train_repr", &r, err);
  if (rc)
    return rc;
  float *ref = malloc(sizeof *ref * (size_t)nr * (size_t)d);
  if (!ref) {
    td_array_close(&r);
    return td_err_set(err, TD_ENOMEM, "features: out of memory");
  }
  const float *x = r.data;
  for (int64_t j = 0; j < nr; j++)
    memcpy(ref + j * d, x + j * step * d, sizeof *ref * (size_t)d);
  td_knn g;
  rc = td_knn_query_exact(ref, nr, x, n, d, k + 1, &g, err);
  free(ref);
  td_array_close(&r);
  if (rc)
    return rc;
  const int32_t *y = td_run_train_labels(run);
  f->nbr = malloc(sizeof *f->nbr * (size_t)n * K);
  if (!f->nbr) {
    td_knn_free(&g);
    return td_err_set(err, TD_ENOMEM, "features: out of memory");
  }
  f->nbr_k = K;
  for (int64_t i = 0; i < n; i++) {
    int got = 0, other = 0;
    for (int t = 0; t <= k && got < k; t++) {
      int64_t nb = (int64_t)g.idx[i * (k + 1) + t] * step;
      if (nb == i)
        continue;
      other += y[nb] != y[i];
      f->nbr[i * K + got++] = (int32_t)nb;
    }
    for (int t = got; t < K; t++)
      f->nbr[i * K + t] = -1;
    f->x[i * TD_SUS_FEATURE_COUNT + TD_SUS_KNN_DISAGREE] =
        (float)other / (float)got;
  }
  td_knn_free(&g);
  return TD_OK;
}

static int dynamics(const td_run *run, td_sus_features *f, td_err *err) {
  const td_run_meta *m = td_run_get_meta(run);
  int64_t n = m->n_train;
  int T = td_run_n_epochs(run), C = m->n_classes;
  if (T < 1)
    return td_err_set(err, TD_ESTATE, "%s: the run has no epochs yet",
                      td_run_dir(run));
  dyn_acc d = {0};
  d.aum = calloc((size_t)n, sizeof(double));
  d.loss = calloc((size_t)n, sizeof(double));
  d.p = calloc((size_t)n, sizeof(double));
  d.p2 = calloc((size_t)n, sizeof(double));
  d.forget = calloc((size_t)n, sizeof(int32_t));
  d.last_wrong = malloc((size_t)n * sizeof(int32_t));
  d.early_aum = calloc((size_t)n, sizeof(double));
  d.early_p = calloc((size_t)n * (size_t)C, sizeof(double));
  d.prev_ok = calloc((size_t)n, 1);
  d.ever_ok = calloc((size_t)n, 1);
  float *unc = malloc((size_t)n * sizeof *unc);
  int rc = TD_OK;
  if (!d.aum || !d.loss || !d.p || !d.p2 || !d.forget || !d.prev_ok ||
      !d.ever_ok || !unc || !d.last_wrong || !d.early_aum || !d.early_p)
    rc = td_err_set(err, TD_ENOMEM, "features: out of memory");
  for (int64_t i = 0; !rc && i < n; i++)
    d.last_wrong[i] = -1;
  int E = early_epochs(T);
  const int32_t *y = td_run_train_labels(run);
  for (int t = 0; t < T && !rc; t++) {
    int ep = td_run_epoch_number(run, t);
    td_array z = {0}, l = {0};
    rc = td_run_load_f32(run, ep, "train_logits", &z, err);
    if (rc)
      break;
    const float *lp = NULL;
    if (td_run_has(run, ep, "train_loss") &&
        td_run_load_f32(run, ep, "train_loss", &l, NULL) == TD_OK &&
        l.ndim == 1 && l.shape[0] == n && l.dtype == TD_F32)
      lp = l.data;
    dyn_add(&d, z.data, lp, y, n, C, t, t < E, t == T - 1 ? unc : NULL);
    td_array_close(&z);
    td_array_close(&l);
  }
  if (!rc) {
    int32_t maxf = 0;
    for (int64_t i = 0; i < n; i++)
      if (d.ever_ok[i] && d.forget[i] > maxf)
        maxf = d.forget[i];
    for (int64_t i = 0; i < n; i++) {
      float *xi = f->x + i * TD_SUS_FEATURE_COUNT;
      double mp = d.p[i] / T, var = d.p2[i] / T - mp * mp;
      xi[TD_SUS_UNCERTAINTY] = unc[i];
      xi[TD_SUS_AUM] = (float)(d.aum[i] / T);
      xi[TD_SUS_LOSS] = (float)(d.loss[i] / T);
      xi[TD_SUS_CONFIDENCE] = (float)mp;
      xi[TD_SUS_VARIABILITY] = (float)sqrt(var > 0 ? var : 0);
      /* Never learned is worse than any number of forgettings. */
      xi[TD_SUS_FORGETTING] = (float)(d.ever_ok[i] ? d.forget[i] : maxf + 1);
      xi[TD_SUS_EARLY_AUM] = (float)(d.early_aum[i] / E);
      xi[TD_SUS_FIRST_FIT] = (float)(d.last_wrong[i] + 1) / (float)T;
      int ec = 0;
      for (int c = 1; c < C; c++)
        ec = d.early_p[i * C + c] > d.early_p[i * C + ec] ? c : ec;
      xi[TD_SUS_EARLY_CLASS] = (float)ec;
    }
    f->n_epochs = T;
  }
  free(d.aum);
  free(d.loss);
  free(d.p);
  free(d.p2);
  free(d.forget);
  free(d.last_wrong);
  free(d.early_aum);
  free(d.early_p);
  free(d.prev_ok);
  free(d.ever_ok);
  free(unc);
  return rc;
}

/* ---- trajectories ------------------------------------------------------- */

/* "" when it does not fit: read as absent. */
static void emb_path(const td_run *run, const char *method, int ep,
                     const char *split, char *buf, size_t len) {
  char file[64];
  snprintf(file, sizeof file, "%.16s_embedding.npy", split);
  if (td_vis_epoch_path(td_run_dir(run), method, ep, file, buf, len, NULL))
    buf[0] = '\0';
}

/* The last ⌊2T/3⌋ recorded epochs (at least 3, at most T). */
static void window_of(const td_run *run, int *first, int *count) {
  int T = td_run_n_epochs(run), L = 2 * T / 3;
  if (L < 3)
    L = T < 3 ? T : 3;
  *first = T - L;
  *count = L;
}

/* Projected epochs of the window for a method; eps may be NULL. */
static int covered(const td_run *run, const char *method, int *eps) {
  int first, count, m = 0;
  window_of(run, &first, &count);
  for (int t = first; t < first + count; t++) {
    int ep = td_run_epoch_number(run, t);
    char p[TD_PATH_MAX];
    emb_path(run, method, ep, "train", p, sizeof p);
    if (td_path_exists(p)) {
      if (eps)
        eps[m] = ep;
      m++;
    }
  }
  return m;
}

/* Picks the method whose projection covers most of the window (dvi, then
 * pca, then others on ties); "" when none covers 3 epochs. */
static void pick_method(const td_run *run, const char *want, char *out,
                        char *note) {
  out[0] = '\0';
  if (want && !strcmp(want, "none")) {
    if (note)
      snprintf(note, 256, "trajectory features off (--method none)");
    return;
  }
  if (want) {
    if (strlen(want) > 32) { /* out holds 32 bytes; a cut name is another */
      if (note)
        snprintf(note, 256,
                 "projection name '%.32s...' is over 32 bytes: "
                 "trajectory features left out",
                 want);
      return;
    }
    if (covered(run, want, NULL) >= 3)
      snprintf(out, 33, "%s", want);
    else if (note)
      snprintf(note, 256,
               "projection '%s' covers fewer than 3 of the last epochs: "
               "trajectory features left out (tardis project RUN --method %s)",
               want, want);
    return;
  }
  char vis[TD_PATH_MAX];
  if (td_vis_root(td_run_dir(run), vis, sizeof vis, NULL))
    vis[0] = '\0'; /* too long: only dvi and pca are tried */
  int best = 0;
  const char *pref[] = {"dvi", "pca"};
  for (int i = 0; i < 2; i++) {
    int c = covered(run, pref[i], NULL);
    if (c > best) {
      best = c;
      snprintf(out, 33, "%s", pref[i]);
    }
  }
  DIR *d = opendir(vis);
  struct dirent *de;
  while (d && (de = readdir(d))) {
    if (de->d_name[0] == '.' || strlen(de->d_name) > 32)
      continue;
    int c = covered(run, de->d_name, NULL);
    if (c > best) {
      best = c;
      snprintf(out, 33, "%.32s", de->d_name);
    }
  }
  if (d)
    closedir(d);
  if (best < 3) {
    out[0] = '\0';
    if (note)
      snprintf(note, 256,
               "no projection covers 3 of the last epochs: trajectory "
               "features left out (tardis project RUN --method pca is fast)");
  }
}

static int fam_dim(int fam, int n_traj) { return 2 * (n_traj - fam); }

int td_sus_trajectories(const td_run *run, const td_sus_features *f,
                        const char *split, int64_t m,
                        float *fam[TD_SUS_FAM_COUNT], td_err *err) {
  int P = f->n_traj;
  for (int k = 0; k < TD_SUS_FAM_COUNT; k++)
    fam[k] = NULL;
  if (!f->has_trajectory || P < 3)
    return td_err_set(err, TD_ESTATE, "no trajectory window");
  float *pos = malloc((size_t)m * (size_t)(2 * P) * sizeof *pos);
  if (!pos)
    return td_err_set(err, TD_ENOMEM, "trajectories: out of memory");
  for (int w = 0; w < P; w++) {
    td_array e;
    int rc = td_vis_load_embedding(td_run_dir(run), f->method,
                                   f->traj_epochs[w], split, m, &e, err);
    if (rc) {
      free(pos);
      return rc;
    }
    const float *y = e.data;
    for (int64_t i = 0; i < m; i++) {
      pos[i * 2 * P + 2 * w] = y[2 * i];
      pos[i * 2 * P + 2 * w + 1] = y[2 * i + 1];
    }
    td_array_close(&e);
  }
  float *vel = malloc((size_t)m * (size_t)fam_dim(1, P) * sizeof *vel);
  float *acc = malloc((size_t)m * (size_t)fam_dim(2, P) * sizeof *acc);
  if (!vel || !acc) {
    free(pos);
    free(vel);
    free(acc);
    return td_err_set(err, TD_ENOMEM, "trajectories: out of memory");
  }
  int dv = fam_dim(1, P), da = fam_dim(2, P);
  for (int64_t i = 0; i < m; i++) {
    const float *pi = pos + i * 2 * P;
    float *vi = vel + i * dv, *ai = acc + i * da;
    for (int j = 0; j < dv; j++)
      vi[j] = pi[j + 2] - pi[j];
    for (int j = 0; j < da; j++)
      ai[j] = vi[j + 2] - vi[j];
  }
  fam[0] = pos;
  fam[1] = vel;
  fam[2] = acc;
  return TD_OK;
}

static int trajectory_rarity(const td_run *run, const td_sus_opts *o,
                             td_sus_features *f, td_err *err) {
  int64_t n = f->n;
  float *fam[TD_SUS_FAM_COUNT];
  int rc = td_sus_trajectories(run, f, "train", n, fam, err);
  if (rc)
    return rc;
  int32_t *as = malloc((size_t)n * sizeof *as);
  if (!as)
    rc = td_err_set(err, TD_ENOMEM, "features: out of memory");
  for (int k = 0; k < TD_SUS_FAM_COUNT && !rc; k++) {
    td_sus_clusters *c = &f->fam[k];
    c->dim = fam_dim(k, f->n_traj);
    c->k = o->clusters < n ? o->clusters : (int)n;
    c->centroids = malloc((size_t)c->k * (size_t)c->dim * sizeof(float));
    c->radius = calloc((size_t)c->k, sizeof(float));
    c->size = calloc((size_t)c->k, sizeof(int64_t));
    if (!c->centroids || !c->radius || !c->size) {
      rc = td_err_set(err, TD_ENOMEM, "features: out of memory");
      break;
    }
    rc = td_kmeans(fam[k], n, c->dim, c->k, o->max_iter, o->seed + (uint64_t)k,
                   c->centroids, as, err);
    if (rc)
      break;
    for (int64_t i = 0; i < n; i++) {
      c->size[as[i]]++;
      float d = sqrtf(sqdist(fam[k] + i * c->dim,
                             c->centroids + (int64_t)as[i] * c->dim, c->dim));
      if (d > c->radius[as[i]])
        c->radius[as[i]] = d;
    }
    for (int64_t i = 0; i < n; i++)
      f->x[i * TD_SUS_FEATURE_COUNT + TD_SUS_RARITY_POS + k] =
          (float)(1.0 - (double)c->size[as[i]] / (double)n);
  }
  free(as);
  for (int k = 0; k < TD_SUS_FAM_COUNT; k++)
    free(fam[k]);
  return rc;
}

int64_t td_sus_abnormal(const td_sus_clusters *c, int64_t n_train,
                        const float *traj, int64_t m, uint8_t *abnormal) {
  int64_t count = 0;
  for (int64_t i = 0; i < m; i++) {
    const float *t = traj + i * c->dim;
    int best = 0, inside = 0;
    float bd = FLT_MAX;
    for (int j = 0; j < c->k; j++) {
      float d = sqrtf(sqdist(t, c->centroids + (int64_t)j * c->dim, c->dim));
      if (d <= c->radius[j])
        inside = 1;
      if (d < bd) {
        bd = d;
        best = j;
      }
    }
    int ab = !inside || (double)c->size[best] < 0.02 * (double)n_train;
    abnormal[i] = (uint8_t)ab;
    count += ab;
  }
  return count;
}

/* ---- the whole computation ---------------------------------------------- */

static int copy_labels(const td_run *run, td_sus_features *f);

int td_sus_features_compute(const td_run *run, const td_sus_opts *o,
                            td_sus_features *out, char *note, td_err *err) {
  td_sus_opts def;
  if (!o) {
    td_sus_opts_default(&def);
    o = &def;
  }
  if (note)
    note[0] = '\0';
  memset(out, 0, sizeof *out);
  const td_run_meta *m = td_run_get_meta(run);
  out->n = m->n_train;
  out->x = calloc((size_t)out->n * TD_SUS_FEATURE_COUNT, sizeof(float));
  if (!out->x)
    return td_err_set(err, TD_ENOMEM, "features: out of memory");
  int rc = dynamics(run, out, err);
  if (!rc)
    rc = knn_disagree(run, out, err);
  if (!rc && copy_labels(run, out))
    rc = td_err_set(err, TD_ENOMEM, "features: out of memory");
  if (!rc) {
    pick_method(run, o->method, out->method, note);
    if (out->method[0]) {
      int first, count;
      window_of(run, &first, &count);
      out->traj_epochs = malloc((size_t)count * sizeof(int));
      if (!out->traj_epochs)
        rc = td_err_set(err, TD_ENOMEM, "features: out of memory");
      else
        out->n_traj = covered(run, out->method, out->traj_epochs);
      out->has_trajectory = 1;
      if (!rc)
        rc = trajectory_rarity(run, o, out, err);
    }
  }
  if (rc)
    td_sus_features_close(out);
  return rc;
}

/* ---- cache -------------------------------------------------------------- */

static uint64_t fnv(uint64_t h, const void *p, size_t len) {
  const unsigned char *b = p;
  for (size_t i = 0; i < len; i++) {
    h ^= b[i];
    h *= 1099511628211ULL;
  }
  return h;
}

static uint64_t fnv_file(uint64_t h, const char *path) {
  struct stat st;
  int64_t v[3] = {0, 0, 0};
  if (stat(path, &st) == 0) {
    v[0] = (int64_t)st.st_size;
    v[1] = (int64_t)st.st_mtim.tv_sec;
    v[2] = (int64_t)st.st_mtim.tv_nsec;
  }
  return fnv(h, v, sizeof v);
}

/* run.json by content: it is small, and a copy that keeps size and mtime
 * (cp -p over an edited class list) must still change the signature. */
static uint64_t fnv_file_content(uint64_t h, const char *path) {
  char *text = NULL;
  size_t len = 0;
  if (td_read_file(path, &text, &len, NULL) != TD_OK)
    return fnv(h, "", 1);
  h = fnv(h, text, len);
  td_free(text);
  return h;
}

/* What the features depend on: run.json (classes), epochs, their logits
 * and losses, the projection files of the window and the options. */
static uint64_t signature(const td_run *run, const td_sus_opts *o,
                          const char *method) {
  uint64_t h = 1469598103934665603ULL;
  int v[4] = {FEATURES_VERSION, o->clusters, o->max_iter, td_run_n_epochs(run)};
  h = fnv(h, v, sizeof v);
  h = fnv(h, &o->seed, sizeof o->seed);
  h = fnv(h, method, strlen(method) + 1);
  /* A path that does not fit is "" and hashes as a missing file. */
  static const char *const files[] = {"train_logits.npy", "train_loss.npy"};
  char p[TD_PATH_MAX], dir[TD_PATH_MAX];
  if (td_pathf(p, sizeof p, NULL, "%s/run.json", td_run_dir(run)))
    p[0] = '\0';
  h = fnv_file_content(h, p);
  if (td_pathf(p, sizeof p, NULL, "%s/train_labels.npy", td_run_dir(run)))
    p[0] = '\0';
  h = fnv_file(h, p);
  for (int t = 0; t < td_run_n_epochs(run); t++) {
    int ep = td_run_epoch_number(run, t);
    h = fnv(h, &ep, sizeof ep);
    int bad = td_run_epoch_path(run, ep, dir, sizeof dir) != TD_OK;
    for (int i = 0; i < 2; i++) {
      if (bad || td_pathf(p, sizeof p, NULL, "%s/%s", dir, files[i]))
        p[0] = '\0';
      h = fnv_file(h, p);
    }
  }
  if (method[0]) {
    int first, count;
    window_of(run, &first, &count);
    for (int t = first; t < first + count; t++) {
      emb_path(run, method, td_run_epoch_number(run, t), "train", p, sizeof p);
      h = fnv_file(h, p);
    }
  }
  return h;
}

static void cache_paths(const td_run *run, const char *method, char *npy,
                        char *js, char *nbr, size_t len) {
  const char *m = method[0] ? method : "none";
  /* On failure a path is "", which the callers read as "no cache". */
  if (td_vis_suspects_path(td_run_dir(run), m, "npy", npy, len, NULL) ||
      td_vis_suspects_path(td_run_dir(run), m, "json", js, len, NULL) ||
      td_vis_suspects_path(td_run_dir(run), m, "nbr.npy", nbr, len, NULL))
    npy[0] = js[0] = nbr[0] = '\0';
}

static json_t *floats_json(const float *v, int64_t n) {
  json_t *a = json_array();
  for (int64_t i = 0; i < n; i++)
    json_array_append_new(a, json_real((double)v[i]));
  return a;
}

static void cache_write(const td_run *run, const td_sus_features *f) {
  char npy[TD_PATH_MAX], js[TD_PATH_MAX], nbr[TD_PATH_MAX], sig[32];
  cache_paths(run, f->method, npy, js, nbr, sizeof npy);
  char vis[TD_PATH_MAX];
  if (!npy[0] || !js[0] ||
      td_vis_root(td_run_dir(run), vis, sizeof vis, NULL) ||
      td_mkdirs(vis, NULL))
    return;
  int64_t shape[2] = {f->n, TD_SUS_FEATURE_COUNT};
  if (td_npy_save_raw(npy, TD_F32, 2, shape, f->x, NULL))
    return;
  int64_t nshape[2] = {f->n, f->nbr_k};
  if (f->nbr && td_npy_save_raw(nbr, TD_I32, 2, nshape, f->nbr, NULL))
    return;
  snprintf(sig, sizeof sig, "%016llx", (unsigned long long)f->signature);
  json_t *o = json_object(), *eps = json_array(), *fams = json_array(),
         *names = json_array();
  for (int i = 0; i < TD_SUS_FEATURE_COUNT; i++)
    json_array_append_new(names, json_string(feature_names[i]));
  for (int i = 0; i < f->n_traj; i++)
    json_array_append_new(eps, json_integer(f->traj_epochs[i]));
  for (int k = 0; f->has_trajectory && k < TD_SUS_FAM_COUNT; k++) {
    const td_sus_clusters *c = &f->fam[k];
    json_t *sz = json_array();
    for (int j = 0; j < c->k; j++)
      json_array_append_new(sz, json_integer(c->size[j]));
    json_array_append_new(
        fams, json_pack("{s:i,s:i,s:o,s:o,s:o}", "k", c->k, "dim", c->dim,
                        "centroids",
                        floats_json(c->centroids, (int64_t)c->k * c->dim),
                        "radius", floats_json(c->radius, c->k), "size", sz));
  }
  json_object_set_new(o, "signature", json_string(sig));
  json_object_set_new(o, "features", names);
  json_object_set_new(o, "n", json_integer(f->n));
  json_object_set_new(o, "method", json_string(f->method));
  json_object_set_new(o, "has_trajectory", json_boolean(f->has_trajectory));
  json_object_set_new(o, "n_epochs", json_integer(f->n_epochs));
  json_object_set_new(o, "nbr_k", json_integer(f->nbr ? f->nbr_k : 0));
  json_object_set_new(o, "traj_epochs", eps);
  json_object_set_new(o, "clusters", fams);
  char *txt = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  /* The cache is best-effort: without its JSON half the next call finds no
   * valid cache and recomputes. */
  if (txt && td_write_file_atomic(js, txt, strlen(txt), NULL)) {
  }
  free(txt);
}

static int floats_from(json_t *a, float *out, int64_t n) {
  if (!json_is_array(a) || (int64_t)json_array_size(a) != n)
    return -1;
  for (int64_t i = 0; i < n; i++) {
    json_t *v = json_array_get(a, (size_t)i);
    if (!json_is_number(v))
      return -1;
    out[i] = (float)json_number_value(v);
  }
  return 0;
}

/* The neighbour lists of a cache entry: int32 [n, k], each index −1 or a
 * sample. */
static int nbr_read(const char *path, int64_t n, int k, td_sus_features *f) {
  td_array a = {0};
  int ok = td_npy_load(path, &a, NULL) == TD_OK && a.dtype == TD_I32 &&
           a.ndim == 2 && a.shape[0] == n && a.shape[1] == k;
  const int32_t *v = ok ? a.data : NULL;
  for (int64_t i = 0; ok && i < n * k; i++)
    ok = v[i] >= -1 && v[i] < n;
  if (ok && (f->nbr = malloc(a.nbytes ? a.nbytes : 1)) != NULL) {
    memcpy(f->nbr, v, a.nbytes);
    f->nbr_k = k;
  } else {
    ok = 0;
  }
  td_array_close(&a);
  return ok ? 0 : -1;
}

/* Reads a cache entry; any mismatch is a miss (returns -1). */
static int cache_read(const td_run *run, const char *method, uint64_t sig,
                      td_sus_features *f) {
  char npy[TD_PATH_MAX], js[TD_PATH_MAX], nbr[TD_PATH_MAX], want[32];
  cache_paths(run, method, npy, js, nbr, sizeof npy);
  json_t *o = td__json_load_file(js, 0, NULL);
  if (!o)
    return -1;
  snprintf(want, sizeof want, "%016llx", (unsigned long long)sig);
  const char *s = json_string_value(json_object_get(o, "signature"));
  int64_t n = td_run_get_meta(run)->n_train;
  json_t *eps = json_object_get(o, "traj_epochs"),
         *fams = json_object_get(o, "clusters");
  int ok = s && !strcmp(s, want) &&
           json_integer_value(json_object_get(o, "n")) == n &&
           json_is_array(eps) && json_is_array(fams);
  memset(f, 0, sizeof *f);
  td_array a = {0};
  if (ok && td_npy_load(npy, &a, NULL) == TD_OK && a.dtype == TD_F32 &&
      a.ndim == 2 && a.shape[0] == n && a.shape[1] == TD_SUS_FEATURE_COUNT) {
    f->n = n;
    f->x = malloc(a.nbytes);
    ok = f->x != NULL;
    if (ok)
      memcpy(f->x, a.data, a.nbytes);
  } else {
    ok = 0;
  }
  td_array_close(&a);
  if (ok) {
    /* fits: method is pick_method's, at most 32 bytes */
    snprintf(f->method, sizeof f->method, "%s", method);
    f->has_trajectory = json_is_true(json_object_get(o, "has_trajectory"));
    f->n_epochs = (int)json_integer_value(json_object_get(o, "n_epochs"));
    f->n_traj = (int)json_array_size(eps);
    f->traj_epochs = malloc(sizeof(int) * (size_t)(f->n_traj + 1));
    ok = f->traj_epochs != NULL;
    for (int i = 0; ok && i < f->n_traj; i++)
      f->traj_epochs[i] = (int)json_integer_value(json_array_get(eps, i));
    if (f->has_trajectory && json_array_size(fams) != TD_SUS_FAM_COUNT)
      ok = 0;
    for (int k = 0; ok && f->has_trajectory && k < TD_SUS_FAM_COUNT; k++) {
      json_t *c = json_array_get(fams, (size_t)k);
      td_sus_clusters *cl = &f->fam[k];
      cl->k = (int)json_integer_value(json_object_get(c, "k"));
      cl->dim = (int)json_integer_value(json_object_get(c, "dim"));
      if (cl->k <= 0 || cl->dim != fam_dim(k, f->n_traj)) {
        ok = 0;
        break;
      }
      cl->centroids = malloc((size_t)cl->k * (size_t)cl->dim * sizeof(float));
      cl->radius = malloc((size_t)cl->k * sizeof(float));
      cl->size = malloc((size_t)cl->k * sizeof(int64_t));
      json_t *sz = json_object_get(c, "size");
      ok = cl->centroids && cl->radius && cl->size &&
           !floats_from(json_object_get(c, "centroids"), cl->centroids,
                        (int64_t)cl->k * cl->dim) &&
           !floats_from(json_object_get(c, "radius"), cl->radius, cl->k) &&
           json_is_array(sz) && (int)json_array_size(sz) == cl->k;
      for (int j = 0; ok && j < cl->k; j++)
        cl->size[j] = json_integer_value(json_array_get(sz, (size_t)j));
    }
  }
  int nk = (int)json_integer_value(json_object_get(o, "nbr_k"));
  json_decref(o);
  if (ok && nk > 0)
    ok = nbr_read(nbr, n, nk, f) == 0;
  if (!ok) {
    td_sus_features_close(f);
    return -1;
  }
  f->signature = sig;
  return 0;
}

/* The run's training labels beside the features (the recommender's class
 * pairs). */
static int copy_labels(const td_run *run, td_sus_features *f) {
  const td_run_meta *m = td_run_get_meta(run);
  f->labels = malloc(sizeof *f->labels * (size_t)(f->n ? f->n : 1));
  if (!f->labels)
    return -1;
  memcpy(f->labels, td_run_train_labels(run), sizeof *f->labels * (size_t)f->n);
  f->n_classes = m->n_classes;
  return 0;
}

int td_sus_features_get(const td_run *run, const td_sus_opts *o,
                        td_sus_features *out, int *from_cache, char *note,
                        td_err *err) {
  td_sus_opts def;
  if (!o) {
    td_sus_opts_default(&def);
    o = &def;
  }
  /* Cached or not, the features stand on every epoch: a run `tardis info`
   * rejects is rejected here too, with the same message. */
  int rc = td_run_validate(run, NULL, NULL, err);
  if (rc)
    return rc;
  char method[33];
  if (note)
    note[0] = '\0';
  pick_method(run, o->method, method, note);
  uint64_t sig = signature(run, o, method);
  if (from_cache)
    *from_cache = 0;
  if (cache_read(run, method, sig, out) == 0) {
    if (from_cache)
      *from_cache = 1;
    if (copy_labels(run, out)) {
      td_sus_features_close(out);
      return td_err_set(err, TD_ENOMEM, "features: out of memory");
    }
    return TD_OK;
  }
  td_sus_opts o2 = *o;
  o2.method = method[0] ? method : "none";
  rc = td_sus_features_compute(run, &o2, out, NULL, err);
  if (rc)
    return rc;
  out->signature = sig;
  cache_write(run, out);
  return TD_OK;
}
