// The Prometheus endpoint (metrics_address) of a real daemon: CRI call
// counters from the instrumentation, pod/container counts by state, and
// per-container CPU and memory read from the container's real cgroup; and
// the CRI pod stats (cgroup usage, network counters from the pod's netns).
import { execFileSync } from 'child_process';
import { mkdtempSync, promises as fs } from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as net from 'net';
import * as path from 'path';
import { TestDaemon, call, createContainer, expectRpcError, request, runp, startDaemon } from '../helpers/daemon';
import { hostHasCgroupPsi } from '../helpers/cgroups';
import { assertNoCapsaLeaks } from '../helpers/leaks';
import {
  BUSYBOX_IMAGE as IMAGE,
  BusyboxDaemon,
  startBusyboxDaemon,
  stopBusyboxDaemon,
} from '../helpers/busybox-daemon';
import * as grpc from '@grpc/grpc-js';
import type { ContainerStats, PodSandboxStats } from '../../src/gen/runtime/v1/api';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the text exposition format (enough of it for these series). */
function parse(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not an exposition line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

function find(samples: Sample[], name: string, labels: Record<string, string> = {}): Sample[] {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

function get(url: string, method = 'GET'): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, timeout: 10_000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.end();
  });
}

async function scrape(address: string): Promise<Sample[]> {
  const r = await get(`http://${address}/metrics`);
  expect(r.status).toBe(200);
  expect(r.type).toMatch(/^text\/plain; version=0\.0\.4/);
  return parse(r.body);
}

/** The address the daemon logged for its endpoint (it was given port 0). */
function boundAddress(d: TestDaemon): string {
  const m = /"address":"([^"]+)"[^\n]*metrics endpoint is serving/.exec(d.output());
  if (!m) throw new Error(`no metrics endpoint in the daemon's log:\n${d.output()}`);
  return m[1];
}

let b: BusyboxDaemon;
let d: TestDaemon;
let address: string;

beforeAll(async () => {
  b = await startBusyboxDaemon({ args: ['--metrics-address', '127.0.0.1:0'] });
  d = b.d;
  address = boundAddress(d);
}, 600_000);

afterAll(async () => {
  await stopBusyboxDaemon(b);
}, 120_000);

