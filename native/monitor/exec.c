#define _GNU_SOURCE
#include "exec.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "caps.h"
#include "cgroups.h"
#include "process.h"
#include "spec.h"
#include "util.h"

/* Process tree:
 *   E  capsa-monitor exec (host namespaces): cgroup placement, output,
 *      timeout, and the final kill of everything the command started;
 *   C  shim in the container's namespaces, child subreaper: every orphan
 *      the command leaves is re-parented to it, so E can find them all as
 *      C's children (by host pid) and kill them;
 *   G  the command.
 * E <-> C messages (SOCK_SEQPACKET): E->C 'G' go; C->E 'S' started,
 * 'E' error, 'W' <wait status> when G exits. E closing the socket tells C
 * to exit. */

#define NNS 6
static const struct {
	const char *name;
	int type;
} ns_order[NNS] = { { "user", CLONE_NEWUSER }, { "ipc", CLONE_NEWIPC },       { "uts", CLONE_NEWUTS },
		    { "net", CLONE_NEWNET },   { "cgroup", CLONE_NEWCGROUP }, { "mnt", CLONE_NEWNS } };

struct out {
	int fd, file;
	const char *path;
	uint64_t bytes, written;
};

struct ex {
	struct exec_spec s;
	int ns_fds[NNS];
	int sock, sigfd;
	struct out o[2];
	pid_t shim;
	int shim_done, started, done, status, timed_out, cpid;
	char error[ERR_MAX];
	char started_at[TS_LEN + 1], finished_at[TS_LEN + 1];
};

static char g_buf[16384];

/* ---- namespaces of the target ---- */

static int same_ns(const char *a, const char *b)
{
	struct stat sa, sb;

	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_ino == sb.st_ino && sa.st_dev == sb.st_dev;
}

static int open_target_ns(struct ex *x, int *pidns)
{
	char path[64], self[64];
	int i;

	for (i = 0; i < NNS; i++) {
		snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)x->s.pid, ns_order[i].name);
		snprintf(self, sizeof(self), "/proc/self/ns/%s", ns_order[i].name);
		x->ns_fds[i] = -1;
		if (same_ns(path, self))
			continue;
		x->ns_fds[i] = open(path, O_RDONLY | O_CLOEXEC);
		if (x->ns_fds[i] < 0)
			return err_sys("open namespace", path);
	}
	snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int)x->s.pid);
	*pidns = -1;
	if (same_ns(path, "/proc/self/ns/pid"))
		return 0;
	*pidns = open(path, O_RDONLY | O_CLOEXEC);
	if (*pidns < 0)
		return err_sys("open namespace", path);
	return 0;
}

/* ---- the shim (C) and the command (G) ---- */

static void cmd_main(struct ex *x, int errw)
{
	int null;

	/* Built before stdout/stderr become the command's, so that what it
	 * logs (skipped syscall names) stays out of the command's output. */
	if (seccomp_build(x->s.proc.seccomp) < 0) {
		(void)write_all(errw, g_err, strlen(g_err));
		_exit(127);
	}
	null = open_devnull();
	if (null < 0 || proc_reset_signals() < 0 || setsid() < 0 || xs_child_stdio(null, x->o[0].fd, x->o[1].fd) < 0) {
		if (!g_err[0])
			err_sys("exec: stdio", NULL);
	} else if (proc_setup(&x->s.proc) == 0 && close_range(3, ~0u, CLOSE_RANGE_CLOEXEC) == 0) {
		proc_exec(&x->s.proc);
	}
	(void)write_all(errw, g_err, strlen(g_err));
	_exit(127);
}

static int shim_join(struct ex *x)
{
	int i;

	for (i = 0; i < NNS; i++) {
		if (x->ns_fds[i] < 0)
			continue;
		if (setns(x->ns_fds[i], ns_order[i].type) < 0)
			return err_sys("setns", ns_order[i].name);
		if (ns_order[i].type == CLONE_NEWUSER && (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0))
			return err_sys("setresuid in user namespace", NULL);
	}
	if (chdir("/") < 0)
		return err_sys("chdir", "/");
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
		return err_sys("prctl PR_SET_CHILD_SUBREAPER", NULL);
	return 0;
}

