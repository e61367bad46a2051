#define _GNU_SOURCE
#include "mounts.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "util.h"

static int g_rootfd = -1;

/*
 * A container that joins a user namespace (a pod with userns_options POD)
 * gets every mount source as a detached tree opened before it enters the
 * user namespace (mounts_open_trees): from inside, root is an unprivileged
 * host uid that could neither reach sources below 0700 host dirs nor make
 * an idmapped mount (mount_setattr needs CAP_SYS_ADMIN over the
 * filesystem's own user namespace, the host's). g_root_tree is the rootfs,
 * g_trees[i] the source of bind mount i; -1 where the path-based code runs.
 */
static int g_root_tree = -1;
static int *g_trees;

/* ---- paths inside the rootfs ---- */

static const char *rel(const char *p)
{
	while (*p == '/')
		p++;
	return *p ? p : ".";
}

static int open_in_root(const char *path, int flags)
{
	struct open_how how;

	memset(&how, 0, sizeof(how));
	how.flags = (uint64_t)(flags | O_CLOEXEC);
	how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
	return (int)syscall(SYS_openat2, g_rootfd, rel(path), &how, sizeof(how));
}

/* Creates one missing component `name` under the resolved `parent`. */
static int create_at(const char *parent, const char *name, int dir, const char *dest)
{
	int pfd = open_in_root(parent, O_PATH | O_DIRECTORY), fd;

	if (pfd < 0)
		return err_sys("mount: resolve", dest);
	if (dir) {
		if (mkdirat(pfd, name, 0755) < 0 && errno != EEXIST) {
			err_sys("mount: mkdir", dest);
			close(pfd);
			return -1;
		}
	} else {
		fd = openat(pfd, name, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (fd < 0) {
			err_sys("mount: create", dest);
			close(pfd);
			return -1;
		}
		close(fd);
	}
	close(pfd);
	return 0;
}

/* mkdir -p inside the rootfs; the last component is a dir or an empty file. */
static int ensure_path(const char *dest, int dir)
{
	char buf[PATH_MAX], *p, *slash;

	if ((size_t)snprintf(buf, sizeof(buf), "/%s", rel(dest)) >= sizeof(buf))
		return err_msg("mount: path too long: %s", dest);
	for (p = buf + 1;; p = slash + 1) {
		int last, fd;
		slash = strchr(p, '/');
		last = !slash;
		if (slash)
			*slash = '\0';
		fd = open_in_root(buf, O_PATH);
		if (fd >= 0) {
			close(fd);
		} else if (errno == ENOENT) {
			char *base = strrchr(buf, '/');
			*base = '\0';
			if (create_at(buf[0] ? buf : "/", base + 1, !last || dir, dest) < 0)
				return -1;
			*base = '/';
		} else {
			return err_sys("mount: resolve", dest);
		}
		if (last)
			return 0;
		*slash = '/';
	}
}

/* "/proc/self/fd/N" naming the resolved dest; *fd must be closed after. */
static int target_of(const char *dest, int *fd, char out[64])
{
	*fd = open_in_root(dest, O_PATH);
	if (*fd < 0)
		return err_sys("mount: resolve", dest);
	snprintf(out, 64, "/proc/self/fd/%d", *fd);
	return 0;
}

/*
 * A bind whose target resolves onto the container's procfs (an image
 * symlink such as /data -> /proc/sys, or /etc/hosts -> /proc/...) would
 * shadow what the /proc masks and read-only binds protect. Only the files
 * lxcfs serves may be covered, and /proc by a procfs, as runc allows. `fd`
 * is the resolved target.
 */
static const char *const proc_bind_ok[] = { "/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat",
					    "/proc/swaps",   "/proc/uptime",	"/proc/loadavg", "/proc/slabinfo",
					    "/proc/net/dev", NULL };

#ifndef PROC_SUPER_MAGIC
#define PROC_SUPER_MAGIC 0x9fa0
#endif

static int check_not_procfs(int fd, const char *src, const char *dest)
{
	char self[64], target[PATH_MAX], root[PATH_MAX];
	struct statfs sfs, srcfs;
	ssize_t n, r;
	size_t i;

	if (fstatfs(fd, &sfs) < 0)
		return err_sys("mount: statfs", dest);
	if (sfs.f_type != PROC_SUPER_MAGIC)
		return 0;
	snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
	n = readlink(self, target, sizeof(target) - 1);
	snprintf(self, sizeof(self), "/proc/self/fd/%d", g_rootfd);
	r = readlink(self, root, sizeof(root) - 1);
	if (n > 0 && r > 0) {
		target[n] = '\0';
		root[r] = '\0';
		/* A procfs over /proc itself (runc allows it too). */
		if (strncmp(target, root, (size_t)r) == 0 && strcmp(target + r, "/proc") == 0 &&
		    statfs(src, &srcfs) == 0 && srcfs.f_type == PROC_SUPER_MAGIC)
			return 0;
		if (strncmp(target, root, (size_t)r) == 0)
			for (i = 0; proc_bind_ok[i]; i++)
				if (strcmp(target + r, proc_bind_ok[i]) == 0)
					return 0;
	}
	return err_msg("mount %s: the target resolves into /proc (%s); refusing to mount over procfs", dest,
		       n > 0 && r > 0 && strncmp(target, root, (size_t)r) == 0 ? target + r : "?");
}

/* ---- mounting ---- */

/* Flags a bind remount must keep (locked in user namespaces). */
static unsigned long kept_flags(const char *target)
{
	struct statvfs sv;
	unsigned long f = 0;

	if (statvfs(target, &sv) < 0)
		return 0;
	if (sv.f_flag & ST_NOSUID)
		f |= MS_NOSUID;
	if (sv.f_flag & ST_NODEV)
		f |= MS_NODEV;
	if (sv.f_flag & ST_NOEXEC)
		f |= MS_NOEXEC;
	if (sv.f_flag & ST_NOATIME)
		f |= MS_NOATIME;
	if (sv.f_flag & ST_NODIRATIME)
		f |= MS_NODIRATIME;
	if (sv.f_flag & ST_RELATIME)
		f |= MS_RELATIME;
	return f;
}

static int remount_bind(const char *dest, unsigned long flags, unsigned long clear)
{
	char target[64];
	int fd, rc;

	if (target_of(dest, &fd, target) < 0)
		return -1;
	flags |= kept_flags(target) & ~clear;
	rc = mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | flags, NULL);
	if (rc < 0)
		err_sys("mount: remount", dest);
	close(fd);
	return rc;
}

