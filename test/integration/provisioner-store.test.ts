// The provisioner's Store against a real docker-registry (test/helpers/
// registry.ts) and small in-test HTTP servers for what a well-behaved
// registry never does (corrupt bytes, stalls, redirects, 5xx). Layers are
// "unpacked" by a stand-in that computes the diff ID from the blob, so
// these tests exercise the store alone.
import { execFileSync } from 'child_process';
import { createHash } from 'crypto';
import { createReadStream, mkdtempSync, promises as fs } from 'fs';
import * as http from 'http';
import * as https from 'https';
import { AddressInfo } from 'net';
import * as os from 'os';
import * as path from 'path';
import { createGunzip } from 'zlib';
import { CapsaError, DeadlineExceededError, NotFoundError } from '../../src/errors';
import { ImageAssembler, UnpackHook } from '../../src/provisioner/store/assemble';
import { RegistryAuthError } from '../../src/provisioner/store/auth';
import { ContentStore, DigestMismatchError } from '../../src/provisioner/store/content-store';
import { sha256Of } from '../../src/provisioner/store/digest';
import { ImageStore } from '../../src/provisioner/store/image-store';
import { openStore } from '../../src/provisioner/store';
import { LayerStore, UnpackedLayer } from '../../src/provisioner/layers';
import { importImages } from '../../src/provisioner/store/import';
import { MediaType } from '../../src/provisioner/store/manifest';
import { Puller } from '../../src/provisioner/store/puller';
import { RegistryClient, RegistryClientOptions } from '../../src/provisioner/store/registry-client';
import { ensureTestImages, startRegistry, TestImages, TestRegistry } from '../helpers/registry';
import { buildTar, compress, MEDIA_TYPES, sha256, TarSpec, TestCompression } from '../helpers/tar-writer';

jest.setTimeout(120_000);

const tmpRoot = mkdtempSync(path.join(os.tmpdir(), 'capsa-store-it-'));
let images: TestImages;
let reg: TestRegistry;
/** Manifest digests as pushed. */
const pushed: Record<string, string> = {};

interface LayoutManifest {
  config: { digest: string; size: number; mediaType: string };
  layers: { digest: string; size: number; mediaType: string }[];
}

async function layoutManifest(layout: string, digest: string): Promise<{ bytes: Buffer; m: LayoutManifest }> {
  const bytes = await fs.readFile(path.join(layout, 'blobs', 'sha256', digest.slice(7)));
  return { bytes, m: JSON.parse(bytes.toString()) as LayoutManifest };
}

beforeAll(async () => {
  images = await ensureTestImages();
  reg = await startRegistry();
  pushed.busybox = (await reg.push(images.busybox.layout, 'capsa-test/busybox:latest')).digest;
  pushed.layers = (await reg.push(images.layers.layout, 'capsa-test/layers:latest')).digest;
  pushed.v2s2 = (await reg.push(images.busybox.layout, 'capsa-test/busybox-v2:latest', { format: 'v2s2' })).digest;
  pushed.pause = (await reg.push(images.busybox.layout, 'pause:3.9')).digest;
  // A multi-platform index in the repository of both images: amd64 → busybox, arm64 → layers.
  await reg.push(images.layers.layout, 'capsa-test/multi:arm64');
  await reg.push(images.busybox.layout, 'capsa-test/multi:amd64');
  const size = async (layout: string, d: string): Promise<number> => (await layoutManifest(layout, d)).bytes.length;
  const index = {
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: [
      {
        mediaType: MediaType.OciManifest,
        digest: images.layers.digest,
        size: await size(images.layers.layout, images.layers.digest),
        platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
      },
      {
        mediaType: MediaType.OciManifest,
        digest: images.layers.digest,
        size: await size(images.layers.layout, images.layers.digest),
        platform: { os: 'unknown', architecture: 'unknown' },
      },
      {
        mediaType: MediaType.OciManifest,
        digest: images.busybox.digest,
        size: await size(images.busybox.layout, images.busybox.digest),
        platform: { os: 'linux', architecture: 'amd64' },
      },
    ],
  };
  const body = Buffer.from(JSON.stringify(index));
  const res = await reg.fetch('/v2/capsa-test/multi/manifests/latest', {
    method: 'PUT',
    headers: { 'Content-Type': MediaType.OciIndex },
    body,
  });
  if (res.status !== 201) throw new Error(`PUT index: ${res.status} ${await res.text()}`);
  pushed.multi = sha256Of(body);
}, 300_000);

afterAll(async () => {
  await reg?.stop();
  await fs.rm(tmpRoot, { recursive: true, force: true });
});

// ---------------------------------------------------------------- a stack of stores

interface Stack {
  root: string;
  content: ContentStore;
  images: ImageStore;
  client: RegistryClient;
  puller: Puller;
  assembler: ImageAssembler;
  unpacked: Set<string>;
  unpackCalls: string[];
  close(): void;
}

/**
 * Computes the diff ID of a gzip or plain layer and records the chain as
 * unpacked. Layers are independent diffs: the assembler may unpack a layer
 * before the one below it.
 */
function fakeUnpacker(unpacked: Set<string>, calls: string[]): UnpackHook {
  return async (layer, blobPath, parent) => {
    const h = createHash('sha256');
    const src = createReadStream(blobPath);
    const stream = layer.mediaType.endsWith('gzip') ? src.pipe(createGunzip()) : src;
    for await (const c of stream) h.update(c as Buffer);
    const diffId = `sha256:${h.digest('hex')}`;
    const chainId = parent === undefined ? diffId : sha256Of(`${parent} ${diffId}`);
    await new Promise((r) => setTimeout(r, 5));
    unpacked.add(chainId);
    calls.push(chainId);
    return { diffId, chainId };
  };
}

let stackN = 0;
async function makeStack(opts: RegistryClientOptions = {}, root?: string): Promise<Stack> {
  const dir = root ?? path.join(tmpRoot, `stack${stackN++}`);
  const content = new ContentStore(dir, { fsync: false });
  await content.init();
  const unpacked = new Set<string>();
  const unpackCalls: string[] = [];
  const imgs = new ImageStore(dir, {
    content,
    layers: {
      deleteLayer: async (c) => void unpacked.delete(c),
      listLayers: async () => [...unpacked],
    },
  });
  await imgs.init();
  const client = new RegistryClient({ retryBaseMs: 20, retryMaxMs: 100, ...opts });
  const assembler = new ImageAssembler({
    content,
    images: imgs,
    unpack: fakeUnpacker(unpacked, unpackCalls),
    hasLayer: async (c) => unpacked.has(c),
  });
  const puller = new Puller({ registry: client, assembler });
  return {
    root: dir,
    content,
    images: imgs,
    client,
    puller,
    assembler,
    unpacked,
    unpackCalls,
    close: () => client.close(),
  };
}

async function catchErr(p: Promise<unknown>): Promise<CapsaError> {
  try {
    await p;
  } catch (e) {
    return e as CapsaError;
  }
  throw new Error('expected a rejection');
}

