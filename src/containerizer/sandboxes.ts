// Pod sandboxes: Mesos top-level containers. A sandbox owns its pinned
// net/UTS/IPC namespaces, its pod cgroup, its pod files and, when the pod
// shares one PID namespace, the init holding it — each made by an isolator.
//
// Lifecycle (state.ts): run = PREPARING (checkpoint, dirs) → ISOLATING
// (isolators in dependency order) → RUNNING; stop = DESTROYING → STOPPED
// (isolators cleaned, record kept: NOTREADY); remove = DESTROYING → REMOVED.
// Every operation on one sandbox is serialized; List and Status read memory.
// Creation runs independently of the calling RPC: kubelet retrying an
// identical RunPodSandbox after its own timeout gets the same sandbox.
import { randomBytes } from 'crypto';
import { promises as fs } from 'fs';
import * as path from 'path';
import type { CgroupDriver } from '../config/schema';
import { CapsaError, asCapsaError } from '../errors';
import type { Logger } from '../log';
import { raceAbort, withTimeout } from '../util/timeout';
import { CheckpointStore, decodeBigint } from './checkpoint';
import { AnyIsolator, IsolatorChain, IsolatorStore, Usage, UsageScope } from './isolator';
import { CgroupsIsolator } from './isolators/cgroups';
import { createCgroupBackend } from './isolators/cgroups/driver';
import { CgroupLayout, detectLayout } from './isolators/cgroups/hierarchy';
import { CgroupManager } from './isolators/cgroups/manager';
import { containerCgroupPath, podCgroup } from './isolators/cgroups/paths';
import { CgroupResources } from './isolators/cgroups/values';
import { NamespacesIsolator } from './isolators/namespaces';
import { PidHolderIsolator } from './isolators/namespaces/pid-holder';
import { PodFilesIsolator } from './isolators/podfiles';
import { RecoveryHost, recoverSandboxes } from './recovery';
import { Registry } from './registry';
import type { SandboxContext, SandboxHandle, SandboxSpec } from './sandbox-spec';
import { DEFAULT_TIMEOUTS, SANDBOX_CHECKPOINT_VERSION, Sandbox, SandboxRecord, SandboxTimeouts } from './sandbox';
import { errorContext, nowNs, runStage, stageError, transition } from './state';

/** The sandbox object lives in sandbox.ts; importers of it from here keep working. */
export { Sandbox, type SandboxRecord } from './sandbox';

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

export class Sandboxes implements RecoveryHost {
  readonly store: CheckpointStore;
  readonly chain: IsolatorChain<SandboxContext>;
  readonly cgroups: CgroupManager;
  readonly timeouts: SandboxTimeouts;
  readonly log: Logger;
  readonly nsDir: string;
  readonly shmDir: string;
  private readonly registry = new Registry<Sandbox>({
    key: (sb) => sb.spec.key,
    noun: 'sandbox',
    field: 'pod_sandbox_id',
    contextKey: 'sandboxId',
  });
  private hooks?: SandboxContainerHooks;

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

  adopt(sb: Sandbox): void {
    // Two checkpoints with one name (should not happen): the newer keeps the name.
    this.registry.adopt(sb, (a, b) => a.facts.createdAt > b.facts.createdAt);
  }

  async persist(sb: Sandbox): Promise<void> {
    await this.store.write('sandbox', sb.id, SANDBOX_CHECKPOINT_VERSION, sb.record());
  }

  // -- queries (memory only) -------------------------------------------------

  /** Sandboxes kubelet may see: fully made ones, READY or NOTREADY. */
  list(): Sandbox[] {
    return this.registry.list();
  }

  /** Resolves a full id or a unique prefix; undefined when nothing matches. */
  find(idOrPrefix: string): Sandbox | undefined {
    return this.registry.find(idOrPrefix);
  }

  get(idOrPrefix: string): Sandbox {
    return this.registry.get(idOrPrefix);
  }

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

  // -- RunPodSandbox -----------------------------------------------------------

