// The image index: one JSON record per image (id = config digest) under
// <root>/images/, written atomically. Reference counts are not stored as
// counters: they are derived from the records themselves (plus leases), so
// a crash between any two steps can neither leave a dangling reference nor
// leak — an unreferenced blob or layer is simply collected by the next gc().
import { promises as fs } from 'fs';
import * as path from 'path';
import type { Logger } from '../../log';
import { ErrorContext, FailedPreconditionError, InvalidArgumentError } from '../../errors';
import { readJsonIfExists, writeFileAtomic } from '../../util/atomic-file';
import { ContentStore } from './content-store';
import { isSha256Digest } from './digest';
import { ImageConfig } from './manifest';
import { formatReference, ImageReference, parseDockerRef } from './reference';

export interface LayerRecord {
  /** Blob digest (compressed, as in the manifest). */
  digest: string;
  mediaType: string;
  size: number;
  /** Digest of the uncompressed tar. */
  diffId: string;
  chainId: string;
}

export interface ImageRecord {
  /** The image id: its config digest ("sha256:…"). */
  id: string;
  /** Normalized "domain/path:tag" references. */
  repoTags: string[];
  /** Normalized "domain/path@sha256:…" references (the digest a pull resolved: index or manifest). */
  repoDigests: string[];
  /** The platform manifest this image was built from. */
  manifestDigest: string;
  manifestMediaType: string;
  configDigest: string;
  layers: LayerRecord[];
  /** Bytes of the image's content (manifest + config + layer blobs). */
  size: number;
  /** The image config (OCI image-spec config JSON). */
  config: ImageConfig;
  /** Every content-store blob the image keeps alive (indexes, manifest, config, layers). */
  blobs: string[];
  /** When the image was first recorded (ISO time). */
  createdAt: string;
  /** Write sequence number: decides which record keeps a tag if a crash left it on two. */
  seq: number;
}

/** What a pull or import hands the store. Tags and digests are normalized references. */
export type NewImage = Omit<ImageRecord, 'createdAt' | 'seq' | 'repoTags' | 'repoDigests'> & {
  repoTags?: string[];
  repoDigests?: string[];
};

/** Hooks into the layer store, provided by the unpacker side. */
export interface LayerHooks {
  /** Deletes an unpacked layer by chain ID (absent is fine). */
  deleteLayer(chainId: string): Promise<void>;
  /** Every unpacked layer on disk; lets gc() also collect layers left by a crashed pull. */
  listLayers?(): Promise<string[]>;
}

export interface ImageStoreOptions {
  content: ContentStore;
  layers?: LayerHooks;
  logger?: Logger;
}

export interface GcResult {
  blobs: string[];
  layers: string[];
}

export interface RemoveResult {
  /** The image the reference named, if any. */
  image?: ImageRecord;
  /** True when the whole image record went away; false when only a tag was removed. */
  removed: boolean;
  /** The tag removed when the image stays. */
  untagged?: string;
}

interface Pin {
  chainIds: Set<string>;
  blobs: Set<string>;
  /** Image ids the owner uses as such (an image volume): RemoveImage refuses them. */
  images: Set<string>;
  persisted: boolean;
}

const ID_RE = /^(?:sha256:)?([a-f0-9]{64})$/;
const ID_PREFIX_RE = /^(?:sha256:)?([a-f0-9]{1,63})$/;

/** A FIFO async mutex. */
class Mutex {
  private tail: Promise<void> = Promise.resolve();
  async run<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.tail;
    let release!: () => void;
    this.tail = new Promise<void>((r) => (release = r));
    await prev;
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

function uniq(xs: Iterable<string>): string[] {
  return [...new Set(xs)];
}

export class ImageStore {
  readonly dir: string;
  readonly leasesDir: string;
  private readonly content: ContentStore;
  private readonly layerHooks?: LayerHooks;
  private readonly log?: Logger;
  private readonly images = new Map<string, ImageRecord>();
  private readonly pins = new Map<string, Pin>();
  private readonly mutex = new Mutex();
  /** Serializes lease file writes and removals. */
  private readonly leaseMutex = new Mutex();
  private seq = 0;
  private gcRunning?: Promise<GcResult>;
  /** Chain IDs that lost their last image since start (collected even without listLayers). */
  private readonly layerCandidates = new Set<string>();

  constructor(root: string, opts: ImageStoreOptions) {
    this.dir = path.join(root, 'images');
    this.leasesDir = path.join(root, 'images', 'leases');
    this.content = opts.content;
    this.layerHooks = opts.layers;
    this.log = opts.logger;
  }

