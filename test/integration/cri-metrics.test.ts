// CRI metrics through the real socket (ListMetricDescriptors,
// ListPodSandboxMetrics, StreamPodSandboxMetrics), as kubelet's
// /metrics/cadvisor collector reads them under PodAndContainerStatsFromCRI:
// every sample named by a descriptor with matching labels; a CPU-burning
// container under a CFS quota, an 8 MiB resident one with a file in its
// rootfs, a real OOM kill, and the pod's veth counters, each checked against
// what the kernel says; pods kept apart by id; the stream and the list agree.
import { execFileSync } from 'child_process';
import { existsSync, readFileSync, readdirSync, readlinkSync, rmSync, truncateSync, writeFileSync } from 'fs';
import * as path from 'path';
import {
  Metric,
  MetricDescriptor,
  MetricType,
  PodSandboxMetrics,
  StreamPodSandboxMetricsRequest,
  StreamPodSandboxMetricsResponse,
} from '../../src/gen/runtime/v1/api';
import { TestDaemon, call, createContainer, runp } from '../helpers/daemon';
import {
  BUSYBOX_IMAGE as IMAGE,
  BusyboxDaemon,
  startBusyboxDaemon,
  stopBusyboxDaemon,
} from '../helpers/busybox-daemon';

const MIB = 1024 * 1024;
const CG = '/sys/fs/cgroup';

let b: BusyboxDaemon;
let d: TestDaemon;

beforeAll(async () => {
  b = await startBusyboxDaemon();
  d = b.d;
}, 600_000);

afterAll(async () => {
  await stopBusyboxDaemon(b);
}, 120_000);

function podConfig(name: string): Record<string, unknown> {
  const uid = `crimetrics-${name}-${process.pid}`;
  return {
    metadata: { name, uid, namespace: 'metricsns', attempt: 0 },
    hostname: name,
    logDirectory: path.join(d.dir, 'logs', uid),
    linux: {},
  };
}

function ctrConfig(name: string, command: string[], linux: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    metadata: { name, attempt: 0 },
    image: { image: IMAGE, userSpecifiedImage: 'busybox:latest' },
    command,
    logPath: `${name}.log`,
    linux,
  };
}

async function run(pod: string, podCfg: Record<string, unknown>, cfg: Record<string, unknown>): Promise<string> {
  const id = await createContainer(d, pod, podCfg, cfg);
  await call(d.runtime, 'startContainer', { containerId: id }, 30_000);
  return id;
}

async function list(): Promise<PodSandboxMetrics[]> {
  return (await call<{ podMetrics: PodSandboxMetrics[] }>(d.runtime, 'listPodSandboxMetrics', {}, 30_000)).podMetrics;
}

function stream(): Promise<PodSandboxMetrics[][]> {
  return new Promise((resolve, reject) => {
    const chunks: PodSandboxMetrics[][] = [];
    const s = d.runtime.streamPodSandboxMetrics(StreamPodSandboxMetricsRequest.fromPartial({}), {
      deadline: new Date(Date.now() + 30_000),
    });
    s.on('data', (m: StreamPodSandboxMetricsResponse) => chunks.push(m.podSandboxMetrics));
    s.on('error', reject);
    s.on('end', () => resolve(chunks));
  });
}

/** name → label key → value, for lookups like kubelet's Prometheus output. */
function labelled(descs: Map<string, MetricDescriptor>, m: Metric): Record<string, string> {
  const keys = descs.get(m.name)!.labelKeys;
  return Object.fromEntries(keys.map((k, i) => [k, m.labelValues[i]]));
}

function pick(
  descs: Map<string, MetricDescriptor>,
  ms: Metric[],
  name: string,
  labels: Record<string, string> = {},
): bigint[] {
  return ms
    .filter((m) => m.name === name && Object.entries(labels).every(([k, v]) => labelled(descs, m)[k] === v))
    .map((m) => m.value!.value);
}

function one(
  descs: Map<string, MetricDescriptor>,
  ms: Metric[],
  name: string,
  labels?: Record<string, string>,
): bigint {
  const vs = pick(descs, ms, name, labels);
  if (vs.length !== 1) throw new Error(`${vs.length} samples of ${name} ${JSON.stringify(labels ?? {})}`);
  return vs[0];
}

const V2 = existsSync(path.join(CG, 'cgroup.controllers')) && !existsSync(path.join(CG, 'memory'));

