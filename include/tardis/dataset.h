/* tardis/dataset.h — labelled image datasets for the built-in trainer, and
 * label-noise injection.
 *
 *     td_dataset train, test;
 *     td_dataset_load("fashion-mnist", NULL, "train", &train, &err);
 *     int32_t *noisy = malloc(train.n * sizeof *noisy);
 *     td_noise_inject(train.labels, train.n, train.n_classes,
 *                     TD_NOISE_SYMMETRIC, 0.1, 1, noisy, &err);
 *     td_dataset_close(&train);
 */
#ifndef TARDIS_DATASET_H
#define TARDIS_DATASET_H

#include <stdint.h>

#include "tardis/array.h"

#define TD_DATASET_MAX_CLASSES 64

typedef struct td_dataset {
  int64_t n;
  int channels, height, width; /* input_shape [c, h, w] */
  int n_classes;
  const char *class_names[TD_DATASET_MAX_CLASSES]; /* static or names_ */
  td_array images;     /* uint8 or float32, n * c * h * w values in C order
                          ([n, h, w] or [n, c, h, w] or [n, d]) */
  td_array labels_arr; /* owned int32 [n] */
  int32_t *labels;     /* = labels_arr.data */
  char *names_;        /* owned storage of class_names, or NULL */
} td_dataset;

/* Default directory of Debian's dataset-fashion-mnist package. */
#define TD_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

/* Loads split "train" or "test" of a named dataset ("fashion-mnist"). dir
 * overrides the default location (NULL: $TD_FASHION_MNIST_DIR or
 * TD_FASHION_MNIST_DIR). A missing file gets a message that says which
 * Debian package provides it. */
TD_NODISCARD int td_dataset_load(const char *name, const char *dir,
                                 const char *split, td_dataset *out,
                                 td_err *err);
/* td_dataset_load cut to its first n = min(limit, size) samples (limit 0:
 * all), without decoding the images again: `images`, uint8 [n, c, h, w],
 * are taken as those n images (moved into out: *images is emptied on
 * success); any other n is an error. For a run that stored the inputs it
 * trained on (train_inputs.npy: tardis train --from, --resume), whose
 * images it maps instead of inflating the IDX file again. */
TD_NODISCARD int td_dataset_load_with_images(const char *name, const char *dir,
                                             const char *split,
                                             td_array *images, int64_t limit,
                                             td_dataset *out, td_err *err);
/* Loads split "train" or "test" of a dataset directory (docs/engine.md):
 * <split>_inputs.npy (uint8 or float32, [N, C, H, W], [N, H, W] or [N, D];
 * float32 values finite), <split>_labels.npy (int32, int64 or uint8 [N],
 * each in [0, C)) and classes.json (an array of C >= 2 class names, at most
 * TD_DATASET_MAX_CLASSES). Every mismatch is an error naming the file; a
 * missing file is TD_ENOENT. */
TD_NODISCARD int td_dataset_load_dir(const char *dir, const char *split,
                                     td_dataset *out, td_err *err);
/* Values per sample (c * h * w). */
int64_t td_dataset_sample_size(const td_dataset *ds);
/* Keeps only the first n samples (n < ds->n). */
void td_dataset_truncate(td_dataset *ds, int64_t n);
void td_dataset_close(td_dataset *ds);

typedef enum {
  TD_NOISE_SYMMETRIC,  /* a uniformly random other class */
  TD_NOISE_ASYMMETRIC, /* class i -> a fixed confusable class */
  TD_NOISE_COUNT
} td_noise_type;

/* The fixed class mapping used by asymmetric noise for a dataset with
 * n_classes classes (Fashion-MNIST gets pairs of look-alike classes; others
 * i -> i+1 mod C). */
int td_noise_asymmetric_target(const char *dataset, int n_classes, int cls);

/* Writes labels with noise into `noisy` (n entries): exactly
 * round(rate * n) samples, chosen uniformly without replacement from a seed,
 * get a different label. Returns the number of flipped labels via the
 * return value (>= 0) or a negative error code. */
TD_NODISCARD int64_t td_noise_inject(const int32_t *clean, int64_t n,
                                     int n_classes, td_noise_type type,
                                     const char *dataset, double rate,
                                     uint64_t seed, int32_t *noisy,
                                     td_err *err);

#endif
