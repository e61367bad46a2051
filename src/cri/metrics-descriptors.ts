// The CRI metrics capsa serves (ListMetricDescriptors, ListPodSandboxMetrics,
// StreamPodSandboxMetrics): cAdvisor's names, help texts, types and labels,
// as kubelet's /metrics/cadvisor has them, so kubelet with the
// PodAndContainerStatsFromCRI feature gate serves the same series from capsa
// without a cAdvisor of its own. kubelet reads the descriptors once at
// start-up and builds a Prometheus desc of each (name, help, label_keys); a
// sample's label_values must match its descriptor's keys in number and order,
// or kubelet drops it. This file is the table and the pure builders from
// what the containerizer reads (cgroup counters, netns interfaces, rootfs
// usage) to samples; src/cri/services/metrics.ts does the reading.
//
// Units. A sample's value is a uint64 and kubelet exports float64(value), so
// a "_seconds_total" counter cannot carry the kernel's nanoseconds. We send
// whole seconds, truncated (never ahead of the kernel's counter, and still
// monotonic): the name's unit stays true, so dashboards and alerts written
// for cAdvisor (rate(container_cpu_usage_seconds_total[5m])) read right,
// at one-second resolution; over a 5-minute rate window that is ±0.3% of a
// core. containerd 2.x and CRI-O do the same (value / 1e9). Nanoseconds under
// a _seconds name would be off by 10^9 for every consumer; a non-cAdvisor
// name would be found by none. Exact CPU time stays available where kubelet
// reads it for scheduling and eviction: ContainerStats/PodSandboxStats
// (usage_core_nano_seconds, /metrics/resource and the summary API).
import type { BlkioEntry, CgroupStats } from '../containerizer';
import type { InterfaceUsage } from '../containerizer';
import { InternalError } from '../errors';
import { Metric, MetricDescriptor, MetricType } from '../gen/runtime/v1/api';

/**
 * The labels kubelet puts on every cAdvisor series (its
 * containerPrometheusLabelsFunc), in the order our label_values use.
 */
export const BASE_LABELS = ['container', 'id', 'image', 'name', 'namespace', 'pod'] as const;

/** Whom a series is about: the values of BASE_LABELS. */
export type Subject = Record<(typeof BASE_LABELS)[number], string>;

interface Family {
  name: string;
  help: string;
  type: MetricType;
  /** Labels after BASE_LABELS. */
  extra: readonly string[];
}

const COUNTER = MetricType.COUNTER;
const GAUGE = MetricType.GAUGE;

function family(name: string, help: string, type: MetricType, extra: readonly string[] = []): Family {
  return { name, help, type, extra };
}

