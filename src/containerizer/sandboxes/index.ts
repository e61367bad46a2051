// Pod sandboxes: Mesos top-level containers. A sandbox owns its pinned
// net/UTS/IPC namespaces, its pod cgroup, its pod files and, when the pod
// shares one PID namespace, the init holding it — each made by an isolator.
//
// Lifecycle (state.ts): run = PREPARING (checkpoint, dirs) → ISOLATING
// (isolators in dependency order) → RUNNING; stop = DESTROYING → STOPPED
// (isolators cleaned, record kept: NOTREADY); remove = DESTROYING → REMOVED.
// Every operation on one sandbox is serialized; List and Status read memory.
//
// This class holds the state and dispatches; each operation is its own file
// (run, stop, remove, resources, recover).
import * as path from 'path';
import type { Logger } from '../../log';
import { CheckpointStore, decodeBigint } from '../checkpoint';
import { AnyIsolator, IsolatorChain, IsolatorStore, Usage, UsageScope } from '../isolator';
import { CgroupsIsolator } from '../isolators/cgroups';
import { createCgroupBackend } from '../isolators/cgroups/driver';
import { CgroupLayout, detectLayout } from '../isolators/cgroups/hierarchy';
import { CgroupManager } from '../isolators/cgroups/manager';
import { containerCgroupPath, podCgroup } from '../isolators/cgroups/paths';
import { CgroupResources } from '../isolators/cgroups/values';
import { NamespacesIsolator } from '../isolators/namespaces';
import { PidHolderIsolator } from '../isolators/namespaces/pid-holder';
import { PodFilesIsolator } from '../isolators/podfiles';
import { Registry, RegistryQueries } from '../registry';
import type { SandboxContext, SandboxHandle, SandboxSpec } from '../sandbox-spec';
import {
  DEFAULT_TIMEOUTS,
  SANDBOX_CHECKPOINT_VERSION,
  SANDBOX_KIND,
  Sandbox,
  SandboxRecord,
  SandboxTimeouts,
} from '../sandbox';
import type { SandboxContainerHooks, SandboxHost, SandboxesOptions } from './host';
import { recoverSandboxes } from './recover';
import { removeSandbox } from './remove';
import { sandboxUsage, updateSandbox } from './resources';
import { runSandbox } from './run';
import { stopSandbox } from './stop';

/** The sandbox object lives in sandbox.ts; importers of it from here keep working. */
export { Sandbox, type SandboxRecord } from '../sandbox';
export type { SandboxContainerHooks, SandboxesOptions } from './host';

export class Sandboxes extends RegistryQueries<Sandbox> implements SandboxHost {
  readonly store: CheckpointStore;
  readonly chain: IsolatorChain<SandboxContext>;
  readonly cgroups: CgroupManager;
  readonly timeouts: SandboxTimeouts;
  readonly log: Logger;
  readonly nsDir: string;
  readonly shmDir: string;
  readonly registry = new Registry(SANDBOX_KIND);
  hooks?: SandboxContainerHooks;

  /** Builds the containerizer's sandbox side and recovers every checkpointed sandbox. */
  static async start(opts: SandboxesOptions): Promise<Sandboxes> {
    const layout = opts.cgroupLayout ?? (await detectLayout());
    const cgroups = await createCgroupBackend({
      driver: opts.cgroupDriver,
      layout,
      log: opts.log.child({ part: 'cgroups' }),
    });
    const s = new Sandboxes(opts, layout, cgroups);
    await recoverSandboxes(s);
    return s;
  }

  private constructor(
    private readonly opts: SandboxesOptions,
    layout: CgroupLayout,
    cgroups: CgroupManager,
  ) {
    super();
    this.log = opts.log;
    this.timeouts = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
    this.store = new CheckpointStore(opts.root);
    this.nsDir = path.join(opts.state, 'ns');
    this.shmDir = path.join(opts.state, 'shm');
    this.cgroups = cgroups;
    const common = { manager: this.cgroups, driver: opts.cgroupDriver, root: opts.root, log: opts.log };
    const isolators: AnyIsolator<SandboxContext>[] = [
      new NamespacesIsolator(this.nsDir, opts.log),
      new CgroupsIsolator({ ...common, destroyTimeoutMs: Math.floor(this.timeouts.destroying / 2) }),
      new PidHolderIsolator({ ...common, nsDir: this.nsDir }),
      new PodFilesIsolator(this.shmDir, opts.log),
    ];
    if (opts.network) isolators.push(opts.network);
    this.chain = new IsolatorChain(isolators);
    opts.log.info(
      { cgroups: `v${layout.version}`, driver: opts.cgroupDriver, isolators: this.chain.ordered.map((i) => i.name) },
      'containerizer: sandbox isolators',
    );
  }

