// One unpack job: blob -> decompress -> hash -> tar -> directory. Pure in its
// inputs (no store bookkeeping), so it runs the same in a worker thread
// (unpack-worker.ts) or in-process.
import { createHash } from 'crypto';

import { asCapsaError, CapsaError, ErrorContext, ErrorKind, InvalidArgumentError, NotFoundError } from '../../errors';
import type { Logger } from '../../log';
import { ApplyStats, LayerApplier } from './apply';
import { Compression, decompressedSource, decompressedStream, detectCompression } from './decompress';
import { TarReader } from './tar-reader';

export interface UnpackJob {
  /** The layer blob; with `streamed`, only a name for errors (the bytes come from the job's source). */
  blobPath: string;
  /** The bytes come from a ChunkQueue as they download, not from blobPath. */
  streamed?: boolean;
  mediaType: string;
  /** An empty directory to unpack into. */
  fsDir: string;
  maxEntries: number;
  image?: string;
}

export interface UnpackJobResult {
  /** sha256 of the whole uncompressed stream. */
  diffId: string;
  compression: Compression;
  stats: ApplyStats;
}

/** A minimal logger shape the job needs (pino's, or the worker's message shim). */
export type JobLogger = Pick<Logger, 'debug' | 'warn'>;

/**
 * A streamed job's bytes: chunks pushed as they arrive, read once. The
 * reader's `onTaken` hears of every chunk it takes (the worker acknowledges
 * them to the main thread, which bounds what is on its way); `push` returns
 * a promise while more than `limit` bytes wait (for in-process use).
 */
export class ChunkQueue implements AsyncIterable<Buffer> {
  private chunks: Buffer[] = [];
  private queued = 0;
  private ended = false;
  private error?: Error;
  private wake?: () => void;
  private drained: (() => void)[] = [];

  constructor(
    private readonly onTaken?: (bytes: number) => void,
    private readonly limit = 4 * 1024 * 1024,
  ) {}

  push(chunk: Buffer): Promise<void> | void {
    if (this.ended || this.error) return;
    this.chunks.push(chunk);
    this.queued += chunk.length;
    this.notify();
    if (this.queued > this.limit) return new Promise<void>((r) => this.drained.push(r));
  }

  end(): void {
    this.ended = true;
    this.notify();
  }

  fail(err: unknown): void {
    this.error = err instanceof Error ? err : new Error(String(err));
    this.chunks = [];
    this.queued = 0;
    this.release();
    this.notify();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    for (;;) {
      if (this.error) throw this.error;
      const c = this.chunks.shift();
      if (c) {
        this.queued -= c.length;
        this.onTaken?.(c.length);
        if (this.queued <= this.limit) this.release();
        yield c;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((r) => (this.wake = r));
    }
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private release(): void {
    const d = this.drained;
    this.drained = [];
    for (const r of d) r();
  }
}

export async function runUnpackJob(job: UnpackJob, log?: JobLogger, source?: ChunkQueue): Promise<UnpackJobResult> {
  const ctx: ErrorContext = { stage: 'unpack', image: job.image, path: job.blobPath };
  let compression: Compression;
  let input: AsyncIterable<Buffer>;
  try {
    if (job.streamed) {
      if (!source) throw new Error('a streamed unpack job without its source');
      ({ compression, stream: input } = await decompressedSource(source, job.mediaType, job.blobPath));
    } else {
      compression = await detectCompression(job.blobPath, job.mediaType);
      input = decompressedStream(job.blobPath, compression);
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new NotFoundError(`layer blob ${job.blobPath} does not exist`, ctx);
    }
    throw asCapsaError(err, ctx);
  }
  const hash = createHash('sha256');
  const reader = new TarReader(hashing(input, hash));
  try {
    const applier = new LayerApplier(job.fsDir, {
      maxEntries: job.maxEntries,
      log,
      image: job.image,
    });
    const stats = await applier.applyAll(reader);
    await reader.drain();
    return { diffId: `sha256:${hash.digest('hex')}`, compression, stats };
  } catch (err) {
    throw streamError(err, ctx);
  } finally {
    await reader.close().catch(() => undefined);
  }
}

async function* hashing(source: AsyncIterable<Buffer>, hash: { update(b: Buffer): unknown }): AsyncGenerator<Buffer> {
  for await (const chunk of source) {
    hash.update(chunk);
    yield chunk;
  }
}

function streamError(err: unknown, ctx: ErrorContext): CapsaError {
  if (err instanceof CapsaError) return err;
  const e = err as NodeJS.ErrnoException;
  if (e?.name === 'TarFormatError') return new InvalidArgumentError('layer', `malformed tar: ${e.message}`, ctx);
  if (typeof e?.code === 'string' && e.code.startsWith('Z_')) {
    return new InvalidArgumentError('layer', `corrupt gzip stream: ${e.message}`, ctx);
  }
  return asCapsaError(err, ctx);
}

/** A CapsaError as plain data, to cross a worker boundary. */
export interface SerializedError {
  kind: ErrorKind;
  message: string;
  context: ErrorContext;
}

export function serializeError(err: unknown): SerializedError {
  const e = asCapsaError(err);
  // InvalidArgumentError prefixes its message with the field; keep the message whole.
  return { kind: e.kind, message: e.message, context: e.context };
}

export function deserializeError(s: SerializedError): CapsaError {
  return new CapsaError(s.kind, s.message, s.context);
}
