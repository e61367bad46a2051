// Turns a manifest whose blobs can be fetched into a recorded image: reads
// the config, works out chain IDs, fetches the layers that are not yet
// unpacked (bounded concurrency), unpacks them strictly in order as soon
// as each blob and its parent are ready — so unpacking overlaps the
// downloads — and records the image. Shared by pull and import.
import type { Logger } from '../../log';
import { asCapsaError, ErrorContext, InvalidArgumentError } from '../../errors';
import { ContentStore, DigestMismatchError } from './content-store';
import { chainIds as computeChainIds } from './digest';
import { ImageRecord, ImageStore, LayerRecord } from './image-store';
import { checkImageManifest, Descriptor, ImageManifest, parseImageConfig } from './manifest';

export interface UnpackResult {
  diffId: string;
  chainId: string;
}

/**
 * Unpacks one layer blob on top of `parentChainId` (undefined for the base
 * layer) into the layer store, and reports the diff ID it computed from the
 * uncompressed tar and the resulting chain ID. Provided by the unpacker.
 * `expectedDiffId` is the image config's diff ID for the layer (the
 * assembler checks the result against it too).
 */
export type UnpackHook = (
  layer: Descriptor,
  blobPath: string,
  parentChainId: string | undefined,
  signal: AbortSignal,
  expectedDiffId: string,
) => Promise<UnpackResult>;

export interface AssemblerOptions {
  content: ContentStore;
  images: ImageStore;
  unpack: UnpackHook;
  /** True when a layer with this chain ID is already unpacked. Default: never (always unpack). */
  hasLayer?: (chainId: string) => Promise<boolean>;
  /** Layer downloads at once (default 3). */
  concurrency?: number;
  logger?: Logger;
}

export type AssembleEvent =
  | { kind: 'layer-cached'; index: number; digest: string; chainId: string }
  | { kind: 'unpack-start'; index: number; digest: string; chainId: string }
  | { kind: 'unpack-done'; index: number; digest: string; chainId: string };

export interface AssembleRequest {
  manifest: ImageManifest;
  manifestDigest: string;
  /** Extra blobs the image keeps (e.g. the index it was selected from). */
  extraBlobs?: string[];
  repoTags?: string[];
  repoDigests?: string[];
  /** Makes sure a blob is in the content store and returns its path. */
  fetchBlob: (desc: Descriptor, signal: AbortSignal) => Promise<string>;
  /** Lease owner already pinned by the caller; assemble adds what it learns. */
  leaseOwner: string;
  signal?: AbortSignal;
  onEvent?: (e: AssembleEvent) => void;
  context: ErrorContext;
}

const CONFIG_MAX_BYTES = 32 * 1024 * 1024;

/** A counting semaphore. */
export class Semaphore {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly limit: number) {}
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((r) => this.waiting.push(r));
    this.active++;
    try {
      return await fn();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}

export class ImageAssembler {
  private readonly opts: AssemblerOptions;
  /** One unpack per chain ID at a time, shared by concurrent pulls and imports. */
  private readonly unpacking = new Map<string, Promise<UnpackResult | 'present'>>();

  constructor(opts: AssemblerOptions) {
    this.opts = opts;
  }

  get content(): ContentStore {
    return this.opts.content;
  }

  get images(): ImageStore {
    return this.opts.images;
  }

