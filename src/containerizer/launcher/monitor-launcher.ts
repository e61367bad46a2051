// The Launcher over capsa-monitor (native/monitor/README.md): one small C
// process per container that double-forks away from the daemon. Node only
// spawns the short-lived `capsa-monitor run|exec` front processes (through
// MonitorClient) and awaits them (a start is one byte into the `start` fifo);
// it never forks itself.
//
// Run dir protocol (written by the monitor unless noted):
//   spec.json (daemon)  monitor.json  init.json  started.json  start-error
//   exit.json  ctl (fifo)  start (fifo)  monitor.log
// Pid reuse: every pid we act on is checked against the start time the
// monitor recorded next to it.
import { randomBytes } from 'crypto';
import { closeSync, existsSync, promises as fs, constants as fsc, watch as fsWatch, openSync, readSync } from 'fs';
import * as net from 'net';
import * as path from 'path';
import {
  CapsaError,
  DeadlineExceededError,
  ErrorContext,
  FailedPreconditionError,
  InternalError,
  InvalidArgumentError,
} from '../../errors';
import { LaunchError, MonitorClient, execSpecOf, parseExecOutcome, readErrorRecord, reasonOf } from './monitor-client';
import type { LaunchSpec } from './spec';
import type { Logger } from '../../log';
import { encodeJson } from '../checkpoint';
import { ProcessIdentity, isAlive, killChecked, processStartTime } from '../../util/procfs';
import { sleep } from '../../util/timeout';
import { writeFileAtomic } from '../../util/atomic-file';
import type { Created, ExecRequest, ExecResult, ExitRecord, LaunchStatus, Launcher, Started } from './launcher';

/** "2024-05-01T10:00:00.123456789Z" → Unix ns. */
export function parseRfc3339Ns(s: string): bigint {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$/.exec(s);
  if (!m) throw new InternalError(`"${s}" is not an RFC 3339 UTC time`);
  const ms = Date.parse(`${m[1]}Z`);
  if (Number.isNaN(ms)) throw new InternalError(`"${s}" is not an RFC 3339 UTC time`);
  return BigInt(ms) * 1_000_000n + BigInt((m[2] ?? '').padEnd(9, '0'));
}

/** How often start() looks for a monitor that died without a verdict (the watch brings the verdicts). */
const START_LIVENESS_MS = 50;

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/** Resolves when `p` does, after `ms`, or rejects with the abort. */
function waitFor(p: Promise<void>, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      resolve();
    };
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason as Error);
    };
    const timer = setTimeout(done, Math.max(0, ms));
    signal.addEventListener('abort', onAbort, { once: true });
    void p.then(done);
  });
}

async function readJson<T>(file: string): Promise<T | undefined> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if (errno(err) === 'ENOENT' || errno(err) === 'ENOTDIR') return undefined;
    throw err;
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    // Written atomically, so a torn file is damage, not a race.
    throw new InternalError(`${file} is not valid JSON`, { path: file });
  }
}

function identity(v: unknown): ProcessIdentity | undefined {
  const o = v as { pid?: unknown; startTime?: unknown } | undefined;
  if (!o || typeof o.pid !== 'number' || typeof o.startTime !== 'number') return undefined;
  return { pid: o.pid, startTime: o.startTime };
}

export function exitRecordOf(raw: unknown, file: string): ExitRecord {
  const o = raw as Record<string, unknown>;
  if (typeof o?.exitCode !== 'number' || typeof o.finishedAt !== 'string') {
    throw new InternalError(`${file} is not an exit record`, { path: file });
  }
  return {
    pid: typeof o.pid === 'number' ? o.pid : 0,
    exitCode: o.exitCode,
    signal: typeof o.signal === 'number' ? o.signal : 0,
    oomKilled: o.oomKilled === true,
    startedAt: typeof o.startedAt === 'string' ? parseRfc3339Ns(o.startedAt) : undefined,
    finishedAt: parseRfc3339Ns(o.finishedAt),
  };
}

