// Network readiness as kubelet sees it: NetworkReady is true only when the
// CNI conf dir holds a valid network config and every plugin it names is
// installed. The work is done by cni/config.ts (the same loader pods use);
// this module keeps the small API Status was written against.
import { CniConfigSource, findNetworkConfig, pluginTypes } from './cni/config';

export { findNetworkConfig, pluginTypes };

export interface NetworkReadiness {
  ready: boolean;
  reason: string;
  message: string;
  /** The config file chosen, when there is one. */
  file?: string;
}

// One source per (conf dir, bin dirs), so repeated Status calls re-parse the
// config only when the file changed.
const sources = new Map<string, CniConfigSource>();

export function configSource(confDir: string, binDirs: readonly string[]): CniConfigSource {
  const key = JSON.stringify([confDir, binDirs]);
  let s = sources.get(key);
  if (!s) {
    s = new CniConfigSource(confDir, binDirs);
    sources.set(key, s);
  }
  return s;
}

export async function networkReadiness(confDir: string, binDirs: string[]): Promise<NetworkReadiness> {
  const state = await configSource(confDir, binDirs).load();
  return { ready: state.ready, reason: state.reason, message: state.message, file: state.file };
}
