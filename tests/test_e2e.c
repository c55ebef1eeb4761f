/* End to end through the `tardis` command on small real data: train on a
 * slice of Fashion-MNIST with label noise, validate, project, evaluate and
 * render; then the refusals that protect a user's work. */
#include <jansson.h>
#include <sys/wait.h>

#include "cli_util.h"
#include "harness.h"
#include "tardis/fsutil.h"

static char bin[4096], dir[4096];

/* Runs a shell command; returns its exit status. Output goes to out_path
 * when given. */
static int sh(const char *out_path, const char *fmt, const char *arg1,
              const char *arg2) {
  char cmd[40960], body[24576];
  snprintf(body, sizeof body, fmt, arg1, arg2);
  if (out_path)
    snprintf(cmd, sizeof cmd, "%s > '%s' 2>&1", body, out_path);
  else
    snprintf(cmd, sizeof cmd, "%s", body);
  return td_t_system(cmd);
}

/* A number of metrics.json that is finite and in [lo, hi]; NaN is written
 * as null, so null fails too. */
static int in_range(json_t *o, const char *key, double lo, double hi) {
  json_t *v = json_object_get(o, key);
  double x = json_is_number(v) ? json_number_value(v) : (double)NAN;
  if (isfinite(x) && x >= lo && x <= hi)
    return 1;
  char *txt = json_dumps(v, JSON_ENCODE_ANY);
  fprintf(stderr, "  eval --json: \"%s\" = %s, want a number in [%g, %g]\n",
          key, txt ? txt : "(missing)", lo, hi);
  free(txt);
  return 0;
}

/* `eval --json` output: every metric of every epoch present, finite and in
 * its range. */
static int eval_json_valid(const char *path, size_t epochs) {
  json_error_t je;
  json_t *root = json_load_file(path, 0, &je);
  if (!root) {
    fprintf(stderr, "  %s: %s\n", path, je.text);
    return 0;
  }
  json_t *eps = json_object_get(root, "epochs"), *e;
  int ok = json_array_size(eps) == epochs &&
           in_range(root, "temporal_corr", -1, 1) &&
           in_range(root, "temporal_corr_test", -1, 1);
  size_t i;
  const char *unit[] = {"nn@10",          "nn@15",      "nn@20",
                        "test_nn@10",     "test_nn@15", "test_nn@20",
                        "boundary_nn@15", "ppr",        "inv_conf_diff",
                        "boundary_kept"};
  json_array_foreach(eps, i, e) {
    for (size_t k = 0; ok && k < sizeof unit / sizeof unit[0]; k++)
      ok = in_range(e, unit[k], 0, 1);
    ok = ok && in_range(e, "n_boundary", 1, 1e9) &&
         in_range(e, "projection_seconds", 0, 3600) &&
         in_range(e, "epoch", 1, (double)epochs);
  }
  json_decref(root);
  return ok;
}

