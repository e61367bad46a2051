// Containers through the real gRPC socket, as root, on real namespaces,
// mounts, cgroups (v1 here) and capsa-monitor, with our busybox test image
// (hack/make-test-images.sh: Entrypoint capsa-entrypoint, Cmd capsa-idle,
// StopSignal SIGUSR1, user capsa 1000:1000 in capsa-extra 1001 and users
// 100, VOLUME /data). Every test ends by removing its pods and checking
// that nothing capsa- is left: cgroups, mounts, ns files, monitors.
import * as grpc from '@grpc/grpc-js';
import { existsSync, promises as fs, readFileSync } from 'fs';
import * as path from 'path';
import { defaultCgroupParent } from '../../src/containerizer/isolators/cgroups/paths';
import { native } from '../../src/native';
import { ContainerState, NamespaceMode, PodSandboxState } from '../../src/gen/runtime/v1/api';
import {
  TestDaemon,
  call,
  createContainer as create,
  execSync,
  expectRpcError,
  grpcCode,
  runp,
  startDaemon,
  waitForExit,
} from '../helpers/daemon';
import { rmCgroupTree } from '../helpers/cgroups';
import { assertNoCapsaLeaks } from '../helpers/leaks';
import { TestRegistry, ensureTestImages, startRegistry } from '../helpers/registry';
import { slow } from '../helpers/slowdown';

const IMAGE = 'registry.example.test/capsa-test/busybox:latest';

// ---------------------------------------------------------------- helpers

interface Status {
  id: string;
  state: ContainerState;
  createdAt: bigint;
  startedAt: bigint;
  finishedAt: bigint;
  exitCode: number;
  reason: string;
  message: string;
  logPath: string;
  imageRef: string;
  image: { image: string };
  labels: Record<string, string>;
  annotations: Record<string, string>;
  mounts: { containerPath: string; hostPath: string; readonly: boolean }[];
  user?: { linux?: { uid: bigint; gid: bigint; supplementalGroups: bigint[] } };
}

interface Info {
  pid: number;
  sandboxID: string;
  runDir: string;
  rootfs: string;
  cgroupPath: string;
  monitor: { pid: number; startTime: number };
  runtimeSpec: { process: { args: string[]; env: string[] } };
}

let seq = 0;

function podConfig(d: TestDaemon, linux: Record<string, unknown> = {}): Record<string, unknown> {
  const uid = `uid-${process.pid}-${++seq}`;
  return {
    metadata: { name: `pod${seq}`, uid, namespace: 'capsa-tests', attempt: 0 },
    hostname: `pod${seq}`,
    logDirectory: path.join(d.dir, 'logs', uid),
    labels: { test: 'containers' },
    linux,
  };
}

function ctrConfig(name: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    metadata: { name, attempt: 0 },
    image: { image: IMAGE },
    logPath: `${name}.log`,
    labels: { app: name },
    annotations: { note: 'kept' },
    linux: {},
    ...over,
  };
}

async function start(d: TestDaemon, id: string): Promise<void> {
  await call(d.runtime, 'startContainer', { containerId: id }, 30_000);
}

async function run(
  d: TestDaemon,
  pod: string,
  podCfg: Record<string, unknown>,
  config: Record<string, unknown>,
): Promise<string> {
  const id = await create(d, pod, podCfg, config);
  await start(d, id);
  return id;
}

async function status(d: TestDaemon, id: string): Promise<{ status: Status; info: Info }> {
  const r = await call<{ status: Status; info: Record<string, string> }>(d.runtime, 'containerStatus', {
    containerId: id,
    verbose: true,
  });
  return { status: r.status, info: JSON.parse(r.info.info) as Info };
}

async function list(d: TestDaemon, filter: Record<string, unknown> = {}): Promise<{ id: string; state: number }[]> {
  return (await call<{ containers: { id: string; state: number }[] }>(d.runtime, 'listContainers', { filter }))
    .containers;
}

async function waitState(d: TestDaemon, id: string, state: ContainerState, timeoutMs = 15_000): Promise<Status> {
  const until = Date.now() + slow(timeoutMs);
  for (;;) {
    const s = (await status(d, id)).status;
    if (s.state === state) return s;
    if (Date.now() > until) throw new Error(`container ${id} stayed ${ContainerState[s.state]}`);
    await sleep(50);
  }
}

async function removeAll(d: TestDaemon): Promise<void> {
  const pods = (await call<{ items: { id: string }[] }>(d.runtime, 'listPodSandbox', {})).items;
  for (const p of pods) {
    await call(d.runtime, 'stopPodSandbox', { podSandboxId: p.id }, 60_000);
    await call(d.runtime, 'removePodSandbox', { podSandboxId: p.id }, 60_000);
  }
  // Containers of pods removed earlier (none should be left; remove them anyway).
  for (const c of await list(d)) await call(d.runtime, 'removeContainer', { containerId: c.id }, 60_000);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** CRI log records: <RFC3339Nano> <stream> <P|F> <content>. */
function logRecords(file: string): { stream: string; tag: string; msg: string }[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z) (stdout|stderr) ([PF]) (.*)$/.exec(l);
      if (!m) throw new Error(`not a CRI log line: ${JSON.stringify(l)}`);
      return { stream: m[2], tag: m[3], msg: m[4] };
    });
}

