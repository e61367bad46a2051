/* capsa-pause userns: creates a pod's user namespace with the given
 * mappings, the pod's network/UTS/IPC namespaces inside it (so it owns them:
 * its root may mount sysfs, mqueue and /proc there), and pins each on its
 * file. capsa-pause probe-idmap: whether this kernel can make the idmapped
 * mounts such pods need, on a plain directory and on overlayfs.
 *
 * Node must not fork and a multithreaded process cannot enter a new user
 * namespace, hence a helper process. On any failure nothing stays pinned,
 * one line on stderr names the operation and path, exit status 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/mount.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_MAPS 340 /* the kernel's limit of uid_map lines */

struct pin {
	int flag;
	const char *type, *file;
	int done;
};

static void fail(const char *op, const char *path, int err)
{
	fprintf(stderr, "capsa-pause: %s %s: %s\n", op, path ? path : "", strerror(err));
}

static void usage(void)
{
	fprintf(stderr, "usage: capsa-pause userns --user FILE [--net FILE] [--uts FILE] [--ipc FILE] "
			"--uid-map C:H:L... --gid-map C:H:L...\n");
	exit(2);
}

/* Appends "C H L\n" from "C:H:L" (each a 32-bit unsigned number). */
static int add_map(char *buf, size_t cap, size_t *len, int *n, const char *v)
{
	unsigned long long c, h, l;
	char tail;

	if (*n >= MAX_MAPS || sscanf(v, "%llu:%llu:%llu%c", &c, &h, &l, &tail) != 3 || c > UINT32_MAX ||
	    h > UINT32_MAX || l > UINT32_MAX)
		return -1;
	int w = snprintf(buf + *len, cap - *len, "%llu %llu %llu\n", c, h, l);
	if (w < 0 || (size_t)w >= cap - *len)
		return -1;
	*len += (size_t)w;
	(*n)++;
	return 0;
}

