// What the kernel counts for one cgroup, v1 and v2 in one shape: CPU time
// and CFS throttling, memory (usage, working set, the memory.stat split,
// peak, swap, kernel, limit hits, OOM kills) and tasks. Subtree included,
// as the kernel counts it (v1 reads the hierarchical total_* fields). The
// parsers are pure (file name → text in, numbers out); the manager does the
// reading. A field the kernel does not provide (an old kernel, accounting
// switched off) stays undefined rather than becoming a made-up 0.

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
  };
  /** Processes in the subtree (the caller counts them from cgroup.procs). */
  processes: number;
  /** Tasks (threads) the pids controller counts, and its limit (0: none). */
  threads?: bigint;
  threadsMax?: bigint;
}

/**
 * The files each version's stats come from: the controller that owns each on
 * v1, and whether the usage summary (CPU total, memory usage and working set:
 * ContainerStats, polled by kubelet) needs it, so that hot path reads three
 * files rather than all of them.
 */
type StatFile = readonly [controller: string, file: string, usage?: 'usage'];

export const V1_STAT_FILES: readonly StatFile[] = [
  ['cpuacct', 'cpuacct.usage', 'usage'],
  ['cpuacct', 'cpuacct.usage_user'],
  ['cpuacct', 'cpuacct.usage_sys'],
  ['cpuacct', 'cpuacct.stat'],
  ['cpu', 'cpu.stat'],
  ['memory', 'memory.usage_in_bytes', 'usage'],
  ['memory', 'memory.max_usage_in_bytes'],
  ['memory', 'memory.failcnt'],
  ['memory', 'memory.kmem.usage_in_bytes'],
  ['memory', 'memory.stat', 'usage'],
  ['memory', 'memory.oom_control'],
  ['pids', 'pids.current'],
  ['pids', 'pids.max'],
];

export const V2_STAT_FILES: readonly StatFile[] = [
  ['cpu', 'cpu.stat', 'usage'],
  ['memory', 'memory.current', 'usage'],
  ['memory', 'memory.peak'],
  ['memory', 'memory.swap.current'],
  ['memory', 'memory.stat', 'usage'],
  ['memory', 'memory.events'],
  ['pids', 'pids.current'],
  ['pids', 'pids.max'],
];

/** File name → contents; undefined when the file is absent. */
export type StatFiles = Readonly<Record<string, string | undefined>>;

/** cpuacct.stat counts in USER_HZ ticks, which Linux fixes at 100 per second for every architecture. */
const NS_PER_USER_HZ_TICK = 10_000_000n;

/** "key value" lines (cpu.stat, memory.stat, memory.events, memory.oom_control, cpuacct.stat). */
export function parseFlatKeyed(text: string | undefined): Map<string, bigint> {
  const out = new Map<string, bigint>();
  for (const line of (text ?? '').split('\n')) {
    const m = /^(\S+) (\d+)$/.exec(line.trim());
    if (m) out.set(m[1], BigInt(m[2]));
  }
  return out;
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

function workingSet(usage: bigint | undefined, inactiveFile: bigint | undefined): bigint | undefined {
  if (usage === undefined) return undefined;
  const inactive = inactiveFile ?? 0n;
  return usage > inactive ? usage - inactive : 0n;
}

function sum(values: (bigint | undefined)[]): bigint | undefined {
  const present = values.filter((v): v is bigint => v !== undefined);
  return present.length === 0 ? undefined : present.reduce((a, b) => a + b, 0n);
}

export function parseV1Stats(f: StatFiles, processes: number): CgroupStats {
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
    },
    processes,
    threads: parseSingle(f['pids.current']),
    threadsMax: parseLimit(f['pids.max']),
  };
}

export function parseV2Stats(f: StatFiles, processes: number): CgroupStats {
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
    },
    processes,
    threads: parseSingle(f['pids.current']),
    threadsMax: parseLimit(f['pids.max']),
  };
}

/**
 * Reads the version's stat files through `read` (controller, file name →
 * contents, undefined when absent) and parses them; `scope` 'usage' reads
 * only what CPU total, memory usage and working set need.
 */
export async function readCgroupStats(
  version: 1 | 2,
  processes: number,
  read: (controller: string, file: string) => Promise<string | undefined>,
  scope: 'all' | 'usage' = 'all',
): Promise<CgroupStats> {
  const list = (version === 2 ? V2_STAT_FILES : V1_STAT_FILES).filter((f) => scope === 'all' || f[2] === 'usage');
  const texts = await Promise.all(list.map(([controller, file]) => read(controller, file)));
  const files: Record<string, string | undefined> = {};
  list.forEach(([, file], i) => (files[file] = texts[i]));
  return version === 2 ? parseV2Stats(files, processes) : parseV1Stats(files, processes);
}
