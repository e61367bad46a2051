// CRI ⇄ containerizer for containers: CreateContainerRequest → a validated
// ContainerRequest (InvalidArgument naming the CRI field) whose build()
// runs buildContainerSpec once the rootfs exists; a container → Container /
// ContainerStatus / verbose info; the ListContainers filter; CRI signals.
import { createHash } from 'crypto';
import * as os from 'os';
import * as path from 'path';
import type { Container } from '../containerizer';
import type { BuiltSpec, ContainerImageInfo, ContainerRequest, SpecBuildInput } from '../containerizer';
import { signalNumber } from '../containerizer';
import type { MonitorErrorRecord } from '../containerizer';
import { CapsaError, ErrorContext, FailedPreconditionError, InvalidArgumentError } from '../errors';
import {
  Container as CriContainer,
  ContainerConfig,
  ContainerFilter,
  ContainerState,
  ContainerStatus,
  CreateContainerRequest,
  ImageSpec,
  LinuxContainerResources,
  Mount,
  NamespaceMode,
  PodSandboxConfig,
  Signal,
} from '../gen/runtime/v1/api';
import {
  EXEC_ARGS_LIMIT,
  buildContainerSpec,
  containerLogPath,
  hostSpecIo,
  imageMounts,
  isImageMount,
  prepareLogFile,
} from './container-spec';
import { checkArg } from './container-spec/values';
import type { Rlimit } from './container-spec/linux';
import { buildResources } from './container-spec/resources';
import { normalizeReference } from '../provisioner/store/reference';
import { canonicalJson } from '../util/canonical-json';
import { checkEnums } from './enums';
import { checkHostResources } from './host-limits';
import { checkStringMap } from './sandbox-mapping';

/** Facts about the daemon the spec builder needs, read once at start. */
export interface DaemonFacts {
  oomScoreAdj: number;
  /** No CAP_SYS_RESOURCE: container scores may not go below the daemon's. */
  restrictOomScoreAdj: boolean;
  nofile: Rlimit;
  capLastCap: number;
  nodeHostname: string;
  cgroupVersion: 1 | 2;
  /** Capability names in the daemon's bounding set (undefined: unknown, no filtering). */
  boundingCaps?: ReadonlySet<string>;
}

/**
 * Drops capabilities the daemon itself cannot hand out (not in its bounding
 * set, e.g. CAP_SYS_RESOURCE in some sandboxes): capset would refuse them.
 * containerd's "ALL" is the daemon's own set for the same reason.
 */
export function limitToBounding(spec: BuiltSpec['spec'], bounding: ReadonlySet<string> | undefined): string[] {
  if (!bounding) return [];
  const caps = spec.process.capabilities;
  const dropped = new Set<string>();
  for (const k of ['bounding', 'effective', 'inheritable', 'permitted', 'ambient'] as const) {
    caps[k] = caps[k].filter((c) => {
      if (bounding.has(c)) return true;
      dropped.add(c);
      return false;
    });
  }
  return [...dropped].map((c) => `${c} left out: not in capsa's own bounding set`);
}

const MAX_NAME = 253;

function checkText(field: string, v: string, max: number): void {
  if (v.length > max) throw new InvalidArgumentError(field, `longer than ${max} characters`);
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(v)) throw new InvalidArgumentError(field, 'contains control characters');
}

/** Identity of a CreateContainer request: identical retries have the same fingerprint. */
export function containerFingerprint(req: CreateContainerRequest): string {
  return createHash('sha256')
    .update(canonicalJson(CreateContainerRequest.toJSON(req)))
    .digest('hex');
}

/**
 * The command of ExecSync or Exec: one that execve could take (no NUL, a
 * program name, the kernel's size limits), else InvalidArgument naming
 * `field` or the offending element.
 */
export function checkExecCmd(cmd: readonly string[], field = 'cmd'): void {
  if (cmd.length === 0) throw new InvalidArgumentError(field, 'must not be empty');
  let bytes = 0;
  cmd.forEach((a, i) => {
    checkArg(a, `${field}[${i}]`);
    bytes += Buffer.byteLength(a) + 1 + 8;
  });
  if (cmd[0] === '') throw new InvalidArgumentError(`${field}[0]`, 'the program name is empty');
  if (bytes > EXEC_ARGS_LIMIT) {
    throw new InvalidArgumentError(
      field,
      `${cmd.length} arguments take ${bytes} bytes, over the ${EXEC_ARGS_LIMIT} bytes execve accepts`,
    );
  }
}

/** A CRI Signal → its number; undefined for RUNTIME_DEFAULT (the image's, else SIGTERM). */
export function criSignalNumber(s: Signal): number | undefined {
  if (s === Signal.SIGNAL_RUNTIME_DEFAULT) return undefined;
  const name = Signal[s];
  if (typeof name !== 'string') throw new InvalidArgumentError('config.stop_signal', `unknown signal ${String(s)}`);
  const n = signalNumber(name.replace(/^SIGNAL_/, ''));
  if (n === undefined) throw new InvalidArgumentError('config.stop_signal', `unknown signal ${name}`);
  return n;
}

