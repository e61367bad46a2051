// The CRI metrics table and builders: every sample kubelet could get matches
// its descriptor's label keys in number (kubelet drops a sample that does
// not), every family can be produced, names are unique, units are whole
// seconds, and a pod's series never collide.
import type { CgroupStats } from '../../src/containerizer/isolators/cgroups/stats';
import {
  BASE_LABELS,
  FAMILIES,
  MetricsInput,
  Subject,
  metricDescriptors,
  metricsOf,
  sample,
  wholeSeconds,
} from '../../src/cri/metrics-descriptors';
import { Metric, MetricType } from '../../src/gen/runtime/v1/api';

const FULL_CGROUP: CgroupStats = {
  cpu: {
    usageNs: 2_999_999_999n,
    userNs: 1_500_000_000n,
    systemNs: 999_999_999n,
    periods: 10n,
    throttledPeriods: 2n,
    throttledNs: 3_000_000_001n,
  },
  memory: {
    usageBytes: 100n,
    workingSetBytes: 90n,
    maxUsageBytes: 150n,
    rssBytes: 60n,
    cacheBytes: 40n,
    mappedFileBytes: 10n,
    swapBytes: 0n,
    kernelBytes: 5n,
    failcnt: 1n,
    oomKills: 1n,
    pgfault: { container: 11n, hierarchy: 111n },
    pgmajfault: { container: 1n, hierarchy: 2n },
  },
  processes: 2,
  threads: 3n,
  threadsMax: 0n,
  fileDescriptors: 12n,
  sockets: 4n,
  blkio: {
    serviceBytes: [
      ...['Read', 'Write', 'Sync', 'Async', 'Discard', 'Total'].map((op, i) => ({
        major: 254,
        minor: 0,
        op,
        value: BigInt(4096 * (i + 1)),
      })),
      { major: 7, minor: 3, op: 'Read', value: 512n },
    ],
    serviced: [
      { major: 254, minor: 0, op: 'Read', value: 3n },
      { major: 254, minor: 0, op: 'Write', value: 5n },
      { major: 7, minor: 3, op: 'Read', value: 1n },
    ],
  },
  spec: {
    cpuShares: 1024n,
    cpuPeriodUs: 100000n,
    cpuQuotaUs: 20000n,
    memoryLimitBytes: 64n << 20n,
    memoryReservationBytes: 0n,
    memorySwapLimitBytes: 64n << 20n,
  },
};

const IFACE = {
  ...{ rxBytes: 1n, rxPackets: 2n, rxErrors: 3n, rxDropped: 4n },
  ...{ txBytes: 5n, txPackets: 6n, txErrors: 7n, txDropped: 8n },
};

const FULL: MetricsInput = {
  cgroup: FULL_CGROUP,
  interfaces: [
    { name: 'eth0', ...IFACE },
    { name: 'eth1', ...IFACE },
  ],
  fs: { device: '/dev/vda1', usedBytes: 4096n, capacityBytes: 1n << 40n, inodesTotal: 1000n, inodesFree: 900n },
  startedAt: 1_700_000_000_999_999_999n,
  seenAt: 1_700_000_100_500_000_000n,
  // 7:3 is not named: a device gone from sysfs.
  devices: new Map([['254:0', '/dev/vda']]),
};

const POD: Subject = { container: '', id: '/kubepods/podabc', image: '', name: '', namespace: 'ns', pod: 'p' };
const CTR: Subject = {
  container: 'web',
  id: '/kubepods/podabc/capsa-1',
  image: 'nginx:1',
  name: '1'.repeat(64),
  namespace: 'ns',
  pod: 'p',
};

const described = new Map(metricDescriptors().map((d) => [d.name, d]));

function byName(ms: Metric[], name: string): Metric[] {
  return ms.filter((m) => m.name === name);
}

