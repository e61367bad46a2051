// What the spec builder reads and asks of the host (the launch spec it
// builds is the containerizer's: src/containerizer/launcher/spec.ts).

/** The image config fields the builder reads (OCI image-spec config JSON; untrusted). */
export interface ImageConfigInput {
  config?: {
    User?: unknown;
    Env?: unknown;
    Entrypoint?: unknown;
    Cmd?: unknown;
    WorkingDir?: unknown;
    Volumes?: unknown;
    StopSignal?: unknown;
    [key: string]: unknown;
  } | null;
  [key: string]: unknown;
}

/** A host device node as stat(2) reports it. */
export interface HostDevice {
  path: string;
  type: 'c' | 'b';
  major: number;
  minor: number;
  /** Permission bits only (mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
}

/** The host checks the builder needs; see host-io.ts for the real ones. */
export interface SpecIo {
  /** Whether a CRI mount's host path exists. */
  pathExists(hostPath: string): Promise<boolean>;
  /** Whether a host path is on a procfs (only one may cover /proc); absent: never. */
  isProcfs?(hostPath: string): Promise<boolean>;
  /** Whether the kernel makes binds read-only recursively (mount_setattr); absent: no. */
  recursiveReadOnly?: boolean;
  /** The device node at a host path, or undefined when it is not a char/block device. */
  statDevice(hostPath: string): Promise<HostDevice | undefined>;
  /** Every device node under the host's /dev (privileged containers); omit to give them none. */
  listHostDevices?(): Promise<HostDevice[]>;
  /** The PID namespace file of a running container of the same pod (TARGET mode). */
  targetPidNsPath?(containerId: string): string | undefined;
  /** A Localhost seccomp profile's bytes, undefined when missing (default: read the host file). */
  readSeccompProfile?(hostPath: string): Promise<Buffer | undefined>;
}
