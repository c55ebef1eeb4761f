/* Softmax cross-entropy, the classifier's loss, with its gradient. */
#include "tardis/nn.h"

#include <math.h>

float td_softmax_xent(const float *logits, const int32_t *labels, int batch,
                      int n_classes, float *dlogits, float *per_sample) {
  TD_ASSERT(batch > 0 && n_classes > 0);
  double total = 0.0;
  float inv_batch = 1.0f / (float)batch;
  for (int i = 0; i < batch; i++) {
    const float *z = logits + (size_t)i * n_classes;
    int32_t y = labels[i];
    TD_ASSERT(y >= 0 && y < n_classes);
    /* Shift by the max so exp never overflows; sum in double so that the
     * log-sum-exp is exact to float precision even for many classes. */
    float m = z[0];
    for (int j = 1; j < n_classes; j++)
      m = z[j] > m ? z[j] : m;
    double s = 0.0;
    for (int j = 0; j < n_classes; j++)
      s += exp((double)(z[j] - m));
    double loss = (double)m + log(s) - (double)z[y];
    total += loss;
    if (per_sample)
      per_sample[i] = (float)loss;
    if (dlogits) {
      /* Reads z[j] before writing d[j], so dlogits may alias logits. */
      float *d = dlogits + (size_t)i * n_classes;
      float inv_s = (float)(1.0 / s);
      for (int j = 0; j < n_classes; j++) {
        float p = expf(z[j] - m) * inv_s;
        d[j] = (p - (j == y ? 1.0f : 0.0f)) * inv_batch;
      }
    }
  }
  return (float)(total / batch);
}
