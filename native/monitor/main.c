/* capsa-monitor: the per-container monitor of capsa. See README.md.
 *
 *   capsa-monitor run [--wait-start] <run-dir>
 *   capsa-monitor start <run-dir> [--timeout-ms N]
 *   capsa-monitor exec <exec-spec.json>
 *   capsa-monitor exec-stream [--tty] [--stdin] <exec-spec.json>
 *   capsa-monitor portforward <netns-path|-> <port>
 *   capsa-monitor attach [--stdin] <run-dir>
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "attach.h"
#include "exec.h"
#include "portforward.h"
#include "monitor.h"
#include "spec.h"
#include "util.h"

static int usage(void)
{
	fprintf(stderr, "usage: capsa-monitor run [--wait-start] <run-dir>\n"
			"       capsa-monitor start <run-dir> [--timeout-ms N]\n"
			"       capsa-monitor exec <exec-spec.json>\n"
			"       capsa-monitor exec-stream [--tty] [--stdin] <exec-spec.json>\n"
			"       capsa-monitor portforward <netns-path|-> <port>\n"
			"       capsa-monitor attach [--stdin] <run-dir>\n");
	return 2;
}

/* ---- run ---- */

/* The start failed before a monitor ran: start-error holds the last error's
 * record (one JSON line), stderr its message. */
static void early_failure(void)
{
	char msg[ERR_MAX], rec[REC_MAX + 1];
	size_t len;

	snprintf(msg, sizeof(msg), "%s", g_err);
	err_json(rec, sizeof(rec) - 1);
	len = strlen(rec);
	rec[len] = '\n';
	(void)write_file_atomic("start-error", rec, len + 1, 0644);
	fprintf(stderr, "capsa-monitor: %s\n", msg);
}

/* The detached monitor: stdio to /dev/null and monitor.log. */
static int detached_stdio(void)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	int log = open("monitor.log", O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0640);

	if (null < 0 || log < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(log, 2) < 0)
		return err_sys("monitor stdio", "monitor.log");
	close(null);
	close(log);
	return 0;
}

/* Double fork: P (spawned by the daemon) -> M1 (setsid) -> M (monitor).
 * P exits once M reports readiness on the pipe, with M's verdict. */
static int wait_ready(int rd, pid_t m1)
{
	char buf[ERR_MAX + 32];
	ssize_t n;

	while (waitpid(m1, NULL, 0) < 0 && errno == EINTR)
		;
	/* One line: the init still holds the pipe while it waits for 'start'. */
	n = 0;
	while ((size_t)n < sizeof(buf) - 1) {
		ssize_t r = read(rd, buf + n, sizeof(buf) - 1 - (size_t)n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += r;
		if (memchr(buf, '\n', (size_t)n))
			break;
	}
	if (n <= 0) {
		fprintf(stderr, "capsa-monitor: monitor exited before it was ready\n");
		return 1;
	}
	buf[n] = '\0';
	if (strncmp(buf, "ok ", 3) == 0) {
		fputs(buf + 3, stdout);
		return 0;
	}
	fprintf(stderr, "capsa-monitor: %s", strncmp(buf, "error ", 6) == 0 ? buf + 6 : buf);
	return 1;
}

static int cmd_run(int argc, char **argv)
{
	static struct spec s;
	int wait_start = 0, p[2];
	const char *dir = NULL;
	pid_t m1;

	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--wait-start") == 0)
			wait_start = 1;
		else if (!dir)
			dir = argv[i];
		else
			return usage();
	}
	if (!dir)
		return usage();
	if (chdir(dir) < 0) {
		err_sys("chdir", dir);
		fprintf(stderr, "capsa-monitor: %s\n", g_err);
		return 1;
	}
	unlink("start-error");
	if (spec_load(&s, "spec.json") < 0) {
		early_failure();
		return 1;
	}
	if (pipe2(p, O_CLOEXEC) < 0 || (m1 = fork()) < 0) {
		err_sys("fork", NULL);
		early_failure();
		return 1;
	}
	if (m1 > 0) {
		close(p[1]);
		return wait_ready(p[0], m1);
	}
	close(p[0]);
	if (setsid() < 0)
		_exit(1);
	m1 = fork();
	if (m1 != 0)
		_exit(m1 < 0 ? 1 : 0);
	if (detached_stdio() < 0) {
		early_failure();
		_exit(1);
	}
	_exit(monitor_run(&s, wait_start, p[1]));
}

