/* Core: errors, npy reading/writing (incl. hostile headers), float16, rng,
 * parallel-for, file helpers. */
#include <cblas.h>
#include <stdatomic.h>

#include "harness.h"
#include "tardis/array.h"
#include "tardis/error.h"
#include "tardis/fsutil.h"
#include "tardis/parallel.h"
#include "tardis/rng.h"

static void test_error_table(void) {
  CHECK(!strcmp(td_strerror(TD_EFORMAT), "malformed file"));
  CHECK(!strcmp(td_err_name(TD_ESHAPE), "TD_ESHAPE"));
  CHECK(!strcmp(td_strerror(12345), "unknown error"));
  td_err e;
  CHECK_INT(td_err_set(&e, TD_EIO, "x%d", 5), ==, TD_EIO);
  td_err_prefix(&e, "file");
  CHECK(!strcmp(e.msg, "file: x5"));
  /* The codes run 0, -1, ..., -(TD_ERR_COUNT - 1) without gaps. */
  CHECK_INT(TD_ERR_COUNT, >=, 14);
  for (int c = 0; c > -TD_ERR_COUNT; c--)
    CHECK(strcmp(td_err_name(c), "TD_EUNKNOWN") != 0);
  CHECK(!strcmp(td_err_name(-TD_ERR_COUNT), "TD_EUNKNOWN"));
}

static void test_npy_roundtrip(void) {
  const char *dir = td_t_tmpdir("npy_rt");
  char path[4200];
  td_err err;
  float v[6] = {1, 2, 3, 4.5f, -5, 6};
  int64_t shape[2] = {2, 3};
  snprintf(path, sizeof path, "%s/a.npy", dir);
  CHECK_OK(td_npy_save_raw(path, TD_F32, 2, shape, v, &err), &err);
  td_array a;
  CHECK_OK(td_npy_load(path, &a, &err), &err);
  CHECK_INT(a.dtype, ==, TD_F32);
  CHECK_INT(a.ndim, ==, 2);
  CHECK_INT(a.shape[0], ==, 2);
  CHECK_INT(a.shape[1], ==, 3);
  CHECK(!memcmp(a.data, v, sizeof v));
  td_array_close(&a);
  /* 1-d int32, 0-length, uint8 3-d */
  int32_t labels[5] = {0, 1, 2, 3, 9};
  int64_t s1 = 5;
  CHECK_OK(td_npy_save_raw(path, TD_I32, 1, &s1, labels, &err), &err);
  CHECK_OK(td_npy_load(path, &a, &err), &err);
  CHECK_INT(a.ndim, ==, 1);
  CHECK(!memcmp(a.data, labels, sizeof labels));
  td_array_close(&a);
  int64_t s0 = 0;
  CHECK_OK(td_npy_save_raw(path, TD_I64, 1, &s0, NULL, &err), &err);
  CHECK_OK(td_npy_load(path, &a, &err), &err);
  CHECK_INT(a.shape[0], ==, 0);
  td_array_close(&a);
  /* no temp file left behind */
  char tmp[4300];
  snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
  CHECK(!td_path_exists(tmp));
}

/* Writes raw bytes to a file and returns the load's result code. */
static int load_bytes(const char *dir, const void *bytes, size_t n,
                      td_err *err) {
  char path[4200];
  snprintf(path, sizeof path, "%s/bad.npy", dir);
  FILE *f = fopen(path, "wb");
  fwrite(bytes, 1, n, f);
  fclose(f);
  td_array a;
  int rc = td_npy_load(path, &a, err);
  if (rc == TD_OK)
    td_array_close(&a);
  return rc;
}

