// The ImageService end to end: the real daemon (test/helpers/daemon.ts)
// through its gRPC socket, pulling from real docker-registry instances
// (test/helpers/registry.ts) — plain, basic-auth, and one reached only as
// a mirror of a host that does not exist. Expected values come from the
// OCI layouts the images were pushed from, never from capsa itself.
import * as grpc from '@grpc/grpc-js';
import { execFile } from 'child_process';
import { existsSync, mkdtempSync, promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { promisify } from 'util';
import { call, startDaemon, TestDaemon } from '../helpers/daemon';
import { ensureTestImages, startRegistry, TestImages, TestRegistry } from '../helpers/registry';

jest.setTimeout(180_000);

const execFileP = promisify(execFile);

// ---------------------------------------------------------------- the layouts' own view of the images

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

interface LayoutImage {
  manifestDigest: string;
  manifestSize: number;
  config: { digest: string; size: number };
  layers: Descriptor[];
  /** The image config JSON as stored in the layout. */
  configJson: { config?: { User?: string } } & Record<string, unknown>;
}

async function readLayout(layout: string): Promise<LayoutImage> {
  const blob = (d: string): Promise<Buffer> => fs.readFile(path.join(layout, 'blobs', 'sha256', d.slice(7)));
  const index = JSON.parse(await fs.readFile(path.join(layout, 'index.json'), 'utf8')) as { manifests: Descriptor[] };
  expect(index.manifests).toHaveLength(1);
  const top = index.manifests[0];
  const manifest = JSON.parse((await blob(top.digest)).toString()) as { config: Descriptor; layers: Descriptor[] };
  return {
    manifestDigest: top.digest,
    manifestSize: top.size,
    config: manifest.config,
    layers: manifest.layers,
    configJson: JSON.parse((await blob(manifest.config.digest)).toString()),
  };
}

/** Bytes of the image's content: manifest + config + layer blobs (what Image.size reports). */
function contentSize(img: LayoutImage): number {
  return img.manifestSize + img.config.size + img.layers.reduce((n, l) => n + l.size, 0);
}

/**
 * What CRI's Image.uid / Image.username must be for an image config's User,
 * by the rule kubelet relies on (and containerd implements): empty → neither;
 * "user[:group]" → numeric user is the uid, anything else the username.
 */
function expectedUser(user: string | undefined): { uid?: bigint; username: string } {
  const name = (user ?? '').split(':')[0];
  if (name === '') return { username: '' };
  return /^[0-9]+$/.test(name) ? { uid: BigInt(name), username: '' } : { username: name };
}

/** A copy of `src` (an OCI layout) whose image config has `User` set. */
async function withUser(src: string, dest: string, user: string): Promise<string> {
  await execFileP('cp', ['-a', src, dest]);
  await execFileP('umoci', ['config', '--image', `${dest}:latest`, '--config.user', user]);
  await execFileP('umoci', ['gc', '--layout', dest]);
  return dest;
}

// ---------------------------------------------------------------- gRPC helpers

interface CriImage {
  id: string;
  repoTags: string[];
  repoDigests: string[];
  size: bigint;
  uid?: { value: bigint };
  username: string;
}

interface FsUsage {
  bytes: bigint;
  inodes: bigint;
  mountpoint: string;
}

async function pull(d: TestDaemon, image: string, auth?: Record<string, string>): Promise<string> {
  const res = await call<{ imageRef: string }>(d.image, 'pullImage', { image: { image }, auth }, 120_000);
  return res.imageRef;
}

async function status(
  d: TestDaemon,
  image: string,
  verbose = false,
): Promise<{ image?: CriImage; info: Record<string, string> }> {
  return call(d.image, 'imageStatus', { image: { image }, verbose });
}

async function list(d: TestDaemon, filter?: string): Promise<CriImage[]> {
  const res = await call<{ images: CriImage[] }>(
    d.image,
    'listImages',
    filter ? { filter: { image: { image: filter } } } : {},
  );
  return res.images;
}

async function remove(d: TestDaemon, image: string): Promise<void> {
  await call(d.image, 'removeImage', { image: { image } });
}

async function imageFs(d: TestDaemon): Promise<FsUsage> {
  const res = await call<{
    imageFilesystems: {
      fsId?: { mountpoint: string };
      usedBytes?: { value: bigint };
      inodesUsed?: { value: bigint };
    }[];
  }>(d.image, 'imageFsInfo', {});
  expect(res.imageFilesystems).toHaveLength(1);
  const f = res.imageFilesystems[0];
  return { bytes: f.usedBytes!.value, inodes: f.inodesUsed!.value, mountpoint: f.fsId!.mountpoint };
}

async function grpcError(p: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error('the call succeeded; an error was expected');
}

/** Entries of a directory (none when it does not exist). */
async function entries(dir: string): Promise<string[]> {
  return fs.readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [];
    throw err;
  });
}

