// The container's mount table, in the order the monitor applies it:
//   - the defaults: /proc, /dev (tmpfs) with /dev/pts (a new devpts
//     instance, ptmxmode=0666), /dev/mqueue and /dev/shm, /sys (sysfs,
//     read-only unless privileged);
//   - /sys/fs/cgroup: the monitor does not mount the "cgroup" filesystem
//     type, so the caller (the cgroups isolator) passes the container's
//     cgroup directories to bind: one bind at /sys/fs/cgroup (v2), or a tmpfs
//     there with one bind per controller (v1); read-only unless privileged;
//     none when the caller passes none;
//   - the pod's files: /dev/shm (the pod's, or the host's with host IPC),
//     /etc/hostname, /etc/hosts, /etc/resolv.conf bound from the sandbox
//     (read-only with a read-only rootfs);
//   - the CRI mounts, validated; an image volume (Mount.image) is a bind of
//     the image the containerizer mounted, read-only, nosuid, nodev;
//   - the image's VOLUMEs, as empty host directories under volumesRoot.
// A CRI mount replaces any default or pod mount at the same destination, and
// a CRI mount of /dev replaces every default below /dev. The table is then
// sorted by destination depth (stable), so a parent is mounted before its
// children. Masked and read-only paths: the CRI lists when given, else the
// defaults below; none for a privileged container.
// CRI mounts are checked in cri-mounts.ts, image volumes and VOLUMEs in image-mounts.ts.
import * as path from 'path';
import { InternalError } from '../../errors';
import type { Mount } from '../../gen/runtime/v1/api';
import type { MountSpec, UsernsSpec } from '../../containerizer';
import { criMounts } from './cri-mounts';
import { ImageVolume, imageVolumeMounts } from './image-mounts';
import { containerPath, isWithin, pathDepth } from './values';

export const DEFAULT_MASKED_PATHS: readonly string[] = [
  '/proc/acpi',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
];

export const DEFAULT_READONLY_PATHS: readonly string[] = [
  '/proc/asound',
  '/proc/bus',
  '/proc/fs',
  '/proc/irq',
  '/proc/sys',
  '/proc/sysrq-trigger',
];

export interface PodFiles {
  /** The pod's /dev/shm on the host; unused with host IPC. */
  shmPath?: string;
  hostsPath?: string;
  resolvPath?: string;
  hostnamePath?: string;
}

export interface CgroupBind {
  /** The container's cgroup directory (or one controller's) on the host. */
  source: string;
  /** /sys/fs/cgroup (v2) or /sys/fs/cgroup/<controller> (v1). */
  destination: string;
}

export interface MountsInput {
  mounts: readonly Mount[];
  /** What to show at /sys/fs/cgroup; empty: nothing. */
  cgroupBinds: readonly CgroupBind[];
  /** The image config's Volumes ({"/path": {}}; untrusted). */
  imageVolumes: unknown;
  privileged: boolean;
  readonlyRootfs: boolean;
  hostIpc: boolean;
  pod: PodFiles;
  /** Host directory under which the image volumes' directories are made. */
  volumesRoot: string;
  /** security_context.masked_paths / readonly_paths (empty: the defaults). */
  maskedPaths: readonly string[];
  readonlyPaths: readonly string[];
  /** Whether a CRI mount's host path exists (the only I/O here). */
  pathExists: (hostPath: string) => Promise<boolean>;
  /** Whether a host path is on a procfs (a CRI mount of /proc needs one); absent: never. */
  isProcfs?: (hostPath: string) => Promise<boolean>;
  /** Whether recursive read-only binds work here (SpecIo.recursiveReadOnly). */
  recursiveReadOnly?: boolean;
  /** Image volumes: the host directory to bind, by index in `mounts`. */
  imageSources?: ReadonlyMap<number, string>;
  /** The pod's user namespace (userns POD): CRI mounts with its mappings are idmapped. */
  userns?: UsernsSpec;
}

export interface MountsResult {
  mounts: MountSpec[];
  maskedPaths: string[];
  readonlyPaths: string[];
  rootfsPropagation: 'rslave' | 'rshared';
  imageVolumes: ImageVolume[];
  warnings: string[];
}

/** The mounts every container gets before the pod's and the CRI's. */
export function defaultMounts(privileged: boolean): MountSpec[] {
  const sysMode = privileged ? 'rw' : 'ro';
  return [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    {
      destination: '/dev',
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
    },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    {
      destination: '/dev/shm',
      type: 'tmpfs',
      source: 'shm',
      options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'],
    },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', sysMode] },
  ];
}

/**
 * /sys/fs/cgroup as binds of the container's own cgroup directories. Returns
 * the mounts and whether /sys/fs/cgroup itself (a tmpfs) must be made
 * read-only after the binds are in place (v1 layout, unprivileged).
 */
