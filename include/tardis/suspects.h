/* tardis/suspects.h — suspicious training samples (DeepDebugger, DESIGN §3.8).
 *
 * Per sample, a small feature vector is computed once per run from the
 * recorded epochs (and the 2-D projection when one exists):
 *
 *   rarity_pos/vel/acc  1 − |cluster|/N of the sample's 2-D trajectory over
 *                       the last ⌊2T/3⌋ projected epochs (positions,
 *                       velocities, accelerations; k-means, ≈30 clusters)
 *   uncertainty         1 − max softmax at the last epoch
 *   aum                 area under the margin: mean over epochs of
 *                       z_label − max_{j≠label} z_j
 *   loss                mean loss under the training label over epochs
 *   confidence          Data-Maps confidence: mean softmax prob. of the label
 *   variability         Data-Maps variability: its population std
 *   forgetting          forgetting events (correct → wrong between
 *                       consecutive epochs); never-learned samples get
 *                       max + 1
 *   early_aum           aum over the first E = ⌈T/4⌉ epochs, before a wide
 *                       network memorises flipped labels
 *   first_fit           (t + 1)/T for the last epoch t the sample is not
 *                       predicted as its label (0: always fitted)
 *   knn_disagree        share of its 10 nearest training representations at
 *                       epoch E (among ≤ 10,000 fixed reference rows) whose
 *                       label differs
 *   early_class         argmax of the mean softmax over the first E epochs
 *
 * A recommender ranks samples by a prior score (round 0) and, as a user
 * accepts or rejects them, refits a small regularised model on all feedback
 * so far (one round: fit + rank, well under a millisecond at N = 60k).
 *
 *     td_sus_features f;
 *     if (td_sus_features_get(run, NULL, NULL, &f, &err)) ...   // cached
 *     td_recommender *rec;
 *     td_rec_new(&f, NULL, &rec, &err);
 *     int8_t *verdict = ...;            // [N]: -1 unjudged, 0 reject, 1 accept
 *     int32_t top[50];
 *     int n = td_rec_next(rec, verdict, 50, top, NULL, NULL);
 *     ...
 *     td_rec_free(rec);
 *     td_sus_features_close(&f);
 *
 * Feedback sessions live in RUN/tardis.db (tardis/feedback.h).
 */
#ifndef TARDIS_SUSPECTS_H
#define TARDIS_SUSPECTS_H

#include <stdint.h>

#include "tardis/error.h"
#include "tardis/run.h"

/* Feature columns. Values are only ever appended (they reach files). */
typedef enum {
  TD_SUS_RARITY_POS,
  TD_SUS_RARITY_VEL,
  TD_SUS_RARITY_ACC,
  TD_SUS_UNCERTAINTY,
  TD_SUS_AUM,
  TD_SUS_LOSS,
  TD_SUS_CONFIDENCE,
  TD_SUS_VARIABILITY,
  TD_SUS_FORGETTING,
  TD_SUS_EARLY_AUM,    /* margin over the first ⌈T/4⌉ epochs (low) */
  TD_SUS_FIRST_FIT,    /* share of epochs before it is fitted for good */
  TD_SUS_KNN_DISAGREE, /* share of 10 representation neighbours (epoch
                          ⌈T/4⌉) labelled otherwise */
  TD_SUS_EARLY_CLASS,  /* class favoured over the first ⌈T/4⌉ epochs
                          (mean softmax); categorical: no ranking feature */
  TD_SUS_FEATURE_COUNT
} td_sus_feature;

/* 1 for the columns that are values to rank by (all but early_class). */
int td_sus_feature_is_score(int f);

/* "rarity_pos", "aum", ...; "?" out of range. */
const char *td_sus_feature_name(int f);
/* +1 when a high value is suspicious, −1 when a low one is (aum,
 * confidence). */
int td_sus_feature_sign(int f);

/* Families of trajectory clusters. */
enum { TD_SUS_FAM_POS, TD_SUS_FAM_VEL, TD_SUS_FAM_ACC, TD_SUS_FAM_COUNT };

