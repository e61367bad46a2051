// The seccomp filter as the launch spec carries it: the OCI runtime-spec
// `linux.seccomp` object (LinuxSeccomp), which capsa-monitor turns into a
// BPF program with libseccomp (native/monitor/seccomp.c).

/** What a matching syscall (or, as defaultAction, any other one) gets. */
export type SeccompAction =
  | 'SCMP_ACT_ALLOW'
  | 'SCMP_ACT_ERRNO'
  | 'SCMP_ACT_KILL'
  | 'SCMP_ACT_KILL_THREAD'
  | 'SCMP_ACT_KILL_PROCESS'
  | 'SCMP_ACT_TRAP'
  | 'SCMP_ACT_LOG'
  | 'SCMP_ACT_TRACE';

export const SECCOMP_ACTIONS: readonly SeccompAction[] = [
  'SCMP_ACT_ALLOW',
  'SCMP_ACT_ERRNO',
  'SCMP_ACT_KILL',
  'SCMP_ACT_KILL_THREAD',
  'SCMP_ACT_KILL_PROCESS',
  'SCMP_ACT_TRAP',
  'SCMP_ACT_LOG',
  'SCMP_ACT_TRACE',
];

export type SeccompOperator =
  'SCMP_CMP_NE' | 'SCMP_CMP_LT' | 'SCMP_CMP_LE' | 'SCMP_CMP_EQ' | 'SCMP_CMP_GE' | 'SCMP_CMP_GT' | 'SCMP_CMP_MASKED_EQ';

export const SECCOMP_OPERATORS: readonly SeccompOperator[] = [
  'SCMP_CMP_NE',
  'SCMP_CMP_LT',
  'SCMP_CMP_LE',
  'SCMP_CMP_EQ',
  'SCMP_CMP_GE',
  'SCMP_CMP_GT',
  'SCMP_CMP_MASKED_EQ',
];

/** The architectures the monitor knows (libseccomp's names with the SCMP_ARCH_ prefix). */
export const SECCOMP_ARCHITECTURES: readonly string[] = [
  'SCMP_ARCH_X86',
  'SCMP_ARCH_X86_64',
  'SCMP_ARCH_X32',
  'SCMP_ARCH_ARM',
  'SCMP_ARCH_AARCH64',
  'SCMP_ARCH_MIPS',
  'SCMP_ARCH_MIPS64',
  'SCMP_ARCH_MIPS64N32',
  'SCMP_ARCH_MIPSEL',
  'SCMP_ARCH_MIPSEL64',
  'SCMP_ARCH_MIPSEL64N32',
  'SCMP_ARCH_PPC',
  'SCMP_ARCH_PPC64',
  'SCMP_ARCH_PPC64LE',
  'SCMP_ARCH_S390',
  'SCMP_ARCH_S390X',
  'SCMP_ARCH_PARISC',
  'SCMP_ARCH_PARISC64',
  'SCMP_ARCH_RISCV64',
];

/** seccomp(2) filter flags the monitor can set. */
export const SECCOMP_FLAGS: readonly string[] = [
  'SECCOMP_FILTER_FLAG_TSYNC',
  'SECCOMP_FILTER_FLAG_LOG',
  'SECCOMP_FILTER_FLAG_SPEC_ALLOW',
];

/** A condition on one syscall argument: `arg[index] op value` (MASKED_EQ: `(arg & value) == valueTwo`). */
export interface SeccompArg {
  index: number;
  value: number;
  valueTwo?: number;
  op: SeccompOperator;
}

export interface SeccompSyscall {
  names: string[];
  action: SeccompAction;
  /** For ERRNO and TRACE; the monitor uses EPERM when absent. */
  errnoRet?: number;
  /** ANDed when their indexes differ; a repeated index makes each its own rule (ORed). */
  args?: SeccompArg[];
}

export interface SeccompSpec {
  defaultAction: SeccompAction;
  defaultErrnoRet?: number;
  /** Extra architectures besides the native one (e.g. x86 and x32 on x86_64). */
  architectures: string[];
  flags?: string[];
  syscalls: SeccompSyscall[];
}