  /** Loads every record and persisted lease; repairs a tag a crash left on two images. */
  async init(): Promise<void> {
    await fs.mkdir(this.leasesDir, { recursive: true });
    this.images.clear();
    for (const name of await fs.readdir(this.dir)) {
      const file = path.join(this.dir, name);
      if (name.endsWith('.tmp')) {
        await fs.rm(file, { force: true });
        continue;
      }
      const m = /^([a-f0-9]{64})\.json$/.exec(name);
      if (!m) continue;
      let rec: ImageRecord | undefined;
      try {
        rec = await readJsonIfExists<ImageRecord>(file);
      } catch (err) {
        this.log?.warn({ file, err: (err as Error).message }, 'unreadable image record; moving it aside');
        await fs.rename(file, `${file}.corrupt`).catch(() => undefined);
        continue;
      }
      if (!rec || rec.id !== `sha256:${m[1]}` || !Array.isArray(rec.layers) || !Array.isArray(rec.blobs)) {
        this.log?.warn({ file }, 'invalid image record; moving it aside');
        await fs.rename(file, `${file}.corrupt`).catch(() => undefined);
        continue;
      }
      rec.repoTags ??= [];
      rec.repoDigests ??= [];
      this.images.set(rec.id, rec);
      this.seq = Math.max(this.seq, rec.seq ?? 0);
    }
    // A tag moved to a new image but the old record was not rewritten before a crash: newest wins.
    const owner = new Map<string, ImageRecord>();
    const losers = new Set<ImageRecord>();
    for (const rec of this.images.values()) {
      for (const tag of rec.repoTags) {
        const other = owner.get(tag);
        if (!other) owner.set(tag, rec);
        else {
          const [keep, drop] = other.seq >= rec.seq ? [other, rec] : [rec, other];
          owner.set(tag, keep);
          drop.repoTags = drop.repoTags.filter((t) => t !== tag);
          losers.add(drop);
        }
      }
    }
    for (const rec of losers) await this.persist(rec);
    this.pins.clear();
    for (const name of await fs.readdir(this.leasesDir)) {
      const file = path.join(this.leasesDir, name);
      if (name.endsWith('.tmp')) {
        await fs.rm(file, { force: true });
        continue;
      }
      if (!name.endsWith('.json')) continue;
      try {
        const lease = await readJsonIfExists<{
          owner: string;
          chainIds: string[];
          blobs: string[];
          images?: string[];
        }>(file);
        if (lease)
          this.pins.set(lease.owner, {
            chainIds: new Set(lease.chainIds),
            blobs: new Set(lease.blobs),
            images: new Set(lease.images ?? []),
            persisted: true,
          });
      } catch (err) {
        this.log?.warn({ file, err: (err as Error).message }, 'unreadable lease; ignoring it');
      }
    }
  }

  list(): ImageRecord[] {
    return [...this.images.values()].sort((a, b) => a.seq - b.seq);
  }

  /** By exact id ("sha256:<hex>" or "<hex>"). */
  get(id: string): ImageRecord | undefined {
    const m = ID_RE.exec(id);
    return m ? this.images.get(`sha256:${m[1]}`) : undefined;
  }

  /**
   * Finds the image a user's reference names, as Docker does: a full id,
   * then a tag or digest reference (normalized: `busybox` is
   * docker.io/library/busybox:latest), then a unique id prefix. Unknown →
   * undefined; malformed (neither a reference nor an id prefix) →
   * InvalidArgument('image'); an ambiguous prefix → InvalidArgument.
   */
  resolve(ref: string, context: ErrorContext = {}): ImageRecord | undefined {
    const byId = this.get(ref);
    if (byId) return byId;
    if (ID_RE.test(ref)) return undefined;
    let parsed: ImageReference | undefined;
    let parseErr: unknown;
    try {
      parsed = parseDockerRef(ref);
    } catch (err) {
      parseErr = err;
    }
    if (parsed) {
      const hit = this.findByReference(parsed);
      if (hit) return hit;
    }
    const pm = ID_PREFIX_RE.exec(ref);
    if (pm) {
      const hits = [...this.images.keys()].filter((id) => id.startsWith(`sha256:${pm[1]}`));
      if (hits.length === 1) return this.images.get(hits[0]);
      if (hits.length > 1)
        throw new InvalidArgumentError('image', `image id prefix "${ref}" is ambiguous`, { ...context, image: ref });
    }
    if (parseErr) throw parseErr;
    return undefined;
  }

  private findByReference(ref: ImageReference): ImageRecord | undefined {
    const s = formatReference(ref);
    for (const rec of this.images.values()) {
      if (ref.digest !== undefined ? rec.repoDigests.includes(s) : rec.repoTags.includes(s)) return rec;
    }
    return undefined;
  }

