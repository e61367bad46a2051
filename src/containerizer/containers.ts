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
import { randomBytes } from 'crypto';
import { existsSync, promises as fs } from 'fs';
import * as path from 'path';
import {
  AlreadyExistsError,
  CapsaError,
  DeadlineExceededError,
  ErrorContext,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  asCapsaError,
} from '../errors';
import type { Logger } from '../log';
import type { Backend } from '../provisioner/backends/backend';
import type { Provisioner } from '../provisioner/provisioner';
import type { ImageRecord } from '../provisioner/store/image-store';
import { isAlive } from '../util/procfs';
import { raceAbort, withTimeout } from '../util/timeout';
import { CheckpointStore, decodeBigint } from './checkpoint';
import type { ContainerRecord, ContainerRequest, LaunchSpec } from './container-spec';
import {
  CONTAINER_CHECKPOINT_VERSION,
  Container,
  DEFAULT_CONTAINER_TIMEOUTS,
  EXEC_OUTPUT_LIMIT,
  START_ERROR_EXIT_CODE,
  START_ERROR_REASON,
  UNKNOWN_EXIT_CODE,
  UNKNOWN_EXIT_REASON,
  type ContainerTimeouts,
} from './container';
import { ContainerRecoveryHost, recoverContainers } from './containers-recovery';
import { ContainerEventKind, ContainerEvents } from './events';
import type { CgroupManager } from './isolators/cgroups/manager';
import type { CgroupStats } from './isolators/cgroups/stats';
import type { CgroupResources } from './isolators/cgroups/values';
import type { ExecResult, Launcher, LaunchStatus } from './launcher/launcher';
import { LaunchError } from './launcher/monitor-client';
import { isStartFailure } from './launcher/monitor-launcher';
import { SIGKILL, SIGTERM, signalNumber } from './launcher/signals';
import type { SandboxContainerHooks, Sandboxes } from './sandboxes';
import { errorContext, awaitFirstCreate, isCreating, nowNs, runStage, transition } from './state';

/** The container object lives in container.ts; importers of it from here keep working. */
export { Container } from './container';

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

function pinOwner(id: string): string {
  return `container:${id}`;
}

/** Stage timer for the debug log: lap(name) records ms since the previous lap; returns them all. */
function laps(): (name: string) => Record<string, number> {
  let t = process.hrtime.bigint();
  const out: Record<string, number> = {};
  return (name) => {
    const now = process.hrtime.bigint();
    out[name] = Math.round(Number(now - t) / 1e4) / 100;
    t = now;
    return out;
  };
}

/** Resolves when `p` settles or `ms` pass; true when it settled. */
async function settledWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)));
  try {
    return await Promise.race([p.then(() => true), t]);
  } finally {
    clearTimeout(timer);
  }
}

export class Containers implements ContainerRecoveryHost {
  readonly store: CheckpointStore;
  readonly timeouts: ContainerTimeouts;
  readonly log: Logger;
  readonly runRoot: string;
  readonly events: ContainerEvents;
  private readonly byId = new Map<string, Container>();
  private readonly byKey = new Map<string, Container>();
  private poller?: NodeJS.Timeout;
  private closed = false;

  /** Builds the container side and recovers every checkpointed container; then watches exits. */
  static async start(opts: ContainersOptions): Promise<Containers> {
    const cs = new Containers(opts);
    await recoverContainers(cs, opts.backendStateDir);
    cs.startPolling();
    return cs;
  }

  constructor(readonly opts: ContainersOptions) {
    this.log = opts.log;
    this.timeouts = { ...DEFAULT_CONTAINER_TIMEOUTS, ...opts.timeouts };
    this.store = new CheckpointStore(opts.root);
    this.runRoot = path.join(opts.state, 'containers');
    this.events = opts.events ?? new ContainerEvents();
  }

  private publish(kind: ContainerEventKind, c: Container, at: bigint = nowNs()): void {
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
    this.poller = setInterval(() => this.poll(), this.timeouts.pollMs);
    this.poller.unref();
  }

