// The containerizer's lifecycle state machine (Mesos containerizer.cpp's
// State enum), for sandboxes (top-level containers) and containers (nested
// ones) alike:
//
//   NEW ─▶ PREPARING ─▶ ISOLATING ─▶ RUNNING ─▶ DESTROYING ─▶ STOPPED ─▶ DESTROYING ─▶ REMOVED
//   NEW ─▶ RECOVERING ─▶ RUNNING | STOPPED | DESTROYING
//
// (Mesos has a FETCHING stage between the two for its URI fetcher; images
// come through the provisioner in PREPARING here, so there is none.) Any
// creating stage may fail into DESTROYING, which undoes what was made. Every change goes through transition(), which logs it and
// refuses the illegal ones.
//
// These states live in memory only. What kubelet sees (the CRI state) is
// derived from persisted facts — timestamps, exit code, reason — never from
// transient flags, so a restarted daemon computes the same answer.
import { CapsaError, ErrorContext, FailedPreconditionError, UnavailableError, asCapsaError } from '../errors';
import type { Logger } from '../log';
import { spanEvent, withSpan } from '../observability/tracing';
import { raceAbort, withTimeout } from '../util/timeout';

export type LifecycleState =
  'NEW' | 'RECOVERING' | 'PREPARING' | 'ISOLATING' | 'RUNNING' | 'DESTROYING' | 'STOPPED' | 'REMOVED';

/** The stages that create something and so have a timeout and a cleanup. */
export type Stage = 'PREPARING' | 'ISOLATING' | 'DESTROYING';

export const TRANSITIONS: Readonly<Record<LifecycleState, readonly LifecycleState[]>> = {
  NEW: ['PREPARING', 'RECOVERING'],
  RECOVERING: ['RUNNING', 'STOPPED', 'DESTROYING'],
  PREPARING: ['ISOLATING', 'DESTROYING'],
  ISOLATING: ['RUNNING', 'DESTROYING'],
  RUNNING: ['DESTROYING'],
  DESTROYING: ['STOPPED', 'REMOVED'],
  STOPPED: ['DESTROYING', 'REMOVED'],
  REMOVED: [],
};

/** States in which an object is still being made (a create call owns it). */
export function isCreating(s: LifecycleState): boolean {
  return s === 'NEW' || s === 'PREPARING' || s === 'ISOLATING';
}

export function canTransition(from: LifecycleState, to: LifecycleState): boolean {
  return TRANSITIONS[from].includes(to);
}

/** Runs operations on one object one at a time, in the order they were asked for. */
export class OperationQueue {
  private tail: Promise<void> = Promise.resolve();

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.tail;
    let release!: () => void;
    this.tail = new Promise<void>((r) => (release = r));
    try {
      await prev;
      return await fn();
    } finally {
      release();
    }
  }
}

/** Anything with a lifecycle: a sandbox or a container record in memory. */
export interface Lifecycle {
  readonly kind: 'sandbox' | 'container';
  readonly id: string;
  state: LifecycleState;
}

/**
 * A create retried (kubelet gave up on its first call) while the identical
 * first one is still being made: waits for it, at most `timeoutMs`.
 * 'done' when it finished; 'redo' when it failed and released the name (the
 * caller makes it afresh). Throws Unavailable (retryable) while it is still
 * being made, or the first call's error when the name is still taken.
 */
export async function awaitFirstCreate(opts: {
  obj: Lifecycle & { creation?: Promise<unknown> };
  /** e.g. `container "c_p_ns_uid_0"`, for the retry message. */
  what: string;
  /** The RPC, for the timeout's message. */
  rpc: string;
  timeoutMs: number;
  ctx: ErrorContext;
  signal: AbortSignal;
  nameFreed: () => boolean;
}): Promise<'done' | 'redo'> {
  const { obj, ctx } = opts;
  try {
    await raceAbort(
      withTimeout(`waiting for the first ${opts.rpc}`, opts.timeoutMs, () => obj.creation!, ctx),
      opts.signal,
    );
    return 'done';
  } catch (err) {
    if (isCreating(obj.state)) {
      throw new UnavailableError(
        `${opts.what} is still being created by an earlier identical request (id ${obj.id}); retry`,
        ctx,
      );
    }
    // The first attempt failed and released the name: make it afresh.
    if (opts.nameFreed()) return 'redo';
    throw err;
  }
}

export function errorContext(obj: Lifecycle, stage?: string): ErrorContext {
  return obj.kind === 'sandbox' ? { sandboxId: obj.id, stage } : { containerId: obj.id, stage };
}

/**
 * The one place a lifecycle state changes. Logs every change; an illegal
 * one is a bug in the caller and throws FailedPrecondition naming both states.
 */
export function transition(obj: Lifecycle, to: LifecycleState, log: Logger, why?: string): void {
  const from = obj.state;
  if (!canTransition(from, to)) {
    throw new FailedPreconditionError(`${obj.kind} ${obj.id} cannot go from ${from} to ${to}`, errorContext(obj));
  }
  obj.state = to;
  log.info({ [obj.kind === 'sandbox' ? 'sandboxId' : 'containerId']: obj.id, from, to, why }, 'transition');
  spanEvent('transition', { [`capsa.${obj.kind}_id`]: obj.id, from, to, ...(why ? { why } : {}) });
}

