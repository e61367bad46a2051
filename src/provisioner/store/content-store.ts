// The content-addressed blob store: every manifest, config and layer blob
// lives once under <root>/content/blobs/sha256/<hex>. Writes go to a temp
// file under <root>/content/ingest/, are hashed and counted while written,
// and are renamed into place only when digest and size match; a mismatch
// discards the bytes. Concurrent ingests of one digest share one writer.
import { createHash, Hash, randomBytes } from 'crypto';
import { promises as fs, ReadStream } from 'fs';
import * as path from 'path';
import { Readable } from 'stream';
import { CapsaError, ErrorContext, NotFoundError, asCapsaError } from '../../errors';
import { fsyncDir } from '../../util/atomic-file';
import { IngestTee } from './blob-stream';
import { sha256Hex, SHA256_PREFIX } from './digest';

export { BlobStream, StreamFallback, type IngestTee } from './blob-stream';

/**
 * A blob whose bytes did not hash to the digest (or size) they were fetched
 * for: the registry or file served other bytes than the manifest names (a
 * bad image, not a capsa bug), so FailedPrecondition rather than Internal.
 */
export class DigestMismatchError extends CapsaError {
  constructor(message: string, context: ErrorContext = {}) {
    super('FailedPrecondition', message, context);
    this.name = 'DigestMismatchError';
  }
}

export interface IngestTarget {
  digest: string;
  /** Expected size; when given, writing past it fails at once and a short blob fails at the end. */
  size?: number;
}

/** What an ingest source writes through. */
export interface IngestWriter {
  /** Bytes accepted so far (a resumed download asks the server for the rest). */
  readonly offset: number;
  /** Aborts when every caller waiting on this ingest has given up. */
  readonly signal: AbortSignal;
  /** Appends bytes. The store keeps a reference to `chunk`: do not modify it afterwards. */
  write(chunk: Uint8Array): Promise<void>;
  /** Throws away everything written so far (e.g. a server that ignored a Range request). */
  reset(): Promise<void>;
}

export type IngestSource = (writer: IngestWriter) => Promise<void>;

export interface IngestOptions {
  signal?: AbortSignal;
  context?: ErrorContext;
  /**
   * Also hands every accepted byte to `tee` while it is written (see
   * IngestTee). Used only when this call starts the write: a blob already
   * stored, or being written for someone else, never reaches the tee.
   */
  tee?: IngestTee;
}

export interface ContentStoreOptions {
  /** fsync each blob before it is renamed into place (default true). */
  fsync?: boolean;
  /** Bytes buffered before a write to the temp file (default 1 MiB). */
  writeBufferBytes?: number;
}

interface Flight {
  promise: Promise<string>;
  controller: AbortController;
  waiters: number;
}

const DEFAULT_WRITE_BUFFER = 1024 * 1024;

export class ContentStore {
  readonly root: string;
  readonly blobsDir: string;
  readonly ingestDir: string;
  private readonly fsync: boolean;
  private readonly writeBufferBytes: number;
  private readonly flights = new Map<string, Flight>();

  constructor(root: string, opts: ContentStoreOptions = {}) {
    this.root = root;
    this.blobsDir = path.join(root, 'content', 'blobs', 'sha256');
    this.ingestDir = path.join(root, 'content', 'ingest');
    this.fsync = opts.fsync ?? true;
    this.writeBufferBytes = opts.writeBufferBytes ?? DEFAULT_WRITE_BUFFER;
  }

  /** Creates the directories and removes temp files left by a crash. Call once, before any ingest. */
  async init(): Promise<void> {
    await fs.mkdir(this.blobsDir, { recursive: true });
    await fs.mkdir(this.ingestDir, { recursive: true });
    for (const name of await fs.readdir(this.ingestDir)) {
      await fs.rm(path.join(this.ingestDir, name), { recursive: true, force: true });
    }
  }

  /** Where the blob lives (whether or not it exists). Invalid digest → InvalidArgument. */
  path(digest: string): string {
    return path.join(this.blobsDir, sha256Hex(digest));
  }

  async has(digest: string): Promise<boolean> {
    return (await this.size(digest)) !== undefined;
  }

  /** The blob's size, or undefined when absent. */
  async size(digest: string): Promise<number | undefined> {
    try {
      return (await fs.stat(this.path(digest))).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** A read stream over the blob; absent → NotFound. */
  async open(digest: string, context: ErrorContext = {}): Promise<ReadStream> {
    const p = this.path(digest);
    const fh = await fs.open(p, 'r').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') throw new NotFoundError(`blob ${digest} not found`, { ...context, path: p });
      throw err;
    });
    return fh.createReadStream();
  }

  /** Reads a whole (small) blob; larger than maxBytes → InvalidArgument-like error. */
  async read(digest: string, maxBytes = 16 * 1024 * 1024, context: ErrorContext = {}): Promise<Buffer> {
    const size = await this.size(digest);
    if (size === undefined)
      throw new NotFoundError(`blob ${digest} not found`, { ...context, path: this.path(digest) });
    if (size > maxBytes)
      throw new CapsaError(
        'ResourceExhausted',
        `blob ${digest} is ${size} bytes, over the ${maxBytes} byte limit`,
        context,
      );
    return fs.readFile(this.path(digest));
  }

