// Layers seen through a pod's user namespace: for a container of a pod with
// userns_options POD, each layer directory is bound idmapped (native
// idmapBind) at <stateDir>/<id>/idmap/<n>, and the backend assembles the
// rootfs from those views instead of the layers themselves. A file that is
// root's in the layer is then the pod's root's (host id 100000 for a pod
// mapped 0→100000) in the rootfs, and whatever the container writes lands
// in its writable layer with its host ids. The layers stay shared and
// untouched on disk.
//
// Why layers and not the rootfs: an overlay mount cannot be idmapped itself
// (overlayfs does not allow it, 6.18 included: mount_setattr says EINVAL),
// but since 5.19 it takes idmapped layers. The copy backend copies through
// the views (owners as the pod sees them); the bind backend binds one view.
// Where the layers' filesystem cannot be idmapped, the bind fails and the
// create fails with it (the daemon's probe, userns-probe.ts, normally
// refuses the pod first): nothing falls back to host ids.
import { promises as fs } from 'fs';
import * as path from 'path';

import { FailedPreconditionError, type ErrorContext } from '../../errors';
import { native } from '../../native';
import { removeTree, rmdirIfEmpty, unmountAll } from './mounts';

function base(stateDir: string, id: string): string {
  return path.join(stateDir, id, 'idmap');
}

/** Binds each layer idmapped through `usernsFile`; returns the views, lowest first. */
export async function idmapLayers(
  stateDir: string,
  id: string,
  layerDirs: readonly string[],
  usernsFile: string,
  ctx: ErrorContext,
): Promise<string[]> {
  const dir = base(stateDir, id);
  // What a crashed attempt left is made again from nothing.
  await releaseIdmappedLayers(stateDir, id);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const views: string[] = [];
  try {
    for (const [i, layer] of layerDirs.entries()) {
      const view = path.join(dir, String(i + 1));
      await fs.mkdir(view, { mode: 0o755 });
      try {
        native().idmapBind(path.resolve(layer), view, usernsFile);
      } catch (err) {
        throw new FailedPreconditionError(
          `layer ${path.basename(path.dirname(layer))} cannot be idmapped for the pod's user namespace: ${(err as Error).message}`,
          { ...ctx, path: layer },
        );
      }
      views.push(view);
    }
  } catch (err) {
    await releaseIdmappedLayers(stateDir, id).catch(() => undefined);
    throw err;
  }
  return views;
}

/** Unmounts and removes the views of container `id`. Idempotent; call after the backend's destroy. */
export async function releaseIdmappedLayers(stateDir: string, id: string): Promise<void> {
  const dir = base(stateDir, id);
  await unmountAll(dir);
  await removeTree(dir);
  await rmdirIfEmpty(path.join(stateDir, id));
}