/** Every metric capsa can report; help texts are cAdvisor's. */
export const FAMILIES = {
  lastSeen: family('container_last_seen', 'Last time a container was seen by the exporter', GAUGE),
  cpuUser: family('container_cpu_user_seconds_total', 'Cumulative user cpu time consumed in seconds.', COUNTER),
  cpuSystem: family('container_cpu_system_seconds_total', 'Cumulative system cpu time consumed in seconds.', COUNTER),
  // cAdvisor labels the total cpu="total" when per-CPU usage is off, as kubelet runs it.
  cpuUsage: family('container_cpu_usage_seconds_total', 'Cumulative cpu time consumed in seconds.', COUNTER, ['cpu']),
  cfsPeriods: family('container_cpu_cfs_periods_total', 'Number of elapsed enforcement period intervals.', COUNTER),
  cfsThrottledPeriods: family(
    'container_cpu_cfs_throttled_periods_total',
    'Number of throttled period intervals.',
    COUNTER,
  ),
  cfsThrottledSeconds: family(
    'container_cpu_cfs_throttled_seconds_total',
    'Total time duration the container has been throttled.',
    COUNTER,
  ),
  memoryCache: family('container_memory_cache', 'Number of bytes of page cache memory.', GAUGE),
  memoryRss: family('container_memory_rss', 'Size of RSS in bytes.', GAUGE),
  memoryKernel: family('container_memory_kernel_usage', 'Size of kernel memory allocated in bytes.', GAUGE),
  memoryMappedFile: family('container_memory_mapped_file', 'Size of memory mapped files in bytes.', GAUGE),
  memorySwap: family('container_memory_swap', 'Container swap usage in bytes.', GAUGE),
  memoryFailcnt: family('container_memory_failcnt', 'Number of memory usage hits limits', COUNTER),
  memoryUsage: family(
    'container_memory_usage_bytes',
    'Current memory usage in bytes, including all memory regardless of when it was accessed',
    GAUGE,
  ),
  memoryMaxUsage: family('container_memory_max_usage_bytes', 'Maximum memory usage recorded in bytes', GAUGE),
  memoryWorkingSet: family('container_memory_working_set_bytes', 'Current working set in bytes.', GAUGE),
  // failure_type pgfault|pgmajfault, scope container (the cgroup's own) | hierarchy (its subtree's).
  memoryFailures: family(
    'container_memory_failures_total',
    'Cumulative count of memory allocation failures.',
    COUNTER,
    ['failure_type', 'scope'],
  ),
  oomEvents: family('container_oom_events_total', 'Count of out of memory events observed for the container', COUNTER),
  processes: family('container_processes', 'Number of processes running inside the container.', GAUGE),
  fileDescriptors: family('container_file_descriptors', 'Number of open file descriptors for the container.', GAUGE),
  sockets: family('container_sockets', 'Number of open sockets for the container.', GAUGE),
  threads: family('container_threads', 'Number of threads running inside the container', GAUGE),
  threadsMax: family(
    'container_threads_max',
    'Maximum number of threads allowed inside the container, infinity if value is zero',
    GAUGE,
  ),
  netRxBytes: family('container_network_receive_bytes_total', 'Cumulative count of bytes received', COUNTER, [
    'interface',
  ]),
  netRxPackets: family('container_network_receive_packets_total', 'Cumulative count of packets received', COUNTER, [
    'interface',
  ]),
  netRxDropped: family(
    'container_network_receive_packets_dropped_total',
    'Cumulative count of packets dropped while receiving',
    COUNTER,
    ['interface'],
  ),
  netRxErrors: family(
    'container_network_receive_errors_total',
    'Cumulative count of errors encountered while receiving',
    COUNTER,
    ['interface'],
  ),
  netTxBytes: family('container_network_transmit_bytes_total', 'Cumulative count of bytes transmitted', COUNTER, [
    'interface',
  ]),
  netTxPackets: family('container_network_transmit_packets_total', 'Cumulative count of packets transmitted', COUNTER, [
    'interface',
  ]),
  netTxDropped: family(
    'container_network_transmit_packets_dropped_total',
    'Cumulative count of packets dropped while transmitting',
    COUNTER,
    ['interface'],
  ),
  netTxErrors: family(
    'container_network_transmit_errors_total',
    'Cumulative count of errors encountered while transmitting',
    COUNTER,
    ['interface'],
  ),
  fsUsage: family(
    'container_fs_usage_bytes',
    'Number of bytes that are consumed by the container on this filesystem.',
    GAUGE,
    ['device'],
  ),
  fsLimit: family(
    'container_fs_limit_bytes',
    'Number of bytes that can be consumed by the container on this filesystem.',
    GAUGE,
    ['device'],
  ),
  fsInodesTotal: family('container_fs_inodes_total', 'Number of Inodes', GAUGE, ['device']),
  fsInodesFree: family('container_fs_inodes_free', 'Number of available Inodes', GAUGE, ['device']),
  // Block I/O as the cgroup counts it per device (cAdvisor's DiskIo, not the filesystem's own counters).
  fsReadsBytes: family('container_fs_reads_bytes_total', 'Cumulative count of bytes read', COUNTER, ['device']),
  fsReads: family('container_fs_reads_total', 'Cumulative count of reads completed', COUNTER, ['device']),
  fsWritesBytes: family('container_fs_writes_bytes_total', 'Cumulative count of bytes written', COUNTER, ['device']),
  fsWrites: family('container_fs_writes_total', 'Cumulative count of writes completed', COUNTER, ['device']),
  blkioDeviceUsage: family('container_blkio_device_usage_total', 'Blkio Device bytes usage', COUNTER, [
    'device',
    'major',
    'minor',
    'operation',
  ]),
  startTime: family('container_start_time_seconds', 'Start time of the container since unix epoch in seconds.', GAUGE),
  // The limits in force, read from the cgroup as cAdvisor reads its ContainerSpec (0: none).
  specCpuPeriod: family('container_spec_cpu_period', 'CPU period of the container.', GAUGE),
  specCpuQuota: family('container_spec_cpu_quota', 'CPU quota of the container.', GAUGE),
  specCpuShares: family('container_spec_cpu_shares', 'CPU share of the container.', GAUGE),
  specMemoryLimit: family('container_spec_memory_limit_bytes', 'Memory limit for the container.', GAUGE),
  specMemoryReservation: family(
    'container_spec_memory_reservation_limit_bytes',
    'Memory reservation limit for the container.',
    GAUGE,
  ),
  specMemorySwapLimit: family('container_spec_memory_swap_limit_bytes', 'Memory swap limit for the container.', GAUGE),
} as const;

