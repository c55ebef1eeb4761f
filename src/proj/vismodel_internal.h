/* Internal to src/proj/vis_*.c, the parts of the projection model
 * (tardis/vismodel.h): the model itself, and the state one fit shares
 * between its phases (vis_fit.c: checks, DVI passes, temporal terms;
 * vis_distil.c: layout then distillation). */
#ifndef TD_PROJ_VISMODEL_INTERNAL_H
#define TD_PROJ_VISMODEL_INTERNAL_H

#include <stdint.h>

#include "tardis/complex.h"
#include "tardis/nn.h"
#include "tardis/rng.h"
#include "tardis/vismodel.h"

struct td_vismodel {
  int dim;
  td_net *enc, *dec;
  float *mean; /* [dim] centre of the representations */
  float scale; /* 1 / RMS distance to the centre */
  td_vis_params params;
};

/* Everything one fit allocates, freed in one place. */
typedef struct {
  td_alias alias;
  td_net_ws *ws_enc, *ws_dec, *ws_mem;
  td_optim *opt_enc, *opt_dec;
  float *xb;     /* [2B, D] normalised endpoint rows */
  int32_t *vid;  /* [2B] their vertex ids */
  float *de;     /* [2B, 2] d(loss)/d(embedding) */
  float *de_rec; /* [2B, 2] the decoder's share of it */
  float *dr;     /* [2B, D] d(loss)/d(reconstruction) */
  int32_t *pu, *pv, *nu, *nv;
  float *prev_enc, *prev_dec; /* DVI anchor: prev's parameters */
  float *xm;                  /* [M, D] normalised memory rows */
  float *dm;                  /* [M, 2] */
  int32_t *mid;               /* [M] memory ids */
  float *target;              /* [n, 2] the layout the encoder distils */
  int32_t *perm;              /* [n] point order of a distillation sweep */
  float *yb;                  /* [P, 2] layout positions of a batch */
  float *xb2;                 /* [P, D] the decoder's batch (own thread) */
  int32_t *perm2;             /* [n] the decoder's point order */
  float *probs;               /* [n, C] softmax(head(x)): head targets */
  float *hw, *hb;             /* head folded onto normalised units */
  float *hz;                  /* [P, C] head logits of a batch's decoding */
} fit_buf;

typedef struct {
  td_vismodel *m;
  const float *x;
  const td_graph *g;
  const td_vis_params *p;
  const td_vis_anchor *anc;
  int have_prev;
  fit_buf *f;
  td_rng rng;
  int bsz, nrec, mem_batch;
  const td_vis_fit_io *io;
  int n_classes; /* > 0: the head-consistency term is on */
} fit_state;

/* 1 when nets a and b have the same layer widths. */
int td__vis_same_shape(const td_net *a, const td_net *b);

/* Normalised rows (x[ids[r]] - mean) * scale of m into out [cnt, D]. */
void td__vis_gather_rows(const td_vismodel *m, const float *x,
                         const int32_t *ids, int64_t cnt, float *out);

/* The temporal terms (DVI drift, SentryCam memory) of a step over the
 * vertices ids[0..cnt), for both nets or for one (0: encoder, 1: decoder);
 * add their gradients and return their loss. */
double td__vis_temporal_terms(fit_state *s, const int32_t *ids, int cnt);
double td__vis_temporal_net(fit_state *s, const int32_t *ids, int cnt,
                            int which);

/* The default start of a fit: layout of the complex, handed to io->y_out,
 * then distilled into the encoder and decoder (vis_distil.c). */
TD_NODISCARD int td__vis_layout_and_distil(fit_state *s,
                                           const td_vismodel *prev, int64_t n);

#endif