  /**
   * Records an image (or merges tags/digests into an existing one with the
   * same id). A tag that named another image moves to this one.
   */
  async add(img: NewImage): Promise<ImageRecord> {
    if (!isSha256Digest(img.id)) throw new InvalidArgumentError('image', `invalid image id "${img.id}"`);
    return this.mutex.run(async () => {
      const existing = this.images.get(img.id);
      const rec: ImageRecord = {
        ...img,
        repoTags: uniq([...(existing?.repoTags ?? []), ...(img.repoTags ?? [])]),
        repoDigests: uniq([...(existing?.repoDigests ?? []), ...(img.repoDigests ?? [])]),
        blobs: uniq([...(existing?.blobs ?? []), ...img.blobs]),
        createdAt: existing?.createdAt ?? new Date().toISOString(),
        seq: ++this.seq,
      };
      await this.persist(rec);
      this.images.set(rec.id, rec);
      for (const tag of img.repoTags ?? []) {
        for (const other of this.images.values()) {
          if (other.id === rec.id || !other.repoTags.includes(tag)) continue;
          const updated = { ...other, repoTags: other.repoTags.filter((t) => t !== tag) };
          await this.persist(updated);
          this.images.set(updated.id, updated);
        }
      }
      return rec;
    });
  }

  /** Removes one repo tag (normalized or not) from the image holding it; the image itself stays. */
  async removeTag(tag: string): Promise<ImageRecord | undefined> {
    const norm = formatReference(parseDockerRef(tag));
    return this.mutex.run(async () => {
      for (const rec of this.images.values()) {
        if (!rec.repoTags.includes(norm)) continue;
        const updated = { ...rec, repoTags: rec.repoTags.filter((t) => t !== norm), seq: ++this.seq };
        await this.persist(updated);
        this.images.set(updated.id, updated);
        return updated;
      }
      return undefined;
    });
  }

  /**
   * Deletes the image record. Its blobs and layers go at the next gc() if
   * nothing else holds them. FailedPrecondition while a pin holds the image
   * itself (an image volume).
   */
  async remove(id: string): Promise<boolean> {
    return this.mutex.run(async () => {
      const rec = this.get(id);
      if (!rec) return false;
      // Checked and dropped from memory with no await between: a pin() after
      // this point finds the image gone (its caller checks), one before is seen here.
      const holders = this.holders(rec.id);
      if (holders.length > 0) {
        throw new FailedPreconditionError(
          `image ${rec.id} is in use as an image volume by ${holders.join(', ')}: remove ${holders.length > 1 ? 'those' : 'that'} first`,
          { image: rec.id, stage: 'remove image' },
        );
      }
      this.images.delete(rec.id);
      try {
        await fs.rm(this.file(rec.id), { force: true });
      } catch (err) {
        this.images.set(rec.id, rec);
        throw err;
      }
      for (const l of rec.layers) this.layerCandidates.add(l.chainId);
      return true;
    });
  }

  /** Owners whose pins hold image `id` itself (image volumes). */
  holders(id: string): string[] {
    return [...this.pins.entries()].filter(([, p]) => p.images.has(id)).map(([owner]) => owner);
  }

  /**
   * CRI RemoveImage semantics: a tag of an image that has other tags
   * removes just that tag; anything else (the last tag, an id, a digest
   * reference) removes the image. Unknown → { removed: false }.
   */
  async removeImage(ref: string, context: ErrorContext = {}): Promise<RemoveResult> {
    const image = this.resolve(ref, context);
    if (!image) return { removed: false };
    let tag: string | undefined;
    if (!this.get(ref)) {
      try {
        const parsed = parseDockerRef(ref);
        if (parsed.tag !== undefined) tag = formatReference(parsed);
      } catch {
        tag = undefined; // an id prefix
      }
    }
    if (tag !== undefined && image.repoTags.includes(tag) && image.repoTags.length > 1) {
      const updated = await this.removeTag(tag);
      return { image: updated ?? image, removed: false, untagged: tag };
    }
    await this.remove(image.id);
    return { image, removed: true };
  }

  /** How many images hold a blob (pins included). */
  blobRefCount(digest: string): number {
    let n = 0;
    for (const rec of this.images.values()) if (rec.blobs.includes(digest)) n++;
    for (const p of this.pins.values()) if (p.blobs.has(digest)) n++;
    return n;
  }

  /** How many images hold a layer chain ID (pins included). */
  layerRefCount(chainId: string): number {
    let n = 0;
    for (const rec of this.images.values()) if (rec.layers.some((l) => l.chainId === chainId)) n++;
    for (const p of this.pins.values()) if (p.chainIds.has(chainId)) n++;
    return n;
  }