  /** Removes a blob; absent is fine. */
  async delete(digest: string): Promise<void> {
    await fs.rm(this.path(digest), { force: true });
  }

  /** Every stored blob digest. */
  async list(): Promise<string[]> {
    const names = await fs.readdir(this.blobsDir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [] as string[];
      throw err;
    });
    return names.filter((n) => /^[a-f0-9]{64}$/.test(n)).map((n) => SHA256_PREFIX + n);
  }

  /** True while a download of `digest` is under way. */
  isIngesting(digest: string): boolean {
    return this.flights.has(digest);
  }

  /** Digests with an ingest under way (GC leaves these alone). */
  ingesting(): string[] {
    return [...this.flights.keys()];
  }

  /** A fresh path under the ingest directory, for callers that need scratch files next to the store. */
  tempPath(label: string): string {
    return path.join(this.ingestDir, `${label.replace(/[^A-Za-z0-9_.-]/g, '_')}.${randomBytes(6).toString('hex')}`);
  }

  /**
   * Makes sure the blob is stored, running `source` to produce its bytes if
   * it is not; returns its path. The bytes are verified against the target
   * digest and size before the blob appears. If another ingest of the same
   * digest is running, this one waits for it instead of starting a second.
   * The caller's `signal` only stops its own wait; the shared write is
   * aborted when every waiter has given up.
   */
  async ingest(target: IngestTarget, source: IngestSource, opts: IngestOptions = {}): Promise<string> {
    const context = opts.context ?? {};
    const dest = this.path(target.digest);
    opts.signal?.throwIfAborted();
    let flight = this.flights.get(target.digest);
    if (!flight) {
      const existing = await this.size(target.digest);
      if (existing !== undefined) return dest;
      opts.signal?.throwIfAborted();
      flight = this.flights.get(target.digest);
    }
    if (!flight) {
      const controller = new AbortController();
      const f: Flight = { controller, waiters: 0, promise: Promise.resolve(dest) };
      f.promise = this.write(target, source, controller.signal, context, opts.tee).finally(() => {
        if (this.flights.get(target.digest) === f) this.flights.delete(target.digest);
      });
      // Each waiter observes the promise; keep an unobserved rejection from surfacing.
      f.promise.catch(() => undefined);
      this.flights.set(target.digest, f);
      flight = f;
    }
    return this.wait(flight, opts.signal);
  }

  /** Ingests a readable stream (e.g. a file in an archive) as `target`. */
  async ingestStream(target: IngestTarget, stream: () => Readable, opts: IngestOptions = {}): Promise<string> {
    return this.ingest(
      target,
      async (w) => {
        if (w.offset > 0) await w.reset();
        const s = stream();
        const onAbort = (): void => {
          s.destroy(w.signal.reason instanceof Error ? w.signal.reason : new Error('aborted'));
        };
        w.signal.addEventListener('abort', onAbort, { once: true });
        try {
          for await (const chunk of s) await w.write(chunk as Buffer);
        } finally {
          w.signal.removeEventListener('abort', onAbort);
          s.destroy();
        }
      },
      opts,
    );
  }

  /** Stores bytes already in memory (manifests, configs). Returns the digest. */
  async writeBlob(bytes: Uint8Array, expectedDigest?: string, opts: IngestOptions = {}): Promise<string> {
    const digest = SHA256_PREFIX + createHash('sha256').update(bytes).digest('hex');
    if (expectedDigest !== undefined && expectedDigest !== digest)
      throw new DigestMismatchError(`content digest ${digest} does not match expected ${expectedDigest}`, opts.context);
    await this.ingest(
      { digest, size: bytes.length },
      async (w) => {
        if (w.offset > 0) await w.reset();
        await w.write(bytes);
      },
      opts,
    );
    return digest;
  }

  /**
   * Stores a stream whose digest is not known in advance (e.g. a layer in a
   * docker-archive): hashed while written, then `beforeCommit(digest)` runs
   * (pin it there, so GC cannot take it once it appears), then it is renamed
   * into place. Returns its digest, size and path.
   */
  async ingestUnverified(
    stream: Readable,
    opts: IngestOptions & { beforeCommit?: (digest: string, size: number) => Promise<void> } = {},
  ): Promise<{ digest: string; size: number; path: string }> {
    const context = opts.context ?? {};
    const tmp = this.tempPath('unverified');
    const fh = await fs.open(tmp, 'w', 0o644);
    let closed = false;
    const hash = createHash('sha256');
    let size = 0;
    const onAbort = (): void => {
      stream.destroy(opts.signal?.reason instanceof Error ? opts.signal.reason : new Error('aborted'));
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      opts.signal?.throwIfAborted();
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      const flush = async (): Promise<void> => {
        if (!pendingBytes) return;
        const buf = Buffer.concat(pending, pendingBytes);
        pending = [];
        pendingBytes = 0;
        await fh.write(buf, 0, buf.length, null);
      };
      for await (const chunk of stream) {
        const b = chunk as Buffer;
        hash.update(b);
        size += b.length;
        pending.push(b);
        pendingBytes += b.length;
        if (pendingBytes >= this.writeBufferBytes) await flush();
      }
      await flush();
      const digest = SHA256_PREFIX + hash.digest('hex');
      if (this.fsync) await fh.sync();
      await fh.close();
      closed = true;
      await opts.beforeCommit?.(digest, size);
      const dest = this.path(digest);
      await fs.rename(tmp, dest);
      if (this.fsync) await fsyncDir(this.blobsDir);
      return { digest, size, path: dest };
    } catch (err) {
      throw opts.signal?.aborted && err === opts.signal.reason ? err : asCapsaError(err, context);
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
      stream.destroy();
      if (!closed) await fh.close().catch(() => undefined);
      await fs.rm(tmp, { force: true }).catch(() => undefined);
    }
  }

  private wait(flight: Flight, signal: AbortSignal | undefined): Promise<string> {
    flight.waiters++;
    return new Promise<string>((resolve, reject) => {
      let done = false;
      const finish = (): boolean => {
        if (done) return false;
        done = true;
        signal?.removeEventListener('abort', onAbort);
        flight.waiters--;
        return true;
      };
      const onAbort = (): void => {
        if (!finish()) return;
        if (flight.waiters > 0) {
          reject(signal?.reason);
          return;
        }
        // The last waiter stops the write and answers only once it has settled: a write past
        // its last abort check (fsync, rename) must not commit the blob after the caller has
        // moved on to clean up (an interrupted import's gc would miss it).
        flight.controller.abort(signal?.reason);
        const settled = (): void => reject(signal?.reason);
        flight.promise.then(settled, settled);
      };
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
      flight.promise.then(
        (p) => finish() && resolve(p),
        (err: unknown) => finish() && reject(err),
      );
    });
  }

  private async write(
    target: IngestTarget,
    source: IngestSource,
    signal: AbortSignal,
    context: ErrorContext,
    tee: IngestTee | undefined,
  ): Promise<string> {
    const hex = sha256Hex(target.digest, 'digest', context);
    const dest = path.join(this.blobsDir, hex);
    const tmp = this.tempPath(hex);
    const fh = await fs.open(tmp, 'w', 0o644);
    let closed = false;
    let hash: Hash = createHash('sha256');
    let offset = 0; // bytes accepted
    let flushed = 0; // bytes written to the file
    let pending: Uint8Array[] = [];
    let pendingBytes = 0;
    const flush = async (): Promise<void> => {
      if (pendingBytes === 0) return;
      const bufs = pending;
      pending = [];
      const len = pendingBytes;
      pendingBytes = 0;
      // writev: the chunks go to the file as they are, without first being copied
      // into one big buffer (that copy was a tenth of a download's CPU time).
      let done = (await fh.writev(bufs, flushed)).bytesWritten;
      if (done < len) {
        // A short write (or more chunks than IOV_MAX): the rest from one buffer.
        const buf = Buffer.concat(bufs, len);
        while (done < len) {
          const { bytesWritten } = await fh.write(buf, done, len - done, flushed + done);
          done += bytesWritten;
        }
      }
      flushed += len;
    };
    const writer: IngestWriter = {
      get offset() {
        return offset;
      },
      signal,
      write: async (chunk: Uint8Array): Promise<void> => {
        signal.throwIfAborted();
        if (target.size !== undefined && offset + chunk.length > target.size)
          throw new DigestMismatchError(
            `blob ${target.digest} is larger than its expected size ${target.size}`,
            context,
          );
        hash.update(chunk);
        offset += chunk.length;
        // No copy: a chunk handed to write() must not be modified afterwards (stream chunks never are).
        pending.push(chunk);
        pendingBytes += chunk.length;
        const teed = tee?.write(chunk);
        if (pendingBytes >= this.writeBufferBytes) await flush();
        if (teed) await teed;
      },
      reset: async (): Promise<void> => {
        tee?.reset();
        pending = [];
        pendingBytes = 0;
        await fh.truncate(0);
        hash = createHash('sha256');
        offset = 0;
        flushed = 0;
      },
    };
    let ok = false;
    try {
      await source(writer);
      signal.throwIfAborted();
      tee?.end();
      await flush();
      if (target.size !== undefined && offset !== target.size)
        throw new DigestMismatchError(`blob ${target.digest}: got ${offset} bytes, expected ${target.size}`, context);
      const got = SHA256_PREFIX + hash.digest('hex');
      if (got !== target.digest)
        throw new DigestMismatchError(`digest mismatch: expected ${target.digest}, got ${got}`, context);
      if (this.fsync) await fh.sync();
      await fh.close();
      closed = true;
      await fs.rename(tmp, dest);
      if (this.fsync) await fsyncDir(this.blobsDir);
      ok = true;
      return dest;
    } catch (err) {
      throw signal.aborted && err === signal.reason ? err : asCapsaError(err, context);
    } finally {
      if (!ok) tee?.reset();
      if (!closed) await fh.close().catch(() => undefined);
      await fs.rm(tmp, { force: true }).catch(() => undefined);
    }
  }
}
