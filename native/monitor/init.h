/* The container init, from clone() to execve(). Runs in the child; every
 * failure is sent to the monitor as an 'E' message and the child exits. */
#ifndef CAPSA_INIT_H
#define CAPSA_INIT_H

#include "spec.h"

struct init_args {
	const struct spec *s;
	int sock;         /* child end of the sync socket (CLOEXEC) */
	int ns_fds[8];    /* fds of s->ns[i].path, -1 for new ones */
	int stdin_fd;     /* pipe read end or /dev/null (not for a tty) */
	int stdout_fd, stderr_fd;
	int new_userns;   /* created by clone(): become root in it */
};

/* Sync protocol:
 *   monitor -> init: 'G' go (id maps written): namespaces and filesystem
 *   monitor -> init: 'P' placed in its cgroups (done while the init builds
 *                    its filesystem); the init waits for it before its
 *                    cgroup namespace and everything after
 *   init -> monitor: 'T' + pty master fd (tty only)
 *   init -> monitor: 'R' ready, blocked just before execve
 *   monitor -> init: 'X' exec
 *   init -> monitor: 'E' + "<stage>: <reason>" on any failure
 * The init's end is CLOEXEC, so EOF after 'X' means execve succeeded. */
void init_main(struct init_args *a) __attribute__((noreturn));

#endif
