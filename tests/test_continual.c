/* Continual learning: class-incremental training through the `tardis`
 * command (--tasks, --epochs-per-task, --replay) on a slice of
 * Fashion-MNIST, what it records (every sample every epoch, trained.npy,
 * the tasks in run.json, task and per-task accuracy in epoch.json), the
 * reader's refusals of malformed continual-learning files, and that replay
 * reduces forgetting. */
#include <jansson.h>
#include <sys/wait.h>

#include "cli_util.h"
#include "harness.h"
#include "run/run_json.h"
#include "tardis/fsutil.h"
#include "tardis/run.h"
#include "train/continual.h"

static char bin[4096], dir[4096];

static int spit(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f)
    return -1;
  fputs(text, f);
  return fclose(f);
}

static void test_parse_tasks(void) {
  int toc[10], n;
  td_err err = {0};
  CHECK_OK(td__tasks_parse("0-4,5-9", 10, toc, &n, &err), &err);
  CHECK_INT(n, ==, 2);
  CHECK_INT(toc[4], ==, 0);
  CHECK_INT(toc[5], ==, 1);
  CHECK_OK(td__tasks_parse("0+3,1+2,7", 10, toc, &n, &err), &err);
  CHECK_INT(n, ==, 3);
  CHECK_INT(toc[0], ==, 0);
  CHECK_INT(toc[3], ==, 0);
  CHECK_INT(toc[1], ==, 1);
  CHECK_INT(toc[2], ==, 1);
  CHECK_INT(toc[7], ==, 2);
  CHECK_INT(toc[4], ==, -1); /* in no task: never trained */
  CHECK_INT(td__tasks_parse("0-4,4-9", 10, toc, &n, &err), ==, TD_EARG);
  CHECK_STR_CONTAINS(err.msg, "class 4 is in task 0 and again in task 1");
  CHECK_INT(td__tasks_parse("0-10", 10, toc, &n, &err), ==, TD_EARG);
  CHECK_STR_CONTAINS(err.msg, "[0, 10)");
  static const char *const bad[] = {"",  "0-4,", ",1", "0--3",
                                    "a", "3-1",  "0 1"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    CHECK_INT(td__tasks_parse(bad[i], 10, toc, &n, &err), ==, TD_EARG);
}

/* Every epoch of `run` records all samples; trained.npy holds exactly the
 * current task's samples plus, from task 1 on, `replay` samples of the
 * earlier task's classes; epoch.json has the task and per-task accuracy. */
static void check_two_task_run(const char *run, int ept, int replay) {
  td_run *r;
  td_err err = {0};
  CHECK_OK(td_run_open(run, &r, &err), &err);
  const td_run_meta *m = td_run_get_meta(r);
  int ok = m->n_tasks == 2 && m->epochs_per_task == ept;
  for (int c = 0; c < 10; c++)
    ok = ok && m->task_of_class[c] == (c < 5 ? 0 : 1);
  const int32_t *y = td_run_train_labels(r);
  int64_t n = m->n_train;
  for (int i = 0; ok && i < td_run_n_epochs(r); i++) {
    int ep = td_run_epoch_number(r, i), task = (ep - 1) / ept;
    td_array repr = {0}, tr = {0};
    json_t *j = NULL;
    ok = td_run_load(r, ep, "train_repr", &repr, &err) == TD_OK &&
         repr.shape[0] == n && td_run_load(r, ep, "trained", &tr, &err) == 0 &&
         td__run_load_epoch_json(r, ep, &j, &err) == TD_OK;
    if (ok) {
      const int32_t *t = tr.data;
      int64_t k = tr.shape[0], cur = 0, old = 0, expect_cur = 0;
      for (int64_t s = 0; s < n; s++)
        expect_cur += (y[s] >= 5) == (task == 1);
      for (int64_t s = 0; s < k; s++) {
        ok = ok && (s == 0 || t[s] > t[s - 1]);
        if ((y[t[s]] >= 5) == (task == 1))
          cur++;
        else if (y[t[s]] < 5 && task == 1)
          old++; /* replayed: only from the earlier task */
        else
          ok = 0; /* a future task's sample */
      }
      ok = ok && cur == expect_cur && old == (task ? replay : 0);
      json_t *acc = json_object_get(j, "task_acc");
      ok = ok && json_integer_value(json_object_get(j, "task")) == task &&
           json_array_size(json_object_get(acc, "train")) == 2 &&
           json_array_size(json_object_get(acc, "test")) == 2 &&
           json_integer_value(json_object_get(j, "n_trained")) == k;
      if (!ok)
        fprintf(stderr,
                "  epoch %d: %lld trained (%lld current of %lld, %lld "
                "replayed)\n",
                ep, (long long)k, (long long)cur, (long long)expect_cur,
                (long long)old);
    }
    json_decref(j);
    td_array_close(&repr);
    td_array_close(&tr);
  }
  if (!ok && err.msg[0])
    fprintf(stderr, "  %s\n", err.msg);
  td_run_close(r);
  CHECK(ok);
}

static void test_two_task_run(void) {
  char run[4300], out[4300], args[9000];
  snprintf(run, sizeof run, "%s/two", dir);
  snprintf(out, sizeof out, "%s/out.txt", dir);
  snprintf(args, sizeof args,
           "train --out '%s' --tasks 0-4,5-9 --epochs-per-task 2 --replay 100 "
           "--limit 1200 --no-model --quiet",
           run);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 0);
  snprintf(args, sizeof args, "info '%s'", run);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 0);
  char *txt = td_t_slurp(out);
  CHECK_STR_CONTAINS(txt, "run is valid");
  free(txt);
  check_two_task_run(run, 2, 100);
  /* the summary JSON (info --json, the server's /api/run) has the tasks */
  snprintf(args, sizeof args, "info --quick --json '%s'", run);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 0);
  txt = td_t_slurp(out);
  json_t *o = txt ? json_loads(txt, 0, NULL) : NULL;
  free(txt);
  json_t *tasks = json_object_get(o, "tasks");
  int ok = json_array_size(tasks) == 2 &&
           json_array_size(json_array_get(tasks, 1)) == 5 &&
           json_integer_value(json_object_get(o, "epochs_per_task")) == 2;
  json_decref(o);
  CHECK(ok);
}

