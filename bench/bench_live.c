/* bench_live: live mode against DESIGN §5 ("live: epoch landed -> drawn in
 * the browser <= 10 s at 60k, training slowed <= 1.3x"). For each size it
 * runs `tardis train --limit N` alone, then again beside `tardis serve RUN
 * --follow` (which projects each epoch as it lands and sends SSE events),
 * and measures, per epoch, from the epoch committed (its directory appearing
 * under RUN/epochs/, polled every millisecond) to
 *   - its projection written (RUN/vis/dvi/epoch_NNNN appearing),
 *   - its `projection` event on /api/events,
 *   - any epoch at least as new drawn (the lag of the newest drawn epoch
 *     behind the newest recorded one: what the target is about),
 * and the trainer's seconds per epoch with and without the follower.
 *
 *   bench_live [--tardis PATH] [--runs N:E[,N:E...]] [--out DIR] [--wait S]
 *   bench_live --draft-quality RUN [--lag L] [--cold N]
 *
 * PATH defaults to the `tardis` binary next to this one; --runs to
 * 10000:30,60000:16 (training samples : epochs: long enough for the steady
 * state; a summary of both targets at every size ends the output); --wait
 * S (600) bounds the
 * wait for every epoch fully fitted after training (the lag and the
 * trainer's figures do not need it: on a loaded machine, keep it short). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tardis/evaluate.h"
#include "tardis/fsutil.h"
#include "tardis/project.h"
#include "tardis/run.h"
#include "tardis/vis.h"

#define MAX_EPOCHS 200
#define NOT_SEEN -1.0

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void die(const char *what) {
  fprintf(stderr, "bench_live: %s: %s\n", what, strerror(errno));
  exit(1);
}

/* Starts argv[0] with stdout and stderr into the given files. */
static pid_t spawn(char *const argv[], const char *out, const char *err) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0)
    die("fork");
  if (pid == 0) {
    int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fo < 0 || fe < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0)
      _exit(126);
    close(fo);
    close(fe);
    execv(argv[0], argv);
    _exit(127);
  }
  return pid;
}

/* Waits for pid; its exit status, or -1 when it did not exit normally.
 * *cpu (may be NULL): its user + system CPU seconds. */
static int reap_cpu(pid_t pid, double *cpu) {
  int st;
  struct rusage ru;
  while (wait4(pid, &st, 0, &ru) < 0)
    if (errno != EINTR)
      die("wait4");
  if (cpu)
    *cpu = (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
           (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int reap(pid_t pid) { return reap_cpu(pid, NULL); }

/* A running process's CPU seconds so far (user + system, all its threads,
 * from /proc/PID/stat), or -1. */
static double proc_cpu(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
  if (f)
    fclose(f);
  buf[n] = '\0';
  const char *p = strrchr(buf, ')'); /* after the command name */
  unsigned long ut, st;
  if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                   &ut, &st) != 2)
    return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Whether pid has exited (it stays to be reaped). */
static int exited(pid_t pid) {
  siginfo_t si;
  memset(&si, 0, sizeof si);
  return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0 ||
         si.si_pid == pid;
}

/* The whole of a small text file, or NULL; free it. */
static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  size_t cap = 1 << 16, len = 0;
  char *s = malloc(cap);
  while (s) {
    len += fread(s + len, 1, cap - 1 - len, f);
    if (len + 1 < cap)
      break;
    char *t = realloc(s, cap *= 2);
    if (!t)
      free(s);
    s = t;
  }
  fclose(f);
  if (s)
    s[len] = '\0';
  return s;
}

/* ------------------------------------------------------------------ */
/* The trainer's own figures, from its output. */

/* The 1-minute load average's range over a run, sampled about once a
 * second (the machine may be shared: wall times then say little). */
typedef struct {
  double lo, hi;
  double next; /* now_s() of the next sample */
} load_range;

static void load_sample(load_range *l) {
  double la[3], t = now_s();
  if (t < l->next || getloadavg(la, 1) != 1)
    return;
  if (l->next == 0 || la[0] < l->lo)
    l->lo = la[0];
  if (l->next == 0 || la[0] > l->hi)
    l->hi = la[0];
  l->next = t + 1.0;
}

typedef struct {
  int epochs;
  load_range load;
  double step_s[MAX_EPOCHS + 1]; /* training steps of each epoch */
  double total_s;                /* "trained E epochs in X s" */
  double cpu_s;                  /* its CPU time (user + system) */
} train_times;

static int parse_trainer(const char *out, const char *err, train_times *t) {
  memset(t, 0, sizeof *t);
  char *e = slurp(err), *o = slurp(out);
  for (char *l = e; l && *l;) {
    int ep, n;
    double loss, s;
    if (sscanf(l, "epoch %d/%d loss %lf %lf s", &ep, &n, &loss, &s) == 4 &&
        ep >= 1 && ep <= MAX_EPOCHS) {
      t->step_s[ep] = s;
      if (ep > t->epochs)
        t->epochs = ep;
    }
    char *nl = strchr(l, '\n');
    l = nl ? nl + 1 : NULL;
  }
  const char *m = o ? strstr(o, "trained ") : NULL;
  int n = 0;
  int ok = m && sscanf(m, "trained %d epochs in %lf s", &n, &t->total_s) == 2 &&
           n == t->epochs && n > 0;
  free(e);
  free(o);
  return ok ? 0 : -1;
}

static double mean_step(const train_times *t) {
  double s = 0;
  for (int e = 1; e <= t->epochs; e++)
    s += t->step_s[e];
  return s / t->epochs;
}

/* ------------------------------------------------------------------ */
/* The SSE client: timestamps the first `epoch` and `projection` event of
 * each epoch. */

typedef struct {
  int port;
  atomic_int stop;
  pthread_mutex_t mu; /* guards what follows */
  double t_epoch[MAX_EPOCHS + 1], t_proj[MAX_EPOCHS + 1]; /* NOT_SEEN */
  int drafts; /* projection events with "draft":true */
  int error;
} sse_client;

static int sse_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return -1;
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  /* the server answers only a loopback Host naming its port */
  char req[96];
  int len =
      snprintf(req, sizeof req,
               "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", port);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
      send(fd, req, (size_t)len, MSG_NOSIGNAL) != (ssize_t)len) {
    close(fd);
    return -1;
  }
  return fd;
}

