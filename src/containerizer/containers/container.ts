// A container in memory (Mesos nested container): its checkpointed record,
// the lock that serializes lifecycle operations on it and the promise its
// exit resolves. The manager (index.ts) drives it through state.ts.
import type { ContainerRecord, LaunchSpec } from '../container-spec';
import { ContainerCriState, Lifecycle, LifecycleState, OperationQueue, containerCriState, exitReason } from '../state';

export const CONTAINER_CHECKPOINT_VERSION = 1;

/** ExecSync output cap per stream (kubelet's message limit). */
export const EXEC_OUTPUT_LIMIT = 16 * 1024 * 1024;

/** Exit code and reason for a container whose end nobody saw (containerd's choice). */
export const UNKNOWN_EXIT_CODE = 255;
export const UNKNOWN_EXIT_REASON = 'Unknown';
/** Exit code and reason for an init whose execve failed. */
export const START_ERROR_EXIT_CODE = 128;
export const START_ERROR_REASON = 'StartError';

export interface ContainerTimeouts {
  preparing: number;
  isolating: number;
  start: number;
  /** Waiting for the end after SIGKILL, and each teardown. */
  destroying: number;
  /** How long an identical retried CreateContainer waits for the first one. */
  retryWait: number;
  /** Per container, during recovery. */
  recover: number;
  /** Period of the exit check that backs up the run dir watches. */
  pollMs: number;
}

export const DEFAULT_CONTAINER_TIMEOUTS: ContainerTimeouts = {
  preparing: 120_000,
  isolating: 60_000,
  start: 15_000,
  destroying: 30_000,
  retryWait: 60_000,
  recover: 30_000,
  pollMs: 2_000,
};

export class Container implements Lifecycle {
  readonly kind = 'container' as const;
  state: LifecycleState = 'NEW';
  /** The launch spec (also <runDir>/spec.json). */
  spec?: LaunchSpec;
  creation?: Promise<void>;
  creatorGone = false;
  /** The exit was seen but its cgroup could not be removed: the next stop or remove retries. */
  cleanupPending = false;
  readonly exited: Promise<void>;
  private markExited!: () => void;
  unwatch?: () => void;
  private readonly queue = new OperationQueue();
  private observing?: Promise<void>;

  constructor(readonly record: ContainerRecord) {
    this.exited = new Promise<void>((r) => (this.markExited = r));
  }

  get id(): string {
    return this.record.id;
  }

  criState(): ContainerCriState {
    return containerCriState({
      createdAt: this.record.createdAt ?? 0n,
      startedAt: this.record.startedAt,
      finishedAt: this.record.finishedAt,
    });
  }

  isFinished(): boolean {
    return this.record.finishedAt !== undefined;
  }

  reason(): string {
    const r = this.record;
    return exitReason({
      createdAt: r.createdAt ?? 0n,
      finishedAt: r.finishedAt,
      exitCode: r.exitCode,
      reason: r.reason,
      oomKilled: r.oomKilled,
    });
  }

  /** Runs `fn` after every earlier lifecycle operation on this container finished. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.queue.run(fn);
  }

  /** One observation at a time; callers arriving meanwhile share it. */
  observeOnce(fn: () => Promise<void>): Promise<void> {
    this.observing ??= fn().finally(() => (this.observing = undefined));
    return this.observing;
  }

  exitSeen(): void {
    this.markExited();
  }
}
