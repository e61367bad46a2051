// Container recovery on start, after the sandboxes' (sandboxes/recover.ts), before
// the daemon serves. The invariants it relies on:
//
// 1. A container's checkpoint is written before any of its host objects
//    exist (PREPARING) and removed only after all of them are gone.
// 2. createdAt is written only once the monitor holds a ready init;
//    startedAt once the monitor reported the execve (started.json);
//    finishedAt once exit.json (or a start error) was read, before the
//    cgroup is removed.
// 3. Every host object is named from the container id: the run dir
//    <state>/containers/<id> (monitor files, rootfs mount point), the backend
//    dir <root>/rootfs/<id>, the cgroup <pod cgroup>/capsa-<id>, the image
//    pin "container:<id>", and the monitor's argv names its run dir.
//
// Per checkpoint (recoverOne):
//   no createdAt, or no sandbox   undo everything, drop the checkpoint
//   finishedAt                    EXITED; kill and remove its cgroup again
//   monitor alive                 CREATED or RUNNING, same id, watched again
//   exit.json / start-error       EXITED with the real exit code / StartError
//   nothing (state dir wiped)     EXITED, 255, reason Unknown (containerd's choice)
// Then every prefixed object whose id has no checkpoint is destroyed.
import { promises as fs } from 'fs';
import * as path from 'path';
import { asCapsaError } from '../../errors';
import type { Logger } from '../../log';
import { releaseIdmappedLayers } from '../../provisioner/backends/idmap-layers';
import { killChecked, processStartTime, processesNamed } from '../../util/procfs';
import { withTimeout } from '../../util/timeout';
import { decodeBigint } from '../checkpoint';
import type { ContainerRecord } from '../container-spec';
import { transition } from '../state';
import { CONTAINER_CHECKPOINT_VERSION, Container } from './container';
import type { ContainerHost } from './host';
import { observe, recordEnd, watch } from './observe';
import { teardown } from './remove';

export interface ContainerRecoverySummary {
  running: string[];
  exited: string[];
  discarded: string[];
  unreadable: string[];
  swept: string[];
}

const ID = /^[0-9a-f]{64}$/;
/** A container cgroup (not a sandbox's pid-holder leaf "-init"). */
const CONTAINER_CGROUP = /^capsa-([0-9a-f]{64})(\.scope)?$/;

export async function recoverContainers(cs: ContainerHost, backendStateDir: string): Promise<ContainerRecoverySummary> {
  const log = cs.log.child({ part: 'recovery' });
  const summary: ContainerRecoverySummary = { running: [], exited: [], discarded: [], unreadable: [], swept: [] };
  const ids = await cs.store.list('container');
  const known = new Set(ids);
  for (const id of ids) {
    try {
      const r = await withTimeout(
        `recover container ${id}`,
        cs.timeouts.recover,
        (signal) => recoverOne(cs, id, signal),
        { containerId: id, stage: 'recover' },
      );
      summary[r === 'running' ? 'running' : r === 'exited' ? 'exited' : 'discarded'].push(id);
    } catch (err) {
      summary.unreadable.push(id);
      log.error(
        { containerId: id, err: asCapsaError(err).message },
        'cannot recover container; leaving its objects alone',
      );
    }
  }
  for (const id of summary.discarded) known.delete(id);
  summary.swept = await sweep(cs, known, backendStateDir, log);
  log.info(
    {
      running: summary.running.length,
      exited: summary.exited.length,
      discarded: summary.discarded.length,
      unreadable: summary.unreadable.length,
      swept: summary.swept.length,
    },
    'container recovery done',
  );
  return summary;
}

