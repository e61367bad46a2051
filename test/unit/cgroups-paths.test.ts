// Cgroup naming for both drivers, and hierarchy detection from mountinfo
// (v1, v2 and hybrid hosts; this machine is v1, so v2 is only tested here).
import { chooseLayout, parseCgroupMounts } from '../../src/containerizer/isolators/cgroups/hierarchy';
import {
  CgroupPathError,
  OWNED_CGROUP,
  cgroupAncestry,
  cgroupDir,
  cgroupfsToSlice,
  containerCgroupPath,
  defaultCgroupParent,
  expandSlice,
  normalizeCgroupfsParent,
  pidHolderCgroupPath,
  podCgroup,
  scopeName,
  systemdParentSlice,
} from '../../src/containerizer/isolators/cgroups/paths';

const SID = 'a'.repeat(64);
const CID = 'b'.repeat(64);

describe('cgroupfs parents', () => {
  test.each([
    ['', '/'],
    ['/', '/'],
    ['kubepods', '/kubepods'],
    ['/kubepods/burstable/pod1234-5678', '/kubepods/burstable/pod1234-5678'],
    ['/kubepods/besteffort/', '/kubepods/besteffort'],
  ])('%j → %j', (given, want) => {
    expect(normalizeCgroupfsParent(given)).toBe(want);
  });

  test.each(['/kubepods/../etc', '/a//b', '/a/./b', '/a/b c', 'kubepods.slice', '/a/\nb'])('refuses %j', (bad) => {
    expect(() => normalizeCgroupfsParent(bad)).toThrow(CgroupPathError);
  });

  test('pod, pid holder and container paths nest under the parent', () => {
    const pod = podCgroup('cgroupfs', '/kubepods/burstable/pod1', SID, '/var/lib/capsa');
    expect(pod).toEqual({
      driver: 'cgroupfs',
      path: `/kubepods/burstable/pod1/capsa-${SID}`,
      parent: '/kubepods/burstable/pod1',
      owned: true,
    });
    expect(pidHolderCgroupPath('cgroupfs', pod.path, SID)).toBe(`${pod.path}/capsa-${SID}-init`);
    expect(containerCgroupPath('cgroupfs', pod.path, CID)).toBe(`${pod.path}/capsa-${CID}`);
    expect(podCgroup('cgroupfs', '/', SID, '/var/lib/capsa').path).toBe(`/capsa-${SID}`);
  });

  test('an empty parent means the default: /capsa for the production root, a per-root subtree otherwise', () => {
    expect(defaultCgroupParent('cgroupfs', '/var/lib/capsa')).toBe('/capsa');
    expect(podCgroup('cgroupfs', '', SID, '/var/lib/capsa').path).toBe(`/capsa/capsa-${SID}`);
    const a = defaultCgroupParent('cgroupfs', '/tmp/x/root');
    const b = defaultCgroupParent('cgroupfs', '/tmp/y/root');
    expect(a).toMatch(/^\/capsa\/r-[0-9a-f]{12}$/);
    expect(a).not.toBe(b);
    expect(defaultCgroupParent('cgroupfs', '/tmp/x/root/')).toBe(a);
    expect(defaultCgroupParent('systemd', '/var/lib/capsa')).toBe('capsa.slice');
    expect(defaultCgroupParent('systemd', '/tmp/x/root')).toMatch(/^capsa-r[0-9a-f]{12}\.slice$/);
  });

  test('owned names are recognised, others are not', () => {
    expect(OWNED_CGROUP.exec(`capsa-${SID}`)?.[1]).toBe(SID);
    expect(OWNED_CGROUP.exec(`capsa-${SID}-init`)?.[2]).toBe('-init');
    expect(OWNED_CGROUP.exec(`capsa-${SID}.scope`)?.[3]).toBe('.scope');
    for (const n of ['capsa', 'capsa-test', `capsa-${SID}x`, `kubepods`, `capsa-${SID.slice(1)}`]) {
      expect(OWNED_CGROUP.test(n)).toBe(false);
    }
  });

  test('directories and ancestry', () => {
    expect(cgroupDir('/sys/fs/cgroup/memory', '/a/b')).toBe('/sys/fs/cgroup/memory/a/b');
    expect(cgroupDir('/sys/fs/cgroup', '/')).toBe('/sys/fs/cgroup');
    expect(cgroupAncestry('/a/b/c')).toEqual(['/a', '/a/b', '/a/b/c']);
    expect(cgroupAncestry('/')).toEqual([]);
  });
});