test('CRI calls, pods and containers by state, and per-container CPU and memory from the cgroup', async () => {
  const before = await scrape(address);
  const okBefore = find(before, 'capsa_cri_requests_total', { method: 'RunPodSandbox', code: 'OK' })[0]?.value ?? 0;
  // The daemon's own process metrics are there (an operator watches its RSS).
  expect(find(before, 'capsa_process_resident_memory_bytes')[0].value).toBeGreaterThan(1 << 20);

  const uid = `metrics-${process.pid}`;
  const podCfg = {
    metadata: { name: 'mpod', uid, namespace: 'mns', attempt: 0 },
    hostname: 'mpod',
    logDirectory: path.join(d.dir, 'logs', uid),
    linux: {},
  };
  const pod = await runp(d, podCfg);
  const cfg = (name: string, command: string[]): Record<string, unknown> => ({
    metadata: { name, attempt: 0 },
    image: { image: IMAGE },
    command,
    logPath: `${name}.log`,
    linux: {},
  });
  const create = (c: Record<string, unknown>): Promise<string> => createContainer(d, pod, podCfg, c);
  // One container that allocates and touches 8 MiB, then idles; one that is created but never started.
  const busy = await create(
    cfg('busy', ['sh', '-c', 'x=$(head -c 8388608 /dev/zero | tr "\\0" a); echo ready; exec sleep 3600']),
  );
  await create(cfg('idle', ['sleep', '3600']));
  await call(d.runtime, 'startContainer', { containerId: busy }, 30_000);
  await expectRpcError(
    call(d.runtime, 'containerStatus', { containerId: 'f'.repeat(64) }),
    grpc.status.NOT_FOUND,
    /not found/,
  );

  const s = await scrape(address);
  expect(find(s, 'capsa_cri_requests_total', { method: 'RunPodSandbox', code: 'OK' })[0].value).toBe(okBefore + 1);
  expect(
    find(s, 'capsa_cri_requests_total', { method: 'ContainerStatus', code: 'NOT_FOUND' })[0].value,
  ).toBeGreaterThanOrEqual(1);
  expect(
    find(s, 'capsa_cri_request_duration_seconds_count', { method: 'CreateContainer' })[0].value,
  ).toBeGreaterThanOrEqual(2);
  expect(find(s, 'capsa_pod_sandboxes', { state: 'SANDBOX_READY' })[0].value).toBe(1);
  expect(find(s, 'capsa_containers', { state: 'CONTAINER_RUNNING' })[0].value).toBe(1);
  expect(find(s, 'capsa_containers', { state: 'CONTAINER_CREATED' })[0].value).toBe(1);

  const labels = { container: 'busy', pod: 'mpod', namespace: 'mns', id: busy, image: IMAGE };
  const cpu = find(s, 'container_cpu_usage_seconds_total', labels);
  expect(cpu).toHaveLength(1);
  expect(cpu[0].value).toBeGreaterThan(0);
  const mem = find(s, 'container_memory_usage_bytes', labels);
  expect(mem).toHaveLength(1);
  expect(mem[0].value).toBeGreaterThan(0);
  expect(find(s, 'container_memory_working_set_bytes', labels)).toHaveLength(1);
  const startedAt = find(s, 'container_start_time_seconds', labels)[0].value;
  expect(Math.abs(startedAt - Date.now() / 1000)).toBeLessThan(600);
  // Only running containers have usage series.
  expect(find(s, 'container_cpu_usage_seconds_total', { container: 'idle' })).toEqual([]);

  await call(d.runtime, 'stopPodSandbox', { podSandboxId: pod }, 60_000);
  const after = await scrape(address);
  expect(find(after, 'container_cpu_usage_seconds_total', { id: busy })).toEqual([]);
  expect(find(after, 'capsa_pod_sandboxes', { state: 'SANDBOX_NOTREADY' })[0].value).toBe(1);
  expect(find(after, 'capsa_containers', { state: 'CONTAINER_EXITED' })[0].value).toBe(2);
  await call(d.runtime, 'removePodSandbox', { podSandboxId: pod }, 60_000);
  const gone = await scrape(address);
  expect(find(gone, 'capsa_pod_sandboxes', { state: 'SANDBOX_NOTREADY' })[0].value).toBe(0);
  expect(find(gone, 'capsa_containers', { state: 'CONTAINER_EXITED' })[0].value).toBe(0);
}, 120_000);

test('only GET/HEAD /metrics is served', async () => {
  expect((await get(`http://${address}/`)).status).toBe(404);
  expect((await get(`http://${address}/metrics`, 'POST')).status).toBe(405);
  const head = await get(`http://${address}/metrics`, 'HEAD');
  expect(head.status).toBe(200);
  expect(head.body).toBe('');
});

test('a metrics address that is taken stops the start, naming metrics_address', async () => {
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  const port = (blocker.address() as net.AddressInfo).port;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'capsa-test-'));
  try {
    await expect(startDaemon({ dir, args: ['--metrics-address', `127.0.0.1:${port}`] })).rejects.toThrow(
      new RegExp(`metrics_address 127\\.0\\.0\\.1:${port}: cannot listen: EADDRINUSE`),
    );
    await assertNoCapsaLeaks([dir], { skipCgroups: true });
  } finally {
    blocker.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
}, 60_000);

