/* tardis project / eval end to end on a synthetic run whose structure is
 * known: C Gaussian class blobs in D dimensions that separate further each
 * epoch, with a linear head that classifies them. */
#include "harness.h"
#include "run/run_json.h"
#include "tardis/evaluate.h"
#include "tardis/fsutil.h"
#include "tardis/parallel.h"
#include "tardis/project.h"
#include "tardis/projection.h"
#include "tardis/rng.h"
#include "tardis/run.h"
#include "tardis/vismodel.h"

enum { N = 900, M = 300, D = 16, C = 3, EPOCHS = 4 };

static char run_dir[4200];

static void make_blobs(td_rng *rng, int64_t n, int epoch, const int32_t *lab,
                       float *x) {
  float sep = 2.0f + 1.5f * (float)epoch;
  for (int64_t i = 0; i < n; i++)
    for (int j = 0; j < D; j++) {
      float centre = (j % C == lab[i]) ? sep : 0.0f;
      x[i * D + j] = centre + td_rng_normal(rng);
    }
}

/* head: logit_c = sum of the dims j with j % C == c (matches the blobs) */
static void head_logits(const float *w, const float *b, const float *x,
                        int64_t n, float *z) {
  for (int64_t i = 0; i < n; i++)
    for (int c = 0; c < C; c++) {
      float s = b[c];
      for (int j = 0; j < D; j++)
        s += w[c * D + j] * x[i * D + j];
      z[i * C + c] = s;
    }
}

static int build_run(void) {
  const char *dir = td_t_tmpdir("project");
  snprintf(run_dir, sizeof run_dir, "%s/run", dir);
  td_run_meta m;
  memset(&m, 0, sizeof m);
  snprintf(m.name, sizeof m.name, "blobs");
  char *classes[C] = {"a", "b", "c"};
  m.classes = classes;
  m.n_classes = C;
  m.n_train = N;
  m.n_test = M;
  m.repr_dim = D;
  td_err err;
  if (td_run_create(run_dir, &m, 0, &err)) {
    fprintf(stderr, "%s\n", err.msg);
    return -1;
  }
  static int32_t ytr[N], yte[M];
  for (int i = 0; i < N; i++)
    ytr[i] = i % C;
  for (int i = 0; i < M; i++)
    yte[i] = i % C;
  td_array a;
  int64_t n = N, mm = M;
  td_array_wrap(&a, TD_I32, 1, &n, ytr);
  if (td_run_write_array(run_dir, "train_labels", &a, &err))
    return -1;
  td_array_wrap(&a, TD_I32, 1, &mm, yte);
  if (td_run_write_array(run_dir, "test_labels", &a, &err))
    return -1;
  static float xtr[N * D], xte[M * D], ztr[N * C], zte[M * C], w[C * D], b[C];
  for (int c = 0; c < C; c++)
    for (int j = 0; j < D; j++)
      w[c * D + j] = (j % C == c) ? 1.0f : 0.0f;
  td_rng rng;
  td_rng_seed(&rng, 3);
  for (int ep = 1; ep <= EPOCHS; ep++) {
    make_blobs(&rng, N, ep, ytr, xtr);
    make_blobs(&rng, M, ep, yte, xte);
    head_logits(w, b, xtr, N, ztr);
    head_logits(w, b, xte, M, zte);
    td_epoch_writer *wr;
    if (td_epoch_begin(run_dir, ep, &wr, &err))
      return -1;
    int64_t s1[2] = {N, D}, s2[2] = {N, C}, s3[2] = {M, D}, s4[2] = {M, C};
    const float *W = w, *B = b;
    int dims[2] = {D, C};
    json_t *ej = json_pack("{s:i}", "epoch", ep);
    int rc = 0;
    td_array_wrap(&a, TD_F32, 2, s1, xtr);
    rc |= td_epoch_add_array(wr, "train_repr.npy", &a, &err);
    td_array_wrap(&a, TD_F32, 2, s2, ztr);
    rc |= td_epoch_add_array(wr, "train_logits.npy", &a, &err);
    td_array_wrap(&a, TD_F32, 2, s3, xte);
    rc |= td_epoch_add_array(wr, "test_repr.npy", &a, &err);
    td_array_wrap(&a, TD_F32, 2, s4, zte);
    rc |= td_epoch_add_array(wr, "test_logits.npy", &a, &err);
    rc |= td_head_write(wr, 1, &W, &B, dims, NULL, &err);
    rc |= td__epoch_add_json(wr, "epoch.json", ej, &err);
    json_decref(ej);
    if (rc || td_epoch_commit(wr, &err)) {
      fprintf(stderr, "%s\n", err.msg);
      return -1;
    }
  }
  return 0;
}