async function ingestLeftovers(s: Stack): Promise<string[]> {
  return fs.readdir(s.content.ingestDir);
}

// ---------------------------------------------------------------- pulls from the real registry

describe('pull from docker-registry', () => {
  test('by tag: record, blobs, layers in order', async () => {
    const s = await makeStack();
    try {
      const ref = `${reg.host}/capsa-test/layers`;
      const rec = await s.puller.pull(ref);
      const { m } = await layoutManifest(images.layers.layout, images.layers.digest);
      expect(rec.id).toBe(m.config.digest);
      expect(rec.repoTags).toEqual([`${reg.host}/capsa-test/layers:latest`]);
      expect(rec.repoDigests).toEqual([`${reg.host}/capsa-test/layers@${pushed.layers}`]);
      expect(rec.manifestDigest).toBe(pushed.layers);
      expect(rec.layers.map((l) => l.digest)).toEqual(m.layers.map((l) => l.digest));
      expect(rec.layers.map((l) => l.diffId)).toEqual(rec.config.rootfs.diff_ids);
      expect([...s.unpackCalls].sort()).toEqual(rec.layers.map((l) => l.chainId).sort());
      for (const b of [pushed.layers, m.config.digest, ...m.layers.map((l) => l.digest)])
        expect(await s.content.has(b)).toBe(true);
      expect(rec.size).toBe(
        m.config.size + m.layers.reduce((n, l) => n + l.size, 0) + (await s.content.size(pushed.layers))!,
      );
      expect(s.images.resolve(`${reg.host}/capsa-test/layers:latest`)?.id).toBe(rec.id);
      expect(s.images.resolve(rec.id.slice(7, 19))?.id).toBe(rec.id);
      expect(await ingestLeftovers(s)).toEqual([]);
      expect(s.images.pinOwners()).toEqual([]);
    } finally {
      s.close();
    }
  });

  test('by digest, and a Docker schema 2 manifest', async () => {
    const s = await makeStack();
    try {
      const rec = await s.puller.pull(`${reg.host}/capsa-test/busybox@${pushed.busybox}`);
      expect(rec.repoTags).toEqual([]);
      expect(rec.repoDigests).toEqual([`${reg.host}/capsa-test/busybox@${pushed.busybox}`]);
      const v2 = await s.puller.pull(`${reg.host}/capsa-test/busybox-v2:latest`);
      expect(v2.manifestMediaType).toBe(MediaType.DockerManifest);
      expect(v2.id).toBe(rec.id); // same config
      expect(s.images.list()).toHaveLength(1);
      expect(s.images.get(rec.id)?.repoTags).toEqual([`${reg.host}/capsa-test/busybox-v2:latest`]);
      expect(s.images.get(rec.id)?.repoDigests.sort()).toEqual(
        [`${reg.host}/capsa-test/busybox@${pushed.busybox}`, `${reg.host}/capsa-test/busybox-v2@${pushed.v2s2}`].sort(),
      );
      expect(s.unpackCalls).toHaveLength(1); // the layer was unpacked once
    } finally {
      s.close();
    }
  });

  test('a manifest list selects linux/amd64; the repo digest is the index', async () => {
    const s = await makeStack();
    try {
      const rec = await s.puller.pull(`${reg.host}/capsa-test/multi:latest`);
      const { m } = await layoutManifest(images.busybox.layout, images.busybox.digest);
      expect(rec.id).toBe(m.config.digest);
      expect(rec.manifestDigest).toBe(images.busybox.digest);
      expect(rec.repoDigests).toEqual([`${reg.host}/capsa-test/multi@${pushed.multi}`]);
      expect(rec.blobs).toContain(pushed.multi);
      // pull the index again by digest: nothing but the index is fetched
      const before = { ...s.client.stats };
      await s.puller.pull(`${reg.host}/capsa-test/multi@${pushed.multi}`);
      expect(s.client.stats.manifestRequests - before.manifestRequests).toBe(1);
      expect(s.client.stats.blobRequests).toBe(before.blobRequests);
    } finally {
      s.close();
    }
  });

  test('a second pull downloads nothing but the manifest', async () => {
    const s = await makeStack();
    try {
      await s.puller.pull(`${reg.host}/capsa-test/layers:latest`);
      const before = { ...s.client.stats };
      const calls = s.unpackCalls.length;
      await s.puller.pull(`${reg.host}/capsa-test/layers:latest`);
      expect(s.client.stats.manifestRequests - before.manifestRequests).toBe(1);
      expect(s.client.stats.blobRequests).toBe(before.blobRequests);
      expect(s.client.stats.blobBytes).toBe(before.blobBytes);
      expect(s.unpackCalls.length).toBe(calls);
      // busybox's only layer is layers' first layer: pulling it fetches the config only
      await s.puller.pull(`${reg.host}/capsa-test/busybox:latest`);
      expect(s.client.stats.blobRequests - before.blobRequests).toBe(1);
      expect(s.unpackCalls.length).toBe(calls);
    } finally {
      s.close();
    }
  });

  test('concurrent pulls share downloads and unpacks', async () => {
    const s = await makeStack();
    try {
      const recs = await Promise.all([
        s.puller.pull(`${reg.host}/capsa-test/layers:latest`),
        s.puller.pull(`${reg.host}/capsa-test/layers:latest`),
        s.puller.pull(`${reg.host}/capsa-test/layers@${pushed.layers}`),
        s.puller.pull(`${reg.host}/capsa-test/busybox:latest`),
      ]);
      expect(new Set(recs.slice(0, 3).map((r) => r.id)).size).toBe(1);
      const { m } = await layoutManifest(images.layers.layout, images.layers.digest);
      const { m: bm } = await layoutManifest(images.busybox.layout, images.busybox.digest);
      const distinct = new Set([
        m.config.digest,
        ...m.layers.map((l) => l.digest),
        bm.config.digest,
        ...bm.layers.map((l) => l.digest),
      ]);
      expect(s.client.stats.blobRequests).toBe(distinct.size);
      expect(s.unpackCalls.length).toBe(new Set(s.unpackCalls).size);
      expect(s.unpackCalls.length).toBe(m.layers.length);
    } finally {
      s.close();
    }
  });

  test('unknown repositories and tags are NotFound with context', async () => {
    const s = await makeStack();
    try {
      const e1 = await catchErr(s.puller.pull(`${reg.host}/capsa-test/nope:latest`));
      expect(e1).toBeInstanceOf(NotFoundError);
      expect(e1.context).toMatchObject({ stage: 'pull', image: `${reg.host}/capsa-test/nope:latest` });
      const e2 = await catchErr(s.puller.pull(`${reg.host}/capsa-test/busybox:nope`));
      expect(e2.kind).toBe('NotFound');
      const e3 = await catchErr(s.puller.pull('Not A Reference'));
      expect(e3.kind).toBe('InvalidArgument');
      expect(e3.context.field).toBe('image');
    } finally {
      s.close();
    }
  });

  test('GC after remove frees what no image uses, keeps what one still does', async () => {
    const s = await makeStack();
    try {
      const bb = await s.puller.pull(`${reg.host}/capsa-test/busybox:latest`);
      const ly = await s.puller.pull(`${reg.host}/capsa-test/layers:latest`);
      const shared = bb.layers[0];
      expect(ly.layers[0].chainId).toBe(shared.chainId);
      expect(s.images.layerRefCount(shared.chainId)).toBe(2);
      expect((await s.images.gc()).blobs).toEqual([]);

      expect((await s.images.removeImage(`${reg.host}/capsa-test/layers:latest`)).removed).toBe(true);
      const r1 = await s.images.gc();
      expect(r1.layers.sort()).toEqual(
        ly.layers
          .slice(1)
          .map((l) => l.chainId)
          .sort(),
      );
      expect(r1.blobs).toContain(ly.configDigest);
      expect(r1.blobs).not.toContain(shared.digest);
      expect(await s.content.has(shared.digest)).toBe(true);
      expect(s.unpacked.has(shared.chainId)).toBe(true);

      await s.images.removeImage(bb.id);
      await s.images.gc();
      expect(await s.content.list()).toEqual([]);
      expect(s.unpacked.size).toBe(0);

      // after a restart, the derived refcounts are the same
      await s.puller.pull(`${reg.host}/capsa-test/busybox:latest`);
      const again = new ImageStore(s.root, { content: s.content, layers: { deleteLayer: async () => undefined } });
      await again.init();
      expect(again.layerRefCount(shared.chainId)).toBe(1);
      expect((await again.gc()).blobs).toEqual([]);
    } finally {
      s.close();
    }
  });
});

