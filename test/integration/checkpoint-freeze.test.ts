// The pod-wide cut of CheckpointPod (src/containerizer/criu/freeze.ts) on
// real cgroups: processes in two cgroups are frozen together while the work
// runs, and thawed after it, after it fails, and when a later freeze fails.
import { ChildProcess, spawn } from 'child_process';
import { existsSync, mkdtempSync, promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { freeze, thaw, withFrozen, type FreezeTarget } from '../../src/containerizer/criu/freeze';

const V1 = existsSync('/sys/fs/cgroup/freezer/cgroup.procs');
const base = V1 ? '/sys/fs/cgroup/freezer' : '/sys/fs/cgroup';
const dirs = [0, 1].map((i) => path.join(base, `freeze-test-${process.pid}-${i}`));
const targets: FreezeTarget[] = dirs.map((dir) => ({ version: V1 ? 1 : 2, dir }));
let procs: ChildProcess[] = [];
const tmp = mkdtempSync(path.join(os.tmpdir(), 'capsa-freeze-'));
const countFile = (i: number): string => path.join(tmp, `count-${i}`);

/** Whether the cgroup says it is frozen, as the kernel reports it. */
async function frozen(t: FreezeTarget): Promise<boolean> {
  if (t.version === 1) return (await fs.readFile(path.join(t.dir, 'freezer.state'), 'utf8')).trim() === 'FROZEN';
  return /^frozen 1$/m.test(await fs.readFile(path.join(t.dir, 'cgroup.events'), 'utf8'));
}

/** A busy shell loop counting into a file, so a frozen one visibly stops counting. */
function counter(file: string): ChildProcess {
  // each count replaces the file whole (rename): a read never sees the truncated file "echo >" leaves for a moment
  return spawn(
    'sh',
    ['-c', `i=0; while :; do i=$((i+1)); echo $i > ${file}.t; mv -f ${file}.t ${file}; sleep 0.02; done`],
    {
      stdio: 'ignore',
    },
  );
}

beforeAll(async () => {
  for (const [i, dir] of dirs.entries()) {
    await fs.mkdir(dir);
    const p = counter(countFile(i));
    procs.push(p);
    await fs.writeFile(path.join(dir, 'cgroup.procs'), String(p.pid));
  }
});

afterAll(async () => {
  for (const t of targets) await thaw(t).catch(() => undefined);
  for (const p of procs) p.kill('SIGKILL');
  await new Promise((r) => setTimeout(r, 100));
  for (const dir of dirs) {
    await fs.rmdir(dir).catch(() => undefined);
  }
  await fs.rm(tmp, { recursive: true, force: true });
  procs = [];
});

const counted = async (i: number): Promise<number> =>
  Number((await fs.readFile(countFile(i), 'utf8').catch(() => '')) || 0);
const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('both cgroups are frozen while the work runs (nothing counts), and thawed after it', async () => {
  await pause(100);
  const seen = await withFrozen(
    targets,
    5000,
    async () => {
      const a = [await counted(0), await counted(1)];
      await pause(300);
      expect([await counted(0), await counted(1)]).toEqual(a);
      return Promise.all(targets.map(frozen));
    },
    () => undefined,
  );
  expect(seen).toEqual([true, true]);
  expect(await Promise.all(targets.map(frozen))).toEqual([false, false]);
  const b = await counted(0);
  await pause(300);
  expect(await counted(0)).toBeGreaterThan(b);
});

test('a failing work and a failing freeze still thaw everything frozen so far', async () => {
  await expect(
    withFrozen(
      targets,
      5000,
      async () => {
        throw new Error('dump failed');
      },
      () => undefined,
    ),
  ).rejects.toThrow('dump failed');
  expect(await Promise.all(targets.map(frozen))).toEqual([false, false]);

  const missing: FreezeTarget = {
    version: targets[0].version,
    dir: path.join(base, `freeze-test-${process.pid}-gone`),
  };
  let ran = false;
  await expect(
    withFrozen(
      [targets[0], missing, targets[1]],
      5000,
      async () => {
        ran = true;
      },
      () => undefined,
    ),
  ).rejects.toThrow(/ENOENT/);
  expect(ran).toBe(false);
  expect(await Promise.all(targets.map(frozen))).toEqual([false, false]);
  // And a freeze on its own, then a thaw, as CheckpointPod's parts use them.
  await freeze(targets[1], 5000);
  expect(await frozen(targets[1])).toBe(true);
  await thaw(targets[1]);
  expect(await frozen(targets[1])).toBe(false);
});
