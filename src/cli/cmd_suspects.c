/* tardis suspects RUN: the training samples most worth a look, with why;
 * --simulate runs the feedback loop against a simulated user;
 * --abnormal-test scores test trajectories against the training clusters. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "tardis/parallel.h"
#include "tardis/run.h"
#include "tardis/suspects.h"
#include "tardis/vis.h"

#include "cli/suspects_session.h"

/* 1 to run, or 0 with *status the exit status (help or bad usage). */
static int parse(int argc, char **argv, args *a, int *status) {
  memset(a, 0, sizeof *a);
  a->k = 50;
  a->rounds = 10;
  a->seed = 1;
  a->ood_epoch = -1;
  td_opt opts[] = {
      TD_OPT_INT("k", &a->k, 1, 100000, "K", "samples per round (default 50)"),
      TD_OPT_FLAG("json", &a->json, "machine-readable output"),
      TD_OPT_STRING("method", &a->method, "M",
                    "projection for trajectories (default: the best\n"
                    "covered of RUN/vis/; 'none': no trajectories)"),
      TD_OPT_FLAG("simulate", &a->simulate,
                  "a simulated user accepts exactly the samples\n"
                  "whose label differs from train_truth.npy"),
      TD_OPT_INT("rounds", &a->rounds, 1, 10000, "R",
                 "simulated rounds (default 10)"),
      TD_OPT_DOUBLE("mistakes", &a->mistakes, 0, 1, 0, "F",
                    "share of simulated answers flipped (default 0)"),
      TD_OPT_SEED("seed", &a->seed, "seed of the flipped answers (default 1)"),
      TD_OPT_FLAG("abnormal-test", &a->abnormal,
                  "count test trajectories outside the training\n"
                  "clusters (needs test embeddings) and scores\n"
                  "out-of-distribution detectors (AUROC, FPR at\n"
                  "95% recall)"),
      TD_OPT_INT("ood-epoch", &a->ood_epoch, 0, TD_ARG_INF, "E",
                 "epoch of the detectors (default: the last)"),
      TD_OPT_INT("ood-k", &a->ood_k, 1, 1024, "K",
                 "neighbour of the knn detector (default 50)"),
      TD_OPT_STRING("session", &a->session, "S",
                    "feedback session (id, or a name: created when\n"
                    "new; same store as the web UI, RUN/tardis.db)"),
      TD_OPT_STRING("accept", &a->accept, "I,J,..",
                    "with --session: accept these samples"),
      TD_OPT_STRING("reject", &a->reject, "I,J,..",
                    "with --session: reject these samples"),
      TD_OPT_FLAG("no-pairs", &a->no_pairs,
                  "a plain linear model on the features instead of\n"
                  "the default class-pair learner (\"labelled a,\n"
                  "behaves like b\", with exploration)"),
      TD_OPT_FLAG("pairs", &a->pairs,
                  "the class-pair learner (the default; kept for\n"
                  "scripts)"),
      TD_OPT_FLAG("next", &a->next,
                  "with --session: the next K recommendations"),
      TD_OPT_STRING("export", &a->export_dir, "DIR",
                    "with --session: write DIR/train_labels_fixed.npy\n"
                    "(accepted samples get their suggested label),\n"
                    "DIR/accepted.npy and DIR/kept.npy (the others,\n"
                    "for tardis train --from RUN --select)"),
      TD_OPT_INT("threads", &a->threads, 0, TD_ARG_INF, "T",
                 "default: all CPUs"),
      TD_OPT_END};
  const td_arg_pos pos[] = {{"RUN", &a->run}, {0}};
  td_args_cmd cmd = {
      .name = "suspects",
      .usage =
          "suspects RUN [--k 50] [--json] [--method M]\n"
          "suspects RUN --session S [--accept I,J] [--reject I,J] [--next]\n"
          "                           [--export DIR] [--k 50] [--json]\n"
          "suspects RUN --simulate [--rounds 10] [--k 50]\n"
          "                           [--mistakes 0.1] [--seed S] [--json]\n"
          "suspects RUN --abnormal-test [--ood-epoch E] [--ood-k K] [--json]",
      .about = "Ranks the training samples most worth a look (likely "
               "mislabelled)\nby training dynamics (area under the margin, "
               "loss, confidence,\nforgetting) and, when the run is "
               "projected, trajectory rarity, each with a suggested label.\n"
               "Feedback sessions are shared with the web UI. Features are "
               "cached\nin RUN/vis/suspects-<method>.{npy,nbr.npy,json}.",
      .opts = opts,
      .pos = pos};
  return td_args_parse(&cmd, argc, argv, status);
}

