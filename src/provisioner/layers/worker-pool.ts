// A small pool of unpack worker threads. Workers start on demand, stay for
// reuse while idle (unref'd, so they never keep the process alive) and are
// replaced if one dies. When the compiled worker script is missing (e.g.
// code run from sources), jobs run in-process instead.
import { existsSync } from 'fs';
import * as path from 'path';
import { Worker } from 'worker_threads';

import { InternalError } from '../../errors';
import type { Logger } from '../../log';
import { deserializeError, runUnpackJob, SerializedError, UnpackJob, UnpackJobResult } from './job';

interface Pending {
  resolve(r: UnpackJobResult): void;
  reject(e: unknown): void;
}

interface Slot {
  worker: Worker;
  busy: boolean;
  pending?: { id: number } & Pending;
}

type Reply =
  | { id: number; ok: true; result: UnpackJobResult }
  | { id: number; ok: false; error: SerializedError }
  | { log: { level: 'warn'; obj: object; msg?: string } };

export class UnpackPool {
  private readonly size: number;
  private readonly log?: Logger;
  private readonly script = path.join(__dirname, 'unpack-worker.js');
  private readonly slots: Slot[] = [];
  private readonly queue: ({ job: UnpackJob } & Pending)[] = [];
  private nextId = 1;
  private closed = false;

  constructor(size: number, log?: Logger) {
    this.size = Math.max(1, size);
    this.log = log;
  }

  run(job: UnpackJob): Promise<UnpackJobResult> {
    if (this.closed) return Promise.reject(new InternalError('unpack pool is closed', { stage: 'unpack' }));
    if (!existsSync(this.script)) return runUnpackJob(job, this.log);
    return new Promise<UnpackJobResult>((resolve, reject) => {
      this.queue.push({ job, resolve, reject });
      this.dispatch();
    });
  }

  /**
   * Starts up to `n` idle workers now, so the first unpack does not wait for
   * a worker to boot and load its modules (a few hundred ms on a cold page
   * cache, on the first pull's critical path).
   */
  warm(n = 1): void {
    if (this.closed || !existsSync(this.script)) return;
    while (this.slots.length < Math.min(n, this.size)) this.spawn();
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      let slot = this.slots.find((s) => !s.busy);
      if (!slot) {
        if (this.slots.length >= this.size) return;
        slot = this.spawn();
      }
      const item = this.queue.shift()!;
      const id = this.nextId++;
      slot.busy = true;
      slot.pending = { id, resolve: item.resolve, reject: item.reject };
      slot.worker.ref();
      slot.worker.postMessage({ id, job: item.job });
    }
  }

  private spawn(): Slot {
    const worker = new Worker(this.script);
    const slot: Slot = { worker, busy: false };
    worker.on('message', (msg: Reply) => {
      if ('log' in msg) {
        this.log?.warn(msg.log.obj, msg.log.msg);
        return;
      }
      const p = slot.pending;
      if (!p || p.id !== msg.id) return;
      slot.pending = undefined;
      slot.busy = false;
      worker.unref();
      if (msg.ok) p.resolve(msg.result);
      else p.reject(deserializeError(msg.error));
      this.dispatch();
    });
    const fail = (err: unknown): void => {
      const i = this.slots.indexOf(slot);
      if (i >= 0) this.slots.splice(i, 1);
      const p = slot.pending;
      slot.pending = undefined;
      if (p) {
        p.reject(
          new InternalError(`unpack worker died: ${err instanceof Error ? err.message : String(err)}`, {
            stage: 'unpack',
          }),
        );
      }
      if (!this.closed) this.dispatch();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`exit code ${code}`)));
    worker.unref();
    this.slots.push(slot);
    return slot;
  }

  /** Stops every worker; pending jobs fail. */
  async close(): Promise<void> {
    this.closed = true;
    for (const q of this.queue.splice(0)) q.reject(new InternalError('unpack pool closed', { stage: 'unpack' }));
    await Promise.all(this.slots.splice(0).map((s) => s.worker.terminate()));
  }
}
