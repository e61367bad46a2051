// The CRI mounts (config.mounts): each validated, naming its field, and
// turned into a bind the monitor makes — a host path (its propagation,
// read-only, recursive read-only, idmapped through the pod's user
// namespace), or an image volume the containerizer mounted (./image-mounts.ts).
import { InternalError, InvalidArgumentError } from '../../errors';
import { MountPropagation, type Mount } from '../../gen/runtime/v1/api';
import type { MountSpec, UsernsSpec } from '../../containerizer';
import { idMappings, sameMappings } from '../userns';
import { IMAGE_MOUNT_FORBIDDEN, isImageMount } from './image-mounts';
import { checkString, containerPath, isWithin } from './values';

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