test('descriptors: unique cAdvisor names, base labels first then the family extras, help text', () => {
  const ds = metricDescriptors();
  expect(described.size).toBe(ds.length);
  expect(ds.length).toBe(Object.keys(FAMILIES).length);
  for (const d of ds) {
    expect(d.name).toMatch(/^container_[a-z_]+$/);
    expect(d.help).not.toBe('');
    expect(d.labelKeys.slice(0, BASE_LABELS.length)).toEqual([...BASE_LABELS]);
    expect(new Set(d.labelKeys).size).toBe(d.labelKeys.length);
    // Prometheus convention: _total names a counter; cAdvisor's one exception is a capacity (inodes_total).
    const f = Object.values(FAMILIES).find((x) => x.name === d.name)!;
    if (d.name.endsWith('_total') && d.name !== 'container_fs_inodes_total') expect(f.type).toBe(MetricType.COUNTER);
  }
  expect(described.get('container_cpu_usage_seconds_total')!.labelKeys).toEqual([...BASE_LABELS, 'cpu']);
  expect(described.get('container_network_receive_bytes_total')!.labelKeys).toEqual([...BASE_LABELS, 'interface']);
  expect(described.get('container_fs_usage_bytes')!.labelKeys).toEqual([...BASE_LABELS, 'device']);
});

test('every sample of a full input is described and has as many label values as its descriptor has keys', () => {
  for (const subject of [POD, CTR]) {
    const ms = metricsOf(subject, FULL);
    for (const m of ms) {
      const d = described.get(m.name);
      expect(d).toBeDefined();
      expect(m.labelValues).toHaveLength(d!.labelKeys.length);
      expect(m.metricType).toBe(Object.values(FAMILIES).find((f) => f.name === m.name)!.type);
      // Read on demand: kubelet stamps the scrape's time.
      expect(m.timestamp).toBe(0n);
      expect(m.labelValues.slice(0, BASE_LABELS.length)).toEqual(BASE_LABELS.map((k) => subject[k]));
    }
    // Every family is produced by some input: a family added to the table is also built.
    expect(new Set(ms.map((m) => m.name))).toEqual(new Set(described.keys()));
  }
});

test('a pod and its containers never give two samples with the same name and labels', () => {
  const all = [...metricsOf(POD, FULL), ...metricsOf(CTR, FULL), ...metricsOf({ ...CTR, name: '2', id: 'x' }, FULL)];
  const keys = all.map((m) => `${m.name}{${m.labelValues.join(',')}}`);
  expect(new Set(keys).size).toBe(keys.length);
});

test('values: whole seconds truncated, bytes and counts as read, one series per interface', () => {
  const ms = metricsOf(CTR, FULL);
  const one = (name: string): bigint => {
    const found = byName(ms, name);
    expect(found).toHaveLength(1);
    return found[0].value!.value;
  };
  expect(one('container_cpu_usage_seconds_total')).toBe(2n);
  expect(byName(ms, 'container_cpu_usage_seconds_total')[0].labelValues.at(-1)).toBe('total');
  expect(one('container_cpu_user_seconds_total')).toBe(1n);
  expect(one('container_cpu_system_seconds_total')).toBe(0n);
  expect(one('container_cpu_cfs_throttled_seconds_total')).toBe(3n);
  expect(one('container_memory_working_set_bytes')).toBe(90n);
  expect(one('container_processes')).toBe(2n);
  expect(one('container_oom_events_total')).toBe(1n);
  expect(one('container_start_time_seconds')).toBe(1_700_000_000n);
  expect(one('container_fs_usage_bytes')).toBe(4096n);
  expect(byName(ms, 'container_fs_usage_bytes')[0].labelValues.at(-1)).toBe('/dev/vda1');
  const rx = byName(ms, 'container_network_receive_packets_dropped_total');
  expect(rx.map((m) => [m.labelValues.at(-1), m.value!.value])).toEqual([
    ['eth0', 4n],
    ['eth1', 4n],
  ]);
  expect(wholeSeconds(999_999_999n)).toBe(0n);
  expect(wholeSeconds(undefined)).toBeUndefined();
});

test('memory failures: pgfault and pgmajfault, the cgroup own and its subtree, as cAdvisor labels them', () => {
  const ms = byName(metricsOf(CTR, FULL), 'container_memory_failures_total');
  expect(ms.map((m) => [...m.labelValues.slice(-2), m.value!.value])).toEqual([
    ['pgfault', 'container', 11n],
    ['pgfault', 'hierarchy', 111n],
    ['pgmajfault', 'container', 1n],
    ['pgmajfault', 'hierarchy', 2n],
  ]);
  expect(described.get('container_memory_failures_total')!.labelKeys.slice(-2)).toEqual(['failure_type', 'scope']);
});

