import { Mount, MountPropagation } from '../../src/gen/runtime/v1/api';
import { imageMounts } from '../../src/cri/container-spec/image-mounts';
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
import { fieldOf as fieldOfSync, fieldOfAsync as fieldOf } from '../helpers/invalid';

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

  test('an image volume binds the mounted image read-only, nosuid, nodev (exec allowed), in request order', async () => {
    const img = (over: Partial<Mount>): Mount =>
      Mount.fromPartial({ readonly: true, image: { image: 'sha256:' + 'a'.repeat(64) }, ...over });
    const r = await buildMounts({
      ...base,
      recursiveReadOnly: true,
      mounts: [
        ok,
        img({ containerPath: '/iv' }),
        img({ containerPath: '/iv2/', recursiveReadOnly: true, mountOptions: ['noatime'] }),
      ],
      imageSources: new Map([
        [1, '/var/lib/capsa/rootfs/c1/volumes/1/mnt'],
        [2, '/var/lib/capsa/rootfs/c1/volumes/2/mnt/etc'],
      ]),
    });
    expect(byDest(r.mounts, '/iv')).toEqual({
      destination: '/iv',
      type: 'bind',
      source: '/var/lib/capsa/rootfs/c1/volumes/1/mnt',
      options: ['rbind', 'rprivate', 'ro', 'nosuid', 'nodev'],
    });
    expect(byDest(r.mounts, '/iv2')?.options).toEqual(['rbind', 'rprivate', 'ro', 'nosuid', 'nodev', 'rro', 'noatime']);
    expect(byDest(r.mounts, '/iv2')?.source).toBe('/var/lib/capsa/rootfs/c1/volumes/2/mnt/etc');
    // what was never mounted for it is a bug, not the request's fault
    await expect(buildMounts({ ...base, mounts: [img({ containerPath: '/iv' })] })).rejects.toMatchObject({
      kind: 'Internal',
    });
    // options that would undo read-only, nosuid or nodev
    for (const o of ['rw', 'suid', 'dev']) {
      const mounts = [img({ containerPath: '/iv', mountOptions: ['noatime', o] })];
      const f = await fieldOf(buildMounts({ ...base, mounts, imageSources: new Map([[0, '/v']]) }));
      expect(f).toBe('config.mounts[0].mount_options[1]');
    }
    const proc = [img({ containerPath: '/proc' })];
    expect(await fieldOf(buildMounts({ ...base, mounts: proc, imageSources: new Map([[0, '/v']]) }))).toBe(
      'config.mounts[0].container_path',
    );
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

describe('imageMounts (the image volumes of a request, checked before anything is made)', () => {
  const ID = 'sha256:' + 'b'.repeat(64);
  const img = (over: Partial<Mount>): Mount =>
    Mount.fromPartial({ containerPath: '/iv', readonly: true, image: { image: ID }, ...over });

  test('lists image mounts with their index and field; plain binds are not', () => {
    const mounts = [
      m({ containerPath: '/x' }),
      img({ imageSubPath: 'etc/ssl' }),
      m({ containerPath: '/y', image: { image: '  ' } as Mount['image'] }),
      img({ containerPath: '/z', image: { image: ` ${ID} ` } as Mount['image'] }),
    ];
    expect(imageMounts(mounts)).toEqual([
      { index: 1, field: 'config.mounts[1]', ref: ID, subPath: 'etc/ssl' },
      { index: 3, field: 'config.mounts[3]', ref: ID, subPath: '' },
    ]);
  });

  test.each<[string, Partial<Mount>, string]>([
    ['a host path besides the image', { hostPath: '/host/data' }, 'config.mounts[0].host_path'],
    ['not read-only (containerd and critest expect a refusal)', { readonly: false }, 'config.mounts[0].readonly'],
    ['an absolute sub path', { imageSubPath: '/etc' }, 'config.mounts[0].image_sub_path'],
    ['a sub path with ".."', { imageSubPath: 'etc/../..' }, 'config.mounts[0].image_sub_path'],
    ['a sub path with a NUL', { imageSubPath: 'etc\0' }, 'config.mounts[0].image_sub_path'],
    ['a sub path without an image', { image: undefined, imageSubPath: 'etc' }, 'config.mounts[0].image_sub_path'],
    ['an image name with a NUL', { image: { image: 'busy\0box' } as Mount['image'] }, 'config.mounts[0].image.image'],
  ])('error: %s', (_name, over, field) => {
    expect(fieldOfSync(() => imageMounts([img(over)]))).toBe(field);
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
