// What the kernel counts for one cgroup, v1 and v2 in one shape: CPU time
// and CFS throttling, memory (usage, working set, the memory.stat split,
// peak, swap, kernel, limit hits, page faults, OOM kills), tasks, block I/O
// per device, and the limits in force (cAdvisor's "spec": CPU shares,
// period and quota, memory limit, reservation and swap limit). Subtree
// included, as the kernel counts it (v1 reads the hierarchical total_*
// fields). The parsers are pure (file name → text in, numbers out); the
// manager does the reading. A field the kernel does not provide (an old
// kernel, accounting switched off) stays undefined rather than becoming a
// made-up 0.

/** One per-device block I/O counter: "major:minor op value" (op: Read, Write, Sync, Async, Discard, Total). */
export interface BlkioEntry {
  major: number;
  minor: number;
  op: string;
  value: bigint;
}

/** One line of a *.pressure file: the averages in percent, total stall time (the file's µs, here ns). */
export interface PressureLine {
  avg10: number;
  avg60: number;
  avg300: number;
  totalNs: bigint;
}

/** A *.pressure file: "some" always; "full" for memory and io, and for cpu at cgroup level since Linux 5.13. */
export interface Pressure {
  some: PressureLine;
  full?: PressureLine;
}

export interface CgroupStats {
  cpu: {
    usageNs?: bigint;
    userNs?: bigint;
    systemNs?: bigint;
    /** CFS enforcement periods elapsed / throttled (only move under a quota). */
    periods?: bigint;
    throttledPeriods?: bigint;
    throttledNs?: bigint;
  };
  memory: {
    usageBytes?: bigint;
    /** usage minus inactive file pages, never below 0 (what kubelet evicts on). */
    workingSetBytes?: bigint;
    maxUsageBytes?: bigint;
    rssBytes?: bigint;
    cacheBytes?: bigint;
    mappedFileBytes?: bigint;
    swapBytes?: bigint;
    kernelBytes?: bigint;
    /** Times usage hit the limit (v1 memory.failcnt, v2 memory.events max). */
    failcnt?: bigint;
    oomKills?: bigint;
    /**
     * Page faults, all and major (memory.stat pgfault/pgmajfault): the
     * cgroup's own ("container") and its subtree's ("hierarchy"). v1 keeps
     * both (pgfault, total_pgfault); v2 counts only the subtree, which
     * serves as both, as cAdvisor reports it.
     */
    pgfault?: { container: bigint; hierarchy: bigint };
    pgmajfault?: { container: bigint; hierarchy: bigint };
  };
  /**
   * Processes in the subtree (the caller counts them from cgroup.procs);
   * undefined when the caller did not count them (ContainerStats reports
   * no process count, so its 'usage' reads skip the walk).
   */
  processes?: number;
  /** Tasks (threads) the pids controller counts, and its limit (0: none). */
  threads?: bigint;
  threadsMax?: bigint;
  /** Open file descriptors of those processes, and how many are sockets (the caller walks /proc/<pid>/fd). */
  fileDescriptors?: bigint;
  sockets?: bigint;
  /**
   * Block I/O per device, subtree included: bytes and operations. Empty when
   * the kernel counts none: v1's blk-throttle counts a device's I/O only once
   * some cgroup has a throttle rule on it (Linux 5.x+, no CFQ), so on most v1
   * hosts these files hold only "Total 0".
   */
  blkio?: { serviceBytes: BlkioEntry[]; serviced: BlkioEntry[] };
  /**
   * Pressure stall information of the cgroup (cpu/memory/io.pressure):
   * cgroup v2 only, so on a v1 host with the hybrid cgroup2 tree it comes
   * from the cgroup's twin there (the manager places processes in both).
   * Undefined where the kernel keeps none (no PSI, psi=0, plain v1).
   */
  psi?: { cpu?: Pressure; memory?: Pressure; io?: Pressure };
  /**
   * The limits in force, as cAdvisor's ContainerSpec reads them from the
   * cgroup: CPU shares (v2: from cpu.weight), CFS period and quota in µs
   * (quota undefined when there is none), memory limit, reservation (v1
   * soft limit, v2 memory.min) and swap limit (v1 memory+swap, v2 swap
   * alone) in bytes, 0 meaning none.
   */
  spec: {
    cpuShares?: bigint;
    cpuPeriodUs?: bigint;
    cpuQuotaUs?: bigint;
    memoryLimitBytes?: bigint;
    memoryReservationBytes?: bigint;
    memorySwapLimitBytes?: bigint;
  };
}

