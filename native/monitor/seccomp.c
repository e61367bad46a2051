/* linux.seccomp (the OCI runtime-spec LinuxSeccomp object) → a BPF filter,
 * through libseccomp.
 *
 * Two steps, in two places:
 * - seccomp_check() runs in the monitor when the spec is read: it walks
 *   the JSON and refuses a bad shape (unknown action, operator,
 *   architecture or flag, an argument index past 5, ...). It allocates
 *   nothing and calls no libseccomp function, so the long-lived monitor
 *   pays nothing for a profile beyond its JSON.
 * - seccomp_build() runs in the container's init (or the exec command)
 *   before it drops privileges, and seccomp_install() loads the result.
 *   The caller picks the moment (see process.c): after no_new_privs when
 *   it is requested, else while CAP_SYS_ADMIN is still held, as runc does.
 *
 * Semantics follow runc: a syscall name libseccomp does not know is
 * skipped (and logged), a rule whose action is the default action is
 * skipped, the args of one rule are ANDed when their indexes differ and
 * become one rule each (ORed) when an index repeats. ERRNO and TRACE
 * default to EPERM. libseccomp's own no_new_privs attribute is turned off:
 * whether NNP is set is the spec's decision alone. */
#define _GNU_SOURCE
#include <errno.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "process.h"
#include "spec.h"
#include "util.h"

#define MAX_ARGS 6
#define MAX_ERRNO_RET 4095

enum act_kind { A_PLAIN, A_ERRNO, A_TRACE };

static const struct {
	const char *name;
	enum act_kind kind;
	uint32_t act;
} actions[] = {
	{ "SCMP_ACT_ALLOW", A_PLAIN, SCMP_ACT_ALLOW },
	{ "SCMP_ACT_ERRNO", A_ERRNO, 0 },
	{ "SCMP_ACT_KILL", A_PLAIN, SCMP_ACT_KILL },
	{ "SCMP_ACT_KILL_THREAD", A_PLAIN, SCMP_ACT_KILL_THREAD },
	{ "SCMP_ACT_KILL_PROCESS", A_PLAIN, SCMP_ACT_KILL_PROCESS },
	{ "SCMP_ACT_TRAP", A_PLAIN, SCMP_ACT_TRAP },
	{ "SCMP_ACT_LOG", A_PLAIN, SCMP_ACT_LOG },
	{ "SCMP_ACT_TRACE", A_TRACE, 0 },
};

static const struct {
	const char *name;
	uint32_t arch;
} arches[] = {
	{ "SCMP_ARCH_X86", SCMP_ARCH_X86 },
	{ "SCMP_ARCH_X86_64", SCMP_ARCH_X86_64 },
	{ "SCMP_ARCH_X32", SCMP_ARCH_X32 },
	{ "SCMP_ARCH_ARM", SCMP_ARCH_ARM },
	{ "SCMP_ARCH_AARCH64", SCMP_ARCH_AARCH64 },
	{ "SCMP_ARCH_MIPS", SCMP_ARCH_MIPS },
	{ "SCMP_ARCH_MIPS64", SCMP_ARCH_MIPS64 },
	{ "SCMP_ARCH_MIPS64N32", SCMP_ARCH_MIPS64N32 },
	{ "SCMP_ARCH_MIPSEL", SCMP_ARCH_MIPSEL },
	{ "SCMP_ARCH_MIPSEL64", SCMP_ARCH_MIPSEL64 },
	{ "SCMP_ARCH_MIPSEL64N32", SCMP_ARCH_MIPSEL64N32 },
	{ "SCMP_ARCH_PPC", SCMP_ARCH_PPC },
	{ "SCMP_ARCH_PPC64", SCMP_ARCH_PPC64 },
	{ "SCMP_ARCH_PPC64LE", SCMP_ARCH_PPC64LE },
	{ "SCMP_ARCH_S390", SCMP_ARCH_S390 },
	{ "SCMP_ARCH_S390X", SCMP_ARCH_S390X },
	{ "SCMP_ARCH_PARISC", SCMP_ARCH_PARISC },
	{ "SCMP_ARCH_PARISC64", SCMP_ARCH_PARISC64 },
	{ "SCMP_ARCH_RISCV64", SCMP_ARCH_RISCV64 },
};

