// The writable layers' usage cache (src/cri/services/layer-usage.ts): values served
// from the cache and walked again by background passes while asked for, too
// old ones waited for, passes stopped when idle; one walk per layer at a time,
// a bounded number overall; a walk of a real directory.
import { mkdtempSync, promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { diskUsage, FsUsage } from '../../src/provisioner/provisioner';
import { IDLE_MS, LayerUsage, MAX_AGE_MS, REFRESH_MS } from '../../src/cri/services/layer-usage';

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

test('first call waits for the walk; later calls get the cached value, kept current by passes; too old is waited for', async () => {
  let now = 1_000_000;
  const w = manualWalk();
  const lu = new LayerUsage(w.walk, () => now, false);

  const first = lu.get('a', '/layers/a');
  const second = lu.get('a', '/layers/a');
  await new Promise((r) => setImmediate(r));
  expect(w.calls).toEqual(['/layers/a']); // shared, not walked twice
  await w.finish(100);
  await expect(first).resolves.toEqual({ bytes: 100, inodes: 10 });
  await expect(second).resolves.toEqual({ bytes: 100, inodes: 10 });

  // Served from the cache, however often asked, until a pass walks again.
  now += REFRESH_MS;
  await expect(lu.get('a', '/layers/a')).resolves.toEqual({ bytes: 100, inodes: 10 });
  expect(w.calls).toHaveLength(1);
  const pass = lu.refreshAll();
  await new Promise((r) => setImmediate(r));
  expect(w.calls).toHaveLength(2);
  await expect(lu.get('a', '/layers/a')).resolves.toEqual({ bytes: 100, inodes: 10 }); // during the pass
  await w.finish(200);
  await pass;
  await expect(lu.get('a', '/layers/a')).resolves.toEqual({ bytes: 200, inodes: 20 });

  // No pass for longer than MAX_AGE_MS (calls paused): the next call waits for a walk.
  now += MAX_AGE_MS + 1;
  const waited = lu.get('a', '/layers/a');
  let done = false;
  void waited.then(() => (done = true));
  await new Promise((r) => setImmediate(r));
  expect(done).toBe(false);
  await w.finish(300);
  await expect(waited).resolves.toEqual({ bytes: 300, inodes: 30 });
});

test('passes stop once nobody asked for IDLE_MS; the timer stops when told', async () => {
  let now = 0;
  const w = manualWalk();
  const lu = new LayerUsage(w.walk, () => now, false);
  const p = lu.get('a', '/layers/a');
  await new Promise((r) => setImmediate(r));
  await w.finish(1);
  await p;
  now += IDLE_MS + 1;
  await lu.refreshAll();
  expect(w.calls).toHaveLength(1);

  const timed = new LayerUsage(async () => ({ bytes: 1, inodes: 1 }));
  await timed.get('a', '/layers/a');
  timed.stop();
});

test('a failed walk gives no figure, and the next call walks again', async () => {
  const w = manualWalk();
  const lu = new LayerUsage(w.walk, () => 0, false);
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
  const lu = new LayerUsage(w.walk, () => 0, false);
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
    const lu = new LayerUsage(diskUsage, Date.now, false);
    const u = await lu.get('a', dir);
    expect(u?.inodes).toBe(2);
    expect(u?.bytes).toBeGreaterThanOrEqual(10_000);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});
