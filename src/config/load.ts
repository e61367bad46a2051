// Reads the TOML file, applies command-line overrides and validates every
// value. A problem becomes a ConfigError naming the key and its source;
// the CLI prints it on one line and exits 2.
import { accessSync, constants as fsConstants, readFileSync, statSync } from 'fs';
import { isAbsolute, join } from 'path';
import { parse as parseToml } from 'smol-toml';
import {
  Config,
  DEFAULT_CONFIG_PATH,
  KEYS,
  KeyDef,
  RegistryConfig,
  RuntimeConfig,
  checkHandlerName,
  defaultConfig,
  kebab,
} from './schema';

export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly key: string | undefined,
    detail: string,
  ) {
    super(key ? `${source}: key "${key}": ${detail}` : `${source}: ${detail}`);
    this.name = 'ConfigError';
  }
}

export interface LoadOptions {
  /** --config; when absent the default path is used and may be missing. */
  configPath?: string;
  /** Flag values by config key (already mapped from --kebab-case). */
  overrides?: Partial<Record<keyof Config, string>>;
}

export interface LoadedConfig {
  config: Config;
  /** The file actually read, or undefined when built-in defaults were used. */
  file?: string;
}

export function loadConfig(opts: LoadOptions = {}): LoadedConfig {
  const config = defaultConfig();
  const explicit = opts.configPath !== undefined;
  const path = opts.configPath ?? DEFAULT_CONFIG_PATH;
  let file: string | undefined;

  let text: string | undefined;
  try {
    text = readFileSync(path, 'utf8');
    file = path;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (!(code === 'ENOENT' && !explicit)) {
      throw new ConfigError(path, undefined, `cannot read config file: ${(err as Error).message}`);
    }
  }
  if (text !== undefined) applyToml(config, text, path);

  for (const [key, raw] of Object.entries(opts.overrides ?? {})) {
    const def = KEYS.find((k) => k.key === key);
    if (!def || raw === undefined) throw new ConfigError('command line', `--${kebab(key)}`, 'unknown flag');
    setValue(config, def, raw, 'command line', `--${kebab(key)}`);
  }
  mergeRuntimes(config, file ?? 'command line');
  return { config, file };
}

function applyToml(config: Config, text: string, source: string): void {
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    // smol-toml's message spans lines (it quotes the source); keep the first.
    const first = (err as Error).message.split('\n')[0];
    throw new ConfigError(source, undefined, `invalid TOML: ${first}`);
  }
  for (const [key, value] of Object.entries(doc)) {
    if (key === 'registries') {
      config.registries = parseRegistries(value, source);
      continue;
    }
    if (key === 'runtimes') {
      config.runtimes = parseRuntimes(value, source);
      continue;
    }
    const def = KEYS.find((k) => k.key === key);
    if (!def) throw new ConfigError(source, key, 'unknown key');
    setValue(config, def, value, source, key);
  }
}

function setValue(config: Config, def: KeyDef, value: unknown, source: string, name: string): void {
  const fail = (detail: string): never => {
    throw new ConfigError(source, name, detail);
  };
  const target = config as unknown as Record<string, unknown>;
  setKind(def, value, target, source, fail);
  const problem = def.check?.(target[def.key]);
  if (problem !== undefined) fail(problem);
}

function setKind(
  def: KeyDef,
  value: unknown,
  target: Record<string, unknown>,
  source: string,
  fail: (detail: string) => never,
): void {
  const kind = def.kind;
  if (typeof kind === 'object') {
    if (typeof value !== 'string' || !kind.oneOf.includes(value)) fail(`must be one of ${kind.oneOf.join(', ')}`);
    target[def.key] = value;
    return;
  }
  switch (kind) {
    case 'string':
      if (typeof value !== 'string') fail('must be a string');
      target[def.key] = value;
      return;
    case 'path':
      if (typeof value !== 'string' || !isAbsolute(value)) fail('must be an absolute path');
      target[def.key] = value;
      return;
    case 'address':
      if (typeof value !== 'string') fail('must be a string "host:port"');
      if (value !== '' && !/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(value as string))
        fail('must be "host:port" (or empty to disable)');
      target[def.key] = value;
      return;
    case 'string[]': {
      // On the command line a list is comma-separated; in TOML it must be an array.
      const fromFlag = source === 'command line';
      const list = fromFlag && typeof value === 'string' ? value.split(',').filter((s) => s !== '') : value;
      if (!Array.isArray(list) || !list.every((s) => typeof s === 'string')) fail('must be a list of strings');
      target[def.key] = list;
      return;
    }
    case 'seconds': {
      const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isFinite(n) || n <= 0 || n > 86400)
        fail('must be a number of seconds between 0 and 86400');
      target[def.key] = n;
      return;
    }
    case 'bool': {
      // TOML has booleans; a flag's value is the string "true" or "false".
      const b = value === 'true' ? true : value === 'false' ? false : value;
      if (typeof b !== 'boolean') fail('must be true or false');
      target[def.key] = b;
      return;
    }
  }
}

