// RuntimeService handlers for checkpoint/restore: CheckpointContainer
// (kubelet's forensic container checkpointing), CheckpointPod and
// RestorePod. The request checks live here (field names are CRI's); the
// work is the containerizer's Checkpointer (src/containerizer/criu).
// Restoring a container from an archive goes through CreateContainer with
// the archive's path as the image, as with CRI-O (containers.ts).
import { promises as fs } from 'fs';
import * as path from 'path';
import {
  POD_FORMAT,
  POD_RECORD,
  RESTORE_ENV,
  type Checkpointer,
  type Container,
  type Containers,
  type Sandboxes,
} from '../../containerizer';
import { containerRequestFromCri, type DaemonFacts } from '../container-mapping';
import { requestFingerprint, sandboxSpecFromRequest } from '../sandbox-mapping';
import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from '../../errors';
import {
  CheckpointContainerRequest,
  CheckpointContainerResponse,
  CheckpointPodRequest,
  CheckpointPodResponse,
  CreateContainerRequest,
  NamespaceMode,
  RestorePodRequest,
  RestorePodResponse,
  RunPodSandboxRequest,
  type RuntimeServiceServer,
} from '../../gen/runtime/v1/api';
import type { CallContext, ServiceHandlers } from './handler';

export interface CheckpointServiceDeps {
  checkpointer: Checkpointer;
  containers: Containers;
  sandboxes: Sandboxes;
  cgroupDriver: 'cgroupfs' | 'systemd';
  runtimeHandlers: readonly string[];
  /** What CreateContainer's request mapping needs (RestorePod creates containers). */
  facts?: DaemonFacts;
}

/** CheckpointContainer's deadline when the request says 0 (CRI: "the CRI default"). */
export const DEFAULT_CHECKPOINT_TIMEOUT_S = 300;

/** An absolute path without NUL bytes; `what` says what it must be. */
function absolutePath(v: string, field: string): string {
  if (v === '') throw new InvalidArgumentError(field, 'is required');
  if (v.includes('\0') || !path.isAbsolute(v))
    throw new InvalidArgumentError(field, `${JSON.stringify(v.slice(0, 200))} is not an absolute path`);
  return path.normalize(v);
}

/** `location`: a new file in an existing directory (never a path we would overwrite). */
export async function checkLocation(v: string): Promise<string> {
  const loc = absolutePath(v, 'location');
  const dir = await fs.stat(path.dirname(loc)).catch(() => undefined);
  if (!dir?.isDirectory()) throw new InvalidArgumentError('location', `directory ${path.dirname(loc)} does not exist`);
  if (
    await fs.lstat(loc).then(
      () => true,
      () => false,
    )
  )
    throw new InvalidArgumentError('location', `${loc} already exists; a checkpoint never overwrites a file`);
  return loc;
}

function checkTimeout(v: bigint): number {
  if (v < 0n) throw new InvalidArgumentError('timeout', `${v} is negative`);
  if (v > 86_400n) throw new InvalidArgumentError('timeout', `${v} seconds is more than a day`);
  return Number(v === 0n ? BigInt(DEFAULT_CHECKPOINT_TIMEOUT_S) : v);
}

/** No runtime-specific options are defined; CRI says unknown keys are refused. */
function checkOptions(options: Record<string, string>): void {
  const keys = Object.keys(options);
  if (keys.length)
    throw new InvalidArgumentError(
      'options',
      `unknown option ${JSON.stringify(keys[0].slice(0, 80))} (capsa defines none)`,
    );
}

/** A CreateContainer image that names a checkpoint archive: a path (no image reference starts with "/"). */
export function isArchiveImage(image: string): boolean {
  return image.startsWith('/');
}

/**
 * CreateContainer from a checkpoint archive (`config.image.image` is its
 * path, as CRI-O takes it): the archive is read and checked (not a tar,
 * truncated, or not ours: InvalidArgument naming the field), CRIU must be
 * able to run here, and the checkpointed image must be on this node. The
 * answer is the request to create instead (the image the archive was made
 * from, a token naming the unpacked archive for the RestoreLauncher) and
 * the release the caller runs when CreateContainer ends (it removes the
 * unpacked copy unless the container took it).
 */
