// Mounts that come from images: image volumes (CRI Mount.image, checked
// here before the containerizer mounts the image) and the image config's
// VOLUMEs (each an empty host directory bound at its path).
import { createHash } from 'crypto';
import * as path from 'path';
import { InvalidArgumentError } from '../../errors';
import type { Mount } from '../../gen/runtime/v1/api';
import { checkString, containerPath, IMAGE_FIELD, isWithin } from './values';

/** At most this many image VOLUMEs (an image is untrusted input). */
export const MAX_IMAGE_VOLUMES = 256;

export interface ImageVolume {
  containerPath: string;
  /** Directory the caller creates (empty) before the launch. */
  hostPath: string;
}

/** An image volume (CRI Mount.image) as the request asks for it; the image is resolved later. */
export interface ImageMountInput {
  /** Its index in config.mounts. */
  index: number;
  /** The request's field for it ("config.mounts[2]"), for errors. */
  field: string;
  /** The image: an id (kubelet sends the one PullImage answered) or a reference. */
  ref: string;
  /** Directory inside the image to mount ("" for its root). */
  subPath: string;
}

/** Options that would undo what an image volume is (read-only, no set-uid, no devices). */
export const IMAGE_MOUNT_FORBIDDEN = new Set(['rw', 'suid', 'dev']);

/** A mount that asks for an image (Mount.image with a name) rather than a host path. */
export function isImageMount(m: Mount): boolean {
  return m.image !== undefined && m.image.image.trim() !== '';
}

/**
 * The image volumes among the CRI mounts, with the fields only they have
 * checked before anything is made (the rest is checked with every mount):
 * no host path, read-only as kubelet always sends them (containerd refuses
 * the others too), a relative image_sub_path without "..".
 */
export function imageMounts(mounts: readonly Mount[]): ImageMountInput[] {
  const out: ImageMountInput[] = [];
  for (const [i, m] of mounts.entries()) {
    const f = `config.mounts[${i}]`;
    checkString(m.imageSubPath, `${f}.image_sub_path`);
    if (!isImageMount(m)) {
      if (m.imageSubPath !== '') {
        throw new InvalidArgumentError(`${f}.image_sub_path`, 'is only for image volumes (image.image is empty)');
      }
      continue;
    }
    const ref = m.image!.image.trim();
    checkString(ref, `${f}.image.image`);
    if (Buffer.byteLength(ref) > 4096) throw new InvalidArgumentError(`${f}.image.image`, 'is longer than 4096 bytes');
    if (m.hostPath !== '') {
      throw new InvalidArgumentError(`${f}.host_path`, 'must be empty for an image volume (image is set)');
    }
    if (!m.readonly) throw new InvalidArgumentError(`${f}.readonly`, 'must be true: an image volume is read-only');
    const sub = m.imageSubPath;
    if (sub.startsWith('/')) throw new InvalidArgumentError(`${f}.image_sub_path`, `"${sub}" is not a relative path`);
    if (sub.split('/').includes('..')) {
      throw new InvalidArgumentError(`${f}.image_sub_path`, `"${sub}" must not contain ".."`);
    }
    if (Buffer.byteLength(sub) > 4095)
      throw new InvalidArgumentError(`${f}.image_sub_path`, 'is longer than 4095 bytes');
    out.push({ index: i, field: f, ref, subPath: sub });
  }
  return out;
}

/** The image's VOLUMEs not covered by another mount, each bound from its own empty host directory. */
export function imageVolumeMounts(
  volumes: unknown,
  covered: readonly string[],
  volumesRoot: string,
  warnings: string[],
): ImageVolume[] {
  if (volumes === undefined || volumes === null) return [];
  if (typeof volumes !== 'object' || Array.isArray(volumes)) {
    throw new InvalidArgumentError(IMAGE_FIELD, "the image's Volumes is not an object");
  }
  const keys = Object.keys(volumes);
  if (keys.length > MAX_IMAGE_VOLUMES) {
    throw new InvalidArgumentError(IMAGE_FIELD, `the image declares more than ${MAX_IMAGE_VOLUMES} volumes`);
  }
  const out: ImageVolume[] = [];
  const seen = new Set<string>();
  for (const key of keys) {
    checkString(key, IMAGE_FIELD, `the image's volume "${key}"`);
    // Docker reads a relative VOLUME against "/".
    const dest = containerPath(key.startsWith('/') ? key : `/${key}`, IMAGE_FIELD);
    if (dest === '/') {
      warnings.push('image volume "/" ignored');
      continue;
    }
    if (seen.has(dest) || covered.some((c) => isWithin(dest, c))) continue;
    seen.add(dest);
    const name = createHash('sha256').update(dest).digest('hex').slice(0, 16);
    out.push({ containerPath: dest, hostPath: path.join(volumesRoot, name) });
  }
  return out;
}