static const struct {
	const char *name;
	enum scmp_compare op;
} ops[] = {
	{ "SCMP_CMP_NE", SCMP_CMP_NE },		{ "SCMP_CMP_LT", SCMP_CMP_LT }, { "SCMP_CMP_LE", SCMP_CMP_LE },
	{ "SCMP_CMP_EQ", SCMP_CMP_EQ },		{ "SCMP_CMP_GE", SCMP_CMP_GE }, { "SCMP_CMP_GT", SCMP_CMP_GT },
	{ "SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ },
};

static const struct {
	const char *name;
	enum scmp_filter_attr attr;
} flags[] = {
	{ "SECCOMP_FILTER_FLAG_TSYNC", SCMP_FLTATR_CTL_TSYNC },
	{ "SECCOMP_FILTER_FLAG_LOG", SCMP_FLTATR_CTL_LOG },
	{ "SECCOMP_FILTER_FLAG_SPEC_ALLOW", SCMP_FLTATR_CTL_SSB },
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define LOOKUP(table, key, out)                                      \
	do {                                                         \
		size_t i_;                                           \
		(out) = -1;                                          \
		for (i_ = 0; i_ < NELEM(table); i_++)                \
			if (strcmp((table)[i_].name, (key)) == 0) {  \
				(out) = (int)i_;                     \
				break;                               \
			}                                            \
	} while (0)

/* The filter built in this process, waiting for seccomp_install(). */
static scmp_filter_ctx g_ctx;

/* An optional array member: NULL when absent or null, -1 when not an array. */
static int opt_array(const struct jval *obj, const char *key, const char *what, const struct jval **out)
{
	const struct jval *v = json_get(obj, key);

	*out = NULL;
	if (!v || v->type == J_NULL)
		return 0;
	if (v->type != J_ARR)
		return err_msg("spec: %s: expected an array", what);
	*out = v;
	return 0;
}

/* An action name plus its optional errno ("errnoRet" / "defaultErrnoRet")
 * → the libseccomp action value. */
static int parse_action(const struct jval *obj, const char *key, const char *ret_key, const char *what,
			uint32_t *out)
{
	const struct jval *rv = json_get(obj, ret_key);
	const char *name;
	uint64_t ret = EPERM;
	int i;

	if (json_str(json_get(obj, key), what, &name) < 0)
		return -1;
	LOOKUP(actions, name, i);
	if (i < 0) {
		if (strcmp(name, "SCMP_ACT_NOTIFY") == 0)
			return err_msg("spec: %s: SCMP_ACT_NOTIFY is not supported", what);
		return err_msg("spec: %s: unknown action %s", what, name);
	}
	if (rv && rv->type != J_NULL) {
		if (json_u64(rv, ret_key, &ret) < 0)
			return -1;
		if (ret > MAX_ERRNO_RET)
			return err_msg("spec: %s: %s %llu is not an errno", what, ret_key, (unsigned long long)ret);
	}
	switch (actions[i].kind) {
	case A_ERRNO:
		*out = SCMP_ACT_ERRNO((uint32_t)ret);
		break;
	case A_TRACE:
		*out = SCMP_ACT_TRACE((uint32_t)ret);
		break;
	default:
		*out = actions[i].act;
	}
	return 0;
}

static int parse_args(const struct jval *rule, struct scmp_arg_cmp *cmp, size_t *n, int *repeated)
{
	const struct jval *args, *c;
	unsigned seen = 0;

	*n = 0;
	*repeated = 0;
	if (opt_array(rule, "args", "linux.seccomp.syscalls[].args", &args) < 0)
		return -1;
	for (c = args ? args->child : NULL; c; c = c->next) {
		const struct jval *two = json_get(c, "valueTwo");
		uint64_t index, value, value2 = 0;
		const char *op;
		int o;
		if (!json_is(c, J_OBJ))
			return err_msg("spec: linux.seccomp.syscalls[].args[]: expected an object");
		if (json_u64(json_get(c, "index"), "linux.seccomp.syscalls[].args[].index", &index) < 0 ||
		    json_u64(json_get(c, "value"), "linux.seccomp.syscalls[].args[].value", &value) < 0 ||
		    (two && two->type != J_NULL &&
		     json_u64(two, "linux.seccomp.syscalls[].args[].valueTwo", &value2) < 0) ||
		    json_str(json_get(c, "op"), "linux.seccomp.syscalls[].args[].op", &op) < 0)
			return -1;
		if (index >= MAX_ARGS)
			return err_msg("spec: linux.seccomp.syscalls[].args[].index: %llu is past the sixth argument",
				       (unsigned long long)index);
		LOOKUP(ops, op, o);
		if (o < 0)
			return err_msg("spec: linux.seccomp.syscalls[].args[].op: unknown operator %s", op);
		if (*n == MAX_ARGS * 4)
			return err_msg("spec: linux.seccomp.syscalls[].args: too many conditions");
		if (seen & (1u << index))
			*repeated = 1;
		seen |= 1u << index;
		if (cmp) {
			cmp[*n].arg = (unsigned)index;
			cmp[*n].op = ops[o].op;
			cmp[*n].datum_a = value;
			cmp[*n].datum_b = value2;
		}
		(*n)++;
	}
	return 0;
}

static int add_rule(scmp_filter_ctx ctx, uint32_t act, const char *name, const struct scmp_arg_cmp *cmp, size_t n,
		    int repeated)
{
	int nr = seccomp_syscall_resolve_name(name), rc;
	size_t i;

	if (nr == __NR_SCMP_ERROR) {
		logf_("seccomp: unknown syscall %s skipped", name);
		return 0;
	}
	if (!repeated) {
		rc = seccomp_rule_add_array(ctx, act, nr, (unsigned)n, cmp);
	} else {
		/* The same argument twice: each condition is a rule of its own. */
		for (i = 0, rc = 0; i < n && rc == 0; i++)
			rc = seccomp_rule_add_array(ctx, act, nr, 1, &cmp[i]);
	}
	if (rc < 0) {
		errno = -rc;
		return err_sys("seccomp: add rule", name);
	}
	return 0;
}

/* Walks linux.seccomp; with ctx NULL it only checks, else it adds the
 * architectures, flags and rules to ctx. */
static int walk(const struct jval *v, scmp_filter_ctx ctx, uint32_t def)
{
	const struct jval *list, *c, *n;
	struct scmp_arg_cmp cmp[MAX_ARGS * 4];
	int i, rc;

	if (opt_array(v, "architectures", "linux.seccomp.architectures", &list) < 0)
		return -1;
	for (c = list ? list->child : NULL; c; c = c->next) {
		const char *name;
		if (json_str(c, "linux.seccomp.architectures[]", &name) < 0)
			return -1;
		LOOKUP(arches, name, i);
		if (i < 0)
			return err_msg("spec: linux.seccomp.architectures: unknown architecture %s", name);
		if (ctx && (rc = seccomp_arch_add(ctx, arches[i].arch)) < 0 && rc != -EEXIST) {
			errno = -rc;
			return err_sys("seccomp: add architecture", name);
		}
	}
	if (opt_array(v, "flags", "linux.seccomp.flags", &list) < 0)
		return -1;
	for (c = list ? list->child : NULL; c; c = c->next) {
		const char *name;
		if (json_str(c, "linux.seccomp.flags[]", &name) < 0)
			return -1;
		LOOKUP(flags, name, i);
		if (i < 0)
			return err_msg("spec: linux.seccomp.flags: unsupported flag %s", name);
		if (ctx && (rc = seccomp_attr_set(ctx, flags[i].attr, 1)) < 0) {
			errno = -rc;
			return err_sys("seccomp: set filter flag", name);
		}
	}
	if (opt_array(v, "syscalls", "linux.seccomp.syscalls", &list) < 0)
		return -1;
	for (c = list ? list->child : NULL; c; c = c->next) {
		const struct jval *names;
		uint32_t act;
		size_t nargs;
		int repeated;
		if (!json_is(c, J_OBJ))
			return err_msg("spec: linux.seccomp.syscalls[]: expected an object");
		if (opt_array(c, "names", "linux.seccomp.syscalls[].names", &names) < 0 ||
		    parse_action(c, "action", "errnoRet", "linux.seccomp.syscalls[].action", &act) < 0 ||
		    parse_args(c, ctx ? cmp : NULL, &nargs, &repeated) < 0)
			return -1;
		if (!names || !names->n)
			return err_msg("spec: linux.seccomp.syscalls[].names: must name a syscall");
		for (n = names->child; n; n = n->next) {
			const char *name;
			if (json_str(n, "linux.seccomp.syscalls[].names[]", &name) < 0)
				return -1;
			if (!name[0])
				return err_msg("spec: linux.seccomp.syscalls[].names: empty name");
			/* libseccomp refuses a rule that repeats the default action. */
			if (ctx && act != def && add_rule(ctx, act, name, cmp, nargs, repeated) < 0)
				return -1;
		}
	}
	return 0;
}

int seccomp_check(const struct jval *v)
{
	uint32_t def;

	if (!v || v->type == J_NULL)
		return 0;
	if (v->type != J_OBJ)
		return err_msg("spec: linux.seccomp: expected an object");
	if (parse_action(v, "defaultAction", "defaultErrnoRet", "linux.seccomp.defaultAction", &def) < 0)
		return -1;
	if (json_get(v, "listenerPath") && json_get(v, "listenerPath")->type == J_STR &&
	    json_get(v, "listenerPath")->s[0])
		return err_msg("spec: linux.seccomp.listenerPath: seccomp notify is not supported");
	return walk(v, NULL, def);
}

int seccomp_build(const struct jval *v)
{
	uint32_t def;
	int rc;

	if (g_ctx || !v || v->type == J_NULL)
		return 0;
	if (parse_action(v, "defaultAction", "defaultErrnoRet", "linux.seccomp.defaultAction", &def) < 0)
		return -1;
	g_ctx = seccomp_init(def);
	if (!g_ctx)
		return err_msg("seccomp: init: cannot create the filter");
	if ((rc = seccomp_attr_set(g_ctx, SCMP_FLTATR_CTL_NNP, 0)) < 0) {
		errno = -rc;
		return err_sys("seccomp: clear the no_new_privs attribute", NULL);
	}
	/* Real errnos from seccomp_load (else libseccomp folds them into ECANCELED). */
	if ((rc = seccomp_attr_set(g_ctx, SCMP_FLTATR_API_SYSRAWRC, 1)) < 0) {
		errno = -rc;
		return err_sys("seccomp: set the raw return code attribute", NULL);
	}
	if (walk(v, g_ctx, def) < 0) {
		seccomp_release(g_ctx);
		g_ctx = NULL;
		return -1;
	}
	return 0;
}

int seccomp_install(void)
{
	int rc;

	if (!g_ctx)
		return 0;
	rc = seccomp_load(g_ctx);
	if (rc < 0) {
		errno = -rc;
		return err_sys("seccomp: load the filter", NULL);
	}
	seccomp_release(g_ctx);
	g_ctx = NULL;
	return 0;
}