  /** Stops the watches; containers keep running. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.poller) clearInterval(this.poller);
    for (const c of this.byId.values()) c.unwatch?.();
  }

  /** What the sandbox code calls before it stops or removes a pod. */
  hooks(): SandboxContainerHooks {
    return {
      stopAll: async (sandboxId, signal) => {
        // A container still being created joins the pod's namespaces and files: let it finish
        // (or fail) before they go, then stop it with the others.
        await this.creationsOf(sandboxId, signal);
        const mine = [...this.byId.values()].filter((c) => c.record.sandboxId === sandboxId && !isCreating(c.state));
        // The pod is going away: no grace period (as containerd does).
        await Promise.all(mine.map((c) => this.stopContainer(c, 0, signal)));
      },
      removeAll: async (sandboxId, signal) => {
        await this.creationsOf(sandboxId, signal);
        const mine = [...this.byId.values()].filter((c) => c.record.sandboxId === sandboxId && !isCreating(c.state));
        for (const c of mine) await this.removeContainer(c, signal);
      },
    };
  }

  /** Waits until no container of `sandboxId` is being created (each creation settles or the signal aborts). */
  private async creationsOf(sandboxId: string, signal: AbortSignal): Promise<void> {
    const creating = [...this.byId.values()].filter(
      (c) => c.record.sandboxId === sandboxId && isCreating(c.state) && c.creation !== undefined,
    );
    if (creating.length === 0) return;
    this.log.info({ sandboxId, containers: creating.map((c) => c.id) }, 'pod stop waits for containers being created');
    await raceAbort(Promise.all(creating.map((c) => c.creation!.catch(() => undefined))), signal);
  }

  // -- queries (memory only) -------------------------------------------------

  /** Containers kubelet may see: fully made ones, not removed. */
  list(): Container[] {
    return [...this.byId.values()].filter((c) => !isCreating(c.state) && c.state !== 'REMOVED');
  }

  /** A full id or a unique prefix; undefined when nothing matches. */
  find(idOrPrefix: string): Container | undefined {
    if (idOrPrefix === '') throw new InvalidArgumentError('container_id', 'must not be empty');
    const exact = this.byId.get(idOrPrefix);
    if (exact) return isCreating(exact.state) || exact.state === 'REMOVED' ? undefined : exact;
    if (!/^[0-9a-f]{1,63}$/.test(idOrPrefix)) return undefined;
    const matches = this.list().filter((c) => c.id.startsWith(idOrPrefix));
    if (matches.length > 1) {
      throw new InvalidArgumentError('container_id', `prefix "${idOrPrefix}" matches ${matches.length} containers`);
    }
    return matches[0];
  }

  get(idOrPrefix: string): Container {
    const c = this.find(idOrPrefix);
    if (!c) throw new NotFoundError(`container ${idOrPrefix} not found`, { containerId: idOrPrefix });
    return c;
  }

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

  private forget(c: Container): void {
    c.unwatch?.();
    c.unwatch = undefined;
    if (this.byId.get(c.id) === c) this.byId.delete(c.id);
    if (this.byKey.get(c.record.key) === c) this.byKey.delete(c.record.key);
  }

  // -- CreateContainer ---------------------------------------------------------

  async create(req: ContainerRequest, signal: AbortSignal): Promise<string> {
    const sb = this.opts.sandboxes.get(req.sandboxId);
    if (sb.criState() !== 'SANDBOX_READY' || sb.stopping) {
      throw new FailedPreconditionError(`sandbox ${sb.id} is not ready${sb.stopping ? ' (it is being stopped)' : ''}`, {
        sandboxId: sb.id,
        stage: 'create',
      });
    }
    const md = sb.spec.metadata;
    const key = `${req.metadata.name}_${md.name}_${md.namespace}_${md.uid}_${req.metadata.attempt}`;
    const existing = this.byKey.get(key);
    if (existing) return this.retried(existing, req, key, signal);

    const image = this.opts.provisioner.find(req.image.ref);
    if (!image) {
      throw new NotFoundError(`image "${req.image.ref}" not found: pull it first`, {
        image: req.image.ref,
        stage: 'create',
      });
    }
    const id = randomBytes(32).toString('hex');
    const runDir = path.join(this.runRoot, id);
    const handle = this.opts.sandboxes.handle(sb.id);
    const record: ContainerRecord = {
      id,
      sandboxId: sb.id,
      key,
      fingerprint: req.fingerprint,
      metadata: { ...req.metadata },
      image: {
        requested: req.image.ref,
        annotations: { ...req.image.annotations },
        userSpecified: req.image.userSpecified,
        id: image.id,
        ref: image.repoDigests[0] ?? image.id,
        repoTags: [...image.repoTags],
      },
      chainIds: image.layers.map((l) => l.chainId),
      labels: { ...req.labels },
      annotations: { ...req.annotations },
      mounts: req.mounts.map((m) => ({ ...m })),
      logPath: '',
      stopSignal: req.stopSignal ?? imageStopSignal(image) ?? SIGTERM,
      runDir,
      rootfs: path.join(runDir, 'rootfs'),
      cgroupPath: handle.cgroup.containerPath(id),
      criResources: req.criResources,
      original: req.original,
      beganAt: nowNs(),
    };
    const c = new Container(record);
    this.byId.set(id, c);
    this.byKey.set(key, c);
    const creation = c.exclusive(() => this.make(c, req, image));
    c.creation = creation;
    creation.catch(() => undefined);
    try {
      await raceAbort(creation, signal);
    } catch (err) {
      if (signal.aborted && this.byId.get(id) === c) {
        c.creatorGone = true;
        this.log.info({ containerId: id, key }, 'CreateContainer caller went away; creation continues for a retry');
      }
      throw err;
    }
    return id;
  }

