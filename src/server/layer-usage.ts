// Bytes and inodes of each container's writable layer, for ContainerStats
// (and the CRI metrics built from it). Walking a layer costs a readdir per
// directory and an lstat per entry, far more than the container's cgroup
// counters, and kubelet asks for every container every few seconds; so the
// answer comes from a cache, as containerd's CRI answers from snapshot usage
// it refreshes in the background every 10 s:
//   - a value at most FRESH_MS old is served as it is;
//   - one at most STALE_MS old is served while a refresh runs behind it;
//   - an older one, or none, is waited for (the first call for a container).
// One walk per layer at a time (concurrent callers share it), WALKS layers at
// once overall, so a first ListContainerStats over a thousand containers
// does not queue thousands of walks on the thread pool.
import type { FsUsage } from '../provisioner/provisioner';

/** Served as is (the bound on how old a polled value gets: containerd's refresh period). */
export const FRESH_MS = 10_000;
/** Served while refreshed; older is waited for. */
export const STALE_MS = 60_000;
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

  constructor(
    private readonly walk: (dir: string) => Promise<FsUsage>,
    private readonly clock: () => number = Date.now,
  ) {}

  /** Usage of container `id`'s writable layer at `dir`; undefined when it cannot be read. */
  async get(id: string, dir: string): Promise<FsUsage | undefined> {
    let e = this.entries.get(id);
    if (!e || e.dir !== dir) {
      e = { dir, at: 0 };
      this.entries.set(id, e);
    }
    const age = this.clock() - e.at;
    if (e.usage && age <= FRESH_MS) return e.usage;
    const refresh = this.refresh(id, e);
    if (e.usage && age <= STALE_MS) return e.usage;
    return refresh;
  }

  /** Drops entries of containers not in `live` (removed ones). */
  retain(live: ReadonlySet<string>): void {
    for (const id of this.entries.keys()) if (!live.has(id)) this.entries.delete(id);
  }

  get size(): number {
    return this.entries.size;
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
