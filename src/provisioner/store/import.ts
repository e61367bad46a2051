// Air-gapped import: loads an OCI image layout (directory or tar) or a
// docker-archive tar (`docker save`: manifest.json + <id>/layer.tar) into
// the content store and image store, unpacking layers as a pull would. No
// network. Every blob taken from an OCI layout is verified against its
// digest; docker-archive members are hashed as they are stored.
import { createReadStream, promises as fs } from 'fs';
import { randomBytes } from 'crypto';
import * as path from 'path';
import { Readable, Transform } from 'stream';
import { pipeline } from 'stream/promises';
import { createGunzip } from 'zlib';
import { ErrorContext, InvalidArgumentError, NotFoundError, UnimplementedError, asCapsaError } from '../../errors';
import { ImageAssembler } from './assemble';
import { isSha256Digest, sha256Hex } from './digest';
import { ImageRecord } from './image-store';
import {
  DEFAULT_PLATFORM,
  Descriptor,
  ImageManifest,
  isIndexMediaType,
  MediaType,
  parseManifest,
  Platform,
  selectPlatformManifest,
} from './manifest';
import { digestReference, formatReference, isValidTag, parseDockerRef, tagReference } from './reference';
import { indexTar, resolveMember, TarEntry } from './tar-index';

export interface ImportProgress {
  stage: 'open' | 'blob' | 'unpack' | 'image';
  /** Bytes of blobs copied so far / to copy (known up front for OCI layouts). */
  bytes: number;
  totalBytes: number;
  message: string;
}

export interface ImportOptions {
  assembler: ImageAssembler;
  /** Repository for OCI layout entries named only by a tag ("latest"), e.g. "docker.io/library/busybox". */
  baseName?: string;
  platform?: Platform;
  signal?: AbortSignal;
  onProgress?: (p: ImportProgress) => void;
}

/** Read access to the members of a layout directory or an archive. */
interface Source {
  size(name: string): number | undefined;
  stream(name: string): Readable;
  read(name: string, max: number): Promise<Buffer>;
}

const META_MAX = 16 * 1024 * 1024;

class DirSource implements Source {
  constructor(
    private readonly root: string,
    private readonly sizes: Map<string, number>,
  ) {}
  static async open(root: string): Promise<DirSource> {
    const sizes = new Map<string, number>();
    const walk = async (rel: string, depth: number): Promise<void> => {
      if (depth > 4) return;
      for (const d of await fs.readdir(path.join(root, rel), { withFileTypes: true })) {
        const r = rel ? `${rel}/${d.name}` : d.name;
        if (d.isDirectory()) await walk(r, depth + 1);
        else if (d.isFile()) sizes.set(r, (await fs.stat(path.join(root, r))).size);
      }
    };
    await walk('', 0);
    return new DirSource(root, sizes);
  }
  size(name: string): number | undefined {
    return this.sizes.get(name);
  }
  stream(name: string): Readable {
    return createReadStream(path.join(this.root, name));
  }
  async read(name: string, max: number): Promise<Buffer> {
    const s = this.sizes.get(name);
    if (s === undefined) throw new NotFoundError(`${name} not found in ${this.root}`, { path: this.root });
    if (s > max) throw new InvalidArgumentError('file', `${name} is too large (${s} bytes)`, { path: this.root });
    return fs.readFile(path.join(this.root, name));
  }
}

class TarSource implements Source {
  constructor(
    private readonly file: string,
    private readonly entries: Map<string, TarEntry>,
  ) {}
  private entry(name: string): TarEntry | undefined {
    return resolveMember(this.entries, name);
  }
  size(name: string): number | undefined {
    return this.entry(name)?.size;
  }
  stream(name: string): Readable {
    const e = this.entry(name);
    if (!e) throw new NotFoundError(`${name} not found in ${this.file}`, { path: this.file });
    if (e.size === 0) return Readable.from([]);
    return createReadStream(this.file, { start: e.offset, end: e.offset + e.size - 1 });
  }
  async read(name: string, max: number): Promise<Buffer> {
    const e = this.entry(name);
    if (!e) throw new NotFoundError(`${name} not found in ${this.file}`, { path: this.file });
    if (e.size > max)
      throw new InvalidArgumentError('file', `${name} is too large (${e.size} bytes)`, { path: this.file });
    const fh = await fs.open(this.file, 'r');
    try {
      const b = Buffer.alloc(e.size);
      await fh.read(b, 0, e.size, e.offset);
      return b;
    } finally {
      await fh.close();
    }
  }
  names(): string[] {
    return [...this.entries.keys()];
  }
}

