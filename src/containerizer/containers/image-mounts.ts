// Image volumes (CRI Mount.image): an image already pulled, mounted
// read-only into a container. Each is the image's layers from the layer
// store, mounted by the rootfs backend under the container's backend dir
// (<root>/rootfs/<id>/volumes/<index>/mnt: an overlay of lowerdirs only, or
// a read-only bind of a single layer), so the backend's destroy(id) removes
// them with the rootfs on every path that removes a rootfs (remove, a
// failed create, recovery's sweep). The container's image pin holds the
// layers and the image itself: RemoveImage refuses an image in use this way
// until the container is removed. In a pod with a user namespace the
// volume is made of idmapped views of the layers, as the rootfs is
// (rootfs.ts), so the image's root files are the pod's root's; the bind into
// the container then maps nothing again (containerd clears the mount's
// mappings the same way).
import * as path from 'path';
import type { ErrorContext } from '../../errors';
import { FailedPreconditionError, NotFoundError } from '../../errors';
import { resolveSubPath } from '../../provisioner/backends';
import { idmapLayers } from '../../provisioner/backends/idmap-layers';
import type { ImageRecord } from '../../provisioner/store/image-store';
import type { ContainerRequest, ImageMountRecord } from '../container-spec';
import type { Container } from './container';
import { ContainerHost, pinOwner } from './host';

/** The images the request's image volumes name, resolved; NotFound names the field when one is not pulled. */
export function resolveImageMounts(cs: ContainerHost, req: ContainerRequest): ImageMountRecord[] {
  return req.imageMounts.map((m) => {
    const image = cs.opts.provisioner.find(m.ref);
    if (!image) {
      throw new NotFoundError(`${m.field}.image: image "${m.ref}" is not on this node: pull it first`, {
        field: `${m.field}.image`,
        image: m.ref,
        stage: 'image volume',
      });
    }
    return { index: m.index, imageId: image.id, chainIds: image.layers.map((l) => l.chainId), subPath: m.subPath };
  });
}

/**
 * Pins and mounts every image volume of `c` (PREPARING, after its
 * checkpoint); returns the directory to bind for each, by mount index. A
 * failure leaves what was made to the stage's cleanup (the teardown).
 */
export async function mountImages(
  cs: ContainerHost,
  c: Container,
  req: ContainerRequest,
): Promise<Map<number, string>> {
  const sources = new Map<number, string>();
  const vols = c.record.imageMounts ?? [];
  if (vols.length === 0) return sources;
  const { provisioner } = cs.opts;
  const backend = await provisioner.backend();
  const sandbox = cs.opts.sandboxes.handle(c.record.sandboxId);
  const usernsFile = sandbox.spec.namespaces.userns ? sandbox.nsPaths.user : undefined;
  for (const v of vols) {
    const field = req.imageMounts.find((m) => m.index === v.index)?.field ?? `mounts[${v.index}]`;
    const ctx: ErrorContext = { containerId: c.id, image: v.imageId, stage: 'image volume' };
    await provisioner.store.images.pin(pinOwner(c.id), v.chainIds, { images: [v.imageId] });
    // Held from here on; one removed before the pin is gone for good.
    const image: ImageRecord | undefined = provisioner.store.images.get(v.imageId);
    if (!image) {
      throw new FailedPreconditionError(`${field}.image: image ${v.imageId} was removed while the container was made`, {
        ...ctx,
        field: `${field}.image`,
      });
    }
    let layers = provisioner.layerDirs(image);
    if (usernsFile) {
      // Under the backend's volumes dir (<root>/rootfs/<id>/volumes/idmap-<n>), which destroy(id) clears.
      const dir = path.join(cs.opts.backendStateDir, c.id, 'volumes');
      layers = await idmapLayers(dir, `idmap-${v.index}`, layers, usernsFile, ctx);
    }
    const mnt = await backend.mountReadOnly(c.id, String(v.index), layers);
    const source = await resolveSubPath(mnt, v.subPath, `${field}.image_sub_path`);
    sources.set(v.index, source);
    const info = c.record.mounts[v.index];
    if (info) info.hostPath = source;
  }
  return sources;
}