static void test_train_info_project_eval_render(void) {
  char run[4300], out[4300], png[4300], gif[4300], cmd[12000];
  snprintf(run, sizeof run, "%s/run", dir);
  snprintf(out, sizeof out, "%s/out.txt", dir);
  snprintf(cmd, sizeof cmd,
           "%%s train --out %%s --epochs 3 --limit 1500 --noise 0.1 --seed 4 "
           "--ood inverted --quiet");
  CHECK_INT(sh(out, cmd, bin, run), ==, 0);
  CHECK(td_t_file_has(out, "150 training labels corrupted"));
  CHECK_INT(sh(out, "%s info %s", bin, run), ==, 0);
  CHECK(td_t_file_has(out, "run is valid"));
  CHECK(td_t_file_has(out, "Ankle boot"));
  /* refusing to overwrite keeps the run intact */
  CHECK_INT(
      sh(out, "%s train --out %s --epochs 1 --limit 600 --quiet", bin, run), ==,
      1);
  CHECK(td_t_file_has(out, "--force"));
  CHECK_INT(sh(out, "%s info %s --quick", bin, run), ==, 0);
  CHECK(td_t_file_has(out, "1500"));

  CHECK_INT(sh(out, "%s project %s --res 64", bin, run), ==, 0);
  CHECK(td_t_file_has(out, "projected 3 epochs"));
  CHECK_INT(sh(out, "%s project %s", bin, run), ==, 0); /* resumable */
  CHECK(td_t_file_has(out, "projected 0 epochs (3 already done)"));
  /* DVI's original boundary samples: raw inputs through the checkpoint */
  CHECK_INT(sh(out, "%s project %s --boundary-space input --force --res 32",
               bin, run),
            ==, 0);
  CHECK(td_t_file_has(out, "projected 3 epochs"));
  /* stdout alone: the progress lines go to stderr */
  char evj[4400];
  snprintf(evj, sizeof evj, "%s/eval.json", dir);
  snprintf(cmd, sizeof cmd, "%%s eval %%s --json > '%s' 2>/dev/null", evj);
  CHECK_INT(sh(NULL, cmd, bin, run), ==, 0);
  CHECK(eval_json_valid(evj, 3));

  /* suspects: ranked with reasons, and the out-of-distribution set's
   * trajectories scored against the training clusters */
  CHECK_INT(sh(out, "%s suspects %s --k 5 --json", bin, run), ==, 0);
  CHECK(td_t_file_has(out, "\"why\""));
  CHECK_INT(sh(out, "%s suspects %s --abnormal-test --json", bin, run), ==, 0);
  CHECK(td_t_file_has(out, "\"ood\""));
  CHECK(td_t_file_has(out, "\"test\""));
  CHECK_INT(sh(out, "%s suspects %s --simulate --rounds 2 --k 10", bin, run),
            ==, 0);

  snprintf(png, sizeof png, "%s/e2.png", dir);
  snprintf(cmd, sizeof cmd, "%%s render %%s --epoch 2 --size 256 --out %s",
           png);
  CHECK_INT(sh(out, cmd, bin, run), ==, 0);
  CHECK(td_path_exists(png));
  snprintf(gif, sizeof gif, "%s/all.gif", dir);
  snprintf(cmd, sizeof cmd, "%%s render %%s --gif %s --size 128", gif);
  CHECK_INT(sh(out, cmd, bin, run), ==, 0);
  char *g = td_t_slurp(gif);
  CHECK(g && !memcmp(g, "GIF89a", 6));
  free(g);
}

/* The built-in CNN (batchnorm, augmentation) through every stage: the run
 * is valid (its head reproduces the logits, so recording ran in eval
 * mode), projects (also with boundary samples through the checkpoint),
 * ranks suspects and renders. */
static void test_cnn_end_to_end(void) {
  char run[4300], out[4300], png[4300], cmd[12000];
  snprintf(run, sizeof run, "%s/cnn", dir);
  snprintf(out, sizeof out, "%s/cnn.txt", dir);
  CHECK_INT(sh(out,
               "%s train --out %s --model cnn --batchnorm --augment "
               "shift,flip --epochs 2 --limit 400 --batch 32 --quiet",
               bin, run),
            ==, 0);
  CHECK(td_t_file_has(out, "trained 2 epochs"));
  CHECK_INT(sh(out, "%s info %s", bin, run), ==, 0);
  CHECK(td_t_file_has(out, "repr_dim    128"));
  CHECK(td_t_file_has(out, "run is valid"));
  CHECK_INT(sh(out, "%s project %s --res 32", bin, run), ==, 0);
  CHECK(td_t_file_has(out, "projected 2 epochs"));
  CHECK_INT(sh(out, "%s project %s --boundary-space input --force --res 32",
               bin, run),
            ==, 0);
  CHECK(td_t_file_has(out, "projected 2 epochs"));
  CHECK_INT(sh(out, "%s suspects %s --k 5 --json", bin, run), ==, 0);
  CHECK(td_t_file_has(out, "\"why\""));
  snprintf(png, sizeof png, "%s/cnn2.png", dir);
  snprintf(cmd, sizeof cmd, "%%s render %%s --epoch 2 --size 128 --out %s",
           png);
  CHECK_INT(sh(out, cmd, bin, run), ==, 0);
  CHECK(td_path_exists(png));
}

