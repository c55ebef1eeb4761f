/* The trainer's engine options on a small synthetic dataset directory:
 * --hidden widths, --data DIR and its refusals, --resume (bit-identical to
 * an uninterrupted run, a killed run, the finished marker), --from with
 * --select (a child run that tardis info and project read), and --labels and
 * --exclude (retraining on corrected labels, without chosen samples). */
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <string.h>
#include <sys/wait.h>

#include "cli_util.h"
#include "harness.h"
#include "tardis/array.h"
#include "tardis/fsutil.h"
#include "tardis/nn.h"
#include "tardis/rng.h"
#include "tardis/run.h"
#include "tardis/train.h"
#include "test_util.h"
#include "train/augment.h"

static char bin[4096], dir[4096], data[4200];

enum { N = 320, M = 64, CH = 2, H = 6, W = 5, C = 3 };

static int save(const char *d, const char *name, td_dtype t, int ndim,
                const int64_t *shape, const void *v) {
  char path[8400];
  snprintf(path, sizeof path, "%s/%s", d, name);
  td_err err;
  return td_npy_save_raw(path, t, ndim, shape, v, &err);
}

static void write_text(const char *d, const char *name, const char *text) {
  char path[8400];
  snprintf(path, sizeof path, "%s/%s", d, name);
  td_err err;
  CHECK_OK(td_write_file_atomic(path, text, strlen(text), &err), &err);
}

/* A learnable dataset: class c brightens channel c % CH, rows by class. */
static void make_dataset(const char *d, int64_t n_train, int64_t n_test) {
  td_err err;
  CHECK_OK(td_mkdirs(d, &err), &err);
  td_rng rng;
  td_rng_seed(&rng, 7);
  for (int split = 0; split < 2; split++) {
    int64_t n = split ? n_test : n_train;
    float *x = malloc((size_t)n * CH * H * W * sizeof *x);
    int64_t *y = malloc((size_t)n * sizeof *y);
    for (int64_t i = 0; i < n; i++) {
      y[i] = (int64_t)td_rng_below(&rng, C);
      for (int k = 0; k < CH * H * W; k++) {
        int row = (k / W) % H, ch = k / (H * W);
        float base = ch == y[i] % CH && row % C == y[i] ? 0.8f : 0.2f;
        x[i * CH * H * W + k] = base + 0.2f * td_rng_uniform(&rng);
      }
    }
    int64_t xs[4] = {n, CH, H, W};
    CHECK_INT(save(d, split ? "test_inputs.npy" : "train_inputs.npy", TD_F32, 4,
                   xs, x),
              ==, 0);
    CHECK_INT(save(d, split ? "test_labels.npy" : "train_labels.npy", TD_I64, 1,
                   &n, y),
              ==, 0);
    free(x);
    free(y);
  }
  write_text(d, "classes.json", "[\"zero\", \"one\", \"two\"]");
}

static void opts_for(td_train_opts *o, const char *out, int epochs) {
  td_train_opts_default(o);
  o->data = data;
  o->out = out;
  o->epochs = epochs;
  o->batch = 32;
  o->hidden = "24,12";
  o->threads = 1;
  o->lr = 0.05;
}

/* Every file of epoch ep's checkpoint, trainer state and recorded arrays. */
static int same_epoch(const char *r1, const char *r2, int ep,
                      int n_files_want) {
  static const char *const files[] = {
      "train_repr.npy",     "train_logits.npy",    "test_repr.npy",
      "trainer/state.json", "trainer/optim_0.npy", "trainer/optim_1.npy"};
  char a[8400], b[8400];
  int ok = 1;
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    snprintf(a, sizeof a, "%s/epochs/%04d/%s", r1, ep, files[i]);
    snprintf(b, sizeof b, "%s/epochs/%04d/%s", r2, ep, files[i]);
    if (td_path_exists(a) || td_path_exists(b))
      ok &= td_t_same_bytes(a, b);
  }
  /* every file of the checkpoint: weights, biases, running statistics */
  snprintf(a, sizeof a, "%s/epochs/%04d/model", r1, ep);
  DIR *d = opendir(a);
  int n_files = 0;
  for (struct dirent *e; d && (e = readdir(d));) {
    if (e->d_name[0] == '.')
      continue;
    snprintf(a, sizeof a, "%s/epochs/%04d/model/%s", r1, ep, e->d_name);
    snprintf(b, sizeof b, "%s/epochs/%04d/model/%s", r2, ep, e->d_name);
    ok &= td_t_same_bytes(a, b);
    n_files++;
  }
  if (d)
    closedir(d);
  if (n_files != n_files_want) {
    fprintf(stderr, "  %s: %d checkpoint files, expected %d\n", r1, n_files,
            n_files_want);
    ok = 0;
  }
  return ok;
}

