// kubelet's probes against capsa's containers: exec probes go through
// ExecSync, HTTP/TCP/gRPC probes reach the pod IP capsa's CNI set up.
import { AGNHOST, BUSYBOX } from './images';
import { apply, containerStatus, isReady, kubectl, suiteNamespace, pod, sleep, waitPod } from '../helpers/k8s';

const NS = 'e2e-probes';
suiteNamespace(NS);

function podOf(name: string, containers: object[]): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: NS },
    spec: { terminationGracePeriodSeconds: 1, containers },
  };
}

const fast = { periodSeconds: 1, timeoutSeconds: 2, failureThreshold: 2 };

test('exec liveness: a failing probe restarts the container', async () => {
  await apply(
    podOf('exec-live', [
      {
        name: 'main',
        image: BUSYBOX,
        command: ['sh', '-c', 'touch /tmp/healthy; sleep 4; rm /tmp/healthy; exec sleep 3600'],
        livenessProbe: { exec: { command: ['cat', '/tmp/healthy'] }, initialDelaySeconds: 1, ...fast },
      },
    ]),
  );
  const p = await waitPod(
    NS,
    'exec-live',
    'restarted by its liveness probe',
    (p) => containerStatus(p, 'main')?.restartCount >= 1,
    120_000,
  );
  expect(containerStatus(p, 'main').lastState.terminated).toBeDefined();
}, 150_000);

test('exec readiness and startup probes gate Ready', async () => {
  await apply(
    podOf('exec-ready', [
      {
        name: 'main',
        image: BUSYBOX,
        command: ['sh', '-c', 'sleep 3; touch /tmp/started; sleep 2; touch /tmp/ready; exec sleep 3600'],
        startupProbe: { exec: { command: ['test', '-f', '/tmp/started'] }, periodSeconds: 1, failureThreshold: 30 },
        readinessProbe: { exec: { command: ['test', '-f', '/tmp/ready'] }, periodSeconds: 1 },
      },
    ]),
  );
  const started = await waitPod(
    NS,
    'exec-ready',
    'started',
    (p) => containerStatus(p, 'main')?.started === true,
    60_000,
  );
  expect(containerStatus(started, 'main').restartCount).toBe(0);
  const ready = await waitPod(NS, 'exec-ready', 'Ready', isReady, 60_000);
  expect(containerStatus(ready, 'main').ready).toBe(true);
  // readiness keeps answering through ExecSync while it runs
  await sleep(3000);
  expect(isReady(await pod(NS, 'exec-ready'))).toBe(true);
}, 120_000);

test('HTTP liveness: agnhost liveness turns unhealthy after 10 s and is restarted', async () => {
  await apply(
    podOf('http-live', [
      {
        name: 'main',
        image: AGNHOST,
        args: ['liveness'],
        livenessProbe: { httpGet: { path: '/healthz', port: 8080 }, initialDelaySeconds: 2, ...fast },
      },
    ]),
  );
  await waitPod(NS, 'http-live', 'running', (p) => containerStatus(p, 'main')?.state?.running !== undefined);
  const p = await waitPod(NS, 'http-live', 'restarted', (p) => containerStatus(p, 'main')?.restartCount >= 1, 120_000);
  expect(containerStatus(p, 'main').restartCount).toBeGreaterThanOrEqual(1);
}, 150_000);

// netexec's /healthz answers 200 once its UDP server is up
test('HTTP and TCP readiness against agnhost netexec', async () => {
  await apply(
    podOf('http-ready', [
      {
        name: 'main',
        image: AGNHOST,
        args: ['netexec', '--http-port=8080', '--udp-port=8081'],
        readinessProbe: { httpGet: { path: '/healthz', port: 8080 }, periodSeconds: 1 },
        livenessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 1, failureThreshold: 3 },
      },
    ]),
    podOf('tcp-closed', [
      {
        name: 'main',
        image: AGNHOST,
        args: ['netexec', '--http-port=8080', '--udp-port=8081'],
        readinessProbe: { tcpSocket: { port: 8999 }, periodSeconds: 1 },
      },
    ]),
  );
  await waitPod(NS, 'http-ready', 'Ready', isReady, 90_000);
  await sleep(5000);
  const p = await pod(NS, 'http-ready');
  expect(isReady(p)).toBe(true);
  expect(containerStatus(p, 'main').restartCount).toBe(0);
  const closed = await waitPod(
    NS,
    'tcp-closed',
    'running',
    (p) => containerStatus(p, 'main')?.state?.running !== undefined,
  );
  await sleep(4000);
  expect(isReady(await pod(NS, 'tcp-closed'))).toBe(false);
  expect(closed.status.podIP).toMatch(/^10\.244\./);
}, 150_000);

test('gRPC liveness: NOT_SERVING restarts the container', async () => {
  await apply(
    podOf('grpc-live', [
      {
        name: 'main',
        image: AGNHOST,
        args: ['grpc-health-checking', '--port=5000', '--http-port=8080', '--delay-unhealthy-sec=6'],
        readinessProbe: { grpc: { port: 5000 }, periodSeconds: 1 },
        livenessProbe: { grpc: { port: 5000 }, initialDelaySeconds: 1, ...fast },
      },
    ]),
  );
  await waitPod(NS, 'grpc-live', 'Ready', isReady, 90_000);
  const p = await waitPod(NS, 'grpc-live', 'restarted', (p) => containerStatus(p, 'main')?.restartCount >= 1, 120_000);
  expect(containerStatus(p, 'main').lastState.terminated).toBeDefined();
  await kubectl(['delete', 'pod', '-n', NS, '--all', '--wait=true']);
}, 200_000);
