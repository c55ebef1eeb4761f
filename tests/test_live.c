/* Live mode through the `tardis` command: `tardis watch` follows a run that
 * `tardis train` is writing, a killed trainer and a removed run directory,
 * and `serve --follow` pushing projections over SSE. Every wait polls with
 * a deadline. */
#include <jansson.h>
#include <sys/wait.h>

#include "cli_util.h"
#include "harness.h"
#include "tardis/fsutil.h"
#include "tardis/project.h"
#include "tardis/vis.h"

static char bin[4096], dir[4096];

/* Watching an empty directory while 6 epochs are trained into it: every
 * epoch projected, the live lines (not back-filled) in increasing order,
 * the watcher stops by itself, and the result passes `tardis eval`. */
static void test_watch_training(void) {
  char cmd[20000], out[4300];
  snprintf(out, sizeof out, "%s/w1.jsonl", dir);
  snprintf(cmd, sizeof cmd,
           "cd %s && rm -rf w1 && mkdir w1 && "
           "(timeout 240 %s watch w1 --json --res 32 > w1.jsonl 2> w1.err; "
           "echo $? > w1.rc) & "
           "%s train --out %s/w1 --epochs 6 --limit 600 --quiet > /dev/null "
           "&& wait",
           dir, bin, bin, dir);
  CHECK_INT(td_t_system(cmd), ==, 0);
  snprintf(cmd, sizeof cmd, "%s/w1.rc", dir);
  char *rc = td_t_slurp(cmd);
  CHECK(rc && atoi(rc) == 0);
  free(rc);
  char *txt = td_t_slurp(out);
  CHECK(txt != NULL);
  int seen[7] = {0}, last_live = 0, lines = 0, ordered = 1;
  for (char *line = txt ? strtok(txt, "\n") : NULL; line;
       line = strtok(NULL, "\n")) {
    json_t *j = json_loads(line, 0, NULL);
    CHECK(j != NULL);
    if (!j)
      break;
    if (json_object_get(j, "alert")) { /* an alert line, checked below */
      json_decref(j);
      continue;
    }
    int ep = (int)json_integer_value(json_object_get(j, "epoch"));
    int back = json_is_true(json_object_get(j, "backfill"));
    int redo = json_is_true(json_object_get(j, "redo"));
    int draft = json_is_true(json_object_get(j, "draft"));
    CHECK(ep >= 1 && ep <= 6);
    if (ep >= 1 && ep <= 6 && !draft)
      seen[ep]++; /* each epoch's full fit exactly once */
    if (!back && !redo && !draft) {
      ordered = ordered && ep > last_live;
      last_live = ep;
    }
    lines++;
    json_decref(j);
  }
  free(txt);
  for (int e = 1; e <= 6; e++) {
    CHECK_INT(seen[e], ==, 1);
    snprintf(cmd, sizeof cmd, "%s/w1", dir);
    CHECK(td_vis_epoch_final(cmd, "dvi", e)); /* no draft left */
  }
  CHECK(ordered);
  CHECK_INT(lines, <=, 12);
  snprintf(cmd, sizeof cmd, "%s eval %s/w1 > %s/w1.eval 2>&1", bin, dir, dir);
  CHECK_INT(td_t_system(cmd), ==, 0);
  /* The alerts the watcher kept up to date epoch by epoch are the ones
   * `tardis alerts` computes afterwards, byte for byte. */
  char live_alerts[4400], live_geom[4400];
  snprintf(live_alerts, sizeof live_alerts, "%s/w1/alerts.jsonl", dir);
  snprintf(live_geom, sizeof live_geom, "%s/w1/geometry.jsonl", dir);
  char *la = td_t_slurp(live_alerts), *lg = td_t_slurp(live_geom);
  CHECK(la != NULL && lg != NULL);
  snprintf(cmd, sizeof cmd, "%s alerts %s/w1 > /dev/null 2>&1", bin, dir);
  int arc = td_t_system(cmd);
  char *ba = td_t_slurp(live_alerts), *bg = td_t_slurp(live_geom);
  int same = ba && bg && !strcmp(la, ba) && !strcmp(lg, bg);
  int n_geom = 0;
  for (const char *q = lg; q && *q; q++)
    n_geom += *q == '\n';
  free(la);
  free(lg);
  free(ba);
  free(bg);
  CHECK_INT(arc, ==, 0);
  CHECK(same);
  CHECK_INT(n_geom, ==, 6); /* one line per epoch */
}

/* kill -9 of the trainer mid-run: the watcher keeps running (no finished
 * marker), stops cleanly on SIGTERM, and the run is valid. Then the run
 * directory removed under a watcher: a clear error and exit status 1. */