static json_t *run_json(const char *run) {
  char path[8400];
  snprintf(path, sizeof path, "%s/run.json", run);
  return json_load_file(path, 0, NULL);
}

static void test_hidden_widths(void) {
  char run[4300];
  snprintf(run, sizeof run, "%s/hidden", dir);
  td_train_opts o;
  opts_for(&o, run, 2);
  o.hidden = "20,16,8";
  td_train_result r;
  td_err err = {0};
  CHECK_OK(td_train(&o, &r, &err), &err);
  CHECK(r.final_train_acc > 0.5);
  json_t *j = run_json(run);
  CHECK(j != NULL);
  json_t *m = json_object_get(j, "model");
  CHECK_INT(json_integer_value(json_object_get(j, "repr_dim")), ==, 8);
  CHECK_INT(json_array_size(json_object_get(m, "layers")), ==, 4);
  CHECK_INT(json_integer_value(json_object_get(m, "repr_layer")), ==, 2);
  CHECK_INT(
      json_integer_value(json_array_get(json_object_get(j, "input_shape"), 0)),
      ==, CH);
  CHECK(!strcmp(
      json_string_value(json_object_get(json_object_get(j, "train"), "hidden")),
      "20,16,8"));
  json_decref(j);
  td_run *rr;
  CHECK_OK(td_run_open(run, &rr, &err), &err);
  CHECK_OK(td_run_validate(rr, NULL, NULL, &err), &err);
  td_run_close(rr);
  o.hidden = "20,,8";
  CHECK_INT(td_train(&o, &r, &err), ==, TD_EARG);
  CHECK_STR_CONTAINS(err.msg, "--hidden");
}

/* A dataset directory with one thing wrong; the error must name file. */
static void expect_refused(const char *what, const char *file,
                           const char *needle) {
  char run[4300];
  snprintf(run, sizeof run, "%s/refused", dir);
  td_train_opts o;
  opts_for(&o, run, 1);
  o.data = what;
  td_train_result r;
  td_err err = {0};
  CHECK(td_train(&o, &r, &err) != TD_OK);
  CHECK_STR_CONTAINS(err.msg, file);
  CHECK_STR_CONTAINS(err.msg, needle);
}

static void bad_copy(char *d, size_t len, const char *name) {
  snprintf(d, len, "%s/bad_%s", dir, name);
  make_dataset(d, 40, 10);
}

static void test_data_dir_refusals(void) {
  char d[4400];
  int64_t n = 40, n2[2] = {40, 7}, bad_n = 39;
  float x[40 * 7];
  int32_t y[40];
  memset(x, 0, sizeof x);
  memset(y, 0, sizeof y);
  bad_copy(d, sizeof d, "count");
  CHECK_INT(save(d, "train_labels.npy", TD_I32, 1, &bad_n, y), ==, 0);
  expect_refused(d, "train_labels.npy", "39 labels, but");
  bad_copy(d, sizeof d, "range");
  y[3] = 3;
  CHECK_INT(save(d, "train_labels.npy", TD_I32, 1, &n, y), ==, 0);
  expect_refused(d, "train_labels.npy", "label 3 of sample 3 is out of range");
  y[3] = 0;
  bad_copy(d, sizeof d, "nan");
  x[9] = (float)NAN;
  CHECK_INT(save(d, "train_inputs.npy", TD_F32, 2, n2, x), ==, 0);
  expect_refused(d, "train_inputs.npy", "NaN or infinite");
  x[9] = 0;
  bad_copy(d, sizeof d, "dtype");
  CHECK_INT(save(d, "train_inputs.npy", TD_I32, 1, &n, y), ==, 0);
  expect_refused(d, "train_inputs.npy", "uint8 or float32");
  bad_copy(d, sizeof d, "ldtype");
  CHECK_INT(save(d, "train_labels.npy", TD_F32, 1, &n, x), ==, 0);
  expect_refused(d, "train_labels.npy", "int32, int64 or uint8");
  bad_copy(d, sizeof d, "testshape");
  int64_t ts[2] = {10, 7};
  CHECK_INT(save(d, "test_inputs.npy", TD_F32, 2, ts, x), ==, 0);
  expect_refused(d, "test_inputs.npy", "training samples are");
  bad_copy(d, sizeof d, "classes");
  write_text(d, "classes.json", "[\"only\"]");
  expect_refused(d, "classes.json", "2 to");
  bad_copy(d, sizeof d, "nolabels");
  char p[8400];
  snprintf(p, sizeof p, "%s/test_labels.npy", d);
  CHECK_INT(remove(p), ==, 0);
  expect_refused(d, "test_labels.npy", "not found");
  /* no test set at all is fine: a run without one */
  snprintf(p, sizeof p, "%s/test_inputs.npy", d);
  CHECK_INT(remove(p), ==, 0);
  char run[4300];
  snprintf(run, sizeof run, "%s/notest", dir);
  td_train_opts o;
  opts_for(&o, run, 1);
  o.data = d;
  td_train_result r;
  td_err err = {0};
  CHECK_OK(td_train(&o, &r, &err), &err);
  td_run *rr;
  CHECK_OK(td_run_open(run, &rr, &err), &err);
  CHECK_INT(td_run_get_meta(rr)->n_test, ==, 0);
  td_run_close(rr);
}

