#define _GNU_SOURCE
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "util.h"

static int open_log(const char *path)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0640);

	if (fd < 0)
		return err_sys("open log", path);
	return fd;
}

int log_open(struct log_file *l, const char *path)
{
	memset(l, 0, sizeof(*l));
	l->out.name = "stdout";
	l->err.name = "stderr";
	l->path = path;
	l->fd = -1;
	if (!path)
		return 0;
	l->fd = open_log(path);
	return l->fd < 0 ? -1 : 0;
}

int log_reopen(struct log_file *l)
{
	int fd;

	if (!l->path)
		return 0;
	fd = open_log(l->path);
	if (fd < 0)
		return -1;
	if (l->fd >= 0)
		close(l->fd);
	l->fd = fd;
	l->warned = 0;
	return 0;
}

static void writev_all(struct log_file *l, struct iovec *iov, int cnt)
{
	while (cnt > 0) {
		ssize_t n = writev(l->fd, iov, cnt);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			if (!l->warned)
				logf_("write log %s: %s (dropping records until it works again)", l->path, strerror(errno));
			l->warned = 1;
			return;
		}
		while (cnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	l->warned = 0;
}

/* One record from up to two pieces (buffered prefix + fresh data). */
static void record(struct log_file *l, struct log_stream *s, char tag, const char *a, size_t an, const char *b,
		   size_t bn)
{
	char head[TS_LEN + 16], nl = '\n';
	struct iovec iov[4];
	size_t hl;

	if (l->fd < 0)
		return;
	ts_now(head);
	hl = TS_LEN;
	head[hl++] = ' ';
	memcpy(head + hl, s->name, 6);
	hl += 6;
	head[hl++] = ' ';
	head[hl++] = tag;
	head[hl++] = ' ';
	iov[0].iov_base = head;
	iov[0].iov_len = hl;
	iov[1].iov_base = (void *)a;
	iov[1].iov_len = an;
	iov[2].iov_base = (void *)b;
	iov[2].iov_len = bn;
	iov[3].iov_base = &nl;
	iov[3].iov_len = 1;
	writev_all(l, iov, 4);
}

static int buffer(struct log_stream *s, const char *data, size_t n)
{
	if (!s->buf) {
		s->buf = malloc(LOG_LINE_MAX);
		if (!s->buf)
			return -1;
	}
	memcpy(s->buf + s->len, data, n);
	s->len += n;
	return 0;
}

void log_feed(struct log_file *l, struct log_stream *s, const char *data, size_t n)
{
	while (n > 0) {
		const char *nl = memchr(data, '\n', n);
		size_t line = nl ? (size_t)(nl - data) : n;
		size_t room = LOG_LINE_MAX - s->len;

		if (line > room) {
			/* The line goes past the limit: a full P record. A line of
			 * exactly the limit stays buffered, so that its newline makes
			 * it one F record. */
			record(l, s, 'P', s->buf, s->len, data, room);
			s->len = 0;
			data += room;
			n -= room;
			continue;
		}
		if (nl) {
			record(l, s, 'F', s->buf, s->len, data, line);
			s->len = 0;
			data += line + 1;
			n -= line + 1;
			continue;
		}
		if (buffer(s, data, line) < 0) {
			record(l, s, 'P', s->buf, s->len, data, line);
			s->len = 0;
		}
		return;
	}
}

void log_eof(struct log_file *l, struct log_stream *s)
{
	if (s->len > 0)
		record(l, s, 'P', s->buf, s->len, NULL, 0);
	s->len = 0;
}

void log_close(struct log_file *l)
{
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	free(l->out.buf);
	free(l->err.buf);
	l->out.buf = l->err.buf = NULL;
}
