// Preparing the CRI socket path: the parent dir exists with mode 0711, and
// a socket file left by a dead daemon is removed, but only after checking
// that nothing answers on it (a live daemon's socket is never stolen).
import { promises as fs } from 'fs';
import * as net from 'net';
import * as path from 'path';
import { FailedPreconditionError } from '../errors';

/** True when a process accepts connections on the unix socket at `file`. */
export function socketAnswers(file: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const conn = net.createConnection({ path: file });
    const finish = (answered: boolean): void => {
      clearTimeout(timer);
      conn.destroy();
      resolve(answered);
    };
    // A socket that accepts but is too slow still belongs to someone alive.
    const timer = setTimeout(() => finish(true), timeoutMs);
    conn.once('connect', () => finish(true));
    conn.once('error', () => finish(false));
  });
}

export async function prepareSocketPath(file: string): Promise<void> {
  const dir = path.dirname(file);
  await fs.mkdir(dir, { recursive: true, mode: 0o711 });
  await fs.chmod(dir, 0o711);
  let st;
  try {
    st = await fs.lstat(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) {
    throw new FailedPreconditionError(`${file} exists and is not a socket; refusing to replace it`, { path: file });
  }
  if (await socketAnswers(file)) {
    throw new FailedPreconditionError(`another process is serving on ${file}`, { path: file });
  }
  await fs.unlink(file);
}

/** After bind: only root (and its group) may talk to the runtime. */
export async function secureSocket(file: string): Promise<void> {
  await fs.chown(file, 0, 0);
  await fs.chmod(file, 0o660);
}
