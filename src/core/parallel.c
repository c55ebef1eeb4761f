/* A parallel-for on plain pthreads. Threads are created per call: the calls
 * in tardis are coarse (milliseconds or more), so a persistent pool would
 * save little and add shutdown complexity. */
#include "tardis/parallel.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

void openblas_set_num_threads(int num_threads);

static int g_threads;

void td_set_threads(int n) {
  if (n <= 0) {
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    n = c > 0 ? (int)c : 1;
  }
  if (n > 256)
    n = 256;
  g_threads = n;
  openblas_set_num_threads(n);
}

int td_threads(void) {
  if (g_threads <= 0) {
    const char *env = getenv("TD_THREADS");
    td_set_threads(env ? atoi(env) : 0);
  }
  return g_threads;
}

typedef struct {
  int64_t n, grain;
  atomic_llong next;
  td_range_cb cb;
  void *ctx;
} pf_job;

typedef struct {
  pf_job *job;
  int tid;
} pf_worker;

static void pf_run(pf_job *job, int tid) {
  for (;;) {
    int64_t begin = atomic_fetch_add(&job->next, job->grain);
    if (begin >= job->n)
      break;
    int64_t end = begin + job->grain < job->n ? begin + job->grain : job->n;
    job->cb(job->ctx, begin, end, tid);
  }
}

static void *pf_thread(void *arg) {
  pf_worker *w = arg;
  pf_run(w->job, w->tid);
  return NULL;
}

void td_parallel_for(int64_t n, int64_t grain, td_range_cb cb, void *ctx) {
  if (n <= 0)
    return;
  if (grain < 1)
    grain = 1;
  int nt = td_threads();
  int64_t chunks = (n + grain - 1) / grain;
  if (nt > chunks)
    nt = (int)chunks;
  if (nt <= 1) {
    for (int64_t b = 0; b < n; b += grain)
      cb(ctx, b, b + grain < n ? b + grain : n, 0);
    return;
  }
  pf_job job = {.n = n, .grain = grain, .cb = cb, .ctx = ctx};
  atomic_init(&job.next, 0);
  pthread_t th[256];
  pf_worker w[256];
  int started = 0;
  for (int t = 1; t < nt; t++) {
    w[t].job = &job;
    w[t].tid = t;
    if (pthread_create(&th[t], NULL, pf_thread, &w[t]) != 0)
      break; /* fewer threads: the remaining ones pick up the work */
    started = t;
  }
  pf_run(&job, 0);
  for (int t = 1; t <= started; t++)
    pthread_join(th[t], NULL);
}

double td_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