export interface StageOptions<T> {
  /** Deadline of the stage. */
  timeoutMs: number;
  /** The stage's work; must stop when `signal` aborts. */
  run: (signal: AbortSignal) => Promise<T>;
  /**
   * Undoes whatever this stage (and the ones before it) made. Runs on a
   * fresh signal with its own deadline, so a cancelled call still cleans up.
   */
  cleanup: (signal: AbortSignal) => Promise<void>;
  cleanupTimeoutMs?: number;
  /** Aborts the stage early (e.g. daemon shutdown); not passed to cleanup. */
  parent?: AbortSignal;
}

/**
 * Enters `stage`, runs it under its deadline and, if it fails or times out,
 * moves to DESTROYING, runs the cleanup and throws an error that names the
 * stage (the original kind is kept: a timeout stays DeadlineExceeded).
 */
export async function runStage<T>(
  obj: Lifecycle,
  stage: Exclude<Stage, 'DESTROYING'>,
  log: Logger,
  opts: StageOptions<T>,
): Promise<T> {
  transition(obj, stage, log);
  const ctx = errorContext(obj, stage.toLowerCase());
  let work: Promise<T> | undefined;
  try {
    return await withTimeout(
      `${obj.kind} ${stage.toLowerCase()}`,
      opts.timeoutMs,
      (signal) =>
        (work = withSpan(`${obj.kind} ${stage}`, { [`capsa.${obj.kind}_id`]: obj.id }, () => opts.run(signal))),
      ctx,
      opts.parent,
    );
  } catch (err) {
    const cause = asCapsaError(err, ctx);
    log.warn({ ...ctx, err: cause.message }, `${stage} failed; cleaning up`);
    transition(obj, 'DESTROYING', log, `${stage} failed`);
    // A timed-out stage was aborted but may still be finishing a step: let it
    // stop before undoing, or it could create something after the cleanup.
    if (work) await settled(work, opts.cleanupTimeoutMs ?? 30000);
    try {
      await withTimeout(
        `${obj.kind} cleanup after ${stage.toLowerCase()}`,
        opts.cleanupTimeoutMs ?? 30000,
        opts.cleanup,
        {
          ...ctx,
          stage: 'cleanup',
        },
      );
    } catch (cleanupErr) {
      // The stage's own error is the one the caller needs; the cleanup's is logged.
      log.error({ ...ctx, err: asCapsaError(cleanupErr).message }, `cleanup after ${stage} failed`);
    }
    transition(obj, 'REMOVED', log, `${stage} failed`);
    throw stageError(stage, cause, ctx);
  }
}

/** Resolves when `p` settles or after `ms`, whichever is first; never rejects. */
async function settled(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    p.then(
      () => undefined,
      () => undefined,
    ),
    new Promise<void>((r) => (timer = setTimeout(r, ms))),
  ]);
  clearTimeout(timer);
}

/** Re-labels an error with the stage it happened in, keeping its kind. */
export function stageError(stage: string, err: CapsaError, ctx: ErrorContext): CapsaError {
  const prefix = `${stage.toLowerCase()}: `;
  const message = err.message.startsWith(prefix) ? err.message : prefix + err.message;
  return new CapsaError(err.kind, message, { ...err.context, ...ctx, stage: stage.toLowerCase() }, { cause: err });
}

// ---------------------------------------------------------------------------
// CRI states, derived from persisted facts.
// ---------------------------------------------------------------------------

/** What a sandbox checkpoint records about its life; timestamps are Unix ns. */
export interface SandboxFacts {
  createdAt: bigint;
  /** Set when RunPodSandbox finished making it; absent: creation never completed. */
  readyAt?: bigint;
  /** Set when it was stopped (or found dead on recovery). */
  stoppedAt?: bigint;
}

export type SandboxCriState = 'SANDBOX_READY' | 'SANDBOX_NOTREADY';

export function sandboxCriState(f: SandboxFacts): SandboxCriState {
  return f.readyAt !== undefined && f.readyAt > 0n && f.stoppedAt === undefined ? 'SANDBOX_READY' : 'SANDBOX_NOTREADY';
}

/** What a container checkpoint (plus its exit file) records; timestamps are Unix ns. */
export interface ContainerFacts {
  createdAt: bigint;
  startedAt?: bigint;
  finishedAt?: bigint;
  exitCode?: number;
  /** Set with finishedAt: "Completed", "Error", "OOMKilled", or a runtime reason. */
  reason?: string;
  /** The kernel OOM-killed the init. */
  oomKilled?: boolean;
}

export type ContainerCriState = 'CONTAINER_CREATED' | 'CONTAINER_RUNNING' | 'CONTAINER_EXITED' | 'CONTAINER_UNKNOWN';

export function containerCriState(f: ContainerFacts): ContainerCriState {
  if (!(f.createdAt > 0n)) return 'CONTAINER_UNKNOWN';
  if (f.finishedAt !== undefined) return 'CONTAINER_EXITED';
  if (f.startedAt !== undefined) return 'CONTAINER_RUNNING';
  return 'CONTAINER_CREATED';
}

/** The reason kubelet shows for an exited container, from the exit facts. */
export function exitReason(f: ContainerFacts): string {
  if (f.finishedAt === undefined) return '';
  if (f.reason) return f.reason;
  if (f.oomKilled) return 'OOMKilled';
  return f.exitCode === 0 ? 'Completed' : 'Error';
}

/** Unix time in nanoseconds, strictly increasing within this process. */
let lastNs = 0n;
export function nowNs(): bigint {
  const wall = BigInt(Date.now()) * 1_000_000n;
  lastNs = wall > lastNs ? wall : lastNs + 1n;
  return lastNs;
}
