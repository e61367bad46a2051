// The CNI network of the daemon: one CniNetwork for the configured conf and
// bin dirs, its records under <root>/network, as the sandboxes' `network`
// isolator.
import * as path from 'path';
import type { Config } from '../../config/schema';
import type { Logger } from '../../log';
import { CniNetworkIsolator } from './isolator';
import { CniNetwork } from './network';

export function createNetworkIsolator(
  config: Pick<Config, 'root' | 'cni_conf_dir' | 'cni_bin_dirs'>,
  log: Logger,
): CniNetworkIsolator {
  const cniLog = log.child({ component: 'cni' });
  const cni = new CniNetwork({
    confDir: config.cni_conf_dir,
    binDirs: config.cni_bin_dirs,
    stateDir: path.join(config.root, 'network'),
    log: cniLog,
  });
  return new CniNetworkIsolator(cni, cniLog);
}