  private async retried(existing: Container, req: ContainerRequest, key: string, signal: AbortSignal): Promise<string> {
    const ctx = { containerId: existing.id };
    if (existing.record.fingerprint !== req.fingerprint) {
      throw new AlreadyExistsError(`container name "${key}" is already in use by ${existing.id}`, ctx);
    }
    if (isCreating(existing.state) && existing.creation) {
      const first = await awaitFirstCreate({
        obj: existing,
        what: `container "${key}"`,
        rpc: 'CreateContainer',
        timeoutMs: this.timeouts.retryWait,
        ctx,
        signal,
        nameFreed: () => !this.byKey.has(key),
      });
      if (first === 'redo') return this.create(req, signal);
      existing.creatorGone = false;
      return existing.id;
    }
    if (existing.criState() === 'CONTAINER_CREATED' && existing.state === 'RUNNING') {
      // The first call finished but its answer may never have reached kubelet: the same container.
      existing.creatorGone = false;
      this.log.info(
        { containerId: existing.id },
        'identical CreateContainer retry gets the container its first call made',
      );
      return existing.id;
    }
    throw new AlreadyExistsError(`container name "${key}" is already in use by ${existing.id}`, ctx);
  }

  private async make(c: Container, req: ContainerRequest, image: ImageRecord): Promise<void> {
    const t = this.timeouts;
    const r = c.record;
    const cleanup = (signal: AbortSignal): Promise<void> => this.discard(c, signal);
    const log = this.log.child({ containerId: c.id });
    await runStage(c, 'PREPARING', this.log, {
      timeoutMs: t.preparing,
      cleanupTimeoutMs: t.destroying,
      cleanup,
      run: async () => {
        // Disk before host objects: recovery finds whatever this container makes from here on.
        await this.store.create('container', c.id);
        // The backend is chosen once per daemon (no host object of this container), so its
        // name goes into the first checkpoint rather than a second write of the same record.
        const backend = await this.opts.provisioner.backend();
        r.backend = backend.name;
        await this.persist(c);
        await fs.mkdir(this.runRoot, { recursive: true, mode: 0o711 });
        await fs.mkdir(r.runDir, { recursive: true, mode: 0o711 });
        // GC must keep the layers while the container uses them (a persisted pin).
        await this.opts.provisioner.store.images.pin(pinOwner(c.id), r.chainIds);
        await backend.provision(c.id, this.opts.provisioner.layerDirs(image), r.rootfs);
      },
    });
    await runStage(c, 'ISOLATING', this.log, {
      timeoutMs: t.isolating,
      cleanupTimeoutMs: t.destroying,
      cleanup,
      run: async (signal) => {
        const lap = laps();
        const handle = this.opts.sandboxes.handle(r.sandboxId);
        const built = await req.build({
          containerId: c.id,
          sandbox: handle,
          image,
          rootfs: r.rootfs,
          volumesRoot: path.join(this.store.dir('container', c.id), 'volumes'),
          cgroupPath: r.cgroupPath,
          cgroupBinds: this.cgroupBinds(r.cgroupPath),
          targetPidNsPath: (id) => this.targetPidNsPath(r.sandboxId, id),
        });
        for (const w of built.warnings) log.warn({ warning: w }, 'container spec');
        for (const v of built.volumes) await fs.mkdir(v, { recursive: true, mode: 0o755 });
        const spec = built.spec;
        const { devices, ...rest } = spec.linux.resources;
        r.resources = { ...rest, devices } as CgroupResources;
        r.user = built.user;
        r.logPath = spec.capsa.logPath ?? '';
        // No checkpoint here: until createdAt is written, recovery undoes the container from
        // the names in its first checkpoint (cgroupPath, runDir, rootfs, the pin) and reads
        // nothing of resources, user or logPath; the write below carries them with createdAt.
        signal.throwIfAborted();
        lap('spec');
        const cg = await this.cgroups.create(r.cgroupPath, r.resources, { delegate: false });
        lap('cgroup');
        spec.capsa.cgroupProcs = cg.procs;
        if (cg.memory) spec.capsa.memoryCgroup = cg.memory;
        if (cg.monitorProcs) spec.capsa.monitorCgroupProcs = cg.monitorProcs;
        if (r.logPath !== '') await fs.mkdir(path.dirname(r.logPath), { recursive: true, mode: 0o755 });
        const created = await this.launcher.create(r.runDir, spec, signal).catch((err: unknown) => {
          if (err instanceof LaunchError) throw req.explainLaunchError?.(err.record, err.context) ?? err;
          throw err;
        });
        // The init is in its cgroup: what held it until then goes (systemd: the scope's stand-in).
        await this.cgroups.settled(r.cgroupPath);
        lap('launch');
        c.spec = spec;
        r.monitor = created.monitor;
        r.init = created.init;
        r.createdAt = nowNs();
        await this.persist(c);
        log.debug({ laps: lap('checkpoint') }, 'isolating timing');
      },
    });
    transition(c, 'RUNNING', this.log, 'created');
    this.publish('created', c, r.createdAt);
    this.watch(c);
    log.info(
      {
        key: r.key,
        image: r.image.requested,
        init: r.init?.pid,
        ms: Number(((r.createdAt ?? 0n) - r.beganAt) / 1_000_000n),
      },
      'container created',
    );
  }

