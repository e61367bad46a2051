// RuntimeService handlers for CRI metrics: ListMetricDescriptors,
// ListPodSandboxMetrics and StreamPodSandboxMetrics (kubelet's
// /metrics/cadvisor under the PodAndContainerStatsFromCRI feature gate).
// Every ready pod gives its own series (its cgroup, which the containers'
// cgroups nest in, and its network namespace's interfaces) and one set per
// running container (its cgroup and its writable layer). Nothing is cached
// or polled: each call reads the kernel now (timestamps 0, last_seen the
// read's time), through the same readers as PodSandboxStats and
// ContainerStats. The names, labels and units are
// src/cri/metrics-descriptors.ts.
import { promises as fs } from 'fs';
import * as path from 'path';
import type { Container, Containers } from '../../containerizer';
import type { Usage } from '../../containerizer';
import type { CgroupStats } from '../../containerizer';
import type { Sandbox, Sandboxes } from '../../containerizer';
import { FsSample, MetricsInput, Subject, metricDescriptors, metricsOf } from '../metrics-descriptors';
import { NotFoundError, asCapsaError } from '../../errors';
import type {
  ContainerMetrics,
  ContainerStats,
  ListMetricDescriptorsResponse,
  ListPodSandboxMetricsResponse,
  PodSandboxMetrics,
  StreamPodSandboxMetricsResponse,
  RuntimeServiceServer,
} from '../../gen/runtime/v1/api';
import type { Logger } from '../../log';
import { canonical, readMountInfo } from '../../provisioner/backends/mounts';
import { raceAbort, withTimeout } from '../../util/timeout';
import type { CallContext, ServiceHandlers } from './handler';

export interface MetricsServiceDeps {
  sandboxes: Sandboxes;
  containers: Containers;
  /** ContainerStats of one container (the container service's own answer): its writable layer's usage. */
  containerStats(c: Container): Promise<ContainerStats>;
  /** Where writable layers live (the filesystem the fs series describe). */
  containerFsDir: string;
}

/** Pods per StreamPodSandboxMetrics message (a pod with a few containers is ~10 KiB of samples). */
const STREAM_CHUNK = 50;

/**
 * Longest wait for one container's reads (its cgroup files, and the walk of
 * its writable layer, which grows with the files in it); past it the
 * container's series are left out of this answer.
 */
const CONTAINER_TIMEOUT_MS = 10_000;

/** The filesystem under `dir`: its mount source (cAdvisor's device label), size and inodes. */
async function filesystemOf(dir: string): Promise<Omit<FsSample, 'usedBytes'>> {
  const real = await canonical(dir);
  // The longest mount point that contains `dir` (later entries win a tie: they are mounted over earlier ones).
  let device = '';
  let best = -1;
  for (const m of await readMountInfo()) {
    const p = m.mountPoint;
    const inside = real === p || real.startsWith(p.endsWith('/') ? p : `${p}/`);
    if (inside && p.length >= best) {
      best = p.length;
      device = m.source;
    }
  }
  const st = await fs.statfs(real, { bigint: true });
  return { device, capacityBytes: st.blocks * st.bsize, inodesTotal: st.files, inodesFree: st.ffree };
}

type DeviceNamer = (cg: CgroupStats | undefined) => Promise<ReadonlyMap<string, string>>;

/**
 * Names the block devices a cgroup's I/O counters mention, as cAdvisor does:
 * /dev/<kernel name>, from sysfs's major:minor links. One per call: a
 * major:minor is looked up once, and a number freed and reused (loop
 * devices) is not remembered across scrapes.
 */
function deviceNamer(): DeviceNamer {
  const names = new Map<string, string>();
  const tried = new Set<string>();
  return async (cg) => {
    for (const e of [...(cg?.blkio?.serviceBytes ?? []), ...(cg?.blkio?.serviced ?? [])]) {
      const k = `${e.major}:${e.minor}`;
      if (tried.has(k)) continue;
      tried.add(k);
      try {
        names.set(k, `/dev/${path.basename(await fs.readlink(`/sys/dev/block/${k}`))}`);
      } catch {
        // Gone from sysfs (a detached device whose counters remain): the builder labels it by number.
      }
    }
    return names;
  };
}

