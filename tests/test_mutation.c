/* The run-directory mutation test: hundreds of corruptions of a small real
 * run (truncations, flipped bytes, wrong dtype and shape headers, NaN and
 * infinity, missing files, FIFOs, swapped epochs, bad JSON values) against
 * every read command. It fails on a crash (any signal), a sanitizer report
 * (ASan, UBSan, LeakSanitizer: the CI runs it in the sanitizer build too), a
 * hang (over TIMEOUT_S seconds), and a command that succeeds on a run
 * `tardis info` rejects. The counts it prints are in docs/errors.md.
 *
 * Each mutation works on a hard-linked copy of the base run (`cp -al`) and
 * replaces files instead of editing them, so the base never changes. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "cli_util.h"
#include "harness.h"
#include "tardis/fsutil.h"

#define TIMEOUT_S 20

static char bin[4096], dir[4096], base[4200], work[4200];

enum {
  CMD_INFO,
  CMD_PROJECT,
  CMD_EVAL,
  CMD_RENDER,
  CMD_SUSPECTS,
  CMD_ALERTS,
  CMD_COUNT
};
static char *const cmd_names[CMD_COUNT] = {"info",   "project",  "eval",
                                           "render", "suspects", "alerts"};

static int n_mut, n_runs, n_clean, n_info_rejects, n_findings;

/* Runs `tardis <cmd>` on the work copy with stdout+stderr to a file;
 * returns the wait status; *text gets the output (caller frees). */
static int run_cmd(int cmd, char **text) {
  char out[4300], gif[4300];
  snprintf(out, sizeof out, "%s.txt", work);
  snprintf(gif, sizeof gif, "%s.gif", work);
  char *argv[12] = {bin, cmd_names[cmd], work};
  int n = 3;
  if (cmd == CMD_PROJECT) {
    argv[n++] = "--res";
    argv[n++] = "16";
  } else if (cmd == CMD_RENDER) {
    argv[n++] = "--gif";
    argv[n++] = gif;
    argv[n++] = "--size";
    argv[n++] = "64";
    argv[n++] = "--quiet";
  } else if (cmd == CMD_ALERTS) {
    argv[n++] = "--sample";
    argv[n++] = "64";
  }
  argv[n] = NULL;
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
      _exit(126);
    dup2(fd, 1);
    dup2(fd, 2);
    close(fd);
    setenv("TD_THREADS", "1", 1);
    alarm(TIMEOUT_S); /* survives exec: a hang dies of SIGALRM */
    execv(bin, argv);
    _exit(127);
  }
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  *text = NULL;
  size_t len;
  if (td_read_file(out, text, &len, NULL) != TD_OK)
    *text = NULL;
  return st;
}

static int sanitizer_report(const char *t) {
  return t && (strstr(t, "runtime error:") || strstr(t, "AddressSanitizer") ||
               strstr(t, "LeakSanitizer") || strstr(t, "Sanitizer:"));
}

/* Runs every command on the mutated work copy; counts and reports. */
static void check_all(const char *what) {
  int info_ok = 1;
  n_mut++;
  for (int c = 0; c < CMD_COUNT; c++) {
    char *t;
    int st = run_cmd(c, &t);
    n_runs++;
    const char *bad = NULL;
    if (WIFSIGNALED(st))
      bad = WTERMSIG(st) == SIGALRM ? "hang" : "crash (signal)";
    else if (sanitizer_report(t))
      bad = "sanitizer report";
    else if (!WIFEXITED(st) || WEXITSTATUS(st) > 1)
      bad = "unexpected exit status";
    else if (c == CMD_INFO)
      info_ok = WEXITSTATUS(st) == 0;
    else if (!info_ok && WEXITSTATUS(st) == 0)
      bad = "success on a run info rejects";
    if (!bad && WIFEXITED(st) && WEXITSTATUS(st) == 1)
      n_clean++;
    if (c == CMD_INFO && !info_ok)
      n_info_rejects++;
    if (bad) {
      n_findings++;
      fprintf(stderr, "  FINDING: %s: tardis %s: %s (status %d)\n%.2000s\n",
              what, cmd_names[c], bad, st, t ? t : "");
    }
    free(t);
  }
}

static int fresh_copy(void) {
  char cmd[16000];
  snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -al '%s' '%s'", work, base,
           work);
  return td_t_system(cmd);
}

static unsigned char *slurp(const char *path, size_t *len) {
  char *d = NULL;
  if (td_read_file(path, &d, len, NULL) != TD_OK)
    return NULL;
  return (unsigned char *)d;
}

/* Replaces the file (new inode: the base keeps its copy). */
static void put(const char *path, const void *data, size_t len) {
  unlink(path);
  FILE *f = fopen(path, "wb");
  if (f) {
    fwrite(data, 1, len, f);
    fclose(f);
  }
}

