// The launch spec the daemon writes for capsa-monitor: the OCI runtime-spec
// config.json shape (the subset capsa uses) plus a "capsa" extension object.
// Every value is plain JSON (no bigint), so JSON.stringify writes it as is.

import type { SeccompSpec } from '../seccomp/types';

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
}

/** The image config fields the builder reads (OCI image-spec config JSON; untrusted). */
export interface ImageConfigInput {
  config?: {
    User?: unknown;
    Env?: unknown;
    Entrypoint?: unknown;
    Cmd?: unknown;
    WorkingDir?: unknown;
    Volumes?: unknown;
    StopSignal?: unknown;
    [key: string]: unknown;
  } | null;
  [key: string]: unknown;
}

/** A host device node as stat(2) reports it. */
export interface HostDevice {
  path: string;
  type: 'c' | 'b';
  major: number;
  minor: number;
  /** Permission bits only (mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
}

/** The host checks the builder needs; see host-io.ts for the real ones. */
export interface SpecIo {
  /** Whether a CRI mount's host path exists. */
  pathExists(hostPath: string): Promise<boolean>;
  /** Whether a host path is on a procfs (only one may cover /proc); absent: never. */
  isProcfs?(hostPath: string): Promise<boolean>;
  /** Whether the kernel makes binds read-only recursively (mount_setattr); absent: no. */
  recursiveReadOnly?: boolean;
  /** The device node at a host path, or undefined when it is not a char/block device. */
  statDevice(hostPath: string): Promise<HostDevice | undefined>;
  /** Every device node under the host's /dev (privileged containers); omit to give them none. */
  listHostDevices?(): Promise<HostDevice[]>;
  /** The PID namespace file of a running container of the same pod (TARGET mode). */
  targetPidNsPath?(containerId: string): string | undefined;
  /** A Localhost seccomp profile's bytes, undefined when missing (default: read the host file). */
  readSeccompProfile?(hostPath: string): Promise<Buffer | undefined>;
}
