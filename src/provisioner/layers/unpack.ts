// The layer store: every layer unpacked once per chain ID, shared by all
// images and containers that have it.
//
//   <root>/layers/                    mode 0700 (setuid files and device nodes live below)
//   <root>/layers/<chainId-hex>/fs    the layer's diff: one overlay lowerdir
//   <root>/layers/<chainId-hex>/layer.json  {chainId, diffId, parent, size, …}
//   <root>/layers/.tmp-<rand>/        work in progress; renamed into place when complete
//
// Crash safety: a layer appears under its chain ID only by rename(2) of a
// complete temp dir (data synced first — one syncfs shared by the layers
// that finish together — then the parent dir). Deleting
// renames the layer to a .tmp- name before removing it. `cleanup()` (at
// startup) removes every leftover .tmp- dir, so a crash at any point leaves
// either a complete layer or nothing.
//
// The work (decompress, hash, parse, write) runs in worker threads
// (worker-pool.ts) with synchronous fs calls: as fast as GNU tar on layers
// of small files, and the daemon's event loop never waits on the disk.
//
// Policies (decided here; see paths.ts and apply.ts for the details):
// - absolute entry names are taken relative to the layer root (Docker's rule);
//   ".." escaping the root, writing through a symlink, hardlinks out of the
//   layer, whiteouts naming "." or ".." fail the layer with an
//   InvalidArgument naming the entry, and nothing is left behind;
// - xattrs: user.*, security.capability and POSIX ACLs kept; trusted.* (so
//   any trusted.overlay.* a layer carries) and other security.* dropped;
// - a layer whose uncompressed stream hashes to something other than the
//   expected diffID fails (InvalidArgument, field "diffID").
import { randomBytes } from 'crypto';
import { promises as fs } from 'fs';
import * as path from 'path';

import { asCapsaError, InternalError, InvalidArgumentError } from '../../errors';
import type { Logger } from '../../log';
import { fsyncDir, readJsonIfExists } from '../../util/atomic-file';
import { DEFAULT_MAX_ENTRIES } from './apply';
import { chainId as computeChainId, digestHex, isSha256Digest } from './chain';
import type { Compression } from './decompress';
import type { UnpackJob } from './job';
import { SyncGroup } from './sync';
import { UnpackPool } from './worker-pool';

export interface UnpackRequest {
  /** The layer blob (compressed or not) in the content store. */
  blobPath: string;
  /** The descriptor's media type (compression is detected from magic bytes; this is a cross-check). */
  mediaType: string;
  /** Chain ID of the layer below, or undefined for the bottom layer. */
  parentChainId?: string;
  /** The diffID from the image config; when given, a mismatch fails the layer, and a layer already unpacked is found without reading the blob. */
  diffIdExpected?: string;
  /** For error context and logs. */
  image?: string;
  /** Stops *this caller's* wait; a shared unpack others wait for goes on. */
  signal?: AbortSignal;
  /**
   * The blob's bytes while it downloads (the store's BlobStream): the layer
   * unpacks from them as they arrive, when a worker is free, and becomes
   * visible only once `stream.blob` resolves (the blob verified and stored).
   * Otherwise (no free worker, the stream falls back) it unpacks from the
   * stored blob once `stream.blob` resolves. A rejected `stream.blob` fails
   * the unpack, leaving nothing behind.
   */
  stream?: LayerByteStream;
}

/** A layer blob's bytes as they download; see UnpackRequest.stream. */
export interface LayerByteStream extends AsyncIterable<Buffer> {
  /** The stored blob's path, once its digest is verified. */
  readonly blob: Promise<string>;
  /** Nobody will read the bytes (any more): the download goes on without waiting for a reader. */
  detach(): void;
}

export interface UnpackedLayer {
  diffId: string;
  chainId: string;
  /** Bytes of regular-file data in the layer. */
  size: number;
  /** Inodes the layer created. */
  inodes: number;
  /** The layer's diff directory (an overlay lowerdir). */
  path: string;
  /** True when the layer was already in the store. */
  cached: boolean;
  /** True when it unpacked from its download's bytes as they came (UnpackRequest.stream), not from the stored blob. */
  streamed?: boolean;
}

interface LayerMeta {
  version: 1;
  chainId: string;
  diffId: string;
  parentChainId?: string;
  size: number;
  inodes: number;
  entries: number;
  compression: Compression;
  mediaType: string;
  unpackedAt: string;
}

