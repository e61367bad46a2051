// The network isolator's record of each attachment, the source of truth for
// teardown and crash recovery. It is written before any plugin runs
// ("adding"), again with the result once ADD succeeded ("ready") and before
// DEL ("deleting"), and removed once DEL succeeded. It carries the exact
// config and capability arguments the ADD used, so DEL undoes the same
// plugins even when the conf dir changed in between (as libcni's cache does).
import { promises as fs } from 'fs';
import * as path from 'path';
import { InternalError } from '../../errors';
import { fsyncDir, readJsonIfExists, writeFileAtomic } from '../../util/atomic-file';
import type { NetworkConfigList } from './config';
import type { CapabilityArgs } from './runtime-config';

export type NetworkPhase = 'adding' | 'ready' | 'deleting';

export const RECORD_VERSION = 1;

export interface NetworkRecord {
  version: number;
  sandboxId: string;
  phase: NetworkPhase;
  netnsPath: string;
  ifName: string;
  pod: { name: string; namespace: string; uid: string };
  /** The config file the list came from, for operators. */
  configFile: string;
  list: NetworkConfigList;
  /** The CNI_ARGS string sent on ADD (sent again on DEL). */
  args: string;
  capabilityArgs: CapabilityArgs;
  /** The final ADD result, raw (what DEL gets as prevResult); absent until ready. */
  result?: unknown;
  ip?: string;
  additionalIps?: string[];
  /** RFC 3339. */
  updatedAt: string;
}

/** Where records live: the containerizer's checkpoint, or files of our own. */
export interface NetworkStateStore {
  write(rec: NetworkRecord): Promise<void>;
  read(sandboxId: string): Promise<NetworkRecord | undefined>;
  remove(sandboxId: string): Promise<void>;
  list(): Promise<string[]>;
}

/** libcni's container id rule; it also keeps ids safe as file names. */
export const CONTAINER_ID_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** One JSON file per sandbox, `<dir>/<id>.json`, written atomically. */
export class FileNetworkStateStore implements NetworkStateStore {
  constructor(readonly dir: string) {}

  private file(id: string): string {
    if (!CONTAINER_ID_PATTERN.test(id) || id.length > 255)
      throw new InternalError(`network state: bad sandbox id "${id}"`);
    return path.join(this.dir, `${id}.json`);
  }

  async write(rec: NetworkRecord): Promise<void> {
    const file = this.file(rec.sandboxId);
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(file, JSON.stringify(rec, null, 2) + '\n');
  }

  async read(id: string): Promise<NetworkRecord | undefined> {
    const file = this.file(id);
    let rec: NetworkRecord | undefined;
    try {
      rec = await readJsonIfExists<NetworkRecord>(file);
    } catch (err) {
      throw new InternalError(`network state ${file} is unreadable: ${(err as Error).message}`, {
        stage: 'network',
        sandboxId: id,
        path: file,
      });
    }
    if (rec === undefined) return undefined;
    if (typeof rec.version !== 'number' || rec.version > RECORD_VERSION || rec.sandboxId !== id) {
      throw new InternalError(`network state ${file} has an unknown format (version ${String(rec.version)})`, {
        stage: 'network',
        sandboxId: id,
        path: file,
      });
    }
    return rec;
  }

  async remove(id: string): Promise<void> {
    await fs.rm(this.file(id), { force: true });
    await fsyncDir(this.dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }

  async list(): Promise<string[]> {
    let names: string[];
    try {
      names = await fs.readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    return names
      .filter((n) => n.endsWith('.json') && !n.startsWith('.'))
      .map((n) => n.slice(0, -'.json'.length))
      .filter((id) => CONTAINER_ID_PATTERN.test(id))
      .sort();
  }
}
