// A small SPDY/3.1 client for the streaming server, speaking what
// client-go's remotecommand and portforward do (so CI needs no crictl):
// an HTTP upgrade, then one stream per channel opened in client-go's order,
// each waited for its reply.
import * as http from 'http';
import type { Socket } from 'net';
import { SpdySession, SpdyStream } from '../../src/streaming/spdy/session';

export interface Upgraded {
  session: SpdySession;
  /** The X-Stream-Protocol-Version the server chose. */
  version: string;
}

export class UpgradeRefused extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
  ) {
    super(`upgrade refused: ${status} ${body}`);
  }
}

export function upgrade(url: string, protocols: string[]): Promise<Upgraded> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: 'POST',
      headers: { Connection: 'Upgrade', Upgrade: 'SPDY/3.1', 'X-Stream-Protocol-Version': protocols },
    });
    req.on('upgrade', (res: http.IncomingMessage, socket: Socket, head: Buffer) => {
      resolve({
        session: new SpdySession(socket, false, head),
        version: String(res.headers['x-stream-protocol-version'] ?? ''),
      });
    });
    req.on('response', (res: http.IncomingMessage) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => reject(new UpgradeRefused(res.statusCode ?? 0, body)));
    });
    req.on('error', reject);
    req.end();
  });
}

function collect(s: SpdyStream): Promise<Buffer> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('end', () => resolve(Buffer.concat(parts)));
    s.on('close', () => resolve(Buffer.concat(parts)));
    s.on('error', () => resolve(Buffer.concat(parts)));
  });
}

export interface CommandOptions {
  stdin?: boolean;
  stdout?: boolean;
  stderr?: boolean;
  tty?: boolean;
  protocols?: string[];
  /** Called once the streams are up: write to stdin, resize, watch output. */
  interact?: (io: { stdin?: SpdyStream; resize?: SpdyStream; stdout?: SpdyStream }) => Promise<void> | void;
  timeoutMs?: number;
}

export interface CommandOutcome {
  version: string;
  stdout: string;
  stderr: string;
  /** The error stream's content: a metav1.Status in JSON for v4. */
  error: string;
}

/** Runs an exec or attach session as client-go's remotecommand does. */
export async function remoteCommand(url: string, opts: CommandOptions): Promise<CommandOutcome> {
  const protocols = opts.protocols ?? ['v4.channel.k8s.io', 'v3.channel.k8s.io', 'v2.channel.k8s.io', 'channel.k8s.io'];
  const { session, version } = await upgrade(url, protocols);
  const open = async (type: string): Promise<SpdyStream> => {
    const s = session.openStream([['streamType', type]]);
    await s.waitReply();
    return s;
  };
  const timer = setTimeout(() => session.close(), opts.timeoutMs ?? 30_000);
  try {
    const error = await open('error');
    error.end(); // client-go never writes to it
    const errorText = collect(error);
    const stdin = opts.stdin ? await open('stdin') : undefined;
    const stdout = opts.stdout ? await open('stdout') : undefined;
    const stdoutText = stdout ? collect(stdout) : Promise.resolve(Buffer.alloc(0));
    const stderr = opts.stderr && !opts.tty ? await open('stderr') : undefined;
    const stderrText = stderr ? collect(stderr) : Promise.resolve(Buffer.alloc(0));
    const resize = opts.tty && version !== 'v2.channel.k8s.io' ? await open('resize') : undefined;
    stdout?.end();
    stderr?.end();
    if (opts.interact) await opts.interact({ stdin, resize, stdout });
    const [out, err, e] = await Promise.all([stdoutText, stderrText, errorText]);
    return { version, stdout: out.toString(), stderr: err.toString(), error: e.toString() };
  } finally {
    clearTimeout(timer);
    session.end();
  }
}

/** One port-forward connection: sends `payload`, half-closes, returns all the pod answered and any error. */
export async function portForwardOnce(
  url: string,
  port: number,
  payload: string,
  requestId = 0,
): Promise<{ data: string; error: string }> {
  const { session } = await upgrade(url, ['portforward.k8s.io']);
  try {
    return await forwardOn(session, port, payload, requestId);
  } finally {
    session.end();
  }
}

export async function forwardOn(
  session: SpdySession,
  port: number,
  payload: string,
  requestId: number,
): Promise<{ data: string; error: string }> {
  const headers = (type: string): [string, string][] => [
    ['streamType', type],
    ['port', String(port)],
    ['requestID', String(requestId)],
  ];
  const error = session.openStream(headers('error'));
  await error.waitReply();
  error.end();
  const errorText = collect(error);
  const data = session.openStream(headers('data'));
  await data.waitReply();
  const dataText = collect(data);
  data.end(payload);
  const [d, e] = await Promise.all([dataText, errorText]);
  return { data: d.toString(), error: e.toString() };
}

/** Exec/attach over WebSocket as client-go's WebSocket executor does (channel byte + data; v5 close signal). */
export async function wsCommand(
  url: string,
  protocols: string[],
  send: (write: (channel: number, data: Buffer | string) => void) => Promise<void> | void,
): Promise<{ protocol: string; channels: Map<number, string> }> {
  const { randomBytes } = await import('crypto');
  const { FrameReader, frame } = await import('../../src/streaming/websocket');
  const socket = await new Promise<{ socket: Socket; head: Buffer; protocol: string }>((resolve, reject) => {
    const req = http.request(url, {
      method: 'GET',
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Protocol': protocols.join(', '),
      },
    });
    req.on('upgrade', (res: http.IncomingMessage, s: Socket, head: Buffer) =>
      resolve({ socket: s, head, protocol: String(res.headers['sec-websocket-protocol'] ?? '') }),
    );
    req.on('response', (res: http.IncomingMessage) => reject(new UpgradeRefused(res.statusCode ?? 0, '')));
    req.on('error', reject);
    req.end();
  });
  const channels = new Map<number, string>();
  const reader = new FrameReader(false);
  const done = new Promise<void>((resolve) => {
    const onData = (d: Buffer): void => {
      for (const m of reader.push(d)) {
        if (m.opcode === 8) {
          socket.socket.end(frame(8, m.payload, randomBytes(4)));
          resolve();
        } else if (m.opcode === 2 && m.payload.length > 0) {
          const ch = m.payload[0];
          channels.set(ch, (channels.get(ch) ?? '') + m.payload.subarray(1).toString());
        }
      }
    };
    socket.socket.on('data', onData);
    socket.socket.on('close', () => resolve());
    if (socket.head.length > 0) onData(socket.head);
  });
  await send((channel, data) =>
    socket.socket.write(frame(2, Buffer.concat([Buffer.from([channel]), Buffer.from(data)]), randomBytes(4))),
  );
  await done;
  return { protocol: socket.protocol, channels };
}
