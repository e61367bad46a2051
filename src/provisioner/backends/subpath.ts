// An image volume's sub path (CRI Mount.image_sub_path) resolved inside
// the mounted image, with the rules of containerd's os.OpenInRoot: relative
// symlinks are followed while they stay inside the image, an absolute
// symlink or a ".." above the image's root is refused, and the result must
// be a directory (image volumes mount directories only). The tree is a
// read-only mount of our own layers, so resolving by path cannot race a
// change to it; the path returned has no symlink left in it.
import { promises as fs } from 'fs';
import * as path from 'path';

import { InvalidArgumentError } from '../../errors';

/** Linux's limit on symlinks followed in one lookup (ELOOP after it). */
const MAX_SYMLINKS = 40;

/** `subPath` (relative, no ".."; checked by the caller's validation too) under `root`; errors name `field`. */
export async function resolveSubPath(root: string, subPath: string, field: string): Promise<string> {
  const bad = (why: string): InvalidArgumentError => new InvalidArgumentError(field, `"${subPath}" ${why}`);
  if (subPath.includes('\0') || subPath.startsWith('/')) throw bad('must be a relative path');
  const todo = components(subPath);
  if (todo.includes('..')) throw bad('must not contain ".."');
  const done: string[] = [];
  let hops = 0;
  while (todo.length > 0) {
    const name = todo.shift()!;
    if (name === '..') {
      if (done.length === 0) throw bad('leaves the image through a symlink');
      done.pop();
      continue;
    }
    const at = path.join(root, ...done, name);
    const st = await fs.lstat(at).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
      throw err;
    });
    if (!st) throw bad(`does not exist in the image (no ${path.posix.join(...done, name)})`);
    if (st.isSymbolicLink()) {
      if (++hops > MAX_SYMLINKS) throw bad(`has more than ${MAX_SYMLINKS} symlinks to follow`);
      const target = await fs.readlink(at);
      if (target.startsWith('/')) {
        throw bad(`leaves the image through the absolute symlink ${path.posix.join(...done, name)} -> ${target}`);
      }
      todo.unshift(...components(target));
      continue;
    }
    if (!st.isDirectory()) throw bad(`is not a directory in the image (${path.posix.join(...done, name)})`);
    done.push(name);
  }
  return path.join(root, ...done);
}

function components(p: string): string[] {
  return p.split('/').filter((c) => c !== '' && c !== '.');
}
