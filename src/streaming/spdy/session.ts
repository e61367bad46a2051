// A SPDY/3.1 session over one upgraded socket, as moby/spdystream speaks
// it: streams opened by SYN_STREAM (headers) and answered by SYN_REPLY,
// data frames with FIN for a half-close, RST_STREAM to abandon one, PINGs
// echoed, GOAWAY ends the session. spdystream does no flow control, so
// WINDOW_UPDATE and SETTINGS are read and ignored. The server side is what
// the daemon uses; the client side (openStream) serves the tests.
import { EventEmitter } from 'events';
import type { Socket } from 'net';
import { Duplex } from 'stream';
import {
  DATA_CHUNK,
  FLAG_FIN,
  Frame,
  HeaderReader,
  HeaderWriter,
  Headers,
  MAX_PAYLOAD,
  RST,
  TYPE,
  controlFrame,
  dataFrame,
  decodeHeaderBlock,
  encodeHeaderBlock,
  parseFrames,
  u32,
} from './frames';

/** One SPDY stream: a Duplex of its data frames. end() sends FIN. */
export class SpdyStream extends Duplex {
  /** The peer reset the stream (RST_STREAM) or the session went away. */
  reset = false;
  private replied: Promise<void>;
  private onReply!: () => void;
  private onReplyFailed!: (err: Error) => void;
  private remoteFin = false;
  private localFin = false;

  constructor(
    private readonly session: SpdySession,
    readonly id: number,
    readonly headers: Headers,
  ) {
    super({ allowHalfOpen: true });
    this.replied = new Promise((resolve, reject) => {
      this.onReply = resolve;
      this.onReplyFailed = reject;
    });
    this.replied.catch(() => undefined);
  }

  get type(): string {
    return this.headers.get('streamtype') ?? '';
  }

  /** Client side: resolves when the peer's SYN_REPLY arrives. */
  waitReply(): Promise<void> {
    return this.replied;
  }

  override _read(): void {
    // spdystream has no flow control: a reader that falls behind pauses the
    // whole connection (TCP does the rest) until it reads again.
    this.session.resumeFor(this);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.reset) {
      cb(new Error(`stream ${this.id} was reset`));
      return;
    }
    let ok = true;
    for (let off = 0; off < chunk.length; off += DATA_CHUNK) {
      ok = this.session.send(dataFrame(this.id, 0, chunk.subarray(off, off + DATA_CHUNK)));
    }
    if (ok) cb();
    else this.session.onceDrained(() => cb());
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (!this.reset && !this.localFin) {
      this.localFin = true;
      this.session.send(dataFrame(this.id, FLAG_FIN, Buffer.alloc(0)));
    }
    this.maybeDone();
    cb();
  }

  override _destroy(err: Error | null, cb: (err: Error | null) => void): void {
    if (!this.reset && !(this.localFin && this.remoteFin)) {
      this.reset = true;
      this.session.send(controlFrame(TYPE.RST_STREAM, 0, u32(this.id, RST.CANCEL)));
    }
    this.session.forget(this.id);
    cb(err);
  }

  /** @internal */
  gotData(payload: Buffer, fin: boolean): void {
    if (this.remoteFin) return;
    if (payload.length > 0 && !this.push(payload)) this.session.pauseFor(this);
    if (fin) this.gotFin();
  }

  /** @internal */
  gotFin(): void {
    if (this.remoteFin) return;
    this.remoteFin = true;
    this.push(null);
    this.maybeDone();
  }

  /** @internal */
  gotReply(): void {
    this.onReply();
  }

  /** @internal the peer reset it, or the session ended. */
  gotReset(why: string): void {
    this.reset = true;
    this.onReplyFailed(new Error(why));
    this.emit('reset', why);
    if (!this.remoteFin) {
      this.remoteFin = true;
      this.push(null);
    }
    this.destroy();
  }

  private maybeDone(): void {
    if (this.localFin && this.remoteFin) this.session.forget(this.id);
  }
}

/** Streams open at once on one session (port-forward opens two per connection). */
export const MAX_STREAMS = 1000;

export class SpdySession extends EventEmitter {
  private readonly streams = new Map<number, SpdyStream>();
  private readonly slow = new Set<SpdyStream>();
  private readonly reader = new HeaderReader();
  private readonly writer = new HeaderWriter();
  private buf: Buffer = Buffer.alloc(0);
  private queue: Frame[] = [];
  private pumping = false;
  private nextId: number;
  private closed = false;
  private goneAway = false;
  private peerEnded = false;

