// Applies one layer tar to an empty directory, keeping it a *diff*: the
// directory becomes one overlay lowerdir, so whiteouts are stored in
// overlay's own form (a 0/0 character device for ".wh.<name>", the
// trusted.overlay.opaque=y xattr for ".wh..wh..opq"), never applied.
//
// Containment. Nothing may be created outside `root`:
// - names are cleaned lexically (paths.ts): leading "/" dropped, ".." that
//   climbs above the root rejects the entry;
// - every parent directory of an entry is checked with lstat (or known from
//   this unpack) to be a real directory — never a symlink, so no write goes
//   through a link the layer planted; a non-directory parent rejects too;
// - the final component is never followed: files are created with
//   O_CREAT|O_EXCL|O_NOFOLLOW after removing what was there, and mkdir,
//   symlink, link, mknod and the l* calls do not follow either;
// - hardlink targets are cleaned the same way, must already exist in this
//   layer (under real directories) and must not be a directory or a
//   whiteout. A hardlink to a symlink links the symlink itself (link(2) does
//   not follow), which is as harmless as the layer holding that symlink.
// Only this process writes the temp tree (mode 0700 parent), so the checks
// are not racy.
//
// It uses synchronous fs calls on purpose: it runs in a worker thread
// (unpack-worker.ts), where they cost a few microseconds each instead of a
// thread-pool round trip per call (10x faster on layers of small files),
// and the daemon's event loop never waits on them.
import * as fs from 'fs';
import * as path from 'path';

import { CapsaError, InternalError, InvalidArgumentError } from '../../errors';
import { native } from '../../native';
import type { Logger } from '../../log';
import { cleanEntryPath, classifyEntry, OVERLAY_OPAQUE_XATTR, xattrDecision } from './paths';
import type { SparseMap, TarHeader, TarReader } from './tar-reader';

export const DEFAULT_MAX_ENTRIES = 1_000_000;

export interface ApplyOptions {
  /** Most entries one layer may have. */
  maxEntries?: number;
  log?: Pick<Logger, 'debug' | 'warn'>;
  /** For error context. */
  image?: string;
  signal?: AbortSignal;
}

export interface ApplyStats {
  /** Tar entries read (including whiteouts and metadata-only ones). */
  entries: number;
  /** Inodes created. */
  inodes: number;
  /** Bytes of regular-file data written. */
  bytes: number;
  /** xattrs dropped by policy or refused by the file system. */
  xattrsDropped: number;
}

const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;
const S_IFIFO = 0o010000;
const OPEN_NEW = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;

interface Times {
  atime: number;
  mtime: number;
}

export class LayerApplier {
  private readonly root: string;
  private readonly opts: ApplyOptions;
  private readonly maxEntries: number;
  /** Relative paths known to be real directories (not symlinks) in this tree. '' is the root. */
  private readonly dirs = new Set<string>(['']);
  /** Whiteout devices this layer created. */
  private readonly whiteouts = new Set<string>();
  private readonly dirTimes = new Map<string, Times>();
  private readonly umask: number;
  readonly stats: ApplyStats = { entries: 0, inodes: 0, bytes: 0, xattrsDropped: 0 };
  private currentName = '';

  constructor(root: string, opts: ApplyOptions = {}) {
    this.root = root;
    this.opts = opts;
    this.maxEntries = opts.maxEntries ?? DEFAULT_MAX_ENTRIES;
    this.umask = process.umask();
  }

  /** Reads every entry of `reader` into the tree. Throws a CapsaError naming the entry on failure. */
  async applyAll(reader: TarReader): Promise<ApplyStats> {
    for (;;) {
      if (this.opts.signal?.aborted) throw this.opts.signal.reason ?? new Error('aborted');
      const h = await reader.next();
      if (!h) break;
      this.currentName = h.name;
      try {
        await this.apply(h, reader);
      } catch (err) {
        throw this.wrap(err, h.name);
      }
    }
    this.currentName = '';
    this.finish();
    return this.stats;
  }

