/* The table-driven option parser of the tardis commands (see args.h). */
#include "cli/args.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "tardis/error.h"

/* ---- messages ------------------------------------------------------------ */

static void vfail(const td_args_cmd *cmd, const char *fmt, va_list ap) {
  fprintf(stderr, "tardis %s: ", cmd->name);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n(see 'tardis %s --help')\n", cmd->name);
}

int td_args_fail(const td_args_cmd *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfail(cmd, fmt, ap);
  va_end(ap);
  return 2;
}

/* "dvi, pca or none" */
static void join_choices(const char *const *c, char *buf, size_t n) {
  size_t len = 0;
  buf[0] = '\0';
  for (int i = 0; c[i]; i++) {
    const char *sep = i == 0 ? "" : c[i + 1] ? ", " : " or ";
    int w = snprintf(buf + len, n - len, "%s%s", sep, c[i]);
    if (w < 0 || (size_t)w >= n - len)
      return; /* the lists are short; a cut one still reads */
    len += (size_t)w;
  }
}

/* The bounds of a numeric option in words: "from 8 to 4096", "> 0",
 * "≥ 0 and < 1", or "" when unbounded. */
static void bounds(const td_opt *o, char *buf, size_t n) {
  int has_lo = o->lo > -TD_ARG_INF, has_hi = o->hi < TD_ARG_INF;
  int gt = (o->flags & TD_ARG_GT) != 0, lt = (o->flags & TD_ARG_LT) != 0;
  if (has_lo && has_hi && !gt && !lt)
    snprintf(buf, n, " from %.15g to %.15g", o->lo, o->hi);
  else if (has_lo && has_hi)
    snprintf(buf, n, " %s %.15g and %s %.15g", gt ? ">" : "≥", o->lo,
             lt ? "<" : "≤", o->hi);
  else if (has_lo)
    snprintf(buf, n, " %s %.15g", gt ? ">" : "≥", o->lo);
  else if (has_hi)
    snprintf(buf, n, " %s %.15g", lt ? "<" : "≤", o->hi);
  else
    buf[0] = '\0';
}

/* What the option's value must be: "a number > 0", "dvi or pca", ... */
static void expected(const td_opt *o, char *buf, size_t n) {
  char b[128];
  switch (o->kind) {
  case TD_ARG_INT:
  case TD_ARG_INT64:
    bounds(o, b, sizeof b);
    snprintf(buf, n, "an integer%s", b);
    break;
  case TD_ARG_DOUBLE:
    bounds(o, b, sizeof b);
    snprintf(buf, n, "a number%s", b);
    break;
  case TD_ARG_SEED:
    snprintf(buf, n, "an integer from 0 to %llu",
             (unsigned long long)UINT64_MAX);
    break;
  case TD_ARG_CHOICE:
  case TD_ARG_CHOICE_STR:
    join_choices(o->choices, buf, n);
    break;
  case TD_ARG_RANGE:
    snprintf(buf, n, "A:B with %.15g ≤ A ≤ B", o->lo);
    break;
  default:
    snprintf(buf, n, "%s", o->meta ? o->meta : "a value");
    break;
  }
}

/* ---- values -------------------------------------------------------------- */

/* A whole decimal integer: optional sign, digits, nothing after. */
static int parse_ll(const char *s, long long *out) {
  if (!(isdigit((unsigned char)*s) ||
        ((*s == '-' || *s == '+') && isdigit((unsigned char)s[1]))))
    return -1;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (*end || errno)
    return -1;
  *out = v;
  return 0;
}

static int in_bounds(const td_opt *o, double v) {
  if (v < o->lo || v > o->hi)
    return 0;
  if ((o->flags & TD_ARG_GT) && v == o->lo)
    return 0;
  return !((o->flags & TD_ARG_LT) && v == o->hi);
}

/* "A:B", "A:", ":B" or "A" into r[0..1], an open side as 0. */
static int parse_range(const char *s, double lo, int r[2]) {
  const char *colon = strchr(s, ':');
  size_t la = colon ? (size_t)(colon - s) : strlen(s);
  const char *side[2] = {s, colon ? colon + 1 : s};
  size_t len[2] = {la, colon ? strlen(colon + 1) : la};
  if (len[0] == 0 && len[1] == 0)
    return -1;
  for (int i = 0; i < 2; i++) {
    r[i] = 0;
    if (len[i] == 0)
      continue;
    char num[24];
    long long v;
    if (len[i] >= sizeof num)
      return -1;
    memcpy(num, side[i], len[i]);
    num[len[i]] = '\0';
    if (!isdigit((unsigned char)num[0]) || parse_ll(num, &v) || v > INT_MAX ||
        (double)v < lo)
      return -1;
    r[i] = (int)v;
  }
  return r[0] && r[1] && r[0] > r[1] ? -1 : 0;
}

static int find_choice(const char *const *c, const char *v) {
  for (int i = 0; c[i]; i++)
    if (!strcmp(c[i], v))
      return i;
  return -1;
}

