// Image volumes (CRI Mount.image) through the real socket, as kubelet's
// ImageVolume feature drives them: two images pulled, a container of the
// first with the second mounted read-only (its root and a sub path), read
// from inside with ExecSync; RemoveImage refused while the container
// exists, across a kill -9 of the daemon, and fine once it is removed; bad
// requests name their field and leave nothing mounted.
import * as grpc from '@grpc/grpc-js';
import { promises as fs } from 'fs';
import * as path from 'path';
import { usernsSupport } from '../../src/containerizer/isolators/namespaces/userns-probe';
import { ContainerState, NamespaceMode } from '../../src/gen/runtime/v1/api';
import { readMountInfo } from '../../src/provisioner/backends/mounts';
import { BUSYBOX_IMAGE, BusyboxDaemon, startBusyboxDaemon, stopBusyboxDaemon } from '../helpers/busybox-daemon';
import { TestDaemon, call, createContainer, expectRpcError, runp, startDaemon, waitForExit } from '../helpers/daemon';
import { ensureTestImages } from '../helpers/registry';

jest.setTimeout(180_000);

const LAYERS_IMAGE = 'registry.example.test/capsa-test/layers:latest';

let b: BusyboxDaemon;
let layersId: string;
let seq = 0;

beforeAll(async () => {
  b = await startBusyboxDaemon();
  const images = await ensureTestImages();
  await b.reg.push(images.layers.layout, 'capsa-test/layers:latest');
  layersId = (await call<{ imageRef: string }>(b.d.image, 'pullImage', { image: { image: LAYERS_IMAGE } }, 120_000))
    .imageRef;
}, 600_000);

afterAll(async () => {
  if (b?.d) await removePods(b.d);
  await stopBusyboxDaemon(b);
}, 120_000);

async function removePods(d: TestDaemon): Promise<void> {
  const { items } = await call<{ items: { id: string }[] }>(d.runtime, 'listPodSandbox', {});
  for (const p of items) {
    await call(d.runtime, 'stopPodSandbox', { podSandboxId: p.id }, 60_000);
    await call(d.runtime, 'removePodSandbox', { podSandboxId: p.id }, 60_000);
  }
}

function podConfig(): Record<string, unknown> {
  const uid = `iv-${process.pid}-${++seq}`;
  return {
    metadata: { name: `image-volume-${seq}`, uid, namespace: 'capsa-tests', attempt: 0 },
    logDirectory: path.join(b.d.dir, 'logs', uid),
    linux: {},
  };
}

async function exec(d: TestDaemon, id: string, cmd: string[]): Promise<{ out: string; code: number }> {
  const r = await call<{ stdout: Buffer; stderr: Buffer; exitCode: number }>(
    d.runtime,
    'execSync',
    { containerId: id, cmd, timeout: 20n },
    30_000,
  );
  return { out: (r.stdout.toString() + r.stderr.toString()).trim(), code: r.exitCode };
}

/** Mounts on the host below the daemon's per-container backend dirs (the image volumes). */
async function volumeMounts(d: TestDaemon): Promise<string[]> {
  const dir = path.join(d.root, 'rootfs') + '/';
  return (await readMountInfo()).filter((m) => m.mountPoint.startsWith(dir)).map((m) => m.mountPoint);
}

async function imageIds(d: TestDaemon): Promise<string[]> {
  return (await call<{ images: { id: string }[] }>(d.image, 'listImages', {})).images.map((i) => i.id);
}

