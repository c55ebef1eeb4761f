/* The options of `tardis suspects` and the parts of the command that live
 * in separate files (feedback from the command line: suspects_session.c). */
#ifndef TD_CLI_SUSPECTS_SESSION_H
#define TD_CLI_SUSPECTS_SESSION_H

#include <jansson.h>
#include <stdint.h>

#include "tardis/run.h"
#include "tardis/suspects.h"

typedef struct args {
  const char *run, *method;
  int k, json, simulate, rounds, abnormal, threads, ood_epoch, ood_k;
  double mistakes;
  uint64_t seed;
  const char *session, *accept, *reject, *export_dir;
  int next, pairs, no_pairs;
} args;

/* The top a->k unjudged samples (verdict NULL: none judged) with why and a
 * suggested label; `extra` (may be NULL, consumed) is merged into the JSON
 * output. Returns the exit status. */
int td__suspects_list(const args *a, const td_run *run,
                      const td_sus_features *f, const char *note,
                      const int8_t *verdict, json_t *extra);

/* --session S [--accept ...] [--reject ...] [--next] [--export DIR]. */
int td__suspects_session(const args *a, const td_run *run,
                         const td_sus_features *f, const char *note);

#endif
