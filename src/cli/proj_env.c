/* The TD_PROJ_* environment variables of `tardis project`, for experiments
 * (docs/projection.md): each one set and non-empty overrides a field of
 * td_project_opts. The library itself reads no environment. */
#include <stdlib.h>

#include "commands.h"

/* Sets *dst to the variable's value when it is set; returns 1 if so. */
static int env_num(const char *name, double *dst) {
  const char *v = getenv(name);
  if (!v || !*v)
    return 0;
  *dst = atof(v);
  return 1;
}

static void env_int(const char *name, int *dst) {
  double v;
  if (env_num(name, &v))
    *dst = (int)v;
}

static void env_float(const char *name, float *dst) {
  double v;
  if (env_num(name, &v))
    *dst = (float)v;
}

void td_cli_proj_env(td_project_opts *o) {
  env_float("TD_PROJ_CROSS_WEIGHT", &o->cross_weight);
  env_int("TD_PROJ_LINKS", &o->links);
  env_float("TD_PROJ_LINK_WEIGHT", &o->link_weight);
  env_int("TD_PROJ_INDEPENDENT", &o->independent);
  env_int("TD_PROJ_NEIGHBOUR_INIT", &o->neighbour_init);
  env_int("TD_PROJ_RELOCATE", &o->relocate);
  env_int("TD_PROJ_HOGWILD", &o->hogwild);
  td_project_vis *v = &o->vis;
  env_float("TD_PROJ_LAMBDA_HEAD", &v->lambda_head);
  env_int("TD_PROJ_HIDDEN", &v->hidden);
  env_int("TD_PROJ_DISTIL", &v->distil_epochs);
  env_int("TD_PROJ_WARM_DISTIL", &v->warm_distil_epochs);
  env_int("TD_PROJ_LAYOUT", &v->layout_epochs);
  env_int("TD_PROJ_WARM_LAYOUT", &v->warm_layout_epochs);
  env_int("TD_PROJ_DISTIL_POINTS", &v->distil_points);
  env_int("TD_PROJ_NEGATIVES", &v->n_negatives);
  env_float("TD_PROJ_WARM_ALPHA", &v->warm_alpha);
  env_int("TD_PROJ_DEC_ON_LAYOUT", &v->dec_on_layout);
  env_int("TD_PROJ_POLISH", &v->polish_rounds);
}
