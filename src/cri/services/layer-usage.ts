// Bytes and inodes of each container's writable layer, for ContainerStats
// (and the CRI metrics built from it). Walking a layer costs a readdir per
// directory and an lstat per entry, far more than the container's cgroup
// counters, and kubelet asks for every container every few seconds; so the
// answer comes from a cache kept current in the background, as containerd's
// CRI answers from snapshot usage it refreshes every 10 s:
//   - while stats are being asked for (the last call at most IDLE_MS ago) a
//     pass every REFRESH_MS walks every known layer again, so what a call
//     gets is at most REFRESH_MS old plus one pass;
//   - a value older than MAX_AGE_MS (after a pause in the calls), or none
//     (a container's first call), is waited for;
//   - no calls for IDLE_MS: the passes stop (an idle daemon walks nothing).
// One walk per layer at a time (concurrent callers share it), WALKS layers at
// once overall, so a pass or a first ListContainerStats over a thousand
// containers does not queue thousands of walks on the thread pool.
import type { FsUsage } from '../../provisioner/provisioner';

/** How often layers are walked again while stats are asked for (containerd's period). */
export const REFRESH_MS = 10_000;
/** Older than this is never served: the call waits for a walk. */
export const MAX_AGE_MS = 2 * REFRESH_MS;
/** Passes stop this long after the last call. */
export const IDLE_MS = 60_000;
/** Layer walks at once. */
const WALKS = 4;

interface Entry {
  dir: string;
  usage?: FsUsage;
  /** When the walk that gave `usage` started. */
  at: number;
  pending?: Promise<FsUsage | undefined>;
}

export class LayerUsage {
  private readonly entries = new Map<string, Entry>();
  private running = 0;
  private readonly queue: (() => void)[] = [];
  private lastAsked = 0;
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly walk: (dir: string) => Promise<FsUsage>,
    private readonly clock: () => number = Date.now,
    /** false: no timer (tests call refreshAll themselves). */
    private readonly background = true,
  ) {}

  /** Usage of container `id`'s writable layer at `dir`; undefined when it cannot be read. */
  async get(id: string, dir: string): Promise<FsUsage | undefined> {
    this.lastAsked = this.clock();
    this.startPasses();
    let e = this.entries.get(id);
    if (!e || e.dir !== dir) {
      e = { dir, at: 0 };
      this.entries.set(id, e);
    }
    if (e.usage && this.lastAsked - e.at <= MAX_AGE_MS) return e.usage;
    return this.refresh(id, e);
  }

  /** Drops entries of containers not in `live` (removed ones). */
  retain(live: ReadonlySet<string>): void {
    for (const id of this.entries.keys()) if (!live.has(id)) this.entries.delete(id);
  }

  /** One background pass: every known layer walked again; stops the passes once calls stopped. */
  async refreshAll(): Promise<void> {
    if (this.clock() - this.lastAsked > IDLE_MS) {
      this.stop();
      return;
    }
    await Promise.all([...this.entries].map(([id, e]) => this.refresh(id, e)));
  }

  /** Stops the passes (daemon shutdown; they also stop by themselves when idle). */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  get size(): number {
    return this.entries.size;
  }

  private startPasses(): void {
    if (!this.background || this.timer) return;
    this.timer = setInterval(() => void this.refreshAll(), REFRESH_MS);
    // Never what keeps the process alive.
    this.timer.unref();
  }

  private refresh(id: string, e: Entry): Promise<FsUsage | undefined> {
    e.pending ??= this.limited(async () => {
      const at = this.clock();
      try {
        const usage = await this.walk(e.dir);
        // A removed (or re-created) container's entry is not brought back.
        if (this.entries.get(id) === e) Object.assign(e, { usage, at });
        return usage;
      } catch {
        // A layer being removed, or unreadable: no figure rather than a stale one.
        if (this.entries.get(id) === e) e.usage = undefined;
        return undefined;
      } finally {
        e.pending = undefined;
      }
    });
    return e.pending;
  }

  private async limited<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running < WALKS) this.running++;
    // A finishing walk hands its slot to the next waiter.
    else await new Promise<void>((resolve) => this.queue.push(resolve));
    try {
      return await fn();
    } finally {
      const next = this.queue.shift();
      if (next) next();
      else this.running--;
    }
  }
}
