import { execFileSync } from 'child_process';
import { mkdtempSync, promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Readable } from 'stream';
import { ContentStore, DigestMismatchError } from '../../src/provisioner/store/content-store';
import { sha256Of } from '../../src/provisioner/store/digest';
import { ImageStore, NewImage } from '../../src/provisioner/store/image-store';
import { MediaType } from '../../src/provisioner/store/manifest';
import { indexTar, resolveMember } from '../../src/provisioner/store/tar-index';

const tmpRoot = mkdtempSync(path.join(os.tmpdir(), 'capsa-store-'));
afterAll(() => fs.rm(tmpRoot, { recursive: true, force: true }));
let n = 0;
const freshDir = (): string => path.join(tmpRoot, `r${n++}`);

async function newContent(): Promise<ContentStore> {
  const c = new ContentStore(freshDir(), { fsync: false });
  await c.init();
  return c;
}

const bytesOf = (s: string): Buffer => Buffer.from(s);

describe('content store', () => {
  test('ingest verifies digest and size, then the blob appears', async () => {
    const c = await newContent();
    const data = bytesOf('hello world');
    const digest = sha256Of(data);
    const p = await c.ingest({ digest, size: data.length }, async (w) => {
      await w.write(data.subarray(0, 5));
      await w.write(data.subarray(5));
    });
    expect(p).toBe(c.path(digest));
    expect(await fs.readFile(p, 'utf8')).toBe('hello world');
    expect(await c.has(digest)).toBe(true);
    expect(await c.size(digest)).toBe(11);
    expect(await c.list()).toEqual([digest]);
    const chunks: Buffer[] = [];
    for await (const ch of await c.open(digest)) chunks.push(ch as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('hello world');
    await c.delete(digest);
    expect(await c.has(digest)).toBe(false);
    await expect(c.open(digest)).rejects.toMatchObject({ kind: 'NotFound' });
  });

  test('a digest mismatch is an error and leaves no bytes behind', async () => {
    const c = await newContent();
    const digest = sha256Of('expected');
    await expect(c.ingest({ digest }, (w) => w.write(bytesOf('corrupted')))).rejects.toBeInstanceOf(
      DigestMismatchError,
    );
    expect(await c.has(digest)).toBe(false);
    expect(await fs.readdir(c.ingestDir)).toEqual([]);
    // too many bytes fails at once, too few at the end
    await expect(c.ingest({ digest, size: 3 }, (w) => w.write(bytesOf('expected')))).rejects.toThrow(/larger than/);
    await expect(c.ingest({ digest, size: 20 }, (w) => w.write(bytesOf('expected')))).rejects.toThrow(/expected 20/);
    expect(await fs.readdir(c.ingestDir)).toEqual([]);
    expect(await fs.readdir(c.blobsDir)).toEqual([]);
  });

  test('a source that resets starts over', async () => {
    const c = await newContent();
    const digest = sha256Of('abc');
    await c.ingest({ digest, size: 3 }, async (w) => {
      await w.write(bytesOf('xy'));
      expect(w.offset).toBe(2);
      await w.reset();
      expect(w.offset).toBe(0);
      await w.write(bytesOf('abc'));
    });
    expect(await fs.readFile(c.path(digest), 'utf8')).toBe('abc');
  });

  test('concurrent ingests of one digest share one write', async () => {
    const c = await newContent();
    const data = bytesOf('shared');
    const digest = sha256Of(data);
    let calls = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const source = async (w: { write(b: Buffer): Promise<void> }): Promise<void> => {
      calls++;
      await gate;
      await w.write(data);
    };
    const all = Promise.all([1, 2, 3].map(() => c.ingest({ digest, size: data.length }, source)));
    await new Promise((r) => setTimeout(r, 20));
    expect(c.isIngesting(digest)).toBe(true);
    release();
    const paths = await all;
    expect(calls).toBe(1);
    expect(new Set(paths).size).toBe(1);
    expect(c.isIngesting(digest)).toBe(false);
    // once stored, no source runs at all
    await c.ingest({ digest }, async () => {
      calls++;
    });
    expect(calls).toBe(1);
  });

  test('one waiter giving up does not stop the others; the last one does', async () => {
    const c = await newContent();
    const data = bytesOf('slow');
    const digest = sha256Of(data);
    let sourceSignal: AbortSignal | undefined;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const source = async (w: { signal: AbortSignal; write(b: Buffer): Promise<void> }): Promise<void> => {
      sourceSignal = w.signal;
      await gate;
      await w.write(data);
    };
    const a = new AbortController();
    const pa = c.ingest({ digest }, source, { signal: a.signal });
    const pb = c.ingest({ digest }, source);
    await new Promise((r) => setTimeout(r, 10));
    a.abort(new Error('caller A gave up'));
    await expect(pa).rejects.toThrow('caller A gave up');
    expect(sourceSignal?.aborted).toBe(false);
    release();
    await expect(pb).resolves.toBe(c.path(digest));

    const d2 = sha256Of('never');
    const b = new AbortController();
    let sig: AbortSignal | undefined;
    const pc = c.ingest(
      { digest: d2 },
      (w) =>
        new Promise<void>((_, reject) => {
          sig = w.signal;
          w.signal.addEventListener('abort', () => reject(w.signal.reason));
        }),
      { signal: b.signal },
    );
    await new Promise((r) => setTimeout(r, 10));
    b.abort(new Error('B gave up'));
    await expect(pc).rejects.toThrow('B gave up');
    expect(sig?.aborted).toBe(true);
    await new Promise((r) => setTimeout(r, 10));
    expect(await fs.readdir(c.ingestDir)).toEqual([]);
  });

  test('the last waiter to give up answers only after the write has stopped', async () => {
    const c = await newContent();
    const data = bytesOf('stubborn');
    const digest = sha256Of(data);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    // A source that does not watch its signal: the write is past its abort checks when the caller gives up.
    const ac = new AbortController();
    let settled = false;
    const p = c
      .ingest(
        { digest },
        async (w) => {
          await gate;
          await w.write(data);
        },
        { signal: ac.signal },
      )
      .finally(() => (settled = true));
    p.catch(() => undefined);
    await new Promise((r) => setTimeout(r, 10));
    ac.abort(new Error('gave up'));
    await new Promise((r) => setTimeout(r, 20));
    expect(settled).toBe(false);
    release();
    await expect(p).rejects.toThrow('gave up');
    // Nothing is written after the caller has its answer: no temp file, no blob.
    expect(await fs.readdir(c.ingestDir)).toEqual([]);
    expect(await c.has(digest)).toBe(false);
  });

  test('writeBlob, ingestStream and ingestUnverified', async () => {
    const c = await newContent();
    const d1 = await c.writeBlob(bytesOf('{"a":1}'));
    expect(d1).toBe(sha256Of('{"a":1}'));
    await expect(c.writeBlob(bytesOf('x'), sha256Of('y'))).rejects.toBeInstanceOf(DigestMismatchError);
    const d2 = sha256Of('streamed');
    await c.ingestStream({ digest: d2, size: 8 }, () => Readable.from([bytesOf('stre'), bytesOf('amed')]));
    expect(await c.has(d2)).toBe(true);
    const seen: string[] = [];
    const r = await c.ingestUnverified(Readable.from([bytesOf('un'), bytesOf('known')]), {
      beforeCommit: async (d) => {
        seen.push(d);
      },
    });
    expect(r).toEqual({ digest: sha256Of('unknown'), size: 7, path: c.path(sha256Of('unknown')) });
    expect(seen).toEqual([sha256Of('unknown')]);
    expect(c.path.bind(c, 'sha256:nothex')).toThrow(/invalid digest/);
  });

  test('init removes temp files left by a crash', async () => {
    const c = await newContent();
    await fs.writeFile(path.join(c.ingestDir, 'leftover'), 'x');
    await c.init();
    expect(await fs.readdir(c.ingestDir)).toEqual([]);
  });
});

// ---------------------------------------------------------------- image store

const hex = (x: number): string => String(x).padStart(64, '0');
const dg = (x: number): string => `sha256:${hex(x)}`;

function image(
  id: number,
  opts: { tags?: string[]; digests?: string[]; layers?: number[]; blobs?: number[] } = {},
): NewImage {
  const layers = (opts.layers ?? [id * 10]).map((l) => ({
    digest: dg(l),
    mediaType: MediaType.OciLayerGzip,
    size: 1,
    diffId: dg(l + 1),
    chainId: dg(l + 2),
  }));
  return {
    id: dg(id),
    repoTags: opts.tags ?? [],
    repoDigests: opts.digests ?? [],
    manifestDigest: dg(id + 1),
    manifestMediaType: MediaType.OciManifest,
    configDigest: dg(id),
    layers,
    size: 3,
    config: { rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) } },
    blobs: (opts.blobs ?? []).map(dg).concat([dg(id), dg(id + 1), ...layers.map((l) => l.digest)]),
  };
}

