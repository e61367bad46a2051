// A real Prometheus (Debian's package) scrapes a real daemon with the
// shipped rules loaded; the test asks it with PromQL over its HTTP API:
// capsa's pods and containers under cAdvisor's names and labels, CRI call
// rates and latencies, pull bytes and durations, the recording rules' series
// and the alerts that a failed pull and an OOM-killed container fire. The
// rules also pass `promtool check rules` and their own unit tests.
import { ChildProcess, execFileSync, spawn } from 'child_process';
import { mkdtempSync, promises as fs } from 'fs';
import * as http from 'http';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import * as grpc from '@grpc/grpc-js';
import { defaultCgroupParent } from '../../src/containerizer/isolators/cgroups/paths';
import { ContainerState } from '../../src/gen/runtime/v1/api';
import { rmCgroupTree } from '../helpers/cgroups';
import { TestDaemon, call, createContainer, expectRpcError, runp, startDaemon, waitForExit } from '../helpers/daemon';
import { assertNoCapsaLeaks } from '../helpers/leaks';
import { TestRegistry, ensureTestImages, startRegistry } from '../helpers/registry';

const RULES_DIR = path.resolve(__dirname, '..', '..', '..', 'packaging', 'prometheus');
const IMAGE = 'registry.example.test/capsa-test/busybox:latest';

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

function getJson<T>(url: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: 10_000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => {
        try {
          const j = JSON.parse(body) as { status: string; data: T; error?: string };
          if (j.status !== 'success') reject(new Error(`${url}: ${j.error ?? body}`));
          else resolve(j.data);
        } catch (err) {
          reject(new Error(`${url}: ${res.statusCode} ${body.slice(0, 200)} (${String(err)})`));
        }
      });
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error(`${url} timed out`)));
  });
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

let reg: TestRegistry;
let d: TestDaemon;
let prom: ChildProcess | undefined;
let promUrl: string;
let promDir: string;

/** An instant PromQL query. */
async function query(q: string): Promise<Sample[]> {
  const r = await getJson<{ resultType: string; result: Sample[] }>(
    `${promUrl}/api/v1/query?query=${encodeURIComponent(q)}`,
  );
  return r.result;
}

