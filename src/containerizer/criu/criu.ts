// CRIU: config criu_path (default Debian's `criu`, found on PATH at run
// time; CRIU >= 4.1 knows kernel 6.x's [vvar_vclock]). capsa needs it only
// for checkpoint/restore, so a node without it runs everything else and
// answers those RPCs FailedPrecondition. Whether CRIU can run on this kernel
// is `criu check`'s verdict, kept with its output as the evidence an
// operator sees in the error (e.g. CRIU 3.17 on kernel 6.18: "vdso:
// Unexpected rt vDSO area bounds", the [vvar_vclock] mapping it predates).
import { execFile } from 'child_process';
import { access, constants } from 'fs/promises';
import { FailedPreconditionError, type ErrorContext } from '../../errors';

export interface CriuStatus {
  /** The criu binary found on PATH, when any. */
  path?: string;
  version?: string;
  /** `criu check` passed. */
  usable: boolean;
  /** What `criu check` (or the lookup) said, trimmed: the evidence quoted in errors. */
  evidence: string;
}

/**
 * What dump and restore both say of the process tree: established TCP
 * connections, file locks and external unix sockets are taken along, and
 * the cgroups are capsa's business (the tree is restored into the new
 * container's cgroup, not the old one's).
 */
export const CRIU_TREE_FLAGS = ['--tcp-established', '--file-locks', '--ext-unix-sk', '--manage-cgroups=ignore'];

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `file args`, never throwing for a non-zero exit; killed (SIGKILL) when `signal` aborts. */
export function run(file: string, args: string[], signal?: AbortSignal, cwd?: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { signal, cwd, maxBuffer: 4 * 1024 * 1024, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: unknown; signal?: NodeJS.Signals }) | null;
      if (e && (typeof e.code === 'string' || e.name === 'AbortError')) return reject(e);
      resolve({
        code: e ? (typeof e.code === 'number' ? e.code : null) : 0,
        signal: e?.signal ?? null,
        stdout: String(stdout),
        stderr: String(stderr),
      });
    });
  });
}

/** The last `max` non-empty lines of a tool's output, for an error message. */
export function tail(text: string, max = 6): string {
  const lines = text
    .split('\n')
    .map((l) => l.trimEnd())
    .filter((l) => l !== '');
  return lines.slice(-max).join('; ');
}

/**
 * What a CRIU log says went wrong: its "Error (file:line): ..." lines (the
 * first ones are the cause; the last is always "Dumping FAILED"), without
 * the timestamps; the log's tail when it has none.
 */
export function criuErrors(log: string, max = 4): string {
  const errors = log
    .split('\n')
    .filter((l) => /\bError \(/.test(l))
    .map((l) => l.replace(/^\(\s*[0-9.]+\)\s*/, '').trim());
  return errors.length ? errors.slice(0, max).join('; ') : tail(log);
}

/** "Version: 3.17.1" (criu --version's first line) → "3.17.1". */
export function parseCriuVersion(out: string): string | undefined {
  return /^Version:\s*(\S+)/m.exec(out)?.[1];
}

/**
 * Probes CRIU: a lookup on PATH, `criu --version`, `criu check`. A verdict
 * is kept for a minute, so installing criu (or a new kernel's fix) needs no
 * daemon restart and a burst of requests runs one probe.
 */
export class CriuProbe {
  private cached?: { at: number; status: Promise<CriuStatus> };

  constructor(
    private readonly binary = 'criu',
    private readonly ttlMs = 60_000,
  ) {}

  status(): Promise<CriuStatus> {
    const now = Date.now();
    if (!this.cached || now - this.cached.at > this.ttlMs) this.cached = { at: now, status: this.probe() };
    return this.cached.status;
  }

  /** Throws FailedPrecondition with the evidence unless CRIU can run here. */
  async require(what: string, context: ErrorContext): Promise<CriuStatus> {
    const s = await this.status();
    if (!s.path) throw new FailedPreconditionError(`${what} needs CRIU: criu not installed (${s.evidence})`, context);
    if (!s.usable) {
      throw new FailedPreconditionError(
        `${what} needs CRIU, which cannot run on this kernel: criu ${s.version ?? '?'} check failed: ${s.evidence}`,
        context,
      );
    }
    return s;
  }

  private async probe(): Promise<CriuStatus> {
    const path = await findOnPath(this.binary);
    if (!path) return { usable: false, evidence: `no ${this.binary} on PATH (Debian package criu)` };
    const signal = AbortSignal.timeout(20_000);
    try {
      const v = await run(path, ['--version'], signal);
      const version = parseCriuVersion(v.stdout + v.stderr);
      const c = await run(path, ['check'], signal);
      const said = tail(c.stdout + c.stderr);
      if (c.code === 0) return { path, version, usable: true, evidence: said || 'criu check: ok' };
      return { path, version, usable: false, evidence: said || `criu check exited with ${c.code ?? c.signal}` };
    } catch (err) {
      return { path, usable: false, evidence: `running ${path}: ${(err as Error).message}` };
    }
  }
}

async function findOnPath(name: string): Promise<string | undefined> {
  if (name.includes('/')) return (await isExecutable(name)) ? name : undefined;
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    if (dir === '') continue;
    const p = `${dir}/${name}`;
    if (await isExecutable(p)) return p;
  }
  return undefined;
}

async function isExecutable(p: string): Promise<boolean> {
  return access(p, constants.X_OK).then(
    () => true,
    () => false,
  );
}
