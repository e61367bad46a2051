// The real host checks and daemon facts buildContainerSpec takes as inputs.
// Kept apart from the builder so that the builder stays testable without a
// host; the daemon wires these in.

import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { HostDevice, SpecIo } from './types';
import type { Rlimit } from './linux';
import { InvalidArgumentError } from '../../errors';

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** Linux dev_t → major/minor (glibc's gnu_dev_major/minor encoding). */
export function splitDev(dev: bigint): { major: number; minor: number } {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & 0xfffff000n);
  const minor = (dev & 0xffn) | ((dev >> 12n) & 0xffffff00n);
  return { major: Number(major), minor: Number(minor) };
}

/** stat(2) (following symlinks, as kubelet resolves them) of a device node. */
export async function statHostDevice(hostPath: string): Promise<HostDevice | undefined> {
  let st;
  try {
    st = await fs.stat(hostPath, { bigint: true });
  } catch (err) {
    if (isMissing(err)) return undefined;
    throw err;
  }
  const type = st.isCharacterDevice() ? 'c' : st.isBlockDevice() ? 'b' : undefined;
  if (!type) return undefined;
  return {
    path: hostPath,
    type,
    ...splitDev(st.rdev),
    mode: Number(st.mode & 0o7777n),
    uid: Number(st.uid),
    gid: Number(st.gid),
  };
}

/** /dev subtrees that are per-container or not devices (as containerd skips them). */
const SKIPPED_DEV_DIRS = new Set(['/dev/pts', '/dev/shm', '/dev/mqueue', '/dev/fd', '/dev/.lxc', '/dev/.udev']);

/** Every char/block device node under `root` (symlinks not followed, depth-limited). */
export async function listHostDevices(root = '/dev', maxDepth = 8): Promise<HostDevice[]> {
  const out: HostDevice[] = [];
  const walk = async (dir: string, depth: number): Promise<void> => {
    if (depth > maxDepth || SKIPPED_DEV_DIRS.has(dir)) return;
    let entries;
    try {
      entries = await fs.readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (isMissing(err)) return;
      throw err;
    }
    for (const e of entries) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) await walk(p, depth + 1);
      else if (e.isCharacterDevice() || e.isBlockDevice()) {
        const d = await statHostDevice(p);
        if (d) out.push(d);
      }
    }
  };
  await walk(root, 0);
  return out;
}

export async function pathExists(hostPath: string): Promise<boolean> {
  try {
    await fs.stat(hostPath);
    return true;
  } catch (err) {
    if (isMissing(err)) return false;
    throw err;
  }
}

/**
 * Makes the directories of the container's log file below the pod's log
 * directory, refusing a path that would leave it on the host: no component
 * below the log directory may be a symlink (a symlink `logs/x -> /etc` would
 * have the container's output appended to a host file), every one must be a
 * directory, and the file itself, when it exists, must be a regular file.
 * The log directory itself may be reached through symlinks (it is the
 * operator's / kubelet's). `field` names the request's log_path.
 */
export async function prepareLogFile(logDir: string, file: string, field: string, given: string): Promise<void> {
  const rel = path.relative(logDir, file);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) {
    throw new InvalidArgumentError(field, `"${given}" is not a file inside the log directory`);
  }
  await fs.mkdir(logDir, { recursive: true, mode: 0o755 });
  const parts = rel.split('/');
  let cur = logDir;
  for (const [i, part] of parts.entries()) {
    cur = path.join(cur, part);
    const last = i === parts.length - 1;
    let st = await fs.lstat(cur).catch((err: unknown) => {
      if (isMissing(err)) return undefined;
      throw err;
    });
    if (!st && !last) {
      await fs.mkdir(cur, { mode: 0o755 }).catch((err: unknown) => {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      });
      st = await fs.lstat(cur);
    }
    if (!st) return;
    if (st.isSymbolicLink()) {
      throw new InvalidArgumentError(
        field,
        `"${given}" goes through the symlink ${cur}: log files stay in the log directory`,
      );
    }
    if (!last && !st.isDirectory()) throw new InvalidArgumentError(field, `${cur} is not a directory`);
    if (last && !st.isFile()) throw new InvalidArgumentError(field, `${cur} exists and is not a regular file`);
  }
}

/** PROC_SUPER_MAGIC */
const PROC_SUPER_MAGIC = 0x9fa0;

/** Whether `hostPath` (symlinks followed, as the bind follows them) is on a procfs. */
export async function isProcfs(hostPath: string): Promise<boolean> {
  try {
    return (await fs.statfs(hostPath)).type === PROC_SUPER_MAGIC;
  } catch (err) {
    if (isMissing(err)) return false;
    throw err;
  }
}

/**
 * Whether this kernel has mount_setattr(2) (5.12), which recursive read-only
 * binds need (MOUNT_ATTR_RDONLY with AT_RECURSIVE), as containerd decides.
 */
export function kernelHasMountSetattr(release: string = os.release()): boolean {
  const m = /^(\d+)\.(\d+)/.exec(release);
  if (!m) return false;
  const [major, minor] = [Number(m[1]), Number(m[2])];
  return major > 5 || (major === 5 && minor >= 12);
}

/** The host side of SpecIo; the caller adds targetPidNsPath (it knows the pod's containers). */
export function hostSpecIo(targetPidNsPath?: (containerId: string) => string | undefined): SpecIo {
  return {
    pathExists,
    isProcfs,
    recursiveReadOnly: kernelHasMountSetattr(),
    statDevice: statHostDevice,
    listHostDevices: () => listHostDevices(),
    targetPidNsPath,
  };
}

/** /proc/self/oom_score_adj. */
export async function readDaemonOomScoreAdj(): Promise<number> {
  return Number.parseInt((await fs.readFile('/proc/self/oom_score_adj', 'utf8')).trim(), 10);
}

/** /proc/sys/kernel/cap_last_cap. */
export async function readCapLastCap(): Promise<number> {
  return Number.parseInt((await fs.readFile('/proc/sys/kernel/cap_last_cap', 'utf8')).trim(), 10);
}

/** The daemon's RLIMIT_NOFILE, from /proc/self/limits ("unlimited" is capped at 2^20, the kernel's nr_open default). */
export async function readDaemonNofile(): Promise<Rlimit> {
  const text = await fs.readFile('/proc/self/limits', 'utf8');
  const line = text.split('\n').find((l) => l.startsWith('Max open files'));
  const m = line ? /Max open files\s+(\S+)\s+(\S+)/.exec(line) : null;
  const value = (s: string): number => (s === 'unlimited' ? 1 << 20 : Number.parseInt(s, 10));
  if (!m) return { soft: 1024, hard: 4096 };
  return { soft: value(m[1]), hard: value(m[2]) };
}
