// kubelet --cgroup-driver=systemd on capsa under a real systemd (the cluster
// of hack/sysd/k8s.sh; skipped on the default cgroupfs cluster). What kubelet
// makes and what capsa adds are units: the pod is kubelet's
// kubepods-burstable-pod<uid>.slice, each container a capsa-<id>.scope in it
// with Delegate=yes and its limits as unit properties (and in the cgroup
// files systemd wrote from them); the limits outlive `systemctl
// daemon-reload`, an in-place resize goes through the unit, and the pod runs
// on through a kill -9 of capsa, whose scopes are the same units afterwards.
// The suite runs inside systemd's namespaces (k8s.sh test): systemctl and
// /sys/fs/cgroup are that systemd's.
import { execFile } from 'child_process';
import { existsSync, promises as fs } from 'fs';
import * as path from 'path';
import { promisify } from 'util';
import { BUSYBOX } from './images';
import {
  apply,
  CGROUP_DRIVER,
  containerStatus,
  isReady,
  K8S_RUN,
  k8sScript,
  kubectl,
  pod,
  podCgroupOf,
  sleep,
  suiteNamespace,
  until,
  waitPod,
} from '../helpers/k8s';

const run = promisify(execFile);
const NS = 'e2e-systemd';
const V2 = existsSync('/sys/fs/cgroup/cgroup.controllers');
const systemd = CGROUP_DRIVER === 'systemd';
const describeSystemd = systemd ? describe : describe.skip;

