/* Run format v1: writer, reader, validation, every bad input we can think of,
 * and the `tardis info` command (when the binary is built). */
#include <dirent.h>
#include <stdarg.h>
#include <sys/wait.h>

#include "harness.h"
#include "run/run_json.h"
#include "tardis/fsutil.h"
#include "tardis/parallel.h"
#include "tardis/rng.h"
#include "tardis/run.h"
#include "toy_run.h"

enum { N = 20, M = 8, D = 4, C = 3, H = 5 };

static char cat[] = "cat", dog[] = "dog", bird[] = "bird";
static char *class_names[C] = {cat, dog, bird};

/* Uniform in [-1, 1). */
static float lcg(uint32_t *s) { return td_t_lcg(s) * 2.0f - 1.0f; }

/* A two-layer head D -> H (relu) -> C, with logits computed by plain loops
 * so the run is consistent with its head. */
typedef struct {
  float w0[H * D], b0[H], w1[C * H], b1[C];
} head_params;

static void head_init(head_params *p, uint32_t seed) {
  for (int i = 0; i < H * D; i++)
    p->w0[i] = lcg(&seed);
  for (int i = 0; i < H; i++)
    p->b0[i] = lcg(&seed);
  for (int i = 0; i < C * H; i++)
    p->w1[i] = lcg(&seed);
  for (int i = 0; i < C; i++)
    p->b1[i] = lcg(&seed);
}

static void head_ref(const head_params *p, const float *x, int n, float *z) {
  for (int r = 0; r < n; r++) {
    float h[H];
    for (int j = 0; j < H; j++) {
      float s = p->b0[j];
      for (int k = 0; k < D; k++)
        s += p->w0[j * D + k] * x[r * D + k];
      h[j] = s > 0 ? s : 0;
    }
    for (int j = 0; j < C; j++) {
      float s = p->b1[j];
      for (int k = 0; k < H; k++)
        s += p->w1[j * H + k] * h[k];
      z[r * C + j] = s;
    }
  }
}

static void meta_init(td_run_meta *m) {
  memset(m, 0, sizeof *m);
  snprintf(m->name, sizeof m->name, "synthetic");
  m->classes = class_names; /* not modified by td_run_create */
  m->n_classes = C;
  m->n_train = N;
  m->n_test = M;
  m->repr_dim = D;
  m->has_input_shape = 1;
  m->input_shape[0] = 1;
  m->input_shape[1] = 2;
  m->input_shape[2] = 2;
}

static int write_epoch(const char *dir, int epoch, int f16, td_err *err) {
  float repr[N * D], trepr[M * D], logits[N * C], tlogits[M * C], loss[N];
  uint16_t repr16[N * D];
  uint32_t seed = 1234u + (uint32_t)epoch;
  head_params p;
  head_init(&p, 99u + (uint32_t)epoch);
  for (int i = 0; i < N * D; i++) {
    repr[i] = lcg(&seed);
    repr16[i] = td_f32_to_f16(repr[i]);
    if (f16)
      repr[i] = td_f16_to_f32(repr16[i]);
  }
  for (int i = 0; i < M * D; i++)
    trepr[i] = lcg(&seed);
  for (int i = 0; i < N; i++)
    loss[i] = 0.5f + 0.01f * (float)i;
  head_ref(&p, repr, N, logits);
  head_ref(&p, trepr, M, tlogits);
  td_epoch_writer *w;
  int rc = td_epoch_begin(dir, epoch, &w, err);
  if (rc)
    return rc;
  td_array a;
  int64_t s_nd[2] = {N, D}, s_md[2] = {M, D}, s_nc[2] = {N, C},
          s_mc[2] = {M, C}, s_n[1] = {N};
  if (f16)
    td_array_wrap(&a, TD_F16, 2, s_nd, repr16);
  else
    td_array_wrap(&a, TD_F32, 2, s_nd, repr);
  rc = td_epoch_add_array(w, "train_repr.npy", &a, err);
  td_array_wrap(&a, TD_F32, 2, s_md, trepr);
  if (!rc)
    rc = td_epoch_add_array(w, "test_repr.npy", &a, err);
  td_array_wrap(&a, TD_F32, 2, s_nc, logits);
  if (!rc)
    rc = td_epoch_add_array(w, "train_logits.npy", &a, err);
  td_array_wrap(&a, TD_F32, 2, s_mc, tlogits);
  if (!rc)
    rc = td_epoch_add_array(w, "test_logits.npy", &a, err);
  td_array_wrap(&a, TD_F32, 1, s_n, loss);
  if (!rc)
    rc = td_epoch_add_array(w, "train_loss", &a, err);
  json_t *ej = json_pack("{s:i, s:f, s:f, s:f, s:f, s:f}", "epoch", epoch,
                         "train_loss", 1.0 / (epoch + 1), "train_acc", 0.5,
                         "test_loss", 0.75, "test_acc", 0.25, "seconds", 1.5);
  if (!rc)
    rc = td__epoch_add_json(w, "epoch.json", ej, err);
  json_decref(ej);
  const float *ws[2] = {p.w0, p.w1}, *bs[2] = {p.b0, p.b1};
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

/* A complete small run with epochs 1, 2 and 5 (a gap, as with
 * checkpoints). */
static int make_run(const char *dir, td_err *err) {
  td_run_meta m;
  meta_init(&m);
  int rc = td_run_create(dir, &m, 0, err);
  int32_t labels[N], tlabels[M], truth[N];
  uint8_t inputs[N * 4], tinputs[M * 4];
  for (int i = 0; i < N; i++) {
    labels[i] = i % C;
    truth[i] = (i + (i == 3)) % C;
  }
  for (int i = 0; i < M; i++)
    tlabels[i] = (i * 2) % C;
  for (int i = 0; i < N * 4; i++)
    inputs[i] = (uint8_t)i;
  for (int i = 0; i < M * 4; i++)
    tinputs[i] = (uint8_t)(3 * i);
  int64_t s_n[1] = {N}, s_m[1] = {M}, s_in[4] = {N, 1, 2, 2},
          s_tin[4] = {M, 1, 2, 2};
  td_array a;
  td_array_wrap(&a, TD_I32, 1, s_n, labels);
  if (!rc)
    rc = td_run_write_array(dir, "train_labels", &a, err);
  td_array_wrap(&a, TD_I32, 1, s_n, truth);
  if (!rc)
    rc = td_run_write_array(dir, "train_truth.npy", &a, err);
  td_array_wrap(&a, TD_I32, 1, s_m, tlabels);
  if (!rc)
    rc = td_run_write_array(dir, "test_labels", &a, err);
  td_array_wrap(&a, TD_U8, 4, s_in, inputs);
  if (!rc)
    rc = td_run_write_array(dir, "train_inputs", &a, err);
  td_array_wrap(&a, TD_U8, 4, s_tin, tinputs);
  if (!rc)
    rc = td_run_write_array(dir, "test_inputs", &a, err);
  for (int e = 1; !rc && e <= 5; e++)
    if (e <= 2 || e == 5)
      rc = write_epoch(dir, e, 0, err);
  return rc;
}

/* ---- helpers to damage a run ------------------------------------------- */

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (f) {
    fputs(text, f);
    fclose(f);
  }
}

