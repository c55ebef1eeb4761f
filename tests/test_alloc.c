/* Out of memory: every allocation of the run writer, the run reader and the
 * npy loader is made to fail in turn (td_alloc_fail_after), and each call
 * must come back with TD_ENOMEM and a message, leave no partial output, and
 * leak nothing (the ASan build's leak checker runs on ctest). */
#include <ftw.h>
#include <stdarg.h>

#include "harness.h"
#include "run/run_json.h"
#include "tardis/alloc.h"
#include "tardis/fsutil.h"
#include "tardis/run.h"
#include "toy_run.h"

enum { N = 12, D = 3, H = 4, C = 2 };

/* Injection rounds before giving up: far more allocations than any of these
 * operations makes, so hitting it means the hook stopped firing. */
#define MAX_ROUNDS 500

static char cat[] = "cat", dog[] = "dog";
static char *class_names[C] = {cat, dog};

/* Uniform in [-1, 1). */
static float lcg(uint32_t *s) { return td_t_lcg(s) * 2.0f - 1.0f; }

/* A run's contents: a two-layer head D -> H (relu) -> C, so loading and
 * evaluating the head both allocate, and a float16 representation, so
 * loading it as float32 allocates a converted copy. */
typedef struct {
  float w0[H * D], b0[H], w1[C * H], b1[C];
  uint16_t repr[N * D];
  float logits[N * C];
  int32_t labels[N];
} run_data;

static void data_init(run_data *r) {
  uint32_t s = 7;
  for (int i = 0; i < H * D; i++)
    r->w0[i] = lcg(&s);
  for (int i = 0; i < H; i++)
    r->b0[i] = lcg(&s);
  for (int i = 0; i < C * H; i++)
    r->w1[i] = lcg(&s);
  for (int i = 0; i < C; i++)
    r->b1[i] = lcg(&s);
  for (int i = 0; i < N; i++) {
    float x[D], h[H];
    for (int k = 0; k < D; k++) {
      r->repr[i * D + k] = td_f32_to_f16(lcg(&s));
      x[k] = td_f16_to_f32(r->repr[i * D + k]);
    }
    for (int j = 0; j < H; j++) {
      float v = r->b0[j];
      for (int k = 0; k < D; k++)
        v += r->w0[j * D + k] * x[k];
      h[j] = v > 0 ? v : 0;
    }
    for (int j = 0; j < C; j++) {
      float v = r->b1[j];
      for (int k = 0; k < H; k++)
        v += r->w1[j * H + k] * h[k];
      r->logits[i * C + j] = v;
    }
    r->labels[i] = i % C;
  }
}

/* ---- the operations under test ------------------------------------------ */

typedef struct {
  const run_data *data;
  json_t *epoch_json; /* built before the hook is armed */
  char dir[4096];
} write_ctx;

static int write_epoch(const write_ctx *c, td_err *err) {
  const run_data *r = c->data;
  td_epoch_writer *w;
  int rc = td_epoch_begin(c->dir, 1, &w, err);
  if (rc)
    return rc;
  td_array a;
  int64_t s_nd[2] = {N, D}, s_nc[2] = {N, C};
  td_array_wrap(&a, TD_F16, 2, s_nd, (void *)(uintptr_t)r->repr);
  rc = td_epoch_add_array(w, "train_repr.npy", &a, err);
  td_array_wrap(&a, TD_F32, 2, s_nc, (void *)(uintptr_t)r->logits);
  if (!rc)
    rc = td_epoch_add_array(w, "train_logits.npy", &a, err);
  if (!rc)
    rc = td__epoch_add_json(w, "epoch.json", c->epoch_json, err);
  const float *ws[2] = {r->w0, r->w1}, *bs[2] = {r->b0, r->b1};
  int dims[3] = {D, H, C};
  const char *acts[2] = {"relu", "none"};
  if (!rc)
    rc = td_head_write(w, 2, ws, bs, dims, acts, err);
  if (rc) {
    td_epoch_abort(w);
    return rc;
  }
  return td_epoch_commit(w, err);
}

