// Resources through kubelet: QoS classes land in kubelet's cgroup tree,
// requests/limits reach capsa's container cgroups, an OOM kill shows
// OOMKilled, and the summary API and /metrics/resource show capsa's stats.
// With the systemd driver (hack/sysd/k8s.sh) the tree is kubelet's slices
// and capsa's capsa-<id>.scope units in them.
import { existsSync, promises as fs } from 'fs';
import * as path from 'path';
import { BUSYBOX } from './images';
import {
  apply,
  CGROUP_DRIVER,
  CGROUP_ROOT,
  containerStatus,
  isReady,
  kubectl,
  namespace,
  NODE,
  phase,
  pod,
  podCgroupOf,
  sleep,
  until,
  waitPod,
  Pod,
} from '../helpers/k8s';

const NS = 'e2e-resources';
let dropNs: () => Promise<void>;
const V2 = existsSync('/sys/fs/cgroup/cgroup.controllers');

beforeAll(async () => {
  dropNs = await namespace(NS);
  const sleeper = (name: string, resources: object): object => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: NS },
    spec: {
      terminationGracePeriodSeconds: 1,
      containers: [
        { name: 'main', image: BUSYBOX, command: ['sh', '-c', 'while true; do :; done & exec sleep 3600'], resources },
      ],
    },
  });
  await apply(
    sleeper('guaranteed', { requests: { cpu: '200m', memory: '64Mi' }, limits: { cpu: '200m', memory: '64Mi' } }),
    sleeper('burstable', { requests: { cpu: '100m', memory: '32Mi' }, limits: { memory: '128Mi' } }),
    sleeper('besteffort', {}),
  );
  for (const n of ['guaranteed', 'burstable', 'besteffort']) await waitPod(NS, n, 'Ready', isReady, 120_000);
}, 300_000);

afterAll(async () => {
  await dropNs?.();
}, 180_000);

/** The cgroup dir (in `controller`'s hierarchy on v1) of a pod's container, found by its pid. */
async function containerCgroup(name: string, controller: string): Promise<string> {
  const pid = (await kubectl(['exec', '-n', NS, name, '--', 'sh', '-c', 'echo $PPID'])).trim();
  // the exec'd shell shares the container's cgroup; its parent is the exec helper in the same cgroup
  const lines = (await kubectl(['exec', '-n', NS, name, '--', 'cat', '/proc/1/cgroup'])).split('\n');
  expect(pid).not.toBe('');
  const line = V2
    ? lines.find((l) => l.startsWith('0::'))
    : lines.find((l) => l.split(':')[1]?.split(',').includes(controller));
  const rel = line!.split(':').slice(2).join(':');
  if (rel !== '/') return V2 ? path.join('/sys/fs/cgroup', rel) : path.join('/sys/fs/cgroup', controller, rel);
  // a private cgroup namespace shows "/": look the container up from the host side by its pod uid
  const p0 = await pod(NS, name);
  const base = path.join(
    V2 ? '/sys/fs/cgroup' : `/sys/fs/cgroup/${controller}`,
    CGROUP_ROOT,
    CGROUP_DRIVER === 'systemd' ? 'kubepods.slice' : 'kubepods',
  );
  const podDir = path.basename(podCgroupOf(p0.status.qosClass, p0.metadata.uid)); // pod<uid>, or …-pod<uid>.slice
  const hits: string[] = [];
  const walk = async (d: string, depth: number): Promise<void> => {
    if (depth > 4) return;
    for (const e of await fs.readdir(d, { withFileTypes: true }).catch(() => [])) {
      if (!e.isDirectory()) continue;
      const p = path.join(d, e.name);
      if (p.includes(podDir) && e.name !== podDir) hits.push(p);
      await walk(p, depth + 1);
    }
  };
  await walk(base, 0);
  expect(hits).toHaveLength(1);
  return hits[0];
}

const read = async (f: string): Promise<string> => (await fs.readFile(f, 'utf8')).trim();

test("QoS classes are placed in kubelet's hierarchy", async () => {
  for (const [name, qos] of [
    ['guaranteed', 'Guaranteed'],
    ['burstable', 'Burstable'],
    ['besteffort', 'BestEffort'],
  ] as const) {
    const p = await pod(NS, name);
    expect(p.status.qosClass).toBe(qos);
    const dir = await containerCgroup(name, 'memory');
    const root = path.join(V2 ? '/sys/fs/cgroup' : '/sys/fs/cgroup/memory', CGROUP_ROOT);
    const podCg = podCgroupOf(qos, p.metadata.uid).replace(/\./g, '\\.');
    // cgroupfs: capsa nests a pod's containers in the sandbox's own cgroup
    // (Mesos nested containers); systemd: a scope per container in kubelet's
    // pod slice (a scope holds no units)
    const leaf = CGROUP_DRIVER === 'systemd' ? 'capsa-[0-9a-f]{64}\\.scope' : 'capsa-[0-9a-f]{64}/capsa-[0-9a-f]{64}';
    expect(path.relative(root, dir)).toMatch(new RegExp(`^${podCg}/${leaf}$`));
  }
}, 120_000);

