/* Tests of the projection model: the UMAP loss gradient against finite
 * differences, class separation and reconstruction on blobs, save/load, and
 * the temporal anchors. */
#include "harness.h"

#include "tardis/complex.h"
#include "tardis/knn.h"
#include "tardis/parallel.h"
#include "tardis/rng.h"
#include "tardis/vismodel.h"

static void test_umap_grad(void) {
  enum { NV = 8, NP = 5, NN = 9 };
  float e[2 * NV], de[2 * NV];
  td_rng r;
  td_rng_seed(&r, 4);
  for (int i = 0; i < 2 * NV; i++)
    e[i] = 2.0f * td_rng_normal(&r);
  e[2] = e[0] + 1e-3f; /* a nearly coincident positive pair */
  e[3] = e[1];
  int32_t pu[NP] = {0, 2, 3, 5, 6}, pv[NP] = {1, 0, 4, 7, 1};
  int32_t nu[NN] = {0, 0, 1, 2, 3, 4, 5, 6, 7},
          nv[NN] = {2, 5, 3, 7, 6, 0, 1, 4, 3};
  float a = 1.577f, b = 0.895f;
  memset(de, 0, sizeof de);
  td_vis_umap_loss(e, pu, pv, NP, nu, nv, NN, a, b, de);
  for (int i = 0; i < 2 * NV; i++) {
    if (i == 0 || i == 1 || i == 2 || i == 3)
      continue; /* the near-coincident pair: too curved for a float FD */
    float keep = e[i], h = 1e-2f;
    e[i] = keep + h;
    double lp = td_vis_umap_loss(e, pu, pv, NP, nu, nv, NN, a, b, NULL);
    e[i] = keep - h;
    double lm = td_vis_umap_loss(e, pu, pv, NP, nu, nv, NN, a, b, NULL);
    e[i] = keep;
    double fd = (lp - lm) / (2.0 * (double)h);
    CHECK_NEAR(de[i], fd, 2e-3 + 2e-2 * fabs(fd));
  }
  /* clamp: a far positive pair (q < 1e-4) has no gradient */
  float far[4] = {0, 0, 1e4f, 0}, g[4] = {0, 0, 0, 0};
  int32_t z = 0, o = 1;
  double l = td_vis_umap_loss(far, &z, &o, 1, NULL, NULL, 0, a, b, g);
  CHECK_NEAR(l, -log(1e-4), 1e-3);
  CHECK(g[0] == 0.0f && g[2] == 0.0f);
}

/* Well-separated Gaussian blobs: C classes in D dimensions. */
static float *blobs(int64_t n, int D, int C, float sep, uint64_t seed,
                    int32_t *label) {
  td_rng r;
  td_rng_seed(&r, seed);
  float *cent = malloc((size_t)C * D * sizeof(float));
  for (int i = 0; i < C * D; i++)
    cent[i] = sep * td_rng_normal(&r);
  float *x = malloc((size_t)(n * D) * sizeof(float));
  for (int64_t i = 0; i < n; i++) {
    int c = (int)(i % C);
    label[i] = c;
    for (int j = 0; j < D; j++)
      x[i * D + j] = cent[c * D + j] + td_rng_normal(&r);
  }
  free(cent);
  return x;
}

/* Fraction of each point's k nearest 2-D neighbours sharing its class. */
static double class_purity(const float *y, const int32_t *label, int64_t n,
                           int k) {
  td_knn g;
  td_err err;
  if (td_knn_exact(y, n, 2, k, &g, &err))
    return -1.0;
  int64_t same = 0;
  for (int64_t i = 0; i < n; i++)
    for (int j = 0; j < k; j++)
      same += label[g.idx[i * k + j]] == label[i];
  td_knn_free(&g);
  return (double)same / (double)(n * k);
}

static double rel_rec_error(const float *x, const float *xr, int64_t n, int D) {
  double mean[64] = {0}, err = 0.0, var = 0.0;
  for (int64_t i = 0; i < n; i++)
    for (int j = 0; j < D; j++)
      mean[j] += (double)x[i * D + j] / (double)n;
  for (int64_t i = 0; i < n * D; i++) {
    double t = (double)xr[i] - (double)x[i];
    double u = (double)x[i] - mean[i % D];
    err += t * t;
    var += u * u;
  }
  return err / var;
}

static void small_params(td_vis_params *p, int D) {
  td_vis_params_default(p, D);
  p->hidden = 32;
  p->batch_edges = 256;
  p->max_epochs = 3;
  p->pass_edges = 20000;
  p->layout_epochs = 100;
  p->warm_layout_epochs = 30;
  p->distil_epochs = 40;
  p->warm_distil_epochs = 20;
  p->distil_batch = 128;
}

typedef struct {
  int64_t n;
  int D, C;
  float *x;
  int32_t *label;
  td_graph g;
} blob_set;

