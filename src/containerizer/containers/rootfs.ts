// A container's rootfs from its image's layers. A container of a pod with a
// user namespace gets it assembled from idmapped views of the layers
// (provisioner/backends/idmap-layers.ts), then its top directory, which the
// backend made as host root, is given to the pod's root (container id 0) like
// every file of the layers appears: otherwise root in the container could not
// create anything in "/".
import { promises as fs } from 'fs';
import { idmapLayers } from '../../provisioner/backends/idmap-layers';
import type { Backend } from '../../provisioner/backends/backend';
import { errorContext } from '../state';
import type { Container } from './container';
import type { ContainerHost } from './host';

export async function provisionRootfs(
  cs: ContainerHost,
  c: Container,
  backend: Backend,
  layerDirs: string[],
): Promise<void> {
  const r = c.record;
  const sandbox = cs.opts.sandboxes.handle(r.sandboxId);
  const userns = sandbox.spec.namespaces.userns;
  const usernsFile = sandbox.nsPaths.user;
  if (!userns || !usernsFile) {
    await backend.provision(c.id, layerDirs, r.rootfs);
    return;
  }
  const views = await idmapLayers(cs.opts.backendStateDir, c.id, layerDirs, usernsFile, errorContext(c, 'PREPARING'));
  await backend.provision(c.id, views, r.rootfs);
  cs.log.debug(
    { containerId: c.id, layers: views.length },
    "rootfs from layers idmapped through the pod's user namespace",
  );
  const uid = userns.uids.find((m) => m.containerID === 0)!.hostID;
  const gid = userns.gids.find((m) => m.containerID === 0)!.hostID;
  try {
    await fs.chown(r.rootfs, uid, gid);
  } catch (err) {
    // The bind backend's rootfs is read-only: nothing can be created in it anyway.
    if ((err as NodeJS.ErrnoException).code !== 'EROFS') throw err;
  }
}
