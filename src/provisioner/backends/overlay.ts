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
//
// An image volume (mountReadOnly) is the same without upperdir/workdir:
// "lowerdir=l/2:l/1" in <stateDir>/<id>/volumes/<n>, mounted read-only,
// nosuid, nodev, which overlay allows from two lowers on.
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
    const lowers = await this.linkLowers(base, layerDirs, ctx);
    if (lowers.length === 0) {
      // An image with no layers: overlay still needs one lowerdir.
      await fs.mkdir(path.join(base, 'empty'), { recursive: true, mode: 0o755 });
      lowers.push('empty');
    }
    let data = `lowerdir=${lowers.join(':')},upperdir=upper,workdir=work`;
    if (supportsIndexOption()) data += ',index=off';
    this.checkOptions(data, layerDirs.length, ctx);
    await fs.mkdir(target, { recursive: true, mode: 0o755 });
    native().mountat(base, mountSource(id), target, 'overlay', 0, data);
    this.log?.debug({ id, layers: layerDirs.length, target }, 'overlay rootfs mounted');
  }

  /** An image volume: an overlay of lowerdirs only, which the kernel keeps read-only. */
  protected async mergeReadOnly(
    base: string,
    layerDirs: string[],
    target: string,
    flags: number,
    ctx: ErrorContext,
  ): Promise<void> {
    const lowers = await this.linkLowers(base, layerDirs, ctx);
    const data = `lowerdir=${lowers.join(':')}`;
    this.checkOptions(data, layerDirs.length, ctx);
    native().mountat(base, mountSource(ctx.containerId ?? 'volume'), target, 'overlay', flags, data);
  }

  /**
   * Short symlinks <base>/l/<n> to the layers, made afresh; returns the
   * lowerdir entries relative to `base`, highest layer first (overlay's order).
   */
  private async linkLowers(base: string, layerDirs: string[], ctx: ErrorContext): Promise<string[]> {
    const links = path.join(base, 'l');
    await fs.rm(links, { recursive: true, force: true });
    await fs.mkdir(links, { recursive: true, mode: 0o700 });
    const lowers: string[] = [];
    for (let i = 0; i < layerDirs.length; i++) {
      await fs.symlink(await this.layerDir(layerDirs[i], ctx), path.join(links, String(i + 1)));
      lowers.push(`l/${i + 1}`);
    }
    return lowers.reverse();
  }

  private checkOptions(data: string, layers: number, ctx: ErrorContext): void {
    if (data.length > MAX_OPTIONS) {
      throw new InvalidArgumentError('layers', `${layers} layers do not fit in overlay mount options`, ctx);
    }
  }
}
