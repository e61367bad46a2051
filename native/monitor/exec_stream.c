/* exec-stream: the exec mode with the command's stdio streamed to the
 * daemon instead of captured in files (CRI Exec over the streaming server).
 *
 *   capsa-monitor exec-stream [--tty] [--stdin] <exec-spec.json>
 *
 * fds from the daemon: 0 stdin data (with --stdin), 1 the result JSON (as
 * in exec mode), 2 diagnostics, 3 stdout data, 4 stderr data (unused with
 * --tty: a terminal has one stream), 5 control lines "<cols> <rows>\n"
 * (terminal resize; its end means the client is gone: the command and
 * everything it started are killed). The spec's capsa.stdout/stderr are
 * "fd:3" / "fd:4".
 *
 * With --tty, the command opens a pty of the container's own devpts
 * (/dev/ptmx there), makes the peer its stdio and controlling terminal and
 * passes the master to E (SCM_RIGHTS), which relays it. Without, the command's stdin
 * is a pipe E feeds from fd 0 (closed when fd 0 ends) or /dev/null. */
#define _GNU_SOURCE
#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include "util.h"

#define XS_DATA_OUT 3
#define XS_CONTROL 5

int g_exec_stream;

static struct {
	int tty, stdin_on;
	int master;          /* tty */
	int fdsock[2];       /* command -> E: the master */
	unsigned cols, rows; /* the last size asked for */
	int in_rd, in_wr;    /* stdin pipe (no tty) */
	int src;             /* fd 0 while open */
	int ctl;             /* fd 5 while open */
	char pend[16384];    /* stdin bytes not yet written */
	size_t plen, poff;
	int src_eof;
	int aborted;         /* the daemon closed fd 5: its client is gone */
	char line[64];
	size_t llen;
} xs = { 0, 0, -1, { -1, -1 }, 0, 0, -1, -1, -1, -1, { 0 }, 0, 0, 0, 0, { 0 }, 0 };

int xs_init(int tty, int stdin_on)
{
	int fd;

	g_exec_stream = 1;
	xs.tty = tty;
	xs.stdin_on = stdin_on;
	for (fd = 3; fd <= XS_CONTROL; fd++)
		if (fcntl(fd, F_GETFD) >= 0 && set_cloexec(fd) < 0)
			return -1;
	if (fcntl(XS_CONTROL, F_GETFD) >= 0) {
		xs.ctl = XS_CONTROL;
		if (set_nonblock(xs.ctl) < 0)
			return -1;
	}
	if (stdin_on) {
		xs.src = 0;
		if (set_cloexec(0) < 0)
			return -1;
	}
	if (tty) {
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, xs.fdsock) < 0)
			return err_sys("exec: socketpair", NULL);
	} else if (stdin_on) {
		int p[2];
		if (pipe2(p, O_CLOEXEC) < 0)
			return err_sys("exec: pipe", NULL);
		xs.in_rd = p[0];
		xs.in_wr = p[1];
		if (set_nonblock(xs.in_wr) < 0)
			return -1;
	}
	return 0;
}

int xs_open_output(const char *path)
{
	if (g_exec_stream && strncmp(path, "fd:", 3) == 0) {
		int fd = fcntl(atoi(path + 3), F_DUPFD_CLOEXEC, 10);
		if (fd < 0)
			return err_sys("exec: output", path);
		return fd;
	}
	return open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
}

int xs_child_stdio(int null, int out, int err)
{
	if (!g_exec_stream || (!xs.tty && !xs.stdin_on))
		return dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0 ? -1 : 0;
	if (xs.tty) {
		char name[64];
		int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC), slave;
		if (master < 0)
			return err_sys("exec: open pty", "/dev/ptmx");
		if (unlockpt(master) < 0 || ptsname_r(master, name, sizeof(name)) != 0)
			return err_sys("exec: unlock pty", "/dev/ptmx");
		slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (slave < 0)
			return err_sys("exec: open pty peer", name);
		if (dup2(slave, 0) < 0 || dup2(slave, 1) < 0 || dup2(slave, 2) < 0)
			return -1;
		if (ioctl(0, TIOCSCTTY, 0) < 0)
			return err_sys("exec: set controlling terminal", NULL);
		if (chan_send(xs.fdsock[1], 'T', NULL, master) < 0)
			return -1;
		close(master);
		close(slave);
		close(xs.fdsock[1]);
		return 0;
	}
	return dup2(xs.in_rd, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0 ? -1 : 0;
}

/* In the shim: it must hold no daemon-side end (the command would never
 * see its stdin end). */
void xs_in_shim(void)
{
	if (!g_exec_stream)
		return;
	if (xs.in_wr >= 0)
		close(xs.in_wr);
	if (xs.fdsock[0] >= 0)
		close(xs.fdsock[0]);
	for (int fd = 3; fd <= XS_CONTROL; fd++)
		close(fd);
}

/* In E once the shim is forked: the command's ends are the shim's now. */
void xs_after_fork(void)
{
	if (xs.in_rd >= 0)
		close(xs.in_rd);
	if (xs.fdsock[1] >= 0)
		close(xs.fdsock[1]);
	xs.in_rd = xs.fdsock[1] = -1;
}