  private reject(name: string, reason: string): CapsaError {
    return new InvalidArgumentError('layer', `entry ${JSON.stringify(name)}: ${reason}`, {
      stage: 'unpack',
      image: this.opts.image,
      path: name,
    });
  }

  private wrap(err: unknown, name: string): CapsaError {
    if (err instanceof CapsaError) return err;
    const e = err as NodeJS.ErrnoException;
    if (e?.name === 'TarFormatError') return this.reject(name, e.message);
    const context = { stage: 'unpack', image: this.opts.image, path: name };
    if (e?.code === 'ENOSPC' || e?.code === 'EDQUOT') {
      return new CapsaError('ResourceExhausted', `entry ${JSON.stringify(name)}: ${e.message}`, context, {
        cause: err,
      });
    }
    return new InternalError(`entry ${JSON.stringify(name)}: ${e?.message ?? String(err)}`, context, { cause: err });
  }

  private abs(rel: string): string {
    return rel === '' ? this.root : path.join(this.root, rel);
  }

  private async apply(h: TarHeader, reader: TarReader): Promise<void> {
    const st = this.stats;
    if (++st.entries > this.maxEntries) throw this.reject(h.name, `layer has more than ${this.maxEntries} entries`);
    const clean = cleanEntryPath(h.name);
    if (!clean.ok) throw this.reject(h.name, clean.reason);
    const rel = clean.path;

    if (rel === '') {
      // "./" or "/": the layer root itself. Only a directory makes sense.
      if (h.type !== 'dir') throw this.reject(h.name, `a ${h.type} cannot replace the layer root`);
      this.setMeta(rel, h, false);
      this.dirTimes.set(rel, times(h));
      return;
    }

    const kind = classifyEntry(rel);
    switch (kind.kind) {
      case 'invalid':
        throw this.reject(h.name, kind.reason);
      case 'meta':
        this.opts.log?.debug({ entry: h.name }, 'skipping aufs metadata entry');
        return;
      case 'opaque':
        this.ensureDir(kind.dir, h.name);
        native().lsetxattr(this.abs(kind.dir), OVERLAY_OPAQUE_XATTR, Buffer.from('y'));
        return;
      case 'whiteout':
        this.whiteout(kind.dir, kind.target, h.name);
        return;
      case 'normal':
        break;
    }

    const parent = dirnameRel(rel);
    this.ensureDir(parent, h.name);
    const full = this.abs(rel);

    switch (h.type) {
      case 'dir': {
        const existing = lstatOrNull(full);
        if (!existing || !existing.isDirectory()) {
          const wasWhiteout = this.whiteouts.has(rel);
          if (existing) this.removeExisting(rel);
          fs.mkdirSync(full, 0o700);
          st.inodes++;
          if (wasWhiteout) {
            // ".wh.x" then "x/": x replaces the lower x instead of merging with it.
            native().lsetxattr(full, OVERLAY_OPAQUE_XATTR, Buffer.from('y'));
          }
        }
        this.dirs.add(rel);
        this.setMeta(rel, h, false);
        this.dirTimes.set(rel, times(h));
        return;
      }
      case 'file': {
        this.removeExisting(rel);
        const fd = fs.openSync(full, OPEN_NEW, h.mode & 0o777);
        st.inodes++;
        try {
          if (h.sparse) st.bytes += await writeSparse(fd, h.sparse, reader.body());
          else if (h.size > 0) {
            for await (const chunk of reader.body()) {
              let off = 0;
              while (off < chunk.length) off += fs.writeSync(fd, chunk, off, chunk.length - off);
              st.bytes += chunk.length;
            }
          }
          if (h.uid !== 0 || h.gid !== 0) fs.fchownSync(fd, h.uid, h.gid);
          if (h.uid !== 0 || h.gid !== 0 || h.mode & 0o7000 || h.mode & this.umask) fs.fchmodSync(fd, h.mode);
          this.setXattrs(full, h);
          const t = times(h);
          fs.futimesSync(fd, t.atime, t.mtime);
        } finally {
          fs.closeSync(fd);
        }
        return;
      }
      case 'symlink':
        this.removeExisting(rel);
        fs.symlinkSync(h.linkname, full);
        st.inodes++;
        this.setMeta(rel, h, true);
        return;
      case 'hardlink': {
        const target = this.hardlinkTarget(h);
        if (target === rel) throw this.reject(h.name, 'hardlink to itself');
        this.removeExisting(rel);
        fs.linkSync(this.abs(target), full);
        return;
      }
      case 'char':
      case 'block':
      case 'fifo': {
        this.removeExisting(rel);
        const fmt = h.type === 'char' ? S_IFCHR : h.type === 'block' ? S_IFBLK : S_IFIFO;
        const [maj, min] = h.type === 'fifo' ? [0, 0] : [h.devmajor, h.devminor];
        native().mknod(full, fmt | (h.mode & 0o777), maj, min);
        st.inodes++;
        this.setMeta(rel, h, false);
        return;
      }
    }
  }