async function waitFor<T>(what: string, probe: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const until = Date.now() + slow(timeoutMs);
  for (;;) {
    const v = probe();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

function alive(pid: number): boolean {
  try {
    return !/\) [ZX] /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Zombie children of `ppid`. */
async function zombiesOf(ppid: number): Promise<number[]> {
  const out: number[] = [];
  for (const e of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const stat = await fs.readFile(`/proc/${e}/stat`, 'utf8').catch(() => '');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (f[0] === 'Z' && Number(f[1]) === ppid) out.push(Number(e));
  }
  return out;
}

/** Mount points at or below `dir`, deepest first. */
function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m) => m !== undefined && (m === dir || m.startsWith(dir + '/')))
    .sort((a, b) => b.length - a.length);
}

function mountedAt(p: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[4] === p);
}

let images: Awaited<ReturnType<typeof ensureTestImages>>;
let reg: TestRegistry;

async function newDaemon(dir?: string): Promise<TestDaemon> {
  const d = await startDaemon({
    dir,
    toml: `[registries."registry.example.test"]\nmirrors = ["${reg.url}"]\n`,
  });
  if (!dir) await call(d.image, 'pullImage', { image: { image: IMAGE } }, 120_000);
  return d;
}

beforeAll(async () => {
  images = await ensureTestImages();
  reg = await startRegistry();
  await reg.push(images.busybox.layout, 'capsa-test/busybox:latest');
}, 600_000);

afterAll(async () => {
  await reg?.stop();
});

// ---------------------------------------------------------------- one daemon

