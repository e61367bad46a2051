#define _GNU_SOURCE
#include "util.h"
#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

char g_err[ERR_MAX];
struct err_rec g_rec;
static const char *g_mount;

/* strerror() in lower case, as Go and the CRI report errors. */
static void lower_strerror(int e, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s", strerror(e));
	if (buf[0] >= 'A' && buf[0] <= 'Z' && !(buf[1] >= 'A' && buf[1] <= 'Z'))
		buf[0] = (char)(buf[0] - 'A' + 'a');
}

static void set_rec(const char *op, const char *path, int errnum)
{
	snprintf(g_rec.op, sizeof(g_rec.op), "%s", op ? op : "");
	snprintf(g_rec.path, sizeof(g_rec.path), "%s", path ? path : "");
	g_rec.errnum = errnum;
	snprintf(g_rec.mount, sizeof(g_rec.mount), "%s", g_mount ? g_mount : "");
}

int err_sys_as(const char *what, const char *op, const char *path)
{
	int e = errno;
	char es[128];

	lower_strerror(e, es, sizeof(es));
	if (path)
		snprintf(g_err, sizeof(g_err), "%s: %s: %s", what, es, path);
	else
		snprintf(g_err, sizeof(g_err), "%s: %s", what, es);
	set_rec(op, path, e);
	errno = e;
	return -1;
}

int err_sys(const char *op, const char *path)
{
	return err_sys_as(op, op, path);
}

int err_msg(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(g_err, sizeof(g_err), fmt, ap);
	va_end(ap);
	set_rec(NULL, NULL, 0);
	return -1;
}

void err_set_mount(const char *dest)
{
	g_mount = dest;
}

/* A string member of a record, "" when absent (g_err untouched). */
static const char *rec_str(const struct jval *obj, const char *key)
{
	const struct jval *v = json_get(obj, key);

	return v && v->type == J_STR ? v->s : "";
}

void err_load_json(const char *text)
{
	struct jdoc doc;
	const struct jval *e;

	memset(&doc, 0, sizeof(doc));
	if (json_parse(&doc, text, strlen(text)) < 0 || !json_is(doc.root, J_OBJ)) {
		json_free(&doc);
		snprintf(g_err, sizeof(g_err), "%s", text);
		set_rec(NULL, NULL, 0);
		return;
	}
	snprintf(g_err, sizeof(g_err), "%s", rec_str(doc.root, "message")[0] ? rec_str(doc.root, "message") : "no reason given");
	snprintf(g_rec.op, sizeof(g_rec.op), "%s", rec_str(doc.root, "op"));
	snprintf(g_rec.path, sizeof(g_rec.path), "%s", rec_str(doc.root, "path"));
	snprintf(g_rec.mount, sizeof(g_rec.mount), "%s", rec_str(doc.root, "mount"));
	e = json_get(doc.root, "errno");
	g_rec.errnum = e && e->type == J_NUM ? atoi(e->s) : 0;
	json_free(&doc);
}

static int add_member(char *out, size_t cap, const char *key, const char *val)
{
	size_t len = strlen(out);

	if (!val[0])
		return 0;
	if ((size_t)snprintf(out + len, cap - len, "%s\"%s\":", len > 1 ? "," : "", key) >= cap - len)
		return -1;
	return json_quote(out, cap, val);
}

void err_json(char *out, size_t cap)
{
	const char *code = g_rec.errnum ? strerrorname_np(g_rec.errnum) : NULL;
	size_t len;

	snprintf(out, cap, "{");
	if (add_member(out, cap, "message", g_err) < 0 || add_member(out, cap, "op", g_rec.op) < 0 ||
	    add_member(out, cap, "path", g_rec.path) < 0 || add_member(out, cap, "mount", g_rec.mount) < 0 ||
	    add_member(out, cap, "code", code ? code : "") < 0)
		goto bare;
	len = strlen(out);
	if (g_rec.errnum && (size_t)snprintf(out + len, cap - len, ",\"errno\":%d", g_rec.errnum) >= cap - len)
		goto bare;
	len = strlen(out);
	if (len + 2 > cap)
		goto bare;
	out[len] = '}';
	out[len + 1] = '\0';
	return;
bare:
	/* Only escapes can overflow REC_MAX: the message alone, cut. */
	snprintf(out, cap, "{\"message\":\"error record too long\"}");
}

void logf_(const char *fmt, ...)
{
	char ts[TS_LEN + 1], line[1400];
	va_list ap;
	int n;

	ts_now(ts);
	n = snprintf(line, sizeof(line), "%s capsa-monitor[%d]: ", ts, (int)getpid());
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	n = (int)strlen(line);
	line[n++] = '\n';
	(void)write_all(2, line, (size_t)n);
}

ssize_t read_full(int fd, void *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = read(fd, (char *)buf + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		off += (size_t)n;
	}
	return (ssize_t)off;
}

int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

