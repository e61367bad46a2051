#define _GNU_SOURCE
#include "monitor.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "attach.h"
#include "cgroups.h"
#include "init.h"
#include "log.h"
#include "util.h"

#define MAX_CLIENTS 8
#define DRAIN_MS 2000
#define KILL_MS 5000
/* How long an OOM notice after an OCI runtime removed the cgroup waits for the removal's own. */
#define OOM_REMOVAL_MS 100

enum phase { PH_SETUP, PH_WAIT_START, PH_EXECING, PH_RUNNING, PH_EXITED };

struct mon {
	struct spec *s;
	int wait_start, ready_fd;
	enum phase phase;
	pid_t init;
	int status, reaped, own_pidns;
	int sock, sigfd;
	int out_fd, err_fd, stdin_w;
	int start_fd, start_wr, ctl_fd, ctl_wr;
	int alive_wr; /* the only writer of the `alive` fifo: its close tells the daemon we are gone */
	int listen_fd, clients[MAX_CLIENTS], nclients, attached;
	char in_buf[4096];
	size_t in_len;
	char ctl_buf[256];
	size_t ctl_len;
	char started_at[TS_LEN + 1], finished_at[TS_LEN + 1];
	int64_t oom_before, oom_seen, oom_inv_before;
	/* OOM watch (cg_oom_watch); oom_notified: v1 told of an OOM while the cgroup existed. */
	int oom_fd, oom_v1, oom_notified;
	/* v1 notices read after the cgroup was gone (one of them is its removal). */
	uint64_t oom_notices_gone;
	struct log_file log;
};

static char g_io[16384];

/* ---- readiness and result files ---- */

static void notify(struct mon *m, const char *error)
{
	char line[ERR_MAX + 32];

	if (m->ready_fd < 0)
		return;
	if (error)
		snprintf(line, sizeof(line), "error %s\n", error);
	else
		snprintf(line, sizeof(line), "ok %d\n", (int)m->init);
	(void)write_all(m->ready_fd, line, strlen(line));
	close(m->ready_fd);
	m->ready_fd = -1;
}

static int write_pid_json(const char *file, pid_t pid, const char *extra)
{
	char buf[256];

	snprintf(buf, sizeof(buf), "{\"pid\":%d,\"startTime\":%llu%s}\n", (int)pid, proc_start_time(pid),
		 extra ? extra : "");
	return write_file_atomic(file, buf, strlen(buf), 0644);
}

static void remove_endpoints(struct mon *m)
{
	(void)m;
	unlink("start");
	unlink("ctl");
	unlink("alive");
	unlink("attach.sock");
	attach_remove();
}

static void kill_init(struct mon *m)
{
	if (m->init <= 0 || m->reaped)
		return;
	kill(m->init, SIGKILL);
	while (waitpid(m->init, &m->status, 0) < 0 && errno == EINTR)
		;
	m->reaped = 1;
}

/* Fails the start with the last error: start-error (its record, one JSON
 * line), the readiness error (its message), cleanup. */
static int start_failed(struct mon *m)
{
	char msg[ERR_MAX], rec[REC_MAX + 1];
	size_t len;

	snprintf(msg, sizeof(msg), "%s", g_err);
	err_json(rec, sizeof(rec) - 1);
	logf_("start failed: %s", msg);
	len = strlen(rec);
	rec[len] = '\n';
	if (write_file_atomic("start-error", rec, len + 1, 0644) < 0)
		logf_("%s", g_err);
	notify(m, msg);
	kill_init(m);
	if (!m->own_pidns && m->s->kill_on_exit)
		cg_kill_all(m->s->cgroup_procs, KILL_MS);
	remove_endpoints(m);
	return 1;
}

/* ---- setup ---- */

