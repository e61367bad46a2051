// A container (nested container) as the containerizer sees it: the
// runtime-neutral request the CRI layer hands in (src/cri/container-mapping.ts
// builds it), the facts the spec builder gets, and the checkpoint record.
import type { LaunchSpec, MonitorErrorRecord } from './launcher/spec';
import type { CapsaError, ErrorContext } from '../errors';
import type { ImageRecord } from '../provisioner/store/image-store';
import type { ProcessIdentity } from '../util/procfs';
import type { CgroupResources } from './isolators/cgroups/values';
import type { SandboxHandle } from './sandbox-spec';

/** A CRI mount as recorded for ContainerStatus. */
export interface ContainerMountInfo {
  containerPath: string;
  /** An image volume's: the mounted image's directory, once made. */
  hostPath: string;
  readonly: boolean;
  selinuxRelabel: boolean;
  /** CRI MountPropagation value. */
  propagation: number;
  /** An image volume: the image as asked for, and its id once resolved. */
  image?: { requested: string; userSpecified: string; annotations: Record<string, string>; id?: string };
  imageSubPath?: string;
}

/** An image volume (a mount of an image's layers, read-only) as the request asks for it. */
export interface ImageMountRequest {
  /** Its index in `mounts`. */
  index: number;
  /** The request's field for it, for errors (the CRI layer's name, e.g. "config.mounts[2]"). */
  field: string;
  /** Image reference to resolve locally (an id or a name). */
  ref: string;
  /** Directory inside the image to mount; "" for its root. */
  subPath: string;
}

/** An image volume as checkpointed: what recovery and teardown need are the container id and the pin. */
export interface ImageMountRecord {
  index: number;
  /** The image id ("sha256:…"), held against RemoveImage while the container exists. */
  imageId: string;
  chainIds: string[];
  subPath: string;
}

export interface ContainerImageInfo {
  /** The reference the client asked for (ImageSpec.image). */
  requested: string;
  annotations: Record<string, string>;
  userSpecified: string;
  /** The image id ("sha256:…"). */
  id: string;
  /** A repo digest when the image has one, else the id (CRI image_ref). */
  ref: string;
  /** The image's repo tags when the container was created (checkpoints before them have none). */
  repoTags?: string[];
}

/** What the spec builder is given once the rootfs exists. */
export interface SpecBuildInput {
  containerId: string;
  sandbox: SandboxHandle;
  image: ImageRecord;
  /** The mounted rootfs. */
  rootfs: string;
  /** Where image VOLUME directories go. */
  volumesRoot: string;
  /** The container's cgroup (relative to each hierarchy). */
  cgroupPath: string;
  /** Host directories of the container's cgroup to show at /sys/fs/cgroup. */
  cgroupBinds: { source: string; destination: string }[];
  /** Image volumes: the mounted image's directory to bind, by index in the request's mounts. */
  imageSources: ReadonlyMap<number, string>;
  /** /proc/<init>/ns/pid of a running container of the same pod. */
  targetPidNsPath(containerId: string): string | undefined;
}

export interface BuiltSpec {
  spec: LaunchSpec;
  /** Empty host directories to make before the launch. */
  volumes: string[];
  user: { uid: number; gid: number; additionalGids: number[] };
  warnings: string[];
}

/** CreateContainer, runtime-neutral. */
export interface ContainerRequest {
  /** Full id or unique prefix. */
  sandboxId: string;
  metadata: { name: string; attempt: number };
  /** Identity of the request: identical retries have the same one. */
  fingerprint: string;
  /** Image reference to resolve locally. */
  image: { ref: string; annotations: Record<string, string>; userSpecified: string };
  labels: Record<string, string>;
  annotations: Record<string, string>;
  mounts: ContainerMountInfo[];
  /** The mounts that are image volumes. */
  imageMounts: ImageMountRequest[];
  /** CRI's explicit stop signal; undefined: the image's StopSignal, else SIGTERM. */
  stopSignal?: number;
  /** CRI resources as proto JSON, for ContainerStatus; opaque here. */
  criResources?: unknown;
  /** The request's config as proto JSON, for verbose status; opaque here. */
  original?: unknown;
  build(input: SpecBuildInput): Promise<BuiltSpec>;
  /**
   * The request's reading of a launch failure (the monitor could not set the
   * container up as asked: a bind of a file over a directory, say): an
   * error naming the request's field, or undefined when it is not the
   * request's fault.
   */
  explainLaunchError?(record: MonitorErrorRecord, context: ErrorContext): CapsaError | undefined;
}

/** The container checkpoint (checkpoint.json data, version 1). Timestamps are Unix ns. */
export interface ContainerRecord {
  id: string;
  sandboxId: string;
  /** <name>_<pod name>_<pod namespace>_<pod uid>_<attempt>: unique among live containers. */
  key: string;
  fingerprint: string;
  metadata: { name: string; attempt: number };
  image: ContainerImageInfo;
  /** Layers pinned for this container. */
  chainIds: string[];
  labels: Record<string, string>;
  annotations: Record<string, string>;
  mounts: ContainerMountInfo[];
  /** Image volumes (absent in checkpoints from before them). */
  imageMounts?: ImageMountRecord[];
  logPath: string;
  stopSignal: number;
  /** <state>/containers/<id> */
  runDir: string;
  /** <runDir>/rootfs */
  rootfs: string;
  cgroupPath: string;
  backend?: string;
  user?: { uid: number; gid: number; additionalGids: number[] };
  resources?: CgroupResources;
  criResources?: unknown;
  original?: unknown;
  /** When CreateContainer began making it. */
  beganAt: bigint;
  /** Set once CreateContainer finished: absent means creation never completed. */
  createdAt?: bigint;
  startedAt?: bigint;
  finishedAt?: bigint;
  exitCode?: number;
  reason?: string;
  message?: string;
  oomKilled?: boolean;
  monitor?: ProcessIdentity;
  init?: ProcessIdentity;
}

export type { LaunchSpec };
