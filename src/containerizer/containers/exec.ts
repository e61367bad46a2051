// ExecSync, ReopenContainerLog, UpdateContainerResources, and the launch
// spec they read.
import { existsSync, promises as fs } from 'fs';
import * as path from 'path';
import { DeadlineExceededError, ErrorContext, FailedPreconditionError } from '../../errors';
import { raceAbort, withTimeout } from '../../util/timeout';
import type { LaunchSpec } from '../container-spec';
import type { CgroupResources } from '../isolators/cgroups/values';
import type { ExecResult } from '../launcher/launcher';
import { LAUNCH_SPEC } from '../launcher/oci/launcher';
import { Container, EXEC_OUTPUT_LIMIT } from './container';
import { ContainerHost } from './host';

export async function execSync(
  cs: ContainerHost,
  idOrPrefix: string,
  cmd: string[],
  timeoutSec: number,
  signal: AbortSignal,
): Promise<ExecResult> {
  const c = cs.get(idOrPrefix);
  const ctx: ErrorContext = { containerId: c.id, stage: 'exec' };
  if (c.criState() !== 'CONTAINER_RUNNING' || !c.record.init) {
    throw new FailedPreconditionError(`container ${c.id} is not running`, ctx);
  }
  const spec = await specOf(cs, c);
  const timeoutMs = Math.min(timeoutSec, 365 * 24 * 3600) * 1000;
  const res = await cs.launcher.exec(
    c.record.runDir,
    {
      spec,
      args: cmd,
      init: c.record.init,
      cgroupProcs: spec.capsa.cgroupProcs ?? cs.cgroups.handle(c.record.cgroupPath).procs,
      timeoutMs,
      outputLimit: EXEC_OUTPUT_LIMIT,
    },
    signal,
  );
  if (res.timedOut) {
    throw new DeadlineExceededError(`command timed out: timeout ${timeoutSec}s exceeded`, ctx);
  }
  return res;
}

export async function reopenLog(cs: ContainerHost, idOrPrefix: string, signal: AbortSignal): Promise<void> {
  const c = cs.get(idOrPrefix);
  const ctx: ErrorContext = { containerId: c.id, stage: 'reopen log' };
  if (c.criState() !== 'CONTAINER_RUNNING') {
    throw new FailedPreconditionError(`container ${c.id} is not running`, ctx);
  }
  if (c.record.logPath === '') return;
  await withTimeout(
    'reopen container log',
    10_000,
    (s) => cs.launcher.reopenLog(c.record.runDir, c.record.logPath, s),
    ctx,
    signal,
  );
}

export async function update(
  cs: ContainerHost,
  idOrPrefix: string,
  resources: CgroupResources,
  criResources: unknown,
  signal: AbortSignal,
): Promise<void> {
  const c = cs.get(idOrPrefix);
  await raceAbort(
    c.exclusive(async () => {
      const ctx: ErrorContext = { containerId: c.id, stage: 'update' };
      if (c.isFinished() || c.state !== 'RUNNING') {
        throw new FailedPreconditionError(`container ${c.id} is not running`, ctx);
      }
      await withTimeout(
        'container update',
        cs.timeouts.isolating,
        () => cs.cgroups.apply(c.record.cgroupPath, resources),
        ctx,
      );
      c.record.resources = { ...c.record.resources, ...resources };
      c.record.criResources = criResources;
      await cs.persist(c);
    }),
    signal,
  );
}

/** The launch spec (in memory, else read back from the run dir). */
export async function specOf(cs: ContainerHost, c: Container): Promise<LaunchSpec> {
  if (c.spec) return c.spec;
  // An OCI handler's spec.json is its runtime's; the container's own is beside it.
  const oci = path.join(c.record.runDir, LAUNCH_SPEC);
  const file = existsSync(oci) ? oci : path.join(c.record.runDir, 'spec.json');
  try {
    c.spec = JSON.parse(await fs.readFile(file, 'utf8')) as LaunchSpec;
    return c.spec;
  } catch (err) {
    throw new FailedPreconditionError(`the launch spec of container ${c.id} is gone: ${(err as Error).message}`, {
      containerId: c.id,
      path: file,
    });
  }
}
