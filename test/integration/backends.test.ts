// Rootfs backends on their own, as root: overlay (incl. 150 layers), copy,
// bind; whiteouts and opaque directories seen through each; destroy leaves
// no mount and no directory.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { CapsaError } from '../../src/errors';
import { native } from '../../src/native';
import { Backend } from '../../src/provisioner/backends/backend';
import { BindBackend } from '../../src/provisioner/backends/bind';
import { CopyBackend } from '../../src/provisioner/backends/copy';
import { readMountInfo, unmountAll } from '../../src/provisioner/backends/mounts';
import { OverlayBackend } from '../../src/provisioner/backends/overlay';
import { overlayWorks, selectBackend } from '../../src/provisioner/backends/select';
import { LayerStore, UnpackedLayer } from '../../src/provisioner/layers/unpack';
import { TarSpec, writeLayerBlob } from '../helpers/tar-writer';

jest.setTimeout(120_000);

let base: string;
let stateDir: string;
let store: LayerStore;
let lower: UnpackedLayer;
let upper: UnpackedLayer;

const CAP = Buffer.from([1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

const LOWER: TarSpec[] = [
  { name: 'a/1', data: 'one' },
  { name: 'a/2', data: 'two' },
  { name: 'b/x', data: 'bx' },
  { name: 'c', data: 'c-file' },
  { name: 'd/old', data: 'old' },
  { name: 'e/keep', data: 'keep' },
  { name: 'm', data: 'meta', mode: 0o4750, uid: 7, gid: 8, mtime: 1_234_567_890, xattrs: { 'user.k': 'v' } },
  { name: 'cap', data: 'ping', mode: 0o755, xattrs: { 'security.capability': CAP } },
  { name: 'h1', data: 'linked' },
  { name: 'h2', type: 'hardlink', linkname: 'h1' },
  { name: 'dev/null', type: 'char', devmajor: 1, devminor: 3, mode: 0o666 },
  { name: 'dev/loop0', type: 'block', devmajor: 7, devminor: 0, mode: 0o660 },
  { name: 'p', type: 'fifo', mode: 0o600 },
  { name: 'sl', type: 'symlink', linkname: 'a/1' },
  { name: 'tmp', type: 'dir', mode: 0o1777, mtime: 1_000_000_000 },
];

const UPPER: TarSpec[] = [
  { name: '.wh.b', data: '' },
  { name: 'a/.wh.1', data: '' },
  { name: 'c', type: 'dir' },
  { name: 'c/inner', data: 'inner' },
  { name: 'd', type: 'dir' },
  { name: 'd/.wh..wh..opq', data: '' },
  { name: 'd/new', data: 'new' },
  { name: 'e/added', data: 'added' },
  { name: 'f', data: 'f' },
];

beforeAll(async () => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-backends-'));
  stateDir = path.join(base, 'containers');
  store = new LayerStore({ root: base, sync: false });
  lower = await store.unpackLayer(writeLayerBlob(path.join(base, 'lower.tar.gz'), LOWER));
  upper = await store.unpackLayer({
    ...writeLayerBlob(path.join(base, 'upper.tar.gz'), UPPER),
    parentChainId: lower.chainId,
  });
});

afterAll(async () => {
  await store.close();
  await unmountAll(base).catch(() => undefined);
  fs.rmSync(base, { recursive: true, force: true });
});

async function mountsAt(target: string): Promise<string[]> {
  return (await readMountInfo()).filter((m) => m.mountPoint.startsWith(target)).map((m) => m.mountPoint);
}

async function expectGone(b: Backend, id: string, target: string): Promise<void> {
  expect(await mountsAt(target)).toEqual([]);
  expect((await readMountInfo()).some((m) => m.source === `capsa-${id}`)).toBe(false);
  expect(fs.existsSync(target)).toBe(false);
  expect(fs.existsSync(path.join(stateDir, id))).toBe(false);
  await b.destroy(id, target); // idempotent
}

function checkMerged(root: string): void {
  const p = (r: string): string => path.join(root, r);
  expect(fs.readdirSync(p('a'))).toEqual(['2']);
  expect(fs.existsSync(p('b'))).toBe(false);
  expect(fs.lstatSync(p('c')).isDirectory()).toBe(true);
  expect(fs.readFileSync(p('c/inner'), 'utf8')).toBe('inner');
  expect(fs.readdirSync(p('d'))).toEqual(['new']);
  expect(fs.readdirSync(p('e')).sort()).toEqual(['added', 'keep']);
  expect(fs.readFileSync(p('f'), 'utf8')).toBe('f');
  const m = fs.lstatSync(p('m'));
  expect(m.mode & 0o7777).toBe(0o4750);
  expect([m.uid, m.gid]).toEqual([7, 8]);
  expect(Math.floor(m.mtimeMs / 1000)).toBe(1_234_567_890);
  expect(native().lgetxattr(p('m'), 'user.k')?.toString()).toBe('v');
  expect(native().lgetxattr(p('cap'), 'security.capability')).toEqual(CAP);
  expect(fs.lstatSync(p('h1')).ino).toBe(fs.lstatSync(p('h2')).ino);
  const n = fs.lstatSync(p('dev/null'));
  expect(n.isCharacterDevice() && n.rdev === 0x103).toBe(true);
  expect(fs.lstatSync(p('dev/loop0')).isBlockDevice()).toBe(true);
  expect(fs.lstatSync(p('p')).isFIFO()).toBe(true);
  expect(fs.readlinkSync(p('sl'))).toBe('a/1');
  const t = fs.lstatSync(p('tmp'));
  expect(t.mode & 0o7777).toBe(0o1777);
  expect(Math.floor(t.mtimeMs / 1000)).toBe(1_000_000_000);
  // No whiteout device or opaque marker is visible as a file.
  for (const dir of ['', 'a', 'd']) {
    for (const name of fs.readdirSync(p(dir))) expect(name.startsWith('.wh.')).toBe(false);
  }
}

describe.each([
  ['overlay', (): Backend => new OverlayBackend({ stateDir })],
  ['copy', (): Backend => new CopyBackend({ stateDir })],
])('%s backend', (name, make) => {
  it('merges layers with whiteouts and opaque dirs, then destroys cleanly', async () => {
    const b = make();
    const id = `test-${name}`;
    const target = path.join(base, 'rootfs', id);
    try {
      await b.provision(id, [lower.path, upper.path], target);
      const mounts = (await readMountInfo()).filter((m) => m.mountPoint === target);
      expect(mounts).toHaveLength(1);
      if (name === 'overlay') {
        expect(mounts[0].fstype).toBe('overlay');
        expect(mounts[0].source).toBe(`capsa-${id}`);
      } else {
        expect(mounts[0].root).toContain(path.join('containers', id, 'copy', 'rootfs'));
      }
      checkMerged(target);
      // The rootfs is writable; writes land in the container's own dir, never in a layer.
      fs.writeFileSync(path.join(target, 'a/2'), 'changed');
      fs.rmSync(path.join(target, 'e/keep'));
      expect(fs.readFileSync(path.join(lower.path, 'a/2'), 'utf8')).toBe('two');
      expect(fs.existsSync(path.join(lower.path, 'e/keep'))).toBe(true);
      expect(fs.readFileSync(path.join(b.writableDir!(id)!, 'a/2'), 'utf8')).toBe('changed');
      await expect(b.provision(id, [lower.path], target)).rejects.toMatchObject({ kind: 'AlreadyExists' });
    } finally {
      await b.destroy(id, target);
    }
    await expectGone(b, id, target);
  });

  it('cleans up after a failed provision', async () => {
    const b = make();
    const id = `fail-${name}`;
    const target = path.join(base, 'rootfs', id);
    const err = await b
      .provision(id, [lower.path, path.join(base, 'no-such-layer')], target)
      .catch((e: unknown) => e as CapsaError);
    expect(err).toBeInstanceOf(CapsaError);
    expect((err as CapsaError).context.stage).toBe('provision');
    await expectGone(b, id, target);
  });

  it('rejects bad ids and targets', async () => {
    const b = make();
    await expect(b.provision('../x', [lower.path], path.join(base, 'r'))).rejects.toMatchObject({
      kind: 'InvalidArgument',
    });
    await expect(b.provision('ok', [lower.path], 'relative')).rejects.toMatchObject({ kind: 'InvalidArgument' });
  });
});

describe.each([
  ['overlay', (): Backend => new OverlayBackend({ stateDir })],
  ['copy', (): Backend => new CopyBackend({ stateDir })],
  ['bind', (): Backend => new BindBackend({ stateDir })],
])('%s backend: image volumes', (name, make) => {
  it('mounts layers read-only, nosuid, nodev beside the rootfs; destroy takes them with it', async () => {
    const b = make();
    const id = `volumes-${name}`;
    const target = path.join(base, 'rootfs', id);
    try {
      await b.provision(id, [lower.path], target);
      const flags = async (mnt: string): Promise<string[]> =>
        (await readMountInfo()).find((m) => m.mountPoint === mnt)!.options.split(',');
      if (name === 'bind') {
        await expect(b.mountReadOnly(id, '0', [lower.path, upper.path])).rejects.toMatchObject({
          kind: 'InvalidArgument',
        });
        expect(await mountsAt(path.join(stateDir, id, 'volumes'))).toEqual([]);
      } else {
        const merged = await b.mountReadOnly(id, '0', [lower.path, upper.path]);
        expect(merged).toBe(path.join(stateDir, id, 'volumes', '0', 'mnt'));
        checkMerged(merged);
        expect(() => fs.writeFileSync(path.join(merged, 'new'), 'x')).toThrow(/EROFS/);
        expect(await flags(merged)).toEqual(expect.arrayContaining(['ro', 'nosuid', 'nodev']));
        expect(await flags(merged)).not.toContain('noexec');
        // Made again from nothing (a retry after a crash).
        expect(await b.mountReadOnly(id, '0', [lower.path, upper.path])).toBe(merged);
        expect(await mountsAt(merged)).toEqual([merged]);
      }
      const one = await b.mountReadOnly(id, '1', [lower.path]);
      expect(fs.readFileSync(path.join(one, 'a/1'), 'utf8')).toBe('one');
      expect(() => fs.writeFileSync(path.join(one, 'a/1'), 'x')).toThrow(/EROFS/);
      expect(await flags(one)).toEqual(expect.arrayContaining(['ro', 'nosuid', 'nodev']));
      const none = await b.mountReadOnly(id, '2', []);
      expect(fs.readdirSync(none)).toEqual([]);
      await expect(b.mountReadOnly(id, '../x', [lower.path])).rejects.toMatchObject({ kind: 'Internal' });
      expect(fs.readFileSync(path.join(lower.path, 'a/1'), 'utf8')).toBe('one');
    } finally {
      await b.destroy(id, target);
    }
    expect(await mountsAt(path.join(stateDir, id))).toEqual([]);
    await expectGone(b, id, target);
  });
});

describe('overlay backend with many layers', () => {
  it('mounts 150 layers (past the one-page option limit of absolute paths)', async () => {
    const layers: string[] = [];
    for (let i = 1; i <= 150; i++) {
      // Long paths on purpose: 150 of them would be ~15 KB of options.
      const dir = path.join(base, 'many', `${'layer-with-a-long-directory-name-'.repeat(2)}${i}`, 'fs');
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, `f${i}`), String(i));
      fs.writeFileSync(path.join(dir, 'common'), String(i));
      if (i === 100) fs.writeFileSync(path.join(dir, '.keep'), '');
      layers.push(dir);
    }
    const b = new OverlayBackend({ stateDir });
    const id = 'many-layers';
    const target = path.join(base, 'rootfs', id);
    try {
      await b.provision(id, layers, target);
      expect(fs.readFileSync(path.join(target, 'common'), 'utf8')).toBe('150');
      for (let i = 1; i <= 150; i++) expect(fs.readFileSync(path.join(target, `f${i}`), 'utf8')).toBe(String(i));
      const m = (await readMountInfo()).find((x) => x.mountPoint === target)!;
      expect(m.source).toBe(`capsa-${id}`);
      expect(m.superOptions.length).toBeLessThan(4096);
    } finally {
      await b.destroy(id, target);
    }
    await expectGone(b, id, target);
  });
});

