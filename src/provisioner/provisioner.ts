// The provisioner: one object that owns the content store, the image
// index, the layer store and the puller, and assembles container root
// filesystems from them through a Backend (seed 002's "Store + Backend").
// The ImageService and the containerizer talk to this, never to the parts.
import { promises as fs } from 'fs';
import * as path from 'path';
import { Config } from '../config/schema';
import type { Logger } from '../log';
import { Backend, selectBackend } from './backends';
import { LayerStore, cleanupLayerStore } from './layers';
import { AuthConfig } from './store/auth';
import { ImageRecord, RemoveResult } from './store/image-store';
import { ImportProgress } from './store/import';
import type { PullEvent } from './store/puller';
import { Store, openStore } from './store';

export interface ProvisionerOptions {
  config: Config;
  log: Logger;
  /** syncfs each unpacked layer before it becomes visible (default true). */
  syncLayers?: boolean;
}

export interface FsUsage {
  bytes: number;
  inodes: number;
}

/** Told of a pull's start; gets its events and its end (observability/pulls.ts). */
export type PullWatcher = (image: string) => { event(e: PullEvent): void; done(err?: unknown): void };

export class Provisioner {
  private backendPromise?: Promise<Backend>;
  private watcher?: PullWatcher;

  private constructor(
    private readonly config: Config,
    readonly store: Store,
    readonly layers: LayerStore,
    private readonly log: Logger,
  ) {}

  /** Opens the stores, removing what a crash left half-written, and frees what nothing references. */
  static async open(opts: ProvisionerOptions): Promise<Provisioner> {
    const { config } = opts;
    const log = opts.log.child({ component: 'provisioner' });
    await cleanupLayerStore(config.root, log);
    const layers = new LayerStore({ root: config.root, log, sync: opts.syncLayers ?? true });
    await layers.init();
    const store = await openStore({
      root: config.root,
      registry: { registries: config.registries, credentialsFile: config.credentials_file },
      stallTimeoutMs: config.pull_stall_timeout * 1000,
      logger: log,
      layers: {
        has: (chainId) => layers.hasLayer(chainId),
        deleteLayer: async (chainId) => {
          await layers.deleteLayer(chainId);
        },
        listLayers: () => layers.listLayers(),
        unpack: async (layer, blobPath, parentChainId, signal, diffIdExpected, o) => {
          const r = await layers.unpackLayer({
            blobPath,
            mediaType: layer.mediaType,
            parentChainId,
            diffIdExpected,
            signal,
            stream: o?.stream,
          });
          return { diffId: r.diffId, chainId: r.chainId };
        },
        streams: true,
      },
    });
    const freed = await store.images.gc();
    if (freed.blobs.length || freed.layers.length) {
      log.info({ blobs: freed.blobs.length, layers: freed.layers.length }, 'freed content left by a crash');
    }
    return new Provisioner(config, store, layers, log);
  }

  async close(): Promise<void> {
    this.store.close();
    await this.layers.close();
  }

  pull(image: string, auth?: AuthConfig, signal?: AbortSignal): Promise<ImageRecord> {
    // The unpack workers boot while the manifest and config download, for an image we do not
    // have yet: an idle daemon holds none (each is a V8 heap of its own, 12-18 MB), and a pull
    // of an image already here needs none. (A moved tag boots them when its first layer comes.)
    if (!this.knows(image)) this.layers.warmUp();
    const watch = this.watcher?.(image);
    if (!watch) return this.store.pull(image, { auth, signal });
    return this.store.pull(image, { auth, signal, onEvent: (e) => watch.event(e) }).then(
      (rec) => {
        watch.done();
        return rec;
      },
      (err: unknown) => {
        watch.done(err);
        throw err;
      },
    );
  }

  private knows(image: string): boolean {
    try {
      return this.find(image) !== undefined;
    } catch {
      return false; // a bad reference: the pull says why
    }
  }

  /** Every pull from now on reports to `w` (metrics, traces). */
  watchPulls(w: PullWatcher): void {
    this.watcher = w;
  }

  /** By id, id prefix, tag or digest reference; undefined when unknown. */
  find(ref: string): ImageRecord | undefined {
    return this.store.images.resolve(ref, { image: ref });
  }

  list(): ImageRecord[] {
    return this.store.images.list();
  }

  /** Removes a tag (when the image has others) or the whole image, then frees what nothing uses. */
  async remove(ref: string): Promise<RemoveResult> {
    const result = await this.store.removeImage(ref);
    if (result.removed) {
      this.log.info(
        { image: ref, blobs: result.gc?.blobs.length ?? 0, layers: result.gc?.layers.length ?? 0 },
        'image removed',
      );
    }
    return result;
  }

  importFile(file: string, onProgress?: (p: ImportProgress) => void): Promise<ImageRecord[]> {
    return this.store.import(file, { onProgress });
  }

  /** Bytes and inodes used by the unpacked layers and the content store. */
  async imageFsUsage(): Promise<FsUsage> {
    const a = await diskUsage(this.layers.dir);
    const b = await diskUsage(path.join(this.config.root, 'content'));
    return { bytes: a.bytes + b.bytes, inodes: a.inodes + b.inodes };
  }

  /** The directory whose filesystem holds images (ImageFsInfo's mountpoint). */
  get imageFsDir(): string {
    return this.config.root;
  }

  /** The rootfs backend, chosen once (overlay where it works, else copy). */
  backend(): Promise<Backend> {
    this.backendPromise ??= selectBackend({ stateDir: path.join(this.config.root, 'rootfs'), log: this.log });
    return this.backendPromise;
  }

  /** Lowest-first layer directories of an image, for a Backend. */
  layerDirs(image: ImageRecord): string[] {
    return image.layers.map((l) => this.layers.layerPath(l.chainId));
  }
}

/**
 * Bytes (allocated blocks) and inodes under `dir`, without following
 * symlinks; hard links counted once. Runs in the background of an RPC, so
 * it yields between directories.
 */
export async function diskUsage(dir: string): Promise<FsUsage> {
  const seen = new Set<string>();
  let bytes = 0;
  let inodes = 0;
  const stack = [dir];
  while (stack.length) {
    const d = stack.pop()!;
    let entries: string[];
    try {
      entries = await fs.readdir(d);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    for (const name of entries) {
      const p = path.join(d, name);
      let st;
      try {
        st = await fs.lstat(p, { bigint: true });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      const key = `${st.dev}:${st.ino}`;
      if (seen.has(key)) continue;
      seen.add(key);
      inodes++;
      bytes += Number(st.blocks) * 512;
      if (st.isDirectory()) stack.push(p);
    }
  }
  return { bytes, inodes };
}
