/* IDX reader, Fashion-MNIST loading and label-noise injection. */
#include <zlib.h>

#include "harness.h"
#include "tardis/dataset.h"
#include "tardis/idx.h"

static void write_gz(const char *path, const void *data, size_t n) {
  gzFile f = gzopen(path, "wb");
  gzwrite(f, data, (unsigned)n);
  gzclose(f);
}

static void test_idx_good_and_bad(void) {
  const char *dir = td_t_tmpdir("idx");
  char path[4200];
  snprintf(path, sizeof path, "%s/x.gz", dir);
  unsigned char good[4 + 8 + 6] = {0, 0, 8, 2, 0, 0, 0, 2, 0,
                                   0, 0, 3, 1, 2, 3, 4, 5, 6};
  write_gz(path, good, sizeof good);
  td_array a;
  td_err err;
  CHECK_OK(td_idx_load(path, &a, &err), &err);
  CHECK_INT(a.ndim, ==, 2);
  CHECK_INT(a.shape[0], ==, 2);
  CHECK_INT(a.shape[1], ==, 3);
  CHECK_INT(((uint8_t *)a.data)[5], ==, 6);
  td_array_close(&a);
  write_gz(path, good, sizeof good - 1); /* truncated */
  CHECK_INT(td_idx_load(path, &a, &err), ==, TD_EFORMAT);
  CHECK_STR_CONTAINS(err.msg, "truncated");
  CHECK_STR_CONTAINS(err.msg, "x.gz");
  unsigned char bad[sizeof good];
  memcpy(bad, good, sizeof good);
  bad[2] = 0x0d; /* float elements */
  write_gz(path, bad, sizeof bad);
  CHECK_INT(td_idx_load(path, &a, &err), ==, TD_EDTYPE);
  bad[2] = 8;
  bad[0] = 7;
  write_gz(path, bad, sizeof bad);
  CHECK_INT(td_idx_load(path, &a, &err), ==, TD_EFORMAT);
  CHECK_INT(td_idx_load("/nonexistent/y.gz", &a, &err), ==, TD_ENOENT);
}

static void test_fashion_mnist(void) {
  td_dataset ds;
  td_err err;
  CHECK_OK(td_dataset_load("fashion-mnist", NULL, "test", &ds, &err), &err);
  CHECK_INT(ds.n, ==, 10000);
  CHECK_INT(ds.height, ==, 28);
  CHECK_INT(ds.n_classes, ==, 10);
  int counts[10] = {0};
  for (int64_t i = 0; i < ds.n; i++)
    counts[ds.labels[i]]++;
  for (int c = 0; c < 10; c++)
    CHECK_INT(counts[c], ==, 1000);
  td_dataset_truncate(&ds, 100);
  CHECK_INT(ds.n, ==, 100);
  td_dataset_close(&ds);
  CHECK_INT(
      td_dataset_load("fashion-mnist", "/nonexistent", "train", &ds, &err), ==,
      TD_ENOENT);
  CHECK_STR_CONTAINS(err.msg, "dataset-fashion-mnist");
  CHECK_INT(td_dataset_load("cifar", NULL, "train", &ds, &err), ==, TD_EARG);
}

static void test_noise(void) {
  enum { N = 10000, C = 10 };
  static int32_t clean[N], noisy[N], noisy2[N];
  for (int i = 0; i < N; i++)
    clean[i] = i % C;
  td_err err;
  int64_t k = td_noise_inject(clean, N, C, TD_NOISE_SYMMETRIC, "fashion-mnist",
                              0.1, 7, noisy, &err);
  CHECK_INT(k, ==, 1000);
  int flipped = 0, hist[C] = {0};
  for (int i = 0; i < N; i++)
    if (noisy[i] != clean[i]) {
      flipped++;
      hist[(noisy[i] - clean[i] + C) % C]++;
    }
  CHECK_INT(flipped, ==, 1000);
  CHECK_INT(hist[0], ==, 0);
  for (int s = 1; s < C; s++) /* shifts uniform over the other classes */
    CHECK_NEAR(hist[s], 1000.0 / 9, 45);
  CHECK_INT(td_noise_inject(clean, N, C, TD_NOISE_SYMMETRIC, "fashion-mnist",
                            0.1, 7, noisy2, &err),
            >=, 0);
  CHECK(!memcmp(noisy, noisy2, sizeof noisy));
  k = td_noise_inject(clean, N, C, TD_NOISE_ASYMMETRIC, "fashion-mnist", 0.2, 7,
                      noisy, &err);
  CHECK_INT(k, ==, 2000);
  flipped = 0;
  for (int i = 0; i < N; i++)
    if (noisy[i] != clean[i]) {
      flipped++;
      CHECK_INT(noisy[i], ==,
                td_noise_asymmetric_target("fashion-mnist", C, clean[i]));
    }
  CHECK_INT(flipped, ==, 2000);
  CHECK_INT(td_noise_inject(clean, N, C, TD_NOISE_SYMMETRIC, NULL, 1.5, 1,
                            noisy, &err),
            ==, TD_EARG);
  CHECK_INT(
      td_noise_inject(clean, N, C, TD_NOISE_SYMMETRIC, NULL, 0, 1, noisy, &err),
      ==, 0);
  CHECK(!memcmp(noisy, clean, sizeof clean));
}

int main(void) {
  RUN(test_idx_good_and_bad);
  RUN(test_fashion_mnist);
  RUN(test_noise);
  return td_t_finish();
}