/* One complete line of the stream; `event` is the pending event name. */
static void sse_line(sse_client *c, const char *line, char *event, double t) {
  int ep;
  if (!strncmp(line, "event: ", 7)) {
    snprintf(event, 32, "%s", line + 7);
  } else if (sscanf(line, "data: {\"epoch\":%d", &ep) == 1 && ep >= 1 &&
             ep <= MAX_EPOCHS) {
    double *slot = !strcmp(event, "epoch")        ? &c->t_epoch[ep]
                   : !strcmp(event, "projection") ? &c->t_proj[ep]
                                                  : NULL;
    if (slot && *slot == NOT_SEEN)
      *slot = t;
    if (slot == &c->t_proj[ep] && strstr(line, "\"draft\":true"))
      c->drafts++;
  }
}

static void *sse_main(void *arg) {
  sse_client *c = arg;
  int fd = sse_connect(c->port);
  if (fd < 0) {
    pthread_mutex_lock(&c->mu);
    c->error = 1;
    pthread_mutex_unlock(&c->mu);
    return NULL;
  }
  char buf[1 << 16], event[32] = "";
  size_t len = 0;
  while (!atomic_load(&c->stop)) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0)
      continue;
    ssize_t n = recv(fd, buf + len, sizeof buf - 1 - len, 0);
    if (n <= 0)
      break;
    double t = now_s();
    len += (size_t)n;
    buf[len] = '\0';
    char *l = buf, *nl;
    pthread_mutex_lock(&c->mu);
    while ((nl = strchr(l, '\n'))) {
      *nl = '\0';
      if (nl > l && nl[-1] == '\r')
        nl[-1] = '\0';
      sse_line(c, l, event, t);
      l = nl + 1;
    }
    pthread_mutex_unlock(&c->mu);
    len = strlen(l);
    memmove(buf, l, len);
    if (len + 1 >= sizeof buf)
      len = 0; /* a line longer than the buffer: not one we read */
  }
  close(fd);
  return NULL;
}

/* ------------------------------------------------------------------ */

typedef struct {
  char *tardis; /* argv[0] of the children */
  const char *work;
  int n, epochs;
  double wait_s; /* the longest wait for every epoch fully fitted (600) */
} bench_cfg;

/* `tardis train` into dir; its output files are dir.out and dir.err. */
static pid_t start_trainer(const bench_cfg *b, char *dir, char *out, char *err,
                           size_t len) {
  char n[32], e[32];
  snprintf(n, sizeof n, "%d", b->n);
  snprintf(e, sizeof e, "%d", b->epochs);
  snprintf(out, len, "%s.out", dir);
  snprintf(err, len, "%s.err", dir);
  char *argv[] = {b->tardis, "train",    "--out", dir,       "--limit",
                  n,         "--epochs", e,       "--force", NULL};
  return spawn(argv, out, err);
}

