// The gRPC side of hack/bench-lists: one client, one channel, as kubelet
// holds it, against any CRI v1 runtime (capsa or containerd).
//
//   node dist/hack/bench-lists-client.js populate --socket S --pods P --per-pod K
//        --image IMG --cgroup-parent CG --log-dir DIR [--concurrency C] [--tag T]
//   node dist/hack/bench-lists-client.js measure --socket S --calls N [--budget SECONDS]
//   node dist/hack/bench-lists-client.js soak --socket S --pid PID --seconds T
//   node dist/hack/bench-lists-client.js teardown --socket S
//   node dist/hack/bench-lists-client.js pods --sockets NAME=S,NAME=S... --runs N --image IMG
//        --cgroup-parent CG --log-dir DIR [--tag T]
//
// populate: P host-network pods (no CNI: the lists are what is measured),
// each with K running `sleep 3600` containers, C pods at a time.
// measure: N rounds, each calling ListContainers, ListContainerStats,
// ListPodSandboxStats and ListPodSandbox once, in that order, one call at a
// time, answers timed up to their wire bytes (not decoded); prints per method
// "method calls items median p90 p99 max failed" (ms, tab separated), or
// "method unimplemented" / "method failed: why". A round of warm-up calls
// first, each call's time on stderr. --budget (default 120 s): a method whose
// timed calls have taken that long is not called again, so one runtime's
// pathological call (containerd 1.6's ListPodSandboxStats takes ~45 s at a
// thousand containers) cannot hold the run for hours; its row then counts
// fewer calls.
// soak: kubelet's rhythm for T seconds (see soak()); the daemon PID's CPU
// share and RSS besides.
// teardown: stops and removes every pod the runtime has.
// pods: N pod starts per runtime (after one untimed warm-up each), the runtimes
// taking turns (each run in a rotated order): RunPodSandbox (host network),
// CreateContainer and StartContainer of a `sleep 3600` busybox, then three
// ExecSync `echo` in it, then StopPodSandbox + RemovePodSandbox; prints per
// runtime and step "name step calls median p90" (ms; `podStart` is the sum of
// the first three per run, `execSync` all exec calls, `teardown` stop + remove).
import * as grpc from '@grpc/grpc-js';
import { mkdirSync, readFileSync } from 'fs';
import * as api from '../src/gen/runtime/v1/api';

type Args = Record<string, string>;

function parseArgs(argv: string[]): { cmd: string; args: Args } {
  const [cmd, ...rest] = argv;
  const args: Args = {};
  for (let i = 0; i < rest.length; i += 2) {
    if (!rest[i].startsWith('--') || rest[i + 1] === undefined) throw new Error(`bad argument ${rest[i]}`);
    args[rest[i].slice(2)] = rest[i + 1];
  }
  return { cmd: cmd ?? '', args };
}

function need(a: Args, k: string): string {
  const v = a[k];
  if (v === undefined || v === '') throw new Error(`--${k} is required`);
  return v;
}

function num(a: Args, k: string, def?: number): number {
  const v = a[k] === undefined ? def : Number(a[k]);
  if (v === undefined || !Number.isInteger(v) || v < 0) throw new Error(`--${k} wants a number`);
  return v;
}

/** One unary call with a deadline; `req` is partial (the encoders want every field). */
function call<Res>(client: grpc.Client, method: string, req: unknown, timeoutMs = 120_000): Promise<Res> {
  const name = method[0].toUpperCase() + method.slice(1) + 'Request';
  const type = (api as unknown as Record<string, { fromPartial(p: unknown): unknown }>)[name];
  return new Promise((resolve, reject) => {
    const fn = (client as unknown as Record<string, (...a: unknown[]) => void>)[method].bind(client);
    fn(
      type.fromPartial(req ?? {}),
      new grpc.Metadata(),
      { deadline: new Date(Date.now() + timeoutMs) },
      (err: Error | null, res: Res) => (err ? reject(err) : resolve(res)),
    );
  });
}

/** Runs `fn` over `items`, at most `n` at a time. */
async function pool<T>(items: T[], n: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(n, items.length)) }, worker));
}

// NamespaceMode: POD = 0, CONTAINER = 1, NODE = 2.
const NAMESPACES = { network: 2, pid: 1, ipc: 0 };

