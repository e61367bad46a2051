// How ends are seen: one watch per run dir, a slow poll behind it, and
// recordEnd, which records an end (disk first) and removes the cgroup.
import { existsSync } from 'fs';
import * as path from 'path';
import { asCapsaError } from '../../errors';
import { isAlive } from '../../util/procfs';
import type { LaunchStatus } from '../launcher/launcher';
import { nowNs, transition } from '../state';
import {
  Container,
  START_ERROR_EXIT_CODE,
  START_ERROR_REASON,
  UNKNOWN_EXIT_CODE,
  UNKNOWN_EXIT_REASON,
} from './container';
import { ContainerHost } from './host';

export function watch(cs: ContainerHost, c: Container): void {
  if (cs.closed || c.isFinished()) return;
  c.unwatch?.();
  c.unwatch = cs.launcher.watch(c.record.runDir, () => {
    observe(cs, c).catch((err: unknown) =>
      cs.log.warn({ containerId: c.id, err: asCapsaError(err).message }, 'exit check failed'),
    );
  });
}

/** Containers looked at per event-loop turn: kubelet's calls run between batches. */
const POLL_BATCH = 32;
const polling = new WeakSet<ContainerHost>();

/**
 * The backup of the watches: a cheap look at every live container, in
 * batches with an event-loop turn between them (at 1000 containers one
 * sweep blocked the loop for ~50 ms, the tail of every call kubelet made
 * meanwhile). A sweep still running when the next is due is not doubled.
 */
export async function poll(cs: ContainerHost): Promise<void> {
  if (polling.has(cs)) return;
  polling.add(cs);
  try {
    const live = cs.registry.all().filter((c) => c.state === 'RUNNING' && !c.isFinished());
    for (let i = 0; i < live.length && !cs.closed; i += POLL_BATCH) {
      if (i > 0) await new Promise<void>((resolve) => setImmediate(resolve));
      for (const c of live.slice(i, i + POLL_BATCH)) checkOne(cs, c);
    }
  } finally {
    polling.delete(cs);
  }
}

function checkOne(cs: ContainerHost, c: Container): void {
  if (c.state !== 'RUNNING' || c.isFinished()) return;
  const dir = c.record.runDir;
  const suspicious =
    existsSync(path.join(dir, 'exit.json')) || existsSync(path.join(dir, 'start-error')) || !existsSync(dir);
  const check = suspicious ? Promise.resolve(true) : isAlive(c.record.monitor).then((alive) => !alive);
  check
    .then((go) => (go ? observe(cs, c) : undefined))
    .catch((err: unknown) => cs.log.warn({ containerId: c.id, err: asCapsaError(err).message }, 'exit check failed'));
}

/** Looks at the run dir and records an end if there is one. */
export function observe(cs: ContainerHost, c: Container): Promise<void> {
  return c.observeOnce(() =>
    c.exclusive(async () => {
      if (c.state !== 'RUNNING' || c.isFinished()) return;
      const st = await cs.launcher.status(c.record.runDir);
      await recordEnd(cs, c, st);
    }),
  );
}

/**
 * Records the end `st` describes (no-op for a live container), then kills
 * and removes the cgroup: nothing of the container runs after cs.
 */
export async function recordEnd(cs: ContainerHost, c: Container, st: LaunchStatus): Promise<void> {
  const r = c.record;
  if (st.state === 'created' || st.state === 'running') return;
  if (st.state === 'exited') {
    const e = st.exit;
    r.finishedAt = e.finishedAt;
    r.exitCode = e.exitCode;
    r.oomKilled = e.oomKilled;
    if (r.startedAt === undefined && e.startedAt !== undefined) r.startedAt = e.startedAt;
    r.reason = e.oomKilled ? 'OOMKilled' : e.exitCode === 0 ? 'Completed' : 'Error';
    r.message = e.signal ? `killed by signal ${e.signal}` : undefined;
  } else if (st.state === 'start-failed') {
    r.finishedAt = st.at;
    r.exitCode = START_ERROR_EXIT_CODE;
    r.reason = START_ERROR_REASON;
    r.message = st.reason;
  } else {
    r.finishedAt = nowNs();
    r.exitCode = UNKNOWN_EXIT_CODE;
    r.reason = UNKNOWN_EXIT_REASON;
    r.message = `the container's end was not recorded: ${st.reason}`;
  }
  // Disk before memory: from here on the container is EXITED, even after a crash.
  await cs.persist(c);
  c.unwatch?.();
  c.unwatch = undefined;
  transition(c, 'DESTROYING', cs.log, `exited (${r.reason})`);
  try {
    await cs.cgroups.destroy(r.cgroupPath, cs.timeouts.destroying, AbortSignal.timeout(cs.timeouts.destroying));
    c.cleanupPending = false;
  } catch (err) {
    c.cleanupPending = true;
    cs.log.warn(
      { containerId: c.id, err: asCapsaError(err).message },
      'cannot remove the cgroup of an exited container',
    );
  }
  transition(c, 'STOPPED', cs.log, r.reason);
  c.exitSeen();
  cs.publish('stopped', c, r.finishedAt);
  cs.log.info({ containerId: c.id, exitCode: r.exitCode, reason: r.reason, message: r.message }, 'container exited');
}