/* Stores v into o->dst; 0, or -1 when v is not what o takes. */
static int set_value(td_opt *o, const char *v) {
  long long ll;
  switch (o->kind) {
  case TD_ARG_INT:
    if (parse_ll(v, &ll) || ll < INT_MIN || ll > INT_MAX ||
        !in_bounds(o, (double)ll))
      return -1;
    *(int *)o->dst = (int)ll;
    return 0;
  case TD_ARG_INT64:
    if (parse_ll(v, &ll) || !in_bounds(o, (double)ll))
      return -1;
    *(int64_t *)o->dst = ll;
    return 0;
  case TD_ARG_DOUBLE: {
    char *end;
    if (!*v || isspace((unsigned char)*v))
      return -1;
    double d = strtod(v, &end);
    if (*end || !isfinite(d) || !in_bounds(o, d))
      return -1;
    *(double *)o->dst = d;
    return 0;
  }
  case TD_ARG_SEED: {
    char *end;
    if (!isdigit((unsigned char)*v))
      return -1;
    errno = 0;
    unsigned long long u = strtoull(v, &end, 10);
    if (*end || errno)
      return -1;
    *(uint64_t *)o->dst = u;
    return 0;
  }
  case TD_ARG_STRING:
    *(const char **)o->dst = v;
    return 0;
  case TD_ARG_CHOICE:
  case TD_ARG_CHOICE_STR: {
    int i = find_choice(o->choices, v);
    if (i < 0)
      return -1;
    if (o->kind == TD_ARG_CHOICE_STR)
      *(const char **)o->dst = o->choices[i];
    else
      *(int *)o->dst = o->values ? o->values[i] : i;
    return 0;
  }
  case TD_ARG_RANGE:
    return parse_range(v, o->lo, o->dst);
  default:
    TD_ASSERT(!"option kind without a value");
    return -1;
  }
}

static int takes_value(const td_opt *o) {
  return o->kind != TD_ARG_FLAG && o->kind != TD_ARG_UNFLAG;
}

/* ---- lookup -------------------------------------------------------------- */

/* Edit distance with adjacent transpositions ("prot" is one from "port"),
 * for names of up to 63 characters; larger otherwise. */
static int distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 63 || lb > 63)
    return INT_MAX;
  int d[64][64];
  for (size_t i = 0; i <= la; i++)
    for (size_t j = 0; j <= lb; j++) {
      if (i == 0 || j == 0) {
        d[i][j] = (int)(i + j);
        continue;
      }
      int sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
      int del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
      int best = sub < del ? sub : del;
      best = ins < best ? ins : best;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
          d[i - 2][j - 2] + 1 < best)
        best = d[i - 2][j - 2] + 1;
      d[i][j] = best;
    }
  return d[la][lb];
}

/* The option a mistyped name most likely meant: one it begins, or one at
 * most two edits away (and closer than the name's own length); NULL. */
static const char *suggest(const td_args_cmd *cmd, const char *name) {
  const char *best = NULL;
  int best_d = 3;
  size_t n = strlen(name);
  for (const td_opt *o = cmd->opts; o->name; o++) {
    int d = n && !strncmp(o->name, name, n) ? 1 : distance(name, o->name);
    if (d < best_d && d < (int)n) {
      best = o->name;
      best_d = d;
    }
  }
  if (!best && !strncmp("help", name, n > 0 ? n : 1))
    best = "help";
  return best;
}

static td_opt *find_long(td_args_cmd *cmd, const char *name, size_t len) {
  for (td_opt *o = cmd->opts; o->name; o++)
    if (strlen(o->name) == len && !strncmp(o->name, name, len))
      return o;
  return NULL;
}

static td_opt *find_short(td_args_cmd *cmd, char c) {
  for (td_opt *o = cmd->opts; o->name; o++)
    if (o->short_name && o->short_name == c)
      return o;
  return NULL;
}

int td_args_given(const td_args_cmd *cmd, const char *name) {
  for (const td_opt *o = cmd->opts; o->name; o++)
    if (!strcmp(o->name, name))
      return o->given;
  TD_ASSERT(!"td_args_given: no such option in the table");
  return 0;
}

/* ---- parsing ------------------------------------------------------------- */

static int unknown(const td_args_cmd *cmd, const char *arg) {
  char name[64]; /* a longer unknown option is shown cut: a message */
  size_t len = strcspn(arg, "=");
  snprintf(name, sizeof name, "%.*s", (int)len, arg);
  const char *s = arg[1] == '-' ? suggest(cmd, name + 2) : NULL;
  if (s)
    return td_args_fail(cmd, "unknown option %s (did you mean --%s?)", name, s);
  return td_args_fail(cmd, "unknown option %s", name);
}