describe('containers', () => {
  let d: TestDaemon;
  let parents: string[];

  beforeAll(async () => {
    d = await newDaemon();
    parents = [defaultCgroupParent('cgroupfs', d.root)];
  }, 120_000);

  afterEach(async () => {
    if (d.proc.exitCode === null && d.proc.signalCode === null) await removeAll(d);
    await assertNoCapsaLeaks([d.dir], { cgroupParents: parents });
  }, 120_000);

  afterAll(async () => {
    await d.stop();
    await d.cleanup();
    await rmCgroupTree(parents[0]);
  });

  test('lifecycle: create, start, status, list with filters, stop (image StopSignal), remove', async () => {
    const podCfg = podConfig(d);
    const pod = await runp(d, podCfg);
    const id = await create(d, pod, podCfg, ctrConfig('web'));
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    const first = await status(d, id);
    const info = first.info;
    let s = first.status;
    expect(s).toMatchObject({
      id,
      state: ContainerState.CONTAINER_CREATED,
      startedAt: 0n,
      finishedAt: 0n,
      reason: '',
      labels: { app: 'web' },
      annotations: { note: 'kept' },
      image: { image: IMAGE },
      logPath: path.join(podCfg.logDirectory as string, 'web.log'),
    });
    expect(s.createdAt).toBeGreaterThan(BigInt(Date.now() - 60_000) * 1_000_000n);
    expect(s.imageRef).toMatch(/^registry\.example\.test\/capsa-test\/busybox@sha256:[0-9a-f]{64}$/);
    expect(info.sandboxID).toBe(pod);
    expect(mountedAt(info.rootfs)).toBe(true);
    // The init waits before execve, in its cgroup.
    expect(alive(info.pid)).toBe(true);
    const procs = readFileSync(path.join('/sys/fs/cgroup/memory', info.cgroupPath, 'cgroup.procs'), 'utf8');
    expect(procs.split('\n')).toContain(String(info.pid));
    // The image's Entrypoint + Cmd.
    expect(info.runtimeSpec.process.args).toEqual(['/usr/local/bin/capsa-entrypoint', 'capsa-idle']);

    const other = await create(d, pod, podCfg, ctrConfig('side', { labels: { app: 'side', tier: 'x' } }));
    await start(d, id);
    s = (await status(d, id)).status;
    expect(s.state).toBe(ContainerState.CONTAINER_RUNNING);
    expect(s.startedAt).toBeGreaterThanOrEqual(s.createdAt);

    expect((await list(d)).map((c) => c.id).sort()).toEqual([id, other].sort());
    expect((await list(d, { id: id.slice(0, 12) })).map((c) => c.id)).toEqual([id]);
    expect((await list(d, { podSandboxId: pod })).length).toBe(2);
    expect((await list(d, { podSandboxId: pod.slice(0, 10) })).length).toBe(2);
    expect(await list(d, { podSandboxId: 'f'.repeat(64) })).toEqual([]);
    expect((await list(d, { state: { state: ContainerState.CONTAINER_RUNNING } })).map((c) => c.id)).toEqual([id]);
    expect((await list(d, { state: { state: ContainerState.CONTAINER_CREATED } })).map((c) => c.id)).toEqual([other]);
    expect((await list(d, { labelSelector: { tier: 'x' } })).map((c) => c.id)).toEqual([other]);
    expect(await list(d, { labelSelector: { tier: 'y' } })).toEqual([]);
    // A prefix works for status.
    expect((await status(d, id.slice(0, 12))).status.id).toBe(id);

    // The image's StopSignal (SIGUSR1) makes capsa-idle exit 0 at once, once its trap is set (it logs "ready"
    // then: a signal before that kills it, 138, as a loaded machine showed).
    const log = path.join(podCfg.logDirectory as string, 'web.log');
    for (let i = 0; i < 200 && !(await fs.readFile(log, 'utf8').catch(() => '')).includes('capsa-idle: ready'); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const t0 = Date.now();
    await call(d.runtime, 'stopContainer', { containerId: id, timeout: 30n }, 60_000);
    expect(Date.now() - t0).toBeLessThan(5000);
    s = (await status(d, id)).status;
    expect(s).toMatchObject({ state: ContainerState.CONTAINER_EXITED, exitCode: 0, reason: 'Completed' });
    expect(s.finishedAt).toBeGreaterThan(s.startedAt);
    await call(d.runtime, 'stopContainer', { containerId: id, timeout: 1n }); // idempotent
    expect(alive(info.pid)).toBe(false);
    expect(alive(info.monitor.pid)).toBe(false);
    // Its cgroup is gone already; the rootfs stays until remove.
    expect(existsSync(path.join('/sys/fs/cgroup/memory', info.cgroupPath))).toBe(false);
    expect(mountedAt(info.rootfs)).toBe(true);

    await call(d.runtime, 'removeContainer', { containerId: id });
    await call(d.runtime, 'removeContainer', { containerId: id }); // unknown ids succeed
    await expectRpcError(call(d.runtime, 'containerStatus', { containerId: id }), grpc.status.NOT_FOUND, /not found/);
    expect(mountedAt(info.rootfs)).toBe(false);
    expect(existsSync(info.runDir)).toBe(false);
    expect(existsSync(path.join(d.root, 'containers', id))).toBe(false);
    await call(d.runtime, 'stopContainer', { containerId: 'f'.repeat(64), timeout: 0n });
    await call(d.runtime, 'removeContainer', { containerId: 'f'.repeat(64) });

    // A created container is removed too (its held init killed).
    const otherInfo = (await status(d, other)).info;
    await call(d.runtime, 'removeContainer', { containerId: other });
    expect(alive(otherInfo.pid)).toBe(false);
    expect(await list(d)).toEqual([]);
  });

  test('exit codes and reasons: Error/3, Completed/0, OOMKilled, SIGKILL after the stop timeout', async () => {
    const podCfg = podConfig(d);
    const pod = await runp(d, podCfg);
    const three = await run(d, pod, podCfg, ctrConfig('three', { command: ['sh', '-c', 'exit 3'] }));
    const zero = await run(d, pod, podCfg, ctrConfig('zero', { command: ['true'] }));
    const oom = await run(
      d,
      pod,
      podCfg,
      ctrConfig('oom', {
        command: ['dd', 'if=/dev/zero', 'of=/dev/null', 'bs=64M', 'count=1'],
        linux: { resources: { memoryLimitInBytes: 8n << 20n, memorySwapLimitInBytes: 8n << 20n } },
      }),
    );
    // Ignores SIGTERM (no handler as pid 1 of its own namespace): the stop escalates to SIGKILL.
    const stubborn = await run(
      d,
      pod,
      podCfg,
      ctrConfig('stubborn', {
        command: ['sleep', '1000'],
        stopSignal: 23, // SIGNAL_SIGTERM
        linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.CONTAINER } } },
      }),
    );
    expect(await waitState(d, three, ContainerState.CONTAINER_EXITED)).toMatchObject({ exitCode: 3, reason: 'Error' });
    expect(await waitState(d, zero, ContainerState.CONTAINER_EXITED)).toMatchObject({
      exitCode: 0,
      reason: 'Completed',
    });
    expect(await waitState(d, oom, ContainerState.CONTAINER_EXITED)).toMatchObject({
      exitCode: 137,
      reason: 'OOMKilled',
    });
    const t0 = Date.now();
    await call(d.runtime, 'stopContainer', { containerId: stubborn, timeout: 1n }, 30_000);
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(900);
    // The 1 s grace, then SIGKILL and the exit's bookkeeping (slower under emulation).
    expect(took).toBeLessThan(1000 + slow(5000));
    expect((await status(d, stubborn)).status).toMatchObject({
      state: ContainerState.CONTAINER_EXITED,
      exitCode: 137,
      reason: 'Error',
    });
  });

  test('StartContainer of a missing binary fails with the reason; the container is EXITED (StartError)', async () => {
    const podCfg = podConfig(d);
    const pod = await runp(d, podCfg);
    const id = await create(d, pod, podCfg, ctrConfig('nope', { command: ['/bin/nope'] }));
    await expectRpcError(start(d, id), grpc.status.FAILED_PRECONDITION, /no such file or directory: \/bin\/nope/);
    const s = (await status(d, id)).status;
    expect(s).toMatchObject({ state: ContainerState.CONTAINER_EXITED, exitCode: 128, reason: 'StartError' });
    expect(s.message).toMatch(/\/bin\/nope/);
    // Starting it again is a precondition failure, not a hang.
    await expectRpcError(start(d, id), grpc.status.FAILED_PRECONDITION, /exited/);
    const missing = await create(d, pod, podCfg, ctrConfig('nope2', { command: ['nope-in-path'] }));
    await expectRpcError(start(d, missing), grpc.status.FAILED_PRECONDITION, /not found in \$PATH: nope-in-path/);
  });

  test('the log file is in CRI format; ReopenContainerLog after a rename', async () => {
    const podCfg = podConfig(d);
    const pod = await runp(d, podCfg);
    const id = await run(
      d,
      pod,
      podCfg,
      ctrConfig('logger', {
        command: [
          'sh',
          '-c',
          'echo out; echo err >&2; printf partial; echo; i=0; while true; do echo n$i; i=$((i+1)); sleep 0.05; done',
        ],
      }),
    );
    const logPath = (await status(d, id)).status.logPath;
    await waitFor('log lines', () => existsSync(logPath) && logRecords(logPath).length > 5);
    const recs = logRecords(logPath);
    expect(recs).toContainEqual({ stream: 'stdout', tag: 'F', msg: 'out' });
    expect(recs).toContainEqual({ stream: 'stderr', tag: 'F', msg: 'err' });
    expect(recs).toContainEqual({ stream: 'stdout', tag: 'F', msg: 'partial' });

    // kubelet's rotation: rename, then ask for a reopen.
    await fs.rename(logPath, `${logPath}.1`);
    await call(d.runtime, 'reopenContainerLog', { containerId: id });
    expect(existsSync(logPath)).toBe(true);
    const rotatedSize = (await fs.stat(`${logPath}.1`)).size;
    await waitFor('new lines in the reopened log', () => logRecords(logPath).length > 3);
    await sleep(200);
    expect((await fs.stat(`${logPath}.1`)).size).toBe(rotatedSize);
    expect(logRecords(logPath).every((r) => /^n\d+$/.test(r.msg))).toBe(true);

    await call(d.runtime, 'stopContainer', { containerId: id, timeout: 0n });
    await expectRpcError(
      call(d.runtime, 'reopenContainerLog', { containerId: id }),
      grpc.status.FAILED_PRECONDITION,
      /not running/,
    );
  });

  test('PID namespace modes: POD, CONTAINER, NODE, TARGET', async () => {
    // POD: the pod's shared namespace (capsa-pause is its pid 1); containers see each other.
    const podCfg = podConfig(d, { securityContext: { namespaceOptions: { pid: NamespaceMode.POD } } });
    const pod = await runp(d, podCfg);
    const a = await run(d, pod, podCfg, ctrConfig('a', { command: ['sleep', '1001'] }));
    const b = await run(d, pod, podCfg, ctrConfig('b', { command: ['sleep', '1002'] }));
    const psB = (await execSync(d, b, ['ps', '-o', 'pid,args'])).stdout;
    expect(psB).toMatch(/^\s*1\s+\S*capsa-pause/m);
    expect(psB).toMatch(/sleep 1001/);
    expect(psB).toMatch(/sleep 1002/);

    // TARGET: b2 joins a's namespace (a's own, CONTAINER mode).
    const cPodCfg = podConfig(d, { securityContext: { namespaceOptions: { pid: NamespaceMode.CONTAINER } } });
    const cPod = await runp(d, cPodCfg);
    const own = { linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.CONTAINER } } } };
    const c = await run(d, cPod, cPodCfg, ctrConfig('c', { command: ['sleep', '1003'], ...own }));
    const psC = (await execSync(d, c, ['ps', '-o', 'pid,args'])).stdout;
    expect(psC).toMatch(/^\s*1\s+sleep 1003$/m);
    expect(psC).not.toMatch(/capsa-pause|sleep 1001/);
    const t = await run(
      d,
      cPod,
      cPodCfg,
      ctrConfig('t', {
        command: ['sleep', '1004'],
        linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.TARGET, targetId: c } } },
      }),
    );
    const psT = (await execSync(d, t, ['ps', '-o', 'pid,args'])).stdout;
    expect(psT).toMatch(/^\s*1\s+sleep 1003$/m);
    expect(psT).toMatch(/sleep 1004/);
    // TARGET naming a container that does not run: a typed error.
    await expectRpcError(
      create(
        d,
        cPod,
        cPodCfg,
        ctrConfig('t2', {
          linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.TARGET, targetId: 'f'.repeat(64) } } },
        }),
      ),
      grpc.status.INVALID_ARGUMENT,
      /target_id/,
    );

    // NODE: the host's namespace.
    const hPodCfg = podConfig(d, { securityContext: { namespaceOptions: { pid: NamespaceMode.NODE } } });
    const hPod = await runp(d, hPodCfg);
    const h = await run(
      d,
      hPod,
      hPodCfg,
      ctrConfig('h', {
        command: ['sleep', '1005'],
        linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.NODE } } },
      }),
    );
    const hInfo = (await status(d, h)).info;
    const selfPid = (await execSync(d, h, ['sh', '-c', 'echo $$'])).stdout.trim();
    expect(Number(selfPid)).toBeGreaterThan(1);
    expect((await execSync(d, h, ['cat', `/proc/${hInfo.pid}/cmdline`])).stdout.replace(/\0/g, ' ').trim()).toBe(
      'sleep 1005',
    );
    expect(readFileSync(`/proc/${hInfo.pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim()).toBe('sleep 1005');
    void a;
  });

  test('CRI mounts: read-only and read-write binds; a missing host path is an error naming it', async () => {
    const host = path.join(d.dir, 'vol');
    await fs.mkdir(path.join(host, 'ro'), { recursive: true });
    await fs.mkdir(path.join(host, 'rw'), { recursive: true });
    await fs.writeFile(path.join(host, 'ro', 'hello'), 'from the host\n');
    const podCfg = podConfig(d);
    const pod = await runp(d, podCfg);
    const id = await run(
      d,
      pod,
      podCfg,
      ctrConfig('m', {
        mounts: [
          { containerPath: '/mnt/ro', hostPath: path.join(host, 'ro'), readonly: true },
          { containerPath: '/mnt/rw', hostPath: path.join(host, 'rw') },
        ],
      }),
    );
    expect((await execSync(d, id, ['cat', '/mnt/ro/hello'])).stdout).toBe('from the host\n');
    const w = await execSync(d, id, ['sh', '-c', 'echo x > /mnt/ro/new']);
    expect(w.exitCode).not.toBe(0);
    expect(w.stderr).toMatch(/Read-only file system/);
    expect((await execSync(d, id, ['sh', '-c', 'echo written > /mnt/rw/out'])).exitCode).toBe(0);
    expect(readFileSync(path.join(host, 'rw', 'out'), 'utf8')).toBe('written\n');
    // The image's VOLUME /data is an empty writable directory.
    expect((await execSync(d, id, ['sh', '-c', 'touch /data/x && ls -A /data'])).stdout).toBe('x\n');
    expect((await status(d, id)).status.mounts).toEqual([
      expect.objectContaining({ containerPath: '/mnt/ro', hostPath: path.join(host, 'ro'), readonly: true }),
      expect.objectContaining({ containerPath: '/mnt/rw', hostPath: path.join(host, 'rw'), readonly: false }),
    ]);

    const missing = path.join(d.dir, 'no-such-dir');
    await expectRpcError(
      create(d, pod, podCfg, ctrConfig('bad', { mounts: [{ containerPath: '/x', hostPath: missing }] })),
      grpc.status.INVALID_ARGUMENT,
      new RegExp(`config\\.mounts\\[0\\]\\.host_path.*${missing.replace(/[/.]/g, '\\$&')}`),
    );
    await expectRpcError(
      create(d, pod, podCfg, ctrConfig('rel', { mounts: [{ containerPath: 'x', hostPath: host }] })),
      grpc.status.INVALID_ARGUMENT,
      /container_path/,
    );
    // The failed creates left nothing and freed their names.
    expect((await list(d, { podSandboxId: pod })).map((c) => c.id)).toEqual([id]);
  });

  test('mount propagation: rslave sees host mounts, rshared also sends its own back, rprivate neither', async () => {
    const n = native();
    const podCfg = podConfig(d, { securityContext: { privileged: true } });
    const pod = await runp(d, podCfg);
    const cases = [
      { name: 'private', propagation: 0, toContainer: false, toHost: false },
      { name: 'slave', propagation: 1, toContainer: true, toHost: false },
      { name: 'shared', propagation: 2, toContainer: true, toHost: true },
    ];
    for (const c of cases) {
      const base = path.join(d.dir, `prop-${c.name}`);
      const src = path.join(base, 'mnt');
      const flagDir = path.join(base, 'flags');
      await fs.mkdir(path.join(src, 'fromHost'), { recursive: true });
      await fs.mkdir(flagDir, { recursive: true });
      await fs.writeFile(path.join(flagDir, 'flagFile'), '');
      n.mount(src, src, '', n.constants.MS_BIND | n.constants.MS_REC, '');
      const kind = c.propagation === 0 ? n.constants.MS_PRIVATE : n.constants.MS_SHARED;
      n.mount('', src, '', kind | n.constants.MS_REC, '');
      try {
        const id = await run(
          d,
          pod,
          podCfg,
          ctrConfig(`prop-${c.name}`, {
            command: ['sleep', '1000'],
            mounts: [{ containerPath: src, hostPath: src, propagation: c.propagation }],
            linux: { securityContext: { privileged: true } },
          }),
        );
        expect((await status(d, id)).status.mounts[0]).toMatchObject({ propagation: c.propagation });
        n.mount(flagDir, path.join(src, 'fromHost'), '', n.constants.MS_BIND, '');
        const seen = (await execSync(d, id, ['ls', '-A', path.join(src, 'fromHost')])).stdout.trim();
        expect({ case: c.name, seen }).toEqual({ case: c.name, seen: c.toContainer ? 'flagFile' : '' });
        const back = path.join(src, 'fromContainer');
        expect((await execSync(d, id, ['sh', '-c', `mkdir -p ${back} && mount --bind /etc ${back}`])).exitCode).toBe(0);
        const onHost = (await fs.readdir(back)).length > 0;
        expect({ case: c.name, onHost }).toEqual({ case: c.name, onHost: c.toHost });
        await call(d.runtime, 'removeContainer', { containerId: id });
      } finally {
        for (const m of mountsUnder(src)) n.umount2(m, n.constants.MNT_DETACH);
      }
    }
  });

  test('users and groups: numeric, by name from /etc/passwd, run_as_group, supplementary groups', async () => {
    const podCfg = podConfig(d);
    const pod = await runp(d, podCfg);
    const sc = (securityContext: Record<string, unknown>): Record<string, unknown> => ({ linux: { securityContext } });
    const numeric = await run(d, pod, podCfg, ctrConfig('u1', sc({ runAsUser: { value: 1000n } })));
    expect((await execSync(d, numeric, ['id'])).stdout.trim()).toBe(
      'uid=1000(capsa) gid=1000(capsa) groups=100(users),1000(capsa),1001(capsa-extra)',
    );
    const byName = await run(d, pod, podCfg, ctrConfig('u2', sc({ runAsUsername: 'capsa' })));
    expect((await execSync(d, byName, ['id', '-u'])).stdout.trim()).toBe('1000');
    const group = await run(
      d,
      pod,
      podCfg,
      ctrConfig('u3', sc({ runAsUser: { value: 1000n }, runAsGroup: { value: 1001n }, supplementalGroups: [555n] })),
    );
    const ids = (await execSync(d, group, ['sh', '-c', 'id -u; id -g; id -G'])).stdout.trim().split('\n');
    expect(ids[0]).toBe('1000');
    expect(ids[1]).toBe('1001');
    expect(ids[2].split(' ').sort()).toEqual(expect.arrayContaining(['555', '1001']));
    const s = (await status(d, group)).status;
    expect(s.user?.linux?.uid).toBe(1000n);
    expect(s.user?.linux?.gid).toBe(1001n);
    // The process itself (not only exec) runs as the user.
    const info = (await status(d, numeric)).info;
    expect(readFileSync(`/proc/${info.pid}/status`, 'utf8')).toMatch(/^Uid:\s+1000\s+1000\s+1000\s+1000$/m);
    await expectRpcError(
      create(d, pod, podCfg, ctrConfig('u4', sc({ runAsUsername: 'nobody-here' }))),
      grpc.status.INVALID_ARGUMENT,
      /nobody-here/,
    );
  });

  test('ExecSync: output, exit code, env; a timeout holds with a background child and leaves nothing', async () => {
    const podCfg = podConfig(d);
    const pod = await runp(d, podCfg);
    const id = await run(d, pod, podCfg, ctrConfig('x', { envs: [{ key: 'FOO', value: Buffer.from('bar') }] }));
    const r = await execSync(d, id, ['sh', '-c', 'echo "$FOO $CAPSA_TEST_IMAGE"; pwd; echo oops >&2; exit 5']);
    expect(r).toEqual({ stdout: 'bar busybox\n/srv/capsa\n', stderr: 'oops\n', exitCode: 5 });
    expect((await execSync(d, id, ['hostname'])).stdout.trim()).toBe(podCfg.hostname);

    const t0 = Date.now();
    await expectRpcError(
      execSync(d, id, ['sh', '-c', 'sleep 101 & sleep 102'], 1),
      grpc.status.DEADLINE_EXCEEDED,
      /timeout/,
    );
    expect(Date.now() - t0).toBeLessThan(5000);
    // A background child holding the pipes does not stretch a quick command either.
    const t1 = Date.now();
    const bg = await execSync(d, id, ['sh', '-c', 'sleep 103 & echo started']);
    expect(bg).toMatchObject({ stdout: 'started\n', exitCode: 0 });
    expect(Date.now() - t1).toBeLessThan(5000);
    const info = (await status(d, id)).info;
    // Only the init's own tree is left in the cgroup (capsa-idle and its sleep 3600).
    const cmdlines = readFileSync(path.join('/sys/fs/cgroup/pids', info.cgroupPath, 'cgroup.procs'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((p) => readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ').trim());
    expect(cmdlines.filter((c) => /sleep 10[123]/.test(c))).toEqual([]);
    expect(cmdlines).toContain('sleep 3600');
    // no zombie under the daemon
    expect(await zombiesOf(d.proc.pid!)).toEqual([]);

    await expectRpcError(execSync(d, id, ['/bin/nope']), grpc.status.INVALID_ARGUMENT, /no such file or directory/);
    await expectRpcError(execSync(d, id, []), grpc.status.INVALID_ARGUMENT, /cmd/);
    await call(d.runtime, 'stopContainer', { containerId: id, timeout: 0n });
    await expectRpcError(execSync(d, id, ['true']), grpc.status.FAILED_PRECONDITION, /not running/);
  });

  test('UpdateContainerResources writes the cgroup; stats report usage', async () => {
    const podCfg = podConfig(d);
    const pod = await runp(d, podCfg);
    const id = await run(
      d,
      pod,
      podCfg,
      ctrConfig('r', { linux: { resources: { memoryLimitInBytes: 64n << 20n, cpuShares: 512n } } }),
    );
    const info = (await status(d, id)).info;
    const mem = (f: string): string => readFileSync(path.join('/sys/fs/cgroup/memory', info.cgroupPath, f), 'utf8');
    expect(mem('memory.limit_in_bytes').trim()).toBe(String(64 << 20));
    expect(readFileSync(path.join('/sys/fs/cgroup/cpu', info.cgroupPath, 'cpu.shares'), 'utf8').trim()).toBe('512');
    await call(d.runtime, 'updateContainerResources', { containerId: id, linux: { memoryLimitInBytes: 96n << 20n } });
    expect(mem('memory.limit_in_bytes').trim()).toBe(String(96 << 20));
    const stats = await call<{ stats: { attributes: { id: string }; memory: { workingSetBytes: { value: bigint } } } }>(
      d.runtime,
      'containerStats',
      { containerId: id },
    );
    expect(stats.stats.attributes.id).toBe(id);
    expect(stats.stats.memory.workingSetBytes.value).toBeGreaterThan(0n);
    const all = await call<{ stats: unknown[] }>(d.runtime, 'listContainerStats', { filter: { podSandboxId: pod } });
    expect(all.stats).toHaveLength(1);
  });

  test('hostile input: typed errors, the daemon stays up', async () => {
    const podCfg = podConfig(d);
    const pod = await runp(d, podCfg);
    const bad = (config: Record<string, unknown>, podId = pod): Promise<string> => create(d, podId, podCfg, config);
    await expectRpcError(bad({ image: { image: IMAGE } }), grpc.status.INVALID_ARGUMENT, /config\.metadata/);
    await expectRpcError(bad(ctrConfig('')), grpc.status.INVALID_ARGUMENT, /config\.metadata\.name/);
    await expectRpcError(bad(ctrConfig('noimg', { image: { image: '' } })), grpc.status.INVALID_ARGUMENT, /image/);
    await expectRpcError(
      bad(ctrConfig('unknown-image', { image: { image: 'registry.example.test/not/there:1' } })),
      grpc.status.NOT_FOUND,
      /registry\.example\.test\/not\/there:1/,
    );
    await expectRpcError(bad(ctrConfig('nopod'), 'f'.repeat(64)), grpc.status.NOT_FOUND, /sandbox/);
    await expectRpcError(bad(ctrConfig('nopod2'), ''), grpc.status.INVALID_ARGUMENT, /pod_sandbox_id/);
    const resources = (r: Record<string, unknown>): Record<string, unknown> => ({ linux: { resources: r } });
    await expectRpcError(
      bad(ctrConfig('r1', resources({ memoryLimitInBytes: 1n }))),
      grpc.status.INVALID_ARGUMENT,
      /memory_limit_in_bytes/,
    );
    await expectRpcError(
      bad(ctrConfig('r2', resources({ cpuPeriod: 5n }))),
      grpc.status.INVALID_ARGUMENT,
      /cpu_period/,
    );
    await expectRpcError(
      bad(ctrConfig('r3', resources({ cpusetCpus: '0-99999' }))),
      grpc.status.INVALID_ARGUMENT,
      /cpuset_cpus/,
    );
    await expectRpcError(
      bad(ctrConfig('r4', resources({ oomScoreAdj: 5000n }))),
      grpc.status.INVALID_ARGUMENT,
      /oom_score_adj/,
    );
    await expectRpcError(
      bad(ctrConfig('lp', { logPath: '../../escape.log' })),
      grpc.status.INVALID_ARGUMENT,
      /log_path/,
    );
    // A duplicate name is AlreadyExists; a different attempt is a new container.
    const first = await create(d, pod, podCfg, ctrConfig('dup'));
    await expectRpcError(
      bad(ctrConfig('dup', { labels: { different: 'request' } })),
      grpc.status.ALREADY_EXISTS,
      new RegExp(first),
    );
    await create(d, pod, podCfg, ctrConfig('dup', { metadata: { name: 'dup', attempt: 1 } }));
    // A stopped pod takes no new containers.
    const stopped = podConfig(d);
    const stoppedPod = await runp(d, stopped);
    await call(d.runtime, 'stopPodSandbox', { podSandboxId: stoppedPod });
    await expectRpcError(bad(ctrConfig('late'), stoppedPod), grpc.status.FAILED_PRECONDITION, /not ready/);
    await expectRpcError(
      call(d.runtime, 'startContainer', { containerId: 'f'.repeat(64) }),
      grpc.status.NOT_FOUND,
      /not found/,
    );
    await expectRpcError(call(d.runtime, 'startContainer', { containerId: '' }), grpc.status.INVALID_ARGUMENT, /id/);
    const v = await call<{ runtimeName: string }>(d.runtime, 'version', {});
    expect(v.runtimeName).toBe('capsa');
  });

  test('a retried CreateContainer after the caller gave up gets one container', async () => {
    const podCfg = podConfig(d);
    const pod = await runp(d, podCfg);
    const cfg = ctrConfig('retry');
    const first = await call(
      d.runtime,
      'createContainer',
      { podSandboxId: pod, config: cfg, sandboxConfig: podCfg },
      1,
    ).catch((e: unknown) => e);
    expect(grpcCode(first)).toBe(grpc.status.DEADLINE_EXCEEDED);
    const id = await create(d, pod, podCfg, cfg);
    expect((await list(d, { podSandboxId: pod })).map((c) => c.id)).toEqual([id]);
    // An identical retry of a finished create (its answer lost) gets the same container…
    expect(await create(d, pod, podCfg, cfg)).toBe(id);
    // …until it started: then the name is taken.
    await start(d, id);
    await expectRpcError(create(d, pod, podCfg, cfg), grpc.status.ALREADY_EXISTS, new RegExp(id));
  });

  test('StopPodSandbox kills the containers; RemovePodSandbox removes them', async () => {
    const podCfg = podConfig(d);
    const pod = await runp(d, podCfg);
    const a = await run(d, pod, podCfg, ctrConfig('a'));
    const b = await create(d, pod, podCfg, ctrConfig('b'));
    const ia = (await status(d, a)).info;
    await call(d.runtime, 'stopPodSandbox', { podSandboxId: pod }, 60_000);
    expect((await status(d, a)).status.state).toBe(ContainerState.CONTAINER_EXITED);
    expect((await status(d, b)).status.state).toBe(ContainerState.CONTAINER_EXITED);
    expect(alive(ia.pid)).toBe(false);
    await call(d.runtime, 'removePodSandbox', { podSandboxId: pod }, 60_000);
    expect(await list(d)).toEqual([]);
    expect(mountedAt(ia.rootfs)).toBe(false);
  });
});

// ---------------------------------------------------------------- across restarts

describe('containers across daemon restarts', () => {
  let d: TestDaemon;
  let parents: string[];

  beforeEach(async () => {
    d = await newDaemon();
    parents = [defaultCgroupParent('cgroupfs', d.root)];
  }, 120_000);

  afterEach(async () => {
    if (d.proc.exitCode === null && d.proc.signalCode === null) await removeAll(d);
    await assertNoCapsaLeaks([d.dir], { cgroupParents: parents });
    await d.stop();
    await d.cleanup();
    await rmCgroupTree(parents[0]);
  }, 120_000);

  async function kill9(): Promise<void> {
    d.runtime.close();
    d.image.close();
    d.proc.kill('SIGKILL');
    await waitForExit(d.proc);
  }

  test('kill -9 with a running and an exiting container, restart: same ids, still running, real exit code', async () => {
    const podCfg = podConfig(d);
    const pod = await runp(d, podCfg);
    const running = await run(d, pod, podCfg, ctrConfig('running', { command: ['sleep', '1000'] }));
    const exiting = await run(d, pod, podCfg, ctrConfig('exiting', { command: ['sh', '-c', 'sleep 2; exit 7'] }));
    const created = await create(d, pod, podCfg, ctrConfig('created'));
    const before = (await status(d, running)).info;
    await kill9();
    // The exiting container ends while capsa is down.
    await sleep(3000);
    d = await newDaemon(d.dir);
    const items = await list(d);
    expect(items.map((c) => c.id).sort()).toEqual([running, exiting, created].sort());
    const r = await status(d, running);
    expect(r.status.state).toBe(ContainerState.CONTAINER_RUNNING);
    expect(r.info.pid).toBe(before.pid);
    expect(alive(before.pid)).toBe(true);
    expect((await status(d, exiting)).status).toMatchObject({
      state: ContainerState.CONTAINER_EXITED,
      exitCode: 7,
      reason: 'Error',
    });
    expect((await status(d, created)).status.state).toBe(ContainerState.CONTAINER_CREATED);
    // The recovered containers work: exec, start, stop.
    expect((await execSync(d, running, ['echo', 'hi'])).stdout).toBe('hi\n');
    await start(d, created);
    expect((await status(d, created)).status.state).toBe(ContainerState.CONTAINER_RUNNING);
    await call(d.runtime, 'stopContainer', { containerId: running, timeout: 0n });
    expect((await status(d, running)).status).toMatchObject({ state: ContainerState.CONTAINER_EXITED, exitCode: 137 });
    // An exit while the daemon runs again is seen too.
    process.kill((await status(d, created)).info.pid, 'SIGUSR1');
    expect(await waitState(d, created, ContainerState.CONTAINER_EXITED)).toMatchObject({ exitCode: 0 });
  });

  test('a killed monitor ends its container at once (EXITED, Unknown), before and after a restart', async () => {
    const podCfg = podConfig(d);
    const pod = await runp(d, podCfg);
    // Seen through the monitor's `alive` fifo; the backup poll alone takes up to 2 s.
    const killMonitor = async (id: string): Promise<number> => {
      const info = (await status(d, id)).info;
      const t0 = Date.now();
      process.kill(info.monitor.pid, 'SIGKILL');
      const s = await waitState(d, id, ContainerState.CONTAINER_EXITED, 5000);
      const took = Date.now() - t0;
      expect(s).toMatchObject({ exitCode: 255, reason: 'Unknown' });
      expect(s.message).toMatch(/monitor .* is gone without recording an exit/);
      await waitFor('the init to die', () => !alive(info.pid), 5000);
      return took;
    };
    const first = await run(d, pod, podCfg, ctrConfig('first', { command: ['sleep', '1000'] }));
    expect(await killMonitor(first)).toBeLessThan(1000);
    const running = await run(d, pod, podCfg, ctrConfig('running', { command: ['sleep', '1000'] }));
    const created = await create(d, pod, podCfg, ctrConfig('created'));
    await kill9();
    d = await newDaemon(d.dir);
    // The restarted daemon watches the monitors it re-adopted the same way.
    expect(await killMonitor(running)).toBeLessThan(1000);
    expect(await killMonitor(created)).toBeLessThan(1000);
  });

  test('a wiped state dir (reboot): containers EXITED (Unknown), pods NOTREADY, nothing left', async () => {
    const podCfg = podConfig(d);
    const pod = await runp(d, podCfg);
    const a = await run(d, pod, podCfg, ctrConfig('a', { command: ['sleep', '1000'] }));
    const info = (await status(d, a)).info;
    await kill9();
    await simulateReboot(d, parents[0]);
    d = await newDaemon(d.dir);
    expect((await status(d, a)).status).toMatchObject({
      state: ContainerState.CONTAINER_EXITED,
      exitCode: 255,
      reason: 'Unknown',
    });
    const p = await call<{ status: { state: number } }>(d.runtime, 'podSandboxStatus', { podSandboxId: pod });
    expect(p.status.state).toBe(PodSandboxState.SANDBOX_NOTREADY);
    expect(existsSync(path.join('/sys/fs/cgroup/memory', info.cgroupPath))).toBe(false);
  });

  test('container objects with no checkpoint are destroyed on start (monitor, rootfs, cgroup, pin)', async () => {
    const podCfg = podConfig(d);
    const pod = await runp(d, podCfg);
    const a = await run(d, pod, podCfg, ctrConfig('a', { command: ['sleep', '1000'] }));
    const info = (await status(d, a)).info;
    await kill9();
    // As if the daemon died before its first checkpoint write for this container.
    await fs.rm(path.join(d.root, 'containers', a), { recursive: true });
    d = await newDaemon(d.dir);
    expect(await list(d)).toEqual([]);
    expect(alive(info.pid)).toBe(false);
    expect(alive(info.monitor.pid)).toBe(false);
    expect(mountedAt(info.rootfs)).toBe(false);
    expect(existsSync(info.runDir)).toBe(false);
    expect(existsSync(path.join('/sys/fs/cgroup/memory', info.cgroupPath))).toBe(false);
    expect(existsSync(path.join(d.root, 'rootfs', a))).toBe(false);
    expect(d.output()).toMatch(/destroyed an orphaned container object/);
  });
});

/**
 * What a reboot does to the volatile state: every process of the test's
 * pods gone (monitors, inits, pid holders), every mount under the state dir
 * gone, the state dir wiped. Cgroups (in our cgroup parent) survive here; a
 * real reboot would drop them too, and recovery must cope either way.
 */
async function simulateReboot(d: TestDaemon, cgroupParent: string): Promise<void> {
  for (const e of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const argv = await fs.readFile(`/proc/${e}/cmdline`, 'utf8').catch(() => '');
    if (/capsa-(pause|monitor)/.test(argv) && argv.includes(d.dir)) process.kill(Number(e), 'SIGKILL');
  }
  const pidsRoot = path.join('/sys/fs/cgroup/pids', cgroupParent);
  const walk = async (dir: string): Promise<void> => {
    const procs = await fs.readFile(path.join(dir, 'cgroup.procs'), 'utf8').catch(() => '');
    for (const p of procs.split('\n').filter(Boolean)) process.kill(Number(p), 'SIGKILL');
    for (const ent of await fs.readdir(dir, { withFileTypes: true }).catch(() => []))
      if (ent.isDirectory()) await walk(path.join(dir, ent.name));
  };
  await walk(pidsRoot);
  const n = native();
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.includes(' - '))
    .map((l) => l.split(' ')[4])
    .filter((m) => m.startsWith(d.state + '/'))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) n.umount2(m, n.constants.MNT_DETACH);
  await fs.rm(d.state, { recursive: true, force: true });
}
