// cgroup v2 (unified) through the real gRPC socket: pod and container
// cgroups, their interface files, updates, stats, OOM and teardown. Skipped
// on cgroup v1 hosts (this machine); hack/test-cgroup-v2.sh runs it in a
// qemu VM booted on pure cgroup v2.
import { spawn } from 'child_process';
import { existsSync, promises as fs, readFileSync } from 'fs';
import * as path from 'path';
import { defaultCgroupParent } from '../../src/containerizer/isolators/cgroups/paths';
import { sharesToWeight } from '../../src/containerizer/isolators/cgroups/values';
import { ContainerState, ContainerStats, PodSandboxStats } from '../../src/gen/runtime/v1/api';
import { TestDaemon, call, createContainer, runp, startDaemon, waitForExit } from '../helpers/daemon';
import { rmCgroupTree } from '../helpers/cgroups';
import { assertNoCapsaLeaks } from '../helpers/leaks';
import { TestRegistry, ensureTestImages, startRegistry } from '../helpers/registry';

const CG = '/sys/fs/cgroup';
const V2 = existsSync(path.join(CG, 'cgroup.controllers')) && !existsSync(path.join(CG, 'memory'));
/** The kernel keeps pressure stall information (hack/test-cgroup-v2.sh's VM must: its job checks). */
const PSI = existsSync('/proc/pressure/cpu');
const IMAGE = 'registry.example.test/capsa-test/busybox:latest';
const MIB = 1024 * 1024;
/** kubelet-style parent for these tests; removed in afterAll. */
const TEST_PARENT_ROOT = '/kubepods-capsatest-v2';

function cgFile(rel: string, file: string): string {
  return readFileSync(path.join(CG, rel, file), 'utf8').trim();
}

let seq = 0;
function podConfig(d: TestDaemon, linux: Record<string, unknown> = {}): Record<string, unknown> {
  const uid = `uid-${process.pid}-v2-${++seq}`;
  return {
    metadata: { name: `v2pod${seq}`, uid, namespace: 'capsa-tests', attempt: 0 },
    hostname: `v2pod${seq}`,
    logDirectory: path.join(d.dir, 'logs', uid),
    linux,
  };
}

function ctrConfig(name: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return { metadata: { name, attempt: 0 }, image: { image: IMAGE }, logPath: `${name}.log`, linux: {}, ...over };
}

async function run(
  d: TestDaemon,
  pod: string,
  podCfg: Record<string, unknown>,
  config: Record<string, unknown>,
): Promise<string> {
  const id = await createContainer(d, pod, podCfg, config, 60_000);
  await call(d.runtime, 'startContainer', { containerId: id }, 60_000);
  return id;
}

async function ctrStatus(
  d: TestDaemon,
  id: string,
): Promise<{ status: { state: number; exitCode: number; reason: string }; info: { pid: number; cgroupPath: string } }> {
  const r = await call<{
    status: { state: number; exitCode: number; reason: string };
    info: Record<string, string>;
  }>(d.runtime, 'containerStatus', { containerId: id, verbose: true });
  return { status: r.status, info: JSON.parse(r.info.info) as { pid: number; cgroupPath: string } };
}

