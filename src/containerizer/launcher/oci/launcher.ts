// The Launcher of an OCI runtime handler: capsa-monitor still owns the
// container's lifetime (reaping, the CRI log, exit.json, the OOM watch, the
// `alive` fifo recovery opens again), but what it runs is `<runtime> run` in
// the foreground on a bundle written from the launch spec (bundle.ts);
// signals go through `<runtime> kill`, ExecSync through `<runtime> exec`,
// and destroy through `<runtime> delete --force` before the run dir goes.
//
// Files in the run dir besides the monitor's (monitor-launcher.ts):
//   runtime.json        the handler, binary and state dir (what recovery needs)
//   launch-spec.json    the container's launch spec (spec.json is the runtime's)
//   bundle/config.json  the OCI config
//   runtime.pid         written by the runtime: the container init's host pid
//   runtime-init.json   that pid and its start time, once started
//   runtime-start-error the runtime's reason when the container never ran
//   runtime.log         the runtime's own log (JSON lines)
import { randomBytes } from 'crypto';
import { existsSync, promises as fs } from 'fs';
import { constants as osConstants } from 'os';
import * as path from 'path';
import {
  DeadlineExceededError,
  ErrorContext,
  FailedPreconditionError,
  InternalError,
  InvalidArgumentError,
} from '../../../errors';
import { writeFileAtomic } from '../../../util/atomic-file';
import { ProcessIdentity, killChecked, processStartTime } from '../../../util/procfs';
import { sleep } from '../../../util/timeout';
import { encodeJson } from '../../checkpoint';
import type { Created, ExecRequest, ExecResult, LaunchStatus, Launcher, Started } from '../launcher';
import type { MonitorLauncher } from '../monitor-launcher';
import type { LaunchSpec } from '../spec';
import { bundleDir, ociConfigOf, runtimeFiles, runtimeProcessSpec } from './bundle';
import { OciRuntime, lastRuntimeError } from './runtime';

/** runtime.json: enough to delete the container with the same runtime after a restart. */
export interface RuntimeRecord {
  handler: string;
  binary: string;
  root: string;
  id: string;
}

export const RUNTIME_RECORD = 'runtime.json';
export const LAUNCH_SPEC = 'launch-spec.json';
const RUNTIME_INIT = 'runtime-init.json';
const START_ERROR = 'runtime-start-error';

/** How often start() looks for the runtime's pid file. */
const START_POLL_MS = 10;

async function readText(file: string): Promise<string | undefined> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}

export async function readRuntimeRecord(runDir: string): Promise<RuntimeRecord | undefined> {
  const text = await readText(path.join(runDir, RUNTIME_RECORD));
  if (text === undefined) return undefined;
  const o = JSON.parse(text) as Partial<RuntimeRecord>;
  if (typeof o.handler !== 'string' || typeof o.binary !== 'string' || typeof o.root !== 'string' || !o.id) {
    throw new InternalError(`${path.join(runDir, RUNTIME_RECORD)} is not a runtime record`, { path: runDir });
  }
  return o as RuntimeRecord;
}

async function readIdentity(file: string): Promise<ProcessIdentity | undefined> {
  const text = await readText(file);
  if (text === undefined) return undefined;
  const o = JSON.parse(text) as { pid?: unknown; startTime?: unknown };
  return typeof o.pid === 'number' && typeof o.startTime === 'number'
    ? { pid: o.pid, startTime: o.startTime }
    : undefined;
}

export class OciLauncher implements Launcher {
  constructor(
    readonly runtime: OciRuntime,
    private readonly monitor: MonitorLauncher,
  ) {}

  /** The runtime's log for calls about no one container (list, features). */
  get globalLog(): string {
    return `${this.runtime.root}.log`;
  }

  /** Refuses what this runtime cannot do here, naming the field, before anything is made. */
  private async check(spec: LaunchSpec, ctx: ErrorContext): Promise<void> {
    const f = await this.runtime.features(this.globalLog);
    if (!f.userNamespaces && spec.linux.namespaces.some((n) => n.type === 'user')) {
      throw new InvalidArgumentError(
        'runtime_handler',
        `handler "${this.runtime.handler}" (${this.runtime.binary}) does not run pods in their own user namespace here`,
        ctx,
      );
    }
    const rro = spec.mounts.find((m) => m.options.includes('rro'));
    if (!f.recursiveReadOnlyMounts && rro) {
      throw new InvalidArgumentError(
        'mounts.recursive_read_only',
        `handler "${this.runtime.handler}" (${this.runtime.binary}) has no recursive read-only mounts (${rro.destination})`,
        ctx,
      );
    }
  }