static void test_bad_input(void) {
  char run[4300], out[4300];
  snprintf(run, sizeof run, "%s/run", dir);
  snprintf(out, sizeof out, "%s/out.txt", dir);
  /* usage errors exit 2, runtime errors exit 1 with a message */
  CHECK_INT(sh(out, "%s train --epochs x --out %s", bin, run), ==, 2);
  CHECK_INT(sh(out, "%s frobnicate %s", bin, run), ==, 2);
  CHECK_INT(sh(out, "%s info %s/nonexistent", bin, dir), ==, 1);
  CHECK(td_t_file_has(out, "no such run directory"));
  CHECK_INT(sh(out, "%s project %s --method umap", bin, run), ==, 2);
  CHECK_INT(sh(out, "%s render %s --epoch 99 --out /dev/null", bin, run), ==,
            1);
  /* a corrupted epoch is named by info, and stays out of the way of the
   * epochs before it */
  char cmd[12000];
  snprintf(cmd, sizeof cmd,
           "printf 'garbage' > %s/epochs/0003/train_logits.npy && %%s info "
           "%%s",
           run);
  CHECK_INT(sh(out, cmd, bin, run), ==, 1);
  CHECK(td_t_file_has(out, "epochs/0003/train_logits.npy"));
  /* a missing dataset names the Debian package */
  snprintf(cmd, sizeof cmd,
           "%%s train --out %%s/r2 --data-dir %s/none --epochs 1 --quiet", dir);
  CHECK_INT(sh(out, cmd, bin, dir), ==, 1);
  CHECK(td_t_file_has(out, "dataset-fashion-mnist"));
  snprintf(cmd, sizeof cmd, "%s/r2", dir);
  CHECK(!td_path_exists(cmd));
  /* input-space boundary samples need the checkpoints */
  CHECK_INT(sh(out,
               "%s train --out %s/r3 --epochs 1 --limit 600 --no-model "
               "--quiet",
               bin, dir),
            ==, 0);
  CHECK_INT(sh(out, "%s project %s/r3 --boundary-space input", bin, dir), ==,
            1);
  CHECK(td_t_file_has(out, "model checkpoint"));
}

/* A trainer and a projection killed with SIGKILL leave valid runs: every
 * finished epoch intact, no half-written one visible, and the projection
 * resumes where it stopped. */
static void test_killed_processes(void) {
  char run[4300], out[4300], cmd[12000];
  snprintf(run, sizeof run, "%s/killed", dir);
  snprintf(out, sizeof out, "%s/out.txt", dir);
  snprintf(cmd, sizeof cmd,
           "%%s train --out %%s --epochs 400 --limit 3000 --quiet & pid=$!; "
           "i=0; while [ ! -d %s/epochs/0003 ] && [ $i -lt 2400 ]; do "
           "sleep 0.05; i=$((i+1)); done; "
           "kill -9 $pid; wait $pid; exit 0",
           run);
  CHECK_INT(sh(out, cmd, bin, run), ==, 0);
  CHECK_INT(sh(out, "%s info %s", bin, run), ==, 0);
  CHECK(td_t_file_has(out, "run is valid"));
  snprintf(cmd, sizeof cmd,
           "%%s project %%s --res 32 & pid=$!; "
           "i=0; while [ ! -d %s/vis/dvi/epoch_0002 ] && [ $i -lt 2400 ]; do "
           "sleep 0.05; i=$((i+1)); done; "
           "kill -9 $pid; wait $pid; exit 0",
           run);
  CHECK_INT(sh(out, cmd, bin, run), ==, 0);
  CHECK_INT(sh(out, "%s project %s --res 32 --epochs 1:4", bin, run), ==, 0);
  CHECK(td_t_file_has(out, "already done)"));
  CHECK_INT(sh(out, "%s eval %s", bin, run), ==, 0);
}

/* Training is seeded: the same seed and thread count give the same run. */
static void test_train_deterministic(void) {
  char out[4300], cmd[20000];
  snprintf(out, sizeof out, "%s/out.txt", dir);
  snprintf(cmd, sizeof cmd,
           "for r in d1 d2; do %%s train --out %%s/$r --epochs 2 --limit 1200 "
           "--noise 0.1 --seed 9 --no-model --quiet || exit 1; done; "
           "cmp %s/d1/epochs/0002/train_repr.npy %s/d2/epochs/0002/"
           "train_repr.npy && cmp %s/d1/train_labels.npy %s/d2/"
           "train_labels.npy",
           dir, dir, dir, dir);
  CHECK_INT(sh(out, cmd, bin, dir), ==, 0);
}

int main(void) {
  if (td_t_cli_setup(bin, sizeof bin, dir, sizeof dir, "e2e"))
    return 1;
  RUN(test_train_info_project_eval_render);
  RUN(test_cnn_end_to_end);
  RUN(test_bad_input);
  RUN(test_killed_processes);
  RUN(test_train_deterministic);
  return td_t_finish();
}
