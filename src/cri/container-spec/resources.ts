// cgroup limits from config.linux.resources, validated. Zero means "not
// set" for every field, as in CRI. The limits (the kernel's, or a floor
// below which a container cannot even start):
//   cpu_period             0 or 1000..1000000 µs (the kernel's CFS bounds)
//   cpu_quota              0, -1 (unlimited) or 1000..2^44-1 µs
//   cpu_shares             0 or 2..262144
//   memory_limit_in_bytes  0 or ≥ 6 MiB (Docker's floor: below it runc's own
//                          set-up is OOM-killed and the error is unreadable)
//   memory_swap_limit      0, -1 (unlimited) or ≥ memory_limit_in_bytes (needs one)
//   cpuset_cpus / _mems    Linux list syntax ("0-3,7"), CPUs < 8192, nodes < 1024
//   hugepage_limits        page size "<n>KB|MB|GB", limit ≥ 0, each size once
//   unified                "<controller>.<file>" keys (no cgroup.* core files),
//                          values without NUL or newline
// The pids limit is the daemon's default (CRI has no per-container field);
// unified["pids.max"] overrides it.

import { InvalidArgumentError } from '../../errors';
import type { LinuxContainerResources } from '../../gen/runtime/v1/api';
import type { ResourcesSpec } from '../../containerizer';
import { toSafeNumber } from './values';

const F = 'config.linux.resources';

export const MIN_MEMORY_LIMIT = 6 * 1024 * 1024;
export const MAX_CPU_QUOTA = 2 ** 44 - 1;
export const MAX_CPUS = 8192;
export const MAX_MEMORY_NODES = 1024;
export const MAX_UNIFIED_ENTRIES = 64;

export interface ResourcesInput {
  resources: LinuxContainerResources | undefined;
  /** The daemon's default pids limit; 0/undefined: none. */
  pidsLimit?: number;
}

function int(value: bigint, field: string): number {
  return toSafeNumber(value, `${F}.${field}`);
}

/** Checks a Linux CPU/node list ("0-3,8,10-11"); returns it unchanged. */
export function checkCpuList(list: string, limit: number, field: string): string {
  if (list.length > 4096) throw new InvalidArgumentError(field, 'too long');
  for (const part of list.split(',')) {
    const m = /^([0-9]{1,5})(?:-([0-9]{1,5}))?$/.exec(part);
    if (!m) throw new InvalidArgumentError(field, `"${list}" is not a list like "0-3,7"`);
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (lo > hi) throw new InvalidArgumentError(field, `range "${part}" is backwards`);
    if (hi >= limit) throw new InvalidArgumentError(field, `${hi} is out of range (< ${limit})`);
  }
  return list;
}

function pidsMax(value: string, field: string): number {
  if (value === 'max') return -1;
  if (!/^[0-9]{1,15}$/.test(value) || Number(value) <= 0) {
    throw new InvalidArgumentError(field, `"${value}" is not a positive number or "max"`);
  }
  return Number(value);
}

