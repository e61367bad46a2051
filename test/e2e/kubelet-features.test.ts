// What kubelet's optional runtime features get from capsa when the cluster
// runs with them (CAPSA_K8S_FEATURE_GATES, hack/k8s/up.sh): EventedPLEG
// watches capsa's GetContainerEvents stream, PodAndContainerStatsFromCRI
// reads /metrics/cadvisor from capsa's CRI metrics. Skipped otherwise.
import { BUSYBOX } from './images';
import { apply, isReady, kubectl, namespace, NODE, until, waitPod } from '../helpers/k8s';

const gates = process.env.CAPSA_K8S_FEATURE_GATES ?? '';
const on = (g: string): boolean => gates.split(',').includes(`${g}=true`);
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