export function cgroupMounts(
  binds: readonly CgroupBind[],
  privileged: boolean,
): { mounts: MountSpec[]; readonlyTop: boolean } {
  const mode = privileged ? 'rw' : 'ro';
  const opts = ['rprivate', 'nosuid', 'noexec', 'nodev', mode];
  const root = '/sys/fs/cgroup';
  if (binds.length === 0) return { mounts: [], readonlyTop: false };
  const dests = binds.map((b) => {
    const d = path.posix.normalize(b.destination);
    if (!isWithin(d, root) || !b.source.startsWith('/')) {
      throw new InternalError(`cgroup bind ${b.source} -> ${b.destination}: not an absolute source under ${root}`);
    }
    return d;
  });
  if (binds.length === 1 && dests[0] === root) {
    return { mounts: [bind(root, binds[0].source, opts)], readonlyTop: false };
  }
  if (dests.includes(root)) throw new InternalError(`cgroup binds: ${root} itself and controllers below it`);
  const tmpfs: MountSpec = {
    destination: root,
    type: 'tmpfs',
    source: 'tmpfs',
    options: ['nosuid', 'noexec', 'nodev', 'mode=755', 'size=64k'],
  };
  return {
    mounts: [tmpfs, ...binds.map((b, i) => bind(dests[i], b.source, opts))],
    readonlyTop: !privileged,
  };
}

function bind(destination: string, source: string, options: string[]): MountSpec {
  return { destination, type: 'bind', source, options: ['rbind', ...options] };
}

/** The pod-level mounts: /dev/shm and the sandbox's /etc files. */
export function podMounts(pod: PodFiles, hostIpc: boolean, readonlyRootfs: boolean): MountSpec[] {
  const out: MountSpec[] = [];
  const shm = hostIpc ? '/dev/shm' : pod.shmPath;
  if (shm) out.push(bind('/dev/shm', shm, ['rprivate', 'nosuid', 'nodev', 'noexec', 'rw']));
  const mode = readonlyRootfs ? 'ro' : 'rw';
  if (pod.hostnamePath) out.push(bind('/etc/hostname', pod.hostnamePath, ['rprivate', mode]));
  if (pod.hostsPath) out.push(bind('/etc/hosts', pod.hostsPath, ['rprivate', mode]));
  if (pod.resolvPath) out.push(bind('/etc/resolv.conf', pod.resolvPath, ['rprivate', mode]));
  return out;
}

function pathList(given: readonly string[], defaults: readonly string[], field: string): string[] {
  if (given.length === 0) return [...defaults];
  return given.map((p, i) => containerPath(p, `${field}[${i}]`));
}

/** Sorts mounts by destination depth, keeping the given order among equals. */
export function sortMounts(mounts: readonly MountSpec[]): MountSpec[] {
  return mounts
    .map((m, i) => ({ m, i, d: pathDepth(m.destination) }))
    .sort((a, b) => a.d - b.d || a.i - b.i)
    .map((x) => x.m);
}

export async function buildMounts(input: MountsInput): Promise<MountsResult> {
  const warnings: string[] = [];
  const cri = await criMounts(
    input.mounts,
    input.pathExists,
    input.isProcfs,
    input.recursiveReadOnly,
    input.imageSources,
    input.userns,
  );
  const criDests = new Set(cri.map((m) => m.destination));
  const devReplaced = criDests.has('/dev');
  const cgroup = cgroupMounts(input.cgroupBinds, input.privileged);
  const cgroupReplaced = [...criDests].some((d) => isWithin('/sys/fs/cgroup', d));
  const defaults = [...defaultMounts(input.privileged), ...(cgroupReplaced ? [] : cgroup.mounts)].filter(
    (m) => !criDests.has(m.destination) && !(devReplaced && m.destination.startsWith('/dev/')),
  );
  const pod = podMounts(input.pod, input.hostIpc, input.readonlyRootfs).filter((m) => !criDests.has(m.destination));
  // A pod /dev/shm bind replaces the default tmpfs.
  const podDests = new Set(pod.map((m) => m.destination));
  const base = defaults.filter((m) => !podDests.has(m.destination));
  // No image volume inside another mount, nor in the kernel filesystems.
  const covered = [...criDests, ...podDests, '/proc', '/sys', '/dev'];
  const volumes = imageVolumeMounts(input.imageVolumes, covered, input.volumesRoot, warnings);
  const volumeMounts = volumes.map((v) => bind(v.containerPath, v.hostPath, ['rprivate', 'rw']));
  const mounts = sortMounts([...base, ...pod, ...cri, ...volumeMounts]);
  const shared = cri.some((m) => m.options.includes('rshared'));
  const SC = 'config.linux.security_context';
  return {
    mounts,
    maskedPaths: input.privileged ? [] : pathList(input.maskedPaths, DEFAULT_MASKED_PATHS, `${SC}.masked_paths`),
    readonlyPaths: input.privileged
      ? []
      : [
          ...pathList(input.readonlyPaths, DEFAULT_READONLY_PATHS, `${SC}.readonly_paths`),
          ...(cgroup.readonlyTop && !cgroupReplaced ? ['/sys/fs/cgroup'] : []),
        ],
    rootfsPropagation: shared ? 'rshared' : 'rslave',
    imageVolumes: volumes,
    warnings,
  };
}
