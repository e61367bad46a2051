// The invoker and the isolator against fake plugins (small node scripts that
// log what they were given): stdin and env per the spec, chaining, errors,
// timeouts, undo after a failed ADD, DEL without a netns, recovery.
import { mkdtempSync, promises as fs, readFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CapsaError } from '../../src/errors';
import { CniPluginError } from '../../src/network/cni/invoke';
import { CniNetwork, NetworkTiming } from '../../src/network/cni/network';
import { FileNetworkStateStore, NetworkRecord } from '../../src/network/cni/state';

const FAKE = `#!${process.execPath}
const fs = require('fs');
const conf = JSON.parse(fs.readFileSync(0, 'utf8'));
const env = {};
for (const k of Object.keys(process.env)) if (k.startsWith('CNI_')) env[k] = process.env[k];
fs.appendFileSync(conf.log, JSON.stringify({ env, conf }) + '\\n');
const cmd = process.env.CNI_COMMAND;
if (conf.failOn === cmd) {
  process.stdout.write(JSON.stringify({ cniVersion: conf.cniVersion, code: 7, msg: 'fake ' + conf.type + ' says no', details: 'because' }));
  process.exit(1);
}
if (conf.crashOn === cmd) { process.stderr.write('panic: runtime error\\n'); process.exit(2); }
if (conf.hangOn === cmd) setInterval(() => {}, 1000);
else if (cmd === 'ADD') {
  const r = conf.prevResult || {
    cniVersion: conf.cniVersion,
    interfaces: [{ name: 'br' }, { name: process.env.CNI_IFNAME, sandbox: process.env.CNI_NETNS }],
    ips: conf.ips.map((a) => ({ address: a, interface: 1 })),
    dns: { nameservers: ['10.99.0.1'] },
  };
  process.stdout.write(JSON.stringify(r));
}
`;

interface LogEntry {
  env: Record<string, string>;
  conf: Record<string, unknown>;
}

