// Resources → cgroup file writes, pure (unit-tested in
// test/unit/cgroups-values.test.ts for v1 and v2; this machine only runs v1).
//
// The resource shape is the OCI runtime-spec's linux.resources subset, so
// the container spec builder's ResourcesSpec can be passed as it is.
import { InvalidArgumentError } from '../../../errors';

export interface DeviceRuleInput {
  allow: boolean;
  type?: 'a' | 'c' | 'b';
  major?: number;
  minor?: number;
  access: string;
}

export interface CgroupResources {
  cpu?: {
    /** cgroup v1 shares (2..262144); v2 gets cpu.weight by conversion. */
    shares?: number;
    /** CFS quota in µs per period; -1: unlimited. */
    quota?: number;
    /** CFS period in µs (1000..1000000). */
    period?: number;
    cpus?: string;
    mems?: string;
  };
  memory?: {
    /** Bytes; -1: unlimited. */
    limit?: number;
    /** Memory + swap in bytes (v1 memsw semantics); -1: unlimited swap. */
    swap?: number;
  };
  /** pids.max; limit <= 0 means unlimited. */
  pids?: { limit: number };
  hugepageLimits?: { pageSize: string; limit: number }[];
  /** Raw cgroup v2 files ("memory.high" → "1G"). On v1 only pids.max is translated. */
  unified?: Record<string, string>;
  /** v1 devices cgroup rules (v2 needs an eBPF program: not done here). */
  devices?: DeviceRuleInput[];
}

export interface CgroupWrite {
  /** The controller whose hierarchy (v1) or interface file (v2) this is. */
  controller: string;
  file: string;
  value: string;
  /** Skipped when the file does not exist (memsw without swap accounting, swap.max without swap). */
  optional?: boolean;
}

export const MIN_SHARES = 2;
export const MAX_SHARES = 262144;
export const MIN_PERIOD = 1000;
export const MAX_PERIOD = 1000000;
export const MIN_QUOTA = 1000;

/** The conversion runc, crun and kubelet use: shares [2, 262144] → weight [1, 10000]. */
export function sharesToWeight(shares: number): number {
  if (shares <= 0) return 0;
  const s = Math.min(Math.max(shares, MIN_SHARES), MAX_SHARES);
  return 1 + Math.floor(((s - 2) * 9999) / 262142);
}

export function clampShares(shares: number): number {
  return Math.min(Math.max(shares, MIN_SHARES), MAX_SHARES);
}

/** "2MB" → "2MB" (validated); the kernel's file names use the same unit spelling. */
const PAGE_SIZE = /^[1-9][0-9]{0,5}(KB|MB|GB)$/;
const CPU_LIST = /^\d+(-\d+)?(,\d+(-\d+)?)*$/;
/** A v2 interface file name: controller "." name; never cgroup.* (procs, subtree_control, kill …). */
const UNIFIED_KEY = /^([a-z][a-z0-9_]*)\.([a-z0-9_.]+)$/;
const UNIFIED_CONTROLLERS = new Set(['cpu', 'cpuset', 'memory', 'pids', 'io', 'hugetlb', 'misc', 'rdma']);

/** Parses a cpuset list ("0-3,8"); throws on bad syntax or reversed ranges. */
export function parseCpuList(list: string): number[] {
  if (!CPU_LIST.test(list)) throw new Error(`"${list}" is not a cpu list like 0-3,8`);
  const out: number[] = [];
  for (const part of list.split(',')) {
    const [a, b] = part.split('-').map(Number);
    const hi = b ?? a;
    if (hi < a) throw new Error(`range ${part} is reversed`);
    if (hi > 16383) throw new Error(`cpu ${hi} is out of range`);
    for (let i = a; i <= hi; i++) out.push(i);
  }
  return out;
}

/**
 * Checks values before anything is written, so absurd input is an
 * InvalidArgument naming the field (`${prefix}.<CRI field name>`).
 */