  /** The container's cgroup directories as /sys/fs/cgroup binds (one per v1 hierarchy, or the v2 dir). */
  private cgroupBinds(cgPath: string): { source: string; destination: string }[] {
    const out: { source: string; destination: string }[] = [];
    for (const { h, dir } of this.cgroups.hierarchyDirs(cgPath)) {
      if (this.cgroups.layout.version === 2) {
        out.push({ source: dir, destination: '/sys/fs/cgroup' });
        break;
      }
      if (path.dirname(h.mount) !== '/sys/fs/cgroup') continue;
      out.push({ source: dir, destination: h.mount });
    }
    return out;
  }

  /** Undoes a failed creation: everything, then the checkpoint, then the name. */
  private async discard(c: Container, signal: AbortSignal): Promise<void> {
    try {
      await this.teardown(c, signal);
      await this.store.remove('container', c.id);
    } finally {
      this.forget(c);
    }
  }

  /**
   * Removes every host object of the container: its processes and cgroup,
   * its monitor, its rootfs, its run dir and its image pin. Idempotent;
   * works from the deterministic names when the record is partial.
   */
  private async teardown(c: Container, signal: AbortSignal): Promise<void> {
    const r = c.record;
    c.unwatch?.();
    c.unwatch = undefined;
    // Kill first: the init dies, its monitor writes exit.json and leaves.
    await this.cgroups.destroy(r.cgroupPath, this.timeouts.destroying / 2, signal);
    const backend = await this.opts.provisioner.backend();
    await backend.destroy(c.id, r.rootfs);
    await this.launcher.destroy(r.runDir, signal);
    const images = this.opts.provisioner.store.images;
    await images.unpin(pinOwner(c.id));
    // Its image was removed while it ran: this pin was the last hold on those layers.
    if (r.chainIds.some((chainId) => images.layerRefCount(chainId) === 0)) {
      await images
        .gc()
        .catch((err: unknown) =>
          this.log.warn(
            { containerId: c.id, err: asCapsaError(err).message },
            'image gc after container removal failed',
          ),
        );
    }
  }

  // -- exits -----------------------------------------------------------------