static int make_set(blob_set *s, int64_t n, int D, int C, uint64_t seed) {
  td_err err;
  td_knn knn;
  s->n = n;
  s->D = D;
  s->C = C;
  s->label = malloc((size_t)n * sizeof(int32_t));
  s->x = blobs(n, D, C, 3.0f, seed, s->label);
  if (td_knn_exact(s->x, n, D, 15, &knn, &err))
    return -1;
  int rc = td_complex_build(&knn, &s->g, &err);
  td_knn_free(&knn);
  return rc;
}

static void free_set(blob_set *s) {
  free(s->x);
  free(s->label);
  td_graph_free(&s->g);
}

static void test_blobs_separate_and_invert(void) {
  blob_set s;
  CHECK(make_set(&s, 1500, 16, 5, 1) == 0);
  td_vis_params p;
  small_params(&p, s.D);
  td_vismodel *m = td_vismodel_new(s.D, &p);
  td_err err;
  CHECK_OK(td_vismodel_fit(m, s.x, s.n, &s.g, NULL, &p, NULL, &err), &err);
  float *y = malloc((size_t)s.n * 2 * sizeof(float));
  float *xr = malloc((size_t)(s.n * s.D) * sizeof(float));
  CHECK_OK(td_vismodel_encode(m, s.x, s.n, y), NULL);
  CHECK_OK(td_vismodel_decode(m, y, s.n, xr), NULL);
  double purity = class_purity(y, s.label, s.n, 15);
  double rec = rel_rec_error(s.x, xr, s.n, s.D);
  fprintf(stderr, "  purity %.3f (chance %.3f), relative rec error %.3f\n",
          purity, 1.0 / s.C, rec);
  CHECK(purity > 0.95);
  /* the blobs' noise (1 per dim vs 9 between centres) cannot be decoded
   * from 2-D: the error floor is about 1/10 of the variance */
  CHECK(rec < 0.25);
  free(y);
  free(xr);
  td_vismodel_free(m);
  free_set(&s);
}

static void test_save_load(void) {
  blob_set s;
  CHECK(make_set(&s, 400, 8, 3, 2) == 0);
  td_vis_params p;
  small_params(&p, s.D);
  p.max_epochs = 1;
  p.distil_epochs = 5;
  td_vismodel *m = td_vismodel_new(s.D, &p), *l = NULL;
  td_err err;
  CHECK_OK(td_vismodel_fit(m, s.x, s.n, &s.g, NULL, &p, NULL, &err), &err);
  const char *dir = td_t_tmpdir("vismodel_save");
  char path[4200];
  snprintf(path, sizeof path, "%s/model", dir);
  CHECK_OK(td_vismodel_save(m, path, &err), &err);
  CHECK_OK(td_vismodel_save(m, path, &err), &err); /* replaces */
  CHECK_OK(td_vismodel_load(path, &l, &err), &err);
  CHECK_INT(td_vismodel_repr_dim(l), ==, s.D);
  float y1[800], y2[800], x1[3200], x2[3200];
  CHECK_OK(td_vismodel_encode(m, s.x, s.n, y1), NULL);
  CHECK_OK(td_vismodel_encode(l, s.x, s.n, y2), NULL);
  CHECK_OK(td_vismodel_decode(m, y1, s.n, x1), NULL);
  CHECK_OK(td_vismodel_decode(l, y1, s.n, x2), NULL);
  for (int i = 0; i < 800; i++)
    CHECK_NEAR(y1[i], y2[i], 1e-4 * (1.0 + fabs(y1[i])));
  for (int i = 0; i < 3200; i++)
    CHECK_NEAR(x1[i], x2[i], 1e-4 * (1.0 + fabs(x1[i])));
  td_vismodel_free(l);
  snprintf(path, sizeof path, "%s/nothing", dir);
  CHECK_INT(td_vismodel_load(path, &l, &err), ==, TD_ENOENT);
  CHECK(l == NULL);
  td_vismodel_free(m);
  free_set(&s);
}

static double mean_move(const float *a, const float *b, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; i++)
    s += hypot((double)a[2 * i] - (double)b[2 * i],
               (double)a[2 * i + 1] - (double)b[2 * i + 1]);
  return s / (double)n;
}

/* Epoch t+1 = epoch t plus a small drift: the warm start with either anchor
 * moves the points much less than an independent fit. */
