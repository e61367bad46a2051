// A pull: reference → manifest (through mirrors and auth) → platform
// manifest → config + layers → unpacked layers → image record. Blobs
// already in the content store and layers already unpacked are not
// fetched again; concurrent pulls share downloads and unpacks.
import { randomBytes } from 'crypto';
import type { Logger } from '../../log';
import { asCapsaError, ErrorContext, InvalidArgumentError } from '../../errors';
import { AuthConfig } from './auth';
import { AssembleEvent, ImageAssembler } from './assemble';
import { ContentStore } from './content-store';
import { ImageRecord, ImageStore } from './image-store';
import {
  DEFAULT_MANIFEST_MAX_BYTES,
  DEFAULT_PLATFORM,
  ImageManifest,
  parseManifest,
  Platform,
  selectPlatformManifest,
} from './manifest';
import { BlobProgress, RegistryClient, RepositorySession } from './registry-client';
import { digestReference, formatReference, parseDockerRef, tagReference } from './reference';

export type PullEvent =
  | { kind: 'resolved'; digest: string; mediaType: string }
  | { kind: 'manifest'; digest: string }
  | ({ kind: 'blob' } & BlobProgress)
  | AssembleEvent;

export interface PullOptions {
  /** Credentials from the CRI request. */
  auth?: AuthConfig;
  signal?: AbortSignal;
  onEvent?: (e: PullEvent) => void;
}

export interface PullerOptions {
  registry: RegistryClient;
  assembler: ImageAssembler;
  /** Platform picked from manifest lists (default linux/amd64). */
  platform?: Platform;
  manifestMaxBytes?: number;
  logger?: Logger;
}

export class Puller {
  private readonly registry: RegistryClient;
  private readonly assembler: ImageAssembler;
  private readonly platform: Platform;
  private readonly manifestMaxBytes: number;
  private readonly log?: Logger;

  constructor(opts: PullerOptions) {
    this.registry = opts.registry;
    this.assembler = opts.assembler;
    this.platform = opts.platform ?? DEFAULT_PLATFORM;
    this.manifestMaxBytes = opts.manifestMaxBytes ?? DEFAULT_MANIFEST_MAX_BYTES;
    this.log = opts.logger;
  }

  private get content(): ContentStore {
    return this.assembler.content;
  }

  private get images(): ImageStore {
    return this.assembler.images;
  }

  /**
   * Pulls `image` (any reference form; normalized as Docker does) and
   * returns its record. Malformed → InvalidArgument('image'); unknown
   * image → NotFound; bad bytes → DigestMismatchError; stalled →
   * DeadlineExceeded. Every error carries {stage: 'pull', image}.
   */
  async pull(image: string, opts: PullOptions = {}): Promise<ImageRecord> {
    const ref = parseDockerRef(image);
    const name = formatReference(ref);
    const context: ErrorContext = { stage: 'pull', image: name };
    const owner = `pull:${randomBytes(8).toString('hex')}`;
    const started = Date.now();
    try {
      await this.images.pin(owner, [], { persist: false });
      const session = await this.registry.session(ref, { auth: opts.auth, signal: opts.signal, context });
      const top = await session.getManifest(ref.digest ?? ref.tag!, opts.signal);
      const parsed = parseManifest(top.bytes, top.contentType, context);
      const topType = parsed.kind === 'index' ? parsed.index.mediaType : parsed.manifest.mediaType;
      opts.onEvent?.({ kind: 'resolved', digest: top.digest, mediaType: topType });
      await this.images.pin(owner, [], { blobs: [top.digest], persist: false });
      await this.content.writeBlob(top.bytes, top.digest, { signal: opts.signal, context });

      let manifest: ImageManifest;
      let manifestDigest = top.digest;
      const extraBlobs: string[] = [];
      if (parsed.kind === 'index') {
        const desc = selectPlatformManifest(parsed.index, this.platform, context);
        await this.images.pin(owner, [], { blobs: [desc.digest], persist: false });
        extraBlobs.push(top.digest);
        manifestDigest = desc.digest;
        manifest = await this.platformManifest(session, desc.digest, desc.mediaType, opts.signal, context);
      } else {
        manifest = parsed.manifest;
      }
      opts.onEvent?.({ kind: 'manifest', digest: manifestDigest });

      const rec = await this.assembler.assemble({
        manifest,
        manifestDigest,
        extraBlobs,
        repoTags: ref.tag !== undefined ? [tagReference(ref, ref.tag)] : [],
        repoDigests: [digestReference(ref, top.digest)],
        fetchBlob: (desc, signal, tee) =>
          session.fetchBlob(desc, this.content, {
            signal,
            tee,
            onProgress: opts.onEvent ? (p) => opts.onEvent?.({ kind: 'blob', ...p }) : undefined,
          }),
        fetchTees: true,
        leaseOwner: owner,
        signal: opts.signal,
        onEvent: opts.onEvent,
        context,
      });
      this.log?.info({ image: name, id: rec.id, ms: Date.now() - started }, 'pulled image');
      return rec;
    } catch (err) {
      const e = asCapsaError(err, context);
      if (!e.context.stage) Object.assign(e.context, context);
      throw e;
    } finally {
      await this.images.unpin(owner);
    }
  }

  /** A platform manifest from an index: from the content store when we have it, else from the registry. */
  private async platformManifest(
    session: RepositorySession,
    digest: string,
    mediaType: string,
    signal: AbortSignal | undefined,
    context: ErrorContext,
  ): Promise<ImageManifest> {
    let bytes: Buffer;
    let contentType: string | undefined = mediaType;
    if (await this.content.has(digest)) {
      bytes = await this.content.read(digest, this.manifestMaxBytes, context);
    } else {
      const got = await session.getManifest(digest, signal);
      bytes = got.bytes;
      contentType = got.contentType ?? mediaType;
      await this.content.writeBlob(bytes, digest, { signal, context });
    }
    const parsed = parseManifest(bytes, contentType, context);
    if (parsed.kind !== 'manifest')
      throw new InvalidArgumentError('image', `manifest ${digest} selected from the index is itself an index`, context);
    return parsed.manifest;
  }
}
