// bind: a single layer, bind-mounted read-only at the target. For images
// that are one layer and containers that never write their rootfs; refuses
// more than one layer (it cannot merge).
import { promises as fs } from 'fs';

import { ErrorContext, InvalidArgumentError } from '../../errors';
import { native } from '../../native';
import { MountingBackend } from './backend';

export class BindBackend extends MountingBackend {
  readonly name = 'bind';

  writableDir(): undefined {
    return undefined;
  }

  protected async assemble(id: string, layerDirs: string[], target: string, ctx: ErrorContext): Promise<void> {
    if (layerDirs.length !== 1) throw oneLayerOnly(layerDirs.length, ctx);
    const layer = await this.layerDir(layerDirs[0], ctx);
    const { MS_BIND, MS_REMOUNT, MS_RDONLY } = native().constants;
    await fs.mkdir(target, { recursive: true, mode: 0o755 });
    native().mount(layer, target, '', MS_BIND, '');
    native().mount('', target, '', MS_BIND | MS_REMOUNT | MS_RDONLY, '');
    this.log?.debug({ id, layer, target }, 'bind rootfs mounted');
  }

  /** Image volumes of one layer are binds in any backend; more cannot be merged here. */
  protected mergeReadOnly(
    _base: string,
    layerDirs: string[],
    _t: string,
    _f: number,
    ctx: ErrorContext,
  ): Promise<void> {
    return Promise.reject(oneLayerOnly(layerDirs.length, ctx));
  }
}

function oneLayerOnly(layers: number, ctx: ErrorContext): InvalidArgumentError {
  return new InvalidArgumentError('layers', `the bind backend serves exactly one layer, the image has ${layers}`, ctx);
}
