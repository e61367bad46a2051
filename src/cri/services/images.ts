// ImageService handlers: PullImage, ImageStatus, ListImages (and its
// streaming twin StreamImages), RemoveImage, ImageFsInfo. Validation here, the work in the provisioner.
import { imageVerboseInfo, toCriImage } from '../image-mapping';
import { InvalidArgumentError } from '../../errors';
import {
  Image,
  ImageFilter,
  ImageFsInfoRequest,
  ImageFsInfoResponse,
  ImageStatusRequest,
  ImageStatusResponse,
  ListImagesRequest,
  ListImagesResponse,
  PullImageRequest,
  PullImageResponse,
  RemoveImageRequest,
  RemoveImageResponse,
  StreamImagesRequest,
  StreamImagesResponse,
  type ImageServiceServer,
} from '../../gen/runtime/v1/api';
import { Provisioner } from '../../provisioner/provisioner';
import { AuthConfig } from '../../provisioner/store/auth';
import type { CallContext, ServiceHandlers } from './handler';

export interface ImageServiceDeps {
  provisioner: Provisioner;
  /** Writable container layers live here (ImageFsInfo container_filesystems). */
  containerFsDir: string;
  /** Usage of the writable layers; absent until containers exist. */
  containerFsUsage?: () => Promise<{ bytes: number; inodes: number }>;
}

/** Images per StreamImages message (an Image is a few hundred bytes: tags, digests, size). */
const STREAM_CHUNK = 100;

function requireImage(spec: { image: string } | undefined, field: string): string {
  const ref = spec?.image?.trim() ?? '';
  if (ref === '') throw new InvalidArgumentError(field, 'an image reference is required');
  return ref;
}

/**
 * Runs a provisioner call for the reference the client sent in `field`.
 * The store names a malformed reference's field "image"; the error should
 * name the request's field (`image.image`, `filter.image.image`).
 */
async function forRequestImage<T>(field: string, fn: () => Promise<T> | T): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof InvalidArgumentError && err.context.field === 'image' && err.message.startsWith('image: '))
      throw new InvalidArgumentError(field, err.message.slice('image: '.length), err.context);
    throw err;
  }
}

function authOf(req: PullImageRequest): AuthConfig | undefined {
  const a = req.auth;
  if (!a) return undefined;
  if (!a.username && !a.password && !a.auth && !a.identityToken && !a.registryToken) return undefined;
  return {
    username: a.username,
    password: a.password,
    auth: a.auth,
    serverAddress: a.serverAddress,
    identityToken: a.identityToken,
    registryToken: a.registryToken,
  };
}

export function imageHandlers(deps: ImageServiceDeps): ServiceHandlers<ImageServiceServer> {
  const p = deps.provisioner;

  const pullImage = async (req: PullImageRequest, ctx: CallContext): Promise<PullImageResponse> => {
    const ref = requireImage(req.image, 'image.image');
    const rec = await forRequestImage('image.image', () => p.pull(ref, authOf(req), ctx.signal));
    return { imageRef: rec.id };
  };

  const imageStatus = async (req: ImageStatusRequest): Promise<ImageStatusResponse> => {
    const ref = requireImage(req.image, 'image.image');
    const rec = await forRequestImage('image.image', () => p.find(ref));
    // CRI: an unknown image is not an error; the image field stays empty.
    if (!rec) return { image: undefined, info: {} };
    return { image: toCriImage(rec), info: req.verbose ? imageVerboseInfo(rec) : {} };
  };

  /** The images a ListImages or StreamImages filter selects: one reference (tag, digest, id, id prefix) or all. */
  const listed = async (filter: ImageFilter | undefined): Promise<Image[]> => {
    const want = filter?.image?.image?.trim();
    if (want) {
      const rec = await forRequestImage('filter.image.image', () => p.find(want));
      return rec ? [toCriImage(rec)] : [];
    }
    return p.list().map(toCriImage);
  };

  const listImages = async (req: ListImagesRequest): Promise<ListImagesResponse> => ({
    images: await listed(req.filter),
  });

  // CRI: every message holds at least one image and each image is in one
  // message; no images means no message, then EOF.
  const streamImages = async (req: StreamImagesRequest, send: (m: StreamImagesResponse) => void): Promise<void> => {
    const all = await listed(req.filter);
    for (let i = 0; i < all.length; i += STREAM_CHUNK) send({ images: all.slice(i, i + STREAM_CHUNK) });
  };

  const removeImage = async (req: RemoveImageRequest): Promise<RemoveImageResponse> => {
    const ref = requireImage(req.image, 'image.image');
    // Idempotent: removing an image that is already gone succeeds.
    await forRequestImage('image.image', () => p.remove(ref));
    return {};
  };

  const imageFsInfo = async (_req: ImageFsInfoRequest): Promise<ImageFsInfoResponse> => {
    const now = BigInt(Date.now()) * 1_000_000n;
    const images = await p.imageFsUsage();
    const containers = deps.containerFsUsage ? await deps.containerFsUsage() : { bytes: 0, inodes: 0 };
    return {
      imageFilesystems: [
        {
          timestamp: now,
          fsId: { mountpoint: p.imageFsDir },
          usedBytes: { value: BigInt(images.bytes) },
          inodesUsed: { value: BigInt(images.inodes) },
        },
      ],
      containerFilesystems: [
        {
          timestamp: now,
          fsId: { mountpoint: deps.containerFsDir },
          usedBytes: { value: BigInt(containers.bytes) },
          inodesUsed: { value: BigInt(containers.inodes) },
        },
      ],
    };
  };

  return {
    pullImage: pullImage,
    imageStatus: imageStatus,
    listImages: listImages,
    streamImages: streamImages,
    removeImage: removeImage,
    imageFsInfo: imageFsInfo,
  };
}