export function buildResources(input: ResourcesInput): Omit<ResourcesSpec, 'devices'> {
  const out: Omit<ResourcesSpec, 'devices'> = {};
  const r = input.resources;
  if (input.pidsLimit !== undefined && input.pidsLimit !== 0) {
    if (!Number.isSafeInteger(input.pidsLimit) || input.pidsLimit < -1) {
      throw new InvalidArgumentError('pids_limit', `${input.pidsLimit} is not a valid pids limit`);
    }
    out.pids = { limit: input.pidsLimit };
  }
  if (!r) return out;

  const period = int(r.cpuPeriod, 'cpu_period');
  if (period !== 0 && (period < 1000 || period > 1000000)) {
    throw new InvalidArgumentError(`${F}.cpu_period`, `${period} is outside 1000..1000000 µs`);
  }
  const quota = int(r.cpuQuota, 'cpu_quota');
  if (quota !== 0 && quota !== -1 && (quota < 1000 || quota > MAX_CPU_QUOTA)) {
    throw new InvalidArgumentError(`${F}.cpu_quota`, `${quota} is outside 1000..${MAX_CPU_QUOTA} µs (or -1)`);
  }
  const shares = int(r.cpuShares, 'cpu_shares');
  if (shares !== 0 && (shares < 2 || shares > 262144)) {
    throw new InvalidArgumentError(`${F}.cpu_shares`, `${shares} is outside 2..262144`);
  }
  const cpus = r.cpusetCpus === '' ? '' : checkCpuList(r.cpusetCpus, MAX_CPUS, `${F}.cpuset_cpus`);
  const mems = r.cpusetMems === '' ? '' : checkCpuList(r.cpusetMems, MAX_MEMORY_NODES, `${F}.cpuset_mems`);
  const cpu: NonNullable<ResourcesSpec['cpu']> = {};
  if (shares) cpu.shares = shares;
  if (quota) cpu.quota = quota;
  if (period) cpu.period = period;
  if (cpus) cpu.cpus = cpus;
  if (mems) cpu.mems = mems;
  if (Object.keys(cpu).length > 0) out.cpu = cpu;

  const memory = int(r.memoryLimitInBytes, 'memory_limit_in_bytes');
  if (memory < 0 || (memory > 0 && memory < MIN_MEMORY_LIMIT)) {
    throw new InvalidArgumentError(
      `${F}.memory_limit_in_bytes`,
      `${memory} is below the ${MIN_MEMORY_LIMIT}-byte minimum`,
    );
  }
  const swap = int(r.memorySwapLimitInBytes, 'memory_swap_limit_in_bytes');
  if (swap < -1) throw new InvalidArgumentError(`${F}.memory_swap_limit_in_bytes`, `${swap} is negative`);
  if (swap > 0 && memory === 0) {
    throw new InvalidArgumentError(`${F}.memory_swap_limit_in_bytes`, 'needs memory_limit_in_bytes');
  }
  if (swap > 0 && swap < memory) {
    throw new InvalidArgumentError(
      `${F}.memory_swap_limit_in_bytes`,
      `${swap} is below memory_limit_in_bytes (it counts memory + swap)`,
    );
  }
  if (memory || swap) {
    out.memory = {};
    if (memory) out.memory.limit = memory;
    if (swap) out.memory.swap = swap;
  }

  const sizes = new Set<string>();
  const hugepages = r.hugepageLimits.map((h, i) => {
    const f = `${F}.hugepage_limits[${i}]`;
    if (!/^[1-9][0-9]{0,5}(KB|MB|GB)$/.test(h.pageSize)) {
      throw new InvalidArgumentError(`${f}.page_size`, `"${h.pageSize}" is not a size like "2MB"`);
    }
    if (sizes.has(h.pageSize)) throw new InvalidArgumentError(`${f}.page_size`, `"${h.pageSize}" is listed twice`);
    sizes.add(h.pageSize);
    const limit = toSafeNumber(h.limit, `${f}.limit`);
    if (limit < 0) throw new InvalidArgumentError(`${f}.limit`, `${limit} is negative`);
    return { pageSize: h.pageSize, limit };
  });
  if (hugepages.length > 0) out.hugepageLimits = hugepages;

  const unified = Object.entries(r.unified);
  if (unified.length > MAX_UNIFIED_ENTRIES) {
    throw new InvalidArgumentError(`${F}.unified`, `more than ${MAX_UNIFIED_ENTRIES} entries`);
  }
  for (const [key, value] of unified) {
    const f = `${F}.unified[${key}]`;
    if (!/^[a-z][a-z0-9_]*\.[A-Za-z0-9_.]+$/.test(key) || key.includes('..')) {
      throw new InvalidArgumentError(f, 'not a cgroup interface file name like "memory.high"');
    }
    if (key.startsWith('cgroup.')) throw new InvalidArgumentError(f, 'cgroup core files cannot be set');
    if (value.length > 4096 || /[\0\n]/.test(value)) {
      throw new InvalidArgumentError(f, 'value must be one line of at most 4096 bytes');
    }
    if (key === 'pids.max') out.pids = { limit: pidsMax(value, f) };
  }
  if (unified.length > 0) out.unified = Object.fromEntries(unified);
  return out;
}