test('limits and requests reach the container cgroups', async () => {
  const mem = await containerCgroup('guaranteed', 'memory');
  const cpu = await containerCgroup('guaranteed', 'cpu');
  if (V2) {
    expect(await read(path.join(mem, 'memory.max'))).toBe(String(64 << 20));
    expect(await read(path.join(cpu, 'cpu.max'))).toBe('20000 100000');
  } else {
    expect(await read(path.join(mem, 'memory.limit_in_bytes'))).toBe(String(64 << 20));
    expect(await read(path.join(cpu, 'cpu.cfs_quota_us'))).toBe('20000');
    expect(await read(path.join(cpu, 'cpu.cfs_period_us'))).toBe('100000');
    expect(await read(path.join(cpu, 'cpu.shares'))).toBe('204');
    const burst = await containerCgroup('burstable', 'cpu');
    expect(await read(path.join(burst, 'cpu.shares'))).toBe('102');
    expect(await read(path.join(await containerCgroup('burstable', 'memory'), 'memory.limit_in_bytes'))).toBe(
      String(128 << 20),
    );
  }
}, 120_000);

test('an OOM-killed container shows OOMKilled', async () => {
  await apply({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'hog', namespace: NS },
    spec: {
      restartPolicy: 'Never',
      containers: [
        {
          name: 'main',
          image: BUSYBOX,
          command: ['sh', '-c', 'tail /dev/zero'],
          resources: { limits: { memory: '24Mi' } },
        },
      ],
    },
  });
  const p = await waitPod(NS, 'hog', 'Failed', (p) => phase(p) === 'Failed', 120_000);
  const t = containerStatus(p, 'main').state.terminated;
  expect(t.reason).toBe('OOMKilled');
  expect(t.exitCode).toBe(137);
}, 150_000);

test("the summary API shows non-zero CPU and memory of capsa's pods and containers", async () => {
  const summary = await until(
    'stats for the pods',
    async (): Promise<Pod> => {
      const s = JSON.parse(await kubectl(['get', '--raw', `/api/v1/nodes/${NODE}/proxy/stats/summary`]));
      // pod-level figures come from kubelet's cAdvisor housekeeping of the pod
      // cgroup (every 10-15 s); the containers' from capsa's ListContainerStats
      const ours = ['guaranteed', 'burstable', 'besteffort'].map((n) =>
        s.pods.find((p: Pod) => p.podRef.name === n && p.podRef.namespace === NS),
      );
      return ours.every((p) => p?.cpu?.usageCoreNanoSeconds > 0 && p?.containers?.[0]?.cpu?.usageNanoCores > 0)
        ? s
        : undefined;
    },
    90_000,
  );
  expect(summary.node.nodeName).toBe(NODE);
  for (const name of ['guaranteed', 'burstable', 'besteffort']) {
    const p = summary.pods.find((x: Pod) => x.podRef.name === name && x.podRef.namespace === NS);
    expect(p).toBeDefined();
    expect(p.cpu.usageCoreNanoSeconds).toBeGreaterThan(0);
    expect(p.memory.workingSetBytes).toBeGreaterThan(0);
    const c = p.containers.find((x: { name: string }) => x.name === 'main');
    expect(c.cpu.usageCoreNanoSeconds).toBeGreaterThan(0);
    expect(c.memory.workingSetBytes).toBeGreaterThan(0);
    expect(c.rootfs).toBeDefined();
    expect(c.logs).toBeDefined();
  }
  // the guaranteed pod spins at its 200m quota
  const g = summary.pods.find((x: Pod) => x.podRef.name === 'guaranteed' && x.podRef.namespace === NS);
  expect(g.containers[0].cpu.usageNanoCores).toBeLessThan(400_000_000);
}, 120_000);

test("/metrics/resource lists capsa's containers", async () => {
  await sleep(1000);
  const text = await kubectl(['get', '--raw', `/api/v1/nodes/${NODE}/proxy/metrics/resource`]);
  for (const name of ['guaranteed', 'burstable', 'besteffort']) {
    const cpu = new RegExp(
      `^container_cpu_usage_seconds_total\\{container="main",namespace="${NS}",pod="${name}"\\} ([0-9.e+-]+)`,
      'm',
    );
    const mem = new RegExp(
      `^container_memory_working_set_bytes\\{container="main",namespace="${NS}",pod="${name}"\\} ([0-9.e+-]+)`,
      'm',
    );
    expect(Number(text.match(cpu)?.[1])).toBeGreaterThan(0);
    expect(Number(text.match(mem)?.[1])).toBeGreaterThan(0);
    expect(text).toMatch(new RegExp(`^pod_cpu_usage_seconds_total\\{namespace="${NS}",pod="${name}"\\}`, 'm'));
  }
}, 60_000);
