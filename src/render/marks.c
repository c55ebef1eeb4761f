/* Which training samples a frame marks beyond label and prediction: those
 * whose recorded label is noisy (train_truth.npy) and those accepted as
 * suspicious in a feedback session (RUN/tardis.db). */
#include <stdlib.h>
#include <string.h>

#include "render/render_internal.h"
#include "tardis/feedback.h"
#include "tardis/fsutil.h"

static int mark_noise(const td_run *run, int64_t n, uint8_t *m, td_err *err) {
  td_array t;
  int rc = td_run_load(run, -1, "train_truth", &t, err);
  if (rc == TD_ENOENT && err)
    td_err_prefix(err, "--mark-noise needs the clean labels");
  if (rc)
    return rc;
  const int32_t *lab = td_run_train_labels(run), *truth = t.data;
  for (int64_t i = 0; i < n && i < t.shape[0]; i++)
    if (lab[i] != truth[i])
      m[i] |= TD__MARK_NOISY;
  td_array_close(&t);
  return TD_OK;
}

/* The accepted samples of o->session, or of the most recently updated
 * session when it is 0. No database or no session: nothing to mark. */
static int mark_suspects(const td_run *run, const td_render_opts *o, int64_t n,
                         uint8_t *m, td_err *err) {
  char db_path[TD_PATH_MAX];
  int rc =
      td_pathf(db_path, sizeof db_path, err, "%s/tardis.db", td_run_dir(run));
  if (rc || !td_path_exists(db_path))
    return rc;
  td_fb *db;
  if ((rc = td_fb_open(td_run_dir(run), &db, err)))
    return rc;
  int64_t sid = o->session;
  td_fb_session *ss = NULL;
  int ns = 0;
  if (!sid && !(rc = td_fb_session_list(db, &ss, &ns, err))) {
    int best = -1;
    for (int i = 0; i < ns; i++)
      if (best < 0 || strcmp(ss[i].updated, ss[best].updated) > 0)
        best = i;
    sid = best >= 0 ? ss[best].id : 0;
    free(ss);
  }
  int32_t *idx = NULL;
  int64_t k = 0;
  if (!rc && sid)
    rc = td_fb_list(db, sid, 1, &idx, &k, err);
  for (int64_t i = 0; i < k; i++)
    if (idx[i] >= 0 && idx[i] < n)
      m[idx[i]] |= TD__MARK_SUSPECT;
  free(idx);
  td_fb_close(db);
  return rc;
}

int td__frame_load_marks(const td_run *run, const td_render_opts *o,
                         uint8_t **out, td_err *err) {
  *out = NULL;
  if (!o->mark_noise && !o->mark_suspects)
    return TD_OK;
  int64_t n = td_run_get_meta(run)->n_train;
  uint8_t *m = calloc((size_t)(n > 0 ? n : 1), 1);
  if (!m)
    return td_err_set(err, TD_ENOMEM, "render: out of memory");
  int rc = TD_OK;
  if (o->mark_noise)
    rc = mark_noise(run, n, m, err);
  if (!rc && o->mark_suspects)
    rc = mark_suspects(run, o, n, m, err);
  if (rc)
    free(m);
  else
    *out = m;
  return rc;
}
