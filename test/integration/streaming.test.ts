// Exec, Attach and PortForward through the real daemon: the RPC hands out a
// one-time URL of the streaming server, and test/helpers/spdy-client.ts
// speaks SPDY/3.1 to it as client-go does (crictl and critest cover the Go
// client itself: see the README's critest section). Our busybox test image
// (hack/make-test-images.sh): sh, stty, tty, httpd.
import * as grpc from '@grpc/grpc-js';
import * as path from 'path';
import { NamespaceMode } from '../../src/gen/runtime/v1/api';
import { defaultCgroupParent } from '../../src/containerizer/isolators/cgroups/paths';
import { TestDaemon, call, startDaemon } from '../helpers/daemon';
import { assertNoCapsaLeaks } from '../helpers/leaks';
import { TestRegistry, ensureTestImages, startRegistry } from '../helpers/registry';
import { UpgradeRefused, portForwardOnce, remoteCommand, upgrade, wsCommand } from '../helpers/spdy-client';

const IMAGE = 'registry.example.test/capsa-test/busybox:latest';

let reg: TestRegistry;
let d: TestDaemon;
let parents: string[];
let seq = 0;

function podConfig(linux: Record<string, unknown> = {}): Record<string, unknown> {
  const uid = `uid-${process.pid}-${++seq}`;
  return {
    metadata: { name: `spod${seq}`, uid, namespace: 'capsa-tests', attempt: 0 },
    hostname: `spod${seq}`,
    logDirectory: path.join(d.dir, 'logs', uid),
    linux,
  };
}

async function runContainer(
  over: Record<string, unknown> = {},
  podLinux: Record<string, unknown> = {},
): Promise<{ pod: string; id: string }> {
  const podCfg = podConfig(podLinux);
  const pod = (await call<{ podSandboxId: string }>(d.runtime, 'runPodSandbox', { config: podCfg })).podSandboxId;
  const config = { metadata: { name: 'c', attempt: 0 }, image: { image: IMAGE }, logPath: 'c.log', linux: {}, ...over };
  const { containerId } = await call<{ containerId: string }>(
    d.runtime,
    'createContainer',
    { podSandboxId: pod, config, sandboxConfig: podCfg },
    30_000,
  );
  await call(d.runtime, 'startContainer', { containerId }, 30_000);
  return { pod, id: containerId };
}

