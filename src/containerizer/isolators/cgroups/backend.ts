// The cgroup seam: everything the containerizer asks of cgroups, whichever
// driver makes them. Two implementations:
//   cgroupfs  CgroupManager (manager.ts): mkdir, write the files, rmdir.
//   systemd   SystemdCgroupManager (systemd/manager.ts): slices and scopes as
//             transient units over D-Bus, limits as unit properties; the file
//             I/O systemd has no say in (stats, v1 controllers it does not
//             delegate, killing) is the cgroupfs code's.
// The driver is chosen once per daemon (createCgroupBackend in driver.ts);
// both are CgroupManagers, so code typed against that class takes either.
import type { Logger } from '../../../log';
import type { CgroupLayout, Hierarchy } from './hierarchy';
import type { CgroupDriverName } from './paths';
import type { CgroupStats, CgroupStatsScope } from './stats';
import type { CgroupResources } from './values';

/** What a cgroup looks like to its users (the monitor, stats, a container spec). */
export interface CgroupHandle {
  version: 1 | 2;
  /** Relative cgroup path, e.g. /capsa/capsa-<id>. */
  path: string;
  /** controller → directory (v1: every controller of the layout; v2: each controller → the one dir). */
  dirs: Record<string, string>;
  /** cgroup.procs file of every hierarchy: write a pid to each to place a process. */
  procs: string[];
  /** The memory controller's directory (OOM events), when there is one. */
  memory?: string;
  /**
   * cgroup.procs files the container's monitor joins (systemd driver on v1:
   * systemd's own hierarchies, so the scope lives until the monitor has
   * recorded the exit; systemd removes an empty scope at once).
   */
  monitorProcs?: string[];
}

export interface CgroupUsage {
  cpuNs?: bigint;
  memoryBytes?: bigint;
  workingSetBytes?: bigint;
  /** Not counted by usage(). */
  processes?: number;
}

export interface CgroupBackend {
  readonly driver: CgroupDriverName;
  readonly layout: CgroupLayout;
  hierarchyDirs(cgPath: string): { h: Hierarchy; dir: string }[];
  handle(cgPath: string): CgroupHandle;
  exists(cgPath: string): Promise<boolean>;
  /** Makes the cgroup with `resources`; `delegate`: it will have children (a pod). */
  create(cgPath: string, resources: CgroupResources | undefined, opts: { delegate: boolean }): Promise<CgroupHandle>;
  /**
   * The first real process is in the cgroup (placed through handle().procs):
   * drop whatever create() needed until then (systemd: the scope's stand-in).
   */
  settled(cgPath: string): Promise<void>;
  apply(cgPath: string, r: CgroupResources): Promise<void>;
  place(cgPath: string, pid: number): Promise<void>;
  pids(cgPath: string): Promise<number[]>;
  children(cgPath: string): Promise<string[]>;
  /** Kills everything in the subtree and removes it; idempotent. */
  destroy(cgPath: string, timeoutMs: number, signal?: AbortSignal): Promise<void>;
  removeIfEmpty(cgPath: string): Promise<boolean>;
  usage(cgPath: string): Promise<CgroupUsage>;
  /** Every counter stats.ts knows (metrics); usage() is its summary. */
  stats(cgPath: string, scope?: CgroupStatsScope): Promise<CgroupStats>;
  /** Cgroup paths of every capsa-<id>.scope unit systemd has (cgroupfs: none), for the orphan sweep. */
  scopes(): Promise<string[]>;
  /** Releases connections (daemon shutdown). */
  close(): void;
}

export interface BackendOptions {
  driver: CgroupDriverName;
  layout: CgroupLayout;
  log: Logger;
  /** systemd: per D-Bus call and job deadline. */
  timeoutMs?: number;
}
