// SPDY/3.1 framing (the subset kubelet's clients use: moby/spdystream via
// k8s.io/apimachinery httpstream/spdy). Frames:
//   control: |1|version(15)=3|type(16)|flags(8)|length(24)|payload
//   data:    |0|stream id(31)|flags(8)|length(24)|payload
// Header blocks are a 32-bit count of name/value pairs, each a 32-bit
// length and bytes, compressed by one zlib stream per direction with the
// SPDY/3 dictionary. We write ours as stored (uncompressed) deflate blocks:
// valid zlib for any reader, and no compressor state to keep.
import * as zlib from 'zlib';
import { SPDY3_DICTIONARY } from './dictionary';

export const TYPE = {
  SYN_STREAM: 1,
  SYN_REPLY: 2,
  RST_STREAM: 3,
  SETTINGS: 4,
  PING: 6,
  GOAWAY: 7,
  HEADERS: 8,
  WINDOW_UPDATE: 9,
} as const;

export const FLAG_FIN = 0x01;

export const RST = { PROTOCOL_ERROR: 1, INVALID_STREAM: 2, REFUSED_STREAM: 3, CANCEL: 5, INTERNAL_ERROR: 6 } as const;

/** Largest payload a frame can carry (24-bit length). */
export const MAX_PAYLOAD = 0xffffff;
/** What we put in one data frame. */
export const DATA_CHUNK = 32 * 1024;

export type Frame =
  | { control: true; type: number; flags: number; payload: Buffer }
  | { control: false; streamId: number; flags: number; payload: Buffer };

/** Cuts complete frames off the front of `buf`; returns them and the rest. */
export function parseFrames(buf: Buffer, maxPayload: number): { frames: Frame[]; rest: Buffer } {
  const frames: Frame[] = [];
  let off = 0;
  while (buf.length - off >= 8) {
    const word = buf.readUInt32BE(off);
    const flags = buf[off + 4];
    const length = buf.readUIntBE(off + 5, 3);
    if (length > maxPayload) throw new Error(`SPDY frame of ${length} bytes is too large`);
    if (buf.length - off < 8 + length) break;
    const payload = buf.subarray(off + 8, off + 8 + length);
    if (word & 0x80000000) {
      const version = (word >>> 16) & 0x7fff;
      if (version !== 3) throw new Error(`SPDY version ${version} is not supported`);
      frames.push({ control: true, type: word & 0xffff, flags, payload });
    } else {
      frames.push({ control: false, streamId: word & 0x7fffffff, flags, payload });
    }
    off += 8 + length;
  }
  return { frames, rest: buf.subarray(off) };
}

function head(word: number, flags: number, length: number): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32BE(word >>> 0);
  h[4] = flags;
  h.writeUIntBE(length, 5, 3);
  return h;
}

export function controlFrame(type: number, flags: number, payload: Buffer): Buffer {
  return Buffer.concat([head((0x8000 | 3) * 0x10000 + type, flags, payload.length), payload]);
}

export function dataFrame(streamId: number, flags: number, payload: Buffer): Buffer {
  return Buffer.concat([head(streamId & 0x7fffffff, flags, payload.length), payload]);
}

export function u32(...values: number[]): Buffer {
  const b = Buffer.alloc(4 * values.length);
  values.forEach((v, i) => b.writeUInt32BE(v >>> 0, i * 4));
  return b;
}

export type Headers = Map<string, string>;

/** Uncompressed name/value block. Names are lower-cased, as SPDY requires. */
export function encodeHeaderBlock(headers: Iterable<[string, string]>): Buffer {
  const parts: Buffer[] = [];
  let n = 0;
  for (const [k, v] of headers) {
    const name = Buffer.from(k.toLowerCase(), 'utf8');
    const value = Buffer.from(v, 'utf8');
    parts.push(u32(name.length), name, u32(value.length), value);
    n++;
  }
  return Buffer.concat([u32(n), ...parts]);
}

export function decodeHeaderBlock(raw: Buffer): Headers {
  const out: Headers = new Map();
  const need = (off: number, len: number): void => {
    if (off + len > raw.length) throw new Error('SPDY header block is truncated');
  };
  need(0, 4);
  const n = raw.readUInt32BE(0);
  let off = 4;
  for (let i = 0; i < n; i++) {
    need(off, 4);
    const nl = raw.readUInt32BE(off);
    need(off + 4, nl + 4);
    const name = raw.toString('utf8', off + 4, off + 4 + nl).toLowerCase();
    off += 4 + nl;
    const vl = raw.readUInt32BE(off);
    need(off + 4, vl);
    // Several values of one name are NUL-separated: the first is enough for us.
    const value = raw.toString('utf8', off + 4, off + 4 + vl).split('\0')[0];
    off += 4 + vl;
    if (!out.has(name)) out.set(name, value);
  }
  return out;
}

/** Our side of header compression: stored deflate blocks in one zlib stream. */
export class HeaderWriter {
  private started = false;

  wrap(block: Buffer): Buffer {
    const parts: Buffer[] = [];
    if (!this.started) {
      // CMF 0x78 (deflate, 32K window), FLG 0x01 (no preset dictionary, check bits).
      parts.push(Buffer.from([0x78, 0x01]));
      this.started = true;
    }
    for (let off = 0; off < block.length; off += 0xffff) {
      const piece = block.subarray(off, off + 0xffff);
      const h = Buffer.alloc(5);
      h[0] = 0; // BFINAL 0, BTYPE 00 (stored), byte-aligned
      h.writeUInt16LE(piece.length, 1);
      h.writeUInt16LE(~piece.length & 0xffff, 3);
      parts.push(h, piece);
    }
    // And an empty stored block, as a sync flush ends: Go's flate reader
    // hands out a stored block's bytes only when the next block begins.
    parts.push(Buffer.from([0, 0, 0, 0xff, 0xff]));
    return Buffer.concat(parts);
  }
}

/** The peer's side: one inflate stream for the connection, each block sync-flushed. */
export class HeaderReader {
  private readonly inflate = zlib.createInflate({ dictionary: SPDY3_DICTIONARY });
  private failure?: Error;
  private out: Buffer[] = [];

  constructor() {
    this.inflate.on('error', (err: Error) => {
      this.failure = err;
    });
    // Flowing: a large block must not stall the inflater on a full buffer.
    this.inflate.on('data', (c: Buffer) => this.out.push(c));
  }

  async read(compressed: Buffer): Promise<Buffer> {
    if (this.failure) throw this.failure;
    this.inflate.write(compressed);
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.inflate.once('error', onError);
      this.inflate.flush(zlib.constants.Z_SYNC_FLUSH, () => {
        this.inflate.removeListener('error', onError);
        resolve();
      });
    });
    await new Promise((resolve) => setImmediate(resolve));
    if (this.failure) throw this.failure;
    const block = Buffer.concat(this.out);
    this.out = [];
    return block;
  }

  close(): void {
    this.inflate.destroy();
  }
}
