// A Backend assembles a container's root file system from a chain of
// unpacked layer directories (lowest first) and tears it down again; it
// also mounts an image read-only for an image volume (CRI Mount.image).
// Every backend leaves a mount at `target` (overlay, or a bind mount of the
// assembled tree), so the launcher can treat them alike. Per-container state
// lives in <stateDir>/<id>/<backend>/ — stateDir is normally
// <root>/containers — and every mount carries "capsa" in its source or
// path so leak checks can find them.
import { promises as fs } from 'fs';
import * as path from 'path';

import {
  AlreadyExistsError,
  CapsaError,
  ErrorContext,
  InternalError,
  InvalidArgumentError,
  asCapsaError,
} from '../../errors';
import type { Logger } from '../../log';
import { native } from '../../native';
import { isMountPoint, removeTree, rmdirIfEmpty, unmountAll } from './mounts';

export interface Backend {
  readonly name: string;
  /** Mounts a rootfs for container `id` at `target` from `layerDirs` (lowest first). */
  provision(id: string, layerDirs: string[], target: string): Promise<void>;
  /**
   * Mounts `layerDirs` (lowest first) read-only, nosuid and nodev, with no
   * writable layer, for container `id` under the volume name `name`, and
   * returns the mount point: an image volume (CRI Mount.image). destroy(id)
   * removes it with the rootfs.
   */
  mountReadOnly(id: string, name: string, layerDirs: string[]): Promise<string>;
  /** Unmounts and removes everything provision() and mountReadOnly() made. Idempotent; fine for an unknown id. */
  destroy(id: string, target: string): Promise<void>;
  /** The directory holding the container's writable data (for disk-usage reports), if any. */
  writableDir?(id: string): string | undefined;
}

export interface BackendOptions {
  /** Per-container state goes in <stateDir>/<id>/<backend name>/ (normally <root>/containers). */
  stateDir: string;
  log?: Logger;
}

export type BackendName = 'overlay' | 'copy' | 'bind';

const ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
/** An image volume's name inside its container's dir (the mount's index). */
const VOLUME_NAME = /^[0-9]{1,5}$/;

export function validateId(id: string): void {
  if (!ID.test(id)) {
    throw new InvalidArgumentError('id', `invalid container id ${JSON.stringify(id)}`, { stage: 'provision' });
  }
}

export function validateTarget(target: string, id: string): void {
  if (!path.isAbsolute(target) || target.includes('\0') || path.resolve(target) === '/') {
    throw new InvalidArgumentError('target', `rootfs target must be an absolute path, got ${JSON.stringify(target)}`, {
      stage: 'provision',
      containerId: id,
    });
  }
}

/** The mount source name every capsa rootfs mount carries. */
export function mountSource(id: string): string {
  return `capsa-${id}`;
}

/**
 * The frame every backend shares: checked id and target, no second mount on
 * a target, everything undone when assembling fails, and a destroy that
 * unmounts the target and removes the backend's own dir
 * (<stateDir>/<id>/<name>). A backend only says how it assembles.
 */
export abstract class MountingBackend implements Backend {
  abstract readonly name: BackendName;
  protected readonly stateDir: string;
  protected readonly log?: Logger;

  constructor(opts: BackendOptions) {
    this.stateDir = opts.stateDir;
    this.log = opts.log;
  }

  /** Mounts the assembled rootfs at `target` (an existing directory or a missing path, not a mount point). */
  protected abstract assemble(id: string, layerDirs: string[], target: string, ctx: ErrorContext): Promise<void>;

  /**
   * Mounts two or more layers merged and read-only at `target` (an empty
   * directory); `base` is this view's own directory for whatever the
   * backend needs besides. MS_RDONLY | MS_NOSUID | MS_NODEV are `flags`.
   */
  protected abstract mergeReadOnly(
    base: string,
    layerDirs: string[],
    target: string,
    flags: number,
    ctx: ErrorContext,
  ): Promise<void>;

