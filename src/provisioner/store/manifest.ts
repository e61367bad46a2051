// Manifest formats the store understands: Docker schema 2 manifests and
// manifest lists, OCI manifests and indexes. Parsing here validates the
// shape we rely on, so later code can trust the fields it reads.
import { CapsaError, ErrorContext, NotFoundError, UnimplementedError } from '../../errors';
import { isDigest } from './digest';

export const MediaType = {
  DockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  DockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  DockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  DockerConfig: 'application/vnd.docker.container.image.v1+json',
  DockerLayer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  DockerLayerForeign: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  DockerLayerTar: 'application/vnd.docker.image.rootfs.diff.tar',
  OciManifest: 'application/vnd.oci.image.manifest.v1+json',
  OciIndex: 'application/vnd.oci.image.index.v1+json',
  OciConfig: 'application/vnd.oci.image.config.v1+json',
  OciLayer: 'application/vnd.oci.image.layer.v1.tar',
  OciLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  OciLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  OciLayerNonDist: 'application/vnd.oci.image.layer.nondistributable.v1.tar',
  OciLayerNonDistGzip: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  OciLayerNonDistZstd: 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
} as const;

/** The Accept header for manifest requests, most specific first. */
export const MANIFEST_ACCEPT = [
  MediaType.OciIndex,
  MediaType.DockerManifestList,
  MediaType.OciManifest,
  MediaType.DockerManifest,
].join(', ');

export const DEFAULT_MANIFEST_MAX_BYTES = 4 * 1024 * 1024;

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
  'os.version'?: string;
  'os.features'?: string[];
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  platform?: Platform;
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

/** The parts of an image config (OCI image-spec config) the daemon reads. */
export interface ImageConfig {
  architecture?: string;
  os?: string;
  variant?: string;
  created?: string;
  author?: string;
  config?: {
    User?: string;
    Env?: string[];
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    WorkingDir?: string;
    Labels?: Record<string, string> | null;
    Volumes?: Record<string, object> | null;
    ExposedPorts?: Record<string, object> | null;
    StopSignal?: string;
    [key: string]: unknown;
  };
  rootfs: { type: string; diff_ids: string[] };
  history?: unknown[];
  [key: string]: unknown;
}

export type ParsedManifest = { kind: 'manifest'; manifest: ImageManifest } | { kind: 'index'; index: ImageIndex };

function bad(message: string, context: ErrorContext): CapsaError {
  return new CapsaError('InvalidArgument', message, { ...context, stage: context.stage ?? 'pull' });
}

export function isIndexMediaType(mt: string): boolean {
  return mt === MediaType.OciIndex || mt === MediaType.DockerManifestList;
}

export function isManifestMediaType(mt: string): boolean {
  return mt === MediaType.OciManifest || mt === MediaType.DockerManifest;
}

/** Layer media types we can unpack (others, e.g. foreign layers with URLs, are refused). */
export function isLayerMediaType(mt: string): boolean {
  return (
    mt === MediaType.DockerLayer ||
    mt === MediaType.DockerLayerTar ||
    mt === MediaType.DockerLayerForeign ||
    mt === MediaType.OciLayer ||
    mt === MediaType.OciLayerGzip ||
    mt === MediaType.OciLayerZstd ||
    mt === MediaType.OciLayerNonDist ||
    mt === MediaType.OciLayerNonDistGzip ||
    mt === MediaType.OciLayerNonDistZstd
  );
}

function validateDescriptor(d: unknown, what: string, context: ErrorContext): Descriptor {
  if (typeof d !== 'object' || d === null) throw bad(`${what}: descriptor is not an object`, context);
  const o = d as Record<string, unknown>;
  if (typeof o.digest !== 'string' || !isDigest(o.digest))
    throw bad(`${what}: invalid digest ${JSON.stringify(o.digest)}`, context);
  if (typeof o.size !== 'number' || !Number.isSafeInteger(o.size) || o.size < 0)
    throw bad(`${what}: invalid size ${JSON.stringify(o.size)}`, context);
  if (typeof o.mediaType !== 'string') throw bad(`${what}: missing mediaType`, context);
  return o as unknown as Descriptor;
}

/**
 * Parses manifest bytes. `contentType` (the response header, or the
 * descriptor's media type) is used when the JSON has no mediaType field,
 * as OCI allows. Schema 1 manifests are refused as Unimplemented.
 */