export interface MonitorLauncherOptions {
  log: Logger;
  /** Path of capsa-monitor (default: findMonitorBinary()). */
  binary?: string;
  /** The client to share (default: one of its own). */
  client?: MonitorClient;
  /** How long `run` may take to get the init ready. */
  createTimeoutMs?: number;
  /** How long destroy() waits for a monitor to leave by itself before killing it. */
  monitorExitMs?: number;
}

export class MonitorLauncher implements Launcher {
  private readonly client: MonitorClient;
  private readonly log: Logger;

  constructor(private readonly opts: MonitorLauncherOptions) {
    this.log = opts.log;
    this.client = opts.client ?? new MonitorClient(opts.binary);
  }

  async create(runDir: string, spec: LaunchSpec, signal: AbortSignal): Promise<Created> {
    const ctx: ErrorContext = { stage: 'launch', containerId: spec.capsa.containerId, path: runDir };
    // A retried create of the same id must not read an earlier attempt's verdicts.
    for (const f of ['exit.json', 'start-error', 'started.json', 'init.json', 'monitor.json']) {
      await fs.rm(path.join(runDir, f), { force: true });
    }
    await writeFileAtomic(path.join(runDir, 'spec.json'), encodeJson(spec), 0o600);
    const r = await this.client.run(runDir, signal, ctx);
    if (r.code !== 0) {
      // start-error is absent only when no monitor could start (the run dir is unusable).
      const record = (await readErrorRecord(path.join(runDir, 'start-error'))) ?? { message: reasonOf(r.stderr) };
      throw new LaunchError(record, ctx);
    }
    const monitor = identity(await readJson(path.join(runDir, 'monitor.json')));
    let init = identity(await readJson(path.join(runDir, 'init.json')));
    if (!init) {
      const pid = Number.parseInt(r.stdout.trim(), 10);
      const startTime = Number.isInteger(pid) ? await processStartTime(pid) : undefined;
      if (startTime !== undefined) init = { pid, startTime };
    }
    if (!monitor || !init)
      throw new InternalError('capsa-monitor reported ready but left no monitor.json/init.json', ctx);
    return { monitor, init };
  }

  /**
   * Releases the init by hand (README "Create / Start"): one byte into the
   * `start` fifo, then the verdict from the run dir, as `capsa-monitor
   * start` would give it, without a front process. The watch is set before
   * the release so no verdict is missed; a slow poll backs it up and notices
   * a monitor that died without one.
   */
  async start(runDir: string, timeoutMs: number, signal: AbortSignal): Promise<Started> {
    const ctx: ErrorContext = { stage: 'start', path: runDir };
    signal.throwIfAborted();
    if (!existsSync(runDir)) {
      throw new FailedPreconditionError(`chdir ${runDir}: no such file or directory`, ctx);
    }
    const monitor = identity(await readJson(path.join(runDir, 'monitor.json')).catch(() => undefined));
    let wake: (() => void) | undefined;
    const unwatch = this.watch(runDir, () => wake?.());
    try {
      const verdict = async (): Promise<Started | undefined> => {
        const started = await readJson<{ pid?: unknown; startTime?: unknown; startedAt?: unknown }>(
          path.join(runDir, 'started.json'),
        );
        if (started !== undefined) {
          const init = identity(started);
          if (!init || typeof started.startedAt !== 'string') {
            throw new InternalError(
              `started.json holds no start record: ${JSON.stringify(started).slice(0, 200)}`,
              ctx,
            );
          }
          return { init, startedAt: parseRfc3339Ns(started.startedAt) };
        }
        const failed = await readErrorRecord(path.join(runDir, 'start-error'));
        if (failed) throw new FailedPreconditionError(failed.message, ctx);
        return undefined;
      };
      let fh: fs.FileHandle | undefined;
      try {
        fh = await fs.open(path.join(runDir, 'start'), fsc.O_WRONLY | fsc.O_NONBLOCK);
      } catch (err) {
        const v = await verdict();
        if (v) return v;
        const why = errno(err) === 'ENXIO' ? 'monitor is gone' : (err as Error).message;
        throw new FailedPreconditionError(`container is not waiting to start: ${why}`, ctx);
      }
      try {
        await fh.write('s');
      } catch (err) {
        throw new FailedPreconditionError(`write start: ${(err as Error).message}`, ctx);
      } finally {
        await fh.close();
      }
      const deadline = Date.now() + timeoutMs;
      let lastLiveness = Date.now();
      for (;;) {
        signal.throwIfAborted();
        // Re-armed before each look, so an event during the look is not lost.
        const woken = new Promise<void>((resolve) => (wake = resolve));
        const v = await verdict();
        if (v) return v;
        const now = Date.now();
        if (now >= deadline) {
          throw new DeadlineExceededError(`the container did not report its start within ${timeoutMs} ms`, ctx);
        }
        if (now - lastLiveness >= START_LIVENESS_MS) {
          lastLiveness = now;
          const gone = existsSync(path.join(runDir, 'exit.json')) || !(await isAlive(monitor));
          if (gone) {
            const last = await verdict();
            if (last) return last;
            throw new FailedPreconditionError('no start verdict (monitor exited)', ctx);
          }
        }
        await waitFor(woken, Math.min(START_LIVENESS_MS, deadline - now), signal);
      }
    } finally {
      wake = undefined;
      unwatch();
    }
  }