test('open files and sockets, last seen in whole seconds, the limits in force', () => {
  const ms = metricsOf(CTR, FULL);
  const one = (name: string): bigint | undefined => {
    const found = byName(ms, name);
    expect(found.length).toBeLessThanOrEqual(1);
    return found[0]?.value!.value;
  };
  expect(one('container_file_descriptors')).toBe(12n);
  expect(one('container_sockets')).toBe(4n);
  expect(one('container_last_seen')).toBe(1_700_000_100n);
  expect(one('container_spec_cpu_period')).toBe(100000n);
  expect(one('container_spec_cpu_quota')).toBe(20000n);
  expect(one('container_spec_cpu_shares')).toBe(1024n);
  expect(one('container_spec_memory_limit_bytes')).toBe(64n << 20n);
  expect(one('container_spec_memory_swap_limit_bytes')).toBe(64n << 20n);
  // 0: no reservation, sent as cAdvisor sends it.
  expect(one('container_spec_memory_reservation_limit_bytes')).toBe(0n);
  // No quota (0) is left out, as cAdvisor does; no period read, no period sample.
  const noQuota = metricsOf(CTR, { cgroup: { ...FULL_CGROUP, spec: { cpuQuotaUs: 0n } } });
  expect(byName(noQuota, 'container_spec_cpu_quota')).toEqual([]);
  expect(byName(noQuota, 'container_spec_cpu_period')).toEqual([]);
});

test('block I/O: every operation per device in bytes, and the read/write bytes and counts under the fs names', () => {
  const ms = metricsOf(CTR, FULL);
  const usage = byName(ms, 'container_blkio_device_usage_total');
  expect(described.get('container_blkio_device_usage_total')!.labelKeys.slice(-4)).toEqual([
    'device',
    'major',
    'minor',
    'operation',
  ]);
  expect(usage.map((m) => [...m.labelValues.slice(-4), m.value!.value])).toEqual([
    ['/dev/vda', '254', '0', 'Read', 4096n],
    ['/dev/vda', '254', '0', 'Write', 8192n],
    ['/dev/vda', '254', '0', 'Sync', 12288n],
    ['/dev/vda', '254', '0', 'Async', 16384n],
    ['/dev/vda', '254', '0', 'Discard', 20480n],
    ['/dev/vda', '254', '0', 'Total', 24576n],
    ['/dev/block/7:3', '7', '3', 'Read', 512n],
  ]);
  const at = (name: string): [string, bigint][] => byName(ms, name).map((m) => [m.labelValues.at(-1)!, m.value!.value]);
  expect(at('container_fs_reads_bytes_total')).toEqual([
    ['/dev/vda', 4096n],
    ['/dev/block/7:3', 512n],
  ]);
  expect(at('container_fs_writes_bytes_total')).toEqual([['/dev/vda', 8192n]]);
  expect(at('container_fs_reads_total')).toEqual([
    ['/dev/vda', 3n],
    ['/dev/block/7:3', 1n],
  ]);
  expect(at('container_fs_writes_total')).toEqual([['/dev/vda', 5n]]);
  // A kernel that counts no I/O (v1 blk-throttle without a rule): no samples, not zeros.
  const none = metricsOf(CTR, { cgroup: { ...FULL_CGROUP, blkio: { serviceBytes: [], serviced: [] } } });
  expect(none.filter((m) => /blkio|fs_(reads|writes)/.test(m.name))).toEqual([]);
});

test('what the kernel did not give is left out, not sent as 0', () => {
  const partial: CgroupStats = {
    cpu: { usageNs: 5_000_000_000n },
    memory: { usageBytes: 1n },
    processes: 0,
    spec: {},
  };
  const ms = metricsOf(POD, { cgroup: partial });
  expect(ms.map((m) => m.name).sort()).toEqual(
    ['container_cpu_usage_seconds_total', 'container_memory_usage_bytes', 'container_processes'].sort(),
  );
  expect(metricsOf(POD, {})).toEqual([]);
});

test('a sample with the wrong number of extra label values is a programming error, not a dropped series', () => {
  expect(() => sample('netRxBytes', POD, 1n)).toThrow(/container_network_receive_bytes_total takes 1 extra/);
  expect(() => sample('memoryUsage', POD, 1n, ['x'])).toThrow(/takes 0 extra label values, got 1/);
  expect(sample('memoryUsage', POD, undefined)).toBeUndefined();
});
