/* The subject trainer's models (internal to src/train): the net a
 * td_train_opts asks for, and its description in run.json's "model". */
#ifndef TD_TRAIN_MODEL_H
#define TD_TRAIN_MODEL_H

#include <jansson.h>

#include "tardis/nn.h"
#include "tardis/train.h"

#define TD__MAX_HIDDEN 16
#define TD__MAX_WIDTH 65536

/* "512,512,128" into widths[0..*n) (1 to TD__MAX_HIDDEN widths, each 1 to
 * TD__MAX_WIDTH); NULL means the default "256,128". */
TD_NODISCARD int td__model_parse_hidden(const char *s, int *widths, int *n,
                                        td_err *err);

/* A new, uninitialised net for inputs of shape [c, h, w] and C classes. Its
 * representation is the input of the last layer (td__model_repr_layer). */
TD_NODISCARD int td__model_build(const td_train_opts *o, int c, int h, int w,
                                 int C, td_net **out, td_err *err);

/* The layer whose output is the representation: the one before the head. */
int td__model_repr_layer(const td_net *net);
/* Its width D. */
int td__model_repr_dim(const td_net *net);

/* run.json's "model": {"kind", "input_shape", "layers": [{"type": "dense",
 * "in", "out", "activation"}, ..], "repr_layer", "repr_dim", "n_params"}. */
json_t *td__model_json(const td_train_opts *o, const td_net *net, int c, int h,
                       int w);

#endif