/* ---- the ranking --------------------------------------------------------- */

static json_t *suggestion_json(const td_sus_suggestion *g) {
  return json_pack("{s:i,s:f,s:i,s:f,s:i,s:f}", "label", g->label, "confidence",
                   (double)g->confidence, "model_class", g->model_class,
                   "model_prob", (double)g->model_prob, "knn_class",
                   g->knn_class, "knn_share", (double)g->knn_share);
}

static const char *class_name(const td_run_meta *m, int c) {
  return c >= 0 && c < m->n_classes ? m->classes[c] : "?";
}

/* Prints (or adds to `extra` as JSON) the top k unjudged samples by the
 * recommender, with why and a suggested label. verdict may be NULL (no
 * feedback). */
int td__suspects_list(const args *a, const td_run *run,
                      const td_sus_features *f, const char *note,
                      const int8_t *verdict, json_t *extra) {
  td_err err;
  td_recommender *rec;
  td_rec_opts ro;
  td_rec_opts_default(&ro);
  ro.pairs = !a->no_pairs;
  if (td_rec_new(f, &ro, &rec, &err)) {
    fprintf(stderr, "tardis suspects: %s\n", err.msg);
    json_decref(extra);
    return 1;
  }
  int8_t *none = verdict ? NULL : malloc((size_t)f->n);
  int32_t *idx = malloc(sizeof *idx * (size_t)a->k);
  float *sc = malloc(sizeof *sc * (size_t)a->k);
  td_sus_suggestion *sg = malloc(sizeof *sg * (size_t)a->k);
  if ((!verdict && !none) || !idx || !sc || !sg) {
    fprintf(stderr, "tardis suspects: out of memory\n");
    free(none);
    free(idx);
    free(sc);
    free(sg);
    td_rec_free(rec);
    json_decref(extra);
    return 1;
  }
  if (none)
    memset(none, -1, (size_t)f->n);
  td_rec_info info;
  int n = td_rec_next(rec, verdict ? verdict : none, a->k, idx, sc, &info);
  int have_sg = td_sus_suggest(run, idx, n, 0, sg, &err) == TD_OK;
  if (!have_sg && !a->json)
    printf("note: no suggested labels: %s\n", err.msg);
  const int32_t *lab = td_run_train_labels(run);
  const td_run_meta *m = td_run_get_meta(run);
  const int32_t *sub = td_run_subset(run); /* rows -> training indices */
  json_t *items = json_array();
  if (!a->json) {
    if (note && note[0])
      printf("note: %s\n", note);
    printf("%d most suspicious of %lld %straining samples (trajectory: %s; "
           "ranked by the %s)\n\n",
           n, (long long)f->n, sub ? "recorded " : "",
           f->has_trajectory ? f->method : "none",
           info.model_ranked ? "model fitted to the feedback" : "prior");
    printf("%6s %8s %7s  %-12s %-18s %s\n", "rank", "index", "score", "label",
           "suggested", "why");
  }
  for (int j = 0; j < n; j++) {
    int feat[TD_SUS_FEATURE_COUNT];
    double pct[TD_SUS_FEATURE_COUNT];
    int nw = td_rec_why(rec, idx[j], feat, pct, TD_SUS_FEATURE_COUNT);
    const float *x = f->x + (int64_t)idx[j] * TD_SUS_FEATURE_COUNT;
    if (a->json) {
      json_t *why = json_array();
      for (int w = 0; w < nw; w++)
        json_array_append_new(why, json_pack("{s:s,s:f,s:f}", "feature",
                                             td_sus_feature_name(feat[w]),
                                             "value", (double)x[feat[w]],
                                             "percentile", pct[w]));
      json_t *it = json_pack("{s:i,s:f,s:i,s:o}", "index", idx[j], "score",
                             (double)sc[j], "label", lab[idx[j]], "why", why);
      if (sub) /* a subset run: index is the row, sample its training index */
        json_object_set_new(it, "sample", json_integer(sub[idx[j]]));
      if (have_sg)
        json_object_set_new(it, "suggested", suggestion_json(&sg[j]));
      json_array_append_new(items, it);
      continue;
    }
    char sug[64] = "-";
    if (have_sg) /* fits: 11 bytes of name, a number, parentheses */
      snprintf(sug, sizeof sug, "%.11s (%.2f)", class_name(m, sg[j].label),
               (double)sg[j].confidence);
    printf("%6d %8d %7.2f  %-12.12s %-18s", j + 1, sub ? sub[idx[j]] : idx[j],
           (double)sc[j], class_name(m, lab[idx[j]]), sug);
    for (int w = 0; w < nw && w < 3; w++)
      printf("%s%s %.3g (top %.2g%%)", w ? ", " : " ",
             td_sus_feature_name(feat[w]), (double)x[feat[w]],
             100 * (1 - pct[w]));
    printf("\n");
  }
  if (!a->json && have_sg && n > 0)
    printf("\nsuggested: the class the model favours in the first quarter "
           "of the epochs\n(mean softmax) and the labels of the 10 nearest "
           "training samples share,\nwith the mean of the two (e.g. #%d: "
           "model %s %.2f, neighbours %s %.2f)\n",
           sub ? sub[idx[0]] : idx[0], class_name(m, sg[0].model_class),
           (double)sg[0].model_prob, class_name(m, sg[0].knn_class),
           (double)sg[0].knn_share);
  if (a->json) {
    json_t *o = extra ? extra : json_object();
    json_object_set_new(o, "method", json_string(f->method));
    json_object_set_new(o, "trajectory", json_boolean(f->has_trajectory));
    json_object_set_new(o, "note", json_string(note ? note : ""));
    json_object_set_new(o, "ranked_by",
                        json_string(info.model_ranked ? "model" : "prior"));
    json_object_set_new(o, "suspects", items);
    json_dumpf(o, stdout, JSON_INDENT(1));
    printf("\n");
    json_decref(o);
  } else {
    json_decref(items);
    json_decref(extra);
  }
  free(none);
  free(idx);
  free(sc);
  free(sg);
  td_rec_free(rec);
  return 0;
}

