/* The container process's own attributes, applied in the child just before
 * execve: signals, rlimits, oom_score_adj, user, capabilities,
 * no_new_privs, cwd; then the PATH lookup and execve. Shared by the run
 * and exec modes. */
#ifndef CAPSA_PROCESS_H
#define CAPSA_PROCESS_H

#include "spec.h"

/* Default dispositions and an empty mask, as a fresh process expects. */
int proc_reset_signals(void);
/* rlimits, oom_score_adj, groups/gid/uid, capabilities, no_new_privs, chdir. */
int proc_setup(const struct process_spec *p);
/* Resolves args[0] against PATH from p->env and execs; returns -1 with
 * g_err = "exec: <reason>: <path>" on failure. */
int proc_exec(const struct process_spec *p);

#endif
