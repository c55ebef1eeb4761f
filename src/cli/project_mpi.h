/* The MPI driver of `tardis project` (project_mpi.c, built with
 * -DTD_MPI=ON only). */
#ifndef TARDIS_CLI_PROJECT_MPI_H
#define TARDIS_CLI_PROJECT_MPI_H

#include "tardis/project.h"

/* 1 when this process was started by an MPI launcher (mpirun). */
int td_cli_mpi_launched(void);

/* td_project over the processes of MPI_COMM_WORLD, one block of epochs
 * each (one process: td_project itself). Initialises and finalises MPI.
 * *rank: this process's rank (only rank 0 prints the summary). */
TD_NODISCARD int td_cli_project_mpi(td_run *run, const td_project_opts *o,
                                    td_project_summary *s, int *rank,
                                    td_err *err);

#endif