static void test_warm_start_moves_less(void) {
  blob_set s;
  CHECK(make_set(&s, 1000, 16, 4, 3) == 0);
  td_vis_params p;
  small_params(&p, s.D);
  td_err err;
  td_vismodel *m0 = td_vismodel_new(s.D, &p);
  CHECK_OK(td_vismodel_fit(m0, s.x, s.n, &s.g, NULL, &p, NULL, &err), &err);
  float *y0 = malloc((size_t)s.n * 2 * sizeof(float));
  CHECK_OK(td_vismodel_encode(m0, s.x, s.n, y0), NULL);
  td_rng r;
  td_rng_seed(&r, 9);
  float *x1 = malloc((size_t)(s.n * s.D) * sizeof(float));
  for (int64_t i = 0; i < s.n * s.D; i++)
    x1[i] = s.x[i] + 0.1f * td_rng_normal(&r);
  td_knn knn;
  td_graph g1;
  CHECK_OK(td_knn_exact(x1, s.n, s.D, 15, &knn, &err), &err);
  CHECK_OK(td_complex_build(&knn, &g1, &err), &err);
  td_knn_free(&knn);
  float *y = malloc((size_t)s.n * 2 * sizeof(float));
  double moved[3];
  for (int mode = 0; mode < 3; mode++) {
    td_vis_params q = p;
    q.seed = 77;
    td_vis_anchor anc = {0};
    const td_vismodel *prev = m0;
    if (mode == 0) {
      prev = NULL; /* independent */
    } else if (mode == 1) {
      q.temporal = TD_TEMPORAL_DVI;
    } else {
      q.temporal = TD_TEMPORAL_MEMORY;
      anc.n_memory = s.n / 20;
      anc.mem_x = x1;
      anc.mem_y = y0;
    }
    td_vismodel *m = td_vismodel_new(s.D, &q);
    CHECK_OK(td_vismodel_fit(m, x1, s.n, &g1, prev, &q, &anc, &err), &err);
    CHECK_OK(td_vismodel_encode(m, x1, s.n, y), NULL);
    moved[mode] = mean_move(y0, y, s.n);
    td_vismodel_free(m);
  }
  fprintf(stderr, "  mean movement: independent %.3f, DVI %.3f, memory %.3f\n",
          moved[0], moved[1], moved[2]);
  CHECK(moved[1] < 0.5 * moved[0]);
  CHECK(moved[2] < 0.5 * moved[0]);
  free(y);
  free(y0);
  free(x1);
  td_graph_free(&g1);
  td_vismodel_free(m0);
  free_set(&s);
}

/* fit_ex: the layout comes back in y_out; with a linear head the decoder
 * inverts the drawn positions to the same class; a warm fit started from
 * those positions stays near them. */
static void test_fit_io_head_and_positions(void) {
  blob_set s;
  CHECK(make_set(&s, 900, 8, 3, 5) == 0);
  int D = s.D, C = s.C;
  /* nearest-centroid head: z_c = m_c . x - |m_c|^2 / 2 */
  float w[3 * 8] = {0}, b[3] = {0};
  int64_t cnt[3] = {0};
  for (int64_t i = 0; i < s.n; i++) {
    cnt[s.label[i]]++;
    for (int j = 0; j < D; j++)
      w[s.label[i] * D + j] += s.x[i * D + j];
  }
  for (int c = 0; c < C; c++)
    for (int j = 0; j < D; j++) {
      w[c * D + j] /= (float)cnt[c];
      b[c] -= 0.5f * w[c * D + j] * w[c * D + j];
    }
  td_vis_head head = {C, w, b};
  td_vis_params p;
  small_params(&p, D);
  p.max_epochs = 0;
  float *y = malloc((size_t)s.n * 2 * sizeof(float));
  float *y2 = malloc((size_t)s.n * 2 * sizeof(float));
  float *xr = malloc((size_t)(s.n * D) * sizeof(float));
  td_vis_fit_io io = {NULL, 0, y, &head, 0};
  td_vismodel *m = td_vismodel_new(D, &p);
  td_err err;
  CHECK_OK(td_vismodel_fit_ex(m, s.x, s.n, &s.g, NULL, &p, NULL, &io, &err),
           &err);
  double lo = 1e30, hi = -1e30;
  for (int64_t i = 0; i < 2 * s.n; i++) {
    CHECK(isfinite(y[i]));
    double v = (double)y[i];
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
  }
  CHECK_OK(td_vismodel_decode(m, y, s.n, xr), NULL);
  int64_t agree = 0;
  for (int64_t i = 0; i < s.n; i++) {
    int a = 0, r = 0;
    float za[3], zr[3];
    for (int c = 0; c < C; c++) {
      za[c] = zr[c] = b[c];
      for (int j = 0; j < D; j++) {
        za[c] += w[c * D + j] * s.x[i * D + j];
        zr[c] += w[c * D + j] * xr[i * D + j];
      }
      a = za[c] > za[a] ? c : a;
      r = zr[c] > zr[r] ? c : r;
    }
    agree += a == r;
  }
  fprintf(stderr, "  decode(layout) keeps the head's class: %.3f\n",
          (double)agree / (double)s.n);
  CHECK(agree >= s.n * 97 / 100);
  /* warm: start from y, few epochs, small steps */
  td_vis_fit_io io2 = {y, s.n, y2, &head, 0};
  td_vismodel *m2 = td_vismodel_new(D, &p);
  CHECK_OK(td_vismodel_fit_ex(m2, s.x, s.n, &s.g, m, &p, NULL, &io2, &err),
           &err);
  double moved = mean_move(y, y2, s.n);
  fprintf(stderr, "  warm refit moves %.3f (extent %.3f)\n", moved, hi - lo);
  CHECK(moved < 0.1 * (hi - lo));
  td_vis_fit_io bad = {NULL, 0, NULL, &(td_vis_head){0, w, b}, 0};
  CHECK_INT(td_vismodel_fit_ex(m2, s.x, s.n, &s.g, NULL, &p, NULL, &bad, &err),
            ==, TD_EARG);
  td_vismodel_free(m);
  td_vismodel_free(m2);
  free(y);
  free(y2);
  free(xr);
  free_set(&s);
}