/* ---- start: release a --wait-start container and wait for the verdict ---- */

static int print_file(const char *name, FILE *to)
{
	char *t = read_file(name, 65536, NULL);

	if (!t)
		return -1;
	fputs(t, to);
	free(t);
	return 0;
}

static int verdict(void)
{
	if (access("started.json", F_OK) == 0 && print_file("started.json", stdout) == 0)
		return 0;
	if (access("start-error", F_OK) == 0) {
		char *t = read_file("start-error", REC_MAX + 1, NULL);

		if (!t)
			err_msg("start failed");
		else
			err_load_json(t);
		free(t);
		fprintf(stderr, "capsa-monitor: %s\n", g_err);
		return 1;
	}
	return -1;
}

static int monitor_pidfd(void)
{
	char *t = read_file("monitor.json", 4096, NULL), *p;
	int pid, fd;

	if (!t)
		return -1;
	p = strstr(t, "\"pid\":");
	pid = p ? atoi(p + 6) : 0;
	free(t);
	if (pid <= 0)
		return -1;
	fd = (int)syscall(SYS_pidfd_open, pid, 0);
	return fd;
}

static int cmd_start(int argc, char **argv)
{
	long timeout = 10000;
	int ifd, fd, pidfd, v;
	uint64_t deadline;

	if (argc < 3 || (argc == 5 && strcmp(argv[3], "--timeout-ms") != 0) || (argc != 3 && argc != 5))
		return usage();
	if (argc == 5)
		timeout = strtol(argv[4], NULL, 10);
	if (chdir(argv[2]) < 0) {
		err_sys("chdir", argv[2]);
		fprintf(stderr, "capsa-monitor: %s\n", g_err);
		return 1;
	}
	ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (ifd < 0 || inotify_add_watch(ifd, ".", IN_MOVED_TO | IN_CLOSE_WRITE) < 0) {
		perror("capsa-monitor: inotify");
		return 1;
	}
	pidfd = monitor_pidfd();
	fd = open("start", O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		v = verdict();
		if (v >= 0)
			return v;
		fprintf(stderr, "capsa-monitor: container is not waiting to start: %s\n",
			errno == ENXIO ? "monitor is gone" : strerror(errno));
		return 1;
	}
	if (write(fd, "s", 1) != 1) {
		perror("capsa-monitor: write start");
		return 1;
	}
	close(fd);
	deadline = mono_ms() + (uint64_t)timeout;
	for (;;) {
		char ev[4096];
		struct pollfd pf[2] = { { ifd, POLLIN, 0 }, { pidfd, POLLIN, 0 } };
		uint64_t now = mono_ms();
		v = verdict();
		if (v >= 0)
			return v;
		if (now >= deadline || (pf[1].fd >= 0 && poll(&pf[1], 1, 0) > 0 && verdict() < 0)) {
			fprintf(stderr, "capsa-monitor: no start verdict (%s)\n",
				now >= deadline ? "timeout" : "monitor exited");
			return 1;
		}
		if (poll(pf, 2, (int)(deadline - now)) < 0 && errno != EINTR)
			return 1;
		while (read(ifd, ev, sizeof(ev)) > 0)
			;
	}
}

static int cmd_exec_stream(int argc, char **argv)
{
	int tty = 0, in = 0, i;

	for (i = 2; i < argc - 1; i++) {
		if (strcmp(argv[i], "--tty") == 0)
			tty = 1;
		else if (strcmp(argv[i], "--stdin") == 0)
			in = 1;
		else
			return usage();
	}
	if (i != argc - 1)
		return usage();
	if (xs_init(tty, in) < 0) {
		fprintf(stderr, "capsa-monitor: %s\n", g_err);
		return 1;
	}
	return exec_main(argv[argc - 1]);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage();
	if (strcmp(argv[1], "run") == 0)
		return cmd_run(argc, argv);
	if (strcmp(argv[1], "start") == 0)
		return cmd_start(argc, argv);
	if (strcmp(argv[1], "exec") == 0 && argc == 3)
		return exec_main(argv[2]);
	if (strcmp(argv[1], "exec-stream") == 0)
		return cmd_exec_stream(argc, argv);
	if (strcmp(argv[1], "attach") == 0)
		return attach_main(argc, argv);
	if (strcmp(argv[1], "portforward") == 0 && argc == 4)
		return portforward_main(argv[2], argv[3]);
	return usage();
}
