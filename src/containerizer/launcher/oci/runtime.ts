// One OCI runtime binary (runc, crun) and its state dir, driven through its
// command line as containerd's runc shim and CRI-O's oci package do: kill,
// delete --force, exec --process, list, features. Every call has a timeout
// and its stderr (or --log's last error) in the error it throws.
import { spawn } from 'child_process';
import { promises as fs } from 'fs';
import * as path from 'path';
import { ErrorContext, InternalError } from '../../../errors';
import { globalArgs } from './bundle';

export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: Buffer;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  timedOut: boolean;
}

export interface CommandOptions {
  /** 0: none. */
  timeoutMs: number;
  signal?: AbortSignal;
  /** Per stream; more is counted as truncated and dropped. */
  outputLimit?: number;
  /** Called on the timeout before the command itself is killed (exec: kill what it started). */
  onTimeout?: () => Promise<void>;
}

/** Features of a runtime as CRI's RuntimeHandlerFeatures names them, for this binary here. */
export interface HandlerFeatures {
  recursiveReadOnlyMounts: boolean;
  userNamespaces: boolean;
}

const DEFAULT_OUTPUT_LIMIT = 1 << 20;

export class OciRuntime {
  private featuresOnce?: Promise<HandlerFeatures>;

  constructor(
    readonly handler: string,
    readonly binary: string,
    readonly root: string,
  ) {}

  /** Runs `<binary> --root … --log … <args>`; resolves with how it ended (a timeout kills it). */
  async run(args: string[], log: string, o: CommandOptions): Promise<CommandResult> {
    await fs.mkdir(path.dirname(log), { recursive: true, mode: 0o700 });
    return this.spawned(args, log, o);
  }

  private spawned(args: string[], log: string, o: CommandOptions): Promise<CommandResult> {
    const limit = o.outputLimit ?? DEFAULT_OUTPUT_LIMIT;
    return new Promise((resolve, reject) => {
      const child = spawn(this.binary, [...globalArgs(this.root, log), ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' },
      });
      const out = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
      const size = { stdout: 0, stderr: 0 };
      const cut = { stdout: false, stderr: false };
      for (const name of ['stdout', 'stderr'] as const) {
        child[name].on('data', (b: Buffer) => {
          const room = limit - size[name];
          if (b.length > room) cut[name] = true;
          if (room > 0) out[name].push(b.subarray(0, room));
          size[name] += Math.min(room, b.length);
        });
      }
      let timedOut = false;
      // 0: none. Node fires a timer beyond 2^31-1 ms at once, so longer ones are that long.
      const timer =
        o.timeoutMs <= 0
          ? undefined
          : setTimeout(
              () => {
                timedOut = true;
                void (o.onTimeout?.() ?? Promise.resolve())
                  .catch(() => undefined)
                  .finally(() => {
                    // The command had its chance to end with what it ran; now it goes too.
                    setTimeout(() => child.kill('SIGKILL'), 2000).unref();
                  });
              },
              Math.min(o.timeoutMs, 2 ** 31 - 1),
            );
      const onAbort = (): void => {
        child.kill('SIGKILL');
      };
      o.signal?.addEventListener('abort', onAbort, { once: true });
      child.on('error', (err) => {
        clearTimeout(timer);
        o.signal?.removeEventListener('abort', onAbort);
        reject(new InternalError(`${this.binary}: ${err.message}`, { stage: 'runtime' }));
      });
      child.on('close', (code, sig) => {
        clearTimeout(timer);
        o.signal?.removeEventListener('abort', onAbort);
        resolve({
          code,
          signal: sig,
          stdout: Buffer.concat(out.stdout),
          stderr: Buffer.concat(out.stderr),
          stdoutTruncated: cut.stdout,
          stderrTruncated: cut.stderr,
          timedOut,
        });
      });
    });
  }

  /** A command that must succeed; its output, or an error quoting the runtime. */
  async must(args: string[], log: string, ctx: ErrorContext, timeoutMs = 10_000): Promise<string> {
    const r = await this.run(args, log, { timeoutMs });
    if (r.code === 0) return r.stdout.toString('utf8');
    const why = (await lastRuntimeError(log)) ?? (r.stderr.toString('utf8').trim() || `exit ${r.code ?? r.signal}`);
    throw new InternalError(
      `${this.handler}: ${args[0]}${r.timedOut ? ` timed out after ${timeoutMs} ms` : ''}: ${why.slice(0, 500)}`,
      ctx,
    );
  }

  /** Container ids in the runtime's state dir. */
  async list(log: string): Promise<string[]> {
    const out = await this.must(['list', '--quiet'], log, { stage: 'runtime list' });
    return out.split('\n').filter((l) => l.trim() !== '');
  }

  /** `kill <id> <sig>`; false when the runtime has no such running container. */
  async kill(id: string, sig: number, log: string): Promise<boolean> {
    const r = await this.run(['kill', id, String(sig)], log, { timeoutMs: 10_000 });
    return r.code === 0;
  }

  /** `delete --force <id>`; a container the runtime does not know is already deleted. */
  async delete(id: string, log: string, ctx: ErrorContext): Promise<void> {
    const r = await this.run(['delete', '--force', id], log, { timeoutMs: 10_000 });
    if (r.code === 0) return;
    if (!(await this.list(log)).includes(id)) return;
    const why = (await lastRuntimeError(log)) ?? r.stderr.toString('utf8').trim();
    throw new InternalError(`${this.handler}: delete --force ${id}: ${why.slice(0, 500)}`, ctx);
  }

  /**
   * What this runtime can do here, asked once: recursive read-only mounts
   * when `features` lists the "rro" mount option (runc ≥ 1.2; crun 1.8 has
   * no `features` at all). User namespaces are not offered on OCI handlers:
   * capsa hands its idmapped rootfs to the runtime only through its own
   * launcher (runc 1.1 and crun 1.8 cannot join a pod's user namespace with
   * idmapped mounts of their own).
   */
  features(log: string): Promise<HandlerFeatures> {
    this.featuresOnce ??= (async () => {
      const r = await this.run(['features'], log, { timeoutMs: 10_000 }).catch(() => undefined);
      let rro = false;
      if (r?.code === 0) {
        try {
          const f = JSON.parse(r.stdout.toString('utf8')) as { mountOptions?: unknown };
          rro = Array.isArray(f.mountOptions) && f.mountOptions.includes('rro');
        } catch {
          rro = false;
        }
      }
      return { recursiveReadOnlyMounts: rro, userNamespaces: false };
    })();
    return this.featuresOnce;
  }
}

/** The last error a runtime wrote to its --log (JSON lines: {"level":"error","msg":…}). */
export async function lastRuntimeError(log: string): Promise<string | undefined> {
  let text: string;
  try {
    text = await fs.readFile(log, 'utf8');
  } catch {
    return undefined;
  }
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  for (let i = lines.length - 1; i >= 0; i--) {
    try {
      const o = JSON.parse(lines[i]) as { level?: unknown; msg?: unknown };
      if ((o.level === 'error' || o.level === 'fatal') && typeof o.msg === 'string') return o.msg;
    } catch {
      // crun writes some lines plain: the last line is its message
      if (i === lines.length - 1) return lines[i].trim();
    }
  }
  return undefined;
}
