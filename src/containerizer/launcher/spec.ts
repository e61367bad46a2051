// The launch contract between the containerizer and capsa-monitor: the
// spec.json a container runs from (the OCI runtime-spec config.json subset
// capsa uses plus a "capsa" extension), the exec spec of ExecSync / Exec, and
// the error record the monitor leaves in start-error. Mirrored by
// native/monitor/spec.h (struct spec, struct exec_spec; parsed in spec.c),
// native/monitor/seccomp.c (linux.seccomp) and native/monitor/util.h
// (struct err_rec); a field added here is added there. Every value is plain
// JSON (no bigint), so JSON.stringify writes it as is.

export interface LaunchSpec {
  ociVersion: string;
  process: ProcessSpec;
  root: { path: string; readonly: boolean };
  /**
   * sethostname in a new UTS namespace. Never set by the builder: containers
   * join their pod's UTS namespace (or the host's), which keeps its name.
   */
  hostname?: string;
  mounts: MountSpec[];
  linux: LinuxSpec;
  capsa: CapsaExtension;
}

export interface ProcessSpec {
  terminal: boolean;
  user: { uid: number; gid: number; additionalGids: number[] };
  args: string[];
  env: string[];
  cwd: string;
  capabilities: CapabilitySets;
  rlimits: RlimitSpec[];
  noNewPrivileges: boolean;
  oomScoreAdj: number;
}

export interface CapabilitySets {
  bounding: string[];
  effective: string[];
  inheritable: string[];
  permitted: string[];
  ambient: string[];
}

export interface RlimitSpec {
  type: string;
  hard: number;
  soft: number;
}

export interface MountSpec {
  destination: string;
  type: string;
  source: string;
  options: string[];
}

export interface NamespaceSpec {
  type: 'pid' | 'network' | 'mount' | 'ipc' | 'uts' | 'user' | 'cgroup';
  /** Join this namespace; absent means create a new one. */
  path?: string;
}

export interface DeviceSpec {
  path: string;
  type: 'c' | 'b';
  major: number;
  minor: number;
  fileMode: number;
  uid: number;
  gid: number;
}

export interface DeviceRule {
  allow: boolean;
  type?: 'a' | 'c' | 'b';
  major?: number;
  minor?: number;
  access: string;
}

export interface IdMapping {
  containerID: number;
  hostID: number;
  size: number;
}

export interface ResourcesSpec {
  devices: DeviceRule[];
  memory?: { limit?: number; swap?: number };
  cpu?: { shares?: number; quota?: number; period?: number; cpus?: string; mems?: string };
  pids?: { limit: number };
  hugepageLimits?: { pageSize: string; limit: number }[];
  unified?: Record<string, string>;
}

export interface LinuxSpec {
  namespaces: NamespaceSpec[];
  uidMappings?: IdMapping[];
  gidMappings?: IdMapping[];
  devices: DeviceSpec[];
  resources: ResourcesSpec;
  cgroupsPath: string;
  /** Not set by the builder: the sandbox applies the pod's sysctls to the namespaces it pins. */
  sysctl?: Record<string, string>;
  maskedPaths: string[];
  readonlyPaths: string[];
  rootfsPropagation: 'rprivate' | 'rslave' | 'rshared';
  /** The seccomp filter capsa-monitor loads; absent: unconfined. */
  seccomp?: SeccompSpec;
}

/** A security profile as CRI names it (seccomp is enforced through linux.seccomp; AppArmor is only recorded). */
export interface ProfileSpec {
  type: 'RuntimeDefault' | 'Unconfined' | 'Localhost';
  localhostRef?: string;
}

export interface CapsaExtension {
  containerId: string;
  /** Host path of the CRI log file; absent when kubelet asked for none. */
  logPath?: string;
  stdin: boolean;
  stdinOnce: boolean;
  /** cgroup.procs files the init is written to; filled in by the cgroups isolator. */
  cgroupProcs?: string[];
  /** The memory cgroup the monitor watches for OOM kills; filled in by the cgroups isolator. */
  memoryCgroup?: string;
  /** cgroup.procs files the monitor joins itself (systemd driver on v1: the scope in systemd's hierarchies). */
  monitorCgroupProcs?: string[];
  /** What CRI asked for; the filter itself is linux.seccomp. AppArmor is not enforced yet. */
  seccomp: ProfileSpec;
  apparmor: ProfileSpec;
  /** The pod's RuntimeClass handler ("" or absent: capsa's own launcher). */
  runtimeHandler?: string;
  /**
   * The init is an OCI runtime run on the host (native/monitor: no namespaces,
   * filesystem or credentials of its own); set only on the runtime's own spec.
   */
  hostProcess?: boolean;
  /** The monitor kills what is left in cgroupProcs when the init exits (default true). */
  killOnExit?: boolean;
}

/** The exec spec (`capsa-monitor exec|exec-stream <file>`): a process to run in a running container. */
export interface ExecSpec {
  process: Pick<ProcessSpec, 'terminal' | 'args' | 'env' | 'cwd' | 'user' | 'noNewPrivileges'> & {
    capabilities?: CapabilitySets;
  };
  /** The container's filter, applied to the command too (as runc exec does). */
  linux?: { seccomp: SeccompSpec };
  capsa: {
    /** The container init, whose namespaces are joined (pid checked against its start time). */
    pid: number;
    pidStartTime: number;
    /** The container's cgroup.procs files. */
    cgroupProcs: string[];
    /** 0: none. */
    timeoutMs: number;
    /** How long output is drained after the command exits. */
    drainMs: number;
    /** Per stream. */
    outputLimit: number;
    /** A file, or "fd:N" for a descriptor the monitor inherits (exec-stream). */
    stdout: string;
    stderr: string;
    exitFile: string;
  };
}

/**
 * Why the monitor could not start a container (start-error, one JSON line;
 * struct err_rec). `message` is the human line; the rest says what failed
 * without parsing it.
 */
export interface MonitorErrorRecord {
  message: string;
  /** The failing operation: "exec", "chdir", "open log", "bind", "source", … */
  op?: string;
  /** The path the operation failed on. */
  path?: string;
  /** errno and its name (ENOENT …), when a system call failed. */
  errno?: number;
  code?: string;
  /** The destination of the spec mount being made, when the failure is in one. */
  mount?: string;
}

// ---------------------------------------------------------------------------
// linux.seccomp: the OCI LinuxSeccomp object, turned into a BPF program with
// libseccomp by native/monitor/seccomp.c.

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
