// bind: a single layer, bind-mounted read-only at the target. For images
// that are one layer and containers that never write their rootfs; refuses
// more than one layer (it cannot merge).
import { promises as fs } from 'fs';
import * as path from 'path';

import { AlreadyExistsError, asCapsaError, CapsaError, InvalidArgumentError } from '../../errors';
import type { Logger } from '../../log';
import { native } from '../../native';
import { Backend, BackendOptions, validateId, validateTarget } from './backend';
import { isMountPoint, rmdirIfEmpty, unmountAll } from './mounts';

export class BindBackend implements Backend {
  readonly name = 'bind';
  private readonly log?: Logger;

  constructor(opts: BackendOptions) {
    this.log = opts.log;
  }

  writableDir(): undefined {
    return undefined;
  }

  async provision(id: string, layerDirs: string[], target: string): Promise<void> {
    validateId(id);
    validateTarget(target, id);
    const ctx = { stage: 'provision', containerId: id, path: target };
    if (layerDirs.length !== 1) {
      throw new InvalidArgumentError(
        'layers',
        `the bind backend serves exactly one layer, the image has ${layerDirs.length}`,
        ctx,
      );
    }
    if (await isMountPoint(target)) throw new AlreadyExistsError(`${target} is already mounted`, ctx);
    const layer = path.resolve(layerDirs[0]);
    const { MS_BIND, MS_REMOUNT, MS_RDONLY } = native().constants;
    try {
      const st = await fs.stat(layer).catch(() => undefined);
      if (!st?.isDirectory()) throw new InvalidArgumentError('layers', `layer directory ${layer} does not exist`, ctx);
      await fs.mkdir(target, { recursive: true, mode: 0o755 });
      native().mount(layer, target, '', MS_BIND, '');
      native().mount('', target, '', MS_BIND | MS_REMOUNT | MS_RDONLY, '');
      this.log?.debug({ id, layer, target }, 'bind rootfs mounted');
    } catch (err) {
      await this.destroy(id, target).catch(() => undefined);
      if (err instanceof CapsaError) throw err;
      throw asCapsaError(new Error(`bind mount for ${id} failed: ${(err as Error).message}`), ctx);
    }
  }

  async destroy(id: string, target: string): Promise<void> {
    validateId(id);
    validateTarget(target, id);
    try {
      await unmountAll(target);
      await rmdirIfEmpty(target);
    } catch (err) {
      throw asCapsaError(err, { stage: 'destroy', containerId: id, path: target });
    }
  }
}
