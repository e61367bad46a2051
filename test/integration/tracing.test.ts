// OpenTelemetry tracing through a real daemon and a small OTLP/HTTP receiver
// written here: RunPodSandbox, CreateContainer and StartContainer (and the
// pull before them) each give one trace of their own, rooted at the call's
// span, with the spans of the stages they went through: the state machine's
// stages with their transitions as events, each CNI plugin, the monitor's
// launch and start, the pull and each of its layers. And off means free: the
// numbers (the hook's cost when off, ListContainers with tracing off and on)
// are printed.
import { execFileSync } from 'child_process';
import { randomBytes } from 'crypto';
import { mkdtempSync, promises as fs } from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';
import { defaultCgroupParent } from '../../src/containerizer/isolators/cgroups/paths';
import { traceCall } from '../../src/observability/tracing';
import { rmCgroupTree } from '../helpers/cgroups';
import { TestDaemon, call, createContainer, runp, startDaemon } from '../helpers/daemon';
import { assertNoCapsaLeaks } from '../helpers/leaks';
import { TestRegistry, ensureTestImages, startRegistry } from '../helpers/registry';

const IMAGE = 'registry.example.test/capsa-test/busybox:latest';

interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  boolValue?: boolean;
  doubleValue?: number;
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: { key: string; value: OtlpValue }[];
  events?: { name: string; attributes?: { key: string; value: OtlpValue }[] }[];
  status?: { code?: number };
}