/* ---- simulation ---------------------------------------------------------- */

static json_t *cum_json(const double *c, int n) {
  json_t *a = json_array();
  for (int i = 0; i < n; i++)
    json_array_append_new(a, json_real(c[i]));
  return a;
}

static int simulate(const args *a, const td_run *run,
                    const td_sus_features *f) {
  td_err err;
  td_array truth;
  int rc = td_run_load(run, -1, "train_truth", &truth, &err);
  if (rc == TD_ENOENT) {
    fprintf(stderr,
            "tardis suspects: --simulate needs the clean labels "
            "(%s/train_truth.npy), and this run has none; the simulated user "
            "accepts exactly the samples whose label differs from them\n",
            td_run_dir(run));
    return 1;
  }
  if (rc) {
    fprintf(stderr, "tardis suspects: %s\n", err.msg);
    return 1;
  }
  const int32_t *lab = td_run_train_labels(run), *tr = truth.data;
  uint8_t *noisy = malloc((size_t)f->n);
  double *cum = malloc(sizeof *cum * (size_t)a->rounds);
  if (!noisy || !cum) {
    free(noisy);
    free(cum);
    td_array_close(&truth);
    fprintf(stderr, "tardis suspects: out of memory\n");
    return 1;
  }
  int64_t nn = 0;
  for (int64_t i = 0; i < f->n; i++)
    nn += noisy[i] = lab[i] != tr[i];
  td_array_close(&truth);

  td_sim_opts o;
  td_sim_opts_default(&o);
  o.rounds = a->rounds;
  o.k = a->k;
  o.mistakes = a->mistakes;
  o.seed = a->seed;
  o.rec.pairs = !a->no_pairs;
  td_sim_result r;
  if (td_sim_run(f, noisy, &o, &r, &err)) {
    fprintf(stderr, "tardis suspects: %s\n", err.msg);
    free(noisy);
    free(cum);
    return 1;
  }
  /* Baselines on the same run and K. */
  td_sim_opts dd = o;
  dd.rec.features = dd.rec.prior =
      (1u << TD_SUS_RARITY_POS) | (1u << TD_SUS_RARITY_VEL) |
      (1u << TD_SUS_RARITY_ACC) | (1u << TD_SUS_UNCERTAINTY);
  dd.rec.adaptive = 0;
  dd.rec.blend = -1;
  td_sim_result rd;
  int have_dd = td_sim_run(f, noisy, &dd, &rd, NULL) == TD_OK;
  static const int singles[] = {TD_SUS_AUM, TD_SUS_LOSS, TD_SUS_CONFIDENCE};
  json_t *base = json_object();
  td_sim_single(f, noisy, -1, a->rounds, a->k, a->seed, cum);
  json_object_set_new(base, "random", cum_json(cum, a->rounds));
  if (have_dd)
    json_object_set_new(base, "deepdebugger",
                        cum_json(rd.cum_precision, a->rounds));
  for (int s = 0; s < 3; s++) {
    td_sim_single(f, noisy, singles[s], a->rounds, a->k, a->seed, cum);
    json_object_set_new(base, td_sus_feature_name(singles[s]),
                        cum_json(cum, a->rounds));
  }
  if (a->json) {
    json_t *rounds = json_array();
    for (int t = 0; t < r.rounds; t++) {
      json_t *ix = json_array();
      for (int j = 0; j < r.k; j++)
        if (r.indices[(int64_t)t * r.k + j] >= 0)
          json_array_append_new(ix,
                                json_integer(r.indices[(int64_t)t * r.k + j]));
      json_array_append_new(rounds,
                            json_pack("{s:i,s:o,s:f,s:f}", "round", t,
                                      "indices", ix, "cumulative_precision",
                                      r.cum_precision[t], "ms", r.round_ms[t]));
    }
    json_t *out = json_pack(
        "{s:i,s:i,s:f,s:I,s:I,s:s,s:b,s:o,s:f,s:o}", "rounds_n", r.rounds, "k",
        r.k, "mistakes", a->mistakes, "n", (json_int_t)f->n, "noisy",
        (json_int_t)nn, "method", f->method, "trajectory", f->has_trajectory,
        "rounds", rounds, "feedback_ms_median", r.feedback_ms_median,
        "baselines", base);
    json_dumpf(out, stdout, JSON_INDENT(1));
    printf("\n");
    json_decref(out);
  } else {
    printf("simulated user: %lld noisy of %lld, %d rounds of %d, %.0f%% "
           "mistaken answers\n\n",
           (long long)nn, (long long)f->n, r.rounds, r.k, 100 * a->mistakes);
    printf("%5s %10s %10s %10s %10s %10s %10s\n", "round", "tardis", "random",
           "DeepDebug", "aum", "loss", "confidence");
    for (int t = 0; t < r.rounds; t++) {
      printf("%5d %10.3f", t + 1, r.cum_precision[t]);
      const char *names[] = {"random", "deepdebugger", "aum", "loss",
                             "confidence"};
      for (int b = 0; b < 5; b++) {
        json_t *v = json_object_get(base, names[b]);
        if (v)
          printf(" %10.3f", json_real_value(json_array_get(v, (size_t)t)));
        else
          printf(" %10s", "-");
      }
      printf("\n");
    }
    printf("\none feedback round (fit + rank): median %.3f ms\n",
           r.feedback_ms_median);
    json_decref(base);
  }
  if (have_dd)
    td_sim_result_close(&rd);
  td_sim_result_close(&r);
  free(noisy);
  free(cum);
  return 0;
}

