// CNI networking with Debian's real plugins (bridge, host-local, portmap,
// bandwidth, loopback), as root. Everything lives in objects this test
// creates and removes: network namespaces `capsa-test-<rand>-<n>`, a bridge
// `capsa-t<rand>`, a 10.x /24 no route on this machine uses, a temp conf dir
// and host-local data dir. Network targets are only the test's own netns
// addresses and 127.0.0.1.
import { ChildProcess, execFileSync, spawn } from 'child_process';
import { randomBytes } from 'crypto';
import { mkdtempSync, promises as fs, readdirSync } from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { CapsaError } from '../../src/errors';
import { networkReadiness } from '../../src/network/cni-status';
import { CniPluginError } from '../../src/network/cni/invoke';
import { CniNetwork, NetworkTiming } from '../../src/network/cni/network';
import { ensureDefaultNetworkConfig } from '../../src/network/cni/default-config';
import { FileNetworkStateStore } from '../../src/network/cni/state';
import { defaultCgroupParent } from '../../src/containerizer/isolators/cgroups/paths';
import { TestDaemon, call, startDaemon, waitForExit } from '../helpers/daemon';

const PLUGIN_DIR = '/usr/lib/cni';
const isRoot = process.getuid?.() === 0;
const havePlugins = ((): boolean => {
  try {
    const have = readdirSync(PLUGIN_DIR);
    return ['bridge', 'host-local', 'portmap', 'loopback', 'bandwidth'].every((p) => have.includes(p));
  } catch {
    return false;
  }
})();
const suite = isRoot && havePlugins ? describe : describe.skip;

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

const tag = randomBytes(3).toString('hex');
const bridge = `capsa-t${tag}`;
const bridge2 = `capsa-u${tag}`;

/** A 10.x /24 that no route on this machine touches. */
function freeSubnet(avoid: string[] = []): string {
  const routes = sh('ip', ['-4', 'route', 'show', 'table', 'all']);
  for (let i = 0; i < 100; i++) {
    const b = randomBytes(2);
    const s = `10.${200 + (b[0] % 50)}.${b[1]}.0/24`;
    const prefix = s.slice(0, s.lastIndexOf('.'));
    if (!routes.includes(`${prefix}.`) && !avoid.includes(s)) return s;
  }
  throw new Error('no free 10.x subnet');
}

function newId(): string {
  return randomBytes(32).toString('hex');
}

