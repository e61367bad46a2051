/* capsa-monitor portforward <netns-path|-> <port>: the daemon cannot setns
 * itself, so each forwarded connection is this small relay in the pod's
 * network namespace: stdin -> socket, socket -> stdout. A half-close on
 * either side is passed on (shutdown(SHUT_WR) / close stdout). */
#define _GNU_SOURCE
#include "portforward.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util.h"

static int fail(const char *what, const char *arg)
{
	fprintf(stderr, "capsa-monitor: %s%s%s: %s\n", what, arg ? " " : "", arg ? arg : "", strerror(errno));
	return 1;
}

static int dial(unsigned port)
{
	struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port) };
	int fd, saved;

	a4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a6.sin6_addr = in6addr_loopback;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&a4, sizeof(a4)) == 0)
		return fd;
	saved = errno;
	close(fd);
	fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&a6, sizeof(a6)) == 0)
		return fd;
	if (fd >= 0)
		close(fd);
	errno = saved;
	return -1;
}

/* Copies what is readable on from to to; 0 at end of input, -1 on error. */
static int pump(int from, int to)
{
	char buf[32768];
	ssize_t n = read(from, buf, sizeof(buf));

	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 1 : -1;
	if (n == 0)
		return 0;
	return write_all(to, buf, (size_t)n) < 0 ? -1 : 1;
}

int portforward_main(const char *netns, const char *port_s)
{
	char *end;
	long port = strtol(port_s, &end, 10);
	int in_open = 1, out_open = 1, sock;

	signal(SIGPIPE, SIG_IGN);
	if (*port_s == '\0' || *end != '\0' || port < 1 || port > 65535) {
		fprintf(stderr, "capsa-monitor: invalid port %s\n", port_s);
		return 1;
	}
	if (strcmp(netns, "-") != 0) {
		int fd = open(netns, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return fail("open network namespace", netns);
		if (setns(fd, CLONE_NEWNET) < 0)
			return fail("setns", netns);
		close(fd);
	}
	sock = dial((unsigned)port);
	if (sock < 0)
		return fail("connect to port", port_s);
	/* The daemon relays once it reads this. */
	if (write_all(2, "connected\n", 10) < 0)
		return fail("write", "stderr");
	while (out_open) {
		struct pollfd pf[2] = { { in_open ? 0 : -1, POLLIN, 0 }, { sock, POLLIN, 0 } };
		int r;
		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return fail("poll", NULL);
		}
		if (pf[0].revents) {
			r = pump(0, sock);
			if (r <= 0) {
				in_open = 0;
				if (shutdown(sock, SHUT_WR) < 0 && errno != ENOTCONN)
					return fail("shutdown", NULL);
			}
		}
		if (pf[1].revents) {
			r = pump(sock, 1);
			if (r <= 0) {
				out_open = 0;
				close(1);
			}
		}
	}
	close(sock);
	return 0;
}