describe('registry auth', () => {
  const account = { username: 'capsa', password: 's3cret' };

  test('basic auth: refused anonymously, accepted from AuthConfig and from a credentials file', async () => {
    const breg = await startRegistry({ basicAuth: account });
    try {
      await breg.push(images.busybox.layout, 'capsa-test/busybox:latest');
      const ref = `${breg.host}/capsa-test/busybox:latest`;
      const s = await makeStack();
      try {
        const e = await catchErr(s.puller.pull(ref));
        expect(e).toBeInstanceOf(RegistryAuthError);
        expect(e.kind).toBe('FailedPrecondition');
        expect(e.context).toMatchObject({ stage: 'pull', image: ref });
        const bad = await catchErr(s.puller.pull(ref, { auth: { username: 'capsa', password: 'wrong' } }));
        expect(bad).toBeInstanceOf(RegistryAuthError);
        const rec = await s.puller.pull(ref, { auth: { ...account } });
        expect(rec.repoTags).toEqual([ref]);
        // auth (base64) form, and a server_address for another registry is ignored
        await s.puller.pull(ref, { auth: { auth: Buffer.from('capsa:s3cret').toString('base64') } });
        expect((await catchErr(s.puller.pull(ref, { auth: { ...account, serverAddress: 'other.io' } }))).kind).toBe(
          'FailedPrecondition',
        );
      } finally {
        s.close();
      }
      const credFile = path.join(tmpRoot, 'config.json');
      await fs.writeFile(
        credFile,
        JSON.stringify({
          auths: { [`http://${breg.host}`]: { auth: Buffer.from('capsa:s3cret').toString('base64') } },
        }),
      );
      const s2 = await makeStack({ credentialsFile: credFile });
      try {
        expect((await s2.puller.pull(ref)).repoTags).toEqual([ref]);
      } finally {
        s2.close();
      }
    } finally {
      await breg.stop();
    }
  });

  test('bearer tokens from the challenge realm, cached per scope; identity tokens', async () => {
    const treg = await startRegistry({ tokenAuth: { ...account } });
    try {
      await treg.push(images.layers.layout, 'capsa-test/layers:latest');
      const ref = `${treg.host}/capsa-test/layers:latest`;
      const s = await makeStack();
      try {
        const anon = await catchErr(s.puller.pull(ref));
        expect(anon).toBeInstanceOf(RegistryAuthError);
        const before = treg.tokenServer!.requests.length;
        await s.puller.pull(ref, { auth: { ...account } });
        const reqs = treg.tokenServer!.requests.slice(before);
        // one token for the whole pull (manifest, config and layers share the scope)
        expect(reqs.filter((r) => r.status === 200)).toHaveLength(1);
        expect(reqs[0].subject).toBe('capsa');
        expect(reqs[0].scopes).toEqual(['repository:capsa-test/layers:pull']);
        // a second pull reuses the cached token
        const n = treg.tokenServer!.requests.length;
        await s.puller.pull(ref, { auth: { ...account } });
        expect(treg.tokenServer!.requests.length).toBe(n);
      } finally {
        s.close();
      }
      const s2 = await makeStack();
      try {
        await s2.puller.pull(ref, { auth: { identityToken: treg.tokenServer!.refreshToken } });
        const last = treg.tokenServer!.requests[treg.tokenServer!.requests.length - 1];
        expect(last.method).toBe('POST');
        expect(last.subject).toBe('refresh-token');
      } finally {
        s2.close();
      }
    } finally {
      await treg.stop();
    }
  });
});

// ---------------------------------------------------------------- mirrors

