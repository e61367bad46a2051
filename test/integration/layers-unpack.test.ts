// Layer unpacking against real files (runs as root: owners, devices,
// trusted.* xattrs). Builds its layers in-test with test/helpers/tar-writer
// and Debian's tar.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { CapsaError } from '../../src/errors';
import { native } from '../../src/native';
import { chainId } from '../../src/provisioner/layers/chain';
import { cleanupLayerStore, LayerStore } from '../../src/provisioner/layers/unpack';
import { HOSTILE_LAYERS, UNIQUE } from '../helpers/hostile-layers';
import {
  buildTar,
  compress,
  MEDIA_TYPES,
  sha256,
  TarSpec,
  TestCompression,
  writeLayerBlob,
} from '../helpers/tar-writer';

jest.setTimeout(120_000);

let base: string;
const stores: LayerStore[] = [];

function newStore(name: string, opts: { maxEntries?: number } = {}): LayerStore {
  const s = new LayerStore({ root: path.join(base, name), sync: false, ...opts });
  stores.push(s);
  return s;
}

beforeAll(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-layers-'));
});

afterAll(async () => {
  await Promise.all(stores.map((s) => s.close()));
  fs.rmSync(base, { recursive: true, force: true });
});

function xattr(p: string, name: string): string | undefined {
  return native().lgetxattr(p, name)?.toString('latin1');
}

function tmpDirs(store: LayerStore): string[] {
  return fs.existsSync(store.dir) ? fs.readdirSync(store.dir).filter((n) => n.startsWith('.tmp-')) : [];
}

