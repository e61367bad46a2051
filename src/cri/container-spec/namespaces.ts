// The container's namespaces, as OCI entries (no path: create a new one; not
// listed: stay in the host's, where the monitor runs):
//   mount    always new
//   network  the sandbox's pinned netns; the host's for host-network pods
//   uts      the sandbox's pinned utsns; the host's for host-network pods
//   ipc      the sandbox's pinned ipcns; the host's for host-IPC pods
//   pid      per the container's NamespaceMode: POD → the sandbox's shared
//            one, CONTAINER → new, NODE → the host's, TARGET → the target
//            container's
//   user     the sandbox's, when the pod runs in a user namespace
//   cgroup   new on cgroup v2 (as containerd does), the host's on v1
// Network and IPC follow the sandbox (as containerd does: the container's own
// network/ipc modes cannot differ from its pod's).

import { FailedPreconditionError, InvalidArgumentError } from '../../errors';
import { NamespaceMode, type UserNamespace } from '../../gen/runtime/v1/api';
import type { IdMapping, NamespaceSpec } from '../../containerizer';

const NS = 'config.linux.security_context.namespace_options';

export interface SandboxNamespaces {
  /** Pinned namespace files of the sandbox. */
  nsPaths: { net?: string; ipc?: string; uts?: string; user?: string };
  /** The pod's shared PID namespace (present when the pod's PID mode is POD). */
  pidNsPath?: string;
  hostNetwork: boolean;
  hostIpc: boolean;
}

export interface NamespaceInput {
  pidMode: NamespaceMode;
  targetId: string;
  userns: UserNamespace | undefined;
  sandbox: SandboxNamespaces;
  /** The PID namespace file of a container of the same pod (/proc/<pid>/ns/pid), if it runs. */
  targetPidNsPath: (containerId: string) => string | undefined;
  cgroupNamespace: boolean;
}

export interface NamespaceResult {
  namespaces: NamespaceSpec[];
  uidMappings?: IdMapping[];
  gidMappings?: IdMapping[];
}

function pinned(path: string | undefined, what: string): string {
  if (!path) throw new FailedPreconditionError(`the sandbox has no pinned ${what} namespace`, { stage: 'create' });
  return path;
}

function mappings(list: UserNamespace['uids'], field: string): IdMapping[] {
  if (list.length === 0) throw new InvalidArgumentError(field, 'must not be empty with a POD user namespace');
  return list.map((m, i) => {
    if (m.length <= 0) throw new InvalidArgumentError(`${field}[${i}].length`, 'must be positive');
    return { containerID: m.containerId, hostID: m.hostId, size: m.length };
  });
}

function pidNamespace(input: NamespaceInput): NamespaceSpec | undefined {
  switch (input.pidMode) {
    case NamespaceMode.POD:
      if (!input.sandbox.pidNsPath) {
        throw new InvalidArgumentError(`${NS}.pid`, 'POD: the pod sandbox has no shared PID namespace');
      }
      return { type: 'pid', path: input.sandbox.pidNsPath };
    case NamespaceMode.CONTAINER:
      return { type: 'pid' };
    case NamespaceMode.NODE:
      return undefined;
    case NamespaceMode.TARGET: {
      if (input.targetId === '') throw new InvalidArgumentError(`${NS}.target_id`, 'required with the TARGET PID mode');
      const path = input.targetPidNsPath(input.targetId);
      if (!path) {
        throw new InvalidArgumentError(`${NS}.target_id`, `container "${input.targetId}" is not running in this pod`);
      }
      return { type: 'pid', path };
    }
    default:
      throw new InvalidArgumentError(`${NS}.pid`, `unknown namespace mode ${String(input.pidMode)}`);
  }
}

export function buildNamespaces(input: NamespaceInput): NamespaceResult {
  const out: NamespaceSpec[] = [];
  const result: NamespaceResult = { namespaces: out };
  const userns = input.userns;
  if (userns && userns.mode !== NamespaceMode.NODE) {
    if (userns.mode !== NamespaceMode.POD) {
      throw new InvalidArgumentError(`${NS}.userns_options.mode`, 'only POD and NODE are supported');
    }
    if (!input.sandbox.nsPaths.user) {
      throw new InvalidArgumentError(`${NS}.userns_options`, 'the pod sandbox has no user namespace');
    }
    out.push({ type: 'user', path: input.sandbox.nsPaths.user });
    result.uidMappings = mappings(userns.uids, `${NS}.userns_options.uids`);
    result.gidMappings = mappings(userns.gids, `${NS}.userns_options.gids`);
  }
  const pid = pidNamespace(input);
  if (pid) out.push(pid);
  if (!input.sandbox.hostNetwork) {
    out.push({ type: 'network', path: pinned(input.sandbox.nsPaths.net, 'network') });
  }
  if (!input.sandbox.hostIpc) out.push({ type: 'ipc', path: pinned(input.sandbox.nsPaths.ipc, 'IPC') });
  if (!input.sandbox.hostNetwork) out.push({ type: 'uts', path: pinned(input.sandbox.nsPaths.uts, 'UTS') });
  out.push({ type: 'mount' });
  if (input.cgroupNamespace) out.push({ type: 'cgroup' });
  return result;
}
