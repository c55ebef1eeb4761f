/* tardis/live.h — live mode: follow a run while it is written and project
 * each epoch as it lands (`tardis watch`, `tardis serve --follow`).
 *
 *     td_live_opts o;
 *     td_live_opts_default(&o);
 *     o.on_projected = my_hook;              // e.g. alerts, SSE events
 *     td_live *lv;
 *     if (td_live_open("runs/x", &o, &lv, &err)) ...
 *     td_live_end end;
 *     int rc = td_live_run(lv, &end, &err);  // blocks; td_live_stop ends it
 *     td_live_close(lv);
 *
 * The run directory may be empty when the follower starts: it waits for
 * run.json and train_labels.npy, then for epochs. Epochs are committed by a
 * rename (docs/run-format.md), so half-written ones are never seen. It
 * notices them through inotify on RUN/ and RUN/epochs/, and also checks every
 * poll_ms, which is all it does where inotify is unavailable.
 *
 * Scheduling (docs/performance.md, "Live mode"): full fits run one at a
 * time on a thread of their own, oldest epoch first, each warm-started from
 * its predecessor — so every epoch ends up drawn exactly as `tardis project`
 * draws it. A full fit of a 60k epoch costs ~10 CPU-s, a training epoch
 * ~1.7, so while training runs the fits fall behind; meanwhile a second
 * thread, the side job, draws *drafts* of the newest epoch: its points and
 * territory placed by the encoder/decoder of the newest fully fitted epoch
 * (td_project_draft, a few hundred ms), marked "draft" in its
 * projection.json. The full fit later replaces it; drafts are never
 * warm-started from, and none remains once the follower is idle. Before any
 * epoch is fully fitted there is no such model: the first draft is then a
 * *cold draft* (td_drafter_cold), a model fitted on a sample of cold_sample
 * training points of the newest epoch, which draws the drafts until the
 * first full fit is done (~2.5 CPU-s at 60k where that fit costs ~17). The
 * side job also adds each recorded epoch, in order, to the alerts. It
 * draws a draft once the newest drawn epoch lags by draft_wait seconds (the
 * first epoch at once), and otherwise computes the alerts of the oldest
 * epoch not yet given to them.
 *
 * While the run is being written (not finished, an epoch arrived within
 * yield_window s), the follower spends only what the trainer leaves idle:
 * the fit and the side job run at SCHED_IDLE (and nice yield_nice) on one
 * core each — their own priority, so in `tardis train --serve` the
 * trainer's threads keep theirs; a fit starts only when the side job has
 * nothing to do; and the side job is raised to the usual priority only when
 * the newest drawn epoch lags by lag_budget seconds. Once the run finishes
 * or goes quiet, the work under way is raised (where the system allows it)
 * and the rest runs at the usual priority on every thread. The follower
 * keeps one small record per recorded epoch and no queue: memory stays
 * flat.
 */
#ifndef TARDIS_LIVE_H
#define TARDIS_LIVE_H

#include "tardis/alerts.h"
#include "tardis/error.h"
#include "tardis/project.h"

/* What on_projected receives after each epoch is written. */
typedef struct td_live_epoch {
  int epoch;        /* the epoch just projected */
  int warm_from;    /* the epoch it was warm-started from; -1: cold */
  int backfill;     /* 1: not the newest recorded epoch when it was picked
                       (back-filled, or redone) */
  int redo;         /* 1: a draft replaced by its full fit */
  int draft;        /* 1: a draft, placed by warm_from's model (no fit) */
  int cold;         /* 1: a draft whose model was fitted on a sample of
                       warm_from's training points (no epoch fully fitted
                       yet: td_drafter_cold), or a cold preview */
  int preview;      /* 1: a draft that is a full fit out of order, warm-
                       started from warm_from (td_project_preview) */
  int low_priority; /* 1: the fit or draft yielded to the trainer (ran at
                       idle priority) */
  int raised;       /* 1: ... and was raised to the usual priority before
                       it ended (the lag budget ran out, or the run ended) */
  double seconds;   /* projection time */
  double latency;   /* seconds from the epoch noticed to its projection
                       written */
  int newest;       /* the newest recorded epoch now */
  int lag;          /* recorded epochs newer than this one */
  int n_recorded;   /* recorded epochs */
  int n_projected;  /* of them, projected (drafts included) */
} td_live_epoch;

