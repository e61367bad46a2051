// The CNI network isolator (Mesos' network/cni isolator): attaches a pod
// sandbox's pinned network namespace to the configured CNI network and
// detaches it again, with crash-safe records.
//
//   setUp      record "adding" → ADD list → parse result → record "ready" → return
//              (any failure after the first plugin ran: DEL on a fresh
//              context, then the error)
//   tearDown   record "deleting" → DEL list in reverse → remove record
//              (no record: nothing was ever added; a gone netns: DEL anyway)
//   recover    finishes the teardown of records whose sandbox is gone or
//              that a crash left "adding"/"deleting"; adopts the rest
//
// Calls for one sandbox are serialised; different sandboxes run in parallel.
import { promises as fs } from 'fs';
import { CapsaError, ErrorContext, FailedPreconditionError, InternalError, asCapsaError } from '../../errors';
import type { Logger } from '../../log';
import { CniConfigSource, NetworkConfigList, NetworkConfigState } from './config';
import { AddProgress, Attachment, InvokeOptions, PluginTiming, addNetworkList, delNetworkList } from './invoke';
import { CniResult, parseResult, sandboxAddresses, selectPodIps } from './result';
import { PodPortMapping, capabilityArgs, cniArgs } from './runtime-config';
import { withStandInNetns } from './standin-netns';
import { CONTAINER_ID_PATTERN, FileNetworkStateStore, NetworkRecord, NetworkStateStore, RECORD_VERSION } from './state';

/** NSFS_MAGIC: what statfs reports for a bind-mounted namespace file or /proc/<pid>/ns/net. */
const NSFS_MAGIC = 0x6e736673;

export const DEFAULT_IFNAME = 'eth0';
export const DEFAULT_PLUGIN_TIMEOUT_MS = 60_000;

/** What the isolator needs to know about a sandbox. */
export interface SandboxNetworkSpec {
  id: string;
  /** The pinned netns file, e.g. <state>/ns/capsa-<id>-net. */
  netnsPath: string;
  name: string;
  namespace: string;
  uid: string;
  portMappings?: readonly PodPortMapping[];
  annotations?: Record<string, string>;
}

export interface NetworkStatus {
  sandboxId: string;
  /** Primary pod IP (IPv4 when there is one). */
  ip: string;
  /** The other pod IPs (dual stack), not repeating `ip`. */
  additionalIps: string[];
  result: CniResult;
  networkName: string;
  interfaceName: string;
}

/** One list operation's timing, the benchmark's unit. */
export interface NetworkTiming {
  op: 'ADD' | 'DEL';
  sandboxId: string;
  ms: number;
  ok: boolean;
  plugins: PluginTiming[];
}

export interface CniNetworkOptions {
  confDir: string;
  binDirs: readonly string[];
  /** Directory for the default file store (e.g. `<root>/network`); ignored when `store` is given. */
  stateDir?: string;
  store?: NetworkStateStore;
  log?: Logger;
  ifName?: string;
  /** Timeout of each plugin call. */
  pluginTimeoutMs?: number;
  /** A shared config source (e.g. the one Status uses). */
  configSource?: CniConfigSource;
  onTiming?: (t: NetworkTiming) => void;
}

export interface RecoverSummary {
  /** Attachments kept: their sandbox exists and the ADD completed. */
  adopted: Map<string, NetworkStatus>;
  /** Sandboxes whose teardown recovery finished. */
  tornDown: string[];
  /** Teardowns that failed again; their records stay for the next try. */
  failed: { sandboxId: string; error: CapsaError }[];
}

interface Totals {
  count: number;
  failed: number;
  totalMs: number;
}

/** True when `p` is a live namespace file (nsfs), false when it is missing or a plain file. */
export async function isNetns(p: string): Promise<boolean> {
  if (!p) return false;
  try {
    const st = await fs.statfs(p);
    return Number(st.type) === NSFS_MAGIC;
  } catch {
    return false;
  }
}

export class CniNetwork {
  readonly config: CniConfigSource;
  readonly store: NetworkStateStore;
  private readonly ifName: string;
  private readonly timeoutMs: number;
  private readonly log?: Logger;
  private readonly statuses = new Map<string, NetworkStatus>();
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly totals: Record<'ADD' | 'DEL', Totals> = {
    ADD: { count: 0, failed: 0, totalMs: 0 },
    DEL: { count: 0, failed: 0, totalMs: 0 },
  };