export type FamilyKey = keyof typeof FAMILIES;

/** ListMetricDescriptors' answer: static for the daemon's life. */
export function metricDescriptors(): MetricDescriptor[] {
  return Object.values(FAMILIES).map((f) => ({ name: f.name, help: f.help, labelKeys: [...BASE_LABELS, ...f.extra] }));
}

/** The filesystem a container's writable layer lives on, and the layer's share of it. */
export interface FsSample {
  /** The filesystem's device (its mount source), cAdvisor's "device" label. */
  device: string;
  usedBytes: bigint;
  capacityBytes?: bigint;
  inodesTotal?: bigint;
  inodesFree?: bigint;
}

/** What one series set (a pod's own, or one container's) is built from; absent parts give no samples. */
export interface MetricsInput {
  cgroup?: CgroupStats;
  /** Interfaces of the pod's network namespace (loopback left out by the reader). */
  interfaces?: readonly InterfaceUsage[];
  fs?: FsSample;
  /** Unix ns. */
  startedAt?: bigint;
  /** When the cgroup was read, unix ns (container_last_seen). */
  seenAt?: bigint;
  /** Block devices by "major:minor" → their /dev path, cAdvisor's device label (unknown: /dev/block/M:m). */
  devices?: ReadonlyMap<string, string>;
}

const NS_PER_SECOND = 1_000_000_000n;

/** Whole seconds, truncated: see the note on units at the top. */
export function wholeSeconds(ns: bigint | undefined): bigint | undefined {
  return ns === undefined ? undefined : ns / NS_PER_SECOND;
}

/**
 * One sample of `key` about `subject`; undefined when the kernel gave no
 * value. `extra` are the values of the family's extra labels, in order.
 */
export function sample(
  key: FamilyKey,
  subject: Subject,
  value: bigint | number | undefined,
  extra: readonly string[] = [],
): Metric | undefined {
  if (value === undefined) return undefined;
  const f: Family = FAMILIES[key];
  // A programming error, not input: the unit test builds every family to keep it from happening.
  if (extra.length !== f.extra.length) {
    throw new InternalError(`metric ${f.name} takes ${f.extra.length} extra label values, got ${extra.length}`);
  }
  const v = BigInt(value);
  return {
    name: f.name,
    // 0: read now, on demand (kubelet then stamps the scrape's time).
    timestamp: 0n,
    metricType: f.type,
    labelValues: [...BASE_LABELS.map((k) => subject[k]), ...extra],
    value: { value: v < 0n ? 0n : v },
  };
}

