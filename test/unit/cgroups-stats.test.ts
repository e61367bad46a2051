// The cgroup stat parsers, fed the kernel's own file formats (v1 from a 6.x
// kernel's memory/cpu/cpuacct/pids hierarchies, v2 from the unified one).
import {
  V1_STAT_FILES,
  V2_STAT_FILES,
  parseBlkio,
  parseFlatKeyed,
  parseIoStat,
  parsePressure,
  parseV1Stats,
  parseV2Stats,
  readCgroupStats,
  readPressure,
} from '../../src/containerizer/isolators/cgroups/stats';

const V1: Record<string, string> = {
  'cpuacct.usage': '2500000001\n',
  'cpuacct.usage_user': '1500000000\n',
  'cpuacct.usage_sys': '900000000\n',
  'cpuacct.stat': 'user 140\nsystem 80\n',
  'cpu.stat': 'nr_periods 120\nnr_throttled 7\nthrottled_time 3500000000\nnr_bursts 0\nburst_time 0\n',
  'cpu.shares': '1024\n',
  'cpu.cfs_period_us': '100000\n',
  'cpu.cfs_quota_us': '20000\n',
  'memory.usage_in_bytes': '10485760\n',
  'memory.limit_in_bytes': '67108864\n',
  // The kernel's "no limit" (PAGE_COUNTER_MAX pages).
  'memory.soft_limit_in_bytes': '9223372036854771712\n',
  'memory.memsw.limit_in_bytes': '134217728\n',
  'memory.max_usage_in_bytes': '16777216\n',
  'memory.failcnt': '3\n',
  'memory.kmem.usage_in_bytes': '655360\n',
  'memory.stat': [
    // The cgroup's own counters come first; the hierarchical total_* ones are what we report.
    'cache 1',
    'rss 2',
    'mapped_file 3',
    'inactive_file 4',
    'swap 5',
    'total_cache 4194304',
    'total_rss 6291456',
    'total_mapped_file 1048576',
    'total_swap 8192',
    'total_inactive_file 2097152',
    'total_active_file 1048576',
    'pgfault 700',
    'pgmajfault 7',
    'total_pgfault 900',
    'total_pgmajfault 9',
    '',
  ].join('\n'),
  'memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\noom_kill 2\n',
  'pids.current': '5\n',
  'pids.max': 'max\n',
  // No BFQ or CFQ (Linux 5.x+, mq-deadline): blk-throttle's counters, with a rule on 254:0 so it counts.
  'blkio.throttle.io_service_bytes_recursive': [
    '254:0 Read 8192',
    '254:0 Write 4096',
    '254:0 Sync 4096',
    '254:0 Async 8192',
    '254:0 Discard 0',
    '254:0 Total 12288',
    'Total 12288',
    '',
  ].join('\n'),
  'blkio.throttle.io_serviced_recursive': [
    '254:0 Read 2',
    '254:0 Write 1',
    '254:0 Sync 1',
    '254:0 Async 2',
    '254:0 Discard 0',
    '254:0 Total 3',
    'Total 3',
    '',
  ].join('\n'),
};

const V2: Record<string, string> = {
  'cpu.weight': '100\n',
  'cpu.max': 'max 100000\n',
  'memory.max': '67108864\n',
  'memory.min': '0\n',
  'memory.swap.max': 'max\n',
  'io.stat': [
    '254:0 rbytes=1048576 wbytes=2097152 rios=16 wios=32 dbytes=0 dios=0',
    '7:3 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0',
    '',
  ].join('\n'),
  'cpu.stat': [
    'usage_usec 2500001',
    'user_usec 1500000',
    'system_usec 1000001',
    'nr_periods 40',
    'nr_throttled 4',
    'throttled_usec 2000000',
    'nr_bursts 0',
    'burst_usec 0',
    '',
  ].join('\n'),
  'memory.current': '20971520\n',
  'memory.peak': '31457280\n',
  'memory.swap.current': '4096\n',
  'memory.stat': [
    'anon 8388608',
    'file 12582912',
    'kernel 1310720',
    'kernel_stack 65536',
    'slab 500000',
    'file_mapped 2097152',
    'inactive_file 25165824',
    'pgfault 5000',
    'pgmajfault 12',
    '',
  ].join('\n'),
  'memory.events': 'low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\noom_group_kill 0\n',
  'pids.current': '12\n',
  'pids.max': '1024\n',
};