  constructor(private readonly opts: CniNetworkOptions) {
    this.log = opts.log;
    this.config = opts.configSource ?? new CniConfigSource(opts.confDir, opts.binDirs, opts.log);
    if (opts.store) this.store = opts.store;
    else if (opts.stateDir) this.store = new FileNetworkStateStore(opts.stateDir);
    else throw new InternalError('CniNetwork needs a stateDir or a store');
    this.ifName = opts.ifName ?? DEFAULT_IFNAME;
    this.timeoutMs = opts.pluginTimeoutMs ?? DEFAULT_PLUGIN_TIMEOUT_MS;
  }

  /** NetworkReady for Status. */
  readiness(): Promise<NetworkConfigState> {
    return this.config.load();
  }

  /** The attachment of a sandbox, from memory (filled by setUp and recover). */
  status(sandboxId: string): NetworkStatus | undefined {
    return this.statuses.get(sandboxId);
  }

  /** Cumulative ADD/DEL counts and time, for the benchmark. */
  stats(): Record<'ADD' | 'DEL', Totals> {
    return { ADD: { ...this.totals.ADD }, DEL: { ...this.totals.DEL } };
  }

  /** Attaches the sandbox's netns; the record is on disk before this resolves. */
  setUp(spec: SandboxNetworkSpec, signal?: AbortSignal): Promise<NetworkStatus> {
    return this.serialized(spec.id, () => this.doSetUp(spec, signal));
  }

  /**
   * Detaches the sandbox. Idempotent: without a record there is nothing to
   * undo. Runs even when the netns is gone, so IPAM frees the address.
   */
  tearDown(sandboxId: string, signal?: AbortSignal): Promise<void> {
    return this.serialized(sandboxId, () => this.doTearDown(sandboxId, signal));
  }

  /**
   * After a restart: adopts the attachments of `known` sandboxes whose ADD
   * completed, and tears down every other record (sandbox gone, or a crash
   * in the middle of ADD or DEL).
   */
  async recover(known: Iterable<string>, signal?: AbortSignal): Promise<RecoverSummary> {
    const keep = new Set(known);
    const summary: RecoverSummary = { adopted: new Map(), tornDown: [], failed: [] };
    for (const id of await this.store.list()) {
      const ctx: ErrorContext = { stage: 'network', sandboxId: id };
      try {
        const rec = await this.store.read(id);
        if (!rec) continue;
        if (rec.phase === 'ready' && keep.has(id)) {
          const st = this.statusFrom(rec);
          this.statuses.set(id, st);
          summary.adopted.set(id, st);
          continue;
        }
        this.log?.info(
          { ...ctx, phase: rec.phase, sandboxKnown: keep.has(id) },
          'CNI recovery: finishing the teardown of a network attachment',
        );
        await this.tearDown(id, signal);
        summary.tornDown.push(id);
      } catch (err) {
        const e = asCapsaError(err, ctx);
        this.log?.warn({ ...ctx, err: e.message }, 'CNI recovery: teardown failed; will retry');
        summary.failed.push({ sandboxId: id, error: e });
      }
    }
    return summary;
  }

  /**
   * Re-adopts one sandbox's attachment after a restart: its status when the
   * record says the ADD completed, undefined when there is no record, and
   * 'incomplete' for a crash mid-ADD or mid-DEL (tearDown finishes it).
   */
  async adopt(sandboxId: string): Promise<NetworkStatus | 'incomplete' | undefined> {
    const rec = await this.store.read(sandboxId);
    if (!rec) return undefined;
    if (rec.phase !== 'ready') return 'incomplete';
    const st = this.statusFrom(rec);
    this.statuses.set(sandboxId, st);
    return st;
  }

  /** Tears down every recorded attachment whose sandbox is not in `known`; returns their ids. */
  async sweep(known: ReadonlySet<string>, signal?: AbortSignal): Promise<string[]> {
    const removed: string[] = [];
    for (const id of await this.store.list()) {
      if (known.has(id)) continue;
      this.log?.info({ stage: 'network', sandboxId: id }, 'CNI: tearing down the attachment of an unknown sandbox');
      try {
        await this.tearDown(id, signal);
        removed.push(id);
      } catch (err) {
        // The record stays; the next start tries again.
        this.log?.warn(
          { stage: 'network', sandboxId: id, err: asCapsaError(err).message },
          'CNI sweep: teardown failed',
        );
      }
    }
    return removed;
  }

