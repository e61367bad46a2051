// Pod sandboxes through the real gRPC socket, as root, on real namespaces,
// mounts and cgroups (cgroup v1 on the CI machine). Every test ends by
// removing its pods and checking that nothing capsa- is left.
import * as grpc from '@grpc/grpc-js';
import { execFileSync, spawn } from 'child_process';
import { existsSync, promises as fs, readFileSync, statSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { defaultCgroupParent } from '../../src/containerizer/isolators/cgroups/paths';
import { NamespaceMode, PodSandboxState } from '../../src/gen/runtime/v1/api';
import { native } from '../../src/native';
import { TestDaemon, call, expectRpcError, grpcCode, runp, startDaemon, waitForExit } from '../helpers/daemon';
import { rmCgroupTree } from '../helpers/cgroups';
import { assertNoCapsaLeaks } from '../helpers/leaks';

const NSFS_MAGIC = 0x6e736673;
/** kubelet-style parents for these tests; removed in afterAll. */
const TEST_PARENT_ROOT = '/kubepods-capsatest';
const V1_CONTROLLERS = ['cpu', 'cpuacct', 'cpuset', 'memory', 'pids', 'devices', 'freezer', 'blkio'].filter((c) =>
  existsSync(`/sys/fs/cgroup/${c}/cgroup.procs`),
);

interface Info {
  id: string;
  namespaces: { net?: string; uts?: string; ipc?: string; pid?: string };
  pidHolder?: { pid: number; startTime: number; cgroupPath: string };
  cgroup?: { path: string; version: number };
  files: { hosts: string; resolvConf: string; hostname: string; shm: string };
  stopReason?: string;
}

let uidSeq = 0;
function podConfig(over: Record<string, unknown> = {}, linux: Record<string, unknown> = {}): Record<string, unknown> {
  const uid = `uid-${process.pid}-${++uidSeq}`;
  return {
    metadata: { name: `pod${uidSeq}`, uid, namespace: 'capsa-tests', attempt: 0 },
    hostname: `pod${uidSeq}`,
    labels: { test: 'pods', seq: String(uidSeq) },
    annotations: { note: 'kept as is' },
    linux,
    ...over,
  };
}

async function status(
  d: TestDaemon,
  id: string,
): Promise<{ status: Record<string, unknown> & { state: number }; info: Info }> {
  const r = await call<{ status: Record<string, unknown> & { state: number }; info: Record<string, string> }>(
    d.runtime,
    'podSandboxStatus',
    { podSandboxId: id, verbose: true },
  );
  return { status: r.status, info: JSON.parse(r.info.info) as Info };
}

async function list(d: TestDaemon, filter: Record<string, unknown> = {}): Promise<{ id: string; state: number }[]> {
  return (await call<{ items: { id: string; state: number }[] }>(d.runtime, 'listPodSandbox', { filter })).items;
}

async function removeAll(d: TestDaemon): Promise<void> {
  for (const p of await list(d)) {
    await call(d.runtime, 'stopPodSandbox', { podSandboxId: p.id });
    await call(d.runtime, 'removePodSandbox', { podSandboxId: p.id });
  }
}

async function isNsfs(file: string): Promise<boolean> {
  try {
    return (await fs.statfs(file)).type === NSFS_MAGIC;
  } catch {
    return false;
  }
}

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', timeout: 10000 }).trim();
}

function cgroupDir(controller: string, p: string): string {
  return path.join('/sys/fs/cgroup', controller, p);
}

/** Simulates a reboot's effect on the volatile state dir: its mounts and pid holders gone, the dir wiped. */
async function wipeStateDir(state: string): Promise<void> {
  const n = native();
  const text = await fs.readFile('/proc/self/mountinfo', 'utf8');
  const mounts = text
    .split('\n')
    .filter((l) => l.includes(' - '))
    .map((l) => l.split(' ')[4])
    .filter((m) => m.startsWith(state + '/'))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) n.umount2(m, n.constants.MNT_DETACH);
  for (const e of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const argv = await fs.readFile(`/proc/${e}/cmdline`, 'utf8').catch(() => '');
    if (argv.includes('capsa-pause') && argv.includes(state)) process.kill(Number(e), 'SIGKILL');
  }
  await fs.rm(state, { recursive: true, force: true });
}