async function show(unit: string, props: string[]): Promise<Record<string, string>> {
  const { stdout } = await run('systemctl', ['show', ...props.map((p) => `-p${p}`), unit]);
  return Object.fromEntries(
    stdout
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}
const read = async (f: string): Promise<string> => (await fs.readFile(f, 'utf8')).trim();
const cg = (controller: string, p: string, file: string): string =>
  path.join('/sys/fs/cgroup', V2 ? '' : controller, p, file);

describeSystemd('kubelet --cgroup-driver=systemd on capsa under a real systemd', () => {
  if (systemd) suiteNamespace(NS);

  test('a pod is a slice, its containers capsa-<id>.scope units; limits survive daemon-reload and a kill -9 of capsa', async () => {
    await apply({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'units', namespace: NS },
      spec: {
        terminationGracePeriodSeconds: 1,
        containers: ['a', 'b'].map((name) => ({
          name,
          image: BUSYBOX,
          command: ['sleep', '3600'],
          resources: { requests: { cpu: '100m', memory: '32Mi' }, limits: { cpu: '300m', memory: '96Mi' } },
        })),
      },
    });
    const p = await waitPod(NS, 'units', 'Ready', isReady, 120_000);
    expect(p.status.qosClass).toBe('Burstable');
    const podPath = '/' + podCgroupOf('Burstable', p.metadata.uid);
    const slice = path.basename(podPath);
    expect(slice).toBe(`kubepods-burstable-pod${p.metadata.uid.replace(/-/g, '_')}.slice`);
    // kubelet's slice, its limits its own (the sum of the containers')
    const s = await show(slice, ['ActiveState', 'ControlGroup', 'Description']);
    expect(s).toEqual({ ActiveState: 'active', ControlGroup: podPath, Description: `libcontainer container ${slice}` });

    const memProp = V2 ? 'MemoryMax' : 'MemoryLimit';
    const scopes = new Map<string, string>();
    for (const c of ['a', 'b']) {
      const id = (containerStatus(p, c).containerID as string).replace(/^[a-z]+:\/\//, '');
      expect(id).toMatch(/^[0-9a-f]{64}$/);
      const unit = `capsa-${id}.scope`;
      scopes.set(c, unit);
      const u = await show(unit, [
        'ActiveState',
        'Slice',
        'ControlGroup',
        'Delegate',
        'CPUQuotaPerSecUSec',
        memProp,
        'TasksMax',
      ]);
      expect(u).toEqual({
        ActiveState: 'active',
        Slice: slice,
        ControlGroup: `${podPath}/${unit}`,
        Delegate: 'yes',
        CPUQuotaPerSecUSec: '300ms',
        [memProp]: String(96 << 20),
        // no pids limit asked for: none (not systemd's DefaultTasksMax for scopes)
        TasksMax: 'infinity',
      });
      // the container's processes are the unit's
      const { stdout } = await run('systemctl', ['status', '--no-pager', unit]).catch((e) => e);
      expect(stdout).toMatch(/sleep 3600/);
    }
    const files = async (unit: string): Promise<string[]> => {
      const d = `${podPath}/${unit}`;
      return V2
        ? [await read(cg('cpu', d, 'cpu.max')), await read(cg('memory', d, 'memory.max'))]
        : [
            `${await read(cg('cpu', d, 'cpu.cfs_quota_us'))} ${await read(cg('cpu', d, 'cpu.cfs_period_us'))}`,
            await read(cg('memory', d, 'memory.limit_in_bytes')),
          ];
    };
    const want = ['30000 100000', String(96 << 20)];
    for (const unit of scopes.values()) expect(await files(unit)).toEqual(want);

    // daemon-reload re-applies every unit's properties from what systemd holds: the same limits
    await run('systemctl', ['daemon-reload']);
    await sleep(500);
    for (const unit of scopes.values()) {
      expect(await files(unit)).toEqual(want);
      expect((await show(unit, [memProp]))[memProp]).toBe(String(96 << 20));
    }

    // An in-place resize (kubelet's UpdateContainerResources): through the unit, and kept by daemon-reload.
    const resized = ['40000 100000', String(128 << 20)];
    const limits = { cpu: '400m', memory: '128Mi' };
    await kubectl([
      'patch',
      'pod',
      '-n',
      NS,
      'units',
      '--subresource',
      'resize',
      '--patch',
      JSON.stringify({ spec: { containers: [{ name: 'a', resources: { limits } }] } }),
    ]);
    const a = scopes.get('a')!;
    await until(
      'the resize to reach the unit',
      async () => (await show(a, ['CPUQuotaPerSecUSec'])).CPUQuotaPerSecUSec === '400ms',
      60_000,
    );
    expect((await show(a, [memProp]))[memProp]).toBe(String(128 << 20));
    await run('systemctl', ['daemon-reload']);
    await sleep(500);
    expect(await files(a)).toEqual(resized);
    expect(await files(scopes.get('b')!)).toEqual(want);
    const wantOf = (c: string): string[] => (c === 'a' ? resized : want);

    // kill -9 of capsa: the containers run on in the same units; up.sh starts capsa again
    const pid = Number(await read(path.join(K8S_RUN, 'pids', 'capsa.pid')));
    const before = (await show(scopes.get('a')!, ['MainPID', 'InvocationID'])).InvocationID;
    process.kill(pid, 'SIGKILL');
    await until('capsa gone', async () => !existsSync(`/proc/${pid}`), 10_000);
    for (const unit of scopes.values()) expect((await show(unit, ['ActiveState'])).ActiveState).toBe('active');
    await k8sScript('up.sh');
    await sleep(15_000); // a few of kubelet's relists on the recovered runtime
    const after = await pod(NS, 'units');
    expect(isReady(after)).toBe(true);
    for (const c of ['a', 'b']) {
      expect(containerStatus(after, c).restartCount).toBe(0);
      expect(`capsa-${(containerStatus(after, c).containerID as string).replace(/^[a-z]+:\/\//, '')}.scope`).toBe(
        scopes.get(c),
      );
    }
    expect((await show(scopes.get('a')!, ['InvocationID'])).InvocationID).toBe(before);
    for (const [c, unit] of scopes) expect(await files(unit)).toEqual(wantOf(c));
  }, 300_000);
});
