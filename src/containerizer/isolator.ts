// The Isolator role (Mesos isolator.hpp, seed 004's "better abstraction"):
// one small interface per isolation technology, never a branch inside the
// containerizer. Lifecycle per object:
//
//   prepare → isolate(pid) → update → usage → cleanup      (a live object)
//   recover → … → cleanup                                  (after a restart)
//
// Each isolator declares the capabilities it needs and provides (e.g.
// `network` needs `netns`; `cgroups` provides `cgroup`), and IsolatorChain
// orders them from those declarations and threads one typed context object
// through them. Each isolator checkpoints its own state with its own
// version number through the `checkpoint` callback it is handed.
import { CapsaError, ErrorContext, InternalError, asCapsaError } from '../errors';
import type { Logger } from '../log';
import type { IsolatorCheckpoint } from './checkpoint';
import type { CgroupStats } from './isolators/cgroups/stats';
import type { InterfaceUsage } from './isolators/namespaces/netdev';

/** Names of what isolators produce for each other, e.g. "netns", "cgroup", "pod-files". */
export type Capability = string;

/** Writes the isolator's state to its checkpoint file (disk before memory). */
export type CheckpointFn<S> = (state: S) => Promise<void>;

/** What recovery concluded about one isolator's objects. */
export type RecoverResult<S> =
  | { status: 'alive'; state: S }
  /** The objects are gone or broken (e.g. a reboot wiped the state dir). */
  | { status: 'lost'; reason: string; state?: S };

/**
 * What a usage read covers: 'all' (every counter: CRI metrics) or 'summary'
 * (what PodSandboxStats reports, polled by kubelet: the cheap part).
 */
export type UsageScope = 'all' | 'summary';

export interface Usage {
  cpu?: { usageCoreNanoSeconds: bigint };
  memory?: { usageBytes: bigint; workingSetBytes: bigint; rssBytes?: bigint; pageFaults?: bigint };
  process?: { count: number };
  /** Interface counters of the pod's network namespace (loopback left out). */
  network?: { interfaces: InterfaceUsage[] };
  /** The pod's cgroup counters (every one for scope 'all': CRI metrics), cpu/memory/process above being its summary. */
  cgroup?: CgroupStats;
}

export interface Isolator<Ctx, S = unknown, R = unknown> {
  /** Unique, [a-z0-9-]; names the checkpoint file. */
  readonly name: string;
  /** Version of this isolator's checkpoint format. */
  readonly version: number;
  /** Capabilities that must be provided before prepare runs. */
  readonly needs: readonly Capability[];
  /** Ordering only: run after whoever provides these, when present. */
  readonly after?: readonly Capability[];
  readonly provides: readonly Capability[];

  /**
   * Creates this isolator's host objects and fills its part of `ctx`.
   * Calls `checkpoint` before or right after creating anything, and must
   * name everything it creates deterministically from the object id with
   * the `capsa-` prefix, so a crash before the checkpoint is still undone.
   */
  prepare(ctx: Ctx, checkpoint: CheckpointFn<S>, signal: AbortSignal): Promise<S>;
  /** Puts a process (the init, a pid-namespace holder) under isolation. */
  isolate?(ctx: Ctx, state: S, pid: number, signal: AbortSignal): Promise<void>;
  /** Applies changed resources to a live object. */
  update?(ctx: Ctx, state: S, resources: R, signal: AbortSignal): Promise<void>;
  usage?(ctx: Ctx, state: S, signal: AbortSignal, scope?: UsageScope): Promise<Usage>;
  /**
   * Removes everything this isolator made for the object. Idempotent, and
   * works from `state` undefined (nothing checkpointed) using the
   * deterministic names alone.
   */
  cleanup(ctx: Ctx, state: S | undefined, signal: AbortSignal): Promise<void>;
  /**
   * Re-adopts the object's objects after a restart, from the checkpoint this
   * isolator wrote (of any version it still reads). Fills `ctx` like prepare.
   */
  recover(ctx: Ctx, saved: IsolatorCheckpoint | undefined, signal: AbortSignal): Promise<RecoverResult<S>>;
  /** Destroys prefixed objects of this kind that belong to no id in `known`. */
  sweep?(known: ReadonlySet<string>, signal: AbortSignal): Promise<string[]>;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyIsolator<Ctx> = Isolator<Ctx, any, any>;

/**
 * Orders isolators so that every one runs after the providers of what it
 * needs (and of its `after` list, when provided). A missing provider of a
 * hard need, or a cycle, is a configuration bug.
 */
export function orderIsolators<Ctx>(isolators: readonly AnyIsolator<Ctx>[]): AnyIsolator<Ctx>[] {
  const providers = new Map<Capability, AnyIsolator<Ctx>>();
  for (const i of isolators) {
    for (const p of i.provides) {
      if (providers.has(p))
        throw new InternalError(`isolators ${providers.get(p)!.name} and ${i.name} both provide ${p}`);
      providers.set(p, i);
    }
  }
  const names = new Set<string>();
  for (const i of isolators) {
    if (names.has(i.name)) throw new InternalError(`two isolators named ${i.name}`);
    names.add(i.name);
    for (const n of i.needs) {
      if (!providers.has(n)) throw new InternalError(`isolator ${i.name} needs ${n}, which no isolator provides`);
    }
  }
  const out: AnyIsolator<Ctx>[] = [];
  const mark = new Map<AnyIsolator<Ctx>, 'visiting' | 'done'>();
  const visit = (i: AnyIsolator<Ctx>, trail: string[]): void => {
    const m = mark.get(i);
    if (m === 'done') return;
    if (m === 'visiting') throw new InternalError(`isolator dependency cycle: ${[...trail, i.name].join(' -> ')}`);
    mark.set(i, 'visiting');
    for (const cap of [...i.needs, ...(i.after ?? [])]) {
      const p = providers.get(cap);
      if (p && p !== i) visit(p, [...trail, i.name]);
    }
    mark.set(i, 'done');
    out.push(i);
  };
  // Stable: isolators with no constraints keep the given order.
  for (const i of isolators) visit(i, []);
  return out;
}

/** How the chain persists each isolator's state for one object. */
export interface IsolatorStore {
  write(name: string, version: number, state: unknown): Promise<void>;
  readAll(): Promise<Map<string, IsolatorCheckpoint>>;
  remove(name: string): Promise<void>;
}

/** An ordered set of isolators run together for one object. */
export class IsolatorChain<Ctx> {
  readonly ordered: readonly AnyIsolator<Ctx>[];

