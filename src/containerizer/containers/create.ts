// CreateContainer: PREPARING (checkpoint, image pin, rootfs, image volumes) → ISOLATING
// (spec, cgroup, the monitor holding the init before execve) → RUNNING (CRI
// CREATED). An identical retry while the first is being made waits for it
// and gets the same container; a failed stage undoes everything (discard).
import { randomBytes } from 'crypto';
import { promises as fs } from 'fs';
import * as path from 'path';
import { FailedPreconditionError, NotFoundError } from '../../errors';
import type { ImageRecord } from '../../provisioner/store/image-store';
import type { ContainerRecord, ContainerRequest } from '../container-spec';
import type { CgroupResources } from '../isolators/cgroups/values';
import { LaunchError } from '../launcher/monitor-client';
import { SIGTERM, signalNumber } from '../launcher/signals';
import { nowNs, runStage, transition } from '../state';
import { Container } from './container';
import { ContainerHost, pinOwner } from './host';
import { mountImages, resolveImageMounts } from './image-mounts';
import { teardown } from './remove';
import { provisionRootfs } from './rootfs';
import { watch } from './observe';

export async function create(cs: ContainerHost, req: ContainerRequest, signal: AbortSignal): Promise<string> {
  const sb = cs.opts.sandboxes.get(req.sandboxId);
  if (sb.criState() !== 'SANDBOX_READY' || sb.stopping) {
    throw new FailedPreconditionError(`sandbox ${sb.id} is not ready${sb.stopping ? ' (it is being stopped)' : ''}`, {
      sandboxId: sb.id,
      stage: 'create',
    });
  }
  const md = sb.spec.metadata;
  const key = `${req.metadata.name}_${md.name}_${md.namespace}_${md.uid}_${req.metadata.attempt}`;
  const existing = cs.registry.named(key);
  if (existing) {
    return cs.registry.retried({
      existing,
      key,
      sameRequest: existing.record.fingerprint === req.fingerprint,
      // Made, but the answer may never have reached kubelet: the same container.
      madeUnclaimed: existing.criState() === 'CONTAINER_CREATED' && existing.state === 'RUNNING',
      rpc: 'CreateContainer',
      timeoutMs: cs.timeouts.retryWait,
      signal,
      redo: () => create(cs, req, signal),
      log: cs.log,
    });
  }

  const image = cs.opts.provisioner.find(req.image.ref);
  if (!image) {
    throw new NotFoundError(`image "${req.image.ref}" not found: pull it first`, {
      image: req.image.ref,
      stage: 'create',
    });
  }
  const imageMounts = resolveImageMounts(cs, req);
  const id = randomBytes(32).toString('hex');
  const runDir = path.join(cs.runRoot, id);
  const handle = cs.opts.sandboxes.handle(sb.id);
  const record: ContainerRecord = {
    id,
    sandboxId: sb.id,
    key,
    fingerprint: req.fingerprint,
    metadata: { ...req.metadata },
    image: {
      requested: req.image.ref,
      annotations: { ...req.image.annotations },
      userSpecified: req.image.userSpecified,
      id: image.id,
      ref: image.repoDigests[0] ?? image.id,
      repoTags: [...image.repoTags],
    },
    chainIds: image.layers.map((l) => l.chainId),
    labels: { ...req.labels },
    annotations: { ...req.annotations },
    mounts: req.mounts.map((m, i) => ({
      ...m,
      image: m.image && { ...m.image, id: imageMounts.find((v) => v.index === i)?.imageId },
    })),
    imageMounts,
    logPath: '',
    stopSignal: req.stopSignal ?? imageStopSignal(image) ?? SIGTERM,
    runDir,
    rootfs: path.join(runDir, 'rootfs'),
    cgroupPath: handle.cgroup.containerPath(id),
    criResources: req.criResources,
    original: req.original,
    beganAt: nowNs(),
  };
  const c = new Container(record);
  return cs.registry.createDetached(c, () => make(cs, c, req, image), signal, cs.log, 'CreateContainer');
}