/* Copies the run `from` to `to` and replaces one of its files. */
static int corrupt(const char *from, const char *to, const char *file,
                   const char *text) {
  char cmd[16384], path[9000];
  snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", to, from, to);
  if (system(cmd) != 0)
    return -1;
  snprintf(path, sizeof path, "%s/%s", to, file);
  return text ? spit(path, text) : 0;
}

static int save_i32(const char *path, const int32_t *v, int64_t n) {
  td_array a;
  td_array_wrap(&a, TD_I32, 1, &n, (void *)(uintptr_t)v);
  return td_npy_save(path, &a, NULL);
}

/* `tardis info RUN` fails and says `msg`. */
static int info_refuses(const char *run, const char *msg) {
  char out[4300], args[9000];
  snprintf(out, sizeof out, "%s/bad.txt", dir);
  snprintf(args, sizeof args, "info '%s'", run);
  int rc = td_t_tardis(bin, out, args);
  char *txt = td_t_slurp(out);
  int ok = rc == 1 && txt && strstr(txt, msg);
  if (!ok)
    fprintf(stderr, "  info %s: exit %d, wanted \"%s\" in: %s\n", run, rc, msg,
            txt ? txt : "(no output)");
  free(txt);
  return ok;
}

static void test_reader_refuses(void) {
  char good[4300], bad[4300], path[9000];
  snprintf(good, sizeof good, "%s/two", dir);
  snprintf(bad, sizeof bad, "%s/bad", dir);
  /* trained.npy: out of range, then not sorted */
  int32_t out_of_range[3] = {0, 5, 1200}, unsorted[3] = {0, 7, 7};
  snprintf(path, sizeof path, "%s/epochs/0003/trained.npy", bad);
  CHECK_INT(corrupt(good, bad, "", NULL), ==, 0);
  CHECK_INT(save_i32(path, out_of_range, 3), ==, 0);
  CHECK(info_refuses(bad, "epochs/0003/trained.npy: entry 2 is 1200, "
                          "expected a training index in [0, 1200)"));
  CHECK_INT(save_i32(path, unsorted, 3), ==, 0);
  CHECK(info_refuses(bad, "trained.npy: entry 2 is 7, not above entry 1"));
  /* run.json: a class in two tasks, a class out of range, not a list */
  char *meta = NULL;
  snprintf(path, sizeof path, "%s/run.json", good);
  meta = td_t_slurp(path);
  CHECK(meta != NULL);
  char *at = strstr(meta, "\"tasks\"");
  CHECK(at != NULL);
  static const struct {
    const char *tasks, *msg;
  } cases[] = {
      {"\"tasks\": [[0,1],[1,2]]}\n",
       "class 1 is in task 0 and again in task 1"},
      {"\"tasks\": [[0,10]]}\n", "\"tasks\"[0][1] is 10, expected a class"},
      {"\"tasks\": \"0-4\"}\n", "field \"tasks\" should be a non-empty array"},
      {"\"tasks\": [[0],[]]}\n", "\"tasks\"[1] should be a non-empty array"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char text[16384];
    snprintf(text, sizeof text, "%.*s%s", (int)(at - meta), meta,
             cases[i].tasks);
    CHECK_INT(corrupt(good, bad, "run.json", text), ==, 0);
    td_run *r = NULL;
    td_err err = {0};
    CHECK_INT(td_run_open(bad, &r, &err), !=, TD_OK);
    CHECK_STR_CONTAINS(err.msg, cases[i].msg);
    CHECK(info_refuses(bad, cases[i].msg));
  }
  free(meta);
  /* epoch.json: a task index the run does not have */
  CHECK_INT(corrupt(good, bad, "epochs/0001/epoch.json",
                    "{\"epoch\": 1, \"task\": 2}\n"),
            ==, 0);
  CHECK(info_refuses(bad, "field \"task\" should be a task index in [0, 2)"));
  CHECK_INT(corrupt(good, bad, "epochs/0001/epoch.json",
                    "{\"epoch\": 1, \"task\": 0, \"task_acc\": "
                    "{\"test\": [0.5]}}\n"),
            ==, 0);
  CHECK(info_refuses(bad, "\"task_acc\".\"test\" should be an array of 2"));
}

static void test_cli_refusals(void) {
  char out[4300], args[9000];
  snprintf(out, sizeof out, "%s/refuse.txt", dir);
  static const struct {
    const char *args, *msg;
  } cases[] = {
      {"--tasks 0-4,5-9 --epochs-per-task 2 --epochs 5",
       "--epochs 5 conflicts with --tasks: 2 tasks x --epochs-per-task 2 = 4"},
      {"--replay 10", "--epochs-per-task and --replay need --tasks"},
      {"--tasks 0-4,5-9", "--tasks needs --epochs-per-task"},
      {"--tasks 0-4,3-9 --epochs-per-task 1", "class 3 is in task 0 and again"},
      {"--tasks 0-4,x --epochs-per-task 1", "expected tasks such as 0-4,5-9"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    snprintf(args, sizeof args, "train --out '%s/refused' --limit 300 %s", dir,
             cases[i].args);
    CHECK_INT(td_t_tardis(bin, out, args), ==, 1);
    char *txt = td_t_slurp(out);
    int ok = txt && strstr(txt, cases[i].msg);
    if (!ok)
      fprintf(stderr, "  train %s: wanted \"%s\" in: %s\n", cases[i].args,
              cases[i].msg, txt ? txt : "(no output)");
    free(txt);
    CHECK(ok);
  }
}

/* Test accuracy of task 0 at the last epoch of a two-task run. */
static double final_task0_test_acc(const char *run, int epoch) {
  char path[9000];
  snprintf(path, sizeof path, "%s/epochs/%04d/epoch.json", run, epoch);
  json_t *j = json_load_file(path, 0, NULL);
  json_t *acc = json_object_get(json_object_get(j, "task_acc"), "test");
  double a = json_is_number(json_array_get(acc, 0))
                 ? json_number_value(json_array_get(acc, 0))
                 : -1;
  json_decref(j);
  return a;
}

/* Without replay a class-incremental MLP forgets the first task completely
 * once it trains on the second (its head stops predicting the old classes:
 * task-0 test accuracy ~0.00 here); a replay buffer of 10 % keeps it clearly
 * above (~0.24 here). The bounds, <= 0.05 and >= 0.12 with a 0.10 gap, are
 * far from both measured values; the training is deterministic for a seed
 * at any thread count. */
static void test_replay_reduces_forgetting(void) {
  char out[4300], args[9000], r0[4300], r1[4300];
  snprintf(out, sizeof out, "%s/replay.txt", dir);
  snprintf(r0, sizeof r0, "%s/noreplay", dir);
  snprintf(r1, sizeof r1, "%s/replay", dir);
  const char *common = "--tasks 0-4,5-9 --epochs-per-task 3 --limit 3000 "
                       "--optimizer adam --no-model --quiet";
  snprintf(args, sizeof args, "train --out '%s' %s", r0, common);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 0);
  snprintf(args, sizeof args, "train --out '%s' %s --replay 300", r1, common);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 0);
  double a0 = final_task0_test_acc(r0, 6), a1 = final_task0_test_acc(r1, 6);
  fprintf(stderr,
          "  task-0 test accuracy after task 1: %.3f without replay, "
          "%.3f with 300 replayed\n",
          a0, a1);
  CHECK(a0 >= 0 && a0 <= 0.05);
  CHECK(a1 >= 0.12 && a1 >= a0 + 0.10);
  /* before the second task both runs are the same run */
  CHECK_NEAR(final_task0_test_acc(r0, 3), final_task0_test_acc(r1, 3), 0);
}

int main(void) {
  if (td_t_cli_setup(bin, sizeof bin, dir, sizeof dir, "continual"))
    return 1;
  RUN(test_parse_tasks);
  RUN(test_two_task_run);
  RUN(test_reader_refuses);
  RUN(test_cli_refusals);
  RUN(test_replay_reduces_forgetting);
  return td_t_finish();
}
