#define _GNU_SOURCE
#include "caps.h"

#include <errno.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util.h"

static const char *const cap_names[] = {
	"CAP_CHOWN",		"CAP_DAC_OVERRIDE",	"CAP_DAC_READ_SEARCH", "CAP_FOWNER",
	"CAP_FSETID",		"CAP_KILL",		"CAP_SETGID",	       "CAP_SETUID",
	"CAP_SETPCAP",		"CAP_LINUX_IMMUTABLE",	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
	"CAP_NET_ADMIN",	"CAP_NET_RAW",		"CAP_IPC_LOCK",	       "CAP_IPC_OWNER",
	"CAP_SYS_MODULE",	"CAP_SYS_RAWIO",	"CAP_SYS_CHROOT",      "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT",	"CAP_SYS_ADMIN",	"CAP_SYS_BOOT",	       "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE",	"CAP_SYS_TIME",		"CAP_SYS_TTY_CONFIG",  "CAP_MKNOD",
	"CAP_LEASE",		"CAP_AUDIT_WRITE",	"CAP_AUDIT_CONTROL",   "CAP_SETFCAP",
	"CAP_MAC_OVERRIDE",	"CAP_MAC_ADMIN",	"CAP_SYSLOG",	       "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND",	"CAP_AUDIT_READ",	"CAP_PERFMON",	       "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
};

#define NCAPS ((int)(sizeof(cap_names) / sizeof(cap_names[0])))

int cap_from_name(const char *name)
{
	int i;

	for (i = 0; i < NCAPS; i++)
		if (strcasecmp(cap_names[i], name) == 0)
			return i;
	/* Accept "CHOWN" as well as "CAP_CHOWN". */
	for (i = 0; i < NCAPS; i++)
		if (strcasecmp(cap_names[i] + 4, name) == 0)
			return i;
	return -1;
}

static int last_cap(void)
{
	static int cached = -1;
	char *s;

	if (cached >= 0)
		return cached;
	s = read_file("/proc/sys/kernel/cap_last_cap", 64, NULL);
	cached = s ? atoi(s) : NCAPS - 1;
	free(s);
	if (cached > 63)
		cached = 63;
	return cached;
}

static int drop_bounding(uint64_t keep)
{
	int c, last = last_cap();

	for (c = 0; c <= last; c++) {
		if (keep & (1ull << c))
			continue;
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
			return err_sys("prctl PR_CAPBSET_DROP", c < NCAPS ? cap_names[c] : "unknown capability");
	}
	return 0;
}

int caps_prepare(const struct caps_spec *caps)
{
	if (!caps->present)
		return 0;
	if (drop_bounding(caps->bounding) < 0)
		return -1;
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
		return err_sys("prctl PR_SET_KEEPCAPS", NULL);
	return 0;
}

static int capset3(uint64_t eff, uint64_t perm, uint64_t inh)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2];
	int i;

	for (i = 0; i < 2; i++) {
		data[i].effective = (uint32_t)(eff >> (32 * i));
		data[i].permitted = (uint32_t)(perm >> (32 * i));
		data[i].inheritable = (uint32_t)(inh >> (32 * i));
	}
	if (syscall(SYS_capset, &hdr, data) < 0)
		return err_sys("capset", NULL);
	return 0;
}

static uint64_t known_mask(void)
{
	int last = last_cap();

	return last >= 63 ? ~0ull : (1ull << (last + 1)) - 1;
}

int caps_finish(const struct caps_spec *caps)
{
	uint64_t m = known_mask();
	int c;

	if (!caps->present)
		return 0;
	if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
		return err_sys("prctl PR_SET_KEEPCAPS", NULL);
	if (capset3(caps->effective & m, caps->permitted & m, caps->inheritable & m) < 0)
		return -1;
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
		return err_sys("prctl PR_CAP_AMBIENT_CLEAR_ALL", NULL);
	for (c = 0; c <= last_cap(); c++) {
		if (!(caps->ambient & (1ull << c)))
			continue;
		if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) < 0)
			return err_sys("prctl PR_CAP_AMBIENT_RAISE", c < NCAPS ? cap_names[c] : "unknown capability");
	}
	return 0;
}

int caps_only_kill(void)
{
	uint64_t k = 1ull << CAP_KILL;

	return capset3(k, k, 0);
}
