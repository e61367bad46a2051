// Torture: the daemon is killed with SIGKILL at random moments while
// several clients drive pods, containers, exec and pulls through the real
// socket; after each restart on the same root and state the invariants must
// hold (the daemon starts, List* answers, every pod and container is in a
// consistent state), and at the end a stop + remove of everything (twice)
// leaves nothing behind: no capsa- cgroups, mounts, ns files, monitors,
// pause processes, netns, veths, iptables rules, host-local IPs; the image
// store stays usable.
//
// Seeded: CAPSA_TORTURE_SEED=<n> replays a run (the seed is printed).
// Half of the pods use CNI (a private bridge, a 10.x /24 no route uses, a
// host-local data dir in the test's temp dir), the other half host network.
import { execFileSync } from 'child_process';
import { randomBytes } from 'crypto';
import { existsSync, mkdtempSync, promises as fs, readdirSync, readFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { defaultCgroupParent } from '../../src/containerizer/isolators/cgroups/paths';
import { ContainerState, PodSandboxState } from '../../src/gen/runtime/v1/api';
import { TestDaemon, call, startDaemon, waitForExit } from '../helpers/daemon';
import { assertNoCapsaLeaks } from '../helpers/leaks';
import { TestRegistry, ensureTestImages, startRegistry } from '../helpers/registry';

const IMAGE = 'registry.example.test/capsa-test/busybox:latest';
const IMAGE2 = 'registry.example.test/capsa-test/busybox:other';
const PLUGIN_DIR = '/usr/lib/cni';
const NET_NAME = 'capsa-torture';
const ROUNDS = Number(process.env.CAPSA_TORTURE_ROUNDS ?? 12);
const WORKERS = 4;
const isRoot = process.getuid?.() === 0;
const havePlugins = ((): boolean => {
  try {
    const have = readdirSync(PLUGIN_DIR);
    return ['bridge', 'host-local', 'portmap', 'loopback'].every((p) => have.includes(p));
  } catch {
    return false;
  }
})();
const suite = isRoot && havePlugins ? describe : describe.skip;

/** mulberry32: small, seedable, good enough for choosing moments. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}
function trySh(cmd: string, args: string[]): string | undefined {
  try {
    return sh(cmd, args);
  } catch {
    return undefined;
  }
}

function freeSubnet(): string {
  const routes = sh('ip', ['-4', 'route', 'show', 'table', 'all']);
  for (let i = 0; i < 100; i++) {
    const b = randomBytes(2);
    const s = `10.${200 + (b[0] % 50)}.${b[1]}.0/24`;
    if (!routes.includes(`${s.slice(0, s.lastIndexOf('.'))}.`)) return s;
  }
  throw new Error('no free 10.x subnet');
}

function alive(pid: number): boolean {
  try {
    return !/\) [ZX] /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function code(err: unknown): number | undefined {
  return (err as { code?: number }).code;
}

const GRPC_INTERNAL = 13;
const GRPC_UNKNOWN = 2;

interface PodInfo {
  namespaces?: Record<string, string | undefined>;
  network?: { ips: string[] };
  config?: { linux?: { securityContext?: { namespaceOptions?: { network?: number | string } } } };
}
interface CtrInfo {
  pid: number;
  sandboxID: string;
  cgroupPath: string;
  monitor: { pid: number; startTime: number };
}

suite('torture: kill -9 under load', () => {
  const seed = Number(process.env.CAPSA_TORTURE_SEED ?? Date.now() % 2 ** 31);
  const rand = prng(seed);
  const tag = randomBytes(3).toString('hex');
  const bridge = `capsa-x${tag}`;
  const subnet = freeSubnet();
  let reg: TestRegistry;
  let dir: string;
  let dataDir: string;
  let toml: string;
  let d: TestDaemon | undefined;
  const podIds = new Set<string>();
  const problems: string[] = [];

  const pick = <T>(xs: T[]): T | undefined => (xs.length === 0 ? undefined : xs[Math.floor(rand() * xs.length)]);

  const start = async (): Promise<TestDaemon> =>
    startDaemon({ dir, toml, args: ['--cni-bin-dirs', PLUGIN_DIR], timeoutMs: 90_000 });

  const kill9 = async (): Promise<void> => {
    if (!d) return;
    d.runtime.close();
    d.image.close();
    d.proc.kill('SIGKILL');
    await waitForExit(d.proc);
  };

  const allocated = (): string[] => {
    try {
      return readdirSync(path.join(dataDir, NET_NAME)).filter((f) => f !== 'lock' && !f.startsWith('last_reserved_ip'));
    } catch {
      return [];
    }
  };

  beforeAll(async () => {
    console.log(`torture seed ${seed} (CAPSA_TORTURE_SEED=${seed} replays it)`);
    const images = await ensureTestImages();
    reg = await startRegistry();
    await reg.push(images.busybox.layout, 'capsa-test/busybox:latest');
    await reg.push(images.busybox.layout, 'capsa-test/busybox:other');
    dir = mkdtempSync(path.join(os.tmpdir(), 'capsa-torture-'));
    dataDir = path.join(dir, 'ipam');
    await fs.mkdir(path.join(dir, 'cni'));
    await fs.writeFile(
      path.join(dir, 'cni', '10-torture.conflist'),
      JSON.stringify({
        cniVersion: '1.0.0',
        name: NET_NAME,
        plugins: [
          {
            type: 'bridge',
            bridge,
            isGateway: true,
            ipMasq: true,
            ipam: { type: 'host-local', ranges: [[{ subnet }]], routes: [{ dst: '0.0.0.0/0' }], dataDir },
          },
          { type: 'portmap', capabilities: { portMappings: true } },
          { type: 'loopback' },
        ],
      }),
    );
    toml = `[registries."registry.example.test"]\nmirrors = ["${reg.url}"]\n`;
    d = await start();
    await call(d.image, 'pullImage', { image: { image: IMAGE } }, 120_000);
  }, 300_000);

  afterAll(async () => {
    // Whatever a failure left: ask the daemon, then remove by hand.
    if (d && d.proc.exitCode === null && d.proc.signalCode === null) {
      const pods = await call<{ items: { id: string }[] }>(d.runtime, 'listPodSandbox', {}).catch(() => ({
        items: [],
      }));
      for (const p of pods.items) {
        await call(d.runtime, 'stopPodSandbox', { podSandboxId: p.id }, 60_000).catch(() => undefined);
        await call(d.runtime, 'removePodSandbox', { podSandboxId: p.id }, 60_000).catch(() => undefined);
      }
      await d.stop().catch(() => undefined);
    }
    await d?.cleanup();
    for (const line of (trySh('iptables-save', []) ?? '').split('\n')) {
      if (![...podIds].some((id) => line.includes(id))) continue;
      const m = /^-A (\S+) (.*)$/.exec(line);
      if (m) trySh('iptables', ['-t', 'nat', '-D', m[1], ...m[2].split(' ')]);
    }
    trySh('ip', ['link', 'del', bridge]);
    for (const id of podIds) trySh('ip', ['netns', 'del', `capsa-${id}-cnidel`]);
    if (dir) {
      const parent = defaultCgroupParent('cgroupfs', path.join(dir, 'root'));
      for (const c of [
        'cpu',
        'cpuacct',
        'cpuset',
        'memory',
        'pids',
        'devices',
        'freezer',
        'blkio',
        'net_cls',
        'perf_event',
      ]) {
        await fs.rmdir(path.join('/sys/fs/cgroup', c, parent)).catch(() => undefined);
      }
    }
    await reg?.stop();
  }, 180_000);

  // ------------------------------------------------------------------ load

  let seq = 0;
  const podConfig = (cni: boolean): Record<string, unknown> => {
    seq++;
    return {
      metadata: { name: `t${seq}`, uid: `uid-${tag}-${seq}`, namespace: 'capsa-torture', attempt: 0 },
      hostname: `t${seq}`,
      logDirectory: path.join(dir, 'logs', `uid-${tag}-${seq}`),
      labels: { torture: tag },
      linux: { securityContext: { namespaceOptions: { network: cni ? 0 : 2 } } },
    };
  };
  const podCfgs = new Map<string, Record<string, unknown>>();

  /** One client: random operations until `stop()` says so. */
  /** Containers the clients know of (refreshed from ListContainers after each restart). */
  const known = { ctrs: [] as string[] };

  async function worker(dd: TestDaemon, n: number, stopped: () => boolean): Promise<void> {
    while (!stopped()) {
      const r = rand();
      const method = ((): string => {
        if (r < 0.14) return 'runPodSandbox';
        if (r < 0.36) return 'createContainer';
        if (r < 0.5) return 'startContainer';
        if (r < 0.6) return 'execSync';
        if (r < 0.68) return 'stopContainer';
        if (r < 0.76) return 'removeContainer';
        if (r < 0.82) return 'stopPodSandbox';
        if (r < 0.87) return 'removePodSandbox';
        if (r < 0.93) return 'pullImage';
        if (r < 0.96) return 'removeImage';
        return 'list';
      })();
      const pods = [...podCfgs.keys()];
      try {
        switch (method) {
          case 'runPodSandbox': {
            const cfg = podConfig(rand() < 0.5);
            const res = await call<{ podSandboxId: string }>(dd.runtime, method, { config: cfg }, 60_000);
            podIds.add(res.podSandboxId);
            podCfgs.set(res.podSandboxId, cfg);
            break;
          }
          case 'createContainer': {
            const pod = pick(pods);
            if (!pod) break;
            const exiting = rand() < 0.25;
            const name = `c${n}-${seq++}`;
            const res = await call<{ containerId: string }>(
              dd.runtime,
              method,
              {
                podSandboxId: pod,
                sandboxConfig: podCfgs.get(pod),
                config: {
                  metadata: { name, attempt: 0 },
                  image: { image: rand() < 0.8 ? IMAGE : IMAGE2 },
                  command: exiting ? ['sh', '-c', `sleep 0.${Math.floor(rand() * 9)}; exit 3`] : ['sleep', '1000'],
                  logPath: `${name}.log`,
                  linux: {},
                },
              },
              60_000,
            );
            known.ctrs.push(res.containerId);
            break;
          }
          case 'startContainer':
          case 'stopContainer':
          case 'removeContainer':
          case 'execSync': {
            const id = pick(known.ctrs);
            if (!id) break;
            const req =
              method === 'execSync'
                ? { containerId: id, cmd: ['echo', 'hi'], timeout: 5n }
                : method === 'stopContainer'
                  ? { containerId: id, timeout: BigInt(Math.floor(rand() * 2)) }
                  : { containerId: id };
            await call(dd.runtime, method, req, 60_000);
            if (method === 'removeContainer') known.ctrs = known.ctrs.filter((c) => c !== id);
            break;
          }
          case 'stopPodSandbox':
          case 'removePodSandbox': {
            const pod = pick(pods);
            if (!pod) break;
            await call(dd.runtime, method, { podSandboxId: pod }, 60_000);
            if (method === 'removePodSandbox') podCfgs.delete(pod);
            break;
          }
          case 'pullImage':
            await call(dd.image, method, { image: { image: rand() < 0.5 ? IMAGE : IMAGE2 } }, 60_000);
            break;
          case 'removeImage':
            await call(dd.image, method, { image: { image: IMAGE2 } }, 60_000);
            break;
          default:
            await call(dd.runtime, 'listPodSandbox', {});
            await call(dd.runtime, 'listContainers', {});
        }
      } catch (err) {
        // Expected under load: NotFound, FailedPrecondition, … and anything once the daemon is killed.
        if (!stopped() && (code(err) === GRPC_INTERNAL || code(err) === GRPC_UNKNOWN)) {
          problems.push(`${method}: ${(err as Error).message}`);
        }
      }
      if (rand() < 0.3) await sleep(Math.floor(rand() * 50));
    }
  }

  // ------------------------------------------------------------------ checks

  async function checkInvariants(dd: TestDaemon, round: number): Promise<void> {
    const pods = (await call<{ items: { id: string; state: number }[] }>(dd.runtime, 'listPodSandbox', {})).items;
    const ctrs = (
      await call<{ containers: { id: string; podSandboxId: string; state: number }[] }>(
        dd.runtime,
        'listContainers',
        {},
      )
    ).containers;
    const podIdsNow = new Set(pods.map((p) => p.id));
    const bad = (m: string): void => {
      problems.push(`round ${round}: ${m}`);
    };
    const readyPods = new Set<string>();
    for (const p of pods) {
      const st = await call<{ status: { state: number; network?: { ip: string } }; info: { info: string } }>(
        dd.runtime,
        'podSandboxStatus',
        { podSandboxId: p.id, verbose: true },
      );
      const info = JSON.parse(st.info.info) as PodInfo;
      if (st.status.state !== p.state) bad(`pod ${p.id}: list says ${p.state}, status ${st.status.state}`);
      if (st.status.state === PodSandboxState.SANDBOX_READY) {
        readyPods.add(p.id);
        for (const [k, f] of Object.entries(info.namespaces ?? {})) {
          if (f && !existsSync(f)) bad(`READY pod ${p.id}: ns file ${k} ${f} missing`);
        }
        const netMode = info.config?.linux?.securityContext?.namespaceOptions?.network;
        const hostNet = netMode === 2 || netMode === 'NODE';
        if (!hostNet && !st.status.network?.ip) bad(`READY CNI pod ${p.id} has no IP`);
      }
    }
    for (const c of ctrs) {
      if (!podIdsNow.has(c.podSandboxId)) bad(`container ${c.id} of a pod not listed (${c.podSandboxId})`);
      const st = await call<{
        status: { state: number; exitCode: number; finishedAt: bigint; reason: string };
        info: { info: string };
      }>(dd.runtime, 'containerStatus', { containerId: c.id, verbose: true });
      // Containers keep running during the checks: a short-lived one may exit between the List
      // and the Status call. That is the only legal difference (state moves RUNNING → EXITED).
      const exitedMeanwhile =
        c.state === ContainerState.CONTAINER_RUNNING && st.status.state === ContainerState.CONTAINER_EXITED;
      if (st.status.state !== c.state && !exitedMeanwhile) {
        bad(`container ${c.id}: list says ${c.state}, status ${st.status.state}`);
      }
      const info = JSON.parse(st.info.info) as CtrInfo;
      if (
        st.status.state === ContainerState.CONTAINER_RUNNING ||
        st.status.state === ContainerState.CONTAINER_CREATED
      ) {
        if (!alive(info.monitor.pid)) bad(`live container ${c.id}: monitor ${info.monitor.pid} is dead`);
        if (!alive(info.pid)) bad(`live container ${c.id}: init ${info.pid} is dead`);
        else {
          const cg = readFileSync(`/proc/${info.pid}/cgroup`, 'utf8');
          if (!cg.includes(info.cgroupPath)) bad(`live container ${c.id}: init ${info.pid} not in ${info.cgroupPath}`);
        }
        if (!readyPods.has(c.podSandboxId)) bad(`live container ${c.id} in a pod that is not READY`);
      }
      if (st.status.state === ContainerState.CONTAINER_EXITED) {
        if (st.status.finishedAt <= 0n || st.status.reason === '') {
          bad(
            `EXITED container ${c.id} without an end: ${JSON.stringify(st.status, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}`,
          );
        }
      }
    }
  }

  async function removeEverything(dd: TestDaemon): Promise<void> {
    const ctrs = (await call<{ containers: { id: string }[] }>(dd.runtime, 'listContainers', {})).containers;
    for (const c of ctrs) await call(dd.runtime, 'stopContainer', { containerId: c.id, timeout: 0n }, 60_000);
    for (const c of ctrs) await call(dd.runtime, 'removeContainer', { containerId: c.id }, 60_000);
    const pods = (await call<{ items: { id: string }[] }>(dd.runtime, 'listPodSandbox', {})).items;
    for (const p of pods) await call(dd.runtime, 'stopPodSandbox', { podSandboxId: p.id }, 60_000);
    for (const p of pods) await call(dd.runtime, 'removePodSandbox', { podSandboxId: p.id }, 60_000);
  }

  test('CreateContainer racing StopPodSandbox: made then stopped, or refused; never INTERNAL, nothing left', async () => {
    const dd = d!;
    for (let i = 0; i < 6; i++) {
      const cfg = podConfig(i % 2 === 0);
      const pod = (await call<{ podSandboxId: string }>(dd.runtime, 'runPodSandbox', { config: cfg }, 60_000))
        .podSandboxId;
      podIds.add(pod);
      const created = call<{ containerId: string }>(
        dd.runtime,
        'createContainer',
        {
          podSandboxId: pod,
          sandboxConfig: cfg,
          config: { metadata: { name: `race${i}` }, image: { image: IMAGE }, command: ['sleep', '100'] },
        },
        60_000,
      ).then(
        (r) => ({ id: r.containerId, err: undefined }),
        (e: unknown) => ({ id: undefined, err: e as Error }),
      );
      await sleep(i * 20);
      await call(dd.runtime, 'stopPodSandbox', { podSandboxId: pod }, 60_000);
      const res = await created;
      if (res.err) {
        expect({ code: code(res.err), message: res.err.message }).toEqual({
          code: 9, // FAILED_PRECONDITION
          message: expect.stringMatching(/not ready/),
        });
      } else {
        // Made before the pod went: the stop included it.
        const st = await call<{ status: { state: number } }>(dd.runtime, 'containerStatus', { containerId: res.id });
        expect(st.status.state).toBe(ContainerState.CONTAINER_EXITED);
      }
      await call(dd.runtime, 'removePodSandbox', { podSandboxId: pod }, 60_000);
      const left = await call<{ containers: unknown[] }>(dd.runtime, 'listContainers', {
        filter: { podSandboxId: pod },
      });
      expect(left.containers).toEqual([]);
    }
    await assertNoCapsaLeaks([dd.dir], { cgroupParents: [defaultCgroupParent('cgroupfs', dd.root)] });
  }, 120_000);

  test('random SIGKILLs under load: every restart is consistent; nothing leaks at the end', async () => {
    const began = Date.now();
    for (let round = 1; round <= ROUNDS; round++) {
      const dd = d!;
      let stop = false;
      const workers = Array.from({ length: WORKERS }, (_x, i) => worker(dd, i, () => stop));
      const loadMs = 500 + Math.floor(rand() * 2500);
      await sleep(loadMs);
      stop = true;
      await kill9();
      await Promise.all(workers);
      d = await start();
      const restartMs = Date.now();
      await checkInvariants(d, round);
      console.log(
        `round ${round}: killed after ${loadMs} ms of load; restart + checks ${Date.now() - restartMs} ms; ` +
          `${podCfgs.size} pods, ${known.ctrs.length} containers; problems so far ${problems.length}`,
      );
      if (Date.now() - began > 110_000) break;
    }
    expect(problems).toEqual([]);

    // Everything goes, twice: the second round must be a no-op that succeeds.
    await removeEverything(d!);
    await removeEverything(d!);
    const ids = [...podIds];
    for (const id of ids) {
      await call(d!.runtime, 'stopPodSandbox', { podSandboxId: id }, 60_000);
      await call(d!.runtime, 'removePodSandbox', { podSandboxId: id }, 60_000);
    }
    expect((await call<{ items: unknown[] }>(d!.runtime, 'listPodSandbox', {})).items).toEqual([]);
    expect((await call<{ containers: unknown[] }>(d!.runtime, 'listContainers', {})).containers).toEqual([]);

    await assertNoCapsaLeaks([d!.dir], { cgroupParents: [defaultCgroupParent('cgroupfs', d!.root)] });
    expect(allocated()).toEqual([]);
    expect((trySh('ip', ['-o', 'link', 'show', 'master', bridge]) ?? '').trim()).toBe('');
    const rules = (trySh('iptables-save', []) ?? '').split('\n').filter((l) => ids.some((id) => l.includes(id)));
    expect(rules).toEqual([]);
    const netns = (trySh('ip', ['netns', 'list']) ?? '').split('\n').filter((l) => ids.some((id) => l.includes(id)));
    expect(netns).toEqual([]);
    expect(
      existsSync(path.join(d!.root, 'images', 'leases')) ? readdirSync(path.join(d!.root, 'images', 'leases')) : [],
    ).toEqual([]);

    // The image store: still listed, pulls again, sane usage.
    const listed = await call<{ images: { repoTags: string[] }[] }>(d!.image, 'listImages', {});
    expect(listed.images.flatMap((i) => i.repoTags)).toContain(IMAGE);
    await call(d!.image, 'pullImage', { image: { image: IMAGE } }, 120_000);
    await call(d!.image, 'pullImage', { image: { image: IMAGE2 } }, 120_000);
    const fsInfo = await call<{
      imageFilesystems: { usedBytes?: { value: bigint }; inodesUsed?: { value: bigint } }[];
    }>(d!.image, 'imageFsInfo', {});
    expect(fsInfo.imageFilesystems[0].usedBytes!.value).toBeGreaterThan(0n);
    expect(fsInfo.imageFilesystems[0].inodesUsed!.value).toBeGreaterThan(0n);
    // A container from the image still works after all that.
    const cfg = podConfig(false);
    const pod = (await call<{ podSandboxId: string }>(d!.runtime, 'runPodSandbox', { config: cfg }, 60_000))
      .podSandboxId;
    podIds.add(pod);
    const ctr = (
      await call<{ containerId: string }>(
        d!.runtime,
        'createContainer',
        {
          podSandboxId: pod,
          sandboxConfig: cfg,
          config: { metadata: { name: 'final' }, image: { image: IMAGE }, command: ['sleep', '100'] },
        },
        60_000,
      )
    ).containerId;
    await call(d!.runtime, 'startContainer', { containerId: ctr }, 60_000);
    const ex = await call<{ stdout: Buffer; exitCode: number }>(d!.runtime, 'execSync', {
      containerId: ctr,
      cmd: ['cat', '/etc/hostname'],
      timeout: 5n,
    });
    expect(ex.exitCode).toBe(0);
    await removeEverything(d!);
    await assertNoCapsaLeaks([d!.dir], { cgroupParents: [defaultCgroupParent('cgroupfs', d!.root)] });
  }, 170_000);
});