  async create(runDir: string, spec: LaunchSpec, signal: AbortSignal): Promise<Created> {
    const id = spec.capsa.containerId;
    const ctx: ErrorContext = { stage: 'launch', containerId: id, path: runDir };
    await this.check(spec, ctx);
    await fs.mkdir(this.runtime.root, { recursive: true, mode: 0o700 });
    for (const f of [RUNTIME_INIT, START_ERROR, runtimeFiles(runDir).pidFile, runtimeFiles(runDir).log]) {
      await fs.rm(path.resolve(runDir, f), { force: true });
    }
    const record: RuntimeRecord = {
      handler: this.runtime.handler,
      binary: this.runtime.binary,
      root: this.runtime.root,
      id,
    };
    await writeFileAtomic(path.join(runDir, RUNTIME_RECORD), JSON.stringify(record), 0o600);
    await writeFileAtomic(path.join(runDir, LAUNCH_SPEC), encodeJson(spec), 0o600);
    await fs.mkdir(bundleDir(runDir), { recursive: true, mode: 0o700 });
    await writeFileAtomic(path.join(bundleDir(runDir), 'config.json'), JSON.stringify(ociConfigOf(spec)), 0o600);
    const runtimeSpec = runtimeProcessSpec(spec, {
      binary: this.runtime.binary,
      root: this.runtime.root,
      runDir,
      id,
    });
    return this.monitor.create(runDir, runtimeSpec, signal);
  }

  /**
   * Releases the held runtime process (`<runtime> run` execs), then waits
   * until the runtime has made the container (its pid file) or has given
   * up (the monitor's exit.json): the container's own init is what the
   * caller gets, so streaming exec and the pid namespace of TARGET mode
   * find its namespaces.
   */
  async start(runDir: string, timeoutMs: number, signal: AbortSignal): Promise<Started> {
    const ctx: ErrorContext = { stage: 'start', path: runDir };
    const deadline = Date.now() + timeoutMs;
    const started = await this.monitor.start(runDir, timeoutMs, signal);
    const files = runtimeFiles(runDir);
    for (;;) {
      const text = await readText(files.pidFile);
      const pid = text === undefined ? NaN : Number.parseInt(text.trim(), 10);
      if (Number.isInteger(pid) && pid > 0) {
        const startTime = await processStartTime(pid);
        // Gone already (a command that ends at once): its runtime's pid stands in.
        const init = startTime === undefined ? started.init : { pid, startTime };
        await writeFileAtomic(path.join(runDir, RUNTIME_INIT), JSON.stringify(init), 0o600);
        return { init, startedAt: started.startedAt };
      }
      if (existsSync(path.join(runDir, 'exit.json'))) {
        const reason = await this.startFailure(runDir);
        await writeFileAtomic(path.join(runDir, START_ERROR), reason, 0o600);
        throw new FailedPreconditionError(reason, ctx);
      }
      if (Date.now() >= deadline) {
        throw new DeadlineExceededError(
          `${this.runtime.handler} did not create the container within ${timeoutMs} ms`,
          ctx,
        );
      }
      await sleep(START_POLL_MS, signal);
    }
  }

  private async startFailure(runDir: string): Promise<string> {
    const why = await lastRuntimeError(runtimeFiles(runDir).log);
    return `${this.runtime.handler}: ${(why ?? 'the runtime exited before it made the container').slice(0, 500)}`;
  }

  async signal(runDir: string, sig: number): Promise<boolean> {
    const rec = await readRuntimeRecord(runDir);
    if (rec && (await this.runtime.kill(rec.id, sig, runtimeFiles(runDir).log))) return true;
    // No container yet (the runtime is held before it runs) or no runtime: the monitor's init.
    return this.monitor.signal(runDir, sig);
  }

  reopenLog(runDir: string, logPath: string, signal: AbortSignal): Promise<void> {
    return this.monitor.reopenLog(runDir, logPath, signal);
  }

