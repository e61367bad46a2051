// Removing a test daemon's cgroup parent after its pods are gone: the
// daemon leaves the (empty) parent it created for kubelet-less pods.
import { existsSync, promises as fs } from 'fs';
import * as path from 'path';

const CG = '/sys/fs/cgroup';

/** Per-cgroup pressure stall information: a PSI kernel with a cgroup2 tree (v2, or a v1 host's hybrid one). */
export function hostHasCgroupPsi(): boolean {
  const cg2 = [path.join(CG, 'cgroup.procs'), path.join(CG, 'unified', 'cgroup.procs')].some((f) => existsSync(f));
  return cg2 && existsSync('/proc/pressure/cpu');
}

/** Every hierarchy root: the v1 controller mounts, or the one v2 root. */
export function cgroupHierarchies(): string[] {
  if (existsSync(path.join(CG, 'cgroup.controllers'))) return [CG];
  return ['cpu', 'cpuacct', 'cpuset', 'memory', 'pids', 'devices', 'freezer', 'blkio', 'systemd', 'unified']
    .map((c) => path.join(CG, c))
    .filter((d) => existsSync(path.join(d, 'cgroup.procs')));
}

/**
 * Removes the empty cgroup tree at `rel` in every hierarchy, deepest first
 * (rmdir fails on a cgroup that still has processes: that is a leak the
 * caller's leak check reports), and the shared "/capsa" default root once
 * no other daemon uses it.
 */
export async function rmCgroupTree(rel: string): Promise<void> {
  for (const h of cgroupHierarchies()) {
    const root = path.join(h, rel);
    if (!existsSync(root)) continue;
    const dirs: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      dirs.push(dir);
      for (const e of await fs.readdir(dir, { withFileTypes: true }))
        if (e.isDirectory()) await walk(path.join(dir, e.name));
    };
    await walk(root);
    for (const dir of dirs.sort((a, b) => b.length - a.length)) await fs.rmdir(dir);
    if (rel.startsWith('/capsa/')) await fs.rmdir(path.join(h, 'capsa')).catch(() => undefined);
  }
}