/* Starts G; reports 'S' or 'E'. Returns G's pid or -1. */
static pid_t shim_spawn(struct ex *x)
{
	int ep[2];
	pid_t g;
	ssize_t n;

	if (pipe2(ep, O_CLOEXEC) < 0)
		return err_sys("pipe", NULL);
	g = fork();
	if (g < 0)
		return err_sys("fork", NULL);
	if (g == 0) {
		close(ep[0]);
		cmd_main(x, ep[1]);
	}
	close(ep[1]);
	close(x->o[0].fd);
	close(x->o[1].fd);
	n = read_full(ep[0], g_err, sizeof(g_err) - 1);
	close(ep[0]);
	if (n > 0) {
		g_err[n] = '\0';
		(void)chan_send(x->sock, 'E', g_err, -1);
		return g;
	}
	(void)chan_send(x->sock, 'S', NULL, -1);
	return g;
}

static void shim_main(struct ex *x) __attribute__((noreturn));
static void shim_main(struct ex *x)
{
	char type, st[32];
	pid_t g, p;
	int status;

	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || chan_recv(x->sock, &type, NULL, 0, NULL) != 1)
		_exit(1);
	/* Before a user namespace makes /proc/self/oom_score_adj read-only to us. */
	if (proc_oom_score_adj(&x->s.proc) < 0 || shim_join(x) < 0) {
		(void)chan_send(x->sock, 'E', g_err, -1);
		_exit(1);
	}
	g = shim_spawn(x);
	if (g < 0) {
		(void)chan_send(x->sock, 'E', g_err, -1);
		_exit(1);
	}
	if (caps_only_kill() < 0)
		logf_("exec shim: %s", g_err);
	/* Reap everything; report G; exit when E closes the socket. */
	for (;;) {
		struct pollfd pf[2] = { { x->sigfd, POLLIN, 0 }, { x->sock, POLLIN, 0 } };
		struct signalfd_siginfo si;
		if (poll(pf, 2, -1) < 0 && errno != EINTR)
			_exit(1);
		while (read(x->sigfd, &si, sizeof(si)) > 0)
			;
		while ((p = waitpid(-1, &status, WNOHANG)) > 0) {
			if (p != g)
				continue;
			snprintf(st, sizeof(st), "%d %d", status, (int)g);
			(void)chan_send(x->sock, 'W', st, -1);
		}
		if (pf[1].revents) {
			if (chan_recv(x->sock, &type, NULL, 0, NULL) <= 0) {
				kill(-g, SIGKILL); /* E is gone or done: at least G's group */
				_exit(0);
			}
		}
	}
}

/* ---- E: setup ---- */

static int open_output(struct out *o, const char *path)
{
	int p[2];

	if (pipe2(p, O_CLOEXEC) < 0)
		return err_sys("pipe", NULL);
	o->file = xs_open_output(path);
	if (o->file < 0) {
		close(p[0]);
		close(p[1]);
		return err_sys("open output", path);
	}
	o->path = path;
	o->fd = p[1];
	return p[0];
}

static int make_sigfd(void)
{
	sigset_t set;
	int fd;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return err_sys("sigprocmask", NULL);
	fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (fd < 0)
		return err_sys("signalfd", NULL);
	return fd;
}

static int launch(struct ex *x, int rd[2])
{
	int sv[2], pidns = -1;

	if (x->s.pid_start_time && proc_start_time(x->s.pid) != x->s.pid_start_time)
		return err_msg("exec: container process %d is gone", (int)x->s.pid);
	if (open_target_ns(x, &pidns) < 0)
		return -1;
	if ((rd[0] = open_output(&x->o[0], x->s.stdout_path)) < 0 ||
	    (rd[1] = open_output(&x->o[1], x->s.stderr_path)) < 0)
		return -1;
	if ((x->sigfd = make_sigfd()) < 0)
		return -1;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return err_sys("socketpair", NULL);
	/* A pid namespace applies to the children created after setns. */
	if (pidns >= 0 && setns(pidns, CLONE_NEWPID) < 0)
		return err_sys("setns pid", NULL);
	x->shim = fork();
	if (x->shim < 0)
		return err_sys("fork", NULL);
	if (x->shim == 0) {
		close(sv[0]);
		close(rd[0]);
		close(rd[1]);
		x->sock = sv[1];
		xs_in_shim();
		shim_main(x);
	}
	close(sv[1]);
	x->sock = sv[0];
	xs_after_fork();
	close(x->o[0].fd);
	close(x->o[1].fd);
	if (cg_place(x->s.cgroup_procs, x->shim) < 0)
		return -1;
	return chan_send(x->sock, 'G', NULL, -1);
}