static size_t make_npy(char *buf, const char *dict, size_t data_bytes) {
  size_t n = strlen(dict);
  size_t total = (10 + n + 1 + 63) / 64 * 64, hlen = total - 10;
  memcpy(buf, "\x93NUMPY\x01\x00", 8);
  buf[8] = (char)(hlen & 0xff);
  buf[9] = (char)(hlen >> 8);
  memcpy(buf + 10, dict, n);
  memset(buf + 10 + n, ' ', hlen - n - 1);
  buf[total - 1] = '\n';
  memset(buf + total, 0, data_bytes);
  return total + data_bytes;
}

static void test_npy_hostile(void) {
  const char *dir = td_t_tmpdir("npy_bad");
  char buf[4096];
  td_err err;
  size_t n;
  CHECK_INT(load_bytes(dir, "hello world, not npy", 20, &err), ==, TD_EFORMAT);
  CHECK_STR_CONTAINS(err.msg, "bad magic");
  CHECK_STR_CONTAINS(err.msg, "bad.npy");
  n = make_npy(buf, "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }",
               16);
  CHECK_INT(load_bytes(dir, buf, n, &err), ==, TD_EDTYPE);
  CHECK_STR_CONTAINS(err.msg, "<f8");
  n = make_npy(buf, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }",
               8);
  CHECK_INT(load_bytes(dir, buf, n, &err), ==, TD_EDTYPE);
  n = make_npy(buf, "{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }",
               8);
  CHECK_INT(load_bytes(dir, buf, n, &err), ==, TD_EFORMAT);
  CHECK_STR_CONTAINS(err.msg, "Fortran");
  /* header lies about the shape: 3×4 floats declared, 8 bytes present */
  n = make_npy(
      buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", 8);
  CHECK_INT(load_bytes(dir, buf, n, &err), ==, TD_EFORMAT);
  CHECK_STR_CONTAINS(err.msg, "3×4");
  /* overflowing shape */
  n = make_npy(buf,
               "{'descr': '<f4', 'fortran_order': False, 'shape': "
               "(4611686018427387904, 4611686018427387904), }",
               0);
  CHECK_INT(load_bytes(dir, buf, n, &err), ==, TD_EFORMAT);
  CHECK_STR_CONTAINS(err.msg, "overflow");
  /* truncated header */
  n = make_npy(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
               8);
  CHECK_INT(load_bytes(dir, buf, 30, &err), ==, TD_EFORMAT);
  /* missing key */
  n = make_npy(buf, "{'descr': '<f4', 'shape': (2,), }", 8);
  CHECK_INT(load_bytes(dir, buf, n, &err), ==, TD_EFORMAT);
  /* unknown version */
  n = make_npy(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
               8);
  buf[6] = 9;
  CHECK_INT(load_bytes(dir, buf, n, &err), ==, TD_EVERSION);
  /* a good one written by hand, with a trailing-comma tuple and u1 */
  n = make_npy(buf, "{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }",
               3);
  CHECK_INT(load_bytes(dir, buf, n, &err), ==, TD_OK);
  /* missing file */
  td_array a;
  CHECK_INT(td_npy_load("/nonexistent/x.npy", &a, &err), ==, TD_ENOENT);
  CHECK_STR_CONTAINS(err.msg, "/nonexistent/x.npy");
}

/* Every truncation of a valid file must be rejected, never crash. */
static void test_npy_truncations(void) {
  const char *dir = td_t_tmpdir("npy_trunc");
  char buf[4096];
  td_err err;
  size_t n = make_npy(
      buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 2), }", 32);
  for (size_t cut = 0; cut < n; cut++)
    CHECK_INT(load_bytes(dir, buf, cut, &err), !=, TD_OK);
  CHECK_INT(load_bytes(dir, buf, n, &err), ==, TD_OK);
}

