// Mount-table helpers shared by the backends: reading /proc/self/mountinfo,
// unmounting everything at or below a path, and removing a directory tree
// only when nothing is mounted inside it (so a leftover bind mount of host
// data is never deleted through).
import { promises as fs } from 'fs';
import * as path from 'path';

import { FailedPreconditionError } from '../../errors';
import { native } from '../../native';

export interface MountEntry {
  id: number;
  parentId: number;
  root: string;
  mountPoint: string;
  options: string;
  fstype: string;
  source: string;
  superOptions: string;
}

function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function parseMountInfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const f = line.split(' ');
    const dash = f.indexOf('-', 6);
    if (dash < 0 || f.length < dash + 3) continue;
    out.push({
      id: Number(f[0]),
      parentId: Number(f[1]),
      root: unescape(f[3]),
      mountPoint: unescape(f[4]),
      options: f[5],
      fstype: f[dash + 1],
      source: unescape(f[dash + 2]),
      superOptions: f[dash + 3] ?? '',
    });
  }
  return out;
}

export async function readMountInfo(): Promise<MountEntry[]> {
  return parseMountInfo(await fs.readFile('/proc/self/mountinfo', 'utf8'));
}

/** The path with symlinks resolved when it exists (mountinfo shows resolved paths). */
export async function canonical(p: string): Promise<string> {
  const abs = path.resolve(p);
  try {
    return await fs.realpath(abs);
  } catch {
    return abs;
  }
}

function within(mp: string, dir: string): boolean {
  return mp === dir || mp.startsWith(dir.endsWith('/') ? dir : `${dir}/`);
}

/** Mounts at `dir` or below it, in mount-table order. */
export async function mountsUnder(dir: string): Promise<MountEntry[]> {
  const d = await canonical(dir);
  return (await readMountInfo()).filter((m) => within(m.mountPoint, d));
}

export async function isMountPoint(dir: string): Promise<boolean> {
  const d = await canonical(dir);
  return (await readMountInfo()).some((m) => m.mountPoint === d);
}

/**
 * Unmounts everything at or below `dir`, deepest and newest first. A busy
 * mount is detached (MNT_DETACH) instead. Idempotent.
 */
export async function unmountAll(dir: string): Promise<void> {
  const { MNT_DETACH } = native().constants;
  for (let round = 0; round < 64; round++) {
    const ms = await mountsUnder(dir);
    if (ms.length === 0) return;
    // Later entries were mounted later (and may sit on top of earlier ones).
    const order = ms
      .map((m, i) => ({ m, i }))
      .sort((a, b) => b.m.mountPoint.length - a.m.mountPoint.length || b.i - a.i);
    for (const { m } of order) {
      try {
        native().umount2(m.mountPoint, 0);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EINVAL' || code === 'ENOENT') continue;
        if (code === 'EBUSY') {
          native().umount2(m.mountPoint, MNT_DETACH);
          continue;
        }
        throw err;
      }
    }
  }
  throw new FailedPreconditionError(`could not unmount everything below ${dir}`, { stage: 'destroy', path: dir });
}

/** Removes `dir` recursively, refusing if anything is mounted inside it. ENOENT is fine. */
export async function removeTree(dir: string): Promise<void> {
  const left = await mountsUnder(dir);
  if (left.length > 0) {
    throw new FailedPreconditionError(`refusing to remove ${dir}: ${left[0].mountPoint} is still mounted`, {
      stage: 'destroy',
      path: dir,
    });
  }
  await fs.rm(dir, { recursive: true, force: true });
}

/** rmdir that tolerates a missing or non-empty directory (returns whether it was removed). */
export async function rmdirIfEmpty(dir: string): Promise<boolean> {
  try {
    await fs.rmdir(dir);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTEMPTY' || code === 'EEXIST') return false;
    throw err;
  }
}
