// The file operations every cgroupfs job (create.ts, destroy.ts, the
// manager's reads and writes) shares: errors that mean "already gone", one
// mkdir, a subtree walk, small reads and writes that tolerate a vanished
// cgroup.
import { promises as fs } from 'fs';
import * as path from 'path';
import { CapsaError, InternalError } from '../../../errors';
import type { Logger } from '../../../log';
import { sleep } from '../../../util/timeout';
import type { CgroupLayout, Hierarchy } from './hierarchy';

export function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

export function isGone(err: unknown): boolean {
  return errno(err) === 'ENOENT' || errno(err) === 'ENODEV';
}

export function asInternal(err: unknown, p: string): CapsaError {
  return new InternalError(`${(err as Error).message}`, { path: p });
}

/** Thrown when a parent directory disappeared under a mkdir. */
export class ParentVanished extends Error {}

export async function mkdirOne(dir: string): Promise<void> {
  try {
    await fs.mkdir(dir, { mode: 0o755 });
  } catch (err) {
    if (errno(err) === 'EEXIST') return;
    const e = new InternalError(`mkdir ${dir}: ${(err as Error).message}`, { path: dir, stage: 'cgroup create' });
    if (errno(err) === 'ENOENT') throw new ParentVanished(e.message, { cause: e });
    throw e;
  }
}

/** v1 cpuset children start with empty cpus/mems (unless clone_children): copy the parent's. */
export async function inheritCpuset(dir: string): Promise<void> {
  for (const f of ['cpuset.cpus', 'cpuset.mems']) {
    const mine = (await readText(path.join(dir, f)))?.trim();
    if (mine) continue;
    const parent = (await readText(path.join(path.dirname(dir), f)))?.trim();
    if (!parent) continue;
    try {
      await fs.writeFile(path.join(dir, f), parent);
    } catch (err) {
      throw new InternalError(`write ${parent} to ${path.join(dir, f)}: ${(err as Error).message}`, { path: dir });
    }
  }
}

/** Every directory of the subtree rooted at `dir` (itself first); [] when absent. */
export async function subtree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    let entries;
    try {
      entries = await fs.readdir(d, { withFileTypes: true });
    } catch (err) {
      if (isGone(err)) return;
      throw err;
    }
    out.push(d);
    for (const e of entries) if (e.isDirectory()) await walk(path.join(d, e.name));
  };
  await walk(dir);
  return out;
}

export function killPid(pid: number): void {
  // Never ourselves or init, whatever a cgroup claims.
  if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch (err) {
    if (errno(err) !== 'ESRCH') throw err;
  }
}

export async function setFreezer(dir: string, state: 'FROZEN' | 'THAWED', deadline: number): Promise<boolean> {
  if (!(await writeIfExists(path.join(dir, 'freezer.state'), state))) return false;
  if (state === 'THAWED') return true;
  // FREEZING until every task stopped; give up quietly after a while (kill anyway).
  const until = Math.min(deadline, Date.now() + 1000);
  while (Date.now() < until) {
    if ((await readText(path.join(dir, 'freezer.state')))?.trim() === 'FROZEN') return true;
    await sleep(5);
  }
  return true;
}

export async function writeIfExists(file: string, value: string): Promise<boolean> {
  try {
    await fs.writeFile(file, value);
    return true;
  } catch (err) {
    if (isGone(err)) return false;
    throw err;
  }
}

export async function readText(file: string): Promise<string | undefined> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    if (isGone(err)) return undefined;
    throw err;
  }
}

export async function readBig(file: string): Promise<bigint | undefined> {
  const t = (await readText(file))?.trim();
  return t && /^\d+$/.test(t) ? BigInt(t) : undefined;
}

export async function readNumber(file: string): Promise<number | undefined> {
  const b = await readBig(file);
  return b === undefined ? undefined : Number(b);
}

/** What the cgroupfs jobs (create.ts, destroy.ts) need of the manager. */
export interface CgroupTree {
  readonly layout: CgroupLayout;
  readonly log: Logger;
  /** One directory per hierarchy for the cgroup (manager.ts says which). */
  hierarchyDirs(cgPath: string): { h: Hierarchy; dir: string }[];
  /** The cgroup's directory in the hierarchy of `controller`; undefined when the host lacks it. */
  dirOf(cgPath: string, controller: string): string | undefined;
  /** Pids in the cgroup and its descendants, across hierarchies. */
  pids(cgPath: string): Promise<number[]>;
}
