// The streaming server on its own (no daemon, no containers): tokens, the
// upgrade handshake, protocol negotiation, a runner's streams end to end,
// and hostile input (garbage frames, a bad header block, a huge frame
// length, a client that never opens its streams) that must end the one
// session and nothing else.
import * as http from 'http';
import * as net from 'net';
import { Writable } from 'stream';
import { createLogger } from '../../src/log';
import type { CommandRunner } from '../../src/streaming/remotecommand';
import { StreamingServer, negotiate, startStreamingServer } from '../../src/streaming/server';
import { splitAddress } from '../../src/util/address';
import { controlFrame, u32 } from '../../src/streaming/spdy/frames';
import { portForwardOnce, remoteCommand, upgrade } from '../helpers/spdy-client';

const quiet = createLogger('fatal', new Writable({ write: (_c, _e, cb) => cb() }));
let srv: StreamingServer;

beforeAll(async () => {
  srv = await startStreamingServer('127.0.0.1:0', quiet);
});
afterAll(() => srv.close());

const opts = { stdin: true, stdout: true, stderr: true, tty: false };

/** Echoes stdin to stdout upper-cased, "err" on stderr, exits 3. */
const echo: CommandRunner = (streams) =>
  new Promise((resolve) => {
    streams.stdin!.on('data', (d: Buffer) => streams.stdout!.write(d.toString().toUpperCase()));
    streams.stdin!.on('end', () => {
      streams.stderr!.write('err');
      resolve({ exitCode: 3 });
    });
  });

function rawUpgrade(url: string, extra: string[] = []): Promise<net.Socket> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(u.port), u.hostname, () => {
      s.write(
        [
          `POST ${u.pathname} HTTP/1.1`,
          `Host: ${u.host}`,
          'Connection: Upgrade',
          'Upgrade: SPDY/3.1',
          'X-Stream-Protocol-Version: v4.channel.k8s.io',
          ...extra,
        ].join('\r\n') + '\r\n\r\n',
      );
    });
    let head = '';
    const onData = (d: Buffer): void => {
      head += d.toString('latin1');
      if (head.includes('\r\n\r\n')) {
        s.removeListener('data', onData);
        if (head.startsWith('HTTP/1.1 101')) resolve(s);
        else reject(new Error(head.split('\r\n')[0]));
      }
    };
    s.on('data', onData);
    s.on('error', reject);
  });
}

function closed(s: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    if (s.destroyed) resolve();
    s.on('close', () => resolve());
    s.resume();
  });
}

test('addresses and negotiation', () => {
  expect(splitAddress('127.0.0.1:0', 'streaming_address')).toEqual({ host: '127.0.0.1', port: 0 });
  expect(splitAddress('[::1]:10010', 'streaming_address')).toEqual({ host: '::1', port: 10010 });
  expect(splitAddress(':10010', 'streaming_address')).toEqual({ host: '', port: 10010 });
  expect(() => splitAddress('nope', 'metrics_address')).toThrow(/^metrics_address "nope" is not host:port$/);
  const req = (v?: string | string[]): http.IncomingMessage =>
    ({ headers: v === undefined ? {} : { 'x-stream-protocol-version': v } }) as unknown as http.IncomingMessage;
  const ours = ['v4.channel.k8s.io', 'v3.channel.k8s.io'];
  expect(negotiate(req(['v3.channel.k8s.io', 'v4.channel.k8s.io']), ours)).toBe('v3.channel.k8s.io');
  expect(negotiate(req('v9.channel.k8s.io, v4.channel.k8s.io'), ours)).toBe('v4.channel.k8s.io');
  expect(negotiate(req('v9.channel.k8s.io'), ours)).toBeUndefined();
  expect(negotiate(req(), ours)).toBe('');
});

test('a session end to end; the URL carries the real port; tokens are single use', async () => {
  const url = srv.register({ kind: 'exec', options: opts, run: echo });
  expect(url).toMatch(new RegExp(`^http://${srv.address.replace(/\./g, '\\.')}/exec/[A-Za-z0-9_-]{16}$`));
  expect(srv.address).not.toMatch(/:0$/);
  const r = await remoteCommand(url, {
    stdin: true,
    stdout: true,
    stderr: true,
    interact: ({ stdin }) => {
      stdin!.end('abc');
    },
  });
  expect(r).toMatchObject({ stdout: 'ABC', stderr: 'err' });
  expect(JSON.parse(r.error)).toMatchObject({ reason: 'NonZeroExitCode' });
  await expect(upgrade(url, ['v4.channel.k8s.io'])).rejects.toMatchObject({ status: 404 });
  // A token of one kind is no good for another.
  const other = srv.register({ kind: 'exec', options: opts, run: echo }).replace('/exec/', '/attach/');
  await expect(upgrade(other, ['v4.channel.k8s.io'])).rejects.toMatchObject({ status: 404 });
  // No version we speak.
  await expect(
    upgrade(srv.register({ kind: 'exec', options: opts, run: echo }), ['v99.channel.k8s.io']),
  ).rejects.toMatchObject({ status: 403 });
  // A plain request.
  const res = await fetch(`http://${srv.address}/exec/x`);
  expect(res.status).toBe(404);
});

test('port-forward: a dial error on the error stream', async () => {
  const url = srv.register({
    kind: 'portforward',
    ports: [],
    dial: () => Promise.reject(new Error('connect ECONNREFUSED')),
  });
  const r = await portForwardOnce(url, 80, 'x');
  expect(r.error).toMatch(/error forwarding port 80.*ECONNREFUSED/);
});

test('hostile input ends that session only', async () => {
  const never: CommandRunner = () => new Promise(() => undefined);
  // Garbage instead of frames (a SPDY/2 control frame).
  let s = await rawUpgrade(srv.register({ kind: 'exec', options: opts, run: never }));
  s.write(Buffer.from([0x80, 0x02, 0x00, 0x01, 0, 0, 0, 0]));
  await closed(s);
  // A SYN_STREAM whose header block is not zlib.
  s = await rawUpgrade(srv.register({ kind: 'exec', options: opts, run: never }));
  s.write(controlFrame(1, 0, Buffer.concat([u32(1, 0), Buffer.from([0, 0]), Buffer.from('not zlib at all')])));
  await closed(s);
  // A frame that claims 16 MiB and never comes: the session waits, the server is fine.
  s = await rawUpgrade(srv.register({ kind: 'exec', options: opts, run: never }));
  s.write(Buffer.from([0x00, 0, 0, 1, 0, 0xff, 0xff, 0xff]));
  s.destroy();
  // The server still serves.
  const r = await remoteCommand(
    srv.register({ kind: 'exec', options: { ...opts, stdin: false }, run: async () => ({ exitCode: 0 }) }),
    {
      stdout: true,
      stderr: true,
    },
  );
  expect(JSON.parse(r.error)).toEqual({ metadata: {}, status: 'Success' });
});
