/* The cold start of live mode: a cold draft (td_drafter_cold, a model
 * fitted on a sample of one epoch) draws the first epochs before any is
 * fully fitted, and the full fits that replace the drafts — the cold one
 * now yields to the trainer on one thread like the others — leave RUN/vis/
 * bit-identical to what `tardis project` writes offline at another thread
 * count (the stage timings of projection.json aside, as in
 * test_determinism.c). */
#include <jansson.h>
#include <sys/wait.h>

#include "cli_util.h"
#include "harness.h"
#include "tardis/fsutil.h"
#include "tardis/project.h"
#include "tardis/vis.h"

static char bin[4096], dir[4096];

/* projection.json of epoch e: a draft's "draft_from" and "draft_sample"
 * (-1 where absent). */
static void draft_keys(const char *run_dir, int e, int *from, int *sample) {
  char edir[4400], pj[4500];
  *from = *sample = -1;
  if (td_vis_epoch_dir(run_dir, "dvi", e, edir, sizeof edir) != TD_OK)
    return;
  snprintf(pj, sizeof pj, "%s/projection.json", edir);
  json_t *j = json_load_file(pj, 0, NULL);
  json_t *f = json_object_get(j, TD_VIS_DRAFT_FROM_KEY);
  json_t *s = json_object_get(j, TD_VIS_DRAFT_SAMPLE_KEY);
  if (f)
    *from = (int)json_integer_value(f);
  if (s)
    *sample = (int)json_integer_value(s);
  json_decref(j);
}

/* A cold draft of epoch 1 from a sample of 300 of its 800 points, a draft
 * of epoch 3 by the same model; both valid vis epochs marked as drafts
 * with their sample; a sample larger than the epoch takes all of it; and
 * `tardis project` replaces both with full fits. */
static void test_drafter(void) {
  char run_dir[4200];
  snprintf(run_dir, sizeof run_dir, "%s/c", dir);
  td_run *run = td_t_train_open(bin, dir, "c", "--epochs 3 --limit 800");
  CHECK(run != NULL);
  td_err err;
  td_project_opts o;
  td_project_opts_default(&o);
  o.territory_res = 32;
  td_drafter *d = NULL;
  double secs = -1;
  CHECK_INT(td_drafter_cold(run, &o, 1, 1, &d, &secs, &err), ==, TD_EARG);
  CHECK(d == NULL);
  CHECK_INT(td_drafter_cold(run, &o, 1, 300, &d, &secs, &err), ==, TD_OK);
  CHECK(d != NULL && secs >= 0);
  if (!d) {
    td_run_close(run);
    return;
  }
  CHECK_INT(td_drafter_epoch(d), ==, 1);
  CHECK_INT(td_drafter_draw(d, 3, &secs, &err), ==, TD_OK);
  td_drafter_close(d);
  td_vis_dims dims;
  td_vis_dims_of_run(run, &dims);
  for (int e = 1; e <= 3; e += 2) {
    char edir[4400];
    CHECK(td_vis_epoch_is_draft(run_dir, "dvi", e));
    CHECK(!td_vis_epoch_final(run_dir, "dvi", e));
    CHECK_INT(td_vis_epoch_dir(run_dir, "dvi", e, edir, sizeof edir), ==,
              TD_OK);
    CHECK_INT(td_vis_check_epoch(edir, "dvi", &dims, &err), ==, TD_OK);
    int from, sample;
    draft_keys(run_dir, e, &from, &sample);
    CHECK_INT(from, ==, 1);
    CHECK_INT(sample, ==, 300);
  }
  CHECK_INT(td_drafter_cold(run, &o, 2, 5000, &d, NULL, &err), ==, TD_OK);
  td_drafter_close(d);
  int from, sample;
  draft_keys(run_dir, 2, &from, &sample);
  CHECK_INT(from, ==, 2);
  CHECK_INT(sample, ==, 800);
  td_project_summary sum;
  CHECK_INT(td_project(run, &o, &sum, &err), ==, TD_OK);
  CHECK_INT(sum.projected, ==, 3);
  for (int e = 1; e <= 3; e++)
    CHECK(td_vis_epoch_final(run_dir, "dvi", e));
  td_run_close(run);
}

/* The timing fields of projection.json: the only bytes that may differ. */
static const char *const timing_keys[] = {
    "seconds",     "boundary_seconds",  "knn_seconds",
    "fit_seconds", "territory_seconds", "write_seconds"};

static int same_untimed_json(const char *a, const char *b) {
  json_t *ja = json_load_file(a, 0, NULL), *jb = json_load_file(b, 0, NULL);
  for (size_t i = 0; i < sizeof timing_keys / sizeof *timing_keys; i++) {
    json_object_del(ja, timing_keys[i]);
    json_object_del(jb, timing_keys[i]);
  }
  int same = ja && jb && json_equal(ja, jb);
  json_decref(ja);
  json_decref(jb);
  return same;
}

/* RUN/vis/ of dir/name holds every epoch 1..n fully fitted, the same as a
 * copy of the run projected offline with --threads 2. */