/* k-means clusters of one trajectory family. */
typedef struct td_sus_clusters {
  int k, dim;
  float *centroids; /* [k, dim] */
  float *radius;    /* [k] largest member distance to its centroid */
  int64_t *size;    /* [k] members */
} td_sus_clusters;

typedef struct td_sus_features {
  int64_t n;
  float *x;           /* [n, TD_SUS_FEATURE_COUNT], raw values (owned) */
  int has_trajectory; /* 0: the rarity columns are 0 (no projection) */
  char method[33];    /* projection used; "" when none */
  int n_traj;         /* epochs of the trajectory window */
  int *traj_epochs;   /* [n_traj] their numbers (owned) */
  int n_epochs;       /* epochs used for the training dynamics */
  td_sus_clusters fam[TD_SUS_FAM_COUNT];
  uint64_t signature; /* of the inputs; the cache key */
  int32_t *labels;    /* [n] training labels (owned; NULL: not known) */
  int n_classes;
  /* The nearest training samples of each sample at epoch ⌈T/4⌉ (those of
   * knn_disagree: reference rows only, itself skipped), nearest first; −1
   * pads. The recommender propagates feedback along them. NULL: none. */
  int nbr_k;    /* per sample (10) */
  int32_t *nbr; /* [n, nbr_k] (owned) */
} td_sus_features;

typedef struct td_sus_opts {
  const char *method; /* projection; NULL: the best covered of dvi, pca,
                         then any other; "none": no trajectories */
  int clusters;       /* k-means k per family (30) */
  int max_iter;       /* k-means iterations (50) */
  uint64_t seed;      /* (1) */
} td_sus_opts;

void td_sus_opts_default(td_sus_opts *o);

/* Computes the features of a run (no cache). Trajectory features need a
 * projection covering at least 3 epochs of the window; without one they are
 * left out (has_trajectory = 0) and `note` (may be NULL, >= 256 bytes)
 * says why. Free with td_sus_features_close. */
TD_NODISCARD int td_sus_features_compute(const td_run *run,
                                         const td_sus_opts *o,
                                         td_sus_features *out, char *note,
                                         td_err *err);

/* Like td_sus_features_compute, but reuses RUN/vis/suspects-<method>.npy
 * and .json when their signature matches the run's current epochs and
 * projection files (mtimes and sizes), and writes them otherwise (a
 * write failure is not an error: the cache is an optimisation).
 * *from_cache (may be NULL) says which happened. */
TD_NODISCARD int td_sus_features_get(const td_run *run, const td_sus_opts *o,
                                     td_sus_features *out, int *from_cache,
                                     char *note, td_err *err);

void td_sus_features_close(td_sus_features *f); /* zeroed is fine */

/* ---- abnormal trajectories -------------------------------------------- */

/* Scores new trajectories (e.g. the test split's) against the training
 * clusters of one family: a trajectory is abnormal when it is outside every
 * cluster's radius, or its nearest cluster holds < 2 % of the training
 * samples. traj: [m, c->dim]; abnormal: [m] out. Returns the count. */
int64_t td_sus_abnormal(const td_sus_clusters *c, int64_t n_train,
                        const float *traj, int64_t m, uint8_t *abnormal);

/* Builds the position/velocity/acceleration trajectories of `split`
 * ("train" or "test") over f's window: fam[i] gets a malloc'd [m, dim_i]
 * array (caller frees). TD_ENOENT when an embedding is missing. */
TD_NODISCARD int td_sus_trajectories(const td_run *run,
                                     const td_sus_features *f,
                                     const char *split, int64_t m,
                                     float *fam[TD_SUS_FAM_COUNT], td_err *err);

/* ---- recommender ------------------------------------------------------ */

typedef enum {
  TD_REC_RIDGE,    /* ridge regression on 1/0, λ = 1 (DeepDebugger) */
  TD_REC_LOGISTIC, /* L2-regularised logistic regression, λ = 1 */
  TD_REC_MODEL_COUNT
} td_rec_model;