static int set_propagation(const char *dest, unsigned long prop)
{
	char target[64];
	int fd, rc;

	if (!prop)
		return 0;
	if (target_of(dest, &fd, target) < 0)
		return -1;
	rc = mount(NULL, target, NULL, prop, NULL);
	if (rc < 0)
		err_sys("mount: set propagation", dest);
	close(fd);
	return rc;
}

static int do_bind(const char *src, const char *dest, unsigned long flags, unsigned long clear, int rec)
{
	char target[64];
	struct stat st;
	int fd, rc;

	if (stat(src, &st) < 0) {
		char what[PATH_MAX + 32];
		snprintf(what, sizeof(what), "mount %s: source", dest);
		return err_sys_as(what, "source", src);
	}
	if (ensure_path(dest, S_ISDIR(st.st_mode)) < 0 || target_of(dest, &fd, target) < 0)
		return -1;
	if (check_not_procfs(fd, src, dest) < 0) {
		close(fd);
		return -1;
	}
	rc = mount(src, target, NULL, MS_BIND | (rec ? MS_REC : 0), NULL);
	close(fd);
	if (rc < 0) {
		char what[PATH_MAX + 32];
		snprintf(what, sizeof(what), "mount %s: bind", dest);
		return err_sys_as(what, "bind", src);
	}
	flags &= ~(unsigned long)(MS_BIND | MS_REC);
	if (flags && remount_bind(dest, flags, clear) < 0)
		return -1;
	return 0;
}

/* A tree mounts_open_trees made (a bind source, idmapped or not, or a
 * procfs) attached on its destination, then the mount's flags. */
