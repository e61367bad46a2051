// The daemon's configuration: one table of keys drives the TOML parser,
// the command-line flags (--kebab-case of each key), validation and
// `capsa config default`. Adding a setting means adding one entry here.
import { existsSync } from 'fs';

export type CgroupDriver = 'cgroupfs' | 'systemd';
export type LogLevelName = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';

export interface RegistryConfig {
  /** Endpoints tried in order before the registry itself, e.g. "http://127.0.0.1:5000". */
  mirrors: string[];
  /** Plain HTTP (and unverified TLS) allowed for this host. */
  insecure: boolean;
  /** Extra CA bundle (PEM) trusted for this host. */
  ca_file?: string;
}

/**
 * A RuntimeClass handler (`[runtimes.<name>]`). "capsa": capsa's own launcher
 * (what the default handler "" is). "oci": an OCI runtime (runc, crun) run
 * under capsa-monitor from a bundle capsa writes.
 */
export type RuntimeConfig =
  | { type: 'capsa' }
  | {
      type: 'oci';
      /** The runtime's executable (absolute). */
      binary: string;
      /** The runtime's state dir (--root); default <state>/runtimes/<name>. */
      root?: string;
    };

export interface Config {
  root: string;
  state: string;
  socket: string;
  log_level: LogLevelName;
  log_format: 'auto' | 'json' | 'text';
  cgroup_driver: CgroupDriver;
  cni_conf_dir: string;
  cni_bin_dirs: string[];
  streaming_address: string;
  metrics_address: string;
  tracing_endpoint: string;
  credentials_file: string;
  pull_stall_timeout: number;
  shutdown_timeout: number;
  sync_layers: boolean;
  /** CRIU for checkpoint/restore: a name looked up on PATH, or a path. */
  criu_path: string;
  /**
   * Every handler name served besides the default "": the deprecated
   * runtime_handlers list and the [runtimes.<name>] tables (filled in at load).
   */
  runtime_handlers: string[];
  /** Every non-default handler by name; runtime_handlers' names as type "capsa". */
  runtimes: Record<string, RuntimeConfig>;
  registries: Record<string, RegistryConfig>;
}

export type ScalarKind = 'string' | 'path' | 'address' | 'string[]' | 'seconds' | 'bool';

export interface KeyDef {
  key: keyof Config;
  kind: ScalarKind | { oneOf: readonly string[] };
  /** Default value, or a function that computes it from the host. */
  default: () => unknown;
  help: string;
  /** Checks a value of the right kind further; returns what is wrong with it. */
  check?: (value: unknown) => string | undefined;
}

/** systemd as PID 1 leaves /run/systemd/system behind (sd_booted's test). */
export function detectCgroupDriver(): CgroupDriver {
  return existsSync('/run/systemd/system') ? 'systemd' : 'cgroupfs';
}

export const KEYS: readonly KeyDef[] = [
  { key: 'root', kind: 'path', default: () => '/var/lib/capsa', help: 'persistent state: images, layers, checkpoints' },
  { key: 'state', kind: 'path', default: () => '/run/capsa', help: 'volatile state: pinned namespaces, run dirs' },
  { key: 'socket', kind: 'path', default: () => '/run/capsa/capsa.sock', help: 'CRI gRPC unix socket' },
  {
    key: 'log_level',
    kind: { oneOf: ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] },
    default: () => 'info',
    help: 'daemon log level',
  },
  {
    key: 'log_format',
    kind: { oneOf: ['auto', 'json', 'text'] },
    default: () => 'auto',
    help: 'log lines on stderr: json, text (one human-readable line each), auto (text when stderr is a terminal)',
  },
  {
    key: 'cgroup_driver',
    kind: { oneOf: ['cgroupfs', 'systemd'] },
    default: detectCgroupDriver,
    help: 'must match kubelet --cgroup-driver; default: systemd when PID 1 is systemd',
  },
  { key: 'cni_conf_dir', kind: 'path', default: () => '/etc/cni/net.d', help: 'CNI network configurations' },
  {
    key: 'cni_bin_dirs',
    kind: 'string[]',
    default: () => ['/opt/cni/bin', '/usr/lib/cni'],
    help: 'directories searched for CNI plugins',
  },
  {
    key: 'streaming_address',
    kind: 'address',
    default: () => '127.0.0.1:0',
    help: 'exec/attach/port-forward server (port 0: any free port)',
  },
  {
    key: 'metrics_address',
    kind: 'address',
    default: () => '127.0.0.1:9095',
    help: 'Prometheus metrics endpoint; empty disables it',
  },
  {
    key: 'tracing_endpoint',
    kind: 'string',
    default: () => '',
    help: 'OpenTelemetry traces over OTLP/HTTP to this URL (e.g. http://127.0.0.1:4318/v1/traces); empty: tracing off',
  },
  {
    key: 'credentials_file',
    kind: 'string',
    default: () => '/etc/capsa/auth.json',
    help: 'registry credentials in docker config.json format (optional)',
  },
  {
    key: 'pull_stall_timeout',
    kind: 'seconds',
    default: () => 60,
    help: 'seconds a download may make no progress before it fails',
  },
  {
    key: 'shutdown_timeout',
    kind: 'seconds',
    default: () => 10,
    help: 'seconds in-flight calls get to finish on SIGTERM',
  },
  {
    key: 'sync_layers',
    kind: 'bool',
    default: () => true,
    help: 'syncfs each unpacked layer before it becomes visible (false: faster pulls, a crash may lose layer data)',
  },
  {
    key: 'criu_path',
    kind: 'string',
    default: () => 'criu',
    help: 'CRIU binary for checkpoint/restore: a name on PATH or an absolute path (e.g. a CRIU >= 4.1 on kernels with [vvar_vclock])',
  },
  {
    key: 'runtime_handlers',
    kind: 'string[]',
    default: () => [],
    help: 'deprecated, use [runtimes.<name>] type = "capsa": RuntimeClass handler names served besides the default one, each running pods as the default does (e.g. "test-handler", which Kubernetes\' node conformance suite expects)',
    check: checkRuntimeHandlers,
  },
];

/** RuntimeClass.handler's rule: a DNS-1123 label. */
const HANDLER_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** What is wrong with a handler name, if anything (it also names a state dir: no path may hide in it). */
export function checkHandlerName(n: string): string | undefined {
  if (n.includes('/') || n.includes('\\') || n === '.' || n === '..')
    return `"${n.slice(0, 80)}" has a path in it (a RuntimeClass handler name is a DNS-1123 label)`;
  if (!HANDLER_NAME.test(n)) return `"${n.slice(0, 80)}" is not a DNS-1123 label (a RuntimeClass handler name)`;
  return undefined;
}

function checkRuntimeHandlers(value: unknown): string | undefined {
  const names = value as string[];
  for (const n of names) {
    const problem = checkHandlerName(n);
    if (problem !== undefined) return problem;
  }
  if (new Set(names).size !== names.length) return 'names a handler twice';
  return undefined;
}

export const DEFAULT_CONFIG_PATH = '/etc/capsa/capsa.toml';

export function defaultConfig(): Config {
  const c: Record<string, unknown> = { registries: {}, runtimes: {} };
  for (const k of KEYS) c[k.key] = k.default();
  return c as unknown as Config;
}

export function kebab(key: string): string {
  return key.replace(/_/g, '-');
}
