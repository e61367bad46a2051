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

import { createHash } from 'crypto';
import * as path from 'path';
import { InternalError, InvalidArgumentError } from '../../errors';
import { MountPropagation, type Mount } from '../../gen/runtime/v1/api';
import type { MountSpec, UsernsSpec } from '../../containerizer';
import { idMappings, sameMappings } from '../userns';
import { checkString, IMAGE_FIELD, isWithin, pathDepth } from './values';

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

/** At most this many image VOLUMEs (an image is untrusted input). */
export const MAX_IMAGE_VOLUMES = 256;

/** Extra bind options a CRI mount may ask for (Mount.mount_options). */
const ALLOWED_MOUNT_OPTIONS = new Set([
  'ro',
  'rw',
  'nosuid',
  'suid',
  'nodev',
  'dev',
  'noexec',
  'exec',
  'noatime',
  'atime',
  'relatime',
  'norelatime',
  'strictatime',
  'nostrictatime',
  'nodiratime',
  'diratime',
]);

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

export interface ImageVolume {
  containerPath: string;
  /** Directory the caller creates (empty) before the launch. */
  hostPath: string;
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

/**
 * The only CRI mount destinations below /proc (runc's list: files lxcfs
 * emulates). Anything else there would shadow the container's procfs
 * (e.g. /proc/sys or /proc/self/attr) and with it the masks and read-only
 * paths that protect the host; runc refuses them the same way.
 */
export const ALLOWED_PROC_MOUNTS: readonly string[] = [
  '/proc/cpuinfo',
  '/proc/diskstats',
  '/proc/meminfo',
  '/proc/stat',
  '/proc/swaps',
  '/proc/uptime',
  '/proc/loadavg',
  '/proc/slabinfo',
  '/proc/sys/kernel/ns_last_pid',
  '/proc/sys/crypto/fips_enabled',
];

const PROPAGATION: Record<number, string> = {
  [MountPropagation.PROPAGATION_PRIVATE]: 'rprivate',
  [MountPropagation.PROPAGATION_HOST_TO_CONTAINER]: 'rslave',
  [MountPropagation.PROPAGATION_BIDIRECTIONAL]: 'rshared',
};

/** A clean absolute container path, or an error naming `field`. */
export function containerPath(p: string, field: string): string {
  checkString(p, field);
  if (p === '') throw new InvalidArgumentError(field, 'must not be empty');
  if (!p.startsWith('/')) throw new InvalidArgumentError(field, `"${p}" is not an absolute path`);
  return path.posix.normalize(p).replace(/(.)\/$/, '$1');
}

/** An image volume (CRI Mount.image) as the request asks for it; the image is resolved later. */
export interface ImageMountInput {
  /** Its index in config.mounts. */
  index: number;
  /** The request's field for it ("config.mounts[2]"), for errors. */
  field: string;
  /** The image: an id (kubelet sends the one PullImage answered) or a reference. */
  ref: string;
  /** Directory inside the image to mount ("" for its root). */
  subPath: string;
}

/** Options that would undo what an image volume is (read-only, no set-uid, no devices). */
const IMAGE_MOUNT_FORBIDDEN = new Set(['rw', 'suid', 'dev']);

/** A mount that asks for an image (Mount.image with a name) rather than a host path. */
export function isImageMount(m: Mount): boolean {
  return m.image !== undefined && m.image.image.trim() !== '';
}

/**
 * The image volumes among the CRI mounts, with the fields only they have
 * checked before anything is made (the rest is checked with every mount):
 * no host path, read-only as kubelet always sends them (containerd refuses
 * the others too), a relative image_sub_path without "..".
 */
export function imageMounts(mounts: readonly Mount[]): ImageMountInput[] {
  const out: ImageMountInput[] = [];
  for (const [i, m] of mounts.entries()) {
    const f = `config.mounts[${i}]`;
    checkString(m.imageSubPath, `${f}.image_sub_path`);
    if (!isImageMount(m)) {
      if (m.imageSubPath !== '') {
        throw new InvalidArgumentError(`${f}.image_sub_path`, 'is only for image volumes (image.image is empty)');
      }
      continue;
    }
    const ref = m.image!.image.trim();
    checkString(ref, `${f}.image.image`);
    if (Buffer.byteLength(ref) > 4096) throw new InvalidArgumentError(`${f}.image.image`, 'is longer than 4096 bytes');
    if (m.hostPath !== '') {
      throw new InvalidArgumentError(`${f}.host_path`, 'must be empty for an image volume (image is set)');
    }
    if (!m.readonly) throw new InvalidArgumentError(`${f}.readonly`, 'must be true: an image volume is read-only');
    const sub = m.imageSubPath;
    if (sub.startsWith('/')) throw new InvalidArgumentError(`${f}.image_sub_path`, `"${sub}" is not a relative path`);
    if (sub.split('/').includes('..')) {
      throw new InvalidArgumentError(`${f}.image_sub_path`, `"${sub}" must not contain ".."`);
    }
    if (Buffer.byteLength(sub) > 4095)
      throw new InvalidArgumentError(`${f}.image_sub_path`, 'is longer than 4095 bytes');
    out.push({ index: i, field: f, ref, subPath: sub });
  }
  return out;
}

/**
 * Validates the CRI mounts and turns them into mount specs (in request
 * order). An image volume is a bind of `imageSources`' entry for its index:
 * the image the containerizer mounted (at its sub path).
 */
export async function criMounts(
  mounts: readonly Mount[],
  pathExists: (hostPath: string) => Promise<boolean>,
  isProcfs?: (hostPath: string) => Promise<boolean>,
  recursiveReadOnly = false,
  imageSources: ReadonlyMap<number, string> = new Map(),
  userns?: UsernsSpec,
): Promise<MountSpec[]> {
  const out: MountSpec[] = [];
  const seen = new Set<string>();
  for (const [i, m] of mounts.entries()) {
    const f = `config.mounts[${i}]`;
    const dest = containerPath(m.containerPath, `${f}.container_path`);
    if (dest === '/') throw new InvalidArgumentError(`${f}.container_path`, 'must not be "/"');
    if (seen.has(dest)) throw new InvalidArgumentError(`${f}.container_path`, `"${dest}" is mounted twice`);
    const procDest = isWithin(dest, '/proc') && dest !== '/proc' && !ALLOWED_PROC_MOUNTS.includes(dest);
    if (procDest) {
      throw new InvalidArgumentError(
        `${f}.container_path`,
        `"${dest}" is inside /proc (allowed there: ${ALLOWED_PROC_MOUNTS.join(', ')})`,
      );
    }
    seen.add(dest);
    const imageSource = isImageMount(m) ? imageSources.get(i) : undefined;
    if (isImageMount(m) && imageSource === undefined) {
      throw new InternalError(`${f}.image: no image volume was mounted for it`, { field: `${f}.image` });
    }
    const idmap = mountIdmap(m, f, userns);
    if (imageSource === undefined) {
      checkString(m.hostPath, `${f}.host_path`);
      if (m.hostPath === '') throw new InvalidArgumentError(`${f}.host_path`, 'must not be empty');
      if (!m.hostPath.startsWith('/')) {
        throw new InvalidArgumentError(`${f}.host_path`, `"${m.hostPath}" is not an absolute path`);
      }
    }
    const propagation = PROPAGATION[m.propagation];
    if (propagation === undefined) {
      throw new InvalidArgumentError(`${f}.propagation`, `unknown propagation ${String(m.propagation)}`);
    }
    if (m.recursiveReadOnly) {
      // kubelet asks only when Status says this handler can (the same
      // kernel test): read-only through every submount of the host path,
      // which a bind's propagation could not keep so, hence private only.
      const rro = `${f}.recursive_read_only`;
      if (!recursiveReadOnly) {
        throw new InvalidArgumentError(rro, 'needs mount_setattr (kernel 5.12 or newer), which this kernel lacks');
      }
      if (!m.readonly) throw new InvalidArgumentError(rro, 'needs readonly');
      if (m.propagation !== MountPropagation.PROPAGATION_PRIVATE) {
        throw new InvalidArgumentError(rro, 'needs propagation PROPAGATION_PRIVATE');
      }
    }
    const extra = m.mountOptions.map((o, j) => {
      if (!ALLOWED_MOUNT_OPTIONS.has(o)) {
        throw new InvalidArgumentError(`${f}.mount_options[${j}]`, `unsupported mount option "${o}"`);
      }
      if (imageSource !== undefined && IMAGE_MOUNT_FORBIDDEN.has(o)) {
        throw new InvalidArgumentError(`${f}.mount_options[${j}]`, `"${o}" is not allowed on an image volume`);
      }
      return o;
    });
    if (imageSource !== undefined) {
      if (dest === '/proc') throw new InvalidArgumentError(`${f}.container_path`, 'only a procfs may cover /proc');
      // Read-only, and no set-uid binaries or device nodes from an image; executables
      // stay runnable (tools shipped as an image are what image volumes are for).
      // The bind maps nothing, whatever mappings kubelet put on it: in a pod
      // with a user namespace the volume is already made from idmapped views
      // of the image's layers (containers/image-mounts.ts; an overlay of two
      // layers or more could not be idmapped itself).
      const options = ['rbind', propagation, 'ro', 'nosuid', 'nodev', ...(m.recursiveReadOnly ? ['rro'] : [])];
      out.push({ destination: dest, type: 'bind', source: imageSource, options: [...options, ...extra] });
      continue;
    }
    if (!(await pathExists(m.hostPath))) {
      throw new InvalidArgumentError(`${f}.host_path`, `"${m.hostPath}" does not exist`);
    }
    if (dest === '/proc' && !(await isProcfs?.(m.hostPath))) {
      throw new InvalidArgumentError(
        `${f}.host_path`,
        `"${m.hostPath}" is not a procfs: only a procfs may cover /proc`,
      );
    }
    if (userns && m.propagation === MountPropagation.PROPAGATION_BIDIRECTIONAL) {
      // A user namespace's mounts never reach the host (the kernel makes them slaves).
      throw new InvalidArgumentError(`${f}.propagation`, 'BIDIRECTIONAL cannot be used in a pod with a user namespace');
    }
    // "rro": the monitor adds MOUNT_ATTR_RDONLY recursively after the bind;
    // "idmap": the monitor binds it idmapped through the pod's user namespace
    const options = [
      'rbind',
      propagation,
      m.readonly ? 'ro' : 'rw',
      ...(m.recursiveReadOnly ? ['rro'] : []),
      ...(idmap ? ['idmap'] : []),
    ];
    out.push({ destination: dest, type: 'bind', source: m.hostPath, options: [...options, ...extra] });
  }
  return out;
}

/**
 * Whether a CRI mount is to be idmapped: kubelet gives every mount of a pod
 * with hostUsers: false the pod's mappings (uid_mappings, gid_mappings) so
 * that the volume's files, owned by host ids, show with the same ids in the
 * container (host root's files as the container's root's) and the
 * container's writes land with the host ids it wrote as seen from inside. A
 * mount without them is a plain bind: its files show with the pod's mapping
 * (a file the container's root makes is the mapped host uid's, 100000 for a
 * pod mapped 0→100000). The monitor maps through the pod's user namespace, so
 * a mount's mappings must be the pod's.
 */
function mountIdmap(m: Mount, f: string, userns: UsernsSpec | undefined): boolean {
  if (m.uidMappings.length === 0 && m.gidMappings.length === 0) return false;
  if (!userns) {
    const which = m.uidMappings.length > 0 ? 'uid_mappings' : 'gid_mappings';
    throw new InvalidArgumentError(
      `${f}.${which}`,
      'ID-mapped mounts need a pod with a user namespace (userns_options POD)',
    );
  }
  const uids = idMappings(m.uidMappings, `${f}.uid_mappings`);
  const gids = idMappings(m.gidMappings, `${f}.gid_mappings`);
  if (!sameMappings(uids, userns.uids))
    throw new InvalidArgumentError(`${f}.uid_mappings`, "must be the pod sandbox's uid mappings");
  if (!sameMappings(gids, userns.gids))
    throw new InvalidArgumentError(`${f}.gid_mappings`, "must be the pod sandbox's gid mappings");
  return true;
}

/** The image's VOLUMEs not covered by another mount, each bound from its own empty host directory. */
export function imageVolumeMounts(
  volumes: unknown,
  covered: readonly string[],
  volumesRoot: string,
  warnings: string[],
): ImageVolume[] {
  if (volumes === undefined || volumes === null) return [];
  if (typeof volumes !== 'object' || Array.isArray(volumes)) {
    throw new InvalidArgumentError(IMAGE_FIELD, "the image's Volumes is not an object");
  }
  const keys = Object.keys(volumes);
  if (keys.length > MAX_IMAGE_VOLUMES) {
    throw new InvalidArgumentError(IMAGE_FIELD, `the image declares more than ${MAX_IMAGE_VOLUMES} volumes`);
  }
  const out: ImageVolume[] = [];
  const seen = new Set<string>();
  for (const key of keys) {
    checkString(key, IMAGE_FIELD, `the image's volume "${key}"`);
    // Docker reads a relative VOLUME against "/".
    const dest = containerPath(key.startsWith('/') ? key : `/${key}`, IMAGE_FIELD);
    if (dest === '/') {
      warnings.push('image volume "/" ignored');
      continue;
    }
    if (seen.has(dest) || covered.some((c) => isWithin(dest, c))) continue;
    seen.add(dest);
    const name = createHash('sha256').update(dest).digest('hex').slice(0, 16);
    out.push({ containerPath: dest, hostPath: path.join(volumesRoot, name) });
  }
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
