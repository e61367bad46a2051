import { UnimplementedError } from '../../src/errors';
import { Mount, MountPropagation } from '../../src/gen/runtime/v1/api';
import {
  buildMounts,
  cgroupMounts,
  DEFAULT_MASKED_PATHS,
  DEFAULT_READONLY_PATHS,
  sortMounts,
  type MountsInput,
} from '../../src/cri/container-spec/mounts';
import type { MountSpec } from '../../src/containerizer/launcher/spec';
import { kernelHasMountSetattr } from '../../src/cri/container-spec/host-io';
import { fieldOfAsync as fieldOf } from '../helpers/invalid';

const existing = new Set(['/host/data', '/host/cfg', '/host/dev', '/var/lib/kubelet/x', '/host/sys']);
const base: MountsInput = {
  mounts: [],
  cgroupBinds: [],
  imageVolumes: undefined,
  privileged: false,
  readonlyRootfs: false,
  hostIpc: false,
  pod: {
    shmPath: '/run/capsa/pods/p1/shm',
    hostsPath: '/run/capsa/pods/p1/hosts',
    resolvPath: '/run/capsa/pods/p1/resolv.conf',
    hostnamePath: '/run/capsa/pods/p1/hostname',
  },
  volumesRoot: '/var/lib/capsa/containers/c1/volumes',
  maskedPaths: [],
  readonlyPaths: [],
  pathExists: (p) => Promise.resolve(existing.has(p)),
};
const m = (over: Partial<Mount>): Mount => Mount.fromPartial({ hostPath: '/host/data', ...over });
const dests = (ms: MountSpec[]): string[] => ms.map((x) => x.destination);
const byDest = (ms: MountSpec[], d: string): MountSpec | undefined => ms.find((x) => x.destination === d);

