// What the sandbox operations (run.ts, stop.ts, remove.ts, resources.ts,
// recover.ts) share: the manager's state, named here so each operation is a
// function of it and the manager (index.ts) only dispatches.
import type { CgroupDriver } from '../../config/schema';
import type { Logger } from '../../log';
import type { AnyIsolator } from '../isolator';
import type { CgroupLayout } from '../isolators/cgroups/hierarchy';
import type { Registry } from '../registry';
import type { SandboxContext } from '../sandbox-spec';
import type { Sandbox, SandboxTimeouts } from '../sandbox';
import type { RecoveryHost } from './recover';

/** What StopPodSandbox / RemovePodSandbox need from the container side. */
export interface SandboxContainerHooks {
  /** Stops every container of the sandbox. */
  stopAll(sandboxId: string, signal: AbortSignal): Promise<void>;
  /** Removes every container of the sandbox. */
  removeAll(sandboxId: string, signal: AbortSignal): Promise<void>;
}

export interface SandboxesOptions {
  root: string;
  state: string;
  cgroupDriver: CgroupDriver;
  log: Logger;
  /** The CNI seam: an isolator that needs `netns` and provides `network` (fills ctx.network.ips). */
  network?: AnyIsolator<SandboxContext>;
  timeouts?: Partial<SandboxTimeouts>;
  /** Overrides host detection (tests). */
  cgroupLayout?: CgroupLayout;
}

export interface SandboxHost extends RecoveryHost {
  readonly registry: Registry<Sandbox>;
  /** <state>/ns: the pinned namespaces. */
  readonly nsDir: string;
  /** <state>/shm: the pods' /dev/shm mounts. */
  readonly shmDir: string;
  /** The container side, once the facade wired it. */
  readonly hooks?: SandboxContainerHooks;
  find(idOrPrefix: string): Sandbox | undefined;
  get(idOrPrefix: string): Sandbox;
}