/* Progress callback of a resumed run: counts the epochs during which the
 * run still looked finished (followers would have stopped). */
typedef struct finished_probe {
  const char *run;
  int epochs, finished;
} finished_probe;

static void probe_finished(const td_train_progress *p, void *ctx) {
  finished_probe *f = ctx;
  if (p->epoch_done) {
    f->epochs++;
    f->finished += td_run_is_finished(f->run);
  }
}

static void resume_matches_model(int threads, const char *optimizer,
                                 const char *model, int n_files) {
  char full[4300], part[4300], tmp[8400];
  snprintf(full, sizeof full, "%s/full_%s_%s_%d", dir, model, optimizer,
           threads);
  snprintf(part, sizeof part, "%s/part_%s_%s_%d", dir, model, optimizer,
           threads);
  td_train_opts o;
  td_train_result r;
  td_err err = {0};
  opts_for(&o, full, 6);
  o.threads = threads;
  o.optimizer = optimizer;
  o.model = model;
  if (!strcmp(model, "cnn")) { /* batchnorm state, augmentation streams */
    o.hidden = NULL;
    o.batchnorm = 1;
    o.augment = "shift,flip";
    o.lr = 0.02;
  }
  o.noise = 0.1;
  CHECK_OK(td_train(&o, &r, &err), &err);
  o.out = part;
  o.epochs = 3;
  CHECK_OK(td_train(&o, &r, &err), &err);
  CHECK(td_run_is_finished(part));
  /* As if killed while writing epoch 4: no finished marker, a stale
   * temporary epoch of a process that is gone. */
  snprintf(tmp, sizeof tmp, "%s/finished", part);
  if (!strcmp(model, "mlp")) /* the CNN cases resume a finished run */
    CHECK_INT(remove(tmp), ==, 0);
  snprintf(tmp, sizeof tmp, "%s/epochs/.tmp-0004-999999999", part);
  CHECK_OK(td_mkdirs(tmp, &err), &err);
  td_train_opts_default(&o);
  o.resume = part;
  o.epochs = 6;
  finished_probe probe = {part, 0, 0};
  o.progress = probe_finished;
  o.progress_ctx = &probe;
  CHECK_OK(td_train(&o, &r, &err), &err);
  CHECK_INT(probe.epochs, ==, 3);
  CHECK_INT(probe.finished, ==, 0); /* not finished while it trains */
  CHECK_INT(r.epochs, ==, 3);
  CHECK_INT(r.last_epoch, ==, 6);
  CHECK(td_run_is_finished(part));
  CHECK(!td_path_exists(tmp));
  for (int ep = 3; ep <= 6; ep++)
    CHECK(same_epoch(full, part, ep, n_files));
  td_run *rr;
  CHECK_OK(td_run_open(part, &rr, &err), &err);
  CHECK_INT(td_run_n_epochs(rr), ==, 6);
  CHECK_OK(td_run_validate(rr, NULL, NULL, &err), &err);
  td_run_close(rr);
  /* nothing left to do */
  CHECK_INT(td_train(&o, &r, &err), ==, TD_EARG);
  CHECK_STR_CONTAINS(err.msg, "has 6 epochs already");
}

static void resume_matches(int threads, const char *optimizer) {
  resume_matches_model(threads, optimizer, "mlp", 7); /* 3 layers, net.json */
}

static void test_resume_bit_identical(void) {
  resume_matches(1, "sgd");
  resume_matches(1, "adam");
  resume_matches(2, "sgd");
}

/* conv, batchnorm (whose running statistics are in the checkpoint) and
 * pooling: 2 convs, 2 batchnorms with running statistics, 2 dense layers,
 * net.json = 17 files */
static void test_resume_cnn_bit_identical(void) {
  resume_matches_model(1, "sgd", "cnn", 17);
  resume_matches_model(2, "adam", "cnn", 17);
}

/* The recorded representations and logits of every epoch equal the plain
 * forward pass (td_net_predict) of that epoch's checkpoint on the training
 * inputs, within the inference path's documented tolerance (1e-5 of the
 * array's scale; docs/engine.md): the recorder evaluates the end-of-epoch
 * snapshot, weights and running statistics together. */
static double rel_gap(const float *a, const float *b, size_t n) {
  double m = 0, d = 0;
  for (size_t i = 0; i < n; i++) {
    m = fmax(m, fabs((double)a[i]));
    d = fmax(d, fabs((double)a[i] - (double)b[i]));
  }
  return d / (1.0 + m);
}

