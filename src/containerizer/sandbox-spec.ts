// A sandbox (pod) as the containerizer sees it: a validated, runtime-neutral
// spec (src/cri/sandbox-mapping.ts builds it from RunPodSandbox), the
// context the sandbox isolators fill in, and the handle containers use.
import type { Logger } from '../log';
import type { CgroupHandle } from './isolators/cgroups/backend';
import type { CgroupManager } from './isolators/cgroups/manager';
import type { CgroupDriverName } from './isolators/cgroups/paths';
import type { CgroupResources } from './isolators/cgroups/values';
import type { IdMapping } from './launcher/spec';

export type HostOrPod = 'pod' | 'host';
/** pod: one PID namespace for the pod, held by capsa-pause; container: one per container; host: the node's. */
export type PidMode = 'pod' | 'container' | 'host';

/**
 * A pod in a user namespace of its own (CRI userns_options mode POD): the
 * mappings, checked (src/cri/userns.ts); each list maps container id 0.
 */
export interface UsernsSpec {
  uids: IdMapping[];
  gids: IdMapping[];
}

export interface SandboxSpec {
  /** Unique among live sandboxes: <name>_<namespace>_<uid>_<attempt>. */
  key: string;
  metadata: { name: string; uid: string; namespace: string; attempt: number };
  hostname: string;
  logDirectory: string;
  /** undefined: copy the host's resolv.conf. */
  dns?: { servers: string[]; searches: string[]; options: string[] };
  /** UTS follows network (a host-network pod keeps the host's hostname). */
  namespaces: { network: HostOrPod; ipc: HostOrPod; pid: PidMode; userns?: UsernsSpec };
  /** Validated namespaced sysctls, written inside the pod's namespaces. */
  sysctls: Record<string, string>;
  /** As kubelet sent it ('' → the daemon's default parent). */
  cgroupParent: string;
  /** Pod-level limits (the sum of the containers'), applied to the pod cgroup. */
  resources?: CgroupResources;
  overhead?: CgroupResources;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  runtimeHandler: string;
  /** For the network isolator (CNI, later). */
  portMappings: { protocol: string; containerPort: number; hostPort: number; hostIp: string }[];
  /** The request's config as proto3 JSON, for verbose status; opaque here. */
  original?: unknown;
}

/** Host paths of the pod files; bind-mount them into every container. */
export interface PodFiles {
  hosts: string;
  resolvConf: string;
  hostname: string;
  /** tmpfs for /dev/shm; "/dev/shm" when the pod uses the host IPC namespace. */
  shm: string;
}

export interface PinnedNamespaces {
  /** The pod's user namespace (userns POD); it owns the net, UTS, IPC and pid ones then. */
  user?: string;
  net?: string;
  uts?: string;
  ipc?: string;
  pid?: string;
}

/** Everything one sandbox's isolators share while being made or recovered. */
export interface SandboxContext {
  id: string;
  spec: SandboxSpec;
  /** <root>/sandboxes/<id>: checkpoint and pod files. */
  dir: string;
  /** <state>/ns: pinned namespace files. */
  nsDir: string;
  /** <state>/shm: pod /dev/shm mounts. */
  shmDir: string;
  /** The daemon's root dir (default cgroup parent derivation). */
  root: string;
  cgroupDriver: CgroupDriverName;
  log: Logger;
  // Filled in by the isolators:
  namespaces: PinnedNamespaces;
  cgroup?: CgroupHandle;
  pidHolder?: { pid: number; startTime: number; cgroupPath: string };
  files?: PodFiles;
  /** Filled in by the network isolator (CNI, a later issue); empty: loopback only. */
  network: { ips: string[] };
}

/**
 * What a container needs from its sandbox (the container side of the
 * Mesos nested-container relation).
 */
export interface SandboxHandle {
  id: string;
  ready: boolean;
  spec: SandboxSpec;
  hostname: string;
  /** Namespace modes in effect. */
  namespaces: SandboxSpec['namespaces'];
  /**
   * Pinned namespace files to setns() into. A missing entry means the
   * host's namespace (network/uts for host network, ipc for host IPC), or for
   * pid: no pod namespace (container or host mode).
   */
  nsPaths: PinnedNamespaces;
  /** The shared PID namespace's init (pid mode "pod"). */
  pidHolder?: { pid: number; startTime: number };
  cgroup: {
    driver: CgroupDriverName;
    /** The pod cgroup, relative to each hierarchy (e.g. /kubepods/pod…/capsa-<sandbox id>). */
    podPath: string;
    /** Where a container's cgroup goes: <pod>/capsa-<id> (cgroupfs) or <pod>/capsa-<id>.scope (systemd). */
    containerPath: (containerId: string) => string;
    /** Creates/destroys container cgroups (same code as the pod's). */
    manager: CgroupManager;
  };
  /** Host files to bind-mount at /etc/hosts, /etc/resolv.conf, /etc/hostname and /dev/shm. */
  files: PodFiles;
  logDirectory: string;
}