/* ---- E: run ---- */

static void on_output(struct ex *x, int i, int *fd)
{
	struct out *o = &x->o[i];
	ssize_t n = read(*fd, g_buf, sizeof(g_buf));

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		close(*fd);
		*fd = -1;
		return;
	}
	o->bytes += (uint64_t)n;
	if (o->written < x->s.output_limit) {
		uint64_t w = (uint64_t)n;
		if (w > x->s.output_limit - o->written)
			w = x->s.output_limit - o->written;
		if (write_all(o->file, g_buf, (size_t)w) < 0)
			logf_("write %s: %s", o->path, strerror(errno));
		o->written += w;
	}
}

static void on_shim(struct ex *x)
{
	char type, text[ERR_MAX];
	int r = chan_recv(x->sock, &type, text, sizeof(text), NULL);

	if (r <= 0) {
		close(x->sock);
		x->sock = -1;
		if (!x->done && !x->error[0])
			snprintf(x->error, sizeof(x->error), "exec: shim exited unexpectedly");
		x->done = 1;
		return;
	}
	if (type == 'S') {
		x->started = 1;
		ts_now(x->started_at);
	} else if (type == 'E') {
		snprintf(x->error, sizeof(x->error), "%s", text);
		x->done = 1;
	} else if (type == 'W') {
		sscanf(text, "%d %d", &x->status, &x->cpid);
		ts_now(x->finished_at);
		x->done = 1;
	}
}

static int remaining(uint64_t deadline)
{
	uint64_t now = mono_ms();

	if (!deadline)
		return -1;
	return deadline > now ? (int)(deadline - now) : 0;
}

/* Until G is done and its output closed, or the deadline. */
static void run(struct ex *x, int rd[2])
{
	uint64_t deadline = x->s.timeout_ms ? mono_ms() + x->s.timeout_ms : 0, drain = 0;

	for (;;) {
		struct pollfd pf[3 + XS_NPOLL] = { { rd[0], POLLIN, 0 }, { rd[1], POLLIN, 0 }, { x->sock, POLLIN, 0 } };
		uint64_t until = drain ? drain : deadline;
		int t = remaining(until), r, np = 3 + xs_pollfds(pf + 3);

		if (x->done && rd[0] < 0 && rd[1] < 0 && !xs_busy())
			return;
		if (t == 0) {
			if (!x->done)
				x->timed_out = 1;
			return;
		}
		r = poll(pf, (nfds_t)np, t);
		if (r < 0 && errno != EINTR)
			return;
		xs_handle(pf + 3, x->done);
		if (xs_aborted())
			return;
		if (pf[0].revents)
			on_output(x, 0, &rd[0]);
		if (pf[1].revents)
			on_output(x, 1, &rd[1]);
		if (pf[2].revents) {
			on_shim(x);
			if (x->done && !drain) {
				drain = mono_ms() + x->s.drain_ms;
				if (deadline && deadline < drain)
					drain = deadline;
			}
		}
	}
}

/* Host pids whose parent is ppid (scan of /proc). */
static int children_of(pid_t ppid, pid_t *out, int cap)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	int n = 0;

	if (!d)
		return err_sys("opendir", "/proc");
	while ((e = readdir(d)) && n < cap) {
		char path[300], buf[512], *p;
		int fd;
		ssize_t len;
		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		len = read_full(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (len <= 0)
			continue;
		buf[len] = '\0';
		p = strrchr(buf, ')');
		if (p && atoi(p + 4) == ppid)
			out[n++] = atoi(e->d_name);
	}
	closedir(d);
	return n;
}

/* Kills every descendant of the shim: killing its children re-parents
 * theirs to the shim (a subreaper), so repeat until none is left. */