static void check_same_as_offline(const char *name, int n) {
  char cmd[20000], run_dir[4200];
  snprintf(run_dir, sizeof run_dir, "%s/%s", dir, name);
  for (int e = 1; e <= n; e++)
    CHECK(td_vis_epoch_final(run_dir, "dvi", e));
  snprintf(cmd, sizeof cmd,
           "cd %s && rm -rf %s.off && cp -r %s %s.off && rm -rf %s.off/vis && "
           "%s project %s.off --threads 2 > %s.off.log 2>&1",
           dir, name, name, name, name, bin, name, name);
  CHECK_INT(td_t_system(cmd), ==, 0);
  /* every file but projection.json byte for byte, and no file only in one */
  snprintf(cmd, sizeof cmd,
           "cd %s && diff -r -q -x projection.json %s/vis %s.off/vis >&2", dir,
           name, name);
  CHECK_INT(td_t_system(cmd), ==, 0);
  int n_model = 0;
  for (int e = 1; e <= n; e++) {
    char a[4700], b[4700], pa[4500], pb[4500];
    snprintf(a, sizeof a, "%s/%s", dir, name);
    snprintf(b, sizeof b, "%s/%s.off", dir, name);
    CHECK_INT(td_vis_epoch_dir(a, "dvi", e, pa, sizeof pa), ==, TD_OK);
    CHECK_INT(td_vis_epoch_dir(b, "dvi", e, pb, sizeof pb), ==, TD_OK);
    snprintf(a, sizeof a, "%s/projection.json", pa);
    snprintf(b, sizeof b, "%s/projection.json", pb);
    CHECK(same_untimed_json(a, b));
    snprintf(a, sizeof a, "%s/model", pa);
    n_model += td_path_is_dir(a);
  }
  CHECK_INT(n_model, ==, n); /* the comparison covered the models */
}

/* `tardis watch` follows a training from its empty directory: a cold draft
 * is drawn (the first draft before any fit), every epoch ends fully fitted,
 * and RUN/vis/ is the same as a copy of the run projected offline with
 * --threads 2. */
static void test_live_matches_offline(void) {
  char cmd[20000];
  snprintf(cmd, sizeof cmd,
           "cd %s && rm -rf w w2 && mkdir w && "
           "(timeout 300 %s watch w --json > w.jsonl 2> w.err; "
           "echo $? > w.rc) & "
           "%s train --out %s/w --epochs 4 --limit 1500 --seed 3 --quiet "
           "> /dev/null && wait",
           dir, bin, bin, dir);
  CHECK_INT(td_t_system(cmd), ==, 0);
  snprintf(cmd, sizeof cmd, "grep -qx 0 %s/w.rc", dir);
  CHECK_INT(td_t_system(cmd), ==, 0);
  snprintf(cmd, sizeof cmd, "grep -q '\"draft\":true,\"cold\":true' %s/w.jsonl",
           dir);
  CHECK_INT(td_t_system(cmd), ==, 0);
  check_same_as_offline("w", 4);
}

/* The number (from 1) of the first line of txt that starts with head and
 * holds also, or 0. */
static int line_of(const char *txt, const char *head, const char *also) {
  int n = 1;
  for (const char *l = txt; l && *l; n++) {
    const char *end = strchr(l, '\n');
    size_t len = end ? (size_t)(end - l) : strlen(l);
    const char *a = strstr(l, also);
    if (!strncmp(l, head, strlen(head)) && a && a < l + len)
      return n;
    l = end ? end + 1 : NULL;
  }
  return 0;
}

/* `tardis watch` on a run that finished with nothing projected: before the
 * in-order fits back-fill epochs 1..5, the newest epoch is shown by a
 * preview (a full fit out of order, a draft marked "draft_fitted"); the
 * in-order fit replaces it, and RUN/vis/ ends as `tardis project` draws it. */
static void test_preview_after_training(void) {
  char cmd[20000];
  snprintf(cmd, sizeof cmd,
           "cd %s && rm -rf p && %s train --out p --epochs 5 --limit 1200 "
           "--seed 4 --quiet > /dev/null && "
           "timeout 600 %s watch p --json > p.jsonl 2> p.err",
           dir, bin, bin);
  CHECK_INT(td_t_system(cmd), ==, 0);
  char path[4300];
  snprintf(path, sizeof path, "%s/p.jsonl", dir);
  char *log = td_t_slurp(path);
  CHECK(log != NULL);
  int pv = line_of(log, "{\"epoch\":5,", "\"preview\":true");
  int fit1 = line_of(log, "{\"epoch\":1,\"draft\":false,", "");
  int fit5 = line_of(log, "{\"epoch\":5,\"draft\":false,", "");
  CHECK(pv > 0 && fit1 > 0 && fit5 > 0);
  CHECK(pv < fit1); /* shown before the back-fill starts */
  if (pv <= 0 || fit1 <= 0 || fit5 <= 0 || pv > fit1)
    fprintf(stderr, "watch printed:\n%s\n", log ? log : "(nothing)");
  free(log);
  check_same_as_offline("p", 5);
}

int main(void) {
  if (td_t_cli_setup(bin, sizeof bin, dir, sizeof dir, "live_cold"))
    return 1;
  RUN(test_drafter);
  RUN(test_live_matches_offline);
  RUN(test_preview_after_training);
  return td_t_finish();
}