export async function restoreContainer(
  checkpointer: Checkpointer,
  req: CreateContainerRequest,
  signal: AbortSignal,
): Promise<{ request: CreateContainerRequest; release: () => Promise<void> }> {
  const field = 'config.image.image';
  const file = absolutePath(req.config?.image?.image ?? '', field);
  const st = await fs.stat(file).catch(() => undefined);
  if (!st?.isFile()) throw new InvalidArgumentError(field, `checkpoint archive ${file} does not exist`);
  // CRIU dumped (and restores) the tree as PID 1 of a namespace of its own.
  if (req.config?.linux?.securityContext?.namespaceOptions?.pid !== NamespaceMode.CONTAINER)
    throw new InvalidArgumentError(
      'config.linux.security_context.namespace_options.pid',
      'a container restored from a checkpoint needs its own PID namespace (CONTAINER), as it was checkpointed',
    );
  const archive = await checkpointer.unpackArchive(file, field, signal);
  try {
    await checkpointer.probe.require('restoring a container from a checkpoint', { containerId: archive.config.id });
  } catch (err) {
    await fs.rm(archive.dir, { recursive: true, force: true });
    throw err;
  }
  const token = checkpointer.pending.add(archive.dir);
  const config = req.config!;
  const request: CreateContainerRequest = {
    ...req,
    config: {
      ...config,
      image: { ...config.image!, image: archive.config.rootfsImageRef || archive.config.rootfsImage },
      envs: [...config.envs, { key: RESTORE_ENV, value: Buffer.from(token) }],
    },
  };
  return { request, release: () => checkpointer.pending.release(token) };
}

