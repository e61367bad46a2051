// What the streaming sessions run, over the containerizer: exec through
// `capsa-monitor exec-stream` (the command in the container's namespaces
// and cgroups, its stdio relayed on pipes, a pty with --tty), and
// port-forward connections through `capsa-monitor portforward` in the pod's
// network namespace (a host-network pod is dialled from here).
import type { ChildProcess } from 'child_process';
import { randomBytes } from 'crypto';
import { promises as fs } from 'fs';
import * as net from 'net';
import * as path from 'path';
import { Duplex, Readable, Writable } from 'stream';
import type { Containers } from '../containerizer';
import { MonitorClient, execSpecOf, parseExecOutcome } from '../containerizer';
import type { Sandboxes } from '../containerizer';
import { FailedPreconditionError, InvalidArgumentError } from '../errors';
import type { Logger } from '../log';
import type { PortDialer } from './portforward';
import type { CommandOptions, CommandResult, CommandRunner, CommandStreams, TerminalSize } from './remotecommand';

export interface StreamRuntimeDeps {
  containers: Containers;
  sandboxes: Sandboxes;
  log: Logger;
  /** How capsa-monitor is run (default: a client of its own). */
  monitor?: MonitorClient;
}

/** Output has no cap on a stream: the client reads it as it comes. */
const NO_LIMIT = Number.MAX_SAFE_INTEGER;

export class StreamRuntime {
  private readonly monitor: MonitorClient;

  constructor(private readonly deps: StreamRuntimeDeps) {
    this.monitor = deps.monitor ?? new MonitorClient();
  }

  private running(containerId: string): ReturnType<Containers['get']> {
    const c = this.deps.containers.get(containerId);
    if (c.criState() !== 'CONTAINER_RUNNING' || !c.record.init) {
      throw new FailedPreconditionError(`container ${c.id} is not running`, { containerId: c.id, stage: 'exec' });
    }
    return c;
  }

  /** Checks the container now (the RPC's answer) and returns what runs when the client connects. */
  prepareExec(containerId: string, cmd: string[], opts: CommandOptions): CommandRunner {
    if (cmd.length === 0) throw new InvalidArgumentError('cmd', 'is required');
    const c = this.running(containerId);
    return (streams) => this.exec(c.id, cmd, opts, streams);
  }

  private async exec(
    containerId: string,
    cmd: string[],
    opts: CommandOptions,
    streams: CommandStreams,
  ): Promise<CommandResult> {
    const { containers } = this.deps;
    const c = this.running(containerId);
    const spec = await containers.specOf(c);
    const dir = path.join(c.record.runDir, `exec-${randomBytes(6).toString('hex')}`);
    await fs.mkdir(dir, { mode: 0o700 });
    try {
      const env = [...spec.process.env];
      if (opts.tty && !env.some((e) => e.startsWith('TERM='))) env.push('TERM=xterm');
      const execSpec = execSpecOf(spec, {
        args: cmd,
        env,
        init: c.record.init!,
        cgroupProcs: spec.capsa.cgroupProcs ?? containers.cgroups.handle(c.record.cgroupPath).procs,
        timeoutMs: 0,
        drainMs: 500,
        outputLimit: NO_LIMIT,
        stdout: 'fd:3',
        stderr: 'fd:4',
        exitFile: path.join(dir, 'exit.json'),
      });
      const child = await this.monitor.execStream(path.join(dir, 'spec.json'), execSpec, opts);
      const result = await relay(child, streams, opts);
      if (!result.ok) return { error: `capsa-monitor exec-stream failed: ${result.diag || result.out}` };
      const r = parseExecOutcome(result.out);
      if (!r) return { error: `capsa-monitor exec-stream: ${result.diag || 'no result'}` };
      if (r.error !== undefined) return { error: r.error };
      return { exitCode: r.exitCode, description: `command '${cmd.join(' ')}'` };
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }

  /** Attach to the container's own stdio (checked now): output from now on, stdin when it has one. */
  async prepareAttach(containerId: string, opts: CommandOptions): Promise<CommandRunner> {
    const c = this.running(containerId);
    const spec = await this.deps.containers.specOf(c);
    const ctx = { containerId: c.id, stage: 'attach' };
    if (opts.stdin && !spec.capsa.stdin) {
      throw new InvalidArgumentError('stdin', `container ${c.id} was not created with stdin`, ctx);
    }
    if (opts.tty !== (spec.process.terminal === true)) {
      throw new InvalidArgumentError('tty', `does not match the container's (${spec.process.terminal === true})`, ctx);
    }
    const runDir = c.record.runDir;
    return async (streams) => {
      this.running(c.id);
      const child = this.monitor.attach(runDir, opts);
      const r = await relay(child, streams, opts);
      return r.ok ? { exitCode: 0 } : { error: `attach: ${r.diag.replace(/^capsa-monitor: /, '') || 'failed'}` };
    };
  }

  /** A dialer into the pod's network namespace (checked now). */
  preparePortForward(sandboxId: string): PortDialer {
    const sb = this.deps.sandboxes.get(sandboxId);
    if (sb.criState() !== 'SANDBOX_READY') {
      throw new FailedPreconditionError(`sandbox ${sb.id} is not ready`, { sandboxId: sb.id, stage: 'port forward' });
    }
    const netns = sb.ctx.namespaces.net;
    if (!netns) return (port) => dialHost(port);
    return (port) => this.dialNetns(netns, port);
  }

  private dialNetns(netns: string, port: number): Promise<Duplex> {
    return new Promise((resolve, reject) => {
      const child = this.monitor.portForward(netns, port);
      let diag = '';
      let settled = false;
      child.stderr!.setEncoding('utf8');
      child.stderr!.on('data', (d: string) => (diag += d.slice(0, 4096)));
      child.on('error', (err) => {
        if (!settled) reject(err);
        settled = true;
      });
      // The helper says "connected" on stderr once it is, or exits with the reason.
      const onDiag = (): void => {
        if (settled || !diag.includes('connected\n')) return;
        settled = true;
        child.stderr!.removeListener('data', onDiag);
        resolve(new ProcessConnection(child));
      };
      child.stderr!.on('data', onDiag);
      child.once('exit', (code) => {
        if (settled) return;
        settled = true;
        reject(new Error(diag.replace(/^capsa-monitor: /, '').trim() || `exit ${code}`));
      });
    });
  }
}

function dialHost(port: number): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.removeListener('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** A helper process as a connection: write to its stdin, read its stdout. */
class ProcessConnection extends Duplex {
  constructor(private readonly child: ChildProcess) {
    super({ allowHalfOpen: true });
    const out = child.stdout!;
    out.on('data', (d: Buffer) => {
      if (!this.push(d)) out.pause();
    });
    out.on('end', () => this.push(null));
    child.stdin!.on('error', () => undefined);
    child.on('exit', () => setImmediate(() => this.destroy()));
  }

  override _read(): void {
    this.child.stdout!.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.child.stdin!.write(chunk)) cb();
    else this.child.stdin!.once('drain', () => cb());
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.child.stdin!.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (err: Error | null) => void): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    cb(err);
  }
}

