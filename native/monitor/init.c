#define _GNU_SOURCE
#include "init.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mounts.h"
#include "process.h"
#include "util.h"

static void die(struct init_args *a) __attribute__((noreturn));
static void die(struct init_args *a)
{
	char rec[REC_MAX];

	err_json(rec, sizeof(rec));
	(void)chan_send(a->sock, 'E', rec, -1);
	_exit(1);
}

static void expect(struct init_args *a, char want)
{
	char type;
	int r = chan_recv(a->sock, &type, NULL, 0, NULL);

	if (r <= 0)
		_exit(1); /* the monitor is gone */
	if (type != want) {
		err_msg("sync: expected '%c', got '%c'", want, type);
		die(a);
	}
}

static int become_root(void)
{
	if (setresgid(0, 0, 0) < 0)
		return err_sys("setresgid in user namespace", NULL);
	if (setresuid(0, 0, 0) < 0)
		return err_sys("setresuid in user namespace", NULL);
	return 0;
}

/* The fd of the user namespace the spec joins by path, -1 for none. */
static int joined_userns(const struct init_args *a)
{
	size_t i;

	for (i = 0; i < a->s->nns; i++)
		if (a->s->ns[i].type == CLONE_NEWUSER && a->ns_fds[i] >= 0)
			return a->ns_fds[i];
	return -1;
}

/* Joins the namespaces given by path (user first), then creates the rest. */
static int namespaces(struct init_args *a)
{
	const struct spec *s = a->s;
	int flags = CLONE_NEWNS;
	size_t i;

	for (i = 0; i < s->nns; i++) {
		if (s->ns[i].type != CLONE_NEWUSER || a->ns_fds[i] < 0)
			continue;
		if (setns(a->ns_fds[i], CLONE_NEWUSER) < 0)
			return err_sys("setns user", s->ns[i].path);
		if (become_root() < 0)
			return -1;
	}
	for (i = 0; i < s->nns; i++) {
		int t = s->ns[i].type;
		if (t == CLONE_NEWUSER || t == CLONE_NEWPID)
			continue; /* handled at clone time */
		if (a->ns_fds[i] < 0) {
			flags |= t;
			continue;
		}
		if (setns(a->ns_fds[i], t) < 0)
			return err_sys("setns", s->ns[i].path);
	}
	/* A new cgroup namespace waits for the placement ('P', cgroup_namespace()). */
	if (unshare(flags & ~CLONE_NEWCGROUP) < 0)
		return err_sys("unshare", NULL);
	return 0;
}

/* Once placed in its cgroups: a new cgroup namespace is rooted there. */
static int cgroup_namespace(struct init_args *a)
{
	size_t i;

	for (i = 0; i < a->s->nns; i++)
		if (a->s->ns[i].type == CLONE_NEWCGROUP && a->ns_fds[i] < 0 && unshare(CLONE_NEWCGROUP) < 0)
			return err_sys("unshare cgroup", NULL);
	return 0;
}

static int sysctls(const struct spec *s)
{
	size_t i;

	for (i = 0; i < s->nsysctl; i++) {
		char path[PATH_MAX], *p;
		int fd;
		snprintf(path, sizeof(path), "/proc/sys/%s", s->sysctl[i].key);
		for (p = path + 10; *p; p++)
			if (*p == '.')
				*p = '/';
		fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			return err_sys("sysctl", s->sysctl[i].key);
		if (write_all(fd, s->sysctl[i].value, strlen(s->sysctl[i].value)) < 0) {
			err_sys("sysctl", s->sysctl[i].key);
			close(fd);
			return -1;
		}
		close(fd);
	}
	return 0;
}

/* Opens a pty in the container's own devpts and sends the master to the
 * monitor; returns the slave. */
static int open_tty(struct init_args *a)
{
	int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC), slave;

	if (master < 0)
		return err_sys("tty: open", "/dev/ptmx");
	if (unlockpt(master) < 0) {
		close(master);
		return err_sys("tty: unlockpt", "/dev/ptmx");
	}
	slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (slave < 0) {
		close(master);
		return err_sys("tty: open peer", "/dev/ptmx");
	}
	if (fchown(slave, a->s->proc.uid, a->s->proc.gid) < 0) {
		close(master);
		close(slave);
		return err_sys("tty: chown", NULL);
	}
	if (chan_send(a->sock, 'T', NULL, master) < 0) {
		close(master);
		close(slave);
		return -1;
	}
	close(master);
	return slave;
}

static int stdio(struct init_args *a, int tty)
{
	if (tty >= 0) {
		if (ioctl(tty, TIOCSCTTY, 0) < 0)
			return err_sys("tty: set controlling terminal", NULL);
		if (dup2(tty, 0) < 0 || dup2(tty, 1) < 0 || dup2(tty, 2) < 0)
			return err_sys("dup2 tty", NULL);
		if (tty > 2)
			close(tty);
		return 0;
	}
	if (dup2(a->stdin_fd, 0) < 0 || dup2(a->stdout_fd, 1) < 0 || dup2(a->stderr_fd, 2) < 0)
		return err_sys("dup2 stdio", NULL);
	return 0;
}

static int filesystem(struct init_args *a)
{
	const struct spec *s = a->s;

	umask(022);
	if (s->hostname && sethostname(s->hostname, strlen(s->hostname)) < 0)
		return err_sys("sethostname", s->hostname);
	if (mounts_setup(s) < 0 || mounts_pivot(s) < 0 || sysctls(s) < 0 || mounts_finish(s) < 0)
		return -1;
	return 0;
}

void init_main(struct init_args *a)
{
	int tty = -1;

	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || proc_reset_signals() < 0)
		die(a);
	expect(a, 'G');
	if (a->new_userns && become_root() < 0)
		die(a);
	/* Mount sources are opened, oom_score_adj set while still host root (see mounts.c). */
	if (joined_userns(a) >= 0 &&
	    (mounts_open_trees(a->s, joined_userns(a)) < 0 || proc_oom_score_adj(&a->s->proc) < 0))
		die(a);
	/* An OCI runtime makes the container's namespaces and filesystem itself. */
	if (!a->s->host_process && (namespaces(a) < 0 || filesystem(a) < 0))
		die(a);
	/* Nothing of the container runs before the monitor has placed us. */
	expect(a, 'P');
	if (cgroup_namespace(a) < 0)
		die(a);
	if (a->s->proc.terminal && (tty = open_tty(a)) < 0)
		die(a);
	if (setsid() < 0) {
		err_sys("setsid", NULL);
		die(a);
	}
	if (a->s->host_process) {
		/* The runtime keeps the monitor's credentials: it sets the container's. */
		if (chdir(a->s->proc.cwd) < 0) {
			err_sys("chdir", a->s->proc.cwd);
			die(a);
		}
	} else if (proc_setup(&a->s->proc) < 0) {
		die(a);
	}
	if (stdio(a, tty) < 0)
		die(a);
	if (close_range(3, ~0u, CLOSE_RANGE_CLOEXEC) < 0) {
		err_sys("close_range", NULL);
		die(a);
	}
	if (chan_send(a->sock, 'R', NULL, -1) < 0)
		_exit(1);
	expect(a, 'X');
	proc_exec(&a->s->proc);
	die(a);
}
