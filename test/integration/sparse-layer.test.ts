// An image whose layers carry sparse files, as GNU tar writes them (a PAX 1.0
// layer and an old GNU 'S' layer, from files with holes made by truncate +
// dd), pulled from the test registry: the container sees the same bytes and
// the files keep their holes in its rootfs (st_blocks far below the size).
import * as grpc from '@grpc/grpc-js';
import { execFileSync } from 'child_process';
import { createHash } from 'crypto';
import { existsSync, mkdtempSync, promises as fs, readFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { TestDaemon, call, createContainer, runp, startDaemon } from '../helpers/daemon';
import { removePodsCheckLeaksAndStop } from '../helpers/leaks';
import { TestRegistry, ensureTestImages, startRegistry } from '../helpers/registry';
import { buildTar, compress, sha256 } from '../helpers/tar-writer';

const REG = 'registry.example.test';
const IMAGE = `${REG}/capsa-test/sparse:latest`;
const HOSTILE = `${REG}/capsa-test/sparse-hostile:latest`;
const suite = process.getuid?.() === 0 ? describe : describe.skip;
const MIB = 1024 * 1024;

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

/** The busybox test image plus one gzip layer per tar in `tars`, as a new OCI layout in `dest`. */
async function imageWithLayers(busybox: string, dest: string, tars: Buffer[]): Promise<void> {
  const blobs = path.join(dest, 'blobs', 'sha256');
  await fs.mkdir(blobs, { recursive: true });
  const put = async (data: Buffer, mediaType: string): Promise<Descriptor> => {
    const digest = sha256(data);
    await fs.writeFile(path.join(blobs, digest.slice(7)), data);
    return { mediaType, digest, size: data.length };
  };
  const blob = (d: string): Promise<Buffer> => fs.readFile(path.join(busybox, 'blobs', 'sha256', d.slice(7)));
  const index = JSON.parse(await fs.readFile(path.join(busybox, 'index.json'), 'utf8')) as { manifests: Descriptor[] };
  const manifest = JSON.parse((await blob(index.manifests[0].digest)).toString()) as {
    config: Descriptor;
    layers: Descriptor[];
  };
  const config = JSON.parse((await blob(manifest.config.digest)).toString()) as { rootfs: { diff_ids: string[] } };
  for (const l of manifest.layers) await put(await blob(l.digest), l.mediaType);
  const layers = [...manifest.layers];
  for (const tar of tars) {
    layers.push(await put(compress(tar, 'gzip'), 'application/vnd.oci.image.layer.v1.tar+gzip'));
    config.rootfs.diff_ids.push(sha256(tar));
  }
  const cfg = await put(Buffer.from(JSON.stringify(config)), manifest.config.mediaType);
  const m = await put(
    Buffer.from(JSON.stringify({ ...manifest, config: cfg, layers })),
    'application/vnd.oci.image.manifest.v1+json',
  );
  await fs.writeFile(path.join(dest, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await fs.writeFile(
    path.join(dest, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{ ...m, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }],
    }),
  );
}

suite('sparse files in a layer', () => {
  let reg: TestRegistry;
  let d: TestDaemon;
  const work = mkdtempSync(path.join(os.tmpdir(), 'capsa-sparse-layer-'));
  const want = new Map<string, { size: number; data: number; sha: string }>();

  beforeAll(async () => {
    const images = await ensureTestImages();
    // Files with holes: 64 MiB with 3 data runs, and 16 MiB ending in data.
    const src = path.join(work, 'src');
    await fs.mkdir(path.join(src, 'pax'), { recursive: true });
    await fs.mkdir(path.join(src, 'gnu'), { recursive: true });
    const holey = (rel: string, size: number, runs: [number, number][]): void => {
      const f = path.join(src, rel);
      execFileSync('truncate', ['-s', String(size), f]);
      for (const [off, len] of runs) {
        execFileSync(
          'dd',
          ['if=/dev/urandom', `of=${f}`, `bs=${len}`, 'count=1', `seek=${off}`].concat([
            'oflag=seek_bytes',
            'conv=notrunc',
            'status=none',
          ]),
        );
      }
      const data = runs.reduce((n, [, l]) => n + l, 0);
      want.set(rel, { size, data, sha: createHash('sha256').update(readFileSync(f)).digest('hex') });
    };
    holey('pax/disk.img', 64 * MIB, [
      [0, 64 * 1024],
      [20 * MIB, 128 * 1024],
      [50 * MIB, 4096],
    ]);
    holey('gnu/tail.img', 16 * MIB, [[16 * MIB - 64 * 1024, 64 * 1024]]);
    const tar = (dir: string, format: string[]): Buffer => {
      const out = path.join(work, `${dir}.tar`);
      execFileSync('tar', ['-C', src, '--sparse', ...format, '--owner=0', '--group=0', '-cf', out, dir]);
      return readFileSync(out);
    };
    const layout = path.join(work, 'layout');
    await imageWithLayers(images.busybox.layout, layout, [
      tar('pax', ['--format=posix', '--sparse-version=1.0']),
      tar('gnu', ['--format=gnu']),
    ]);
    // A layer whose sparse map overlaps itself, after a file that unpacks fine.
    const hostile = buildTar([
      { name: 'ok.txt', data: 'fine' },
      {
        name: 'bad.img',
        data: 'x'.repeat(16),
        pax: { 'GNU.sparse.size': '100', 'GNU.sparse.numblocks': '2', 'GNU.sparse.map': '0,8,4,8' },
      },
    ]);
    const hostileLayout = path.join(work, 'hostile-layout');
    await imageWithLayers(images.busybox.layout, hostileLayout, [hostile]);
    reg = await startRegistry();
    await reg.push(layout, 'capsa-test/sparse:latest');
    await reg.push(hostileLayout, 'capsa-test/sparse-hostile:latest');
    d = await startDaemon({ toml: `[registries."${REG}"]\nmirrors = ["${reg.url}"]\n` });
  }, 180_000);

  afterAll(async () => {
    if (d && d.proc.exitCode === null) await removePodsCheckLeaksAndStop(d);
    await d?.cleanup();
    await reg?.stop();
    await fs.rm(work, { recursive: true, force: true });
  }, 120_000);

  it('pulls, and the container sees the same bytes with the holes kept', async () => {
    await call(d.image, 'pullImage', { image: { image: IMAGE } }, 120_000);
    const podCfg = {
      metadata: { name: 'sparse', uid: 'uid-sparse', namespace: 'capsa-sparse' },
      logDirectory: path.join(d.dir, 'logs', 'sparse'),
      linux: { securityContext: { namespaceOptions: { network: 2 } } },
    };
    const pod = await runp(d, podCfg, 60_000);
    const id = await createContainer(d, pod, podCfg, {
      metadata: { name: 'c' },
      image: { image: IMAGE },
      command: ['sleep', '600'],
      logPath: 'c.log',
    });
    await call(d.runtime, 'startContainer', { containerId: id }, 30_000);
    for (const [rel, w] of want) {
      const r = await call<{ stdout: Buffer; stderr: Buffer; exitCode: number }>(
        d.runtime,
        'execSync',
        { containerId: id, cmd: ['sh', '-c', `stat -c '%s %b %B' /${rel} && sha256sum /${rel}`], timeout: 30n },
        40_000,
      );
      expect({ exit: r.exitCode, err: r.stderr.toString() }).toEqual({ exit: 0, err: '' });
      const [statLine, sumLine] = r.stdout.toString().trim().split('\n');
      const [size, blocks, unit] = statLine.split(' ').map(Number);
      expect(size).toBe(w.size);
      // Allocated: the data runs (in file system blocks), never the holes.
      expect(blocks * unit).toBeGreaterThanOrEqual(w.data);
      expect(blocks * unit).toBeLessThanOrEqual(w.data + 256 * 1024);
      expect(sumLine.split(/\s+/)[0]).toBe(w.sha);
    }
  }, 180_000);

  it('refuses a layer whose sparse map overlaps, naming it, and keeps nothing of it', async () => {
    const err = await call(d.image, 'pullImage', { image: { image: HOSTILE } }, 120_000).then(
      () => undefined,
      (e: unknown) => e as { code?: number; details?: string },
    );
    expect(err).toBeDefined();
    expect(err!.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err!.details).toMatch(/bad\.img.*sparse map.*overlaps/);
    // Nothing of the hostile layer is kept, and no temp dir of its unpack is left.
    const after = await fs.readdir(path.join(d.root, 'layers'));
    expect(after.filter((n) => n.startsWith('.tmp-'))).toEqual([]);
    const images = await call<{ images: { repoTags: string[] }[] }>(d.image, 'listImages', {});
    expect(images.images.flatMap((i) => i.repoTags)).not.toContain(HOSTILE);
    // ok.txt unpacks before the bad entry: no layer dir holds it.
    for (const n of after) expect(existsSync(path.join(d.root, 'layers', n, 'fs', 'ok.txt'))).toBe(false);
  }, 180_000);
});
