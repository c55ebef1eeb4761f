/* A loaded projection of any method behind one interface, and the PCA
 * baseline. */
#include "tardis/projection.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tardis/array.h"
#include "tardis/fsutil.h"
#include "tardis/nn.h"
#include "tardis/vis.h"
#include "tardis/vismodel.h"

struct td_projection {
  int dim;
  td_vismodel *vm;     /* dvi */
  float *mean, *comps; /* pca: [D], [2, D] */
};

int td_projection_load(const char *epoch_dir, int repr_dim, td_projection **out,
                       td_err *err) {
  *out = NULL;
  char path[TD_PATH_MAX];
  td_projection *pj = calloc(1, sizeof *pj);
  if (!pj)
    return td_err_set(err, TD_ENOMEM, "out of memory");
  int rc = td_pathf(path, sizeof path, err, "%s/pca.npy", epoch_dir);
  if (rc) {
    free(pj);
    return rc;
  }
  if (td_path_exists(path)) {
    td_array a;
    rc = td_npy_load(path, &a, err);
    if (rc) {
      free(pj);
      return rc;
    }
    td_vis_dims d; /* D is whatever the file says */
    td_vis_dims_unknown(&d);
    rc = td_vis_check_array(td_vis_spec_find("pca.npy"), path, &a, &d, err);
    if (rc == TD_OK && a.shape[1] != repr_dim)
      rc = td_err_set(err, TD_ESHAPE,
                      "%s: expected float32 3×%d (the run's repr_dim), found "
                      "3×%lld",
                      path, repr_dim, (long long)a.shape[1]);
    if (rc) {
      td_array_close(&a);
      free(pj);
      return rc;
    }
    pj->dim = (int)a.shape[1];
    pj->mean = malloc((size_t)pj->dim * 3 * sizeof(float));
    if (!pj->mean) {
      td_array_close(&a);
      free(pj);
      return td_err_set(err, TD_ENOMEM, "out of memory");
    }
    memcpy(pj->mean, a.data, (size_t)pj->dim * 3 * sizeof(float));
    pj->comps = pj->mean + pj->dim;
    td_array_close(&a);
    *out = pj;
    return TD_OK;
  }
  rc = td_pathf(path, sizeof path, err, "%s/model", epoch_dir);
  if (rc == TD_OK)
    rc = td_vismodel_load(path, &pj->vm, err);
  if (rc) {
    free(pj);
    return rc;
  }
  pj->dim = td_vismodel_repr_dim(pj->vm);
  if (pj->dim != repr_dim) {
    rc = td_err_set(err, TD_ESHAPE,
                    "%s/vismodel.json: a model of %d-dimensional "
                    "representations, the run's repr_dim is %d",
                    path, pj->dim, repr_dim);
    td_projection_free(pj);
    return rc;
  }
  *out = pj;
  return TD_OK;
}

void td_projection_free(td_projection *pj) {
  if (!pj)
    return;
  td_vismodel_free(pj->vm);
  free(pj->mean);
  free(pj);
}

int td_projection_repr_dim(const td_projection *pj) { return pj->dim; }

const char *td_projection_method(const td_projection *pj) {
  return pj->vm ? "dvi" : "pca";
}

int td_projection_encode(const td_projection *pj, const float *x, int64_t n,
                         float *y) {
  if (pj->vm)
    return td_vismodel_encode(pj->vm, x, n, y);
  int D = pj->dim;
  for (int64_t i = 0; i < n; i++) {
    double s0 = 0, s1 = 0;
    for (int j = 0; j < D; j++) {
      double c = (double)x[i * D + j] - (double)pj->mean[j];
      s0 += c * (double)pj->comps[j];
      s1 += c * (double)pj->comps[D + j];
    }
    y[2 * i] = (float)s0;
    y[2 * i + 1] = (float)s1;
  }
  return TD_OK;
}

int td_projection_decode(const td_projection *pj, const float *y, int64_t n,
                         float *x) {
  if (pj->vm)
    return td_vismodel_decode(pj->vm, y, n, x);
  int D = pj->dim;
  for (int64_t i = 0; i < n; i++)
    for (int j = 0; j < D; j++)
      x[i * D + j] = pj->mean[j] + y[2 * i] * pj->comps[j] +
                     y[2 * i + 1] * pj->comps[D + j];
  return TD_OK;
}

