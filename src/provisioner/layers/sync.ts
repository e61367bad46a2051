// Durability of unpacked layers: a layer becomes visible (renamed into place)
// only after its data is on disk. One syncfs(2) of the store's file system
// writes back every layer that finished meanwhile (a group commit), rather
// than an fsync per file or a syncfs per layer.
import { execFile } from 'child_process';

import { FailedPreconditionError } from '../../errors';

export class SyncGroup {
  /** The syncfs under way, and the one queued behind it. */
  private syncing?: Promise<void>;
  private syncQueued?: Promise<void>;

  constructor(private readonly dir: string) {}

  /**
   * syncfs(2) of the store's file system, shared by the layers that need one at
   * the same time (a group commit): layers unpacking in parallel finish close
   * together, and one syncfs writes back all of them. A caller never shares a
   * syncfs that had started before it asked (its data might have been written
   * after that one looked): it waits for the next, which every caller arriving
   * meanwhile shares.
   */
  sync(): Promise<void> {
    if (!this.syncing) {
      const p = syncfs(this.dir).finally(() => {
        if (this.syncing === p) this.syncing = undefined;
      });
      this.syncing = p;
      return p;
    }
    this.syncQueued ??= this.syncing
      .catch(() => undefined)
      .then(() => {
        this.syncQueued = undefined;
        return this.sync();
      });
    return this.syncQueued;
  }
}

/** syncfs(2) on the file system holding `dir` (coreutils `sync -f`), so the layer is durable before it is visible. */
function syncfs(dir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('sync', ['-f', dir], { timeout: 120_000 }, (err) => {
      if (err) reject(new FailedPreconditionError(`sync -f ${dir} failed: ${err.message}`, { stage: 'unpack' }));
      else resolve();
    });
  });
}
