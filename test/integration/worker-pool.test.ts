// The unpack worker pool: idle workers retire (their V8 heaps are an idle
// daemon's largest memory) and a later job gets a fresh one.
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { UnpackPool } from '../../src/provisioner/layers/worker-pool';
import { writeLayerBlob } from '../helpers/tar-writer';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'capsa-pool-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function waitFor(what: string, probe: () => boolean, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('idle workers retire after the idle time; the next job starts a new one', async () => {
  const pool = new UnpackPool(2, undefined, 200);
  try {
    const layer = writeLayerBlob(path.join(dir, 'l.tar.gz'), [{ name: 'hello', data: 'world\n' }]);
    const unpack = async (n: number): Promise<void> => {
      const fsDir = path.join(dir, `fs${n}`);
      mkdirSync(fsDir);
      const r = await pool.run({ blobPath: layer.blobPath, mediaType: layer.mediaType, fsDir, maxEntries: 100 });
      expect(r.diffId).toBe(layer.diffId);
      expect(readFileSync(path.join(fsDir, 'hello'), 'utf8')).toBe('world\n');
    };
    pool.warm(2);
    expect(pool.workers).toBe(2);
    await unpack(1);
    await waitFor('the idle workers to retire', () => pool.workers === 0);
    await unpack(2);
    expect(pool.workers).toBe(1);
    await waitFor('the idle worker to retire', () => pool.workers === 0);
  } finally {
    await pool.close();
  }
});
