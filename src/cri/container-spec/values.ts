// Small checks shared by the container-spec modules. Every failure is an
// InvalidArgumentError naming the CRI field (snake_case, as in the proto).

import * as path from 'path';
import { InvalidArgumentError } from '../../errors';

/** Largest single argv/envp string execve(2) accepts (MAX_ARG_STRLEN, 32 pages). */
export const MAX_ARG_STRLEN = 131072;

/** The CRI field the image's config is reported under when it is malformed. */
export const IMAGE_FIELD = 'config.image';

/** Largest 32-bit uid/gid; (uid_t)-1 itself means "no change" to the kernel. */
export const MAX_ID = 0xfffffffe;

/** A string that can travel in the launch spec and reach execve/mount: no NUL. */
export function checkString(value: string, field: string, what?: string): string {
  if (value.includes('\0'))
    throw new InvalidArgumentError(field, `${what ? what + ' ' : ''}must not contain a NUL byte`);
  return value;
}

/** An argv or envp string: no NUL and within the kernel's per-string limit. */
export function checkArg(value: string, field: string, what?: string): string {
  checkString(value, field, what);
  if (Buffer.byteLength(value) + 1 > MAX_ARG_STRLEN) {
    throw new InvalidArgumentError(field, `${what ? what + ' is ' : ''}longer than ${MAX_ARG_STRLEN - 1} bytes`);
  }
  return value;
}

/** An int64 (bigint from the wire) converted to a JS number, exact or rejected. */
export function toSafeNumber(value: bigint | number, field: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError(field, `${String(value)} is out of range`);
  return n;
}

/** A uid or gid: 0..2^32-2. */
export function toId(value: bigint | number, field: string): number {
  const n = typeof value === 'bigint' ? value : BigInt(value);
  if (n < 0n || n > BigInt(MAX_ID)) throw new InvalidArgumentError(field, `${String(value)} is not a valid id`);
  return Number(n);
}

/** An image config value that must be a list of strings (or absent/null). */
export function imageStringList(value: unknown, what: string): string[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) {
    throw new InvalidArgumentError(IMAGE_FIELD, `the image's ${what} is not a list of strings`);
  }
  return value as string[];
}

/** An image config value that must be a string (or absent/null). */
export function imageString(value: unknown, what: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new InvalidArgumentError(IMAGE_FIELD, `the image's ${what} is not a string`);
  return value;
}

/** Depth of a clean absolute path: "/" is 0, "/a" 1, "/a/b" 2. */
export function pathDepth(p: string): number {
  return p === '/' ? 0 : p.split('/').length - 1;
}

/** True when `child` is `parent` or below it (both clean absolute paths). */
export function isWithin(child: string, parent: string): boolean {
  return parent === '/' || child === parent || child.startsWith(parent + '/');
}

/** A clean absolute container path, or an error naming `field`. */
export function containerPath(p: string, field: string): string {
  checkString(p, field);
  if (p === '') throw new InvalidArgumentError(field, 'must not be empty');
  if (!p.startsWith('/')) throw new InvalidArgumentError(field, `"${p}" is not an absolute path`);
  return path.posix.normalize(p).replace(/(.)\/$/, '$1');
}
