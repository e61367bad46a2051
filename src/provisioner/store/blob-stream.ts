// A blob's bytes handed from its download to one reader while they arrive
// (layers unpack while they download), with the download's verdict.
/**
 * A second consumer of a blob's bytes while they are written (e.g. the layer
 * unpacker, so a layer unpacks while it downloads). The bytes it sees are
 * not verified yet: the blob's digest is checked only at the end, so a
 * consumer must not make anything visible before the ingest has succeeded.
 */
export interface IngestTee {
  /** The next accepted bytes, in order. May return a promise to slow the writer down. Must not throw. */
  write(chunk: Uint8Array): Promise<void> | void;
  /** Everything written so far is void (a restarted download, or this write failed). */
  reset(): void;
  /** Every byte was written (still unverified: the digest check follows). */
  end(): void;
}

/** Thrown to a BlobStream's reader when the bytes cannot be streamed after all: read the stored blob instead. */
export class StreamFallback extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StreamFallback';
  }
}

const DEFAULT_STREAM_BUFFER = 8 * 1024 * 1024;

/**
 * A blob's bytes handed from its download (an IngestTee) to one reader as
 * they arrive, plus the download's outcome. The reader iterates the chunks;
 * the iteration ends once every byte was written, and throws StreamFallback
 * when streaming did not work out (the blob was already stored or being
 * downloaded by another pull, the download restarted, or the reader was
 * detached): the reader then waits for `blob` and reads the stored file.
 * `blob` resolves with the blob's path once it is verified and stored, and
 * rejects when it is not (digest mismatch, abort, …): only then may what the
 * reader built from the bytes become visible.
 *
 * At most `highWaterMark` bytes wait for the reader; past that the writer
 * waits (a download's stall clock stops meanwhile). Whoever owns the stream
 * must detach() it when no reader will come, or the writer waits forever.
 */
export class BlobStream implements IngestTee, AsyncIterable<Buffer> {
  readonly blob: Promise<string>;
  private resolveBlob!: (path: string) => void;
  private rejectBlob!: (err: unknown) => void;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private state: 'open' | 'ended' | 'fallback' | 'failed' = 'open';
  private why = '';
  private error: unknown;
  private claimed = false;
  private wakeReader?: () => void;
  private wakeWriters: (() => void)[] = [];

  constructor(private readonly highWaterMark = DEFAULT_STREAM_BUFFER) {
    this.blob = new Promise<string>((resolve, reject) => {
      this.resolveBlob = resolve;
      this.rejectBlob = reject;
    });
    this.blob.catch(() => undefined); // the reader observes it; an unread stream's failure is not unhandled
  }

  /** True once a reader started iterating. */
  get isClaimed(): boolean {
    return this.claimed;
  }

  // ------------------------------------------------------------ writer (IngestTee)

  write(chunk: Uint8Array): Promise<void> | void {
    if (this.state !== 'open') return;
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    this.chunks.push(b);
    this.buffered += b.length;
    this.wake();
    if (this.buffered < this.highWaterMark) return;
    return new Promise<void>((resolve) => this.wakeWriters.push(resolve));
  }

  reset(): void {
    this.fallBack('the download restarted');
  }

  end(): void {
    if (this.state !== 'open') return;
    this.state = 'ended';
    this.wake();
  }

  // ------------------------------------------------------------ owner

  /** The blob is verified and stored at `path`. A stream that never ended was not fed: its reader falls back. */
  stored(path: string): void {
    if (this.state === 'open') this.fallBack('the blob was not downloaded here');
    this.resolveBlob(path);
  }

  /** The blob could not be stored: the reader fails with `err`. */
  fail(err: unknown): void {
    if (this.state === 'open' || this.state === 'ended') {
      this.state = 'failed';
      this.error = err;
      this.drop();
    }
    this.rejectBlob(err);
  }

  /** No reader (any more): the writer goes on unhindered, a reader still iterating falls back. */
  detach(): void {
    this.fallBack('the reader let go');
  }

  // ------------------------------------------------------------ reader

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    this.claimed = true;
    for (;;) {
      const chunk = this.chunks.shift();
      if (chunk) {
        this.buffered -= chunk.length;
        if (this.buffered < this.highWaterMark) this.releaseWriters();
        yield chunk;
        continue;
      }
      if (this.state === 'ended') return;
      if (this.state === 'failed') throw this.error;
      if (this.state === 'fallback') throw new StreamFallback(this.why);
      await new Promise<void>((resolve) => (this.wakeReader = resolve));
    }
  }

  private fallBack(why: string): void {
    if (this.state !== 'open' && this.state !== 'ended') return;
    this.state = 'fallback';
    this.why = why;
    this.drop();
  }

  private drop(): void {
    this.chunks = [];
    this.buffered = 0;
    this.releaseWriters();
    this.wake();
  }

  private wake(): void {
    const w = this.wakeReader;
    this.wakeReader = undefined;
    w?.();
  }

  private releaseWriters(): void {
    const ws = this.wakeWriters;
    this.wakeWriters = [];
    for (const w of ws) w();
  }
}
