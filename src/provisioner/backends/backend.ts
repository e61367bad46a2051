// A Backend assembles a container's root file system from a chain of
// unpacked layer directories (lowest first) and tears it down again.
// Every backend leaves a mount at `target` (overlay, or a bind mount of the
// assembled tree), so the launcher can treat them alike. Per-container state
// lives in <stateDir>/<id>/<backend>/ — stateDir is normally
// <root>/containers — and every mount carries "capsa" in its source or
// path so leak checks can find them.
import * as path from 'path';

import { InvalidArgumentError } from '../../errors';
import type { Logger } from '../../log';

export interface Backend {
  readonly name: string;
  /** Mounts a rootfs for container `id` at `target` from `layerDirs` (lowest first). */
  provision(id: string, layerDirs: string[], target: string): Promise<void>;
  /** Unmounts and removes everything provision() made. Idempotent; fine for an unknown id. */
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
