// Open file descriptors of a cgroup's processes, counted as cAdvisor counts
// them for container_file_descriptors and container_sockets: every entry of
// /proc/<pid>/fd, and of those the ones whose link reads "socket:[inode]".
// Processes come and go while we walk: one that exited is skipped, and an fd
// closed between readdir and readlink counts as an fd but not as a socket.
import { promises as fs } from 'fs';
import * as path from 'path';
import { InternalError } from '../../../errors';

export interface FdCount {
  fileDescriptors: bigint;
  sockets: bigint;
}

/** readlinks at once: a process may hold a million fds, and each is a trip through the thread pool. */
const BATCH = 256;

function gone(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ESRCH';
}

export async function countFds(pids: readonly number[], procRoot = '/proc'): Promise<FdCount> {
  let fileDescriptors = 0n;
  let sockets = 0n;
  for (const pid of pids) {
    const dir = path.join(procRoot, String(pid), 'fd');
    let names: string[];
    try {
      names = await fs.readdir(dir);
    } catch (err) {
      if (gone(err)) continue;
      throw new InternalError(`list ${dir}: ${(err as Error).message}`, { path: dir });
    }
    fileDescriptors += BigInt(names.length);
    for (let i = 0; i < names.length; i += BATCH) {
      const links = await Promise.all(
        names.slice(i, i + BATCH).map((n) => fs.readlink(path.join(dir, n)).catch(() => '')),
      );
      for (const l of links) if (l.startsWith('socket:')) sockets++;
    }
  }
  return { fileDescriptors, sockets };
}