  setContainerHooks(hooks: SandboxContainerHooks): void {
    this.hooks = hooks;
  }

  // -- RecoveryHost ----------------------------------------------------------

  makeContext(id: string, spec: SandboxSpec): SandboxContext {
    return {
      id,
      spec,
      dir: this.store.dir('sandbox', id),
      nsDir: this.nsDir,
      shmDir: this.shmDir,
      root: this.opts.root,
      cgroupDriver: this.opts.cgroupDriver,
      log: this.log.child({ sandboxId: id }),
      namespaces: {},
      network: { ips: [] },
    };
  }

  isolatorStore(id: string): IsolatorStore {
    return {
      write: (name, version, state) => this.store.writeIsolator('sandbox', id, name, version, state),
      readAll: () => this.store.readIsolators('sandbox', id),
      remove: (name) => this.store.removeIsolator('sandbox', id, name),
    };
  }

  fromRecord(r: SandboxRecord): Sandbox {
    return new Sandbox(r.id, this.makeContext(r.id, r.spec), r.fingerprint ?? '', {
      createdAt: decodeBigint(r.createdAt) ?? 0n,
      readyAt: decodeBigint(r.readyAt),
      stoppedAt: decodeBigint(r.stoppedAt),
      stopReason: r.stopReason,
    });
  }

  async persist(sb: Sandbox): Promise<void> {
    await this.store.write('sandbox', sb.id, SANDBOX_CHECKPOINT_VERSION, sb.record());
  }

  /** Adds a sandbox recovered by recover.ts. */
  recovered(sb: Sandbox): void {
    // Two checkpoints with one name (should not happen): the newer keeps the name.
    this.registry.adopt(sb, (a, b) => a.facts.createdAt > b.facts.createdAt);
  }

  /** Every sandbox id with a checkpoint directory: the objects sweeps must leave alone. */
  async knownIds(): Promise<Set<string>> {
    return new Set([...(await this.store.list('sandbox')), ...this.registry.ids()]);
  }

  // -- queries (memory only; list, find and get from RegistryQueries) ---------

  /** What a container needs from its sandbox. */
  handle(idOrPrefix: string): SandboxHandle {
    const sb = this.get(idOrPrefix);
    const ctx = sb.ctx;
    const driver = this.opts.cgroupDriver;
    const podPath = ctx.cgroup?.path ?? podCgroup(driver, sb.spec.cgroupParent, sb.id, this.opts.root).path;
    return {
      id: sb.id,
      ready: sb.criState() === 'SANDBOX_READY',
      spec: sb.spec,
      hostname: sb.spec.hostname,
      namespaces: sb.spec.namespaces,
      nsPaths: { ...ctx.namespaces },
      pidHolder: ctx.pidHolder ? { pid: ctx.pidHolder.pid, startTime: ctx.pidHolder.startTime } : undefined,
      cgroup: {
        driver,
        podPath,
        containerPath: (cid: string) => containerCgroupPath(driver, podPath, cid),
        manager: this.cgroups,
      },
      files: ctx.files ?? {
        hosts: path.join(ctx.dir, 'hosts'),
        resolvConf: path.join(ctx.dir, 'resolv.conf'),
        hostname: path.join(ctx.dir, 'hostname'),
        shm: sb.spec.namespaces.ipc === 'pod' ? path.join(this.shmDir, `capsa-${sb.id}-shm`) : '/dev/shm',
      },
      logDirectory: sb.spec.logDirectory,
    };
  }

  // -- operations (one file each) ----------------------------------------------

  run(spec: SandboxSpec, fingerprint: string, signal: AbortSignal): Promise<string> {
    return runSandbox(this, spec, fingerprint, signal);
  }

  stop(idOrPrefix: string, signal: AbortSignal): Promise<void> {
    return stopSandbox(this, idOrPrefix, signal);
  }

  remove(idOrPrefix: string, signal: AbortSignal): Promise<void> {
    return removeSandbox(this, idOrPrefix, signal);
  }

  update(idOrPrefix: string, resources: CgroupResources, signal: AbortSignal): Promise<void> {
    return updateSandbox(this, idOrPrefix, resources, signal);
  }

  usage(idOrPrefix: string, signal: AbortSignal, scope: UsageScope = 'all'): Promise<Usage> {
    return sandboxUsage(this, idOrPrefix, signal, scope);
  }
}
