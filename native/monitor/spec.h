/* The launch spec: OCI runtime-spec config.json subset + the "capsa"
 * extension (see README.md), and the exec spec. The daemon's side of this
 * contract is src/containerizer/launcher/spec.ts (LaunchSpec, ExecSpec): a
 * field added here is added there. */
#ifndef CAPSA_SPEC_H
#define CAPSA_SPEC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "json.h"

struct rlimit_spec {
	int resource;
	uint64_t soft, hard;
};

struct caps_spec {
	int present;
	uint64_t bounding, effective, inheritable, permitted, ambient;
};

struct process_spec {
	const char **args;  /* NULL-terminated */
	const char **env;   /* NULL-terminated */
	const char *cwd;
	uid_t uid;
	gid_t gid;
	gid_t *groups;
	size_t ngroups;
	int terminal;
	struct rlimit_spec *rlimits;
	size_t nrlimits;
	struct caps_spec caps;
	int no_new_privs;
	int has_oom_score_adj;
	int oom_score_adj;
	const struct jval *seccomp; /* linux.seccomp, NULL for none (checked, see seccomp.c) */
};

struct mount_spec {
	const char *dest, *type, *source;
	unsigned long flags;  /* MS_* set by options */
	unsigned long clear;  /* MS_* cleared by options (rw, suid, ...) */
	unsigned long prop;   /* MS_SHARED/SLAVE/PRIVATE/UNBINDABLE [|MS_REC] */
	int bind;             /* bind or rbind */
	int rro;              /* "rro": read-only through every submount too (mount_setattr) */
	int idmap;            /* "idmap": an idmapped bind through the user namespace the container joins */
	char *data;           /* options passed to the filesystem */
};

struct ns_spec {
	int type; /* CLONE_NEW* */
	const char *path; /* join this one, NULL to create */
};

struct device_spec {
	const char *path;
	char type; /* c, b, u, p */
	int64_t major, minor;
	mode_t mode;
	uid_t uid;
	gid_t gid;
};

struct id_map {
	uint32_t container, host, size;
};

struct kv {
	const char *key, *value;
};

struct spec {
	struct jdoc doc;
	struct process_spec proc;
	const char *root;
	int root_readonly;
	const char *hostname;
	struct mount_spec *mounts;
	size_t nmounts;
	struct ns_spec ns[8];
	size_t nns;
	const char **masked, **readonly; /* NULL-terminated */
	struct kv *sysctl;
	size_t nsysctl;
	struct device_spec *devices;
	size_t ndevices;
	struct id_map *uid_maps, *gid_maps;
	size_t nuid_maps, ngid_maps;
	unsigned long root_prop;
	/* capsa extension */
	const char **cgroup_procs; /* NULL-terminated */
	/* Where the monitor itself goes (systemd driver, v1: the scope in systemd's
	 * own hierarchies, so the unit outlives the init until the exit is recorded). */
	const char **monitor_cgroup_procs;
	const char *memory_cgroup;
	const char *log_path;
	int stdin_, stdin_once;
	int kill_on_exit;
	/* The init is an OCI runtime run on the host (capsa.hostProcess): no
	 * namespaces, filesystem or credentials of its own; it makes the container. */
	int host_process;
};

/* Exec spec: { "process": {...}, "capsa": {...} } */
struct exec_spec {
	struct jdoc doc;
	struct process_spec proc;
	pid_t pid;
	uint64_t pid_start_time;
	const char **cgroup_procs;
	const char *stdout_path, *stderr_path, *exit_file;
	uint64_t output_limit;
	uint64_t timeout_ms, drain_ms;
};

int spec_load(struct spec *s, const char *path);
int exec_spec_load(struct exec_spec *s, const char *path);
/* Returns the namespace entry of a type, or NULL when the spec lists none. */
const struct ns_spec *spec_ns(const struct spec *s, int type);

#endif
