// GetContainerEvents: a stream of every container's created / started /
// stopped / deleted event, from the moment the client subscribes, in order
// (kubelet's evented PLEG). Each event is turned into its CRI message once,
// when it happens, and fanned out to every open stream. A stream whose
// reader falls behind buffers up to MAX_BACKLOG messages beyond what the
// transport holds; past that it ends with RESOURCE_EXHAUSTED, so the client
// knows it missed events (kubelet then relists) and the daemon never waits
// on it nor grows without bound.
import type { Containers } from '../../containerizer';
import type { ContainerEvent } from '../../containerizer';
import type { Sandboxes } from '../../containerizer';
import { toContainerEventResponse } from '../container-events';
import { CapsaError } from '../../errors';
import type { ContainerEventResponse, GetEventsRequest, RuntimeServiceServer } from '../../gen/runtime/v1/api';
import type { CallContext, ServiceHandlers } from './handler';

export const MAX_BACKLOG = 1000;

export interface EventsServiceDeps {
  sandboxes: Sandboxes;
  containers: Containers;
  maxBacklog?: number;
}

type Subscriber = (msg: ContainerEventResponse) => void;

export function eventHandlers(
  deps: EventsServiceDeps,
): Required<Pick<ServiceHandlers<RuntimeServiceServer>, 'getContainerEvents'>> {
  const maxBacklog = deps.maxBacklog ?? MAX_BACKLOG;
  const subscribers = new Set<Subscriber>();
  let unsubscribe: (() => void) | undefined;

  const onEvent = (e: ContainerEvent): void => {
    const podContainers = deps.containers.list().filter((c) => c.record.sandboxId === e.sandboxId);
    const msg = toContainerEventResponse(e, deps.sandboxes.find(e.sandboxId), podContainers);
    for (const s of [...subscribers]) s(msg);
  };

  const getContainerEvents = async (
    _req: GetEventsRequest,
    send: (m: ContainerEventResponse) => boolean,
    ctx: CallContext,
  ): Promise<void> => {
    const backlog: ContainerEventResponse[] = [];
    let blocked = false;
    let fail: ((e: Error) => void) | undefined;
    const ended = new Promise<void>((resolve, reject) => {
      fail = reject;
      if (ctx.signal.aborted) resolve();
      ctx.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    const flush = (): void => {
      while (!blocked && backlog.length > 0) blocked = !send(backlog.shift()!);
      if (blocked) void ctx.drained?.().then(() => ((blocked = false), flush()));
    };
    const subscriber: Subscriber = (msg) => {
      if (backlog.length >= maxBacklog) {
        subscribers.delete(subscriber);
        fail?.(
          new CapsaError(
            'ResourceExhausted',
            `GetContainerEvents: the client fell ${maxBacklog} events behind; events are lost from here, relist`,
          ),
        );
        return;
      }
      backlog.push(msg);
      if (!blocked) flush();
    };
    subscribers.add(subscriber);
    if (!unsubscribe) unsubscribe = deps.containers.events.subscribe(onEvent);
    try {
      await ended;
    } finally {
      subscribers.delete(subscriber);
      if (subscribers.size === 0) {
        unsubscribe?.();
        unsubscribe = undefined;
      }
    }
  };

  return { getContainerEvents: getContainerEvents };
}