describe('pod sandboxes', () => {
  let d: TestDaemon;
  let parents: string[];

  beforeAll(async () => {
    d = await startDaemon();
    parents = [defaultCgroupParent('cgroupfs', d.root), TEST_PARENT_ROOT];
  });

  afterEach(async () => {
    if (d.proc.exitCode === null && d.proc.signalCode === null) await removeAll(d);
    await assertNoCapsaLeaks([d.dir], { cgroupParents: parents });
  });

  afterAll(async () => {
    await d.stop();
    await d.cleanup();
    await rmCgroupTree(TEST_PARENT_ROOT);
    await rmCgroupTree(defaultCgroupParent('cgroupfs', d.root));
  });

  test('lifecycle: run, status, list with filters, stop, remove', async () => {
    const cfg = podConfig();
    const id = await runp(d, cfg);
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    const other = await runp(d, podConfig({ labels: { test: 'pods', other: 'yes' } }));

    const s = await status(d, id);
    expect(s.status).toMatchObject({
      id,
      state: PodSandboxState.SANDBOX_READY,
      metadata: cfg.metadata,
      labels: cfg.labels,
      annotations: { note: 'kept as is' },
      linux: {
        namespaces: { options: { network: NamespaceMode.POD, pid: NamespaceMode.POD, ipc: NamespaceMode.POD } },
      },
    });
    expect(s.status.createdAt as bigint).toBeGreaterThan(BigInt(Date.now() - 60_000) * 1_000_000n);

    // a prefix works for status
    expect((await status(d, id.slice(0, 12))).status.id).toBe(id);

    expect((await list(d)).map((p) => p.id).sort()).toEqual([id, other].sort());
    expect((await list(d, { id: id.slice(0, 10) })).map((p) => p.id)).toEqual([id]);
    expect((await list(d, { labelSelector: { other: 'yes' } })).map((p) => p.id)).toEqual([other]);
    expect((await list(d, { labelSelector: { test: 'pods' } })).length).toBe(2);
    expect(await list(d, { labelSelector: { test: 'nope' } })).toEqual([]);

    await call(d.runtime, 'stopPodSandbox', { podSandboxId: id });
    await call(d.runtime, 'stopPodSandbox', { podSandboxId: id }); // idempotent
    expect((await status(d, id)).status.state).toBe(PodSandboxState.SANDBOX_NOTREADY);
    expect((await list(d, { state: { state: PodSandboxState.SANDBOX_NOTREADY } })).map((p) => p.id)).toEqual([id]);
    expect((await list(d, { state: { state: PodSandboxState.SANDBOX_READY } })).map((p) => p.id)).toEqual([other]);
    expect((await list(d, { id: id.slice(0, 10), state: { state: PodSandboxState.SANDBOX_READY } })).length).toBe(0);

    await call(d.runtime, 'removePodSandbox', { podSandboxId: id });
    await call(d.runtime, 'removePodSandbox', { podSandboxId: id });
    await expectRpcError(call(d.runtime, 'podSandboxStatus', { podSandboxId: id }), grpc.status.NOT_FOUND, /not found/);
    expect((await list(d)).map((p) => p.id)).toEqual([other]);
    expect(existsSync(path.join(d.root, 'sandboxes', id))).toBe(false);

    // Stop/Remove of unknown ids succeed; kubelet relies on it.
    await call(d.runtime, 'stopPodSandbox', { podSandboxId: 'f'.repeat(64) });
    await call(d.runtime, 'removePodSandbox', { podSandboxId: 'f'.repeat(64) });
    // Remove without stop stops first.
    await call(d.runtime, 'removePodSandbox', { podSandboxId: other });
    expect(await list(d)).toEqual([]);
  });

  test('hostname, /etc/hosts, resolv.conf, /etc/hostname and the pod shm', async () => {
    const id = await runp(
      d,
      podConfig({
        hostname: 'web-0',
        dnsConfig: {
          servers: ['10.96.0.10', '2001:db8::53'],
          searches: ['default.svc.cluster.local', 'cluster.local'],
          options: ['ndots:5', 'timeout:2'],
        },
      }),
    );
    const { info } = await status(d, id);
    expect(sh('nsenter', [`--uts=${info.namespaces.uts}`, 'hostname'])).toBe('web-0');
    expect(os.hostname()).not.toBe('web-0');
    expect(readFileSync(info.files.hostname, 'utf8')).toBe('web-0\n');
    const hosts = readFileSync(info.files.hosts, 'utf8');
    expect(hosts).toMatch(/^127\.0\.0\.1\tlocalhost$/m);
    expect(hosts).toMatch(/^::1\tlocalhost ip6-localhost ip6-loopback$/m);
    expect(hosts).toMatch(/^127\.0\.1\.1\tweb-0$/m);
    expect(readFileSync(info.files.resolvConf, 'utf8')).toBe(
      'search default.svc.cluster.local cluster.local\nnameserver 10.96.0.10\nnameserver 2001:db8::53\noptions ndots:5 timeout:2\n',
    );
    // /dev/shm: a 64 MiB tmpfs owned by the pod
    expect(path.basename(info.files.shm)).toBe(`capsa-${id}-shm`);
    expect(sh('findmnt', ['-n', '-o', 'FSTYPE,OPTIONS', info.files.shm])).toMatch(
      /^tmpfs\s+rw,nosuid,nodev,noexec,.*size=65536k/,
    );

    // Without a DNS config: the host's resolv.conf.
    const id2 = await runp(d, podConfig());
    const info2 = (await status(d, id2)).info;
    expect(readFileSync(info2.files.resolvConf, 'utf8')).toBe(readFileSync('/etc/resolv.conf', 'utf8'));
  });

  test('namespaces are pinned files with loopback up, and gone after remove', async () => {
    const id = await runp(d, podConfig());
    const { info } = await status(d, id);
    for (const t of ['net', 'uts', 'ipc'] as const) {
      const f = info.namespaces[t]!;
      expect(f).toBe(path.join(d.state, 'ns', `capsa-${id}-${t}`));
      expect(await isNsfs(f)).toBe(true);
      expect(readlinkNs(f)).not.toBe(readlinkNs(`/proc/self/ns/${t}`));
    }
    // CRI's default PID mode is POD: one namespace for the pod, pinned too (its holder: see below).
    expect(await isNsfs(info.namespaces.pid!)).toBe(true);
    const links = sh('nsenter', [`--net=${info.namespaces.net}`, 'ip', '-o', 'link']);
    expect(links.split('\n')).toHaveLength(1);
    expect(links).toMatch(/^1: lo: <LOOPBACK,UP,LOWER_UP>/);
    expect(sh('nsenter', [`--net=${info.namespaces.net}`, 'ip', '-o', '-4', 'addr'])).toMatch(/127\.0\.0\.1\/8/);

    await call(d.runtime, 'stopPodSandbox', { podSandboxId: id });
    for (const t of ['net', 'uts', 'ipc', 'pid'] as const) expect(existsSync(info.namespaces[t]!)).toBe(false);
    expect(existsSync(info.files.shm)).toBe(false);
    await call(d.runtime, 'removePodSandbox', { podSandboxId: id });
  });

  test('host network and host IPC skip their namespaces', async () => {
    const id = await runp(
      d,
      podConfig(
        { hostname: '' },
        {
          securityContext: {
            namespaceOptions: { network: NamespaceMode.NODE, ipc: NamespaceMode.NODE, pid: NamespaceMode.CONTAINER },
          },
        },
      ),
    );
    const { status: s, info } = await status(d, id);
    expect(s.linux).toMatchObject({
      namespaces: { options: { network: NamespaceMode.NODE, ipc: NamespaceMode.NODE, pid: NamespaceMode.CONTAINER } },
    });
    expect(info.namespaces).toEqual({});
    expect(info.files.shm).toBe('/dev/shm');
    expect(readFileSync(info.files.hosts, 'utf8')).toBe(readFileSync('/etc/hosts', 'utf8'));
    expect(readFileSync(info.files.hostname, 'utf8')).toBe(os.hostname() + '\n');
    expect(await fs.readdir(path.join(d.state, 'ns')).then((n) => n.filter((x) => x.includes(id)))).toEqual([]);

    // Host network, own IPC.
    const id2 = await runp(
      d,
      podConfig({}, { securityContext: { namespaceOptions: { network: NamespaceMode.NODE } } }),
    );
    const info2 = (await status(d, id2)).info;
    expect(Object.keys(info2.namespaces).sort()).toEqual(['ipc', 'pid']);
  });

  test('namespaced sysctls are written inside the pod namespaces only', async () => {
    const hostPort = readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8').trim();
    const hostShm = readFileSync('/proc/sys/kernel/shmmni', 'utf8').trim();
    const id = await runp(
      d,
      podConfig(
        {},
        {
          sysctls: {
            'net.ipv4.ip_unprivileged_port_start': '80',
            'net/ipv4/ping_group_range': '0 2147483647',
            'kernel.shmmni': '1234',
          },
        },
      ),
    );
    const { info } = await status(d, id);
    const inNet = (f: string): string => sh('nsenter', [`--net=${info.namespaces.net}`, 'cat', f]);
    expect(inNet('/proc/sys/net/ipv4/ip_unprivileged_port_start')).toBe('80');
    expect(inNet('/proc/sys/net/ipv4/ping_group_range').split(/\s+/)).toEqual(['0', '2147483647']);
    expect(sh('nsenter', [`--ipc=${info.namespaces.ipc}`, 'cat', '/proc/sys/kernel/shmmni'])).toBe('1234');
    expect(readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8').trim()).toBe(hostPort);
    expect(readFileSync('/proc/sys/kernel/shmmni', 'utf8').trim()).toBe(hostShm);
  });

  test('a sysctl the kernel refuses fails the ISOLATING stage, names the sysctl and leaves nothing behind', async () => {
    const cfg = podConfig({}, { sysctls: { 'net.ipv4.capsa_no_such_sysctl': '1' } });
    await expectRpcError(
      call(d.runtime, 'runPodSandbox', { config: cfg }),
      grpc.status.INVALID_ARGUMENT,
      /^isolating: config\.linux\.sysctls\[net\.ipv4\.capsa_no_such_sysctl\]: no such sysctl/,
    );
    expect(await list(d)).toEqual([]);
    expect(await fs.readdir(path.join(d.root, 'sandboxes'))).toEqual([]);
    // The name is free again.
    const ok = await runp(d, { ...cfg, linux: {} });
    expect(ok).toMatch(/^[0-9a-f]{64}$/);
  });

  test('the pod cgroup under cgroup_parent carries the pod resources and is removed', async () => {
    const parent = `${TEST_PARENT_ROOT}/burstable/pod-${process.pid}`;
    const mib = 1024 * 1024;
    const id = await runp(
      d,
      podConfig(
        {},
        {
          cgroupParent: parent,
          resources: {
            cpuShares: 512n,
            cpuQuota: 50000n,
            cpuPeriod: 100000n,
            memoryLimitInBytes: BigInt(64 * mib),
            memorySwapLimitInBytes: BigInt(64 * mib),
            cpusetCpus: '0',
            unified: { 'pids.max': '100' },
          },
        },
      ),
    );
    const { info } = await status(d, id);
    const rel = `${parent}/capsa-${id}`;
    expect(info.cgroup).toEqual({ path: rel, version: 1 });
    for (const c of V1_CONTROLLERS) expect(existsSync(cgroupDir(c, rel))).toBe(true);
    const read = (c: string, f: string): string => readFileSync(path.join(cgroupDir(c, rel), f), 'utf8').trim();
    expect(read('cpu', 'cpu.shares')).toBe('512');
    expect(read('cpu', 'cpu.cfs_period_us')).toBe('100000');
    expect(read('cpu', 'cpu.cfs_quota_us')).toBe('50000');
    expect(read('memory', 'memory.limit_in_bytes')).toBe(String(64 * mib));
    if (existsSync(path.join(cgroupDir('memory', rel), 'memory.memsw.limit_in_bytes'))) {
      expect(read('memory', 'memory.memsw.limit_in_bytes')).toBe(String(64 * mib));
    }
    expect(read('pids', 'pids.max')).toBe('100');
    expect(read('cpuset', 'cpuset.cpus')).toBe('0');
    expect(read('cpuset', 'cpuset.mems')).not.toBe('');

    // UpdatePodSandboxResources changes the live values.
    await call(d.runtime, 'updatePodSandboxResources', {
      podSandboxId: id,
      resources: { memoryLimitInBytes: BigInt(128 * mib), memorySwapLimitInBytes: BigInt(128 * mib) },
    });
    expect(read('memory', 'memory.limit_in_bytes')).toBe(String(128 * mib));

    // A stray process in the pod cgroup dies with the pod.
    const stray = spawn('sleep', ['600'], { stdio: 'ignore' });
    await fs.writeFile(path.join(cgroupDir('freezer', rel), 'cgroup.procs'), String(stray.pid));
    await fs.writeFile(path.join(cgroupDir('memory', rel), 'cgroup.procs'), String(stray.pid));
    await call(d.runtime, 'stopPodSandbox', { podSandboxId: id });
    expect(await waitForExit(stray, 5000).then(() => stray.signalCode)).toBe('SIGKILL');
    for (const c of V1_CONTROLLERS) expect(existsSync(cgroupDir(c, rel))).toBe(false);
    // kubelet's parent stays.
    expect(existsSync(cgroupDir('memory', parent))).toBe(true);
    await call(d.runtime, 'removePodSandbox', { podSandboxId: id });
  });

  test('a shared PID namespace is held by capsa-pause in the pod cgroup', async () => {
    const id = await runp(d, podConfig({}, { securityContext: { namespaceOptions: { pid: NamespaceMode.POD } } }));
    const { info } = await status(d, id);
    const holder = info.pidHolder!;
    expect(holder.pid).toBeGreaterThan(1);
    expect(info.namespaces.pid).toBe(path.join(d.state, 'ns', `capsa-${id}-pid`));
    expect(await isNsfs(info.namespaces.pid!)).toBe(true);
    const st = readFileSync(`/proc/${holder.pid}/status`, 'utf8');
    expect(st).toMatch(/^Name:\tcapsa-pause$/m);
    expect(st).toMatch(new RegExp(`^NSpid:\\t${holder.pid}\\t1$`, 'm'));
    expect(readlinkNs(`/proc/${holder.pid}/ns/pid`)).toBe(readlinkNs(info.namespaces.pid!));
    expect(readlinkNs(`/proc/${holder.pid}/ns/net`)).toBe(readlinkNs(info.namespaces.net!));
    expect(readlinkNs(`/proc/${holder.pid}/ns/uts`)).toBe(readlinkNs(info.namespaces.uts!));
    const cg = readFileSync(`/proc/${holder.pid}/cgroup`, 'utf8');
    expect(cg).toMatch(new RegExp(`:memory:${holder.cgroupPath}$`, 'm'));
    expect(holder.cgroupPath).toMatch(new RegExp(`/capsa-${id}/capsa-${id}-init$`));

    await call(d.runtime, 'stopPodSandbox', { podSandboxId: id });
    expect(await gone(holder.pid)).toBe(true);
    expect(existsSync(info.namespaces.pid!)).toBe(false);
  });

  test('hostile input: typed errors, and the daemon stays up', async () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{}, /^config: is required/],
      [{ config: { hostname: 'x' } }, /^config\.metadata: is required/],
      [{ config: { metadata: { uid: 'u', namespace: 'n' } } }, /^config\.metadata\.name: is required/],
      [{ config: { metadata: { name: 'n', namespace: 'n' } } }, /^config\.metadata\.uid: is required/],
      [{ config: { metadata: { name: 'n', uid: 'u' } } }, /^config\.metadata\.namespace: is required/],
      [{ config: podConfig({ hostname: '-'.repeat(300) }) }, /^config\.hostname:/],
      [
        { config: podConfig({ dnsConfig: { servers: ['1.1.1.1\nnameserver 6.6.6.6'] } }) },
        /^config\.dns_config\.servers\[0\]/,
      ],
      [{ config: podConfig({}, { cgroupParent: '/../../etc' }) }, /^config\.linux\.cgroup_parent/],
      [
        { config: podConfig({}, { sysctls: { 'kernel.core_pattern': '|/bin/evil' } }) },
        /^config\.linux\.sysctls\[kernel\.core_pattern\]/,
      ],
      [
        { config: podConfig({}, { resources: { memoryLimitInBytes: -1000n } }) },
        /^config\.linux\.resources\.memory_limit_in_bytes/,
      ],
      [{ config: podConfig({}, { resources: { cpuQuota: 1n } }) }, /^config\.linux\.resources\.cpu_quota/],
      [
        { config: podConfig({}, { resources: { cpuPeriod: 5_000_000_000n } }) },
        /^config\.linux\.resources\.cpu_period/,
      ],
      [{ config: podConfig({}, { resources: { cpusetCpus: '0-99999' } }) }, /^config\.linux\.resources\.cpuset_cpus/],
      [
        { config: podConfig({}, { resources: { unified: { 'cgroup.procs': '1' } } }) },
        /^config\.linux\.resources\.unified\[cgroup\.procs\]/,
      ],
      [{ config: podConfig(), runtimeHandler: 'kata' }, /^runtime_handler/],
    ];
    for (const [req, msg] of bad) {
      await expectRpcError(call(d.runtime, 'runPodSandbox', req), grpc.status.INVALID_ARGUMENT, msg);
    }
    // A cpuset naming a CPU this host does not have (4000): refused up front, naming the CRI field.
    await expectRpcError(
      call(d.runtime, 'runPodSandbox', { config: podConfig({}, { resources: { cpusetCpus: '4000' } }) }),
      grpc.status.INVALID_ARGUMENT,
      /^config\.linux\.resources\.cpuset_cpus: CPU\(s\) 4000 not on this host/,
    );
    await expectRpcError(
      call(d.runtime, 'podSandboxStatus', { podSandboxId: '' }),
      grpc.status.INVALID_ARGUMENT,
      /pod_sandbox_id/,
    );
    await expectRpcError(
      call(d.runtime, 'podSandboxStatus', { podSandboxId: 'nothex!' }),
      grpc.status.NOT_FOUND,
      /not found/,
    );

    // Duplicate names: a different request for a name in use is AlreadyExists.
    const cfg = podConfig();
    const id = await runp(d, cfg);
    await expectRpcError(
      call(d.runtime, 'runPodSandbox', { config: { ...cfg, hostname: 'other' } }),
      grpc.status.ALREADY_EXISTS,
      new RegExp(`in use by ${id}`),
    );
    // The same request again, after the first caller got its answer: also AlreadyExists.
    await expectRpcError(
      call(d.runtime, 'runPodSandbox', { config: cfg }),
      grpc.status.ALREADY_EXISTS,
      /already in use/,
    );
    await runp(d, podConfig());
    await expectRpcError(
      call(d.runtime, 'stopPodSandbox', { podSandboxId: '' }),
      grpc.status.INVALID_ARGUMENT,
      /pod_sandbox_id/,
    );

    const v = await call<{ runtimeName: string }>(d.runtime, 'version', {});
    expect(v.runtimeName).toBe('capsa');
    expect((await list(d)).length).toBe(2);
  });

  test('identical concurrent or retried RunPodSandbox calls get one sandbox', async () => {
    const cfg = podConfig();
    const [a, b, c] = await Promise.all([runp(d, cfg), runp(d, cfg), runp(d, cfg)]);
    expect(b).toBe(a);
    expect(c).toBe(a);
    expect(
      (await list(d, { labelSelector: { seq: (cfg.labels as Record<string, string>).seq } })).map((p) => p.id),
    ).toEqual([a]);

    // A caller that gives up (deadline) before the answer: its retry gets the sandbox.
    const cfg2 = podConfig();
    const first = await call(d.runtime, 'runPodSandbox', { config: cfg2 }, 1).catch((e: unknown) => e);
    expect(grpcCode(first)).toBe(grpc.status.DEADLINE_EXCEEDED);
    const retried = await runp(d, cfg2);
    const again = await list(d, { labelSelector: { seq: (cfg2.labels as Record<string, string>).seq } });
    expect(again.map((p) => p.id)).toEqual([retried]);
  });
});