static void test_recorded_matches_forward(void) {
  char run[4300], path[8400];
  snprintf(run, sizeof run, "%s/recorded_cnn", dir);
  td_train_opts o;
  td_train_result r;
  td_err err = {0};
  opts_for(&o, run, 2);
  o.hidden = NULL;
  o.model = "cnn";
  o.batchnorm = 1;
  o.threads = 2;
  CHECK_OK(td_train(&o, &r, &err), &err);
  td_array x, repr, logits;
  snprintf(path, sizeof path, "%s/train_inputs.npy", data);
  CHECK_OK(td_npy_load(path, &x, &err), &err);
  float *rp = malloc(sizeof(float) * N * 128),
        *lg = malloc(sizeof(float) * N * C);
  for (int ep = 1; ep <= 2; ep++) {
    td_net *net;
    snprintf(path, sizeof path, "%s/epochs/%04d/model", run, ep);
    CHECK_OK(td_net_load(path, &net, &err), &err);
    int L = td_net_n_layers(net), D = td_net_dim(net, L - 1);
    CHECK_INT(D, <=, 128);
    CHECK_INT(td_net_predict(net, x.data, N, lg, L - 2, rp), ==, TD_OK);
    snprintf(path, sizeof path, "%s/epochs/%04d/train_repr.npy", run, ep);
    CHECK_OK(td_npy_load(path, &repr, &err), &err);
    snprintf(path, sizeof path, "%s/epochs/%04d/train_logits.npy", run, ep);
    CHECK_OK(td_npy_load(path, &logits, &err), &err);
    double gr = rel_gap(rp, repr.data, (size_t)N * D),
           gl = rel_gap(lg, logits.data, (size_t)N * C);
    printf("    epoch %d: representations %.3g, logits %.3g\n", ep, gr, gl);
    CHECK(gr <= 1e-5 && gl <= 1e-5);
    td_array_close(&repr);
    td_array_close(&logits);
    td_net_free(net);
  }
  td_array_close(&x);
  free(rp);
  free(lg);
}

/* Two epoch.json files agree on every recorded metric (not on seconds). */
static int same_metrics(const char *a, const char *b) {
  static const char *const keys[] = {"epoch",     "train_loss", "train_acc",
                                     "test_loss", "test_acc",   "lr"};
  json_t *x = json_load_file(a, 0, NULL), *y = json_load_file(b, 0, NULL);
  int ok = x && y;
  for (size_t i = 0; ok && i < sizeof keys / sizeof *keys; i++) {
    json_t *u = json_object_get(x, keys[i]), *v = json_object_get(y, keys[i]);
    ok = u && v && json_number_value(u) == json_number_value(v);
    if (!ok)
      fprintf(stderr, "  %s: %s differs from %s\n", keys[i], a, b);
  }
  json_decref(x);
  json_decref(y);
  return ok;
}

/* The recorder evaluates each epoch's snapshot either in the foreground on
 * every core or on its job thread beside the next epoch, with the trainer
 * taking the chunks the job thread has not run when the next epoch ends
 * (TD_RECORD_OVERLAP forces either, TD_RECORD_BG_CHUNKS caps the job
 * thread's share so that both sides run chunks of the same pass): the run
 * files are the same bytes, epoch by epoch, checkpoint included. */
static void overlap_matches(const char *model, int threads, const char *bg,
                            int n_files) {
  char a[4300], b[4300];
  snprintf(a, sizeof a, "%s/fg_%s_%d_%s", dir, model, threads, bg);
  snprintf(b, sizeof b, "%s/bg_%s_%d_%s", dir, model, threads, bg);
  td_train_opts o;
  td_train_result r;
  td_err err = {0};
  for (int k = 0; k < 2; k++) {
    opts_for(&o, k ? b : a, 3);
    o.threads = threads;
    o.model = model;
    o.ood = "inverted";
    if (!strcmp(model, "cnn")) {
      o.hidden = NULL;
      o.batchnorm = 1;
    }
    setenv("TD_RECORD_OVERLAP", k ? "1" : "0", 1);
    setenv("TD_RECORD_BG_CHUNKS", bg, 1);
    int rc = td_train(&o, &r, &err);
    unsetenv("TD_RECORD_OVERLAP");
    unsetenv("TD_RECORD_BG_CHUNKS");
    CHECK_OK(rc, &err);
  }
  char fa[8400], fb[8400];
  for (int ep = 1; ep <= 3; ep++) {
    CHECK(same_epoch(a, b, ep, n_files));
    snprintf(fa, sizeof fa, "%s/epochs/%04d/ood_repr.npy", a, ep);
    snprintf(fb, sizeof fb, "%s/epochs/%04d/ood_repr.npy", b, ep);
    CHECK(td_t_same_bytes(fa, fb));
    snprintf(fa, sizeof fa, "%s/epochs/%04d/epoch.json", a, ep);
    snprintf(fb, sizeof fb, "%s/epochs/%04d/epoch.json", b, ep);
    CHECK(same_metrics(fa, fb));
  }
}

