// The volumes kubelet makes and capsa mounts: emptyDir (disk and memory),
// hostPath, configMap, secret, the projected service-account token, the
// downward API, and subPath.
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { BUSYBOX } from './images';
import { apply, kubectl, namespace, phase, waitPod } from '../helpers/k8s';

const NS = 'e2e-volumes';
let dropNs: () => Promise<void>;
let hostDir: string;

beforeAll(async () => {
  dropNs = await namespace(NS);
  hostDir = await fs.mkdtemp(path.join(os.tmpdir(), 'capsa-e2e-hostpath-'));
  await fs.writeFile(path.join(hostDir, 'from-host'), 'host data\n');
}, 120_000);

afterAll(async () => {
  await dropNs?.();
  if (hostDir) await fs.rm(hostDir, { recursive: true, force: true });
}, 180_000);

async function runToEnd(name: string, spec: object): Promise<string> {
  await apply({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: NS, labels: { tier: 'e2e' } }, spec });
  const p = await waitPod(NS, name, 'finished', (p) => ['Succeeded', 'Failed'].includes(phase(p)), 120_000);
  const logs = await kubectl(['logs', '-n', NS, name]);
  expect({ phase: phase(p), logs }).toEqual({ phase: 'Succeeded', logs });
  return logs;
}

test('emptyDir on disk and in memory, shared between containers', async () => {
  const logs = await runToEnd('emptydir', {
    restartPolicy: 'Never',
    volumes: [
      { name: 'disk', emptyDir: {} },
      { name: 'mem', emptyDir: { medium: 'Memory', sizeLimit: '16Mi' } },
    ],
    initContainers: [
      {
        name: 'writer',
        image: BUSYBOX,
        command: ['sh', '-c', 'echo d > /disk/f; echo m > /mem/f'],
        volumeMounts: [
          { name: 'disk', mountPath: '/disk' },
          { name: 'mem', mountPath: '/mem' },
        ],
      },
    ],
    containers: [
      {
        name: 'main',
        image: BUSYBOX,
        command: ['sh', '-c', 'cat /disk/f /mem/f; grep " /mem " /proc/mounts | cut -d" " -f3'],
        volumeMounts: [
          { name: 'disk', mountPath: '/disk' },
          { name: 'mem', mountPath: '/mem' },
        ],
      },
    ],
  });
  expect(logs).toBe('d\nm\ntmpfs\n');
}, 150_000);

test('hostPath, read-only and read-write', async () => {
  const logs = await runToEnd('hostpath', {
    restartPolicy: 'Never',
    volumes: [{ name: 'h', hostPath: { path: hostDir, type: 'Directory' } }],
    containers: [
      {
        name: 'main',
        image: BUSYBOX,
        command: [
          'sh',
          '-c',
          'cat /h/from-host; echo back > /rw/from-pod; touch /h/x 2>/dev/null && echo writable || echo read-only',
        ],
        volumeMounts: [
          { name: 'h', mountPath: '/h', readOnly: true },
          { name: 'h', mountPath: '/rw' },
        ],
      },
    ],
  });
  expect(logs).toBe('host data\nread-only\n');
  expect(await fs.readFile(path.join(hostDir, 'from-pod'), 'utf8')).toBe('back\n');
}, 150_000);

test('configMap, secret, downward API and the projected service-account token', async () => {
  await apply(
    {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'cfg', namespace: NS },
      data: { 'app.conf': 'colour=blue\n' },
    },
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'sec', namespace: NS }, stringData: { password: 's3cret' } },
  );
  const logs = await runToEnd('projected', {
    restartPolicy: 'Never',
    volumes: [
      { name: 'cfg', configMap: { name: 'cfg' } },
      { name: 'sec', secret: { secretName: 'sec', defaultMode: 0o400 } },
      {
        name: 'info',
        downwardAPI: {
          items: [
            { path: 'name', fieldRef: { fieldPath: 'metadata.name' } },
            { path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } },
            { path: 'mem', resourceFieldRef: { containerName: 'main', resource: 'limits.memory', divisor: '1Mi' } },
          ],
        },
      },
    ],
    containers: [
      {
        name: 'main',
        image: BUSYBOX,
        resources: { limits: { memory: '64Mi' } },
        env: [{ name: 'MY_POD', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }],
        command: [
          'sh',
          '-c',
          [
            'cat /cfg/app.conf',
            'cat /sec/password; echo',
            'stat -L -c %a /sec/password',
            'cat /info/name; echo',
            'cat /info/labels; echo',
            'cat /info/mem; echo',
            'echo env=$MY_POD',
            'T=/var/run/secrets/kubernetes.io/serviceaccount',
            'test -s $T/token && echo token-ok',
            'cat $T/namespace; echo',
            'grep -q "BEGIN CERTIFICATE" $T/ca.crt && echo ca-ok',
          ].join('; '),
        ],
        volumeMounts: [
          { name: 'cfg', mountPath: '/cfg' },
          { name: 'sec', mountPath: '/sec' },
          { name: 'info', mountPath: '/info' },
        ],
      },
    ],
  });
  expect(logs).toBe(
    [
      'colour=blue',
      's3cret',
      '400',
      'projected',
      'tier="e2e"',
      '64',
      'env=projected',
      'token-ok',
      NS,
      'ca-ok',
      '',
    ].join('\n'),
  );
}, 150_000);

test('subPath mounts one file and one directory of a volume', async () => {
  await apply({
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'files', namespace: NS },
    data: { 'one.txt': 'one\n', 'two.txt': 'two\n' },
  });
  const logs = await runToEnd('subpath', {
    restartPolicy: 'Never',
    volumes: [
      { name: 'files', configMap: { name: 'files' } },
      { name: 'scratch', emptyDir: {} },
    ],
    initContainers: [
      {
        name: 'prep',
        image: BUSYBOX,
        command: ['sh', '-c', 'mkdir -p /s/sub && echo in-sub > /s/sub/f'],
        volumeMounts: [{ name: 'scratch', mountPath: '/s' }],
      },
    ],
    containers: [
      {
        name: 'main',
        image: BUSYBOX,
        command: ['sh', '-c', 'cat /etc/one.txt; ls /etc | grep -c two.txt; cat /data/f'],
        volumeMounts: [
          { name: 'files', mountPath: '/etc/one.txt', subPath: 'one.txt' },
          { name: 'scratch', mountPath: '/data', subPath: 'sub' },
        ],
      },
    ],
  });
  expect(logs).toBe('one\n0\nin-sub\n');
}, 150_000);