static int write_map(pid_t pid, const char *file, const char *text, size_t len)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		fail("open", path, errno);
		return -1;
	}
	/* One write: the kernel takes a map only whole, once. */
	if (write(fd, text, len) != (ssize_t)len) {
		fail("write", path, errno);
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

static void finish_child(pid_t child)
{
	kill(child, SIGKILL);
	while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
		;
}

static int pin_one(pid_t child, struct pin *p)
{
	char src[64];
	int fd = open(p->file, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0444);

	if (fd < 0) {
		fail("create", p->file, errno);
		return -1;
	}
	close(fd);
	snprintf(src, sizeof(src), "/proc/%d/ns/%s", (int)child, p->type);
	if (mount(src, p->file, NULL, MS_BIND, NULL) != 0) {
		fail("mount(MS_BIND) of the namespace", p->file, errno);
		unlink(p->file);
		return -1;
	}
	p->done = 1;
	return 0;
}

static void unpin_all(struct pin *pins, int n)
{
	for (int i = 0; i < n; i++)
		if (pins[i].done) {
			umount2(pins[i].file, MNT_DETACH);
			unlink(pins[i].file);
		}
}

/* Child: a new user namespace; after the maps, the other namespaces in it. */
static void child_main(int rd, int wr, int flags)
{
	char c;
	int e;

	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	if (unshare(CLONE_NEWUSER) != 0) {
		e = errno;
		(void)!write(wr, "E", 1);
		(void)!write(wr, &e, sizeof(e));
		_exit(1);
	}
	if (write(wr, "u", 1) != 1 || read(rd, &c, 1) != 1)
		_exit(1);
	/* Full capabilities in the new namespace since its creation: no setuid needed. */
	if (flags && unshare(flags) != 0) {
		e = errno;
		(void)!write(wr, "E", 1);
		(void)!write(wr, &e, sizeof(e));
		_exit(1);
	}
	if (write(wr, "n", 1) != 1)
		_exit(1);
	while (read(rd, &c, 1) < 0 && errno == EINTR)
		;
	_exit(0);
}

/* Reads the child's next step; 0 when it is `want`, -1 (reported) otherwise. */
/*
 * Forks the child that unshares (child_main) with its two sync pipes: the
 * parent keeps up[0] (child → parent) and down[1] (parent → child).
 * Returns the child's pid, or -1 after reporting the failure.
 */
static pid_t start_child(int flags, int up[2], int down[2])
{
	if (pipe2(up, O_CLOEXEC) != 0 || pipe2(down, O_CLOEXEC) != 0) {
		fail("pipe2", "", errno);
		return -1;
	}
	pid_t child = fork();
	if (child < 0) {
		fail("fork", "", errno);
		return -1;
	}
	if (child == 0) {
		close(up[0]);
		close(down[1]);
		child_main(down[0], up[1], flags);
	}
	close(up[1]);
	close(down[0]);
	return child;
}

static int expect(int rd, char want, const char *what)
{
	char c;
	int e = 0;

	if (read(rd, &c, 1) != 1) {
		fail(what, "", ECHILD);
		return -1;
	}
	if (c == want)
		return 0;
	if (read(rd, &e, sizeof(e)) != sizeof(e))
		e = EIO;
	fail(what, "", e);
	return -1;
}

int userns_main(int argc, char **argv)
{
	static char uid_text[MAX_MAPS * 36], gid_text[MAX_MAPS * 36];
	size_t ulen = 0, glen = 0;
	int nu = 0, ng = 0, npins = 0, flags = 0;
	struct pin pins[4];
	const char *user = NULL;

	memset(pins, 0, sizeof(pins));
	for (int i = 1; i < argc; i++) {
		if (i + 1 >= argc)
			usage();
		const char *opt = argv[i], *val = argv[++i];
		if (strcmp(opt, "--user") == 0)
			user = val;
		else if (strcmp(opt, "--net") == 0 && !(flags & CLONE_NEWNET))
			pins[npins++] = (struct pin){ CLONE_NEWNET, "net", val, 0 }, flags |= CLONE_NEWNET;
		else if (strcmp(opt, "--uts") == 0 && !(flags & CLONE_NEWUTS))
			pins[npins++] = (struct pin){ CLONE_NEWUTS, "uts", val, 0 }, flags |= CLONE_NEWUTS;
		else if (strcmp(opt, "--ipc") == 0 && !(flags & CLONE_NEWIPC))
			pins[npins++] = (struct pin){ CLONE_NEWIPC, "ipc", val, 0 }, flags |= CLONE_NEWIPC;
		else if (strcmp(opt, "--uid-map") == 0) {
			if (add_map(uid_text, sizeof(uid_text), &ulen, &nu, val) < 0) {
				fail("parse --uid-map", val, EINVAL);
				return 1;
			}
		} else if (strcmp(opt, "--gid-map") == 0) {
			if (add_map(gid_text, sizeof(gid_text), &glen, &ng, val) < 0) {
				fail("parse --gid-map", val, EINVAL);
				return 1;
			}
		} else
			usage();
	}
	if (!user || nu == 0 || ng == 0)
		usage();
	/* The user namespace is pinned first: it owns the others. */
	memmove(pins + 1, pins, sizeof(pins[0]) * (size_t)npins);
	pins[0] = (struct pin){ CLONE_NEWUSER, "user", user, 0 };
	npins++;

	int up[2], down[2];
	pid_t child = start_child(flags, up, down);
	if (child < 0)
		return 1;
	int rc = 1;
	if (expect(up[0], 'u', "unshare CLONE_NEWUSER") < 0)
		goto out;
	if (write_map(child, "uid_map", uid_text, ulen) < 0 || write_map(child, "gid_map", gid_text, glen) < 0)
		goto out;
	if (write(down[1], "m", 1) != 1) {
		fail("sync", "", errno);
		goto out;
	}
	if (expect(up[0], 'n', "unshare net/uts/ipc in the user namespace") < 0)
		goto out;
	for (int i = 0; i < npins; i++)
		if (pin_one(child, &pins[i]) < 0) {
			unpin_all(pins, npins);
			goto out;
		}
	printf("{\"pinned\":%d}\n", npins);
	if (fflush(stdout) != 0) {
		fail("write", "stdout", errno);
		unpin_all(pins, npins);
		goto out;
	}
	rc = 0;
out:
	finish_child(child);
	return rc;
}

/* ---- probe-idmap ---- */

/* An idmapped bind of `src` on `dst` (both existing dirs); 0, or -1 with `why`. */
static int idmap_bind(const char *src, const char *dst, int userns_fd, char *why, size_t cap)
{
	struct mount_attr attr = { .attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (uint64_t)userns_fd };
	int fd = (int)syscall(SYS_open_tree, AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC), rc = -1;

	if (fd < 0) {
		snprintf(why, cap, "open_tree: %s", strerror(errno));
		return -1;
	}
	if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &attr, sizeof(attr)) != 0)
		snprintf(why, cap, "mount_setattr(MOUNT_ATTR_IDMAP): %s", strerror(errno));
	else if (syscall(SYS_move_mount, fd, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH) != 0)
		snprintf(why, cap, "move_mount: %s", strerror(errno));
	else
		rc = 0;
	close(fd);
	return rc;
}