suite('CNI with the real plugins', () => {
  const subnet = freeSubnet();
  const subnet2 = freeSubnet([subnet]);
  const prefix = subnet.slice(0, subnet.lastIndexOf('.') + 1);
  let dir: string;
  let confDir: string;
  let dataDir: string;
  let network: CniNetwork;
  const timings: NetworkTiming[] = [];
  const namespaces = new Set<string>();
  const ids = new Set<string>();
  const children = new Set<ChildProcess>();
  let nsCount = 0;
  let linksBefore: string[] = [];

  const links = (): string[] =>
    sh('ip', ['-o', 'link', 'show'])
      .split('\n')
      .filter((l) => l)
      .map((l) => l.split(':')[1].trim().split('@')[0]);

  const addNetns = (): { name: string; path: string } => {
    const name = `capsa-test-${tag}-${nsCount++}`;
    sh('ip', ['netns', 'add', name]);
    namespaces.add(name);
    return { name, path: `/run/netns/${name}` };
  };
  const delNetns = (name: string): void => {
    trySh('ip', ['netns', 'del', name]);
    namespaces.delete(name);
  };
  const pod = (ns: { path: string }, extra: Record<string, unknown> = {}) => {
    const id = newId();
    ids.add(id);
    return {
      id,
      netnsPath: ns.path,
      name: `pod-${id.slice(0, 6)}`,
      namespace: 'capsa-test',
      uid: `uid-${id.slice(0, 8)}`,
      ...extra,
    };
  };
  const allocated = async (): Promise<string[]> => {
    try {
      return (await fs.readdir(path.join(dataDir, 'capsa-test'))).filter(
        (f) => f !== 'lock' && !f.startsWith('last_reserved_ip'),
      );
    } catch {
      return [];
    }
  };
  const ourIptables = (): string[] =>
    sh('iptables-save', [])
      .split('\n')
      .filter((l) => [...ids].some((id) => l.includes(id)));
  const vethsOn = (br: string): string[] =>
    (trySh('ip', ['-o', 'link', 'show', 'master', br]) ?? '').split('\n').filter((l) => l.trim() !== '');

  /** A TCP server inside a netns answering "hello from <tag>" to each connection. */
  const serveIn = async (ns: string, port: number, greeting: string): Promise<void> => {
    const code = `require('net').createServer((s) => s.end(${JSON.stringify(greeting)})).listen(${port}, () => console.log('listening'))`;
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', code], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.add(child);
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`listener in ${ns} did not start`)), 10_000);
      child.stdout!.on('data', (b: Buffer) => {
        if (b.toString().includes('listening')) {
          clearTimeout(t);
          resolve();
        }
      });
      child.on('exit', (c) => reject(new Error(`listener in ${ns} exited ${c}`)));
    });
  };
  const fetchFromHost = (host: string, port: number): Promise<string> =>
    new Promise((resolve, reject) => {
      const s = net.connect({ host, port, timeout: 5000 });
      let data = '';
      s.on('data', (b) => (data += b.toString()));
      s.on('end', () => resolve(data));
      s.on('timeout', () => {
        s.destroy();
        reject(new Error(`timeout connecting to ${host}:${port}`));
      });
      s.on('error', reject);
    });
  const fetchFromNetns = (ns: string, host: string, port: number): string =>
    sh('ip', [
      'netns',
      'exec',
      ns,
      process.execPath,
      '-e',
      `const s = require('net').connect(${port}, ${JSON.stringify(host)}); let d = ''; s.on('data', (b) => d += b); s.on('end', () => process.stdout.write(d)); s.setTimeout(5000, () => process.exit(3));`,
    ]);

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'capsa-cni-it-'));
    confDir = path.join(dir, 'net.d');
    dataDir = path.join(dir, 'ipam');
    linksBefore = links();
    await fs.mkdir(confDir);
    await fs.writeFile(
      path.join(confDir, '10-test.conflist'),
      JSON.stringify({
        cniVersion: '1.0.0',
        name: 'capsa-test',
        plugins: [
          {
            type: 'bridge',
            bridge,
            isGateway: true,
            ipMasq: true,
            hairpinMode: true,
            ipam: { type: 'host-local', ranges: [[{ subnet }]], routes: [{ dst: '0.0.0.0/0' }], dataDir },
          },
          { type: 'portmap', capabilities: { portMappings: true } },
          { type: 'bandwidth', capabilities: { bandwidth: true } },
          { type: 'loopback' },
        ],
      }),
    );
    network = new CniNetwork({
      confDir,
      binDirs: ['/opt/cni/bin', PLUGIN_DIR],
      stateDir: path.join(dir, 'state'),
      pluginTimeoutMs: 30_000,
      onTiming: (t) => timings.push(t),
    });
  });

  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    // Whatever a failed test left: DEL through the records, then by hand.
    try {
      await network.recover([]);
    } catch {
      /* best effort */
    }
    for (const ns of [...namespaces]) delNetns(ns);
    removeIptables(ids);
    for (const br of [bridge, bridge2]) trySh('ip', ['link', 'del', br]);
    await fs.rm(dir, { recursive: true, force: true });
    const ms = (op: string): number[] => timings.filter((t) => t.op === op && t.ok).map((t) => t.ms);
    const summary = (xs: number[]): string =>
      xs.length
        ? `n=${xs.length} mean=${(xs.reduce((a, b) => a + b, 0) / xs.length).toFixed(1)}ms p50=${[...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)].toFixed(1)}ms`
        : 'n=0';
    console.log(`CNI timing (bridge+portmap+bandwidth+loopback): ADD ${summary(ms('ADD'))}; DEL ${summary(ms('DEL'))}`);
  });

  test('no config: NetworkReady false with the reason; config appears: true', async () => {
    const empty = path.join(dir, 'empty.d');
    await fs.mkdir(empty);
    const r = await networkReadiness(empty, [PLUGIN_DIR]);
    expect(r).toMatchObject({ ready: false, reason: 'NetworkPluginNotReady' });
    await fs.copyFile(path.join(confDir, '10-test.conflist'), path.join(empty, '10-test.conflist'));
    expect(await networkReadiness(empty, [PLUGIN_DIR])).toMatchObject({ ready: true });
  });

  test('a pod gets an IP; two pods reach each other', async () => {
    const a = addNetns();
    const b = addNetns();
    const pa = pod(a);
    const pb = pod(b);
    const [sa, sb] = await Promise.all([network.setUp(pa), network.setUp(pb)]);
    expect(sa.ip.startsWith(prefix)).toBe(true);
    expect(sb.ip.startsWith(prefix)).toBe(true);
    expect(sa.ip).not.toBe(sb.ip);
    expect(sa.result.ips[0].gateway).toBe(`${prefix}1`);
    expect(sh('ip', ['netns', 'exec', a.name, 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0'])).toContain(
      `${sa.ip}/24`,
    );
    // loopback is up too.
    expect(sh('ip', ['netns', 'exec', a.name, 'ip', '-o', 'link', 'show', 'lo'])).toMatch(/UP/);

    await serveIn(b.name, 8080, `hello from ${pb.name}`);
    expect(fetchFromNetns(a.name, sb.ip, 8080)).toBe(`hello from ${pb.name}`);
    if (trySh('busybox', ['--help']) !== undefined) {
      sh('ip', ['netns', 'exec', a.name, 'busybox', 'ping', '-c', '1', '-W', '3', sb.ip]);
    }

    await network.tearDown(pa.id);
    await network.tearDown(pb.id);
    expect(await allocated()).toEqual([]);
    expect(vethsOn(bridge)).toEqual([]);
  });

  test('a container port published with a host port answers from the host', async () => {
    const ns = addNetns();
    const hostPort = 20000 + (randomBytes(2).readUInt16BE() % 20000);
    const p = pod(ns, {
      portMappings: [
        { protocol: 0, containerPort: 8080, hostPort, hostIp: '' },
        { protocol: 0, containerPort: 9090, hostPort: 0, hostIp: '' },
      ],
    });
    const st = await network.setUp(p);
    await serveIn(ns.name, 8080, 'published');
    expect(await fetchFromHost('127.0.0.1', hostPort)).toBe('published');
    // Hairpin: the pod reaches itself through the host port on the bridge's gateway address.
    expect(fetchFromNetns(ns.name, `${prefix}1`, hostPort)).toBe('published');
    expect(ourIptables().some((l) => l.includes(`--dports ${hostPort}`))).toBe(true);
    await network.tearDown(p.id);
    expect(ourIptables()).toEqual([]);
    await expect(fetchFromHost('127.0.0.1', hostPort)).rejects.toThrow();
    expect(st.ip).toMatch(/^10\./);
  });

  test('DEL with the netns already removed still frees the IP', async () => {
    const ns = addNetns();
    const p = pod(ns, { portMappings: [{ protocol: 1, containerPort: 53, hostPort: 25353, hostIp: '127.0.0.1' }] });
    const st = await network.setUp(p);
    expect(await allocated()).toEqual([st.ip]);
    delNetns(ns.name);
    await network.tearDown(p.id);
    expect(await allocated()).toEqual([]);
    expect(vethsOn(bridge)).toEqual([]);
    expect(ourIptables()).toEqual([]);
  });

  test('a plugin failure surfaces its own message, and the undo leaves nothing behind', async () => {
    // A range of one address: the second pod exhausts it (an ADD-only failure, after bridge made the veth).
    const exDir = path.join(dir, 'exhaust.d');
    await fs.mkdir(exDir);
    const last = `${prefix}250`;
    await fs.writeFile(
      path.join(exDir, '10-one.conflist'),
      JSON.stringify({
        cniVersion: '1.0.0',
        name: 'capsa-test-one',
        plugins: [
          {
            type: 'bridge',
            bridge,
            isGateway: true,
            ipMasq: true,
            ipam: { type: 'host-local', ranges: [[{ subnet, rangeStart: last, rangeEnd: last }]], dataDir },
          },
          { type: 'portmap', capabilities: { portMappings: true } },
        ],
      }),
    );
    const one = new CniNetwork({ confDir: exDir, binDirs: [PLUGIN_DIR], stateDir: path.join(dir, 'one-state') });
    const nsA = addNetns();
    const nsB = addNetns();
    const a = pod(nsA);
    const b = pod(nsB, { portMappings: [{ protocol: 0, containerPort: 80, hostPort: 23080, hostIp: '' }] });
    expect((await one.setUp(a)).ip).toBe(last);
    const err = (await one.setUp(b).catch((e: unknown) => e)) as CniPluginError;
    expect(err).toBeInstanceOf(CniPluginError);
    expect(err.plugin).toBe('bridge');
    expect(err.message).toMatch(/^CNI plugin bridge ADD failed.*no IP addresses available in range set/);
    expect(err.context).toMatchObject({ stage: 'network', sandboxId: b.id });
    expect(await new FileNetworkStateStore(path.join(dir, 'one-state')).list()).toEqual([a.id]);
    expect(vethsOn(bridge)).toHaveLength(1);
    expect(sh('ip', ['netns', 'exec', nsB.name, 'ip', '-o', 'link'])).not.toMatch(/eth0/);
    await one.tearDown(a.id);
    expect(vethsOn(bridge)).toEqual([]);
    expect(ourIptables()).toEqual([]);
  });

  test('a config that cannot even DEL keeps its record; once fixed, teardown completes', async () => {
    const badDir = path.join(dir, 'bad.d');
    await fs.mkdir(badDir);
    const conf = (ipamSubnet: string): string =>
      JSON.stringify({
        cniVersion: '1.0.0',
        name: 'capsa-test',
        plugins: [
          { type: 'bridge', bridge, ipam: { type: 'host-local', ranges: [[{ subnet: ipamSubnet }]], dataDir } },
        ],
      });
    await fs.writeFile(path.join(badDir, '10-bad.conflist'), conf('not-a-subnet'));
    const bad = new CniNetwork({ confDir: badDir, binDirs: [PLUGIN_DIR], stateDir: path.join(dir, 'bad-state') });
    const ns = addNetns();
    const p = pod(ns);
    const err = (await bad.setUp(p).catch((e: unknown) => e)) as CniPluginError;
    expect(err).toBeInstanceOf(CniPluginError);
    expect(err.message).toMatch(/^CNI plugin bridge ADD failed.*not-a-subnet/);
    const store = new FileNetworkStateStore(path.join(dir, 'bad-state'));
    expect((await store.read(p.id))?.phase).toBe('deleting');
    await expect(bad.tearDown(p.id)).rejects.toThrow(/CNI plugin bridge DEL failed/);
    // The operator fixes the config: the current config of the same network does the DEL.
    await fs.writeFile(path.join(badDir, '10-bad.conflist'), conf(subnet));
    await bad.tearDown(p.id);
    expect(await store.list()).toEqual([]);
    expect(vethsOn(bridge)).toEqual([]);
    expect(await allocated()).toEqual([]);
  });

  test('recovery after a crash mid-ADD or mid-DEL, or of a sandbox that is gone, frees everything', async () => {
    const nsA = addNetns();
    const nsB = addNetns();
    const nsC = addNetns();
    const a = pod(nsA);
    const b = pod(nsB, { portMappings: [{ protocol: 0, containerPort: 80, hostPort: 24080, hostIp: '' }] });
    const c = pod(nsC);
    await network.setUp(a);
    await network.setUp(b);
    await network.setUp(c);
    const store = new FileNetworkStateStore(path.join(dir, 'state'));
    // a: the daemon died during ADD (after the plugins ran, before "ready").
    await store.write({ ...(await store.read(a.id))!, phase: 'adding', result: undefined });
    // b: died during DEL, and the netns went with the sandbox.
    await store.write({ ...(await store.read(b.id))!, phase: 'deleting' });
    delNetns(nsB.name);
    // c: complete, sandbox alive → adopted.
    const restarted = new CniNetwork({ confDir, binDirs: [PLUGIN_DIR], stateDir: path.join(dir, 'state') });
    const summary = await restarted.recover([a.id, c.id]);
    expect(summary.failed).toEqual([]);
    expect(summary.tornDown.sort()).toEqual([a.id, b.id].sort());
    expect([...summary.adopted.keys()]).toEqual([c.id]);
    expect(await allocated()).toEqual([restarted.status(c.id)!.ip]);
    await restarted.tearDown(c.id);
    expect(await allocated()).toEqual([]);
    expect(vethsOn(bridge)).toEqual([]);
    expect(ourIptables()).toEqual([]);
  });

  test('100 ADD/DEL cycles leave no IP, veth, netns, ifb or iptables rule behind', async () => {
    const cycleNetns: string[] = [];
    for (let i = 0; i < 100; i++) {
      const ns = addNetns();
      cycleNetns.push(ns.name);
      const p = pod(ns, {
        portMappings: i % 2 ? [{ protocol: 0, containerPort: 80, hostPort: 30000 + i, hostIp: '' }] : [],
        annotations:
          i % 3 === 0 ? { 'kubernetes.io/ingress-bandwidth': '10M', 'kubernetes.io/egress-bandwidth': '5M' } : {},
      });
      const st = await network.setUp(p);
      expect(st.ip.startsWith(prefix)).toBe(true);
      await network.tearDown(p.id);
      delNetns(ns.name);
    }
    expect(await allocated()).toEqual([]);
    expect(vethsOn(bridge)).toEqual([]);
    expect(ourIptables()).toEqual([]);
    const left = sh('ip', ['netns', 'list'])
      .split('\n')
      .map((l) => l.split(' ')[0]);
    expect(cycleNetns.filter((n) => left.includes(n))).toEqual([]);
    expect(left.filter((n) => n.endsWith('-cnidel'))).toEqual([]);
    // No bandwidth ifb left (the plugin names them bwp<hash>); veths were checked on our bridge
    // above. Other links are not ours to judge: another runtime may share the machine.
    expect(links().filter((l) => !linksBefore.includes(l) && l.startsWith('bwp'))).toEqual([]);
    expect(await new FileNetworkStateStore(path.join(dir, 'state')).list()).toEqual([]);
  }, 600_000);

  test('the default config (as written for a fresh machine) works with the installed plugins', async () => {
    const defDir = path.join(dir, 'default.d');
    const out = await ensureDefaultNetworkConfig({
      confDir: defDir,
      binDirs: [PLUGIN_DIR],
      podCidr: subnet2,
      bridge: bridge2,
      dataDir,
    });
    expect(out).toMatchObject({ written: true, cniVersion: '1.0.0', subnets: [subnet2] });
    const def = new CniNetwork({ confDir: defDir, binDirs: [PLUGIN_DIR], stateDir: path.join(dir, 'def-state') });
    const ns = addNetns();
    const p = pod(ns);
    const st = await def.setUp(p);
    expect(st.ip.startsWith(subnet2.slice(0, subnet2.lastIndexOf('.') + 1))).toBe(true);
    expect(st.networkName).toBe('capsa');
    await def.tearDown(p.id);
    expect(vethsOn(bridge2)).toEqual([]);
    expect(ourIptables()).toEqual([]);
    delNetns(ns.name);
  });

  test('errors are CapsaErrors naming the stage', async () => {
    const err = (await network
      .setUp(pod({ path: '/run/netns/capsa-test-does-not-exist' }))
      .catch((e: unknown) => e)) as CapsaError;
    expect(err).toBeInstanceOf(CapsaError);
    expect(err.kind).toBe('FailedPrecondition');
    expect(err.context.stage).toBe('network');
  });
});

