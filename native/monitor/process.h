/* The container process's own attributes, applied in the child just before
 * execve: signals, rlimits, oom_score_adj, user, capabilities,
 * no_new_privs, cwd; then the PATH lookup and execve. Shared by the run
 * and exec modes. */
#ifndef CAPSA_PROCESS_H
#define CAPSA_PROCESS_H

#include "spec.h"

/* Default dispositions and an empty mask, as a fresh process expects. */
int proc_reset_signals(void);
/* rlimits, oom_score_adj, the seccomp filter built, groups/gid/uid,
 * capabilities, no_new_privs, chdir. Without no_new_privs the filter is
 * loaded here, before the credentials change (the kernel wants
 * CAP_SYS_ADMIN then); with it, proc_exec loads it just before execve. */
int proc_setup(const struct process_spec *p);
/* oom_score_adj alone, for a process about to join a user namespace (where
 * /proc/self/oom_score_adj is not writable); proc_setup keeps the value. */
int proc_oom_score_adj(const struct process_spec *p);
/* Loads a filter still pending, resolves args[0] against PATH from p->env
 * and execs; returns -1 with g_err = "exec: <reason>: <path>" on failure. */
int proc_exec(const struct process_spec *p);

/* seccomp.c: linux.seccomp (v may be NULL: none). seccomp_check validates
 * the shape without libseccomp (run where the spec is read);
 * seccomp_build makes the filter in this process (idempotent; unknown
 * syscall names are logged and skipped); seccomp_install loads it (no-op
 * when none is pending). */
int seccomp_check(const struct jval *v);
int seccomp_build(const struct jval *v);
int seccomp_install(void);

#endif
