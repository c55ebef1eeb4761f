/* The `tardis` command: dispatches to one subcommand per file. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

static const struct {
  const char *name;
  int (*fn)(int, char **);
  const char *help;
} commands[] = {
    {"train", td_cmd_train,
     "train a classifier on a dataset and record every epoch"},
    {"info", td_cmd_info, "summarise and validate a run"},
    {"project", td_cmd_project,
     "project every epoch to an invertible 2-D canvas"},
    {"eval", td_cmd_eval, "measure the quality of a projection"},
    {"render", td_cmd_render, "draw an epoch as PNG, or the run as a GIF"},
    {"alerts", td_cmd_alerts,
     "geometry of each epoch and the alerts it raises"},
    {"serve", td_cmd_serve, "serve the web UI and JSON API of a run"},
    {"watch", td_cmd_watch,
     "follow a run while it trains, projecting each epoch"},
    {"suspects", td_cmd_suspects,
     "rank suspicious training samples; learn from feedback"},
    {"diagnose", td_cmd_diagnose,
     "per-label bugs of a model, layer probes and heat maps"},
    {"repair", td_cmd_repair,
     "fix a buggy model with pool inputs chosen by heat maps"},

};

static void usage(FILE *f) {
  fprintf(f, "usage: tardis <command> [options]\n\ncommands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
  fprintf(f, "\n'tardis <command> --help' describes one command.\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
      !strcmp(argv[1], "help")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(argv[1], "--version")) {
    printf("tardis 0.1.0\n");
    return 0;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (!strcmp(argv[1], commands[i].name))
      return commands[i].fn(argc - 1, argv + 1);
  fprintf(stderr, "tardis: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return 2;
}
