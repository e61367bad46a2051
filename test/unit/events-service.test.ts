// The GetContainerEvents fan-out: a reader that keeps up gets every event in
// order; one whose transport stays full past the backlog bound is ended with
// RESOURCE_EXHAUSTED (and never holds the publisher up), the others go on.
import type { Containers } from '../../src/containerizer/containers';
import { ContainerEvents } from '../../src/containerizer/events';
import type { Sandboxes } from '../../src/containerizer/sandboxes';
import type { ContainerEventResponse } from '../../src/gen/runtime/v1/api';
import { eventHandlers } from '../../src/cri/services/events';
import type { CallContext } from '../../src/cri/services/handler';
import { createLogger } from '../../src/log';

function setup(maxBacklog: number) {
  const events = new ContainerEvents();
  const containers = { events, list: () => [] } as unknown as Containers;
  const sandboxes = { find: () => undefined } as unknown as Sandboxes;
  const h = eventHandlers({ containers, sandboxes, maxBacklog }).getContainerEvents;
  const open = (writable: () => boolean) => {
    const got: ContainerEventResponse[] = [];
    const ac = new AbortController();
    let drain: (() => void) | undefined;
    const ctx: CallContext = {
      signal: ac.signal,
      log: createLogger('fatal'),
      method: 'GetContainerEvents',
      drained: () => new Promise<void>((r) => (drain = r)),
    };
    const done = h({}, (m) => (got.push(m as ContainerEventResponse), writable()), ctx);
    return { got, done, cancel: () => ac.abort(), drain: () => drain?.() };
  };
  const publish = (n: number) => {
    for (let i = 0; i < n; i++)
      events.publish({ kind: 'created', containerId: `c${i}`, sandboxId: 's', at: BigInt(i + 1) });
  };
  return { events, open, publish };
}

test('a reader that keeps up gets every event in order; cancelling ends its stream and unsubscribes', async () => {
  const s = setup(10);
  const r = s.open(() => true);
  s.publish(100);
  expect(r.got.map((m) => m.containerId)).toEqual(Array.from({ length: 100 }, (_, i) => `c${i}`));
  r.cancel();
  await expect(r.done).resolves.toBeUndefined();
  expect(s.events.subscribers).toBe(0);
});

test('a full transport buffers up to the bound, flushes on drain, and past it the stream ends RESOURCE_EXHAUSTED', async () => {
  const s = setup(5);
  let room = true;
  const slow = s.open(() => room);
  const fast = s.open(() => true);
  room = false;
  s.publish(1); // handed to the transport, which is now full
  s.publish(3); // buffered
  expect(slow.got).toHaveLength(1);
  room = true;
  slow.drain();
  await new Promise((r) => setImmediate(r));
  expect(slow.got.map((m) => m.containerId)).toEqual(['c0', 'c0', 'c1', 'c2']);
  room = false;
  s.publish(1);
  s.publish(6); // five buffered, the sixth overflows
  await expect(slow.done).rejects.toMatchObject({ kind: 'ResourceExhausted' });
  expect(fast.got).toHaveLength(11);
  expect(s.events.subscribers).toBe(1);
  fast.cancel();
  await fast.done;
  expect(s.events.subscribers).toBe(0);
});