function cgFile(controller: string, cgPath: string, file: string): string {
  return readFileSync(V2 ? path.join(CG, cgPath, file) : path.join(CG, controller, cgPath, file), 'utf8');
}

/** The kernel's own CPU time of a cgroup, in ns. */
function kernelCpuNs(cgPath: string): bigint {
  if (!V2) return BigInt(cgFile('cpuacct', cgPath, 'cpuacct.usage').trim());
  return BigInt(/^usage_usec (\d+)$/m.exec(cgFile('cpu', cgPath, 'cpu.stat'))![1]) * 1000n;
}

/** The kernel's own count of OOM kills in a cgroup. */
function kernelOomKills(cgPath: string): bigint {
  const text = V2 ? cgFile('memory', cgPath, 'memory.events') : cgFile('memory', cgPath, 'memory.oom_control');
  return BigInt(/^oom_kill (\d+)$/m.exec(text)![1]);
}

/** Every pid in a cgroup's subtree (v1: the cpu hierarchy's). */
function kernelPids(cgPath: string): number[] {
  const pids: number[] = [];
  const walk = (dir: string): void => {
    for (const l of readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n')) if (l) pids.push(Number(l));
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) walk(path.join(dir, e.name));
  };
  walk(V2 ? path.join(CG, cgPath) : path.join(CG, 'cpu', cgPath));
  return pids;
}

/** Open fds and sockets of a cgroup's processes, as /proc/<pid>/fd lists them now. */
function kernelFds(cgPath: string): { fds: bigint; sockets: bigint } {
  let fds = 0n;
  let sockets = 0n;
  for (const pid of kernelPids(cgPath)) {
    const dir = `/proc/${pid}/fd`;
    for (const n of readdirSync(dir)) {
      fds++;
      if (readlinkSync(path.join(dir, n)).startsWith('socket:')) sockets++;
    }
  }
  return { fds, sockets };
}

/** A memory.stat field of a cgroup. */
function kernelMemoryStat(cgPath: string, key: string): bigint {
  return BigInt(new RegExp(`^${key} (\\d+)$`, 'm').exec(cgFile('memory', cgPath, 'memory.stat'))![1]);
}

