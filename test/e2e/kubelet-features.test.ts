// What kubelet's optional runtime features get from capsa when the cluster
// runs with them (CAPSA_K8S_FEATURE_GATES, hack/k8s/up.sh): EventedPLEG
// watches capsa's GetContainerEvents stream, PodAndContainerStatsFromCRI
// takes the summary API's pod and container stats from capsa's
// ListPodSandboxStats and /metrics/cadvisor from capsa's CRI metrics (on by
// default: kubelet's cAdvisor knows only containerd and CRI-O containers).
// Skipped when the cluster runs without them.
import { hostHasCgroupPsi } from '../helpers/cgroups';
import { BUSYBOX } from './images';
import { apply, gateOn as on, isReady, kubectl, namespace, NODE, until, waitPod } from '../helpers/k8s';
const NS = 'e2e-features';
let dropNs: (() => Promise<void>) | undefined;

beforeAll(async () => {
  if (on('EventedPLEG') || on('PodAndContainerStatsFromCRI')) dropNs = await namespace(NS);
}, 120_000);

afterAll(async () => {
  await dropNs?.();
}, 180_000);

function sample(metrics: string, name: string): number {
  const m = metrics.match(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'm'));
  return m ? Number(m[1]) : NaN;
}

(on('EventedPLEG') ? test : test.skip)(
  'EventedPLEG: kubelet receives capsa container events',
  async () => {
    const metrics = async (): Promise<string> => kubectl(['get', '--raw', `/api/v1/nodes/${NODE}/proxy/metrics`]);
    const before = sample(await metrics(), 'kubelet_evented_pleg_connection_latency_seconds_count') || 0;
    await apply({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'evented', namespace: NS },
      spec: {
        terminationGracePeriodSeconds: 1,
        containers: [{ name: 'main', image: BUSYBOX, command: ['sleep', '3600'] }],
      },
    });
    await waitPod(NS, 'evented', 'Ready', isReady);
    // the pod's container was created and started: two more events reached kubelet
    await until('kubelet counting the new events', async () => {
      const m = await metrics();
      return sample(m, 'kubelet_evented_pleg_connection_latency_seconds_count') >= before + 2 && m;
    });
    expect(sample(await metrics(), 'kubelet_evented_pleg_connection_error_count')).toBe(0);
  },
  180_000,
);

const cgroupPsi = hostHasCgroupPsi();

(on('PodAndContainerStatsFromCRI') ? test : test.skip)(
  'PodAndContainerStatsFromCRI: the summary API and /metrics/cadvisor come from capsa',
  async () => {
    await apply({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'cri-stats', namespace: NS },
      spec: {
        terminationGracePeriodSeconds: 1,
        containers: [
          {
            name: 'main',
            image: BUSYBOX,
            // some CPU, some memory, some traffic on the pod's interface
            command: [
              'sh',
              '-c',
              'while true; do ping -c 1 -W 1 10.244.0.1 >/dev/null; i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; sleep 1; done',
            ],
            resources: { limits: { memory: '64Mi', cpu: '200m' } },
          },
        ],
      },
    });
    await waitPod(NS, 'cri-stats', 'Ready', isReady);
    // kubelet's summary: a CPU rate needs two of capsa's samples a second apart, kubelet polls every 10 s
    const p = await until(
      "the pod's stats in the summary API",
      async () => {
        const s = JSON.parse(await kubectl(['get', '--raw', `/api/v1/nodes/${NODE}/proxy/stats/summary`]));
        const pod = s.pods.find(
          (x: { podRef: { name: string; namespace: string } }) =>
            x.podRef.name === 'cri-stats' && x.podRef.namespace === NS,
        );
        return pod?.cpu?.usageNanoCores > 0 && pod?.network && pod ? pod : undefined;
      },
      120_000,
    );
    expect(p.process_stats.process_count).toBeGreaterThanOrEqual(1);
    expect(p.network.name).toBe('eth0');
    expect(p.network.txBytes).toBeGreaterThan(0);
    expect(p.memory.rssBytes).toBeGreaterThan(0);
    expect(p.memory.availableBytes).toBeGreaterThan(0);
    const c = p.containers.find((x: { name: string }) => x.name === 'main');
    expect(c.cpu.usageCoreNanoSeconds).toBeGreaterThan(0);
    expect(c.memory.rssBytes).toBeGreaterThan(0);
    expect(c.memory.pageFaults).toBeGreaterThan(0);
    // 64 MiB limit less the working set
    expect(c.memory.availableBytes).toBe(64 * 1024 * 1024 - c.memory.workingSetBytes);
    if (cgroupPsi) {
      for (const psi of [c.cpu.psi, c.memory.psi, c.io.psi, p.cpu.psi, p.memory.psi]) expect(psi.some).toBeDefined();
      // stall time needs contention, which a quiet node may not have
      expect(c.cpu.psi.some.total).toBeGreaterThanOrEqual(0);
    }
    // /metrics/cadvisor from capsa's ListPodSandboxMetrics, under cAdvisor's names and labels (CPU in
    // whole seconds, as containerd and CRI-O send it: this pod has used less than one)
    const text = await kubectl(['get', '--raw', `/api/v1/nodes/${NODE}/proxy/metrics/cadvisor`]);
    const sampleOf = (name: string): number | undefined => {
      const line = text
        .split('\n')
        .find(
          (l) =>
            l.startsWith(`${name}{`) &&
            l.includes('container="main"') &&
            l.includes(`namespace="${NS}"`) &&
            l.includes('pod="cri-stats"'),
        );
      return line === undefined ? undefined : Number(line.split(' ')[1]);
    };
    expect(sampleOf('container_cpu_usage_seconds_total')).toBeGreaterThanOrEqual(0);
    expect(sampleOf('container_memory_working_set_bytes')).toBeGreaterThan(0);
    expect(sampleOf('container_spec_memory_limit_bytes')).toBe(64 * 1024 * 1024);
  },
  240_000,
);