async function populate(rt: api.RuntimeServiceClient, a: Args): Promise<void> {
  const pods = num(a, 'pods');
  const perPod = num(a, 'per-pod');
  const image = need(a, 'image');
  const tag = a.tag ?? String(process.pid);
  const logDir = need(a, 'log-dir');
  const started = Date.now();
  let done = 0;
  await pool(
    Array.from({ length: pods }, (_, i) => i),
    num(a, 'concurrency', 4),
    async (i) => {
      const uid = `lists-${tag}-${i}`;
      const config = {
        metadata: { name: `lists-${i}`, namespace: 'capsa-bench', uid, attempt: 0 },
        logDirectory: `${logDir}/${uid}`,
        linux: { cgroupParent: need(a, 'cgroup-parent'), securityContext: { namespaceOptions: NAMESPACES } },
      };
      // kubelet makes the pod's log directory before RunPodSandbox.
      mkdirSync(config.logDirectory, { recursive: true });
      const { podSandboxId } = await call<{ podSandboxId: string }>(rt, 'runPodSandbox', { config });
      for (let k = 0; k < perPod; k++) {
        const { containerId } = await call<{ containerId: string }>(rt, 'createContainer', {
          podSandboxId,
          sandboxConfig: config,
          config: {
            metadata: { name: `sleep-${k}`, attempt: 0 },
            image: { image },
            command: ['sleep', '3600'],
            logPath: `sleep-${k}.log`,
            labels: { bench: 'lists' },
            linux: { securityContext: { namespaceOptions: NAMESPACES } },
          },
        });
        await call(rt, 'startContainer', { containerId });
      }
      done++;
      if (done % 10 === 0 || done === pods)
        process.stderr.write(`   ${done}/${pods} pods (${done * perPod} containers), ${Date.now() - started} ms\n`);
    },
  );
}

/** The methods timed, their CRI names, and how many items an answer holds. */
const METHODS: [method: string, path: string, items: (b: Buffer) => number][] = [
  ['listContainers', 'ListContainers', (b) => api.ListContainersResponse.decode(b).containers.length],
  ['listContainerStats', 'ListContainerStats', (b) => api.ListContainerStatsResponse.decode(b).stats.length],
  ['listPodSandboxStats', 'ListPodSandboxStats', (b) => api.ListPodSandboxStatsResponse.decode(b).stats.length],
  ['listPodSandbox', 'ListPodSandbox', (b) => api.ListPodSandboxResponse.decode(b).items.length],
];

/**
 * One unary call whose answer stays in its wire bytes: what is timed is the
 * runtime and the transport, not this client decoding a megabyte of
 * protobuf in JavaScript (8 ms for a thousand containers here; kubelet's Go
 * decoder is several times faster).
 */
function callRaw(client: grpc.Client, path: string, timeoutMs = 120_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      `/runtime.v1.RuntimeService/${path}`,
      () => Buffer.alloc(0), // every List request with no filter is the empty message
      (b: Buffer) => b,
      {},
      new grpc.Metadata(),
      { deadline: new Date(Date.now() + timeoutMs) },
      (err, res) => (err ? reject(err) : resolve(res!)),
    );
  });
}

function pct(sorted: number[], p: number): number {
  const k = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[k - 1];
}

async function measure(rt: api.RuntimeServiceClient, a: Args): Promise<void> {
  const calls = num(a, 'calls', 200);
  const budgetMs = num(a, 'budget', 120) * 1000;
  const spent = new Map<string, number>();
  const times = new Map<string, number[]>(METHODS.map(([m]) => [m, []]));
  const items = new Map<string, number>();
  /** Methods the runtime does not serve (UNIMPLEMENTED), or that failed in the warm-up round: why. */
  const missing = new Map<string, string>();
  const failures = new Map<string, number>();
  for (let round = -1; round < calls; round++) {
    for (const [m, rpc, count] of METHODS) {
      if (missing.has(m) || (spent.get(m) ?? 0) >= budgetMs) continue;
      const t0 = process.hrtime.bigint();
      let res: Buffer;
      try {
        res = await callRaw(rt, rpc);
      } catch (err) {
        const e = err as { code?: number; details?: string; message: string };
        if (e.code === grpc.status.UNIMPLEMENTED) missing.set(m, 'unimplemented');
        else if (round < 0) missing.set(m, `failed: ${e.details ?? e.message}`);
        // A timed call that fails is counted, not timed: the run goes on.
        else failures.set(m, (failures.get(m) ?? 0) + 1);
        continue;
      }
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      // Round -1 warms up both sides (connections, JIT, caches a runtime keeps) and counts the items.
      if (round >= 0) {
        times.get(m)!.push(ms);
        spent.set(m, (spent.get(m) ?? 0) + ms);
      } else {
        items.set(m, count(res));
        process.stderr.write(`   warm-up ${rpc}: ${ms.toFixed(1)} ms, ${items.get(m)} items\n`);
      }
    }
  }
  for (const [m] of METHODS) {
    const t = times.get(m)!.sort((x, y) => x - y);
    if (missing.has(m) || t.length === 0) {
      console.log(`${m}\t${missing.get(m) ?? 'failed every time'}`);
      continue;
    }
    const f = (v: number): string => v.toFixed(2);
    const row = [m, t.length, items.get(m), f(pct(t, 50)), f(pct(t, 90)), f(pct(t, 99)), f(t[t.length - 1])];
    console.log([...row, failures.get(m) ?? 0].join('\t'));
  }
}