/** The record CheckpointPod leaves in its output dir; undefined when the dir holds none of ours. */
async function readPodRecord(dir: string): Promise<{ containers: { name: string; dir: string }[] } | undefined> {
  const text = await fs.readFile(path.join(dir, POD_RECORD), 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  let rec: { format?: unknown; containers?: unknown };
  try {
    rec = JSON.parse(text) as typeof rec;
  } catch {
    throw new InvalidArgumentError('checkpoint_path', `${path.join(dir, POD_RECORD)} is not JSON`);
  }
  if (rec.format !== POD_FORMAT || !Array.isArray(rec.containers))
    throw new InvalidArgumentError('checkpoint_path', `${dir} is not a ${POD_FORMAT} checkpoint`);
  return {
    containers: (rec.containers as { name?: unknown; dir?: unknown }[]).map((c) => ({
      name: String(c.name),
      dir: String(c.dir ?? c.name),
    })),
  };
}

export function checkpointHandlers(deps: CheckpointServiceDeps): ServiceHandlers<RuntimeServiceServer> {
  const { checkpointer, containers, sandboxes } = deps;

  const checkpointContainer = async (
    req: CheckpointContainerRequest,
    ctx: CallContext,
  ): Promise<CheckpointContainerResponse> => {
    if (req.containerId === '') throw new InvalidArgumentError('container_id', 'is required');
    const location = await checkLocation(req.location);
    const timeout = checkTimeout(req.timeout);
    await checkpointer.checkpointContainer(req.containerId, location, timeout * 1000, ctx.signal);
    return {};
  };

  const checkpointPod = async (req: CheckpointPodRequest, ctx: CallContext): Promise<CheckpointPodResponse> => {
    if (req.podSandboxId === '') throw new InvalidArgumentError('pod_sandbox_id', 'is required');
    const out = absolutePath(req.outputPath, 'output_path');
    const sb = sandboxes.get(req.podSandboxId);
    const st = await fs.stat(out).catch(() => undefined);
    if (!st?.isDirectory()) throw new InvalidArgumentError('output_path', `${out} is not an existing directory`);
    if ((await fs.readdir(out)).length) throw new InvalidArgumentError('output_path', `${out} is not empty`);
    if (req.containerIds.length === 0)
      throw new InvalidArgumentError('container_ids', 'must name at least one container');
    const seen = new Set<string>();
    const members: Container[] = [];
    for (const id of req.containerIds) {
      const c = containers.find(id);
      if (!c) throw new NotFoundError(`container_ids: container ${JSON.stringify(id.slice(0, 80))} not found`);
      if (seen.has(c.id)) throw new InvalidArgumentError('container_ids', `container ${c.id} is listed twice`);
      seen.add(c.id);
      if (c.record.sandboxId !== sb.id)
        throw new InvalidArgumentError('container_ids', `container ${c.id} is not in pod ${sb.id}`);
      if (c.criState() !== 'CONTAINER_RUNNING')
        throw new InvalidArgumentError('container_ids', `container ${c.id} is not running (${c.criState()})`);
      members.push(c);
    }
    checkOptions(req.options);
    await checkpointer.checkpointPod(sb, members, out, ctx.signal);
    return {};
  };

  const restorePod = async (req: RestorePodRequest, ctx: CallContext): Promise<RestorePodResponse> => {
    const dir = absolutePath(req.checkpointPath, 'checkpoint_path');
    // The pod config and handler are checked as RunPodSandbox checks them.
    sandboxSpecFromRequest(
      RunPodSandboxRequest.fromPartial({ config: req.config, runtimeHandler: req.runtimeHandler }),
      {
        cgroupDriver: deps.cgroupDriver,
        cgroupVersion: sandboxes.cgroups.layout.version,
        runtimeHandlers: deps.runtimeHandlers,
      },
    );
    checkOptions(req.options);
    if (req.containerConfigs.length === 0) throw new InvalidArgumentError('container_configs', 'must not be empty');
    const names = new Set<string>();
    for (const [i, cfg] of req.containerConfigs.entries()) {
      const name = cfg.metadata?.name ?? '';
      if (name === '') throw new InvalidArgumentError(`container_configs[${i}].metadata.name`, 'is required');
      if (names.has(name))
        throw new InvalidArgumentError(`container_configs[${i}].metadata.name`, `${name} is listed twice`);
      names.add(name);
    }
    const st = await fs.stat(dir).catch(() => undefined);
    if (!st?.isDirectory()) throw new InvalidArgumentError('checkpoint_path', `${dir} is not an existing directory`);
    const pod = await readPodRecord(dir);
    if (!pod)
      throw new InvalidArgumentError('checkpoint_path', `${dir} is not a capsa pod checkpoint (no ${POD_RECORD})`);
    const want = [...names].sort();
    const have = pod.containers.map((c) => c.name).sort();
    if (want.join('\0') !== have.join('\0'))
      throw new InvalidArgumentError(
        'container_configs',
        `names ${want.join(', ')} are not the checkpoint's containers (${have.join(', ')})`,
      );
    await checkpointer.probe.require('RestorePod', {});
    if (!deps.facts) throw new FailedPreconditionError('RestorePod: this daemon serves no containers', { path: dir });
    const facts = deps.facts;
    // A new sandbox from the request's config, then each member restored into it (CREATED);
    // on any failure all of it goes again.
    const podReq = RunPodSandboxRequest.fromPartial({ config: req.config, runtimeHandler: req.runtimeHandler });
    const spec = sandboxSpecFromRequest(podReq, {
      cgroupDriver: deps.cgroupDriver,
      cgroupVersion: sandboxes.cgroups.layout.version,
      runtimeHandlers: deps.runtimeHandlers,
    });
    const sandboxId = await sandboxes.run(spec, requestFingerprint(podReq), ctx.signal);
    const restored: { name: string; containerId: string }[] = [];
    try {
      for (const [i, cfg] of req.containerConfigs.entries()) {
        const name = cfg.metadata!.name;
        const member = pod.containers.find((c) => c.name === name)!;
        const field = `container_configs[${i}]`;
        const archive = await checkpointer.unpackMember(path.join(dir, path.basename(member.dir)), field, ctx.signal);
        const token = checkpointer.pending.add(archive.dir);
        try {
          const cri = CreateContainerRequest.fromPartial({
            podSandboxId: sandboxId,
            sandboxConfig: req.config,
            config: {
              ...cfg,
              image: { ...cfg.image, image: archive.config.rootfsImageRef || archive.config.rootfsImage },
              envs: [...cfg.envs, { key: RESTORE_ENV, value: Buffer.from(token) }],
            },
          });
          const id = await containers.create(containerRequestFromCri(cri, facts), ctx.signal);
          restored.push({ name, containerId: id });
        } finally {
          await checkpointer.pending.release(token);
        }
      }
    } catch (err) {
      const cleanup = AbortSignal.timeout(60_000);
      for (const r of restored) await containers.remove(r.containerId, cleanup).catch(() => undefined);
      await sandboxes.stop(sandboxId, cleanup).catch(() => undefined);
      await sandboxes.remove(sandboxId, cleanup).catch(() => undefined);
      throw err;
    }
    return { podSandboxId: sandboxId, restoredContainers: restored };
  };

  return {
    checkpointContainer: checkpointContainer,
    checkpointPod: checkpointPod,
    restorePod: restorePod,
  };
}
