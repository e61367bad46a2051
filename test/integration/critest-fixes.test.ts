// What critest v1.37.0 (hack/critest/run.sh) found wrong in capsa, each
// checked here through the socket so it stays fixed without critest:
//   - Status.features did not say that SupplementalGroupsPolicy and
//     ContainerStatus.user are served, so kubelet and critest never used them.
// (Image volumes, once UNIMPLEMENTED here, are served: image-volumes.test.ts.)
import * as path from 'path';
import { defaultCgroupParent } from '../../src/containerizer/isolators/cgroups/paths';
import { SupplementalGroupsPolicy } from '../../src/gen/runtime/v1/api';
import { rmCgroupTree } from '../helpers/cgroups';
import { TestDaemon, call, createContainer, runp, startDaemon } from '../helpers/daemon';
import { assertNoCapsaLeaks } from '../helpers/leaks';
import { TestRegistry, ensureTestImages, startRegistry } from '../helpers/registry';

const IMAGE = 'registry.example.test/capsa-test/busybox:latest';

let reg: TestRegistry;
let d: TestDaemon;
let parent: string;
let seq = 0;

function podConfig(): Record<string, unknown> {
  const uid = `uid-${process.pid}-${++seq}`;
  return {
    metadata: { name: `critest-fix${seq}`, uid, namespace: 'capsa-tests', attempt: 0 },
    logDirectory: path.join(d.dir, 'logs', uid),
    linux: {},
  };
}

async function removePods(): Promise<void> {
  const { items } = await call<{ items: { id: string }[] }>(d.runtime, 'listPodSandbox', {});
  for (const p of items) {
    await call(d.runtime, 'stopPodSandbox', { podSandboxId: p.id }, 60_000);
    await call(d.runtime, 'removePodSandbox', { podSandboxId: p.id }, 60_000);
  }
}

beforeAll(async () => {
  const images = await ensureTestImages();
  reg = await startRegistry();
  await reg.push(images.busybox.layout, 'capsa-test/busybox:latest');
  d = await startDaemon({ toml: `[registries."registry.example.test"]\nmirrors = ["${reg.url}"]\n` });
  parent = defaultCgroupParent('cgroupfs', d.root);
  await call(d.image, 'pullImage', { image: { image: IMAGE } }, 120_000);
}, 600_000);

afterAll(async () => {
  await d?.stop();
  await d?.cleanup();
  if (parent) await rmCgroupTree(parent);
  await reg?.stop();
});

afterEach(async () => {
  await removePods();
  await assertNoCapsaLeaks([d.dir], { cgroupParents: [parent] });
}, 120_000);

test('Status advertises SupplementalGroupsPolicy, and a Strict container reports its user', async () => {
  const st = await call<{ features?: { supplementalGroupsPolicy: boolean } }>(d.runtime, 'status', {});
  expect(st.features?.supplementalGroupsPolicy).toBe(true);

  // What the feature promises: ContainerStatus.user with the groups the
  // policy gave. The image's capsa user (1000) is also in capsa-extra (1001)
  // and users (100); Strict leaves those out and keeps the requested 4242.
  const podCfg = podConfig();
  const pod = await runp(d, podCfg);
  const linux = (policy: SupplementalGroupsPolicy): Record<string, unknown> => ({
    securityContext: { runAsUser: { value: 1000 }, supplementalGroups: [4242], supplementalGroupsPolicy: policy },
  });
  const groups = async (policy: SupplementalGroupsPolicy, name: string): Promise<number[]> => {
    const id = await createContainer(d, pod, podCfg, {
      metadata: { name, attempt: 0 },
      image: { image: IMAGE },
      command: ['sleep', '60'],
      linux: linux(policy),
    });
    const r = await call<{ status: { user?: { linux?: { uid: bigint; supplementalGroups: bigint[] } } } }>(
      d.runtime,
      'containerStatus',
      { containerId: id },
    );
    expect(r.status.user?.linux?.uid).toBe(1000n);
    return (r.status.user?.linux?.supplementalGroups ?? []).map(Number).sort((a, b) => a - b);
  };
  expect(await groups(SupplementalGroupsPolicy.Strict, 'strict')).toEqual([1000, 4242]);
  expect(await groups(SupplementalGroupsPolicy.Merge, 'merge')).toEqual([100, 1000, 1001, 4242]);
}, 120_000);