/* ---- abnormal test trajectories ------------------------------------------ */

/* Counts, for one split's trajectories, how many are abnormal in each
 * family and in any. Returns 0, or 1 after printing an error. */
static int count_abnormal(const td_run *run, const td_sus_features *f,
                          const char *split, int64_t m,
                          int64_t cnt[TD_SUS_FAM_COUNT], int64_t *n_any) {
  td_err err;
  float *fam[TD_SUS_FAM_COUNT];
  if (td_sus_trajectories(run, f, split, m, fam, &err)) {
    fprintf(stderr,
            "tardis suspects: %s (the %s split must be projected over the "
            "same epochs)\n",
            err.msg, split);
    return 1;
  }
  uint8_t *ab = malloc((size_t)m), *any = calloc((size_t)m, 1);
  *n_any = 0;
  for (int k = 0; k < TD_SUS_FAM_COUNT && ab && any; k++) {
    cnt[k] = td_sus_abnormal(&f->fam[k], f->n, fam[k], m, ab);
    for (int64_t i = 0; i < m; i++)
      any[i] |= ab[i];
  }
  for (int64_t i = 0; any && i < m; i++)
    *n_any += any[i];
  for (int k = 0; k < TD_SUS_FAM_COUNT; k++)
    free(fam[k]);
  int ok = ab && any;
  free(ab);
  free(any);
  if (!ok)
    fprintf(stderr, "tardis suspects: out of memory\n");
  return ok ? 0 : 1;
}

