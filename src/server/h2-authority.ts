// grpc-go clients of the cri-tools 1.26 era (crictl, critest) send the
// socket *path* as the HTTP/2 `:authority` of calls over a unix socket.
// nghttp2 inside Node refuses that value ('/' is not an authority
// character) with RST_STREAM PROTOCOL_ERROR before grpc-js sees the call,
// and Node has no switch to relax it. So connections on our socket pass
// through this small rewriter: it re-encodes each request header block,
// replacing an invalid :authority with "localhost" (what newer kubelets
// send), and passes every other frame through untouched.
//
// Only connections that need it pay for the rewriter: acceptConnection()
// reads up to the first request's header block and, when its :authority is
// valid (kubelet sends "localhost"), hands the raw socket itself to grpc-js
// with the bytes read so far put back, for the whole connection; otherwise
// the rewriter takes the whole connection. HPACK is stateful, so the choice
// is made once, at the first header block, and never changed: a rewritten
// connection's later blocks may refer to table entries only the client and
// our decoder know. (A pass-through connection that later sends a bad
// authority gets nghttp2's refusal, as without capsa; clients do not change
// their authority mid-connection.) grpc-go clients (kubelet, crictl) send
// nothing but their preface until the server's preface arrives, so we send
// it: an empty SETTINGS frame, whose ACK we remove from what the client
// sends (the server behind us did not send it and would take the ACK as a
// protocol error); the server's own SETTINGS follow as an ordinary update.
//
// hpack.js does the HPACK decoding (Huffman + dynamic table): it is the
// implementation spdy-transport uses, and HPACK is protocol plumbing where
// a widely deployed decoder beats a new one of ours.
import type { Socket } from 'net';
import { Duplex, Transform, TransformCallback } from 'stream';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const hpack = require('hpack.js') as HpackModule;

interface HpackHeader {
  name: string;
  value: string;
  neverIndex?: boolean;
  incremental?: boolean;
  huffman?: boolean;
}
interface HpackStream {
  write(data: unknown): void;
  read(): unknown;
  execute?(cb?: (err: Error | null) => void): void;
  on(event: 'error', fn: (err: Error) => void): void;
}
interface HpackModule {
  decompressor: { create(o: { table: { size: number } }): HpackStream };
  compressor: { create(o: { table: { size: number } }): HpackStream };
}

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const FRAME_HEADER = 9;
const TYPE_HEADERS = 0x1;
const TYPE_SETTINGS = 0x4;
const TYPE_CONTINUATION = 0x9;
const FLAG_END_STREAM = 0x1;
const FLAG_ACK = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;
/** SETTINGS_MAX_FRAME_SIZE default; Node's server does not raise it. */
const MAX_FRAME = 16384;
/** Refuse header blocks past this (Node's own default limit is 64 KiB). */
const MAX_HEADER_BLOCK = 256 * 1024;

