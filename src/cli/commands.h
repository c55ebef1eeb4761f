/* The tardis subcommands. Each takes argc/argv after the subcommand name
 * (argv[0] is the subcommand) and returns the process exit status. */
#ifndef TD_CLI_COMMANDS_H
#define TD_CLI_COMMANDS_H

#include "tardis/project.h"

int td_cmd_train(int argc, char **argv);
int td_cmd_info(int argc, char **argv);
int td_cmd_project(int argc, char **argv);
int td_cmd_eval(int argc, char **argv);
int td_cmd_render(int argc, char **argv);
int td_cmd_serve(int argc, char **argv);
int td_cmd_suspects(int argc, char **argv);
int td_cmd_watch(int argc, char **argv);

/* Applies the TD_PROJ_* environment variables (experiments,
 * docs/projection.md) to o: src/cli/proj_env.c. */
void td_cli_proj_env(td_project_opts *o);

#endif
