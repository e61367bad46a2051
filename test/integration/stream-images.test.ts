// StreamImages through the daemon's socket: a store of more images than one
// message holds, imported offline with `capsa image import` from an OCI
// layout made here (busybox's layers under 230 distinct configs), then
// streamed and compared with ListImages. Expected ids come from the layout.
import * as grpc from '@grpc/grpc-js';
import { execFile } from 'child_process';
import { createHash } from 'crypto';
import { mkdtempSync, promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { promisify } from 'util';
import { StreamImagesRequest, StreamImagesResponse } from '../../src/gen/runtime/v1/api';
import { CLI, call, startDaemon, TestDaemon } from '../helpers/daemon';
import { slow } from '../helpers/slowdown';
import { ensureTestImages } from '../helpers/registry';

jest.setTimeout(180_000);

const execFileP = promisify(execFile);

/** More than one message's worth (the daemon sends 100 per message), not a multiple of it. */
const COUNT = 230;

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

const sha256 = (b: Buffer): string => 'sha256:' + createHash('sha256').update(b).digest('hex');

/**
 * An OCI layout with `count` images sharing `src`'s layers, each with its own
 * config (a label), tagged docker.io/capsa-stream/img:<i>. Returns the config
 * digests (the image ids) by tag.
 */
async function manyImages(src: string, dest: string, count: number): Promise<Map<string, string>> {
  await fs.mkdir(path.join(dest, 'blobs', 'sha256'), { recursive: true });
  const blob = (d: string): string => path.join(dest, 'blobs', 'sha256', d.slice(7));
  const index = JSON.parse(await fs.readFile(path.join(src, 'index.json'), 'utf8')) as { manifests: Descriptor[] };
  const read = async (d: string): Promise<Buffer> => fs.readFile(path.join(src, 'blobs', 'sha256', d.slice(7)));
  const manifest = JSON.parse((await read(index.manifests[0].digest)).toString()) as {
    config: Descriptor;
    layers: Descriptor[];
  } & Record<string, unknown>;
  for (const l of manifest.layers)
    await fs.copyFile(path.join(src, 'blobs', 'sha256', l.digest.slice(7)), blob(l.digest));
  const config = JSON.parse((await read(manifest.config.digest)).toString()) as { config?: Record<string, unknown> };
  const ids = new Map<string, string>();
  const entries: Descriptor[] = [];
  for (let i = 0; i < count; i++) {
    const c = Buffer.from(
      JSON.stringify({ ...config, config: { ...config.config, Labels: { 'capsa.test/n': String(i) } } }),
    );
    const cd = sha256(c);
    await fs.writeFile(blob(cd), c);
    const m = Buffer.from(JSON.stringify({ ...manifest, config: { ...manifest.config, digest: cd, size: c.length } }));
    const md = sha256(m);
    await fs.writeFile(blob(md), m);
    const tag = `docker.io/capsa-stream/img:${i}`;
    entries.push({
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest: md,
      size: m.length,
      annotations: { 'org.opencontainers.image.ref.name': tag },
    });
    ids.set(tag, cd);
  }
  await fs.writeFile(path.join(dest, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await fs.writeFile(path.join(dest, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: entries }));
  return ids;
}

/** Every message of one StreamImages call, in order. */
function stream(d: TestDaemon, filter?: string): Promise<StreamImagesResponse[]> {
  const req = StreamImagesRequest.fromPartial(filter ? { filter: { image: { image: filter } } } : {});
  const s = d.image.streamImages(req, new grpc.Metadata(), { deadline: new Date(Date.now() + slow(20_000)) });
  const got: StreamImagesResponse[] = [];
  return new Promise((resolve, reject) => {
    s.on('data', (m: StreamImagesResponse) => got.push(m));
    s.on('error', reject);
    s.on('end', () => resolve(got));
  });
}

const tmp = mkdtempSync(path.join(os.tmpdir(), 'capsa-stream-images-'));
let d: TestDaemon;
let ids: Map<string, string>;

beforeAll(async () => {
  const images = await ensureTestImages();
  const layout = path.join(tmp, 'layout');
  ids = await manyImages(images.busybox.layout, layout, COUNT);
  const dir = path.join(tmp, 'daemon');
  await fs.mkdir(dir);
  await fs.writeFile(path.join(dir, 'capsa.toml'), '');
  await execFileP(process.execPath, [
    CLI,
    ...['image', 'import', layout, '--root', path.join(dir, 'root'), '--config', path.join(dir, 'capsa.toml')],
  ]);
  d = await startDaemon({ dir });
}, 300_000);

afterAll(async () => {
  await d?.stop();
  await fs.rm(tmp, { recursive: true, force: true });
});

test('StreamImages: every image exactly once, in messages of 1 to 100, the same set as ListImages', async () => {
  const msgs = await stream(d);
  expect(msgs.map((m) => m.images.length)).toEqual([100, 100, COUNT - 200]);
  const streamed = msgs.flatMap((m) => m.images);
  expect(new Set(streamed.map((i) => i.id)).size).toBe(streamed.length);
  expect(streamed.map((i) => i.id).sort()).toEqual([...ids.values()].sort());
  for (const img of streamed) expect(ids.get(img.repoTags[0])).toBe(img.id);
  const listed = await call<{ images: unknown[] }>(d.image, 'listImages', {});
  expect(streamed).toEqual(expect.arrayContaining(listed.images));
  expect(listed.images).toHaveLength(streamed.length);
});

test('StreamImages filters as ListImages: by tag, by id, by id prefix; none matching is no message', async () => {
  const tag = 'docker.io/capsa-stream/img:7';
  const id = ids.get(tag)!;
  for (const ref of [tag, 'capsa-stream/img:7', id, id.slice(7, 19)]) {
    const msgs = await stream(d, ref);
    const listed = await call<{ images: { id: string }[] }>(d.image, 'listImages', {
      filter: { image: { image: ref } },
    });
    expect(msgs.map((m) => m.images.map((i) => i.id))).toEqual([[id]]);
    expect(listed.images.map((i) => i.id)).toEqual([id]);
  }
  expect(await stream(d, 'capsa-stream/img:nope')).toEqual([]);
});

test('StreamImages with a malformed filter is INVALID_ARGUMENT naming filter.image.image', async () => {
  const err = (await stream(d, 'Not A Reference!').then(
    () => undefined,
    (e: unknown) => e,
  )) as grpc.ServiceError;
  expect({ code: err?.code, details: err?.details }).toEqual({
    code: grpc.status.INVALID_ARGUMENT,
    details: expect.stringMatching(/filter\.image\.image/),
  });
});
