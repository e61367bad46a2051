/* capsa-pause: holds a pod's shared PID namespace; pins a pod's user namespace.
 *
 *   capsa-pause --pin FILE [--net FILE] [--uts FILE] [--ipc FILE] [--cgroup-procs FILE]...
 *   capsa-pause userns --user FILE [--net FILE] [--uts FILE] [--ipc FILE]
 *                      --uid-map C:H:L... --gid-map C:H:L...
 *   capsa-pause probe-idmap DIR
 *
 * The userns and probe-idmap modes are in userns.c (see README.md). The pause mode:
 *
 * Joins the pod's pinned net/UTS/IPC namespaces, unshares a PID namespace
 * and forks its init (pid 1 inside). The parent then bind-mounts the new
 * namespace onto FILE, writes the init's pid to each cgroup.procs file,
 * releases the init, prints {"pid":N} on stdout and exits 0, so the init is
 * re-parented away from the daemon and survives its restarts. The init
 * blocks every signal, reaps whatever is re-parented to it and exits on
 * SIGTERM/SIGINT/SIGHUP; SIGKILL from the host ends it and, with it, every
 * process in the namespace.
 *
 * On any failure the init is killed, nothing stays pinned, and one line on
 * stderr names the failing operation and path; exit status 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_CGROUPS 32

struct args {
	const char *pin;
	const char *net, *uts, *ipc;
	const char *cgroups[MAX_CGROUPS];
	int ncgroups;
};

static void die(const char *op, const char *path, int err)
{
	fprintf(stderr, "capsa-pause: %s %s: %s\n", op, path ? path : "", strerror(err));
	exit(1);
}

static void usage(void)
{
	fprintf(stderr, "usage: capsa-pause --pin FILE [--net FILE] [--uts FILE] [--ipc FILE] [--cgroup-procs FILE]...\n"
			"       capsa-pause userns --user FILE [--net FILE] [--uts FILE] [--ipc FILE] --uid-map C:H:L... --gid-map C:H:L...\n"
			"       capsa-pause probe-idmap DIR\n");
	exit(2);
}

static void parse(int argc, char **argv, struct args *a)
{
	memset(a, 0, sizeof(*a));
	for (int i = 1; i < argc; i++) {
		const char *opt = argv[i];
		if (i + 1 >= argc)
			usage();
		const char *val = argv[++i];
		if (strcmp(opt, "--pin") == 0)
			a->pin = val;
		else if (strcmp(opt, "--net") == 0)
			a->net = val;
		else if (strcmp(opt, "--uts") == 0)
			a->uts = val;
		else if (strcmp(opt, "--ipc") == 0)
			a->ipc = val;
		else if (strcmp(opt, "--cgroup-procs") == 0 && a->ncgroups < MAX_CGROUPS)
			a->cgroups[a->ncgroups++] = val;
		else
			usage();
	}
	if (!a->pin)
		usage();
}

static void join(const char *path, int type)
{
	if (!path)
		return;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die("open", path, errno);
	if (setns(fd, type) != 0)
		die("setns", path, errno);
	if (close(fd) != 0)
		die("close", path, errno);
}

/* The namespace's init: pid 1 of the pod. */
static void init_loop(int release_fd)
{
	char c;
	ssize_t n;
	/* Wait until the parent pinned us and placed us in the cgroups. EOF
	 * without the byte means the parent failed or was killed: give up. */
	while ((n = read(release_fd, &c, 1)) < 0 && errno == EINTR)
		;
	if (n != 1)
		_exit(1);
	close(release_fd);

	if (setsid() < 0)
		_exit(1);
	if (chdir("/") != 0)
		_exit(1);
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		if (null > 2)
			close(null);
	}
	prctl(PR_SET_NAME, "capsa-pause", 0, 0, 0);

	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);
	for (;;) {
		siginfo_t info;
		int sig = sigwaitinfo(&all, &info);
		if (sig < 0)
			continue;
		if (sig == SIGCHLD) {
			while (waitpid(-1, NULL, WNOHANG) > 0)
				;
		} else if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP) {
			_exit(0);
		}
	}
}

static void undo(pid_t child, const char *pin, int pinned)
{
	kill(child, SIGKILL);
	while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
		;
	if (pinned)
		umount2(pin, MNT_DETACH);
	unlink(pin);
}

int userns_main(int argc, char **argv);
int probe_main(int argc, char **argv);

int main(int argc, char **argv)
{
	struct args a;
	if (argc > 1 && strcmp(argv[1], "userns") == 0)
		return userns_main(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "probe-idmap") == 0)
		return probe_main(argc - 1, argv + 1);
	parse(argc, argv, &a);

	join(a.net, CLONE_NEWNET);
	join(a.uts, CLONE_NEWUTS);
	join(a.ipc, CLONE_NEWIPC);
	if (unshare(CLONE_NEWPID) != 0)
		die("unshare", "CLONE_NEWPID", errno);

	int release[2];
	if (pipe2(release, O_CLOEXEC) != 0)
		die("pipe2", "", errno);

	pid_t child = fork();
	if (child < 0)
		die("fork", "", errno);
	if (child == 0) {
		close(release[1]);
		init_loop(release[0]);
		_exit(0);
	}
	close(release[0]);

	/* Pin the new PID namespace. */
	char src[64];
	snprintf(src, sizeof(src), "/proc/%d/ns/pid", (int)child);
	int fd = open(a.pin, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0444);
	if (fd < 0) {
		int e = errno;
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
		die("create", a.pin, e);
	}
	close(fd);
	if (mount(src, a.pin, NULL, MS_BIND, NULL) != 0) {
		int e = errno;
		undo(child, a.pin, 0);
		die("mount(MS_BIND)", a.pin, e);
	}

	/* Place the init in the pod's cgroups before it runs anything. */
	char pidbuf[32];
	int n = snprintf(pidbuf, sizeof(pidbuf), "%d", (int)child);
	for (int i = 0; i < a.ncgroups; i++) {
		int cfd = open(a.cgroups[i], O_WRONLY | O_CLOEXEC);
		if (cfd < 0 || write(cfd, pidbuf, n) != n) {
			int e = errno;
			if (cfd >= 0)
				close(cfd);
			undo(child, a.pin, 1);
			die("write pid to", a.cgroups[i], e);
		}
		if (close(cfd) != 0) {
			int e = errno;
			undo(child, a.pin, 1);
			die("close", a.cgroups[i], e);
		}
	}

	/* Like a pause container, the holder is the last thing the OOM killer
	 * should pick; without CAP_SYS_RESOURCE a negative score is refused and
	 * the inherited one stays (not an error). */
	char oom[64];
	snprintf(oom, sizeof(oom), "/proc/%d/oom_score_adj", (int)child);
	int ofd = open(oom, O_WRONLY | O_CLOEXEC);
	if (ofd >= 0) {
		if (write(ofd, "-998", 4) != 4 && errno != EACCES && errno != EPERM)
			fprintf(stderr, "capsa-pause: write %s: %s (ignored)\n", oom, strerror(errno));
		close(ofd);
	}

	if (write(release[1], "1", 1) != 1) {
		int e = errno;
		undo(child, a.pin, 1);
		die("release init", "", e);
	}
	close(release[1]);
	printf("{\"pid\":%d}\n", (int)child);
	if (fflush(stdout) != 0) {
		int e = errno;
		undo(child, a.pin, 1);
		die("write", "stdout", e);
	}
	return 0;
}