char *read_file(const char *path, size_t max, size_t *len_out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t cap = 4096, len = 0;
	char *buf;

	if (fd < 0) {
		err_sys("open", path);
		return NULL;
	}
	buf = malloc(cap + 1);
	for (;;) {
		ssize_t n;
		if (!buf) {
			err_msg("read %s: out of memory", path);
			break;
		}
		if (len == cap) {
			char *nb;
			if (cap >= max) {
				err_msg("read %s: file larger than %zu bytes", path, max);
				break;
			}
			cap *= 2;
			nb = realloc(buf, cap + 1);
			if (!nb) {
				err_msg("read %s: out of memory", path);
				break;
			}
			buf = nb;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err_sys("read", path);
			break;
		}
		if (n == 0) {
			close(fd);
			buf[len] = '\0';
			if (len_out)
				*len_out = len;
			return buf;
		}
		len += (size_t)n;
	}
	free(buf);
	close(fd);
	return NULL;
}

static int fsync_dir_of(const char *path)
{
	char copy[4096];
	int dfd;

	snprintf(copy, sizeof(copy), "%s", path);
	dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return err_sys("open dir", copy);
	if (fsync(dfd) < 0) {
		err_sys("fsync dir", copy);
		close(dfd);
		return -1;
	}
	close(dfd);
	return 0;
}

int write_file_atomic(const char *path, const char *data, size_t len, mode_t mode)
{
	char tmp[4096];
	int fd;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= sizeof(tmp))
		return err_msg("write %s: path too long", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
		return err_sys("create", tmp);
	if (write_all(fd, data, len) < 0 || fsync(fd) < 0) {
		err_sys("write", tmp);
		close(fd);
		unlink(tmp);
		return -1;
	}
	if (close(fd) < 0) {
		err_sys("close", tmp);
		unlink(tmp);
		return -1;
	}
	if (rename(tmp, path) < 0) {
		err_sys("rename", path);
		unlink(tmp);
		return -1;
	}
	return fsync_dir_of(path);
}

void ts_now(char out[TS_LEN + 1])
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	char tmp[96];

	snprintf(tmp, sizeof(tmp), "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec);
	memcpy(out, tmp, TS_LEN);
	out[TS_LEN] = '\0';
}

uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

unsigned long long proc_start_time(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long v = 0;
	ssize_t n;
	int fd, field;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read_full(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* The command name may hold spaces and parens: start after the last ')'. */
	p = strrchr(buf, ')');
	if (!p)
		return 0;
	/* ") S ppid ..." : state is field 3, starttime field 22. */
	for (field = 2; *p && field < 22; p++)
		if (*p == ' ')
			field++;
	if (field == 22)
		v = strtoull(p, NULL, 10);
	return v;
}

int json_quote(char *out, size_t cap, const char *s)
{
	size_t len = strlen(out);

	if (len + 1 >= cap)
		return -1;
	out[len++] = '"';
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[8];
		size_t el;
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			el = 2;
		} else if (c < 0x20) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			el = 6;
		} else {
			esc[0] = (char)c;
			el = 1;
		}
		if (len + el + 2 >= cap)
			return -1;
		memcpy(out + len, esc, el);
		len += el;
	}
	out[len++] = '"';
	out[len] = '\0';
	return 0;
}

int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return err_sys("fcntl O_NONBLOCK", NULL);
	return 0;
}

int set_cloexec(int fd)
{
	int fl = fcntl(fd, F_GETFD);

	if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
		return err_sys("fcntl FD_CLOEXEC", NULL);
	return 0;
}

int open_devnull(void)
{
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return err_sys("open", "/dev/null");
	return fd;
}

int chan_send(int sock, char type, const char *text, int pass_fd)
{
	char buf[REC_MAX + 1], cbuf[CMSG_SPACE(sizeof(int))];
	size_t len = text ? strnlen(text, REC_MAX) : 0;
	struct iovec iov = { buf, len + 1 };
	struct msghdr mh;

	buf[0] = type;
	if (len)
		memcpy(buf + 1, text, len);
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	if (pass_fd >= 0) {
		struct cmsghdr *cm;
		memset(cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &pass_fd, sizeof(int));
	}
	while (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0) {
		if (errno != EINTR)
			return err_sys("sync: send", NULL);
	}
	return 0;
}

int chan_recv(int sock, char *type, char *text, size_t cap, int *fd_out)
{
	char buf[REC_MAX + 1], cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { buf, sizeof(buf) };
	struct msghdr mh;
	struct cmsghdr *cm;
	ssize_t n;

	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cbuf;
	mh.msg_controllen = sizeof(cbuf);
	if (fd_out)
		*fd_out = -1;
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == ECONNRESET ? 0 : err_sys("sync: receive", NULL);
	if (n == 0)
		return 0;
	for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
			int fd;
			memcpy(&fd, CMSG_DATA(cm), sizeof(int));
			if (fd_out)
				*fd_out = fd;
			else
				close(fd);
		}
	}
	*type = buf[0];
	if (text && cap) {
		size_t tl = (size_t)n - 1 < cap - 1 ? (size_t)n - 1 : cap - 1;
		memcpy(text, buf + 1, tl);
		text[tl] = '\0';
	}
	return 1;
}

/* Linker-provided bounds of the executable's text. */
extern char __executable_start[], etext[];

void shed_code_pages(void)
{
	uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t lo = (uintptr_t)__executable_start & ~(pg - 1);
	uintptr_t hi = ((uintptr_t)etext + pg - 1) & ~(pg - 1);

	/* Best effort: on failure we only keep the pages we already have. */
	if (hi > lo && madvise((void *)lo, hi - lo, MADV_DONTNEED) < 0)
		logf_("madvise(MADV_DONTNEED) of our text: %s", strerror(errno));
}
