/* The option parser shared by the tardis commands (src/cli/args.c), black
 * box through the built binary: the uniform messages and exit status of
 * usage errors, the generated help, and that valid options get past the
 * parser (to a runtime error on a missing run, exit status 1, not 2). */
#include <sys/wait.h>

#include "cli_util.h"
#include "harness.h"
#include "tardis/fsutil.h"

static char bin[4096], dir[4096];
static char *out_txt, *err_txt; /* stdout and stderr of the last cli() */

/* Runs `tardis <args>`; returns its exit status, keeps its output. */
static int cli(const char *args) {
  char cmd[24576], o[4200], e[4200];
  snprintf(o, sizeof o, "%s/out.txt", dir);
  snprintf(e, sizeof e, "%s/err.txt", dir);
  snprintf(cmd, sizeof cmd, "'%s' %s >'%s' 2>'%s'", bin, args, o, e);
  int st = system(cmd);
  free(out_txt);
  free(err_txt);
  out_txt = td_t_slurp(o);
  err_txt = td_t_slurp(e);
  if (!out_txt || !err_txt) {
    fprintf(stderr, "  could not read the output of tardis %s\n", args);
    return -1;
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* A usage error: exit status 2, the message on stderr, nothing on stdout,
 * and the pointer to the command's help. */
#define USAGE_ERROR(args, cmd, msg)                                            \
  do {                                                                         \
    CHECK_INT(cli(args), ==, 2);                                               \
    CHECK_STR_CONTAINS(err_txt, "tardis " cmd ": " msg "\n");                  \
    CHECK_STR_CONTAINS(err_txt, "(see 'tardis " cmd " --help')");              \
    CHECK_INT(strlen(out_txt), ==, 0);                                         \
  } while (0)

static void test_bad_numbers(void) {
  USAGE_ERROR("train --lr abc --out r", "train",
              "--lr: expected a number > 0, got \"abc\"");
  USAGE_ERROR("train --out r --lr 0", "train",
              "--lr: expected a number > 0, got \"0\"");
  USAGE_ERROR("train --out r --lr nan", "train",
              "--lr: expected a number > 0, got \"nan\"");
  USAGE_ERROR("train --out r --epochs 3.5", "train",
              "--epochs: expected an integer ≥ 1, got \"3.5\"");
  USAGE_ERROR("train --out r --epochs ''", "train",
              "--epochs: expected an integer ≥ 1, got \"\"");
  USAGE_ERROR("train --out r --limit 99999999999999999999", "train",
              "--limit: expected an integer ≥ 1, got "
              "\"99999999999999999999\"");
  USAGE_ERROR("project RUN --threads 4x", "project",
              "--threads: expected an integer ≥ 0, got \"4x\"");
  USAGE_ERROR("project RUN --seed -1", "project",
              "--seed: expected an integer from 0 to 18446744073709551615, "
              "got \"-1\"");
  USAGE_ERROR("suspects RUN --seed 18446744073709551616", "suspects",
              "--seed: expected an integer from 0 to 18446744073709551615, "
              "got \"18446744073709551616\"");
}

static void test_out_of_range(void) {
  USAGE_ERROR("project RUN --res 4", "project",
              "--res: expected an integer from 8 to 4096, got \"4\"");
  USAGE_ERROR("serve RUN --port 70000", "serve",
              "--port: expected an integer from 0 to 65535, got \"70000\"");
  USAGE_ERROR("train --out r --noise 1", "train",
              "--noise: expected a number ≥ 0 and < 1, got \"1\"");
  USAGE_ERROR("suspects RUN --mistakes 1.5", "suspects",
              "--mistakes: expected a number from 0 to 1, got \"1.5\"");
  USAGE_ERROR("suspects RUN --k 0", "suspects",
              "--k: expected an integer from 1 to 100000, got \"0\"");
  USAGE_ERROR("render RUN --gif a.gif --fps 0", "render",
              "--fps: expected an integer from 1 to 100, got \"0\"");
  USAGE_ERROR("render RUN --gif a.gif --size 10", "render",
              "--size: expected an integer from 64 to 8192, got \"10\"");
}

static void test_epoch_ranges(void) {
  static const char *const bad[] = {"x",     "3:2", "0:4", ":",
                                    "1:2:3", "a:3", "-1:", "2:x"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char args[128], msg[128];
    snprintf(args, sizeof args, "project RUN --epochs '%s'", bad[i]);
    snprintf(msg, sizeof msg,
             "tardis project: --epochs: expected A:B with 1 ≤ A ≤ B, got "
             "\"%s\"\n",
             bad[i]);
    CHECK_INT(cli(args), ==, 2);
    CHECK_STR_CONTAINS(err_txt, msg);
  }
}

static void test_choices(void) {
  USAGE_ERROR("project RUN --method umap", "project",
              "--method: expected dvi or pca, got \"umap\"");
  USAGE_ERROR("project RUN --temporal x", "project",
              "--temporal: expected none, dvi or memory, got \"x\"");
  USAGE_ERROR("render RUN --gif a.gif --split all", "render",
              "--split: expected train, test or both, got \"all\"");
  USAGE_ERROR("train --out r --optimizer rmsprop", "train",
              "--optimizer: expected sgd or adam, got \"rmsprop\"");
}

static void test_unknown_options(void) {
  USAGE_ERROR("serve RUN --prot 80", "serve",
              "unknown option --prot (did you mean --port?)");
  USAGE_ERROR("info --qu RUN", "info",
              "unknown option --qu (did you mean --quick?)");
  USAGE_ERROR("info --jsno=1 RUN", "info",
              "unknown option --jsno (did you mean --json?)");
  USAGE_ERROR("eval RUN --frobnicate", "eval", "unknown option --frobnicate");
  USAGE_ERROR("info -x RUN", "info", "unknown option -x");
  USAGE_ERROR("info --json=yes RUN", "info",
              "--json: takes no value, got \"yes\"");
}

static void test_missing(void) {
  USAGE_ERROR("train --out", "train", "--out: missing value (RUN)");
  USAGE_ERROR("serve RUN --port", "serve",
              "--port: missing value (an integer from 0 to 65535)");
  USAGE_ERROR("eval", "eval", "missing RUN");
  USAGE_ERROR("info --json", "info", "missing RUN");
  USAGE_ERROR("suspects --k 5", "suspects", "missing RUN");
  USAGE_ERROR("train --epochs 2", "train", "missing --out RUN");
  USAGE_ERROR("info a b", "info", "unexpected argument \"b\"");
  USAGE_ERROR("render RUN --out x.png", "render", "--out needs --epoch N");
}

/* Every command's help: on stdout, exit 0, listing its options. */
static void test_help(void) {
  static const struct {
    const char *cmd, *options[4];
  } cmds[] = {
      {"train", {"-o, --out RUN", "--noise-type", "--no-model", "--ood"}},
      {"info", {"--json", "--quick", "Exit status: 0 valid", NULL}},
      {"project", {"--epochs A:B", "--boundary-space", "--res R", "--force"}},
      {"eval", {"--method M", "--json", "--threads T", NULL}},
      {"render", {"--gif FILE", "64..8192", "--no-territory", "--fps N"}},
      {"serve", {"--port N", "--host ADDR", "--web DIR", NULL}},
      {"suspects", {"--abnormal-test", "--mistakes F", "--seed S", NULL}},
  };
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
    char args[64], head[64];
    snprintf(head, sizeof head, "usage: tardis %s", cmds[i].cmd);
    for (int form = 0; form < 2; form++) {
      snprintf(args, sizeof args, form ? "%s -h" : "%s --help", cmds[i].cmd);
      CHECK_INT(cli(args), ==, 0);
      CHECK_INT(strlen(err_txt), ==, 0);
      CHECK(!strncmp(out_txt, head, strlen(head)));
      CHECK_STR_CONTAINS(out_txt, "-h, --help");
      for (int k = 0; k < 4 && cmds[i].options[k]; k++)
        CHECK_STR_CONTAINS(out_txt, cmds[i].options[k]);
    }
  }
  /* read left to right: an error before --help is reported */
  USAGE_ERROR("info --bogus --help", "info", "unknown option --bogus");
}

/* Valid options of every kind get past the parser: the command then fails
 * at run time on the missing run (1), never on usage (2). */
static void test_valid_options(void) {
  static const char *const ok[] = {
      "info --json --quick NORUN",
      "info -- NORUN",
      "project NORUN --method=pca --epochs 2: --temporal memory --no-boundary "
      "--boundary-space input --res 64 --seed 18446744073709551615 "
      "--threads 1 --force",
      "project --epochs :3 NORUN",
      "project --epochs 2 NORUN",
      "eval NORUN --method pca --json --threads=2",
      "render NORUN --epoch 0 --out x.png --size 64 --split both "
      "--no-territory --quiet",
      "render NORUN --gif x.gif --fps 100 --method pca",
      "serve NORUN --port 0 --host 127.0.0.1 --method dvi --web .",
      "suspects NORUN --simulate --rounds 2 --k 5 --mistakes 0.5 --seed 3 "
      "--json --threads 1 --method none",
      "suspects NORUN --abnormal-test",
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    char args[1024];
    snprintf(args, sizeof args, "%s", ok[i]);
    char *p = strstr(args, "NORUN");
    CHECK(p != NULL);
    char full[8192];
    snprintf(full, sizeof full, "%.*s'%s/none'%s", (int)(p - args), args, dir,
             p + 5);
    int st = cli(full);
    if (st != 1)
      fprintf(stderr, "  tardis %s:\n%s", full, err_txt ? err_txt : "");
    CHECK_INT(st, ==, 1);
    CHECK(strstr(err_txt, "see 'tardis") == NULL);
  }
  /* training with every option reaches the dataset (absent here) */
  char args[12288];
  snprintf(args, sizeof args,
           "train -o '%s/r' --dataset fashion-mnist --data-dir '%s/none' "
           "--model mlp --epochs 2 --batch 64 --optimizer adam --lr 1e-3 "
           "--noise 0.2 --noise-type asymmetric --limit 100 --seed 5 "
           "--threads 1 --no-model --ood inverted --name t --force --quiet",
           dir, dir);
  CHECK_INT(cli(args), ==, 1);
  CHECK_STR_CONTAINS(err_txt, "dataset-fashion-mnist");
  CHECK_INT(cli("--version"), ==, 0);
}

int main(void) {
  if (td_t_cli_setup(bin, sizeof bin, dir, sizeof dir, "cli"))
    return 1;
  RUN(test_bad_numbers);
  RUN(test_out_of_range);
  RUN(test_epoch_ranges);
  RUN(test_choices);
  RUN(test_unknown_options);
  RUN(test_missing);
  RUN(test_help);
  RUN(test_valid_options);
  free(out_txt);
  free(err_txt);
  return td_t_finish();
}
