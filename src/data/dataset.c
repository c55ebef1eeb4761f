/* Datasets for the built-in trainer (Fashion-MNIST from Debian's
 * dataset-fashion-mnist package) and label-noise injection. */
#include "tardis/dataset.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tardis/fsutil.h"
#include "tardis/idx.h"
#include "tardis/rng.h"

static const char *const fmnist_classes[10] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

/* Look-alike pairs: shirt-like garments, footwear, trouser/dress, bag/coat. */
static const int fmnist_confusable[10] = {6, 3, 4, 1, 2, 7, 0, 9, 4, 5};

/* The images given (uint8 [n, c, h, w]) as out's: the first n of the
 * split, n = min(limit, labels) (limit 0: all). */
static int take_images(td_array *images, int64_t limit, int64_t n_labels,
                       const char *lpath, td_dataset *out, td_err *err) {
  int64_t n = limit > 0 && limit < n_labels ? limit : n_labels;
  if (images->dtype != TD_U8 || images->ndim != 4 || images->shape[0] != n)
    return td_err_set(err, TD_ESHAPE,
                      "%s: the stored images are not uint8 [%lld, c, h, w], "
                      "the split's first %lld",
                      lpath, (long long)n, (long long)n);
  out->images = *images;
  memset(images, 0, sizeof *images);
  out->n = out->images.shape[0];
  out->channels = (int)out->images.shape[1];
  out->height = (int)out->images.shape[2];
  out->width = (int)out->images.shape[3];
  return TD_OK;
}

/* td_dataset_load, with the images decoded (images NULL) or given. */
static int load_named(const char *name, const char *dir, const char *split,
                      td_array *images, int64_t limit, td_dataset *out,
                      td_err *err) {
  memset(out, 0, sizeof *out);
  if (strcmp(name, "fashion-mnist") != 0)
    return td_err_set(err, TD_EARG,
                      "unknown dataset '%s' (available: fashion-mnist)", name);
  const char *prefix;
  if (!strcmp(split, "train"))
    prefix = "train";
  else if (!strcmp(split, "test"))
    prefix = "t10k";
  else
    return td_err_set(err, TD_EARG, "unknown split '%s' (train or test)",
                      split);
  if (!dir)
    dir = getenv("TD_FASHION_MNIST_DIR");
  if (!dir)
    dir = TD_FASHION_MNIST_DIR;
  char ipath[TD_PATH_MAX], lpath[TD_PATH_MAX];
  int rc = td_pathf(ipath, sizeof ipath, err, "%s/%s-images-idx3-ubyte.gz", dir,
                    prefix);
  if (rc || (rc = td_pathf(lpath, sizeof lpath, err,
                           "%s/%s-labels-idx1-ubyte.gz", dir, prefix)))
    return rc;
  for (int i = 0; i < 2; i++) {
    const char *p = i ? lpath : ipath;
    if (!td_path_exists(p))
      return td_err_set(err, TD_ENOENT,
                        "%s: not found (install Debian's dataset-fashion-mnist "
                        "package: apt-get install dataset-fashion-mnist)",
                        p);
  }
  td_array lab;
  rc = images ? TD_OK : td_idx_load(ipath, &out->images, err);
  if (rc != TD_OK)
    return rc;
  rc = td_idx_load(lpath, &lab, err);
  if (rc != TD_OK) {
    td_array_close(&out->images);
    return rc;
  }
  if (images) {
    if (lab.ndim != 1 || (rc = take_images(images, limit, lab.shape[0], lpath,
                                           out, err)) != TD_OK) {
      if (!rc)
        rc = td_err_set(err, TD_ESHAPE, "%s: expected [n] labels", lpath);
      goto fail;
    }
  } else if (out->images.ndim != 3 || lab.ndim != 1 ||
             lab.shape[0] != out->images.shape[0]) {
    rc = td_err_set(err, TD_ESHAPE,
                    "%s and %s: expected [n,h,w] images and [n] labels with "
                    "the same n",
                    ipath, lpath);
    goto fail;
  } else {
    out->n = lab.shape[0];
    out->channels = 1;
    out->height = (int)out->images.shape[1];
    out->width = (int)out->images.shape[2];
  }
  out->n_classes = 10;
  for (int c = 0; c < 10; c++)
    out->class_names[c] = fmnist_classes[c];
  if (td_array_alloc(&out->labels_arr, TD_I32, 1, &out->n) != TD_OK) {
    rc = td_err_set(err, TD_ENOMEM, "out of memory");
    goto fail;
  }
  out->labels = out->labels_arr.data;
  const uint8_t *l = lab.data;
  for (int64_t i = 0; i < out->n; i++) {
    if (l[i] >= out->n_classes) {
      rc = td_err_set(err, TD_EVALUE,
                      "%s: label %d at index %lld is not in "
                      "[0, %d)",
                      lpath, l[i], (long long)i, out->n_classes);
      goto fail;
    }
    out->labels[i] = l[i];
  }
  td_array_close(&lab);
  return TD_OK;
fail:
  td_array_close(&lab);
  td_dataset_close(out);
  return rc;
}