/* Covariance C = Xcᵀ Xc / n (D × D) by one GEMM, then power iteration with
 * deflation for the top two eigenvectors. */
int td_pca_fit(const float *x, int64_t n, int D, const float *prev_comps,
               float *mean, float *comps, td_err *err) {
  if (n < 2 || D < 2)
    return td_err_set(err, TD_EARG, "PCA needs at least 2 points and 2 dims");
  double *mu = calloc((size_t)D, sizeof *mu);
  float *cov = calloc((size_t)D * D, sizeof *cov);
  float *xc = malloc((size_t)4096 * D * sizeof *xc);
  if (!mu || !cov || !xc) {
    free(mu);
    free(cov);
    free(xc);
    return td_err_set(err, TD_ENOMEM, "out of memory");
  }
  for (int64_t i = 0; i < n; i++)
    for (int j = 0; j < D; j++)
      mu[j] += (double)x[i * D + j];
  for (int j = 0; j < D; j++)
    mean[j] = (float)(mu[j] / (double)n);
  for (int64_t b = 0; b < n; b += 4096) {
    int m = (int)(n - b < 4096 ? n - b : 4096);
    for (int i = 0; i < m; i++)
      for (int j = 0; j < D; j++)
        xc[(size_t)i * D + j] = x[(b + i) * D + j] - mean[j];
    td_gemm(1, 0, D, D, m, 1.0f / (float)n, xc, D, xc, D, 1.0f, cov, D);
  }
  double *v = mu; /* reuse as the iteration vector */
  double *w = malloc((size_t)D * sizeof *w);
  for (int axis = 0; axis < 2 && w; axis++) {
    for (int j = 0; j < D; j++)
      v[j] = 1.0 + 0.01 * (double)((j * 7919 + axis * 104729) % 101);
    double lambda = 0;
    for (int it = 0; it < 500; it++) {
      double norm = 0;
      for (int r = 0; r < D; r++) {
        double s = 0;
        for (int c = 0; c < D; c++)
          s += (double)cov[(size_t)r * D + c] * v[c];
        w[r] = s;
      }
      if (axis == 1) { /* deflate: stay orthogonal to the first axis */
        double d = 0;
        for (int j = 0; j < D; j++)
          d += w[j] * (double)comps[j];
        for (int j = 0; j < D; j++)
          w[j] -= d * (double)comps[j];
      }
      for (int j = 0; j < D; j++)
        norm += w[j] * w[j];
      norm = sqrt(norm);
      if (norm == 0)
        break;
      double change = 0;
      for (int j = 0; j < D; j++) {
        double nv = w[j] / norm;
        change += fabs(nv - v[j]);
        v[j] = nv;
      }
      lambda = norm;
      if (change < 1e-9 * D)
        break;
    }
    (void)lambda;
    double dot = 0;
    for (int j = 0; j < D; j++)
      dot += v[j] * (prev_comps ? (double)prev_comps[axis * D + j] : 1.0);
    double sign = dot < 0 ? -1.0 : 1.0;
    for (int j = 0; j < D; j++)
      comps[axis * D + j] = (float)(sign * v[j]);
  }
  int ok = w != NULL;
  free(w);
  free(mu);
  free(cov);
  free(xc);
  return ok ? TD_OK : td_err_set(err, TD_ENOMEM, "out of memory");
}

int td_pca_save(const char *epoch_dir, int D, const float *mean,
                const float *comps, td_err *err) {
  float *buf = malloc((size_t)3 * D * sizeof *buf);
  if (!buf)
    return td_err_set(err, TD_ENOMEM, "out of memory");
  memcpy(buf, mean, (size_t)D * sizeof *buf);
  memcpy(buf + D, comps, (size_t)2 * D * sizeof *buf);
  char path[TD_PATH_MAX];
  int64_t shape[2] = {3, D};
  int rc = td_pathf(path, sizeof path, err, "%s/pca.npy", epoch_dir);
  if (rc == TD_OK)
    rc = td_npy_save_raw(path, TD_F32, 2, shape, buf, err);
  free(buf);
  return rc;
}