/** An OTLP/HTTP traces receiver (JSON encoding, what @opentelemetry/exporter-trace-otlp-http sends). */
class Receiver {
  readonly spans: OtlpSpan[] = [];
  readonly contentTypes = new Set<string>();
  private server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      this.contentTypes.add(String(req.headers['content-type']));
      if (req.method !== 'POST' || req.url !== '/v1/traces') {
        res.writeHead(404).end();
        return;
      }
      const doc = JSON.parse(body) as {
        resourceSpans: {
          resource: { attributes: { key: string; value: OtlpValue }[] };
          scopeSpans: { spans: OtlpSpan[] }[];
        }[];
      };
      for (const rs of doc.resourceSpans) {
        this.resources.push(attrs(rs.resource.attributes));
        for (const ss of rs.scopeSpans) this.spans.push(...ss.spans);
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  readonly resources: Record<string, unknown>[] = [];
  url = '';

  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as { port: number }).port}/v1/traces`;
  }

  stop(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
}

function attrs(list: { key: string; value: OtlpValue }[] = []): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const { key, value } of list) {
    out[key] =
      value.stringValue ??
      (value.intValue !== undefined ? Number(value.intValue) : undefined) ??
      value.boolValue ??
      value.doubleValue;
  }
  return out;
}

const tag = randomBytes(3).toString('hex');
const bridge = `capsa-o${tag}`;

/** A 10.x /24 no route on this machine touches (as the CNI suite picks one). */
function freeSubnet(): string {
  const routes = execFileSync('ip', ['-4', 'route', 'show', 'table', 'all'], { encoding: 'utf8' });
  for (let i = 0; i < 100; i++) {
    const b = randomBytes(2);
    const s = `10.${200 + (b[0] % 50)}.${b[1]}.0/24`;
    if (!routes.includes(`${s.slice(0, s.lastIndexOf('.'))}.`)) return s;
  }
  throw new Error('no free 10.x subnet');
}

let reg: TestRegistry;
let receiver: Receiver;
let traced: TestDaemon | undefined;
let plain: TestDaemon | undefined;
let cniDir: string;

beforeAll(async () => {
  const images = await ensureTestImages();
  reg = await startRegistry();
  await reg.push(images.busybox.layout, 'capsa-test/busybox:latest');
  receiver = new Receiver();
  await receiver.start();
  cniDir = mkdtempSync(path.join(os.tmpdir(), 'capsa-trace-cni-'));
  await fs.writeFile(
    path.join(cniDir, '10-trace.conflist'),
    JSON.stringify({
      cniVersion: '1.0.0',
      name: 'capsa-trace',
      plugins: [
        {
          type: 'bridge',
          bridge,
          isGateway: true,
          ipam: { type: 'host-local', ranges: [[{ subnet: freeSubnet() }]], dataDir: path.join(cniDir, 'ipam') },
        },
        { type: 'loopback' },
      ],
    }),
  );
}, 600_000);

afterAll(async () => {
  try {
    for (const d of [traced, plain]) {
      if (!d) continue;
      await d.stop();
      await assertNoCapsaLeaks([d.dir], { cgroupParents: [defaultCgroupParent('cgroupfs', d.root)] });
      await rmCgroupTree(defaultCgroupParent('cgroupfs', d.root));
    }
  } finally {
    await traced?.cleanup();
    await plain?.cleanup();
    await reg?.stop();
    await receiver?.stop();
    try {
      execFileSync('ip', ['link', 'del', bridge], { stdio: 'ignore' });
    } catch {
      // not made, or gone with its last veth
    }
    await fs.rm(cniDir, { recursive: true, force: true });
  }
}, 120_000);

test('one trace per call, with the stages, the CNI plugins, the monitor and the pull layers as spans', async () => {
  traced = await startDaemon({
    toml: `[registries."registry.example.test"]\nmirrors = ["${reg.url}"]\n`,
    args: ['--tracing-endpoint', receiver.url, '--cni-conf-dir', cniDir],
  });
  const d = traced;
  expect(d.output()).toMatch(/tracing: exporting spans over OTLP\/HTTP/);
  await call(d.image, 'pullImage', { image: { image: IMAGE } }, 120_000);
  const uid = `trace-${process.pid}`;
  const podCfg = {
    metadata: { name: 'tpod', uid, namespace: 'tns', attempt: 0 },
    hostname: 'tpod',
    logDirectory: path.join(d.dir, 'logs', uid),
    linux: {},
  };
  const pod = await runp(d, podCfg);
  const ctr = await createContainer(d, pod, podCfg, {
    metadata: { name: 'c', attempt: 0 },
    image: { image: IMAGE },
    command: ['sleep', '300'],
    logPath: 'c.log',
    linux: {},
  });
  await call(d.runtime, 'startContainer', { containerId: ctr });
  await call(d.runtime, 'stopPodSandbox', { podSandboxId: pod }, 30_000);
  await call(d.runtime, 'removePodSandbox', { podSandboxId: pod }, 30_000);
  // Shutdown exports what is left.
  expect(await d.stop()).toBe(0);

  expect([...receiver.contentTypes]).toEqual(['application/json']);
  expect(receiver.resources[0]).toMatchObject({ 'service.name': 'capsa', 'service.version': expect.any(String) });
  const byTrace = new Map<string, OtlpSpan[]>();
  for (const s of receiver.spans) byTrace.set(s.traceId, [...(byTrace.get(s.traceId) ?? []), s]);
  const rootOf = (name: string): OtlpSpan[] => receiver.spans.filter((s) => s.name === name && !s.parentSpanId);

  /** The one trace of a call: its root span and the names of all spans under it. */
  const traceOf = (
    method: string,
    service = 'RuntimeService',
  ): { root: OtlpSpan; spans: OtlpSpan[]; names: string[] } => {
    const roots = rootOf(`runtime.v1.${service}/${method}`);
    expect(roots).toHaveLength(1);
    const spans = byTrace.get(roots[0].traceId)!;
    // Every span of the trace hangs under the root.
    const ids = new Set(spans.map((s) => s.spanId));
    for (const s of spans) if (s !== roots[0]) expect(ids.has(s.parentSpanId!)).toBe(true);
    expect(attrs(roots[0].attributes)).toMatchObject({
      'rpc.system': 'grpc',
      'rpc.service': `runtime.v1.${service}`,
      'rpc.method': method,
      'rpc.grpc.status_code': 0,
    });
    expect(roots[0].kind).toBe(2); // SPAN_KIND_SERVER
    return { root: roots[0], spans, names: spans.map((s) => s.name).sort() };
  };

  const run = traceOf('RunPodSandbox');
  expect(attrs(run.root.attributes).name).toBe('tpod');
  expect(run.names).toEqual(
    expect.arrayContaining(['sandbox PREPARING', 'sandbox ISOLATING', 'cni bridge ADD', 'cni loopback ADD']),
  );
  const isolating = run.spans.find((s) => s.name === 'sandbox ISOLATING')!;
  expect(attrs(isolating.attributes)['capsa.sandbox_id']).toBe(pod);
  // Each CNI plugin under the stage that attaches the network, with its exit code.
  const cni = run.spans.filter((s) => s.name.startsWith('cni '));
  for (const s of cni) expect(attrs(s.attributes)).toMatchObject({ 'cni.command': 'ADD', 'cni.exit_code': 0 });
  // The state changes are events on the spans they happened in.
  const transitions = run.spans.flatMap((s) => (s.events ?? []).filter((e) => e.name === 'transition'));
  expect(transitions.map((e) => attrs(e.attributes).to)).toEqual(expect.arrayContaining(['ISOLATING']));

  const create = traceOf('CreateContainer');
  expect(create.names).toEqual(
    expect.arrayContaining(['container PREPARING', 'container ISOLATING', 'monitor launch']),
  );
  const start = traceOf('StartContainer');
  expect(start.names).toEqual(expect.arrayContaining(['monitor start']));
  expect(attrs(start.root.attributes).containerId).toBe(ctr);

  const pull = traceOf('PullImage', 'ImageService');
  const layers = (await reg
    .fetch(`/v2/capsa-test/busybox/manifests/latest`, {
      headers: {
        accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json',
      },
    })
    .then((r) => r.json())) as { layers: { digest: string }[]; config: { digest: string } };
  expect(pull.names.filter((n) => n === 'pull')).toHaveLength(1);
  const downloads = pull.spans
    .filter((s) => s.name === 'pull download')
    .map((s) => attrs(s.attributes)['capsa.blob.digest']);
  expect(downloads.sort()).toEqual([layers.config.digest, ...layers.layers.map((l) => l.digest)].sort());
  const unpacked = pull.spans
    .filter((s) => s.name === 'pull unpack layer')
    .map((s) => attrs(s.attributes)['capsa.blob.digest']);
  expect(unpacked.sort()).toEqual(layers.layers.map((l) => l.digest).sort());

  // The three calls are three traces (and none is inside another).
  const traces = new Set([run.root.traceId, create.root.traceId, start.root.traceId, pull.root.traceId]);
  expect(traces.size).toBe(4);
}, 300_000);

/** Latencies of `n` sequential ListContainers calls, in µs. */
async function listLatenciesUs(d: TestDaemon, n: number): Promise<number[]> {
  const us: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    await call(d.runtime, 'listContainers', {});
    us.push(Number(process.hrtime.bigint() - t) / 1e3);
  }
  return us;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

test('off is free: the hook costs nanoseconds; ListContainers with tracing off and on (printed)', async () => {
  // The hook itself, tracing off in this process: traceCall around a resolved promise vs the bare
  // call, closures made once (as instrument.ts checks tracingEnabled() before making any). Rounds
  // interleaved, best of each kept: the machine is shared.
  const N = 100_000;
  const fn = (): Promise<number> => Promise.resolve(1);
  const attrs = (): Record<string, string> => ({});
  const status = (): number => 2;
  const viaHook = (): Promise<number> => traceCall('s', 'M', attrs, fn, status);
  const bench = async (f: () => Promise<number>): Promise<number> => {
    const t = process.hrtime.bigint();
    for (let i = 0; i < N; i++) await f();
    return Number(process.hrtime.bigint() - t) / N;
  };
  let bare = Infinity;
  let hooked = Infinity;
  for (let r = 0; r < 7; r++) {
    bare = Math.min(bare, await bench(fn));
    hooked = Math.min(hooked, await bench(viaHook));
  }

  // Two daemons side by side, tracing off and on (exporting a span per call to the receiver),
  // measured in alternating rounds so both see the same load.
  plain = await startDaemon({});
  const on = await startDaemon({ args: ['--tracing-endpoint', receiver.url] });
  const off: number[] = [];
  const onUs: number[] = [];
  try {
    await listLatenciesUs(plain, 30);
    await listLatenciesUs(on, 30);
    for (let r = 0; r < 5; r++) {
      off.push(...(await listLatenciesUs(plain, 100)));
      onUs.push(...(await listLatenciesUs(on, 100)));
    }
  } finally {
    await on.stop();
    await on.cleanup();
  }
  console.log(
    `tracing cost: the hook with tracing off ${(hooked - bare).toFixed(1)} ns per call (await of a resolved promise ${bare.toFixed(1)} ns, through traceCall ${hooked.toFixed(1)} ns); ` +
      `ListContainers over the socket, median of 500: tracing off ${median(off).toFixed(0)} µs, tracing on ${median(onUs).toFixed(0)} µs`,
  );
  // Off: a few nanoseconds, against calls of hundreds of microseconds.
  expect(hooked - bare).toBeLessThan(500);
  expect(median(off)).toBeGreaterThan(0);
}, 300_000);
