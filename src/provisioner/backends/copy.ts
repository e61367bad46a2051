// copy: the fallback where overlay is unavailable. Copies the layers, lowest
// first, into <stateDir>/<id>/copy/rootfs, applying overlay-form whiteouts
// (0/0 character devices delete the path below) and opaque directories
// (trusted.overlay.opaque=y empties the directory below), keeping owners,
// modes, times, xattrs, device nodes, fifos, symlinks and hardlinks (within
// a layer). The tree is then bind-mounted at the target, so it lives on the
// state disk rather than wherever the target is (often a tmpfs).
//
// Writes never follow links: every destination is removed before it is
// created, parents are directories this walk made or checked with lstat,
// and symlinks are copied as symlinks.
import { constants as C, promises as fs } from 'fs';
import * as path from 'path';

import type { ErrorContext } from '../../errors';
import type { Logger } from '../../log';
import { native } from '../../native';
import { OVERLAY_OPAQUE_XATTR } from '../layers/paths';
import { MountingBackend } from './backend';
import { removeTree } from './mounts';

const S_IFMT = 0o170000n;
const S_IFCHR = 0o020000n;

type BigStats = import('fs').BigIntStats;

function major(rdev: bigint): number {
  return Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn & 0xffffffffn));
}
function minor(rdev: bigint): number {
  return Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn & 0xffffffffn));
}

function isWhiteout(st: BigStats): boolean {
  return (st.mode & S_IFMT) === S_IFCHR && st.rdev === 0n;
}

