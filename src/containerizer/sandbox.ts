// A pod sandbox in memory (Mesos top-level container): its checkpointed
// record, its isolators' states and the lock that serializes operations on
// it. The manager (sandboxes/) creates, stops and removes them.
import type { RegistryKind } from './registry';
import type { SandboxContext, SandboxSpec } from './sandbox-spec';
import { Lifecycle, LifecycleState, OperationQueue, SandboxCriState, SandboxFacts, sandboxCriState } from './state';

export const SANDBOX_CHECKPOINT_VERSION = 1;

/** The sandbox checkpoint (checkpoint.json data, version 1). */
export interface SandboxRecord {
  id: string;
  spec: SandboxSpec;
  createdAt: bigint;
  readyAt?: bigint;
  stoppedAt?: bigint;
  stopReason?: string;
  /** Identity of the creating request, for retried creates. */
  fingerprint: string;
}

export interface SandboxTimeouts {
  preparing: number;
  isolating: number;
  destroying: number;
  /** How long an identical retried RunPodSandbox waits for the first one. */
  retryWait: number;
  /** Per sandbox, during recovery. */
  recover: number;
}

export const DEFAULT_TIMEOUTS: SandboxTimeouts = {
  preparing: 10_000,
  isolating: 60_000,
  destroying: 60_000,
  retryWait: 60_000,
  recover: 30_000,
};

/** How the registry names sandboxes, by kubelet's pod key, in errors and contexts. */
export const SANDBOX_KIND: RegistryKind<Sandbox> = {
  key: (sb) => sb.spec.key,
  noun: 'sandbox',
  field: 'pod_sandbox_id',
  contextKey: 'sandboxId',
};

export class Sandbox implements Lifecycle {
  readonly kind = 'sandbox' as const;
  state: LifecycleState = 'NEW';
  readonly facts: SandboxFacts & { stopReason?: string };
  readonly isolatorStates = new Map<string, unknown>();
  /** The in-flight creation, while being made. */
  creation?: Promise<void>;
  /** The creating call went away before it got the id: an identical retry may have it. */
  creatorGone = false;
  /** A stop that failed half-way: the next stop or remove cleans up again. */
  cleanupPending = false;
  /** A stop is under way: no new container may be created in it. */
  stopping = false;
  private readonly queue = new OperationQueue();

  constructor(
    readonly id: string,
    readonly ctx: SandboxContext,
    readonly fingerprint: string,
    facts: SandboxFacts & { stopReason?: string },
  ) {
    this.facts = facts;
  }

  get spec(): SandboxSpec {
    return this.ctx.spec;
  }

  criState(): SandboxCriState {
    return sandboxCriState(this.facts);
  }

  /** Runs `fn` after every earlier operation on this sandbox finished. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.queue.run(fn);
  }

  record(): SandboxRecord {
    return {
      id: this.id,
      spec: this.spec,
      createdAt: this.facts.createdAt,
      readyAt: this.facts.readyAt,
      stoppedAt: this.facts.stoppedAt,
      stopReason: this.facts.stopReason,
      fingerprint: this.fingerprint,
    };
  }
}
