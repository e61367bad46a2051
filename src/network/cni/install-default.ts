// `node dist/src/network/cni/install-default.js [serve flags]` (hack/run.sh),
// also usable as `capsa network default-config [serve flags]` through
// defaultConfigCommand: writes the default CNI network config when the
// configured conf dir has none. Takes the same --config / --kebab-case flags
// as `capsa serve`, so it looks at the conf dir and bin dirs the daemon will
// use; the pod CIDR comes from what kubelet last sent (runtime-config.json
// under the root dir), when it did.
import { ConfigError, loadConfig } from '../../config/load';
import { Config, KEYS, kebab } from '../../config/schema';
import { createLogger } from '../../log';
import { loadRuntimeState } from '../runtime-state';
import { ensureDefaultNetworkConfig } from './default-config';

/** The serve flags that matter here; others are left for `capsa serve` to judge. */
function configFlags(args: string[]): { configPath?: string; overrides: Partial<Record<keyof Config, string>> } {
  const out: { configPath?: string; overrides: Partial<Record<keyof Config, string>> } = { overrides: {} };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (!arg.startsWith('--')) continue;
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    const value = eq >= 0 ? arg.slice(eq + 1) : args[++i];
    if (value === undefined) break;
    if (name === 'config') out.configPath = value;
    const def = KEYS.find((k) => kebab(k.key) === name);
    if (def) out.overrides[def.key] = value;
  }
  return out;
}

export async function defaultConfigCommand(args: string[]): Promise<number> {
  let config: Config;
  try {
    config = loadConfig(configFlags(args)).config;
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`capsa: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const log = createLogger(config.log_level).child({ component: 'cni' });
  const { podCidr } = await loadRuntimeState(config.root).catch(() => ({ podCidr: '' }));
  try {
    await ensureDefaultNetworkConfig({ confDir: config.cni_conf_dir, binDirs: config.cni_bin_dirs, podCidr, log });
  } catch (err) {
    log.error({ confDir: config.cni_conf_dir, err: (err as Error).message }, 'cannot write the default CNI config');
    return 1;
  }
  return 0;
}

if (require.main === module) {
  defaultConfigCommand(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`capsa: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
