// What the container operations (create.ts, start.ts, stop.ts, remove.ts,
// exec.ts, observe.ts, recover.ts) share: the manager's state, named here so
// each operation is a function of it and the manager (index.ts) only
// dispatches.
import type { Logger } from '../../log';
import type { Provisioner } from '../../provisioner/provisioner';
import type { CheckpointStore } from '../checkpoint';
import type { ContainerEventKind, ContainerEvents } from '../events';
import type { CgroupManager } from '../isolators/cgroups/manager';
import type { Launcher } from '../launcher/launcher';
import type { Registry } from '../registry';
import type { Sandboxes } from '../sandboxes';
import type { Container, ContainerTimeouts } from './container';

export interface ContainersOptions {
  root: string;
  state: string;
  log: Logger;
  sandboxes: Sandboxes;
  provisioner: Provisioner;
  launcher: Launcher;
  /** The rootfs backends' per-container state (<root>/rootfs), swept on recovery. */
  backendStateDir: string;
  timeouts?: Partial<ContainerTimeouts>;
  /** Where lifecycle events go (GetContainerEvents); a private bus when absent. */
  events?: ContainerEvents;
}

export interface ContainerHost {
  readonly opts: ContainersOptions;
  readonly store: CheckpointStore;
  readonly timeouts: ContainerTimeouts;
  readonly log: Logger;
  /** <state>/containers: one run dir per container. */
  readonly runRoot: string;
  readonly registry: Registry<Container>;
  readonly cgroups: CgroupManager;
  readonly launcher: Launcher;
  /** The daemon is shutting down: no new watches. */
  readonly closed: boolean;
  persist(c: Container): Promise<void>;
  publish(kind: ContainerEventKind, c: Container, at?: bigint): void;
  /** Drops the container from memory (its watch, its id, its name). */
  forget(c: Container): void;
  /** The PID namespace of a running container of `sandboxId` (TARGET mode). */
  targetPidNsPath(sandboxId: string, idOrPrefix: string): string | undefined;
  get(idOrPrefix: string): Container;
}

/** The owner of a container's image pin. */
export function pinOwner(id: string): string {
  return `container:${id}`;
}

/** Resolves when `p` settles or `ms` pass; true when it settled. */
export async function settledWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)));
  try {
    return await Promise.race([p.then(() => true), t]);
  } finally {
    clearTimeout(timer);
  }
}
