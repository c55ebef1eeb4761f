/* A parallel-for on plain pthreads. A small persistent pool serves the
 * calls (training steps call it hundreds of times a second, where creating
 * threads each time would cost more than the work); a call made while the
 * pool is busy — from another thread, or nested inside a callback — falls
 * back to threads of its own, so callers never wait on each other. */
#include "tardis/parallel.h"

#include "tardis/error.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* The one place tardis talks to OpenBLAS about threads (libopenblas has
 * these; cblas.h from other BLAS builds may not declare them). */
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);

/* g_threads is written once by td_set_threads or by the TD_THREADS default
 * and read from any thread, hence atomic. g_blas_mu orders every change of
 * OpenBLAS's process-wide thread count: td_set_threads and the single-thread
 * scopes below. */
static atomic_int g_threads;
static pthread_once_t g_threads_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t g_blas_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_blas_depth, g_blas_saved;

static int clamp_threads(int n) {
  if (n <= 0) {
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    n = c > 0 ? (int)c : 1;
  }
  return n > 256 ? 256 : n;
}

/* Inside a single-thread scope OpenBLAS stays at 1; the new count is what
 * the last scope to end restores. */
static void set_blas_threads_locked(int n) {
  if (g_blas_depth > 0)
    g_blas_saved = n;
  else
    openblas_set_num_threads(n);
}

void td_set_threads(int n) {
  n = clamp_threads(n);
  pthread_mutex_lock(&g_blas_mu);
  atomic_store(&g_threads, n);
  set_blas_threads_locked(n);
  pthread_mutex_unlock(&g_blas_mu);
}

/* The default, once: TD_THREADS, else all CPUs — unless td_set_threads got
 * there first. */
static void threads_from_env(void) {
  const char *env = getenv("TD_THREADS");
  int n = clamp_threads(env ? atoi(env) : 0);
  pthread_mutex_lock(&g_blas_mu);
  if (atomic_load(&g_threads) <= 0) {
    atomic_store(&g_threads, n);
    set_blas_threads_locked(n);
  }
  pthread_mutex_unlock(&g_blas_mu);
}

/* td_set_thread_threads: this thread's own count; 0: the process's. */
static _Thread_local int t_threads;

void td_set_thread_threads(int n) { t_threads = n > 0 ? clamp_threads(n) : 0; }

int td_threads(void) {
  if (t_threads > 0)
    return t_threads;
  int n = atomic_load_explicit(&g_threads, memory_order_acquire);
  if (n > 0)
    return n;
  pthread_once(&g_threads_once, threads_from_env);
  return atomic_load(&g_threads);
}

void td_blas_single_begin(void) {
  pthread_mutex_lock(&g_blas_mu);
  if (g_blas_depth++ == 0) {
    g_blas_saved = openblas_get_num_threads();
    openblas_set_num_threads(1);
  }
  pthread_mutex_unlock(&g_blas_mu);
}

void td_blas_single_end(void) {
  pthread_mutex_lock(&g_blas_mu);
  TD_ASSERT(g_blas_depth > 0);
  if (--g_blas_depth == 0)
    openblas_set_num_threads(g_blas_saved);
  pthread_mutex_unlock(&g_blas_mu);
}

int td__blas_single_depth(void) {
  pthread_mutex_lock(&g_blas_mu);
  int d = g_blas_depth;
  pthread_mutex_unlock(&g_blas_mu);
  return d;
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

/* The pool: workers 1..size wait for a new generation, run their share of
 * the job and report when done. `owner` is held by the caller using it. */
static struct {
  pthread_mutex_t owner, mu;
  pthread_cond_t work, done;
  int size, started;
  atomic_int active;
  atomic_ulong generation;
  pf_job *job;
  int nt; /* threads taking part in the current job, the caller included */
  pthread_t th[256];
} pool = {.owner = PTHREAD_MUTEX_INITIALIZER,
          .mu = PTHREAD_MUTEX_INITIALIZER,
          .work = PTHREAD_COND_INITIALIZER,
          .done = PTHREAD_COND_INITIALIZER};

/* Waiting spins briefly before sleeping: jobs often follow each other
 * within microseconds (training steps), and a condition-variable wake-up
 * costs more than that. */
#define POOL_SPINS 20000

static void *pool_worker(void *arg) {
  int tid = (int)(intptr_t)arg;
  unsigned long seen = 0;
  for (;;) {
    int spins = 0;
    while (atomic_load_explicit(&pool.generation, memory_order_acquire) ==
               seen &&
           spins < POOL_SPINS)
      spins++;
    pthread_mutex_lock(&pool.mu);
    while (atomic_load(&pool.generation) == seen)
      pthread_cond_wait(&pool.work, &pool.mu);
    seen = atomic_load(&pool.generation);
    pf_job *job = pool.job;
    int take_part = tid < pool.nt;
    pthread_mutex_unlock(&pool.mu);
    if (take_part)
      pf_run(job, tid);
    if (atomic_fetch_sub(&pool.active, 1) == 1) {
      pthread_mutex_lock(&pool.mu);
      pthread_cond_signal(&pool.done);
      pthread_mutex_unlock(&pool.mu);
    }
  }
  return NULL;
}

/* Starts the workers once; returns how many there are. Called with owner
 * held. */
static int pool_start(int want) {
  if (pool.started)
    return pool.size;
  pool.started = 1;
  for (int t = 1; t <= want && t < 256; t++) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int ok = pthread_create(&pool.th[t], &attr, pool_worker,
                            (void *)(intptr_t)t) == 0;
    pthread_attr_destroy(&attr);
    if (!ok)
      break;
    pool.size = t;
  }
  return pool.size;
}

/* Runs the job on the pool if it is free and large enough. */
static int pool_run(pf_job *job, int nt) {
  if (pthread_mutex_trylock(&pool.owner) != 0)
    return 0;
  if (pool_start(td_threads() - 1) < nt - 1) {
    pthread_mutex_unlock(&pool.owner);
    return 0;
  }
  pthread_mutex_lock(&pool.mu);
  pool.job = job;
  pool.nt = nt;
  atomic_store(&pool.active, pool.size);
  atomic_fetch_add_explicit(&pool.generation, 1, memory_order_release);
  pthread_cond_broadcast(&pool.work);
  pthread_mutex_unlock(&pool.mu);
  pf_run(job, 0);
  for (int spins = 0; atomic_load(&pool.active) > 0 && spins < POOL_SPINS;)
    spins++;
  pthread_mutex_lock(&pool.mu);
  while (atomic_load(&pool.active) > 0)
    pthread_cond_wait(&pool.done, &pool.mu);
  pthread_mutex_unlock(&pool.mu);
  pthread_mutex_unlock(&pool.owner);
  return 1;
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
  if (pool_run(&job, nt))
    return;
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