static int attach_tree(int *tree, const struct mount_spec *m)
{
	const char *src = m->source ? m->source : m->type;
	unsigned long flags = m->flags & ~(unsigned long)(MS_BIND | MS_REC);
	char target[64];
	struct stat st;
	int fd, rc;

	if (fstat(*tree, &st) < 0)
		return err_sys("mount: stat source", src);
	if (ensure_path(m->dest, S_ISDIR(st.st_mode)) < 0 || target_of(m->dest, &fd, target) < 0)
		return -1;
	if (check_not_procfs(fd, src, m->dest) < 0) {
		close(fd);
		return -1;
	}
	rc = (int)syscall(SYS_move_mount, *tree, "", fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
	close(fd);
	close(*tree);
	*tree = -1;
	if (rc < 0) {
		char what[PATH_MAX + 32];
		snprintf(what, sizeof(what), "mount %s: attach", m->dest);
		return err_sys_as(what, "bind", src);
	}
	return flags ? remount_bind(m->dest, flags, m->clear) : 0;
}

static int do_fs_mount(const struct mount_spec *m)
{
	char target[64];
	int fd, rc;

	if (ensure_path(m->dest, 1) < 0 || target_of(m->dest, &fd, target) < 0)
		return -1;
	rc = mount(m->source ? m->source : m->type, target, m->type, m->flags & ~(unsigned long)(MS_BIND | MS_REC),
		   m->data);
	close(fd);
	if (rc < 0 && errno == EPERM && strcmp(m->type, "sysfs") == 0) {
		/* A user namespace that does not own the network namespace may
		 * not mount sysfs; bind the host's, read-only. */
		return do_bind("/sys", m->dest, m->flags | MS_RDONLY, m->clear, 1);
	}
	if (rc < 0) {
		char what[PATH_MAX + 32];
		snprintf(what, sizeof(what), "mount %s (%s)", m->dest, m->type);
		return err_sys_as(what, "mount", m->source);
	}
	return 0;
}

/* Read-only through every mount below dest as well (kernel >= 5.12): a
 * remount only makes the top one read-only. */
static int set_recursive_readonly(const char *dest)
{
	struct mount_attr attr = { .attr_set = MOUNT_ATTR_RDONLY };
	char target[64];
	int fd, rc;

	if (target_of(dest, &fd, target) < 0)
		return -1;
	rc = (int)syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr));
	if (rc < 0)
		err_sys("mount: recursive read-only (mount_setattr)", dest);
	close(fd);
	return rc;
}

static int apply_mount(const struct mount_spec *m, int *tree)
{
	if (m->type && strcmp(m->type, "cgroup") == 0)
		return err_msg("mount %s: type cgroup is not supported; bind the container's cgroup dirs instead",
			       m->dest);
	if (tree && *tree >= 0) {
		if (attach_tree(tree, m) < 0)
			return -1;
	} else if (m->bind) {
		if (do_bind(m->source, m->dest, m->flags, m->clear, (m->flags & MS_REC) != 0) < 0)
			return -1;
	} else if (do_fs_mount(m) < 0) {
		return -1;
	}
	if (set_propagation(m->dest, m->prop) < 0)
		return -1;
	return m->rro ? set_recursive_readonly(m->dest) : 0;
}

/* ---- /dev ---- */

static int make_device(const struct device_spec *d)
{
	char parent[PATH_MAX], *base;
	mode_t type = d->type == 'b' ? S_IFBLK : d->type == 'p' ? S_IFIFO : S_IFCHR;
	int pfd, rc;

	snprintf(parent, sizeof(parent), "%s", d->path);
	base = strrchr(parent, '/');
	*base++ = '\0';
	if (ensure_path(parent[0] ? parent : "/", 1) < 0)
		return -1;
	pfd = open_in_root(parent[0] ? parent : "/", O_PATH | O_DIRECTORY);
	if (pfd < 0)
		return err_sys("device: resolve", d->path);
	rc = mknodat(pfd, base, type | d->mode, makedev((unsigned)d->major, (unsigned)d->minor));
	if (rc < 0 && errno == EEXIST)
		rc = unlinkat(pfd, base, 0) == 0 ? mknodat(pfd, base, type | d->mode, makedev((unsigned)d->major, (unsigned)d->minor)) : -1;
	if (rc < 0 && errno == EPERM) {
		/* No CAP_MKNOD here (user namespace): bind the host's node. */
		close(pfd);
		return do_bind(d->path, d->path, 0, 0, 0);
	}
	if (rc < 0 || fchownat(pfd, base, d->uid, d->gid, AT_SYMLINK_NOFOLLOW) < 0 || fchmodat(pfd, base, d->mode, 0) < 0) {
		err_sys("device: mknod", d->path);
		close(pfd);
		return -1;
	}
	close(pfd);
	return 0;
}

