#define _GNU_SOURCE
#include "process.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "caps.h"
#include "util.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

int proc_reset_signals(void)
{
	struct sigaction sa;
	sigset_t none;
	int s;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	for (s = 1; s < NSIG; s++) {
		if (s == SIGKILL || s == SIGSTOP)
			continue;
		/* glibc reserves 32/33; EINVAL for those is expected. */
		if (sigaction(s, &sa, NULL) < 0 && errno != EINVAL)
			return err_sys("sigaction", NULL);
	}
	sigemptyset(&none);
	if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
		return err_sys("sigprocmask", NULL);
	return 0;
}

static int apply_rlimits(const struct process_spec *p)
{
	size_t i;

	for (i = 0; i < p->nrlimits; i++) {
		struct rlimit rl = { p->rlimits[i].soft, p->rlimits[i].hard };
		if (setrlimit(p->rlimits[i].resource, &rl) < 0) {
			char what[64];
			snprintf(what, sizeof(what), "resource %d (soft %llu, hard %llu)", p->rlimits[i].resource,
				 (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);
			return err_sys("setrlimit", what);
		}
	}
	return 0;
}

static int read_oom_score_adj(int *out)
{
	char *s = read_file("/proc/self/oom_score_adj", 64, NULL);

	if (!s)
		return -1;
	*out = atoi(s);
	free(s);
	return 0;
}

static int write_oom_score_adj(int v)
{
	char buf[16];
	int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC), rc;

	if (fd < 0)
		return -1;
	snprintf(buf, sizeof(buf), "%d", v);
	rc = write_all(fd, buf, strlen(buf));
	if (rc < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return close(fd);
}

/* Lowering oom_score_adj needs CAP_SYS_RESOURCE; without it keep the
 * current value (clamped) and say so, rather than failing the start. In a
 * user namespace the file is not even writable: proc_oom_score_adj set it
 * before the process entered one, and the value there is kept. */
static int apply_oom_score_adj(const struct process_spec *p)
{
	int cur;

	if (!p->has_oom_score_adj)
		return 0;
	if (write_oom_score_adj(p->oom_score_adj) == 0)
		return 0;
	if ((errno == EACCES || errno == EPERM) && read_oom_score_adj(&cur) == 0 && p->oom_score_adj == cur)
		return 0;
	if ((errno == EACCES || errno == EPERM) && read_oom_score_adj(&cur) == 0 && p->oom_score_adj < cur) {
		logf_("oom_score_adj %d refused (no CAP_SYS_RESOURCE), keeping %d", p->oom_score_adj, cur);
		return 0;
	}
	return err_sys("write oom_score_adj", "/proc/self/oom_score_adj");
}

int proc_oom_score_adj(const struct process_spec *p)
{
	return apply_oom_score_adj(p);
}

static int apply_creds(const struct process_spec *p)
{
	if (setgroups(p->ngroups, p->groups) < 0)
		return err_sys("setgroups", NULL);
	if (setresgid(p->gid, p->gid, p->gid) < 0)
		return err_sys("setresgid", NULL);
	if (setresuid(p->uid, p->uid, p->uid) < 0)
		return err_sys("setresuid", NULL);
	return 0;
}

int proc_setup(const struct process_spec *p)
{
	if (apply_rlimits(p) < 0 || apply_oom_score_adj(p) < 0)
		return -1;
	if (seccomp_build(p->seccomp) < 0 || caps_prepare(&p->caps) < 0)
		return -1;
	/* Without no_new_privs, loading needs CAP_SYS_ADMIN: load it while the
	 * process still has every capability, as runc does. */
	if (!p->no_new_privs && seccomp_install() < 0)
		return -1;
	if (apply_creds(p) < 0 || caps_finish(&p->caps) < 0)
		return -1;
	if (p->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return err_sys("prctl PR_SET_NO_NEW_PRIVS", NULL);
	if (chdir(p->cwd) < 0)
		return err_sys("chdir", p->cwd);
	return 0;
}

static const char *env_path(const struct process_spec *p)
{
	size_t i;

	for (i = 0; p->env[i]; i++)
		if (strncmp(p->env[i], "PATH=", 5) == 0)
			return p->env[i] + 5;
	return DEFAULT_PATH;
}

/* Errors worth remembering over ENOENT while walking PATH, as execvp does. */
static int search_path(const struct process_spec *p)
{
	const char *path = env_path(p), *name = p->args[0];
	char full[4096];
	int saved = 0;

	while (*path) {
		const char *colon = strchr(path, ':');
		size_t dl = colon ? (size_t)(colon - path) : strlen(path);
		if ((size_t)snprintf(full, sizeof(full), "%.*s%s%s", (int)dl, dl ? path : ".", "/", name) <
		    sizeof(full)) {
			execve(full, (char *const *)p->args, (char *const *)p->env);
			if (errno != ENOENT && errno != ENOTDIR && !saved) {
				saved = errno;
				errno = saved;
				err_sys("exec", full);
			}
		}
		path += dl;
		if (*path == ':')
			path++;
	}
	if (saved)
		return -1;
	return err_msg("exec: executable file not found in $PATH: %s", name);
}

int proc_exec(const struct process_spec *p)
{
	if (prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0) < 0)
		return err_sys("prctl PR_SET_PDEATHSIG", NULL);
	if (seccomp_install() < 0)
		return -1;
	if (strchr(p->args[0], '/')) {
		execve(p->args[0], (char *const *)p->args, (char *const *)p->env);
		return err_sys("exec", p->args[0]);
	}
	return search_path(p);
}
