// A small pool of unpack worker threads. Workers start on demand, stay for
// reuse while idle (unref'd, so they never keep the process alive), retire
// after IDLE_RETIRE_MS without work (each holds a V8 heap of its own, ~12
// MiB, that an idle node should not pay for) and are replaced if one dies. When the compiled worker script is missing (e.g.
// code run from sources), jobs run in-process instead.
//
// A streamed job (runStreamed) gets its layer's bytes from the main thread
// as they download instead of reading a blob file: they travel in batches of
// up to 1 MiB (copied once into a buffer whose memory is then transferred,
// not copied again), and the worker acknowledges each batch it has taken, so
// at most STREAM_WINDOW bytes are on their way at any time.
import { existsSync } from 'fs';
import * as path from 'path';
import { Worker } from 'worker_threads';

import { InternalError } from '../../errors';
import type { Logger } from '../../log';
import { ChunkQueue, deserializeError, runUnpackJob, SerializedError, UnpackJob, UnpackJobResult } from './job';

interface Pending {
  resolve(r: UnpackJobResult): void;
  reject(e: unknown): void;
  /** A streamed job's batches were taken (bytes). */
  onAck?(bytes: number): void;
}

interface Slot {
  worker: Worker;
  busy: boolean;
  pending?: { id: number } & Pending;
  /** Ends the worker once it has been idle for IDLE_RETIRE_MS. */
  retire?: NodeJS.Timeout;
}

/** Pulls come in bursts (a deployment rolls out); a minute covers the gaps within one. */
const IDLE_RETIRE_MS = 60_000;

type Reply =
  | { id: number; ok: true; result: UnpackJobResult }
  | { id: number; ok: false; error: SerializedError }
  | { id: number; ack: number }
  | { log: { level: 'warn'; obj: object; msg?: string } };

/** What a streamed job's worker is sent besides the job: {id, chunk} | {id, end} | {id, abort}. */
export type StreamMessage =
  { id: number; chunk: ArrayBuffer } | { id: number; end: true } | { id: number; abort: string };

const STREAM_BATCH = 1024 * 1024;
const STREAM_WINDOW = 4 * STREAM_BATCH;

export class UnpackPool {
  private readonly size: number;
  private readonly log?: Logger;
  private readonly script = path.join(__dirname, 'unpack-worker.js');
  private readonly slots: Slot[] = [];
  private readonly queue: ({ job: UnpackJob } & Pending)[] = [];
  private nextId = 1;
  private closed = false;

  constructor(
    size: number,
    log?: Logger,
    private readonly idleRetireMs = IDLE_RETIRE_MS,
  ) {
    this.size = Math.max(1, size);
    this.log = log;
  }

