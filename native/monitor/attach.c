/* Attach.
 *
 * Run mode: the monitor listens on `output.sock` (run dir, mode 0600, up to
 * ATTACH_MAX clients) and sends every client the container's output as it
 * is logged, in frames [1 byte stream: 1 stdout, 2 stderr][4 bytes big-endian
 * length][data] (a tty container has one stream, stdout). Output from
 * before a client connects is not replayed (that is the log's job). A client
 * that cannot keep up (more than ATTACH_BACKLOG bytes pending) is dropped:
 * the container is never slowed down by an attached client. What clients
 * send is ignored; stdin stays on attach.sock.
 *
 * `capsa-monitor attach [--stdin] <run-dir>` is what the daemon runs for an
 * attach session (socket paths in run dirs can exceed sun_path from
 * outside; from inside the run dir they are short): fd 0 stdin data (with
 * --stdin, to attach.sock; its end closes the connection), fd 3 stdout, fd 4
 * stderr, fd 5 resize lines "<cols> <rows>\n" (sent to the ctl fifo; its
 * end means the daemon's client is gone: the relay ends, not the container).
 * Returns when the monitor closes output.sock (the container exited). */
#define _GNU_SOURCE
#include "attach.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "util.h"

#define ATTACH_MAX 16
#define ATTACH_BACKLOG (1u << 20)
#define LISTENER UINT32_MAX

struct client {
	int fd;
	char *buf;
	size_t len;
};

static int g_ep = -1, g_lfd = -1;
static struct client g_cl[ATTACH_MAX];
static int g_ncl;

int attach_listen(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = LISTENER };

	strcpy(sa.sun_path, "output.sock");
	if (unlink("output.sock") < 0 && errno != ENOENT)
		return err_sys("unlink", "output.sock");
	g_lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (g_lfd < 0)
		return err_sys("socket", "output.sock");
	if (bind(g_lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod("output.sock", 0600) < 0 ||
	    listen(g_lfd, ATTACH_MAX) < 0)
		return err_sys("listen", "output.sock");
	g_ep = epoll_create1(EPOLL_CLOEXEC);
	if (g_ep < 0 || epoll_ctl(g_ep, EPOLL_CTL_ADD, g_lfd, &ev) < 0)
		return err_sys("epoll", "output.sock");
	return 0;
}

int attach_fd(void)
{
	return g_ep;
}

void attach_remove(void)
{
	if (g_lfd >= 0)
		unlink("output.sock");
}

static int find(int fd)
{
	for (int i = 0; i < g_ncl; i++)
		if (g_cl[i].fd == fd)
			return i;
	return -1;
}

static void drop(int i)
{
	(void)epoll_ctl(g_ep, EPOLL_CTL_DEL, g_cl[i].fd, NULL);
	close(g_cl[i].fd);
	free(g_cl[i].buf);
	g_cl[i] = g_cl[--g_ncl];
}

static void want_out(struct client *c, int on)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0), .data.fd = c->fd };

	if (epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
		logf_("attach: epoll: %s", strerror(errno));
}

/* Keeps bytes a client could not take yet; -1: over the backlog. */
static int queue(struct client *c, const char *p, size_t n)
{
	char *b;

	if (c->len + n > ATTACH_BACKLOG)
		return -1;
	b = realloc(c->buf, c->len + n);
	if (!b)
		return -1;
	memcpy(b + c->len, p, n);
	c->buf = b;
	c->len += n;
	return 0;
}

static int flush(struct client *c)
{
	while (c->len > 0) {
		ssize_t w = write(c->fd, c->buf, c->len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return errno == EAGAIN ? 0 : -1;
		memmove(c->buf, c->buf + w, c->len - (size_t)w);
		c->len -= (size_t)w;
	}
	want_out(c, 0);
	return 0;
}

static void on_accept(void)
{
	int fd = accept4(g_lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.fd = fd };

	if (fd < 0)
		return;
	if (g_ncl == ATTACH_MAX || epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
		close(fd);
		return;
	}
	g_cl[g_ncl++] = (struct client){ fd, NULL, 0 };
}

void attach_handle(void)
{
	struct epoll_event evs[ATTACH_MAX + 1];
	int n = epoll_wait(g_ep, evs, ATTACH_MAX + 1, 0);

	for (int k = 0; k < n; k++) {
		int i;
		if (evs[k].data.u32 == LISTENER) {
			on_accept();
			continue;
		}
		i = find(evs[k].data.fd);
		if (i < 0)
			continue;
		if (evs[k].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
			char junk[512];
			ssize_t r = read(g_cl[i].fd, junk, sizeof(junk));
			if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
				drop(i);
				continue;
			}
		}
		if ((evs[k].events & EPOLLOUT) && flush(&g_cl[i]) < 0)
			drop(i);
	}
}

