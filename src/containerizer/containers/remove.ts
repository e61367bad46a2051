// RemoveContainer (kills it first if it runs) and the teardown every undo
// shares: cgroup, monitor, rootfs and image volumes, run dir, image pin.
import { CapsaError, asCapsaError } from '../../errors';
import { releaseIdmappedLayers } from '../../provisioner/backends/idmap-layers';
import { withTimeout } from '../../util/timeout';
import { errorContext, transition } from '../state';
import { Container } from './container';
import { ContainerHost, pinOwner } from './host';
import { recordEnd } from './observe';
import { stopContainer } from './stop';

export async function removeContainer(cs: ContainerHost, c: Container, signal: AbortSignal): Promise<void> {
  if (!c.isFinished() && c.state === 'RUNNING') await stopContainer(cs, c, 0, signal);
  await c.exclusive(async () => {
    if (c.state === 'REMOVED') return;
    const ctx = errorContext(c, 'destroying');
    if (c.state === 'RUNNING') {
      // An end we could not observe (stuck monitor): record it as unknown before tearing down.
      await recordEnd(cs, c, { state: 'lost', reason: 'removed before its end was seen' });
    }
    transition(c, 'DESTROYING', cs.log, 'remove');
    try {
      await withTimeout('container remove', cs.timeouts.destroying, (s) => teardown(cs, c, s), ctx);
      await cs.store.remove('container', c.id);
    } catch (err) {
      c.cleanupPending = true;
      transition(c, 'STOPPED', cs.log, 'remove failed');
      throw new CapsaError(asCapsaError(err).kind, `remove: ${asCapsaError(err).message}`, ctx, { cause: err });
    }
    cs.forget(c);
    transition(c, 'REMOVED', cs.log, 'removed');
    cs.publish('deleted', c);
    cs.log.info({ containerId: c.id }, 'container removed');
  });
}

/**
 * Removes every host object of the container: its processes and cgroup,
 * its monitor, its rootfs, its run dir and its image pin. Idempotent;
 * works from the deterministic names when the record is partial.
 */
export async function teardown(cs: ContainerHost, c: Container, signal: AbortSignal): Promise<void> {
  const r = c.record;
  c.unwatch?.();
  c.unwatch = undefined;
  // Kill first: the init dies, its monitor writes exit.json and leaves.
  await cs.cgroups.destroy(r.cgroupPath, cs.timeouts.destroying / 2, signal);
  const backend = await cs.opts.provisioner.backend();
  await backend.destroy(c.id, r.rootfs);
  await releaseIdmappedLayers(cs.opts.backendStateDir, c.id);
  await cs.launcher.destroy(r.runDir, signal);
  const images = cs.opts.provisioner.store.images;
  await images.unpin(pinOwner(c.id));
  // Its image was removed while it ran: this pin was the last hold on those layers.
  const chainIds = [...r.chainIds, ...(r.imageMounts ?? []).flatMap((v) => v.chainIds)];
  if (chainIds.some((chainId) => images.layerRefCount(chainId) === 0)) {
    await images
      .gc()
      .catch((err: unknown) =>
        cs.log.warn({ containerId: c.id, err: asCapsaError(err).message }, 'image gc after container removal failed'),
      );
  }
}
