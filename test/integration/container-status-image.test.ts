// ContainerStatus.image through the real socket, as kubelet creates
// containers: config.image.image is the image id, user_specified_image the
// name in the pod spec. kubelet shows status.image as the container's image
// (the node conformance "image updated" specs wait for it to become the new
// name), so it must be the image's tag, not the id.
import * as path from 'path';
import { statusImageName } from '../../src/cri/container-mapping';
import { call, createContainer, runp } from '../helpers/daemon';
import { BUSYBOX_IMAGE, BusyboxDaemon, startBusyboxDaemon, stopBusyboxDaemon } from '../helpers/busybox-daemon';

let b: BusyboxDaemon;

beforeAll(async () => {
  b = await startBusyboxDaemon();
}, 600_000);

afterAll(async () => {
  await stopBusyboxDaemon(b);
}, 120_000);

interface Status {
  image: { image: string; userSpecifiedImage: string };
  imageRef: string;
  imageId: string;
}

test('status.image is the tag the pod named; list keeps what CreateContainer was given', async () => {
  const { d } = b;
  const img = await call<{ image: { id: string; repoDigests: string[] } }>(d.image, 'imageStatus', {
    image: { image: BUSYBOX_IMAGE },
  });
  const id = img.image.id;
  expect(id).toMatch(/^sha256:[0-9a-f]{64}$/);
  const uid = `status-image-${process.pid}`;
  const podCfg = {
    metadata: { name: 'imgpod', uid, namespace: 'ns', attempt: 0 },
    logDirectory: path.join(d.dir, uid),
  };
  const pod = await runp(d, podCfg);
  const create = (name: string, image: Record<string, unknown>): Promise<string> =>
    createContainer(d, pod, podCfg, {
      metadata: { name, attempt: 0 },
      image,
      command: ['true'],
      logPath: `${name}.log`,
    });
  const status = async (c: string): Promise<Status> =>
    (await call<{ status: Status }>(d.runtime, 'containerStatus', { containerId: c })).status;

  // kubelet: the id, and the pod's name for it
  const kubelet = await create('kubelet', { image: id, userSpecifiedImage: BUSYBOX_IMAGE });
  const s = await status(kubelet);
  expect(s.image.image).toBe(BUSYBOX_IMAGE);
  expect(s.image.userSpecifiedImage).toBe(BUSYBOX_IMAGE);
  expect(s.imageRef).toBe(img.image.repoDigests[0]);
  expect(s.imageId).toBe(id);
  // crictl: a name without its tag is answered normalized, as the image has it
  const crictl = await create('crictl', { image: 'registry.example.test/capsa-test/busybox' });
  expect((await status(crictl)).image.image).toBe(BUSYBOX_IMAGE);
  // only the id: the image's first tag
  const bare = await create('bare', { image: id });
  expect((await status(bare)).image.image).toBe(BUSYBOX_IMAGE);
  // ListContainers answers what CreateContainer was given, as containerd does
  const listed = (
    await call<{ containers: { id: string; image: { image: string } }[] }>(d.runtime, 'listContainers', {})
  ).containers;
  expect(listed.find((c) => c.id === kubelet)?.image.image).toBe(id);

  await call(d.runtime, 'stopPodSandbox', { podSandboxId: pod });
  await call(d.runtime, 'removePodSandbox', { podSandboxId: pod });
});

test('a checkpoint from before repo tags were recorded keeps answering what was given', () => {
  const base = { annotations: {}, id: 'sha256:' + 'a'.repeat(64), ref: 'sha256:' + 'a'.repeat(64) };
  expect(statusImageName({ ...base, requested: base.id, userSpecified: 'busybox' })).toBe(base.id);
  // an unparsable user_specified_image is skipped, not an error
  expect(statusImageName({ ...base, requested: base.id, userSpecified: 'Bad Name', repoTags: ['x.io/a:1'] })).toBe(
    'x.io/a:1',
  );
  // the pod's tag wins over an earlier one
  expect(
    statusImageName({ ...base, requested: base.id, userSpecified: 'x.io/a:2', repoTags: ['x.io/a:1', 'x.io/a:2'] }),
  ).toBe('x.io/a:2');
});