/* Creates the run (replacing the last round's) and records epoch 1. */
static int op_write(void *vctx, td_err *err) {
  write_ctx *c = vctx;
  td_run_meta m;
  memset(&m, 0, sizeof m);
  td_t_sfmt(m.name, sizeof m.name, "alloc");
  m.classes = class_names;
  m.n_classes = C;
  m.n_train = N;
  m.repr_dim = D;
  int rc = td_run_create(c->dir, &m, 1, err);
  int64_t s_n[1] = {N};
  td_array a;
  td_array_wrap(&a, TD_I32, 1, s_n, (void *)(uintptr_t)c->data->labels);
  if (!rc)
    rc = td_run_write_array(c->dir, "train_labels", &a, err);
  return rc ? rc : write_epoch(c, err);
}

static int g_partial; /* files or directories a failed write left behind */

static int count_partial(const char *path, const struct stat *st, int flag,
                         struct FTW *ftw) {
  (void)st, (void)flag;
  const char *name = path + ftw->base;
  if (strstr(name, ".tmp") || (ftw->level == 2 && !strcmp(name, "0001")))
    g_partial++;
  return 0;
}

/* After a failed write: no temporary file or epoch directory anywhere, and
 * epoch 1 was not committed (the round's run starts without it). */
static int write_left_partial(void *vctx) {
  write_ctx *c = vctx;
  g_partial = 0;
  if (td_path_exists(c->dir))
    nftw(c->dir, count_partial, 16, FTW_PHYS);
  return g_partial;
}

static void write_clean(void *vctx) {
  write_ctx *c = vctx;
  td_remove_tree_best_effort(c->dir);
}

/* Opens the run and reads what the stages read: an array converted to
 * float32, epoch.json, the head (evaluated), and the full validation. */
static int op_read(void *vctx, td_err *err) {
  write_ctx *c = vctx;
  td_run *run = NULL;
  td_array repr = {0};
  json_t *ej = NULL;
  td_head *h = NULL;
  /* Each failing call must leave its output empty; TD_ESTATE reports one
   * that did not (and fails the round's TD_ENOMEM check). */
  int rc = td_run_open(c->dir, &run, err);
  if (rc && run)
    rc = td_err_set(err, TD_ESTATE, "failed td_run_open returned a run");
  if (!rc && (rc = td_run_load_f32(run, 1, "train_repr", &repr, err)) &&
      repr.data)
    rc = td_err_set(err, TD_ESTATE, "failed td_run_load_f32 filled *out");
  if (!rc && (rc = td__run_load_epoch_json(run, 1, &ej, err)) && ej)
    rc = td_err_set(err, TD_ESTATE, "failed epoch.json load returned JSON");
  if (!rc && (rc = td_run_load_head(run, 1, &h, err)) && h)
    rc = td_err_set(err, TD_ESTATE, "failed td_run_load_head returned one");
  if (!rc) {
    float z[N * C];
    td_head_forward(h, repr.data, N, z);
    for (int i = 0; i < N * C && !rc; i++)
      if (fabsf(z[i] - c->data->logits[i]) > 1e-4f)
        rc = td_err_set(err, TD_EVALUE, "logit %d: %g, expected %g", i,
                        (double)z[i], (double)c->data->logits[i]);
  }
  if (!rc)
    rc = td_run_validate(run, NULL, NULL, err);
  td_head_free(h);
  json_decref(ej);
  td_array_close(&repr);
  td_run_close(run);
  return rc;
}

typedef struct {
  char path[4200];
} npy_ctx;

static int op_npy(void *vctx, td_err *err) {
  npy_ctx *c = vctx;
  td_array a, f;
  int rc = td_npy_load(c->path, &a, err);
  if (rc) {
    if (a.data || a.nbytes)
      return td_err_set(err, TD_ESTATE, "failed load filled its output");
    return rc;
  }
  rc = td_array_to_f32(&a, &f, err);
  if (!rc) {
    if (f.dtype != TD_F32 || f.shape[0] != N || f.shape[1] != D)
      rc = td_err_set(err, TD_EVALUE, "bad conversion");
    td_array_close(&f);
  } else if (f.data) {
    rc = td_err_set(err, TD_ESTATE, "failed conversion filled its output");
  }
  td_array_close(&a);
  return rc;
}

