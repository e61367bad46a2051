// Layer identities (OCI image spec, "Layer ChainID"):
//   ChainID(L0) = DiffID(L0)
//   ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))
// A chain ID names a layer together with everything below it, so one
// unpacked directory serves every image that shares that prefix.
import { createHash } from 'crypto';

const SHA256_DIGEST = /^sha256:[0-9a-f]{64}$/;

/** True for a canonical "sha256:<64 lowercase hex>" digest (the only algorithm layers use). */
export function isSha256Digest(s: unknown): s is string {
  return typeof s === 'string' && SHA256_DIGEST.test(s);
}

/** The hex part of a sha256 digest (the layer's directory name). */
export function digestHex(digest: string): string {
  if (!isSha256Digest(digest)) throw new Error(`not a sha256 digest: ${JSON.stringify(digest)}`);
  return digest.slice('sha256:'.length);
}

/** The chain ID of a layer with `diffId` on top of the chain `parent` (undefined for the bottom layer). */
export function chainId(parent: string | undefined, diffId: string): string {
  if (!isSha256Digest(diffId)) throw new Error(`not a sha256 digest: ${JSON.stringify(diffId)}`);
  if (parent === undefined || parent === '') return diffId;
  if (!isSha256Digest(parent)) throw new Error(`not a sha256 digest: ${JSON.stringify(parent)}`);
  return `sha256:${createHash('sha256').update(`${parent} ${diffId}`).digest('hex')}`;
}

/** Chain IDs of every layer of an image, from its config's rootfs.diff_ids (lowest first). */
export function chainIds(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  let parent: string | undefined;
  for (const d of diffIds) {
    parent = chainId(parent, d);
    out.push(parent);
  }
  return out;
}