describe('CNI invoke and the network isolator (fake plugins)', () => {
  let dir: string;
  let confDir: string;
  let bin: string;
  let log: string;
  const netns = `/proc/${process.pid}/ns/net`;
  const id = 'a'.repeat(64);
  const pod = { id, netnsPath: netns, name: 'web', namespace: 'default', uid: 'uid-1' };

  beforeEach(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'capsa-cni-invoke-'));
    confDir = path.join(dir, 'net.d');
    bin = path.join(dir, 'bin');
    log = path.join(dir, 'calls.log');
    await fs.mkdir(confDir);
    await fs.mkdir(bin);
    for (const p of ['main', 'meta', 'bw']) await fs.writeFile(path.join(bin, p), FAKE, { mode: 0o755 });
  });
  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  const writeConf = async (plugins: Record<string, unknown>[], cniVersion = '1.0.0'): Promise<void> => {
    const conf = { cniVersion, name: 'fake', plugins: plugins.map((p) => ({ log, ...p })) };
    await fs.writeFile(path.join(confDir, '10-fake.conflist'), JSON.stringify(conf));
  };
  const calls = (): LogEntry[] =>
    readFileSync(log, 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as LogEntry);
  const network = (timings?: NetworkTiming[], pluginTimeoutMs = 10_000): CniNetwork =>
    new CniNetwork({
      confDir,
      binDirs: [bin],
      stateDir: path.join(dir, 'state'),
      pluginTimeoutMs,
      onTiming: (t) => timings?.push(t),
    });

  test('ADD runs the list in order with the spec environment, prevResult and declared runtimeConfig', async () => {
    await writeConf([
      { type: 'main', ips: ['fd00:99::4/64', '10.99.0.4/24'] },
      { type: 'meta', capabilities: { portMappings: true } },
      { type: 'bw', capabilities: { bandwidth: true, portMappings: false } },
    ]);
    const timings: NetworkTiming[] = [];
    const net = network(timings);
    const st = await net.setUp({
      ...pod,
      portMappings: [{ protocol: 0, containerPort: 80, hostPort: 8080, hostIp: '' }],
      annotations: { 'kubernetes.io/ingress-bandwidth': '1M' },
    });
    expect(st).toMatchObject({ sandboxId: id, ip: '10.99.0.4', additionalIps: ['fd00:99::4'], networkName: 'fake' });
    expect(st.result.dns.nameservers).toEqual(['10.99.0.1']);

    const c = calls();
    expect(c.map((x) => `${x.conf.type as string}:${x.env.CNI_COMMAND}`)).toEqual(['main:ADD', 'meta:ADD', 'bw:ADD']);
    expect(c[0].env).toEqual({
      CNI_COMMAND: 'ADD',
      CNI_CONTAINERID: id,
      CNI_NETNS: netns,
      CNI_IFNAME: 'eth0',
      CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=${id};K8S_POD_UID=uid-1`,
      CNI_PATH: bin,
    });
    expect(c[0].conf).toMatchObject({ name: 'fake', cniVersion: '1.0.0' });
    expect(c[0].conf).not.toHaveProperty('prevResult');
    expect(c[0].conf).not.toHaveProperty('runtimeConfig');
    expect(c[1].conf.prevResult).toMatchObject({ ips: [{ address: 'fd00:99::4/64' }, { address: '10.99.0.4/24' }] });
    expect(c[1].conf.runtimeConfig).toEqual({
      portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }],
    });
    expect(c[2].conf.runtimeConfig).toEqual({ bandwidth: { ingressRate: 1_000_000, ingressBurst: 4294967295 } });

    // Checkpointed before setUp resolved.
    const rec = JSON.parse(readFileSync(path.join(dir, 'state', `${id}.json`), 'utf8')) as NetworkRecord;
    expect(rec).toMatchObject({
      phase: 'ready',
      ip: '10.99.0.4',
      netnsPath: netns,
      configFile: path.join(confDir, '10-fake.conflist'),
    });
    expect(timings).toHaveLength(1);
    expect(timings[0]).toMatchObject({ op: 'ADD', ok: true });
    expect(timings[0].plugins.map((p) => p.plugin)).toEqual(['main', 'meta', 'bw']);

    // A retried setUp of a complete attachment answers the same without running plugins.
    expect((await net.setUp(pod)).ip).toBe('10.99.0.4');
    expect(calls()).toHaveLength(3);

    // DEL in reverse, same config and runtimeConfig, the ADD result as prevResult.
    await net.tearDown(id);
    const d = calls().slice(3);
    expect(d.map((x) => `${x.conf.type as string}:${x.env.CNI_COMMAND}`)).toEqual(['bw:DEL', 'meta:DEL', 'main:DEL']);
    expect(d[1].conf.runtimeConfig).toEqual(c[1].conf.runtimeConfig);
    for (const x of d) expect(x.conf.prevResult).toMatchObject({ ips: [{}, { address: '10.99.0.4/24' }] });
    expect(d[0].env.CNI_NETNS).toBe(netns);
    await expect(fs.stat(path.join(dir, 'state', `${id}.json`))).rejects.toThrow(/ENOENT/);
    expect(net.status(id)).toBeUndefined();
    expect(net.stats()).toMatchObject({ ADD: { count: 1, failed: 0 }, DEL: { count: 1, failed: 0 } });

    // Idempotent.
    await net.tearDown(id);
    expect(calls()).toHaveLength(6);
  });

  test('0.3.1 lists get no prevResult on DEL (libcni)', async () => {
    await writeConf([{ type: 'main', ips: ['10.99.0.5/24'] }], '0.3.1');
    const net = network();
    await net.setUp(pod);
    await net.tearDown(id);
    const d = calls()[1];
    expect(d.env.CNI_COMMAND).toBe('DEL');
    expect(d.conf).not.toHaveProperty('prevResult');
  });

  test('a plugin failure carries its message; DEL undoes the whole list before the error returns', async () => {
    await writeConf([
      { type: 'main', ips: ['10.99.0.6/24'] },
      { type: 'meta', failOn: 'ADD' },
    ]);
    const timings: NetworkTiming[] = [];
    const net = network(timings);
    const err = (await net.setUp(pod).catch((e: unknown) => e)) as CniPluginError;
    expect(err).toBeInstanceOf(CniPluginError);
    expect(err.message).toBe('CNI plugin meta ADD failed (code 7): fake meta says no: because');
    expect(err).toMatchObject({ plugin: 'meta', code: 7, msg: 'fake meta says no', details: 'because' });
    expect(err.context).toMatchObject({ stage: 'network', sandboxId: id });
    expect(calls().map((x) => `${x.conf.type as string}:${x.env.CNI_COMMAND}`)).toEqual([
      'main:ADD',
      'meta:ADD',
      'meta:DEL',
      'main:DEL',
    ]);
    // The partial result went to DEL as prevResult.
    expect(calls()[3].conf.prevResult).toMatchObject({ ips: [{ address: '10.99.0.6/24' }] });
    expect(await new FileNetworkStateStore(path.join(dir, 'state')).list()).toEqual([]);
    expect(timings.map((t) => `${t.op}:${t.ok}`)).toEqual(['ADD:false', 'DEL:true']);
  });

  test('a crashing plugin: exit status and stderr in the error', async () => {
    await writeConf([{ type: 'main', crashOn: 'ADD' }]);
    await expect(network().setUp(pod)).rejects.toThrow(
      'CNI plugin main ADD failed: exited with status 2: panic: runtime error',
    );
  });

  test('a hanging plugin is killed at the timeout and the ADD undone', async () => {
    await writeConf([
      { type: 'main', ips: ['10.99.0.7/24'] },
      { type: 'meta', hangOn: 'ADD' },
    ]);
    const t0 = Date.now();
    const err = (await network(undefined, 1500)
      .setUp(pod)
      .catch((e: unknown) => e)) as CapsaError;
    expect(err.kind).toBe('DeadlineExceeded');
    expect(err.message).toMatch(/CNI plugin meta ADD timed out after 1500 ms/);
    expect(err.context).toMatchObject({ stage: 'network', sandboxId: id });
    expect(Date.now() - t0).toBeLessThan(8000);
    expect(calls().map((x) => `${x.conf.type as string}:${x.env.CNI_COMMAND}`)).toEqual([
      'main:ADD',
      'meta:ADD',
      'meta:DEL',
      'main:DEL',
    ]);
  });

  test("the caller's cancellation: DEL still runs, on a fresh context", async () => {
    await writeConf([
      { type: 'main', ips: ['10.99.0.8/24'] },
      { type: 'meta', hangOn: 'ADD' },
    ]);
    const ac = new AbortController();
    const p = network().setUp(pod, ac.signal);
    setTimeout(() => ac.abort(new CapsaError('DeadlineExceeded', 'RunPodSandbox timed out')), 1000);
    await expect(p).rejects.toThrow(/RunPodSandbox timed out/);
    expect(calls().map((x) => `${x.conf.type as string}:${x.env.CNI_COMMAND}`)).toEqual([
      'main:ADD',
      'meta:ADD',
      'meta:DEL',
      'main:DEL',
    ]);
  });

  test('bad input and a missing netns fail before any plugin runs', async () => {
    await writeConf([{ type: 'main', ips: ['10.99.0.9/24'] }]);
    const net = network();
    await expect(
      net.setUp({ ...pod, annotations: { 'kubernetes.io/egress-bandwidth': 'lots' } }),
    ).rejects.toMatchObject({
      kind: 'InvalidArgument',
    });
    await expect(net.setUp({ ...pod, netnsPath: path.join(dir, 'nope') })).rejects.toThrow(
      /is not a network namespace/,
    );
    await fs.writeFile(path.join(dir, 'plain'), '');
    await expect(net.setUp({ ...pod, netnsPath: path.join(dir, 'plain') })).rejects.toMatchObject({
      kind: 'FailedPrecondition',
    });
    await expect(fs.stat(log)).rejects.toThrow(/ENOENT/);
    await fs.rm(path.join(confDir, '10-fake.conflist'));
    await expect(net.setUp(pod)).rejects.toThrow(/network not ready: no network config found/);
  });

  test('DEL with the netns gone sends an empty CNI_NETNS; a failed DEL keeps the record for recovery', async () => {
    await writeConf([{ type: 'main', ips: ['10.99.0.10/24'] }]);
    const net = network();
    await net.setUp(pod);
    // The record now names a netns file that no longer exists.
    const store = new FileNetworkStateStore(path.join(dir, 'state'));
    const rec = (await store.read(id))!;
    await store.write({ ...rec, netnsPath: path.join(dir, 'gone-netns') });
    // And the plugin fails DEL once.
    rec.list.plugins[0].failOn = 'DEL';
    await store.write({ ...rec, netnsPath: path.join(dir, 'gone-netns') });
    // (No current config to fall back on.)
    await fs.rm(path.join(confDir, '10-fake.conflist'));
    await expect(net.tearDown(id)).rejects.toThrow(/fake main says no/);
    expect((await store.read(id))?.phase).toBe('deleting');
    // No netns: DEL gets a stand-in holding the pod's address (as root), or none at all.
    expect(calls()[1].env.CNI_COMMAND).toBe('DEL');
    expect(['', `/run/netns/capsa-${id}-cnidel`]).toContain(calls()[1].env.CNI_NETNS);
    await expect(fs.stat(`/run/netns/capsa-${id}-cnidel`)).rejects.toThrow(/ENOENT/);

    // After a "restart", recover() finishes it (the plugin works again).
    delete rec.list.plugins[0].failOn;
    await store.write({ ...rec, phase: 'deleting', netnsPath: path.join(dir, 'gone-netns') });
    const summary = await network().recover([id]);
    expect(summary.tornDown).toEqual([id]);
    expect(await store.list()).toEqual([]);
  });

  test('a recorded config that fails DEL falls back to the current config of the same network', async () => {
    await writeConf([{ type: 'main', ips: ['10.99.0.13/24'], failOn: 'DEL' }]);
    const net = network();
    await net.setUp(pod);
    await writeConf([{ type: 'main', ips: ['10.99.0.13/24'] }]);
    await net.tearDown(id);
    const dels = calls().filter((c) => c.env.CNI_COMMAND === 'DEL');
    expect(dels.map((c) => c.conf.failOn ?? 'ok')).toEqual(['DEL', 'ok']);
    expect(await new FileNetworkStateStore(path.join(dir, 'state')).list()).toEqual([]);
  });

  test('recover: adopts complete attachments of live sandboxes, tears down the rest', async () => {
    await writeConf([{ type: 'main', ips: ['10.99.0.11/24'] }]);
    const live = 'b'.repeat(64);
    const gone = 'c'.repeat(64);
    const midAdd = 'd'.repeat(64);
    const net = network();
    await net.setUp({ ...pod, id: live });
    await net.setUp({ ...pod, id: gone });
    await net.setUp({ ...pod, id: midAdd });
    const store = new FileNetworkStateStore(path.join(dir, 'state'));
    const rec = (await store.read(midAdd))!;
    await store.write({ ...rec, phase: 'adding', result: undefined });

    const fresh = network();
    const summary = await fresh.recover([live, midAdd]);
    expect([...summary.adopted.keys()]).toEqual([live]);
    expect(summary.adopted.get(live)?.ip).toBe('10.99.0.11');
    expect(fresh.status(live)?.ip).toBe('10.99.0.11');
    expect(summary.tornDown.sort()).toEqual([gone, midAdd]);
    expect(summary.failed).toEqual([]);
    expect(await store.list()).toEqual([live]);
    const dels = calls().filter((c) => c.env.CNI_COMMAND === 'DEL');
    expect(dels.map((c) => c.env.CNI_CONTAINERID).sort()).toEqual([gone, midAdd]);
    // The mid-ADD record had no result: DEL without prevResult.
    expect(dels.find((c) => c.env.CNI_CONTAINERID === midAdd)?.conf).not.toHaveProperty('prevResult');
  });

  test('calls for one sandbox are serialised', async () => {
    await writeConf([{ type: 'main', ips: ['10.99.0.12/24'] }]);
    const net = network();
    const [a, , b] = await Promise.all([net.setUp(pod), net.tearDown(id), net.setUp(pod)]);
    expect(a.ip).toBe('10.99.0.12');
    expect(b.ip).toBe('10.99.0.12');
    expect(calls().map((x) => x.env.CNI_COMMAND)).toEqual(['ADD', 'DEL', 'ADD']);
  });
});
