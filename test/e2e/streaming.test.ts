// Streaming through the API server and kubelet to capsa: kubectl logs (-f,
// --previous, --timestamps), exec over WebSocket (kubectl's default) and the
// SPDY fallback, with and without a TTY, attach, port-forward and cp.
import { spawn } from 'child_process';
import { createHash } from 'crypto';
import { promises as fs } from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';
import { AGNHOST, BUSYBOX } from './images';
import {
  apply,
  containerStatus,
  isReady,
  K8S_BIN,
  KUBECONFIG,
  kubectl,
  kubectlRaw,
  namespace,
  sleep,
  until,
  waitPod,
} from '../helpers/k8s';

const NS = 'e2e-streaming';
let dropNs: () => Promise<void>;
const SPDY = { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: 'false', KUBECTL_PORT_FORWARD_WEBSOCKETS: 'false' };

function podOf(name: string, containers: object[], extra: object = {}): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: NS },
    spec: { terminationGracePeriodSeconds: 1, containers, ...extra },
  };
}

beforeAll(async () => {
  dropNs = await namespace(NS);
  await apply(
    podOf('shell', [{ name: 'main', image: BUSYBOX, command: ['sh', '-c', 'echo ready; exec sleep 3600'] }]),
    podOf('ticker', [
      {
        name: 'main',
        image: BUSYBOX,
        command: ['sh', '-c', 'i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.5; done'],
      },
    ]),
    podOf('web', [{ name: 'main', image: AGNHOST, args: ['netexec', '--http-port=8080', '--udp-port=-1'] }]),
    podOf('reader', [
      {
        name: 'main',
        image: BUSYBOX,
        stdin: true,
        command: ['sh', '-c', 'while read l; do echo got:$l; done'],
      },
    ]),
  );
  for (const p of ['shell', 'ticker', 'web', 'reader']) await waitPod(NS, p, 'Ready', isReady, 120_000);
}, 300_000);

afterAll(async () => {
  await dropNs?.();
}, 180_000);

/** Runs a command under `script` so kubectl sees a terminal on stdin/stdout. */
function withTty(cmd: string[], input: string, env: Record<string, string> = {}, timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const line = cmd.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
    const child = spawn('script', ['-qefc', line, '/dev/null'], { env: { ...process.env, KUBECONFIG, ...env } });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`timed out: ${line}\n${out}`));
    }, timeoutMs);
    child.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
    // give the remote shell a moment to start before typing
    setTimeout(() => child.stdin.write(input), 1500);
  });
}

test('logs: plain, --timestamps, -f and --previous', async () => {
  expect(await kubectl(['logs', '-n', NS, 'shell'])).toBe('ready\n');
  const ts = await kubectl(['logs', '-n', NS, 'shell', '--timestamps']);
  expect(ts).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z ready\n$/);
  // -f keeps streaming new lines
  const r = await kubectlRaw(['logs', '-f', '-n', NS, 'ticker', '--since=1s'], { timeoutMs: 4000 });
  const ticks = r.stdout.split('\n').filter((l) => l.startsWith('tick '));
  expect(ticks.length).toBeGreaterThanOrEqual(4);
  const n = ticks.map((l) => Number(l.split(' ')[1]));
  expect(n).toEqual([...n].sort((a, b) => a - b));
  // --previous: the log of the instance before a restart
  await apply(
    podOf('twice', [
      {
        name: 'main',
        image: BUSYBOX,
        command: ['sh', '-c', "echo instance $(cut -d' ' -f1 /proc/uptime); sleep 2; exit 1"],
      },
    ]),
  );
  await waitPod(NS, 'twice', 'restarted', (p) => containerStatus(p, 'main')?.restartCount >= 1, 90_000);
  const prev = await kubectl(['logs', '-n', NS, 'twice', '--previous']);
  expect(prev).toMatch(/^instance [\d.]+\n$/);
  await until('the current instance logged', async () =>
    (await kubectl(['logs', '-n', NS, 'twice'])).startsWith('instance'),
  );
  const cur = await kubectl(['logs', '-n', NS, 'twice']);
  expect(cur).not.toBe(prev);
}, 150_000);

