/* Repeated samples of a selection (internal to src/train): how many times
 * each selected sample is trained on per epoch (td_train_opts.select_times,
 * RUN/select_times.npy; docs/run-format.md#pools-and-starved-labels). */
#ifndef TD_TRAIN_SELECT_TIMES_H
#define TD_TRAIN_SELECT_TIMES_H

#include <stdint.h>

#include "tardis/error.h"

/* The most times one sample may be trained on per epoch. */
#define TD__SELECT_TIMES_MAX 1000

/* times[i] of idx[i] (k of them, distinct, in [0, n)) reordered to follow
 * sel, the same indices ascending (td__select_copy): *out[j] is the count
 * of sel[j]; each count checked to be in [1, TD__SELECT_TIMES_MAX]. */
TD_NODISCARD int td__select_times_align(const int32_t *idx,
                                        const int32_t *times, int64_t k,
                                        const int32_t *sel, int64_t n,
                                        int32_t **out, td_err *err);

/* run_dir/select_times.npy, the counts of its select.npy (k samples), into
 * *out; *out NULL (and TD_OK) when the run has none. */
TD_NODISCARD int td__select_times_load(const char *run_dir, int64_t k,
                                       int32_t **out, td_err *err);

/* The list one epoch trains on: sel[j] given times[j] times, in the order of
 * sel (the epoch shuffles it). *ep malloc'd, *n_ep its length. */
TD_NODISCARD int td__select_expand(const int32_t *sel, const int32_t *times,
                                   int64_t k, int32_t **ep, int64_t *n_ep,
                                   td_err *err);

/* Writes run_dir/select_times.npy when times is not NULL, else removes a
 * stale one (a resume given a new selection without counts). */
TD_NODISCARD int td__select_times_write(const char *run_dir,
                                        const int32_t *times, int64_t k,
                                        td_err *err);

#endif
