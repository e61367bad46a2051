// The sandboxes' `network` isolator: one CniNetwork (src/network/cni) for
// the configured conf and bin dirs, its records under <root>/network.
import * as path from 'path';
import type { Config } from '../../../config/schema';
import type { Logger } from '../../../log';
import { CniNetwork } from '../../../network/cni/network';
import { CniNetworkIsolator } from './cni';

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