/** Polls `q` until `ok` holds for its result (Prometheus scrapes every second). */
async function until(q: string, ok: (r: Sample[]) => boolean, timeoutMs = 30_000): Promise<Sample[]> {
  const deadline = Date.now() + timeoutMs;
  let last: Sample[] = [];
  while (Date.now() < deadline) {
    last = await query(q);
    if (ok(last)) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${q}: still ${JSON.stringify(last)} after ${timeoutMs} ms`);
}

const num = (s: Sample): number => Number(s.value[1]);

/** Bytes of the blobs a pull downloads: the image config and its layers (manifests are not counted). */
async function blobBytes(repo: string, tag: string): Promise<number> {
  const accept = 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json';
  const res = await reg.fetch(`/v2/${repo}/manifests/${tag}`, { headers: { accept } });
  const m = (await res.json()) as { config: { size: number }; layers: { size: number }[] };
  return m.config.size + m.layers.reduce((n, l) => n + l.size, 0);
}

beforeAll(async () => {
  const images = await ensureTestImages();
  reg = await startRegistry();
  await reg.push(images.busybox.layout, 'capsa-test/busybox:latest');
  d = await startDaemon({
    toml: `[registries."registry.example.test"]\nmirrors = ["${reg.url}"]\n`,
    args: ['--metrics-address', '127.0.0.1:0'],
  });
  const target = /"address":"([^"]+)"[^\n]*metrics endpoint is serving/.exec(d.output())?.[1];
  if (!target) throw new Error(`no metrics endpoint in the daemon's log:\n${d.output()}`);

  promDir = mkdtempSync(path.join(os.tmpdir(), 'capsa-prom-'));
  const config = [
    'global:',
    '  scrape_interval: 1s',
    '  evaluation_interval: 1s',
    'rule_files:',
    `  - ${path.join(RULES_DIR, 'capsa-rules.yml')}`,
    'scrape_configs:',
    '  - job_name: capsa',
    '    static_configs:',
    `      - targets: ['${target}']`,
    '',
  ].join('\n');
  await fs.writeFile(path.join(promDir, 'prometheus.yml'), config);
  const port = await freePort();
  promUrl = `http://127.0.0.1:${port}`;
  let out = '';
  prom = spawn(
    'prometheus',
    [
      `--config.file=${path.join(promDir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${path.join(promDir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  prom.stdout?.on('data', (b: Buffer) => (out += b.toString()));
  prom.stderr?.on('data', (b: Buffer) => (out += b.toString()));
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (prom.exitCode !== null) throw new Error(`prometheus exited ${prom.exitCode}:\n${out}`);
    const up = await query('up{job="capsa"} == 1').catch(() => []);
    if (up.length === 1) break;
    if (Date.now() > deadline) throw new Error(`prometheus never scraped capsa:\n${out}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}, 600_000);

afterAll(async () => {
  try {
    // Pods a failed test left behind go first (their mounts would keep the dir busy).
    const left = await call<{ items: { id: string }[] }>(d.runtime, 'listPodSandbox', {}).catch(() => ({ items: [] }));
    for (const p of left.items) {
      await call(d.runtime, 'stopPodSandbox', { podSandboxId: p.id }, 30_000).catch(() => undefined);
      await call(d.runtime, 'removePodSandbox', { podSandboxId: p.id }, 30_000).catch(() => undefined);
    }
    if (prom && prom.exitCode === null) {
      prom.kill('SIGTERM');
      await waitForExit(prom, 30_000);
    }
    await d?.stop();
    await assertNoCapsaLeaks([d.dir], { cgroupParents: [defaultCgroupParent('cgroupfs', d.root)] });
    await rmCgroupTree(defaultCgroupParent('cgroupfs', d.root));
  } finally {
    await d?.cleanup();
    await reg?.stop();
    if (promDir) await fs.rm(promDir, { recursive: true, force: true });
  }
}, 120_000);

test('the rules pass promtool check rules and their unit tests', () => {
  const check = execFileSync('promtool', ['check', 'rules', 'capsa-rules.yml'], { cwd: RULES_DIR, encoding: 'utf8' });
  expect(check).toMatch(/SUCCESS: \d+ rules found/);
  const unit = execFileSync('promtool', ['test', 'rules', 'capsa-rules.test.yml'], {
    cwd: RULES_DIR,
    encoding: 'utf8',
  });
  expect(unit).toMatch(/SUCCESS/);
});

test('Prometheus finds pods and containers, CRI rates and latencies, pulls, and the alerts fire', async () => {
  // Scraped at 0 before anything happens, so increase() sees the failure below.
  await until('capsa_image_pulls_total{result="failure"}', (r) => r.length === 1 && num(r[0]) === 0);

  await call(d.image, 'pullImage', { image: { image: IMAGE } }, 120_000);
  await expectRpcError(
    call(d.image, 'pullImage', { image: { image: 'registry.example.test/capsa-test/missing:latest' } }, 60_000),
    grpc.status.NOT_FOUND,
    /not found/,
  );
  const uid = `prom-${process.pid}`;
  const podCfg = {
    metadata: { name: 'prompod', uid, namespace: 'promns', attempt: 0 },
    hostname: 'prompod',
    logDirectory: path.join(d.dir, 'logs', uid),
    linux: {},
  };
  const pod = await runp(d, podCfg);
  const web = await createContainer(d, pod, podCfg, {
    metadata: { name: 'web', attempt: 0 },
    image: { image: IMAGE },
    command: ['sh', '-c', 'while :; do :; done'],
    logPath: 'web.log',
    linux: {},
  });
  await call(d.runtime, 'startContainer', { containerId: web });
  const oom = await createContainer(d, pod, podCfg, {
    metadata: { name: 'oom', attempt: 0 },
    image: { image: IMAGE },
    command: ['dd', 'if=/dev/zero', 'of=/dev/null', 'bs=64M', 'count=1'],
    logPath: 'oom.log',
    linux: { resources: { memoryLimitInBytes: 8n << 20n, memorySwapLimitInBytes: 8n << 20n } },
  });
  await call(d.runtime, 'startContainer', { containerId: oom });
  for (let i = 0; ; i++) {
    const s = await call<{ status: { state: number; reason: string } }>(d.runtime, 'containerStatus', {
      containerId: oom,
    });
    if (s.status.state === ContainerState.CONTAINER_EXITED) {
      expect(s.status.reason).toBe('OOMKilled');
      break;
    }
    if (i > 200) throw new Error('the oom container did not exit');
    await new Promise((r) => setTimeout(r, 100));
  }
  // What kubelet's relist calls, spread over a few scrapes.
  for (let i = 0; i < 6; i++) {
    await call(d.runtime, 'listPodSandbox', {});
    await call(d.runtime, 'listContainers', {});
    await new Promise((r) => setTimeout(r, 400));
  }

  // cAdvisor's names and labels: the container as kubelet's /metrics/cadvisor would show it.
  const cpu = await until(
    'container_cpu_usage_seconds_total{namespace="promns",pod="prompod",container="web"}',
    (r) => r.length === 1 && num(r[0]) > 0,
  );
  expect(cpu[0].metric).toEqual({
    __name__: 'container_cpu_usage_seconds_total',
    container: 'web',
    pod: 'prompod',
    namespace: 'promns',
    id: web,
    image: IMAGE,
    instance: expect.any(String),
    job: 'capsa',
  });
  // Busy: it keeps a core's share busy, and Prometheus sees the rate.
  await until(
    'rate(container_cpu_usage_seconds_total{container="web",pod="prompod"}[10s])',
    (r) => r.length === 1 && num(r[0]) > 0.05,
  );
  const ws = await query('container_memory_working_set_bytes{container="web",pod="prompod",namespace="promns"}');
  expect(ws).toHaveLength(1);
  expect(num(ws[0])).toBeGreaterThan(0);
  await until('capsa_pod_sandboxes{state="SANDBOX_READY"}', (r) => r.length === 1 && num(r[0]) === 1);

  // CRI call rates (raw and the recording rule) and latencies.
  const rates = await until('sum by (method) (rate(capsa_cri_requests_total{code="OK"}[1m]))', (r) =>
    ['RunPodSandbox', 'CreateContainer', 'StartContainer', 'ListContainers'].every((m) =>
      r.some((s) => s.metric.method === m && num(s) > 0),
    ),
  );
  expect(rates.length).toBeGreaterThanOrEqual(4);
  await until('capsa:cri_requests:rate5m{method="CreateContainer",code="OK"}', (r) => r.length === 1 && num(r[0]) > 0);
  // Latencies: the relist's p99 over the calls spread across scrapes (a histogram series is born
  // with its first call, so one-off calls show in _sum/_count rather than in a rate).
  const p99 = await until(
    'histogram_quantile(0.99, sum by (le) (rate(capsa_cri_request_duration_seconds_bucket{method="ListContainers"}[1m])))',
    (r) => r.length === 1 && num(r[0]) > 0,
  );
  expect(num(p99[0])).toBeLessThan(1);
  const mean = await until(
    'capsa_cri_request_duration_seconds_sum{method="CreateContainer"} / capsa_cri_request_duration_seconds_count{method="CreateContainer"}',
    (r) => r.length === 1 && num(r[0]) > 0,
  );
  expect(num(mean[0])).toBeLessThan(30);
  await until(
    'capsa:cri_request_duration_seconds:p99_5m{method="ListContainers"}',
    (r) => r.length === 1 && num(r[0]) > 0,
  );
  // The failed pull is an error of PullImage, as the error ratio counts it.
  await until(
    'capsa_cri_requests_total{method="PullImage",code="NOT_FOUND"}',
    (r) => r.length === 1 && num(r[0]) === 1,
  );

  // Pulls: the bytes the registry sent, one successful pull timed, one failure.
  const layerBytes = await blobBytes('capsa-test/busybox', 'latest');
  const bytes = await until('capsa_image_pull_bytes_total', (r) => r.length === 1 && num(r[0]) > 0);
  expect(num(bytes[0])).toBe(layerBytes);
  const pulls = await until('capsa_image_pull_duration_seconds_count', (r) => r.length === 1 && num(r[0]) === 1);
  expect(pulls).toHaveLength(1);
  expect(num((await query('capsa_image_pull_duration_seconds_sum'))[0])).toBeGreaterThan(0);
  await until('capsa_image_pulls_total{result="failure"}', (r) => r.length === 1 && num(r[0]) === 1);
  await until('capsa_containers_oom_killed_total', (r) => r.length === 1 && num(r[0]) === 1);
  const free = await until('capsa:imagefs_available:ratio', (r) => r.length === 1);
  expect(num(free[0])).toBeGreaterThan(0);
  expect(num(free[0])).toBeLessThan(1);

  // The rules are loaded and healthy; the failed pull and the OOM kill fire their alerts.
  const rules = await getJson<{ groups: { name: string; rules: { name: string; health: string }[] }[] }>(
    `${promUrl}/api/v1/rules`,
  );
  expect(rules.groups.map((g) => g.name).sort()).toEqual(['capsa.alerts', 'capsa.recording']);
  for (const g of rules.groups) for (const r of g.rules) expect([r.name, r.health]).toEqual([r.name, 'ok']);
  const firing = async (): Promise<string[]> =>
    (await getJson<{ alerts: { labels: { alertname: string }; state: string }[] }>(`${promUrl}/api/v1/alerts`)).alerts
      .filter((a) => a.state === 'firing')
      .map((a) => a.labels.alertname)
      .sort();
  const deadline = Date.now() + 30_000;
  let now = await firing();
  while (
    !(now.includes('CapsaImagePullsFailing') && now.includes('CapsaContainerOOMKilled')) &&
    Date.now() < deadline
  ) {
    await new Promise((r) => setTimeout(r, 500));
    now = await firing();
  }
  // Nothing else: no error ratio over 5% for 10 minutes, no restart, the filesystem not full.
  expect(now).toEqual(['CapsaContainerOOMKilled', 'CapsaImagePullsFailing']);

  await call(d.runtime, 'stopPodSandbox', { podSandboxId: pod }, 30_000);
  await call(d.runtime, 'removePodSandbox', { podSandboxId: pod }, 30_000);
}, 300_000);