/** Removes nat/filter rules whose comment names one of the ids, and the per-container chains they jump to. */
function removeIptables(ids: Set<string>): void {
  if (ids.size === 0) return;
  for (const table of ['nat', 'filter', 'mangle']) {
    const dump = trySh('iptables-save', ['-t', table]);
    if (!dump) continue;
    const chains = new Set<string>();
    for (const line of dump.split('\n')) {
      if (!line.startsWith('-A ') || ![...ids].some((id) => line.includes(id))) continue;
      const jump = /-j (CNI-[A-Za-z0-9-]+)/.exec(line);
      if (jump && !jump[1].startsWith('CNI-HOSTPORT')) chains.add(jump[1]);
      const chain = line.split(' ')[1];
      if (/^CNI-(DN-)?[0-9a-f]{24}/.test(chain)) chains.add(chain);
      // iptables-save quotes the comment; re-split it as a shell would.
      const args = (line.slice(3).match(/"(?:[^"\\]|\\.)*"|\S+/g) ?? []).map((a) =>
        a.startsWith('"') ? a.slice(1, -1).replace(/\\"/g, '"') : a,
      );
      trySh('iptables', ['-t', table, '-D', ...args]);
    }
    for (const c of chains) {
      trySh('iptables', ['-t', table, '-F', c]);
      trySh('iptables', ['-t', table, '-X', c]);
    }
  }
}

