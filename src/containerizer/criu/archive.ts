// The container checkpoint archive: one uncompressed tar at the location
// kubelet asks for, laid out as CRI-O and Podman lay theirs out (the names
// checkpointctl reads), so the usual forensic tools can open it:
//
//   checkpoint/        CRIU's image files (criu dump --images-dir), and
//                      descriptors.json: the init's stdio as runc records it
//   dump.log           CRIU's log of the dump
//   config.dump        JSON: id, name, image, runtime, times (+ "capsa": format)
//   spec.dump          JSON: the launch spec the container runs from (OCI config.json shaped)
//   rootfs-diff.tar    the writable layer's files, without overlay whiteouts
//   deleted.files      JSON array: paths the writable layer deletes from the image
//   capsa.container    JSON: capsa's own container record (restore reads it)
//
// Pure pieces (names, metadata, CRIU's arguments, the layer walk) are
// separate from the tar runs, so they are tested with tables.
import { promises as fs } from 'fs';
import * as path from 'path';
import { InvalidArgumentError, type ErrorContext } from '../../errors';
import type { ContainerRecord } from '../container-spec';
import type { LaunchSpec } from '../launcher/spec';
import { CRIU_TREE_FLAGS, run, tail } from './criu';

export const ARCHIVE = {
  checkpointDir: 'checkpoint',
  /** Inside checkpointDir. */
  descriptors: 'descriptors.json',
  /** Inside checkpointDir: which of fds 0-2 were host files, by CRIU's key (StdioFile[]). */
  stdioFiles: 'stdio-files.json',
  dumpLog: 'dump.log',
  configDump: 'config.dump',
  specDump: 'spec.dump',
  rootfsDiff: 'rootfs-diff.tar',
  deletedFiles: 'deleted.files',
  record: 'capsa.container',
} as const;

/** Marks config.dump as ours; a bump means restore must learn the old shape first. */
export const ARCHIVE_FORMAT = 'capsa-checkpoint/v1';

/** Entries every archive of ours holds (checkpoint/ is a directory: its entries start with it). */
const REQUIRED = [ARCHIVE.configDump, ARCHIVE.specDump, ARCHIVE.rootfsDiff, ARCHIVE.deletedFiles, ARCHIVE.record];

/** config.dump: checkpointctl's ContainerConfig fields, plus ours under "capsa". */
export interface ConfigDump {
  id: string;
  name: string;
  rootfsImage: string;
  rootfsImageRef: string;
  rootfsImageName: string;
  runtime: string;
  createdTime: string;
  checkpointedTime: string;
  capsa: { format: string; sandboxId: string; attempt: number };
}

function isoOf(ns: bigint | undefined): string {
  return new Date(Number((ns ?? 0n) / 1_000_000n)).toISOString();
}

export function configDumpOf(r: ContainerRecord, checkpointedAt: Date): ConfigDump {
  return {
    id: r.id,
    name: r.metadata.name,
    rootfsImage: r.image.userSpecified || r.image.requested,
    rootfsImageRef: r.image.id,
    rootfsImageName: r.image.repoTags?.[0] ?? r.image.requested,
    runtime: 'capsa',
    createdTime: isoOf(r.createdAt ?? r.beganAt),
    checkpointedTime: checkpointedAt.toISOString(),
    capsa: { format: ARCHIVE_FORMAT, sandboxId: r.sandboxId, attempt: r.metadata.attempt },
  };
}

/** The record as stored in the archive: bigints as strings (JSON has none). */
export function recordJson(r: ContainerRecord): string {
  return JSON.stringify(r, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2);
}

/** One of the init's stdio that was a file of a host mount: CRIU's "file[<mnt_id>:<inode>]" key. */
export interface StdioFile {
  fd: number;
  key: string;
}

export interface DumpPlan {
  /** The container's init (pid 1 of its PID namespace). */
  pid: number;
  imagesDir: string;
  workDir: string;
  /** The container's root as its mount namespace sees it (the rootfs mount point). */
  rootfs: string;
  /** Inode of the pod's network namespace, when the container is in one: it is external to the dump. */
  netnsInode?: number;
  /** Mount points bound in from the host (volumes, /etc/hosts, masked paths): external to the dump. */
  externalMounts: string[];
  /** The container's cgroup, frozen by the caller (a pod-wide cut): CRIU keeps it as it found it. */
  freezeCgroup?: string;
  /**
   * Files the monitor opened on the host for the init's stdio (/dev/null
   * without stdin): "file[<mnt_id>:<inode>]" keys, hex, as CRIU names a
   * file whose mount the container cannot see.
   */
  externalFiles?: string[];
  /** The init's terminal (a pty whose master the monitor holds): rdev and dev of its slave. */
  tty?: { rdev: number; dev: number };
}