export async function make(cs: ContainerHost, c: Container, req: ContainerRequest, image: ImageRecord): Promise<void> {
  const t = cs.timeouts;
  const r = c.record;
  const cleanup = (signal: AbortSignal): Promise<void> => discard(cs, c, signal);
  const log = cs.log.child({ containerId: c.id });
  let imageSources = new Map<number, string>();
  await runStage(c, 'PREPARING', cs.log, {
    timeoutMs: t.preparing,
    cleanupTimeoutMs: t.destroying,
    cleanup,
    run: async () => {
      // Disk before host objects: recovery finds whatever this container makes from here on.
      await cs.store.create('container', c.id);
      // The backend is chosen once per daemon (no host object of this container), so its
      // name goes into the first checkpoint rather than a second write of the same record.
      const backend = await cs.opts.provisioner.backend();
      r.backend = backend.name;
      await cs.persist(c);
      await fs.mkdir(cs.runRoot, { recursive: true, mode: 0o711 });
      await fs.mkdir(r.runDir, { recursive: true, mode: 0o711 });
      // GC must keep the layers while the container uses them (a persisted pin).
      await cs.opts.provisioner.store.images.pin(pinOwner(c.id), r.chainIds);
      await provisionRootfs(cs, c, backend, cs.opts.provisioner.layerDirs(image));
      imageSources = await mountImages(cs, c, req);
    },
  });
  await runStage(c, 'ISOLATING', cs.log, {
    timeoutMs: t.isolating,
    cleanupTimeoutMs: t.destroying,
    cleanup,
    run: async (signal) => {
      const lap = laps();
      const handle = cs.opts.sandboxes.handle(r.sandboxId);
      const sb = cs.opts.sandboxes.get(r.sandboxId);
      const built = await req.build({
        containerId: c.id,
        sandbox: handle,
        image,
        rootfs: r.rootfs,
        volumesRoot: path.join(cs.store.dir('container', c.id), 'volumes'),
        cgroupPath: r.cgroupPath,
        cgroupBinds: cgroupBinds(cs, r.cgroupPath),
        imageSources,
        targetPidNsPath: (id) => cs.targetPidNsPath(r.sandboxId, id),
      });
      for (const w of built.warnings) log.warn({ warning: w }, 'container spec');
      for (const v of built.volumes) await fs.mkdir(v, { recursive: true, mode: 0o755 });
      const spec = built.spec;
      // The pod's RuntimeClass handler picks the launcher (launcher/handlers.ts).
      if (sb.spec.runtimeHandler !== '') spec.capsa.runtimeHandler = sb.spec.runtimeHandler;
      const { devices, ...rest } = spec.linux.resources;
      r.resources = { ...rest, devices } as CgroupResources;
      r.user = built.user;
      r.logPath = spec.capsa.logPath ?? '';
      // No checkpoint here: until createdAt is written, recovery undoes the container from
      // the names in its first checkpoint (cgroupPath, runDir, rootfs, the pin) and reads
      // nothing of resources, user or logPath; the write below carries them with createdAt.
      signal.throwIfAborted();
      lap('spec');
      const cg = await cs.cgroups.create(r.cgroupPath, r.resources, { delegate: false });
      lap('cgroup');
      spec.capsa.cgroupProcs = cg.procs;
      if (cg.memory) spec.capsa.memoryCgroup = cg.memory;
      if (cg.monitorProcs) spec.capsa.monitorCgroupProcs = cg.monitorProcs;
      if (r.logPath !== '') await fs.mkdir(path.dirname(r.logPath), { recursive: true, mode: 0o755 });
      const created = await cs.launcher.create(r.runDir, spec, signal).catch((err: unknown) => {
        if (err instanceof LaunchError) throw req.explainLaunchError?.(err.record, err.context) ?? err;
        throw err;
      });
      // The init is in its cgroup: what held it until then goes (systemd: the scope's stand-in).
      await cs.cgroups.settled(r.cgroupPath);
      lap('launch');
      c.spec = spec;
      r.monitor = created.monitor;
      r.init = created.init;
      r.createdAt = nowNs();
      await cs.persist(c);
      log.debug({ laps: lap('checkpoint') }, 'isolating timing');
    },
  });
  transition(c, 'RUNNING', cs.log, 'created');
  cs.publish('created', c, r.createdAt);
  watch(cs, c);
  log.info(
    {
      key: r.key,
      image: r.image.requested,
      init: r.init?.pid,
      // A RuntimeClass handler other than capsa's own launcher, named.
      ...(c.spec?.capsa.runtimeHandler ? { runtimeHandler: c.spec.capsa.runtimeHandler } : {}),
      ms: Number(((r.createdAt ?? 0n) - r.beganAt) / 1_000_000n),
    },
    'container created',
  );
}

/** The container's cgroup directories as /sys/fs/cgroup binds (one per v1 hierarchy, or the v2 dir). */
export function cgroupBinds(cs: ContainerHost, cgPath: string): { source: string; destination: string }[] {
  const out: { source: string; destination: string }[] = [];
  for (const { h, dir } of cs.cgroups.hierarchyDirs(cgPath)) {
    if (cs.cgroups.layout.version === 2) {
      out.push({ source: dir, destination: '/sys/fs/cgroup' });
      break;
    }
    if (path.dirname(h.mount) !== '/sys/fs/cgroup') continue;
    out.push({ source: dir, destination: h.mount });
  }
  return out;
}

/** Undoes a failed creation: everything, then the checkpoint, then the name. */
export async function discard(cs: ContainerHost, c: Container, signal: AbortSignal): Promise<void> {
  try {
    await teardown(cs, c, signal);
    await cs.store.remove('container', c.id);
  } finally {
    cs.forget(c);
  }
}

/** Stage timer for the debug log: lap(name) records ms since the previous lap; returns them all. */
function laps(): (name: string) => Record<string, number> {
  let t = process.hrtime.bigint();
  const out: Record<string, number> = {};
  return (name) => {
    const now = process.hrtime.bigint();
    out[name] = Math.round(Number(now - t) / 1e4) / 100;
    t = now;
    return out;
  };
}

function imageStopSignal(image: ImageRecord): number | undefined {
  const s = image.config.config?.StopSignal;
  return typeof s === 'string' && s !== '' ? signalNumber(s) : undefined;
}