test('an image mounted read-only (root and sub path), held against RemoveImage until its container goes, across kill -9', async () => {
  let d = b.d;
  const podCfg = podConfig();
  const pod = await runp(d, podCfg);
  const id = await createContainer(d, pod, podCfg, {
    metadata: { name: 'uses-volume', attempt: 0 },
    image: { image: BUSYBOX_IMAGE },
    mounts: [
      // as kubelet sends it: the id PullImage answered, the pod's reference beside it
      { containerPath: '/iv', readonly: true, image: { image: layersId, userSpecifiedImage: LAYERS_IMAGE } },
      { containerPath: '/iv-sub', readonly: true, image: { image: LAYERS_IMAGE }, imageSubPath: 'layers/opaque' },
    ],
  });
  await call(d.runtime, 'startContainer', { containerId: id });

  // The merged image: layer 3 rewrote keep.txt, whited out gone.txt, emptied opaque/.
  expect(await exec(d, id, ['cat', '/iv/layers/keep.txt'])).toEqual({ out: 'layer3', code: 0 });
  expect((await exec(d, id, ['ls', '/iv/layers'])).out.split('\n')).not.toContain('gone.txt');
  expect(await exec(d, id, ['ls', '/iv-sub'])).toEqual({ out: 'new', code: 0 });
  // Read-only; binaries in it run (no noexec), nosuid and nodev.
  expect((await exec(d, id, ['touch', '/iv/x'])).code).not.toBe(0);
  expect((await exec(d, id, ['sh', '-c', 'echo x > /iv-sub/new'])).code).not.toBe(0);
  expect(await exec(d, id, ['/iv/bin/busybox', 'echo', 'runs'])).toEqual({ out: 'runs', code: 0 });
  const line = (await exec(d, id, ['grep', ' /iv ', '/proc/self/mountinfo'])).out;
  expect(line.split(' ')[5].split(',')).toEqual(expect.arrayContaining(['ro', 'nosuid', 'nodev']));
  // The container's own rootfs is still its own image, writable.
  expect((await exec(d, id, ['touch', '/tmp/ok'])).code).toBe(0);

  // Status names the image as asked, with the id PullImage answered as image_ref (critest checks it).
  const st = await call<{
    status: { mounts: { containerPath: string; hostPath: string; image?: { image: string; imageRef: string } }[] };
  }>(d.runtime, 'containerStatus', { containerId: id });
  const iv = st.status.mounts.find((m) => m.containerPath === '/iv')!;
  expect(iv.image).toMatchObject({ image: layersId, imageRef: layersId });
  expect(st.status.mounts.find((m) => m.containerPath === '/iv-sub')?.image?.imageRef).toBe(layersId);
  expect(iv.hostPath.startsWith(path.join(d.root, 'rootfs', id, 'volumes'))).toBe(true);
  expect((await volumeMounts(d)).length).toBeGreaterThanOrEqual(2);

  const refused = (): Promise<void> =>
    expectRpcError(
      call(d.image, 'removeImage', { image: { image: LAYERS_IMAGE } }),
      grpc.status.FAILED_PRECONDITION,
      new RegExp(`image ${layersId} is in use as an image volume by container:${id}`),
    );
  await refused();

  // kill -9 and a new daemon on the same dirs: the container runs on, its volume still held.
  d.proc.kill('SIGKILL');
  await waitForExit(d.proc);
  d = b.d = await startDaemon({ dir: d.dir, toml: await fs.readFile(path.join(d.dir, 'capsa.toml'), 'utf8') });
  expect(await exec(d, id, ['cat', '/iv/layers/l4.txt'])).toEqual({ out: 'layer4', code: 0 });
  await refused();

  // Stopped, it still holds the image (its mounts go with it at removal, as its rootfs does).
  await call(d.runtime, 'stopContainer', { containerId: id, timeout: 10n }, 30_000);
  await refused();
  await call(d.runtime, 'removeContainer', { containerId: id }, 30_000);
  expect(await volumeMounts(d)).toEqual([]);
  await call(d.image, 'removeImage', { image: { image: LAYERS_IMAGE } });
  expect(await imageIds(d)).not.toContain(layersId);
  await call(d.runtime, 'stopPodSandbox', { podSandboxId: pod }, 60_000);
  await call(d.runtime, 'removePodSandbox', { podSandboxId: pod }, 60_000);
  // pulled again for the next test
  await call(d.image, 'pullImage', { image: { image: LAYERS_IMAGE } }, 120_000);
});