static void test_killed_trainer_and_removed_run(void) {
  char cmd[20000];
  snprintf(cmd, sizeof cmd,
           "cd %s || exit 9; rm -rf k; mkdir k; "
           "%s watch k --res 32 > k.out 2> k.err & w=$!; "
           "%s train --out %s/k --epochs 400 --limit 3000 --quiet & t=$!; "
           "i=0; while [ ! -d k/epochs/0002 ] && [ $i -lt 3000 ]; do "
           "sleep 0.05; i=$((i+1)); done; kill -9 $t; wait $t; "
           "i=0; while ! grep -q epoch k.out && [ $i -lt 3000 ]; do "
           "sleep 0.05; i=$((i+1)); done; "
           "sleep 0.5; kill -0 $w || exit 3; kill -TERM $w; wait $w; "
           "rc=$?; [ $rc = 0 ] && grep -q stopped k.err && exit 0; "
           "echo \"watch exited $rc; its stderr:\" >&2; cat k.err >&2; "
           "exit 1",
           dir, bin, bin, dir);
  CHECK_INT(td_t_system(cmd), ==, 0);
  snprintf(cmd, sizeof cmd, "%s info %s/k > /dev/null 2>&1", bin, dir);
  CHECK_INT(td_t_system(cmd), ==, 0);

  snprintf(cmd, sizeof cmd,
           "cd %s || exit 9; %s watch k --res 32 > r.out 2> r.err & w=$!; "
           "i=0; while ! grep -q following r.err && [ $i -lt 3000 ]; do "
           "sleep 0.05; i=$((i+1)); done; "
           "n=$(ls k/epochs | grep -vc '^[.]'); i=0; "
           "while [ \"$(ls k/vis/dvi 2>/dev/null | grep -c '^epoch_')\" "
           "-lt $n ] && [ $i -lt 3000 ]; do sleep 0.05; i=$((i+1)); done; "
           "sleep 0.2; rm -rf k; wait $w; rc=$?; "
           "[ $rc = 1 ] && grep -q disappeared r.err && exit 0; "
           "echo \"watch exited $rc; its stderr:\" >&2; cat r.err >&2; "
           "exit 1",
           dir, bin);
  CHECK_INT(td_t_system(cmd), ==, 0);
}

#include <poll.h>
#include <signal.h>
#include <time.h>

#include "http_client.h"

/* The port `tardis serve` printed into the file path, waiting up to 60 s. */
static int port_of(const char *path) {
  int port = 0;
  for (double dl = td_t_now_s() + 60; !port && td_t_now_s() < dl;) {
    char *txt = td_t_slurp(path);
    const char *at = txt ? strstr(txt, "127.0.0.1:") : NULL;
    if (at)
      port = atoi(at + 10);
    free(txt);
    if (!port)
      usleep(50000);
  }
  return port;
}

/* `train --serve` (serve --follow on the run being trained): `projection`
 * events arrive over SSE while it trains — the first epoch's and the
 * newest one's — each after its epoch's `epoch` event. */