  /**
   * Pins layers (and optionally blobs) for `owner` — a container using an
   * image's layers, or a pull in progress — so gc() keeps them even when no
   * image does. `images` also holds image records: remove() refuses them
   * (an image volume uses the image as such). Pins accumulate per owner. A
   * persisted pin (the default) survives a daemon restart until unpin().
   * Waits for a running gc().
   */
  async pin(
    owner: string,
    chainIds: string[],
    opts: { blobs?: string[]; images?: string[]; persist?: boolean } = {},
  ): Promise<void> {
    while (this.gcRunning) await this.gcRunning.catch(() => undefined);
    const persist = opts.persist ?? true;
    let p = this.pins.get(owner);
    if (!p) {
      p = { chainIds: new Set(), blobs: new Set(), images: new Set(), persisted: persist };
      this.pins.set(owner, p);
    }
    for (const c of chainIds) p.chainIds.add(c);
    for (const b of opts.blobs ?? []) p.blobs.add(b);
    for (const i of opts.images ?? []) p.images.add(i);
    if (p.persisted) {
      const pin = p;
      await this.leaseMutex.run(async () => {
        // Unpinned meanwhile: do not bring the file back.
        if (this.pins.get(owner) !== pin) return;
        await writeFileAtomic(
          this.leaseFile(owner),
          JSON.stringify({ owner, chainIds: [...pin.chainIds], blobs: [...pin.blobs], images: [...pin.images] }),
          0o600,
        );
      });
    }
  }

  /** Releases everything `owner` pinned. */
  async unpin(owner: string): Promise<void> {
    const p = this.pins.get(owner);
    this.pins.delete(owner);
    if (p) for (const c of p.chainIds) this.layerCandidates.add(c);
    if (p && !p.persisted) return;
    await this.leaseMutex.run(() => fs.rm(this.leaseFile(owner), { force: true }));
  }

  /** Owners that currently hold pins. */
  pinOwners(): string[] {
    return [...this.pins.keys()];
  }

  /**
   * Deletes every content blob and unpacked layer that no image, pin or
   * in-flight download references. Layers are found with the hooks'
   * listLayers() when given (which also catches layers of a pull that
   * crashed), else among the layers whose images were removed since start.
   * Concurrent calls share one run.
   */
  gc(): Promise<GcResult> {
    if (this.gcRunning) return this.gcRunning;
    const run = this.mutex
      .run(() => this.collect())
      .finally(() => {
        if (this.gcRunning === run) this.gcRunning = undefined;
      });
    this.gcRunning = run;
    return run;
  }

  private async collect(): Promise<GcResult> {
    const keepBlobs = new Set<string>(this.content.ingesting());
    const keepLayers = new Set<string>();
    for (const rec of this.images.values()) {
      for (const b of rec.blobs) keepBlobs.add(b);
      for (const l of rec.layers) keepLayers.add(l.chainId);
    }
    for (const p of this.pins.values()) {
      for (const b of p.blobs) keepBlobs.add(b);
      for (const c of p.chainIds) keepLayers.add(c);
    }
    const deletedBlobs: string[] = [];
    for (const digest of await this.content.list()) {
      if (keepBlobs.has(digest) || this.content.isIngesting(digest)) continue;
      await this.content.delete(digest);
      deletedBlobs.push(digest);
    }
    const deletedLayers: string[] = [];
    if (this.layerHooks) {
      const candidates = this.layerHooks.listLayers ? await this.layerHooks.listLayers() : [...this.layerCandidates];
      for (const chainId of candidates) {
        if (keepLayers.has(chainId)) continue;
        await this.layerHooks.deleteLayer(chainId);
        deletedLayers.push(chainId);
        this.layerCandidates.delete(chainId);
      }
      for (const c of [...this.layerCandidates]) if (keepLayers.has(c)) this.layerCandidates.delete(c);
    }
    if (deletedBlobs.length || deletedLayers.length)
      this.log?.info({ blobs: deletedBlobs.length, layers: deletedLayers.length }, 'image gc');
    return { blobs: deletedBlobs, layers: deletedLayers };
  }

  private file(id: string): string {
    return path.join(this.dir, `${id.slice('sha256:'.length)}.json`);
  }

  private leaseFile(owner: string): string {
    return path.join(this.leasesDir, `${Buffer.from(owner, 'utf8').toString('base64url')}.json`);
  }

  private async persist(rec: ImageRecord): Promise<void> {
    await writeFileAtomic(this.file(rec.id), JSON.stringify(rec), 0o644);
  }
}
