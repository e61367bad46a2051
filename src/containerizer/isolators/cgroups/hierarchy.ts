// Which cgroup hierarchies this host has, from /proc/self/mountinfo.
//
//   v2 (unified): a cgroup2 mount at /sys/fs/cgroup; controllers from its cgroup.controllers.
//   v1: one mount per controller set (cpu, memory, … possibly co-mounted
//       like "cpu,cpuacct"); named hierarchies (name=systemd) are ignored.
//   hybrid (v1 controllers + an empty cgroup2 at /sys/fs/cgroup/unified)
//       is v1 for every controller; the cgroup2 tree (no controllers) is
//       kept as `hybridUnified`: processes are placed there too, as runc
//       and kubelet do, because per-cgroup pressure stall information
//       (cpu/memory/io.pressure, what kubelet's PSI stats read) exists only
//       in a cgroup2 tree.
import { promises as fs } from 'fs';

export interface Hierarchy {
  mount: string;
  controllers: string[];
}

export interface CgroupLayout {
  version: 1 | 2;
  /** v1: every controller hierarchy; v2: exactly one. */
  hierarchies: Hierarchy[];
  /** v1 only: the mount point of a hybrid host's cgroup2 tree (usually /sys/fs/cgroup/unified). */
  hybridUnified?: string;
}

/** Controllers capsa creates cgroups in on v1. */
export const V1_CONTROLLERS = [
  'cpu',
  'cpuacct',
  'cpuset',
  'memory',
  'pids',
  'devices',
  'freezer',
  'blkio',
  'hugetlb',
  'net_cls',
  'net_prio',
  'perf_event',
  'rdma',
  'misc',
] as const;

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export interface CgroupMount {
  mount: string;
  /** Root of the mount inside the hierarchy; "/" unless in a cgroup namespace or a bind mount. */
  root: string;
  fstype: 'cgroup' | 'cgroup2';
  /** v1: the controllers from the super options. */
  controllers: string[];
}

/** Parses the cgroup and cgroup2 mounts of a mountinfo text (pure). */
export function parseCgroupMounts(mountinfo: string): CgroupMount[] {
  const out: CgroupMount[] = [];
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const pre = line.slice(0, sep).split(' ');
    const post = line.slice(sep + 3).split(' ');
    const fstype = post[0];
    if (fstype !== 'cgroup' && fstype !== 'cgroup2') continue;
    const superOpts = (post[2] ?? '').split(',');
    const known = new Set<string>(V1_CONTROLLERS);
    out.push({
      mount: unescapeMount(pre[4]),
      root: unescapeMount(pre[3]),
      fstype,
      controllers: fstype === 'cgroup' ? superOpts.filter((o) => known.has(o)) : [],
    });
  }
  return out;
}

/** Picks the layout from parsed mounts; `v2Controllers` reads a cgroup2 mount's cgroup.controllers. */
export function chooseLayout(mounts: CgroupMount[], v2Controllers: (mount: string) => string[]): CgroupLayout {
  const unified = mounts.find((m) => m.fstype === 'cgroup2' && m.mount === '/sys/fs/cgroup' && m.root === '/');
  if (unified)
    return { version: 2, hierarchies: [{ mount: unified.mount, controllers: v2Controllers(unified.mount) }] };
  const seen = new Set<string>();
  const hierarchies: Hierarchy[] = [];
  for (const m of mounts) {
    if (m.fstype !== 'cgroup' || m.root !== '/' || m.controllers.length === 0) continue;
    const fresh = m.controllers.filter((c) => !seen.has(c));
    if (fresh.length === 0) continue;
    fresh.forEach((c) => seen.add(c));
    hierarchies.push({ mount: m.mount, controllers: m.controllers });
  }
  const anyV2 = mounts.find((m) => m.fstype === 'cgroup2' && m.root === '/');
  if (hierarchies.length === 0) {
    if (anyV2) return { version: 2, hierarchies: [{ mount: anyV2.mount, controllers: v2Controllers(anyV2.mount) }] };
  }
  return anyV2 ? { version: 1, hierarchies, hybridUnified: anyV2.mount } : { version: 1, hierarchies };
}

export async function detectLayout(): Promise<CgroupLayout> {
  const mounts = parseCgroupMounts(await fs.readFile('/proc/self/mountinfo', 'utf8'));
  const controllers = new Map<string, string[]>();
  for (const m of mounts.filter((x) => x.fstype === 'cgroup2')) {
    try {
      controllers.set(
        m.mount,
        (await fs.readFile(`${m.mount}/cgroup.controllers`, 'utf8')).trim().split(/\s+/).filter(Boolean),
      );
    } catch {
      controllers.set(m.mount, []);
    }
  }
  return chooseLayout(mounts, (mount) => controllers.get(mount) ?? []);
}