/** The sandbox's own PID arrangement decides what a container's POD mode means. */
function adjustPidMode(config: ContainerConfig, podPid: 'pod' | 'container' | 'host'): ContainerConfig {
  const sc = config.linux?.securityContext;
  const nso = sc?.namespaceOptions;
  const mode = nso?.pid ?? NamespaceMode.POD;
  if (mode !== NamespaceMode.POD || podPid === 'pod') return config;
  const pid = podPid === 'host' ? NamespaceMode.NODE : NamespaceMode.CONTAINER;
  return ContainerConfig.fromPartial({
    ...config,
    linux: { ...config.linux, securityContext: { ...sc, namespaceOptions: { ...nso, pid } } },
  });
}

/**
 * A capsa-monitor set-up failure that the request caused, as an
 * InvalidArgument naming its field: a CRI mount the kernel refused (a file
 * bound over a directory, a destination it cannot make), the log file, the
 * working directory. Anything else is not the request's fault (undefined).
 */
export function explainLaunchError(
  config: ContainerConfig,
  record: MonitorErrorRecord,
  context: ErrorContext,
): CapsaError | undefined {
  if (record.mount !== undefined) {
    const i = config.mounts.findIndex((x) => criMountDestination(x.containerPath) === record.mount);
    // The volume's filesystem cannot be idmapped (mount_setattr EINVAL): the
    // host's fault, not the request's; never bound with host ids instead.
    if (i >= 0 && record.op === 'idmap') {
      return new FailedPreconditionError(
        `config.mounts[${i}]: the filesystem of the host path cannot be idmapped for the pod's user namespace: ${record.message}`,
        { ...context, field: `config.mounts[${i}]` },
      );
    }
    if (i >= 0) return new InvalidArgumentError(`config.mounts[${i}]`, `cannot be mounted: ${record.message}`, context);
  }
  if (record.op === 'open log') return new InvalidArgumentError('config.log_path', record.message, context);
  if (record.op === 'chdir') return new InvalidArgumentError('config.working_dir', record.message, context);
  return undefined;
}

/** A CRI mount's destination as the launch spec names it. */
function criMountDestination(containerPath: string): string {
  return path.posix.normalize(containerPath).replace(/(.)\/$/, '$1');
}

