// Versioned JSON checkpoints, one directory per object:
//
//   <root>/sandboxes/<id>/checkpoint.json          the sandbox record
//   <root>/sandboxes/<id>/isolators/<name>.json    each isolator's own state
//   <root>/containers/<id>/...                     the same for containers
//
// Every file is written atomically (temp + fsync + rename + fsync dir) and
// before the in-memory state changes ("disk before memory"), so after a
// crash the disk never claims less than what exists. Each isolator's state
// carries its own version number: an isolator can change its format and
// still recover objects checkpointed by an older daemon.
import { promises as fs } from 'fs';
import * as path from 'path';
import { FailedPreconditionError, InternalError } from '../errors';
import { fsyncDir, readJsonIfExists, writeFileAtomic } from '../util/atomic-file';

export type ObjectKind = 'sandbox' | 'container';

const KIND_DIRS: Record<ObjectKind, string> = { sandbox: 'sandboxes', container: 'containers' };

/** 64 lowercase hex characters: sandbox and container ids. */
export const ID_PATTERN = /^[0-9a-f]{64}$/;

/** The envelope of every checkpoint file. */
export interface Versioned<T> {
  version: number;
  data: T;
}

/** An isolator's checkpoint: its name, its own format version, its state. */
export interface IsolatorCheckpoint<S = unknown> {
  isolator: string;
  version: number;
  state: S;
}

export class CheckpointStore {
  constructor(readonly root: string) {}

  dir(kind: ObjectKind, id: string): string {
    if (!ID_PATTERN.test(id)) throw new InternalError(`checkpoint: bad ${kind} id "${id}"`);
    return path.join(this.root, KIND_DIRS[kind], id);
  }

  /** Creates the object's directory (and fsyncs its parent so the entry survives a crash). */
  async create(kind: ObjectKind, id: string): Promise<string> {
    const dir = this.dir(kind, id);
    await fs.mkdir(path.dirname(dir), { recursive: true, mode: 0o700 });
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    await fs.mkdir(path.join(dir, 'isolators'), { recursive: true, mode: 0o700 });
    await fsyncDir(path.dirname(dir));
    return dir;
  }

  async write<T>(kind: ObjectKind, id: string, version: number, data: T): Promise<void> {
    const body: Versioned<T> = { version, data };
    await writeFileAtomic(path.join(this.dir(kind, id), 'checkpoint.json'), encodeJson(body));
  }

  /**
   * Reads the record; undefined when there is none. A version newer than
   * `maxVersion` is refused (a downgrade must not misread state).
   */
  async read<T>(kind: ObjectKind, id: string, maxVersion: number): Promise<Versioned<T> | undefined> {
    const file = path.join(this.dir(kind, id), 'checkpoint.json');
    const raw = await readJsonIfExists<Versioned<T>>(file);
    if (raw === undefined) return undefined;
    checkVersion(raw, maxVersion, file);
    return raw;
  }

  async writeIsolator<S>(kind: ObjectKind, id: string, name: string, version: number, state: S): Promise<void> {
    const body: IsolatorCheckpoint<S> = { isolator: name, version, state };
    await writeFileAtomic(path.join(this.dir(kind, id), 'isolators', `${safeName(name)}.json`), encodeJson(body));
  }

  async removeIsolator(kind: ObjectKind, id: string, name: string): Promise<void> {
    await fs.rm(path.join(this.dir(kind, id), 'isolators', `${safeName(name)}.json`), { force: true });
  }

  /** Every isolator checkpoint of the object, by isolator name. */
  async readIsolators(kind: ObjectKind, id: string): Promise<Map<string, IsolatorCheckpoint>> {
    const dir = path.join(this.dir(kind, id), 'isolators');
    const out = new Map<string, IsolatorCheckpoint>();
    let names: string[];
    try {
      names = await fs.readdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return out;
      throw err;
    }
    for (const n of names.filter((x) => x.endsWith('.json') && !x.startsWith('.'))) {
      const c = await readJsonIfExists<IsolatorCheckpoint>(path.join(dir, n));
      if (c && typeof c.isolator === 'string' && typeof c.version === 'number') out.set(c.isolator, c);
    }
    return out;
  }

  /** Ids of every checkpointed object of a kind. */
  async list(kind: ObjectKind): Promise<string[]> {
    try {
      return (await fs.readdir(path.join(this.root, KIND_DIRS[kind]))).filter((n) => ID_PATTERN.test(n));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }

  /** Removes the object's directory: the last step of removing it. */
  async remove(kind: ObjectKind, id: string): Promise<void> {
    const dir = this.dir(kind, id);
    await fs.rm(dir, { recursive: true, force: true });
    await fsyncDir(path.dirname(dir)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }
}

function safeName(name: string): string {
  if (!/^[a-z][a-z0-9-]*$/.test(name)) throw new InternalError(`checkpoint: bad isolator name "${name}"`);
  return name;
}

function checkVersion(raw: { version?: unknown }, maxVersion: number, file: string): void {
  if (typeof raw.version !== 'number' || !Number.isInteger(raw.version) || raw.version < 1) {
    throw new FailedPreconditionError(`checkpoint ${file} has no valid version`, { path: file });
  }
  if (raw.version > maxVersion) {
    throw new FailedPreconditionError(
      `checkpoint ${file} has version ${raw.version}, newer than this daemon's ${maxVersion}`,
      { path: file },
    );
  }
}

/** JSON with bigint values written as decimal strings (timestamps in ns). */
export function encodeJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n';
}

/** Reads a bigint written by encodeJson (or a plain number); undefined stays undefined. */
export function decodeBigint(v: unknown): bigint | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
  if (typeof v === 'string' && /^-?\d+$/.test(v)) return BigInt(v);
  throw new InternalError(`checkpoint: "${String(v)}" is not an integer`);
}