async function until<T>(what: string, ms: number, fn: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

test('descriptors: the cAdvisor families kubelet serves, base labels then their own', async () => {
  const { descriptors } = await call<{ descriptors: MetricDescriptor[] }>(d.runtime, 'listMetricDescriptors', {});
  const names = descriptors.map((x) => x.name);
  expect(new Set(names).size).toBe(names.length);
  for (const n of [
    'container_cpu_usage_seconds_total',
    'container_cpu_user_seconds_total',
    'container_cpu_system_seconds_total',
    'container_cpu_cfs_periods_total',
    'container_cpu_cfs_throttled_periods_total',
    'container_cpu_cfs_throttled_seconds_total',
    'container_memory_usage_bytes',
    'container_memory_working_set_bytes',
    'container_memory_rss',
    'container_memory_cache',
    'container_memory_mapped_file',
    'container_memory_swap',
    'container_memory_failcnt',
    'container_memory_max_usage_bytes',
    'container_memory_kernel_usage',
    'container_network_receive_bytes_total',
    'container_network_receive_packets_total',
    'container_network_receive_errors_total',
    'container_network_receive_packets_dropped_total',
    'container_network_transmit_bytes_total',
    'container_network_transmit_packets_total',
    'container_network_transmit_errors_total',
    'container_network_transmit_packets_dropped_total',
    'container_fs_usage_bytes',
    'container_processes',
    'container_threads',
    'container_oom_events_total',
    'container_last_seen',
    'container_file_descriptors',
    'container_sockets',
    'container_memory_failures_total',
    'container_spec_cpu_period',
    'container_spec_cpu_quota',
    'container_spec_cpu_shares',
    'container_spec_memory_limit_bytes',
    'container_spec_memory_reservation_limit_bytes',
    'container_spec_memory_swap_limit_bytes',
    'container_blkio_device_usage_total',
    'container_fs_reads_bytes_total',
    'container_fs_reads_total',
    'container_fs_writes_bytes_total',
    'container_fs_writes_total',
    'container_fs_inodes_total',
    'container_fs_inodes_free',
    'container_fs_limit_bytes',
  ]) {
    expect(names).toContain(n);
  }
  for (const x of descriptors)
    expect(x.labelKeys.slice(0, 6)).toEqual(['container', 'id', 'image', 'name', 'namespace', 'pod']);
  // Static for the daemon's life: kubelet reads them once.
  const again = await call<{ descriptors: MetricDescriptor[] }>(d.runtime, 'listMetricDescriptors', {});
  expect(again.descriptors).toEqual(descriptors);
});

test('a busy pod and an idle one: CPU, memory, fs, processes, OOM, veth counters; by pod id; list = stream', async () => {
  const { descriptors } = await call<{ descriptors: MetricDescriptor[] }>(d.runtime, 'listMetricDescriptors', {});
  const descs = new Map(descriptors.map((x) => [x.name, x]));

  const busyCfg = podConfig('busypod');
  const idleCfg = podConfig('idlepod');
  const busyPod = await runp(d, busyCfg);
  const idlePod = await runp(d, idleCfg);
  const stoppedCfg = podConfig('stoppedpod');
  const stoppedPod = await runp(d, stoppedCfg);
  try {
    // Burns CPU under half a core (so CFS periods are throttled) until the test says stop; holds 8 MiB and a
    // 2 MiB file in its writable layer.
    const burner = await run(
      busyPod,
      busyCfg,
      ctrConfig(
        'burner',
        [
          'sh',
          '-c',
          'head -c 2097152 /dev/zero > /filler; x=$(head -c 8388608 /dev/zero | tr "\\0" a); ' +
            'while [ ! -f /tmp/stop ]; do :; done; exec sleep 3600',
        ],
        { resources: { cpuPeriod: 100000n, cpuQuota: 50000n } },
      ),
    );
    // A child that outgrows the 32 MiB limit is OOM-killed; the container's init lives on.
    const oomer = await run(
      busyPod,
      busyCfg,
      ctrConfig(
        'oomer',
        ['sh', '-c', '(x=$(head -c 134217728 /dev/zero | tr "\\0" a)); echo survived; exec sleep 3600'],
        { resources: { memoryLimitInBytes: BigInt(32 * MIB) } },
      ),
    );
    // Created, never started: no series.
    const created = await createContainer(d, busyPod, busyCfg, ctrConfig('created', ['sleep', '3600']));
    const idle = await run(idlePod, idleCfg, ctrConfig('idle', ['sleep', '3600']));
    await call(d.runtime, 'stopPodSandbox', { podSandboxId: stoppedPod }, 60_000);

    // The busy pod's netns has only lo without CNI: a veth pair in it, and traffic from eth0 to peer0.
    const netns = path.join(d.state, 'ns', `capsa-${busyPod}-net`);
    const inNs = (args: string[]): void => {
      execFileSync('nsenter', [`--net=${netns}`, 'ip', ...args], { timeout: 10_000 });
    };
    inNs(['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'peer0']);
    inNs(['link', 'set', 'eth0', 'up']);
    inNs(['link', 'set', 'peer0', 'up']);
    inNs(['addr', 'add', '10.99.0.1/24', 'dev', 'eth0']);
    await call(d.runtime, 'execSync', { containerId: idle, cmd: ['true'], timeout: 10 });
    await call(d.runtime, 'execSync', {
      containerId: burner,
      cmd: ['ping', '-c', '2', '-W', '1', '10.99.0.2'],
      timeout: 10,
    });

    // Whole seconds: wait until the burner has used one, and until the OOM kill was counted.
    const pods = await until('a second of CPU and an OOM kill', 90_000, async () => {
      const ps = await list();
      const b = ps.find((p) => p.podSandboxId === busyPod);
      const ms = b?.containerMetrics.flatMap((c) => c.metrics) ?? [];
      const cpu = pick(descs, ms, 'container_cpu_usage_seconds_total', { container: 'burner' })[0] ?? 0n;
      const oom = pick(descs, ms, 'container_oom_events_total', { container: 'oomer' })[0] ?? 0n;
      return cpu >= 1n && oom >= 1n ? ps : undefined;
    });
    await call(d.runtime, 'execSync', { containerId: burner, cmd: ['touch', '/tmp/stop'], timeout: 10 });

    // Every sample: named by a descriptor, label values matching its keys, read on demand.
    for (const p of pods) {
      for (const m of [...p.metrics, ...p.containerMetrics.flatMap((c) => c.metrics)]) {
        const desc = descs.get(m.name);
        expect(desc).toBeDefined();
        expect(m.labelValues).toHaveLength(desc!.labelKeys.length);
        expect(m.timestamp).toBe(0n);
        expect([MetricType.COUNTER, MetricType.GAUGE]).toContain(m.metricType);
      }
    }

    // By pod id: the ready pods, each with only its own running containers and its own labels.
    const ids = pods.map((p) => p.podSandboxId);
    expect(ids).toEqual(expect.arrayContaining([busyPod, idlePod]));
    expect(ids).not.toContain(stoppedPod);
    const busy = pods.find((p) => p.podSandboxId === busyPod)!;
    const idleM = pods.find((p) => p.podSandboxId === idlePod)!;
    expect(busy.containerMetrics.map((c) => c.containerId).sort()).toEqual([burner, oomer].sort());
    expect(busy.containerMetrics.map((c) => c.containerId)).not.toContain(created);
    expect(idleM.containerMetrics.map((c) => c.containerId)).toEqual([idle]);
    for (const [p, name] of [
      [busy, 'busypod'],
      [idleM, 'idlepod'],
    ] as const) {
      for (const m of [...p.metrics, ...p.containerMetrics.flatMap((c) => c.metrics)]) {
        expect(labelled(descs, m)).toMatchObject({ pod: name, namespace: 'metricsns' });
      }
    }

    // The pod's own series: its cgroup (container "" as cAdvisor's pod cgroup) and its netns.
    const podMs = busy.metrics;
    const podId = labelled(descs, podMs[0]).id;
    expect(podMs.every((m) => labelled(descs, m).container === '' && labelled(descs, m).id === podId)).toBe(true);
    expect(podId).toMatch(new RegExp(`capsa-${busyPod}$`));
    expect(one(descs, podMs, 'container_network_transmit_bytes_total', { interface: 'eth0' })).toBeGreaterThan(0n);
    expect(one(descs, podMs, 'container_network_transmit_packets_total', { interface: 'eth0' })).toBeGreaterThan(0n);
    expect(one(descs, podMs, 'container_network_receive_packets_total', { interface: 'peer0' })).toBeGreaterThan(0n);
    expect(pick(descs, podMs, 'container_network_receive_bytes_total', { interface: 'lo' })).toEqual([]);
    // The kernel's own counter for eth0, read after: the sample is not ahead of it.
    const sysTx = BigInt(
      execFileSync('nsenter', [`--net=${netns}`, 'cat', '/sys/class/net/eth0/statistics/tx_bytes'], { timeout: 10_000 })
        .toString()
        .trim(),
    );
    expect(one(descs, podMs, 'container_network_transmit_bytes_total', { interface: 'eth0' })).toBeLessThanOrEqual(
      sysTx,
    );
    // The idle pod has no interface but lo: no network series.
    expect(pick(descs, idleM.metrics, 'container_network_transmit_bytes_total')).toEqual([]);
    // The pod's cgroup holds its containers': at least the burner's CPU, and the OOM kill.
    const burnerMs = busy.containerMetrics.find((c) => c.containerId === burner)!.metrics;
    expect(one(descs, podMs, 'container_cpu_usage_seconds_total', { cpu: 'total' })).toBeGreaterThanOrEqual(
      one(descs, burnerMs, 'container_cpu_usage_seconds_total'),
    );
    // OOM kills as the pod cgroup counts them (v2 counts its subtree's; v1 only kills in the cgroup itself).
    expect(one(descs, podMs, 'container_oom_events_total')).toBe(kernelOomKills(podId));
    expect(one(descs, podMs, 'container_processes')).toBeGreaterThanOrEqual(2n);

    // The burner: its own labels, CPU in whole seconds not ahead of cpuacct, throttled under its quota.
    const bl = labelled(descs, burnerMs[0]);
    expect(bl).toMatchObject({ container: 'burner', image: 'busybox:latest', name: burner });
    expect(bl.id.startsWith(`${podId}/`)).toBe(true);
    const cpuNs = kernelCpuNs(bl.id);
    const cpuS = one(descs, burnerMs, 'container_cpu_usage_seconds_total', { cpu: 'total' });
    expect(cpuS).toBeGreaterThanOrEqual(1n);
    expect(cpuS).toBeLessThanOrEqual(cpuNs / 1_000_000_000n);
    expect(
      one(descs, burnerMs, 'container_cpu_user_seconds_total') +
        one(descs, burnerMs, 'container_cpu_system_seconds_total'),
    ).toBeLessThanOrEqual(cpuS + 1n);
    expect(one(descs, burnerMs, 'container_cpu_cfs_periods_total')).toBeGreaterThan(0n);
    expect(one(descs, burnerMs, 'container_cpu_cfs_throttled_periods_total')).toBeGreaterThan(0n);
    // Memory: the 8 MiB string is resident.
    expect(one(descs, burnerMs, 'container_memory_usage_bytes')).toBeGreaterThan(BigInt(8 * MIB));
    expect(one(descs, burnerMs, 'container_memory_working_set_bytes')).toBeGreaterThan(0n);
    expect(one(descs, burnerMs, 'container_memory_rss')).toBeGreaterThan(BigInt(4 * MIB));
    expect(one(descs, burnerMs, 'container_memory_max_usage_bytes')).toBeGreaterThanOrEqual(
      one(descs, burnerMs, 'container_memory_usage_bytes') / 2n,
    );
    expect(one(descs, burnerMs, 'container_processes')).toBeGreaterThanOrEqual(1n);
    expect(one(descs, burnerMs, 'container_threads')).toBeGreaterThanOrEqual(1n);
    // The 2 MiB file in its writable layer, on the filesystem of the daemon's root.
    const fsUsed = pick(descs, burnerMs, 'container_fs_usage_bytes');
    expect(fsUsed).toHaveLength(1);
    expect(fsUsed[0]).toBeGreaterThanOrEqual(BigInt(2 * MIB));
    const device = labelled(
      descs,
      burnerMs.find((m) => m.name === 'container_fs_usage_bytes')!,
    ).device;
    expect(device).not.toBe('');
    expect(one(descs, burnerMs, 'container_fs_limit_bytes', { device })).toBeGreaterThan(fsUsed[0]);
    expect(one(descs, burnerMs, 'container_start_time_seconds')).toBeGreaterThan(1_600_000_000n);

    // The oomer: the kernel's count, at its memory limit.
    const oomMs = busy.containerMetrics.find((c) => c.containerId === oomer)!.metrics;
    const ol = labelled(descs, oomMs[0]);
    expect(one(descs, oomMs, 'container_oom_events_total')).toBe(kernelOomKills(ol.id));
    expect(one(descs, oomMs, 'container_memory_failcnt')).toBeGreaterThan(0n);

    // No two samples alike across the whole answer (kubelet's registry would reject the scrape's duplicates).
    const keys = pods.flatMap((p) =>
      [...p.metrics, ...p.containerMetrics.flatMap((c) => c.metrics)].map(
        (m) => `${m.name}|${m.labelValues.join('|')}`,
      ),
    );
    expect(new Set(keys).size).toBe(keys.length);

    // The stream carries the same pods and series (values move between the two reads).
    const chunks = await stream();
    expect(chunks.length).toBeGreaterThanOrEqual(1);
    const streamed = chunks.flat();
    expect(streamed.map((p) => p.podSandboxId).sort()).toEqual(ids.sort());
    const shape = (ps: PodSandboxMetrics[]): string[] =>
      ps
        .flatMap((p) => [...p.metrics, ...p.containerMetrics.flatMap((c) => c.metrics)])
        .map((m) => `${m.name}|${m.labelValues.join('|')}`)
        .filter((k) => !k.startsWith('container_fs_usage_bytes')) // the layer may be walked mid-write
        .sort();
    expect(shape(streamed)).toEqual(shape(pods));
  } finally {
    for (const p of [busyPod, idlePod, stoppedPod]) {
      await call(d.runtime, 'stopPodSandbox', { podSandboxId: p }, 60_000);
      await call(d.runtime, 'removePodSandbox', { podSandboxId: p }, 60_000);
    }
  }
}, 240_000);

test('open files and sockets as /proc lists them, last seen, page faults, the limits in force', async () => {
  const { descriptors } = await call<{ descriptors: MetricDescriptor[] }>(d.runtime, 'listMetricDescriptors', {});
  const descs = new Map(descriptors.map((x) => [x.name, x]));
  const cfg = podConfig('specpod');
  const pod = await runp(d, cfg);
  try {
    // A listening socket in a child; the limits critest gives its metrics container.
    const ctr = await run(
      pod,
      cfg,
      ctrConfig('listener', ['sh', '-c', 'nc -l -p 9000 & exec sleep 3600'], {
        resources: {
          cpuPeriod: 100000n,
          cpuQuota: 20000n,
          cpuShares: 512n,
          memoryLimitInBytes: BigInt(64 * MIB),
          memorySwapLimitInBytes: BigInt(64 * MIB),
        },
      }),
    );
    const mine = async (): Promise<PodSandboxMetrics | undefined> => (await list()).find((p) => p.podSandboxId === pod);
    await until('nc listening', 30_000, async () => {
      const ms = (await mine())?.containerMetrics[0]?.metrics ?? [];
      return (pick(descs, ms, 'container_sockets')[0] ?? 0n) >= 1n ? true : undefined;
    });
    const before = BigInt(Math.floor(Date.now() / 1000));
    const p = (await mine())!;
    const after = BigInt(Math.ceil(Date.now() / 1000));
    const ms = p.containerMetrics.find((c) => c.containerId === ctr)!.metrics;
    const id = labelled(descs, ms[0]).id;
    const podId = labelled(descs, p.metrics[0]).id;
    for (const m of [...p.metrics, ...ms]) expect(m.labelValues).toHaveLength(descs.get(m.name)!.labelKeys.length);

    // fds and sockets: what /proc lists for the same processes (sleep and nc sit still).
    const k = kernelFds(id);
    expect(one(descs, ms, 'container_file_descriptors')).toBe(k.fds);
    expect(one(descs, ms, 'container_sockets')).toBe(k.sockets);
    expect(k.sockets).toBeGreaterThanOrEqual(1n);
    expect(one(descs, p.metrics, 'container_file_descriptors')).toBeGreaterThanOrEqual(k.fds);

    // Last seen: the read's time, in whole seconds.
    for (const x of [ms, p.metrics]) {
      const seen = one(descs, x, 'container_last_seen');
      expect(seen).toBeGreaterThanOrEqual(before);
      expect(seen).toBeLessThanOrEqual(after);
    }

    // Page faults: the container's own and its subtree's, not ahead of the kernel's counters read after.
    const faults = (type: string, scope: string): bigint =>
      one(descs, ms, 'container_memory_failures_total', { failure_type: type, scope });
    expect(faults('pgfault', 'container')).toBeGreaterThan(0n);
    expect(faults('pgfault', 'hierarchy')).toBeGreaterThanOrEqual(faults('pgfault', 'container'));
    expect(faults('pgmajfault', 'hierarchy')).toBeGreaterThanOrEqual(faults('pgmajfault', 'container'));
    expect(faults('pgfault', 'hierarchy')).toBeLessThanOrEqual(kernelMemoryStat(id, V2 ? 'pgfault' : 'total_pgfault'));
    expect(pick(descs, p.metrics, 'container_memory_failures_total')).toHaveLength(4);

    // The limits in force, as configured and as the cgroup holds them.
    expect(one(descs, ms, 'container_spec_cpu_period')).toBe(100000n);
    expect(one(descs, ms, 'container_spec_cpu_quota')).toBe(20000n);
    expect(one(descs, ms, 'container_spec_memory_limit_bytes')).toBe(BigInt(64 * MIB));
    expect(one(descs, ms, 'container_spec_memory_reservation_limit_bytes')).toBe(0n);
    if (V2) {
      const w = BigInt(cgFile('cpu', id, 'cpu.weight').trim());
      expect(one(descs, ms, 'container_spec_cpu_shares')).toBe(2n + ((w - 1n) * 262142n) / 9999n);
      // v2 limits swap alone: 64 MiB of memory+swap is no swap.
      expect(one(descs, ms, 'container_spec_memory_swap_limit_bytes')).toBe(0n);
    } else {
      expect(one(descs, ms, 'container_spec_cpu_shares')).toBe(512n);
      const memsw = existsSync(path.join(CG, 'memory', id, 'memory.memsw.limit_in_bytes'));
      expect(one(descs, ms, 'container_spec_memory_swap_limit_bytes')).toBe(memsw ? BigInt(64 * MIB) : 0n);
    }
    // The pod's cgroup has no quota: no quota sample, as cAdvisor leaves it out; its shares are there.
    expect(pick(descs, p.metrics, 'container_spec_cpu_quota')).toEqual([]);
    expect(one(descs, p.metrics, 'container_spec_cpu_shares')).toBeGreaterThan(0n);
    expect(podId).not.toBe(id);
  } finally {
    await call(d.runtime, 'stopPodSandbox', { podSandboxId: pod }, 60_000);
    await call(d.runtime, 'removePodSandbox', { podSandboxId: pod }, 60_000);
  }
}, 120_000);

test('block I/O a container does is counted per device and named from sysfs', async () => {
  const { descriptors } = await call<{ descriptors: MetricDescriptor[] }>(d.runtime, 'listMetricDescriptors', {});
  const descs = new Map(descriptors.map((x) => [x.name, x]));
  const cfg = podConfig('iopod');
  const img = path.join(d.dir, 'blk.img');
  writeFileSync(img, '');
  truncateSync(img, 8 * MIB);
  const loop = execFileSync('losetup', ['-f', '--show', img], { timeout: 10_000 }).toString().trim();
  let pod: string | undefined;
  try {
    pod = await runp(d, cfg);
    const ctr = await run(pod, cfg, ctrConfig('reader', ['sleep', '3600']));
    const first = (await list()).find((p) => p.podSandboxId === pod)!;
    const id = labelled(descs, first.containerMetrics[0].metrics[0]).id;
    const [major, minor] = readFileSync(`/sys/block/${path.basename(loop)}/dev`, 'utf8')
      .trim()
      .split(':');
    // v1's blk-throttle counts a device's I/O only once a cgroup has a rule on it (without one these files say
    // "Total 0" and the series are absent): a rule far above anything read, on the loop device alone.
    const blkio = V2 ? path.join(CG, id) : path.join(CG, 'blkio', id);
    if (!V2) writeFileSync(path.join(blkio, 'blkio.throttle.read_bps_device'), `${major}:${minor} 1099511627776`);
    // 1 MiB of direct reads by a process in the container's I/O cgroup (opened first: the container's device
    // rules do not let it open the loop device).
    execFileSync(
      'sh',
      [
        '-c',
        `exec 3<${loop}; echo $$ > ${blkio}/cgroup.procs; exec dd of=/dev/null bs=4096 count=256 iflag=direct <&3`,
      ],
      { timeout: 30_000, stdio: 'ignore' },
    );

    const p = (await list()).find((x) => x.podSandboxId === pod)!;
    const ms = p.containerMetrics.find((c) => c.containerId === ctr)!.metrics;
    const dev = { device: loop, major, minor };
    expect(one(descs, ms, 'container_blkio_device_usage_total', { ...dev, operation: 'Read' })).toBe(BigInt(MIB));
    expect(one(descs, ms, 'container_blkio_device_usage_total', { ...dev, operation: 'Write' })).toBe(0n);
    expect(one(descs, ms, 'container_fs_reads_bytes_total', { device: loop })).toBe(BigInt(MIB));
    const reads = one(descs, ms, 'container_fs_reads_total', { device: loop });
    expect(reads).toBeGreaterThanOrEqual(1n);
    expect(reads).toBeLessThanOrEqual(256n);
    expect(one(descs, ms, 'container_fs_writes_bytes_total', { device: loop })).toBe(0n);
    // The pod's counters hold its containers'.
    expect(one(descs, p.metrics, 'container_fs_reads_bytes_total', { device: loop })).toBeGreaterThanOrEqual(
      BigInt(MIB),
    );
    for (const m of [...p.metrics, ...ms]) expect(m.labelValues).toHaveLength(descs.get(m.name)!.labelKeys.length);
  } finally {
    if (pod !== undefined) {
      await call(d.runtime, 'stopPodSandbox', { podSandboxId: pod }, 60_000);
      await call(d.runtime, 'removePodSandbox', { podSandboxId: pod }, 60_000);
    }
    execFileSync('losetup', ['-d', loop], { timeout: 10_000 });
    rmSync(img, { force: true });
  }
}, 120_000);

test('a stream whose reader goes away ends; the daemon answers the next call', async () => {
  const s = d.runtime.streamPodSandboxMetrics(StreamPodSandboxMetricsRequest.fromPartial({}));
  const ended = new Promise<void>((resolve) => {
    s.on('error', () => resolve());
    s.on('end', () => resolve());
    s.on('data', () => undefined);
  });
  s.cancel();
  await ended;
  const { descriptors } = await call<{ descriptors: MetricDescriptor[] }>(d.runtime, 'listMetricDescriptors', {});
  expect(descriptors.length).toBeGreaterThan(0);
  expect(await stream()).toBeDefined();
});