  private watch(c: Container): void {
    if (this.closed || c.isFinished()) return;
    c.unwatch?.();
    c.unwatch = this.launcher.watch(c.record.runDir, () => {
      this.observe(c).catch((err: unknown) =>
        this.log.warn({ containerId: c.id, err: asCapsaError(err).message }, 'exit check failed'),
      );
    });
  }

  /** The backup of the watches: a cheap look at every live container. */
  private poll(): void {
    for (const c of this.byId.values()) {
      if (c.state !== 'RUNNING' || c.isFinished()) continue;
      const dir = c.record.runDir;
      const suspicious =
        existsSync(path.join(dir, 'exit.json')) || existsSync(path.join(dir, 'start-error')) || !existsSync(dir);
      const check = suspicious ? Promise.resolve(true) : isAlive(c.record.monitor).then((alive) => !alive);
      check
        .then((go) => (go ? this.observe(c) : undefined))
        .catch((err: unknown) =>
          this.log.warn({ containerId: c.id, err: asCapsaError(err).message }, 'exit check failed'),
        );
    }
  }

  /** Looks at the run dir and records an end if there is one. */
  observe(c: Container): Promise<void> {
    return c.observeOnce(() =>
      c.exclusive(async () => {
        if (c.state !== 'RUNNING' || c.isFinished()) return;
        const st = await this.launcher.status(c.record.runDir);
        await this.recordEnd(c, st);
      }),
    );
  }

  /**
   * Records the end `st` describes (no-op for a live container), then kills
   * and removes the cgroup: nothing of the container runs after this.
   */
  private async recordEnd(c: Container, st: LaunchStatus): Promise<void> {
    const r = c.record;
    if (st.state === 'created' || st.state === 'running') return;
    if (st.state === 'exited') {
      const e = st.exit;
      r.finishedAt = e.finishedAt;
      r.exitCode = e.exitCode;
      r.oomKilled = e.oomKilled;
      if (r.startedAt === undefined && e.startedAt !== undefined) r.startedAt = e.startedAt;
      r.reason = e.oomKilled ? 'OOMKilled' : e.exitCode === 0 ? 'Completed' : 'Error';
      r.message = e.signal ? `killed by signal ${e.signal}` : undefined;
    } else if (st.state === 'start-failed') {
      r.finishedAt = st.at;
      r.exitCode = START_ERROR_EXIT_CODE;
      r.reason = START_ERROR_REASON;
      r.message = st.reason;
    } else {
      r.finishedAt = nowNs();
      r.exitCode = UNKNOWN_EXIT_CODE;
      r.reason = UNKNOWN_EXIT_REASON;
      r.message = `the container's end was not recorded: ${st.reason}`;
    }
    // Disk before memory: from here on the container is EXITED, even after a crash.
    await this.persist(c);
    c.unwatch?.();
    c.unwatch = undefined;
    transition(c, 'DESTROYING', this.log, `exited (${r.reason})`);
    try {
      await this.cgroups.destroy(r.cgroupPath, this.timeouts.destroying, AbortSignal.timeout(this.timeouts.destroying));
      c.cleanupPending = false;
    } catch (err) {
      c.cleanupPending = true;
      this.log.warn(
        { containerId: c.id, err: asCapsaError(err).message },
        'cannot remove the cgroup of an exited container',
      );
    }
    transition(c, 'STOPPED', this.log, r.reason);
    c.exitSeen();
    this.publish('stopped', c, r.finishedAt);
    this.log.info(
      { containerId: c.id, exitCode: r.exitCode, reason: r.reason, message: r.message },
      'container exited',
    );
  }

  // -- StartContainer ----------------------------------------------------------

  async start(idOrPrefix: string, signal: AbortSignal): Promise<void> {
    const c = this.get(idOrPrefix);
    await raceAbort(
      c.exclusive(() => this.startLocked(c)),
      signal,
    );
  }