  async exec(runDir: string, req: ExecRequest, signal: AbortSignal): Promise<ExecResult> {
    const rec = await readRuntimeRecord(runDir);
    const dir = path.join(runDir, `exec-${randomBytes(6).toString('hex')}`);
    const ctx: ErrorContext = { stage: 'exec', path: dir };
    if (!rec) throw new FailedPreconditionError('the container has no runtime record', ctx);
    await fs.mkdir(dir, { mode: 0o700 });
    try {
      const p = req.spec.process;
      const processFile = path.join(dir, 'process.json');
      const pidFile = path.join(dir, 'pid');
      const log = path.join(dir, 'runtime.log');
      await fs.writeFile(
        processFile,
        JSON.stringify({
          terminal: false,
          user: p.user,
          args: req.args,
          env: p.env,
          cwd: p.cwd,
          capabilities: p.capabilities,
          noNewPrivileges: p.noNewPrivileges,
        }),
        { mode: 0o600 },
      );
      const r = await this.runtime.run(['exec', `--process=${processFile}`, `--pid-file=${pidFile}`, rec.id], log, {
        timeoutMs: req.timeoutMs,
        signal,
        outputLimit: req.outputLimit,
        // The command, not only the runtime waiting for it, ends on the timeout.
        onTimeout: async () => {
          const text = await readText(pidFile);
          const pid = text === undefined ? NaN : Number.parseInt(text.trim(), 10);
          if (Number.isInteger(pid) && pid > 0) {
            const startTime = await processStartTime(pid);
            if (startTime !== undefined) await killChecked({ pid, startTime }, 'SIGKILL');
          }
        },
      });
      if (r.timedOut) {
        return {
          exitCode: -1,
          timedOut: true,
          stdout: r.stdout,
          stderr: r.stderr,
          stdoutTruncated: r.stdoutTruncated,
          stderrTruncated: r.stderrTruncated,
        };
      }
      if (!existsSync(pidFile) && r.code !== 0) {
        // The command never ran (no such binary, bad cwd …): the runtime says why.
        const why = (await lastRuntimeError(log)) ?? r.stderr.toString('utf8').trim();
        throw new InvalidArgumentError('cmd', `${rec.handler}: ${why.slice(0, 500)}`, ctx);
      }
      return {
        exitCode: r.code ?? 128 + signalNumberOf(r.signal),
        timedOut: false,
        stdout: r.stdout,
        stderr: r.stderr,
        stdoutTruncated: r.stdoutTruncated,
        stderrTruncated: r.stderrTruncated,
      };
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }

  async status(runDir: string): Promise<LaunchStatus> {
    const st = await this.monitor.status(runDir);
    const init = await readIdentity(path.join(runDir, RUNTIME_INIT)).catch(() => undefined);
    switch (st.state) {
      case 'created':
        return st;
      case 'running':
        return init ? { ...st, init } : st;
      case 'lost':
        return init ? { ...st, init } : st;
      case 'start-failed':
        return st;
      case 'exited': {
        const failed = await readText(path.join(runDir, START_ERROR));
        if (failed !== undefined || !init) {
          return {
            state: 'start-failed',
            reason: failed ?? (await this.startFailure(runDir)),
            at: st.exit.finishedAt,
          };
        }
        return { state: 'exited', exit: { ...st.exit, pid: init.pid } };
      }
    }
  }

  watch(runDir: string, onChange: () => void): () => void {
    return this.monitor.watch(runDir, onChange);
  }

  async destroy(runDir: string, signal: AbortSignal): Promise<void> {
    const rec = await readRuntimeRecord(runDir).catch(() => undefined);
    if (rec) {
      await this.runtime.delete(rec.id, runtimeFiles(runDir).log, { stage: 'destroy', path: runDir });
      await removeRuntimeCgroups(runDir);
    }
    await this.monitor.destroy(runDir, signal);
  }
}

function signalNumberOf(sig: NodeJS.Signals | null): number {
  if (sig === null) return 0;
  return osConstants.signals[sig] ?? 0;
}

/**
 * The runtime makes the container's cgroup in every v1 hierarchy, also those
 * capsa leaves alone (name=systemd), and removes them only when its `run`
 * ends by itself: the leaf goes here, its processes gone by now (the caller
 * destroyed capsa's own cgroups first). Of its parents only a pod cgroup of
 * capsa's own (capsa-<id>, its pod without a cgroup_parent) goes, once empty;
 * others may be kubelet's.
 */
async function removeRuntimeCgroups(runDir: string): Promise<void> {
  const text = await readText(path.join(bundleDir(runDir), 'config.json'));
  if (text === undefined) return;
  const cgPath = (JSON.parse(text) as { linux?: { cgroupsPath?: unknown } }).linux?.cgroupsPath;
  if (typeof cgPath !== 'string' || !cgPath.startsWith('/') || cgPath.includes('..') || cgPath === '/') return;
  // A systemd scope (the systemd driver) is systemd's to remove, in every hierarchy.
  if (cgPath.endsWith('.scope')) return;
  const mountinfo = await fs.readFile('/proc/self/mountinfo', 'utf8');
  for (const line of mountinfo.split('\n')) {
    const [pre, post] = line.split(' - ');
    if (!post || post.split(' ')[0] !== 'cgroup') continue;
    const mount = pre.split(' ')[4];
    await fs.rmdir(path.join(mount, cgPath)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    const parent = path.posix.dirname(cgPath);
    if (/^capsa-[0-9a-f]{64}$/.test(path.posix.basename(parent))) {
      // Another container of the pod still in it: ENOTEMPTY or EBUSY, and it stays.
      await fs.rmdir(path.join(mount, parent)).catch(() => undefined);
    }
  }
}