interface Relayed {
  ok: boolean;
  out: string;
  diag: string;
}

/** Wires the client's channels to the exec process; resolves when it has exited and its output is out. */
function relay(child: ChildProcess, streams: CommandStreams, opts: CommandOptions): Promise<Relayed> {
  const stdio = child.stdio as unknown as (Readable | Writable | null)[];
  const stdinPipe = stdio[0] as Writable | null;
  const stdoutPipe = stdio[3] as Readable | null;
  const stderrPipe = stdio[4] as Readable | null;
  const control = stdio[5] as Writable;
  let out = '';
  let diag = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => (diag += d.slice(0, 4096)));
  control.on('error', () => undefined);
  const onResize = (size: TerminalSize): void => {
    if (!control.writableEnded) control.write(`${size.width} ${size.height}\n`);
  };
  if (opts.tty) {
    const size = streams.size();
    if (size) onResize(size);
    streams.resize.on('resize', onResize);
  }
  if (stdinPipe) {
    stdinPipe.on('error', () => undefined);
    if (streams.stdin) streams.stdin.pipe(stdinPipe);
    else stdinPipe.end();
  }
  const drained: Promise<void>[] = [];
  const pipeOut = (from: Readable | null, to: Writable | undefined): void => {
    if (!from) return;
    if (to) from.pipe(to, { end: false });
    else from.resume();
    drained.push(new Promise((resolve) => from.once('close', () => resolve())));
  };
  pipeOut(stdoutPipe, streams.stdout);
  pipeOut(stderrPipe, streams.stderr);
  const onAbort = (): void => {
    // The client is gone: the end of the control pipe tells exec-stream to
    // kill the command and all it started (attach just ends); SIGKILL if not.
    stdinPipe?.destroy();
    control.end();
    setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
  };
  streams.signal.addEventListener('abort', onAbort, { once: true });
  return new Promise((resolve) => {
    child.once('error', (err) => {
      diag += err.message;
    });
    child.once('close', (code) => {
      streams.signal.removeEventListener('abort', onAbort);
      streams.resize.removeListener('resize', onResize);
      if (streams.stdin && stdinPipe) streams.stdin.unpipe(stdinPipe);
      control.end();
      void Promise.all(drained).then(() => resolve({ ok: code === 0, out, diag: diag.trim() }));
    });
  });
}

/** The streaming RPCs' checks that need no containerizer. */
export function validateStreamRequest(req: {
  containerId: string;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
}): void {
  if (req.containerId === '') throw new InvalidArgumentError('container_id', 'is required');
  if (!req.stdin && !req.stdout && !req.stderr) {
    throw new InvalidArgumentError('stdin', 'one of stdin, stdout, or stderr must be set');
  }
  if (req.tty && req.stderr) throw new InvalidArgumentError('stderr', 'tty and stderr cannot both be true');
}