describe('buildMounts', () => {
  test('defaults, pod files, masked and readonly paths', async () => {
    const r = await buildMounts(base);
    expect(dests(r.mounts)).toEqual([
      '/proc',
      '/dev',
      '/sys',
      '/dev/pts',
      '/dev/mqueue',
      '/dev/shm',
      '/etc/hostname',
      '/etc/hosts',
      '/etc/resolv.conf',
    ]);
    expect(byDest(r.mounts, '/dev/pts')?.options).toEqual(expect.arrayContaining(['newinstance', 'ptmxmode=0666']));
    expect(byDest(r.mounts, '/sys')?.options).toContain('ro');
    expect(byDest(r.mounts, '/dev/shm')).toMatchObject({ type: 'bind', source: '/run/capsa/pods/p1/shm' });
    expect(byDest(r.mounts, '/etc/hosts')).toMatchObject({ source: '/run/capsa/pods/p1/hosts' });
    expect(byDest(r.mounts, '/etc/hosts')?.options).toContain('rw');
    expect(r.maskedPaths).toEqual(DEFAULT_MASKED_PATHS);
    expect(r.maskedPaths).toEqual(
      expect.arrayContaining(['/proc/kcore', '/sys/firmware', '/sys/devices/virtual/powercap']),
    );
    expect(r.readonlyPaths).toEqual(DEFAULT_READONLY_PATHS);
    expect(r.readonlyPaths).toEqual(expect.arrayContaining(['/proc/sys', '/proc/sysrq-trigger', '/proc/asound']));
    expect(r.rootfsPropagation).toBe('rslave');
  });

  test('privileged: rw sysfs, no masked or readonly paths', async () => {
    const r = await buildMounts({ ...base, privileged: true, maskedPaths: ['/proc/x'] });
    expect(byDest(r.mounts, '/sys')?.options).toContain('rw');
    expect(r.maskedPaths).toEqual([]);
    expect(r.readonlyPaths).toEqual([]);
  });

  test('CRI masked/readonly lists replace the defaults', async () => {
    const r = await buildMounts({ ...base, maskedPaths: ['/proc/a/'], readonlyPaths: ['/proc/b'] });
    expect(r.maskedPaths).toEqual(['/proc/a']);
    expect(r.readonlyPaths).toEqual(['/proc/b']);
  });

  test('host IPC binds the host /dev/shm; a read-only rootfs makes the pod files ro; missing pod files skipped', async () => {
    const r = await buildMounts({ ...base, hostIpc: true, readonlyRootfs: true, pod: { hostsPath: '/h' } });
    expect(byDest(r.mounts, '/dev/shm')).toMatchObject({ type: 'bind', source: '/dev/shm' });
    expect(byDest(r.mounts, '/etc/hosts')?.options).toContain('ro');
    expect(byDest(r.mounts, '/etc/resolv.conf')).toBeUndefined();
  });

  test('no pod shm: the private tmpfs stays', async () => {
    const r = await buildMounts({ ...base, pod: {} });
    expect(byDest(r.mounts, '/dev/shm')).toMatchObject({ type: 'tmpfs' });
  });

  test.each([
    [MountPropagation.PROPAGATION_PRIVATE, 'rprivate', 'rslave'],
    [MountPropagation.PROPAGATION_HOST_TO_CONTAINER, 'rslave', 'rslave'],
    [MountPropagation.PROPAGATION_BIDIRECTIONAL, 'rshared', 'rshared'],
  ])('CRI mount propagation %s → %s (rootfs %s)', async (prop, opt, rootProp) => {
    const r = await buildMounts({
      ...base,
      mounts: [m({ containerPath: '/data', propagation: prop, readonly: true })],
    });
    expect(byDest(r.mounts, '/data')).toEqual({
      destination: '/data',
      type: 'bind',
      source: '/host/data',
      options: ['rbind', opt, 'ro'],
    });
    expect(r.rootfsPropagation).toBe(rootProp);
  });

  test('CRI mounts replace defaults and pod files at the same place; selinux_relabel ignored', async () => {
    const r = await buildMounts({
      ...base,
      mounts: [
        m({ containerPath: '/etc/hosts/', hostPath: '/host/cfg', selinuxRelabel: true }),
        m({ containerPath: '/dev/shm', hostPath: '/host/data' }),
      ],
    });
    expect(r.mounts.filter((x) => x.destination === '/etc/hosts')).toEqual([
      expect.objectContaining({ source: '/host/cfg' }),
    ]);
    expect(r.mounts.filter((x) => x.destination === '/dev/shm')).toEqual([
      expect.objectContaining({ source: '/host/data' }),
    ]);
  });

  test('a CRI /dev mount drops every default below /dev (the pod /dev/shm stays)', async () => {
    const r = await buildMounts({ ...base, mounts: [m({ containerPath: '/dev', hostPath: '/host/dev' })] });
    expect(dests(r.mounts).filter((d) => d.startsWith('/dev'))).toEqual(['/dev', '/dev/shm']);
    expect(byDest(r.mounts, '/dev')?.type).toBe('bind');
  });

  test('ordering: parents before children, stable among equals', async () => {
    const r = await buildMounts({
      ...base,
      mounts: [
        m({ containerPath: '/a/b/c', hostPath: '/host/data' }),
        m({ containerPath: '/a', hostPath: '/host/cfg' }),
        m({ containerPath: '/z/y', hostPath: '/host/data' }),
        m({ containerPath: '/a/b', hostPath: '/host/data' }),
      ],
    });
    const d = dests(r.mounts);
    expect(d.indexOf('/a')).toBeLessThan(d.indexOf('/a/b'));
    expect(d.indexOf('/a/b')).toBeLessThan(d.indexOf('/a/b/c'));
    expect(d.indexOf('/dev')).toBeLessThan(d.indexOf('/dev/pts'));
    expect(d.indexOf('/z/y')).toBeLessThan(d.indexOf('/a/b'));
    const sorted = sortMounts([
      { destination: '/x/y', type: 'bind', source: '/1', options: [] },
      { destination: '/b', type: 'bind', source: '/2', options: [] },
      { destination: '/a', type: 'bind', source: '/3', options: [] },
    ]);
    expect(dests(sorted)).toEqual(['/b', '/a', '/x/y']);
  });

  test('image volumes: empty dirs under volumesRoot, unless covered', async () => {
    const r = await buildMounts({
      ...base,
      mounts: [m({ containerPath: '/data' })],
      imageVolumes: {
        '/var/lib/db': {},
        '/data': {},
        '/data/sub': {},
        'rel/vol': {},
        '/': {},
        '/proc/x': {},
        '/dev/shm': {},
      },
    });
    expect(r.imageVolumes.map((v) => v.containerPath)).toEqual(['/var/lib/db', '/rel/vol']);
    for (const v of r.imageVolumes) {
      expect(v.hostPath).toMatch(/^\/var\/lib\/capsa\/containers\/c1\/volumes\/[0-9a-f]{16}$/);
      expect(byDest(r.mounts, v.containerPath)).toEqual({
        destination: v.containerPath,
        type: 'bind',
        source: v.hostPath,
        options: ['rbind', 'rprivate', 'rw'],
      });
    }
    expect(new Set(r.imageVolumes.map((v) => v.hostPath)).size).toBe(2);
    expect(r.warnings).toEqual(['image volume "/" ignored']);
  });

  test('image volumes stay writable with a read-only rootfs; no Volumes → none', async () => {
    const r = await buildMounts({ ...base, readonlyRootfs: true, imageVolumes: { '/v': {} } });
    expect(byDest(r.mounts, '/v')?.options).toContain('rw');
    expect((await buildMounts({ ...base, imageVolumes: null })).imageVolumes).toEqual([]);
  });

  const F = 'config.mounts[1]';
  const ok = m({ containerPath: '/ok' });
  const errors: [string, Partial<MountsInput>, string][] = [
    ['relative container_path', { mounts: [ok, m({ containerPath: 'data' })] }, `${F}.container_path`],
    ['empty container_path', { mounts: [ok, m({ containerPath: '' })] }, `${F}.container_path`],
    ['container_path "/"', { mounts: [ok, m({ containerPath: '/x/..' })] }, `${F}.container_path`],
    ['NUL in container_path', { mounts: [ok, m({ containerPath: '/a\0' })] }, `${F}.container_path`],
    ['duplicate container_path', { mounts: [ok, m({ containerPath: '/ok/' })] }, `${F}.container_path`],
    ['missing host path', { mounts: [ok, m({ containerPath: '/x', hostPath: '/nope' })] }, `${F}.host_path`],
    ['empty host path', { mounts: [ok, m({ containerPath: '/x', hostPath: '' })] }, `${F}.host_path`],
    ['relative host path', { mounts: [ok, m({ containerPath: '/x', hostPath: 'host/data' })] }, `${F}.host_path`],
    [
      'unknown propagation',
      { mounts: [ok, m({ containerPath: '/x', propagation: 7 as MountPropagation })] },
      `${F}.propagation`,
    ],
    [
      'recursive read-only on a kernel without mount_setattr',
      { mounts: [ok, m({ containerPath: '/x', readonly: true, recursiveReadOnly: true })] },
      `${F}.recursive_read_only`,
    ],
    [
      'recursive read-only without readonly',
      { recursiveReadOnly: true, mounts: [ok, m({ containerPath: '/x', recursiveReadOnly: true })] },
      `${F}.recursive_read_only`,
    ],
    [
      'recursive read-only with propagation',
      {
        recursiveReadOnly: true,
        mounts: [
          ok,
          m({
            containerPath: '/x',
            readonly: true,
            recursiveReadOnly: true,
            propagation: MountPropagation.PROPAGATION_HOST_TO_CONTAINER,
          }),
        ],
      },
      `${F}.recursive_read_only`,
    ],
    [
      'ID-mapped mount',
      { mounts: [ok, m({ containerPath: '/x', uidMappings: [{ hostId: 1, containerId: 0, length: 1 }] })] },
      `${F}.uid_mappings`,
    ],
    [
      'bad mount option',
      { mounts: [ok, m({ containerPath: '/x', mountOptions: ['nodev', 'uid=0'] })] },
      `${F}.mount_options[1]`,
    ],
    ['relative masked path', { maskedPaths: ['/ok', 'proc/x'] }, 'config.linux.security_context.masked_paths[1]'],
    ['relative readonly path', { readonlyPaths: ['x'] }, 'config.linux.security_context.readonly_paths[0]'],
    ['image Volumes not an object', { imageVolumes: ['/v'] }, 'config.image'],
    [
      'too many image volumes',
      { imageVolumes: Object.fromEntries([...Array(300).keys()].map((i) => [`/v${i}`, {}])) },
      'config.image',
    ],
  ];
  test.each(errors)('error: %s', async (_name, over, field) => {
    expect(await fieldOf(buildMounts({ ...base, ...over }))).toBe(field);
  });

  test('an image volume mount is Unimplemented naming the field (not served yet)', async () => {
    const over = { mounts: [ok, m({ containerPath: '/x', image: { image: 'busybox' } as Mount['image'] })] };
    const err = await buildMounts({ ...base, ...over }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UnimplementedError);
    expect((err as UnimplementedError).context.field).toBe(`${F}.image`);
  });

  test('the missing host path is named in the message', async () => {
    await expect(buildMounts({ ...base, mounts: [m({ containerPath: '/x', hostPath: '/nope/y' })] })).rejects.toThrow(
      /"\/nope\/y" does not exist/,
    );
  });

  test('recursive read-only: "ro" and "rro" on a private bind, where the kernel has mount_setattr', async () => {
    const r = await buildMounts({
      ...base,
      recursiveReadOnly: true,
      mounts: [m({ containerPath: '/x', readonly: true, recursiveReadOnly: true })],
    });
    expect(byDest(r.mounts, '/x')?.options).toEqual(['rbind', 'rprivate', 'ro', 'rro']);
  });

  test('kernelHasMountSetattr: 5.12 and newer', () => {
    expect(['5.11.0', '4.19.0-25-amd64', 'x'].map((v) => kernelHasMountSetattr(v))).toEqual([false, false, false]);
    expect(['5.12.0', '6.1.0-18-amd64', '6.18.44-fc'].map((v) => kernelHasMountSetattr(v))).toEqual([true, true, true]);
  });

  test('allowed extra mount options are appended', async () => {
    const r = await buildMounts({ ...base, mounts: [m({ containerPath: '/x', mountOptions: ['noexec', 'nosuid'] })] });
    expect(byDest(r.mounts, '/x')?.options).toEqual(['rbind', 'rprivate', 'rw', 'noexec', 'nosuid']);
  });
});