/** Every sample `input` allows about `subject`. */
export function metricsOf(subject: Subject, input: MetricsInput): Metric[] {
  const out: (Metric | undefined)[] = [];
  const add = (key: FamilyKey, value: bigint | number | undefined, extra: readonly string[] = []): void => {
    out.push(sample(key, subject, value, extra));
  };
  const cg = input.cgroup;
  if (cg) {
    add('cpuUsage', wholeSeconds(cg.cpu.usageNs), ['total']);
    add('cpuUser', wholeSeconds(cg.cpu.userNs));
    add('cpuSystem', wholeSeconds(cg.cpu.systemNs));
    add('cfsPeriods', cg.cpu.periods);
    add('cfsThrottledPeriods', cg.cpu.throttledPeriods);
    add('cfsThrottledSeconds', wholeSeconds(cg.cpu.throttledNs));
    const m = cg.memory;
    add('memoryUsage', m.usageBytes);
    add('memoryWorkingSet', m.workingSetBytes);
    add('memoryMaxUsage', m.maxUsageBytes);
    add('memoryRss', m.rssBytes);
    add('memoryCache', m.cacheBytes);
    add('memoryMappedFile', m.mappedFileBytes);
    add('memorySwap', m.swapBytes);
    add('memoryKernel', m.kernelBytes);
    add('memoryFailcnt', m.failcnt);
    add('oomEvents', m.oomKills);
    for (const [type, f] of [
      ['pgfault', m.pgfault],
      ['pgmajfault', m.pgmajfault],
    ] as const) {
      add('memoryFailures', f?.container, [type, 'container']);
      add('memoryFailures', f?.hierarchy, [type, 'hierarchy']);
    }
    add('processes', cg.processes);
    add('threads', cg.threads);
    add('threadsMax', cg.threadsMax);
    add('fileDescriptors', cg.fileDescriptors);
    add('sockets', cg.sockets);
    if (cg.blkio) out.push(...blkioMetrics(subject, cg.blkio, input.devices ?? new Map()));
    const spec = cg.spec;
    add('specCpuPeriod', spec.cpuPeriodUs);
    // cAdvisor leaves out a quota of 0 (none).
    add('specCpuQuota', spec.cpuQuotaUs === 0n ? undefined : spec.cpuQuotaUs);
    add('specCpuShares', spec.cpuShares);
    add('specMemoryLimit', spec.memoryLimitBytes);
    add('specMemoryReservation', spec.memoryReservationBytes);
    add('specMemorySwapLimit', spec.memorySwapLimitBytes);
  }
  for (const i of input.interfaces ?? []) {
    const at = [i.name];
    add('netRxBytes', i.rxBytes, at);
    add('netRxPackets', i.rxPackets, at);
    add('netRxErrors', i.rxErrors, at);
    add('netRxDropped', i.rxDropped, at);
    add('netTxBytes', i.txBytes, at);
    add('netTxPackets', i.txPackets, at);
    add('netTxErrors', i.txErrors, at);
    add('netTxDropped', i.txDropped, at);
  }
  const fs = input.fs;
  if (fs) {
    const at = [fs.device];
    add('fsUsage', fs.usedBytes, at);
    add('fsLimit', fs.capacityBytes, at);
    add('fsInodesTotal', fs.inodesTotal, at);
    add('fsInodesFree', fs.inodesFree, at);
  }
  add('startTime', wholeSeconds(input.startedAt));
  add('lastSeen', wholeSeconds(input.seenAt));
  return out.filter((m): m is Metric => m !== undefined);
}

/**
 * Per device: every operation the kernel counts in bytes
 * (container_blkio_device_usage_total), and the Read/Write bytes and
 * operations again under the fs names, as cAdvisor derives them.
 */
function blkioMetrics(
  subject: Subject,
  io: NonNullable<CgroupStats['blkio']>,
  devices: ReadonlyMap<string, string>,
): (Metric | undefined)[] {
  const out: (Metric | undefined)[] = [];
  const key = (e: BlkioEntry): string => `${e.major}:${e.minor}`;
  // A device gone from sysfs still needs a label of its own (two "" would collide): udev's /dev/block/M:m.
  const name = (k: string): string => devices.get(k) ?? `/dev/block/${k}`;
  for (const e of io.serviceBytes) {
    out.push(sample('blkioDeviceUsage', subject, e.value, [name(key(e)), String(e.major), String(e.minor), e.op]));
  }
  for (const [fam, entries, op] of [
    ['fsReadsBytes', io.serviceBytes, 'Read'],
    ['fsReads', io.serviced, 'Read'],
    ['fsWritesBytes', io.serviceBytes, 'Write'],
    ['fsWrites', io.serviced, 'Write'],
  ] as const) {
    for (const e of entries) if (e.op === op) out.push(sample(fam, subject, e.value, [name(key(e))]));
  }
  return out;
}