async function execUrl(containerId: string, cmd: string[], o: Record<string, boolean>): Promise<string> {
  const req = { containerId, cmd, tty: false, stdin: false, stdout: true, stderr: true, ...o };
  return (await call<{ url: string }>(d.runtime, 'exec', req)).url;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

beforeAll(async () => {
  const images = await ensureTestImages();
  reg = await startRegistry();
  await reg.push(images.busybox.layout, 'capsa-test/busybox:latest');
  d = await startDaemon({ toml: `[registries."registry.example.test"]\nmirrors = ["${reg.url}"]\n` });
  parents = [defaultCgroupParent('cgroupfs', d.root)];
  await call(d.image, 'pullImage', { image: { image: IMAGE } }, 120_000);
}, 600_000);

afterEach(async () => {
  const pods = (await call<{ items: { id: string }[] }>(d.runtime, 'listPodSandbox', {})).items;
  for (const p of pods) {
    await call(d.runtime, 'stopPodSandbox', { podSandboxId: p.id }, 60_000);
    await call(d.runtime, 'removePodSandbox', { podSandboxId: p.id }, 60_000);
  }
  await assertNoCapsaLeaks([d.dir], { cgroupParents: parents });
}, 120_000);

afterAll(async () => {
  await d?.stop();
  await d?.cleanup();
  await reg?.stop();
});

describe('exec', () => {
  test('output, exit code on the v4 error stream, one-time URL', async () => {
    const { id } = await runContainer();
    const url = await execUrl(id, ['sh', '-c', 'echo out; echo err >&2; exit 3'], {});
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/exec\/[A-Za-z0-9_-]+$/);
    expect(url).not.toMatch(/:0\//);
    const r = await remoteCommand(url, { stdout: true, stderr: true });
    expect(r.version).toBe('v4.channel.k8s.io');
    expect(r.stdout).toBe('out\n');
    expect(r.stderr).toBe('err\n');
    expect(JSON.parse(r.error)).toEqual({
      metadata: {},
      status: 'Failure',
      message: expect.stringContaining('non-zero exit code') as unknown,
      reason: 'NonZeroExitCode',
      details: { causes: [{ reason: 'ExitCode', message: '3' }] },
    });
    // Single use.
    await expect(upgrade(url, ['v4.channel.k8s.io'])).rejects.toMatchObject({ status: 404 });

    const ok = await remoteCommand(await execUrl(id, ['echo', 'hello'], {}), { stdout: true, stderr: true });
    expect(ok.stdout).toBe('hello\n');
    expect(JSON.parse(ok.error)).toEqual({ metadata: {}, status: 'Success' });

    // An older client: the error stream carries text, nothing on success.
    const v2 = await remoteCommand(await execUrl(id, ['sh', '-c', 'exit 2'], {}), {
      stdout: true,
      stderr: true,
      protocols: ['v2.channel.k8s.io'],
    });
    expect(v2.version).toBe('v2.channel.k8s.io');
    expect(v2.error).toMatch(/exit(ed with| code) 2/);

    // A command that cannot start.
    const bad = await remoteCommand(await execUrl(id, ['/no/such/binary'], {}), { stdout: true, stderr: true });
    expect(JSON.parse(bad.error)).toMatchObject({
      status: 'Failure',
      message: expect.stringContaining('/no/such/binary'),
    });
  });

  test('stdin without a tty: piped through and closed', async () => {
    const { id } = await runContainer();
    const url = await execUrl(id, ['sh', '-c', 'cat; echo end'], { stdin: true });
    const r = await remoteCommand(url, {
      stdin: true,
      stdout: true,
      stderr: true,
      interact: ({ stdin }) => {
        stdin!.end('line one\nline two\n');
      },
    });
    expect(r.stdout).toBe('line one\nline two\nend\n');
    expect(JSON.parse(r.error)).toEqual({ metadata: {}, status: 'Success' });
  });

  test('stdin with a tty: a pty of the container, its size from the resize stream', async () => {
    const { id } = await runContainer();
    const url = await execUrl(id, ['sh', '-c', 'read line; busybox stty size; busybox tty; echo "got:$line"; exit 5'], {
      stdin: true,
      tty: true,
      stderr: false,
    });
    const r = await remoteCommand(url, {
      stdin: true,
      stdout: true,
      tty: true,
      interact: async ({ stdin, resize }) => {
        resize!.write(JSON.stringify({ Width: 100, Height: 30 }) + '\n');
        await sleep(200);
        stdin!.write('hi\n');
      },
    });
    expect(r.stdout).toContain('30 100\r\n');
    expect(r.stdout).toMatch(/\/dev\/pts\/\d+\r\n/);
    expect(r.stdout).toContain('got:hi\r\n');
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.error)).toMatchObject({ reason: 'NonZeroExitCode', details: { causes: [{ message: '5' }] } });
  });

  test('over WebSocket: v5 with the stdin close signal, v4', async () => {
    const { id } = await runContainer();
    const v5 = await wsCommand(
      await execUrl(id, ['sh', '-c', 'cat; echo end; echo err >&2'], { stdin: true }),
      ['v5.channel.k8s.io', 'v4.channel.k8s.io'],
      (write) => {
        write(0, 'piped\n');
        write(255, Buffer.from([0]));
      },
    );
    expect(v5.protocol).toBe('v5.channel.k8s.io');
    expect(v5.channels.get(1)).toBe('piped\nend\n');
    expect(v5.channels.get(2)).toBe('err\n');
    expect(JSON.parse(v5.channels.get(3)!)).toEqual({ metadata: {}, status: 'Success' });
    const v4 = await wsCommand(await execUrl(id, ['sh', '-c', 'exit 6'], {}), ['v4.channel.k8s.io'], () => undefined);
    expect(v4.protocol).toBe('v4.channel.k8s.io');
    expect(JSON.parse(v4.channels.get(3)!)).toMatchObject({ details: { causes: [{ message: '6' }] } });
  });

  test('a client that goes away: the command and what it started are killed', async () => {
    const { id } = await runContainer();
    const url = await execUrl(id, ['sh', '-c', 'busybox sleep 1000 & echo started; wait'], {});
    const { session } = await upgrade(url, ['v4.channel.k8s.io']);
    const error = session.openStream([['streamType', 'error']]);
    await error.waitReply();
    const stdout = session.openStream([['streamType', 'stdout']]);
    await stdout.waitReply();
    const stderr = session.openStream([['streamType', 'stderr']]);
    await stderr.waitReply();
    await new Promise<void>((resolve) => stdout.once('data', () => resolve()));
    session.close();
    const ps = async (): Promise<string> =>
      (
        await call<{ stdout: Buffer }>(d.runtime, 'execSync', { containerId: id, cmd: ['busybox', 'ps', '-o', 'args'] })
      ).stdout.toString();
    for (let i = 0; i < 100 && /sleep 1000/.test(await ps()); i++) await sleep(100);
    expect(await ps()).not.toMatch(/sleep 1000/);
  });

  test('RPC checks: unknown container, no stream asked for, tty with stderr', async () => {
    const { id } = await runContainer();
    const code = async (req: Record<string, unknown>): Promise<number | undefined> =>
      call(d.runtime, 'exec', { cmd: ['true'], stdout: true, ...req }).then(
        () => undefined,
        (err: { code?: number }) => err.code,
      );
    expect(await code({ containerId: 'f'.repeat(64) })).toBe(grpc.status.NOT_FOUND);
    expect(await code({ containerId: id, stdout: false })).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await code({ containerId: id, tty: true, stderr: true })).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await code({ containerId: id, cmd: [] })).toBe(grpc.status.INVALID_ARGUMENT);
    const url = await execUrl(id, ['true'], {});
    await expect(upgrade(url.replace(/[^/]+$/, 'nosuchtoken'), ['v4.channel.k8s.io'])).rejects.toBeInstanceOf(
      UpgradeRefused,
    );
  });
});

