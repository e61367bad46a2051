// Running CNI plugins, per the CNI spec's protocol: the plugin binary is
// executed with the CNI_* environment, its network config on stdin and its
// result (or error) as JSON on stdout. A list is run in order for ADD (each
// plugin gets the previous one's result as `prevResult`) and in reverse for
// DEL. Every call has a timeout after which the plugin is killed.
import { spawn } from 'child_process';
import { CapsaError, ErrorContext, InternalError } from '../../errors';
import type { Logger } from '../../log';
import { withSpan } from '../../observability/tracing';
import { withTimeout } from '../../util/timeout';
import { NetworkConfigList, PluginConf, findPlugin } from './config';
import { versionAtLeast } from './result';
import { CapabilityArgs, runtimeConfigFor } from './runtime-config';

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION';

const MAX_STDOUT = 8 << 20;
const MAX_STDERR = 64 << 10;
/** Plugins such as portmap and bridge run iptables/ip; a daemon started with a bare PATH must still find them. */
const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** A plugin's own failure: its CNI error code, message and details (spec "Error" result). */
export class CniPluginError extends CapsaError {
  constructor(
    readonly plugin: string,
    readonly command: CniCommand,
    readonly msg: string,
    readonly code: number | undefined,
    readonly details: string | undefined,
    context: ErrorContext,
  ) {
    // Code 11 is the spec's "try again later".
    super(
      code === 11 ? 'Unavailable' : 'Internal',
      `CNI plugin ${plugin} ${command} failed${code !== undefined ? ` (code ${code})` : ''}: ${msg}${
        details && details !== msg ? `: ${details}` : ''
      }`,
      { stage: 'network', ...context },
    );
  }
}

/** One plugin call's timing, for logs and the benchmark. */
export interface PluginTiming {
  command: CniCommand;
  plugin: string;
  ms: number;
  ok: boolean;
}

export interface InvokeOptions {
  /** Per plugin call. */
  timeoutMs: number;
  /** Aborts the call (the plugin is killed). */
  signal?: AbortSignal;
  log?: Logger;
  context: ErrorContext;
  onCall?: (t: PluginTiming) => void;
}

/** What identifies one attachment of one sandbox to the network. */
export interface Attachment {
  containerId: string;
  /** Netns path; may be empty for DEL when the namespace is gone. */
  netns: string;
  ifName: string;
  /** The CNI_ARGS string. */
  args: string;
  capabilityArgs: CapabilityArgs;
  binDirs: readonly string[];
}

/** The environment of a plugin call: the daemon's own minus inherited CNI_* variables, plus the call's. */
export function pluginEnv(command: CniCommand, a: Attachment): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('CNI_')) env[k] = v;
  env.PATH = env.PATH ? `${env.PATH}:${SYSTEM_PATH}` : SYSTEM_PATH;
  env.CNI_COMMAND = command;
  if (command !== 'VERSION') {
    env.CNI_CONTAINERID = a.containerId;
    env.CNI_NETNS = a.netns;
    env.CNI_IFNAME = a.ifName;
    env.CNI_ARGS = a.args;
  }
  env.CNI_PATH = a.binDirs.join(':');
  return env;
}

/**
 * The stdin of one plugin in a list (libcni's buildOneConfig): the plugin's
 * own config with the list's name and cniVersion, the previous result, and
 * `runtimeConfig` with the capability arguments it declares.
 */
export function pluginConfig(
  list: NetworkConfigList,
  plugin: PluginConf,
  prevResult: unknown,
  caps: CapabilityArgs,
): Record<string, unknown> {
  const conf: Record<string, unknown> = { ...plugin, name: list.name, cniVersion: list.cniVersion };
  if (prevResult !== undefined) conf.prevResult = prevResult;
  else delete conf.prevResult;
  const rc = runtimeConfigFor(plugin.capabilities, caps);
  if (rc) conf.runtimeConfig = rc;
  return conf;
}

