// The real host checks and daemon facts buildContainerSpec takes as inputs.
// Kept apart from the builder so that the builder stays testable without a
// host; the daemon wires these in.

import { promises as fs } from 'fs';
import * as path from 'path';
import type { SpecIo } from './index';
import type { HostDevice } from './types';
import type { Rlimit } from './linux';

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

/** The host side of SpecIo; the caller adds targetPidNsPath (it knows the pod's containers). */
export function hostSpecIo(targetPidNsPath?: (containerId: string) => string | undefined): SpecIo {
  return { pathExists, statDevice: statHostDevice, listHostDevices: () => listHostDevices(), targetPidNsPath };
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