test('parseFlatKeyed reads "key value" lines and skips what is not', () => {
  expect(parseFlatKeyed('a 1\nb 22\n\nbad line here\nc x\n')).toEqual(
    new Map([
      ['a', 1n],
      ['b', 22n],
    ]),
  );
  expect(parseFlatKeyed(undefined).size).toBe(0);
});

test('v1: cpuacct ns, CFS throttling, the hierarchical memory.stat fields, OOM kills and tasks', () => {
  expect(parseV1Stats(V1, 3)).toEqual({
    cpu: {
      usageNs: 2500000001n,
      userNs: 1500000000n,
      systemNs: 900000000n,
      periods: 120n,
      throttledPeriods: 7n,
      throttledNs: 3500000000n,
    },
    memory: {
      usageBytes: 10485760n,
      workingSetBytes: 10485760n - 2097152n,
      maxUsageBytes: 16777216n,
      rssBytes: 6291456n,
      cacheBytes: 4194304n,
      mappedFileBytes: 1048576n,
      swapBytes: 8192n,
      kernelBytes: 655360n,
      failcnt: 3n,
      oomKills: 2n,
      pgfault: { container: 700n, hierarchy: 900n },
      pgmajfault: { container: 7n, hierarchy: 9n },
    },
    processes: 3,
    threads: 5n,
    threadsMax: 0n,
    blkio: {
      serviceBytes: [
        { major: 254, minor: 0, op: 'Read', value: 8192n },
        { major: 254, minor: 0, op: 'Write', value: 4096n },
        { major: 254, minor: 0, op: 'Sync', value: 4096n },
        { major: 254, minor: 0, op: 'Async', value: 8192n },
        { major: 254, minor: 0, op: 'Discard', value: 0n },
        { major: 254, minor: 0, op: 'Total', value: 12288n },
      ],
      serviced: [
        { major: 254, minor: 0, op: 'Read', value: 2n },
        { major: 254, minor: 0, op: 'Write', value: 1n },
        { major: 254, minor: 0, op: 'Sync', value: 1n },
        { major: 254, minor: 0, op: 'Async', value: 2n },
        { major: 254, minor: 0, op: 'Discard', value: 0n },
        { major: 254, minor: 0, op: 'Total', value: 3n },
      ],
    },
    spec: {
      cpuShares: 1024n,
      cpuPeriodUs: 100000n,
      cpuQuotaUs: 20000n,
      memoryLimitBytes: 67108864n,
      // "No limit" is 0, as cAdvisor reports it.
      memoryReservationBytes: 0n,
      memorySwapLimitBytes: 134217728n,
    },
  });
});

test('v1 spec: no quota (-1), no swap accounting (no memsw file: no swap limit, 0), unlimited memory (0)', () => {
  const s = parseV1Stats(
    {
      ...V1,
      'cpu.cfs_quota_us': '-1\n',
      'memory.memsw.limit_in_bytes': undefined,
      'memory.limit_in_bytes': '9223372036854771712\n',
    },
    1,
  );
  expect(s.spec).toEqual({
    cpuShares: 1024n,
    cpuPeriodUs: 100000n,
    cpuQuotaUs: undefined,
    memoryLimitBytes: 0n,
    memoryReservationBytes: 0n,
    memorySwapLimitBytes: 0n,
  });
  // No memory hierarchy at all: nothing is known about its limits.
  const bare = parseV1Stats({}, 0).spec;
  expect(Object.values(bare).every((v) => v === undefined)).toBe(true);
});

