// RuntimeService handlers for containers: CreateContainer, StartContainer,
// StopContainer, RemoveContainer, ListContainers (and its streaming twin),
// ContainerStatus, UpdateContainerResources, ReopenContainerLog, ExecSync,
// ContainerStats and ListContainerStats. Status, List and stats are answered
// from memory and the cgroups. Validation and CRI shapes live in
// src/cri/container-mapping.ts.
import { setImmediate } from 'timers/promises';
import type { Checkpointer, Container } from '../../containerizer';
import { Containers } from '../../containerizer';
import { nowNs } from '../../containerizer';
import {
  DaemonFacts,
  checkExecCmd,
  containerRequestFromCri,
  containerVerboseInfo,
  matchesContainerFilter,
  toContainer,
  toContainerStatus,
} from '../container-mapping';
import { CpuRates } from '../cpu-rate';
import { criResources } from '../sandbox-mapping';
import { cpuUsageOf, ioUsageOf, memoryUsageOf } from '../stats-mapping';
import { InvalidArgumentError } from '../../errors';
import {
  Container as CriContainer,
  ContainerStats,
  ContainerStatsRequest,
  CpuUsage,
  ContainerStatsResponse,
  ContainerStatusRequest,
  ContainerStatusResponse,
  CreateContainerRequest,
  CreateContainerResponse,
  ExecSyncRequest,
  ExecSyncResponse,
  LinuxContainerResources,
  ListContainerStatsRequest,
  ListContainerStatsResponse,
  ListContainersRequest,
  ListContainersResponse,
  RemoveContainerRequest,
  RemoveContainerResponse,
  ReopenContainerLogRequest,
  ReopenContainerLogResponse,
  StartContainerRequest,
  StartContainerResponse,
  StopContainerRequest,
  StopContainerResponse,
  StreamContainerStatsRequest,
  StreamContainerStatsResponse,
  StreamContainersRequest,
  StreamContainersResponse,
  UpdateContainerResourcesRequest,
  UpdateContainerResourcesResponse,
  type RuntimeServiceServer,
} from '../../gen/runtime/v1/api';
import { isArchiveImage, restoreContainer } from './checkpoint';
import type { CallContext, ServiceHandlers } from './handler';
import type { LayerUsage } from './layer-usage';

export interface ContainerServiceDeps {
  containers: Containers;
  facts: DaemonFacts;
  /** Where writable layers live (stats' fs id). */
  containerFsDir: string;
  /** CPU rate per container, shared by every stats RPC. */
  cpuRates: CpuRates;
  /** Writable layers' bytes and inodes, cached with a freshness bound (layer-usage.ts). */
  layerUsage: LayerUsage;
  /** Restores containers whose image is a checkpoint archive (checkpoint.ts). */
  checkpointer?: Checkpointer;
}

/** What containers' stats need of the service. */
export type ContainerStatsDeps = Pick<
  ContainerServiceDeps,
  'containers' | 'containerFsDir' | 'cpuRates' | 'layerUsage'
>;

/** Containers per streaming message. */
const STREAM_CHUNK = 100;

/**
 * Marks an answer that is already in its wire bytes: index.ts gives the
 * method a serializer that sends them as they are (listContainersWire).
 */
export const WIRE_BYTES = Symbol('wire bytes');
export type Encoded<T> = T & { [WIRE_BYTES]?: Uint8Array };