  /** Workers alive now (busy or idle). */
  get workers(): number {
    return this.slots.length;
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
   * Runs `job` on `source` (the layer's bytes as they arrive) instead of a
   * blob file, on a worker that is idle now; undefined when none is (the
   * caller unpacks from the file later instead of holding a download back
   * while it waits for a worker). When `source` throws, the job is stopped
   * and fails with that error, once the worker has let go of its files.
   */
  runStreamed(job: UnpackJob, source: AsyncIterable<Buffer>): Promise<UnpackJobResult> | undefined {
    if (this.closed) return undefined;
    if (!existsSync(this.script)) {
      const q = new ChunkQueue();
      const result = runUnpackJob({ ...job, streamed: true }, this.log, q);
      const local = {
        push: (chunks: Buffer[], bytes: number) => q.push(Buffer.concat(chunks, bytes)),
        end: () => q.end(),
        fail: (err: unknown) => q.fail(err),
      };
      return this.pump(source, local, result);
    }
    if (this.queue.length > 0) return undefined;
    let slot = this.slots.find((s) => !s.busy);
    if (!slot) {
      if (this.slots.length >= this.size) return undefined;
      slot = this.spawn();
    }
    const id = this.nextId++;
    const worker = slot.worker;
    let window = 0;
    let wake: (() => void) | undefined;
    let settled = false;
    this.claim(slot);
    const result = new Promise<UnpackJobResult>((resolve, reject) => {
      slot.pending = {
        id,
        resolve,
        reject,
        onAck: (n) => {
          window -= n;
          wake?.();
        },
      };
    }).finally(() => {
      settled = true;
      wake?.();
    });
    worker.ref();
    worker.postMessage({ id, job: { ...job, streamed: true } });
    const sink = {
      async push(chunks: Buffer[], bytes: number): Promise<void> {
        if (settled) return;
        // One copy, into memory the worker then owns (transferred, not copied again).
        const ab = new ArrayBuffer(bytes);
        const view = new Uint8Array(ab);
        let at = 0;
        for (const c of chunks) {
          view.set(c, at);
          at += c.length;
        }
        window += bytes;
        worker.postMessage({ id, chunk: ab } satisfies StreamMessage, [ab]);
        while (window > STREAM_WINDOW && !settled) await new Promise<void>((r) => (wake = r));
        wake = undefined;
      },
      end(): void {
        if (!settled) worker.postMessage({ id, end: true } satisfies StreamMessage);
      },
      fail(err: unknown): void {
        if (!settled)
          worker.postMessage({ id, abort: err instanceof Error ? err.message : String(err) } satisfies StreamMessage);
      },
    };
    return this.pump(source, sink, result);
  }

  /**
   * Feeds `source` to a streamed job in batches. Settles with the job: its
   * result, its error (at once, even while the source has nothing new), or
   * the source's error when the source failed (once the job has stopped).
   */
  private pump(
    source: AsyncIterable<Buffer>,
    sink: { push(chunks: Buffer[], bytes: number): Promise<void> | void; end(): void; fail(err: unknown): void },
    result: Promise<UnpackJobResult>,
  ): Promise<UnpackJobResult> {
    let done = false;
    let sourceError: { err: unknown } | undefined;
    const feeding = (async () => {
      let batch: Buffer[] = [];
      let batched = 0;
      const flush = async (): Promise<void> => {
        if (!batched) return;
        const chunks = batch;
        const bytes = batched;
        batch = [];
        batched = 0;
        await sink.push(chunks, bytes);
      };
      try {
        for await (const chunk of source) {
          if (done) return;
          batch.push(chunk);
          batched += chunk.length;
          if (batched >= STREAM_BATCH) await flush();
        }
        if (done) return;
        await flush();
        sink.end();
      } catch (err) {
        if (done) return;
        sourceError = { err };
        sink.fail(err);
      }
    })();
    return new Promise<UnpackJobResult>((resolve, reject) => {
      result.then(
        (r) => {
          done = true;
          resolve(r);
        },
        (err: unknown) => {
          done = true;
          reject(sourceError ? sourceError.err : err);
        },
      );
      void feeding;
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
      this.claim(slot);
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
      if ('ack' in msg) {
        p.onAck?.(msg.ack);
        return;
      }
      slot.pending = undefined;
      slot.busy = false;
      worker.unref();
      this.idleFrom(slot);
      if (msg.ok) p.resolve(msg.result);
      else p.reject(deserializeError(msg.error));
      this.dispatch();
    });
    const fail = (err: unknown): void => {
      clearTimeout(slot.retire);
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
    this.idleFrom(slot);
    return slot;
  }

  private claim(slot: Slot): void {
    clearTimeout(slot.retire);
    slot.retire = undefined;
    slot.busy = true;
  }

  /** Starts the idle clock of a worker that has no job; it ends the worker unless a job comes first. */
  private idleFrom(slot: Slot): void {
    clearTimeout(slot.retire);
    slot.retire = setTimeout(() => {
      if (slot.busy || this.closed) return;
      const i = this.slots.indexOf(slot);
      if (i < 0) return;
      // Out of the pool first: its exit is then no failure of anyone's job.
      this.slots.splice(i, 1);
      void slot.worker.terminate();
    }, this.idleRetireMs);
    slot.retire.unref();
  }

  /** Stops every worker; pending jobs fail. */
  async close(): Promise<void> {
    this.closed = true;
    for (const slot of this.slots) clearTimeout(slot.retire);
    for (const q of this.queue.splice(0)) q.reject(new InternalError('unpack pool closed', { stage: 'unpack' }));
    await Promise.all(this.slots.splice(0).map((s) => s.worker.terminate()));
  }
}