describe('attach', () => {
  const attachUrl = async (containerId: string, o: Record<string, boolean>): Promise<string> =>
    (await call<{ url: string }>(d.runtime, 'attach', { containerId, stdin: true, stdout: true, stderr: true, ...o }))
      .url;
  const waitFor = (s: NodeJS.EventEmitter, text: string): Promise<void> =>
    new Promise((resolve) => {
      let seen = '';
      const on = (b: Buffer): void => {
        seen += b.toString();
        if (seen.includes(text)) {
          s.removeListener('data', on);
          resolve();
        }
      };
      s.on('data', on);
    });

  test('sees the output from now on, sends stdin; stdinOnce ends the container with the session', async () => {
    const { id } = await runContainer({ command: ['sh'], stdin: true, stdinOnce: true });
    const r = await remoteCommand(await attachUrl(id, {}), {
      stdin: true,
      stdout: true,
      stderr: true,
      interact: async ({ stdin, stdout }) => {
        const seen = waitFor(stdout!, 'hello');
        stdin!.write('echo hello; echo oops >&2\n');
        await seen;
        stdin!.end();
      },
    });
    expect(r.stdout).toBe('hello\n');
    expect(r.stderr).toBe('oops\n');
    expect(JSON.parse(r.error)).toEqual({ metadata: {}, status: 'Success' });
    // The tty must match the container's.
    const { id: other } = await runContainer({ command: ['sh'], stdin: true });
    await expect(call(d.runtime, 'attach', { containerId: other, stdout: true, tty: true })).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
    });
  });

  test('a tty container: one stream, resized through the monitor', async () => {
    const { id } = await runContainer({ command: ['sh'], stdin: true, tty: true });
    const r = await remoteCommand(await attachUrl(id, { tty: true, stderr: false }), {
      stdin: true,
      stdout: true,
      tty: true,
      interact: async ({ stdin, stdout, resize }) => {
        resize!.write(JSON.stringify({ Width: 90, Height: 20 }) + '\n');
        await sleep(300);
        const seen = waitFor(stdout!, 'size:20 90');
        stdin!.write('echo size:$(busybox stty size); exit\n');
        await seen;
      },
    });
    expect(r.stdout).toContain('size:20 90\r\n');
    expect(JSON.parse(r.error)).toEqual({ metadata: {}, status: 'Success' });
  });
});

describe('port-forward', () => {
  test('to a server listening inside the pod; a closed port is an error', async () => {
    const { pod } = await runContainer({
      command: [
        'sh',
        '-c',
        'mkdir -p /tmp/www && echo hello-pf > /tmp/www/index.html && exec busybox httpd -f -p 8080 -h /tmp/www',
      ],
    });
    const pfUrl = async (): Promise<string> =>
      (await call<{ url: string }>(d.runtime, 'portForward', { podSandboxId: pod, port: [] })).url;
    let r = { data: '', error: '' };
    for (let i = 0; i < 50; i++) {
      r = await portForwardOnce(await pfUrl(), 8080, 'GET /index.html HTTP/1.0\r\n\r\n');
      if (r.data !== '') break;
      await sleep(100); // httpd is still starting
    }
    expect(r.data).toMatch(/^HTTP\/1\.[01] 200/);
    expect(r.data).toContain('hello-pf');
    expect(r.error).toBe('');

    const closed = await portForwardOnce(await pfUrl(), 8081, 'x');
    expect(closed.data).toBe('');
    expect(closed.error).toMatch(/8081.*connection refused/i);

    // The host's port 8080 is not the pod's.
    const code = await call(d.runtime, 'portForward', { podSandboxId: 'f'.repeat(64), port: [] }).then(
      () => undefined,
      (err: { code?: number }) => err.code,
    );
    expect(code).toBe(grpc.status.NOT_FOUND);
  });

  test('a host-network pod: dialled from the daemon', async () => {
    const port = 20000 + (process.pid % 20000);
    const { pod } = await runContainer(
      {
        command: [
          'sh',
          '-c',
          `mkdir -p /tmp/www && echo hello-host > /tmp/www/index.html && exec busybox httpd -f -p 127.0.0.1:${port} -h /tmp/www`,
        ],
      },
      { securityContext: { namespaceOptions: { network: NamespaceMode.NODE } } },
    );
    let r = { data: '', error: '' };
    for (let i = 0; i < 50; i++) {
      const url = (await call<{ url: string }>(d.runtime, 'portForward', { podSandboxId: pod, port: [port] })).url;
      r = await portForwardOnce(url, port, 'GET /index.html HTTP/1.0\r\n\r\n');
      if (r.data !== '') break;
      await sleep(100);
    }
    expect(r.data).toContain('hello-host');
    // Only the ports of the request.
    const url = (await call<{ url: string }>(d.runtime, 'portForward', { podSandboxId: pod, port: [port] })).url;
    expect((await portForwardOnce(url, port + 1, 'x')).error).toMatch(/not among the ports/);
  });
});
