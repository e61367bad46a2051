// Reads a small file from an untrusted rootfs. Paths are resolved as if the
// rootfs were "/" (chroot semantics, done by hand): an absolute symlink
// target restarts at the rootfs, ".." stops at it, so nothing is ever read
// from outside it. The final open is O_NOFOLLOW, the opened file must be a
// regular file of bounded size, and /proc/self/fd confirms where it lives.

import { constants, promises as fs } from 'fs';
import * as path from 'path';
import { InvalidArgumentError } from '../../errors';
import { IMAGE_FIELD, isWithin } from './values';

/** Symlinks followed while resolving one path (the kernel's MAXSYMLINKS). */
export const MAX_SYMLINKS = 40;

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP' || code === 'ENAMETOOLONG';
}

/**
 * Resolves `unsafePath` inside `root` without leaving it. Returns the host
 * path of the final component (which is not a symlink at the time of the
 * check), or undefined when some component does not exist or loops.
 */
export async function resolveInRoot(root: string, unsafePath: string): Promise<string | undefined> {
  const base = path.resolve(root);
  let pending = unsafePath.split('/').filter((c) => c !== '' && c !== '.');
  const done: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending[0];
    pending = pending.slice(1);
    if (part === '..') {
      done.pop();
      continue;
    }
    const candidate = path.join(base, ...done, part);
    let st;
    try {
      st = await fs.lstat(candidate);
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
    if (st.isSymbolicLink()) {
      if (++links > MAX_SYMLINKS) return undefined;
      const target = await fs.readlink(candidate);
      if (target.startsWith('/')) done.length = 0;
      pending = [...target.split('/').filter((c) => c !== '' && c !== '.'), ...pending];
      continue;
    }
    if (pending.length > 0 && !st.isDirectory()) return undefined;
    done.push(part);
  }
  return path.join(base, ...done);
}

/**
 * The text of `file` (an absolute path inside the rootfs), or undefined when
 * it does not exist or is not a regular file. A file larger than `maxBytes`
 * is an error: silently reading part of /etc/passwd could pick the wrong user.
 */
export async function readRootfsFile(root: string, file: string, maxBytes: number): Promise<string | undefined> {
  const resolved = await resolveInRoot(root, file);
  if (resolved === undefined) return undefined;
  let handle;
  try {
    handle = await fs.open(
      resolved,
      constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY,
    );
  } catch (err) {
    // ELOOP: the last component became a symlink after we checked it.
    if (isMissing(err)) return undefined;
    throw err;
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) return undefined;
    const realRoot = await fs.realpath(root);
    const opened = await fs.readlink(`/proc/self/fd/${handle.fd}`);
    if (!isWithin(opened, realRoot)) return undefined;
    if (st.size > maxBytes) {
      throw new InvalidArgumentError(IMAGE_FIELD, `the image's ${file} is larger than ${maxBytes} bytes`);
    }
    const buf = Buffer.alloc(maxBytes + 1);
    let length = 0;
    while (length < buf.length) {
      const { bytesRead } = await handle.read(buf, length, buf.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > maxBytes) {
      throw new InvalidArgumentError(IMAGE_FIELD, `the image's ${file} is larger than ${maxBytes} bytes`);
    }
    return buf.subarray(0, length).toString('utf8');
  } finally {
    await handle.close();
  }
}