/**
 * criu dump's arguments, as runc gives them for `runc checkpoint
 * --leave-running` (CRI-O's path): the tree of the init, the process keeps
 * running, established TCP connections and file locks kept, the pod's
 * network namespace and host bind mounts marked external (restore plugs
 * them back in by key), cgroups left to capsa.
 */
export function criuDumpArgs(p: DumpPlan): string[] {
  const args = [
    'dump',
    '--tree',
    String(p.pid),
    '--images-dir',
    p.imagesDir,
    '--work-dir',
    p.workDir,
    '--log-file',
    ARCHIVE.dumpLog,
    '-v4',
    '--leave-running',
    ...CRIU_TREE_FLAGS,
    '--root',
    p.rootfs,
  ];
  if (p.netnsInode !== undefined) args.push('--external', `net[${p.netnsInode}]:extRootNetNS`);
  if (p.freezeCgroup) args.push('--freeze-cgroup', p.freezeCgroup);
  if (p.tty) args.push('--external', `tty[${p.tty.rdev.toString(16)}:${p.tty.dev.toString(16)}]`);
  for (const f of [...new Set(p.externalFiles ?? [])].sort()) args.push('--external', f);
  for (const m of [...new Set(p.externalMounts)].sort()) args.push('--ext-mount-map', `${m}:${m}`);
  return args;
}

/** The mount points of a launch spec that come from outside the container: every bind mount. */
export function externalMountsOf(spec: LaunchSpec): string[] {
  const binds = spec.mounts.filter(
    (m) => m.type === 'bind' || m.options.includes('bind') || m.options.includes('rbind'),
  );
  return [...binds.map((m) => m.destination), ...spec.linux.maskedPaths];
}

export interface LayerWalk {
  /** Paths (relative, "./"-less) the diff tar carries, parents before children. */
  include: string[];
  /** Paths the layer deletes from the image (overlay whiteouts: 0/0 character devices). */
  deleted: string[];
}

