// Container lifecycle events (CRI GetContainerEvents, kubelet's evented
// PLEG): the containerizer publishes each container's created / started /
// stopped / deleted moment, in order, to whoever subscribed at that moment.
// Publishing is synchronous, so a subscriber sees the containerizer exactly
// as it is when the event happens (the statuses kubelet gets with an event
// must be those of that moment, not of when the event is sent). What a
// subscriber does with a slow reader is its own business: it must not block.

export type ContainerEventKind = 'created' | 'started' | 'stopped' | 'deleted';

export interface ContainerEvent {
  readonly kind: ContainerEventKind;
  readonly containerId: string;
  readonly sandboxId: string;
  /** When it happened, ns since the epoch. */
  readonly at: bigint;
}

export type ContainerEventListener = (e: ContainerEvent) => void;

export class ContainerEvents {
  private readonly listeners = new Set<ContainerEventListener>();

  /** Adds a listener; returns the function that removes it. */
  subscribe(fn: ContainerEventListener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  get subscribers(): number {
    return this.listeners.size;
  }

  publish(e: ContainerEvent): void {
    for (const fn of [...this.listeners]) fn(e);
  }
}
