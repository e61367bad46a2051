// The daemon through its real socket: the implemented RPCs, every other
// RPC answering, configuration errors, socket handling, single instance
// and shutdown.
import * as grpc from '@grpc/grpc-js';
import * as http2 from 'http2';
import { spawn, spawnSync } from 'child_process';
import { existsSync, mkdtempSync, promises as fs, statSync } from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import {
  CgroupDriver,
  ImageServiceService,
  RuntimeServiceService,
  VersionRequest,
  VersionResponse,
} from '../../src/gen/runtime/v1/api';
import { CLI, TestDaemon, call, request, startDaemon, waitForExit } from '../helpers/daemon';

function runCli(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 20000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('capsa daemon', () => {
  let d: TestDaemon;
  beforeAll(async () => {
    d = await startDaemon();
  });
  afterAll(async () => {
    await d.stop();
    await d.cleanup();
  });

  test('Version', async () => {
    const pkg = JSON.parse(await fs.readFile(path.resolve(__dirname, '../../../package.json'), 'utf8'));
    const v = await call<Record<string, string>>(d.runtime, 'version', { version: 'v1' });
    expect(v).toEqual({ version: '0.1.0', runtimeName: 'capsa', runtimeVersion: pkg.version, runtimeApiVersion: 'v1' });
  });

  test('Status reports conditions and, verbose, the effective config', async () => {
    const s = await call<{
      status: { conditions: { type: string; status: boolean; reason: string; message: string }[] };
      info: Record<string, string>;
    }>(d.runtime, 'status', { verbose: true });
    const byType = Object.fromEntries(s.status.conditions.map((c) => [c.type, c]));
    expect(byType.RuntimeReady.status).toBe(true);
    expect(byType.NetworkReady.status).toBe(false);
    expect(byType.NetworkReady.reason).toBe('NetworkPluginNotReady');
    expect(byType.NetworkReady.message).toMatch(/no network config/);
    const cfg = JSON.parse(s.info.config);
    expect(cfg.root).toBe(d.root);
    expect(cfg.socket).toBe(d.socket);
    const quiet = await call<{ info: Record<string, string> }>(d.runtime, 'status', { verbose: false });
    expect(quiet.info).toEqual({});
  });

  test('NetworkReady turns true once a config and its plugins exist', async () => {
    const cniDir = path.join(d.dir, 'cni');
    await fs.mkdir(cniDir, { recursive: true });
    await fs.writeFile(
      path.join(cniDir, '10-test.conflist'),
      JSON.stringify({ cniVersion: '1.0.0', name: 't', plugins: [{ type: 'capsa-test-nonexistent-plugin' }] }),
    );
    let s = await call<{ status: { conditions: { type: string; status: boolean; message: string }[] } }>(
      d.runtime,
      'status',
      {},
    );
    let nr = s.status.conditions.find((c) => c.type === 'NetworkReady')!;
    expect(nr.status).toBe(false);
    expect(nr.message).toMatch(/capsa-test-nonexistent-plugin/);
    // A plugin the host certainly has: point a config at `true` via a bin dir we create.
    const bin = path.join(d.dir, 'cnibin');
    await fs.mkdir(bin, { recursive: true });
    await fs.copyFile('/bin/true', path.join(bin, 'capsa-test-nonexistent-plugin'));
    await fs.chmod(path.join(bin, 'capsa-test-nonexistent-plugin'), 0o755);
    const d2 = await startDaemon({ args: ['--cni-conf-dir', cniDir, '--cni-bin-dirs', bin] });
    try {
      s = await call(d2.runtime, 'status', {});
      nr = s.status.conditions.find((c) => c.type === 'NetworkReady')!;
      expect(nr.status).toBe(true);
    } finally {
      await d2.stop();
      await d2.cleanup();
    }
  });

  test('RuntimeConfig reports the cgroup driver', async () => {
    const r = await call<{ linux: { cgroupDriver: number } }>(d.runtime, 'runtimeConfig', {});
    const expected = existsSync('/run/systemd/system') ? CgroupDriver.SYSTEMD : CgroupDriver.CGROUPFS;
    expect(r.linux.cgroupDriver).toBe(expected);
  });

  test('UpdateRuntimeConfig keeps the pod CIDR and rejects a bad one naming the field', async () => {
    await call(d.runtime, 'updateRuntimeConfig', { runtimeConfig: { networkConfig: { podCidr: '10.88.0.0/16' } } });
    const s = await call<{ info: Record<string, string> }>(d.runtime, 'status', { verbose: true });
    expect(JSON.parse(s.info.config).podCidr).toBe('10.88.0.0/16');
    const saved = JSON.parse(await fs.readFile(path.join(d.root, 'runtime-config.json'), 'utf8'));
    expect(saved.podCidr).toBe('10.88.0.0/16');
    await expect(
      call(d.runtime, 'updateRuntimeConfig', { runtimeConfig: { networkConfig: { podCidr: 'not-a-cidr' } } }),
    ).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringMatching(/pod_cidr/) });
  });

  test('every RPC of both services answers, none hangs', async () => {
    const services: [grpc.Client, Record<string, { path: string; responseStream: boolean; originalName?: string }>][] =
      [
        [d.runtime, RuntimeServiceService as never],
        [d.image, ImageServiceService as never],
      ];
    let count = 0;
    for (const [client, def] of services) {
      for (const [key, m] of Object.entries(def)) {
        count++;
        const code = await new Promise<number>((resolve) => {
          const deadline = new Date(Date.now() + 5000);
          if (m.responseStream) {
            const stream = (
              client as unknown as Record<string, (...a: unknown[]) => grpc.ClientReadableStream<unknown>>
            )[key]({}, new grpc.Metadata(), { deadline });
            stream.on('data', () => undefined);
            stream.on('error', (e: grpc.ServiceError) => resolve(e.code));
            stream.on('end', () => resolve(grpc.status.OK));
          } else {
            (client as unknown as Record<string, (...a: unknown[]) => void>)[key](
              request(key, {}),
              new grpc.Metadata(),
              { deadline },
              (e: grpc.ServiceError | null) => resolve(e ? e.code : grpc.status.OK),
            );
          }
        });
        // An empty request is either served, refused as invalid, or not implemented yet:
        // never a hang, a crash or an internal error.
        const answered = [
          grpc.status.OK,
          grpc.status.UNIMPLEMENTED,
          grpc.status.INVALID_ARGUMENT,
          grpc.status.NOT_FOUND,
        ];
        // A subscription (GetContainerEvents) stays open until the client leaves: here, its deadline.
        if (m.path.endsWith('/GetContainerEvents')) answered.push(grpc.status.DEADLINE_EXCEEDED);
        expect([m.path, answered.includes(code)]).toEqual([m.path, true]);
      }
    }
    expect(count).toBe(Object.keys(RuntimeServiceService).length + Object.keys(ImageServiceService).length);
  });

  test('a call whose :authority is the socket path (grpc-go of crictl 1.26) is served', async () => {
    // nghttp2 refuses such an authority unless capsa rewrites it.
    const session = http2.connect('http://localhost', { createConnection: () => net.connect(d.socket) });
    try {
      for (let i = 0; i < 3; i++) {
        // Several calls on one connection exercise the HPACK dynamic table.
        const msg = Buffer.from(VersionRequest.encode({ version: 'v1' }).finish());
        const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, msg.length]), msg]);
        const req = session.request({
          ':method': 'POST',
          ':path': '/runtime.v1.RuntimeService/Version',
          ':authority': d.socket,
          'content-type': 'application/grpc',
          te: 'trailers',
          'user-agent': 'grpc-go/1.51.0',
        });
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        const trailers = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
          req.on('trailers', resolve);
          req.on('error', reject);
          req.end(frame);
        });
        expect(trailers['grpc-status']).toBe('0');
        const body = Buffer.concat(chunks);
        expect(VersionResponse.decode(body.subarray(5)).runtimeName).toBe('capsa');
      }
    } finally {
      session.close();
    }
    expect(d.output()).toMatch(/"connection":"rewrite"/);
  });

  test('a connection whose first :authority is valid (grpc-js sends localhost) is handed over as is', async () => {
    const before = d.output().length;
    // A client of its own: a new connection, several calls on it (the HPACK dynamic table in use).
    const client = new grpc.Client(`unix://${d.socket}`, grpc.credentials.createInsecure(), {
      'grpc.use_local_subchannel_pool': 1,
    });
    try {
      for (let i = 0; i < 5; i++) {
        const v = await new Promise<VersionResponse>((resolve, reject) => {
          client.makeUnaryRequest(
            '/runtime.v1.RuntimeService/Version',
            (r: VersionRequest) => Buffer.from(VersionRequest.encode(r).finish()),
            (b: Buffer) => VersionResponse.decode(b),
            { version: 'v1' },
            new grpc.Metadata({}),
            { deadline: Date.now() + 10000 },
            (err, res) => (err ? reject(err) : resolve(res!)),
          );
        });
        expect(v.runtimeName).toBe('capsa');
      }
    } finally {
      client.close();
    }
    const log = d.output().slice(before);
    expect(log).toMatch(/"connection":"pass-through"/);
    expect(log).not.toMatch(/"connection":"rewrite"/);
  });

  test('a method the services do not have is UNIMPLEMENTED naming it', async () => {
    // Every CRI v1.37 method has a handler (a handler-less one is covered by test/unit/api-wire.test.ts).
    const client = new grpc.Client(`unix://${d.socket}`, grpc.credentials.createInsecure());
    try {
      const err = await new Promise<grpc.ServiceError | null>((resolve) =>
        client.makeUnaryRequest(
          '/runtime.v1.RuntimeService/NoSuchMethod',
          (x: Buffer) => x,
          (x: Buffer) => x,
          Buffer.alloc(0),
          (e) => resolve(e),
        ),
      );
      expect(err).toMatchObject({ code: grpc.status.UNIMPLEMENTED, details: expect.stringMatching(/NoSuchMethod/) });
    } finally {
      client.close();
    }
  });

  test('socket is 0660 root:root in a 0711 directory', () => {
    const st = statSync(d.socket);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o660);
    expect(st.uid).toBe(0);
    expect(statSync(path.dirname(d.socket)).mode & 0o777).toBe(0o711);
  });

  test('a second daemon on the same root dir is refused with a clear message', async () => {
    const sock2 = path.join(d.dir, 'second.sock');
    const r = runCli([
      'serve',
      '--root',
      d.root,
      '--state',
      path.join(d.dir, 'state2'),
      '--socket',
      sock2,
      '--config',
      path.join(d.dir, 'capsa.toml'),
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/another capsa daemon \(pid \d+\) is running with root dir/);
    expect(existsSync(sock2)).toBe(false);
  });

  test('a live socket is never stolen by a daemon on another root', async () => {
    const r = runCli([
      'serve',
      '--root',
      path.join(d.dir, 'root2'),
      '--state',
      d.state,
      '--socket',
      d.socket,
      '--config',
      path.join(d.dir, 'capsa.toml'),
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/another process is serving on/);
    // The first daemon still answers.
    await call(d.runtime, 'version', {});
  });
});