  /** Writes one command line to the monitor's ctl fifo; false when no monitor reads it. */
  private async ctl(runDir: string, line: string): Promise<boolean> {
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(path.join(runDir, 'ctl'), fsc.O_WRONLY | fsc.O_NONBLOCK);
    } catch (err) {
      if (errno(err) === 'ENXIO' || errno(err) === 'ENOENT' || errno(err) === 'ENOTDIR') return false;
      throw err;
    }
    try {
      await fh.write(line);
      return true;
    } catch (err) {
      if (errno(err) === 'EPIPE' || errno(err) === 'EAGAIN') return false;
      throw err;
    } finally {
      await fh.close();
    }
  }

  async signal(runDir: string, sig: number): Promise<boolean> {
    // The monitor has not reaped its init, so its kill cannot hit a reused pid.
    if (await this.ctl(runDir, `signal ${sig}\n`)) return true;
    // No monitor (killed): the init itself, if it still is who init.json says.
    const init = identity(await readJson(path.join(runDir, 'init.json')));
    return killChecked(init, sig);
  }

  async reopenLog(runDir: string, logPath: string, signal: AbortSignal): Promise<void> {
    if (!(await this.ctl(runDir, 'reopen-log\n'))) {
      throw new FailedPreconditionError('the container has no monitor to reopen its log', { path: runDir });
    }
    // The monitor creates the file anew; it is final once it exists again.
    while (!existsSync(logPath)) {
      await sleep(10, signal);
    }
  }

  async exec(runDir: string, req: ExecRequest, signal: AbortSignal): Promise<ExecResult> {
    const dir = path.join(runDir, `exec-${randomBytes(6).toString('hex')}`);
    const ctx: ErrorContext = { stage: 'exec', path: dir };
    await fs.mkdir(dir, { mode: 0o700 });
    try {
      const spec = execSpecOf(req.spec, {
        args: req.args,
        init: req.init,
        cgroupProcs: req.cgroupProcs,
        timeoutMs: req.timeoutMs,
        drainMs: 1000,
        outputLimit: req.outputLimit,
        stdout: path.join(dir, 'stdout'),
        stderr: path.join(dir, 'stderr'),
        exitFile: path.join(dir, 'exit.json'),
      });
      const r = await this.client.exec(path.join(dir, 'spec.json'), spec, signal, ctx);
      const result = parseExecOutcome(r.stdout);
      if (!result) {
        throw new InternalError(`capsa-monitor exec failed (exit ${r.code ?? r.signal}): ${reasonOf(r.stderr)}`, ctx);
      }
      // The command could not start (no such binary, bad cwd …).
      if (result.error !== undefined) throw new InvalidArgumentError('cmd', result.error, ctx);
      const read = async (f: string): Promise<Buffer> => {
        try {
          return await fs.readFile(path.join(dir, f));
        } catch (err) {
          if (errno(err) === 'ENOENT') return Buffer.alloc(0);
          throw err;
        }
      };
      return {
        exitCode: result.exitCode,
        timedOut: result.timedOut,
        stdout: (await read('stdout')).subarray(0, req.outputLimit),
        stderr: (await read('stderr')).subarray(0, req.outputLimit),
        stdoutTruncated: result.stdoutTruncated,
        stderrTruncated: result.stderrTruncated,
      };
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }

  async status(runDir: string): Promise<LaunchStatus> {
    const exitFile = path.join(runDir, 'exit.json');
    const ended = async (): Promise<LaunchStatus | undefined> => {
      const exit = await readJson(exitFile);
      if (exit !== undefined) return { state: 'exited', exit: exitRecordOf(exit, exitFile) };
      const errFile = path.join(runDir, 'start-error');
      const failed = await readErrorRecord(errFile);
      if (failed) {
        const st = await fs.stat(errFile, { bigint: true }).catch(() => undefined);
        return {
          state: 'start-failed',
          reason: failed.message,
          at: st ? st.mtimeNs : BigInt(Date.now()) * 1_000_000n,
        };
      }
      return undefined;
    };
    const first = await ended();
    if (first) return first;
    const monitor = identity(await readJson(path.join(runDir, 'monitor.json')));
    const init = identity(await readJson(path.join(runDir, 'init.json')));
    if (monitor && (await isAlive(monitor))) {
      const started = await readJson<{ startedAt?: unknown }>(path.join(runDir, 'started.json'));
      if (started === undefined) return { state: 'created', monitor, init };
      const startedAt = typeof started.startedAt === 'string' ? parseRfc3339Ns(started.startedAt) : undefined;
      return { state: 'running', monitor, init, startedAt };
    }
    // The monitor may have written its verdict and left since the first look.
    const second = await ended();
    if (second) return second;
    if (!existsSync(runDir)) return { state: 'lost', reason: 'the run directory is gone' };
    if (!monitor) return { state: 'lost', reason: 'no monitor ever ran for it', init };
    return { state: 'lost', reason: `its monitor (pid ${monitor.pid}) is gone without recording an exit`, init };
  }

  watch(runDir: string, onChange: () => void): () => void {
    let w: ReturnType<typeof fsWatch> | undefined;
    try {
      w = fsWatch(runDir, { persistent: false }, (_event, name) => {
        if (name === null || name === 'exit.json' || name === 'start-error' || name === 'started.json') onChange();
      });
      w.on('error', (err) => {
        this.log.debug({ runDir, err: err.message }, 'run dir watch ended');
        w?.close();
      });
    } catch (err) {
      // The periodic check still sees the exit.
      this.log.warn({ runDir, err: (err as Error).message }, 'cannot watch run dir');
    }
    const gone = this.watchMonitor(runDir, onChange);
    return () => {
      w?.close();
      gone();
    };
  }

  /**
   * Calls `onChange` once the monitor is gone, however it ended: EOF on the
   * `alive` fifo, whose only writer the monitor holds (a SIGKILLed monitor
   * writes no exit.json for the dir watch to see). The read end sits in the
   * event loop like a socket (epoll, no thread); it is opened anew after a
   * daemon restart. Without the fifo (a monitor older than it, or gone
   * already) one look now and the periodic check do the job.
   */
  private watchMonitor(runDir: string, onChange: () => void): () => void {
    const fd = openFifoWithWriter(path.join(runDir, 'alive'));
    if (fd === undefined) {
      setImmediate(onChange);
      return () => undefined;
    }
    let closed = false;
    const sock = new net.Socket({ fd, readable: true, writable: false });
    sock.unref();
    const ended = (): void => {
      if (closed) return;
      closed = true;
      sock.destroy();
      void this.monitorExited(runDir).then(onChange);
    };
    sock.on('data', () => undefined);
    sock.once('end', ended);
    sock.once('error', (err) => {
      this.log.debug({ runDir, err: err.message }, 'monitor watch ended');
      ended();
    });
    return () => {
      closed = true;
      sock.destroy();
    };
  }

  /**
   * Resolves once the monitor no longer counts as alive: its files close a
   * moment before /proc shows it as a zombie, and status() goes by /proc.
   */
  private async monitorExited(runDir: string): Promise<void> {
    const monitor = identity(await readJson(path.join(runDir, 'monitor.json')).catch(() => undefined));
    const until = Date.now() + 1000;
    while (Date.now() < until && (await isAlive(monitor))) await sleep(2);
  }

  async destroy(runDir: string, signal: AbortSignal): Promise<void> {
    const monitor = identity(await readJson(path.join(runDir, 'monitor.json')).catch(() => undefined));
    const init = identity(await readJson(path.join(runDir, 'init.json')).catch(() => undefined));
    // An init without its monitor (the monitor was killed) is killed here.
    await killChecked(init, 'SIGKILL');
    if (monitor && (await isAlive(monitor))) {
      // Once its init is gone a monitor drains, writes exit.json and leaves by itself.
      const until = Date.now() + (this.opts.monitorExitMs ?? 3000);
      while (Date.now() < until && (await isAlive(monitor))) await sleep(20, signal);
      if (await killChecked(monitor, 'SIGKILL')) {
        this.log.warn({ runDir, pid: monitor.pid }, 'killed a monitor that outlived its container');
        while (await isAlive(monitor)) await sleep(10, signal);
      }
    }
    // Never rm -rf through a mount (the rootfs is the caller's to unmount first).
    const mounts = await mountsUnder(runDir);
    if (mounts.length > 0) {
      throw new InternalError(`run dir still has mounts: ${mounts.join(', ')}`, { path: runDir, stage: 'destroy' });
    }
    await fs.rm(runDir, { recursive: true, force: true });
  }
}

