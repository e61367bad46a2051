// A working pod network for a fresh machine: when the conf dir holds no
// network config at all, write a bridge (capsa0, gateway, masquerade,
// hairpin) + host-local IPAM + portmap + loopback list. The subnet is the
// pod CIDR kubelet sent (when known) or 10.88.0.0/16. An existing config —
// even a broken one — is never touched: that is the operator's.
import { promises as fs } from 'fs';
import { isIPv4, isIPv6 } from 'net';
import * as path from 'path';
import type { Logger } from '../../log';
import { writeFileAtomic } from '../../util/atomic-file';
import { findNetworkConfig, findPlugin } from './config';
import { pluginVersions } from './invoke';

export const DEFAULT_CONFIG_FILE = '10-capsa-bridge.conflist';
export const DEFAULT_NETWORK_NAME = 'capsa';
export const DEFAULT_BRIDGE = 'capsa0';
export const DEFAULT_SUBNET = '10.88.0.0/16';
const DEFAULT_PLUGINS = ['bridge', 'host-local', 'portmap', 'loopback'];

export interface DefaultConfigOptions {
  /** Pod CIDR(s) from kubelet, comma-separated (dual stack); empty for the default subnet. */
  podCidr?: string;
  bridge?: string;
  name?: string;
  cniVersion?: string;
  /** host-local's store; its default (/var/lib/cni/networks) when absent. */
  dataDir?: string;
}

/** The subnets to use: the pod CIDRs (at most one per family), else the default. */
export function subnetsFor(podCidr: string | undefined): string[] {
  const parts = (podCidr ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  const v4 = parts.find((p) => isIPv4(p.split('/')[0]));
  const v6 = parts.find((p) => isIPv6(p.split('/')[0]));
  const out = [v4, v6].filter((s): s is string => s !== undefined);
  return out.length ? out : [DEFAULT_SUBNET];
}

/** The default network config list. */
export function defaultConfList(opts: DefaultConfigOptions = {}): Record<string, unknown> {
  const subnets = subnetsFor(opts.podCidr);
  const ipam: Record<string, unknown> = {
    type: 'host-local',
    ranges: subnets.map((s) => [{ subnet: s }]),
    routes: subnets.map((s) => ({ dst: isIPv4(s.split('/')[0]) ? '0.0.0.0/0' : '::/0' })),
  };
  if (opts.dataDir) ipam.dataDir = opts.dataDir;
  return {
    cniVersion: opts.cniVersion ?? '1.0.0',
    name: opts.name ?? DEFAULT_NETWORK_NAME,
    plugins: [
      {
        type: 'bridge',
        bridge: opts.bridge ?? DEFAULT_BRIDGE,
        isGateway: true,
        ipMasq: true,
        hairpinMode: true,
        ipam,
      },
      { type: 'portmap', capabilities: { portMappings: true } },
      { type: 'loopback' },
    ],
  };
}

export interface EnsureDefaultOptions extends DefaultConfigOptions {
  confDir: string;
  binDirs: readonly string[];
  log?: Logger;
}

export type EnsureDefaultOutcome =
  | { written: true; file: string; subnets: string[]; cniVersion: string }
  | { written: false; reason: string; file?: string };

/**
 * Writes the default config when the conf dir has none. The cniVersion is
 * 1.0.0 when the installed plugins speak it, else 0.4.0 (older plugin sets).
 */
export async function ensureDefaultNetworkConfig(opts: EnsureDefaultOptions): Promise<EnsureDefaultOutcome> {
  const existing = await findNetworkConfig(opts.confDir);
  if (existing) {
    opts.log?.info({ file: existing }, 'CNI network config present; not writing the default one');
    return { written: false, reason: 'a network config exists', file: existing };
  }
  const missing: string[] = [];
  const paths: string[] = [];
  for (const p of DEFAULT_PLUGINS) {
    const found = await findPlugin(p, opts.binDirs);
    if (found) paths.push(found);
    else missing.push(p);
  }
  if (missing.length) {
    const reason = `CNI plugin(s) ${missing.join(', ')} not found in ${opts.binDirs.join(', ')}`;
    opts.log?.warn({ confDir: opts.confDir }, `not writing the default CNI config: ${reason}`);
    return { written: false, reason };
  }
  let cniVersion = opts.cniVersion;
  if (!cniVersion) {
    cniVersion = '1.0.0';
    for (const p of paths) {
      const versions = await pluginVersions(p, { timeoutMs: 10_000, context: { stage: 'network' } }).catch(
        () => [] as string[],
      );
      if (!versions.includes('1.0.0')) cniVersion = '0.4.0';
    }
  }
  const conf = defaultConfList({ ...opts, cniVersion });
  const file = path.join(opts.confDir, DEFAULT_CONFIG_FILE);
  await fs.mkdir(opts.confDir, { recursive: true, mode: 0o755 });
  await writeFileAtomic(file, JSON.stringify(conf, null, 2) + '\n', 0o644);
  const subnets = subnetsFor(opts.podCidr);
  opts.log?.info(
    { file, bridge: opts.bridge ?? DEFAULT_BRIDGE, subnets, cniVersion },
    'no CNI network config found: wrote the default bridge network (bridge + host-local + portmap + loopback)',
  );
  return { written: true, file, subnets, cniVersion };
}
