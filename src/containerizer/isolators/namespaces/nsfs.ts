// Pinned namespace files: bind mounts of nsfs inodes under <state>/ns.
import { promises as fs } from 'fs';
import { InternalError } from '../../../errors';
import { native } from '../../../native';

/** statfs(2) f_type of nsfs. */
export const NSFS_MAGIC = 0x6e736673;

export type NsType = 'user' | 'net' | 'uts' | 'ipc' | 'pid';

/** capsa-<sandbox id>-<type> */
export const PINNED_NS = /^capsa-([0-9a-f]{64})-(user|net|uts|ipc|pid)$/;

export function nsFileName(id: string, type: NsType): string {
  return `capsa-${id}-${type}`;
}

/** True when `file` is a mounted namespace (a live pin), false when absent or a plain file. */
export async function isPinned(file: string): Promise<boolean> {
  try {
    return (await fs.statfs(file)).type === NSFS_MAGIC;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** Unmounts (if mounted) and removes a pin file. Idempotent. */
export async function unpin(file: string): Promise<void> {
  const n = native();
  // A file may carry stacked mounts after a crash-and-retry; peel them all.
  for (let i = 0; i < 8 && (await isPinned(file)); i++) {
    try {
      n.umount2(file, n.constants.MNT_DETACH);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EINVAL' && code !== 'ENOENT') {
        throw new InternalError(`umount ${file}: ${(err as Error).message}`, { path: file, stage: 'unpin' });
      }
      break;
    }
  }
  try {
    await fs.unlink(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    throw new InternalError(`remove ${file}: ${(err as Error).message}`, { path: file, stage: 'unpin' });
  }
}