static void pathf(char *buf, size_t len, const char *dir, const char *rel) {
  td_t_sfmt(buf, len, "%s/%s", dir, rel);
}

/* Writes a .npy file with an arbitrary header, to forge bad files. */
static void write_raw_npy(const char *path, const char *descr,
                          const char *shape, const void *data, size_t nbytes) {
  char dict[256];
  int n = snprintf(dict, sizeof dict,
                   "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                   descr, shape);
  int total = 10 + n + 1, pad = (64 - total % 64) % 64;
  unsigned hlen = (unsigned)(n + pad + 1);
  FILE *f = fopen(path, "wb");
  if (!f)
    return;
  fwrite("\x93NUMPY\x01\x00", 1, 8, f);
  unsigned char le[2] = {(unsigned char)(hlen & 0xff),
                         (unsigned char)(hlen >> 8)};
  fwrite(le, 1, 2, f);
  fwrite(dict, 1, (size_t)n, f);
  for (int i = 0; i < pad; i++)
    fputc(' ', f);
  fputc('\n', f);
  fwrite(data, 1, nbytes, f);
  fclose(f);
}

static void save_f32(const char *path, int64_t rows, int64_t cols,
                     const float *v) {
  int64_t shape[2] = {rows, cols};
  TD_ASSERT(td_npy_save_raw(path, TD_F32, cols ? 2 : 1, shape, v, NULL) ==
            TD_OK);
}

static void set_run_json(const char *dir, const char *text) {
  char p[4096];
  pathf(p, sizeof p, dir, "run.json");
  write_text(p, text);
}

static const char good_json_fmt[] =
    "{\"format\": %s, \"version\": %s, \"name\": \"x\", "
    "\"classes\": [\"cat\", \"dog\", \"bird\"], \"n_train\": %s, "
    "\"n_test\": 8, \"repr_dim\": %s, \"input_shape\": [1, 2, 2], "
    "\"producer\": \"test\", \"created\": \"2024-01-01T00:00:00Z\", "
    "\"extra\": {\"anything\": true}}";

static void run_json_with(const char *dir, const char *format,
                          const char *version, const char *n_train,
                          const char *repr_dim) {
  char text[1024];
  td_t_sfmt(text, sizeof text, good_json_fmt, format, version, n_train,
            repr_dim);
  set_run_json(dir, text);
}

/* Opens (expecting success) and validates, returning the validation code. */
static int open_validate(const char *dir, td_err *err) {
  td_run *run;
  int rc = td_run_open(dir, &run, err);
  if (rc)
    return rc;
  rc = td_run_validate(run, NULL, NULL, err);
  td_run_close(run);
  return rc;
}

static int count_entries(const char *path) {
  DIR *d = opendir(path);
  if (!d)
    return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
      n++;
  closedir(d);
  return n;
}

/* ---- the good path ----------------------------------------------------- */

static int progress_calls, progress_last;
static void progress_cb(int i, int n, void *ctx) {
  (void)ctx;
  progress_calls++;
  progress_last = i == n;
}

static void test_roundtrip(void) {
  const char *dir = td_t_tmpdir("run_roundtrip");
  td_err err;
  CHECK_OK(make_run(dir, &err), &err);
  td_run *run;
  CHECK_OK(td_run_open(dir, &run, &err), &err);
  const td_run_meta *m = td_run_get_meta(run);
  CHECK(strcmp(m->name, "synthetic") == 0);
  CHECK_INT(m->n_classes, ==, C);
  CHECK(strcmp(m->classes[2], "bird") == 0);
  CHECK_INT(m->n_train, ==, N);
  CHECK_INT(m->n_test, ==, M);
  CHECK_INT(m->repr_dim, ==, D);
  CHECK_INT(m->has_input_shape, ==, 1);
  CHECK_INT(m->input_shape[2], ==, 2);
  CHECK(strncmp(m->producer, "tardis", 6) == 0);
  CHECK_INT(strlen(m->created), ==, 20); /* 2024-11-25T08:30:00Z */
  CHECK_INT(td_run_n_epochs(run), ==, 3);
  CHECK_INT(td_run_epoch_number(run, 0), ==, 1);
  CHECK_INT(td_run_epoch_number(run, 2), ==, 5);
  CHECK_INT(td_run_epoch_index(run, 5), ==, 2);
  CHECK_INT(td_run_epoch_index(run, 3), ==, -1);
  CHECK_INT(td_run_train_labels(run)[4], ==, 1);
  CHECK(td_run_has(run, -1, "train_truth"));
  CHECK(!td_run_has(run, 1, "subset")); /* an ordinary run */
  CHECK(!td_run_has(run, 1, "model"));

  td_array repr, logits;
  CHECK_OK(td_run_load(run, 2, "train_repr", &repr, &err), &err);
  CHECK_INT(repr.dtype, ==, TD_F32);
  CHECK_INT(repr.shape[0], ==, N);
  CHECK_INT(repr.shape[1], ==, D);
  CHECK_OK(td_run_load(run, 2, "train_logits.npy", &logits, &err), &err);
  td_head *h;
  CHECK_OK(td_run_load_head(run, 2, &h, &err), &err);
  CHECK_INT(td_head_in_dim(h), ==, D);
  CHECK_INT(td_head_out_dim(h), ==, C);
  CHECK_INT(td_head_n_layers(h), ==, 2);
  float z[N * C];
  td_head_forward(h, repr.data, N, z);
  for (int i = 0; i < N * C; i++)
    CHECK_NEAR(z[i], ((const float *)logits.data)[i], 1e-5);
  td_head_free(h);
  td_array_close(&repr);
  td_array_close(&logits);

  td_array truth;
  CHECK_OK(td_run_load(run, -1, "train_truth", &truth, &err), &err);
  CHECK_INT(((const int32_t *)truth.data)[3], ==, 1);
  td_array_close(&truth);

  json_t *ej;
  CHECK_OK(td__run_load_epoch_json(run, 5, &ej, &err), &err);
  CHECK_NEAR(json_real_value(json_object_get(ej, "train_loss")), 1.0 / 6,
             1e-12);
  json_decref(ej);

  td_array none;
  CHECK_INT(td_run_load(run, 1, "model_weights", &none, &err), ==, TD_ENOENT);
  CHECK_STR_CONTAINS(err.msg, "epochs/0001/model_weights.npy");
  CHECK_INT(td_run_load(run, 3, "train_repr", &none, &err), ==, TD_ENOENT);
  CHECK_STR_CONTAINS(err.msg, "epochs/0003");

  progress_calls = 0;
  CHECK_OK(td_run_validate(run, progress_cb, NULL, &err), &err);
  CHECK_INT(progress_calls, ==, 4);
  CHECK_INT(progress_last, ==, 1);

  /* Live mode: an epoch written after opening shows up on refresh. */
  CHECK_OK(write_epoch(dir, 7, 0, &err), &err);
  CHECK_INT(td_run_n_epochs(run), ==, 3);
  CHECK_OK(td_run_refresh(run, &err), &err);
  CHECK_INT(td_run_n_epochs(run), ==, 4);
  CHECK_INT(td_run_epoch_number(run, 3), ==, 7);
  td_run_close(run);
}

static void test_float16_and_int64(void) {
  const char *dir = td_t_tmpdir("run_f16");
  td_err err;
  CHECK_OK(make_run(dir, &err), &err);
  CHECK_OK(write_epoch(dir, 10000, 1, &err), &err); /* 5-digit name too */
  char p[4096];
  pathf(p, sizeof p, dir, "epochs/10000");
  CHECK(td_path_is_dir(p));
  /* train_labels stored as int64, as numpy writes by default */
  int64_t l64[N], s_n[1] = {N};
  for (int i = 0; i < N; i++)
    l64[i] = (i * 7) % C;
  pathf(p, sizeof p, dir, "train_labels.npy");
  CHECK_OK(td_npy_save_raw(p, TD_I64, 1, s_n, l64, &err), &err);
  td_run *run;
  CHECK_OK(td_run_open(dir, &run, &err), &err);
  CHECK_INT(td_run_train_labels(run)[5], ==, (5 * 7) % C);
  td_array a, f;
  CHECK_OK(td_run_load(run, 10000, "train_repr", &a, &err), &err);
  CHECK_INT(a.dtype, ==, TD_F16);
  CHECK_OK(td_run_load_f32(run, 10000, "train_repr", &f, &err), &err);
  CHECK_INT(f.dtype, ==, TD_F32);
  CHECK_NEAR(((const float *)f.data)[9],
             td_f16_to_f32(((const uint16_t *)a.data)[9]), 0);
  td_array_close(&a);
  td_array_close(&f);
  CHECK_OK(td_run_validate(run, NULL, NULL, &err), &err);
  td_run_close(run);
  /* The writer stores int64 labels as int32. */
  CHECK_OK(td_run_write_array(dir, "test_labels",
                              &(td_array){.dtype = TD_I64,
                                          .ndim = 1,
                                          .shape = {M},
                                          .data = l64,
                                          .nbytes = sizeof(int64_t) * M},
                              &err),
           &err);
  pathf(p, sizeof p, dir, "test_labels.npy");
  CHECK_OK(td_npy_load(p, &a, &err), &err);
  CHECK_INT(a.dtype, ==, TD_I32);
  td_array_close(&a);
}

static void test_head_forward_by_hand(void) {
  const char *dir = td_t_tmpdir("run_head_hand");
  td_err err;
  td_run_meta m;
  meta_init(&m);
  m.repr_dim = 2;
  m.n_classes = 2;
  CHECK_OK(td_run_create(dir, &m, 0, &err), &err);
  td_epoch_writer *w;
  CHECK_OK(td_epoch_begin(dir, 0, &w, &err), &err);
  /* layer 0: 2 -> 3, relu; layer 1: 3 -> 2 */
  const float w0[6] = {1, 2, -1, 0, 0.5f, 0.5f}, b0[3] = {0, 1, -1};
  const float w1[6] = {1, 1, 1, 2, 0, -1}, b1[2] = {0.5f, 0};
  const float *ws[2] = {w0, w1}, *bs[2] = {b0, b1};
  int dims[3] = {2, 3, 2};
  const char *acts[2] = {"relu", "none"};
  CHECK_OK(td_head_write(w, 2, ws, bs, dims, acts, &err), &err);
  td_head *h;
  CHECK_OK(td_head_load_dir(td_epoch_path(w), 2, 2, &h, &err), &err);
  td_epoch_abort(w);
  /* x = (1, 2): h = relu(5, 0, 0.5) = (5, 0, 0.5); z = (5.5+0.5, 10-0.5)
   * x = (-3, 1): h = relu(-1, 4, -2) = (0, 4, 0); z = (4.5, 0) */
  const float x[4] = {1, 2, -3, 1};
  float z[4];
  td_head_forward(h, x, 2, z);
  CHECK_NEAR(z[0], 6.0, 1e-6);
  CHECK_NEAR(z[1], 9.5, 1e-6);
  CHECK_NEAR(z[2], 4.5, 1e-6);
  CHECK_NEAR(z[3], 0.0, 1e-6);
  td_head_forward(h, x, 0, z); /* no rows: no work, no crash */
  /* Many rows cross the internal block size. */
  enum { R = 2500 };
  float *xs = malloc(sizeof(float) * 2 * R),
        *zs = malloc(sizeof(float) * 2 * R);
  CHECK(xs && zs);
  for (int i = 0; i < R; i++) {
    xs[2 * i] = x[2 * (i % 2)];
    xs[2 * i + 1] = x[2 * (i % 2) + 1];
  }
  td_head_forward(h, xs, R, zs);
  int ok = 1;
  for (int i = 0; i < R; i++)
    ok &= fabsf(zs[2 * i] - z[2 * (i % 2)]) < 1e-6f &&
          fabsf(zs[2 * i + 1] - z[2 * (i % 2) + 1]) < 1e-6f;
  free(xs);
  free(zs);
  td_head_free(h);
  CHECK(ok);
}

/* The logits are bit-identical at any thread count: rows are split into
 * fixed chunks and each GEMM runs on one BLAS thread (OpenBLAS's threaded
 * GEMM sums in an order that depends on its thread count). */
static void test_head_forward_thread_count(void) {
  const char *dir = td_t_tmpdir("run_head_threads");
  enum { HD = 96, HH = 64, HR = 3001 }; /* C classes, as meta_init */
  td_err err;
  td_run_meta m;
  meta_init(&m);
  m.repr_dim = HD;
  CHECK_OK(td_run_create(dir, &m, 0, &err), &err);
  td_epoch_writer *w;
  CHECK_OK(td_epoch_begin(dir, 0, &w, &err), &err);
  static float w0[HH * HD], b0[HH], w1[C * HH], b1[C], x[HR * HD], ref[HR * C],
      z[HR * C];
  td_rng r;
  td_rng_seed(&r, 5);
  for (int i = 0; i < HH * HD; i++)
    w0[i] = td_rng_normal(&r) * 0.1f;
  for (int i = 0; i < C * HH; i++)
    w1[i] = td_rng_normal(&r) * 0.1f;
  for (int i = 0; i < HH; i++)
    b0[i] = td_rng_normal(&r) * 0.1f;
  for (int i = 0; i < C; i++)
    b1[i] = td_rng_normal(&r) * 0.1f;
  for (int i = 0; i < HR * HD; i++)
    x[i] = td_rng_normal(&r);
  const float *ws[2] = {w0, w1}, *bs[2] = {b0, b1};
  int dims[3] = {HD, HH, C};
  const char *acts[2] = {"relu", "none"};
  CHECK_OK(td_head_write(w, 2, ws, bs, dims, acts, &err), &err);
  td_head *h;
  CHECK_OK(td_head_load_dir(td_epoch_path(w), HD, C, &h, &err), &err);
  td_epoch_abort(w);
  int before = td_threads();
  td_set_threads(1);
  td_head_forward(h, x, HR, ref);
  for (int t = 2; t <= 4; t++) {
    td_set_threads(t);
    memset(z, 0, sizeof z);
    td_head_forward(h, x, HR, z);
    CHECK(memcmp(ref, z, sizeof z) == 0);
  }
  td_set_threads(before);
  td_head_free(h);
}

/* ---- run.json ---------------------------------------------------------- */

static void test_missing_run_json(void) {
  const char *dir = td_t_tmpdir("run_no_json");
  td_err err;
  td_run *run;
  CHECK_INT(td_run_open(dir, &run, &err), ==, TD_ENOENT);
  CHECK_STR_CONTAINS(err.msg, "run.json");
  CHECK(run == NULL);
  char p[4096];
  pathf(p, sizeof p, dir, "nope");
  CHECK_INT(td_run_open(p, &run, &err), ==, TD_ENOENT);
  CHECK_STR_CONTAINS(err.msg, "nope");
}

static void test_run_json_errors(void) {
  const char *dir = td_t_tmpdir("run_json_errors");
  td_err err;
  CHECK_OK(make_run(dir, &err), &err);
  char expect[4200];

  run_json_with(dir, "\"tardis-run\"", "1", "20", "4");
  CHECK_OK(open_validate(dir, &err), &err); /* unknown fields are fine */

  run_json_with(dir, "\"something-else\"", "1", "20", "4");
  CHECK_INT(open_validate(dir, &err), ==, TD_EFORMAT);
  CHECK_STR_CONTAINS(err.msg, "run.json");
  CHECK_STR_CONTAINS(err.msg, "something-else");

  run_json_with(dir, "\"tardis-run\"", "2", "20", "4");
  CHECK_INT(open_validate(dir, &err), ==, TD_EVERSION);
  td_t_sfmt(expect, sizeof expect,
            "%s/run.json: format version 2 is newer than this tardis supports "
            "(1)",
            dir);
  CHECK(strcmp(err.msg, expect) == 0);

  run_json_with(dir, "\"tardis-run\"", "\"1\"", "20", "4");
  CHECK_INT(open_validate(dir, &err), ==, TD_EFORMAT);
  CHECK_STR_CONTAINS(err.msg, "\"version\"");

  run_json_with(dir, "\"tardis-run\"", "1", "20", "\"4\"");
  CHECK_INT(open_validate(dir, &err), ==, TD_EFORMAT);
  CHECK_STR_CONTAINS(err.msg, "run.json: field \"repr_dim\" should be an "
                              "integer, found a string");

  run_json_with(dir, "\"tardis-run\"", "1", "0", "4");
  CHECK_INT(open_validate(dir, &err), ==, TD_EVALUE);
  CHECK_STR_CONTAINS(err.msg, "n_train");

  set_run_json(dir, "{\"format\": \"tardis-run\", \"version\": 1, \"name\": "
                    "\"x\", \"classes\": [\"a\", \"b\", \"c\"], \"n_test\": "
                    "8, \"repr_dim\": 4, \"input_shape\": null, \"producer\": "
                    "\"p\", \"created\": \"c\"}");
  CHECK_INT(open_validate(dir, &err), ==, TD_EFORMAT);
  CHECK_STR_CONTAINS(err.msg, "run.json: missing field \"n_train\"");

  set_run_json(dir, "{\"format\": \"tardis-run\", \"version\": 1, \"name\": "
                    "\"x\", \"classes\": [\"a\", 2], \"n_train\": 20, "
                    "\"n_test\": 8, \"repr_dim\": 4, \"input_shape\": null, "
                    "\"producer\": \"p\", \"created\": \"c\"}");
  CHECK_INT(open_validate(dir, &err), ==, TD_EFORMAT);
  CHECK_STR_CONTAINS(err.msg, "\"classes\"[1]");

  set_run_json(dir, "{\"format\": \"tardis-run\", \"version\": 1, \"name\": "
                    "\"x\", \"classes\": [\"a\"], \"n_train\": 20, "
                    "\"n_test\": 8, \"repr_dim\": 4, \"input_shape\": null, "
                    "\"producer\": \"p\", \"created\": \"c\"}");
  CHECK_INT(open_validate(dir, &err), ==, TD_EFORMAT);
  CHECK_STR_CONTAINS(err.msg, "run.json: field \"classes\" should be an array "
                              "of at least 2");

  set_run_json(dir, "{\"format\": \"tardis-run\", \"version\": 1, \"name\": "
                    "\"x\", \"classes\": [\"a\", \"b\", \"c\"], \"n_train\": "
                    "20, \"n_test\": 8, \"repr_dim\": 4, \"input_shape\": "
                    "null, \"producer\": \"p\", \"created\": \"yesterday\"}");
  CHECK_INT(open_validate(dir, &err), ==, TD_EFORMAT);
  CHECK_STR_CONTAINS(err.msg, "run.json: field \"created\" should be an "
                              "ISO-8601 time");

  /* Stored inputs need input_shape to be interpreted. */
  set_run_json(dir, "{\"format\": \"tardis-run\", \"version\": 1, \"name\": "
                    "\"x\", \"classes\": [\"a\", \"b\", \"c\"], \"n_train\": "
                    "20, \"n_test\": 8, \"repr_dim\": 4, \"input_shape\": "
                    "null, \"producer\": \"p\", \"created\": "
                    "\"2024-01-01T10:00:00.123+01:00\"}");
  CHECK_INT(open_validate(dir, &err), ==, TD_ESHAPE);
  CHECK_STR_CONTAINS(err.msg, "train_inputs.npy: expected 20×c×h×w (run.json "
                              "has no input_shape)");

  set_run_json(dir, "[1, 2]");
  CHECK_INT(open_validate(dir, &err), ==, TD_EFORMAT);
  CHECK_STR_CONTAINS(err.msg, "run.json: expected a JSON object");

  set_run_json(dir, "{\"format\": \"tardis-run\", ");
  CHECK_INT(open_validate(dir, &err), ==, TD_EFORMAT);
  CHECK_STR_CONTAINS(err.msg, "run.json: invalid JSON");
}

/* ---- top-level arrays -------------------------------------------------- */

static void test_labels_errors(void) {
  const char *dir = td_t_tmpdir("run_labels");
  td_err err;
  CHECK_OK(make_run(dir, &err), &err);
  char p[4096];
  pathf(p, sizeof p, dir, "train_labels.npy");
  int32_t bad[N + 1];
  for (int i = 0; i <= N; i++)
    bad[i] = i % C;
  bad[13] = C; /* one past the last class */
  int64_t s_n[1] = {N}, s_n1[1] = {N + 1};
  CHECK_OK(td_npy_save_raw(p, TD_I32, 1, s_n, bad, &err), &err);
  CHECK_INT(open_validate(dir, &err), ==, TD_ERANGE);
  CHECK_STR_CONTAINS(err.msg, "train_labels.npy: entry 13 is 3");

  bad[13] = -1;
  CHECK_OK(td_npy_save_raw(p, TD_I32, 1, s_n, bad, &err), &err);
  CHECK_INT(open_validate(dir, &err), ==, TD_ERANGE);
  CHECK_STR_CONTAINS(err.msg, "train_labels.npy");

  bad[13] = 0;
  CHECK_OK(td_npy_save_raw(p, TD_I32, 1, s_n1, bad, &err), &err);
  CHECK_INT(open_validate(dir, &err), ==, TD_ESHAPE);
  CHECK_STR_CONTAINS(err.msg,
                     "train_labels.npy: expected 20 int32 or int64, found "
                     "21 int32");

  /* The writer refuses the same mistakes before anything reaches disk. */
  td_array a;
  td_array_wrap(&a, TD_I32, 1, s_n1, bad);
  CHECK_INT(td_run_write_array(dir, "train_labels", &a, &err), ==, TD_ESHAPE);
  CHECK_STR_CONTAINS(err.msg, "train_labels.npy");
  CHECK_INT(td_run_write_array(dir, "../evil", &a, &err), ==, TD_EARG);

  /* Optional top-level arrays are checked by validate. */
  CHECK_OK(td_npy_save_raw(p, TD_I32, 1, s_n, bad, &err), &err);
  pathf(p, sizeof p, dir, "train_truth.npy");
  bad[2] = 7;
  CHECK_OK(td_npy_save_raw(p, TD_I32, 1, s_n, bad, &err), &err);
  CHECK_INT(open_validate(dir, &err), ==, TD_ERANGE);
  CHECK_STR_CONTAINS(err.msg, "train_truth.npy: entry 2 is 7");

  unlink(p);
  pathf(p, sizeof p, dir, "train_inputs.npy");
  uint8_t px[N * 4] = {0};
  int64_t s_flat[2] = {N, 4};
  CHECK_OK(td_npy_save_raw(p, TD_U8, 2, s_flat, px, &err), &err);
  CHECK_INT(open_validate(dir, &err), ==, TD_ESHAPE);
  CHECK_STR_CONTAINS(err.msg,
                     "train_inputs.npy: expected 20×1×2×2 float32 or uint8, "
                     "found 20×4 uint8");

  unlink(p);
  pathf(p, sizeof p, dir, "train_labels.npy");
  unlink(p);
  CHECK_INT(open_validate(dir, &err), ==, TD_ENOENT);
  CHECK_STR_CONTAINS(err.msg, "train_labels.npy");
}

/* ---- epoch arrays ------------------------------------------------------ */

static void test_epoch_array_errors(void) {
  const char *dir = td_t_tmpdir("run_epoch_arrays");
  td_err err;
  CHECK_OK(make_run(dir, &err), &err);
  char p[4096], expect[4200];
  float v[N * (D + 1)];
  for (int i = 0; i < N * (D + 1); i++)
    v[i] = (float)i / 100.0f;

  /* repr with the wrong width */
  pathf(p, sizeof p, dir, "epochs/0002/train_repr.npy");
  save_f32(p, N, D + 1, v);
  CHECK_INT(open_validate(dir, &err), ==, TD_ESHAPE);
  td_t_sfmt(expect, sizeof expect,
            "%s/epochs/0002/train_repr.npy: expected 20×4 float32 or float16, "
            "found 20×5 float32",
            dir);
  CHECK(strcmp(err.msg, expect) == 0);

  /* float64 is not a representation dtype */
  double v64[N * D] = {0};
  write_raw_npy(p, "<f8", "(20, 4)", v64, sizeof v64);
  CHECK_INT(open_validate(dir, &err), ==, TD_EDTYPE);
  CHECK_STR_CONTAINS(err.msg, "epochs/0002/train_repr.npy");

  /* truncated file */
  save_f32(p, N, D, v);
  CHECK(truncate(p, 100) == 0);
  CHECK_INT(open_validate(dir, &err), ==, TD_EFORMAT);
  CHECK_STR_CONTAINS(err.msg, "epochs/0002/train_repr.npy");

  /* header promising more data than the file holds */
  write_raw_npy(p, "<f4", "(20, 4)", v, sizeof(float) * 10 * D);
  CHECK_INT(open_validate(dir, &err), ==, TD_EFORMAT);
  CHECK_STR_CONTAINS(err.msg, "epochs/0002/train_repr.npy");

  /* NaN at row 7, column 2 */
  v[7 * D + 2] = NAN;
  save_f32(p, N, D, v);
  CHECK_INT(open_validate(dir, &err), ==, TD_EVALUE);
  CHECK_STR_CONTAINS(err.msg, "epochs/0002/train_repr.npy: NaN at row 7, "
                              "column 2");
  CHECK_OK(td_remove_tree(dir, &err), &err);
  CHECK_OK(make_run(dir, &err), &err);
  v[7 * D + 2] = INFINITY;
  pathf(p, sizeof p, dir, "epochs/0005/test_repr.npy");
  save_f32(p, M, D, v);
  CHECK_INT(open_validate(dir, &err), ==, TD_EVALUE);
  CHECK_STR_CONTAINS(err.msg, "epochs/0005/test_repr.npy: infinite value at "
                              "row 7, column 2");

  /* repair those two, then break the logits */
  v[7 * D + 2] = 0;
  CHECK_OK(td_remove_tree(dir, &err), &err);
  CHECK_OK(make_run(dir, &err), &err);
  pathf(p, sizeof p, dir, "epochs/0001/train_logits.npy");
  save_f32(p, N, C + 1, v);
  CHECK_INT(open_validate(dir, &err), ==, TD_ESHAPE);
  CHECK_STR_CONTAINS(err.msg, "epochs/0001/train_logits.npy: expected 20×3 "
                              "float32 or float16, found 20×4 float32");
  /* right shape, but not what the head computes */
  save_f32(p, N, C, v);
  CHECK_INT(open_validate(dir, &err), ==, TD_EVALUE);
  CHECK_STR_CONTAINS(err.msg, "epochs/0001/head.json: the head does not "
                              "reproduce train_logits.npy");
  unlink(p);
  CHECK_INT(open_validate(dir, &err), ==, TD_ENOENT);
  CHECK_STR_CONTAINS(err.msg, "epochs/0001/train_logits.npy");

  /* per-sample losses must be finite too */
  CHECK_OK(td_remove_tree(dir, &err), &err);
  CHECK_OK(make_run(dir, &err), &err);
  pathf(p, sizeof p, dir, "epochs/0002/train_loss.npy");
  v[4] = NAN;
  save_f32(p, N, 0, v);
  CHECK_INT(open_validate(dir, &err), ==, TD_EVALUE);
  CHECK_STR_CONTAINS(err.msg, "epochs/0002/train_loss.npy: NaN at entry 4");

  /* an epoch's subset.npy needs the run's (tests/test_subset.c has the rest) */
  CHECK_OK(td_remove_tree(dir, &err), &err);
  CHECK_OK(make_run(dir, &err), &err);
  pathf(p, sizeof p, dir, "epochs/0005/subset.npy");
  int32_t sub[3] = {1, 2, 3};
  int64_t s3[1] = {3};
  CHECK_OK(td_npy_save_raw(p, TD_I32, 1, s3, sub, &err), &err);
  CHECK_INT(open_validate(dir, &err), ==, TD_ESTATE);
  CHECK_STR_CONTAINS(err.msg, "epochs/0005/subset.npy: an epoch of a run "
                              "without");
}

static void test_writer_checks(void) {
  const char *dir = td_t_tmpdir("run_writer_checks");
  td_err err;
  CHECK_OK(make_run(dir, &err), &err);
  td_epoch_writer *w;
  CHECK_INT(td_epoch_begin(dir, 2, &w, &err), ==, TD_EEXIST);
  CHECK_STR_CONTAINS(err.msg, "epochs/0002");
  CHECK_OK(td_epoch_begin(dir, 3, &w, &err), &err);
  float v[N * (D + 1)] = {0};
  int64_t shape[2] = {N, D + 1};
  td_array a;
  td_array_wrap(&a, TD_F32, 2, shape, v);
  CHECK_INT(td_epoch_add_array(w, "train_repr.npy", &a, &err), ==, TD_ESHAPE);
  CHECK_STR_CONTAINS(err.msg, "epochs/0003/train_repr.npy: expected 20×4");
  CHECK_INT(td_epoch_add_array(w, "../x.npy", &a, &err), ==, TD_EARG);
  json_t *bad = json_pack("{s:i}", "epoch", 4);
  CHECK_INT(td__epoch_add_json(w, "epoch.json", bad, &err), ==, TD_EARG);
  json_decref(bad);
  /* Committing an incomplete epoch fails and leaves nothing behind. */
  CHECK_INT(td_epoch_commit(w, &err), ==, TD_ESTATE);
  CHECK_STR_CONTAINS(err.msg, "epoch.json");
  char p[4096];
  pathf(p, sizeof p, dir, "epochs");
  CHECK_INT(count_entries(p), ==, 3);
}

/* ---- head -------------------------------------------------------------- */

static void test_head_errors(void) {
  const char *dir = td_t_tmpdir("run_head_errors");
  td_err err;
  CHECK_OK(make_run(dir, &err), &err);
  char p[4096], w[4096];
  pathf(p, sizeof p, dir, "epochs/0001/head.json");

  /* chain mismatch: layer 1 expects 6 inputs but layer 0 gives 5 */
  float big[C * 6] = {0};
  pathf(w, sizeof w, dir, "epochs/0001/head_1_w.npy");
  save_f32(w, C, 6, big);
  CHECK_INT(open_validate(dir, &err), ==, TD_ESHAPE);
  CHECK_STR_CONTAINS(err.msg, "epochs/0001/head.json: layer 1 takes 6 "
                              "inputs, but layer 0 gives 5");

  write_text(p,
             "[{\"type\": \"dense\", \"weight\": \"head_0_w.npy\", \"bias\": "
             "\"head_0_b.npy\", \"activation\": \"relu\"}]");
  CHECK_INT(open_validate(dir, &err), ==, TD_ESHAPE);
  CHECK_STR_CONTAINS(err.msg, "head.json: the last layer gives 5 outputs, "
                              "expected 3");

  write_text(p, "[{\"type\": \"dense\", \"weight\": \"../../train_labels.npy\","
                " \"bias\": \"head_0_b.npy\", \"activation\": \"none\"}]");
  CHECK_INT(open_validate(dir, &err), ==, TD_EFORMAT);
  CHECK_STR_CONTAINS(err.msg, "epochs/0001/head.json: layer 0: \"weight\" "
                              "must be a plain file name");
  CHECK_STR_CONTAINS(err.msg, "../../train_labels.npy");

  write_text(p, "[{\"type\": \"dense\", \"weight\": \"/etc/passwd\","
                " \"bias\": \"head_0_b.npy\"}]");
  CHECK_INT(open_validate(dir, &err), ==, TD_EFORMAT);
  CHECK_STR_CONTAINS(err.msg, "/etc/passwd");

  write_text(p, "[{\"type\": \"conv\", \"weight\": \"head_0_w.npy\","
                " \"bias\": \"head_0_b.npy\"}]");
  CHECK_INT(open_validate(dir, &err), ==, TD_EFORMAT);
  CHECK_STR_CONTAINS(err.msg, "head.json: layer 0: \"type\" should be "
                              "\"dense\", found \"conv\"");

  write_text(p, "[{\"type\": \"dense\", \"weight\": \"head_0_w.npy\","
                " \"bias\": \"head_0_b.npy\", \"activation\": \"tanh\"}]");
  CHECK_INT(open_validate(dir, &err), ==, TD_EFORMAT);
  CHECK_STR_CONTAINS(err.msg, "tanh");

  write_text(p, "[{\"type\": \"dense\", \"weight\": \"nope.npy\","
                " \"bias\": \"head_0_b.npy\"}]");
  CHECK_INT(open_validate(dir, &err), ==, TD_ENOENT);
  CHECK_STR_CONTAINS(err.msg, "epochs/0001/nope.npy");

  write_text(p, "[]");
  CHECK_INT(open_validate(dir, &err), ==, TD_EFORMAT);
  CHECK_STR_CONTAINS(err.msg, "epochs/0001/head.json");

  unlink(p);
  CHECK_INT(open_validate(dir, &err), ==, TD_ENOENT);
  CHECK_STR_CONTAINS(err.msg, "epochs/0001/head.json");
}

/* ---- epoch.json and the epoch list -------------------------------------- */

static void test_epoch_json_errors(void) {
  const char *dir = td_t_tmpdir("run_epoch_json");
  td_err err;
  CHECK_OK(make_run(dir, &err), &err);
  char p[4096];
  pathf(p, sizeof p, dir, "epochs/0005/epoch.json");
  write_text(p, "{\"epoch\": 4, \"train_loss\": 0.3}");
  CHECK_INT(open_validate(dir, &err), ==, TD_EVALUE);
  CHECK_STR_CONTAINS(err.msg, "epochs/0005/epoch.json: field \"epoch\" is 4, "
                              "expected 5");
  write_text(p, "{\"epoch\": 5, \"train_loss\": \"low\"}");
  CHECK_INT(open_validate(dir, &err), ==, TD_EFORMAT);
  CHECK_STR_CONTAINS(err.msg, "epochs/0005/epoch.json: field \"train_loss\"");
  write_text(p, "{\"train_loss\": 0.1}");
  CHECK_INT(open_validate(dir, &err), ==, TD_EFORMAT);
  CHECK_STR_CONTAINS(err.msg, "epochs/0005/epoch.json: missing field");
  write_text(p, "{\"epoch\": 5, \"test_acc\": null, \"notes\": [1, 2]}");
  CHECK_OK(open_validate(dir, &err), &err);
}

static void test_epoch_dir_names(void) {
  const char *dir = td_t_tmpdir("run_epoch_names");
  td_err err;
  CHECK_OK(make_run(dir, &err), &err);
  char p[4096];
  td_run *run;

  /* A killed writer's temporary directory is invisible to readers. */
  pathf(p, sizeof p, dir, "epochs/.tmp-0003-99999999");
  CHECK(mkdir(p, 0755) == 0);
  pathf(p, sizeof p, dir, "epochs/.tmp-0003-99999999/train_repr.npy");
  write_text(p, "half an array");
  pathf(p, sizeof p, dir, "epochs/.tmp-0004-1");
  CHECK(mkdir(p, 0755) == 0); /* pid 1 is alive: not stale */
  CHECK_OK(td_run_open(dir, &run, &err), &err);
  CHECK_INT(td_run_n_epochs(run), ==, 3);
  CHECK_OK(td_run_validate(run, NULL, NULL, &err), &err);
  td_run_close(run);
  int removed = -1;
  CHECK_OK(td_run_remove_stale(dir, &removed, &err), &err);
  CHECK_INT(removed, ==, 1);
  pathf(p, sizeof p, dir, "epochs/.tmp-0003-99999999");
  CHECK(!td_path_exists(p));
  pathf(p, sizeof p, dir, "epochs/.tmp-0004-1");
  CHECK(td_path_exists(p));

  pathf(p, sizeof p, dir, "epochs/abc");
  CHECK(mkdir(p, 0755) == 0);
  CHECK_INT(td_run_open(dir, &run, &err), ==, TD_EFORMAT);
  CHECK_STR_CONTAINS(err.msg, "epochs/abc: not an epoch directory");
  rmdir(p);

  pathf(p, sizeof p, dir, "epochs/7");
  CHECK(mkdir(p, 0755) == 0);
  CHECK_INT(td_run_open(dir, &run, &err), ==, TD_EFORMAT);
  CHECK_STR_CONTAINS(err.msg, "epochs/7: epoch directory names are "
                              "zero-padded to 4 digits (expected 0007)");
  rmdir(p);

  pathf(p, sizeof p, dir, "epochs/0009");
  write_text(p, "not a directory");
  CHECK_INT(td_run_open(dir, &run, &err), ==, TD_EFORMAT);
  CHECK_STR_CONTAINS(err.msg, "epochs/0009");
  unlink(p);

  /* an epoch directory missing its required files */
  pathf(p, sizeof p, dir, "epochs/0008");
  CHECK(mkdir(p, 0755) == 0);
  CHECK_INT(open_validate(dir, &err), ==, TD_ENOENT);
  CHECK_STR_CONTAINS(err.msg, "epochs/0008/epoch.json");
}

/* ---- create / force / abort --------------------------------------------- */

static void test_create_force_abort(void) {
  const char *dir = td_t_tmpdir("run_create");
  td_err err;
  CHECK_OK(make_run(dir, &err), &err);
  td_run_meta m;
  meta_init(&m);
  CHECK_INT(td_run_create(dir, &m, 0, &err), ==, TD_EEXIST);
  CHECK_STR_CONTAINS(err.msg, "--force");
  CHECK_OK(open_validate(dir, &err), &err); /* nothing lost */

  /* --force never deletes a directory that is not a run */
  char other[4096], p[4096];
  pathf(other, sizeof other, dir, "epochs/0001");
  CHECK_INT(td_run_create(other, &m, 1, &err), ==, TD_EEXIST);
  CHECK_STR_CONTAINS(err.msg, "not a tardis run");
  CHECK_OK(open_validate(dir, &err), &err);

  CHECK_OK(td_run_create(dir, &m, 1, &err), &err);
  pathf(p, sizeof p, dir, "epochs");
  CHECK_INT(count_entries(p), ==, 0);
  CHECK_INT(count_entries(dir), ==, 2); /* run.json, epochs/ */
  td_run *run;
  CHECK_INT(td_run_open(dir, &run, &err), ==, TD_ENOENT); /* no labels yet */
  CHECK_STR_CONTAINS(err.msg, "train_labels.npy");

  /* abort removes everything the writer made */
  td_epoch_writer *w;
  CHECK_OK(td_epoch_begin(dir, 1, &w, &err), &err);
  CHECK_STR_CONTAINS(td_epoch_path(w), "epochs/.tmp-0001-");
  float v[N * D] = {0};
  int64_t shape[2] = {N, D};
  td_array a;
  td_array_wrap(&a, TD_F32, 2, shape, v);
  CHECK_OK(td_epoch_add_array(w, "train_repr.npy", &a, &err), &err);
  pathf(p, sizeof p, td_epoch_path(w), "model");
  CHECK(mkdir(p, 0755) == 0);
  td_epoch_abort(w);
  pathf(p, sizeof p, dir, "epochs");
  CHECK_INT(count_entries(p), ==, 0);
  td_epoch_abort(NULL);

  /* an empty existing directory is fine without force */
  pathf(p, sizeof p, dir, "fresh");
  CHECK(mkdir(p, 0755) == 0);
  CHECK_OK(td_run_create(p, &m, 0, &err), &err);
  m.n_classes = 0;
  CHECK_INT(td_run_create(p, &m, 1, &err), ==, TD_EARG);
}

/* ---- tardis info (black box, when the binary exists) ------------------ */

static int run_cmd(const char *cmd) {
  int st = system(cmd);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli_info(void) {
  const char *bin = getenv("TD_BIN");
  if (!bin)
    SKIP("TD_BIN is not set (ctest sets it to the tardis binary)");
  CHECK_INT(access(bin, X_OK), ==, 0);
  const char *dir = td_t_tmpdir("run_cli");
  td_err err;
  CHECK_OK(make_run(dir, &err), &err);
  char cmd[8192], out[4096], p[4096];
  td_t_sfmt(out, sizeof out, "%s/../cli_out.txt", dir);
  td_t_sfmt(cmd, sizeof cmd, "'%s' info '%s' >'%s' 2>&1", bin, dir, out);
  CHECK_INT(run_cmd(cmd), ==, 0);
  char *text = NULL;
  size_t len;
  CHECK_OK(td_read_file(out, &text, &len, &err), &err);
  int ok = strstr(text, "run is valid") && strstr(text, "synthetic") &&
           strstr(text, "epochs      3 (1 to 5, with gaps)") &&
           strstr(text, "0.1667");
  if (!ok)
    fprintf(stderr, "%s", text);
  free(text);
  CHECK(ok);

  td_t_sfmt(cmd, sizeof cmd, "'%s' info --json '%s' >'%s' 2>/dev/null", bin,
            dir, out);
  CHECK_INT(run_cmd(cmd), ==, 0);
  json_error_t jerr;
  json_t *j = json_load_file(out, 0, &jerr);
  CHECK(j != NULL);
  int jok = json_is_true(json_object_get(j, "valid")) &&
            json_array_size(json_object_get(j, "epochs")) == 3 &&
            json_integer_value(json_object_get(j, "n_train")) == N;
  json_decref(j);
  CHECK(jok);

  td_t_sfmt(cmd, sizeof cmd, "'%s' info --help >/dev/null 2>&1", bin);
  CHECK_INT(run_cmd(cmd), ==, 0);
  td_t_sfmt(cmd, sizeof cmd, "'%s' info --bogus '%s' >/dev/null 2>&1", bin,
            dir);
  CHECK_INT(run_cmd(cmd), ==, 2);
  td_t_sfmt(cmd, sizeof cmd, "'%s' info >/dev/null 2>&1", bin);
  CHECK_INT(run_cmd(cmd), ==, 2);

  pathf(p, sizeof p, dir, "epochs/0002/epoch.json");
  write_text(p, "{\"epoch\": 3}");
  td_t_sfmt(cmd, sizeof cmd, "'%s' info --quick '%s' >/dev/null 2>&1", bin,
            dir);
  CHECK_INT(run_cmd(cmd), ==, 0);
  td_t_sfmt(cmd, sizeof cmd, "'%s' info '%s' >'%s' 2>&1", bin, dir, out);
  CHECK_INT(run_cmd(cmd), ==, 1);
  CHECK_OK(td_read_file(out, &text, &len, &err), &err);
  ok = strstr(text, "tardis: error: ") &&
       strstr(text, "epochs/0002/epoch.json") && !strstr(text, "run is valid");
  free(text);
  CHECK(ok);
}

int main(void) {
  RUN(test_roundtrip);
  RUN(test_float16_and_int64);
  RUN(test_head_forward_by_hand);
  RUN(test_head_forward_thread_count);
  RUN(test_missing_run_json);
  RUN(test_run_json_errors);
  RUN(test_labels_errors);
  RUN(test_epoch_array_errors);
  RUN(test_writer_checks);
  RUN(test_head_errors);
  RUN(test_epoch_json_errors);
  RUN(test_epoch_dir_names);
  RUN(test_create_force_abort);
  RUN(test_cli_info);
  return td_t_finish();
}