static int default_devices(void)
{
	static const struct device_spec defs[] = {
		{ "/dev/null", 'c', 1, 3, 0666, 0, 0 },	   { "/dev/zero", 'c', 1, 5, 0666, 0, 0 },
		{ "/dev/full", 'c', 1, 7, 0666, 0, 0 },	   { "/dev/random", 'c', 1, 8, 0666, 0, 0 },
		{ "/dev/urandom", 'c', 1, 9, 0666, 0, 0 }, { "/dev/tty", 'c', 5, 0, 0666, 0, 0 },
	};
	static const char *const links[][2] = {
		{ "/proc/self/fd", "fd" },	      { "/proc/self/fd/0", "stdin" },
		{ "/proc/self/fd/1", "stdout" },      { "/proc/self/fd/2", "stderr" },
		{ "pts/ptmx", "ptmx" },
	};
	size_t i;
	int dfd;

	for (i = 0; i < sizeof(defs) / sizeof(defs[0]); i++)
		if (make_device(&defs[i]) < 0)
			return -1;
	dfd = open_in_root("/dev", O_PATH | O_DIRECTORY);
	if (dfd < 0)
		return err_sys("device: resolve", "/dev");
	for (i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
		if (symlinkat(links[i][0], dfd, links[i][1]) < 0 && errno != EEXIST) {
			err_sys("device: symlink /dev", links[i][1]);
			close(dfd);
			return -1;
		}
	}
	close(dfd);
	return 0;
}

static int has_dev_tmpfs(const struct spec *s)
{
	size_t i;

	for (i = 0; i < s->nmounts; i++)
		if (strcmp(s->mounts[i].dest, "/dev") == 0 && !s->mounts[i].bind && s->mounts[i].type &&
		    strcmp(s->mounts[i].type, "tmpfs") == 0)
			return 1;
	return 0;
}

/* ---- root ---- */