export function parseManifest(
  bytes: Uint8Array,
  contentType: string | undefined,
  context: ErrorContext = {},
): ParsedManifest {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(Buffer.from(bytes).toString('utf8')) as Record<string, unknown>;
  } catch {
    throw bad('manifest is not valid JSON', context);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
    throw bad('manifest is not a JSON object', context);
  const ct = (contentType ?? '').split(';')[0].trim();
  let mt = typeof doc.mediaType === 'string' ? doc.mediaType : '';
  if (
    doc.schemaVersion === 1 ||
    mt === MediaType.DockerSchema1 ||
    mt === MediaType.DockerSchema1Signed ||
    ct === MediaType.DockerSchema1 ||
    ct === MediaType.DockerSchema1Signed
  )
    throw new UnimplementedError('Docker schema 1 manifests are not supported', {
      ...context,
      stage: context.stage ?? 'pull',
    });
  if (doc.schemaVersion !== 2)
    throw bad(`unsupported manifest schemaVersion ${JSON.stringify(doc.schemaVersion)}`, context);
  if (!mt) {
    if (isIndexMediaType(ct) || isManifestMediaType(ct)) mt = ct;
    else if (Array.isArray(doc.manifests)) mt = MediaType.OciIndex;
    else if (doc.config !== undefined) mt = MediaType.OciManifest;
  }
  if (isIndexMediaType(mt)) {
    if (!Array.isArray(doc.manifests)) throw bad('index has no manifests array', context);
    const manifests = doc.manifests.map((d, i) => validateDescriptor(d, `manifests[${i}]`, context));
    return { kind: 'index', index: { ...(doc as object), schemaVersion: 2, mediaType: mt, manifests } as ImageIndex };
  }
  if (isManifestMediaType(mt)) {
    const config = validateDescriptor(doc.config, 'config', context);
    if (!Array.isArray(doc.layers)) throw bad('manifest has no layers array', context);
    const layers = doc.layers.map((d, i) => validateDescriptor(d, `layers[${i}]`, context));
    return {
      kind: 'manifest',
      manifest: { ...(doc as object), schemaVersion: 2, mediaType: mt, config, layers } as ImageManifest,
    };
  }
  throw new UnimplementedError(`unsupported manifest media type "${mt || ct}"`, {
    ...context,
    stage: context.stage ?? 'pull',
  });
}

/** Validates an image config blob: JSON with rootfs.diff_ids of sha256 digests. */
export function parseImageConfig(bytes: Uint8Array, context: ErrorContext = {}): ImageConfig {
  let doc: ImageConfig;
  try {
    doc = JSON.parse(Buffer.from(bytes).toString('utf8')) as ImageConfig;
  } catch {
    throw bad('image config is not valid JSON', context);
  }
  if (typeof doc !== 'object' || doc === null || typeof doc.rootfs !== 'object' || doc.rootfs === null)
    throw bad('image config has no rootfs', context);
  if (!Array.isArray(doc.rootfs.diff_ids) || !doc.rootfs.diff_ids.every((d) => typeof d === 'string' && isDigest(d)))
    throw bad('image config has invalid rootfs.diff_ids', context);
  return doc;
}

export const DEFAULT_PLATFORM: Platform = { os: 'linux', architecture: 'amd64' };

/** Normalizes the variant for comparison, as containerd does (arm64 v8 is the default, amd64 v1). */
function normalizeVariant(arch: string, variant: string | undefined): string {
  const v = variant ?? '';
  if (arch === 'arm64' && (v === '' || v === 'v8')) return 'v8';
  if (arch === 'amd64' && (v === '' || v === 'v1')) return 'v1';
  if (arch === 'arm' && v === '') return 'v7';
  return v;
}

/**
 * Picks the manifest for `want` from an index: entries with a matching OS
 * and architecture; an exact variant match wins, then an entry with no
 * variant. Attestation manifests (unknown/unknown) never match.
 * None → NotFound naming the platform.
 */
export function selectPlatformManifest(
  index: ImageIndex,
  want: Platform = DEFAULT_PLATFORM,
  context: ErrorContext = {},
): Descriptor {
  const candidates = index.manifests.filter(
    (d) => isManifestMediaType(d.mediaType) || isIndexMediaType(d.mediaType) || d.mediaType === '',
  );
  const wantVariant = normalizeVariant(want.architecture, want.variant);
  let best: Descriptor | undefined;
  let bestScore = -1;
  for (const d of candidates) {
    const p = d.platform;
    if (!p) continue;
    if (p.os !== want.os || p.architecture !== want.architecture) continue;
    const v = normalizeVariant(p.architecture, p.variant);
    let score: number;
    if (v === wantVariant) score = 2;
    else if (!p.variant) score = 1;
    else continue;
    if (score > bestScore) {
      best = d;
      bestScore = score;
    }
  }
  if (!best) {
    // An index whose single entry has no platform at all is a plain wrapper.
    const noPlatform = candidates.filter((d) => !d.platform);
    if (noPlatform.length === 1 && candidates.length === 1) return noPlatform[0];
    const v = want.variant ? `/${want.variant}` : '';
    throw new NotFoundError(`no matching manifest for ${want.os}/${want.architecture}${v} in the manifest list`, {
      ...context,
      stage: context.stage ?? 'pull',
    });
  }
  return best;
}

/** Rejects a manifest whose layers we cannot unpack or whose config is not an image config. */
export function checkImageManifest(m: ImageManifest, context: ErrorContext = {}): void {
  const cmt = m.config.mediaType;
  if (cmt !== MediaType.DockerConfig && cmt !== MediaType.OciConfig)
    throw new UnimplementedError(`unsupported config media type "${cmt}" (not a container image)`, {
      ...context,
      stage: context.stage ?? 'pull',
    });
  m.layers.forEach((l, i) => {
    if (!isLayerMediaType(l.mediaType))
      throw new UnimplementedError(`layers[${i}]: unsupported layer media type "${l.mediaType}"`, {
        ...context,
        stage: context.stage ?? 'pull',
      });
  });
}