/** Walks an overlay upper dir: whiteouts become deletions, the rest goes into the diff. */
export async function walkWritableLayer(upper: string): Promise<LayerWalk> {
  const out: LayerWalk = { include: [], deleted: [] };
  const visit = async (rel: string): Promise<void> => {
    const entries = await fs.readdir(path.join(upper, rel), { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const r = rel === '' ? e.name : `${rel}/${e.name}`;
      if (e.isCharacterDevice()) {
        const st = await fs.lstat(path.join(upper, r));
        if (st.rdev === 0) {
          out.deleted.push(r);
          continue;
        }
      }
      out.include.push(r);
      if (e.isDirectory()) await visit(r);
    }
  };
  await visit('');
  return out;
}

/** Writes the diff tar of `upper` (owners numeric, xattrs kept: overlay's opaque marks travel too). */
export async function writeRootfsDiff(upper: string, walk: LayerWalk, out: string, signal: AbortSignal): Promise<void> {
  const list = `${out}.list`;
  await fs.writeFile(list, walk.include.map((p) => `${p}\0`).join(''));
  try {
    const r = await run(
      'tar',
      [
        '-C',
        upper,
        '--numeric-owner',
        '--xattrs',
        '--xattrs-include=*',
        '--no-recursion',
        '--null',
        '-T',
        list,
        '-cf',
        out,
      ],
      signal,
    );
    if (r.code !== 0) throw new Error(`tar of the writable layer ${upper} failed: ${tail(r.stderr)}`);
  } finally {
    await fs.rm(list, { force: true });
  }
}

/** Packs `staging` into `location` through a temp name beside it, renamed when complete. */
export async function packArchive(staging: string, location: string, signal: AbortSignal): Promise<void> {
  const tmp = path.join(path.dirname(location), `.${path.basename(location)}.capsa-${process.pid}-${Date.now()}`);
  try {
    const r = await run('tar', ['-C', staging, '--numeric-owner', '-cf', tmp, '.'], signal);
    if (r.code !== 0) throw new Error(`writing the checkpoint archive failed: ${tail(r.stderr)}`);
    // CRIU's images hold the processes' memory: secrets, keys. Root's alone.
    await fs.chmod(tmp, 0o600);
    const fh = await fs.open(tmp, 'r');
    await fh.sync().finally(() => fh.close());
    await fs.rename(tmp, location);
  } finally {
    await fs.rm(tmp, { force: true });
  }
}

export interface ArchiveContents {
  config: ConfigDump;
  spec: LaunchSpec;
  /** The record as stored (bigints as strings). */
  record: Record<string, unknown>;
  deleted: string[];
  /** Where it was unpacked. */
  dir: string;
}

/** "./a/b" or "a/b/" → "a/b"; "." → "". */
function entryName(e: string): string {
  return e.replace(/^\.\//, '').replace(/\/+$/, '');
}

/**
 * Checks that `names` (a tar listing) is an archive of ours: no entry
 * outside the archive root, every required file, CRIU's images dir.
 * Returns the problem, or undefined.
 */
export function listingProblem(names: string[]): string | undefined {
  const seen = new Set<string>();
  for (const raw of names) {
    const n = entryName(raw);
    if (raw.startsWith('/') || n.split('/').includes('..')) return `entry ${JSON.stringify(raw)} leaves the archive`;
    seen.add(n);
  }
  const missing: string[] = REQUIRED.filter((f) => !seen.has(f));
  if (![...seen].some((n) => n === ARCHIVE.checkpointDir || n.startsWith(`${ARCHIVE.checkpointDir}/`)))
    missing.unshift(`${ARCHIVE.checkpointDir}/`);
  if (missing.length) return `not a capsa checkpoint archive: no ${missing.join(', ')}`;
  return undefined;
}

function parseJson<T>(text: string, file: string, field: string, ctx: ErrorContext): T {
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new InvalidArgumentError(field, `checkpoint archive: ${file} is not JSON (${(err as Error).message})`, ctx);
  }
}

/**
 * Lists, checks and unpacks the archive `file` into `dest` (an empty dir),
 * then reads its metadata. A file that is not a tar, is truncated or is not
 * ours is InvalidArgument naming `field`.
 */
export async function readArchive(
  file: string,
  dest: string,
  field: string,
  signal: AbortSignal,
): Promise<ArchiveContents> {
  const ctx = { path: file };
  const listed = await run('tar', ['-tf', file], signal);
  if (listed.code !== 0)
    throw new InvalidArgumentError(field, `${file} is not a readable tar archive: ${tail(listed.stderr, 2)}`, ctx);
  const problem = listingProblem(listed.stdout.split('\n').filter((l) => l !== ''));
  if (problem) throw new InvalidArgumentError(field, `${file}: ${problem}`, ctx);
  const x = await run('tar', ['-C', dest, '--numeric-owner', '--no-same-permissions', '-xf', file], signal);
  if (x.code !== 0) throw new InvalidArgumentError(field, `unpacking ${file} failed: ${tail(x.stderr, 2)}`, ctx);
  const read = (f: string): Promise<string> => fs.readFile(path.join(dest, f), 'utf8');
  const config = parseJson<ConfigDump>(await read(ARCHIVE.configDump), ARCHIVE.configDump, field, ctx);
  if (config?.capsa?.format !== ARCHIVE_FORMAT) {
    const got = config?.capsa?.format ? `format ${config.capsa.format}` : `runtime ${config?.runtime ?? 'unknown'}`;
    throw new InvalidArgumentError(field, `${file} is not a ${ARCHIVE_FORMAT} archive (${got})`, ctx);
  }
  const deleted = parseJson<unknown>(await read(ARCHIVE.deletedFiles), ARCHIVE.deletedFiles, field, ctx);
  if (!Array.isArray(deleted) || deleted.some((d) => typeof d !== 'string'))
    throw new InvalidArgumentError(field, `${file}: ${ARCHIVE.deletedFiles} is not a list of paths`, ctx);
  return {
    config,
    spec: parseJson<LaunchSpec>(await read(ARCHIVE.specDump), ARCHIVE.specDump, field, ctx),
    record: parseJson<Record<string, unknown>>(await read(ARCHIVE.record), ARCHIVE.record, field, ctx),
    deleted: deleted as string[],
    dir: dest,
  };
}