/* One cold fit (layout, distillation with the head term, a DVI pass) and
 * a warm one on it; out [n (6 + D)] receives the drawn positions of both
 * fits, then the encodings and decodings of the warm model. */
static void fit_outputs(const blob_set *s, int hogwild, float *out) {
  int D = s->D;
  float w[3 * 8], b[3];
  td_rng r;
  td_rng_seed(&r, 11);
  for (int i = 0; i < 3 * D; i++)
    w[i] = td_rng_normal(&r);
  for (int c = 0; c < 3; c++)
    b[c] = 0.1f * (float)c;
  td_vis_head head = {3, w, b};
  td_vis_params p;
  small_params(&p, D);
  p.max_epochs = 1;
  p.pass_edges = 2000;
  p.layout_epochs = 40;
  p.distil_epochs = 4;
  p.warm_distil_epochs = 2;
  p.hogwild = hogwild;
  int64_t n = s->n;
  td_vis_fit_io io = {NULL, 0, out, &head, 0};
  td_vismodel *m = td_vismodel_new(D, &p), *m2 = td_vismodel_new(D, &p);
  td_err err;
  CHECK_OK(td_vismodel_fit_ex(m, s->x, n, &s->g, NULL, &p, NULL, &io, &err),
           &err);
  io.y_out = out + 2 * n;
  CHECK_OK(td_vismodel_fit_ex(m2, s->x, n, &s->g, m, &p, NULL, &io, &err),
           &err);
  CHECK(td_vismodel_encode(m2, s->x, n, out + 4 * n) == TD_OK);
  CHECK(td_vismodel_decode(m2, out + 4 * n, n, out + 6 * n) == TD_OK);
  td_vismodel_free(m);
  td_vismodel_free(m2);
}

/* The default fit gives bit-identical positions and models at 1, 2 and 3
 * threads; Hogwild (p.hogwild) is reproducible on one thread. */
static void test_thread_count_independent(void) {
  blob_set s;
  CHECK(make_set(&s, 700, 8, 3, 7) == 0);
  size_t len = (size_t)s.n * (size_t)(6 + s.D) * sizeof(float);
  float *ref = malloc(len), *o = malloc(len), *hog = malloc(len);
  td_set_threads(1);
  fit_outputs(&s, 0, ref);
  fit_outputs(&s, 1, hog);
  fit_outputs(&s, 1, o);
  CHECK(memcmp(hog, o, len) == 0);
  for (int t = 2; t <= 3; t++) {
    td_set_threads(t);
    memset(o, 0, len);
    fit_outputs(&s, 0, o);
    CHECK(memcmp(ref, o, len) == 0);
  }
  td_set_threads(2);
  free(ref);
  free(o);
  free(hog);
  free_set(&s);
}

static void test_bad_args(void) {
  td_vismodel *m = td_vismodel_new(4, NULL), *o = td_vismodel_new(5, NULL);
  float x[8] = {0};
  int32_t h = 0, t = 1;
  float w = 1.0f;
  td_graph g = {2, 1, &h, &t, &w}, g3 = {3, 1, &h, &t, &w};
  td_err err;
  CHECK_INT(td_vismodel_fit(m, x, 2, &g3, NULL, NULL, NULL, &err), ==, TD_EARG);
  CHECK_INT(td_vismodel_fit(m, x, 2, &g, o, NULL, NULL, &err), ==, TD_EARG);
  td_vismodel_free(m);
  td_vismodel_free(o);
}

int main(void) {
  td_set_threads(2);
  RUN(test_umap_grad);
  RUN(test_blobs_separate_and_invert);
  RUN(test_save_load);
  RUN(test_warm_start_moves_less);
  RUN(test_fit_io_head_and_positions);
  RUN(test_thread_count_independent);
  RUN(test_bad_args);
  return td_t_finish();
}