async function newStores(): Promise<{
  root: string;
  content: ContentStore;
  images: ImageStore;
  layersOnDisk: Set<string>;
}> {
  const root = freshDir();
  const content = new ContentStore(root, { fsync: false });
  await content.init();
  const layersOnDisk = new Set<string>();
  const images = new ImageStore(root, {
    content,
    layers: {
      deleteLayer: async (c) => {
        layersOnDisk.delete(c);
      },
      listLayers: async () => [...layersOnDisk],
    },
  });
  await images.init();
  return { root, content, images, layersOnDisk };
}

describe('image store', () => {
  const busybox = 'docker.io/library/busybox:latest';
  const busyboxDigest = `docker.io/library/busybox@${dg(999)}`;

  test('lookup by id, id prefix, tag (normalized) and digest reference', async () => {
    const { images } = await newStores();
    await images.add(image(100, { tags: [busybox], digests: [busyboxDigest] }));
    await images.add(image(200, { tags: ['registry.k8s.io/pause:3.9'] }));
    const id = dg(100);
    expect(images.resolve(id)?.id).toBe(id);
    expect(images.resolve(hex(100))?.id).toBe(id);
    expect(images.resolve('busybox')?.id).toBe(id);
    expect(images.resolve('busybox:latest')?.id).toBe(id);
    expect(images.resolve('docker.io/library/busybox')?.id).toBe(id);
    expect(images.resolve(`busybox@${dg(999)}`)?.id).toBe(id);
    expect(images.resolve('registry.k8s.io/pause:3.9')?.id).toBe(dg(200));
    expect(images.resolve('pause:3.9')).toBeUndefined();
    expect(images.resolve('nothere')).toBeUndefined();
    expect(images.resolve(hex(1))).toBeUndefined();
    // a prefix shared by both ids is ambiguous
    expect(() => images.resolve('0000')).toThrow(/ambiguous/);
    expect(images.resolve(`sha256:${hex(100).slice(0, 62)}`)?.id).toBe(id);
    expect(() => images.resolve('Bad:Ref:')).toThrow(/invalid reference/);
  });

  test('a tag moves to the newer image; adding the same image merges references', async () => {
    const { images } = await newStores();
    await images.add(image(100, { tags: [busybox, 'docker.io/library/busybox:1'] }));
    await images.add(image(200, { tags: [busybox] }));
    expect(images.get(dg(100))?.repoTags).toEqual(['docker.io/library/busybox:1']);
    expect(images.resolve('busybox')?.id).toBe(dg(200));
    await images.add(image(200, { tags: ['docker.io/library/busybox:2'], digests: [busyboxDigest] }));
    expect(images.get(dg(200))?.repoTags).toEqual([busybox, 'docker.io/library/busybox:2']);
    expect(images.get(dg(200))?.repoDigests).toEqual([busyboxDigest]);
    expect(images.list()).toHaveLength(2);
  });

  test('RemoveImage semantics: one tag of several, the last tag, an id, a digest', async () => {
    const { images } = await newStores();
    await images.add(image(100, { tags: [busybox, 'docker.io/library/busybox:1'], digests: [busyboxDigest] }));
    const r1 = await images.removeImage('busybox:1');
    expect(r1).toMatchObject({ removed: false, untagged: 'docker.io/library/busybox:1' });
    expect(images.get(dg(100))?.repoTags).toEqual([busybox]);
    const r2 = await images.removeImage('busybox');
    expect(r2.removed).toBe(true);
    expect(images.list()).toHaveLength(0);
    expect(await images.removeImage('busybox')).toEqual({ removed: false });

    await images.add(image(100, { tags: [busybox, 'docker.io/library/busybox:1'], digests: [busyboxDigest] }));
    expect((await images.removeImage(busyboxDigest)).removed).toBe(true);
    await images.add(image(100, { tags: [busybox, 'docker.io/library/busybox:1'] }));
    expect((await images.removeImage(hex(100))).removed).toBe(true);
    expect(images.list()).toHaveLength(0);
  });

  test('records persist; a tag a crash left on two images goes to the newer one', async () => {
    const { root, content, images } = await newStores();
    await images.add(image(100, { tags: [busybox] }));
    // Simulate a crash after the new record was written but before the old one was rewritten.
    const newer = { ...image(200, { tags: [busybox] }), createdAt: new Date().toISOString(), seq: 99, repoDigests: [] };
    await fs.writeFile(path.join(root, 'images', `${hex(200)}.json`), JSON.stringify(newer));
    await fs.writeFile(path.join(root, 'images', `.junk.json.1.2.tmp`), '{');
    await fs.writeFile(path.join(root, 'images', `${hex(300)}.json`), '{ torn');
    const again = new ImageStore(root, { content });
    await again.init();
    expect(again.list().map((r) => r.id)).toEqual([dg(100), dg(200)]);
    expect(again.get(dg(100))?.repoTags).toEqual([]);
    expect(again.resolve('busybox')?.id).toBe(dg(200));
    const third = new ImageStore(root, { content });
    await third.init();
    expect(third.get(dg(100))?.repoTags).toEqual([]);
    expect((await fs.readdir(path.join(root, 'images'))).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  test('gc deletes only unreferenced blobs and layers; refcounts follow the records', async () => {
    const { content, images, layersOnDisk } = await newStores();
    // two images sharing layer 10 (blob dg(10), chain dg(12))
    const a = image(100, { layers: [10, 20], tags: ['x.io/a:1'] });
    const b = image(200, { layers: [10, 30], tags: ['x.io/b:1'] });
    for (const img of [a, b]) {
      for (const blob of img.blobs) await content.writeBlob(bytesOf(blob)).then(() => undefined);
    }
    // the store is keyed by real digests: write blobs whose digests the records name
    const realA = { ...a, blobs: [] as string[] };
    const realB = { ...b, blobs: [] as string[] };
    const shared = await content.writeBlob(bytesOf('shared-layer'));
    const onlyA = await content.writeBlob(bytesOf('a-layer'));
    const onlyB = await content.writeBlob(bytesOf('b-layer'));
    const stray = await content.writeBlob(bytesOf('from a crashed pull'));
    realA.blobs = [shared, onlyA];
    realB.blobs = [shared, onlyB];
    for (const c of [dg(12), dg(22), dg(32), dg(777)]) layersOnDisk.add(c);
    await images.add(realA);
    await images.add(realB);
    expect(images.blobRefCount(shared)).toBe(2);
    expect(images.layerRefCount(dg(12))).toBe(2);
    expect(images.layerRefCount(dg(22))).toBe(1);

    let res = await images.gc();
    expect(res.blobs).toContain(stray);
    expect(res.blobs).not.toContain(shared);
    expect(res.layers).toEqual([dg(777)]);
    expect(await content.has(onlyA)).toBe(true);

    await images.remove(realA.id);
    expect(images.blobRefCount(shared)).toBe(1);
    res = await images.gc();
    expect(res.blobs).toEqual([onlyA]);
    expect(res.layers).toEqual([dg(22)]);
    expect(await content.has(shared)).toBe(true);

    // a container pins B's layers: removing B keeps them until unpinned
    await images.pin('container-1', [dg(12), dg(32)]);
    await images.remove(realB.id);
    res = await images.gc();
    expect(res.layers).toEqual([]);
    expect(res.blobs.sort()).toEqual([shared, onlyB].sort());
    expect([...layersOnDisk].sort()).toEqual([dg(12), dg(32)]);
    await images.unpin('container-1');
    res = await images.gc();
    expect(res.layers.sort()).toEqual([dg(12), dg(32)]);
    expect(layersOnDisk.size).toBe(0);
  });

  test('persisted pins survive a restart; pins wait for a running gc', async () => {
    const { root, content, images, layersOnDisk } = await newStores();
    layersOnDisk.add(dg(5));
    await images.pin('ctr', [dg(5)]);
    const again = new ImageStore(root, {
      content,
      layers: { deleteLayer: async (c) => void layersOnDisk.delete(c), listLayers: async () => [...layersOnDisk] },
    });
    await again.init();
    expect(again.pinOwners()).toEqual(['ctr']);
    expect((await again.gc()).layers).toEqual([]);
    await again.unpin('ctr');
    const third = new ImageStore(root, { content });
    await third.init();
    expect(third.pinOwners()).toEqual([]);

    // A pin taken while gc runs lands after it: the blob it protects survives the next run.
    const blob = await content.writeBlob(bytesOf('in use by a pull'));
    const g = again.gc();
    const p = again.pin('pull:1', [], { blobs: [blob], persist: false });
    const [r] = await Promise.all([g, p]);
    expect(r.blobs).toContain(blob); // taken before the pin existed
    const kept = await content.writeBlob(bytesOf('in use by a pull'));
    expect((await again.gc()).blobs).not.toContain(kept);
    expect(await content.has(kept)).toBe(true);
  });

  test('an image held by a pin (an image volume) cannot be removed until it is unpinned, across a restart', async () => {
    const { root, content, images } = await newStores();
    await images.add(image(300, { tags: ['example.test/vol:1', 'example.test/vol:2'] }));
    await images.pin('container:a', [dg(3002)], { images: [dg(300)] });
    expect(images.holders(dg(300))).toEqual(['container:a']);
    // One tag of two goes: the image stays, so that is no use of it.
    expect((await images.removeImage('example.test/vol:2')).untagged).toBe('example.test/vol:2');
    await expect(images.removeImage('example.test/vol:1')).rejects.toMatchObject({
      kind: 'FailedPrecondition',
      message: expect.stringMatching(/in use as an image volume by container:a/),
    });
    await expect(images.remove(dg(300))).rejects.toMatchObject({ kind: 'FailedPrecondition' });
    expect(images.get(dg(300))).toBeDefined();

    const again = new ImageStore(root, { content });
    await again.init();
    expect(again.holders(dg(300))).toEqual(['container:a']);
    await expect(again.removeImage(dg(300))).rejects.toMatchObject({ kind: 'FailedPrecondition' });
    await again.unpin('container:a');
    expect((await again.removeImage(dg(300))).removed).toBe(true);
    expect(again.get(dg(300))).toBeUndefined();
    // A layer-only pin (a container's rootfs) never held the image record.
    await images.unpin('container:a');
    await images.add(image(400));
    await images.pin('container:b', [dg(4002)]);
    expect((await images.removeImage(dg(400))).removed).toBe(true);
  });

  test('gc without listLayers collects the layers of removed images', async () => {
    const root = freshDir();
    const content = new ContentStore(root, { fsync: false });
    await content.init();
    const deleted: string[] = [];
    const images = new ImageStore(root, { content, layers: { deleteLayer: async (c) => void deleted.push(c) } });
    await images.init();
    await images.add(image(100, { layers: [10] }));
    await images.add(image(200, { layers: [10, 20] }));
    await images.remove(dg(200));
    await images.gc();
    expect(deleted).toEqual([dg(22)]);
  });
});

// ---------------------------------------------------------------- tar index

describe('tar index', () => {
  test('indexes members (long names, links) and reads them in place', async () => {
    const dir = freshDir();
    const src = path.join(dir, 'src');
    const long = 'd'.repeat(60) + '/' + 'f'.repeat(90);
    await fs.mkdir(path.join(src, 'd'.repeat(60)), { recursive: true });
    await fs.mkdir(path.join(src, 'layer1'), { recursive: true });
    await fs.mkdir(path.join(src, 'layer2'), { recursive: true });
    await fs.writeFile(path.join(src, long), 'long name content');
    await fs.writeFile(path.join(src, 'manifest.json'), '[]');
    await fs.writeFile(path.join(src, 'layer1', 'layer.tar'), Buffer.alloc(1000, 7));
    await fs.symlink('../layer1/layer.tar', path.join(src, 'layer2', 'layer.tar'));
    await fs.writeFile(path.join(src, 'empty'), '');
    const tar = path.join(dir, 'a.tar');
    for (const format of ['gnu', 'pax', 'ustar']) {
      execFileSync('tar', ['-C', src, `--format=${format}`, '-cf', tar, '.']);
      const idx = await indexTar(tar);
      expect(idx.get('manifest.json')?.size).toBe(2);
      expect(idx.get('empty')?.size).toBe(0);
      const l = resolveMember(idx, './layer2/layer.tar');
      expect(l?.name).toBe('layer1/layer.tar');
      expect(l?.size).toBe(1000);
      const e = idx.get(long);
      expect(e?.size).toBe(17);
      const fh = await fs.open(tar, 'r');
      const b = Buffer.alloc(17);
      await fh.read(b, 0, 17, e!.offset);
      await fh.close();
      expect(b.toString()).toBe('long name content');
    }
  });

  test('a corrupt tar is InvalidArgument', async () => {
    const f = path.join(freshDir() + '-bad.tar');
    await fs.writeFile(f, Buffer.alloc(1024, 1));
    await expect(indexTar(f)).rejects.toMatchObject({ kind: 'InvalidArgument' });
  });
});