export function validateResources(r: CgroupResources, prefix: string): void {
  const field = (f: string): string => `${prefix}.${f}`;
  const int = (v: number | undefined, f: string): void => {
    if (v !== undefined && !Number.isSafeInteger(v)) throw new InvalidArgumentError(field(f), `${v} is not an integer`);
  };
  const cpu = r.cpu ?? {};
  int(cpu.shares, 'cpu_shares');
  int(cpu.quota, 'cpu_quota');
  int(cpu.period, 'cpu_period');
  if (cpu.shares !== undefined && cpu.shares < 0)
    throw new InvalidArgumentError(field('cpu_shares'), 'must not be negative');
  if (cpu.period !== undefined && cpu.period !== 0 && (cpu.period < MIN_PERIOD || cpu.period > MAX_PERIOD)) {
    throw new InvalidArgumentError(field('cpu_period'), `${cpu.period} µs is outside ${MIN_PERIOD}..${MAX_PERIOD}`);
  }
  if (cpu.quota !== undefined && cpu.quota !== 0 && cpu.quota !== -1 && cpu.quota < MIN_QUOTA) {
    throw new InvalidArgumentError(
      field('cpu_quota'),
      `${cpu.quota} µs: must be -1 (unlimited) or at least ${MIN_QUOTA}`,
    );
  }
  for (const [f, v] of [
    ['cpuset_cpus', cpu.cpus],
    ['cpuset_mems', cpu.mems],
  ] as const) {
    if (v === undefined || v === '') continue;
    try {
      parseCpuList(v);
    } catch (err) {
      throw new InvalidArgumentError(field(f), (err as Error).message);
    }
  }
  const mem = r.memory ?? {};
  int(mem.limit, 'memory_limit_in_bytes');
  int(mem.swap, 'memory_swap_limit_in_bytes');
  if (mem.limit !== undefined && mem.limit < -1) {
    throw new InvalidArgumentError(field('memory_limit_in_bytes'), `${mem.limit} is negative`);
  }
  if (mem.swap !== undefined && mem.swap < -1) {
    throw new InvalidArgumentError(field('memory_swap_limit_in_bytes'), `${mem.swap} is negative`);
  }
  if (mem.swap !== undefined && mem.swap > 0) {
    if (mem.limit === undefined || mem.limit === 0) {
      throw new InvalidArgumentError(field('memory_swap_limit_in_bytes'), 'needs memory_limit_in_bytes');
    }
    if (mem.limit > 0 && mem.swap < mem.limit) {
      throw new InvalidArgumentError(
        field('memory_swap_limit_in_bytes'),
        `${mem.swap} is below memory_limit_in_bytes ${mem.limit} (it counts memory + swap)`,
      );
    }
  }
  if (r.pids) int(r.pids.limit, 'pids_limit');
  for (const [i, h] of (r.hugepageLimits ?? []).entries()) {
    if (!PAGE_SIZE.test(h.pageSize)) {
      throw new InvalidArgumentError(
        field(`hugepage_limits[${i}].page_size`),
        `"${h.pageSize}" is not like 2MB or 1GB`,
      );
    }
    if (!Number.isSafeInteger(h.limit) || h.limit < 0) {
      throw new InvalidArgumentError(field(`hugepage_limits[${i}].limit`), `${h.limit} is not a byte count`);
    }
  }
  for (const [k, v] of Object.entries(r.unified ?? {})) {
    const m = UNIFIED_KEY.exec(k);
    if (!m || !UNIFIED_CONTROLLERS.has(m[1])) {
      throw new InvalidArgumentError(field(`unified[${k}]`), 'not a controller interface file capsa may write');
    }
    if (/[\n\0]/.test(v) || v.length > 4096) throw new InvalidArgumentError(field(`unified[${k}]`), 'bad value');
    if (k === 'pids.max' && !/^(max|[1-9][0-9]{0,15})$/.test(v)) {
      throw new InvalidArgumentError(field(`unified[${k}]`), `"${v.slice(0, 40)}" is not max or a positive count`);
    }
  }
  for (const [i, d] of (r.devices ?? []).entries()) {
    if (!/^[rwm]{1,3}$/.test(d.access)) {
      throw new InvalidArgumentError(field(`devices[${i}].access`), `"${d.access}" is not a subset of rwm`);
    }
  }
}

function memValue(v: number, unlimited: string): string {
  return v === -1 ? unlimited : String(v);
}

function deviceRule(d: DeviceRuleInput): string {
  const n = (x: number | undefined): string => (x === undefined || x < 0 ? '*' : String(x));
  const type = d.type ?? 'a';
  return type === 'a' && d.major === undefined && d.minor === undefined
    ? `a *:* ${d.access}`
    : `${type} ${n(d.major)}:${n(d.minor)} ${d.access}`;
}