/** A server answering every request with `status`, counting them. */
async function statusServer(status: number): Promise<{ url: string; hits: string[]; close(): Promise<void> }> {
  const hits: string[] = [];
  const server = http.createServer((req, res) => {
    hits.push(req.url ?? '');
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ errors: [{ code: 'X', message: `status ${status}` }] }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    hits,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

describe('mirrors', () => {
  test('registry.k8s.io/pause:3.9 through a mirror uses /v2/pause/manifests/3.9', async () => {
    const s = await makeStack({ registries: { 'registry.k8s.io': { mirrors: [reg.url] } } });
    try {
      const rec = await s.puller.pull('registry.k8s.io/pause:3.9');
      expect(rec.repoTags).toEqual(['registry.k8s.io/pause:3.9']);
      expect(rec.repoDigests).toEqual([`registry.k8s.io/pause@${pushed.pause}`]);
      expect(s.images.resolve('registry.k8s.io/pause:3.9')?.id).toBe(rec.id);
    } finally {
      s.close();
    }
  });

  test('falls back past a dead mirror, a 404 mirror and a 500 mirror, in order', async () => {
    const notFound = await statusServer(404);
    const broken = await statusServer(500);
    const dead = await statusServer(200);
    await dead.close(); // nothing listens there any more
    const s = await makeStack({
      retries: 1,
      registries: { 'gcr.io': { mirrors: [dead.url, notFound.url, broken.url, reg.url] } },
    });
    try {
      const rec = await s.puller.pull('gcr.io/capsa-test/busybox:latest');
      expect(rec.repoTags).toEqual(['gcr.io/capsa-test/busybox:latest']);
      expect(notFound.hits).toEqual(['/v2/capsa-test/busybox/manifests/latest']);
      expect(broken.hits).toHaveLength(2); // retried once
      // later requests of the same pull go straight to the mirror that answered
      expect(notFound.hits).toHaveLength(1);
    } finally {
      s.close();
      await notFound.close();
      await broken.close();
    }
  });

  test('when every endpoint fails the error names them', async () => {
    const notFound = await statusServer(404);
    const s = await makeStack({ retries: 0, registries: { 'nonexistent.invalid': { mirrors: [notFound.url] } } });
    try {
      const e = await catchErr(s.puller.pull('nonexistent.invalid/x:1'));
      expect(e.kind).toBe('NotFound');
      expect(e.message).toContain('also tried');
      expect(e.context).toMatchObject({ stage: 'pull', image: 'nonexistent.invalid/x:1' });
    } finally {
      s.close();
      await notFound.close();
    }
  });
});

// ---------------------------------------------------------------- a misbehaving registry

type Hook = (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => boolean | Promise<boolean>;

/**
 * Serves one OCI layout as repository `repo` (tag "latest"), like a
 * registry would; `blobHook` / `manifestHook` can take over a response.
 */
async function layoutServer(
  layout: string,
  digest: string,
  hooks: { blob?: Hook; manifest?: Hook } = {},
  tls?: { key: Buffer; cert: Buffer },
): Promise<{ host: string; requests: { url: string; headers: http.IncomingHttpHeaders }[]; close(): Promise<void> }> {
  const requests: { url: string; headers: http.IncomingHttpHeaders }[] = [];
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    requests.push({ url: req.url ?? '', headers: req.headers });
    void (async () => {
      const m = /^\/v2\/([a-z0-9/_.-]+)\/(manifests|blobs)\/([^/]+)$/.exec(req.url ?? '');
      if (req.url === '/v2/') {
        res.writeHead(200);
        res.end('{}');
        return;
      }
      if (!m) {
        res.writeHead(404);
        res.end();
        return;
      }
      const ref = m[3] === 'latest' ? digest : m[3];
      let body: Buffer;
      try {
        body = await fs.readFile(path.join(layout, 'blobs', 'sha256', ref.replace(/^sha256:/, '')));
      } catch {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ errors: [{ code: 'BLOB_UNKNOWN', message: 'unknown' }] }));
        return;
      }
      const hook = m[2] === 'manifests' ? hooks.manifest : hooks.blob;
      if (hook && (await hook(req, res, body))) return;
      res.writeHead(200, {
        'content-type': m[2] === 'manifests' ? MediaType.OciManifest : 'application/octet-stream',
        'content-length': body.length,
      });
      res.end(body);
    })();
  };
  const server = tls ? https.createServer(tls, handler) : http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

describe('a misbehaving registry', () => {
  test('a corrupted layer fails the pull with a digest mismatch; the bytes are discarded', async () => {
    const { m } = await layoutManifest(images.busybox.layout, images.busybox.digest);
    const layer = m.layers[0].digest;
    const srv = await layoutServer(images.busybox.layout, images.busybox.digest, {
      blob: (req, res, body) => {
        if (!req.url?.endsWith(layer)) return false;
        const bad = Buffer.from(body);
        bad[bad.length >> 1] ^= 0xff;
        res.writeHead(200, { 'content-length': bad.length });
        res.end(bad);
        return true;
      },
    });
    const s = await makeStack();
    try {
      const e = await catchErr(s.puller.pull(`${srv.host}/x/busybox:latest`));
      expect(e).toBeInstanceOf(DigestMismatchError);
      expect(e.message).toContain(layer);
      expect(e.context).toMatchObject({ stage: 'pull', image: `${srv.host}/x/busybox:latest` });
      expect(await s.content.has(layer)).toBe(false);
      expect(await ingestLeftovers(s)).toEqual([]);
      expect(s.images.list()).toEqual([]);
      expect(s.unpackCalls).toEqual([]);
    } finally {
      s.close();
      await srv.close();
    }
  });

  test('a manifest whose bytes do not match the requested digest is refused', async () => {
    const srv = await layoutServer(images.busybox.layout, images.busybox.digest, {
      manifest: (_req, res, body) => {
        const bad = Buffer.from(body.toString().replace('"schemaVersion":2', '"schemaVersion": 2'));
        res.writeHead(200, { 'content-type': MediaType.OciManifest });
        res.end(bad);
        return true;
      },
    });
    const s = await makeStack();
    try {
      const e = await catchErr(s.puller.pull(`${srv.host}/x/busybox@${images.busybox.digest}`));
      expect(e).toBeInstanceOf(DigestMismatchError);
      expect(await s.content.has(images.busybox.digest)).toBe(false);
    } finally {
      s.close();
      await srv.close();
    }
  });

  test('a manifest over the size cap is refused', async () => {
    const srv = await layoutServer(images.busybox.layout, images.busybox.digest, {
      manifest: (_req, res) => {
        res.writeHead(200, { 'content-type': MediaType.OciManifest });
        res.end(Buffer.alloc(5 * 1024 * 1024, 0x20));
        return true;
      },
    });
    const s = await makeStack();
    try {
      const e = await catchErr(s.puller.pull(`${srv.host}/x/busybox:latest`));
      expect(e.kind).toBe('ResourceExhausted');
      expect(e.message).toMatch(/limit/);
    } finally {
      s.close();
      await srv.close();
    }
  });

  test('a stalled download fails with DeadlineExceeded after retries', async () => {
    const { m } = await layoutManifest(images.busybox.layout, images.busybox.digest);
    const layer = m.layers[0].digest;
    let hits = 0;
    const srv = await layoutServer(images.busybox.layout, images.busybox.digest, {
      blob: (req, res, body) => {
        if (!req.url?.endsWith(layer)) return false;
        hits++;
        res.writeHead(200, { 'content-length': body.length });
        res.write(body.subarray(0, body.length >> 1)); // ...and never the rest
        return true;
      },
    });
    const s = await makeStack({ stallTimeoutMs: 300, retries: 1 });
    try {
      const t0 = Date.now();
      const e = await catchErr(s.puller.pull(`${srv.host}/x/busybox:latest`));
      expect(e).toBeInstanceOf(DeadlineExceededError);
      expect(e.message).toMatch(/stalled/);
      expect(e.context).toMatchObject({ stage: 'pull' });
      expect(hits).toBe(2);
      expect(Date.now() - t0).toBeLessThan(10_000);
      expect(await ingestLeftovers(s)).toEqual([]);
    } finally {
      s.close();
      await srv.close();
    }
  });

  test('an interrupted download resumes with a Range request; 5xx is retried', async () => {
    const { m } = await layoutManifest(images.layers.layout, images.layers.digest);
    const layer = m.layers[0].digest;
    let first = true;
    let fails = 1;
    const ranges: string[] = [];
    const srv = await layoutServer(images.layers.layout, images.layers.digest, {
      manifest: (_req, res) => {
        if (fails-- > 0) {
          res.writeHead(503);
          res.end();
          return true;
        }
        return false;
      },
      blob: (req, res, body) => {
        if (!req.url?.endsWith(layer)) return false;
        if (first) {
          first = false;
          res.writeHead(200, { 'content-length': body.length });
          res.write(body.subarray(0, 1000), () => res.destroy());
          return true;
        }
        const r = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
        if (r) {
          ranges.push(req.headers.range!);
          const start = Number(r[1]);
          res.writeHead(206, {
            'content-range': `bytes ${start}-${body.length - 1}/${body.length}`,
            'content-length': body.length - start,
          });
          res.end(body.subarray(start));
          return true;
        }
        return false;
      },
    });
    const s = await makeStack({ retries: 2 });
    try {
      const rec = await s.puller.pull(`${srv.host}/x/layers:latest`);
      expect(rec.layers[0].digest).toBe(layer);
      expect(ranges).toEqual(['bytes=1000-']);
    } finally {
      s.close();
      await srv.close();
    }
  });

  test('blob redirects are followed; Authorization is dropped on a cross-host hop', async () => {
    const { m } = await layoutManifest(images.busybox.layout, images.busybox.digest);
    const seen: (string | undefined)[] = [];
    const cdn = http.createServer((req, res) => {
      seen.push(req.headers.authorization);
      void fs.readFile(path.join(images.busybox.layout, 'blobs', 'sha256', path.basename(req.url ?? ''))).then(
        (b) => {
          res.writeHead(200, { 'content-length': b.length });
          res.end(b);
        },
        () => {
          res.writeHead(404);
          res.end();
        },
      );
    });
    await new Promise<void>((r) => cdn.listen(0, '127.0.0.1', r));
    const cdnPort = (cdn.address() as AddressInfo).port;
    const srv = await layoutServer(images.busybox.layout, images.busybox.digest, {
      blob: (req, res) => {
        const d = (req.url ?? '').split('/').pop()!;
        res.writeHead(307, { location: `http://localhost:${cdnPort}/cdn/${d.slice(7)}` });
        res.end();
        return true;
      },
    });
    const s = await makeStack();
    try {
      await s.puller.pull(`${srv.host}/x/busybox:latest`, { auth: { registryToken: 'secret-token' } });
      expect(srv.requests.every((r) => r.headers.authorization === 'Bearer secret-token')).toBe(true);
      expect(seen).toHaveLength(1 + m.layers.length);
      expect(seen.every((a) => a === undefined)).toBe(true);
    } finally {
      s.close();
      await srv.close();
      await new Promise<void>((r) => cdn.close(() => r()));
    }
  });

  test('an aborted pull stops and leaves no temp files or pins', async () => {
    const srv = await layoutServer(images.busybox.layout, images.busybox.digest, {
      blob: (_req, res, body) => {
        res.writeHead(200, { 'content-length': body.length });
        res.write(body.subarray(0, 10));
        return true;
      },
    });
    const s = await makeStack({ stallTimeoutMs: 60_000 });
    try {
      const ac = new AbortController();
      const p = s.puller.pull(`${srv.host}/x/busybox:latest`, { signal: ac.signal });
      setTimeout(() => ac.abort(new DeadlineExceededError('pull cancelled by test')), 200);
      const e = await catchErr(p);
      expect(e.message).toContain('cancelled by test');
      await new Promise((r) => setTimeout(r, 50));
      expect(await ingestLeftovers(s)).toEqual([]);
      expect(s.images.pinOwners()).toEqual([]);
    } finally {
      s.close();
      await srv.close();
    }
  });
});