static void test_serve_follow_events(void) {
  char cmd[20000], path[4300];
  snprintf(cmd, sizeof cmd,
           "cd %s && rm -rf s && %s train --out s --epochs 6 --limit 3000 "
           "--quiet --serve --port 0 > s.out 2> s.err & echo $! > %s/s.pid",
           dir, bin, dir);
  CHECK_INT(td_t_system(cmd), ==, 0);
  snprintf(path, sizeof path, "%s/s.pid", dir);
  char *txt = td_t_slurp(path);
  int pid = txt ? atoi(txt) : 0;
  free(txt);
  CHECK(pid > 0);
  snprintf(path, sizeof path, "%s/s.err", dir);
  int port = port_of(path);
  CHECK(port > 0);
  int fd = port > 0 ? td_t_connect(port) : -1;
  CHECK(fd >= 0);
  if (fd >= 0) {
    /* Last-Event-ID 0: the events sent before this client connected too */
    const char req[] = "GET /api/events HTTP/1.1\r\nHost: "
                       "127.0.0.1\r\nLast-Event-ID: 0\r\n\r\n";
    td_t_send_all(fd, req, sizeof req - 1);
    static char acc[1 << 20];
    size_t len = 0;
    /* The first epoch is drawn at once (a cold draft) and the newest one
     * soon (a draft, or its fit); the epochs between may wait for their
     * fits after training (drafts keep to a lag budget), which under ASan
     * on a loaded machine take minutes: not waited for here. */
    double dl = td_t_now_s() + 240;
    static const int wanted[] = {1, 6};
    for (int w = 0; w < 2; w++) {
      char needle[96];
      snprintf(needle, sizeof needle, "event: projection\ndata: {\"epoch\":%d,",
               wanted[w]);
      int ok = td_t_read_until(fd, acc, sizeof acc, &len, needle, 1,
                               (int)((dl - td_t_now_s()) * 1000));
      if (!ok)
        fprintf(stderr, "  no projection event for epoch %d; stream: %s\n",
                wanted[w], acc);
      CHECK(ok);
    }
    /* every epoch drawn so far was announced as recorded first */
    for (int e = 1; e <= 6; e++) {
      char needle[96];
      snprintf(needle, sizeof needle, "event: projection\ndata: {\"epoch\":%d,",
               e);
      const char *drawn = strstr(acc, needle);
      snprintf(needle, sizeof needle, "event: epoch\ndata: {\"epoch\":%d,", e);
      const char *rec = strstr(acc, needle);
      if (drawn && !(rec && rec < drawn))
        fprintf(stderr, "  epoch %d drawn before recorded; stream: %s\n", e,
                acc);
      CHECK(!drawn || (rec && rec < drawn));
    }
    close(fd);
  }
  if (pid > 0) {
    /* SIGINT only once training is done: the shell started the trainer
     * with SIGINT ignored (an asynchronous command), and `train --serve`
     * blocks it for its sigwait only then — earlier it would be lost. */
    snprintf(path, sizeof path, "%s/s.err", dir);
    int done = 0;
    for (double dl = td_t_now_s() + 300; !done && td_t_now_s() < dl;) {
      txt = td_t_slurp(path);
      done = txt && strstr(txt, "training done");
      free(txt);
      if (!done)
        usleep(50000);
    }
    CHECK(done);
    kill(pid, SIGINT);
    /* the fit under way is finished first (it cannot be cut short): under
     * ASan on a loaded machine that takes a while */
    for (double dl = td_t_now_s() + 300;
         kill(pid, 0) == 0 && td_t_now_s() < dl;)
      usleep(50000);
    int gone = kill(pid, 0) != 0;
    if (!done || !gone) {
      txt = td_t_slurp(path);
      fprintf(stderr, "  train --serve %s; its stderr:\n%s\n",
              gone ? "exited" : "still running after SIGINT",
              txt ? txt : "(none)");
      free(txt);
      kill(pid, SIGKILL);
    }
    CHECK(gone);
  }
}

/* A draft: placed by an earlier fitted epoch's model, marked in its
 * projection.json, a valid vis epoch; never a warm start; `tardis project`
 * (td_project) counts it as not projected and replaces it by a fit. */
static void test_draft(void) {
  char cmd[20000], run_dir[4200];
  snprintf(run_dir, sizeof run_dir, "%s/d", dir);
  td_run *run = td_t_train_open(bin, dir, "d", "--epochs 3 --limit 600");
  CHECK(run != NULL);
  td_err err;
  td_project_opts o;
  td_project_opts_default(&o);
  o.territory_res = 32;
  o.epoch_to = 1;
  td_project_summary sum;
  CHECK_INT(td_project(run, &o, &sum, &err), ==, TD_OK);
  /* no fitted epoch 2: no draft from it */
  CHECK_INT(td_project_draft(run, &o, 3, 2, NULL, &err), ==, TD_ENOENT);
  double secs = -1;
  CHECK_INT(td_project_draft(run, &o, 3, 1, &secs, &err), ==, TD_OK);
  CHECK(secs >= 0);
  CHECK(td_vis_epoch_done(run_dir, "dvi", 3));
  CHECK(td_vis_epoch_is_draft(run_dir, "dvi", 3));
  CHECK(!td_vis_epoch_final(run_dir, "dvi", 3));
  CHECK(td_vis_epoch_final(run_dir, "dvi", 1));
  char edir[4400];
  CHECK_INT(td_vis_epoch_dir(run_dir, "dvi", 3, edir, sizeof edir), ==, TD_OK);
  td_vis_dims d;
  td_vis_dims_of_run(run, &d);
  CHECK_INT(td_vis_check_epoch(edir, "dvi", &d, &err), ==, TD_OK);
  char pj[4500];
  snprintf(pj, sizeof pj, "%s/projection.json", edir);
  json_t *j = json_load_file(pj, 0, NULL);
  CHECK_INT((int)json_integer_value(json_object_get(j, "draft_from")), ==, 1);
  json_decref(j);
  /* `tardis project` fits epochs 2 and 3: the draft is not "done" */
  o.epoch_to = 0;
  CHECK_INT(td_project(run, &o, &sum, &err), ==, TD_OK);
  CHECK_INT(sum.projected, ==, 2);
  CHECK(td_vis_epoch_final(run_dir, "dvi", 3));
  td_run_close(run);
  snprintf(cmd, sizeof cmd, "%s eval %s > /dev/null 2>&1", bin, run_dir);
  CHECK_INT(td_t_system(cmd), ==, 0);
}