describe('pod sandboxes across daemon restarts', () => {
  let d: TestDaemon;
  let parents: string[];

  beforeEach(async () => {
    d = await startDaemon();
    parents = [defaultCgroupParent('cgroupfs', d.root)];
  });

  afterEach(async () => {
    if (d.proc.exitCode === null && d.proc.signalCode === null) await removeAll(d);
    await assertNoCapsaLeaks([d.dir], { cgroupParents: parents });
    await d.stop();
    await d.cleanup();
    await rmCgroupTree(parents[0]);
  });

  async function kill9(): Promise<void> {
    d.runtime.close();
    d.image.close();
    d.proc.kill('SIGKILL');
    await waitForExit(d.proc);
  }

  test('kill -9, restart: pods are listed with the same ids, READY, holders alive', async () => {
    const a = await runp(d, podConfig());
    const b = await runp(d, podConfig({}, { securityContext: { namespaceOptions: { pid: NamespaceMode.POD } } }));
    const c = await runp(d, podConfig());
    await call(d.runtime, 'stopPodSandbox', { podSandboxId: c });
    const before = (await status(d, b)).info;
    await kill9();
    d = await startDaemon({ dir: d.dir });
    const items = await list(d);
    expect(items.map((p) => p.id).sort()).toEqual([a, b, c].sort());
    const state = Object.fromEntries(items.map((p) => [p.id, p.state]));
    expect(state[a]).toBe(PodSandboxState.SANDBOX_READY);
    expect(state[b]).toBe(PodSandboxState.SANDBOX_READY);
    expect(state[c]).toBe(PodSandboxState.SANDBOX_NOTREADY);
    const after = (await status(d, b)).info;
    expect(after.pidHolder).toEqual(before.pidHolder);
    expect(after.namespaces).toEqual(before.namespaces);
    expect(after.cgroup).toEqual(before.cgroup);
    expect(await isNsfs(after.namespaces.net!)).toBe(true);
    // The recovered pods still stop and remove cleanly (afterEach checks for leaks).
  });

  test('a wiped state dir (reboot) leaves pods NOTREADY and their leftovers destroyed', async () => {
    const a = await runp(d, podConfig({}, { securityContext: { namespaceOptions: { pid: NamespaceMode.POD } } }));
    const { info } = await status(d, a);
    await kill9();
    await wipeStateDir(d.state);
    d = await startDaemon({ dir: d.dir });
    const s = await status(d, a);
    expect(s.status.state).toBe(PodSandboxState.SANDBOX_NOTREADY);
    expect(s.info.stopReason).toMatch(/lost while capsa was down/);
    // The cgroups survived the simulated reboot; recovery removed them.
    expect(existsSync(cgroupDir('memory', info.cgroup!.path))).toBe(false);
  });

  test('a sandbox whose creation never finished (crash mid-RunPodSandbox) is undone on start', async () => {
    const id = await runp(d, podConfig({}, { securityContext: { namespaceOptions: { pid: NamespaceMode.POD } } }));
    const { info } = await status(d, id);
    await kill9();
    // Make the checkpoint look like the crash happened during ISOLATING: no readyAt yet.
    const file = path.join(d.root, 'sandboxes', id, 'checkpoint.json');
    const ckpt = JSON.parse(readFileSync(file, 'utf8')) as { data: { readyAt?: string } };
    delete ckpt.data.readyAt;
    await fs.writeFile(file, JSON.stringify(ckpt));
    d = await startDaemon({ dir: d.dir });
    expect(await list(d)).toEqual([]);
    expect(existsSync(path.join(d.root, 'sandboxes', id))).toBe(false);
    expect(existsSync(info.namespaces.net!)).toBe(false);
    expect(await gone(info.pidHolder!.pid)).toBe(true);
    expect(existsSync(cgroupDir('memory', info.cgroup!.path))).toBe(false);
    // The name is free: the same pod can be made again.
  });

  test('objects with the capsa- prefix and no checkpoint are destroyed on start', async () => {
    await kill9();
    const orphan = 'e'.repeat(64);
    const nsDir = path.join(d.state, 'ns');
    const shm = path.join(d.state, 'shm', `capsa-${orphan}-shm`);
    await fs.mkdir(nsDir, { recursive: true });
    await fs.mkdir(shm, { recursive: true });
    const pin = path.join(nsDir, `capsa-${orphan}-net`);
    await fs.writeFile(pin, '');
    const n = native();
    n.mount('/proc/self/ns/net', pin, '', n.constants.MS_BIND, '');
    n.mount('shm', shm, 'tmpfs', 0, 'size=1m');
    const rel = `${parents[0]}/capsa-${orphan}`;
    for (const c of V1_CONTROLLERS) await fs.mkdir(cgroupDir(c, rel), { recursive: true });
    const stray = spawn('sleep', ['600'], { stdio: 'ignore' });
    await fs.writeFile(path.join(cgroupDir('pids', rel), 'cgroup.procs'), String(stray.pid));
    // a stale directory of a sandbox that never wrote its checkpoint
    await fs.mkdir(path.join(d.root, 'sandboxes', orphan), { recursive: true });

    d = await startDaemon({ dir: d.dir });
    expect(await waitForExit(stray, 5000).then(() => stray.signalCode)).toBe('SIGKILL');
    expect(existsSync(pin)).toBe(false);
    expect(existsSync(shm)).toBe(false);
    for (const c of V1_CONTROLLERS) expect(existsSync(cgroupDir(c, rel))).toBe(false);
    expect(existsSync(path.join(d.root, 'sandboxes', orphan))).toBe(false);
    expect(d.output()).toMatch(/destroying orphaned pod cgroup/);
  });
});

/** The namespace's inode: equal for the same namespace, whichever file names it. */
function readlinkNs(p: string): number {
  return statSync(p).ino;
}

async function gone(pid: number, timeoutMs = 5000): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    let stat = '';
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      return true;
    }
    if (/\) [ZX] /.test(stat)) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}
