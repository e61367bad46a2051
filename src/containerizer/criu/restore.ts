// Restoring a container from a checkpoint archive (CreateContainer with the
// archive's path as the image, as CRI-O takes it). The container is made as
// any other (record, rootfs from the checkpointed image, cgroups, the
// monitor, the CRI log); only its launch differs, in RestoreLauncher, a
// Launcher over the default one:
//
//   create  the archive's writable layer goes onto the new rootfs; the
//           monitor holds a host process (capsa.hostProcess, placed in the
//           container's cgroups) that will run `criu restore`
//   start   the monitor releases it: criu restores the tree (its own PID and
//           mount namespaces, the pod's network, IPC and UTS ones joined,
//           the old stdio handed the monitor's pipes by inherit-fd) under
//           --root the new rootfs, then execs a waiter in its place whose
//           only child is the restored init: the monitor's init exits when
//           that one does, with its status (exit.json, the CRI log as usual)
//   signal  to the restored init (restored-init.json), not the waiter
//
// Run dir files besides the monitor's: restore.json (marks a restore),
// restore/ (the unpacked archive), restore.log (criu's), restored.pid,
// restored-init.json, launch-spec.json (the container's own spec, as an OCI
// handler keeps it: spec.json is the held criu's).
//
// The request is matched to its archive by a random token in the spec's
// environment (the restored processes keep the environment they had; the
// spec's is never exec'd): PendingRestores holds the unpacked archives from
// the CRI handler to create().
import { randomBytes } from 'crypto';
import { existsSync, promises as fs } from 'fs';
import * as path from 'path';
import { FailedPreconditionError, InternalError, InvalidArgumentError, type ErrorContext } from '../../errors';
import { writeFileAtomic } from '../../util/atomic-file';
import { killChecked, processStartTime, type ProcessIdentity } from '../../util/procfs';
import { sleep } from '../../util/timeout';
import type { Created, ExecRequest, ExecResult, LaunchStatus, Launcher, Started } from '../launcher/launcher';
import { LAUNCH_SPEC } from '../launcher/oci/launcher';
import { hostProcessSpec } from '../launcher/host-process';
import type { LaunchSpec } from '../launcher/spec';
import { encodeJson } from '../checkpoint';
import { ARCHIVE, type StdioFile } from './archive';
import { CRIU_TREE_FLAGS, criuErrors, run, tail } from './criu';

/** The spec's environment variable that names a pending restore. */
export const RESTORE_ENV = 'CAPSA_RESTORE_TOKEN';

/** Files in the run dir of a restored container. */
export const RESTORE_FILES = {
  /** The unpacked archive (CRIU's images under checkpoint/). */
  dir: 'restore',
  /** {criu}: marks the run dir as a restore's. */
  record: 'restore.json',
  /** criu restore --pidfile: the restored init's host pid. */
  pidFile: 'restored.pid',
  /** That pid and its start time, once started. */
  init: 'restored-init.json',
  /** criu restore --log-file (in the work dir: the run dir). */
  log: 'restore.log',
} as const;

/** How long a pending restore waits for its CreateContainer to reach the launcher. */
const PENDING_TTL_MS = 10 * 60_000;
const START_POLL_MS = 20;

/** Unpacked archives between the CRI handler and the launcher, by token. */
export class PendingRestores {
  private readonly byToken = new Map<string, { dir: string; at: number }>();

  /** Registers unpacked archive `dir`; the token goes into the request's environment. */
  add(dir: string): string {
    const token = randomBytes(16).toString('hex');
    this.byToken.set(token, { dir, at: Date.now() });
    return token;
  }

  /** The archive of `token`, now the caller's to keep or remove. */
  take(token: string): string | undefined {
    const p = this.byToken.get(token);
    this.byToken.delete(token);
    return p && Date.now() - p.at < PENDING_TTL_MS ? p.dir : undefined;
  }

  /** Removes the archive of `token` unless create() took it. */
  async release(token: string): Promise<void> {
    const dir = this.take(token);
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  }
}

export function restoreTokenOf(spec: LaunchSpec): string | undefined {
  const e = spec.process.env.find((v) => v.startsWith(`${RESTORE_ENV}=`));
  return e?.slice(RESTORE_ENV.length + 1);
}

export interface RestorePlan {
  criu: string;
  runDir: string;
  /** The new container's rootfs (mounted). */
  rootfs: string;
  /** The pod's network, IPC and UTS namespace files, when the spec joins them. */
  netns?: string;
  joinNs: { type: 'ipc' | 'uts'; path: string }[];
  /** descriptors.json: what the checkpointed init's fds 0-2 were. */
  stdio: string[];
  /** The old stdio that were host files (the monitor's /dev/null): CRIU's keys. */
  stdioFiles: StdioFile[];
  /** Mount point → host source of the new container (external mounts plugged back in by key). */
  externalMounts: Map<string, string>;
}

/** The waiter criu execs in its own place: waits for the restored init, exits as it did (128+n for a signal). */
export const WAITER = ['perl', '-e', 'wait; exit(($? & 127) ? 128 + ($? & 127) : ($? >> 8));'];

