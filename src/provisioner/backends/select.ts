// Picking a backend: overlay when the kernel has it and a probe mount in the
// state directory works (the state dir's file system must be able to hold
// an upperdir), the copy backend otherwise.
import { randomBytes } from 'crypto';
import { promises as fs } from 'fs';
import * as path from 'path';

import { InvalidArgumentError } from '../../errors';
import { native } from '../../native';
import { Backend, BackendName, BackendOptions } from './backend';
import { BindBackend } from './bind';
import { CopyBackend } from './copy';
import { unmountAll } from './mounts';
import { OverlayBackend } from './overlay';

export function createBackend(name: BackendName, opts: BackendOptions): Backend {
  switch (name) {
    case 'overlay':
      return new OverlayBackend(opts);
    case 'copy':
      return new CopyBackend(opts);
    case 'bind':
      return new BindBackend(opts);
    default:
      throw new InvalidArgumentError('backend', `unknown rootfs backend ${JSON.stringify(name)}`);
  }
}

/** Whether overlay can be mounted with upper/work dirs under `stateDir`. Never throws. */
export async function overlayWorks(stateDir: string): Promise<boolean> {
  try {
    const fsList = await fs.readFile('/proc/filesystems', 'utf8');
    if (!/\toverlay$/m.test(fsList)) return false;
  } catch {
    return false;
  }
  const probe = path.join(stateDir, `.capsa-probe-${randomBytes(6).toString('hex')}`);
  const merged = path.join(probe, 'merged');
  try {
    await fs.mkdir(stateDir, { recursive: true, mode: 0o711 });
    for (const d of ['lower', 'upper', 'work', 'merged']) await fs.mkdir(path.join(probe, d), { recursive: true });
    native().mountat(probe, 'capsa-probe', merged, 'overlay', 0, 'lowerdir=lower,upperdir=upper,workdir=work');
    return true;
  } catch {
    return false;
  } finally {
    await unmountAll(merged).catch(() => undefined);
    await fs.rm(probe, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** The configured backend, or (with no preference) overlay if it works here, else copy. */
export async function selectBackend(opts: BackendOptions & { prefer?: BackendName }): Promise<Backend> {
  if (opts.prefer) return createBackend(opts.prefer, opts);
  if (await overlayWorks(opts.stateDir)) return new OverlayBackend(opts);
  opts.log?.warn({ stateDir: opts.stateDir }, 'overlayfs unavailable; using the copy rootfs backend');
  return new CopyBackend(opts);
}