/* The out-of-distribution set recorded by `tardis train --ood`, when it was
 * projected over the trajectory window: its size, or 0. */
static int64_t ood_size(const td_run *run, const td_sus_features *f) {
  td_array a;
  if (td_vis_load_embedding(td_run_dir(run), f->method, f->traj_epochs[0],
                            "ood", -1, &a, NULL) != TD_OK)
    return 0;
  int64_t n = a.shape[0];
  td_array_close(&a);
  return n;
}

static const char *const fam_names[] = {"position", "velocity", "acceleration"};

static json_t *counts_json(int64_t m, const int64_t cnt[TD_SUS_FAM_COUNT],
                           int64_t n_any) {
  return json_pack("{s:I,s:I,s:I,s:I,s:I}", "n", (json_int_t)m, "position",
                   (json_int_t)cnt[0], "velocity", (json_int_t)cnt[1],
                   "acceleration", (json_int_t)cnt[2], "any",
                   (json_int_t)n_any);
}

static void print_counts(const char *title, int64_t m,
                         const int64_t cnt[TD_SUS_FAM_COUNT], int64_t n_any) {
  printf("%s\n", title);
  for (int k = 0; k < TD_SUS_FAM_COUNT; k++)
    printf("  %-13s %7lld (%.2f%%)\n", fam_names[k], (long long)cnt[k],
           100.0 * (double)cnt[k] / (double)m);
  printf("  %-13s %7lld (%.2f%%)\n", "any", (long long)n_any,
         100.0 * (double)n_any / (double)m);
}

/* ---- out-of-distribution detectors --------------------------------------- */

/* One ood_shift: positives pos[np] against the in-distribution negatives. */
typedef struct ood_shift {
  const char *name, *what;
  float *pos[TD_OOD_COUNT], *neg[TD_OOD_COUNT];
  int64_t np, nn;
} ood_shift;

/* Splits test scores into in-distribution (not left out) rows and the rows
 * of classes never trained; *out gets copies (caller frees). */
static int split_scores(const td_ood_result *r, const float *sc, int left,
                        float **out, int64_t *n) {
  *n = 0;
  *out = malloc(sizeof **out * (size_t)(r->m_test ? r->m_test : 1));
  if (!*out)
    return -1;
  for (int64_t i = 0; i < r->m_test; i++)
    if (r->left_out[i] == left)
      (*out)[(*n)++] = sc[i];
  return 0;
}

/* The shifts the run lets us measure: its out-of-distribution set
 * (inverted images) and the test samples of classes never trained. */
static int make_shifts(const td_ood_result *r, ood_shift sh[2], int *ns) {
  *ns = 0;
  memset(sh, 0, 2 * sizeof *sh);
  int fail = 0;
  if (r->m_ood > 0) {
    sh[*ns].name = r->ood_set;
    sh[*ns].what = "the recorded out-of-distribution set (tardis train --ood)";
    for (int k = 0; k < TD_OOD_COUNT; k++) {
      sh[*ns].pos[k] = malloc(sizeof(float) * (size_t)r->m_ood);
      fail |= !sh[*ns].pos[k] ||
              split_scores(r, r->test[k], 0, &sh[*ns].neg[k], &sh[*ns].nn);
      if (sh[*ns].pos[k])
        memcpy(sh[*ns].pos[k], r->ood[k], sizeof(float) * (size_t)r->m_ood);
    }
    sh[(*ns)++].np = r->m_ood;
  }
  if (r->n_left_out > 0) {
    sh[*ns].name = "left_out_class";
    sh[*ns].what = "test samples of the classes no task trained";
    for (int k = 0; k < TD_OOD_COUNT; k++)
      fail |= split_scores(r, r->test[k], 1, &sh[*ns].pos[k], &sh[*ns].np) ||
              split_scores(r, r->test[k], 0, &sh[*ns].neg[k], &sh[*ns].nn);
    (*ns)++;
  }
  return fail ? -1 : 0;
}

