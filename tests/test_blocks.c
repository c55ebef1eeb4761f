/* Projection in blocks of epochs (docs/scale.md "Across processes"): the
 * canvas transforms, then two blocks run one after the other in this
 * process: block 0 gives td_project's bytes, block 1 is moved onto block
 * 0's canvas with its model and territory, and continues it at the border.
 * `test_blocks mpi` (registered with -DTD_MPI=ON) runs the same through
 * `mpiexec -np 2 tardis project` and wants the same bytes. */
#include <math.h>
#include <unistd.h>

#include "blob_run.h"
#include "cli_util.h"
#include "harness.h"
#include "proj/blocks.h"
#include "run/run_json.h"
#include "tardis/parallel.h"
#include "tardis/project.h"
#include "tardis/rng.h"
#include "tardis/run.h"
#include "tardis/territory.h"
#include "tardis/vis.h"

enum {
  N = 1500,
  M = 200,
  D = TD_T_BLOB_D,
  C = TD_T_BLOB_C,
  EPOCHS = 4,
  RES = 32
};

static int build_run(const char *run_dir) {
  const td_t_blob_opts o = {"blocks", N, M, EPOCHS, 17, 0.5f, 0.1f};
  return td_t_blob_run(run_dir, &o);
}

static void opts(td_project_opts *o) {
  td_project_opts_default(o);
  o->territory_res = RES;
}

/* A similarity with a reflection, recovered from the points it moved; the
 * chain of transforms composes in order. */
static void test_affine(void) {
  enum { P = 500 };
  static float x[2 * P], y[2 * P];
  td_rng rng;
  td_rng_seed(&rng, 3);
  double th = 0.7, s = 2.5, T[6] = {s * cos(th), s * sin(th),  3.0,
                                    s * sin(th), -s * cos(th), -1.0};
  for (int i = 0; i < 2 * P; i++)
    x[i] = y[i] = td_rng_normal(&rng);
  td__affine_apply(T, y, P);
  double F[6];
  td__affine_procrustes(x, y, P, F);
  for (int i = 0; i < 6; i++)
    CHECK_NEAR(F[i], T[i], 1e-4);
  /* chain: block 2's transform is borders[1] after borders[2] */
  double borders[18], out[6], R[6] = {0, -1, 0, 1, 0, 0};
  td__affine_identity(borders);
  memcpy(borders + 6, R, sizeof R);
  memcpy(borders + 12, T, sizeof T);
  td_project_block_chain(borders, 2, out);
  float p[2] = {1, 0}, q[2] = {1, 0};
  td__affine_apply(out, p, 1);
  td__affine_apply(T, q, 1);
  td__affine_apply(R, q, 1);
  CHECK_NEAR(p[0], q[0], 1e-5);
  CHECK_NEAR(p[1], q[1], 1e-5);
}

/* The position of every training point, malloc'd. */
static float *train_y(const char *run_dir, int epoch) {
  td_array a;
  td_err err;
  if (td_vis_load_embedding(run_dir, "dvi", epoch, "train", N, &a, &err)) {
    fprintf(stderr, "%s\n", err.msg);
    return NULL;
  }
  float *y = malloc((size_t)N * 2 * sizeof *y);
  if (y)
    memcpy(y, a.data, (size_t)N * 2 * sizeof *y);
  td_array_close(&a);
  return y;
}

/* Mean displacement of the points between two drawings, over the side of
 * the first's extent. */
static double jump(const float *a, const float *b) {
  float ext[4];
  td_territory_extent(a, N, ext);
  double s = 0;
  for (int i = 0; i < N; i++)
    s += hypot((double)a[2 * i] - (double)b[2 * i],
               (double)a[2 * i + 1] - (double)b[2 * i + 1]);
  return s / N / (double)(ext[2] - ext[0]);
}

static int same_file(const char *r1, const char *r2, int ep, const char *f) {
  char d1[4300], d2[4300], p1[4400], p2[4400];
  if (td_vis_epoch_dir(r1, "dvi", ep, d1, sizeof d1) ||
      td_vis_epoch_dir(r2, "dvi", ep, d2, sizeof d2))
    return 0;
  snprintf(p1, sizeof p1, "%s/%s", d1, f);
  snprintf(p2, sizeof p2, "%s/%s", d2, f);
  char *data = NULL, *other = NULL;
  size_t l1 = 0, l2 = 0;
  int same = !td_read_file(p1, &data, &l1, NULL) &&
             !td_read_file(p2, &other, &l2, NULL) && l1 == l2 &&
             !memcmp(data, other, l1);
  if (!same)
    fprintf(stderr, "epoch %d: %s differs between %s and %s\n", ep, f, r1, r2);
  free(data);
  free(other);
  return same;
}

/* Two blocks in order in this process, as mpiexec -np 2 would run them. */
static void project_in_blocks(const char *run_dir) {
  td_err err;
  td_run *run;
  CHECK_OK(td_run_open(run_dir, &run, &err), &err);
  td_project_opts o;
  opts(&o);
  td_project_block *b[2] = {NULL, NULL};
  td_project_summary s;
  double borders[12], T[6];
  for (int r = 0; r < 2; r++)
    CHECK_OK(td_project_block_open(run, &o, r, 2, &b[r], &err), &err);
  for (int r = 0; r < 2; r++) {
    CHECK_OK(td_project_block_fit(b[r], &s, &err), &err);
    CHECK_INT(s.projected, ==, EPOCHS / 2);
  }
  for (int r = 0; r < 2; r++)
    CHECK_OK(td_project_block_border(b[r], borders + 6 * r, &err), &err);
  for (int r = 0; r < 2; r++) {
    td_project_block_chain(borders, r, T);
    CHECK_OK(td_project_block_align(b[r], T, &err), &err);
    td_project_block_close(b[r]);
  }
  td_run_close(run);
}

