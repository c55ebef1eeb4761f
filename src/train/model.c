/* The models of the subject trainer. `mlp`: dense layers of the --hidden
 * widths with ReLU, then one dense head; the last hidden layer is the
 * representation, so the head stays one dense layer (what the projection's
 * head consistency reads). */
#include "train/model.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

int td__model_parse_hidden(const char *s, int *widths, int *n, td_err *err) {
  if (!s)
    s = "256,128";
  *n = 0;
  for (const char *p = s;;) {
    char *end;
    long v = strtol(p, &end, 10);
    if (end == p || v < 1 || v > TD__MAX_WIDTH || (*end && *end != ',') ||
        *p == '+' || *p == '-' || *p == ' ')
      return td_err_set(err, TD_EARG,
                        "--hidden: expected widths from 1 to %d separated by "
                        "',' (e.g. 512,512,128), got \"%s\"",
                        TD__MAX_WIDTH, s);
    if (*n == TD__MAX_HIDDEN)
      return td_err_set(err, TD_EARG, "--hidden: at most %d layers, got \"%s\"",
                        TD__MAX_HIDDEN, s);
    widths[(*n)++] = (int)v;
    if (!*end)
      return TD_OK;
    p = end + 1;
  }
}

static int build_mlp(const td_train_opts *o, int in, int C, td_net **out,
                     td_err *err) {
  int hidden[TD__MAX_HIDDEN], nh;
  int rc = td__model_parse_hidden(o->hidden, hidden, &nh, err);
  if (rc)
    return rc;
  int dims[TD__MAX_HIDDEN + 2];
  td_act acts[TD__MAX_HIDDEN + 1];
  dims[0] = in;
  for (int i = 0; i < nh; i++) {
    dims[i + 1] = hidden[i];
    acts[i] = TD_ACT_RELU;
  }
  dims[nh + 1] = C;
  acts[nh] = TD_ACT_NONE;
  *out = td_net_new(nh + 1, dims, acts);
  return *out ? TD_OK : td_err_set(err, TD_ENOMEM, "out of memory");
}

/* conv 3x3x32 pad 1 [BN] ReLU, maxpool 2, conv 3x3x64 pad 1 [BN] ReLU,
 * maxpool 2, dense 128 ReLU (the representation), dense C. With batchnorm
 * the ReLU moves from the conv to the batchnorm after it. */
static int build_cnn(const td_train_opts *o, int c, int h, int w, int C,
                     td_net **out, td_err *err) {
  td_layer_spec L[8];
  int n = 0;
  const int widths[2] = {32, 64};
  for (int b = 0; b < 2; b++) {
    L[n++] = (td_layer_spec){.kind = TD_LAYER_CONV,
                             .out = widths[b],
                             .kernel = 3,
                             .pad = 1,
                             .act = o->batchnorm ? TD_ACT_NONE : TD_ACT_RELU};
    if (o->batchnorm)
      L[n++] = (td_layer_spec){.kind = TD_LAYER_BATCHNORM, .act = TD_ACT_RELU};
    L[n++] = (td_layer_spec){.kind = TD_LAYER_MAXPOOL, .kernel = 2};
  }
  L[n++] =
      (td_layer_spec){.kind = TD_LAYER_DENSE, .out = 128, .act = TD_ACT_RELU};
  L[n++] = (td_layer_spec){.kind = TD_LAYER_DENSE, .out = C};
  int rc = td_net_check_layers(c, h, w, n, L, err);
  if (rc) {
    td_err_prefix(err, "--model cnn on %d×%d×%d inputs", c, h, w);
    return rc;
  }
  *out = td_net_new_layers(c, h, w, n, L);
  return *out ? TD_OK : td_err_set(err, TD_ENOMEM, "out of memory");
}

int td__model_build(const td_train_opts *o, int c, int h, int w, int C,
                    td_net **out, td_err *err) {
  *out = NULL;
  int64_t in = (int64_t)c * h * w;
  if (!strcmp(o->model, "cnn"))
    return build_cnn(o, c, h, w, C, out, err);
  if (!strcmp(o->model, "mlp")) {
    if (in > INT_MAX / TD__MAX_WIDTH)
      return td_err_set(err, TD_EARG,
                        "inputs of %lld values are too large "
                        "for the mlp",
                        (long long)in);
    return build_mlp(o, (int)in, C, out, err);
  }
  return td_err_set(err, TD_EARG, "unknown model '%s' (available: mlp, cnn)",
                    o->model);
}

int td__model_repr_layer(const td_net *net) { return td_net_n_layers(net) - 2; }

int td__model_repr_dim(const td_net *net) {
  return td_net_dim(net, td_net_n_layers(net) - 1);
}

/* One layer: its kind, output shape and the fields its kind uses. */
static json_t *layer_json(const td_net *net, int i) {
  const td_layer_spec *l = td_net_layer_spec(net, i);
  int c, h, w;
  td_net_shape(net, i + 1, &c, &h, &w);
  json_t *j = json_pack("{s:s, s:i, s:i, s:[iii]}", "type",
                        td_layer_kind_name(l->kind), "in", td_net_dim(net, i),
                        "out", td_net_dim(net, i + 1), "out_shape", c, h, w);
  if (l->kind == TD_LAYER_CONV || l->kind == TD_LAYER_MAXPOOL) {
    json_object_set_new(j, "kernel", json_integer(l->kernel));
    json_object_set_new(j, "stride", json_integer(l->stride));
    json_object_set_new(j, "pad", json_integer(l->pad));
  }
  if (l->kind == TD_LAYER_DROPOUT)
    json_object_set_new(j, "p", json_real(l->p));
  json_object_set_new(j, "activation", json_string(td_act_name(l->act)));
  return j;
}

json_t *td__model_json(const td_train_opts *o, const td_net *net, int c, int h,
                       int w) {
  json_t *layers = json_array();
  for (int i = 0; i < td_net_n_layers(net); i++)
    json_array_append_new(layers, layer_json(net, i));
  return json_pack("{s:s, s:b, s:[iii], s:o, s:i, s:i, s:I}", "kind", o->model,
                   "batchnorm", o->batchnorm, "input_shape", c, h, w, "layers",
                   layers, "repr_layer", td__model_repr_layer(net), "repr_dim",
                   td__model_repr_dim(net), "n_params",
                   (json_int_t)td_net_n_params(net));
}