  private async startLocked(c: Container): Promise<void> {
    const ctx: ErrorContext = { containerId: c.id, stage: 'start' };
    const state = c.criState();
    if (state !== 'CONTAINER_CREATED' || c.state !== 'RUNNING') {
      throw new FailedPreconditionError(
        `container ${c.id} is ${state.replace('CONTAINER_', '').toLowerCase()}, not created`,
        ctx,
      );
    }
    const r = c.record;
    try {
      const started = await withTimeout(
        'container start',
        this.timeouts.start,
        (s) => this.launcher.start(r.runDir, this.timeouts.start - 1000, s),
        ctx,
      );
      r.startedAt = started.startedAt;
      r.init = started.init;
      await this.persist(c);
      this.publish('started', c, r.startedAt);
      this.log.info({ containerId: c.id, pid: started.init.pid }, 'container started');
      return;
    } catch (err) {
      const e = asCapsaError(err, ctx);
      const st = await this.launcher.status(r.runDir);
      if (st.state === 'running') {
        // The verdict came late, but the container runs.
        r.startedAt = st.startedAt ?? nowNs();
        if (st.init) r.init = st.init;
        await this.persist(c);
        this.publish('started', c, r.startedAt);
        return;
      }
      if (st.state === 'created') {
        // No verdict: the init must not run later on its own.
        await this.cgroups.destroy(
          r.cgroupPath,
          this.timeouts.destroying,
          AbortSignal.timeout(this.timeouts.destroying),
        );
        await this.recordEnd(c, { state: 'start-failed', reason: e.message, at: nowNs() });
        throw e;
      }
      await this.recordEnd(c, st);
      if (st.state === 'start-failed') throw new FailedPreconditionError(`start: ${st.reason}`, ctx);
      if (isStartFailure(e)) throw new FailedPreconditionError(`start: ${e.message}`, ctx);
      throw e;
    }
  }

  // -- StopContainer -----------------------------------------------------------

  /** Stops the container: its stop signal, then SIGKILL to every process after `timeoutSec`. Unknown ids succeed. */
  async stop(idOrPrefix: string, timeoutSec: number, signal: AbortSignal): Promise<void> {
    const c = this.find(idOrPrefix);
    if (!c) return;
    await raceAbort(this.stopContainer(c, timeoutSec, signal), signal);
  }

  private async stopContainer(c: Container, timeoutSec: number, _signal: AbortSignal): Promise<void> {
    const r = c.record;
    const ctx: ErrorContext = { containerId: c.id, stage: 'stop' };
    if (c.isFinished()) {
      if (c.cleanupPending) await this.retryCleanup(c);
      return;
    }
    if (c.state !== 'RUNNING') return;
    // A created init never ran anything: no grace period.
    const graceful = timeoutSec > 0 && c.criState() === 'CONTAINER_RUNNING';
    if (graceful) {
      this.log.info({ containerId: c.id, signal: r.stopSignal, timeoutSec }, 'stopping container');
      await this.launcher.signal(r.runDir, r.stopSignal);
      if (await settledWithin(c.exited, Math.min(timeoutSec, 3600) * 1000)) return;
      await this.observe(c);
      if (c.isFinished()) return;
    }
    await this.killHard(c);
    if (await settledWithin(c.exited, this.timeouts.destroying)) return;
    await this.observe(c);
    if (!c.isFinished()) {
      throw new DeadlineExceededError(
        `container ${c.id} did not exit within ${this.timeouts.destroying} ms of SIGKILL`,
        ctx,
      );
    }
  }

  /** SIGKILL to the init and to every process in the container's cgroup. */
  private async killHard(c: Container): Promise<void> {
    const r = c.record;
    await this.launcher.signal(r.runDir, SIGKILL).catch(() => false);
    for (const pid of await this.cgroups.pids(r.cgroupPath)) {
      if (pid <= 1 || pid === process.pid) continue;
      try {
        process.kill(pid, 'SIGKILL');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      }
    }
    // The watch notices exit.json; observe now in case the monitor is already gone.
    setTimeout(() => {
      this.observe(c).catch(() => undefined);
    }, 50).unref();
  }

  private async retryCleanup(c: Container): Promise<void> {
    await c.exclusive(async () => {
      if (!c.cleanupPending) return;
      await this.cgroups.destroy(c.record.cgroupPath, this.timeouts.destroying);
      c.cleanupPending = false;
    });
  }

  // -- RemoveContainer ---------------------------------------------------------

  /** Removes the container, killing it first if it runs. Unknown ids succeed. */
  async remove(idOrPrefix: string, signal: AbortSignal): Promise<void> {
    const c = this.find(idOrPrefix);
    if (!c) return;
    await raceAbort(this.removeContainer(c, signal), signal);
  }