  abstract writableDir(id: string): string | undefined;

  /** A layer directory, resolved; InvalidArgument `layers` when it is missing. */
  protected async layerDir(dir: string, ctx: ErrorContext): Promise<string> {
    const abs = path.resolve(dir);
    const st = await fs.stat(abs).catch(() => undefined);
    if (!st?.isDirectory()) throw new InvalidArgumentError('layers', `layer directory ${abs} does not exist`, ctx);
    return abs;
  }

  /** This backend's per-container dir. */
  protected dir(id: string): string {
    return path.join(this.stateDir, id, this.name);
  }

  async provision(id: string, layerDirs: string[], target: string): Promise<void> {
    validateId(id);
    validateTarget(target, id);
    const ctx = { stage: 'provision', containerId: id, path: target };
    if (await isMountPoint(target)) throw new AlreadyExistsError(`${target} is already mounted`, ctx);
    try {
      await this.assemble(id, layerDirs, target, ctx);
    } catch (err) {
      await this.destroy(id, target).catch((e: unknown) =>
        this.log?.warn({ id, err: e }, `cleanup after a failed ${this.name} provision failed`),
      );
      if (err instanceof CapsaError) throw err;
      throw asCapsaError(new Error(`${this.name} rootfs for ${id} failed: ${(err as Error).message}`), ctx);
    }
  }

  /** <stateDir>/<id>/volumes: every backend's image volumes, so any backend's destroy finds them. */
  protected volumesDir(id: string): string {
    return path.join(this.stateDir, id, 'volumes');
  }

  async mountReadOnly(id: string, name: string, layerDirs: string[]): Promise<string> {
    validateId(id);
    if (!VOLUME_NAME.test(name)) throw new InternalError(`invalid image volume name ${JSON.stringify(name)}`);
    const base = path.join(this.volumesDir(id), name);
    const target = path.join(base, 'mnt');
    const ctx = { stage: 'image volume', containerId: id, path: target };
    const { MS_BIND, MS_REMOUNT, MS_RDONLY, MS_NOSUID, MS_NODEV } = native().constants;
    const flags = MS_RDONLY | MS_NOSUID | MS_NODEV;
    try {
      // A view a crashed attempt left is made again from nothing.
      await unmountAll(base);
      await removeTree(base);
      await fs.mkdir(target, { recursive: true, mode: 0o755 });
      if (layerDirs.length >= 2) {
        await this.mergeReadOnly(base, layerDirs, target, flags, ctx);
      } else {
        // Overlay wants two lowers when it has no upper; one layer is the tree itself.
        let source = path.join(base, 'empty');
        if (layerDirs.length === 1) source = await this.layerDir(layerDirs[0], ctx);
        else await fs.mkdir(source, { mode: 0o755 });
        native().mount(source, target, '', MS_BIND, '');
        native().mount('', target, '', MS_BIND | MS_REMOUNT | flags, '');
      }
    } catch (err) {
      await unmountAll(base)
        .then(() => removeTree(base))
        .catch((e: unknown) => this.log?.warn({ id, err: e }, 'cleanup after a failed image volume mount failed'));
      if (err instanceof CapsaError) throw err;
      throw asCapsaError(new Error(`image volume ${name} of ${id}: ${(err as Error).message}`), ctx);
    }
    this.log?.debug({ id, name, layers: layerDirs.length, target }, 'image volume mounted');
    return target;
  }

  async destroy(id: string, target: string): Promise<void> {
    validateId(id);
    validateTarget(target, id);
    try {
      await unmountAll(target);
      await rmdirIfEmpty(target);
      await unmountAll(this.volumesDir(id));
      await removeTree(this.volumesDir(id));
      await removeTree(this.dir(id));
      await rmdirIfEmpty(path.join(this.stateDir, id));
    } catch (err) {
      throw asCapsaError(err, { stage: 'destroy', containerId: id, path: target });
    }
  }
}
