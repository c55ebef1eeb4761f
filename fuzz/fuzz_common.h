/* Shared by the libFuzzer harnesses (docs/fuzzing.md): a scratch directory
 * per process (on /dev/shm when there is one: every input is written to a
 * file, the readers under test take paths) and a small valid run in it. */
#ifndef TD_FUZZ_COMMON_H
#define TD_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sus_fixture.h"
#include "tardis/fsutil.h"

/* Results are stored here so that the reads under test are not optimised
 * away. */
static volatile uint64_t fz_sink;

static char fz_scratch[256];

static void fz_cleanup(void) {
  td_err err;
  if (fz_scratch[0] && td_remove_tree(fz_scratch, &err)) {
    /* a scratch directory left in /dev/shm is harmless */
  }
}

/* The scratch directory, made on first use and removed at exit (libFuzzer
 * exits through exit(), also after -runs and -max_total_time). */
static inline const char *fz_dir(void) {
  char *dir = fz_scratch;
  if (!dir[0]) {
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof fz_scratch, "%s/tardis-fuzz-XXXXXX", base);
    if (!mkdtemp(dir)) {
      perror("mkdtemp");
      abort();
    }
    atexit(fz_cleanup);
  }
  return dir;
}

/* A valid run (3 classes, 300 samples, 6 epochs, a pca projection) at
 * fz_dir()/run, made on first use. */
static inline const char *fz_run(void) {
  static char run[512];
  if (!run[0]) {
    snprintf(run, sizeof run, "%s/run", fz_dir());
    td_err err;
    if (sf_make_run(run, 1, 1, &err)) {
      fprintf(stderr, "fuzz fixture: %s\n", err.msg);
      abort();
    }
  }
  return run;
}

/* Replaces path with the bytes of the input. */
static inline void fz_write(const char *path, const uint8_t *data,
                            size_t size) {
  FILE *f = fopen(path, "wb");
  if (!f) {
    perror(path);
    abort();
  }
  if (size && fwrite(data, 1, size, f) != size) {
    perror(path);
    abort();
  }
  fclose(f);
}

#endif
