// Checkpoint and restore of containers with CRIU (kubelet's forensic
// container checkpointing, CRI CheckpointContainer; and CheckpointPod). The
// container keeps running: criu dump --leave-running of its init's tree,
// then its writable layer and capsa's record, packed into the archive
// kubelet named (archive.ts has the layout). Everything is made in a work
// dir under <state>/checkpoints and the archive appears at `location` only
// when complete; every failure removes both.
import { promises as fs } from 'fs';
import * as path from 'path';
import {
  DeadlineExceededError,
  FailedPreconditionError,
  InternalError,
  InvalidArgumentError,
  asCapsaError,
  type ErrorContext,
} from '../../errors';
import type { Logger } from '../../log';
import { isAlive, type ProcessIdentity } from '../../util/procfs';
import { withTimeout } from '../../util/timeout';
import type { LaunchSpec } from '../container-spec';
import type { Container, Containers } from '../containers';
import type { Sandbox } from '../sandbox';
import {
  ARCHIVE,
  configDumpOf,
  criuDumpArgs,
  externalMountsOf,
  packArchive,
  readArchive,
  recordJson,
  walkWritableLayer,
  writeRootfsDiff,
  type ArchiveContents,
  type StdioFile,
} from './archive';
import { CriuProbe, criuErrors, run } from './criu';
import { PendingRestores } from './restore';
import { freezerOf, withFrozen, type FreezeTarget } from './freeze';