/** Now, unix ns: when the cgroup was read (container_last_seen). */
function now(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

export function metricsHandlers(deps: MetricsServiceDeps): ServiceHandlers<RuntimeServiceServer> {
  const { sandboxes, containers } = deps;

  const podSubject = (sb: Sandbox): Subject => ({
    container: '',
    id: sb.ctx.cgroup?.path ?? '',
    image: '',
    name: '',
    namespace: sb.spec.metadata.namespace,
    pod: sb.spec.metadata.name,
  });

  const containerSubject = (sb: Sandbox, c: Container): Subject => {
    const r = c.record;
    return {
      container: r.metadata.name,
      id: r.cgroupPath,
      // The image as the pod spec names it (kubelet sends the resolved id as image.image).
      image: r.image.userSpecified !== '' ? r.image.userSpecified : r.image.requested,
      // cAdvisor's name for a CRI container is its id.
      name: c.id,
      namespace: sb.spec.metadata.namespace,
      pod: sb.spec.metadata.name,
    };
  };

  /** One running container's series; undefined once it has no cgroup (it exited meanwhile). */
  const containerMetrics = async (
    sb: Sandbox,
    c: Container,
    filesystem: Omit<FsSample, 'usedBytes'> | undefined,
    devices: DeviceNamer,
  ): Promise<ContainerMetrics | undefined> => {
    const cgroup = await containers.stats(c);
    if (!cgroup) return undefined;
    const seenAt = now();
    const layer = (await deps.containerStats(c)).writableLayer;
    const input: MetricsInput = { cgroup, startedAt: c.record.startedAt, seenAt, devices: await devices(cgroup) };
    if (filesystem && layer?.usedBytes) input.fs = { ...filesystem, usedBytes: layer.usedBytes.value };
    return { containerId: c.id, metrics: metricsOf(containerSubject(sb, c), input) };
  };

  /** A ready pod's own series and its running containers'; undefined when it went away while we read. */
  const podMetrics = async (
    sb: Sandbox,
    filesystem: Omit<FsSample, 'usedBytes'> | undefined,
    devices: DeviceNamer,
    ctx: CallContext,
  ): Promise<PodSandboxMetrics | undefined> => {
    let u: Usage;
    try {
      u = await sandboxes.usage(sb.id, ctx.signal);
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
    const seenAt = now();
    const own = containers.list().filter((c) => c.record.sandboxId === sb.id && c.criState() === 'CONTAINER_RUNNING');
    const cms: ContainerMetrics[] = [];
    for (const c of own) {
      // One container that cannot be read costs its series, not the pod's.
      const m = await withTimeout(
        'container metrics',
        CONTAINER_TIMEOUT_MS,
        () => containerMetrics(sb, c, filesystem, devices),
        { containerId: c.id },
        ctx.signal,
      ).catch((err: unknown) => {
        warn(ctx.log, err, { podSandboxId: sb.id, containerId: c.id });
        return undefined;
      });
      if (m) cms.push(m);
    }
    return {
      podSandboxId: sb.id,
      metrics: metricsOf(podSubject(sb), {
        cgroup: u.cgroup,
        interfaces: u.network?.interfaces,
        startedAt: sb.facts.createdAt,
        seenAt,
        devices: await devices(u.cgroup),
      }),
      containerMetrics: cms,
    };
  };

  /** Every ready pod's metrics, handed to `emit` in chunks of `chunk` pods. */
  const collect = async (
    ctx: CallContext,
    chunk: number,
    emit: (pods: PodSandboxMetrics[]) => Promise<void>,
  ): Promise<void> => {
    const ready = sandboxes.list().filter((sb) => sb.criState() === 'SANDBOX_READY');
    // Once per call: the rootfs filesystem's device and size (a missing dir gives no fs series).
    const filesystem = await filesystemOf(deps.containerFsDir).catch((err: unknown) => {
      warn(ctx.log, err, { path: deps.containerFsDir });
      return undefined;
    });
    const devices = deviceNamer();
    let batch: PodSandboxMetrics[] = [];
    for (const sb of ready) {
      ctx.signal.throwIfAborted();
      // A pod that cannot be read is left out (and logged): kubelet still gets every other pod.
      const m = await podMetrics(sb, filesystem, devices, ctx).catch((err: unknown) => {
        warn(ctx.log, err, { podSandboxId: sb.id });
        return undefined;
      });
      if (m) batch.push(m);
      if (batch.length >= chunk) {
        await emit(batch);
        batch = [];
      }
    }
    if (batch.length > 0) await emit(batch);
  };

  const listMetricDescriptors = async (): Promise<ListMetricDescriptorsResponse> => ({
    descriptors: metricDescriptors(),
  });

  const listPodSandboxMetrics = async (_req: unknown, ctx: CallContext): Promise<ListPodSandboxMetricsResponse> => {
    const podMetrics: PodSandboxMetrics[] = [];
    await collect(ctx, Infinity, async (pods) => void podMetrics.push(...pods));
    return { podMetrics };
  };

  const streamPodSandboxMetrics = async (
    _req: unknown,
    send: (m: StreamPodSandboxMetricsResponse) => boolean,
    ctx: CallContext,
  ): Promise<void> => {
    await collect(ctx, STREAM_CHUNK, async (pods) => {
      // A slow reader holds us here rather than letting chunks pile up in memory; one that left ends the call.
      if (!send({ podSandboxMetrics: pods }) && ctx.drained) await raceAbort(ctx.drained(), ctx.signal);
    });
  };

  return {
    listMetricDescriptors: listMetricDescriptors,
    listPodSandboxMetrics: listPodSandboxMetrics,
    streamPodSandboxMetrics: streamPodSandboxMetrics,
  };
}

function warn(log: Logger, err: unknown, context: Record<string, string>): void {
  const e = asCapsaError(err, context);
  log.warn({ ...context, err: e.message }, 'CRI metrics: left out what could not be read');
}
