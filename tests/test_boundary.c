/* Boundary samples: they lie where the head's top-2 normalised logits tie,
 * class pairs are balanced, pairs without a common boundary are given up,
 * and results are deterministic for a seed across thread counts. */
#include "harness.h"
#include "tardis/array.h"
#include "tardis/boundary.h"
#include "tardis/parallel.h"
#include "tardis/rng.h"
#include "tardis/run.h"
#include "test_util.h"

static int pair_index(int a, int b, int C) {
  if (a > b) {
    int t = a;
    a = b;
    b = t;
  }
  return a * C + b;
}

static void test_logit_gap(void) {
  float z[3] = {3, 1, -1};
  int t1, t2;
  CHECK_NEAR(td_logit_gap(z, 3, &t1, &t2), 0.5, 1e-7);
  CHECK_INT(t1, ==, 0);
  CHECK_INT(t2, ==, 1);
  float z2[4] = {-2, 5, 5, 1};
  CHECK_NEAR(td_logit_gap(z2, 4, &t1, &t2), 0.0, 0);
  CHECK_INT(t1, ==, 1); /* ties: the smaller index first */
  CHECK_INT(t2, ==, 2);
  float z3[3] = {7, 7, 7};
  CHECK_NEAR(td_logit_gap(z3, 3, NULL, NULL), 0.0, 0);
  float z4[2] = {0.5f, 2.5f};
  CHECK_NEAR(td_logit_gap(z4, 2, &t1, &t2), tanh(1.0), 1e-6);
  CHECK_INT(t1, ==, 1);
  CHECK_INT(t2, ==, 0);
  /* min-max normalised form, computed the long way */
  float z5[5] = {0.3f, -1.2f, 2.2f, 1.9f, 0.0f};
  double zn[5], mn = -1.2, mx = 2.2;
  for (int i = 0; i < 5; i++)
    zn[i] = ((double)z5[i] - mn) / (mx - mn);
  CHECK_NEAR(td_logit_gap(z5, 5, NULL, NULL), zn[2] - zn[3], 1e-6);
}

/* A random linear head on Gaussian data: every class pair borders. */
typedef struct {
  td_head *head;
  float *x, *z;
  int64_t n;
  int D, C;
} fixture;

static int make_fixture(fixture *fx, const char *name, int64_t n, int D, int C,
                        uint64_t seed, td_err *err) {
  const char *dir = td_t_tmpdir(name);
  td_rng r;
  td_rng_seed(&r, seed);
  float *w = malloc((size_t)C * D * sizeof *w), *b = malloc(C * sizeof *b);
  for (int i = 0; i < C * D; i++)
    w[i] = td_rng_normal(&r);
  for (int i = 0; i < C; i++)
    b[i] = 0.1f * td_rng_normal(&r);
  int rc = td_t_make_head(dir, w, b, D, C, &fx->head, err);
  free(w);
  free(b);
  if (rc)
    return rc;
  fx->n = n;
  fx->D = D;
  fx->C = C;
  fx->x = malloc((size_t)n * D * sizeof *fx->x);
  fx->z = malloc((size_t)n * C * sizeof *fx->z);
  for (int64_t i = 0; i < n * D; i++)
    fx->x[i] = td_rng_normal(&r);
  td_head_forward(fx->head, fx->x, n, fx->z);
  return TD_OK;
}

static void free_fixture(fixture *fx) {
  td_head_free(fx->head);
  free(fx->x);
  free(fx->z);
}

