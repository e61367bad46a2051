// Exec and attach over WebSocket (RFC 6455), the channel protocol of
// kubelet's wsstream and client-go's WebSocket executor: binary messages
// whose first byte is the channel — 0 stdin, 1 stdout, 2 stderr, 3 error,
// 4 resize. v5.channel.k8s.io adds a close signal: the message [255, n]
// closes channel n (the client's end of stdin). v4.channel.k8s.io and
// channel.k8s.io are served too; the error channel carries what the SPDY
// error stream does (statusOf). base64 variants are not served.
import { createHash } from 'crypto';
import { EventEmitter } from 'events';
import type { IncomingMessage } from 'http';
import type { Socket } from 'net';
import { PassThrough, Writable } from 'stream';
import {
  CommandOptions,
  CommandResult,
  CommandRunner,
  PROTOCOL_V4,
  PROTOCOL_V5,
  TerminalSize,
  parseResize,
  statusOf,
} from './remotecommand';

export const WEBSOCKET_PROTOCOLS = [PROTOCOL_V5, PROTOCOL_V4, 'channel.k8s.io'];

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const OP = { CONT: 0, TEXT: 1, BINARY: 2, CLOSE: 8, PING: 9, PONG: 10 } as const;
/** Largest message we take from a client (stdin chunks, resizes). */
const MAX_MESSAGE = 4 * 1024 * 1024;
const CH = { STDIN: 0, STDOUT: 1, STDERR: 2, ERROR: 3, RESIZE: 4, CLOSE: 255 } as const;
const CHUNK = 32 * 1024;

export function acceptKey(key: string): string {
  return createHash('sha1')
    .update(key + GUID)
    .digest('base64');
}

/** The client's subprotocols in its order; the first we serve wins (undefined: none). */
export function pickProtocol(req: IncomingMessage): string | undefined {
  const raw = String(req.headers['sec-websocket-protocol'] ?? '');
  return raw
    .split(',')
    .map((p) => p.trim())
    .find((p) => WEBSOCKET_PROTOCOLS.includes(p));
}

export function frame(opcode: number, payload: Buffer, mask?: Buffer): Buffer {
  const len = payload.length;
  const head = len < 126 ? 2 : len < 65536 ? 4 : 10;
  const h = Buffer.alloc(head + (mask ? 4 : 0));
  h[0] = 0x80 | opcode;
  if (len < 126) h[1] = len;
  else if (len < 65536) {
    h[1] = 126;
    h.writeUInt16BE(len, 2);
  } else {
    h[1] = 127;
    h.writeBigUInt64BE(BigInt(len), 2);
  }
  if (!mask) return Buffer.concat([h, payload]);
  h[1] |= 0x80;
  mask.copy(h, head);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i] ^= mask[i & 3];
  return Buffer.concat([h, body]);
}

export interface WsMessage {
  opcode: number;
  payload: Buffer;
}

/** Incremental frame reader: whole messages (fragments joined), unmasked. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);
  private fragments: Buffer[] = [];
  private fragOp = 0;

  constructor(private readonly requireMask: boolean) {}

  push(data: Buffer): WsMessage[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, data]) : data;
    const out: WsMessage[] = [];
    for (;;) {
      if (this.buf.length < 2) return out;
      const fin = (this.buf[0] & 0x80) !== 0;
      const opcode = this.buf[0] & 0x0f;
      const masked = (this.buf[1] & 0x80) !== 0;
      if (masked !== this.requireMask) throw new Error(masked ? 'masked frame from a server' : 'unmasked client frame');
      let len = this.buf[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (this.buf.length < 4) return out;
        len = this.buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (this.buf.length < 10) return out;
        const big = this.buf.readBigUInt64BE(2);
        if (big > BigInt(MAX_MESSAGE)) throw new Error('WebSocket frame too large');
        len = Number(big);
        off = 10;
      }
      if (len > MAX_MESSAGE) throw new Error('WebSocket frame too large');
      const maskOff = off;
      if (masked) off += 4;
      if (this.buf.length < off + len) return out;
      const payload = Buffer.from(this.buf.subarray(off, off + len));
      if (masked) for (let i = 0; i < len; i++) payload[i] ^= this.buf[maskOff + (i & 3)];
      this.buf = this.buf.subarray(off + len);
      if (opcode >= 8) {
        out.push({ opcode, payload }); // control frames are never fragmented
        continue;
      }
      if (opcode !== OP.CONT) {
        this.fragOp = opcode;
        this.fragments = [];
      }
      this.fragments.push(payload);
      if (this.fragments.reduce((n, b) => n + b.length, 0) > MAX_MESSAGE)
        throw new Error('WebSocket message too large');
      if (fin) {
        out.push({ opcode: this.fragOp, payload: Buffer.concat(this.fragments) });
        this.fragments = [];
      }
    }
  }
}

/** A server-side channel the command writes to. */
class OutChannel extends Writable {
  constructor(
    private readonly socket: Socket,
    private readonly channel: number,
  ) {
    super();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.socket.destroyed) {
      cb();
      return;
    }
    const pieces: Buffer[] = chunk.length === 0 ? [chunk] : [];
    for (let off = 0; off < chunk.length; off += CHUNK) pieces.push(chunk.subarray(off, off + CHUNK));
    let ok = true;
    for (const p of pieces) ok = this.socket.write(frame(OP.BINARY, Buffer.concat([Buffer.from([this.channel]), p])));
    if (ok) cb();
    else this.socket.once('drain', () => cb());
  }
}