static void test_f16(void) {
  const float vals[] = {0.0f,
                        1.0f,
                        -2.5f,
                        65504.0f,
                        6.103515625e-05f,
                        5.960464477539063e-08f,
                        0.333251953125f};
  for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
    CHECK_NEAR(td_f16_to_f32(td_f32_to_f16(vals[i])), vals[i], 0);
  CHECK_INT(td_f32_to_f16(1.0f), ==, 0x3c00);
  CHECK_INT(td_f32_to_f16(1e6f), ==, 0x7c00);
  /* exhaustive: every finite half survives a round trip through float */
  for (uint32_t h = 0; h < 0x10000; h++) {
    if ((h & 0x7c00) == 0x7c00)
      continue;
    CHECK_INT(td_f32_to_f16(td_f16_to_f32((uint16_t)h)), ==, h);
  }
  td_array a, b;
  int64_t s = 3;
  CHECK_OK(td_array_alloc(&a, TD_F16, 1, &s), (td_err *)NULL);
  uint16_t *h = a.data;
  h[0] = 0x3c00;
  h[1] = 0xc000;
  h[2] = 0x7e00;
  CHECK_INT(td_array_check_finite(&a, NULL), ==, TD_EVALUE);
  td_err err;
  CHECK_OK(td_array_to_f32(&a, &b, &err), &err);
  CHECK_NEAR(((float *)b.data)[1], -2.0, 0);
  td_array_close(&a);
  td_array_close(&b);
}

static void test_rng(void) {
  td_rng a, b;
  td_rng_seed(&a, 42);
  td_rng_seed(&b, 42);
  for (int i = 0; i < 100; i++)
    CHECK(td_rng_next(&a) == td_rng_next(&b));
  int counts[10] = {0};
  for (int i = 0; i < 100000; i++)
    counts[td_rng_below(&a, 10)]++;
  for (int i = 0; i < 10; i++)
    CHECK_NEAR(counts[i], 10000, 500);
  double s = 0, s2 = 0;
  for (int i = 0; i < 100000; i++) {
    double x = td_rng_normal(&a);
    s += x;
    s2 += x * x;
  }
  CHECK_NEAR(s / 100000, 0, 0.02);
  CHECK_NEAR(s2 / 100000, 1, 0.02);
  int32_t v[50];
  for (int i = 0; i < 50; i++)
    v[i] = i;
  td_rng_shuffle_i32(&a, v, 50);
  int sum = 0;
  for (int i = 0; i < 50; i++)
    sum += v[i];
  CHECK_INT(sum, ==, 49 * 50 / 2);
}

typedef struct {
  atomic_llong total;
  int seen[1000];
} pf_ctx;

static void pf_cb(void *ctx, int64_t b, int64_t e, int tid) {
  pf_ctx *c = ctx;
  (void)tid;
  for (int64_t i = b; i < e; i++) {
    c->seen[i]++;
    atomic_fetch_add(&c->total, i);
  }
}

static void test_parallel_for(void) {
  for (int t = 1; t <= 3; t++) {
    td_set_threads(t);
    pf_ctx c;
    memset(&c, 0, sizeof c);
    atomic_init(&c.total, 0);
    td_parallel_for(1000, 7, pf_cb, &c);
    CHECK_INT(atomic_load(&c.total), ==, 999 * 1000 / 2);
    for (int i = 0; i < 1000; i++)
      CHECK_INT(c.seen[i], ==, 1);
  }
  td_set_threads(0);
}

static void blas_scope_cb(void *ctx, int64_t b, int64_t e, int tid) {
  atomic_int *bad = ctx;
  (void)tid;
  for (int64_t i = b; i < e; i++) {
    td_blas_single_begin();
    if (openblas_get_num_threads() != 1)
      atomic_fetch_add(bad, 1);
    td_blas_single_end();
  }
}

/* The single-thread scopes nest, overlap across threads, and restore the
 * count td_set_threads gave, even when it was changed inside a scope. */