/**
 * The files each version's stats come from: the controller that owns each on
 * v1, and whether the usage summary (ContainerStats, polled by kubelet: CPU
 * total, memory usage, working set, RSS, page faults and the limit) needs
 * it, so that hot path reads four files rather than all of them.
 */
type StatFile = readonly [controller: string, file: string, usage?: 'usage'];

export const V1_STAT_FILES: readonly StatFile[] = [
  ['cpuacct', 'cpuacct.usage', 'usage'],
  ['cpuacct', 'cpuacct.usage_user'],
  ['cpuacct', 'cpuacct.usage_sys'],
  ['cpuacct', 'cpuacct.stat'],
  ['cpu', 'cpu.stat'],
  ['cpu', 'cpu.shares'],
  ['cpu', 'cpu.cfs_period_us'],
  ['cpu', 'cpu.cfs_quota_us'],
  ['memory', 'memory.usage_in_bytes', 'usage'],
  ['memory', 'memory.limit_in_bytes', 'usage'],
  ['memory', 'memory.soft_limit_in_bytes'],
  ['memory', 'memory.memsw.limit_in_bytes'],
  ['memory', 'memory.max_usage_in_bytes'],
  ['memory', 'memory.failcnt'],
  ['memory', 'memory.kmem.usage_in_bytes'],
  ['memory', 'memory.stat', 'usage'],
  ['memory', 'memory.oom_control'],
  ['pids', 'pids.current'],
  ['pids', 'pids.max'],
  // Whichever of the I/O schedulers' counters the kernel keeps (BFQ, CFQ before Linux 5.0), else blk-throttle's.
  ['blkio', 'blkio.bfq.io_service_bytes_recursive'],
  ['blkio', 'blkio.bfq.io_serviced_recursive'],
  ['blkio', 'blkio.io_service_bytes_recursive'],
  ['blkio', 'blkio.io_serviced_recursive'],
  ['blkio', 'blkio.throttle.io_service_bytes_recursive'],
  ['blkio', 'blkio.throttle.io_serviced_recursive'],
];

export const V2_STAT_FILES: readonly StatFile[] = [
  ['cpu', 'cpu.stat', 'usage'],
  ['cpu', 'cpu.weight'],
  ['cpu', 'cpu.max'],
  ['memory', 'memory.current', 'usage'],
  ['memory', 'memory.max', 'usage'],
  ['memory', 'memory.min'],
  ['memory', 'memory.swap.max'],
  ['memory', 'memory.peak'],
  ['memory', 'memory.swap.current'],
  ['memory', 'memory.stat', 'usage'],
  ['memory', 'memory.events'],
  ['pids', 'pids.current'],
  ['pids', 'pids.max'],
  ['io', 'io.stat'],
];

/**
 * How much a stats read covers: 'all' (every file, the processes of every
 * hierarchy and their open files: metrics), 'summary' (the usage files and a
 * process count: PodSandboxStats), 'usage' (the usage files: ContainerStats).
 */
export type CgroupStatsScope = 'all' | 'summary' | 'usage';

/** File name → contents; undefined when the file is absent. */
export type StatFiles = Readonly<Record<string, string | undefined>>;

/** cpuacct.stat counts in USER_HZ ticks, which Linux fixes at 100 per second for every architecture. */
const NS_PER_USER_HZ_TICK = 10_000_000n;

/** "key value" lines (cpu.stat, memory.stat, memory.events, memory.oom_control, cpuacct.stat). */
export function parseFlatKeyed(text: string | undefined): Map<string, bigint> {
  const out = new Map<string, bigint>();
  // indexOf rather than a regex per line: memory.stat has ~70 lines and is read per container per poll.
  for (const raw of (text ?? '').split('\n')) {
    const line = raw.trim();
    const sp = line.indexOf(' ');
    if (sp <= 0) continue;
    const value = line.slice(sp + 1);
    if (DIGITS.test(value)) out.set(line.slice(0, sp), BigInt(value));
  }
  return out;
}

const DIGITS = /^\d+$/;

/**
 * A *.pressure file ("some avg10=0.12 avg60=0.05 avg300=0.01 total=1234" and
 * the same for "full"); undefined without a valid "some" line.
 */