/** Serves one exec/attach session on an upgraded WebSocket. */
export async function serveWebSocketCommand(
  socket: Socket,
  head: Buffer,
  version: string,
  opts: CommandOptions,
  run: CommandRunner,
): Promise<void> {
  socket.setNoDelay(true);
  const reader = new FrameReader(true);
  const stdin = opts.stdin ? new PassThrough() : undefined;
  const resizeIn = opts.tty ? new PassThrough() : undefined;
  const resize = new EventEmitter();
  let lastSize: TerminalSize | undefined;
  resize.on('resize', (size: TerminalSize) => (lastSize = size));
  if (resizeIn) parseResize(resizeIn, resize);
  const abort = new AbortController();
  let closed = false;
  const finish = (): void => {
    if (closed) return;
    closed = true;
    abort.abort();
    stdin?.end();
    socket.destroy();
  };
  const onMessage = (m: WsMessage): void => {
    switch (m.opcode) {
      case OP.PING:
        socket.write(frame(OP.PONG, m.payload));
        return;
      case OP.CLOSE:
        socket.end(frame(OP.CLOSE, m.payload.subarray(0, 2)));
        finish();
        return;
      case OP.BINARY:
      case OP.TEXT: {
        if (m.payload.length === 0) return;
        const ch = m.payload[0];
        const data = m.payload.subarray(1);
        if (ch === CH.STDIN && stdin && data.length > 0) stdin.write(data);
        else if (ch === CH.RESIZE && resizeIn) resizeIn.write(data);
        else if (ch === CH.CLOSE && version === PROTOCOL_V5 && data[0] === CH.STDIN) stdin?.end();
        return;
      }
      default:
        return;
    }
  };
  const onData = (d: Buffer): void => {
    try {
      for (const m of reader.push(d)) onMessage(m);
    } catch {
      socket.end(frame(OP.CLOSE, Buffer.from([0x03, 0xea]))); // 1002 protocol error
      finish();
    }
  };
  socket.on('data', onData);
  socket.on('end', finish);
  socket.on('close', finish);
  socket.on('error', finish);
  if (head.length > 0) onData(head);

  const stdout = opts.stdout ? new OutChannel(socket, CH.STDOUT) : undefined;
  const stderr = opts.stderr && !opts.tty ? new OutChannel(socket, CH.STDERR) : undefined;
  let result: CommandResult;
  try {
    result = await run({ stdin, stdout, stderr, resize, size: () => lastSize, signal: abort.signal });
  } catch (err) {
    result = { error: (err as Error).message };
  }
  if (closed) return;
  await Promise.all([stdout, stderr].map((w) => (w ? new Promise<void>((r) => w.end(() => r())) : undefined)));
  const status = statusOf(result, version === 'channel.k8s.io' ? 'channel.k8s.io' : PROTOCOL_V4);
  const errorChannel = new OutChannel(socket, CH.ERROR);
  if (status !== undefined) await new Promise<void>((r) => errorChannel.end(Buffer.from(status), () => r()));
  socket.end(frame(OP.CLOSE, Buffer.from([0x03, 0xe8]))); // 1000 normal closure
  setTimeout(finish, 5000).unref();
}