/** cgroup v1: one write per file, in the order the kernel needs them. */
export function v1Writes(r: CgroupResources): CgroupWrite[] {
  const w: CgroupWrite[] = [];
  const cpu = r.cpu ?? {};
  if (cpu.shares) w.push({ controller: 'cpu', file: 'cpu.shares', value: String(clampShares(cpu.shares)) });
  // The period first: the kernel checks the quota against it.
  if (cpu.period) w.push({ controller: 'cpu', file: 'cpu.cfs_period_us', value: String(cpu.period) });
  if (cpu.quota) w.push({ controller: 'cpu', file: 'cpu.cfs_quota_us', value: String(cpu.quota) });
  if (cpu.cpus) w.push({ controller: 'cpuset', file: 'cpuset.cpus', value: cpu.cpus });
  if (cpu.mems) w.push({ controller: 'cpuset', file: 'cpuset.mems', value: cpu.mems });
  const mem = r.memory ?? {};
  if (mem.limit) w.push({ controller: 'memory', file: 'memory.limit_in_bytes', value: memValue(mem.limit, '-1') });
  if (mem.swap) {
    w.push({
      controller: 'memory',
      file: 'memory.memsw.limit_in_bytes',
      value: memValue(mem.swap, '-1'),
      optional: true,
    });
  }
  let pids = r.pids?.limit;
  for (const [k, v] of Object.entries(r.unified ?? {})) {
    if (k === 'pids.max') {
      pids = v === 'max' ? -1 : Number(v);
      if (!Number.isSafeInteger(pids)) throw new InvalidArgumentError('unified[pids.max]', `"${v}" is not a number`);
    } else {
      throw new InvalidArgumentError(`unified[${k}]`, 'raw cgroup v2 files need cgroup v2; this host runs cgroup v1');
    }
  }
  if (pids !== undefined) w.push({ controller: 'pids', file: 'pids.max', value: pids > 0 ? String(pids) : 'max' });
  for (const h of r.hugepageLimits ?? []) {
    w.push({ controller: 'hugetlb', file: `hugetlb.${h.pageSize}.limit_in_bytes`, value: String(h.limit) });
  }
  const devices = r.devices ?? [];
  for (const d of devices) {
    w.push({ controller: 'devices', file: d.allow ? 'devices.allow' : 'devices.deny', value: deviceRule(d) });
  }
  return w;
}

/**
 * cgroup v2 (unified): weight from shares, cpu.max, memory.max, swap as
 * swap-only (memory.swap.max = memsw - memory), pids.max, hugetlb.*.max,
 * then the raw `unified` entries, which win over derived ones.
 */
export function v2Writes(r: CgroupResources): CgroupWrite[] {
  const byFile = new Map<string, CgroupWrite>();
  const put = (w: CgroupWrite): void => {
    byFile.delete(w.file);
    byFile.set(w.file, w);
  };
  const cpu = r.cpu ?? {};
  if (cpu.shares) put({ controller: 'cpu', file: 'cpu.weight', value: String(sharesToWeight(cpu.shares)) });
  if (cpu.quota || cpu.period) {
    const quota = !cpu.quota || cpu.quota < 0 ? 'max' : String(cpu.quota);
    // Without a period, writing the quota alone keeps the current period.
    put({ controller: 'cpu', file: 'cpu.max', value: cpu.period ? `${quota} ${cpu.period}` : quota });
  }
  if (cpu.cpus) put({ controller: 'cpuset', file: 'cpuset.cpus', value: cpu.cpus });
  if (cpu.mems) put({ controller: 'cpuset', file: 'cpuset.mems', value: cpu.mems });
  const mem = r.memory ?? {};
  if (mem.limit) put({ controller: 'memory', file: 'memory.max', value: memValue(mem.limit, 'max') });
  if (mem.swap) {
    let swap: string;
    if (mem.swap === -1) swap = 'max';
    else if (mem.limit === undefined || mem.limit <= 0) swap = 'max';
    else swap = String(Math.max(0, mem.swap - mem.limit));
    put({ controller: 'memory', file: 'memory.swap.max', value: swap, optional: true });
  }
  if (r.pids) put({ controller: 'pids', file: 'pids.max', value: r.pids.limit > 0 ? String(r.pids.limit) : 'max' });
  for (const h of r.hugepageLimits ?? []) {
    put({ controller: 'hugetlb', file: `hugetlb.${h.pageSize}.max`, value: String(h.limit) });
  }
  for (const [k, v] of Object.entries(r.unified ?? {})) {
    put({ controller: k.slice(0, k.indexOf('.')), file: k, value: v });
  }
  return [...byFile.values()];
}

/** Controllers a v2 cgroup needs enabled in its parent's subtree_control for these writes. */
export function v2ControllersFor(writes: readonly CgroupWrite[]): string[] {
  return [...new Set(writes.map((w) => w.controller))].sort();
}
