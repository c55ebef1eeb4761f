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

int td__model_build(const td_train_opts *o, int c, int h, int w, int C,
                    td_net **out, td_err *err) {
  *out = NULL;
  int64_t in = (int64_t)c * h * w;
  if (!strcmp(o->model, "mlp")) {
    if (in > INT_MAX / TD__MAX_WIDTH)
      return td_err_set(err, TD_EARG,
                        "inputs of %lld values are too large "
                        "for the mlp",
                        (long long)in);
    return build_mlp(o, (int)in, C, out, err);
  }
  return td_err_set(err, TD_EARG, "unknown model '%s' (available: mlp)",
                    o->model);
}

int td__model_repr_layer(const td_net *net) { return td_net_n_layers(net) - 2; }

int td__model_repr_dim(const td_net *net) {
  return td_net_dim(net, td_net_n_layers(net) - 1);
}

json_t *td__model_json(const td_train_opts *o, const td_net *net, int c, int h,
                       int w) {
  json_t *layers = json_array();
  int L = td_net_n_layers(net);
  for (int i = 0; i < L; i++)
    json_array_append_new(
        layers, json_pack("{s:s, s:i, s:i, s:s}", "type", "dense", "in",
                          td_net_dim(net, i), "out", td_net_dim(net, i + 1),
                          "activation", td_act_name(td_net_act(net, i))));
  return json_pack("{s:s, s:[iii], s:o, s:i, s:i, s:I}", "kind", o->model,
                   "input_shape", c, h, w, "layers", layers, "repr_layer",
                   td__model_repr_layer(net), "repr_dim",
                   td__model_repr_dim(net), "n_params",
                   (json_int_t)td_net_n_params(net));
}
