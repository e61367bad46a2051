#define _GNU_SOURCE
#include "cgroups.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

int cg_place(const char *const *procs_files, pid_t pid)
{
	char buf[32];
	size_t i;

	snprintf(buf, sizeof(buf), "%d", (int)pid);
	for (i = 0; procs_files && procs_files[i]; i++) {
		int fd = open(procs_files[i], O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			return err_sys("cgroup: open", procs_files[i]);
		if (write_all(fd, buf, strlen(buf)) < 0) {
			err_sys("cgroup: add pid", procs_files[i]);
			close(fd);
			return -1;
		}
		if (close(fd) < 0)
			return err_sys("cgroup: add pid", procs_files[i]);
	}
	return 0;
}

static int64_t counter(const char *text, const char *key)
{
	size_t kl = strlen(key);
	const char *p = text;

	while (p && *p) {
		if (strncmp(p, key, kl) == 0 && p[kl] == ' ')
			return strtoll(p + kl + 1, NULL, 10);
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return -1;
}

int64_t cg_oom_kills(const char *memory_cgroup)
{
	static const char *const files[] = { "memory.oom_control", "memory.events" };
	char path[PATH_MAX];
	size_t i;

	if (!memory_cgroup)
		return -1;
	for (i = 0; i < 2; i++) {
		char *text;
		int64_t v;
		snprintf(path, sizeof(path), "%s/%s", memory_cgroup, files[i]);
		text = read_file(path, 65536, NULL);
		if (!text)
			continue;
		v = counter(text, "oom_kill");
		free(text);
		return v;
	}
	return -1;
}

int64_t cg_oom_invocations(const char *memory_cgroup)
{
	char path[PATH_MAX], *text;
	int64_t v;

	if (!memory_cgroup)
		return -1;
	snprintf(path, sizeof(path), "%s/memory.events", memory_cgroup);
	text = read_file(path, 65536, NULL);
	if (!text)
		return -1;
	v = counter(text, "oom");
	free(text);
	return v;
}

int cg_oom_watch(const char *memory_cgroup, int *is_v1)
{
	char path[PATH_MAX], line[64];
	int efd, cfd, ofd;

	*is_v1 = 0;
	if (!memory_cgroup)
		return -1;
	snprintf(path, sizeof(path), "%s/memory.events", memory_cgroup);
	if (access(path, R_OK) == 0) {
		int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
		if (fd >= 0 && inotify_add_watch(fd, path, IN_MODIFY) < 0) {
			close(fd);
			fd = -1;
		}
		return fd;
	}
	snprintf(path, sizeof(path), "%s/memory.oom_control", memory_cgroup);
	ofd = open(path, O_RDONLY | O_CLOEXEC);
	if (ofd < 0)
		return -1;
	snprintf(path, sizeof(path), "%s/cgroup.event_control", memory_cgroup);
	cfd = open(path, O_WRONLY | O_CLOEXEC);
	efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (cfd >= 0 && efd >= 0) {
		snprintf(line, sizeof(line), "%d %d", efd, ofd);
		if (write_all(cfd, line, strlen(line)) == 0)
			*is_v1 = 1;
	}
	if (cfd >= 0)
		close(cfd);
	close(ofd);
	if (!*is_v1 && efd >= 0) {
		close(efd);
		efd = -1;
	}
	return efd;
}

uint64_t cg_oom_drain(int fd)
{
	char buf[4096];
	uint64_t notices = 0, count;
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		if (n == (ssize_t)sizeof(count)) {
			/* an eventfd (v1): its counter, one per notice */
			memcpy(&count, buf, sizeof(count));
			notices += count;
		} else
			notices++;
	}
	return notices;
}

static int kill_listed(const char *procs_file, int *sent)
{
	char *text = read_file(procs_file, 16u << 20, NULL), *p, *end;
	int found = 0;

	if (!text)
		return errno == ENOENT ? 0 : -1;
	for (p = text; *p; p = end) {
		long pid = strtol(p, &end, 10);
		if (end == p)
			break;
		if (pid > 0 && pid != getpid()) { /* the monitor may share systemd's cgroup of the scope */
			found++;
			if (kill((pid_t)pid, SIGKILL) == 0)
				(*sent)++;
		}
		while (*end == '\n')
			end++;
	}
	free(text);
	return found;
}

int cg_kill_all(const char *const *procs_files, unsigned timeout_ms)
{
	uint64_t deadline = mono_ms() + timeout_ms;
	int sent = 0;

	if (!procs_files)
		return 0;
	for (;;) {
		int found = 0;
		size_t i;
		for (i = 0; procs_files[i]; i++) {
			int n = kill_listed(procs_files[i], &sent);
			if (n > 0)
				found += n;
		}
		if (!found || mono_ms() >= deadline)
			return sent;
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}
