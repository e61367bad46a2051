// kubelet on capsa, through kubectl: pods from the API and from the static
// manifest dir, a Deployment rolled out and back, a Job, init containers,
// restart policies with kubelet's back-off, and deletion with a grace period.
import { promises as fs } from 'fs';
import * as path from 'path';
import { BUSYBOX } from './images';
import {
  apply,
  containerStatus,
  getJson,
  isReady,
  K8S_DIR,
  kubectl,
  kubectlRaw,
  suiteNamespace,
  NODE,
  phase,
  pod,
  until,
  waitPod,
  Pod,
} from '../helpers/k8s';

const NS = 'e2e-workloads';
suiteNamespace(NS);

function podOf(name: string, spec: object, labels: Record<string, string> = {}): object {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: NS, labels }, spec };
}

function sh(name: string, script: string, extra: object = {}): object {
  return { name, image: BUSYBOX, command: ['sh', '-c', script], ...extra };
}

test('a pod created through the API runs, logs and completes', async () => {
  await apply(
    podOf('hello', { restartPolicy: 'Never', containers: [sh('main', 'echo hello from capsa; echo $HOSTNAME')] }),
  );
  const p = await waitPod(NS, 'hello', 'Succeeded', (p) => phase(p) === 'Succeeded');
  expect(p.spec.nodeName).toBe(NODE);
  expect(containerStatus(p, 'main').state.terminated.exitCode).toBe(0);
  expect(containerStatus(p, 'main').containerID).toMatch(/^capsa:\/\/[0-9a-f]{64}$/);
  expect(await kubectl(['logs', '-n', NS, 'hello'])).toBe('hello from capsa\nhello\n');
}, 120_000);

test('a static pod from the manifest dir runs and is mirrored in the API', async () => {
  const file = path.join(K8S_DIR, 'manifests', 'e2e-static.json');
  const manifest = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'e2e-static', namespace: NS },
    spec: { containers: [sh('main', 'echo static; exec sleep 3600')], terminationGracePeriodSeconds: 1 },
  };
  // kubelet reads the dir as files change: write aside (dot files are ignored), then rename
  const tmp = path.join(path.dirname(file), '.e2e-static.json.tmp');
  await fs.writeFile(tmp, JSON.stringify(manifest));
  await fs.rename(tmp, file);
  try {
    const mirror = `e2e-static-${NODE}`;
    const p = await waitPod(NS, mirror, 'Running', (p) => isReady(p));
    expect(p.metadata.annotations['kubernetes.io/config.mirror']).toBeDefined();
    expect(await kubectl(['logs', '-n', NS, mirror])).toBe('static\n');
  } finally {
    await fs.rm(file, { force: true });
  }
  await until(
    'the static pod gone',
    async () => (await kubectlRaw(['get', 'pod', '-n', NS, `e2e-static-${NODE}`])).code !== 0,
  );
}, 180_000);

test('a Deployment rolls out, rolls out a new revision and rolls back', async () => {
  const labels = { app: 'web' };
  await apply({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', namespace: NS },
    spec: {
      replicas: 2,
      selector: { matchLabels: labels },
      strategy: { rollingUpdate: { maxUnavailable: 1, maxSurge: 1 } },
      template: {
        metadata: { labels },
        spec: {
          terminationGracePeriodSeconds: 1,
          containers: [sh('main', 'echo rev=$REV; exec sleep 3600', { env: [{ name: 'REV', value: 'one' }] })],
        },
      },
    },
  });
  await kubectl(['rollout', 'status', '-n', NS, 'deployment/web', '--timeout=120s'], { timeoutMs: 130_000 });
  await kubectl(['set', 'env', '-n', NS, 'deployment/web', 'REV=two']);
  await kubectl(['rollout', 'status', '-n', NS, 'deployment/web', '--timeout=120s'], { timeoutMs: 130_000 });
  const revLogs = async (): Promise<string[]> => {
    const pods = await getJson(['pods', '-n', NS, '-l', 'app=web']);
    const live = pods.items.filter((p: Pod) => !p.metadata.deletionTimestamp && isReady(p));
    return Promise.all(live.map((p: Pod) => kubectl(['logs', '-n', NS, p.metadata.name]).then((s) => s.trim())));
  };
  await until('two pods at rev two', async () => {
    const l = await revLogs();
    return l.length === 2 && l.every((s) => s === 'rev=two');
  });
  await kubectl(['rollout', 'undo', '-n', NS, 'deployment/web']);
  await kubectl(['rollout', 'status', '-n', NS, 'deployment/web', '--timeout=120s'], { timeoutMs: 130_000 });
  await until('two pods back at rev one', async () => {
    const l = await revLogs();
    return l.length === 2 && l.every((s) => s === 'rev=one');
  });
  await kubectl(['delete', 'deployment', '-n', NS, 'web', '--wait=true']);
}, 400_000);

test('a Job runs to completion', async () => {
  await apply({
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name: 'count', namespace: NS },
    spec: {
      completions: 2,
      parallelism: 2,
      backoffLimit: 0,
      template: { spec: { restartPolicy: 'Never', containers: [sh('main', 'for i in 1 2 3; do echo $i; done')] } },
    },
  });
  await kubectl(['wait', '-n', NS, '--for=condition=Complete', 'job/count', '--timeout=120s'], { timeoutMs: 130_000 });
  const job = await getJson(['job', '-n', NS, 'count']);
  expect(job.status.succeeded).toBe(2);
  await kubectl(['delete', 'job', '-n', NS, 'count', '--cascade=foreground', '--wait=true']);
}, 200_000);