interface RawOutcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function run(file: string, env: NodeJS.ProcessEnv, stdin: string, signal: AbortSignal): Promise<RawOutcome> {
  return new Promise<RawOutcome>((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason as Error);
      return;
    }
    const child = spawn(file, [], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let outLen = 0;
    let err = '';
    let settled = false;
    const onAbort = (): void => {
      child.kill('SIGKILL');
      if (!settled) {
        settled = true;
        reject(signal.reason as Error);
      }
    };
    signal.addEventListener('abort', onAbort, { once: true });
    child.stdout.on('data', (b: Buffer) => {
      if (outLen < MAX_STDOUT) out.push(b);
      outLen += b.length;
    });
    child.stderr.on('data', (b: Buffer) => {
      err = (err + b.toString('utf8')).slice(-MAX_STDERR);
    });
    // A plugin may exit without reading stdin; that is not our error.
    child.stdin.on('error', () => undefined);
    child.on('error', (e) => {
      signal.removeEventListener('abort', onAbort);
      if (!settled) {
        settled = true;
        reject(e);
      }
    });
    child.on('close', (code, sig) => {
      signal.removeEventListener('abort', onAbort);
      if (settled) return;
      settled = true;
      if (outLen > MAX_STDOUT) {
        reject(new Error(`wrote more than ${MAX_STDOUT} bytes to stdout`));
        return;
      }
      resolve({ code, signal: sig, stdout: Buffer.concat(out).toString('utf8'), stderr: err });
    });
    child.stdin.end(stdin);
  });
}

/** The spec's error object, when stdout holds one. */
function errorFromStdout(stdout: string): { code?: number; msg: string; details?: string } | undefined {
  try {
    const e = JSON.parse(stdout) as { code?: unknown; msg?: unknown; details?: unknown };
    if (typeof e !== 'object' || e === null) return undefined;
    if (typeof e.msg !== 'string' && typeof e.code !== 'number') return undefined;
    return {
      code: typeof e.code === 'number' ? e.code : undefined,
      msg: typeof e.msg === 'string' && e.msg !== '' ? e.msg : 'no message',
      details: typeof e.details === 'string' && e.details !== '' ? e.details : undefined,
    };
  } catch {
    return undefined;
  }
}

/**
 * Executes one plugin. Resolves to the parsed stdout for ADD and VERSION
 * (undefined for DEL and CHECK); rejects with CniPluginError when the plugin
 * fails, DeadlineExceededError when it runs past the timeout.
 */
export async function execPlugin(
  pluginPath: string,
  command: CniCommand,
  attachment: Attachment,
  stdin: Record<string, unknown>,
  opts: InvokeOptions,
): Promise<unknown> {
  const plugin = pluginPath.slice(pluginPath.lastIndexOf('/') + 1);
  const t0 = process.hrtime.bigint();
  let ok = false;
  try {
    const outcome = await withTimeout(
      `CNI plugin ${plugin} ${command}`,
      opts.timeoutMs,
      (signal) =>
        withSpan(
          `cni ${plugin} ${command}`,
          { 'cni.plugin': plugin, 'cni.command': command },
          () => run(pluginPath, pluginEnv(command, attachment), JSON.stringify(stdin), signal),
          (span, o) => span.setAttribute('cni.exit_code', o.code ?? -1),
        ),
      { stage: 'network', ...opts.context },
      opts.signal,
    ).catch((err: unknown) => {
      if (err instanceof CapsaError) throw err;
      const e = err as NodeJS.ErrnoException;
      if (opts.signal?.aborted && err === opts.signal.reason) {
        throw new CapsaError(
          'DeadlineExceeded',
          `CNI plugin ${plugin} ${command} cancelled: ${String(e?.message ?? e)}`,
          {
            stage: 'network',
            ...opts.context,
          },
        );
      }
      throw new CniPluginError(
        plugin,
        command,
        `cannot run ${pluginPath}: ${e?.message ?? String(e)}`,
        undefined,
        undefined,
        opts.context,
      );
    });
    if (outcome.code !== 0) {
      const spec = errorFromStdout(outcome.stdout);
      const stderr = outcome.stderr.trim();
      if (spec) throw new CniPluginError(plugin, command, spec.msg, spec.code, spec.details, opts.context);
      const how = outcome.signal ? `killed by ${outcome.signal}` : `exited with status ${outcome.code}`;
      const text = stderr || outcome.stdout.trim();
      throw new CniPluginError(
        plugin,
        command,
        text ? `${how}: ${text.slice(-2000)}` : how,
        undefined,
        undefined,
        opts.context,
      );
    }
    ok = true;
    if (command !== 'ADD' && command !== 'VERSION') return undefined;
    try {
      return JSON.parse(outcome.stdout) as unknown;
    } catch {
      throw new InternalError(`CNI plugin ${plugin} ${command} printed no valid JSON result`, {
        stage: 'network',
        ...opts.context,
      });
    }
  } finally {
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    opts.log?.debug({ ...opts.context, plugin, command, ms: Math.round(ms * 10) / 10, ok }, 'CNI plugin call');
    opts.onCall?.({ command, plugin, ms, ok });
  }
}