/** Validates a CreateContainer request and turns it into the containerizer's request. */
export function containerRequestFromCri(req: CreateContainerRequest, facts: DaemonFacts): ContainerRequest {
  if (req.podSandboxId === '') throw new InvalidArgumentError('pod_sandbox_id', 'is required');
  const config = req.config;
  if (!config) throw new InvalidArgumentError('config', 'is required');
  const md = config.metadata;
  if (!md) throw new InvalidArgumentError('config.metadata', 'is required');
  if (md.name === '') throw new InvalidArgumentError('config.metadata.name', 'is required');
  checkText('config.metadata.name', md.name, MAX_NAME);
  const image = config.image;
  if (!image || image.image.trim() === '') throw new InvalidArgumentError('config.image.image', 'is required');
  checkText('config.image.image', image.image, 4096);
  checkStringMap('config.labels', config.labels);
  checkStringMap('config.annotations', config.annotations);
  checkStringMap('config.image.annotations', image.annotations);
  // Before anything serializes the request (the fingerprint's toJSON throws on them).
  checkEnums(config, 'config');
  if (req.sandboxConfig) checkEnums(req.sandboxConfig, 'sandbox_config');
  // Cheap checks before anything is made (the builder repeats them with the rootfs at hand).
  buildResources({ resources: config.linux?.resources });
  checkHostResources(config.linux?.resources, 'config.linux.resources');
  if (facts.cgroupVersion === 1) {
    for (const k of Object.keys(config.linux?.resources?.unified ?? {})) {
      if (k === 'pids.max') continue;
      throw new InvalidArgumentError(
        `config.linux.resources.unified[${k.slice(0, 80)}]`,
        'raw cgroup v2 files need cgroup v2; this host runs cgroup v1',
      );
    }
  }
  if (req.sandboxConfig) containerLogPath(config, req.sandboxConfig);
  // Image volumes' own fields, before anything is mounted for them.
  imageMounts(config.mounts);
  for (const [i, m] of config.mounts.entries()) {
    if (isImageMount(m)) checkStringMap(`config.mounts[${i}].image.annotations`, m.image!.annotations);
  }
  const stopSignal = criSignalNumber(config.stopSignal);

  const build = async (input: SpecBuildInput): Promise<BuiltSpec> => {
    const h = input.sandbox;
    // The sandbox's own record is authoritative for pod-level facts (log directory, hostname).
    const sandboxConfig = h.spec.original
      ? PodSandboxConfig.fromJSON(h.spec.original)
      : (req.sandboxConfig ?? PodSandboxConfig.fromPartial({}));
    const built = await buildContainerSpec({
      config: adjustPidMode(config, h.namespaces.pid),
      sandboxConfig,
      imageConfig: input.image.config,
      sandbox: {
        nsPaths: { net: h.nsPaths.net, ipc: h.nsPaths.ipc, uts: h.nsPaths.uts, user: h.nsPaths.user },
        ...(h.spec.namespaces.userns ? { userns: h.spec.namespaces.userns } : {}),
        pidNsPath: h.nsPaths.pid,
        hostNetwork: h.namespaces.network === 'host',
        hostIpc: h.namespaces.ipc === 'host',
        hostPid: h.namespaces.pid === 'host',
        cgroupParent: h.cgroup.podPath,
        shmPath: h.files.shm,
        hostsPath: h.files.hosts,
        resolvPath: h.files.resolvConf,
        hostnamePath: h.files.hostname,
      },
      rootfsPath: input.rootfs,
      containerId: input.containerId,
      volumesRoot: input.volumesRoot,
      cgroupsPath: input.cgroupPath,
      cgroupBinds: input.cgroupBinds,
      cgroupNamespace: facts.cgroupVersion === 2,
      daemonOomScoreAdj: facts.oomScoreAdj,
      restrictOomScoreAdj: facts.restrictOomScoreAdj,
      daemonNofile: facts.nofile,
      capLastCap: facts.capLastCap,
      nodeHostname: facts.nodeHostname,
      io: hostSpecIo((id) => input.targetPidNsPath(id)),
      imageSources: input.imageSources,
    });
    const logPath = built.spec.capsa.logPath;
    if (logPath !== undefined) {
      const dir = path.posix.normalize(sandboxConfig.logDirectory).replace(/(.)\/$/, '$1');
      await prepareLogFile(dir, logPath, 'config.log_path', config.logPath);
    }
    const dropped = limitToBounding(built.spec, facts.boundingCaps);
    return {
      spec: built.spec,
      volumes: built.imageVolumes.map((v) => v.hostPath),
      user: built.user,
      warnings: [...built.warnings, ...dropped],
    };
  };

  return {
    sandboxId: req.podSandboxId,
    metadata: { name: md.name, attempt: md.attempt },
    fingerprint: containerFingerprint(req),
    image: { ref: image.image.trim(), annotations: { ...image.annotations }, userSpecified: image.userSpecifiedImage },
    labels: { ...config.labels },
    annotations: { ...config.annotations },
    mounts: config.mounts.map((m) => ({
      containerPath: m.containerPath,
      hostPath: m.hostPath,
      readonly: m.readonly,
      selinuxRelabel: m.selinuxRelabel,
      propagation: m.propagation,
      ...(isImageMount(m) && {
        image: {
          requested: m.image!.image.trim(),
          userSpecified: m.image!.userSpecifiedImage,
          annotations: { ...m.image!.annotations },
        },
        imageSubPath: m.imageSubPath,
      }),
    })),
    imageMounts: imageMounts(config.mounts),
    stopSignal,
    criResources: config.linux?.resources ? LinuxContainerResources.toJSON(config.linux.resources) : undefined,
    original: ContainerConfig.toJSON(config),
    build,
    explainLaunchError: (record, context) => explainLaunchError(config, record, context),
  };
}

/** The node's hostname (HOSTNAME of host-network containers). */
export function nodeHostname(): string {
  return os.hostname();
}

function criState(c: Container): ContainerState {
  switch (c.criState()) {
    case 'CONTAINER_CREATED':
      return ContainerState.CONTAINER_CREATED;
    case 'CONTAINER_RUNNING':
      return ContainerState.CONTAINER_RUNNING;
    case 'CONTAINER_EXITED':
      return ContainerState.CONTAINER_EXITED;
    default:
      return ContainerState.CONTAINER_UNKNOWN;
  }
}

/**
 * ContainerStatus.image.image, which kubelet shows as the container's image:
 * the tag the pod named (kubelet sends it as user_specified_image and the
 * image id as image), else the image's first tag, else what CreateContainer
 * was given. containerd answers the first tag; the bare id had kubelet report
 * "sha256:…", so a pod whose image was changed never showed the new one.
 */
export function statusImageName(i: ContainerImageInfo): string {
  const tags = i.repoTags ?? [];
  for (const asked of [i.userSpecified, i.requested]) {
    if (asked === '') continue;
    let name: string;
    try {
      name = normalizeReference(asked);
    } catch {
      continue; // an id or something unparsable: no tag to match
    }
    if (tags.includes(name)) return name;
  }
  return tags[0] ?? i.requested;
}