static const char *const files[] = {
    "train_embedding.npy", "test_embedding.npy", "boundary_embedding.npy",
    "territory_class.npy", "territory_conf.npy"};
#define N_FILES (sizeof files / sizeof files[0])

static void test_blocks(void) {
  char tmp[4100], one[4200], two[4200];
  snprintf(tmp, sizeof tmp, "%s", td_t_tmpdir("blocks"));
  snprintf(one, sizeof one, "%s/one", tmp);
  snprintf(two, sizeof two, "%s/two", tmp);
  CHECK(build_run(one) == 0);
  CHECK(build_run(two) == 0);
  td_set_threads(1);
  td_err err;
  td_run *run;
  CHECK_OK(td_run_open(one, &run, &err), &err);
  td_project_opts o;
  opts(&o);
  td_project_summary s;
  CHECK_OK(td_project(run, &o, &s, &err), &err);
  td_run_close(run);
  project_in_blocks(two);
  /* block 0 is td_project's own output */
  for (int ep = 1; ep <= EPOCHS / 2; ep++)
    for (size_t f = 0; f < N_FILES; f++)
      CHECK(same_file(one, two, ep, files[f]));
  /* block 1 says so, and continues block 0 at the border */
  char d[4300], p[4400];
  CHECK_OK(td_vis_epoch_dir(two, "dvi", EPOCHS, d, sizeof d), NULL);
  snprintf(p, sizeof p, "%s/projection.json", d);
  json_t *j = json_load_file(p, 0, NULL);
  json_t *blk = j ? json_object_get(j, "block") : NULL;
  CHECK(blk != NULL);
  CHECK_INT(json_integer_value(json_object_get(blk, "index")), ==, 1);
  CHECK_INT(json_integer_value(json_object_get(blk, "border")), ==, EPOCHS / 2);
  json_decref(j);
  float *a2 = train_y(one, EPOCHS / 2), *a3 = train_y(one, EPOCHS / 2 + 1);
  float *b3 = train_y(two, EPOCHS / 2 + 1);
  CHECK(a2 && a3 && b3);
  if (a2 && a3 && b3) {
    double chained = jump(a2, a3), border = jump(a2, b3);
    fprintf(stderr, "jump at epoch %d: one chain %.4f, two blocks %.4f\n",
            EPOCHS / 2 + 1, chained, border);
    CHECK(border < 0.25);
  }
  free(a2);
  free(a3);
  free(b3);
  /* the moved model draws what the moved files say */
  td_vismodel *m = NULL;
  snprintf(p, sizeof p, "%s/model", d);
  CHECK_OK(td_vismodel_load(p, &m, &err), &err);
  CHECK_OK(td_run_open(two, &run, &err), &err);
  td_array x, y;
  CHECK_OK(td_run_load_f32(run, EPOCHS, "test_repr", &x, &err), &err);
  CHECK_OK(td_vis_load_embedding_in(d, "test", M, &y, &err), &err);
  float *e = malloc((size_t)M * 2 * sizeof *e), ext[4];
  CHECK(m && e && !td_vismodel_encode(m, x.data, M, e));
  td_territory_extent(y.data, M, ext);
  double worst = 0;
  for (int i = 0; e && i < 2 * M; i++)
    worst = fmax(worst, fabs((double)e[i] - (double)((float *)y.data)[i]));
  fprintf(stderr, "moved encoder vs moved test positions: %.2g of %.3g\n",
          worst, (double)(ext[2] - ext[0]));
  CHECK(worst < 1e-3 * (double)(ext[2] - ext[0]));
  free(e);
  td_array_close(&x);
  td_array_close(&y);
  td_vismodel_free(m);
  td_run_close(run);
  td_set_threads(0);
}

/* mpiexec -np 2 tardis project gives the bytes of the blocks above. */
static void test_mpiexec(void) {
  const char *mpiexec = getenv("TD_MPIEXEC"), *bin = getenv("TD_BIN");
  CHECK(mpiexec && *mpiexec && bin && *bin);
  if (!mpiexec || !bin)
    return;
  char tmp[4100], ref[4200], mpi[4200], out[4300], cmd[20000];
  snprintf(tmp, sizeof tmp, "%s", td_t_tmpdir("blocks_mpi"));
  snprintf(ref, sizeof ref, "%s/ref", tmp);
  snprintf(mpi, sizeof mpi, "%s/mpi", tmp);
  snprintf(out, sizeof out, "%s/out.txt", tmp);
  CHECK(build_run(ref) == 0);
  CHECK(build_run(mpi) == 0);
  td_set_threads(1);
  project_in_blocks(ref);
  td_set_threads(0);
  snprintf(cmd, sizeof cmd,
           "'%s' -np 2 --oversubscribe %s '%s' project '%s' --threads 1 "
           "--res %d > '%s' 2>&1",
           mpiexec, geteuid() == 0 ? "--allow-run-as-root" : "", bin, mpi, RES,
           out);
  int st = td_t_system(cmd);
  char *text = td_t_slurp(out);
  if (st != 0)
    fprintf(stderr, "%s\nexit %d:\n%s\n", cmd, st, text ? text : "");
  CHECK_INT(st, ==, 0);
  if (text)
    CHECK_STR_CONTAINS(text, "projected 4 epochs");
  free(text);
  for (int ep = 1; ep <= EPOCHS; ep++)
    for (size_t f = 0; f < N_FILES; f++)
      CHECK(same_file(ref, mpi, ep, files[f]));
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "mpi")) {
    RUN(test_mpiexec);
  } else {
    RUN(test_affine);
    RUN(test_blocks);
  }
  return td_t_finish();
}
