// The CNI network configuration, as kubelet's runtimes choose it: the
// lexically first `.conflist` / `.conf` / `.json` file in the conf dir (a
// single-plugin `.conf` is wrapped into a one-plugin list, as libcni's
// ConfListFromConf does), validated, with every plugin binary found in the
// bin dirs.
//
// The directory is listed and the chosen file stat'ed on every use, and the
// file is re-parsed only when its identity (inode, size, mtime) changed, so
// a config added, replaced or fixed while the daemon runs is picked up
// without a restart and an unchanged one costs two syscalls. Plugin binaries
// are looked up on every use too: installing them later makes the network
// ready.
import { promises as fs } from 'fs';
import * as path from 'path';
import type { Logger } from '../../log';

/** The reason kubelet expects while NetworkReady is false. */
export const NETWORK_NOT_READY = 'NetworkPluginNotReady';

/** CNI spec versions whose configs and results we understand. */
export const SUPPORTED_CNI_VERSIONS: readonly string[] = [
  '0.1.0',
  '0.2.0',
  '0.3.0',
  '0.3.1',
  '0.4.0',
  '1.0.0',
  '1.1.0',
];

/** libcni's rule for network names and container ids. */
const NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** One plugin's configuration, as in the file; everything but `type` is the plugin's business. */
export interface PluginConf {
  type: string;
  capabilities?: Record<string, boolean>;
  [key: string]: unknown;
}

/** A network configuration list, the only shape the invoker works with. */
export interface NetworkConfigList {
  name: string;
  cniVersion: string;
  /** Spec 1.0: CHECK is not to be run for this network. */
  disableCheck: boolean;
  plugins: PluginConf[];
}

export class CniConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CniConfigError';
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkPlugin(p: unknown, where: string): PluginConf {
  if (!isObject(p)) throw new CniConfigError(`${where} is not a JSON object`);
  const t = p.type;
  if (typeof t !== 'string' || t === '') throw new CniConfigError(`${where} needs a "type"`);
  // The type names a binary in the bin dirs; it must not name a path.
  if (t.includes('/') || t === '.' || t === '..') throw new CniConfigError(`${where} has an invalid type "${t}"`);
  if (p.capabilities !== undefined && !isObject(p.capabilities)) {
    throw new CniConfigError(`${where}: "capabilities" must be an object`);
  }
  return p as PluginConf;
}

/** Plugin types a config names: the `plugins[].type` of a conflist or the `type` of a single conf. */
export function pluginTypes(conf: unknown): string[] {
  if (!isObject(conf)) throw new CniConfigError('not a JSON object');
  if (Array.isArray(conf.plugins)) {
    if (conf.plugins.length === 0) throw new CniConfigError('every plugin needs a "type" (the plugin list is empty)');
    return conf.plugins.map((p, i) => checkPlugin(p, `plugins[${i}]`).type);
  }
  if (conf.plugins !== undefined) throw new CniConfigError('"plugins" must be a list');
  if (typeof conf.type === 'string' && conf.type !== '') return [checkPlugin(conf, 'the network').type];
  throw new CniConfigError('neither "plugins" nor "type" is set');
}

/**
 * Parses and validates a config file's text. A conflist (has `plugins`) is
 * taken as is; a single plugin's conf becomes a one-plugin list carrying
 * the conf's name and version.
 */
export function parseNetworkConfig(text: string): NetworkConfigList {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new CniConfigError(`not JSON: ${(err as Error).message}`);
  }
  const types = pluginTypes(doc); // validates the plugin entries
  const c = doc as Record<string, unknown>;
  const name = c.name;
  if (typeof name !== 'string' || name === '') throw new CniConfigError('"name" is missing');
  if (!NAME_PATTERN.test(name)) throw new CniConfigError(`"name" "${name}" has characters other than [a-zA-Z0-9_.-]`);
  const version = c.cniVersion;
  if (typeof version !== 'string' || version === '') throw new CniConfigError('"cniVersion" is missing');
  if (!SUPPORTED_CNI_VERSIONS.includes(version)) {
    throw new CniConfigError(`"cniVersion" ${version} is not supported (${SUPPORTED_CNI_VERSIONS.join(', ')})`);
  }
  if (c.disableCheck !== undefined && typeof c.disableCheck !== 'boolean') {
    throw new CniConfigError('"disableCheck" must be a boolean');
  }
  const plugins: PluginConf[] = Array.isArray(c.plugins) ? (c.plugins as PluginConf[]) : [c as PluginConf];
  if (types.length !== plugins.length) throw new CniConfigError('inconsistent plugin list');
  return { name, cniVersion: version, disableCheck: c.disableCheck === true, plugins };
}

const CONFIG_FILE = /\.(conflist|conf|json)$/;

