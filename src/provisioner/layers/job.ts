// One unpack job: blob -> decompress -> hash -> tar -> directory. Pure in its
// inputs (no store bookkeeping), so it runs the same in a worker thread
// (unpack-worker.ts) or in-process.
import { createHash } from 'crypto';

import { asCapsaError, CapsaError, ErrorContext, ErrorKind, InvalidArgumentError, NotFoundError } from '../../errors';
import type { Logger } from '../../log';
import { ApplyStats, LayerApplier } from './apply';
import { Compression, decompressedStream, detectCompression } from './decompress';
import { TarReader } from './tar-reader';

export interface UnpackJob {
  blobPath: string;
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

export async function runUnpackJob(job: UnpackJob, log?: JobLogger): Promise<UnpackJobResult> {
  const ctx: ErrorContext = { stage: 'unpack', image: job.image, path: job.blobPath };
  let compression: Compression;
  try {
    compression = await detectCompression(job.blobPath, job.mediaType);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new NotFoundError(`layer blob ${job.blobPath} does not exist`, ctx);
    }
    throw asCapsaError(err, ctx);
  }
  const hash = createHash('sha256');
  const reader = new TarReader(hashing(decompressedStream(job.blobPath, compression), hash));
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
