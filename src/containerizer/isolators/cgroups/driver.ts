// Picks the cgroup driver once per daemon (backend.ts has the seam both implement).
import type { BackendOptions } from './backend';
import { CgroupManager } from './manager';
import { SystemdCgroupManager } from './systemd/manager';

/**
 * The backend for the configured driver. systemd is checked here, once: a
 * daemon told to use it on a host whose PID 1 is not systemd, or that cannot
 * reach systemd over D-Bus, stops with an error naming what is missing.
 */
export async function createCgroupBackend(opts: BackendOptions): Promise<CgroupManager> {
  if (opts.driver === 'cgroupfs') return new CgroupManager(opts.layout, opts.log);
  return SystemdCgroupManager.start(opts.layout, opts.log, opts.timeoutMs);
}