static void test_project_dvi_and_eval(void) {
  CHECK(build_run() == 0);
  td_err err;
  td_run *run;
  CHECK_OK(td_run_open(run_dir, &run, &err), &err);
  td_project_opts o;
  td_project_opts_default(&o);
  o.territory_res = 64;
  td_project_summary s;
  CHECK_OK(td_project(run, &o, &s, &err), &err);
  CHECK_INT(s.projected, ==, EPOCHS);
  /* every epoch directory with every file */
  for (int ep = 1; ep <= EPOCHS; ep++) {
    char dir[4200], path[4400];
    CHECK_OK(td_vis_epoch_dir(run_dir, "dvi", ep, dir, sizeof dir), NULL);
    const char *files[] = {
        "train_embedding.npy",    "test_embedding.npy",  "boundary_repr.npy",
        "boundary_embedding.npy", "territory_class.npy", "territory_conf.npy",
        "territory.json",         "projection.json",     "model"};
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
      snprintf(path, sizeof path, "%s/%s", dir, files[f]);
      CHECK(td_path_exists(path));
    }
  }
  /* encode/decode round trip through a loaded projection keeps the head's
   * verdict on nearly every sample */
  char dir[4200];
  CHECK_OK(td_vis_epoch_dir(run_dir, "dvi", EPOCHS, dir, sizeof dir), NULL);
  td_projection *pj;
  CHECK_OK(td_projection_load(dir, D, &pj, &err), &err);
  td_array x;
  CHECK_OK(td_run_load_f32(run, EPOCHS, "train_repr", &x, &err), &err);
  static float y[N * 2], rec[N * D];
  CHECK_OK(td_projection_encode(pj, x.data, N, y), &err);
  CHECK_OK(td_projection_decode(pj, y, N, rec), &err);
  int agree = 0;
  const float *xv = x.data;
  for (int i = 0; i < N; i++) {
    int a = 0, b = 0;
    float sa[C] = {0}, sb[C] = {0};
    for (int j = 0; j < D; j++) {
      sa[j % C] += xv[i * D + j];
      sb[j % C] += rec[i * D + j];
    }
    for (int c = 1; c < C; c++) {
      a = sa[c] > sa[a] ? c : a;
      b = sb[c] > sb[b] ? c : b;
    }
    agree += a == b;
  }
  CHECK_INT(agree, >=, N * 95 / 100);
  td_array_close(&x);
  td_projection_free(pj);

  td_eval_result r;
  CHECK_OK(td_evaluate(run, "dvi", NULL, NULL, &r, &err), &err);
  CHECK_INT(r.n_epochs, ==, EPOCHS);
  for (int i = 0; i < r.n_epochs; i++) {
    const td_eval_epoch *e = &r.epochs[i];
    /* random 2-D positions would give about k/n = 0.017 */
    CHECK(e->nn_train[1] > 0.1);
    CHECK(e->nn_test[1] > 0.1);
    CHECK(e->ppr > 0.95);
    CHECK(e->n_boundary > 0);
    CHECK(e->proj_seconds > 0);
  }
  CHECK(isfinite(r.temporal_corr_train));
  char path[4300];
  snprintf(path, sizeof path, "%s/vis/dvi/metrics.json", run_dir);
  CHECK(td_path_exists(path));
  td_eval_result_free(&r);

  /* resume: remove the last epoch and leave a stale temporary dir */
  CHECK_OK(td_vis_epoch_dir(run_dir, "dvi", EPOCHS, dir, sizeof dir), NULL);
  CHECK_OK(td_remove_tree(dir, &err), &err);
  snprintf(path, sizeof path, "%s/vis/dvi/.tmp-0004-999999", run_dir);
  CHECK_OK(td_mkdirs(path, &err), &err);
  CHECK_OK(td_project(run, &o, &s, &err), &err);
  CHECK_INT(s.projected, ==, 1);
  CHECK_INT(s.skipped, ==, EPOCHS - 1);
  CHECK(td_path_is_dir(dir));
  td_run_close(run);
}