static void test_samples_on_boundary(void) {
  td_err err;
  fixture fx;
  CHECK_OK(make_fixture(&fx, "bnd_on", 3000, 16, 5, 7, &err), &err);
  td_boundary_params p;
  td_boundary_params_default(&p, fx.n, fx.C);
  CHECK_INT(p.budget, ==, 600);
  p.seed = 11;
  float *b;
  int32_t *pair;
  int64_t nb;
  CHECK_OK(td_boundary_generate(fx.head, fx.x, fx.z, fx.n, fx.D, fx.C, &p, &b,
                                &pair, &nb, &err),
           &err);
  CHECK_INT(nb, ==, 600);
  float *zb = malloc((size_t)nb * fx.C * sizeof *zb);
  td_head_forward(fx.head, b, nb, zb);
  int counts[25] = {0};
  for (int64_t i = 0; i < nb; i++) {
    int t1, t2;
    float g = td_logit_gap(zb + i * fx.C, fx.C, &t1, &t2);
    CHECK(g < 0.1f + 1e-5f);
    CHECK(pair[2 * i] != pair[2 * i + 1]);
    CHECK_INT(pair_index(t1, t2, fx.C), ==,
              pair_index(pair[2 * i], pair[2 * i + 1], fx.C));
    counts[pair_index(pair[2 * i], pair[2 * i + 1], fx.C)]++;
  }
  /* 10 pairs, 60 each: the split is exact when every pair succeeds. */
  for (int a = 0; a < fx.C; a++)
    for (int c = a + 1; c < fx.C; c++)
      CHECK_INT(counts[a * fx.C + c], ==, 60);
  /* Both sides get to be x1: each class appears first in some pairs. */
  int first[5] = {0};
  for (int64_t i = 0; i < nb; i++)
    first[pair[2 * i]]++;
  for (int c = 0; c < fx.C; c++)
    CHECK(first[c] > 0);
  free(zb);
  free(b);
  free(pair);
  free_fixture(&fx);
}

static void test_deterministic_across_threads(void) {
  td_err err;
  fixture fx;
  CHECK_OK(make_fixture(&fx, "bnd_det", 2000, 12, 4, 3, &err), &err);
  td_boundary_params p;
  td_boundary_params_default(&p, fx.n, fx.C);
  p.seed = 99;
  float *b[4];
  int32_t *pr[4];
  int64_t nb[4];
  int threads[3] = {1, 2, 3};
  int saved = td_threads();
  for (int t = 0; t < 3; t++) {
    td_set_threads(threads[t]);
    CHECK_OK(td_boundary_generate(fx.head, fx.x, fx.z, fx.n, fx.D, fx.C, &p,
                                  &b[t], &pr[t], &nb[t], &err),
             &err);
  }
  td_set_threads(saved);
  p.seed = 100;
  CHECK_OK(td_boundary_generate(fx.head, fx.x, fx.z, fx.n, fx.D, fx.C, &p,
                                &b[3], &pr[3], &nb[3], &err),
           &err);
  CHECK(nb[0] > 0);
  for (int t = 1; t < 3; t++) {
    CHECK_INT(nb[t], ==, nb[0]);
    CHECK(!memcmp(b[t], b[0], (size_t)nb[0] * fx.D * sizeof(float)));
    CHECK(!memcmp(pr[t], pr[0], (size_t)nb[0] * 2 * sizeof(int32_t)));
  }
  /* another seed gives other samples */
  CHECK(nb[3] != nb[0] ||
        memcmp(b[3], b[0], (size_t)nb[0] * fx.D * sizeof(float)) != 0);
  for (int t = 0; t < 4; t++) {
    free(b[t]);
    free(pr[t]);
  }
  free_fixture(&fx);
}

/* Three classes along a line, 0 | 1 | 2: classes 0 and 2 never border, so
 * that pair is given up and its share goes to the other two. */
static void test_pair_without_border(void) {
  td_err err;
  const char *dir = td_t_tmpdir("bnd_line");
  float w[6] = {-1, 0, 0, 0, 1, 0}, bias[3] = {0, 1, 0};
  td_head *head;
  CHECK_OK(td_t_make_head(dir, w, bias, 2, 3, &head, &err), &err);
  int64_t n = 900;
  float *x = malloc(n * 2 * sizeof *x), *z = malloc(n * 3 * sizeof *z);
  td_rng r;
  td_rng_seed(&r, 5);
  for (int64_t i = 0; i < n; i++) {
    x[2 * i] = 6 * td_rng_uniform(&r) - 3;
    x[2 * i + 1] = td_rng_normal(&r);
  }
  td_head_forward(head, x, n, z);
  td_boundary_params p = {.budget = 300, .seed = 1};
  float *b;
  int32_t *pair;
  int64_t nb;
  CHECK_OK(td_boundary_generate(head, x, z, n, 2, 3, &p, &b, &pair, &nb, &err),
           &err);
  CHECK_INT(nb, ==, 300);
  int cnt[9] = {0};
  for (int64_t i = 0; i < nb; i++) {
    cnt[pair_index(pair[2 * i], pair[2 * i + 1], 3)]++;
    /* near the line x = -1 or x = +1: a gap < 0.1 there means |x| − 1 is
     * within 0.25 */
    CHECK_NEAR(fabsf(b[2 * i]), 1, 0.26);
  }
  CHECK_INT(cnt[0 * 3 + 2], ==, 0);
  CHECK_INT(cnt[0 * 3 + 1], ==, 150);
  CHECK_INT(cnt[1 * 3 + 2], ==, 150);
  free(b);
  free(pair);
  free(x);
  free(z);
  td_head_free(head);
}

