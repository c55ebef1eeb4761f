/* Layer kinds and shape resolution: what each kind of layer does to the
 * shape [C, H, W] of a sample, and which spec fields it may use. */
#include <stdlib.h>
#include <string.h>

#include "net_internal.h"

static const char *const kind_names[TD_LAYER_KIND_COUNT] = {
    "dense", "conv", "maxpool", "avgpool_global", "batchnorm", "dropout"};

const char *td_layer_kind_name(td_layer_kind k) {
  return k >= 0 && k < TD_LAYER_KIND_COUNT ? kind_names[k] : NULL;
}

td_layer_kind td_layer_kind_parse(const char *name) {
  for (int k = 0; name && k < TD_LAYER_KIND_COUNT; k++)
    if (strcmp(name, kind_names[k]) == 0)
      return (td_layer_kind)k;
  return TD_LAYER_KIND_COUNT;
}

/* Sizes are capped so every per-layer product fits comfortably in an int
 * and a size_t of 64 bits. */
#define MAX_SIZE (1 << 24)

#define BAD(...) td_err_set(err, TD_EARG, "layer %d (%s): " __VA_ARGS__)

/* Checks the fields kind k ignores are zero, so a typo in a spec (a stride
 * on a dense layer) is reported instead of silently ignored. */
static int check_unused(int i, const td_layer_spec *s, td_err *err) {
  const char *k = kind_names[s->kind];
  int dense = s->kind == TD_LAYER_DENSE, conv = s->kind == TD_LAYER_CONV;
  int pool = s->kind == TD_LAYER_MAXPOOL;
  if (!dense && !conv && s->out != 0)
    return BAD("\"out\" is not used by this kind", i, k);
  if (!conv && !pool && (s->kernel || s->stride || s->pad))
    return BAD("kernel, stride and pad are not used by this kind", i, k);
  if (s->kind != TD_LAYER_DROPOUT && s->p != 0.0f)
    return BAD("\"p\" is not used by this kind", i, k);
  if ((pool || s->kind == TD_LAYER_AVGPOOL_GLOBAL ||
       s->kind == TD_LAYER_DROPOUT) &&
      s->act != TD_ACT_NONE)
    return BAD("no activation may follow this kind", i, k);
  return TD_OK;
}

/* Output shape of a windowed layer (conv or maxpool). */
static int window(int i, const td__layer *L, int *oh, int *ow, td_err *err) {
  const td_layer_spec *s = &L->s;
  const char *k = kind_names[s->kind];
  if (s->kernel < 1 || s->kernel > MAX_SIZE || s->stride < 1 ||
      s->stride > MAX_SIZE || s->pad < 0 || s->pad > MAX_SIZE)
    return BAD("kernel and stride must be >= 1, pad >= 0", i, k);
  if (s->kind == TD_LAYER_MAXPOOL && s->pad > s->kernel / 2)
    return BAD("pad %d exceeds half the kernel %d", i, k, s->pad, s->kernel);
  if (s->kernel > L->ih + 2 * s->pad || s->kernel > L->iw + 2 * s->pad)
    return BAD("kernel %d larger than the padded %dx%d input", i, k, s->kernel,
               L->ih + 2 * s->pad, L->iw + 2 * s->pad);
  *oh = (L->ih + 2 * s->pad - s->kernel) / s->stride + 1;
  *ow = (L->iw + 2 * s->pad - s->kernel) / s->stride + 1;
  return TD_OK;
}

static int resolve_one(int i, td__layer *L, td_err *err) {
  td_layer_spec *s = &L->s;
  if (s->kind < 0 || s->kind >= TD_LAYER_KIND_COUNT)
    return td_err_set(err, TD_EARG, "layer %d: unknown kind %d", i,
                      (int)s->kind);
  const char *k = kind_names[s->kind];
  if (s->act < 0 || s->act >= TD_ACT_COUNT)
    return BAD("unknown activation %d", i, k, (int)s->act);
  int rc = check_unused(i, s, err);
  if (rc != TD_OK)
    return rc;
  L->oc = L->ic, L->oh = L->ih, L->ow = L->iw;
  switch (s->kind) {
  case TD_LAYER_DENSE:
    if (s->out < 1 || s->out > MAX_SIZE)
      return BAD("\"out\" must be 1 to %d units", i, k, MAX_SIZE);
    L->oc = s->out, L->oh = 1, L->ow = 1;
    L->nw = (size_t)s->out * (size_t)L->in, L->nb = (size_t)s->out;
    break;
  case TD_LAYER_CONV:
    if (s->out < 1 || s->out > MAX_SIZE)
      return BAD("\"out\" must be 1 to %d channels", i, k, MAX_SIZE);
    if (s->stride == 0)
      s->stride = 1;
    if ((rc = window(i, L, &L->oh, &L->ow, err)) != TD_OK)
      return rc;
    L->oc = s->out;
    L->nw = (size_t)s->out * (size_t)L->ic * (size_t)s->kernel * s->kernel;
    L->nb = (size_t)s->out;
    break;
  case TD_LAYER_MAXPOOL:
    if (s->stride == 0)
      s->stride = s->kernel;
    if ((rc = window(i, L, &L->oh, &L->ow, err)) != TD_OK)
      return rc;
    break;
  case TD_LAYER_AVGPOOL_GLOBAL:
    L->oh = 1, L->ow = 1;
    break;
  case TD_LAYER_BATCHNORM:
    L->nw = L->nb = (size_t)L->ic;
    L->ns = 2 * (size_t)L->ic;
    break;
  case TD_LAYER_DROPOUT:
    if (!(s->p >= 0.0f && s->p < 1.0f))
      return BAD("p must be in [0, 1)", i, k);
    break;
  default:
    break;
  }
  if ((int64_t)L->oc * L->oh * L->ow > MAX_SIZE)
    return BAD("output of %dx%dx%d values is too large", i, k, L->oc, L->oh,
               L->ow);
  L->out = L->oc * L->oh * L->ow;
  return TD_OK;
}

int td__layers_resolve(int c, int h, int w, int n, const td_layer_spec *spec,
                       td__layer *out, td_err *err) {
  if (n < 1 || !spec)
    return td_err_set(err, TD_EARG, "a network needs at least one layer");
  if (c < 1 || h < 1 || w < 1 || (int64_t)c * h * w > MAX_SIZE)
    return td_err_set(err, TD_EARG, "invalid input shape %dx%dx%d", c, h, w);
  size_t off = 0, soff = 0;
  for (int i = 0; i < n; i++) {
    td__layer *L = &out[i];
    memset(L, 0, sizeof *L);
    L->s = spec[i];
    L->ic = c, L->ih = h, L->iw = w;
    L->in = c * h * w;
    int rc = resolve_one(i, L, err);
    if (rc != TD_OK)
      return rc;
    L->off = off, L->soff = soff;
    off += L->nw + L->nb;
    soff += L->ns;
    c = L->oc, h = L->oh, w = L->ow;
  }
  return TD_OK;
}

int td_net_check_layers(int in_c, int in_h, int in_w, int n_layers,
                        const td_layer_spec *layers, td_err *err) {
  if (n_layers < 1 || n_layers > 4096 || !layers)
    return td_err_set(err, TD_EARG, "a network needs 1 to 4096 layers");
  td__layer *tmp = malloc(sizeof *tmp * (size_t)n_layers);
  if (!tmp)
    return td_err_set(err, TD_ENOMEM, "out of memory");
  int rc = td__layers_resolve(in_c, in_h, in_w, n_layers, layers, tmp, err);
  free(tmp);
  return rc;
}