typedef struct td_live_opts {
  td_project_opts proj; /* as for `tardis project`; its strings must outlive
                           the follower */
  int poll_ms;          /* checks the run at least this often (500) */
  int inotify;          /* 1: use inotify when available (1) */
  double exit_idle;     /* > 0: td_live_run returns after this many seconds
                           with nothing new and nothing to project (0) */
  int until_finished;   /* 1: return once the run is marked finished and
                           every epoch is projected (1) */
  /* Called on the follower's thread. on_recorded: an epoch was noticed.
   * on_projected: an epoch's projection is committed — the place for
   * per-epoch analyses such as alerts. Either may be NULL. */
  void (*on_recorded)(int epoch, void *ctx);
  void (*on_projected)(const td_live_epoch *e, void *ctx);
  /* Geometry alerts (docs/alerts.md): when `alerts` is 1 (the default),
   * each recorded epoch is added to the run's alerts in order by the side
   * job (a due draft of the newest epoch comes first), and RUN/alerts.jsonl
   * is rewritten — the same file `tardis alerts` writes afterwards. While a
   * fast run trains they may trail the newest epoch; they catch up when it
   * ends. on_alert (may be NULL) gets each new alert. */
  int alerts;
  td_alerts_opts alerts_opts;
  void (*on_alert)(const td_alert *a, void *ctx);
  void *ctx;
  int drafts;          /* 1: draw drafts of the newest epoch (1) */
  int yield_nice;      /* nice value of full fits while the run is being
                          written, 1..19; 0: never yield (19) */
  double yield_window; /* the run counts as being written this many seconds
                          after its newest epoch arrived (30) */
  long cold_sample;    /* training points the cold draft is fitted on
                          (5000); < 2: no cold draft */
  double draft_wait;   /* a draft of the newest epoch starts once the
                          oldest epoch newer than every drawn one has
                          waited this many seconds; the first epoch is
                          drawn at once (3) */
  double lag_budget;   /* while the run is being written, the side job
                          (a draft, or the alerts ahead of it) is raised to
                          the usual priority once that epoch has waited
                          this many seconds (6) */
} td_live_opts;

void td_live_opts_default(td_live_opts *o);

typedef struct td_live td_live;

/* Prepares to follow run_dir, which must exist (TD_ENOENT otherwise). The
 * strings in *o must outlive the follower. Free with td_live_close. */
TD_NODISCARD int td_live_open(const char *run_dir, const td_live_opts *o,
                              td_live **out, td_err *err);

typedef enum {
  TD_LIVE_FINISHED, /* the run is finished and every epoch projected */
  TD_LIVE_IDLE,     /* exit_idle seconds passed with nothing to do */
  TD_LIVE_STOPPED   /* td_live_stop */
} td_live_end;

/* Follows the run until one of td_live_end happens (*end) or an error: a
 * run directory that disappears is TD_ENOENT ("RUN: the run directory
 * disappeared"); an epoch that cannot be projected is that error. */
TD_NODISCARD int td_live_run(td_live *lv, td_live_end *end, td_err *err);

/* Asks td_live_run to return (after the epoch being projected, if any).
 * Safe from any thread and from a signal handler. */
void td_live_stop(td_live *lv);

/* A snapshot of the follower's progress; safe from any thread. */
typedef struct td_live_status {
  int n_recorded, n_projected;
  int newest_recorded; /* -1: none yet */
  int newest_projected;
  int projecting; /* the epoch being projected now; -1: none */
  int finished;   /* the run is marked finished */
  int n_drafts;   /* drawn epochs that are drafts still */
} td_live_status;

void td_live_get_status(td_live *lv, td_live_status *s);

void td_live_close(td_live *lv); /* NULL is fine */

#endif