export function parsePressure(text: string | undefined): Pressure | undefined {
  const lines: Partial<Record<'some' | 'full', PressureLine>> = {};
  for (const line of (text ?? '').split('\n')) {
    const m = /^(some|full) avg10=(\d+(?:\.\d+)?) avg60=(\d+(?:\.\d+)?) avg300=(\d+(?:\.\d+)?) total=(\d+)$/.exec(
      line.trim(),
    );
    if (!m) continue;
    lines[m[1] as 'some' | 'full'] = {
      avg10: Number(m[2]),
      avg60: Number(m[3]),
      avg300: Number(m[4]),
      totalNs: BigInt(m[5]) * 1000n,
    };
  }
  return lines.some ? { some: lines.some, full: lines.full } : undefined;
}

/** The pressure files of one cgroup v2 directory; undefined when none is there. */
export function readPressure(read: (file: string) => string | undefined): CgroupStats['psi'] {
  const [cpu, memory, io] = ['cpu.pressure', 'memory.pressure', 'io.pressure'].map((f) => parsePressure(read(f)));
  return cpu || memory || io ? { cpu, memory, io } : undefined;
}

/** A file holding one unsigned number; undefined otherwise. */
export function parseSingle(text: string | undefined): bigint | undefined {
  const t = text?.trim();
  return t && /^\d+$/.test(t) ? BigInt(t) : undefined;
}

/** pids.max: a number, or "max" (no limit: 0, as cAdvisor reports it). */
function parseLimit(text: string | undefined): bigint | undefined {
  return text?.trim() === 'max' ? 0n : parseSingle(text);
}

/**
 * v1 memory limits say "none" with the largest page-aligned value
 * (PAGE_COUNTER_MAX pages, 2^63 - 4096 on x86-64); anything above 2^62
 * is no limit: 0, as cAdvisor reports it. v2 writes "max".
 */
const NO_MEMORY_LIMIT_ABOVE = 1n << 62n;

function parseMemoryLimit(text: string | undefined): bigint | undefined {
  const v = parseLimit(text);
  return v !== undefined && v > NO_MEMORY_LIMIT_ABOVE ? 0n : v;
}

/** A v1 blkio file: "major:minor Op value" lines (and a closing "Total n", skipped). */
export function parseBlkio(text: string | undefined): BlkioEntry[] {
  const out: BlkioEntry[] = [];
  for (const line of (text ?? '').split('\n')) {
    const m = /^(\d+):(\d+) (\S+) (\d+)$/.exec(line.trim());
    if (m) out.push({ major: Number(m[1]), minor: Number(m[2]), op: m[3], value: BigInt(m[4]) });
  }
  return out;
}

/**
 * v2 io.stat: "major:minor rbytes=.. wbytes=.. rios=.. wios=.. dbytes=.. dios=..",
 * mapped to v1's Read/Write as runc and cAdvisor do (discards are not reported there).
 */
export function parseIoStat(text: string | undefined): { serviceBytes: BlkioEntry[]; serviced: BlkioEntry[] } {
  const serviceBytes: BlkioEntry[] = [];
  const serviced: BlkioEntry[] = [];
  const into: Record<string, [BlkioEntry[], string]> = {
    rbytes: [serviceBytes, 'Read'],
    wbytes: [serviceBytes, 'Write'],
    rios: [serviced, 'Read'],
    wios: [serviced, 'Write'],
  };
  for (const line of (text ?? '').split('\n')) {
    const [dev, ...fields] = line.trim().split(/\s+/);
    const d = /^(\d+):(\d+)$/.exec(dev ?? '');
    if (!d) continue;
    for (const f of fields) {
      const kv = /^([a-z.]+)=(\d+)$/.exec(f);
      const target = kv ? into[kv[1]] : undefined;
      if (kv && target)
        target[0].push({ major: Number(d[1]), minor: Number(d[2]), op: target[1], value: BigInt(kv[2]) });
    }
  }
  return { serviceBytes, serviced };
}