/* The .npy data offset, or 0 when the header is not readable. */
static size_t npy_off(const unsigned char *b, size_t len) {
  if (len < 10 || b[6] != 1)
    return 0;
  return 10 + (size_t)(b[8] | b[9] << 8);
}

static void replace_str(unsigned char *b, size_t len, const char *from,
                        const char *to) {
  size_t n = strlen(from);
  for (size_t i = 0; i + n <= len && i < 256; i++)
    if (!memcmp(b + i, from, n)) {
      memcpy(b + i, to, n);
      return;
    }
}

typedef enum {
  M_TRUNC_HALF,
  M_TRUNC_ZERO,
  M_TRUNC_HEADER,
  M_FLIP_HEADER,
  M_FLIP_DATA,
  M_DTYPE,
  M_SHAPE,
  M_NAN,
  M_INF,
  M_BIG,
  M_MISSING,
  M_FIFO,
  M_DIR,
  M_UNALIGN,
  M_JSON_EMPTY,
  M_JSON_ARRAY,
  M_JSON_NUMBERS,
  M_JSON_NEG,
  M_JSON_STRINGS,
  M_COUNT
} mutation;
static const char *const mut_names[M_COUNT] = {
    "truncated to half",
    "emptied",
    "cut inside the header",
    "header byte flipped",
    "data bytes flipped",
    "dtype changed",
    "shape changed",
    "NaN written",
    "infinity written",
    "1e38 written",
    "deleted",
    "replaced by a FIFO",
    "replaced by a directory",
    "data moved to an unaligned offset",
    "JSON emptied",
    "JSON made []",
    "JSON numbers made 1e308",
    "JSON numbers made negative",
    "JSON numbers made strings"};

static void mutate_file(const char *rel, mutation m) {
  char path[8400];
  snprintf(path, sizeof path, "%s/%s", work, rel);
  size_t len = 0;
  unsigned char *b = slurp(path, &len);
  if (!b)
    return;
  size_t off = npy_off(b, len);
  switch (m) {
  case M_TRUNC_HALF:
    put(path, b, len / 2);
    break;
  case M_TRUNC_ZERO:
    put(path, b, 0);
    break;
  case M_TRUNC_HEADER:
    put(path, b, len < 40 ? len / 3 : 40);
    break;
  case M_FLIP_HEADER:
    if (len > 30)
      b[len > 60 ? 27 : len / 2] ^= 0x5a;
    put(path, b, len);
    break;
  case M_FLIP_DATA:
    for (size_t i = off + (len - off) / 3;
         i < len && i < off + (len - off) / 3 + 8; i++)
      b[i] ^= 0xff;
    put(path, b, len);
    break;
  case M_DTYPE:
    replace_str(b, len, "<f4", "<i4");
    replace_str(b, len, "<i4", "<f2");
    replace_str(b, len, "|u1", "<i8");
    put(path, b, len);
    break;
  case M_SHAPE:
    for (size_t i = 0; i < len && i < 200; i++)
      if (b[i] == '(' && i + 1 < len && b[i + 1] >= '1' && b[i + 1] <= '8') {
        b[i + 1]++;
        break;
      }
    put(path, b, len);
    break;
  case M_NAN:
  case M_INF:
  case M_BIG: {
    float v = m == M_NAN ? NAN : m == M_INF ? -INFINITY : 1e38f;
    if (off && off + 4 <= len)
      memcpy(b + off + ((len - off) / 8 & ~(size_t)3), &v, 4);
    put(path, b, len);
    break;
  }
  case M_MISSING:
    unlink(path);
    break;
  case M_FIFO:
    unlink(path);
    mkfifo(path, 0644);
    break;
  case M_DIR:
    unlink(path);
    mkdir(path, 0755);
    break;
  case M_UNALIGN: { /* a valid file numpy reads: the data at an odd offset */
    if (!off || off > len || off < 12)
      break;
    unsigned char *nb = malloc(len + 64);
    size_t hl = off - 10, pad = 0;
    while (hl > 11 && b[10 + hl - 2] == ' ')
      hl--; /* strip the padding, keep '\n' below */
    size_t dict = hl - 1;
    while ((10 + dict + pad + 1) % 4 != 1)
      pad++;
    memcpy(nb, b, 10 + dict);
    memset(nb + 10 + dict, ' ', pad);
    nb[10 + dict + pad] = '\n';
    size_t nh = dict + pad + 1;
    nb[8] = (unsigned char)(nh & 0xff);
    nb[9] = (unsigned char)(nh >> 8);
    memcpy(nb + 10 + nh, b + off, len - off);
    put(path, nb, 10 + nh + len - off);
    free(nb);
    break;
  }
  case M_JSON_EMPTY:
    put(path, "", 0);
    break;
  case M_JSON_ARRAY:
    put(path, "[]", 2);
    break;
  case M_JSON_NUMBERS:
  case M_JSON_NEG:
  case M_JSON_STRINGS: {
    /* every number token replaced */
    char *o = malloc(len * 8 + 16);
    size_t n = 0;
    for (size_t i = 0; i < len;) {
      int start = (b[i] >= '0' && b[i] <= '9') &&
                  (i == 0 ||
                   !((b[i - 1] >= '0' && b[i - 1] <= '9') || b[i - 1] == '.' ||
                     b[i - 1] == '-' || (b[i - 1] >= 'A' && b[i - 1] <= 'z')));
      if (!start || (i > 0 && b[i - 1] == '"')) {
        o[n++] = (char)b[i++];
        continue;
      }
      while (i < len && ((b[i] >= '0' && b[i] <= '9') || b[i] == '.' ||
                         b[i] == 'e' || b[i] == '-' || b[i] == '+'))
        i++;
      const char *r = m == M_JSON_NUMBERS ? "1e308"
                      : m == M_JSON_NEG   ? "-7"
                                          : "\"x\"";
      memcpy(o + n, r, strlen(r));
      n += strlen(r);
    }
    put(path, o, n);
    free(o);
    break;
  }
  default:
    break;
  }
  free(b);
}

