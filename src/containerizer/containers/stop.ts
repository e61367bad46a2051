// StopContainer: the stop signal, then SIGKILL to every process of the
// cgroup after the grace period; a cleanup that failed earlier is retried.
import { DeadlineExceededError, ErrorContext } from '../../errors';
import { SIGKILL } from '../launcher/signals';
import { Container } from './container';
import { ContainerHost, settledWithin } from './host';
import { observe } from './observe';

export async function stopContainer(
  cs: ContainerHost,
  c: Container,
  timeoutSec: number,
  _signal: AbortSignal,
): Promise<void> {
  const r = c.record;
  const ctx: ErrorContext = { containerId: c.id, stage: 'stop' };
  if (c.isFinished()) {
    if (c.cleanupPending) await retryCleanup(cs, c);
    return;
  }
  if (c.state !== 'RUNNING') return;
  // A created init never ran anything: no grace period.
  const graceful = timeoutSec > 0 && c.criState() === 'CONTAINER_RUNNING';
  if (graceful) {
    cs.log.info({ containerId: c.id, signal: r.stopSignal, timeoutSec }, 'stopping container');
    await cs.launcher.signal(r.runDir, r.stopSignal);
    if (await settledWithin(c.exited, Math.min(timeoutSec, 3600) * 1000)) return;
    await observe(cs, c);
    if (c.isFinished()) return;
  }
  await killHard(cs, c);
  if (await settledWithin(c.exited, cs.timeouts.destroying)) return;
  await observe(cs, c);
  if (!c.isFinished()) {
    throw new DeadlineExceededError(
      `container ${c.id} did not exit within ${cs.timeouts.destroying} ms of SIGKILL`,
      ctx,
    );
  }
}

/** SIGKILL to the init and to every process in the container's cgroup. */
export async function killHard(cs: ContainerHost, c: Container): Promise<void> {
  const r = c.record;
  await cs.launcher.signal(r.runDir, SIGKILL).catch(() => false);
  for (const pid of await cs.cgroups.pids(r.cgroupPath)) {
    if (pid <= 1 || pid === process.pid) continue;
    try {
      process.kill(pid, 'SIGKILL');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }
  // The watch notices exit.json; observe now in case the monitor is already gone.
  setTimeout(() => {
    observe(cs, c).catch(() => undefined);
  }, 50).unref();
}

export async function retryCleanup(cs: ContainerHost, c: Container): Promise<void> {
  await c.exclusive(async () => {
    if (!c.cleanupPending) return;
    await cs.cgroups.destroy(c.record.cgroupPath, cs.timeouts.destroying);
    c.cleanupPending = false;
  });
}
