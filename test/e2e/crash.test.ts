// kill -9 of capsa while pods run, then of kubelet: the containers keep
// running through it, and once both are back nothing is recreated and
// kubelet's log shows no error repeating.
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { BUSYBOX } from './images';
import {
  apply,
  containerStatus,
  getJson,
  isReady,
  K8S_RUN,
  k8sScript,
  kubectl,
  namespace,
  sleep,
  until,
  Pod,
} from '../helpers/k8s';

const NS = 'e2e-crash';
let dropNs: () => Promise<void>;
let beatDir: string;

beforeAll(async () => {
  dropNs = await namespace(NS);
  beatDir = await fs.mkdtemp(path.join(os.tmpdir(), 'capsa-e2e-beat-'));
}, 120_000);

afterAll(async () => {
  await dropNs?.();
  if (beatDir) await fs.rm(beatDir, { recursive: true, force: true });
}, 180_000);

async function pidOf(component: string): Promise<number> {
  return Number((await fs.readFile(path.join(K8S_RUN, 'pids', `${component}.pid`), 'utf8')).trim());
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function killHard(component: string): Promise<void> {
  const pid = await pidOf(component);
  process.kill(pid, 'SIGKILL');
  await until(`${component} (${pid}) gone`, async () => !alive(pid), 10_000);
}
function snapshot(pods: Pod): Map<string, string> {
  const out = new Map<string, string>();
  for (const p of pods.items) {
    for (const c of p.status.containerStatuses ?? [])
      out.set(`${p.metadata.name}/${c.name}`, `${c.containerID}#${c.restartCount}`);
  }
  return out;
}

test('pods survive kill -9 of capsa and then of kubelet; nothing is recreated', async () => {
  await apply({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'steady', namespace: NS },
    spec: {
      replicas: 3,
      selector: { matchLabels: { app: 'steady' } },
      template: {
        metadata: { labels: { app: 'steady' } },
        spec: {
          terminationGracePeriodSeconds: 1,
          volumes: [{ name: 'beat', hostPath: { path: beatDir } }],
          containers: [
            {
              name: 'main',
              image: BUSYBOX,
              command: ['sh', '-c', 'i=0; while true; do i=$((i+1)); echo $i > /beat/$HOSTNAME; sleep 0.2; done'],
              volumeMounts: [{ name: 'beat', mountPath: '/beat' }],
              readinessProbe: { exec: { command: ['true'] }, periodSeconds: 2 },
            },
          ],
        },
      },
    },
  });
  await kubectl(['rollout', 'status', '-n', NS, 'deployment/steady', '--timeout=120s'], { timeoutMs: 130_000 });
  const before = snapshot(await getJson(['pods', '-n', NS]));
  expect(before.size).toBe(3);

  try {
    await killHard('capsa');
    await sleep(2000);
    await killHard('kubelet');
    // the containers run on without either: their heartbeats keep moving
    const beats = async (): Promise<number[]> => {
      const files = (await fs.readdir(beatDir)).sort();
      return Promise.all(files.map(async (f) => Number((await fs.readFile(path.join(beatDir, f), 'utf8')).trim())));
    };
    const b1 = await beats();
    await sleep(1500);
    const b2 = await beats();
    expect(b2.length).toBe(3);
    b2.forEach((b, i) => expect(b).toBeGreaterThan(b1[i]));
  } finally {
    // up.sh starts what is not running: capsa, then kubelet
    await k8sScript('up.sh');
  }
  await kubectl(['rollout', 'status', '-n', NS, 'deployment/steady', '--timeout=120s'], { timeoutMs: 130_000 });
  // from here on the node has converged: give kubelet a few relists and pod
  // syncs on the recovered runtime, then no error may repeat
  const convergedAt = new Date();
  await sleep(20_000);
  const pods = await getJson(['pods', '-n', NS]);
  expect(snapshot(pods)).toEqual(before);
  for (const p of pods.items) expect(isReady(p) && containerStatus(p, 'main').state.running).toBeTruthy();

  // no error repeating in kubelet's log since it converged (while capsa was
  // down its calls failed, as they must)
  const log = await fs.readFile(path.join(K8S_RUN, 'logs', 'kubelet.log'), 'utf8');
  const counts = new Map<string, number>();
  for (const line of log.split('\n')) {
    const m = line.match(/^E(\d\d)(\d\d) (\d\d:\d\d:\d\d)\.\d+\s+\d+ (\S+)\] (.*)$/);
    if (!m) continue;
    const at = new Date(convergedAt);
    const [hh, mm, ss] = m[3].split(':').map(Number);
    at.setUTCHours(hh, mm, ss);
    if (at < new Date(convergedAt.getTime() - 1000)) continue;
    const key = `${m[4]} ${m[5].replace(/[0-9a-f]{64}/g, '<id>').replace(/\d+/g, 'N')}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const repeating = [...counts].filter(([, n]) => n > 2);
  expect(repeating).toEqual([]);
  await kubectl(['delete', 'deployment', '-n', NS, 'steady', '--wait=true']);
}, 400_000);
