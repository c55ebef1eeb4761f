/* The option parser every tardis command shares. A command declares its
 * options in a table (name, kind, accepted range, where the value goes, a
 * help line) and its positional arguments; td_args_parse checks argv
 * against them, prints uniform messages on stderr and the help generated
 * from the table, so all commands read and refuse arguments the same way:
 *
 *     tardis train: --lr: expected a number > 0, got "abc"
 *     tardis serve: unknown option --prot (did you mean --port?)
 *     tardis eval: missing RUN
 *
 * Conventions: "--name value" or "--name=value"; options and positional
 * arguments in any order; "--" ends the options; the last of a repeated
 * option wins; "-h"/"--help" prints the help on stdout (exit status 0);
 * every usage error exits with status 2.
 *
 *     int epochs = 30, force = 0;
 *     const char *run = NULL;
 *     td_opt opts[] = {
 *         TD_OPT_INT("epochs", &epochs, 1, TD_ARG_INF, "N", "default 30"),
 *         TD_OPT_FLAG("force", &force, "redo what is done"),
 *         TD_OPT_END};
 *     td_arg_pos pos[] = {{"RUN", &run}, {0}};
 *     td_args_cmd cmd = {.name = "demo", .usage = "demo RUN [options]",
 *                        .opts = opts, .pos = pos};
 *     int status;
 *     if (!td_args_parse(&cmd, argc, argv, &status))
 *       return status;                    // help shown (0) or bad usage (2)
 */
#ifndef TD_CLI_ARGS_H
#define TD_CLI_ARGS_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>

/* What an option takes, and the type of the variable its dst points to. */
typedef enum {
  TD_ARG_FLAG,       /* no value; int = 1 */
  TD_ARG_UNFLAG,     /* no value; int = 0 (the "--no-x" options) */
  TD_ARG_INT,        /* int in [lo, hi] */
  TD_ARG_INT64,      /* int64_t in [lo, hi] */
  TD_ARG_DOUBLE,     /* finite double in [lo, hi] (see TD_ARG_GT/LT) */
  TD_ARG_SEED,       /* uint64_t, any */
  TD_ARG_STRING,     /* const char *, pointing into argv */
  TD_ARG_CHOICE,     /* int = values[i] (or i) for the word choices[i] */
  TD_ARG_CHOICE_STR, /* const char * = choices[i] for that word */
  TD_ARG_RANGE,      /* int[2] from "A:B", "A:", ":B" or "A" with
                        lo <= A <= B; an open side stores 0 */
  TD_ARG_KIND_COUNT
} td_arg_kind;

/* Bits of td_opt.flags. */
enum {
  TD_ARG_GT = 1,      /* DOUBLE: lo itself is refused (x > lo) */
  TD_ARG_LT = 2,      /* DOUBLE: hi itself is refused (x < hi) */
  TD_ARG_REQUIRED = 4 /* the option must be given */
};

/* An unbounded side of a numeric range. */
#define TD_ARG_INF HUGE_VAL

typedef struct td_opt {
  const char *name; /* long name without "--"; NULL ends the table */
  char short_name;  /* "-x" spelling, or 0 */
  td_arg_kind kind;
  void *dst;                  /* where the value goes (type: see the kind) */
  double lo, hi;              /* numeric range; RANGE: lo bounds A and B */
  unsigned flags;             /* TD_ARG_GT | TD_ARG_LT | TD_ARG_REQUIRED */
  const char *const *choices; /* CHOICE, CHOICE_STR: NULL-terminated */
  const int *values;          /* CHOICE: stored per choice; NULL: index */
  const char *meta;           /* the value's name in help ("N"); NULL: the
                                 choices joined by '|' */
  const char *help;           /* '\n' continues on an indented line */
  int given;                  /* set by td_args_parse */
} td_opt;

#define TD_OPT_END                                                             \
  { 0 }
