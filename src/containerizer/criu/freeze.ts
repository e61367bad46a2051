// Freezing containers' cgroups for a pod-wide checkpoint (CRI
// CheckpointPod): every selected container is frozen before the first is
// dumped and all are thawed on every path out, so the pod is cut at one
// moment and never left frozen. cgroup v1: freezer.state; v2: cgroup.freeze,
// confirmed by "frozen 1" in cgroup.events.
import { promises as fs } from 'fs';
import * as path from 'path';
import { DeadlineExceededError } from '../../errors';
import type { CgroupHandle } from '../isolators/cgroups/backend';
import { sleep } from '../../util/timeout';

export interface FreezeTarget {
  version: 1 | 2;
  /** v1: the cgroup's dir in the freezer hierarchy; v2: its dir. */
  dir: string;
}

/** The freezer of a cgroup; undefined on a v1 host without the freezer controller. */
export function freezerOf(h: CgroupHandle): FreezeTarget | undefined {
  if (h.version === 2) return h.procs[0] ? { version: 2, dir: path.dirname(h.procs[0]) } : undefined;
  return h.dirs.freezer ? { version: 1, dir: h.dirs.freezer } : undefined;
}

async function isFrozen(t: FreezeTarget): Promise<boolean> {
  if (t.version === 1) return (await fs.readFile(path.join(t.dir, 'freezer.state'), 'utf8')).trim() === 'FROZEN';
  return /^frozen 1$/m.test(await fs.readFile(path.join(t.dir, 'cgroup.events'), 'utf8'));
}

/** Freezes `t` and waits until every task in it stopped, at most `timeoutMs`. */
export async function freeze(t: FreezeTarget, timeoutMs: number): Promise<void> {
  if (t.version === 1) await fs.writeFile(path.join(t.dir, 'freezer.state'), 'FROZEN');
  else await fs.writeFile(path.join(t.dir, 'cgroup.freeze'), '1');
  const until = Date.now() + timeoutMs;
  while (!(await isFrozen(t))) {
    // A v1 freezer stuck in FREEZING is retried by writing FROZEN again (the kernel's advice).
    if (Date.now() > until)
      throw new DeadlineExceededError(`cgroup ${t.dir} did not freeze in ${timeoutMs} ms`, { path: t.dir });
    if (t.version === 1) await fs.writeFile(path.join(t.dir, 'freezer.state'), 'FROZEN');
    await sleep(5);
  }
}

export async function thaw(t: FreezeTarget): Promise<void> {
  if (t.version === 1) await fs.writeFile(path.join(t.dir, 'freezer.state'), 'THAWED');
  else await fs.writeFile(path.join(t.dir, 'cgroup.freeze'), '0');
}

/**
 * Runs `fn` with every target frozen (frozen in order, each within
 * `freezeTimeoutMs`); thaws all of them however `fn` or a freeze ends. A
 * thaw that fails is reported through `onThawError` and does not hide
 * `fn`'s own error.
 */
export async function withFrozen<T>(
  targets: FreezeTarget[],
  freezeTimeoutMs: number,
  fn: () => Promise<T>,
  onThawError: (t: FreezeTarget, err: unknown) => void,
): Promise<T> {
  const frozen: FreezeTarget[] = [];
  try {
    for (const t of targets) {
      frozen.push(t);
      await freeze(t, freezeTimeoutMs);
    }
    return await fn();
  } finally {
    for (const t of frozen.reverse()) await thaw(t).catch((err: unknown) => onThawError(t, err));
  }
}
