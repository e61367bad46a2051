// Cgroup I/O for any capsa cgroup (pod, pid holder, container): create with
// resources, update, read usage, and destroy — kill every process in the
// subtree (freeze first where a freezer exists, then SIGKILL until
// cgroup.procs is empty, under a deadline) and rmdir leaf-first.
// Paths are relative to each hierarchy's mount point (see paths.ts).
// Making a cgroup is create.ts, destroying one destroy.ts; the file
// operations they share are files.ts.
import { promises as fs, readdirSync } from 'fs';
import * as path from 'path';
import { ErrorContext, FailedPreconditionError, InternalError, InvalidArgumentError } from '../../../errors';
import type { Logger } from '../../../log';
import { CgroupLayout, Hierarchy } from './hierarchy';
import type { CgroupBackend, CgroupHandle } from './backend';
import { makeLevels } from './create';
import { killAll, removeTree } from './destroy';
import { CgroupTree, ParentVanished, asInternal, errno, isGone, readNumber, subtree } from './files';
import { CgroupDriverName, cgroupDir } from './paths';
import { countFds } from './fds';
import { StatFiles, readSmall } from './stat-files';
import { CgroupStats, CgroupStatsScope, readCgroupStats, readPressure } from './stats';
import { CgroupResources, CgroupWrite, v1Writes, v2Writes } from './values';

export class CgroupManager implements CgroupBackend, CgroupTree {
  readonly driver: CgroupDriverName = 'cgroupfs';
  /** The stats hot path's files, kept open per cgroup (stat-files.ts). */
  private readonly statFiles = new StatFiles();

  constructor(
    readonly layout: CgroupLayout,
    readonly log: Logger,
  ) {}

  /**
   * One directory per hierarchy for `cgPath`; on a hybrid host with the
   * cgroupfs driver also the cgroup2 twin (no controllers: it only holds the
   * processes, for their pressure stall information). The systemd driver
   * leaves that tree to systemd, which keeps its units there itself.
   */
  hierarchyDirs(cgPath: string): { h: Hierarchy; dir: string }[] {
    const dirs = this.layout.hierarchies.map((h) => ({ h, dir: cgroupDir(h.mount, cgPath) }));
    const hybrid = this.layout.hybridUnified;
    if (hybrid !== undefined && this.driver === 'cgroupfs')
      dirs.push({ h: { mount: hybrid, controllers: [] }, dir: cgroupDir(hybrid, cgPath) });
    return dirs;
  }

  /** The cgroup2 directory holding the cgroup's *.pressure files (v2, or a hybrid host's twin). */
  protected pressureDir(cgPath: string): string | undefined {
    if (this.layout.version === 2) return this.hierarchyDirs(cgPath)[0].dir;
    const hybrid = this.layout.hybridUnified;
    return hybrid === undefined ? undefined : cgroupDir(hybrid, cgPath);
  }

  handle(cgPath: string): CgroupHandle {
    const dirs: Record<string, string> = {};
    for (const { h, dir } of this.hierarchyDirs(cgPath)) for (const c of h.controllers) dirs[c] = dir;
    const procs = [...new Set(this.hierarchyDirs(cgPath).map(({ dir }) => path.join(dir, 'cgroup.procs')))];
    return { version: this.layout.version, path: cgPath, dirs, procs, memory: dirs.memory };
  }

  dirOf(cgPath: string, controller: string): string | undefined {
    const h = this.layout.hierarchies.find((x) => x.controllers.includes(controller));
    return h ? cgroupDir(h.mount, cgPath) : undefined;
  }

  /** True when the cgroup exists in any hierarchy. */
  async exists(cgPath: string): Promise<boolean> {
    for (const { dir } of this.hierarchyDirs(cgPath)) {
      try {
        if ((await fs.stat(dir)).isDirectory()) return true;
      } catch (err) {
        if (!isGone(err)) throw err;
      }
    }
    return false;
  }

  /**
   * Creates the cgroup (and any missing parent) in every hierarchy, then
   * applies `resources`. `delegate`: the cgroup will have child cgroups
   * (a pod), so on v2 its controllers are enabled for them.
   */
  async create(
    cgPath: string,
    resources: CgroupResources | undefined,
    opts: { delegate: boolean },
  ): Promise<CgroupHandle> {
    const ctx: ErrorContext = { stage: 'cgroup create', path: cgPath };
    if (this.layout.hierarchies.length === 0) throw new FailedPreconditionError('no cgroup hierarchy is mounted', ctx);
    const writes = this.writesFor(resources ?? {});
    // A concurrent remover may take an empty shared parent (the default /capsa)
    // between our mkdirs: then the walk starts over, so every level is set up.
    for (let attempt = 0; ; attempt++) {
      try {
        await makeLevels(this, cgPath, writes, opts.delegate);
        break;
      } catch (err) {
        if (!(err instanceof ParentVanished) || attempt >= 3) throw err instanceof ParentVanished ? err.cause : err;
      }
    }
    await this.apply(cgPath, resources ?? {});
    return this.handle(cgPath);
  }