async function lstatOrNull(p: string): Promise<BigStats | undefined> {
  try {
    return await fs.lstat(p, { bigint: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function isOpaque(dir: string): boolean {
  try {
    return native().lgetxattr(dir, OVERLAY_OPAQUE_XATTR)?.toString() === 'y';
  } catch {
    return false;
  }
}

interface Times {
  atime: bigint;
  mtime: bigint;
}

/** Copies layer trees into one directory, merging as overlayfs would show them. */
export class LayerMerger {
  private readonly dest: string;
  private readonly dirTimes = new Map<string, Times>();
  private readonly log?: Logger;
  private links = new Map<string, string>();

  constructor(dest: string, log?: Logger) {
    this.dest = dest;
    this.log = log;
  }

  async addLayer(layer: string): Promise<void> {
    this.links = new Map();
    const rootSt = await fs.lstat(layer, { bigint: true });
    if (!rootSt.isDirectory()) throw new Error(`layer ${layer} is not a directory`);
    if (isOpaque(layer)) await this.emptyDir('');
    await this.copyMeta(layer, this.dest, rootSt, false);
    this.dirTimes.set('', { atime: rootSt.atimeNs, mtime: rootSt.mtimeNs });
    await this.walk(layer, '');
  }

  /** Sets directory times last (their contents changed them). */
  async finish(): Promise<void> {
    for (const [rel, t] of this.dirTimes) {
      await fs.lutimes(path.join(this.dest, rel), nsToSec(t.atime), nsToSec(t.mtime)).catch(() => undefined);
    }
  }

  private async emptyDir(rel: string): Promise<void> {
    const d = path.join(this.dest, rel);
    for (const name of await fs.readdir(d)) await fs.rm(path.join(d, name), { recursive: true, force: true });
    const prefix = rel ? `${rel}/` : '';
    for (const k of this.dirTimes.keys()) if (k !== rel && k.startsWith(prefix)) this.dirTimes.delete(k);
  }

  private async remove(rel: string, st: BigStats): Promise<void> {
    const d = path.join(this.dest, rel);
    if (st.isDirectory()) {
      await fs.rm(d, { recursive: true, force: true });
      for (const k of this.dirTimes.keys()) if (k === rel || k.startsWith(`${rel}/`)) this.dirTimes.delete(k);
    } else {
      await fs.unlink(d);
    }
  }

  private async walk(srcDir: string, rel: string): Promise<void> {
    const names = await fs.readdir(srcDir);
    names.sort();
    for (const name of names) {
      const s = path.join(srcDir, name);
      const r = rel ? `${rel}/${name}` : name;
      const d = path.join(this.dest, r);
      const st = await fs.lstat(s, { bigint: true });
      const existing = await lstatOrNull(d);
      if (isWhiteout(st)) {
        if (existing) await this.remove(r, existing);
        continue;
      }
      if (st.isDirectory()) {
        if (existing && !existing.isDirectory()) await this.remove(r, existing);
        if (existing?.isDirectory()) {
          if (isOpaque(s)) await this.emptyDir(r);
        } else {
          await fs.mkdir(d, 0o700);
        }
        await this.copyMeta(s, d, st, false);
        this.dirTimes.set(r, { atime: st.atimeNs, mtime: st.mtimeNs });
        await this.walk(s, r);
        continue;
      }
      if (existing) await this.remove(r, existing);
      const key = `${st.dev}:${st.ino}`;
      const first = st.nlink > 1n ? this.links.get(key) : undefined;
      if (first !== undefined) {
        await fs.link(path.join(this.dest, first), d);
        continue;
      }
      if (st.isFile()) {
        await fs.copyFile(s, d, C.COPYFILE_EXCL | C.COPYFILE_FICLONE);
      } else if (st.isSymbolicLink()) {
        await fs.symlink(await fs.readlink(s), d);
      } else if (st.isCharacterDevice() || st.isBlockDevice() || st.isFIFO()) {
        native().mknod(d, Number(st.mode & S_IFMT) | 0o600, major(st.rdev), minor(st.rdev));
      } else {
        this.log?.warn({ path: s }, 'copy backend: skipping a socket or unknown file type');
        continue;
      }
      await this.copyMeta(s, d, st, true);
      if (st.nlink > 1n) this.links.set(key, r);
    }
  }

  private async copyMeta(src: string, dst: string, st: BigStats, setTimes: boolean): Promise<void> {
    await fs.lchown(dst, Number(st.uid), Number(st.gid));
    if (!st.isSymbolicLink()) await fs.chmod(dst, Number(st.mode & 0o7777n));
    let names: string[] = [];
    try {
      names = native().llistxattr(src);
    } catch {
      names = [];
    }
    for (const name of names) {
      if (name.startsWith('trusted.overlay.')) continue;
      const value = native().lgetxattr(src, name);
      if (!value) continue;
      try {
        native().lsetxattr(dst, name, value);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOTSUP' && code !== 'EPERM') throw err;
      }
    }
    if (setTimes) await fs.lutimes(dst, nsToSec(st.atimeNs), nsToSec(st.mtimeNs));
  }
}

function nsToSec(ns: bigint): number {
  return Number(ns / 1000n) / 1e6;
}

export class CopyBackend extends MountingBackend {
  readonly name = 'copy';

  writableDir(id: string): string {
    return path.join(this.dir(id), 'rootfs');
  }

  protected async assemble(id: string, layerDirs: string[], target: string, ctx: ErrorContext): Promise<void> {
    const rootfs = this.writableDir(id);
    // A rootfs left by an interrupted provision is rebuilt from scratch.
    await removeTree(this.dir(id));
    await fs.mkdir(rootfs, { recursive: true, mode: 0o755 });
    const merger = new LayerMerger(rootfs, this.log);
    for (const layer of layerDirs) {
      await merger.addLayer(await this.layerDir(layer, ctx));
    }
    await merger.finish();
    await fs.mkdir(target, { recursive: true, mode: 0o755 });
    native().mount(rootfs, target, '', native().constants.MS_BIND, '');
    this.log?.debug({ id, layers: layerDirs.length, target }, 'copy rootfs assembled');
  }

  /** An image volume: the layers merged into <base>/tree, bound read-only. */
  protected async mergeReadOnly(
    base: string,
    layerDirs: string[],
    target: string,
    flags: number,
    ctx: ErrorContext,
  ): Promise<void> {
    const tree = path.join(base, 'tree');
    await fs.mkdir(tree, { recursive: true, mode: 0o755 });
    const merger = new LayerMerger(tree, this.log);
    for (const layer of layerDirs) await merger.addLayer(await this.layerDir(layer, ctx));
    await merger.finish();
    const { MS_BIND, MS_REMOUNT } = native().constants;
    native().mount(tree, target, '', MS_BIND, '');
    native().mount('', target, '', MS_BIND | MS_REMOUNT | flags, '');
  }
}