static void train_alone(const bench_cfg *b, train_times *t) {
  char dir[4096], out[4200], err[4200];
  snprintf(dir, sizeof dir, "%s/alone_%d", b->work, b->n);
  pid_t pid = start_trainer(b, dir, out, err, sizeof out);
  double cpu = 0;
  load_range lr = {0, 0, 0};
  while (!exited(pid)) {
    load_sample(&lr);
    usleep(50000);
  }
  if (reap_cpu(pid, &cpu) != 0 || parse_trainer(out, err, t) != 0) {
    fprintf(stderr, "bench_live: tardis train failed (see %s)\n", err);
    exit(1);
  }
  t->cpu_s = cpu;
  t->load = lr;
  td_remove_tree_best_effort(dir);
}

/* The port `tardis serve` printed ("... at http://127.0.0.1:PORT"); 0 while
 * not yet. */
static int served_port(const char *out) {
  char *s = slurp(out);
  const char *at = s ? strstr(s, "127.0.0.1:") : NULL;
  int port = at ? atoi(at + 10) : 0;
  free(s);
  return port;
}

typedef struct {
  double commit[MAX_EPOCHS + 1], drawn[MAX_EPOCHS + 1]; /* NOT_SEEN */
} fs_times;

static void note_if_there(const char *path, double *slot, double t) {
  struct stat st;
  if (*slot == NOT_SEEN && stat(path, &st) == 0)
    *slot = t;
}

/* The live run: the trainer, and the server and its SSE client once the
 * trainer has created the run (`serve` wants run.json). */
typedef struct {
  char dir[4096], out[4200], err[4200], sout[4200], serr[4200];
  pid_t trainer, server;
  int trainer_rc; /* -2 while running */
  double trainer_cpu, trainer_end, all_final;
  double newest_fitted;       /* the newest epoch drawn by a fit (a preview, or
                                 its in-order fit); 0: not yet */
  double server_cpu;          /* the follower's CPU time, all of it */
  double server_cpu_training; /* ... until the trainer ended */
  load_range load;
  int sse_started; /* the client thread runs */
  pthread_t sse_th;
  sse_client sse;
  fs_times fs;
} live_run;

/* Starts the server once run.json is there and the client once the server
 * said its port; 0, or -1 when the server did not come up. */
static int bring_up_server(const bench_cfg *b, live_run *lr, double *since) {
  char path[4300];
  if (!lr->server) {
    snprintf(path, sizeof path, "%s/run.json", lr->dir);
    if (access(path, F_OK) != 0)
      return 0;
    char *argv[] = {b->tardis, "serve", lr->dir, "--follow",
                    "--port",  "0",     NULL};
    lr->server = spawn(argv, lr->sout, lr->serr);
    *since = now_s();
  }
  if (lr->sse_started || now_s() < *since + 0.02)
    return 0;
  *since = now_s();
  lr->sse.port = served_port(lr->sout);
  if (!lr->sse.port)
    return waitpid(lr->server, NULL, WNOHANG) == lr->server ? -1 : 0;
  if (pthread_create(&lr->sse_th, NULL, sse_main, &lr->sse) != 0)
    return -1;
  lr->sse_started = 1;
  return 0;
}

static int no_drafts(const char *dir, int epochs) {
  for (int e = 1; e <= epochs; e++)
    if (td_vis_epoch_is_draft(dir, "dvi", e))
      return 0;
  return 1;
}

/* Whether the newest epoch is drawn by a fit: fully fitted, or a preview
 * (a draft with "draft_fitted": true, td_project_preview). */
static int newest_fitted(const char *dir, int epoch) {
  char edir[4300], pj[4400];
  if (td_vis_epoch_final(dir, "dvi", epoch))
    return 1;
  if (!td_vis_epoch_done(dir, "dvi", epoch) ||
      td_vis_epoch_dir(dir, "dvi", epoch, edir, sizeof edir))
    return 0;
  snprintf(pj, sizeof pj, "%s/projection.json", edir);
  char *txt = slurp(pj);
  int yes = txt && strstr(txt, "\"" TD_VIS_DRAFT_FITTED_KEY "\": true");
  free(txt);
  return yes;
}

