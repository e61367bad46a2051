// Resources → systemd unit properties, pure (unit-tested in
// test/unit/cgroups-systemd-properties.test.ts).
//
// What systemd can express becomes a unit property, so systemd itself writes
// the file and writes it again on `daemon-reload` (a property is never reset
// by a reload; a file written behind systemd's back would be). What it cannot
// express on this cgroup version stays a direct file write, in files systemd
// never touches:
//
//               cgroup v1 (systemd 252)             cgroup v2
//   shares      CPUShares                           CPUWeight (runc's shares→weight)
//   quota       CPUQuotaPerSecUSec + CPUQuotaPeriodUSec (both versions)
//   cpus/mems   cpuset.* files (v1 cpuset is not   AllowedCPUs / AllowedMemoryNodes
//               systemd's)
//   memory      MemoryLimit                         MemoryMax
//   swap        memory.memsw.limit_in_bytes file   MemorySwapMax (swap only)
//   pids        TasksMax                            TasksMax
//   hugepages   hugetlb.* files                     hugetlb.* files
//   devices     devices.allow/deny files            (none: v2 needs eBPF)
//   unified     pids.max only                       memory.{high,low,min,max,swap.max},
//                                                   cpu.{weight,max}, cpuset.*, pids.max,
//                                                   io.weight → properties; others: files
import { InvalidArgumentError } from '../../../../errors';
import { CgroupResources, CgroupWrite, clampShares, parseCpuList, sharesToWeight, v1Writes, v2Writes } from '../values';

/** One D-Bus unit property: name, D-Bus signature, value (64-bit values as BigInt). */
export interface UnitProperty {
  name: string;
  signature: 't' | 'b' | 's' | 'ay' | 'au' | 'a(st)';
  value: bigint | boolean | string | number[] | Buffer | [string, bigint][];
}

/** systemd's "infinity" for every 64-bit limit. */
export const INFINITY = 0xffffffffffffffffn;
/** systemd's CFS period when CPUQuotaPeriodUSec is unset. */
export const DEFAULT_PERIOD_US = 100000;

/** Files a property already covers: never also written directly. */
const V1_PROPERTY_FILES = new Set([
  'cpu.shares',
  'cpu.cfs_period_us',
  'cpu.cfs_quota_us',
  'memory.limit_in_bytes',
  'pids.max',
]);
const V2_PROPERTY_FILES = new Set([
  'cpu.weight',
  'cpu.max',
  'cpuset.cpus',
  'cpuset.mems',
  'memory.max',
  'memory.high',
  'memory.low',
  'memory.min',
  'memory.swap.max',
  'pids.max',
  'io.weight',
]);

export interface UnitResources {
  /** In this order: systemd applies them all at once. */
  properties: UnitProperty[];
  /** What systemd cannot express here, for the cgroup files directly (kernel order kept). */
  files: CgroupWrite[];
}

/**
 * CPUQuotaPerSecUSec for a CFS quota: rounded up, because systemd writes
 * floor(perSec × period / 10⁶) and that must give the quota back exactly.
 */
export function quotaPerSecUSec(quotaUs: number, periodUs: number): bigint {
  const q = BigInt(quotaUs) * 1_000_000n;
  const p = BigInt(periodUs);
  return (q + p - 1n) / p;
}

/** "0-2,5" → systemd's CPU/NUMA mask: byte i bit j is number 8i+j. */
export function cpuMask(list: string): Buffer {
  const nums = parseCpuList(list);
  const out = Buffer.alloc(nums.length === 0 ? 0 : Math.floor(Math.max(...nums) / 8) + 1);
  for (const n of nums) out[n >> 3] |= 1 << (n & 7);
  return out;
}

/** A v2 memory value ("max", bytes, or with a K/M/G/T suffix as the kernel takes it). */
export function parseMemoryValue(key: string, v: string): bigint {
  const t = v.trim();
  if (t === 'max') return INFINITY;
  const m = /^(\d+)([KMGT]?)$/i.exec(t);
  if (!m) throw new InvalidArgumentError(`unified[${key}]`, `"${t.slice(0, 40)}" is not max or a byte count`);
  const shift = { '': 0n, K: 10n, M: 20n, G: 30n, T: 40n }[m[2].toUpperCase() as '' | 'K' | 'M' | 'G' | 'T'];
  return BigInt(m[1]) << shift;
}

function count(key: string, v: string): bigint {
  const t = v.trim();
  if (t === 'max') return INFINITY;
  if (!/^\d{1,19}$/.test(t))
    throw new InvalidArgumentError(`unified[${key}]`, `"${t.slice(0, 40)}" is not max or a number`);
  return BigInt(t);
}