typedef struct td_rec_opts {
  /* features to use (bit f = feature f); 0: all available */
  unsigned features;
  /* features of the prior score (round 0, one-sided feedback): the mean of
   * their oriented z-scores; 0: aum + confidence when used, else all used
   * features */
  unsigned prior;
  td_rec_model model;
  /* 1 (default): a round is ranked by the prior while the user accepts
   * more than 80 % of the prior's picks, else by the fitted model alone
   * (so mistaken answers cannot pull the ranking off a good prior, and a
   * failing prior hands over to the model). The recommender remembers
   * which score picked what (td_rec_source / td_rec_set_source, so a
   * server can persist it). 0: always the fixed `blend`. */
  int adaptive;
  /* without adaptive: weight of the fitted model next to the prior (both
   * standardised over all samples); < 0: the fitted model alone */
  double blend;
  double lambda; /* regularisation (1) */
  /* 1 (default; needs the features' labels, else ignored): "labelled a,
   * behaves like b". Rounds ranked by the fitted model use a ridge model
   * with one effect per (label, early_class) pair, shrunk towards 0 with
   * `pair_prior` pseudo-counts (5), fitted by backfitting; a pair nobody
   * judged gets the least judged effect; the linear part is capped at its
   * highest value among the judged samples (no extrapolation); up to the
   * last ⌊k/10⌋ places go to the largest off-diagonal pairs judged fewer
   * than twice (exploration). Without a fit (one-sided answers) the pair
   * term is the log-odds of an accept per pair. 0: the plain ridge
   * (--no-pairs). docs/suspects.md has the figures. */
  int pairs;
  double pair_prior;
  /* 1: rounds ranked by the fitted model add a neighbour term — the
   * log-odds of an accept among the judged samples that are representation
   * neighbours (td_sus_features.nbr, either direction) of a sample and carry
   * its label, relative to the overall accept rate and shrunk towards it
   * with `prop_prior` pseudo-counts (2): an accepted "labelled a, looks like
   * b" lifts its look-alikes with the same wrong label. Needs the features'
   * neighbours and labels (ignored without). */
  int prop;
  double prop_prior;
  /* with pairs: 0 no exploration; 1 ⌊k/10⌋ places per model-ranked round;
   * 2 (default) ⌊k/10⌋ · min(1, 2ρ) of them, ρ = (wanted + 1) / (judged +
   * 2) over the off-diagonal pairs judged at least twice (wanted: at least
   * half accepted) — as many places as exploration has paid */
  int explore;
  /* with pairs: the pseudo-counts of the pair effects while the feature
   * weights are fitted; 0 (default): unshrunk, so the weights learn only
   * what separates accepted from rejected samples within a pair; < 0: the
   * ranking effects' pair_prior (the earlier learner) */
  double pair_within;
  /* with pairs, 1 (default): a model-ranked round gives a pair at most
   * max(⌊k/10⌋, 2 × its accepts) places among the best 8k candidates,
   * topped up from the rest of them when the quotas leave places */
  int pair_spread;
} td_rec_opts;

void td_rec_opts_default(td_rec_opts *o);

typedef struct td_recommender td_recommender;

/* Standardises f's features for ranking. o may be NULL (defaults). */
TD_NODISCARD int td_rec_new(const td_sus_features *f, const td_rec_opts *o,
                            td_recommender **out, td_err *err);
void td_rec_free(td_recommender *r); /* NULL is fine */

/* What the last td_rec_next did. */
typedef struct td_rec_info {
  int used_model;   /* 0: ranked by the prior (no or one-sided feedback) */
  int model_ranked; /* 1: this round was ranked by the fitted model */
  int64_t n_accept, n_reject;
  double weights[TD_SUS_FEATURE_COUNT]; /* on z-scores; 0 unused */
} td_rec_info;