/*
 * Prints two lines: "plain ok" or "plain error <why>" for an idmapped bind of
 * a directory of DIR's filesystem (volumes, the copy and bind backends), and
 * "overlay ok" or "overlay error <why>" for an overlayfs over idmapped layers
 * (the overlay backend: overlayfs takes idmapped layers since 5.19, but an
 * overlay mount itself cannot be idmapped). The probe runs in a private
 * mount namespace of its own, so its mounts go with it; its temp dir is
 * removed.
 */
int probe_main(int argc, char **argv)
{
	static const char *const dirs[] = { "l", "uw", "uw/u", "uw/w", "il", "iuw", "m" };
	char tmp[PATH_MAX], a[PATH_MAX + 16], b[PATH_MAX + 16], opts[3 * PATH_MAX + 64], why[256], c;
	int up[2], down[2], userns_fd = -1, plain;

	if (argc != 2)
		usage();
	if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
		fail("private mount namespace", "", errno);
		return 1;
	}
	pid_t child = start_child(0, up, down);
	if (child < 0)
		return 1;
	/* Any mapping will do; 2^31 is outside every real range. */
	static const char map[] = "0 2147483648 65536\n";
	snprintf(a, sizeof(a), "/proc/%d/ns/user", (int)child);
	if (expect(up[0], 'u', "unshare CLONE_NEWUSER") < 0 || write_map(child, "uid_map", map, strlen(map)) < 0 ||
	    write_map(child, "gid_map", map, strlen(map)) < 0 || (userns_fd = open(a, O_RDONLY | O_CLOEXEC)) < 0) {
		finish_child(child);
		printf("plain error no user namespace\noverlay error no user namespace\n");
		return 0;
	}
	(void)!write(down[1], "m", 1);
	(void)!read(up[0], &c, 1);

	snprintf(tmp, sizeof(tmp), "%s/.capsa-probe-XXXXXX", argv[1]);
	if (!mkdtemp(tmp)) {
		fail("mkdtemp", tmp, errno);
		finish_child(child);
		return 1;
	}
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(a, sizeof(a), "%s/%s", tmp, dirs[i]);
		(void)mkdir(a, 0700);
	}
	snprintf(a, sizeof(a), "%s/l", tmp);
	snprintf(b, sizeof(b), "%s/il", tmp);
	plain = idmap_bind(a, b, userns_fd, why, sizeof(why)) == 0;
	if (plain)
		printf("plain ok\n");
	else
		printf("plain error %s\n", why);
	snprintf(a, sizeof(a), "%s/uw", tmp);
	snprintf(b, sizeof(b), "%s/iuw", tmp);
	snprintf(opts, sizeof(opts), "lowerdir=%s/il,upperdir=%s/iuw/u,workdir=%s/iuw/w", tmp, tmp, tmp);
	if (!plain)
		printf("overlay error %s\n", why);
	else if (idmap_bind(a, b, userns_fd, why, sizeof(why)) != 0)
		printf("overlay error %s\n", why);
	else if (snprintf(b, sizeof(b), "%s/m", tmp) > 0 && mount("overlay", b, "overlay", 0, opts) != 0)
		printf("overlay error overlayfs over idmapped layers: %s\n", strerror(errno));
	else
		printf("overlay ok\n");
	fflush(stdout);
	/* Our mount namespace dies with us; the dirs must be free of mounts to go now. */
	static const char *const mounts[] = { "m", "iuw", "il" };
	for (size_t i = 0; i < 3; i++) {
		snprintf(a, sizeof(a), "%s/%s", tmp, mounts[i]);
		umount2(a, MNT_DETACH);
	}
	snprintf(a, sizeof(a), "%s/uw/w/work", tmp);
	(void)rmdir(a);
	for (size_t i = sizeof(dirs) / sizeof(dirs[0]); i-- > 0;) {
		snprintf(a, sizeof(a), "%s/%s", tmp, dirs[i]);
		(void)rmdir(a);
	}
	(void)rmdir(tmp);
	close(userns_fd);
	finish_child(child);
	return 0;
}
