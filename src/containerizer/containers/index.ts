// Containers: Mesos nested containers inside a pod sandbox. Each has its own
// mount namespace and rootfs (provisioner backend), joins its pod's
// net/UTS/IPC namespaces, gets a PID namespace per its mode, and a cgroup
// nested in the pod's. capsa-monitor (launcher/) runs its init.
//
// Lifecycle (state.ts): create = PREPARING (checkpoint, image pin, rootfs)
// → ISOLATING (spec, cgroup, monitor with the init held before execve) →
// RUNNING (the object is live: CRI CREATED, then RUNNING after start); the
// init's exit → DESTROYING (cgroup killed and removed) → STOPPED (CRI
// EXITED); remove → DESTROYING → REMOVED. Lifecycle operations on one
// container are serialized; List and Status read memory; CRI states come
// from the persisted facts (created/started/finished timestamps, exit code).
// Every fact is checkpointed before the RPC that caused it answers.
//
// This class holds the state and dispatches; each operation is its own file
// (create, start, stop, remove, exec, observe, recover).
import * as path from 'path';
import { asCapsaError } from '../../errors';
import type { Logger } from '../../log';
import type { Backend } from '../../provisioner/backends/backend';
import { raceAbort } from '../../util/timeout';
import { CheckpointStore } from '../checkpoint';
import type { ContainerRequest, LaunchSpec } from '../container-spec';
import { ContainerEventKind, ContainerEvents } from '../events';
import type { CgroupManager } from '../isolators/cgroups/manager';
import type { CgroupStats, CgroupStatsScope } from '../isolators/cgroups/stats';
import type { CgroupResources } from '../isolators/cgroups/values';
import type { ExecResult, Launcher } from '../launcher/launcher';
import { Registry, RegistryQueries } from '../registry';
import type { SandboxContainerHooks } from '../sandboxes';
import { isCreating, nowNs } from '../state';
import {
  CONTAINER_CHECKPOINT_VERSION,
  Container,
  DEFAULT_CONTAINER_TIMEOUTS,
  type ContainerTimeouts,
} from './container';
import { create } from './create';
import * as exec from './exec';
import type { ContainerHost, ContainersOptions } from './host';
import { observe, poll } from './observe';
import { recoverContainers } from './recover';
import { removeContainer } from './remove';
import { startLocked } from './start';
import { stopContainer } from './stop';

export { Container } from './container';
export type { ContainersOptions } from './host';

export class Containers extends RegistryQueries<Container> implements ContainerHost {
  readonly store: CheckpointStore;
  readonly timeouts: ContainerTimeouts;
  readonly log: Logger;
  readonly runRoot: string;
  readonly events: ContainerEvents;
  readonly registry = new Registry<Container>({
    key: (c) => c.record.key,
    noun: 'container',
    field: 'container_id',
    contextKey: 'containerId',
  });
  private poller?: NodeJS.Timeout;
  closed = false;

  /** Builds the container side and recovers every checkpointed container; then watches exits. */
  static async start(opts: ContainersOptions): Promise<Containers> {
    const cs = new Containers(opts);
    await recoverContainers(cs, opts.backendStateDir);
    cs.startPolling();
    return cs;
  }

  constructor(readonly opts: ContainersOptions) {
    super();
    this.log = opts.log;
    this.timeouts = { ...DEFAULT_CONTAINER_TIMEOUTS, ...opts.timeouts };
    this.store = new CheckpointStore(opts.root);
    this.runRoot = path.join(opts.state, 'containers');
    this.events = opts.events ?? new ContainerEvents();
  }

  publish(kind: ContainerEventKind, c: Container, at: bigint = nowNs()): void {
    this.events.publish({ kind, containerId: c.id, sandboxId: c.record.sandboxId, at });
  }

  get cgroups(): CgroupManager {
    return this.opts.sandboxes.cgroups;
  }

  get launcher(): Launcher {
    return this.opts.launcher;
  }

  /** Starts watching exits (after recovery). */
  startPolling(): void {
    if (this.poller || this.closed) return;
    this.poller = setInterval(() => {
      poll(this).catch((err: unknown) => this.log.warn({ err: asCapsaError(err).message }, 'exit poll failed'));
    }, this.timeouts.pollMs);
    this.poller.unref();
  }

  /** Stops the watches; containers keep running. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.poller) clearInterval(this.poller);
    for (const c of this.registry.all()) c.unwatch?.();
  }

  /** What the sandbox code calls before it stops or removes a pod. */
  hooks(): SandboxContainerHooks {
    const settledOf = async (sandboxId: string, signal: AbortSignal): Promise<Container[]> => {
      // A container still being created joins the pod's namespaces and files: let it finish
      // (or fail) before they go, then stop it with the others.
      await this.creationsOf(sandboxId, signal);
      return this.registry.all().filter((c) => c.record.sandboxId === sandboxId && !isCreating(c.state));
    };
    return {
      stopAll: async (sandboxId, signal) => {
        // The pod is going away: no grace period (as containerd does).
        const mine = await settledOf(sandboxId, signal);
        await Promise.all(mine.map((c) => stopContainer(this, c, 0, signal)));
      },
      removeAll: async (sandboxId, signal) => {
        for (const c of await settledOf(sandboxId, signal)) await removeContainer(this, c, signal);
      },
    };
  }