test('bad image volumes: an error naming the field, nothing made', async () => {
  const d = b.d;
  const podCfg = podConfig();
  const pod = await runp(d, podCfg);
  const make = (mount: Record<string, unknown>): Promise<string> =>
    createContainer(d, pod, podCfg, {
      metadata: { name: 'bad-volume', attempt: 0 },
      image: { image: BUSYBOX_IMAGE },
      mounts: [
        { containerPath: '/ok', hostPath: d.dir },
        { containerPath: '/iv', readonly: true, ...mount },
      ],
    });
  const F = 'config\\.mounts\\[1\\]';
  const cases: [Record<string, unknown>, grpc.status, string][] = [
    [
      { image: { image: 'registry.example.test/capsa-test/never-pulled:1' } },
      grpc.status.NOT_FOUND,
      `${F}\\.image: image "registry.example.test/capsa-test/never-pulled:1" is not on this node: pull it first`,
    ],
    [{ image: { image: layersId }, readonly: false }, grpc.status.INVALID_ARGUMENT, `${F}\\.readonly: must be true`],
    [{ image: { image: layersId }, hostPath: d.dir }, grpc.status.INVALID_ARGUMENT, `${F}\\.host_path: must be empty`],
    [
      { image: { image: layersId }, imageSubPath: '../etc' },
      grpc.status.INVALID_ARGUMENT,
      `${F}\\.image_sub_path: "\\.\\./etc" must not contain "\\.\\."`,
    ],
    [
      { image: { image: layersId }, imageSubPath: 'layers/symlink-abs' },
      grpc.status.INVALID_ARGUMENT,
      `${F}\\.image_sub_path: "layers/symlink-abs" leaves the image through the absolute symlink`,
    ],
    [
      { image: { image: layersId }, imageSubPath: 'layers/keep.txt' },
      grpc.status.INVALID_ARGUMENT,
      `${F}\\.image_sub_path: "layers/keep.txt" is not a directory`,
    ],
    [
      { image: { image: layersId }, imageSubPath: 'not-existing' },
      grpc.status.INVALID_ARGUMENT,
      `${F}\\.image_sub_path: "not-existing" does not exist in the image`,
    ],
    [
      { image: { image: layersId }, mountOptions: ['rw'] },
      grpc.status.INVALID_ARGUMENT,
      `${F}\\.mount_options\\[0\\]: "rw" is not allowed on an image volume`,
    ],
  ];
  for (const [mount, code, details] of cases) {
    // (a stage's errors carry its name first: "preparing: config.mounts[1]…")
    await expectRpcError(make(mount), code, new RegExp(`^((preparing|isolating): )?${details}`));
    const { containers } = await call<{ containers: unknown[] }>(d.runtime, 'listContainers', {});
    expect(containers).toEqual([]);
    expect(await volumeMounts(d)).toEqual([]);
  }
  // Nothing held the image either: it can go (and come back).
  await call(d.image, 'removeImage', { image: { image: layersId } });
  await call(d.image, 'pullImage', { image: { image: LAYERS_IMAGE } }, 120_000);
  await call(d.runtime, 'stopPodSandbox', { podSandboxId: pod }, 60_000);
  await call(d.runtime, 'removePodSandbox', { podSandboxId: pod }, 60_000);
});

