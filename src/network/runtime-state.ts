// What kubelet told the runtime through UpdateRuntimeConfig: the pod CIDR.
// kubelet sends it once, so it is kept under the root dir and a daemon
// restart (or `capsa network default-config`) still knows it.
import * as path from 'path';
import { readJsonIfExists, writeFileAtomic } from '../util/atomic-file';

export interface RuntimeState {
  /** Pod CIDR from kubelet's UpdateRuntimeConfig; empty until it sends one. */
  podCidr: string;
}

const STATE_FILE = 'runtime-config.json';

export async function loadRuntimeState(rootDir: string): Promise<RuntimeState> {
  const saved = await readJsonIfExists<Partial<RuntimeState>>(path.join(rootDir, STATE_FILE));
  return { podCidr: typeof saved?.podCidr === 'string' ? saved.podCidr : '' };
}

export async function saveRuntimeState(rootDir: string, state: RuntimeState): Promise<void> {
  await writeFileAtomic(path.join(rootDir, STATE_FILE), JSON.stringify({ podCidr: state.podCidr }));
}