// ---------------------------------------------------------------- TLS

describe('TLS', () => {
  let ca: string;
  let key: Buffer;
  let cert: Buffer;
  beforeAll(() => {
    const dir = path.join(tmpRoot, 'tls');
    execFileSync('mkdir', ['-p', dir]);
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        ...ec,
        '-days',
        '2',
        '-subj',
        '/CN=capsa-test-ca',
        '-keyout',
        `${dir}/ca.key`,
        '-out',
        `${dir}/ca.crt`,
      ],
      { stdio: 'ignore' },
    );
    execFileSync(
      'openssl',
      ['req', ...ec, '-subj', '/CN=127.0.0.1', '-keyout', `${dir}/srv.key`, '-out', `${dir}/srv.csr`],
      { stdio: 'ignore' },
    );
    execFileSync('sh', ['-c', `printf 'subjectAltName=IP:127.0.0.1\\n' > ${dir}/ext`]);
    execFileSync(
      'openssl',
      [
        'x509',
        '-req',
        '-in',
        `${dir}/srv.csr`,
        '-CA',
        `${dir}/ca.crt`,
        '-CAkey',
        `${dir}/ca.key`,
        '-CAcreateserial',
        '-days',
        '2',
        '-extfile',
        `${dir}/ext`,
        '-out',
        `${dir}/srv.crt`,
      ],
      { stdio: 'ignore' },
    );
    ca = `${dir}/ca.crt`;
    key = execFileSync('cat', [`${dir}/srv.key`]);
    cert = execFileSync('cat', [`${dir}/srv.crt`]);
  });

  test('a registry CA file is trusted; without it the certificate is refused; insecure skips verification', async () => {
    const srv = await layoutServer(images.busybox.layout, images.busybox.digest, {}, { key, cert });
    try {
      const refused = await makeStack({ retries: 0 });
      try {
        const e = await catchErr(refused.puller.pull(`${srv.host}/x/busybox:latest`));
        expect(e.kind).toBe('Unavailable');
        expect(e.message).toMatch(/certificate/);
      } finally {
        refused.close();
      }
      const trusted = await makeStack({ registries: { [srv.host]: { ca_file: ca } } });
      try {
        expect((await trusted.puller.pull(`${srv.host}/x/busybox:latest`)).repoTags).toEqual([
          `${srv.host}/x/busybox:latest`,
        ]);
      } finally {
        trusted.close();
      }
      const insecure = await makeStack({ registries: { [srv.host]: { insecure: true } } });
      try {
        await insecure.puller.pull(`${srv.host}/x/busybox:latest`);
      } finally {
        insecure.close();
      }
    } finally {
      await srv.close();
    }
  });
});

// ---------------------------------------------------------------- import