function blobName(digest: string): string {
  return `blobs/sha256/${sha256Hex(digest, 'digest')}`;
}

/** A ref.name annotation that is only a tag ("latest", "1.36") rather than a name. */
function isBareTag(name: string): boolean {
  return !name.includes('/') && !name.includes(':') && !name.includes('@') && isValidTag(name);
}

/** The image name an OCI index entry carries, normalized; undefined when none can be made. */
export function ociEntryName(d: Descriptor, baseName: string | undefined): string | undefined {
  const a = d.annotations ?? {};
  const full = a['io.containerd.image.name'];
  if (full) return formatReference(parseDockerRef(full));
  const ref = a['org.opencontainers.image.ref.name'];
  if (!ref) return undefined;
  if (isBareTag(ref)) {
    if (!baseName) return undefined;
    const base = parseDockerRef(baseName);
    return tagReference(base, ref);
  }
  return formatReference(parseDockerRef(ref));
}

/** `src` piped through a byte counter, with errors and teardown passed both ways. */
function counted(src: Readable, onBytes: (n: number) => void): Readable {
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      onBytes(chunk.length);
      cb(null, chunk);
    },
  });
  src.on('error', (err) => t.destroy(err));
  t.on('close', () => src.destroy());
  return src.pipe(t);
}

/**
 * Imports every image in `file` (a directory holding an OCI layout, or a
 * tar / tar.gz of an OCI layout or of `docker save` output). Returns the
 * image records, in archive order.
 */
export async function importImages(file: string, opts: ImportOptions): Promise<ImageRecord[]> {
  const context: ErrorContext = { stage: 'import', path: file };
  const content = opts.assembler.content;
  const images = opts.assembler.images;
  const owner = `import:${randomBytes(8).toString('hex')}`;
  const progress = { bytes: 0, totalBytes: 0 };
  const report = (stage: ImportProgress['stage'], message: string): void =>
    opts.onProgress?.({ stage, bytes: progress.bytes, totalBytes: progress.totalBytes, message });
  let scratch: string | undefined;
  try {
    await images.pin(owner, [], { persist: false });
    let source: Source;
    let st;
    try {
      st = await fs.stat(file);
    } catch {
      throw new NotFoundError(`${file} not found`, context);
    }
    report('open', `reading ${file}`);
    if (st.isDirectory()) {
      source = await DirSource.open(file);
    } else {
      const fh = await fs.open(file, 'r');
      const magic = Buffer.alloc(4);
      try {
        await fh.read(magic, 0, 4, 0);
      } finally {
        await fh.close();
      }
      let tarFile = file;
      if (magic[0] === 0x1f && magic[1] === 0x8b) {
        scratch = content.tempPath('import.tar');
        await pipeline(createReadStream(file), createGunzip(), (await fs.open(scratch, 'w')).createWriteStream(), {
          signal: opts.signal,
        });
        tarFile = scratch;
      } else if (magic.readUInt32LE(0) === 0xfd2fb528) {
        throw new UnimplementedError('zstd-compressed archives are not supported; decompress first', context);
      }
      source = new TarSource(tarFile, await indexTar(tarFile, context));
    }

    let out: ImageRecord[];
    if (source.size('oci-layout') !== undefined && source.size('index.json') !== undefined) {
      out = await importOciLayout(source, opts, owner, progress, report, context);
    } else if (source.size('manifest.json') !== undefined) {
      out = await importDockerArchive(source, opts, owner, progress, report, context);
    } else if (source.size('repositories') !== undefined) {
      throw new UnimplementedError('legacy docker archives without manifest.json are not supported', context);
    } else {
      throw new InvalidArgumentError('file', `${file} is neither an OCI image layout nor a docker archive`, context);
    }
    return out;
  } catch (err) {
    throw asCapsaError(err, context);
  } finally {
    await images.unpin(owner);
    if (scratch) await fs.rm(scratch, { force: true });
  }
}

type Reporter = (stage: ImportProgress['stage'], message: string) => void;

