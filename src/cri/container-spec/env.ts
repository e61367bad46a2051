// The process environment: the image's Env first, then the CRI envs, one
// entry per key (a later value replaces an earlier one in place, so the
// image's order is kept and new CRI keys are appended in request order).
// PATH defaults to the usual Linux list when neither sets it, HOSTNAME is the
// pod's hostname (a CRI env may still override it), HOME is the user's home
// and TERM=xterm is added for a tty, each only when not already set.

import { InvalidArgumentError } from '../../errors';
import { checkArg, IMAGE_FIELD, imageStringList } from './values';

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface EnvVar {
  key: string;
  /** Bytes on the wire (CRI KeyValue.value); must be valid UTF-8 to reach the spec. */
  value: Uint8Array | string;
}

export interface EnvInput {
  /** CRI config.envs. */
  envs: readonly EnvVar[];
  /** The image config's Env ("KEY=value" strings; untrusted). */
  imageEnv: unknown;
  /** HOSTNAME's value: the pod hostname (the node's for host-network pods). */
  hostname: string;
  /** HOME's value when nothing sets it: the user's home directory. */
  home: string;
  tty: boolean;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

class EnvList {
  private readonly values = new Map<string, string>();

  set(key: string, value: string): void {
    // Map keeps insertion order; re-setting a key keeps its first position.
    this.values.set(key, value);
  }

  has(key: string): boolean {
    return this.values.has(key);
  }

  toArray(): string[] {
    return [...this.values].map(([k, v]) => `${k}=${v}`);
  }
}

function decodeValue(value: Uint8Array | string, field: string): string {
  if (typeof value === 'string') return value;
  try {
    return utf8.decode(value);
  } catch {
    throw new InvalidArgumentError(field, 'is not valid UTF-8');
  }
}

export function buildEnv(input: EnvInput): string[] {
  const env = new EnvList();
  const image = imageStringList(input.imageEnv, 'Env') ?? [];
  const hasPath = image.some((e) => e.startsWith('PATH=')) || input.envs.some((e) => e.key === 'PATH');
  if (!hasPath) env.set('PATH', DEFAULT_PATH);
  image.forEach((entry, i) => {
    checkArg(entry, IMAGE_FIELD, `the image's Env[${i}]`);
    const eq = entry.indexOf('=');
    // "KEY" alone (Docker's "unset") and "=value" carry nothing to set.
    if (eq <= 0) return;
    env.set(entry.slice(0, eq), entry.slice(eq + 1));
  });
  env.set('HOSTNAME', input.hostname);
  input.envs.forEach((kv, i) => {
    const field = `config.envs[${i}]`;
    if (kv.key === '') throw new InvalidArgumentError(`${field}.key`, 'must not be empty');
    if (kv.key.includes('=')) throw new InvalidArgumentError(`${field}.key`, 'must not contain "="');
    const value = decodeValue(kv.value, `${field}.value`);
    checkArg(`${kv.key}=${value}`, field);
    env.set(kv.key, value);
  });
  if (!env.has('HOME')) env.set('HOME', input.home);
  if (input.tty && !env.has('TERM')) env.set('TERM', 'xterm');
  return env.toArray();
}