  /** Owner, mode (after chown: chown clears setuid/setgid), xattrs, times (not for dirs: deferred). */
  private setMeta(rel: string, h: TarHeader, isSymlink: boolean): void {
    const full = this.abs(rel);
    fs.lchownSync(full, h.uid, h.gid);
    if (!isSymlink) fs.chmodSync(full, h.mode);
    this.setXattrs(full, h);
    if (h.type !== 'dir') {
      const t = times(h);
      fs.lutimesSync(full, t.atime, t.mtime);
    }
  }

  private setXattrs(full: string, h: TarHeader): void {
    for (const [name, value] of h.xattrs) {
      if (xattrDecision(name) === 'drop') {
        this.stats.xattrsDropped++;
        this.opts.log?.debug({ entry: h.name, xattr: name }, 'dropping xattr by policy');
        continue;
      }
      try {
        native().lsetxattr(full, name, value);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOTSUP' || code === 'EPERM') {
          // The file system refuses it (no user xattrs on symlinks, no ACL support…): keep going.
          this.stats.xattrsDropped++;
          this.opts.log?.warn({ entry: h.name, xattr: name, code }, 'file system refused an xattr; dropped');
          continue;
        }
        throw err;
      }
    }
  }

  /** Makes `rel` (and its parents) exist as real directories, refusing symlinks and non-directories. */
  private ensureDir(rel: string, name: string): void {
    if (this.dirs.has(rel)) return;
    let cur = '';
    for (const c of rel.split('/')) {
      cur = cur ? `${cur}/${c}` : c;
      if (this.dirs.has(cur)) continue;
      const st = lstatOrNull(this.abs(cur));
      if (!st) {
        fs.mkdirSync(this.abs(cur), 0o755);
        this.stats.inodes++;
      } else if (this.whiteouts.has(cur)) {
        // ".wh.a" then "a/b" with no "a/" entry: a becomes a new, opaque directory.
        fs.unlinkSync(this.abs(cur));
        this.whiteouts.delete(cur);
        fs.mkdirSync(this.abs(cur), 0o755);
        native().lsetxattr(this.abs(cur), OVERLAY_OPAQUE_XATTR, Buffer.from('y'));
      } else if (st.isSymbolicLink()) {
        throw this.reject(name, `parent ${JSON.stringify(cur)} is a symlink; refusing to write through it`);
      } else if (!st.isDirectory()) {
        throw this.reject(name, `parent ${JSON.stringify(cur)} is not a directory`);
      }
      this.dirs.add(cur);
    }
  }

  /** Resolves a hardlink's target inside this layer without following any symlink. */
  private hardlinkTarget(h: TarHeader): string {
    const clean = cleanEntryPath(h.linkname);
    if (!clean.ok) throw this.reject(h.name, `hardlink target ${JSON.stringify(h.linkname)}: ${clean.reason}`);
    const target = clean.path;
    if (target === '') throw this.reject(h.name, 'hardlink to the layer root');
    let cur = '';
    for (const c of dirnameRel(target) === '' ? [] : dirnameRel(target).split('/')) {
      cur = cur ? `${cur}/${c}` : c;
      if (this.dirs.has(cur)) continue;
      const st = lstatOrNull(this.abs(cur));
      if (!st) break;
      if (st.isSymbolicLink()) {
        throw this.reject(h.name, `hardlink target ${JSON.stringify(h.linkname)} goes through symlink ${cur}`);
      }
      if (!st.isDirectory()) break;
      this.dirs.add(cur);
    }
    const st = lstatOrNull(this.abs(target));
    if (!st || !this.dirs.has(dirnameRel(target))) {
      throw this.reject(h.name, `hardlink target ${JSON.stringify(h.linkname)} is not in this layer`);
    }
    if (st.isDirectory()) throw this.reject(h.name, `hardlink target ${JSON.stringify(h.linkname)} is a directory`);
    if (this.whiteouts.has(target)) {
      throw this.reject(h.name, `hardlink target ${JSON.stringify(h.linkname)} is a whiteout`);
    }
    return target;
  }

  private whiteout(dir: string, target: string, name: string): void {
    this.ensureDir(dir, name);
    const full = this.abs(target);
    const existing = lstatOrNull(full);
    if (existing) {
      // The layer itself has `target` too: it still hides the lower one. A
      // directory must then not merge with the lower directory.
      if (existing.isDirectory()) native().lsetxattr(full, OVERLAY_OPAQUE_XATTR, Buffer.from('y'));
      return;
    }
    native().mknod(full, S_IFCHR, 0, 0);
    this.stats.inodes++;
    this.whiteouts.add(target);
  }

  /** Removes whatever is at `rel` (an earlier entry of this layer), forgetting what we knew under it. */
  private removeExisting(rel: string): void {
    const full = this.abs(rel);
    const st = lstatOrNull(full);
    if (!st) return;
    if (st.isDirectory()) {
      fs.rmSync(full, { recursive: true, force: true });
      const prefix = `${rel}/`;
      for (const set of [this.dirs, this.whiteouts]) {
        for (const p of set) if (p === rel || p.startsWith(prefix)) set.delete(p);
      }
      for (const p of this.dirTimes.keys()) if (p === rel || p.startsWith(prefix)) this.dirTimes.delete(p);
    } else {
      fs.unlinkSync(full);
      this.whiteouts.delete(rel);
    }
  }

  /** Directory times last: creating their contents changed them. */
  private finish(): void {
    for (const [rel, t] of this.dirTimes) fs.lutimesSync(this.abs(rel), t.atime, t.mtime);
  }

  /** The entry being applied when an error escaped (for diagnostics). */
  get current(): string {
    return this.currentName;
  }
}

function dirnameRel(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '' : rel.slice(0, i);
}

function times(h: TarHeader): Times {
  return { atime: h.atime ?? h.mtime, mtime: h.mtime };
}

function lstatOrNull(p: string): fs.Stats | undefined {
  return fs.lstatSync(p, { throwIfNoEntry: false });
}

/**
 * Writes a sparse file's data segments where they belong and sets its size:
 * the holes between them are never written, so they stay holes on disk.
 * Returns the bytes written (the data, not the holes).
 */
async function writeSparse(fd: number, map: SparseMap, body: AsyncIterable<Buffer>): Promise<number> {
  const segs = map.segments;
  let i = 0;
  let done = 0; // bytes of segs[i] written
  let written = 0;
  for await (const chunk of body) {
    let off = 0;
    while (off < chunk.length) {
      while (segs[i].length === done) {
        i++;
        done = 0;
      }
      const n = Math.min(chunk.length - off, segs[i].length - done);
      const k = fs.writeSync(fd, chunk, off, n, segs[i].offset + done);
      off += k;
      done += k;
      written += k;
    }
  }
  fs.ftruncateSync(fd, map.realSize);
  return written;
}