  /** Waits until no container of `sandboxId` is being created (each creation settles or the signal aborts). */
  private async creationsOf(sandboxId: string, signal: AbortSignal): Promise<void> {
    const creating = this.registry
      .all()
      .filter((c) => c.record.sandboxId === sandboxId && isCreating(c.state) && c.creation !== undefined);
    if (creating.length === 0) return;
    this.log.info({ sandboxId, containers: creating.map((c) => c.id) }, 'pod stop waits for containers being created');
    await raceAbort(Promise.all(creating.map((c) => c.creation!.catch(() => undefined))), signal);
  }

  // -- queries (memory only) -------------------------------------------------

  // list / find / get: RegistryQueries.

  /** The PID namespace of a running container of `sandboxId` (TARGET mode). */
  targetPidNsPath(sandboxId: string, idOrPrefix: string): string | undefined {
    let c: Container | undefined;
    try {
      c = this.find(idOrPrefix);
    } catch {
      return undefined;
    }
    if (!c || c.record.sandboxId !== sandboxId || c.criState() !== 'CONTAINER_RUNNING' || !c.record.init) {
      return undefined;
    }
    return `/proc/${c.record.init.pid}/ns/pid`;
  }

  async persist(c: Container): Promise<void> {
    await this.store.write('container', c.id, CONTAINER_CHECKPOINT_VERSION, c.record);
  }

  forget(c: Container): void {
    c.unwatch?.();
    c.unwatch = undefined;
    this.registry.forget(c);
  }

  // -- operations (one file each) ----------------------------------------------

  create(req: ContainerRequest, signal: AbortSignal): Promise<string> {
    return create(this, req, signal);
  }

  async start(idOrPrefix: string, signal: AbortSignal): Promise<void> {
    const c = this.get(idOrPrefix);
    await raceAbort(
      c.exclusive(() => startLocked(this, c)),
      signal,
    );
  }

  /** Stops the container: its stop signal, then SIGKILL to every process after `timeoutSec`. Unknown ids succeed. */
  async stop(idOrPrefix: string, timeoutSec: number, signal: AbortSignal): Promise<void> {
    const c = this.find(idOrPrefix);
    if (!c) return;
    await raceAbort(stopContainer(this, c, timeoutSec, signal), signal);
  }

  /** Removes the container, killing it first if it runs. Unknown ids succeed. */
  async remove(idOrPrefix: string, signal: AbortSignal): Promise<void> {
    const c = this.find(idOrPrefix);
    if (!c) return;
    await raceAbort(removeContainer(this, c, signal), signal);
  }

  execSync(idOrPrefix: string, cmd: string[], timeoutSec: number, signal: AbortSignal): Promise<ExecResult> {
    return exec.execSync(this, idOrPrefix, cmd, timeoutSec, signal);
  }

  reopenLog(idOrPrefix: string, signal: AbortSignal): Promise<void> {
    return exec.reopenLog(this, idOrPrefix, signal);
  }

  update(idOrPrefix: string, resources: CgroupResources, criResources: unknown, signal: AbortSignal): Promise<void> {
    return exec.update(this, idOrPrefix, resources, criResources, signal);
  }

  /** Looks at the run dir and records an end if there is one. */
  observe(c: Container): Promise<void> {
    return observe(this, c);
  }

  /** The launch spec (in memory, else read back from the run dir). */
  specOf(c: Container): Promise<LaunchSpec> {
    return exec.specOf(this, c);
  }

  async usage(c: Container): Promise<{ cpuNs?: bigint; memoryBytes?: bigint; workingSetBytes?: bigint } | undefined> {
    if (c.isFinished() || c.state !== 'RUNNING') return undefined;
    return this.cgroups.usage(c.record.cgroupPath);
  }

  /**
   * The counters of a running container's cgroup, undefined when it has
   * none: every one (CRI metrics), or 'usage', what ContainerStats needs.
   */
  async stats(c: Container, scope: CgroupStatsScope = 'all'): Promise<CgroupStats | undefined> {
    if (c.isFinished() || c.state !== 'RUNNING') return undefined;
    return this.cgroups.stats(c.record.cgroupPath, scope);
  }

  async backend(): Promise<Backend> {
    return this.opts.provisioner.backend();
  }

  /** Ids with a checkpoint directory, readable or not, and those in memory. */
  async knownIds(): Promise<Set<string>> {
    return new Set([...(await this.store.list('container')), ...this.registry.ids()]);
  }
}