/* The top k unjudged samples (verdict[i] < 0), best first, into idx[k]
 * (and score[k] when not NULL). verdict: [n]. Returns how many (< k only
 * when fewer remain). info may be NULL. Reentrant for distinct recommenders;
 * one recommender is not thread-safe. */
int td_rec_next(td_recommender *r, const int8_t *verdict, int k, int32_t *idx,
                float *score, td_rec_info *info);

/* Which score recommended sample i: 0 none yet, 1 prior, 2 model. */
int td_rec_source(const td_recommender *r, int64_t i);
void td_rec_set_source(td_recommender *r, int64_t i, int src);

/* The prior score of every sample (high = suspicious) into score[n]. */
void td_rec_prior(const td_recommender *r, float *score);

/* Why a sample is suspicious: up to `max` feature ids, most unusual first,
 * for the features where it is in the suspicious 10 % (ties count). pct
 * (may be NULL) receives the fraction of samples it is more suspicious
 * than, per returned feature. Returns the count. */
int td_rec_why(const td_recommender *r, int64_t i, int *feat, double *pct,
               int max);

/* ---- simulation -------------------------------------------------------- */

typedef struct td_sim_opts {
  int rounds, k;   /* 10, 50 */
  double mistakes; /* fraction of answers flipped per round (exact count) */
  uint64_t seed;
  td_rec_opts rec;
} td_sim_opts;

void td_sim_opts_default(td_sim_opts *o);

typedef struct td_sim_result {
  int rounds, k;
  int32_t *indices;          /* [rounds * k], -1 past the end (owned) */
  double *cum_precision;     /* [rounds] of everything recommended so far */
  double *round_ms;          /* [rounds] fit + rank time per round */
  double feedback_ms_median; /* over rounds >= 1 (those that may fit) */
} td_sim_result;

/* Runs the simulated user: accepts exactly the samples with noisy[i] != 0,
 * flipping round(mistakes·k) answers per round. noisy: [f->n]. */
TD_NODISCARD int td_sim_run(const td_sus_features *f, const uint8_t *noisy,
                            const td_sim_opts *o, td_sim_result *out,
                            td_err *err);
void td_sim_result_close(td_sim_result *r);

/* Cumulative precision at each round boundary of a fixed ranking by one
 * score (sign-oriented feature f) or, for f < 0, of a uniformly random
 * choice (seeded). cum[rounds] out. */
void td_sim_single(const td_sus_features *f, const uint8_t *noisy, int feat,
                   int rounds, int k, uint64_t seed, double *cum);

/* ---- out-of-distribution scores ---------------------------------------- */

/* Detectors of inputs unlike the training set, on one epoch's recorded
 * representations and logits (docs/suspects.md, "Out-of-distribution"):
 *
 *   knn          distance to the k-th nearest training representation, all
 *                representations L2-normalised first (Sun et al., 2022)
 *   mahalanobis  min over classes of (x − μ_c)ᵀ Σ⁻¹ (x − μ_c), class means
 *                by training label and one shared covariance (Lee et al.,
 *                2018), Σ + 1e-6·tr(Σ)/D·I
 *   energy       −logsumexp(z) (Liu et al., 2020)
 *   msp          1 − max softmax (Hendrycks & Gimpel, 2017)
 *
 * Every score is high for out-of-distribution. Values are only ever
 * appended (they reach files). */
typedef enum {
  TD_OOD_KNN,
  TD_OOD_MAHALANOBIS,
  TD_OOD_ENERGY,
  TD_OOD_MSP,
  TD_OOD_COUNT
} td_ood_method;

/* The detector chosen by measurement (docs/suspects.md). */
#define TD_OOD_DEFAULT TD_OOD_MAHALANOBIS

/* "knn", "mahalanobis", ...; "?" out of range. */
const char *td_ood_name(int m);
/* The method named s, or −1. */
int td_ood_parse(const char *s);

/* What td_ood_fit keeps of the training representations. */
typedef struct td_ood_model {
  int d, c, k;
  int64_t n_ref;
  float *ref;   /* [n_ref, d] L2-normalised reference rows */
  double *mu;   /* [c, d] class means (NaN row: class without samples) */
  double *chol; /* [d, d] lower Cholesky factor of the shared covariance */
  double *wmu;  /* [c, d] L⁻¹ μ_c (whitened means) */
} td_ood_model;

