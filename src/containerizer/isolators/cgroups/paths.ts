// Cgroup path naming, pure (unit-tested in test/unit/cgroups-paths.test.ts).
//
// cgroupfs driver (v1 and v2 alike; a path is relative to each hierarchy's
// mount point):
//   pod          <cgroup_parent>/capsa-<sandbox id>      (parent empty: the daemon's default parent)
//   pid holder   <pod>/capsa-<sandbox id>-init           (a leaf: v2 forbids processes in inner nodes)
//   container    <pod>/capsa-<container id>
//
// systemd driver (transient units over D-Bus, systemd/manager.ts): kubelet
// owns the pod slice (cgroup_parent, given as a slice name like
// "kubepods-burstable-pod<uid>.slice", as its expanded path, which kubelet
// sends, or as a cgroupfs path that kubelet's conversion turns into one);
// capsa adds transient scopes:
//   pod          the parent slice itself, expanded: /kubepods.slice/kubepods-burstable.slice/…pod<uid>.slice
//                (no cgroup_parent: capsa's own slice <default parent stem>-pod<sandbox id>.slice)
//   pid holder   <pod>/capsa-<sandbox id>.scope
//   container    <pod>/capsa-<container id>.scope
import { createHash } from 'crypto';
import * as path from 'path';

export type CgroupDriverName = 'cgroupfs' | 'systemd';

export const CGROUP_PREFIX = 'capsa-';

/** Names of the cgroups capsa owns: capsa-<64 hex>[-init][.scope]. */
export const OWNED_CGROUP = /^capsa-([0-9a-f]{64})(-init)?(\.scope)?$/;

export class CgroupPathError extends Error {}

/**
 * The parent used when kubelet (or crictl) sends no cgroup_parent. The
 * production root gets "/capsa"; any other root gets its own subtree, so two
 * daemons on one host (tests) never sweep each other's pods.
 */
export function defaultCgroupParent(driver: CgroupDriverName, root: string): string {
  const production = path.resolve(root) === '/var/lib/capsa';
  const tag = createHash('sha256').update(path.resolve(root)).digest('hex').slice(0, 12);
  if (driver === 'systemd') return production ? 'capsa.slice' : `capsa-r${tag}.slice`;
  return production ? '/capsa' : `/capsa/r-${tag}`;
}

const COMPONENT = /^[A-Za-z0-9_.:@+-]+$/;

/**
 * A cgroupfs parent as kubelet sends it ("/kubepods/burstable/pod…",
 * "kubepods" …): made absolute, cleaned; "..", empty components, odd
 * characters and systemd slice names are refused.
 */
export function normalizeCgroupfsParent(parent: string): string {
  if (parent === '' || parent === '/') return '/';
  if (!parent.includes('/') && parent.endsWith('.slice')) {
    throw new CgroupPathError(`"${parent}" is a systemd slice, but the cgroup driver is cgroupfs`);
  }
  const parts = parent.split('/').filter((p, i) => !(i === 0 && p === ''));
  if (parts.length > 0 && parts[parts.length - 1] === '') parts.pop();
  for (const p of parts) {
    if (p === '' || p === '.' || p === '..' || !COMPONENT.test(p)) {
      throw new CgroupPathError(`"${parent}" is not a clean cgroup path (component "${p}")`);
    }
  }
  if (parts.join('/').length > 2048) throw new CgroupPathError('cgroup path too long');
  return '/' + parts.join('/');
}

/** kubelet's cgroupfs → systemd conversion: /kubepods/burstable/pod1-2 → kubepods-burstable-pod1_2.slice */
export function cgroupfsToSlice(cgroupfsPath: string): string {
  const norm = normalizeCgroupfsParent(cgroupfsPath);
  if (norm === '/') return '-.slice';
  return (
    norm
      .slice(1)
      .split('/')
      .map((p) => p.replace(/-/g, '_'))
      .join('-') + '.slice'
  );
}

/**
 * systemd's slice hierarchy as a path: "a-b-c.slice" → "/a.slice/a-b.slice/a-b-c.slice"
 * ("-.slice" is the root).
 */