/** RFC 3986 authority characters (host, port, userinfo). */
export function isValidAuthority(value: string): boolean {
  return /^[A-Za-z0-9\-._~!$&'()*+,;=:@[\]%]*$/.test(value);
}

interface PendingHeaders {
  streamId: number;
  flags: number;
  priority?: Buffer;
  fragments: Buffer[];
  size: number;
}

/** Client→server byte stream transform that fixes :authority in HEADERS. */
export class AuthorityRewriter extends Transform {
  private buf: Buffer = Buffer.alloc(0);
  private prefaceSeen = false;
  /** True while the client's ACK of our own SETTINGS (acceptConnection) is still to be removed. */
  private dropSettingsAck: boolean;
  private pending?: PendingHeaders;
  private readonly decoder = hpack.decompressor.create({ table: { size: 4096 } });
  private readonly encoder = hpack.compressor.create({ table: { size: 4096 } });

  constructor(opts: { dropFirstSettingsAck?: boolean } = {}) {
    super();
    this.dropSettingsAck = opts.dropFirstSettingsAck ?? false;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    try {
      this.drain();
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  private drain(): void {
    if (!this.prefaceSeen) {
      if (this.buf.length < PREFACE.length) return;
      if (!this.buf.subarray(0, PREFACE.length).equals(PREFACE)) throw new Error('not an HTTP/2 connection preface');
      this.push(this.buf.subarray(0, PREFACE.length));
      this.buf = this.buf.subarray(PREFACE.length);
      this.prefaceSeen = true;
    }
    while (this.buf.length >= FRAME_HEADER) {
      const length = this.buf.readUIntBE(0, 3);
      if (this.buf.length < FRAME_HEADER + length) return;
      const frame = this.buf.subarray(0, FRAME_HEADER + length);
      this.buf = this.buf.subarray(FRAME_HEADER + length);
      const type = frame[3];
      if (type === TYPE_HEADERS) this.onHeaders(frame);
      else if (type === TYPE_CONTINUATION) this.onContinuation(frame);
      else if (this.pending) throw new Error('frame interleaved inside a header block');
      else if (this.dropSettingsAck && isSettingsAck(frame)) this.dropSettingsAck = false;
      else this.push(frame);
    }
  }

  private onHeaders(frame: Buffer): void {
    if (this.pending) throw new Error('HEADERS inside a header block');
    const flags = frame[4];
    const streamId = frame.readUInt32BE(5) & 0x7fffffff;
    let payload = frame.subarray(FRAME_HEADER);
    if (flags & FLAG_PADDED) {
      const pad = payload[0];
      payload = payload.subarray(1, payload.length - pad);
    }
    let priority: Buffer | undefined;
    if (flags & FLAG_PRIORITY) {
      priority = Buffer.from(payload.subarray(0, 5));
      payload = payload.subarray(5);
    }
    this.pending = { streamId, flags, priority, fragments: [Buffer.from(payload)], size: payload.length };
    if (flags & FLAG_END_HEADERS) this.flushHeaders();
  }

  private onContinuation(frame: Buffer): void {
    const p = this.pending;
    if (!p || (frame.readUInt32BE(5) & 0x7fffffff) !== p.streamId) throw new Error('unexpected CONTINUATION');
    const payload = frame.subarray(FRAME_HEADER);
    p.fragments.push(Buffer.from(payload));
    p.size += payload.length;
    if (p.size > MAX_HEADER_BLOCK) throw new Error('header block too large');
    if (frame[4] & FLAG_END_HEADERS) this.flushHeaders();
  }

  private flushHeaders(): void {
    const p = this.pending!;
    this.pending = undefined;
    this.decoder.write(Buffer.concat(p.fragments));
    let failure: Error | null = null;
    this.decoder.execute!((err) => (failure = err));
    const headers: HpackHeader[] = [];
    for (let h = this.decoder.read() as HpackHeader | null; h !== null; h = this.decoder.read() as HpackHeader | null) {
      headers.push(h);
    }
    if (failure) throw failure;
    for (const h of headers) {
      if (h.name === ':authority' && !isValidAuthority(h.value)) h.value = 'localhost';
    }
    // No dynamic-table insertions on our side: the server's decoder table
    // stays empty, so our encoder never has to track it.
    this.encoder.write(
      headers.map((h) => ({ name: h.name, value: h.value, incremental: false, neverIndex: h.neverIndex })),
    );
    const parts: Buffer[] = [];
    for (let c = this.encoder.read() as Buffer | null; c !== null; c = this.encoder.read() as Buffer | null)
      parts.push(c);
    this.emitHeaderBlock(p, Buffer.concat(parts));
  }

  private emitHeaderBlock(p: PendingHeaders, block: Buffer): void {
    const first = p.priority ? Buffer.concat([p.priority, block]) : block;
    let offset = Math.min(first.length, MAX_FRAME);
    const endHeaders = offset === first.length;
    const flags = (p.flags & (FLAG_END_STREAM | FLAG_PRIORITY)) | (endHeaders ? FLAG_END_HEADERS : 0);
    this.push(frameOf(TYPE_HEADERS, flags, p.streamId, first.subarray(0, offset)));
    while (offset < first.length) {
      const end = Math.min(first.length, offset + MAX_FRAME);
      this.push(
        frameOf(
          TYPE_CONTINUATION,
          end === first.length ? FLAG_END_HEADERS : 0,
          p.streamId,
          first.subarray(offset, end),
        ),
      );
      offset = end;
    }
  }
}

function isSettingsAck(frame: Buffer): boolean {
  return frame[3] === TYPE_SETTINGS && (frame[4] & FLAG_ACK) !== 0;
}

function frameOf(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(FRAME_HEADER);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId, 5);
  return Buffer.concat([head, payload]);
}

/**
 * Wraps an accepted socket: reads come through the rewriter (after
 * `initial`, bytes already read from it), writes go straight to the socket.
 * Closing either side closes the socket.
 */
export function rewriteAuthority(
  socket: Duplex,
  opts: { initial?: Buffer; dropFirstSettingsAck?: boolean } = {},
): Duplex {
  const rewriter = new AuthorityRewriter({ dropFirstSettingsAck: opts.dropFirstSettingsAck });
  if (opts.initial && opts.initial.length > 0) rewriter.write(opts.initial);
  socket.pipe(rewriter);
  const wrapped = new Duplex({
    read() {
      rewriter.resume();
    },
    write(chunk: Buffer, _enc, cb) {
      socket.write(chunk, cb);
    },
    final(cb) {
      socket.end();
      cb();
    },
    destroy(err, cb) {
      socket.destroy(err ?? undefined);
      rewriter.destroy();
      cb(err);
    },
  });
  rewriter.on('data', (b: Buffer) => {
    if (!wrapped.push(b)) rewriter.pause();
  });
  rewriter.on('end', () => wrapped.push(null));
  rewriter.on('error', (err) => wrapped.destroy(err));
  socket.on('error', (err) => wrapped.destroy(err));
  socket.on('close', () => wrapped.destroy());
  return wrapped;
}

/** What acceptConnection() found at the start of a connection. */
export type FirstRequest =
  /** Handed over as is: the first request's :authority is valid. */
  | 'pass-through'
  /** Through the rewriter: an invalid :authority, or no request in time. */
  | 'rewrite'
  /** Closed before its first request, or not HTTP/2. */
  | 'closed';

export interface AcceptOptions {
  /** How long to wait for the first request before settling on the rewriter. */
  peekTimeoutMs?: number;
  /** Told once per connection how it was handed over (tests, debug logs). */
  onDecision?: (d: FirstRequest) => void;
}

/**
 * Sends our server preface, reads up to the client's first complete header
 * block and the ACK of that preface, then calls `inject` once: with the
 * socket itself (the bytes read put back, minus the ACK) when the block's
 * :authority is valid, else with the rewriter around it. See the header.
 */
export function acceptConnection(socket: Socket, inject: (conn: Duplex) => void, opts: AcceptOptions = {}): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let decided = false;
  const finish = (d: FirstRequest): void => {
    if (decided) return;
    decided = true;
    clearTimeout(timer);
    socket.removeListener('data', onData);
    socket.removeListener('end', onGone);
    socket.removeListener('close', onGone);
    opts.onDecision?.(d);
  };
  const rewrite = (): void => {
    finish('rewrite');
    inject(rewriteAuthority(socket, { initial: Buffer.concat(chunks), dropFirstSettingsAck: true }));
  };
  const onGone = (): void => {
    finish('closed');
    socket.destroy();
  };
  const onData = (chunk: Buffer): void => {
    chunks.push(chunk);
    size += chunk.length;
    let peek: Peek;
    try {
      peek = peekFirstRequest(Buffer.concat(chunks));
    } catch {
      onGone();
      return;
    }
    if (peek.state === 'more') {
      if (size > PREFACE.length + MAX_HEADER_BLOCK + 4 * MAX_FRAME) rewrite();
      return;
    }
    if (!peek.validAuthority) return rewrite();
    finish('pass-through');
    socket.pause();
    socket.unshift(peek.withoutAck);
    inject(socket);
  };
  const timer = setTimeout(() => {
    if (!decided && !socket.destroyed) rewrite();
  }, opts.peekTimeoutMs ?? 2000);
  socket.on('data', onData);
  socket.once('end', onGone);
  socket.once('close', onGone);
  socket.write(frameOf(TYPE_SETTINGS, 0, 0, Buffer.alloc(0)));
}

type Peek = { state: 'more' } | { state: 'ready'; validAuthority: boolean; withoutAck: Buffer };

/**
 * Looks at a connection's first bytes: 'more' until both the first header
 * block and the first SETTINGS ACK are complete. Throws when the bytes are
 * not HTTP/2 or the first header block does not decode.
 */
export function peekFirstRequest(buf: Buffer): Peek {
  if (buf.length < PREFACE.length) {
    if (!PREFACE.subarray(0, buf.length).equals(buf)) throw new Error('not an HTTP/2 connection preface');
    return { state: 'more' };
  }
  if (!buf.subarray(0, PREFACE.length).equals(PREFACE)) throw new Error('not an HTTP/2 connection preface');
  let off = PREFACE.length;
  let ack: [number, number] | undefined;
  let block: Buffer[] | undefined;
  let blockDone = false;
  let blockStream = 0;
  while (off + FRAME_HEADER <= buf.length && !(ack && blockDone)) {
    const length = buf.readUIntBE(off, 3);
    const end = off + FRAME_HEADER + length;
    if (end > buf.length) break;
    const type = buf[off + 3];
    const flags = buf[off + 4];
    const streamId = buf.readUInt32BE(off + 5) & 0x7fffffff;
    let payload = buf.subarray(off + FRAME_HEADER, end);
    if (!ack && type === TYPE_SETTINGS && flags & FLAG_ACK) ack = [off, end];
    if (!blockDone) {
      if (type === TYPE_HEADERS && !block) {
        if (flags & FLAG_PADDED) payload = payload.subarray(1, payload.length - payload[0]);
        if (flags & FLAG_PRIORITY) payload = payload.subarray(5);
        block = [payload];
        blockStream = streamId;
        blockDone = (flags & FLAG_END_HEADERS) !== 0;
      } else if (type === TYPE_CONTINUATION && block && streamId === blockStream) {
        block.push(payload);
        blockDone = (flags & FLAG_END_HEADERS) !== 0;
      } else if (block) {
        throw new Error('frame interleaved inside a header block');
      }
    }
    off = end;
  }
  if (!ack || !block || !blockDone) return { state: 'more' };
  const decoder = hpack.decompressor.create({ table: { size: 4096 } });
  decoder.write(Buffer.concat(block));
  let failure: Error | null = null;
  decoder.execute!((err) => (failure = err));
  let validAuthority = true;
  for (let h = decoder.read() as HpackHeader | null; h !== null; h = decoder.read() as HpackHeader | null) {
    if (h.name === ':authority' && !isValidAuthority(h.value)) validAuthority = false;
  }
  if (failure) throw failure;
  return { state: 'ready', validAuthority, withoutAck: Buffer.concat([buf.subarray(0, ack[0]), buf.subarray(ack[1])]) };
}