/* ---- the injection loop ---------------------------------------------------
 */

typedef struct {
  const char *what;
  int (*op)(void *ctx, td_err *err);
  int (*left_partial)(void *ctx); /* may be NULL */
  void (*reset)(void *ctx);       /* before each round; may be NULL */
  void *ctx;
  int min_failures; /* the operation must make at least this many */
} inject_case;

/* Fails allocation 0, 1, 2, ... of the operation until a round runs without
 * the hook firing. A round where it fired must end in TD_ENOMEM with a
 * message, or in success when the code has a fallback that needs no memory
 * (td_head_forward). */
static void run_injection(const inject_case *t) {
  int enomem = 0, n = 0;
  for (; n < MAX_ROUNDS; n++) {
    if (t->reset)
      t->reset(t->ctx);
    td_err err = {0, ""};
    td_alloc_fail_after(n);
    int rc = t->op(t->ctx, &err);
    int fired = td_alloc_failed();
    td_alloc_fail_after(-1);
    if (!fired) {
      CHECK_OK(rc, &err);
      break;
    }
    if (rc == TD_OK)
      continue;
    if (rc != TD_ENOMEM)
      fprintf(stderr, "  %s, allocation %d failed: %s (%s)\n", t->what, n,
              td_err_name(rc), err.msg);
    CHECK_INT(rc, ==, TD_ENOMEM);
    CHECK_INT(err.code, ==, TD_ENOMEM);
    CHECK(err.msg[0] != '\0');
    if (t->left_partial && t->left_partial(t->ctx)) {
      fprintf(stderr, "  %s, allocation %d: partial output left\n", t->what, n);
      CHECK(0);
    }
    enomem++;
  }
  fprintf(stderr, "  %s: %d allocations failed in turn, %d ended in ENOMEM\n",
          t->what, n, enomem);
  CHECK_INT(n, <, MAX_ROUNDS);
  CHECK_INT(enomem, >=, t->min_failures);
}

static void test_hook(void) {
  td_alloc_fail_after(1);
  void *a = td_malloc(8);
  CHECK(a && !td_alloc_failed());
  void *b = td_calloc(2, 8);
  CHECK(!b && td_alloc_failed());
  void *c = td_realloc(a, 64); /* the hook fires once only */
  CHECK(c);
  td_free(c);
  td_alloc_fail_after(-1);
  CHECK(!td_alloc_failed());
}

static void test_run_writer_reader(void) {
  const char *tmp = td_t_tmpdir("alloc");
  CHECK(tmp);
  static run_data data;
  data_init(&data);
  write_ctx c = {.data = &data};
  td_t_sfmt(c.dir, sizeof c.dir, "%s/run", tmp);
  c.epoch_json = json_pack("{s:i, s:f}", "epoch", 1, "train_loss", 0.5);
  CHECK(c.epoch_json);
  inject_case w = {"run writer", op_write, write_left_partial,
                   write_clean,  &c,       5};
  run_injection(&w);
  json_decref(c.epoch_json);
  /* The last round wrote the whole run: now read it back under failures. */
  inject_case r = {"run reader", op_read, NULL, NULL, &c, 5};
  run_injection(&r);
  td_remove_tree_best_effort(tmp);
}

static void test_npy_loader(void) {
  const char *tmp = td_t_tmpdir("alloc_npy");
  CHECK(tmp);
  static run_data data;
  data_init(&data);
  npy_ctx c;
  td_t_sfmt(c.path, sizeof c.path, "%s/x.npy", tmp);
  int64_t shape[2] = {N, D};
  td_err err;
  CHECK_OK(td_npy_save_raw(c.path, TD_F16, 2, shape, data.repr, &err), &err);
  /* Two: the mapping, then the float32 copy. */
  inject_case t = {"npy loader", op_npy, NULL, NULL, &c, 2};
  run_injection(&t);
  td_remove_tree_best_effort(tmp);
}

int main(void) {
  RUN(test_hook);
  RUN(test_run_writer_reader);
  RUN(test_npy_loader);
  return td_t_finish();
}