describe('systemd naming', () => {
  test.each([
    ['/kubepods/burstable/pod1234-5678', 'kubepods-burstable-pod1234_5678.slice'],
    ['/kubepods', 'kubepods.slice'],
    ['/', '-.slice'],
    ['kubepods/besteffort/podabc', 'kubepods-besteffort-podabc.slice'],
  ])('kubelet conversion %j → %j', (path, slice) => {
    expect(cgroupfsToSlice(path)).toBe(slice);
  });

  test.each([
    [
      'kubepods-burstable-pod1234_5678.slice',
      '/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_5678.slice',
    ],
    ['system.slice', '/system.slice'],
    ['-.slice', '/'],
  ])('expandSlice %j', (slice, path) => {
    expect(expandSlice(slice)).toBe(path);
  });

  test.each(['kubepods', 'a--b.slice', '-a.slice', 'a-.slice', 'a/b.slice', '.slice'])(
    'expandSlice refuses %j',
    (bad) => {
      expect(() => expandSlice(bad)).toThrow(CgroupPathError);
    },
  );

  test('cgroup_parent may be a slice name or a cgroupfs path', () => {
    expect(systemdParentSlice('kubepods-burstable-pod1.slice')).toBe('kubepods-burstable-pod1.slice');
    expect(systemdParentSlice('/kubepods/burstable/pod1')).toBe('kubepods-burstable-pod1.slice');
    expect(systemdParentSlice('')).toBe('-.slice');
  });

  test("cgroup_parent may be the slice's expanded path (kubelet's ToSystemd form)", () => {
    const full = '/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice';
    expect(systemdParentSlice(full)).toBe('kubepods-besteffort-pod1.slice');
    expect(systemdParentSlice(`${full}/`)).toBe('kubepods-besteffort-pod1.slice');
    expect(systemdParentSlice('/kubepods.slice')).toBe('kubepods.slice');
    expect(podCgroup('systemd', full, SID, '/var/lib/capsa')).toMatchObject({
      path: full,
      parent: 'kubepods-besteffort-pod1.slice',
      owned: false,
    });
  });

  test.each([
    '/kubepods.slice/kubepods-besteffort-pod1.slice',
    '/other.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice',
    '/kubepods.slice/kubepods-besteffort.slice/x/kubepods-besteffort-pod1.slice',
  ])('a slice path not where systemd puts that slice is refused: %j', (bad) => {
    expect(() => systemdParentSlice(bad)).toThrow(/is not where systemd puts slice/);
  });

  test('pods use kubelet slice; holder and containers get capsa-<id>.scope units', () => {
    const pod = podCgroup('systemd', 'kubepods-burstable-pod1.slice', SID, '/var/lib/capsa');
    expect(pod).toEqual({
      driver: 'systemd',
      path: '/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice',
      parent: 'kubepods-burstable-pod1.slice',
      owned: false,
    });
    expect(scopeName(CID)).toBe(`capsa-${CID}.scope`);
    expect(containerCgroupPath('systemd', pod.path, CID)).toBe(`${pod.path}/capsa-${CID}.scope`);
    expect(pidHolderCgroupPath('systemd', pod.path, SID)).toBe(`${pod.path}/capsa-${SID}.scope`);
  });

  test('without a cgroup_parent a pod gets its own slice under the default parent, owned by capsa', () => {
    expect(podCgroup('systemd', '', SID, '/var/lib/capsa')).toEqual({
      driver: 'systemd',
      path: `/capsa.slice/capsa-pod${SID}.slice`,
      parent: 'capsa.slice',
      owned: true,
    });
    const test = podCgroup('systemd', '', SID, '/tmp/x/root');
    expect(test.path).toMatch(
      new RegExp(`^/capsa\\.slice/capsa-r[0-9a-f]{12}\\.slice/capsa-r[0-9a-f]{12}-pod${SID}\\.slice$`),
    );
    expect(test.owned).toBe(true);
  });
});

const V1_MOUNTINFO = `25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`;

const COMOUNTED = `32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu,cpuacct
`;

const V2_MOUNTINFO = `30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`;

describe('hierarchy detection', () => {
  test('v1 (hybrid): one hierarchy per controller mount, named ones ignored, the cgroup2 tree kept apart', () => {
    const layout = chooseLayout(parseCgroupMounts(V1_MOUNTINFO), () => ['hugetlb']);
    expect(layout.version).toBe(1);
    expect(layout.hierarchies).toEqual([
      { mount: '/sys/fs/cgroup/cpu', controllers: ['cpu'] },
      { mount: '/sys/fs/cgroup/cpuacct', controllers: ['cpuacct'] },
      { mount: '/sys/fs/cgroup/cpuset', controllers: ['cpuset'] },
      { mount: '/sys/fs/cgroup/memory', controllers: ['memory'] },
      { mount: '/sys/fs/cgroup/pids', controllers: ['pids'] },
    ]);
    expect(layout.hybridUnified).toBe('/sys/fs/cgroup/unified');
  });

  test('co-mounted controllers share one hierarchy; a second mount of it is skipped', () => {
    const layout = chooseLayout(parseCgroupMounts(COMOUNTED), () => []);
    expect(layout.hierarchies).toEqual([
      { mount: '/sys/fs/cgroup/cpu,cpuacct', controllers: ['cpu', 'cpuacct'] },
      { mount: '/sys/fs/cgroup/memory', controllers: ['memory'] },
    ]);
    expect(layout.hybridUnified).toBeUndefined();
  });

  test('v2: the unified mount at /sys/fs/cgroup with its controllers', () => {
    const layout = chooseLayout(parseCgroupMounts(V2_MOUNTINFO), (m) =>
      m === '/sys/fs/cgroup' ? ['cpu', 'memory', 'pids'] : [],
    );
    expect(layout).toEqual({
      version: 2,
      hierarchies: [{ mount: '/sys/fs/cgroup', controllers: ['cpu', 'memory', 'pids'] }],
    });
  });

  test('escaped mount points are decoded', () => {
    const m = parseCgroupMounts('35 31 0:32 / /sys/fs/cgroup/mem\\040ory rw - cgroup cgroup rw,memory\n');
    expect(m[0].mount).toBe('/sys/fs/cgroup/mem ory');
  });
});