/**
 * criu restore's arguments (the counterpart of criuDumpArgs), run by
 * /bin/sh so the pod's netns is fd 3 for --inherit-fd: `sh -c 'exec "$@"
 * 3<"$0"' <netns> criu restore ...`.
 */
export function criuRestoreArgs(p: RestorePlan): string[] {
  const images = path.join(p.runDir, RESTORE_FILES.dir, ARCHIVE.checkpointDir);
  const args = [
    p.criu,
    'restore',
    '--images-dir',
    images,
    '--work-dir',
    p.runDir,
    '--log-file',
    RESTORE_FILES.log,
    '-v4',
    ...CRIU_TREE_FLAGS,
    '--root',
    p.rootfs,
    '--pidfile',
    path.join(p.runDir, RESTORE_FILES.pidFile),
  ];
  if (p.netns) args.push('--inherit-fd', 'fd[3]:extRootNetNS');
  for (const j of p.joinNs) args.push('--join-ns', `${j.type}:${j.path}`);
  // The old stdio, by the names the dump recorded, become the monitor's new ends.
  for (const [fd, name] of p.stdio.entries()) {
    if (name.startsWith('pipe:') || name.startsWith('socket:')) args.push('--inherit-fd', `fd[${fd}]:${name}`);
  }
  for (const f of p.stdioFiles) args.push('--inherit-fd', `fd[${f.fd}]:${f.key}`);
  for (const [m, src] of [...p.externalMounts].sort()) args.push('--ext-mount-map', `${m}:${src}`);
  args.push('--exec-cmd', '--', ...WAITER);
  return ['/bin/sh', '-c', 'exec "$@" 3<"$0"', p.netns ?? '/dev/null', ...args];
}

/** The launch spec of the held `criu restore` (cf. oci/bundle.ts's runtimeProcessSpec). */
export function restoreProcessSpec(spec: LaunchSpec, args: string[], runDir: string): LaunchSpec {
  return {
    ...hostProcessSpec(spec, { args, cwd: runDir, terminal: false }),
    capsa: {
      ...spec.capsa,
      // criu, and so the tree it restores, in the container's cgroups.
      cgroupProcs: spec.capsa.cgroupProcs,
      seccomp: { type: 'Unconfined' },
      hostProcess: true,
      killOnExit: false,
      // CRIU restores the tree, whatever runtime the pod's handler names: capsa's monitor runs it.
      runtimeHandler: undefined,
    },
  } as LaunchSpec;
}

/** The host sources of the spec's bind mounts and masked paths, by mount point (what the dump named external). */
export async function externalSourcesOf(spec: LaunchSpec, emptyDir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const m of spec.mounts) {
    if (m.type === 'bind' || m.options.includes('bind') || m.options.includes('rbind'))
      out.set(m.destination, m.source);
  }
  // Masked paths as the monitor masks them: /dev/null over a file, an empty dir over a directory
  // (/proc and /sys are the host's own, so the host says which).
  for (const p of spec.linux.maskedPaths) {
    const st = await fs.stat(p).catch(() => undefined);
    if (st) out.set(p, st.isDirectory() ? emptyDir : '/dev/null');
  }
  return out;
}

async function readJson<T>(file: string): Promise<T | undefined> {
  const text = await fs.readFile(file, 'utf8').catch(() => undefined);
  return text === undefined ? undefined : (JSON.parse(text) as T);
}

/** Puts the archive's writable layer onto the new container's rootfs: its files, then its deletions. */
export async function applyLayer(archiveDir: string, rootfs: string, signal: AbortSignal): Promise<void> {
  const diff = path.join(archiveDir, ARCHIVE.rootfsDiff);
  const r = await run('tar', ['-C', rootfs, '--numeric-owner', '--xattrs', '--xattrs-include=*', '-xf', diff], signal);
  if (r.code !== 0) throw new Error(`unpacking ${ARCHIVE.rootfsDiff} onto ${rootfs} failed: ${tail(r.stderr)}`);
  const deleted = (await readJson<string[]>(path.join(archiveDir, ARCHIVE.deletedFiles))) ?? [];
  for (const d of deleted) {
    const p = path.resolve(rootfs, d);
    if (!p.startsWith(`${rootfs}/`)) continue;
    await fs.rm(p, { recursive: true, force: true });
  }
}

export class RestoreLauncher implements Launcher {
  constructor(
    private readonly inner: Launcher,
    private readonly pending: PendingRestores,
    private readonly criuPath: () => Promise<string>,
  ) {}

  private isRestore(runDir: string): boolean {
    return existsSync(path.join(runDir, RESTORE_FILES.record));
  }