test('v1 block I/O: the scheduler counters (BFQ, CFQ) before blk-throttle, "Total 0" alone as no devices', () => {
  const bfq = {
    ...V1,
    'blkio.bfq.io_service_bytes_recursive': '8:0 Read 1\n8:0 Write 2\nTotal 3\n',
    'blkio.bfq.io_serviced_recursive': '8:0 Read 1\n8:0 Write 1\nTotal 2\n',
  };
  expect(parseV1Stats(bfq, 0).blkio!.serviceBytes).toEqual([
    { major: 8, minor: 0, op: 'Read', value: 1n },
    { major: 8, minor: 0, op: 'Write', value: 2n },
  ]);
  const cfq = { ...V1, 'blkio.io_service_bytes_recursive': '8:16 Read 5\n', 'blkio.io_serviced_recursive': '' };
  expect(parseV1Stats(cfq, 0).blkio!.serviceBytes).toEqual([{ major: 8, minor: 16, op: 'Read', value: 5n }]);
  // blk-throttle on a 5.x+ kernel with no throttle rule on any device counts nothing.
  const idle = {
    ...V1,
    'blkio.throttle.io_service_bytes_recursive': 'Total 0\n',
    'blkio.throttle.io_serviced_recursive': 'Total 0\n',
  };
  expect(parseV1Stats(idle, 0).blkio).toEqual({ serviceBytes: [], serviced: [] });
  // No blkio hierarchy mounted: unknown.
  const unmounted = {
    ...V1,
    'blkio.throttle.io_service_bytes_recursive': undefined,
    'blkio.throttle.io_serviced_recursive': undefined,
  };
  expect(parseV1Stats(unmounted, 0).blkio).toBeUndefined();
  expect(parseBlkio('254:0 Read 1\nbad\nTotal 1\n')).toEqual([{ major: 254, minor: 0, op: 'Read', value: 1n }]);
});

test('v1 on an older kernel: user/system from cpuacct.stat ticks (USER_HZ 100), the rest absent', () => {
  const old = { ...V1, 'cpuacct.usage_user': undefined, 'cpuacct.usage_sys': undefined };
  const s = parseV1Stats(old, 1);
  expect(s.cpu.userNs).toBe(140n * 10_000_000n);
  expect(s.cpu.systemNs).toBe(80n * 10_000_000n);
  const bare = parseV1Stats({ 'cpuacct.usage': '7\n' }, 0);
  expect(bare.cpu).toEqual({ usageNs: 7n });
  // Nothing the kernel did not say becomes a number.
  expect(Object.values(bare.memory).every((v) => v === undefined)).toBe(true);
  expect(bare.threads).toBeUndefined();
});

test('v2: usec → ns, anon/file split, peak, swap, memory.events max and oom_kill, pids limit', () => {
  expect(parseV2Stats(V2, 4)).toEqual({
    cpu: {
      usageNs: 2500001000n,
      userNs: 1500000000n,
      systemNs: 1000001000n,
      periods: 40n,
      throttledPeriods: 4n,
      throttledNs: 2000000000n,
    },
    memory: {
      usageBytes: 20971520n,
      // inactive_file above usage: the working set is 0, never negative.
      workingSetBytes: 0n,
      maxUsageBytes: 31457280n,
      rssBytes: 8388608n,
      cacheBytes: 12582912n,
      mappedFileBytes: 2097152n,
      swapBytes: 4096n,
      kernelBytes: 1310720n,
      failcnt: 9n,
      oomKills: 1n,
      // v2 counts faults for the subtree only: both scopes.
      pgfault: { container: 5000n, hierarchy: 5000n },
      pgmajfault: { container: 12n, hierarchy: 12n },
    },
    processes: 4,
    threads: 12n,
    threadsMax: 1024n,
    blkio: {
      serviceBytes: [
        { major: 254, minor: 0, op: 'Read', value: 1048576n },
        { major: 254, minor: 0, op: 'Write', value: 2097152n },
        { major: 7, minor: 3, op: 'Read', value: 4096n },
        { major: 7, minor: 3, op: 'Write', value: 0n },
      ],
      serviced: [
        { major: 254, minor: 0, op: 'Read', value: 16n },
        { major: 254, minor: 0, op: 'Write', value: 32n },
        { major: 7, minor: 3, op: 'Read', value: 1n },
        { major: 7, minor: 3, op: 'Write', value: 0n },
      ],
    },
    spec: {
      // cpu.weight 100 (v2's default) → 2 + 99 * 262142 / 9999: cAdvisor's linear inverse of runc's conversion.
      cpuShares: 2597n,
      cpuPeriodUs: 100000n,
      cpuQuotaUs: undefined,
      memoryLimitBytes: 67108864n,
      memoryReservationBytes: 0n,
      memorySwapLimitBytes: 0n,
    },
  });
});