const T1 = 1_500_000_000;
const T2 = 1_400_000_000;
const T3 = 1_300_000_000;
// vfs_cap_data v2: effective, permitted = cap_net_raw (bit 13).
const CAP_NET_RAW = Buffer.from([1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

const ALL_TYPES: TarSpec[] = [
  { name: 'd', type: 'dir', mode: 0o2755, uid: 1000, gid: 1000, mtime: T1 },
  {
    name: 'd/file',
    data: 'hello',
    mode: 0o4755,
    uid: 1001,
    gid: 1002,
    mtime: T2,
    xattrs: {
      'user.test': 'value',
      'security.capability': CAP_NET_RAW,
      'security.selinux': 'system_u:object_r:bin_t:s0',
      'trusted.foo': 'bar',
    },
  },
  { name: 'd/hard', type: 'hardlink', linkname: 'd/file' },
  { name: 'd/sym', type: 'symlink', linkname: 'file', uid: 1003, gid: 1003, mtime: T3 },
  { name: 'd/abs', type: 'symlink', linkname: '/etc/passwd' },
  { name: 'd/null', type: 'char', devmajor: 1, devminor: 3, mode: 0o666, mtime: T2 },
  { name: 'd/loop', type: 'block', devmajor: 7, devminor: 0, mode: 0o660, gid: 6 },
  { name: 'd/fifo', type: 'fifo', mode: 0o600 },
  { name: 'tmp', type: 'dir', mode: 0o1777 },
  { name: 'big', data: Buffer.alloc(3 * 1024 * 1024 + 123, 7) },
  { name: 'sub/deep/file', data: 'implicit parents' },
  { name: 'old', type: 'dir' },
  { name: 'old/.wh..wh..opq', data: '' },
  { name: 'old/kept', data: 'new' },
  { name: '.wh.gone', data: '' },
  { name: 'd/.wh.removed', data: '' },
  { name: '.wh.reborn', data: '' },
  { name: 'reborn', type: 'dir' },
  { name: 'reborn/x', data: 'x' },
  { name: 'plnk/.wh..wh.plnk', data: '' },
  { name: `${'long/'.repeat(30)}name`, data: 'long path' },
];

function checkAllTypes(fsRoot: string): void {
  const p = (r: string): string => path.join(fsRoot, r);
  const d = fs.lstatSync(p('d'));
  expect(d.isDirectory()).toBe(true);
  expect(d.mode & 0o7777).toBe(0o2755);
  expect([d.uid, d.gid]).toEqual([1000, 1000]);
  expect(Math.floor(d.mtimeMs / 1000)).toBe(T1); // set after its contents were created

  const f = fs.lstatSync(p('d/file'));
  expect(f.isFile()).toBe(true);
  expect(f.mode & 0o7777).toBe(0o4755); // setuid survives the chown
  expect([f.uid, f.gid]).toEqual([1001, 1002]);
  expect(Math.floor(f.mtimeMs / 1000)).toBe(T2);
  expect(fs.readFileSync(p('d/file'), 'utf8')).toBe('hello');
  expect(xattr(p('d/file'), 'user.test')).toBe('value');
  expect(native().lgetxattr(p('d/file'), 'security.capability')).toEqual(CAP_NET_RAW);
  expect(xattr(p('d/file'), 'security.selinux')).toBeUndefined();
  expect(xattr(p('d/file'), 'trusted.foo')).toBeUndefined();

  expect(fs.lstatSync(p('d/hard')).ino).toBe(f.ino);
  expect(f.nlink).toBe(2);

  const s = fs.lstatSync(p('d/sym'));
  expect(s.isSymbolicLink()).toBe(true);
  expect(fs.readlinkSync(p('d/sym'))).toBe('file');
  expect([s.uid, s.gid]).toEqual([1003, 1003]);
  expect(Math.floor(s.mtimeMs / 1000)).toBe(T3);
  expect(fs.readlinkSync(p('d/abs'))).toBe('/etc/passwd');

  const n = fs.lstatSync(p('d/null'));
  expect(n.isCharacterDevice()).toBe(true);
  expect(n.rdev).toBe(0x103);
  expect(n.mode & 0o7777).toBe(0o666);
  const l = fs.lstatSync(p('d/loop'));
  expect(l.isBlockDevice()).toBe(true);
  expect(l.rdev).toBe(0x700);
  expect(l.gid).toBe(6);
  expect(fs.lstatSync(p('d/fifo')).isFIFO()).toBe(true);
  expect(fs.lstatSync(p('tmp')).mode & 0o7777).toBe(0o1777);

  expect(fs.statSync(p('big')).size).toBe(3 * 1024 * 1024 + 123);
  expect(fs.readFileSync(p('sub/deep/file'), 'utf8')).toBe('implicit parents');
  expect(fs.readFileSync(p(`${'long/'.repeat(30)}name`), 'utf8')).toBe('long path');

  // Whiteouts are stored in overlay form, not applied.
  expect(xattr(p('old'), 'trusted.overlay.opaque')).toBe('y');
  expect(fs.readFileSync(p('old/kept'), 'utf8')).toBe('new');
  expect(fs.existsSync(p('old/.wh..wh..opq'))).toBe(false);
  for (const w of ['gone', 'd/removed']) {
    const st = fs.lstatSync(p(w));
    expect(st.isCharacterDevice()).toBe(true);
    expect(st.rdev).toBe(0);
  }
  expect(fs.existsSync(p('.wh.gone'))).toBe(false);
  // ".wh.reborn" then "reborn/": a new directory that must not merge with the lower one.
  expect(fs.lstatSync(p('reborn')).isDirectory()).toBe(true);
  expect(xattr(p('reborn'), 'trusted.overlay.opaque')).toBe('y');
  expect(fs.existsSync(p('plnk/.wh..wh.plnk'))).toBe(false);
}

describe('unpackLayer', () => {
  it.each<TestCompression>(['gzip', 'zstd', 'none'])('keeps every entry type (%s)', async (how) => {
    const store = newStore(`types-${how}`);
    const blob = writeLayerBlob(path.join(base, `types.${how}`), ALL_TYPES, how);
    const r = await store.unpackLayer({ ...blob, diffIdExpected: blob.diffId });
    expect(r.diffId).toBe(blob.diffId);
    expect(r.chainId).toBe(blob.diffId);
    expect(r.cached).toBe(false);
    expect(r.size).toBe(5 + 3 * 1024 * 1024 + 123 + 16 + 3 + 1 + 9);
    expect(r.path).toBe(path.join(store.dir, blob.diffId.slice(7), 'fs'));
    checkAllTypes(r.path);
    expect(tmpDirs(store)).toEqual([]);
    expect(fs.statSync(store.dir).mode & 0o777).toBe(0o700);
    expect(await store.list()).toEqual([r.chainId]);
    expect(await store.get(r.chainId)).toMatchObject({ diffId: r.diffId, size: r.size, cached: true });
  });

  it('detects compression from magic bytes, whatever the media type says', async () => {
    const store = newStore('magic');
    const tar = buildTar([{ name: 'a', data: 'A' }]);
    for (const [how, mt] of [
      ['none', MEDIA_TYPES.gzip],
      ['gzip', MEDIA_TYPES.none],
      ['zstd', 'application/vnd.docker.image.rootfs.diff.tar.gzip'],
    ] as const) {
      const file = path.join(base, `magic.${how}`);
      fs.writeFileSync(file, compress(tar, how));
      const r = await store.unpackLayer({ blobPath: file, mediaType: mt });
      expect(r.diffId).toBe(sha256(tar));
    }
  });

  it('verifies the diffID and leaves nothing behind on mismatch', async () => {
    const store = newStore('mismatch');
    const blob = writeLayerBlob(path.join(base, 'mismatch.gz'), [{ name: 'a', data: 'A' }]);
    const wrong = sha256(Buffer.from('something else'));
    const err = await store.unpackLayer({ ...blob, diffIdExpected: wrong }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CapsaError);
    expect((err as CapsaError).kind).toBe('InvalidArgument');
    expect((err as CapsaError).message).toMatch(/diffID/);
    expect((err as CapsaError).context.stage).toBe('unpack');
    expect(tmpDirs(store)).toEqual([]);
    expect(await store.list()).toEqual([]);
  });

  it('computes chain IDs from the parent chain', async () => {
    const store = newStore('chain');
    const l1 = writeLayerBlob(path.join(base, 'c1.gz'), [{ name: 'a', data: '1' }]);
    const l2 = writeLayerBlob(path.join(base, 'c2.gz'), [{ name: 'b', data: '2' }]);
    const r1 = await store.unpackLayer(l1);
    const r2 = await store.unpackLayer({ ...l2, parentChainId: r1.chainId, diffIdExpected: l2.diffId });
    expect(r2.chainId).toBe(chainId(l1.diffId, l2.diffId));
    expect(r2.chainId).not.toBe(r2.diffId);
    expect((await store.list()).sort()).toEqual([r1.chainId, r2.chainId].sort());
    // The same diff on another parent is another layer.
    const r3 = await store.unpackLayer({ ...l2 });
    expect(r3.chainId).toBe(l2.diffId);
    expect((await store.list()).length).toBe(3);
  });

  it('shares one unpack between concurrent requests and reuses stored layers', async () => {
    const store = newStore('shared');
    const blob = writeLayerBlob(path.join(base, 'shared.gz'), [{ name: 'f', data: 'x'.repeat(100000) }]);
    const reqs = Array.from({ length: 5 }, () => store.unpackLayer({ ...blob, diffIdExpected: blob.diffId }));
    const noDiff = Array.from({ length: 3 }, () => store.unpackLayer({ ...blob }));
    const results = await Promise.all([...reqs, ...noDiff]);
    for (const r of results) expect(r.chainId).toBe(blob.diffId);
    expect(results.slice(0, 5).every((r) => r === results[0])).toBe(true); // one shared promise
    expect(await store.list()).toEqual([blob.diffId]);
    expect(tmpDirs(store)).toEqual([]);
    // Stored: found by chain ID without reading the blob.
    fs.unlinkSync(blob.blobPath);
    const again = await store.unpackLayer({ ...blob, diffIdExpected: blob.diffId });
    expect(again.cached).toBe(true);
    expect(again.size).toBe(100000);
  });

  it('honours the caller signal without cancelling the shared unpack', async () => {
    const store = newStore('signal');
    const blob = writeLayerBlob(path.join(base, 'signal.gz'), [{ name: 'f', data: 'x' }]);
    const ac = new AbortController();
    ac.abort(new Error('caller gave up'));
    await expect(store.unpackLayer({ ...blob, signal: ac.signal })).rejects.toThrow(/caller gave up/);
    const r = await store.unpackLayer({ ...blob });
    expect(r.diffId).toBe(blob.diffId);
  });

  it('removes leftover temp dirs at startup and deletes layers crash-safely', async () => {
    const root = path.join(base, 'cleanup');
    const store = newStore('cleanup');
    const blob = writeLayerBlob(path.join(base, 'cleanup.gz'), [{ name: 'f', data: 'x' }]);
    const r = await store.unpackLayer(blob);
    fs.mkdirSync(path.join(store.dir, '.tmp-0123/fs/deep'), { recursive: true });
    fs.writeFileSync(path.join(store.dir, '.tmp-0123/fs/deep/file'), 'partial');
    fs.mkdirSync(path.join(store.dir, '.tmp-del-4567'));
    expect(await cleanupLayerStore(root)).toBe(2);
    expect(tmpDirs(store)).toEqual([]);
    expect(await store.has(r.chainId)).toBe(true);

    expect(await store.deleteLayer(r.chainId)).toBe(true);
    expect(await store.has(r.chainId)).toBe(false);
    expect(fs.readdirSync(store.dir)).toEqual([]);
    expect(await store.deleteLayer(r.chainId)).toBe(false);
    await expect(store.deleteLayer('sha256:../../x')).rejects.toThrow(/sha256/);
  });

  it('fails cleanly on corrupt streams and too many entries', async () => {
    const store = newStore('corrupt');
    const tar = buildTar([{ name: 'f', data: 'x'.repeat(50000) }]);
    const gz = compress(tar, 'gzip');
    const zst = compress(tar, 'zstd');
    const cases: [string, Buffer][] = [
      ['bad.gz', Buffer.concat([gz.subarray(0, 20), Buffer.alloc(100, 0xff)])],
      ['trunc.gz', gz.subarray(0, gz.length - 30)],
      ['trunc.zst', zst.subarray(0, zst.length - 30)],
      ['trunc.tar', tar.subarray(0, 700)],
    ];
    for (const [name, data] of cases) {
      const file = path.join(base, name);
      fs.writeFileSync(file, data);
      const err = await store.unpackLayer({ blobPath: file, mediaType: MEDIA_TYPES.gzip }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CapsaError);
      expect((err as CapsaError).context.stage).toBe('unpack');
      expect(tmpDirs(store)).toEqual([]);
    }
    await expect(
      store.unpackLayer({ blobPath: path.join(base, 'no-such-blob'), mediaType: MEDIA_TYPES.gzip }),
    ).rejects.toMatchObject({ kind: 'NotFound' });
    expect(tmpDirs(store)).toEqual([]);
    const small = newStore('max-entries', { maxEntries: 5 });
    const many = writeLayerBlob(
      path.join(base, 'many.gz'),
      Array.from({ length: 10 }, (_, i) => ({ name: `f${i}`, data: '' })),
    );
    await expect(small.unpackLayer(many)).rejects.toThrow(/more than 5 entries/);
    expect(tmpDirs(small)).toEqual([]);
    expect(await store.list()).toEqual([]);
  });

  it("reads Debian tar's GNU format with --xattrs", async () => {
    const src = path.join(base, 'gnutar-src');
    fs.mkdirSync(path.join(src, 'dir'), { recursive: true });
    const long = `${'x'.repeat(150)}.txt`;
    fs.writeFileSync(path.join(src, 'dir', long), 'long');
    fs.writeFileSync(path.join(src, 'dir/f'), 'f');
    fs.linkSync(path.join(src, 'dir/f'), path.join(src, 'dir/h'));
    fs.symlinkSync('f', path.join(src, 'dir/s'));
    native().mknod(path.join(src, 'dir/p'), 0o010644, 0, 0);
    native().lsetxattr(path.join(src, 'dir/f'), 'user.color', Buffer.from('blue'));
    fs.chownSync(path.join(src, 'dir/f'), 123, 456);
    const tarFile = path.join(base, 'gnutar.tar');
    execFileSync('tar', ['--xattrs', '--xattrs-include=*', '-C', src, '-cf', tarFile, '.']);
    const store = newStore('gnutar');
    const r = await store.unpackLayer({ blobPath: tarFile, mediaType: MEDIA_TYPES.none });
    expect(r.diffId).toBe(sha256(fs.readFileSync(tarFile)));
    const out = (p: string): string => path.join(r.path, 'dir', p);
    expect(fs.readFileSync(out(long), 'utf8')).toBe('long');
    expect(fs.lstatSync(out('h')).ino).toBe(fs.lstatSync(out('f')).ino);
    expect(fs.readlinkSync(out('s'))).toBe('f');
    expect(fs.lstatSync(out('p')).isFIFO()).toBe(true);
    expect(xattr(out('f'), 'user.color')).toBe('blue');
    expect(fs.lstatSync(out('f')).uid).toBe(123);
  });
});

/** Every path under `dir` with its type, size, mode and mtime (layer dirs of the store excluded). */
function snapshot(dir: string, skip: (rel: string) => boolean): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (r: string): void => {
    const full = path.join(dir, r);
    for (const name of fs.readdirSync(full)) {
      const cr = r ? `${r}/${name}` : name;
      if (skip(cr)) continue;
      const st = fs.lstatSync(path.join(dir, cr));
      // Directories: their listing is compared instead of times (temp dirs come and go).
      out.set(cr, st.isDirectory() ? `dir:${st.mode}` : `${st.mode}:${st.size}:${st.mtimeMs}:${st.nlink}`);
      if (st.isDirectory()) walk(cr);
    }
  };
  walk('');
  return out;
}

describe('hostile layers', () => {
  let hostileBase: string;
  let outside: string;
  let store: LayerStore;
  const escapeNames = ['escape', 'pax-escape', 'gnu-escape', 'escaped', 'null-escape', 'deep', 'victim', 'sda'];

  beforeAll(() => {
    hostileBase = path.join(base, 'hostile');
    outside = path.join(hostileBase, 'outside');
    fs.mkdirSync(outside, { recursive: true });
    fs.writeFileSync(path.join(outside, 'canary'), 'untouched');
    store = newStore('hostile/root');
  });

  afterAll(() => {
    fs.rmSync(`/etc/${UNIQUE}`, { force: true });
  });

  // Layer dirs of the store are checked by the cases themselves.
  const skip = (rel: string): boolean => /^root\/layers\/[0-9a-f]{64}/.test(rel);

  it.each(HOSTILE_LAYERS.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    await store.init();
    const before = snapshot(hostileBase, skip);
    const ancestors: string[] = [];
    for (let d = hostileBase; d !== '/'; d = path.dirname(d)) ancestors.push(path.dirname(d));
    const blobPath = path.join(base, `hostile-${HOSTILE_LAYERS.indexOf(c)}.tar`);
    const blob = writeLayerBlob(blobPath, c.entries(outside), 'gzip');
    const layersBefore = await store.list();

    const result = await store.unpackLayer(blob).then(
      (r) => ({ ok: true as const, r }),
      (e: unknown) => ({ ok: false as const, e }),
    );

    if (c.outcome === 'reject') {
      expect(result.ok).toBe(false);
      if (!result.ok) {
        const e = result.e as CapsaError;
        expect(e).toBeInstanceOf(CapsaError);
        expect(['InvalidArgument', 'Internal']).toContain(e.kind);
        expect(e.context.stage).toBe('unpack');
        if (c.entry) expect(e.message).toContain(JSON.stringify(c.entry));
      }
      expect(await store.list()).toEqual(layersBefore);
    } else {
      if (!result.ok) throw result.e;
      c.check?.(result.r.path, outside);
      if (c.name.includes('trusted.overlay')) {
        expect(native().lgetxattr(path.join(result.r.path, 'd'), 'trusted.overlay.opaque')).toBeNull();
        expect(native().lgetxattr(path.join(result.r.path, 'd'), 'trusted.overlay.redirect')).toBeNull();
      }
    }
    // Nothing appeared or changed outside the layer roots; no temp dir left.
    expect(snapshot(hostileBase, skip)).toEqual(before);
    expect(fs.readFileSync(path.join(outside, 'canary'), 'utf8')).toBe('untouched');
    expect(tmpDirs(store)).toEqual([]);
    for (const dir of ancestors) {
      for (const n of escapeNames) expect(fs.existsSync(path.join(dir, n))).toBe(false);
    }
    expect(fs.existsSync(`/etc/${UNIQUE}`)).toBe(false);
  });
});