static void unescape_mountinfo(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] && s[3]) {
			*o++ = (char)(((s[1] - '0') << 6) | ((s[2] - '0') << 3) | (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

/* The mount point holding `path`: longest mountinfo prefix. */
static int parent_mount(const char *path, char *out, size_t cap)
{
	char *info = read_file("/proc/self/mountinfo", 16u << 20, NULL), *line, *save = NULL;
	size_t best = 0;

	if (!info)
		return -1;
	snprintf(out, cap, "/");
	for (line = strtok_r(info, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char mp[PATH_MAX];
		size_t l;
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1)
			continue;
		unescape_mountinfo(mp);
		l = strlen(mp);
		if (l > best && strncmp(path, mp, l) == 0 && (path[l] == '/' || path[l] == '\0' || l == 1)) {
			best = l;
			snprintf(out, cap, "%s", mp);
		}
	}
	free(info);
	return 0;
}

/*
 * The rootfs of a container in a user namespace: the detached tree goes on
 * the cwd, which init_main set to the rootfs before the user and mount
 * namespaces (a path lookup from inside could be refused), and becomes the
 * root to pivot into. "/" is made non-shared recursively first (a user
 * namespace's mounts never propagate to the host anyway: bidirectional
 * mounts are refused for such pods), which pivot_root needs.
 */
static int prepare_root_tree(const struct spec *s)
{
	char self[64];

	if (s->root_prop & MS_SHARED)
		return err_msg("mount: a shared rootfs propagation cannot be used in a user namespace");
	if (mount(NULL, "/", NULL, s->root_prop, NULL) < 0)
		return err_sys("mount: set propagation", "/");
	if (syscall(SYS_move_mount, g_root_tree, "", AT_FDCWD, ".", MOVE_MOUNT_F_EMPTY_PATH) < 0)
		return err_sys("mount: attach rootfs (move_mount)", s->root);
	snprintf(self, sizeof(self), "/proc/self/fd/%d", g_root_tree);
	if (mount(NULL, self, NULL, MS_PRIVATE, NULL) < 0)
		return err_sys("mount: make private", s->root);
	g_rootfd = g_root_tree;
	g_root_tree = -1;
	return 0;
}

static int prepare_root(const struct spec *s, char root[PATH_MAX])
{
	char pm[PATH_MAX];

	if (g_root_tree >= 0)
		return prepare_root_tree(s);

	if (!realpath(s->root, root))
		return err_sys("rootfs", s->root);
	/* rshared (a bidirectional CRI mount): the host's shared mounts keep
	 * their peer groups in this namespace, so mounts the container makes
	 * below such a bind reach the host (as runc does). The rootfs and its
	 * parent are private below, and the old root is made a slave before it
	 * is detached, so nothing of the set-up itself propagates. */
	if (mount(NULL, "/", NULL, s->root_prop, NULL) < 0)
		return err_sys("mount: set propagation", "/");
	/* pivot_root refuses a shared parent; a private one also keeps the
	 * rootfs bind from propagating anywhere. */
	if (parent_mount(root, pm, sizeof(pm)) < 0)
		return -1;
	if (mount(NULL, pm, NULL, MS_PRIVATE, NULL) < 0)
		return err_sys("mount: make private", pm);
	if (mount(root, root, NULL, MS_BIND | MS_REC, NULL) < 0)
		return err_sys("mount: bind rootfs", root);
	if (mount(NULL, root, NULL, MS_PRIVATE, NULL) < 0)
		return err_sys("mount: make private", root);
	g_rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (g_rootfd < 0)
		return err_sys("open rootfs", root);
	return 0;
}

int mounts_setup(const struct spec *s)
{
	char root[PATH_MAX];
	size_t i;

	if (prepare_root(s, root) < 0)
		return -1;
	for (i = 0; i < s->nmounts; i++) {
		int rc;

		/* Errors name the mount: the daemon maps them to the request's field. */
		err_set_mount(s->mounts[i].dest);
		rc = apply_mount(&s->mounts[i], g_trees ? &g_trees[i] : NULL);
		err_set_mount(NULL);
		if (rc < 0)
			return -1;
	}
	if (has_dev_tmpfs(s) && default_devices() < 0)
		return -1;
	for (i = 0; i < s->ndevices; i++)
		if (make_device(&s->devices[i]) < 0)
			return -1;
	/* A working directory the image lacks is made, as runc does (inside the
	 * rootfs, after the mounts: it may be on a volume). */
	if (s->proc.cwd && ensure_path(s->proc.cwd, 1) < 0)
		return -1;
	return 0;
}

int mounts_pivot(const struct spec *s)
{
	int oldroot = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);

	if (oldroot < 0)
		return err_sys("open", "/");
	if (fchdir(g_rootfd) < 0 || syscall(SYS_pivot_root, ".", ".") < 0) {
		err_sys("pivot_root", s->root);
		close(oldroot);
		return -1;
	}
	/* "." is now the old root, stacked on the new one. Make it a slave so
	 * that detaching it cannot propagate to the host, then detach it. */
	if (fchdir(oldroot) < 0 || mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0 ||
	    umount2(".", MNT_DETACH) < 0 || chdir("/") < 0) {
		err_sys("pivot_root: detach old root", s->root);
		close(oldroot);
		return -1;
	}
	close(oldroot);
	close(g_rootfd);
	g_rootfd = -1;
	if ((s->root_prop & MS_SHARED) && mount(NULL, "/", NULL, s->root_prop, NULL) < 0)
		return err_sys("mount: set propagation", "/");
	return 0;
}

static int mask_path(const char *p)
{
	struct stat st;

	if (stat(p, &st) < 0)
		return errno == ENOENT ? 0 : err_sys("masked path", p);
	if (S_ISDIR(st.st_mode)) {
		if (mount("tmpfs", p, "tmpfs", MS_RDONLY, NULL) < 0)
			return err_sys("masked path: mount tmpfs", p);
	} else if (mount("/dev/null", p, NULL, MS_BIND, NULL) < 0) {
		return err_sys("masked path: bind /dev/null", p);
	}
	return 0;
}

static int readonly_path(const char *p)
{
	struct stat st;

	if (stat(p, &st) < 0)
		return errno == ENOENT ? 0 : err_sys("readonly path", p);
	if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0)
		return err_sys("readonly path: bind", p);
	if (mount(NULL, p, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | kept_flags(p), NULL) < 0)
		return err_sys("readonly path: remount", p);
	return 0;
}

int mounts_finish(const struct spec *s)
{
	size_t i;

	for (i = 0; s->masked[i]; i++)
		if (mask_path(s->masked[i]) < 0)
			return -1;
	for (i = 0; s->readonly[i]; i++)
		if (readonly_path(s->readonly[i]) < 0)
			return -1;
	if (s->root_readonly && mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | kept_flags("/"), NULL) < 0)
		return err_sys("mount: remount read-only", "/");
	return 0;
}