describe('daemon start and stop', () => {
  test('a stale socket file is replaced; SIGTERM removes the socket and exits 0', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'capsa-test-'));
    const state = path.join(dir, 'state');
    await fs.mkdir(state, { recursive: true });
    // Leave a socket file with nobody listening: bind, then close without unlinking.
    const stale = path.join(state, 'capsa.sock');
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(stale, r));
    const fd = (srv as unknown as { _handle: { fd: number } })._handle.fd;
    expect(fd).toBeGreaterThan(0);
    // Closing a unix server unlinks its path in Node, so copy the inode aside first.
    await fs.link(stale, stale + '.keep');
    await new Promise<void>((r) => srv.close(() => r()));
    await fs.rename(stale + '.keep', stale);
    expect(statSync(stale).isSocket()).toBe(true);

    const d = await startDaemon({ dir });
    try {
      await call(d.runtime, 'version', {});
      const code = await d.stop();
      expect(code).toBe(0);
      expect(existsSync(d.socket)).toBe(false);
      expect(d.output()).toMatch(/stopped/);
    } finally {
      await d.cleanup();
    }
  });

  test('SIGINT also stops cleanly', async () => {
    const d = await startDaemon();
    try {
      d.proc.kill('SIGINT');
      expect(await waitForExit(d.proc)).toBe(0);
      expect(existsSync(d.socket)).toBe(false);
    } finally {
      await d.cleanup();
    }
  });

  test('the lock dies with the daemon: kill -9 then restart works', async () => {
    const d = await startDaemon();
    d.proc.kill('SIGKILL');
    await waitForExit(d.proc);
    const again = await startDaemon({ dir: d.dir });
    try {
      await call(again.runtime, 'version', {});
    } finally {
      await again.stop();
      await again.cleanup();
    }
  });
});

