// CRI view of provisioner images: the Image message and the user the image
// runs as (kubelet's runAsNonRoot check reads uid/username from here).
import { Image } from '../gen/runtime/v1/api';
import { ImageRecord } from '../provisioner/store/image-store';

/**
 * The image config's User, as CRI wants it: a numeric user ("1000" or
 * "1000:50") becomes uid, a name becomes username; empty means neither.
 */
export function imageUser(user: string | undefined): { uid?: bigint; username: string } {
  const name = (user ?? '').split(':')[0];
  if (name === '') return { username: '' };
  if (/^\d+$/.test(name)) return { uid: BigInt(name), username: '' };
  return { username: name };
}

export function toCriImage(rec: ImageRecord): Image {
  const user = imageUser(rec.config.config?.User);
  return {
    id: rec.id,
    repoTags: [...rec.repoTags],
    repoDigests: [...rec.repoDigests],
    size: BigInt(rec.size),
    uid: user.uid !== undefined ? { value: user.uid } : undefined,
    username: user.username,
    spec: { image: rec.id, annotations: {}, userSpecifiedImage: '', runtimeHandler: '', imageRef: rec.id },
    pinned: false,
  };
}

/** `verbose` ImageStatus info: the image config and where it came from, as JSON. */
export function imageVerboseInfo(rec: ImageRecord): Record<string, string> {
  return {
    info: JSON.stringify({
      imageSpec: rec.config,
      manifestDigest: rec.manifestDigest,
      chainID: rec.layers.length ? rec.layers[rec.layers.length - 1].chainId : '',
      layers: rec.layers.map((l) => ({ digest: l.digest, diffID: l.diffId, size: l.size, mediaType: l.mediaType })),
      createdAt: rec.createdAt,
    }),
  };
}