describe('import', () => {
  test('an OCI layout directory, and the same layout as a tar', async () => {
    const s = await makeStack();
    try {
      const progress: string[] = [];
      const [rec] = await importImages(images.layers.layout, {
        assembler: s.assembler,
        baseName: 'capsa-test/layers',
        onProgress: (p) => progress.push(p.stage),
      });
      const { m } = await layoutManifest(images.layers.layout, images.layers.digest);
      expect(rec.id).toBe(m.config.digest);
      expect(rec.repoTags).toEqual(['docker.io/capsa-test/layers:latest']);
      expect(rec.repoDigests).toEqual([`docker.io/capsa-test/layers@${images.layers.digest}`]);
      expect(s.unpackCalls).toHaveLength(m.layers.length);
      expect(progress).toContain('blob');
      expect(progress).toContain('unpack');
      expect(progress[progress.length - 1]).toBe('image');

      const tar = path.join(tmpRoot, 'busybox-oci.tar');
      execFileSync('tar', ['-C', images.busybox.layout, '-cf', tar, '.']);
      const s2 = await makeStack();
      try {
        const [r2] = await importImages(tar, { assembler: s2.assembler });
        expect(r2.repoTags).toEqual([]); // a bare "latest" ref name and no base name
        expect(r2.layers).toHaveLength(1);
        const gz = `${tar}.gz`;
        execFileSync('sh', ['-c', `gzip -c '${tar}' > '${gz}'`]);
        const [r3] = await importImages(gz, { assembler: s2.assembler, baseName: 'registry.k8s.io/busybox' });
        expect(r3.id).toBe(r2.id);
        expect(s2.images.get(r2.id)?.repoTags).toEqual(['registry.k8s.io/busybox:latest']);
        expect(await fs.readdir(s2.content.ingestDir)).toEqual([]);
      } finally {
        s2.close();
      }
    } finally {
      s.close();
    }
  });

  test('a docker-archive tar (docker save format)', async () => {
    const { m } = await layoutManifest(images.layers.layout, images.layers.digest);
    const dir = path.join(tmpRoot, 'docker-save');
    await fs.mkdir(dir, { recursive: true });
    const blob = (d: string): string => path.join(images.layers.layout, 'blobs', 'sha256', d.slice(7));
    await fs.copyFile(blob(m.config.digest), path.join(dir, `${m.config.digest.slice(7)}.json`));
    const layerNames: string[] = [];
    for (const [i, l] of m.layers.entries()) {
      await fs.mkdir(path.join(dir, `l${i}`));
      execFileSync('sh', ['-c', `gzip -dc '${blob(l.digest)}' > '${path.join(dir, `l${i}`, 'layer.tar')}'`]);
      layerNames.push(`l${i}/layer.tar`);
    }
    // docker save links a layer listed twice; here a symlink stands in for the first layer again
    await fs.mkdir(path.join(dir, 'dup'));
    await fs.symlink('../l0/layer.tar', path.join(dir, 'dup', 'layer.tar'));
    await fs.writeFile(
      path.join(dir, 'manifest.json'),
      JSON.stringify([
        {
          Config: `${m.config.digest.slice(7)}.json`,
          RepoTags: ['capsa-test/saved:1', 'example.com/saved:2'],
          Layers: layerNames,
        },
      ]),
    );
    await fs.writeFile(path.join(dir, 'repositories'), '{}');
    const tar = path.join(tmpRoot, 'docker-save.tar');
    execFileSync('tar', ['-C', dir, '-cf', tar, '.']);
    const s = await makeStack();
    try {
      const [rec] = await importImages(tar, { assembler: s.assembler });
      expect(rec.id).toBe(m.config.digest);
      expect(rec.repoTags).toEqual(['docker.io/capsa-test/saved:1', 'example.com/saved:2']);
      expect(rec.repoDigests).toEqual([]);
      expect(rec.manifestMediaType).toBe(MediaType.DockerManifest);
      expect(rec.layers.map((l) => l.mediaType)).toEqual(m.layers.map(() => MediaType.DockerLayerTar));
      expect(rec.layers.map((l) => l.digest)).toEqual(rec.config.rootfs.diff_ids);
      for (const l of rec.layers) expect(await s.content.has(l.digest)).toBe(true);
      expect(s.images.resolve('capsa-test/saved:1')?.id).toBe(rec.id);
      // GC keeps everything the imported image holds
      expect((await s.images.gc()).blobs).toEqual([]);
    } finally {
      s.close();
    }
  });

  test('garbage and missing blobs fail cleanly', async () => {
    const s = await makeStack();
    try {
      const junk = path.join(tmpRoot, 'junk.bin');
      await fs.writeFile(junk, Buffer.alloc(2048, 3));
      expect((await catchErr(importImages(junk, { assembler: s.assembler }))).kind).toBe('InvalidArgument');
      expect((await catchErr(importImages(path.join(tmpRoot, 'absent.tar'), { assembler: s.assembler }))).kind).toBe(
        'NotFound',
      );
      const broken = path.join(tmpRoot, 'broken-layout');
      execFileSync('cp', ['-r', images.busybox.layout, broken]);
      const { m } = await layoutManifest(broken, images.busybox.digest);
      await fs.rm(path.join(broken, 'blobs', 'sha256', m.layers[0].digest.slice(7)));
      const e = await catchErr(importImages(broken, { assembler: s.assembler }));
      expect(e.kind).toBe('NotFound');
      expect(s.images.list()).toEqual([]);
      // a tampered blob is a digest mismatch
      const tampered = path.join(tmpRoot, 'tampered-layout');
      execFileSync('cp', ['-r', images.busybox.layout, tampered]);
      // (the config is already stored from the previous attempt: tamper with the layer, which is not)
      expect(await s.content.has(m.config.digest)).toBe(true);
      await fs.appendFile(path.join(tampered, 'blobs', 'sha256', m.layers[0].digest.slice(7)), ' ');
      expect(await catchErr(importImages(tampered, { assembler: s.assembler }))).toBeInstanceOf(DigestMismatchError);
      expect(await fs.readdir(s.content.ingestDir)).toEqual([]);
    } finally {
      s.close();
    }
  });
});

describe('openStore', () => {
  test('pull, lookup, remove with GC, reopen', async () => {
    const root = path.join(tmpRoot, 'opened');
    const unpacked = new Set<string>();
    const calls: string[] = [];
    const layers = {
      unpack: fakeUnpacker(unpacked, calls),
      has: async (c: string) => unpacked.has(c),
      deleteLayer: async (c: string) => void unpacked.delete(c),
      listLayers: async () => [...unpacked],
    };
    const store = await openStore({
      root,
      fsync: true,
      registry: { registries: { 'registry.k8s.io': { mirrors: [reg.url], insecure: false } }, credentialsFile: '' },
      stallTimeoutMs: 10_000,
      layers,
    });
    try {
      const rec = await store.pull('registry.k8s.io/pause:3.9');
      expect(store.images.resolve('registry.k8s.io/pause:3.9')?.id).toBe(rec.id);
      const again = await openStore({ root, layers });
      expect(again.images.list().map((r) => r.id)).toEqual([rec.id]);
      again.close();
      const r = await store.removeImage('registry.k8s.io/pause:3.9');
      expect(r.removed).toBe(true);
      expect(r.gc?.layers).toEqual(rec.layers.map((l) => l.chainId));
      expect(await store.content.list()).toEqual([]);
      expect(await store.removeImage('registry.k8s.io/pause:3.9')).toEqual({ removed: false });
    } finally {
      store.close();
    }
  });
});

