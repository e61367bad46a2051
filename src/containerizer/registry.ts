// The objects of one kind in memory (sandboxes, containers): by id and by
// name, what kubelet may see of them, and the id-or-unique-prefix lookup the
// CRI allows. One copy for both kinds.
import { AlreadyExistsError, InvalidArgumentError, NotFoundError } from '../errors';
import type { Logger } from '../log';
import { raceAbort } from '../util/timeout';
import { Lifecycle, awaitFirstCreate, isCreating } from './state';

/** An object a create call makes on its own lock, so that it may outlive its caller. */
export interface Creatable extends Lifecycle {
  /** The in-flight creation, while being made. */
  creation?: Promise<void>;
  /** The creating call went away before it got the id: an identical retry may have it. */
  creatorGone: boolean;
  exclusive<R>(fn: () => Promise<R>): Promise<R>;
}

/** A create for a name that is in use (see Registry.retried). */
export interface RetriedCreate<T> {
  existing: T;
  key: string;
  /** The request is the one that made `existing` (same fingerprint). */
  sameRequest: boolean;
  /** `existing` was made and answered, but the answer may never have reached kubelet. */
  madeUnclaimed: boolean;
  /** The RPC, for messages: "RunPodSandbox", "CreateContainer". */
  rpc: string;
  /** How long to wait for a first create still under way. */
  timeoutMs: number;
  signal: AbortSignal;
  /** Makes it afresh (the first attempt failed and freed the name). */
  redo: () => Promise<string>;
  log: Logger;
}

export interface RegistryKind<T> {
  /** The unique name of a live object (kubelet's <name>_<namespace>_…_<attempt>). */
  key(o: T): string;
  /** For messages: "sandbox", "container". */
  noun: string;
  /** The request field an id comes in: "pod_sandbox_id", "container_id". */
  field: string;
  /** The error context key of an id. */
  contextKey: 'sandboxId' | 'containerId';
}

export class Registry<T extends Lifecycle> {
  private readonly byId = new Map<string, T>();
  private readonly byKey = new Map<string, T>();

  constructor(private readonly kind: RegistryKind<T>) {}

  /** A new object: its id and its name are its from now on. */
  add(o: T): void {
    this.byId.set(o.id, o);
    this.byKey.set(this.kind.key(o), o);
  }

  /**
   * A recovered object. Two checkpoints with one name (should not happen):
   * `newer` decides which keeps it.
   */
  adopt(o: T, newer: (a: T, b: T) => boolean): void {
    this.byId.set(o.id, o);
    const other = this.byKey.get(this.kind.key(o));
    if (!other || newer(o, other)) this.byKey.set(this.kind.key(o), o);
  }

  /** Drops the object and frees its name (only if they are still its). */
  forget(o: T): void {
    if (this.byId.get(o.id) === o) this.byId.delete(o.id);
    const key = this.kind.key(o);
    if (this.byKey.get(key) === o) this.byKey.delete(key);
  }

  /** The object holding `key`, being made or not. */
  named(key: string): T | undefined {
    return this.byKey.get(key);
  }

  /** Whether `o` is still the one registered under its id. */
  holds(o: T): boolean {
    return this.byId.get(o.id) === o;
  }

  /** Every object, including those being made. */
  all(): T[] {
    return [...this.byId.values()];
  }

  ids(): string[] {
    return [...this.byId.keys()];
  }

  /** What kubelet may see: fully made objects, not removed. */
  list(): T[] {
    return this.all().filter((o) => !isCreating(o.state) && o.state !== 'REMOVED');
  }

  /** A full id or a unique prefix; undefined when nothing matches. */
  find(idOrPrefix: string): T | undefined {
    const { field, noun } = this.kind;
    if (idOrPrefix === '') throw new InvalidArgumentError(field, 'must not be empty');
    const exact = this.byId.get(idOrPrefix);
    if (exact) return isCreating(exact.state) || exact.state === 'REMOVED' ? undefined : exact;
    if (!/^[0-9a-f]{1,63}$/.test(idOrPrefix)) return undefined;
    const matches = this.list().filter((o) => o.id.startsWith(idOrPrefix));
    if (matches.length > 1) {
      throw new InvalidArgumentError(field, `prefix "${idOrPrefix}" matches ${matches.length} ${noun}s`);
    }
    return matches[0];
  }

  /** find(), or NotFound naming the id. */
  get(idOrPrefix: string): T {
    const o = this.find(idOrPrefix);
    if (!o) {
      throw new NotFoundError(`${this.kind.noun} ${idOrPrefix} not found`, { [this.kind.contextKey]: idOrPrefix });
    }
    return o;
  }

  /**
   * Registers `o` and makes it (`make`) on its own lock, independently of
   * the calling RPC: a caller that goes away (kubelet's timeout) leaves the
   * creation running, and an identical retry gets the result (retried).
   */
  async createDetached(
    o: T & Creatable,
    make: () => Promise<void>,
    signal: AbortSignal,
    log: Logger,
    rpc: string,
  ): Promise<string> {
    this.add(o);
    const creation = o.exclusive(make);
    o.creation = creation;
    // Nobody may be left waiting for it (the caller can go away): never unhandled.
    creation.catch(() => undefined);
    try {
      await raceAbort(creation, signal);
    } catch (err) {
      if (signal.aborted && this.holds(o)) {
        o.creatorGone = true;
        log.info(
          { [this.kind.contextKey]: o.id, key: this.kind.key(o) },
          `${rpc} caller went away; creation continues for a retry`,
        );
      }
      throw err;
    }
    return o.id;
  }

  /**
   * A create for a name in use: the same request waits for (or gets) what
   * the first one made; a different one is AlreadyExists.
   */
  async retried(r: RetriedCreate<T & Creatable>): Promise<string> {
    const { existing, key, rpc } = r;
    const { noun, contextKey } = this.kind;
    const ctx = { [contextKey]: existing.id };
    const inUse = (): AlreadyExistsError =>
      new AlreadyExistsError(`${noun} name "${key}" is already in use by ${existing.id}`, ctx);
    if (!r.sameRequest) throw inUse();
    if (isCreating(existing.state) && existing.creation) {
      const first = await awaitFirstCreate({
        obj: existing,
        what: `${noun} "${key}"`,
        rpc,
        timeoutMs: r.timeoutMs,
        ctx,
        signal: r.signal,
        nameFreed: () => this.named(key) === undefined,
      });
      if (first === 'redo') return r.redo();
      existing.creatorGone = false;
      return existing.id;
    }
    if (r.madeUnclaimed) {
      existing.creatorGone = false;
      r.log.info(ctx, `identical ${rpc} retry gets the ${noun} its first call made`);
      return existing.id;
    }
    throw inUse();
  }
}

/**
 * The queries a manager answers from its registry, from memory only
 * (Sandboxes extends it; Containers answers the same three).
 */
export abstract class RegistryQueries<T extends Lifecycle> {
  abstract readonly registry: Registry<T>;

  /** What kubelet may see: fully made objects, not removed. */
  list(): T[] {
    return this.registry.list();
  }

  /** A full id or a unique prefix; undefined when nothing matches. */
  find(idOrPrefix: string): T | undefined {
    return this.registry.find(idOrPrefix);
  }

  /** A full id or a unique prefix; NotFound naming the request's field otherwise. */
  get(idOrPrefix: string): T {
    return this.registry.get(idOrPrefix);
  }
}
