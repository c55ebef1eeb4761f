/* Projection at scale (docs/scale.md) forced on a small synthetic run:
 * the sample's fit and the placement of the other points keep a measured
 * quality, write their choice into projection.json, and give the same
 * bytes at 1 and 2 threads; the density rule reads intrinsic dimension. */
#include "blob_run.h"
#include "harness.h"
#include "proj/scale.h"
#include "run/run_json.h"
#include "tardis/evaluate.h"
#include "tardis/fsutil.h"
#include "tardis/parallel.h"
#include "tardis/project.h"
#include "tardis/rng.h"
#include "tardis/run.h"

enum {
  N = 3000,
  M = 300,
  D = TD_T_BLOB_D,
  C = TD_T_BLOB_C,
  EPOCHS = 2,
  SAMPLE = 1000
};

static int build_run(const char *run_dir) {
  const td_t_blob_opts o = {"scale", N, M, EPOCHS, 11, 1.0f, 0.0f};
  return td_t_blob_run(run_dir, &o);
}

static void project_at(const char *run_dir, int threads) {
  td_err err;
  td_run *run;
  td_set_threads(threads);
  CHECK_OK(td_run_open(run_dir, &run, &err), &err);
  td_project_opts o;
  td_project_opts_default(&o);
  o.territory_res = 64;
  o.scale = 1;
  o.scale_sample = SAMPLE;
  td_project_summary s;
  CHECK_OK(td_project(run, &o, &s, &err), &err);
  CHECK_INT(s.projected, ==, EPOCHS);
  td_run_close(run);
  td_set_threads(0);
}

/* Reads a whole file; NULL if it cannot. */
static char *slurp(const char *path, long *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  *len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)*len + 1);
  if (b && fread(b, 1, (size_t)*len, f) != (size_t)*len) {
    free(b);
    b = NULL;
  }
  fclose(f);
  return b;
}

static void test_scaled_deterministic_and_good(void) {
  char tmp[4100], r1[4200], r2[4200];
  snprintf(tmp, sizeof tmp, "%s", td_t_tmpdir("scale"));
  snprintf(r1, sizeof r1, "%s/run1", tmp);
  snprintf(r2, sizeof r2, "%s/run2", tmp);
  CHECK(build_run(r1) == 0);
  CHECK(build_run(r2) == 0);
  project_at(r1, 1);
  project_at(r2, 2);
  const char *files[] = {"train_embedding.npy",    "test_embedding.npy",
                         "boundary_embedding.npy", "boundary_pairs.npy",
                         "boundary_repr.npy",      "territory_class.npy",
                         "territory_conf.npy"};
  for (int ep = 1; ep <= EPOCHS; ep++) {
    char d1[4300], d2[4300], p1[4400], p2[4400];
    CHECK_OK(td_vis_epoch_dir(r1, "dvi", ep, d1, sizeof d1), NULL);
    CHECK_OK(td_vis_epoch_dir(r2, "dvi", ep, d2, sizeof d2), NULL);
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
      snprintf(p1, sizeof p1, "%s/%s", d1, files[f]);
      snprintf(p2, sizeof p2, "%s/%s", d2, files[f]);
      long l1 = -1, l2 = -2;
      char *b1 = slurp(p1, &l1), *b2 = slurp(p2, &l2);
      int same = b1 && b2 && l1 == l2 && !memcmp(b1, b2, (size_t)l1);
      if (!same)
        fprintf(stderr, "epoch %d: %s differs between 1 and 2 threads\n", ep,
                files[f]);
      CHECK(same);
      free(b1);
      free(b2);
    }
    /* the choice is recorded */
    snprintf(p1, sizeof p1, "%s/projection.json", d1);
    json_t *j = json_load_file(p1, 0, NULL);
    CHECK(j != NULL);
    json_t *sc = j ? json_object_get(j, "scale") : NULL;
    CHECK(sc != NULL);
    CHECK_INT(json_integer_value(json_object_get(sc, "sample")), ==, SAMPLE);
    CHECK(!strcmp(json_string_value(json_object_get(sc, "rule")), "fixed"));
    CHECK(!strcmp(json_string_value(json_object_get(sc, "place")), "knn"));
    json_decref(j);
  }
  /* quality over all N points, against floors measured on this run */
  td_err err;
  td_run *run;
  CHECK_OK(td_run_open(r1, &run, &err), &err);
  td_eval_result r;
  CHECK_OK(td_evaluate(run, "dvi", NULL, NULL, &r, &err), &err);
  CHECK_INT(r.n_epochs, ==, EPOCHS);
  for (int i = 0; i < r.n_epochs; i++) {
    fprintf(stderr, "epoch %d: nn@15 %.3f test %.3f ppr %.3f\n",
            r.epochs[i].epoch, r.epochs[i].nn_train[1], r.epochs[i].nn_test[1],
            r.epochs[i].ppr);
    CHECK(r.epochs[i].nn_train[1] > 0.05);
    CHECK(r.epochs[i].ppr > 0.9);
  }
  td_eval_result_free(&r);
  /* a resumed projection warm-starts the sample from the files */
  char d[4300];
  CHECK_OK(td_vis_epoch_dir(r1, "dvi", EPOCHS, d, sizeof d), NULL);
  CHECK_OK(td_remove_tree(d, &err), &err);
  td_project_opts o;
  td_project_opts_default(&o);
  o.territory_res = 64;
  o.scale = 1;
  o.scale_sample = SAMPLE;
  td_project_summary s;
  CHECK_OK(td_project(run, &o, &s, &err), &err);
  CHECK_INT(s.projected, ==, 1);
  td_run_close(run);
}

/* Points of intrinsic dimension 16 (a full Gaussian) are dense enough at
 * 10 %; points on a 2-D plane need the 50 % ceiling (rho(r) ~ r^(1/dim)). */
static void test_density_rule(void) {
  enum { NR = 12000, DR = 16 };
  static float x[NR * DR];
  td_rng rng;
  td_rng_seed(&rng, 5);
  for (int i = 0; i < NR * DR; i++)
    x[i] = td_rng_normal(&rng);
  td__scale_density dn;
  td_err err;
  CHECK_OK(td__scale_density_ratio(x, NR, DR, 1, &dn, &err), &err);
  fprintf(stderr, "gaussian 16-D: ratio %.1f, density %.3f .. %.3f\n", dn.ratio,
          dn.density[0], dn.density[4]);
  CHECK(dn.ratio < 0.15);
  for (int i = 1; i < 5; i++)
    CHECK(dn.density[i] > dn.density[i - 1]);
  for (int i = 0; i < NR; i++)
    for (int j = 2; j < DR; j++)
      x[i * DR + j] = 0.0f;
  CHECK_OK(td__scale_density_ratio(x, NR, DR, 1, &dn, &err), &err);
  fprintf(stderr, "plane: ratio %.1f, density %.3f .. %.3f\n", dn.ratio,
          dn.density[0], dn.density[4]);
  CHECK(dn.ratio > 0.45);
}

int main(void) {
  RUN(test_density_rule);
  RUN(test_scaled_deterministic_and_good);
  return td_t_finish();
}
