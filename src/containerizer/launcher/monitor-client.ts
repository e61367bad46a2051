// Every call of capsa-monitor goes through MonitorClient: where the binary
// is, the argv of each command, the stdio layout of the streaming ones, the
// exec spec they run, and the error record a failed start leaves
// (native/monitor/README.md has the protocol, spec.ts the types).
import { ChildProcess, spawn } from 'child_process';
import { promises as fs } from 'fs';
import * as net from 'net';
import { constants as osc } from 'os';
import { CapsaError, ErrorContext, InternalError } from '../../errors';
import { native } from '../../native';
import { findHelperBinary } from '../../util/helper-binary';
import type { ProcessIdentity } from '../../util/procfs';
import type { ExecSpec, LaunchSpec, MonitorErrorRecord } from './spec';

/** Where capsa-monitor is: $CAPSA_MONITOR, next to the sources (native/build), or installed. */
export function findMonitorBinary(): string {
  return findHelperBinary({
    name: 'capsa-monitor',
    env: 'CAPSA_MONITOR',
    buildDir: 'native/build',
    make: 'make -C native/monitor',
  });
}

/** A failed container start as the monitor recorded it; `record` says what failed without parsing text. */
export class LaunchError extends CapsaError {
  constructor(
    readonly record: MonitorErrorRecord,
    context: ErrorContext,
  ) {
    super('Internal', `capsa-monitor: ${record.message}`, context);
  }
}

/** What a front process (run, exec) left: its exit and its output (capped). */
export interface FrontResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The result line of `exec` / `exec-stream` on stdout. */
export interface ExecOutcome {
  exitCode: number;
  timedOut: boolean;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  /** The command could not start (no such binary, bad cwd …). */
  error?: string;
}

/** The streams a streaming command gets, and whether it has a tty. */
export interface StreamOptions {
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
}

const OUTPUT_CAP = 64 * 1024;

/** A record's message from the monitor's text: without "capsa-monitor: " prefixes, one line. */
export function reasonOf(text: string): string {
  const lines = text
    .split('\n')
    .map((l) => l.replace(/^capsa-monitor: /, '').trim())
    .filter((l) => l !== '');
  return lines.join('; ') || 'no reason given';
}

/** A start-error file's record (one JSON line; a run dir of an older monitor holds the text alone). */
export function parseErrorRecord(text: string): MonitorErrorRecord {
  try {
    const o = JSON.parse(text) as Record<string, unknown>;
    if (typeof o === 'object' && o !== null && typeof o.message === 'string') {
      const str = (k: string): string | undefined => (typeof o[k] === 'string' ? (o[k] as string) : undefined);
      return {
        message: o.message,
        op: str('op'),
        path: str('path'),
        mount: str('mount'),
        code: str('code'),
        errno: typeof o.errno === 'number' ? o.errno : undefined,
      };
    }
  } catch {
    // the text of an older monitor
  }
  return { message: reasonOf(text) };
}

/** The record in `file`, undefined when there is none. */
export async function readErrorRecord(file: string): Promise<MonitorErrorRecord | undefined> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
  return parseErrorRecord(text);
}

/** What a command run in a running container needs besides the container's own launch spec. */
export interface ExecSpecOptions {
  args: string[];
  /** Default: the container's. */
  env?: string[];
  init: ProcessIdentity;
  cgroupProcs: string[];
  timeoutMs: number;
  drainMs: number;
  outputLimit: number;
  stdout: string;
  stderr: string;
  exitFile: string;
}

/** The exec spec of a command in a container: its user, cwd, capabilities and seccomp filter, as runc exec does. */
export function execSpecOf(launch: LaunchSpec, o: ExecSpecOptions): ExecSpec {
  const p = launch.process;
  return {
    process: {
      terminal: false, // exec-stream --tty makes the pty
      args: o.args,
      env: o.env ?? p.env,
      cwd: p.cwd,
      user: p.user,
      ...(p.capabilities ? { capabilities: p.capabilities } : {}),
      noNewPrivileges: p.noNewPrivileges,
    },
    ...(launch.linux.seccomp ? { linux: { seccomp: launch.linux.seccomp } } : {}),
    capsa: {
      pid: o.init.pid,
      pidStartTime: o.init.startTime,
      cgroupProcs: o.cgroupProcs,
      timeoutMs: o.timeoutMs,
      drainMs: o.drainMs,
      outputLimit: o.outputLimit,
      stdout: o.stdout,
      stderr: o.stderr,
      exitFile: o.exitFile,
    },
  };
}