/** utime + stime of `pid` in ms (/proc/PID/stat fields 14 and 15, in USER_HZ = 100 ticks per second). */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

function rssMiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/**
 * kubelet's shape for `--seconds`: a relist every second (ListPodSandbox,
 * ListContainers) and stats every 10 s (ListPodSandboxStats,
 * ListContainerStats), each on its own timer as kubelet's loops are, over
 * one channel. Prints per method "method calls median p99 max", then the
 * daemon's CPU share (of one core) and RSS (MiB) sampled every 10 s.
 */
async function soak(rt: api.RuntimeServiceClient, a: Args): Promise<void> {
  const pid = num(a, 'pid');
  const end = Date.now() + num(a, 'seconds') * 1000;
  const times = new Map<string, number[]>();
  const timed = async (path: string): Promise<void> => {
    const t0 = process.hrtime.bigint();
    try {
      await callRaw(rt, path);
    } catch (err) {
      if ((err as { code?: number }).code === grpc.status.UNIMPLEMENTED) return;
      throw err;
    }
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    times.set(path, [...(times.get(path) ?? []), ms]);
  };
  const loop = async (everyMs: number, paths: string[]): Promise<void> => {
    for (let next = Date.now(); next < end; next += everyMs) {
      await sleep(next - Date.now());
      for (const p of paths) await timed(p);
    }
  };
  const cpu: number[] = [];
  const rss: number[] = [];
  const sample = async (): Promise<void> => {
    let last = { at: Date.now(), cpu: cpuMs(pid) };
    while (Date.now() + 10_000 <= end) {
      await sleep(10_000);
      const now = { at: Date.now(), cpu: cpuMs(pid) };
      cpu.push((100 * (now.cpu - last.cpu)) / (now.at - last.at));
      rss.push(rssMiB(pid));
      last = now;
    }
  };
  await Promise.all([
    loop(1000, ['ListPodSandbox', 'ListContainers']),
    loop(10_000, ['ListPodSandboxStats', 'ListContainerStats']),
    sample(),
  ]);
  const f = (v: number): string => v.toFixed(2);
  for (const [path, t] of times) {
    t.sort((x, y) => x - y);
    console.log([path, t.length, f(pct(t, 50)), f(pct(t, 99)), f(t[t.length - 1])].join('\t'));
  }
  const sorted = (v: number[]): number[] => [...v].sort((x, y) => x - y);
  if (cpu.length > 0) {
    console.log(['cpu%', cpu.length, f(pct(sorted(cpu), 50)), f(pct(sorted(cpu), 99)), f(Math.max(...cpu))].join('\t'));
    console.log(['rssMiB', rss.length, f(pct(sorted(rss), 50)), f(rss[0]), f(rss[rss.length - 1])].join('\t'));
  }
}

/**
 * Pod starts on several runtimes, interleaved: run i goes through the
 * runtimes in an order rotated by i, so the machine's noise falls on all of
 * them alike. `sockets` is "name=path,name=path".
 */