/* One option at argv[*i], with its value inline (--x=v, -xv) or next. */
static int parse_option(td_args_cmd *cmd, int argc, char **argv, int *i) {
  const char *arg = argv[*i], *inline_val = NULL;
  td_opt *o;
  if (arg[1] == '-') {
    size_t len = strcspn(arg + 2, "=");
    o = find_long(cmd, arg + 2, len);
    if (arg[2 + len] == '=')
      inline_val = arg + 3 + len;
  } else {
    o = find_short(cmd, arg[1]);
    if (arg[2])
      inline_val = arg + 2;
  }
  if (!o || (arg[1] != '-' && inline_val && !takes_value(o)))
    return unknown(cmd, arg);
  o->given = 1;
  char what[160];
  if (!takes_value(o)) {
    if (inline_val)
      return td_args_fail(cmd, "--%s: takes no value, got \"%s\"", o->name,
                          inline_val);
    *(int *)o->dst = o->kind == TD_ARG_FLAG;
    return 0;
  }
  const char *v = inline_val;
  if (!v) {
    if (*i + 1 >= argc) {
      expected(o, what, sizeof what);
      return td_args_fail(cmd, "--%s: missing value (%s)", o->name, what);
    }
    v = argv[++*i];
  }
  if (set_value(o, v)) {
    expected(o, what, sizeof what);
    return td_args_fail(cmd, "--%s: expected %s, got \"%s\"", o->name, what, v);
  }
  return 0;
}

static int is_help(const char *a) {
  return !strcmp(a, "--help") || !strcmp(a, "-h");
}

/* What must be there once argv is read: required options, positionals. */
static int check_complete(const td_args_cmd *cmd, int n_pos) {
  for (const td_opt *o = cmd->opts; o->name; o++)
    if ((o->flags & TD_ARG_REQUIRED) && !o->given)
      return td_args_fail(cmd, "missing --%s %s", o->name,
                          o->meta ? o->meta : "");
  if (cmd->pos && cmd->pos[n_pos].name)
    return td_args_fail(cmd, "missing %s", cmd->pos[n_pos].name);
  return 0;
}

int td_args_parse(td_args_cmd *cmd, int argc, char **argv, int *status) {
  int n_pos = 0, options_done = 0;
  for (td_opt *o = cmd->opts; o->name; o++)
    o->given = 0;
  /* Left to right, stopping at the first error or --help (as getopt). */
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!options_done && !strcmp(a, "--")) {
      options_done = 1;
    } else if (!options_done && is_help(a)) {
      td_args_usage(cmd, stdout);
      *status = 0;
      return 0;
    } else if (!options_done && a[0] == '-' && a[1]) {
      if ((*status = parse_option(cmd, argc, argv, &i)))
        return 0;
    } else if (cmd->pos && cmd->pos[n_pos].name) {
      *cmd->pos[n_pos++].dst = a;
    } else {
      *status = td_args_fail(cmd, "unexpected argument \"%s\"", a);
      return 0;
    }
  }
  *status = check_complete(cmd, n_pos);
  return *status == 0;
}

/* ---- help ---------------------------------------------------------------- */

/* "-o, --out RUN", "--method dvi|pca", "--force". The option tables are
 * static and no label comes near the callers' 256 bytes. */
static void label(const td_opt *o, char *buf, size_t n) {
  int len = 0;
  if (o->short_name)
    len = snprintf(buf, n, "-%c, ", o->short_name);
  len += snprintf(buf + len, n - (size_t)len, "--%s", o->name);
  if (!takes_value(o))
    return;
  if (o->meta) {
    snprintf(buf + len, n - (size_t)len, " %s", o->meta);
    return;
  }
  for (int i = 0; o->choices && o->choices[i] && (size_t)len < n; i++)
    len += snprintf(buf + len, n - (size_t)len, "%c%s", i ? '|' : ' ',
                    o->choices[i]);
}

/* Help text, continuation lines indented to column col. */
static void print_help_text(FILE *f, const char *h, int col) {
  for (const char *nl; (nl = strchr(h, '\n')); h = nl + 1)
    fprintf(f, "%.*s\n%*s", (int)(nl - h), h, col, "");
  fprintf(f, "%s\n", h);
}

void td_args_usage(const td_args_cmd *cmd, FILE *f) {
  const char *u = cmd->usage;
  for (int first = 1;; first = 0) {
    size_t len = strcspn(u, "\n");
    if (u[0] == ' ') /* a continuation of the form above */
      fprintf(f, "%.*s\n", (int)len, u);
    else
      fprintf(f, "%s tardis %.*s\n", first ? "usage:" : "      ", (int)len, u);
    if (!u[len])
      break;
    u += len + 1;
  }
  if (cmd->about)
    fprintf(f, "\n%s\n", cmd->about);
  enum { MAX_LABEL = 20 };
  char buf[256];
  int width = 10; /* "-h, --help" */
  for (const td_opt *o = cmd->opts; o->name; o++) {
    label(o, buf, sizeof buf);
    int w = (int)strlen(buf);
    if (w <= MAX_LABEL && w > width)
      width = w;
  }
  int col = 2 + width + 2;
  fprintf(f, "\n");
  for (const td_opt *o = cmd->opts; o->name; o++) {
    label(o, buf, sizeof buf);
    if ((int)strlen(buf) > width)
      fprintf(f, "  %s\n%*s", buf, col, "");
    else
      fprintf(f, "  %-*s  ", width, buf);
    print_help_text(f, o->help ? o->help : "", col);
  }
  fprintf(f, "  %-*s  show this help\n", width, "-h, --help");
  if (cmd->after)
    fprintf(f, "\n%s\n", cmd->after);
}
