/* Feedback sessions in SQLite: persistence, concurrent writers (two
 * connections, two processes), and no loss of committed verdicts when the
 * writing process is killed. */
#include <signal.h>
#include <sys/wait.h>

#include "harness.h"
#include "tardis/feedback.h"

static char dir[4200];

static void test_persist_reopen(void) {
  td_err err;
  td_fb *db;
  CHECK_OK(td_fb_open(dir, &db, &err), &err);
  int64_t s;
  CHECK_OK(td_fb_session_create(db, "first", &s, &err), &err);
  int32_t idx[] = {5, 9, 11};
  int8_t v[] = {1, 0, 1};
  int round;
  CHECK_OK(td_fb_record(db, s, idx, v, 3, &round, &err), &err);
  CHECK_INT(round, ==, 1);
  int32_t idx2[] = {9, 20};
  int8_t v2[] = {1, 0}; /* 9 changes its verdict: the latest wins */
  CHECK_OK(td_fb_record(db, s, idx2, v2, 2, &round, &err), &err);
  CHECK_INT(round, ==, 2);
  td_fb_close(db);

  CHECK_OK(td_fb_open(dir, &db, &err), &err);
  td_fb_session ss;
  CHECK_OK(td_fb_session_get(db, s, &ss, &err), &err);
  CHECK(!strcmp(ss.name, "first"));
  CHECK_INT(ss.n_accept, ==, 3);
  CHECK_INT(ss.n_reject, ==, 1);
  CHECK_INT(ss.rounds, ==, 2);
  int8_t verdict[30];
  CHECK_OK(td_fb_load(db, s, 30, verdict, &err), &err);
  CHECK_INT(verdict[5], ==, 1);
  CHECK_INT(verdict[9], ==, 1);
  CHECK_INT(verdict[11], ==, 1);
  CHECK_INT(verdict[20], ==, 0);
  CHECK_INT(verdict[0], ==, -1);
  int32_t *acc;
  int64_t na;
  CHECK_OK(td_fb_list(db, s, 1, &acc, &na, &err), &err);
  CHECK_INT(na, ==, 3);
  CHECK(acc[0] == 5 && acc[1] == 9 && acc[2] == 11);
  free(acc);
  /* unnamed sessions get a name; listing is newest first */
  int64_t s2;
  CHECK_OK(td_fb_session_create(db, NULL, &s2, &err), &err);
  td_fb_session *list;
  int n;
  CHECK_OK(td_fb_session_list(db, &list, &n, &err), &err);
  CHECK_INT(n, ==, 2);
  CHECK_INT(list[0].id, ==, s2);
  CHECK_STR_CONTAINS(list[0].name, "session");
  free(list);
  /* bad input */
  int8_t bad[] = {3};
  CHECK_INT(td_fb_record(db, s, idx, bad, 1, NULL, &err), ==, TD_EARG);
  CHECK_INT(td_fb_record(db, 999, idx, v, 1, NULL, &err), ==, TD_ENOENT);
  CHECK_INT(td_fb_session_get(db, 999, &ss, &err), ==, TD_ENOENT);
  /* a failed batch left nothing behind */
  CHECK_OK(td_fb_session_get(db, s, &ss, &err), &err);
  CHECK_INT(ss.rounds, ==, 2);
  td_fb_close(db);
  /* WAL mode is on */
  char p[4300];
  snprintf(p, sizeof p, "%s/tardis.db-wal", dir);
  CHECK_OK(td_fb_open(dir, &db, &err), &err);
  CHECK_OK(td_fb_record(db, s, idx, v, 1, NULL, &err), &err);
  CHECK(access(p, F_OK) == 0);
  td_fb_close(db);
}

