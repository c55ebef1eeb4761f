/* The tardis subcommands. Each takes argc/argv after the subcommand name
 * (argv[0] is the subcommand) and returns the process exit status. */
#ifndef TD_CLI_COMMANDS_H
#define TD_CLI_COMMANDS_H

#include "tardis/project.h"
#include "tardis/server.h"

int td_cmd_train(int argc, char **argv);
int td_cmd_info(int argc, char **argv);
int td_cmd_project(int argc, char **argv);
int td_cmd_eval(int argc, char **argv);
int td_cmd_render(int argc, char **argv);
int td_cmd_serve(int argc, char **argv);
int td_cmd_suspects(int argc, char **argv);
int td_cmd_alerts(int argc, char **argv);
int td_cmd_watch(int argc, char **argv);
int td_cmd_diagnose(int argc, char **argv);
int td_cmd_repair(int argc, char **argv);

/* Applies the TD_PROJ_* environment variables (experiments,
 * docs/projection.md) to o: src/cli/proj_env.c. */
void td_cli_proj_env(td_project_opts *o);

/* tardis train --serve (src/cli/train_serve.c): the server follows the run
 * from training's first progress report on, when the run exists. */
typedef struct td_cli_train_server {
  int want; /* --serve given and the server not started yet */
  int tty;
  td_server_opts opts; /* follow = 1, run_dir = --out */
  td_server *srv;
} td_cli_train_server;
void td_cli_train_serve_start(td_cli_train_server *t);
/* trained: serve on until Ctrl-C; then (or at once) stop the server. */
void td_cli_train_serve_finish(td_cli_train_server *t, int trained);

#endif