/** readlink of the process's fds 0-2 ("pipe:[123]", "/dev/pts/0", ...); "" where one is closed. */
async function stdioOf(pid: number): Promise<string[]> {
  return Promise.all([0, 1, 2].map((fd) => fs.readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')));
}

/**
 * CRIU's keys ("file[<mnt_id>:<inode>]", hex) of the init's stdio that are
 * files the monitor opened on the host (/dev/null when there is no stdin):
 * their mount is not in the container, so the dump must call them external.
 * Pipes, sockets and the pty are not files of a mount.
 */
export async function hostStdioFiles(pid: number, stdio: string[]): Promise<StdioFile[]> {
  const out: StdioFile[] = [];
  for (const [fd, target] of stdio.entries()) {
    if (!target.startsWith('/') || target.startsWith('/dev/pts/')) continue;
    const info = await fs.readFile(`/proc/${pid}/fdinfo/${fd}`, 'utf8').catch(() => '');
    const mnt = /^mnt_id:\s*(\d+)/m.exec(info)?.[1];
    const st = await fs.stat(`/proc/${pid}/fd/${fd}`).catch(() => undefined);
    if (mnt === undefined || !st) continue;
    out.push({ fd, key: `file[${Number(mnt).toString(16)}:${st.ino.toString(16)}]` });
  }
  return out;
}

/** The pod checkpoint's own record, in CheckpointPod's output dir. */
export const POD_RECORD = 'capsa.pod';
export const POD_FORMAT = 'capsa-pod-checkpoint/v1';
/** CheckpointPod's own bound, under the caller's deadline (CRI: kubelet always sets one). */
export const POD_CHECKPOINT_TIMEOUT_MS = 600_000;

export interface CheckpointerOptions {
  containers: Containers;
  /** <state>/checkpoints: work dirs, one per operation, removed when it ends. */
  workRoot: string;
  log: Logger;
  probe?: CriuProbe;
  /** Unpacked archives on their way to the RestoreLauncher (restore.ts). */
  pending?: PendingRestores;
}

export class Checkpointer {
  readonly probe: CriuProbe;
  readonly pending: PendingRestores;

  constructor(private readonly opts: CheckpointerOptions) {
    this.probe = opts.probe ?? new CriuProbe();
    this.pending = opts.pending ?? new PendingRestores();
  }

  /** Removes work dirs a daemon that died mid-checkpoint left (none is in use before we serve). */
  async sweep(): Promise<void> {
    await fs.rm(this.opts.workRoot, { recursive: true, force: true });
  }

  /**
   * Writes the checkpoint archive of running container `id` to `location`
   * (a path whose directory exists and which does not) within `timeoutMs`.
   */
  async checkpointContainer(id: string, location: string, timeoutMs: number, signal: AbortSignal): Promise<void> {
    const c = this.opts.containers.get(id);
    // Stop, remove and the exit's recording wait for the dump (it is bounded by the timeout).
    await c.exclusive(() => this.checkpointLocked(c, location, timeoutMs, signal));
  }

  private async checkpointLocked(
    c: Container,
    location: string,
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<void> {
    const ctx: ErrorContext = { stage: 'checkpoint', containerId: c.id };
    const { spec, init } = await this.dumpable(c, 'container_id', ctx);
    await this.probe.require('CheckpointContainer', ctx);

    await fs.mkdir(this.opts.workRoot, { recursive: true, mode: 0o700 });
    const work = await fs.mkdtemp(path.join(this.opts.workRoot, `${c.id.slice(0, 12)}-`));
    // On a deadline withTimeout answers at once while the steps are being
    // killed (criu and tar get SIGKILL); the work dir goes only after they end.
    let steps: Promise<void> | undefined;
    try {
      await withTimeout(
        `checkpoint of container ${c.id}`,
        timeoutMs,
        (sig) => (steps = this.dumpSteps(c, spec, init, work, location, ctx, sig)),
        ctx,
        signal,
      );
      this.opts.log.info({ containerId: c.id, location }, 'container checkpointed');
    } catch (err) {
      throw asCapsaError(err, ctx);
    } finally {
      await steps?.catch(() => undefined);
      await fs
        .rm(work, { recursive: true, force: true })
        .catch((e: unknown) => this.opts.log.warn({ err: e, path: work }, 'removing a checkpoint work dir failed'));
    }
  }

  /** Running, with its own PID namespace: what CRIU can take. `field` is the request's. */
  private async dumpable(
    c: Container,
    field: string,
    ctx: ErrorContext,
  ): Promise<{ spec: LaunchSpec; init: ProcessIdentity }> {
    const init = c.record.init;
    if (c.state !== 'RUNNING' || c.criState() !== 'CONTAINER_RUNNING' || !init)
      throw new FailedPreconditionError(`${field}: container ${c.id} is not running (${c.criState()})`, ctx);
    const spec = await this.opts.containers.specOf(c);
    // CRIU restores a tree into a PID namespace of its own; a shared one (pod, host,
    // another container's) holds processes the dump cannot take along.
    const pidNs = spec.linux.namespaces.find((n) => n.type === 'pid');
    if (!pidNs || pidNs.path)
      throw new FailedPreconditionError(
        `${field}: container ${c.id} shares a PID namespace (${pidNs ? 'pod or target' : 'host'}); ` +
          'CRIU checkpoints only containers with their own (namespace_options.pid CONTAINER)',
        ctx,
      );
    return { spec, init };
  }

  /** The archive's contents in a staging dir, then the archive at `location`. */
  private async dumpSteps(
    c: Container,
    spec: LaunchSpec,
    init: ProcessIdentity,
    work: string,
    location: string,
    ctx: ErrorContext,
    sig: AbortSignal,
  ): Promise<void> {
    const staging = path.join(work, 'archive');
    await this.capture(c, spec, init, staging, ctx, sig);
    await packArchive(staging, location, sig);
  }

  /**
   * CRIU's images, the writable layer and the metadata of `c`, laid out in
   * `staging` as archive.ts says. `freezeCgroup`: the container's cgroup,
   * frozen by the caller.
   */
  private async capture(
    c: Container,
    spec: LaunchSpec,
    init: ProcessIdentity,
    staging: string,
    ctx: ErrorContext,
    sig: AbortSignal,
    freezeCgroup?: string,
  ): Promise<void> {
    const images = path.join(staging, ARCHIVE.checkpointDir);
    await fs.mkdir(images, { recursive: true, mode: 0o700 });
    const netns = spec.linux.namespaces.find((n) => n.type === 'network')?.path;
    const stdio = await stdioOf(init.pid);
    const stdioFiles = await hostStdioFiles(init.pid, stdio);
    const args = criuDumpArgs({
      pid: init.pid,
      imagesDir: images,
      workDir: staging,
      rootfs: c.record.rootfs,
      netnsInode: netns ? (await fs.stat(netns)).ino : undefined,
      externalMounts: externalMountsOf(spec),
      externalFiles: stdioFiles.map((f) => f.key),
      tty: spec.process.terminal ? await fs.stat(`/proc/${init.pid}/fd/0`) : undefined,
      freezeCgroup,
    });
    // The pid is the init only while its start time matches (pid reuse).
    if (!(await isAlive(init))) throw new FailedPreconditionError(`container_id: container ${c.id} exited`, ctx);
    // What the init's stdio is (the monitor's pipes or pty), as runc records it: a
    // restore hands the new ends in with criu --inherit-fd by these names.
    await fs.writeFile(path.join(images, ARCHIVE.descriptors), JSON.stringify(stdio));
    await fs.writeFile(path.join(images, ARCHIVE.stdioFiles), JSON.stringify(stdioFiles));
    const criu = (await this.probe.status()).path ?? 'criu';
    const dump = await run(criu, args, sig);
    if (dump.code !== 0) {
      const log = await fs.readFile(path.join(staging, ARCHIVE.dumpLog), 'utf8').catch(() => '');
      throw new InternalError(`criu dump of container ${c.id} failed: ${criuErrors(log || dump.stderr)}`, ctx);
    }
    // The writable layer after the dump, as CRI-O takes it: the files the processes saw.
    const upper = (await this.opts.containers.backend()).writableDir?.(c.id);
    const walk = upper ? await walkWritableLayer(upper) : { include: [], deleted: [] };
    await writeRootfsDiff(upper ?? staging, walk, path.join(staging, ARCHIVE.rootfsDiff), sig);
    const write = (f: string, data: string): Promise<void> => fs.writeFile(path.join(staging, f), data);
    await write(ARCHIVE.deletedFiles, JSON.stringify(walk.deleted));
    await write(ARCHIVE.configDump, JSON.stringify(configDumpOf(c.record, new Date()), null, 2));
    await write(ARCHIVE.specDump, JSON.stringify(spec, null, 2));
    await write(ARCHIVE.record, recordJson(c.record));
  }

  /**
   * CheckpointPod: `members` (running containers of `sandbox`, checked by the
   * caller) frozen together, each captured into <outputPath>/<container
   * name>/ with archive.ts's layout, then all thawed, whatever happens, and
   * capsa.pod beside them. On failure everything written under
   * `outputPath` goes; the directory itself is the caller's.
   */
  async checkpointPod(sandbox: Sandbox, members: Container[], outputPath: string, signal: AbortSignal): Promise<void> {
    const ctx: ErrorContext = { stage: 'checkpoint pod', sandboxId: sandbox.id };
    const sorted = [...members].sort((a, b) => (a.id < b.id ? -1 : 1));
    // Every member's lifecycle lock, always taken in id order (no two calls deadlock).
    const locked = (i: number): Promise<void> =>
      i === sorted.length
        ? this.checkpointPodLocked(sandbox, sorted, outputPath, ctx, signal)
        : sorted[i].exclusive(() => locked(i + 1));
    try {
      await locked(0);
    } catch (err) {
      for (const e of await fs.readdir(outputPath).catch(() => []))
        await fs.rm(path.join(outputPath, e), { recursive: true, force: true });
      throw asCapsaError(err, ctx);
    }
  }

  private async checkpointPodLocked(
    sandbox: Sandbox,
    members: Container[],
    outputPath: string,
    ctx: ErrorContext,
    signal: AbortSignal,
  ): Promise<void> {
    const plans: { c: Container; spec: LaunchSpec; init: ProcessIdentity; freezer: FreezeTarget }[] = [];
    for (const c of members) {
      const { spec, init } = await this.dumpable(c, 'container_ids', { ...ctx, containerId: c.id });
      const freezer = freezerOf(this.opts.containers.cgroups.handle(c.record.cgroupPath));
      if (!freezer)
        throw new FailedPreconditionError(
          `container_ids: container ${c.id} has no cgroup freezer to pause it with`,
          ctx,
        );
      plans.push({ c, spec, init, freezer });
    }
    await this.probe.require('CheckpointPod', ctx);
    // The caller's deadline, or ours, ends the dumps: criu and tar are killed and
    // withFrozen thaws everything before this returns (never a frozen pod).
    const sig = AbortSignal.any([signal, AbortSignal.timeout(POD_CHECKPOINT_TIMEOUT_MS)]);
    sig.throwIfAborted();
    const names = new Set<string>();
    const cut = withFrozen(
      plans.map((p) => p.freezer),
      10_000,
      async () => {
        for (const p of plans) {
          sig.throwIfAborted();
          let name = p.c.record.metadata.name;
          if (names.has(name)) name = p.c.id;
          names.add(name);
          await this.capture(
            p.c,
            p.spec,
            p.init,
            path.join(outputPath, name),
            { ...ctx, containerId: p.c.id },
            sig,
            p.freezer.dir,
          );
        }
      },
      (t, err) => this.opts.log.error({ err, cgroup: t.dir }, 'thawing a container after a pod checkpoint failed'),
    );
    await cut.catch((err: unknown) => {
      // A kill by the deadline shows as the tool's abort; say which deadline it was.
      if (signal.aborted) throw asCapsaError(signal.reason, ctx);
      if (sig.aborted) throw new DeadlineExceededError(`pod checkpoint took over ${POD_CHECKPOINT_TIMEOUT_MS} ms`, ctx);
      throw err;
    });
    const pod = {
      format: POD_FORMAT,
      sandboxId: sandbox.id,
      metadata: sandbox.spec.metadata,
      containers: plans.map((p, i) => ({ id: p.c.id, name: p.c.record.metadata.name, dir: [...names][i] })),
      checkpointedTime: new Date().toISOString(),
    };
    await fs.writeFile(path.join(outputPath, POD_RECORD), JSON.stringify(pod, null, 2), { mode: 0o600 });
    this.opts.log.info({ sandboxId: sandbox.id, containers: plans.length, outputPath }, 'pod checkpointed');
  }

  /**
   * Reads and checks a checkpoint archive (CreateContainer with the archive
   * as its image); `field` is the request field that named it. The unpacked
   * copy is removed before this returns.
   */
  async inspectArchive(file: string, field: string, signal: AbortSignal): Promise<ArchiveContents> {
    const a = await this.unpackArchive(file, field, signal);
    await fs.rm(a.dir, { recursive: true, force: true });
    return a;
  }

  /**
   * One member of a CheckpointPod dir (the archive's layout, unpacked),
   * checked as an archive is and copied to a work dir of ours (the caller's
   * to remove): RestorePod restores it as CreateContainer restores an archive.
   */
  async unpackMember(memberDir: string, field: string, signal: AbortSignal): Promise<ArchiveContents> {
    await fs.mkdir(this.opts.workRoot, { recursive: true, mode: 0o700 });
    const work = await fs.mkdtemp(path.join(this.opts.workRoot, 'restore-'));
    // Packed beside the work dir, unpacked into it: the dir the restore takes is `work` itself.
    const tar = `${work}.tar`;
    try {
      const r = await run('tar', ['-C', memberDir, '--numeric-owner', '-cf', tar, '.'], signal);
      if (r.code !== 0)
        throw new InvalidArgumentError(
          field,
          `checkpoint ${memberDir} cannot be read: ${r.stderr.trim().slice(0, 200)}`,
        );
      const a = await readArchive(tar, work, field, signal);
      return a;
    } catch (err) {
      await fs.rm(work, { recursive: true, force: true });
      throw err;
    } finally {
      await fs.rm(tar, { force: true });
    }
  }

  /** inspectArchive, the unpacked copy kept (the caller's to remove) for a restore. */
  async unpackArchive(file: string, field: string, signal: AbortSignal): Promise<ArchiveContents> {
    await fs.mkdir(this.opts.workRoot, { recursive: true, mode: 0o700 });
    const work = await fs.mkdtemp(path.join(this.opts.workRoot, 'restore-'));
    try {
      return await withTimeout(
        'reading a checkpoint archive',
        60_000,
        (sig) => readArchive(file, work, field, sig),
        {
          stage: 'restore',
          path: file,
        },
        signal,
      );
    } catch (err) {
      await fs.rm(work, { recursive: true, force: true });
      throw err;
    }
  }
}