describe('bind backend', () => {
  it('mounts one layer read-only and refuses more', async () => {
    const b = new BindBackend({ stateDir });
    const id = 'bind-one';
    const target = path.join(base, 'rootfs', id);
    await expect(b.provision(id, [lower.path, upper.path], target)).rejects.toMatchObject({
      kind: 'InvalidArgument',
    });
    expect(fs.existsSync(target)).toBe(false);
    try {
      await b.provision(id, [lower.path], target);
      expect(fs.readFileSync(path.join(target, 'a/1'), 'utf8')).toBe('one');
      expect(() => fs.writeFileSync(path.join(target, 'new'), 'x')).toThrow(/EROFS/);
      const m = (await readMountInfo()).find((x) => x.mountPoint === target)!;
      expect(m.options.split(',')).toContain('ro');
      expect(m.root).toBe(lower.path);
    } finally {
      await b.destroy(id, target);
    }
    await expectGone(b, id, target);
  });
});

describe('selectBackend', () => {
  it('picks overlay here and leaves no probe behind', async () => {
    expect(await overlayWorks(stateDir)).toBe(true);
    const b = await selectBackend({ stateDir });
    expect(b.name).toBe('overlay');
    expect(fs.readdirSync(stateDir).filter((n) => n.startsWith('.capsa-probe'))).toEqual([]);
    expect((await readMountInfo()).some((m) => m.source === 'capsa-probe')).toBe(false);
    expect((await selectBackend({ stateDir, prefer: 'copy' })).name).toBe('copy');
    expect((await selectBackend({ stateDir, prefer: 'bind' })).name).toBe('bind');
  });
});