static void test_overlap_identical(void) {
  /* "": the job thread takes what it can; "1": one chunk, the trainer the
   * rest; "0": none (the trainer runs the whole pass a whole epoch late) */
  overlap_matches("mlp", 1, "", 7);
  overlap_matches("mlp", 2, "", 7);
  overlap_matches("mlp", 2, "1", 7);
  overlap_matches("cnn", 2, "", 17);
  overlap_matches("cnn", 1, "1", 17);
  overlap_matches("cnn", 2, "0", 17);
}

static void test_from_select(void) {
  char parent[4300], child[4300], sel[4300], out[4300], args[20000];
  snprintf(parent, sizeof parent, "%s/parent", dir);
  snprintf(child, sizeof child, "%s/child", dir);
  snprintf(sel, sizeof sel, "%s/sel.npy", dir);
  snprintf(out, sizeof out, "%s/out.txt", dir);
  td_train_opts o;
  td_train_result r;
  td_err err = {0};
  opts_for(&o, parent, 3);
  CHECK_OK(td_train(&o, &r, &err), &err);
  int32_t idx[5] = {17, 2, 40, 3, 99};
  int64_t k = 5;
  CHECK_INT(save(dir, "sel.npy", TD_I32, 1, &k, idx), ==, 0);
  snprintf(args, sizeof args,
           "train --from '%s:2' --out '%s' --select '%s' --epochs 2 --lr 0.1 "
           "--quiet",
           parent, child, sel);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 0);
  json_t *j = run_json(child);
  json_t *p = json_object_get(j, "parent");
  CHECK_INT(json_integer_value(json_object_get(p, "epoch")), ==, 2);
  CHECK_STR_CONTAINS(json_string_value(json_object_get(p, "run")), "/parent");
  json_decref(j);
  td_run *rr;
  CHECK_OK(td_run_open(child, &rr, &err), &err);
  CHECK_INT(td_run_n_epochs(rr), ==, 3); /* 0 (the parent's), 1, 2 */
  CHECK_INT(td_run_get_meta(rr)->parent_epoch, ==, 2);
  td_array t;
  CHECK_OK(td_run_load(rr, 1, "trained", &t, &err), &err);
  CHECK_INT(t.shape[0], ==, 5);
  CHECK_INT(((int32_t *)t.data)[0], ==, 2);
  CHECK_INT(((int32_t *)t.data)[4], ==, 99);
  td_array_close(&t);
  td_run_close(rr);
  char a[8400], b[8400];
  snprintf(a, sizeof a, "%s/epochs/0002/train_repr.npy", parent);
  snprintf(b, sizeof b, "%s/epochs/0000/train_repr.npy", child);
  CHECK(td_t_same_bytes(a, b)); /* epoch 0 is the parent's state */
  snprintf(args, sizeof args, "info '%s'", child);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 0);
  char *txt = td_t_slurp(out);
  CHECK_STR_CONTAINS(txt, "parent");
  CHECK_STR_CONTAINS(txt, "epoch 2 (fine-tuned");
  CHECK_STR_CONTAINS(txt, "run is valid");
  free(txt);
  snprintf(args, sizeof args, "project '%s' --method pca", child);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 0);
  txt = td_t_slurp(out);
  CHECK_STR_CONTAINS(txt, "projected 3 epochs");
  free(txt);
  /* refusals, each naming what is wrong */
  static const struct {
    const char *from, *sel, *needle;
  } bad[] = {{"%s/none", NULL, "no such run"},
             {"%s:7", NULL, "has no epoch 7 (recorded: 1 to 3)"},
             {"%s", "dup", "selected twice"},
             {"%s", "range", "out of range"},
             {"%s", "shape", "1-D int32 or int64"}};
  int32_t dup[3] = {4, 1, 4}, range[2] = {1, N};
  int64_t n3 = 3, n2 = 2, sh[2] = {1, 2};
  CHECK_INT(save(dir, "dup.npy", TD_I32, 1, &n3, dup), ==, 0);
  CHECK_INT(save(dir, "range.npy", TD_I32, 1, &n2, range), ==, 0);
  CHECK_INT(save(dir, "shape.npy", TD_I32, 2, sh, range), ==, 0);
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char from[4400], selp[4400] = "";
    snprintf(from, sizeof from, bad[i].from, parent);
    if (bad[i].sel)
      snprintf(selp, sizeof selp, "--select '%s/%s.npy'", dir, bad[i].sel);
    snprintf(args, sizeof args,
             "train --from '%s' --out '%s/bad%zu' %s --quiet", from, dir, i,
             selp);
    CHECK_INT(td_t_tardis(bin, out, args), ==, 1);
    txt = td_t_slurp(out);
    CHECK_STR_CONTAINS(txt, bad[i].needle);
    if (bad[i].sel)
      CHECK_STR_CONTAINS(txt, bad[i].sel);
    free(txt);
  }
  /* --resume keeps the run's options */
  snprintf(args, sizeof args, "train --resume '%s' --epochs 5 --lr 0.3",
           parent);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 2);
  txt = td_t_slurp(out);
  CHECK_STR_CONTAINS(txt, "--lr: a resumed run continues with its own");
  free(txt);
}