  private async serialized<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.locks.set(id, tail);
    try {
      return await next;
    } finally {
      if (this.locks.get(id) === tail) this.locks.delete(id);
    }
  }

  private invokeOptions(ctx: ErrorContext, calls: PluginTiming[], signal?: AbortSignal): InvokeOptions {
    return { timeoutMs: this.timeoutMs, signal, log: this.log, context: ctx, onCall: (t) => calls.push(t) };
  }

  private async doSetUp(spec: SandboxNetworkSpec, signal?: AbortSignal): Promise<NetworkStatus> {
    const ctx: ErrorContext = { stage: 'network', sandboxId: spec.id };
    if (!CONTAINER_ID_PATTERN.test(spec.id)) throw new InternalError(`bad sandbox id "${spec.id}"`, ctx);

    const existing = await this.store.read(spec.id);
    if (existing?.phase === 'ready' && existing.netnsPath === spec.netnsPath) {
      // A retried call for an attachment that is complete: same answer.
      const st = this.statusFrom(existing);
      this.statuses.set(spec.id, st);
      return st;
    }
    if (existing) await this.doTearDown(spec.id, undefined);

    const state = await this.config.load();
    if (!state.ready) throw new FailedPreconditionError(`network not ready: ${state.message}`, ctx);
    const net = state.network;
    // Bad input fails before anything is created.
    const args = cniArgs({ sandboxId: spec.id, name: spec.name, namespace: spec.namespace, uid: spec.uid });
    const caps = capabilityArgs(spec.portMappings, spec.annotations);
    if (!(await isNetns(spec.netnsPath))) {
      throw new FailedPreconditionError(`${spec.netnsPath} is not a network namespace`, {
        ...ctx,
        path: spec.netnsPath,
      });
    }

    const record: NetworkRecord = {
      version: RECORD_VERSION,
      sandboxId: spec.id,
      phase: 'adding',
      netnsPath: spec.netnsPath,
      ifName: this.ifName,
      pod: { name: spec.name, namespace: spec.namespace, uid: spec.uid },
      configFile: net.file,
      list: net.list,
      args,
      capabilityArgs: caps,
      updatedAt: new Date().toISOString(),
    };
    // The intent, before any plugin runs: a crash from here on is undone by recover().
    await this.store.write(record);

    const attachment: Attachment = {
      containerId: spec.id,
      netns: spec.netnsPath,
      ifName: this.ifName,
      args,
      capabilityArgs: caps,
      binDirs: this.opts.binDirs,
    };
    const calls: PluginTiming[] = [];
    const progress: AddProgress = { done: 0 };
    const t0 = process.hrtime.bigint();
    let status: NetworkStatus;
    try {
      // Each intermediate result is checkpointed: a crash mid-ADD still tells recovery which addresses to undo.
      const checkpointPartial = async (partial: unknown): Promise<void> => {
        record.result = partial;
        await this.store.write(record);
      };
      const raw = await addNetworkList(
        net.list,
        net.pluginPaths,
        attachment,
        this.invokeOptions(ctx, calls, signal),
        progress,
        checkpointPartial,
      );
      const result = parseResult(raw, net.list.cniVersion);
      const { ip, additionalIps } = selectPodIps(result, this.ifName);
      if (!ip) throw new InternalError(`CNI network ${net.list.name} gave no IP address to ${this.ifName}`, ctx);
      record.phase = 'ready';
      record.result = raw;
      record.ip = ip;
      record.additionalIps = additionalIps;
      record.updatedAt = new Date().toISOString();
      await this.store.write(record);
      // A caller that gave up meanwhile gets nothing half-made.
      if (signal?.aborted) throw asCapsaError(signal.reason, ctx);
      status = {
        sandboxId: spec.id,
        ip,
        additionalIps,
        result,
        networkName: net.list.name,
        interfaceName: this.ifName,
      };
    } catch (err) {
      const e = this.withContext(err, ctx);
      this.account('ADD', spec.id, t0, false, calls);
      this.log?.warn({ ...ctx, err: e.message, pluginsDone: progress.done }, 'CNI ADD failed; undoing it');
      await this.undoAdd(record, progress.prevResult);
      throw e;
    }
    const ms = this.account('ADD', spec.id, t0, true, calls);
    this.statuses.set(spec.id, status);
    this.log?.info(
      { ...ctx, network: net.list.name, ip: status.ip, additionalIps: status.additionalIps, ms },
      'CNI network attached',
    );
    return status;
  }

  /** DEL after a failed setUp, on a fresh context: the caller's signal may be the reason we are here. */
  private async undoAdd(record: NetworkRecord, prevResult: unknown): Promise<void> {
    record.phase = 'deleting';
    record.result = record.result ?? prevResult;
    record.updatedAt = new Date().toISOString();
    try {
      await this.store.write(record);
      await this.runDel(record, undefined);
      await this.store.remove(record.sandboxId);
    } catch (err) {
      // The record stays "deleting"; tearDown or recover() finishes the job.
      this.log?.error(
        { stage: 'network', sandboxId: record.sandboxId, err: asCapsaError(err).message },
        'CNI DEL after a failed ADD failed too; the attachment is left for recovery',
      );
    }
  }

  private async doTearDown(sandboxId: string, signal?: AbortSignal): Promise<void> {
    const ctx: ErrorContext = { stage: 'network', sandboxId };
    const record = await this.store.read(sandboxId);
    if (!record) {
      this.statuses.delete(sandboxId);
      return;
    }
    if (record.phase !== 'deleting') {
      record.phase = 'deleting';
      record.updatedAt = new Date().toISOString();
      await this.store.write(record);
    }
    this.statuses.delete(sandboxId);
    await this.runDel(record, signal);
    await this.store.remove(sandboxId);
    this.log?.info({ ...ctx, network: record.list.name }, 'CNI network detached');
  }

  private async runDel(record: NetworkRecord, signal: AbortSignal | undefined): Promise<void> {
    const ctx: ErrorContext = { stage: 'network', sandboxId: record.sandboxId };
    const calls: PluginTiming[] = [];
    const t0 = process.hrtime.bigint();
    const netnsAlive = await isNetns(record.netnsPath);
    const del = (list: NetworkConfigList, netns: string): Promise<void> =>
      delNetworkList(
        list,
        {
          containerId: record.sandboxId,
          netns,
          ifName: record.ifName,
          args: record.args,
          capabilityArgs: record.capabilityArgs,
          binDirs: this.opts.binDirs,
        },
        record.result,
        this.invokeOptions(ctx, calls, signal),
      );
    // Spec: DEL must work without the netns. When it is gone, plugins get a
    // stand-in holding the pod's addresses (see standin-netns.ts), or none.
    const run = (list: NetworkConfigList): Promise<void> =>
      netnsAlive
        ? del(list, record.netnsPath)
        : withStandInNetns(record.sandboxId, record.ifName, this.recordedAddresses(record), this.log, (ns) =>
            del(list, ns),
          );
    try {
      try {
        await run(record.list);
      } catch (err) {
        // A config that cannot even DEL (the one the ADD failed on, say) may have
        // been fixed since: the current config of the same network gets a try.
        const current = await this.config.load().catch(() => undefined);
        if (
          !current?.ready ||
          current.network.list.name !== record.list.name ||
          JSON.stringify(current.network.list) === JSON.stringify(record.list)
        ) {
          throw err;
        }
        this.log?.warn(
          { ...ctx, err: asCapsaError(err).message, file: current.file },
          'CNI DEL with the recorded config failed; trying the current config of the network',
        );
        await run(current.network.list);
      }
    } catch (err) {
      this.account('DEL', record.sandboxId, t0, false, calls);
      throw this.withContext(err, ctx);
    }
    const ms = this.account('DEL', record.sandboxId, t0, true, calls);
    this.log?.debug({ ...ctx, netnsAlive, ms }, 'CNI DEL done');
  }

  /** The pod's addresses from the (possibly partial) ADD result on record. */
  private recordedAddresses(record: NetworkRecord): string[] {
    if (record.result === undefined) return [];
    try {
      return sandboxAddresses(parseResult(record.result, record.list.cniVersion), record.ifName);
    } catch {
      return [];
    }
  }

  private account(op: 'ADD' | 'DEL', sandboxId: string, t0: bigint, ok: boolean, plugins: PluginTiming[]): number {
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    const t = this.totals[op];
    t.count++;
    if (!ok) t.failed++;
    t.totalMs += ms;
    this.log?.info(
      {
        stage: 'network',
        sandboxId,
        op,
        ok,
        ms: Math.round(ms * 10) / 10,
        plugins: plugins.map((p) => `${p.plugin}:${Math.round(p.ms)}`),
      },
      `CNI ${op} timing`,
    );
    this.opts.onTiming?.({ op, sandboxId, ms, ok, plugins });
    return Math.round(ms * 10) / 10;
  }

  private withContext(err: unknown, ctx: ErrorContext): CapsaError {
    const e = asCapsaError(err, ctx);
    if (e.context.sandboxId === undefined || e.context.stage === undefined) {
      return new CapsaError(e.kind, e.message, { ...ctx, ...e.context }, { cause: e });
    }
    return e;
  }

  private statusFrom(rec: NetworkRecord): NetworkStatus {
    const result = parseResult(rec.result, rec.list.cniVersion);
    const picked = rec.ip ? { ip: rec.ip, additionalIps: rec.additionalIps ?? [] } : selectPodIps(result, rec.ifName);
    return {
      sandboxId: rec.sandboxId,
      ip: picked.ip,
      additionalIps: picked.additionalIps,
      result,
      networkName: rec.list.name,
      interfaceName: rec.ifName,
    };
  }
}
