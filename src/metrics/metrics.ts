// What the Prometheus endpoint exports. Three kinds of series:
//   - capsa_cri_* : one counter and one histogram fed by the RPC
//     instrumentation (the same place that logs every call);
//   - capsa_pod_sandboxes / capsa_containers : counts by CRI state, read
//     from memory at scrape time;
//   - container_* : per-container CPU and memory read from the container's
//     cgroup at scrape time, under cAdvisor's names and labels (container,
//     pod, namespace, id) so existing dashboards and alerts work unchanged;
//   - capsa_image_pull* : pulls by result, bytes downloaded, durations
//     (observability/pulls.ts feeds them from the puller's events);
//   - capsa_containers_oom_killed_total, capsa_imagefs_* : for the alerts
//     in packaging/prometheus/capsa-rules.yml;
// plus Node's process metrics (RSS, heap, event-loop lag) under capsa_.
// Nothing is polled in the background: an idle daemon does no work for
// metrics nobody scrapes.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ContainerCriState, SandboxCriState } from '../containerizer';

/** The read-only view of the containerizer the collectors need. */
export interface MetricsSource {
  sandboxes(): { id: string; state: SandboxCriState; name: string; namespace: string }[];
  containers(): {
    id: string;
    sandboxId: string;
    name: string;
    state: ContainerCriState;
    image: string;
    /** Unix ns. */
    startedAt?: bigint;
  }[];
  /** CPU and memory of a running container from its cgroup; undefined when it has none (not running). */
  usage(containerId: string): Promise<{ cpuNs?: bigint; memoryBytes?: bigint; workingSetBytes?: bigint } | undefined>;
  /** Size and free space of the filesystem holding the image store. */
  imageFs?(): Promise<{ sizeBytes: number; availableBytes: number }>;
}

const SANDBOX_STATES = ['SANDBOX_READY', 'SANDBOX_NOTREADY'] as const;
const CONTAINER_STATES = ['CONTAINER_CREATED', 'CONTAINER_RUNNING', 'CONTAINER_EXITED', 'CONTAINER_UNKNOWN'] as const;

/** Stats reads run this many at a time, so a scrape with hundreds of containers stays short. */
const SCRAPE_CONCURRENCY = 16;

const CONTAINER_LABELS = ['container', 'pod', 'namespace', 'id', 'image'] as const;
type ContainerLabel = (typeof CONTAINER_LABELS)[number];

interface ContainerSample {
  labels: Record<ContainerLabel, string>;
  startedAt?: bigint;
  cpuNs?: bigint;
  memoryBytes?: bigint;
  workingSetBytes?: bigint;
}