/* Fits the detectors on the training representations repr[n, d] with their
 * labels in [0, c); only rows with use[i] != 0 count (use may be NULL: all).
 * k: the neighbour of the knn score (1 <= k <= rows used, TD_KNN_MAX_K). */
TD_NODISCARD int td_ood_fit(const float *repr, const int32_t *labels,
                            const uint8_t *use, int64_t n, int d, int c, int k,
                            td_ood_model *out, td_err *err);
void td_ood_close(td_ood_model *m); /* zeroed is fine */

/* Scores m queries with one detector: repr [m, d] (knn, mahalanobis) and
 * logits [m, c] (energy, msp; either may be NULL when unused) into
 * score[m]. */
TD_NODISCARD int td_ood_score(const td_ood_model *mod, int method,
                              const float *repr, const float *logits, int64_t m,
                              float *score, td_err *err);

/* The detectors of one recorded epoch, fitted on the training
 * representations (of the trained classes only, in a continual run) and
 * applied to the test split and, when recorded, the out-of-distribution set
 * (`tardis train --ood`). */
typedef struct td_ood_result {
  int epoch, k;
  int64_t m_test, m_ood;     /* m_ood: 0 without an ood set */
  float *test[TD_OOD_COUNT]; /* [m_test] scores per method (owned) */
  float *ood[TD_OOD_COUNT];  /* [m_ood] (owned; NULL when m_ood is 0) */
  uint8_t *left_out;         /* [m_test] 1: a class never trained */
  int64_t n_left_out;        /* how many (0 when every class trained) */
  char ood_set[16];          /* which set ood is: run.json's train.ood
                                ("inverted", "gaussian"); "inverted" when
                                the run does not say */
} td_ood_result;

/* Runs every detector (mask: bit m = method m; 0 = all) at `epoch` (< 0:
 * the last recorded) with the knn score's k (0: 50, or the reference size
 * when smaller). Methods not in the mask leave NULL arrays. Needs the
 * epoch's train_repr, test_repr and test_logits (TD_ENOENT otherwise). */
TD_NODISCARD int td_ood_run(const td_run *run, int epoch, int k, unsigned mask,
                            td_ood_result *out, td_err *err);
void td_ood_result_close(td_ood_result *r); /* zeroed is fine */

/* Area under the ROC curve of "positive scores higher" (ties count half),
 * and the share of negatives at or above the threshold that keeps
 * `recall` of the positives (FPR at 95 % recall: recall = 0.95). */
double td_auroc(const float *pos, int64_t np, const float *neg, int64_t nn);
double td_fpr_at_recall(const float *pos, int64_t np, const float *neg,
                        int64_t nn, double recall);

/* ---- suggested labels ---------------------------------------------------- */

/* What a suspect's label should probably be, and the evidence: the class
 * the model favours over the first ⌈T/4⌉ epochs (mean softmax, before a
 * late memorisation of a wrong label hides it) and the class most of its
 * nearest training samples carry in representation space (last epoch). label =
 * argmax of their mean; confidence = that mean. */
typedef struct td_sus_suggestion {
  int32_t label;    /* suggested class (may equal the current label) */
  float confidence; /* (mean softmax + neighbour share) / 2, in [0, 1] */
  int32_t model_class;
  float model_prob; /* mean softmax of model_class, early epochs */
  int32_t knn_class;
  float knn_share; /* share of the k neighbours labelled knn_class */
} td_sus_suggestion;

/* Suggestions for the n training samples idx[n] (knn_k neighbours; 0:
 * 10). Reads the early epochs' train_logits and the last train_repr. */
TD_NODISCARD int td_sus_suggest(const td_run *run, const int32_t *idx, int n,
                                int knn_k, td_sus_suggestion *out, td_err *err);

#endif