static void test_two_connections(void) {
  td_err err;
  td_fb *a, *b;
  CHECK_OK(td_fb_open(dir, &a, &err), &err);
  CHECK_OK(td_fb_open(dir, &b, &err), &err);
  int64_t s;
  CHECK_OK(td_fb_session_create(a, "tabs", &s, &err), &err);
  for (int i = 0; i < 50; i++) {
    int32_t ia = 1000 + i, ib = 2000 + i;
    int8_t va = 1, vb = 0;
    CHECK_OK(td_fb_record(a, s, &ia, &va, 1, NULL, &err), &err);
    CHECK_OK(td_fb_record(b, s, &ib, &vb, 1, NULL, &err), &err);
  }
  td_fb_session ss;
  CHECK_OK(td_fb_session_get(b, s, &ss, &err), &err);
  CHECK_INT(ss.n_accept, ==, 50);
  CHECK_INT(ss.n_reject, ==, 50);
  CHECK_INT(ss.rounds, ==, 100);
  td_fb_close(a);
  td_fb_close(b);
}

static void test_two_processes(void) {
  td_err err;
  td_fb *db;
  CHECK_OK(td_fb_open(dir, &db, &err), &err);
  int64_t s;
  CHECK_OK(td_fb_session_create(db, "procs", &s, &err), &err);
  td_fb_close(db);
  enum { PER = 100 };
  pid_t kids[2];
  for (int k = 0; k < 2; k++) {
    kids[k] = fork();
    if (kids[k] == 0) {
      td_fb *c;
      if (td_fb_open(dir, &c, NULL))
        _exit(1);
      for (int i = 0; i < PER; i++) {
        int32_t idx[2] = {k * 10000 + 2 * i, k * 10000 + 2 * i + 1};
        int8_t v[2] = {1, 0};
        if (td_fb_record(c, s, idx, v, 2, NULL, NULL))
          _exit(2);
      }
      td_fb_close(c);
      _exit(0);
    }
  }
  for (int k = 0; k < 2; k++) {
    int st;
    waitpid(kids[k], &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  CHECK_OK(td_fb_open(dir, &db, &err), &err);
  td_fb_session ss;
  CHECK_OK(td_fb_session_get(db, s, &ss, &err), &err);
  CHECK_INT(ss.n_accept, ==, 2 * PER);
  CHECK_INT(ss.n_reject, ==, 2 * PER);
  CHECK_INT(ss.rounds, ==, 2 * PER);
  td_fb_close(db);
}

static void test_killed_writer(void) {
  td_err err;
  td_fb *db;
  CHECK_OK(td_fb_open(dir, &db, &err), &err);
  int64_t s;
  CHECK_OK(td_fb_session_create(db, "killed", &s, &err), &err);
  td_fb_close(db);
  int pfd[2];
  CHECK(pipe(pfd) == 0);
  pid_t kid = fork();
  if (kid == 0) {
    td_fb *c;
    if (td_fb_open(dir, &c, NULL))
      _exit(1);
    int32_t idx[] = {1, 2, 3};
    int8_t v[] = {1, 1, 0};
    if (td_fb_record(c, s, idx, v, 3, NULL, NULL))
      _exit(2);
    /* told the caller it is saved: now die without closing anything */
    if (write(pfd[1], "k", 1) != 1)
      _exit(3);
    for (;;)
      pause();
  }
  close(pfd[1]);
  char ch;
  CHECK(read(pfd[0], &ch, 1) == 1);
  close(pfd[0]);
  kill(kid, SIGKILL);
  int st;
  waitpid(kid, &st, 0);
  CHECK(WIFSIGNALED(st));
  CHECK_OK(td_fb_open(dir, &db, &err), &err);
  td_fb_session ss;
  CHECK_OK(td_fb_session_get(db, s, &ss, &err), &err);
  CHECK_INT(ss.n_accept, ==, 2);
  CHECK_INT(ss.n_reject, ==, 1);
  td_fb_close(db);
}

int main(void) {
  const char *t = td_t_tmpdir("test_feedback");
  if (!t)
    return 1;
  snprintf(dir, sizeof dir, "%s", t);
  RUN(test_persist_reopen);
  RUN(test_two_connections);
  RUN(test_two_processes);
  RUN(test_killed_writer);
  return td_t_finish();
}