export class Metrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'method' | 'code'>;
  private readonly durations: Histogram<'method'>;
  private source: MetricsSource | undefined;
  private readonly pulls: Counter<'result'>;
  private readonly pullBytes: Counter;
  private readonly pullDurations: Histogram;
  private readonly oomKills: Counter;

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'capsa_' });
    this.requests = new Counter({
      name: 'capsa_cri_requests_total',
      help: 'CRI calls answered, by method and gRPC status code',
      labelNames: ['method', 'code'],
      registers: [this.registry],
    });
    this.durations = new Histogram({
      name: 'capsa_cri_request_duration_seconds',
      help: 'Time to answer a CRI call, by method',
      labelNames: ['method'],
      // From a List answered from memory (~100 µs) to a slow pull (minutes).
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers: [this.registry],
    });
    // Counters an alert takes increase() of exist from the start at 0: a series
    // born at 1 shows no increase.
    this.pulls = new Counter({
      name: 'capsa_image_pulls_total',
      help: 'Image pulls finished, by result (success, failure)',
      labelNames: ['result'],
      registers: [this.registry],
    });
    this.pulls.inc({ result: 'success' }, 0);
    this.pulls.inc({ result: 'failure' }, 0);
    this.pullBytes = new Counter({
      name: 'capsa_image_pull_bytes_total',
      help: 'Bytes downloaded from registries by pulls (blobs already stored are not fetched again)',
      registers: [this.registry],
    });
    this.pullDurations = new Histogram({
      name: 'capsa_image_pull_duration_seconds',
      help: 'Time a successful pull took, from the first request to the unpacked image',
      buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
      registers: [this.registry],
    });
    this.oomKills = new Counter({
      name: 'capsa_containers_oom_killed_total',
      help: 'Containers that ended OOM-killed (seen by this daemon)',
      registers: [this.registry],
    });
    // prom-client calls collect() with the metric as `this`.
    const self = (): MetricsSource | undefined => this.source;
    const imageFsGauge = (
      name: string,
      help: string,
      pick: (f: { sizeBytes: number; availableBytes: number }) => number,
    ): void => {
      new Gauge({
        name,
        help,
        registers: [this.registry],
        async collect(this: Gauge) {
          const f = await self()?.imageFs?.();
          if (f) this.set(pick(f));
        },
      });
    };
    imageFsGauge(
      'capsa_imagefs_size_bytes',
      'Size of the filesystem holding the image store (root)',
      (f) => f.sizeBytes,
    );
    imageFsGauge(
      'capsa_imagefs_available_bytes',
      'Space left for unprivileged writers on the filesystem holding the image store',
      (f) => f.availableBytes,
    );
    new Gauge({
      name: 'capsa_pod_sandboxes',
      help: 'Pod sandboxes known to the runtime, by CRI state',
      labelNames: ['state'],
      registers: [this.registry],
      collect(this: Gauge<'state'>) {
        const src = self();
        if (!src) return;
        const n = new Map<string, number>(SANDBOX_STATES.map((s) => [s, 0]));
        for (const sb of src.sandboxes()) n.set(sb.state, (n.get(sb.state) ?? 0) + 1);
        for (const [state, v] of n) this.set({ state }, v);
      },
    });
    new Gauge({
      name: 'capsa_containers',
      help: 'Containers known to the runtime, by CRI state',
      labelNames: ['state'],
      registers: [this.registry],
      collect(this: Gauge<'state'>) {
        const src = self();
        if (!src) return;
        const n = new Map<string, number>(CONTAINER_STATES.map((s) => [s, 0]));
        for (const c of src.containers()) n.set(c.state, (n.get(c.state) ?? 0) + 1);
        for (const [state, v] of n) this.set({ state }, v);
      },
    });

    // The four per-container series come from one pass over the cgroups per scrape: the
    // registry collects every metric at once, so each awaits the same snapshot.
    let pending: Promise<ContainerSample[]> | undefined;
    const snapshot = (): Promise<ContainerSample[]> => {
      pending ??= this.sampleContainers().finally(() => setImmediate(() => (pending = undefined)));
      return pending;
    };
    const perContainer = (
      name: string,
      help: string,
      value: (s: ContainerSample) => number | undefined,
      type: 'counter' | 'gauge',
    ): void => {
      const collect = async function (this: Gauge<ContainerLabel> | Counter<ContainerLabel>): Promise<void> {
        const samples = await snapshot();
        this.reset();
        for (const s of samples) {
          const v = value(s);
          if (v === undefined) continue;
          if (this instanceof Counter) this.inc(s.labels, v);
          else this.set(s.labels, v);
        }
      };
      const opts = { name, help, labelNames: CONTAINER_LABELS, registers: [this.registry], collect };
      if (type === 'counter') new Counter<ContainerLabel>(opts);
      else new Gauge<ContainerLabel>(opts);
    };
    perContainer(
      'container_cpu_usage_seconds_total',
      'Cumulative CPU time consumed by the container, in seconds (from its cgroup)',
      (s) => (s.cpuNs === undefined ? undefined : Number(s.cpuNs) / 1e9),
      'counter',
    );
    perContainer(
      'container_memory_usage_bytes',
      'Memory charged to the container cgroup, including page cache',
      (s) => (s.memoryBytes === undefined ? undefined : Number(s.memoryBytes)),
      'gauge',
    );
    perContainer(
      'container_memory_working_set_bytes',
      'Memory usage minus inactive file cache: what the kubelet evicts on',
      (s) => (s.workingSetBytes === undefined ? undefined : Number(s.workingSetBytes)),
      'gauge',
    );
    perContainer(
      'container_start_time_seconds',
      'When the container started, as Unix time',
      (s) => (s.startedAt === undefined ? undefined : Number(s.startedAt) / 1e9),
      'gauge',
    );
  }

  /** CPU and memory of every running container, read SCRAPE_CONCURRENCY cgroups at a time. */
  private async sampleContainers(): Promise<ContainerSample[]> {
    const src = this.source;
    if (!src) return [];
    const pods = new Map(src.sandboxes().map((s) => [s.id, s]));
    const running = src.containers().filter((c) => c.state === 'CONTAINER_RUNNING');
    const out: ContainerSample[] = [];
    for (let i = 0; i < running.length; i += SCRAPE_CONCURRENCY) {
      const batch = await Promise.all(
        running.slice(i, i + SCRAPE_CONCURRENCY).map(async (c): Promise<ContainerSample> => {
          const pod = pods.get(c.sandboxId);
          // A container that exits during the scrape has no cgroup any more: it keeps only its labels.
          const u = await src.usage(c.id).catch(() => undefined);
          return {
            labels: {
              container: c.name,
              pod: pod?.name ?? '',
              namespace: pod?.namespace ?? '',
              id: c.id,
              image: c.image,
            },
            startedAt: c.startedAt,
            ...u,
          };
        }),
      );
      out.push(...batch);
    }
    return out;
  }

  /** Connects the state collectors to the containerizer (once it has recovered). */
  attach(source: MetricsSource): void {
    this.source = source;
  }

  /**
   * Every method's OK counter exists from the start at 0: rate() and
   * increase() see a method's first calls (a series born at 1 shows none).
   */
  knownMethods(methods: readonly string[]): void {
    for (const method of methods) this.requests.inc({ method, code: 'OK' }, 0);
  }

  /** Called by the RPC instrumentation once per answered call. */
  observeCall(method: string, code: string, seconds: number): void {
    this.requests.inc({ method, code });
    this.durations.observe({ method }, seconds);
  }

  /** A pull finished: its result and, when it succeeded, how long it took. */
  observePull(result: 'success' | 'failure', seconds?: number): void {
    this.pulls.inc({ result });
    if (result === 'success' && seconds !== undefined) this.pullDurations.observe(seconds);
  }

  /** Bytes a pull downloaded since its last report. */
  pulledBytes(n: number): void {
    if (n > 0) this.pullBytes.inc(n);
  }

  containerOomKilled(): void {
    this.oomKills.inc();
  }

  /** The exposition text of every series (collectors run now). */
  async render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