/** ListContainers' serializer: the bytes the handler made, else the message encoded. */
export function listContainersWire(v: Encoded<ListContainersResponse>): Buffer {
  const b = v[WIRE_BYTES] ?? ListContainersResponse.encode(v).finish();
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * Each container's Container message as ListContainers sends it, encoded
 * once per state: nothing else in it changes over a container's life. A
 * relist (kubelet's, every second) then copies bytes instead of building
 * and encoding a thousand messages.
 */
const listings = new WeakMap<Container, { state: string; bytes: Uint8Array }>();

function listingOf(c: Container): Uint8Array {
  const state = c.criState();
  const hit = listings.get(c);
  if (hit?.state === state) return hit.bytes;
  const bytes = CriContainer.encode(toContainer(c)).finish();
  listings.set(c, { state, bytes });
  return bytes;
}

/** A ListContainersResponse from its containers' encoded messages: field 1, length-delimited, each. */
export function encodeListing(parts: readonly Uint8Array[]): Buffer {
  let n = 0;
  for (const p of parts) n += 1 + varintSize(p.length) + p.length;
  const out = Buffer.allocUnsafe(n);
  let o = 0;
  for (const p of parts) {
    out[o++] = 0x0a; // field 1, wire type 2
    let l = p.length;
    for (; l >= 0x80; l >>>= 7) out[o++] = (l & 0x7f) | 0x80;
    out[o++] = l;
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function varintSize(v: number): number {
  let n = 1;
  for (; v >= 0x80; v >>>= 7) n++;
  return n;
}
/** Containers whose stats are read between two turns of the event loop (~3 ms of reads). */
const STATS_CHUNK = 32;

/**
 * ContainerStats of one container: CPU (total, rate, pressure), memory
 * (usage, working set, RSS, available under a limit, page faults, pressure)
 * and I/O pressure from its cgroup (zero once it has none), the writable
 * layer's bytes and inodes. Pod stats reuse it.
 */
export async function containerStatsOf(c: Container, deps: ContainerStatsDeps): Promise<ContainerStats> {
  return (await containerStatsOfAll([c], deps))[0];
}

/**
 * ContainerStats of `cs`, in order. A container's cgroup counters are a few
 * synchronous reads of small kernel files (no process count: ContainerStats
 * has none), its writable layer's usage comes from the LayerUsage cache (at
 * most FRESH_MS old while polled), and the backend is asked once per call.
 * The event loop gets a turn every STATS_CHUNK containers, so other calls
 * (kubelet's relist) do not wait behind a thousand containers.
 */
export async function containerStatsOfAll(
  cs: readonly Container[],
  deps: ContainerStatsDeps,
): Promise<ContainerStats[]> {
  const backend = await deps.containers.backend();
  const out: ContainerStats[] = [];
  for (let i = 0; i < cs.length; i += STATS_CHUNK) {
    if (i > 0) await setImmediate();
    const chunk = cs.slice(i, i + STATS_CHUNK);
    out.push(...(await Promise.all(chunk.map((c) => statsOfOne(c, deps, backend.writableDir?.(c.id))))));
  }
  return out;
}

async function statsOfOne(
  c: Container,
  deps: ContainerStatsDeps,
  writableDir: string | undefined,
): Promise<ContainerStats> {
  const now = nowNs();
  const r = c.record;
  const s = await deps.containers.stats(c, 'usage').catch(() => undefined);
  const disk = writableDir ? await deps.layerUsage.get(r.id, writableDir) : undefined;
  const cpu: CpuUsage = s
    ? cpuUsageOf(s, now, deps.cpuRates, r.id)
    : { timestamp: now, usageCoreNanoSeconds: { value: 0n }, usageNanoCores: undefined, psi: undefined };
  return ContainerStats.fromPartial({
    attributes: { id: r.id, metadata: { ...r.metadata }, labels: { ...r.labels }, annotations: { ...r.annotations } },
    cpu,
    memory: s
      ? memoryUsageOf(s, now, 'container')
      : { timestamp: now, workingSetBytes: { value: 0n }, usageBytes: { value: 0n } },
    io: s ? ioUsageOf(s, now) : undefined,
    writableLayer: {
      timestamp: now,
      fsId: { mountpoint: deps.containerFsDir },
      usedBytes: { value: BigInt(disk?.bytes ?? 0) },
      inodesUsed: { value: BigInt(disk?.inodes ?? 0) },
    },
  });
}

function requireId(id: string): string {
  if (id === '') throw new InvalidArgumentError('container_id', 'is required');
  return id;
}

/** A CRI timeout in seconds (int64) as a number; negative means 0. */
function seconds(v: bigint, field: string): number {
  if (v <= 0n) return 0;
  if (v > 10n ** 9n) throw new InvalidArgumentError(field, `${v} seconds is out of range`);
  return Number(v);
}

export function containerHandlers(deps: ContainerServiceDeps): ServiceHandlers<RuntimeServiceServer> {
  const { containers, facts } = deps;

  const createContainer = async (req: CreateContainerRequest, ctx: CallContext): Promise<CreateContainerResponse> => {
    const image = req.config?.image?.image ?? '';
    const restore =
      deps.checkpointer && isArchiveImage(image)
        ? await restoreContainer(deps.checkpointer, req, ctx.signal)
        : undefined;
    try {
      const request = containerRequestFromCri(restore?.request ?? req, facts);
      return { containerId: await containers.create(request, ctx.signal) };
    } finally {
      await restore?.release();
    }
  };

  const startContainer = async (req: StartContainerRequest, ctx: CallContext): Promise<StartContainerResponse> => {
    await containers.start(requireId(req.containerId), ctx.signal);
    return {};
  };

  const stopContainer = async (req: StopContainerRequest, ctx: CallContext): Promise<StopContainerResponse> => {
    await containers.stop(requireId(req.containerId), seconds(req.timeout, 'timeout'), ctx.signal);
    return {};
  };

  const removeContainer = async (req: RemoveContainerRequest, ctx: CallContext): Promise<RemoveContainerResponse> => {
    await containers.remove(requireId(req.containerId), ctx.signal);
    return {};
  };

  const matching = (f: ListContainersRequest['filter']): Container[] =>
    containers.list().filter((c) => matchesContainerFilter(c, f));

  // Answered in wire bytes (listingOf): `containers` stays empty, the bytes hold them.
  const listContainers = async (req: ListContainersRequest): Promise<Encoded<ListContainersResponse>> => ({
    containers: [],
    [WIRE_BYTES]: encodeListing(matching(req.filter).map(listingOf)),
  });

  const streamContainers = async (
    req: StreamContainersRequest,
    send: (m: StreamContainersResponse) => void,
  ): Promise<void> => {
    const all = matching(req.filter).map(toContainer);
    for (let i = 0; i < all.length; i += STREAM_CHUNK) send({ containers: all.slice(i, i + STREAM_CHUNK) });
  };

  const containerStatus = async (req: ContainerStatusRequest): Promise<ContainerStatusResponse> => {
    const c = containers.get(requireId(req.containerId));
    let info: Record<string, string> = {};
    if (req.verbose) {
      const spec = await containers.specOf(c).catch(() => undefined);
      info = containerVerboseInfo(c, spec);
    }
    return { status: toContainerStatus(c), info };
  };

  const updateContainerResources = async (
    req: UpdateContainerResourcesRequest,
    ctx: CallContext,
  ): Promise<UpdateContainerResourcesResponse> => {
    const id = requireId(req.containerId);
    const resources = criResources(req.linux, 'linux', facts.cgroupVersion) ?? {};
    await containers.update(
      id,
      resources,
      req.linux ? LinuxContainerResources.toJSON(req.linux) : undefined,
      ctx.signal,
    );
    return {};
  };

  const reopenContainerLog = async (
    req: ReopenContainerLogRequest,
    ctx: CallContext,
  ): Promise<ReopenContainerLogResponse> => {
    await containers.reopenLog(requireId(req.containerId), ctx.signal);
    return {};
  };

  const execSync = async (req: ExecSyncRequest, ctx: CallContext): Promise<ExecSyncResponse> => {
    const id = requireId(req.containerId);
    checkExecCmd(req.cmd);
    const r = await containers.execSync(id, req.cmd, seconds(req.timeout, 'timeout'), ctx.signal);
    return { stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode };
  };

  const containerStats = async (req: ContainerStatsRequest): Promise<ContainerStatsResponse> => ({
    stats: await containerStatsOf(containers.get(requireId(req.containerId)), deps),
  });

  const listContainerStats = async (req: ListContainerStatsRequest): Promise<ListContainerStatsResponse> => {
    const all = containers.list();
    const stats = await containerStatsOfAll(
      all.filter((x) => matchesContainerFilter(x, req.filter)),
      deps,
    );
    // Removed containers' cached layer usage goes (kubelet lists them all every few seconds).
    deps.layerUsage.retain(new Set(all.map((c) => c.id)));
    return { stats };
  };

  const streamContainerStats = async (
    req: StreamContainerStatsRequest,
    send: (m: StreamContainerStatsResponse) => void,
  ): Promise<void> => {
    const all = containers.list().filter((x) => matchesContainerFilter(x, req.filter));
    for (let i = 0; i < all.length; i += STREAM_CHUNK) {
      send({ containerStats: await containerStatsOfAll(all.slice(i, i + STREAM_CHUNK), deps) });
    }
  };

  return {
    createContainer: createContainer,
    startContainer: startContainer,
    stopContainer: stopContainer,
    removeContainer: removeContainer,
    listContainers: listContainers,
    streamContainers: streamContainers,
    containerStatus: containerStatus,
    updateContainerResources: updateContainerResources,
    reopenContainerLog: reopenContainerLog,
    execSync: execSync,
    containerStats: containerStats,
    listContainerStats: listContainerStats,
    streamContainerStats: streamContainerStats,
  };
}