describe('with the real layer store', () => {
  test('pull unpacks every layer once; GC deletes the unpacked layers', async () => {
    const root = path.join(tmpRoot, 'real-layers');
    const ls = new LayerStore({ root, sync: false });
    await ls.init();
    const store = await openStore({
      root,
      fsync: false,
      registry: { registries: { 'registry.k8s.io': { mirrors: [reg.url] } } },
      layers: {
        unpack: async (layer, blobPath, parentChainId, signal, diffIdExpected) => {
          const r = await ls.unpackLayer({
            blobPath,
            mediaType: layer.mediaType,
            parentChainId,
            signal,
            diffIdExpected,
          });
          return { diffId: r.diffId, chainId: r.chainId };
        },
        has: (c) => ls.has(c),
        deleteLayer: async (c) => void (await ls.deleteLayer(c)),
        listLayers: () => ls.list(),
      },
    });
    try {
      await reg.push(images.layers.layout, 'capsa-test/layers:real');
      const rec = await store.pull(`${reg.host}/capsa-test/layers:real`);
      expect((await ls.list()).sort()).toEqual(rec.layers.map((l) => l.chainId).sort());
      const top = ls.layerPath(rec.layers[rec.layers.length - 1].chainId);
      expect(await fs.readdir(top)).toContain('layers');
      const bb = await store.pull(`${reg.host}/capsa-test/busybox:latest`);
      expect(bb.layers[0].chainId).toBe(rec.layers[0].chainId);
      await store.removeImage(rec.id);
      expect(await ls.list()).toEqual([bb.layers[0].chainId]);
      await store.removeImage(bb.id);
      expect(await ls.list()).toEqual([]);
    } finally {
      store.close();
      await ls.close();
    }
  });
});

// ---------------------------------------------------------------- layers unpacked while they download

/**
 * A new OCI layout of `layers` (tar entries + compression) and a minimal
 * config; tag "latest". `diffIdOf` puts another tar's diff ID in the config.
 */
async function makeLayout(
  dir: string,
  layers: { entries: TarSpec[]; how: TestCompression; diffIdOf?: Buffer }[],
): Promise<{ layout: string; digest: string; layers: { digest: string; tar: Buffer; blob: Buffer }[] }> {
  await fs.mkdir(path.join(dir, 'blobs', 'sha256'), { recursive: true });
  const put = async (data: Buffer, mediaType: string): Promise<{ mediaType: string; digest: string; size: number }> => {
    const digest = sha256(data);
    await fs.writeFile(path.join(dir, 'blobs', 'sha256', digest.slice(7)), data);
    return { mediaType, digest, size: data.length };
  };
  const out: { digest: string; tar: Buffer; blob: Buffer }[] = [];
  const descs = [];
  const diffIds = [];
  for (const l of layers) {
    const tar = buildTar(l.entries);
    const blob = compress(tar, l.how);
    const d = await put(blob, MEDIA_TYPES[l.how]);
    descs.push(d);
    diffIds.push(sha256(l.diffIdOf ?? tar));
    out.push({ digest: d.digest, tar, blob });
  }
  const config = { architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: diffIds } };
  const cfg = await put(Buffer.from(JSON.stringify(config)), MediaType.OciConfig);
  const manifest = { schemaVersion: 2, mediaType: MediaType.OciManifest, config: cfg, layers: descs };
  const md = await put(Buffer.from(JSON.stringify(manifest)), MediaType.OciManifest);
  await fs.writeFile(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await fs.writeFile(
    path.join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{ ...md, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }],
    }),
  );
  return { layout: dir, digest: md.digest, layers: out };
}

interface StreamingStack {
  root: string;
  store: Awaited<ReturnType<typeof openStore>>;
  layers: LayerStore;
  /** What the layer store answered, per chain ID. */
  unpacked: Map<string, UnpackedLayer>;
  /** Leftover temp dirs of the layer store and the content store. */
  leftovers(): Promise<string[]>;
  close(): Promise<void>;
}

/** The store wired to the real layer store as the daemon wires it: layers unpack while they download. */
async function streamingStack(
  name: string,
  opts: { stallTimeoutMs?: number; retries?: number } = {},
): Promise<StreamingStack> {
  const root = path.join(tmpRoot, name);
  // a worker for each of the 3 downloads at once: every layer can stream
  const ls = new LayerStore({ root, sync: false, workers: 3 });
  await ls.init();
  const unpacked = new Map<string, UnpackedLayer>();
  const store = await openStore({
    root,
    fsync: false,
    stallTimeoutMs: opts.stallTimeoutMs,
    retries: opts.retries,
    registry: {},
    layers: {
      unpack: async (layer, blobPath, parentChainId, signal, diffIdExpected, o) => {
        const r = await ls.unpackLayer({
          blobPath,
          mediaType: layer.mediaType,
          parentChainId,
          signal,
          diffIdExpected,
          stream: o?.stream,
        });
        unpacked.set(r.chainId, r);
        return { diffId: r.diffId, chainId: r.chainId };
      },
      streams: true,
      has: (c) => ls.has(c),
      deleteLayer: async (c) => void (await ls.deleteLayer(c)),
      listLayers: () => ls.list(),
    },
  });
  return {
    root,
    store,
    layers: ls,
    unpacked,
    leftovers: async () => {
      await ls.idle();
      const tmp = (await fs.readdir(ls.dir)).filter((n) => n.startsWith('.tmp-'));
      return [...tmp, ...(await fs.readdir(store.content.ingestDir))];
    },
    close: async () => {
      store.close();
      await ls.close();
    },
  };
}