#define TD_OPT_FLAG(nm, d, hl)                                                 \
  { .name = nm, .kind = TD_ARG_FLAG, .dst = d, .help = hl }
#define TD_OPT_UNFLAG(nm, d, hl)                                               \
  { .name = nm, .kind = TD_ARG_UNFLAG, .dst = d, .help = hl }
#define TD_OPT_INT(nm, d, l, h, mt, hl)                                        \
  {                                                                            \
    .name = nm, .kind = TD_ARG_INT, .dst = d, .lo = l, .hi = h, .meta = mt,    \
    .help = hl                                                                 \
  }
#define TD_OPT_INT64(nm, d, l, h, mt, hl)                                      \
  {                                                                            \
    .name = nm, .kind = TD_ARG_INT64, .dst = d, .lo = l, .hi = h, .meta = mt,  \
    .help = hl                                                                 \
  }
#define TD_OPT_DOUBLE(nm, d, l, h, fl, mt, hl)                                 \
  {                                                                            \
    .name = nm, .kind = TD_ARG_DOUBLE, .dst = d, .lo = l, .hi = h,             \
    .flags = fl, .meta = mt, .help = hl                                        \
  }
#define TD_OPT_SEED(nm, d, hl)                                                 \
  { .name = nm, .kind = TD_ARG_SEED, .dst = d, .meta = "S", .help = hl }
#define TD_OPT_STRING(nm, d, mt, hl)                                           \
  { .name = nm, .kind = TD_ARG_STRING, .dst = d, .meta = mt, .help = hl }
#define TD_OPT_CHOICE(nm, d, ch, vals, hl)                                     \
  {                                                                            \
    .name = nm, .kind = TD_ARG_CHOICE, .dst = d, .choices = ch,                \
    .values = vals, .help = hl                                                 \
  }
#define TD_OPT_CHOICE_STR(nm, d, ch, hl)                                       \
  { .name = nm, .kind = TD_ARG_CHOICE_STR, .dst = d, .choices = ch, .help = hl }
#define TD_OPT_RANGE(nm, d, l, mt, hl)                                         \
  {                                                                            \
    .name = nm, .kind = TD_ARG_RANGE, .dst = d, .lo = l, .meta = mt,           \
    .help = hl                                                                 \
  }

/* A required positional argument, stored as a pointer into argv. */
typedef struct td_arg_pos {
  const char *name; /* "RUN"; NULL ends the list */
  const char **dst;
} td_arg_pos;

/* A command: its options, positionals and help text. */
typedef struct td_args_cmd {
  const char *name;      /* "train": messages start "tardis train: " */
  const char *usage;     /* synopsis after "usage: tardis "; '\n' separates
                            alternative forms, and a line that starts with a
                            space continues the form above (printed as is) */
  const char *about;     /* paragraph between the synopsis and the options */
  const char *after;     /* paragraph after the options, or NULL */
  td_opt *opts;          /* table ended by TD_OPT_END */
  const td_arg_pos *pos; /* list ended by {0}, or NULL */
} td_args_cmd;

/* Parses argv[1..argc-1] (argv[0] is the command's name) into the table's
 * destinations; what is not given keeps its value, so callers set defaults
 * first. Returns 1 when the command should run, or 0 with *status the exit
 * status to return: 0 after printing the help on stdout, 2 after printing
 * a usage error on stderr. */
int td_args_parse(td_args_cmd *cmd, int argc, char **argv, int *status);

/* Whether the option named `name` was given (it must be in the table). */
int td_args_given(const td_args_cmd *cmd, const char *name);

/* Prints "tardis <cmd>: <message>" and the pointer to --help on stderr, for
 * usage errors the table cannot express (options that exclude each other).
 * Returns 2, the exit status of a usage error. */
int td_args_fail(const td_args_cmd *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prints the help generated from the command's table to f. */
void td_args_usage(const td_args_cmd *cmd, FILE *f);

#endif