  /**
   * Makes a sandbox and resolves to its id. `fingerprint` identifies the
   * request: an identical one for a name in use waits for (or gets) the
   * sandbox the first made; a different one is AlreadyExists.
   */
  async run(spec: SandboxSpec, fingerprint: string, signal: AbortSignal): Promise<string> {
    const existing = this.registry.named(spec.key);
    if (existing) {
      return this.registry.retried({
        existing,
        key: spec.key,
        sameRequest: existing.fingerprint === fingerprint,
        madeUnclaimed: existing.state === 'RUNNING' && existing.creatorGone,
        rpc: 'RunPodSandbox',
        timeoutMs: this.timeouts.retryWait,
        signal,
        redo: () => this.run(spec, fingerprint, signal),
        log: this.log,
      });
    }

    const id = randomBytes(32).toString('hex');
    const sb = new Sandbox(id, this.makeContext(id, spec), fingerprint, { createdAt: nowNs() });
    return this.registry.createDetached(sb, () => this.create(sb), signal, this.log, 'RunPodSandbox');
  }

  private async create(sb: Sandbox): Promise<void> {
    const t = this.timeouts;
    const cleanup = (signal: AbortSignal): Promise<void> => this.discard(sb, signal);
    await runStage(sb, 'PREPARING', this.log, {
      timeoutMs: t.preparing,
      cleanupTimeoutMs: t.destroying,
      cleanup,
      run: async () => {
        // Disk before host objects: recovery finds whatever this sandbox makes from here on.
        await this.store.create('sandbox', sb.id);
        await this.persist(sb);
        await fs.mkdir(this.nsDir, { recursive: true, mode: 0o711 });
        await fs.mkdir(this.shmDir, { recursive: true, mode: 0o711 });
      },
    });
    await runStage(sb, 'ISOLATING', this.log, {
      timeoutMs: t.isolating,
      cleanupTimeoutMs: t.destroying,
      cleanup,
      run: async (signal) => {
        await this.chain.prepare(sb.ctx, this.isolatorStore(sb.id), sb.isolatorStates, signal, sb.ctx.log);
        sb.facts.readyAt = nowNs();
        await this.persist(sb);
      },
    });
    transition(sb, 'RUNNING', this.log, 'ready');
    sb.ctx.log.info(
      {
        key: sb.spec.key,
        ns: sb.ctx.namespaces,
        cgroup: sb.ctx.cgroup?.path,
        ms: Number((nowNs() - sb.facts.createdAt) / 1_000_000n),
      },
      'sandbox ready',
    );
  }

  /** Undoes a failed creation: every isolator, then the checkpoint, then the name. */
  private async discard(sb: Sandbox, signal: AbortSignal): Promise<void> {
    try {
      await this.chain.cleanup(
        sb.ctx,
        this.isolatorStore(sb.id),
        sb.isolatorStates,
        signal,
        sb.ctx.log,
        errorContext(sb),
      );
      await this.store.remove('sandbox', sb.id);
    } finally {
      // Whatever is left on the host is the checkpoint's to recover; the name is free again.
      this.forget(sb);
    }
  }

  private forget(sb: Sandbox): void {
    this.registry.forget(sb);
  }

  // -- StopPodSandbox / RemovePodSandbox -------------------------------------

  /** Stops the sandbox: its containers, then every isolator. Unknown ids succeed. */
  async stop(idOrPrefix: string, signal: AbortSignal): Promise<void> {
    const sb = this.find(idOrPrefix);
    if (!sb) return;
    await raceAbort(
      sb.exclusive(() => this.stopLocked(sb, 'stopped by request')),
      signal,
    );
  }