/* The share of a run's training samples that epoch `ep` predicts as `cls`. */
static double share_predicted(const char *run, int ep, int cls) {
  td_err err = {0};
  td_run *rr;
  if (td_run_open(run, &rr, &err))
    return -1;
  td_array z;
  double share = -1;
  if (!td_run_load(rr, ep, "train_logits", &z, &err)) {
    int64_t hit = 0, n = z.shape[0], c = z.shape[1];
    const float *v = z.data;
    for (int64_t i = 0; i < n; i++) {
      int best = 0;
      for (int j = 1; j < c; j++)
        best = v[i * c + j] > v[i * c + best] ? j : best;
      hit += best == cls;
    }
    share = (double)hit / (double)n;
    td_array_close(&z);
  }
  td_run_close(rr);
  return share;
}

static int same_npy(const char *a, const char *b) {
  td_array x, y;
  td_err err;
  if (td_npy_load(a, &x, &err))
    return 0;
  int same = !td_npy_load(b, &y, &err);
  if (same) {
    same = x.dtype == y.dtype && x.ndim == y.ndim && x.nbytes == y.nbytes &&
           !memcmp(x.data, y.data, x.nbytes);
    td_array_close(&y);
  }
  td_array_close(&x);
  return same;
}

/* --labels (a corrected label file) with --from and from scratch, --exclude,
 * and the label files refused. A child trained on labels that are all 0 must
 * record them, keep its parent's clean labels, and learn them (its
 * predictions turn to class 0), which the parent's do not. */