/* Bad arguments, a single predicted class, a budget the data cannot meet. */
static void test_edge_cases(void) {
  td_err err;
  fixture fx;
  CHECK_OK(make_fixture(&fx, "bnd_edge", 200, 4, 3, 1, &err), &err);
  float *b = (float *)1;
  int32_t *pair = (int32_t *)1;
  int64_t nb = -1;
  /* head dimensions disagree */
  CHECK_INT(td_boundary_generate(fx.head, fx.x, fx.z, fx.n, 5, fx.C, NULL, &b,
                                 &pair, &nb, &err),
            ==, TD_EARG);
  CHECK(b == (float *)1 && nb == -1);
  /* a single predicted class: nothing to mix, not an error */
  float *z1 = calloc((size_t)fx.n * fx.C, sizeof *z1);
  for (int64_t i = 0; i < fx.n; i++)
    z1[i * fx.C + 1] = 1;
  CHECK_OK(td_boundary_generate(fx.head, fx.x, z1, fx.n, fx.D, fx.C, NULL, &b,
                                &pair, &nb, &err),
           &err);
  CHECK_INT(nb, ==, 0);
  CHECK(b == NULL && pair == NULL);
  free(z1);
  /* budget larger than one round's worth of successes still terminates */
  td_boundary_params p = {.budget = 5000, .seed = 2};
  CHECK_OK(td_boundary_generate(fx.head, fx.x, fx.z, fx.n, fx.D, fx.C, &p, &b,
                                &pair, &nb, &err),
           &err);
  CHECK(nb > 0 && nb <= 5000);
  free(b);
  free(pair);
  free_fixture(&fx);
}

/* Input-space mixup: the returned representations, judged by the model's
 * last layer (its head), sit on the boundary between their two classes. */
static void test_input_space(void) {
  enum { N = 600, IN = 12, H = 8, C = 3 };
  int dims[] = {IN, H, C};
  td_act acts[] = {TD_ACT_RELU, TD_ACT_NONE};
  td_net *net = td_net_new(2, dims, acts);
  td_rng rng;
  td_rng_seed(&rng, 5);
  td_net_init(net, &rng);
  static float u[N * IN], z[N * C], zh[C];
  for (int i = 0; i < N * IN; i++)
    u[i] = td_rng_uniform(&rng);
  td_err err;
  CHECK_OK(td_net_predict(net, u, N, z, -1, NULL), &err);
  td_boundary_params p;
  td_boundary_params_default(&p, N, C);
  p.seed = 3;
  float *out = NULL;
  int32_t *pair = NULL;
  int64_t m = 0;
  CHECK_OK(
      td_boundary_generate_input(net, 0, u, z, N, &p, &out, &pair, &m, &err),
      &err);
  CHECK_INT(m, >, 0);
  /* the model's head is its last layer: W [C, H], b [C] */
  const float *W = td_net_weight(net, 1), *b = td_net_bias(net, 1);
  for (int64_t i = 0; i < m; i++) {
    for (int c = 0; c < C; c++) {
      float s = b[c];
      for (int h = 0; h < H; h++)
        s += W[c * H + h] * out[i * H + h];
      zh[c] = s;
    }
    int t1, t2;
    CHECK(td_logit_gap(zh, C, &t1, &t2) < 0.1f + 1e-4f);
    CHECK((t1 == pair[2 * i] && t2 == pair[2 * i + 1]) ||
          (t2 == pair[2 * i] && t1 == pair[2 * i + 1]));
  }
  free(out);
  free(pair);
  CHECK_INT(
      td_boundary_generate_input(net, 1, u, z, N, &p, &out, &pair, &m, &err),
      ==, TD_EARG); /* the output layer is not a representation */
  td_net_free(net);
}

int main(void) {
  RUN(test_logit_gap);
  RUN(test_samples_on_boundary);
  RUN(test_deterministic_across_threads);
  RUN(test_pair_without_border);
  RUN(test_edge_cases);
  RUN(test_input_space);
  return td_t_finish();
}