test('init containers run in order, to completion, before the app container', async () => {
  await apply(
    podOf('inits', {
      restartPolicy: 'Never',
      volumes: [{ name: 'work', emptyDir: {} }],
      initContainers: [
        sh('first', 'echo first >> /work/order', { volumeMounts: [{ name: 'work', mountPath: '/work' }] }),
        sh('second', 'test -f /work/order && echo second >> /work/order', {
          volumeMounts: [{ name: 'work', mountPath: '/work' }],
        }),
      ],
      containers: [
        sh('main', 'echo main >> /work/order; cat /work/order', {
          volumeMounts: [{ name: 'work', mountPath: '/work' }],
        }),
      ],
    }),
  );
  const p = await waitPod(NS, 'inits', 'Succeeded', (p) => phase(p) === 'Succeeded');
  expect(containerStatus(p, 'first').state.terminated.exitCode).toBe(0);
  expect(containerStatus(p, 'second').state.terminated.exitCode).toBe(0);
  expect(await kubectl(['logs', '-n', NS, 'inits', '-c', 'main'])).toBe('first\nsecond\nmain\n');
}, 120_000);

test('restartPolicy: Always restarts with back-off, OnFailure stops at success, Never not at all', async () => {
  await apply(
    podOf('crashy', {
      restartPolicy: 'Always',
      containers: [sh('main', 'echo run; exit 3')],
      terminationGracePeriodSeconds: 1,
    }),
    podOf('flaky', {
      restartPolicy: 'OnFailure',
      volumes: [{ name: 'state', emptyDir: {} }],
      containers: [
        sh('main', 'if [ -f /state/once ]; then exit 0; fi; touch /state/once; exit 1', {
          volumeMounts: [{ name: 'state', mountPath: '/state' }],
        }),
      ],
    }),
    podOf('once', { restartPolicy: 'Never', containers: [sh('main', 'exit 7')] }),
  );
  const crashy = await waitPod(
    NS,
    'crashy',
    'in CrashLoopBackOff after 2 restarts',
    (p) => {
      const c = containerStatus(p, 'main');
      return c?.restartCount >= 2 && c?.state?.waiting?.reason === 'CrashLoopBackOff';
    },
    180_000,
  );
  expect(containerStatus(crashy, 'main').lastState.terminated.exitCode).toBe(3);
  // back-off: restarts are spaced out, so the count stays low for a while
  expect(containerStatus(crashy, 'main').restartCount).toBeLessThan(6);
  const flaky = await waitPod(NS, 'flaky', 'Succeeded', (p) => phase(p) === 'Succeeded', 120_000);
  expect(containerStatus(flaky, 'main').restartCount).toBe(1);
  const once = await waitPod(NS, 'once', 'Failed', (p) => phase(p) === 'Failed');
  expect(containerStatus(once, 'main').restartCount).toBe(0);
  expect(containerStatus(once, 'main').state.terminated.exitCode).toBe(7);
  await kubectl(['delete', 'pod', '-n', NS, 'crashy', 'flaky', 'once', '--wait=true']);
}, 300_000);

test('deletion with a grace period: SIGTERM first, SIGKILL once the grace period is over', async () => {
  await apply(
    podOf('polite', {
      terminationGracePeriodSeconds: 30,
      containers: [sh('main', 'trap "echo got TERM; exit 0" TERM; echo up; while true; do sleep 0.2; done')],
    }),
    podOf('stubborn', {
      terminationGracePeriodSeconds: 4,
      containers: [sh('main', 'trap "echo ignoring TERM" TERM; echo up; while true; do sleep 0.2; done')],
    }),
  );
  await waitPod(NS, 'polite', 'Ready', isReady);
  await waitPod(NS, 'stubborn', 'Ready', isReady);
  await until(
    'both started',
    async () =>
      (await kubectl(['logs', '-n', NS, 'polite'])).includes('up') &&
      (await kubectl(['logs', '-n', NS, 'stubborn'])).includes('up'),
  );
  const uid = (await pod(NS, 'stubborn')).metadata.uid;
  // polite exits on SIGTERM long before its 30 s grace period ends
  let t0 = Date.now();
  await kubectl(['delete', 'pod', '-n', NS, 'polite', '--wait=true', '--timeout=60s'], { timeoutMs: 70_000 });
  expect(Date.now() - t0).toBeLessThan(15_000);
  // stubborn ignores SIGTERM: kubelet kills it after its 4 s
  t0 = Date.now();
  const logs = kubectl(['logs', '-f', '-n', NS, 'stubborn'], { timeoutMs: 60_000 }).catch((e: Error) => e.message);
  await kubectl(['delete', 'pod', '-n', NS, 'stubborn', '--wait=true', '--timeout=60s'], { timeoutMs: 70_000 });
  const took = Date.now() - t0;
  expect(took).toBeGreaterThanOrEqual(3_500);
  expect(took).toBeLessThan(30_000);
  expect(await logs).toContain('ignoring TERM');
  expect(uid).toBeTruthy();
}, 200_000);