test.each([
  ['WebSocket', {}],
  ['SPDY', SPDY],
])(
  'exec over %s: output, exit code, stdin',
  async (_name, env) => {
    const r = await kubectlRaw(['exec', '-n', NS, 'shell', '--', 'sh', '-c', 'echo out; echo err >&2; exit 3'], {
      env,
    });
    expect(r.stdout).toBe('out\n');
    expect(r.stderr).toContain('err');
    expect(r.code).toBe(3);
    const cat = await kubectl(['exec', '-i', '-n', NS, 'shell', '--', 'sh', '-c', 'wc -c'], {
      input: 'x'.repeat(100_000),
      env,
    });
    expect(cat.trim()).toBe('100000');
  },
  60_000,
);

test.each([
  ['WebSocket', {}],
  ['SPDY', SPDY],
])(
  'exec -it over %s: a shell on a terminal',
  async (_name, env) => {
    const out = await withTty(
      [path.join(K8S_BIN, 'kubectl'), 'exec', '-it', '-n', NS, 'shell', '--', 'sh'],
      'tty; echo sum=$((40+2)); exit\n',
      env,
    );
    expect(out).toContain('sum=42');
    expect(out).toMatch(/\/dev\/pts\/\d+/);
  },
  60_000,
);

test.each([
  ['WebSocket', {}],
  ['SPDY', SPDY],
])(
  'attach over %s: output of the running process and its stdin',
  async (_name, env) => {
    const r = await kubectlRaw(['attach', '-n', NS, 'ticker'], { timeoutMs: 3000, env });
    expect(r.stdout).toMatch(/tick \d+/);
    const child = spawn(path.join(K8S_BIN, 'kubectl'), ['attach', '-i', '-n', NS, 'reader'], {
      env: { ...process.env, KUBECONFIG, ...env },
    });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    try {
      await sleep(2000);
      child.stdin.write('hello\n');
      await until('the echoed line', async () => out.includes('got:hello'), 20_000);
    } finally {
      child.kill('SIGKILL');
    }
  },
  60_000,
);

function httpGet(port: number, p: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: p, timeout: 5000 }, (res) => {
        let body = '';
        res.on('data', (b: Buffer) => (body += b.toString()));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

test.each([
  ['WebSocket', {}, 18180],
  ['SPDY', SPDY, 18181],
])(
  'port-forward over %s reaches the pod',
  async (_name, env, port) => {
    const child = spawn(path.join(K8S_BIN, 'kubectl'), ['port-forward', '-n', NS, 'pod/web', `${port}:8080`], {
      env: { ...process.env, KUBECONFIG, ...env },
    });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    try {
      await until(`port-forward listening (${out})`, async () => out.includes('Forwarding from'), 20_000);
      for (let i = 0; i < 3; i++) expect(await httpGet(port, '/hostname')).toBe('web');
      const big = await httpGet(port, `/echo?msg=${'y'.repeat(20_000)}`);
      expect(big).toBe('y'.repeat(20_000));
    } finally {
      child.kill('SIGTERM');
    }
  },
  60_000,
);

test('cp into and out of a container', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'capsa-e2e-cp-'));
  try {
    const data = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7) % 251));
    await fs.writeFile(path.join(dir, 'in.bin'), data);
    await kubectl(['cp', path.join(dir, 'in.bin'), `${NS}/shell:/tmp/in.bin`]);
    expect((await kubectl(['exec', '-n', NS, 'shell', '--', 'md5sum', '/tmp/in.bin'])).split(' ')[0]).toBe(
      createHash('md5').update(data).digest('hex'),
    );
    await kubectl(['cp', `${NS}/shell:/tmp/in.bin`, path.join(dir, 'out.bin')]);
    expect((await fs.readFile(path.join(dir, 'out.bin'))).equals(data)).toBe(true);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}, 60_000);