// The CNI isolator wired into the daemon: RunPodSandbox / PodSandboxStatus /
// StopPodSandbox through the real socket, and kill -9 of the daemon in the
// middle of ADD and of DEL.
const SLOW_PLUGIN = `#!${process.execPath}
// Test plugin: passes prevResult through; sleeps first when <flagDir>/slow-<COMMAND> exists.
const fs = require('fs');
const conf = JSON.parse(fs.readFileSync(0, 'utf8'));
const cmd = process.env.CNI_COMMAND;
const done = () => {
  if (cmd === 'ADD') process.stdout.write(JSON.stringify(conf.prevResult));
  if (cmd === 'VERSION') process.stdout.write(JSON.stringify({ cniVersion: '1.0.0', supportedVersions: ['1.0.0'] }));
};
if (fs.existsSync(conf.flagDir + '/slow-' + cmd)) setTimeout(done, 4000);
else done();
`;

suite('pods through the daemon, with CNI', () => {
  const subnet = freeSubnet();
  const prefix = subnet.slice(0, subnet.lastIndexOf('.') + 1);
  const br = `capsa-v${tag}`;
  let d: TestDaemon;
  let dir: string;
  let dataDir: string;
  const sandboxIds = new Set<string>();

  const start = async (): Promise<void> => {
    d = await startDaemon({ dir, args: ['--cni-bin-dirs', `${path.join(dir, 'bin')},${PLUGIN_DIR}`] });
  };
  const kill9 = async (): Promise<void> => {
    d.proc.kill('SIGKILL');
    await waitForExit(d.proc);
  };
  const allocated = async (): Promise<string[]> => {
    try {
      return (await fs.readdir(path.join(dataDir, 'capsa-pods'))).filter(
        (f) => f !== 'lock' && !f.startsWith('last_reserved_ip'),
      );
    } catch {
      return [];
    }
  };
  const records = async (): Promise<string[]> => {
    try {
      return (await fs.readdir(path.join(d.root, 'network'))).filter((f) => f.endsWith('.json'));
    } catch {
      return [];
    }
  };
  const ours = (): string[] =>
    sh('iptables-save', [])
      .split('\n')
      .filter((l) => [...sandboxIds].some((id) => l.includes(id)));
  const veths = (): string[] =>
    (trySh('ip', ['-o', 'link', 'show', 'master', br]) ?? '').split('\n').filter((l) => l.trim() !== '');
  let seq = 0;
  const podConfig = (extra: Record<string, unknown> = {}): Record<string, unknown> => {
    seq++;
    return {
      metadata: { name: `netpod${seq}`, uid: `uid-${tag}-${seq}`, namespace: 'capsa-cni', attempt: 0 },
      hostname: `netpod${seq}`,
      ...extra,
    };
  };
  const runp = async (config: Record<string, unknown>): Promise<string> => {
    const r = await call<{ podSandboxId: string }>(d.runtime, 'runPodSandbox', { config }, 60_000);
    sandboxIds.add(r.podSandboxId);
    return r.podSandboxId;
  };
  const waitFor = async (what: string, cond: () => Promise<boolean>, ms = 20_000): Promise<void> => {
    const deadline = Date.now() + ms;
    while (!(await cond())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'capsa-cni-pods-'));
    dataDir = path.join(dir, 'ipam');
    await fs.mkdir(path.join(dir, 'cni'));
    await fs.mkdir(path.join(dir, 'bin'));
    await fs.writeFile(path.join(dir, 'bin', 'capsa-test-slow'), SLOW_PLUGIN, { mode: 0o755 });
    await fs.writeFile(
      path.join(dir, 'cni', '10-pods.conflist'),
      JSON.stringify({
        cniVersion: '1.0.0',
        name: 'capsa-pods',
        plugins: [
          {
            type: 'bridge',
            bridge: br,
            isGateway: true,
            ipMasq: true,
            hairpinMode: true,
            ipam: { type: 'host-local', ranges: [[{ subnet }]], routes: [{ dst: '0.0.0.0/0' }], dataDir },
          },
          { type: 'portmap', capabilities: { portMappings: true } },
          { type: 'loopback' },
          { type: 'capsa-test-slow', flagDir: dir },
        ],
      }),
    );
    await start();
  });

  afterAll(async () => {
    if (d && d.proc.exitCode === null && d.proc.signalCode === null) {
      for (const id of sandboxIds) {
        await call(d.runtime, 'stopPodSandbox', { podSandboxId: id }, 60_000).catch(() => undefined);
        await call(d.runtime, 'removePodSandbox', { podSandboxId: id }, 60_000).catch(() => undefined);
      }
      await d.stop();
    }
    removeIptables(sandboxIds);
    trySh('ip', ['link', 'del', br]);
    for (const id of sandboxIds) trySh('ip', ['netns', 'del', `capsa-${id}-cnidel`]);
    await d?.cleanup();
    // The pods' cgroups live under the daemon's default parent for its root.
    const parent = defaultCgroupParent('cgroupfs', path.join(dir, 'root'));
    for (const c of ['cpu', 'cpuacct', 'cpuset', 'memory', 'pids', 'devices', 'freezer', 'blkio']) {
      await fs.rmdir(path.join('/sys/fs/cgroup', c, parent)).catch(() => undefined);
    }
  });

  test('RunPodSandbox attaches the pod; status shows its IP; a host port answers; stop frees it all', async () => {
    const hostPort = 20000 + (randomBytes(2).readUInt16BE() % 20000);
    const id = await runp(podConfig({ portMappings: [{ protocol: 0, containerPort: 8080, hostPort, hostIp: '' }] }));
    const st = await call<{ status: { network: { ip: string; additionalIps: unknown[] } }; info: { info: string } }>(
      d.runtime,
      'podSandboxStatus',
      { podSandboxId: id, verbose: true },
    );
    const ip = st.status.network.ip;
    expect(ip.startsWith(prefix)).toBe(true);
    expect(st.status.network.additionalIps).toEqual([]);
    const info = JSON.parse(st.info.info) as { namespaces: { net: string }; files: { hosts: string } };
    expect(sh('nsenter', [`--net=${info.namespaces.net}`, 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0'])).toContain(
      `${ip}/24`,
    );
    // The pod files name the pod's IP.
    expect(await fs.readFile(info.files.hosts, 'utf8')).toContain(ip);
    expect(await allocated()).toEqual([ip]);

    const child = spawn(
      'nsenter',
      [
        `--net=${info.namespaces.net}`,
        process.execPath,
        '-e',
        `require('net').createServer((s) => s.end('pod says hi')).listen(8080, () => console.log('listening'))`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout!.on('data', (b: Buffer) => b.toString().includes('listening') && resolve());
        child.on('exit', (c) => reject(new Error(`listener exited ${c}`)));
      });
      const got = await new Promise<string>((resolve, reject) => {
        const s = net.connect({ host: '127.0.0.1', port: hostPort });
        let data = '';
        s.on('data', (b) => (data += b.toString()));
        s.on('end', () => resolve(data));
        s.on('error', reject);
        s.setTimeout(5000, () => reject(new Error('timeout')));
      });
      expect(got).toBe('pod says hi');
    } finally {
      child.kill('SIGKILL');
    }

    await call(d.runtime, 'stopPodSandbox', { podSandboxId: id }, 60_000);
    expect(await allocated()).toEqual([]);
    expect(veths()).toEqual([]);
    expect(ours()).toEqual([]);
    expect(await records()).toEqual([]);
    const after = await call<{ status: { network: { ip: string } } }>(d.runtime, 'podSandboxStatus', {
      podSandboxId: id,
    });
    expect(after.status.network.ip).toBe('');
    await call(d.runtime, 'stopPodSandbox', { podSandboxId: id }, 60_000); // idempotent
    await call(d.runtime, 'removePodSandbox', { podSandboxId: id }, 60_000);
  });

  test('a restarted daemon still reports the IP of a running pod', async () => {
    const id = await runp(podConfig());
    const before = await call<{ status: { network: { ip: string } } }>(d.runtime, 'podSandboxStatus', {
      podSandboxId: id,
    });
    await kill9();
    await start();
    const after = await call<{ status: { network: { ip: string }; state: number } }>(d.runtime, 'podSandboxStatus', {
      podSandboxId: id,
    });
    expect(after.status.network.ip).toBe(before.status.network.ip);
    expect(after.status.state).toBe(0); // SANDBOX_READY
    await call(d.runtime, 'stopPodSandbox', { podSandboxId: id }, 60_000);
    await call(d.runtime, 'removePodSandbox', { podSandboxId: id }, 60_000);
    expect(await allocated()).toEqual([]);
  });

  test('kill -9 during RunPodSandbox (mid-ADD), restart: nothing leaked', async () => {
    await fs.writeFile(path.join(dir, 'slow-ADD'), '');
    const pending = runp(podConfig()).catch((e: unknown) => e);
    // The bridge ADD is done (an IP is taken) and the slow plugin is running.
    await waitFor('an IP to be allocated', async () => (await allocated()).length === 1);
    await kill9();
    await pending;
    await fs.rm(path.join(dir, 'slow-ADD'));
    expect(await records()).toHaveLength(1);
    const id = (await records())[0].replace(/\.json$/, '');
    sandboxIds.add(id);
    await start();
    expect(await allocated()).toEqual([]);
    expect(await records()).toEqual([]);
    expect(veths()).toEqual([]);
    expect(ours()).toEqual([]);
    const pods = await call<{ items: unknown[] }>(d.runtime, 'listPodSandbox', {});
    expect(pods.items).toEqual([]);
  });

  test('kill -9 during StopPodSandbox (mid-DEL), restart: nothing leaked', async () => {
    const id = await runp(
      podConfig({ portMappings: [{ protocol: 0, containerPort: 80, hostPort: 24081, hostIp: '' }] }),
    );
    expect(await allocated()).toHaveLength(1);
    await fs.writeFile(path.join(dir, 'slow-DEL'), '');
    const pending = call(d.runtime, 'stopPodSandbox', { podSandboxId: id }, 60_000).catch((e: unknown) => e);
    await waitFor('the DEL to start', async () => {
      const rec = await fs.readFile(path.join(d.root, 'network', `${id}.json`), 'utf8').catch(() => '');
      return rec.includes('"phase": "deleting"');
    });
    await kill9();
    await pending;
    await fs.rm(path.join(dir, 'slow-DEL'));
    expect(await allocated()).toHaveLength(1); // the crash came before bridge's DEL
    await start();
    expect(await allocated()).toEqual([]);
    expect(await records()).toEqual([]);
    expect(veths()).toEqual([]);
    expect(ours()).toEqual([]);
    const st = await call<{ status: { state: number; network: { ip: string } } }>(d.runtime, 'podSandboxStatus', {
      podSandboxId: id,
    });
    expect(st.status.state).toBe(1); // SANDBOX_NOTREADY
    expect(st.status.network.ip).toBe('');
    await call(d.runtime, 'removePodSandbox', { podSandboxId: id }, 60_000);
  });
});