async function importOciLayout(
  source: Source,
  opts: ImportOptions,
  owner: string,
  progress: { bytes: number; totalBytes: number },
  report: Reporter,
  context: ErrorContext,
): Promise<ImageRecord[]> {
  const content = opts.assembler.content;
  const images = opts.assembler.images;
  const layout = JSON.parse((await source.read('oci-layout', META_MAX)).toString('utf8')) as {
    imageLayoutVersion?: string;
  };
  if (typeof layout.imageLayoutVersion !== 'string')
    throw new InvalidArgumentError('file', 'oci-layout has no imageLayoutVersion', context);
  const top = parseManifest(await source.read('index.json', META_MAX), MediaType.OciIndex, context);
  if (top.kind !== 'index') throw new InvalidArgumentError('file', 'index.json is not an image index', context);

  const ingest = async (d: Pick<Descriptor, 'digest' | 'size'>): Promise<string> => {
    if (!isSha256Digest(d.digest)) throw new UnimplementedError(`unsupported digest ${d.digest}`, context);
    await images.pin(owner, [], { blobs: [d.digest], persist: false });
    if (await content.has(d.digest)) {
      progress.bytes += d.size;
      return content.path(d.digest);
    }
    const name = blobName(d.digest);
    if (source.size(name) === undefined)
      throw new NotFoundError(`blob ${d.digest} is missing from the layout`, { ...context });
    report('blob', `copying ${d.digest.slice(7, 19)}`);
    const p = await content.ingestStream(
      { digest: d.digest, size: d.size },
      () =>
        counted(
          source.stream(name),
          (n) => ((progress.bytes += n), report('blob', `copying ${d.digest.slice(7, 19)}`)),
        ),
      { signal: opts.signal, context },
    );
    return p;
  };
  const readManifest = async (d: Descriptor): Promise<Buffer> => {
    await ingest(d);
    return content.read(d.digest, META_MAX, context);
  };

  // Resolve every entry to a platform manifest first, to know the bytes to copy.
  const jobs: { name?: string; topDigest: string; manifestDigest: string; manifest: ImageManifest; extra: string[] }[] =
    [];
  for (const entry of top.index.manifests) {
    const name = ociEntryName(entry, opts.baseName);
    let d = entry;
    const extra: string[] = [];
    for (let depth = 0; isIndexMediaType(d.mediaType); depth++) {
      if (depth > 4) throw new InvalidArgumentError('file', 'image indexes nested too deep', context);
      const idx = parseManifest(await readManifest(d), d.mediaType, context);
      if (idx.kind !== 'index') throw new InvalidArgumentError('file', `${d.digest} is not an index`, context);
      extra.push(d.digest);
      // Prefer a matching manifest whose blob the layout actually holds (skopeo copies one platform).
      const present = {
        ...idx.index,
        manifests: idx.index.manifests.filter((m) => source.size(blobName(m.digest)) !== undefined),
      };
      d = selectPlatformManifest(
        present.manifests.length ? present : idx.index,
        opts.platform ?? DEFAULT_PLATFORM,
        context,
      );
    }
    const parsed = parseManifest(await readManifest(d), d.mediaType, context);
    if (parsed.kind !== 'manifest')
      throw new InvalidArgumentError('file', `${d.digest} is not an image manifest`, context);
    jobs.push({ name, topDigest: entry.digest, manifestDigest: d.digest, manifest: parsed.manifest, extra });
  }
  progress.totalBytes = jobs.reduce(
    (n, j) => n + j.manifest.config.size + j.manifest.layers.reduce((m, l) => m + l.size, 0),
    progress.bytes,
  );

  const out: ImageRecord[] = [];
  for (const job of jobs) {
    const ref = job.name ? parseDockerRef(job.name) : undefined;
    const rec = await opts.assembler.assemble({
      manifest: job.manifest,
      manifestDigest: job.manifestDigest,
      extraBlobs: job.extra,
      repoTags: ref && ref.tag !== undefined ? [formatReference(ref)] : [],
      repoDigests: ref ? [digestReference(ref, job.topDigest)] : [],
      fetchBlob: (desc) => ingest(desc),
      leaseOwner: owner,
      signal: opts.signal,
      onEvent: (e) => {
        if (e.kind === 'unpack-start') report('unpack', `unpacking layer ${e.index + 1}/${job.manifest.layers.length}`);
      },
      context: { ...context, image: job.name },
    });
    report('image', `imported ${job.name ?? rec.id}`);
    out.push(rec);
  }
  return out;
}

