// The provisioner's Store in one object: content store, image index,
// registry client, puller and importer wired together. The ImageService
// and `capsa image import` open it with openStore() and the layer store's
// hooks; everything else is exported for finer use and tests.
import type { Logger } from '../../log';
import { ImageAssembler, UnpackHook } from './assemble';
import { AuthConfig } from './auth';
import { ContentStore } from './content-store';
import { GcResult, ImageRecord, ImageStore, LayerHooks, RemoveResult } from './image-store';
import { importImages, ImportProgress } from './import';
import { Platform } from './manifest';
import { PullEvent, Puller } from './puller';
import { RegistryClient, RegistryConfig } from './registry-client';

export interface StoreOptions {
  /** State root, e.g. /var/lib/capsa: content/ and images/ live under it. */
  root: string;
  /** registries (mirrors, insecure, ca_file) and credentialsFile from the daemon config. */
  registry?: RegistryConfig;
  /** No-progress timeout for registry requests (daemon config pull_stall_timeout, in ms). */
  stallTimeoutMs?: number;
  /** Retries per endpoint on network errors, stalls, 5xx, 429 (default 3). */
  retries?: number;
  /** Layer downloads at once per pull (default 3). */
  concurrency?: number;
  platform?: Platform;
  /** fsync blobs before they appear (default true). */
  fsync?: boolean;
  /** The layer store: unpack one layer, tell whether a chain ID is unpacked, delete / list layers. */
  layers: LayerHooks & {
    unpack: UnpackHook;
    has(chainId: string): Promise<boolean>;
    /** `unpack` takes a stream: pulled layers unpack while they download (see UnpackHook). */
    streams?: boolean;
  };
  logger?: Logger;
}

export interface Store {
  readonly content: ContentStore;
  readonly images: ImageStore;
  readonly registry: RegistryClient;
  readonly puller: Puller;
  readonly assembler: ImageAssembler;
  /** Pulls and records an image (see Puller.pull). */
  pull(
    image: string,
    opts?: { auth?: AuthConfig; signal?: AbortSignal; onEvent?: (e: PullEvent) => void },
  ): Promise<ImageRecord>;
  /** Imports an OCI layout (dir or tar) or docker-archive tar. */
  import(
    file: string,
    opts?: { baseName?: string; signal?: AbortSignal; onProgress?: (p: ImportProgress) => void },
  ): Promise<ImageRecord[]>;
  /** CRI RemoveImage semantics, then a GC of what nothing references any more. */
  removeImage(ref: string): Promise<RemoveResult & { gc?: GcResult }>;
  /** Closes idle registry connections. */
  close(): void;
}

/** Creates the directories, loads the image index and leases, and cleans temp files left by a crash. */
export async function openStore(opts: StoreOptions): Promise<Store> {
  const content = new ContentStore(opts.root, { fsync: opts.fsync });
  await content.init();
  const images = new ImageStore(opts.root, { content, layers: opts.layers, logger: opts.logger });
  await images.init();
  const registry = new RegistryClient({
    ...opts.registry,
    stallTimeoutMs: opts.stallTimeoutMs,
    retries: opts.retries,
    logger: opts.logger,
  });
  const assembler = new ImageAssembler({
    content,
    images,
    unpack: opts.layers.unpack,
    hasLayer: (c) => opts.layers.has(c),
    concurrency: opts.concurrency,
    streamLayers: opts.layers.streams,
    logger: opts.logger,
  });
  const puller = new Puller({ registry, assembler, platform: opts.platform, logger: opts.logger });
  return {
    content,
    images,
    registry,
    puller,
    assembler,
    pull: (image, o = {}) => puller.pull(image, o),
    import: (file, o = {}) => importImages(file, { assembler, platform: opts.platform, ...o }),
    async removeImage(ref) {
      const r = await images.removeImage(ref);
      if (!r.removed) return r;
      return { ...r, gc: await images.gc() };
    },
    close: () => registry.close(),
  };
}

export * from './assemble';
export * from './auth';
export * from './content-store';
export * from './digest';
export * from './image-store';
export * from './import';
export * from './manifest';
export * from './puller';
export * from './reference';
export * from './registry-client';
export { indexTar, resolveMember, type TarEntry } from './tar-index';