  private async stopLocked(sb: Sandbox, reason: string): Promise<void> {
    if (sb.state === 'REMOVED') return;
    if (sb.state === 'STOPPED' && !sb.cleanupPending) return;
    const errCtx = errorContext(sb, 'destroying');
    sb.stopping = true;
    // Teardown runs on its own deadline, not the caller's: a cancelled call still cleans up.
    await withTimeout(
      'sandbox stop',
      this.timeouts.destroying,
      async (signal) => {
        if (this.hooks) await this.hooks.stopAll(sb.id, signal);
        if (sb.facts.stoppedAt === undefined) {
          // Disk before memory: from here on the sandbox is NOTREADY, even after a crash.
          sb.facts.stoppedAt = nowNs();
          sb.facts.stopReason = reason;
          await this.persist(sb);
        }
        transition(sb, 'DESTROYING', this.log, reason);
        try {
          await this.chain.cleanup(sb.ctx, this.isolatorStore(sb.id), sb.isolatorStates, signal, sb.ctx.log, errCtx);
          sb.cleanupPending = false;
        } catch (err) {
          sb.cleanupPending = true;
          throw err;
        } finally {
          if (sb.state === 'DESTROYING') {
            transition(sb, 'STOPPED', this.log, sb.cleanupPending ? 'cleanup incomplete' : reason);
          }
        }
      },
      errCtx,
    )
      .catch((err: unknown) => {
        if (sb.state === 'DESTROYING') {
          sb.cleanupPending = true;
          transition(sb, 'STOPPED', this.log, 'stop timed out');
        }
        throw stageError('DESTROYING', asCapsaError(err, errCtx), errCtx);
      })
      .finally(() => {
        // A stop that failed before the pod became NOTREADY leaves it usable.
        if (sb.facts.stoppedAt === undefined) sb.stopping = false;
      });
    sb.ctx.log.info('sandbox stopped');
  }

  /** Removes the sandbox (stopping it first if needed). Unknown ids succeed. */
  async remove(idOrPrefix: string, signal: AbortSignal): Promise<void> {
    const sb = this.find(idOrPrefix);
    if (!sb) return;
    await raceAbort(
      sb.exclusive(async () => {
        if (sb.state === 'REMOVED') return;
        if (sb.state !== 'STOPPED' || sb.cleanupPending) await this.stopLocked(sb, 'removed');
        const errCtx = errorContext(sb, 'destroying');
        await withTimeout(
          'sandbox remove',
          this.timeouts.destroying,
          async (s) => {
            if (this.hooks) await this.hooks.removeAll(sb.id, s);
            transition(sb, 'DESTROYING', this.log, 'remove');
            try {
              await this.store.remove('sandbox', sb.id);
            } catch (err) {
              transition(sb, 'STOPPED', this.log, 'remove failed');
              throw err;
            }
          },
          errCtx,
        );
        this.forget(sb);
        transition(sb, 'REMOVED', this.log, 'removed');
        sb.ctx.log.info('sandbox removed');
      }),
      signal,
    );
  }

  // -- UpdatePodSandboxResources / stats --------------------------------------

  async update(idOrPrefix: string, resources: CgroupResources, signal: AbortSignal): Promise<void> {
    const sb = this.get(idOrPrefix);
    await raceAbort(
      sb.exclusive(async () => {
        if (sb.state !== 'RUNNING') {
          throw new CapsaError('FailedPrecondition', `sandbox ${sb.id} is not ready`, { sandboxId: sb.id });
        }
        await withTimeout(
          'sandbox update',
          this.timeouts.isolating,
          (s) => this.chain.update(sb.ctx, sb.isolatorStates, resources, s),
          errorContext(sb, 'update'),
        );
        sb.spec.resources = resources;
        await this.persist(sb);
      }),
      signal,
    );
  }

  async usage(idOrPrefix: string, signal: AbortSignal, scope: UsageScope = 'all'): Promise<Usage> {
    const sb = this.get(idOrPrefix);
    if (sb.state !== 'RUNNING') return {};
    return withTimeout(
      'sandbox usage',
      10_000,
      (s) => this.chain.usage(sb.ctx, sb.isolatorStates, s, scope),
      errorContext(sb),
      signal,
    );
  }

  /** Adds a sandbox recovered by recovery.ts (exposed for it). */
  recovered(sb: Sandbox): void {
    this.adopt(sb);
  }

  /** Every sandbox id with a checkpoint directory: the objects sweeps must leave alone. */
  async knownIds(): Promise<Set<string>> {
    return new Set([...(await this.store.list('sandbox')), ...this.registry.ids()]);
  }
}