void attach_output(int stream, const char *data, size_t n)
{
	unsigned char h[5] = { (unsigned char)stream, (unsigned char)(n >> 24), (unsigned char)(n >> 16),
			       (unsigned char)(n >> 8), (unsigned char)n };

	for (int i = g_ncl - 1; i >= 0; i--) {
		struct client *c = &g_cl[i];
		struct iovec iov[2] = { { h, 5 }, { (void *)data, n } };
		ssize_t w = 0;
		size_t done;
		if (c->len == 0) {
			do
				w = writev(c->fd, iov, 2);
			while (w < 0 && errno == EINTR);
			if (w < 0 && errno != EAGAIN) {
				drop(i);
				continue;
			}
			if (w < 0)
				w = 0;
		}
		done = (size_t)w;
		if (done == 5 + n)
			continue;
		if ((done < 5 && queue(c, (const char *)h + done, 5 - done) < 0) ||
		    queue(c, data + (done > 5 ? done - 5 : 0), n - (done > 5 ? done - 5 : 0)) < 0) {
			logf_("attach: a client fell %u bytes behind: dropped", ATTACH_BACKLOG);
			drop(i);
			continue;
		}
		want_out(c, 1);
	}
}

/* ---- capsa-monitor attach ---- */

static int connect_to(const char *name)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", name);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err_sys("connect", name);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static void send_resize(char *line)
{
	unsigned cols, rows;
	char cmd[64];
	int fd, len;

	if (sscanf(line, "%u %u", &cols, &rows) != 2)
		return;
	fd = open("ctl", O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return;
	len = snprintf(cmd, sizeof(cmd), "resize %u %u\n", rows, cols);
	if (write_all(fd, cmd, (size_t)len) < 0)
		fprintf(stderr, "capsa-monitor: resize: %s\n", strerror(errno));
	close(fd);
}

int attach_main(int argc, char **argv)
{
	static char buf[65536 + 5];
	char ctl[128];
	size_t have = 0, clen = 0;
	int in = 0, ofd, ifd = -1, src = -1, cfd = 5;
	const char *dir = NULL;

	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--stdin") == 0)
			in = 1;
		else if (!dir)
			dir = argv[i];
		else
			dir = NULL;
	}
	if (!dir) {
		fprintf(stderr, "usage: capsa-monitor attach [--stdin] <run-dir>\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (chdir(dir) < 0 || (ofd = connect_to("output.sock")) < 0 || (in && (ifd = connect_to("attach.sock")) < 0)) {
		if (!g_err[0])
			err_sys("chdir", dir);
		fprintf(stderr, "capsa-monitor: %s\n", g_err);
		return 1;
	}
	if (in)
		src = 0;
	if (fcntl(cfd, F_GETFD) < 0)
		cfd = -1;
	for (;;) {
		struct pollfd pf[3] = { { ofd, POLLIN, 0 }, { src, POLLIN, 0 }, { cfd, POLLIN, 0 } };
		ssize_t r;
		if (poll(pf, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		if (pf[2].revents) {
			r = read(cfd, ctl + clen, sizeof(ctl) - 1 - clen);
			if (r <= 0)
				return 0; /* the daemon's client is gone */
			{
				char *nl;
				clen += (size_t)r;
				ctl[clen] = '\0';
				while ((nl = strchr(ctl, '\n'))) {
					*nl = '\0';
					send_resize(ctl);
					clen -= (size_t)(nl + 1 - ctl);
					memmove(ctl, nl + 1, clen + 1);
				}
				if (clen == sizeof(ctl) - 1)
					clen = 0;
			}
		}
		if (pf[1].revents) {
			char ib[16384];
			r = read(src, ib, sizeof(ib));
			if (r <= 0 || write_all(ifd, ib, (size_t)r) < 0) {
				/* End of stdin: the monitor sees the client go (stdinOnce closes stdin). */
				src = -1;
				close(ifd);
				ifd = -1;
			}
		}
		if (pf[0].revents) {
			r = read(ofd, buf + have, sizeof(buf) - have);
			if (r <= 0)
				return 0; /* the monitor is gone: the container exited */
			have += (size_t)r;
			while (have >= 5) {
				size_t n = ((size_t)(unsigned char)buf[1] << 24) | ((size_t)(unsigned char)buf[2] << 16) |
					   ((size_t)(unsigned char)buf[3] << 8) | (size_t)(unsigned char)buf[4];
				if (n > sizeof(buf) - 5) {
					fprintf(stderr, "capsa-monitor: attach: bad frame of %zu bytes\n", n);
					return 1;
				}
				if (have < 5 + n)
					break;
				if (write_all(buf[0] == ATTACH_STDERR ? 4 : 3, buf + 5, n) < 0 && errno != EBADF) {
					/* the daemon stopped reading: it is going */
					return 0;
				}
				memmove(buf, buf + 5 + n, have - 5 - n);
				have -= 5 + n;
			}
		}
	}
}
