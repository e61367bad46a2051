// Buffered, pull-based reading of an async byte stream (a decompressed layer), for the tar reader.
import { TarFormatError } from './tar-fields';

const EMPTY = Buffer.alloc(0);

/** Buffered, pull-based access to an async byte stream. */
export class ByteSource {
  private readonly it: AsyncIterator<Buffer>;
  private buf: Buffer = EMPTY;
  private off = 0;
  private ended = false;
  /** Bytes consumed so far. */
  position = 0;

  constructor(source: AsyncIterable<Buffer>) {
    this.it = source[Symbol.asyncIterator]();
  }

  private async pull(): Promise<boolean> {
    while (!this.ended) {
      const r = await this.it.next();
      if (r.done) {
        this.ended = true;
        return false;
      }
      const chunk = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value as Uint8Array);
      if (chunk.length === 0) continue;
      this.buf = chunk;
      this.off = 0;
      return true;
    }
    return false;
  }

  /** Reads up to n bytes; fewer only at the end of the stream. */
  async read(n: number): Promise<Buffer> {
    const have = this.buf.length - this.off;
    if (have >= n) {
      const out = this.buf.subarray(this.off, this.off + n);
      this.off += n;
      this.position += n;
      return out;
    }
    const parts: Buffer[] = [];
    let need = n;
    while (need > 0) {
      const avail = this.buf.length - this.off;
      if (avail === 0) {
        if (!(await this.pull())) break;
        continue;
      }
      const k = Math.min(avail, need);
      parts.push(this.buf.subarray(this.off, this.off + k));
      this.off += k;
      this.position += k;
      need -= k;
    }
    return parts.length === 1 ? parts[0] : Buffer.concat(parts);
  }

  /** Yields exactly n bytes as chunks; throws if the stream ends first. */
  async *take(n: number): AsyncGenerator<Buffer> {
    let need = n;
    while (need > 0) {
      const avail = this.buf.length - this.off;
      if (avail === 0) {
        if (!(await this.pull())) throw new TarFormatError('unexpected end of archive inside an entry');
        continue;
      }
      const k = Math.min(avail, need);
      const out = this.buf.subarray(this.off, this.off + k);
      this.off += k;
      this.position += k;
      need -= k;
      yield out;
    }
  }

  async skip(n: number): Promise<void> {
    for await (const _ of this.take(n)) {
      // discard
    }
  }

  /** Consumes the rest of the stream. */
  async drain(): Promise<void> {
    this.position += this.buf.length - this.off;
    this.off = this.buf.length;
    while (await this.pull()) {
      this.position += this.buf.length;
      this.off = this.buf.length;
    }
  }

  async close(): Promise<void> {
    if (!this.ended) {
      this.ended = true;
      await this.it.return?.();
    }
  }
}
