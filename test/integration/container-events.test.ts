// GetContainerEvents through the socket (kubelet's evented PLEG): every
// subscriber sees each container's CREATED, STARTED, STOPPED and DELETED in
// order, with its pod's status and the pod's container statuses of that
// moment; a stream opened later sees only what happens after it.
import * as path from 'path';
import * as grpc from '@grpc/grpc-js';
import {
  ContainerEventResponse,
  ContainerEventType,
  ContainerState,
  GetEventsRequest,
} from '../../src/gen/runtime/v1/api';
import {
  BUSYBOX_IMAGE as IMAGE,
  BusyboxDaemon,
  startBusyboxDaemon,
  stopBusyboxDaemon,
} from '../helpers/busybox-daemon';
import { TestDaemon, call, createContainer, runp } from '../helpers/daemon';

let b: BusyboxDaemon;
let d: TestDaemon;

beforeAll(async () => {
  b = await startBusyboxDaemon();
  d = b.d;
}, 600_000);

afterAll(async () => {
  await stopBusyboxDaemon(b);
}, 120_000);

interface Subscription {
  events: ContainerEventResponse[];
  stream: grpc.ClientReadableStream<ContainerEventResponse>;
  ended: Promise<grpc.StatusObject | Error>;
}

function subscribe(): Subscription {
  const stream = d.runtime.getContainerEvents(GetEventsRequest.fromPartial({}));
  const events: ContainerEventResponse[] = [];
  stream.on('data', (e: ContainerEventResponse) => events.push(e));
  const ended = new Promise<grpc.StatusObject | Error>((resolve) => {
    stream.on('status', resolve);
    stream.on('error', resolve);
  });
  return { events, stream, ended };
}

