// The Prometheus endpoint (metrics_address) of a real daemon: CRI call
// counters from the instrumentation, pod/container counts by state, and
// per-container CPU and memory read from the container's real cgroup.
import { mkdtempSync, promises as fs } from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as net from 'net';
import * as path from 'path';
import { defaultCgroupParent } from '../../src/containerizer/isolators/cgroups/paths';
import { rmCgroupTree } from '../helpers/cgroups';
import { TestDaemon, call, expectRpcError, runp, startDaemon } from '../helpers/daemon';
import { assertNoCapsaLeaks } from '../helpers/leaks';
import { TestRegistry, ensureTestImages, startRegistry } from '../helpers/registry';
import * as grpc from '@grpc/grpc-js';

const IMAGE = 'registry.example.test/capsa-test/busybox:latest';

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

let reg: TestRegistry;
let d: TestDaemon;
let address: string;

beforeAll(async () => {
  const images = await ensureTestImages();
  reg = await startRegistry();
  await reg.push(images.busybox.layout, 'capsa-test/busybox:latest');
  d = await startDaemon({
    toml: `[registries."registry.example.test"]\nmirrors = ["${reg.url}"]\n`,
    args: ['--metrics-address', '127.0.0.1:0'],
  });
  address = boundAddress(d);
  await call(d.image, 'pullImage', { image: { image: IMAGE } }, 120_000);
}, 600_000);

afterAll(async () => {
  try {
    await d?.stop();
    await assertNoCapsaLeaks([d.dir], { cgroupParents: [defaultCgroupParent('cgroupfs', d.root)] });
    await rmCgroupTree(defaultCgroupParent('cgroupfs', d.root));
  } finally {
    await d?.cleanup();
    await reg?.stop();
  }
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
  const create = async (c: Record<string, unknown>): Promise<string> =>
    (
      await call<{ containerId: string }>(
        d.runtime,
        'createContainer',
        { podSandboxId: pod, config: c, sandboxConfig: podCfg },
        30_000,
      )
    ).containerId;
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
