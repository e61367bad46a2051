// CPU usage as a rate (CpuUsage.usage_nano_cores): the CRI reports it, as
// containerd does, because kubelet takes a pod's rate from the runtime when
// it reads stats from the CRI (PodAndContainerStatsFromCRI). The rate is the
// growth of the cumulative counter between two samples at least MIN_WINDOW
// apart; callers polling faster get the last rate, so concurrent pollers
// (kubelet's summary, eviction and metrics loops) neither see noise nor
// reset each other's window. A cgroup's first sample has no rate yet.

/** Samples closer than this give the previous rate. */
const MIN_WINDOW_NS = 1_000_000_000n;
/** Entries not sampled for this long are dropped (the object is gone). */
const FORGET_AFTER_NS = 10n * 60n * 1_000_000_000n;

interface Sample {
  atNs: bigint;
  usageNs: bigint;
  rate?: bigint;
}

export class CpuRates {
  private readonly samples = new Map<string, Sample>();
  private lastSweepNs = 0n;

  /** Records `usageNs` of `key` (a container or pod id) at `atNs`; returns ns of CPU per s, if known. */
  observe(key: string, usageNs: bigint, atNs: bigint): bigint | undefined {
    this.sweep(atNs);
    const prev = this.samples.get(key);
    if (!prev || usageNs < prev.usageNs || atNs < prev.atNs) {
      // New, or the counter went back (a restarted container reusing the key): start over.
      this.samples.set(key, { atNs, usageNs });
      return undefined;
    }
    const elapsed = atNs - prev.atNs;
    if (elapsed < MIN_WINDOW_NS) return prev.rate;
    const rate = ((usageNs - prev.usageNs) * 1_000_000_000n) / elapsed;
    this.samples.set(key, { atNs, usageNs, rate });
    return rate;
  }

  forget(key: string): void {
    this.samples.delete(key);
  }

  get size(): number {
    return this.samples.size;
  }

  private sweep(nowNs: bigint): void {
    if (nowNs - this.lastSweepNs < FORGET_AFTER_NS) return;
    this.lastSweepNs = nowNs;
    for (const [k, s] of this.samples) if (nowNs - s.atNs > FORGET_AFTER_NS) this.samples.delete(k);
  }
}
