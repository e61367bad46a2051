// GET /healthz on the metrics listener of a real daemon: 503 with the reason
// while recovery runs (held there by a checkpoint that is a FIFO: the read
// blocks until the test writes it, as a slow disk would), 200 once the CRI
// socket serves, 503 when the socket file is gone, 503 while shutting down
// (held there by a pull from a registry that never answers).
import { execFileSync } from 'child_process';
import { constants as fsConstants, mkdtempSync, promises as fs } from 'fs';
import * as http from 'http';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { TestDaemon, call, startDaemon, waitForExit } from '../helpers/daemon';
import { assertNoCapsaLeaks } from '../helpers/leaks';

function get(url: string, method = 'GET'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, timeout: 5_000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error(`${method} ${url} timed out`)));
    req.end();
  });
}

/** A port nobody listens on right now (the daemon binds it a moment later). */
async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** Polls `url` until it answers (the listener may not be up yet). */
async function firstAnswer(url: string, timeoutMs = 15_000): Promise<{ status: number; body: string }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await get(url);
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

async function waitFor(what: string, cond: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

let dir: string;
let fifo: string | undefined;
let starting: Promise<TestDaemon> | undefined;
let d: TestDaemon | undefined;
let stalled: net.Server | undefined;
const held: net.Socket[] = [];

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'capsa-healthz-'));
});

/**
 * Lets a recovery blocked on a FIFO checkpoint go on (a failed test must not leave the daemon
 * hanging); false if nobody opened it for reading within `waitMs`.
 */
