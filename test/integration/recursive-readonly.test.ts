// Recursive read-only mounts through the real socket: a host directory with a
// filesystem mounted below it, given to a container read-only. A plain
// read-only bind leaves the submount writable; with recursive_read_only the
// monitor makes every mount below read-only too (mount_setattr), as kubelet
// asks when the pod says recursiveReadOnly: Enabled (node conformance: "Mount
// recursive read-only").
import { execFileSync } from 'child_process';
import { promises as fs } from 'fs';
import * as path from 'path';
import * as grpc from '@grpc/grpc-js';
import { kernelHasMountSetattr } from '../../src/cri/container-spec/host-io';
import { MountPropagation } from '../../src/gen/runtime/v1/api';
import { call, createContainer, expectRpcError, runp } from '../helpers/daemon';
import { BUSYBOX_IMAGE, BusyboxDaemon, startBusyboxDaemon, stopBusyboxDaemon } from '../helpers/busybox-daemon';

let b: BusyboxDaemon;
let data: string;

beforeAll(async () => {
  b = await startBusyboxDaemon();
  data = path.join(b.d.dir, 'data');
  await fs.mkdir(path.join(data, 'sub'), { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'capsa-rro-test', path.join(data, 'sub')]);
}, 600_000);

afterAll(async () => {
  // pods a failed test left (their binds hold the submount)
  const pods = (await call<{ items: { id: string }[] }>(b.d.runtime, 'listPodSandbox', {})).items;
  for (const p of pods) {
    await call(b.d.runtime, 'stopPodSandbox', { podSandboxId: p.id });
    await call(b.d.runtime, 'removePodSandbox', { podSandboxId: p.id });
  }
  if (data) execFileSync('umount', [path.join(data, 'sub')]);
  await stopBusyboxDaemon(b);
}, 120_000);

const maybe = kernelHasMountSetattr() ? test : test.skip;

async function waitExited(id: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const st = await call<{ status: { state: number } }>(b.d.runtime, 'containerStatus', { containerId: id });
    if (st.status.state === 2) return; // CONTAINER_EXITED
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`container ${id} did not exit`);
}

maybe('a recursive read-only bind makes the submount read-only; a plain read-only one does not', async () => {
  const { d } = b;
  const uid = `rro-${process.pid}`;
  const logs = path.join(d.dir, 'logs');
  const podCfg = { metadata: { name: 'rro', uid, namespace: 'ns', attempt: 0 }, logDirectory: logs };
  const pod = await runp(d, podCfg);
  const run = async (name: string, recursiveReadOnly: boolean): Promise<string> => {
    const id = await createContainer(d, pod, podCfg, {
      metadata: { name, attempt: 0 },
      image: { image: BUSYBOX_IMAGE },
      command: ['sh', '-c', 'touch /data/top 2>/dev/null; echo top=$?; touch /data/sub/f 2>/dev/null; echo sub=$?'],
      logPath: `${name}.log`,
      mounts: [
        {
          containerPath: '/data',
          hostPath: data,
          readonly: true,
          recursiveReadOnly,
          propagation: MountPropagation.PROPAGATION_PRIVATE,
        },
      ],
    });
    await call(d.runtime, 'startContainer', { containerId: id });
    await waitExited(id);
    return (await fs.readFile(path.join(logs, `${name}.log`), 'utf8'))
      .split('\n')
      .map((l) => l.split(' ').slice(3).join(' '))
      .join(' ')
      .trim();
  };
  expect(await run('plain', false)).toBe('top=1 sub=0');
  expect(await run('recursive', true)).toBe('top=1 sub=1');
  // the host's submount itself stays writable
  await fs.writeFile(path.join(data, 'sub', 'host'), 'x');

  // kubelet's conditions, checked here too: read-only and private propagation
  await expectRpcError(
    createContainer(d, pod, podCfg, {
      metadata: { name: 'bad', attempt: 0 },
      image: { image: BUSYBOX_IMAGE },
      mounts: [{ containerPath: '/data', hostPath: data, recursiveReadOnly: true }],
    }),
    grpc.status.INVALID_ARGUMENT,
    /config\.mounts\[0\]\.recursive_read_only: needs readonly/,
  );
  await call(d.runtime, 'stopPodSandbox', { podSandboxId: pod });
  await call(d.runtime, 'removePodSandbox', { podSandboxId: pod });
});