static int ends_with(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && !strcmp(s + a - b, suf);
}

/* The files to corrupt: everything of the run except the first epoch's
 * copies (the second epoch has the same files) and derived caches. */
static int list_files(const char *root, const char *rel, char (*out)[256],
                      int n, int cap) {
  char path[8400];
  snprintf(path, sizeof path, "%s/%s", root, rel);
  DIR *d = opendir(path);
  if (!d)
    return n;
  struct dirent *e;
  while ((e = readdir(d)) && n < cap) {
    if (e->d_name[0] == '.')
      continue;
    char r[512];
    snprintf(r, sizeof r, "%s%s%s", rel, rel[0] ? "/" : "", e->d_name);
    if (strstr(r, "0001") || strstr(r, "suspects") || strstr(r, "metrics") ||
        strstr(r, "alerts") || strstr(r, "geometry") || strstr(r, "tardis.db"))
      continue;
    snprintf(path, sizeof path, "%s/%s", root, r);
    if (td_path_is_dir(path))
      n = list_files(root, r, out, n, cap);
    else
      snprintf(out[n++], 256, "%.255s", r);
  }
  closedir(d);
  return n;
}

/* Whole-directory damage: swapped and missing epochs (W: the work copy). */
static const char *const dir_cmds[][2] = {
    {"mv W/epochs/0001 W/x && mv W/epochs/0002 W/epochs/0001 && mv W/x "
     "W/epochs/0002",
     "epochs 1 and 2 swapped"},
    {"mv W/vis/dvi/epoch_0001 W/x && mv W/vis/dvi/epoch_0002 "
     "W/vis/dvi/epoch_0001 && mv W/x W/vis/dvi/epoch_0002",
     "projected epochs 1 and 2 swapped"},
    {"rm -rf W/epochs/0002", "epoch 2 removed"},
    {"rm -rf W/epochs", "epochs/ removed"},
    {"rm -rf W/vis", "vis/ removed"},
    {"rm -rf W/vis/dvi/epoch_0001/model", "a projection model removed"},
    {"cp W/epochs/0001/train_repr.npy W/epochs/0002/train_repr.npy.x && mv "
     "W/epochs/0002/train_repr.npy.x W/epochs/0002/train_repr.npy",
     "epoch 2 given epoch 1's representations"},
    {"mkdir W/epochs/0003", "an empty epoch"},
    {"mkdir W/epochs/.tmp-0003-999999999", "a stale temporary epoch"},
};
#define N_DIR_CMDS ((int)(sizeof dir_cmds / sizeof dir_cmds[0]))

static char files[128][256];
static int nf;

/* Job k: a directory mutation (k < N_DIR_CMDS) or a (file, mutation) pair;
 * returns 0 when the pair does not apply. */
static int job_applies(int k, int *file, mutation *m) {
  if (k < N_DIR_CMDS)
    return 1;
  k -= N_DIR_CMDS;
  *file = k / M_COUNT;
  *m = (mutation)(k % M_COUNT);
  const char *f = files[*file];
  int npy = ends_with(f, ".npy"), json = ends_with(f, ".json");
  int for_npy = *m <= M_UNALIGN,
      for_json = *m <= M_TRUNC_ZERO || *m == M_FLIP_HEADER ||
                 (*m >= M_MISSING && *m <= M_DIR) || *m >= M_JSON_EMPTY;
  return (npy && for_npy) || (json && for_json);
}