async function waitExited(
  d: TestDaemon,
  id: string,
  timeoutMs = 60_000,
): Promise<{ exitCode: number; reason: string }> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const s = (await ctrStatus(d, id)).status;
    if (s.state === ContainerState.CONTAINER_EXITED) return s;
    if (Date.now() > until) throw new Error(`container ${id} stayed ${ContainerState[s.state]}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function removeAll(d: TestDaemon): Promise<void> {
  const pods = (await call<{ items: { id: string }[] }>(d.runtime, 'listPodSandbox', {})).items;
  for (const p of pods) {
    await call(d.runtime, 'stopPodSandbox', { podSandboxId: p.id }, 60_000);
    await call(d.runtime, 'removePodSandbox', { podSandboxId: p.id }, 60_000);
  }
}

const describeV2 = V2 ? describe : describe.skip;

describeV2('cgroup v2', () => {
  let reg: TestRegistry;
  let d: TestDaemon;
  let parents: string[];

  beforeAll(async () => {
    const images = await ensureTestImages();
    reg = await startRegistry();
    await reg.push(images.busybox.layout, 'capsa-test/busybox:latest');
    d = await startDaemon({ toml: `[registries."registry.example.test"]\nmirrors = ["${reg.url}"]\n` });
    await call(d.image, 'pullImage', { image: { image: IMAGE } }, 300_000);
    parents = [defaultCgroupParent('cgroupfs', d.root), TEST_PARENT_ROOT];
  }, 600_000);

  afterEach(async () => {
    if (d.proc.exitCode === null && d.proc.signalCode === null) await removeAll(d);
    await assertNoCapsaLeaks([d.dir], { cgroupParents: parents });
  }, 300_000);

  afterAll(async () => {
    await d?.stop();
    await d?.cleanup();
    await reg?.stop();
    for (const p of parents ?? []) await rmCgroupTree(p);
    await fs.rmdir(path.join(CG, 'capsa')).catch(() => undefined);
  });

  test('cgroup v2: the pod cgroup carries the pod resources, delegates controllers, updates, and dies whole', async () => {
    const parent = `${TEST_PARENT_ROOT}/burstable/pod-${process.pid}`;
    const id = await runp(
      d,
      podConfig(d, {
        cgroupParent: parent,
        resources: {
          cpuShares: 512n,
          cpuQuota: 50000n,
          cpuPeriod: 100000n,
          memoryLimitInBytes: BigInt(64 * MIB),
          memorySwapLimitInBytes: BigInt(64 * MIB),
          cpusetCpus: '0',
          unified: { 'pids.max': '100' },
        },
      }),
      60_000,
    );
    const r = await call<{ info: Record<string, string> }>(d.runtime, 'podSandboxStatus', {
      podSandboxId: id,
      verbose: true,
    });
    const rel = `${parent}/capsa-${id}`;
    expect((JSON.parse(r.info.info) as { cgroup: unknown }).cgroup).toEqual({ path: rel, version: 2 });
    expect(cgFile(rel, 'cpu.weight')).toBe(String(sharesToWeight(512)));
    expect(cgFile(rel, 'cpu.max')).toBe('50000 100000');
    expect(cgFile(rel, 'memory.max')).toBe(String(64 * MIB));
    if (existsSync(path.join(CG, rel, 'memory.swap.max'))) expect(cgFile(rel, 'memory.swap.max')).toBe('0');
    expect(cgFile(rel, 'pids.max')).toBe('100');
    expect(cgFile(rel, 'cpuset.cpus')).toBe('0');
    // Its children (containers) get the controllers too.
    expect(cgFile(rel, 'cgroup.subtree_control').split(' ')).toEqual(expect.arrayContaining(['cpu', 'memory', 'pids']));

    await call(d.runtime, 'updatePodSandboxResources', {
      podSandboxId: id,
      resources: { memoryLimitInBytes: BigInt(128 * MIB), memorySwapLimitInBytes: BigInt(256 * MIB) },
    });
    expect(cgFile(rel, 'memory.max')).toBe(String(128 * MIB));
    if (existsSync(path.join(CG, rel, 'memory.swap.max')))
      expect(cgFile(rel, 'memory.swap.max')).toBe(String(128 * MIB));

    // A stray process in a child cgroup (v2: only leaves hold processes) dies with the pod.
    await fs.mkdir(path.join(CG, rel, 'stray'));
    const stray = spawn('sleep', ['600'], { stdio: 'ignore' });
    await fs.writeFile(path.join(CG, rel, 'stray', 'cgroup.procs'), String(stray.pid));
    await call(d.runtime, 'stopPodSandbox', { podSandboxId: id }, 60_000);
    expect(await waitForExit(stray, 10_000).then(() => stray.signalCode)).toBe('SIGKILL');
    expect(existsSync(path.join(CG, rel))).toBe(false);
    // kubelet's parent stays.
    expect(existsSync(path.join(CG, parent))).toBe(true);
    await call(d.runtime, 'removePodSandbox', { podSandboxId: id }, 60_000);
  });

  test('cgroup v2: container limits, UpdateContainerResources and stats (PSI, RSS, page faults, available)', async () => {
    const podCfg = podConfig(d);
    const pod = await runp(d, podCfg, 60_000);
    const id = await run(
      d,
      pod,
      podCfg,
      ctrConfig('limits', {
        linux: { resources: { memoryLimitInBytes: BigInt(64 * MIB), cpuShares: 512n, cpuQuota: 20000n } },
      }),
    );
    const { info } = await ctrStatus(d, id);
    expect(readFileSync(`/proc/${info.pid}/cgroup`, 'utf8')).toBe(`0::${info.cgroupPath}\n`);
    expect(cgFile(info.cgroupPath, 'memory.max')).toBe(String(64 * MIB));
    expect(cgFile(info.cgroupPath, 'cpu.weight')).toBe(String(sharesToWeight(512)));
    expect(cgFile(info.cgroupPath, 'cpu.max')).toMatch(/^20000 \d+$/);
    expect(Number(cgFile(info.cgroupPath, 'pids.current'))).toBeGreaterThan(0);

    await call(d.runtime, 'updateContainerResources', {
      containerId: id,
      linux: { memoryLimitInBytes: BigInt(96 * MIB), cpuQuota: 50000n, cpuPeriod: 100000n },
    });
    expect(cgFile(info.cgroupPath, 'memory.max')).toBe(String(96 * MIB));
    expect(cgFile(info.cgroupPath, 'cpu.max')).toBe('50000 100000');

    // Two seconds of spinning under the 0.5 CPU quota: throttled, its task waits runnable, which is a
    // CPU pressure stall of the container's cgroup.
    await call(
      d.runtime,
      'execSync',
      { containerId: id, cmd: ['timeout', '2', 'sh', '-c', 'while :; do :; done'], timeout: 60n },
      90_000,
    );
    const { stats } = await call<{ stats: ContainerStats }>(d.runtime, 'containerStats', { containerId: id });
    expect(stats.cpu!.usageCoreNanoSeconds!.value).toBeGreaterThan(0n);
    // What kubelet's summary API takes from here (PodAndContainerStatsFromCRI).
    const mem = stats.memory!;
    expect(mem.workingSetBytes!.value).toBeGreaterThan(0n);
    expect(mem.rssBytes!.value).toBeGreaterThan(0n);
    expect(mem.pageFaults!.value).toBeGreaterThan(0n);
    expect(mem.majorPageFaults).toBeDefined();
    // Under a limit: the limit less the working set, both from the same read.
    expect(mem.availableBytes!.value).toBe(BigInt(96 * MIB) - mem.workingSetBytes!.value);
    // Pure v2: pressure from the container's own cgroup.
    if (PSI) {
      expect(stats.cpu!.psi!.Some!.Total).toBeGreaterThan(0n);
      for (const psi of [stats.cpu!.psi, mem.psi, stats.io!.psi]) {
        expect(psi!.Some!.Total).toBeGreaterThanOrEqual(0n);
        expect(psi!.Full).toBeDefined();
      }
    } else {
      expect(stats.cpu!.psi).toBeUndefined();
    }
    // The pod's: its cgroup's pressure, RSS and page faults (subtree: the container's), no limit so nothing available.
    const pstats = (await call<{ stats: PodSandboxStats }>(d.runtime, 'podSandboxStats', { podSandboxId: pod })).stats
      .linux!;
    expect(pstats.memory!.rssBytes!.value).toBeGreaterThan(0n);
    expect(pstats.memory!.pageFaults!.value).toBeGreaterThan(0n);
    expect(pstats.memory!.availableBytes).toBeUndefined();
    if (PSI) {
      expect(pstats.cpu!.psi!.Some!.Total).toBeGreaterThan(0n);
      expect(pstats.memory!.psi).toBeDefined();
      expect(pstats.io!.psi).toBeDefined();
    }

    await call(d.runtime, 'stopContainer', { containerId: id, timeout: 5n }, 60_000);
    await call(d.runtime, 'removeContainer', { containerId: id }, 60_000);
    expect(existsSync(path.join(CG, info.cgroupPath))).toBe(false);
  });

  test('cgroup v2: a container over memory.max is OOMKilled', async () => {
    const podCfg = podConfig(d);
    const pod = await runp(d, podCfg, 60_000);
    const id = await run(
      d,
      pod,
      podCfg,
      ctrConfig('oom', {
        command: ['dd', 'if=/dev/zero', 'of=/dev/null', 'bs=64M', 'count=1'],
        linux: { resources: { memoryLimitInBytes: BigInt(8 * MIB), memorySwapLimitInBytes: BigInt(8 * MIB) } },
      }),
    );
    expect(await waitExited(d, id)).toMatchObject({ exitCode: 137, reason: 'OOMKilled' });
  });
});
