// Checkpoints: atomic versioned records per object, per-isolator state with
// its own version, bigint timestamps, refusal of newer formats.
import { mkdtempSync, promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CheckpointStore, decodeBigint, encodeJson } from '../../src/containerizer/checkpoint';
import { FailedPreconditionError, InternalError } from '../../src/errors';

const ID = '1'.repeat(64);

describe('CheckpointStore', () => {
  let root: string;
  let store: CheckpointStore;
  beforeEach(() => {
    root = mkdtempSync(path.join(os.tmpdir(), 'ckpt-'));
    store = new CheckpointStore(root);
  });
  afterEach(async () => {
    await fs.rm(root, { recursive: true, force: true });
  });

  test('write, read, list and remove a sandbox record', async () => {
    expect(await store.list('sandbox')).toEqual([]);
    expect(await store.read('sandbox', ID, 1)).toBeUndefined();
    await store.create('sandbox', ID);
    await store.write('sandbox', ID, 1, { id: ID, createdAt: 1732180000123456789n });
    const raw = await store.read<{ id: string; createdAt: string }>('sandbox', ID, 1);
    expect(raw).toEqual({ version: 1, data: { id: ID, createdAt: '1732180000123456789' } });
    expect(decodeBigint(raw!.data.createdAt)).toBe(1732180000123456789n);
    expect(await store.list('sandbox')).toEqual([ID]);
    expect(await store.list('container')).toEqual([]);
    // no temp files left by the atomic writes
    expect((await fs.readdir(store.dir('sandbox', ID))).sort()).toEqual(['checkpoint.json', 'isolators']);
    await store.remove('sandbox', ID);
    expect(await store.list('sandbox')).toEqual([]);
  });

  test('each isolator has its own file and version', async () => {
    await store.create('container', ID);
    await store.writeIsolator('container', ID, 'cgroups', 1, { path: '/a' });
    await store.writeIsolator('container', ID, 'namespaces', 3, { net: '/run/x' });
    const all = await store.readIsolators('container', ID);
    expect(Object.fromEntries(all)).toEqual({
      cgroups: { isolator: 'cgroups', version: 1, state: { path: '/a' } },
      namespaces: { isolator: 'namespaces', version: 3, state: { net: '/run/x' } },
    });
    await store.removeIsolator('container', ID, 'cgroups');
    expect([...(await store.readIsolators('container', ID)).keys()]).toEqual(['namespaces']);
  });

  test('a newer or missing version is refused, not misread', async () => {
    await store.create('sandbox', ID);
    await store.write('sandbox', ID, 2, {});
    await expect(store.read('sandbox', ID, 1)).rejects.toBeInstanceOf(FailedPreconditionError);
    await fs.writeFile(path.join(store.dir('sandbox', ID), 'checkpoint.json'), '{"data":{}}');
    await expect(store.read('sandbox', ID, 1)).rejects.toThrow(/no valid version/);
  });

  test('ids and isolator names are checked before they become paths', () => {
    expect(() => store.dir('sandbox', '../../etc')).toThrow(InternalError);
    expect(() => store.dir('sandbox', ID.slice(1))).toThrow(InternalError);
    return expect(store.writeIsolator('sandbox', ID, '../x', 1, {})).rejects.toBeInstanceOf(InternalError);
  });

  test('encodeJson writes bigints as decimal strings', () => {
    expect(JSON.parse(encodeJson({ a: 2n ** 64n, b: [1n] }))).toEqual({ a: '18446744073709551616', b: ['1'] });
    expect(decodeBigint(undefined)).toBeUndefined();
    expect(decodeBigint(5)).toBe(5n);
    expect(() => decodeBigint('1.5')).toThrow(InternalError);
  });
});
