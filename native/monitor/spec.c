#define _GNU_SOURCE
#include "spec.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>

#include "caps.h"
#include "process.h"
#include "util.h"

#define SPEC_MAX (4u << 20)

static void *alloc_arr(struct jdoc *doc, size_t n, size_t size)
{
	/* Small arrays live as long as the spec: plain calloc, never freed. */
	(void)doc;
	return calloc(n + 1, size);
}

/* Array of strings -> NULL-terminated vector. Absent -> empty vector. */
static int str_array(struct jdoc *doc, const struct jval *v, const char *what, const char ***out)
{
	const struct jval *c;
	size_t i = 0;

	if (v && v->type != J_ARR && v->type != J_NULL)
		return err_msg("spec: %s: expected an array of strings", what);
	*out = alloc_arr(doc, v && v->type == J_ARR ? v->n : 0, sizeof(char *));
	if (!*out)
		return err_msg("spec: out of memory");
	if (!v || v->type == J_NULL)
		return 0;
	for (c = v->child; c; c = c->next)
		if (json_str(c, what, &(*out)[i++]) < 0)
			return -1;
	return 0;
}

static int opt_str(const struct jval *obj, const char *key, const char *what, const char **out)
{
	const struct jval *v = json_get(obj, key);

	*out = NULL;
	if (!v || v->type == J_NULL)
		return 0;
	return json_str(v, what, out);
}

static int opt_bool(const struct jval *obj, const char *key, const char *what, int *out)
{
	const struct jval *v = json_get(obj, key);

	if (!v || v->type == J_NULL)
		return 0;
	return json_bool(v, what, out);
}

static int opt_u32(const struct jval *obj, const char *key, const char *what, uint32_t *out)
{
	const struct jval *v = json_get(obj, key);
	uint64_t x;

	if (!v || v->type == J_NULL)
		return 0;
	if (json_u64(v, what, &x) < 0)
		return -1;
	if (x > UINT32_MAX)
		return err_msg("spec: %s: out of range", what);
	*out = (uint32_t)x;
	return 0;
}

