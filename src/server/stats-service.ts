// RuntimeService handlers for pod statistics: PodSandboxStats,
// ListPodSandboxStats and StreamPodSandboxStats (kubelet's CRI stats
// provider; `crictl statsp`). A pod's CPU, memory and process count come
// from its cgroup (the containers' cgroups nest in it, so they are
// included), its network counters from its pinned network namespace, and
// each of its containers' stats as ContainerStats reports them.
import type { Container } from '../containerizer';
import type { Containers } from '../containerizer';
import type { Usage } from '../containerizer';
import type { Sandbox } from '../containerizer';
import type { Sandboxes } from '../containerizer';
import { nowNs } from '../containerizer';
import { CpuRates } from '../cri/cpu-rate';
import { matchesFilter } from '../cri/sandbox-mapping';
import { cpuUsageOf, ioUsageOf, memoryUsageOf } from '../cri/stats-mapping';
import { InvalidArgumentError, NotFoundError } from '../errors';
import {
  ContainerStats,
  ListPodSandboxStatsRequest,
  ListPodSandboxStatsResponse,
  NetworkInterfaceUsage,
  NetworkUsage,
  PodSandboxStats,
  PodSandboxStatsFilter,
  PodSandboxStatsRequest,
  PodSandboxStatsResponse,
  StreamPodSandboxStatsRequest,
  StreamPodSandboxStatsResponse,
  type RuntimeServiceServer,
} from '../gen/runtime/v1/api';
import type { CallContext, ServiceHandlers } from './instrument';

export interface StatsServiceDeps {
  sandboxes: Sandboxes;
  containers: Containers;
  /** ContainerStats of one container (the container service's own answer). */
  containerStats(c: Container): Promise<ContainerStats>;
  /** CPU rates, keyed by id: pods here, containers in the container service. */
  cpuRates: CpuRates;
}

/** Pods per StreamPodSandboxStats message. */
const STREAM_CHUNK = 50;
/** CNI's conventional name for the pod's interface. */
const DEFAULT_INTERFACE = 'eth0';

function requireId(id: string): string {
  if (id === '') throw new InvalidArgumentError('pod_sandbox_id', 'is required');
  return id;
}

function networkOf(u: Usage, timestamp: bigint): NetworkUsage | undefined {
  const interfaces = (u.network?.interfaces ?? []).map((i): NetworkInterfaceUsage => ({
    name: i.name,
    rxBytes: { value: i.rxBytes },
    rxErrors: { value: i.rxErrors },
    txBytes: { value: i.txBytes },
    txErrors: { value: i.txErrors },
  }));
  if (interfaces.length === 0) return undefined;
  const def = interfaces.find((i) => i.name === DEFAULT_INTERFACE) ?? interfaces[0];
  return { timestamp, defaultInterface: def, interfaces };
}

export function statsHandlers(deps: StatsServiceDeps): ServiceHandlers<RuntimeServiceServer> {
  const { sandboxes, containers } = deps;

  const statsOf = async (sb: Sandbox, signal: AbortSignal): Promise<PodSandboxStats> => {
    const now = nowNs();
    // A pod that is being torn down while we read has no usage any more: its stats are empty.
    const u: Usage = await sandboxes.usage(sb.id, signal).catch((err: unknown) => {
      if (err instanceof NotFoundError) return {};
      throw err;
    });
    const cpu = u.cgroup && u.cpu ? cpuUsageOf(u.cgroup, now) : undefined;
    if (cpu && u.cpu) {
      const rate = deps.cpuRates.observe(sb.id, u.cpu.usageCoreNanoSeconds, now);
      if (rate !== undefined) cpu.usageNanoCores = { value: rate };
    }
    const own = containers.list().filter((c) => c.record.sandboxId === sb.id);
    const cstats: ContainerStats[] = [];
    for (const c of own) cstats.push(await deps.containerStats(c));
    return PodSandboxStats.fromPartial({
      attributes: {
        id: sb.id,
        metadata: { ...sb.spec.metadata },
        labels: { ...sb.spec.labels },
        annotations: { ...sb.spec.annotations },
      },
      linux: {
        cpu: cpu,
        memory: u.cgroup && u.memory && memoryUsageOf(u.cgroup, now, 'hierarchy'),
        io: u.cgroup && ioUsageOf(u.cgroup, now),
        network: networkOf(u, now),
        process: u.process && { timestamp: now, processCount: { value: BigInt(u.process.count) } },
        containers: cstats,
      },
    });
  };

  // ListPodSandbox's filter without its state.
  const matches = (sb: Sandbox, f: PodSandboxStatsFilter | undefined): boolean =>
    matchesFilter(sb, f && { id: f.id, labelSelector: f.labelSelector, state: undefined });

  const podSandboxStats = async (req: PodSandboxStatsRequest, ctx: CallContext): Promise<PodSandboxStatsResponse> => ({
    stats: await statsOf(sandboxes.get(requireId(req.podSandboxId)), ctx.signal),
  });

  const listPodSandboxStats = async (
    req: ListPodSandboxStatsRequest,
    ctx: CallContext,
  ): Promise<ListPodSandboxStatsResponse> => {
    const out: PodSandboxStats[] = [];
    for (const sb of sandboxes.list().filter((s) => matches(s, req.filter))) out.push(await statsOf(sb, ctx.signal));
    return { stats: out };
  };

  const streamPodSandboxStats = async (
    req: StreamPodSandboxStatsRequest,
    send: (m: StreamPodSandboxStatsResponse) => void,
    ctx: CallContext,
  ): Promise<void> => {
    const all = sandboxes.list().filter((s) => matches(s, req.filter));
    for (let i = 0; i < all.length; i += STREAM_CHUNK) {
      const chunk: PodSandboxStats[] = [];
      for (const sb of all.slice(i, i + STREAM_CHUNK)) chunk.push(await statsOf(sb, ctx.signal));
      send({ podSandboxStats: chunk });
    }
  };

  return {
    podSandboxStats: podSandboxStats,
    listPodSandboxStats: listPodSandboxStats,
    streamPodSandboxStats: streamPodSandboxStats,
  };
}
