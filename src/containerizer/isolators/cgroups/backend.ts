// The cgroup seam: everything the containerizer asks of cgroups, whichever
// driver makes them. Two implementations:
//   cgroupfs  CgroupManager (manager.ts): mkdir, write the files, rmdir.
//   systemd   SystemdCgroupManager (systemd/manager.ts): slices and scopes as
//             transient units over D-Bus, limits as unit properties; the file
//             I/O systemd has no say in (stats, v1 controllers it does not
//             delegate, killing) is the cgroupfs code's.
// The driver is chosen once per daemon (createCgroupBackend below); both are
// CgroupManagers, so code typed against that class takes either.
import type { Logger } from '../../../log';
import type { CgroupLayout, Hierarchy } from './hierarchy';
import { CgroupHandle, CgroupManager } from './manager';
import { SystemdCgroupManager } from './systemd/manager';
import type { CgroupDriverName } from './paths';
import type { CgroupStats } from './stats';
import type { CgroupResources } from './values';

export interface CgroupUsage {
  cpuNs?: bigint;
  memoryBytes?: bigint;
  workingSetBytes?: bigint;
  processes: number;
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
  stats(cgPath: string, scope?: 'all' | 'usage'): Promise<CgroupStats>;
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

/**
 * The backend for the configured driver. systemd is checked here, once: a
 * daemon told to use it on a host whose PID 1 is not systemd, or that cannot
 * reach systemd over D-Bus, stops with an error naming what is missing.
 */
export async function createCgroupBackend(opts: BackendOptions): Promise<CgroupManager> {
  if (opts.driver === 'cgroupfs') return new CgroupManager(opts.layout, opts.log);
  return SystemdCgroupManager.start(opts.layout, opts.log, opts.timeoutMs);
}