test('two containers of two pods share one pulled image as a volume; each holds it', async () => {
  const d = b.d;
  const made: { pod: string; id: string }[] = [];
  for (let i = 0; i < 2; i++) {
    const podCfg = podConfig();
    const pod = await runp(d, podCfg);
    const id = await createContainer(d, pod, podCfg, {
      metadata: { name: 'shares', attempt: 0 },
      image: { image: BUSYBOX_IMAGE },
      mounts: [{ containerPath: '/etc-of-image', readonly: true, image: { image: layersId }, imageSubPath: 'etc' }],
    });
    await call(d.runtime, 'startContainer', { containerId: id });
    made.push({ pod, id });
  }
  for (const { id } of made) expect((await exec(d, id, ['cat', '/etc-of-image/passwd'])).out).toMatch(/^root:/);
  // Stopping the pod stops and removes nothing of the hold; removing the first leaves the second's.
  await call(d.runtime, 'stopPodSandbox', { podSandboxId: made[0].pod }, 60_000);
  await call(d.runtime, 'removePodSandbox', { podSandboxId: made[0].pod }, 60_000);
  await expectRpcError(
    call(d.image, 'removeImage', { image: { image: layersId } }),
    grpc.status.FAILED_PRECONDITION,
    new RegExp(`in use as an image volume by container:${made[1].id}: remove that first`),
  );
  const st = await call<{ status: { state: ContainerState } }>(d.runtime, 'containerStatus', {
    containerId: made[1].id,
  });
  expect(st.status.state).toBe(ContainerState.CONTAINER_RUNNING);
  await call(d.runtime, 'stopPodSandbox', { podSandboxId: made[1].pod }, 60_000);
  await call(d.runtime, 'removePodSandbox', { podSandboxId: made[1].pod }, 60_000);
  expect(await volumeMounts(d)).toEqual([]);
  await call(d.image, 'removeImage', { image: { image: layersId } });
});

// kubelet's hostUsers: false: the pod's user namespace maps 0→100000; the image
// volume is made of idmapped layers, so the image's owners show as they are in it.
test('in a pod with a user namespace the image volume shows the image owners through the mapping', async () => {
  if (!(await usernsSupport(b.d.root)).ok) {
    console.warn('skipped: this host cannot run pods in user namespaces (usernsSupport)');
    return;
  }
  const d = b.d;
  await call(d.image, 'pullImage', { image: { image: LAYERS_IMAGE } }, 120_000);
  const MAP = [{ containerId: 0, hostId: 100000, length: 65536 }];
  const usernsOptions = { mode: NamespaceMode.POD, uids: MAP, gids: MAP };
  const podCfg = { ...podConfig(), linux: { securityContext: { namespaceOptions: { usernsOptions } } } };
  const pod = await runp(d, podCfg);
  const id = await createContainer(d, pod, podCfg, {
    metadata: { name: 'userns-volume', attempt: 0 },
    image: { image: BUSYBOX_IMAGE },
    linux: { securityContext: { namespaceOptions: { usernsOptions } } },
    mounts: [
      // kubelet sends the pod's mappings on every mount of such a pod
      { containerPath: '/iv', readonly: true, image: { image: layersId }, uidMappings: MAP, gidMappings: MAP },
      { containerPath: '/iv1', readonly: true, image: { image: BUSYBOX_IMAGE }, uidMappings: MAP, gidMappings: MAP },
    ],
  });
  await call(d.runtime, 'startContainer', { containerId: id });
  // owned.txt is 1000:1000 in the layer, / is root's: not nobody (65534) as unmapped host ids would be
  expect(await exec(d, id, ['stat', '-c', '%u:%g', '/iv/layers/owned.txt', '/iv'])).toEqual({
    out: '1000:1000\n0:0',
    code: 0,
  });
  expect((await exec(d, id, ['stat', '-c', '%u', '/iv1/bin/busybox'])).out).toBe('0');
  expect((await exec(d, id, ['cat', '/iv/layers/keep.txt'])).out).toBe('layer3');
  expect((await exec(d, id, ['touch', '/iv/x'])).code).not.toBe(0);
  await call(d.runtime, 'stopPodSandbox', { podSandboxId: pod }, 60_000);
  await call(d.runtime, 'removePodSandbox', { podSandboxId: pod }, 60_000);
  expect(await volumeMounts(d)).toEqual([]);
});