export interface LayerStoreOptions {
  /** capsa's state root, e.g. /var/lib/capsa; layers live in <root>/layers. */
  root: string;
  log?: Logger;
  /** Most tar entries one layer may have (default 1,000,000). */
  maxEntries?: number;
  /**
   * syncfs the layer before it becomes visible, and its rename after (default
   * true). False (config sync_layers = false; tests, benchmarks): no syncing at
   * all, as containerd 1.6 does for its snapshots; a crash may lose layers.
   */
  sync?: boolean;
  /** Unpack worker threads (default 2): layers of different chains unpack in parallel up to this. */
  workers?: number;
}

const TMP_PREFIX = '.tmp-';
const META_FILE = 'layer.json';

export class LayerStore {
  readonly root: string;
  /** <root>/layers */
  readonly dir: string;
  private readonly log?: Logger;
  private readonly maxEntries: number;
  private readonly sync: boolean;
  private readonly inflight = new Map<string, Promise<UnpackedLayer>>();
  /** Temp dirs of unpacks in progress (cleanup() leaves them alone). */
  private readonly activeTmp = new Set<string>();
  private initialized?: Promise<void>;
  private readonly pool: UnpackPool;
  private readonly workers: number;
  /** One syncfs for the layers that finish together (see sync.ts). */
  private readonly syncGroup: SyncGroup;

  constructor(opts: LayerStoreOptions) {
    this.root = opts.root;
    this.dir = path.join(opts.root, 'layers');
    this.log = opts.log;
    this.maxEntries = opts.maxEntries ?? DEFAULT_MAX_ENTRIES;
    this.sync = opts.sync ?? true;
    this.workers = Math.max(1, opts.workers ?? 2);
    this.pool = new UnpackPool(this.workers, opts.log);
    this.syncGroup = new SyncGroup(this.dir);
  }

  /**
   * Boots the unpack workers ahead of the first unpack (a pull of an image
   * the daemon does not have calls this as it begins): the layers of a pull
   * unpack in parallel, and a worker booted mid-pull loads its modules on
   * the pull's critical path.
   */
  warmUp(): void {
    this.pool.warm(this.workers);
  }