/** The lexically first .conflist/.conf/.json file, as kubelet's dockershim and containerd choose. */
export async function findNetworkConfig(confDir: string): Promise<string | undefined> {
  let names: string[];
  try {
    names = await fs.readdir(confDir);
  } catch {
    return undefined;
  }
  const files = names.filter((n) => CONFIG_FILE.test(n) && !n.startsWith('.')).sort();
  return files.length ? path.join(confDir, files[0]) : undefined;
}

async function isExecutable(file: string): Promise<boolean> {
  try {
    const st = await fs.stat(file);
    return st.isFile() && (st.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** The first executable `type` in the bin dirs, or undefined. */
export async function findPlugin(type: string, binDirs: readonly string[]): Promise<string | undefined> {
  if (type.includes('/')) return undefined;
  for (const dir of binDirs) {
    const candidate = path.join(dir, type);
    if (await isExecutable(candidate)) return candidate;
  }
  return undefined;
}

/** A usable network: its config and the binary of each plugin, in order. */
export interface LoadedNetwork {
  file: string;
  list: NetworkConfigList;
  pluginPaths: string[];
}

export type NetworkConfigState =
  | { ready: true; reason: ''; message: ''; file: string; network: LoadedNetwork }
  | { ready: false; reason: string; message: string; file?: string };

interface CacheEntry {
  file: string;
  key: string;
  parsed: NetworkConfigList | CniConfigError;
}

/**
 * The conf dir, watched by polling on use. One instance per (conf dir, bin
 * dirs); `load()` is cheap enough to call for every Status and every pod.
 */
export class CniConfigSource {
  private cache: CacheEntry | undefined;
  private lastLogged = '';

  constructor(
    readonly confDir: string,
    readonly binDirs: readonly string[],
    private readonly log?: Logger,
  ) {}

  async load(): Promise<NetworkConfigState> {
    const file = await findNetworkConfig(this.confDir);
    if (!file)
      return this.report({
        ready: false,
        reason: NETWORK_NOT_READY,
        message: `no network config found in ${this.confDir}`,
      });

    let parsed: NetworkConfigList | CniConfigError;
    try {
      parsed = await this.parsed(file);
    } catch (err) {
      // Gone between readdir and read, or unreadable: report it as it is now.
      parsed = new CniConfigError(`cannot read it: ${(err as Error).message}`);
    }
    if (parsed instanceof CniConfigError) {
      return this.report({
        ready: false,
        reason: NETWORK_NOT_READY,
        message: `invalid network config ${file}: ${parsed.message}`,
        file,
      });
    }

    const pluginPaths: string[] = [];
    const missing: string[] = [];
    for (const p of parsed.plugins) {
      const found = await findPlugin(p.type, this.binDirs);
      if (found) pluginPaths.push(found);
      else if (!missing.includes(p.type)) missing.push(p.type);
    }
    if (missing.length) {
      return this.report({
        ready: false,
        reason: NETWORK_NOT_READY,
        message: `network config ${file} needs CNI plugin(s) ${missing.join(', ')}, not found in ${this.binDirs.join(', ')}`,
        file,
      });
    }
    return this.report({ ready: true, reason: '', message: '', file, network: { file, list: parsed, pluginPaths } });
  }

  /** The parsed file, re-read only when its inode, size or mtime changed. */
  private async parsed(file: string): Promise<NetworkConfigList | CniConfigError> {
    const st = await fs.stat(file);
    const key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
    if (this.cache && this.cache.file === file && this.cache.key === key) return this.cache.parsed;
    const text = await fs.readFile(file, 'utf8');
    let parsed: NetworkConfigList | CniConfigError;
    try {
      parsed = parseNetworkConfig(text);
    } catch (err) {
      if (!(err instanceof CniConfigError)) throw err;
      parsed = err;
    }
    this.cache = { file, key, parsed };
    return parsed;
  }

  /** Logs each change of readiness once (not on every poll). */
  private report(state: NetworkConfigState): NetworkConfigState {
    const summary = state.ready
      ? `ready:${state.file}:${state.network.list.name}:${state.network.list.cniVersion}:${state.network.list.plugins.map((p) => p.type).join(',')}`
      : `not-ready:${state.message}`;
    if (summary !== this.lastLogged) {
      this.lastLogged = summary;
      if (state.ready) {
        const l = state.network.list;
        this.log?.info(
          { file: state.file, network: l.name, cniVersion: l.cniVersion, plugins: l.plugins.map((p) => p.type) },
          'CNI network config loaded',
        );
      } else {
        this.log?.warn({ reason: state.reason, file: state.file }, `CNI network not ready: ${state.message}`);
      }
    }
    return state;
  }
}