  async assemble(req: AssembleRequest): Promise<ImageRecord> {
    const { content, images } = this.opts;
    const context = req.context;
    checkImageManifest(req.manifest, context);
    const m = req.manifest;
    const controller = new AbortController();
    const onAbort = (): void => controller.abort(req.signal?.reason);
    if (req.signal?.aborted) controller.abort(req.signal.reason);
    req.signal?.addEventListener('abort', onAbort, { once: true });
    const signal = controller.signal;
    try {
      await images.pin(req.leaseOwner, [], {
        blobs: [m.config.digest, ...m.layers.map((l) => l.digest)],
        persist: false,
      });
      // The config: small, needed first (diff IDs → chain IDs).
      await req.fetchBlob(m.config, signal);
      const configBytes = await content.read(m.config.digest, CONFIG_MAX_BYTES, context);
      const config = parseImageConfig(configBytes, context);
      const diffIds = config.rootfs.diff_ids;
      if (diffIds.length !== m.layers.length)
        throw new InvalidArgumentError(
          'image',
          `manifest has ${m.layers.length} layers but the config lists ${diffIds.length} diff IDs`,
          context,
        );
      const chainIds = computeChainIds(diffIds);
      await images.pin(req.leaseOwner, chainIds, { persist: false });
      const present = await Promise.all(chainIds.map((c) => (this.opts.hasLayer ? this.opts.hasLayer(c) : false)));

      // Start every needed download now (the semaphore bounds them, in layer order).
      const sem = new Semaphore(Math.max(1, this.opts.concurrency ?? 3));
      const downloads = new Map<number, Promise<string>>();
      // Per-layer timing for the debug log (hack/bench-pull reads it): ms since assemble began.
      const t0 = Date.now();
      const fetchTimes = new Map<number, { start: number; end: number }>();
      m.layers.forEach((layer, i) => {
        if (present[i]) return;
        const p = sem.run(async () => {
          signal.throwIfAborted();
          const start = Date.now() - t0;
          const blob = await req.fetchBlob(layer, signal);
          fetchTimes.set(i, { start, end: Date.now() - t0 });
          return blob;
        });
        p.catch(() => undefined); // observed below; keep an early failure from going unhandled
        downloads.set(i, p);
      });

      const records: LayerRecord[] = [];
      try {
        for (let i = 0; i < m.layers.length; i++) {
          const layer = m.layers[i];
          const chainId = chainIds[i];
          if (present[i]) {
            req.onEvent?.({ kind: 'layer-cached', index: i, digest: layer.digest, chainId });
          } else {
            const blobPath = await downloads.get(i)!;
            const unpackStart = Date.now() - t0;
            req.onEvent?.({ kind: 'unpack-start', index: i, digest: layer.digest, chainId });
            const parent = i === 0 ? undefined : chainIds[i - 1];
            const result = await this.unpackOnce(chainId, () =>
              this.opts.unpack(layer, blobPath, parent, signal, diffIds[i]),
            );
            if (result !== 'present' && (result.diffId !== diffIds[i] || result.chainId !== chainId))
              throw new DigestMismatchError(
                `layer ${i} (${layer.digest}): unpacked diff ID ${result.diffId} does not match the config's ${diffIds[i]}`,
                { ...context, stage: 'unpack' },
              );
            req.onEvent?.({ kind: 'unpack-done', index: i, digest: layer.digest, chainId });
            const f = fetchTimes.get(i);
            const unpackEnd = Date.now() - t0;
            this.opts.logger?.debug(
              {
                index: i,
                digest: layer.digest,
                size: layer.size,
                fetchMs: f ? f.end - f.start : undefined,
                fetchAt: f && [f.start, f.end],
                unpackMs: unpackEnd - unpackStart,
                unpackAt: [unpackStart, unpackEnd],
              },
              'layer timing',
            );
          }
          records.push({
            digest: layer.digest,
            mediaType: layer.mediaType,
            size: layer.size,
            diffId: diffIds[i],
            chainId,
          });
        }
      } catch (err) {
        controller.abort(err);
        await Promise.allSettled(downloads.values());
        throw err;
      }

      const size =
        m.config.size + m.layers.reduce((n, l) => n + l.size, 0) + ((await content.size(req.manifestDigest)) ?? 0);
      return await images.add({
        id: m.config.digest,
        repoTags: req.repoTags ?? [],
        repoDigests: req.repoDigests ?? [],
        manifestDigest: req.manifestDigest,
        manifestMediaType: m.mediaType,
        configDigest: m.config.digest,
        layers: records,
        size,
        config,
        blobs: [
          ...new Set([
            ...(req.extraBlobs ?? []),
            req.manifestDigest,
            m.config.digest,
            ...m.layers.map((l) => l.digest),
          ]),
        ],
      });
    } catch (err) {
      throw asCapsaError(err, context);
    } finally {
      req.signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Runs one unpack per chain ID at a time; 'present' when the layer turned out to exist already. */
  private unpackOnce(chainId: string, fn: () => Promise<UnpackResult>): Promise<UnpackResult | 'present'> {
    let p = this.unpacking.get(chainId);
    if (!p) {
      p = (async () => {
        // Another pull may have finished this layer while we waited for the blob.
        if (this.opts.hasLayer && (await this.opts.hasLayer(chainId))) return 'present' as const;
        return fn();
      })().finally(() => this.unpacking.delete(chainId));
      this.unpacking.set(chainId, p);
    }
    return p;
  }
}