  /**
   * Resolves once no unpack is running. A caller that gives up stops only its
   * own wait (the unpack is shared and runs on), so a cleanup that must see
   * the final state — an interrupted import's gc — waits here first.
   */
  async idle(): Promise<void> {
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight.values()]);
  }

  /** Stops the unpack workers (idle workers never keep the process alive; this is for orderly shutdown). */
  async close(): Promise<void> {
    await this.pool.close();
  }

  /** Creates the store directory and removes leftovers of interrupted unpacks and deletes. Idempotent. */
  init(): Promise<void> {
    this.initialized ??= (async () => {
      await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
      await fs.chmod(this.dir, 0o700);
      await this.cleanup();
    })();
    return this.initialized;
  }

  /** Removes every .tmp- entry (interrupted unpacks and deletes). Call at startup, before any unpack. */
  async cleanup(): Promise<number> {
    let removed = 0;
    let names: string[];
    try {
      names = await fs.readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw err;
    }
    for (const name of names) {
      if (!name.startsWith(TMP_PREFIX)) continue;
      const p = path.join(this.dir, name);
      if (this.activeTmp.has(p)) continue;
      await fs.rm(p, { recursive: true, force: true });
      removed++;
    }
    if (removed) this.log?.info({ removed }, 'removed leftover layer temp dirs');
    return removed;
  }

  /** The diff directory of a chain ID (whether or not it exists). */
  layerPath(chainId: string): string {
    return path.join(this.dir, digestHex(chainId), 'fs');
  }

  /** The stored layer, or undefined. */
  async get(chainId: string): Promise<UnpackedLayer | undefined> {
    if (!isSha256Digest(chainId)) return undefined;
    const meta = await readJsonIfExists<LayerMeta>(path.join(this.dir, digestHex(chainId), META_FILE));
    if (!meta || meta.chainId !== chainId) return undefined;
    return {
      diffId: meta.diffId,
      chainId,
      size: meta.size,
      inodes: meta.inodes,
      path: this.layerPath(chainId),
      cached: true,
    };
  }

  async has(chainId: string): Promise<boolean> {
    return (await this.get(chainId)) !== undefined;
  }

  /** Same as has(): the image store's LayerHooks / assembler name for it. */
  hasLayer(chainId: string): Promise<boolean> {
    return this.has(chainId);
  }

  /** Same as list(): the image store's LayerHooks name for it. */
  listLayers(): Promise<string[]> {
    return this.list();
  }

  /** Chain IDs of every stored layer. */
  async list(): Promise<string[]> {
    const names = await fs.readdir(this.dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [] as string[];
      throw err;
    });
    return names.filter((n) => /^[0-9a-f]{64}$/.test(n)).map((n) => `sha256:${n}`);
  }

  /**
   * Unpacks one layer blob (gzip, zstd or plain tar) unless its chain ID is
   * already stored. Concurrent calls for the same layer share one unpack.
   */
  async unpackLayer(req: UnpackRequest): Promise<UnpackedLayer> {
    const ctx = { stage: 'unpack', image: req.image, path: req.blobPath };
    if (req.diffIdExpected !== undefined && !isSha256Digest(req.diffIdExpected)) {
      throw new InvalidArgumentError('diffID', `not a sha256 digest: ${JSON.stringify(req.diffIdExpected)}`, ctx);
    }
    if (req.parentChainId !== undefined && !isSha256Digest(req.parentChainId)) {
      throw new InvalidArgumentError('parentChainId', `not a sha256 digest: ${JSON.stringify(req.parentChainId)}`, ctx);
    }
    await this.init();
    const known = req.diffIdExpected ? computeChainId(req.parentChainId, req.diffIdExpected) : undefined;
    const key = known ?? `blob:${req.blobPath}:${req.parentChainId ?? ''}`;
    let work = this.inflight.get(key);
    if (!work) {
      work = this.unpackOnce(req, known).finally(() => {
        req.stream?.detach();
        this.inflight.delete(key);
      });
      this.inflight.set(key, work);
    } else {
      // Someone else's unpack of this layer: ours would have nobody reading it.
      req.stream?.detach();
    }
    return waitFor(work, req.signal);
  }

  private async unpackOnce(req: UnpackRequest, known: string | undefined): Promise<UnpackedLayer> {
    if (known) {
      const existing = await this.get(known);
      if (existing) return existing;
    }
    const ctx = { stage: 'unpack', image: req.image, path: req.blobPath };
    const tmp = path.join(this.dir, `${TMP_PREFIX}${randomBytes(8).toString('hex')}`);
    this.activeTmp.add(tmp);
    const started = Date.now();
    try {
      await fs.mkdir(tmp, 0o700);
      const fsDir = path.join(tmp, 'fs');
      await fs.mkdir(fsDir, 0o755);

      const job = {
        blobPath: req.blobPath,
        mediaType: req.mediaType,
        fsDir,
        maxEntries: this.maxEntries,
        image: req.image,
      };
      let done = req.stream ? await this.unpackStreamed(req.stream, job) : undefined;
      const streamed = done !== undefined;
      if (req.stream) {
        // Nothing becomes visible before the blob is verified; a bad blob fails the layer here.
        await req.stream.blob;
      }
      done ??= await this.pool.run(job);
      const { diffId, compression, stats } = done;
      if (req.diffIdExpected && diffId !== req.diffIdExpected) {
        throw new InvalidArgumentError(
          'diffID',
          `layer content hashes to ${diffId}, the image config says ${req.diffIdExpected}`,
          ctx,
        );
      }
      const chainId = computeChainId(req.parentChainId, diffId);
      const meta: LayerMeta = {
        version: 1,
        chainId,
        diffId,
        parentChainId: req.parentChainId,
        size: stats.bytes,
        inodes: stats.inodes,
        entries: stats.entries,
        compression,
        mediaType: req.mediaType,
        unpackedAt: new Date().toISOString(),
      };
      // A plain write: nobody reads the temp dir, and the syncfs below makes the
      // metadata durable with the data (an fsync of its own stalls behind the
      // writeback of everything being downloaded at the same time).
      await fs.writeFile(path.join(tmp, META_FILE), JSON.stringify(meta, null, 2), { mode: 0o600 });
      if (this.sync) await this.syncGroup.sync();
      const final = path.join(this.dir, digestHex(chainId));
      try {
        await fs.rename(tmp, final);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
        // Someone stored the same chain meanwhile (same layer under another blob key).
        const existing = await this.get(chainId);
        if (existing) return existing;
        // A directory without valid metadata (damaged store): move it aside, take its place.
        const broken = path.join(this.dir, `${TMP_PREFIX}broken-${randomBytes(8).toString('hex')}`);
        await fs.rename(final, broken);
        this.log?.warn({ chainId, movedTo: broken }, 'replacing a layer dir with no valid metadata');
        await fs.rename(tmp, final);
        await fs.rm(broken, { recursive: true, force: true });
      }
      this.activeTmp.delete(tmp);
      // Without sync the layer's data is not durable either; the rename need not be.
      if (this.sync) await fsyncDir(this.dir);
      this.log?.info(
        {
          chainId,
          diffId,
          compression,
          entries: stats.entries,
          bytes: stats.bytes,
          streamed,
          ms: Date.now() - started,
        },
        'layer unpacked',
      );
      return {
        diffId,
        chainId,
        size: stats.bytes,
        inodes: stats.inodes,
        path: path.join(final, 'fs'),
        cached: false,
        streamed,
      };
    } catch (err) {
      throw asCapsaError(err, ctx);
    } finally {
      if (this.activeTmp.delete(tmp)) await fs.rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    }
  }

  /**
   * Unpacks from the bytes as they download, into the empty `job.fsDir`.
   * Undefined when that did not work out: no worker was free when the first
   * bytes came, or the stream fell back (the blob is stored by someone else,
   * the download restarted); `job.fsDir` is empty again then, and the caller
   * unpacks the stored blob. Any other failure (a hostile layer, a failed
   * download) is thrown once the worker has stopped writing.
   */
  private async unpackStreamed(
    stream: LayerByteStream,
    job: UnpackJob,
  ): Promise<Awaited<ReturnType<UnpackPool['run']>> | undefined> {
    // Take a worker only once bytes flow: a stream that never gets any (an import, a
    // blob another pull downloads) must not hold one.
    const it = stream[Symbol.asyncIterator]();
    let first: IteratorResult<Buffer>;
    try {
      first = await it.next();
    } catch (err) {
      if (isStreamFallback(err)) return undefined;
      throw err;
    }
    async function* rest(): AsyncGenerator<Buffer> {
      if (first.done) return;
      yield first.value;
      for (;;) {
        const r = await it.next();
        if (r.done) return;
        yield r.value;
      }
    }
    const run = this.pool.runStreamed(job, rest());
    if (!run) {
      stream.detach();
      await it.return?.(undefined);
      return undefined;
    }
    try {
      return await run;
    } catch (err) {
      if (!isStreamFallback(err)) throw err;
      // Start over from the stored blob, in an empty directory.
      await fs.rm(job.fsDir, { recursive: true, force: true });
      await fs.mkdir(job.fsDir, 0o755);
      return undefined;
    }
  }

  /**
   * Removes a layer (the GC calls this once nothing references it). Returns
   * false when it was not stored. Crash-safe: renamed to a .tmp- name first.
   */
  async deleteLayer(chainId: string): Promise<boolean> {
    if (!isSha256Digest(chainId)) {
      throw new InvalidArgumentError('chainId', `not a sha256 digest: ${JSON.stringify(chainId)}`, {
        stage: 'gc',
      });
    }
    await this.init();
    const pending = this.inflight.get(chainId);
    if (pending) await pending.catch(() => undefined);
    const dir = path.join(this.dir, digestHex(chainId));
    const doomed = path.join(this.dir, `${TMP_PREFIX}del-${randomBytes(8).toString('hex')}`);
    try {
      await fs.rename(dir, doomed);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw new InternalError(`deleting layer ${chainId}: ${(err as Error).message}`, { stage: 'gc', path: dir });
    }
    await fsyncDir(this.dir);
    await fs.rm(doomed, { recursive: true, force: true });
    return true;
  }
}

/** Removes leftover temp dirs of <root>/layers (interrupted unpacks and deletes). */
export async function cleanupLayerStore(root: string, log?: Logger): Promise<number> {
  return new LayerStore({ root, log }).cleanup();
}

/** The store's StreamFallback (matched by name: the layer store does not depend on the store). */
function isStreamFallback(err: unknown): boolean {
  return err instanceof Error && err.name === 'StreamFallback';
}

function waitFor<T>(work: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return work;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
