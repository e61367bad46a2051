// Turns a manifest whose blobs can be fetched into a recorded image: reads
// the config, works out chain IDs, fetches the layers that are not yet
// unpacked (bounded concurrency), unpacks each as soon as its blob is in —
// layers are independent diffs, so they unpack in parallel and overlap the
// downloads — and records the image once every layer is. Shared by pull
// and import.
import type { Logger } from '../../log';
import { asCapsaError, ErrorContext, InvalidArgumentError } from '../../errors';
import { BlobStream, ContentStore, DigestMismatchError, IngestTee } from './content-store';
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
 * assembler checks the result against it too). Layers are independent
 * diffs: the hook may run for a layer before (or while) the layer below it
 * is unpacked.
 *
 * With `opts.stream` (only when the assembler was told the hook streams):
 * the hook runs as the blob's download starts, so `blobPath` does not exist
 * yet. The hook may read the bytes from the stream as they arrive, or wait
 * for `stream.blob` and read the file; it must detach() a stream it does not
 * read. Either way nothing may become visible before `stream.blob` resolves
 * (the blob's digest verified), and a rejected `stream.blob` fails the unpack.
 */
export type UnpackHook = (
  layer: Descriptor,
  blobPath: string,
  parentChainId: string | undefined,
  signal: AbortSignal,
  expectedDiffId: string,
  opts?: { stream?: BlobStream },
) => Promise<UnpackResult>;

export interface AssemblerOptions {
  content: ContentStore;
  images: ImageStore;
  unpack: UnpackHook;
  /** True when a layer with this chain ID is already unpacked. Default: never (always unpack). */
  hasLayer?: (chainId: string) => Promise<boolean>;
  /** Layer downloads at once (default 3). */
  concurrency?: number;
  /**
   * The unpack hook takes `opts.stream`: each layer unpacks while its blob
   * downloads instead of after (default false).
   */
  streamLayers?: boolean;
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
  /**
   * Makes sure a blob is in the content store and returns its path. `tee`,
   * when the fetcher supports it, sees the bytes while they are written (see
   * IngestOptions.tee); a fetcher that ignores it just makes layers unpack
   * from the stored blob.
   */
  fetchBlob: (desc: Descriptor, signal: AbortSignal, tee?: IngestTee) => Promise<string>;
  /** fetchBlob feeds `tee`: with AssemblerOptions.streamLayers, layers unpack while they download. */
  fetchTees?: boolean;
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
  private readonly unpacking = new Map<string, { promise: Promise<UnpackResult | 'present'>; signal: AbortSignal }>();

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

      // Every needed layer: download (the semaphore bounds them, in layer order), then
      // unpack. Layers are independent diffs (one overlay lowerdir each; the parent
      // chain ID only names the result), so each unpacks as soon as its own blob is
      // in: the unpack pool runs them in parallel, and a small layer never waits for
      // the big one below it.
      const sem = new Semaphore(Math.max(1, this.opts.concurrency ?? 3));
      // Per-layer timing for the debug log (hack/bench-pull reads it): ms since assemble began.
      const t0 = Date.now();
      let failure: { err: unknown } | undefined;
      const layerTask = async (i: number): Promise<void> => {
        const layer = m.layers[i];
        const chainId = chainIds[i];
        const parent = i === 0 ? undefined : chainIds[i - 1];
        const unpack = (blobPath: string, stream?: BlobStream): Promise<UnpackResult | 'present'> => {
          unpackStart = Date.now() - t0;
          req.onEvent?.({ kind: 'unpack-start', index: i, digest: layer.digest, chainId });
          return this.unpackOnce(
            chainId,
            signal,
            () => this.opts.unpack(layer, blobPath, parent, signal, diffIds[i], stream ? { stream } : undefined),
            () => stream?.detach(),
          );
        };
        let unpackStart = 0;
        let unpacked: Promise<UnpackResult | 'present'> | undefined;
        let stream: BlobStream | undefined;
        const { blobPath, fetchAt } = await sem.run(async () => {
          signal.throwIfAborted();
          const start = Date.now() - t0;
          if (this.opts.streamLayers && req.fetchTees && !this.unpacking.has(chainId)) {
            // Unpack while downloading: the hook reads the bytes as they are written.
            stream = new BlobStream();
            unpacked = unpack(content.path(layer.digest), stream);
            unpacked.catch(() => undefined); // awaited below, after the download
          }
          try {
            const p = await req.fetchBlob(layer, signal, stream);
            stream?.stored(p);
            return { blobPath: p, fetchAt: [start, Date.now() - t0] };
          } catch (err) {
            stream?.fail(err);
            if (unpacked) await unpacked.catch(() => undefined);
            throw err;
          }
        });
        let result: UnpackResult | 'present';
        try {
          signal.throwIfAborted();
          result = await (unpacked ?? unpack(blobPath));
        } finally {
          stream?.detach();
        }
        if (result !== 'present' && (result.diffId !== diffIds[i] || result.chainId !== chainId))
          throw new DigestMismatchError(
            `layer ${i} (${layer.digest}): unpacked diff ID ${result.diffId} does not match the config's ${diffIds[i]}`,
            { ...context, stage: 'unpack' },
          );
        req.onEvent?.({ kind: 'unpack-done', index: i, digest: layer.digest, chainId });
        const unpackEnd = Date.now() - t0;
        // (a streamed unpack starts with its download)
        this.opts.logger?.debug(
          {
            index: i,
            digest: layer.digest,
            size: layer.size,
            fetchMs: fetchAt[1] - fetchAt[0],
            fetchAt,
            unpackMs: unpackEnd - unpackStart,
            unpackAt: [unpackStart, unpackEnd],
          },
          'layer timing',
        );
      };
      const tasks: Promise<void>[] = [];
      m.layers.forEach((layer, i) => {
        if (present[i]) {
          req.onEvent?.({ kind: 'layer-cached', index: i, digest: layer.digest, chainId: chainIds[i] });
          return;
        }
        tasks.push(
          layerTask(i).catch((err: unknown) => {
            // The first failure stops the others (their downloads and waits); it is the one reported.
            if (!failure) {
              failure = { err };
              controller.abort(err);
            }
          }),
        );
      });
      await Promise.all(tasks);
      if (failure) throw failure.err;
      const records: LayerRecord[] = m.layers.map((layer, i) => ({
        digest: layer.digest,
        mediaType: layer.mediaType,
        size: layer.size,
        diffId: diffIds[i],
        chainId: chainIds[i],
      }));

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

  /**
   * Runs one unpack per chain ID at a time; 'present' when the layer turned out
   * to exist already. A caller joining an unpack another pull started waits for
   * it; if that one fails only because its own pull gave up (its signal, not
   * ours, was aborted), this caller runs the unpack itself.
   */
  private async unpackOnce(
    chainId: string,
    signal: AbortSignal,
    fn: () => Promise<UnpackResult>,
    onSkip: () => void = () => undefined,
  ): Promise<UnpackResult | 'present'> {
    for (;;) {
      signal.throwIfAborted();
      const running = this.unpacking.get(chainId);
      if (running) {
        onSkip();
        try {
          return await running.promise;
        } catch (err) {
          if (!running.signal.aborted || signal.aborted) throw err;
          continue;
        }
      }
      const promise = (async () => {
        // Another pull may have finished this layer while we waited for the blob.
        if (this.opts.hasLayer && (await this.opts.hasLayer(chainId))) {
          onSkip();
          return 'present' as const;
        }
        return fn();
      })().finally(() => {
        if (this.unpacking.get(chainId)?.promise === promise) this.unpacking.delete(chainId);
      });
      this.unpacking.set(chainId, { promise, signal });
      return promise;
    }
  }
}