  private async removeContainer(c: Container, signal: AbortSignal): Promise<void> {
    if (!c.isFinished() && c.state === 'RUNNING') await this.stopContainer(c, 0, signal);
    await c.exclusive(async () => {
      if (c.state === 'REMOVED') return;
      const ctx = errorContext(c, 'destroying');
      if (c.state === 'RUNNING') {
        // An end we could not observe (stuck monitor): record it as unknown before tearing down.
        await this.recordEnd(c, { state: 'lost', reason: 'removed before its end was seen' });
      }
      transition(c, 'DESTROYING', this.log, 'remove');
      try {
        await withTimeout('container remove', this.timeouts.destroying, (s) => this.teardown(c, s), ctx);
        await this.store.remove('container', c.id);
      } catch (err) {
        c.cleanupPending = true;
        transition(c, 'STOPPED', this.log, 'remove failed');
        throw new CapsaError(asCapsaError(err).kind, `remove: ${asCapsaError(err).message}`, ctx, { cause: err });
      }
      this.forget(c);
      transition(c, 'REMOVED', this.log, 'removed');
      this.publish('deleted', c);
      this.log.info({ containerId: c.id }, 'container removed');
    });
  }

  // -- ExecSync, ReopenContainerLog, UpdateContainerResources --------------------

  async execSync(idOrPrefix: string, cmd: string[], timeoutSec: number, signal: AbortSignal): Promise<ExecResult> {
    const c = this.get(idOrPrefix);
    const ctx: ErrorContext = { containerId: c.id, stage: 'exec' };
    if (c.criState() !== 'CONTAINER_RUNNING' || !c.record.init) {
      throw new FailedPreconditionError(`container ${c.id} is not running`, ctx);
    }
    const spec = await this.specOf(c);
    const timeoutMs = Math.min(timeoutSec, 365 * 24 * 3600) * 1000;
    const res = await this.launcher.exec(
      c.record.runDir,
      {
        spec,
        args: cmd,
        init: c.record.init,
        cgroupProcs: spec.capsa.cgroupProcs ?? this.cgroups.handle(c.record.cgroupPath).procs,
        timeoutMs,
        outputLimit: EXEC_OUTPUT_LIMIT,
      },
      signal,
    );
    if (res.timedOut) {
      throw new DeadlineExceededError(`command timed out: timeout ${timeoutSec}s exceeded`, ctx);
    }
    return res;
  }

  async reopenLog(idOrPrefix: string, signal: AbortSignal): Promise<void> {
    const c = this.get(idOrPrefix);
    const ctx: ErrorContext = { containerId: c.id, stage: 'reopen log' };
    if (c.criState() !== 'CONTAINER_RUNNING') {
      throw new FailedPreconditionError(`container ${c.id} is not running`, ctx);
    }
    if (c.record.logPath === '') return;
    await withTimeout(
      'reopen container log',
      10_000,
      (s) => this.launcher.reopenLog(c.record.runDir, c.record.logPath, s),
      ctx,
      signal,
    );
  }

  async update(
    idOrPrefix: string,
    resources: CgroupResources,
    criResources: unknown,
    signal: AbortSignal,
  ): Promise<void> {
    const c = this.get(idOrPrefix);
    await raceAbort(
      c.exclusive(async () => {
        const ctx: ErrorContext = { containerId: c.id, stage: 'update' };
        if (c.isFinished() || c.state !== 'RUNNING') {
          throw new FailedPreconditionError(`container ${c.id} is not running`, ctx);
        }
        await withTimeout(
          'container update',
          this.timeouts.isolating,
          () => this.cgroups.apply(c.record.cgroupPath, resources),
          ctx,
        );
        c.record.resources = { ...c.record.resources, ...resources };
        c.record.criResources = criResources;
        await this.persist(c);
      }),
      signal,
    );
  }

  /** The launch spec (in memory, else read back from the run dir). */
  async specOf(c: Container): Promise<LaunchSpec> {
    if (c.spec) return c.spec;
    const file = path.join(c.record.runDir, 'spec.json');
    try {
      c.spec = JSON.parse(await fs.readFile(file, 'utf8')) as LaunchSpec;
      return c.spec;
    } catch (err) {
      throw new FailedPreconditionError(`the launch spec of container ${c.id} is gone: ${(err as Error).message}`, {
        containerId: c.id,
        path: file,
      });
    }
  }