async function listDir(dir: string): Promise<string[]> {
  try {
    return await fs.readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** Destroys every container object whose id has no checkpoint. Each step is best-effort and logged. */
async function sweep(
  cs: ContainerHost,
  known: ReadonlySet<string>,
  backendStateDir: string,
  log: Logger,
): Promise<string[]> {
  const swept: string[] = [];
  const signal = AbortSignal.timeout(cs.timeouts.recover);
  const step = async (what: string, fn: () => Promise<void>): Promise<void> => {
    try {
      await fn();
      swept.push(what);
      log.info({ what }, 'destroyed an orphaned container object');
    } catch (err) {
      log.warn({ what, err: asCapsaError(err).message }, 'cannot destroy an orphaned container object');
    }
  };
  const backend = await cs.opts.provisioner.backend();

  // Monitors first: their containers' processes go with their cgroups below.
  const monitors = await orphanMonitors(cs.runRoot, known);
  for (const m of monitors) {
    await step(`monitor pid ${m.pid} (${m.id})`, async () => {
      await killChecked(m, 'SIGKILL');
    });
  }

  // Run dirs: the cgroup named in spec.json, the rootfs mount, the dir.
  for (const id of (await listDir(cs.runRoot)).filter((n) => ID.test(n) && !known.has(n))) {
    const dir = path.join(cs.runRoot, id);
    await step(`run dir ${dir}`, async () => {
      const cgPath = await cgroupOfRunDir(dir);
      if (cgPath) await cs.cgroups.destroy(cgPath, cs.timeouts.destroying, signal);
      await backend.destroy(id, path.join(dir, 'rootfs'));
      await releaseIdmappedLayers(backendStateDir, id);
      await cs.launcher.destroy(dir, signal);
    });
  }

  // An OCI handler's runtime state of containers without a run dir.
  for (const what of (await cs.launcher.sweep?.(cs.runRoot, known).catch((err: unknown) => {
    log.warn({ err: asCapsaError(err).message }, "cannot sweep the OCI runtimes' state");
    return [];
  })) ?? []) {
    swept.push(what);
    log.info({ what }, 'destroyed an orphaned container object');
  }

  // Writable layers of containers nobody knows.
  for (const id of (await listDir(backendStateDir)).filter((n) => ID.test(n) && !known.has(n))) {
    await step(`rootfs ${id}`, async () => {
      await backend.destroy(id, path.join(cs.runRoot, id, 'rootfs'));
      await releaseIdmappedLayers(backendStateDir, id);
    });
  }

  // Container cgroups in the pods we know (a pod's pid-holder scope is its sandbox's).
  const sandboxes = cs.opts.sandboxes;
  const sandboxIds = await sandboxes.knownIds();
  const doomed = new Set<string>();
  for (const sb of sandboxes.list()) {
    const podPath = sandboxes.handle(sb.id).cgroup.podPath;
    for (const name of await cs.cgroups.children(podPath)) {
      const m = CONTAINER_CGROUP.exec(name);
      if (!m || sandboxIds.has(m[1]) || known.has(m[1])) continue;
      doomed.add(podPath === '/' ? `/${name}` : `${podPath}/${name}`);
    }
  }
  // systemd: capsa-<id>.scope units anywhere (a pod slice of kubelet's whose sandbox is gone).
  for (const p of await cs.cgroups.scopes()) {
    const m = CONTAINER_CGROUP.exec(path.posix.basename(p));
    if (m && !sandboxIds.has(m[1]) && !known.has(m[1])) doomed.add(p);
  }
  for (const p of doomed) await step(`cgroup ${p}`, () => cs.cgroups.destroy(p, cs.timeouts.destroying, signal));

  // Image pins of containers that are gone.
  const images = cs.opts.provisioner.store.images;
  for (const owner of images.pinOwners()) {
    const m = /^container:([0-9a-f]{64})$/.exec(owner);
    if (!m || known.has(m[1])) continue;
    await step(`image pin ${owner}`, () => images.unpin(owner));
  }
  return swept;
}

/** capsa-monitor processes whose run dir is under `runRoot` and belongs to no known container. */
async function orphanMonitors(
  runRoot: string,
  known: ReadonlySet<string>,
): Promise<{ pid: number; startTime: number; id: string }[]> {
  const out: { pid: number; startTime: number; id: string }[] = [];
  for (const { pid, argv } of await processesNamed('capsa-monitor')) {
    const dir = argv.find((a) => path.dirname(a) === runRoot && ID.test(path.basename(a)));
    if (!dir || known.has(path.basename(dir))) continue;
    const startTime = await processStartTime(pid);
    if (startTime !== undefined) out.push({ pid, startTime, id: path.basename(dir) });
  }
  return out;
}

/** The cgroup path an orphaned run dir's spec names (linux.cgroupsPath), if it looks like ours. */
async function cgroupOfRunDir(dir: string): Promise<string | undefined> {
  try {
    const spec = JSON.parse(await fs.readFile(path.join(dir, 'spec.json'), 'utf8')) as {
      linux?: { cgroupsPath?: unknown };
    };
    const p = spec.linux?.cgroupsPath;
    if (typeof p === 'string' && p.startsWith('/') && CONTAINER_CGROUP.test(path.basename(p)) && !p.includes('..')) {
      return p;
    }
  } catch {
    // no spec: nothing was launched from this dir
  }
  return undefined;
}

/**
 * Re-adopts every checkpointed container (after the sandboxes), then
 * destroys prefixed objects nobody checkpointed (recoverContainers above).
 */
export async function recoverOne(
  cs: ContainerHost,
  id: string,
  signal: AbortSignal,
): Promise<'running' | 'exited' | 'discarded'> {
  const raw = await cs.store.read<ContainerRecord>('container', id, CONTAINER_CHECKPOINT_VERSION);
  if (!raw) {
    // Crashed between the directory and the first checkpoint: nothing else exists.
    await cs.store.remove('container', id);
    return 'discarded';
  }
  const c = new Container(fromRecord({ ...raw.data, id }));
  const r = c.record;
  transition(c, 'RECOVERING', cs.log);
  const sandbox = cs.opts.sandboxes.find(r.sandboxId);
  if (r.createdAt === undefined || !sandbox) {
    transition(c, 'DESTROYING', cs.log, r.createdAt === undefined ? 'creation never finished' : 'its sandbox is gone');
    await teardown(cs, c, signal);
    await cs.store.remove('container', id);
    transition(c, 'REMOVED', cs.log);
    cs.log.info({ containerId: id }, 'undid a container whose creation never finished or whose pod is gone');
    return 'discarded';
  }
  cs.registry.adopt(c, (a, b) => (a.record.createdAt ?? 0n) > (b.record.createdAt ?? 0n));
  if (r.finishedAt === undefined) {
    const st = await cs.launcher.status(r.runDir);
    if (st.state === 'created' || st.state === 'running') {
      r.monitor = st.monitor;
      if (st.init) r.init = st.init;
      if (st.state === 'running' && r.startedAt === undefined && st.startedAt !== undefined) {
        // Started just before the crash: started.json knows when.
        r.startedAt = st.startedAt;
        await cs.persist(c);
      }
      transition(c, 'RUNNING', cs.log, 'recovered');
      watch(cs, c);
      // An exit between the status and the watch is caught here.
      await observe(cs, c);
      return c.isFinished() ? 'exited' : 'running';
    }
    transition(c, 'RUNNING', cs.log, 'recovered, ended while capsa was down');
    await recordEnd(cs, c, st);
    return 'exited';
  }
  // Exited before: make sure nothing of it still runs (a crash may have cut the cleanup).
  transition(c, 'DESTROYING', cs.log, 'recover exited container');
  try {
    await cs.cgroups.destroy(r.cgroupPath, cs.timeouts.destroying, signal);
  } catch (err) {
    c.cleanupPending = true;
    cs.log.warn({ containerId: id, err: asCapsaError(err).message }, 'cgroup cleanup of an exited container failed');
  }
  transition(c, 'STOPPED', cs.log, 'recovered');
  c.exitSeen();
  return 'exited';
}

function fromRecord(r: ContainerRecord): ContainerRecord {
  return {
    ...r,
    beganAt: decodeBigint(r.beganAt) ?? 0n,
    createdAt: decodeBigint(r.createdAt),
    startedAt: decodeBigint(r.startedAt),
    finishedAt: decodeBigint(r.finishedAt),
  };
}