/** Carries the last result of a list ADD, also when the ADD fails half-way (for the undo). */
export interface AddProgress {
  prevResult?: unknown;
  /** How many plugins completed ADD. */
  done: number;
}

/** ADD for each plugin in order; resolves to the last plugin's (raw) result. */
export async function addNetworkList(
  list: NetworkConfigList,
  pluginPaths: readonly string[],
  a: Attachment,
  opts: InvokeOptions,
  progress: AddProgress = { done: 0 },
  /** Called after each plugin's ADD with the result so far (e.g. to checkpoint it). */
  onPluginDone?: (result: unknown) => Promise<void>,
): Promise<unknown> {
  for (let i = 0; i < list.plugins.length; i++) {
    const stdin = pluginConfig(list, list.plugins[i], progress.prevResult, a.capabilityArgs);
    progress.prevResult = await execPlugin(pluginPaths[i], 'ADD', a, stdin, opts);
    progress.done = i + 1;
    if (onPluginDone && i < list.plugins.length - 1) await onPluginDone(progress.prevResult);
  }
  return progress.prevResult;
}

/**
 * DEL for each plugin in reverse order. `prevResult` (the ADD result) is
 * passed for spec ≥ 0.4.0, as libcni does. Every plugin gets its DEL even
 * when an earlier one fails — IPAM must free the address whatever portmap
 * thinks — and the first error is thrown at the end.
 */
export async function delNetworkList(
  list: NetworkConfigList,
  a: Attachment,
  prevResult: unknown,
  opts: InvokeOptions,
): Promise<void> {
  const prev = prevResult !== undefined && versionAtLeast(list.cniVersion, '0.4.0') ? prevResult : undefined;
  let first: CapsaError | undefined;
  for (const plugin of [...list.plugins].reverse()) {
    try {
      const file = await findPlugin(plugin.type, a.binDirs);
      if (!file) {
        throw new CniPluginError(
          plugin.type,
          'DEL',
          `plugin not found in ${a.binDirs.join(', ')}`,
          undefined,
          undefined,
          opts.context,
        );
      }
      await execPlugin(file, 'DEL', a, pluginConfig(list, plugin, prev, a.capabilityArgs), opts);
    } catch (err) {
      const e = err instanceof CapsaError ? err : new InternalError(String(err), { stage: 'network', ...opts.context });
      opts.log?.warn({ ...opts.context, plugin: plugin.type, err: e.message }, 'CNI DEL failed');
      first ??= e;
      if (opts.signal?.aborted) break;
    }
  }
  if (first) throw first;
}

/** The spec versions a plugin supports (VERSION command). */
export async function pluginVersions(pluginPath: string, opts: InvokeOptions): Promise<string[]> {
  const a: Attachment = { containerId: '', netns: '', ifName: '', args: '', capabilityArgs: {}, binDirs: [] };
  const out = (await execPlugin(pluginPath, 'VERSION', a, { cniVersion: '0.4.0' }, opts)) as {
    supportedVersions?: unknown;
  };
  const v = out?.supportedVersions;
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}