static void test_labels_exclude(void) {
  char parent[4300], child[4300], out[4300], args[20000], p[8400], q[8400];
  snprintf(parent, sizeof parent, "%s/lparent", dir);
  snprintf(child, sizeof child, "%s/lchild", dir);
  snprintf(out, sizeof out, "%s/lout.txt", dir);
  snprintf(args, sizeof args,
           "train --data '%s' --out '%s' --hidden 24,12 --batch 32 --lr 0.05 "
           "--epochs 3 --noise 0.2 --threads 1 --quiet",
           data, parent);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 0);
  static int64_t zeros[N];
  int64_t n = N;
  CHECK_INT(save(dir, "lab0.npy", TD_I64, 1, &n, zeros), ==, 0);
  snprintf(args, sizeof args,
           "train --from '%s' --out '%s' --labels '%s/lab0.npy' --epochs 3 "
           "--lr 0.1 --quiet",
           parent, child, dir);
  int rc = td_t_tardis(bin, out, args);
  if (rc)
    fprintf(stderr, "  %s\n", td_t_slurp(out));
  CHECK_INT(rc, ==, 0);
  td_err err = {0};
  td_run *rr;
  CHECK_OK(td_run_open(child, &rr, &err), &err);
  int64_t nonzero = 0;
  for (int64_t i = 0; i < N; i++)
    nonzero += td_run_train_labels(rr)[i] != 0;
  td_run_close(rr);
  CHECK_INT(nonzero, ==, 0);
  json_t *j = run_json(child);
  json_t *t = json_object_get(j, "train");
  CHECK_STR_CONTAINS(json_string_value(json_object_get(t, "labels")),
                     "/lab0.npy");
  CHECK_NEAR(json_number_value(json_object_get(t, "noise")), 0, 0);
  json_decref(j);
  snprintf(p, sizeof p, "%s/train_truth.npy", parent);
  snprintf(q, sizeof q, "%s/train_truth.npy", child);
  CHECK(same_npy(p, q)); /* the parent's clean labels, for evaluation */
  double before = share_predicted(parent, 3, 0);
  double after = share_predicted(child, 3, 0);
  fprintf(stderr, "  class 0 predicted: parent %.3f, child %.3f\n", before,
          after);
  CHECK(before >= 0 && before < 0.7);
  CHECK(after >= 0.9);
  /* from scratch: the file's labels, no clean labels for a data directory */
  snprintf(args, sizeof args,
           "train --data '%s' --out '%s/lfresh' --labels '%s/lab0.npy' "
           "--hidden 24,12 --epochs 1 --threads 1 --quiet",
           data, dir, dir);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 0);
  snprintf(p, sizeof p, "%s/lfresh/train_labels.npy", dir);
  snprintf(q, sizeof q, "%s/lchild/train_labels.npy", dir);
  CHECK(same_npy(p, q));
  snprintf(p, sizeof p, "%s/lfresh/train_truth.npy", dir);
  CHECK(!td_path_exists(p));
  /* --exclude: every sample but 0..9 */
  int32_t ex[10] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0};
  int64_t k = 10;
  CHECK_INT(save(dir, "ex.npy", TD_I32, 1, &k, ex), ==, 0);
  snprintf(args, sizeof args,
           "train --from '%s' --out '%s/lexcl' --exclude '%s/ex.npy' "
           "--epochs 1 --quiet",
           parent, dir, dir);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 0);
  snprintf(p, sizeof p, "%s/lexcl/epochs/0001/trained.npy", dir);
  td_array tr;
  CHECK_OK(td_npy_load(p, &tr, &err), &err);
  int first = tr.shape[0] ? ((int32_t *)tr.data)[0] : -1;
  int64_t kept = tr.shape[0];
  td_array_close(&tr);
  CHECK_INT(kept, ==, N - 10);
  CHECK_INT(first, ==, 10);
  /* refusals, each naming the file and what is wrong; nothing written */
  static float fl[N];
  static int32_t big[N], neg[N];
  big[7] = C;
  neg[N - 1] = -1;
  int64_t short_n = N - 1, sq[2] = {N / 2, 2};
  CHECK_INT(save(dir, "lflt.npy", TD_F32, 1, &n, fl), ==, 0);
  CHECK_INT(save(dir, "lshort.npy", TD_I32, 1, &short_n, big), ==, 0);
  CHECK_INT(save(dir, "lbig.npy", TD_I32, 1, &n, big), ==, 0);
  CHECK_INT(save(dir, "lneg.npy", TD_I32, 1, &n, neg), ==, 0);
  CHECK_INT(save(dir, "l2d.npy", TD_I32, 2, sq, big), ==, 0);
  static const struct {
    const char *file, *extra, *needle;
  } bad[] = {
      {"lflt", "", "labels are float32, expected integers"},
      {"lshort", "", "319 labels, but the run has 320 training samples"},
      {"lbig", "", "label 3 of sample 7 is out of range (3 classes"},
      {"lneg", "", "label -1 of sample 319 is out of range"},
      {"l2d", "", "expected a 1-D array of labels"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    for (int fresh = 0; fresh < 2; fresh++) {
      char src[4400];
      if (fresh)
        snprintf(src, sizeof src, "--data '%s' --hidden 24,12", data);
      else
        snprintf(src, sizeof src, "--from '%s'", parent);
      snprintf(args, sizeof args,
               "train %s --out '%s/lbad%zu' --labels '%s/%s.npy' --epochs 1 "
               "--quiet",
               src, dir, i, dir, bad[i].file);
      CHECK_INT(td_t_tardis(bin, out, args), ==, 1);
      char *txt = td_t_slurp(out);
      CHECK_STR_CONTAINS(txt, bad[i].file);
      CHECK_STR_CONTAINS(txt, bad[i].needle);
      free(txt);
      snprintf(p, sizeof p, "%s/lbad%zu", dir, i);
      CHECK(!td_path_exists(p));
    }
  }
  snprintf(args, sizeof args,
           "train --data '%s' --out '%s/lnoise' --labels '%s/lab0.npy' "
           "--noise 0.1 --quiet",
           data, dir, dir);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 1);
  char *txt = td_t_slurp(out);
  CHECK_STR_CONTAINS(txt, "--labels gives the training labels");
  free(txt);
}

/* --ood gaussian: noise images with the test pixels' mean and spread,
 * recorded beside the test set, that the detectors report by that name. */