/** The result line of exec / exec-stream; undefined when there is none (the monitor failed). */
export function parseExecOutcome(stdout: string): ExecOutcome | undefined {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(stdout) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (typeof o !== 'object' || o === null) return undefined;
  return {
    exitCode: typeof o.exitCode === 'number' ? o.exitCode : -1,
    timedOut: o.timedOut === true,
    stdoutTruncated: o.stdoutTruncated === true,
    stderrTruncated: o.stderrTruncated === true,
    error: typeof o.error === 'string' && o.error !== '' ? o.error : undefined,
  };
}

/**
 * Streaming commands' stdio: 0 stdin, 1 the result, 2 diagnostics, 3 stdout,
 * 4 stderr (none with a tty: one stream), 5 control lines (resize).
 */
function streamStdio(o: StreamOptions): ('pipe' | 'ignore')[] {
  return [
    o.stdin ? 'pipe' : 'ignore',
    'pipe',
    'pipe',
    o.stdout ? 'pipe' : 'ignore',
    o.stderr && !o.tty ? 'pipe' : 'ignore',
    'pipe',
  ];
}

export class MonitorClient {
  private resolved?: string;

  constructor(private readonly fixedBinary?: string) {}

  /** Found on first use, so a daemon without containers runs without the binary. */
  get binary(): string {
    this.resolved ??= this.fixedBinary ?? findMonitorBinary();
    return this.resolved;
  }

  /** `run --wait-start <runDir>`: a monitor for the run dir's spec.json, its init held before execve. */
  run(runDir: string, signal: AbortSignal, ctx: ErrorContext): Promise<FrontResult> {
    return this.front(['run', '--wait-start', runDir], signal, ctx);
  }

  /** `exec <spec>`: one command in a running container, output to the spec's files. */
  async exec(specFile: string, spec: ExecSpec, signal: AbortSignal, ctx: ErrorContext): Promise<FrontResult> {
    await fs.writeFile(specFile, JSON.stringify(spec), { mode: 0o600 });
    return this.front(['exec', specFile], signal, ctx);
  }

  /** `exec-stream [--tty] [--stdin] <spec>`: the command's stdio on pipes (streamStdio). */
  async execStream(specFile: string, spec: ExecSpec, o: StreamOptions): Promise<ChildProcess> {
    await fs.writeFile(specFile, JSON.stringify(spec), { mode: 0o600 });
    const args = ['exec-stream', ...(o.tty ? ['--tty'] : []), ...(o.stdin ? ['--stdin'] : []), specFile];
    return spawn(this.binary, args, { stdio: streamStdio(o) });
  }

  /** `attach [--stdin] <runDir>`: the container's own output, and its stdin. */
  attach(runDir: string, o: StreamOptions): ChildProcess {
    return spawn(this.binary, ['attach', ...(o.stdin ? ['--stdin'] : []), runDir], { stdio: streamStdio(o) });
  }

  /** `portforward <netns> <port>`: one connection, spliced on stdin/stdout; "connected" on stderr. */
  portForward(netns: string, port: number): ChildProcess {
    return spawn(this.binary, ['portforward', netns, String(port)], { stdio: ['pipe', 'pipe', 'pipe'] });
  }