interface DockerArchiveEntry {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
}

function sniffLayerMediaType(head: Buffer): string {
  if (head[0] === 0x1f && head[1] === 0x8b) return MediaType.DockerLayer;
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return MediaType.OciLayerZstd;
  return MediaType.DockerLayerTar;
}

async function head(stream: Readable, n: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const c of stream) {
      chunks.push(c as Buffer);
      total += (c as Buffer).length;
      if (total >= n) break;
    }
  } finally {
    stream.destroy();
  }
  return Buffer.concat(chunks).subarray(0, n);
}

async function importDockerArchive(
  source: Source,
  opts: ImportOptions,
  owner: string,
  progress: { bytes: number; totalBytes: number },
  report: Reporter,
  context: ErrorContext,
): Promise<ImageRecord[]> {
  const content = opts.assembler.content;
  const images = opts.assembler.images;
  let entries: DockerArchiveEntry[];
  try {
    entries = JSON.parse((await source.read('manifest.json', META_MAX)).toString('utf8')) as DockerArchiveEntry[];
  } catch (err) {
    if (err instanceof SyntaxError) throw new InvalidArgumentError('file', 'manifest.json is not valid JSON', context);
    throw err;
  }
  if (!Array.isArray(entries)) throw new InvalidArgumentError('file', 'manifest.json is not a list', context);
  for (const e of entries) {
    if (typeof e?.Config !== 'string' || !Array.isArray(e.Layers) || !e.Layers.every((l) => typeof l === 'string'))
      throw new InvalidArgumentError('file', 'manifest.json entry without Config or Layers', context);
    for (const m of [e.Config, ...e.Layers])
      if (source.size(m) === undefined)
        throw new NotFoundError(`${m} named in manifest.json is missing from the archive`, context);
  }
  progress.totalBytes = entries.reduce((n, e) => n + e.Layers.reduce((m, l) => m + (source.size(l) ?? 0), 0), 0);

  // The same member can be listed by several images: store each once.
  const stored = new Map<string, Descriptor>();
  const store = async (member: string, mediaType: string | undefined): Promise<Descriptor> => {
    const known = stored.get(member);
    if (known) return known;
    const mt = mediaType ?? sniffLayerMediaType(await head(source.stream(member), 4));
    const r = await content.ingestUnverified(
      counted(source.stream(member), (n) => ((progress.bytes += n), report('blob', `copying ${member}`))),
      {
        signal: opts.signal,
        context,
        beforeCommit: (digest) => images.pin(owner, [], { blobs: [digest], persist: false }),
      },
    );
    const d: Descriptor = { mediaType: mt, digest: r.digest, size: r.size };
    stored.set(member, d);
    return d;
  };

  const out: ImageRecord[] = [];
  for (const e of entries) {
    const config = await store(e.Config, MediaType.DockerConfig);
    const layers: Descriptor[] = [];
    for (const l of e.Layers) layers.push(await store(l, undefined));
    const manifest: ImageManifest = { schemaVersion: 2, mediaType: MediaType.DockerManifest, config, layers };
    const manifestDigest = await content.writeBlob(Buffer.from(JSON.stringify(manifest)), undefined, { context });
    await images.pin(owner, [], { blobs: [manifestDigest], persist: false });
    const tags = (e.RepoTags ?? []).map((t) => formatReference(parseDockerRef(t)));
    const rec = await opts.assembler.assemble({
      manifest,
      manifestDigest,
      repoTags: tags,
      repoDigests: [],
      fetchBlob: async (desc) => {
        if (!(await content.has(desc.digest)))
          throw new NotFoundError(`blob ${desc.digest} vanished during import`, context);
        return content.path(desc.digest);
      },
      leaseOwner: owner,
      signal: opts.signal,
      onEvent: (ev) => {
        if (ev.kind === 'unpack-start') report('unpack', `unpacking layer ${ev.index + 1}/${layers.length}`);
      },
      context: { ...context, image: tags[0] },
    });
    report('image', `imported ${tags[0] ?? rec.id}`);
    out.push(rec);
  }
  return out;
}