int td_dataset_load(const char *name, const char *dir, const char *split,
                    td_dataset *out, td_err *err) {
  return load_named(name, dir, split, NULL, 0, out, err);
}

int td_dataset_load_with_images(const char *name, const char *dir,
                                const char *split, td_array *images,
                                int64_t limit, td_dataset *out, td_err *err) {
  return load_named(name, dir, split, images, limit, out, err);
}

int64_t td_dataset_sample_size(const td_dataset *ds) {
  return (int64_t)ds->channels * ds->height * ds->width;
}

void td_dataset_truncate(td_dataset *ds, int64_t n) {
  if (n <= 0 || n >= ds->n)
    return;
  ds->n = n;
  ds->images.shape[0] = n;
  ds->images.nbytes = (size_t)n * (size_t)td_dataset_sample_size(ds) *
                      td_dtype_size(ds->images.dtype);
  ds->labels_arr.shape[0] = n;
  ds->labels_arr.nbytes = (size_t)n * sizeof(int32_t);
}

void td_dataset_close(td_dataset *ds) {
  td_array_close(&ds->images);
  td_array_close(&ds->labels_arr);
  free(ds->names_);
  memset(ds, 0, sizeof *ds);
}

int td_noise_asymmetric_target(const char *dataset, int n_classes, int cls) {
  if (dataset && !strcmp(dataset, "fashion-mnist") && n_classes == 10)
    return fmnist_confusable[cls];
  return (cls + 1) % n_classes;
}

int64_t td_noise_inject(const int32_t *clean, int64_t n, int n_classes,
                        td_noise_type type, const char *dataset, double rate,
                        uint64_t seed, int32_t *noisy, td_err *err) {
  if (!(rate >= 0.0 && rate <= 1.0))
    return td_err_set(err, TD_EARG, "noise rate %g is not in [0, 1]", rate);
  if (n_classes < 2)
    return td_err_set(err, TD_EARG, "label noise needs at least 2 classes");
  memcpy(noisy, clean, (size_t)n * sizeof *noisy);
  int64_t k = (int64_t)llround(rate * (double)n);
  if (k == 0)
    return 0;
  int32_t *idx = malloc((size_t)n * sizeof *idx);
  if (!idx)
    return td_err_set(err, TD_ENOMEM, "out of memory");
  for (int64_t i = 0; i < n; i++)
    idx[i] = (int32_t)i;
  td_rng rng;
  td_rng_seed(&rng, seed);
  /* Partial Fisher-Yates: the first k entries are a uniform sample without
   * replacement. */
  for (int64_t i = 0; i < k; i++) {
    int64_t j = i + (int64_t)td_rng_below(&rng, (uint64_t)(n - i));
    int32_t t = idx[i];
    idx[i] = idx[j];
    idx[j] = t;
  }
  for (int64_t i = 0; i < k; i++) {
    int32_t s = idx[i], c = clean[s];
    if (type == TD_NOISE_SYMMETRIC) {
      int32_t shift = 1 + (int32_t)td_rng_below(&rng, (uint64_t)n_classes - 1);
      noisy[s] = (c + shift) % n_classes;
    } else {
      noisy[s] = td_noise_asymmetric_target(dataset, n_classes, c);
    }
  }
  free(idx);
  return k;
}
