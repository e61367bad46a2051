// SPDY/3.1 framing: the header dictionary, frames, header blocks, and a
// client and server session talking over a socket pair.
import * as net from 'net';
import * as zlib from 'zlib';
import { SPDY3_DICTIONARY } from '../../src/streaming/spdy/dictionary';
import {
  HeaderReader,
  HeaderWriter,
  TYPE,
  controlFrame,
  dataFrame,
  decodeHeaderBlock,
  encodeHeaderBlock,
  parseFrames,
} from '../../src/streaming/spdy/frames';
import { SpdySession, SpdyStream } from '../../src/streaming/spdy/session';
import { statusOf } from '../../src/streaming/remotecommand';

test('the SPDY/3 dictionary: 1423 bytes, Adler-32 0xe3c6a7c2', () => {
  expect(SPDY3_DICTIONARY.length).toBe(1423);
  // zlib writes the dictionary's Adler-32 in the stream header.
  expect(zlib.deflateSync(Buffer.alloc(0), { dictionary: SPDY3_DICTIONARY }).readUInt32BE(2)).toBe(0xe3c6a7c2);
});

test('frames: parse what we write, keep a partial frame for later', () => {
  const a = controlFrame(TYPE.PING, 0, Buffer.from([0, 0, 0, 1]));
  const b = dataFrame(3, 1, Buffer.from('hi'));
  const { frames, rest } = parseFrames(Buffer.concat([a, b, b.subarray(0, 5)]), 1 << 24);
  expect(frames).toEqual([
    { control: true, type: TYPE.PING, flags: 0, payload: Buffer.from([0, 0, 0, 1]) },
    { control: false, streamId: 3, flags: 1, payload: Buffer.from('hi') },
  ]);
  expect(rest.length).toBe(5);
  expect(() => parseFrames(Buffer.from([0x80, 2, 0, 1, 0, 0, 0, 0]), 100)).toThrow(/version 2/);
});

test('header blocks: our stored blocks and zlib-compressed ones both read back', async () => {
  const reader = new HeaderReader();
  const writer = new HeaderWriter();
  for (const t of ['error', 'stdout', 'x'.repeat(70000)]) {
    const block = encodeHeaderBlock([
      ['streamType', t],
      ['Port', '80'],
    ]);
    const h = decodeHeaderBlock(await reader.read(writer.wrap(block)));
    expect(h).toEqual(
      new Map([
        ['streamtype', t],
        ['port', '80'],
      ]),
    );
  }
  // A peer's compressor (Go's uses the dictionary and sync flushes).
  const peer = new HeaderReader();
  const def = zlib.createDeflate({ dictionary: SPDY3_DICTIONARY });
  const out: Buffer[] = [];
  def.on('data', (c: Buffer) => out.push(c));
  for (const t of ['stdin', 'resize']) {
    def.write(encodeHeaderBlock([['streamtype', t]]));
    await new Promise<void>((r) => def.flush(zlib.constants.Z_SYNC_FLUSH, () => r()));
    await new Promise((r) => setImmediate(r));
    expect(decodeHeaderBlock(await peer.read(Buffer.concat(out.splice(0))))).toEqual(new Map([['streamtype', t]]));
  }
  reader.close();
  peer.close();
  expect(() => decodeHeaderBlock(Buffer.from([0, 0, 0, 1, 0, 0, 0, 9]))).toThrow(/truncated/);
});

test('sessions: streams, replies, data both ways, FIN and reset', async () => {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const client = new SpdySession(net.connect(port, '127.0.0.1'), false);
  const srv = new SpdySession(await accepted, true);
  const got = new Promise<SpdyStream>((r) =>
    srv.on('stream', (s: SpdyStream) => {
      srv.reply(s);
      r(s);
    }),
  );
  const c = client.openStream([['streamType', 'stdout']]);
  await c.waitReply();
  const s = await got;
  expect(s.type).toBe('stdout');
  const read = (x: SpdyStream): Promise<string> =>
    new Promise((r) => {
      let t = '';
      x.on('data', (d: Buffer) => (t += d.toString()));
      x.on('end', () => r(t));
    });
  const fromServer = read(c);
  const fromClient = read(s);
  s.end('x'.repeat(100_000));
  c.end('ping');
  expect((await fromServer).length).toBe(100_000);
  expect(await fromClient).toBe('ping');
  const c2 = client.openStream([['streamType', 'data']]);
  const reset = new Promise((r) => c2.once('reset', r));
  (await new Promise<SpdyStream>((r) => srv.once('stream', r))).destroy();
  await reset;
  client.close();
  await new Promise((r) => srv.once('close', r));
  server.close();
});

test('the v4 error stream status', () => {
  const v4 = 'v4.channel.k8s.io';
  expect(JSON.parse(statusOf({ exitCode: 0 }, v4)!)).toEqual({ metadata: {}, status: 'Success' });
  expect(JSON.parse(statusOf({ exitCode: 3 }, v4)!)).toMatchObject({
    status: 'Failure',
    reason: 'NonZeroExitCode',
    details: { causes: [{ reason: 'ExitCode', message: '3' }] },
  });
  expect(statusOf({ exitCode: 0 }, 'v3.channel.k8s.io')).toBeUndefined();
  expect(statusOf({ error: 'boom' }, 'v2.channel.k8s.io')).toBe('boom');
});

test('WebSocket: the RFC 6455 accept key, frames masked and not, fragments joined', async () => {
  const { acceptKey, frame, FrameReader } = await import('../../src/streaming/websocket');
  expect(acceptKey('dGhlIHNhbXBsZSBub25jZQ==')).toBe('s3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
  const server = new FrameReader(true);
  const mask = Buffer.from([1, 2, 3, 4]);
  const big = Buffer.alloc(70_000, 7);
  const wire = Buffer.concat([
    frame(2, Buffer.from('\u0000hi'), mask),
    frame(2, big, mask),
    frame(9, Buffer.from('p'), mask),
  ]);
  const got = [...server.push(wire.subarray(0, 10)), ...server.push(wire.subarray(10))];
  expect(got.map((m) => [m.opcode, m.payload.length])).toEqual([
    [2, 3],
    [2, 70_000],
    [9, 1],
  ]);
  expect(got[1].payload.equals(big)).toBe(true);
  // A fragmented message: first frame without FIN, then a continuation.
  const first = frame(2, Buffer.from('ab'), mask);
  first[0] &= 0x7f;
  const cont = frame(0, Buffer.from('cd'), mask);
  expect(server.push(Buffer.concat([first, cont])).map((m) => m.payload.toString())).toEqual(['abcd']);
  expect(() => new FrameReader(true).push(frame(2, Buffer.from('x')))).toThrow(/unmasked/);
});