async function releaseFifo(waitMs: number, file = fifo): Promise<boolean> {
  if (!file) return false;
  const deadline = Date.now() + waitMs;
  for (;;) {
    // O_NONBLOCK: ENXIO while nobody has it open for reading, instead of blocking for a reader.
    const fh = await fs.open(file, fsConstants.O_WRONLY | fsConstants.O_NONBLOCK).catch(() => undefined);
    if (fh) {
      await fh.writeFile('{}');
      await fh.close();
      return true;
    }
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
}

afterAll(async () => {
  await releaseFifo(0);
  d ??= await starting?.catch(() => undefined);
  for (const s of held) s.destroy();
  stalled?.close();
  try {
    await d?.stop();
    await assertNoCapsaLeaks([dir], { skipCgroups: true });
  } finally {
    await d?.cleanup();
    await fs.rm(dir, { recursive: true, force: true });
  }
}, 60_000);

test('/healthz: 503 during recovery, 200 serving, 503 without the socket, 503 while shutting down', async () => {
  // A sandbox checkpoint that is a FIFO: recovery blocks reading it until we write.
  const id = 'a'.repeat(64);
  const cpDir = path.join(dir, 'root', 'sandboxes', id);
  await fs.mkdir(cpDir, { recursive: true });
  fifo = path.join(cpDir, 'checkpoint.json');
  execFileSync('mkfifo', [fifo]);

  const port = await freePort();
  const url = `http://127.0.0.1:${port}/healthz`;
  starting = startDaemon({ dir, args: ['--metrics-address', `127.0.0.1:${port}`, '--shutdown-timeout', '20'] });
  starting.catch(() => undefined); // awaited below; a start failure must not be an unhandled rejection meanwhile

  // The first answer may come while the image store opens, just before recovery.
  let during = await firstAnswer(url);
  const earlier = { status: 503, body: 'starting: opening the image store\n' };
  if (during.status === earlier.status && during.body === earlier.body) {
    await waitFor('recovery', async () => (during = await get(url)).body !== earlier.body);
  }
  expect(during).toEqual({ status: 503, body: 'starting: recovering pod sandboxes\n' });
  // Still held: the answer does not change while recovery waits.
  expect(await get(url)).toEqual(during);
  // Unblock recovery with a checkpoint it refuses (no version): the sandbox is left alone and the daemon serves.
  await releaseFifo(10_000);
  d = await starting;
  expect(d.output()).toMatch(/cannot recover sandbox/);

  expect(await get(url)).toEqual({ status: 200, body: 'ok\n' });
  expect(await get(url, 'HEAD')).toEqual({ status: 200, body: '' });
  expect((await get(url, 'POST')).status).toBe(405);
  // /metrics is still there beside it.
  expect((await get(`http://127.0.0.1:${port}/metrics`)).status).toBe(200);

  // The socket file gone (someone cleaned /run): the daemon lives but kubelet cannot reach it.
  const moved = `${d.socket}.moved`;
  await fs.rename(d.socket, moved);
  expect(await get(url)).toEqual({ status: 503, body: `CRI socket ${d.socket}: ENOENT\n` });
  // Another file in its place is not our socket either.
  await fs.writeFile(d.socket, '');
  expect(await get(url)).toEqual({ status: 503, body: `CRI socket ${d.socket} was replaced by another file\n` });
  await fs.rename(moved, d.socket);
  expect(await get(url)).toEqual({ status: 200, body: 'ok\n' });

  // A pull from a registry that never answers stays in flight; SIGTERM then waits for it. capsa
  // probes a loopback registry with https first: that connection is closed (no TLS here), and the
  // plain HTTP request that follows is held, unanswered.
  stalled = net.createServer((s) => {
    s.once('data', (b: Buffer) => (b[0] === 0x16 ? s.destroy() : held.push(s)));
  });
  await new Promise<void>((r) => stalled!.listen(0, '127.0.0.1', r));
  const regPort = (stalled.address() as net.AddressInfo).port;
  const pull = call(d.image, 'pullImage', { image: { image: `127.0.0.1:${regPort}/stalled:latest` } }, 60_000).then(
    () => 'pulled',
    (err: Error) => err.message,
  );
  await waitFor('the pull to reach the registry over http', async () => held.length > 0);
  d.proc.kill('SIGTERM');
  await waitFor('shutdown to start', async () => /shutting down/.test(d!.output()));
  expect(await get(url)).toEqual({ status: 503, body: 'shutting down\n' });
  // Let the pull end (the registry goes away; capsa tries https then http): the daemon finishes its shutdown.
  stalled.close();
  for (const s of held) s.destroy();
  expect(await pull).not.toBe('pulled');
  expect(await waitForExit(d.proc, 30_000)).toBe(0);
  expect(d.output()).not.toMatch(/in-flight calls did not finish/);
}, 120_000);

test('a SIGTERM during recovery stops the daemon once it serves, cleanly', async () => {
  const dir2 = mkdtempSync(path.join(os.tmpdir(), 'capsa-healthz-term-'));
  const cp = path.join(dir2, 'root', 'sandboxes', 'b'.repeat(64));
  await fs.mkdir(cp, { recursive: true });
  const fifo2 = path.join(cp, 'checkpoint.json');
  execFileSync('mkfifo', [fifo2]);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/healthz`;
  const p = startDaemon({ dir: dir2, args: ['--metrics-address', `127.0.0.1:${port}`] });
  p.catch(() => undefined);
  let d2: TestDaemon | undefined;
  try {
    await waitFor('recovery', async () => (await get(url).catch(() => ({ body: '' }))).body.includes('recovering'));
    // The daemon's pid, from its lock file (written before the metrics listener starts).
    const pid = Number((await fs.readFile(path.join(dir2, 'root', 'capsa.lock'), 'utf8')).trim());
    process.kill(pid, 'SIGTERM');
    // Still recovering: the signal waits for the start to finish.
    expect(await get(url)).toEqual({ status: 503, body: 'starting: recovering pod sandboxes\n' });
    // "recovering" is reported a moment before recovery opens the checkpoint: wait for its reader.
    expect(await releaseFifo(10_000, fifo2)).toBe(true);
    d2 = await p;
    expect(await waitForExit(d2.proc)).toBe(0);
    expect(d2.output()).toMatch(/signal received during start-up: stopping once started/);
    expect(d2.output()).toMatch(/"msg":"stopped"/);
  } finally {
    await d2?.cleanup();
    await fs.rm(dir2, { recursive: true, force: true });
  }
}, 60_000);
