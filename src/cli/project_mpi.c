/* `mpirun -np K tardis project RUN`: the epochs in K blocks, one per
 * process (td_project_block_*, docs/scale.md "Across processes"). Built
 * only with -DTD_MPI=ON; the library itself never calls MPI. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/project_mpi.h"

int td_cli_mpi_launched(void) {
  /* Open MPI's launcher (mpirun, or a PMIx server such as srun) sets
   * these; a plain `tardis project` never initialises MPI. */
  return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK");
}

/* Waits for every process without spinning: Open MPI's blocking
 * collectives poll at full speed, and a process that finished its block
 * early would take a core from one still projecting (K processes on K
 * cores). */
static void quiet_barrier(void) {
  MPI_Request req;
  int done = 0;
  MPI_Ibarrier(MPI_COMM_WORLD, &req);
  while (!done) {
    MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    if (!done)
      nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
  }
}

/* 1 everywhere when every process's step succeeded; a failing process has
 * said why on stderr. */
static int all_ok(int rc) {
  quiet_barrier();
  int mine = rc != TD_OK, any = 0;
  MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return !any;
}

static int steps(td_run *run, const td_project_opts *o, int rank, int size,
                 td_project_summary *s, td_err *err) {
  td_project_block *b = NULL;
  int rc = td_project_block_open(run, o, rank, size, &b, err);
  /* every process has read which epochs are done before any writes one */
  int ok = all_ok(rc);
  if (ok)
    ok = all_ok(rc = td_project_block_fit(b, s, err));
  double T[6], *all = calloc((size_t)size * 6, sizeof *all);
  if (ok && !all)
    rc = td_err_set(err, TD_ENOMEM, "out of memory");
  if (ok && rc == TD_OK)
    rc = td_project_block_border(b, T, err);
  /* every border is read before any block is rewritten */
  if (ok && all_ok(rc)) {
    MPI_Allgather(T, 6, MPI_DOUBLE, all, 6, MPI_DOUBLE, MPI_COMM_WORLD);
    td_project_block_chain(all, rank, T);
    ok = all_ok(rc = td_project_block_align(b, T, err));
  } else {
    ok = 0;
  }
  free(all);
  td_project_block_close(b);
  if (rc == TD_OK && !ok)
    rc = td_err_set(err, TD_EARG,
                    "another process failed (its message "
                    "above)");
  return rc;
}

int td_cli_project_mpi(td_run *run, const td_project_opts *o,
                       td_project_summary *s, int *rank_out, td_err *err) {
  int argc = 0, rank = 0, size = 1;
  char **argv = NULL;
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  *rank_out = rank;
  int rc;
  if (size == 1) {
    rc = td_project(run, o, s, err); /* the single-process path as is */
  } else {
    td_project_opts ob = *o;
    if (rank != 0)
      ob.progress = NULL; /* one voice on stderr */
    rc = steps(run, &ob, rank, size, s, err);
    /* the summary: every block's epochs, the slowest block's time */
    int n[2] = {s->projected, s->skipped}, tot[2];
    double t = s->seconds, tmax = 0;
    MPI_Reduce(n, tot, 2, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
    MPI_Reduce(&t, &tmax, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (rank == 0)
      s->projected = tot[0], s->skipped = tot[1], s->seconds = tmax;
  }
  MPI_Finalize();
  return rc;
}
