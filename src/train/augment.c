/* Random shifts (zero fill) and horizontal flips of training images. */
#include "train/augment.h"

#include <string.h>

#include "tardis/rng.h"

int td__augment_parse(const char *s, td__augment *a, td_err *err) {
  memset(a, 0, sizeof *a);
  if (!s || !strcmp(s, "none"))
    return TD_OK;
  for (const char *p = s;;) {
    size_t n = strcspn(p, ",");
    if (n == 5 && !strncmp(p, "shift", 5) && !a->shift)
      a->shift = 1;
    else if (n == 4 && !strncmp(p, "flip", 4) && !a->flip)
      a->flip = 1;
    else
      return td_err_set(err, TD_EARG,
                        "--augment: expected shift, flip, shift,flip or none, "
                        "got \"%s\"",
                        s);
    if (!p[n])
      return TD_OK;
    p += n + 1;
  }
}

/* One image: out(y, x) = in(y - dy, mirror?(x) - dx), 0 outside. */
static void transform(float *img, int c, int h, int w, int dy, int dx, int flip,
                      float *tmp) {
  memcpy(tmp, img, (size_t)c * h * w * sizeof *tmp);
  for (int k = 0; k < c; k++)
    for (int y = 0; y < h; y++) {
      float *dst = img + ((size_t)k * h + y) * w;
      int sy = y - dy;
      if (sy < 0 || sy >= h) {
        memset(dst, 0, (size_t)w * sizeof *dst);
        continue;
      }
      const float *src = tmp + ((size_t)k * h + sy) * w;
      for (int x = 0; x < w; x++) {
        int sx = x - dx;
        if (flip)
          sx = w - 1 - sx;
        dst[x] = sx >= 0 && sx < w ? src[sx] : 0.0f;
      }
    }
}

void td__augment_batch(const td__augment *a, float *x, int m, int c, int h,
                       int w, uint64_t seed, float *scratch) {
  if (!a->shift && !a->flip)
    return;
  const int span = 2 * TD__AUGMENT_SHIFT + 1;
  for (int i = 0; i < m; i++) {
    td_rng r;
    td_rng_split(&r, seed, (uint64_t)i);
    int dy = a->shift ? (int)td_rng_below(&r, span) - TD__AUGMENT_SHIFT : 0;
    int dx = a->shift ? (int)td_rng_below(&r, span) - TD__AUGMENT_SHIFT : 0;
    int flip = a->flip ? (int)td_rng_below(&r, 2) : 0;
    if (dy || dx || flip)
      transform(x + (size_t)i * c * h * w, c, h, w, dy, dx, flip, scratch);
  }
}