async function podStarts(a: Args): Promise<void> {
  const runs = num(a, 'runs', 20);
  const image = need(a, 'image');
  const tag = a.tag ?? String(process.pid);
  const rts = need(a, 'sockets')
    .split(',')
    .map((kv) => {
      const [name, sock] = kv.split('=');
      return { name, rt: client(sock) };
    });
  const steps = ['runPodSandbox', 'createContainer', 'startContainer', 'podStart', 'execSync', 'teardown'];
  const times = new Map<string, number[]>();
  const timed = async <T>(key: string, warm: boolean, fn: () => Promise<T>): Promise<[T, number]> => {
    const t0 = process.hrtime.bigint();
    const r = await fn();
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (!warm) times.set(key, [...(times.get(key) ?? []), ms]);
    return [r, ms];
  };
  const one = async (name: string, rt: api.RuntimeServiceClient, i: number): Promise<void> => {
    const warm = i < 0;
    const uid = `pods-${tag}-${name}-${i + 1}`;
    const config = {
      metadata: { name: `pods-${i + 1}`, namespace: 'capsa-bench', uid, attempt: 0 },
      logDirectory: `${need(a, 'log-dir')}/${uid}`,
      linux: { cgroupParent: need(a, 'cgroup-parent'), securityContext: { namespaceOptions: NAMESPACES } },
    };
    mkdirSync(config.logDirectory, { recursive: true });
    const [{ podSandboxId }, t1] = await timed(`${name}\trunPodSandbox`, warm, () =>
      call<{ podSandboxId: string }>(rt, 'runPodSandbox', { config }),
    );
    const [{ containerId }, t2] = await timed(`${name}\tcreateContainer`, warm, () =>
      call<{ containerId: string }>(rt, 'createContainer', {
        podSandboxId,
        sandboxConfig: config,
        config: {
          metadata: { name: 'sleep', attempt: 0 },
          image: { image },
          command: ['sleep', '3600'],
          logPath: 'sleep.log',
          linux: { securityContext: { namespaceOptions: NAMESPACES } },
        },
      }),
    );
    const [, t3] = await timed(`${name}\tstartContainer`, warm, () => call(rt, 'startContainer', { containerId }));
    if (!warm) times.set(`${name}\tpodStart`, [...(times.get(`${name}\tpodStart`) ?? []), t1 + t2 + t3]);
    for (let k = 0; k < 3; k++) {
      const [r] = await timed(`${name}\texecSync`, warm, () =>
        call<{ exitCode: number; stdout: Buffer }>(rt, 'execSync', { containerId, cmd: ['echo', 'hi'], timeout: 10n }),
      );
      if (r.exitCode !== 0 || r.stdout.toString() !== 'hi\n') throw new Error(`${name}: exec exit ${r.exitCode}`);
    }
    await timed(`${name}\tteardown`, warm, async () => {
      await call(rt, 'stopPodSandbox', { podSandboxId });
      await call(rt, 'removePodSandbox', { podSandboxId });
    });
  };
  try {
    for (let i = -1; i < runs; i++) {
      const k = Math.max(0, i) % rts.length;
      for (const { name, rt } of [...rts.slice(k), ...rts.slice(0, k)]) await one(name, rt, i);
    }
  } finally {
    for (const { rt } of rts) rt.close();
  }
  for (const { name } of rts) {
    for (const step of steps) {
      const t = (times.get(`${name}\t${step}`) ?? []).sort((x, y) => x - y);
      console.log([name, step, t.length, pct(t, 50).toFixed(2), pct(t, 90).toFixed(2)].join('\t'));
    }
  }
}

async function teardown(rt: api.RuntimeServiceClient, a: Args): Promise<void> {
  const { items } = await call<{ items: { id: string }[] }>(rt, 'listPodSandbox', {});
  await pool(items, num(a, 'concurrency', 4), async (p) => {
    await call(rt, 'stopPodSandbox', { podSandboxId: p.id });
    await call(rt, 'removePodSandbox', { podSandboxId: p.id });
  });
}

function client(socket: string): api.RuntimeServiceClient {
  return new api.RuntimeServiceClient(`unix://${socket}`, grpc.credentials.createInsecure(), {
    // A thousand containers' stats are a few MB.
    'grpc.max_receive_message_length': 64 << 20,
  });
}

async function main(): Promise<void> {
  const { cmd, args } = parseArgs(process.argv.slice(2));
  if (cmd === 'pods') return podStarts(args);
  const rt = client(need(args, 'socket'));
  try {
    if (cmd === 'populate') await populate(rt, args);
    else if (cmd === 'measure') await measure(rt, args);
    else if (cmd === 'soak') await soak(rt, args);
    else if (cmd === 'teardown') await teardown(rt, args);
    else throw new Error(`unknown command ${cmd} (populate, measure, soak, teardown, pods)`);
  } finally {
    rt.close();
  }
}

main().catch((err: unknown) => {
  console.error(`bench-lists-client: ${(err as Error).message}`);
  process.exit(1);
});