  private writesFor(r: CgroupResources): CgroupWrite[] {
    return this.layout.version === 2 ? v2Writes(r) : v1Writes(r);
  }

  /** cgroupfs: processes are placed by path alone, nothing to drop. */
  async settled(_cgPath: string): Promise<void> {}

  /** cgroupfs makes no units. */
  async scopes(): Promise<string[]> {
    return [];
  }

  close(): void {}

  /** Writes the resources into an existing cgroup (create and UpdateContainerResources). */
  async apply(cgPath: string, r: CgroupResources): Promise<void> {
    const writes = this.writesFor(r);
    const memsw = writes.find((w) => w.file === 'memory.memsw.limit_in_bytes');
    const mem = writes.find((w) => w.file === 'memory.limit_in_bytes');
    if (memsw && mem) {
      // v1 needs memory <= memsw at every moment: raise memsw first when growing.
      const dir = this.dirOf(cgPath, 'memory');
      const current = dir ? await readNumber(path.join(dir, 'memory.memsw.limit_in_bytes')) : undefined;
      const target = memsw.value === '-1' ? Infinity : Number(memsw.value);
      if (current !== undefined && target > current) {
        writes.splice(writes.indexOf(memsw), 1);
        writes.splice(writes.indexOf(mem), 0, memsw);
      }
    }
    // Controllers are independent: each one's files in order, the controllers at once.
    const byController = new Map<string, CgroupWrite[]>();
    for (const w of writes) byController.set(w.controller, [...(byController.get(w.controller) ?? []), w]);
    await Promise.all(
      [...byController.values()].map(async (ws) => {
        for (const w of ws) await this.write(cgPath, w);
      }),
    );
  }

  protected async write(cgPath: string, w: CgroupWrite): Promise<void> {
    const dir = this.dirOf(cgPath, w.controller);
    if (!dir) {
      if (w.controller === 'hugetlb') {
        this.log.debug({ file: w.file }, 'no hugetlb controller on this host; hugepage limit skipped');
        return;
      }
      throw new FailedPreconditionError(`cgroup controller ${w.controller} is not available for ${w.file}`, {
        path: cgPath,
      });
    }
    const file = path.join(dir, w.file);
    try {
      await fs.writeFile(file, w.value);
    } catch (err) {
      if (w.optional && isGone(err)) return;
      const code = errno(err);
      const msg = `write "${w.value}" to ${file}: ${(err as Error).message}`;
      // The kernel refusing a value (a cpu that does not exist, a limit below usage) is the caller's input.
      if (code === 'EINVAL' || code === 'ERANGE' || code === 'EBUSY')
        throw new InvalidArgumentError(w.file, msg, { path: file });
      throw new InternalError(msg, { path: file });
    }
  }

  /** Puts a process into the cgroup in every hierarchy. */
  async place(cgPath: string, pid: number): Promise<void> {
    for (const file of this.handle(cgPath).procs) {
      try {
        await fs.writeFile(file, String(pid));
      } catch (err) {
        throw new InternalError(`write pid ${pid} to ${file}: ${(err as Error).message}`, { path: file });
      }
    }
  }

  /** Pids in the cgroup and all its descendants, across hierarchies. */
  async pids(cgPath: string): Promise<number[]> {
    const out = new Set<number>();
    for (const { dir } of this.hierarchyDirs(cgPath)) {
      for (const d of await subtree(dir)) {
        let text: string;
        try {
          text = await fs.readFile(path.join(d, 'cgroup.procs'), 'utf8');
        } catch (err) {
          if (isGone(err)) continue;
          throw err;
        }
        for (const l of text.split('\n')) if (l.trim() !== '') out.add(Number(l));
      }
    }
    return [...out];
  }

  /** Child cgroup names directly under `cgPath`, in any hierarchy. */
  async children(cgPath: string): Promise<string[]> {
    const names = new Set<string>();
    for (const { dir } of this.hierarchyDirs(cgPath)) {
      try {
        for (const e of await fs.readdir(dir, { withFileTypes: true })) if (e.isDirectory()) names.add(e.name);
      } catch (err) {
        if (!isGone(err)) throw err;
      }
    }
    return [...names];
  }

  /**
   * Kills every process in the cgroup's subtree and removes it leaf-first in
   * every hierarchy. Idempotent. Throws DeadlineExceeded naming the pids or
   * directories that would not go.
   */
  async destroy(cgPath: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    this.statFiles.close(cgPath);
    await this.killAll(cgPath, deadline, signal);
    await this.removeTree(cgPath, deadline, signal);
  }

