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
/* The OOM-invocation count (v1: -1, the count comes from notifications;
 * v2: memory.events "oom"); -1 when unknown. */
int64_t cg_oom_invocations(const char *memory_cgroup);
/* A fd that becomes readable when the memory cgroup goes out of memory:
 * v1 an eventfd registered on memory.oom_control, v2 an inotify watch on
 * memory.events. -1 when there is none. *is_v1 tells which. The counters
 * must be read while the cgroup exists: a cgroup manager (systemd) may
 * remove an emptied cgroup before the init's exit is handled. */
int cg_oom_watch(const char *memory_cgroup, int *is_v1);
/* Reads the pending notifications of a cg_oom_watch fd: how many (v1: the
 * eventfd's count; v2: at least 1 per read of inotify events), 0 if none. */
uint64_t cg_oom_drain(int fd);
/* SIGKILLs every process listed in the cgroup.procs files until they are
 * empty or the deadline passes. Returns the number of signals sent. */
int cg_kill_all(const char *const *procs_files, unsigned timeout_ms);

#endif