/**
 * Opens the fifo `file` for reading (O_NONBLOCK: never waits for a writer);
 * undefined when it is missing or has no writer right now. That must be
 * looked at once at the open: a reader that never saw a writer gets no
 * hangup later. (libuv opens every file O_CLOEXEC.)
 */
function openFifoWithWriter(file: string): number | undefined {
  let fd: number;
  try {
    fd = openSync(file, fsc.O_RDONLY | fsc.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    // 0: EOF, no writer. EAGAIN: a writer and nothing to read, the usual case.
    if (readSync(fd, Buffer.alloc(1)) !== 0) return fd;
  } catch (err) {
    if (errno(err) === 'EAGAIN') return fd;
  }
  closeSync(fd);
  return undefined;
}

/** Mount points at or below `dir` (from /proc/self/mountinfo). */
export async function mountsUnder(dir: string): Promise<string[]> {
  const text = await fs.readFile('/proc/self/mountinfo', 'utf8');
  const base = path.resolve(dir);
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 5) continue;
    const m = f[4].replace(/\\([0-7]{3})/g, (_x, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (m === base || m.startsWith(base + '/')) out.push(m);
  }
  return out;
}

/** Is `err` the verdict of a start that failed inside the container (not a daemon problem)? */
export function isStartFailure(err: unknown): err is CapsaError {
  return err instanceof CapsaError && err.kind === 'FailedPrecondition' && err.context.stage === 'start';
}