export function expandSlice(slice: string): string {
  if (!slice.endsWith('.slice') || slice.includes('/')) {
    throw new CgroupPathError(`"${slice}" is not a systemd slice name`);
  }
  const stem = slice.slice(0, -'.slice'.length);
  if (stem === '-') return '/';
  if (stem === '' || stem.startsWith('-') || stem.endsWith('-') || stem.includes('--')) {
    throw new CgroupPathError(`"${slice}" is not a valid slice name`);
  }
  if (!/^[A-Za-z0-9_.:@\\-]+$/.test(stem)) throw new CgroupPathError(`"${slice}" has characters systemd refuses`);
  let out = '';
  let prefix = '';
  for (const comp of stem.split('-')) {
    prefix = prefix ? `${prefix}-${comp}` : comp;
    out += `/${prefix}.slice`;
  }
  return out;
}

/**
 * A cgroup_parent for the systemd driver: a slice name; the slice's expanded
 * path, which is what kubelet sends ("/kubepods.slice/kubepods-burstable.slice/
 * kubepods-burstable-pod<uid>.slice": its ToSystemd()); or a cgroupfs path,
 * converted as kubelet converts one.
 */
export function systemdParentSlice(parent: string): string {
  if (parent === '' || parent === '/') return '-.slice';
  if (!parent.includes('/') && parent.endsWith('.slice')) {
    expandSlice(parent); // validates
    return parent;
  }
  const base = path.posix.basename(parent);
  if (base.endsWith('.slice')) {
    // systemd places a slice by its name alone: a path elsewhere would not be where it says
    const want = expandSlice(base);
    if (path.posix.normalize(parent).replace(/\/$/, '') !== want) {
      throw new CgroupPathError(`"${parent}" is not where systemd puts slice ${base} (that is ${want})`);
    }
    return base;
  }
  return cgroupfsToSlice(parent);
}

export function scopeName(id: string): string {
  return `${CGROUP_PREFIX}${id}.scope`;
}

export interface PodCgroup {
  driver: CgroupDriverName;
  /** The pod's cgroup, relative to each hierarchy's mount point. */
  path: string;
  /** The parent as used (normalized); for sweeping and for removing an empty default parent. */
  parent: string;
  /** capsa made it and removes it; false for kubelet's systemd slice (cgroup_parent). */
  owned: boolean;
}

/** The pod cgroup for a sandbox. `parent` is the CRI cgroup_parent ('' → the default parent). */
export function podCgroup(driver: CgroupDriverName, parent: string, sandboxId: string, root: string): PodCgroup {
  const given = parent === '' ? defaultCgroupParent(driver, root) : parent;
  if (driver === 'systemd') {
    if (parent === '') {
      // capsa's own pod slice, like the cgroupfs driver's capsa-<id>: its limits are the pod's.
      const slice = `${given.slice(0, -'.slice'.length)}-pod${sandboxId}.slice`;
      return { driver, path: expandSlice(slice), parent: given, owned: true };
    }
    const slice = systemdParentSlice(given);
    return { driver, path: expandSlice(slice), parent: slice, owned: false };
  }
  const norm = normalizeCgroupfsParent(given);
  return { driver, path: joinCgroup(norm, CGROUP_PREFIX + sandboxId), parent: norm, owned: true };
}

/** The leaf holding a sandbox's pid-namespace init. */
export function pidHolderCgroupPath(driver: CgroupDriverName, podPath: string, sandboxId: string): string {
  return joinCgroup(podPath, driver === 'systemd' ? scopeName(sandboxId) : `${CGROUP_PREFIX}${sandboxId}-init`);
}

/** A container's cgroup, nested in its pod's. */
export function containerCgroupPath(driver: CgroupDriverName, podPath: string, containerId: string): string {
  return joinCgroup(podPath, driver === 'systemd' ? scopeName(containerId) : CGROUP_PREFIX + containerId);
}

export function joinCgroup(parent: string, child: string): string {
  return parent === '/' ? `/${child}` : `${parent}/${child}`;
}

/** The directory of cgroup `cgPath` in the hierarchy mounted at `mount`. */
export function cgroupDir(mount: string, cgPath: string): string {
  return cgPath === '/' ? mount : path.join(mount, cgPath);
}

/** "/a/b/c" → ["/a", "/a/b", "/a/b/c"] */
export function cgroupAncestry(cgPath: string): string[] {
  const parts = cgPath.split('/').filter((p) => p !== '');
  return parts.map((_, i) => '/' + parts.slice(0, i + 1).join('/'));
}