  protected killAll(cgPath: string, deadline: number, signal?: AbortSignal): Promise<void> {
    return killAll(this, cgPath, deadline, signal);
  }

  protected removeTree(cgPath: string, deadline: number, signal?: AbortSignal): Promise<void> {
    return removeTree(this, cgPath, deadline, signal);
  }

  /** rmdir of an (empty) cgroup only; false when it still has children or tasks. */
  async removeIfEmpty(cgPath: string): Promise<boolean> {
    this.statFiles.close(cgPath);
    let all = true;
    for (const { dir } of this.hierarchyDirs(cgPath)) {
      try {
        await fs.rmdir(dir);
      } catch (err) {
        if (isGone(err)) continue;
        if (errno(err) === 'EBUSY' || errno(err) === 'ENOTEMPTY') all = false;
        else throw asInternal(err, dir);
      }
    }
    return all;
  }

  /**
   * What the kernel counts for the cgroup (subtree included): stats.ts.
   * 'usage' (ContainerStats) reads only the summary's files and counts no
   * processes; 'summary' (PodSandboxStats) counts them too, in one
   * hierarchy; 'all' (metrics) reads every file and counts the processes
   * of every hierarchy and their open files. The files are read
   * synchronously (readSmall): a summary is a few µs per file.
   */
  async stats(cgPath: string, scope: CgroupStatsScope = 'all'): Promise<CgroupStats> {
    if (scope !== 'all') {
      return this.readStats(cgPath, 'usage', scope === 'summary' ? this.countProcesses(cgPath) : undefined);
    }
    const pids = await this.pids(cgPath);
    const s = this.readStats(cgPath, 'all', pids.length);
    // The same processes as the count above (the subtree's); a /proc we may not read costs these two only.
    try {
      Object.assign(s, await countFds(pids));
    } catch (err) {
      this.log.warn({ path: cgPath, err: (err as Error).message }, 'cgroup stats: open files not counted');
    }
    return s;
  }

  private readStats(cgPath: string, files: 'all' | 'usage', processes: number | undefined): CgroupStats {
    // The polled summary through kept files (paths made only when one is opened); every file
    // (metrics, scraped less often) opened for the read.
    const read =
      files === 'usage'
        ? (name: string, file: () => string | undefined) => this.statFiles.read(cgPath, name, file)
        : (_name: string, file: () => string | undefined) => {
            const f = file();
            return f === undefined ? undefined : readSmall(f);
          };
    const s = readCgroupStats(
      this.layout.version,
      processes,
      (controller, file) =>
        read(file, () => {
          // v2 has one directory; cpu.stat and memory.* are there whichever controllers are enabled.
          const dir = this.layout.version === 2 ? this.hierarchyDirs(cgPath)[0].dir : this.dirOf(cgPath, controller);
          return dir === undefined ? undefined : path.join(dir, file);
        }),
      files,
    );
    const psiDir = this.pressureDir(cgPath);
    if (psiDir !== undefined) s.psi = readPressure((file) => read(file, () => path.join(psiDir, file)));
    return s;
  }

  /**
   * Processes in the cgroup's subtree, counted in one hierarchy (pids',
   * else memory's, else the first): place() puts every process in all of
   * them and children inherit theirs, so each holds them all; pids() walks
   * every hierarchy because a kill must miss none. 0 once the cgroup is gone.
   */
  protected countProcesses(cgPath: string): number {
    const hs = this.layout.hierarchies;
    const h =
      hs.find((x) => x.controllers.includes('pids')) ?? hs.find((x) => x.controllers.includes('memory')) ?? hs[0];
    if (!h) return 0;
    let n = 0;
    const walk = (dir: string): void => {
      // Opened for each read, not kept: v1 serves a kept cgroup.procs from a pid list it caches for 1 s.
      const procs = readSmall(path.join(dir, 'cgroup.procs'));
      if (procs === undefined) return;
      for (const l of procs.split('\n')) if (l.trim() !== '') n++;
      let entries;
      try {
        entries = readdirSync(dir, { withFileTypes: true });
      } catch (err) {
        if (isGone(err)) return;
        throw asInternal(err, dir);
      }
      for (const e of entries) if (e.isDirectory()) walk(path.join(dir, e.name));
    };
    walk(cgroupDir(h.mount, cgPath));
    return n;
  }

  /** Cumulative usage of the cgroup (subtree included, as the kernel counts it). */
  async usage(
    cgPath: string,
  ): Promise<{ cpuNs?: bigint; memoryBytes?: bigint; workingSetBytes?: bigint; processes?: number }> {
    const s = await this.stats(cgPath, 'usage');
    return {
      processes: s.processes,
      cpuNs: s.cpu.usageNs,
      memoryBytes: s.memory.usageBytes,
      workingSetBytes: s.memory.workingSetBytes,
    };
  }
}
