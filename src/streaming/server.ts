// The streaming server: the Exec, Attach and PortForward RPCs cache their
// request under a one-time token and answer `http://<address>/<kind>/<token>`;
// the client (kubelet's proxy, crictl, client-go) then POSTs an upgrade to
// SPDY/3.1 there, naming its protocol versions in X-Stream-Protocol-Version.
// Tokens are random, single use and expire after a minute, as kubelet's are.
import { randomBytes } from 'crypto';
import * as http from 'http';
import type { AddressInfo, Socket } from 'net';
import type { Logger } from '../log';
import { splitAddress, urlHost } from '../util/address';
import { CommandOptions, CommandRunner, REMOTECOMMAND_PROTOCOLS, serveRemoteCommand } from './remotecommand';
import { PORTFORWARD_PROTOCOL, PortDialer, servePortForward } from './portforward';
import { SpdySession } from './spdy/session';
import { acceptKey, pickProtocol, serveWebSocketCommand } from './websocket';

export const TOKEN_TTL_MS = 60_000;

/** What a token stands for: built at RPC time, run when the client connects. */
export type PendingSession =
  | { kind: 'exec' | 'attach'; options: CommandOptions; run: CommandRunner }
  | { kind: 'portforward'; ports: number[]; dial: PortDialer };

export interface StreamingServer {
  /** host:port clients reach us on (the real port when configured with 0). */
  readonly address: string;
  /** Caches a session and returns its URL. */
  register(session: PendingSession): string;
  close(): Promise<void>;
}

interface Entry {
  session: PendingSession;
  expires: number;
}

/** The client's versions in its order, the first one we speak wins. */
export function negotiate(req: http.IncomingMessage, ours: string[]): string | undefined {
  const raw = req.headers['x-stream-protocol-version'];
  const list = (Array.isArray(raw) ? raw : raw ? [raw] : []).flatMap((v) => v.split(',')).map((v) => v.trim());
  if (list.length === 0) return '';
  return list.find((v) => ours.includes(v));
}

