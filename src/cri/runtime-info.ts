// Facts about this daemon that Version, Status and RuntimeConfig report,
// and the runtime config kubelet pushes (pod CIDR), kept for the network code.
import { readFileSync } from 'fs';
import * as path from 'path';

export const RUNTIME_NAME = 'capsa';
export const RUNTIME_API_VERSION = 'v1';

let cachedVersion: string | undefined;

/** The version in package.json: one source of truth for `capsa version` and the Version RPC. */
export function runtimeVersion(): string {
  if (!cachedVersion) {
    // dist/src/cri -> repo root, or src/cri -> repo root.
    for (const up of ['../../..', '../..']) {
      try {
        const pkg = JSON.parse(readFileSync(path.resolve(__dirname, up, 'package.json'), 'utf8')) as {
          name?: string;
          version?: string;
        };
        if (pkg.name === 'capsa' && pkg.version) {
          cachedVersion = pkg.version;
          break;
        }
      } catch {
        continue;
      }
    }
    if (!cachedVersion) throw new Error('cannot find capsa package.json');
  }
  return cachedVersion;
}
