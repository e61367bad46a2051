// The set-up most integration suites share: a real registry serving capsa's
// busybox test image under registry.example.test (through a mirror), a
// daemon that has pulled it, and the teardown that checks nothing was left.
import { defaultCgroupParent } from '../../src/containerizer/isolators/cgroups/paths';
import { rmCgroupTree } from './cgroups';
import { StartOptions, TestDaemon, call, startDaemon } from './daemon';
import { assertNoCapsaLeaks } from './leaks';
import { TestRegistry, ensureTestImages, startRegistry } from './registry';

export const BUSYBOX_IMAGE = 'registry.example.test/capsa-test/busybox:latest';

export interface BusyboxDaemon {
  d: TestDaemon;
  reg: TestRegistry;
}

/** Registry + daemon (extra `opts.toml` is appended to the mirror setting) + the image pulled. */
export async function startBusyboxDaemon(opts: StartOptions = {}): Promise<BusyboxDaemon> {
  const images = await ensureTestImages();
  const reg = await startRegistry();
  try {
    await reg.push(images.busybox.layout, 'capsa-test/busybox:latest');
    const toml = `[registries."registry.example.test"]\nmirrors = ["${reg.url}"]\n${opts.toml ?? ''}`;
    const d = await startDaemon({ ...opts, toml });
    await call(d.image, 'pullImage', { image: { image: BUSYBOX_IMAGE } }, 120_000);
    return { d, reg };
  } catch (err) {
    await reg.stop();
    throw err;
  }
}

/** Stops the daemon, checks it left nothing in its dirs and cgroups, removes both and the registry. */
export async function stopBusyboxDaemon(b: Partial<BusyboxDaemon> | undefined): Promise<void> {
  const { d, reg } = b ?? {};
  try {
    if (d) {
      await d.stop();
      await assertNoCapsaLeaks([d.dir], { cgroupParents: [defaultCgroupParent('cgroupfs', d.root)] });
      await rmCgroupTree(defaultCgroupParent('cgroupfs', d.root));
    }
  } finally {
    await d?.cleanup();
    await reg?.stop();
  }
}
