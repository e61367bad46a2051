// Digest helpers shared by the store: validation, hashing, chain IDs.
import { createHash } from 'crypto';
import { InvalidArgumentError, ErrorContext } from '../../errors';

/** The only algorithm the store keeps content under. */
export const SHA256_PREFIX = 'sha256:';

const HEX_LENGTH: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };

/** True for a well-formed `algo:hex` digest of an algorithm we know (hex lowercase, right length). */
export function isDigest(value: string): boolean {
  const i = value.indexOf(':');
  if (i <= 0) return false;
  const len = HEX_LENGTH[value.slice(0, i)];
  const hex = value.slice(i + 1);
  return len !== undefined && hex.length === len && /^[a-f0-9]+$/.test(hex);
}

/** True for `sha256:<64 lowercase hex>`. */
export function isSha256Digest(value: string): boolean {
  return /^sha256:[a-f0-9]{64}$/.test(value);
}

/**
 * Checks that `value` is a sha256 digest the content store can hold and
 * returns its hex part; anything else is an InvalidArgument naming `field`.
 */
export function sha256Hex(value: string, field = 'digest', context: ErrorContext = {}): string {
  if (!isSha256Digest(value)) {
    if (isDigest(value)) throw new InvalidArgumentError(field, `unsupported digest algorithm in "${value}"`, context);
    throw new InvalidArgumentError(field, `invalid digest "${value}"`, context);
  }
  return value.slice(SHA256_PREFIX.length);
}

export function sha256Of(data: string | Uint8Array): string {
  return SHA256_PREFIX + createHash('sha256').update(data).digest('hex');
}

/**
 * Chain IDs as the OCI image spec defines them: the first layer's chain ID
 * is its diff ID; every later one is sha256 of "<parent chain ID> <diff ID>".
 */
export function chainIds(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  for (const diffId of diffIds) {
    const parent = out[out.length - 1];
    out.push(parent === undefined ? diffId : sha256Of(`${parent} ${diffId}`));
  }
  return out;
}
