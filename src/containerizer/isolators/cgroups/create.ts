// Making a cgroupfs cgroup: every missing level in every hierarchy (v1:
// cpuset's cpus and mems copied down; v2: the controllers delegated from the
// root down), or on v1's usual case one mkdir per hierarchy at once.
import { promises as fs } from 'fs';
import * as path from 'path';
import { InternalError } from '../../../errors';
import type { Logger } from '../../../log';
import { CgroupTree, ParentVanished, inheritCpuset, mkdirOne, readText } from './files';
import { cgroupAncestry, cgroupDir } from './paths';
import { CgroupWrite, v2ControllersFor } from './values';

/** Controllers a v2 pod cgroup delegates to its children when the host has them. */
const V2_DELEGATE = ['cpu', 'cpuset', 'memory', 'pids', 'io', 'hugetlb'];

/**
 * Makes `cgPath` in every hierarchy. `delegate`: it will have children (a
 * pod), so on v2 its controllers are enabled for them. A parent removed
 * under us surfaces as ParentVanished (create() starts over).
 */
export async function makeLevels(
  m: CgroupTree,
  cgPath: string,
  writes: CgroupWrite[],
  delegate: boolean,
): Promise<void> {
  if (m.layout.version === 2) {
    const { dir, h } = m.hierarchyDirs(cgPath)[0];
    const wanted = [...new Set([...V2_DELEGATE, ...v2ControllersFor(writes)])].filter((c) => h.controllers.includes(c));
    // Each ancestor (the root included) must delegate the controllers to its children.
    let parentDir = h.mount;
    for (const level of cgroupAncestry(cgPath)) {
      await enableControllers(m.log, parentDir, wanted);
      const levelDir = cgroupDir(h.mount, level);
      await mkdirOne(levelDir);
      parentDir = levelDir;
    }
    if (delegate) await enableControllers(m.log, dir, wanted);
    return;
  }
  if (await makeLeaves(m, cgPath)) return;
  for (const { h } of m.hierarchyDirs(cgPath)) {
    for (const level of cgroupAncestry(cgPath)) {
      const levelDir = cgroupDir(h.mount, level);
      await mkdirOne(levelDir);
      if (h.controllers.includes('cpuset')) await inheritCpuset(levelDir);
    }
  }
}

/**
 * v1's usual case, a container in its pod's cgroup: the parents exist, so
 * one mkdir per hierarchy, all at once, instead of the walk above (every
 * level of every hierarchy in turn, ~40 calls). False, and the walk runs,
 * when a parent is missing or a cpuset parent has no cpus to hand down.
 */
async function makeLeaves(m: CgroupTree, cgPath: string): Promise<boolean> {
  const made = await Promise.all(
    m.hierarchyDirs(cgPath).map(async ({ h, dir }) => {
      try {
        await mkdirOne(dir);
      } catch (err) {
        if (err instanceof ParentVanished) return false;
        throw err;
      }
      if (!h.controllers.includes('cpuset')) return true;
      await inheritCpuset(dir);
      return !!(await readText(path.join(dir, 'cpuset.cpus')))?.trim();
    }),
  );
  return made.every(Boolean);
}

async function enableControllers(log: Logger, dir: string, wanted: string[]): Promise<void> {
  let enabled: string[];
  try {
    enabled = (await fs.readFile(path.join(dir, 'cgroup.subtree_control'), 'utf8')).trim().split(/\s+/);
  } catch (err) {
    throw new InternalError(`read ${dir}/cgroup.subtree_control: ${(err as Error).message}`, { path: dir });
  }
  for (const c of wanted.filter((x) => !enabled.includes(x))) {
    try {
      await fs.writeFile(path.join(dir, 'cgroup.subtree_control'), `+${c}`);
    } catch (err) {
      // e.g. cpuset on a root with real-time tasks: limits on it will fail later, naming the file.
      log.warn({ dir, controller: c, err: (err as Error).message }, 'cannot enable cgroup controller');
    }
  }
}