static const struct {
	const char *name;
	int res;
} rlimit_names[] = {
	{ "RLIMIT_AS", RLIMIT_AS },	      { "RLIMIT_CORE", RLIMIT_CORE },
	{ "RLIMIT_CPU", RLIMIT_CPU },	      { "RLIMIT_DATA", RLIMIT_DATA },
	{ "RLIMIT_FSIZE", RLIMIT_FSIZE },     { "RLIMIT_LOCKS", RLIMIT_LOCKS },
	{ "RLIMIT_MEMLOCK", RLIMIT_MEMLOCK }, { "RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE },
	{ "RLIMIT_NICE", RLIMIT_NICE },	      { "RLIMIT_NOFILE", RLIMIT_NOFILE },
	{ "RLIMIT_NPROC", RLIMIT_NPROC },     { "RLIMIT_RSS", RLIMIT_RSS },
	{ "RLIMIT_RTPRIO", RLIMIT_RTPRIO },   { "RLIMIT_RTTIME", RLIMIT_RTTIME },
	{ "RLIMIT_SIGPENDING", RLIMIT_SIGPENDING }, { "RLIMIT_STACK", RLIMIT_STACK },
};

static int parse_rlimits(struct process_spec *p, const struct jval *v)
{
	const struct jval *c;
	size_t i = 0, k;

	if (!v || v->type == J_NULL)
		return 0;
	if (v->type != J_ARR)
		return err_msg("spec: process.rlimits: expected an array");
	p->rlimits = calloc(v->n + 1, sizeof(*p->rlimits));
	if (!p->rlimits)
		return err_msg("spec: out of memory");
	for (c = v->child; c; c = c->next, i++) {
		const char *type;
		if (json_str(json_get(c, "type"), "process.rlimits[].type", &type) < 0 ||
		    json_u64(json_get(c, "soft"), "process.rlimits[].soft", &p->rlimits[i].soft) < 0 ||
		    json_u64(json_get(c, "hard"), "process.rlimits[].hard", &p->rlimits[i].hard) < 0)
			return -1;
		for (k = 0; k < sizeof(rlimit_names) / sizeof(rlimit_names[0]); k++)
			if (strcmp(rlimit_names[k].name, type) == 0)
				break;
		if (k == sizeof(rlimit_names) / sizeof(rlimit_names[0]))
			return err_msg("spec: process.rlimits: unknown type %s", type);
		p->rlimits[i].resource = rlimit_names[k].res;
	}
	p->nrlimits = i;
	return 0;
}

static int cap_set(const struct jval *caps, const char *key, uint64_t *mask)
{
	const struct jval *v = json_get(caps, key), *c;

	*mask = 0;
	if (!v || v->type == J_NULL)
		return 0;
	if (v->type != J_ARR)
		return err_msg("spec: process.capabilities.%s: expected an array", key);
	for (c = v->child; c; c = c->next) {
		const char *name;
		int n;
		if (json_str(c, "process.capabilities[]", &name) < 0)
			return -1;
		n = cap_from_name(name);
		if (n < 0)
			return err_msg("spec: process.capabilities.%s: unknown capability %s", key, name);
		*mask |= 1ull << n;
	}
	return 0;
}

static int parse_caps(struct caps_spec *caps, const struct jval *v)
{
	if (!v || v->type == J_NULL)
		return 0;
	if (v->type != J_OBJ)
		return err_msg("spec: process.capabilities: expected an object");
	caps->present = 1;
	if (cap_set(v, "bounding", &caps->bounding) < 0 || cap_set(v, "effective", &caps->effective) < 0 ||
	    cap_set(v, "inheritable", &caps->inheritable) < 0 || cap_set(v, "permitted", &caps->permitted) < 0 ||
	    cap_set(v, "ambient", &caps->ambient) < 0)
		return -1;
	return 0;
}

static int parse_user(struct process_spec *p, const struct jval *u)
{
	const struct jval *g, *c;
	uint32_t uid = 0, gid = 0;
	size_t i = 0;

	if (!u || u->type == J_NULL)
		return 0;
	if (opt_u32(u, "uid", "process.user.uid", &uid) < 0 || opt_u32(u, "gid", "process.user.gid", &gid) < 0)
		return -1;
	p->uid = uid;
	p->gid = gid;
	g = json_get(u, "additionalGids");
	if (!g || g->type == J_NULL)
		return 0;
	if (g->type != J_ARR)
		return err_msg("spec: process.user.additionalGids: expected an array");
	p->groups = calloc(g->n + 1, sizeof(gid_t));
	if (!p->groups)
		return err_msg("spec: out of memory");
	for (c = g->child; c; c = c->next) {
		uint64_t x;
		if (json_u64(c, "process.user.additionalGids[]", &x) < 0)
			return -1;
		if (x > UINT32_MAX)
			return err_msg("spec: process.user.additionalGids: out of range");
		p->groups[i++] = (gid_t)x;
	}
	p->ngroups = i;
	return 0;
}

static int parse_process(struct jdoc *doc, struct process_spec *p, const struct jval *v)
{
	const struct jval *oom;
	int64_t adj;

	if (!json_is(v, J_OBJ))
		return err_msg("spec: process: expected an object");
	if (str_array(doc, json_get(v, "args"), "process.args", &p->args) < 0 ||
	    str_array(doc, json_get(v, "env"), "process.env", &p->env) < 0 ||
	    opt_str(v, "cwd", "process.cwd", &p->cwd) < 0 ||
	    opt_bool(v, "terminal", "process.terminal", &p->terminal) < 0 ||
	    opt_bool(v, "noNewPrivileges", "process.noNewPrivileges", &p->no_new_privs) < 0 ||
	    parse_user(p, json_get(v, "user")) < 0 || parse_rlimits(p, json_get(v, "rlimits")) < 0 ||
	    parse_caps(&p->caps, json_get(v, "capabilities")) < 0)
		return -1;
	if (!p->args[0] || !p->args[0][0])
		return err_msg("spec: process.args: must name a command");
	if (!p->cwd)
		p->cwd = "/";
	if (p->cwd[0] != '/')
		return err_msg("spec: process.cwd: must be absolute: %s", p->cwd);
	oom = json_get(v, "oomScoreAdj");
	if (oom && oom->type != J_NULL) {
		if (json_i64(oom, "process.oomScoreAdj", &adj) < 0)
			return -1;
		if (adj < -1000 || adj > 1000)
			return err_msg("spec: process.oomScoreAdj: out of range -1000..1000");
		p->has_oom_score_adj = 1;
		p->oom_score_adj = (int)adj;
	}
	return 0;
}

static const struct {
	const char *name;
	unsigned long set, clear, prop;
	int bind;
} mount_opts[] = {
	{ "ro", MS_RDONLY, 0, 0, 0 },
	{ "rw", 0, MS_RDONLY, 0, 0 },
	{ "nosuid", MS_NOSUID, 0, 0, 0 },
	{ "suid", 0, MS_NOSUID, 0, 0 },
	{ "nodev", MS_NODEV, 0, 0, 0 },
	{ "dev", 0, MS_NODEV, 0, 0 },
	{ "noexec", MS_NOEXEC, 0, 0, 0 },
	{ "exec", 0, MS_NOEXEC, 0, 0 },
	{ "sync", MS_SYNCHRONOUS, 0, 0, 0 },
	{ "async", 0, MS_SYNCHRONOUS, 0, 0 },
	{ "dirsync", MS_DIRSYNC, 0, 0, 0 },
	{ "mand", MS_MANDLOCK, 0, 0, 0 },
	{ "nomand", 0, MS_MANDLOCK, 0, 0 },
	{ "noatime", MS_NOATIME, 0, 0, 0 },
	{ "atime", 0, MS_NOATIME, 0, 0 },
	{ "nodiratime", MS_NODIRATIME, 0, 0, 0 },
	{ "diratime", 0, MS_NODIRATIME, 0, 0 },
	{ "relatime", MS_RELATIME, 0, 0, 0 },
	{ "norelatime", 0, MS_RELATIME, 0, 0 },
	{ "strictatime", MS_STRICTATIME, 0, 0, 0 },
	{ "nostrictatime", 0, MS_STRICTATIME, 0, 0 },
	{ "bind", MS_BIND, 0, 0, 1 },
	{ "rbind", MS_BIND | MS_REC, 0, 0, 1 },
	{ "private", 0, 0, MS_PRIVATE, 0 },
	{ "rprivate", 0, 0, MS_PRIVATE | MS_REC, 0 },
	{ "slave", 0, 0, MS_SLAVE, 0 },
	{ "rslave", 0, 0, MS_SLAVE | MS_REC, 0 },
	{ "shared", 0, 0, MS_SHARED, 0 },
	{ "rshared", 0, 0, MS_SHARED | MS_REC, 0 },
	{ "unbindable", 0, 0, MS_UNBINDABLE, 0 },
	{ "runbindable", 0, 0, MS_UNBINDABLE | MS_REC, 0 },
};

/* Returns the index of a flag option, -1 for a filesystem data option. */
static int mount_opt(const char *o)
{
	size_t i;

	for (i = 0; i < sizeof(mount_opts) / sizeof(mount_opts[0]); i++)
		if (strcmp(mount_opts[i].name, o) == 0)
			return (int)i;
	return -1;
}

static int add_data(struct mount_spec *m, const char *o)
{
	size_t old = m->data ? strlen(m->data) : 0;
	char *d = realloc(m->data, old + strlen(o) + 2);

	if (!d)
		return err_msg("spec: out of memory");
	if (old)
		d[old++] = ',';
	strcpy(d + old, o);
	m->data = d;
	return 0;
}

static int parse_mount(struct mount_spec *m, const struct jval *v)
{
	const struct jval *opts = json_get(v, "options"), *c;

	if (json_str(json_get(v, "destination"), "mounts[].destination", &m->dest) < 0 ||
	    opt_str(v, "type", "mounts[].type", &m->type) < 0 || opt_str(v, "source", "mounts[].source", &m->source) < 0)
		return -1;
	if (m->dest[0] != '/')
		return err_msg("spec: mounts: destination must be absolute: %s", m->dest);
	if (opts && opts->type != J_ARR && opts->type != J_NULL)
		return err_msg("spec: mounts[%s].options: expected an array", m->dest);
	for (c = opts && opts->type == J_ARR ? opts->child : NULL; c; c = c->next) {
		const char *o;
		int i;
		if (json_str(c, "mounts[].options[]", &o) < 0)
			return -1;
		if (strcmp(o, "rro") == 0) {
			/* OCI's recursive read-only: "ro" on the mount and
			 * MOUNT_ATTR_RDONLY on every mount below it */
			m->rro = 1;
			m->flags |= MS_RDONLY;
			m->clear &= ~(unsigned long)MS_RDONLY;
			continue;
		}
		if (strcmp(o, "idmap") == 0) {
			/* OCI 1.1's idmapped bind; the mapping is the joined user namespace's */
			m->idmap = 1;
			continue;
		}
		i = mount_opt(o);
		if (i < 0) {
			if (add_data(m, o) < 0)
				return -1;
			continue;
		}
		m->flags = (m->flags | mount_opts[i].set) & ~mount_opts[i].clear;
		m->clear = (m->clear | mount_opts[i].clear) & ~mount_opts[i].set;
		if (mount_opts[i].prop)
			m->prop = mount_opts[i].prop;
		if (mount_opts[i].bind)
			m->bind = 1;
	}
	if (m->type && strcmp(m->type, "bind") == 0)
		m->bind = 1;
	if (m->bind && (!m->source || m->source[0] != '/'))
		return err_msg("spec: mounts[%s]: bind source must be an absolute path", m->dest);
	if (m->rro && !m->bind)
		return err_msg("spec: mounts[%s]: rro is for bind mounts", m->dest);
	if (m->idmap && !m->bind)
		return err_msg("spec: mounts[%s]: idmap is for bind mounts", m->dest);
	if (!m->bind && !m->type)
		return err_msg("spec: mounts[%s]: type is required", m->dest);
	return 0;
}

static int parse_mounts(struct spec *s, const struct jval *v)
{
	const struct jval *c;
	size_t i = 0;

	if (!v || v->type == J_NULL)
		return 0;
	if (v->type != J_ARR)
		return err_msg("spec: mounts: expected an array");
	s->mounts = calloc(v->n + 1, sizeof(*s->mounts));
	if (!s->mounts)
		return err_msg("spec: out of memory");
	for (c = v->child; c; c = c->next)
		if (parse_mount(&s->mounts[i++], c) < 0)
			return -1;
	s->nmounts = i;
	return 0;
}

static int ns_type(const char *name)
{
	static const struct {
		const char *name;
		int flag;
	} t[] = { { "pid", CLONE_NEWPID }, { "network", CLONE_NEWNET }, { "mount", CLONE_NEWNS },
		  { "ipc", CLONE_NEWIPC }, { "uts", CLONE_NEWUTS },     { "user", CLONE_NEWUSER },
		  { "cgroup", CLONE_NEWCGROUP } };
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (strcmp(t[i].name, name) == 0)
			return t[i].flag;
	return -1;
}

static int parse_namespaces(struct spec *s, const struct jval *v)
{
	const struct jval *c;

	if (!v || v->type == J_NULL)
		return 0;
	if (v->type != J_ARR)
		return err_msg("spec: linux.namespaces: expected an array");
	for (c = v->child; c; c = c->next) {
		const char *type, *path;
		int t;
		if (json_str(json_get(c, "type"), "linux.namespaces[].type", &type) < 0 ||
		    opt_str(c, "path", "linux.namespaces[].path", &path) < 0)
			return -1;
		t = ns_type(type);
		if (t < 0)
			return err_msg("spec: linux.namespaces: unknown type %s", type);
		if (spec_ns(s, t))
			return err_msg("spec: linux.namespaces: %s listed twice", type);
		if (t == CLONE_NEWNS && path)
			return err_msg("spec: linux.namespaces: a container cannot join a mount namespace");
		if (s->nns == sizeof(s->ns) / sizeof(s->ns[0]))
			return err_msg("spec: linux.namespaces: too many");
		s->ns[s->nns].type = t;
		s->ns[s->nns++].path = path && path[0] ? path : NULL;
	}
	return 0;
}

static int parse_sysctl(struct spec *s, const struct jval *v)
{
	const struct jval *c;
	size_t i = 0;

	if (!v || v->type == J_NULL)
		return 0;
	if (v->type != J_OBJ)
		return err_msg("spec: linux.sysctl: expected an object");
	s->sysctl = calloc(v->n + 1, sizeof(*s->sysctl));
	if (!s->sysctl)
		return err_msg("spec: out of memory");
	for (c = v->child; c; c = c->next, i++) {
		s->sysctl[i].key = c->key;
		if (json_str(c, "linux.sysctl value", &s->sysctl[i].value) < 0)
			return -1;
		if (strstr(c->key, "..") || strchr(c->key, '/') || c->key[0] == '.' || !c->key[0])
			return err_msg("spec: linux.sysctl: bad key %s", c->key);
	}
	s->nsysctl = i;
	return 0;
}

static int parse_device(struct device_spec *d, const struct jval *v)
{
	const char *type;
	uint32_t mode = 0666, uid = 0, gid = 0;

	if (json_str(json_get(v, "path"), "linux.devices[].path", &d->path) < 0 ||
	    json_str(json_get(v, "type"), "linux.devices[].type", &type) < 0 ||
	    opt_u32(v, "fileMode", "linux.devices[].fileMode", &mode) < 0 ||
	    opt_u32(v, "uid", "linux.devices[].uid", &uid) < 0 || opt_u32(v, "gid", "linux.devices[].gid", &gid) < 0)
		return -1;
	if (d->path[0] != '/' || strncmp(d->path, "/dev/", 5) != 0)
		return err_msg("spec: linux.devices: path must be under /dev: %s", d->path);
	if (strlen(type) != 1 || !strchr("cbup", type[0]))
		return err_msg("spec: linux.devices[%s].type: must be c, b, u or p", d->path);
	d->type = type[0];
	if (d->type != 'p' && (json_i64(json_get(v, "major"), "linux.devices[].major", &d->major) < 0 ||
			       json_i64(json_get(v, "minor"), "linux.devices[].minor", &d->minor) < 0))
		return -1;
	d->mode = mode & 07777;
	d->uid = uid;
	d->gid = gid;
	return 0;
}

static int parse_devices(struct spec *s, const struct jval *v)
{
	const struct jval *c;
	size_t i = 0;

	if (!v || v->type == J_NULL)
		return 0;
	if (v->type != J_ARR)
		return err_msg("spec: linux.devices: expected an array");
	s->devices = calloc(v->n + 1, sizeof(*s->devices));
	if (!s->devices)
		return err_msg("spec: out of memory");
	for (c = v->child; c; c = c->next)
		if (parse_device(&s->devices[i++], c) < 0)
			return -1;
	s->ndevices = i;
	return 0;
}

static int parse_idmaps(const struct jval *v, const char *what, struct id_map **out, size_t *n)
{
	const struct jval *c;
	size_t i = 0;

	if (!v || v->type == J_NULL)
		return 0;
	if (v->type != J_ARR)
		return err_msg("spec: %s: expected an array", what);
	*out = calloc(v->n + 1, sizeof(**out));
	if (!*out)
		return err_msg("spec: out of memory");
	for (c = v->child; c; c = c->next, i++)
		if (opt_u32(c, "containerID", what, &(*out)[i].container) < 0 ||
		    opt_u32(c, "hostID", what, &(*out)[i].host) < 0 || opt_u32(c, "size", what, &(*out)[i].size) < 0)
			return -1;
	*n = i;
	return 0;
}

static int parse_root_prop(struct spec *s, const struct jval *linux_)
{
	const char *p;
	int i;

	s->root_prop = MS_SLAVE | MS_REC;
	if (opt_str(linux_, "rootfsPropagation", "linux.rootfsPropagation", &p) < 0)
		return -1;
	if (!p || !p[0])
		return 0;
	i = mount_opt(p);
	if (i < 0 || !mount_opts[i].prop)
		return err_msg("spec: linux.rootfsPropagation: unknown value %s", p);
	s->root_prop = mount_opts[i].prop;
	return 0;
}

/* linux.seccomp: checked here, built in the process it confines. */
static int parse_seccomp(struct process_spec *p, const struct jval *linux_)
{
	const struct jval *v = json_get(linux_, "seccomp");

	if (seccomp_check(v) < 0)
		return -1;
	p->seccomp = v && v->type != J_NULL ? v : NULL;
	return 0;
}

static int parse_linux(struct spec *s, const struct jval *v)
{
	if (!v || v->type == J_NULL) {
		s->root_prop = MS_SLAVE | MS_REC;
		return 0;
	}
	if (v->type != J_OBJ)
		return err_msg("spec: linux: expected an object");
	return parse_namespaces(s, json_get(v, "namespaces")) < 0 ||
			       str_array(&s->doc, json_get(v, "maskedPaths"), "linux.maskedPaths", &s->masked) < 0 ||
			       str_array(&s->doc, json_get(v, "readonlyPaths"), "linux.readonlyPaths", &s->readonly) < 0 ||
			       parse_sysctl(s, json_get(v, "sysctl")) < 0 || parse_devices(s, json_get(v, "devices")) < 0 ||
			       parse_idmaps(json_get(v, "uidMappings"), "linux.uidMappings", &s->uid_maps, &s->nuid_maps) < 0 ||
			       parse_idmaps(json_get(v, "gidMappings"), "linux.gidMappings", &s->gid_maps, &s->ngid_maps) < 0 ||
			       parse_root_prop(s, v) < 0 || parse_seccomp(&s->proc, v) < 0
		       ? -1
		       : 0;
}

static int has_idmap(const struct spec *s)
{
	size_t i;

	for (i = 0; i < s->nmounts; i++)
		if (s->mounts[i].idmap)
			return 1;
	return 0;
}

static int parse_capsa(struct spec *s, const struct jval *v)
{
	s->kill_on_exit = 1;
	if (!v || v->type == J_NULL)
		return str_array(&s->doc, NULL, "capsa.cgroupProcs", &s->cgroup_procs) < 0 ||
			       str_array(&s->doc, NULL, "capsa.monitorCgroupProcs", &s->monitor_cgroup_procs) < 0
		       ? -1
		       : 0;
	if (v->type != J_OBJ)
		return err_msg("spec: capsa: expected an object");
	return str_array(&s->doc, json_get(v, "cgroupProcs"), "capsa.cgroupProcs", &s->cgroup_procs) < 0 ||
			       str_array(&s->doc, json_get(v, "monitorCgroupProcs"), "capsa.monitorCgroupProcs",
					 &s->monitor_cgroup_procs) < 0 ||
			       opt_str(v, "memoryCgroup", "capsa.memoryCgroup", &s->memory_cgroup) < 0 ||
			       opt_str(v, "logPath", "capsa.logPath", &s->log_path) < 0 ||
			       opt_bool(v, "stdin", "capsa.stdin", &s->stdin_) < 0 ||
			       opt_bool(v, "stdinOnce", "capsa.stdinOnce", &s->stdin_once) < 0 ||
			       opt_bool(v, "killOnExit", "capsa.killOnExit", &s->kill_on_exit) < 0 ||
			       opt_bool(v, "hostProcess", "capsa.hostProcess", &s->host_process) < 0
		       ? -1
		       : 0;
}

static int parse_root(struct spec *s, const struct jval *v)
{
	if (!json_is(v, J_OBJ))
		return err_msg("spec: root: expected an object");
	if (json_str(json_get(v, "path"), "root.path", &s->root) < 0 ||
	    opt_bool(v, "readonly", "root.readonly", &s->root_readonly) < 0)
		return -1;
	if (s->root[0] != '/')
		return err_msg("spec: root.path: must be absolute: %s", s->root);
	return 0;
}

static struct jval *load_doc(struct jdoc *doc, const char *path)
{
	size_t len;
	char *text = read_file(path, SPEC_MAX, &len);
	int rc;

	if (!text)
		return NULL;
	rc = json_parse(doc, text, len);
	free(text);
	if (rc < 0) {
		char m[ERR_MAX];
		snprintf(m, sizeof(m), "%s", g_err);
		err_msg("%s: %s", path, m);
		return NULL;
	}
	if (doc->root->type != J_OBJ) {
		err_msg("%s: spec must be a JSON object", path);
		return NULL;
	}
	return doc->root;
}

int spec_load(struct spec *s, const char *path)
{
	struct jval *r;

	memset(s, 0, sizeof(*s));
	r = load_doc(&s->doc, path);
	if (!r)
		return -1;
	if (parse_process(&s->doc, &s->proc, json_get(r, "process")) < 0 || parse_root(s, json_get(r, "root")) < 0 ||
	    opt_str(r, "hostname", "hostname", &s->hostname) < 0 || parse_mounts(s, json_get(r, "mounts")) < 0 ||
	    parse_linux(s, json_get(r, "linux")) < 0 || parse_capsa(s, json_get(r, "capsa")) < 0)
		return -1;
	if (!s->masked && str_array(&s->doc, NULL, "", &s->masked) < 0)
		return -1;
	if (!s->readonly && str_array(&s->doc, NULL, "", &s->readonly) < 0)
		return -1;
	if ((s->nuid_maps || s->ngid_maps) && !spec_ns(s, CLONE_NEWUSER))
		return err_msg("spec: linux.uidMappings given without a user namespace");
	if (has_idmap(s) && (!spec_ns(s, CLONE_NEWUSER) || !spec_ns(s, CLONE_NEWUSER)->path))
		return err_msg("spec: idmapped mounts need a user namespace to join (linux.namespaces[].path)");
	return 0;
}

static int parse_exec_capsa(struct exec_spec *s, const struct jval *v)
{
	const struct jval *st;
	int64_t pid;

	if (!json_is(v, J_OBJ))
		return err_msg("spec: capsa: expected an object");
	if (json_i64(json_get(v, "pid"), "capsa.pid", &pid) < 0)
		return -1;
	if (pid <= 0 || pid > 0x7fffffff)
		return err_msg("spec: capsa.pid: out of range");
	s->pid = (pid_t)pid;
	st = json_get(v, "pidStartTime");
	if (st && st->type != J_NULL && json_u64(st, "capsa.pidStartTime", &s->pid_start_time) < 0)
		return -1;
	s->output_limit = 16u << 20;
	s->drain_ms = 1000;
	if ((json_get(v, "outputLimit") && json_u64(json_get(v, "outputLimit"), "capsa.outputLimit", &s->output_limit) < 0) ||
	    (json_get(v, "timeoutMs") && json_u64(json_get(v, "timeoutMs"), "capsa.timeoutMs", &s->timeout_ms) < 0) ||
	    (json_get(v, "drainMs") && json_u64(json_get(v, "drainMs"), "capsa.drainMs", &s->drain_ms) < 0))
		return -1;
	return str_array(&s->doc, json_get(v, "cgroupProcs"), "capsa.cgroupProcs", &s->cgroup_procs) < 0 ||
			       opt_str(v, "stdout", "capsa.stdout", &s->stdout_path) < 0 ||
			       opt_str(v, "stderr", "capsa.stderr", &s->stderr_path) < 0 ||
			       opt_str(v, "exitFile", "capsa.exitFile", &s->exit_file) < 0
		       ? -1
		       : 0;
}

int exec_spec_load(struct exec_spec *s, const char *path)
{
	const struct jval *linux_;
	struct jval *r;

	memset(s, 0, sizeof(*s));
	r = load_doc(&s->doc, path);
	if (!r)
		return -1;
	if (parse_process(&s->doc, &s->proc, json_get(r, "process")) < 0 ||
	    parse_exec_capsa(s, json_get(r, "capsa")) < 0)
		return -1;
	/* The container's filter applies to what runs in it (as runc exec does). */
	linux_ = json_get(r, "linux");
	if (linux_ && linux_->type != J_NULL && linux_->type != J_OBJ)
		return err_msg("spec: linux: expected an object");
	if (parse_seccomp(&s->proc, linux_) < 0)
		return -1;
	if (s->proc.terminal)
		return err_msg("spec: process.terminal: not supported in exec mode yet");
	return 0;
}

const struct ns_spec *spec_ns(const struct spec *s, int type)
{
	size_t i;

	for (i = 0; i < s->nns; i++)
		if (s->ns[i].type == type)
			return &s->ns[i];
	return NULL;
}