static void test_ood_gaussian(void) {
  char run[4300], out[4300], args[9000], p[8400];
  snprintf(run, sizeof run, "%s/gauss", dir);
  snprintf(out, sizeof out, "%s/gauss.txt", dir);
  td_train_opts o;
  td_train_result r;
  td_err err = {0};
  opts_for(&o, run, 2);
  o.ood = "gaussian";
  CHECK_OK(td_train(&o, &r, &err), &err);
  td_array x, t;
  snprintf(p, sizeof p, "%s/ood_inputs.npy", run);
  CHECK_OK(td_npy_load(p, &x, &err), &err);
  snprintf(p, sizeof p, "%s/test_inputs.npy", run);
  CHECK_OK(td_npy_load(p, &t, &err), &err);
  size_t n = x.nbytes / sizeof(float);
  double sx = 0, st = 0, sxx = 0, stt = 0, lo = 1, hi = 0;
  int inverted = 1;
  for (size_t i = 0; i < n && x.dtype == TD_F32 && t.nbytes == x.nbytes; i++) {
    double a = ((float *)x.data)[i], b = ((float *)t.data)[i];
    sx += a, sxx += a * a, st += b, stt += b * b;
    lo = a < lo ? a : lo;
    hi = a > hi ? a : hi;
    inverted &= fabs(a - (1 - b)) < 1e-6;
  }
  int same_shape = x.dtype == TD_F32 && t.nbytes == x.nbytes;
  td_array_close(&x);
  td_array_close(&t);
  CHECK(same_shape);
  double mx = sx / n, mt = st / n;
  double dx = sqrt(sxx / n - mx * mx), dt = sqrt(stt / n - mt * mt);
  fprintf(stderr, "  ood mean %.3f sd %.3f, test mean %.3f sd %.3f\n", mx, dx,
          mt, dt);
  CHECK(!inverted && lo >= 0 && hi <= 1);
  CHECK_NEAR(mx, mt, 0.05); /* clipping moves them a little */
  CHECK_NEAR(dx, dt, 0.05);
  snprintf(args, sizeof args, "suspects '%s' --abnormal-test --method none",
           run);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 0);
  char *txt = td_t_slurp(out);
  CHECK_STR_CONTAINS(txt, "gaussian (64 against 64 test samples)");
  free(txt);
}

/* in(y - dy, x - dx) of a 1×h×w image, 0 outside; mirrored first. */
static float shifted(const float *in, int h, int w, int y, int x, int dy,
                     int dx, int flip) {
  int sy = y - dy, sx = x - dx;
  if (flip)
    sx = w - 1 - sx;
  return sy >= 0 && sy < h && sx >= 0 && sx < w ? in[sy * w + sx] : 0.0f;
}

/* Each augmented image is one of the allowed transforms of its input, all
 * of them occur, and the same seed draws the same. */
static void test_augment(void) {
  enum { B = 200, IH = 5, IW = 6 };
  static float x[B][IH * IW], y[B][IH * IW], z[B][IH * IW];
  float tmp[IH * IW];
  for (int i = 0; i < B; i++)
    for (int k = 0; k < IH * IW; k++)
      x[i][k] = (float)(1 + k + i);
  td_err err;
  td__augment a;
  CHECK_OK(td__augment_parse("flip,shift", &a, &err), &err);
  CHECK(a.shift && a.flip);
  CHECK_INT(td__augment_parse("shift,shift", &a, &err), ==, TD_EARG);
  CHECK_INT(td__augment_parse("rotate", &a, &err), ==, TD_EARG);
  CHECK_OK(td__augment_parse("shift,flip", &a, &err), &err);
  memcpy(y, x, sizeof x);
  memcpy(z, x, sizeof x);
  td__augment_batch(&a, &y[0][0], B, 1, IH, IW, 42, tmp);
  td__augment_batch(&a, &z[0][0], B, 1, IH, IW, 42, tmp);
  CHECK(!memcmp(y, z, sizeof y));
  int seen[5][5][2] = {{{0}}}, bad = 0;
  for (int i = 0; i < B; i++) {
    int found = 0;
    for (int dy = -2; dy <= 2 && !found; dy++)
      for (int dx = -2; dx <= 2 && !found; dx++)
        for (int f = 0; f < 2 && !found; f++) {
          int same = 1;
          for (int k = 0; k < IH * IW && same; k++)
            same = y[i][k] == shifted(x[i], IH, IW, k / IW, k % IW, dy, dx, f);
          if (same) {
            found = 1;
            seen[dy + 2][dx + 2][f] = 1;
          }
        }
    bad += !found;
  }
  CHECK_INT(bad, ==, 0);
  int kinds = 0;
  for (int i = 0; i < 50; i++)
    kinds += seen[i / 10][(i / 2) % 5][i % 2];
  CHECK(kinds >= 40); /* of 50 transforms, in 200 draws */
}

int main(void) {
  const char *b = getenv("TD_BIN");
  if (!b) {
    fprintf(stderr, "TD_BIN is not set (ctest sets it to the tardis binary)\n");
    return 1;
  }
  snprintf(bin, sizeof bin, "%s", b);
  snprintf(dir, sizeof dir, "%s", td_t_tmpdir("train_engine"));
  snprintf(data, sizeof data, "%s/data", dir);
  make_dataset(data, N, M);
  RUN(test_augment);
  RUN(test_hidden_widths);
  RUN(test_data_dir_refusals);
  RUN(test_resume_bit_identical);
  RUN(test_resume_cnn_bit_identical);
  RUN(test_from_select);
  RUN(test_labels_exclude);
  RUN(test_ood_gaussian);
  RUN(test_recorded_matches_forward);
  RUN(test_overlap_identical);
  return td_t_finish();
}