static void free_shifts(ood_shift *sh, int ns) {
  for (int s = 0; s < ns; s++)
    for (int k = 0; k < TD_OOD_COUNT; k++) {
      free(sh[s].pos[k]);
      free(sh[s].neg[k]);
    }
}

static json_t *scores_json(const float *v, int64_t n) {
  json_t *a = json_array();
  for (int64_t i = 0; i < n; i++)
    json_array_append_new(a, json_real((double)v[i]));
  return a;
}

/* Runs every detector and reports AUROC / FPR at 95 % recall per ood_shift;
 * JSON adds the default detector's score of every test and ood sample.
 * Returns the detectors' JSON (NULL after printing an error). */
static json_t *ood_report(const args *a, const td_run *run) {
  td_err err;
  td_ood_result r;
  if (td_ood_run(run, a->ood_epoch, a->ood_k, 0, &r, &err)) {
    fprintf(stderr, "tardis suspects: %s\n", err.msg);
    return NULL;
  }
  ood_shift sh[2];
  int ns;
  json_t *o = NULL;
  if (make_shifts(&r, sh, &ns)) {
    fprintf(stderr, "tardis suspects: out of memory\n");
    goto done;
  }
  json_t *shifts = json_object();
  if (!a->json)
    printf("\nout-of-distribution detectors, epoch %d (knn: k = %d; AUROC, "
           "and the false-positive rate on the test set at 95%% recall):\n",
           r.epoch, r.k);
  if (!a->json && ns == 0)
    printf("  (no ood_shift to measure: record one with `tardis train --ood "
           "inverted`, or leave a class out with --tasks)\n");
  for (int s = 0; s < ns; s++) {
    json_t *js = json_pack("{s:s,s:I,s:I}", "what", sh[s].what, "n_ood",
                           (json_int_t)sh[s].np, "n_in", (json_int_t)sh[s].nn);
    if (!a->json)
      printf("  %s (%lld against %lld test samples):\n", sh[s].name,
             (long long)sh[s].np, (long long)sh[s].nn);
    for (int k = 0; k < TD_OOD_COUNT; k++) {
      double au = td_auroc(sh[s].pos[k], sh[s].np, sh[s].neg[k], sh[s].nn);
      double fp = td_fpr_at_recall(sh[s].pos[k], sh[s].np, sh[s].neg[k],
                                   sh[s].nn, 0.95);
      json_object_set_new(js, td_ood_name(k),
                          json_pack("{s:f,s:f}", "auroc", au, "fpr95", fp));
      if (!a->json)
        printf("    %-12s AUROC %.4f  FPR@95 %6.2f%%%s\n", td_ood_name(k), au,
               100 * fp, k == TD_OOD_DEFAULT ? "  (default)" : "");
    }
    json_object_set_new(shifts, sh[s].name, js);
  }
  o = json_pack("{s:i,s:i,s:s,s:o}", "epoch", r.epoch, "k", r.k, "default",
                td_ood_name(TD_OOD_DEFAULT), "shifts", shifts);
  if (a->json) {
    json_t *sc = json_pack("{s:o}", "test",
                           scores_json(r.test[TD_OOD_DEFAULT], r.m_test));
    if (r.m_ood > 0)
      json_object_set_new(sc, "ood",
                          scores_json(r.ood[TD_OOD_DEFAULT], r.m_ood));
    json_object_set_new(o, "scores", sc);
  }
done:
  free_shifts(sh, ns);
  td_ood_result_close(&r);
  return o;
}

/* Test trajectories flagged abnormal are false alarms (they come from the
 * training distribution); flagged out-of-distribution ones are detections.
 * Then the detectors on the representations and logits. */
