/* Cgroup placement, OOM counters and cgroup-wide kill. The daemon creates
 * and configures the cgroups; the monitor only writes pids and reads. */
#ifndef CAPSA_CGROUPS_H
#define CAPSA_CGROUPS_H

#include <stdint.h>
#include <sys/types.h>

/* Writes pid into every cgroup.procs file listed (NULL-terminated). */
int cg_place(const char *const *procs_files, pid_t pid);
/* oom_kill counter of a memory cgroup dir (v1 memory.oom_control or v2
 * memory.events); -1 when unknown. */
int64_t cg_oom_kills(const char *memory_cgroup);
/* SIGKILLs every process listed in the cgroup.procs files until they are
 * empty or the deadline passes. Returns the number of signals sent. */
int cg_kill_all(const char *const *procs_files, unsigned timeout_ms);

#endif