/* SentryCam's memory anchor: re-projecting with it works and keeps the
 * quality; the remembered points come from the earlier epochs. */
static void test_project_memory_anchor(void) {
  td_err err;
  td_run *run;
  CHECK_OK(td_run_open(run_dir, &run, &err), &err);
  td_project_opts o;
  td_project_opts_default(&o);
  o.territory_res = 32;
  o.temporal = TD_TEMPORAL_MEMORY;
  o.force = 1;
  td_project_summary s;
  CHECK_OK(td_project(run, &o, &s, &err), &err);
  CHECK_INT(s.projected, ==, EPOCHS);
  td_eval_result r;
  CHECK_OK(td_evaluate(run, "dvi", NULL, NULL, &r, &err), &err);
  for (int i = 0; i < r.n_epochs; i++) {
    CHECK(r.epochs[i].nn_train[1] > 0.1);
    CHECK(r.epochs[i].ppr > 0.95);
  }
  td_eval_result_free(&r);
  td_run_close(run);
}

static void test_project_pca(void) {
  td_err err;
  td_run *run;
  CHECK_OK(td_run_open(run_dir, &run, &err), &err);
  td_project_opts o;
  td_project_opts_default(&o);
  o.method = "pca";
  o.territory_res = 32;
  td_project_summary s;
  CHECK_OK(td_project(run, &o, &s, &err), &err);
  CHECK_INT(s.projected, ==, EPOCHS);
  td_eval_result r;
  CHECK_OK(td_evaluate(run, "pca", NULL, NULL, &r, &err), &err);
  CHECK_INT(r.n_epochs, ==, EPOCHS);
  CHECK(r.epochs[EPOCHS - 1].ppr > 0.9);
  td_eval_result_free(&r);
  td_run_close(run);
}

static void test_project_errors(void) {
  td_err err;
  td_run *run;
  CHECK_OK(td_run_open(run_dir, &run, &err), &err);
  td_project_opts o;
  td_project_opts_default(&o);
  o.method = "tsne";
  td_project_summary s;
  CHECK_INT(td_project(run, &o, &s, &err), ==, TD_EARG);
  CHECK_STR_CONTAINS(err.msg, "tsne");
  td_eval_result r;
  CHECK_INT(td_evaluate(run, "umap", NULL, NULL, &r, &err), ==, TD_ENOENT);
  CHECK_STR_CONTAINS(err.msg, "tardis project");
  /* a corrupt projection is reported with its path */
  char path[4300];
  snprintf(path, sizeof path, "%s/vis/pca/epoch_0002/train_embedding.npy",
           run_dir);
  CHECK_OK(td_write_file_atomic(path, "garbage", 7, &err), &err);
  CHECK_INT(td_evaluate(run, "pca", NULL, NULL, &r, &err), !=, TD_OK);
  CHECK_STR_CONTAINS(err.msg, "epoch_0002/train_embedding.npy");
  td_run_close(run);
}

int main(void) {
  RUN(test_project_dvi_and_eval);
  RUN(test_project_memory_anchor);
  RUN(test_project_pca);
  RUN(test_project_errors);
  return td_t_finish();
}