describe('cgroup mounts', () => {
  test('none given: no /sys/fs/cgroup mount', async () => {
    expect(byDest((await buildMounts(base)).mounts, '/sys/fs/cgroup')).toBeUndefined();
  });

  test('v2: one read-only bind of the container cgroup', async () => {
    const r = await buildMounts({
      ...base,
      cgroupBinds: [{ source: '/sys/fs/cgroup/kubepods/capsa-c1', destination: '/sys/fs/cgroup' }],
    });
    expect(byDest(r.mounts, '/sys/fs/cgroup')).toMatchObject({
      type: 'bind',
      source: '/sys/fs/cgroup/kubepods/capsa-c1',
    });
    expect(byDest(r.mounts, '/sys/fs/cgroup')?.options).toContain('ro');
    expect(r.readonlyPaths).not.toContain('/sys/fs/cgroup');
    const d = dests(r.mounts);
    expect(d.indexOf('/sys')).toBeLessThan(d.indexOf('/sys/fs/cgroup'));
  });

  test('v1: tmpfs + one bind per controller, tmpfs made read-only afterwards; rw when privileged', async () => {
    const binds = [
      { source: '/sys/fs/cgroup/memory/kubepods/capsa-c1', destination: '/sys/fs/cgroup/memory' },
      { source: '/sys/fs/cgroup/cpu,cpuacct/kubepods/capsa-c1', destination: '/sys/fs/cgroup/cpu,cpuacct' },
    ];
    const r = await buildMounts({ ...base, cgroupBinds: binds });
    expect(byDest(r.mounts, '/sys/fs/cgroup')?.type).toBe('tmpfs');
    expect(byDest(r.mounts, '/sys/fs/cgroup/memory')?.options).toContain('ro');
    expect(r.readonlyPaths).toContain('/sys/fs/cgroup');
    const p = cgroupMounts(binds, true);
    expect(p.readonlyTop).toBe(false);
    expect(p.mounts[1].options).toContain('rw');
  });

  test('a CRI mount of /sys/fs/cgroup (or above) wins', async () => {
    const r = await buildMounts({
      ...base,
      mounts: [m({ containerPath: '/sys', hostPath: '/host/sys' })],
      cgroupBinds: [{ source: '/sys/fs/cgroup/x', destination: '/sys/fs/cgroup' }],
    });
    expect(byDest(r.mounts, '/sys/fs/cgroup')).toBeUndefined();
    expect(r.mounts.filter((x) => x.destination === '/sys')).toEqual([
      expect.objectContaining({ source: '/host/sys' }),
    ]);
  });
});