/* `serve --follow` on an empty directory: it serves at once, /api/run
 * answers 503 "waiting" with Retry-After, and once a run is trained into
 * the directory the epochs and their projections arrive as events. A
 * directory that does not exist is a clear error. */
static void test_serve_follow_empty(void) {
  char cmd[20000], path[4300];
  snprintf(cmd, sizeof cmd, "%s serve %s/nope --follow --port 0 2> %s/n.err",
           bin, dir, dir);
  CHECK_INT(td_t_system(cmd), ==, 1);
  snprintf(path, sizeof path, "%s/n.err", dir);
  char *msg = td_t_slurp(path);
  CHECK(msg && strstr(msg, "no such directory"));
  free(msg);
  snprintf(cmd, sizeof cmd,
           "cd %s && rm -rf e && mkdir e && %s serve e --follow --port 0 "
           "> e.out 2> e.err & echo $! > %s/e.pid",
           dir, bin, dir);
  CHECK_INT(td_t_system(cmd), ==, 0);
  snprintf(path, sizeof path, "%s/e.pid", dir);
  char *txt = td_t_slurp(path);
  int pid = txt ? atoi(txt) : 0;
  free(txt);
  CHECK(pid > 0);
  snprintf(path, sizeof path, "%s/e.out", dir);
  int port = port_of(path);
  CHECK(port > 0);
  int fd = port > 0 ? td_t_connect(port) : -1;
  CHECK(fd >= 0);
  if (fd >= 0) {
    static char acc[1 << 20];
    size_t len = 0;
    char run_req[128];
    int rl =
        snprintf(run_req, sizeof run_req,
                 "GET /api/run HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", port);
    td_t_send_all(fd, run_req, (size_t)rl);
    CHECK(td_t_read_until(fd, acc, sizeof acc, &len, "\"waiting\":true", 1,
                          30000));
    CHECK(strstr(acc, " 503 ") && strstr(acc, "Retry-After: 1"));
    close(fd);
    fd = td_t_connect(port);
    char req[128];
    int ql = snprintf(req, sizeof req,
                      "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n",
                      port);
    td_t_send_all(fd, req, (size_t)ql);
    len = 0;
    snprintf(cmd, sizeof cmd,
             "cd %s && %s train --out e --epochs 2 --limit 600 --quiet "
             "> /dev/null",
             dir, bin);
    CHECK_INT(td_t_system(cmd), ==, 0);
    double dl = td_t_now_s() + 120;
    CHECK(td_t_read_until(fd, acc, sizeof acc, &len,
                          "event: epoch\ndata: {\"epoch\":1,", 1,
                          (int)((dl - td_t_now_s()) * 1000)));
    CHECK(td_t_read_until(fd, acc, sizeof acc, &len,
                          "event: projection\ndata: {\"epoch\":2,", 1,
                          (int)((dl - td_t_now_s()) * 1000)));
    close(fd);
    /* The run is finished; once its drafts are redone /api/run says the
     * server has nothing left to draw (the page's "live" toggle reads it). */
    int idle = 0;
    while (!idle && td_t_now_s() < dl) {
      fd = td_t_connect(port);
      if (fd < 0)
        break;
      len = 0;
      td_t_send_all(fd, run_req, (size_t)rl);
      /* "drawing" is the last member: the body ends "true}" or "false}" */
      if (td_t_read_until(fd, acc, sizeof acc, &len, "\"drawing\":", 1,
                          10000)) {
        CHECK(td_t_read_until(fd, acc, sizeof acc, &len, "e}", 1, 10000));
        CHECK(strstr(acc, "\"finished\":true"));
        idle = strstr(acc, "\"drawing\":false") != NULL;
      }
      close(fd);
      if (!idle)
        usleep(200000);
    }
    CHECK(idle);
  }
  if (pid > 0) {
    kill(pid, SIGINT);
    for (double dl = td_t_now_s() + 30; kill(pid, 0) == 0 && td_t_now_s() < dl;)
      usleep(50000);
    CHECK(kill(pid, 0) != 0);
  }
}

int main(void) {
  if (td_t_cli_setup(bin, sizeof bin, dir, sizeof dir, "live"))
    return 1;
  RUN(test_watch_training);
  RUN(test_killed_trainer_and_removed_run);
  RUN(test_serve_follow_events);
  RUN(test_draft);
  RUN(test_serve_follow_empty);
  return td_t_finish();
}