function imageSpec(c: Container, name: string = c.record.image.requested): ImageSpec {
  const i = c.record.image;
  return {
    image: name,
    annotations: { ...i.annotations },
    userSpecifiedImage: i.userSpecified,
    runtimeHandler: '',
    imageRef: i.id,
  };
}

export function toContainer(c: Container): CriContainer {
  const r = c.record;
  return {
    id: r.id,
    podSandboxId: r.sandboxId,
    metadata: { ...r.metadata },
    image: imageSpec(c),
    imageRef: r.image.id,
    state: criState(c),
    createdAt: r.createdAt ?? 0n,
    labels: { ...r.labels },
    annotations: { ...r.annotations },
    imageId: r.image.id,
  };
}

export function toContainerStatus(c: Container): ContainerStatus {
  const r = c.record;
  const finished = r.finishedAt !== undefined;
  return {
    id: r.id,
    metadata: { ...r.metadata },
    state: criState(c),
    createdAt: r.createdAt ?? 0n,
    startedAt: r.startedAt ?? 0n,
    finishedAt: r.finishedAt ?? 0n,
    exitCode: finished ? (r.exitCode ?? 0) : 0,
    image: imageSpec(c, statusImageName(r.image)),
    imageRef: r.image.ref,
    reason: c.reason(),
    message: finished ? (r.message ?? '') : '',
    labels: { ...r.labels },
    annotations: { ...r.annotations },
    mounts: r.mounts.map((m) =>
      Mount.fromPartial({
        containerPath: m.containerPath,
        hostPath: m.hostPath,
        readonly: m.readonly,
        selinuxRelabel: m.selinuxRelabel,
        propagation: m.propagation,
        // kubelet's image GC keeps an image whose id a mount's image.image names
        // (it sends the id); image_ref is the id PullImage answered (critest checks it).
        ...(m.image && {
          image: {
            image: m.image.requested,
            userSpecifiedImage: m.image.userSpecified,
            annotations: { ...m.image.annotations },
            runtimeHandler: '',
            imageRef: m.image.id ?? '',
          },
          imageSubPath: m.imageSubPath ?? '',
        }),
      }),
    ),
    logPath: r.logPath,
    resources: r.criResources
      ? { linux: LinuxContainerResources.fromJSON(r.criResources), windows: undefined }
      : undefined,
    imageId: r.image.id,
    user: r.user
      ? {
          linux: {
            uid: BigInt(r.user.uid),
            gid: BigInt(r.user.gid),
            supplementalGroups: r.user.additionalGids.map((g) => BigInt(g)),
          },
        }
      : undefined,
    stopSignal: Signal.SIGNAL_RUNTIME_DEFAULT,
  };
}

/** The `info` map of a verbose ContainerStatus: one JSON document, as crictl inspect shows it. */
export function containerVerboseInfo(c: Container, spec: unknown): Record<string, string> {
  const r = c.record;
  const info = {
    id: r.id,
    sandboxID: r.sandboxId,
    pid: r.init?.pid ?? 0,
    monitor: r.monitor,
    lifecycle: c.state,
    cleanupPending: c.cleanupPending,
    runDir: r.runDir,
    rootfs: r.rootfs,
    snapshotter: r.backend,
    cgroupPath: r.cgroupPath,
    image: r.image,
    stopSignal: r.stopSignal,
    beganAt: r.beganAt.toString(),
    config: r.original,
    runtimeSpec: spec,
  };
  return { info: JSON.stringify(info) };
}

/**
 * The statuses of a pod's containers, newest first, as kubelet orders them
 * itself when it asks container by container: it takes the first status of
 * a name as the current one (PodSandboxStatus and container events hand it
 * the list ready-made).
 */
export function podContainerStatuses(containers: readonly Container[]): ContainerStatus[] {
  return containers
    .map(toContainerStatus)
    .sort((a, b) => (a.createdAt === b.createdAt ? a.id.localeCompare(b.id) : a.createdAt > b.createdAt ? -1 : 1));
}

/**
 * ListContainers' filter: id prefix, state, sandbox id (or prefix), every
 * label equal. ListContainerStats' filter is the same without the state.
 */
export function matchesContainerFilter(
  c: Container,
  f: (Omit<ContainerFilter, 'state'> & Partial<Pick<ContainerFilter, 'state'>>) | undefined,
): boolean {
  if (!f) return true;
  if (f.id !== '' && !c.id.startsWith(f.id)) return false;
  if (f.state && criState(c) !== f.state.state) return false;
  if (f.podSandboxId !== '' && !c.record.sandboxId.startsWith(f.podSandboxId)) return false;
  for (const [k, v] of Object.entries(f.labelSelector)) if (c.record.labels[k] !== v) return false;
  return true;
}