static void test_blas_scope(void) {
  td_set_threads(3);
  CHECK_INT(td_threads(), ==, 3);
  CHECK_INT(openblas_get_num_threads(), ==, 3);
  td_blas_single_begin();
  td_blas_single_begin();
  CHECK_INT(openblas_get_num_threads(), ==, 1);
  td_blas_single_end();
  CHECK_INT(openblas_get_num_threads(), ==, 1);
  td_set_threads(2);
  CHECK_INT(openblas_get_num_threads(), ==, 1);
  td_blas_single_end();
  CHECK_INT(openblas_get_num_threads(), ==, 2);
  CHECK_INT(td__blas_single_depth(), ==, 0);
  atomic_int bad;
  atomic_init(&bad, 0);
  td_set_threads(4);
  td_parallel_for(4000, 1, blas_scope_cb, &bad);
  CHECK_INT(atomic_load(&bad), ==, 0);
  CHECK_INT(td__blas_single_depth(), ==, 0);
  CHECK_INT(openblas_get_num_threads(), ==, 4);
  td_set_threads(0);
}

static void test_fs(void) {
  const char *dir = td_t_tmpdir("fs");
  char p[4200], q[4300];
  td_err err;
  snprintf(p, sizeof p, "%s/a/b/c", dir);
  CHECK_OK(td_mkdirs(p, &err), &err);
  CHECK(td_path_is_dir(p));
  snprintf(q, sizeof q, "%s/f.txt", p);
  CHECK_OK(td_write_file_atomic(q, "hello", 5, &err), &err);
  char *data;
  size_t len;
  CHECK_OK(td_read_file(q, &data, &len, &err), &err);
  CHECK_INT(len, ==, 5);
  CHECK(!strcmp(data, "hello"));
  free(data);
  snprintf(p, sizeof p, "%s/a", dir);
  CHECK_OK(td_remove_tree(p, &err), &err);
  CHECK(!td_path_exists(p));
  CHECK_INT(td_remove_tree("/", &err), ==, TD_EARG);
  CHECK_INT(td_read_file("/nonexistent", &data, &len, &err), ==, TD_ENOENT);
}

/* td_pathf: a path that fits is written whole; one that does not is
 * TD_ERANGE, named in the message, and leaves "" rather than a cut path. */
static void test_pathf(void) {
  char buf[16];
  td_err err;
  CHECK_OK(td_pathf(buf, sizeof buf, &err, "%s/%d", "run", 7), &err);
  CHECK(!strcmp(buf, "run/7"));
  CHECK_OK(td_pathf(buf, sizeof buf, &err, "%s", "exactly-15-byte"), &err);
  CHECK(!strcmp(buf, "exactly-15-byte"));
  CHECK_INT(td_pathf(buf, sizeof buf, &err, "%s/%s", "runs", "far-too-long"),
            ==, TD_ERANGE);
  CHECK_INT(err.code, ==, TD_ERANGE);
  CHECK_STR_CONTAINS(err.msg, "path too long");
  CHECK_STR_CONTAINS(err.msg, "runs/far-too-l");
  CHECK(buf[0] == '\0');
  CHECK_INT(td_pathf(buf, sizeof buf, NULL, "%s", "sixteen-bytes-xx"), ==,
            TD_ERANGE);
  CHECK(buf[0] == '\0');
  CHECK_INT(td_path_join(buf, sizeof buf, "a", "b"), ==, TD_OK);
  CHECK(!strcmp(buf, "a/b"));
  CHECK_INT(td_path_join(buf, sizeof buf, "", "b"), ==, TD_OK);
  CHECK(!strcmp(buf, "b"));
  CHECK_INT(td_path_join(buf, sizeof buf, "abcdefgh", "ijklmnop"), ==,
            TD_ERANGE);
}

int main(void) {
  RUN(test_error_table);
  RUN(test_npy_roundtrip);
  RUN(test_npy_hostile);
  RUN(test_npy_truncations);
  RUN(test_f16);
  RUN(test_rng);
  RUN(test_parallel_for);
  RUN(test_blas_scope);
  RUN(test_fs);
  RUN(test_pathf);
  return td_t_finish();
}