test('v2 spec: a quota in cpu.max, weight out of range, no io controller', () => {
  const s = parseV2Stats({ ...V2, 'cpu.max': '20000 100000\n', 'cpu.weight': '0\n', 'io.stat': undefined }, 0);
  expect(s.spec.cpuQuotaUs).toBe(20000n);
  expect(s.spec.cpuPeriodUs).toBe(100000n);
  expect(s.spec.cpuShares).toBeUndefined();
  expect(s.blkio).toBeUndefined();
  expect(parseIoStat('259:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=5 dios=6 cost.usage=7\n')).toEqual({
    serviceBytes: [
      { major: 259, minor: 0, op: 'Read', value: 1n },
      { major: 259, minor: 0, op: 'Write', value: 2n },
    ],
    serviced: [
      { major: 259, minor: 0, op: 'Read', value: 3n },
      { major: 259, minor: 0, op: 'Write', value: 4n },
    ],
  });
});

test('v2 before 5.18: kernel memory is the sum of the parts the kernel documents it as', () => {
  const stat = 'anon 1\nfile 2\nkernel_stack 65536\npagetables 4096\nslab 500000\ninactive_file 0\n';
  expect(parseV2Stats({ ...V2, 'memory.stat': stat }, 0).memory.kernelBytes).toBe(65536n + 4096n + 500000n);
  expect(parseV2Stats({ ...V2, 'memory.stat': 'anon 1\n' }, 0).memory.kernelBytes).toBeUndefined();
});

test.each([1, 2] as const)('readCgroupStats v%i reads every listed file, and only four for the usage summary', (v) => {
  const files = v === 1 ? V1 : V2;
  const asked: string[] = [];
  const read = (_controller: string, file: string): string | undefined => {
    asked.push(file);
    return files[file];
  };
  const all = readCgroupStats(v, 2, read);
  expect(asked.sort()).toEqual((v === 1 ? V1_STAT_FILES : V2_STAT_FILES).map((f) => f[1]).sort());
  expect(all).toEqual(v === 1 ? parseV1Stats(files, 2) : parseV2Stats(files, 2));

  asked.length = 0;
  const usage = readCgroupStats(v, undefined, read, 'usage');
  expect(asked).toHaveLength(4);
  expect(usage.cpu.usageNs).toBe(all.cpu.usageNs);
  expect(usage.memory.usageBytes).toBe(all.memory.usageBytes);
  expect(usage.memory.workingSetBytes).toBe(all.memory.workingSetBytes);
  // what ContainerStats reports besides: RSS, page faults, available (from the limit)
  expect(usage.memory.rssBytes).toBe(all.memory.rssBytes);
  expect(usage.memory.pgfault).toEqual(all.memory.pgfault);
  expect(usage.spec.memoryLimitBytes).toBe(all.spec.memoryLimitBytes);
  // ContainerStats has no process count: not counted, not made up.
  expect(usage.processes).toBeUndefined();
});

test('v1 files name the controller whose hierarchy holds them', () => {
  for (const [controller, file] of V1_STAT_FILES) expect(file.startsWith(`${controller}.`)).toBe(true);
});

describe('pressure stall information', () => {
  test('some and full lines, total from µs to ns', () => {
    const p = parsePressure(
      'some avg10=1.50 avg60=0.25 avg300=0.00 total=13334\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=10358\n',
    );
    expect(p).toEqual({
      some: { avg10: 1.5, avg60: 0.25, avg300: 0, totalNs: 13_334_000n },
      full: { avg10: 0, avg60: 0, avg300: 0, totalNs: 10_358_000n },
    });
  });

  test('a cpu.pressure without a full line (before Linux 5.13) has none', () => {
    expect(parsePressure('some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n')?.full).toBeUndefined();
  });

  test('absent or garbled files are unknown, not zero', () => {
    expect(parsePressure(undefined)).toBeUndefined();
    expect(parsePressure('')).toBeUndefined();
    expect(parsePressure('full avg10=0.00 avg60=0.00 avg300=0.00 total=5\n')).toBeUndefined();
    expect(parsePressure('some avg10=x avg60=0.00 avg300=0.00 total=5\n')).toBeUndefined();
  });

  test('readPressure: undefined when no file is there, else each file parsed', () => {
    expect(readPressure(() => undefined)).toBeUndefined();
    const files: Record<string, string> = { 'memory.pressure': 'some avg10=2.00 avg60=1.00 avg300=0.50 total=7\n' };
    const psi = readPressure((f) => files[f]);
    expect(psi?.cpu).toBeUndefined();
    expect(psi?.memory?.some).toEqual({ avg10: 2, avg60: 1, avg300: 0.5, totalNs: 7000n });
  });
});