describe('capsa CLI', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'capsa-cli-'));
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  async function serveWith(toml: string): Promise<{ code: number | null; stderr: string }> {
    const file = path.join(dir, `c${Math.random().toString(36).slice(2)}.toml`);
    await fs.writeFile(file, toml);
    const r = runCli([
      'serve',
      '--config',
      file,
      '--root',
      path.join(dir, 'r'),
      '--state',
      path.join(dir, 's'),
      '--socket',
      path.join(dir, 's', 'x.sock'),
    ]);
    return { code: r.code, stderr: r.stderr.replace(file, 'FILE') };
  }

  test.each([
    ['unknown key', 'no_such_key = 1\n', /FILE: key "no_such_key": unknown key/],
    ['bad enum value', 'cgroup_driver = "lxc"\n', /FILE: key "cgroup_driver": must be one of cgroupfs, systemd/],
    ['relative path', 'root = "var/lib"\n', /FILE: key "root": must be an absolute path/],
    ['bad type', 'log_level = 3\n', /FILE: key "log_level": must be one of/],
    [
      'bad mirror',
      '[registries."registry.k8s.io"]\nmirrors = ["ftp://x"]\n',
      /key "registries\."registry\.k8s\.io"\.mirrors"/,
    ],
    [
      'unknown registry key',
      '[registries."a.io"]\nmirror = ["http://x"]\n',
      /key "registries\."a\.io"\.mirror": unknown key/,
    ],
    ['broken TOML', 'root = \n', /FILE: invalid TOML/],
  ])('%s → exit 2 naming the key and file', async (_name, toml, re) => {
    const r = await serveWith(toml);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(re);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  test('unreadable config file → exit 2 naming the file', () => {
    const r = runCli(['serve', '--config', path.join(dir, 'missing.toml')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/missing\.toml: cannot read config file/);
  });

  test('a bad flag value → exit 2 naming the flag', () => {
    const r = runCli(['serve', '--cgroup-driver', 'lxc', '--config', '/dev/null']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--cgroup-driver.*must be one of/);
    const u = runCli(['serve', '--no-such-flag', 'x']);
    expect(u.code).toBe(2);
    expect(u.stderr).toMatch(/unknown flag --no-such-flag/);
  });

  test('config default prints every key, and the output loads back unchanged', async () => {
    const r = runCli(['config', 'default']);
    expect(r.code).toBe(0);
    for (const key of [
      'root',
      'state',
      'socket',
      'log_level',
      'cgroup_driver',
      'cni_conf_dir',
      'cni_bin_dirs',
      'streaming_address',
      'metrics_address',
    ]) {
      expect(r.stdout).toMatch(new RegExp(`^${key} = `, 'm'));
    }
    expect(r.stdout).toMatch(/\[registries\."registry\.k8s\.io"\]/);
    const file = path.join(dir, 'default.toml');
    await fs.writeFile(file, r.stdout);
    // Serving with it must get past config loading: the lock dir is ours.
    const s = spawn(
      process.execPath,
      [
        CLI,
        'serve',
        '--config',
        file,
        '--root',
        path.join(dir, 'dr'),
        '--state',
        path.join(dir, 'ds'),
        '--socket',
        path.join(dir, 'ds', 'c.sock'),
        '--metrics-address',
        '',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    // The daemon logs on stderr.
    s.stdout.on('data', (b: Buffer) => (out += b.toString()));
    s.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const deadline = Date.now() + 15000;
    while (!/capsa is serving/.test(out) && Date.now() < deadline && s.exitCode === null) {
      await new Promise((res) => setTimeout(res, 25));
    }
    s.kill('SIGTERM');
    expect(await waitForExit(s)).toBe(0);
    expect(out).toMatch(/capsa is serving/);
  });

  test('version prints the package version', async () => {
    const pkg = JSON.parse(await fs.readFile(path.resolve(__dirname, '../../../package.json'), 'utf8'));
    const r = runCli(['version']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(pkg.version);
  });
});