  constructor(
    private readonly socket: Socket,
    private readonly isServer: boolean,
    initial?: Buffer,
  ) {
    super();
    this.nextId = isServer ? 2 : 1;
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', () => this.close());
    // SPDY has no use for a TCP half-close (GOAWAY is the polite end), and an
    // upgraded HTTP socket allows one: the peer's FIN, like the socket's
    // close, ends the session — once the frames read before it are handled
    // (header blocks inflate asynchronously).
    const ended = (): void => {
      this.peerEnded = true;
      void this.pump();
    };
    socket.on('end', ended);
    socket.on('close', ended);
    if (initial && initial.length > 0) this.onData(initial);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Writes a frame; false when the socket's buffer is full. */
  send(frame: Buffer): boolean {
    if (this.closed || this.socket.destroyed) return true;
    return this.socket.write(frame);
  }

  onceDrained(fn: () => void): void {
    if (this.closed) {
      fn();
      return;
    }
    const done = (): void => {
      this.socket.removeListener('drain', done);
      this.socket.removeListener('close', done);
      fn();
    };
    this.socket.once('drain', done);
    this.socket.once('close', done);
  }

  /** Client side: opens a stream; await waitReply() before relying on it. */
  openStream(headers: Iterable<[string, string]>, fin = false): SpdyStream {
    const id = this.nextId;
    this.nextId += 2;
    const list = [...headers];
    const s = new SpdyStream(this, id, new Map(list.map(([k, v]) => [k.toLowerCase(), v])));
    this.streams.set(id, s);
    const payload = Buffer.concat([u32(id, 0), Buffer.from([0, 0]), this.writer.wrap(encodeHeaderBlock(list))]);
    this.send(controlFrame(TYPE.SYN_STREAM, fin ? FLAG_FIN : 0, payload));
    if (fin) s.end();
    return s;
  }

  /** Server side: answers a stream (empty header block). */
  reply(s: SpdyStream): void {
    const payload = Buffer.concat([u32(s.id), this.writer.wrap(encodeHeaderBlock([]))]);
    this.send(controlFrame(TYPE.SYN_REPLY, 0, payload));
  }

  /** @internal */
  forget(id: number): void {
    const s = this.streams.get(id);
    this.streams.delete(id);
    if (s) this.resumeFor(s);
  }

  /** @internal a stream's reader is behind: stop reading the socket. */
  pauseFor(s: SpdyStream): void {
    this.slow.add(s);
    this.socket.pause();
  }

  /** @internal */
  resumeFor(s: SpdyStream): void {
    if (this.slow.delete(s) && this.slow.size === 0 && !this.closed) this.socket.resume();
  }

  /** GOAWAY, then the socket is closed once written. */
  end(): void {
    if (this.closed) return;
    if (!this.goneAway) {
      this.goneAway = true;
      this.send(controlFrame(TYPE.GOAWAY, 0, u32(0, 0)));
    }
    this.socket.end();
    // A peer that never closes its side must not keep the socket.
    setTimeout(() => this.close(), 5000).unref();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of [...this.streams.values()]) s.gotReset('connection closed');
    this.streams.clear();
    this.reader.close();
    this.socket.destroy();
    this.emit('close');
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    let frames: Frame[];
    try {
      const r = parseFrames(this.buf, MAX_PAYLOAD);
      frames = r.frames;
      this.buf = r.rest;
    } catch (err) {
      this.emit('protocolError', err);
      this.close();
      return;
    }
    this.queue.push(...frames);
    void this.pump();
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.queue.length > 0 && !this.closed) {
        await this.handle(this.queue.shift()!);
      }
    } catch (err) {
      this.emit('protocolError', err);
      this.close();
    } finally {
      this.pumping = false;
    }
    if (this.peerEnded) this.close();
  }

  private async handle(f: Frame): Promise<void> {
    if (!f.control) {
      const s = this.streams.get(f.streamId);
      if (s) s.gotData(f.payload, (f.flags & FLAG_FIN) !== 0);
      return;
    }
    const p = f.payload;
    switch (f.type) {
      case TYPE.SYN_STREAM: {
        if (p.length < 10) throw new Error('short SYN_STREAM');
        const id = p.readUInt32BE(0) & 0x7fffffff;
        const headers = decodeHeaderBlock(await this.reader.read(p.subarray(10)));
        if (this.streams.has(id) || this.goneAway) {
          this.send(controlFrame(TYPE.RST_STREAM, 0, u32(id, RST.PROTOCOL_ERROR)));
          return;
        }
        if (this.streams.size >= MAX_STREAMS) {
          this.send(controlFrame(TYPE.RST_STREAM, 0, u32(id, RST.REFUSED_STREAM)));
          return;
        }
        const s = new SpdyStream(this, id, headers);
        this.streams.set(id, s);
        if (f.flags & FLAG_FIN) s.gotFin();
        this.emit('stream', s);
        return;
      }
      case TYPE.SYN_REPLY:
      case TYPE.HEADERS: {
        if (p.length < 4) throw new Error('short SYN_REPLY');
        const id = p.readUInt32BE(0) & 0x7fffffff;
        await this.reader.read(p.subarray(4)); // keeps the zlib stream in step
        const s = this.streams.get(id);
        if (s && f.type === TYPE.SYN_REPLY) s.gotReply();
        if (s && f.flags & FLAG_FIN) s.gotFin();
        return;
      }
      case TYPE.RST_STREAM: {
        if (p.length < 8) throw new Error('short RST_STREAM');
        const id = p.readUInt32BE(0) & 0x7fffffff;
        this.streams.get(id)?.gotReset(`stream reset by peer (status ${p.readUInt32BE(4)})`);
        return;
      }
      case TYPE.PING: {
        if (p.length < 4) throw new Error('short PING');
        // Echo the peer's pings (ids of the other parity); ours come back as answers.
        const id = p.readUInt32BE(0);
        if (id % 2 === (this.isServer ? 1 : 0)) this.send(controlFrame(TYPE.PING, 0, p.subarray(0, 4)));
        return;
      }
      case TYPE.GOAWAY:
        this.goneAway = true;
        this.close();
        return;
      default:
        return; // SETTINGS, WINDOW_UPDATE, NOOP, unknown: ignored
    }
  }
}
