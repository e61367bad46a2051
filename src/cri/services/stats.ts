// RuntimeService handlers for pod statistics: PodSandboxStats,
// ListPodSandboxStats and StreamPodSandboxStats (kubelet's CRI stats
// provider; `crictl statsp`). A pod's CPU, memory and process count come
// from its cgroup (the containers' cgroups nest in it, so they are
// included), its network counters from its pinned network namespace, and
// each of its containers' stats as ContainerStats reports them.
import { setImmediate } from 'timers/promises';
import type { Container } from '../../containerizer';
import type { Containers } from '../../containerizer';
import type { Usage } from '../../containerizer';
import type { Sandbox } from '../../containerizer';
import type { Sandboxes } from '../../containerizer';
import { nowNs } from '../../containerizer';
import { CpuRates } from '../cpu-rate';
import { matchesFilter } from '../sandbox-mapping';
import { cpuUsageOf, ioUsageOf, memoryUsageOf } from '../stats-mapping';
import { InvalidArgumentError, NotFoundError } from '../../errors';
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
} from '../../gen/runtime/v1/api';
import type { CallContext, ServiceHandlers } from './handler';

export interface StatsServiceDeps {
  sandboxes: Sandboxes;
  containers: Containers;
  /** ContainerStats of containers, in order (the container service's own answer). */
  containerStats(cs: readonly Container[]): Promise<ContainerStats[]>;
  /** CPU rates, keyed by id: pods here, containers in the container service. */
  cpuRates: CpuRates;
}

/** Pods per StreamPodSandboxStats message. */
const STREAM_CHUNK = 50;
/**
 * Pods read at once (their cgroups are read synchronously; their containers'
 * layer usage may be walked), with a turn of the event loop between batches
 * so that a relist arriving meanwhile waits for one batch, not the whole list.
 */
const POD_BATCH = 8;
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

  /** A pod's stats; `own`: its containers. */
  const statsOf = async (sb: Sandbox, own: readonly Container[], signal: AbortSignal): Promise<PodSandboxStats> => {
    const now = nowNs();
    // A pod that is being torn down while we read has no usage any more: its stats are empty.
    // 'summary': its cgroup's usage files and process count, not every counter (CRI metrics).
    const u: Usage = await sandboxes.usage(sb.id, signal, 'summary').catch((err: unknown) => {
      if (err instanceof NotFoundError) return {};
      throw err;
    });
    const cpu = u.cgroup && u.cpu ? cpuUsageOf(u.cgroup, now, deps.cpuRates, sb.id) : undefined;
    const cstats = await deps.containerStats(own);
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

  /** Stats of `pods`, in order, POD_BATCH at a time; their containers found in one pass. */
  const statsOfAll = async (pods: readonly Sandbox[], signal: AbortSignal): Promise<PodSandboxStats[]> => {
    const byPod = new Map<string, Container[]>(pods.map((sb) => [sb.id, []]));
    for (const c of containers.list()) byPod.get(c.record.sandboxId)?.push(c);
    const out: PodSandboxStats[] = [];
    for (let i = 0; i < pods.length; i += POD_BATCH) {
      if (i > 0) await setImmediate();
      const chunk = pods.slice(i, i + POD_BATCH);
      out.push(...(await Promise.all(chunk.map((sb) => statsOf(sb, byPod.get(sb.id) ?? [], signal)))));
    }
    return out;
  };

  const podSandboxStats = async (req: PodSandboxStatsRequest, ctx: CallContext): Promise<PodSandboxStatsResponse> => ({
    stats: (await statsOfAll([sandboxes.get(requireId(req.podSandboxId))], ctx.signal))[0],
  });

  const listPodSandboxStats = async (
    req: ListPodSandboxStatsRequest,
    ctx: CallContext,
  ): Promise<ListPodSandboxStatsResponse> => ({
    stats: await statsOfAll(
      sandboxes.list().filter((s) => matches(s, req.filter)),
      ctx.signal,
    ),
  });

  const streamPodSandboxStats = async (
    req: StreamPodSandboxStatsRequest,
    send: (m: StreamPodSandboxStatsResponse) => void,
    ctx: CallContext,
  ): Promise<void> => {
    const all = sandboxes.list().filter((s) => matches(s, req.filter));
    for (let i = 0; i < all.length; i += STREAM_CHUNK) {
      send({ podSandboxStats: await statsOfAll(all.slice(i, i + STREAM_CHUNK), ctx.signal) });
    }
  };

  return {
    podSandboxStats: podSandboxStats,
    listPodSandboxStats: listPodSandboxStats,
    streamPodSandboxStats: streamPodSandboxStats,
  };
}