/* ---- detached trees (containers in a user namespace) ---- */

/* open_tree(OPEN_TREE_CLONE) of src, idmapped through userns_fd when idmap. */
static int open_tree_of(const char *src, int rec, int idmap, int userns_fd, const char *dest)
{
	struct mount_attr attr = { .attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (uint64_t)userns_fd };
	unsigned int flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (rec ? AT_RECURSIVE : 0);
	char what[PATH_MAX + 64];
	int fd = (int)syscall(SYS_open_tree, AT_FDCWD, src, flags);

	if (fd < 0) {
		snprintf(what, sizeof(what), "mount %s: source", dest);
		return err_sys_as(what, "source", src);
	}
	if (idmap && syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH | (rec ? AT_RECURSIVE : 0), &attr, sizeof(attr)) < 0) {
		/* EINVAL: the filesystem (or one below, for a recursive bind)
		 * cannot be idmapped on this kernel. There is no fallback that
		 * keeps the ownership right; the daemon reports it as a failed
		 * precondition naming the mount. */
		snprintf(what, sizeof(what), "mount %s: idmap (mount_setattr MOUNT_ATTR_IDMAP)", dest);
		err_sys_as(what, "idmap", src);
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * A procfs for the container, made while still host root: the container's
 * PID namespace (the monitor's clone, or the pod's capsa-pause) belongs to
 * the host's user namespace, over which the container's root has no
 * CAP_SYS_ADMIN to mount one. The flags come with the remount after attach.
 */
static int fsmount_proc(const char *dest)
{
	char what[PATH_MAX + 32];
	int fs = (int)syscall(SYS_fsopen, "proc", FSOPEN_CLOEXEC), mnt;

	snprintf(what, sizeof(what), "mount %s (proc)", dest);
	if (fs < 0)
		return err_sys_as(what, "mount", "proc");
	if (syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
		err_sys_as(what, "mount", "proc");
		close(fs);
		return -1;
	}
	mnt = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, 0);
	if (mnt < 0)
		err_sys_as(what, "mount", "proc");
	close(fs);
	return mnt;
}

int mounts_open_trees(const struct spec *s, int userns_fd)
{
	size_t i;

	g_trees = calloc(s->nmounts ? s->nmounts : 1, sizeof(int));
	if (!g_trees)
		return err_sys("calloc", NULL);
	for (i = 0; i < s->nmounts; i++)
		g_trees[i] = -1;
	for (i = 0; i < s->nmounts; i++) {
		const struct mount_spec *m = &s->mounts[i];
		int proc = !m->bind && m->type && strcmp(m->type, "proc") == 0;
		if (!m->bind && !proc)
			continue; /* tmpfs, devpts, mqueue, sysfs: the container's root may mount those */
		err_set_mount(m->dest);
		g_trees[i] = proc ? fsmount_proc(m->dest)
				  : open_tree_of(m->source, (m->flags & MS_REC) != 0, m->idmap, userns_fd, m->dest);
		err_set_mount(NULL);
		if (g_trees[i] < 0)
			return -1;
	}
	/* The rootfs comes idmapped already where it must be (the provisioner
	 * mounts its layers so): a clone keeps that. */
	g_root_tree = open_tree_of(s->root, 0, 0, userns_fd, "/");
	if (g_root_tree < 0)
		return -1;
	/* The cwd carries the rootfs into the new mount namespace (see prepare_root_tree). */
	if (chdir(s->root) < 0)
		return err_sys("chdir to the rootfs", s->root);
	return 0;
}
