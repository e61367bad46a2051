// The `capsa` command: `serve`, `image import`, `config default`, `version`.
import { Config, KEYS, kebab } from './config/schema';
import { ConfigError, loadConfig } from './config/load';
import { renderConfig } from './config/render';
import { defaultConfig } from './config/schema';
import { imageCommand } from './cli/image-import';
import { CapsaError } from './errors';
import { createDaemonLogger } from './observability/logging';
import { startDaemon } from './server/daemon';
import { RUNTIME_API_VERSION, RUNTIME_NAME, runtimeVersion } from './cri/runtime-info';

const USAGE = `usage: capsa <command> [flags]

commands:
  serve             run the CRI daemon
  image import FILE load an OCI layout or docker-archive into the store (daemon stopped; capsa image help)
  config default    print the full default configuration (TOML)
  version           print the version

serve flags:
  --config FILE     config file (default /etc/capsa/capsa.toml; missing default file = built-in defaults)
${KEYS.map((k) => `  --${kebab(k.key)} VALUE`.padEnd(20) + `  ${k.help}`).join('\n')}
`;

/** Exit code 2 is for usage and configuration errors, as the issue asks. */
class UsageError extends Error {}

interface ParsedFlags {
  configPath?: string;
  overrides: Partial<Record<keyof Config, string>>;
}

export function parseFlags(args: string[]): ParsedFlags {
  const out: ParsedFlags = { overrides: {} };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (!arg.startsWith('--')) throw new UsageError(`unexpected argument "${arg}"`);
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    let value: string | undefined = eq >= 0 ? arg.slice(eq + 1) : undefined;
    if (value === undefined) {
      value = args[++i];
      if (value === undefined) throw new UsageError(`flag --${name} needs a value`);
    }
    if (name === 'config') {
      out.configPath = value;
      continue;
    }
    const def = KEYS.find((k) => kebab(k.key) === name);
    if (!def) throw new UsageError(`unknown flag --${name}`);
    out.overrides[def.key] = value;
  }
  return out;
}

async function serve(args: string[]): Promise<number> {
  const flags = parseFlags(args);
  const { config, file } = loadConfig(flags);
  const log = createDaemonLogger({ level: config.log_level, format: config.log_format });
  log.info(
    { pid: process.pid, configFile: file ?? '(built-in defaults)', cgroupDriver: config.cgroup_driver },
    'starting capsa',
  );
  // Signals are ours from the start: with the default action a SIGTERM just
  // after 'capsa is serving' (before handlers) killed the daemon outright.
  // One during start-up stops it as soon as it serves; a second one exits now.
  let requested: NodeJS.Signals | undefined;
  let stop: ((sig: NodeJS.Signals) => void) | undefined;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (stop) return stop(sig);
    if (requested) {
      log.warn({ signal: sig }, 'second signal during start-up: exiting now');
      process.exit(1);
    }
    requested = sig;
    log.info({ signal: sig }, 'signal received during start-up: stopping once started');
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  let daemon;
  try {
    daemon = await startDaemon(config, log);
  } catch (err) {
    const msg = err instanceof CapsaError ? err.message : String((err as Error)?.message ?? err);
    log.fatal({ err: msg }, 'cannot start');
    process.stderr.write(`capsa: ${msg}\n`);
    return 1;
  }
  const d = daemon;
  return new Promise<number>((resolve) => {
    let stopping = false;
    stop = (sig: NodeJS.Signals): void => {
      if (stopping) return;
      stopping = true;
      log.info({ signal: sig }, 'signal received');
      d.stop().then(
        () => resolve(0),
        (err: unknown) => {
          log.error({ err: (err as Error).message }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    if (requested) stop(requested);
  });
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'serve':
        return await serve(rest);
      case 'image':
        return await imageCommand(rest);
      case 'config':
        if (rest[0] === 'default' && rest.length === 1) {
          process.stdout.write(renderConfig(defaultConfig()));
          return 0;
        }
        throw new UsageError('usage: capsa config default');
      case 'version':
        process.stdout.write(`${RUNTIME_NAME} ${runtimeVersion()} (CRI ${RUNTIME_API_VERSION})\n`);
        return 0;
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        return cmd === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command "${cmd}"`);
    }
  } catch (err) {
    if (err instanceof ConfigError || err instanceof UsageError) {
      process.stderr.write(`capsa: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
}

/** Runs the command line and exits with its code. */
export function run(): void {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`capsa: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}

if (require.main === module) run();