static void do_job(int k) {
  if (fresh_copy() != 0) {
    n_findings++;
    fprintf(stderr, "  cannot copy the base run\n");
    return;
  }
  if (k < N_DIR_CMDS) {
    char c1[8000], *o = c1;
    for (const char *p = dir_cmds[k][0]; *p; p++)
      o += *p == 'W' ? sprintf(o, "'%s'", work) : sprintf(o, "%c", *p);
    if (td_t_system(c1) == 0)
      check_all(dir_cmds[k][1]);
    return;
  }
  int fi;
  mutation m;
  if (!job_applies(k, &fi, &m))
    return;
  mutate_file(files[fi], m);
  char what[400];
  snprintf(what, sizeof what, "%s %s", files[fi], mut_names[m]);
  check_all(what);
}

/* Runs the selected jobs in two worker processes (the suite's two cores);
 * each writes its counts to a file the parent adds up. */
static void run_jobs(int all) {
  int n_jobs = N_DIR_CMDS + nf * M_COUNT, sel[4096], ns = 0, applicable = 0;
  for (int k = 0; k < n_jobs && ns < 4096; k++) {
    int fi;
    mutation m;
    if (!job_applies(k, &fi, &m))
      continue;
    /* by default every third applicable mutation (all directory ones):
     * every kind of damage on many files within the time budget */
    if (all || k < N_DIR_CMDS || applicable % 3 == 0)
      sel[ns++] = k;
    applicable++;
  }
  pid_t pids[2];
  for (int w = 0; w < 2; w++) {
    fflush(NULL);
    if ((pids[w] = fork()) == 0) {
      snprintf(work, sizeof work, "%s/work%d", dir, w);
      for (int i = w; i < ns; i += 2)
        do_job(sel[i]);
      char p[4300];
      snprintf(p, sizeof p, "%s/counts%d", dir, w);
      FILE *f = fopen(p, "w");
      if (f) {
        fprintf(f, "%d %d %d %d %d\n", n_mut, n_runs, n_clean, n_info_rejects,
                n_findings);
        fclose(f);
      }
      _exit(0);
    }
  }
  for (int w = 0; w < 2; w++) {
    int st;
    waitpid(pids[w], &st, 0);
    char p[4300];
    snprintf(p, sizeof p, "%s/counts%d", dir, w);
    FILE *f = fopen(p, "r");
    int c[5] = {0, 0, 0, 0, 1};
    if (!f ||
        fscanf(f, "%d %d %d %d %d", &c[0], &c[1], &c[2], &c[3], &c[4]) != 5)
      fprintf(stderr, "  worker %d left no counts (status %d)\n", w, st);
    if (f)
      fclose(f);
    n_mut += c[0], n_runs += c[1], n_clean += c[2], n_info_rejects += c[3];
    n_findings += c[4];
  }
}

static void test_mutations(void) {
  char cmd[40000];
  snprintf(base, sizeof base, "%s/base", dir);
  snprintf(work, sizeof work, "%s/work", dir);
  snprintf(cmd, sizeof cmd,
           "rm -rf '%s' && TD_THREADS=2 '%s' train --out '%s' --limit 300 "
           "--epochs 2 --quiet >/dev/null && TD_THREADS=2 '%s' project '%s' "
           "--res 16 >/dev/null 2>&1 && '%s' eval '%s' >/dev/null && '%s' "
           "suspects '%s' >/dev/null",
           base, bin, base, bin, base, bin, base, bin, base);
  CHECK_INT(td_t_system(cmd), ==, 0);
  nf = list_files(base, "", files, 0, 128);
  CHECK(nf > 20);
  time_t t0 = time(NULL);
  /* The valid run itself: every command succeeds. */
  CHECK_INT(fresh_copy(), ==, 0);
  for (int c = 0; c < CMD_COUNT; c++) {
    char *t;
    int st = run_cmd(c, &t);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || sanitizer_report(t))
      fprintf(stderr, "  tardis %s on the valid run: status %d\n%s\n",
              cmd_names[c], st, t ? t : "");
    int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0 && !sanitizer_report(t);
    free(t);
    CHECK(ok);
  }
  const char *all = getenv("TD_MUTATION_ALL");
  run_jobs(all && *all == '1');
  fprintf(stderr,
          "  mutation test: %d mutations x %d commands = %d runs in %lld s: "
          "%d rejected by info, %d clean errors (exit 1, no report), %d "
          "findings\n",
          n_mut, CMD_COUNT, n_runs, (long long)(time(NULL) - t0),
          n_info_rejects, n_clean, n_findings);
  CHECK_INT(n_findings, ==, 0);
  CHECK_INT(n_mut, >=, 150);
}

int main(void) {
  if (td_t_cli_setup(bin, sizeof bin, dir, sizeof dir, "mutation"))
    return 1;
  RUN(test_mutations);
  return td_t_finish();
}
