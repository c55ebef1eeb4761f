/* The tardis subcommands. Each takes argc/argv after the subcommand name
 * (argv[0] is the subcommand) and returns the process exit status. */
#ifndef TD_CLI_COMMANDS_H
#define TD_CLI_COMMANDS_H

int td_cmd_train(int argc, char **argv);
int td_cmd_info(int argc, char **argv);
int td_cmd_project(int argc, char **argv);
int td_cmd_eval(int argc, char **argv);
int td_cmd_render(int argc, char **argv);
int td_cmd_serve(int argc, char **argv);
int td_cmd_suspects(int argc, char **argv);

#endif
