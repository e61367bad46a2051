// Network readiness as kubelet sees it: NetworkReady is true only when the
// CNI conf dir holds a usable network config and every plugin it names is
// installed. Read fresh on each call, so a config added at run time counts.
import { promises as fs } from 'fs';
import * as path from 'path';

export interface NetworkReadiness {
  ready: boolean;
  reason: string;
  message: string;
  /** The config file chosen, when there is one. */
  file?: string;
}

const NOT_READY = 'NetworkPluginNotReady';

/** The lexically first .conflist/.conf/.json file, as kubelet's dockershim and containerd choose. */
export async function findNetworkConfig(confDir: string): Promise<string | undefined> {
  let names: string[];
  try {
    names = await fs.readdir(confDir);
  } catch {
    return undefined;
  }
  const files = names.filter((n) => /\.(conflist|conf|json)$/.test(n)).sort();
  return files.length ? path.join(confDir, files[0]) : undefined;
}

/** Plugin types a config names: the `plugins[].type` of a conflist or the `type` of a single conf. */
export function pluginTypes(conf: unknown): string[] {
  if (typeof conf !== 'object' || conf === null) throw new Error('not a JSON object');
  const c = conf as { plugins?: unknown; type?: unknown };
  if (Array.isArray(c.plugins)) {
    const types = c.plugins.map((p: { type?: unknown }) => p?.type);
    if (types.length === 0 || !types.every((t) => typeof t === 'string' && t !== ''))
      throw new Error('every plugin needs a "type"');
    return types as string[];
  }
  if (typeof c.type === 'string' && c.type !== '') return [c.type];
  throw new Error('neither "plugins" nor "type" is set');
}

async function isExecutable(file: string): Promise<boolean> {
  try {
    const st = await fs.stat(file);
    return st.isFile() && (st.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

export async function networkReadiness(confDir: string, binDirs: string[]): Promise<NetworkReadiness> {
  const file = await findNetworkConfig(confDir);
  if (!file) {
    return { ready: false, reason: NOT_READY, message: `no network config found in ${confDir}` };
  }
  let types: string[];
  try {
    types = pluginTypes(JSON.parse(await fs.readFile(file, 'utf8')));
  } catch (err) {
    return {
      ready: false,
      reason: NOT_READY,
      message: `invalid network config ${file}: ${(err as Error).message}`,
      file,
    };
  }
  const missing: string[] = [];
  for (const t of types) {
    let found = false;
    for (const dir of binDirs) {
      if (await isExecutable(path.join(dir, t))) {
        found = true;
        break;
      }
    }
    if (!found) missing.push(t);
  }
  if (missing.length) {
    return {
      ready: false,
      reason: NOT_READY,
      message: `network config ${file} needs CNI plugin(s) ${missing.join(', ')}, not found in ${binDirs.join(', ')}`,
      file,
    };
  }
  return { ready: true, reason: '', message: '', file };
}