  async usage(c: Container): Promise<{ cpuNs?: bigint; memoryBytes?: bigint; workingSetBytes?: bigint } | undefined> {
    if (c.isFinished() || c.state !== 'RUNNING') return undefined;
    return this.cgroups.usage(c.record.cgroupPath);
  }

  /** Every counter of a running container's cgroup (CRI metrics); undefined when it has none. */
  async stats(c: Container): Promise<CgroupStats | undefined> {
    if (c.isFinished() || c.state !== 'RUNNING') return undefined;
    return this.cgroups.stats(c.record.cgroupPath);
  }

  async backend(): Promise<Backend> {
    return this.opts.provisioner.backend();
  }

  // -- recovery ------------------------------------------------------------------

  /**
   * Re-adopts every checkpointed container (after the sandboxes), then
   * destroys prefixed objects nobody checkpointed. See containers-recovery.ts.
   */
  async recoverOne(id: string, signal: AbortSignal): Promise<'running' | 'exited' | 'discarded'> {
    const raw = await this.store.read<ContainerRecord>('container', id, CONTAINER_CHECKPOINT_VERSION);
    if (!raw) {
      // Crashed between the directory and the first checkpoint: nothing else exists.
      await this.store.remove('container', id);
      return 'discarded';
    }
    const c = new Container(fromRecord({ ...raw.data, id }));
    const r = c.record;
    transition(c, 'RECOVERING', this.log);
    const sandbox = this.opts.sandboxes.find(r.sandboxId);
    if (r.createdAt === undefined || !sandbox) {
      transition(
        c,
        'DESTROYING',
        this.log,
        r.createdAt === undefined ? 'creation never finished' : 'its sandbox is gone',
      );
      await this.teardown(c, signal);
      await this.store.remove('container', id);
      transition(c, 'REMOVED', this.log);
      this.log.info({ containerId: id }, 'undid a container whose creation never finished or whose pod is gone');
      return 'discarded';
    }
    this.byId.set(id, c);
    const other = this.byKey.get(r.key);
    if (!other || (other.record.createdAt ?? 0n) < r.createdAt) this.byKey.set(r.key, c);
    if (r.finishedAt === undefined) {
      const st = await this.launcher.status(r.runDir);
      if (st.state === 'created' || st.state === 'running') {
        r.monitor = st.monitor;
        if (st.init) r.init = st.init;
        if (st.state === 'running' && r.startedAt === undefined && st.startedAt !== undefined) {
          // Started just before the crash: started.json knows when.
          r.startedAt = st.startedAt;
          await this.persist(c);
        }
        transition(c, 'RUNNING', this.log, 'recovered');
        this.watch(c);
        // An exit between the status and the watch is caught here.
        await this.observe(c);
        return c.isFinished() ? 'exited' : 'running';
      }
      transition(c, 'RUNNING', this.log, 'recovered, ended while capsa was down');
      await this.recordEnd(c, st);
      return 'exited';
    }
    // Exited before: make sure nothing of it still runs (a crash may have cut the cleanup).
    transition(c, 'DESTROYING', this.log, 'recover exited container');
    try {
      await this.cgroups.destroy(r.cgroupPath, this.timeouts.destroying, signal);
    } catch (err) {
      c.cleanupPending = true;
      this.log.warn(
        { containerId: id, err: asCapsaError(err).message },
        'cgroup cleanup of an exited container failed',
      );
    }
    transition(c, 'STOPPED', this.log, 'recovered');
    c.exitSeen();
    return 'exited';
  }

  /** Ids with a checkpoint directory, readable or not, and those in memory. */
  async knownIds(): Promise<Set<string>> {
    return new Set([...(await this.store.list('container')), ...this.byId.keys()]);
  }
}

function imageStopSignal(image: ImageRecord): number | undefined {
  const s = image.config.config?.StopSignal;
  return typeof s === 'string' && s !== '' ? signalNumber(s) : undefined;
}

function fromRecord(r: ContainerRecord): ContainerRecord {
  return {
    ...r,
    beganAt: decodeBigint(r.beganAt) ?? 0n,
    createdAt: decodeBigint(r.createdAt),
    startedAt: decodeBigint(r.startedAt),
    finishedAt: decodeBigint(r.finishedAt),
  };
}
