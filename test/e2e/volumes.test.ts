// The volumes kubelet makes and capsa mounts: emptyDir (disk and memory),
// hostPath, configMap, secret, the projected service-account token, the
// downward API, subPath, an OCI image as a volume (ImageVolume, GA in
// 1.36), and all of it in a pod with its own user namespace (hostUsers:
// false, GA in 1.36) when capsa's Status says the node can do that.
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { AGNHOST, BUSYBOX } from './images';
import { apply, CAPSA_SOCKET, K8S_BIN, kubectl, namespace, phase, waitPod } from '../helpers/k8s';
import { execFile } from 'child_process';
import { promisify } from 'util';

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

async function runToEnd(name: string, spec: object, before: object[] = []): Promise<string> {
  await apply(...before, {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: NS, labels: { tier: 'e2e' } },
    spec,
  });
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

test('an image volume: the image read-only in the container, a sub path of it', async () => {
  const logs = await runToEnd('image-volume', {
    restartPolicy: 'Never',
    volumes: [{ name: 'img', image: { reference: AGNHOST, pullPolicy: 'IfNotPresent' } }],
    containers: [
      {
        name: 'main',
        image: BUSYBOX,
        command: [
          'sh',
          '-c',
          'test -x /img/agnhost && echo has-agnhost; touch /img/x 2>/dev/null || echo read-only; ls /sub | grep -c .',
        ],
        volumeMounts: [
          { name: 'img', mountPath: '/img' },
          { name: 'img', mountPath: '/sub', subPath: 'etc' },
        ],
      },
    ],
  });
  const [has, ro, count] = logs.trim().split('\n');
  expect([has, ro]).toEqual(['has-agnhost', 'read-only']);
  // the image's /etc, not an empty directory
  expect(Number(count)).toBeGreaterThan(0);
}, 150_000);

async function crictlInfo(): Promise<string> {
  const { stdout } = await promisify(execFile)(path.join(K8S_BIN, 'crictl'), ['-r', `unix://${CAPSA_SOCKET}`, 'info'], {
    timeout: 30_000,
  });
  return stdout;
}

/** Whether capsa's Status advertises user namespaces (what kubelet checks before it runs a hostUsers: false pod). */
async function nodeHasUserNamespaces(): Promise<boolean> {
  const info = JSON.parse(await crictlInfo());
  const handlers: { name?: string; features?: { user_namespaces?: boolean } }[] = info.runtimeHandlers ?? [];
  return handlers.some((h) => (h.name ?? '') === '' && h.features?.user_namespaces === true);
}

test('a pod with hostUsers: false runs in its own user namespace, its volumes still writable', async () => {
  if (!(await nodeHasUserNamespaces())) {
    console.warn('capsa does not advertise user namespaces on this host: hostUsers: false not tested');
    return;
  }
  const logs = await runToEnd(
    'userns',
    {
      restartPolicy: 'Never',
      hostUsers: false,
      volumes: [
        { name: 'scratch', emptyDir: {} },
        { name: 'cfg', configMap: { name: 'userns-cfg' } },
      ],
      containers: [
        {
          name: 'main',
          image: BUSYBOX,
          command: ['sh', '-c', 'cat /proc/self/uid_map; id -u; echo hi > /s/f && cat /s/f; cat /c/k'],
          volumeMounts: [
            { name: 'scratch', mountPath: '/s' },
            { name: 'cfg', mountPath: '/c' },
          ],
        },
      ],
    },
    [{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'userns-cfg', namespace: NS }, data: { k: 'v' } }],
  );
  const [map, uid, wrote, cfg] = logs.trim().split('\n');
  const [inside, outside, length] = map.trim().split(/\s+/).map(Number);
  // root inside is an unprivileged id on the host, 65536 ids per pod as kubelet allocates them
  expect([inside, length, uid]).toEqual([0, 65536, '0']);
  expect(outside).toBeGreaterThanOrEqual(65536);
  expect([wrote, cfg]).toEqual(['hi', 'v']);
}, 150_000);
