// Destroying a cgroup: every process of its subtree killed (frozen first
// where a v1 freezer exists, cgroup.kill on v2), then its directories
// removed leaf-first in every hierarchy, under one deadline. The cgroupfs
// manager and the systemd one (for what systemd leaves behind) both use it.
import { promises as fs } from 'fs';
import * as path from 'path';
import { DeadlineExceededError } from '../../../errors';
import { sleep } from '../../../util/timeout';
import { CgroupTree, asInternal, errno, isGone, killPid, setFreezer, subtree, writeIfExists } from './files';

/** SIGKILL to every process of the subtree until none is left; DeadlineExceeded naming them otherwise. */
export async function killAll(m: CgroupTree, cgPath: string, deadline: number, signal?: AbortSignal): Promise<void> {
  const freezer = m.layout.version === 1 ? m.dirOf(cgPath, 'freezer') : undefined;
  const v2dir = m.layout.version === 2 ? m.hierarchyDirs(cgPath)[0].dir : undefined;
  let pids = await m.pids(cgPath);
  if (pids.length === 0) return;
  if (v2dir && (await writeIfExists(path.join(v2dir, 'cgroup.kill'), '1'))) pids = await m.pids(cgPath);
  for (let round = 0; pids.length > 0; round++) {
    signal?.throwIfAborted();
    if (Date.now() > deadline) {
      throw new DeadlineExceededError(`processes ${pids.join(', ')} in cgroup ${cgPath} would not die`, {
        stage: 'cgroup destroy',
        path: cgPath,
      });
    }
    // Frozen tasks cannot fork while we collect them; the SIGKILL lands on thaw.
    const frozen = freezer ? await setFreezer(freezer, 'FROZEN', deadline) : false;
    if (frozen) pids = await m.pids(cgPath);
    for (const pid of pids) killPid(pid);
    if (frozen) await setFreezer(freezer!, 'THAWED', deadline);
    await sleep(Math.min(10 * (round + 1), 100));
    pids = await m.pids(cgPath);
  }
}

/** rmdir leaf-first in every hierarchy, waiting out EBUSY until the deadline. */
export async function removeTree(m: CgroupTree, cgPath: string, deadline: number, signal?: AbortSignal): Promise<void> {
  for (const { dir } of m.hierarchyDirs(cgPath)) {
    const dirs = (await subtree(dir)).sort((a, b) => b.length - a.length);
    for (const d of dirs) {
      for (;;) {
        try {
          await fs.rmdir(d);
          break;
        } catch (err) {
          if (isGone(err)) break;
          if (errno(err) !== 'EBUSY' && errno(err) !== 'ENOTEMPTY') throw asInternal(err, d);
          signal?.throwIfAborted();
          if (Date.now() > deadline) {
            throw new DeadlineExceededError(`cgroup ${d} stayed busy`, { stage: 'cgroup destroy', path: d });
          }
          await sleep(20);
        }
      }
    }
  }
}