// ---------------------------------------------------------------- fixtures

const tmp = mkdtempSync(path.join(os.tmpdir(), 'capsa-image-service-'));
let images: TestImages;
let reg: TestRegistry;
let authReg: TestRegistry;
const account = { username: 'capsa-puller', password: 'n0t-a-real-secret' };
const layout: Record<'busybox' | 'layers' | 'named' | 'numeric', LayoutImage> = {} as never;
/** Manifest digests as the plain registry holds them. */
const pushed: Record<string, string> = {};

beforeAll(async () => {
  images = await ensureTestImages();
  const named = await withUser(images.busybox.layout, path.join(tmp, 'busybox-named'), 'capsa');
  const numeric = await withUser(images.busybox.layout, path.join(tmp, 'busybox-numeric'), '1000:1000');
  layout.busybox = await readLayout(images.busybox.layout);
  layout.layers = await readLayout(images.layers.layout);
  layout.named = await readLayout(named);
  layout.numeric = await readLayout(numeric);

  reg = await startRegistry();
  pushed.busybox = (await reg.push(images.busybox.layout, 'capsa-test/busybox:latest')).digest;
  pushed.second = (await reg.push(images.busybox.layout, 'capsa-test/busybox:second')).digest;
  pushed.layers = (await reg.push(images.layers.layout, 'capsa-test/layers:latest')).digest;
  pushed.named = (await reg.push(named, 'capsa-test/busybox-named:latest')).digest;
  pushed.numeric = (await reg.push(numeric, 'capsa-test/busybox-numeric:latest')).digest;

  authReg = await startRegistry({ basicAuth: account });
  await authReg.push(images.busybox.layout, 'private/busybox:latest');
}, 600_000);

afterAll(async () => {
  await reg?.stop();
  await authReg?.stop();
  await fs.rm(tmp, { recursive: true, force: true });
});

test('the layouts are what these tests assume', () => {
  // Pushed as OCI without conversion, the registry serves the layout's manifest bytes.
  expect(pushed.busybox).toBe(layout.busybox.manifestDigest);
  expect(pushed.layers).toBe(layout.layers.manifestDigest);
  expect(layout.layers.layers.length).toBeGreaterThan(1);
  // The user variants differ from busybox in their config only.
  expect(layout.named.configJson.config?.User).toBe('capsa');
  expect(layout.numeric.configJson.config?.User).toBe('1000:1000');
  expect(layout.named.layers).toEqual(layout.busybox.layers);
});

// ---------------------------------------------------------------- one daemon through the whole image life cycle