describe('pod stats (PodSandboxStats, ListPodSandboxStats)', () => {
  test('cgroup CPU, memory and processes, netns interface counters, the containers; filters; errors', async () => {
    const uid = `stats-${process.pid}`;
    const podCfg = {
      metadata: { name: 'spod', uid, namespace: 'sns', attempt: 0 },
      hostname: 'spod',
      logDirectory: path.join(d.dir, 'logs', uid),
      labels: { tier: 'stats' },
      linux: {},
    };
    const pod = await runp(d, podCfg);
    try {
      const ctr = await createContainer(d, pod, podCfg, {
        metadata: { name: 'pinger', attempt: 0 },
        image: { image: IMAGE },
        command: ['sleep', '3600'],
        logPath: 'pinger.log',
        linux: { resources: { memoryLimitInBytes: String(64 << 20) } },
      });
      await call(d.runtime, 'startContainer', { containerId: ctr }, 30_000);
      // The pod's netns has only lo without CNI here: give it an "eth0" (one end of a veth pair whose
      // other end stays in the pod too) and send through it (the ARP requests for a missing peer).
      const netns = path.join(d.state, 'ns', `capsa-${pod}-net`);
      const inNs = (args: string[]): void => {
        execFileSync('nsenter', [`--net=${netns}`, 'ip', ...args], { timeout: 10_000 });
      };
      inNs(['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'peer0']);
      inNs(['link', 'set', 'eth0', 'up']);
      inNs(['link', 'set', 'peer0', 'up']);
      inNs(['addr', 'add', '10.99.0.1/24', 'dev', 'eth0']);
      await call(d.runtime, 'execSync', {
        containerId: ctr,
        cmd: ['ping', '-c', '2', '-W', '1', '10.99.0.2'],
        timeout: 10,
      });

      const { stats } = await call<{ stats: PodSandboxStats }>(d.runtime, 'podSandboxStats', { podSandboxId: pod });
      expect(stats.attributes).toMatchObject({
        id: pod,
        metadata: { name: 'spod', namespace: 'sns', uid },
        labels: { tier: 'stats' },
      });
      const linux = stats.linux!;
      expect(linux.cpu!.usageCoreNanoSeconds!.value).toBeGreaterThan(0n);
      expect(linux.memory!.usageBytes!.value).toBeGreaterThan(0n);
      expect(linux.process!.processCount!.value).toBeGreaterThanOrEqual(1n);
      expect(linux.network!.defaultInterface!.name).toBe('eth0');
      expect(linux.network!.defaultInterface!.txBytes!.value).toBeGreaterThan(0n);
      expect(linux.network!.interfaces.map((i) => i.name).sort()).toEqual(['eth0', 'peer0']);
      expect(linux.containers.map((c) => c.attributes!.id)).toEqual([ctr]);
      expect(linux.containers[0].cpu!.usageCoreNanoSeconds!.value).toBeGreaterThan(0n);
      // What kubelet's summary API takes from here with PodAndContainerStatsFromCRI.
      const cmem = linux.containers[0].memory!;
      expect(cmem.rssBytes!.value).toBeGreaterThan(0n);
      expect(cmem.pageFaults!.value).toBeGreaterThan(0n);
      expect(cmem.majorPageFaults).toBeDefined();
      expect(cmem.availableBytes!.value).toBe(BigInt(64 << 20) - cmem.workingSetBytes!.value);
      expect(linux.memory!.rssBytes!.value).toBeGreaterThan(0n);
      expect(linux.memory!.pageFaults!.value).toBeGreaterThan(0n);
      // Pressure stall information wherever the kernel keeps it per cgroup (a cgroup2 tree, hybrid included).
      if (hostHasCgroupPsi()) {
        for (const psi of [linux.cpu!.psi, linux.memory!.psi, linux.io!.psi, linux.containers[0].cpu!.psi]) {
          expect(psi!.Some!.Total).toBeGreaterThanOrEqual(0n);
          expect(psi!.Full).toBeDefined();
        }
        // stall time needs contention, which a quiet machine may not have: present, not necessarily > 0
        expect(linux.containers[0].cpu!.psi!.Some!.Total).toBeGreaterThanOrEqual(0n);
        expect(linux.containers[0].memory!.psi).toBeDefined();
        expect(linux.containers[0].io!.psi).toBeDefined();
      } else {
        expect(linux.cpu!.psi).toBeUndefined();
      }
      // A CPU rate once two samples are a second apart (kubelet reads the pod's from here).
      await call(d.runtime, 'execSync', {
        containerId: ctr,
        cmd: ['sh', '-c', 'i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done'],
        timeout: 20,
      });
      await new Promise((r) => setTimeout(r, 1100));
      const again = (await call<{ stats: PodSandboxStats }>(d.runtime, 'podSandboxStats', { podSandboxId: pod })).stats
        .linux!;
      expect(again.cpu!.usageNanoCores!.value).toBeGreaterThan(0n);
      expect(again.containers[0].cpu!.usageNanoCores!.value).toBeGreaterThan(0n);

      const listed = async (filter: Record<string, unknown>): Promise<string[]> =>
        (
          await call<{ stats: { attributes: { id: string } }[] }>(d.runtime, 'listPodSandboxStats', { filter })
        ).stats.map((s) => s.attributes.id);
      expect(await listed({ id: pod.slice(0, 12) })).toEqual([pod]);
      expect(await listed({ labelSelector: { tier: 'stats' } })).toEqual([pod]);
      expect(await listed({ labelSelector: { tier: 'other' } })).toEqual([]);

      // The streams carry what the lists do.
      const streamed = <T>(method: string, req: unknown, field: string): Promise<T[]> =>
        new Promise((resolve, reject) => {
          const out: T[] = [];
          const fn = (
            d.runtime as unknown as Record<string, (r: unknown, o: unknown) => grpc.ClientReadableStream<unknown>>
          )[method];
          const s = fn.call(d.runtime, request(method, req), { deadline: new Date(Date.now() + 30_000) });
          s.on('data', (m: Record<string, T[]>) => out.push(...m[field]));
          s.on('error', reject);
          s.on('end', () => resolve(out));
        });
      const pods = await streamed<PodSandboxStats>('streamPodSandboxStats', { filter: { id: pod } }, 'podSandboxStats');
      expect(pods.map((p) => [p.attributes!.id, p.linux!.containers.map((c) => c.attributes!.id)])).toEqual([
        [pod, [ctr]],
      ]);
      const ctrs = await streamed<ContainerStats>(
        'streamContainerStats',
        { filter: { podSandboxId: pod } },
        'containerStats',
      );
      expect(ctrs.map((c) => c.attributes!.id)).toEqual([ctr]);
      expect(ctrs[0].memory!.rssBytes!.value).toBeGreaterThan(0n);

      await expectRpcError(
        call(d.runtime, 'podSandboxStats', { podSandboxId: 'f'.repeat(64) }),
        grpc.status.NOT_FOUND,
        /f{64}/,
      );
      await expectRpcError(
        call(d.runtime, 'podSandboxStats', { podSandboxId: '' }),
        grpc.status.INVALID_ARGUMENT,
        /pod_sandbox_id/,
      );

      // The polled cgroup files stay open between calls (cgroups/stat-files.ts) and close with the cgroups.
      const cgroupFilesHeld = async (): Promise<string[]> => {
        const dir = `/proc/${d.proc.pid}/fd`;
        const links = await Promise.all(
          (await fs.readdir(dir)).map((n) => fs.readlink(path.join(dir, n)).catch(() => '')),
        );
        return links.filter((l) => l.startsWith('/sys/fs/cgroup/') && l.includes(pod));
      };
      expect((await cgroupFilesHeld()).length).toBeGreaterThan(0);

      // Stopped: no usage to report, the pod is still listed.
      await call(d.runtime, 'stopPodSandbox', { podSandboxId: pod }, 60_000);
      expect(await cgroupFilesHeld()).toEqual([]);
      const stopped = (await call<{ stats: PodSandboxStats }>(d.runtime, 'podSandboxStats', { podSandboxId: pod }))
        .stats;
      expect(stopped.attributes!.id).toBe(pod);
      expect(stopped.linux!.network).toBeUndefined();
    } finally {
      await call(d.runtime, 'stopPodSandbox', { podSandboxId: pod }, 60_000);
      await call(d.runtime, 'removePodSandbox', { podSandboxId: pod }, 60_000);
    }
  }, 120_000);
});
