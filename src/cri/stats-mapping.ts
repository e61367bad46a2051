// A cgroup's counters (stats.ts) as the CRI's CpuUsage, MemoryUsage and
// IoUsage, the one mapping ContainerStats and PodSandboxStats share. kubelet
// copies these into its summary API (/stats/summary) when it takes stats
// from the CRI; a counter the kernel did not give stays unset rather than 0.
import type { CgroupStats, Pressure, PressureLine } from '../containerizer';
import type { CpuRates } from './cpu-rate';
import type { CpuUsage, IoUsage, MemoryUsage, PsiData, PsiStats, UInt64Value } from '../gen/runtime/v1/api';

function u64(v: bigint | undefined): UInt64Value | undefined {
  return v === undefined ? undefined : { value: v };
}

function psiData(l: PressureLine): PsiData {
  return { Total: l.totalNs, Avg10: l.avg10, Avg60: l.avg60, Avg300: l.avg300 };
}

/** A pressure file; "full" zeroed where the kernel keeps none (cpu below Linux 5.13). */
export function psiOf(p: Pressure | undefined): PsiStats | undefined {
  if (!p) return undefined;
  const none = { avg10: 0, avg60: 0, avg300: 0, totalNs: 0n };
  return { Some: psiData(p.some), Full: psiData(p.full ?? none) };
}

/**
 * CPU total and pressure, and the rate over `rates`' window for `key` (a
 * container or pod id): kubelet reads a pod's rate from here.
 */
export function cpuUsageOf(s: CgroupStats, timestamp: bigint, rates: CpuRates, key: string): CpuUsage {
  const total = s.cpu.usageNs;
  const rate = total === undefined ? undefined : rates.observe(key, total, timestamp);
  return {
    timestamp,
    usageCoreNanoSeconds: { value: total ?? 0n },
    usageNanoCores: u64(rate),
    psi: psiOf(s.psi?.cpu),
  };
}

/**
 * Memory as kubelet's summary shows it (cAdvisor's definitions): available
 * is the limit less the working set, and only under a limit; page faults are
 * the cgroup's own ('container': a container's processes are all in it) or
 * its subtree's ('hierarchy': a pod's are in its children); v2 counts only
 * the subtree.
 */
export function memoryUsageOf(s: CgroupStats, timestamp: bigint, faults: 'container' | 'hierarchy'): MemoryUsage {
  const m = s.memory;
  const limit = s.spec.memoryLimitBytes;
  const ws = m.workingSetBytes ?? 0n;
  return {
    timestamp,
    workingSetBytes: { value: ws },
    availableBytes: limit !== undefined && limit > 0n ? { value: limit > ws ? limit - ws : 0n } : undefined,
    usageBytes: { value: m.usageBytes ?? 0n },
    rssBytes: u64(m.rssBytes),
    pageFaults: u64(m.pgfault?.[faults]),
    majorPageFaults: u64(m.pgmajfault?.[faults]),
    psi: psiOf(s.psi?.memory),
  };
}

export function ioUsageOf(s: CgroupStats, timestamp: bigint): IoUsage | undefined {
  const psi = psiOf(s.psi?.io);
  return psi ? { timestamp, psi } : undefined;
}