export async function startStreamingServer(address: string, log: Logger): Promise<StreamingServer> {
  const { host, port } = splitAddress(address, 'streaming_address');
  const tokens = new Map<string, Entry>();
  const live = new Set<Socket>();
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const [t, e] of tokens) if (e.expires <= now) tokens.delete(t);
  }, 10_000);
  sweep.unref();

  const take = (url: string | undefined): { kind: string; entry?: Entry } => {
    const m = /^\/(exec|attach|portforward)\/([A-Za-z0-9_-]+)(?:\?.*)?$/.exec(url ?? '');
    if (!m) return { kind: '' };
    const entry = tokens.get(m[2]);
    tokens.delete(m[2]);
    if (!entry || entry.expires <= Date.now() || entry.session.kind !== m[1]) return { kind: m[1] };
    return { kind: m[1], entry };
  };

  const server = http.createServer((req, res) => {
    // Only upgrades are served; a plain request consumes nothing.
    res.writeHead(req.headers.upgrade ? 400 : 404, { 'Content-Type': 'text/plain' });
    res.end(req.headers.upgrade ? 'unsupported upgrade\n' : 'not found\n');
  });
  const refuse = (socket: Socket, code: number, text: string, body: string): void => {
    socket.end(
      `HTTP/1.1 ${code} ${text}\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  };
  server.on('upgrade', (req: http.IncomingMessage, socket: Socket, head: Buffer) => {
    socket.on('error', () => undefined);
    const upgrade = String(req.headers.upgrade ?? '').toLowerCase();
    if (upgrade !== 'spdy/3.1' && upgrade !== 'websocket') {
      refuse(socket, 400, 'Bad Request', `unsupported upgrade ${JSON.stringify(upgrade)}: SPDY/3.1 or websocket\n`);
      return;
    }
    const { kind, entry } = take(req.url);
    if (!entry) {
      refuse(socket, 404, 'Not Found', kind ? 'unknown or expired token\n' : 'not found\n');
      return;
    }
    if (upgrade === 'websocket') {
      serveWebSocket(req, socket, head, entry.session);
      return;
    }
    const ours = entry.session.kind === 'portforward' ? [PORTFORWARD_PROTOCOL] : REMOTECOMMAND_PROTOCOLS;
    const version = negotiate(req, ours);
    if (version === undefined || (version === '' && entry.session.kind === 'portforward')) {
      refuse(socket, 403, 'Forbidden', `no supported protocol; supported: ${ours.join(', ')}\n`);
      return;
    }
    const headers = [
      'HTTP/1.1 101 Switching Protocols',
      'Connection: Upgrade',
      'Upgrade: SPDY/3.1',
      ...(version ? [`X-Stream-Protocol-Version: ${version}`] : []),
    ];
    socket.write(headers.join('\r\n') + '\r\n\r\n');
    live.add(socket);
    socket.once('close', () => live.delete(socket));
    const session = new SpdySession(socket, true, head);
    session.on('protocolError', (err: Error) => log.debug({ err: err.message, kind }, 'streaming: protocol error'));
    const s = entry.session;
    const done =
      s.kind === 'portforward'
        ? servePortForward(session, s.ports, s.dial)
        : serveRemoteCommand(session, version || 'channel.k8s.io', s.options, s.run);
    log.debug({ kind, version }, 'streaming session started');
    done.then(
      () => log.debug({ kind }, 'streaming session ended'),
      (err: Error) => {
        log.warn({ kind, err: err.message }, 'streaming session failed');
        session.close();
      },
    );
  });
  const serveWebSocket = (req: http.IncomingMessage, socket: Socket, head: Buffer, s: PendingSession): void => {
    const key = req.headers['sec-websocket-key'];
    if (s.kind === 'portforward') {
      refuse(socket, 400, 'Bad Request', 'port-forward is served over SPDY/3.1 only\n');
      return;
    }
    if (typeof key !== 'string' || req.headers['sec-websocket-version'] !== '13') {
      refuse(socket, 400, 'Bad Request', 'a WebSocket upgrade needs Sec-WebSocket-Key and Sec-WebSocket-Version: 13\n');
      return;
    }
    const version = pickProtocol(req);
    if (version === undefined) {
      refuse(socket, 403, 'Forbidden', 'no supported subprotocol; supported: v5.channel.k8s.io, v4.channel.k8s.io\n');
      return;
    }
    socket.write(
      [
        'HTTP/1.1 101 Switching Protocols',
        'Upgrade: websocket',
        'Connection: Upgrade',
        `Sec-WebSocket-Accept: ${acceptKey(key)}`,
        `Sec-WebSocket-Protocol: ${version}`,
      ].join('\r\n') + '\r\n\r\n',
    );
    live.add(socket);
    socket.once('close', () => live.delete(socket));
    log.debug({ kind: s.kind, version, transport: 'websocket' }, 'streaming session started');
    serveWebSocketCommand(socket, head, version, s.options, s.run).then(
      () => log.debug({ kind: s.kind }, 'streaming session ended'),
      (err: Error) => {
        log.warn({ kind: s.kind, err: err.message }, 'streaming session failed');
        socket.destroy();
      },
    );
  };
  server.on('clientError', (_err, socket: Socket) => socket.destroy());

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: host === '' ? undefined : host, port }, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  const real = (server.address() as AddressInfo).port;
  const hostPort = urlHost(host, real);
  log.info({ address: hostPort }, 'streaming server is serving');
  return {
    address: hostPort,
    register(session: PendingSession): string {
      const token = randomBytes(12).toString('base64url');
      tokens.set(token, { session, expires: Date.now() + TOKEN_TTL_MS });
      return `http://${hostPort}/${session.kind}/${token}`;
    },
    close(): Promise<void> {
      clearInterval(sweep);
      tokens.clear();
      for (const s of live) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
