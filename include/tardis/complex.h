/* tardis/complex.h — UMAP's fuzzy simplicial complex (DESIGN §3.3) as a
 * weighted undirected graph, the DVI complexes built from it (§3.4), and a
 * weight-proportional edge sampler.
 *
 * From a kNN graph (tardis/knn.h), each point i gets
 *   rho_i   = its smallest non-zero neighbour distance,
 *   sigma_i = the solution of sum_j exp(-max(0, d_ij - rho_i)/sigma_i) =
 *             log2(k) (binary search, 64 steps, tolerance 1e-5), floored at
 *             1e-3 x the row's mean neighbour distance (UMAP's rule; the
 *             whole graph's mean distance when rho_i = 0),
 * and directed memberships w_ij = exp(-max(0, d_ij - rho_i)/sigma_i). The
 * symmetric graph is their fuzzy union W = A + A^T - A∘A^T, each undirected
 * edge stored once with head < tail.
 *
 *     td_knn knn;   // e.g. from td_knn_auto(x, n, d, 15, seed, &knn, &err)
 *     td_graph g;
 *     if (td_complex_build(&knn, &g, &err) != TD_OK) { ... }
 *     td_alias sampler;
 *     td_alias_build(g.weight, g.n_edges, &sampler);
 *     int64_t e = td_alias_draw(&sampler, &rng);   // edge e, P ∝ weight[e]
 *     ... g.head[e], g.tail[e] ...
 *     td_alias_free(&sampler);
 *     td_graph_free(&g);
 *
 * For DVI's projection (§3.4), td_complex_dvi builds the spatial complex over
 * the training points followed by the boundary samples, plus the
 * boundary-wise complex linking every vertex to its k nearest boundary
 * samples, and concatenates them (vertex i < n: training point i; vertex
 * n + j: boundary sample j).
 *
 * Thread count: td_threads(). Results do not depend on it.
 */
#ifndef TARDIS_COMPLEX_H
#define TARDIS_COMPLEX_H

#include <stdint.h>

#include "tardis/error.h"
#include "tardis/knn.h"
#include "tardis/rng.h"

/* A weighted undirected graph over n_vertices vertices; edge e joins head[e]
 * and tail[e] (head < tail for a complex; a concatenation of complexes may
 * hold the same pair twice) with weight[e] in (0, 1]. The arrays are
 * malloc'd by the builder; release with td_graph_free. */
typedef struct td_graph {
  int64_t n_vertices, n_edges;
  int32_t *head, *tail;
  float *weight;
} td_graph;

/* Frees the arrays and zeroes *g; safe on a zeroed or freed graph. */
void td_graph_free(td_graph *g);

/* The smoothing of each kNN row: rho[n] and sigma[n] (caller-allocated),
 * as defined above. knn->k >= 1. */
void td_complex_smooth(const td_knn *knn, float *rho, float *sigma);

/* The fuzzy union of the directed memberships of knn (self-loops and edges of
 * weight 0 are dropped). Vertices are the knn's rows; every index in
 * knn->idx must be in [0, knn->n). On error *out is zeroed. */
TD_NODISCARD int td_complex_build(const td_knn *knn, td_graph *out,
                                  td_err *err);

/* Concatenates the edge lists of n_graphs graphs into one over n_vertices
 * vertices, adding offset[i] (may be NULL: all 0) to the vertex ids of graph
 * i. No union is taken: a pair present in two inputs appears twice, which for
 * weight-proportional sampling sums their weights. On error *out is zeroed. */
TD_NODISCARD int td_graph_join(const td_graph *const *graphs,
                               const int64_t *offsets, int n_graphs,
                               int64_t n_vertices, td_graph *out, td_err *err);

/* Drops edges lighter than min_weight, in place (order kept). */
void td_graph_prune(td_graph *g, float min_weight);

