// overlay: the default backend. One overlay mount per container:
//   lowerdir = the layer diffs (highest first), upperdir/workdir in
//   <stateDir>/<id>/overlay/{upper,work}, source name "capsa-<id>".
//
// The mount options must fit in one page (4096 bytes). Absolute layer paths
// (~90 bytes each) would overflow at ~45 layers, so each layer gets a short
// symlink <stateDir>/<id>/overlay/l/<n> and the mount is made with that
// directory as the working directory (native mountat: chdir happens in a
// short-lived vfork-style child, never in the daemon), giving options like
// "lowerdir=l/3:l/2:l/1,upperdir=upper,workdir=work" — about 6 bytes a
// layer, so overlay's own 500-layer limit is reached first.
import { existsSync, promises as fs } from 'fs';
import * as path from 'path';

import { ErrorContext, InvalidArgumentError } from '../../errors';
import { native } from '../../native';
import { MountingBackend, mountSource } from './backend';

const MAX_OPTIONS = 4095;

/** True when overlay knows the index= option (we turn it off: shared lowers, no hardlink index needed). */
function supportsIndexOption(): boolean {
  return existsSync('/sys/module/overlay/parameters/index');
}

export class OverlayBackend extends MountingBackend {
  readonly name = 'overlay';

  writableDir(id: string): string {
    return path.join(this.dir(id), 'upper');
  }

  protected async assemble(id: string, layerDirs: string[], target: string, ctx: ErrorContext): Promise<void> {
    const base = this.dir(id);
    await fs.mkdir(path.join(base, 'upper'), { recursive: true, mode: 0o755 });
    await fs.mkdir(path.join(base, 'work'), { recursive: true, mode: 0o700 });
    const links = path.join(base, 'l');
    await fs.rm(links, { recursive: true, force: true });
    await fs.mkdir(links, 0o700);
    const lowers: string[] = [];
    if (layerDirs.length === 0) {
      // An image with no layers: overlay still needs one lowerdir.
      await fs.mkdir(path.join(base, 'empty'), { recursive: true, mode: 0o755 });
      lowers.push('empty');
    }
    for (let i = 0; i < layerDirs.length; i++) {
      await fs.symlink(await this.layerDir(layerDirs[i], ctx), path.join(links, String(i + 1)));
      lowers.push(`l/${i + 1}`);
    }
    lowers.reverse(); // overlay wants the highest layer first
    let data = `lowerdir=${lowers.join(':')},upperdir=upper,workdir=work`;
    if (supportsIndexOption()) data += ',index=off';
    if (data.length > MAX_OPTIONS) {
      throw new InvalidArgumentError('layers', `${layerDirs.length} layers do not fit in overlay mount options`, ctx);
    }
    await fs.mkdir(target, { recursive: true, mode: 0o755 });
    native().mountat(base, mountSource(id), target, 'overlay', 0, data);
    this.log?.debug({ id, layers: layerDirs.length, target }, 'overlay rootfs mounted');
  }
}