const REGISTRY_KEYS = ['mirrors', 'insecure', 'ca_file'];

function parseRegistries(value: unknown, source: string): Record<string, RegistryConfig> {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new ConfigError(source, 'registries', 'must be a table of registry hosts');
  const out: Record<string, RegistryConfig> = {};
  for (const [host, raw] of Object.entries(value as Record<string, unknown>)) {
    const name = `registries."${host}"`;
    if (!/^[A-Za-z0-9.-]+(:\d{1,5})?$/.test(host)) throw new ConfigError(source, name, 'not a registry host[:port]');
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
      throw new ConfigError(source, name, 'must be a table');
    const entry = raw as Record<string, unknown>;
    for (const k of Object.keys(entry)) {
      if (!REGISTRY_KEYS.includes(k)) throw new ConfigError(source, `${name}.${k}`, 'unknown key');
    }
    const mirrors = entry.mirrors ?? [];
    if (!Array.isArray(mirrors) || !mirrors.every((m) => typeof m === 'string'))
      throw new ConfigError(source, `${name}.mirrors`, 'must be a list of URLs');
    for (const m of mirrors as string[]) {
      let url: URL;
      try {
        url = new URL(m);
      } catch {
        throw new ConfigError(source, `${name}.mirrors`, `"${m}" is not a URL`);
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:')
        throw new ConfigError(source, `${name}.mirrors`, `"${m}" must be http:// or https://`);
    }
    const insecure = entry.insecure ?? false;
    if (typeof insecure !== 'boolean') throw new ConfigError(source, `${name}.insecure`, 'must be true or false');
    const ca = entry.ca_file;
    if (ca !== undefined && (typeof ca !== 'string' || !isAbsolute(ca)))
      throw new ConfigError(source, `${name}.ca_file`, 'must be an absolute path');
    out[host] = { mirrors: mirrors as string[], insecure, ...(ca !== undefined ? { ca_file: ca as string } : {}) };
  }
  return out;
}

const RUNTIME_KEYS: Record<RuntimeConfig['type'], readonly string[]> = {
  capsa: ['type'],
  oci: ['type', 'binary', 'root'],
};

/** [runtimes.<name>]: each a handler of type "capsa" or "oci" (binary, optional root). */
function parseRuntimes(value: unknown, source: string): Record<string, RuntimeConfig> {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new ConfigError(source, 'runtimes', 'must be a table of RuntimeClass handlers');
  const out: Record<string, RuntimeConfig> = {};
  for (const [handler, raw] of Object.entries(value as Record<string, unknown>)) {
    const name = `runtimes.${JSON.stringify(handler)}`;
    const bad = checkHandlerName(handler);
    if (bad !== undefined) throw new ConfigError(source, name, bad);
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
      throw new ConfigError(source, name, 'must be a table');
    const entry = raw as Record<string, unknown>;
    const type = entry.type;
    if (type !== 'capsa' && type !== 'oci') throw new ConfigError(source, `${name}.type`, 'must be "capsa" or "oci"');
    for (const k of Object.keys(entry)) {
      if (!RUNTIME_KEYS[type].includes(k))
        throw new ConfigError(source, `${name}.${k}`, `unknown key for a handler of type "${type}"`);
    }
    if (type === 'capsa') {
      out[handler] = { type };
      continue;
    }
    const binary = entry.binary;
    if (typeof binary !== 'string' || !isAbsolute(binary))
      throw new ConfigError(
        source,
        `${name}.binary`,
        'must be the absolute path of the OCI runtime (e.g. /usr/sbin/runc)',
      );
    try {
      if (!statSync(binary).isFile()) throw new Error('not a regular file');
      accessSync(binary, fsConstants.X_OK);
    } catch (err) {
      throw new ConfigError(source, `${name}.binary`, `${binary}: not an executable file (${(err as Error).message})`);
    }
    const root = entry.root;
    if (root !== undefined && (typeof root !== 'string' || !isAbsolute(root)))
      throw new ConfigError(source, `${name}.root`, 'must be an absolute path');
    out[handler] = { type, binary, ...(root !== undefined ? { root: root as string } : {}) };
  }
  return out;
}

/**
 * One list of handlers: runtime_handlers' names (deprecated) become handlers
 * of type "capsa", runtime_handlers then names them all (what Status and
 * RunPodSandbox check against), and each OCI handler gets its state dir.
 */
function mergeRuntimes(config: Config, source: string): void {
  const tables = config.runtimes;
  const merged: Record<string, RuntimeConfig> = {};
  for (const n of config.runtime_handlers) {
    if (tables[n] !== undefined)
      throw new ConfigError(source, 'runtime_handlers', `"${n}" is also a [runtimes.${n}] table: name it once`);
    merged[n] = { type: 'capsa' };
  }
  for (const [n, r] of Object.entries(tables)) {
    merged[n] = r.type === 'oci' ? { ...r, root: r.root ?? join(config.state, 'runtimes', n) } : r;
  }
  config.runtimes = merged;
  config.runtime_handlers = Object.keys(merged);
}
