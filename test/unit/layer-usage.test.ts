// The writable layers' usage cache (src/server/layer-usage.ts): fresh values
// served as they are, stale ones served while one refresh runs, old ones
// waited for; one walk per layer at a time, a bounded number overall; a walk
// of a real directory.
import { mkdtempSync, promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { diskUsage, FsUsage } from '../../src/provisioner/provisioner';
import { FRESH_MS, LayerUsage, STALE_MS } from '../../src/server/layer-usage';

/** A walk whose calls the test finishes by hand. */
function manualWalk(): {
  walk: (dir: string) => Promise<FsUsage>;
  calls: string[];
  finish: (bytes: number) => Promise<void>;
  fail: () => Promise<void>;
  running: () => number;
} {
  const calls: string[] = [];
  const waiting: { resolve: (u: FsUsage) => void; reject: (e: Error) => void }[] = [];
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  };
  return {
    calls,
    walk: (dir) =>
      new Promise<FsUsage>((resolve, reject) => {
        calls.push(dir);
        waiting.push({ resolve, reject });
      }),
    finish: async (bytes) => {
      waiting.shift()!.resolve({ bytes, inodes: bytes / 10 });
      await settle();
    },
    fail: async () => {
      waiting.shift()!.reject(new Error('ENOENT'));
      await settle();
    },
    running: () => waiting.length,
  };
}

test('first call waits for the walk; fresh values are served; stale ones served while refreshed; old ones waited for', async () => {
  let now = 1_000_000;
  const w = manualWalk();
  const lu = new LayerUsage(w.walk, () => now);

  const first = lu.get('a', '/layers/a');
  const second = lu.get('a', '/layers/a');
  await new Promise((r) => setImmediate(r));
  expect(w.calls).toEqual(['/layers/a']); // shared, not walked twice
  await w.finish(100);
  await expect(first).resolves.toEqual({ bytes: 100, inodes: 10 });
  await expect(second).resolves.toEqual({ bytes: 100, inodes: 10 });

  now += FRESH_MS;
  await expect(lu.get('a', '/layers/a')).resolves.toEqual({ bytes: 100, inodes: 10 });
  expect(w.calls).toHaveLength(1);

  // Stale: the old value now, one refresh behind it.
  now += 1;
  await expect(lu.get('a', '/layers/a')).resolves.toEqual({ bytes: 100, inodes: 10 });
  await expect(lu.get('a', '/layers/a')).resolves.toEqual({ bytes: 100, inodes: 10 });
  expect(w.calls).toHaveLength(2);
  await w.finish(200);
  await expect(lu.get('a', '/layers/a')).resolves.toEqual({ bytes: 200, inodes: 20 });

  // Older than STALE_MS: waited for.
  now += STALE_MS + 1;
  const waited = lu.get('a', '/layers/a');
  let done = false;
  void waited.then(() => (done = true));
  await new Promise((r) => setImmediate(r));
  expect(done).toBe(false);
  await w.finish(300);
  await expect(waited).resolves.toEqual({ bytes: 300, inodes: 30 });
});

test('a failed walk gives no figure, and the next call walks again', async () => {
  const w = manualWalk();
  const lu = new LayerUsage(w.walk, () => 0);
  const p = lu.get('a', '/layers/a');
  await new Promise((r) => setImmediate(r));
  await w.fail();
  await expect(p).resolves.toBeUndefined();
  const q = lu.get('a', '/layers/a');
  await new Promise((r) => setImmediate(r));
  expect(w.calls).toHaveLength(2);
  await w.finish(10);
  await expect(q).resolves.toEqual({ bytes: 10, inodes: 1 });
});

test('at most four walks at once; removed containers are dropped', async () => {
  const w = manualWalk();
  const lu = new LayerUsage(w.walk, () => 0);
  const all = Array.from({ length: 10 }, (_, i) => lu.get(`c${i}`, `/layers/c${i}`));
  await new Promise((r) => setImmediate(r));
  expect(w.running()).toBe(4);
  for (let i = 0; i < 10; i++) {
    expect(w.running()).toBeLessThanOrEqual(4);
    await w.finish(i * 10);
  }
  expect((await Promise.all(all)).map((u) => u?.bytes)).toEqual([0, 10, 20, 30, 40, 50, 60, 70, 80, 90]);
  expect(lu.size).toBe(10);
  lu.retain(new Set(['c1', 'c2']));
  expect(lu.size).toBe(2);
});

test('with the real walk: a layer directory’s bytes and inodes', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'capsa-layer-usage-'));
  try {
    await fs.mkdir(path.join(dir, 'etc'));
    await fs.writeFile(path.join(dir, 'etc', 'hosts'), 'x'.repeat(10_000));
    const lu = new LayerUsage(diskUsage);
    const u = await lu.get('a', dir);
    expect(u?.inodes).toBe(2);
    expect(u?.bytes).toBeGreaterThanOrEqual(10_000);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});
