// Reading cgroup files on the stats hot path (ContainerStats and
// PodSandboxStats, which kubelet polls for every container every few
// seconds). Two ways, both synchronous: the files are small texts the kernel
// makes on read, where a thread-pool trip per file (fs/promises: open, fstat,
// read, read, close) cost far more than the read.
//
//   readSmall(file)         open, read, close.
//   StatFiles.read(cg, ..)  one pread at offset 0 of a file kept open per
//                           cgroup: a read from offset 0 makes the text anew
//                           (seq_file), and no path is looked up. Path lookups
//                           in the cgroup filesystem were most of what was left
//                           of a ListContainerStats (issue 12: open and close
//                           were 2.1 of the 3.4 s its reads took in a profile;
//                           kernfs locks per component, and other cgroups
//                           being made and removed hold it). The price is the
//                           kernel's per open file, ~4.5 KiB (its seq_file
//                           page): ~32 KiB per running container.
//
// Open files are closed when their cgroup is destroyed (the manager tells),
// when a read finds the cgroup gone, and by a sweep at most every SWEEP_MS of
// cgroups whose directory went away otherwise (the systemd driver's scopes);
// beyond MAX_OPEN files, reads open and close.
import { closeSync, existsSync, openSync, readFileSync, readSync } from 'fs';
import * as path from 'path';
import { InternalError } from '../../../errors';

/** Open files kept at most (7 per container, 8 per pod: ~1000 containers in 100 pods). */
const MAX_OPEN = 8192;
/** How often, at most, kept cgroups are checked for a directory that went away. */
const SWEEP_MS = 30_000;

/** Reused by every read: nothing else runs between a read's start and its end. */
const BUF = Buffer.allocUnsafe(64 * 1024);

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/** The cgroup (or its file) is gone. */
function gone(err: unknown): boolean {
  return errno(err) === 'ENOENT' || errno(err) === 'ENODEV';
}

/** This kernel refuses the file (kmem accounting off: EOPNOTSUPP). */
function refused(err: unknown): boolean {
  return errno(err) === 'EOPNOTSUPP' || errno(err) === 'EINVAL';
}

function failed(err: unknown, file: string): InternalError {
  return new InternalError(`read ${file}: ${(err as Error).message}`, { path: file });
}

/** The whole file from `fd`: from offset 0 (pread) when `fromStart`, else from where it is. */
function readFd(fd: number, file: string, fromStart: boolean): string {
  let n = 0;
  for (let r = -1; r !== 0 && n < BUF.length; n += r) {
    r = readSync(fd, BUF, n, BUF.length - n, fromStart ? n : null);
  }
  // Larger than the buffer (a cgroup.procs of thousands): read it whole.
  return n < BUF.length ? BUF.toString('utf8', 0, n) : readFileSync(file, 'utf8');
}

/**
 * A small kernel-made file read with open, read, close; undefined when it is
 * absent (the cgroup is gone) or refused by this kernel.
 */
export function readSmall(file: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    if (gone(err) || refused(err)) return undefined;
    throw failed(err, file);
  }
  try {
    return readFd(fd, file, false);
  } catch (err) {
    if (gone(err) || refused(err)) return undefined;
    throw failed(err, file);
  } finally {
    closeSync(fd);
  }
}

export class StatFiles {
  /** cgroup path → (file name → fd, and its path), and a directory of it to check in sweeps. */
  private readonly byCgroup = new Map<string, { dir: string; fds: Map<string, number>; paths: Map<string, string> }>();
  private open = 0;
  private lastSweep: number;

  constructor(
    private readonly max = MAX_OPEN,
    private readonly clock: () => number = Date.now,
  ) {
    this.lastSweep = clock();
  }

  /**
   * File `name` of cgroup `cgPath` as readSmall reads it, through a kept fd;
   * `file` gives its path when it is not open yet (undefined: no such file).
   */
  read(cgPath: string, name: string, file: () => string | undefined): string | undefined {
    this.sweepIfDue();
    let kept = this.byCgroup.get(cgPath);
    let fd = kept?.fds.get(name);
    const where = fd === undefined ? file() : kept!.paths.get(name)!;
    if (where === undefined) return undefined;
    if (fd === undefined) {
      if (this.open >= this.max) return readSmall(where);
      try {
        fd = openSync(where, 'r');
      } catch (err) {
        if (gone(err) || refused(err)) return undefined;
        throw failed(err, where);
      }
      if (!kept) {
        kept = { dir: path.dirname(where), fds: new Map(), paths: new Map() };
        this.byCgroup.set(cgPath, kept);
      }
      kept.fds.set(name, fd);
      kept.paths.set(name, where);
      this.open++;
    }
    try {
      return readFd(fd, where, true);
    } catch (err) {
      // The cgroup was removed under us: its files answer ENODEV from now on.
      if (gone(err)) this.close(cgPath);
      if (gone(err) || refused(err)) return undefined;
      throw failed(err, where);
    }
  }

  /** Closes the files of `cgPath` and of every cgroup below it. */
  close(cgPath: string): void {
    for (const [p, kept] of this.byCgroup) {
      if (p !== cgPath && !p.startsWith(cgPath.endsWith('/') ? cgPath : `${cgPath}/`)) continue;
      for (const fd of kept.fds.values()) closeSync(fd);
      this.open -= kept.fds.size;
      this.byCgroup.delete(p);
    }
  }

  /** Files open now. */
  get size(): number {
    return this.open;
  }

  private sweepIfDue(): void {
    const now = this.clock();
    if (now - this.lastSweep < SWEEP_MS) return;
    this.lastSweep = now;
    for (const [p, kept] of this.byCgroup) if (!existsSync(kept.dir)) this.close(p);
  }
}