  /**
   * Spawns a front process and awaits it; the abort kills it (only it: the
   * monitor is in its own session). Through the addon's posix_spawn when it
   * has one: child_process forks the whole daemon (its page tables copied
   * while the event loop waits, ~5 ms a spawn here), on every
   * CreateContainer and ExecSync.
   */
  private front(args: string[], signal: AbortSignal, ctx: ErrorContext): Promise<FrontResult> {
    const addon = spawner();
    if (addon) return frontSpawned(addon, this.binary, args, signal, ctx);
    const bin = this.binary;
    return new Promise<FrontResult>((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason as Error);
      let child: ChildProcess;
      try {
        child = spawn(bin, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
      } catch (err) {
        return reject(new InternalError(`spawn ${bin}: ${(err as Error).message}`, ctx));
      }
      let stdout = '';
      let stderr = '';
      child.stdout!.on('data', (d: Buffer) => {
        if (stdout.length < OUTPUT_CAP) stdout += d.toString();
      });
      child.stderr!.on('data', (d: Buffer) => {
        if (stderr.length < OUTPUT_CAP) stderr += d.toString();
      });
      const onAbort = (): void => {
        child.kill('SIGKILL');
      };
      signal.addEventListener('abort', onAbort, { once: true });
      child.once('error', (err) => {
        signal.removeEventListener('abort', onAbort);
        reject(new InternalError(`spawn ${bin}: ${err.message}`, ctx));
      });
      child.once('close', (code, sig) => {
        signal.removeEventListener('abort', onAbort);
        if (signal.aborted) return reject(signal.reason as Error);
        resolve({ code, signal: sig, stdout, stderr });
      });
    });
  }
}

type Spawner = Required<Pick<ReturnType<typeof native>, 'spawnDetached' | 'waitPid'>>;

let spawnerCache: Spawner | null | undefined;

/** The addon's spawn functions; null when the addon is missing or older than them. */
function spawner(): Spawner | null {
  if (spawnerCache === undefined) {
    try {
      const a = native();
      spawnerCache = a.spawnDetached && a.waitPid ? (a as Spawner) : null;
    } catch {
      spawnerCache = null;
    }
  }
  return spawnerCache;
}

const SIGNAL_NAMES = new Map<number, NodeJS.Signals>(
  Object.entries(osc.signals).map(([name, n]) => [n, name as NodeJS.Signals]),
);

/** front() over posix_spawn: the output read from the pipes in the event loop, the child reaped by us. */
function frontSpawned(
  addon: Spawner,
  bin: string,
  args: string[],
  signal: AbortSignal,
  ctx: ErrorContext,
): Promise<FrontResult> {
  return new Promise<FrontResult>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason as Error);
    let child: { pid: number; stdout: number; stderr: number };
    try {
      child = addon.spawnDetached(bin, [bin, ...args]);
    } catch (err) {
      return reject(new InternalError(`spawn ${bin}: ${(err as Error).message}`, ctx));
    }
    const out = { stdout: '', stderr: '' };
    const onAbort = (): void => {
      try {
        process.kill(child.pid, 'SIGKILL'); // not reaped yet: the pid is still the child's
      } catch {
        // gone already
      }
    };
    signal.addEventListener('abort', onAbort, { once: true });
    let open = 2;
    const reap = (tries: number): void => {
      let st: { code: number | null; signal: number | null } | null;
      try {
        st = addon.waitPid(child.pid);
      } catch (err) {
        signal.removeEventListener('abort', onAbort);
        return reject(new InternalError(`wait for ${bin}: ${(err as Error).message}`, ctx));
      }
      // Its pipes close as it exits: the exit itself follows within moments.
      if (!st) return void setTimeout(() => reap(tries + 1), tries < 20 ? 1 : 10);
      signal.removeEventListener('abort', onAbort);
      if (signal.aborted) return reject(signal.reason as Error);
      const sig = st.signal === null ? null : (SIGNAL_NAMES.get(st.signal) ?? null);
      resolve({ code: st.code, signal: sig, stdout: out.stdout, stderr: out.stderr });
    };
    for (const [fd, key] of [
      [child.stdout, 'stdout'],
      [child.stderr, 'stderr'],
    ] as const) {
      const sock = new net.Socket({ fd, readable: true, writable: false });
      sock.on('data', (d: Buffer) => {
        if (out[key].length < OUTPUT_CAP) out[key] += d.toString();
      });
      sock.on('error', () => sock.destroy()); // 'close' follows
      sock.on('close', () => {
        if (--open === 0) reap(0);
      });
    }
  });
}