/* The boundary-wise complex: the kNN graph of every row of F = [x; b] among
 * the rows of b (a boundary row does not count itself), made fuzzy and
 * symmetric like td_complex_build, over n + nb vertices (boundary sample j is
 * vertex n + j). Requires 1 <= k <= nb - 1. */
TD_NODISCARD int td_complex_boundary(const float *x, int64_t n, const float *b,
                                     int64_t nb, int d, int k, td_graph *out,
                                     td_err *err);

/* DVI's complex for one epoch: the spatial complex over the n + nb rows of
 * [x; b] (kNN by td_knn_auto with `seed`) joined with the boundary-wise
 * complex (same k), whose weights are multiplied by boundary_weight (DVI:
 * 1; tardis's measured default TD_COMPLEX_BOUNDARY_WEIGHT, see
 * docs/projection.md). nb may be 0 (b NULL): then only the spatial complex. If
 * knn_out is not NULL it receives the spatial kNN graph (caller frees with
 * td_knn_free), e.g. for the temporal term of the next epoch. */
#define TD_COMPLEX_BOUNDARY_WEIGHT 0.1f
TD_NODISCARD int td_complex_dvi_ex(const float *x, int64_t n, const float *b,
                                   int64_t nb, int d, int k,
                                   float boundary_weight, uint64_t seed,
                                   td_graph *out, td_knn *knn_out, td_err *err);
/* td_complex_dvi_ex with boundary_weight = TD_COMPLEX_BOUNDARY_WEIGHT. */
TD_NODISCARD int td_complex_dvi(const float *x, int64_t n, const float *b,
                                int64_t nb, int d, int k, uint64_t seed,
                                td_graph *out, td_knn *knn_out, td_err *err);

/* Multiplies by `factor` the weight of every edge whose two endpoints are
 * both below n_labelled and carry different labels (label[v], v <
 * n_labelled); edges touching other vertices are kept. With the
 * classifier's predicted classes as labels this makes the layout keep the
 * predicted classes apart, which the decoder's prediction preservation
 * (ppr) needs (docs/projection.md). Returns the number of edges scaled. */
int64_t td_graph_scale_mixed(td_graph *g, const int32_t *label,
                             int64_t n_labelled, float factor);

/* Class links (docs/projection.md): for every vertex i < n, edges of
 * weight `weight` to `links` vertices with the same label: its same-label
 * neighbours in its kNN row (knn over at least the first n rows of x [., d];
 * indices >= n are ignored), nearest first; if there are fewer, the nearest
 * same-label vertices among its neighbours' neighbours (distances in x);
 * then random same-label vertices. With the classifier's predicted classes
 * as labels this keeps every point, even one whose high-dimensional
 * neighbours are mostly of another class, inside its own class's region of
 * the layout, so that the decoder maps it back to its class. *n_hop (may be
 * NULL) receives the number of vertices that needed the two-hop search.
 * Parallel; the result does not depend on the thread count. */
TD_NODISCARD int td_complex_class_links(const float *x, int64_t n, int d,
                                        const td_knn *knn, const int32_t *label,
                                        int links, float weight, uint64_t seed,
                                        td_graph *out, int64_t *n_hop,
                                        td_err *err);

/* ---- weight-proportional sampling (Walker's alias method) ---------------- */

/* O(n) to build, O(1) per draw. */
typedef struct td_alias {
  int64_t n;
  float *prob;    /* [n] acceptance probability of slot i */
  int32_t *alias; /* [n] the other outcome of slot i */
} td_alias;

/* Builds the table for weights w[n] (n >= 1, n < 2^31, all >= 0, sum > 0).
 * Returns TD_OK, TD_ENOMEM or TD_EVALUE (no positive weight). */
TD_NODISCARD int td_alias_build(const float *w, int64_t n, td_alias *out);
/* One index in [0, n) drawn with probability w[i] / sum(w). */
int64_t td_alias_draw(const td_alias *a, td_rng *rng);
void td_alias_free(td_alias *a);

#endif