/* Polls the run every millisecond until the trainer is done and every
 * epoch is drawn and announced (or b->wait_s after training ended); 0, 1
 * (not every epoch fully fitted in time, training done) or -1. */
static int follow(const bench_cfg *b, live_run *lr) {
  double all_drawn = 0, since = 0; /* after all_drawn, 10 s for the events */
  char path[4300];
  /* an hour for training, then wait_s for the fits */
  for (double dl = now_s() + 3600; now_s() < dl; usleep(1000)) {
    double t = now_s();
    int drawn = 1, told = 1;
    load_sample(&lr->load);
    pthread_mutex_lock(&lr->sse.mu);
    int sse_error = lr->sse.error;
    for (int e = 1; e <= b->epochs; e++) {
      snprintf(path, sizeof path, "%s/epochs/%04d", lr->dir, e);
      note_if_there(path, &lr->fs.commit[e], t);
      snprintf(path, sizeof path, "%s/vis/dvi/epoch_%04d", lr->dir, e);
      note_if_there(path, &lr->fs.drawn[e], t);
      drawn &= lr->fs.drawn[e] != NOT_SEEN;
      told &= lr->sse.t_proj[e] != NOT_SEEN;
    }
    pthread_mutex_unlock(&lr->sse.mu);
    if (sse_error || bring_up_server(b, lr, &since) != 0) {
      fprintf(stderr, "bench_live: %s\n",
              sse_error ? "the event stream could not be read"
                        : "the server did not come up");
      return -1;
    }
    if (drawn && !all_drawn)
      all_drawn = t;
    if (lr->trainer_rc == 0 && !lr->newest_fitted &&
        newest_fitted(lr->dir, b->epochs))
      lr->newest_fitted = t;
    int st;
    struct rusage ru;
    if (lr->trainer_rc == -2 && wait4(lr->trainer, &st, WNOHANG, &ru) > 0) {
      lr->trainer_rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
      lr->trainer_cpu =
          (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
          (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
      lr->trainer_end = t;
      lr->server_cpu_training = lr->server ? proc_cpu(lr->server) : -1;
      dl = t + b->wait_s;
    }
    if (lr->trainer_rc != -2 && lr->trainer_rc != 0) {
      fprintf(stderr, "bench_live: the trainer failed (status %d)\n",
              lr->trainer_rc);
      return -1;
    }
    /* done: every epoch fully fitted (no draft left) and announced */
    if (lr->trainer_rc == 0 && drawn && (told || t > all_drawn + 10) &&
        no_drafts(lr->dir, b->epochs)) {
      lr->all_final = t;
      return 0;
    }
  }
  /* a loaded machine: report what was seen, if training finished */
  fprintf(stderr,
          "bench_live: not every epoch fully fitted within %.0f s; "
          "reporting what was seen\n",
          b->wait_s);
  return lr->trainer_rc == 0 ? 1 : -1;
}

typedef struct {
  train_times alone, live;
  fs_times fs;
  double sse[MAX_EPOCHS + 1];
  int drafts;
  double final_after;  /* trainer done -> every epoch fully fitted */
  double newest_after; /* trainer done -> the newest epoch drawn by a fit */
  double server_cpu, server_cpu_training;
} live_result;

/* Stops what still runs of lr. */
static void wind_down(live_run *lr) {
  if (lr->sse_started) {
    atomic_store(&lr->sse.stop, 1);
    pthread_join(lr->sse_th, NULL);
  }
  if (lr->trainer_rc == -2) {
    kill(lr->trainer, SIGTERM);
    lr->trainer_rc = reap(lr->trainer);
  }
  if (lr->server) {
    kill(lr->server, SIGTERM);
    if (reap_cpu(lr->server, &lr->server_cpu) != 0)
      lr->sse.error = 1; /* reported with the rest below */
  }
}

static void train_live(const bench_cfg *b, live_result *r) {
  static live_run lr; /* large: off the stack */
  memset(&lr, 0, sizeof lr);
  pthread_mutex_init(&lr.sse.mu, NULL);
  for (int i = 0; i <= MAX_EPOCHS; i++)
    lr.sse.t_epoch[i] = lr.sse.t_proj[i] = lr.fs.commit[i] = lr.fs.drawn[i] =
        NOT_SEEN;
  snprintf(lr.dir, sizeof lr.dir, "%s/live_%d", b->work, b->n);
  snprintf(lr.sout, sizeof lr.sout, "%s.serve.out", lr.dir);
  snprintf(lr.serr, sizeof lr.serr, "%s.serve.err", lr.dir);
  td_remove_tree_best_effort(lr.dir);
  lr.trainer_rc = -2;
  lr.trainer = start_trainer(b, lr.dir, lr.out, lr.err, sizeof lr.out);
  int rc = follow(b, &lr);
  wind_down(&lr);
  pthread_mutex_destroy(&lr.sse.mu);
  if (rc < 0 || lr.sse.error || !lr.sse_started ||
      parse_trainer(lr.out, lr.err, &r->live) != 0) {
    fprintf(stderr, "bench_live: the live run failed (see %s, %s)\n", lr.err,
            lr.serr);
    exit(1);
  }
  r->fs = lr.fs;
  memcpy(r->sse, lr.sse.t_proj, sizeof r->sse);
  r->live.cpu_s = lr.trainer_cpu;
  r->live.load = lr.load;
  r->server_cpu = lr.server_cpu;
  r->server_cpu_training = lr.server_cpu_training;
  r->drafts = lr.sse.drafts;
  r->final_after = rc == 0 ? lr.all_final - lr.trainer_end : -1;
  r->newest_after = lr.newest_fitted ? lr.newest_fitted - lr.trainer_end : -1;
  td_remove_tree_best_effort(lr.dir);
}

/* ------------------------------------------------------------------ */
/* Statistics over the epochs. */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

typedef struct {
  double median, max;
  int n;
} stat2;

/* Median and maximum of to[e] - from[e] over the epochs where both exist. */
static stat2 delays(const double *from, const double *to, int epochs) {
  double d[MAX_EPOCHS];
  int n = 0;
  for (int e = 1; e <= epochs; e++)
    if (from[e] != NOT_SEEN && to[e] != NOT_SEEN)
      d[n++] = to[e] - from[e];
  stat2 s = {0, 0, n};
  if (!n)
    return s;
  qsort(d, (size_t)n, sizeof *d, cmp_double);
  s.median = n % 2 ? d[n / 2] : 0.5 * (d[n / 2 - 1] + d[n / 2]);
  s.max = d[n - 1];
  return s;
}

/* For each epoch, when an epoch at least as new was first drawn. */
static void newest_drawn(const fs_times *f, int epochs, double *out) {
  for (int e = 1; e <= epochs; e++) {
    out[e] = NOT_SEEN;
    for (int p = e; p <= epochs; p++)
      if (f->drawn[p] != NOT_SEEN &&
          (out[e] == NOT_SEEN || f->drawn[p] < out[e]))
        out[e] = f->drawn[p];
  }
}

/* Epochs drawn after a newer one: skipped, then back-filled. */
static int backfilled(const fs_times *f, int epochs) {
  int n = 0;
  for (int e = 1; e <= epochs; e++)
    for (int p = e + 1; p <= epochs; p++)
      if (f->drawn[p] < f->drawn[e]) {
        n++;
        break;
      }
  return n;
}

/* One size's figures for the summary at the end. */
typedef struct {
  int n, epochs;
  double lag_median, lag_max, wall, cpu, follower, trainer, load_hi;
} summary_row;

static void report(const bench_cfg *b, const live_result *r, summary_row *row) {
  double nd[MAX_EPOCHS + 1];
  newest_drawn(&r->fs, b->epochs, nd);
  stat2 own = delays(r->fs.commit, r->fs.drawn, b->epochs);
  stat2 ev = delays(r->fs.commit, r->sse, b->epochs);
  stat2 lag = delays(r->fs.commit, nd, b->epochs);
  double wa = r->alone.total_s / b->epochs, wl = r->live.total_s / b->epochs;
  double sa = mean_step(&r->alone), sl = mean_step(&r->live);
  printf("\n%d training samples, %d epochs\n", b->n, b->epochs);
  printf("  %-52s %8s %8s\n", "from the epoch committed to", "median", "max");
  printf("  %-52s %7.2fs %7.2fs\n",
         "its projection written (vis/dvi/epoch_NNNN)", own.median, own.max);
  printf("  %-52s %7.2fs %7.2fs\n", "its SSE `projection` event", ev.median,
         ev.max);
  printf("  %-52s %7.2fs %7.2fs\n", "an epoch at least as new drawn (lag)",
         lag.median, lag.max);
  /* once the first (cold) fit is written: the steady state */
  double first = NOT_SEEN, steady_from[MAX_EPOCHS + 1];
  for (int e = 1; e <= b->epochs; e++)
    if (r->fs.drawn[e] != NOT_SEEN &&
        (first == NOT_SEEN || r->fs.drawn[e] < first))
      first = r->fs.drawn[e];
  for (int e = 1; e <= b->epochs; e++)
    steady_from[e] = r->fs.commit[e] != NOT_SEEN && r->fs.commit[e] >= first
                         ? r->fs.commit[e]
                         : NOT_SEEN;
  stat2 steady = delays(steady_from, nd, b->epochs);
  printf("  %-52s %7.2fs %7.2fs  (%d epochs)\n",
         "  same, epochs committed after the first drawn", steady.median,
         steady.max, steady.n);
  printf("  drafts drawn: %d; epochs first drawn after a newer one: %d of %d; "
         "after training ended, the newest epoch drawn by a fit %.1f s, "
         "every epoch fully fitted %.1f s (-1: not within --wait)\n",
         r->drafts, backfilled(&r->fs, b->epochs), b->epochs, r->newest_after,
         r->final_after);
  printf("  trainer, s/epoch             %10s %10s %8s\n", "alone", "+follower",
         "ratio");
  printf("    wall (train + record)      %10.3f %10.3f %7.2fx\n", wa, wl,
         wl / wa);
  printf("    training steps only        %10.3f %10.3f %7.2fx\n", sa, sl,
         sl / sa);
  printf("    CPU-s (user + system)      %10.3f %10.3f %7.2fx\n",
         r->alone.cpu_s / b->epochs, r->live.cpu_s / b->epochs,
         r->live.cpu_s / r->alone.cpu_s);
  printf("  follower (serve --follow) CPU-s: %.1f while the trainer ran "
         "(%.3f per epoch; the trainer's own: %.3f), %.1f in all (until every "
         "epoch was fully fitted)\n",
         r->server_cpu_training, r->server_cpu_training / b->epochs,
         r->live.cpu_s / b->epochs, r->server_cpu);
  printf("  1-min load average, alone run %.2f-%.2f, live run %.2f-%.2f "
         "(nproc %ld)\n",
         r->alone.load.lo, r->alone.load.hi, r->live.load.lo, r->live.load.hi,
         sysconf(_SC_NPROCESSORS_ONLN));
  printf("  targets (DESIGN §5): lag <= 10 s at 60k -> max %.2f s %s; "
         "training slowed <= 1.3x -> wall %.2fx %s, CPU %.2fx%s\n",
         lag.max, lag.max <= 10 ? "met" : "MISSED", wl / wa,
         wl / wa <= 1.3 ? "met" : "MISSED", r->live.cpu_s / r->alone.cpu_s,
         fmax(r->alone.load.hi, r->live.load.hi) >
                 (double)sysconf(_SC_NPROCESSORS_ONLN) + 0.5
             ? " (shared machine: wall ratios are noise)"
             : "");
  fflush(stdout);
  *row = (summary_row){b->n,
                       b->epochs,
                       lag.median,
                       lag.max,
                       wl / wa,
                       r->live.cpu_s / r->alone.cpu_s,
                       r->server_cpu_training / b->epochs,
                       r->live.cpu_s / b->epochs,
                       fmax(r->alone.load.hi, r->live.load.hi)};
}

static void summary(const summary_row *rows, int k) {
  printf("\nsummary (DESIGN §5: lag <= 10 s at 60k, training slowed <= 1.3x)\n"
         "  %7s %6s %10s %8s %10s %9s %17s %9s\n",
         "samples", "epochs", "lag median", "lag max", "slowdown", "CPU ratio",
         "CPU-s/ep fol/trn", "max load");
  for (int i = 0; i < k; i++)
    printf("  %7d %6d %9.2fs %7.2fs %9.2fx %8.2fx %8.3f/%-8.3f %9.2f%s\n",
           rows[i].n, rows[i].epochs, rows[i].lag_median, rows[i].lag_max,
           rows[i].wall, rows[i].cpu, rows[i].follower, rows[i].trainer,
           rows[i].load_hi,
           rows[i].lag_max <= 10 && rows[i].wall <= 1.3 ? "  met" : "  MISSED");
  printf("  (slowdown: the trainer's wall time per epoch beside the follower "
         "over alone; max load above nproc %ld: wall ratios are noise)\n",
         sysconf(_SC_NPROCESSORS_ONLN));
}

/* "N:E,N:E" into cfgs; the count, or -1. */
static int parse_runs(const char *s, int *n, int *e, int cap) {
  int k = 0;
  while (*s && k < cap) {
    int used = 0;
    if (sscanf(s, "%d:%d%n", &n[k], &e[k], &used) != 2 || n[k] < 100 ||
        e[k] < 1 || e[k] > MAX_EPOCHS)
      return -1;
    k++;
    s += used;
    if (*s == ',')
      s++;
    else if (*s)
      return -1;
  }
  return *s ? -1 : k;
}

/* ------------------------------------------------------------------ */
/* --draft-quality RUN [--lag L]: a fully projected run's epochs against
 * drafts of the same epochs, each placed by the model of the epoch L
 * before it (`tardis eval` figures). The fitted epochs are set aside while
 * the drafts are measured and put back afterwards, metrics.json too. */

static int eval_run(td_run *run, td_eval_result *r) {
  td_err e;
  if (td_evaluate(run, "dvi", NULL, NULL, r, &e) == TD_OK)
    return 0;
  fprintf(stderr, "bench_live: %s\n", e.msg);
  return -1;
}

static const td_eval_epoch *eval_of(const td_eval_result *r, int epoch) {
  for (int i = 0; i < r->n_epochs; i++)
    if (r->epochs[i].epoch == epoch)
      return &r->epochs[i];
  return NULL;
}

/* Sets the fitted epoch aside (aside = 1) or puts it back over its draft. */
static int swap_epoch(const char *run_dir, int epoch, int aside) {
  char dir[4096], keep[4200];
  if (td_vis_epoch_dir(run_dir, "dvi", epoch, dir, sizeof dir))
    return -1;
  snprintf(keep, sizeof keep, "%s.fitted", dir);
  if (aside)
    return rename(dir, keep);
  td_remove_tree_best_effort(dir);
  return rename(keep, dir);
}

/* Draws the draft of epoch `picked` from the model of `from`: its full fit,
 * or (cold > 0) a model fitted on a sample of cold of from's training
 * points (td_drafter_cold, which writes from's own cold draft first). */
static int draw_one(td_run *run, const td_project_opts *o, int picked, int from,
                    long cold, double *secs, td_err *e) {
  if (cold <= 0)
    return td_project_draft(run, o, picked, from, secs, e);
  td_drafter *d;
  double s0 = 0, s1 = 0;
  int rc = td_drafter_cold(run, o, from, cold, &d, &s0, e);
  if (rc == TD_OK && picked != from)
    rc = td_drafter_draw(d, picked, &s1, e);
  td_drafter_close(d);
  *secs = s0 + s1;
  return rc;
}

/* This process's CPU seconds so far (user + system, every thread). */
static double self_cpu(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
         (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

static int draft_quality(const char *run_dir, int lag, long cold) {
  td_err e;
  td_run *run;
  if (td_run_open(run_dir, &run, &e) != TD_OK) {
    fprintf(stderr, "bench_live: %s\n", e.msg);
    return 1;
  }
  char mpath[4096];
  char *metrics = td_vis_method_path(run_dir, "dvi", "metrics.json", mpath,
                                     sizeof mpath, NULL)
                      ? NULL
                      : slurp(mpath);
  td_eval_result full = {0}, draft = {0};
  int n = td_run_n_epochs(run), picked[MAX_EPOCHS], from[MAX_EPOCHS], k = 0;
  int rc = eval_run(run, &full);
  td_project_opts o;
  td_project_opts_default(&o);
  double secs[MAX_EPOCHS], cpu[MAX_EPOCHS];
  for (int i = lag; rc == 0 && i < n && k < MAX_EPOCHS; i += lag + 1) {
    picked[k] = td_run_epoch_number(run, i);
    from[k] = td_run_epoch_number(run, i - lag);
    /* a cold draft rewrites `from` too: set it aside as well */
    int aside_from = cold > 0 && lag > 0;
    cpu[k] = self_cpu();
    if (swap_epoch(run_dir, picked[k], 1) != 0 ||
        (aside_from && swap_epoch(run_dir, from[k], 1) != 0) ||
        draw_one(run, &o, picked[k], from[k], cold, &secs[k], &e) != TD_OK ||
        (aside_from && swap_epoch(run_dir, from[k], 0) != 0)) {
      fprintf(stderr, "bench_live: epoch %d: %s\n", picked[k], e.msg);
      rc = -1;
    }
    cpu[k] = self_cpu() - cpu[k];
    k++;
  }
  if (rc == 0)
    rc = eval_run(run, &draft);
  printf("draft quality, %s (%lld samples), each draft placed by the model "
         "of the epoch %d before%s",
         run_dir, (long long)td_run_get_meta(run)->n_train, lag,
         cold > 0 ? ", fitted on a sample of " : "");
  if (cold > 0)
    printf("%ld of its training points (cold draft)", cold);
  printf("\n  epoch  from  draft s  CPU-s   nn@15 fit/draft   test@15 "
         "fit/draft   ppr fit/draft\n");
  for (int j = 0; rc == 0 && j < k; j++) {
    const td_eval_epoch *f = eval_of(&full, picked[j]),
                        *d = eval_of(&draft, picked[j]);
    if (f && d)
      printf("  %5d %5d %8.2f %6.2f   %6.3f / %6.3f   %6.3f / %6.3f   %5.3f / "
             "%5.3f\n",
             picked[j], from[j], secs[j], cpu[j], f->nn_train[1],
             d->nn_train[1], f->nn_test[1], d->nn_test[1], f->ppr, d->ppr);
  }
  double la[3];
  if (getloadavg(la, 3) == 3)
    printf("  load average: %.2f %.2f %.2f\n", la[0], la[1], la[2]);
  for (int j = 0; j < k; j++)
    if (swap_epoch(run_dir, picked[j], 0) != 0)
      fprintf(stderr, "bench_live: could not put epoch %d back\n", picked[j]);
  if (metrics && td_vis_write_method_json(run_dir, "dvi", "metrics.json",
                                          metrics, &e) != TD_OK)
    fprintf(stderr, "bench_live: %s\n", e.msg);
  free(metrics);
  td_eval_result_free(&full);
  td_eval_result_free(&draft);
  td_run_close(run);
  return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
  static char tardis[4096];
  const char *runs = "10000:30,60000:16", *work = "/tmp/tardis-bench-live";
  tardis[0] = '\0';
  const char *dq = NULL;
  int lag = 1;
  long cold = 0;
  double wait_s = 600;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--draft-quality") && i + 1 < argc)
      dq = argv[++i];
    else if (!strcmp(argv[i], "--lag") && i + 1 < argc)
      lag = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--wait") && i + 1 < argc)
      wait_s = atof(argv[++i]);
    else if (!strcmp(argv[i], "--cold") && i + 1 < argc)
      cold = atol(argv[++i]);
    else if (!strcmp(argv[i], "--tardis") && i + 1 < argc)
      snprintf(tardis, sizeof tardis, "%s", argv[++i]);
    else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
      runs = argv[++i];
    else if (!strcmp(argv[i], "--out") && i + 1 < argc)
      work = argv[++i];
    else {
      fprintf(stderr,
              "usage: bench_live [--tardis PATH] [--runs N:E[,N:E...]] "
              "[--out DIR] [--wait S]\n       bench_live --draft-quality RUN "
              "[--lag L] [--cold N]\n");
      return 2;
    }
  }
  if (dq)
    return draft_quality(dq, lag > 0 || (lag == 0 && cold > 0) ? lag : 1, cold);
  if (!tardis[0]) { /* next to this binary */
    ssize_t len = readlink("/proc/self/exe", tardis, sizeof tardis - 8);
    char *slash = len > 0 ? memrchr(tardis, '/', (size_t)len) : NULL;
    if (!slash) {
      fprintf(stderr, "bench_live: cannot find tardis; use --tardis PATH\n");
      return 1;
    }
    strcpy(slash + 1, "tardis");
  }
  int ns[16], es[16];
  int k = parse_runs(runs, ns, es, 16);
  if (k <= 0) {
    fprintf(stderr, "bench_live: --runs: expected N:E[,N:E...], got %s\n",
            runs);
    return 2;
  }
  td_err e;
  if (td_mkdirs(work, &e) != TD_OK) {
    fprintf(stderr, "bench_live: %s\n", e.msg);
    return 1;
  }
  printf("live mode: %s train beside %s serve RUN --follow "
         "(dvi, default threads)\n",
         tardis, tardis);
  summary_row rows[16];
  for (int i = 0; i < k; i++) {
    bench_cfg b = {tardis, work, ns[i], es[i], wait_s > 0 ? wait_s : 600};
    static live_result r; /* large: off the stack */
    train_alone(&b, &r.alone);
    train_live(&b, &r);
    report(&b, &r, &rows[i]);
  }
  summary(rows, k);
  td_remove_tree_best_effort(work);
  return 0;
}