describe('ImageService', () => {
  let d: TestDaemon;
  let host: string;
  let empty: FsUsage;

  beforeAll(async () => {
    host = reg.host;
    // registry.example.test (RFC 2606: never resolves) is reachable only through its mirror.
    d = await startDaemon({ toml: `[registries."registry.example.test"]\nmirrors = ["${reg.url}"]\n` });
  });

  afterAll(async () => {
    await d?.stop();
    await d?.cleanup();
  });

  test('ImageFsInfo of an empty store', async () => {
    empty = await imageFs(d);
    expect(empty.mountpoint).toBe(d.root);
    expect(await list(d)).toEqual([]);
  });

  test('PullImage by tag: image_ref is the image id, the config digest', async () => {
    const ref = await pull(d, `${host}/capsa-test/busybox:latest`);
    expect(ref).toBe(layout.busybox.config.digest);
  });

  test('ImageStatus: tags, digests, size, user and (verbose) the image config', async () => {
    const s = await status(d, `${host}/capsa-test/busybox:latest`, true);
    const img = s.image!;
    expect(img.id).toBe(layout.busybox.config.digest);
    expect(img.repoTags).toEqual([`${host}/capsa-test/busybox:latest`]);
    expect(img.repoDigests).toEqual([`${host}/capsa-test/busybox@${layout.busybox.manifestDigest}`]);
    expect(img.size).toBe(BigInt(contentSize(layout.busybox)));
    // The test busybox image sets no User (it runs as root, uid 0 by the runtime's default):
    // CRI then reports neither uid nor username.
    const want = expectedUser(layout.busybox.configJson.config?.User);
    expect(img.uid?.value).toBe(want.uid);
    expect(img.username).toBe(want.username);
    const info = JSON.parse(s.info.info) as { imageSpec: unknown };
    expect(info.imageSpec).toEqual(layout.busybox.configJson);
    // Without verbose, no info.
    expect((await status(d, `${host}/capsa-test/busybox:latest`)).info).toEqual({});
  });

  test('the image USER becomes username or uid', async () => {
    expect(await pull(d, `${host}/capsa-test/busybox-named`)).toBe(layout.named.config.digest);
    expect(await pull(d, `${host}/capsa-test/busybox-numeric:latest`)).toBe(layout.numeric.config.digest);
    const named = (await status(d, layout.named.config.digest)).image!;
    const wantNamed = expectedUser(layout.named.configJson.config?.User);
    expect(wantNamed).toEqual({ username: 'capsa' });
    expect(named.username).toBe(wantNamed.username);
    expect(named.uid).toBeUndefined();
    const numeric = (await status(d, layout.numeric.config.digest)).image!;
    const wantNumeric = expectedUser(layout.numeric.configJson.config?.User);
    expect(wantNumeric).toEqual({ uid: 1000n, username: '' });
    expect(numeric.uid?.value).toBe(wantNumeric.uid);
    expect(numeric.username).toBe('');
  });

  test('PullImage by digest gives the same image and records the digest', async () => {
    const byDigest = `${host}/capsa-test/layers@${layout.layers.manifestDigest}`;
    expect(await pull(d, byDigest)).toBe(layout.layers.config.digest);
    const img = (await status(d, byDigest)).image!;
    expect(img.id).toBe(layout.layers.config.digest);
    expect(img.repoTags).toEqual([]);
    expect(img.repoDigests).toEqual([byDigest]);
    expect(img.size).toBe(BigInt(contentSize(layout.layers)));
    // Pulling the same content by tag adds the tag to the same image.
    expect(await pull(d, `${host}/capsa-test/layers:latest`)).toBe(layout.layers.config.digest);
    const tagged = (await status(d, byDigest)).image!;
    expect(tagged.repoTags).toEqual([`${host}/capsa-test/layers:latest`]);
    expect(tagged.repoDigests).toEqual([byDigest]);
  });

  test('ListImages: all, and filtered by tag, digest, id and id prefix', async () => {
    const all = await list(d);
    expect(all.map((i) => i.id).sort()).toEqual(
      [layout.busybox, layout.layers, layout.named, layout.numeric].map((l) => l.config.digest).sort(),
    );
    const busybox = all.find((i) => i.id === layout.busybox.config.digest)!;
    expect(busybox.repoTags).toEqual([`${host}/capsa-test/busybox:latest`]);

    for (const ref of [
      `${host}/capsa-test/layers:latest`,
      `${host}/capsa-test/layers@${layout.layers.manifestDigest}`,
      layout.layers.config.digest,
      layout.layers.config.digest.slice(7, 19),
    ]) {
      const hits = await list(d, ref);
      expect(hits.map((i) => i.id)).toEqual([layout.layers.config.digest]);
    }
    expect(await list(d, `${host}/capsa-test/layers:nope`)).toEqual([]);
  });

  test('ImageFsInfo grows after pulls', async () => {
    const now = await imageFs(d);
    const blobs = contentSize(layout.busybox) + contentSize(layout.layers);
    expect(now.bytes - empty.bytes).toBeGreaterThanOrEqual(BigInt(blobs));
    // Unpacked layers count too: each busybox binary, library and applet link is an inode.
    expect(now.inodes - empty.inodes).toBeGreaterThan(50n);
  });

  test('two tags on one image: removing one tag leaves the other', async () => {
    expect(await pull(d, `${host}/capsa-test/busybox:second`)).toBe(layout.busybox.config.digest);
    const both = (await status(d, layout.busybox.config.digest)).image!;
    expect(both.repoTags.sort()).toEqual([`${host}/capsa-test/busybox:latest`, `${host}/capsa-test/busybox:second`]);
    expect((await list(d)).length).toBe(4);

    await remove(d, `${host}/capsa-test/busybox:second`);
    expect((await status(d, `${host}/capsa-test/busybox:second`)).image).toBeUndefined();
    const left = (await status(d, `${host}/capsa-test/busybox:latest`)).image!;
    expect(left.id).toBe(layout.busybox.config.digest);
    expect(left.repoTags).toEqual([`${host}/capsa-test/busybox:latest`]);
    expect(left.repoDigests).toEqual([`${host}/capsa-test/busybox@${layout.busybox.manifestDigest}`]);
  });

  test('RemoveImage by id and by digest', async () => {
    await remove(d, layout.named.config.digest);
    expect((await status(d, layout.named.config.digest)).image).toBeUndefined();
    expect((await status(d, `${host}/capsa-test/busybox-named:latest`)).image).toBeUndefined();

    await remove(d, `${host}/capsa-test/busybox-numeric@${pushed.numeric}`);
    expect((await status(d, layout.numeric.config.digest)).image).toBeUndefined();
    expect((await list(d)).map((i) => i.id).sort()).toEqual(
      [layout.busybox.config.digest, layout.layers.config.digest].sort(),
    );
  });

  test('unknown images: RemoveImage succeeds, ImageStatus answers no image and no error', async () => {
    await remove(d, `${host}/capsa-test/never-pulled:latest`);
    await remove(d, `sha256:${'ab'.repeat(32)}`);
    await remove(d, 'docker.io/library/never-pulled:1.0');
    const s = await status(d, `${host}/capsa-test/never-pulled:latest`, true);
    expect(s.image).toBeUndefined();
    expect(s.info).toEqual({});
    expect((await status(d, `sha256:${'ab'.repeat(32)}`)).image).toBeUndefined();
    expect(await list(d, 'never-pulled')).toEqual([]);
  });

  test('a malformed reference is INVALID_ARGUMENT naming the field and the reference', async () => {
    for (const bad of ['Capsa-Test/UPPER:latest', `${host}/capsa-test/busybox:bad tag`, 'busybox@sha256:xyz']) {
      const calls: [string, () => Promise<unknown>][] = [
        ['image.image', () => pull(d, bad)],
        ['image.image', () => status(d, bad)],
        ['image.image', () => remove(d, bad)],
        ['filter.image.image', () => list(d, bad)],
      ];
      for (const [field, fn] of calls) {
        const err = await grpcError(fn());
        expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
        expect(err.details.startsWith(`${field}: `)).toBe(true);
        expect(err.details).toContain(`"${bad}"`);
      }
    }
    const empty = await grpcError(pull(d, ''));
    expect(empty.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(empty.details).toMatch(/^image\.image: /);
  });

  test('an unknown repository or tag is NOT_FOUND', async () => {
    for (const ref of [`${host}/capsa-test/no-such-repo:latest`, `${host}/capsa-test/busybox:no-such-tag`]) {
      const err = await grpcError(pull(d, ref));
      expect(err.code).toBe(grpc.status.NOT_FOUND);
      expect(err.details).toContain(ref.split(':').slice(0, -1).join(':').replace(/^.*\//, ''));
    }
  });

  test('a registry mirror from the config serves a host that does not exist', async () => {
    const image = 'registry.example.test/capsa-test/busybox:latest';
    const before = reg.log().length;
    expect(await pull(d, image)).toBe(layout.busybox.config.digest);
    // The mirror (our registry) served the manifest for this pull.
    expect(reg.log().slice(before)).toMatch(/GET \/v2\/capsa-test\/busybox\/manifests\/latest/);
    const img = (await status(d, image)).image!;
    expect(img.repoTags.sort()).toEqual([`${host}/capsa-test/busybox:latest`, image].sort());
    expect(img.repoDigests).toContain(`registry.example.test/capsa-test/busybox@${layout.busybox.manifestDigest}`);
    // A repository the mirror lacks: the host itself is tried next (it does not resolve), and the
    // answer is the mirror's NOT_FOUND, not the DNS error.
    const err = await grpcError(pull(d, 'registry.example.test/capsa-test/absent:latest'));
    expect(err.code).toBe(grpc.status.NOT_FOUND);
    expect(err.details).toContain(`not found at ${reg.host}`);
    await remove(d, image);
    expect((await status(d, image)).image).toBeUndefined();
    expect((await status(d, `${host}/capsa-test/busybox:latest`)).image?.id).toBe(layout.busybox.config.digest);
  });

  test('PullImage with AuthConfig against a basic-auth registry', async () => {
    const image = `${authReg.host}/private/busybox:latest`;
    // Without credentials: refused up front, naming the registry and what is missing.
    const denied = await grpcError(pull(d, image));
    expect(denied.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(denied.details).toContain(`${authReg.host} requires authentication and no credentials were given`);
    expect(denied.details).toContain(image);
    // Wrong credentials: the registry's refusal is passed on.
    const wrong = await grpcError(pull(d, image, { username: account.username, password: 'wr0ng-pa55' }));
    expect(wrong.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(wrong.details).toContain(`${authReg.host} refused the credentials`);
    expect(wrong.details).not.toContain('wr0ng-pa55'); // no secret in the status
    expect((await status(d, image)).image).toBeUndefined();

    expect(await pull(d, image, { username: account.username, password: account.password })).toBe(
      layout.busybox.config.digest,
    );
    // The same, as kubelet sends it: a base64 "user:password" auth field and the server address.
    await remove(d, image);
    const auth = Buffer.from(`${account.username}:${account.password}`).toString('base64');
    expect(await pull(d, image, { auth, serverAddress: authReg.host })).toBe(layout.busybox.config.digest);
    expect((await status(d, image)).image?.repoTags).toContain(image);
    await remove(d, image);
  });

  test('removing every image frees all content and layers (GC), and ImageFsInfo shrinks', async () => {
    const full = await imageFs(d);
    for (const img of await list(d)) await remove(d, img.id);
    expect(await list(d)).toEqual([]);
    const after = await imageFs(d);
    expect(after.bytes).toBeLessThan(full.bytes);
    expect(after.inodes).toBeLessThan(full.inodes);
    // Back to the empty store's inodes; bytes too, but for directories that keep blocks they grew.
    expect(after.inodes).toBe(empty.inodes);
    expect(after.bytes).toBeLessThanOrEqual(empty.bytes + 64n * 1024n);
    expect(await entries(path.join(d.root, 'content', 'blobs', 'sha256'))).toEqual([]);
    expect(await entries(path.join(d.root, 'content', 'ingest'))).toEqual([]);
    expect(await entries(path.join(d.root, 'layers'))).toEqual([]);
    expect(await entries(path.join(d.root, 'images')).then((n) => n.filter((f) => f.endsWith('.json')))).toEqual([]);
  });
});

// ---------------------------------------------------------------- restart

describe('ImageService across a daemon restart', () => {
  let d: TestDaemon | undefined;
  afterAll(async () => {
    await d?.stop();
    await d?.cleanup();
  });

  test('images pulled before a restart are listed after it, with the same ids, tags and digests', async () => {
    d = await startDaemon();
    const host = reg.host;
    await pull(d, `${host}/capsa-test/busybox:latest`);
    await pull(d, `${host}/capsa-test/layers@${layout.layers.manifestDigest}`);
    const before = await list(d);
    expect(before).toHaveLength(2);
    const usage = await imageFs(d);
    expect(await d.stop()).toBe(0);

    const dir = d.dir;
    d = await startDaemon({ dir });
    const after = await list(d);
    const byId = (xs: CriImage[]): CriImage[] => [...xs].sort((a, b) => a.id.localeCompare(b.id));
    expect(byId(after)).toEqual(byId(before));
    expect(after.map((i) => i.id).sort()).toEqual([layout.busybox.config.digest, layout.layers.config.digest].sort());
    // Nothing was re-downloaded or collected at start: the store is as it was.
    expect(await imageFs(d)).toEqual(usage);
    // And it is usable: a pull of a present image is a no-op, removal still frees everything.
    expect(await pull(d, `${host}/capsa-test/busybox:latest`)).toBe(layout.busybox.config.digest);
    for (const img of after) await remove(d, img.id);
    expect(await entries(path.join(d.root, 'content', 'blobs', 'sha256'))).toEqual([]);
    expect(await entries(path.join(d.root, 'layers'))).toEqual([]);
    expect(existsSync(d.socket)).toBe(true);
  });
});