  async create(runDir: string, spec: LaunchSpec, signal: AbortSignal): Promise<Created> {
    const token = restoreTokenOf(spec);
    if (token === undefined) return this.inner.create(runDir, spec, signal);
    const ctx: ErrorContext = { stage: 'restore', containerId: spec.capsa.containerId, path: runDir };
    const dir = this.pending.take(token);
    if (!dir) throw new InvalidArgumentError('config.envs', `${RESTORE_ENV} names no pending restore`, ctx);
    const dest = path.join(runDir, RESTORE_FILES.dir);
    await fs.rename(dir, dest).catch(async (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EXDEV') throw err;
      await fs.cp(dir, dest, { recursive: true });
      await fs.rm(dir, { recursive: true, force: true });
    });
    if (spec.process.terminal)
      throw new FailedPreconditionError('restoring a container with a terminal (tty) is not supported', ctx);
    const pidNs = spec.linux.namespaces.find((n) => n.type === 'pid');
    if (!pidNs || pidNs.path)
      throw new FailedPreconditionError('a restored container needs its own PID namespace (as it was dumped)', ctx);
    await applyLayer(dest, spec.root.path, signal);
    const emptyDir = path.join(runDir, 'restore-empty');
    await fs.mkdir(emptyDir, { recursive: true, mode: 0o755 });
    const ns = (t: string): string | undefined => spec.linux.namespaces.find((n) => n.type === t)?.path;
    const criu = await this.criuPath();
    const args = criuRestoreArgs({
      criu,
      runDir,
      rootfs: spec.root.path,
      netns: ns('network'),
      joinNs: (['ipc', 'uts'] as const).flatMap((type) => {
        const p = ns(type);
        return p ? [{ type, path: p }] : [];
      }),
      stdio: (await readJson<string[]>(path.join(dest, ARCHIVE.checkpointDir, ARCHIVE.descriptors))) ?? [],
      externalMounts: await externalSourcesOf(spec, emptyDir),
      stdioFiles: (await readJson<StdioFile[]>(path.join(dest, ARCHIVE.checkpointDir, ARCHIVE.stdioFiles))) ?? [],
    });
    await writeFileAtomic(path.join(runDir, RESTORE_FILES.record), JSON.stringify({ criu }), 0o600);
    // spec.json becomes the held criu's; the container's own stays beside it, where a
    // restarted daemon reads it (exec, status) as it does for an OCI handler's.
    await writeFileAtomic(path.join(runDir, LAUNCH_SPEC), encodeJson(spec), 0o600);
    return this.inner.create(runDir, restoreProcessSpec(spec, args, runDir), signal);
  }

  async start(runDir: string, timeoutMs: number, signal: AbortSignal): Promise<Started> {
    if (!this.isRestore(runDir)) return this.inner.start(runDir, timeoutMs, signal);
    const ctx: ErrorContext = { stage: 'restore', path: runDir };
    const deadline = Date.now() + timeoutMs;
    const started = await this.inner.start(runDir, timeoutMs, signal);
    for (;;) {
      const text = await fs.readFile(path.join(runDir, RESTORE_FILES.pidFile), 'utf8').catch(() => '');
      const pid = Number.parseInt(text.trim(), 10);
      if (Number.isInteger(pid) && pid > 0) {
        const startTime = await processStartTime(pid);
        const init: ProcessIdentity = startTime === undefined ? started.init : { pid, startTime };
        await writeFileAtomic(path.join(runDir, RESTORE_FILES.init), JSON.stringify(init), 0o600);
        return { init, startedAt: started.startedAt };
      }
      if (existsSync(path.join(runDir, 'exit.json'))) {
        const log = await fs.readFile(path.join(runDir, RESTORE_FILES.log), 'utf8').catch(() => '');
        throw new InternalError(`criu restore failed: ${criuErrors(log) || 'no log'}`, ctx);
      }
      if (Date.now() >= deadline) throw new InternalError(`criu restore did not finish within ${timeoutMs} ms`, ctx);
      await sleep(START_POLL_MS, signal);
    }
  }

  private async restoredInit(runDir: string): Promise<ProcessIdentity | undefined> {
    return readJson<ProcessIdentity>(path.join(runDir, RESTORE_FILES.init));
  }

  async signal(runDir: string, sig: number): Promise<boolean> {
    const init = this.isRestore(runDir) ? await this.restoredInit(runDir) : undefined;
    if (init && (await killChecked(init, sig))) return true;
    return this.inner.signal(runDir, sig);
  }

  reopenLog(runDir: string, logPath: string, signal: AbortSignal): Promise<void> {
    return this.inner.reopenLog(runDir, logPath, signal);
  }

  exec(runDir: string, req: ExecRequest, signal: AbortSignal): Promise<ExecResult> {
    return this.inner.exec(runDir, req, signal);
  }

  async status(runDir: string): Promise<LaunchStatus> {
    const st = await this.inner.status(runDir);
    if (st.state !== 'running' || !this.isRestore(runDir)) return st;
    const init = await this.restoredInit(runDir);
    return init ? { ...st, init } : st;
  }

  watch(runDir: string, onChange: () => void): () => void {
    return this.inner.watch(runDir, onChange);
  }

  destroy(runDir: string, signal: AbortSignal): Promise<void> {
    return this.inner.destroy(runDir, signal);
  }

  sweep(runRoot: string, known: ReadonlySet<string>): Promise<string[]> {
    return this.inner.sweep ? this.inner.sweep(runRoot, known) : Promise.resolve([]);
  }
}
