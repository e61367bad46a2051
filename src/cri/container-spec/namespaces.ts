// The container's namespaces, as OCI entries (no path: create a new one; not
// listed: stay in the host's, where the monitor runs):
//   mount    always new
//   network  the sandbox's pinned netns; the host's for host-network pods
//   uts      the sandbox's pinned utsns; the host's for host-network pods
//   ipc      the sandbox's pinned ipcns; the host's for host-IPC pods
//   pid      per the container's NamespaceMode: POD → the sandbox's shared
//            one, CONTAINER → new, NODE → the host's, TARGET → the target
//            container's
//   user     the sandbox's, when the pod runs in a user namespace (POD): the
//            container shares it as it shares net/ipc/uts; its own
//            userns_options may repeat the pod's mappings or be left out
//   cgroup   new on cgroup v2 (as containerd does), the host's on v1
// Network and IPC follow the sandbox (as containerd does: the container's own
// network/ipc modes cannot differ from its pod's).

import { FailedPreconditionError, InvalidArgumentError } from '../../errors';
import { NamespaceMode, type UserNamespace } from '../../gen/runtime/v1/api';
import type { IdMapping, NamespaceSpec, UsernsSpec } from '../../containerizer';
import { sameMappings, usernsFromCri } from '../userns';

const NS = 'config.linux.security_context.namespace_options';

export interface SandboxNamespaces {
  /** Pinned namespace files of the sandbox. */
  nsPaths: { net?: string; ipc?: string; uts?: string; user?: string };
  /** The pod's user namespace mappings (userns POD), with nsPaths.user. */
  userns?: UsernsSpec;
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

/** The pod's user namespace if it has one, after checking the container's request against it. */
function podUserns(input: NamespaceInput): UsernsSpec | undefined {
  const F = `${NS}.userns_options`;
  const pod = input.sandbox.userns;
  const asked = usernsFromCri(input.userns, F);
  if (asked && !pod) throw new InvalidArgumentError(`${F}.mode`, 'POD: the pod sandbox has no user namespace');
  if (!pod) return undefined;
  if (input.userns && !asked) {
    throw new InvalidArgumentError(`${F}.mode`, 'NODE: the pod sandbox runs in a user namespace its containers share');
  }
  if (asked && !sameMappings(asked.uids, pod.uids)) {
    throw new InvalidArgumentError(`${F}.uids`, "must be the pod sandbox's mappings");
  }
  if (asked && !sameMappings(asked.gids, pod.gids)) {
    throw new InvalidArgumentError(`${F}.gids`, "must be the pod sandbox's mappings");
  }
  if (input.pidMode === NamespaceMode.NODE) {
    throw new InvalidArgumentError(`${NS}.pid`, "NODE cannot be combined with the pod's user namespace");
  }
  return pod;
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
  const userns = podUserns(input);
  if (userns) {
    // Joined first by the monitor's init (it owns the others).
    out.push({ type: 'user', path: pinned(input.sandbox.nsPaths.user, 'user') });
    result.uidMappings = userns.uids;
    result.gidMappings = userns.gids;
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