describe('layers unpacked while they download', () => {
  const file = (name: string, data: string | Buffer): TarSpec => ({ name, data, mode: 0o644 });
  // big enough that a layer's bytes come in many chunks
  const bulk = (seed: number): Buffer => {
    const b = Buffer.alloc(3 * 1024 * 1024);
    for (let i = 0; i < b.length; i += 4) b.writeUInt32LE((i * 2654435761 + seed) >>> 0, i);
    return b;
  };

  test('gzip, zstd and plain layers unpack from their bytes as they come; same trees as their blobs', async () => {
    const img = await makeLayout(path.join(tmpRoot, 'stream-ok-layout'), [
      { entries: [{ name: 'a', type: 'dir', mode: 0o755 }, file('a/gz', bulk(1))], how: 'gzip' },
      { entries: [file('zst', bulk(2)), { name: 'a/link', type: 'symlink', linkname: 'gz' }], how: 'zstd' },
      { entries: [file('plain', 'hello\n'), file('.wh.zst', '')], how: 'none' },
    ]);
    const srv = await layoutServer(img.layout, img.digest);
    const s = await streamingStack('stream-ok');
    try {
      const rec = await s.store.pull(`${srv.host}/x/streamed:latest`);
      expect(rec.layers.map((l) => l.digest)).toEqual(img.layers.map((l) => l.digest));
      for (const l of rec.layers) {
        expect(s.unpacked.get(l.chainId)).toMatchObject({ diffId: l.diffId, streamed: true, cached: false });
      }
      const [l0, l1, l2] = rec.layers.map((l) => s.layers.layerPath(l.chainId));
      expect((await fs.readFile(path.join(l0, 'a/gz'))).equals(bulk(1))).toBe(true);
      expect((await fs.readFile(path.join(l1, 'zst'))).equals(bulk(2))).toBe(true);
      expect(await fs.readlink(path.join(l1, 'a/link'))).toBe('gz');
      expect(await fs.readFile(path.join(l2, 'plain'), 'utf8')).toBe('hello\n');
      expect((await fs.lstat(path.join(l2, 'zst'))).isCharacterDevice()).toBe(true); // the whiteout
      for (const l of img.layers) expect(await s.store.content.has(l.digest)).toBe(true);
      expect(await s.leftovers()).toEqual([]);
      expect(s.store.images.pinOwners()).toEqual([]);
    } finally {
      await s.close();
      await srv.close();
    }
  });

  test('a digest mismatch on a streamed layer leaves neither blob nor layer', async () => {
    // The registry serves a plain tar with one byte of a file's data flipped: a valid
    // layer of the same size, whose diff ID the config even lists (an attacker's own
    // config), so only the blob's digest, checked once every byte is in, tells.
    const entries = [file('data', bulk(3))];
    const tar = buildTar(entries);
    const flip = 512 + 1000; // inside the file's data
    const served = Buffer.from(tar);
    served[flip] ^= 0xff;
    const img = await makeLayout(path.join(tmpRoot, 'stream-bad-layout'), [{ entries, how: 'none', diffIdOf: served }]);
    const layer = img.layers[0];
    const srv = await layoutServer(img.layout, img.digest, {
      blob: (req, res) => {
        if (!req.url?.endsWith(layer.digest)) return false;
        res.writeHead(200, { 'content-length': served.length });
        res.end(served);
        return true;
      },
    });
    const s = await streamingStack('stream-bad');
    try {
      const e = await catchErr(s.store.pull(`${srv.host}/x/bad:latest`));
      expect(e).toBeInstanceOf(DigestMismatchError);
      expect(e.message).toContain(layer.digest);
      expect(await s.store.content.has(layer.digest)).toBe(false);
      expect(await s.layers.list()).toEqual([]);
      expect(s.unpacked.size).toBe(0);
      expect(await s.leftovers()).toEqual([]);
      expect(s.store.images.list()).toEqual([]);
    } finally {
      await s.close();
      await srv.close();
    }
  });

  test('a hostile streamed layer fails the pull; nothing is left and nothing lands outside', async () => {
    const outside = path.join(tmpRoot, `stream-escape-${process.pid}`);
    const img = await makeLayout(path.join(tmpRoot, 'stream-hostile-layout'), [
      { entries: [file('ok', bulk(4)), file(`../../../../../../../..${outside}`, 'owned')], how: 'gzip' },
    ]);
    const srv = await layoutServer(img.layout, img.digest);
    const s = await streamingStack('stream-hostile');
    try {
      const e = await catchErr(s.store.pull(`${srv.host}/x/hostile:latest`));
      expect(e.kind).toBe('InvalidArgument');
      expect(e.message).toMatch(/escapes/);
      expect(await s.layers.list()).toEqual([]);
      expect(await s.leftovers()).toEqual([]);
      await expect(fs.access(outside)).rejects.toThrow();
    } finally {
      await s.close();
      await srv.close();
    }
  });

  test('an aborted pull mid-stream leaves no temp dir, blob or layer', async () => {
    const img = await makeLayout(path.join(tmpRoot, 'stream-abort-layout'), [
      { entries: [file('data', bulk(5))], how: 'none' },
    ]);
    const layer = img.layers[0];
    let sent!: () => void;
    const halfSent = new Promise<void>((r) => (sent = r));
    const srv = await layoutServer(img.layout, img.digest, {
      blob: (req, res, body) => {
        if (!req.url?.endsWith(layer.digest)) return false;
        res.writeHead(200, { 'content-length': body.length });
        res.write(body.subarray(0, body.length >> 1), () => sent()); // ...and never the rest
        return true;
      },
    });
    const s = await streamingStack('stream-abort', { stallTimeoutMs: 60_000 });
    try {
      const ac = new AbortController();
      const p = s.store.pull(`${srv.host}/x/abort:latest`, { signal: ac.signal });
      await halfSent;
      // wait until the layer is being unpacked from the bytes that came
      while (!(await fs.readdir(s.layers.dir)).some((n) => n.startsWith('.tmp-')))
        await new Promise((r) => setTimeout(r, 10));
      ac.abort(new DeadlineExceededError('pull cancelled by test'));
      const e = await catchErr(p);
      expect(e.message).toContain('cancelled by test');
      expect(await s.leftovers()).toEqual([]);
      expect(await s.store.content.has(layer.digest)).toBe(false);
      expect(await s.layers.list()).toEqual([]);
      expect(s.store.images.pinOwners()).toEqual([]);
    } finally {
      await s.close();
      await srv.close();
    }
  });

  test('a download that starts over (the server ignored Range) unpacks from the stored blob', async () => {
    const img = await makeLayout(path.join(tmpRoot, 'stream-restart-layout'), [
      { entries: [file('data', bulk(6))], how: 'gzip' },
    ]);
    const layer = img.layers[0];
    let first = true;
    const srv = await layoutServer(img.layout, img.digest, {
      blob: (req, res, body) => {
        if (!req.url?.endsWith(layer.digest) || !first) return false; // later: the whole blob, Range or not
        first = false;
        res.writeHead(200, { 'content-length': body.length });
        res.write(body.subarray(0, body.length >> 1), () => res.destroy());
        return true;
      },
    });
    const s = await streamingStack('stream-restart', { retries: 2 });
    try {
      const rec = await s.store.pull(`${srv.host}/x/restart:latest`);
      expect(srv.requests.filter((r) => r.url.endsWith(layer.digest)).map((r) => r.headers.range)).toEqual([
        undefined,
        expect.stringMatching(/^bytes=\d+-$/),
      ]);
      expect(s.unpacked.get(rec.layers[0].chainId)).toMatchObject({ streamed: false, cached: false });
      const top = s.layers.layerPath(rec.layers[0].chainId);
      expect((await fs.readFile(path.join(top, 'data'))).equals(bulk(6))).toBe(true);
      expect(await s.leftovers()).toEqual([]);
    } finally {
      await s.close();
      await srv.close();
    }
  });

  test('concurrent pulls of one image share its downloads and unpacks', async () => {
    const img = await makeLayout(path.join(tmpRoot, 'stream-shared-layout'), [
      { entries: [file('one', bulk(7))], how: 'gzip' },
      { entries: [file('two', bulk(8))], how: 'gzip' },
    ]);
    const srv = await layoutServer(img.layout, img.digest);
    const s = await streamingStack('stream-shared');
    try {
      const recs = await Promise.all([1, 2, 3].map(() => s.store.pull(`${srv.host}/x/shared:latest`)));
      expect(new Set(recs.map((r) => r.id)).size).toBe(1);
      for (const l of img.layers) expect(srv.requests.filter((r) => r.url.endsWith(l.digest))).toHaveLength(1);
      expect((await s.layers.list()).sort()).toEqual(recs[0].layers.map((l) => l.chainId).sort());
      expect(await s.leftovers()).toEqual([]);
    } finally {
      await s.close();
      await srv.close();
    }
  });
});