/** The v1 source with counters: BFQ's, CFQ's, else blk-throttle's (possibly empty). */
function v1Blkio(f: StatFiles): { serviceBytes: BlkioEntry[]; serviced: BlkioEntry[] } | undefined {
  const sources = ['blkio.bfq.io_service', 'blkio.io_service', 'blkio.throttle.io_service'];
  const read = (prefix: string): { serviceBytes: BlkioEntry[]; serviced: BlkioEntry[] } => ({
    serviceBytes: parseBlkio(f[`${prefix}_bytes_recursive`]),
    serviced: parseBlkio(f[`${prefix}d_recursive`]),
  });
  for (const prefix of sources) {
    const s = read(prefix);
    if (s.serviceBytes.length > 0 || s.serviced.length > 0) return s;
  }
  // No blkio hierarchy at all: nothing was read, so nothing is known.
  if (f['blkio.throttle.io_service_bytes_recursive'] === undefined) return undefined;
  return read('blkio.throttle.io_service');
}

/** cpu.weight [1, 10000] → shares [2, 262144]: the inverse of runc's conversion, as cAdvisor computes it. */
function weightToShares(weight: bigint | undefined): bigint | undefined {
  if (weight === undefined || weight < 1n || weight > 10000n) return undefined;
  return 2n + ((weight - 1n) * 262142n) / 9999n;
}

/** Page-fault counters by scope; undefined unless the kernel gave both. */
function faults(
  container: bigint | undefined,
  hierarchy: bigint | undefined,
): { container: bigint; hierarchy: bigint } | undefined {
  return container === undefined || hierarchy === undefined ? undefined : { container, hierarchy };
}

function workingSet(usage: bigint | undefined, inactiveFile: bigint | undefined): bigint | undefined {
  if (usage === undefined) return undefined;
  const inactive = inactiveFile ?? 0n;
  return usage > inactive ? usage - inactive : 0n;
}

function sum(values: (bigint | undefined)[]): bigint | undefined {
  const present = values.filter((v): v is bigint => v !== undefined);
  return present.length === 0 ? undefined : present.reduce((a, b) => a + b, 0n);
}

export function parseV1Stats(f: StatFiles, processes: number | undefined): CgroupStats {
  const acct = parseFlatKeyed(f['cpuacct.stat']);
  const cpu = parseFlatKeyed(f['cpu.stat']);
  const mem = parseFlatKeyed(f['memory.stat']);
  const oom = parseFlatKeyed(f['memory.oom_control']);
  const usage = parseSingle(f['memory.usage_in_bytes']);
  const ticks = (k: string): bigint | undefined => {
    const v = acct.get(k);
    return v === undefined ? undefined : v * NS_PER_USER_HZ_TICK;
  };
  return {
    cpu: {
      usageNs: parseSingle(f['cpuacct.usage']),
      // usage_user/usage_sys are in ns (kernel 4.7+); cpuacct.stat's ticks are the older, coarser source.
      userNs: parseSingle(f['cpuacct.usage_user']) ?? ticks('user'),
      systemNs: parseSingle(f['cpuacct.usage_sys']) ?? ticks('system'),
      periods: cpu.get('nr_periods'),
      throttledPeriods: cpu.get('nr_throttled'),
      throttledNs: cpu.get('throttled_time'),
    },
    memory: {
      usageBytes: usage,
      workingSetBytes: workingSet(usage, mem.get('total_inactive_file')),
      maxUsageBytes: parseSingle(f['memory.max_usage_in_bytes']),
      rssBytes: mem.get('total_rss'),
      cacheBytes: mem.get('total_cache'),
      mappedFileBytes: mem.get('total_mapped_file'),
      // Only with swap accounting (swapaccount=1).
      swapBytes: mem.get('total_swap'),
      kernelBytes: parseSingle(f['memory.kmem.usage_in_bytes']),
      failcnt: parseSingle(f['memory.failcnt']),
      // oom_kill is in memory.oom_control since 4.13.
      oomKills: oom.get('oom_kill'),
      pgfault: faults(mem.get('pgfault'), mem.get('total_pgfault')),
      pgmajfault: faults(mem.get('pgmajfault'), mem.get('total_pgmajfault')),
    },
    processes,
    threads: parseSingle(f['pids.current']),
    threadsMax: parseLimit(f['pids.max']),
    blkio: v1Blkio(f),
    spec: v1Spec(f),
  };
}