static int stdin_target(void)
{
	return xs.tty ? xs.master : xs.in_wr;
}

int xs_pollfds(struct pollfd *pf)
{
	pf[0].fd = xs.src >= 0 && xs.plen == 0 ? xs.src : -1;
	pf[0].events = POLLIN;
	pf[1].fd = xs.plen > 0 ? stdin_target() : -1;
	pf[1].events = POLLOUT;
	pf[2].fd = xs.ctl;
	pf[2].events = POLLIN;
	pf[3].fd = xs.master;
	pf[3].events = POLLIN;
	pf[4].fd = xs.fdsock[0];
	pf[4].events = POLLIN;
	for (int i = 0; i < XS_NPOLL; i++)
		pf[i].revents = 0;
	return XS_NPOLL;
}

static void stdin_done(void)
{
	if (xs.tty) {
		/* A terminal cannot be half-closed: send its end-of-file. */
		if (xs.master >= 0 && write(xs.master, "\004", 1) < 0)
			logf_("exec: terminal end-of-file: %s", strerror(errno));
	} else if (xs.in_wr >= 0) {
		close(xs.in_wr);
		xs.in_wr = -1;
	}
}

static void flush_stdin(void)
{
	int t = stdin_target();

	while (xs.plen > 0 && t >= 0) {
		ssize_t n = write(t, xs.pend + xs.poff, xs.plen);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				xs.plen = 0; /* the command closed its stdin: drop */
			break;
		}
		xs.poff += (size_t)n;
		xs.plen -= (size_t)n;
	}
	if (xs.plen == 0 && t >= 0) {
		xs.poff = 0;
		if (xs.src_eof) {
			xs.src_eof = 0;
			stdin_done();
		}
	}
}

static void on_stdin(void)
{
	ssize_t n = read(xs.src, xs.pend, sizeof(xs.pend));

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		close(xs.src);
		xs.src = -1;
		xs.src_eof = 1;
	} else {
		xs.plen = (size_t)n;
		xs.poff = 0;
	}
	flush_stdin();
}

static void apply_size(void)
{
	struct winsize ws = { (unsigned short)xs.rows, (unsigned short)xs.cols, 0, 0 };

	if (xs.master >= 0 && (xs.rows || xs.cols) && ioctl(xs.master, TIOCSWINSZ, &ws) < 0)
		logf_("exec: resize: %s", strerror(errno));
}

/* The command's pty master arrives. */
static void on_fdsock(void)
{
	char type;
	int fd = -1, r = chan_recv(xs.fdsock[0], &type, NULL, 0, &fd);

	close(xs.fdsock[0]);
	xs.fdsock[0] = -1;
	if (r != 1 || type != 'T' || fd < 0) {
		if (fd >= 0)
			close(fd);
		return;
	}
	if (set_nonblock(fd) < 0 || set_cloexec(fd) < 0) {
		logf_("exec: %s", g_err);
		close(fd);
		return;
	}
	xs.master = fd;
	apply_size();
	flush_stdin();
}

static void on_control(void)
{
	ssize_t n = read(xs.ctl, xs.line + xs.llen, sizeof(xs.line) - 1 - xs.llen);
	char *nl;

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		close(xs.ctl);
		xs.ctl = -1;
		xs.aborted = 1;
		return;
	}
	xs.llen += (size_t)n;
	xs.line[xs.llen] = '\0';
	while ((nl = strchr(xs.line, '\n'))) {
		unsigned cols = 0, rows = 0;
		*nl = '\0';
		if (sscanf(xs.line, "%u %u", &cols, &rows) == 2 && cols < 65536 && rows < 65536) {
			xs.cols = cols;
			xs.rows = rows;
			apply_size();
		}
		xs.llen -= (size_t)(nl + 1 - xs.line);
		memmove(xs.line, nl + 1, xs.llen + 1);
	}
	if (xs.llen == sizeof(xs.line) - 1)
		xs.llen = 0; /* a line too long: not ours */
}

/* Terminal output to the stdout data fd; returns 0 when the master is at
 * its end (or has nothing left, once the command is done). */
static int on_master(void)
{
	char buf[16384];

	for (;;) {
		ssize_t n = read(xs.master, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 1;
		if (n <= 0)
			return 0;
		if (write_all(XS_DATA_OUT, buf, (size_t)n) < 0)
			logf_("exec: terminal output: %s", strerror(errno));
	}
}

void xs_handle(const struct pollfd *pf, int done)
{
	if (pf[4].revents)
		on_fdsock();
	if (pf[2].revents) /* a size first: what stdin starts may ask for it */
		on_control();
	if (pf[0].revents)
		on_stdin();
	if (pf[1].revents)
		flush_stdin();
	if (pf[3].revents || (done && xs.master >= 0)) {
		if (!on_master() || done) {
			close(xs.master);
			xs.master = -1;
		}
	}
}

int xs_busy(void)
{
	return xs.master >= 0;
}

/* The daemon's client went away before the command ended: E stops waiting
 * and kills what the command started, as on a timeout. */
int xs_aborted(void)
{
	return xs.aborted;
}