static int make_fifo(const char *name, int *rd, int *wr)
{
	if (unlink(name) < 0 && errno != ENOENT)
		return err_sys("unlink", name);
	if (mkfifo(name, 0600) < 0)
		return err_sys("mkfifo", name);
	*rd = open(name, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (*rd < 0)
		return err_sys("open fifo", name);
	/* Our own writer keeps poll() from reporting POLLHUP forever after
	 * the first client closes. */
	*wr = open(name, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	if (*wr < 0)
		return err_sys("open fifo", name);
	return 0;
}

/* The daemon reads `alive` and sees EOF (EPOLLHUP) the moment our writer
 * closes, i.e. when this process is gone, however it ended: an end without
 * exit.json (SIGKILL) is noticed at once instead of by a poll, and a
 * restarted daemon just opens it again. Our read end is only needed to open
 * the writer without blocking. */
static int make_alive(struct mon *m)
{
	int rd;

	if (unlink("alive") < 0 && errno != ENOENT)
		return err_sys("unlink", "alive");
	if (mkfifo("alive", 0600) < 0)
		return err_sys("mkfifo", "alive");
	rd = open("alive", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (rd < 0)
		return err_sys("open fifo", "alive");
	m->alive_wr = open("alive", O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	close(rd);
	if (m->alive_wr < 0)
		return err_sys("open fifo", "alive");
	return 0;
}

static int make_listener(struct mon *m)
{
	struct sockaddr_un sa;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	strcpy(sa.sun_path, "attach.sock");
	if (unlink("attach.sock") < 0 && errno != ENOENT)
		return err_sys("unlink", "attach.sock");
	m->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (m->listen_fd < 0)
		return err_sys("socket", "attach.sock");
	if (bind(m->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod("attach.sock", 0600) < 0 ||
	    listen(m->listen_fd, MAX_CLIENTS) < 0)
		return err_sys("listen", "attach.sock");
	return 0;
}

static int make_signalfd(struct mon *m)
{
	static const int sigs[] = { SIGCHLD, SIGUSR1, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR2, SIGWINCH };
	sigset_t set;
	size_t i;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaddset(&set, sigs[i]);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return err_sys("sigprocmask", NULL);
	m->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (m->sigfd < 0)
		return err_sys("signalfd", NULL);
	return 0;
}

static int make_stdio(struct mon *m, struct init_args *a)
{
	int p[2];

	a->stdin_fd = a->stdout_fd = a->stderr_fd = -1;
	if (m->s->proc.terminal)
		return 0; /* the init opens the pty and sends us the master */
	if (pipe2(p, O_CLOEXEC) < 0)
		return err_sys("pipe", NULL);
	m->out_fd = p[0];
	a->stdout_fd = p[1];
	if (pipe2(p, O_CLOEXEC) < 0)
		return err_sys("pipe", NULL);
	m->err_fd = p[0];
	a->stderr_fd = p[1];
	if (m->s->stdin_) {
		if (pipe2(p, O_CLOEXEC) < 0)
			return err_sys("pipe", NULL);
		a->stdin_fd = p[0];
		m->stdin_w = p[1];
		return set_nonblock(m->stdin_w);
	}
	a->stdin_fd = open_devnull();
	return a->stdin_fd < 0 ? -1 : 0;
}

static int prepare(struct mon *m, struct init_args *a)
{
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
		return err_sys("prctl PR_SET_CHILD_SUBREAPER", NULL);
	if (write_pid_json("monitor.json", getpid(), NULL) < 0 || make_signalfd(m) < 0)
		return -1;
	if (log_open(&m->log, m->s->log_path) < 0)
		return -1;
	if (make_fifo("ctl", &m->ctl_fd, &m->ctl_wr) < 0 || make_alive(m) < 0)
		return -1;
	if (m->wait_start && make_fifo("start", &m->start_fd, &m->start_wr) < 0)
		return -1;
	if (m->s->stdin_ && make_listener(m) < 0)
		return -1;
	if (attach_listen() < 0)
		return -1;
	return make_stdio(m, a);
}

/* ---- clone and isolate ---- */

static int open_namespaces(struct mon *m, struct init_args *a)
{
	const struct spec *s = m->s;
	size_t i;

	for (i = 0; i < 8; i++)
		a->ns_fds[i] = -1;
	for (i = 0; i < s->nns; i++) {
		if (!s->ns[i].path)
			continue;
		a->ns_fds[i] = open(s->ns[i].path, O_RDONLY | O_CLOEXEC);
		if (a->ns_fds[i] < 0)
			return err_sys("open namespace", s->ns[i].path);
		/* A pid namespace applies to children: join it before clone. */
		if (s->ns[i].type == CLONE_NEWPID && setns(a->ns_fds[i], CLONE_NEWPID) < 0)
			return err_sys("setns pid", s->ns[i].path);
	}
	return 0;
}

static int spawn_init(struct mon *m, struct init_args *a)
{
	const struct ns_spec *pid = spec_ns(m->s, CLONE_NEWPID), *user = spec_ns(m->s, CLONE_NEWUSER);
	unsigned long flags = SIGCHLD;
	int sv[2];
	long r;

	if (open_namespaces(m, a) < 0)
		return -1;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return err_sys("socketpair", NULL);
	m->own_pidns = pid && !pid->path;
	if (m->own_pidns)
		flags |= CLONE_NEWPID;
	if (user && !user->path) {
		flags |= CLONE_NEWUSER;
		a->new_userns = 1;
	}
	a->s = m->s;
	a->sock = sv[1];
	r = syscall(SYS_clone, flags, NULL, NULL, NULL, 0);
	if (r < 0)
		return err_sys("clone", NULL);
	if (r == 0) {
		close(sv[0]);
		init_main(a);
	}
	m->init = (pid_t)r;
	m->sock = sv[0];
	close(sv[1]);
	for (size_t i = 0; i < 8; i++)
		if (a->ns_fds[i] >= 0)
			close(a->ns_fds[i]);
	if (a->stdout_fd >= 0)
		close(a->stdout_fd);
	if (a->stderr_fd >= 0)
		close(a->stderr_fd);
	if (a->stdin_fd >= 0)
		close(a->stdin_fd);
	return 0;
}

static int write_map(pid_t pid, const char *file, const struct id_map *maps, size_t n)
{
	char path[64], buf[4096];
	size_t i, len = 0;
	int fd;

	for (i = 0; i < n && len < sizeof(buf) - 40; i++)
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%u %u %u\n", maps[i].container, maps[i].host,
					maps[i].size);
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return err_sys("open", path);
	if (write_all(fd, buf, len) < 0) {
		err_sys("write", path);
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/* A failure while the init works on its own: when the init failed too (and
 * left), its record says more than ours (e.g. EPIPE on the sync socket). */
static int setup_failed(struct mon *m)
{
	struct pollfd p = { .fd = m->sock, .events = POLLIN };
	char type, text[REC_MAX];

	if (poll(&p, 1, 0) == 1 && chan_recv(m->sock, &type, text, sizeof(text), NULL) == 1 && type == 'E')
		err_load_json(text);
	return -1;
}

/* The init builds its filesystem while we place it in its cgroups: a
 * migration into a cgroup v1 hierarchy waits for an RCU grace period
 * (10-20 ms), about as long as the mounts take. The init waits for 'P'
 * before anything of the container can run. */
static int isolate(struct mon *m, const struct init_args *a)
{
	if (a->new_userns && (write_map(m->init, "uid_map", m->s->uid_maps, m->s->nuid_maps) < 0 ||
			      write_map(m->init, "gid_map", m->s->gid_maps, m->s->ngid_maps) < 0))
		return -1;
	if (chan_send(m->sock, 'G', NULL, -1) < 0)
		return setup_failed(m);
	if (cg_place(m->s->monitor_cgroup_procs, getpid()) < 0 || cg_place(m->s->cgroup_procs, m->init) < 0)
		return setup_failed(m);
	m->oom_before = m->oom_seen = cg_oom_kills(m->s->memory_cgroup);
	m->oom_inv_before = cg_oom_invocations(m->s->memory_cgroup);
	m->oom_fd = cg_oom_watch(m->s->memory_cgroup, &m->oom_v1);
	if (write_pid_json("init.json", m->init, NULL) < 0)
		return -1;
	if (chan_send(m->sock, 'P', NULL, -1) < 0)
		return setup_failed(m);
	return 0;
}

/* Reads setup messages until the init is ready ('R') or failed. */
static int await_ready(struct mon *m)
{
	for (;;) {
		char type, text[REC_MAX];
		int fd, r = chan_recv(m->sock, &type, text, sizeof(text), &fd);
		if (r < 0)
			return -1;
		if (r == 0) {
			kill_init(m);
			return err_msg("init exited during setup (status %d)", m->status);
		}
		if (type == 'T' && fd >= 0) {
			m->out_fd = fd;
			if (m->s->stdin_ && (m->stdin_w = dup(fd)) < 0)
				return err_sys("dup", NULL);
			if (m->stdin_w >= 0 && (set_cloexec(m->stdin_w) < 0 || set_nonblock(m->stdin_w) < 0))
				return -1;
			continue;
		}
		if (type == 'R')
			return 0;
		if (type == 'E') {
			err_load_json(text);
			return -1;
		}
		return err_msg("sync: unexpected message '%c'", type);
	}
}

/* ---- running ---- */

static void mark_started(struct mon *m)
{
	char extra[64];

	ts_now(m->started_at);
	snprintf(extra, sizeof(extra), ",\"startedAt\":\"%s\"", m->started_at);
	if (write_pid_json("started.json", m->init, extra) < 0)
		logf_("%s", g_err);
	m->phase = PH_RUNNING;
	notify(m, NULL);
	shed_code_pages();
}

/* Exec result on the sync socket: EOF = execve succeeded. */
static int on_sync(struct mon *m)
{
	char type, text[REC_MAX];
	int r = chan_recv(m->sock, &type, text, sizeof(text), NULL);

	if (m->phase != PH_EXECING) {
		/* Before 'X' the init only speaks when it dies: EOF. */
		if (r != 1) {
			close(m->sock);
			m->sock = -1;
		}
		return 0;
	}
	if (r == 1 && type == 'E') {
		err_load_json(text);
		return start_failed(m);
	}
	close(m->sock);
	m->sock = -1;
	mark_started(m);
	return 0;
}

static void on_start_fifo(struct mon *m)
{
	char b[64];

	while (read(m->start_fd, b, sizeof(b)) > 0)
		;
	if (m->phase != PH_WAIT_START)
		return;
	close(m->start_fd);
	close(m->start_wr);
	m->start_fd = m->start_wr = -1;
	unlink("start");
	if (chan_send(m->sock, 'X', NULL, -1) < 0)
		logf_("%s", g_err);
	m->phase = PH_EXECING;
}

static void forward_signal(struct mon *m, int sig)
{
	if (m->init > 0 && !m->reaped && kill(m->init, sig) < 0)
		logf_("forward signal %d: %s", sig, strerror(errno));
}

static void resize(struct mon *m, unsigned rows, unsigned cols)
{
	struct winsize ws = { (unsigned short)rows, (unsigned short)cols, 0, 0 };

	if (m->s->proc.terminal && m->out_fd >= 0 && ioctl(m->out_fd, TIOCSWINSZ, &ws) < 0)
		logf_("resize: %s", strerror(errno));
}

static void reopen_log(struct mon *m)
{
	if (log_reopen(&m->log) < 0)
		logf_("%s", g_err);
}

static void ctl_command(struct mon *m, char *line)
{
	unsigned a, b;
	int sig;

	if (strcmp(line, "reopen-log") == 0)
		reopen_log(m);
	else if (sscanf(line, "signal %d", &sig) == 1 && sig > 0 && sig < 65)
		forward_signal(m, sig);
	else if (sscanf(line, "resize %u %u", &a, &b) == 2)
		resize(m, a, b);
	else
		logf_("ctl: unknown command: %.64s", line);
}

static void on_ctl(struct mon *m)
{
	ssize_t n;
	char *nl;

	while ((n = read(m->ctl_fd, m->ctl_buf + m->ctl_len, sizeof(m->ctl_buf) - 1 - m->ctl_len)) > 0) {
		m->ctl_len += (size_t)n;
		m->ctl_buf[m->ctl_len] = '\0';
		while ((nl = strchr(m->ctl_buf, '\n'))) {
			*nl = '\0';
			ctl_command(m, m->ctl_buf);
			m->ctl_len -= (size_t)(nl + 1 - m->ctl_buf);
			memmove(m->ctl_buf, nl + 1, m->ctl_len + 1);
		}
		if (m->ctl_len == sizeof(m->ctl_buf) - 1)
			m->ctl_len = 0; /* an over-long line: drop it */
	}
}

static void reap(struct mon *m)
{
	int st;
	pid_t p;

	while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
		if (p == m->init) {
			m->status = st;
			m->reaped = 1;
			ts_now(m->finished_at);
		}
	}
}

static void on_signal(struct mon *m)
{
	struct signalfd_siginfo si;

	while (read(m->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGCHLD)
			reap(m);
		else if (si.ssi_signo == SIGUSR1)
			reopen_log(m);
		else if (si.ssi_signo != SIGWINCH)
			forward_signal(m, (int)si.ssi_signo);
	}
}

static void close_stdin(struct mon *m)
{
	if (m->stdin_w >= 0)
		close(m->stdin_w);
	m->stdin_w = -1;
	m->in_len = 0;
}

static void drop_client(struct mon *m, int i)
{
	close(m->clients[i]);
	m->clients[i] = m->clients[--m->nclients];
	if (m->s->stdin_once && !m->s->proc.terminal)
		close_stdin(m);
	if (m->s->stdin_once && m->listen_fd >= 0) {
		close(m->listen_fd);
		m->listen_fd = -1;
		unlink("attach.sock");
	}
}

static void flush_stdin(struct mon *m)
{
	ssize_t n;

	if (m->stdin_w < 0 || !m->in_len)
		return;
	n = write(m->stdin_w, m->in_buf, m->in_len);
	if (n < 0 && errno != EAGAIN && errno != EINTR) {
		logf_("write stdin: %s", strerror(errno));
		close_stdin(m);
		return;
	}
	if (n > 0) {
		m->in_len -= (size_t)n;
		memmove(m->in_buf, m->in_buf + n, m->in_len);
	}
}

static void on_client(struct mon *m, int i)
{
	ssize_t n = read(m->clients[i], m->in_buf, sizeof(m->in_buf));

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		drop_client(m, i);
		return;
	}
	if (m->stdin_w < 0)
		return; /* stdin closed: discard */
	m->in_len = (size_t)n;
	flush_stdin(m);
}

static void on_accept(struct mon *m)
{
	int c = accept4(m->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (c < 0)
		return;
	if (m->nclients == MAX_CLIENTS || (m->s->stdin_once && m->attached)) {
		close(c);
		return;
	}
	m->attached = 1;
	m->clients[m->nclients++] = c;
}

/* Returns 0 at EOF (fd closed), 1 otherwise. */
static int on_output(struct mon *m, int *fd, struct log_stream *st)
{
	ssize_t n = read(*fd, g_io, sizeof(g_io));

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 1;
	if (n <= 0) { /* EOF, or EIO from a pty whose slave is closed */
		log_eof(&m->log, st);
		close(*fd);
		*fd = -1;
		return 0;
	}
	log_feed(&m->log, st, g_io, (size_t)n);
	attach_output(st == &m->log.err ? ATTACH_STDERR : ATTACH_STDOUT, g_io, (size_t)n);
	return 1;
}

/* ---- the loop ---- */

enum { T_SIG, T_SYNC, T_START, T_CTL, T_OUT, T_ERR, T_LISTEN, T_STDIN, T_ATTACH, T_OOM, T_CLIENT };

/* Records what the memory cgroup says right after an OOM notification, while it still exists. */
static void on_oom(struct mon *m)
{
	int64_t v;
	uint64_t notices;

	if (m->oom_fd < 0 || (notices = cg_oom_drain(m->oom_fd)) == 0)
		return;
	v = cg_oom_kills(m->s->memory_cgroup);
	if (v > m->oom_seen)
		m->oom_seen = v;
	/* v1 also signals the eventfd, once, when the cgroup is removed: a notice
	 * while it is still there is an OOM (whose kill may not be counted yet),
	 * and so is any notice beyond that one after it is gone (an OCI runtime
	 * removes the cgroup as soon as the container ends, often before we get
	 * here). */
	if (m->oom_v1 && v < 0)
		m->oom_notices_gone += notices;
	if (m->oom_v1 && (v >= 0 || m->oom_notices_gone >= 2))
		m->oom_notified = 1;
	else if (!m->oom_v1 && m->oom_inv_before >= 0 && cg_oom_invocations(m->s->memory_cgroup) > m->oom_inv_before)
		m->oom_notified = 1;
}

struct pollset {
	struct pollfd fds[24];
	int tag[24];
	int n;
};

static void add(struct pollset *p, int fd, short ev, int tag)
{
	if (fd < 0)
		return;
	p->fds[p->n].fd = fd;
	p->fds[p->n].events = ev;
	p->fds[p->n].revents = 0;
	p->tag[p->n++] = tag;
}

static void build(struct mon *m, struct pollset *p, int draining)
{
	int i;

	p->n = 0;
	add(p, m->sigfd, POLLIN, T_SIG);
	add(p, m->out_fd, POLLIN, T_OUT);
	add(p, m->err_fd, POLLIN, T_ERR);
	add(p, attach_fd(), POLLIN, T_ATTACH);
	add(p, m->oom_fd, POLLIN, T_OOM);
	if (draining)
		return;
	add(p, m->sock, POLLIN, T_SYNC);
	add(p, m->start_fd, POLLIN, T_START);
	add(p, m->ctl_fd, POLLIN, T_CTL);
	add(p, m->listen_fd, POLLIN, T_LISTEN);
	if (m->in_len) {
		add(p, m->stdin_w, POLLOUT, T_STDIN);
		return; /* no more input until the pending bytes are written */
	}
	for (i = 0; i < m->nclients; i++)
		add(p, m->clients[i], POLLIN, T_CLIENT + i);
}

/* Dispatches one ready fd; returns non-zero when the monitor must exit. */
static int dispatch(struct mon *m, int tag)
{
	switch (tag) {
	case T_SIG:
		on_signal(m);
		return 0;
	case T_SYNC:
		return on_sync(m);
	case T_START:
		on_start_fifo(m);
		return 0;
	case T_CTL:
		on_ctl(m);
		return 0;
	case T_OUT:
		on_output(m, &m->out_fd, &m->log.out);
		return 0;
	case T_ERR:
		on_output(m, &m->err_fd, &m->log.err);
		return 0;
	case T_LISTEN:
		on_accept(m);
		return 0;
	case T_STDIN:
		flush_stdin(m);
		return 0;
	case T_ATTACH:
		attach_handle();
		return 0;
	case T_OOM:
		on_oom(m);
		return 0;
	default:
		on_client(m, tag - T_CLIENT);
		return 0;
	}
}

static int poll_once(struct mon *m, int draining, int timeout)
{
	struct pollset p;
	int i, r;

	build(m, &p, draining);
	r = poll(p.fds, (nfds_t)p.n, timeout);
	if (r < 0 && errno != EINTR)
		return err_sys("poll", NULL);
	/* Clients first, highest index first: drop_client reorders the array. */
	for (i = p.n - 1; r > 0 && i >= 0; i--) {
		if (!p.fds[i].revents)
			continue;
		if (dispatch(m, p.tag[i]))
			return 1;
	}
	return 0;
}

static void write_exit(struct mon *m)
{
	int64_t oom_after = cg_oom_kills(m->s->memory_cgroup);
	int code = 0, sig = 0, oom;

	if (oom_after < m->oom_seen)
		oom_after = m->oom_seen; /* the cgroup is gone: what was read while it existed */
	oom = m->oom_before >= 0 && (oom_after > m->oom_before || m->oom_notified);
	char buf[512], started[TS_LEN + 3];

	if (WIFEXITED(m->status))
		code = WEXITSTATUS(m->status);
	else if (WIFSIGNALED(m->status)) {
		sig = WTERMSIG(m->status);
		code = 128 + sig;
	}
	if (m->started_at[0])
		snprintf(started, sizeof(started), "\"%s\"", m->started_at);
	else
		snprintf(started, sizeof(started), "null");
	snprintf(buf, sizeof(buf),
		 "{\"pid\":%d,\"exitCode\":%d,\"signal\":%d,\"oomKilled\":%s,\"startedAt\":%s,\"finishedAt\":\"%s\"}\n",
		 (int)m->init, code, sig, oom ? "true" : "false", started, m->finished_at);
	if (write_file_atomic("exit.json", buf, strlen(buf), 0644) < 0)
		logf_("%s", g_err);
	logf_("container exited: code %d signal %d oomKilled %d", code, sig, oom);
}

/* SIGKILLed, itself or (an OCI runtime's exit code) its container: what an OOM kill looks like. */
static int killed_hard(int status)
{
	return (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) ||
	       (WIFEXITED(status) && WEXITSTATUS(status) == 128 + SIGKILL);
}

/* After the init is gone: no process left behind, all output logged. */
static void finish(struct mon *m)
{
	uint64_t deadline;

	if (m->phase == PH_EXECING && m->sock >= 0)
		on_sync(m);
	on_oom(m); /* a notice queued with the init's death, read before the cgroup can go */
	if (m->oom_v1 && !m->oom_notified && m->oom_notices_gone == 1 && killed_hard(m->status)) {
		/* One notice since an OCI runtime removed the cgroup: its removal or
		 * an OOM, whose removal notice follows shortly; wait for it a little. */
		struct pollfd p = { .fd = m->oom_fd, .events = POLLIN };
		if (poll(&p, 1, OOM_REMOVAL_MS) > 0)
			on_oom(m);
	}
	if (!m->own_pidns && m->s->kill_on_exit)
		cg_kill_all(m->s->cgroup_procs, KILL_MS);
	deadline = mono_ms() + DRAIN_MS;
	while ((m->out_fd >= 0 || m->err_fd >= 0) && mono_ms() < deadline)
		if (poll_once(m, 1, (int)(deadline - mono_ms())) < 0)
			break;
	log_eof(&m->log, &m->log.out);
	log_eof(&m->log, &m->log.err);
	log_close(&m->log);
	write_exit(m);
	remove_endpoints(m);
	deadline = mono_ms() + 1000;
	while (waitpid(-1, NULL, WNOHANG) >= 0 && mono_ms() < deadline) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}

static int loop(struct mon *m)
{
	while (!m->reaped) {
		int r = poll_once(m, 0, -1);
		if (r < 0) {
			logf_("%s", g_err);
			return 1;
		}
		if (r > 0)
			return 1; /* start failed */
	}
	finish(m);
	return 0;
}

int monitor_run(struct spec *s, int wait_start, int ready_fd)
{
	struct mon m;
	struct init_args a;

	memset(&m, 0, sizeof(m));
	memset(&a, 0, sizeof(a));
	m.s = s;
	m.wait_start = wait_start;
	m.ready_fd = ready_fd;
	m.sock = m.sigfd = m.out_fd = m.err_fd = m.stdin_w = -1;
	m.start_fd = m.start_wr = m.ctl_fd = m.ctl_wr = m.alive_wr = m.listen_fd = -1;
	m.oom_before = m.oom_seen = m.oom_inv_before = -1;
	m.oom_fd = -1;
	if (prepare(&m, &a) < 0 || spawn_init(&m, &a) < 0 || isolate(&m, &a) < 0 || await_ready(&m) < 0)
		return start_failed(&m);
	if (wait_start) {
		m.phase = PH_WAIT_START;
		notify(&m, NULL);
		shed_code_pages();
	} else {
		m.phase = PH_EXECING;
		if (chan_send(m.sock, 'X', NULL, -1) < 0)
			return start_failed(&m);
	}
	return loop(&m);
}
