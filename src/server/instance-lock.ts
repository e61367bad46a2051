// One daemon per root dir: an flock on <root>/capsa.lock. The kernel drops
// it when the holder dies, so kill -9 never leaves a stale lock behind.
import { promises as fs } from 'fs';
import * as path from 'path';
import { FailedPreconditionError } from '../errors';
import { native } from '../native';

export interface InstanceLock {
  release(): Promise<void>;
}

export async function acquireInstanceLock(rootDir: string): Promise<InstanceLock> {
  const file = path.join(rootDir, 'capsa.lock');
  const fh = await fs.open(file, 'a+', 0o600);
  let taken: boolean;
  try {
    taken = native().flock(fh.fd, true, true);
  } catch (err) {
    await fh.close();
    throw err;
  }
  if (!taken) {
    let holder = '';
    try {
      holder = (await fs.readFile(file, 'utf8')).trim();
    } catch {
      holder = '';
    }
    await fh.close();
    throw new FailedPreconditionError(
      `another capsa daemon${holder ? ` (pid ${holder})` : ''} is running with root dir ${rootDir}`,
      { path: file },
    );
  }
  // The pid is informational (for the message above); the flock is the lock.
  await fh.truncate(0);
  await fh.write(`${process.pid}\n`, 0);
  return {
    release: async () => {
      await fh.close();
    },
  };
}