async function until(what: string, test: () => boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const T = ContainerEventType;

test('CREATED, STARTED, STOPPED and DELETED reach every subscriber, in order, with the pod and container statuses of the moment', async () => {
  const a = subscribe();
  const b = subscribe();
  await new Promise((r) => setTimeout(r, 300)); // both streams open on the server
  const uid = `events-${process.pid}`;
  const podCfg = {
    metadata: { name: 'evpod', uid, namespace: 'evns', attempt: 0 },
    hostname: 'evpod',
    logDirectory: path.join(d.dir, 'logs', uid),
    linux: {},
  };
  const pod = await runp(d, podCfg);
  const cfg = {
    metadata: { name: 'main', attempt: 0 },
    image: { image: IMAGE },
    command: ['sh', '-c', 'exit 3'],
    logPath: 'main.log',
    linux: {},
  };
  const id = await createContainer(d, pod, podCfg, cfg);
  await call(d.runtime, 'startContainer', { containerId: id }, 30_000);
  await until('STOPPED', () => a.events.some((e) => e.containerEventType === T.CONTAINER_STOPPED_EVENT));
  await call(d.runtime, 'removeContainer', { containerId: id }, 30_000);
  await until('DELETED on both', () =>
    [a, b].every((s) => s.events.some((e) => e.containerEventType === T.CONTAINER_DELETED_EVENT)),
  );

  for (const s of [a, b]) {
    const ours = s.events.filter((e) => e.containerId === id);
    expect(ours.map((e) => e.containerEventType)).toEqual([
      T.CONTAINER_CREATED_EVENT,
      T.CONTAINER_STARTED_EVENT,
      T.CONTAINER_STOPPED_EVENT,
      T.CONTAINER_DELETED_EVENT,
    ]);
    const [created, started, stopped, deleted] = ours;
    for (const e of ours) {
      expect(e.podSandboxStatus?.id).toBe(pod);
      expect(e.podSandboxStatus?.metadata?.uid).toBe(uid);
      expect(e.createdAt).toBeGreaterThan(0n);
    }
    expect(created.createdAt <= started.createdAt && started.createdAt <= stopped.createdAt).toBe(true);
    expect(deleted.createdAt >= stopped.createdAt).toBe(true);
    const statusOf = (e: ContainerEventResponse) => e.containersStatuses.find((c) => c.id === id);
    expect(statusOf(created)?.state).toBe(ContainerState.CONTAINER_CREATED);
    expect(statusOf(started)?.state).toBe(ContainerState.CONTAINER_RUNNING);
    expect(statusOf(stopped)?.state).toBe(ContainerState.CONTAINER_EXITED);
    expect(statusOf(stopped)?.exitCode).toBe(3);
    expect(statusOf(deleted)).toBeUndefined();
  }

  // a subscriber from now on sees only what happens from now on
  const late = subscribe();
  await new Promise((r) => setTimeout(r, 300));
  const id2 = await createContainer(d, pod, podCfg, {
    ...cfg,
    metadata: { name: 'second', attempt: 0 },
    logPath: 'second.log',
  });
  await until('the late subscriber sees CREATED', () => late.events.length > 0);
  expect(late.events.map((e) => [e.containerId, e.containerEventType])).toEqual([[id2, T.CONTAINER_CREATED_EVENT]]);

  // removing the pod removes its container: DELETED, then no pod status once it is gone
  await call(d.runtime, 'stopPodSandbox', { podSandboxId: pod }, 30_000);
  await call(d.runtime, 'removePodSandbox', { podSandboxId: pod }, 30_000);
  await until('DELETED of the second', () =>
    late.events.some((e) => e.containerId === id2 && e.containerEventType === T.CONTAINER_DELETED_EVENT),
  );

  // a client that goes away ends only its own stream
  for (const s of [a, b, late]) s.stream.cancel();
  for (const s of [a, b, late]) expect(((await s.ended) as grpc.StatusObject).code).toBe(grpc.status.CANCELLED);
}, 120_000);

test('PodSandboxStatus carries every container of the pod, newest first, and no timestamp', async () => {
  const uid = `evstatus-${process.pid}`;
  const podCfg = {
    metadata: { name: 'evstatus', uid, namespace: 'evns', attempt: 0 },
    hostname: 'evstatus',
    logDirectory: path.join(d.dir, 'logs', uid),
    linux: {},
  };
  const pod = await runp(d, podCfg);
  const cfg = (name: string, command: string[]) => ({
    metadata: { name, attempt: 0 },
    image: { image: IMAGE },
    command,
    logPath: `${name}.log`,
    linux: {},
  });
  const done = await createContainer(d, pod, podCfg, cfg('done', ['true']));
  const idle = await createContainer(d, pod, podCfg, cfg('idle', ['sleep', '3600']));
  await call(d.runtime, 'startContainer', { containerId: done }, 30_000);
  let st = await call(d.runtime, 'podSandboxStatus', { podSandboxId: pod });
  for (
    let i = 0;
    i < 100 &&
    st.containersStatuses.find((c: { id: string }) => c.id === done)?.state !== ContainerState.CONTAINER_EXITED;
    i++
  ) {
    await new Promise((r) => setTimeout(r, 100));
    st = await call(d.runtime, 'podSandboxStatus', { podSandboxId: pod });
  }
  // 0 on purpose (see pod-service.ts): kubelet then asks ContainerStatus for the active sandbox's containers
  expect(BigInt(st.timestamp)).toBe(0n);
  const byId = new Map(st.containersStatuses.map((c: { id: string }) => [c.id, c]));
  // newest first: kubelet takes the first status of a name as the current one
  expect(st.containersStatuses.map((c: { id: string }) => c.id)).toEqual([idle, done]);
  expect(byId.get(done)).toMatchObject({
    state: ContainerState.CONTAINER_EXITED,
    exitCode: 0,
    metadata: { name: 'done' },
  });
  expect(byId.get(idle)).toMatchObject({ state: ContainerState.CONTAINER_CREATED, metadata: { name: 'idle' } });
  // the same statuses ContainerStatus gives, one by one
  for (const id of [done, idle]) {
    expect((await call(d.runtime, 'containerStatus', { containerId: id })).status).toEqual(byId.get(id));
  }
  await call(d.runtime, 'stopPodSandbox', { podSandboxId: pod }, 30_000);
  await call(d.runtime, 'removePodSandbox', { podSandboxId: pod }, 30_000);
}, 120_000);