  constructor(isolators: readonly AnyIsolator<Ctx>[]) {
    this.ordered = orderIsolators(isolators);
  }

  /**
   * Prepares every isolator in order. States land in `states` as soon as
   * each isolator checkpoints, so a failure half-way can be cleaned up with
   * exactly what was made.
   */
  async prepare(
    ctx: Ctx,
    store: IsolatorStore,
    states: Map<string, unknown>,
    signal: AbortSignal,
    log: Logger,
  ): Promise<void> {
    for (const iso of this.ordered) {
      signal.throwIfAborted();
      const checkpoint: CheckpointFn<unknown> = async (state) => {
        await store.write(iso.name, iso.version, state);
        states.set(iso.name, state);
      };
      const t0 = Date.now();
      const state: unknown = await iso.prepare(ctx, checkpoint, signal);
      if (!states.has(iso.name) || states.get(iso.name) !== state) await checkpoint(state);
      log.debug({ isolator: iso.name, ms: Date.now() - t0 }, 'isolator prepared');
    }
  }

  async isolate(ctx: Ctx, states: Map<string, unknown>, pid: number, signal: AbortSignal): Promise<void> {
    for (const iso of this.ordered) {
      if (iso.isolate) await iso.isolate(ctx, states.get(iso.name), pid, signal);
    }
  }

  async update(ctx: Ctx, states: Map<string, unknown>, resources: unknown, signal: AbortSignal): Promise<void> {
    for (const iso of this.ordered) {
      if (iso.update) await iso.update(ctx, states.get(iso.name), resources, signal);
    }
  }

  async usage(ctx: Ctx, states: Map<string, unknown>, signal: AbortSignal, scope?: UsageScope): Promise<Usage> {
    const out: Usage = {};
    for (const iso of this.ordered) {
      if (iso.usage && states.has(iso.name))
        Object.assign(out, await iso.usage(ctx, states.get(iso.name), signal, scope));
    }
    return out;
  }

  /**
   * Cleans up in reverse order. Every isolator gets its turn even when an
   * earlier one fails; the first error is thrown at the end, naming the
   * isolator. Successfully cleaned isolators lose their checkpoint.
   */
  async cleanup(
    ctx: Ctx,
    store: IsolatorStore | undefined,
    states: Map<string, unknown>,
    signal: AbortSignal,
    log: Logger,
    errCtx: ErrorContext,
  ): Promise<void> {
    let first: CapsaError | undefined;
    for (const iso of [...this.ordered].reverse()) {
      try {
        await iso.cleanup(ctx, states.get(iso.name), signal);
        states.delete(iso.name);
        await store?.remove(iso.name);
      } catch (err) {
        const e = asCapsaError(err, errCtx);
        log.warn({ ...errCtx, isolator: iso.name, err: e.message }, 'isolator cleanup failed');
        first ??= new CapsaError(
          e.kind,
          `${iso.name} cleanup: ${e.message}`,
          { ...e.context, ...errCtx },
          { cause: e },
        );
      }
    }
    if (first) throw first;
  }

  /**
   * Recovers every isolator from its checkpoint. Returns the reasons of the
   * ones whose objects are lost (empty when everything is alive).
   */
  async recover(
    ctx: Ctx,
    saved: Map<string, IsolatorCheckpoint>,
    states: Map<string, unknown>,
    signal: AbortSignal,
    log: Logger,
  ): Promise<string[]> {
    const lost: string[] = [];
    for (const iso of this.ordered) {
      const r = await iso.recover(ctx, saved.get(iso.name), signal);
      if (r.state !== undefined) states.set(iso.name, r.state);
      if (r.status === 'lost') {
        log.info({ isolator: iso.name, reason: r.reason }, 'isolator state lost');
        lost.push(`${iso.name}: ${r.reason}`);
      }
    }
    return lost;
  }

  async sweep(known: ReadonlySet<string>, signal: AbortSignal, log: Logger): Promise<string[]> {
    const removed: string[] = [];
    for (const iso of [...this.ordered].reverse()) {
      if (!iso.sweep) continue;
      try {
        removed.push(...(await iso.sweep(known, signal)));
      } catch (err) {
        log.warn({ isolator: iso.name, err: asCapsaError(err).message }, 'orphan sweep failed');
      }
    }
    return removed;
  }
}