static int abnormal_test(const args *a, const td_run *run,
                         const td_sus_features *f, const char *note) {
  int64_t m = td_run_get_meta(run)->n_test;
  if (m <= 0) {
    fprintf(stderr, "tardis suspects: the run has no test split\n");
    return 1;
  }
  int ne = td_run_n_epochs(run);
  int ep = a->ood_epoch >= 0 ? a->ood_epoch
           : ne              ? td_run_epoch_number(run, ne - 1)
                             : 0;
  int have_repr = ne > 0 && td_run_has(run, ep, "test_repr");
  if (!f->has_trajectory && !have_repr) {
    fprintf(stderr,
            "tardis suspects: --abnormal-test needs trajectories (%s) or the "
            "test split's representations at epoch %d\n",
            note && note[0] ? note : "no projection", ep);
    return 1;
  }
  json_t *o = json_object();
  if (!f->has_trajectory) {
    if (!a->json)
      printf("no trajectories (%s): trajectory rarity left out\n",
             note && note[0] ? note : "no projection");
  } else {
    int64_t cnt[TD_SUS_FAM_COUNT], n_any, ocnt[TD_SUS_FAM_COUNT], o_any = 0;
    int64_t mo = ood_size(run, f);
    if (count_abnormal(run, f, "test", m, cnt, &n_any) ||
        (mo > 0 && count_abnormal(run, f, "ood", mo, ocnt, &o_any))) {
      json_decref(o);
      return 1;
    }
    json_object_set_new(o, "method", json_string(f->method));
    json_object_set_new(o, "test", counts_json(m, cnt, n_any));
    if (mo > 0)
      json_object_set_new(o, "ood", counts_json(mo, ocnt, o_any));
    if (!a->json) {
      char title[256]; /* fits: < 100 bytes of text, a method of <= 32 */
      snprintf(title, sizeof title,
               "abnormal test trajectories — false alarms (%lld test "
               "samples, %s projection, epochs %d..%d):",
               (long long)m, f->method, f->traj_epochs[0],
               f->traj_epochs[f->n_traj - 1]);
      print_counts(title, m, cnt, n_any);
      if (mo > 0) {
        snprintf(title, sizeof title,
                 "abnormal out-of-distribution trajectories — detections "
                 "(%lld samples):",
                 (long long)mo);
        print_counts(title, mo, ocnt, o_any);
      }
    }
  }
  if (!have_repr) {
    if (!a->json)
      printf("\n(no test representations at epoch %d: out-of-distribution "
             "detectors left out)\n",
             ep);
    goto out;
  }
  json_t *det = ood_report(a, run);
  if (!det) {
    json_decref(o);
    return 1;
  }
  json_object_set_new(o, "detectors", det);
out:
  if (a->json) {
    json_dumpf(o, stdout, JSON_INDENT(1));
    printf("\n");
  }
  json_decref(o);
  return 0;
}

int td_cmd_suspects(int argc, char **argv) {
  args a;
  int rc;
  if (!parse(argc, argv, &a, &rc))
    return rc;
  if (a.pairs && a.no_pairs) {
    fprintf(stderr, "tardis suspects: --pairs and --no-pairs exclude each "
                    "other\n");
    return 2;
  }
  if (a.threads)
    td_set_threads(a.threads);
  td_err err;
  td_run *run;
  if (td_run_open(a.run, &run, &err)) {
    fprintf(stderr, "tardis suspects: %s\n", err.msg);
    return 1;
  }
  td_sus_opts so;
  td_sus_opts_default(&so);
  so.method = a.method;
  td_sus_features f;
  char note[256];
  int cached;
  if (td_sus_features_get(run, &so, &f, &cached, note, &err)) {
    fprintf(stderr, "tardis suspects: %s\n", err.msg);
    td_run_close(run);
    return 1;
  }
  if (note[0] && (a.simulate || a.abnormal) && !a.json)
    printf("note: %s\n", note);
  if (a.simulate)
    rc = simulate(&a, run, &f);
  else if (a.abnormal)
    rc = abnormal_test(&a, run, &f, note);
  else if (a.session)
    rc = td__suspects_session(&a, run, &f, note);
  else if (a.accept || a.reject || a.next || a.export_dir) {
    fprintf(stderr, "tardis suspects: --accept, --reject, --next and "
                    "--export need --session\n");
    rc = 2;
  } else
    rc = td__suspects_list(&a, run, &f, note, NULL, NULL);
  td_sus_features_close(&f);
  td_run_close(run);
  return rc;
}