static void kill_descendants(struct ex *x)
{
	uint64_t deadline = mono_ms() + 5000;
	pid_t kids[256];

	while (mono_ms() < deadline) {
		int n = children_of(x->shim, kids, 256), i;
		if (n <= 0)
			return;
		for (i = 0; i < n; i++)
			kill(kids[i], SIGKILL);
		struct timespec ts = { 0, 5 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	logf_("exec: processes still left after 5 s");
}

static void stop_shim(struct ex *x, int rd[2])
{
	uint64_t deadline = mono_ms() + 500;
	int i;

	kill_descendants(x);
	/* The writers are gone: pick up what is left in the pipes. */
	while ((rd[0] >= 0 || rd[1] >= 0) && mono_ms() < deadline) {
		struct pollfd pf[2] = { { rd[0], POLLIN, 0 }, { rd[1], POLLIN, 0 } };
		if (poll(pf, 2, remaining(deadline)) <= 0)
			break;
		for (i = 0; i < 2; i++)
			if (pf[i].revents)
				on_output(x, i, &rd[i]);
	}
	while (x->sock >= 0 && !x->done) { /* the 'W' for a killed G */
		struct pollfd pf = { x->sock, POLLIN, 0 };
		if (poll(&pf, 1, 500) <= 0)
			break;
		on_shim(x);
	}
	if (x->sock >= 0)
		close(x->sock);
	x->sock = -1;
	for (i = 0; i < 100; i++) {
		if (waitpid(x->shim, NULL, WNOHANG) != 0)
			return;
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	kill(x->shim, SIGKILL);
	waitpid(x->shim, NULL, 0);
}

static int result(struct ex *x)
{
	char buf[4096], err[ERR_MAX + 64] = "";
	int code = -1, sig = 0;

	if (!x->finished_at[0])
		ts_now(x->finished_at);
	if (x->started && !x->error[0]) {
		if (WIFEXITED(x->status))
			code = WEXITSTATUS(x->status);
		else if (WIFSIGNALED(x->status)) {
			sig = WTERMSIG(x->status);
			code = 128 + sig;
		}
	}
	if (x->error[0])
		(void)json_quote(err, sizeof(err), x->error);
	snprintf(buf, sizeof(buf),
		 "{\"pid\":%d,\"exitCode\":%d,\"signal\":%d,\"timedOut\":%s,\"startedAt\":%s%s%s,\"finishedAt\":\"%s\","
		 "\"stdoutBytes\":%llu,\"stderrBytes\":%llu,\"stdoutTruncated\":%s,\"stderrTruncated\":%s,\"error\":%s}\n",
		 x->cpid, code, sig, x->timed_out ? "true" : "false", x->started_at[0] ? "\"" : "null",
		 x->started_at, x->started_at[0] ? "\"" : "", x->finished_at, (unsigned long long)x->o[0].written,
		 (unsigned long long)x->o[1].written, x->o[0].bytes > x->o[0].written ? "true" : "false",
		 x->o[1].bytes > x->o[1].written ? "true" : "false", err[0] ? err : "null");
	(void)write_all(1, buf, strlen(buf));
	if (x->s.exit_file && write_file_atomic(x->s.exit_file, buf, strlen(buf), 0644) < 0) {
		logf_("%s", g_err);
		return 1;
	}
	return x->started ? 0 : 1;
}

static char *default_path(const char *spec_path, const char *name)
{
	char copy[PATH_MAX], *out;

	snprintf(copy, sizeof(copy), "%s", spec_path);
	if (asprintf(&out, "%s/%s", dirname(copy), name) < 0)
		return NULL;
	return out;
}

int exec_main(const char *spec_path)
{
	static struct ex x;
	int rd[2] = { -1, -1 };

	x.sock = x.sigfd = -1;
	if (exec_spec_load(&x.s, spec_path) < 0) {
		snprintf(x.error, sizeof(x.error), "%s", g_err);
		return result(&x);
	}
	if (!x.s.stdout_path)
		x.s.stdout_path = default_path(spec_path, "stdout");
	if (!x.s.stderr_path)
		x.s.stderr_path = default_path(spec_path, "stderr");
	if (!x.s.stdout_path || !x.s.stderr_path) {
		snprintf(x.error, sizeof(x.error), "exec: out of memory");
		return result(&x);
	}
	if (launch(&x, rd) < 0) {
		snprintf(x.error, sizeof(x.error), "%s", g_err);
		if (x.shim > 0)
			stop_shim(&x, rd);
		return result(&x);
	}
	run(&x, rd);
	stop_shim(&x, rd);
	return result(&x);
}