/** The properties and direct writes for `r` on cgroup v`version`. */
export function unitResources(r: CgroupResources, version: 1 | 2): UnitResources {
  const props = new Map<string, UnitProperty>();
  const put = (name: string, signature: UnitProperty['signature'], value: UnitProperty['value']): void => {
    props.delete(name);
    props.set(name, { name, signature, value });
  };
  const cpu = r.cpu ?? {};
  if (cpu.shares) {
    if (version === 1) put('CPUShares', 't', BigInt(clampShares(cpu.shares)));
    else put('CPUWeight', 't', BigInt(sharesToWeight(cpu.shares)));
  }
  const quota = (q: number | undefined, period: number | undefined): void => {
    if (period) put('CPUQuotaPeriodUSec', 't', BigInt(period));
    if (q && q > 0) put('CPUQuotaPerSecUSec', 't', quotaPerSecUSec(q, period || DEFAULT_PERIOD_US));
    else if (q === -1) put('CPUQuotaPerSecUSec', 't', INFINITY);
  };
  quota(cpu.quota, cpu.period);
  if (version === 2) {
    if (cpu.cpus) put('AllowedCPUs', 'ay', cpuMask(cpu.cpus));
    if (cpu.mems) put('AllowedMemoryNodes', 'ay', cpuMask(cpu.mems));
  }
  const mem = r.memory ?? {};
  if (mem.limit) put(version === 1 ? 'MemoryLimit' : 'MemoryMax', 't', mem.limit === -1 ? INFINITY : BigInt(mem.limit));
  if (mem.swap && version === 2) {
    // v2 counts swap alone: memsw − memory (as v2Writes does).
    const swap = mem.swap === -1 || !mem.limit || mem.limit <= 0 ? INFINITY : BigInt(Math.max(0, mem.swap - mem.limit));
    put('MemorySwapMax', 't', swap);
  }
  if (r.pids) put('TasksMax', 't', r.pids.limit > 0 ? BigInt(r.pids.limit) : INFINITY);

  for (const [k, v] of Object.entries(r.unified ?? {})) {
    if (k === 'pids.max') put('TasksMax', 't', count(k, v));
    if (version === 1) continue; // v1Writes below refuses anything else
    if (k === 'memory.max') put('MemoryMax', 't', parseMemoryValue(k, v));
    else if (k === 'memory.high') put('MemoryHigh', 't', parseMemoryValue(k, v));
    else if (k === 'memory.low') put('MemoryLow', 't', parseMemoryValue(k, v));
    else if (k === 'memory.min') put('MemoryMin', 't', parseMemoryValue(k, v));
    else if (k === 'memory.swap.max') put('MemorySwapMax', 't', parseMemoryValue(k, v));
    else if (k === 'cpu.weight') put('CPUWeight', 't', count(k, v));
    else if (k === 'cpuset.cpus') put('AllowedCPUs', 'ay', cpuMask(v.trim()));
    else if (k === 'cpuset.mems') put('AllowedMemoryNodes', 'ay', cpuMask(v.trim()));
    else if (k === 'cpu.max') {
      const [q, p] = v.trim().split(/\s+/);
      const period = p === undefined ? undefined : Number(count(k, p));
      quota(q === 'max' ? -1 : Number(count(k, q)), period);
    } else if (k === 'io.weight') {
      // "100" or "default 100"; per-device weights have no unit property: refused.
      const m = /^(?:default\s+)?(\d{1,5})$/.exec(v.trim());
      if (!m)
        throw new InvalidArgumentError(`unified[${k}]`, `"${v.slice(0, 40)}": only a default weight is supported`);
      put('IOWeight', 't', BigInt(m[1]));
    }
  }

  const covered = version === 1 ? V1_PROPERTY_FILES : V2_PROPERTY_FILES;
  const files = (version === 1 ? v1Writes(r) : v2Writes(r)).filter((w) => !covered.has(w.file));
  return { properties: [...props.values()], files };
}

/** The CPU/NUMA mask systemd reports back, as a list ("0-1,4"); for tests and logs. */
export function maskToList(mask: Buffer | number[]): string {
  const nums: number[] = [];
  const bytes = [...mask];
  bytes.forEach((b, i) => {
    for (let j = 0; j < 8; j++) if (b & (1 << j)) nums.push(i * 8 + j);
  });
  const parts: string[] = [];
  for (let i = 0; i < nums.length;) {
    let j = i;
    while (j + 1 < nums.length && nums[j + 1] === nums[j] + 1) j++;
    parts.push(i === j ? `${nums[i]}` : `${nums[i]}-${nums[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}