function v1Spec(f: StatFiles): CgroupStats['spec'] {
  const limit = parseMemoryLimit(f['memory.limit_in_bytes']);
  const quota = f['cpu.cfs_quota_us']?.trim();
  return {
    cpuShares: parseSingle(f['cpu.shares']),
    cpuPeriodUs: parseSingle(f['cpu.cfs_period_us']),
    // -1: no quota.
    cpuQuotaUs: quota === '-1' ? undefined : parseSingle(quota),
    memoryLimitBytes: limit,
    memoryReservationBytes: parseMemoryLimit(f['memory.soft_limit_in_bytes']),
    // memsw exists only with swap accounting (swapaccount=1); without it no swap limit is enforced: none, 0.
    memorySwapLimitBytes: parseMemoryLimit(f['memory.memsw.limit_in_bytes']) ?? (limit === undefined ? undefined : 0n),
  };
}

export function parseV2Stats(f: StatFiles, processes: number | undefined): CgroupStats {
  const cpu = parseFlatKeyed(f['cpu.stat']);
  const mem = parseFlatKeyed(f['memory.stat']);
  const events = parseFlatKeyed(f['memory.events']);
  const usage = parseSingle(f['memory.current']);
  const us = (k: string): bigint | undefined => {
    const v = cpu.get(k);
    return v === undefined ? undefined : v * 1000n;
  };
  return {
    cpu: {
      usageNs: us('usage_usec'),
      userNs: us('user_usec'),
      systemNs: us('system_usec'),
      periods: cpu.get('nr_periods'),
      throttledPeriods: cpu.get('nr_throttled'),
      throttledNs: us('throttled_usec'),
    },
    memory: {
      usageBytes: usage,
      workingSetBytes: workingSet(usage, mem.get('inactive_file')),
      // memory.peak since 5.19.
      maxUsageBytes: parseSingle(f['memory.peak']),
      rssBytes: mem.get('anon'),
      cacheBytes: mem.get('file'),
      mappedFileBytes: mem.get('file_mapped'),
      swapBytes: parseSingle(f['memory.swap.current']),
      // "kernel" since 5.18; before it, the parts the kernel documents it as made of.
      kernelBytes:
        mem.get('kernel') ?? sum(['kernel_stack', 'pagetables', 'percpu', 'vmalloc', 'slab'].map((k) => mem.get(k))),
      failcnt: events.get('max'),
      oomKills: events.get('oom_kill'),
      pgfault: faults(mem.get('pgfault'), mem.get('pgfault')),
      pgmajfault: faults(mem.get('pgmajfault'), mem.get('pgmajfault')),
    },
    processes,
    threads: parseSingle(f['pids.current']),
    threadsMax: parseLimit(f['pids.max']),
    // io.stat is there only where the io controller is enabled for the cgroup.
    blkio: f['io.stat'] === undefined ? undefined : parseIoStat(f['io.stat']),
    spec: v2Spec(f),
  };
}

function v2Spec(f: StatFiles): CgroupStats['spec'] {
  // cpu.max: "<quota|max> <period>".
  const max = /^(\d+|max) (\d+)$/.exec(f['cpu.max']?.trim() ?? '');
  const limit = parseMemoryLimit(f['memory.max']);
  return {
    cpuShares: weightToShares(parseSingle(f['cpu.weight'])),
    cpuPeriodUs: max ? BigInt(max[2]) : undefined,
    cpuQuotaUs: max && max[1] !== 'max' ? BigInt(max[1]) : undefined,
    memoryLimitBytes: limit,
    memoryReservationBytes: parseMemoryLimit(f['memory.min']),
    // memory.swap.max is missing on a kernel without swap support: no swap limit, 0.
    memorySwapLimitBytes: parseMemoryLimit(f['memory.swap.max']) ?? (limit === undefined ? undefined : 0n),
  };
}

/**
 * Reads the version's stat files through `read` (controller, file name →
 * contents, undefined when absent) and parses them; `scope` 'usage' reads
 * only what CPU total, memory usage and working set need. Synchronous: the
 * files are small kernel-made texts (the manager reads each with three
 * syscalls), where a thread-pool trip per file cost more than the read.
 */
export function readCgroupStats(
  version: 1 | 2,
  processes: number | undefined,
  read: (controller: string, file: string) => string | undefined,
  scope: 'all' | 'usage' = 'all',
): CgroupStats {
  const files: Record<string, string | undefined> = {};
  for (const [controller, file, use] of version === 2 ? V2_STAT_FILES : V1_STAT_FILES) {
    if (scope === 'all' || use === 'usage') files[file] = read(controller, file);
  }
  return version === 2 ? parseV2Stats(files, processes) : parseV1Stats(files, processes);
}
